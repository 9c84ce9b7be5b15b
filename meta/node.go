package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"
	"go.etcd.io/bbolt"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// applyTimeout bounds how long a proposal may wait to enter the Raft
// pipeline; commit itself ends when the entry commits or leadership is lost.
const applyTimeout = 5 * time.Second

// Node is one meta voter: its Raft instance, its FSM, its RESP endpoint
// and, while it leads, the lease checker.
type Node struct {
	cfg           Config
	log           *slog.Logger
	advertiseRaft string
	advertiseRPC  string

	store     *store
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	stream    *streamLayer
	transport *raft.NetworkTransport

	rpcLn    net.Listener
	rpcSrv   *redcon.Server
	rpcDone  chan struct{}          // closed when the accept loop has returned
	rpcConns sync.WaitGroup         // one per open RPC connection
	rpc      map[string]*rpcCommand // meta's RPC table, by lower-cased name
	// gate refuses every RPC command until the connection has sent AUTH
	// with the cluster secret (when there is one).
	gate *netsec.Gate

	leases *leases
	// zones holds each session's zone as its heartbeats say, on the
	// leader (a new one learns them within a heartbeat).
	zones sync.Map
	// evictionsHeld counts lease checks that held back a mass eviction
	// (see leases.holdMass); lastHeldLog rate-limits their log line and is
	// the lease loop's alone.
	evictionsHeld atomic.Uint64
	lastHeldLog   time.Time
	// probes dials suspected data nodes, and evictionsRefused counts
	// those evicted because they refused it (see suspect.go).
	probes           prober
	evictionsRefused atomic.Uint64
	// moveRun logs slot moves as runs (leader only).
	moveRun moveRun
	// progress is what data nodes last reported they have applied per
	// slot they follow (leader only); it picks whom to promote.
	progress *progressBook
	// ready is set once this node, as leader, has caught its FSM up with
	// the log and granted leases; until then it answers UNAVAILABLE so it
	// never evicts or judges joins against a stale membership.
	ready atomic.Bool
	// tableJSON caches the encoding of the current table for heartbeat
	// replies.
	tableJSON atomic.Pointer[encodedTable]
	// sessionsJSON caches the session list of the current MembersEpoch
	// for heartbeat replies.
	sessionsJSON atomic.Pointer[encodedSessions]
	// metrics is the node's own registry (several nodes may share a
	// process, so never the global one).
	metrics *prometheus.Registry

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // background goroutines
	closeOnce sync.Once
	closeErr  error
}

type encodedTable struct {
	t *slot.Table
	b []byte
}

type encodedSessions struct {
	epoch uint64
	b     []byte
}

// New opens (or creates) the node's Raft state in cfg.DataDir, bootstraps
// the group with cfg.Peers when the log is empty, and starts the RESP
// endpoint and the leader duties. The node owns the listeners in cfg from
// here on, also when New fails.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		closeListeners(cfg.RaftListener, cfg.RPCListener)
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger.With("meta", cfg.NodeID, "dc", cfg.Datacenter), store: newStore(), leases: newLeases(),
		progress: newProgressBook(), rpcDone: make(chan struct{})}

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	raftLn, rpcLn := cfg.RaftListener, cfg.RPCListener
	cleanup = append(cleanup, func() { closeListeners(raftLn, rpcLn) })
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return nil, fmt.Errorf("meta %s: listen for raft on %s: %w", cfg.NodeID, cfg.RaftAddr, err)
		}
	}
	if rpcLn == nil {
		if rpcLn, err = net.Listen("tcp", cfg.RPCAddr); err != nil {
			return nil, fmt.Errorf("meta %s: listen for rpc on %s: %w", cfg.NodeID, cfg.RPCAddr, err)
		}
	}
	n.rpcLn = netsec.Listen(rpcLn, cfg.ServerTLS)
	n.gate = netsec.NewGate(cfg.Secret, n.log)
	n.advertiseRaft = cfg.AdvertiseRaft
	for _, p := range cfg.Peers {
		if p.ID == cfg.NodeID && n.advertiseRaft == "" {
			n.advertiseRaft = p.RaftAddr
		}
	}
	if n.advertiseRaft == "" {
		n.advertiseRaft = raftLn.Addr().String()
	}
	n.advertiseRPC = cfg.AdvertiseRPC
	if n.advertiseRPC == "" {
		n.advertiseRPC = rpcLn.Addr().String()
	}

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("meta %s: create data dir: %w", cfg.NodeID, err)
	}
	hlog := newRaftLogger(cfg.Logger)
	n.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(cfg.DataDir, "raft.db"),
		// Without a timeout a second process on the same DataDir would
		// wait for the file lock forever.
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("meta %s: open raft log in %s: %w", cfg.NodeID, cfg.DataDir, err)
	}
	cleanup = append(cleanup, func() { _ = n.logStore.Close() })
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		return nil, fmt.Errorf("meta %s: open snapshot store in %s: %w", cfg.NodeID, cfg.DataDir, err)
	}

	n.stream = newStreamLayer(raftLn, n.advertiseRaft, cfg.Secret, cfg.ServerTLS, cfg.PeerTLS, n.log)
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  n.stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hlog,
	})
	cleanup = append(cleanup, func() { _ = n.transport.Close(); _ = n.stream.Close() })

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.RaftHeartbeatTimeout
	rc.ElectionTimeout = cfg.RaftElectionTimeout
	rc.LeaderLeaseTimeout = cfg.RaftHeartbeatTimeout / 2
	rc.CommitTimeout = min(rc.CommitTimeout, cfg.RaftHeartbeatTimeout/4)
	rc.Logger = hlog
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("meta %s: raft config: %w", cfg.NodeID, err)
	}
	existing, err := raft.HasExistingState(n.logStore, n.logStore, snaps)
	if err != nil {
		return nil, fmt.Errorf("meta %s: read raft state in %s: %w", cfg.NodeID, cfg.DataDir, err)
	}
	n.raft, err = raft.NewRaft(rc, &fsm{s: n.store}, n.logStore, n.logStore, snaps, n.transport)
	if err != nil {
		return nil, fmt.Errorf("meta %s: start raft: %w", cfg.NodeID, err)
	}
	cleanup = append(cleanup, func() { _ = n.raft.Shutdown().Error() })
	if existing {
		if err := n.checkStoredPeers(); err != nil {
			return nil, err
		}
	}
	if err := n.bootstrap(); err != nil {
		return nil, err
	}

	n.metrics = n.newMetrics()
	if n.rpc, err = n.newRPCTable(); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.startRPC()
	n.wg.Add(5)
	go n.leaderLoop()
	go n.leaseLoop()
	go n.registerLoop()
	go n.moveLoop()
	go n.lockLoop()
	n.log.Info("meta node started", "raft", n.advertiseRaft, "rpc", n.advertiseRPC,
		"voters", max(len(cfg.Peers), 1), "dir", cfg.DataDir)
	return n, nil
}

