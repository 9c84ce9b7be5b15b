package dataserver

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func mustUnit(t *testing.T) *slotUnit {
	t.Helper()
	return newSlotUnit(5, 100, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// mustLeader is a unit that leads its slot at leader epoch 1, ready.
func mustLeader(t *testing.T) *slotUnit {
	t.Helper()
	u := mustUnit(t)
	a := slot.Assignment{Leader: "d1", LeaderEpoch: 1}
	if promoted, ready := u.lead(&a, &a); !promoted || !ready {
		t.Fatalf("lead: promoted %v ready %v", promoted, ready)
	}
	return u
}

// watcher is a stream as far as a unit's notices go: what it was told.
func watcher() *stream {
	return &stream{pend: make(map[string]struct{}), wake: make(chan struct{}, 1)}
}

func pending(s *stream) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.pend {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	clear(s.pend)
	return ids
}

// writable says whether the unit takes writes, by one that changes
// nothing when taken; refused, it returns the target it names too.
func writable(u *slotUnit) bool {
	ok, _ := writeTarget(u)
	return ok
}

func writeTarget(u *slotUnit) (bool, string) {
	_, target, err := u.write("s1", proto.Stamp{}, &proto.Op{Type: proto.OpUnregister, DataInfoID: "none", RegisterID: "1"}, 0)
	return err == nil, target
}

func mustWrite(t *testing.T, u *slotUnit, session string, op *proto.Op) written {
	t.Helper()
	w, target, err := u.write(session, proto.Stamp{}, op, 0)
	if err != nil {
		t.Fatalf("write %+v refused (target %q): %v", op, target, err)
	}
	return w
}

// A unit's role follows the assignments it adopts: a follower's copy is
// promoted ready after a planned handoff and reconciling (with every
// version raised) otherwise; a demoted leader keeps its data; a dropped
// slot has none; an assignment at the same role changes nothing.
func TestUnitRoles(t *testing.T) {
	type step struct {
		do               string // lead, planned, follow, drop
		install          bool   // follow: install the old leader's snapshot
		epoch            uint64
		promoted, ready  bool
		held, leading    bool
		writable         bool
		publishers, seq  int
		versionFromEpoch uint64 // the leader epoch in a's version, 0: not checked
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"failover", []step{
			{do: "follow", install: true, held: true, seq: 1, publishers: 1},
			{do: "lead", epoch: 2, promoted: true, held: true, leading: true, writable: true, seq: 2, publishers: 1, versionFromEpoch: 2},
			{do: "lead", epoch: 3, held: true, leading: true, writable: true, seq: 2, publishers: 1},
		}},
		{"planned handoff", []step{
			{do: "follow", install: true, held: true, seq: 1, publishers: 1},
			{do: "planned", epoch: 2, promoted: true, ready: true, held: true, leading: true, writable: true, seq: 1, publishers: 1, versionFromEpoch: 1},
		}},
		{"demoted and dropped", []step{
			{do: "follow", install: true, held: true, seq: 1, publishers: 1},
			{do: "lead", epoch: 2, promoted: true, held: true, leading: true, writable: true, seq: 2, publishers: 1},
			{do: "follow", held: true, seq: 2, publishers: 1},
			{do: "drop"},
			{do: "lead", epoch: 4, promoted: true, held: true, leading: true, writable: true, seq: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := mustUnit(t)
			// The leader at epoch 1 had one publisher, which a follower
			// installs from its snapshot.
			lead := newSlotStore(1, 100)
			lead.apply("s1", reg("a", "1", "x", "c1", 0), 0)
			for i, st := range tc.steps {
				a := slot.Assignment{Leader: "d1", LeaderEpoch: st.epoch}
				var promoted, ready bool
				switch st.do {
				case "follow":
					u.follow()
					if st.install && !u.install(lead.dump(0), 0) {
						t.Fatalf("step %d: install refused by a follower", i)
					}
				case "lead":
					promoted, ready = u.lead(&a, nil)
				case "planned":
					promoted, ready = u.lead(&a, &slot.Assignment{Leader: "d0", LeaderEpoch: 1, Target: "d1"})
				case "drop":
					u.drop()
				}
				if promoted != st.promoted || ready != st.ready {
					t.Fatalf("step %d (%s): promoted %v ready %v, want %v %v", i, st.do, promoted, ready, st.promoted, st.ready)
				}
				c := u.counts(nil)
				if c.held != st.held || c.leading != st.leading || c.publishers != st.publishers {
					t.Fatalf("step %d (%s): counts %+v, want held %v leading %v publishers %d", i, st.do, c, st.held, st.leading, st.publishers)
				}
				if c.held {
					if _, seq, _ := u.position(); !st.leading && seq != uint64(st.seq) {
						t.Fatalf("step %d (%s): follower at seq %d, want %d", i, st.do, seq, st.seq)
					}
					if ss, _ := u.stats(true); ss.Seq != uint64(st.seq) {
						t.Fatalf("step %d (%s): seq %d, want %d", i, st.do, ss.Seq, st.seq)
					}
				}
				if st.versionFromEpoch != 0 {
					u.awaitSessions(nil)
					d, _, _ := u.read("a")
					if d.Version>>32 != st.versionFromEpoch {
						t.Fatalf("step %d (%s): version %x, want leader epoch %d in it", i, st.do, d.Version, st.versionFromEpoch)
					}
				}
				if ok := writable(u); ok != st.writable {
					t.Fatalf("step %d (%s): write accepted %v, want %v", i, st.do, ok, st.writable)
				}
			}
		})
	}
}

// A write tells the streams watching its dataInfoId, and only them, and
// only when it changed something; a TTL write asks for a follower's ack.
func TestUnitWriteNotifiesWatchers(t *testing.T) {
	u := mustLeader(t)
	wa, wb := watcher(), watcher()
	u.watch("a", wa)
	u.watch("b", wb)
	u.watch("b", wa)
	for _, tc := range []struct {
		op       *proto.Op
		changed  bool
		durable  bool
		wa, wb   string
		unwatchB bool
	}{
		{op: reg("a", "1", "x", "c1", 0), changed: true, wa: "[a]", wb: "[]"},
		{op: reg("b", "1", "x", "c1", 0), changed: true, wa: "[b]", wb: "[b]"},
		{op: &proto.Op{Type: proto.OpUnregister, DataInfoID: "c", RegisterID: "1"}, wa: "[]", wb: "[]"},
		{op: reg("b", "t", "x", "", 30), changed: true, durable: true, wa: "[b]", wb: "[b]"},
		{op: &proto.Op{Type: proto.OpRenew, DataInfoID: "b", RegisterID: "t"}, durable: true, wa: "[]", wb: "[]"},
		{op: reg("b", "2", "x", "c1", 0), changed: true, unwatchB: true, wa: "[]", wb: "[b]"},
	} {
		if tc.unwatchB {
			u.unwatch("b", wa)
		}
		w := mustWrite(t, u, "s1", tc.op)
		if w.changed != tc.changed || (w.durable != 0) != tc.durable {
			t.Fatalf("%+v: %+v, want changed %v durable %v", tc.op, w, tc.changed, tc.durable)
		}
		if got := fmt.Sprint(pending(wa)); got != tc.wa {
			t.Fatalf("%+v: watcher of a and b told %s, want %s", tc.op, got, tc.wa)
		}
		if got := fmt.Sprint(pending(wb)); got != tc.wb {
			t.Fatalf("%+v: watcher of b told %s, want %s", tc.op, got, tc.wb)
		}
	}
	u.announce()
	if got := fmt.Sprint(pending(wb)); got != "[b]" {
		t.Fatalf("announce told %s", got)
	}
}

func TestUnitReplicatedWaitsForAFollowerAck(t *testing.T) {
	u := mustLeader(t)
	if ok, _ := u.replicated(5, nil); !ok {
		t.Fatal("a slot without followers must not wait")
	}
	ok, ch := u.replicated(5, []string{"f1"})
	if ok {
		t.Fatal("replicated before any ack")
	}
	u.ack("f1", 2, 9) // another leader epoch: acknowledges nothing here
	select {
	case <-ch:
		t.Fatal("an ack at another leader epoch moved the acks")
	default:
	}
	u.ack("f1", 1, 4)
	<-ch // acks moved
	if ok, _ := u.replicated(5, []string{"f1"}); ok {
		t.Fatal("ack 4 covers seq 5")
	}
	u.ack("f1", 1, 5)
	if ok, _ := u.replicated(5, []string{"f1", "f2"}); !ok {
		t.Fatal("ack 5 does not cover seq 5")
	}
}

// What a pull gets from a leader, and how much it counts towards
// answering without lingering, by where the follower stands.
func TestUnitPull(t *testing.T) {
	u := mustLeader(t)
	for i := range 300 {
		mustWrite(t, u, "s1", reg("a", fmt.Sprint(i), "x", "c1", 0))
	}
	follower := mustUnit(t)
	follower.follow()
	for _, tc := range []struct {
		name        string
		epoch, seq  uint64
		backlog     int
		entries     int
		snap        bool
		notLeader   bool
		urgentAfter bool // a TTL write waits for a follower
	}{
		{name: "caught up", epoch: 1, seq: 300},
		{name: "behind by 3", epoch: 1, seq: 297, backlog: 3, entries: 3},
		{name: "behind by more than a full batch", epoch: 1, seq: 0, backlog: pullFull, entries: 100, snap: true},
		{name: "on another leader epoch", epoch: 0, seq: 300, backlog: pullFull, snap: true},
		{name: "not led here", epoch: 1, seq: 0, notLeader: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := u
			if tc.notLeader {
				src = follower
			}
			n, urgent := src.backlog(tc.epoch, tc.seq)
			if n != tc.backlog || urgent {
				t.Fatalf("backlog %d urgent %v, want %d", n, urgent, tc.backlog)
			}
			epoch, es, snap, ok := src.since(tc.epoch, tc.seq, pullMaxBatch, 0)
			if ok == tc.notLeader {
				t.Fatalf("since answered %v", ok)
			}
			if tc.notLeader {
				return
			}
			// The log holds 100 entries: a follower further behind gets
			// the snapshot.
			if epoch != 1 || (snap != nil) != tc.snap || (!tc.snap && len(es) != tc.entries) {
				t.Fatalf("since: epoch %d, %d entries, snapshot %v", epoch, len(es), snap != nil)
			}
		})
	}
	w := mustWrite(t, u, "s1", reg("a", "t", "x", "", 30))
	if done, _ := u.replicated(w.durable, []string{"f1"}); done {
		t.Fatal("a TTL write replicated with no follower ack")
	}
	if _, urgent := u.backlog(1, 300); !urgent {
		t.Fatal("a pull is not urgent while a TTL write waits for it")
	}
	u.ack("f1", 1, w.durable)
	if _, urgent := u.backlog(1, 300); urgent {
		t.Fatal("still urgent once the follower acked")
	}
}

// A follower replays a leader's entries in order; a gap makes its next
// pull ask for a snapshot.
func TestUnitReplay(t *testing.T) {
	u := mustLeader(t)
	for i := range 5 {
		mustWrite(t, u, "s1", reg("a", fmt.Sprint(i), "x", "c1", 0))
	}
	_, es, _, _ := u.since(1, 0, 0, 0)
	f := mustUnit(t)
	f.follow()
	f.install(&proto.SlotSnapshot{LeaderEpoch: 1}, 0)
	f.replay(es[:3], 0)
	if epoch, seq, ok := f.position(); !ok || epoch != 1 || seq != 3 {
		t.Fatalf("after 3 entries: epoch %d seq %d %v", epoch, seq, ok)
	}
	f.replay(es[4:], 0)
	if epoch, seq, _ := f.position(); epoch != 0 || seq != 3 {
		t.Fatalf("after a gap: epoch %d seq %d, want 0 (snapshot) at 3", epoch, seq)
	}
	if u.install(&proto.SlotSnapshot{}, 0) {
		t.Fatal("a leader installed a snapshot")
	}
	u.replay(es, 0)
	if _, seq, ok := u.position(); ok || seq != 0 {
		t.Fatal("a leader has a follower's position")
	}
}

// A new leader serves only once every session it waits for reconciled,
// or the timeout gave up on them; sessions that left count as done.
func TestUnitReconcile(t *testing.T) {
	u := mustUnit(t)
	u.follow()
	promoted, ready := u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 2}, nil)
	if !promoted || ready {
		t.Fatal("a failover leader is ready at once")
	}
	w := watcher()
	u.watch("a", w)
	if epoch, waiting := u.awaitSessions([]string{"s1", "s2", "s3", "s4"}); epoch != 2 || !waiting {
		t.Fatalf("awaitSessions: epoch %d waiting %v", epoch, waiting)
	}
	var one proto.Digest
	one.Add(proto.PubHash("a", "1", "x", "c1"))
	steps := []struct {
		name  string
		do    func() (ok bool)
		ready bool
	}{
		{"s1 digest differs", func() bool { eq, ok := u.compareDigest("s1", proto.Stamp{}, 2, one); return ok && !eq }, false},
		{"s1 at another epoch", func() bool { _, ok := u.compareDigest("s1", proto.Stamp{}, 1, one); return !ok }, false},
		{"s1 syncs", func() bool {
			ch, _, err := u.syncSession("s1", "", 2, proto.Stamp{}, []proto.SyncPub{{DataInfoID: "a", RegisterID: "1", Data: "x", Conn: "c1"}})
			return err == nil && len(ch) == 1
		}, false},
		{"s1 digest now equal", func() bool { eq, ok := u.compareDigest("s1", proto.Stamp{}, 2, one); return ok && eq }, false},
		{"s2 has nothing and neither has the leader", func() bool { eq, ok := u.compareDigest("s2", proto.Stamp{}, 2, proto.Digest{}); return ok && eq }, false},
		{"s3 left the cluster", func() bool { return u.dropSessions([]string{"s3"}) == 0 }, false},
		{"timeout at another epoch", func() bool { _, ok := u.giveUpWaiting(1); return !ok }, false},
		{"timeout", func() bool { missing, ok := u.giveUpWaiting(2); return ok && fmt.Sprint(missing) == "[s4]" }, true},
		{"timeout once ready", func() bool { _, ok := u.giveUpWaiting(2); return !ok }, true},
	}
	for _, st := range steps {
		if !st.do() {
			t.Fatalf("%s: unexpected answer", st.name)
		}
		_, leading, ready := u.read("a")
		if !leading || ready != st.ready {
			t.Fatalf("%s: leading %v ready %v, want ready %v", st.name, leading, ready, st.ready)
		}
	}
	// The sync changed a, and becoming ready told every watcher.
	if got := fmt.Sprint(pending(w)); got != "[a]" {
		t.Fatalf("watcher told %s", got)
	}
	if n := u.dropSessions([]string{"s1"}); n != 1 {
		t.Fatalf("dropping s1 changed %d datums, want 1", n)
	}
	if d, _, _ := u.read("a"); len(d.Entries) != 0 {
		t.Fatalf("s1's publisher survived: %+v", d)
	}
}

