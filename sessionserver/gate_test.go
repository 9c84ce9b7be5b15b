package sessionserver

import (
	"context"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// A sync waits for the writes in flight, holds new ones back until it
// ends, and gives up (letting writes go) when its context ends first.
func TestSlotGate(t *testing.T) {
	var g slotGate
	g.enterWrite(time.Now().Add(time.Minute)) // one write in flight

	began := make(chan bool, 1)
	go func() { began <- g.beginSync(context.Background()) }()
	select {
	case <-began:
		t.Fatal("sync began while a write was in flight")
	case <-time.After(50 * time.Millisecond):
	}

	// A new write now waits for the sync.
	entered := make(chan struct{})
	go func() { g.enterWrite(time.Now().Add(time.Minute)); close(entered) }()

	g.exitWrite()
	if ok := <-began; !ok {
		t.Fatal("sync did not begin once the write settled")
	}
	select {
	case <-entered:
		t.Fatal("a write went out during the sync")
	case <-time.After(50 * time.Millisecond):
	}
	g.endSync()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the held write did not go out after the sync")
	}

	// The write is in flight again: a sync with a short deadline gives
	// up, and writes are not held back afterwards.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if g.beginSync(ctx) {
		t.Fatal("sync began with a write in flight")
	}
	done := make(chan struct{})
	go func() { g.enterWrite(time.Now().Add(time.Minute)); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a write was held back after the sync gave up")
	}
	g.exitWrite()
	g.exitWrite()
	mustBeginSync(t, &g, "sync with nothing in flight did not begin")
	g.endSync()
}

// A write held back by a sync goes before the next sync, however soon
// that one is asked for.
func TestSlotGateWriteBeforeNextSync(t *testing.T) {
	var g slotGate
	mustBeginSync(t, &g, "first sync did not begin")
	entered := make(chan struct{})
	go func() { g.enterWrite(time.Now().Add(time.Minute)); close(entered) }()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.waiting == 1, "the write was never held back"
	})
	// The next sync, asked for at once: refused while the write is still
	// waking (before the fix it began and held the write back again), or,
	// if the write got in first, waiting for it and giving up at its
	// deadline. Either way the write is not held back twice.
	g.endSync()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if g.beginSync(ctx) {
		t.Fatal("a sync began before the write it had held back went in")
	}
	<-entered
	g.exitWrite()
	mustBeginSync(t, &g, "a sync with nothing waiting or in flight did not begin")
	g.endSync()
}

// A write held back past its deadline is not counted in, and the sync
// then runs on unhindered by it.
func TestSlotGateWriteGivesUpAtItsDeadline(t *testing.T) {
	var g slotGate
	mustBeginSync(t, &g, "sync did not begin")
	if g.enterWrite(time.Now().Add(20 * time.Millisecond)) {
		t.Fatal("a write went in while the sync ran")
	}
	g.mu.Lock()
	writes, waiting := g.writes, g.waiting
	g.mu.Unlock()
	if writes != 0 || waiting != 0 {
		t.Fatalf("after giving up: %d writes in flight, %d waiting", writes, waiting)
	}
	g.endSync()
	if !g.enterWrite(time.Now().Add(time.Second)) {
		t.Fatal("a write with no sync running did not go in")
	}
}

// mustBeginSync begins a sync that nothing should hold up; why says what
// failed otherwise.
func mustBeginSync(t *testing.T, g *slotGate, why string) {
	t.Helper()
	if !g.beginSync(context.Background()) {
		t.Fatal(why)
	}
}

// A connection's REGISTER and UNREGISTER change the session's list of
// publishers only once they have passed their slot's gate: a reconcile
// holding the slot's writes back sends a list without the change, not
// one with a publisher the leader cannot have yet ("leader was missing
// publishers; repaired") or without one it still has.
func TestListChangesWaitForTheSlotGate(t *testing.T) {
	addr, _ := fakeData(t, func(proto.Op) any { return int64(1) })
	n := routedNode(t, 3*time.Second)
	n.pubs.init()
	n.table.Store(leadAll(5, "d1", addr))
	defer n.router.close()
	c := mustConn(t, n)
	s := slot.Of("svc")
	g := &n.router.gates[s]
	listed := func() int { return len(n.pubs.syncList(s)) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	held := func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.waiting == 1
	}
	for _, step := range []struct {
		args []string
		want int // publishers listed once the write has gone in
	}{
		{[]string{"REGISTER", "svc", "r1", "d"}, 1},
		{[]string{"UNREGISTER", "svc", "r1"}, 0},
	} {
		mustBeginSync(t, g, "sync did not begin")
		done := make(chan struct{})
		go func() {
			defer close(done)
			if got := do(t, c, step.args...); len(got) != 1 || got[0] != int64(1) {
				t.Errorf("%s: reply %#v", step.args[0], got)
			}
		}()
		waitFor(step.args[0]+" was not held at the gate", held)
		if got := listed(); got == step.want {
			t.Fatalf("%s changed the list to %d publishers while a sync held the slot", step.args[0], got)
		}
		g.endSync()
		waitFor(step.args[0]+" did not change the list once in", func() bool { return listed() == step.want })
		<-done
	}
}
