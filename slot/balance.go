package slot

import (
	"errors"
	"fmt"
	"slices"
	"sort"
)

// Balance is BalanceWith(prev, nodes, replicas, nil).
func Balance(prev *Table, nodes []Node, replicas int) (*Table, error) {
	return BalanceWith(prev, nodes, replicas, nil)
}

// BalanceWith applies a membership change: it returns the table for a new
// set of data nodes (any order; duplicate or empty IDs are an error) and
// replicas, starting from prev, which is not modified; a nil prev is treated
// as NewTable(replicas).
//
// prefer names, for a slot whose leader departed, the follower to promote
// (meta passes the most caught-up one); an entry is ignored unless it names
// a present follower of that slot in prev.
//
// The result has Epoch = prev.Epoch+1 if anything (nodes, addresses,
// assignments, replicas) changed, else prev.Epoch and equal content.
// Deterministic: the same inputs give the same output on every replica.
//
// Rules:
//   - A join never moves a leader: new nodes only get follower places, and
//     leadership reaches them later through PlanMoves, StartMove and
//     FinishMove, once they hold the data. The exception is a slot with no
//     leader (a table built from empty, or every node had left): those are
//     spread evenly over the present nodes, so building from n nodes at
//     once gives leader counts within 1 and a cluster's first node leads
//     every slot.
//   - A slot whose leader departed is promoted at once: to prefer[s] if it
//     is a present follower, else to its first present follower (it has
//     the data), else to the present node leading fewest slots (ties by
//     ID). No other slot changes leader.
//   - LeaderEpoch of a slot is raised by 1 exactly when its leader changes.
//   - Every slot has exactly f = min(replicas-1, n-1) distinct followers,
//     never its leader, plus one while its Target holds an extra place.
//     Departed followers are replaced. Follower counts per node are spread
//     as evenly as the leader counts allow (a node cannot follow the slots
//     it leads): max-min <= 1 among nodes not limited that way. A join
//     that leaves f unchanged moves only the joiners' share of follower
//     places, every one of them to a joiner (counts among the other nodes
//     stay as they were); other changes (a leave, a replicas change, a join
//     that raises f) even out every node's places, moving as few as
//     possible and preferring moves that copy no new data.
//   - A slot's Target is kept while its leader stays and the Target node
//     is present (its follower place is never moved); otherwise it is
//     cleared, and an extra place it held is dropped.
//   - An address change, or no change, moves nothing.
func BalanceWith(prev *Table, nodes []Node, replicas int, prefer map[int]string) (*Table, error) {
	return balance(prev, nodes, replicas, prefer, false)
}

// EvenFollowers evens out the follower places of prev among its own nodes
// (see the follower rule of BalanceWith) without moving any leader or
// Target. Balance leaves uneven counts alone when nothing but addresses
// changed, and FinishMove leaves them uneven (the old leader takes the new
// leader's follower place), so meta may call this after migrations to
// spread the follower load again. It moves as few places as possible,
// preferring moves that copy no new data, and returns an equal copy with
// the same epoch when there is nothing to do.
func EvenFollowers(prev *Table) (*Table, error) {
	if prev == nil {
		return nil, errors.New("slot: even followers of nil table")
	}
	return balance(prev, prev.Nodes, prev.Replicas, nil, true)
}

// balance is BalanceWith; even forces a full evening of follower places
// even when membership did not change.
func balance(prev *Table, nodes []Node, replicas int, prefer map[int]string, even bool) (*Table, error) {
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
	if even {
		b.mode = repairAll
	}
	b.placeLeaders(prefer)
	b.placeTargets()
	b.placeFollowers()
	next := b.table()
	next.Cluster = prev.Cluster
	if next.sameContent(prev) {
		return prev.Clone(), nil
	}
	next.Epoch = prev.Epoch + 1
	return next, nil
}

