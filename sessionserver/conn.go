package sessionserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
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

	mu      sync.Mutex
	closed  bool
	owned   map[pubKey]struct{}
	topics  map[string]*topic
	pending map[*topic]struct{}
	sent    map[*topic]uint64
	wake    chan struct{}
	pushing bool
	quit    bool
}

func newClientConn(n *Node, nc net.Conn) *clientConn {
	return &clientConn{
		n:      n,
		nc:     nc,
		id:     n.incarnation + "." + strconv.FormatUint(n.nextConn.Add(1), 10),
		rd:     redcon.NewReader(nc),
		wr:     newRespWriter(nc),
		owned:  make(map[pubKey]struct{}),
		topics: make(map[string]*topic),
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
			if c.authed && isWrite(cmds[i].Args) {
				j := i + 1
				for j < len(cmds) && isWrite(cmds[j].Args) {
					j++
				}
				c.execWrites(cmds[i:j])
				i = j
				continue
			}
			start := time.Now()
			c.failed = false
			c.wmu.Lock()
			c.exec(cmds[i].Args)
			// A long pipeline of big replies is sent as it grows, so the
			// session never holds more than the output limit for it.
			if c.wr.Len() >= c.n.cfg.Limits.MaxOutputBuffer {
				c.flush()
			}
			c.wmu.Unlock()
			c.n.stats.record(cmdOf(cmds[i].Args[0]), time.Since(start), c.failed)
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
		c.nc.Close()
	}
	return err
}

// writeError writes an error reply and marks the command as failed.
func (c *clientConn) writeError(msg string) {
	c.failed = true
	c.wr.WriteError(msg)
}

func isWrite(args [][]byte) bool {
	switch strings.ToLower(string(args[0])) {
	case proto.CmdRegister, proto.CmdUnregister, proto.CmdRenew:
		return true
	}
	return false
}

// cleanup runs when the connection ends: its connection-bound publishers
// are unregistered (only where this connection still owns them) and its
// subscriptions dropped.
func (c *clientConn) cleanup() {
	c.mu.Lock()
	c.closed = true
	owned := c.owned
	c.owned = nil
	topics := c.topics
	c.topics = nil
	if c.wake != nil {
		close(c.wake)
	}
	c.mu.Unlock()
	c.nc.Close()
	if len(owned) > 0 {
		c.n.log.Debug("connection closed; unregistering its publishers", "conn", c.id, "publishers", len(owned))
	}
	for k := range owned {
		if c.n.pubs.remove(k, c) {
			op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.dataInfoID, RegisterID: k.registerID, ConnID: c.id}
			c.n.router.submit(&op, nil)
		}
	}
	for _, t := range topics {
		if t != nil {
			c.n.subs.remove(c, t)
		}
	}
	c.n.locksConnClosed(c)
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
}

// pending write: the reply for a write command, in pipeline order.
type pendingWrite struct {
	req *writeReq
	err error
	key pubKey
	own bool // a connection-bound register
}

