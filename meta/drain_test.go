package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// threeData returns a store with init and data nodes d1, d2, d3 joined in
// that order (d1 leads every slot), a session s1, and the moves of slot
// 10 to d3 and slot 11 to d2 in progress.
func threeData(t *testing.T) *store {
	t.Helper()
	s := withData(t, newStore(), 2, 3,
		&command{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "h:9"},
		&command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 10, To: "d3"}, {Slot: 11, To: "d2"}}})
	if tb := s.state().Table; len(tb.LedBy("d1")) != slot.Count || !slices.Equal(tb.Moving(), []int{10, 11}) {
		t.Fatalf("d1 leads %d slots, moving %v", len(tb.LedBy("d1")), tb.Moving())
	}
	return s
}

func TestApplierDrain(t *testing.T) {
	if res := applyRaw(newStore(), &command{Type: cmdDrain, ID: "d1"}); !errors.Is(res.Err, errNotInitialized) {
		t.Fatalf("drain before init: %v", res.Err)
	}
	s := threeData(t)
	before := s.state()
	for _, c := range []*command{
		{Type: cmdDrain, ID: "d9"},
		{Type: cmdDrain, ID: "s1"},
		{Type: cmdUndrain, ID: "d9"},
	} {
		if res := applyRaw(s, c); !errors.Is(res.Err, errUnknownMember) || s.state() != before {
			t.Fatalf("%s %s: %v, want errUnknownMember and no change", c.Type, c.ID, res.Err)
		}
	}
	if res := applyRaw(s, &command{Type: cmdDrain}); !errors.Is(res.Err, errBadCommand) {
		t.Fatalf("drain without an id: %v", res.Err)
	}

	// Draining d3 cancels the move to it, in one new table epoch; the
	// move to d2 goes on.
	res := mustApply(t, s, &command{Type: cmdDrain, ID: "d3"})
	st := s.state()
	if !res.Changed || res.Epoch != before.Table.Epoch+1 || !st.Draining["d3"] || len(st.Draining) != 1 {
		t.Fatalf("drain d3: %+v, draining %v", res, st.Draining)
	}
	if !slices.Equal(st.Table.Moving(), []int{11}) || st.Table.Slots[10].Leader != "d1" {
		t.Fatalf("after draining d3: moving %v, slot 10 %+v; want only slot 11 moving", st.Table.Moving(), st.Table.Slots[10])
	}
	if before.Draining["d3"] || before.Table.Slots[10].Target != "d3" {
		t.Fatal("drain modified a published state")
	}
	if m := st.membersCopy(); !m.Data[2].Draining || m.Data[0].Draining || m.Data[1].Draining {
		t.Fatalf("members %+v, want only d3 draining", m.Data)
	}
	// Again: nothing changes, the table epoch included.
	if res := mustApply(t, s, &command{Type: cmdDrain, ID: "d3"}); res.Changed || s.state() != st {
		t.Fatalf("draining d3 again: %+v", res)
	}
	// No move may target a draining node.
	res = mustApply(t, s, &command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 12, To: "d3"}}})
	if err := res.MoveErrs[0]; !errors.Is(err, errMoveRefused) || !strings.Contains(err.Error(), "draining") || s.state() != st {
		t.Fatalf("move to a draining node: %v", err)
	}

	mustApply(t, s, &command{Type: cmdDrain, ID: "d2"})
	if res := applyRaw(s, &command{Type: cmdDrain, ID: "d1"}); !errors.Is(res.Err, errLastActive) {
		t.Fatalf("draining the last active node: %v, want errLastActive", res.Err)
	}
	res = mustApply(t, s, &command{Type: cmdUndrain, ID: "d2"})
	if st := s.state(); !res.Changed || st.Draining["d2"] || !st.Draining["d3"] || res.Epoch != st.Table.Epoch {
		t.Fatalf("undrain d2: %+v, draining %v", res, st.Draining)
	}
	st = s.state()
	if res := mustApply(t, s, &command{Type: cmdUndrain, ID: "d2"}); res.Changed || s.state() != st {
		t.Fatalf("undraining a node that is not draining: %+v", res)
	}
	// Now d1 may drain: d2 is left.
	mustApply(t, s, &command{Type: cmdDrain, ID: "d1"})

	// Leaving clears the flag; a node joining under the same ID later
	// starts undrained.
	mustApply(t, s, &command{Type: cmdRemove, Kind: proto.KindData, ID: "d3", Reason: reasonLeave})
	if st := s.state(); st.Draining["d3"] || !st.Draining["d1"] {
		t.Fatalf("after d3 left: draining %v, want only d1", st.Draining)
	}
	mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: "d3", Addr: "h:3"})
	if s.state().Draining["d3"] {
		t.Fatal("a rejoined node is draining")
	}
	// A session leaving keeps the data nodes' flags.
	mustApply(t, s, &command{Type: cmdRemove, Kind: proto.KindSession, ID: "s1", Reason: reasonLease})
	if !s.state().Draining["d1"] {
		t.Fatal("a session leaving undrained d1")
	}
}

