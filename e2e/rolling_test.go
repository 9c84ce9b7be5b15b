package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
)

// sdkClient is a publisher client that behaves as a registry SDK does: it
// remembers the publishers it wants registered and, on every new
// connection (the first, or after its session went away), registers all of
// them again before anything else (go-redis's OnConnect). It dials the
// sessions in turn, starting from the one after the session it was on last
// (the first time, from its own index): a client whose session stops lands
// on another session, which in a later restart may be the one restarted
// before.
type sdkClient struct {
	name string // its registerId in every service
	rdb  *redis.Client

	mu      sync.Mutex
	session string            // the session its current connection is on
	next    int               // index of the session to dial first next time
	conns   int               // connections made so far
	want    map[string]string // service -> data it wants registered
}

func (c *sdkClient) state() (session string, conns int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session, c.conns
}

// rollingLoad is the writer load of the rolling restart: every client keeps
// re-registering its publishers with new data; an acknowledged REGISTER
// updates the truth.
type rollingLoad struct {
	t        *testing.T
	services []string
	clients  []*sdkClient

	mu       sync.Mutex
	truth    map[string]map[string]string // service -> registerId -> data
	failures []string
	// restarting is the session being restarted, "" outside a session
	// restart. A write that fails on the network is retried only then.
	restarting string
	// vanishing are the registerIds whose client was on the session being
	// restarted when it stopped: the only publishers allowed to disappear
	// from a push meanwhile.
	vanishing map[string]bool
	retries   int

	acks atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func mustRollingLoad(t *testing.T, sessions []string, services, clients int) *rollingLoad {
	t.Helper()
	l := &rollingLoad{t: t, truth: map[string]map[string]string{}, stop: make(chan struct{})}
	for i := 0; i < services; i++ {
		svc := fmt.Sprintf("roll-%02d", i)
		l.services = append(l.services, svc)
		l.truth[svc] = map[string]string{}
	}
	for i := 0; i < clients; i++ {
		c := &sdkClient{name: fmt.Sprintf("c%d", i), next: i, want: map[string]string{}}
		c.rdb = redis.NewClient(&redis.Options{
			PoolSize: 1, MaxRetries: -1, ReadTimeout: 20 * time.Second,
			Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
				c.mu.Lock()
				first := c.next
				c.mu.Unlock()
				var last error
				for k := range sessions {
					j := (first + k) % len(sessions)
					addr := sessions[j]
					d := net.Dialer{Timeout: time.Second}
					nc, err := d.DialContext(ctx, network, addr)
					if err == nil {
						c.mu.Lock()
						c.session, c.next = addr, j+1
						c.mu.Unlock()
						return nc, nil
					}
					last = err
				}
				return nil, last
			},
			OnConnect: func(ctx context.Context, cn *redis.Conn) error {
				c.mu.Lock()
				c.conns++
				want := make(map[string]string, len(c.want))
				for svc, d := range c.want {
					want[svc] = d
				}
				c.mu.Unlock()
				for svc, d := range want {
					if err := cn.Do(ctx, "REGISTER", svc, c.name, d).Err(); err != nil {
						return fmt.Errorf("re-register %s %s: %w", svc, c.name, err)
					}
				}
				return nil
			},
		})
		l.clients = append(l.clients, c)
	}
	t.Cleanup(func() {
		l.stopWriters()
		for _, c := range l.clients {
			c.rdb.Close()
		}
	})
	for _, c := range l.clients {
		for _, svc := range l.services {
			if err := l.write(c, svc, 0); err != nil {
				t.Fatalf("initial REGISTER %s %s: %v", svc, c.name, err)
			}
		}
	}
	return l
}

// write registers c's publisher in svc with its n-th data, retrying a
// write that failed on the network while a session restarts, as an SDK
// would; any other failure is recorded.
func (l *rollingLoad) write(c *sdkClient, svc string, n int) error {
	data := fmt.Sprintf("%s#%d", c.name, n)
	c.mu.Lock()
	c.want[svc] = data
	c.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := c.rdb.Do(ctx, "REGISTER", svc, c.name, data).Err()
		cancel()
		l.mu.Lock()
		if err == nil {
			l.truth[svc][c.name] = data
			l.mu.Unlock()
			l.acks.Add(1)
			return nil
		}
		var reply redis.Error
		if !errors.As(err, &reply) && l.restarting != "" && time.Now().Before(deadline) {
			l.retries++
			l.mu.Unlock()
			// An SDK's reconnect back-off; not a wait for a condition.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		l.failures = append(l.failures, fmt.Sprintf("REGISTER %s %s: %v", svc, c.name, err))
		l.mu.Unlock()
		return err
	}
}

