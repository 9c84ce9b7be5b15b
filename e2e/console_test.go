package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/console"
	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// pausableProxy forwards TCP connections to a node's listener; paused,
// it forwards no byte in either direction on any connection (old or
// new), so the node looks frozen to everyone who dials it while its own
// connections out (its heartbeats to meta) go on: a SIGSTOP seen only
// from the outside.
type pausableProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func mustProxy(t *testing.T, target string) *pausableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *pausableProxy) addr() string { return p.ln.Addr().String() }

func (p *pausableProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies from src to dst, holding each read back while paused.
func (p *pausableProxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.paused && !p.closed {
			p.cond.Wait()
		}
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pausableProxy) setPaused(on bool) {
	p.mu.Lock()
	p.paused = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *pausableProxy) close() {
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	p.wg.Wait()
}

// mustBrowser starts a headless chromium with a fresh profile; it fails
// the test (never skips) when chromium is missing.
func mustBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the console's browser test needs Debian's chromium at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, under the test's context (no
	// timeout here: it would stop the browser).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// run runs one browser action within d.
func run[T any](t *testing.T, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitPage waits until the JS expression cond is true in the page,
// within d; on failure it reports what the expression show gives.
func waitPage(t *testing.T, ctx context.Context, d time.Duration, what, cond, show string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, d+time.Second)
	defer cancel()
	if _, err := chromedp.Run(pctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))); err != nil {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		seen, serr := chromedp.Run(sctx, chromedp.Evaluate[string](show))
		t.Fatalf("page: %s: %v; the page shows: %s %v", what, err, seen, serr)
	}
}