// followersFor is f = min(replicas-1, n-1), floored at 0: the regular
// number of followers per slot.
func followersFor(replicas, n int) int {
	return max(0, min(replicas-1, n-1))
}

// How much placeFollowers evens out follower counts.
const (
	repairNone   = iota // membership unchanged: move nothing
	repairJoiner        // nodes only joined: move places to joiners only
	repairAll           // anything else: even every node
)

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
	f        int // regular followers per slot
	mode     int // repairNone, repairJoiner or repairAll
	joined   []bool

	prevLead   [Count]int   // prev leader if still present, else none
	prevFol    [Count][]int // prev followers still present, in order
	prevTarget [Count]int   // prev Target if still present, else none
	prevExtra  [Count]bool  // prev Target held a place beyond prev's f
	leader     [Count]int
	target     [Count]int // kept Target, none if none; its place is pinned
	want       [Count]int // followers the slot gets
	fol        [Count][]int
	lcount     []int // leaders per node
	fcount     []int // follower places per node
}

// init prepares b for balancing prev onto the sorted nodes.
func (b *balancer) init(prev *Table, nodes []Node, replicas int) {
	*b = balancer{
		prev:     prev,
		nodes:    nodes,
		n:        len(nodes),
		replicas: replicas,
		f:        followersFor(replicas, len(nodes)),
		joined:   make([]bool, len(nodes)),
		lcount:   make([]int, len(nodes)),
		fcount:   make([]int, len(nodes)),
	}
	total := 0
	for s := range Count {
		total += len(prev.Slots[s].Followers)
	}
	prevF := followersFor(prev.Replicas, len(prev.Nodes))
	flat := make([]int, 0, total) // one allocation for all slots
	for s := range Count {
		a := &prev.Slots[s]
		b.prevLead[s] = b.lookup(a.Leader)
		start := len(flat)
		for _, id := range a.Followers {
			if i := b.lookup(id); i != none && i != b.prevLead[s] && !slices.Contains(flat[start:], i) {
				flat = append(flat, i)
			}
		}
		b.prevFol[s] = flat[start:len(flat):len(flat)]
		b.target[s] = none
		b.prevTarget[s] = none
		if i := b.lookup(a.Target); i != none && slices.Contains(b.prevFol[s], i) {
			b.prevTarget[s] = i
			b.prevExtra[s] = len(a.Followers) > prevF
		}
	}

	// Which kind of change is this?
	departed := false
	for _, nd := range prev.Nodes {
		if b.lookup(nd.ID) == none {
			departed = true
		}
	}
	joins := false
	for i, nd := range nodes {
		if !prev.HasNode(nd.ID) {
			b.joined[i], joins = true, true
		}
	}
	switch {
	case departed || replicas != prev.Replicas || len(prev.Nodes) == 0:
		b.mode = repairAll
	case joins && b.f == prevF:
		b.mode = repairJoiner
	case joins:
		// The follower count grows: new places are filled anyway, so
		// even everything out.
		b.mode = repairAll
	default:
		b.mode = repairNone
	}
}

