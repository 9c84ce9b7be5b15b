package proto

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The commands behind the web console's search and lock list (see
// package console). Each is read-only and bounded: a prefix, a limit
// capped at MaxScanLimit, and a few publishers per dataInfoId, so one
// console request costs a node a bounded walk and a bounded reply.
const (
	// CmdDScan asks a data node (on its inter-node port) for the
	// dataInfoIds with a prefix in the slots it leads: DSCAN prefix
	// limit, answered by a ScanReply as JSON.
	CmdDScan = "dscan"
	// SubSubs is SLOTREG's sub-command on a session: SLOTREG SUBS prefix
	// limit, the subscriber counts per dataInfoId with that prefix held
	// by the session, answered by a SessionSubs as JSON.
	SubSubs = "subs"
	// ClusterUser is the user name under which a session lets in a
	// holder of the cluster secret (AUTH slotreg-cluster <secret>), so
	// meta's console can reach a session whose clients need a password.
	ClusterUser = "slotreg-cluster"
)

// Scan limits.
const (
	// MaxScanLimit caps the dataInfoIds one DSCAN or SLOTREG SUBS
	// returns.
	MaxScanLimit = 1000
	// ScanPublishers is how many publishers DSCAN returns per
	// dataInfoId (the first by registerId); Publishers counts them all.
	ScanPublishers = 20
	// ScanDataLen cuts each returned publisher's data to this many bytes
	// (at a UTF-8 boundary); DataTruncated says it was cut.
	ScanDataLen = 512
)

// Scan is DSCAN prefix limit or SLOTREG SUBS prefix limit: at most Limit
// dataInfoIds that start with Prefix ("" matches every one), in order.
type Scan struct {
	Prefix string
	Limit  int
}

// DScanArgs builds DSCAN prefix limit.
func (s *Scan) DScanArgs() []any { return []any{CmdDScan, s.Prefix, strconv.Itoa(s.Limit)} }

// SubsArgs builds SLOTREG SUBS prefix limit.
func (s *Scan) SubsArgs() []any { return []any{CmdSlotreg, SubSubs, s.Prefix, strconv.Itoa(s.Limit)} }

// ParseDScan parses DSCAN prefix limit.
func ParseDScan(args [][]byte) (*Scan, error) {
	if err := arity(args, CmdDScan, 3); err != nil {
		return nil, err
	}
	return parseScan(args[1], args[2])
}

// ParseSubs parses SLOTREG SUBS prefix limit.
func ParseSubs(args [][]byte) (*Scan, error) {
	if len(args) != 4 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments: SLOTREG SUBS prefix limit")
	}
	return parseScan(args[2], args[3])
}

// CheckScan validates a prefix and a limit: the prefix at most MaxKeyLen
// bytes, the limit 1..MaxScanLimit.
func CheckScan(prefix string, limit int) error {
	if len(prefix) > MaxKeyLen {
		return Errorf(ErrInvalid, "prefix is %d bytes, over the %d byte limit", len(prefix), MaxKeyLen)
	}
	if limit < 1 || limit > MaxScanLimit {
		return Errorf(ErrInvalid, "limit must be a whole number from 1 to %d, got %d", MaxScanLimit, limit)
	}
	return nil
}

func parseScan(prefix, limit []byte) (*Scan, error) {
	n, err := strconv.Atoi(string(limit))
	if err != nil {
		return nil, Errorf(ErrInvalid, "limit must be a whole number from 1 to %d, got %q", MaxScanLimit, truncateArg(limit))
	}
	s := &Scan{Prefix: string(prefix), Limit: n}
	return s, CheckScan(s.Prefix, s.Limit)
}

// ScanReply is a data node's answer to DSCAN: the dataInfoIds with the
// prefix in the slots it leads and has reconciled, sorted, at most the
// limit; Truncated says there were more. Slots it leads but does not
// serve yet (a new leader reconciling) are listed in Unready.
type ScanReply struct {
	Node      string     `json:"node"`
	Items     []ScanItem `json:"items"`
	Truncated bool       `json:"truncated,omitempty"`
	Unready   []int      `json:"unready,omitempty"`
}

// ScanItem is one dataInfoId: its slot, version, publisher count (local
// and remote datacenters') and the first ScanPublishers of them.
type ScanItem struct {
	DataInfoID string          `json:"dataInfoId"`
	Slot       int             `json:"slot"`
	Version    uint64          `json:"version"`
	Publishers int             `json:"publishers"`
	Sample     []ScanPublisher `json:"sample"`
}

