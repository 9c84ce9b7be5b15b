package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// TestTableWaitWakesNodesBeforeTheirHeartbeat: a node whose heartbeat
// interval is an hour still learns of a new table (a data node joined)
// and a new session list (a session joined) within a round trip, through
// its TABLEWAIT poll.
func TestTableWaitWakesNodesBeforeTheirHeartbeat(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	tl, sl := &tableLog{}, &sessionLog{}
	slow := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d1", Metas: []string{n.RPCAddr()},
		Interval: time.Hour, OnTable: tl.add, OnSessions: sl.add})
	slow.Start()
	waitFor(t, "d1's first table", func() (bool, string) { return tl.last() != nil, "none yet" })

	d2, _ := mustClient(t, proto.KindData, "d2", n.RPCAddr())
	d2.Start()
	waitFor(t, "d1 to learn that d2 joined", func() (bool, string) {
		tb := tl.last()
		return slices.ContainsFunc(tb.Nodes, func(m slot.Node) bool { return m.ID == "d2" }), fmt.Sprintf("epoch %d, nodes %v", tb.Epoch, tb.Nodes)
	})
	s1 := newTestClient(t, metaclient.Config{Kind: proto.KindSession, NodeID: "s1", Metas: []string{n.RPCAddr()}})
	s1.Start()
	waitFor(t, "d1 to learn that s1 joined", func() (bool, string) {
		_, ms, _ := sl.last()
		return hasIDs(ms, "s1"), fmt.Sprint(memberIDs(ms))
	})
}

// TestTableWaitLongPoll drives TABLEWAIT by hand: it answers at once when
// the node is behind, waits out its time when it is not, wakes on a
// change, and refuses malformed arguments.
func TestTableWaitLongPoll(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	d1, tl := mustClient(t, proto.KindData, "d1", n.RPCAddr())
	d1.Start()
	waitFor(t, "d1's first table", func() (bool, string) { return tl.last() != nil, "none yet" })
	rdb := rawClient(t, n.RPCAddr())
	ctx := context.Background()
	wait := func(epoch, members uint64, ms uint32) (uint64, uint64, time.Duration) {
		t.Helper()
		start := time.Now()
		v, err := rdb.Do(ctx, (&proto.TableWait{Epoch: epoch, MembersEpoch: members, WaitMs: ms}).Args()...).Result()
		if err != nil {
			t.Fatalf("TABLEWAIT %d %d %d: %v", epoch, members, ms, err)
		}
		e, m, err := proto.ParseTableWaitReply(v)
		if err != nil {
			t.Fatal(err)
		}
		return e, m, time.Since(start)
	}
	st := n.store.state()
	if e, m, d := wait(0, 0, 5000); e != st.Table.Epoch || m != st.MembersEpoch || d > 2*time.Second {
		t.Fatalf("behind: got epochs %d/%d after %v, want %d/%d at once", e, m, d, st.Table.Epoch, st.MembersEpoch)
	}
	if e, _, d := wait(st.Table.Epoch, st.MembersEpoch, 300); e != st.Table.Epoch || d < 250*time.Millisecond {
		t.Fatalf("up to date: got epoch %d after %v, want %d after its 300ms", e, d, st.Table.Epoch)
	}
	done := make(chan uint64, 1)
	go func() {
		v, err := rdb.Do(ctx, (&proto.TableWait{Epoch: st.Table.Epoch, MembersEpoch: st.MembersEpoch, WaitMs: 20000}).Args()...).Result()
		e, _, perr := proto.ParseTableWaitReply(v)
		if err != nil || perr != nil {
			e = 0
		}
		done <- e
	}()
	waitFor(t, "a poll waiting", func() (bool, string) {
		return n.store.tables.polls.Load() == 1, fmt.Sprintf("%d polls", n.store.tables.polls.Load())
	})
	d2, _ := mustClient(t, proto.KindData, "d2", n.RPCAddr())
	d2.Start()
	select {
	case e := <-done:
		if e <= st.Table.Epoch {
			t.Fatalf("woken TABLEWAIT: epoch %d, want above %d", e, st.Table.Epoch)
		}
	case <-time.After(testWait):
		t.Fatal("TABLEWAIT did not return when d2 joined")
	}
	for _, args := range [][]any{
		{proto.CmdTableWait, "1", "1"},
		{proto.CmdTableWait, "x", "1", "10"},
		{proto.CmdTableWait, "1", "1", "60001"},
	} {
		if _, err := rdb.Do(ctx, args...).Result(); !errors.Is(respErr(err), proto.ErrInvalid) {
			t.Errorf("%v: got %v, want an ERR reply", args, err)
		}
	}
}
