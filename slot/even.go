package slot

import (
	"slices"
	"sort"
)

// Follower evening: how the balancer repairs follower counts to their
// targets with as little copying as it can, and the targets themselves.

// repairFollowers moves follower places from nodes over target to nodes
// under it; targets are as even as the leader counts allow (see
// waterfill). On a pure join only the joiners take places, each directly
// from a node over target. Otherwise moves that copy no data (giving a
// node back a place it held in prev, or moving a place added by this call)
// are tried first, directly and then as chains. Then a direct move of any
// place: one place changes hands. Last, a shortest chain of moves through
// other nodes, which always exists when the targets are feasible. Target
// places never move.
func (b *balancer) repairFollowers() {
	if b.f == 0 || b.mode == repairNone {
		return
	}
	capacity := make([]int, b.n)
	for i := range capacity {
		capacity[i] = Count - b.lcount[i]
	}
	pinned := make([]int, b.n)
	total := 0
	for s := range Count {
		total += len(b.fol[s])
		if t := b.target[s]; t != none {
			pinned[t]++
		}
	}
	target := waterfill(b.fcount, total, pinned, capacity)
	if b.mode == repairJoiner {
		for d := range b.n {
			if b.joined[d] {
				b.fillDirect(d, target, false)
			}
		}
		return
	}
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
			if a == b.target[s] {
				continue
			}
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

// slotFromTo returns the highest slot followed by x (not as its Target) on
// which y is free (and, if cheapOnly, the move is cheap), none if there is
// none.
func (b *balancer) slotFromTo(x, y int, cheapOnly bool) int {
	for s := Count - 1; s >= 0; s-- {
		if x != b.target[s] && b.free(s, y) && slices.Contains(b.fol[s], x) && (!cheapOnly || b.cheap(s, x, y)) {
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

// waterfill returns per-node targets summing to total, as even as the
// bounds allow: every node gets L clamped to [floor, capacity] or L+1 for
// one level L, so nodes not held by their bounds differ by at most 1.
// floor and capacity may be nil (0 and unlimited). The +1s go to the nodes
// that currently hold the most (ties by index), which minimises how much
// has to move. The floors must not exceed total, nor total the sum of the
// capacities (it is then as close as the capacities allow).
func waterfill(count []int, total int, floor, capacity []int) []int {
	n := len(count)
	if n == 0 {
		return nil
	}
	lo := func(i int) int {
		if floor == nil {
			return 0
		}
		return floor[i]
	}
	hi := func(i int) int {
		if capacity == nil {
			return max(total, lo(i))
		}
		return max(capacity[i], lo(i))
	}
	at := func(i, level int) int { return min(max(level, lo(i)), hi(i)) }
	sum := func(level int) int {
		s := 0
		for i := range n {
			s += at(i, level)
		}
		return s
	}
	// The level L: the largest with sum(at(L)) <= total, found by binary
	// search (sum grows with the level; no target exceeds total + floors).
	lowL, highL := 0, total+1
	for lowL+1 < highL {
		if m := (lowL + highL) / 2; sum(m) <= total {
			lowL = m
		} else {
			highL = m
		}
	}
	level := lowL
	target := make([]int, n)
	rem := total
	for i := range n {
		target[i] = at(i, level)
		rem -= target[i]
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(x, y int) bool { return count[order[x]] > count[order[y]] })
	for _, i := range order {
		if rem > 0 && at(i, level+1) > target[i] {
			target[i]++
			rem--
		}
	}
	return target
}
