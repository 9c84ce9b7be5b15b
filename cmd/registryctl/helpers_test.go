package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

const testWait = 10 * time.Second

// deadAddr is an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln := testutil.MustListen(t)
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// result is what one registryctl run printed and returned.
type result struct {
	out, err string
	code     int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
}

// ctl runs registryctl in-process.
func ctl(args ...string) result {
	var out, errb bytes.Buffer
	code := run(append([]string{"registryctl"}, args...), &out, &errb)
	return result{out: out.String(), err: errb.String(), code: code}
}

// ctlAsync runs registryctl in the background; the test may watch its
// output while it runs, and must receive its result.
func ctlAsync(args ...string) (*testutil.LockedBuffer, <-chan result) {
	out, errb := &testutil.LockedBuffer{}, &testutil.LockedBuffer{}
	done := make(chan result, 1)
	go func() {
		code := run(append([]string{"registryctl"}, args...), out, errb)
		done <- result{out: out.String(), err: errb.String(), code: code}
	}()
	return out, done
}

// testCluster is a real one-voter meta with fake data and session nodes
// that joined it through meta.Client heartbeats.
type testCluster struct {
	t       *testing.T
	meta    *meta.Node
	clients map[string]*metaclient.Client
	fakes   map[string]*fakeNode
}

