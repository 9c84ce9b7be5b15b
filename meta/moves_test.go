package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// mustDataPair starts a single meta (edit adjusts its config) with data
// nodes d1 and d2 joined, d1 first, so d1 leads every slot and d2 follows
// every slot. The clients are not started: tests heartbeat with Refresh or
// Start them.
func mustDataPair(t *testing.T, edit func(*Config), d1Edit ...func(*metaclient.Config)) (*Node, *metaclient.Client, *metaclient.Client, *tableLog) {
	t.Helper()
	n := mustSingleWith(t, edit)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	tl := &tableLog{}
	c1 := metaclient.Config{Kind: proto.KindData, NodeID: "d1", Metas: []string{n.RPCAddr()}, OnTable: tl.add}
	for _, e := range d1Edit {
		e(&c1)
	}
	d1 := newTestClient(t, c1)
	d2 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d2", Metas: []string{n.RPCAddr()}})
	for _, c := range []*metaclient.Client{d1, d2} {
		if err := c.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tb := n.Table()
	if len(tb.LedBy("d1")) != slot.Count || len(tb.FollowedBy("d2")) != slot.Count {
		t.Fatalf("d1 leads %d slots and d2 follows %d, want all", len(tb.LedBy("d1")), len(tb.FollowedBy("d2")))
	}
	return n, d1, d2, tl
}

func epochReply(t *testing.T, v any) uint64 {
	t.Helper()
	e, ok := v.(int64)
	if !ok || e <= 0 {
		t.Fatalf("reply %#v, want a positive table epoch", v)
	}
	return uint64(e)
}

// TestMoveSlotAndHandoff: MOVESLOT marks the target, HANDOFF from the
// leader switches it (leader epoch + 1, the old leader a follower) and the
// new table reaches the old leader soon; handoffs that do not match the
// table are refused.
func TestMoveSlotAndHandoff(t *testing.T) {
	// Only Refresh and Handoff's nudge heartbeat once d1 starts.
	n, d1, d2, tl := mustDataPair(t, func(*Config) {}, func(c *metaclient.Config) { c.Interval = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	d1.Start()

	const s = 42
	e0 := n.Table().Epoch
	le := n.Table().Slots[s].LeaderEpoch
	e1 := epochReply(t, mustDo(t, d1, (&proto.MoveSlot{Slot: s, To: "d2"}).Args()...))
	if a := n.Table().Slots[s]; e1 != e0+1 || a.Target != "d2" || a.Leader != "d1" {
		t.Fatalf("after MOVESLOT: epoch %d (was %d), slot %+v", e1, e0, a)
	}

	for _, c := range []struct {
		args []any
		want string
	}{
		{(&proto.MoveSlot{Slot: s, To: "d2"}).Args(), "moving"},
		{(&proto.MoveSlot{Slot: s + 1, To: "d9"}).Args(), "not a member"},
		{(&proto.MoveSlot{Slot: s + 1, To: "d1"}).Args(), "led by d1 already"},
		{[]any{proto.CmdMoveSlot, "256", "d2"}, "not in 0..255"},
		{(&proto.CancelMove{Slot: s + 1}).Args(), "not moving"},
	} {
		_, err := d1.Do(ctx, c.args...)
		if !errors.Is(err, proto.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q = %v, want an ERR saying %q", c.args, err, c.want)
		}
	}
	for _, h := range []struct {
		c      *metaclient.Client
		slot   int
		to     string
		epoch  uint64
		reason string
	}{
		{d2, s, "d1", le, "from the follower"},
		{d1, s, "d1", le, "to itself"},
		{d1, s, "d2", le + 1, "wrong leader epoch"},
		{d1, s + 1, "d2", le, "slot not moving"},
	} {
		err := h.c.Handoff(ctx, h.slot, h.to, h.epoch)
		if !errors.Is(err, proto.ErrInvalid) {
			t.Errorf("handoff %s: %v, want a refusal", h.reason, err)
		}
	}
	if a := n.Table().Slots[s]; n.Table().Epoch != e1 || a.Target != "d2" || a.Leader != "d1" {
		t.Fatalf("refused handoffs changed the table: epoch %d, slot %+v", n.Table().Epoch, a)
	}

	if err := d1.Handoff(ctx, s, "d2", le); err != nil {
		t.Fatalf("Handoff: %v", err)
	}
	after := n.Table()
	if a := after.Slots[s]; after.Epoch != e1+1 || a.Leader != "d2" || a.LeaderEpoch != le+1 || a.Target != "" || !slices.Contains(a.Followers, "d1") {
		t.Fatalf("after Handoff: epoch %d, slot %+v", after.Epoch, a)
	}
	waitFor(t, "d1 to get the new table without its periodic heartbeat", func() (bool, string) {
		last := tl.last()
		return last != nil && last.Equal(after), fmt.Sprintf("d1 epochs %v, meta %d", tl.epochs(), after.Epoch)
	})
	// A retry (say, the reply was lost) succeeds and changes nothing.
	if err := d1.Handoff(ctx, s, "d2", le); err != nil || n.Table().Epoch != after.Epoch {
		t.Fatalf("retried Handoff: %v, epoch %d -> %d", err, after.Epoch, n.Table().Epoch)
	}

	// CANCELMOVE puts a slot back to rest under its leader.
	mustDo(t, d1, (&proto.MoveSlot{Slot: s + 1, To: "d2"}).Args()...)
	e := epochReply(t, mustDo(t, d1, (&proto.CancelMove{Slot: s + 1}).Args()...))
	if a := n.Table().Slots[s+1]; e != n.Table().Epoch || a.Target != "" || a.Leader != "d1" || a.LeaderEpoch != le {
		t.Fatalf("after CANCELMOVE: epoch %d, slot %+v", e, a)
	}
}

// TestRebalance: a dry run returns the plan and changes nothing; a real
// one starts the moves.
func TestRebalance(t *testing.T) {
	n, d1, _, _ := mustDataPair(t, func(*Config) {})
	before := n.Table()
	rep, err := proto.ParseRebalanceReply(mustDo(t, d1, (&proto.Rebalance{DryRun: true}).Args()...))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Started || rep.Epoch != before.Epoch || len(rep.Moves) != slot.Count/2 {
		t.Fatalf("dry run: epoch %d (table %d), started %v, %d moves; want %d moves", rep.Epoch, before.Epoch, rep.Started, len(rep.Moves), slot.Count/2)
	}
	for _, m := range rep.Moves {
		if m.From != "d1" || m.To != "d2" {
			t.Fatalf("dry run planned %+v, want only d1 -> d2", m)
		}
	}
	if !n.Table().Equal(before) {
		t.Fatal("a dry run changed the table")
	}

	rep, err = proto.ParseRebalanceReply(mustDo(t, d1, (&proto.Rebalance{MaxMoves: 4}).Args()...))
	if err != nil {
		t.Fatal(err)
	}
	tb := n.Table()
	if !rep.Started || len(rep.Moves) != 4 || rep.Epoch != before.Epoch+1 || tb.Epoch != rep.Epoch {
		t.Fatalf("rebalance: %+v; table epoch %d", rep, tb.Epoch)
	}
	var slots []int
	for _, m := range rep.Moves {
		slots = append(slots, m.Slot)
		if tb.Slots[m.Slot].Target != "d2" {
			t.Fatalf("slot %d: %+v, want moving to d2", m.Slot, tb.Slots[m.Slot])
		}
	}
	if !slices.Equal(tb.Moving(), slots) {
		t.Fatalf("moving %v, reply %v", tb.Moving(), slots)
	}
	// Moves in flight count as done: the rest of the plan excludes them.
	rep, err = proto.ParseRebalanceReply(mustDo(t, d1, (&proto.Rebalance{DryRun: true}).Args()...))
	if err != nil || len(rep.Moves) != slot.Count/2-4 {
		t.Fatalf("dry run with moves in flight: %d moves, %v", len(rep.Moves), err)
	}
}

// TestAutoRebalance: with AutoRebalance, a joined node gets its share of
// leaders through moves, never more than MaxMoves at a time, as the data
// side (played by a test goroutine) hands each slot over.
func TestAutoRebalance(t *testing.T) {
	log, logs := testutil.Logger(t)
	n := mustSingleWith(t, func(c *Config) { c.AutoRebalance, c.Logger = true, log })
	d1 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d1", Metas: []string{n.RPCAddr()}})
	d1.Start()
	waitFor(t, "d1 to lead every slot", func() (bool, string) {
		return len(n.Table().LedBy("d1")) == slot.Count, ""
	})
	before := n.Table()
	d2 := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d2", Metas: []string{n.RPCAddr()}})
	d2.Start()
	clients := map[string]*metaclient.Client{"d1": d1, "d2": d2}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	maxMoving := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			tb := n.Table()
			moving := tb.Moving()
			mu.Lock()
			maxMoving = max(maxMoving, len(moving))
			mu.Unlock()
			for _, s := range moving {
				a := tb.Slots[s]
				if err := clients[a.Leader].Handoff(ctx, s, a.Target, a.LeaderEpoch); err != nil && ctx.Err() == nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, "leaders split 128/128 with nothing moving", func() (bool, string) {
		tb := n.Table()
		c := leaderCounts(tb)
		return c["d1"] == slot.Count/2 && c["d2"] == slot.Count/2 && len(tb.Moving()) == 0,
			fmt.Sprintf("leaders %v, moving %v", c, tb.Moving())
	})
	cancel()
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d handoffs failed, first: %v", len(errs), errs[0])
	}
	if maxMoving > DefaultMaxMoves {
		t.Fatalf("%d moves were in flight at once, over MaxMoves %d", maxMoving, DefaultMaxMoves)
	}
	after := n.Table()
	moved := 0
	for s := range slot.Count {
		if after.Leader(s) != before.Leader(s) {
			moved++
			if after.Slots[s].LeaderEpoch != before.Slots[s].LeaderEpoch+1 {
				t.Fatalf("slot %d moved from leader epoch %d to %d", s, before.Slots[s].LeaderEpoch, after.Slots[s].LeaderEpoch)
			}
		}
	}
	if moved != slot.Count/2 {
		t.Fatalf("%d slots changed leader, want exactly %d", moved, slot.Count/2)
	}
	// The balancing is logged as one summary line at info, however many
	// batches it took.
	waitFor(t, "the run's end logged", func() (bool, string) {
		return strings.Contains(logs.String(), "moves finished"), ""
	})
	var info []string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, "level=INFO") && strings.Contains(line, "move") {
			info = append(info, line)
		}
	}
	if len(info) != 1 || !strings.Contains(info[0], `msg="moves finished: none in progress"`) || !strings.Contains(info[0], ` by=auto-rebalance moves=128 `) {
		t.Fatalf("the moves' info lines:\n%s", strings.Join(info, "\n"))
	}
}

