package meta

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// TestSessionList: MembersEpoch rises on every change of the session
// nodes and clients get the new list through OnSessions; data-only changes
// leave it alone.
func TestSessionList(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	membersEpoch := func() uint64 { return n.store.state().MembersEpoch }

	sl := &sessionLog{}
	d1 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d1", Metas: []string{n.RPCAddr()}, OnSessions: sl.add})
	d1.Start()
	waitFor(t, "d1 to get the first, empty, session list", func() (bool, string) {
		e, list, count := sl.last()
		return count == 1 && e == 1 && list != nil && len(list) == 0, fmt.Sprintf("%d lists, last %v at %d", count, list, e)
	})

	s1 := newTestClient(t, metaclient.Config{Kind: proto.KindSession, NodeID: "s1", Metas: []string{n.RPCAddr()}})
	s2 := newTestClient(t, metaclient.Config{Kind: proto.KindSession, NodeID: "s2", Addr: "10.0.0.2:9600", Metas: []string{n.RPCAddr()}})
	s1.Start()
	s2.Start()
	waitFor(t, "d1 to get both sessions", func() (bool, string) {
		e, list, _ := sl.last()
		return hasIDs(list, "s1", "s2") && e == membersEpoch(), fmt.Sprintf("list %v at %d, meta at %d", memberIDs(list), e, membersEpoch())
	})
	_, list, _ := sl.last()
	if want := (proto.Member{ID: "s2", Addr: "10.0.0.2:9600", Kind: proto.KindSession}); list[1] != want {
		t.Fatalf("session entry %+v, want %+v", list[1], want)
	}
	if e := sl.allEpochs(); !slices.IsSorted(e) || len(slices.Compact(slices.Clone(e))) != len(e) || e[len(e)-1] < 3 {
		t.Fatalf("OnSessions epochs %v, want strictly increasing up to at least 3", e)
	}
	if e, got := d1.Sessions(); e != membersEpoch() || !hasIDs(got, "s1", "s2") {
		t.Fatalf("Sessions() = %d %v", e, memberIDs(got))
	}
	// Sessions hear of each other too.
	waitFor(t, "s1 to know both sessions", func() (bool, string) {
		e, got := s1.Sessions()
		return hasIDs(got, "s1", "s2"), fmt.Sprintf("%v at %d", memberIDs(got), e)
	})

	// A data node joining changes the table, not the session list.
	before, _, delivered := sl.last()
	d2 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d2", Metas: []string{n.RPCAddr()}})
	if err := d2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "d1 to get the table with d2", func() (bool, string) {
		tb := d1.Table()
		return tb != nil && tb.HasNode("d2"), ""
	})
	if err := d1.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e, _, count := sl.last(); membersEpoch() != before || e != before || count != delivered {
		t.Fatalf("a data join moved MembersEpoch %d -> %d, or delivered a list (%d -> %d)", before, membersEpoch(), delivered, count)
	}

	// A session leaving (or being evicted) raises it.
	if err := s2.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "d1 to see s2 gone", func() (bool, string) {
		e, list, _ := sl.last()
		return hasIDs(list, "s1") && e > before, fmt.Sprintf("list %v at %d", memberIDs(list), e)
	})

	// So does an address change.
	before = membersEpoch()
	rdb := rawClient(t, n.RPCAddr())
	hb := &proto.Heartbeat{Kind: proto.KindSession, NodeID: "s3", Addr: "h:1", MembersEpoch: before}
	for _, addr := range []string{"h:1", "h:2"} {
		hb.Addr = addr
		if err := rdb.Do(ctx, hb.Args()...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := membersEpoch(); got != before+2 {
		t.Fatalf("join and address change took MembersEpoch %d -> %d, want +2", before, got)
	}
}
