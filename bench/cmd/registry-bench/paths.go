package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

// pathParts are the parts of the paths command, in the order they run.
var pathParts = []string{"watch", "children", "lock"}

func pathsCommand() *cli.Command {
	return &cli.Command{
		Name: "paths",
		Usage: "issue 15: prefix-watch event latency (W watchers over P paths), CHILDREN of a parent with N children " +
			"(flat and subtrees), waiting-lock handover; --peer etcd=... runs each against etcd in the same run",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.StringFlag{Name: "parts", Value: strings.Join(pathParts, ","), Usage: "which parts to run: " + strings.Join(pathParts, ",")},
			&cli.IntFlag{Name: "load-conns", Value: 8, Usage: "connections the preloads go through, pipelined (they hold the EPHEMERAL paths)"},
			&cli.IntFlag{Name: "watchers", Value: 1000, Usage: "watch: PSUBSCRIBE connections, spread over the sessions"},
			&cli.IntFlag{Name: "paths", Value: 100_000, Usage: "watch: paths under the watched prefix"},
			&cli.IntFlag{Name: "parents", Value: 1000, Usage: "watch: parents the paths spread over"},
			&cli.IntFlag{Name: "attach", Value: 8, Usage: "watch: watchers taking their initial ADDs at once"},
			&cli.IntFlag{Name: "changes", Value: 200, Usage: "watch: timed PUTs, one at a time"},
			&cli.DurationFlag{Name: "gap", Value: 20 * time.Millisecond, Usage: "watch: pause after each change reached every watcher"},
			&cli.IntFlag{Name: "children", Value: 10_000, Usage: "children: children of the parent, in each shape"},
			&cli.IntFlag{Name: "calls", Value: 200, Usage: "children: CHILDREN calls timed in each shape"},
			&cli.IntFlag{Name: "contenders", Value: 8, Usage: "lock: connections competing for one lock with LOCK ... WAIT"},
			&cli.IntFlag{Name: "handovers", Value: 300, Usage: "lock: handovers to time"},
			&cli.DurationFlag{Name: "hold", Value: time.Millisecond, Usage: "lock: how long a holder keeps the lock"},
			&cli.DurationFlag{Name: "lock-ttl", Value: 10 * time.Second, Usage: "lock: LOCK's TTL"},
			&cli.DurationFlag{Name: "lock-wait", Value: 30 * time.Second, Usage: "lock: LOCK's WAIT"},
		}, peerFlags(), outputFlags()),
		Action: func(c *cli.Context) error {
			parts := strings.Split(c.String("parts"), ",")
			for _, p := range parts {
				if !slices.Contains(pathParts, p) {
					return fmt.Errorf("--parts: unknown part %q (want some of %s)", p, strings.Join(pathParts, ","))
				}
			}
			for _, s := range c.StringSlice("peer") {
				if p, err := bench.ParsePeer(s); err == nil && p.Kind != bench.TargetEtcd {
					return fmt.Errorf("paths: no %s workload; use --peer etcd=HOST:PORT", p.Kind)
				}
			}
			e, err := newEnv(c, true)
			if err != nil {
				return err
			}
			defer e.close()
			cfg := bench.PathsConfig{
				Addrs: e.addrs, LoadConns: c.Int("load-conns"),
				Watchers: c.Int("watchers"), Paths: c.Int("paths"), Parents: c.Int("parents"), Attach: c.Int("attach"),
				Changes: c.Int("changes"), Gap: c.Duration("gap"),
				Children: c.Int("children"), Calls: c.Int("calls"),
				Contenders: c.Int("contenders"), Handovers: c.Int("handovers"), Hold: c.Duration("hold"),
				LockTTL: c.Duration("lock-ttl"), LockWait: c.Duration("lock-wait"),
				Progress: e.progress,
			}
			err = runPaths(c, e, parts, cfg)
			if len(e.report.Results) > 0 {
				if ferr := e.finish(c); err == nil {
					err = ferr
				}
			}
			return err
		},
	}
}

// runPaths runs each part on the sessions, then on every etcd peer.
func runPaths(c *cli.Context, e *env, parts []string, cfg bench.PathsConfig) error {
	for _, part := range pathParts {
		if !slices.Contains(parts, part) {
			continue
		}
		var rs []*bench.Result
		var err error
		var peerArgs []string
		switch part {
		case "watch":
			rs, err = bench.PrefixWatch(e.ctx, cfg)
			peerArgs = []string{"prefix-watch", "--watchers", strconv.Itoa(cfg.Watchers), "--paths", strconv.Itoa(cfg.Paths),
				"--parents", strconv.Itoa(cfg.Parents), "--attach", strconv.Itoa(cfg.Attach),
				"--changes", strconv.Itoa(cfg.Changes), "--gap", cfg.Gap.String()}
		case "children":
			rs, err = bench.PathChildren(e.ctx, cfg)
			peerArgs = []string{"children", "--children", strconv.Itoa(cfg.Children), "--calls", strconv.Itoa(cfg.Calls)}
		case "lock":
			var r *bench.Result
			r, err = bench.LockHandover(e.ctx, cfg)
			rs = []*bench.Result{r}
			peerArgs = []string{"lock-handover", "--contenders", strconv.Itoa(cfg.Contenders), "--handovers", strconv.Itoa(cfg.Handovers),
				"--hold", cfg.Hold.String(), "--lock-ttl", cfg.LockTTL.String()}
		}
		e.add(rs...)
		if err != nil {
			return err
		}
		if err := e.eachPeer(c, func(_ bench.Peer, addr string) error {
			rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", append(peerArgs, "--endpoints", addr)...)
			e.add(rs...)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}
