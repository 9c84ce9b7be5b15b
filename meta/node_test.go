package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{NodeID: "m1", RaftAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", DataDir: "/tmp/x"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"RaftAddr", func(c *Config) { c.RaftAddr = "" }},
		{"RPCAddr", func(c *Config) { c.RPCAddr = "nonsense" }},
		{"DataDir", func(c *Config) { c.DataDir = "" }},
		{"Peers[1].ID", func(c *Config) { c.Peers = []Peer{{"m1", "h:1"}, {"", "h:2"}} }},
		{"Peers[1].ID", func(c *Config) { c.Peers = []Peer{{"m1", "h:1"}, {"m1", "h:2"}} }},
		{"Peers[0].RaftAddr", func(c *Config) { c.Peers = []Peer{{"m1", "h"}} }},
		{"Peers does not list NodeID", func(c *Config) { c.Peers = []Peer{{"m2", "h:1"}} }},
		{"AdvertiseRaft", func(c *Config) { c.Peers = []Peer{{"m1", "h:1"}}; c.AdvertiseRaft = "h:2" }},
		{"Lease", func(c *Config) { c.Lease = -1 }},
		{"Replicas", func(c *Config) { c.Replicas = -1 }},
		{"RaftElectionTimeout", func(c *Config) { c.RaftHeartbeatTimeout = 2 * time.Second }},
		{"MaxMoves", func(c *Config) { c.MaxMoves = -1 }},
		{"MaxMoves", func(c *Config) { c.MaxMoves = slot.Count + 1 }},
		{"MoveTimeout", func(c *Config) { c.MoveTimeout = -time.Second }},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate with bad %s = %v, want an error naming it", tc.field, err)
		}
	}
}

// TestSingleNodeJoin: heartbeats make data nodes join, the table follows,
// and both clients get the newer tables.
func TestSingleNodeJoin(t *testing.T) {
	n := mustSingle(t, 3*time.Second)
	c1, tl1 := mustClient(t, proto.KindData, "d1", n.RPCAddr())
	c1.Start()
	waitFor(t, "d1 to lead every slot", func() (bool, string) {
		tb := c1.Table()
		if tb == nil {
			return false, "no table yet"
		}
		return len(tb.LedBy("d1")) == slot.Count, fmt.Sprintf("epoch %d, d1 leads %d", tb.Epoch, len(tb.LedBy("d1")))
	})
	first := n.Table()
	if len(first.LedBy("d1")) != slot.Count || first.Epoch != c1.Table().Epoch {
		t.Fatalf("meta table epoch %d has d1 leading %d slots; client has epoch %d",
			first.Epoch, len(first.LedBy("d1")), c1.Table().Epoch)
	}

	c2, tl2 := mustClient(t, proto.KindData, "d2", n.RPCAddr())
	c2.Start()
	s1, _ := mustClient(t, proto.KindSession, "s1", n.RPCAddr())
	s1.Start()
	waitFor(t, "both clients on the table with d2", func() (bool, string) {
		want := n.Table()
		t1, t2 := tl1.last(), tl2.last()
		if t1 == nil || t2 == nil {
			return false, "a client has no table"
		}
		return len(want.Nodes) == 2 && t1.Equal(want) && t2.Equal(want),
			fmt.Sprintf("meta epoch %d with %d nodes; clients at %d, %d", want.Epoch, len(want.Nodes), t1.Epoch, t2.Epoch)
	})
	second := n.Table()
	if second.Epoch <= first.Epoch {
		t.Fatalf("epoch did not grow: %d -> %d", first.Epoch, second.Epoch)
	}
	// Joins move no leader (see TestAutoRebalance for how d2 gets some).
	if l1, f2 := len(second.LedBy("d1")), len(second.FollowedBy("d2")); l1 != slot.Count || f2 != slot.Count {
		t.Fatalf("d1 leads %d and d2 follows %d, want %d each", l1, f2, slot.Count)
	}
	if e := tl1.epochs(); len(e) < 2 || !slices.IsSorted(e) || e[0] != first.Epoch {
		t.Fatalf("d1 got epochs %v, want increasing from %d", e, first.Epoch)
	}
	if c2.Table() != tl2.last() {
		t.Fatal("Client.Table is not the last table delivered")
	}
	waitFor(t, "the session to join", func() (bool, string) {
		m := n.Members()
		return hasIDs(m.Sessions, "s1"), fmt.Sprintf("sessions %v", memberIDs(m.Sessions))
	})
	m := n.Members()
	if !hasIDs(m.Data, "d1", "d2") || !hasIDs(m.Metas, "m1") || m.Metas[0].Addr != n.RPCAddr() {
		t.Fatalf("members %+v", m)
	}
	if m.Data[0].Addr != "d1.test:7000" || m.Data[0].Kind != proto.KindData || m.Sessions[0].Kind != proto.KindSession {
		t.Fatalf("member fields %+v", m)
	}
	if m.Data[0].LastSeenMs > 2000 {
		t.Fatalf("leader reports d1 last seen %dms ago while it heartbeats every 50ms", m.Data[0].LastSeenMs)
	}
}

