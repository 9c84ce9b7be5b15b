package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/sessionserver"
)

// shared is one in-process cluster (a meta, two data nodes) for every
// test in the package; each test adds the sessions it needs, so one test
// stopping its sessions leaves the others alone.
var shared *cluster.Local

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "slotreg-client-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cl, err := cluster.Start(cluster.Options{
			Dir: dir, Data: 2, Sessions: 1,
			Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second, Logger: testutil.Quiet,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := cl.WaitReady(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		shared = cl
		return m.Run()
	}())
}

var sessionSeq atomic.Int64

// mustSession adds a session to the shared cluster, on ln if given, and
// waits until it routes every slot; it is stopped when the test ends.
func mustSession(t *testing.T, ln net.Listener) *sessionserver.Node {
	t.Helper()
	s, err := shared.AddSession(fmt.Sprintf("t-session%d", sessionSeq.Add(1)), ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	testutil.Eventually(t, 20*time.Second, func() (bool, string) { return s.Ready(), "session has no full slot table" })
	return s
}

func mustNew(t *testing.T, sessions ...string) *Client {
	t.Helper()
	c, err := New(Options{Sessions: sessions, Logger: testutil.Quiet, HealthCheckInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recorder keeps every snapshot a subscription delivered.
type recorder struct {
	mu    sync.Mutex
	snaps []Snapshot
}

func (r *recorder) fn(s Snapshot) {
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	r.mu.Unlock()
}

func (r *recorder) last() (Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return Snapshot{}, false
	}
	return r.snaps[len(r.snaps)-1], true
}

// checkMonotonic fails the test if versions ever did not grow.
func (r *recorder) checkMonotonic(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.snaps); i++ {
		if r.snaps[i].Version <= r.snaps[i-1].Version {
			t.Errorf("delivery %d: version %d after %d", i, r.snaps[i].Version, r.snaps[i-1].Version)
		}
	}
}

func render(pubs []Publisher) string {
	out := make([]string, 0, len(pubs))
	for _, p := range pubs {
		out = append(out, p.RegisterID+"="+p.Data)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// waitFor waits until the recorder's newest snapshot has exactly want.
func (r *recorder) waitFor(t *testing.T, want string) Snapshot {
	t.Helper()
	var s Snapshot
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		var ok bool
		s, ok = r.last()
		return ok && render(s.Publishers) == want, fmt.Sprintf("last snapshot %q, want %q", render(s.Publishers), want)
	})
	return s
}

// rawLookup asks a session directly, outside the client under test.
func rawLookup(t *testing.T, addr, id string) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer rdb.Close()
	res, err := rdb.Do(context.Background(), proto.CmdLookup, id).Slice()
	if err != nil {
		t.Fatalf("LOOKUP %s via %s: %v", id, addr, err)
	}
	var pubs []Publisher
	for _, p := range res[1].([]any) {
		kv := p.([]any)
		pubs = append(pubs, Publisher{RegisterID: kv[0].(string), Data: kv[1].(string)})
	}
	return render(pubs)
}

func TestRegisterSubscribeLookupUpdateUnregister(t *testing.T) {
	addr := mustSession(t, nil).Addr()
	ctx := ctxT(t, 30*time.Second)
	prov := mustNew(t, addr)
	cons := mustNew(t, addr)
	if err := prov.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if st := prov.Status(); !st.Ready || st.Session != addr || st.ReadySince.IsZero() {
		t.Fatalf("status after WaitReady: %+v", st)
	}

	var rec recorder
	sub, err := cons.Subscribe(ctx, "svc-a", rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := prov.Register(ctx, "svc-a", "r1", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	if r1.Version() == 0 {
		t.Error("REGISTER acknowledged with version 0")
	}
	r2, err := prov.Register(ctx, "svc-a", "r2", "10.0.0.2:80")
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "r1=10.0.0.1:80,r2=10.0.0.2:80")
	got, err := cons.Lookup(ctx, "svc-a")
	if err != nil || got.Stale || render(got.Publishers) != "r1=10.0.0.1:80,r2=10.0.0.2:80" || got.Version < r2.Version() {
		t.Fatalf("Lookup: %+v, %v (r2 acknowledged at version %d)", got, err, r2.Version())
	}

	if _, err := prov.Register(ctx, "svc-a", "r1", "other"); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("second Register of r1: %v, want ErrAlreadyRegistered", err)
	}
	if _, err := prov.Register(ctx, "svc-a", "r3", strings.Repeat("x", proto.MaxDataLen+1)); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("oversize data: %v, want proto.ErrInvalid", err)
	}
	if _, err := cons.Subscribe(ctx, "", rec.fn); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("empty dataInfoId: %v, want proto.ErrInvalid", err)
	}

	if err := r1.Update(ctx, "10.0.0.1:81"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "r1=10.0.0.1:81,r2=10.0.0.2:80")
	if err := r2.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	last := rec.waitFor(t, "r1=10.0.0.1:81")
	if err := r2.Update(ctx, "again"); !errors.Is(err, ErrUnregistered) {
		t.Fatalf("Update after Unregister: %v, want ErrUnregistered", err)
	}
	if l, ok := sub.Last(); !ok || l.Version != last.Version {
		t.Fatalf("Subscription.Last: %+v %v, want version %d", l, ok, last.Version)
	}
	// The registerId is free again once unregistered.
	r2b, err := prov.Register(ctx, "svc-a", "r2", "10.0.0.22:80")
	if err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "r1=10.0.0.1:81,r2=10.0.0.22:80")
	if err := r2.Unregister(ctx); err != nil { // the stale handle touches nothing
		t.Fatal(err)
	}
	if err := r2b.Update(ctx, "10.0.0.23:80"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "r1=10.0.0.1:81,r2=10.0.0.23:80")

	// Close unregisters: the consumer sees the service empty.
	if err := prov.Close(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "")
	if _, err := prov.Register(ctx, "svc-a", "r9", "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Register after Close: %v, want ErrClosed", err)
	}
	rec.checkMonotonic(t)

	// After Unsubscribe no callback runs.
	sub.Unsubscribe()
	n := len(rec.snaps)
	if _, err := cons.Lookup(ctx, "svc-a"); err != nil {
		t.Fatal(err)
	}
	other := mustNew(t, addr)
	if _, err := other.Register(ctx, "svc-a", "r5", "y"); err != nil {
		t.Fatal(err)
	}
	var rec2 recorder
	if _, err := cons.Subscribe(ctx, "svc-a", rec2.fn); err != nil {
		t.Fatal(err)
	}
	rec2.waitFor(t, "r5=y")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.snaps) != n {
		t.Fatalf("%d deliveries after Unsubscribe", len(rec.snaps)-n)
	}
}

