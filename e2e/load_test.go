package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// fleet is a writer load with a record of the truth: publisher clients
// (one connection each, so their publishers are bound to it) keep
// re-registering their publishers with new data; every acknowledged
// REGISTER updates the truth.
type fleet struct {
	t        *testing.T
	services []string
	mu       sync.Mutex
	truth    map[string]map[string]string // service -> registerId -> data
	owner    map[string]*pubClient        // registerId -> client
	clients  []*pubClient
	failures []string
	acks     atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

type pubClient struct {
	name    string
	session string
	rdb     *redis.Client
	rids    []string // service|registerId
}

// mustFleet starts, for every session, perSession clients that each own
// one publisher in every service, and registers them all.
func mustFleet(t *testing.T, sessions []string, services, perSession int) *fleet {
	t.Helper()
	f := &fleet{t: t, truth: map[string]map[string]string{}, owner: map[string]*pubClient{}, stop: make(chan struct{})}
	for i := 0; i < services; i++ {
		// Paths, so that prefix watches follow the same load.
		svc := fmt.Sprintf("/fleet/svc-%02d", i)
		f.services = append(f.services, svc)
		f.truth[svc] = map[string]string{}
	}
	for si, addr := range sessions {
		for c := 0; c < perSession; c++ {
			pc := &pubClient{
				name:    fmt.Sprintf("s%dc%d", si, c),
				session: addr,
				rdb:     redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1, ReadTimeout: 20 * time.Second}),
			}
			for _, svc := range f.services {
				rid := pc.name
				pc.rids = append(pc.rids, svc+"|"+rid)
				f.owner[rid] = pc
			}
			f.clients = append(f.clients, pc)
		}
	}
	t.Cleanup(func() {
		f.stopWriters()
		for _, c := range f.clients {
			c.rdb.Close()
		}
	})
	for _, c := range f.clients {
		for _, k := range c.rids {
			if err := f.write(c, k, 0); err != nil {
				t.Fatalf("initial REGISTER %s: %v", k, err)
			}
		}
	}
	return f
}

func (f *fleet) write(c *pubClient, key string, n int) error {
	svc, rid, _ := strings.Cut(key, "|")
	data := fmt.Sprintf("%s#%d", rid, n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.rdb.Do(ctx, "REGISTER", svc, rid, data).Err()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.failures = append(f.failures, fmt.Sprintf("%s via %s: %v", key, c.session, err))
		return err
	}
	f.truth[svc][rid] = data
	f.acks.Add(1)
	return nil
}

// startWriters keeps every client re-registering its publishers, one at a
// time, every interval.
func (f *fleet) startWriters(interval time.Duration) {
	for _, c := range f.clients {
		f.wg.Add(1)
		go func(c *pubClient) {
			defer f.wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 1; ; n++ {
				select {
				case <-f.stop:
					return
				case <-tick.C:
				}
				f.write(c, c.rids[n%len(c.rids)], n)
			}
		}(c)
	}
}

func (f *fleet) stopWriters() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

// dropClient forgets a client's publishers from the truth (its session
// died or it closed).
func (f *fleet) dropSession(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		if c.session != addr {
			continue
		}
		for _, k := range c.rids {
			svc, rid, _ := strings.Cut(k, "|")
			delete(f.truth[svc], rid)
		}
	}
}

func (f *fleet) want(svc string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.truth[svc]))
	for rid, d := range f.truth[svc] {
		out = append(out, rid+"="+d)
	}
	sort.Strings(out)
	return out
}

func (f *fleet) assertNoFailures() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failures) > 0 {
		f.t.Errorf("%d writes failed, first: %s", len(f.failures), f.failures[0])
	}
}

// converge waits until every watcher's newest push for every service and a
// LOOKUP through every session equal the truth.
func (f *fleet) converge(within time.Duration, ws []*watcher, lookups []*redis.Client) {
	f.t.Helper()
	testutil.Eventually(f.t, within, func() (bool, string) {
		for _, svc := range f.services {
			want := fmt.Sprint(f.want(svc))
			for i, w := range ws {
				p, ok := w.last(svc)
				if !ok || fmt.Sprint(p.set()) != want {
					return false, fmt.Sprintf("watcher %d, %s: pushed %v, want %v", i, svc, p.set(), want)
				}
			}
		}
		return true, ""
	})
	for _, c := range lookups {
		for _, svc := range f.services {
			_, got := lookup(f.t, c, svc)
			if want := f.want(svc); fmt.Sprint(got) != fmt.Sprint(want) {
				f.t.Errorf("LOOKUP %s: %v, want %v", svc, got, want)
			}
		}
	}
}

// removalGuard fails a watcher's test when a publisher vanishes from a push
// after it was seen, unless allowed says the removal is real.
func (w *watcher) guardRemovals(allowed func(svc, rid string) bool) {
	w.mu.Lock()
	w.allowed = allowed
	w.mu.Unlock()
}

// checkRemoval runs under w.mu for each new push.
func (w *watcher) checkRemoval(ch string, prev []push, p push) {
	if w.allowed == nil || len(prev) == 0 {
		return
	}
	have := make(map[string]bool, len(p.Publishers))
	for _, e := range p.Publishers {
		have[e.RegisterID] = true
	}
	for _, e := range prev[len(prev)-1].Publishers {
		if !have[e.RegisterID] && !w.allowed(ch, e.RegisterID) {
			w.bad = append(w.bad, fmt.Sprintf("%s: false removal of %s at version %d", ch, e.RegisterID, p.Version))
		}
	}
}

// metaTable reads the slot table from the first meta that answers.
func metaTable(t *testing.T, metas []procNode) *slot.Table {
	t.Helper()
	for _, m := range metas {
		c := redis.NewClient(&redis.Options{Addr: m.addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
		s, err := c.Do(context.Background(), "TABLE").Text()
		c.Close()
		if err != nil {
			continue
		}
		tab, err := slot.Unmarshal([]byte(s))
		if err != nil {
			t.Fatalf("TABLE from %s: %v", m.id, err)
		}
		return tab
	}
	t.Fatal("no meta answered TABLE")
	return nil
}

// mostLeading is the data node that leads the most slots.
func mostLeading(tab *slot.Table) string {
	best, n := "", -1
	for _, node := range tab.Nodes {
		if c := len(tab.LedBy(node.ID)); c > n {
			best, n = node.ID, c
		}
	}
	return best
}

func (c *scriptCluster) node(id string) procNode {
	c.t.Helper()
	for _, n := range c.status() {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %s", id)
	return procNode{}
}
