package slot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Count is the fixed number of slots. It never changes at run time because
// every stored datum is addressed through Of; changing it would re-shard the
// whole registry.
const Count = 256

// Of returns the slot of a dataInfoId: xxhash.Sum64String(id) % Count.
// The hash is fixed forever so that all nodes and versions agree on where a
// dataInfoId lives.
func Of(dataInfoID string) int {
	return int(xxhash.Sum64String(dataInfoID) % Count)
}

// Node is a data node as the table knows it.
type Node struct {
	ID   string `json:"id"`
	Addr string `json:"addr"` // its inter-node RESP address, host:port
}

// Assignment is one slot's owners.
type Assignment struct {
	// Leader is the node ID that accepts writes for the slot, "" if no data
	// node exists.
	Leader string `json:"leader"`
	// Followers are node IDs holding replicas, in promotion order (the first
	// present one takes over when the leader leaves, unless meta names a
	// more caught-up one). Never contains Leader. Normally f = min(replicas-1,
	// n-1) of them; one more while Target holds an extra place.
	Followers []string `json:"followers,omitempty"`
	// LeaderEpoch is raised by 1 every time Leader changes (including the
	// first assignment of a leader and a change to ""), so a stale leader can
	// be fenced off by comparing epochs. It is >= 1 once the slot was led.
	LeaderEpoch uint64 `json:"leaderEpoch"`
	// Target is the node the leader is handing the slot to (a migration in
	// progress), "" when none. When set it is always one of Followers. See
	// StartMove, FinishMove and CancelMove.
	Target string `json:"target,omitempty"`
}

// Table is the whole slot table. Treat it as immutable once published:
// Balance, the move functions and EvenFollowers return new tables instead
// of editing in place, so readers holding an old pointer never see a
// half-updated table.
type Table struct {
	// Epoch grows on every change, so nodes can discard stale tables.
	Epoch uint64 `json:"epoch"`
	// Replicas is the wanted number of copies per slot (leader + followers),
	// >= 1. Fewer are used while there are not enough nodes.
	Replicas int `json:"replicas"`
	// Nodes are the data nodes, sorted by ID.
	Nodes []Node `json:"nodes"`
	// Slots holds each slot's owners, indexed by slot number.
	Slots [Count]Assignment `json:"slots"`
	// Cluster names the cluster: meta draws it once, when it makes the
	// first table, and every table after carries it. A registry that
	// starts again from empty has a new one, so a client that outlived
	// the old registry knows that versions have started over. "" in
	// tables from before it existed.
	Cluster string `json:"cluster,omitempty"`
}

// NewTable returns an empty table: epoch 0, no nodes, no leaders. It is the
// starting point handed to the first Balance.
func NewTable(replicas int) *Table {
	return &Table{Replicas: replicas}
}

// Clone returns a deep copy, so a caller can derive a table without aliasing
// the published one. Clone of nil is nil.
func (t *Table) Clone() *Table {
	if t == nil {
		return nil
	}
	c := new(Table)
	*c = *t // one bulk copy; only the slices below need fresh memory
	c.Nodes = slices.Clone(t.Nodes)
	total := 0
	for s := range t.Slots {
		total += len(t.Slots[s].Followers)
	}
	names := make([]string, 0, total) // one allocation for all slots
	for s := range c.Slots {
		a := &c.Slots[s]
		if k := len(a.Followers); k > 0 {
			start := len(names)
			names = append(names, a.Followers...)
			// Full slice expression: appending to one slot's list must
			// never overwrite the next slot's.
			a.Followers = names[start : start+k : start+k]
		} else {
			a.Followers = nil
		}
	}
	return c
}

// validSlot reports whether s can index Slots; accessors return zero values
// for bad slots instead of panicking because slot numbers arrive from the
// network.
func validSlot(s int) bool { return s >= 0 && s < Count }

// Leader returns the leader node ID of a slot, "" if none or slot is out of
// range.
func (t *Table) Leader(slot int) string {
	if t == nil || !validSlot(slot) {
		return ""
	}
	return t.Slots[slot].Leader
}

// LeaderOf returns the leader of the slot of dataInfoID, i.e. where a write
// for it must go.
func (t *Table) LeaderOf(dataInfoID string) string {
	return t.Leader(Of(dataInfoID))
}

// Addr returns the address of a node listed in Nodes.
func (t *Table) Addr(nodeID string) (string, bool) {
	if t == nil {
		return "", false
	}
	for _, n := range t.Nodes {
		if n.ID == nodeID {
			return n.Addr, true
		}
	}
	return "", false
}

// HasNode reports whether nodeID is one of the table's data nodes.
func (t *Table) HasNode(nodeID string) bool {
	_, ok := t.Addr(nodeID)
	return ok
}

