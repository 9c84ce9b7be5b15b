package proto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Inter-node commands served by meta nodes, in addition to CmdHeartbeat,
// CmdLeave, CmdTable and CmdNodes.
const (
	// CmdMetaJoin is a meta follower asking the meta leader to record the
	// RESP address it serves on, so every meta node can name the leader's
	// address in a NOTLEADER reply.
	CmdMetaJoin = "metajoin"
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
// as JSON (slot.Table.Marshal). On the wire it is a two-element array
// [:epoch, $json] whose bulk is null when Table is nil.
type HeartbeatReply struct {
	Epoch uint64
	Table []byte // nil: the sender is up to date
}

// AppendRESP appends the reply in RESP2 form to dst; the server writes it
// as raw bytes.
func (r *HeartbeatReply) AppendRESP(dst []byte) []byte {
	dst = append(dst, "*2\r\n:"...)
	dst = strconv.AppendUint(dst, r.Epoch, 10)
	dst = append(dst, "\r\n"...)
	if r.Table == nil {
		return append(dst, "$-1\r\n"...)
	}
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(r.Table)), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, r.Table...)
	return append(dst, "\r\n"...)
}

// ParseHeartbeatReply parses a reply as a RESP client library returns it:
// go-redis's Do gives []interface{}{int64, string or nil}; []byte bulks are
// accepted too.
func ParseHeartbeatReply(v any) (*HeartbeatReply, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("heartbeat reply: want a 2-element array, got %T", v)
	}
	if len(a) != 2 {
		return nil, fmt.Errorf("heartbeat reply: want 2 elements, got %d", len(a))
	}
	ep, ok := a[0].(int64)
	if !ok || ep < 0 {
		return nil, fmt.Errorf("heartbeat reply: bad epoch %v (%T)", a[0], a[0])
	}
	r := &HeartbeatReply{Epoch: uint64(ep)}
	switch t := a[1].(type) {
	case nil:
	case string:
		r.Table = []byte(t)
	case []byte:
		r.Table = t
	default:
		return nil, fmt.Errorf("heartbeat reply: bad table element %T", a[1])
	}
	return r, nil
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