// TestMoveTimeout: a move nobody finishes is cancelled after MoveTimeout,
// and a handoff arriving after that is refused.
func TestMoveTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	log, logs := testutil.Logger(t)
	n, d1, _, _ := mustDataPair(t, func(c *Config) { c.MoveTimeout = timeout; c.Logger = log })
	const s = 7
	le := n.Table().Slots[s].LeaderEpoch
	started := time.Now()
	mustDo(t, d1, (&proto.MoveSlot{Slot: s, To: "d2"}).Args()...)
	if n.Table().Slots[s].Target != "d2" {
		t.Fatal("MOVESLOT did not start the move")
	}
	waitFor(t, "the move to be cancelled", func() (bool, string) {
		return n.Table().Slots[s].Target == "", fmt.Sprintf("slot %+v", n.Table().Slots[s])
	})
	if waited := time.Since(started); waited < timeout {
		t.Fatalf("cancelled after %v, before the %v timeout", waited, timeout)
	}
	if a := n.Table().Slots[s]; a.Leader != "d1" || a.LeaderEpoch != le {
		t.Fatalf("after the timeout slot %+v, want d1 still leading at leader epoch %d", a, le)
	}
	if !strings.Contains(logs.String(), "move timed out; cancelled") {
		t.Fatal("the cancel was not logged")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := d1.Handoff(ctx, s, "d2", le); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("handoff after the timeout: %v, want a refusal", err)
	}
}