func closeListeners(lns ...net.Listener) {
	for _, ln := range lns {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// checkStoredPeers refuses to start on a data dir whose stored Raft
// configuration names a voter of --peers at another address: the dir
// belongs to a cluster on other addresses (a cluster started again on
// other ports, say), and this node would ask for votes at addresses
// where nobody answers, never saying why. Voters joined or removed since
// the bootstrap (METAJOIN, METAREMOVE) are no mismatch; a single voter
// without --peers listens where it is told and is not checked.
func (n *Node) checkStoredPeers() error {
	if len(n.cfg.Peers) == 0 {
		return nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("meta %s: read the stored raft configuration: %w", n.cfg.NodeID, err)
	}
	stored := make(map[string]string)
	var names []string
	for _, s := range f.Configuration().Servers {
		stored[string(s.ID)] = string(s.Address)
		names = append(names, fmt.Sprintf("%s=%s", s.ID, s.Address))
	}
	var differ []string
	for _, p := range n.cfg.Peers {
		if addr, ok := stored[p.ID]; ok && addr != p.RaftAddr {
			differ = append(differ, fmt.Sprintf("%s is at %s, not %s", p.ID, addr, p.RaftAddr))
		}
	}
	if len(differ) == 0 {
		return nil
	}
	return fmt.Errorf("meta %s: %s holds a cluster whose voters are %s, but --peers says %s: "+
		"start with that cluster's --peers, or move the data dir away to start a new cluster (what it holds is lost)",
		n.cfg.NodeID, n.cfg.DataDir, strings.Join(names, ","), strings.Join(differ, "; "))
}

// bootstrap writes the initial configuration when the log is empty. Every
// voter bootstraps with the same Peers, which raft allows; on restart raft
// refuses with ErrCantBootstrap, which is expected.
func (n *Node) bootstrap() error {
	servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.NodeID), Address: raft.ServerAddress(n.advertiseRaft)}}
	if len(n.cfg.Peers) > 0 {
		servers = servers[:0]
		for _, p := range n.cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("meta %s: bootstrap raft with %d voters: %w", n.cfg.NodeID, len(servers), err)
	}
	return nil
}

// Close stops the node: Raft, the RESP endpoint and every goroutine the
// node started, returning only when they have ended. It may be called more
// than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		var errs []error
		// Raft first: its shutdown fails every pending apply, which
		// unblocks RPC handlers and the leader duties waiting on one.
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
		n.wg.Wait()
		_ = n.rpcSrv.Close()
		_ = n.rpcLn.Close()
		<-n.rpcDone
		n.rpcConns.Wait()
		n.transport.CloseStreams()
		if err := n.stream.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("raft listener: %w", err))
		}
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("raft log: %w", err))
		}
		n.closeErr = errors.Join(errs...)
		if n.closeErr != nil {
			n.closeErr = fmt.Errorf("meta %s: close: %w", n.cfg.NodeID, n.closeErr)
		}
		n.log.Info("meta node stopped")
	})
	return n.closeErr
}

// ID returns the node's Raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr returns the address other voters reach this node's Raft on.
func (n *Node) RaftAddr() string { return n.advertiseRaft }

