package client

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/sessionserver"
)

// dc2 is a second datacenter for the scope tests: its own meta, which
// names the shared cluster as datacenter dc1, and one data node, whose
// slot leaders pull dc1's publishers.
type dc2 struct {
	meta *meta.Node
}

func mustDC2(t *testing.T) *dc2 {
	t.Helper()
	m, err := meta.New(meta.Config{
		NodeID: "dc2-meta1", RaftListener: testutil.MustListen(t), RPCListener: testutil.MustListen(t), DataDir: t.TempDir(),
		Lease: 2 * time.Second, Datacenter: "dc2", RemoteDatacenters: "dc1=" + shared.Meta.RPCAddr(), Logger: testutil.Quiet,
		RaftHeartbeatTimeout: 200 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	d, err := dataserver.New(dataserver.Config{
		NodeID: "dc2-data1", Listener: testutil.MustListen(t), Metas: []string{m.RPCAddr()}, Datacenter: "dc2",
		Heartbeat: 100 * time.Millisecond, Logger: testutil.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &dc2{meta: m}
}

// session starts a session in zone of dc2, or of dc1 (the shared
// cluster), and waits until it routes every slot; it is stopped when
// the test ends.
func (d *dc2) session(t *testing.T, dc, zone string) *sessionserver.Node {
	t.Helper()
	metas := shared.Metas()
	if dc == "dc2" {
		metas = []string{d.meta.RPCAddr()}
	}
	s, err := sessionserver.New(sessionserver.Config{
		NodeID: fmt.Sprintf("t-session%d", sessionSeq.Add(1)), Listener: testutil.MustListen(t), Metas: metas,
		Heartbeat: 100 * time.Millisecond, Logger: testutil.Quiet, Datacenter: dc, Zone: zone,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	testutil.Eventually(t, 20*time.Second, func() (bool, string) { return s.Ready(), "session has no full slot table" })
	return s
}

func mustScoped(t *testing.T, scope Scope, sessions ...string) *Client {
	t.Helper()
	c, err := New(Options{Sessions: sessions, Scope: scope, Logger: testutil.Quiet, HealthCheckInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// placed renders publishers with where they were registered, sorted.
func placed(pubs []Publisher) string {
	out := make([]string, 0, len(pubs))
	for _, p := range pubs {
		out = append(out, p.RegisterID+"@"+p.Datacenter+"/"+p.Zone)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// TestScope: publishers registered in dc1 and in two zones of dc2 are
// seen by a dc2 client as its Scope says: through Subscribe (each
// publisher naming its datacenter and zone), Lookup and Watch (each
// event naming them too), and after a failover to a session of another
// zone.
func TestScope(t *testing.T) {
	d := mustDC2(t)
	s1 := d.session(t, "dc1", "") // zone dc1, the datacenter's name
	sA := d.session(t, "dc2", "za")
	sB := d.session(t, "dc2", "zb")
	sA2 := d.session(t, "dc2", "za") // the viewers' first session
	ctx := ctxT(t, 90*time.Second)
	for _, p := range []struct {
		s  *sessionserver.Node
		id string
	}{{s1, "p1"}, {sA, "p2"}, {sB, "p3"}} {
		c := mustNew(t, p.s.Addr())
		if _, err := c.Register(ctx, "svc-scope", p.id, p.id+"-value"); err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, "/scope/"+p.id, p.id+"-value", true); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		scope Scope
		want  string
	}{
		{ScopeZone, "p2@dc2/za"},
		{ScopeDatacenter, "p2@dc2/za,p3@dc2/zb"},
		{ScopeGlobal, "p1@dc1/dc1,p2@dc2/za,p3@dc2/zb"}, // once dc2's leader has pulled p1
	} {
		t.Run(tc.scope.String(), func(t *testing.T) {
			c := mustScoped(t, tc.scope, sA2.Addr(), sB.Addr())
			var rec recorder
			if _, err := c.Subscribe(ctx, "svc-scope", rec.fn); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 30*time.Second, func() (bool, string) {
				s, _ := rec.last()
				return placed(s.Publishers) == tc.want, fmt.Sprintf("subscription has %q, want %q", placed(s.Publishers), tc.want)
			})
			rec.checkMonotonic(t)
			if snap, err := c.Lookup(ctx, "svc-scope"); err != nil || ids(snap.Publishers) != idsIn(tc.want) {
				t.Fatalf("Lookup: %+v %v, want %s", snap.Publishers, err, idsIn(tc.want))
			}

			evs := make(chan Event, 16)
			w, err := c.Watch(ctx, "/scope/", func(e Event) { evs <- e })
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var told []string
			testutil.Eventually(t, 10*time.Second, func() (bool, string) {
				for len(evs) > 0 {
					e := <-evs
					name := strings.TrimPrefix(e.Path, "/scope/")
					if e.Type != EventAdd || e.Value != name+"-value" {
						t.Errorf("watch event %+v, want an ADD of %s-value", e, name)
					}
					told = append(told, name+"@"+e.Datacenter+"/"+e.Zone)
				}
				sort.Strings(told)
				return strings.Join(told, ",") == tc.want, fmt.Sprintf("watch told %q, want %q", told, tc.want)
			})
		})
	}

	// The clients' first session stops: their connections to the next
	// one are scoped as well, and a zone view is the new session's zone.
	first := d.session(t, "dc2", "za")
	clients := []struct {
		c             *Client
		before, after string
	}{
		{mustScoped(t, ScopeGlobal, first.Addr(), sB.Addr()), "p1,p2,p3", "p1,p2,p3"},
		{mustScoped(t, ScopeZone, first.Addr(), sB.Addr()), "p2", "p3"},
	}
	for _, x := range clients {
		if snap, err := x.c.Lookup(ctx, "svc-scope"); err != nil || ids(snap.Publishers) != x.before {
			t.Fatalf("Lookup on %s: %+v %v, want %s", first.Addr(), snap.Publishers, err, x.before)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	for _, x := range clients {
		testutil.Eventually(t, 10*time.Second, func() (bool, string) {
			st := x.c.Status()
			return st.Ready && st.Session == sB.Addr(), fmt.Sprintf("client status %+v", st)
		})
		if snap, err := x.c.Lookup(ctx, "svc-scope"); err != nil || ids(snap.Publishers) != x.after {
			t.Fatalf("Lookup after the failover to %s: %+v %v, want %s", sB.Addr(), snap.Publishers, err, x.after)
		}
	}
}

// ids is the sorted registerIds of publishers.
func ids(pubs []Publisher) string {
	out := make([]string, 0, len(pubs))
	for _, p := range pubs {
		out = append(out, p.RegisterID)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// idsIn is the registerIds of a rendering of placed.
func idsIn(placed string) string {
	var out []string
	for p := range strings.SplitSeq(placed, ",") {
		id, _, _ := strings.Cut(p, "@")
		out = append(out, id)
	}
	return strings.Join(out, ",")
}
