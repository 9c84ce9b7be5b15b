package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The scale curve, small: 1 and 2 data nodes × 1 session, a second of
// load per run, each cell on its own cluster of registry processes.
// Every cell must be measured, error-free, in one row of the table; the
// base cell is 1.0× itself. No speed is checked: figures belong in
// RESULTS.md.
func TestCurveSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters of registry processes")
	}
	bin := filepath.Join(t.TempDir(), "registry")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/registry").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := Curve(ctx, CurveConfig{
		Data: []int{1, 2}, Sessions: []int{1}, Bin: bin, Lease: 2 * time.Second,
		Register: RegisterConfig{Clients: 8, Publishers: 200, Services: 10, Duration: time.Second},
		Push:     PushConfig{Subscribers: 3, Services: 4, Rate: 100, Duration: time.Second, Warmup: 200 * time.Millisecond},
	})
	for _, r := range rs {
		t.Logf("%s %v: ops %d errors %d %v", r.Scenario, r.Params, r.Ops, r.Errors, r.Notes)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d runs, want register and push-latency for each of 2 cells", len(rs))
	}
	for _, r := range rs {
		checkSane(t, r)
	}

	// Through JSON and back, as a report read later would be.
	var js bytes.Buffer
	if err := (&Report{Machine: ThisMachine(), Results: rs}).WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var rp Report
	if err := json.Unmarshal(js.Bytes(), &rp); err != nil {
		t.Fatal(err)
	}
	rp.ComputeRatios()
	if len(rp.Curve) != 2 {
		t.Fatalf("curve has %d rows, want 2: %+v", len(rp.Curve), rp.Curve)
	}
	for i, want := range []struct{ data, copies int }{{1, 1}, {2, 2}} {
		c := rp.Curve[i]
		if c.Data != want.data || c.Sessions != 1 || c.Copies != want.copies {
			t.Errorf("row %d: %d data, %d sessions, %d copies; want %d, 1, %d", i, c.Data, c.Sessions, c.Copies, want.data, want.copies)
		}
		if c.RegisterOps <= 0 || c.RegisterErr != 0 || c.RegisterPS <= 0 || c.PushOps <= 0 || c.PushErr != 0 || c.PushP99 <= 0 {
			t.Errorf("row %d not measured cleanly: %+v", i, c)
		}
		if c.Relative <= 0 {
			t.Errorf("row %d: no relative REGISTER/s", i)
		}
	}
	if rp.Curve[0].Relative != 1 {
		t.Errorf("base cell relative %v, want 1", rp.Curve[0].Relative)
	}
	// The curve's runs are not the suite's: no goal row comes of them.
	if len(rp.Goals) != 0 {
		t.Errorf("goal rows from curve runs: %+v", rp.Goals)
	}
	var table bytes.Buffer
	if err := rp.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scale curve", "| data nodes | sessions | copies |", "| 1 | 1 | 1 |", "| 2 | 1 | 2 |", "1.00×"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

// Over several rounds a cell's figures are the medians of its rounds,
// with the least and greatest kept, and relative is to the first cell's
// median.
func TestCurveMedians(t *testing.T) {
	run := func(scenario string, d, round int, rate, p99 float64) *Result {
		return &Result{Scenario: scenario, Target: TargetSlotreg, Ops: 100, Rate: rate,
			Latency: &LatencySummary{Count: 100, P50Ms: p99 / 2, P99Ms: p99},
			Params: map[string]any{CurveParamData: d, CurveParamSessions: 1, CurveParamCopies: min(d, 2),
				CurveParamRound: round, CurveParamLoadAvg: "0.5"}}
	}
	rp := &Report{}
	for round, f := range []float64{1, 3, 2} {
		rp.Results = append(rp.Results,
			run(curveRegister, 1, round+1, 1000*f, f), run(curvePush, 1, round+1, 100, f),
			run(curveRegister, 2, round+1, 500*f, 2*f), run(curvePush, 2, round+1, 100, 2*f))
	}
	rp.ComputeRatios()
	if len(rp.Curve) != 2 {
		t.Fatalf("%d rows: %+v", len(rp.Curve), rp.Curve)
	}
	a, b := rp.Curve[0], rp.Curve[1]
	if a.Rounds != 3 || a.RegisterPS != 2000 || a.RegisterMin != 1000 || a.RegisterMax != 3000 || a.PushP99 != 2 || a.RegisterOps != 300 {
		t.Errorf("row 1: %+v", a)
	}
	if b.RegisterPS != 1000 || b.PushP99 != 4 || b.PushP99Min != 2 || b.PushP99Max != 6 || b.Relative != 0.5 || a.Relative != 1 {
		t.Errorf("row 2: %+v", b)
	}
	var table bytes.Buffer
	if err := rp.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if want := "| 1 | 1 | 1 | 2,000 (1,000–3,000) |"; !strings.Contains(table.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, table.String())
	}
}
