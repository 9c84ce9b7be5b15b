package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/proto"
)

// mustCluster starts an in-process cluster (1 meta, 2 data, 1 session)
// and returns its session addresses; mustStartCluster returns the cluster.
func mustCluster(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for _, s := range mustStartCluster(t).Sessions {
		addrs = append(addrs, s.Addr())
	}
	return addrs
}

func mustStartCluster(t *testing.T) *cluster.Local {
	t.Helper()
	cl, err := cluster.Start(cluster.Options{
		Dir: t.TempDir(), Data: 2, Sessions: 1, Lease: 2 * time.Second, Heartbeat: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

// The memory scenario reads every node's heap after a collection it asks
// for: DSTATS GC from data nodes, SLOTREG MEMORY GC from sessions.
func TestReadHeapsCollectsFirst(t *testing.T) {
	cl := mustStartCluster(t)
	var procs []*Proc
	for _, d := range cl.Data {
		procs = append(procs, &Proc{Role: proto.KindData, ID: d.ID(), Addr: d.Addr()})
	}
	for i, s := range cl.Sessions {
		procs = append(procs, &Proc{Role: proto.KindSession, ID: fmt.Sprint("session", i), Addr: s.Addr()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before, err := readHeaps(ctx, procs)
	if err != nil {
		t.Fatal(err)
	}
	// A read forces a collection (at most one a second, so a client
	// cannot keep a node collecting): a later read sees more cycles.
	var last string
	for {
		after, err := readHeaps(ctx, procs)
		if err != nil {
			t.Fatal(err)
		}
		collected := true
		for _, p := range procs {
			b, a := before[p.ID], after[p.ID]
			if a.HeapInuse == 0 || a.HeapLive == 0 || a.HeapLive > a.HeapInuse || a.HeapSys < a.HeapInuse {
				t.Fatalf("%s: implausible heap figures %+v", p.ID, a)
			}
			if a.GCCycles <= b.GCCycles {
				collected = false
				last = fmt.Sprintf("%s: gc cycles %d then %d", p.ID, b.GCCycles, a.GCCycles)
			}
		}
		if collected {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("no read collected before the deadline: %s", last)
		}
	}
}

// checkSane fails unless r counted operations and its percentiles are
// ordered.
func checkSane(t *testing.T, r *Result) {
	t.Helper()
	if r == nil {
		t.Fatal("no result")
	}
	if r.Ops <= 0 || r.Rate <= 0 {
		t.Fatalf("%s: ops %d, rate %v", r.Scenario, r.Ops, r.Rate)
	}
	if r.Errors != 0 {
		t.Errorf("%s: %d errors (%v)", r.Scenario, r.Errors, r.Notes)
	}
	l := r.Latency
	if l == nil {
		t.Fatalf("%s: no latency", r.Scenario)
	}
	if !(0 < l.P50Ms && l.MinMs <= l.P50Ms && l.P50Ms <= l.P99Ms && l.P99Ms <= l.P999Ms && l.P999Ms <= l.MaxMs) {
		t.Fatalf("%s: percentiles out of order: %+v", r.Scenario, l)
	}
	if l.Count != r.Hist().Count() {
		t.Fatalf("%s: summary count %d, histogram %d", r.Scenario, l.Count, r.Hist().Count())
	}
}

func TestScenariosAgainstInProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and runs load for several seconds")
	}
	addrs := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep := &Report{Machine: ThisMachine()}

	reg, err := Register(ctx, RegisterConfig{Addrs: addrs, Clients: 8, Publishers: 200, Services: 10, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, reg)
	rep.Results = append(rep.Results, reg)

	push, err := Push(ctx, PushConfig{Addrs: addrs, Subscribers: 3, Services: 4, Rate: 100, Duration: time.Second, Warmup: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, push)
	// Most changes reach every subscriber; pushes coalesce only when a
	// subscriber falls behind, which a busy machine can cause.
	if sent := metric(push, "changes sent"); push.Ops < int64(sent*3/2) {
		t.Errorf("push: %d pushes for %v changes to 3 subscribers", push.Ops, sent)
	}
	if v := metric(push, "version regressions seen"); v != 0 {
		t.Errorf("push: %v version regressions", v)
	}
	rep.Results = append(rep.Results, push)

	rs, err := PushUnderChurn(ctx, PushConfig{Addrs: addrs, Subscribers: 2, Services: 2, Rate: 50, Duration: time.Second, Warmup: 200 * time.Millisecond},
		ChurnConfig{Addrs: addrs, Clients: 4, Rate: 200, Services: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		checkSane(t, r)
	}
	rep.Results = append(rep.Results, rs...)

	lk, err := Lookup(ctx, LookupConfig{Addrs: addrs, Clients: 4, Services: 5, PerService: 3, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, lk)
	if v := metric(lk, "lookups with a publisher count other than registered"); v != 0 {
		t.Errorf("lookup: %v lookups saw the wrong publisher count", v)
	}

	fo, err := Fanout(ctx, FanoutConfig{Addrs: addrs, Subscribers: 50, Rounds: 2, Gap: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, fo)
	if fo.Ops != 100 {
		t.Errorf("fanout: %d receipts, want 2 rounds x 50", fo.Ops)
	}

	// Paths: every change reaches every watcher as one UPDATE, every
	// CHILDREN reply has every child, no lock grant overlaps another.
	pc := PathsConfig{Addrs: addrs, LoadConns: 2, Watchers: 4, Paths: 300, Parents: 10, Attach: 2, Changes: 20,
		Gap: time.Millisecond, Children: 200, Calls: 10, Contenders: 3, Handovers: 20, Hold: time.Millisecond,
		LockTTL: 5 * time.Second, LockWait: 10 * time.Second, Timeout: 20 * time.Second}
	pw, err := PrefixWatch(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pw {
		checkSane(t, r)
		for _, bad := range []string{"events missed (a change not delivered to a watcher in time)",
			"stray events (not the change under way, or repeated)", "events of a change not typed UPDATE", "initial events other than ADD"} {
			if v := metric(r, bad); v > 0 {
				t.Errorf("%s: %s = %v", r.Scenario, bad, v)
			}
		}
	}
	if pw[0].Ops != 20*4 {
		t.Errorf("prefix-watch: %d events timed, want 20 changes x 4 watchers", pw[0].Ops)
	}
	ch, err := PathChildren(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ch {
		checkSane(t, r)
		if v := metric(r, "replies without every child"); v != 0 {
			t.Errorf("%s: %v replies without every child", r.Scenario, v)
		}
	}
	lh, err := LockHandover(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, lh)
	for _, bad := range []string{"grants overlapping another holder", "fencing tokens not above the previous grant's"} {
		if v := metric(lh, bad); v != 0 {
			t.Errorf("lock-handover: %s = %v", bad, v)
		}
	}

	var table, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"register", "push-latency", "p999 ms"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Fatalf("JSON round trip: %v, %d results", err, len(back.Results))
	}
	if err := PlotCDF(filepath.Join(t.TempDir(), "cdf.svg"), rep.Results); err != nil {
		t.Fatal(err)
	}
}

func metric(r *Result, name string) float64 {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value
		}
	}
	return -1
}

func TestStampRoundTrip(t *testing.T) {
	now := time.Now()
	d := stampData(now, 40)
	if len(d) != 40 {
		t.Fatalf("len %d", len(d))
	}
	got, ok := parseStamp(d)
	if !ok || !got.Equal(time.Unix(0, now.UnixNano())) {
		t.Fatalf("parseStamp(%q) = %v, %v", d, got, ok)
	}
	for _, bad := range []string{"", "x|", "123", "|1"} {
		if _, ok := parseStamp(bad); ok {
			t.Errorf("parseStamp(%q) accepted", bad)
		}
	}
}

func TestLightDecodeMatchesJSON(t *testing.T) {
	payload := `{"dataInfoId":"s","version":4294967301,"publishers":[{"registerId":"a","data":"1"},{"registerId":"w","data":"17|xx"}]}`
	var full, light push
	if err := json.Unmarshal([]byte(payload), &full); err != nil {
		t.Fatal(err)
	}
	if !lightDecode(payload, &light) {
		t.Fatal("lightDecode failed")
	}
	fd, _ := full.data(probeRID)
	ld, _ := light.data(probeRID)
	if light.Version != full.Version || fd != ld {
		t.Fatalf("light %+v, full %+v", light, full)
	}
}

func TestHistogramMergeAndCDF(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	for i := 1; i <= 100; i++ {
		a.Record(time.Duration(i) * time.Millisecond)
		b.Record(time.Duration(i) * time.Microsecond)
	}
	a.Merge(b)
	if a.Count() != 200 {
		t.Fatalf("count %d", a.Count())
	}
	s := a.Summary()
	if s.MinMs > 0.002 || s.MaxMs < 99 || s.P50Ms > s.P99Ms {
		t.Fatalf("summary %+v", s)
	}
	xs, ys := a.CDF()
	if len(xs) == 0 || ys[len(ys)-1] != 1 {
		t.Fatalf("CDF ends at %v", ys[len(ys)-1])
	}
}

func TestReportRatios(t *testing.T) {
	rp := &Report{Results: []*Result{
		{Scenario: "register", Target: TargetSlotreg, Rate: 60},
		{Scenario: "register", Target: TargetRedis, Rate: 100},
		{Scenario: "push-latency", Target: TargetSlotreg, Latency: &LatencySummary{P99Ms: 2}},
		{Scenario: "push-latency", Target: TargetEtcd, Latency: &LatencySummary{P99Ms: 4}},
	}}
	rp.ComputeRatios()
	if len(rp.Ratios) != 2 || rp.Ratios[0].Ratio != 0.6 || rp.Ratios[1].Ratio != 0.5 {
		t.Fatalf("ratios %+v", rp.Ratios)
	}
}

func TestParsePeer(t *testing.T) {
	if p, err := ParsePeer("redis=127.0.0.1:6379"); err != nil || p.Kind != TargetRedis || p.Addr != "127.0.0.1:6379" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"redis", "mysql=x:1", "etcd="} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("ParsePeer(%q) accepted", bad)
		}
	}
}

// The memory scenario waits until the sessions' INFO counts every
// publisher it registered: the count must be read from INFO as the
// session writes it (issue 17 renamed it session_conn_publishers).
func TestWaitPublishersSeesRegistered(t *testing.T) {
	addrs := mustCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, f, err := runRegister(ctx, RegisterConfig{Addrs: addrs, Clients: 4, Publishers: 50, Services: 5,
		Duration: 20 * time.Second, OnePass: true})
	defer f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops != 50 {
		t.Fatalf("%d of 50 publishers registered", r.Ops)
	}
	if err := waitPublishers(ctx, addrs, 50, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
