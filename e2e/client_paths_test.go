package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"go.uber.org/goleak"
)

// The Go client's DolphinScheduler-style surface (issue 15): paths,
// prefix watches, locks and the connection-state listener, against an
// in-process cluster whose sessions are closed under the client.

// mustPathClient starts a client on sessions, with short health checks
// and backoffs; edit, if given, changes its options first.
func mustPathClient(t *testing.T, edit func(*client.Options), sessions ...string) *client.Client {
	t.Helper()
	o := client.Options{Sessions: sessions, HealthCheckInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: testutil.Quiet}
	if edit != nil {
		edit(&o)
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// stateLog records what a client's state listener heard.
type stateLog struct {
	mu     sync.Mutex
	states []client.State
}

func listenStates(c *client.Client) *stateLog {
	s := &stateLog{}
	c.OnStateChange(func(st client.State) {
		s.mu.Lock()
		s.states = append(s.states, st)
		s.mu.Unlock()
	})
	return s
}

func (s *stateLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.states)
}

// waitFor waits until the listener has heard exactly want, in order.
func (s *stateLog) waitFor(t *testing.T, want ...client.State) {
	t.Helper()
	w := fmt.Sprint(want)
	testutil.WaitFor(t, 15*time.Second, "states "+w, func() (bool, string) {
		got := s.String()
		return got == w, got
	})
}

// eventLog applies a watch's events and records what breaks the rules: a
// version that does not grow for its path, an ADD of a path it holds, an
// UPDATE or REMOVE of one it does not.
type eventLog struct {
	mu      sync.Mutex
	paths   map[string]string
	version map[string]uint64
	events  []client.Event
	bad     []string
}

func newEventLog() *eventLog {
	return &eventLog{paths: map[string]string{}, version: map[string]uint64{}}
}

func (e *eventLog) fn(ev client.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
	if v := e.version[ev.Path]; ev.Version <= v {
		e.bad = append(e.bad, fmt.Sprintf("%s %s: version %d after %d", ev.Type, ev.Path, ev.Version, v))
	}
	e.version[ev.Path] = ev.Version
	_, have := e.paths[ev.Path]
	switch {
	case ev.Type == client.EventAdd && have, ev.Type != client.EventAdd && !have:
		e.bad = append(e.bad, fmt.Sprintf("%s %s at version %d: the path was present=%v", ev.Type, ev.Path, ev.Version, have))
	}
	if ev.Type == client.EventRemove {
		delete(e.paths, ev.Path)
	} else {
		e.paths[ev.Path] = ev.Value
	}
}

func render(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ",")
}

// waitState waits until the events applied so far give exactly want.
func (e *eventLog) waitState(t *testing.T, want map[string]string) {
	t.Helper()
	w := render(want)
	testutil.WaitFor(t, 15*time.Second, "watch state "+w, func() (bool, string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		got := render(e.paths)
		return got == w, got
	})
}

// saw says whether an event of typ for path was delivered, with value
// (any value for "*").
func (e *eventLog) saw(typ client.EventType, path, value string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.events {
		if ev.Type == typ && ev.Path == path && (value == "*" || ev.Value == value) {
			return true
		}
	}
	return false
}

func (e *eventLog) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.bad {
		t.Error(b)
	}
}