// execWrites sends a run of pipelined write commands to the slot leaders
// together, then replies in order once all have been applied.
func (c *clientConn) execWrites(cmds []redcon.Command) {
	start := time.Now()
	ws := make([]pendingWrite, len(cmds))
	for i, cmd := range cmds {
		op, err := parseWrite(cmd.Args, &c.n.cfg.Limits)
		if err != nil {
			ws[i].err = err
			continue
		}
		op.ConnID = c.id
		k := pubKey{op.DataInfoID, op.RegisterID}
		ws[i].key = k
		switch {
		case op.Type == proto.OpRegister && op.TTL == 0:
			if err := c.own(k, op); err != nil {
				ws[i].err = err
				continue
			}
			ws[i].own = true
		case op.Type == proto.OpRegister, op.Type == proto.OpUnregister:
			// The key is no longer this connection's to clean up.
			c.disown(k)
			if op.Type == proto.OpUnregister {
				op.ConnID = "" // UNREGISTER removes whoever owns it
			}
		}
		ws[i].req = c.n.router.submit(op, make(chan struct{}))
	}
	for i := range ws {
		w := &ws[i]
		if w.req != nil {
			<-w.req.done
			w.err = w.req.err
			if w.err != nil && w.own && errors.Is(w.err, proto.ErrInvalid) {
				c.disown(w.key)
			}
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	took := time.Since(start)
	for i := range ws {
		c.n.stats.record(cmdOf(cmds[i].Args[0]), took, ws[i].err != nil)
		if ws[i].err != nil {
			c.wr.WriteError(proto.ToRESP(ws[i].err))
			continue
		}
		c.wr.WriteUint64(ws[i].req.res)
	}
}

// own records a connection-bound publisher before it is sent, so that a
// connection closing meanwhile still unregisters it.
func (c *clientConn) own(k pubKey, op *proto.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return proto.Errorf(proto.ErrUnavailable, "connection is closing")
	}
	if _, had := c.owned[k]; !had && len(c.owned) >= c.n.cfg.Limits.MaxPublishersPerConn {
		return limitError(LimitPublishers, c.n.cfg.Limits.MaxPublishersPerConn,
			fmt.Sprintf("this connection already has %d publishers", len(c.owned)))
	}
	c.owned[c.n.pubs.put(op, c)] = struct{}{}
	return nil
}

func (c *clientConn) disown(k pubKey) {
	c.mu.Lock()
	if c.owned != nil {
		delete(c.owned, k)
	}
	c.mu.Unlock()
	c.n.pubs.remove(k, nil)
}

// parseWrite parses REGISTER, UNREGISTER and RENEW into an op.
func parseWrite(args [][]byte, lim *Limits) (*proto.Op, error) {
	name := strings.ToLower(string(args[0]))
	op := &proto.Op{}
	switch name {
	case proto.CmdRegister:
		op.Type = proto.OpRegister
		if len(args) != 4 && len(args) != 6 {
			return nil, wrongArity(name)
		}
		if len(args) == 6 {
			if strings.ToLower(string(args[4])) != proto.OptTTL {
				return nil, proto.Errorf(proto.ErrInvalid, "syntax error: expected TTL <seconds>, got %q", truncate(args[4]))
			}
			ttl, err := strconv.ParseUint(string(args[5]), 10, 32)
			if err != nil || ttl == 0 || ttl > 1<<31 {
				return nil, proto.Errorf(proto.ErrInvalid, "TTL must be a whole number of seconds from 1 to %d", 1<<31)
			}
			op.TTL = uint32(ttl)
		}
		op.Data = string(args[3])
		if len(op.Data) > lim.MaxDataSize {
			return nil, limitError(LimitDataSize, lim.MaxDataSize, fmt.Sprintf("data is %d bytes", len(op.Data)))
		}
	case proto.CmdUnregister, proto.CmdRenew:
		op.Type = proto.OpUnregister
		if name == proto.CmdRenew {
			op.Type = proto.OpRenew
		}
		if len(args) != 3 {
			return nil, wrongArity(name)
		}
	}
	op.DataInfoID, op.RegisterID = string(args[1]), string(args[2])
	if err := lim.checkKey(kindDataInfoID, op.DataInfoID); err != nil {
		return nil, err
	}
	if strings.HasPrefix(op.DataInfoID, proto.ReservedPrefix) {
		return nil, proto.Errorf(proto.ErrInvalid, "dataInfoIds starting with %s are reserved", proto.ReservedPrefix)
	}
	if err := lim.checkKey(kindRegisterID, op.RegisterID); err != nil {
		return nil, err
	}
	return op, nil
}

func wrongArity(name string) error {
	return proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", name)
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// exec runs one non-write command; the caller holds wmu.
func (c *clientConn) exec(args [][]byte) {
	name := strings.ToLower(string(args[0]))
	if !c.authed && name != proto.CmdAuth && name != proto.CmdHello && name != proto.CmdQuit {
		c.writeError(replyNoAuth)
		return
	}
	switch name {
	case proto.CmdAuth:
		c.auth(args)
	case proto.CmdPing:
		c.ping(args)
	case proto.CmdEcho:
		if len(args) != 2 {
			c.writeError(proto.ToRESP(wrongArity(name)))
			return
		}
		c.wr.WriteBulk(args[1])
	case proto.CmdQuit:
		c.wr.WriteString("OK")
		c.quit = true
	case proto.CmdHello:
		c.hello(args)
	case proto.CmdClient:
		c.client(args)
	case proto.CmdCommand:
		c.command(args)
	case proto.CmdSelect:
		if len(args) != 2 {
			c.writeError(proto.ToRESP(wrongArity(name)))
		} else if string(args[1]) != "0" {
			c.writeError("ERR DB index is out of range (slotreg has only database 0)")
		} else {
			c.wr.WriteString("OK")
		}
	case proto.CmdLookup:
		c.lookup(args)
	case proto.CmdSubscribe:
		c.subscribe(args)
	case proto.CmdUnsubscribe:
		c.unsubscribe(args)
	case proto.CmdInfo:
		c.wr.WriteBulkString(c.n.info(args[1:]))
	case proto.CmdSlotreg:
		c.slotregCmd(args)
	default:
		if c.execExt(name, args) {
			return
		}
		c.writeError("ERR unknown command '" + truncate(args[0]) + "'")
	}
}

func (c *clientConn) subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.topics) > 0
}