// lookup returns the index of a present node, none if absent (or "").
// A binary search over the sorted nodes: cheaper than hashing for the
// handful of nodes a table has.
func (b *balancer) lookup(id string) int {
	if id == "" {
		return none
	}
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

// placeLeaders keeps every present leader, promotes a follower of each
// slot whose leader departed, and gives the remaining unled slots to the
// nodes leading fewest. It never moves a present leader.
func (b *balancer) placeLeaders(prefer map[int]string) {
	for s := range Count {
		b.leader[s] = b.prevLead[s]
		if b.leader[s] != none {
			b.lcount[b.leader[s]]++
		}
	}
	if b.n == 0 {
		return
	}
	// Promotions first, so that the least-loaded choice below sees them.
	for s := range Count {
		if b.leader[s] != none || len(b.prevFol[s]) == 0 {
			continue
		}
		pick := b.prevFol[s][0]
		if id, ok := prefer[s]; ok {
			if i := b.lookup(id); i != none && slices.Contains(b.prevFol[s], i) {
				pick = i
			}
		}
		b.leader[s] = pick
		b.lcount[pick]++
	}
	for s := range Count {
		if b.leader[s] == none {
			pick := argmin(b.lcount)
			b.leader[s] = pick
			b.lcount[pick]++
		}
	}
}

// placeTargets keeps each Target whose slot kept its leader and sets how
// many followers every slot gets: f, plus one while a kept Target holds an
// extra place (and never fewer than the Target itself), but no more than
// there are other nodes.
func (b *balancer) placeTargets() {
	for s := range Count {
		b.target[s] = none
		b.want[s] = 0
		if b.leader[s] == none {
			continue
		}
		want := b.f
		if t := b.prevTarget[s]; t != none && b.leader[s] == b.prevLead[s] && t != b.leader[s] {
			b.target[s] = t
			if b.prevExtra[s] {
				want++
			}
			want = max(want, 1)
		}
		b.want[s] = min(want, b.n-1)
	}
}

// placeFollowers keeps valid follower places, trims or fills each slot to
// its wanted count, then evens out counts as b.mode allows.
func (b *balancer) placeFollowers() {
	if b.n == 0 {
		return
	}
	// One backing array; each slot gets a fixed window of f+1 (room for
	// an extra Target place).
	w := b.f + 1
	flat := make([]int, Count*w)
	for s := range Count {
		list := flat[s*w : s*w : (s+1)*w]
		for _, i := range b.prevFol[s] {
			if i == b.leader[s] {
				continue // promoted
			}
			if b.prevExtra[s] && i == b.prevTarget[s] && b.target[s] == none {
				continue // a cleared Target's extra place goes with it
			}
			list = append(list, i)
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
		for len(b.fol[s]) < b.want[s] {
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

// trim drops follower places until every slot has at most its wanted
// count (replicas lowered, an extra place dropped). It always takes a place
// from the busiest node that still has a place on a slot with too many, so
// counts come out even and the repair pass rarely has to add places back.
// A Target's place is never dropped.
func (b *balancer) trim() {
	// mine[a] lists, descending, the slots a follows that start with too
	// many followers; entries whose slot got trimmed enough are skipped.
	mine := make([][]int, b.n)
	for s := Count - 1; s >= 0; s-- {
		if len(b.fol[s]) > b.want[s] {
			for _, a := range b.fol[s] {
				if a != b.target[s] {
					mine[a] = append(mine[a], s)
				}
			}
		}
	}
	for {
		best := none
		for a := range b.n {
			for len(mine[a]) > 0 && len(b.fol[mine[a][0]]) <= b.want[mine[a][0]] {
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

// table builds the resulting Table (epoch left to the caller).
func (b *balancer) table() *Table {
	t := &Table{Replicas: b.replicas}
	if b.n > 0 {
		t.Nodes = slices.Clone(b.nodes)
	}
	total := 0
	for s := range Count {
		total += len(b.fol[s])
	}
	names := make([]string, 0, total) // one allocation for all slots
	for s := range Count {
		a := &t.Slots[s]
		a.LeaderEpoch = b.prev.Slots[s].LeaderEpoch
		if b.leader[s] != none {
			a.Leader = b.nodes[b.leader[s]].ID
		}
		if a.Leader != b.prev.Slots[s].Leader {
			a.LeaderEpoch++
		}
		if b.target[s] != none {
			a.Target = b.nodes[b.target[s]].ID
		}
		if k := len(b.fol[s]); k > 0 {
			start := len(names)
			for _, i := range b.fol[s] {
				names = append(names, b.nodes[i].ID)
			}
			// Full slice expression: appending to one slot's list must
			// never overwrite the next slot's.
			a.Followers = names[start : start+k : start+k]
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
