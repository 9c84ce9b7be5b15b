package meta

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// TestSuspectEvictsOnlyARefusingNode: a data node reported as refusing
// connections is evicted at once, long before its lease, if it refuses
// meta's dial too; one that accepts the dial (alive, or paused: the
// kernel completes the handshake) stays, whoever reports it.
func TestSuspectEvictsOnlyARefusingNode(t *testing.T) {
	n := mustSingle(t, time.Minute)
	alive := testutil.MustListen(t) // never accepts: like a paused process
	// Kept open (and reachable: a listener the collector finalizes is
	// closed, and then refuses) until the test ends.
	t.Cleanup(func() { alive.Close() })
	gone := testutil.MustListen(t)
	goneAddr := gone.Addr().String()
	gone.Close() // nothing listens there: the process died
	d1 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d1", Addr: alive.Addr().String(), Metas: []string{n.RPCAddr()}})
	d2 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d2", Addr: goneAddr, Metas: []string{n.RPCAddr()}})
	d1.Start()
	d2.Start()
	waitFor(t, "two data nodes", func() (bool, string) {
		return len(n.Table().Nodes) == 2, fmt.Sprintf("nodes %v", n.Table().NodeIDs())
	})

	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	suspect := func(id string) (any, error) {
		return d1.Do(ctx, (&proto.Suspect{Kind: proto.KindData, NodeID: id, Reporter: "s1"}).Args()...)
	}
	if v, err := suspect("d1"); err != nil || v != int64(0) {
		t.Fatalf("SUSPECT of a node that accepts connections = %v, %v; want 0", v, err)
	}
	if m := n.Members(); !hasIDs(m.Data, "d1", "d2") {
		t.Fatalf("after suspecting a live node the data members are %v", memberIDs(m.Data))
	}
	if _, err := suspect("d 1"); err == nil {
		t.Fatal("SUSPECT of a bad node id was accepted")
	}
	if _, err := d1.Do(ctx, proto.CmdSuspect, proto.KindSession, "s1", "d1"); err == nil {
		t.Fatal("SUSPECT of a session was accepted")
	}

	// The report through the client, as a session or follower sends it
	// after a refused dial: d2 goes with most of its minute of lease left.
	d2.Close() // its heartbeats end with its process
	d1.Suspect("d2")
	waitFor(t, "d2 evicted", func() (bool, string) {
		m := n.Members()
		return hasIDs(m.Data, "d1"), fmt.Sprintf("data %v", memberIDs(m.Data))
	})
	if n.Table().HasNode("d2") || len(n.Table().LedBy("d1")) == 0 {
		t.Fatalf("table after the eviction: nodes %v", n.Table().NodeIDs())
	}
	if got := n.evictionsRefused.Load(); got != 1 {
		t.Fatalf("evictions for refusing: %d, want 1", got)
	}
	if v, err := suspect("d2"); err != nil || v != int64(1) {
		t.Fatalf("SUSPECT of a node already out = %v, %v; want 1", v, err)
	}
}
