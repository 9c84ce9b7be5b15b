package e2e

import (
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/internal/testutil"
	"go.uber.org/goleak"
)

// clientRecorder keeps every snapshot a client subscription delivered,
// per dataInfoId, and what went wrong: a version that did not grow, or a
// publisher that vanished although its owner never let it go.
type clientRecorder struct {
	mu    sync.Mutex
	snaps map[string][]client.Snapshot
	bad   []string
	// keep, when set, says which registerIds must never vanish once seen.
	keep func(rid string) bool
}

func newClientRecorder() *clientRecorder {
	return &clientRecorder{snaps: make(map[string][]client.Snapshot)}
}

func (r *clientRecorder) fn(s client.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.snaps[s.DataInfoID]
	if n := len(prev); n > 0 {
		last := prev[n-1]
		if s.Version <= last.Version {
			r.bad = append(r.bad, fmt.Sprintf("%s: version %d delivered after %d", s.DataInfoID, s.Version, last.Version))
		}
		have := map[string]bool{}
		for _, p := range s.Publishers {
			have[p.RegisterID] = true
		}
		for _, p := range last.Publishers {
			if !have[p.RegisterID] && r.keep != nil && r.keep(p.RegisterID) {
				r.bad = append(r.bad, fmt.Sprintf("%s: %s vanished at version %d", s.DataInfoID, p.RegisterID, s.Version))
			}
		}
	}
	r.snaps[s.DataInfoID] = append(prev, s)
}

func (r *clientRecorder) last(id string) (client.Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snaps[id]
	if len(s) == 0 {
		return client.Snapshot{}, false
	}
	return s[len(s)-1], true
}

func (r *clientRecorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bad {
		t.Error(b)
	}
}

func pubSet(pubs []client.Publisher) string {
	out := make([]string, 0, len(pubs))
	for _, p := range pubs {
		out = append(out, p.RegisterID+"="+p.Data)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func mustGoClient(t *testing.T, sessions ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{
		Sessions: sessions, HealthCheckInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sessionMember says whether any meta still lists the session id.
func sessionMember(metas []procNode, id string) bool {
	for _, m := range metas {
		ss, _ := metaSessions(m.addr)
		for _, s := range ss {
			if s.ID == id {
				return true
			}
		}
	}
	return false
}

// TestClientFailoverAfterSessionKill: a provider using the client through
// session A, a consumer through session B. kill -9 A: the provider's
// publishers are registered again through B within seconds and survive
// A's eviction; the consumer never sees a version go back nor a provider
// publisher vanish, and ends on the truth. Then both sessions go down and
// come back, and the clients recover by themselves.
func TestClientFailoverAfterSessionKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	sessions := c.byRole("session")
	a, b := sessions[0], sessions[1]
	ctx := ctxT(t)

	prov := mustGoClient(t, a.addr, b.addr)
	cons := mustGoClient(t, b.addr, a.addr)
	services := []string{"cl-svc-0", "cl-svc-1", "cl-svc-2", "cl-svc-3"}
	rec := newClientRecorder()
	rec.keep = func(rid string) bool { return strings.HasPrefix(rid, "p") }
	for _, svc := range services {
		if _, err := cons.Subscribe(ctx, svc, rec.fn); err != nil {
			t.Fatal(err)
		}
	}
	truth := map[string]map[string]string{}
	regs := map[string]*client.Registration{}
	for _, svc := range services {
		truth[svc] = map[string]string{}
		for i := 0; i < 5; i++ {
			rid, data := fmt.Sprintf("p%d", i), fmt.Sprintf("10.0.%s.%d:80", svc[len(svc)-1:], i)
			r, err := prov.Register(ctx, svc, rid, data)
			if err != nil {
				t.Fatal(err)
			}
			truth[svc][rid] = data
			regs[svc+"|"+rid] = r
		}
	}
	want := func(svc string) string {
		var pubs []client.Publisher
		for rid, d := range truth[svc] {
			pubs = append(pubs, client.Publisher{RegisterID: rid, Data: d})
		}
		return pubSet(pubs)
	}
	converged := func(within time.Duration) {
		t.Helper()
		testutil.Eventually(t, within, func() (bool, string) {
			for _, svc := range services {
				s, ok := rec.last(svc)
				if !ok || pubSet(s.Publishers) != want(svc) {
					return false, fmt.Sprintf("consumer's %s: %q, want %q", svc, pubSet(s.Publishers), want(svc))
				}
			}
			return true, ""
		})
	}
	converged(10 * time.Second)
	if st := prov.Status(); st.Session != a.addr {
		t.Fatalf("provider on %q, want %s", st.Session, a.addr)
	}
	if st := cons.Status(); st.Session != b.addr {
		t.Fatalf("consumer on %q, want %s", st.Session, b.addr)
	}

	killed := time.Now()
	kill(t, a)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		st := prov.Status()
		return st.Ready && st.Session == b.addr, fmt.Sprintf("provider %+v", st)
	})
	back := prov.Status().ReadySince.Sub(killed)
	t.Logf("kill -9 %s: provider ready on %s after %v", a.id, b.id, back.Round(time.Millisecond))
	if back > 5*time.Second {
		t.Errorf("provider took %v to be back through %s", back, b.id)
	}
	// A's lease lapses and meta evicts it; the data leaders then drop what
	// A still owned. The provider's publishers must not be among that.
	metas := c.byRole("meta")
	testutil.Eventually(t, 15*time.Second, func() (bool, string) {
		return !sessionMember(metas, a.id), a.id + " still a member"
	})
	rb := mustClient(t, b.addr)
	for _, svc := range services {
		v, got := lookup(t, rb, svc)
		s, _ := rec.last(svc)
		if strings.Join(got, ",") != want(svc) {
			t.Errorf("LOOKUP %s via %s after %s's eviction: %v, want %s", svc, b.id, a.id, got, want(svc))
		}
		if s.Version > v {
			t.Errorf("%s: consumer has version %d, newer than LOOKUP's %d", svc, s.Version, v)
		}
	}
	// Writes go on through the new session.
	if err := regs["cl-svc-0|p0"].Update(ctx, "10.0.0.100:80"); err != nil {
		t.Fatal(err)
	}
	truth["cl-svc-0"]["p0"] = "10.0.0.100:80"
	converged(10 * time.Second)
	// After recovery the consumer's last snapshot is the truth, at the
	// version a LOOKUP gives.
	for _, svc := range services {
		s, _ := rec.last(svc)
		if v, _ := lookup(t, rb, svc); s.Version != v {
			t.Errorf("%s: consumer's last version %d, LOOKUP says %d", svc, s.Version, v)
		}
	}
	rec.check(t)

	// Now every session is down: the clients serve stale lookups, then
	// come back by themselves when the sessions do.
	rec.mu.Lock()
	rec.keep = nil // the sessions' leases lapse: their publishers go, rightly
	rec.mu.Unlock()
	kill(t, b)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return !prov.Ready() && !cons.Ready(), "a client still ready with every session dead"
	})
	if s, err := cons.Lookup(ctx, "cl-svc-1"); err != nil || !s.Stale || pubSet(s.Publishers) != want("cl-svc-1") {
		t.Fatalf("consumer Lookup with no session: %+v, %v", s, err)
	}
	for _, id := range []string{a.id, b.id} {
		if out, err := c.run("start", id); err != nil {
			t.Fatalf("cluster.sh start %s: %v\n%s", id, err, out)
		}
	}
	if err := prov.WaitReady(ctx); err != nil {
		t.Fatalf("provider did not recover: %v", err)
	}
	if err := cons.WaitReady(ctx); err != nil {
		t.Fatalf("consumer did not recover: %v", err)
	}
	if err := regs["cl-svc-1|p1"].Update(ctx, "10.0.1.101:80"); err != nil {
		t.Fatal(err)
	}
	truth["cl-svc-1"]["p1"] = "10.0.1.101:80"
	converged(20 * time.Second)
	if s, err := cons.Lookup(ctx, "cl-svc-2"); err != nil || s.Stale || pubSet(s.Publishers) != want("cl-svc-2") {
		t.Fatalf("consumer Lookup after recovery: %+v, %v", s, err)
	}

	// Close unregisters: the consumer sees every service empty.
	prov.Close()
	for svc := range truth {
		truth[svc] = nil
	}
	converged(10 * time.Second)
	rec.check(t)
}

