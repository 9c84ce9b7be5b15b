package proto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Each maps to exactly one RESP error prefix (see
// prefixes), so an error that crosses the network comes back as the same
// sentinel and errors.Is works on both sides.
var (
	// ErrInvalid is bad input from a client or peer: wrong arity, a bad
	// number, an oversize key or value, an unknown command.
	ErrInvalid = errors.New("invalid request")
	// ErrNotOwner is a data node refusing a slot it does not lead.
	ErrNotOwner = errors.New("not the slot owner")
	// ErrNotLeader is a meta follower refusing a write-path request.
	ErrNotLeader = errors.New("not the meta leader")
	// ErrStaleEpoch says the sender's table is older than one the
	// receiver needs; the sender should refresh its table and retry.
	ErrStaleEpoch = errors.New("stale table epoch")
	// ErrUnavailable says the cluster cannot serve the request now (no
	// data node leads the slot, no meta leader, the node is stopping).
	ErrUnavailable = errors.New("unavailable")
	// ErrTimeout says a forwarded request got no answer in time.
	ErrTimeout = errors.New("timeout")
)

var prefixes = []struct {
	prefix string
	err    error
}{
	{"ERR", ErrInvalid},
	{"NOTOWNER", ErrNotOwner},
	{"NOTLEADER", ErrNotLeader},
	{"STALEEPOCH", ErrStaleEpoch},
	{"UNAVAILABLE", ErrUnavailable},
	{"TIMEOUT", ErrTimeout},
	{"NOAUTH", ErrNoAuth},
	{"WRONGPASS", ErrWrongPass},
	{"DROPPED", ErrDropped},
}

// Error is a sentinel with the detail a reader of the reply needs.
type Error struct {
	Sentinel error
	Detail   string
}

func (e *Error) Error() string { return Prefix(e.Sentinel) + " " + e.Detail }

// Unwrap lets errors.Is find the sentinel.
func (e *Error) Unwrap() error { return e.Sentinel }

// Errorf builds an Error for a sentinel with a formatted detail.
func Errorf(sentinel error, format string, args ...any) error {
	return &Error{Sentinel: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// Prefix returns the RESP error prefix of a sentinel, "ERR" for anything
// that is not one of ours.
func Prefix(err error) string {
	for _, p := range prefixes {
		if errors.Is(err, p.err) {
			return p.prefix
		}
	}
	return "ERR"
}

// ToRESP renders any error as the text of a RESP error reply (without the
// leading '-'): a known sentinel keeps its prefix, anything else is "ERR".
func ToRESP(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Error()
	}
	var no *NotOwnerError
	if errors.As(err, &no) {
		return no.Error()
	}
	for _, p := range prefixes {
		if errors.Is(err, p.err) {
			return p.prefix + " " + err.Error()
		}
	}
	return "ERR " + err.Error()
}

// FromRESP turns the text of a RESP error reply back into an error that
// errors.Is matches against the sentinel of its prefix. NOTOWNER replies
// become *NotOwnerError so the caller learns the owner.
func FromRESP(msg string) error {
	msg = strings.TrimPrefix(msg, "-")
	prefix, detail, _ := strings.Cut(msg, " ")
	if prefix == "NOTOWNER" {
		if no, err := parseNotOwner(detail); err == nil {
			return no
		}
	}
	for _, p := range prefixes {
		if p.prefix == prefix {
			return &Error{Sentinel: p.err, Detail: detail}
		}
	}
	return &Error{Sentinel: ErrInvalid, Detail: msg}
}

// NotOwnerError names the node that leads a slot, as the refusing node
// knows it, so the sender can route there after refreshing its table.
type NotOwnerError struct {
	Slot  int
	Owner string // node ID, "" if unknown
	Addr  string // the owner's address, "" if unknown
	Epoch uint64 // the refusing node's table epoch
}

func (e *NotOwnerError) Error() string {
	owner, addr := e.Owner, e.Addr
	if owner == "" {
		owner = "-"
	}
	if addr == "" {
		addr = "-"
	}
	return fmt.Sprintf("NOTOWNER %d %s %s %d", e.Slot, owner, addr, e.Epoch)
}

// Unwrap lets errors.Is(err, ErrNotOwner) hold.
func (e *NotOwnerError) Unwrap() error { return ErrNotOwner }

func parseNotOwner(detail string) (*NotOwnerError, error) {
	f := strings.Fields(detail)
	if len(f) != 4 {
		return nil, fmt.Errorf("NOTOWNER: want 4 fields, got %d", len(f))
	}
	s, err := strconv.Atoi(f[0])
	if err != nil {
		return nil, err
	}
	ep, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return nil, err
	}
	no := &NotOwnerError{Slot: s, Owner: f[1], Addr: f[2], Epoch: ep}
	if no.Owner == "-" {
		no.Owner = ""
	}
	if no.Addr == "-" {
		no.Addr = ""
	}
	return no, nil
}
