package slot

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mkNodes returns nodes with the given IDs and a derived address.
func mkNodes(ids ...string) []Node {
	out := make([]Node, len(ids))
	for i, id := range ids {
		out[i] = Node{ID: id, Addr: "10.0.0.1:" + fmt.Sprint(7000+i)}
	}
	return out
}

func mustBalance(t testing.TB, prev *Table, nodes []Node, replicas int) *Table {
	t.Helper()
	next, err := Balance(prev, nodes, replicas)
	if err != nil {
		t.Fatalf("Balance: %v", err)
	}
	return next
}

func mustStart(t testing.TB, prev *Table, slot int, to string) *Table {
	t.Helper()
	next, err := StartMove(prev, slot, to)
	if err != nil {
		t.Fatalf("StartMove(%d, %s): %v", slot, to, err)
	}
	return next
}

func mustFinish(t testing.TB, prev *Table, slot int, to string) *Table {
	t.Helper()
	next, err := FinishMove(prev, slot, to)
	if err != nil {
		t.Fatalf("FinishMove(%d, %s): %v", slot, to, err)
	}
	return next
}

// followersWanted is f = min(replicas-1, n-1), floored at 0.
func followersWanted(n, replicas int) int {
	return max(0, min(replicas-1, n-1))
}

// counts returns leader and follower places per node ID of tab.Nodes
// (zero for nodes holding nothing).
func counts(tab *Table) (leaders, followers map[string]int) {
	leaders, followers = make(map[string]int), make(map[string]int)
	for _, n := range tab.Nodes {
		leaders[n.ID], followers[n.ID] = 0, 0
	}
	for _, a := range tab.Slots {
		if a.Leader != "" {
			leaders[a.Leader]++
		}
		for _, f := range a.Followers {
			followers[f]++
		}
	}
	return leaders, followers
}

func leaderCounts(tab *Table) map[string]int {
	l, _ := counts(tab)
	return l
}

