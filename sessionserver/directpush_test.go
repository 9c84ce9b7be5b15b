package sessionserver

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/slot"
)

// tcpSubscriber is subscribedConn over a loopback TCP connection, so
// pushes can be written directly (directpush.go); the push loop is not
// started.
func tcpSubscriber(t *testing.T, n *Node, id string) (*clientConn, *bufio.Reader, net.Conn) {
	t.Helper()
	ln := listen(t)
	nc, peer := tcpPair(t, ln)
	c, r, peer := subscriberOn(t, n, id, nc, peer)
	if c.raw == nil {
		t.Fatal("a loopback TCP connection has no socket to write to")
	}
	return c, r, peer
}

// listen is a loopback listener, closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair is a loopback connection through ln: the server's end and the
// client's.
func tcpPair(t *testing.T, ln net.Listener) (nc, peer net.Conn) {
	t.Helper()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if nc, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return nc, peer
}

// A change is written to a subscriber by the goroutine that delivers it:
// the push arrives with the connection's push loop not running, and the
// loop is not woken.
func TestDirectPushNeedsNoPushLoop(t *testing.T) {
	n := mustNode(t, Limits{})
	n.subs.init(n)
	c, r, peer := tcpSubscriber(t, n, "svc")
	for v := uint64(1); v <= 3; v++ {
		n.subs.deliver(datum("svc", v, "r", "d"))
		got, ok := nextVersion(t, r, peer, 5*time.Second)
		if !ok || got != v {
			t.Fatalf("push %d: got version %d (ok %v)", v, got, ok)
		}
	}
	if len(c.wake) != 0 {
		t.Fatal("the push loop was woken for pushes written directly")
	}
	// A RESP3 connection gets the same push as a RESP3 push.
	c.wmu.Lock()
	c.resp3 = true
	c.wmu.Unlock()
	n.subs.deliver(datum("svc", 4, "r", "d"))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := r.Peek(1); err != nil || b[0] != '>' {
		t.Fatalf("a RESP3 subscriber's push begins %q (%v), want '>'", b, err)
	}
	if got, ok := nextVersion(t, r, peer, 5*time.Second); !ok || got != 4 {
		t.Fatalf("RESP3 push: got version %d (ok %v)", got, ok)
	}
	if len(c.wake) != 0 {
		t.Fatal("the push loop was woken for a RESP3 push written directly")
	}
}

// What the socket does not take at once is left to the push loop, which
// sends it whole and in order, then the newest state.
func TestDirectPushLeavesTheRestToThePushLoop(t *testing.T) {
	for _, resp3 := range []bool{false, true} {
		t.Run(map[bool]string{false: "RESP2", true: "RESP3"}[resp3], func(t *testing.T) {
			n := mustNode(t, Limits{})
			n.subs.init(n)
			c, r, peer := tcpSubscriber(t, n, "svc")
			c.resp3 = resp3
			// Small socket buffers, so the first push does not fit.
			peer.(*net.TCPConn).SetReadBuffer(64 << 10)
			c.nc.(*net.TCPConn).SetWriteBuffer(64 << 10)
			big := strings.Repeat("x", 1<<20)
			// The client reads nothing: the first push fills the socket
			// and the rest of it stays in the buffer; later ones wait
			// for the loop.
			for v := uint64(1); v <= 5; v++ {
				n.subs.deliver(datum("svc", v, "r", big))
			}
			c.wmu.Lock()
			held := c.wr.Len()
			c.wmu.Unlock()
			if held == 0 {
				t.Fatal("a 1 MiB push to a client that reads nothing was taken whole by the socket")
			}
			n.wg.Add(1)
			go c.pushLoop()
			want := byte('*')
			if resp3 {
				want = '>'
			}
			var got []uint64
			for len(got) == 0 || got[len(got)-1] != 5 {
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				if b, err := r.Peek(1); err != nil || b[0] != want {
					t.Fatalf("after versions %v a push begins %q (%v), want %q", got, b, err, want)
				}
				v, ok := nextVersion(t, r, peer, 5*time.Second)
				if !ok {
					t.Fatalf("got %v, then nothing; want up to version 5", got)
				}
				got = append(got, v)
			}
			if len(got) != 2 || got[0] != 1 {
				t.Fatalf("got versions %v, want [1 5]: the first, sent in part directly, then the newest", got)
			}
		})
	}
}

