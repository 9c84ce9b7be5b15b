package sessionserver

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// Pub/sub: SUBSCRIBE and UNSUBSCRIBE, and the push loop that sends each
// subscribed connection the newest state of what changed.

func (c *clientConn) subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.topics)+len(c.pats) > 0
}

// confirm writes a (p)(un)subscribe confirmation: the kind, the channel
// or pattern (null for an unsubscribe from nothing) and the count of
// subscriptions left.
func (c *clientConn) confirm(kind, channel string, count int) {
	c.writePushHeader(3)
	c.wr.WriteBulkString(kind)
	if channel == "" {
		c.wr.WriteNull()
	} else {
		c.wr.WriteBulkString(channel)
	}
	c.wr.WriteInt(count)
}

// startPush readies the connection for pushes; start says the caller
// must start the push loop. c.mu is held.
func (c *clientConn) startPush() (start bool) {
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
		c.pending = make(map[*topic]struct{})
		c.sent = make(map[*topic]uint64)
	}
	start = !c.pushing
	c.pushing = true
	return start
}

// subLimit refuses a subscription past the connection's limit; c.mu is
// held.
func (c *clientConn) subLimit(what []byte) error {
	if n := len(c.topics) + len(c.pats); n >= c.n.cfg.Limits.MaxSubscriptionsPerConn {
		return proto.LimitError(LimitSubscriptions, c.n.cfg.Limits.MaxSubscriptionsPerConn,
			fmt.Sprintf("subscribing to %q would make %d subscriptions", proto.Clip(what), n+1))
	}
	return nil
}

func (c *clientConn) writePushHeader(n int) {
	if c.resp3 {
		c.wr.WriteRaw([]byte(">" + strconv.Itoa(n) + "\r\n"))
		return
	}
	c.wr.WriteArray(n)
}

// subscribe answers SUBSCRIBE: a confirmation per channel, then the
// channel's state and every change, as the push loop sends them.
func (c *clientConn) subscribe(s *proto.Subscribe) {
	for _, a := range s.Channels {
		id := string(a)
		if err := c.n.lim.CheckKey(proto.KindDataInfoID, id); err != nil {
			c.replyErr(err)
			continue
		}
		c.mu.Lock()
		_, had := c.topics[id]
		if !had {
			if err := c.subLimit(a); err != nil {
				c.mu.Unlock()
				c.replyErr(err)
				continue
			}
			c.topics[id] = nil // reserved; set below
		}
		count := len(c.topics) + len(c.pats)
		start := c.startPush()
		c.mu.Unlock()
		// The confirmation goes into the buffer before the topic can
		// mark this connection, so the first message always follows it.
		c.confirm(proto.PushSubscribe, string(a), count)
		if start {
			c.n.wg.Add(1)
			go c.pushLoop()
		}
		// The goaway channel is the session's own: no datum is watched
		// for it, and it carries nothing until the session stops.
		if !had && id != proto.ChanGoAway {
			t := c.n.subs.add(c.n, c, id, c.scope)
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
		c.confirm(proto.PushUnsubscribe, "", 0)
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
		count := len(c.topics) + len(c.pats)
		c.mu.Unlock()
		if had && t != nil {
			c.n.subs.remove(c, t)
		}
		c.confirm(proto.PushUnsubscribe, id, count)
	}
}

// psubscribe answers PSUBSCRIBE: a confirmation per pattern, then an ADD
// for every path under its prefix and every change, as the push loop
// sends them.
func (c *clientConn) psubscribe(prefixes []string) {
	for _, prefix := range prefixes {
		c.mu.Lock()
		_, had := c.pats[prefix]
		if !had {
			if err := c.subLimit([]byte(prefix + "*")); err != nil {
				c.mu.Unlock()
				c.replyErr(err)
				continue
			}
			c.pats[prefix] = c.scope
		}
		count := len(c.topics) + len(c.pats)
		start := c.startPush()
		c.mu.Unlock()
		// As for SUBSCRIBE: the confirmation is in the buffer before
		// the first event can be queued.
		c.confirm(proto.PushPSubscribe, prefix+"*", count)
		if start {
			c.n.wg.Add(1)
			go c.pushLoop()
		}
		if !had {
			c.n.pwatchAdd(c, prefix, c.scope)
		}
	}
}

// punsubscribe answers PUNSUBSCRIBE: the prefixes named, or all.
func (c *clientConn) punsubscribe(prefixes []string) {
	if len(prefixes) == 0 {
		c.mu.Lock()
		prefixes = slices.Sorted(maps.Keys(c.pats))
		c.mu.Unlock()
	}
	if len(prefixes) == 0 {
		c.confirm(proto.PushPUnsubscribe, "", 0)
		return
	}
	for _, prefix := range prefixes {
		c.mu.Lock()
		scope, had := c.pats[prefix]
		delete(c.pats, prefix)
		count := len(c.topics) + len(c.pats)
		c.mu.Unlock()
		if had {
			c.n.pwatchRemove(c, prefix, scope)
		}
		c.confirm(proto.PushPUnsubscribe, prefix+"*", count)
	}
}

// maxEventBacklog bounds the prefix-watch events a connection has not
// yet been sent; a client that falls further behind is disconnected, as
// Redis does with a pub/sub client past its output buffer limit (events
// cannot be coalesced as datum pushes are).
var maxEventBacklog = 64 << 20

// queueEvents queues prefix-watch events for the push loop; the caller
// holds the prefix watches' lock, so each connection gets a prefix's
// events in the order they happened.
func (c *clientConn) queueEvents(evs []pevent) { c.queue(evs, false) }

// queueInitial queues the ADDs that give a new watch the paths under its
// prefix: a state, like SUBSCRIBE's first message, not a backlog, so it
// does not count against maxEventBacklog however large the prefix is.
func (c *clientConn) queueInitial(evs []pevent) { c.queue(evs, true) }

func (c *clientConn) queue(evs []pevent, initial bool) {
	if len(evs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.wake == nil {
		return
	}
	c.events = append(c.events, evs...)
	if !initial {
		for i := range evs {
			c.evBytes += len(evs[i].path) + len(evs[i].payload) + 48
		}
	}
	if c.evBytes > maxEventBacklog {
		c.n.log.Warn("client disconnected: it fell too far behind its prefix watches", "conn", c.id, "backlog_bytes", c.evBytes)
		c.events, c.evBytes = nil, 0
		c.nc.Close()
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
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
		events := c.events
		c.events, c.evBytes = nil, 0
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
		for i := range events {
			ev := &events[i]
			c.writePushHeader(4)
			c.wr.WriteBulkString(proto.PushPMessage)
			c.wr.WriteBulkString(ev.pattern)
			c.wr.WriteBulkString(ev.path)
			c.wr.WriteBulk(ev.payload)
			pushed++
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
