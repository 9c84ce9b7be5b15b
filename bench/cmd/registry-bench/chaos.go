package main

import (
	"strings"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/slotreg/slotreg/bench/chaos"
	"github.com/urfave/cli/v2"
)

func chaosCommand() *cli.Command {
	var names []string
	for _, f := range chaos.Faults {
		names = append(names, f.Name)
	}
	return &cli.Command{
		Name: "chaos",
		Usage: "a 3/3/2 cluster in network namespaces (root) under writers and subscribers, with a randomized fault " +
			"schedule; reports faults, operations, lost publishers, false removals, regressions and convergence, and " +
			"fails if any of the three is above zero",
		Flags: flags([]cli.Flag{
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Minute, Usage: "how long the nemesis runs"},
			&cli.StringFlag{Name: "faults", Usage: "kinds of fault, comma-separated (default all: " + strings.Join(names, ",") + ")"},
			&cli.DurationFlag{Name: "hold", Value: 8 * time.Second, Usage: "longest time a fault lasts"},
			&cli.DurationFlag{Name: "min-hold", Usage: "shortest time a fault lasts (default half of --hold; --min-hold 8s --hold 8s: exactly 8 s)"},
			&cli.DurationFlag{Name: "recover", Value: 5 * time.Second, Usage: "quiet time after each fault"},
			&cli.Uint64Flag{Name: "seed", Usage: "fault schedule seed (default from the clock; printed)"},
			&cli.IntFlag{Name: "writers", Value: 8, Usage: "writers, each on its own connection"},
			&cli.IntFlag{Name: "services", Value: 64, Usage: "services the writers spread over"},
		}, scriptFlags(3*time.Second), outputFlags()),
		Action: scripted(func(c *cli.Context, e *env) error {
			var faults []string
			if f := c.String("faults"); f != "" {
				faults = strings.Split(f, ",")
			}
			r, err := bench.Chaos(e.ctx, bench.ChaosConfig{
				Script:   scriptOptions(c),
				Duration: c.Duration("duration"), Faults: faults, Hold: c.Duration("hold"), MinHold: c.Duration("min-hold"), Recover: c.Duration("recover"),
				Seed: c.Uint64("seed"), Load: chaos.Options{Writers: c.Int("writers"), Services: c.Int("services")},
				Progress: e.progress,
			})
			e.add(r)
			return err
		}),
	}
}