func (l *rollingLoad) startWriters(interval time.Duration) {
	for _, c := range l.clients {
		l.wg.Add(1)
		go func(c *sdkClient) {
			defer l.wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 1; ; n++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.write(c, l.services[n%len(l.services)], n)
			}
		}(c)
	}
}

func (l *rollingLoad) stopWriters() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// beginSessionRestart marks the clients now on addr as those whose
// publishers may vanish until endSessionRestart, and returns their names
// and connection counts.
func (l *rollingLoad) beginSessionRestart(addr string) map[*sdkClient]int {
	on := map[*sdkClient]int{}
	vanishing := map[string]bool{}
	for _, c := range l.clients {
		if s, n := c.state(); s == addr {
			on[c] = n
			vanishing[c.name] = true
		}
	}
	l.mu.Lock()
	l.restarting, l.vanishing = addr, vanishing
	l.mu.Unlock()
	return on
}

func (l *rollingLoad) endSessionRestart() {
	l.mu.Lock()
	l.restarting, l.vanishing = "", nil
	l.mu.Unlock()
}

// mayVanish says whether a publisher disappearing from a push is a real
// removal: its client was on the session being restarted.
func (l *rollingLoad) mayVanish(_, rid string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.vanishing[rid]
}

func (l *rollingLoad) want(svc string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.truth[svc]))
	for rid, d := range l.truth[svc] {
		out = append(out, rid+"="+d)
	}
	sort.Strings(out)
	return out
}

// rollSub is one subscriber connection, pinned to one session: go-redis
// re-subscribes when it reconnects, as it does after that session
// restarts. It records the newest push per service and what went wrong:
// a version lower than one already seen, the same version again except as
// the answer to a re-subscribe (and then with the same publishers), or a
// publisher vanishing that mayVanish does not allow.
type rollSub struct {
	session string
	ps      *redis.PubSub
	done    chan struct{}

	mu         sync.Mutex
	last       map[string]push
	resub      map[string]bool // a subscribe confirmation came after the last push
	subscribes int             // subscribe confirmations: one per service, and again on every reconnect
	pushes     int
	bad        []string
	mayGo      func(svc, rid string) bool
}

func mustRollSub(t *testing.T, addr string, mayGo func(svc, rid string) bool, services []string) *rollSub {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	s := &rollSub{session: addr, done: make(chan struct{}), last: map[string]push{}, resub: map[string]bool{}, mayGo: mayGo}
	s.ps = rdb.Subscribe(context.Background(), services...)
	ch := s.ps.ChannelWithSubscriptions()
	go func() {
		defer close(s.done)
		for m := range ch {
			s.mu.Lock()
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					s.subscribes++
					s.resub[m.Channel] = true
				}
			case *redis.Message:
				// A stopping session's notice to go is not a datum.
				if m.Channel != proto.ChanGoAway {
					s.observe(m)
				}
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.ps.Close()
		<-s.done
		rdb.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, b := range s.bad {
			t.Errorf("subscriber on %s: %s", addr, b)
		}
	})
	return s
}

// observe checks one push against the one before it; under s.mu.
func (s *rollSub) observe(m *redis.Message) {
	var p push
	if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
		s.bad = append(s.bad, fmt.Sprintf("bad payload %q: %v", m.Payload, err))
		return
	}
	s.pushes++
	prev, seen := s.last[m.Channel]
	resub := s.resub[m.Channel]
	s.resub[m.Channel] = false
	s.last[m.Channel] = p
	if !seen {
		return
	}
	switch {
	case p.Version < prev.Version:
		s.bad = append(s.bad, fmt.Sprintf("%s: version went back from %d to %d", m.Channel, prev.Version, p.Version))
	case p.Version == prev.Version && !resub:
		s.bad = append(s.bad, fmt.Sprintf("%s: version %d pushed twice", m.Channel, p.Version))
	case p.Version == prev.Version && fmt.Sprint(p.set()) != fmt.Sprint(prev.set()):
		s.bad = append(s.bad, fmt.Sprintf("%s: version %d with other publishers: %v, then %v", m.Channel, p.Version, prev.set(), p.set()))
	}
	have := make(map[string]bool, len(p.Publishers))
	for _, e := range p.Publishers {
		have[e.RegisterID] = true
	}
	for _, e := range prev.Publishers {
		if !have[e.RegisterID] && !s.mayGo(m.Channel, e.RegisterID) {
			s.bad = append(s.bad, fmt.Sprintf("%s: false removal of %s at version %d", m.Channel, e.RegisterID, p.Version))
		}
	}
}

func (s *rollSub) newest(svc string) (push, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.last[svc]
	return p, ok
}

// lookupVia runs LOOKUP on a one-off connection to addr. A connection
// the session closes is tried again (go-redis's default retries): a
// restarted session that a data node dropped closes every client
// connection, by design, so that its clients publish again.
func lookupVia(t *testing.T, addr, svc string) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	_, set := lookup(t, c, svc)
	return set
}