func (c *clientConn) ping(args [][]byte) {
	if len(args) > 2 {
		c.writeError(proto.ToRESP(wrongArity(proto.CmdPing)))
		return
	}
	if !c.resp3 && c.subscribed() {
		// Redis answers a PING in subscribed mode as a pub/sub frame.
		c.wr.WriteArray(2)
		c.wr.WriteBulkString("pong")
		if len(args) == 2 {
			c.wr.WriteBulk(args[1])
		} else {
			c.wr.WriteBulkString("")
		}
		return
	}
	if len(args) == 2 {
		c.wr.WriteBulk(args[1])
		return
	}
	c.wr.WriteString("PONG")
}

// hello negotiates the protocol: HELLO [2|3 [AUTH user pass] [SETNAME n]].
func (c *clientConn) hello(args [][]byte) {
	ver := 2
	if c.resp3 {
		ver = 3
	}
	if len(args) >= 2 {
		v, err := strconv.Atoi(string(args[1]))
		if err != nil || (v != 2 && v != 3) {
			c.writeError("NOPROTO unsupported protocol version")
			return
		}
		ver = v
		for i := 2; i < len(args); i++ {
			switch strings.ToLower(string(args[i])) {
			case proto.OptAuth:
				if i+2 >= len(args) {
					c.writeError("ERR syntax error in HELLO option 'auth'")
					return
				}
				// Without passwords configured any AUTH is accepted, as
				// Redis does for its default user without a password.
				if c.n.cfg.Auth != nil {
					if !c.authenticate(string(args[i+1]), string(args[i+2])) {
						return
					}
				}
				i += 2
			case proto.SubSetName:
				if i+1 >= len(args) {
					c.writeError("ERR syntax error in HELLO option 'setname'")
					return
				}
				i++
				c.name = string(args[i])
			default:
				c.writeError("ERR syntax error in HELLO option '" + truncate(args[i]) + "'")
				return
			}
		}
	}
	if !c.authed {
		c.writeError(replyNoAuthHello)
		return
	}
	c.resp3 = ver == 3
	fields := []struct {
		k string
		v any
	}{
		{"server", "slotreg"}, {"version", "0.1.0"}, {"proto", ver}, {"id", int(c.n.nextConn.Load())},
		{"mode", "standalone"}, {"role", "master"}, {"modules", nil},
	}
	if c.resp3 {
		c.wr.WriteRaw([]byte("%" + strconv.Itoa(len(fields)) + "\r\n"))
	} else {
		c.wr.WriteArray(2 * len(fields))
	}
	for _, f := range fields {
		c.wr.WriteBulkString(f.k)
		switch v := f.v.(type) {
		case string:
			c.wr.WriteBulkString(v)
		case int:
			c.wr.WriteInt(v)
		default:
			c.wr.WriteArray(0)
		}
	}
}

func (c *clientConn) client(args [][]byte) {
	if len(args) < 2 {
		c.writeError(proto.ToRESP(wrongArity(proto.CmdClient)))
		return
	}
	switch strings.ToLower(string(args[1])) {
	case proto.SubSetName:
		if len(args) != 3 {
			c.writeError(proto.ToRESP(wrongArity("client|setname")))
			return
		}
		c.name = string(args[2])
		c.wr.WriteString("OK")
	case proto.SubGetName:
		if c.name == "" {
			c.wr.WriteNull()
			return
		}
		c.wr.WriteBulkString(c.name)
	case proto.SubSetInfo:
		c.wr.WriteString("OK")
	case proto.SubID:
		n, _ := strconv.ParseUint(c.id[strings.LastIndexByte(c.id, '.')+1:], 10, 64)
		c.wr.WriteUint64(n)
	default:
		c.writeError("ERR unknown subcommand '" + truncate(args[1]) + "' for 'client'")
	}
}

