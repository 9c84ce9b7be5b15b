package sessionserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// isOp says whether cmd is a write bound for a slot leader, sent with
// its neighbours in a pipeline.
func isOp(cmd *command) bool { return cmd != nil && cmd.op != nil }

// pending write: the reply for a write command, in pipeline order.
type pendingWrite struct {
	req *writeReq
	err error
	key pubKey
	own bool // a connection-bound register
	cmd *command
}

// execWrites sends a run of pipelined write commands to the slot leaders
// together, then replies in order once all have been applied.
func (c *clientConn) execWrites(cmds []redcon.Command) {
	start := time.Now()
	// The replies' slice and the deadline's timer are the connection's,
	// reused from run to run: only the read loop comes here.
	if cap(c.ws) < len(cmds) {
		c.ws = make([]pendingWrite, len(cmds))
	}
	ws := c.ws[:len(cmds)]
	defer func() {
		clear(ws)
		if cap(c.ws) > 1024 {
			c.ws = nil // a long pipeline's is not kept
		}
	}()
	for i, cmd := range cmds {
		row := commands.lookup(cmd.Args[0])
		ws[i].cmd = row
		op, err := row.op(cmd.Args, &c.n.lim)
		if err != nil {
			ws[i].err = err
			continue
		}
		op.ConnID = c.id
		k := pubKey{op.DataInfoID, op.RegisterID}
		ws[i].key = k
		if op.Persistent {
			// Not this connection's to clean up, whatever it was.
			c.disown(k)
			op.ConnID = ""
			ws[i].req = &writeReq{op: op, deadline: time.Now().Add(c.n.writeTimeout()), done: make(chan struct{})}
			c.n.bgWg.Add(1)
			go c.n.persistWrite(op, ws[i].req)
			continue
		}
		// The session's list of publishers changes once the write has
		// passed its slot's gate (see submitAdmitted).
		var admit func() error
		switch {
		case op.Type == proto.OpRegister && op.TTL == 0:
			w := &ws[i]
			admit = func() error {
				if err := c.own(k, &op); err != nil {
					return err
				}
				w.own = true
				return nil
			}
		case op.Type == proto.OpRegister, op.Type == proto.OpUnregister:
			// The key is no longer this connection's to clean up.
			admit = func() error { c.disown(k); return nil }
			if op.Type == proto.OpUnregister {
				op.ConnID = "" // UNREGISTER removes whoever owns it
			}
		}
		ws[i].req = c.n.router.submitAdmitted(&op, make(chan struct{}), admit)
	}
	// Each write is answered by its deadline, whatever holds it up inside
	// the session (a queue behind a batch to a node that does not answer,
	// a slot's sync): past it the client hears a timeout, as for any write
	// whose outcome is unknown, and the write goes on without a listener.
	for i := range ws {
		w := &ws[i]
		if w.req == nil {
			continue
		}
		select {
		case <-w.req.done:
		default:
			if c.timer == nil {
				c.timer = time.NewTimer(time.Until(w.req.deadline))
			} else {
				c.timer.Reset(time.Until(w.req.deadline))
			}
			select {
			case <-w.req.done:
				c.timer.Stop()
			case <-c.timer.C:
				w.err = proto.Errorf(proto.ErrTimeout, "no slot leader answered within %v", c.n.writeTimeout())
				continue
			}
		}
		w.err = w.req.err
		if w.err != nil && w.own && errors.Is(w.err, proto.ErrInvalid) {
			c.disown(w.key)
		}
	}
	// After a stall of this process, not before the data nodes have said
	// whether they dropped this session (fence.go).
	c.n.awaitStallCheck()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	took := time.Since(start)
	for i := range ws {
		c.n.stats.record(commands.metric(ws[i].cmd), took, ws[i].err != nil)
		if ws[i].err != nil {
			c.wr.WriteError(proto.ReplyText(ws[i].err))
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
	// The key is looked up only at the limit: on every REGISTER the
	// lookup was 2% of a one-process registry's CPU.
	if max := c.n.cfg.Limits.MaxPublishersPerConn; len(c.owned) >= max {
		if _, had := c.owned[k]; !had {
			return proto.LimitError(LimitPublishers, max,
				fmt.Sprintf("this connection already has %d publishers", len(c.owned)))
		}
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

// lookup answers LOOKUP: the datum's version, then its [registerId,
// data] pairs.
func (c *clientConn) lookup(l *proto.Lookup) {
	d, ok := c.fetch(l.DataInfoID)
	if !ok {
		return
	}
	d, _ = c.n.view(d, c.scope)
	c.wr.WriteArray(2)
	c.wr.WriteUint64(d.Version)
	c.wr.WriteArray(len(d.Entries))
	for _, e := range d.Entries {
		c.wr.WriteArray(2)
		c.wr.WriteBulkString(e.RegisterID)
		c.wr.WriteBulkString(e.Data)
	}
}

// fetch reads a datum from its slot leader, or replies the error and
// returns false.
func (c *clientConn) fetch(id string) (d *proto.Datum, ok bool) {
	ok = c.awaitNodes(func(ctx context.Context) (err error) {
		d, err = c.n.router.lookup(ctx, id)
		return err
	})
	return d, ok
}

// awaitNodes runs f, a call to the data nodes bounded by the write
// timeout, with the writer let go meanwhile (pushes to this connection
// are not held up), and replies its error: ok is false then.
func (c *clientConn) awaitNodes(f func(ctx context.Context) error) (ok bool) {
	c.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.n.writeTimeout())
	err := f(ctx)
	cancel()
	c.wmu.Lock()
	if err != nil {
		c.replyErr(err)
		return false
	}
	return true
}
