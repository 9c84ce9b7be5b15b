package sessionserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/respguard"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Config is a session node's configuration.
type Config struct {
	NodeID    string
	Listener  net.Listener // optional: an open client listener
	Addr      string       // listened on when Listener is nil
	Advertise string       // the client address meta records; default the listener's
	Metas     []string     // meta RPC addresses
	// Heartbeat is how often the node renews its lease with meta.
	Heartbeat time.Duration
	// WriteTimeout bounds how long a REGISTER/UNREGISTER/RENEW (and a
	// LOOKUP) waits for the slot leader, retries included. 0: meta's
	// lease + 1 s less replyMargin (3.9 s before meta has said it), long
	// enough to outlast the failover of a hung leader and short enough
	// that no client waits in silence longer than lease + 1 s (issue 14).
	WriteTimeout time.Duration
	// MaxBatch bounds the ops sent to one data node in one request.
	MaxBatch int
	// ReconcileInterval is how often every slot's digest is checked with
	// its leader, as a backstop.
	ReconcileInterval time.Duration
	// Limits bound what one client can make the session hold; zero
	// fields take their defaults.
	Limits Limits
	// Auth, when set, makes clients AUTH before anything else.
	Auth *Auth
	// ClusterSecret is sent with AUTH on every connection to meta and
	// the data nodes; empty when the cluster has none. (It is not the
	// clients' password.)
	ClusterSecret string
	// ServerTLS, when set, serves the client listener over TLS.
	ServerTLS *tls.Config
	// PeerTLS, when set, dials meta and the data nodes over TLS.
	PeerTLS *tls.Config
	Logger  *slog.Logger
	// Datacenter is the cluster's (default "dc1"); Zone this session's
	// (default: the datacenter's name). The publishers registered here
	// are of both; SCOPE zone shows a client those of its session's zone.
	Datacenter, Zone string
	// Local are the data nodes of this process (`registry node`,
	// `registry dev`): where the table routes a slot to one of them, its
	// write batches and change feed go by calls, not through its port.
	Local []inproc.Data
}

// local is the data node of this process that the table lists at addr,
// or nil.
func (n *Node) local(addr string) inproc.Data {
	for _, d := range n.cfg.Local {
		if d.Addr() == addr {
			return d
		}
	}
	return nil
}

// Validate says which field is wrong.
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("sessionserver: NodeID is empty")
	}
	if c.Listener == nil && c.Addr == "" {
		return errors.New("sessionserver: neither Listener nor Addr is set")
	}
	if len(c.Metas) == 0 {
		return errors.New("sessionserver: Metas is empty")
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("sessionserver: MaxBatch %d is negative", c.MaxBatch)
	}
	if err := proto.CheckPlace("datacenter", c.Datacenter, false); err != nil {
		return fmt.Errorf("sessionserver: %w", err)
	}
	if err := proto.CheckPlace("zone", c.Zone, false); err != nil {
		return fmt.Errorf("sessionserver: %w", err)
	}
	if err := (netsec.Secret{Current: c.ClusterSecret}).Validate(); err != nil {
		return fmt.Errorf("sessionserver: ClusterSecret: %w", err)
	}
	if err := netsec.CheckServerTLS(c.ServerTLS); err != nil {
		return fmt.Errorf("sessionserver: %w", err)
	}
	return c.Limits.Validate()
}

func (c *Config) setDefaults() {
	c.Heartbeat = cmp.Or(c.Heartbeat, 500*time.Millisecond)
	c.MaxBatch = cmp.Or(c.MaxBatch, 1024)
	c.ReconcileInterval = cmp.Or(c.ReconcileInterval, 5*time.Second)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Datacenter = cmp.Or(c.Datacenter, proto.DefaultDatacenter)
	c.Zone = cmp.Or(c.Zone, c.Datacenter)
	c.Limits.fill()
}

