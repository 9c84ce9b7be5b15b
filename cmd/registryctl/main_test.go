package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func TestNormalizeArgs(t *testing.T) {
	app := newApp(nil, nil)
	for _, c := range []struct{ in, want string }{
		{"registryctl", "registryctl"},
		{"registryctl nodes", "registryctl nodes"},
		{"registryctl --meta a:1 move-slot 17 --to d2", "registryctl --meta a:1 move-slot --to d2 -- 17"},
		{"registryctl move-slot 17 --to=d2 --no-wait", "registryctl move-slot --to=d2 --no-wait -- 17"},
		{"registryctl move-slot -1 --to d2", "registryctl move-slot --to d2 -- -1"},
		{"registryctl move-slot 5 --to d2 --meta a:1 --timeout 1s", "registryctl --meta a:1 --timeout 1s move-slot --to d2 -- 5"},
		{"registryctl rebalance --max-moves 8 --dry-run", "registryctl rebalance --max-moves 8 --dry-run"},
		{"registryctl drain d1 --bogus", "registryctl drain --bogus -- d1"},
		{"registryctl lookup -- --odd-id", "registryctl lookup -- --odd-id"},
		{"registryctl nosuch 1 --x", "registryctl nosuch 1 --x"},
		{"registryctl --meta a:1", "registryctl --meta a:1"},
		{"registryctl config set k --file f --meta a:1", "registryctl --meta a:1 config set --file f -- k"},
		{"registryctl config list", "registryctl config list"},
	} {
		if got := strings.Join(normalizeArgs(app, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("normalizeArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	addr := deadAddr(t) // never dialled: usage is checked first
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nodes"}, "no meta address"},
		{[]string{"--meta", "nocolon", "nodes"}, "not HOST:PORT"},
		{[]string{"--meta", addr, "nosuch"}, "unknown command"},
		{[]string{"--meta", addr}, "no command"},
		{[]string{"--meta", addr, "nodes", "--bogus"}, "flag provided but not defined"},
		{[]string{"--meta", addr, "move-slot", "-1", "--to", "d1"}, `slot "-1" is out of range`},
		{[]string{"--meta", addr, "move-slot", "256", "--to", "d1"}, `slot "256" is out of range`},
		{[]string{"--meta", addr, "move-slot", "abc", "--to", "d1"}, `slot "abc" is out of range`},
		{[]string{"--meta", addr, "move-slot", "3"}, "needs --to"},
		{[]string{"--meta", addr, "move-slot", "--to", "d1"}, "one SLOT argument"},
		{[]string{"--meta", addr, "drain"}, "one NODE argument"},
		{[]string{"--meta", addr, "rebalance", "--max-moves", "-2"}, "out of range"},
		{[]string{"--meta", addr, "--timeout", "0s", "nodes"}, "must be positive"},
	} {
		r := ctl(c.args...)
		if r.code != exitUsage || !strings.Contains(r.err, c.want) || strings.Count(r.err, "\n") != 1 {
			t.Errorf("%q: %v\nwant exit 2 and one line saying %q", c.args, r, c.want)
		}
	}
	if r := ctl("--help"); r.code != 0 || !strings.Contains(r.out, "move-slot") {
		t.Errorf("--help: %v", r)
	}
	if r := ctl("move-slot", "--help"); r.code != 0 || !strings.Contains(r.out, "--to") {
		t.Errorf("move-slot --help: %v", r)
	}
}

func TestNoMetaReachable(t *testing.T) {
	a, b := deadAddr(t), deadAddr(t)
	for _, args := range [][]string{{"nodes"}, {"slots"}, {"move-slot", "3", "--to", "d1"}, {"drain", "d1"}, {"verify"}} {
		r := ctl(append([]string{"--meta", a + "," + b}, args...)...)
		if r.code != exitFailed || !strings.Contains(r.err, "no meta node reachable") || !strings.Contains(r.err, a) ||
			!strings.Contains(r.err, b) || strings.Count(r.err, "\n") != 1 {
			t.Errorf("%q: %v\nwant exit 1 and one line naming %s and %s", args, r, a, b)
		}
	}
	t.Setenv("SLOTREG_META", a)
	if r := ctl("slots"); r.code != exitFailed || !strings.Contains(r.err, a) {
		t.Errorf("with SLOTREG_META: %v", r)
	}
}

func TestNodesAndSlots(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, []string{"s1"})
	down := deadAddr(t)
	c.join(proto.KindSession, "s2", down)
	tb := c.meta.Table()
	c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d1") })
	// d2 does not answer DSTATS (nil stats: ERR): slots show "-".
	addr := c.meta.RPCAddr()

	r := ctl("--meta", addr, "nodes")
	if r.code != 0 {
		t.Fatalf("nodes: %v", r)
	}
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "ROLE") || !strings.Contains(lines[6], "meta leader "+addr) {
		t.Fatalf("nodes: want a header, 5 nodes and a footer:\n%s", r.out)
	}
	for i, want := range [][]string{
		{"meta", "m1", addr, "ok, leader"},
		{"data", "d1", c.fakes["d1"].addr, "256", "0", "no", "ok"},
		{"data", "d2", c.fakes["d2"].addr, "0", "256", "no", "ok"},
		{"session", "s1", c.fakes["s1"].addr, "ok"},
		{"session", "s2", down, "down:"},
	} {
		f := strings.Fields(lines[i+1])
		for _, w := range want {
			if !slices.Contains(f, w) && !(strings.Contains(w, " ") && strings.Contains(lines[i+1], w)) {
				t.Errorf("nodes line %q lacks %q", lines[i+1], w)
			}
		}
	}
	// Column alignment: every row's ADDRESS starts where the header's does.
	col := strings.Index(lines[0], "ADDRESS")
	for _, l := range lines[1:6] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("misaligned row %q (ADDRESS at %d)", l, col)
		}
	}

	r = ctl("--meta", addr, "nodes", "--json")
	var nr nodesReport
	if err := json.Unmarshal([]byte(r.out), &nr); err != nil || r.code != 0 {
		t.Fatalf("nodes --json: %v, %v", err, r)
	}
	if nr.Leader != addr || nr.TableEpoch != tb.Epoch || len(nr.Nodes) != 5 {
		t.Fatalf("nodes --json: %+v", nr)
	}
	d1, s2 := nr.Nodes[1], nr.Nodes[4]
	if d1.ID != "d1" || *d1.Leads != slot.Count || *d1.Follows != 0 || d1.LeaseAgeMs == nil || !d1.Healthy ||
		s2.ID != "s2" || s2.Healthy || s2.Error == "" || !nr.Nodes[0].Leader {
		t.Fatalf("nodes --json rows: %+v", nr.Nodes)
	}

	r = ctl("--meta", addr, "slots")
	lines = strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || len(lines) != 2+slot.Count || !strings.HasPrefix(lines[0], fmt.Sprintf("table epoch %d:", tb.Epoch)) ||
		!strings.HasPrefix(lines[1], "SLOT") || !strings.Contains(r.err, "data node d2") {
		t.Fatalf("slots: %v", r)
	}
	if f := strings.Fields(lines[2+7]); !slices.Equal(f, []string{"7", "d1", "d2", "1", "-", "2"}) {
		t.Fatalf("slot 7 row %q", lines[2+7])
	}

	// A move in progress shows in the map and the JSON.
	c.do((&proto.MoveSlot{Slot: 17, To: "d2"}).Args()...)
	c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(c.meta.Table(), "d1") })
	r = ctl("--meta", addr, "slots", "--json")
	var sr slotsReport
	if err := json.Unmarshal([]byte(r.out), &sr); err != nil || r.code != 0 {
		t.Fatalf("slots --json: %v, %v", err, r)
	}
	if len(sr.Slots) != slot.Count || len(sr.Nodes) != 2 || sr.Slots[17].Target != "d2" || *sr.Slots[4].Publishers != 4 ||
		!slices.Equal(sr.Slots[17].Followers, []string{"d2"}) {
		t.Fatalf("slots --json: %+v", sr.Slots[:18])
	}
	r = ctl("--meta", addr, "slots", "--map")
	lines = strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || len(lines) != 1+1+16+2 {
		t.Fatalf("slots --map: want a heading, a column header, 16 rows, legend and moves: %v", r)
	}
	row1 := strings.Fields(lines[3]) // slots 16..31
	if row1[0] != "16" || row1[1] != "A" || row1[2] != "A*" || len(row1) != 17 {
		t.Fatalf("slots --map row for 16..31: %q", lines[3])
	}
	if !strings.Contains(lines[18], "A=d1 (256)") || !strings.Contains(lines[18], "B=d2 (0)") || lines[19] != "moving: 17 d1->d2" {
		t.Fatalf("slots --map legend: %q, %q", lines[18], lines[19])
	}
}

