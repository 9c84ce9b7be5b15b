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
	// errMoveRefused: a move cannot start (the target already leads the
	// slot, the slot has no leader, or slot refused it).
	errMoveRefused = errors.New("move refused")
	// errMoving: the slot is already moving.
	errMoving = errors.New("slot is already moving")
	// errNotMoving: there is no move to finish or cancel.
	errNotMoving = errors.New("slot is not moving")
	// errStaleHandoff: a handoff that does not match the table's leader,
	// target or leader epoch (the move was cancelled, or the leader
	// changed meanwhile).
	errStaleHandoff = errors.New("handoff does not match the table")
	// errLastActive: draining this node would leave no data node that is
	// not draining, so its slots would have nowhere to go.
	errLastActive = errors.New("it is the last data node that is not draining")
)

// result is what every applied entry returns to the proposer through
// raft.ApplyFuture.Response.
type result struct {
	Changed bool   // the state changed
	Epoch   uint64 // the table epoch after the entry, 0 before init
	Err     error  // a refusal; the state is unchanged
	// MoveErrs is, for start-moves, one entry per requested move: nil if
	// it started, else why not.
	MoveErrs []error
	// Version is, for config-set and config-del, the key's version after
	// the entry (0: a delete of a key that did not exist).
	Version uint64
	// Lock is, for lock-acquire and lock-release, the outcome.
	Lock *lockResult
}

// applyCommand is the stateless applier: the new state after c, and what
// to tell the proposer. It never edits s (published states are immutable)
// and depends only on its arguments: no clock, no randomness, no map order
// (slot.Balance gets the data nodes sorted), so every replica computes the
// same state from the same log.
func applyCommand(s *state, c *command) (*state, result) {
	var next *state
	var err error
	var moveErrs []error
	var version uint64
	var lock *lockResult
	switch c.Type {
	case cmdInit:
		next, err = applyInit(s, c)
	case cmdJoin:
		next, err = applyJoin(s, c)
	case cmdRemove:
		next, err = applyRemove(s, c)
	case cmdRecordMeta:
		next, err = applyRecordMeta(s, c)
	case cmdStartMoves:
		next, moveErrs, err = applyStartMoves(s, c)
	case cmdFinishMove:
		next, err = applyFinishMove(s, c)
	case cmdCancelMove:
		next, err = applyCancelMove(s, c)
	case cmdDrain:
		next, err = applyDrain(s, c)
	case cmdUndrain:
		next, err = applyUndrain(s, c)
	case cmdConfigSet:
		next, version, err = applyConfigSet(s, c)
	case cmdConfigDel:
		next, version, err = applyConfigDel(s, c)
	case cmdLockAcquire:
		next, lock, err = applyLockAcquire(s, c)
	case cmdLockRelease:
		next, lock, err = applyLockRelease(s, c)
	case cmdLockExpire:
		next, err = applyLockExpire(s, c)
	case cmdLockCancel:
		next, lock, err = applyLockCancel(s, c)
	case cmdPersistPut:
		next, version, err = applyPersistPut(s, c)
	case cmdPersistDel:
		next, version, err = applyPersistDel(s, c)
	case cmdEvenFollowers:
		next, err = applyEvenFollowers(s)
	default:
		err = fmt.Errorf("%w: type %s", errBadCommand, c.Type)
	}
	if err != nil {
		return s, result{Epoch: tableEpoch(s), Err: err, MoveErrs: moveErrs}
	}
	if next == nil {
		return s, result{Epoch: tableEpoch(s), MoveErrs: moveErrs, Version: version, Lock: lock}
	}
	return next, result{Changed: true, Epoch: tableEpoch(next), MoveErrs: moveErrs, Version: version, Lock: lock}
}

func tableEpoch(s *state) uint64 {
	if s.Table == nil {
		return 0
	}
	return s.Table.Epoch
}

// applyInit fixes the replica count and starts the table at epoch 1, so
// that epoch 0 always means "no table yet" to data and session nodes and
// the first heartbeat reply carries a table. The command's ID names the
// cluster (slot.Table.Cluster).
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
	next.Table.Epoch, next.Table.Cluster = 1, c.ID
	next.MembersEpoch = 1
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
	return withMembers(s, c.Kind, m, nil)
}

