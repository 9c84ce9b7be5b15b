package main

import (
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

func lagCommand() *cli.Command {
	return &cli.Command{
		Name: "lag",
		Usage: "follower lag under load: REGISTER with TTL (acknowledged once a follower has it) against " +
			"connection-bound REGISTER (acknowledged by the leader), side by side",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "clients", Value: 16, Usage: "connections per kind"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "how long to write"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			rs, err := bench.Lag(e.ctx, bench.LagConfig{Session: e.addrs[0], Clients: c.Int("clients"),
				Duration: c.Duration("duration"), Progress: e.progress})
			for _, r := range rs {
				e.add(r)
			}
			return err
		}),
	}
}

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name: "migrate",
		Usage: "fill one slot with P publishers, then move its leadership twice (to a follower, to a node " +
			"that holds no copy) while writes to it continue: move time and the longest write wait",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "publishers", Value: 100_000, Usage: "publishers in the moved slot (P)"},
			&cli.IntFlag{Name: "writers", Value: 8, Usage: "connections writing to the slot during the moves"},
			&cli.StringFlag{Name: "meta", Usage: "meta RPC addresses (not needed with --local)"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			metas, err := e.metaAddrs(c)
			if err != nil {
				return err
			}
			r, err := bench.Migrate(e.ctx, bench.MigrateConfig{Session: e.addrs[0], Metas: metas,
				Publishers: c.Int("publishers"), Writers: c.Int("writers"), Progress: e.progress})
			e.add(r)
			return err
		}),
	}
}

func failoverCommand() *cli.Command {
	return &cli.Command{
		Name: "failover",
		Usage: "kill -9 the data node leading the most slots under a write load (scripts/cluster.sh cluster, 3/3/2); " +
			"time until its slots take writes and until subscribers converge, over --rounds kills",
		Flags: flags([]cli.Flag{
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "kills (the victim is restarted between rounds)"},
			&cli.DurationFlag{Name: "heartbeat", Usage: "data and session heartbeat (SLOTREG_HEARTBEAT; default cluster.sh's 500ms)"},
			&cli.Float64Flag{Name: "rate", Value: 1000, Usage: "total writes/s over both sessions"},
			&cli.IntFlag{Name: "services-per-slot", Value: 2, Usage: "services written in every slot"},
			&cli.IntFlag{Name: "subscribers", Value: 2, Usage: "subscribers per session, each on every service"},
			&cli.DurationFlag{Name: "settle", Value: 3 * time.Second, Usage: "load before each kill"},
			&cli.DurationFlag{Name: "window", Value: 30 * time.Second, Usage: "longest wait for recovery after a kill"},
		}, scriptFlags(2*time.Second), outputFlags()),
		Action: scripted(func(c *cli.Context, e *env) error {
			script := scriptOptions(c)
			script.Heartbeat = c.Duration("heartbeat")
			r, err := bench.Failover(e.ctx, bench.FailoverConfig{
				Script: script,
				Rounds: c.Int("rounds"),
				Rate:   c.Float64("rate"), ServicesPerSlot: c.Int("services-per-slot"),
				Subscribers: c.Int("subscribers"), Settle: c.Duration("settle"), Window: c.Duration("window"),
				Progress: e.progress,
			})
			e.add(r)
			return err
		}),
	}
}
