package dataserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/respguard"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Config is a data node's configuration.
type Config struct {
	NodeID    string
	Listener  net.Listener // optional: an open listener (tests use 127.0.0.1:0)
	Addr      string       // listened on when Listener is nil
	Advertise string       // the address sessions dial; default the listener's
	Metas     []string     // meta RPC addresses
	// Heartbeat is how often the node renews its lease with meta.
	Heartbeat time.Duration
	// OpLogSize bounds each slot's op-log.
	OpLogSize int
	// SweepInterval is how often TTL publishers are checked for expiry.
	SweepInterval time.Duration
	// ReconcileTimeout bounds how long a new leader waits for the live
	// sessions to reconcile a slot before it serves it anyway.
	ReconcileTimeout time.Duration
	// SessionGrace is how long a session node may be missing from meta's
	// session list before this node drops its connection-bound
	// publishers; a session that is back in the list by then keeps them.
	// A live session evicted by mistake (meta was cut off, or its new
	// leader was not found in time) joins again within a few heartbeats,
	// so its subscribers never see its publishers go; and one that still
	// sends DALIVE here (cut off from meta alone) keeps them however long
	// it stays out of the list. Default 3 s.
	SessionGrace time.Duration
	// ReplicaAckTimeout bounds how long a write to a TTL publisher waits
	// for a follower to have it before it is acknowledged anyway.
	ReplicaAckTimeout time.Duration
	// MaxMessageSize bounds one inter-node request, in bytes; a peer
	// announcing more is disconnected before it sends the bytes.
	MaxMessageSize int64
	// Secret is the cluster secret: every connection to this node must
	// AUTH with it first, and the node sends it to meta and to the slot
	// leaders it pulls from. Empty: no authentication.
	Secret netsec.Secret
	// ServerTLS, when set, serves the inter-node listener over TLS.
	ServerTLS *tls.Config
	// PeerTLS, when set, dials meta and the other data nodes over TLS.
	PeerTLS *tls.Config
	Logger  *slog.Logger
	// Datacenter is the cluster's datacenter (default "dc1"); local
	// publishers are of it. Meta refuses a node of another one.
	Datacenter string
	// RemoteExpire drops a remote datacenter's publishers from a slot
	// whose leader there went unheard for this long; 0 keeps them until
	// it is back (the default, as SOFARegistry does).
	RemoteExpire time.Duration
}

// LimitMessageSize names the inter-node message size limit, as its flag
// and errors spell it; DefaultMaxMessageSize is its default.
const (
	LimitMessageSize      = "max-message-size"
	DefaultMaxMessageSize = 256 << 20
)

// Validate says which field is wrong.
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("dataserver: NodeID is empty")
	}
	if c.Listener == nil && c.Addr == "" {
		return errors.New("dataserver: neither Listener nor Addr is set")
	}
	if len(c.Metas) == 0 {
		return errors.New("dataserver: Metas is empty")
	}
	if c.OpLogSize < 0 {
		return fmt.Errorf("dataserver: OpLogSize %d is negative", c.OpLogSize)
	}
	if c.MaxMessageSize < 1<<20 {
		return fmt.Errorf("dataserver: MaxMessageSize %d is under 1 MiB", c.MaxMessageSize)
	}
	if err := c.Secret.Validate(); err != nil {
		return fmt.Errorf("dataserver: Secret: %w", err)
	}
	if err := proto.CheckPlace("datacenter", c.Datacenter, false); err != nil {
		return fmt.Errorf("dataserver: %w", err)
	}
	if c.RemoteExpire < 0 {
		return fmt.Errorf("dataserver: RemoteExpire %v is negative", c.RemoteExpire)
	}
	if err := netsec.CheckServerTLS(c.ServerTLS); err != nil {
		return fmt.Errorf("dataserver: %w", err)
	}
	return nil
}

// DefaultOpLogSize is the op-log entries kept per slot. At 1M publishers
// 4,096 cost 48 B a publisher per copy once every slot's ring was full; a
// follower lags by milliseconds, and one that falls further behind than
// the log gets a snapshot of the slot instead.
const DefaultOpLogSize = 1024

