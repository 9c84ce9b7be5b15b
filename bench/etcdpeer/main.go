// Command etcdpeer runs registry-bench's register and push-latency
// workloads against etcd: lease-bound puts, and a prefix watch per
// subscriber; issue 18's config-watch (watchers of one key, as slotreg's
// config-push) and lock (concurrency.Mutex acquire, as slotreg's lock);
// and issue 15's paths workloads: prefix watches over many
// keys, a keys-only prefix Get as CHILDREN, and the handover of a
// concurrency.Mutex. It is its own Go module so that slotreg's binaries never
// link the etcd client; registry-bench runs it with `go run .` and reads
// its --json output (a list of results in registry-bench's format).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// result mirrors the fields of bench.Result that registry-bench reads.
type result struct {
	Scenario string         `json:"scenario"`
	Target   string         `json:"target"`
	Params   map[string]any `json:"params,omitempty"`
	Ops      int64          `json:"ops"`
	Errors   int64          `json:"errors"`
	Seconds  float64        `json:"seconds"`
	Rate     float64        `json:"ops_per_sec"`
	Latency  *summary       `json:"latency,omitempty"`
	Metrics  []metric       `json:"metrics,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
}

// metric mirrors bench.Metric.
type metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

func (r *result) add(name string, v float64, unit string) {
	r.Metrics = append(r.Metrics, metric{name, v, unit})
}

type summary struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// hist is a mutex-guarded HdrHistogram in microseconds.
type hist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newHist() *hist { return &hist{h: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)} }

func (h *hist) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	h.mu.Lock()
	h.h.RecordValue(min(us, int64(10*time.Minute/time.Microsecond)))
	h.mu.Unlock()
}

func (h *hist) summary() *summary {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return &summary{
		Count: h.h.TotalCount(), MinMs: ms(h.h.Min()), MeanMs: h.h.Mean() / 1000,
		P50Ms: ms(h.h.ValueAtQuantile(50)), P90Ms: ms(h.h.ValueAtQuantile(90)), P99Ms: ms(h.h.ValueAtQuantile(99)),
		P999Ms: ms(h.h.ValueAtQuantile(99.9)), MaxMs: ms(h.h.Max()),
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: etcdpeer register|push-latency|config-watch|lock|prefix-watch|children|lock-handover --endpoints HOST:PORT [flags]")
		os.Exit(2)
	}
	scenario := os.Args[1]
	fs := flag.NewFlagSet(scenario, flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "etcd client endpoints, comma separated")
	clients := fs.Int("clients", 50, "register: concurrent clients (one connection and one lease each); lock: clients, one session each (default 8 there)")
	publishers := fs.Int("publishers", 10000, "register: distinct keys written")
	services := fs.Int("services", 100, "register: services the keys spread over; push-latency: probe services")
	subscribers := fs.Int("subscribers", 10, "push-latency: watchers, one connection each, on the run's prefix")
	rate := fs.Float64("rate", 100, "push-latency: changes/s")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	warmup := fs.Duration("warmup", time.Second, "push-latency: time before measuring")
	dataSize := fs.Int("data-size", 32, "bytes of value")
	var pc pathsConfig
	fs.IntVar(&pc.watchers, "watchers", 1000, "prefix-watch: watchers, one client each, on the run's prefix; config-watch: watchers of the key")
	fs.IntVar(&pc.paths, "paths", 100_000, "prefix-watch: keys under the prefix, put before the watchers come")
	fs.IntVar(&pc.parents, "parents", 1000, "prefix-watch: parents the keys spread over")
	fs.IntVar(&pc.attach, "attach", 8, "prefix-watch: watchers getting the prefix and starting their watch at once")
	fs.IntVar(&pc.changes, "changes", 200, "prefix-watch, config-watch: timed puts, one at a time")
	fs.DurationVar(&pc.gap, "gap", 20*time.Millisecond, "prefix-watch, config-watch: pause after each change reached every watcher")
	fs.IntVar(&pc.children, "children", 10_000, "children: keys under the parent, in each shape")
	fs.IntVar(&pc.calls, "calls", 200, "children: keys-only prefix Gets timed in each shape")
	fs.IntVar(&pc.contenders, "contenders", 8, "lock-handover: clients competing for one concurrency.Mutex")
	fs.IntVar(&pc.handovers, "handovers", 300, "lock-handover: handovers to time")
	fs.DurationVar(&pc.hold, "hold", time.Millisecond, "lock-handover: how long a holder keeps the lock")
	fs.DurationVar(&pc.lockTTL, "lock-ttl", 10*time.Second, "lock-handover, lock: the sessions' lease TTL")
	fs.DurationVar(&pc.timeout, "timeout", time.Minute, "prefix-watch, config-watch: longest wait for a change to reach every watcher")
	var lc lockConfig
	fs.IntVar(&lc.locks, "locks", 0, "lock: distinct mutexes (default: one per client, no contention)")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Parse(os.Args[2:])
	eps := strings.Split(*endpoints, ",")
	ctx := context.Background()
	pc.eps = eps
	var res []*result
	var err error
	one := func(r *result, e error) {
		if r != nil {
			res = []*result{r}
		}
		err = e
	}
	switch scenario {
	case "register":
		one(register(ctx, eps, *clients, *publishers, *services, *duration, *dataSize))
	case "push-latency":
		one(pushLatency(ctx, eps, *subscribers, *services, *rate, *duration, *warmup, *dataSize))
	case "config-watch":
		one(configWatch(ctx, pc))
	case "lock":
		lc.eps, lc.clients, lc.duration, lc.ttl = eps, *clients, *duration, pc.lockTTL
		if !setFlag(fs, "clients") {
			lc.clients = 8
		}
		one(lockAcquire(ctx, lc))
	case "prefix-watch":
		res, err = prefixWatch(ctx, pc)
	case "children":
		res, err = children(ctx, pc)
	case "lock-handover":
		one(lockHandover(ctx, pc))
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer:", err)
		os.Exit(1)
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\ttarget\tops\terrors\tops/s\tp50 ms\tp99 ms\tp999 ms\tmax ms")
	for _, r := range res {
		l := r.Latency
		if l == nil {
			l = &summary{}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\n", r.Scenario, r.Target, r.Ops, r.Errors, r.Rate,
			l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs)
	}
	tw.Flush()
	for _, r := range res {
		for _, m := range r.Metrics {
			fmt.Printf("%s: %s %g %s\n", r.Scenario, m.Name, m.Value, m.Unit)
		}
		for _, n := range r.Notes {
			fmt.Printf("%s: note: %s\n", r.Scenario, n)
		}
	}
}

func newClient(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// lockSessions opens n clients, each with a concurrency session of ttl
// (at least a second), as the lock workloads' contenders; closeAll ends
// the sessions and closes the clients.
func lockSessions(eps []string, n int, ttl time.Duration) (_ []*concurrency.Session, closeAll func(), err error) {
	var clients []*clientv3.Client
	var sessions []*concurrency.Session
	closeAll = func() {
		for _, s := range sessions {
			s.Close()
		}
		for _, c := range clients {
			c.Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	for range n {
		c, err := newClient(eps)
		if err != nil {
			return nil, nil, err
		}
		clients = append(clients, c)
		s, err := concurrency.NewSession(c, concurrency.WithTTL(max(int(ttl.Seconds()), 1)))
		if err != nil {
			return nil, nil, fmt.Errorf("session: %w", err)
		}
		sessions = append(sessions, s)
	}
	return sessions, closeAll, nil
}

func stamp(t time.Time, size int) string {
	b := strconv.AppendInt(nil, t.UnixNano(), 10)
	b = append(b, '|')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

func parseStamp(v []byte) (time.Time, bool) {
	s, _, ok := strings.Cut(string(v), "|")
	if !ok {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(s, 10, 64)
	return time.Unix(0, ns), err == nil
}

func prefix(what string) string {
	return "/bench-" + what + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "/"
}

// register: each client grants one lease and puts its keys bound to it,
// round robin over the publishers, closed loop, for duration.
func register(ctx context.Context, eps []string, clients, publishers, services int, d time.Duration, size int) (*result, error) {
	clients = min(clients, publishers)
	pre := prefix("reg")
	cs := make([]*clientv3.Client, clients)
	leases := make([]clientv3.LeaseID, clients)
	for i := range cs {
		c, err := newClient(eps)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		l, err := c.Grant(ctx, 120)
		if err != nil {
			return nil, fmt.Errorf("grant: %w", err)
		}
		cs[i], leases[i] = c, l.ID
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	h := newHist()
	var ops, errs atomic.Int64
	var first atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := w; runCtx.Err() == nil; p += clients {
				if p >= publishers {
					p = w
				}
				key := pre + "svc-" + strconv.Itoa(p%services) + "/r" + strconv.Itoa(p)
				t0 := time.Now()
				_, err := cs[w].Put(runCtx, key, stamp(t0, size), clientv3.WithLease(leases[w]))
				if err != nil {
					if runCtx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				h.record(time.Since(t0))
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	for i, c := range cs {
		c.Revoke(ctx, leases[i])
	}
	r := &result{Scenario: "register", Target: "etcd", Ops: ops.Load(), Errors: errs.Load(), Seconds: el.Seconds(),
		Rate: float64(ops.Load()) / el.Seconds(), Latency: h.summary(),
		Params: map[string]any{"clients": clients, "publishers": publishers, "services": services, "duration_s": d.Seconds(), "lease_bound": true}}
	if f := first.Load(); f != nil {
		r.Notes = append(r.Notes, "first error: "+f.(string))
	}
	return r, nil
}

// pushLatency: subscribers each watch the run's prefix; one writer puts
// probe keys at rate, the send time in the value.
func pushLatency(ctx context.Context, eps []string, subs, services int, rate float64, d, warm time.Duration, size int) (*result, error) {
	pre := prefix("push")
	h := newHist()
	var got atomic.Int64
	measureFrom := time.Now().Add(time.Hour)
	var mf atomic.Int64
	mf.Store(measureFrom.UnixNano())
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var wg sync.WaitGroup
	for range subs {
		c, err := newClient(eps)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		wch := c.Watch(clientv3.WithRequireLeader(wctx), pre, clientv3.WithPrefix())
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wr := range wch {
				now := time.Now()
				for _, ev := range wr.Events {
					if sent, ok := parseStamp(ev.Kv.Value); ok && sent.UnixNano() >= mf.Load() {
						h.record(now.Sub(sent))
						got.Add(1)
					}
				}
			}
		}()
	}
	w, err := newClient(eps)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	lease, err := w.Grant(ctx, 120)
	if err != nil {
		return nil, err
	}
	// Watches are registered asynchronously; a put and its event make sure.
	if _, err := w.Put(ctx, pre+"ready", "x"); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	measure := start.Add(warm)
	mf.Store(measure.UnixNano())
	var sent, errs int64
	interval := time.Duration(float64(time.Second) / rate)
	next := start
	for k := 0; time.Since(start) < warm+d; k++ {
		if dl := time.Until(next); dl > 0 {
			time.Sleep(dl)
		}
		next = next.Add(interval)
		now := time.Now()
		key := pre + "svc-" + strconv.Itoa(k%services) + "/w"
		if _, err := w.Put(ctx, key, stamp(now, size), clientv3.WithLease(lease.ID)); err != nil {
			errs++
			continue
		}
		if !now.Before(measure) {
			sent++
		}
	}
	el := time.Since(measure)
	time.Sleep(200 * time.Millisecond)
	stopWatch()
	wg.Wait()
	w.Revoke(ctx, lease.ID)
	return &result{Scenario: "push-latency", Target: "etcd", Ops: got.Load(), Errors: errs, Seconds: el.Seconds(),
		Rate: float64(got.Load()) / el.Seconds(), Latency: h.summary(),
		Params: map[string]any{"subscribers": subs, "services": services, "rate": rate, "duration_s": d.Seconds(),
			"changes_sent": sent, "watch": "prefix"}}, nil
}

// pathsConfig holds the knobs of issue 15's workloads, as registry-bench's
// bench.PathsConfig does for slotreg.
type pathsConfig struct {
	eps                                       []string
	watchers, paths, parents, attach, changes int
	gap                                       time.Duration
	children, calls                           int
	contenders, handovers                     int
	hold, lockTTL, timeout                    time.Duration
}

// putAll puts n keys, keyOf(i), with the value "v", in transactions of
// 100 puts (under etcd's default --max-txn-ops of 128) over 8 clients.
func putAll(ctx context.Context, eps []string, n int, keyOf func(int) string) error {
	const perTxn, conns = 100, 8
	var wg sync.WaitGroup
	var first atomic.Value
	for w := range conns {
		c, err := newClient(eps)
		if err != nil {
			return err
		}
		defer c.Close()
		wg.Go(func() {
			for from := w * perTxn; from < n; from += perTxn * conns {
				ops := make([]clientv3.Op, 0, perTxn)
				for i := from; i < min(from+perTxn, n); i++ {
					ops = append(ops, clientv3.OpPut(keyOf(i), "v"))
				}
				if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return fmt.Errorf("preload: %w", e.(error))
	}
	return nil
}

// watchRound is one timed change being delivered to the watchers (of a
// prefix, or of the config key).
type watchRound struct {
	key, value string
	sent       time.Time
	got        atomic.Int64
	done       chan struct{}
}

// newWatchRound is a change of key to a value that carries its send time.
func newWatchRound(key string) *watchRound {
	r := &watchRound{key: key, sent: time.Now(), done: make(chan struct{})}
	r.value = stamp(r.sent, 32)
	return r
}

// deliver puts the round's value, records the put's time in put, and
// waits until all watchers have it (done) or timeout has passed; missed
// is how many had not.
func (r *watchRound) deliver(ctx context.Context, w *clientv3.Client, put *hist, watchers int, timeout time.Duration) (missed int64, err error) {
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err = w.Put(pctx, r.key, r.value)
	cancel()
	if err != nil {
		return 0, err
	}
	put.record(time.Since(r.sent))
	select {
	case <-r.done:
	case <-time.After(timeout):
		missed = int64(watchers) - r.got.Load()
	}
	return missed, nil
}

// prefixWatch: paths keys under the run's prefix over parents parents;
// then watchers clients, attach at a time, each Get the prefix and watch
// it from the revision after (the state and then every change, which is
// what a slotreg PSUBSCRIBE gives); then changes puts of one key each,
// one at a time, the send time in the value. Results: the put-to-event
// latency over every watcher, and each watcher's Get and watch start.
func prefixWatch(ctx context.Context, pc pathsConfig) ([]*result, error) {
	root := strings.TrimSuffix(prefix("pwatch"), "/")
	keyOf := func(i int) string {
		return root + "/g" + strconv.Itoa(i%pc.parents) + "/p" + strconv.Itoa(i)
	}
	t0 := time.Now()
	if err := putAll(ctx, pc.eps, pc.paths, keyOf); err != nil {
		return nil, err
	}
	preload := time.Since(t0)
	var cur atomic.Pointer[watchRound]
	h, initial := newHist(), newHist()
	var stray, short atomic.Int64
	wctx, stopWatch := context.WithCancel(ctx)
	var readers sync.WaitGroup
	var mu sync.Mutex
	var clients []*clientv3.Client
	defer func() {
		stopWatch()
		readers.Wait()
		for _, c := range clients {
			c.Close()
		}
	}()
	t0 = time.Now()
	sem := make(chan struct{}, pc.attach)
	var attachErr atomic.Value
	var attachWg sync.WaitGroup
	for range pc.watchers {
		if attachErr.Load() != nil {
			break
		}
		sem <- struct{}{}
		attachWg.Go(func() {
			defer func() { <-sem }()
			sent := time.Now()
			c, err := newClient(pc.eps)
			if err != nil {
				attachErr.CompareAndSwap(nil, err)
				return
			}
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
			g, err := c.Get(wctx, root+"/", clientv3.WithPrefix())
			if err != nil {
				attachErr.CompareAndSwap(nil, fmt.Errorf("get: %w", err))
				return
			}
			if len(g.Kvs) != pc.paths {
				short.Add(1)
			}
			wch := c.Watch(clientv3.WithRequireLeader(wctx), root+"/", clientv3.WithPrefix(),
				clientv3.WithRev(g.Header.Revision+1), clientv3.WithCreatedNotify())
			if wr, ok := <-wch; !ok || !wr.Created {
				attachErr.CompareAndSwap(nil, fmt.Errorf("watch not created: %v", wr.Err()))
				return
			}
			initial.record(time.Since(sent))
			readers.Go(func() {
				var last *watchRound
				for wr := range wch {
					now := time.Now()
					for _, ev := range wr.Events {
						r := cur.Load()
						if r == nil || r == last || string(ev.Kv.Key) != r.key || string(ev.Kv.Value) != r.value {
							stray.Add(1)
							continue
						}
						last = r
						h.record(now.Sub(r.sent))
						if r.got.Add(1) == int64(pc.watchers) {
							close(r.done)
						}
					}
				}
			})
		})
	}
	attachWg.Wait()
	if e := attachErr.Load(); e != nil {
		return nil, fmt.Errorf("prefix-watch: %w", e.(error))
	}
	attach := time.Since(t0)
	w, err := newClient(pc.eps)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	put := newHist()
	var errs, missed int64
	start := time.Now()
	for i := range pc.changes {
		idx := (i*7919 + 13) % pc.paths
		r := newWatchRound(keyOf(idx))
		cur.Store(r)
		m, err := r.deliver(ctx, w, put, pc.watchers, pc.timeout)
		if err != nil {
			errs++
			continue
		}
		missed += m
		time.Sleep(pc.gap)
	}
	el := time.Since(start)
	params := map[string]any{"watchers": pc.watchers, "paths": pc.paths, "parents": pc.parents, "changes": pc.changes,
		"gap": pc.gap.String(), "attach": pc.attach, "watch": "Get prefix, then prefix watch from the next revision"}
	res := &result{Scenario: "prefix-watch", Target: "etcd", Ops: h.h.TotalCount(), Errors: errs + missed, Seconds: el.Seconds(),
		Rate: float64(h.h.TotalCount()) / el.Seconds(), Latency: h.summary(), Params: params}
	if s := put.summary(); s != nil {
		res.add("put_p50", s.P50Ms, "ms")
		res.add("put_p99", s.P99Ms, "ms")
	}
	res.add("events missed (a change not delivered to a watcher in time)", float64(missed), "")
	res.add("stray events (not the change under way, or repeated)", float64(stray.Load()), "")
	ini := &result{Scenario: "prefix-watch-initial", Target: "etcd", Ops: initial.h.TotalCount(), Seconds: attach.Seconds(),
		Rate: float64(initial.h.TotalCount()) / attach.Seconds(), Latency: initial.summary(), Params: params}
	ini.add("keys per watcher's Get", float64(pc.paths), "")
	ini.add("Gets short of a key", float64(short.Load()), "")
	ini.add("all watchers attached", attach.Seconds(), "s")
	ini.add("preload", preload.Seconds(), "s")
	ini.add("preload rate", float64(pc.paths)/preload.Seconds(), "put/s")
	stopWatch()
	w.Delete(ctx, root+"/", clientv3.WithPrefix())
	return []*result{res, ini}, nil
}

// children: children keys under a parent in two shapes, parent/c<i>
// ("children-flat") and parent/c<i>/x ("children-subtrees"); CHILDREN is
// a keys-only prefix Get whose keys are cut to their first segment below
// the parent (keys come sorted, so a child's keys are adjacent).
func children(ctx context.Context, pc pathsConfig) ([]*result, error) {
	root := strings.TrimSuffix(prefix("children"), "/")
	c, err := newClient(pc.eps)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var out []*result
	for _, sh := range []struct{ scenario, parent, suffix string }{
		{"children-flat", root + "/flat", ""},
		{"children-subtrees", root + "/tree", "/x"},
	} {
		if err := putAll(ctx, pc.eps, pc.children, func(i int) string {
			return sh.parent + "/c" + strconv.Itoa(i) + sh.suffix
		}); err != nil {
			return out, err
		}
		list := func() ([]string, error) {
			g, err := c.Get(ctx, sh.parent+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if err != nil {
				return nil, err
			}
			var names []string
			for _, kv := range g.Kvs {
				name, _, _ := strings.Cut(string(kv.Key[len(sh.parent)+1:]), "/")
				if len(names) == 0 || names[len(names)-1] != name {
					names = append(names, name)
				}
			}
			return names, nil
		}
		for range 3 {
			list()
		}
		h := newHist()
		var errs, wrong int64
		start := time.Now()
		for range pc.calls {
			t0 := time.Now()
			names, err := list()
			if err != nil {
				errs++
				continue
			}
			h.record(time.Since(t0))
			if len(names) != pc.children {
				wrong++
			}
		}
		el := time.Since(start)
		r := &result{Scenario: sh.scenario, Target: "etcd", Ops: h.h.TotalCount(), Errors: errs, Seconds: el.Seconds(),
			Rate: float64(h.h.TotalCount()) / el.Seconds(), Latency: h.summary(),
			Params: map[string]any{"children": pc.children, "calls": pc.calls, "get": "prefix, keys only"}}
		r.add("replies without every child", float64(wrong), "")
		out = append(out, r)
		c.Delete(ctx, sh.parent+"/", clientv3.WithPrefix())
	}
	return out, nil
}

// lockHandover: contenders clients, each with its own session (lease),
// loop Lock, hold, Unlock on one concurrency.Mutex. A handover is the
// time from the holder sending Unlock to the Lock of a contender that was
// already waiting returning; it runs until handovers were timed.
func lockHandover(ctx context.Context, pc pathsConfig) (*result, error) {
	pfx := strings.TrimSuffix(prefix("lockh"), "/")
	h, unlockHist := newHist(), newHist()
	var unlockAt, holder atomic.Int64
	var timed, errs, fresh, overlaps, regress atomic.Int64
	var revMu sync.Mutex
	var lastRev int64
	var first atomic.Value
	var stopped atomic.Bool
	ctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(pc.handovers)*(time.Second+pc.hold))
	defer cancel()
	cs, closeSessions, err := lockSessions(pc.eps, pc.contenders, pc.lockTTL)
	if err != nil {
		return nil, err
	}
	defer closeSessions()
	start := time.Now()
	var wg sync.WaitGroup
	for i, ct := range cs {
		wg.Go(func() {
			m := concurrency.NewMutex(ct, pfx)
			id := int64(i + 1)
			for !stopped.Load() && ctx.Err() == nil {
				sent := time.Now()
				if err := m.Lock(ctx); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				got := time.Now()
				if !holder.CompareAndSwap(0, id) {
					overlaps.Add(1)
					holder.Store(id)
				}
				revMu.Lock()
				if rev := m.Header().Revision; rev <= lastRev {
					regress.Add(1)
				} else {
					lastRev = rev
				}
				revMu.Unlock()
				if u := unlockAt.Swap(0); u != 0 {
					switch {
					case stopped.Load():
						// the contenders leaving, one grant after another
					case sent.UnixNano() < u:
						h.record(got.Sub(time.Unix(0, u)))
						if timed.Add(1) >= int64(pc.handovers) {
							stopped.Store(true)
						}
					default:
						fresh.Add(1)
					}
				}
				time.Sleep(pc.hold)
				holder.CompareAndSwap(id, 0)
				u0 := time.Now()
				unlockAt.Store(u0.UnixNano())
				if err := m.Unlock(ctx); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				unlockHist.record(time.Since(u0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	r := &result{Scenario: "lock-handover", Target: "etcd", Ops: h.h.TotalCount(), Errors: errs.Load(), Seconds: el.Seconds(),
		Rate: float64(h.h.TotalCount()) / el.Seconds(), Latency: h.summary(),
		Params: map[string]any{"contenders": pc.contenders, "handovers": pc.handovers, "hold": pc.hold.String(),
			"session_ttl_s": pc.lockTTL.Seconds(), "lock": "concurrency.Mutex"}}
	if s := unlockHist.summary(); s != nil {
		r.add("unlock_p50", s.P50Ms, "ms")
		r.add("unlock_p99", s.P99Ms, "ms")
	}
	r.add("grants to a Lock sent after the release (not timed)", float64(fresh.Load()), "")
	r.add("grants overlapping another holder", float64(overlaps.Load()), "")
	r.add("grant revisions not above the previous grant's", float64(regress.Load()), "")
	if f := first.Load(); f != nil {
		r.Notes = append(r.Notes, "first error: "+f.(string))
	}
	return r, nil
}

// setFlag reports whether name was given on the command line.
func setFlag(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// configWatch is slotreg's config-push against etcd: watchers clients
// (one connection each) watch one key; changes times, one at a time, a
// put gives the key a new value carrying its send time, and every
// watcher records the time from the put being sent to its event
// arriving. The next change goes gap after the previous reached every
// watcher (or timeout passed). The put's round trip alone is reported as
// put_p50/put_p99, as slotreg's CONFSET is.
func configWatch(ctx context.Context, pc pathsConfig) (*result, error) {
	key := strings.TrimSuffix(prefix("cfg"), "/")
	h, put := newHist(), newHist()
	var cur atomic.Pointer[watchRound]
	var stray atomic.Int64
	wctx, stopWatch := context.WithCancel(ctx)
	var readers sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		stopWatch()
		readers.Wait()
		for _, c := range clients {
			c.Close()
		}
	}()
	for i := range pc.watchers {
		c, err := newClient(pc.eps)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		wch := c.Watch(clientv3.WithRequireLeader(wctx), key, clientv3.WithCreatedNotify())
		if wr, ok := <-wch; !ok || !wr.Created {
			return nil, fmt.Errorf("config-watch: watcher %d not created: %v", i, wr.Err())
		}
		readers.Go(func() {
			var last *watchRound
			for wr := range wch {
				now := time.Now()
				for _, ev := range wr.Events {
					r := cur.Load()
					if r == nil || r == last || string(ev.Kv.Value) != r.value {
						stray.Add(1)
						continue
					}
					last = r
					h.record(now.Sub(r.sent))
					if r.got.Add(1) == int64(pc.watchers) {
						close(r.done)
					}
				}
			}
		})
	}
	w, err := newClient(pc.eps)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var errs, missed int64
	start := time.Now()
	for range pc.changes {
		if ctx.Err() != nil {
			break
		}
		r := newWatchRound(key)
		cur.Store(r)
		m, err := r.deliver(ctx, w, put, pc.watchers, pc.timeout)
		if err != nil {
			errs++
			continue
		}
		missed += m
		time.Sleep(pc.gap)
	}
	el := time.Since(start)
	res := &result{Scenario: "config-push", Target: "etcd", Ops: h.h.TotalCount(), Errors: errs + missed, Seconds: el.Seconds(),
		Rate: float64(h.h.TotalCount()) / el.Seconds(), Latency: h.summary(),
		Params: map[string]any{"watchers": pc.watchers, "changes": pc.changes, "gap": pc.gap.String(),
			"watch": "one key, one client per watcher"}}
	if s := put.summary(); s != nil {
		res.add("put_p50", s.P50Ms, "ms")
		res.add("put_p99", s.P99Ms, "ms")
	}
	res.add("events missed (a change not delivered to a watcher in time)", float64(missed), "")
	res.add("stray events (not the change under way, or repeated)", float64(stray.Load()), "")
	stopWatch()
	w.Delete(ctx, key)
	return res, nil
}

// lockConfig holds the lock workload's knobs, as registry-bench's
// bench.LockConfig does for slotreg.
type lockConfig struct {
	eps            []string
	clients, locks int
	duration, ttl  time.Duration
}

// lockAcquire is slotreg's lock scenario against etcd: clients clients,
// each with its own session (lease), take and release a
// concurrency.Mutex in a loop for duration; client i uses mutex i%locks.
// slotreg's LOCK without WAIT answers at once when another holds the
// lock, so the acquire is TryLock, which is one transaction like an
// uncontended Lock; ErrLocked is counted as a refusal and not timed.
func lockAcquire(ctx context.Context, lc lockConfig) (*result, error) {
	lc.clients = max(lc.clients, 1)
	if lc.locks <= 0 {
		lc.locks = lc.clients
	}
	pfx := strings.TrimSuffix(prefix("lock"), "/")
	ls, closeSessions, err := lockSessions(lc.eps, lc.clients, lc.ttl)
	if err != nil {
		return nil, err
	}
	defer closeSessions()
	h, unlockHist := newHist(), newHist()
	var ops, errs, refused atomic.Int64
	var first atomic.Value
	runCtx, cancel := context.WithTimeout(ctx, lc.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, l := range ls {
		wg.Go(func() {
			m := concurrency.NewMutex(l, pfx+"/"+strconv.Itoa(i%lc.locks))
			for runCtx.Err() == nil {
				t0 := time.Now()
				err := m.TryLock(runCtx)
				switch {
				case errors.Is(err, concurrency.ErrLocked):
					refused.Add(1)
					continue
				case err != nil:
					if runCtx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				h.record(time.Since(t0))
				ops.Add(1)
				u0 := time.Now()
				if err := m.Unlock(ctx); err != nil {
					errs.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				unlockHist.record(time.Since(u0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	r := &result{Scenario: "lock-acquire", Target: "etcd", Ops: ops.Load(), Errors: errs.Load(), Seconds: el.Seconds(),
		Rate: float64(ops.Load()) / el.Seconds(), Latency: h.summary(),
		Params: map[string]any{"clients": lc.clients, "locks": lc.locks, "duration": lc.duration.String(),
			"session_ttl_s": lc.ttl.Seconds(), "lock": "concurrency.Mutex TryLock"}}
	r.add("refused", float64(refused.Load()), "locks")
	if s := unlockHist.summary(); s != nil {
		r.add("unlock_p50", s.P50Ms, "ms")
		r.add("unlock_p99", s.P99Ms, "ms")
	}
	if f := first.Load(); f != nil {
		r.Notes = append(r.Notes, "first error: "+f.(string))
	}
	return r, nil
}