func TestClientPathsPutGetDeleteChildrenExists(t *testing.T) {
	cl := mustCluster(t, 2)
	a, b := cl.Sessions[0].Addr(), cl.Sessions[1].Addr()
	ctx := ctxT(t)
	c := mustPathClient(t, nil, a, b)
	other := mustPathClient(t, nil, b)

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(cc *client.Client, path string) (string, uint64, bool) {
		t.Helper()
		v, ver, ok, err := cc.Get(ctx, path)
		must(err)
		return v, ver, ok
	}
	children := func(path string) string {
		t.Helper()
		names, err := other.Children(ctx, path)
		must(err)
		return strings.Join(names, ",")
	}
	exists := func(path string) bool {
		t.Helper()
		ok, err := other.Exists(ctx, path)
		must(err)
		return ok
	}

	must(c.Put(ctx, "/app/workers/w1", "10.0.0.1", true))
	must(c.Put(ctx, "/app/workers/w2", "10.0.0.2", true))
	must(c.PutTTL(ctx, "/app/config/db", "pg://db1", time.Minute))
	v1, ver1, ok := get(other, "/app/workers/w1")
	if !ok || v1 != "10.0.0.1" || ver1 == 0 {
		t.Fatalf("GET w1 via the other session: %q %d %v", v1, ver1, ok)
	}
	// Put again replaces the value, at a higher version.
	must(c.Put(ctx, "/app/workers/w1", "10.0.0.11", true))
	if v, ver, ok := get(other, "/app/workers/w1"); !ok || v != "10.0.0.11" || ver <= ver1 {
		t.Fatalf("GET w1 after a second Put: %q %d %v (first version %d)", v, ver, ok, ver1)
	}
	if v, _, ok := get(c, "/app/config/db"); !ok || v != "pg://db1" {
		t.Fatalf("GET of a TTL value: %q %v", v, ok)
	}
	if _, _, ok := get(c, "/app/workers/none"); ok {
		t.Fatal("GET of a path never set found a value")
	}
	for path, want := range map[string]bool{"/": true, "/app": true, "/app/workers": true, "/app/workers/w2": true,
		"/app/nope": false, "/apps": false} {
		if got := exists(path); got != want {
			t.Errorf("EXISTS %s = %v, want %v", path, got, want)
		}
	}
	if got := children("/"); !slices.Contains(strings.Split(got, ","), "app") {
		t.Errorf("CHILDREN / = %q, want app among them", got)
	}
	if got := children("/app"); got != "config,workers" {
		t.Errorf("CHILDREN /app = %q", got)
	}
	if got := children("/app/workers"); got != "w1,w2" {
		t.Errorf("CHILDREN /app/workers = %q", got)
	}

	must(c.Delete(ctx, "/app/workers/w2"))
	if _, _, ok := get(other, "/app/workers/w2"); ok {
		t.Fatal("w2 still has a value after Delete")
	}
	must(c.Delete(ctx, "/app/workers/w2")) // nothing there: not an error
	// Delete removes a value whoever set it.
	must(other.Delete(ctx, "/app/config/db"))
	if exists("/app/config") {
		t.Fatal("/app/config exists after its one value was deleted")
	}
	if got := children("/app"); got != "workers" {
		t.Errorf("CHILDREN /app after the deletes = %q", got)
	}

	// Bad input is refused before it is sent.
	for name, err := range map[string]error{
		"PUT without a leading /":      c.Put(ctx, "app/x", "v", true),
		"PUT of the root":              c.Put(ctx, "/", "v", false),
		"PUT with a TTL under 1s":      c.PutTTL(ctx, "/app/x", "v", 500*time.Millisecond),
		"DELETE of a path ending in /": c.Delete(ctx, "/app/"),
	} {
		if !errors.Is(err, proto.ErrInvalid) {
			t.Errorf("%s: %v, want proto.ErrInvalid", name, err)
		}
	}
	if _, _, _, err := c.Get(ctx, "/a//b"); !errors.Is(err, proto.ErrInvalid) {
		t.Errorf("GET /a//b: %v, want proto.ErrInvalid", err)
	}

	must(c.Put(ctx, "/app/config/mode", "cluster", false)) // PERSISTENT
	// The client's session stops: its ephemeral value is set again
	// through the other one, and the deleted one does not come back.
	must(cl.Sessions[0].Close())
	testutil.WaitFor(t, 15*time.Second, "w1 set again after the failover", func() (bool, string) {
		st := c.Status()
		v, _, ok := get(other, "/app/workers/w1")
		return st.Ready && st.Session == b && ok && v == "10.0.0.11", fmt.Sprintf("status %+v, w1=%q %v", st, v, ok)
	})
	if _, _, ok := get(other, "/app/workers/w2"); ok {
		t.Fatal("the deleted w2 came back after the failover")
	}
	// Close removes the client's ephemeral values, not its persistent
	// ones.
	must(c.Close())
	if _, _, ok := get(other, "/app/workers/w1"); ok {
		t.Fatal("w1 outlived its client's Close")
	}
	if v, _, ok := get(other, "/app/config/mode"); !ok || v != "cluster" {
		t.Fatalf("the persistent value after its client's Close: %q %v", v, ok)
	}
	if err := c.Put(ctx, "/app/workers/w3", "x", true); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
}

