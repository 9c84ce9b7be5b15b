package slot

import (
	"errors"
	"fmt"
	"slices"
)

// Move is one planned leader move: the leadership of Slot goes from From
// to To, through StartMove and FinishMove.
type Move struct {
	Slot int    `json:"slot"`
	From string `json:"from"`
	To   string `json:"to"`
}

// PlanMoves returns the fewest leader moves that bring leader counts to
// max-min <= 1 (each node ends with Count/n or Count/n+1 slots; the +1s go
// to the nodes leading most, ties by ID), at most limit of them (limit <= 0:
// all). A slot that already has a Target counts as led by its Target and is
// never planned again, so meta can call PlanMoves again while moves are in
// progress and get only the rest.
//
// Among the minimal plans it takes as many moves as possible whose To
// already follows the slot (no data copy), then any others. Those moves
// come first, each group in slot order. From is the slot's leader, To is
// another node of t; t is not modified. Deterministic.
func PlanMoves(t *Table, limit int) []Move {
	if t == nil || len(t.Nodes) == 0 {
		return nil
	}
	n := len(t.Nodes)
	index := make(map[string]int, n) // lookups only, never iterated
	for i, nd := range t.Nodes {
		index[nd.ID] = i
	}
	// lead[s] is the leader of a slot that may move, none otherwise.
	var lead [Count]int
	count := make([]int, n)
	total := 0
	for s := range Count {
		a := &t.Slots[s]
		lead[s] = none
		owner := a.Leader
		if a.Target != "" {
			owner = a.Target
		}
		i, ok := index[owner]
		if !ok {
			continue
		}
		count[i]++
		total++
		if a.Target == "" {
			lead[s] = i
		}
	}
	target := waterfill(count, total, nil, nil)
	surplus, deficit := make([]int, n), make([]int, n)
	for i := range n {
		surplus[i] = max(0, count[i]-target[i])
		deficit[i] = max(0, target[i]-count[i])
	}

	// First the largest set of moves to an existing follower: a flow
	// from surplus nodes through their slots to deficit followers.
	g := newFlow(2 + 2*n + Count)
	const src, sink = 0, 1
	from := func(i int) int { return 2 + i }
	slotV := func(s int) int { return 2 + n + s }
	to := func(i int) int { return 2 + n + Count + i }
	for i := range n {
		if surplus[i] > 0 {
			g.add(src, from(i), surplus[i])
		}
		if deficit[i] > 0 {
			g.add(to(i), sink, deficit[i])
		}
	}
	slotEdges := make([][]int, Count) // edge ids slot -> follower
	for s := range Count {
		a := lead[s]
		if a == none || surplus[a] == 0 {
			continue
		}
		g.add(from(a), slotV(s), 1)
		for _, id := range t.Slots[s].Followers {
			if d, ok := index[id]; ok && d != a && deficit[d] > 0 {
				slotEdges[s] = append(slotEdges[s], g.add(slotV(s), to(d), 1))
			}
		}
	}
	g.maxflow(src, sink)

	var cheap, other []Move
	used := make([]bool, Count)
	for s := range Count {
		for _, e := range slotEdges[s] {
			if g.flow(e) > 0 {
				d := g.to[e] - to(0)
				cheap = append(cheap, Move{Slot: s, From: t.Nodes[lead[s]].ID, To: t.Nodes[d].ID})
				used[s] = true
				surplus[lead[s]]--
				deficit[d]--
			}
		}
	}

	// Then any slot: each deficit node (by ID) takes the lowest unused
	// slots of the node furthest over target.
	for d := range n {
		for deficit[d] > 0 {
			pick, slot := none, none
			for a := range n {
				if surplus[a] == 0 || (pick != none && surplus[a] <= surplus[pick]) {
					continue
				}
				for s := range Count {
					if lead[s] == a && !used[s] {
						pick, slot = a, s
						break
					}
				}
			}
			if pick == none {
				break // surplus is only slots already moving
			}
			other = append(other, Move{Slot: slot, From: t.Nodes[pick].ID, To: t.Nodes[d].ID})
			used[slot] = true
			surplus[pick]--
			deficit[d]--
		}
	}
	slices.SortFunc(other, func(x, y Move) int { return x.Slot - y.Slot })
	moves := append(cheap, other...)
	if limit > 0 && len(moves) > limit {
		moves = moves[:limit:limit]
	}
	return moves
}