// TestLeaseEviction: a node that stops heartbeating is removed after the
// lease and the table is recomputed without it.
func TestLeaseEviction(t *testing.T) {
	const lease = 600 * time.Millisecond
	n := mustSingle(t, lease)
	c1, tl1 := mustClient(t, proto.KindData, "d1", n.RPCAddr())
	c2, _ := mustClient(t, proto.KindData, "d2", n.RPCAddr())
	c1.Start()
	c2.Start()
	waitFor(t, "two data nodes", func() (bool, string) {
		tb := n.Table()
		return len(tb.Nodes) == 2, fmt.Sprintf("nodes %v", tb.NodeIDs())
	})
	before := n.Table().Epoch
	stopped := time.Now()
	c2.Close()
	waitFor(t, "d2 evicted", func() (bool, string) {
		m := n.Members()
		return hasIDs(m.Data, "d1"), fmt.Sprintf("data %v", memberIDs(m.Data))
	})
	if since := time.Since(stopped); since < lease {
		t.Fatalf("d2 evicted %v after its last heartbeat, before the %v lease", since, lease)
	}
	after := n.Table()
	if after.Epoch <= before || len(after.LedBy("d1")) != slot.Count || after.HasNode("d2") {
		t.Fatalf("table after eviction: epoch %d (was %d), d1 leads %d, has d2 %v",
			after.Epoch, before, len(after.LedBy("d1")), after.HasNode("d2"))
	}
	waitFor(t, "d1 to receive the new table", func() (bool, string) {
		last := tl1.last()
		return last != nil && last.Equal(n.Table()), fmt.Sprintf("d1 epochs %v", tl1.epochs())
	})
}

// TestClientRefreshAndLeave: Refresh delivers a newer table before it
// returns, with or without the loop; Leave removes the node at once.
func TestClientRefreshAndLeave(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()

	// Only Refresh heartbeats, before Start and after it.
	tl1 := &tableLog{}
	c1 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d1", Metas: []string{n.RPCAddr()},
		Interval: time.Hour, OnTable: tl1.add})
	if err := c1.Refresh(ctx); err != nil {
		t.Fatalf("Refresh without Start: %v", err)
	}
	if c1.Table() == nil || tl1.last() != c1.Table() || len(c1.Table().LedBy("d1")) != slot.Count {
		t.Fatalf("after Refresh: table %v, delivered %v", c1.Table(), tl1.epochs())
	}
	c1.Start()

	c2, tl2 := mustClient(t, proto.KindData, "d2", n.RPCAddr())
	if err := c2.Refresh(ctx); err != nil {
		t.Fatalf("Refresh d2: %v", err)
	}
	if got, want := tl2.last().Epoch, n.Table().Epoch; got != want {
		t.Fatalf("d2 has epoch %d, meta %d", got, want)
	}
	// d1's TABLEWAIT poll may have brought d2's join already; either
	// way, once Refresh returns d1 has meta's table.
	if err := c1.Refresh(ctx); err != nil {
		t.Fatalf("Refresh d1 through the loop: %v", err)
	}
	if got := tl1.last().Epoch; got != n.Table().Epoch {
		t.Fatalf("d1 at epoch %d after Refresh, meta %d", got, n.Table().Epoch)
	}

	if err := c2.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if m := n.Members(); !hasIDs(m.Data, "d1") {
		t.Fatalf("after Leave the data members are %v", memberIDs(m.Data))
	}
	if err := c2.Refresh(ctx); !errors.Is(err, metaclient.ErrClientStopped) {
		t.Fatalf("Refresh after Leave = %v, want metaclient.ErrClientStopped", err)
	}
}