// mustCluster starts a meta (edit adjusts its config) and joins the data
// nodes, in order (so the first leads every slot), and the sessions.
func mustCluster(t *testing.T, edit func(*meta.Config), data, sessions []string) *testCluster {
	t.Helper()
	cfg := meta.Config{
		NodeID:               "m1",
		RaftListener:         testutil.MustListen(t),
		RPCListener:          testutil.MustListen(t),
		DataDir:              t.TempDir(),
		Lease:                30 * time.Second,
		MaxMoves:             16,
		RaftHeartbeatTimeout: 100 * time.Millisecond,
		RaftElectionTimeout:  100 * time.Millisecond,
		Logger:               testutil.Quiet,
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := meta.New(cfg)
	if err != nil {
		t.Fatalf("meta.New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("meta close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if _, err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, meta: n, clients: map[string]*metaclient.Client{}, fakes: map[string]*fakeNode{}}
	for _, id := range data {
		c.join(proto.KindData, id, c.fake(id).addr)
	}
	for _, id := range sessions {
		c.join(proto.KindSession, id, c.fake(id).addr)
	}
	return c
}

func (c *testCluster) fake(id string) *fakeNode {
	f := startFake(c.t, id)
	c.fakes[id] = f
	return f
}

// join makes id a member with a heartbeat client, and waits until the
// first heartbeat was applied.
func (c *testCluster) join(kind, id, addr string) {
	c.t.Helper()
	c.joinAs(kind, id, addr, nil)
}

// joinAs is join with the heartbeat client's config adjusted by edit
// (its datacenter and zone).
func (c *testCluster) joinAs(kind, id, addr string, edit func(*metaclient.Config)) {
	c.t.Helper()
	cfg := metaclient.Config{
		Kind: kind, NodeID: id, Addr: addr, Metas: []string{c.meta.RPCAddr()},
		Interval: 50 * time.Millisecond, Logger: testutil.Quiet,
	}
	if edit != nil {
		edit(&cfg)
	}
	cl, err := metaclient.NewClient(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := cl.Refresh(ctx); err != nil {
		c.t.Fatalf("join %s: %v", id, err)
	}
	cl.Start()
	c.clients[id] = cl
}

// do sends one command to the meta leader and fails the test on an error.
func (c *testCluster) do(args ...any) any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for _, cl := range c.clients {
		v, err := cl.Do(ctx, args...)
		if err != nil {
			c.t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	c.t.Fatal("no client to send with")
	return nil
}

// handoffs plays the data side of every move until the test ends: the
// leader's client hands each moving slot over to its target.
func (c *testCluster) handoffs() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			tb := c.meta.Table()
			for _, s := range tb.Moving() {
				a := tb.Slots[s]
				if cl := c.clients[a.Leader]; cl != nil {
					_ = cl.Handoff(ctx, s, a.Target, a.LeaderEpoch)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	c.t.Cleanup(func() { cancel(); wg.Wait() })
}

// fakeNode is a RESP server that answers the admin commands a data node
// or a session answers, with what the test sets.
type fakeNode struct {
	id   string
	addr string
	srv  *redcon.Server

	mu      sync.Mutex
	calls   map[string]int        // commands served, by lower-cased name
	stats   *proto.DataStats      // DSTATS; nil: ERR
	xstats  []proto.XRemote       // DXSTATS; nil: ERR
	digests *proto.SessionDigests // SLOTREG DIGESTS; nil: ERR
	info    string                // INFO
	lookup  map[string][]any      // LOOKUP id -> [version, pairs]
	proxy   func(args [][]byte) any
}

func startFake(t *testing.T, id string) *fakeNode {
	t.Helper()
	ln := testutil.MustListen(t)
	f := &fakeNode{id: id, addr: ln.Addr().String(), lookup: map[string][]any{}, calls: map[string]int{}}
	f.srv = redcon.NewServerNetwork("tcp", f.addr, f.handle, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = f.srv.Close()
		<-done
	})
	return f
}

// served is how many times the fake received the command name.
func (f *fakeNode) served(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeNode) set(fn func(f *fakeNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeNode) handle(conn redcon.Conn, cmd redcon.Command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := strings.ToLower(string(cmd.Args[0]))
	f.calls[name]++
	if f.proxy != nil {
		writeAny(conn, f.proxy(cmd.Args))
		return
	}
	switch {
	case name == proto.CmdPing:
		conn.WriteString("PONG")
	case name == proto.CmdDStats && f.stats != nil:
		b, _ := json.Marshal(f.stats)
		conn.WriteBulk(b)
	case name == proto.CmdDXStats && f.xstats != nil:
		b, _ := json.Marshal(f.xstats)
		conn.WriteBulk(b)
	case name == proto.CmdSlotreg && len(cmd.Args) == 2 && strings.ToLower(string(cmd.Args[1])) == proto.SubDigests && f.digests != nil:
		b, _ := json.Marshal(f.digests)
		conn.WriteBulk(b)
	case name == proto.CmdInfo && f.info != "":
		conn.WriteBulkString(f.info)
	case name == proto.CmdLookup && len(cmd.Args) == 2:
		r, ok := f.lookup[string(cmd.Args[1])]
		if !ok {
			r = []any{int64(0), []any{}}
		}
		writeAny(conn, r)
	default:
		conn.WriteError(fmt.Sprintf("ERR unknown command '%s'", cmd.Args[0]))
	}
}

// writeAny writes a value as go-redis would have read it.
func writeAny(conn redcon.Conn, v any) {
	switch x := v.(type) {
	case nil:
		conn.WriteNull()
	case error:
		conn.WriteError(x.Error())
	case int64:
		conn.WriteInt64(x)
	case string:
		conn.WriteBulkString(x)
	case []any:
		conn.WriteArray(len(x))
		for _, e := range x {
			writeAny(conn, e)
		}
	default:
		conn.WriteError(fmt.Sprintf("ERR fake cannot write %T", v))
	}
}

// proxyTo forwards a command to addr and returns the reply (or the
// error reply) for writeAny.
func proxyTo(t *testing.T, addr string) func(args [][]byte) any {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	return func(args [][]byte) any {
		a := make([]any, len(args))
		for i, b := range args {
			a[i] = string(b)
		}
		v, err := rdb.Do(context.Background(), a...).Result()
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return errors.New(rerr.Error())
		}
		if err != nil {
			return fmt.Errorf("ERR proxy: %v", err)
		}
		return v
	}
}

// healthyStats is what data node id reports for table t when every copy
// agrees: each slot at seq 10+s with hash s+1, leaders with the digests
// the session fakes report (session s1 owning s%3 publishers of slot s).
func healthyStats(t *slot.Table, id string, sessions ...string) *proto.DataStats {
	ds := &proto.DataStats{Node: id}
	for s := range slot.Count {
		a := t.Slots[s]
		st := proto.SlotStats{Slot: s, LeaderEpoch: a.LeaderEpoch, Seq: uint64(10 + s), Publishers: s % 5, Datums: 1,
			Hash: uint64(s + 1), Ready: true}
		switch {
		case a.Leader == id:
			st.Role = proto.RoleLeader
			st.Sessions = map[string]proto.Digest{}
			for _, sid := range sessions {
				if d := sessionDigest(sid, s); d.Count > 0 {
					st.Sessions[sid] = d
				}
			}
		case t.Follows(id, s):
			st.Role = proto.RoleFollower
		default:
			continue
		}
		ds.Slots = append(ds.Slots, st)
	}
	return ds
}

func sessionDigest(session string, s int) proto.Digest {
	n := uint64(s % 3)
	return proto.Digest{Count: n, Sum: n * uint64(len(session)) * 1000003}
}

func healthyDigests(id string) *proto.SessionDigests {
	d := &proto.SessionDigests{Node: id, Slots: map[int]proto.Digest{}}
	for s := range slot.Count {
		if x := sessionDigest(id, s); x.Count > 0 {
			d.Slots[s] = x
		}
	}
	return d
}