// The console in a real browser: the page loads, shows every node, the
// 16×16 slot map coloured by leader, a search with a publisher and its
// subscriber count, config keys and a held lock; and it follows a slot
// move while the move happens, then shows the new leader, without a
// reload. The move is made to last: the slot's leader is a data node
// reached through a proxy, paused meanwhile, so the target cannot catch
// up until it is let go.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cl := mustClusterWith(t, 1, func(o *cluster.Options) { o.Lease = 5 * time.Second })

	// data3, which everyone reaches through the proxy.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := mustProxy(t, ln.Addr().String())
	d3, err := dataserver.New(dataserver.Config{NodeID: "data3", Listener: ln, Advertise: px.addr(), Metas: cl.Metas(),
		Heartbeat: 100 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		px.setPaused(false)
		d3.Close()
	})
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		tab := cl.Meta.Table()
		n := len(tab.LedBy("data3"))
		return tab.HasNode("data3") && len(tab.Moving()) == 0 && n >= slot.Count/3, fmt.Sprintf("data3 leads %d, %d moving", n, len(tab.Moving()))
	})
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return cl.Sessions[0].Ready(), "session not ready"
	})

	con, err := console.New(console.Config{Metas: cl.Metas(), AdminPassword: "admin-pw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	mux := http.NewServeMux()
	mux.Handle("/ui/", con.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// What the page is to show: a publisher and a subscriber, a config
	// key, a held lock.
	ctx := ctxT(t)
	sess := cl.Sessions[0].Addr()
	pub := mustClient(t, sess)
	register(t, pub, "console.e2e#@#svc", "r1", "10.1.1.1:9000")
	sub := mustClient(t, sess)
	ps := sub.Subscribe(ctx, "console.e2e#@#svc")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	metaDo(t, cl.Meta.RPCAddr(), proto.CmdConfSet, "console.e2e.key", "v1")
	metaDo(t, cl.Meta.RPCAddr(), proto.CmdConfSet, "console.e2e.key", "v2")
	token, err := pub.Do(ctx, "LOCK", "console-e2e-lock", "worker-7", "60000").Int64()
	if err != nil {
		t.Fatalf("LOCK: %v", err)
	}

	b := mustBrowser(t)
	run(t, b, 15*time.Second, "open the console", chromedp.Navigate(srv.URL+"/ui/"))
	run(t, b, 5*time.Second, "mark the page", chromedp.Evaluate[int]("window.__noReload = 1"))

	waitPage(t, b, 10*time.Second, "every node listed and answering",
		`['meta1','data1','data2','data3','session1'].every(id => { const r = document.querySelector('#nodes tr[data-node="'+id+'"]'); return r && r.dataset.healthy === '1'; })
		 && document.querySelector('#nodes tr[data-node="meta1"]').dataset.role === 'leader'`,
		`document.querySelector('#nodes').innerText`)
	waitPage(t, b, 5*time.Second, "256 cells coloured by their leader",
		`(() => { const cs = [...document.querySelectorAll('#grid .cell')];
		   if (cs.length !== 256 || !cs.every(c => c.dataset.leader && c.style.background)) return false;
		   const by = new Map(); for (const c of cs) { by.set(c.dataset.leader, (by.get(c.dataset.leader) || new Set()).add(getComputedStyle(c).backgroundColor)); }
		   const colours = new Set([...by.values()].map(s => [...s].join()));
		   return by.size === 3 && [...by.values()].every(s => s.size === 1) && colours.size === 3; })()`,
		`JSON.stringify([...document.querySelectorAll('#grid .cell')].slice(0, 8).map(c => [c.dataset.leader, c.style.background]))`)

	run(t, b, 5*time.Second, "type a prefix", chromedp.SendKeys("#prefix", "console.e2e"))
	run(t, b, 5*time.Second, "search", chromedp.Click(`#search button[type="submit"]`))
	waitPage(t, b, 10*time.Second, "the publisher and its subscriber in the search",
		`(() => { const r = document.querySelector('#results tr[data-id="console.e2e#@#svc"]');
		   return !!r && r.querySelector('.pubs').textContent === '1' && r.querySelector('.subs').textContent === '1' && r.textContent.includes('10.1.1.1:9000'); })()`,
		`document.querySelector('#search-section').innerText`)
	waitPage(t, b, 5*time.Second, "the config key, and the lock with its holder and token",
		fmt.Sprintf(`(() => { const k = document.querySelector('#config tr[data-key="console.e2e.key"]');
		   const l = document.querySelector('#locks tr[data-lock="console-e2e-lock"]');
		   return !!k && !!l && l.querySelector('.owner').textContent === 'worker-7' && l.querySelector('.token').textContent === '%d'; })()`, token),
		`document.querySelector('#config-section').innerText + ' | ' + document.querySelector('#locks-section').innerText`)
	run(t, b, 5*time.Second, "open the key's history", chromedp.Click(`#config tr[data-key="console.e2e.key"] button`))
	waitPage(t, b, 5*time.Second, "the key's two versions",
		`document.querySelectorAll('#history tr[data-version]').length === 2 && document.querySelector('#history').textContent.includes('v1')`,
		`document.querySelector('#history').innerText`)

	// The move: a slot data3 leads, to the data node that does not
	// follow it, with a write in the slot first so the target is behind.
	tab := cl.Meta.Table()
	s, to := -1, ""
	for _, x := range tab.LedBy("data3") {
		for _, n := range []string{"data1", "data2"} {
			if !tab.Follows(n, x) {
				s, to = x, n
			}
		}
		if s >= 0 {
			break
		}
	}
	if s < 0 {
		t.Fatalf("no slot of data3 lacks a follower among data1, data2: %+v", tab.Slots)
	}
	for i := 0; ; i++ {
		if id := fmt.Sprintf("console.move.%d", i); slot.Of(id) == s {
			register(t, pub, id, "r1", "x")
			break
		}
	}
	px.setPaused(true)
	cell := fmt.Sprintf(`document.querySelector('#grid .cell[data-slot="%d"]')`, s)
	run(t, b, 5*time.Second, "enter the admin password", chromedp.SendKeys("#token", "admin-pw"))
	run(t, b, 5*time.Second, "enter the slot", chromedp.SetValue("#move-slot", fmt.Sprint(s)))
	run(t, b, 5*time.Second, "choose the target", chromedp.SetValue("#move-to", to))
	run(t, b, 5*time.Second, "move", chromedp.Click(`#move-form button[type="submit"]`))
	waitPage(t, b, 10*time.Second, fmt.Sprintf("slot %d shown moving to %s", s, to),
		fmt.Sprintf(`(() => { const c = %s; return c.dataset.moving === '1' && c.dataset.target === '%s' && c.dataset.leader === 'data3'
		   && !!document.querySelector('#moves tr[data-move="%d"]'); })()`, cell, to, s),
		fmt.Sprintf(`%s.outerHTML + ' | ' + document.querySelector('#action-result').textContent`, cell))
	// While the leader is frozen the page still renders, and says so.
	waitPage(t, b, 10*time.Second, "data3 shown as not answering",
		`document.querySelector('#nodes tr[data-node="data3"]').dataset.healthy === '0'`,
		`document.querySelector('#nodes').innerText`)
	if tab := cl.Meta.Table(); tab.Slots[s].Target != to {
		t.Fatalf("slot %d: the move is not in progress any more: %+v", s, tab.Slots[s])
	}
	px.setPaused(false)
	waitPage(t, b, 20*time.Second, fmt.Sprintf("slot %d shown led by %s", s, to),
		fmt.Sprintf(`(() => { const c = %s; return c.dataset.moving === '0' && c.dataset.leader === '%s' && !c.dataset.progress; })()`, cell, to),
		fmt.Sprintf(`%s.outerHTML`, cell))
	if v := run(t, b, 5*time.Second, "check for a reload", chromedp.Evaluate[int]("window.__noReload || 0")); v != 1 {
		t.Fatalf("the page was reloaded")
	}
	if got := cl.Meta.Table().Slots[s].Leader; got != to {
		t.Fatalf("slot %d: meta says leader %s, want %s", s, got, to)
	}
}