// The last session to reconcile makes the slot ready, as a digest
// compare, a sync or a departure.
func TestUnitLastSessionMakesItReady(t *testing.T) {
	for name, last := range map[string]func(u *slotUnit){
		"compare": func(u *slotUnit) { u.compareDigest("s1", proto.Stamp{}, 1, proto.Digest{}) },
		"sync":    func(u *slotUnit) { u.syncSession("s1", "", 1, proto.Stamp{}, nil) },
		"drop":    func(u *slotUnit) { u.dropSessions([]string{"s1"}) },
	} {
		t.Run(name, func(t *testing.T) {
			u := mustUnit(t)
			u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 1}, nil)
			u.awaitSessions([]string{"s1"})
			w := watcher()
			u.watch("a", w)
			last(u)
			if _, _, ready := u.read("a"); !ready {
				t.Fatal("not ready")
			}
			if got := fmt.Sprint(pending(w)); got != "[a]" {
				t.Fatalf("watcher told %s", got)
			}
		})
	}
}

// A handoff freezes the slot once the target nearly caught up and meta
// answers, commits once the target has every entry, and thaws a slot that
// did not drain in time.
func TestUnitHandoffStep(t *testing.T) {
	now := time.Now()
	u := mustLeader(t)
	for i := range handoffLag + 10 {
		mustWrite(t, u, "s1", reg("a", fmt.Sprint(i), "x", "c1", 0))
	}
	u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 1, Target: "d2"}, nil)
	frozen := func() bool {
		ok, target := writeTarget(u)
		if !ok && target != "d2" {
			t.Fatalf("refused naming %q", target)
		}
		return !ok
	}
	seq := uint64(handoffLag + 10)
	for i, st := range []struct {
		ack    uint64 // 0: none
		metaUp bool
		at     time.Duration
		want   handoffAction
		frozen bool
	}{
		{metaUp: true, want: stepNone},           // the target has not pulled yet
		{ack: 1, metaUp: true, want: stepNone},   // too far behind
		{ack: 10, metaUp: false, want: stepNone}, // near, but meta does not answer
		{ack: 10, metaUp: true, frozen: true},    // near: freeze
		{ack: seq, metaUp: true, want: stepCommit, frozen: true},
		{ack: seq, metaUp: true, at: handoffDrain + time.Millisecond, want: stepCommit, frozen: true},
	} {
		if st.ack != 0 {
			u.ack("d2", 1, st.ack)
		}
		step := u.handoffStep(st.metaUp, now.Add(st.at))
		if f := frozen(); step.action != st.want || f != st.frozen {
			t.Fatalf("step %d: %+v frozen %v, want %v frozen %v", i, step, f, st.want, st.frozen)
		}
		if step.action == stepCommit && (step.target != "d2" || step.epoch != 1) {
			t.Fatalf("step %d: commit %+v", i, step)
		}
	}
	u.thaw()
	if frozen() {
		t.Fatal("thawed slot refuses writes")
	}
	// Frozen again, the target stops short of the last entries: thawed
	// after handoffDrain.
	for i := range 5 {
		mustWrite(t, u, "s1", reg("b", fmt.Sprint(i), "x", "c1", 0))
	}
	u.handoffStep(true, now)
	if !frozen() {
		t.Fatal("not frozen with the target 5 entries behind")
	}
	if step := u.handoffStep(true, now.Add(handoffDrain/2)); step.action != stepNone || !frozen() {
		t.Fatalf("before the drain timeout: %+v", step)
	}
	step := u.handoffStep(true, now.Add(handoffDrain+time.Millisecond))
	if step.action != stepThawed || step.target != "d2" || step.acked != seq || frozen() {
		t.Fatalf("after the drain timeout: %+v", step)
	}
	// A frozen slot refuses a session's sync as it refuses writes.
	u.handoffStep(true, now)
	if _, target, err := u.syncSession("s1", "", 1, proto.Stamp{}, nil); !errors.Is(err, errNotLeading) || target != "d2" {
		t.Fatalf("sync while frozen: err %v target %q", err, target)
	}
	u.thaw()
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{}, nil); err != nil {
		t.Fatalf("sync refused once thawed: %v", err)
	}
	// Not the target's slot any more, or not led: nothing to do.
	u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 1}, nil)
	if step := u.handoffStep(true, now); step.action != stepNone || frozen() {
		t.Fatalf("no target: %+v", step)
	}
}

