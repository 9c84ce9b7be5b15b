package dataserver

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// onTable adopts a newer table. For each slot the node now:
//   - leads: a follower's copy is promoted (a planned handoff is ready at
//     once; after a failover the slot first reconciles with every live
//     session and raises every datum's version); a slot with no copy here
//     starts empty and reconciles;
//   - follows: a copy is kept (a demoted leader keeps its data) and pulled
//     from the leader;
//   - neither: the copy is dropped.
func (n *Node) onTable(t *slot.Table) {
	n.tableMu.Lock()
	defer n.tableMu.Unlock()
	old := n.table.Load()
	if old != nil && old.Epoch >= t.Epoch {
		return
	}
	me := n.cfg.NodeID
	var promoted, reconciling, ready, handing []int
	for s := 0; s < slot.Count; s++ {
		a := &t.Slots[s]
		st := n.stores[s].Load()
		switch {
		case a.Leader == me:
			if st == nil {
				st = newSlotStore(s, a.LeaderEpoch, n.cfg.OpLogSize)
				n.stores[s].Store(st)
			}
			st.mu.Lock()
			if !st.leading {
				planned := old != nil && old.Slots[s].Target == me && t.HasNode(old.Slots[s].Leader) &&
					st.leaderEpoch == old.Slots[s].LeaderEpoch
				st.leading = true
				st.leaderEpoch = a.LeaderEpoch
				clear(st.acked)
				promoted = append(promoted, s)
				if planned {
					st.ready = true
					ready = append(ready, s)
				} else {
					// Whatever the old leader pushed and we lack, our
					// versions now supersede it.
					st.touch()
					st.ready = false
					reconciling = append(reconciling, s)
				}
			} else if a.LeaderEpoch > st.leaderEpoch {
				st.leaderEpoch = a.LeaderEpoch
			}
			if st.target != a.Target {
				st.target = a.Target
				st.frozen = false
			}
			if a.Target != "" {
				handing = append(handing, s)
			}
			st.mu.Unlock()
		case t.Follows(me, s):
			if st == nil {
				n.stores[s].Store(newSlotStore(s, 0, n.cfg.OpLogSize))
				continue
			}
			st.mu.Lock()
			if st.leading {
				st.leading, st.ready, st.frozen, st.target, st.waiting = false, false, false, "", nil
			}
			st.mu.Unlock()
		default:
			if st != nil {
				st.mu.Lock()
				st.retired = true
				st.mu.Unlock()
				n.stores[s].Store(nil)
			}
		}
	}
	n.table.Store(t)
	n.handing.Store(&handing)
	n.repl.update(t)
	if len(promoted) > 0 || old == nil || len(t.LedBy(me)) != len(old.LedBy(me)) {
		n.log.Info("table adopted", "epoch", t.Epoch, "leads", len(t.LedBy(me)), "follows", len(t.FollowedBy(me)),
			"promoted", len(promoted), "reconciling", len(reconciling))
	}
	for _, s := range reconciling {
		n.startReconcile(s)
	}
	for _, s := range ready {
		n.watch[s].notifyAll()
	}
	n.signalAppend()
}

// startReconcile makes a newly led slot wait for every live session to
// reconcile its connection-bound publishers (DRECONCILE / DSYNC), bounded
// by ReconcileTimeout, before it serves reads and pushes.
func (n *Node) startReconcile(s int) {
	st := n.stores[s].Load()
	if st == nil {
		return
	}
	_, sessions := n.meta.Sessions()
	departing := n.departingSessions()
	st.mu.Lock()
	st.waiting = make(map[string]struct{}, len(sessions)+len(departing))
	for _, m := range sessions {
		st.waiting[m.ID] = struct{}{}
	}
	for _, id := range departing {
		st.waiting[id] = struct{}{}
	}
	epoch := st.leaderEpoch
	done := len(st.waiting) == 0
	if done {
		st.ready = true
	}
	st.mu.Unlock()
	n.log.Debug("new slot leader; reconciling with the sessions", "slot", s, "epoch", epoch, "sessions", len(sessions))
	if done {
		n.watch[s].notifyAll()
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		timer := time.NewTimer(n.cfg.ReconcileTimeout)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-n.stop:
			return
		}
		st.mu.Lock()
		if st.ready || !st.leading || st.leaderEpoch != epoch {
			st.mu.Unlock()
			return
		}
		missing := make([]string, 0, len(st.waiting))
		for id := range st.waiting {
			missing = append(missing, id)
		}
		sort.Strings(missing)
		st.ready, st.waiting = true, nil
		st.mu.Unlock()
		n.log.Warn("reconcile timed out; serving the slot without these sessions", "slot", s, "epoch", epoch,
			"sessions", missing, "timeout", n.cfg.ReconcileTimeout)
		n.watch[s].notifyAll()
	}()
}

