package slot

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Balance returns the table for a new set of data nodes (any order;
// duplicate or empty IDs are an error), starting from prev, which is not
// modified; a nil prev is treated as NewTable(replicas).
//
// The result has Epoch = prev.Epoch+1 if anything (nodes, addresses,
// assignments, replicas) changed, else prev.Epoch and equal content.
// Deterministic: the same inputs give the same output on every replica.
//
// Rules, in order of priority:
//   - Every slot has exactly one leader when there are nodes, and leader
//     counts per node differ by at most 1.
//   - A slot whose leader left is first given to its first still-present
//     follower (it already has the data), else to the node with the fewest
//     leaders (ties by ID); only then are counts evened out.
//   - Leadership moves as little as possible: only surplus over a node's
//     target moves, and only to nodes under target, so a join moves exactly
//     the joiner's share to the joiner, and a leave moves only the leaver's
//     slots.
//   - Every slot has exactly f = min(replicas-1, n-1) distinct followers,
//     never its leader; follower counts per node differ by at most 1, and
//     existing follower places are kept where possible.
//   - LeaderEpoch of a slot is raised by 1 exactly when its leader changes.
func Balance(prev *Table, nodes []Node, replicas int) (*Table, error) {
	if replicas < 1 {
		return nil, fmt.Errorf("slot: replicas %d < 1", replicas)
	}
	if prev == nil {
		prev = NewTable(replicas)
	}
	sorted := slices.Clone(nodes)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID < sorted[j].ID })
	for i, n := range sorted {
		if n.ID == "" {
			return nil, errors.New("slot: node with empty id")
		}
		if i > 0 && sorted[i-1].ID == n.ID {
			return nil, fmt.Errorf("slot: duplicate node %q", n.ID)
		}
	}

	var b balancer // on the stack: Balance runs often inside the FSM
	b.init(prev, sorted, replicas)
	b.placeLeaders()
	b.placeFollowers()
	next := b.table()
	if next.sameContent(prev) {
		return prev.Clone(), nil
	}
	next.Epoch = prev.Epoch + 1
	return next, nil
}

// Rebalance evens out leaders (and followers) among prev's own nodes, moving
// as few leaders as possible. Balance already keeps tables even, so this
// mostly repairs tables that were built elsewhere or edited by hand; it is
// kept as the operator's named entry point.
func Rebalance(prev *Table) (*Table, error) {
	if prev == nil {
		return nil, errors.New("slot: rebalance nil table")
	}
	return Balance(prev, prev.Nodes, prev.Replicas)
}

// none marks "no node" in the index-based working state.
const none = -1

// balancer is the working state of one Balance call. Nodes are referred to
// by their index in the sorted node list, which makes every tie-break by
// index a tie-break by ID.
type balancer struct {
	prev     *Table
	nodes    []Node
	n        int
	replicas int
	f        int // followers per slot

	prevLead [Count]int   // prev leader if still present, else none
	prevFol  [Count][]int // prev followers still present, in order
	leader   [Count]int
	changed  [Count]bool // leader differs from prev's
	fol      [Count][]int
	lcount   []int // leaders per node
	fcount   []int // follower places per node
}

// init prepares b for balancing prev onto the sorted nodes.
func (b *balancer) init(prev *Table, nodes []Node, replicas int) {
	*b = balancer{
		prev:     prev,
		nodes:    nodes,
		n:        len(nodes),
		replicas: replicas,
		lcount:   make([]int, len(nodes)),
		fcount:   make([]int, len(nodes)),
	}
	total := 0
	for s := range Count {
		total += len(prev.Slots[s].Followers)
	}
	flat := make([]int, 0, total) // one allocation for all slots
	for s := range Count {
		b.prevLead[s] = b.lookup(prev.Slots[s].Leader)
		start := len(flat)
		for _, id := range prev.Slots[s].Followers {
			if i := b.lookup(id); i != none && !slices.Contains(flat[start:], i) {
				flat = append(flat, i)
			}
		}
		b.prevFol[s] = flat[start:len(flat):len(flat)]
	}
	b.f = max(0, min(replicas-1, b.n-1))
}

