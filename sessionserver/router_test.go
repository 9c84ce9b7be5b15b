package sessionserver

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// leadAll is a table at epoch in which node "d1" at addr leads every slot.
func leadAll(epoch uint64, id, addr string) *slot.Table {
	t := &slot.Table{Epoch: epoch, Replicas: 1, Nodes: []slot.Node{{ID: id, Addr: addr}}}
	for s := range t.Slots {
		t.Slots[s] = slot.Assignment{Leader: id, LeaderEpoch: 1}
	}
	return t
}

// A NOTOWNER hint routes its slot only while it is newer than the
// session's table and than any hint already held.
func TestRouterHints(t *testing.T) {
	const id = "svc"
	s := slot.Of(id)
	type step struct {
		table *slot.Table          // stored before the step, if set
		hint  *proto.NotOwnerError // learnt in the step, if set
		took  bool                 // what learn reports
		want  string               // the address the slot routes to then
	}
	no := func(slot int, addr string, epoch uint64) *proto.NotOwnerError {
		return &proto.NotOwnerError{Slot: slot, Owner: "n-" + addr, Addr: addr, Epoch: epoch}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"table alone", []step{{table: leadAll(5, "d1", "a1"), want: "a1"}}},
		{"newer hint wins over the table", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a2", 6), took: true, want: "a2"}}},
		{"hint as old as the table is ignored", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a2", 5), want: "a1"}}},
		{"older hint is ignored", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a2", 4), want: "a1"}}},
		{"older hint does not replace a newer one", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a3", 8), took: true, want: "a3"},
			{hint: no(s, "a2", 7), want: "a3"}}},
		{"newer hint replaces an older one", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a2", 7), took: true, want: "a2"},
			{hint: no(s, "a3", 8), took: true, want: "a3"}}},
		{"newer table replaces the hint", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "a2", 7), took: true, want: "a2"},
			{table: leadAll(7, "d4", "a4"), want: "a4"},
			{hint: no(s, "a2", 7), want: "a4"}}},
		{"hint without an address is ignored", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(s, "", 9), want: "a1"}}},
		{"hint for another slot leaves this one", []step{
			{table: leadAll(5, "d1", "a1"), hint: no((s+1)%slot.Count, "a2", 9), took: true, want: "a1"}}},
		{"hint for a slot out of range is ignored", []step{
			{table: leadAll(5, "d1", "a1"), hint: no(slot.Count, "a2", 9), want: "a1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := mustNode(t, Limits{})
			for i, st := range tc.steps {
				if st.table != nil {
					n.table.Store(st.table)
				}
				if st.hint != nil {
					if took := n.router.learn(st.hint); took != st.took {
						t.Fatalf("step %d: learn = %v, want %v", i, took, st.took)
					}
				}
				if got, err := n.router.leaderAddr(id); err != nil || got != st.want {
					t.Fatalf("step %d: routes to %q (%v), want %q", i, got, err, st.want)
				}
			}
		})
	}
}

// moved takes only a NOTOWNER for the request's own slot.
func TestRouterMovedNeedsItsSlot(t *testing.T) {
	n := mustNode(t, Limits{})
	n.table.Store(leadAll(5, "d1", "a1"))
	err := fmt.Errorf("write: %w", &proto.NotOwnerError{Slot: 3, Owner: "d2", Addr: "a2", Epoch: 6})
	if n.router.moved(err, 4) {
		t.Fatal("a NOTOWNER for slot 3 moved slot 4")
	}
	if n.router.moved(proto.Errorf(proto.ErrUnavailable, "x"), 3) {
		t.Fatal("an UNAVAILABLE moved a slot")
	}
	if !n.router.moved(err, 3) {
		t.Fatal("a wrapped NOTOWNER with a newer epoch did not move its slot")
	}
}

// fakeData is a data node that answers DWRITE op by op with reply.
func fakeData(t *testing.T, reply func(op proto.Op) any) (addr string, writes *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes = new(atomic.Int64)
	srv := redcon.NewServer(ln.Addr().String(), func(conn redcon.Conn, cmd redcon.Command) {
		w, err := proto.ParseDWrite(cmd.Args)
		if err != nil {
			conn.WriteError(proto.ToRESP(err))
			return
		}
		writes.Add(int64(len(w.Ops)))
		conn.WriteArray(len(w.Ops))
		for _, op := range w.Ops {
			switch v := reply(op).(type) {
			case error:
				conn.WriteError(proto.ToRESP(v))
			default:
				conn.WriteInt64(v.(int64))
			}
		}
	}, nil, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), writes
}