// registerIDs renders a "rid=data" set as its registerIds.
func registerIDs(set []string) string {
	ids := make([]string, len(set))
	for i, e := range set {
		ids[i], _, _ = strings.Cut(e, "=")
	}
	return fmt.Sprint(ids)
}

// allPresent waits, with the writers running, until every subscriber's
// newest push and a LOOKUP through every session hold every client's
// publisher in every service (the data changes all the time, so only the
// registerIds are compared).
func (l *rollingLoad) allPresent(within time.Duration, subs []*rollSub, sessions []string) {
	l.t.Helper()
	names := make([]string, len(l.clients))
	for i, c := range l.clients {
		names[i] = c.name
	}
	sort.Strings(names)
	want := fmt.Sprint(names)
	testutil.Eventually(l.t, within, func() (bool, string) {
		for _, svc := range l.services {
			for _, s := range subs {
				p, ok := s.newest(svc)
				if !ok || registerIDs(p.set()) != want {
					return false, fmt.Sprintf("subscriber on %s, %s: pushed %v, want every one of %v", s.session, svc, p.set(), want)
				}
			}
		}
		return true, ""
	})
	for _, addr := range sessions {
		for _, svc := range l.services {
			if got := registerIDs(lookupVia(l.t, addr, svc)); got != want {
				l.t.Fatalf("LOOKUP %s via %s: %v, want %v", svc, addr, got, want)
			}
		}
	}
}

// converge waits, with the writers stopped, until every subscriber's newest
// push equals the truth, then checks a LOOKUP through every session.
func (l *rollingLoad) converge(within time.Duration, subs []*rollSub, sessions []string) {
	l.t.Helper()
	testutil.Eventually(l.t, within, func() (bool, string) {
		for _, svc := range l.services {
			want := fmt.Sprint(l.want(svc))
			for _, s := range subs {
				p, ok := s.newest(svc)
				if !ok || fmt.Sprint(p.set()) != want {
					return false, fmt.Sprintf("subscriber on %s, %s: pushed %v, want %v", s.session, svc, p.set(), want)
				}
			}
		}
		return true, ""
	})
	for _, addr := range sessions {
		for _, svc := range l.services {
			if got, want := lookupVia(l.t, addr, svc), l.want(svc); fmt.Sprint(got) != fmt.Sprint(want) {
				l.t.Errorf("LOOKUP %s via %s: %v, want %v", svc, addr, got, want)
			}
		}
	}
}

// stopGracefully sends SIGTERM, as systemd and Kubernetes do, and waits
// until the process has exited.
func (c *scriptCluster) stopGracefully(id string, within time.Duration) {
	c.t.Helper()
	n := c.node(id)
	if !n.up {
		c.t.Fatalf("%s is not running", id)
	}
	if err := syscall.Kill(n.pid, syscall.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM %s (pid %d): %v", id, n.pid, err)
	}
	testutil.Eventually(c.t, within, func() (bool, string) {
		return !c.node(id).up, fmt.Sprintf("%s (pid %d) still running after SIGTERM", id, n.pid)
	})
}

func (c *scriptCluster) mustStart(id string) {
	c.t.Helper()
	if out, err := c.run("start", id); err != nil {
		c.t.Fatalf("cluster.sh start %s: %v\n%s", id, err, out)
	}
}

// logCount counts the lines of a node's log (appended to across restarts)
// that contain s.
func (c *scriptCluster) logCount(id, s string) int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, id+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// waitBalanced waits until the table has exactly the data nodes given,
// nothing is moving, and the leaders are spread evenly.
func (c *scriptCluster) waitBalanced(within time.Duration, data []string) {
	c.t.Helper()
	testutil.Eventually(c.t, within, func() (bool, string) {
		tab := metaTable(c.t, c.byRole("meta"))
		if got := tab.NodeIDs(); fmt.Sprint(got) != fmt.Sprint(data) {
			return false, fmt.Sprintf("table epoch %d has data nodes %v, want %v", tab.Epoch, got, data)
		}
		if n := len(tab.Moving()); n > 0 {
			return false, fmt.Sprintf("table epoch %d: %d slots moving", tab.Epoch, n)
		}
		lo, hi, led := -1, -1, map[string]int{}
		for _, id := range data {
			n := len(tab.LedBy(id))
			led[id] = n
			if lo < 0 || n < lo {
				lo = n
			}
			hi = max(hi, n)
		}
		return hi-lo <= 1, fmt.Sprintf("table epoch %d: leaders %v", tab.Epoch, led)
	})
}

