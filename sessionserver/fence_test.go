package sessionserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// fenceRig is a session under a fake meta (lease 300 ms) and a fake data
// node (grace 400 ms), either of which can stop answering.
type fenceRig struct {
	s                  *Node
	metaDown, dataDown atomic.Bool
	// aliveDown fails DALIVE alone: the data node's change stream
	// still answers.
	aliveDown atomic.Bool
	alives    atomic.Int64
	// droppedAt, when set, makes the data node answer DALIVE with
	// DROPPED (unix ms) until a DALIVE RESET; resets counts those.
	droppedAt, resets atomic.Int64
	// pubsAtReset is how many publishers the session's registry held
	// when the data node was first told RESET (-1 before).
	pubsAtReset atomic.Int64
	// hold, while open, holds every DWRITE's reply.
	hold chan struct{}
	// subscribes and unsubscribes count the change stream's commands
	// per id; every SUBSCRIBE is answered with the id's datum at
	// version 7, as a data node sends the current state.
	streamMu                sync.Mutex
	subscribes, unsubscribe map[string]int
}

// streamCounts returns how often id was subscribed and unsubscribed.
func (r *fenceRig) streamCounts(id string) (sub, unsub int) {
	r.streamMu.Lock()
	defer r.streamMu.Unlock()
	return r.subscribes[id], r.unsubscribe[id]
}

// newFenceRigClient is a fence rig with one client connected, its PING
// answered.
func newFenceRigClient(t *testing.T) (*fenceRig, net.Conn) {
	t.Helper()
	r := newFenceRig(t)
	c, rep := ping(t, r.s.Addr())
	if rep != "+PONG" {
		t.Fatalf("PING = %q", rep)
	}
	return r, c
}

