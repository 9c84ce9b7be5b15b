package slot

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// TestBalanceProperties drives the table through random sequences of
// joins, leaves (with and without a preferred follower), address changes,
// replica changes, mixed churn, and leader moves being started, finished
// and cancelled, checking every invariant after every step and minimal
// movement on joins and leaves. Each sequence starts from a random bulk
// join so that large clusters are covered without long (slow) sequences,
// and ends by evening out the leaders with PlanMoves.
func TestBalanceProperties(t *testing.T) {
	runProperties(t, 200, 12, 10, 3)
}

// runProperties runs the property check over the given number of random
// sequences (seeds 0..sequences-1) of steps steps each, with up to maxNodes
// nodes and replicas in 1..maxReplicas.
func runProperties(t *testing.T, sequences, steps, maxNodes, maxReplicas int) {
	pool := make([]string, maxNodes+4) // more than maxNodes, so departed IDs come back
	for i := range pool {
		pool[i] = fmt.Sprintf("n%02d", i)
	}
	var joins, leaves, starts, finishes, cancels, plans, maxSeen int
	for seq := range sequences {
		rng := rand.New(rand.NewSource(int64(seq)))
		replicas := 1 + rng.Intn(maxReplicas)
		tab := NewTable(replicas)
		present := map[string]Node{}
		// ids returns the present IDs sorted (absent ones if !in), so that
		// map order never leaks into the test's random choices.
		ids := func(in bool) []string {
			var out []string
			for _, id := range pool {
				if _, ok := present[id]; ok == in {
					out = append(out, id)
				}
			}
			return out
		}
		join := func(step int) string {
			free := ids(false)
			id := free[rng.Intn(len(free))]
			present[id] = Node{ID: id, Addr: fmt.Sprintf("h%s:%d", id, step)}
			return id
		}
		leave := func() string {
			in := ids(true)
			id := in[rng.Intn(len(in))]
			delete(present, id)
			return id
		}
		for step := range steps + 1 {
			ctx := func(what string) *stepT {
				return &stepT{TB: t, ctx: func() string {
					return fmt.Sprintf("seq %d step %d (%s, %d nodes, replicas %d)", seq, step, what, len(present), replicas)
				}}
			}
			// Leader moves: no membership change.
			if op := rng.Intn(12); step > 0 && len(present) > 1 && op < 5 {
				moving := tab.Moving()
				switch {
				case op < 2 || len(moving) == 0:
					starts += randomStarts(ctx("start moves"), rng, &tab)
				case op == 2:
					s := moving[rng.Intn(len(moving))]
					finishOne(ctx("finish move"), &tab, s)
					finishes++
				case op == 3:
					s := moving[rng.Intn(len(moving))]
					cancelOne(ctx("cancel move"), &tab, s)
					cancels++
				default:
					st := ctx("even followers")
					next, err := EvenFollowers(tab)
					if err != nil {
						st.Fatalf("EvenFollowers: %v", err)
					}
					checkEpochs(st, tab, next)
					checkInvariants(st, next, tab.Nodes, tab.Replicas)
					checkFollowersEven(st, next)
					for s := range Count {
						if next.Slots[s].Leader != tab.Slots[s].Leader || next.Slots[s].Target != tab.Slots[s].Target {
							st.Fatalf("EvenFollowers changed the leader or target of slot %d", s)
						}
					}
					if again, _ := EvenFollowers(next); !again.Equal(next) {
						st.Fatalf("EvenFollowers of an even table changed it")
					}
					tab = next
				}
				continue
			}

			newReplicas := replicas
			joiner, leaver, what := "", "", ""
			var prefer map[int]string
			switch op := rng.Intn(10); {
			case step == 0:
				what = "bulk join"
				for range rng.Intn(maxNodes + 1) {
					join(step)
				}
			case op < 5 && len(present) < maxNodes || len(present) == 0:
				what = "join"
				joiner = join(step)
			case op < 8:
				what = "leave"
				leaver = leave()
				if rng.Intn(2) == 0 {
					// Prefer a random follower, or sometimes a node that
					// is not one (which must be ignored).
					prefer = map[int]string{}
					for _, s := range tab.LedBy(leaver) {
						fs := tab.Slots[s].Followers
						if len(fs) > 0 && rng.Intn(4) > 0 {
							prefer[s] = fs[rng.Intn(len(fs))]
						} else {
							prefer[s] = pool[rng.Intn(len(pool))]
						}
					}
				}
			case op == 8 && len(present) < maxNodes:
				what = "churn"
				join(step)
				leave()
			case op == 8:
				what = "address change"
				id := ids(true)[rng.Intn(len(present))]
				present[id] = Node{ID: id, Addr: fmt.Sprintf("moved-%s:%d", id, step)}
			default:
				what = "replicas change"
				newReplicas = 1 + rng.Intn(maxReplicas)
			}
			var nodes []Node
			for _, id := range ids(true) {
				nodes = append(nodes, present[id])
			}
			rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			maxSeen = max(maxSeen, len(nodes))

			prevCopy := tab.Clone()
			next, err := BalanceWith(tab, nodes, newReplicas, prefer)
			if err != nil {
				t.Fatalf("seq %d step %d: %v", seq, step, err)
			}
			// Prefix every failure with the step that caused it.
			st := &stepT{TB: t, ctx: func() string {
				return fmt.Sprintf("seq %d step %d (%s: join %q leave %q, replicas %d->%d, %d nodes)",
					seq, step, what, joiner, leaver, replicas, newReplicas, len(nodes))
			}}
			checkInvariants(st, next, nodes, newReplicas)
			checkStep(st, tab, prevCopy, next)
			if err := next.Validate(); err != nil {
				st.Fatalf("invalid table: %v", err)
			}
			if len(tab.Nodes) == 0 {
				// Built from empty: leaders spread evenly.
				checkLeadersEven(st, next)
			}
			switch what {
			case "join":
				if len(tab.Nodes) > 0 {
					sameF := followersWanted(len(nodes), replicas) == followersWanted(len(nodes)-1, replicas)
					checkJoin(st, tab, next, joiner, sameF)
					joins++
				}
			case "leave":
				checkLeave(st, tab, next, leaver, prefer)
				checkFollowersEven(st, next)
				leaves++
			case "churn":
				if !slices.Equal(tab.NodeIDs(), next.NodeIDs()) { // not the joiner leaving again
					checkFollowersEven(st, next)
				}
			case "replicas change":
				if m := Moves(tab, next); len(m) != 0 {
					st.Fatalf("replicas change moved leaders %v", m)
				}
				if newReplicas != replicas {
					checkFollowersEven(st, next)
				}
			case "address change":
				if next.Epoch != tab.Epoch+1 {
					st.Fatalf("address change did not raise epoch")
				}
				if !sameSlots(tab, next) {
					st.Fatalf("address change changed assignments")
				}
			}
			// Balancing again with the same input changes nothing.
			if step%3 == 2 {
				if again := mustBalance(st, next, nodes, newReplicas); !again.Equal(next) {
					st.Fatalf("re-balancing with the same nodes changed the table")
				}
			}
			tab, replicas = next, newReplicas
		}

		// Even out the leaders: first with moves still in progress, then
		// after finishing or cancelling them, in one go and in batches.
		st := &stepT{TB: t, ctx: func() string { return fmt.Sprintf("seq %d end (%d nodes)", seq, len(tab.Nodes)) }}
		// A quarter of the sequences only: every move copies the table,
		// and evening a random history takes a hundred moves or more.
		if len(tab.Nodes) == 0 || seq%4 != 0 {
			continue
		}
		if len(tab.Moving()) > 0 {
			if seq%8 == 0 {
				if _, moves := applyPlan(st, tab, 0); moves > minMoves(tab) {
					st.Fatalf("with moves in progress: %d moves, minimum %d", moves, minMoves(tab))
				}
			}
			for _, s := range tab.Moving() {
				if rng.Intn(2) == 0 {
					finishOne(st, &tab, s)
				} else {
					cancelOne(st, &tab, s)
				}
			}
		}
		limits := []int{0}
		if seq%8 == 4 {
			limits[0] = 5 + rng.Intn(20) // in batches, as meta does
		}
		for _, limit := range limits {
			even, moves := applyPlan(st, tab, limit)
			if want := minMoves(tab); moves != want {
				st.Fatalf("PlanMoves (limit %d) made %d moves, minimum %d", limit, moves, want)
			}
			checkLeadersEven(st, even)
			plans++
		}
	}
	if joins < sequences || leaves < sequences || starts < sequences || finishes < sequences/2 ||
		cancels < sequences/2 || plans < sequences/6 || maxSeen != maxNodes {
		t.Fatalf("weak coverage: %d joins, %d leaves, %d starts, %d finishes, %d cancels checked, max %d nodes",
			joins, leaves, starts, finishes, cancels, maxSeen)
	}
	t.Logf("%d joins, %d leaves, %d starts, %d finishes, %d cancels, %d plans checked", joins, leaves, starts, finishes, cancels, plans)
}