// A DSYNC whose list was taken before a write the leader has applied (it
// was held up on the way, and the session went on writing) is refused:
// applied, it would remove the publisher that write added.
func TestUnitRefusesASyncOlderThanAWrite(t *testing.T) {
	u := mustLeader(t)
	run := uint64(7)
	reg := &proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "a", ConnID: "c1"}
	if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 5}, reg, 0); err != nil {
		t.Fatalf("write refused: %v", err)
	}
	has := func() bool { return len(u.store.snapshot("svc", "").Entries) == 1 }

	_, _, err := u.syncSession("s1", "", 1, proto.Stamp{Run: run, Seq: 4}, nil)
	if !errors.Is(err, proto.ErrUnavailable) || !has() {
		t.Fatalf("a sync stamped before the write: err %v, publisher kept %v", err, has())
	}
	// Another session's stamps are its own.
	if _, _, err := u.syncSession("s2", "", 1, proto.Stamp{Run: 1, Seq: 1}, nil); err != nil {
		t.Fatalf("s2's sync: %v", err)
	}
	// A newer list (with the publisher) is applied, and then an older one
	// than it is refused too, though no write came between.
	list := []proto.SyncPub{{DataInfoID: "svc", RegisterID: "r1", Data: "a", Conn: "c1"}}
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{Run: run, Seq: 8}, list); err != nil || !has() {
		t.Fatalf("a newer sync: err %v, publisher kept %v", err, has())
	}
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{Run: run, Seq: 6}, nil); !errors.Is(err, proto.ErrUnavailable) || !has() {
		t.Fatalf("a sync older than the last: err %v, publisher kept %v", err, has())
	}
	// A restarted session (a new run) is not held to the old run's seqs.
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{Run: run + 1, Seq: 1}, nil); err != nil || has() {
		t.Fatalf("a new run's sync: err %v, publisher kept %v", err, has())
	}
	// Nor is a session that left and came back.
	u.write("s1", proto.Stamp{Run: run, Seq: 100}, reg, 0)
	u.dropSessions([]string{"s1"})
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{Run: run, Seq: 9}, list); err != nil || !has() {
		t.Fatalf("after the session left: err %v, publisher restored %v", err, has())
	}
}