// NodeIDs returns the IDs of the table's nodes in table (ID) order.
func (t *Table) NodeIDs() []string {
	if t == nil {
		return nil
	}
	ids := make([]string, len(t.Nodes))
	for i, n := range t.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// Leads reports whether nodeID leads slot. The empty ID never leads, so an
// unled slot is not mistaken for being led by an unnamed node.
func (t *Table) Leads(nodeID string, slot int) bool {
	return nodeID != "" && t.Leader(slot) == nodeID
}

// Follows reports whether nodeID is a follower of slot.
func (t *Table) Follows(nodeID string, slot int) bool {
	if t == nil || !validSlot(slot) || nodeID == "" {
		return false
	}
	return slices.Contains(t.Slots[slot].Followers, nodeID)
}

// Owners returns the leader followed by the followers of slot (the nodes
// holding its data), or nil if the slot is unled or out of range.
func (t *Table) Owners(slot int) []string {
	if t == nil || !validSlot(slot) || t.Slots[slot].Leader == "" {
		return nil
	}
	a := t.Slots[slot]
	return append([]string{a.Leader}, a.Followers...)
}

// LedBy returns the slots led by nodeID, ascending.
func (t *Table) LedBy(nodeID string) []int {
	var out []int
	for s := 0; s < Count; s++ {
		if t.Leads(nodeID, s) {
			out = append(out, s)
		}
	}
	return out
}

// FollowedBy returns the slots nodeID follows, ascending.
func (t *Table) FollowedBy(nodeID string) []int {
	var out []int
	for s := 0; s < Count; s++ {
		if t.Follows(nodeID, s) {
			out = append(out, s)
		}
	}
	return out
}

// Marshal encodes the table as JSON, the form stored in the meta Raft log.
func (t *Table) Marshal() ([]byte, error) {
	if t == nil {
		return nil, errors.New("slot: marshal nil table")
	}
	return json.Marshal(t)
}

// wireTable mirrors Table with a slice for Slots, because decoding straight
// into an array silently drops extra entries and zero-fills missing ones;
// Unmarshal must see the real length to reject truncated tables.
type wireTable struct {
	Epoch    uint64       `json:"epoch"`
	Replicas int          `json:"replicas"`
	Nodes    []Node       `json:"nodes"`
	Slots    []Assignment `json:"slots"`
	Cluster  string       `json:"cluster,omitempty"`
}

// Unmarshal decodes a table produced by Marshal and validates it (see
// Validate), so a corrupt log entry is refused instead of routing traffic to
// unknown nodes.
func Unmarshal(b []byte) (*Table, error) {
	var w wireTable
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("slot: decode table: %w", err)
	}
	if dec.More() {
		return nil, errors.New("slot: decode table: trailing data")
	}
	if len(w.Slots) != Count {
		return nil, fmt.Errorf("slot: table has %d slots, want %d", len(w.Slots), Count)
	}
	t := &Table{Epoch: w.Epoch, Replicas: w.Replicas, Nodes: w.Nodes, Cluster: w.Cluster}
	for s := range t.Slots {
		a := w.Slots[s]
		if len(a.Followers) == 0 {
			a.Followers = nil
		}
		t.Slots[s] = a
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return t, nil
}

// Validate checks the structural rules every table must satisfy: replicas
// >= 1; node IDs non-empty, unique and sorted; every leader and follower is
// a known node or (leader only) ""; followers are distinct, never include
// the slot's leader, and an unled slot has no followers; a Target is one of
// the slot's followers (so never its leader). It does not check balance or
// follower counts, which are Balance's job, not correctness requirements.
func (t *Table) Validate() error {
	if t == nil {
		return errors.New("slot: nil table")
	}
	if t.Replicas < 1 {
		return fmt.Errorf("slot: replicas %d < 1", t.Replicas)
	}
	known := make(map[string]bool, len(t.Nodes))
	for i, n := range t.Nodes {
		if n.ID == "" {
			return fmt.Errorf("slot: node %d has empty id", i)
		}
		if known[n.ID] {
			return fmt.Errorf("slot: duplicate node %q", n.ID)
		}
		if i > 0 && t.Nodes[i-1].ID > n.ID {
			return fmt.Errorf("slot: nodes not sorted by id at %q", n.ID)
		}
		known[n.ID] = true
	}
	for s, a := range t.Slots {
		if a.Leader != "" && !known[a.Leader] {
			return fmt.Errorf("slot: slot %d led by unknown node %q", s, a.Leader)
		}
		if a.Leader == "" && len(a.Followers) > 0 {
			return fmt.Errorf("slot: slot %d has followers but no leader", s)
		}
		for i, f := range a.Followers {
			if !known[f] {
				return fmt.Errorf("slot: slot %d followed by unknown node %q", s, f)
			}
			if f == a.Leader {
				return fmt.Errorf("slot: slot %d leader %q is also its follower", s, f)
			}
			if slices.Contains(a.Followers[:i], f) {
				return fmt.Errorf("slot: slot %d has duplicate follower %q", s, f)
			}
		}
		switch {
		case a.Target == "":
		case a.Target == a.Leader:
			return fmt.Errorf("slot: slot %d target %q is already its leader", s, a.Target)
		case !slices.Contains(a.Followers, a.Target):
			return fmt.Errorf("slot: slot %d target %q is not one of its followers", s, a.Target)
		}
	}
	return nil
}

// Equal reports whether two tables have the same content, epoch included.
// A nil and an empty follower list are equal because JSON cannot tell them
// apart.
func (t *Table) Equal(o *Table) bool {
	if t == nil || o == nil {
		return t == o
	}
	return t.Epoch == o.Epoch && t.sameContent(o)
}

// sameContent is Equal without the epoch; Balance uses it to decide whether
// a new epoch is needed.
func (t *Table) sameContent(o *Table) bool {
	if t.Replicas != o.Replicas || t.Cluster != o.Cluster || len(t.Nodes) != len(o.Nodes) {
		return false
	}
	for i := range t.Nodes {
		if t.Nodes[i] != o.Nodes[i] {
			return false
		}
	}
	for s := range t.Slots {
		a, b := &t.Slots[s], &o.Slots[s]
		if a.Leader != b.Leader || a.LeaderEpoch != b.LeaderEpoch || a.Target != b.Target ||
			!slices.Equal(a.Followers, b.Followers) {
			return false
		}
	}
	return true
}

// Moves lists the slots whose leader differs between a and b, ascending;
// these are the slots whose leadership was handed over between the two
// tables. A nil table counts as having no leaders. (To plan leader moves,
// see PlanMoves.)
func Moves(a, b *Table) []int {
	var out []int
	for s := 0; s < Count; s++ {
		if a.Leader(s) != b.Leader(s) {
			out = append(out, s)
		}
	}
	return out
}