func serveFake(t *testing.T, handle func(redcon.Conn, redcon.Command)) string {
	t.Helper()
	ln := testutil.MustListen(t)
	srv := redcon.NewServer("", handle, nil, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func newFenceRig(t *testing.T) *fenceRig {
	t.Helper()
	return newFenceRigWith(t, nil)
}

// newFenceRigWith is newFenceRig with set applied to the rig before the
// session starts.
func newFenceRigWith(t *testing.T, set func(*fenceRig)) *fenceRig {
	t.Helper()
	r := &fenceRig{hold: make(chan struct{}), subscribes: map[string]int{}, unsubscribe: map[string]int{}}
	if set != nil {
		set(r)
	}
	t.Cleanup(func() { close(r.hold) })
	r.pubsAtReset.Store(-1)
	dataAddr := serveFake(t, func(conn redcon.Conn, cmd redcon.Command) {
		if r.dataDown.Load() {
			conn.WriteError("UNAVAILABLE cut off")
			return
		}
		if strings.EqualFold(string(cmd.Args[0]), proto.CmdDAlive) {
			r.alives.Add(1)
			if r.aliveDown.Load() {
				conn.WriteError("UNAVAILABLE cut off")
				return
			}
			a, err := proto.ParseDAlive(cmd.Args)
			if err != nil {
				conn.WriteError("ERR " + err.Error())
				return
			}
			if a.Reset {
				r.pubsAtReset.CompareAndSwap(-1, int64(r.s.pubs.count()))
				r.resets.Add(1)
				r.droppedAt.Store(0)
			}
			if at := r.droppedAt.Load(); at != 0 {
				conn.WriteError(fmt.Sprintf("DROPPED %d session %s dropped", at, a.Session))
				return
			}
			conn.WriteInt64(400)
			return
		}
		switch strings.ToLower(string(cmd.Args[0])) {
		case "subscribe", "unsubscribe":
			kind := strings.ToLower(string(cmd.Args[0]))
			for _, a := range cmd.Args[1:] {
				id := string(a)
				r.streamMu.Lock()
				if kind == "subscribe" {
					r.subscribes[id]++
				} else {
					r.unsubscribe[id]++
				}
				r.streamMu.Unlock()
				conn.WriteArray(3)
				conn.WriteBulkString(kind)
				conn.WriteBulkString(id)
				conn.WriteInt(1)
				if kind == "subscribe" {
					d := proto.Datum{DataInfoID: id, Version: 7, Entries: []proto.Entry{{RegisterID: "p1", Data: "10.0.0.1:80"}}}
					conn.WriteArray(3)
					conn.WriteBulkString("message")
					conn.WriteBulkString(id)
					conn.WriteBulk(d.AppendBinary(nil))
				}
			}
			return
		case "ping":
			conn.WriteArray(2)
			conn.WriteBulkString("pong")
			conn.WriteBulkString("")
			return
		}
		if strings.EqualFold(string(cmd.Args[0]), proto.CmdDWrite) && r.hold != nil {
			<-r.hold
		}
		conn.WriteError("ERR fake data node")
	})
	tab := &slot.Table{Epoch: 1, Replicas: 1, Nodes: []slot.Node{{ID: "d1", Addr: dataAddr}}}
	for s := range tab.Slots {
		tab.Slots[s] = slot.Assignment{Leader: "d1", LeaderEpoch: 1}
	}
	tj, err := tab.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	metaAddr := serveFake(t, func(conn redcon.Conn, cmd redcon.Command) {
		if r.metaDown.Load() {
			conn.WriteError("UNAVAILABLE cut off")
			return
		}
		if !strings.EqualFold(string(cmd.Args[0]), proto.CmdHeartbeat) {
			conn.WriteError("ERR fake meta")
			return
		}
		h, err := proto.ParseHeartbeat(cmd.Args)
		if err != nil {
			conn.WriteError("ERR " + err.Error())
			return
		}
		rep := proto.HeartbeatReply{Epoch: 1, MembersEpoch: 1, LeaseMs: 300}
		if h.Epoch != 1 {
			rep.Table = tj
		}
		if h.MembersEpoch != 1 {
			rep.Sessions = []byte(`[]`)
		}
		conn.WriteRaw(rep.AppendRESP(nil))
	})
	s, err := New(Config{NodeID: "s1", Listener: testutil.MustListen(t), Metas: []string{metaAddr},
		Heartbeat: 50 * time.Millisecond, Logger: testutil.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r.s = s
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return s.Table() != nil && r.alives.Load() > 0, "no table or no DALIVE yet"
	})
	return r
}

// ping opens a client connection and sends PING; it returns the
// connection and the first reply line.
func ping(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("PING\r\n"))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return c, strings.TrimSpace(line)
}

// TestSessionFencesWhenCutOffFromMetaAndData: a session that meta no
// longer answers keeps its clients while the data nodes hear its DALIVEs
// (they keep its publishers); once the data nodes do not either, it
// closes its clients' connections and turns new ones away, so they
// publish again elsewhere, until it is back in touch.
func TestSessionFencesWhenCutOffFromMetaAndData(t *testing.T) {
	r, c1 := newFenceRigClient(t)

	// Cut off from meta alone: well past lease + grace, the client stays.
	r.metaDown.Store(true)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		left, _ := r.s.meta.LeaseLeft()
		return left < -time.Second, "lease not yet over by a second"
	})
	c1.SetDeadline(time.Now().Add(5 * time.Second))
	c1.Write([]byte("PING\r\n"))
	br := bufio.NewReader(c1)
	if line, err := br.ReadString('\n'); err != nil || strings.TrimSpace(line) != "+PONG" {
		t.Fatalf("cut off from meta alone, the client got %q, %v", line, err)
	}
	if n := r.s.stats.fenced.Load(); n != 0 {
		t.Fatalf("fenced %d times while the data nodes heard it", n)
	}

	// And from the data nodes: the client is disconnected, a new one
	// refused.
	r.dataDown.Store(true)
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the client's connection got data instead of being closed")
	}
	if _, rep := ping(t, r.s.Addr()); !strings.HasPrefix(rep, "-UNAVAILABLE") || !strings.Contains(rep, "cut off") {
		t.Fatalf("a new client of the fenced session got %q", rep)
	}
	if n := r.s.stats.fenced.Load(); n != 1 {
		t.Fatalf("fenced %d times, want 1", n)
	}

	// Back in touch: clients are taken again.
	r.metaDown.Store(false)
	r.dataDown.Store(false)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		_, rep := ping(t, r.s.Addr())
		return rep == "+PONG", "a new client got " + rep
	})
}

