// Command etcdpeer runs registry-bench's register and push-latency
// workloads against etcd: lease-bound puts, and a prefix watch per
// subscriber. It is its own Go module so that slotreg's binaries never
// link the etcd client; registry-bench runs it with `go run .` and reads
// its --json output (a list of results in registry-bench's format).
package main

import (
	"context"
	"encoding/json"
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
	Notes    []string       `json:"notes,omitempty"`
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
		fmt.Fprintln(os.Stderr, "usage: etcdpeer register|push-latency --endpoints HOST:PORT [flags]")
		os.Exit(2)
	}
	scenario := os.Args[1]
	fs := flag.NewFlagSet(scenario, flag.ExitOnError)
	endpoints := fs.String("endpoints", "127.0.0.1:2379", "etcd client endpoints, comma separated")
	clients := fs.Int("clients", 50, "register: concurrent clients (one connection and one lease each)")
	publishers := fs.Int("publishers", 10000, "register: distinct keys written")
	services := fs.Int("services", 100, "register: services the keys spread over; push-latency: probe services")
	subscribers := fs.Int("subscribers", 10, "push-latency: watchers, one connection each, on the run's prefix")
	rate := fs.Float64("rate", 100, "push-latency: changes/s")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	warmup := fs.Duration("warmup", time.Second, "push-latency: time before measuring")
	dataSize := fs.Int("data-size", 32, "bytes of value")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Parse(os.Args[2:])
	eps := strings.Split(*endpoints, ",")
	ctx := context.Background()
	var res *result
	var err error
	switch scenario {
	case "register":
		res, err = register(ctx, eps, *clients, *publishers, *services, *duration, *dataSize)
	case "push-latency":
		res, err = pushLatency(ctx, eps, *subscribers, *services, *rate, *duration, *warmup, *dataSize)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdpeer:", err)
		os.Exit(1)
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode([]*result{res})
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\ttarget\tops\terrors\tops/s\tp50 ms\tp99 ms\tp999 ms\tmax ms")
	l := res.Latency
	if l == nil {
		l = &summary{}
	}
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%.3f\t%.3f\t%.3f\t%.3f\n", res.Scenario, res.Target, res.Ops, res.Errors, res.Rate,
		l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs)
	tw.Flush()
}

func newClient(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
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
