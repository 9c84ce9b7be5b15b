package meta

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
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
// in progress longer than MoveTimeout, moves the slots of draining nodes
// away and, with AutoRebalance, starts new moves, as long as fewer than
// MaxMoves are in flight. It wakes every moveCheckInterval and right after
// every state change, so a handoff is followed by the next move at once.
// Start times live only in this goroutine: a new leader counts every move
// it finds from the moment it took over.
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
	st := n.store.state()
	tb := st.Table
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
	budget := n.cfg.MaxMoves - len(moving)
	if timedOut || budget <= 0 {
		return
	}
	// Drains go first, and the pass ends after starting any: the next
	// pass, woken by the new table, gives auto-rebalance what is left.
	if plan := drainMoves(st, budget); len(plan) > 0 {
		n.startMoves(plan, "drain")
		return
	}
	if n.cfg.AutoRebalance {
		if plan := rebalancePlan(st, budget); len(plan) > 0 {
			n.startMoves(plan, byAutoRebalance)
			return
		}
	}
	if len(moving) == 0 {
		n.moveRun.end(n.log, tb.Epoch)
	}
	if !n.cfg.AutoRebalance {
		return
	}
	// Leaders are even and nothing moves: moves and joins leave follower
	// places uneven (a node can end up following every slot), so even
	// them out too. The check is pure; only a change is proposed.
	if len(moving) == 0 && len(st.Draining) == 0 {
		if t, err := slot.EvenFollowers(tb); err == nil && t.Epoch != tb.Epoch {
			res, err := n.propose(&command{Type: cmdEvenFollowers})
			if err == nil {
				err = res.Err
			}
			if err != nil {
				n.log.Warn("evening follower places failed", "err", err)
				return
			}
			n.log.Info("follower places evened", "epoch", res.Epoch, "follows", followCounts(t))
		}
	}
}

// followCounts is how many slots each data node follows, for logs.
func followCounts(t *slot.Table) map[string]int {
	counts := make(map[string]int)
	for s := range t.Slots {
		for _, f := range t.Slots[s].Followers {
			counts[f]++
		}
	}
	return counts
}

// drainMoves plans, for the slots led by draining nodes that are not
// moving yet (in slot order, at most limit of them), a move to a node
// that is not draining: the slot's follower with the fewest leaders (ties
// by ID), which has the data already, or if no follower fits, the node
// with the fewest leaders, which StartMove adds as an extra follower. A
// moving slot counts as led by its target, and every planned move counts
// at once, so one batch spreads over the nodes.
func drainMoves(st *state, limit int) []slot.Move {
	t := st.Table
	if len(st.Draining) == 0 || t == nil || limit <= 0 {
		return nil
	}
	leads := map[string]int{} // the nodes that may take slots
	var active []string       // the same, sorted by ID
	for _, nd := range t.Nodes {
		if _, ok := st.Data[nd.ID]; ok && !st.Draining[nd.ID] {
			leads[nd.ID] = 0
			active = append(active, nd.ID)
		}
	}
	if len(active) == 0 {
		return nil
	}
	for s := range slot.Count {
		a := &t.Slots[s]
		owner := a.Leader
		if a.Target != "" {
			owner = a.Target
		}
		if _, ok := leads[owner]; ok {
			leads[owner]++
		}
	}
	var plan []slot.Move
	for s := range slot.Count {
		a := &t.Slots[s]
		if a.Target != "" || a.Leader == "" || !st.Draining[a.Leader] {
			continue
		}
		to := fewestLeaders(leads, a.Followers)
		if to == "" {
			to = fewestLeaders(leads, active)
		}
		plan = append(plan, slot.Move{Slot: s, From: a.Leader, To: to})
		leads[to]++
		if len(plan) == limit {
			break
		}
	}
	return plan
}

// fewestLeaders returns the candidate (a key of leads) with the fewest
// leaders, ties going to the lowest ID; "" if no candidate is a key.
func fewestLeaders(leads map[string]int, candidates []string) string {
	best := ""
	for _, id := range candidates {
		n, ok := leads[id]
		if !ok {
			continue
		}
		if best == "" || n < leads[best] || (n == leads[best] && id < best) {
			best = id
		}
	}
	return best
}

// rebalancePlan is slot.PlanMoves for st (at most limit moves, 0: all)
// that knows about draining: PlanMoves does not, so it gets a view of the
// table without the draining nodes. Their slots then count for nobody and
// they are nobody's target, so the plan evens out the leaders among the
// other nodes (the drain moves take care of the rest), and the output is
// filtered for moves from or to a draining node all the same. While a
// drain is under way the plan is therefore imperfect: the slots still to
// drain are left out of the count, and the drain may leave the leaders
// uneven, which a later plan evens out with a few extra moves. That is
// fine: drains are rare and short.
func rebalancePlan(st *state, limit int) []slot.Move {
	t := st.Table
	if t == nil {
		return nil
	}
	if len(st.Draining) == 0 {
		return slot.PlanMoves(t, limit)
	}
	view := *t // shares the follower lists; PlanMoves only reads
	view.Nodes = slices.DeleteFunc(slices.Clone(t.Nodes), func(nd slot.Node) bool { return st.Draining[nd.ID] })
	var plan []slot.Move
	for _, m := range slot.PlanMoves(&view, 0) {
		if st.Draining[m.To] || st.Draining[m.From] {
			continue
		}
		plan = append(plan, m)
		if len(plan) == limit {
			break
		}
	}
	return plan
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
		n.log.Debug("move started", "by", why, "slot", m.Slot, "from", m.From, "to", m.To, "epoch", res.Epoch)
	}
	n.moveRun.begin(n.log, why, len(started), res.Epoch)
	return started, res.Epoch, nil
}

// byAutoRebalance names moves meta started by itself (--auto-rebalance).
const byAutoRebalance = "auto-rebalance"

// moveRun logs slot moves as runs: one line when none is left to start
// or finish, with how many started and how long the run took, and one
// when moves begin where none were in progress if an operator started
// them (auto-rebalance's start is at debug); each move is at debug. A run
// spans auto-rebalance's batches, so a first start's balancing is one
// summary line, not one per batch or per slot.
type moveRun struct {
	mu      sync.Mutex
	active  bool
	by      string
	since   time.Time
	started int
}

// begin counts moves that started; the first of a run is logged.
func (r *moveRun) begin(log *slog.Logger, why string, moves int, epoch uint64) {
	if moves == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started += moves
	if r.active {
		log.Debug("more moves started", "by", why, "moves", moves, "epoch", epoch)
		return
	}
	r.active, r.by, r.since = true, why, time.Now()
	lvl := slog.LevelInfo
	if why == byAutoRebalance {
		lvl = slog.LevelDebug
	}
	log.Log(context.Background(), lvl, "moves started", "by", why, "moves", moves, "epoch", epoch)
}

// end closes the run, if one is open: nothing moves and nothing more is
// planned.
func (r *moveRun) end(log *slog.Logger, epoch uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.active {
		return
	}
	log.Info("moves finished: none in progress", "by", r.by, "moves", r.started,
		"took", time.Since(r.since).Round(time.Millisecond).String(), "epoch", epoch)
	r.active, r.by, r.started = false, "", 0
}