// randomStarts starts a few moves of random slots to random nodes, some
// planned by PlanMoves and some arbitrary (as an operator's move-slot
// would), checking each, and returns how many it started.
func randomStarts(st *stepT, rng *rand.Rand, tab **Table) int {
	started := 0
	var moves []Move
	if rng.Intn(2) == 0 {
		moves = PlanMoves(*tab, 1+rng.Intn(4))
	}
	for range 1 + rng.Intn(4) {
		s := rng.Intn(Count)
		moves = append(moves, Move{Slot: s, From: (*tab).Slots[s].Leader, To: (*tab).Nodes[rng.Intn(len((*tab).Nodes))].ID})
	}
	for _, m := range moves {
		prev := *tab
		a := prev.Slots[m.Slot]
		next, err := StartMove(prev, m.Slot, m.To)
		wantErr := m.To == a.Leader || (a.Target != "" && a.Target != m.To)
		if (err != nil) != wantErr {
			st.Fatalf("StartMove(%d, %s) of %+v: err %v", m.Slot, m.To, a, err)
		}
		if err != nil {
			continue
		}
		checkEpochs(st, prev, next)
		checkInvariants(st, next, prev.Nodes, prev.Replicas)
		b := next.Slots[m.Slot]
		wantFol := a.Followers
		if !slices.Contains(wantFol, m.To) {
			wantFol = append(slices.Clone(wantFol), m.To)
		}
		if b.Target != m.To || b.Leader != a.Leader || !slices.Equal(b.Followers, wantFol) {
			st.Fatalf("StartMove(%d, %s): %+v -> %+v", m.Slot, m.To, a, b)
		}
		*tab = next
		started++
	}
	return started
}