// applyRemove removes a node; removing a non-member is refused with
// errUnknownMember so LEAVE can say whether anything happened. For a data
// node, c.Prefer names the follower to promote per slot it led; entries
// that no longer fit the state are dropped (see usablePrefer).
func applyRemove(s *state, c *command) (*state, error) {
	if c.Kind == proto.KindMeta {
		// A meta voter leaving the group: only its address record.
		if _, ok := s.Metas[c.ID]; !ok {
			return nil, fmt.Errorf("meta node %q: %w", c.ID, errUnknownMember)
		}
		next := *s
		next.Metas = maps.Clone(s.Metas)
		delete(next.Metas, c.ID)
		return &next, nil
	}
	if c.Kind != proto.KindData && c.Kind != proto.KindSession {
		return nil, fmt.Errorf("%w: remove of kind %q", errBadCommand, c.Kind)
	}
	if _, ok := s.members(c.Kind)[c.ID]; !ok {
		return nil, fmt.Errorf("%s node %q: %w", c.Kind, c.ID, errUnknownMember)
	}
	m := maps.Clone(s.members(c.Kind))
	delete(m, c.ID)
	if c.Kind == proto.KindSession {
		next, err := withMembers(s, c.Kind, m, nil)
		if err == nil {
			withoutSessionLocks(next, c.ID, lockNow(s, c))
		}
		return next, err
	}
	next, err := withMembers(s, c.Kind, m, usablePrefer(s.Table, m, c.ID, c.Prefer))
	if err != nil || !s.Draining[c.ID] {
		return next, err
	}
	next.Draining = maps.Clone(s.Draining)
	delete(next.Draining, c.ID)
	return next, nil
}

// usablePrefer keeps the entries of prefer that still make sense when
// departed leaves: the slot is led by departed, and the preferred node is
// a remaining data node following the slot. The leader computed prefer
// from the state it saw when proposing; an entry applied in between (a
// move, another removal) may have made some entries moot, and dropping
// them (the balancer then promotes the first present follower) is better
// than refusing the removal of a node that is gone.
func usablePrefer(t *slot.Table, remaining map[string]string, departed string, prefer map[int]string) map[int]string {
	var out map[int]string
	for s, id := range prefer {
		if _, ok := remaining[id]; !ok || !t.Leads(departed, s) || !t.Follows(id, s) {
			continue
		}
		if out == nil {
			out = make(map[int]string, len(prefer))
		}
		out[s] = id
	}
	return out
}