// TestThreeVoters: clients pointed at a follower are redirected and join;
// after the leader goes away a new one takes over, admits new nodes and
// evicts none of the live ones.
func TestThreeVoters(t *testing.T) {
	const lease = time.Second
	nodes := mustCluster(t, 3, lease)
	leader, followers := leaderOf(t, nodes)
	for _, n := range nodes {
		mustLeader(t, n)
	}
	metas := []string{followers[0].RPCAddr(), followers[1].RPCAddr()}

	d1, _ := mustClient(t, proto.KindData, "d1", metas...)
	d2, _ := mustClient(t, proto.KindData, "d2", metas...)
	d1.Start()
	d2.Start()
	waitFor(t, "d1 and d2 to join through a follower", func() (bool, string) {
		m := leader.Members()
		tb := d1.Table()
		return hasIDs(m.Data, "d1", "d2") && tb != nil && len(tb.Nodes) == 2,
			fmt.Sprintf("data %v", memberIDs(m.Data))
	})
	waitFor(t, "every voter to record every RPC address", func() (bool, string) {
		for _, n := range nodes {
			if m := n.Members(); !hasIDs(m.Metas, "m1", "m2", "m3") {
				return false, fmt.Sprintf("%s has metas %v", n.ID(), memberIDs(m.Metas))
			}
		}
		return true, ""
	})
	waitFor(t, "followers to apply the same table", func() (bool, string) {
		want := leader.Table()
		for _, f := range followers {
			if !f.Table().Equal(want) {
				return false, fmt.Sprintf("%s at epoch %d, leader %d", f.ID(), f.Table().Epoch, want.Epoch)
			}
		}
		return true, ""
	})

	if err := leader.Close(); err != nil {
		t.Fatalf("closing the leader: %v", err)
	}
	newLeader, _ := leaderOf(t, followers)
	tookOver := time.Now()

	d3, _ := mustClient(t, proto.KindData, "d3", metas...)
	d3.Start()
	waitFor(t, "d3 to join under the new leader", func() (bool, string) {
		tb := d3.Table()
		m := newLeader.Members()
		return hasIDs(m.Data, "d1", "d2", "d3") && tb != nil && tb.Equal(newLeader.Table()),
			fmt.Sprintf("data %v", memberIDs(m.Data))
	})
	// Live nodes must survive well past one lease under the new leader.
	waitFor(t, "two leases under the new leader without evictions", func() (bool, string) {
		m := newLeader.Members()
		if !hasIDs(m.Data, "d1", "d2", "d3") {
			t.Fatalf("a live node was evicted after the leader change: data %v", memberIDs(m.Data))
		}
		return time.Since(tookOver) > 2*lease, ""
	})
	if tb := d1.Table(); !tb.Equal(newLeader.Table()) || len(tb.Nodes) != 3 {
		t.Fatalf("d1 at epoch %d, new leader at %d", tb.Epoch, newLeader.Table().Epoch)
	}
}

