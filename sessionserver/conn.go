package sessionserver

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/respguard"
	"github.com/slotreg/slotreg/proto"
)

// clientConn is one client connection. The read loop handles a whole
// pipeline at a time and flushes once; pushes come from the push loop.
// Both write through wr under wmu, whole frames at a time, so replies and
// pushes never interleave mid-frame and keep their order.
type clientConn struct {
	n  *Node
	nc net.Conn
	id string
	rd *redcon.Reader
	// raw is nc's socket, for pushes written from the goroutine that
	// delivers them (directpush.go); nil where there is none.
	raw syscall.RawConn

	wmu   sync.Mutex
	wr    *respWriter
	resp3 bool // written only by the read loop, read under wmu

	name string // CLIENT SETNAME
	// authed says the client may run commands: it has authenticated, or
	// the session asks no password. user is who it authenticated as.
	// Only the read loop touches them.
	authed bool
	user   string
	// failed is set when the command being run replied with an error;
	// only the read loop touches it.
	failed bool
	// scope is the view of the next LOOKUP, SUBSCRIBE and PSUBSCRIBE
	// (SCOPE); only the read loop touches it.
	scope proto.Scope
	// ws and timer serve execWrites, which only the read loop runs.
	ws    []pendingWrite
	timer *time.Timer

	mu     sync.Mutex
	closed bool
	owned  map[pubKey]struct{}
	// released are publishers release took out of the registry, for
	// cleanup to unregister.
	released []pubKey
	topics   map[string]*topic
	// pats are the path prefixes the connection watches (PSUBSCRIBE);
	// events are their events not yet written, evBytes their size.
	pats    map[string]proto.Scope
	events  []pevent
	evBytes int
	pending map[*topic]struct{}
	sent    map[*topic]uint64
	wake    chan struct{}
	pushing bool
	quit    bool
	// fenced says a fenced session ended the connection: its socket
	// lingers after cleanup (see fenceClose).
	fenced atomic.Bool
}

func newClientConn(n *Node, nc net.Conn) *clientConn {
	return &clientConn{
		n:      n,
		nc:     nc,
		id:     n.incarnation + "." + strconv.FormatUint(n.nextConn.Add(1), 10),
		rd:     redcon.NewReader(nc),
		raw:    rawConn(nc),
		wr:     newRespWriter(nc),
		owned:  make(map[pubKey]struct{}),
		topics: make(map[string]*topic),
		pats:   make(map[string]proto.Scope),
		authed: n.cfg.Auth == nil,
	}
}

func (c *clientConn) serve() {
	defer c.n.wg.Done()
	defer c.cleanup()
	for {
		cmds, err := c.rd.ReadCommands()
		if err != nil {
			var le *respguard.LimitError
			if strings.HasPrefix(err.Error(), "Protocol error") || errors.As(err, &le) {
				if le != nil {
					c.n.log.Warn("client refused: request over a limit", "conn", c.id, "remote", c.nc.RemoteAddr().String(), "limit", le.Limit, "bytes", le.Got)
				}
				c.wmu.Lock()
				c.writeError("ERR " + err.Error())
				c.flush()
				c.wmu.Unlock()
			}
			return
		}
		for i := 0; i < len(cmds) && !c.quit; {
			cmd := commands.lookup(cmds[i].Args[0])
			if c.authed && isOp(cmd) {
				j := i + 1
				for j < len(cmds) && isOp(commands.lookup(cmds[j].Args[0])) {
					j++
				}
				c.execWrites(cmds[i:j])
				i = j
				continue
			}
			start := time.Now()
			c.failed = false
			c.wmu.Lock()
			c.exec(cmd, cmds[i].Args)
			// A long pipeline of big replies is sent as it grows, so the
			// session never holds more than the output limit for it.
			if c.wr.Len() >= c.n.cfg.Limits.MaxOutputBuffer {
				c.flush()
			}
			c.wmu.Unlock()
			c.n.stats.record(commands.metric(cmd), time.Since(start), c.failed)
			i++
		}
		c.wmu.Lock()
		err = c.flush()
		c.wmu.Unlock()
		if err != nil || c.quit {
			return
		}
	}
}

// flush sends what is buffered; the caller holds wmu. A client that takes
// nothing for the stall timeout is disconnected: its reads and pushes
// must not hold session memory or goroutines for ever.
func (c *clientConn) flush() error {
	err := c.wr.Flush(c.n.cfg.Limits.ClientStallTimeout)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.n.stats.stalled.Add(1)
			c.n.log.Warn("client disconnected: it left its output unread", "conn", c.id,
				"remote", c.nc.RemoteAddr().String(), "limit", LimitClientStall, "timeout", c.n.cfg.Limits.ClientStallTimeout)
		}
		// A connection a fence half-closed fails every write; its
		// socket is kept for the reset (fenceClose), not closed here.
		if !c.fenced.Load() {
			c.nc.Close()
		}
	}
	return err
}

// writeError writes an error reply and marks the command as failed.
func (c *clientConn) writeError(msg string) {
	c.failed = true
	c.wr.WriteError(msg)
}

// cleanup runs when the connection ends: its connection-bound publishers
// are unregistered (only where this connection still owns them) and its
// subscriptions dropped.
func (c *clientConn) cleanup() {
	c.mu.Lock()
	c.closed = true
	owned, released := c.owned, c.released
	c.owned, c.released = nil, nil
	topics, pats := c.topics, c.pats
	c.topics, c.pats, c.events = nil, nil, nil
	if c.wake != nil {
		close(c.wake)
	}
	c.mu.Unlock()
	if c.fenced.Load() {
		c.n.linger(c.nc)
	} else {
		c.nc.Close()
	}
	c.unregister(owned, released)
	for _, t := range topics {
		if t != nil {
			c.n.subs.remove(c, t)
		}
	}
	for p, s := range pats {
		c.n.pwatchRemove(c, p, s)
	}
	c.n.locksConnClosed(c)
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
}

// release marks the connection closed and takes its publishers out of the
// session's registry now, before its goroutine gets to cleanup (which
// unregisters them from the slot leaders): a session closing every client
// connection (fence.go) must not let a reconcile that runs meanwhile
// restore them from its registry, only for the cleanup to remove them
// again (subscribers would see them vanish). It does not wait on the
// data nodes.
func (c *clientConn) release() {
	c.mu.Lock()
	c.closed = true
	owned := c.owned
	c.owned = nil
	c.mu.Unlock()
	var gone []pubKey
	for k := range owned {
		if c.n.pubs.remove(k, c) {
			gone = append(gone, k)
		}
	}
	c.mu.Lock()
	c.released = append(c.released, gone...)
	c.mu.Unlock()
}

// unregister removes owned from the session's registry, where this
// connection still holds them, and sends the slot leaders an UNREGISTER
// for those and for released (taken out of the registry by release).
func (c *clientConn) unregister(owned map[pubKey]struct{}, released []pubKey) {
	for k := range owned {
		if c.n.pubs.remove(k, c) {
			released = append(released, k)
		}
	}
	if len(released) > 0 {
		c.n.log.Debug("connection closed; unregistering its publishers", "conn", c.id, "publishers", len(released))
	}
	for _, k := range released {
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.dataInfoID, RegisterID: k.registerID, ConnID: c.id}
		c.n.router.submit(&op, nil)
	}
}
