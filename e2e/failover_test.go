package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// failoverRig is a script cluster with a writer load over both sessions
// and a watcher per session on every service.
type failoverRig struct {
	c        *scriptCluster
	f        *fleet
	ws       []*watcher
	pvs      []*pathView // a prefix watch of the whole fleet per session
	lookups  []*redis.Client
	sessions []procNode
}

func mustRig(t *testing.T, env ...string) *failoverRig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t, env...)
	r := &failoverRig{c: c, sessions: c.byRole("session")}
	addrs := []string{r.sessions[0].addr, r.sessions[1].addr}
	r.f = mustFleet(t, addrs, 12, 3)
	for _, a := range addrs {
		cl := mustClient(t, a)
		r.lookups = append(r.lookups, cl)
		w := mustWatch(t, cl, r.f.services...)
		w.guardRemovals(func(string, string) bool { return false })
		r.ws = append(r.ws, w)
		pv := mustPathView(t, a, "/fleet/*")
		pv.guardRemovals(func(string) bool { return false })
		r.pvs = append(r.pvs, pv)
	}
	r.f.converge(15*time.Second, r.ws, r.lookups)
	r.f.convergePaths(15*time.Second, r.pvs)
	return r
}

// kill sends SIGKILL and waits until the process is gone, so that a
// `cluster.sh start` right after it does not find it still running.
func kill(t *testing.T, n procNode) {
	t.Helper()
	if err := syscall.Kill(n.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", n.id, n.pid, err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return syscall.Kill(n.pid, 0) != nil, fmt.Sprintf("%s (pid %d) still exists after SIGKILL", n.id, n.pid)
	})
}

// TestDataLeaderKilledLosesNothing: kill -9 of the data node leading the
// most slots, under writes through both sessions. Its sessions and
// followers find it refusing connections and report it; meta, refused
// too, evicts it at once (proto.Suspect). The lease here is 30 s, so a
// failover within 20 s can only be that path; and nothing is lost.
func TestDataLeaderKilledLosesNothing(t *testing.T) {
	r := mustRig(t, "SLOTREG_LEASE=30s")
	r.f.startWriters(20 * time.Millisecond)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return r.f.acks.Load() > 500, "writers not running"
	})
	tab := metaTable(t, r.c.byRole("meta"))
	victim := mostLeading(tab)
	t.Logf("killing %s, which leads %d slots (table epoch %d)", victim, len(tab.LedBy(victim)), tab.Epoch)
	kill(t, r.c.node(victim))
	killed := time.Now()
	before := r.f.acks.Load()
	// Writes keep being acknowledged after the failover.
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		return !tab.HasNode(victim) && r.f.acks.Load() > before+500, "failover not done or writes stalled"
	})
	t.Logf("failed over and 500 writes through %v after the kill, with a 30 s lease", time.Since(killed).Round(time.Millisecond))
	r.stopAndCheck()
}

func TestDataNodeRestartRejoinsAsFollower(t *testing.T) {
	r := mustRig(t)
	r.f.startWriters(20 * time.Millisecond)
	tab := metaTable(t, r.c.byRole("meta"))
	victim := tab.Nodes[0].ID
	kill(t, r.c.node(victim))
	r.waitGone(t, victim, 20*time.Second)
	if out, err := r.c.run("start", victim); err != nil {
		t.Fatalf("cluster.sh start %s: %v\n%s", victim, err, out)
	}
	// It comes back holding follower places; auto-rebalance then hands it
	// leaderships one slot at a time, under the write load.
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		return tab.HasNode(victim) && len(tab.FollowedBy(victim)) > 0,
			fmt.Sprintf("%s follows %d slots", victim, len(tab.FollowedBy(victim)))
	})
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		n := len(tab.LedBy(victim))
		return n >= 80 && len(tab.Moving()) == 0, fmt.Sprintf("%s leads %d slots, %d moving", victim, n, len(tab.Moving()))
	})
	r.stopAndCheck()
}

func TestMetaQuorumLostKeepsServing(t *testing.T) {
	r := mustRig(t)
	r.c.waitSettled()
	metas := r.c.byRole("meta")
	kill(t, metas[0])
	kill(t, metas[1])
	r.f.startWriters(20 * time.Millisecond)
	before := r.f.acks.Load()
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		return r.f.acks.Load() > before+300, fmt.Sprintf("writes stalled without meta quorum: %d acks since", r.f.acks.Load()-before)
	})
	// A brand new service: REGISTER, LOOKUP and its push all work.
	w := mustWatch(t, r.lookups[1], "no-quorum")
	register(t, r.lookups[0], "no-quorum", "r1", "x")
	w.waitSet("no-quorum", "r1=x")
	r.stopAndCheck()

	// Quorum returns: membership and table changes go through again.
	for _, m := range metas[:2] {
		if out, err := r.c.run("start", m.id); err != nil {
			t.Fatalf("cluster.sh start %s: %v\n%s", m.id, err, out)
		}
	}
	if out, err := r.c.run("start", "data4"); err != nil {
		t.Fatalf("cluster.sh start data4: %v\n%s", err, out)
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		return tab.HasNode("data4") && len(tab.FollowedBy("data4")) > 0, "data4 did not join after quorum returned"
	})
}