// TestFollowerRepliesNotLeader drives the RPC endpoint with go-redis.
func TestFollowerRepliesNotLeader(t *testing.T) {
	nodes := mustCluster(t, 3, 3*time.Second)
	leader, followers := leaderOf(t, nodes)
	f := followers[0]
	if addr := mustLeader(t, f); addr != leader.RPCAddr() {
		t.Fatalf("follower %s names leader %q, want %q", f.ID(), addr, leader.RPCAddr())
	}
	ctx := context.Background()
	rdb := rawClient(t, f.RPCAddr())
	hb := &proto.Heartbeat{Kind: proto.KindData, NodeID: "d1", Addr: "d1.test:7000"}
	for _, args := range [][]any{
		hb.Args(),
		(&proto.Leave{Kind: proto.KindData, NodeID: "d1"}).Args(),
		(&proto.Handoff{Slot: 1, From: "d1", To: "d2", LeaderEpoch: 1}).Args(),
		(&proto.MoveSlot{Slot: 1, To: "d2"}).Args(),
		(&proto.Rebalance{DryRun: true}).Args(),
		(&proto.CancelMove{Slot: 1}).Args(),
		(&proto.Drain{NodeID: "d1"}).Args(),
		(&proto.Undrain{NodeID: "d1"}).Args(),
	} {
		err := respErr(rdb.Do(ctx, args...).Err())
		if !errors.Is(err, proto.ErrNotLeader) {
			t.Fatalf("%v on a follower = %v, want NOTLEADER", args[0], err)
		}
		if addr, _ := proto.LeaderAddr(err); addr != leader.RPCAddr() {
			t.Fatalf("NOTLEADER names %q, want the leader's %q", addr, leader.RPCAddr())
		}
	}
	// Reads are served locally by any node.
	b, err := rdb.Do(ctx, proto.CmdTable).Text()
	if err != nil {
		t.Fatalf("TABLE on a follower: %v", err)
	}
	if _, err := slot.Unmarshal([]byte(b)); err != nil {
		t.Fatalf("TABLE reply: %v", err)
	}

	// The leader answers the same heartbeat with the table.
	v, err := rawClient(t, leader.RPCAddr()).Do(ctx, hb.Args()...).Result()
	if err != nil {
		t.Fatalf("HEARTBEAT on the leader: %v", err)
	}
	rep, err := proto.ParseHeartbeatReply(v)
	if err != nil || rep.Table == nil {
		t.Fatalf("heartbeat reply %#v: %v", v, err)
	}
	tb, err := slot.Unmarshal(rep.Table)
	if err != nil {
		t.Fatalf("heartbeat table: %v", err)
	}
	if tb.Epoch != rep.Epoch || len(tb.LedBy("d1")) != slot.Count {
		t.Fatalf("heartbeat table epoch %d (reply epoch %d), d1 leads %d", tb.Epoch, rep.Epoch, len(tb.LedBy("d1")))
	}
	if rep.MembersEpoch != 1 || string(rep.Sessions) != "[]" {
		t.Fatalf("first heartbeat: members epoch %d, sessions %q; want 1 and []", rep.MembersEpoch, rep.Sessions)
	}
	hb.Epoch, hb.MembersEpoch = rep.Epoch, rep.MembersEpoch
	if v, err = rawClient(t, leader.RPCAddr()).Do(ctx, hb.Args()...).Result(); err != nil {
		t.Fatalf("up-to-date HEARTBEAT: %v", err)
	}
	if rep, err = proto.ParseHeartbeatReply(v); err != nil || rep.Table != nil || rep.Epoch != tb.Epoch ||
		rep.Sessions != nil || rep.MembersEpoch != 1 {
		t.Fatalf("up-to-date heartbeat: %+v, %v; want epoch %d, members epoch 1, no table, no sessions", rep, err, tb.Epoch)
	}
	// A node built before the session list sends the 5-argument form.
	old := []any{proto.CmdHeartbeat, proto.KindData, "d1", "d1.test:7000", strconv.FormatUint(tb.Epoch, 10)}
	if v, err = rawClient(t, leader.RPCAddr()).Do(ctx, old...).Result(); err != nil {
		t.Fatalf("old-form HEARTBEAT: %v", err)
	}
	if rep, err = proto.ParseHeartbeatReply(v); err != nil || rep.Table != nil || rep.MembersEpoch != 1 || string(rep.Sessions) != "[]" {
		t.Fatalf("old-form heartbeat: %+v, %v", rep, err)
	}
}

