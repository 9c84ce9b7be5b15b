package main

import (
	"errors"
	"strconv"
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
		return e.local.Metas(), nil
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
		Usage: "config change to watcher latency: CONFSET through meta, pushes to W watchers of config/<key> over the sessions (peer: etcd watchers of one key)",
		Flags: flags(targetFlags(), []cli.Flag{
			metaFlag(),
			&cli.IntFlag{Name: "watchers", Value: 100, Usage: "watching connections, spread over the sessions"},
			&cli.IntFlag{Name: "changes", Value: 200, Usage: "config changes, one at a time"},
			&cli.DurationFlag{Name: "gap", Value: 20 * time.Millisecond, Usage: "pause after each change has reached every watcher"},
		}, peerFlags(), outputFlags()),
		Before: func(c *cli.Context) error { return onlyPeers(c, "config-push", bench.TargetEtcd) },
		Action: simple(func(c *cli.Context, e *env) error {
			return runConfigPush(c, e, bench.ConfigPushConfig{Watchers: c.Int("watchers"), Changes: c.Int("changes"), Gap: c.Duration("gap")})
		}),
	}
}

// runConfigPush runs config-push on the cluster, then etcd's
// config-watch on every etcd peer with the same shape.
func runConfigPush(c *cli.Context, e *env, cfg bench.ConfigPushConfig) error {
	metas, err := e.metaAddrs(c)
	if err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	cfg.Addrs, cfg.Metas, cfg.Progress = e.addrs, metas, e.progress
	r, err := bench.ConfigPush(e.ctx, cfg)
	e.add(r)
	if err != nil {
		return err
	}
	return e.eachPeerOf(c, []string{bench.TargetEtcd}, func(_ bench.Peer, addr string) error {
		rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", "config-watch", "--endpoints", addr,
			"--watchers", strconv.Itoa(cfg.Watchers), "--changes", strconv.Itoa(cfg.Changes),
			"--gap", cfg.Gap.String(), "--timeout", cfg.Timeout.String())
		e.add(rs...)
		return err
	})
}

func lockCommand() *cli.Command {
	return &cli.Command{
		Name:  "lock",
		Usage: "LOCK acquire latency: C clients take and release locks in a loop (--locks below --clients: they compete; peer: etcd concurrency.Mutex)",
		Flags: flags(targetFlags(), []cli.Flag{
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "concurrent connections"},
			&cli.IntFlag{Name: "locks", Usage: "distinct lock names (default: one per client, no contention)"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "how long to run"},
		}, peerFlags(), outputFlags()),
		Before: func(c *cli.Context) error { return onlyPeers(c, "lock", bench.TargetEtcd) },
		Action: simple(func(c *cli.Context, e *env) error {
			return runLock(c, e, bench.LockConfig{Clients: c.Int("clients"), Locks: c.Int("locks"), Duration: c.Duration("duration")})
		}),
	}
}

// runLock runs lock on the sessions, then etcd's lock workload on every
// etcd peer with the same clients, locks and duration.
func runLock(c *cli.Context, e *env, cfg bench.LockConfig) error {
	cfg = cfg.WithDefaults()
	cfg.Addrs, cfg.Progress = e.addrs, e.progress
	r, err := bench.LockAcquire(e.ctx, cfg)
	e.add(r)
	if err != nil {
		return err
	}
	return e.eachPeerOf(c, []string{bench.TargetEtcd}, func(_ bench.Peer, addr string) error {
		rs, err := bench.RunEtcdPeer(e.ctx, c.String("etcdpeer-dir"), "", "lock", "--endpoints", addr,
			"--clients", strconv.Itoa(cfg.Clients), "--locks", strconv.Itoa(cfg.Locks),
			"--duration", cfg.Duration.String(), "--lock-ttl", bench.LockTTL.String())
		e.add(rs...)
		return err
	})
}
