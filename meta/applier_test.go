package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// mustApply runs one command through the store the way raft does (encoded
// entry in, result out) and fails the test on a refusal.
// withData applies init with replicas to s, joins the data nodes d1 to dN
// (at h:1 to h:N, so d1 leads every slot), applies more and returns s.
func withData(t *testing.T, s *store, replicas, n int, more ...*command) *store {
	t.Helper()
	mustApply(t, s, &command{Type: cmdInit, Replicas: replicas})
	for i := 1; i <= n; i++ {
		mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: fmt.Sprintf("d%d", i), Addr: fmt.Sprintf("h:%d", i)})
	}
	for _, c := range more {
		mustApply(t, s, c)
	}
	return s
}

func mustApply(t *testing.T, s *store, c *command) result {
	t.Helper()
	b, err := encodeCommand(c)
	if err != nil {
		t.Fatalf("encode %+v: %v", c, err)
	}
	res := (&fsm{s: s}).Apply(&raft.Log{Type: raft.LogCommand, Data: b}).(result)
	if res.Err != nil {
		t.Fatalf("apply %s %s: %v", c.Type, c.ID, res.Err)
	}
	return res
}

func applyRaw(s *store, c *command) result {
	b, _ := encodeCommand(c)
	return s.apply(b)
}

// populated returns a store with init, three data nodes (one removed
// again), two sessions, a meta record, a finished move and a move in
// progress applied.
func populated(t *testing.T) *store {
	t.Helper()
	s := newStore()
	for _, c := range []*command{
		{Type: cmdInit, Replicas: 2},
		{Type: cmdRecordMeta, ID: "m1", Addr: "127.0.0.1:9500"},
		{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "127.0.0.1:9701"},
		{Type: cmdJoin, Kind: proto.KindData, ID: "d2", Addr: "127.0.0.1:9702"},
		{Type: cmdJoin, Kind: proto.KindData, ID: "d3", Addr: "127.0.0.1:9703"},
		{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "127.0.0.1:9600"},
		{Type: cmdJoin, Kind: proto.KindSession, ID: "s2", Addr: "127.0.0.1:9601"},
		{Type: cmdRemove, Kind: proto.KindData, ID: "d2", Reason: reasonLease},
		// d1 joined first and leads every slot.
		{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 3, To: "d3"}, {Slot: 4, To: "d3"}}},
		{Type: cmdFinishMove, Slot: 3, From: "d1", To: "d3", LeaderEpoch: 1},
	} {
		mustApply(t, s, c)
	}
	if tb := s.state().Table; tb.Leader(3) != "d3" || !slices.Equal(tb.Moving(), []int{4}) {
		t.Fatalf("populated: slot 3 led by %s, moving %v", tb.Leader(3), tb.Moving())
	}
	return s
}

func TestApplierMembersEpoch(t *testing.T) {
	s := newStore()
	mustApply(t, s, &command{Type: cmdInit, Replicas: 2})
	if e := s.state().MembersEpoch; e != 1 {
		t.Fatalf("after init MembersEpoch %d, want 1", e)
	}
	for _, step := range []struct {
		c    *command
		want uint64
	}{
		{&command{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "h:1"}, 1},
		{&command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:1"}, 2},
		{&command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:1"}, 2},
		{&command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:2"}, 3},
		{&command{Type: cmdJoin, Kind: proto.KindSession, ID: "s2", Addr: "h:3"}, 4},
		{&command{Type: cmdJoin, Kind: proto.KindData, ID: "d2", Addr: "h:2"}, 4},
		{&command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 0, To: "d2"}}}, 4},
		{&command{Type: cmdRemove, Kind: proto.KindData, ID: "d1", Reason: reasonLease}, 4},
		{&command{Type: cmdRemove, Kind: proto.KindSession, ID: "s1", Reason: reasonLease}, 5},
	} {
		mustApply(t, s, step.c)
		if got := s.state().MembersEpoch; got != step.want {
			t.Fatalf("after %s %s %s: MembersEpoch %d, want %d", step.c.Type, step.c.Kind, step.c.ID, got, step.want)
		}
	}
	if res := applyRaw(s, &command{Type: cmdRemove, Kind: proto.KindSession, ID: "s1"}); res.Err == nil || s.state().MembersEpoch != 5 {
		t.Fatalf("a refused remove: %+v, MembersEpoch %d", res, s.state().MembersEpoch)
	}
}