func TestMoveSlot(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2", "d3"}, nil)
	c.handoffs()
	addr := c.meta.RPCAddr()
	r := ctl("--meta", addr, "move-slot", "42", "--to", "d3")
	if r.code != 0 || !strings.Contains(r.out, "moving slot 42 from d1 to d3") || !strings.Contains(r.out, "slot 42: d3 leads now") {
		t.Fatalf("move-slot: %v", r)
	}
	if l := c.meta.Table().Leader(42); l != "d3" {
		t.Fatalf("slot 42 led by %s", l)
	}
	if r := ctl("--meta", addr, "move-slot", "42", "--to", "d3"); r.code != 0 || !strings.Contains(r.out, "nothing to do") {
		t.Fatalf("move-slot to the leader: %v", r)
	}
	r = ctl("--meta", addr, "move-slot", "43", "--to", "d2", "--no-wait")
	if r.code != 0 || !strings.Contains(r.out, "moving slot 43") || strings.Contains(r.out, "leads now") {
		t.Fatalf("move-slot --no-wait: %v", r)
	}
	testutil.WaitFor(t, testWait, "slot 43 to move", func() (bool, string) { return c.meta.Table().Leader(43) == "d2", "" })
}

func TestMoveSlotErrors(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2", "d3"}, []string{"s1"})
	addr := c.meta.RPCAddr()
	c.do((&proto.MoveSlot{Slot: 5, To: "d2"}).Args()...)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"move-slot", "3", "--to", "no-such-node"}, `unknown data node "no-such-node" (data nodes: d1, d2, d3)`},
		{[]string{"move-slot", "3", "--to", "s1"}, `"s1" is a session node`},
		{[]string{"move-slot", "5", "--to", "d3"}, "move refused: slot 5 is moving to d2"},
		{[]string{"drain", "no-such-node"}, `unknown data node "no-such-node"`},
		{[]string{"undrain", "no-such-node"}, `unknown data node "no-such-node"`},
	} {
		r := ctl(append([]string{"--meta", addr}, tc.args...)...)
		if r.code != exitFailed || !strings.Contains(r.err, tc.want) || strings.Count(r.err, "\n") != 1 {
			t.Errorf("%q: %v\nwant exit 1 and one line saying %q", tc.args, r, tc.want)
		}
	}
	// A refusal for a draining target comes from meta, with its reason.
	if r := ctl("--meta", addr, "drain", "d3", "--no-wait"); r.code != 0 {
		t.Fatalf("drain --no-wait: %v", r)
	}
	r := ctl("--meta", addr, "move-slot", "6", "--to", "d3")
	if r.code != exitFailed || !strings.Contains(r.err, "d3 is draining") {
		t.Fatalf("move to a draining node: %v", r)
	}
	// The move meta cancels is a failure.
	c.do((&proto.MoveSlot{Slot: 9, To: "d2"}).Args()...)
	out, done := ctlAsync("--meta", addr, "move-slot", "9", "--to", "d2")
	testutil.WaitFor(t, testWait, "registryctl to wait for the move", func() (bool, string) {
		return strings.Contains(out.String(), "slot 9 is moving from d1 to d2 already"), out.String()
	})
	c.do((&proto.CancelMove{Slot: 9}).Args()...)
	if r := <-done; r.code != exitFailed || !strings.Contains(r.err, "slot 9: the move to d2 failed: cancelled") {
		t.Fatalf("a cancelled move: %v", r)
	}
}

