package main

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

func registerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "clients", Value: 50, Usage: "concurrent connections, one request in flight each"},
		&cli.IntFlag{Name: "publishers", Value: 10000, Usage: "distinct publishers written, round robin"},
		&cli.IntFlag{Name: "services", Value: 100, Usage: "services (dataInfoIds) the publishers spread over"},
		&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to write"},
		&cli.IntFlag{Name: "data-size", Value: 32, Usage: "bytes of publisher data"},
		&cli.IntFlag{Name: "ttl", Usage: "REGISTER ... TTL n instead of connection-bound publishers"},
		&cli.Float64Flag{Name: "rate", Usage: "total ops/s to keep to (0: as fast as possible)"},
	}
}

func registerConfig(c *cli.Context, addrs []string, target string) bench.RegisterConfig {
	return bench.RegisterConfig{
		Addrs: addrs, Target: target, Clients: c.Int("clients"), Publishers: c.Int("publishers"),
		Services: c.Int("services"), Duration: c.Duration("duration"), DataSize: c.Int("data-size"),
		TTL: c.Int("ttl"), Rate: c.Float64("rate"),
	}
}

func registerCommand() *cli.Command {
	return &cli.Command{
		Name:  "register",
		Usage: "REGISTER throughput and latency: N publishers over S services through C clients (peers: SET / lease-bound put)",
		Flags: flags(targetFlags(), registerFlags(), peerFlags(), outputFlags()),
		Action: func(c *cli.Context) error {
			e, err := newEnv(c, true)
			if err != nil {
				return err
			}
			defer e.close()
			cfg := registerConfig(c, e.addrs, bench.TargetSlotreg)
			cfg.Progress = e.progress
			r, err := bench.Register(e.ctx, cfg)
			e.add(r)
			if err != nil {
				return err
			}
			err = e.eachPeer(c, func(p bench.Peer, addr string) error {
				if p.Kind == bench.TargetEtcd {
					rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", "register",
						"--endpoints", addr, "--clients", strconv.Itoa(cfg.Clients), "--publishers", strconv.Itoa(cfg.Publishers),
						"--services", strconv.Itoa(cfg.Services), "--duration", cfg.Duration.String(),
						"--data-size", strconv.Itoa(cfg.DataSize))
					e.add(rs...)
					return err
				}
				pc := cfg
				pc.Addrs, pc.Target = []string{addr}, bench.TargetRedis
				r, err := bench.Register(e.ctx, pc)
				e.add(r)
				return err
			})
			if err != nil {
				return err
			}
			return e.finish(c)
		},
	}
}

func pushFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "subscribers", Value: 10, Usage: "subscribing connections, spread over the sessions"},
		&cli.IntFlag{Name: "probe-services", Value: 10, Usage: "services the writer changes; every subscriber watches all"},
		&cli.Float64Flag{Name: "change-rate", Value: 100, Usage: "changes/s the writer makes"},
		&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "time before measuring"},
		&cli.Float64Flag{Name: "load-fraction", Usage: "run a background register load at this fraction of a measured maximum (e.g. 0.5)"},
		&cli.DurationFlag{Name: "max-duration", Value: 5 * time.Second, Usage: "--load-fraction: how long to measure the maximum"},
	}
}

func pushConfig(c *cli.Context, addrs []string, target string) bench.PushConfig {
	return bench.PushConfig{
		Addrs: addrs, Target: target, Subscribers: c.Int("subscribers"), Services: c.Int("probe-services"),
		Rate: c.Float64("change-rate"), Duration: c.Duration("duration"), Warmup: c.Duration("warmup"),
		DataSize: c.Int("data-size"),
	}
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:  "push-latency",
		Usage: "time from a change's send to each subscriber's receipt (peers: PUBLISH/SUBSCRIBE / prefix watch)",
		Flags: flags(targetFlags(), registerFlags(), pushFlags(), peerFlags(), outputFlags()),
		Action: func(c *cli.Context) error {
			e, err := newEnv(c, true)
			if err != nil {
				return err
			}
			defer e.close()
			if err := runPush(c, e); err != nil {
				return err
			}
			return e.finish(c)
		},
	}
}

// runPush runs push-latency on the sessions, loaded or not, then on the
// peers.
func runPush(c *cli.Context, e *env) error {
	pc := pushConfig(c, e.addrs, bench.TargetSlotreg)
	pc.Progress = e.progress
	if f := c.Float64("load-fraction"); f > 0 {
		rc := registerConfig(c, e.addrs, bench.TargetSlotreg)
		rc.Progress = e.progress
		rs, err := bench.PushUnderLoad(e.ctx, pc, rc, f, c.Duration("max-duration"))
		e.add(rs...)
		return err
	}
	r, err := bench.Push(e.ctx, pc)
	e.add(r)
	if err != nil {
		return err
	}
	return e.eachPeer(c, func(p bench.Peer, addr string) error {
		if p.Kind == bench.TargetEtcd {
			rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", "push-latency",
				"--endpoints", addr, "--subscribers", strconv.Itoa(pc.Subscribers),
				"--services", strconv.Itoa(pc.Services), "--rate", fmt.Sprint(pc.Rate),
				"--duration", pc.Duration.String(), "--warmup", pc.Warmup.String(), "--data-size", strconv.Itoa(pc.DataSize))
			e.add(rs...)
			return err
		}
		rp := pc
		rp.Addrs, rp.Target = []string{addr}, bench.TargetRedis
		r, err := bench.Push(e.ctx, rp)
		e.add(r)
		return err
	})
}

// eachPeer resolves each --peer (starting a local one when asked) and
// runs fn against it.
func (e *env) eachPeer(c *cli.Context, fn func(p bench.Peer, addr string) error) error {
	return e.eachPeerOf(c, nil, fn)
}

// eachPeerOf is eachPeer for a workload only some kinds of peer have:
// the others (not in kinds, when kinds is given) are passed over.
func (e *env) eachPeerOf(c *cli.Context, kinds []string, fn func(p bench.Peer, addr string) error) error {
	for _, s := range c.StringSlice("peer") {
		p, err := bench.ParsePeer(s)
		if err != nil {
			return err
		}
		if kinds != nil && !slices.Contains(kinds, p.Kind) {
			continue
		}
		addr := p.Addr
		if addr == "local" {
			var st *bench.Started
			if p.Kind == bench.TargetRedis {
				st, err = bench.StartRedis(e.ctx)
			} else {
				st, err = bench.StartEtcd(e.ctx)
			}
			if err != nil {
				return err
			}
			e.progress.Logf("started %s on %s", p.Kind, st.Addr)
			addr = st.Addr
			err = fn(p, addr)
			st.Stop()
		} else {
			err = fn(p, addr)
		}
		if err != nil {
			return fmt.Errorf("peer %s: %w", p.Kind, err)
		}
	}
	return nil
}

// onlyPeers fails when a --peer names a kind the command has no workload
// for.
func onlyPeers(c *cli.Context, command string, kinds ...string) error {
	for _, s := range c.StringSlice("peer") {
		if p, err := bench.ParsePeer(s); err == nil && !slices.Contains(kinds, p.Kind) {
			return fmt.Errorf("%s: no %s workload; use --peer %s=HOST:PORT", command, p.Kind, kinds[0])
		}
	}
	return nil
}