// TestRollingRestartUnderLoad upgrades a running cluster the way
// docs/operations.md says to: every data node, one at a time, gets SIGTERM
// (it drains, leaves and exits), is started again and gets its share of
// leaders back; then every session, one at a time, is stopped and started
// again. Publisher clients keep writing throughout and reconnect like an
// SDK; subscribers stay subscribed.
//
// Session restarts legitimately remove, and then add again, the
// connection-bound publishers of that session's clients, so the load stays
// connection-bound (the case that matters most) and a subscriber may see a
// publisher vanish only while the session its client was on restarts. Any
// other removal, at any time, fails the test; during the data node restarts
// none at all is allowed. TTL publishers would hide exactly what the
// session restarts must get right: that a client's re-registration on
// another session is never undone by the old session going away.
func TestRollingRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	began := time.Now()
	c := mustScriptCluster(t)
	var sessions []string
	for _, s := range c.byRole("session") {
		sessions = append(sessions, s.addr)
	}
	var data []string
	for _, d := range c.byRole("data") {
		data = append(data, d.id)
	}
	load := mustRollingLoad(t, sessions, 12, 6)
	var subs []*rollSub
	for _, addr := range sessions {
		subs = append(subs, mustRollSub(t, addr, load.mayVanish, load.services))
	}
	load.converge(15*time.Second, subs, sessions)
	c.waitBalanced(30*time.Second, data)
	load.startWriters(20 * time.Millisecond)
	// progress waits until the writers got n more acknowledgements.
	progress := func(what string, n int64) {
		t.Helper()
		from := load.acks.Load()
		testutil.Eventually(t, 20*time.Second, func() (bool, string) {
			got := load.acks.Load() - from
			return got >= n, fmt.Sprintf("%s: %d writes acknowledged, want %d", what, got, n)
		})
	}
	progress("before the restarts", 200)
	t.Logf("cluster up and loaded in %v", time.Since(began).Round(time.Millisecond))

	for _, id := range data {
		phase := time.Now()
		drained := c.logCount(id, "drained: this node leads no slot")
		c.stopGracefully(id, 40*time.Second)
		if c.logCount(id, "drained: this node leads no slot") != drained+1 {
			t.Fatalf("%s exited without draining", id)
		}
		stopped := time.Since(phase)
		c.mustStart(id)
		c.waitBalanced(40*time.Second, data)
		progress("after restarting "+id, 100)
		t.Logf("%s: drained and exited in %v, back and balanced after %v", id,
			stopped.Round(time.Millisecond), time.Since(phase).Round(time.Millisecond))
	}

	for _, s := range c.byRole("session") {
		phase := time.Now()
		var sub *rollSub
		for _, rs := range subs {
			if rs.session == s.addr {
				sub = rs
			}
		}
		sub.mu.Lock()
		subscribed := sub.subscribes
		sub.mu.Unlock()
		on := load.beginSessionRestart(s.addr)
		c.stopGracefully(s.id, 20*time.Second)
		c.mustStart(s.id)
		// Every client that was on it has a new connection, on either
		// session, and all publishers are back everywhere.
		testutil.Eventually(t, 20*time.Second, func() (bool, string) {
			for cl, n := range on {
				if _, now := cl.state(); now == n {
					return false, fmt.Sprintf("%s has not reconnected since %s stopped", cl.name, s.id)
				}
			}
			return true, ""
		})
		load.allPresent(20*time.Second, subs, sessions)
		load.endSessionRestart()
		// The subscriber's connection was closed with the session and
		// subscribes again when go-redis has redialled, which may come
		// after the publishers are back (a session now stops at once).
		testutil.Eventually(t, 20*time.Second, func() (bool, string) {
			sub.mu.Lock()
			defer sub.mu.Unlock()
			return sub.subscribes >= subscribed+len(load.services), fmt.Sprintf(
				"the subscriber on %s did not subscribe again after it restarted (%d confirmations, %d before)",
				s.id, sub.subscribes, subscribed)
		})
		progress("after restarting "+s.id, 100)
		var where []string
		for cl := range on {
			now, _ := cl.state()
			where = append(where, cl.name+"->"+now)
		}
		sort.Strings(where)
		t.Logf("%s: restarted, its %d clients back (%s) after %v", s.id, len(on),
			strings.Join(where, " "), time.Since(phase).Round(time.Millisecond))
	}

	load.stopWriters()
	load.mu.Lock()
	failures, retries := load.failures, load.retries
	load.mu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d writes failed, first: %s", len(failures), failures[0])
	}
	load.converge(15*time.Second, subs, sessions)
	pushes := 0
	for _, s := range subs {
		s.mu.Lock()
		pushes += s.pushes
		s.mu.Unlock()
	}
	t.Logf("%d writes acknowledged (%d retried after a session stopped), %d pushes; %v in all",
		load.acks.Load(), retries, pushes, time.Since(began).Round(time.Millisecond))
}
