package dataserver

import (
	"errors"
	"slices"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

// The children of a path are its datum's registerIds and the first
// segment of each non-empty dataInfoId below it; names that only look
// alike (/a/b!x beside /a/b/...) are not skipped, and emptied datums do
// not count.
func TestStoreChildren(t *testing.T) {
	s := newSlotStore(1, 64)
	for _, w := range [][2]string{
		{"/", "top"},
		{"/a", "leaf"},
		{"/a/b", "c"},
		{"/a/b/c/d", "e"},
		{"/a/b!x", "y"},
		{"/a/gone", "z"},
		{"/a/deep/er/still", "x"},
		{"/ab", "q"},
		{"svc", "not-a-path"},
	} {
		s.apply("s1", reg(w[0], w[1], "v", "c1", 0), 0)
	}
	s.apply("s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "/a/gone", RegisterID: "z"}, 0)
	names := func(path string) []string {
		var out []string
		s.children(path, func(n string) { out = append(out, n) })
		slices.Sort(out)
		return slices.Compact(out)
	}
	for path, want := range map[string][]string{
		"/":        {"a", "ab", "top"},
		"/a":       {"b", "b!x", "deep", "leaf"},
		"/a/b":     {"c"},
		"/a/b/c":   {"d"},
		"/a/b/c/d": {"e"},
		"/a/gone":  nil,
		"/nothing": nil,
	} {
		if got := names(path); !slices.Equal(got, want) {
			t.Errorf("children(%q) = %q, want %q", path, got, want)
		}
	}
}

// A leader syncs its slot's PERSISTENT paths to meta's list: adds,
// changes and removals are logged writes its watchers hear of; an older
// or equal revision changes nothing; sessions cannot overwrite or remove
// a PERSISTENT path, and a connection's close leaves it.
func TestUnitSyncsPersistentPaths(t *testing.T) {
	u := mustLeader(t)
	w := watcher()
	u.watch("/cfg", w)
	pp := func(path, v string) proto.PersistPath { return proto.PersistPath{Path: path, Value: v} }
	if got := u.syncPersist(3, []proto.PersistPath{pp("/cfg/a", "1"), pp("/cfg/b", "2")}, 0); got != 3 {
		t.Fatalf("sync to 3 holds %d", got)
	}
	if ids := pending(w); !slices.Equal(ids, []string{"/cfg"}) {
		t.Fatalf("watchers told %v", ids)
	}
	seq := u.store.seq
	u.syncPersist(3, []proto.PersistPath{pp("/cfg/a", "other")}, 0) // not newer
	if u.store.seq != seq {
		t.Fatal("an equal revision changed the slot")
	}
	u.syncPersist(5, []proto.PersistPath{pp("/cfg/a", "1b")}, 0)
	d := u.store.snapshot("/cfg", "")
	if len(d.Entries) != 1 || d.Entries[0] != (proto.Entry{RegisterID: "a", Data: "1b"}) {
		t.Fatalf("after sync to 5: %+v", d.Entries)
	}
	// Sessions' writes: an overwrite or an UNREGISTER is refused, a
	// connection's close does nothing.
	for _, op := range []proto.Op{
		{Type: proto.OpRegister, DataInfoID: "/cfg", RegisterID: "a", Data: "x", ConnID: "c1"},
		{Type: proto.OpRegister, DataInfoID: "/cfg", RegisterID: "a", Data: "x", TTL: 5},
		{Type: proto.OpUnregister, DataInfoID: "/cfg", RegisterID: "a"},
	} {
		if _, _, err := u.write("s1", proto.Stamp{}, &op, 0); !errors.Is(err, proto.ErrInvalid) {
			t.Errorf("%+v: %v, want a refusal", op, err)
		}
	}
	closing := proto.Op{Type: proto.OpUnregister, DataInfoID: "/cfg", RegisterID: "a", ConnID: "c1"}
	if res, _, err := u.write("s1", proto.Stamp{}, &closing, 0); err != nil || res.result != 0 {
		t.Fatalf("a connection's close: %+v %v", res, err)
	}
	// A session's DSYNC leaves it too.
	u.store.sync("s1", "", []proto.SyncPub{{DataInfoID: "/cfg", RegisterID: "a", Data: "eph", Conn: "c1"}})
	if d := u.store.snapshot("/cfg", ""); len(d.Entries) != 1 || d.Entries[0].Data != "1b" {
		t.Fatalf("after a DSYNC: %+v", d.Entries)
	}
	// Not leading: no sync.
	u.follow()
	if got := u.syncPersist(9, nil, 0); got == 9 {
		t.Fatal("a follower synced")
	}
}