// finishOne finishes the move of slot s and checks the result.
func finishOne(st *stepT, tab **Table, s int) {
	prev := *tab
	a := prev.Slots[s]
	next := mustFinish(st, prev, s, a.Target)
	checkEpochs(st, prev, next)
	checkInvariants(st, next, prev.Nodes, prev.Replicas)
	b := next.Slots[s]
	f := followersWanted(len(prev.Nodes), prev.Replicas)
	if b.Leader != a.Target || b.Target != "" || len(b.Followers) != f ||
		(f > 0 && !slices.Contains(b.Followers, a.Leader)) {
		st.Fatalf("FinishMove(%d): %+v -> %+v", s, a, b)
	}
	for _, x := range b.Followers {
		if x != a.Leader && !slices.Contains(a.Followers, x) {
			st.Fatalf("FinishMove(%d) added follower %s: %+v -> %+v", s, x, a, b)
		}
	}
	for o := range Count {
		if o != s && !slices.Equal(prev.Slots[o].Followers, next.Slots[o].Followers) {
			st.Fatalf("FinishMove(%d) changed slot %d", s, o)
		}
	}
	*tab = next
}

// cancelOne cancels the move of slot s and checks the result.
func cancelOne(st *stepT, tab **Table, s int) {
	prev := *tab
	a := prev.Slots[s]
	next, err := CancelMove(prev, s)
	if err != nil {
		st.Fatalf("CancelMove(%d): %v", s, err)
	}
	checkEpochs(st, prev, next)
	checkInvariants(st, next, prev.Nodes, prev.Replicas)
	b := next.Slots[s]
	want := a.Followers
	if len(want) > followersWanted(len(prev.Nodes), prev.Replicas) {
		want = slices.DeleteFunc(slices.Clone(want), func(x string) bool { return x == a.Target })
	}
	if b.Target != "" || b.Leader != a.Leader || !slices.Equal(b.Followers, want) {
		st.Fatalf("CancelMove(%d): %+v -> %+v", s, a, b)
	}
	*tab = next
}

