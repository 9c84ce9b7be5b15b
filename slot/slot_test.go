package slot

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

func TestOfPinned(t *testing.T) {
	// Computed once; a change here re-shards every stored datum.
	for id, want := range map[string]int{
		"":  153,
		"a": 91,
		"com.example.Service:1.0.0@DEFAULT_GROUP": 221,
	} {
		if got := Of(id); got != want {
			t.Errorf("Of(%q) = %d, want %d", id, got, want)
		}
	}
}

func TestOfRange(t *testing.T) {
	var hits [Count]int
	for i := range 20000 {
		s := Of(fmt.Sprintf("svc-%d", i))
		if s < 0 || s >= Count {
			t.Fatalf("Of out of range: %d", s)
		}
		hits[s]++
	}
	for s, h := range hits {
		if h == 0 {
			t.Fatalf("slot %d never hit by 20000 ids: hash badly spread", s)
		}
	}
}

func TestNewTable(t *testing.T) {
	tab := NewTable(2)
	if tab.Epoch != 0 || tab.Replicas != 2 || len(tab.Nodes) != 0 {
		t.Fatalf("unexpected new table %+v", tab)
	}
	for s := range Count {
		if tab.Leader(s) != "" || len(tab.Slots[s].Followers) != 0 || tab.Slots[s].LeaderEpoch != 0 {
			t.Fatalf("slot %d not empty", s)
		}
	}
	if err := tab.Validate(); err != nil {
		t.Fatalf("new table invalid: %v", err)
	}
}

func TestBalanceFromEmpty(t *testing.T) {
	wantLeaders := map[int][]int{1: {256}, 2: {128, 128}, 3: {86, 85, 85}}
	for n := 1; n <= 3; n++ {
		for replicas := 1; replicas <= 3; replicas++ {
			t.Run(fmt.Sprintf("n%d_r%d", n, replicas), func(t *testing.T) {
				nodes := mkNodes("a", "b", "c")[:n]
				tab := mustBalance(t, NewTable(replicas), nodes, replicas)
				checkInvariants(t, tab, nodes, replicas)
				if tab.Epoch != 1 {
					t.Fatalf("epoch = %d, want 1", tab.Epoch)
				}
				for i, nd := range nodes {
					if got := len(tab.LedBy(nd.ID)); got != wantLeaders[n][i] {
						t.Fatalf("%s leads %d, want %d", nd.ID, got, wantLeaders[n][i])
					}
				}
				f := followersWanted(n, replicas)
				for s := range Count {
					if tab.Slots[s].LeaderEpoch != 1 {
						t.Fatalf("slot %d LeaderEpoch %d, want 1", s, tab.Slots[s].LeaderEpoch)
					}
					if len(tab.Slots[s].Followers) != f {
						t.Fatalf("slot %d has %d followers, want %d", s, len(tab.Slots[s].Followers), f)
					}
				}
				// With as many replicas as nodes every node holds every slot.
				if replicas >= n {
					for s := range Count {
						if len(tab.Owners(s)) != n {
							t.Fatalf("slot %d owners %v, want all %d nodes", s, tab.Owners(s), n)
						}
					}
				}
			})
		}
	}
}

// TestBalanceJoinOneByOne checks that joins never move a leader: the
// first node leads every slot, later ones only take their share of
// follower places, and PlanMoves then evens the leaders in the fewest moves.
func TestBalanceJoinOneByOne(t *testing.T) {
	for replicas := 1; replicas <= 3; replicas++ {
		all := mkNodes("a", "b", "c", "d")
		tab := NewTable(replicas)
		for n := 1; n <= len(all); n++ {
			prev, prevCopy := tab, tab.Clone()
			tab = mustBalance(t, prev, all[:n], replicas)
			checkInvariants(t, tab, all[:n], replicas)
			checkStep(t, prev, prevCopy, tab)
			checkFollowersEven(t, tab)
			if n > 1 {
				sameF := followersWanted(n, replicas) == followersWanted(n-1, replicas)
				checkJoin(t, prev, tab, all[n-1].ID, sameF)
			}
			if got := len(tab.LedBy("a")); got != Count {
				t.Fatalf("r%d after %d joins a leads %d, want all", replicas, n, got)
			}
			if tab.Epoch != uint64(n) {
				t.Fatalf("epoch = %d after %d joins", tab.Epoch, n)
			}
		}
		even, moves := applyPlan(t, tab, 0)
		checkLeadersEven(t, even)
		if moves != Count-64 {
			t.Fatalf("r%d: %d moves to even 4 nodes, want %d", replicas, moves, Count-64)
		}
	}
}

// TestJoinSecondNodeFollowsAll: with replicas 2 the only valid placement
// when one node leads everything is the joiner following every slot.
func TestJoinSecondNodeFollowsAll(t *testing.T) {
	one := mustBalance(t, nil, mkNodes("a"), 2)
	two := mustBalance(t, one, mkNodes("a", "b"), 2)
	checkInvariants(t, two, mkNodes("a", "b"), 2)
	if len(two.LedBy("a")) != Count || len(two.FollowedBy("b")) != Count || len(Moves(one, two)) != 0 {
		t.Fatalf("a leads %d, b follows %d", len(two.LedBy("a")), len(two.FollowedBy("b")))
	}
	// A third node takes a third of the follower places, all from b.
	three := mustBalance(t, two, mkNodes("a", "b", "c"), 2)
	checkJoin(t, two, three, "c", true)
	if fc := len(three.FollowedBy("c")); fc != 128 || len(three.FollowedBy("b")) != 128 {
		t.Fatalf("c follows %d, b %d; want 128 each", fc, len(three.FollowedBy("b")))
	}
}

