package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names of the curve's runs; each carries its cell in Params
// (CurveParam*).
const (
	curveRegister = "curve-register"
	curvePush     = "curve-push-latency"
)

// The Params a curve run records its cell in.
const (
	CurveParamData     = "data_nodes"
	CurveParamSessions = "session_nodes"
	CurveParamCopies   = "copies"
	CurveParamLoadAvg  = "loadavg_1m_before"
	CurveParamRound    = "round"
)

// CurveConfig drives the scale curve (issue 18): for each (data nodes,
// sessions) cell of Data × Sessions, a fresh cluster of registry
// processes (StartLocal) is started, the register scenario and the
// unloaded push-latency scenario are run on it, and it is stopped; the
// whole matrix Rounds times, so that a burst of other work on a shared
// machine lands on one round of a cell rather than on all of it. The
// report's Curve table (ComputeRatios) puts the cells side by side, each
// the median of its rounds.
type CurveConfig struct {
	Data     []int // data nodes of each cell (default 1, 2, 4)
	Sessions []int // sessions of each cell (default 1, 2)
	// Replicas is the meta's --replicas (default 2); a cell with fewer
	// data nodes holds only as many copies as it has nodes (one at 1).
	Replicas  int
	Rounds    int // passes over the matrix (default 1)
	Lease     time.Duration
	Bin       string // registry binary; built once when empty
	ModuleDir string
	// Register and Push are the scenarios' settings; their Addrs are the
	// cell's sessions.
	Register RegisterConfig
	Push     PushConfig
	Progress *Progress
}

// Curve runs the scale curve and returns the runs it made, a register
// and a push-latency result per cell and round, in the order they ran
// (rounds outer, then data nodes, then sessions). On an error it
// returns the runs made so far.
func Curve(ctx context.Context, cfg CurveConfig) ([]*Result, error) {
	if len(cfg.Data) == 0 {
		cfg.Data = []int{1, 2, 4}
	}
	if len(cfg.Sessions) == 0 {
		cfg.Sessions = []int{1, 2}
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 2
	}
	cfg.Rounds = max(cfg.Rounds, 1)
	for _, n := range append(append([]int{}, cfg.Data...), cfg.Sessions...) {
		if n <= 0 {
			return nil, fmt.Errorf("curve: %d nodes in a cell", n)
		}
	}
	dir, own, err := workDir("", "slotreg-curve-")
	if err != nil {
		return nil, err
	}
	if own {
		defer os.RemoveAll(dir)
	}
	bin, err := registryBinary(ctx, cfg.Bin, cfg.ModuleDir, dir, cfg.Progress)
	if err != nil {
		return nil, err
	}
	var out []*Result
	for round := 1; round <= cfg.Rounds; round++ {
		for _, d := range cfg.Data {
			for _, s := range cfg.Sessions {
				rs, err := curveCell(ctx, cfg, bin, d, s, round)
				out = append(out, rs...)
				if err != nil {
					return out, fmt.Errorf("curve: %d data, %d sessions, round %d: %w", d, s, round, err)
				}
			}
		}
	}
	return out, nil
}

