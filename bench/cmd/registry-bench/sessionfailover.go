package main

import (
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

func sessionFailoverCommand() *cli.Command {
	return &cli.Command{
		Name: "session-failover",
		Usage: "kill -9 the session that Go-client providers hold (scripts/cluster.sh cluster, 3/3/2): time until each " +
			"provider's publishers are registered again through the other session, over --rounds kills",
		Flags: flags([]cli.Flag{
			&cli.IntFlag{Name: "rounds", Value: 5, Usage: "kills (the victim is restarted; the next round kills the other session)"},
			&cli.IntFlag{Name: "providers", Value: 50, Usage: "Go clients registering publishers"},
			&cli.IntFlag{Name: "per-provider", Value: 4, Usage: "publishers per provider"},
			&cli.IntFlag{Name: "services", Value: 20, Usage: "services the publishers spread over"},
			&cli.DurationFlag{Name: "health-check", Usage: "the clients' HealthCheckInterval (default: the client's)"},
			&cli.DurationFlag{Name: "lease", Value: 2 * time.Second, Usage: "meta lease (SLOTREG_LEASE)"},
			&cli.DurationFlag{Name: "window", Value: 30 * time.Second, Usage: "longest wait for the providers after a kill"},
			&cli.StringFlag{Name: "bin", Usage: "registry binary (default: build ./cmd/registry)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the cluster's state directory and logs"},
		}, outputFlags()),
		Action: func(c *cli.Context) error {
			e, err := newEnv(c, false)
			if err != nil {
				return err
			}
			defer e.close()
			r, err := bench.SessionFailover(e.ctx, bench.SessionFailoverConfig{
				Script:    bench.ScriptOptions{Bin: c.String("bin"), Lease: c.Duration("lease"), Keep: c.Bool("keep")},
				Rounds:    c.Int("rounds"),
				Providers: c.Int("providers"), PerProvider: c.Int("per-provider"), Services: c.Int("services"),
				HealthCheck: c.Duration("health-check"), Window: c.Duration("window"), Progress: e.progress,
			})
			e.add(r)
			if ferr := e.finish(c); ferr != nil && err == nil {
				err = ferr
			}
			return err
		},
	}
}