// TestRPCErrors: bad input gets RESP errors and never takes the node down.
func TestRPCErrors(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	ctx := context.Background()
	rdb := rawClient(t, n.RPCAddr())
	if s, err := rdb.Do(ctx, "PING").Text(); err != nil || s != "PONG" {
		t.Fatalf("PING = %q, %v", s, err)
	}
	if s, err := rdb.Do(ctx, "ping", "hi").Text(); err != nil || s != "hi" {
		t.Fatalf("PING hi = %q, %v", s, err)
	}
	for _, args := range [][]any{
		{"nosuch"},
		{"HEARTBEAT"},
		{"heartbeat", "data", "d1", "h:1"},
		{"heartbeat", "robot", "d1", "h:1", "0"},
		{"heartbeat", "data", "d1", "no-port", "0"},
		{"heartbeat", "data", "d1", "h:1", "-5"},
		{"leave", "data"},
		{"table", "extra"},
		{"nodes", "extra"},
		{"metajoin", "m9", "h:1"},
		{"handoff", "1", "d1", "d2"},
		{"handoff", "1", "d1", "d2", "1"},
		{"moveslot", "x", "d1"},
		{"moveslot", "1", "d9"},
		{"cancelmove"},
		{"cancelmove", "1"},
		{"rebalance", "1", "2"},
		{"drain"},
		{"drain", "d1", "d2"},
		{"drain", "d9"},
		{"undrain", "d9"},
	} {
		err := respErr(rdb.Do(ctx, args...).Err())
		if !errors.Is(err, proto.ErrInvalid) || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%q = %v, want an ERR reply", args, err)
		}
	}
	if v, err := rdb.Do(ctx, proto.CmdLeave, proto.KindData, "ghost").Int(); err != nil || v != 0 {
		t.Fatalf("LEAVE of a non-member = %d, %v; want 0", v, err)
	}
	if v, err := rdb.Do(ctx, proto.CmdRebalance, "0", "0").Text(); err != nil || v != `{"epoch":1,"moves":[],"started":false}` {
		t.Fatalf("REBALANCE without data nodes = %s, %v", v, err)
	}

	// Garbage on a raw connection: the node answers or hangs up, and
	// keeps serving others.
	conn, err := net.Dial("tcp", n.RPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("*2\r\n$-7\r\nxx\r\n*\x00\x01\xff\r\n"))
	_ = conn.Close()

	var m proto.Members
	s, err := rdb.Do(ctx, proto.CmdNodes).Text()
	if err != nil {
		t.Fatalf("NODES after garbage: %v", err)
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil || !hasIDs(m.Metas, "m1") {
		t.Fatalf("NODES = %s (%v)", s, err)
	}
	if !strings.Contains(s, `"data":[]`) {
		t.Fatalf("NODES should list empty kinds as []: %s", s)
	}
}

