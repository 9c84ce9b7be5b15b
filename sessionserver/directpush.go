package sessionserver

import (
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/respguard"
	"github.com/slotreg/slotreg/proto"
)

// Direct pushes. A change to a topic with many subscribers used to wake
// each subscriber's push loop, one goroutine per connection, to write one
// frame: with 10k subscribers that was 10k wake-ups on top of 10k writes.
// Now the goroutine that delivers the change writes the frame itself,
// the same bytes to every connection (a RESP3 one gets them with '>' for
// '*'), each with one non-blocking write, as Redis's event loop does. It
// does so only where that is simple and cannot wait on a client:
//   - the connection is plain TCP (not TLS);
//   - nobody else is writing to it (the writer's lock is free) and its
//     push loop has nothing queued, so pushes keep their order;
//   - the socket takes bytes now: what it does not take stays in the
//     connection's buffer and its push loop sends it, with the stall
//     timeout, as before.
// Anything else goes to the push loop, as before.

// pushSpread is the number of subscribers of one change from which the
// writes leave the feed's goroutine and are spread over the processors:
// the kernel's loopback send is most of a push's cost (10k of them take
// tens of milliseconds), one goroutine left the other core idle, and the
// feed's other topics must not wait behind one large topic.
const pushSpread = 1024

// push sends t's state st to subs from the feed's goroutine (the caller),
// or, for a large fan-out, from goroutines of their own. While one large
// fan-out of t is being written, a newer state goes through the push
// loops, which send each subscriber the newest.
func (r *subRegistry) push(t *topic, st *pushState, subs []*clientConn) {
	if len(subs) < pushSpread {
		pushEach(t, st, subs)
		return
	}
	if !t.fanning.CompareAndSwap(false, true) {
		for _, c := range subs {
			c.markPush(t)
		}
		return
	}
	r.feedWg.Add(1) // the feed calling holds one: the count is not zero
	go func() {
		defer r.feedWg.Done()
		defer t.fanning.Store(false)
		pushAll(t, st, subs)
	}()
}

// pushEach sends st to each of subs directly where tryPush can, else
// through its push loop.
func pushEach(t *topic, st *pushState, subs []*clientConn) {
	for _, c := range subs {
		if !c.tryPush(t, st) {
			c.markPush(t)
		}
	}
}

// pushAll is pushEach from as many goroutines as there are processors.
func pushAll(t *topic, st *pushState, subs []*clientConn) {
	one := func(subs []*clientConn) { pushEach(t, st, subs) }
	k := runtime.GOMAXPROCS(0)
	if k < 2 {
		one(subs)
		return
	}
	var wg sync.WaitGroup
	per := (len(subs) + k - 1) / k
	for len(subs) > per {
		part := subs[:per]
		subs = subs[per:]
		wg.Go(func() { one(part) })
	}
	one(subs)
	wg.Wait()
}

// pushFrame returns the RESP2 push of payload for topic id, and payload
// as part of it, so a state holds the bytes once.
func pushFrame(id string, payload []byte) (frame, inFrame []byte) {
	b := make([]byte, 0, len(id)+len(payload)+len(proto.PushMessage)+48)
	b = redcon.AppendArray(b, 3)
	b = redcon.AppendBulkString(b, proto.PushMessage)
	b = redcon.AppendBulkString(b, id)
	b = redcon.AppendBulk(b, payload)
	end := len(b) - 2 // the bulk's "\r\n"
	return b, b[end-len(payload) : end : end]
}

// rawConn returns the socket under nc for non-blocking writes, or nil
// where there is none to write to directly (TLS, tests' pipes).
func rawConn(nc net.Conn) syscall.RawConn {
	if g, ok := nc.(*respguard.Conn); ok {
		nc = g.Conn
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// tryPush sends t's state st to c from the calling goroutine, where it
// can be done at once (see above); it reports whether c is served, by
// this write or because it needs none. Otherwise the caller marks the
// topic for c's push loop.
func (c *clientConn) tryPush(t *topic, st *pushState) bool {
	if c.raw == nil || st.frame == nil || c.fenced.Load() || !c.wmu.TryLock() {
		return false
	}
	defer c.wmu.Unlock()
	if c.wr.Len() > 0 || c.wr.err != nil {
		return false
	}
	c.mu.Lock()
	if c.closed || c.pending == nil || len(c.pending) > 0 || len(c.events) > 0 {
		c.mu.Unlock()
		return false
	}
	if _, still := c.topics[t.id]; !still {
		c.mu.Unlock()
		return true // unsubscribed meanwhile
	}
	last, seen := c.sent[t]
	if seen && st.version <= last {
		c.mu.Unlock()
		return true // it has this state or a newer one
	}
	c.sent[t] = st.version
	c.mu.Unlock()
	frame := st.frame
	if c.resp3 {
		// The same push in RESP3: only the first byte differs ('>'
		// for '*'). The buffer is empty (checked above).
		c.wr.WriteRaw(frame)
		c.wr.b[0] = '>'
		frame = c.wr.b
	}
	n := c.writeNow(frame)
	if c.resp3 {
		c.wr.b = c.wr.b[:copy(c.wr.b, c.wr.b[n:])]
	} else if n < len(frame) {
		c.wr.WriteRaw(frame[n:])
	}
	if c.wr.Len() > 0 {
		// The rest waits in the buffer for the push loop's flush,
		// which gives the client the stall timeout to take it.
		c.mu.Lock()
		if !c.closed {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		c.mu.Unlock()
	}
	if seen {
		c.n.stats.pushLatency.Observe(time.Since(st.received).Seconds())
	}
	c.n.stats.pushes.Add(1)
	return true
}

// writeNow writes as much of b as the socket takes without waiting and
// returns how much that was.
func (c *clientConn) writeNow(b []byte) int {
	n := 0
	c.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, err := syscall.Write(int(fd), b[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				break
			}
			n += k
		}
		return true
	})
	return n
}
