package meta

import (
	"encoding/json"
	"errors"
	"fmt"
)

// cmdType is the first byte of every Raft log entry meta writes. 0 is
// never written, so a zeroed or truncated entry cannot pass for a command.
type cmdType byte

const (
	cmdUnknown cmdType = 0
	// cmdInit sets the replica count and the initial (empty) table. The
	// first leader proposes it once, so every voter computes tables for
	// the same replica count whatever its own Config says.
	cmdInit cmdType = 1
	// cmdJoin adds a data or session node, or changes its address.
	cmdJoin cmdType = 2
	// cmdRemove removes a data or session node (it left, or its lease
	// lapsed on the leader).
	cmdRemove cmdType = 3
	// cmdRecordMeta records a meta voter's RPC address.
	cmdRecordMeta cmdType = 4
	// cmdStartMoves marks a list of slots as moving to new leaders (sets
	// each slot's Target), each move accepted or refused on its own.
	cmdStartMoves cmdType = 5
	// cmdFinishMove switches a moving slot's leader to its target once
	// the old leader reported the handoff.
	cmdFinishMove cmdType = 6
	// cmdCancelMove clears a slot's Target (operator or move timeout).
	cmdCancelMove cmdType = 7
	// cmdDrain marks a data node as draining: the leader moves every
	// slot it leads elsewhere and no move may target it.
	cmdDrain cmdType = 8
	// cmdUndrain ends a data node's draining.
	cmdUndrain cmdType = 9
	// cmdConfigSet writes a config key (configkv.go).
	cmdConfigSet cmdType = 10
	// cmdConfigDel deletes a config key, leaving a tombstone.
	cmdConfigDel cmdType = 11
	// cmdLockAcquire takes or renews a global lock at the leader's Now
	// (locks.go).
	cmdLockAcquire cmdType = 12
	// cmdLockRelease releases a lock its owner holds.
	cmdLockRelease cmdType = 13
	// cmdLockExpire drops every lock whose expiry is at or before the
	// leader's Now.
	cmdLockExpire cmdType = 14
	// cmdEvenFollowers spreads the follower places evenly again
	// (slot.EvenFollowers) when no slot is moving.
	cmdEvenFollowers cmdType = 15
	// cmdLockCancel takes a waiter out of a lock's queue (its WAIT
	// passed).
	cmdLockCancel cmdType = 16
	// cmdPersistPut and cmdPersistDel set and remove a PERSISTENT path
	// (Key, Value).
	cmdPersistPut cmdType = 17
	cmdPersistDel cmdType = 18
)

func (t cmdType) String() string {
	switch t {
	case cmdInit:
		return "init"
	case cmdJoin:
		return "join"
	case cmdRemove:
		return "remove"
	case cmdRecordMeta:
		return "record-meta"
	case cmdStartMoves:
		return "start-moves"
	case cmdFinishMove:
		return "finish-move"
	case cmdCancelMove:
		return "cancel-move"
	case cmdDrain:
		return "drain"
	case cmdUndrain:
		return "undrain"
	case cmdEvenFollowers:
		return "even-followers"
	case cmdConfigSet:
		return "config-set"
	case cmdConfigDel:
		return "config-del"
	case cmdLockAcquire:
		return "lock-acquire"
	case cmdLockRelease:
		return "lock-release"
	case cmdLockExpire:
		return "lock-expire"
	case cmdLockCancel:
		return "lock-cancel"
	case cmdPersistPut:
		return "persist-put"
	case cmdPersistDel:
		return "persist-del"
	}
	return fmt.Sprintf("unknown(%d)", byte(t))
}

// Reasons a node is removed or a move cancelled; informational, they only
// reach the logs.
const (
	reasonLeave   = "leave"
	reasonLease   = "lease"
	reasonRefused = "refused" // a suspected node refused meta's dial too (suspect.go)
	reasonAdmin   = "admin"
	reasonTimeout = "timeout"
)

// command is every log entry's payload. Each type uses a subset of the
// fields: init Replicas; join Kind, ID, Addr; remove Kind, ID, Reason,
// Prefer; record-meta ID, Addr; start-moves Moves; finish-move Slot, From,
// To, LeaderEpoch; cancel-move Slot, Reason; drain and undrain ID;
// config-set Key, Value; config-del Key; lock-acquire Name, Owner, TTLMs,
// Now, Session, Conn; lock-release Name, Owner, Conn, Now; lock-expire
// Now.
type command struct {
	Type     cmdType `json:"-"`
	Kind     string  `json:"kind,omitempty"`
	ID       string  `json:"id,omitempty"`
	Addr     string  `json:"addr,omitempty"`
	Replicas int     `json:"replicas,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	// Prefer is, for the removal of a data node, the follower to promote
	// for each slot it led: the one that reported the highest op-log
	// sequence to the leader. It is data in the log, chosen by the
	// proposer, so the applier stays deterministic.
	Prefer map[int]string `json:"prefer,omitempty"`
	Moves  []moveSpec     `json:"moves,omitempty"`
	Slot   int            `json:"slot,omitempty"`
	From   string         `json:"from,omitempty"`
	To     string         `json:"to,omitempty"`
	// LeaderEpoch is the slot's leader epoch under From, as the data
	// leader handing over knew it.
	LeaderEpoch uint64 `json:"leaderEpoch,omitempty"`
	// Key and Value are a config key and its new value.
	Key   string `json:"key,omitempty"`
	Value string `json:"value,omitempty"`
	// Name, Owner, TTLMs: a lock, who takes or releases it, for how long.
	Name  string `json:"name,omitempty"`
	Owner string `json:"owner,omitempty"`
	TTLMs int64  `json:"ttlMs,omitempty"`
	// Now is the proposing leader's wall clock in Unix milliseconds: the
	// only way time enters the FSM, so every replica expires the same
	// locks at the same entry.
	Now int64 `json:"now,omitempty"`
	// Session and Conn bind a lock to a session node and one of its
	// client connections.
	Session string `json:"session,omitempty"`
	Conn    string `json:"conn,omitempty"`
	// WaitMs, for a lock-acquire, queues the owner behind the holder
	// for that long rather than refusing it.
	WaitMs int64 `json:"waitMs,omitempty"`
}

// moveSpec is one move of a start-moves command: Slot's leadership is to
// go to the data node To.
type moveSpec struct {
	Slot int    `json:"slot"`
	To   string `json:"to"`
}

// encodeCommand builds a log entry: the type byte, then the JSON payload.
func encodeCommand(c *command) ([]byte, error) {
	if !c.Type.known() {
		return nil, fmt.Errorf("encode command: unknown type %d", byte(c.Type))
	}
	p, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", c.Type, err)
	}
	return append([]byte{byte(c.Type)}, p...), nil
}

// decodeCommand is encodeCommand's inverse. It checks only the envelope
// and the JSON; whether the command makes sense against the state is the
// applier's business, answered with an error value, not a decode error.
func decodeCommand(b []byte) (*command, error) {
	if len(b) == 0 {
		return nil, errors.New("decode command: empty entry")
	}
	t := cmdType(b[0])
	if !t.known() {
		return nil, fmt.Errorf("decode command: unknown type %d", b[0])
	}
	c := &command{}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("decode %s command: %w", t, err)
	}
	c.Type = t
	return c, nil
}

func (t cmdType) known() bool { return t >= cmdInit && t <= cmdPersistDel }
