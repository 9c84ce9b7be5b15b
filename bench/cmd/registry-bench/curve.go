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

// curveCommand is issue 18's scale curve: register and unloaded push
// latency on a fresh local cluster per (data nodes, sessions) cell.
func curveCommand() *cli.Command {
	// The register and push-latency flags, as the suite runs them (5 s);
	// the push's loaded variant has no place here.
	var scenario []cli.Flag
	for _, f := range flags(registerFlags(), pushFlags()) {
		switch f := f.(type) {
		case *cli.DurationFlag:
			if f.Name == "duration" {
				f.Value = 5 * time.Second
			}
			if f.Name == "max-duration" {
				continue
			}
		case *cli.Float64Flag:
			if f.Name == "load-fraction" {
				continue
			}
		}
		scenario = append(scenario, f)
	}
	return &cli.Command{
		Name: "curve",
		Usage: "scale curve (issue 18): for each --data × --sessions cell a fresh local cluster of registry processes, " +
			"REGISTER/s and unloaded push latency on it; ends with one table, REGISTER/s relative to the first cell",
		Flags: flags([]cli.Flag{
			&cli.StringFlag{Name: "data", Value: "1,2,4", Usage: "data nodes of the cells (comma-separated)"},
			&cli.StringFlag{Name: "sessions", Value: "1,2", Usage: "session nodes of the cells (comma-separated)"},
			&cli.IntFlag{Name: "rounds", Value: 1, Usage: "passes over the matrix; each cell's figures are the median of its rounds"},
			&cli.IntFlag{Name: "replicas", Value: 2, Usage: "copies of each slot (a cell with fewer data nodes has as many copies as nodes)"},
			&cli.DurationFlag{Name: "lease", Value: 3 * time.Second, Usage: "meta lease"},
			&cli.StringFlag{Name: "bin", Usage: "registry binary (default: build ./cmd/registry once)"},
		}, scenario, outputFlags()),
		Action: withEnv(false, func(c *cli.Context, e *env) error {
			data, err := parseCounts("--data", c.String("data"))
			if err != nil {
				return err
			}
			sessions, err := parseCounts("--sessions", c.String("sessions"))
			if err != nil {
				return err
			}
			rs, err := bench.Curve(e.ctx, bench.CurveConfig{
				Data: data, Sessions: sessions, Rounds: c.Int("rounds"), Replicas: c.Int("replicas"), Lease: c.Duration("lease"), Bin: c.String("bin"),
				Register: registerConfig(c, nil, bench.TargetSlotreg), Push: pushConfig(c, nil, bench.TargetSlotreg),
				Progress: e.progress,
			})
			e.add(rs...)
			return err
		}),
	}
}

// parseCounts reads a comma-separated list of distinct node counts.
func parseCounts(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s: %q is not a count of nodes", flag, f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%s: %d twice", flag, n)
		}
		out = append(out, n)
	}
	return out, nil
}
