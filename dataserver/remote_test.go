package dataserver

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// zreg is a register from a session of zone zone.
func zreg(id, rid, data, conn, zone string) *proto.Op {
	op := reg(id, rid, data, conn, 0)
	op.Zone = zone
	return op
}

// sourceEntries is what dc's leader of a slot at src sends after seq:
// its local writes, as xsince filters them.
func sourceEntries(t *testing.T, src *slotStore, seq uint64) []LogEntry {
	t.Helper()
	es, ok := src.log.since(seq, 0)
	if !ok {
		t.Fatal("the source's log lost entries")
	}
	var out []LogEntry
	for _, e := range es {
		if e.Op.Type == proto.OpRegister || e.Op.Type == proto.OpUnregister {
			out = append(out, e)
		}
	}
	return out
}

func TestRemotePublishersAreKeptApartAndMerged(t *testing.T) {
	src := newSlotStore(1, 100) // dc1's leader of the slot
	src.apply("s1", zreg("svc", "a", "10.0.0.1", "c1", "za"), 0)
	src.apply("s2", zreg("svc", "b", "10.0.0.2", "c2", "zb"), 0)
	dst := newSlotStore(4, 100) // dc2's
	dst.apply("s9", zreg("svc", "a", "10.9.0.1", "c9", "dc2"), 0)
	before := dst.snapshot("svc", "dc2").Version
	for _, e := range sourceEntries(t, src, 0) {
		if !dst.applyRemote("dc1", &e) {
			t.Fatalf("%+v changed nothing", e)
		}
	}
	d := dst.snapshot("svc", "dc2")
	if got := fmt.Sprint(d.Entries); got != "[{a 10.0.0.1 dc1 za} {a 10.9.0.1 dc2 dc2} {b 10.0.0.2 dc1 zb}]" {
		t.Fatalf("merged view %s", got)
	}
	if d.Version <= before || d.Version>>32 != 4 {
		t.Fatalf("a remote change left the version at %x (was %x): it must rise, in this datacenter's epoch", d.Version, before)
	}
	// Never counted as local, never in a session's digest, never synced
	// onward (the local dump has only the local one).
	if dst.publishers != 1 || len(dst.digests) != 1 || dst.digests["s9"].Count != 1 {
		t.Fatalf("local counts: %d publishers, digests %v", dst.publishers, dst.digests)
	}
	if ld := dst.localDump(); len(ld.Datums) != 1 || len(ld.Datums[0].Pubs) != 1 || ld.Datums[0].Pubs[0].Data != "10.9.0.1" {
		t.Fatalf("the local dump %+v", ld)
	}
	if dst.remote["dc1"].digest != src.local {
		t.Fatalf("the copy's digest %v, the source's %v", dst.remote["dc1"].digest, src.local)
	}
	// The same entries again change nothing: applying is idempotent.
	for _, e := range sourceEntries(t, src, 0) {
		if dst.applyRemote("dc1", &e) {
			t.Fatalf("%+v applied twice changed the copy", e)
		}
	}
	// An unregister at the source removes the copy's.
	seq := src.seq
	src.apply("s2", &proto.Op{Type: proto.OpUnregister, DataInfoID: "svc", RegisterID: "b", ConnID: "c2"}, 0)
	for _, e := range sourceEntries(t, src, seq) {
		dst.applyRemote("dc1", &e)
	}
	if got := fmt.Sprint(dst.snapshot("svc", "dc2").Entries); got != "[{a 10.0.0.1 dc1 za} {a 10.9.0.1 dc2 dc2}]" {
		t.Fatalf("after the source's unregister: %s", got)
	}
	if dst.remote["dc1"].digest != src.local {
		t.Fatal("digests differ after the unregister")
	}
}

func TestRemotePublishersReplicateToFollowers(t *testing.T) {
	leader := newSlotStore(2, 1000)
	leader.apply("s1", zreg("x", "l", "local", "c1", "z"), 0)
	for i := range 3 {
		e := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "x", RegisterID: fmt.Sprint("r", i), Data: "d", Zone: "zr"}}
		leader.applyRemote("dc3", &e)
	}
	del := LogEntry{Op: proto.Op{Type: proto.OpUnregister, DataInfoID: "x", RegisterID: "r1"}}
	leader.applyRemote("dc3", &del)
	follower := newSlotStore(2, 1000)
	es, _ := leader.log.since(0, 0)
	for i := range es {
		follower.replay(&es[i], 0)
	}
	installed := newSlotStore(0, 1000)
	installed.install(leader.dump(0), 0)
	want := fmt.Sprint(leader.snapshot("x", "dc9"))
	for name, f := range map[string]*slotStore{"replayed": follower, "installed": installed} {
		if got := fmt.Sprint(f.snapshot("x", "dc9")); got != want {
			t.Fatalf("%s follower: %s, leader %s", name, got, want)
		}
		if f.remote["dc3"].digest != leader.remote["dc3"].digest || f.remote["dc3"].pubs != 2 || f.publishers != 1 {
			t.Fatalf("%s follower: remote %+v, %d local publishers", name, f.remote["dc3"], f.publishers)
		}
	}
}

