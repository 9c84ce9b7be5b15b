package main

import (
	"errors"
	"strings"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

// metaFlag names the meta nodes for scenarios that write through meta.
func metaFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "meta", Usage: "meta RPC addresses HOST:PORT[,...] (not needed with --local)", EnvVars: []string{"SLOTREG_META"}}
}

// metaAddrs is --meta, or the local cluster's meta.
func (e *env) metaAddrs(c *cli.Context) ([]string, error) {
	if e.local != nil {
		var out []string
		for _, p := range e.local.ByRole("meta") {
			out = append(out, p.Addr)
		}
		return out, nil
	}
	var out []string
	for _, a := range strings.Split(c.String("meta"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("this scenario writes through meta: give --meta HOST:PORT[,...] or use --local")
	}
	return out, nil
}

func configPushCommand() *cli.Command {
	return &cli.Command{
		Name:  "config-push",
		Usage: "config change to watcher latency: CONFSET through meta, pushes to W watchers of config/<key> over the sessions",
		Flags: flags(targetFlags(), []cli.Flag{
			metaFlag(),
			&cli.IntFlag{Name: "watchers", Value: 100, Usage: "watching connections, spread over the sessions"},
			&cli.IntFlag{Name: "changes", Value: 200, Usage: "config changes, one at a time"},
			&cli.DurationFlag{Name: "gap", Value: 20 * time.Millisecond, Usage: "pause after each change has reached every watcher"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			metas, err := e.metaAddrs(c)
			if err != nil {
				return err
			}
			r, err := bench.ConfigPush(e.ctx, bench.ConfigPushConfig{Addrs: e.addrs, Metas: metas,
				Watchers: c.Int("watchers"), Changes: c.Int("changes"), Gap: c.Duration("gap"), Progress: e.progress})
			e.add(r)
			return err
		}),
	}
}

func lockCommand() *cli.Command {
	return &cli.Command{
		Name:  "lock",
		Usage: "LOCK acquire latency: C clients take and release locks in a loop (--locks below --clients: they compete)",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "concurrent connections"},
			&cli.IntFlag{Name: "locks", Usage: "distinct lock names (default: one per client, no contention)"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to run"},
		}, outputFlags()),
		Action: simple(func(c *cli.Context, e *env) error {
			r, err := bench.LockAcquire(e.ctx, bench.LockConfig{Addrs: e.addrs, Clients: c.Int("clients"),
				Locks: c.Int("locks"), Duration: c.Duration("duration"), Progress: e.progress})
			e.add(r)
			return err
		}),
	}
}