func TestApplierMoves(t *testing.T) {
	s := newStore()
	if res := applyRaw(s, &command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 0, To: "d1"}}}); !errors.Is(res.Err, errNotInitialized) {
		t.Fatalf("start-moves before init: %v", res.Err)
	}
	withData(t, s, 2, 3)
	before := s.state()
	if n := len(before.Table.LedBy("d1")); n != slot.Count {
		t.Fatalf("d1 leads %d slots, want all", n)
	}
	e0 := before.Table.Epoch

	res := mustApply(t, s, &command{Type: cmdStartMoves, Moves: []moveSpec{
		{Slot: 10, To: "d2"},
		{Slot: 10, To: "d3"},
		{Slot: 300, To: "d2"},
		{Slot: 11, To: "d9"},
		{Slot: 11, To: "d1"},
		{Slot: 11, To: "d3"},
	}})
	wantErrs := []error{nil, errMoving, errBadCommand, errUnknownMember, errMoveRefused, nil}
	if len(res.MoveErrs) != len(wantErrs) {
		t.Fatalf("MoveErrs %v, want %d entries", res.MoveErrs, len(wantErrs))
	}
	for i, want := range wantErrs {
		if got := res.MoveErrs[i]; (want == nil) != (got == nil) || (want != nil && !errors.Is(got, want)) {
			t.Errorf("move %d: %v, want %v", i, got, want)
		}
	}
	tb := s.state().Table
	if !res.Changed || res.Epoch != e0+1 || tb.Epoch != e0+1 {
		t.Fatalf("start-moves: %+v, table epoch %d; want one new epoch %d", res, tb.Epoch, e0+1)
	}
	if tb.Slots[10].Target != "d2" || tb.Slots[11].Target != "d3" || !slices.Equal(tb.Moving(), []int{10, 11}) {
		t.Fatalf("targets %q %q, moving %v", tb.Slots[10].Target, tb.Slots[11].Target, tb.Moving())
	}
	if before.Table.Epoch != e0 || len(before.Table.Moving()) != 0 {
		t.Fatal("start-moves modified a published table")
	}

	// A list whose every move is refused changes nothing.
	cur := s.state()
	if res := applyRaw(s, &command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 10, To: "d3"}}}); res.Changed || res.Err != nil ||
		!errors.Is(res.MoveErrs[0], errMoving) || s.state() != cur {
		t.Fatalf("refused start-moves: %+v", res)
	}
	if res := applyRaw(s, &command{Type: cmdStartMoves}); !errors.Is(res.Err, errBadCommand) {
		t.Fatalf("start-moves without moves: %v", res.Err)
	}

	le := tb.Slots[10].LeaderEpoch
	for _, c := range []*command{
		{Type: cmdFinishMove, Slot: 10, From: "d3", To: "d2", LeaderEpoch: le},
		{Type: cmdFinishMove, Slot: 10, From: "d1", To: "d3", LeaderEpoch: le},
		{Type: cmdFinishMove, Slot: 10, From: "d1", To: "d2", LeaderEpoch: le + 1},
		{Type: cmdFinishMove, Slot: 10, From: "d1", To: "d2", LeaderEpoch: le - 1},
		{Type: cmdFinishMove, Slot: 12, From: "d1", To: "d2", LeaderEpoch: le},
	} {
		if res := applyRaw(s, c); !errors.Is(res.Err, errStaleHandoff) || s.state() != cur {
			t.Errorf("finish-move %+v: %v, want errStaleHandoff and no change", c, res.Err)
		}
	}
	if res := applyRaw(s, &command{Type: cmdFinishMove, Slot: 256, From: "d1", To: "d2"}); !errors.Is(res.Err, errBadCommand) {
		t.Errorf("finish-move of slot 256: %v", res.Err)
	}
	finish := &command{Type: cmdFinishMove, Slot: 10, From: "d1", To: "d2", LeaderEpoch: le}
	res = mustApply(t, s, finish)
	a := s.state().Table.Slots[10]
	if !res.Changed || res.Epoch != e0+2 || a.Leader != "d2" || a.LeaderEpoch != le+1 || a.Target != "" ||
		!slices.Contains(a.Followers, "d1") {
		t.Fatalf("after finish-move: %+v, slot 10 %+v", res, a)
	}
	// A retried handoff finds the move done and succeeds without a change.
	done := s.state()
	if res := mustApply(t, s, finish); res.Changed || res.Epoch != e0+2 || s.state() != done {
		t.Fatalf("retried finish-move: %+v", res)
	}

	res = mustApply(t, s, &command{Type: cmdCancelMove, Slot: 11, Reason: reasonAdmin})
	if a := s.state().Table.Slots[11]; !res.Changed || res.Epoch != e0+3 || a.Target != "" || a.Leader != "d1" || a.LeaderEpoch != le {
		t.Fatalf("after cancel-move: %+v, slot 11 %+v", res, a)
	}
	if res := applyRaw(s, &command{Type: cmdCancelMove, Slot: 11}); !errors.Is(res.Err, errNotMoving) {
		t.Fatalf("cancelling no move: %v", res.Err)
	}
	if res := applyRaw(s, &command{Type: cmdCancelMove, Slot: -1}); !errors.Is(res.Err, errBadCommand) {
		t.Fatalf("cancel-move of slot -1: %v", res.Err)
	}
	// A handoff after its move was cancelled is refused.
	if res := applyRaw(s, &command{Type: cmdFinishMove, Slot: 11, From: "d1", To: "d3", LeaderEpoch: le}); !errors.Is(res.Err, errStaleHandoff) {
		t.Fatalf("handoff of a cancelled move: %v", res.Err)
	}
}