// TestFencedSessionResetsItsClientsWhenBackInTouch: a fencing session
// half-closes its clients' connections (a FIN: a client that can reach it
// leaves) and keeps the sockets until it is back in touch, then resets
// them, so that a client cut off along with the session, which the FIN
// did not reach, learns of the close right after the heal instead of at
// TCP's next retransmission.
func TestFencedSessionResetsItsClientsWhenBackInTouch(t *testing.T) {
	r, c1 := newFenceRigClient(t)
	r.metaDown.Store(true)
	r.dataDown.Store(true)
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	if n, err := c1.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("fenced: the client read %q, %v; want the end of the stream (a FIN)", buf[:n], err)
	}
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		return len(r.s.lingering) == 1, fmt.Sprintf("%d sockets lingering, want 1", len(r.s.lingering))
	})
	// The socket is open: what the client sends is taken, not reset.
	if _, err := c1.Write([]byte("PING\r\n")); err != nil {
		t.Fatalf("write to the half-closed connection: %v", err)
	}
	if _, err := c1.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after writing to the lingering socket: %v, want EOF", err)
	}

	r.metaDown.Store(false)
	r.dataDown.Store(false)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		// The client here got the FIN, so the reset shows as EPIPE on a
		// write; one that did not (cut off) gets ECONNRESET.
		c1.SetDeadline(time.Now().Add(time.Second))
		_, err := c1.Write([]byte("PING\r\n"))
		if err == nil {
			_, err = c1.Read(buf)
		}
		reset := errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
		return reset, fmt.Sprintf("the client got %v, want a reset (fenced %v)", err, r.s.isFenced())
	})
	r.s.mu.Lock()
	left := len(r.s.lingering)
	r.s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d sockets still lingering once back in touch", left)
	}
}

// TestSessionClosesClientsWhenADataNodeDroppedIt: a session that a data
// node says it dropped (it was paused past lease and grace, say) closes
// every client connection, whose publishers went, tells the node
// (RESET), and takes clients again at once.
func TestSessionClosesClientsWhenADataNodeDroppedIt(t *testing.T) {
	r, c1 := newFenceRigClient(t)
	// The client registers a publisher, whose write the data node holds:
	// the connection's goroutine waits on it, and cannot clean up.
	c1.Write([]byte("REGISTER svc p1 10.0.0.1:80\r\n"))
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return r.s.pubs.count() == 1, "the REGISTER is not in the session's registry"
	})

	r.droppedAt.Store(time.Now().UnixMilli())
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(c1).ReadString('\n'); err == nil {
		t.Fatal("the client's connection got data instead of being closed")
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return r.resets.Load() > 0 && r.droppedAt.Load() == 0, "no DALIVE RESET"
	})
	// Before the session let the data node take its syncs again (RESET),
	// the closed connection's publisher had left its registry: a
	// reconcile could not bring it back only for the connection's cleanup
	// to remove it again.
	if n := r.pubsAtReset.Load(); n != 0 {
		t.Fatalf("the session's registry held %d publishers when it sent RESET, want 0", n)
	}
	if _, rep := ping(t, r.s.Addr()); rep != "+PONG" {
		t.Fatalf("a new client after the reset got %q", rep)
	}
	if n := r.s.stats.fenced.Load(); n != 1 {
		t.Fatalf("closed its clients %d times, want 1", n)
	}
}

// TestStalledSessionChecksBeforeReplying: after a stall of the process
// (here simulated: the stall watch's last tick 2 s ago), a write's reply
// waits for a DALIVE round; when a data node answers that it dropped the
// session meanwhile, the client's connection is closed before the wait
// ends, so the client is never told its write went through.
func TestStalledSessionChecksBeforeReplying(t *testing.T) {
	r, c1 := newFenceRigClient(t)
	r.droppedAt.Store(time.Now().UnixMilli())
	r.s.alive.tick.Store(time.Now().Add(-2 * time.Second).UnixNano())
	r.s.awaitStallCheck()
	if n := r.s.stats.fenced.Load(); n != 1 {
		t.Fatalf("the stall check returned with the clients closed %d times, want 1 (before it returned)", n)
	}
	c1.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c1).ReadString('\n'); err == nil {
		t.Fatal("the client's connection got data instead of being closed")
	}
}

// A data node that acknowledges a DALIVE again after a gap is back: the
// session reconciles its slots then rather than at the next periodic
// check.
func TestAliveNoteSaysWhenANodeIsBack(t *testing.T) {
	var b aliveBook
	t0 := time.Now()
	gap := 1500 * time.Millisecond
	steps := []struct {
		sent time.Duration
		back bool
	}{
		{0, false},                      // the first answer: nothing to come back from
		{500 * time.Millisecond, false}, // the next round
		{time.Second, false},
		{4 * time.Second, true}, // 3 s without one: a partition healed
		{4500 * time.Millisecond, false},
	}
	for _, st := range steps {
		if got := b.note("d1", t0.Add(st.sent), time.Second, gap); got != st.back {
			t.Fatalf("DALIVE sent at +%v: back %v, want %v", st.sent, got, st.back)
		}
	}
	if b.note("d2", t0.Add(10*time.Second), time.Second, gap) {
		t.Fatal("another node's first answer counts as back")
	}
}
