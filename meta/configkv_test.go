package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

func TestApplierConfigVersionsAndHistory(t *testing.T) {
	s := newStore()
	v1 := mustApply(t, s, &command{Type: cmdConfigSet, Key: "a", Value: "one"})
	v2 := mustApply(t, s, &command{Type: cmdConfigSet, Key: "b", Value: "x"})
	if v1.Version != 1 || v2.Version != 2 || !v1.Changed {
		t.Fatalf("versions %d, %d; want 1, 2 from the one counter", v1.Version, v2.Version)
	}
	// Setting the value a key has is a no-op that reports its version.
	if r := mustApply(t, s, &command{Type: cmdConfigSet, Key: "a", Value: "one"}); r.Changed || r.Version != 1 {
		t.Fatalf("same value again: changed %v version %d", r.Changed, r.Version)
	}
	del := mustApply(t, s, &command{Type: cmdConfigDel, Key: "a"})
	if del.Version != 3 || !s.state().Config["a"].cur().Deleted {
		t.Fatalf("delete: version %d, tombstone %+v", del.Version, s.state().Config["a"].cur())
	}
	if r := mustApply(t, s, &command{Type: cmdConfigDel, Key: "a"}); r.Changed || r.Version != 0 {
		t.Fatalf("deleting a deleted key: changed %v version %d", r.Changed, r.Version)
	}
	if r := mustApply(t, s, &command{Type: cmdConfigDel, Key: "never"}); r.Changed || r.Version != 0 {
		t.Fatalf("deleting an unknown key: changed %v version %d", r.Changed, r.Version)
	}
	// Set again after the delete: the version keeps growing.
	if r := mustApply(t, s, &command{Type: cmdConfigSet, Key: "a", Value: "one"}); r.Version != 4 {
		t.Fatalf("set after delete: version %d, want 4", r.Version)
	}
	// History is bounded, oldest dropped first.
	for i := range 2 * proto.ConfigHistoryLen {
		mustApply(t, s, &command{Type: cmdConfigSet, Key: "h", Value: fmt.Sprint(i)})
	}
	revs := s.state().Config["h"].Revs
	if len(revs) != proto.ConfigHistoryLen || revs[len(revs)-1].Value != fmt.Sprint(2*proto.ConfigHistoryLen-1) ||
		revs[0].Value != fmt.Sprint(proto.ConfigHistoryLen) {
		t.Fatalf("history of h: %d versions, first %q last %q", len(revs), revs[0].Value, revs[len(revs)-1].Value)
	}
	// Bad input is refused without a change. (Invalid UTF-8 cannot reach
	// the applier: the JSON envelope would turn it into U+FFFD, which is
	// why CONFSET refuses it before proposing.)
	before := s.state()
	for _, c := range []*command{
		{Type: cmdConfigSet, Key: "", Value: "v"},
		{Type: cmdConfigSet, Key: "sp ace", Value: "v"},
		{Type: cmdConfigSet, Key: "k", Value: strings.Repeat("v", proto.MaxConfigValueLen+1)},
		{Type: cmdConfigDel, Key: ""},
	} {
		if res := applyRaw(s, c); !errors.Is(res.Err, errBadCommand) {
			t.Errorf("apply %s %q: %v, want errBadCommand", c.Type, c.Key, res.Err)
		}
	}
	if s.state() != before {
		t.Fatal("a refused entry changed the state")
	}
}

// TestConfigPublishedStatesImmutable: a state taken before a change (a
// snapshot, a reader) keeps the history it had.
func TestConfigPublishedStatesImmutable(t *testing.T) {
	s := newStore()
	for i := range proto.ConfigHistoryLen {
		mustApply(t, s, &command{Type: cmdConfigSet, Key: "k", Value: fmt.Sprint(i)})
	}
	old := s.state()
	oldRevs := append([]configRev(nil), old.Config["k"].Revs...)
	mustApply(t, s, &command{Type: cmdConfigSet, Key: "k", Value: "new"})
	mustApply(t, s, &command{Type: cmdConfigSet, Key: "other", Value: "x"})
	if !reflect.DeepEqual(old.Config["k"].Revs, oldRevs) || old.Config["other"] != nil || old.ConfigRev != uint64(proto.ConfigHistoryLen) {
		t.Fatalf("an older state changed: %+v", old.Config["k"].Revs)
	}
}