func TestRebalance(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, nil)
	addr := c.meta.RPCAddr()
	before := c.meta.Table()
	r := ctl("--meta", addr, "rebalance", "--dry-run")
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || lines[0] != fmt.Sprintf("plan at table epoch %d: %d moves", before.Epoch, slot.Count/2) || len(lines) != 1+slot.Count/2 {
		t.Fatalf("rebalance --dry-run: %v", r)
	}
	for _, l := range lines[1:] {
		if !strings.HasSuffix(l, ": d1 -> d2") {
			t.Fatalf("plan line %q", l)
		}
	}
	if !c.meta.Table().Equal(before) {
		t.Fatal("a dry run changed the table")
	}

	c.handoffs()
	r = ctl("--meta", addr, "rebalance", "--max-moves", "32")
	if r.code != 0 || !strings.Contains(r.out, fmt.Sprintf("rebalance: %d moves done, 0 failed", slot.Count/2)) ||
		strings.Count(r.out, " -> d2 (") != slot.Count/2 {
		t.Fatalf("rebalance: %v", r)
	}
	tb := c.meta.Table()
	if n := len(tb.LedBy("d2")); n != slot.Count/2 || len(tb.Moving()) != 0 {
		t.Fatalf("after rebalance d2 leads %d, moving %v", n, tb.Moving())
	}
	if r := ctl("--meta", addr, "rebalance"); r.code != 0 || !strings.Contains(r.out, "nothing to move") {
		t.Fatalf("rebalance when balanced: %v", r)
	}
}

