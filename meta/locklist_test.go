package meta

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

func TestMLockListShowsHeldLocksWithHolderTokenAndWaiters(t *testing.T) {
	n := mustSingle(t, 30*time.Second)
	rdb := rawClient(t, n.RPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	list := func(args ...any) *proto.LockListReply {
		t.Helper()
		v, err := rdb.Do(ctx, args...).Result()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		r, err := proto.ParseLockListReply(v)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := list((&proto.LockList{}).Args()...); len(r.Locks) != 0 || r.Truncated {
		t.Fatalf("no locks yet: %+v", r)
	}
	for _, m := range []proto.MLock{
		{Name: "b-job", Owner: "w2", TTLMs: 60_000, Session: "s1", Conn: "c7"},
		{Name: "a-master", Owner: "w1", TTLMs: 60_000},
	} {
		if _, err := rdb.Do(ctx, m.Args()...).Result(); err != nil {
			t.Fatalf("MLOCK %s: %v", m.Name, err)
		}
	}
	// A waiter in line for a-master, in the background.
	waitDone := make(chan struct{})
	go func() {
		defer close(waitDone)
		rdb.Do(ctx, (&proto.MLock{Name: "a-master", Owner: "w3", TTLMs: 60_000, Session: "s1", Conn: "c9", WaitMs: 2_000}).Args()...)
	}()
	waitFor(t, "a waiter on a-master", func() (bool, string) {
		r := list((&proto.LockList{}).Args()...)
		return len(r.Locks) == 2 && r.Locks[0].Waiters == 1, "locks " + lockNames(r)
	})
	r := list((&proto.LockList{}).Args()...)
	a, b := r.Locks[0], r.Locks[1]
	if a.Name != "a-master" || a.Owner != "w1" || a.Token == 0 || a.TTLMs <= 0 || a.TTLMs > 60_000 || a.Session != "" {
		t.Errorf("a-master: %+v", a)
	}
	if b.Name != "b-job" || b.Owner != "w2" || b.Token == a.Token || b.Session != "s1" || b.Conn != "c7" || b.Waiters != 0 {
		t.Errorf("b-job: %+v", b)
	}
	if r := list((&proto.LockList{Limit: 1}).Args()...); len(r.Locks) != 1 || !r.Truncated || r.Locks[0].Name != "a-master" {
		t.Errorf("limit 1: %+v", r)
	}
	for _, bad := range [][]any{{proto.CmdMLockList, "0"}, {proto.CmdMLockList, "x"}, {proto.CmdMLockList, "1", "2"}} {
		if _, err := rdb.Do(ctx, bad...).Result(); !errors.Is(respErr(err), proto.ErrInvalid) {
			t.Errorf("%v: %v, want an ERR", bad, err)
		}
	}
	<-waitDone
}

func lockNames(r *proto.LockListReply) string {
	s := ""
	for _, l := range r.Locks {
		s += l.Name + " "
	}
	return s
}