// TestRestartRecovers: membership and table come back from disk.
func TestRestartRecovers(t *testing.T) {
	log := testLogger(t)
	spec := &nodeSpec{id: "m1", raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: 30 * time.Second, logger: log}
	n, err := New(spec.config(t))
	if err != nil {
		t.Fatal(err)
	}
	mustLeader(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	join := func(kind, id string) {
		cl, _ := mustClient(t, kind, id, n.RPCAddr())
		if err := cl.Refresh(ctx); err != nil {
			t.Fatalf("heartbeat %s: %v", id, err)
		}
		cl.Close()
	}
	join(proto.KindData, "d1")
	join(proto.KindData, "d2")
	join(proto.KindSession, "s1")
	// A move in progress survives the restart too.
	if err := rawClient(t, n.RPCAddr()).Do(ctx, (&proto.MoveSlot{Slot: 9, To: "d2"}).Args()...).Err(); err != nil {
		t.Fatalf("MOVESLOT: %v", err)
	}
	// Recovery must combine a snapshot with the log entries after it.
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	join(proto.KindSession, "s2")
	join(proto.KindData, "d3")
	wantTable, wantMembers, wantMembersEpoch := n.Table(), n.Members(), n.store.state().MembersEpoch
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	spec.raftLn = testutil.MustListen(t)
	n2 := mustNode(t, spec.config(t))
	mustLeader(t, n2)
	got := n2.Members()
	if !equalIgnoringLeases(got, wantMembers, proto.KindData) || !equalIgnoringLeases(got, wantMembers, proto.KindSession) {
		t.Fatalf("after restart members %+v, want %+v", got, wantMembers)
	}
	if tb := n2.Table(); !tb.Equal(wantTable) || tb.Epoch == 0 || !slices.Equal(tb.Moving(), []int{9}) {
		t.Fatalf("after restart table epoch %d (moving %v), want %d", tb.Epoch, tb.Moving(), wantTable.Epoch)
	}
	if got := n2.store.state().MembersEpoch; got != wantMembersEpoch || got != 3 {
		t.Fatalf("after restart MembersEpoch %d, want %d (init and two sessions)", got, wantMembersEpoch)
	}
	if m := got.Metas; len(m) != 1 || m[0].Addr != n2.RPCAddr() {
		t.Fatalf("after restart the leader's RPC address is recorded as %+v, want %s", m, n2.RPCAddr())
	}
}

func equalIgnoringLeases(m, o proto.Members, kind string) bool {
	strip := func(ms []proto.Member) []proto.Member {
		out := slices.Clone(ms)
		for i := range out {
			out[i].LastSeenMs = 0
		}
		return out
	}
	if kind == proto.KindData {
		return slices.Equal(strip(m.Data), strip(o.Data))
	}
	return slices.Equal(strip(m.Sessions), strip(o.Sessions))
}

// TestCloseLeavesNoGoroutines starts a three-voter group with clients,
// closes everything and expects the goroutine count back where it was.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	log := testLogger(t)
	var nodes []*Node
	var peers []Peer
	var specs []*nodeSpec
	for i := range 3 {
		s := &nodeSpec{id: fmt.Sprintf("m%d", i+1), raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: 3 * time.Second, logger: log}
		specs = append(specs, s)
		peers = append(peers, Peer{ID: s.id, RaftAddr: s.raftLn.Addr().String()})
	}
	for _, s := range specs {
		s.peers = peers
		n, err := New(s.config(t))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	leader, followers := leaderOf(t, nodes)
	c, err := metaclient.NewClient(metaclient.Config{Kind: proto.KindData, NodeID: "d1", Addr: "d1.test:7000",
		Metas: []string{followers[0].RPCAddr()}, Interval: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	waitFor(t, "d1 to join", func() (bool, string) {
		return c.Table() != nil && len(leader.Members().Data) == 1, ""
	})
	rdb := newRedis(leader.RPCAddr(), "", nil)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// Connections from peers that never hang up must not keep a closed
	// node's goroutines alive: hold one open to every Raft and RPC port
	// until the check is done.
	for _, n := range nodes {
		for _, addr := range []string{n.RaftAddr(), n.RPCAddr()} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
		}
	}
	// Close a follower first while the others still talk to it, then
	// the rest with a client connection still open to the leader.
	for _, n := range append(followers, leader) {
		if err := n.Close(); err != nil {
			t.Fatalf("Close(%s): %v", n.ID(), err)
		}
	}
	c.Close()
	_ = rdb.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), goroutineDump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetaRemove takes voters out of a three-voter group with METAREMOVE,
// the leader itself included, down to one, which it refuses to remove.
func TestMetaRemove(t *testing.T) {
	nodes := mustCluster(t, 3, time.Second)
	leader, followers := leaderOf(t, nodes)
	waitFor(t, "every voter to record every RPC address", func() (bool, string) {
		for _, n := range nodes {
			if m := n.Members(); !hasIDs(m.Metas, "m1", "m2", "m3") {
				return false, fmt.Sprintf("%s has metas %v", n.ID(), memberIDs(m.Metas))
			}
		}
		return true, ""
	})
	var rpcs []string
	for _, n := range nodes {
		rpcs = append(rpcs, n.RPCAddr())
	}
	c := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "ctl", Metas: rpcs})
	do := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		_, err := c.Do(ctx, (&proto.MetaRemove{NodeID: id}).Args()...)
		return err
	}
	voters := func(n *Node) []string {
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			return nil
		}
		var ids []string
		for _, s := range f.Configuration().Servers {
			ids = append(ids, string(s.ID))
		}
		sort.Strings(ids)
		return ids
	}

	if err := do("m9"); !errors.Is(err, proto.ErrInvalid) || !strings.Contains(err.Error(), "not in the meta group") {
		t.Fatalf("removing an unknown voter: %v", err)
	}
	gone := followers[0]
	if err := do(gone.ID()); err != nil {
		t.Fatalf("removing follower %s: %v", gone.ID(), err)
	}
	waitFor(t, "the removed follower to leave the configuration and the records", func() (bool, string) {
		for _, n := range []*Node{leader, followers[1]} {
			if v := voters(n); slices.Contains(v, gone.ID()) || hasIDs(n.Members().Metas, gone.ID()) {
				return false, fmt.Sprintf("%s: voters %v, metas %v", n.ID(), v, memberIDs(n.Members().Metas))
			}
		}
		return true, ""
	})
	// The removed node is no longer part of the group: the others keep a
	// leader among themselves however it behaves (it may not even learn
	// of its removal; the operator stops it next).
	if !leader.IsLeader() && !followers[1].IsLeader() {
		waitFor(t, "a leader among the two left", func() (bool, string) {
			return leader.IsLeader() || followers[1].IsLeader(), ""
		})
	}

	// The leader can remove itself: the last follower takes over alone.
	if err := do(leader.ID()); err != nil {
		t.Fatalf("removing the leader %s: %v", leader.ID(), err)
	}
	last := followers[1]
	waitFor(t, "the last voter to lead alone", func() (bool, string) {
		return last.IsLeader() && slices.Equal(voters(last), []string{last.ID()}),
			fmt.Sprintf("leader %v, voters %v", last.IsLeader(), voters(last))
	})
	// Raft makes it leader before it has finished taking over; until
	// then it answers UNAVAILABLE, and then it must refuse.
	waitFor(t, "the last voter to refuse its own removal", func() (bool, string) {
		err := do(last.ID())
		if errors.Is(err, proto.ErrUnavailable) {
			return false, err.Error()
		}
		if !errors.Is(err, proto.ErrInvalid) || !strings.Contains(err.Error(), "last meta voter") {
			t.Fatalf("removing the last voter: %v", err)
		}
		return true, ""
	})
	// It still serves: the table is there and a data node can join.
	d, _ := mustClient(t, proto.KindData, "d1", last.RPCAddr())
	d.Start()
	waitFor(t, "a data node to join the one-voter group", func() (bool, string) {
		return hasIDs(last.Members().Data, "d1"), fmt.Sprintf("data %v", memberIDs(last.Members().Data))
	})
}

