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
