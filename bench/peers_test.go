package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// mustRedis starts a local redis-server for the test. Without one it
// skips, except in CI (CI set), where the peer path must be tested and a
// missing server is a broken setup.
func mustRedis(t *testing.T) *Started {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server is not installed (apt-get install -y redis-server; redis-tools has only the client)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + ": CI must install it to test the Redis peer")
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := StartRedis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// The fanout scenario against Redis: K subscribers of one channel, each
// round one PUBLISH, measured as for slotreg: every round reaches every
// subscriber, and the result is Redis's.
func TestFanoutRedisPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	rd := mustRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Fanout(ctx, FanoutConfig{Addrs: []string{rd.Addr}, Target: TargetRedis, Subscribers: 40, Rounds: 3, Gap: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, r)
	if r.Target != TargetRedis || r.Scenario != "fanout" {
		t.Errorf("result is %s against %s, want fanout against redis", r.Scenario, r.Target)
	}
	if r.Ops != 3*40 {
		t.Errorf("%d receipts, want 3 rounds x 40 subscribers (notes %v)", r.Ops, r.Notes)
	}
	if v := metric(r, fanoutComplete); v != 3 {
		t.Errorf("%v rounds reached every subscriber, want 3", v)
	}
	if v := metric(r, fanoutMedian); v <= 0 {
		t.Errorf("no median delivery time: %v", r.Metrics)
	}
	if len(r.Notes) != 0 {
		t.Errorf("notes: %v", r.Notes)
	}
}

// goalReport is a run with every scenario of issue 18's table and its
// peers, with fixed figures.
func goalReport() *Report {
	lat := func(p99 float64) *LatencySummary { return &LatencySummary{Count: 100, P50Ms: p99 / 2, P99Ms: p99} }
	fan := func(target string, median float64, complete int) *Result {
		r := &Result{Scenario: "fanout", Target: target, Ops: 50000, Params: map[string]any{"subscribers": 10000, "rounds": 5}}
		if complete > 0 {
			r.Add(fanoutMedian, median, "ms")
		}
		r.Add(fanoutComplete, float64(complete), "rounds")
		return r
	}
	return &Report{Results: []*Result{
		{Scenario: "register", Target: TargetSlotreg, Ops: 1000, Rate: 30000, Params: map[string]any{"clients": 50}},
		{Scenario: "register", Target: TargetRedis, Ops: 1000, Rate: 60000},
		{Scenario: "register", Target: TargetEtcd, Ops: 1000, Rate: 2500},
		{Scenario: "push-latency", Target: TargetSlotreg, Latency: lat(1.2)},
		{Scenario: "push-latency", Target: TargetRedis, Latency: lat(1.0)},
		{Scenario: "push-latency", Target: TargetEtcd, Latency: lat(3.0)},
		{Scenario: "push-latency-loaded", Target: TargetSlotreg, Latency: lat(7.5)},
		fan(TargetSlotreg, 200, 5),
		fan(TargetRedis, 50, 5),
		{Scenario: "config-push", Target: TargetSlotreg, Latency: lat(4)},
		{Scenario: "config-push", Target: TargetEtcd, Latency: lat(8)},
		{Scenario: "lock-acquire", Target: TargetSlotreg, Latency: lat(6)},
		{Scenario: "lock-acquire", Target: TargetEtcd, Latency: lat(5)},
	}}
}

