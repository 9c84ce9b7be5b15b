package sessionserver

import (
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// A session cut off from the cluster fences itself. Its clients'
// connection-bound publishers live on the data nodes, which drop them once
// meta has evicted the session (its lease lapsed) and they have not heard
// from it either (DALIVE) for their session grace. A session that is cut
// off, or was paused, past that point has clients whose connections are
// open and whose publishers are gone: they would never publish again. So
// when its lease with meta may have lapsed and some data node has not
// acknowledged a DALIVE for nearly its grace, the session closes every
// client connection (the clients reconnect, to another session if this one
// is still cut off, and publish again) and refuses new ones until meta
// answers its heartbeats and every data node its DALIVEs again. A session
// cut off from meta alone keeps talking to the data nodes, keeps its
// publishers, and does not fence; nor does one whose meta lost its quorum
// (metaclient.Client.LeaseLeft).

// aliveBook is when each data node last acknowledged a DALIVE and the
// grace it said it gives (0: an older data node that did not say).
type aliveBook struct {
	mu     sync.Mutex
	at     map[string]time.Time // by data node address: when the DALIVE was sent
	grace  map[string]time.Duration
	fenced bool // the session has fenced itself and not yet recovered
	// closedAt is when the session last closed every client connection
	// (fenced, or told it was dropped); reset holds the data nodes to
	// send DALIVE RESET to; kick wakes the alive loop for it.
	closedAt time.Time
	reset    map[string]bool
	kick     chan struct{}
	// tick is when the stall watch last ran (unix nanos); check, while
	// set, is closed by the next DALIVE round that starts after a stall
	// was seen (see awaitStallCheck).
	tick  atomic.Int64
	check chan struct{}
}

// note records a DALIVE to addr, sent at sent, acknowledged with the
// node's grace. back says the node had acknowledged one before, but none
// sent in the gap before this one: it was out of reach (or this session
// was), and is back.
func (b *aliveBook) note(addr string, sent time.Time, grace, gap time.Duration) (back bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at == nil {
		b.at, b.grace = map[string]time.Time{}, map[string]time.Duration{}
	}
	last, ok := b.at[addr]
	b.at[addr], b.grace[addr] = sent, grace
	return ok && sent.Sub(last) > gap
}

// atRisk lists the data nodes of t that may drop this session's
// publishers by now: not acknowledged a DALIVE for their grace less
// margin (counted from since for one never reached).
func (b *aliveBook) atRisk(t *slot.Table, now, since time.Time, defGrace, margin time.Duration) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, d := range t.Nodes {
		at, ok := b.at[d.Addr]
		if !ok {
			at = since
		}
		g := b.grace[d.Addr]
		if g == 0 {
			g = defGrace
		}
		if now.Sub(at) >= g-margin {
			out = append(out, d.ID)
		}
	}
	sort.Strings(out)
	return out
}

// checkFence fences or unfences the session (see above); the alive loop
// calls it once a heartbeat, after its DALIVEs.
func (n *Node) checkFence() {
	t := n.table.Load()
	left, ok := n.meta.LeaseLeft()
	var risk []string
	if t != nil && ok && left <= 0 {
		// A data node that did not say its grace gets meta's lease, the
		// default of both.
		risk = n.alive.atRisk(t, time.Now(), n.started, n.meta.Lease(), n.cfg.Heartbeat)
	}
	n.alive.mu.Lock()
	was := n.alive.fenced
	n.alive.fenced = len(risk) > 0
	n.alive.mu.Unlock()
	switch {
	case len(risk) > 0 && !was:
		n.log.Warn("cut off from meta and from data nodes: closing every client connection so that the clients publish again elsewhere",
			"lease_over_by", (-left).Round(time.Millisecond), "data_nodes_not_reached", risk)
		n.closeClients(t)
	case len(risk) == 0 && was:
		n.log.Info("in touch with meta and the data nodes again; taking clients")
		// Every feed may be a connection the partition broke without
		// this side knowing (a data node not heard from since before the
		// cut is not seen as back by the DALIVE gap), and the clients
		// about to subscribe again must get the current state.
		if t != nil {
			for _, d := range t.Nodes {
				n.subs.renewFeed(n, d.Addr)
			}
		}
		n.abortLingering()
	}
}

// fenceClose ends a client connection of a fenced session. The session
// may be cut off from its clients too (a partition of the session alone),
// and then nothing it sends them arrives before the heal, and what it
// sent last arrives only at TCP's next retransmission, seconds after the
// heal with exponential backoff: a plain close would leave such a client
// waiting on a dead connection until it next sends. So the connection is
// half-closed (a FIN: a client that can reach the session leaves at once),
// its goroutine stops reading and cleans up as on any close, and the socket
// lingers until the session is back in touch. It is then reset (RST, sent
// at once whatever the FIN's backoff), so that a client cut off with the
// session learns within a round trip of the heal (abortLingering).
func (c *clientConn) fenceClose() {
	tc := tcpOf(c.nc)
	if tc == nil {
		c.nc.Close()
		return
	}
	c.fenced.Store(true)
	tc.CloseWrite()
	c.nc.SetReadDeadline(time.Unix(1, 0)) // the read loop returns, then cleanup
}

// linger keeps a fenced connection's socket open until abortLingering; at
// once if the session is no longer fenced.
func (n *Node) linger(nc net.Conn) {
	n.mu.Lock()
	if n.lingering == nil {
		n.lingering = map[net.Conn]struct{}{}
	}
	n.lingering[nc] = struct{}{}
	n.mu.Unlock()
	if !n.isFenced() || n.closing.Load() {
		n.abortLingering()
	}
}

