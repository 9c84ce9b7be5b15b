package sessionserver

import (
	"fmt"
	"strconv"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// Pub/sub: SUBSCRIBE and UNSUBSCRIBE, and the push loop that sends each
// subscribed connection the newest state of what changed.

func (c *clientConn) subscribed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.topics) > 0
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
		if !had && len(c.topics) >= c.n.cfg.Limits.MaxSubscriptionsPerConn {
			c.mu.Unlock()
			c.replyErr(proto.LimitError(LimitSubscriptions, c.n.cfg.Limits.MaxSubscriptionsPerConn,
				fmt.Sprintf("subscribing to %q would make %d subscriptions", proto.Clip(a), len(c.topics)+1)))
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
