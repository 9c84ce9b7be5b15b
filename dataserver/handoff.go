package dataserver

import (
	"context"
	"fmt"
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
//     handoffDrain, the slot thaws and the handoff is tried again later.

const (
	handoffLag   = 256
	handoffDrain = 3 * time.Second
	handoffTick  = 5 * time.Millisecond
)

func (n *Node) handoffLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(handoffTick)
	defer tick.Stop()
	busy := make(map[int]bool)
	done := make(chan int, 16)
	for {
		select {
		case <-n.stop:
			return
		case s := <-done:
			delete(busy, s)
			continue
		case <-tick.C:
		}
		moving := n.handing.Load()
		if moving == nil {
			continue
		}
		for _, s := range *moving {
			if busy[s] {
				continue
			}
			st := n.stores[s].Load()
			if st == nil {
				continue
			}
			st.mu.Lock()
			if !st.leading || st.target == "" || !st.ready {
				st.mu.Unlock()
				continue
			}
			acked, following := st.acked[st.target]
			switch {
			case !st.frozen && following && st.seq-min(acked, st.seq) <= handoffLag:
				st.frozen = true
				st.frozenAt = time.Now()
			case st.frozen && acked >= st.seq:
				busy[s] = true
				target, epoch := st.target, st.leaderEpoch
				n.wg.Add(1)
				go func() {
					defer n.wg.Done()
					n.handoff(s, target, epoch)
					select {
					case done <- s:
					case <-n.stop:
					}
				}()
			case st.frozen && time.Since(st.frozenAt) > handoffDrain:
				st.frozen = false
				n.log.Warn("handoff: target did not drain in time; slot thawed", "slot", s, "target", st.target,
					"seq", st.seq, "acked", acked)
			}
			st.mu.Unlock()
		}
	}
}

func (n *Node) handoff(s int, target string, epoch uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := n.meta.Handoff(ctx, s, target, epoch)
	if err == nil {
		n.handoffs.Add(1)
		n.log.Info("handed slot off", "slot", s, "to", target, "leader_epoch", epoch)
		return
	}
	n.log.Warn("handoff refused; slot thawed", "slot", s, "to", target, "err", err)
	if st := n.stores[s].Load(); st != nil {
		st.mu.Lock()
		st.frozen = false
		st.mu.Unlock()
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