// A client that takes nothing is still disconnected after the stall
// timeout when its pushes were written directly.
func TestDirectPushKeepsTheStallTimeout(t *testing.T) {
	n := mustNode(t, Limits{ClientStallTimeout: 200 * time.Millisecond})
	n.subs.init(n)
	c, _, _ := tcpSubscriber(t, n, "svc")
	n.wg.Add(1)
	go c.pushLoop()
	n.subs.deliver(datum("svc", 1, "r", strings.Repeat("x", 4<<20)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.wmu.Lock()
		err := c.wr.err
		c.wmu.Unlock()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that read nothing was not disconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.stats.stalled.Load(); got != 1 {
		t.Fatalf("stalled clients counted %d, want 1", got)
	}
}

// A large fan-out is written from goroutines of its own, so the feed goes
// on to its other topics; a newer state that comes while it is being
// written goes to the push loops, which send the newest.
func TestLargeFanoutLeavesTheFeed(t *testing.T) {
	n := mustNode(t, Limits{})
	n.subs.init(n)
	const id, subs = "big", pushSpread + 16
	ln := listen(t)
	tp := &topic{id: id, subs: map[*clientConn]struct{}{}}
	n.subs.slots[slot.Of(id)].topics[topicKey{id: id}] = tp
	conns := make([]*clientConn, subs)
	readers := make([]*bufio.Reader, subs)
	peers := make([]net.Conn, subs)
	for i := range conns {
		nc, peer := tcpPair(t, ln)
		c := &clientConn{n: n, nc: nc, id: "inc." + strconv.Itoa(i), wr: newRespWriter(nc), raw: rawConn(nc),
			owned: map[pubKey]struct{}{}, topics: map[string]*topic{id: tp}, authed: true,
			wake: make(chan struct{}, 1), pending: map[*topic]struct{}{}, sent: map[*topic]uint64{}}
		tp.subs[c] = struct{}{}
		conns[i], readers[i], peers[i] = c, bufio.NewReader(peer), peer
		t.Cleanup(func() { peer.Close(); nc.Close() })
	}
	// The feed does not wait for the writes: with one subscriber held
	// (its mu taken, so the fan-out stops there), deliver returns.
	conns[0].mu.Lock()
	returned := make(chan struct{})
	go func() {
		n.subs.deliver(datum(id, 1, "r", "d"))
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the feed waited for a large fan-out's writes")
	}
	if !tp.fanning.Load() {
		t.Fatal("no fan-out in flight while a subscriber was held")
	}
	conns[0].mu.Unlock()
	// Every subscriber gets the state, written directly: no push loop
	// runs here.
	for i := range conns {
		if v, ok := nextVersion(t, readers[i], peers[i], 5*time.Second); !ok || v != 1 {
			t.Fatalf("subscriber %d: version %d (ok %v)", i, v, ok)
		}
	}
	n.subs.feedWg.Wait()
	// While a fan-out of the topic is being written, a newer state is
	// left to the push loops: every subscriber is marked, none written.
	tp.fanning.Store(true)
	n.subs.deliver(datum(id, 2, "r", "d"))
	for i, c := range conns {
		c.mu.Lock()
		_, marked := c.pending[tp]
		c.mu.Unlock()
		if !marked || len(c.wake) != 1 {
			t.Fatalf("subscriber %d: not left to its push loop (marked %v)", i, marked)
		}
	}
	tp.fanning.Store(false)
}
