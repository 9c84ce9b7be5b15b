package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/slotreg/slotreg/bench/chaos"
)

var _ chaos.Cluster = (*ScriptCluster)(nil)

// ChaosConfig is the chaos scenario: a 3/3/2 cluster in network
// namespaces under a write and subscribe load, with a randomized fault
// schedule (bench/chaos).
type ChaosConfig struct {
	Script   ScriptOptions
	Duration time.Duration // of the fault schedule
	Faults   []string      // kinds, by name; default all
	Hold     time.Duration // how long a fault lasts, at most
	MinHold  time.Duration // and at least (0: half of Hold)
	Recover  time.Duration // quiet time after each fault
	Seed     uint64
	Load     chaos.Options // Sessions is filled in
	Settle   time.Duration // longest wait for agreement after the last fault
	Progress *Progress
}

// Chaos runs the chaos scenario and reports faults injected, operations,
// lost publishers, false removals, regressions and convergence. It fails
// (with the result) if any of the three is above zero or the cluster did
// not converge.
func Chaos(ctx context.Context, cfg ChaosConfig) (*Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("chaos: network namespaces need root")
	}
	faults, err := chaos.FaultsNamed(cfg.Faults)
	if err != nil {
		return nil, err
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if cfg.Settle == 0 {
		cfg.Settle = 30 * time.Second
	}
	cfg.Script.NetNS = true
	if cfg.Script.Lease == 0 {
		cfg.Script.Lease = 3 * time.Second
	}
	cfg.Script.Progress = cfg.Progress
	sc, err := StartScriptCluster(ctx, cfg.Script)
	if err != nil {
		return nil, err
	}
	defer sc.Down()
	if cfg.Load.Sessions, err = sc.Addrs(ctx, "session"); err != nil {
		return nil, err
	}
	run, err := chaos.Start(ctx, cfg.Load)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	start := time.Now()
	injected := chaos.RunNemesis(ctx, sc, chaos.NemesisOptions{Faults: faults, Hold: cfg.Hold, MinHold: cfg.MinHold, Recover: cfg.Recover,
		Seed: cfg.Seed, Duration: cfg.Duration, Log: cfg.Progress.Logf})
	_ = sc.Heal(context.WithoutCancel(ctx))
	run.StopWriters()
	rep := run.Settle(ctx, cfg.Settle)

	r := &Result{Scenario: "chaos", Target: "slotreg", Seconds: time.Since(start).Seconds(), Ops: rep.Acked, Errors: rep.Failed,
		Params: map[string]any{"duration": cfg.Duration.String(), "seed": cfg.Seed, "writers": cfg.Load.Writers,
			"services": cfg.Load.Services, "lease": cfg.Script.Lease.String()}}
	r.Rate = float64(rep.Acked) / r.Seconds
	kinds := map[string]int{}
	failed := 0
	for _, in := range injected {
		kinds[in.Name]++
		if in.Err != nil {
			failed++
			r.Note("fault %s at %s failed: %v", in.Name, in.Start.Format("15:04:05"), in.Err)
		}
	}
	r.Add("faults injected", float64(len(injected)), "")
	r.Add("faults that failed to inject", float64(failed), "")
	r.Add("lost", float64(rep.Lost), "publishers")
	r.Add("false removals", float64(rep.FalseRemovals), "")
	r.Add("removals explained by a fenced session", float64(rep.Fenced), "")
	r.Add("regressions", float64(rep.Regressions), "")
	r.Add("resurrected", float64(rep.Resurrected), "publishers")
	r.Add("convergence after the last fault", rep.Convergence.Seconds()*1000, "ms")
	r.Add("longest client wait", rep.LongestWait.Seconds()*1000, "ms")
	if !rep.LongestWaitAt.IsZero() {
		r.Note("the longest wait began at %s (line it up with the faults above)", rep.LongestWaitAt.Format("15:04:05.000"))
	}
	r.Add("pushes", float64(rep.Pushes), "")
	r.Add("writer reconnects", float64(rep.Reconnects), "")
	for k, n := range kinds {
		r.Note("%s x%d", k, n)
	}
	for _, v := range rep.Violations {
		r.Note("%s %s %s: %s", v.At.Format("15:04:05.000"), v.Kind, v.Service, v.Detail)
	}
	if rep.Lost+rep.FalseRemovals+rep.Regressions+rep.Resurrected > 0 || !rep.Converged {
		return r, fmt.Errorf("chaos: %s", rep)
	}
	return r, nil
}