func TestDrain(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, nil)
	c.handoffs()
	addr := c.meta.RPCAddr()
	r := ctl("--meta", addr, "drain", "d1")
	if r.code != 0 || !strings.Contains(r.out, "draining d1: it leads 256 slots") ||
		!strings.Contains(r.out, "d1 leads no slot: 256 moved") || strings.Count(r.out, ": d1 -> d2\n") != slot.Count {
		t.Fatalf("drain: %v", r)
	}
	if n := len(c.meta.Table().LedBy("d1")); n != 0 {
		t.Fatalf("d1 leads %d slots after the drain", n)
	}
	r = ctl("--meta", addr, "nodes", "--json")
	var nr nodesReport
	if err := json.Unmarshal([]byte(r.out), &nr); err != nil || !nr.Nodes[1].Draining || nr.Nodes[2].Draining {
		t.Fatalf("nodes --json after drain: %v\n%v", err, r)
	}
	if r := ctl("--meta", addr, "drain", "d2"); r.code != exitFailed || !strings.Contains(r.err, "drain refused") ||
		!strings.Contains(r.err, "last data node") {
		t.Fatalf("draining the last node: %v", r)
	}
	if r := ctl("--meta", addr, "undrain", "d1"); r.code != 0 || !strings.Contains(r.out, "d1 is no longer draining") {
		t.Fatalf("undrain: %v", r)
	}
	if r := ctl("--meta", addr, "undrain", "d1"); r.code != 0 || !strings.Contains(r.out, "d1 was not draining") {
		t.Fatalf("undrain again: %v", r)
	}
	if m := c.meta.Members(); m.Data[0].Draining {
		t.Fatal("d1 still draining")
	}
}

// TestFollowsNotLeader: a meta that is not the leader answers reads and
// names the leader for writes; registryctl follows it.
func TestFollowsNotLeader(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, nil)
	c.handoffs()
	leader := c.meta.RPCAddr()
	follower := startFake(t, "m2")
	forward := proxyTo(t, leader)
	follower.set(func(f *fakeNode) {
		f.proxy = func(args [][]byte) any {
			switch strings.ToLower(string(args[0])) {
			case proto.CmdTable, proto.CmdNodes, proto.CmdPing:
				return forward(args)
			}
			return errors.New("NOTLEADER " + leader)
		}
	})
	// One that knows no leader.
	lost := startFake(t, "m3")
	lost.set(func(f *fakeNode) { f.proxy = func([][]byte) any { return errors.New("NOTLEADER ") } })
	for _, metas := range []string{follower.addr, lost.addr + "," + follower.addr} {
		r := ctl("--meta", metas, "move-slot", "8", "--to", "d2")
		if r.code != 0 || !strings.Contains(r.out, "d2 leads now") {
			t.Fatalf("move-slot via %s: %v", metas, r)
		}
		r = ctl("--meta", metas, "move-slot", "8", "--to", "d1")
		if r.code != 0 || !strings.Contains(r.out, "d1 leads now") {
			t.Fatalf("move-slot back via %s: %v", metas, r)
		}
	}
}