// A write batch the session gave up on (its connection timed out while
// the leader was held up) and sent again arrives after what the session
// wrote next: applied then, its UNREGISTER would remove the publisher the
// next batch registered.
func TestUnitRefusesAWriteBatchOlderThanOneApplied(t *testing.T) {
	u := mustLeader(t)
	run := uint64(3)
	unreg := &proto.Op{Type: proto.OpUnregister, DataInfoID: "svc", RegisterID: "r1"}
	reg := &proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "a", ConnID: "c1"}
	// Batch 10 (the UNREGISTER) timed out; sent again as batch 11; the
	// REGISTER went in batch 12.
	if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 11}, unreg, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 12}, reg, 0); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Uint64
	u.staleCount = &refused
	_, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 10}, unreg, 0)
	if !errors.Is(err, proto.ErrUnavailable) || len(u.store.snapshot("svc", "").Entries) != 1 {
		t.Fatalf("the late batch: err %v, entries %v", err, u.store.snapshot("svc", "").Entries)
	}
	if refused.Load() != 1 {
		t.Fatalf("stale refusals counted: %d, want 1", refused.Load())
	}
	// The ops of one batch share its stamp, and all apply.
	other := &proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "r2", Data: "b", ConnID: "c1"}
	for _, op := range []*proto.Op{other, unreg} {
		if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 13}, op, 0); err != nil {
			t.Fatalf("an op of batch 13: %v", err)
		}
	}
	if got := u.store.snapshot("svc", "").Entries; len(got) != 1 || got[0].RegisterID != "r2" {
		t.Fatalf("after batch 13: %v", got)
	}
}

