package sessionserver

import (
	"context"
	"sync"
	"time"
)

// slotGate orders a slot's DSYNC against its writes. A DSYNC carries the
// session's whole list of the slot's publishers as it was when the list
// was taken, and travels on another connection than the writes: a write
// made after the list was taken could reach the leader first and be undone
// by the older list (a live publisher removed until the next reconcile).
// So a sync stops new writes to its slot, waits until none is in flight,
// takes the list and holds the writes back until the leader has answered;
// a write that was waiting then goes out after the list, as it should.
type slotGate struct {
	mu      sync.Mutex
	writes  int           // in flight: submitted, not yet settled
	waiting int           // held back by a sync, not yet in
	idle    chan struct{} // closed when writes drops to 0 while a sync waits
	sync    chan struct{} // non-nil while a sync runs; closed at its end
}

// enterWrite counts a write in, after any sync of the slot has finished,
// and says so; false if deadline came first (the write is not sent). A
// write held back goes before the next sync: syncs one after another (a
// leader slow to answer them) must not hold it back twice.
func (g *slotGate) enterWrite(deadline time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	var timer *time.Timer
	for g.sync != nil {
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		wait := g.sync
		g.waiting++
		g.mu.Unlock()
		expired := false
		select {
		case <-wait:
		case <-timer.C:
			expired = true
		}
		g.mu.Lock()
		g.waiting--
		if expired {
			return false
		}
	}
	g.writes++
	return true
}

// exitWrite counts a settled write out.
func (g *slotGate) exitWrite() {
	g.mu.Lock()
	g.writes--
	if g.writes == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
	g.mu.Unlock()
}

// beginSync holds new writes back and waits until no write is in flight.
// If ctx ends first, or writes held back by the last sync have not gone
// in yet, it lets the writes go and returns false: the sync is tried
// again later. On true the caller must call endSync.
func (g *slotGate) beginSync(ctx context.Context) bool {
	g.mu.Lock()
	if g.sync != nil || g.waiting > 0 {
		g.mu.Unlock()
		return false
	}
	g.sync = make(chan struct{})
	if g.writes == 0 {
		g.mu.Unlock()
		return true
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		g.endSync()
		return false
	}
}

// endSync lets the slot's writes go again.
func (g *slotGate) endSync() {
	g.mu.Lock()
	close(g.sync)
	g.sync, g.idle = nil, nil
	g.mu.Unlock()
}