func TestConfigSince(t *testing.T) {
	s := newStore()
	mustApply(t, s, &command{Type: cmdConfigSet, Key: "a", Value: strings.Repeat("a", 100)})
	mustApply(t, s, &command{Type: cmdConfigSet, Key: "b", Value: strings.Repeat("b", 100)})
	mustApply(t, s, &command{Type: cmdConfigSet, Key: "c", Value: strings.Repeat("c", 100)})
	mustApply(t, s, &command{Type: cmdConfigDel, Key: "a"})
	st := s.state()
	rev, es := configSince(st, 0, 1<<20)
	if rev != 4 || len(es) != 3 || es[0].Key != "b" || es[2].Key != "a" || !es[2].Deleted {
		t.Fatalf("since 0: rev %d, %+v", rev, es)
	}
	if rev, es := configSince(st, 3, 1<<20); rev != 4 || len(es) != 1 || es[0].Key != "a" {
		t.Fatalf("since 3: rev %d, %+v", rev, es)
	}
	// A size bound cuts the reply in version order; the caller resumes
	// from the rev it got and ends with everything.
	var got []string
	var since uint64
	for range 10 {
		rev, es := configSince(st, since, 150)
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			got = append(got, e.Key)
		}
		if rev != es[len(es)-1].Version {
			t.Fatalf("bounded reply: rev %d, last entry version %d", rev, es[len(es)-1].Version)
		}
		since = rev
	}
	if strings.Join(got, ",") != "b,c,a" || since != 4 {
		t.Fatalf("bounded replies gave %v up to %d", got, since)
	}
}

func TestSnapshotRestoreConfigAndLocks(t *testing.T) {
	src := populated(t)
	mustApply(t, src, &command{Type: cmdConfigSet, Key: "app/db", Value: "postgres://x\nü"})
	mustApply(t, src, &command{Type: cmdConfigSet, Key: "app/db", Value: "postgres://y"})
	mustApply(t, src, &command{Type: cmdConfigSet, Key: "gone", Value: "v"})
	mustApply(t, src, &command{Type: cmdConfigDel, Key: "gone"})
	mustApply(t, src, &command{Type: cmdLockAcquire, Name: "job", Owner: "w1", TTLMs: 5000, Now: 1000, Session: "s1", Conn: "c.1"})
	mustApply(t, src, &command{Type: cmdLockAcquire, Name: "job2", Owner: "w2", TTLMs: 5000, Now: 2000})
	mustApply(t, src, &command{Type: cmdLockAcquire, Name: "job", Owner: "w9", TTLMs: 5000, Now: 2100, Session: "s1", Conn: "c.9", WaitMs: 60_000})

	var buf bytes.Buffer
	if err := src.state().writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	dst := newStore()
	if err := dst.restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	got, want := dst.state(), src.state()
	if !reflect.DeepEqual(got.Config, want.Config) || got.ConfigRev != want.ConfigRev {
		t.Fatalf("restored config differs:\n got %+v rev %d\nwant %+v rev %d", got.Config, got.ConfigRev, want.Config, want.ConfigRev)
	}
	if !reflect.DeepEqual(got.LockQueues, want.LockQueues) || len(got.LockQueues["job"]) != 1 {
		t.Fatalf("restored lock queues differ:\n got %+v\nwant %+v", got.LockQueues, want.LockQueues)
	}
	if !reflect.DeepEqual(got.Locks, want.Locks) || got.FenceSeq != want.FenceSeq || got.Clock != want.Clock {
		t.Fatalf("restored locks differ:\n got %+v seq %d clock %d\nwant %+v seq %d clock %d",
			got.Locks, got.FenceSeq, got.Clock, want.Locks, want.FenceSeq, want.Clock)
	}
	// Equal states give equal bytes.
	var again bytes.Buffer
	if err := got.writeTo(&again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatalf("re-persisting the restored state gave other bytes (%v)", err)
	}
	// The restored store goes on with the same counters.
	if r := mustApply(t, dst, &command{Type: cmdConfigSet, Key: "gone", Value: "back"}); r.Version != want.ConfigRev+1 {
		t.Fatalf("set after restore: version %d, want %d", r.Version, want.ConfigRev+1)
	}
	r := mustApply(t, dst, &command{Type: cmdLockAcquire, Name: "job3", Owner: "w3", TTLMs: 5000, Now: 3000})
	if !r.Lock.Granted || r.Lock.Token != want.FenceSeq+1 {
		t.Fatalf("lock after restore: %+v, want token %d", r.Lock, want.FenceSeq+1)
	}

	// Corrupt config or lock sections are refused.
	for _, bad := range [][2]string{
		{`"configRev":4`, `"configRev":3`},
		{`"fenceSeq":2`, `"fenceSeq":1`},
	} {
		b := bytes.Replace(buf.Bytes(), []byte(bad[0]), []byte(bad[1]), 1)
		if bytes.Equal(b, buf.Bytes()) {
			t.Fatalf("snapshot has no %s: %s", bad[0], buf.Bytes())
		}
		if err := newStore().restore(io.NopCloser(bytes.NewReader(b))); err == nil {
			t.Errorf("restored a snapshot with %s", bad[1])
		}
	}
}

