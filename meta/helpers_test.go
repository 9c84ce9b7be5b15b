package meta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

const (
	testRaftTimeout = 200 * time.Millisecond
	testWait        = 10 * time.Second
)

// testLogger collects a test's logs; they are printed only if it fails.
func testLogger(t *testing.T) *slog.Logger {
	log, _ := testutil.Logger(t)
	return log
}

// nodeSpec is what a test needs to start (and restart) a meta node.
type nodeSpec struct {
	id      string
	raftLn  net.Listener
	dir     string
	lease   time.Duration
	peers   []Peer
	logger  *slog.Logger
	replica int
}

func (s *nodeSpec) config(t *testing.T) Config {
	return Config{
		NodeID:               s.id,
		RaftListener:         s.raftLn,
		RPCListener:          testutil.MustListen(t),
		DataDir:              s.dir,
		Peers:                s.peers,
		Lease:                s.lease,
		Replicas:             s.replica,
		RaftHeartbeatTimeout: testRaftTimeout,
		RaftElectionTimeout:  testRaftTimeout,
		Logger:               s.logger,
	}
}

// mustNode starts a node and closes it when the test ends.
func mustNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", n.ID(), err)
		}
	})
	return n
}

// mustSingle starts a one-voter meta and waits until it leads.
func mustSingle(t *testing.T, lease time.Duration) *Node {
	t.Helper()
	return mustSingleWith(t, func(c *Config) { c.Lease = lease })
}

// mustSingleWith is mustSingle with a test's own settings: edit gets the
// config (logging to the test, Lease 30s) before the node starts.
func mustSingleWith(t *testing.T, edit func(*Config)) *Node {
	t.Helper()
	spec := &nodeSpec{id: "m1", raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: 30 * time.Second, logger: testLogger(t)}
	cfg := spec.config(t)
	edit(&cfg)
	n := mustNode(t, cfg)
	mustLeader(t, n)
	return n
}

// mustCluster starts voters meta nodes with the same Peers.
func mustCluster(t *testing.T, voters int, lease time.Duration) []*Node {
	t.Helper()
	log := testLogger(t)
	specs := make([]*nodeSpec, voters)
	var peers []Peer
	for i := range specs {
		specs[i] = &nodeSpec{id: fmt.Sprintf("m%d", i+1), raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: lease, logger: log}
		peers = append(peers, Peer{ID: specs[i].id, RaftAddr: specs[i].raftLn.Addr().String()})
	}
	nodes := make([]*Node, voters)
	for i, s := range specs {
		s.peers = peers
		nodes[i] = mustNode(t, s.config(t))
	}
	return nodes
}

func mustLeader(t *testing.T, n *Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	addr, err := n.WaitForLeader(ctx)
	if err != nil {
		t.Fatalf("WaitForLeader(%s): %v", n.ID(), err)
	}
	return addr
}

// leaderOf waits until exactly one of nodes leads and is ready, and
// returns it with the others.
func leaderOf(t *testing.T, nodes []*Node) (*Node, []*Node) {
	t.Helper()
	var leader *Node
	var followers []*Node
	waitFor(t, "one ready leader", func() (bool, string) {
		leader, followers = nil, nil
		for _, n := range nodes {
			if n.IsLeader() && n.ready.Load() {
				if leader != nil {
					return false, "two leaders"
				}
				leader = n
			} else {
				followers = append(followers, n)
			}
		}
		return leader != nil, fmt.Sprintf("leader %v", leader != nil)
	})
	return leader, followers
}

// waitFor polls cond until it holds or testWait passes; on timeout it
// reports what cond last saw.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.WaitFor(t, testWait, what, cond)
}

// tableLog records the tables a client delivered through OnTable.
type tableLog struct {
	mu     sync.Mutex
	tables []*slot.Table
}

func (l *tableLog) add(t *slot.Table) {
	l.mu.Lock()
	l.tables = append(l.tables, t)
	l.mu.Unlock()
}

func (l *tableLog) epochs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, t := range l.tables {
		out = append(out, t.Epoch)
	}
	return out
}

func (l *tableLog) last() *slot.Table {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tables) == 0 {
		return nil
	}
	return l.tables[len(l.tables)-1]
}

// mustClient makes a (not yet started) client that records its tables and
// is closed when the test ends.
func mustClient(t *testing.T, kind, id string, metas ...string) (*metaclient.Client, *tableLog) {
	t.Helper()
	tl := &tableLog{}
	c, err := metaclient.NewClient(metaclient.Config{
		Kind:     kind,
		NodeID:   id,
		Addr:     id + ".test:7000",
		Metas:    metas,
		Interval: 50 * time.Millisecond,
		OnTable:  tl.add,
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatalf("metaclient.NewClient(%s): %v", id, err)
	}
	t.Cleanup(c.Close)
	return c, tl
}

// newTestClient makes a (not yet started) client from cfg, filling Addr,
// Interval (50ms) and Logger when unset; it is closed when the test ends.
func newTestClient(t *testing.T, cfg metaclient.Config) *metaclient.Client {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = cfg.NodeID + ".test:7000"
	}
	if cfg.Interval == 0 {
		cfg.Interval = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := metaclient.NewClient(cfg)
	if err != nil {
		t.Fatalf("metaclient.NewClient(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(c.Close)
	return c
}

// sessionLog records the session lists a client delivered through
// OnSessions.
type sessionLog struct {
	mu     sync.Mutex
	epochs []uint64
	lists  [][]proto.Member
}

func (l *sessionLog) add(epoch uint64, m []proto.Member) {
	l.mu.Lock()
	l.epochs = append(l.epochs, epoch)
	l.lists = append(l.lists, m)
	l.mu.Unlock()
}

// last returns the latest list, its epoch and how many were delivered.
func (l *sessionLog) last() (uint64, []proto.Member, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lists) == 0 {
		return 0, nil, 0
	}
	return l.epochs[len(l.epochs)-1], l.lists[len(l.lists)-1], len(l.lists)
}

func (l *sessionLog) allEpochs() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.epochs)
}

// mustDo sends one command to the meta leader through c and fails the
// test on an error reply.
func mustDo(t *testing.T, c *metaclient.Client, args ...any) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	v, err := c.Do(ctx, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v
}

// leaderCounts is how many slots each node leads in tb.
func leaderCounts(tb *slot.Table) map[string]int {
	out := map[string]int{}
	for s := range slot.Count {
		if l := tb.Leader(s); l != "" {
			out[l]++
		}
	}
	return out
}

func memberIDs(ms []proto.Member) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func hasIDs(ms []proto.Member, ids ...string) bool {
	return slices.Equal(memberIDs(ms), ids)
}

// rawClient is a plain go-redis client for poking at the RPC endpoint.
func rawClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rdb := newRedis(addr, "", nil)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// respErr turns a go-redis reply error into a proto sentinel error.
func respErr(err error) error {
	var rerr redis.Error
	if err != nil && !errors.Is(err, redis.Nil) && errors.As(err, &rerr) {
		return proto.FromRESP(rerr.Error())
	}
	return err
}

// goroutineDump is every goroutine's stack, for leak reports.
func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// newRedis is a RESP2 client for one meta RPC endpoint with short
// timeouts and no retries, as the nodes' own clients are.
func newRedis(addr, secret string, tlsCfg *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Password: secret, TLSConfig: tlsCfg, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: time.Second,
		ContextTimeoutEnabled: true, MaxRetries: -1, PoolSize: 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}