// A prefix watch gets ADD, UPDATE and REMOVE; its client's session is
// closed while another client writes under the prefix: the watch fails
// over, ends on the truth, and no path's version ever goes back. The
// state listener hears CONNECTED, DISCONNECTED, RECONNECTED.
func TestClientPathsWatchFailover(t *testing.T) {
	cl := mustCluster(t, 2)
	a, b := cl.Sessions[0].Addr(), cl.Sessions[1].Addr()
	ctx := ctxT(t)
	writer := mustPathClient(t, nil, b)
	watcher := mustPathClient(t, nil, a, b)
	states := listenStates(watcher)
	truth := map[string]string{}
	put := func(path, v string) {
		t.Helper()
		if err := writer.Put(ctx, path, v, true); err != nil {
			t.Fatal(err)
		}
		truth[path] = v
	}
	del := func(path string) {
		t.Helper()
		if err := writer.Delete(ctx, path); err != nil {
			t.Fatal(err)
		}
		delete(truth, path)
	}
	put("/svc/a", "1")
	put("/svc/b", "1")
	put("/svc/deep/x", "1")
	put("/svcx/outside", "1") // not under /svc/
	delete(truth, "/svcx/outside")

	events := newEventLog()
	w, err := watcher.Watch(ctx, "/svc/", events.fn)
	if err != nil {
		t.Fatal(err)
	}
	events.waitState(t, truth)
	states.waitFor(t, client.StateConnected)
	put("/svc/a", "2")
	del("/svc/b")
	put("/svc/c", "1")
	events.waitState(t, truth)
	for _, e := range []struct {
		typ         client.EventType
		path, value string
	}{{client.EventAdd, "/svc/deep/x", "1"}, {client.EventUpdate, "/svc/a", "2"}, {client.EventRemove, "/svc/b", "1"}, {client.EventAdd, "/svc/c", "1"}} {
		if !events.saw(e.typ, e.path, e.value) {
			t.Errorf("no %s %s=%s delivered", e.typ, e.path, e.value)
		}
	}

	// The watcher's session stops while the writer goes on.
	wrote := make(chan map[string]string, 1)
	go func() {
		mine := maps.Clone(truth)
		for i := range 40 {
			path := fmt.Sprintf("/svc/n%d", i%6)
			if i%4 == 3 {
				if err := writer.Delete(ctx, path); err != nil {
					t.Error(err)
				}
				delete(mine, path)
				continue
			}
			if err := writer.Put(ctx, path, fmt.Sprint(i), true); err != nil {
				t.Error(err)
			}
			mine[path] = fmt.Sprint(i)
		}
		wrote <- mine
	}()
	if err := cl.Sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	truth = <-wrote
	del("/svc/a") // and one change after the failover for sure
	states.waitFor(t, client.StateConnected, client.StateDisconnected, client.StateReconnected)
	if st := watcher.Status(); st.Session != b || st.Failovers != 1 {
		t.Fatalf("watcher status after the failover: %+v", st)
	}
	events.waitState(t, truth)
	if got, want := render(w.Paths()), render(truth); got != want {
		t.Fatalf("Watch.Paths() = %q, want %q", got, want)
	}
	events.check(t)
	if events.saw(client.EventAdd, "/svcx/outside", "*") {
		t.Error("a path outside the prefix was delivered")
	}

	// After Close, no more events.
	w.Close()
	events.mu.Lock()
	n := len(events.events)
	events.mu.Unlock()
	put("/svc/late", "1")
	// A second watch on the same prefix sees the change: the first, closed
	// before it was made, must not have.
	later := newEventLog()
	if _, err := watcher.Watch(ctx, "/svc/", later.fn); err != nil {
		t.Fatal(err)
	}
	later.waitState(t, truth)
	events.mu.Lock()
	defer events.mu.Unlock()
	if len(events.events) != n {
		t.Fatalf("%d events after Watch.Close", len(events.events)-n)
	}
}

