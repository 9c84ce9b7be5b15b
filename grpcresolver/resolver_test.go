package grpcresolver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/slotreg/slotreg/internal/testutil"
)

// addrOf finds addr in s.
func addrOf(t *testing.T, s resolver.State, addr string) (resolver.Address, resolver.Endpoint) {
	t.Helper()
	for i, a := range s.Addresses {
		if a.Addr == addr {
			return a, s.Endpoints[i]
		}
	}
	t.Fatalf("no address %s in %v", addr, s.Addresses)
	return resolver.Address{}, resolver.Endpoint{}
}

// The resolver follows the publishers: plain and JSON data, attributes
// readable from both the address and the endpoint, bad data skipped and
// counted once, an address shared by two publishers given once, and an
// empty set given as an empty list.
func TestResolverFollowsPublishers(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	pub := mustClient(t, sess)
	b := mustBuilder(t, Options{Client: fastClient(t, sess)})
	_, cc := mustBuild(t, b, "slotreg:///svc")

	// Nothing registered yet: an empty list, not silence.
	waitAddrs(t, cc, "")

	ra := mustRegister(t, pub, "svc", "a", "127.0.0.1:1001")
	rb := mustRegister(t, pub, "svc", "b", `{"addr":"127.0.0.1:1002","attributes":{"zone":"z1","weight":"5"}}`)
	mustRegister(t, pub, "svc", "c", "nope")
	mustRegister(t, pub, "svc", "d", `{"addr":`)
	mustRegister(t, pub, "svc", "e", `{"attributes":{"zone":"z1"}}`)
	rf := mustRegister(t, pub, "svc", "f", "127.0.0.1:1001") // same address as a
	testutil.WaitFor(t, within, "every publisher seen", func() (bool, string) {
		s, _ := cc.last()
		return addrs(s) == "127.0.0.1:1001,127.0.0.1:1002" && b.BadPublishers() == 3,
			fmt.Sprintf("addresses %q, bad %d", addrs(s), b.BadPublishers())
	})
	s, _ := cc.last()
	if s.ServiceConfig == nil {
		t.Error("no service config in the state")
	}
	a, ep := addrOf(t, s, "127.0.0.1:1002")
	for where, attrs := range map[string]*attributes.Attributes{"address": a.Attributes, "endpoint": ep.Attributes} {
		p, ok := PublisherOf(attrs)
		if !ok || p.RegisterID != "b" || p.Attributes["zone"] != "z1" || p.Attributes["weight"] != "5" {
			t.Errorf("%s attributes: %+v, %v", where, p, ok)
		}
	}
	a, _ = addrOf(t, s, "127.0.0.1:1001")
	if p, _ := PublisherOf(a.Attributes); p.RegisterID != "a" || p.Attributes != nil {
		t.Errorf("127.0.0.1:1001 is %+v, want publisher a without attributes", p)
	}
	if errs := cc.errors(); len(errs) != 0 {
		t.Errorf("errors reported while addresses were usable: %v", errs)
	}

	// A changed datum is followed; the bad ones are not counted again.
	if err := rb.Update(t.Context(), "127.0.0.1:1003"); err != nil {
		t.Fatal(err)
	}
	waitAddrs(t, cc, "127.0.0.1:1001,127.0.0.1:1003")
	mustUnregister(t, ra)
	testutil.WaitFor(t, within, "127.0.0.1:1001 to be f's now a is gone", func() (bool, string) {
		s, _ := cc.last()
		for _, a := range s.Addresses {
			if p, _ := PublisherOf(a.Attributes); a.Addr == "127.0.0.1:1001" && p.RegisterID == "f" {
				return true, ""
			}
		}
		return false, fmt.Sprint(s.Addresses)
	})
	if n := b.BadPublishers(); n != 3 {
		t.Errorf("BadPublishers = %d after changes of good publishers, want 3", n)
	}

	// Only bad publishers left: an empty list, and an error that says why.
	mustUnregister(t, rb)
	mustUnregister(t, rf)
	waitAddrs(t, cc, "")
	testutil.WaitFor(t, within, "an error naming the bad data", func() (bool, string) {
		errs := cc.errors()
		return len(errs) > 0 && strings.Contains(errs[len(errs)-1].Error(), "no usable publisher"), fmt.Sprint(errs)
	})
}

// While the resolver's client has lost its session, the resolver keeps
// the addresses it gave; once the client is back, the change made
// meanwhile arrives. No state in between is empty.
func TestResolverKeepsStateAcrossReconnect(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	pub := mustClient(t, sess)
	px := mustProxy(t, sess)
	b := mustBuilder(t, Options{Client: fastClient(t, px.Addr())})
	_, cc := mustBuild(t, b, "slotreg:///svc")

	ra := mustRegister(t, pub, "svc", "a", "127.0.0.1:1001")
	mustRegister(t, pub, "svc", "b", "127.0.0.1:1002")
	waitAddrs(t, cc, "127.0.0.1:1001,127.0.0.1:1002")
	_, before := cc.last()

	rc := b.clients[""].c
	px.setDown(true)
	testutil.WaitFor(t, within, "the resolver's client to lose its session", func() (bool, string) {
		st := rc.Status()
		return !st.Ready, fmt.Sprintf("%+v", st)
	})
	mustUnregister(t, ra)
	if s, n := cc.last(); n != before {
		t.Fatalf("state changed while the session was lost: %d states, newest %q", n, addrs(s))
	}

	px.setDown(false)
	waitAddrs(t, cc, "127.0.0.1:1002")
	if st := rc.Status(); st.Failovers < 1 {
		t.Errorf("client status %+v: want a failover", st)
	}
	for i, s := range cc.allStates() {
		if i > 0 && len(s.Addresses) == 0 {
			t.Errorf("state %d is empty: the list must not go empty across a reconnect", i)
		}
	}
	if errs := cc.errors(); len(errs) != 0 {
		t.Errorf("errors reported across a reconnect: %v", errs)
	}
}