// TestApplierRemovePrefers: removing a leader promotes the follower named
// in Prefer; entries that do not fit are ignored, never a reason to refuse.
func TestApplierRemovePrefers(t *testing.T) {
	s := withData(t, newStore(), 3, 4)
	tb := s.state().Table
	prefer := map[int]string{300: "d2", 1: "d9", 3: "d1"}
	want := map[int]string{}
	for sl := range slot.Count {
		a := tb.Slots[sl]
		if a.Leader != "d1" || len(a.Followers) != 2 {
			t.Fatalf("slot %d: %+v, want led by d1 with two followers", sl, a)
		}
		want[sl] = a.Followers[0]
		if sl%2 == 0 {
			prefer[sl], want[sl] = a.Followers[1], a.Followers[1]
		}
	}
	// Slot 5: a node that does not follow it.
	for _, id := range []string{"d2", "d3", "d4"} {
		if !tb.Follows(id, 5) {
			prefer[5] = id
		}
	}
	mustApply(t, s, &command{Type: cmdRemove, Kind: proto.KindData, ID: "d1", Reason: reasonLease, Prefer: prefer})
	after := s.state().Table
	for sl := range slot.Count {
		if got := after.Leader(sl); got != want[sl] || after.Slots[sl].LeaderEpoch != tb.Slots[sl].LeaderEpoch+1 {
			t.Fatalf("slot %d: leader %s at leader epoch %d, want %s at %d (followers were %v)",
				sl, got, after.Slots[sl].LeaderEpoch, want[sl], tb.Slots[sl].LeaderEpoch+1, tb.Slots[sl].Followers)
		}
	}
}

