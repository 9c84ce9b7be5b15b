package main

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

// simple wraps an action that needs a target and prints the report.
func simple(run func(c *cli.Context, e *env) error) cli.ActionFunc { return withEnv(true, run) }

// scripted wraps an action that starts its own scripts/cluster.sh cluster
// (see scriptFlags) and prints the report.
func scripted(run func(c *cli.Context, e *env) error) cli.ActionFunc { return withEnv(false, run) }

// scriptFlags are the flags of a command that starts its own cluster with
// scripts/cluster.sh; scriptOptions reads them.
func scriptFlags(lease time.Duration) []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "lease", Value: lease, Usage: "meta lease (SLOTREG_LEASE)"},
		&cli.StringFlag{Name: "bin", Usage: "registry binary (default: build ./cmd/registry)"},
		&cli.BoolFlag{Name: "keep", Usage: "keep the cluster's state directory and logs"},
	}
}

func scriptOptions(c *cli.Context) bench.ScriptOptions {
	return bench.ScriptOptions{Bin: c.String("bin"), Lease: c.Duration("lease"), Keep: c.Bool("keep")}
}

// withEnv runs an action in an env, with a target (see targetFlags) or
// without, and prints the report if it has results.
func withEnv(target bool, run func(c *cli.Context, e *env) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		e, err := newEnv(c, target)
		if err != nil {
			return err
		}
		defer e.close()
		err = run(c, e)
		if len(e.report.Results) > 0 {
			if ferr := e.finish(c); ferr != nil && err == nil {
				err = ferr
			}
		}
		return err
	}
}

func lookupCommand() *cli.Command {
	return &cli.Command{
		Name:  "lookup",
		Usage: "LOOKUP throughput and latency over services with P publishers each",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "clients", Value: 50, Usage: "concurrent connections"},
			&cli.IntFlag{Name: "services", Value: 100, Usage: "services looked up at random"},
			&cli.IntFlag{Name: "per-service", Value: 10, Usage: "publishers registered in each service first"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to look up"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			r, err := bench.Lookup(e.ctx, bench.LookupConfig{
				Addrs: e.addrs, Clients: c.Int("clients"), Services: c.Int("services"),
				PerService: c.Int("per-service"), Duration: c.Duration("duration"), Progress: e.progress,
			})
			e.add(r)
			return err
		}),
	}
}

func fanoutCommand() *cli.Command {
	return &cli.Command{
		Name:  "fanout",
		Usage: "one change to K subscribers spread over the sessions: time until all have it (peer: PUBLISH to K subscribers of a Redis channel)",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "subscribers", Value: 10000, Usage: "subscribing connections (K)"},
			&cli.IntFlag{Name: "rounds", Value: 5, Usage: "changes, one at a time"},
			&cli.DurationFlag{Name: "gap", Value: time.Second, Usage: "pause between rounds"},
		}, peerFlags(), outputFlags()),
		Before: func(c *cli.Context) error {
			if err := fdsFor(c.Bool("inproc"), c.Int("subscribers")); err != nil {
				return err
			}
			return onlyPeers(c, "fanout", bench.TargetRedis)
		},
		Action: simple(func(c *cli.Context, e *env) error {
			return runFanout(c, e, bench.FanoutConfig{Subscribers: c.Int("subscribers"), Rounds: c.Int("rounds"), Gap: c.Duration("gap")})
		}),
	}
}