// TestRestoreVersion3: snapshots written before config and locks existed
// are still read, with neither.
func TestRestoreVersion3(t *testing.T) {
	st := populated(t).state()
	body, err := json.Marshal(map[string]any{
		"replicas": st.Replicas, "data": st.Data, "sessions": st.Sessions, "metas": st.Metas,
		"table": json.RawMessage(mustMarshal(t, st.Table)), "membersEpoch": st.MembersEpoch, "draining": []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := newStore()
	if err := s.restore(io.NopCloser(bytes.NewReader(append(append(snapshotMagic[:], 0, 0, 0, 3), body...)))); err != nil {
		t.Fatalf("restore version 3: %v", err)
	}
	got := s.state()
	if got.ConfigRev != 0 || len(got.Config) != 0 || len(got.Locks) != 0 || got.Config == nil || got.Locks == nil {
		t.Fatalf("version 3 restored with config %v locks %v", got.Config, got.Locks)
	}
	if r := mustApply(t, s, &command{Type: cmdConfigSet, Key: "k", Value: "v"}); r.Version != 1 {
		t.Fatalf("first set after a version 3 restore: version %d", r.Version)
	}
}

// TestConfWatchLongPoll drives CONFSET and CONFWATCH on a real node: a
// poll at the current revision waits for the next change and returns it.
func TestConfWatchLongPoll(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	rdb := rawClient(t, n.RPCAddr())
	ctx := context.Background()
	if v, err := rdb.Do(ctx, (&proto.ConfSet{Key: "k1", Value: "v1"}).Args()...).Uint64(); err != nil || v != 1 {
		t.Fatalf("CONFSET: %d, %v", v, err)
	}
	v, err := rdb.Do(ctx, (&proto.ConfWatch{Since: 0, WaitMs: 1000}).Args()...).Result()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := proto.ParseConfWatchReply(v)
	if err != nil || rep.Rev != 1 || len(rep.Entries) != 1 || rep.Entries[0].Value != "v1" {
		t.Fatalf("CONFWATCH 0: %+v, %v", rep, err)
	}
	// Nothing new: the poll times out empty.
	start := time.Now()
	v, err = rdb.Do(ctx, (&proto.ConfWatch{Since: 1, WaitMs: 300}).Args()...).Result()
	if rep, perr := proto.ParseConfWatchReply(v); err != nil || perr != nil || len(rep.Entries) != 0 || rep.Rev != 1 {
		t.Fatalf("idle CONFWATCH: %+v, %v, %v", rep, err, perr)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("idle CONFWATCH returned after %v, before its wait", d)
	}
	// A change during the poll wakes it.
	done := make(chan *proto.ConfWatchReply, 1)
	go func() {
		v, err := rdb.Do(ctx, (&proto.ConfWatch{Since: 1, WaitMs: 1500}).Args()...).Result()
		rep, perr := proto.ParseConfWatchReply(v)
		if err != nil || perr != nil {
			rep = nil
		}
		done <- rep
	}()
	waitFor(t, "a poll waiting", func() (bool, string) {
		return n.store.cfg.polls.Load() == 1, fmt.Sprintf("%d polls", n.store.cfg.polls.Load())
	})
	if _, err := rdb.Do(ctx, (&proto.ConfSet{Key: "k2", Value: "v2"}).Args()...).Result(); err != nil {
		t.Fatal(err)
	}
	select {
	case rep := <-done:
		if rep == nil || rep.Rev != 2 || len(rep.Entries) != 1 || rep.Entries[0].Key != "k2" {
			t.Fatalf("woken CONFWATCH: %+v", rep)
		}
	case <-time.After(testWait):
		t.Fatal("CONFWATCH did not return")
	}
	// Admin reads.
	if g, err := rdb.Do(ctx, (&proto.ConfKey{Cmd: proto.CmdConfGet, Key: "k2"}).Args()...).Result(); err != nil {
		t.Fatal(err)
	} else if e, ok, err := proto.ParseConfGetReply("k2", g); err != nil || !ok || e.Version != 2 || e.Value != "v2" {
		t.Fatalf("CONFGET: %+v %v %v", e, ok, err)
	}
	if _, err := rdb.Do(ctx, (&proto.ConfKey{Cmd: proto.CmdConfGet, Key: "nope"}).Args()...).Result(); err == nil {
		t.Fatal("CONFGET of an unknown key answered a value")
	}
	l, err := rdb.Do(ctx, (&proto.ConfList{Prefix: "k"}).Args()...).Result()
	es, perr := proto.ParseConfigEntries(l, proto.CmdConfList)
	if err != nil || perr != nil || len(es) != 2 || es[0].Key != "k1" || es[1].Size != 2 {
		t.Fatalf("CONFLIST: %+v, %v, %v", es, err, perr)
	}
	// Oversize values are refused with ERR, and the node keeps serving.
	big := strings.Repeat("x", proto.MaxConfigValueLen+1)
	if err := respErr(rdb.Do(ctx, proto.CmdConfSet, "k3", big).Err()); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("oversize CONFSET: %v", err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}
