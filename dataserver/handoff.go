package dataserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// A slot migration (rebalance, move, drain) hands a slot from this leader
// to a target that meta named in the table and that follows the slot:
//  1. wait until the target has nearly caught up (handoffLag entries);
//  2. freeze the slot: writes are refused with NOTOWNER naming the target,
//     and the sessions retry them;
//  3. wait until the target has applied the last entry;
//  4. ask meta to switch the leader (HANDOFF); the new table then makes
//     this node a follower. If anything fails or takes longer than
//     handoffDrain, the slot thaws and the handoff is tried again later,
//     after a pause that doubles with each failure (handoffRetry up to
//     handoffRetryMax), so that a slot whose handoff keeps failing is
//     writable nearly all the time rather than frozen nearly all the time.
//
// A slot is frozen only while meta answers heartbeats: without meta quorum
// the handoff cannot be committed, and freezing would only refuse writes
// until quorum returned.

const (
	handoffLag      = 256
	handoffDrain    = 3 * time.Second
	handoffTick     = 5 * time.Millisecond
	handoffTimeout  = 2 * time.Second
	handoffRetry    = 250 * time.Millisecond
	handoffRetryMax = 5 * time.Second
)

// handoffResult is a finished handoff attempt's outcome for one slot.
type handoffResult struct {
	slot int
	ok   bool
}

// metaFresh is how recently meta must have answered a heartbeat for this
// node to freeze a slot for a handoff.
func (n *Node) metaFresh() time.Duration {
	return max(3*n.cfg.Heartbeat, time.Second)
}

func (n *Node) handoffLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(handoffTick)
	defer tick.Stop()
	busy := make(map[int]bool)
	done := make(chan handoffResult, 16)
	// retry holds, per slot whose last attempt failed, the pause it got
	// and when it ends.
	type retry struct {
		wait time.Duration
		at   time.Time
	}
	retries := make(map[int]retry)
	failed := func(s int) {
		w := min(max(2*retries[s].wait, handoffRetry), handoffRetryMax)
		retries[s] = retry{w, time.Now().Add(w)}
	}
	for {
		select {
		case <-n.stop:
			return
		case r := <-done:
			delete(busy, r.slot)
			if r.ok {
				delete(retries, r.slot)
			} else {
				failed(r.slot)
			}
			continue
		case <-tick.C:
		}
		moving := n.handing.Load()
		if moving == nil {
			continue
		}
		now := time.Now()
		metaUp := n.meta.Reachable(n.metaFresh())
		for s := range retries {
			if !slices.Contains(*moving, s) {
				delete(retries, s)
			}
		}
		for _, s := range *moving {
			if busy[s] || now.Before(retries[s].at) {
				continue
			}
			step := n.slots[s].handoffStep(metaUp, now)
			switch step.action {
			case stepCommit:
				busy[s] = true
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					ok := n.handoff(s, step.target, step.epoch)
					select {
					case done <- handoffResult{s, ok}:
					case <-n.stop:
					}
				}()
			case stepThawed:
				failed(s)
				n.log.Warn("handoff: target did not drain in time; slot thawed", "slot", s, "target", step.target,
					"seq", step.seq, "acked", step.acked)
			}
		}
	}
}

// handoff asks meta to switch the slot's leader. A refusal (the table no
// longer matches: a cancelled move, another leader) thaws the slot. An
// unknown outcome (a timeout, a lost connection, a meta leader that lost
// office mid-commit) does not: the HANDOFF may yet have committed, and a
// slot thawed then would take writes as a leader that meta has already
// replaced, which the new leader never sees. The slot stays frozen and
// the HANDOFF is sent again (meta answers a repeat of one it applied with
// success) until meta gives a definite answer, or a new table ends this
// node's leadership of the slot at epoch.
func (n *Node) handoff(s int, target string, epoch uint64) bool {
	wait := handoffRetry
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), handoffTimeout)
		err := n.meta.Handoff(ctx, s, target, epoch)
		cancel()
		switch {
		case err == nil:
			n.handoffs.Add(1)
			n.log.Debug("handed slot off", "slot", s, "to", target, "leader_epoch", epoch, "attempts", attempt)
			return true
		case errors.Is(err, proto.ErrInvalid):
			n.log.Warn("handoff refused; slot thawed", "slot", s, "to", target, "err", err)
			n.slots[s].thaw()
			return false
		}
		if !n.slots[s].frozenFor(target, epoch) {
			n.log.Info("handoff outcome unknown, but a newer table settled the slot", "slot", s, "to", target, "err", err)
			return false
		}
		n.log.Warn("handoff outcome unknown; the slot stays frozen and the handoff is sent again",
			"slot", s, "to", target, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-n.stop:
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, handoffRetryMax/5)
	}
}

// Drain hands every slot this node leads to another node (meta's DRAIN:
// the same handoff as a move) and waits until it leads none, so that it
// can stop with nothing lost. If meta refuses (this is the last data node)
// or has no quorum, it returns the error and the caller stops anyway.
func (n *Node) Drain(ctx context.Context) error {
	d := proto.Drain{NodeID: n.cfg.NodeID}
	if _, err := n.meta.Do(ctx, d.Args()...); err != nil {
		return fmt.Errorf("drain %s: %w", n.cfg.NodeID, err)
	}
	n.log.Info("draining: handing every slot off before stopping")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		t := n.table.Load()
		if t != nil && len(t.LedBy(n.cfg.NodeID)) == 0 {
			n.log.Info("drained: this node leads no slot")
			return nil
		}
		select {
		case <-ctx.Done():
			led := 0
			if t != nil {
				led = len(t.LedBy(n.cfg.NodeID))
			}
			return fmt.Errorf("drain %s: still leads %d slots: %w", n.cfg.NodeID, led, ctx.Err())
		case <-tick.C:
		}
	}
}