func (c *Config) setDefaults() {
	c.Heartbeat = cmp.Or(c.Heartbeat, 500*time.Millisecond)
	c.OpLogSize = cmp.Or(c.OpLogSize, DefaultOpLogSize)
	c.MaxMessageSize = cmp.Or(c.MaxMessageSize, DefaultMaxMessageSize)
	c.SweepInterval = cmp.Or(c.SweepInterval, 200*time.Millisecond)
	c.ReconcileTimeout = cmp.Or(c.ReconcileTimeout, 3*time.Second)
	c.SessionGrace = cmp.Or(c.SessionGrace, 3*time.Second)
	c.ReplicaAckTimeout = cmp.Or(c.ReplicaAckTimeout, time.Second)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Datacenter = cmp.Or(c.Datacenter, proto.DefaultDatacenter)
}

// Node is a running data node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	ln    net.Listener
	gate  *netsec.Gate // the cluster secret's check, before every handler
	addr  string
	meta  *metaclient.Client
	table atomic.Pointer[slot.Table]
	slots [slot.Count]*slotUnit // every slot, held or not

	tableMu sync.Mutex // serialises onTable
	repl    *replicator
	xdc     *xdc                  // cross-datacenter sync (xdc.go)
	handing atomic.Pointer[[]int] // slots this node leads that have a Target

	appendMu sync.Mutex
	appendCh chan struct{} // closed when any led slot appends to its log

	// persistKick hands persistLoop slots to sync (persist.go), which
	// asks meta through persistRPC: connections of its own, so a slow
	// answer never holds up a heartbeat.
	persistKick chan []int
	persistRPC  *metaclient.Leader

	sessMu   sync.Mutex
	sessions map[string]struct{} // live session nodes, nil before meta said
	// departing holds the sessions gone from meta's list whose publishers
	// this node keeps for SessionGrace (see onSessions), with when each
	// went; under sessMu.
	departing map[string]time.Time
	// heard is when each session last sent DALIVE here; recheck is set
	// while a later look at departing sessions is scheduled. Under sessMu.
	heard   map[string]time.Time
	recheck bool
	// dropped holds the sessions whose publishers this node dropped, and
	// when, until they DALIVE RESET: their writes and syncs are refused
	// with ErrDropped meanwhile. Under sessMu.
	dropped map[string]time.Time

	pulls   atomic.Uint64 // pull round trips done as a follower
	repairs atomic.Uint64 // publishers repaired by reconciliation
	// handoffs counts slots handed off; ops counts ops applied as the
	// leader, by opKinds.
	handoffs atomic.Uint64
	// fences counts write batches and syncs refused because the node's
	// lease with meta was over (see fenced).
	fences atomic.Uint64
	// stale counts ops and syncs refused as older than what a session
	// sent since (see slotUnit.stale).
	stale atomic.Uint64
	ops   [len(opKinds)]atomic.Uint64
	// batches counts write batches by how they came: [0] over the port,
	// [1] by calls from a session in this process.
	batches [2]atomic.Uint64
	metrics *prometheus.Registry // the node's own: several nodes may share a process

	mu      sync.Mutex
	streams map[*stream]struct{}
	conns   sync.WaitGroup
	closing atomic.Bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New starts a data node: it listens, joins meta by heartbeat and serves