func TestBalanceRemoval(t *testing.T) {
	for replicas := 1; replicas <= 3; replicas++ {
		nodes := mkNodes("a", "b", "c")
		prev := mustBalance(t, nil, nodes, replicas)
		next := mustBalance(t, prev, nodes[:2], replicas)
		checkInvariants(t, next, nodes[:2], replicas)
		checkStep(t, prev, prev.Clone(), next)
		checkLeave(t, prev, next, "c", nil)
		if len(next.LedBy("c"))+len(next.FollowedBy("c")) != 0 || next.HasNode("c") {
			t.Fatalf("departed node still in table")
		}
		for _, s := range prev.LedBy("c") {
			if next.Slots[s].LeaderEpoch != prev.Slots[s].LeaderEpoch+1 {
				t.Fatalf("slot %d LeaderEpoch not raised", s)
			}
		}
		// Everyone leaves: no leaders, no followers, LeaderEpoch raised.
		empty := mustBalance(t, next, nil, replicas)
		checkInvariants(t, empty, nil, replicas)
		for s := range Count {
			if empty.Slots[s].LeaderEpoch != next.Slots[s].LeaderEpoch+1 {
				t.Fatalf("slot %d LeaderEpoch not raised on losing its leader", s)
			}
		}
		if empty.Epoch != next.Epoch+1 {
			t.Fatalf("epoch not raised")
		}
		// And coming back leads every slot again, LeaderEpoch raised again.
		back := mustBalance(t, empty, nodes[:1], replicas)
		checkInvariants(t, back, nodes[:1], replicas)
		if back.Slots[0].LeaderEpoch != empty.Slots[0].LeaderEpoch+1 {
			t.Fatalf("LeaderEpoch not raised on re-lead")
		}
	}
}

// TestBalancePromotion checks that every orphaned slot goes to its first
// present follower, even when that leaves leaders uneven (PlanMoves evens
// them later), and that prefer overrides the choice only when it names a
// present follower.
func TestBalancePromotion(t *testing.T) {
	tab := NewTable(3)
	tab.Epoch = 7
	tab.Nodes = mkNodes("a", "b", "c", "d")
	ids := []string{"a", "b", "c", "d"}
	for s := range Count {
		l := s % 4
		tab.Slots[s] = Assignment{Leader: ids[l], LeaderEpoch: 3, Followers: []string{ids[(l+1)%4], ids[(l+2)%4]}}
	}
	if err := tab.Validate(); err != nil {
		t.Fatal(err)
	}
	// d leaves: its slots list a then b; a takes all 64 of them.
	next := mustBalance(t, tab, tab.Nodes[:3], 3)
	checkInvariants(t, next, tab.Nodes[:3], 3)
	checkLeave(t, tab, next, "d", nil)
	if lc := leaderCounts(next); lc["a"] != 128 || lc["b"] != 64 || lc["c"] != 64 {
		t.Fatalf("leader counts %v, want a 128", lc)
	}
	for _, s := range tab.LedBy("d") {
		if next.Slots[s].LeaderEpoch != 4 || !slices.Equal(next.Slots[s].Followers, []string{"b", "c"}) {
			t.Fatalf("slot %d: %+v", s, next.Slots[s])
		}
	}

	// With prefer: slot 3 (followers a, b) to b; slot 7 names c, which is
	// not its follower, and slot 11 names d, which left: both ignored.
	prefer := map[int]string{3: "b", 7: "c", 11: "d", 0: "c"}
	next, err := BalanceWith(tab, tab.Nodes[:3], 3, prefer)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, next, tab.Nodes[:3], 3)
	checkLeave(t, tab, next, "d", prefer)
	if next.Leader(3) != "b" || next.Leader(7) != "a" || next.Leader(11) != "a" || next.Leader(0) != "a" {
		t.Fatalf("leaders %s %s %s %s, want b a a a", next.Leader(3), next.Leader(7), next.Leader(11), next.Leader(0))
	}
	if next.Slots[3].LeaderEpoch != 4 || next.Slots[0].LeaderEpoch != 3 {
		t.Fatalf("LeaderEpochs %d %d", next.Slots[3].LeaderEpoch, next.Slots[0].LeaderEpoch)
	}

	// Leader and first follower both gone: the next present follower.
	next = mustBalance(t, tab, mkNodes("b", "c"), 3)
	checkInvariants(t, next, mkNodes("b", "c"), 3)
	if next.Leader(3) != "b" || next.Leader(0) != "b" {
		t.Fatalf("slot 3 -> %s, slot 0 -> %s; want b, b", next.Leader(3), next.Leader(0))
	}
	// No follower left: the node leading fewest, ties by ID.
	two := NewTable(2)
	two.Nodes = mkNodes("a", "b", "c")
	for s := range Count {
		two.Slots[s] = Assignment{Leader: []string{"a", "b"}[s%2], LeaderEpoch: 1}
		if s < 4 {
			two.Slots[s].Leader = "c"
		}
	}
	two.Replicas = 1
	next = mustBalance(t, two, mkNodes("a", "b"), 1)
	if next.Leader(0) != "a" || next.Leader(1) != "b" || next.Leader(2) != "a" || next.Leader(3) != "b" {
		t.Fatalf("orphans went to %v", []string{next.Leader(0), next.Leader(1), next.Leader(2), next.Leader(3)})
	}
}

// TestBalancePromotionFirstFollower checks that promotion takes the FIRST
// present follower, not any: d's slots list their followers so that
// promoting the first ones is already balanced (a 22, b 21, c 21 on top of
// 64 each), so no orphan may go elsewhere.
func TestBalancePromotionFirstFollower(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	tab := NewTable(3)
	tab.Nodes = mkNodes(ids...)
	for s := range Count {
		l := s % 4
		a := Assignment{Leader: ids[l], LeaderEpoch: 2}
		if l == 3 {
			first := (s / 4) % 3
			a.Followers = []string{ids[first], ids[(first+1)%3]}
		} else {
			a.Followers = []string{ids[(l+1)%4], ids[(l+2)%4]}
		}
		tab.Slots[s] = a
	}
	if err := tab.Validate(); err != nil {
		t.Fatal(err)
	}
	next := mustBalance(t, tab, tab.Nodes[:3], 3)
	checkInvariants(t, next, tab.Nodes[:3], 3)
	checkLeave(t, tab, next, "d", nil)
	for _, s := range tab.LedBy("d") {
		if want := tab.Slots[s].Followers[0]; next.Leader(s) != want {
			t.Fatalf("slot %d: leader %s, want first follower %s", s, next.Leader(s), want)
		}
		if next.Slots[s].LeaderEpoch != 3 {
			t.Fatalf("slot %d LeaderEpoch %d, want 3", s, next.Slots[s].LeaderEpoch)
		}
	}
}