// A new leader has applied nothing of the session's yet; the session's
// DRECONCILE, stamped when it took its digests, fences the batches it gave
// up on before (a retransmission from a connection the session closed
// while this node was cut off, say).
func TestUnitReconcileFencesOlderWrites(t *testing.T) {
	u := mustLeader(t)
	run := uint64(5)
	var none proto.Digest
	if _, ok := u.compareDigest("s1", proto.Stamp{Run: run, Seq: 20}, 1, none); !ok {
		t.Fatal("compareDigest: not leading")
	}
	unreg := &proto.Op{Type: proto.OpUnregister, DataInfoID: "svc", RegisterID: "r1"}
	if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 19}, unreg, 0); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("a batch stamped before the reconcile: %v", err)
	}
	if _, _, err := u.write("s1", proto.Stamp{Run: run, Seq: 21}, unreg, 0); err != nil {
		t.Fatalf("a batch stamped after it: %v", err)
	}
	// At a leader epoch this node does not lead, nothing is fenced.
	if _, ok := u.compareDigest("s2", proto.Stamp{Run: run, Seq: 30}, 9, none); ok {
		t.Fatal("compareDigest at another leader epoch answered")
	}
	if _, _, err := u.write("s2", proto.Stamp{Run: run, Seq: 29}, unreg, 0); err != nil {
		t.Fatalf("s2's batch after a reconcile at another epoch: %v", err)
	}
}