// checkInvariants asserts every structural rule a table produced by this
// package must satisfy for the given node set and replicas. It is written
// independently of Validate so that a Validate bug cannot hide a Balance
// bug. Balance itself is checked by checkLeadersEven / checkFollowersEven
// where the rules promise it.
func checkInvariants(t testing.TB, tab *Table, nodes []Node, replicas int) {
	t.Helper()
	if tab.Replicas != replicas {
		t.Fatalf("replicas = %d, want %d", tab.Replicas, replicas)
	}
	want := slices.Clone(nodes)
	slices.SortFunc(want, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(tab.Nodes, want) {
		t.Fatalf("nodes = %v, want %v", tab.Nodes, want)
	}
	n := len(nodes)
	f := followersWanted(n, replicas)
	known := make(map[string]bool, n)
	for _, nd := range want {
		known[nd.ID] = true
	}
	for s, a := range tab.Slots {
		if n == 0 {
			if a.Leader != "" || len(a.Followers) != 0 || a.Target != "" {
				t.Fatalf("slot %d owned (%q %v %q) with no nodes", s, a.Leader, a.Followers, a.Target)
			}
			continue
		}
		if !known[a.Leader] {
			t.Fatalf("slot %d led by %q, not a node", s, a.Leader)
		}
		if a.LeaderEpoch < 1 {
			t.Fatalf("slot %d led with LeaderEpoch 0", s)
		}
		if len(a.Followers) != f && (a.Target == "" || len(a.Followers) != f+1) {
			t.Fatalf("slot %d has %d followers (target %q), want %d", s, len(a.Followers), a.Target, f)
		}
		for k, x := range a.Followers {
			switch {
			case !known[x]:
				t.Fatalf("slot %d followed by %q, not a node", s, x)
			case x == a.Leader:
				t.Fatalf("node %q both leads and follows slot %d", x, s)
			case slices.Contains(a.Followers[:k], x):
				t.Fatalf("slot %d follower %q twice", s, x)
			}
		}
		if a.Target != "" && (a.Target == a.Leader || !slices.Contains(a.Followers, a.Target)) {
			t.Fatalf("slot %d target %q is not a follower of leader %q: %v", s, a.Target, a.Leader, a.Followers)
		}
	}
}

// checkLeadersEven asserts leader counts differ by at most 1.
func checkLeadersEven(t testing.TB, tab *Table) {
	t.Helper()
	n := len(tab.Nodes)
	if n == 0 {
		return
	}
	var lc []int
	for _, c := range leaderCounts(tab) {
		lc = append(lc, c)
	}
	if lo, hi := slices.Min(lc), slices.Max(lc); hi-lo > 1 || lo < Count/n || hi > (Count+n-1)/n {
		t.Fatalf("leader counts unbalanced: %v", leaderCounts(tab))
	}
}

// checkFollowersEven asserts follower places are as even as the leader
// counts and moves in progress allow: one node may have two or more places
// more than another only if that other node is full (follows every slot it
// does not lead) or the first holds nothing but Target places (which never
// move).
func checkFollowersEven(t testing.TB, tab *Table) {
	t.Helper()
	lc, fc := counts(tab)
	pinned := map[string]int{}
	for _, a := range tab.Slots {
		if a.Target != "" {
			pinned[a.Target]++
		}
	}
	for _, x := range tab.Nodes {
		for _, y := range tab.Nodes {
			if fc[x.ID] > fc[y.ID]+1 && fc[y.ID] < Count-lc[y.ID] && fc[x.ID] > pinned[x.ID] {
				t.Fatalf("follower counts uneven: %s %d (%d targets), %s %d (leads %d); all %v",
					x.ID, fc[x.ID], pinned[x.ID], y.ID, fc[y.ID], lc[y.ID], fc)
			}
		}
	}
}

// waterLevel returns the level L of the most even follower placement of
// tab: the largest L with sum(min(Count-leads, L)) <= total places.
func waterLevel(tab *Table) int {
	lc, fc := counts(tab)
	total := 0
	for _, c := range fc {
		total += c
	}
	level := 0
	for ; level < Count; level++ {
		sum := 0
		for _, nd := range tab.Nodes {
			sum += min(Count-lc[nd.ID], level+1)
		}
		if sum > total {
			break
		}
	}
	return level
}

// checkStep asserts the rules relating a Balance result to its
// predecessor: epoch grows by exactly one iff something changed,
// LeaderEpoch grows by exactly one iff the slot's leader changed, Targets
// are only kept (never set) and only while the leader stays and the Target
// is present, and prev was not modified.
func checkStep(t testing.TB, prev, prevCopy, next *Table) {
	t.Helper()
	if !prev.Equal(prevCopy) {
		t.Fatalf("Balance modified prev")
	}
	checkEpochs(t, prev, next)
	for s := range Count {
		p, q := prev.Slots[s], next.Slots[s]
		keep := p.Target != "" && p.Leader == q.Leader && next.HasNode(p.Target)
		switch {
		case keep && q.Target != p.Target:
			t.Fatalf("slot %d target %q dropped (leader %q kept)", s, p.Target, p.Leader)
		case !keep && q.Target != "":
			t.Fatalf("slot %d target %q -> %q (leader %q -> %q)", s, p.Target, q.Target, p.Leader, q.Leader)
		}
	}
}

// checkEpochs asserts the epoch and LeaderEpoch rules between any two
// successive tables.
func checkEpochs(t testing.TB, prev, next *Table) {
	t.Helper()
	changed := !sameIgnoringEpoch(next, prev)
	switch {
	case changed && next.Epoch != prev.Epoch+1:
		t.Fatalf("content changed but epoch %d -> %d", prev.Epoch, next.Epoch)
	case !changed && next.Epoch != prev.Epoch:
		t.Fatalf("nothing changed but epoch %d -> %d", prev.Epoch, next.Epoch)
	}
	for s := range Count {
		p, q := prev.Slots[s], next.Slots[s]
		if p.Leader != q.Leader && q.LeaderEpoch != p.LeaderEpoch+1 {
			t.Fatalf("slot %d leader %q->%q but LeaderEpoch %d->%d", s, p.Leader, q.Leader, p.LeaderEpoch, q.LeaderEpoch)
		}
		if p.Leader == q.Leader && q.LeaderEpoch != p.LeaderEpoch {
			t.Fatalf("slot %d leader kept but LeaderEpoch %d->%d", s, p.LeaderEpoch, q.LeaderEpoch)
		}
	}
}

// sameIgnoringEpoch compares content field by field, independently of the
// package's own comparison.
func sameIgnoringEpoch(x, y *Table) bool {
	if x.Replicas != y.Replicas || !slices.Equal(x.Nodes, y.Nodes) {
		return false
	}
	return sameSlots(x, y)
}

func sameSlots(x, y *Table) bool {
	for s := range Count {
		a, b := x.Slots[s], y.Slots[s]
		if a.Leader != b.Leader || a.LeaderEpoch != b.LeaderEpoch || a.Target != b.Target || !slices.Equal(a.Followers, b.Followers) {
			return false
		}
	}
	return true
}

// placeDiff returns, over all slots, follower places present in next but
// not prev (added) and in prev but not next (removed).
func placeDiff(prev, next *Table) (added, removed []string) {
	for s := range Count {
		for _, x := range next.Slots[s].Followers {
			if !slices.Contains(prev.Slots[s].Followers, x) {
				added = append(added, x)
			}
		}
		for _, x := range prev.Slots[s].Followers {
			if !slices.Contains(next.Slots[s].Followers, x) {
				removed = append(removed, x)
			}
		}
	}
	return added, removed
}

// checkJoin asserts minimal movement for a pure join of joiner: no leader
// moves (unless prev had no nodes), and, when f stays the same, only the
// joiner's share of follower places moves, each one to the joiner.
func checkJoin(t testing.TB, prev, next *Table, joiner string, sameF bool) {
	t.Helper()
	if m := Moves(prev, next); len(prev.Nodes) > 0 && len(m) != 0 {
		t.Fatalf("join of %s moved leaders of slots %v", joiner, m)
	}
	if !sameF {
		return
	}
	added, removed := placeDiff(prev, next)
	followed := next.FollowedBy(joiner)
	if len(added) != len(followed) || len(removed) != len(followed) {
		t.Fatalf("join of %s: %d places added, %d removed, joiner follows %d", joiner, len(added), len(removed), len(followed))
	}
	for _, x := range added {
		if x != joiner {
			t.Fatalf("join of %s gave a follower place to %s", joiner, x)
		}
	}
	// Its share: the water level of the new table, or one more. Places of
	// moves in progress cannot move, so with those it may get fewer.
	l, got := waterLevel(next), len(followed)
	if got > l+1 || got < l && len(next.Moving()) == 0 {
		t.Fatalf("join of %s: joiner follows %d slots, share is %d or %d", joiner, got, l, l+1)
	}
}

// checkLeave asserts that a leave changes the leader of exactly the
// leaver's slots, each going to prefer[s] if that was a present follower,
// else to the first present follower if there was one.
func checkLeave(t testing.TB, prev, next *Table, leaver string, prefer map[int]string) {
	t.Helper()
	if got, want := Moves(prev, next), prev.LedBy(leaver); len(next.Nodes) > 0 && !slices.Equal(got, want) {
		t.Fatalf("leave of %s moved %v, want exactly its slots %v", leaver, got, want)
	}
	for _, s := range prev.LedBy(leaver) {
		want := ""
		for _, x := range prev.Slots[s].Followers {
			if next.HasNode(x) {
				want = x
				break
			}
		}
		if p, ok := prefer[s]; ok && next.HasNode(p) && slices.Contains(prev.Slots[s].Followers, p) {
			want = p
		}
		if want != "" && next.Slots[s].Leader != want {
			t.Fatalf("slot %d went to %s, want follower %s", s, next.Slots[s].Leader, want)
		}
	}
}

// minMoves is the fewest leader moves that even out tab's leader counts,
// counting a moving slot as led by its Target: the sum of each node's
// surplus over its fair share, the +1 shares going to the nodes leading
// most.
func minMoves(tab *Table) int {
	lc := make(map[string]int)
	for _, nd := range tab.Nodes {
		lc[nd.ID] = 0
	}
	for _, a := range tab.Slots {
		switch {
		case a.Target != "":
			lc[a.Target]++
		case a.Leader != "":
			lc[a.Leader]++
		}
	}
	cs := make([]int, 0, len(lc))
	total := 0
	for _, c := range lc {
		cs = append(cs, c)
		total += c
	}
	slices.Sort(cs)
	slices.Reverse(cs)
	n, moves := len(cs), 0
	for i, c := range cs {
		share := total / n
		if i < total%n {
			share++
		}
		moves += max(0, c-share)
	}
	return moves
}

// applyPlan runs PlanMoves(tab, limit) until it is empty, starting every
// planned move and then finishing them all, and returns the result and the
// number of moves. Every move is checked against the table it was planned
// on and its result, and the final table against the structural rules.
func applyPlan(t testing.TB, tab *Table, limit int) (*Table, int) {
	t.Helper()
	total := 0
	var started []Move
	for round := 0; ; round++ {
		plan := PlanMoves(tab, limit)
		if len(plan) == 0 {
			break
		}
		if round > Count {
			t.Fatalf("PlanMoves does not converge")
		}
		if limit > 0 && len(plan) > limit {
			t.Fatalf("PlanMoves(%d) returned %d moves", limit, len(plan))
		}
		for _, m := range plan {
			a := tab.Slots[m.Slot]
			if m.From != a.Leader || m.To == m.From || !tab.HasNode(m.To) || a.Target != "" {
				t.Fatalf("bad move %+v of slot %+v", m, a)
			}
			prev := tab
			tab = mustStart(t, tab, m.Slot, m.To)
			b := tab.Slots[m.Slot]
			if tab.Epoch != prev.Epoch+1 || b.Target != m.To || b.Leader != a.Leader || b.LeaderEpoch != a.LeaderEpoch {
				t.Fatalf("StartMove(%+v): %+v -> %+v", m, a, b)
			}
		}
		started = append(started, plan...)
		total += len(plan)
	}
	f := followersWanted(len(tab.Nodes), tab.Replicas)
	for _, m := range started {
		prev := tab
		a := prev.Slots[m.Slot]
		tab = mustFinish(t, tab, m.Slot, m.To)
		b := tab.Slots[m.Slot]
		if tab.Epoch != prev.Epoch+1 || b.Leader != m.To || b.LeaderEpoch != a.LeaderEpoch+1 || b.Target != "" ||
			len(b.Followers) != f || (f > 0 && !slices.Contains(b.Followers, m.From)) {
			t.Fatalf("FinishMove(%+v): %+v -> %+v", m, a, b)
		}
	}
	checkInvariants(t, tab, tab.Nodes, tab.Replicas)
	return tab, total
}
