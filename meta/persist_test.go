package meta

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// PERSISTENT paths take revisions from one counter, a removal too; a
// removal of a path not held changes nothing; bad paths are refused; a
// snapshot keeps them all, by slot.
func TestApplierPersistentPaths(t *testing.T) {
	s := newStore()
	if r := mustApply(t, s, &command{Type: cmdPersistPut, Key: "/ds/config/a", Value: "1"}); r.Version != 1 {
		t.Fatalf("first put: rev %d", r.Version)
	}
	mustApply(t, s, &command{Type: cmdPersistPut, Key: "/ds/config/b", Value: "2"})
	if r := mustApply(t, s, &command{Type: cmdPersistPut, Key: "/ds/config/a", Value: "1b"}); r.Version != 3 {
		t.Fatalf("overwrite: rev %d", r.Version)
	}
	if r := mustApply(t, s, &command{Type: cmdPersistDel, Key: "/ds/config/b"}); r.Version != 4 || !r.Changed {
		t.Fatalf("delete: %+v", r)
	}
	if r := mustApply(t, s, &command{Type: cmdPersistDel, Key: "/ds/config/b"}); r.Changed || r.Version != 0 {
		t.Fatalf("delete of a path not held: %+v", r)
	}
	sl := slot.Of("/ds/config")
	if p := s.state().Persist[sl]; len(p) != 1 || p["/ds/config/a"].Value != "1b" || p["/ds/config/a"].Rev != 3 {
		t.Fatalf("slot %d holds %+v", sl, p)
	}
	for _, c := range []*command{
		{Type: cmdPersistPut, Key: "ds/x", Value: "v"},
		{Type: cmdPersistPut, Key: "/", Value: "v"},
		{Type: cmdPersistDel, Key: "/a//b"},
	} {
		if r := applyRaw(s, c); !errors.Is(r.Err, errBadCommand) {
			t.Errorf("apply %+v: %v, want errBadCommand", c, r.Err)
		}
	}
	var buf bytes.Buffer
	if err := s.state().writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	dst := newStore()
	if err := dst.restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := dst.state(); got.PersistRev != 4 || len(got.Persist[sl]) != 1 || got.Persist[sl]["/ds/config/a"].Value != "1b" {
		t.Fatalf("restored: rev %d, slot %+v", got.PersistRev, got.Persist[sl])
	}
	if r := mustApply(t, dst, &command{Type: cmdPersistPut, Key: "/x", Value: "v"}); r.Version != 5 {
		t.Fatalf("put after restore: rev %d", r.Version)
	}
}

// MPPUT, MPDEL and MPSLOTS on a real meta: the list of a slot is as of
// the revision it names.
func TestMPSlots(t *testing.T) {
	n, _ := leaderOf(t, mustCluster(t, 1, 30*time.Second))
	c := rawClient(t, n.RPCAddr())
	ctx := context.Background()
	for i, p := range []string{"/sched/cfg/a", "/sched/cfg/b", "/other/x"} {
		if rev, err := c.Do(ctx, (&proto.PathArgs{Cmd: proto.CmdMPPut, Path: p, Value: "v"}).Args()...).Uint64(); err != nil || rev != uint64(i+1) {
			t.Fatalf("MPPUT %s: %d %v", p, rev, err)
		}
	}
	if rev, err := c.Do(ctx, (&proto.PathArgs{Cmd: proto.CmdMPDel, Path: "/sched/cfg/b"}).Args()...).Uint64(); err != nil || rev != 4 {
		t.Fatalf("MPDEL: %d %v", rev, err)
	}
	if rev, err := c.Do(ctx, (&proto.PathArgs{Cmd: proto.CmdMPDel, Path: "/sched/cfg/none"}).Args()...).Uint64(); err != nil || rev != 0 {
		t.Fatalf("MPDEL of nothing: %d %v", rev, err)
	}
	sl := slot.Of("/sched/cfg")
	b, err := c.Do(ctx, (&proto.MPSlots{Slots: []int{sl}}).Args()...).Text()
	if err != nil {
		t.Fatal(err)
	}
	ps, err := proto.ParsePersistSlots([]byte(b))
	if err != nil || ps.Rev != 4 || len(ps.Slots[sl]) != 1 || ps.Slots[sl][0] != (proto.PersistPath{Path: "/sched/cfg/a", Value: "v", Rev: 1}) {
		t.Fatalf("MPSLOTS %d: %+v %v", sl, ps, err)
	}
	if err := c.Do(ctx, "MPPUT", "bad", "v").Err(); err == nil {
		t.Fatal("MPPUT of a bad path was accepted")
	}
}