// abortLingering resets every socket a fence left lingering.
func (n *Node) abortLingering() {
	n.mu.Lock()
	l := n.lingering
	n.lingering = nil
	n.mu.Unlock()
	for nc := range l {
		if tc := tcpOf(nc); tc != nil {
			tc.SetLinger(0)
		}
		nc.Close()
	}
	if len(l) > 0 {
		n.log.Info("reset the client connections closed while cut off", "clients", len(l))
	}
}

// tcpOf is the TCP connection under nc (through TLS and the request size
// guard), or nil.
func tcpOf(nc net.Conn) *net.TCPConn {
	for {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

// isFenced says whether the session refuses clients for now.
func (n *Node) isFenced() bool {
	n.alive.mu.Lock()
	defer n.alive.mu.Unlock()
	return n.alive.fenced
}

// refuseFenced turns away a client while the session is fenced.
func (n *Node) refuseFenced(nc net.Conn) {
	turnAway(nc, proto.Errorf(proto.ErrUnavailable, "session %s is cut off from the cluster; connect to another session", n.cfg.NodeID))
}

// closeClients closes every client connection (their publishers go with
// them, and the clients publish again) and has the alive loop tell every
// data node of t that it did (DALIVE RESET).
func (n *Node) closeClients(t *slot.Table) {
	n.stats.fenced.Add(1)
	conns := n.clientConns()
	n.alive.mu.Lock()
	n.alive.closedAt = time.Now()
	fenced := n.alive.fenced
	n.alive.mu.Unlock()
	for _, c := range conns {
		c.release()
		if fenced {
			c.fenceClose()
		} else {
			c.nc.Close()
		}
	}
	// Only now, with their publishers out of the registry, may the data
	// nodes take this session's syncs again.
	n.alive.mu.Lock()
	if t != nil {
		for _, d := range t.Nodes {
			n.alive.owe(d.Addr)
		}
	}
	n.alive.mu.Unlock()
	n.log.Warn("closed every client connection", "clients", len(conns))
	n.alive.wake()
}

// owe notes that the data node at addr is owed a DALIVE RESET; b.mu is
// held.
func (b *aliveBook) owe(addr string) {
	if b.reset == nil {
		b.reset = map[string]bool{}
	}
	b.reset[addr] = true
}

// wake asks the alive loop for a round now.
func (b *aliveBook) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// onDropped handles a data node's ErrDropped: it dropped this session's
// publishers (the session was evicted and unheard for its grace: paused,
// or cut off) while clients whose publishers they were may still be
// connected, and would be told nothing. A drop after the session last
// closed its clients' connections closes them all now; one from before
// (that close already covered it) only needs the node told (RESET).
func (n *Node) onDropped(addr string, err error) {
	at := droppedAt(err)
	n.alive.mu.Lock()
	covered := !at.IsZero() && at.Before(n.alive.closedAt)
	if covered {
		n.alive.owe(addr)
	}
	n.alive.mu.Unlock()
	if covered {
		n.alive.wake()
		return
	}
	n.log.Warn("a data node dropped this session's publishers while it was out of touch (paused, or cut off); closing every client connection so that the clients publish again",
		"data_node", addr, "dropped_at", at.Format(time.RFC3339Nano))
	n.closeClients(n.table.Load())
}

// droppedAt is the drop time an ErrDropped carries (zero if none).
func droppedAt(err error) time.Time {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		return time.Time{}
	}
	f := strings.Fields(pe.Detail)
	if len(f) == 0 {
		return time.Time{}
	}
	ms, perr := strconv.ParseInt(f[0], 10, 64)
	if perr != nil {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// takeResets returns the data nodes owed a DALIVE RESET, and forgets them.
func (b *aliveBook) takeResets() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.reset
	b.reset = nil
	return r
}

// A session process that stalled (SIGSTOP, a frozen VM, a long GC pause)
// may wake to find that the data nodes dropped its publishers meanwhile.
// Until a DALIVE round after the wake has said whether they did (and the
// session has closed its clients' connections if so), it must not tell a
// client that a write went through: that client would go on believing it
// is published while subscribers were told otherwise.
const (
	stallTick = 50 * time.Millisecond
	stallGap  = time.Second // a gap in the watch's ticks this long is a stall
)

// stallLoop notices stalls of the process by the gaps in its own ticks.
func (n *Node) stallLoop() {
	defer n.bgWg.Done()
	t := time.NewTicker(stallTick)
	defer t.Stop()
	n.alive.tick.Store(time.Now().UnixNano())
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, n.alive.tick.Load())) > stallGap {
			n.stalled()
		}
		n.alive.tick.Store(time.Now().UnixNano())
	}
}

// stalled asks for a DALIVE round now and returns the channel it closes.
func (n *Node) stalled() chan struct{} {
	n.alive.mu.Lock()
	if n.alive.check == nil {
		n.alive.check = make(chan struct{})
	}
	ch := n.alive.check
	n.alive.mu.Unlock()
	n.alive.wake()
	return ch
}

// awaitStallCheck holds a write's reply while a stall is being looked
// into (or is seen here first), up to 2 s; a session that turns out to be
// dropped has closed the connection by then, and the reply goes nowhere.
func (n *Node) awaitStallCheck() {
	n.alive.mu.Lock()
	ch := n.alive.check
	n.alive.mu.Unlock()
	if ch == nil {
		if last := n.alive.tick.Load(); last == 0 || time.Since(time.Unix(0, last)) <= stallGap {
			return
		}
		ch = n.stalled() // woke here before the watch did
	}
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
	case <-n.stop:
	}
}

// takeCheck is the stall check a starting DALIVE round answers.
func (b *aliveBook) takeCheck() chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.check
	b.check = nil
	return ch
}