// withMembers returns s with the members of kind replaced by m. A change of
// session nodes raises MembersEpoch. A change of data nodes recomputes the
// table with slot.BalanceWith (prefer: the follower to promote per slot
// whose leader left), which is deterministic and raises the epoch only if
// the table changed. If the balancer refuses, the whole command is refused
// and nothing changes.
func withMembers(s *state, kind string, m map[string]string, prefer map[int]string) (*state, error) {
	next := *s
	switch kind {
	case proto.KindSession:
		next.Sessions = m
		next.MembersEpoch++
		return &next, nil
	case proto.KindData:
		t, err := slot.BalanceWith(s.Table, dataNodes(m), s.Replicas, prefer)
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

// applyStartMoves starts the moves of c in order, each against the table
// the previous ones left, each refused on its own (moveErrs, aligned with
// c.Moves). The table epoch rises once for the whole entry, however many
// moves started; if none did, nothing changes.
func applyStartMoves(s *state, c *command) (*state, []error, error) {
	if s.Table == nil {
		return nil, nil, errNotInitialized
	}
	if len(c.Moves) == 0 {
		return nil, nil, fmt.Errorf("%w: start-moves without moves", errBadCommand)
	}
	t := s.Table
	errs := make([]error, len(c.Moves))
	started := false
	for i, m := range c.Moves {
		nt, err := startMove(s, t, m)
		if err != nil {
			errs[i] = err
			continue
		}
		t, started = nt, true
	}
	if !started {
		return nil, errs, nil
	}
	// t is a table of our own making, not yet published.
	t.Epoch = s.Table.Epoch + 1
	next := *s
	next.Table = t
	return &next, errs, nil
}

// startMove checks one move against the state, with reasons an operator
// can act on, before slot.StartMove applies it to t.
func startMove(s *state, t *slot.Table, m moveSpec) (*slot.Table, error) {
	if m.Slot < 0 || m.Slot >= slot.Count {
		return nil, fmt.Errorf("%w: slot %d is not in 0..%d", errBadCommand, m.Slot, slot.Count-1)
	}
	if _, ok := s.Data[m.To]; !ok {
		return nil, fmt.Errorf("slot %d: data node %q: %w", m.Slot, m.To, errUnknownMember)
	}
	if s.Draining[m.To] {
		return nil, fmt.Errorf("slot %d: data node %s is draining: %w", m.Slot, m.To, errMoveRefused)
	}
	a := &t.Slots[m.Slot]
	switch {
	case a.Leader == "":
		return nil, fmt.Errorf("slot %d has no leader: %w", m.Slot, errMoveRefused)
	case a.Leader == m.To:
		return nil, fmt.Errorf("slot %d is led by %s already: %w", m.Slot, m.To, errMoveRefused)
	case a.Target != "":
		return nil, fmt.Errorf("slot %d is moving to %s: %w", m.Slot, a.Target, errMoving)
	}
	nt, err := slot.StartMove(t, m.Slot, m.To)
	if err != nil {
		return nil, fmt.Errorf("slot %d to %s: %w: %w", m.Slot, m.To, errMoveRefused, err)
	}
	return nt, nil
}

// applyFinishMove switches a moving slot's leader to its target. It is
// refused unless the table still has Leader == From, Target == To and
// LeaderEpoch == c.LeaderEpoch, so a late or duplicated handoff can never
// undo a cancel or a failover. A handoff that was already applied (Leader
// == To at LeaderEpoch+1, nothing moving) succeeds without a change, so a
// data leader may retry one whose reply it lost.
func applyFinishMove(s *state, c *command) (*state, error) {
	if s.Table == nil {
		return nil, errNotInitialized
	}
	if c.Slot < 0 || c.Slot >= slot.Count || c.From == "" || c.To == "" {
		return nil, fmt.Errorf("%w: finish-move of slot %d from %q to %q", errBadCommand, c.Slot, c.From, c.To)
	}
	a := s.Table.Slots[c.Slot]
	if a.Leader == c.To && a.LeaderEpoch == c.LeaderEpoch+1 && a.Target == "" {
		return nil, nil
	}
	if a.Leader != c.From || a.Target != c.To || a.LeaderEpoch != c.LeaderEpoch {
		return nil, fmt.Errorf("slot %d: handoff %s -> %s at leader epoch %d, but the table has leader %q, target %q, leader epoch %d: %w",
			c.Slot, c.From, c.To, c.LeaderEpoch, a.Leader, a.Target, a.LeaderEpoch, errStaleHandoff)
	}
	t, err := slot.FinishMove(s.Table, c.Slot, c.To)
	if err != nil {
		return nil, fmt.Errorf("slot %d: finish move to %s: %w", c.Slot, c.To, err)
	}
	next := *s
	next.Table = t
	return &next, nil
}

// applyCancelMove clears a slot's move target; the leader stays.
func applyCancelMove(s *state, c *command) (*state, error) {
	if s.Table == nil {
		return nil, errNotInitialized
	}
	if c.Slot < 0 || c.Slot >= slot.Count {
		return nil, fmt.Errorf("%w: slot %d is not in 0..%d", errBadCommand, c.Slot, slot.Count-1)
	}
	if s.Table.Slots[c.Slot].Target == "" {
		return nil, fmt.Errorf("slot %d: %w", c.Slot, errNotMoving)
	}
	t, err := slot.CancelMove(s.Table, c.Slot)
	if err != nil {
		return nil, fmt.Errorf("slot %d: cancel move: %w", c.Slot, err)
	}
	next := *s
	next.Table = t
	return &next, nil
}

// applyDrain marks a data node as draining. Moves in progress to it are
// cancelled in the same entry (one new table epoch for all of them), so
// from this entry on no slot can become its. Draining a node that drains
// already changes nothing; draining the last data node that is not
// draining is refused, because its slots would have nowhere to go.
func applyDrain(s *state, c *command) (*state, error) {
	if s.Table == nil {
		return nil, errNotInitialized
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: drain needs a node id", errBadCommand)
	}
	if _, ok := s.Data[c.ID]; !ok {
		return nil, fmt.Errorf("data node %q: %w", c.ID, errUnknownMember)
	}
	if s.Draining[c.ID] {
		return nil, nil
	}
	active := false
	for id := range s.Data { // an existence test: the order is irrelevant
		if id != c.ID && !s.Draining[id] {
			active = true
			break
		}
	}
	if !active {
		return nil, fmt.Errorf("data node %s: %w", c.ID, errLastActive)
	}
	next := *s
	next.Draining = maps.Clone(s.Draining)
	next.Draining[c.ID] = true
	t := s.Table
	for sl := range slot.Count {
		if t.Slots[sl].Target != c.ID {
			continue
		}
		nt, err := slot.CancelMove(t, sl)
		if err != nil {
			return nil, fmt.Errorf("data node %s: cancel the move of slot %d to it: %w", c.ID, sl, err)
		}
		t = nt
	}
	if t != s.Table {
		// t is a table of our own making, not yet published.
		t.Epoch = s.Table.Epoch + 1
		next.Table = t
	}
	return &next, nil
}

// applyEvenFollowers spreads the follower places evenly, if no slot is
// moving and no node draining (a move or a drain would undo it, and a
// follower place given to a draining node would have to move again);
// otherwise, or when they are even already, nothing changes.
func applyEvenFollowers(s *state) (*state, error) {
	if s.Table == nil || len(s.Table.Moving()) > 0 || len(s.Draining) > 0 {
		return s, nil
	}
	t, err := slot.EvenFollowers(s.Table)
	if err != nil {
		return nil, err
	}
	if t.Epoch == s.Table.Epoch {
		return s, nil
	}
	next := *s
	next.Table = t
	return &next, nil
}

// applyUndrain ends a data node's draining; undraining a node that is not
// draining changes nothing.
func applyUndrain(s *state, c *command) (*state, error) {
	if s.Table == nil {
		return nil, errNotInitialized
	}
	if _, ok := s.Data[c.ID]; !ok {
		return nil, fmt.Errorf("data node %q: %w", c.ID, errUnknownMember)
	}
	if !s.Draining[c.ID] {
		return nil, nil
	}
	next := *s
	next.Draining = maps.Clone(s.Draining)
	delete(next.Draining, c.ID)
	return &next, nil
}