// TestDrainMoves: the leader's choice of targets for a draining node's
// slots, and the rebalance plan next to a drain.
func TestDrainMoves(t *testing.T) {
	s := newStore()
	mustApply(t, s, &command{Type: cmdInit, Replicas: 2})
	for _, id := range []string{"d1", "d2", "d3"} {
		mustApply(t, s, &command{Type: cmdJoin, Kind: proto.KindData, ID: id, Addr: "h:" + id})
	}
	// Spread the leaders as moves would: every third slot to d2 and d3.
	var specs []moveSpec
	for sl := range slot.Count {
		if to := []string{"", "d2", "d3"}[sl%3]; to != "" {
			specs = append(specs, moveSpec{Slot: sl, To: to})
		}
	}
	mustApply(t, s, &command{Type: cmdStartMoves, Moves: specs})
	for _, m := range specs {
		a := s.state().Table.Slots[m.Slot]
		mustApply(t, s, &command{Type: cmdFinishMove, Slot: m.Slot, From: a.Leader, To: m.To, LeaderEpoch: a.LeaderEpoch})
	}
	if st := s.state(); drainMoves(st, 10) != nil || len(rebalancePlan(st, 0)) != 0 {
		t.Fatalf("nothing draining and %v balanced: drain plan %v, rebalance plan %v",
			leaderCounts(st.Table), drainMoves(st, 10), rebalancePlan(st, 0))
	}
	mustApply(t, s, &command{Type: cmdDrain, ID: "d3"})
	st := s.state()
	led := st.Table.LedBy("d3")
	all := drainMoves(st, 0)
	if len(all) != 0 {
		t.Fatalf("limit 0 planned %d moves", len(all))
	}
	all = drainMoves(st, slot.Count)
	if len(all) != len(led) {
		t.Fatalf("%d drain moves for the %d slots d3 leads", len(all), len(led))
	}
	counts := leaderCounts(st.Table)
	for i, m := range all {
		a := st.Table.Slots[m.Slot]
		if m.Slot != led[i] || m.From != "d3" || m.To == "d3" {
			t.Fatalf("move %d: %+v, want slot %d from d3", i, m, led[i])
		}
		var want string
		for _, f := range a.Followers {
			if f != "d3" && (want == "" || counts[f] < counts[want] || (counts[f] == counts[want] && f < want)) {
				want = f
			}
		}
		if want == "" {
			want = "d1"
			if counts["d2"] < counts["d1"] {
				want = "d2"
			}
		}
		if m.To != want {
			t.Fatalf("slot %d (followers %v, leaders %v) planned to %s, want %s", m.Slot, a.Followers, counts, m.To, want)
		}
		counts[m.To]++
	}
	if got := drainMoves(st, 3); !slices.Equal(got, all[:3]) {
		t.Fatalf("limit 3: %v, want the first three %v", got, all[:3])
	}
	// A slot already moving is not planned again, and counts for its
	// target.
	mustApply(t, s, &command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: led[0], To: "d1"}}})
	if got := drainMoves(s.state(), slot.Count); len(got) != len(led)-1 || got[0].Slot != led[1] {
		t.Fatalf("with slot %d moving: %v", led[0], got)
	}
	// The rebalance plan never names a draining node.
	for _, m := range rebalancePlan(s.state(), 0) {
		if m.To == "d3" || m.From == "d3" {
			t.Fatalf("rebalance planned %+v with d3 draining", m)
		}
	}

	// With two of three nodes draining, every slot goes to the third.
	mustApply(t, s, &command{Type: cmdDrain, ID: "d2"})
	for _, m := range drainMoves(s.state(), slot.Count) {
		if m.To != "d1" {
			t.Fatalf("%+v, want every move to d1", m)
		}
	}
}

