package sessionserver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// reconcileLoop keeps every slot leader's view of this session's
// connection-bound publishers equal to the session's own:
//   - at once for slots that changed leader (a new leader waits for this
//     before it serves the slot), retrying until the leader answers;
//   - every ReconcileInterval for all slots, as a backstop, skipping slots
//     with writes in flight (their digests legitimately differ for a
//     moment).
func (n *Node) reconcileLoop() {
	defer n.bgWg.Done()
	tick := time.NewTicker(n.cfg.ReconcileInterval)
	defer tick.Stop()
	pending := make(map[int]time.Time) // slot -> first asked
	var retry <-chan time.Time
	for {
		select {
		case <-n.stop:
			return
		case slots := <-n.kick:
			now := time.Now()
			for _, s := range slots {
				if _, ok := pending[s]; !ok {
					pending[s] = now
				}
			}
		case <-retry:
			retry = nil
		case <-tick.C:
			var all []int
			for s := 0; s < slot.Count; s++ {
				if _, ok := pending[s]; !ok && n.router.slotInflight[s].Load() == 0 {
					all = append(all, s)
				}
			}
			n.reconcile(all, backstopTimeout)
			continue
		}
		if len(pending) == 0 {
			continue
		}
		slots := make([]int, 0, len(pending))
		for s := range pending {
			slots = append(slots, s)
		}
		failed := n.reconcile(slots, kickTimeout)
		now := time.Now()
		for _, s := range slots {
			if failed[s] && now.Sub(pending[s]) < 30*time.Second {
				continue
			}
			if failed[s] {
				n.log.Warn("gave up reconciling a slot; the periodic check will try again", "slot", s)
			}
			delete(pending, s)
		}
		if len(pending) > 0 && retry == nil {
			retry = time.After(50 * time.Millisecond)
		}
	}
}

// kickReconcile asks the loop to reconcile slots now.
func (n *Node) kickReconcile(slots []int) {
	select {
	case n.kick <- slots:
	case <-n.stop:
	}
}

// How long one leader may take to answer a DRECONCILE: a slot that changed
// leader (kickTimeout) is worth waiting for; the periodic backstop is not,
// since the loop is busy meanwhile and a kick for a new leader (who waits
// for this session before it serves) must not queue behind a dead one.
const (
	kickTimeout     = 3 * time.Second
	backstopTimeout = time.Second
)

// reconcile compares digests for slots with their leaders and sends the
// publisher list of every slot that differs, to every leader at once, so
// one that does not answer (cut off, or gone and not yet replaced in the
// table) delays no other. It returns the slots it could not settle (no
// leader, leader not there yet, network).
func (n *Node) reconcile(slots []int, timeout time.Duration) (failed map[int]bool) {
	failed = make(map[int]bool)
	t := n.table.Load()
	if t == nil {
		for _, s := range slots {
			failed[s] = true
		}
		return failed
	}
	byAddr := make(map[string][]proto.SlotDigest)
	for _, s := range slots {
		addr, ok := t.Addr(t.Slots[s].Leader)
		if !ok {
			failed[s] = true
			continue
		}
		byAddr[addr] = append(byAddr[addr], proto.SlotDigest{Slot: s, LeaderEpoch: t.Slots[s].LeaderEpoch, Digest: n.pubs.digestOf(s)})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for addr, sds := range byAddr {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bad := n.reconcileWith(n.router.link(addr), sds, timeout)
			mu.Lock()
			for _, s := range bad {
				failed[s] = true
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n.refreshTable(ctx)
		cancel()
	}
	return failed
}

// reconcileWith settles sds with one leader and returns the slots it could
// not.
func (n *Node) reconcileWith(l *link, sds []proto.SlotDigest, timeout time.Duration) (failed []int) {
	req := proto.DReconcile{Session: n.cfg.NodeID, Stamp: n.router.stamp(), Slots: sds}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	vals, err := l.rdb.Do(ctx, req.Args()...).Slice()
	cancel()
	if err != nil || len(vals) != len(sds) {
		for _, sd := range sds {
			failed = append(failed, sd.Slot)
		}
		return failed
	}
	for i, v := range vals {
		sd := sds[i]
		switch r, _ := v.(int64); r {
		case 1:
		case 0:
			if !n.syncSlot(l, sd) {
				failed = append(failed, sd.Slot)
			}
		default:
			failed = append(failed, sd.Slot)
		}
	}
	return failed
}

// digestAgrees asks the leader whether its digest of this session's
// publishers in sd's slot equals the session's as it is now.
func (n *Node) digestAgrees(ctx context.Context, l *link, sd proto.SlotDigest) bool {
	sd.Digest = n.pubs.digestOf(sd.Slot)
	req := proto.DReconcile{Session: n.cfg.NodeID, Stamp: n.router.stamp(), Slots: []proto.SlotDigest{sd}}
	vals, err := l.rdb.Do(ctx, req.Args()...).Slice()
	if err != nil || len(vals) != 1 {
		return false
	}
	r, _ := vals[0].(int64)
	return r == 1
}

// syncSlot sends the leader the session's whole list of sd's slot's
// publishers, unless a second look with the slot's writes held back
// shows that the leader has them already.
func (n *Node) syncSlot(l *link, sd proto.SlotDigest) bool {
	ctx, cancel := context.WithTimeout(context.Background(), kickTimeout)
	defer cancel()
	g := &n.router.gates[sd.Slot]
	if !g.beginSync(ctx) {
		return false
	}
	defer g.endSync()
	// The digest that differed was taken with writes in flight, which
	// make it differ for a moment on any busy slot (a slot that just
	// moved, with writers on it, nearly always). With the slot's writes
	// held back and none in flight, ask once more: only a difference that
	// remains needs the whole list, whose transfer holds the slot's writes
	// back for as long as it takes (300 ms for 100k publishers).
	if n.digestAgrees(ctx, l, sd) {
		return true
	}
	// Stamped once no write of the slot is in flight and before the list
	// is taken: a write let through later (this sync given up on, say) is
	// stamped after it, and the leader refuses the sync if it comes late.
	req := proto.DSync{Session: n.cfg.NodeID, Zone: n.cfg.Zone, Slot: sd.Slot, LeaderEpoch: sd.LeaderEpoch, Stamp: n.router.stamp()}
	req.Pubs = n.pubs.syncList(sd.Slot)
	changes, err := l.rdb.Do(ctx, req.Args()...).Int()
	if err != nil {
		if perr := fromRedis(err); errors.Is(perr, proto.ErrDropped) {
			n.onDropped(l.addr, perr)
		}
		n.log.Warn("sync slot", "slot", sd.Slot, "leader", l.addr, "err", err)
		return false
	}
	if changes > 0 {
		n.stats.repairs.Add(uint64(changes))
		n.log.Info("leader was missing publishers of this session; repaired", "slot", sd.Slot, "repairs", changes)
	}
	return true
}
