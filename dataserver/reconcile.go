package dataserver

import (
	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/redcon"
)

// A session is the source of truth for its connection-bound publishers. It
// keeps a digest of them per slot; DRECONCILE compares digests with the
// leader's, and DSYNC sends the whole list of a slot whose digests differ.
// A new leader waits for every live session to do this before it serves
// the slot (see startReconcile), and sessions repeat it periodically as a
// backstop against anything lost on the way.

func (n *Node) handleReconcile(conn redcon.Conn, args [][]byte) {
	r, err := proto.ParseDReconcile(args)
	if err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	n.catchUpSlots(r.Slots)
	conn.WriteArray(len(r.Slots))
	for _, sd := range r.Slots {
		st := n.stores[sd.Slot].Load()
		if st == nil {
			conn.WriteInt(-1)
			continue
		}
		st.mu.Lock()
		if !st.leading || st.retired || st.leaderEpoch != sd.LeaderEpoch {
			st.mu.Unlock()
			conn.WriteInt(-1)
			continue
		}
		var have proto.Digest
		if d := st.digests[r.Session]; d != nil {
			have = *d
		}
		equal := have == sd.Digest
		ready := equal && n.reconciled(st, r.Session)
		st.mu.Unlock()
		if ready {
			n.watch[sd.Slot].notifyAll()
		}
		if equal {
			conn.WriteInt(1)
		} else {
			conn.WriteInt(0)
		}
	}
}

// catchUpSlots refreshes the table when a session names a leader epoch
// newer than this node knows: it learned of a promotion first.
func (n *Node) catchUpSlots(sds []proto.SlotDigest) {
	t := n.table.Load()
	if t == nil {
		return
	}
	for _, sd := range sds {
		if sd.LeaderEpoch > t.Slots[sd.Slot].LeaderEpoch {
			n.catchUp(t.Epoch + 1)
			return
		}
	}
}

func (n *Node) handleSync(conn redcon.Conn, args [][]byte) {
	s, err := proto.ParseDSync(args)
	if err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	n.catchUpSlots([]proto.SlotDigest{{Slot: s.Slot, LeaderEpoch: s.LeaderEpoch}})
	st := n.stores[s.Slot].Load()
	if st == nil {
		conn.WriteError(proto.ToRESP(n.ownerError(s.Slot)))
		return
	}
	st.mu.Lock()
	if !st.leading || st.retired || st.leaderEpoch != s.LeaderEpoch {
		st.mu.Unlock()
		conn.WriteError(proto.ToRESP(n.ownerError(s.Slot)))
		return
	}
	if st.frozen {
		// Handing off: the target has caught up with the log, and what a
		// sync changed now would not reach it. The session syncs with
		// whichever node leads next.
		t, target := n.table.Load(), st.target
		st.mu.Unlock()
		conn.WriteError(proto.ToRESP(&proto.NotOwnerError{Slot: s.Slot, Owner: target, Addr: addrOf(t, target), Epoch: t.Epoch}))
		return
	}
	n.log.Debug("sync request", "slot", s.Slot, "session", s.Session, "publishers", len(s.Pubs), "digest", st.digests[s.Session])
	changed := st.sync(s.Session, s.Pubs)
	ready := n.reconciled(st, s.Session)
	st.mu.Unlock()
	if len(changed) > 0 {
		n.log.Info("reconciled slot with session", "slot", s.Slot, "session", s.Session, "repairs", len(changed))
		n.repairs.Add(uint64(len(changed)))
		n.signalAppend()
	}
	for _, id := range changed {
		n.watch[s.Slot].notify(id)
	}
	if ready {
		n.watch[s.Slot].notifyAll()
	}
	conn.WriteInt(len(changed))
}
