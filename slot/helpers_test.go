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

// followersWanted is f = min(replicas-1, n-1), floored at 0.
func followersWanted(n, replicas int) int {
	return max(0, min(replicas-1, n-1))
}

// counts returns leader and follower places per node ID of tab.Nodes
// (zero for nodes holding nothing).
func counts(tab *Table) (leaders, followers map[string]int) {
	idx := make(map[string]int, len(tab.Nodes))
	for i, n := range tab.Nodes {
		idx[n.ID] = i
	}
	lc, fc := make([]int, len(tab.Nodes)), make([]int, len(tab.Nodes))
	for _, a := range tab.Slots {
		if a.Leader != "" {
			lc[idx[a.Leader]]++
		}
		for _, f := range a.Followers {
			fc[idx[f]]++
		}
	}
	leaders, followers = make(map[string]int, len(lc)), make(map[string]int, len(fc))
	for i, n := range tab.Nodes {
		leaders[n.ID], followers[n.ID] = lc[i], fc[i]
	}
	return leaders, followers
}

func leaderCounts(tab *Table) map[string]int {
	l, _ := counts(tab)
	return l
}

// checkInvariants asserts every rule a balanced table must satisfy for the
// given node set and replicas. It is written independently of Validate so
// that a Validate bug cannot hide a Balance bug.
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
	idx := make(map[string]int, n)
	for i, nd := range want {
		idx[nd.ID] = i
	}
	lc, fc := make([]int, n), make([]int, n)
	for s, a := range tab.Slots {
		if n == 0 {
			if a.Leader != "" || len(a.Followers) != 0 {
				t.Fatalf("slot %d owned (%q %v) with no nodes", s, a.Leader, a.Followers)
			}
			continue
		}
		l, ok := idx[a.Leader]
		if !ok {
			t.Fatalf("slot %d led by %q, not a node", s, a.Leader)
		}
		lc[l]++
		if a.LeaderEpoch < 1 {
			t.Fatalf("slot %d led with LeaderEpoch 0", s)
		}
		if len(a.Followers) != f {
			t.Fatalf("slot %d has %d followers, want %d", s, len(a.Followers), f)
		}
		for k, x := range a.Followers {
			i, ok := idx[x]
			switch {
			case !ok:
				t.Fatalf("slot %d followed by %q, not a node", s, x)
			case x == a.Leader:
				t.Fatalf("node %q both leads and follows slot %d", x, s)
			case slices.Contains(a.Followers[:k], x):
				t.Fatalf("slot %d follower %q twice", s, x)
			}
			fc[i]++
		}
	}
	if n == 0 {
		return
	}
	if lo, hi := slices.Min(lc), slices.Max(lc); hi-lo > 1 || lo < Count/n || hi > (Count+n-1)/n {
		t.Fatalf("leader counts unbalanced: %v", lc)
	}
	if lo, hi := slices.Min(fc), slices.Max(fc); hi-lo > 1 {
		t.Fatalf("follower counts unbalanced: %v", fc)
	}
}

// checkStep asserts the rules relating a table to its predecessor: epoch
// grows by exactly one iff something changed, LeaderEpoch grows by exactly
// one iff the slot's leader changed, and prev was not modified.
func checkStep(t testing.TB, prev, prevCopy, next *Table) {
	t.Helper()
	if !prev.Equal(prevCopy) {
		t.Fatalf("Balance modified prev")
	}
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
	for s := range Count {
		a, b := x.Slots[s], y.Slots[s]
		if a.Leader != b.Leader || a.LeaderEpoch != b.LeaderEpoch || !slices.Equal(a.Followers, b.Followers) {
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

// checkJoin asserts minimal movement for a pure join of joiner.
func checkJoin(t testing.TB, prev, next *Table, joiner string, sameF bool) {
	t.Helper()
	moves := Moves(prev, next)
	led := next.LedBy(joiner)
	if len(moves) != len(led) {
		t.Fatalf("join of %s moved %d leaders, joiner leads %d", joiner, len(moves), len(led))
	}
	for _, s := range moves {
		if next.Slots[s].Leader != joiner {
			t.Fatalf("join of %s moved slot %d to %s", joiner, s, next.Slots[s].Leader)
		}
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
}

// checkLeave asserts that a pure leave changes the leader of exactly the
// leaver's slots, and that an orphan was only denied to its first present
// follower when that follower was not under its fair share.
func checkLeave(t testing.TB, prev, next *Table, leaver string) {
	t.Helper()
	if got, want := Moves(prev, next), prev.LedBy(leaver); !slices.Equal(got, want) {
		t.Fatalf("leave of %s moved %v, want exactly its slots %v", leaver, got, want)
	}
	n := len(next.Nodes)
	if n == 0 {
		return
	}
	lc := leaderCounts(next)
	for _, s := range prev.LedBy(leaver) {
		first := ""
		for _, x := range prev.Slots[s].Followers {
			if next.HasNode(x) {
				first = x
				break
			}
		}
		if first != "" && next.Slots[s].Leader != first && lc[first] < Count/n {
			t.Fatalf("slot %d not promoted to underloaded follower %s", s, first)
		}
	}
}