func TestRemoteResyncChangesOnlyWhatDiffers(t *testing.T) {
	dst := newSlotStore(1, 1000)
	for _, rid := range []string{"keep", "stale", "gone"} {
		e := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: rid, Data: "v1", Zone: "z"}}
		dst.applyRemote("dc1", &e)
	}
	e := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "other", RegisterID: "same", Data: "v", Zone: "z"}}
	dst.applyRemote("dc1", &e)
	otherV := dst.snapshot("other", "dc2").Version
	seq := dst.seq
	snap := &proto.SlotSnapshot{Datums: []proto.SnapDatum{
		{DataInfoID: "svc", Pubs: []proto.SnapPub{{RegisterID: "keep", Data: "v1", Zone: "z"}, {RegisterID: "stale", Data: "v2", Zone: "z"}, {RegisterID: "new", Data: "v1", Zone: "z"}}},
		{DataInfoID: "other", Pubs: []proto.SnapPub{{RegisterID: "same", Data: "v", Zone: "z"}}},
	}}
	changed := dst.diffRemote("dc1", snap)
	if fmt.Sprint(changed) != "[svc]" {
		t.Fatalf("changed %v", changed)
	}
	// keep was never removed: the log has exactly stale, new and gone.
	es, _ := dst.log.since(seq, 0)
	var ops []string
	for _, e := range es {
		ops = append(ops, string(rune(e.Op.Type))+e.Op.RegisterID)
	}
	if fmt.Sprint(ops) != "[Pstale Pnew Dgone]" {
		t.Fatalf("resync logged %v", ops)
	}
	if v := dst.snapshot("other", "dc2").Version; v != otherV {
		t.Fatalf("an unchanged datum's version moved from %x to %x", otherV, v)
	}
	// Expiry drops the datacenter's publishers, and only them, in one
	// log entry that a follower replays.
	dst.apply("s1", zreg("svc", "mine", "x", "c1", "dc2"), 0)
	follower := newSlotStore(1, 1000)
	follower.install(dst.dump(0), 0)
	seq = dst.seq
	if ch := dst.dropRemote("dc1"); fmt.Sprint(ch) != "[other svc]" {
		t.Fatalf("dropping dc1 changed %v", ch)
	}
	if got := fmt.Sprint(dst.snapshot("svc", "dc2").Entries, dst.remote["dc1"].pubs); got != "[{mine x dc2 dc2}] 0" {
		t.Fatalf("after dropping dc1: %s", got)
	}
	es, _ = dst.log.since(seq, 0)
	if len(es) != 1 || es[0].Op.Type != proto.OpRemoteDrop || es[0].DC != "dc1" {
		t.Fatalf("the drop logged %+v", es)
	}
	follower.replay(&es[0], 0)
	for _, id := range []string{"svc", "other"} {
		if got, want := fmt.Sprint(follower.snapshot(id, "dc2")), fmt.Sprint(dst.snapshot(id, "dc2")); got != want {
			t.Fatalf("%s on the follower %s, on the leader %s", id, got, want)
		}
	}
}