func TestLookupAndStats(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, []string{"s1", "s2"})
	addr := c.meta.RPCAddr()
	tb := c.meta.Table()
	c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d1") })
	c.fakes["d2"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d2") })
	c.fakes["s1"].set(func(f *fakeNode) {
		f.info = "# Clients\r\nconnected_clients:3\r\n\r\n# Registry\r\ntable_epoch:5\r\nsession_conn_publishers:7\r\nsession_subscribed_topics:2\r\nsession_subscribers:4\r\n\r\n"
		f.lookup["svc"] = []any{int64(3<<32 | 9), []any{[]any{"r1", "10.0.0.1:80"}, []any{"r2", "10.0.0.2:80"}}}
	})
	// s2 does not answer INFO.

	r := ctl("--meta", addr, "lookup", "svc")
	if r.code != 0 {
		t.Fatalf("lookup: %v", r)
	}
	for _, want := range []string{
		fmt.Sprintf("slot        %d (leader d1, leader epoch 1)", slot.Of("svc")),
		fmt.Sprintf("version     %d (leader epoch 3, seq 9)", uint64(3<<32|9)),
		"session     s1", "publishers  2", "  r1  10.0.0.1:80", "  r2  10.0.0.2:80",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("lookup output lacks %q:\n%s", want, r.out)
		}
	}
	var lr lookupReport
	if r := ctl("--meta", addr, "lookup", "--json", "svc"); json.Unmarshal([]byte(r.out), &lr) != nil || len(lr.Publishers) != 2 ||
		lr.Leader != "d1" || lr.Session != "s1" {
		t.Fatalf("lookup --json: %v", r)
	}

	r = ctl("--meta", addr, "stats")
	if r.code != 0 || !strings.Contains(r.err, "session node s2 did not report") {
		t.Fatalf("stats: %v", r)
	}
	pubs := 0
	for s := range slot.Count {
		pubs += s % 5
	}
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if len(lines) != 6 || !slices.Equal(strings.Fields(lines[1])[3:], []string{"256", "0", fmt.Sprint(pubs), "256", "-", "-", "-"}) ||
		!slices.Equal(strings.Fields(lines[3])[3:], []string{"-", "-", "7", "-", "4", "2", "3"}) {
		t.Fatalf("stats rows:\n%s", r.out)
	}
	if want := fmt.Sprintf("total: %d publishers in 256 datums on the slot leaders; sessions hold 7 publishers for 3 clients, 4 subscribers on 2 topics", pubs); lines[5] != want {
		t.Fatalf("stats total %q, want %q", lines[5], want)
	}
}

func TestVerify(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, []string{"s1", "s2"})
	addr := c.meta.RPCAddr()
	tb := c.meta.Table()
	healthy := func() {
		c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d1", "s1", "s2") })
		c.fakes["d2"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d2", "s1", "s2") })
		c.fakes["s1"].set(func(f *fakeNode) { f.digests = healthyDigests("s1") })
		c.fakes["s2"].set(func(f *fakeNode) { f.digests = healthyDigests("s2") })
	}
	healthy()
	r := ctl("--meta", addr, "verify", "--settle", "300ms")
	if r.code != 0 || !strings.Contains(r.out, "verify: no differences: 2 sessions agree with the slot leaders, 256 follower copies with their leaders") {
		t.Fatalf("verify on agreeing nodes: %v", r)
	}

	slotOf := func(ds *proto.DataStats, s int) *proto.SlotStats {
		for i := range ds.Slots {
			if ds.Slots[i].Slot == s {
				return &ds.Slots[i]
			}
		}
		t.Fatalf("%s does not hold slot %d", ds.Node, s)
		return nil
	}
	c.fakes["d2"].set(func(f *fakeNode) {
		slotOf(f.stats, 7).Hash++
		slotOf(f.stats, 8).Seq -= 3
		f.stats.Slots = slices.DeleteFunc(f.stats.Slots, func(s proto.SlotStats) bool { return s.Slot == 9 })
	})
	c.fakes["s1"].set(func(f *fakeNode) { f.digests.Slots[10] = proto.Digest{Count: 1, Sum: 5} })
	c.fakes["d1"].set(func(f *fakeNode) { slotOf(f.stats, 11).Sessions["s9"] = proto.Digest{Count: 2, Sum: 1} })
	r = ctl("--meta", addr, "verify", "--settle", "300ms")
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != exitDifferences || len(lines) != 5 || !strings.Contains(r.err, "verify: 5 differences") {
		t.Fatalf("verify with differences: %v", r)
	}
	for i, want := range []string{
		"slot 7: follower d2 differs from leader d1 at leader epoch 1 seq 17",
		"slot 8: follower d2 lags: at leader epoch 1 seq 15, leader d1 at leader epoch 1 seq 18",
		"slot 9: follower d2 does not hold the slot",
		"slot 10: session s1 has 1 publishers",
		"slot 11: leader d1 holds 2 publishers of session s9, which is not a member",
	} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d %q, want %q...", i, lines[i], want)
		}
	}

	// A node that does not answer: nothing differs, but verify is not
	// complete.
	healthy()
	c.fakes["s2"].set(func(f *fakeNode) { f.digests = nil })
	r = ctl("--meta", addr, "verify", "--settle", "300ms")
	if r.code != exitFailed || !strings.Contains(r.out, "not checked: s2: SLOTREG DIGESTS") || !strings.Contains(r.err, "could not be checked") {
		t.Fatalf("verify with a session down: %v", r)
	}
}