// TestApplierEvenFollowers: after moves that make one node follow most
// slots, even-followers spreads the follower places (max-min <= 1) without
// touching a leader; while a slot moves it changes nothing.
func TestApplierEvenFollowers(t *testing.T) {
	s := withData(t, newStore(), 2, 3)
	// Move a third of the slots to d3 and a third to d2, as auto-rebalance
	// would: each old leader takes its successor's follower place.
	for sl := 0; sl < slot.Count; sl++ {
		to := []string{"", "d2", "d3"}[sl%3]
		if to == "" {
			continue
		}
		mustApply(t, s, &command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: sl, To: to}}})
		// A move in flight: evening waits.
		before := s.state().Table
		mustApply(t, s, &command{Type: cmdEvenFollowers})
		if s.state().Table != before {
			t.Fatalf("even-followers changed the table while slot %d moves", sl)
		}
		a := s.state().Table.Slots[sl]
		mustApply(t, s, &command{Type: cmdFinishMove, Slot: sl, From: a.Leader, To: to, LeaderEpoch: a.LeaderEpoch})
	}
	uneven := s.state().Table
	if spread(followCounts(uneven)) <= 1 {
		t.Fatalf("the moves left followers even (%v); the test needs them uneven", followCounts(uneven))
	}
	res := mustApply(t, s, &command{Type: cmdEvenFollowers})
	even := s.state().Table
	if res.Epoch != uneven.Epoch+1 || even.Epoch != res.Epoch {
		t.Fatalf("epoch %d -> %d (result %d), want one step", uneven.Epoch, even.Epoch, res.Epoch)
	}
	if d := spread(followCounts(even)); d > 1 {
		t.Fatalf("followers still uneven after even-followers: %v", followCounts(even))
	}
	for sl := range even.Slots {
		a := even.Slots[sl]
		if a.Leader != uneven.Slots[sl].Leader || a.LeaderEpoch != uneven.Slots[sl].LeaderEpoch {
			t.Fatalf("slot %d: leader %s@%d became %s@%d", sl, uneven.Slots[sl].Leader, uneven.Slots[sl].LeaderEpoch, a.Leader, a.LeaderEpoch)
		}
		if len(a.Followers) != 1 || a.Followers[0] == a.Leader {
			t.Fatalf("slot %d: leader %s followers %v", sl, a.Leader, a.Followers)
		}
	}
	// Once even, it is a no-op.
	mustApply(t, s, &command{Type: cmdEvenFollowers})
	if s.state().Table != even {
		t.Fatal("even-followers changed an even table")
	}
}

func spread(counts map[string]int) int {
	lo, hi := -1, 0
	for _, c := range counts {
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return hi - lo
}