// A slow callback gets the newest state, not a queue of every state.
func TestSlowCallbackIsCoalesced(t *testing.T) {
	addr := mustSession(t, nil).Addr()
	ctx := ctxT(t, 30*time.Second)
	prov, cons := mustNew(t, addr), mustNew(t, addr)
	reg, err := prov.Register(ctx, "svc-slow", "r1", "v0")
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var rec recorder
	sub, err := cons.Subscribe(ctx, "svc-slow", func(s Snapshot) {
		<-gate
		rec.fn(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	const updates = 50
	for i := 1; i <= updates; i++ {
		if err := reg.Update(ctx, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every update reaches the client while the callback is blocked on
	// its first state; the session may push each or fewer, and the
	// client keeps only the newest.
	last := fmt.Sprintf("v%d", updates)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return sub.next != nil && len(sub.next.Publishers) == 1 && sub.next.Publishers[0].Data == last,
			"the last update never reached the client"
	})
	close(gate)
	rec.waitFor(t, "r1="+last)
	rec.checkMonotonic(t)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.snaps) > 2 {
		t.Fatalf("%d deliveries for %d updates behind a blocked callback, want at most 2 (the state it was given, then the newest): not coalesced", len(rec.snaps), updates)
	}
}

// The session a provider holds stops: it fails over to the other one and
// its publishers are registered there, while a consumer on the other
// session never sees a version go back.
func TestFailoverToTheNextSession(t *testing.T) {
	sa, sb := mustSession(t, nil), mustSession(t, nil)
	a, b := sa.Addr(), sb.Addr()
	ctx := ctxT(t, 30*time.Second)
	prov := mustNew(t, a, b)
	cons := mustNew(t, b, a)
	var rec recorder
	if _, err := cons.Subscribe(ctx, "svc-fo", rec.fn); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := prov.Register(ctx, "svc-fo", fmt.Sprintf("r%d", i), fmt.Sprintf("10.0.0.%d:80", i)); err != nil {
			t.Fatal(err)
		}
	}
	const want = "r1=10.0.0.1:80,r2=10.0.0.2:80,r3=10.0.0.3:80"
	rec.waitFor(t, want)
	if s := prov.Status().Session; s != a {
		t.Fatalf("provider on %s, want %s", s, a)
	}

	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		st := prov.Status()
		return st.Ready && st.Session == b, fmt.Sprintf("provider status %+v", st)
	})
	if st := prov.Status(); st.Failovers != 1 || st.LastError == nil {
		t.Fatalf("status after failover: %+v", st)
	}
	if got := rawLookup(t, b, "svc-fo"); got != want {
		t.Fatalf("LOOKUP via %s after failover: %q", b, got)
	}
	rec.waitFor(t, want)
	rec.checkMonotonic(t)
	// Writes keep working on the new session.
	if _, err := prov.Register(ctx, "svc-fo", "r4", "10.0.0.4:80"); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, want+",r4=10.0.0.4:80")
}