// StartMove begins handing slot to node to: it sets the slot's Target. If
// to does not follow the slot yet it is added as an extra follower (the
// slot then has one follower more than usual until the move finishes or is
// cancelled), so it can catch up while the usual followers stay. It is an
// error if the slot is out of range or unled, to is unknown or already the
// leader, or another move of the slot is in progress. Starting the same
// move again returns an equal copy with the same epoch; otherwise the
// result has Epoch+1. prev is not modified.
func StartMove(prev *Table, slot int, to string) (*Table, error) {
	a, err := moveSlot(prev, slot)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Leader == "":
		return nil, fmt.Errorf("slot: slot %d has no leader to move", slot)
	case !prev.HasNode(to):
		return nil, fmt.Errorf("slot: move slot %d to unknown node %q", slot, to)
	case to == a.Leader:
		return nil, fmt.Errorf("slot: move slot %d: %q already leads it", slot, to)
	case a.Target == to:
		return prev.Clone(), nil
	case a.Target != "":
		return nil, fmt.Errorf("slot: slot %d is already moving to %q", slot, a.Target)
	}
	next := prev.Clone()
	b := &next.Slots[slot]
	b.Target = to
	if !slices.Contains(b.Followers, to) {
		b.Followers = append(slices.Clone(b.Followers), to)
	}
	next.Epoch++
	return next, nil
}

// FinishMove completes the move of slot to node to, which must be its
// Target: to becomes the leader (LeaderEpoch+1), the old leader, which has
// all the data, takes to's place among the followers, and the Target is
// cleared. If to held an extra place, the followers are then trimmed back
// to f = min(replicas-1, n-1): the follower on the most follower places is
// dropped (ties: the last listed), never the old leader unless f is 0.
// Follower counts may be uneven afterwards (see EvenFollowers). The result
// has Epoch+1; prev is not modified.
func FinishMove(prev *Table, slot int, to string) (*Table, error) {
	a, err := moveSlot(prev, slot)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Target == "":
		return nil, fmt.Errorf("slot: finish move of slot %d to %q: no move in progress", slot, to)
	case a.Target != to:
		return nil, fmt.Errorf("slot: finish move of slot %d to %q: it is moving to %q", slot, to, a.Target)
	case a.Leader == "" || !slices.Contains(a.Followers, to):
		return nil, fmt.Errorf("slot: finish move of slot %d to %q: target is not a follower of a led slot", slot, to)
	}
	next := prev.Clone()
	b := &next.Slots[slot]
	old := b.Leader
	fol := slices.Clone(b.Followers)
	fol[slices.Index(fol, to)] = old
	b.Leader, b.LeaderEpoch, b.Target = to, b.LeaderEpoch+1, ""
	b.Followers = fol
	f := followersFor(next.Replicas, len(next.Nodes))
	if len(fol) > f {
		_, fcount := next.placeCounts()
		for len(b.Followers) > f {
			drop := none
			for k, id := range b.Followers {
				if id == old && f > 0 {
					continue
				}
				if drop == none || fcount[id] >= fcount[b.Followers[drop]] {
					drop = k
				}
			}
			fcount[b.Followers[drop]]--
			b.Followers = slices.Delete(b.Followers, drop, drop+1)
		}
	}
	if len(b.Followers) == 0 {
		b.Followers = nil
	}
	next.Epoch++
	return next, nil
}