// command answers COMMAND enough for clients that ask at connect time
// (redis-cli asks COMMAND DOCS): an empty list, so they fall back to
// sending commands as typed.
func (c *clientConn) command(args [][]byte) {
	if len(args) >= 2 && strings.ToLower(string(args[1])) == proto.SubCount {
		c.wr.WriteInt(len(clientCommands))
		return
	}
	if len(args) >= 2 && strings.ToLower(string(args[1])) == proto.SubDocs && c.resp3 {
		c.wr.WriteRaw([]byte("%0\r\n"))
		return
	}
	c.wr.WriteArray(0)
}

var clientCommands = []string{
	proto.CmdPing, proto.CmdEcho, proto.CmdQuit, proto.CmdHello, proto.CmdClient, proto.CmdCommand,
	proto.CmdSelect, proto.CmdRegister, proto.CmdUnregister, proto.CmdRenew, proto.CmdLookup,
	proto.CmdSubscribe, proto.CmdUnsubscribe, proto.CmdInfo, proto.CmdAuth,
}

func (c *clientConn) lookup(args [][]byte) {
	if len(args) != 2 {
		c.writeError(proto.ToRESP(wrongArity(proto.CmdLookup)))
		return
	}
	id := string(args[1])
	if err := c.n.cfg.Limits.checkKey(kindDataInfoID, id); err != nil {
		c.writeError(proto.ToRESP(err))
		return
	}
	// The lookup waits on the data node; release the writer meanwhile so
	// pushes to this connection are not held up.
	c.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.cfg.WriteTimeout)
	d, err := c.n.router.lookup(ctx, id)
	cancel()
	c.wmu.Lock()
	if err != nil {
		c.writeError(proto.ToRESP(err))
		return
	}
	c.wr.WriteArray(2)
	c.wr.WriteUint64(d.Version)
	c.wr.WriteArray(len(d.Entries))
	for _, e := range d.Entries {
		c.wr.WriteArray(2)
		c.wr.WriteBulkString(e.RegisterID)
		c.wr.WriteBulkString(e.Data)
	}
}

func (c *clientConn) writePushHeader(n int) {
	if c.resp3 {
		c.wr.WriteRaw([]byte(">" + strconv.Itoa(n) + "\r\n"))
		return
	}
	c.wr.WriteArray(n)
}

func (c *clientConn) subscribe(args [][]byte) {
	if len(args) < 2 {
		c.writeError(proto.ToRESP(wrongArity(proto.CmdSubscribe)))
		return
	}
	for _, a := range args[1:] {
		id := string(a)
		if err := c.n.cfg.Limits.checkKey(kindDataInfoID, id); err != nil {
			c.writeError(proto.ToRESP(err))
			continue
		}
		c.mu.Lock()
		_, had := c.topics[id]
		if !had && len(c.topics) >= c.n.cfg.Limits.MaxSubscriptionsPerConn {
			c.mu.Unlock()
			c.writeError(proto.ToRESP(limitError(LimitSubscriptions, c.n.cfg.Limits.MaxSubscriptionsPerConn,
				fmt.Sprintf("subscribing to %q would make %d subscriptions", truncate(a), len(c.topics)+1))))
			continue
		}
		if !had {
			c.topics[id] = nil // reserved; set below
		}
		count := len(c.topics)
		if c.wake == nil {
			c.wake = make(chan struct{}, 1)
			c.pending = make(map[*topic]struct{})
			c.sent = make(map[*topic]uint64)
		}
		start := !c.pushing
		c.pushing = true
		c.mu.Unlock()
		// The confirmation goes into the buffer before the topic can
		// mark this connection, so the first message always follows it.
		c.writePushHeader(3)
		c.wr.WriteBulkString(proto.PushSubscribe)
		c.wr.WriteBulk(a)
		c.wr.WriteInt(count)
		if start {
			c.n.wg.Add(1)
			go c.pushLoop()
		}
		// The goaway channel is the session's own: no datum is watched
		// for it, and it carries nothing until the session stops.
		if !had && id != proto.ChanGoAway {
			t := c.n.subs.add(c.n, c, id)
			c.mu.Lock()
			if c.topics != nil {
				c.topics[id] = t
			}
			c.mu.Unlock()
		}
	}
}

