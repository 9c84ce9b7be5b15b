package dataserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// TestNewLeaderServesOnlyAfterReconciling promotes a follower and checks
// that it neither answers lookups nor pushes the slot until every live
// session has reconciled it (or the timeout passed), and that what it then
// serves includes a publisher only the session knew of.
func TestNewLeaderServesOnlyAfterReconciling(t *testing.T) {
	m, err := meta.New(meta.Config{
		NodeID: "m1", RaftListener: testutil.MustListen(t), RPCListener: testutil.MustListen(t), DataDir: t.TempDir(),
		Lease: 2 * time.Second, RaftHeartbeatTimeout: 200 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond,
		Logger: testutil.Quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	metas := []string{m.RPCAddr()}
	// Two sessions that heartbeat but answer nothing: the test speaks for s1.
	for _, id := range []string{"s1", "s2"} {
		c, err := metaclient.NewClient(metaclient.Config{Kind: proto.KindSession, NodeID: id, Addr: "127.0.0.1:1", Metas: metas, Interval: 100 * time.Millisecond, Logger: testutil.Quiet})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		defer c.Close()
	}
	start := func(id string) *dataserver.Node {
		d, err := dataserver.New(dataserver.Config{NodeID: id, Listener: testutil.MustListen(t), Metas: metas,
			Heartbeat: 100 * time.Millisecond, ReconcileTimeout: 1500 * time.Millisecond, Logger: testutil.Quiet})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d1 := start("d1")
	defer d1.Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		tab := d1.Table()
		return tab != nil && len(tab.LedBy("d1")) == slot.Count, "d1 does not lead every slot"
	})
	d2 := start("d2")
	defer d2.Close()

	const id = "svc-a"
	s := slot.Of(id)
	c1 := redis.NewClient(&redis.Options{Addr: d1.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c1.Close()
	ctx := context.Background()
	w := proto.DWrite{SessionID: "s1", Ops: []proto.Op{{Type: proto.OpRegister, DataInfoID: id, RegisterID: "p1", Data: "x", ConnID: "c1"}}}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		w.Epoch = d1.Table().Epoch
		res, err := c1.Do(ctx, w.Args()...).Slice()
		return err == nil && len(res) == 1 && res[0] != nil, "write to d1 failed"
	})
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		st := d2.Stats()
		return st.SlotsFollowed == slot.Count && st.Replicas == 1, "d2 has not replicated p1"
	})

	// d1 leaves: meta promotes d2 for every slot.
	d1.Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		tab := d2.Table()
		return tab != nil && tab.Leads("d2", s), "d2 not promoted"
	})
	epoch := d2.Table().Slots[s].LeaderEpoch

	c2 := redis.NewClient(&redis.Options{Addr: d2.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c2.Close()
	look := proto.DLookup{Epoch: d2.Table().Epoch, DataInfoID: id}
	if err := c2.Do(ctx, look.Args()...).Err(); !errors.Is(proto.FromRESP(errText(err)), proto.ErrUnavailable) {
		t.Fatalf("LOOKUP before reconciling: %v, want UNAVAILABLE", err)
	}
	ps := c2.Subscribe(ctx, id)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := ps.Channel()

	// s1 holds p1 and p2; the leader has only p1.
	var dg proto.Digest
	dg.Add(proto.PubHash(id, "p1", "x", "c1"))
	dg.Add(proto.PubHash(id, "p2", "y", "c1"))
	rec := proto.DReconcile{Session: "s1", Slots: []proto.SlotDigest{{Slot: s, LeaderEpoch: epoch, Digest: dg}}}
	if v, err := c2.Do(ctx, rec.Args()...).Slice(); err != nil || v[0] != int64(0) {
		t.Fatalf("DRECONCILE: %v %v, want a mismatch (0)", v, err)
	}
	sync := proto.DSync{Session: "s1", Slot: s, LeaderEpoch: epoch, Pubs: []proto.SyncPub{
		{DataInfoID: id, RegisterID: "p1", Data: "x", Conn: "c1"},
		{DataInfoID: id, RegisterID: "p2", Data: "y", Conn: "c1"},
	}}
	if n, err := c2.Do(ctx, sync.Args()...).Int(); err != nil || n != 1 {
		t.Fatalf("DSYNC: %d %v, want 1 change", n, err)
	}
	if v, err := c2.Do(ctx, rec.Args()...).Slice(); err != nil || v[0] != int64(1) {
		t.Fatalf("DRECONCILE after DSYNC: %v %v, want equal (1)", v, err)
	}
	// s2 has not reconciled: still nothing served.
	select {
	case m := <-msgs:
		t.Fatalf("pushed %q while s2 had not reconciled", m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
	if err := c2.Do(ctx, look.Args()...).Err(); err == nil {
		t.Fatal("LOOKUP answered while s2 had not reconciled")
	}
	// Past the reconcile timeout the slot is served, with p2.
	select {
	case m := <-msgs:
		d, err := proto.ParseDatum([]byte(m.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Entries) != 2 || d.Entries[1].RegisterID != "p2" || d.Version>>32 != epoch {
			t.Fatalf("first push from the new leader: %+v (leader epoch %d)", d, epoch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push after the reconcile timeout")
	}
	if err := c2.Do(ctx, look.Args()...).Err(); err != nil {
		t.Fatalf("LOOKUP after the timeout: %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
