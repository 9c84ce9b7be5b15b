package dataserver

import (
	"context"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// PERSISTENT paths live durably in the meta group (meta/persist.go); a
// slot's leader holds them as publishers, synced from meta's list of the
// slot: when it comes to lead the slot (after a failover, a move, or a
// restart of the whole cluster, when every copy in memory is gone), when
// a session that changed one asks (DPSYNC), and whenever meta's revision
// moved past what a led slot holds (checked every persistCheck).

// persistCheck is how often a data node asks meta whether PERSISTENT
// paths changed without it hearing (a DPSYNC that never came): one small
// request when nothing did.
const persistCheck = 5 * time.Second

// persistLoop syncs the slots this node comes to lead, and checks meta's
// revision every persistCheck.
func (n *Node) persistLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(persistCheck)
	defer tick.Stop()
	for {
		var slots []int
		select {
		case <-n.stop:
			return
		case slots = <-n.persistKick:
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.syncPersist(ctx, slots)
		cancel()
		if err != nil {
			n.log.Debug("PERSISTENT paths not synced from meta; will retry", "err", err)
		}
	}
}

// kickPersist asks the loop to sync slots this node just came to lead.
func (n *Node) kickPersist(slots []int) {
	if len(slots) == 0 {
		return
	}
	select {
	case n.persistKick <- slots:
	default:
		// The loop is busy: its next check finds them behind meta.
	}
}

// syncPersist brings the given slots, and every led slot behind meta's
// revision, up to meta's list.
func (n *Node) syncPersist(ctx context.Context, slots []int) error {
	if len(slots) == 0 {
		v, err := n.persistRPC.Do(ctx, (&proto.MPSlots{}).Args()...)
		if err != nil {
			return err
		}
		ps, err := parsePersist(v)
		if err != nil {
			return err
		}
		for s, u := range n.slots {
			if u.behind(ps.Rev) {
				slots = append(slots, s)
			}
		}
		if len(slots) == 0 {
			return nil
		}
	}
	v, err := n.persistRPC.Do(ctx, (&proto.MPSlots{Slots: slots}).Args()...)
	if err != nil {
		return err
	}
	ps, err := parsePersist(v)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	for _, s := range slots {
		n.slots[s].syncPersist(ps.Rev, ps.Slots[s], now)
	}
	return nil
}

func parsePersist(v any) (*proto.PersistSlots, error) {
	b, _ := v.(string)
	return proto.ParsePersistSlots([]byte(b))
}

// handleDPSync answers DPSYNC: once the slot holds its PERSISTENT paths
// as of rev at least, the version of the datum named.
func (n *Node) handleDPSync(conn redcon.Conn, d *proto.DPSync) {
	if slot.Of(d.DataInfoID) != d.Slot {
		conn.WriteError(proto.ToRESP(proto.Errorf(proto.ErrInvalid, "%q is not in slot %d", proto.Clip([]byte(d.DataInfoID)), d.Slot)))
		return
	}
	u := n.slots[d.Slot]
	if u.behind(d.Rev) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.syncPersist(ctx, []int{d.Slot})
		cancel()
		if err != nil {
			conn.WriteError(proto.ToRESP(proto.Errorf(proto.ErrUnavailable, "PERSISTENT paths of slot %d not synced from meta: %v", d.Slot, err)))
			return
		}
	}
	dt, err := n.snapshot(d.DataInfoID)
	if err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	conn.WriteUint64(dt.Version)
}