// Node is a running session node.
type Node struct {
	cfg   Config
	lim   proto.ClientLimits // cfg.Limits, as the command parsers take them
	log   *slog.Logger
	ln    net.Listener
	addr  string
	meta  *metaclient.Client
	table atomic.Pointer[slot.Table]
	// incarnation makes connection IDs unique across restarts of a
	// session with the same node ID.
	incarnation string
	nextConn    atomic.Uint64

	router *router
	pubs   pubRegistry
	subs   subRegistry
	pwatch prefixWatches
	cfgs   configCache  // config.go
	locks  lockRegistry // locks.go

	mu    sync.Mutex
	conns map[*clientConn]struct{}
	// lingering holds the sockets of connections a fence ended, until the
	// session is back in touch (see fenceClose).
	lingering map[net.Conn]struct{}
	// alive is what the DALIVEs found, and whether the session fenced
	// itself (fence.go).
	alive   aliveBook
	closing atomic.Bool
	stop    chan struct{}
	kick    chan []int // slots to reconcile now
	wg      sync.WaitGroup
	bgWg    sync.WaitGroup // background loops, stopped by stop

	stats   stats
	metrics *prometheus.Registry // the node's own: several nodes may share a process

	refreshMu   sync.Mutex
	lastRefresh time.Time
	started     time.Time
}

// New starts a session node.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := netsec.ListenOn(cfg.Listener, cfg.Addr, cfg.ServerTLS)
	if err != nil {
		return nil, fmt.Errorf("sessionserver %s: %w", cfg.NodeID, err)
	}
	n := &Node{
		cfg:         cfg,
		lim:         cfg.Limits.client(),
		log:         cfg.Logger.With("node", cfg.NodeID, "role", proto.KindSession, "dc", cfg.Datacenter, "zone", cfg.Zone),
		ln:          ln,
		addr:        cfg.Advertise,
		incarnation: strconv.FormatInt(time.Now().UnixNano(), 36),
		conns:       make(map[*clientConn]struct{}),
		stop:        make(chan struct{}),
		kick:        make(chan []int, 16),
		started:     time.Now(),
	}
	n.alive.kick = make(chan struct{}, 1)
	if n.addr == "" {
		n.addr = ln.Addr().String()
	}
	n.ln = respguard.Listen(n.ln, LimitRequestSize, int64(cfg.Limits.MaxRequestSize), nil)
	n.pubs.init()
	n.subs.init(n)
	n.pwatch.init()
	n.cfgs.init(n)
	n.locks.init(n)
	n.router = newRouter(n)
	n.metrics = n.newMetrics()
	mc, err := metaclient.NewClient(metaclient.Config{
		Kind: proto.KindSession, NodeID: cfg.NodeID, Addr: n.addr, Metas: cfg.Metas, Datacenter: cfg.Datacenter, Zone: cfg.Zone,
		Interval: cfg.Heartbeat, OnTable: n.onTable, Secret: cfg.ClusterSecret, TLS: cfg.PeerTLS, Logger: cfg.Logger,
	})
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("sessionserver %s: %w", cfg.NodeID, err)
	}
	n.meta = mc
	mc.Start()
	n.cfgs.start()
	n.bgWg.Add(3)
	go n.reconcileLoop()
	go n.aliveLoop()
	go n.stallLoop()
	n.wg.Add(1)
	go n.acceptLoop()
	return n, nil
}

// Addr is the client address.
func (n *Node) Addr() string { return n.addr }

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Table is the latest table, nil before the first.
func (n *Node) Table() *slot.Table { return n.table.Load() }

// Ready says whether every slot has a leader the session can route to.
func (n *Node) Ready() bool {
	t := n.table.Load()
	if t == nil {
		return false
	}
	for s := range t.Slots {
		if t.Slots[s].Leader == "" {
			return false
		}
	}
	return true
}