// the slots the table gives it.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := netsec.ListenOn(cfg.Listener, cfg.Addr, cfg.ServerTLS)
	if err != nil {
		return nil, fmt.Errorf("dataserver %s: %w", cfg.NodeID, err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.NodeID, "role", proto.KindData, "dc", cfg.Datacenter),
		ln:       ln,
		addr:     cfg.Advertise,
		streams:  make(map[*stream]struct{}),
		stop:     make(chan struct{}),
		appendCh: make(chan struct{}),

		persistKick: make(chan []int, 16),
	}
	n.ln = respguard.Listen(n.ln, LimitMessageSize, cfg.MaxMessageSize, func(c net.Conn, e *respguard.LimitError) {
		n.log.Warn("peer disconnected: request over a limit", "remote", c.RemoteAddr().String(), "limit", e.Limit, "bytes", e.Got)
	})
	n.gate = netsec.NewGate(cfg.Secret, n.log)
	n.repl = newReplicator(n)
	n.xdc = newXDC(n)
	n.metrics = n.newMetrics()
	if n.addr == "" {
		n.addr = ln.Addr().String()
	}
	for s := range n.slots {
		n.slots[s] = newSlotUnit(s, cfg.OpLogSize, n.log)
		n.slots[s].staleCount = &n.stale
		n.slots[s].dc = cfg.Datacenter
	}
	mc, err := metaclient.NewClient(metaclient.Config{
		Kind: proto.KindData, NodeID: cfg.NodeID, Addr: n.addr, Metas: cfg.Metas, Datacenter: cfg.Datacenter,
		Interval: cfg.Heartbeat, OnTable: n.onTable, OnSessions: n.onSessions,
		Progress: n.progress, Secret: cfg.Secret.Current, TLS: cfg.PeerTLS, Logger: cfg.Logger,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("dataserver %s: %w", cfg.NodeID, err)
	}
	n.meta = mc
	n.persistRPC = metaclient.NewLeader(metaclient.LeaderOptions{Metas: cfg.Metas, Secret: cfg.Secret.Current,
		TLS: cfg.PeerTLS, ReadTimeout: 2 * time.Second, PoolSize: 1})
	n.wg.Add(5)
	go n.handoffLoop()
	go n.persistLoop()
	go n.xdc.loop()
	go func() {
		defer n.wg.Done()
		err := redcon.Serve(n.ln, n.handle, func(redcon.Conn) bool {
			if n.closing.Load() {
				return false
			}
			n.conns.Add(1)
			return true
		}, func(redcon.Conn, error) { n.conns.Done() })
		if err != nil && !n.closing.Load() {
			n.log.Error("serve", "err", err)
		}
	}()
	go n.sweep()
	mc.Start()
	return n, nil
}

// Addr is the address sessions dial.
func (n *Node) Addr() string { return n.addr }

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Table is the latest table this node has, nil before the first.
func (n *Node) Table() *slot.Table { return n.table.Load() }

