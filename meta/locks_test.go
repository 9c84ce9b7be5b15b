package meta

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

func acquire(t *testing.T, s *store, name, owner string, ttl, now int64) *lockResult {
	t.Helper()
	return mustApply(t, s, &command{Type: cmdLockAcquire, Name: name, Owner: owner, TTLMs: ttl, Now: now}).Lock
}

func TestApplierLockGrantRenewRefuse(t *testing.T) {
	s := newStore()
	a := acquire(t, s, "job", "w1", 1000, 10_000)
	if !a.Granted || a.Token != 1 || a.Expires != 11_000 {
		t.Fatalf("first grant: %+v", a)
	}
	// Another owner is refused and told who holds it.
	b := acquire(t, s, "job", "w2", 1000, 10_500)
	if b.Granted || b.Holder != "w1" || b.Token != 1 || b.Expires != 11_000 {
		t.Fatalf("competing grant: %+v", b)
	}
	// The holder renews: same token, later expiry.
	r := acquire(t, s, "job", "w1", 2000, 10_600)
	if !r.Granted || r.Token != 1 || r.Expires != 12_600 {
		t.Fatalf("renewal: %+v", r)
	}
	// After expiry the lock goes to the next owner with a higher token,
	// even before an expiry entry dropped it.
	c := acquire(t, s, "job", "w2", 1000, 12_600)
	if !c.Granted || c.Token != 2 {
		t.Fatalf("grant after expiry: %+v", c)
	}
	// The old holder cannot renew or release it any more.
	if d := acquire(t, s, "job", "w1", 1000, 12_700); d.Granted || d.Holder != "w2" {
		t.Fatalf("stale holder renewed: %+v", d)
	}
	rel := mustApply(t, s, &command{Type: cmdLockRelease, Name: "job", Owner: "w1", Now: 12_700}).Lock
	if rel.Released || s.state().Locks["job"].Owner != "w2" {
		t.Fatalf("stale holder released: %+v", rel)
	}
	rel = mustApply(t, s, &command{Type: cmdLockRelease, Name: "job", Owner: "w2", Now: 12_800}).Lock
	if !rel.Released || s.state().Locks["job"] != nil {
		t.Fatalf("holder's release: %+v, lock %+v", rel, s.state().Locks["job"])
	}
	// Bad input is refused.
	for _, c := range []*command{
		{Type: cmdLockAcquire, Name: "", Owner: "w", TTLMs: 1000},
		{Type: cmdLockAcquire, Name: "n", Owner: "", TTLMs: 1000},
		{Type: cmdLockAcquire, Name: "n", Owner: "w", TTLMs: 10},
		{Type: cmdLockRelease, Name: "n", Owner: ""},
	} {
		if res := applyRaw(s, c); !errors.Is(res.Err, errBadCommand) {
			t.Errorf("apply %+v: %v, want errBadCommand", c, res.Err)
		}
	}
}

// TestApplierFencingTokensGrow: every new grant, whatever the lock, gets a
// token above every earlier one.
func TestApplierFencingTokensGrow(t *testing.T) {
	s := newStore()
	var last uint64
	now := int64(1000)
	for i := range 50 {
		name := []string{"a", "b", "c"}[i%3]
		owner := []string{"w1", "w2"}[i%2]
		now += 700
		r := acquire(t, s, name, owner, 1000, now)
		if !r.Granted {
			continue
		}
		if r.Token < last {
			t.Fatalf("grant %d: token %d after %d", i, r.Token, last)
		}
		last = r.Token
	}
	if last < 10 {
		t.Fatalf("only %d tokens granted", last)
	}
}