// TestVerifySettles: a follower behind the leader for a moment is not
// reported when it catches up within --settle.
func TestVerifySettles(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, nil)
	addr := c.meta.RPCAddr()
	tb := c.meta.Table()
	c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d1") })
	behind := healthyStats(tb, "d2")
	behind.Slots[3].Seq--
	c.fakes["d2"].set(func(f *fakeNode) { f.stats = behind })
	_, done := ctlAsync("--meta", addr, "verify", "--settle", "5s")
	testutil.WaitFor(t, testWait, "two verify rounds", func() (bool, string) { return c.fakes["d2"].served(proto.CmdDStats) >= 2, "" })
	c.fakes["d2"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d2") })
	if r := <-done; r.code != 0 {
		t.Fatalf("verify of a follower that caught up: %v", r)
	}
}

// TestRunLeavesNoGoroutines: every connection registryctl opens is closed
// when run returns.
func TestRunLeavesNoGoroutines(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1"}, []string{"s1"})
	addr := c.meta.RPCAddr()
	tb := c.meta.Table()
	c.fakes["d1"].set(func(f *fakeNode) { f.stats = healthyStats(tb, "d1", "s1") })
	c.fakes["s1"].set(func(f *fakeNode) { f.digests = healthyDigests("s1") })
	ctl("--meta", addr, "nodes") // warm up whatever the cluster starts lazily
	before := runtime.NumGoroutine()
	for _, args := range [][]string{{"nodes"}, {"slots"}, {"stats"}, {"remotes"}, {"verify"}, {"lookup", "x"}} {
		if r := ctl(append([]string{"--meta", addr}, args...)...); r.code != 0 {
			t.Fatalf("%q: %v", args, r)
		}
	}
	testutil.WaitFor(t, testWait, "registryctl's goroutines to end", func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= before, fmt.Sprintf("%d goroutines, %d before", n, before)
	})
}

// TestHungMetaIsSkipped: a meta that accepts connections but never
// answers costs one --timeout per request, then the next is asked.
func TestHungMetaIsSkipped(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1", "d2"}, nil)
	c.handoffs()
	hung := testutil.MustListen(t) // never accepted from: requests hang
	defer hung.Close()
	metas := hung.Addr().String() + "," + c.meta.RPCAddr()
	if r := ctl("--meta", metas, "--timeout", "500ms", "slots", "--map"); r.code != 0 {
		t.Fatalf("slots --map: %v", r)
	}
	if r := ctl("--meta", metas, "--timeout", "500ms", "move-slot", "1", "--to", "d2"); r.code != 0 || !strings.Contains(r.out, "d2 leads now") {
		t.Fatalf("move-slot: %v", r)
	}
}

// TestMetaRemoveRefusals: meta remove names what it refuses; the removal
// itself is tested with three voters in the meta package.
func TestMetaRemoveRefusals(t *testing.T) {
	c := mustCluster(t, nil, []string{"d1"}, nil)
	addr := c.meta.RPCAddr()
	if r := ctl("--meta", addr, "meta", "remove"); r.code != exitUsage {
		t.Fatalf("meta remove without an id: %v", r)
	}
	if r := ctl("--meta", addr, "meta", "remove", "m9"); r.code != exitFailed || !strings.Contains(r.err, "m9 is not in the meta group") {
		t.Fatalf("removing an unknown voter: %v", r)
	}
	if r := ctl("--meta", addr, "meta", "remove", "m1"); r.code != exitFailed || !strings.Contains(r.err, "last meta voter") {
		t.Fatalf("removing the last voter: %v", r)
	}
	if !c.meta.IsLeader() {
		t.Fatal("the meta stopped leading after a refused removal")
	}
}