func TestSnapshotRestoreDraining(t *testing.T) {
	src := threeData(t)
	mustApply(t, src, &command{Type: cmdDrain, ID: "d3"})
	mustApply(t, src, &command{Type: cmdDrain, ID: "d2"})
	var buf bytes.Buffer
	if err := src.state().writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	if v := buf.Bytes()[len(snapshotMagic)+3]; uint32(v) != snapshotVersion || snapshotVersion != 4 {
		t.Fatalf("snapshot version %d, want 4", v)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"draining":["d2","d3"]`)) {
		t.Fatalf("snapshot does not list the draining nodes sorted: %s", buf.Bytes())
	}
	dst := newStore()
	if err := (&fsm{s: dst}).Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	got, want := dst.state(), src.state()
	if !slices.Equal(got.drainingList(), want.drainingList()) || !got.Table.Equal(want.Table) {
		t.Fatalf("restored draining %v (want %v), table epoch %d (want %d)",
			got.drainingList(), want.drainingList(), got.Table.Epoch, want.Table.Epoch)
	}
	// The restored store refuses and applies like the original.
	if res := applyRaw(dst, &command{Type: cmdDrain, ID: "d1"}); !errors.Is(res.Err, errLastActive) {
		t.Fatalf("restored store drained the last active node: %v", res.Err)
	}

	// A draining node that is not a data node means a corrupt snapshot.
	bad := bytes.Replace(buf.Bytes(), []byte(`"draining":["d2","d3"]`), []byte(`"draining":["d2","d7"]`), 1)
	if err := newStore().restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("restored a snapshot draining an unknown node")
	}
}

// TestRestoreVersion2: snapshots written before draining existed are
// still read, with no node draining.
func TestRestoreVersion2(t *testing.T) {
	st := populated(t).state()
	body, err := json.Marshal(map[string]any{
		"replicas": st.Replicas, "data": st.Data, "sessions": st.Sessions, "metas": st.Metas,
		"table": json.RawMessage(mustMarshal(t, st.Table)), "membersEpoch": st.MembersEpoch,
	})
	if err != nil {
		t.Fatal(err)
	}
	b := append(snapshotMagic[:], 0, 0, 0, 2)
	s := newStore()
	if err := s.restore(io.NopCloser(bytes.NewReader(append(b, body...)))); err != nil {
		t.Fatalf("restore version 2: %v", err)
	}
	got := s.state()
	if got.MembersEpoch != st.MembersEpoch || !got.Table.Equal(st.Table) || len(got.Draining) != 0 || got.Draining == nil {
		t.Fatalf("restored version 2: MembersEpoch %d (want %d), draining %v", got.MembersEpoch, st.MembersEpoch, got.Draining)
	}
	mustApply(t, s, &command{Type: cmdDrain, ID: "d3"})
}

// handoffSim plays the data side of moves: it hands every moving slot
// over to its target at once, as the leader's client. Stop it before
// reading maxMoving or errs.
type handoffSim struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex
	maxMoving int
	errs      []error
}

func startHandoffSim(n *Node, clients map[string]*metaclient.Client) *handoffSim {
	ctx, cancel := context.WithCancel(context.Background())
	h := &handoffSim{cancel: cancel}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			tb := n.Table()
			moving := tb.Moving()
			h.mu.Lock()
			h.maxMoving = max(h.maxMoving, len(moving))
			h.mu.Unlock()
			for _, s := range moving {
				a := tb.Slots[s]
				err := clients[a.Leader].Handoff(ctx, s, a.Target, a.LeaderEpoch)
				// A drain may cancel a move under our feet: a refusal
				// then is expected.
				if err != nil && ctx.Err() == nil && !errors.Is(err, proto.ErrInvalid) {
					h.mu.Lock()
					h.errs = append(h.errs, err)
					h.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *handoffSim) stop() {
	h.cancel()
	h.wg.Wait()
}

func nodesReply(t *testing.T, n *Node) proto.Members {
	t.Helper()
	s, err := rawClient(t, n.RPCAddr()).Do(context.Background(), proto.CmdNodes).Text()
	if err != nil {
		t.Fatalf("NODES: %v", err)
	}
	var m proto.Members
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("NODES %s: %v", s, err)
	}
	return m
}

// TestDrain: DRAIN moves every leader off the node through moves (never
// more than MaxMoves at once), auto-rebalance leaves it alone, UNDRAIN
// lets auto-rebalance give it its share again; the refusals.
func TestDrain(t *testing.T) {
	n := mustSingleWith(t, func(c *Config) { c.AutoRebalance = true })
	clients := map[string]*metaclient.Client{}
	for _, id := range []string{"d1", "d2", "d3"} {
		c := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: id, Metas: []string{n.RPCAddr()}})
		c.Start()
		clients[id] = c
	}
	sim := startHandoffSim(n, clients)
	defer sim.stop()
	balanced := func(ids ...string) func() (bool, string) {
		return func() (bool, string) {
			tb := n.Table()
			c := leaderCounts(tb)
			ok := len(tb.Moving()) == 0 && len(tb.Nodes) == 3
			total := 0
			for _, id := range ids {
				ok = ok && c[id] >= slot.Count/len(ids) && c[id] <= slot.Count/len(ids)+1
				total += c[id]
			}
			return ok && total == slot.Count, fmt.Sprintf("leaders %v, moving %v", c, tb.Moving())
		}
	}
	waitFor(t, "leaders spread over d1, d2, d3", balanced("d1", "d2", "d3"))
	// Then meta evens out the follower places (a table change of its own).
	waitFor(t, "follower places even", func() (bool, string) {
		c := followCounts(n.Table())
		return spread(c) <= 1 && len(c) == 3, fmt.Sprintf("follows %v", c)
	})

	ctx := context.Background()
	rdb := rawClient(t, n.RPCAddr())
	e0 := n.Table().Epoch
	e, err := rdb.Do(ctx, (&proto.Drain{NodeID: "d3"}).Args()...).Int64()
	if err != nil || uint64(e) != e0 {
		t.Fatalf("DRAIN d3 = %d, %v; want the table epoch %d", e, err, e0)
	}
	m := nodesReply(t, n)
	if !m.Data[2].Draining || m.Data[0].Draining || m.Data[1].Draining {
		t.Fatalf("NODES data %+v, want d3 draining", m.Data)
	}
	waitFor(t, "d3 to lead nothing, the leaders even over d1 and d2", balanced("d1", "d2"))
	// Nothing moves back: wait a few move-loop passes.
	time.Sleep(5 * moveCheckInterval)
	if c := leaderCounts(n.Table()); c["d3"] != 0 || len(n.Table().Moving()) != 0 {
		t.Fatalf("after the drain: leaders %v, moving %v", c, n.Table().Moving())
	}
	if !n.Table().HasNode("d3") || len(n.Table().FollowedBy("d3")) == 0 {
		t.Fatal("the draining node lost its follower places")
	}
	for _, c := range []struct {
		args []any
		want string
	}{
		{(&proto.MoveSlot{Slot: 0, To: "d3"}).Args(), "draining"},
		{(&proto.Drain{NodeID: "d9"}).Args(), "not a member"},
		{(&proto.Undrain{NodeID: "d9"}).Args(), "not a member"},
	} {
		err := respErr(rdb.Do(ctx, c.args...).Err())
		if !errors.Is(err, proto.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q = %v, want an ERR saying %q", c.args, err, c.want)
		}
	}
	rep, err := proto.ParseRebalanceReply(mustDo(t, clients["d1"], (&proto.Rebalance{DryRun: true}).Args()...))
	if err != nil || len(rep.Moves) != 0 {
		t.Fatalf("a dry-run rebalance with d3 drained: %+v, %v; want no moves", rep, err)
	}
	// d2 may drain too (d1 would take everything), but then not d1.
	mustDo(t, clients["d1"], (&proto.Drain{NodeID: "d2"}).Args()...)
	err = respErr(rdb.Do(ctx, (&proto.Drain{NodeID: "d1"}).Args()...).Err())
	if !errors.Is(err, proto.ErrInvalid) || !strings.Contains(err.Error(), "last data node") {
		t.Fatalf("DRAIN of the last active node = %v", err)
	}
	for _, id := range []string{"d2", "d3"} {
		mustDo(t, clients["d1"], (&proto.Undrain{NodeID: id}).Args()...)
	}
	if m := nodesReply(t, n); m.Data[1].Draining || m.Data[2].Draining {
		t.Fatalf("NODES data %+v after UNDRAIN", m.Data)
	}
	waitFor(t, "auto-rebalance to spread the leaders again", balanced("d1", "d2", "d3"))
	sim.stop()
	if len(sim.errs) > 0 {
		t.Fatalf("%d handoffs failed, first: %v", len(sim.errs), sim.errs[0])
	}
	if sim.maxMoving > DefaultMaxMoves {
		t.Fatalf("%d moves in flight at once, over MaxMoves %d", sim.maxMoving, DefaultMaxMoves)
	}
}

// TestDrainWithoutAutoRebalance: a drain needs no AutoRebalance, and a
// node that leaves while draining is no longer listed as draining.
func TestDrainWithoutAutoRebalance(t *testing.T) {
	n, d1, d2, _ := mustDataPair(t, func(*Config) {})
	d1.Start()
	d2.Start()
	sim := startHandoffSim(n, map[string]*metaclient.Client{"d1": d1, "d2": d2})
	defer sim.stop()
	mustDo(t, d2, (&proto.Drain{NodeID: "d1"}).Args()...)
	waitFor(t, "d2 to lead every slot", func() (bool, string) {
		c := leaderCounts(n.Table())
		return c["d2"] == slot.Count && len(n.Table().Moving()) == 0, fmt.Sprintf("leaders %v", c)
	})
	sim.stop()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := d1.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if m := nodesReply(t, n); len(m.Data) != 1 || m.Data[0].ID != "d2" || len(n.store.state().Draining) != 0 {
		t.Fatalf("after d1 left: data %+v, draining %v", m.Data, n.store.state().Draining)
	}
}
