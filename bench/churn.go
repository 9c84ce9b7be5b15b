package bench

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// ChurnConfig drives the churn load: Clients connections together make
// Rate operations a second, a mix of registering a new publisher,
// unregistering one of their own and reconnecting (closing the
// connection, which removes its publishers, then registering them again
// on a new one). Each connection keeps at most MaxPerClient publishers.
type ChurnConfig struct {
	Addrs        []string
	Clients      int
	Rate         float64
	Services     int
	MaxPerClient int
	// Percentages of unregister and reconnect operations; the rest
	// register.
	UnregisterPct, ReconnectPct int
	Duration                    time.Duration
	Progress                    *Progress
}

func (c *ChurnConfig) defaults() error {
	if len(c.Addrs) == 0 {
		return errors.New("churn: no address")
	}
	c.Clients = cmp.Or(max(c.Clients, 0), 20)
	c.Rate = cmp.Or(max(c.Rate, 0), 1000)
	c.Services = cmp.Or(max(c.Services, 0), 100)
	c.MaxPerClient = cmp.Or(max(c.MaxPerClient, 0), 50)
	if c.UnregisterPct == 0 && c.ReconnectPct == 0 {
		c.UnregisterPct, c.ReconnectPct = 40, 2
	}
	c.Duration = cmp.Or(max(c.Duration, 0), 10*time.Second)
	return nil
}

// Churn runs the churn load until ctx ends or Duration passes.
func Churn(ctx context.Context, cfg ChurnConfig) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	prefix := runPrefix("churn")
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var ops, errs, regs, unregs, reconns atomic.Int64
	var firstErr atomic.Value
	hist := NewHistogram()
	stop := cfg.Progress.track("slotreg churn", &ops, &errs)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := cfg.Addrs[w%len(cfg.Addrs)]
			c := dial(addr)
			defer func() { c.Close() }()
			h := NewHistogram()
			defer hist.Merge(h)
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			type pub struct{ svc, rid string }
			var mine []pub
			next := 0
			do := func(args ...any) bool {
				t0 := time.Now()
				err := c.Do(ctx, args...).Err()
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					return false
				}
				h.Record(time.Since(t0))
				ops.Add(1)
				return true
			}
			register := func(p pub) bool {
				return do(proto.CmdRegister, p.svc, p.rid, stampData(time.Now(), 32))
			}
			pace := newPacer(cfg.Rate / float64(cfg.Clients))
			for pace.wait(ctx) {
				roll := rng.IntN(100)
				switch {
				case roll < cfg.ReconnectPct && len(mine) > 0:
					c.Close()
					c = dial(addr)
					reconns.Add(1)
					for _, p := range mine {
						if ctx.Err() != nil {
							return
						}
						register(p)
					}
				case roll < cfg.ReconnectPct+cfg.UnregisterPct && len(mine) > 0 || len(mine) >= cfg.MaxPerClient:
					i := rng.IntN(len(mine))
					if do(proto.CmdUnregister, mine[i].svc, mine[i].rid) {
						unregs.Add(1)
						mine[i] = mine[len(mine)-1]
						mine = mine[:len(mine)-1]
					}
				default:
					p := pub{serviceName(prefix, rng.IntN(cfg.Services)), "c" + strconv.Itoa(w) + "-" + strconv.Itoa(next)}
					next++
					if register(p) {
						regs.Add(1)
						mine = append(mine, p)
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	res := &Result{Scenario: "churn", Target: TargetSlotreg, Params: map[string]any{
		"clients": cfg.Clients, "rate": cfg.Rate, "services": cfg.Services, "max_per_client": cfg.MaxPerClient,
		"unregister_pct": cfg.UnregisterPct, "reconnect_pct": cfg.ReconnectPct, "sessions": len(cfg.Addrs),
	}}
	res.timed(ops.Load(), errs.Load(), elapsed, hist)
	res.Add("registers (new publishers)", float64(regs.Load()), "")
	res.Add("unregisters", float64(unregs.Load()), "")
	res.Add("reconnects (publishers re-registered count as ops)", float64(reconns.Load()), "")
	if e := firstErr.Load(); e != nil {
		res.Note("first error: %v", e)
	}
	return res, nil
}

// PushUnderChurn runs push-latency with a churn load in the background
// and returns the push run and the churn run.
func PushUnderChurn(ctx context.Context, pc PushConfig, cc ChurnConfig) ([]*Result, error) {
	if err := pc.defaults(); err != nil {
		return nil, err
	}
	cc.Duration = pc.Warmup + pc.Duration + 5*time.Second
	cc.Progress = nil
	var bg *Result
	var bgErr error
	pc.Background = func(ctx context.Context) { bg, bgErr = Churn(ctx, cc) }
	res, err := Push(ctx, pc)
	if err != nil {
		return nil, err
	}
	res.Scenario = "push-latency-churn"
	res.Params["churn_rate"] = cc.Rate
	if bg == nil {
		return nil, errors.New("churn: " + cmp.Or(errString(bgErr), "no result"))
	}
	res.Add("churn ops/s achieved", bg.Rate, "ops/s")
	return []*Result{res, bg}, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
