package dataserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
)

// fakeMeta answers heartbeats with the table the test sets and every
// HANDOFF with what onHandoff returns (by default a refusal, as for a
// move cancelled meanwhile); with down set it answers nothing at all but
// errors.
type fakeMeta struct {
	mu       sync.Mutex
	table    *slot.Table
	down     atomic.Bool
	handoffs atomic.Int64
	// onHandoff is the RESP reply to a HANDOFF: "" for success, else the
	// error text. Set before serve.
	onHandoff func(h *proto.Handoff) string
	// leaseMs is the lease heartbeat replies carry (0: none, as from a
	// meta before leases were sent); noLeader makes every command answer
	// NOTLEADER naming no leader, as a meta that lost its quorum does.
	leaseMs  uint64
	noLeader atomic.Bool
	// membersEpoch and sessions are the session list heartbeats get
	// (epoch 1 and none unless setSessions is called).
	membersEpoch uint64
	sessions     []proto.Member
}

func (m *fakeMeta) setSessions(epoch uint64, ids ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.membersEpoch, m.sessions = epoch, []proto.Member{}
	for _, id := range ids {
		m.sessions = append(m.sessions, proto.Member{ID: id, Addr: "127.0.0.1:1", Kind: proto.KindSession})
	}
}

func (m *fakeMeta) setTable(t *slot.Table) {
	m.mu.Lock()
	m.table = t
	m.mu.Unlock()
}

func (m *fakeMeta) serve(t *testing.T) string {
	ln := testutil.MustListen(t)
	t.Cleanup(func() { ln.Close() })
	go redcon.Serve(ln, func(conn redcon.Conn, cmd redcon.Command) {
		name := strings.ToLower(string(cmd.Args[0]))
		if name == proto.CmdHandoff {
			m.handoffs.Add(1)
		}
		if m.down.Load() {
			conn.WriteError("UNAVAILABLE meta has no quorum")
			return
		}
		if m.noLeader.Load() {
			conn.WriteError("NOTLEADER ")
			return
		}
		switch name {
		case proto.CmdHeartbeat:
			h, err := proto.ParseHeartbeat(cmd.Args)
			if err != nil {
				conn.WriteError("ERR " + err.Error())
				return
			}
			m.mu.Lock()
			tab, me, sessions := m.table, max(m.membersEpoch, 1), m.sessions
			m.mu.Unlock()
			rep := proto.HeartbeatReply{Epoch: tab.Epoch, MembersEpoch: me, LeaseMs: m.leaseMs}
			if h.Epoch != tab.Epoch {
				rep.Table, _ = tab.Marshal()
			}
			if h.MembersEpoch != me {
				rep.Sessions, _ = json.Marshal(append([]proto.Member{}, sessions...))
			}
			conn.WriteRaw(rep.AppendRESP(nil))
		case proto.CmdHandoff:
			h, err := proto.ParseHandoff(cmd.Args)
			if err != nil {
				conn.WriteError("ERR " + err.Error())
				return
			}
			reply := "ERR handoff refused: the table no longer matches"
			if m.onHandoff != nil {
				reply = m.onHandoff(h)
			}
			if reply == "" {
				conn.WriteInt64(1)
			} else {
				conn.WriteError(reply)
			}
		default:
			conn.WriteError("ERR fake meta: unknown command")
		}
	}, nil, nil)
	return ln.Addr().String()
}

// handoffRig is two data nodes under a fakeMeta: d1 leads every slot and
// d2 follows it (table t1), and write registers a new publisher of a
// dataInfoId in slot through d1.
type handoffRig struct {
	d1, d2 *dataserver.Node
	t1     *slot.Table
	slot   int
	write  func() error
}