// ScanPublisher is one publisher as the console shows it.
type ScanPublisher struct {
	RegisterID    string `json:"registerId"`
	Data          string `json:"data"`
	DataTruncated bool   `json:"dataTruncated,omitempty"`
	Datacenter    string `json:"datacenter,omitempty"`
	Zone          string `json:"zone,omitempty"`
}

// ClipData cuts data to ScanDataLen bytes at a UTF-8 boundary; cut says
// it did.
func ClipData(data string) (out string, cut bool) {
	if len(data) <= ScanDataLen {
		return data, false
	}
	i := ScanDataLen
	for i > 0 && !utf8.RuneStart(data[i]) {
		i--
	}
	return data[:i], true
}

// SessionSubs is a session's answer to SLOTREG SUBS: by dataInfoId with
// the prefix (at most the limit, the first in order), how many of its
// client connections subscribe to it, in any scope; and by path prefix
// watched (PSUBSCRIBE) that starts with the prefix, how many watch it.
type SessionSubs struct {
	Node      string         `json:"node"`
	Subs      map[string]int `json:"subs"`
	Watches   map[string]int `json:"watches,omitempty"`
	Truncated bool           `json:"truncated,omitempty"`
}

// ParseScanReply parses a DSCAN reply as a RESP client returns it.
func ParseScanReply(v any) (*ScanReply, error) {
	r := &ScanReply{}
	if err := parseJSONBulk(v, CmdDScan, r); err != nil {
		return nil, err
	}
	for _, it := range r.Items {
		if it.Slot < 0 || it.Slot >= metaSlotCount {
			return nil, fmt.Errorf("%s reply: slot %d is not in 0..%d", CmdDScan, it.Slot, metaSlotCount-1)
		}
	}
	return r, nil
}

// ParseSessionSubs parses a SLOTREG SUBS reply as a RESP client returns
// it.
func ParseSessionSubs(v any) (*SessionSubs, error) {
	r := &SessionSubs{}
	if err := parseJSONBulk(v, CmdSlotreg+" "+SubSubs, r); err != nil {
		return nil, err
	}
	for id, n := range r.Subs {
		if n < 0 {
			return nil, fmt.Errorf("%s reply: %q has %d subscribers", CmdSlotreg+" "+SubSubs, id, n)
		}
	}
	return r, nil
}

// LockList is MLOCKLIST [limit]: every held lock, by name, at most Limit
// (default and cap MaxScanLimit).
type LockList struct{ Limit int }

// Args builds the command.
func (l *LockList) Args() []any {
	if l.Limit == 0 {
		return []any{CmdMLockList}
	}
	return []any{CmdMLockList, strconv.Itoa(l.Limit)}
}

// ParseLockList parses MLOCKLIST [limit].
func ParseLockList(args [][]byte) (*LockList, error) {
	switch len(args) {
	case 1:
		return &LockList{Limit: MaxScanLimit}, nil
	case 2:
		n, err := strconv.Atoi(string(args[1]))
		if err != nil || n < 1 || n > MaxScanLimit {
			return nil, Errorf(ErrInvalid, "limit must be a whole number from 1 to %d, got %q", MaxScanLimit, truncateArg(args[1]))
		}
		return &LockList{Limit: n}, nil
	}
	return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdMLockList)
}

// HeldLock is one held lock in an MLOCKLIST reply: its holder (owner),
// fencing token, time left, the session and client connection it is
// bound to ("" if none), and how many owners wait for it.
type HeldLock struct {
	Name    string `json:"name"`
	Owner   string `json:"owner"`
	Token   uint64 `json:"token"`
	TTLMs   int64  `json:"ttlMs"`
	Session string `json:"session,omitempty"`
	Conn    string `json:"conn,omitempty"`
	Waiters int    `json:"waiters"`
}

// LockListReply is the meta leader's answer to MLOCKLIST, as JSON:
// Locks sorted by name; Truncated says there were more than the limit.
type LockListReply struct {
	Locks     []HeldLock `json:"locks"`
	Truncated bool       `json:"truncated,omitempty"`
}

// ParseLockListReply parses an MLOCKLIST reply as a RESP client returns
// it.
func ParseLockListReply(v any) (*LockListReply, error) {
	r := &LockListReply{}
	if err := parseJSONBulk(v, CmdMLockList, r); err != nil {
		return nil, err
	}
	return r, nil
}