// curveCell starts a cluster of d data nodes and s sessions, runs
// register then push-latency on it, and stops it.
func curveCell(ctx context.Context, cfg CurveConfig, bin string, d, s, round int) ([]*Result, error) {
	load := loadAvg1()
	cfg.Progress.Logf("curve: round %d of %d, %d data nodes, %d sessions (load average %s)", round, cfg.Rounds, d, s, load)
	l, err := StartLocal(ctx, LocalOptions{Bin: bin, Data: d, Sessions: s, Replicas: cfg.Replicas,
		Lease: cfg.Lease, Progress: cfg.Progress})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	mark := func(r *Result, scenario string) {
		r.Scenario = scenario
		r.Params[CurveParamData] = d
		r.Params[CurveParamSessions] = s
		r.Params[CurveParamCopies] = min(cfg.Replicas, d)
		r.Params[CurveParamLoadAvg] = load
		r.Params[CurveParamRound] = round
	}
	rc := cfg.Register
	rc.Addrs, rc.Target, rc.Progress = l.Sessions(), TargetSlotreg, cfg.Progress
	rc.Prefix = "" // a fresh cluster; each run names its own services
	reg, err := Register(ctx, rc)
	if reg == nil {
		return nil, err
	}
	mark(reg, curveRegister)
	if err != nil {
		return []*Result{reg}, err
	}
	pc := cfg.Push
	pc.Addrs, pc.Target, pc.Progress, pc.Background = l.Sessions(), TargetSlotreg, cfg.Progress, nil
	pc.Prefix = ""
	push, err := Push(ctx, pc)
	if push == nil {
		return []*Result{reg}, err
	}
	mark(push, curvePush)
	return []*Result{reg, push}, err
}

// loadAvg1 is /proc/loadavg's 1-minute figure, or "" when unreadable.
func loadAvg1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}

// CurveRow is one cell of the scale curve: the medians over its rounds
// of its register and push-latency figures, and its REGISTER/s over the
// base cell's (the first in the matrix: 1 data node, 1 session by
// default).
type CurveRow struct {
	Data     int `json:"data_nodes"`
	Sessions int `json:"session_nodes"`
	Copies   int `json:"copies"`
	Rounds   int `json:"rounds"`
	// LoadAvg lists the 1-minute load average before each round.
	LoadAvg     []string `json:"loadavg_1m_before,omitempty"`
	RegisterOps int64    `json:"register_ops"` // summed over the rounds, as are the errors
	RegisterErr int64    `json:"register_errors"`
	RegisterPS  float64  `json:"register_per_sec"` // median
	RegisterMin float64  `json:"register_per_sec_min"`
	RegisterMax float64  `json:"register_per_sec_max"`
	RegisterP99 float64  `json:"register_p99_ms"` // median
	PushOps     int64    `json:"push_ops"`
	PushErr     int64    `json:"push_errors"`
	PushP50     float64  `json:"push_p50_ms"` // median
	PushP99     float64  `json:"push_p99_ms"` // median
	PushP99Min  float64  `json:"push_p99_ms_min"`
	PushP99Max  float64  `json:"push_p99_ms_max"`
	// Relative is RegisterPS over the base cell's; 0 when either is
	// missing.
	Relative float64 `json:"register_relative"`
}

// computeCurve fills Curve from the curve's results, one row per cell in
// the order the cells first ran.
func (rp *Report) computeCurve() {
	rp.Curve = nil
	type cell struct{ d, s int }
	type runs struct{ regPS, regP99, pushP50, pushP99 []float64 }
	index := map[cell]int{}
	var all []*runs
	row := func(r *Result) (*CurveRow, *runs) {
		d, _ := r.paramInt(CurveParamData)
		s, _ := r.paramInt(CurveParamSessions)
		k := cell{d, s}
		i, ok := index[k]
		if !ok {
			i = len(rp.Curve)
			index[k] = i
			c, _ := r.paramInt(CurveParamCopies)
			rp.Curve = append(rp.Curve, CurveRow{Data: d, Sessions: s, Copies: c})
			all = append(all, &runs{})
		}
		return &rp.Curve[i], all[i]
	}
	for _, r := range rp.Results {
		if r.Target != TargetSlotreg {
			continue
		}
		switch r.Scenario {
		case curveRegister:
			c, rs := row(r)
			c.Rounds++
			load, _ := r.Params[CurveParamLoadAvg].(string)
			c.LoadAvg = append(c.LoadAvg, load)
			c.RegisterOps += r.Ops
			c.RegisterErr += r.Errors
			if r.Ops > 0 {
				rs.regPS = append(rs.regPS, r.Rate)
			}
			if l := r.Latency; l != nil {
				rs.regP99 = append(rs.regP99, l.P99Ms)
			}
		case curvePush:
			c, rs := row(r)
			c.PushOps += r.Ops
			c.PushErr += r.Errors
			if l := r.Latency; l != nil {
				rs.pushP50 = append(rs.pushP50, l.P50Ms)
				rs.pushP99 = append(rs.pushP99, l.P99Ms)
			}
		}
	}
	for i := range rp.Curve {
		c, rs := &rp.Curve[i], all[i]
		c.RegisterPS, c.RegisterMin, c.RegisterMax = medianOf(rs.regPS)
		c.RegisterP99, _, _ = medianOf(rs.regP99)
		c.PushP50, _, _ = medianOf(rs.pushP50)
		c.PushP99, c.PushP99Min, c.PushP99Max = medianOf(rs.pushP99)
	}
	if len(rp.Curve) == 0 {
		return
	}
	base := rp.Curve[0].RegisterPS
	for i := range rp.Curve {
		if c := &rp.Curve[i]; base > 0 && c.RegisterPS > 0 {
			c.Relative = c.RegisterPS / base
		}
	}
}

