package dataserver

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
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
	var reconciling, ready, handing []int
	// unplanned counts the promotions of slots whose leader is gone (or
	// that had none): a slot this node takes over from a live leader was
	// a planned move, even when this node missed the tables of the move
	// and so reconciles it.
	promotedN, unplanned := 0, 0
	for s, u := range n.slots {
		a := &t.Slots[s]
		switch {
		case a.Leader == me:
			var from *slot.Assignment
			if old != nil && old.Slots[s].Target == me && t.HasNode(old.Slots[s].Leader) {
				from = &old.Slots[s]
			}
			promoted, isReady := u.lead(a, from)
			if promoted {
				promotedN++
				if old == nil || !t.HasNode(old.Slots[s].Leader) {
					unplanned++
				}
				if isReady {
					ready = append(ready, s)
				} else {
					reconciling = append(reconciling, s)
				}
			}
			if a.Target != "" {
				handing = append(handing, s)
			}
		case t.Follows(me, s):
			u.follow()
		default:
			u.drop()
		}
	}
	n.table.Store(t)
	n.handing.Store(&handing)
	n.repl.update(t)
	n.xdc.poke()
	if promotedN > 0 || old == nil || len(t.LedBy(me)) != len(old.LedBy(me)) {
		// The first table and failovers at info; planned moves at debug.
		lvl := slog.LevelDebug
		if old == nil || unplanned > 0 {
			lvl = slog.LevelInfo
		}
		n.log.Log(context.Background(), lvl, "table adopted", "epoch", t.Epoch, "leads", len(t.LedBy(me)), "follows", len(t.FollowedBy(me)),
			"promoted", promotedN, "unplanned", unplanned, "reconciling", len(reconciling))
	}
	for _, s := range reconciling {
		n.startReconcile(s)
	}
	n.kickPersist(append(slices.Clone(ready), reconciling...))
	for _, s := range ready {
		n.slots[s].announce()
	}
	n.signalAppend()
}

// startReconcile makes a newly led slot wait for every live session to
// reconcile its connection-bound publishers (DRECONCILE / DSYNC), bounded
// by ReconcileTimeout, before it serves reads and pushes.
func (n *Node) startReconcile(s int) {
	u := n.slots[s]
	_, sessions := n.meta.Sessions()
	ids := n.departingSessions()
	for _, m := range sessions {
		ids = append(ids, m.ID)
	}
	epoch, waiting := u.awaitSessions(ids)
	n.log.Debug("new slot leader; reconciling with the sessions", "slot", s, "epoch", epoch, "sessions", len(sessions))
	if !waiting {
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
		if missing, ok := u.giveUpWaiting(epoch); ok {
			n.log.Warn("reconcile timed out; serving the slot without these sessions", "slot", s, "epoch", epoch,
				"sessions", missing, "timeout", n.cfg.ReconcileTimeout)
		}
	}()
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

// handleAlive notes that a session is alive (see proto.DAlive). A session
// whose publishers this node dropped is told so (ErrDropped) until it says
// it has closed its clients' connections (RESET).
func (n *Node) handleAlive(conn redcon.Conn, a *proto.DAlive) {
	n.sessMu.Lock()
	if n.heard == nil {
		n.heard = map[string]time.Time{}
	}
	n.heard[a.Session] = time.Now()
	if a.Reset {
		delete(n.dropped, a.Session)
	}
	err := n.droppedLocked(a.Session)
	n.sessMu.Unlock()
	if err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	// The grace, so that the session knows how long it may go unheard
	// (sessionserver/fence.go).
	conn.WriteInt64(n.cfg.SessionGrace.Milliseconds())
}

// droppedErr is ErrDropped when this node dropped the session's
// publishers and the session has not reset since, else nil.
func (n *Node) droppedErr(session string) error {
	n.sessMu.Lock()
	defer n.sessMu.Unlock()
	return n.droppedLocked(session)
}

func (n *Node) droppedLocked(session string) error {
	at, ok := n.dropped[session]
	if !ok {
		return nil
	}
	return proto.Errorf(proto.ErrDropped, "%d session %s: this data node dropped its publishers; close the clients' connections, then DALIVE RESET",
		at.UnixMilli(), session)
}

// departingSessions lists the sessions within their grace.
func (n *Node) departingSessions() []string {
	n.sessMu.Lock()
	defer n.sessMu.Unlock()
	return slices.Collect(maps.Keys(n.departing))
}

// dropDeparted removes, on every slot this node leads, the connection-bound
// publishers of each session whose grace ran out and that has not sent
// DALIVE here within the grace either, and stops new leaders waiting for
// it. A session that still talks to this node is alive and only cut off
// from meta: it keeps its publishers, and is looked at again later.
func (n *Node) dropDeparted() {
	var gone, kept []string
	n.sessMu.Lock()
	now := time.Now()
	for id, t := range n.departing {
		if now.Sub(t) < n.cfg.SessionGrace {
			continue
		}
		if h, ok := n.heard[id]; ok && now.Sub(h) < n.cfg.SessionGrace {
			kept = append(kept, id)
			continue
		}
		delete(n.departing, id)
		gone = append(gone, id)
		if n.dropped == nil {
			n.dropped = map[string]time.Time{}
		}
		n.dropped[id] = now
	}
	again := len(kept) > 0 && !n.recheck
	n.recheck = n.recheck || again
	n.sessMu.Unlock()
	if len(kept) > 0 {
		sort.Strings(kept)
		n.log.Debug("sessions gone from meta's list still talk to this node; their publishers stay", "sessions", kept)
	}
	if again {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			t := time.NewTimer(n.cfg.SessionGrace / 2)
			defer t.Stop()
			select {
			case <-t.C:
				n.sessMu.Lock()
				n.recheck = false
				n.sessMu.Unlock()
				n.dropDeparted()
			case <-n.stop:
			}
		}()
	}
	if len(gone) == 0 {
		return
	}
	sort.Strings(gone)
	dropped := 0
	for _, u := range n.slots {
		dropped += u.dropSessions(gone)
	}
	n.signalAppend()
	n.log.Info("sessions left the cluster; their publishers are removed", "sessions", gone, "changed_datums", dropped)
}