// lookup returns the index of a present node, none if absent (or "").
// A binary search over the sorted nodes: cheaper than hashing for the
// handful of nodes a table has.
func (b *balancer) lookup(id string) int {
	lo, hi := 0, b.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.nodes[m].ID < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < b.n && b.nodes[lo].ID == id {
		return lo
	}
	return none
}

// placeLeaders keeps present leaders, fills orphaned slots (promotion, else
// least loaded), then moves the minimum number of leaders to reach targets.
func (b *balancer) placeLeaders() {
	for s := range Count {
		b.leader[s] = b.prevLead[s]
		if b.leader[s] != none {
			b.lcount[b.leader[s]]++
		}
	}
	if b.n == 0 {
		for s := range Count {
			b.changed[s] = b.prev.Slots[s].Leader != ""
		}
		return
	}
	for s := range Count {
		if b.leader[s] != none {
			continue
		}
		pick := none
		if len(b.prevFol[s]) > 0 {
			pick = b.prevFol[s][0]
		} else {
			pick = argmin(b.lcount)
		}
		b.setLeader(s, pick)
	}

	target := spread(b.lcount, Count, nil)
	var byRank [4][]int
	for d := range b.n {
		if b.lcount[d] >= target[d] {
			continue
		}
		// Candidates are ranked once per receiver: ranks do not change
		// while d fills up, and surplus only shrinks, so walking the
		// ranked list and skipping leaders that reached their target is
		// the same as re-searching after every move. Within a rank the
		// highest slot moves first, an arbitrary but fixed choice.
		for r := range byRank {
			byRank[r] = byRank[r][:0]
		}
		for s := Count - 1; s >= 0; s-- {
			if a := b.leader[s]; b.lcount[a] > target[a] {
				r := 0
				if b.changed[s] {
					// Already moving this round: moving it again costs
					// no extra handover, whereas taking an untouched
					// slot would add one.
					r += 2
				}
				if slices.Contains(b.prevFol[s], d) {
					// The receiver already has the data.
					r++
				}
				byRank[r] = append(byRank[r], s)
			}
		}
		for r := len(byRank) - 1; r >= 0; r-- {
			for _, s := range byRank[r] {
				if b.lcount[d] >= target[d] {
					break
				}
				if a := b.leader[s]; b.lcount[a] > target[a] {
					b.lcount[a]--
					b.setLeader(s, d)
				}
			}
		}
	}
}

func (b *balancer) setLeader(s, i int) {
	b.leader[s] = i
	b.lcount[i]++
	b.changed[s] = b.nodes[i].ID != b.prev.Slots[s].Leader
}

// placeFollowers keeps valid follower places, trims or fills each slot to
// exactly f, then repairs counts to within 1 by moving single places.
func (b *balancer) placeFollowers() {
	if b.n == 0 {
		return
	}
	// One backing array; each slot gets a fixed window of f+1 (one spare
	// for the old leader swapped in before trimming).
	flat := make([]int, Count*(b.f+1))
	for s := range Count {
		newL := b.leader[s]
		oldL := b.prevLead[s]
		list := flat[s*(b.f+1) : s*(b.f+1) : (s+1)*(b.f+1)]
		for _, i := range b.prevFol[s] {
			if i == newL {
				// The follower was promoted; the old leader, if still
				// here, holds the data and takes its place.
				if oldL == none || oldL == newL {
					continue
				}
				i = oldL
			}
			if !slices.Contains(list, i) {
				list = append(list, i)
			}
		}
		b.fol[s] = list
		for _, i := range list {
			b.fcount[i]++
		}
	}
	b.trim()
	// Fill (replicas raised, nodes left, slots newly led): least loaded
	// eligible node first.
	for s := range Count {
		for len(b.fol[s]) < b.f {
			pick := none
			for i, c := range b.fcount {
				if (pick == none || c < b.fcount[pick]) && b.free(s, i) {
					pick = i
				}
			}
			b.fol[s] = append(b.fol[s], pick)
			b.fcount[pick]++
		}
	}
	b.repairFollowers()
}

