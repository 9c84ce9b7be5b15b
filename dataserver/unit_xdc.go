package dataserver

import (
	"github.com/slotreg/slotreg/proto"
)

// The slotUnit's cross-datacenter steps (see xdc.go): the source's side
// of a DXPULL (news, and entries, a snapshot or a position), and the
// receiving leader's (its position, and applying an answer).

// xanswer is a source's answer for one slot of a DXPULL.
type xanswer struct {
	kind       string // "" for no news
	epoch, seq uint64
	es         []LogEntry
	snap       *proto.SlotSnapshot
	from       uint64 // the seq asked from (on the asking side)
}

// xnews says whether a DXPULL position has news here. A slot this node
// does not lead has ("none": the asker looks elsewhere); one it leads but
// is still reconciling with its sessions has not: it could show a remote
// datacenter removals that are not, so the asker waits for it.
func (u *slotUnit) xnews(pos *proto.XPullPos) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	switch {
	case st == nil || !u.leading:
		return true
	case !u.ready:
		return false
	}
	return pos.LeaderEpoch != st.leaderEpoch || pos.Seq != st.seq || pos.Digest != st.local
}

// xsince answers a remote leader at pos with up to max of the local
// writes after it, a snapshot of the local publishers, or a position.
// Entries that were themselves synced from elsewhere stay out. A
// snapshot is sent only within budget, the publishers one answer may
// still carry in snapshots, which it spends (the first always goes);
// past it the slot is answered "wait", and the asker asks again at once.
func (u *slotUnit) xsince(pos *proto.XPullPos, max int, budget *int) xanswer {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	switch {
	case st == nil || !u.leading:
		return xanswer{kind: proto.XPullNone}
	case !u.ready:
		return xanswer{kind: proto.XPullWait}
	}
	if pos.LeaderEpoch == st.leaderEpoch && pos.Seq <= st.seq {
		es, inLog := st.log.since(pos.Seq, max)
		switch {
		case inLog && len(es) > 0:
			a := xanswer{kind: proto.PullLog, epoch: st.leaderEpoch, seq: es[len(es)-1].Seq}
			for i := range es {
				if t := es[i].Op.Type; t == proto.OpRegister || t == proto.OpUnregister {
					a.es = append(a.es, es[i])
				}
			}
			return a
		case inLog && pos.Digest == st.local:
			return xanswer{}
		}
	}
	if pos.Digest == st.local {
		return xanswer{kind: proto.XPullAt, epoch: st.leaderEpoch, seq: st.seq}
	}
	if *budget < st.publishers && *budget < xSnapBudget {
		return xanswer{kind: proto.XPullWait}
	}
	*budget -= st.publishers
	snap := st.localDump()
	return xanswer{kind: proto.PullSnap, epoch: st.leaderEpoch, seq: st.seq, snap: snap}
}

// xposition is where this node, as the slot's leader, stands with dc's
// leader of it; ok is false when it does not lead the slot, or is
// handing it off (the target syncs from where the copy is).
func (u *slotUnit) xposition(dc string) (pos proto.XPullPos, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || !u.leading || u.frozen {
		return pos, false
	}
	pos.Slot = u.id
	if r := st.remote[dc]; r != nil {
		pos.LeaderEpoch, pos.Seq, pos.Digest = r.epoch, r.seq, r.digest
	}
	return pos, true
}

// xapply takes dc's answer for the slot, as its leader, at now (unix
// nanos), and tells the watchers of what changed. A slot it no longer
// leads, or is handing off, ignores it: the answer is asked for again.
func (u *slotUnit) xapply(dc string, a *xanswer, now int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || !u.leading || u.frozen {
		return
	}
	r := st.remoteSlot(dc)
	var changed []string
	switch a.kind {
	case proto.PullLog:
		if a.epoch != r.epoch || a.from != r.seq {
			return // the position moved meanwhile: ask again
		}
		for i := range a.es {
			if st.applyRemote(dc, &a.es[i]) {
				changed = append(changed, a.es[i].Op.DataInfoID)
			}
		}
	case proto.PullSnap:
		changed = st.diffRemote(dc, a.snap)
	case proto.XPullAt:
	default:
		return
	}
	r.epoch, r.seq, r.syncedAt = a.epoch, a.seq, now
	if len(changed) > 0 {
		for _, id := range changed {
			u.notify(id)
		}
		u.log.Debug("synced from a remote datacenter", "slot", u.id, "remote", dc, "kind", a.kind, "changed", len(changed))
	}
}

// xcurrent records that dc's leader of the slot had nothing new for it
// at now.
func (u *slotUnit) xcurrent(dc string, now int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store != nil && u.leading {
		u.store.remoteSlot(dc).syncedAt = now
	}
}

// xexpire drops, as the leader, dc's publishers in the slot when its
// leader there went unheard for longer than after (nanos) at now; the
// clock starts when this node first held the copy as leader. It returns
// how many dataInfoIds changed.
func (u *slotUnit) xexpire(dc string, now, after int64) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || !u.leading || u.frozen {
		return 0
	}
	r := st.remote[dc]
	if r == nil || r.pubs == 0 {
		return 0
	}
	if r.syncedAt == 0 {
		r.syncedAt = now
		return 0
	}
	if now-r.syncedAt <= after {
		return 0
	}
	changed := st.dropRemote(dc)
	for _, id := range changed {
		u.notify(id)
	}
	r.epoch, r.seq = 0, 0
	return len(changed)
}

// xstat is one slot's cross-datacenter state, as this node's leader of
// it holds it for one remote datacenter.
type xstat struct {
	pubs     int
	epoch    uint64
	seq      uint64
	syncedAt int64
}

// xstats returns, by datacenter, the slot's remote state; leading says
// whether this node leads the slot (followers hold the publishers but no
// sync position).
func (u *slotUnit) xstats() (out map[string]xstat, leading bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil {
		return nil, false
	}
	out = make(map[string]xstat, len(st.remote))
	for dc, r := range st.remote {
		out[dc] = xstat{pubs: r.pubs, epoch: r.epoch, seq: r.seq, syncedAt: r.syncedAt}
	}
	return out, u.leading
}