// While the watcher has no session, paths are removed, changed and
// added; when it gets one again, it reports each: a removal it can only
// find by looking the parents up (a parent left empty sends no event).
func TestClientPathsWatchSeesChangesWhileAway(t *testing.T) {
	cl := mustCluster(t, 2)
	a, b := cl.Sessions[0].Addr(), cl.Sessions[1].Addr()
	// The watcher's second session is not there yet: its address answers
	// nothing until a session is started on it.
	ln := testutil.MustListen(t)
	late := ln.Addr().String()
	ctx := ctxT(t)
	writer := mustPathClient(t, nil, b)
	watcher := mustPathClient(t, func(o *client.Options) {
		o.CommandTimeout, o.DialTimeout = time.Second, time.Second
	}, a, late)
	states := listenStates(watcher)
	truth := map[string]string{"/away/keep": "1", "/away/gone": "1", "/away/change": "1", "/away/sub/gone2": "1"}
	for _, p := range slices.Sorted(maps.Keys(truth)) {
		if err := writer.Put(ctx, p, truth[p], true); err != nil {
			t.Fatal(err)
		}
	}
	events := newEventLog()
	if _, err := watcher.Watch(ctx, "/away/", events.fn); err != nil {
		t.Fatal(err)
	}
	events.waitState(t, truth)

	if err := cl.Sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	states.waitFor(t, client.StateConnected, client.StateDisconnected)
	for _, p := range []string{"/away/gone", "/away/sub/gone2"} {
		if err := writer.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
		delete(truth, p)
	}
	for p, v := range map[string]string{"/away/change": "2", "/away/new": "1"} {
		if err := writer.Put(ctx, p, v, true); err != nil {
			t.Fatal(err)
		}
		truth[p] = v
	}
	if watcher.Ready() {
		t.Fatal("the watcher found a session although none was there")
	}

	s, err := cl.AddSession("session-late", ln)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	states.waitFor(t, client.StateConnected, client.StateDisconnected, client.StateReconnected)
	events.waitState(t, truth)
	for _, e := range []struct {
		typ         client.EventType
		path, value string
	}{
		{client.EventRemove, "/away/gone", "1"}, {client.EventRemove, "/away/sub/gone2", "1"},
		{client.EventUpdate, "/away/change", "2"}, {client.EventAdd, "/away/new", "1"},
	} {
		if !events.saw(e.typ, e.path, e.value) {
			t.Errorf("no %s %s=%s delivered", e.typ, e.path, e.value)
		}
	}
	events.check(t)
	if st := watcher.Status(); st.Session != late {
		t.Fatalf("watcher on %q, want %q", st.Session, late)
	}
}

// AcquireLock waits in line: waiters of three clients are granted in
// the order they came, each once the one before releases; a held lock
// is renewed past its TTL; a client's own callers take turns; a lock
// whose session is lost is reported lost and goes to the next taker.
func TestClientPathsLocks(t *testing.T) {
	cl := mustCluster(t, 2)
	a, b := cl.Sessions[0].Addr(), cl.Sessions[1].Addr()
	ctx := ctxT(t)
	raw := mustClient(t, b)
	short := func(o *client.Options) { o.LockTTL = 300 * time.Millisecond }
	holder := mustPathClient(t, short, a)
	tok0, err := holder.AcquireLock(ctx, "master")
	if err != nil || tok0 == 0 {
		t.Fatalf("AcquireLock: %d %v", tok0, err)
	}
	if tok, ok := holder.HeldLock("master"); !ok || tok != tok0 {
		t.Fatalf("HeldLock: %d %v", tok, ok)
	}
	// Renewed: the TTL left goes back up, several times, so the lock
	// outlives its 300ms TTL with the same holder and token.
	renewals, lastTTL := 0, int64(-1)
	testutil.WaitFor(t, 10*time.Second, "three renewals", func() (bool, string) {
		info := lockInfo(t, raw, "master")
		if info == nil || info.Token != tok0 {
			t.Fatalf("LOCKINFO while held: %+v", info)
		}
		if lastTTL >= 0 && info.TTLMs > lastTTL {
			renewals++
		}
		lastTTL = info.TTLMs
		return renewals >= 3, fmt.Sprintf("%d renewals, %+v", renewals, info)
	})
	if _, err := mustPathClient(t, nil, b).AcquireLockTimeout("master", 200*time.Millisecond); !errors.Is(err, client.ErrLockTimeout) {
		t.Fatalf("AcquireLockTimeout of a held lock: %v, want ErrLockTimeout", err)
	}

	// The timed-out waiter leaves the line (meta drops it at its deadline).
	testutil.WaitFor(t, 10*time.Second, "no waiter in line", func() (bool, string) {
		info := lockInfo(t, raw, "master")
		return info != nil && info.Waiters == 0, fmt.Sprintf("%+v", info)
	})
	type grant struct {
		i     int
		token uint64
		err   error
	}
	grants := make(chan grant, 3)
	waiters := make([]*client.Client, 3)
	for i := range waiters {
		waiters[i] = mustPathClient(t, nil, []string{a, b}[i%2])
		go func() {
			tok, err := waiters[i].AcquireLock(ctx, "master")
			grants <- grant{i, tok, err}
		}()
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("waiter %d in line", i), func() (bool, string) {
			info := lockInfo(t, raw, "master")
			return info != nil && info.Waiters == i+1, fmt.Sprintf("%+v", info)
		})
	}
	if err := holder.ReleaseLock(ctx, "master"); err != nil {
		t.Fatal(err)
	}
	if err := holder.ReleaseLock(ctx, "master"); !errors.Is(err, client.ErrLockNotHeld) {
		t.Fatalf("second ReleaseLock: %v, want ErrLockNotHeld", err)
	}
	last := tok0
	for want := range waiters {
		select {
		case g := <-grants:
			if g.err != nil || g.i != want || g.token <= last {
				t.Fatalf("grant %d: %+v (last token %d)", want, g, last)
			}
			last = g.token
			if want == len(waiters)-1 {
				// Not reentrant: the holder's own second call waits its turn.
				if _, err := waiters[want].AcquireLockTimeout("master", 100*time.Millisecond); !errors.Is(err, client.ErrLockTimeout) {
					t.Fatalf("a second AcquireLock by the holder: %v, want ErrLockTimeout", err)
				}
			}
			if err := waiters[g.i].ReleaseLock(ctx, "master"); err != nil {
				t.Fatal(err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("grant %d did not come", want)
		}
	}

	// A lock held through a session that stops is reported lost.
	job := mustPathClient(t, nil, a, b)
	states := listenStates(job)
	var lossMu sync.Mutex
	var losses []client.LockLoss
	job.OnLockLost(func(l client.LockLoss) {
		lossMu.Lock()
		losses = append(losses, l)
		lossMu.Unlock()
	})
	jobTok, err := job.AcquireLock(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Sessions[0].Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the lock reported lost", func() (bool, string) {
		lossMu.Lock()
		defer lossMu.Unlock()
		return len(losses) == 1 && losses[0].Name == "job" && losses[0].Token == jobTok && losses[0].Err != nil, fmt.Sprintf("%+v", losses)
	})
	states.waitFor(t, client.StateConnected, client.StateDisconnected, client.StateReconnected)
	if _, ok := job.HeldLock("job"); ok {
		t.Fatal("HeldLock still reports a lost lock")
	}
	if err := job.ReleaseLock(ctx, "job"); !errors.Is(err, client.ErrLockLost) {
		t.Fatalf("ReleaseLock of a lost lock: %v, want ErrLockLost", err)
	}
	next := mustPathClient(t, nil, b)
	tok, err := next.AcquireLockTimeout("job", 20*time.Second)
	if err != nil || tok <= jobTok {
		t.Fatalf("the next taker of the lost lock: %d %v (lost token %d)", tok, err, jobTok)
	}
	if _, err := job.AcquireLockTimeout("job", 100*time.Millisecond); !errors.Is(err, client.ErrLockTimeout) {
		t.Fatalf("AcquireLockTimeout while another holds it: %v, want ErrLockTimeout", err)
	}
	// Close releases: the lock is free at once for the next.
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := job.AcquireLock(ctx2, "job"); err != nil {
		t.Fatalf("AcquireLock after the holder's Close: %v", err)
	}
}