// trim drops follower places until every slot has at most f (replicas
// lowered, or the old leader swapped in). It always takes a place from the
// busiest node that still has a place on a slot with too many, so counts
// come out even and the repair pass rarely has to add places back.
func (b *balancer) trim() {
	// mine[a] lists, descending, the slots a follows that start with too
	// many followers; entries whose slot got trimmed enough are skipped.
	mine := make([][]int, b.n)
	for s := Count - 1; s >= 0; s-- {
		if len(b.fol[s]) > b.f {
			for _, a := range b.fol[s] {
				mine[a] = append(mine[a], s)
			}
		}
	}
	for {
		best := none
		for a := range b.n {
			for len(mine[a]) > 0 && len(b.fol[mine[a][0]]) <= b.f {
				mine[a] = mine[a][1:]
			}
			if len(mine[a]) > 0 && (best == none || b.fcount[a] > b.fcount[best]) {
				best = a
			}
		}
		if best == none {
			return
		}
		s := mine[best][0]
		mine[best] = mine[best][1:]
		k := slices.Index(b.fol[s], best)
		b.fol[s] = slices.Delete(b.fol[s], k, k+1)
		b.fcount[best]--
	}
}

// free reports whether node i neither leads nor follows slot s, i.e. may
// take a follower place there.
func (b *balancer) free(s, i int) bool {
	return b.leader[s] != i && !slices.Contains(b.fol[s], i)
}

// repairFollowers moves follower places from nodes over target to nodes
// under it. Moves that copy no data (giving a node back a place it held in
// prev, or moving a place added by this call) are tried first, directly
// and then as chains. Then a direct move of any place: one place changes
// hands, so a join moves only places that end up on the joiner. Last, a
// shortest chain of moves through other nodes, which always exists when
// the targets are feasible.
func (b *balancer) repairFollowers() {
	if b.f == 0 {
		return
	}
	capacity := make([]int, b.n)
	for i := range capacity {
		capacity[i] = Count - b.lcount[i]
	}
	target := spread(b.fcount, Count*b.f, capacity)
	for {
		moved := false
		for d := range b.n {
			for b.fcount[d] < target[d] &&
				(b.fillDirect(d, target, true) || b.chainMove(d, target, true) ||
					b.fillDirect(d, target, false) || b.chainMove(d, target, false)) {
				moved = true
			}
		}
		if !moved {
			return
		}
	}
}

// cheap reports whether handing x's place on slot s to y copies no data
// that prev did not already place: y held that place in prev, or x did not.
func (b *balancer) cheap(s, x, y int) bool {
	return slices.Contains(b.prevFol[s], y) || !slices.Contains(b.prevFol[s], x)
}

// fillDirect gives d follower places taken directly from nodes over
// target until d reaches its target or no direct move is left, and reports
// whether it moved any. With cheapOnly it only makes cheap moves. Moves
// that restore d's prev place come first, then moves of places their
// holder did not have in prev; then the node furthest over target, then
// the highest slot.
func (b *balancer) fillDirect(d int, target []int, cheapOnly bool) bool {
	// byNode[a] lists the slots a follows and d is free on, best first.
	// d only becomes busy on slots it takes, so entries go stale only that
	// way, which the free check below skips.
	byNode := make([][]int, b.n)
	groups := make([][4][]int, b.n) // by (restore, fresh), best group first
	for s := Count - 1; s >= 0; s-- {
		if !b.free(s, d) {
			continue
		}
		g := 2
		if slices.Contains(b.prevFol[s], d) {
			g = 0
		}
		for _, a := range b.fol[s] {
			ga := g
			if slices.Contains(b.prevFol[s], a) {
				ga++
			}
			if cheapOnly && ga == 3 {
				continue
			}
			groups[a][ga] = append(groups[a][ga], s)
		}
	}
	for a := range groups {
		for _, g := range groups[a] {
			byNode[a] = append(byNode[a], g...)
		}
	}
	moved := false
	for b.fcount[d] < target[d] {
		best, bestS, bestKey := none, none, [4]int{}
		for a := range b.n {
			over := b.fcount[a] - target[a]
			if over <= 0 {
				continue
			}
			for len(byNode[a]) > 0 && !b.free(byNode[a][0], d) {
				byNode[a] = byNode[a][1:]
			}
			if len(byNode[a]) == 0 {
				continue
			}
			s := byNode[a][0]
			key := [4]int{0, 0, over, s}
			if slices.Contains(b.prevFol[s], d) {
				key[0] = 1
			}
			if !slices.Contains(b.prevFol[s], a) {
				key[1] = 1
			}
			if best == none || slices.Compare(key[:], bestKey[:]) > 0 {
				best, bestS, bestKey = a, s, key
			}
		}
		if best == none {
			break
		}
		b.replace(bestS, slices.Index(b.fol[bestS], best), d)
		moved = true
	}
	return moved
}

