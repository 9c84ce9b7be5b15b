package slot

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"
)

// TestBalanceProperties drives Balance through random sequences of joins,
// leaves, address changes, replica changes and mixed churn, checking every
// invariant after every step and minimal movement on pure joins and leaves.
// Each sequence starts from a random bulk join so that large clusters are
// covered without long (slow) sequences.
func TestBalanceProperties(t *testing.T) {
	runProperties(t, 300, 8, 10, 3)
}

// runProperties runs the property check over the given number of random
// sequences (seeds 0..sequences-1) of steps steps each, with up to maxNodes
// nodes and replicas in 1..maxReplicas.
func runProperties(t *testing.T, sequences, steps, maxNodes, maxReplicas int) {
	pool := make([]string, maxNodes+4) // more than maxNodes, so departed IDs come back
	for i := range pool {
		pool[i] = fmt.Sprintf("n%02d", i)
	}
	var joins, leaves, maxSeen int
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
			newReplicas := replicas
			joiner, leaver, what := "", "", ""
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
			next, err := Balance(tab, nodes, newReplicas)
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
			switch what {
			case "join":
				if len(tab.Nodes) > 0 {
					sameF := followersWanted(len(nodes), replicas) == followersWanted(len(nodes)-1, replicas)
					checkJoin(st, tab, next, joiner, sameF)
					joins++
				}
			case "leave":
				checkLeave(st, tab, next, leaver)
				leaves++
			case "replicas change":
				if m := Moves(tab, next); len(m) != 0 {
					st.Fatalf("replicas change moved leaders %v", m)
				}
			case "address change":
				if next.Epoch != tab.Epoch+1 {
					st.Fatalf("address change did not raise epoch")
				}
				if len(Moves(tab, next)) != 0 {
					st.Fatalf("address change moved leaders")
				}
				if a, r := placeDiff(tab, next); len(a)+len(r) != 0 {
					st.Fatalf("address change moved follower places")
				}
			}
			// Balancing a balanced table again changes nothing (sampled:
			// it doubles the cost of a step).
			if step%3 == 2 {
				if err := next.Validate(); err != nil {
					st.Fatalf("invalid table: %v", err)
				}
				if again := mustBalance(st, next, nodes, newReplicas); !again.Equal(next) {
					st.Fatalf("re-balancing a balanced table changed it")
				}
			}
			tab, replicas = next, newReplicas
		}
	}
	if joins < sequences || leaves < sequences || maxSeen != maxNodes {
		t.Fatalf("weak coverage: %d joins, %d leaves checked, max %d nodes", joins, leaves, maxSeen)
	}
	t.Logf("%d joins, %d leaves checked", joins, leaves)
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

// TestRebalanceRandomTables checks that Rebalance turns any valid table
// into a balanced one while moving the fewest leaders possible: the sum of
// each node's surplus over its fair share, where the +1 shares go to the
// nodes that lead most.
func TestRebalanceRandomTables(t *testing.T) {
	for seq := range 120 {
		rng := rand.New(rand.NewSource(int64(seq)))
		tab := randomTable(rng)
		if err := tab.Validate(); err != nil {
			t.Fatalf("seq %d: generator made an invalid table: %v", seq, err)
		}
		prevCopy := tab.Clone()
		next, err := Rebalance(tab)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		st := &stepT{TB: t, ctx: func() string { return fmt.Sprintf("seq %d", seq) }}
		checkInvariants(st, next, tab.Nodes, tab.Replicas)
		checkStep(st, tab, prevCopy, next)

		lc := leaderCounts(tab)
		cs := make([]int, 0, len(lc))
		for _, c := range lc {
			cs = append(cs, c)
		}
		slices.Sort(cs)
		slices.Reverse(cs)
		n := len(cs)
		minMoves := 0
		for i, c := range cs {
			share := Count / n
			if i < Count%n {
				share++
			}
			minMoves += max(0, c-share)
		}
		if got := len(Moves(tab, next)); got != minMoves {
			st.Fatalf("moved %d leaders, minimum is %d", got, minMoves)
		}
		if again, _ := Rebalance(next); !again.Equal(next) {
			st.Fatalf("second rebalance changed the table")
		}
	}
}

// TestRebalanceNeedsChain builds a table whose follower counts can only be
// evened out by a chain of two moves: x is one over its target and y one
// under, but every slot x follows is one y already leads or follows.
func TestRebalanceNeedsChain(t *testing.T) {
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

	next, err := Rebalance(tab)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, next, tab.Nodes, 3)
	if m := Moves(tab, next); len(m) != 0 {
		t.Fatalf("leaders moved: %v", m)
	}
	added, removed := placeDiff(tab, next)
	if len(added) != 2 || len(removed) != 2 || !slices.Contains(added, "y") || !slices.Contains(removed, "x") {
		t.Fatalf("want a two-move chain x -> ? -> y, got added %v removed %v", added, removed)
	}
}
