package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// LagConfig drives the lag scenario (issue 3's follower lag under load).
// A write to a TTL publisher is acknowledged only once a follower of its
// slot has applied it, while a connection-bound one is acknowledged as
// soon as the leader has; running both side by side under the same load,
// the difference of their latencies is the time a write takes to reach a
// follower.
type LagConfig struct {
	Session  string
	Clients  int // per kind (default 16)
	Duration time.Duration
	Progress *Progress
}

// Lag runs the scenario.
func Lag(ctx context.Context, cfg LagConfig) ([]*Result, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	kinds := []struct {
		name string
		ttl  bool
	}{{"lag-leader-ack", false}, {"lag-follower-ack", true}}
	hists := []*Histogram{NewHistogram(), NewHistogram()}
	var mu sync.Mutex
	var ops, errs [2]atomic.Int64
	var clients []*redis.Client
	for k := range kinds {
		deadline := time.Now().Add(cfg.Duration)
		var wg sync.WaitGroup
		stop := cfg.Progress.track(kinds[k].name, &ops[k], &errs[k])
		for c := 0; c < cfg.Clients; c++ {
			cl := dial(cfg.Session)
			clients = append(clients, cl)
			wg.Add(1)
			go func(k, c int, cl *redis.Client) {
				defer wg.Done()
				for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
					args := []any{proto.CmdRegister, "lag-svc-" + strconv.Itoa((c*7+n)%64), kinds[k].name + strconv.Itoa(c), strconv.Itoa(n)}
					if kinds[k].ttl {
						args = append(args, proto.OptTTL, "60")
					}
					start := time.Now()
					if err := cl.Do(ctx, args...).Err(); err != nil {
						errs[k].Add(1)
						continue
					}
					d := time.Since(start)
					ops[k].Add(1)
					mu.Lock()
					hists[k].Record(d)
					mu.Unlock()
				}
			}(k, c, cl)
		}
		wg.Wait()
		stop()
	}
	closeAll(clients)
	var out []*Result
	for k, kind := range kinds {
		r := &Result{Scenario: kind.name, Target: cfg.Session, Ops: ops[k].Load(), Errors: errs[k].Load(),
			Seconds: cfg.Duration.Seconds(), Params: map[string]any{"clients": cfg.Clients}}
		r.Rate = float64(r.Ops) / r.Seconds
		r.setHist(hists[k])
		r.Latency = hists[k].Summary()
		out = append(out, r)
	}
	if len(out) == 2 && out[0].Latency != nil && out[1].Latency != nil {
		out[1].Add("follower_lag_p50_ms", out[1].Latency.P50Ms-out[0].Latency.P50Ms, "ms")
		out[1].Add("follower_lag_p99_ms", out[1].Latency.P99Ms-out[0].Latency.P99Ms, "ms")
	}
	return out, nil
}