// chainMove finds, breadth first, a shortest chain a -> x1 -> ... -> d where
// a is over target and each arrow is a slot the left node follows and the
// right node is free on (a cheap one if cheapOnly), then shifts one place
// along every arrow: a loses one place, d gains one, nodes in between keep
// their counts.
//
// The arrows' slots, found before any shift, stay valid while shifting:
// a shift on slot s only removes its left node and adds its right node, and
// along a shortest chain no later arrow on s can start at that right node
// (it was free on s, so it did not follow s) or end at that left node
// (nodes are distinct).
func (b *balancer) chainMove(d int, target []int, cheapOnly bool) bool {
	next := make([]int, b.n) // next[x] = node x hands a place to
	via := make([]int, b.n)  // via[x] = the slot it hands over
	seen := make([]bool, b.n)
	seen[d] = true
	queue := []int{d}
	for len(queue) > 0 {
		y := queue[0]
		queue = queue[1:]
		for x := range b.n {
			if seen[x] {
				continue
			}
			s := b.slotFromTo(x, y, cheapOnly)
			if s == none {
				continue
			}
			seen[x], next[x], via[x] = true, y, s
			if b.fcount[x] > target[x] {
				for ; x != d; x = next[x] {
					k := slices.Index(b.fol[via[x]], x)
					if k < 0 || !b.free(via[x], next[x]) {
						panic("slot: internal error: stale follower chain")
					}
					b.replace(via[x], k, next[x])
				}
				return true
			}
			queue = append(queue, x)
		}
	}
	return false
}

// slotFromTo returns the highest slot followed by x on which y is free
// (and, if cheapOnly, the move is cheap), none if there is none.
func (b *balancer) slotFromTo(x, y int, cheapOnly bool) int {
	for s := Count - 1; s >= 0; s-- {
		if b.free(s, y) && slices.Contains(b.fol[s], x) && (!cheapOnly || b.cheap(s, x, y)) {
			return s
		}
	}
	return none
}

// replace hands follower position k of slot s to node to, keeping its
// position so promotion order is otherwise unchanged.
func (b *balancer) replace(s, k, to int) {
	b.fcount[b.fol[s][k]]--
	b.fol[s][k] = to
	b.fcount[to]++
}

// table builds the resulting Table (epoch left to the caller).
func (b *balancer) table() *Table {
	t := &Table{Replicas: b.replicas}
	if b.n > 0 {
		t.Nodes = slices.Clone(b.nodes)
	}
	names := make([]string, Count*b.f) // one allocation for all slots
	for s := range Count {
		a := &t.Slots[s]
		a.LeaderEpoch = b.prev.Slots[s].LeaderEpoch
		if b.leader[s] != none {
			a.Leader = b.nodes[b.leader[s]].ID
		}
		if a.Leader != b.prev.Slots[s].Leader {
			a.LeaderEpoch++
		}
		if k := len(b.fol[s]); k > 0 {
			// Full slice expression: appending to one slot's list must
			// never overwrite the next slot's.
			a.Followers = names[s*b.f : s*b.f+k : s*b.f+k]
			for k, i := range b.fol[s] {
				a.Followers[k] = b.nodes[i].ID
			}
		}
	}
	return t
}

// argmin returns the index with the smallest count, the lowest index (so
// the smallest ID) on ties.
func argmin(count []int) int {
	best := 0
	for i, c := range count {
		if c < count[best] {
			best = i
		}
	}
	return best
}

// spread returns per-node targets summing to total, each total/n or
// total/n+1. The +1s go to the nodes that currently hold the most (ties by
// index), which minimises how much has to move, skipping nodes whose
// capacity (if given) cannot take the extra one.
func spread(count []int, total int, capacity []int) []int {
	n := len(count)
	q, rem := total/n, total%n
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(x, y int) bool { return count[order[x]] > count[order[y]] })
	target := make([]int, n)
	for _, i := range order {
		target[i] = q
		if rem > 0 && (capacity == nil || capacity[i] > q) {
			target[i]++
			rem--
		}
	}
	return target
}
