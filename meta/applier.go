package meta

import (
	"errors"
	"fmt"
	"maps"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Business refusals. The applier returns them inside result; they never
// stop the FSM, and every replica refuses the same entries.
var (
	errNotInitialized     = errors.New("meta state is not initialized yet")
	errAlreadyInitialized = errors.New("meta state is already initialized")
	errUnknownMember      = errors.New("not a member")
	errBadCommand         = errors.New("bad command")
)

// result is what every applied entry returns to the proposer through
// raft.ApplyFuture.Response.
type result struct {
	Changed bool   // the state changed
	Epoch   uint64 // the table epoch after the entry, 0 before init
	Err     error  // a refusal; the state is unchanged
}

// applyCommand is the stateless applier: the new state after c, and what
// to tell the proposer. It never edits s (published states are immutable)
// and depends only on its arguments: no clock, no randomness, no map order
// (slot.Balance gets the data nodes sorted), so every replica computes the
// same state from the same log.
func applyCommand(s *state, c *command) (*state, result) {
	var next *state
	var err error
	switch c.Type {
	case cmdInit:
		next, err = applyInit(s, c)
	case cmdJoin:
		next, err = applyJoin(s, c)
	case cmdRemove:
		next, err = applyRemove(s, c)
	case cmdRecordMeta:
		next, err = applyRecordMeta(s, c)
	default:
		err = fmt.Errorf("%w: type %s", errBadCommand, c.Type)
	}
	if err != nil {
		return s, result{Epoch: tableEpoch(s), Err: err}
	}
	if next == nil {
		return s, result{Epoch: tableEpoch(s)}
	}
	return next, result{Changed: true, Epoch: tableEpoch(next)}
}

func tableEpoch(s *state) uint64 {
	if s.Table == nil {
		return 0
	}
	return s.Table.Epoch
}

// applyInit fixes the replica count and starts the table at epoch 1, so
// that epoch 0 always means "no table yet" to data and session nodes and
// the first heartbeat reply carries a table.
func applyInit(s *state, c *command) (*state, error) {
	if s.Replicas != 0 {
		return nil, fmt.Errorf("%w (replicas %d)", errAlreadyInitialized, s.Replicas)
	}
	if c.Replicas < 1 {
		return nil, fmt.Errorf("%w: init with replicas %d", errBadCommand, c.Replicas)
	}
	next := *s
	next.Replicas = c.Replicas
	next.Table = slot.NewTable(c.Replicas)
	next.Table.Epoch = 1
	return &next, nil
}

// applyJoin adds a node or changes its address; joining again with the
// same address changes nothing (nil state).
func applyJoin(s *state, c *command) (*state, error) {
	if c.Kind != proto.KindData && c.Kind != proto.KindSession {
		return nil, fmt.Errorf("%w: join of kind %q", errBadCommand, c.Kind)
	}
	if c.ID == "" || c.Addr == "" {
		return nil, fmt.Errorf("%w: join needs an id and an address", errBadCommand)
	}
	if s.Replicas == 0 {
		return nil, errNotInitialized
	}
	if addr, ok := s.members(c.Kind)[c.ID]; ok && addr == c.Addr {
		return nil, nil
	}
	m := maps.Clone(s.members(c.Kind))
	m[c.ID] = c.Addr
	return withMembers(s, c.Kind, m)
}

// applyRemove removes a node; removing a non-member is refused with
// errUnknownMember so LEAVE can say whether anything happened.
func applyRemove(s *state, c *command) (*state, error) {
	if c.Kind != proto.KindData && c.Kind != proto.KindSession {
		return nil, fmt.Errorf("%w: remove of kind %q", errBadCommand, c.Kind)
	}
	if _, ok := s.members(c.Kind)[c.ID]; !ok {
		return nil, fmt.Errorf("%s node %q: %w", c.Kind, c.ID, errUnknownMember)
	}
	m := maps.Clone(s.members(c.Kind))
	delete(m, c.ID)
	return withMembers(s, c.Kind, m)
}

// withMembers returns s with the members of kind replaced by m; a change of
// data nodes recomputes the table with slot.Balance, which is
// deterministic and raises the epoch only if the table changed. If Balance
// refuses, the whole command is refused and nothing changes.
func withMembers(s *state, kind string, m map[string]string) (*state, error) {
	next := *s
	switch kind {
	case proto.KindSession:
		next.Sessions = m
		return &next, nil
	case proto.KindData:
		t, err := slot.Balance(s.Table, dataNodes(m), s.Replicas)
		if err != nil {
			return nil, fmt.Errorf("balance table from epoch %d: %w", tableEpoch(s), err)
		}
		next.Data = m
		next.Table = t
		return &next, nil
	}
	return nil, fmt.Errorf("%w: kind %q", errBadCommand, kind)
}

// applyRecordMeta records (or updates) a meta voter's RPC address.
func applyRecordMeta(s *state, c *command) (*state, error) {
	if c.ID == "" || c.Addr == "" {
		return nil, fmt.Errorf("%w: record-meta needs an id and an address", errBadCommand)
	}
	if s.Metas[c.ID] == c.Addr {
		return nil, nil
	}
	next := *s
	next.Metas = maps.Clone(s.Metas)
	next.Metas[c.ID] = c.Addr
	return &next, nil
}