// stepT prefixes failures with the random step that caused them.
type stepT struct {
	testing.TB
	ctx func() string // formatted only on failure: steps are many
}

func (s *stepT) Fatalf(format string, args ...any) {
	s.TB.Helper()
	s.TB.Fatalf("%s: "+format, append([]any{s.ctx()}, args...)...)
}

// TestBalanceDeterministic checks that node order does not matter and that
// repeated calls agree.
func TestBalanceDeterministic(t *testing.T) {
	rng := rand.New(rand.NewSource(42))
	for range 10 {
		var nodes []Node
		for i := range 1 + rng.Intn(12) {
			nodes = append(nodes, Node{ID: fmt.Sprintf("node-%d", i), Addr: fmt.Sprintf("a:%d", i)})
		}
		replicas := 1 + rng.Intn(4)
		base := mustBalance(t, nil, nodes[:len(nodes)/2], replicas)
		want := mustBalance(t, base, nodes, replicas)
		for range 5 {
			shuffled := slices.Clone(nodes)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := mustBalance(t, base, shuffled, replicas); !got.Equal(want) {
				t.Fatalf("result depends on node order")
			}
		}
		if !slices.Equal(PlanMoves(want, 0), PlanMoves(want.Clone(), 0)) {
			t.Fatalf("PlanMoves not deterministic")
		}
	}
}

// randomTable returns a valid but arbitrarily skewed table (as an operator
// might hand-edit): leaders and followers drawn mostly from a few nodes.
func randomTable(rng *rand.Rand) *Table {
	n := 1 + rng.Intn(8)
	tab := NewTable(1 + rng.Intn(4))
	for i := range n {
		tab.Nodes = append(tab.Nodes, Node{ID: fmt.Sprintf("r%d", i), Addr: fmt.Sprintf("r:%d", i)})
	}
	f := followersWanted(n, tab.Replicas)
	skew := 1 + rng.Intn(n)
	pick := func() string {
		if rng.Intn(3) > 0 {
			return tab.Nodes[rng.Intn(skew)].ID
		}
		return tab.Nodes[rng.Intn(n)].ID
	}
	for s := range Count {
		a := Assignment{Leader: pick(), LeaderEpoch: uint64(1 + rng.Intn(5))}
		for len(a.Followers) < f {
			if x := pick(); x != a.Leader && !slices.Contains(a.Followers, x) {
				a.Followers = append(a.Followers, x)
			}
		}
		tab.Slots[s] = a
	}
	return tab
}

