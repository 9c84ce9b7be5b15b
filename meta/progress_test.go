package meta

import (
	"maps"
	"testing"
	"time"

	"github.com/slotreg/slotreg/slot"
)

func TestPreferFollowers(t *testing.T) {
	tb := slot.NewTable(4)
	set := func(s int, leader string, followers ...string) {
		tb.Slots[s] = slot.Assignment{Leader: leader, Followers: followers, LeaderEpoch: 1}
	}
	set(0, "d1", "d2", "d3", "d4") // d3 and d4 tie ahead of d2: the first of them
	set(1, "d1", "d2", "d3", "d4") // d2 ties for first and is first: the default
	set(2, "d1", "d2", "d3")       // d2 never reported: d3 ranks above it
	set(3, "d1", "d5", "d3")       // d5 leaves too: d3 is the first present
	set(4, "d1", "d2", "d3")       // nobody reported: the default
	set(5, "d2", "d3", "d4")       // not led by the departed node
	set(6, "d1")                   // no follower at all
	set(7, "d1", "d4", "d2")       // d2 is ahead: not the first
	progress := map[string]map[int]uint64{
		"d2": {0: 5, 1: 9, 3: 100, 7: 8},
		"d3": {0: 9, 1: 9, 2: 0, 3: 1, 5: 1},
		"d4": {0: 9, 1: 2, 5: 7, 7: 7},
		"d5": {3: 1000},
	}
	calls := 0
	got := preferFollowers(tb, map[string]string{"d2": "h:2", "d3": "h:3", "d4": "h:4"}, "d1",
		func(id string) map[int]uint64 { calls++; return progress[id] })
	want := map[int]string{0: "d3", 2: "d3", 7: "d2"}
	if !maps.Equal(got, want) {
		t.Fatalf("prefer %v, want %v", got, want)
	}
	if calls > 3 {
		t.Fatalf("asked for progress %d times, want once per present follower", calls)
	}
	if got := preferFollowers(tb, map[string]string{"d2": "h:2"}, "d1", func(string) map[int]uint64 { return nil }); got != nil {
		t.Fatalf("without reports: %v, want nil", got)
	}
}

// TestTrackMoves: a move's clock starts when the leader first sees it and
// restarts when the move is replaced by another one of the same slot.
func TestTrackMoves(t *testing.T) {
	tb := slot.NewTable(2)
	tb.Slots[1] = slot.Assignment{Leader: "d1", Followers: []string{"d2"}, LeaderEpoch: 3, Target: "d2"}
	tb.Slots[2] = slot.Assignment{Leader: "d1", Followers: []string{"d2"}, LeaderEpoch: 1, Target: "d2"}
	t0 := time.Unix(1000, 0)
	starts := map[int]moveStart{9: {target: "d3", since: t0}} // a move that ended meanwhile
	trackMoves(starts, tb, tb.Moving(), t0)
	if len(starts) != 2 || starts[1].since != t0 || starts[2].since != t0 {
		t.Fatalf("after the first pass: %+v", starts)
	}
	t1 := t0.Add(time.Second)
	tb.Slots[2].LeaderEpoch = 2 // handed off, then moved again
	trackMoves(starts, tb, tb.Moving(), t1)
	if starts[1].since != t0 || starts[2].since != t1 {
		t.Fatalf("after the second pass: %+v", starts)
	}
	tb.Slots[1].Target = ""
	trackMoves(starts, tb, tb.Moving(), t1)
	if _, ok := starts[1]; ok || len(starts) != 1 {
		t.Fatalf("a finished move is still tracked: %+v", starts)
	}
}
