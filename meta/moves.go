package meta

import (
	"errors"
	"time"

	"github.com/slotreg/slotreg/slot"
)

// moveCheckInterval is how often the leader looks at the moves in
// progress when no table change wakes it earlier.
const moveCheckInterval = 250 * time.Millisecond

// moveStart is when this leader first saw a move in progress. A move is
// identified by its target and the slot's leader epoch, so a move
// cancelled and started again (or a new move after a handoff) gets a fresh
// start time.
type moveStart struct {
	target      string
	leaderEpoch uint64
	since       time.Time
}

// moveLoop runs the leader's move duties: it cancels moves that have been
// in progress longer than MoveTimeout and, with AutoRebalance, starts new
// moves whenever fewer than MaxMoves are in flight. It wakes every
// moveCheckInterval and right after every state change, so a handoff is
// followed by the next move at once. Start times live only in this
// goroutine: a new leader counts every move it finds from the moment it
// took over.
func (n *Node) moveLoop() {
	defer n.wg.Done()
	t := time.NewTicker(moveCheckInterval)
	defer t.Stop()
	starts := map[int]moveStart{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.store.changed:
		}
		n.checkMoves(starts, time.Now())
	}
}

// checkMoves is one pass of moveLoop.
func (n *Node) checkMoves(starts map[int]moveStart, now time.Time) {
	if !n.IsLeader() || !n.ready.Load() {
		clear(starts)
		return
	}
	tb := n.store.state().Table
	if tb == nil {
		return
	}
	moving := tb.Moving()
	trackMoves(starts, tb, moving, now)
	timedOut := false
	for _, s := range moving {
		if age := now.Sub(starts[s].since); age > n.cfg.MoveTimeout {
			timedOut = true
			n.cancelTimedOut(tb, s, age)
		}
	}
	// After a cancel the table changed; the next pass (woken by it) plans
	// against the new one.
	if timedOut || !n.cfg.AutoRebalance {
		return
	}
	if budget := n.cfg.MaxMoves - len(moving); budget > 0 {
		if plan := slot.PlanMoves(tb, budget); len(plan) > 0 {
			n.startMoves(plan, "auto-rebalance")
		}
	}
}

// trackMoves brings starts in line with the slots moving in t: new moves
// start now, finished or cancelled ones are dropped.
func trackMoves(starts map[int]moveStart, t *slot.Table, moving []int, now time.Time) {
	live := make(map[int]bool, len(moving))
	for _, s := range moving {
		a := &t.Slots[s]
		live[s] = true
		if st, ok := starts[s]; ok && st.target == a.Target && st.leaderEpoch == a.LeaderEpoch {
			continue
		}
		starts[s] = moveStart{target: a.Target, leaderEpoch: a.LeaderEpoch, since: now}
	}
	for s := range starts {
		if !live[s] {
			delete(starts, s)
		}
	}
}

// cancelTimedOut cancels slot s's move, which has been in progress for age.
func (n *Node) cancelTimedOut(t *slot.Table, s int, age time.Duration) {
	a := t.Slots[s]
	res, err := n.propose(&command{Type: cmdCancelMove, Slot: s, Reason: reasonTimeout})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		if !errors.Is(err, errNotMoving) {
			n.log.Warn("cancelling a timed-out move failed", "slot", s, "from", a.Leader, "to", a.Target, "err", err)
		}
		return
	}
	n.log.Warn("move timed out; cancelled", "slot", s, "from", a.Leader, "to", a.Target,
		"ageMs", age.Milliseconds(), "timeout", n.cfg.MoveTimeout, "epoch", res.Epoch)
}

// startMoves proposes plan as one start-moves entry and returns the moves
// that started and the table epoch after the entry. Refused moves are
// logged, not returned as an error: the table may have changed since the
// plan was made.
func (n *Node) startMoves(plan []slot.Move, why string) ([]slot.Move, uint64, error) {
	specs := make([]moveSpec, len(plan))
	for i, m := range plan {
		specs[i] = moveSpec{Slot: m.Slot, To: m.To}
	}
	res, err := n.propose(&command{Type: cmdStartMoves, Moves: specs})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		n.log.Warn("starting moves failed", "by", why, "moves", len(plan), "err", err)
		return nil, 0, err
	}
	var started []slot.Move
	for i, m := range plan {
		if i < len(res.MoveErrs) && res.MoveErrs[i] != nil {
			n.log.Info("move not started", "by", why, "slot", m.Slot, "from", m.From, "to", m.To, "err", res.MoveErrs[i])
			continue
		}
		started = append(started, m)
		n.log.Info("move started", "by", why, "slot", m.Slot, "from", m.From, "to", m.To, "epoch", res.Epoch)
	}
	return started, res.Epoch, nil
}