func TestApplierLockConnectionBinding(t *testing.T) {
	s := newStore()
	mustApply(t, s, &command{Type: cmdInit, Replicas: 1})
	mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:1"})
	mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindSession, ID: "s2", Addr: "h:2"})
	lock := func(name, owner, sess, conn string) {
		if r := mustApply(t, s, &command{Type: cmdLockAcquire, Name: name, Owner: owner, TTLMs: 60_000, Now: 1000,
			Session: sess, Conn: conn}).Lock; !r.Granted {
			t.Fatalf("lock %s: %+v", name, r)
		}
	}
	lock("a", "w1", "s1", "c1")
	lock("b", "w2", "s1", "c2")
	lock("c", "w3", "s2", "c3")
	// The owner renewed from another connection: the first connection's
	// release must not take it.
	lock("a", "w1", "s2", "c9")
	if r := mustApply(t, s, &command{Type: cmdLockRelease, Name: "a", Owner: "w1", Conn: "c1", Now: 1000}).Lock; r.Released {
		t.Fatal("a closed connection released a lock renewed from another one")
	}
	if r := mustApply(t, s, &command{Type: cmdLockRelease, Name: "b", Owner: "w2", Conn: "c2", Now: 1000}).Lock; !r.Released {
		t.Fatal("the binding connection could not release its lock")
	}
	// A session leaving takes its connections' locks with it.
	lock("d", "w4", "s1", "c4")
	mustApply(t, s, &command{Type: cmdRemove, Kind: proto.KindSession, ID: "s1", Reason: reasonLease})
	locks := s.state().Locks
	if locks["d"] != nil || locks["a"] == nil || locks["c"] == nil {
		t.Fatalf("after s1 left: %v", locks)
	}
}

// TestApplierLockExpiryDeterministic: expiry depends only on the times in
// the log, so two replays agree to the byte, and the FSM's clock never
// goes back when a leader with a slower clock proposes.
func TestApplierLockExpiryDeterministic(t *testing.T) {
	log := []*command{
		{Type: cmdLockAcquire, Name: "a", Owner: "w1", TTLMs: 1000, Now: 5000},
		{Type: cmdLockAcquire, Name: "b", Owner: "w2", TTLMs: 3000, Now: 5100},
		{Type: cmdConfigSet, Key: "k", Value: "v"},
		{Type: cmdLockExpire, Now: 6000},
		// A new leader whose clock is behind: the FSM keeps 6000.
		{Type: cmdLockAcquire, Name: "c", Owner: "w3", TTLMs: 500, Now: 5500},
		{Type: cmdLockExpire, Now: 6400},
	}
	replay := func() *store {
		s := newStore()
		for _, c := range log {
			mustApply(t, s, c)
		}
		return s
	}
	a, b := replay(), replay()
	var ba, bb bytes.Buffer
	if err := a.state().writeTo(&ba); err != nil {
		t.Fatal(err)
	}
	if err := b.state().writeTo(&bb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ba.Bytes(), bb.Bytes()) {
		t.Fatalf("two replays differ:\n%s\n%s", ba.Bytes(), bb.Bytes())
	}
	st := a.state()
	// a expired at 6000; c was granted at the FSM clock 6000 (not the
	// stale 5500), so it lives until 6500 and survives the expiry at
	// 6400, which found nothing due and changed nothing.
	if st.Locks["a"] != nil || st.Locks["b"] == nil || st.Locks["c"] == nil || st.Locks["c"].Expires != 6500 || st.Clock != 6000 {
		t.Fatalf("locks %v, clock %d", st.Locks, st.Clock)
	}
	if r := mustApply(t, a, &command{Type: cmdLockExpire, Now: 6400}); r.Changed {
		t.Fatal("an expiry entry with nothing due changed the state")
	}
}