// TestPlanMovesRandomTables checks that applying PlanMoves turns any valid
// table into one with even leaders in the fewest moves, and that
// EvenFollowers then evens the followers without touching the leaders.
func TestPlanMovesRandomTables(t *testing.T) {
	for seq := range 40 {
		rng := rand.New(rand.NewSource(int64(seq)))
		tab := randomTable(rng)
		if err := tab.Validate(); err != nil {
			t.Fatalf("seq %d: generator made an invalid table: %v", seq, err)
		}
		st := &stepT{TB: t, ctx: func() string { return fmt.Sprintf("seq %d", seq) }}
		prevCopy := tab.Clone()
		next, moves := applyPlan(st, tab, rng.Intn(10))
		if !tab.Equal(prevCopy) {
			st.Fatalf("PlanMoves or the move functions modified their input")
		}
		checkInvariants(st, next, tab.Nodes, tab.Replicas)
		checkLeadersEven(st, next)
		if want := minMoves(tab); moves != want || len(Moves(tab, next)) != want {
			st.Fatalf("made %d moves (%d slots changed leader), minimum is %d", moves, len(Moves(tab, next)), want)
		}
		if len(PlanMoves(next, 0)) != 0 {
			st.Fatalf("PlanMoves of an even table is not empty")
		}

		even, err := EvenFollowers(next)
		if err != nil {
			st.Fatal(err)
		}
		checkInvariants(st, even, tab.Nodes, tab.Replicas)
		checkLeadersEven(st, even)
		checkFollowersEven(st, even)
		checkEpochs(st, next, even)
		if len(Moves(next, even)) != 0 {
			st.Fatalf("EvenFollowers moved leaders")
		}
		if again, _ := EvenFollowers(even); !again.Equal(even) {
			st.Fatalf("second EvenFollowers changed the table")
		}
	}
}

// TestEvenFollowersNeedsChain builds a table whose follower counts can only
// be evened out by a chain of two moves: x is one over its target and y
// one under, but every slot x follows is one y already leads or follows.
func TestEvenFollowersNeedsChain(t *testing.T) {
	specs := []struct {
		count  int
		leader string
		absent [2]string
	}{
		{18, "v", [2]string{"x", "y"}}, {18, "w", [2]string{"x", "y"}}, {17, "z", [2]string{"x", "y"}},
		{17, "x", [2]string{"y", "v"}}, {17, "x", [2]string{"y", "w"}}, {17, "x", [2]string{"y", "z"}},
		{34, "v", [2]string{"w", "z"}}, {1, "y", [2]string{"w", "z"}},
		{33, "w", [2]string{"v", "z"}}, {1, "y", [2]string{"v", "z"}},
		{34, "z", [2]string{"v", "w"}},
		{16, "y", [2]string{"x", "v"}}, {16, "y", [2]string{"x", "w"}}, {17, "y", [2]string{"x", "z"}},
	}
	tab := NewTable(3)
	tab.Nodes = mkNodes("v", "w", "x", "y", "z")
	s := 0
	for _, sp := range specs {
		for range sp.count {
			a := Assignment{Leader: sp.leader, LeaderEpoch: 1}
			for _, nd := range tab.Nodes {
				if nd.ID != sp.leader && nd.ID != sp.absent[0] && nd.ID != sp.absent[1] {
					a.Followers = append(a.Followers, nd.ID)
				}
			}
			tab.Slots[s] = a
			s++
		}
	}
	if s != Count {
		t.Fatalf("specs cover %d slots", s)
	}
	// Set-up sanity: valid, leaders already even, x over and y under, and
	// no single move from x to y exists.
	if err := tab.Validate(); err != nil {
		t.Fatal(err)
	}
	lc, fc := counts(tab)
	if lc["v"] != 52 || lc["x"] != 51 || fc["x"] != 103 || fc["y"] != 101 || fc["v"] != 103 || fc["w"] != 103 || fc["z"] != 102 {
		t.Fatalf("set-up counts: leaders %v followers %v", lc, fc)
	}
	for s := range Count {
		if tab.Follows("x", s) && !tab.Leads("y", s) && !tab.Follows("y", s) {
			t.Fatalf("set-up: slot %d allows a direct move", s)
		}
	}
	// Balance with the same nodes leaves the table alone.
	if same := mustBalance(t, tab, tab.Nodes, 3); !same.Equal(tab) {
		t.Fatalf("Balance without a membership change moved places")
	}

	next, err := EvenFollowers(tab)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, next, tab.Nodes, 3)
	checkFollowersEven(t, next)
	if m := Moves(tab, next); len(m) != 0 {
		t.Fatalf("leaders moved: %v", m)
	}
	added, removed := placeDiff(tab, next)
	if len(added) != 2 || len(removed) != 2 || !slices.Contains(added, "y") || !slices.Contains(removed, "x") {
		t.Fatalf("want a two-move chain x -> ? -> y, got added %v removed %v", added, removed)
	}
}