// The goal table: one row per hot path, each ratio from the run's own
// results, and met only where every check passes.
func TestGoalTable(t *testing.T) {
	rp := goalReport()
	rp.ComputeRatios()
	want := []struct {
		metric string
		ratios []float64 // each check's value
		met    bool
	}{
		{"REGISTER/s, 50 clients", []float64{0.5, 12}, false},         // 0.5× Redis misses 0.6; 12× etcd meets 8
		{"push p99, unloaded", []float64{1.2}, true},                  // ≤ 1.5× Redis
		{"push p99 at half of max write load", []float64{7.5}, false}, // > 5 ms
		{"one change to 10k subscribers, all delivered", []float64{4, 5}, false},
		{"config change → watcher, lock acquire", []float64{0.5, 1.2}, false}, // watch meets, mutex misses
	}
	if len(rp.Goals) != len(want) {
		t.Fatalf("%d goal rows, want %d: %+v", len(rp.Goals), len(want), rp.Goals)
	}
	for i, w := range want {
		g := rp.Goals[i]
		if g.Metric != w.metric || g.Met != w.met || len(g.Checks) != len(w.ratios) {
			t.Errorf("row %d: %q met %v with %d checks, want %q met %v with %d", i, g.Metric, g.Met, len(g.Checks), w.metric, w.met, len(w.ratios))
			continue
		}
		for j, c := range g.Checks {
			if d := c.Value - w.ratios[j]; d > 1e-9 || d < -1e-9 || c.Missing {
				t.Errorf("%s: check %d = %v (missing %v), want %v", g.Metric, j, c.Value, c.Missing, w.ratios[j])
			}
		}
	}
	if c := rp.Goals[1].Checks[0]; !c.Met {
		t.Errorf("push p99 1.2× Redis should meet ≤ 1.5×: %+v", c)
	}
	if c := rp.Goals[0].Checks[1]; !c.Met {
		t.Errorf("register 12× etcd should meet ≥ 8×: %+v", c)
	}
	if c := rp.Goals[4].Checks[0]; !c.Met {
		t.Errorf("config push 0.5× etcd watch should meet ≤ 1×: %+v", c)
	}

	// The generic ratios cover the new scenarios too.
	found := map[string]float64{}
	for _, r := range rp.Ratios {
		found[r.Scenario+"/"+r.Peer] = r.Ratio
	}
	for k, v := range map[string]float64{"fanout/redis": 4, "config-push/etcd": 0.5, "lock-acquire/etcd": 1.2} {
		if found[k] != v {
			t.Errorf("ratio %s = %v, want %v (all: %v)", k, found[k], v, found)
		}
	}

	var b bytes.Buffer
	if err := rp.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i := strings.Index(out, "issue 18 goals")
	if i < 0 {
		t.Fatalf("no goal table:\n%s", out)
	}
	for _, line := range []string{
		"| REGISTER/s, 50 clients | 30,000/s | Redis SET 60,000/s; etcd put 2,500/s | ≥ 0.6× Redis, ≥ 8× etcd | 0.50× Redis, 12.00× etcd | no |",
		"| push p99, unloaded | p99 1.200 ms | Redis PUBLISH p99 1.000 ms; etcd watch p99 3.000 ms | ≤ 1.5× Redis | 1.20× Redis | yes |",
		"| one change to 10k subscribers, all delivered | median 200 ms | Redis PUBLISH to 10k subscribers, median 50.0 ms |",
	} {
		if !strings.Contains(out[i:], line) {
			t.Errorf("goal table lacks %q:\n%s", line, out[i:])
		}
	}
}

// A row whose peer was not run, or whose rounds did not all complete, is
// not met.
func TestGoalTableMissingPeerOrIncompleteRounds(t *testing.T) {
	rp := goalReport()
	var kept []*Result
	for _, r := range rp.Results {
		if r.Target == TargetRedis && r.Scenario == "register" {
			continue
		}
		if r.Scenario == "fanout" && r.Target == TargetSlotreg {
			r.Metrics = nil
			r.Add(fanoutMedian, 20, "ms") // faster than Redis...
			r.Add(fanoutComplete, 4, "rounds")
		}
		kept = append(kept, r)
	}
	rp.Results = kept
	rp.ComputeRatios()
	reg, fan := rp.Goals[0], rp.Goals[3]
	if reg.Met || !reg.Checks[0].Missing || reg.Checks[0].Text != "no Redis run" {
		t.Errorf("register without a Redis run: %+v", reg)
	}
	if fan.Met || !fan.Checks[0].Met || fan.Checks[1].Met {
		t.Errorf("fanout with 4 of 5 rounds complete must not be met, though faster: %+v", fan)
	}
	var b bytes.Buffer
	rp.WriteTable(&b)
	if !strings.Contains(b.String(), "| not measured |") || !strings.Contains(b.String(), "4 of 5 rounds all delivered") {
		t.Errorf("table:\n%s", b.String())
	}
}
