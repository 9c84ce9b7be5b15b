package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
)

// mustCluster starts an in-process cluster (1 meta, 2 data, n sessions)
// and stops it when the test ends.
func mustCluster(t *testing.T, sessions int) *cluster.Local {
	t.Helper()
	return mustClusterWith(t, sessions, nil)
}

// mustClusterWith is mustCluster with edit applied to its options.
func mustClusterWith(t *testing.T, sessions int, edit func(*cluster.Options)) *cluster.Local {
	t.Helper()
	o := cluster.Options{
		Dir: t.TempDir(), Data: 2, Sessions: sessions,
		Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&o)
	}
	return mustStart(t, o)
}

// mustClient is go-redis with its default options (HELLO 3, CLIENT SETINFO).
func mustClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping %s: %v", addr, err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// push is one subscriber message, decoded.
type push proto.Push

// set renders the publishers as "rid=data" strings, sorted.
func (p push) set() []string {
	out := make([]string, 0, len(p.Publishers))
	for _, e := range p.Publishers {
		out = append(out, e.RegisterID+"="+e.Data)
	}
	sort.Strings(out)
	return out
}

// watcher records every push a subscription receives and checks the
// invariant that versions never go back.
type watcher struct {
	t    *testing.T
	mu   sync.Mutex
	msgs map[string][]push
	bad  []string
	// allowed, when set, says whether a publisher may vanish from a push.
	allowed func(svc, rid string) bool
	ps      *redis.PubSub
	done    chan struct{}
}

// mustSubscribe subscribes c to chans and waits for the confirmations, so
// that writes after it are pushed.
func mustSubscribe(t *testing.T, c *redis.Client, chans ...string) *redis.PubSub {
	t.Helper()
	ps := c.Subscribe(context.Background(), chans...)
	for range chans {
		if _, err := ps.Receive(ctxT(t)); err != nil {
			t.Fatalf("subscribe confirmation: %v", err)
		}
	}
	return ps
}

// reportAtCleanup closes ps when the test ends, waits until its reader
// closed done, and fails the test with every problem in bad (under mu).
func reportAtCleanup(t *testing.T, ps *redis.PubSub, done <-chan struct{}, mu *sync.Mutex, bad *[]string) {
	t.Cleanup(func() {
		ps.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, b := range *bad {
			t.Error(b)
		}
	})
}

func mustWatch(t *testing.T, c *redis.Client, ids ...string) *watcher {
	t.Helper()
	ps := mustSubscribe(t, c, ids...)
	w := &watcher{t: t, msgs: make(map[string][]push), ps: ps, done: make(chan struct{})}
	ch := ps.Channel()
	go func() {
		defer close(w.done)
		for m := range ch {
			if m.Channel == proto.ChanGoAway {
				continue // a stopping session's notice to go, not a datum
			}
			var p push
			if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
				w.fail("bad payload %q: %v", m.Payload, err)
				continue
			}
			w.mu.Lock()
			prev := w.msgs[m.Channel]
			if n := len(prev); n > 0 && p.Version <= prev[n-1].Version {
				w.bad = append(w.bad, fmt.Sprintf("%s: version went from %d to %d", m.Channel, prev[n-1].Version, p.Version))
			}
			w.checkRemoval(m.Channel, prev, p)
			if p.DataInfoID != m.Channel {
				w.bad = append(w.bad, fmt.Sprintf("channel %s carried %s", m.Channel, p.DataInfoID))
			}
			w.msgs[m.Channel] = append(prev, p)
			w.mu.Unlock()
		}
	}()
	reportAtCleanup(t, ps, w.done, &w.mu, &w.bad)
	return w
}

func (w *watcher) fail(f string, a ...any) {
	w.mu.Lock()
	w.bad = append(w.bad, fmt.Sprintf(f, a...))
	w.mu.Unlock()
}

// last is the newest push for id, and whether there was one.
func (w *watcher) last(id string) (push, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs[id]
	if len(m) == 0 {
		return push{}, false
	}
	return m[len(m)-1], true
}

func (w *watcher) all(id string) []push {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]push(nil), w.msgs[id]...)
}

// waitSet waits until the newest push for id holds exactly want.
func (w *watcher) waitSet(id string, want ...string) push {
	w.t.Helper()
	sort.Strings(want)
	var got push
	testutil.Eventually(w.t, 10*time.Second, func() (bool, string) {
		p, ok := w.last(id)
		got = p
		return ok && fmt.Sprint(p.set()) == fmt.Sprint(want), fmt.Sprintf("last push for %s: %v (want %v)", id, p.set(), want)
	})
	return got
}

// lookup runs LOOKUP and returns the version and the "rid=data" set.
func lookup(t *testing.T, c *redis.Client, id string) (uint64, []string) {
	t.Helper()
	v, err := c.Do(ctxT(t), "LOOKUP", id).Slice()
	if err != nil {
		t.Fatalf("LOOKUP %s: %v", id, err)
	}
	if len(v) != 2 {
		t.Fatalf("LOOKUP %s: %d elements", id, len(v))
	}
	ver, _ := v[0].(int64)
	pairs, _ := v[1].([]any)
	out := make([]string, 0, len(pairs))
	for _, p := range pairs {
		kv := p.([]any)
		out = append(out, kv[0].(string)+"="+kv[1].(string))
	}
	return uint64(ver), out
}

func register(t *testing.T, c *redis.Client, args ...any) uint64 {
	t.Helper()
	v, err := c.Do(ctxT(t), append([]any{"REGISTER"}, args...)...).Uint64()
	if err != nil {
		t.Fatalf("REGISTER %v: %v", args, err)
	}
	return v
}
