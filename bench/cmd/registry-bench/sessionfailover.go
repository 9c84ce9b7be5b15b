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
			&cli.DurationFlag{Name: "window", Value: 30 * time.Second, Usage: "longest wait for the providers after a kill"},
			&cli.DurationFlag{Name: "pause", Usage: "SIGSTOP the session for this long (longer than the lease) instead of kill -9: a hung session, resumed once evicted"},
		}, scriptFlags(2*time.Second), outputFlags()),
		Action: scripted(func(c *cli.Context, e *env) error {
			r, err := bench.SessionFailover(e.ctx, bench.SessionFailoverConfig{
				Script:    scriptOptions(c),
				Rounds:    c.Int("rounds"),
				Providers: c.Int("providers"), PerProvider: c.Int("per-provider"), Services: c.Int("services"),
				HealthCheck: c.Duration("health-check"), Window: c.Duration("window"), Pause: c.Duration("pause"),
				Progress: e.progress,
			})
			e.add(r)
			return err
		}),
	}
}