// TestStoredPeersMismatchRefusesToStart: a data dir whose Raft
// configuration names this cluster's voters at other addresses (the
// cluster was started again on other ports) makes New fail with one
// error saying what differs and what to do, where it would otherwise
// start and ask for votes where nobody answers. The same addresses, and
// a single voter without --peers on a new address, start as before.
func TestStoredPeersMismatchRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	ln := testutil.MustListen(t)
	oldAddr := ln.Addr().String()
	spec := &nodeSpec{id: "m1", raftLn: ln, dir: dir, lease: 30 * time.Second, logger: testLogger(t),
		peers: []Peer{{ID: "m1", RaftAddr: oldAddr}}}
	n, err := New(spec.config(t))
	if err != nil {
		t.Fatal(err)
	}
	mustLeader(t, n)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	moved := testutil.MustListen(t)
	spec.raftLn, spec.peers = moved, []Peer{{ID: "m1", RaftAddr: moved.Addr().String()}}
	_, err = New(spec.config(t))
	if err == nil {
		t.Fatal("New started on a data dir of a cluster at other addresses")
	}
	for _, want := range []string{"m1=" + oldAddr, "m1 is at " + oldAddr + ", not " + moved.Addr().String(), "--peers", "move the data dir away"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("the error is not one line: %q", err)
	}

	// The right --peers start it again (New closed the listener it
	// refused with, so listen again on the old address).
	again, err := net.Listen("tcp", oldAddr)
	if err != nil {
		t.Fatal(err)
	}
	spec.raftLn, spec.peers = again, []Peer{{ID: "m1", RaftAddr: oldAddr}}
	mustLeader(t, mustNode(t, spec.config(t)))
}
