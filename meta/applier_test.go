package meta

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// mustApply runs one command through the store the way raft does (encoded
// entry in, result out) and fails the test on a refusal.
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
// again), two sessions and a meta record applied.
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
	} {
		mustApply(t, s, c)
	}
	return s
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
	res = mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d2", Addr: "h:2"})
	if res.Epoch != 3 || len(s.state().Table.LedBy("d2")) != slot.Count/2 {
		t.Fatalf("join d2: epoch %d, d2 leads %d", res.Epoch, len(s.state().Table.LedBy("d2")))
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

	// The restored store goes on applying like the original.
	res := mustApply(t, dst, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d9", Addr: "h:9"})
	if !dst.state().Table.Equal(src.state().Table) {
		t.Fatalf("after the same entry: restored epoch %d, original epoch %d", res.Epoch, src.state().Table.Epoch)
	}
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
