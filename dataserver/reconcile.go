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

func (n *Node) handleReconcile(conn redcon.Conn, r *proto.DReconcile) {
	n.catchUpSlots(r.Slots)
	conn.WriteArray(len(r.Slots))
	for _, sd := range r.Slots {
		equal, ok := n.slots[sd.Slot].compareDigest(r.Session, r.Stamp, sd.LeaderEpoch, sd.Digest)
		switch {
		case !ok:
			conn.WriteInt(-1)
		case equal:
			conn.WriteInt(1)
		default:
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

func (n *Node) handleSync(conn redcon.Conn, s *proto.DSync) {
	n.catchUpSlots([]proto.SlotDigest{{Slot: s.Slot, LeaderEpoch: s.LeaderEpoch}})
	if err := n.fenced(); err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	if err := n.droppedErr(s.Session); err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	changed, target, err := n.slots[s.Slot].syncSession(s.Session, s.Zone, s.LeaderEpoch, s.Stamp, s.Pubs)
	if err != nil {
		conn.WriteError(proto.ToRESP(n.refused(s.Slot, target, err)))
		return
	}
	if len(changed) > 0 {
		n.log.Info("reconciled slot with session", "slot", s.Slot, "session", s.Session, "repairs", len(changed))
		n.repairs.Add(uint64(len(changed)))
		n.signalAppend()
	}
	conn.WriteInt(len(changed))
}