// fdsFor refuses, before anything starts, a fanout this process cannot
// open the sockets for: K subscribers take K here, and with --inproc the
// session's K more. It failed half way before, with "too many open
// files" from the dialer and a subscriber's read timing out.
func fdsFor(inproc bool, k int) error {
	need := uint64(k) + 256
	if inproc {
		need += uint64(k)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= need {
		return nil
	}
	err := fmt.Errorf("fanout: %d subscribers need about %d open files in this process, and it may open %d (ulimit -n; hard limit %d)",
		k, need, lim.Cur, lim.Max)
	if inproc {
		err = fmt.Errorf("%w; without --inproc the session's sockets are another process's", err)
	}
	return err
}

// runFanout runs fanout on the sessions, then on every Redis peer twice:
// publishing the probe data alone (32 bytes), and publishing as many
// bytes as slotreg's push of it carried (scenario fanout-push-size).
func runFanout(c *cli.Context, e *env, fc bench.FanoutConfig) error {
	fc.Addrs, fc.Target, fc.Progress = e.addrs, bench.TargetSlotreg, e.progress
	r, err := bench.Fanout(e.ctx, fc)
	e.add(r)
	if err != nil {
		return err
	}
	pushBytes, _ := r.Params["message_bytes"].(int)
	return e.eachPeerOf(c, []string{bench.TargetRedis}, func(_ bench.Peer, addr string) error {
		pc := fc
		pc.Addrs, pc.Target = []string{addr}, bench.TargetRedis
		r, err := bench.Fanout(e.ctx, pc)
		e.add(r)
		if err != nil || pushBytes <= pc.PayloadBytes {
			return err
		}
		pc.PayloadBytes = pushBytes
		r, err = bench.Fanout(e.ctx, pc)
		if r != nil {
			r.Scenario = bench.ScenarioFanoutPushSize
		}
		e.add(r)
		return err
	})
}

func churnCommand() *cli.Command {
	return &cli.Command{
		Name:  "churn",
		Usage: "a steady register/unregister/reconnect mix at --churn-rate, with push latency measured meanwhile",
		Flags: flags(targetFlags(), pushFlags(), []cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to measure"},
			&cli.IntFlag{Name: "data-size", Value: 32, Usage: "bytes of probe data"},
			&cli.Float64Flag{Name: "churn-rate", Value: 1000, Usage: "churn ops/s"},
			&cli.IntFlag{Name: "churn-clients", Value: 20, Usage: "churning connections"},
			&cli.IntFlag{Name: "services", Value: 100, Usage: "services the churn spreads over"},
			&cli.IntFlag{Name: "unregister-pct", Value: 40, Usage: "percent of churn ops that unregister"},
			&cli.IntFlag{Name: "reconnect-pct", Value: 2, Usage: "percent of churn ops that reconnect"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			pc := pushConfig(c, e.addrs, bench.TargetSlotreg)
			pc.Progress = e.progress
			rs, err := bench.PushUnderChurn(e.ctx, pc, bench.ChurnConfig{
				Addrs: e.addrs, Clients: c.Int("churn-clients"), Rate: c.Float64("churn-rate"),
				Services: c.Int("services"), UnregisterPct: c.Int("unregister-pct"), ReconnectPct: c.Int("reconnect-pct"),
			})
			e.add(rs...)
			return err
		}),
	}
}

func parseSteps(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult, f = 1000, strings.TrimSuffix(f, "k")
		case strings.HasSuffix(f, "M"):
			mult, f = 1_000_000, strings.TrimSuffix(f, "M")
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--steps: %q is not a count", f)
		}
		if len(out) > 0 && n*mult <= out[len(out)-1] {
			return nil, fmt.Errorf("--steps must ascend")
		}
		out = append(out, n*mult)
	}
	return out, nil
}

func memoryFlags(steps string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "steps", Value: steps, Usage: "publisher counts to read RSS at (cumulative; k and M suffixes)"},
		&cli.IntFlag{Name: "mem-services", Value: 10000, Usage: "services the publishers spread over"},
		&cli.IntFlag{Name: "mem-clients", Value: 50, Usage: "connections holding the publishers"},
		&cli.IntFlag{Name: "mem-data-size", Value: 32, Usage: "bytes of publisher data"},
		&cli.DurationFlag{Name: "settle", Value: 3 * time.Second, Usage: "wait after each step before reading RSS"},
	}
}

func memoryConfig(c *cli.Context, e *env) (bench.MemoryConfig, error) {
	steps, err := parseSteps(c.String("steps"))
	if err != nil {
		return bench.MemoryConfig{}, err
	}
	return bench.MemoryConfig{
		Local: e.local, Steps: steps, Services: c.Int("mem-services"), Clients: c.Int("mem-clients"),
		DataSize: c.Int("mem-data-size"), Replicas: c.Int("replicas"), Settle: c.Duration("settle"), Progress: e.progress,
	}, nil
}

func memoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "memory",
		Usage: "RSS of the data and session processes, and per publisher, at --steps publishers (needs --local)",
		Flags: flags(targetFlags(), memoryFlags("100k,1M"), outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			mc, err := memoryConfig(c, e)
			if err != nil {
				return err
			}
			r, err := bench.Memory(e.ctx, mc)
			e.add(r)
			return err
		}),
	}
}

func scaleCommand() *cli.Command {
	return &cli.Command{
		Name:  "scale",
		Usage: "1M publishers and 100k subscriptions held, then register and push-latency (unloaded and loaded) on top (needs --local)",
		Flags: flags(targetFlags(), memoryFlags("1M"), registerFlags(), pushFlags(), []cli.Flag{
			&cli.IntFlag{Name: "sub-conns", Value: 1000, Usage: "subscribing connections held"},
			&cli.IntFlag{Name: "per-conn", Value: 100, Usage: "subscriptions per held connection"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			mc, err := memoryConfig(c, e)
			if err != nil {
				return err
			}
			rc := registerConfig(c, e.addrs, bench.TargetSlotreg)
			rc.Progress = e.progress
			pc := pushConfig(c, e.addrs, bench.TargetSlotreg)
			pc.Progress = e.progress
			lf := c.Float64("load-fraction")
			if lf == 0 {
				lf = 0.5
			}
			rs, err := bench.Scale(e.ctx, bench.ScaleConfig{
				Memory: mc, SubConns: c.Int("sub-conns"), PerConn: c.Int("per-conn"), Register: rc, Push: pc, LoadFraction: lf,
			})
			e.add(rs...)
			return err
		}),
	}
}

func suiteCommand() *cli.Command {
	return &cli.Command{
		Name: "suite",
		Usage: "a short standard run (make bench): register, push-latency unloaded and at half load, lookup, fanout, churn, " +
			"config push and lock acquire, each with its peers; the report ends with issue 18's goal table",
		Flags: flags(targetFlags(), registerFlags(), pushFlags(), []cli.Flag{
			&cli.IntFlag{Name: "fanout-subscribers", Value: 10000, Usage: "fanout: subscribing connections"},
			&cli.IntFlag{Name: "fanout-rounds", Value: 5, Usage: "fanout: changes, one at a time (the figure is their median)"},
		}, peerFlags(), outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			d := c.Duration("duration")
			rc := registerConfig(c, e.addrs, bench.TargetSlotreg)
			rc.Progress = e.progress
			r, err := bench.Register(e.ctx, rc)
			e.add(r)
			if err != nil {
				return err
			}
			if err := e.eachPeer(c, func(p bench.Peer, addr string) error {
				if p.Kind == bench.TargetEtcd {
					rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", "register",
						"--endpoints", addr, "--clients", strconv.Itoa(rc.Clients), "--publishers", strconv.Itoa(rc.Publishers),
						"--services", strconv.Itoa(rc.Services), "--duration", rc.Duration.String())
					e.add(rs...)
					return err
				}
				pr := rc
				pr.Addrs, pr.Target = []string{addr}, bench.TargetRedis
				r, err := bench.Register(e.ctx, pr)
				e.add(r)
				return err
			}); err != nil {
				return err
			}
			if err := runPush(c, e); err != nil {
				return err
			}
			pc := pushConfig(c, e.addrs, bench.TargetSlotreg)
			pc.Progress = e.progress
			rs, err := bench.PushUnderLoad(e.ctx, pc, rc, 0.5, c.Duration("max-duration"))
			e.add(rs...)
			if err != nil {
				return err
			}
			lr, err := bench.Lookup(e.ctx, bench.LookupConfig{Addrs: e.addrs, Duration: d, Progress: e.progress})
			e.add(lr)
			if err != nil {
				return err
			}
			if err := runFanout(c, e, bench.FanoutConfig{Subscribers: c.Int("fanout-subscribers"), Rounds: c.Int("fanout-rounds")}); err != nil {
				return err
			}
			rs, err = bench.PushUnderChurn(e.ctx, pc, bench.ChurnConfig{Addrs: e.addrs})
			e.add(rs...)
			if err != nil {
				return err
			}
			if err := runConfigPush(c, e, bench.ConfigPushConfig{Watchers: 100, Changes: 200}); err != nil {
				return err
			}
			return runLock(c, e, bench.LockConfig{Clients: 8, Duration: d})
		}),
	}
}
