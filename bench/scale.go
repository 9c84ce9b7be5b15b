package bench

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// ScaleConfig drives the scale scenario: the memory scenario's
// publishers (1M by default), then SubConns connections each subscribed
// to PerConn of those services (100k subscriptions by default), then the
// register and push-latency scenarios (unloaded and at half the maximum)
// on top.
type ScaleConfig struct {
	Memory   MemoryConfig
	SubConns int
	PerConn  int
	Register RegisterConfig
	Push     PushConfig
	// LoadFraction for the loaded push run (0: 0.5).
	LoadFraction float64
}

// Scale runs the scale scenario and returns every run it made.
func Scale(ctx context.Context, cfg ScaleConfig) ([]*Result, error) {
	if len(cfg.Memory.Steps) == 0 {
		cfg.Memory.Steps = []int{1_000_000}
	}
	cfg.SubConns = cmp.Or(max(cfg.SubConns, 0), 1000)
	cfg.PerConn = cmp.Or(max(cfg.PerConn, 0), 100)
	cfg.LoadFraction = cmp.Or(max(cfg.LoadFraction, 0), 0.5)
	var out []*Result
	mc := cfg.Memory
	mc.Services = cmp.Or(max(mc.Services, 0), 10000)
	mc.Hold = func(ctx context.Context, prefix string) error {
		p := cfg.Memory.Progress
		addrs := mc.Local.Sessions()
		p.Logf("scale: opening %d subscriptions over %d connections", cfg.SubConns*cfg.PerConn, cfg.SubConns)
		t0 := time.Now()
		subs, err := subscribeEach(ctx, TargetSlotreg, addrs, cfg.SubConns, func(i int) []string {
			svcs := make([]string, cfg.PerConn)
			for k := range svcs {
				svcs[k] = serviceName(prefix, (i*cfg.PerConn+k)%mc.Services)
			}
			return svcs
		}, func(int) func(*push) { return nil }, true)
		if err != nil {
			return fmt.Errorf("scale: subscribing: %w", err)
		}
		defer closeSubs(subs)
		sub := &Result{Scenario: "scale-subscribe", Target: TargetSlotreg, Ops: int64(cfg.SubConns * cfg.PerConn),
			Seconds: time.Since(t0).Seconds(), Params: map[string]any{"connections": cfg.SubConns, "per_connection": cfg.PerConn}}
		sub.Rate = float64(sub.Ops) / sub.Seconds
		out = append(out, sub)
		rc := cfg.Register
		rc.Addrs = addrs
		r, err := Register(ctx, rc)
		if err != nil {
			return err
		}
		r.Scenario = "scale-register"
		out = append(out, r)
		pc := cfg.Push
		pc.Addrs = addrs
		pr, err := Push(ctx, pc)
		if err != nil {
			return err
		}
		pr.Scenario = "scale-push-latency"
		out = append(out, pr)
		rs, err := PushUnderLoad(ctx, pc, rc, cfg.LoadFraction, 5*time.Second)
		for _, r := range rs {
			r.Scenario = "scale-" + r.Scenario
		}
		out = append(out, rs...)
		return err
	}
	m, err := Memory(ctx, mc)
	if m != nil {
		m.Scenario = "scale-memory"
		out = append([]*Result{m}, out...)
	}
	return out, err
}
