package meta

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// PERSISTENT paths. Their durable copy is here, in the log: the data
// nodes keep publishers in memory only, so a path that must outlive
// every connection and a restart of the whole cluster is written to meta
// first. Each slot's leader holds the slot's PERSISTENT paths as
// publishers of proto.PersistentOwner and syncs them from here (MPSLOTS)
// when it comes to lead the slot, when a session tells it a path changed
// (DPSYNC), and every so often. One counter, PersistRev, versions every
// change, so "the slot as of revision R" is one question.

// persistPath is a PERSISTENT path's value and the revision that set it.
// Published ones are immutable.
type persistPath struct {
	Value string `json:"value"`
	Rev   uint64 `json:"rev"`
}

// persistSlotOf is the slot of a path: its parent dataInfoId's.
func persistSlotOf(path string) (int, error) {
	parent, _, err := proto.SplitPath(path)
	if err != nil {
		return 0, err
	}
	return slot.Of(parent), nil
}

// withPersist gives next its own map for slot s and returns it.
func withPersist(next *state, s int) map[string]*persistPath {
	m := maps.Clone(next.Persist[s])
	if m == nil {
		m = map[string]*persistPath{}
	}
	next.Persist[s] = m
	return m
}

func persistCount(s *state) int {
	n := 0
	for _, m := range s.Persist {
		n += len(m)
	}
	return n
}

// applyPersistPut sets the PERSISTENT path c.Key to c.Value at revision
// PersistRev+1.
func applyPersistPut(s *state, c *command) (*state, uint64, error) {
	sl, err := persistSlotOf(c.Key)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	if len(c.Value) > proto.MaxDataLen {
		return nil, 0, fmt.Errorf("%w: value of %s is %d bytes, over %d", errBadCommand, c.Key, len(c.Value), proto.MaxDataLen)
	}
	if _, had := s.Persist[sl][c.Key]; !had && persistCount(s) >= proto.MaxPersistent {
		return nil, 0, fmt.Errorf("%w: %d PERSISTENT paths, the most a cluster holds (DEL some first)", errBadCommand, proto.MaxPersistent)
	}
	next := *s
	next.PersistRev++
	withPersist(&next, sl)[c.Key] = &persistPath{Value: c.Value, Rev: next.PersistRev}
	return &next, next.PersistRev, nil
}

// applyPersistDel removes the PERSISTENT path c.Key at revision
// PersistRev+1; none: no change.
func applyPersistDel(s *state, c *command) (*state, uint64, error) {
	sl, err := persistSlotOf(c.Key)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errBadCommand, err)
	}
	if _, had := s.Persist[sl][c.Key]; !had {
		return nil, 0, nil
	}
	next := *s
	next.PersistRev++
	delete(withPersist(&next, sl), c.Key)
	return &next, next.PersistRev, nil
}

// handleMPPut stores a PERSISTENT path; replies its revision.
func (n *Node) handleMPPut(conn redcon.Conn, p *proto.PathArgs) error {
	res, err := n.commit(&command{Type: cmdPersistPut, Key: p.Path, Value: p.Value}, "PERSISTENT put refused")
	if err != nil {
		return err
	}
	conn.WriteUint64(res.Version)
	return nil
}

// handleMPDel removes a PERSISTENT path; replies the revision of the
// removal, 0 (without a log entry) if there was none.
func (n *Node) handleMPDel(conn redcon.Conn, p *proto.PathArgs) error {
	if sl, err := persistSlotOf(p.Path); err == nil {
		if _, had := n.store.state().Persist[sl][p.Path]; !had {
			conn.WriteUint64(0)
			return nil
		}
	}
	res, err := n.commit(&command{Type: cmdPersistDel, Key: p.Path}, "PERSISTENT delete refused")
	if err != nil {
		return err
	}
	conn.WriteUint64(res.Version)
	return nil
}

// handleMPSlots lists the PERSISTENT paths of the slots asked for, as
// of the current revision. Served by the leader, whose state holds
// every acknowledged change.
func (n *Node) handleMPSlots(conn redcon.Conn, m *proto.MPSlots) error {
	st := n.store.state()
	out := proto.PersistSlots{Rev: st.PersistRev, Slots: make(map[int][]proto.PersistPath, len(m.Slots))}
	for _, s := range m.Slots {
		paths := st.Persist[s]
		list := make([]proto.PersistPath, 0, len(paths))
		for _, p := range slices.Sorted(maps.Keys(paths)) {
			list = append(list, proto.PersistPath{Path: p, Value: paths[p].Value, Rev: paths[p].Rev})
		}
		out.Slots[s] = list
	}
	b, err := json.Marshal(&out)
	if err != nil {
		return n.unavailable(err.Error())
	}
	conn.WriteBulk(b)
	return nil
}

// restorePersist checks and installs the PERSISTENT paths of a snapshot.
func restorePersist(s *state, sj *stateJSON) error {
	s.PersistRev = sj.PersistRev
	for path, p := range sj.Persist {
		sl, err := persistSlotOf(path)
		if err != nil || p == nil || p.Rev == 0 || p.Rev > sj.PersistRev {
			return fmt.Errorf("PERSISTENT path %q: bad path or revision (rev %d)", path, sj.PersistRev)
		}
		if s.Persist[sl] == nil {
			s.Persist[sl] = map[string]*persistPath{}
		}
		s.Persist[sl][path] = p
	}
	return nil
}

// persistJSON flattens the PERSISTENT paths for a snapshot.
func persistJSON(s *state) map[string]*persistPath {
	var out map[string]*persistPath
	for _, m := range s.Persist {
		for p, v := range m {
			if out == nil {
				out = map[string]*persistPath{}
			}
			out[p] = v
		}
	}
	return out
}