func TestBalanceReplicasChange(t *testing.T) {
	nodes := mkNodes("a", "b", "c", "d")
	tab := mustBalance(t, nil, nodes, 1)
	for _, replicas := range []int{1, 3, 2, 4, 9, 1} {
		next := mustBalance(t, tab, nodes, replicas)
		checkInvariants(t, next, nodes, replicas)
		checkStep(t, tab, tab.Clone(), next)
		if m := Moves(tab, next); len(m) != 0 {
			t.Fatalf("replicas %d->%d moved leaders %v", tab.Replicas, replicas, m)
		}
		// Lowering replicas only removes places; raising only adds.
		added, removed := placeDiff(tab, next)
		if replicas > tab.Replicas && len(removed) != 0 || replicas < tab.Replicas && len(added) != 0 {
			t.Fatalf("replicas %d->%d: %d added, %d removed", tab.Replicas, replicas, len(added), len(removed))
		}
		if replicas != tab.Replicas && next.Epoch != tab.Epoch+1 {
			t.Fatalf("replicas change did not raise epoch")
		}
		tab = next
	}
}

func TestBalanceNoChange(t *testing.T) {
	nodes := mkNodes("a", "b", "c")
	tab := mustBalance(t, nil, nodes, 2)
	again := mustBalance(t, tab, []Node{nodes[2], nodes[0], nodes[1]}, 2)
	if !again.Equal(tab) || again.Epoch != tab.Epoch {
		t.Fatalf("no-change balance changed the table (epoch %d -> %d)", tab.Epoch, again.Epoch)
	}
	// The result must not alias prev.
	again.Slots[0].Followers[0] = "zzz"
	again.Nodes[0].Addr = "zzz"
	if tab.Slots[0].Followers[0] == "zzz" || tab.Nodes[0].Addr == "zzz" {
		t.Fatalf("Balance result aliases prev")
	}
	empty := mustBalance(t, NewTable(1), nil, 1)
	if empty.Epoch != 0 || !empty.Equal(NewTable(1)) {
		t.Fatalf("empty to empty changed the table")
	}
}

func TestBalanceAddrChange(t *testing.T) {
	nodes := mkNodes("a", "b", "c")
	tab := mustBalance(t, nil, nodes, 3)
	moved := slices.Clone(nodes)
	moved[1].Addr = "10.9.9.9:7001"
	next := mustBalance(t, tab, moved, 3)
	if next.Epoch != tab.Epoch+1 {
		t.Fatalf("epoch %d -> %d on address change", tab.Epoch, next.Epoch)
	}
	if addr, _ := next.Addr("b"); addr != "10.9.9.9:7001" {
		t.Fatalf("addr not updated: %q", addr)
	}
	if !sameSlots(next, tab) {
		t.Fatalf("address change changed assignments")
	}
}

func TestBalanceEpochOnlyGrows(t *testing.T) {
	all := mkNodes("a", "b", "c", "d", "e")
	sets := [][]Node{all[:1], all[:3], all[:3], all[1:4], all, all[4:], nil, nil, all[:2]}
	tab := NewTable(2)
	for i, set := range sets {
		next := mustBalance(t, tab, set, 2)
		if next.Epoch < tab.Epoch || next.Epoch > tab.Epoch+1 {
			t.Fatalf("step %d: epoch %d -> %d", i, tab.Epoch, next.Epoch)
		}
		if (next.Epoch == tab.Epoch) != sameIgnoringEpoch(next, tab) {
			t.Fatalf("step %d: epoch %d -> %d does not match whether content changed", i, tab.Epoch, next.Epoch)
		}
		tab = next
	}
	if tab.Epoch != 7 {
		t.Fatalf("final epoch %d, want 7 (9 steps, 2 of them no-ops)", tab.Epoch)
	}
}