// reconciled marks a session done with slot s; the last one makes it ready.
func (n *Node) reconciled(st *slotStore, session string) (nowReady bool) {
	if st.ready || st.waiting == nil {
		return false
	}
	delete(st.waiting, session)
	if len(st.waiting) == 0 {
		st.ready, st.waiting = true, nil
		n.log.Debug("slot reconciled with every live session; serving it", "slot", st.id, "epoch", st.leaderEpoch, "last", session)
		return true
	}
	return false
}

// onSessions learns the live session nodes. A session gone from the list
// keeps its connection-bound publishers here for SessionGrace: meta may
// have evicted a live session (it was cut off from meta, or still looking
// for a new meta leader), which joins again within a few heartbeats, and
// dropping its publishers would tell every subscriber a live publisher
// went. One still missing when the grace runs out is dropped (see
// dropDeparted); a new leader waits for departing sessions too.
func (n *Node) onSessions(_ uint64, sessions []proto.Member) {
	live := make(map[string]struct{}, len(sessions))
	for _, m := range sessions {
		live[m.ID] = struct{}{}
	}
	now := time.Now()
	var gone, back []string
	n.sessMu.Lock()
	prev := n.sessions
	n.sessions = live
	for id := range n.departing {
		if _, ok := live[id]; ok {
			delete(n.departing, id)
			back = append(back, id)
		}
	}
	for id := range prev {
		if _, ok := live[id]; !ok {
			if n.departing == nil {
				n.departing = map[string]time.Time{}
			}
			n.departing[id] = now
			gone = append(gone, id)
		}
	}
	n.sessMu.Unlock()
	if len(back) > 0 {
		sort.Strings(back)
		n.log.Info("sessions are back in meta's list within their grace; their publishers stay", "sessions", back)
	}
	if len(gone) == 0 {
		return
	}
	sort.Strings(gone)
	n.log.Info("sessions left meta's list; their publishers go unless they are back in time",
		"sessions", gone, "grace", n.cfg.SessionGrace)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTimer(n.cfg.SessionGrace)
		defer t.Stop()
		select {
		case <-t.C:
			n.dropDeparted()
		case <-n.stop:
		}
	}()
}

// departingSessions lists the sessions within their grace.
func (n *Node) departingSessions() []string {
	n.sessMu.Lock()
	defer n.sessMu.Unlock()
	return slices.Collect(maps.Keys(n.departing))
}

// dropDeparted removes, on every slot this node leads, the connection-bound
// publishers of each session whose grace ran out, and stops new leaders
// waiting for it.
func (n *Node) dropDeparted() {
	var gone []string
	n.sessMu.Lock()
	for id, t := range n.departing {
		if time.Since(t) >= n.cfg.SessionGrace {
			delete(n.departing, id)
			gone = append(gone, id)
		}
	}
	n.sessMu.Unlock()
	if len(gone) == 0 {
		return
	}
	sort.Strings(gone)
	dropped := 0
	for s := range n.stores {
		st := n.stores[s].Load()
		if st == nil {
			continue
		}
		var changed []string
		becameReady := false
		st.mu.Lock()
		if st.leading {
			for _, id := range gone {
				changed = append(changed, st.dropSession(id)...)
				if st.waiting != nil {
					becameReady = n.reconciled(st, id) || becameReady
				}
			}
		}
		st.mu.Unlock()
		dropped += len(changed)
		for _, id := range changed {
			n.watch[s].notify(id)
		}
		if becameReady {
			n.watch[s].notifyAll()
		}
	}
	n.signalAppend()
	n.log.Info("sessions left the cluster; their publishers are removed", "sessions", gone, "changed_datums", dropped)
}