// RPCAddr returns the address of this node's RESP endpoint.
func (n *Node) RPCAddr() string { return n.advertiseRPC }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitForLeader blocks until a leader exists that can serve heartbeats
// and this node knows its RPC address, and returns that address; on the
// leader itself, until it has finished taking over (see ready).
func (n *Node) WaitForLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if n.IsLeader() {
			if n.ready.Load() {
				return n.advertiseRPC, nil
			}
		} else if addr := n.leaderRPCAddr(); addr != "" {
			return addr, nil
		}
		select {
		case <-ctx.Done():
			_, id := n.raft.LeaderWithID()
			return "", fmt.Errorf("meta %s: wait for leader (raft state %s, leader %q): %w",
				n.cfg.NodeID, n.raft.State(), id, ctx.Err())
		case <-n.ctx.Done():
			return "", fmt.Errorf("meta %s: wait for leader: %w", n.cfg.NodeID, proto.Errorf(proto.ErrUnavailable, "node closed"))
		case <-t.C:
		}
	}
}

// leaderRPCAddr is the leader's RPC address as this node knows it, "" if
// there is no leader or its address is not recorded yet.
func (n *Node) leaderRPCAddr() string {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return ""
	}
	if string(id) == n.cfg.NodeID {
		return n.advertiseRPC
	}
	return n.store.state().Metas[string(id)]
}

// Table returns a copy of the FSM's current table; before the group has
// initialized it, an empty table (epoch 0) for the configured replicas.
func (n *Node) Table() *slot.Table {
	if t := n.store.state().Table; t != nil {
		return t.Clone()
	}
	return slot.NewTable(n.cfg.Replicas)
}

// Members returns a copy of the FSM membership. On the leader, data and
// session members carry the time since their last heartbeat.
func (n *Node) Members() proto.Members {
	m := n.store.state().membersCopy()
	for _, list := range [][]proto.Member{m.Data, m.Sessions, m.Metas} {
		for i := range list {
			list[i].Datacenter = n.cfg.Datacenter
			if z, ok := n.zones.Load(list[i].ID); ok && list[i].Kind == proto.KindSession {
				list[i].Zone = z.(string)
			}
		}
	}
	if !n.IsLeader() || !n.ready.Load() {
		return m
	}
	now := time.Now()
	for _, list := range [][]proto.Member{m.Data, m.Sessions} {
		for i := range list {
			if t, ok := n.leases.get(list[i].Kind, list[i].ID); ok {
				list[i].LastSeenMs = now.Sub(t).Milliseconds()
			}
		}
	}
	return m
}

// encodeTable returns the JSON of t, cached per table (published tables
// are immutable, so pointer identity is enough).
func (n *Node) encodeTable(t *slot.Table) ([]byte, error) {
	if c := n.tableJSON.Load(); c != nil && c.t == t {
		return c.b, nil
	}
	b, err := t.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode table epoch %d: %w", t.Epoch, err)
	}
	n.tableJSON.Store(&encodedTable{t: t, b: b})
	return b, nil
}

// encodeSessions returns the JSON list of st's session nodes, cached per
// MembersEpoch: within one group an epoch names one session list, because
// every change to the list raises it.
func (n *Node) encodeSessions(st *state) ([]byte, error) {
	if c := n.sessionsJSON.Load(); c != nil && c.epoch == st.MembersEpoch {
		return c.b, nil
	}
	b, err := json.Marshal(st.sessionList())
	if err != nil {
		return nil, fmt.Errorf("encode sessions of members epoch %d: %w", st.MembersEpoch, err)
	}
	n.sessionsJSON.Store(&encodedSessions{epoch: st.MembersEpoch, b: b})
	return b, nil
}

// propose appends c to the Raft log and waits for it to be applied,
// translating Raft's errors into proto sentinels: NOTLEADER naming the
// leader, UNAVAILABLE while shutting down, TIMEOUT when the pipeline is
// full.
func (n *Node) propose(c *command) (result, error) {
	b, err := encodeCommand(c)
	if err != nil {
		return result{}, err
	}
	f := n.raft.Apply(b, applyTimeout)
	if err := f.Error(); err != nil {
		return result{}, n.raftError(c, err)
	}
	res, ok := f.Response().(result)
	if !ok {
		return result{}, fmt.Errorf("%s %s: unexpected apply response %T", c.Type, c.ID, f.Response())
	}
	return res, nil
}

func (n *Node) raftError(c *command, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return proto.NotLeader(n.leaderRPCAddr())
	case errors.Is(err, raft.ErrRaftShutdown):
		return proto.Errorf(proto.ErrUnavailable, "meta %s is shutting down", n.cfg.NodeID)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return proto.Errorf(proto.ErrTimeout, "meta %s: %s %s: raft pipeline full", n.cfg.NodeID, c.Type, c.ID)
	}
	return proto.Errorf(proto.ErrUnavailable, "meta %s: %s %s: %v", n.cfg.NodeID, c.Type, c.ID, err)
}