func TestSessionKilledRemovesExactlyItsPublishers(t *testing.T) {
	r := mustRig(t)
	dead := r.sessions[0]
	// A TTL publisher made through the doomed session outlives it.
	ttl := redis.NewClient(&redis.Options{Addr: dead.addr})
	register(t, ttl, r.f.services[0], "ttl-pub", "stays", "TTL", 120)
	ttl.Close()
	r.f.mu.Lock()
	r.f.truth[r.f.services[0]]["ttl-pub"] = "stays"
	r.f.mu.Unlock()

	w := r.ws[1] // the watcher on the surviving session
	deadRids := map[string]bool{}
	for _, c := range r.f.clients {
		if c.session == dead.addr {
			deadRids[c.name] = true
		}
	}
	w.guardRemovals(func(_, rid string) bool { return deadRids[rid] })
	r.pvs[1].guardRemovals(func(path string) bool { return deadRids[path[strings.LastIndexByte(path, '/')+1:]] })
	kill(t, dead)
	r.f.dropSession(dead.addr)
	r.f.converge(20*time.Second, r.ws[1:], r.lookups[1:])
	r.f.convergePaths(20*time.Second, r.pvs[1:])
	for _, svc := range r.f.services {
		for _, p := range w.all(svc) {
			for _, e := range p.Publishers {
				if !deadRids[e.RegisterID] && !strings.HasPrefix(e.Data, e.RegisterID) && e.RegisterID != "ttl-pub" {
					t.Errorf("%s: unexpected publisher %s=%s", svc, e.RegisterID, e.Data)
				}
			}
		}
	}
}

// TestFailoverRestoresUnreplicatedPublishers makes a leader acknowledge
// publishers its follower never receives (the follower is paused), then
// kills the leader. The promoted follower lacks them; it must get them back
// from the sessions before it pushes anything, so no subscriber ever sees
// them vanish.
func TestFailoverRestoresUnreplicatedPublishers(t *testing.T) {
	// The follower is paused for as long as a few writes and their pushes
	// take: a lease of 5 s keeps a slow machine from evicting it first
	// (the leader's kill is found by refused connections, not the lease).
	r := mustRig(t, "SLOTREG_LEASE=5s")
	tab := metaTable(t, r.c.byRole("meta"))
	leader := mostLeading(tab)
	s := tab.LedBy(leader)[0]
	follower := tab.Slots[s].Followers[0]
	t.Logf("slot %d: leader %s, follower %s (table epoch %d)", s, leader, follower, tab.Epoch)
	var svcs []string
	for i := 0; len(svcs) < 3; i++ {
		if name := fmt.Sprintf("unrepl-%d", i); slot.Of(name) == s {
			svcs = append(svcs, name)
		}
	}
	var ws []*watcher
	for _, c := range r.lookups {
		w := mustWatch(t, c, svcs...)
		w.guardRemovals(func(string, string) bool { return false })
		ws = append(ws, w)
	}
	for _, w := range ws {
		for _, svc := range svcs {
			w.waitSet(svc)
		}
	}
	fnode := r.c.node(follower)
	if err := syscall.Kill(fnode.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(fnode.pid, syscall.SIGCONT)
		}
	}()
	pub := redis.NewClient(&redis.Options{Addr: r.sessions[0].addr, PoolSize: 1})
	defer func() {
		// Closing the publisher's connection removes its publishers: a
		// real removal, not one to flag.
		for _, w := range append(ws, r.ws...) {
			w.guardRemovals(nil)
		}
		pub.Close()
	}()
	for _, svc := range svcs {
		register(t, pub, svc, "only-on-leader", "x")
	}
	for _, w := range ws {
		for _, svc := range svcs {
			w.waitSet(svc, "only-on-leader=x")
		}
	}
	kill(t, r.c.node(leader))
	syscall.Kill(fnode.pid, syscall.SIGCONT)
	stopped = false
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		return tab.Slots[s].Leader == follower, fmt.Sprintf("slot %d led by %s", s, tab.Slots[s].Leader)
	})
	// Something changes in every one of those services after the failover,
	// so each watcher gets the promoted leader's state.
	for _, svc := range svcs {
		register(t, r.lookups[1], svc, "after", "y", "TTL", 60)
	}
	for _, w := range ws {
		for _, svc := range svcs {
			w.waitSet(svc, "after=y", "only-on-leader=x")
		}
	}
	for _, svc := range svcs {
		if _, set := lookup(t, r.lookups[1], svc); fmt.Sprint(set) != "[after=y only-on-leader=x]" {
			t.Fatalf("LOOKUP %s after failover: %v", svc, set)
		}
	}
}
