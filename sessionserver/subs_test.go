package sessionserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// TestSubscriptionSurvivesOutOfOrderWatchRequests: a topic's last
// subscriber leaves and a new subscriber makes a new topic at once (as
// when a session closes every client connection and they come back); the
// manager may get the new topic's request before the old one's. The watch
// on the data node must stay, and the new topic must get the current
// state, or its subscribers would never hear of a change again.
func TestSubscriptionSurvivesOutOfOrderWatchRequests(t *testing.T) {
	r := newFenceRig(t)
	n := r.s
	old := &clientConn{n: n, id: "old"}
	t1 := n.subs.add(n, old, "svc", proto.ScopeDatacenter)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		st := t1.state.Load()
		return st != nil && st.version == 7, "the first topic got no state"
	})
	// The old topic goes, a new one comes, and its request is handled
	// first; the old topic's request comes last.
	sl := &n.subs.slots[slot.Of("svc")]
	sl.mu.Lock()
	delete(sl.topics, topicKey{id: "svc"})
	sl.mu.Unlock()
	nw := &clientConn{n: n, id: "new"}
	t2 := n.subs.add(n, nw, "svc", proto.ScopeDatacenter)
	n.subs.request(watchReq{id: "svc"}) // the old topic's, late
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		st := t2.state.Load()
		return st != nil && st.version == 7, "the new topic got no state"
	})
	// Once a later request has reached the data node, the manager has
	// handled the late one (it takes them in order): the watch is still
	// there.
	n.subs.add(n, nw, "other", proto.ScopeDatacenter)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		sub, _ := r.streamCounts("other")
		return sub == 1, "the later request has not reached the data node"
	})
	if sub, unsub := r.streamCounts("svc"); sub != 2 || unsub != 0 {
		t.Fatalf("svc subscribed %d times and unsubscribed %d, want 2 and 0", sub, unsub)
	}
}

// TestFenceEndRenewsEveryFeed: a session fenced before it ever heard a
// data node answer a DALIVE (so the node's first answer after the heal is
// not a gap it would notice) opens that node's change feed again when the
// fence ends: the feed may be a connection the cut broke without this
// side knowing.
func TestFenceEndRenewsEveryFeed(t *testing.T) {
	r := newFenceRigWith(t, func(r *fenceRig) { r.aliveDown.Store(true) })
	n := r.s
	n.subs.add(n, &clientConn{n: n, id: "c"}, "svc", proto.ScopeDatacenter)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		sub, _ := r.streamCounts("svc")
		return sub == 1, "svc not yet watched"
	})
	r.metaDown.Store(true)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return n.isFenced(), "not fenced"
	})
	if sub, _ := r.streamCounts("svc"); sub != 1 {
		t.Fatalf("svc subscribed %d times while fenced, want 1", sub)
	}
	r.metaDown.Store(false)
	r.aliveDown.Store(false)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		sub, _ := r.streamCounts("svc")
		return !n.isFenced() && sub == 2, fmt.Sprintf("fenced %v, svc subscribed %d times, want a second time once the fence ended", n.isFenced(), sub)
	})
}