func TestApplierMembershipAndTable(t *testing.T) {
	s := newStore()
	if res := applyRaw(s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "h:1"}); !errors.Is(res.Err, errNotInitialized) {
		t.Fatalf("join before init: %v, want errNotInitialized", res.Err)
	}
	res := mustApply(t, s, &command{Type: cmdInit, Replicas: 2})
	if res.Epoch != 1 || s.state().Table == nil || s.state().Replicas != 2 {
		t.Fatalf("after init: epoch %d, state %+v", res.Epoch, s.state())
	}
	if res := applyRaw(s, &command{Type: cmdInit, Replicas: 3}); !errors.Is(res.Err, errAlreadyInitialized) {
		t.Fatalf("second init: %v, want errAlreadyInitialized", res.Err)
	}

	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "h:1"})
	if !res.Changed || res.Epoch != 2 {
		t.Fatalf("join d1: %+v, want changed at epoch 2", res)
	}
	if led := s.state().Table.LedBy("d1"); len(led) != slot.Count {
		t.Fatalf("d1 leads %d slots, want %d", len(led), slot.Count)
	}
	before := s.state()
	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "h:1"})
	if res.Changed || s.state() != before {
		t.Fatalf("repeated join changed the state: %+v", res)
	}
	// A join moves no leader: d2 gets follower places, and leadership
	// reaches it only through moves, once it has the data.
	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d2", Addr: "h:2"})
	if tb := s.state().Table; res.Epoch != 3 || len(tb.LedBy("d2")) != 0 || len(tb.FollowedBy("d2")) != slot.Count {
		t.Fatalf("join d2: epoch %d, d2 leads %d and follows %d", res.Epoch, len(tb.LedBy("d2")), len(tb.FollowedBy("d2")))
	}
	if before.Table.Epoch != 2 || len(before.Data) != 1 {
		t.Fatalf("an older published state was modified: epoch %d, %d data nodes", before.Table.Epoch, len(before.Data))
	}
	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d2", Addr: "h:22"})
	if addr, _ := s.state().Table.Addr("d2"); !res.Changed || res.Epoch != 4 || addr != "h:22" {
		t.Fatalf("address change: %+v, table addr %q", res, addr)
	}
	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:9"})
	if res.Epoch != 4 || s.state().Sessions["s1"] != "h:9" {
		t.Fatalf("session join: %+v; sessions %v", res, s.state().Sessions)
	}
	res = mustApply(t, s, &command{Type: cmdRemove, Kind: proto.KindData, ID: "d1", Reason: reasonLeave})
	if res.Epoch != 5 || len(s.state().Table.LedBy("d2")) != slot.Count {
		t.Fatalf("remove d1: %+v, d2 leads %d", res, len(s.state().Table.LedBy("d2")))
	}
	if res := applyRaw(s, &command{Type: cmdRemove, Kind: proto.KindData, ID: "d1"}); !errors.Is(res.Err, errUnknownMember) || res.Epoch != 5 {
		t.Fatalf("remove unknown: %+v, want errUnknownMember at epoch 5", res)
	}
	for _, c := range []*command{
		{Type: cmdJoin, Kind: proto.KindMeta, ID: "x", Addr: "h:1"},
		{Type: cmdJoin, Kind: proto.KindData, ID: "", Addr: "h:1"},
		{Type: cmdJoin, Kind: proto.KindData, ID: "x"},
		{Type: cmdRemove, Kind: "", ID: "x"},
		{Type: cmdRecordMeta, ID: "m1"},
	} {
		if res := applyRaw(s, c); !errors.Is(res.Err, errBadCommand) {
			t.Errorf("apply %+v: %v, want errBadCommand", c, res.Err)
		}
	}
}

// TestApplierDeterministic replays one log into two stores and expects
// byte-identical snapshots, the property every replica relies on.
func TestApplierDeterministic(t *testing.T) {
	var a, b bytes.Buffer
	if err := populated(t).state().writeTo(&a); err != nil {
		t.Fatal(err)
	}
	if err := populated(t).state().writeTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("two replays of one log differ:\n%s\n%s", a.Bytes(), b.Bytes())
	}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Close() error  { m.closed = true; return nil }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }

func TestSnapshotRestore(t *testing.T) {
	src := populated(t)
	f := &fsm{s: src}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	want := src.state()
	// Later entries must not leak into a snapshot already taken.
	mustApply(t, src, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d9", Addr: "h:9"})

	sink := &memSink{}
	if err := snap.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("Persist: %v (closed %v)", err, sink.closed)
	}
	snap.Release()

	dst := newStore()
	if err := (&fsm{s: dst}).Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got := dst.state()
	if !got.Table.Equal(want.Table) {
		t.Fatalf("restored table epoch %d differs from epoch %d", got.Table.Epoch, want.Table.Epoch)
	}
	if !reflect.DeepEqual(got.membersCopy(), want.membersCopy()) || got.Replicas != want.Replicas {
		t.Fatalf("restored membership differs:\n got %+v\nwant %+v", got.membersCopy(), want.membersCopy())
	}
	if got.MembersEpoch != want.MembersEpoch || got.MembersEpoch < 2 {
		t.Fatalf("restored MembersEpoch %d, want %d", got.MembersEpoch, want.MembersEpoch)
	}
	if !slices.Equal(got.Table.Moving(), want.Table.Moving()) || len(want.Table.Moving()) == 0 {
		t.Fatalf("restored moves %v, want %v", got.Table.Moving(), want.Table.Moving())
	}

	// The restored store goes on applying like the original.
	res := mustApply(t, dst, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d9", Addr: "h:9"})
	if !dst.state().Table.Equal(src.state().Table) {
		t.Fatalf("after the same entry: restored epoch %d, original epoch %d", res.Epoch, src.state().Table.Epoch)
	}
}

// TestRestoreVersion1: snapshots written before MembersEpoch existed are
// still read; the list counts as unchanged since init.
func TestRestoreVersion1(t *testing.T) {
	st := populated(t).state()
	body, err := json.Marshal(map[string]any{
		"replicas": st.Replicas, "data": st.Data, "sessions": st.Sessions, "metas": st.Metas,
		"table": json.RawMessage(mustMarshal(t, st.Table)),
	})
	if err != nil {
		t.Fatal(err)
	}
	b := append(snapshotMagic[:], 0, 0, 0, 1)
	s := newStore()
	if err := s.restore(io.NopCloser(bytes.NewReader(append(b, body...)))); err != nil {
		t.Fatalf("restore version 1: %v", err)
	}
	got := s.state()
	if got.MembersEpoch != 1 || !got.Table.Equal(st.Table) || !reflect.DeepEqual(got.membersCopy(), st.membersCopy()) {
		t.Fatalf("restored version 1: MembersEpoch %d, table epoch %d (want %d), members %+v",
			got.MembersEpoch, got.Table.Epoch, st.Table.Epoch, got.membersCopy())
	}
}

func mustMarshal(t *testing.T, tb *slot.Table) []byte {
	t.Helper()
	b, err := tb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	var good bytes.Buffer
	if err := populated(t).state().writeTo(&good); err != nil {
		t.Fatal(err)
	}
	wrongVersion := bytes.Clone(good.Bytes())
	wrongVersion[len(snapshotMagic)+3] = 99
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("NOTMETA!"), good.Bytes()[8:]...),
		"version":   wrongVersion,
		"truncated": good.Bytes()[:good.Len()/2],
	} {
		s := newStore()
		if err := s.restore(io.NopCloser(bytes.NewReader(b))); err == nil {
			t.Errorf("%s: restore succeeded", name)
		}
		if s.state().Replicas != 0 {
			t.Errorf("%s: a failed restore changed the state", name)
		}
	}
}

func TestUndecodableEntryPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("applying an undecodable entry did not panic")
		}
	}()
	newStore().apply([]byte{0xff, '{'})
}