// TestLockSurvivesMetaLeaderLoss: a lock granted through one leader is
// still held, with its token, under the next, and the next grant's token
// is higher.
func TestLockSurvivesMetaLeaderLoss(t *testing.T) {
	nodes := mustCluster(t, 3, 30*time.Second)
	leader, rest := leaderOf(t, nodes)
	ctx := context.Background()
	lockVia := func(n *Node, name, owner string) *proto.LockReply {
		t.Helper()
		v, err := rawClient(t, n.RPCAddr()).Do(ctx, (&proto.MLock{Name: name, Owner: owner, TTLMs: 60_000}).Args()...).Result()
		if err != nil {
			t.Fatalf("MLOCK %s via %s: %v", name, n.ID(), err)
		}
		r, err := proto.ParseLockReply(v)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := lockVia(leader, "master", "sched-1")
	if !first.Granted {
		t.Fatalf("first MLOCK: %+v", first)
	}
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	next, _ := leaderOf(t, rest)
	v, err := rawClient(t, next.RPCAddr()).Do(ctx, (&proto.LockInfoCmd{Cmd: proto.CmdMLockInfo, Name: "master"}).Args()...).Result()
	info, perr := proto.ParseLockInfoReply(v)
	if err != nil || perr != nil || info == nil || info.Owner != "sched-1" || info.Token != first.Token {
		t.Fatalf("MLOCKINFO after the leader died: %+v, %v, %v", info, err, perr)
	}
	if r := lockVia(next, "master", "sched-2"); r.Granted || r.Holder != "sched-1" {
		t.Fatalf("a second scheduler got the lock: %+v", r)
	}
	if r := lockVia(next, "other", "sched-2"); !r.Granted || r.Token <= first.Token {
		t.Fatalf("a grant under the new leader: %+v, want a token above %d", r, first.Token)
	}
}

func wait(t *testing.T, s *store, name, owner, conn string, ttl, waitMs, now int64) *lockResult {
	t.Helper()
	return mustApply(t, s, &command{Type: cmdLockAcquire, Name: name, Owner: owner, TTLMs: ttl, Now: now,
		Session: "s1", Conn: conn, WaitMs: waitMs}).Lock
}

// Waiters queue in arrival order; a release, an expiry or the holder's
// session leaving hands the lock to the first waiter still waiting, with
// a new token, in the same entry; a waiter whose wait passed is skipped;
// a try without WAIT does not jump the queue; asking again keeps one's
// place; a cancel after the grant reports the grant.
func TestApplierLockQueue(t *testing.T) {
	s := newStore()
	if r := wait(t, s, "master", "m1", "c1", 1000, 5000, 10_000); !r.Granted || r.Token != 1 {
		t.Fatalf("free lock with WAIT: %+v", r)
	}
	for i, o := range []string{"m2", "m3", "m4"} {
		if r := wait(t, s, "master", o, "c"+o, 1000, 5000, int64(10_001+i)); r.Granted || !r.Queued || r.Holder != "m1" {
			t.Fatalf("%s: %+v, want queued behind m1", o, r)
		}
	}
	// m2 asks again: still first, not moved to the back.
	if r := wait(t, s, "master", "m2", "cm2", 1000, 6000, 10_010); !r.Queued {
		t.Fatalf("m2 again: %+v", r)
	}
	if q := s.state().LockQueues["master"]; len(q) != 3 || q[0].Owner != "m2" || q[0].Until != 16_010 {
		t.Fatalf("queue %+v", q)
	}
	// Release: m2 holds it at once, token 2.
	mustApply(t, s, &command{Type: cmdLockRelease, Name: "master", Owner: "m1", Now: 10_100})
	if l := s.state().Locks["master"]; l == nil || l.Owner != "m2" || l.Token != 2 || l.Expires != 11_100 || l.Conn != "cm2" {
		t.Fatalf("after release: %+v", l)
	}
	// A try without WAIT from a newcomer is refused even once the lock
	// is free, while m3 waits.
	mustApply(t, s, &command{Type: cmdLockRelease, Name: "master", Owner: "m2", Now: 10_200})
	if l := s.state().Locks["master"]; l == nil || l.Owner != "m3" {
		t.Fatalf("after m2's release: %+v", l)
	}
	// m4's wait passes (until 15_003) while m3 holds it; m3 expires at
	// 11_200; an expiry entry at 15_500 finds no one to give it to.
	if r := mustApply(t, s, &command{Type: cmdLockExpire, Now: 15_500}); !r.Changed {
		t.Fatal("expiry changed nothing")
	}
	if l, q := s.state().Locks["master"], s.state().LockQueues["master"]; l != nil || len(q) != 0 {
		t.Fatalf("after expiry with only a lapsed waiter: lock %+v queue %+v", l, q)
	}
	// Expiry hands over too.
	wait(t, s, "job", "a", "ca", 1000, 0, 20_000)
	wait(t, s, "job", "b", "cb", 1000, 9000, 20_001)
	mustApply(t, s, &command{Type: cmdLockExpire, Now: 21_000})
	if l := s.state().Locks["job"]; l == nil || l.Owner != "b" || l.Expires != 22_000 {
		t.Fatalf("expiry handover: %+v", l)
	}
	// A cancel that comes after the grant reports it; a cancel of a
	// waiter takes it out.
	if r := mustApply(t, s, &command{Type: cmdLockCancel, Name: "job", Owner: "b", Conn: "cb", Now: 21_001}).Lock; !r.Granted {
		t.Fatalf("cancel after grant: %+v", r)
	}
	wait(t, s, "job", "c", "cc", 1000, 9000, 21_002)
	if r := mustApply(t, s, &command{Type: cmdLockCancel, Name: "job", Owner: "c", Conn: "cc", Now: 21_003}); r.Lock.Granted || len(s.state().LockQueues["job"]) != 0 {
		t.Fatalf("cancel of a waiter: %+v, queue %+v", r.Lock, s.state().LockQueues["job"])
	}
	// The holder's session leaving hands the lock to a waiter of another
	// session, and drops the session's own waiters.
	mustApply(t, s, &command{Type: cmdLockAcquire, Name: "job", Owner: "d", TTLMs: 1000, Now: 21_004, Session: "s2", Conn: "cd", WaitMs: 9000})
	mustApply(t, s, &command{Type: cmdLockAcquire, Name: "job", Owner: "e", TTLMs: 1000, Now: 21_005, Session: "s1", Conn: "ce", WaitMs: 9000})
	next := *s.state()
	withoutSessionLocks(&next, "s1", 21_006) // b (holder) and e are s1's
	if l, q := next.Locks["job"], next.LockQueues["job"]; l == nil || l.Owner != "d" || len(q) != 0 {
		t.Fatalf("after s1 left: lock %+v queue %+v", l, q)
	}
	if r := applyRaw(s, &command{Type: cmdLockAcquire, Name: "n", Owner: "w", TTLMs: 1000, WaitMs: proto.MaxLockWait + 1}); !errors.Is(r.Err, errBadCommand) {
		t.Fatalf("WAIT past the limit: %v", r.Err)
	}
}

// MLOCK with a wait blocks until the holder releases, and the waiter
// then holds it; one whose wait passes gets a refusal and leaves the
// queue.
func TestMLockWaitIsHandedOver(t *testing.T) {
	n, _ := leaderOf(t, mustCluster(t, 1, 30*time.Second))
	ctx := context.Background()
	rpc := func(args ...any) any {
		t.Helper()
		v, err := rawClient(t, n.RPCAddr()).Do(ctx, args...).Result()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	lock := func(m proto.MLock) *proto.LockReply {
		r, err := proto.ParseLockReply(rpc(m.Args()...))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := lock(proto.MLock{Name: "m", Owner: "a", TTLMs: 60_000, Session: "s", Conn: "ca"}); !r.Granted {
		t.Fatalf("a: %+v", r)
	}
	got := make(chan *proto.LockReply, 1)
	go func() {
		r, _ := proto.ParseLockReply(func() any {
			v, _ := rawClient(t, n.RPCAddr()).Do(ctx, (&proto.MLock{Name: "m", Owner: "b", TTLMs: 60_000, Session: "s", Conn: "cb", WaitMs: 20_000}).Args()...).Result()
			return v
		}())
		got <- r
	}()
	waitFor(t, "b queued", func() (bool, string) { return len(n.store.state().LockQueues["m"]) == 1, "b is not queued" })
	select {
	case r := <-got:
		t.Fatalf("b answered while a holds the lock: %+v", r)
	default:
	}
	released := time.Now()
	if v := rpc((&proto.MUnlock{Name: "m", Owner: "a"}).Args()...); v != int64(1) {
		t.Fatalf("MUNLOCK: %v", v)
	}
	select {
	case r := <-got:
		if r == nil || !r.Granted || r.Token != 2 {
			t.Fatalf("b after the release: %+v", r)
		}
		t.Logf("handed over %v after the release", time.Since(released))
	case <-time.After(10 * time.Second):
		t.Fatal("b was not granted after the release")
	}
	// c waits 300 ms behind b and gives up: refused, out of the queue.
	r := lock(proto.MLock{Name: "m", Owner: "c", TTLMs: 60_000, Session: "s", Conn: "cc", WaitMs: 300})
	if r.Granted || r.Holder != "b" || len(n.store.state().LockQueues["m"]) != 0 {
		t.Fatalf("c after its wait: %+v, queue %+v", r, n.store.state().LockQueues["m"])
	}
}