// A target may name its sessions; targets naming the same ones share a
// client, closed with the last of them. A resolver that gets no state
// says so to gRPC, and recovers when the session comes.
func TestResolverAuthorityAndNoState(t *testing.T) {
	cl := mustCluster(t, 2)
	s1, s2 := cl.Sessions[0].Addr(), cl.Sessions[1].Addr()
	pub := mustClient(t, s1)
	mustRegister(t, pub, "svc", "a", "127.0.0.1:1001")
	mustRegister(t, pub, "other", "a", "127.0.0.1:2001")

	px := mustProxy(t, s1)
	px.setDown(true)
	b := mustBuilder(t, Options{Client: fastClient(t, px.Addr()), SubscribeTimeout: 100 * time.Millisecond})

	// The default session is unreachable: the targets naming s2 resolve.
	r1, cc1 := mustBuild(t, b, "slotreg://"+s2+"/svc")
	r2, cc2 := mustBuild(t, b, "slotreg://"+s2+"/other")
	waitAddrs(t, cc1, "127.0.0.1:1001")
	waitAddrs(t, cc2, "127.0.0.1:2001")
	b.mu.Lock()
	refs := b.clients[s2].refs
	b.mu.Unlock()
	if refs != 2 {
		t.Errorf("client for %s has %d resolvers, want 2 (one client shared)", s2, refs)
	}
	r1.Close()
	r2.Close()
	b.mu.Lock()
	_, kept := b.clients[s2]
	b.mu.Unlock()
	if kept {
		t.Errorf("client for %s kept after its last resolver closed", s2)
	}
	if n := subscribers(t, s2); n != 0 {
		t.Errorf("session %s still has %d subscribers", s2, n)
	}

	// The default target reports that no state came, then resolves once
	// the session is reachable.
	_, cc := mustBuild(t, b, "slotreg:///svc")
	testutil.WaitFor(t, within, "a no-state error", func() (bool, string) {
		errs := cc.errors()
		return len(errs) > 0 && strings.Contains(errs[0].Error(), "no publisher state"), fmt.Sprint(errs)
	})
	px.setDown(false)
	waitAddrs(t, cc, "127.0.0.1:1001")

	for _, bad := range []string{"slotreg://nope/svc", "slotreg:///"} {
		u := mustParse(t, bad)
		if r, err := b.Build(resolver.Target{URL: *u}, &fakeCC{}, resolver.BuildOptions{}); err == nil {
			r.Close()
			t.Errorf("Build(%s) succeeded", bad)
		}
	}
}

// Close unsubscribes at once, a closed builder refuses new targets, and
// nothing the builder started outlives it.
func TestCloseLeavesNothing(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	shared := mustClient(t, sess)
	b := mustBuilder(t, Options{Shared: shared, NoServiceConfig: true})
	ra, cca := mustBuild(t, b, "slotreg:///svc")
	rb, ccb := mustBuild(t, b, "slotreg:///other")
	if s := waitAddrs(t, cca, ""); s.ServiceConfig != nil {
		t.Error("a service config was given with NoServiceConfig set")
	}
	waitAddrs(t, ccb, "")
	testutil.WaitFor(t, within, "two subscribers", func() (bool, string) {
		n := subscribers(t, sess)
		return n == 2, fmt.Sprint(n)
	})
	if len(ours()) == 0 {
		t.Fatal("no goroutine of the client seen while it runs: the leak check below is blind")
	}
	ra.Close()
	testutil.WaitFor(t, within, "one subscriber left", func() (bool, string) {
		n := subscribers(t, sess)
		return n == 1, fmt.Sprint(n)
	})
	rb.Close()
	testutil.WaitFor(t, within, "no subscriber left", func() (bool, string) {
		n := subscribers(t, sess)
		return n == 0, fmt.Sprint(n)
	})
	b.Close()
	if _, err := b.Build(resolver.Target{URL: *mustParse(t, "slotreg:///svc")}, &fakeCC{}, resolver.BuildOptions{}); err == nil {
		t.Error("Build after Close succeeded")
	}
	// The shared client is the caller's: still usable.
	if _, err := shared.Lookup(t.Context(), "svc"); err != nil {
		t.Errorf("shared client after the builder closed: %v", err)
	}
	shared.Close()
	// The registry's own goroutines come and go as they please; the
	// client's and this package's must all be gone.
	testutil.WaitFor(t, within, "no goroutine of the client or the resolver", func() (bool, string) {
		g := ours()
		return len(g) == 0, strings.Join(g, "\n\n")
	})
}