func (c *clientConn) unsubscribe(args [][]byte) {
	c.mu.Lock()
	var ids []string
	if len(args) > 1 {
		for _, a := range args[1:] {
			ids = append(ids, string(a))
		}
	} else {
		for id := range c.topics {
			ids = append(ids, id)
		}
	}
	c.mu.Unlock()
	if len(ids) == 0 {
		c.writePushHeader(3)
		c.wr.WriteBulkString(proto.PushUnsubscribe)
		c.wr.WriteNull()
		c.wr.WriteInt(0)
		return
	}
	for _, id := range ids {
		c.mu.Lock()
		t, had := c.topics[id]
		delete(c.topics, id)
		if t != nil {
			delete(c.pending, t)
			delete(c.sent, t)
		}
		count := len(c.topics)
		c.mu.Unlock()
		if had && t != nil {
			c.n.subs.remove(c, t)
		}
		c.writePushHeader(3)
		c.wr.WriteBulkString(proto.PushUnsubscribe)
		c.wr.WriteBulkString(id)
		c.wr.WriteInt(count)
	}
}

// goAway tells the client the session is closing its connection in grace.
func (c *clientConn) goAway(grace time.Duration) {
	defer c.n.wg.Done()
	ms := []byte(strconv.FormatInt(grace.Milliseconds(), 10))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case c.subscribed():
		c.writePushHeader(3)
		c.wr.WriteBulkString(proto.PushMessage)
		c.wr.WriteBulkString(proto.ChanGoAway)
		c.wr.WriteBulk(ms)
	case c.resp3:
		c.writePushHeader(2)
		c.wr.WriteBulkString(proto.PushGoAway)
		c.wr.WriteBulk(ms)
	default:
		return
	}
	c.flush()
}

// markPush queues t for this connection's push loop. A topic is queued at
// most once however often it changes: the loop sends its newest state.
func (c *clientConn) markPush(t *topic) {
	c.mu.Lock()
	if c.closed || c.pending == nil {
		c.mu.Unlock()
		return
	}
	c.pending[t] = struct{}{}
	// Signal under mu: cleanup closes wake under mu too.
	select {
	case c.wake <- struct{}{}:
	default:
	}
	c.mu.Unlock()
}

func (c *clientConn) pushLoop() {
	defer c.n.wg.Done()
	c.mu.Lock()
	wake := c.wake
	c.mu.Unlock()
	batch := make([]*topic, 0, 16)
	// recv holds when each datum pushed this round reached the session;
	// a topic's first push to a connection (its state on SUBSCRIBE) is
	// counted but not timed, as that state may have arrived long before.
	var recv []time.Time
	pushed := 0
	for range wake {
		c.mu.Lock()
		for t := range c.pending {
			batch = append(batch, t)
			delete(c.pending, t)
		}
		c.mu.Unlock()
		c.wmu.Lock()
		for _, t := range batch {
			st := t.state.Load()
			if st == nil {
				continue
			}
			c.mu.Lock()
			last, seen := c.sent[t]
			_, still := c.topics[t.id]
			fresh := still && (!seen || st.version > last)
			if fresh {
				c.sent[t] = st.version
			}
			c.mu.Unlock()
			if !fresh {
				continue
			}
			pushed++
			if seen {
				recv = append(recv, st.received)
			}
			c.writePushHeader(3)
			c.wr.WriteBulkString(proto.PushMessage)
			c.wr.WriteBulkString(t.id)
			c.wr.WriteBulk(st.payload)
			if c.wr.Len() >= c.n.cfg.Limits.MaxOutputBuffer {
				if c.flush() != nil {
					break
				}
			}
		}
		err := c.flush()
		c.wmu.Unlock()
		clear(batch)
		batch = batch[:0]
		if err == nil && pushed > 0 {
			now := time.Now()
			for _, t := range recv {
				c.n.stats.pushLatency.Observe(now.Sub(t).Seconds())
			}
			c.n.stats.pushes.Add(uint64(pushed))
		}
		recv, pushed = recv[:0], 0
	}
}