// A slot taken over without a handoff leads before it knows whom to wait
// for (onTable calls lead, then awaitSessions). A session's reconcile in
// between is refused, not counted: counted, it was forgotten when the
// wait began, and the slot waited ReconcileTimeout for that session.
func TestUnitReconcileBeforeTheWaitBeginsIsRefused(t *testing.T) {
	u := mustUnit(t)
	if promoted, ready := u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 1}, nil); !promoted || ready {
		t.Fatalf("lead: promoted %v ready %v", promoted, ready)
	}
	if _, ok := u.compareDigest("s1", proto.Stamp{}, 1, proto.Digest{}); ok {
		t.Fatal("a digest compare before awaitSessions was answered")
	}
	if _, _, err := u.syncSession("s1", "", 1, proto.Stamp{}, nil); err == nil {
		t.Fatal("a sync before awaitSessions was applied")
	}
	if _, waiting := u.awaitSessions([]string{"s1"}); !waiting {
		t.Fatal("awaitSessions: not waiting for s1")
	}
	if eq, ok := u.compareDigest("s1", proto.Stamp{}, 1, proto.Digest{}); !ok || !eq {
		t.Fatalf("the compare once waiting: equal %v ok %v", eq, ok)
	}
	if _, _, ready := u.read("a"); !ready {
		t.Fatal("s1 reconciled, yet the slot is not ready")
	}
}