func TestBalanceErrors(t *testing.T) {
	cases := map[string]struct {
		nodes    []Node
		replicas int
	}{
		"zero replicas":  {mkNodes("a"), 0},
		"negative":       {mkNodes("a"), -1},
		"duplicate id":   {append(mkNodes("a", "b"), Node{ID: "a", Addr: "x:1"}), 2},
		"empty id":       {[]Node{{ID: "", Addr: "x:1"}}, 1},
		"duplicate only": {[]Node{{ID: "b"}, {ID: "b"}}, 1},
	}
	for name, c := range cases {
		if _, err := Balance(NewTable(1), c.nodes, c.replicas); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A nil prev is an empty table.
	tab, err := Balance(nil, mkNodes("a"), 1)
	if err != nil || tab.Epoch != 1 || len(tab.LedBy("a")) != Count {
		t.Fatalf("nil prev: %v %+v", err, tab)
	}
}

// TestPlanMovesPrefersFollowers: a leads everything, b follows everything,
// c nothing. Even leaders need 170 moves; b already has the data of every
// slot, so its 85 moves copy nothing and come first, and c's 85 do.
func TestPlanMovesPrefersFollowers(t *testing.T) {
	tab := NewTable(2)
	tab.Nodes = mkNodes("a", "b", "c")
	for s := range Count {
		tab.Slots[s] = Assignment{Leader: "a", Followers: []string{"b"}, LeaderEpoch: 1}
	}
	plan := PlanMoves(tab, 0)
	if len(plan) != Count-86 || len(plan) != minMoves(tab) {
		t.Fatalf("%d moves, want %d", len(plan), Count-86)
	}
	for i, m := range plan {
		want := "b"
		if i >= 85 {
			want = "c"
		}
		if m.From != "a" || m.To != want {
			t.Fatalf("move %d = %+v, want a -> %s", i, m, want)
		}
		if i > 0 && plan[i-1].To == m.To && plan[i-1].Slot >= m.Slot {
			t.Fatalf("moves not in slot order: %+v then %+v", plan[i-1], m)
		}
	}
	if got := PlanMoves(tab, 5); !slices.Equal(got, plan[:5]) {
		t.Fatalf("PlanMoves(5) = %v, want the first 5 of the full plan", got)
	}
	even, moves := applyPlan(t, tab, 0)
	checkLeadersEven(t, even)
	if moves != len(plan) || len(even.LedBy("a")) != 86 {
		t.Fatalf("%d moves, a leads %d", moves, len(even.LedBy("a")))
	}
	// Where b took over, a (the old leader) now follows instead.
	for _, s := range even.LedBy("b") {
		if !slices.Equal(even.Slots[s].Followers, []string{"a"}) {
			t.Fatalf("slot %d followers %v, want [a]", s, even.Slots[s].Followers)
		}
	}

	// Which followers hold which slots decides the pairing: b follows only
	// slots 0..127, c only 128..255, so every move is to a follower.
	for s := range Count {
		tab.Slots[s].Followers = []string{[]string{"b", "c"}[s/128]}
	}
	for _, m := range PlanMoves(tab, 0) {
		if !tab.Follows(m.To, m.Slot) {
			t.Fatalf("move %+v is not to a follower", m)
		}
	}
	if PlanMoves(nil, 0) != nil || PlanMoves(NewTable(1), 0) != nil {
		t.Fatalf("PlanMoves of an empty table is not empty")
	}
}

// TestPlanMovesNeedsExchange: b and c each need 51 slots, and only two
// moves can go to a follower: slot 0 (followed by b and c) and slot 1
// (followed by b and d). Pairing greedily, slot 0 would go to b and c
// would get no follower move; the best plan gives slot 0 to c and slot 1
// to b.
func TestPlanMovesNeedsExchange(t *testing.T) {
	tab := NewTable(3)
	tab.Nodes = mkNodes("a", "b", "c", "d", "e")
	for s := range Count {
		switch {
		case s < 86:
			tab.Slots[s] = Assignment{Leader: "a", Followers: []string{"d", "e"}}
		case s < 171:
			tab.Slots[s] = Assignment{Leader: "d", Followers: []string{"a", "e"}}
		default:
			tab.Slots[s] = Assignment{Leader: "e", Followers: []string{"a", "d"}}
		}
		tab.Slots[s].LeaderEpoch = 1
	}
	tab.Slots[0].Followers = []string{"b", "c"}
	tab.Slots[1].Followers = []string{"b", "d"}
	if err := tab.Validate(); err != nil {
		t.Fatal(err)
	}
	plan := PlanMoves(tab, 0)
	if len(plan) != minMoves(tab) || len(plan) != 102 {
		t.Fatalf("%d moves, want 102", len(plan))
	}
	cheap := map[int]string{}
	for _, m := range plan {
		if tab.Follows(m.To, m.Slot) {
			cheap[m.Slot] = m.To
		}
	}
	if len(cheap) != 2 || cheap[0] != "c" || cheap[1] != "b" {
		t.Fatalf("follower moves %v, want slot 0 to c and slot 1 to b", cheap)
	}
	if plan[0].Slot != 0 || plan[1].Slot != 1 {
		t.Fatalf("follower moves do not come first: %v", plan[:2])
	}
	even, _ := applyPlan(t, tab, 0)
	checkLeadersEven(t, even)
}

// TestPlanMovesWithMovesInProgress: a slot with a Target counts as its
// Target's and is never planned again.
func TestPlanMovesWithMovesInProgress(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a"), 2)
	tab = mustBalance(t, tab, mkNodes("a", "b"), 2)
	tab = mustStart(t, tab, 10, "b")
	tab = mustStart(t, tab, 20, "b")
	plan := PlanMoves(tab, 0)
	if len(plan) != 126 {
		t.Fatalf("%d moves, want 126", len(plan))
	}
	for _, m := range plan {
		if m.Slot == 10 || m.Slot == 20 {
			t.Fatalf("moving slot %d planned again", m.Slot)
		}
	}
	// b leads half once the moves finish: a plan from a table where b is
	// the target of everything b needs is empty.
	for _, m := range plan {
		tab = mustStart(t, tab, m.Slot, m.To)
	}
	if p := PlanMoves(tab, 0); len(p) != 0 {
		t.Fatalf("plan with every move in progress: %v", p)
	}
	if got := tab.Moving(); len(got) != 128 || !slices.IsSorted(got) {
		t.Fatalf("Moving() = %d slots", len(got))
	}
}

func TestStartMove(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a", "b", "c"), 2) // f = 1
	s := tab.LedBy("a")[0]
	fol := tab.Slots[s].Followers[0]
	other := "b"
	if fol == "b" {
		other = "c"
	}
	unled := NewTable(2)
	unled.Nodes = mkNodes("a", "b")
	errs := map[string]struct {
		tab  *Table
		slot int
		to   string
	}{
		"nil table":     {nil, 0, "a"},
		"slot -1":       {tab, -1, "b"},
		"slot 256":      {tab, Count, "b"},
		"unknown node":  {tab, s, "zzz"},
		"empty node":    {tab, s, ""},
		"to is leader":  {tab, s, "a"},
		"no leader":     {unled, 0, "b"},
		"other target":  {mustStart(t, tab, s, fol), s, other},
		"other target2": {mustStart(t, tab, s, other), s, fol},
	}
	for name, c := range errs {
		if _, err := StartMove(c.tab, c.slot, c.to); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	// To an existing follower: no extra place.
	next := mustStart(t, tab, s, fol)
	a := next.Slots[s]
	if a.Target != fol || !slices.Equal(a.Followers, tab.Slots[s].Followers) || a.Leader != "a" ||
		a.LeaderEpoch != tab.Slots[s].LeaderEpoch || next.Epoch != tab.Epoch+1 {
		t.Fatalf("StartMove to follower: %+v epoch %d", a, next.Epoch)
	}
	if !sameSlots(tab, mustBalance(t, tab, tab.Nodes, 2)) || !slices.Equal(next.Moving(), []int{s}) {
		t.Fatalf("Moving() = %v", next.Moving())
	}
	// The same move again: an equal copy, same epoch.
	again := mustStart(t, next, s, fol)
	if !again.Equal(next) || again == next {
		t.Fatalf("repeated StartMove changed the table or returned prev itself")
	}

	// To a non-follower: an extra place, appended.
	next = mustStart(t, tab, s, other)
	a = next.Slots[s]
	if a.Target != other || !slices.Equal(a.Followers, []string{fol, other}) || next.Epoch != tab.Epoch+1 {
		t.Fatalf("StartMove to non-follower: %+v", a)
	}
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(tab.Slots[s].Followers) != 1 || tab.Slots[s].Target != "" {
		t.Fatalf("StartMove modified prev")
	}
}

func TestFinishMove(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a", "b", "c", "d"), 3) // f = 2
	s := tab.LedBy("a")[0]
	fol := slices.Clone(tab.Slots[s].Followers)
	other := "b"
	for slices.Contains(fol, other) {
		other = string(other[0] + 1)
	}
	if _, err := FinishMove(tab, s, fol[0]); err == nil {
		t.Fatalf("FinishMove without a move succeeded")
	}
	if _, err := FinishMove(nil, s, fol[0]); err == nil {
		t.Fatalf("FinishMove of nil succeeded")
	}
	if _, err := FinishMove(tab, Count, fol[0]); err == nil {
		t.Fatalf("FinishMove of slot 256 succeeded")
	}

	// To an existing follower: the old leader takes its place.
	started := mustStart(t, tab, s, fol[1])
	if _, err := FinishMove(started, s, fol[0]); err == nil {
		t.Fatalf("FinishMove to a node that is not the target succeeded")
	}
	next := mustFinish(t, started, s, fol[1])
	a := next.Slots[s]
	if a.Leader != fol[1] || a.Target != "" || !slices.Equal(a.Followers, []string{fol[0], "a"}) ||
		a.LeaderEpoch != tab.Slots[s].LeaderEpoch+1 || next.Epoch != started.Epoch+1 {
		t.Fatalf("FinishMove: %+v, epoch %d", a, next.Epoch)
	}
	if started.Slots[s].Leader != "a" || started.Slots[s].Target != fol[1] {
		t.Fatalf("FinishMove modified prev")
	}

	// To a non-follower: back to f followers, the old leader kept, the
	// most loaded other follower dropped.
	started = mustStart(t, tab, s, other)
	if len(started.Slots[s].Followers) != 3 || started.Slots[s].LeaderEpoch != tab.Slots[s].LeaderEpoch {
		t.Fatalf("StartMove: %+v", started.Slots[s])
	}
	next = mustFinish(t, started, s, other)
	a = next.Slots[s]
	_, fc := counts(started)
	drop := fol[1]
	if fc[fol[0]] > fc[fol[1]] {
		drop = fol[0]
	}
	keep := fol[0]
	if drop == fol[0] {
		keep = fol[1]
	}
	if a.Leader != other || len(a.Followers) != 2 || !slices.Contains(a.Followers, "a") || !slices.Contains(a.Followers, keep) {
		t.Fatalf("FinishMove to non-follower: %+v, want followers {a, %s} (dropping %s, counts %v)", a, keep, drop, fc)
	}
	checkInvariants(t, next, tab.Nodes, 3)

	// Replicas 1: the target's extra place was the only one; the old
	// leader has to go.
	one := mustBalance(t, nil, mkNodes("a", "b"), 1)
	s = one.LedBy("a")[0]
	started = mustStart(t, one, s, "b")
	if !slices.Equal(started.Slots[s].Followers, []string{"b"}) {
		t.Fatalf("replicas 1 StartMove: %+v", started.Slots[s])
	}
	next = mustFinish(t, started, s, "b")
	if a := next.Slots[s]; a.Leader != "b" || len(a.Followers) != 0 || a.LeaderEpoch != one.Slots[s].LeaderEpoch+1 {
		t.Fatalf("replicas 1 FinishMove: %+v", a)
	}
	checkInvariants(t, next, one.Nodes, 1)
}

func TestCancelMove(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a", "b", "c"), 2)
	s := tab.LedBy("a")[0]
	fol := tab.Slots[s].Followers[0]
	other := "b"
	if fol == "b" {
		other = "c"
	}
	if _, err := CancelMove(tab, s); err == nil {
		t.Fatalf("CancelMove without a move succeeded")
	}
	if _, err := CancelMove(tab, -1); err == nil {
		t.Fatalf("CancelMove of slot -1 succeeded")
	}
	// An extra place is removed with the target.
	started := mustStart(t, tab, s, other)
	next, err := CancelMove(started, s)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSlots(next, tab) || next.Epoch != started.Epoch+1 {
		t.Fatalf("CancelMove of an extra: %+v, epoch %d", next.Slots[s], next.Epoch)
	}
	// A regular follower stays.
	started = mustStart(t, tab, s, fol)
	next, err = CancelMove(started, s)
	if err != nil {
		t.Fatal(err)
	}
	if !sameSlots(next, tab) || next.Epoch != started.Epoch+1 {
		t.Fatalf("CancelMove of a follower: %+v", next.Slots[s])
	}
	if started.Slots[s].Target != fol {
		t.Fatalf("CancelMove modified prev")
	}
}

// TestBalanceKeepsTargets checks the Target rules of Balance: a Target
// survives membership changes while its slot keeps its leader and it is
// present, its place is never moved, and it is cleared (with an extra place)
// otherwise.
func TestBalanceKeepsTargets(t *testing.T) {
	nodes := mkNodes("a", "b", "c", "d")
	tab := mustBalance(t, nil, nodes[:3], 2) // f = 1
	// Slot x: a leads, Target is its follower. Slot y: a leads, Target
	// holds an extra place. Slot z: b leads, Target c (extra or not).
	var x, y, z = -1, -1, -1
	for _, s := range tab.LedBy("a") {
		switch {
		case x < 0:
			x = s
		case y < 0:
			y = s
		}
	}
	z = tab.LedBy("b")[0]
	tx := tab.Slots[x].Followers[0]
	ty := "b"
	if tab.Follows("b", y) {
		ty = "c"
	}
	tab = mustStart(t, tab, x, tx)
	tab = mustStart(t, tab, y, ty)
	tab = mustStart(t, tab, z, "c")
	zExtra := len(tab.Slots[z].Followers) == 2

	// A join keeps them all, with their places.
	joined := mustBalance(t, tab, nodes, 2)
	checkInvariants(t, joined, nodes, 2)
	checkStep(t, tab, tab.Clone(), joined)
	checkJoin(t, tab, joined, "d", true)
	for _, s := range []int{x, y, z} {
		if joined.Slots[s].Target != tab.Slots[s].Target || !joined.Follows(joined.Slots[s].Target, s) {
			t.Fatalf("join lost the target of slot %d: %+v", s, joined.Slots[s])
		}
	}
	if len(joined.Slots[y].Followers) != 2 {
		t.Fatalf("join dropped the extra place of slot %d: %+v", y, joined.Slots[y])
	}
	// Lowering replicas to 1 keeps every target as a follower.
	lowered := mustBalance(t, joined, nodes, 1)
	checkInvariants(t, lowered, nodes, 1)
	for _, s := range []int{x, y, z} {
		if !slices.Equal(lowered.Slots[s].Followers, []string{joined.Slots[s].Target}) {
			t.Fatalf("replicas 1: slot %d followers %v, want just its target", s, lowered.Slots[s].Followers)
		}
	}

	// a leaves: x and y lose their leader, so their targets are cleared;
	// y's extra place goes, x's target (a follower) is promoted.
	left := mustBalance(t, joined, []Node{nodes[1], nodes[2], nodes[3]}, 2)
	checkInvariants(t, left, []Node{nodes[1], nodes[2], nodes[3]}, 2)
	checkStep(t, joined, joined.Clone(), left)
	if left.Slots[x].Target != "" || left.Slots[y].Target != "" || left.Leader(x) != tx {
		t.Fatalf("after a left: x %+v, y %+v", left.Slots[x], left.Slots[y])
	}
	if left.Slots[z].Target != "c" {
		t.Fatalf("after a left: z lost its target: %+v", left.Slots[z])
	}
	// prefer may name the target, which then leads at once.
	left2, err := BalanceWith(joined, []Node{nodes[1], nodes[2], nodes[3]}, 2, map[int]string{y: ty})
	if err != nil {
		t.Fatal(err)
	}
	if left2.Leader(y) != ty || left2.Slots[y].Target != "" || left2.Follows(ty, y) {
		t.Fatalf("prefer target: %+v", left2.Slots[y])
	}
	// c leaves: z's target is cleared.
	noC := mustBalance(t, joined, []Node{nodes[0], nodes[1], nodes[3]}, 2)
	checkInvariants(t, noC, []Node{nodes[0], nodes[1], nodes[3]}, 2)
	checkStep(t, joined, joined.Clone(), noC)
	if noC.Slots[z].Target != "" || noC.Leader(z) != "b" {
		t.Fatalf("after c left: z %+v (extra %v)", noC.Slots[z], zExtra)
	}
}

// TestEvenFollowersAfterMoves: FinishMove leaves follower counts uneven;
// Balance without a membership change leaves them so; EvenFollowers evens
// them without touching leaders or targets.
func TestEvenFollowersAfterMoves(t *testing.T) {
	nodes := mkNodes("a", "b", "c")
	tab := mustBalance(t, nil, nodes[:2], 2)
	tab = mustBalance(t, tab, nodes, 2)
	tab, _ = applyPlan(t, tab, 0)
	checkLeadersEven(t, tab)
	if same := mustBalance(t, tab, nodes, 2); !same.Equal(tab) {
		t.Fatalf("Balance without a change moved places")
	}
	s := tab.LedBy("a")[0]
	tab = mustStart(t, tab, s, "c")
	even, err := EvenFollowers(tab)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, even, nodes, 2)
	checkFollowersEven(t, even)
	checkEpochs(t, tab, even)
	if len(Moves(tab, even)) != 0 || even.Slots[s].Target != "c" || !even.Follows("c", s) {
		t.Fatalf("EvenFollowers moved a leader or target")
	}
	if _, err := EvenFollowers(nil); err == nil {
		t.Fatalf("EvenFollowers(nil) succeeded")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	moving := mustBalance(t, nil, mkNodes("a", "b", "c", "d"), 2)
	moving = mustStart(t, moving, 0, moving.Slots[0].Followers[0]) // a follower
	for _, nd := range moving.Nodes {
		if nd.ID != moving.Leader(1) && !moving.Follows(nd.ID, 1) {
			moving = mustStart(t, moving, 1, nd.ID) // an extra place
			break
		}
	}
	for _, tab := range []*Table{
		NewTable(1),
		mustBalance(t, nil, mkNodes("a"), 1),
		mustBalance(t, nil, mkNodes("a", "b", "c", "d"), 3),
		moving,
	} {
		b, err := tab.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal()) failed: %v", err)
		}
		if !got.Equal(tab) {
			t.Fatalf("round trip changed the table")
		}
		b2, _ := got.Marshal()
		if string(b2) != string(b) {
			t.Fatalf("re-marshal differs")
		}
	}
	if _, err := (*Table)(nil).Marshal(); err == nil {
		t.Fatalf("marshal of nil table succeeded")
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good := mustBalance(t, nil, mkNodes("a", "b", "c"), 2)
	// mutate returns good's JSON after f edited a generic copy of it.
	mutate := func(f func(m map[string]any)) []byte {
		b, _ := good.Marshal()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	slot0 := func(m map[string]any) map[string]any { return m["slots"].([]any)[0].(map[string]any) }
	cases := map[string][]byte{
		"not json":          []byte("{"),
		"trailing data":     append(mustMarshal(t, good), []byte(" {}")...),
		"wrong type":        []byte(`{"epoch":"x"}`),
		"no slots":          mutate(func(m map[string]any) { delete(m, "slots") }),
		"255 slots":         mutate(func(m map[string]any) { m["slots"] = m["slots"].([]any)[:255] }),
		"257 slots":         mutate(func(m map[string]any) { m["slots"] = append(m["slots"].([]any), map[string]any{}) }),
		"replicas 0":        mutate(func(m map[string]any) { m["replicas"] = 0 }),
		"duplicate node":    mutate(func(m map[string]any) { m["nodes"] = append(m["nodes"].([]any), m["nodes"].([]any)[2]) }),
		"empty node id":     mutate(func(m map[string]any) { m["nodes"].([]any)[0].(map[string]any)["id"] = "" }),
		"unsorted nodes":    mutate(func(m map[string]any) { n := m["nodes"].([]any); n[0], n[2] = n[2], n[0] }),
		"unknown leader":    mutate(func(m map[string]any) { slot0(m)["leader"] = "zzz" }),
		"unknown follower":  mutate(func(m map[string]any) { slot0(m)["followers"] = []any{"zzz"} }),
		"leader follows":    mutate(func(m map[string]any) { slot0(m)["followers"] = []any{slot0(m)["leader"]} }),
		"dup follower":      mutate(func(m map[string]any) { f := slot0(m)["followers"].([]any); slot0(m)["followers"] = append(f, f[0]) }),
		"followers, no led": mutate(func(m map[string]any) { slot0(m)["leader"] = "" }),
		"target leads":      mutate(func(m map[string]any) { slot0(m)["target"] = slot0(m)["leader"] }),
		"target not follower": mutate(func(m map[string]any) {
			for _, id := range []string{"a", "b", "c"} {
				if id != slot0(m)["leader"] && id != slot0(m)["followers"].([]any)[0] {
					slot0(m)["target"] = id
				}
			}
		}),
		"target unknown": mutate(func(m map[string]any) { slot0(m)["target"] = "zzz" }),
	}
	for name, b := range cases {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s: accepted %s", name, truncate(b))
		}
	}
	// The unmutated document is accepted, so the rejections above are
	// caused by the mutations.
	if _, err := Unmarshal(mutate(func(map[string]any) {})); err != nil {
		t.Fatalf("unmutated table rejected: %v", err)
	}
}

func mustMarshal(t *testing.T, tab *Table) []byte {
	t.Helper()
	b, err := tab.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func TestAccessors(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a", "b", "c"), 2)
	if addr, ok := tab.Addr("b"); !ok || addr != "10.0.0.1:7001" {
		t.Fatalf("Addr(b) = %q, %v", addr, ok)
	}
	if _, ok := tab.Addr("zzz"); ok {
		t.Fatalf("Addr of unknown node found")
	}
	if !tab.HasNode("c") || tab.HasNode("") || !slices.Equal(tab.NodeIDs(), []string{"a", "b", "c"}) {
		t.Fatalf("HasNode/NodeIDs wrong")
	}
	id := "com.example.Service:1.0.0@DEFAULT_GROUP"
	if tab.LeaderOf(id) != tab.Leader(Of(id)) || tab.LeaderOf(id) == "" {
		t.Fatalf("LeaderOf disagrees with Leader(Of)")
	}
	var led, followed int
	for _, n := range []string{"a", "b", "c"} {
		l, f := tab.LedBy(n), tab.FollowedBy(n)
		if !slices.IsSorted(l) || !slices.IsSorted(f) {
			t.Fatalf("LedBy/FollowedBy not ascending")
		}
		for _, s := range l {
			if !tab.Leads(n, s) || tab.Follows(n, s) || tab.Leader(s) != n {
				t.Fatalf("LedBy(%s) includes %d inconsistently", n, s)
			}
		}
		for _, s := range f {
			if !tab.Follows(n, s) || tab.Leads(n, s) {
				t.Fatalf("FollowedBy(%s) includes %d inconsistently", n, s)
			}
		}
		led += len(l)
		followed += len(f)
	}
	if led != Count || followed != Count {
		t.Fatalf("led %d, followed %d; want %d each", led, followed, Count)
	}
	if o := tab.Owners(5); len(o) != 2 || o[0] != tab.Leader(5) || o[1] != tab.Slots[5].Followers[0] {
		t.Fatalf("Owners(5) = %v", o)
	}
	// Out of range and nil never panic.
	for _, s := range []int{-1, Count} {
		if tab.Leader(s) != "" || tab.Leads("a", s) || tab.Follows("a", s) || tab.Owners(s) != nil {
			t.Fatalf("slot %d out of range answered", s)
		}
	}
	var none *Table
	if none.Leader(0) != "" || none.LedBy("a") != nil || none.HasNode("a") || none.Clone() != nil || none.NodeIDs() != nil {
		t.Fatalf("nil table answered")
	}
	if NewTable(1).Leads("", 0) {
		t.Fatalf("empty id leads an unled slot")
	}
}

func TestMoves(t *testing.T) {
	a := mustBalance(t, nil, mkNodes("a", "b"), 1)
	b := mustBalance(t, a, mkNodes("a", "b", "c"), 1)
	if len(Moves(a, b)) != 0 {
		t.Fatalf("join moved leaders")
	}
	c, n := applyPlan(t, b, 0)
	m := Moves(b, c)
	if len(m) != 85 || n != 85 || !slices.IsSorted(m) {
		t.Fatalf("Moves = %d slots (sorted %v), want 85", len(m), slices.IsSorted(m))
	}
	if !slices.Equal(m, c.LedBy("c")) {
		t.Fatalf("Moves != slots led by joiner")
	}
	if len(Moves(a, a)) != 0 {
		t.Fatalf("Moves(a, a) not empty")
	}
	if len(Moves(nil, a)) != Count || len(Moves(nil, nil)) != 0 {
		t.Fatalf("Moves with nil wrong")
	}
}

func TestCloneAndEqual(t *testing.T) {
	tab := mustBalance(t, nil, mkNodes("a", "b", "c"), 3)
	c := tab.Clone()
	if !c.Equal(tab) || !tab.Equal(c) {
		t.Fatalf("clone not equal")
	}
	c.Slots[0].Followers[0] = "x"
	c.Nodes[0].ID = "x"
	if tab.Slots[0].Followers[0] == "x" || tab.Nodes[0].ID == "x" {
		t.Fatalf("clone shares memory")
	}
	// Appending to one slot's followers must not clobber the next slot.
	c = tab.Clone()
	before := slices.Clone(c.Slots[1].Followers)
	c.Slots[0].Followers = append(c.Slots[0].Followers, "x")
	if !slices.Equal(c.Slots[1].Followers, before) {
		t.Fatalf("append leaked into the next slot")
	}

	edits := map[string]func(*Table){
		"epoch":       func(x *Table) { x.Epoch++ },
		"replicas":    func(x *Table) { x.Replicas++ },
		"addr":        func(x *Table) { x.Nodes[1].Addr = "y:1" },
		"node":        func(x *Table) { x.Nodes = x.Nodes[:2] },
		"leader":      func(x *Table) { x.Slots[9].Leader = "zz" },
		"leaderEpoch": func(x *Table) { x.Slots[9].LeaderEpoch++ },
		"followers":   func(x *Table) { f := x.Slots[9].Followers; f[0], f[1] = f[1], f[0] },
		"target":      func(x *Table) { x.Slots[9].Target = x.Slots[9].Followers[0] },
	}
	for name, edit := range edits {
		x := tab.Clone()
		edit(x)
		if x.Equal(tab) {
			t.Errorf("Equal ignores %s", name)
		}
	}
	var nilT *Table
	if !nilT.Equal(nil) || nilT.Equal(tab) || tab.Equal(nil) {
		t.Fatalf("Equal nil handling wrong")
	}
	x, y := NewTable(1), NewTable(1)
	x.Slots[3].Followers = []string{}
	if !x.Equal(y) {
		t.Fatalf("nil and empty followers differ")
	}
}

// TestChainMove exercises the fallback used when no single follower place
// can move directly: X is over target but only follows a slot Y leads, so
// the place must travel X -> Z on slot 0 and Z -> Y on slot 1.
func TestChainMove(t *testing.T) {
	nodes := mkNodes("w", "x", "y", "z")
	b := &balancer{}
	b.init(NewTable(2), nodes, 2)
	const w, x, y, z = 0, 1, 2, 3
	for s := range Count {
		b.leader[s] = w
	}
	b.leader[0] = y
	b.fol[0] = []int{x}
	b.fol[1] = []int{z}
	b.fcount = []int{0, 1, 0, 1}
	target := []int{0, 0, 1, 1}
	if b.fillDirect(y, target, false) {
		t.Fatalf("direct move possible; test set-up is wrong")
	}
	if !b.chainMove(y, target, false) {
		t.Fatalf("no chain found")
	}
	if !slices.Equal(b.fol[0], []int{z}) || !slices.Equal(b.fol[1], []int{y}) {
		t.Fatalf("chain moved to %v %v", b.fol[0], b.fol[1])
	}
	if !slices.Equal(b.fcount, target) {
		t.Fatalf("counts %v, want %v", b.fcount, target)
	}
	if b.chainMove(y, target, false) {
		t.Fatalf("chain found with nothing over target")
	}
}

// TestClusterCarriedThrough: the cluster name meta puts in the first
// table stays in every table derived from it (balance, moves, cancels)
// and survives the wire; it is part of the content, so tables of two
// clusters are never equal.
func TestClusterCarriedThrough(t *testing.T) {
	first := NewTable(2)
	first.Epoch, first.Cluster = 1, "c-1"
	tab := mustBalance(t, first, mkNodes("a", "b", "c"), 2)
	tab = mustStart(t, tab, 0, tab.Slots[0].Followers[0])
	tab = mustBalance(t, tab, mkNodes("a", "b", "c", "d"), 2)
	if even, err := EvenFollowers(tab); err != nil || even.Cluster != "c-1" {
		t.Fatalf("EvenFollowers: cluster %q, %v", even.Cluster, err)
	}
	if cancelled, err := CancelMove(tab, 0); err != nil || cancelled.Cluster != "c-1" {
		t.Fatalf("CancelMove: cluster %q, %v", cancelled.Cluster, err)
	}
	b, err := tab.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil || got.Cluster != "c-1" || !got.Equal(tab) {
		t.Fatalf("round trip: cluster %q, equal %v, %v", got.Cluster, got.Equal(tab), err)
	}
	other := tab.Clone()
	other.Cluster = "c-2"
	if other.Equal(tab) {
		t.Fatal("tables of two clusters are equal")
	}
}