func newHandoffRig(t *testing.T, m *fakeMeta) *handoffRig {
	t.Helper()
	metaAddr := m.serve(t)
	start := func(id string) *dataserver.Node {
		d, err := dataserver.New(dataserver.Config{NodeID: id, Listener: testutil.MustListen(t), Metas: []string{metaAddr},
			Heartbeat: 50 * time.Millisecond, ReconcileTimeout: 200 * time.Millisecond, Logger: testutil.Quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	// The addresses are known only once the nodes listen, so t1 is set
	// after.
	m.setTable(&slot.Table{Epoch: 1})
	r := &handoffRig{d1: start("d1"), d2: start("d2")}
	r.t1 = &slot.Table{Epoch: 2, Replicas: 2, Nodes: []slot.Node{{ID: "d1", Addr: r.d1.Addr()}, {ID: "d2", Addr: r.d2.Addr()}}}
	for s := range r.t1.Slots {
		r.t1.Slots[s] = slot.Assignment{Leader: "d1", Followers: []string{"d2"}, LeaderEpoch: 1}
	}
	m.setTable(r.t1)

	const id = "svc.handoff"
	r.slot = slot.Of(id)
	rdb := redis.NewClient(&redis.Options{Addr: r.d1.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	seq := 0
	r.write = func() error {
		seq++
		w := proto.DWrite{Epoch: 0, SessionID: "s1", Ops: []proto.Op{{Type: proto.OpRegister, DataInfoID: id,
			RegisterID: "r" + strconv.Itoa(seq), Data: "x", ConnID: "c1"}}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		vals, err := rdb.Do(ctx, w.Args()...).Slice()
		if err != nil {
			return err
		}
		if e, ok := vals[0].(error); ok {
			return e
		}
		return nil
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		err := r.write()
		return err == nil, "d1 does not take writes to the slot: " + errString(err)
	})
	return r
}

// TestHandoffWithoutMetaKeepsTheSlotWritable: a slot whose move meta
// refuses stays writable. Each refused HANDOFF thaws it for a pause that
// doubles, so the leader does not keep it frozen retrying; and while meta
// answers no heartbeat the leader does not freeze it at all.
func TestHandoffWithoutMetaKeepsTheSlotWritable(t *testing.T) {
	m := &fakeMeta{}
	r := newHandoffRig(t, m)
	s, t1, write := r.slot, r.t1, r.write

	// Table 2: the slot is being moved to d2, and meta refuses HANDOFF.
	t2 := t1.Clone()
	t2.Epoch = 3
	t2.Slots[s].Target = "d2"
	m.setTable(t2)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return m.handoffs.Load() > 0, "d1 never tried the handoff"
	})
	// Over the next 2 s the slot is frozen only for the attempts: a
	// handful, with writes going through in between.
	from := m.handoffs.Load()
	ok, failed := 0, 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if write() == nil {
			ok++
		} else {
			failed++
		}
	}
	attempts := m.handoffs.Load() - from
	if attempts > 6 {
		t.Errorf("%d HANDOFF attempts in 2 s: the leader retries without pause", attempts)
	}
	if ok == 0 || failed*10 > ok+failed {
		t.Errorf("%d of %d writes to the slot refused while its handoff kept failing, want under a tenth", failed, ok+failed)
	}

	// Meta goes away: once its heartbeats fail the leader no longer
	// freezes the slot, and every write goes through.
	m.down.Store(true)
	downAt := time.Now()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		// Past the second in which the last answered heartbeat still
		// counts, and with a write through.
		err := write()
		return err == nil && time.Since(downAt) > 1500*time.Millisecond, "write refused: " + errString(err)
	})
	from = m.handoffs.Load()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		if err := write(); err != nil {
			t.Fatalf("write to the slot refused while meta is down: %v", err)
		}
	}
	if n := m.handoffs.Load() - from; n != 0 {
		t.Fatalf("%d HANDOFF attempts reached meta while it was down", n)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestHandoffLostReplyKeepsTheSlotFrozen: meta commits a HANDOFF but its
// reply is lost (a timeout, a meta leader that lost office mid-commit),
// and the old leader's heartbeats keep bringing the table from before it.
// The old leader must not thaw the slot and take writes as its leader:
// meta has already made d2 the leader, which would never see them. It
// keeps the slot frozen, sends the HANDOFF again, and once meta answers
// the repeat (with success: it was applied) it is a follower.
func TestHandoffLostReplyKeepsTheSlotFrozen(t *testing.T) {
	m := &fakeMeta{}
	var lost atomic.Int64 // unix nanos of the lost reply
	var t3 atomic.Pointer[slot.Table]
	m.onHandoff = func(*proto.Handoff) string {
		if lost.CompareAndSwap(0, time.Now().UnixNano()) {
			return "UNAVAILABLE meta m1: finish-move: timed out enqueuing operation"
		}
		if time.Since(time.Unix(0, lost.Load())) < 2*time.Second {
			return "UNAVAILABLE meta has no quorum"
		}
		m.setTable(t3.Load()) // the table meta committed, served at last
		return ""
	}
	r := newHandoffRig(t, m)
	s := r.slot

	t2 := r.t1.Clone()
	t2.Epoch = 3
	t2.Slots[s].Target = "d2"
	next := t2.Clone()
	next.Epoch = 4
	next.Slots[s] = slot.Assignment{Leader: "d2", Followers: []string{"d1"}, LeaderEpoch: 2}
	t3.Store(next)
	m.setTable(t2)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return lost.Load() != 0, "d1 never tried the handoff"
	})
	// From the lost reply on, d1 must refuse every write to the slot:
	// d2 leads it as far as meta is concerned.
	accepted := 0
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		if r.write() == nil {
			accepted++
		}
	}
	if accepted > 0 {
		t.Fatalf("d1 took %d writes to slot %d after meta committed its handoff to d2", accepted, s)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		tab := r.d1.Table()
		return tab.Epoch == 4, fmt.Sprintf("after %d HANDOFFs d1 is at table epoch %d", m.handoffs.Load(), tab.Epoch)
	})
	if n := m.handoffs.Load(); n < 3 {
		t.Fatalf("%d HANDOFFs, want the lost one and its repeats", n)
	}
}

// TestLeaseLapseFencesWrites: a data leader whose heartbeats meta stops
// answering takes no writes once its lease may have lapsed (meta may have
// promoted a follower that would never see them), and takes them again
// when meta answers. A meta that answers but knows no leader (its quorum
// lost) cannot evict anyone: writes go on.
func TestLeaseLapseFencesWrites(t *testing.T) {
	m := &fakeMeta{leaseMs: 600}
	r := newHandoffRig(t, m)

	m.down.Store(true) // unanswered heartbeats, as when cut off from meta
	var err error
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		err = r.write()
		return err != nil && strings.Contains(err.Error(), "lease"), "write after meta went silent: " + errString(err)
	})
	if !strings.HasPrefix(err.Error(), "UNAVAILABLE") {
		t.Fatalf("fenced write refused with %q, want UNAVAILABLE", err)
	}
	m.down.Store(false)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		err := r.write()
		return err == nil, "write after meta answered again: " + errString(err)
	})

	m.noLeader.Store(true)
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
		if err := r.write(); err != nil {
			t.Fatalf("write refused while the only meta says it has no leader: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
