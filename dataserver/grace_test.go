package dataserver_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// TestSessionGrace: a session that meta drops from its list and lists
// again within the grace keeps its publishers, and its subscribers see no
// removal; one that stays out longer than the grace loses them.
func TestSessionGrace(t *testing.T) {
	const grace = 600 * time.Millisecond
	m := &fakeMeta{}
	m.setSessions(1, "s1")
	m.setTable(&slot.Table{Epoch: 1})
	metaAddr := m.serve(t)
	d1, err := dataserver.New(dataserver.Config{NodeID: "d1", Listener: testutil.MustListen(t), Metas: []string{metaAddr},
		Heartbeat: 20 * time.Millisecond, ReconcileTimeout: 100 * time.Millisecond, SessionGrace: grace, Logger: testutil.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d1.Close() })
	t1 := &slot.Table{Epoch: 2, Replicas: 1, Nodes: []slot.Node{{ID: "d1", Addr: d1.Addr()}}}
	for s := range t1.Slots {
		t1.Slots[s] = slot.Assignment{Leader: "d1", LeaderEpoch: 1}
	}
	m.setTable(t1)

	const id = "svc.grace"
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: d1.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	lookup := func() (int, error) {
		b, err := rdb.Do(ctx, (&proto.DLookup{Epoch: 2, DataInfoID: id}).Args()...).Text()
		if err != nil {
			return 0, err
		}
		d, err := proto.ParseDatum([]byte(b))
		if err != nil {
			return 0, err
		}
		return len(d.Entries), nil
	}
	w := proto.DWrite{Epoch: 2, SessionID: "s1", Ops: []proto.Op{{Type: proto.OpRegister, DataInfoID: id, RegisterID: "p1", Data: "x", ConnID: "c1"}}}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		vals, err := rdb.Do(ctx, w.Args()...).Slice()
		if err == nil {
			if e, ok := vals[0].(error); ok {
				err = e
			}
		}
		n, lerr := lookup()
		return err == nil && lerr == nil && n == 1, "p1 not registered: " + errString(err) + " " + errString(lerr)
	})
	ps := rdb.Subscribe(ctx, id)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := ps.Channel()

	// s1 leaves the list and is back before the grace runs out.
	m.setSessions(2)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return d1.Stats().DepartingSessions == 1, "d1 has not seen s1 leave"
	})
	m.setSessions(3, "s1")
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return d1.Stats().DepartingSessions == 0, "d1 has not seen s1 come back"
	})
	deadline := time.After(2 * grace)
wait:
	for {
		select {
		case msg := <-msgs:
			if d, err := proto.ParseDatum([]byte(msg.Payload)); err != nil || len(d.Entries) != 1 {
				t.Fatalf("push while s1 was within its grace: %q (%v)", msg.Payload, err)
			}
		case <-deadline:
			break wait
		}
	}
	if n, err := lookup(); err != nil || n != 1 {
		t.Fatalf("after s1 came back within the grace: %d publishers (%v), want 1", n, err)
	}

	// s1 leaves meta's list but keeps telling d1 it is alive (cut off
	// from meta alone): p1 stays past the grace, however long.
	var lastAlive time.Time
	alive := func() {
		lastAlive = time.Now()
		// The reply is the grace, which the session fences itself by.
		if v, err := rdb.Do(ctx, (&proto.DAlive{Session: "s1"}).Args()...).Int64(); err != nil || v != int64(grace/time.Millisecond) {
			t.Fatalf("DALIVE = %d, %v; want the grace, %d", v, err, int64(grace/time.Millisecond))
		}
	}
	alive()
	m.setSessions(4)
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		return d1.Stats().DepartingSessions == 1, "d1 has not seen s1 leave"
	})
	for end := time.Now().Add(3 * grace); time.Now().Before(end); {
		alive()
		if n, err := lookup(); err != nil || n != 1 {
			t.Fatalf("s1 still sends DALIVE: %d publishers (%v), want 1", n, err)
		}
		time.Sleep(grace / 6)
	}

	// s1 goes silent: p1 goes once the grace since its last word runs
	// out, not before.
	left := lastAlive
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		n, err := lookup()
		return err == nil && n == 0, "p1 still there"
	})
	if d := time.Since(left); d < grace {
		t.Fatalf("p1 dropped %v after s1 left, before the %v grace", d, grace)
	}

	// s1 comes back (it was paused): d1 refuses its writes and DALIVE
	// with DROPPED, so that it closes its clients' connections (they
	// thought they were still published), until it says so with RESET.
	write := func() error {
		vals, err := rdb.Do(ctx, w.Args()...).Slice()
		if err == nil {
			if e, ok := vals[0].(error); ok {
				err = e
			}
		}
		return err
	}
	if err := write(); err == nil || !strings.HasPrefix(err.Error(), "DROPPED") {
		t.Fatalf("write of a dropped session: %v, want DROPPED", err)
	}
	if err := rdb.Do(ctx, (&proto.DAlive{Session: "s1"}).Args()...).Err(); err == nil || !strings.HasPrefix(err.Error(), "DROPPED") {
		t.Fatalf("DALIVE of a dropped session: %v, want DROPPED", err)
	}
	if v, err := rdb.Do(ctx, (&proto.DAlive{Session: "s1", Reset: true}).Args()...).Int64(); err != nil || v != int64(grace/time.Millisecond) {
		t.Fatalf("DALIVE RESET = %d, %v; want the grace", v, err)
	}
	if err := write(); err != nil {
		t.Fatalf("write after RESET: %v", err)
	}
}