// routedNode is a session node whose router writes, with the given write
// timeout, and whose meta client reaches no meta: the table is the test's.
func routedNode(t *testing.T, writeTimeout time.Duration) *Node {
	t.Helper()
	n := mustNode(t, Limits{})
	n.cfg.WriteTimeout, n.cfg.MaxBatch = writeTimeout, 16
	mc, err := metaclient.NewClient(metaclient.Config{Kind: proto.KindSession, NodeID: "s-test", Addr: "127.0.0.1:1",
		Metas: []string{"127.0.0.1:1"}, OnTable: n.onTable, AttemptTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.meta = mc
	t.Cleanup(mc.Close)
	return n
}

// A write refused with NOTOWNER naming an owner with a newer table goes
// to that owner at once: the session's table never changes here (meta
// does not answer), so only the hint can get it applied.
func TestRefusedWriteFollowsTheNamedOwner(t *testing.T) {
	newAddr, newWrites := fakeData(t, func(proto.Op) any { return int64(42) })
	oldAddr, oldWrites := fakeData(t, func(op proto.Op) any {
		return &proto.NotOwnerError{Slot: slot.Of(op.DataInfoID), Owner: "d2", Addr: newAddr, Epoch: 9}
	})
	n := routedNode(t, 3*time.Second)
	n.table.Store(leadAll(5, "d1", oldAddr))
	defer n.router.close()

	start := time.Now()
	op := proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "d", TTL: 10}
	req := n.router.submit(&op, make(chan struct{}))
	<-req.done
	if req.err != nil || req.res != 42 {
		t.Fatalf("write: %d, %v", req.res, req.err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the redirected write took %v", took)
	}
	if oldWrites.Load() != 1 || newWrites.Load() != 1 {
		t.Fatalf("old owner got %d writes, new owner %d", oldWrites.Load(), newWrites.Load())
	}
	// The next write to the slot goes to the new owner directly.
	req = n.router.submit(&op, make(chan struct{}))
	<-req.done
	if req.err != nil || oldWrites.Load() != 1 || newWrites.Load() != 2 {
		t.Fatalf("second write: %v; old owner %d writes, new owner %d", req.err, oldWrites.Load(), newWrites.Load())
	}
}

// A write waiting on a data node that hangs (it accepted the connection
// and never answers) goes to the slot's new leader as soon as the session
// adopts a table without the hung node, not after the link's 5 s read
// timeout; and later writes skip the hung node.
func TestWriteLeavesAHungNodeThatLeftTheTable(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel does the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	newAddr, newWrites := fakeData(t, func(proto.Op) any { return int64(42) })
	n := routedNode(t, 20*time.Second)
	t5, t6 := leadAll(5, "d1", hung.Addr().String()), leadAll(6, "d2", newAddr)
	n.table.Store(t5)
	defer n.router.close()

	op := proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "d", TTL: 10}
	req := n.router.submit(&op, make(chan struct{}))
	l := n.router.link(hung.Addr().String())
	awaitDialed(t, l, "the write out to the hung node")
	left := time.Now()
	n.table.Store(t6) // as onTable adopts it
	n.router.leftTable(t5, t6)
	<-req.done
	if req.err != nil || req.res != 42 {
		t.Fatalf("write: %d, %v", req.res, req.err)
	}
	if took := time.Since(left); took >= 5*time.Second {
		t.Fatalf("the write waited %v on the hung node, its whole read timeout", took)
	}
	req = n.router.submit(&op, make(chan struct{}))
	<-req.done
	if req.err != nil || newWrites.Load() != 2 {
		t.Fatalf("second write: %v; the new leader got %d writes", req.err, newWrites.Load())
	}
}

// A client's write queued behind a batch to a node that does not answer
// (a clean-up write, whose deadline is three write timeouts) is answered
// with a timeout at its own deadline, not when that batch gives up.
func TestClientWriteAnsweredByItsDeadline(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel does the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	n := routedNode(t, time.Second)
	n.table.Store(leadAll(5, "d1", hung.Addr().String()))
	defer n.router.close()

	bg := proto.Op{Type: proto.OpUnregister, DataInfoID: "svc", RegisterID: "old"}
	n.router.submit(&bg, nil) // nobody waits: deadline 3 s
	l := n.router.link(hung.Addr().String())
	awaitDialed(t, l, "the clean-up write out")
	c := mustConn(t, n)
	start := time.Now()
	got := do(t, c, "REGISTER", "svc", "r1", "10.0.0.1:80")
	took := time.Since(start)
	if len(got) != 1 || !strings.HasPrefix(errText(got[0]), "TIMEOUT") {
		t.Fatalf("reply %#v, want a TIMEOUT error", got)
	}
	if took >= 2500*time.Millisecond {
		t.Fatalf("the client waited %v; its write timeout is 1 s, the batch ahead of it 3 s", took)
	}
}

// awaitDialed waits until the link has dialed its write connection: what
// (a batch) is on its way to the node.
func awaitDialed(t *testing.T, l *link, what string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return l.cur.Load() != nil, what + ": never sent"
	})
}