// medianOf returns the median, least and greatest of vs (zeros when it
// is empty); vs is sorted in place.
func medianOf(vs []float64) (med, lo, hi float64) {
	if len(vs) == 0 {
		return 0, 0, 0
	}
	slices.Sort(vs)
	n := len(vs)
	med = vs[n/2]
	if n%2 == 0 {
		med = (vs[n/2-1] + vs[n/2]) / 2
	}
	return med, vs[0], vs[n-1]
}

// writeCurve prints Curve as a Markdown table, ready for RESULTS.md.
func (rp *Report) writeCurve(w io.Writer) {
	if len(rp.Curve) == 0 {
		return
	}
	b := rp.Curve[0]
	rounds := 0
	for _, c := range rp.Curve {
		rounds = max(rounds, c.Rounds)
	}
	what := "a fresh cluster per row"
	if rounds > 1 {
		what = fmt.Sprintf("a fresh cluster per row and round; median of %d rounds (least–greatest)", rounds)
	}
	fmt.Fprintf(w, "\nscale curve (%s; REGISTER/s relative to %d data, %d session%s):\n",
		what, b.Data, b.Sessions, plural(b.Sessions))
	fmt.Fprintln(w, "| data nodes | sessions | copies | REGISTER/s | REGISTER p99 ms | relative | push p50 ms | push p99 ms | load avg before |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range rp.Curve {
		rel := "–"
		if c.Relative > 0 {
			rel = strconv.FormatFloat(c.Relative, 'f', 2, 64) + "×"
		}
		reg := fmtCount(c.RegisterPS)
		if c.Rounds > 1 {
			reg += " (" + fmtCount(c.RegisterMin) + "–" + fmtCount(c.RegisterMax) + ")"
		}
		if c.RegisterErr > 0 {
			reg += fmt.Sprintf(" (%d errors)", c.RegisterErr)
		}
		push50, push99 := "–", "–"
		if c.PushOps > 0 {
			push50, push99 = fmtMs(c.PushP50), fmtMs(c.PushP99)
			if c.Rounds > 1 {
				push99 += " (" + fmtMs(c.PushP99Min) + "–" + fmtMs(c.PushP99Max) + ")"
			}
		}
		if c.PushErr > 0 {
			push99 += fmt.Sprintf(" (%d errors)", c.PushErr)
		}
		fmt.Fprintf(w, "| %d | %d | %d | %s | %s | %s | %s | %s | %s |\n", c.Data, c.Sessions, c.Copies, reg,
			fmtMs(c.RegisterP99), rel, push50, push99, strings.Join(c.LoadAvg, ", "))
	}
	for _, c := range rp.Curve {
		if c.Copies == 1 {
			fmt.Fprintln(w, "copies = min(--replicas, data nodes): a row with 1 copy has only the slot leaders, nothing is replicated")
			break
		}
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
