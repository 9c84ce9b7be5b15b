package grpcresolver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/testutil"
)

// within bounds every wait of these tests: generous, since it only
// matters when a test fails, and a loaded machine is slow.
const within = 45 * time.Second

// mustCluster starts an in-process registry (1 meta, 2 data nodes,
// sessions sessions) and stops it when the test ends.
func mustCluster(t *testing.T, sessions int) *cluster.Local {
	t.Helper()
	cl, err := cluster.Start(cluster.Options{
		Dir: t.TempDir(), Data: 2, Sessions: sessions,
		Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second, Logger: testutil.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("cluster close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

// fastClient are client options that reconnect quickly. The health
// check keeps its default: a cut connection is noticed at once without
// it, and a shorter one fails over spuriously on a loaded machine (which
// drops the client's publishers for a moment).
func fastClient(t *testing.T, sessions ...string) client.Options {
	log, _ := testutil.Logger(t)
	return client.Options{
		Sessions: sessions, Logger: log,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		CloseTimeout: 2 * time.Second,
	}
}

// mustClient is a slotreg client, closed when the test ends.
func mustClient(t *testing.T, sessions ...string) *client.Client {
	t.Helper()
	c, err := client.New(fastClient(t, sessions...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mustRegister publishes data as rid under id through c.
func mustRegister(t *testing.T, c *client.Client, id, rid, data string) *client.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	r, err := c.Register(ctx, id, rid, data)
	if err != nil {
		t.Fatalf("register %s %s: %v", id, rid, err)
	}
	return r
}

func mustUnregister(t *testing.T, r *client.Registration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := r.Unregister(ctx); err != nil {
		t.Fatalf("unregister %s: %v", r.RegisterID(), err)
	}
}

// mustBuilder is a Builder, closed when the test ends.
func mustBuilder(t *testing.T, o Options) *Builder {
	t.Helper()
	if o.Logger == nil {
		o.Logger, _ = testutil.Logger(t)
	}
	b, err := NewBuilder(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// fakeCC is a resolver.ClientConn that records what the resolver tells
// it. The embedded interface is nil: a method the resolver should not
// call panics.
type fakeCC struct {
	resolver.ClientConn

	mu     sync.Mutex
	states []resolver.State
	errs   []error
}

func (f *fakeCC) UpdateState(s resolver.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, s)
	return nil
}

func (f *fakeCC) ReportError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// ParseServiceConfig accepts anything; the channel's own parsing is
// tested end to end.
func (f *fakeCC) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

// last is the newest state, and how many there were.
func (f *fakeCC) last() (resolver.State, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return resolver.State{}, 0
	}
	return f.states[len(f.states)-1], len(f.states)
}

func (f *fakeCC) allStates() []resolver.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.states)
}

func (f *fakeCC) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs)
}

// addrs renders a state's addresses, sorted, for comparing.
func addrs(s resolver.State) string {
	out := make([]string, 0, len(s.Addresses))
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func mustParse(t *testing.T, target string) *url.URL {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// mustBuild builds a resolver for target on a fakeCC; it is closed when
// the test ends.
func mustBuild(t *testing.T, b *Builder, target string) (resolver.Resolver, *fakeCC) {
	t.Helper()
	cc := &fakeCC{}
	r, err := b.Build(resolver.Target{URL: *mustParse(t, target)}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("build %s: %v", target, err)
	}
	t.Cleanup(r.Close)
	return r, cc
}

// waitAddrs waits until cc's newest state has exactly want (sorted,
// comma-separated) as its addresses.
func waitAddrs(t *testing.T, cc *fakeCC, want string) resolver.State {
	t.Helper()
	var got resolver.State
	testutil.WaitFor(t, within, "addresses "+want, func() (bool, string) {
		s, n := cc.last()
		got = s
		return n > 0 && addrs(s) == want, fmt.Sprintf("%d states, newest %q", n, addrs(s))
	})
	return got
}

// subscribers is the count of subscriptions a session holds, from its
// INFO.
func subscribers(t *testing.T, session string) int {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: session, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := rdb.Info(ctx, "registry").Result()
	if err != nil {
		t.Fatalf("INFO from %s: %v", session, err)
	}
	m := regexp.MustCompile(`(?m)^session_subscribers:(\d+)`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("INFO from %s has no subscribers line:\n%s", session, info)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// proxy forwards TCP connections to a session, so a test can cut a
// client off from it: Cut closes every connection, and while it is down
// new ones are closed at once.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// mustProxy starts a proxy to target; it stops when the test ends.
func mustProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{ln: testutil.MustListen(t), target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track records a pair of connections, unless the proxy went down
// meanwhile (then it closes them).
func (p *proxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		in.Close()
		out.Close()
		return false
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// setDown cuts every connection and refuses new ones (true), or lets
// them through again (false).
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	var conns []net.Conn
	if down {
		for c := range p.conns {
			conns = append(conns, c)
		}
		clear(p.conns)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.setDown(true)
	p.wg.Wait()
}

// ours returns the stacks of the goroutines that run code of the client
// package or of this one, other than tests' own.
func ours() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") {
			continue
		}
		if strings.Contains(g, "slotreg/slotreg/client.") || strings.Contains(g, "slotreg/slotreg/grpcresolver.") {
			out = append(out, g)
		}
	}
	return out
}
