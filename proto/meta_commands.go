package proto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Inter-node and admin commands served by meta nodes, in addition to
// CmdHeartbeat, CmdLeave, CmdTable and CmdNodes. All but CmdMetaJoin are
// about slot moves; see meta_moves.go.
const (
	// CmdMetaJoin is a meta follower asking the meta leader to record the
	// RESP address it serves on, so every meta node can name the leader's
	// address in a NOTLEADER reply.
	CmdMetaJoin = "metajoin"
	// CmdHandoff is a data leader telling meta it handed a slot over to
	// the move's target; meta then switches the slot's leader.
	CmdHandoff = "handoff"
	// CmdMoveSlot starts moving one slot's leadership to a given node.
	CmdMoveSlot = "moveslot"
	// CmdRebalance plans (and unless dry-run, starts) leader moves that
	// even out the leaders.
	CmdRebalance = "rebalance"
	// CmdCancelMove cancels a slot's move in progress.
	CmdCancelMove = "cancelmove"
)

// MetaJoin records a meta voter's RPC (RESP) address in the membership.
type MetaJoin struct {
	NodeID  string // the voter's Raft server ID
	RPCAddr string // host:port it serves RESP on
}

// Args builds the command.
func (m *MetaJoin) Args() []any { return []any{CmdMetaJoin, m.NodeID, m.RPCAddr} }

// ParseMetaJoin parses METAJOIN nodeId rpcAddr.
func ParseMetaJoin(args [][]byte) (*MetaJoin, error) {
	if err := arity(args, CmdMetaJoin, 3); err != nil {
		return nil, err
	}
	m := &MetaJoin{NodeID: string(args[1]), RPCAddr: string(args[2])}
	if err := checkNodeID(m.NodeID); err != nil {
		return nil, err
	}
	if err := checkAddr(m.RPCAddr); err != nil {
		return nil, err
	}
	return m, nil
}

// checkAddr accepts a non-empty host:port without blanks; it does not
// resolve anything (proto does no I/O).
func checkAddr(a string) error {
	if a == "" || len(a) > 256 || strings.ContainsAny(a, " \t\r\n") || !strings.Contains(a, ":") {
		return Errorf(ErrInvalid, "bad address %q (want host:port)", a)
	}
	return nil
}

// HeartbeatReply is the meta leader's answer to a Heartbeat: the current
// table epoch and, only when the sender's epoch differs from it, the table
// as JSON (slot.Table.Marshal); the current session-list epoch and, only
// when the sender's MembersEpoch differs from it, the live session nodes as
// a JSON array of {"id","addr","kind"}.
//
// On the wire it is a four-element array [:epoch, $table, :membersEpoch,
// $sessions] whose bulks are null when absent. Meta nodes built before the
// session list sent only the first two elements; ParseHeartbeatReply
// accepts that form with MembersEpoch 0 and no Sessions.
type HeartbeatReply struct {
	Epoch        uint64
	Table        []byte // nil: the sender is up to date
	MembersEpoch uint64
	Sessions     []byte // nil: the sender's list is up to date
	// LeaseMs is meta's lease: a node not heard from for that long is
	// evicted. Nodes fence themselves by it (0 from an older meta).
	LeaseMs uint64
}

// AppendRESP appends the reply in RESP2 form to dst; the server writes it
// as raw bytes.
func (r *HeartbeatReply) AppendRESP(dst []byte) []byte {
	dst = append(dst, "*5\r\n"...)
	dst = appendRESPInt(dst, r.Epoch)
	dst = appendRESPBulk(dst, r.Table)
	dst = appendRESPInt(dst, r.MembersEpoch)
	dst = appendRESPBulk(dst, r.Sessions)
	return appendRESPInt(dst, r.LeaseMs)
}

func appendRESPInt(dst []byte, v uint64) []byte {
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, "\r\n"...)
}

// appendRESPBulk writes b as a bulk string, nil as the null bulk.
func appendRESPBulk(dst, b []byte) []byte {
	if b == nil {
		return append(dst, "$-1\r\n"...)
	}
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, b...)
	return append(dst, "\r\n"...)
}

// ParseHeartbeatReply parses a reply as a RESP client library returns it:
// go-redis's Do gives []interface{}{int64, string or nil, ...}; []byte
// bulks are accepted too. The five-element form and the older four- and
// two-element ones are accepted.
func ParseHeartbeatReply(v any) (*HeartbeatReply, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("heartbeat reply: want an array, got %T", v)
	}
	if len(a) != 2 && len(a) != 4 && len(a) != 5 {
		return nil, fmt.Errorf("heartbeat reply: want 2, 4 or 5 elements, got %d", len(a))
	}
	r := &HeartbeatReply{}
	var err error
	if r.Epoch, err = replyUint(a[0], "epoch"); err != nil {
		return nil, fmt.Errorf("heartbeat reply: %w", err)
	}
	if r.Table, err = replyBulk(a[1], "table"); err != nil {
		return nil, fmt.Errorf("heartbeat reply: %w", err)
	}
	if len(a) == 2 {
		return r, nil
	}
	if r.MembersEpoch, err = replyUint(a[2], "members epoch"); err != nil {
		return nil, fmt.Errorf("heartbeat reply: %w", err)
	}
	if r.Sessions, err = replyBulk(a[3], "sessions"); err != nil {
		return nil, fmt.Errorf("heartbeat reply: %w", err)
	}
	if len(a) == 5 {
		if r.LeaseMs, err = replyUint(a[4], "lease"); err != nil {
			return nil, fmt.Errorf("heartbeat reply: %w", err)
		}
	}
	return r, nil
}

// replyUint reads a non-negative RESP integer as go-redis returns it.
func replyUint(v any, what string) (uint64, error) {
	n, ok := v.(int64)
	if !ok || n < 0 {
		return 0, fmt.Errorf("bad %s %v (%T)", what, v, v)
	}
	return uint64(n), nil
}

// replyBulk reads a bulk string as go-redis returns it; a null bulk is nil,
// an empty one is empty but not nil.
func replyBulk(v any, what string) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(t), nil
	case []byte:
		return t, nil
	}
	return nil, fmt.Errorf("bad %s element %T", what, v)
}

// NotLeader builds the error a meta follower returns for a write-path
// request. leaderAddr is the leader's RPC address, "" if unknown; on the
// wire it reads "NOTLEADER <leaderAddr>".
func NotLeader(leaderAddr string) error {
	return &Error{Sentinel: ErrNotLeader, Detail: leaderAddr}
}

// LeaderAddr returns the leader address carried by a NOTLEADER error
// (NotLeader on the server, FromRESP on the client); ok is false when err
// is not a NOTLEADER error. The address is "" when the follower did not
// know the leader.
func LeaderAddr(err error) (addr string, ok bool) {
	if !errors.Is(err, ErrNotLeader) {
		return "", false
	}
	var pe *Error
	if errors.As(err, &pe) {
		return strings.TrimSpace(pe.Detail), true
	}
	return "", true
}
