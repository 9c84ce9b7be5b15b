// Command registry-bench measures a slotreg cluster end to end: register
// throughput, push latency, fan-out, churn, failover and memory, with
// optional Redis and etcd peers for comparison. Run it against running
// sessions (--session) or let it start its own cluster (--local). See
// bench/README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/bench"
	"github.com/urfave/cli/v2"
)

func main() {
	// A closed stdout or stderr (registry-bench ... | head) must not kill
	// the harness before it stops the cluster it started.
	signal.Ignore(syscall.SIGPIPE)
	app := &cli.App{
		Name:  "registry-bench",
		Usage: "load and latency harness for slotreg (and Redis/etcd peers)",
		Commands: []*cli.Command{
			registerCommand(), pushCommand(), lookupCommand(), fanoutCommand(), churnCommand(),
			failoverCommand(), sessionFailoverCommand(), lagCommand(), migrateCommand(), memoryCommand(), scaleCommand(), curveCommand(), suiteCommand(),
			configPushCommand(), lockCommand(), chaosCommand(), pathsCommand(), xdcCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "registry-bench:", err)
		os.Exit(1)
	}
}

// Flags every scenario that runs against sessions takes.
func targetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "session", Usage: "session client addresses HOST:PORT[,...]", EnvVars: []string{"SLOTREG_SESSION"}},
		&cli.BoolFlag{Name: "local", Usage: "start a cluster of registry processes on 127.0.0.1 (1 meta, --data data, --sessions sessions) and stop it afterwards"},
		&cli.IntFlag{Name: "data", Value: 2, Usage: "--local: data nodes"},
		&cli.IntFlag{Name: "sessions", Value: 1, Usage: "--local: session nodes"},
		&cli.BoolFlag{Name: "integrated", Usage: "--local: run registry node processes, one per data node, each with a session beside it (the first with meta too); --sessions is ignored"},
		&cli.IntFlag{Name: "replicas", Value: 2, Usage: "--local: copies of each slot"},
		&cli.DurationFlag{Name: "lease", Value: 3 * time.Second, Usage: "--local: meta lease"},
		&cli.StringFlag{Name: "bin", Usage: "registry binary for --local/failover (default: build ./cmd/registry)"},
		&cli.BoolFlag{Name: "inproc", Usage: "run the cluster (1 meta, --data, --sessions) inside this process, for --cpuprofile"},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of this process (with --inproc: nodes and harness together) to FILE"},
	}
}

// Output flags every command takes.
func outputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the report as JSON instead of a table"},
		&cli.StringFlag{Name: "plot", Usage: "write a latency CDF to FILE.svg or FILE.png"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress lines on stderr"},
	}
}

// Peer flags for the scenarios that have a peer workload.
func peerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "peer", Usage: "also run the workload against redis=HOST:PORT or etcd=HOST:PORT (HOST:PORT may be 'local': start one on loopback)"},
		&cli.StringFlag{Name: "etcdpeer-dir", Value: "bench/etcdpeer", Usage: "directory of the etcd peer module (run with go run)"},
	}
}

func flags(groups ...[]cli.Flag) []cli.Flag {
	var out []cli.Flag
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// env is what a command's action works with.
type env struct {
	ctx      context.Context
	progress *bench.Progress
	addrs    []string
	local    *bench.Local
	report   *bench.Report
	cleanup  []func()
}

func (e *env) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// newEnv sets up the signal-bound context and progress; with target it
// also resolves or starts the cluster.
func newEnv(c *cli.Context, target bool) (*env, error) {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	e := &env{ctx: ctx, report: &bench.Report{Machine: bench.ThisMachine()}}
	e.cleanup = append(e.cleanup, stop)
	if !c.Bool("quiet") {
		e.progress = &bench.Progress{W: os.Stderr, Every: 2 * time.Second}
	}
	if !target {
		return e, nil
	}
	if f := c.String("cpuprofile"); f != "" {
		stopProf, err := startProfile(f)
		if err != nil {
			e.close()
			return nil, err
		}
		e.cleanup = append(e.cleanup, stopProf)
	}
	switch {
	case c.Bool("local") && c.String("session") != "" || c.Bool("inproc") && (c.Bool("local") || c.String("session") != ""):
		e.close()
		return nil, errors.New("--local, --inproc and --session exclude each other")
	case c.Bool("inproc"):
		addrs, stop, err := startInProc(ctx, c.Int("data"), c.Int("sessions"), c.Duration("lease"))
		if err != nil {
			e.close()
			return nil, err
		}
		e.addrs = addrs
		e.cleanup = append(e.cleanup, stop)
	case c.Bool("local"):
		l, err := bench.StartLocal(ctx, bench.LocalOptions{
			Bin: c.String("bin"), Data: c.Int("data"), Sessions: c.Int("sessions"),
			Replicas: c.Int("replicas"), Lease: c.Duration("lease"), Progress: e.progress, Integrated: c.Bool("integrated"),
		})
		if err != nil {
			e.close()
			return nil, err
		}
		e.local = l
		e.addrs = l.Sessions()
		e.cleanup = append(e.cleanup, func() {
			e.progress.Logf("stopping the local cluster")
			l.Close()
		})
	case c.String("session") != "":
		for _, a := range strings.Split(c.String("session"), ",") {
			if a = strings.TrimSpace(a); a != "" {
				e.addrs = append(e.addrs, a)
			}
		}
	default:
		e.close()
		return nil, errors.New("say where to run: --session HOST:PORT[,...], --local or --inproc")
	}
	return e, nil
}

// finish prints the report and draws the plot.
func (e *env) finish(c *cli.Context) error {
	e.report.ComputeRatios()
	bench.PathRatios(e.report) // the paths scenarios' ratios to etcd
	if p := c.String("plot"); p != "" {
		if err := bench.PlotCDF(p, e.report.Results); err != nil {
			return err
		}
		e.progress.Logf("wrote %s", p)
	}
	if c.Bool("json") {
		return e.report.WriteJSON(os.Stdout)
	}
	return e.report.WriteTable(os.Stdout)
}

func (e *env) add(rs ...*bench.Result) {
	for _, r := range rs {
		if r != nil {
			e.report.Results = append(e.report.Results, r)
		}
	}
}