// WaitReady blocks until Ready or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !n.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("session %s not ready (table %v): %w", n.cfg.NodeID, n.table.Load() != nil, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// Close disconnects every client (their connection-bound publishers are
// unregistered first, as far as the data nodes answer in time), leaves
// meta and returns once every goroutine the node started has ended.
func (n *Node) Close() error {
	if n.closing.Swap(true) {
		return nil
	}
	err := n.ln.Close()
	conns := n.clientConns()
	for _, c := range conns {
		c.nc.Close()
	}
	// Connection goroutines unregister their publishers on the way out.
	n.wg.Wait()
	n.abortLingering()
	n.router.drain(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = n.meta.Leave(ctx)
	cancel()
	n.meta.Close()
	close(n.stop)
	n.bgWg.Wait()
	n.cfgs.close()
	n.locks.close()
	n.router.close()
	n.subs.closeFeeds()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// clientConns lists the client connections open now.
func (n *Node) clientConns() []*clientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	conns := make([]*clientConn, 0, len(n.conns))
	for c := range n.conns {
		conns = append(conns, c)
	}
	return conns
}

func (n *Node) acceptLoop() {
	defer n.wg.Done()
	for {
		nc, err := n.ln.Accept()
		if err != nil {
			if n.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := newClientConn(n, nc)
		n.mu.Lock()
		if n.closing.Load() {
			n.mu.Unlock()
			nc.Close()
			continue
		}
		if len(n.conns) >= n.cfg.Limits.MaxConnections {
			n.mu.Unlock()
			n.refuse(nc)
			continue
		}
		if n.isFenced() {
			n.mu.Unlock()
			n.refuseFenced(nc)
			continue
		}
		n.conns[c] = struct{}{}
		n.wg.Add(1)
		n.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops the session gracefully: it stops accepting, tells every
// client to go (a RESP3 goaway push, or a message on the goaway channel
// for a subscribed connection; a RESP2 connection that is not subscribed
// cannot be told and just sees the close), waits until the clients have
// left or grace has passed, then closes as Close does. A client that
// registers its publishers again through another session meanwhile keeps
// them: the closing connection's unregisters only remove what it still
// owns.
func (n *Node) Shutdown(grace time.Duration) error {
	if n.closing.Load() {
		return nil
	}
	n.log.Info("shutting down: telling clients to go", "grace", grace.String())
	n.ln.Close()
	conns := n.clientConns()
	for _, c := range conns {
		// Each on its own: a stalled client must not hold up the others.
		n.wg.Add(1)
		go c.goAway(grace)
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		n.mu.Lock()
		left := len(n.conns)
		n.mu.Unlock()
		if left == 0 {
			break
		}
		select {
		case <-deadline.C:
			n.log.Info("grace period over; closing the clients left", "clients", left)
			return n.Close()
		case <-tick.C:
		}
	}
	return n.Close()
}

// refuse turns a client away at max-connections with an error it can
// read, without holding up the accept loop.
func (n *Node) refuse(nc net.Conn) {
	n.stats.refused.Add(1)
	n.log.Warn("client refused", "remote", nc.RemoteAddr().String(), "limit", LimitConnections, "max", n.cfg.Limits.MaxConnections)
	turnAway(nc, proto.LimitError(LimitConnections, n.cfg.Limits.MaxConnections, "the session has too many clients"))
}

// turnAway answers a client it will not serve with err, and closes it.
func turnAway(nc net.Conn, err error) {
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte("-" + proto.ToRESP(err) + "\r\n"))
	nc.Close()
}

// writeTimeout is the WriteTimeout in force (see Config).
func (n *Node) writeTimeout() time.Duration {
	if n.cfg.WriteTimeout > 0 {
		return n.cfg.WriteTimeout
	}
	if l := n.meta.Lease(); l > 0 {
		return l + time.Second - replyMargin
	}
	return 4*time.Second - replyMargin
}

// replyMargin is what the default write timeout keeps in hand, within
// lease + 1 s, for the reply to reach the client once the session gives up.
const replyMargin = 100 * time.Millisecond

// refreshTable asks meta for a newer table after a data node refused a
// slot, at most once per 50ms however many requests were refused.
func (n *Node) refreshTable(ctx context.Context) {
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	if time.Since(n.lastRefresh) < 50*time.Millisecond {
		return
	}
	if err := n.meta.Refresh(ctx); err != nil {
		n.log.Debug("table refresh failed", "err", err)
	}
	n.lastRefresh = time.Now()
}

// onTable adopts a newer table: slots whose leader changed are reconciled
// with their new leader, and watched dataInfoIds move their feed to it.
func (n *Node) onTable(t *slot.Table) {
	old := n.table.Load()
	if old != nil && old.Epoch >= t.Epoch {
		return
	}
	n.table.Store(t)
	n.router.leftTable(old, t)
	var moved []int
	for s, a := range t.Slots {
		switch {
		case old == nil:
			// Every led slot of the first table: its leader may have taken
			// the slot after this session joined, and then waits for this
			// session's reconcile (ReconcileTimeout) before it serves it.
			if a.Leader != "" {
				moved = append(moved, s)
			}
		case old.Slots[s].Leader != a.Leader || old.Slots[s].LeaderEpoch != a.LeaderEpoch:
			moved = append(moved, s)
		}
	}
	n.log.Debug("table adopted", "epoch", t.Epoch, "moved_slots", len(moved))
	n.subs.retarget(n, t)
	if len(moved) > 0 {
		// Not from this goroutine: OnTable must not block on the network.
		go n.kickReconcile(moved)
	}
}