// TestXPullAnswers drives the source's side of DXPULL on a unit: entries
// after a position (its own writes only), a position when the copy's
// digest matches, a snapshot when it does not, and nothing while the
// slot is not reconciled.
func TestXPullAnswers(t *testing.T) {
	u := newSlotUnit(7, 1000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	u.dc = "dc1"
	u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 3}, nil)
	if a := u.xsince(&proto.XPullPos{Slot: 7}, 100, ptr(xSnapBudget)); a.kind != proto.XPullWait || u.xnews(&proto.XPullPos{Slot: 7}) {
		t.Fatalf("a slot still reconciling answered %q", a.kind)
	}
	u.mu.Lock()
	u.ready = true
	u.store.apply("s1", zreg("svc", "a", "1", "c1", "za"), 0)
	e := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "echo", Data: "2", Zone: "z"}}
	u.store.applyRemote("dc2", &e) // synced from dc2: never sent back
	st := u.store
	u.mu.Unlock()
	dst := newSlotStore(1, 100)
	a := u.xsince(&proto.XPullPos{Slot: 7}, 100, ptr(xSnapBudget)) // epoch 0: the digest differs
	if a.kind != proto.PullSnap || len(a.snap.Datums) != 1 || len(a.snap.Datums[0].Pubs) != 1 || a.snap.Datums[0].Pubs[0].Zone != "za" {
		t.Fatalf("first answer %+v", a)
	}
	dst.diffRemote("dc1", a.snap)
	r := dst.remoteSlot("dc1")
	pos := proto.XPullPos{Slot: 7, LeaderEpoch: a.epoch, Seq: a.seq, Digest: r.digest}
	if u.xnews(&pos) {
		t.Fatal("a current copy has news")
	}
	if a := u.xsince(&pos, 100, ptr(xSnapBudget)); a.kind != "" {
		t.Fatalf("a current copy got %q", a.kind)
	}
	u.mu.Lock()
	u.store.apply("s1", zreg("svc", "b", "3", "c1", "za"), 0)
	e2 := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: "echo2", Data: "2", Zone: "z"}}
	u.store.applyRemote("dc2", &e2)
	u.mu.Unlock()
	a = u.xsince(&pos, 100, ptr(xSnapBudget))
	if a.kind != proto.PullLog || len(a.es) != 1 || a.es[0].Op.RegisterID != "b" || a.seq != st.seq {
		t.Fatalf("entries after the position: %+v (seq %d)", a, st.seq)
	}
	// A snapshot past the answer's budget waits for the next answer;
	// the first snapshot of an answer always goes.
	if a := u.xsince(&proto.XPullPos{Slot: 7}, 100, ptr(1)); a.kind != proto.XPullWait {
		t.Fatalf("a snapshot over the budget: %q", a.kind)
	}
	if a := u.xsince(&proto.XPullPos{Slot: 7}, 100, ptr(xSnapBudget)); a.kind != proto.PullSnap {
		t.Fatalf("a snapshot within the budget: %q", a.kind)
	}
	// Another leader epoch with a matching digest: a position, no data.
	for _, e := range a.es {
		dst.applyRemote("dc1", &e)
	}
	moved := proto.XPullPos{Slot: 7, LeaderEpoch: 2, Seq: 1, Digest: dst.remoteSlot("dc1").digest}
	if a := u.xsince(&moved, 100, ptr(xSnapBudget)); a.kind != proto.XPullAt || a.seq != st.seq || a.epoch != 3 {
		t.Fatalf("a matching copy on another epoch got %+v", a)
	}
}

func ptr(n int) *int { return &n }

// TestXApplyTakesOnlyAnswersToItsPosition: the receiving leader applies
// an answer of entries only if it answers the position the copy is at; a
// late answer to an older position is dropped (it is asked for again).
func TestXApplyTakesOnlyAnswersToItsPosition(t *testing.T) {
	u := newSlotUnit(7, 1000, slog.New(slog.NewTextHandler(io.Discard, nil)))
	u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 2}, nil)
	snap := &proto.SlotSnapshot{LeaderEpoch: 5, Seq: 10, Datums: []proto.SnapDatum{
		{DataInfoID: "svc", Pubs: []proto.SnapPub{{RegisterID: "a", Data: "1", Zone: "z"}}}}}
	u.xapply("dc1", &xanswer{kind: proto.PullSnap, epoch: 5, seq: 10, snap: snap}, 1)
	put := func(rid string) LogEntry {
		return LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: "svc", RegisterID: rid, Data: "2", Zone: "z"}}
	}
	u.xapply("dc1", &xanswer{kind: proto.PullLog, epoch: 5, seq: 12, from: 10, es: []LogEntry{put("b")}}, 2)
	u.xapply("dc1", &xanswer{kind: proto.PullLog, epoch: 5, seq: 11, from: 10, es: []LogEntry{put("late")}}, 3)
	u.xapply("dc1", &xanswer{kind: proto.PullLog, epoch: 4, seq: 13, from: 12, es: []LogEntry{put("old-epoch")}}, 4)
	pos, ok := u.xposition("dc1")
	var rids []string
	for _, e := range u.store.snapshot("svc", "dc2").Entries {
		rids = append(rids, e.RegisterID)
	}
	if !ok || pos.LeaderEpoch != 5 || pos.Seq != 12 || fmt.Sprint(rids) != "[a b]" {
		t.Fatalf("position %+v %v, publishers %v", pos, ok, rids)
	}
}