// mustDev starts `registry dev` on a free port and returns its session
// address and process.
func mustDev(t *testing.T) (string, *exec.Cmd) {
	t.Helper()
	p := startDevProcess(t, nil, nil)
	return p.session, p.cmd
}

// TestClientCloseLeavesNoGoroutines checks, with goleak, that Close ends
// every goroutine the client started: while connected with registrations
// and subscriptions, and while retrying a session that was killed. The
// registry runs in another process, so the only goroutines here are the
// test's and the client's.
func TestClientCloseLeavesNoGoroutines(t *testing.T) {
	addr, dev := mustDev(t)
	ctx := ctxT(t)
	opts := client.Options{Sessions: []string{addr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		HealthCheckInterval: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}

	before := goleak.IgnoreCurrent()
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := c.Register(ctx, "leak-svc", "r1", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan client.Snapshot, 16)
	if _, err := c.Subscribe(ctx, "leak-svc", func(s client.Snapshot) {
		select {
		case got <- s:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if s := <-got; pubSet(s.Publishers) != "r1=10.0.0.1:80" {
		t.Fatalf("first snapshot: %+v", s)
	}
	if err := reg.Update(ctx, "10.0.0.1:81"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "leak-svc"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
	// Close removed the publisher.
	rdb := mustClient(t, addr)
	if _, set := lookup(t, rdb, "leak-svc"); len(set) != 0 {
		t.Fatalf("after Close, LOOKUP: %v", set)
	}
	rdb.Close()

	// A client whose session was killed, in its retry loop.
	before = goleak.IgnoreCurrent()
	c, err = client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, "leak-svc", "r2", "10.0.0.2:80"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, "leak-svc", func(client.Snapshot) {}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		st := c.Status()
		return !st.Ready && st.LastError != nil, fmt.Sprintf("status %+v", st)
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