// A session's first table may already name leaders that took their slots
// after the session joined; each waits for the session's reconcile before
// it serves, so the session reconciles at once rather than at its next
// periodic check (an hour here).
func TestFirstTableReconcilesWithItsLeaders(t *testing.T) {
	asked := make(chan int, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := redcon.NewServer(ln.Addr().String(), func(conn redcon.Conn, cmd redcon.Command) {
		r, err := proto.ParseDReconcile(cmd.Args)
		if err != nil {
			conn.WriteError(proto.ToRESP(err))
			return
		}
		asked <- len(r.Slots)
		conn.WriteArray(len(r.Slots))
		for range r.Slots {
			conn.WriteInt64(1)
		}
	}, nil, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	n := routedNode(t, time.Second)
	n.cfg.ReconcileInterval = time.Hour
	n.kick = make(chan []int, 1)
	n.subs.init(n)
	n.bgWg.Add(1)
	go n.reconcileLoop()
	t.Cleanup(func() { close(n.stop); n.bgWg.Wait() })

	n.onTable(leadAll(3, "d1", ln.Addr().String()))
	select {
	case got := <-asked:
		if got != slot.Count {
			t.Fatalf("the first reconcile covered %d slots, want all %d", got, slot.Count)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DRECONCILE reached the leaders of the session's first table")
	}
}

// TestReconcileLooksAgainBeforeSendingTheList: a digest that differed
// while writes were in flight is compared once more with the slot's
// writes held back; the whole publisher list (DSYNC) goes only if the
// leader still disagrees.
func TestReconcileLooksAgainBeforeSendingTheList(t *testing.T) {
	for _, tc := range []struct {
		name      string
		agreeFrom int // the DRECONCILE from which on the leader agrees (0: never)
		syncs     int64
	}{
		{"agrees on the second look", 2, 0},
		{"still differs", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asks, syncs atomic.Int64
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := redcon.NewServer(ln.Addr().String(), func(conn redcon.Conn, cmd redcon.Command) {
				if r, err := proto.ParseDReconcile(cmd.Args); err == nil {
					agree := int64(0)
					if n := asks.Add(1); tc.agreeFrom > 0 && n >= int64(tc.agreeFrom) {
						agree = 1
					}
					conn.WriteArray(len(r.Slots))
					for range r.Slots {
						conn.WriteInt64(agree)
					}
					return
				}
				if _, err := proto.ParseDSync(cmd.Args); err == nil {
					syncs.Add(1)
					conn.WriteInt(0)
					return
				}
				conn.WriteError("ERR unexpected " + string(cmd.Args[0]))
			}, nil, nil)
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			n := routedNode(t, time.Second)
			n.table.Store(leadAll(3, "d1", ln.Addr().String()))
			if failed := n.reconcile([]int{5}, 2*time.Second); len(failed) != 0 {
				t.Fatalf("slot 5 not reconciled: %v", failed)
			}
			if asks.Load() != 2 || syncs.Load() != tc.syncs {
				t.Fatalf("%d DRECONCILEs and %d DSYNCs, want 2 and %d", asks.Load(), syncs.Load(), tc.syncs)
			}
		})
	}
}
