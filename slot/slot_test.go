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

func TestBalanceJoinOneByOne(t *testing.T) {
	for replicas := 1; replicas <= 3; replicas++ {
		all := mkNodes("a", "b", "c", "d")
		tab := NewTable(replicas)
		for n := 1; n <= len(all); n++ {
			prev, prevCopy := tab, tab.Clone()
			tab = mustBalance(t, prev, all[:n], replicas)
			checkInvariants(t, tab, all[:n], replicas)
			checkStep(t, prev, prevCopy, tab)
			if n > 1 {
				sameF := followersWanted(n, replicas) == followersWanted(n-1, replicas)
				checkJoin(t, prev, tab, all[n-1].ID, sameF)
				if got, want := len(Moves(prev, tab)), Count/n; got != want {
					t.Fatalf("r%d join #%d moved %d leaders, want %d", replicas, n, got, want)
				}
			}
			if tab.Epoch != uint64(n) {
				t.Fatalf("epoch = %d after %d joins", tab.Epoch, n)
			}
		}
	}
}

func TestBalanceRemoval(t *testing.T) {
	for replicas := 1; replicas <= 3; replicas++ {
		nodes := mkNodes("a", "b", "c")
		prev := mustBalance(t, nil, nodes, replicas)
		next := mustBalance(t, prev, nodes[:2], replicas)
		checkInvariants(t, next, nodes[:2], replicas)
		checkStep(t, prev, prev.Clone(), next)
		checkLeave(t, prev, next, "c")
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

// TestBalancePromotion checks rule 1: an orphaned slot goes to its first
// present follower, overridden only as much as leader balance requires.
func TestBalancePromotion(t *testing.T) {
	tab := NewTable(2)
	tab.Epoch = 7
	tab.Nodes = mkNodes("a", "b", "c")
	ids := []string{"a", "b", "c"}
	toA := 0
	for s := range Count {
		a := &tab.Slots[s]
		a.Leader = ids[s%3]
		a.LeaderEpoch = 3
		a.Followers = []string{ids[(s+1)%3]}
		if a.Leader == "c" {
			// c's 85 slots: 43 followed by a, 42 by b.
			a.Followers = []string{[]string{"a", "b"}[(s/3)%2]}
			if a.Followers[0] == "a" {
				toA++
			}
		}
	}
	if err := tab.Validate(); err != nil {
		t.Fatal(err)
	}
	next := mustBalance(t, tab, tab.Nodes[:2], 2)
	checkInvariants(t, next, tab.Nodes[:2], 2)
	checkLeave(t, tab, next, "c")
	// a had 86 + 43 = 129 after promotion, target 128: exactly one slot
	// must go to b instead; every other orphan goes to its follower.
	promoted, overridden := 0, 0
	for _, s := range tab.LedBy("c") {
		if next.Leader(s) == tab.Slots[s].Followers[0] {
			promoted++
		} else {
			overridden++
			if tab.Slots[s].Followers[0] != "a" || next.Leader(s) != "b" {
				t.Fatalf("slot %d moved to %s instead of being promoted", s, next.Leader(s))
			}
		}
		if next.Slots[s].LeaderEpoch != 4 {
			t.Fatalf("slot %d LeaderEpoch %d, want 4", s, next.Slots[s].LeaderEpoch)
		}
	}
	if promoted != 84 || overridden != 1 || toA != 43 {
		t.Fatalf("promoted %d, overridden %d (a followed %d), want 84 and 1", promoted, overridden, toA)
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
	checkLeave(t, tab, next, "d")
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

func sameSlots(x, y *Table) bool {
	for s := range Count {
		a, b := x.Slots[s], y.Slots[s]
		if a.Leader != b.Leader || a.LeaderEpoch != b.LeaderEpoch || !slices.Equal(a.Followers, b.Followers) {
			return false
		}
	}
	return true
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

func TestRebalance(t *testing.T) {
	if _, err := Rebalance(nil); err == nil {
		t.Fatalf("Rebalance(nil) succeeded")
	}
	// Hand-made skew: a leads everything, b follows everything.
	tab := NewTable(2)
	tab.Nodes = mkNodes("a", "b", "c")
	for s := range Count {
		tab.Slots[s] = Assignment{Leader: "a", Followers: []string{"b"}, LeaderEpoch: 1}
	}
	next, err := Rebalance(tab)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, next, tab.Nodes, 2)
	checkStep(t, tab, tab.Clone(), next)
	// Minimum movement: a keeps its target of 86, the other 170 move.
	moves := Moves(tab, next)
	if len(moves) != Count-86 || len(next.LedBy("a")) != 86 {
		t.Fatalf("moved %d leaders, a leads %d", len(moves), len(next.LedBy("a")))
	}
	// b already held the data of every slot it now leads, and a, the old
	// leader, took b's follower place there.
	for _, s := range next.LedBy("b") {
		if !next.Follows("a", s) {
			t.Fatalf("slot %d moved to follower b but a did not take its place", s)
		}
	}
	// Rebalancing a balanced table is a no-op.
	again, err := Rebalance(next)
	if err != nil || !again.Equal(next) {
		t.Fatalf("rebalance of balanced table changed it: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, tab := range []*Table{
		NewTable(1),
		mustBalance(t, nil, mkNodes("a"), 1),
		mustBalance(t, nil, mkNodes("a", "b", "c", "d"), 3),
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
	m := Moves(a, b)
	if len(m) != 85 || !slices.IsSorted(m) {
		t.Fatalf("Moves = %d slots (sorted %v), want 85", len(m), slices.IsSorted(m))
	}
	if !slices.Equal(m, b.LedBy("c")) {
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
