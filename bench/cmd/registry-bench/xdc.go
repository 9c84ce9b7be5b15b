package main

import (
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

func xdcCommand() *cli.Command {
	return &cli.Command{
		Name: "xdc",
		Usage: "two datacenters (two scripts/cluster.sh clusters, 3/3/2 each; root, nft): REGISTER in dc1 -> push to a SCOPE global " +
			"subscriber in dc2, unloaded and under load; dc2's sync of P publishers of dc1, its resync after a link cut it rides out " +
			"and after one past --remote-expire; the heap a remote publisher costs",
		Flags: flags([]cli.Flag{
			&cli.IntFlag{Name: "rounds", Value: 2000, Usage: "propagation rounds, one at a time (unloaded, then again under load)"},
			&cli.Float64Flag{Name: "load-rate", Usage: "background REGISTER/s over both datacenters (default: --load-fraction of a measured maximum)"},
			&cli.Float64Flag{Name: "load-fraction", Value: 0.5, Usage: "the background load's share of the maximum measured for --max-duration"},
			&cli.DurationFlag{Name: "max-duration", Value: 5 * time.Second, Usage: "how long to measure the maximum"},
			&cli.IntFlag{Name: "load-clients", Value: 48, Usage: "background writer connections, over the four sessions"},
			&cli.IntFlag{Name: "publishers", Value: 1_000_000, Usage: "publishers registered in dc1 for the resync and memory parts (P)"},
			&cli.IntFlag{Name: "services", Value: 10_000, Usage: "services the P publishers spread over"},
			&cli.IntFlag{Name: "conns", Value: 16, Usage: "connections holding the P publishers"},
			&cli.IntFlag{Name: "pipeline", Value: 256, Usage: "REGISTERs pipelined per connection"},
			&cli.DurationFlag{Name: "remote-expire", Value: 5 * time.Second, Usage: "dc2's SLOTREG_REMOTE_EXPIRE"},
			&cli.DurationFlag{Name: "short-cut", Value: 2 * time.Second, Usage: "the link outage dc2 rides out (below --remote-expire)"},
			&cli.DurationFlag{Name: "long-cut", Value: 8 * time.Second, Usage: "the link outage past --remote-expire (dc2 drops dc1's publishers)"},
			&cli.Float64Flag{Name: "change-pct", Value: 1, Usage: "percent of dc1's publishers given new data during the long cut"},
			&cli.DurationFlag{Name: "settle", Value: 5 * time.Second, Usage: "wait before the heap readings"},
			&cli.DurationFlag{Name: "window", Value: 3 * time.Minute, Usage: "longest wait for each sync"},
		}, scriptFlags(3*time.Second), outputFlags()),
		Action: scripted(func(c *cli.Context, e *env) error {
			rs, err := bench.XDC(e.ctx, bench.XDCConfig{
				Script: scriptOptions(c),
				Rounds: c.Int("rounds"), LoadRate: c.Float64("load-rate"), LoadFraction: c.Float64("load-fraction"),
				MaxFor: c.Duration("max-duration"), LoadClients: c.Int("load-clients"),
				Publishers: c.Int("publishers"), Services: c.Int("services"), Conns: c.Int("conns"), Batch: c.Int("pipeline"),
				RemoteExpire: c.Duration("remote-expire"), ShortCut: c.Duration("short-cut"), LongCut: c.Duration("long-cut"),
				ChangePct: c.Float64("change-pct"), Settle: c.Duration("settle"), Window: c.Duration("window"),
				Progress: e.progress,
			})
			e.add(rs...)
			return err
		}),
	}
}