// Every session goes away, then comes back on the same addresses: the
// client serves lookups from its cache meanwhile, marked stale, and
// recovers by itself.
func TestAllSessionsDownThenBack(t *testing.T) {
	sessions := []*sessionserver.Node{mustSession(t, nil), mustSession(t, nil)}
	addrs := []string{sessions[0].Addr(), sessions[1].Addr()}
	ctx := ctxT(t, 40*time.Second)
	c, err := New(Options{Sessions: addrs, Logger: testutil.Quiet, HealthCheckInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg, err := c.Register(ctx, "svc-down", "r1", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	if _, err := c.Subscribe(ctx, "svc-down", rec.fn); err != nil {
		t.Fatal(err)
	}
	before := rec.waitFor(t, "r1=10.0.0.1:80")

	for _, s := range sessions {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) { return !c.Ready(), "client still ready with no session" })
	got, err := c.Lookup(ctx, "svc-down")
	// The client may have failed over to the second session and
	// registered again (a newer version) before that one stopped too.
	if err != nil || !got.Stale || got.Version < before.Version || render(got.Publishers) != "r1=10.0.0.1:80" {
		t.Fatalf("Lookup with no session: %+v, %v; want the cached state, stale", got, err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = c.Lookup(short, "svc-never-subscribed")
	cancel()
	if !errors.Is(err, ErrNoSession) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup of an uncached id with no session: %v", err)
	}
	// An update made while down is sent once a session is back.
	upd := make(chan error, 1)
	go func() { upd <- reg.Update(ctx, "10.0.0.1:81") }()

	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		mustSession(t, ln)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-upd; err != nil {
		t.Fatalf("Update made while down: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		got := rawLookup(t, addrs[1], "svc-down")
		return got == "r1=10.0.0.1:81", "LOOKUP after recovery: " + got
	})
	after := rec.waitFor(t, "r1=10.0.0.1:81")
	if after.Version <= before.Version {
		t.Fatalf("version after recovery %d, before %d", after.Version, before.Version)
	}
	got, err = c.Lookup(ctx, "svc-down")
	if err != nil || got.Stale || render(got.Publishers) != "r1=10.0.0.1:81" {
		t.Fatalf("Lookup after recovery: %+v, %v", got, err)
	}
	rec.checkMonotonic(t)
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{},
		{Sessions: []string{"no-port"}},
		{Sessions: []string{"127.0.0.1:1"}, MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{Sessions: []string{"127.0.0.1:1"}, DialTimeout: -time.Second},
		{Sessions: []string{"127.0.0.1:1"}, Scope: ScopeGlobal + 1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted bad options", o)
		}
	}
	o := Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}
	for attempt := 1; attempt <= 10; attempt++ {
		want := min(o.MinBackoff<<(attempt-1), o.MaxBackoff)
		if d := o.backoff(attempt); d < want/2 || d > want {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", attempt, d, want/2, want)
		}
	}
}

// Calls made while a new client is still connecting and replaying must
// not wait for the replay to time out (they once did: the replay waited
// for confirmations of subscriptions it had not sent).
func TestCallsWhileConnecting(t *testing.T) {
	addr := mustSession(t, nil).Addr()
	for i := 0; i < 10; i++ {
		c := mustNew(t, addr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for j := 0; j < 3; j++ {
			if _, err := c.Subscribe(ctx, fmt.Sprintf("svc-conn-%d", j), func(Snapshot) {}); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if _, err := c.Register(ctx, fmt.Sprintf("svc-conn-%d", j), fmt.Sprintf("c%d", i), "x"); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
		cancel()
		c.Close()
	}
}