// TestClientPathsCloseLeavesNoGoroutines: Close ends every goroutine the
// path surface starts (watch callbacks, lock renewers and connections,
// the listeners' goroutine, the reconciler), also with an AcquireLock
// waiting in line. The registry runs in another process.
func TestClientPathsCloseLeavesNoGoroutines(t *testing.T) {
	addr, _ := mustDev(t)
	ctx := ctxT(t)
	before := goleak.IgnoreCurrent()
	c := mustPathClient(t, nil, addr)
	other := mustPathClient(t, nil, addr)
	listenStates(c)
	c.OnLockLost(func(client.LockLoss) {})
	if err := c.Put(ctx, "/leak/a", "1", true); err != nil {
		t.Fatal(err)
	}
	events := newEventLog()
	if _, err := c.Watch(ctx, "/leak/", events.fn); err != nil {
		t.Fatal(err)
	}
	events.waitState(t, map[string]string{"/leak/a": "1"})
	if _, err := c.AcquireLock(ctx, "leak-held"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.AcquireLock(ctx, "leak-wait"); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := c.AcquireLock(context.Background(), "leak-wait")
		waiting <- err
	}()
	raw := mustClient(t, addr)
	testutil.WaitFor(t, 10*time.Second, "the waiter in line", func() (bool, string) {
		info := lockInfo(t, raw, "leak-wait")
		return info != nil && info.Waiters == 1, fmt.Sprintf("%+v", info)
	})
	raw.Close()
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	// other's Close handed leak-wait to c, or c still waits: either way
	// c's Close must end it all.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; err != nil && !errors.Is(err, client.ErrClosed) {
		t.Fatalf("AcquireLock waiting at Close: %v", err)
	}
	goleak.VerifyNone(t, before)
}
