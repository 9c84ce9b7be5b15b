package meta

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// fakeSeq is the op-log sequence a test data node claims for a slot it
// follows; small values, so ties happen too.
func fakeSeq(node string, s int) uint64 {
	return uint64((s*7 + int(node[len(node)-1])*5) % 4)
}

// expectedPromotion is whom a slot of departed should go to: the present
// follower with the highest fakeSeq, the first of them on a tie.
func expectedPromotion(tb *slot.Table, s int, departed string) string {
	best, bestSeq := "", uint64(0)
	for _, f := range tb.Slots[s].Followers {
		if f == departed {
			continue
		}
		if seq := fakeSeq(f, s); best == "" || seq > bestSeq {
			best, bestSeq = f, seq
		}
	}
	return best
}

// TestPromotionByProgress: when a data node's lease lapses, each slot it
// led goes to the follower that reported the most applied ops, not merely
// the first one.
func TestPromotionByProgress(t *testing.T) {
	const lease = 600 * time.Millisecond
	n := mustSingleWith(t, func(c *Config) { c.Lease = lease; c.Replicas = 3 })
	ids := []string{"d1", "d2", "d3", "d4"}
	clients := map[string]*metaclient.Client{}
	for _, id := range ids {
		var c *metaclient.Client
		c = newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: id, Metas: []string{n.RPCAddr()},
			Progress: func() map[int]uint64 {
				p := map[int]uint64{}
				for _, s := range c.Table().FollowedBy(id) {
					p[s] = fakeSeq(id, s)
				}
				return p
			}})
		clients[id] = c
		c.Start()
	}
	var tb *slot.Table
	waitFor(t, "every data node on one table with all four", func() (bool, string) {
		tb = n.Table()
		for _, c := range clients {
			if !c.Table().Equal(tb) {
				return false, fmt.Sprintf("meta at epoch %d with %v", tb.Epoch, tb.NodeIDs())
			}
		}
		return len(tb.Nodes) == 4, fmt.Sprintf("nodes %v", tb.NodeIDs())
	})
	waitFor(t, "the leader to hold every node's progress for that table", func() (bool, string) {
		for _, id := range ids {
			want := map[int]uint64{}
			for _, s := range tb.FollowedBy(id) {
				want[s] = fakeSeq(id, s)
			}
			if got := n.progress.copyOf(id); !maps.Equal(got, want) {
				return false, fmt.Sprintf("%s reported %d slots, want %d", id, len(got), len(want))
			}
		}
		return true, ""
	})

	victim, most := "", 0
	for id, c := range leaderCounts(tb) {
		if c > most || (c == most && id < victim) {
			victim, most = id, c
		}
	}
	want := map[int]string{}
	notFirst := 0
	for _, s := range tb.LedBy(victim) {
		if len(tb.Slots[s].Followers) != 2 {
			t.Fatalf("slot %d has followers %v, want 2", s, tb.Slots[s].Followers)
		}
		want[s] = expectedPromotion(tb, s, victim)
		if want[s] != tb.Slots[s].Followers[0] {
			notFirst++
		}
	}
	if notFirst == 0 || notFirst == len(want) {
		t.Fatalf("fakeSeq makes %d of %d promotions skip the first follower; the test needs some of each", notFirst, len(want))
	}

	clients[victim].Close()
	waitFor(t, victim+" evicted", func() (bool, string) {
		return !n.Table().HasNode(victim), fmt.Sprintf("nodes %v", n.Table().NodeIDs())
	})
	after := n.Table()
	for s, id := range want {
		if got := after.Leader(s); got != id || after.Slots[s].LeaderEpoch != tb.Slots[s].LeaderEpoch+1 {
			t.Errorf("slot %d: leader %s at leader epoch %d, want %s at %d (followers %v, seqs %d %d)",
				s, got, after.Slots[s].LeaderEpoch, id, tb.Slots[s].LeaderEpoch+1, tb.Slots[s].Followers,
				fakeSeq(tb.Slots[s].Followers[0], s), fakeSeq(tb.Slots[s].Followers[1], s))
		}
	}
	t.Logf("%s led %d slots; %d went to a follower other than the first", victim, len(want), notFirst)
}