// CancelMove abandons the move of slot: it clears the Target, and if the
// Target held an extra follower place (beyond f = min(replicas-1, n-1)) it
// is removed from the followers. It is an error if no move is in progress.
// The result has Epoch+1; prev is not modified.
func CancelMove(prev *Table, slot int) (*Table, error) {
	a, err := moveSlot(prev, slot)
	if err != nil {
		return nil, err
	}
	if a.Target == "" {
		return nil, fmt.Errorf("slot: cancel move of slot %d: no move in progress", slot)
	}
	next := prev.Clone()
	b := &next.Slots[slot]
	if len(b.Followers) > followersFor(next.Replicas, len(next.Nodes)) {
		b.Followers = slices.DeleteFunc(slices.Clone(b.Followers), func(id string) bool { return id == b.Target })
		if len(b.Followers) == 0 {
			b.Followers = nil
		}
	}
	b.Target = ""
	next.Epoch++
	return next, nil
}

// moveSlot checks the arguments common to the move functions and returns
// the slot's assignment.
func moveSlot(t *Table, slot int) (*Assignment, error) {
	if t == nil {
		return nil, errors.New("slot: move in nil table")
	}
	if !validSlot(slot) {
		return nil, fmt.Errorf("slot: slot %d out of range [0, %d)", slot, Count)
	}
	return &t.Slots[slot], nil
}

// Moving lists the slots with a move in progress (a Target), ascending.
func (t *Table) Moving() []int {
	if t == nil {
		return nil
	}
	var out []int
	for s := range Count {
		if t.Slots[s].Target != "" {
			out = append(out, s)
		}
	}
	return out
}

// placeCounts returns how many slots each node leads and follows.
func (t *Table) placeCounts() (leaders, followers map[string]int) {
	leaders, followers = make(map[string]int), make(map[string]int)
	for s := range Count {
		if l := t.Slots[s].Leader; l != "" {
			leaders[l]++
		}
		for _, id := range t.Slots[s].Followers {
			followers[id]++
		}
	}
	return leaders, followers
}

// flowNet is a small max-flow network (Edmonds-Karp) for PlanMoves. Edges
// are stored in pairs: e and e^1 are an edge and its reverse. Everything
// is visited in insertion order, so results are deterministic.
type flowNet struct {
	head       []int // first edge out of each vertex, -1 if none
	next       []int // next edge out of the same vertex
	to         []int
	capacity   []int // residual capacity
	initialCap []int
}

func newFlow(vertices int) *flowNet {
	g := &flowNet{head: make([]int, vertices)}
	for i := range g.head {
		g.head[i] = -1
	}
	return g
}

// add adds an edge u -> v of capacity c and returns its id.
func (g *flowNet) add(u, v, c int) int {
	e := len(g.to)
	g.to = append(g.to, v, u)
	g.capacity = append(g.capacity, c, 0)
	g.initialCap = append(g.initialCap, c, 0)
	g.next = append(g.next, g.head[u], g.head[v])
	g.head[u], g.head[v] = e, e+1
	return e
}

// flow returns the flow on edge e.
func (g *flowNet) flow(e int) int { return g.initialCap[e] - g.capacity[e] }

// maxflow pushes as much flow as possible from src to sink along shortest
// augmenting paths.
func (g *flowNet) maxflow(src, sink int) {
	via := make([]int, len(g.head)) // edge that reached each vertex
	queue := make([]int, 0, len(g.head))
	for {
		for i := range via {
			via[i] = -1
		}
		queue = append(queue[:0], src)
		for k := 0; k < len(queue) && via[sink] < 0; k++ {
			u := queue[k]
			for e := g.head[u]; e >= 0; e = g.next[e] {
				if v := g.to[e]; g.capacity[e] > 0 && v != src && via[v] < 0 {
					via[v] = e
					queue = append(queue, v)
				}
			}
		}
		if via[sink] < 0 {
			return
		}
		push := -1
		for v := sink; v != src; v = g.to[via[v]^1] {
			if c := g.capacity[via[v]]; push < 0 || c < push {
				push = c
			}
		}
		for v := sink; v != src; v = g.to[via[v]^1] {
			g.capacity[via[v]] -= push
			g.capacity[via[v]^1] += push
		}
	}
}