// Close leaves meta, stops serving and returns once every goroutine the
// node started has ended.
func (n *Node) Close() error {
	if n.closing.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = n.meta.Leave(ctx)
	cancel()
	n.meta.Close()
	n.persistRPC.Close() // a sync under way ends with ErrClosed
	close(n.stop)
	n.repl.close()
	err := n.ln.Close()
	n.mu.Lock()
	for s := range n.streams {
		s.close()
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.conns.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// ownerError names the slot's owner as this node's table knows it.
func (n *Node) ownerError(s int) error {
	t := n.table.Load()
	if t == nil {
		return proto.Errorf(proto.ErrUnavailable, "data node %s has no slot table yet", n.cfg.NodeID)
	}
	owner := t.Leader(s)
	addr, _ := t.Addr(owner)
	return &proto.NotOwnerError{Slot: s, Owner: owner, Addr: addr, Epoch: t.Epoch}
}

// catchUp refreshes the table from meta when a sender routed by a newer
// epoch than this node has, so a fresh owner does not refuse its slots.
func (n *Node) catchUp(epoch uint64) {
	t := n.table.Load()
	if t != nil && t.Epoch >= epoch {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := n.meta.Refresh(ctx); err != nil {
		n.log.Warn("table refresh failed", "want_epoch", epoch, "err", err)
	}
}

// handleWrite answers a DWRITE batch: one result or error per op.
func (n *Node) handleWrite(conn redcon.Conn, w *proto.DWrite) {
	n.batches[0].Add(1)
	results, refused := n.applyWrite(w)
	conn.WriteArray(len(results))
	for i, r := range results {
		if refused != nil && refused[i] != nil {
			conn.WriteError(proto.ToRESP(refused[i]))
		} else {
			conn.WriteUint64(r)
		}
	}
}

// applyWrite applies a write batch, each op on the slot it hashes to:
// op i's answer is results[i], unless refused is non-nil and refused[i]
// is not.
func (n *Node) applyWrite(w *proto.DWrite) (results []uint64, refused []error) {
	n.catchUp(w.Epoch)
	// Results are versions (or 1 and 0), refusals the rare case: kept
	// apart, a result costs no allocation to box it.
	results = make([]uint64, len(w.Ops))
	if err := n.fenced(); err != nil {
		return results, refuseAll(len(w.Ops), err)
	}
	if err := n.droppedErr(w.SessionID); err != nil {
		// The session's clients still think they are published, and
		// would go on writing as if nothing had happened.
		return results, refuseAll(len(w.Ops), err)
	}
	now := time.Now().UnixNano()
	// Writes to TTL publishers are acknowledged once a follower has them.
	var durable map[*slotUnit]uint64
	appended := false
	for i := range w.Ops {
		op := &w.Ops[i]
		s := slot.Of(op.DataInfoID)
		u := n.slots[s]
		res, target, err := u.write(w.SessionID, w.Stamp, op, now)
		if err != nil {
			if refused == nil {
				refused = make([]error, len(w.Ops))
			}
			refused[i] = n.refused(s, target, err)
			continue
		}
		n.countOp(op.Type)
		if res.durable != 0 {
			if durable == nil {
				durable = make(map[*slotUnit]uint64)
			}
			durable[u] = res.durable
		}
		results[i] = res.result
		appended = appended || res.changed
	}
	if appended || durable != nil {
		n.signalAppend()
	}
	if durable != nil {
		n.awaitReplicas(durable)
	}
	if err := n.fenced(); err != nil {
		// The lease lapsed while the batch was applied (a pause, a stall):
		// meta may have a new leader for these slots that will never see
		// them. The session sends them again, to whoever leads.
		return results, refuseAll(len(w.Ops), err)
	}
	return results, refused
}

// fenceMargin is how much of its lease a data node keeps in hand: it
// stops acknowledging writes that long before the lease may lapse, for
// the time between its check and the reply leaving.
const fenceMargin = 100 * time.Millisecond

// fenced refuses writes as a slot leader once this node's lease with meta
// may lapse (less than fenceMargin of it left, counted from when the last
// heartbeat meta answered was sent): meta may then evict it and promote
// its followers, and a write it acknowledged would be missing from the
// new leaders. A paused process finds this on waking, before it answers
// what queued up meanwhile. Writes come back with the next heartbeat meta
// answers; before meta has said its lease, nothing is fenced.
func (n *Node) fenced() error {
	left, ok := n.meta.LeaseLeft()
	if !ok || left >= fenceMargin {
		return nil
	}
	n.fences.Add(1)
	return proto.Errorf(proto.ErrUnavailable, "data node %s: its lease with meta is over or nearly (%v left); no writes until meta answers a heartbeat",
		n.cfg.NodeID, left.Round(time.Millisecond))
}

// refuseAll is every op of a batch of ops refused with err.
func refuseAll(ops int, err error) []error {
	errs := make([]error, ops)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// refusal is the error for a write or sync to slot s that its unit
// refused: NOTOWNER naming the handoff target when it has one, else the
// owner by this node's table.
// refused is the reply for a unit's refusal err of slot s: NOTOWNER
// (naming target, or the table's owner) where the node does not lead it,
// else err as it is.
func (n *Node) refused(s int, target string, err error) error {
	if errors.Is(err, errNotLeading) {
		return n.refusal(s, target)
	}
	return err
}

func (n *Node) refusal(s int, target string) error {
	if target == "" {
		return n.ownerError(s)
	}
	t := n.table.Load()
	addr, _ := t.Addr(target)
	return &proto.NotOwnerError{Slot: s, Owner: target, Addr: addr, Epoch: t.Epoch}
}

// awaitReplicas waits until a follower of each slot has applied the given
// seq, or ReplicaAckTimeout passes (a follower that is down must not stop
// writes; the lease will replace it).
func (n *Node) awaitReplicas(want map[*slotUnit]uint64) {
	deadline := time.NewTimer(n.cfg.ReplicaAckTimeout)
	defer deadline.Stop()
	t := n.table.Load()
	for u, seq := range want {
		for {
			done, ch := u.replicated(seq, t.Slots[u.id].Followers)
			if done {
				break
			}
			select {
			case <-ch:
				continue
			case <-deadline.C:
				n.log.Warn("no follower acknowledged a TTL write in time", "slot", u.id, "seq", seq)
				return
			case <-n.stop:
				return
			}
		}
	}
}

func (n *Node) handleLookup(conn redcon.Conn, l *proto.DLookup) {
	n.catchUp(l.Epoch)
	d, err := n.snapshot(l.DataInfoID)
	if err != nil {
		conn.WriteError(proto.ToRESP(err))
		return
	}
	conn.WriteBulk(d.AppendBinary(nil))
}

// handleChildren answers DCHILDREN: the slots this node answers for and
// the children of the path in them, sorted.
func (n *Node) handleChildren(conn redcon.Conn, c *proto.DChildren) {
	n.catchUp(c.Epoch)
	var served proto.SlotSet
	names := make(map[string]struct{})
	add := func(name string) { names[name] = struct{}{} }
	for s, u := range n.slots {
		if u.children(c.Path, add) {
			served.Add(s)
		}
	}
	sorted := slices.Sorted(maps.Keys(names))
	conn.WriteArray(1 + len(sorted))
	conn.WriteBulk(served[:])
	for _, name := range sorted {
		conn.WriteBulkString(name)
	}
}

// snapshot reads a datum from the unit of its slot, or says who owns it.
func (n *Node) snapshot(id string) (*proto.Datum, error) {
	s := slot.Of(id)
	d, leading, ready := n.slots[s].read(id)
	if !leading {
		return nil, n.ownerError(s)
	}
	if !ready {
		return nil, proto.Errorf(proto.ErrUnavailable, "slot %d is reconciling with the sessions after a leader change", s)
	}
	return d, nil
}

// sweep expires TTL publishers on the slots this node leads.
func (n *Node) sweep() {
	defer n.wg.Done()
	tick := time.NewTicker(n.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		for _, u := range n.slots {
			if u.expire(now) {
				n.signalAppend()
			}
		}
	}
}

// Stats counts what the node holds, for INFO and metrics.
type Stats struct {
	SlotsLed      int
	SlotsFollowed int
	Datums        int // in led slots
	Publishers    int // in led slots
	Replicas      int // publishers held as a follower
	Pulls         uint64
	Repairs       uint64
	// DepartingSessions are sessions gone from meta's list whose
	// publishers are kept for the session grace.
	DepartingSessions int
	// PortBatches and CallBatches count write batches taken over the
	// port and by calls from a session in this process.
	PortBatches, CallBatches uint64
}

// Stats reads the counters of every led slot.
func (n *Node) Stats() Stats {
	var st Stats
	for _, u := range n.slots {
		c := u.counts(nil)
		switch {
		case !c.held:
		case c.leading:
			st.SlotsLed++
			st.Datums += c.datums
			st.Publishers += c.publishers
		default:
			st.SlotsFollowed++
			st.Replicas += c.publishers
		}
	}
	st.Pulls, st.Repairs = n.pulls.Load(), n.repairs.Load()
	st.PortBatches, st.CallBatches = n.batches[0].Load(), n.batches[1].Load()
	n.sessMu.Lock()
	st.DepartingSessions = len(n.departing)
	n.sessMu.Unlock()
	return st
}

// progress reports, for meta, the op-log position of every slot this node
// follows, so a failover promotes the most caught-up follower.
func (n *Node) progress() map[int]uint64 {
	out := make(map[int]uint64)
	for s, u := range n.slots {
		if epoch, seq, ok := u.position(); ok && epoch != 0 {
			out[s] = seq
		}
	}
	return out
}
