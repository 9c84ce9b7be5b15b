package proto

import (
	"fmt"
	"strconv"
	"strings"
)

// Global locks. Clients send LOCK, UNLOCK and LOCKINFO to any session;
// the session forwards them to the meta leader as MLOCK, MUNLOCK and
// MLOCKINFO, adding which session and client connection the lock is bound
// to, so it can be released when that connection closes.
const (
	// CmdLock takes or renews a lock: LOCK name owner ttlMs.
	CmdLock = "lock"
	// CmdUnlock releases a lock the owner holds: UNLOCK name owner.
	CmdUnlock = "unlock"
	// CmdLockInfo shows a lock's holder: LOCKINFO name.
	CmdLockInfo = "lockinfo"
	// CmdMLock is LOCK forwarded to the meta leader.
	CmdMLock = "mlock"
	// CmdMUnlock is UNLOCK (or a connection's release) on the meta leader.
	CmdMUnlock = "munlock"
	// CmdMLockInfo is LOCKINFO on the meta leader.
	CmdMLockInfo = "mlockinfo"
	// CmdMLockList lists every held lock on the meta leader (the web
	// console's lock view): MLOCKLIST [limit], a LockListReply as JSON.
	CmdMLockList = "mlocklist"
)

// Lock limits.
const (
	// MaxLockNameLen and MaxLockOwnerLen bound names and owners.
	MaxLockNameLen  = 512
	MaxLockOwnerLen = 256
	// MinLockTTL and MaxLockTTL bound a lock's TTL in milliseconds: the
	// meta leader checks expiry every 100 ms, so a shorter TTL would
	// mean nothing, and a day is longer than any scheduler task should
	// hold a lock without renewing it.
	MinLockTTL = 100
	MaxLockTTL = 86_400_000
	// MaxLockWait bounds LOCK ... WAIT, in milliseconds: a client that
	// must wait longer asks again, which keeps its place in the queue.
	MaxLockWait = 600_000

	// OptWait is LOCK's WAIT option.
	OptWait = "wait"
)

// CheckLockName validates a lock name: 1..MaxLockNameLen bytes.
func CheckLockName(s string) error {
	if s == "" || len(s) > MaxLockNameLen {
		return Errorf(ErrInvalid, "lock name must be 1 to %d bytes, got %d", MaxLockNameLen, len(s))
	}
	return nil
}

// CheckLockOwner validates a lock owner: 1..MaxLockOwnerLen bytes.
func CheckLockOwner(s string) error {
	if s == "" || len(s) > MaxLockOwnerLen {
		return Errorf(ErrInvalid, "lock owner must be 1 to %d bytes, got %d", MaxLockOwnerLen, len(s))
	}
	return nil
}

func parseLockTTL(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || v < MinLockTTL || v > MaxLockTTL {
		return 0, Errorf(ErrInvalid, "lock ttl must be a whole number of milliseconds from %d to %d, got %q",
			MinLockTTL, MaxLockTTL, truncateArg(b))
	}
	return v, nil
}

func truncateArg(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// Lock is the client's LOCK name owner ttlMs [WAIT ms].
type Lock struct {
	Name, Owner string
	TTLMs       int64
	// WaitMs, when above 0, makes the call wait in line for the lock
	// that long.
	WaitMs int64
}

// Args builds the command.
func (l *Lock) Args() []any {
	args := []any{CmdLock, l.Name, l.Owner, strconv.FormatInt(l.TTLMs, 10)}
	if l.WaitMs > 0 {
		args = append(args, "WAIT", strconv.FormatInt(l.WaitMs, 10))
	}
	return args
}

// parseLockWait parses WAIT's milliseconds: 1..MaxLockWait.
func parseLockWait(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || v < 1 || v > MaxLockWait {
		return 0, Errorf(ErrInvalid, "WAIT must be a whole number of milliseconds from 1 to %d, got %q", MaxLockWait, truncateArg(b))
	}
	return v, nil
}

// ParseLock parses LOCK name owner ttlMs [WAIT ms].
func ParseLock(args [][]byte) (*Lock, error) {
	switch {
	case len(args) == 6 && strings.EqualFold(string(args[4]), OptWait):
	case len(args) == 6 || len(args) == 5:
		return nil, Errorf(ErrInvalid, "syntax error: LOCK name owner ttl-ms [WAIT ms], got %q", truncateArg(args[4]))
	default:
		if err := arity(args, CmdLock, 4); err != nil {
			return nil, err
		}
	}
	l := &Lock{Name: string(args[1]), Owner: string(args[2])}
	if len(args) == 6 {
		var err error
		if l.WaitMs, err = parseLockWait(args[5]); err != nil {
			return nil, err
		}
	}
	if err := CheckLockName(l.Name); err != nil {
		return nil, err
	}
	if err := CheckLockOwner(l.Owner); err != nil {
		return nil, err
	}
	var err error
	if l.TTLMs, err = parseLockTTL(args[3]); err != nil {
		return nil, err
	}
	return l, nil
}

// Unlock is the client's UNLOCK name owner.
type Unlock struct{ Name, Owner string }

// Args builds the command.
func (u *Unlock) Args() []any { return []any{CmdUnlock, u.Name, u.Owner} }

// ParseUnlock parses UNLOCK name owner.
func ParseUnlock(args [][]byte) (*Unlock, error) {
	if err := arity(args, CmdUnlock, 3); err != nil {
		return nil, err
	}
	u := &Unlock{Name: string(args[1]), Owner: string(args[2])}
	if err := CheckLockName(u.Name); err != nil {
		return nil, err
	}
	return u, CheckLockOwner(u.Owner)
}

// LockInfoCmd is LOCKINFO name (client) or MLOCKINFO name (meta).
type LockInfoCmd struct {
	Cmd  string // CmdLockInfo or CmdMLockInfo
	Name string
}

// Args builds the command.
func (l *LockInfoCmd) Args() []any { return []any{l.Cmd, l.Name} }

// ParseLockInfo parses `name lockName` for the command name given.
func ParseLockInfo(name string, args [][]byte) (*LockInfoCmd, error) {
	if err := arity(args, name, 2); err != nil {
		return nil, err
	}
	l := &LockInfoCmd{Cmd: name, Name: string(args[1])}
	return l, CheckLockName(l.Name)
}

// MLock is a LOCK forwarded to the meta leader: the lock is bound to the
// client connection Conn of session node Session (both empty: bound to
// nothing, released only by UNLOCK or TTL).
type MLock struct {
	Name, Owner   string
	TTLMs         int64
	Session, Conn string
	// WaitMs above 0 queues the request behind the holder and earlier
	// waiters; the reply comes when it is granted or WaitMs passed.
	WaitMs int64
}

// Args builds the command; an empty Session or Conn travels as "-".
func (m *MLock) Args() []any {
	args := []any{CmdMLock, m.Name, m.Owner, strconv.FormatInt(m.TTLMs, 10), dash(m.Session), dash(m.Conn)}
	if m.WaitMs > 0 {
		args = append(args, strconv.FormatInt(m.WaitMs, 10))
	}
	return args
}

// ParseMLock parses MLOCK name owner ttlMs session conn [waitMs].
func ParseMLock(args [][]byte) (*MLock, error) {
	if len(args) != 7 {
		if err := arity(args, CmdMLock, 6); err != nil {
			return nil, err
		}
	}
	m := &MLock{Name: string(args[1]), Owner: string(args[2]), Session: undash(args[4]), Conn: undash(args[5])}
	if len(args) == 7 {
		var err error
		if m.WaitMs, err = parseLockWait(args[6]); err != nil {
			return nil, err
		}
	}
	if err := CheckLockName(m.Name); err != nil {
		return nil, err
	}
	if err := CheckLockOwner(m.Owner); err != nil {
		return nil, err
	}
	var err error
	if m.TTLMs, err = parseLockTTL(args[3]); err != nil {
		return nil, err
	}
	if err := checkBinding(m.Session, m.Conn); err != nil {
		return nil, err
	}
	return m, nil
}

// MUnlock releases Name if Owner holds it and, when Conn is set, only if
// it is still bound to that connection (a connection closing must not
// release a lock its owner has since renewed from elsewhere).
type MUnlock struct{ Name, Owner, Conn string }

// Args builds the command.
func (m *MUnlock) Args() []any { return []any{CmdMUnlock, m.Name, m.Owner, dash(m.Conn)} }

// ParseMUnlock parses MUNLOCK name owner conn.
func ParseMUnlock(args [][]byte) (*MUnlock, error) {
	if err := arity(args, CmdMUnlock, 4); err != nil {
		return nil, err
	}
	m := &MUnlock{Name: string(args[1]), Owner: string(args[2]), Conn: undash(args[3])}
	if err := CheckLockName(m.Name); err != nil {
		return nil, err
	}
	if err := CheckLockOwner(m.Owner); err != nil {
		return nil, err
	}
	return m, checkBinding("", m.Conn)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func undash(b []byte) string {
	if string(b) == "-" {
		return ""
	}
	return string(b)
}

func checkBinding(session, conn string) error {
	for _, s := range []string{session, conn} {
		if len(s) > 256 || strings.ContainsAny(s, " \t\r\n") {
			return Errorf(ErrInvalid, "bad lock binding %q", s)
		}
	}
	return nil
}

// LockReply is the meta leader's answer to MLOCK. Granted: Token is the
// fencing token (a renewal keeps the token it had). Refused: Holder is
// the owner that holds the lock, Token its token, TTLMs its time left.
type LockReply struct {
	Granted bool
	Token   uint64
	Holder  string
	TTLMs   int64
}

// AppendRESP appends the reply [:granted, :token, $holder, :ttlMs].
func (r *LockReply) AppendRESP(dst []byte) []byte {
	g := uint64(0)
	if r.Granted {
		g = 1
	}
	dst = append(dst, "*4\r\n"...)
	dst = appendRESPInt(dst, g)
	dst = appendRESPInt(dst, r.Token)
	dst = appendRESPBulk(dst, []byte(r.Holder))
	return appendRESPInt(dst, uint64(max(r.TTLMs, 0)))
}

// ParseLockReply decodes an MLOCK reply as go-redis returns it.
func ParseLockReply(v any) (*LockReply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return nil, fmt.Errorf("%s reply: want a 4-element array, got %T", CmdMLock, v)
	}
	g, err := replyUint(a[0], "granted")
	if err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdMLock, err)
	}
	r := &LockReply{Granted: g == 1}
	if r.Token, err = replyUint(a[1], "token"); err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdMLock, err)
	}
	h, err := replyBulk(a[2], "holder")
	if err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdMLock, err)
	}
	r.Holder = string(h)
	ttl, err := replyUint(a[3], "ttl")
	if err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdMLock, err)
	}
	r.TTLMs = int64(ttl)
	return r, nil
}

// LockInfo is a held lock as LOCKINFO shows it: [$owner, :token, :ttlMs].
type LockInfo struct {
	Owner string
	Token uint64
	TTLMs int64
	// Waiters counts the owners waiting for the lock (LOCK ... WAIT).
	Waiters int
}

// AppendRESP appends the reply [$owner, :token, :ttlMs, :waiters].
func (l *LockInfo) AppendRESP(dst []byte) []byte {
	dst = append(dst, "*4\r\n"...)
	dst = appendRESPBulk(dst, []byte(l.Owner))
	dst = appendRESPInt(dst, l.Token)
	dst = appendRESPInt(dst, uint64(max(l.TTLMs, 0)))
	return appendRESPInt(dst, uint64(l.Waiters))
}

// ParseLockInfoReply decodes a (M)LOCKINFO reply; nil means the lock is
// free.
func ParseLockInfoReply(v any) (*LockInfo, error) {
	if v == nil {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok || len(a) != 3 && len(a) != 4 {
		return nil, fmt.Errorf("%s reply: want a 3- or 4-element array or nil, got %T", CmdLockInfo, v)
	}
	o, err := replyBulk(a[0], "owner")
	if err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdLockInfo, err)
	}
	l := &LockInfo{Owner: string(o)}
	if l.Token, err = replyUint(a[1], "token"); err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdLockInfo, err)
	}
	ttl, err := replyUint(a[2], "ttl")
	if err != nil {
		return nil, fmt.Errorf("%s reply: %w", CmdLockInfo, err)
	}
	l.TTLMs = int64(ttl)
	if len(a) == 4 {
		w, err := replyUint(a[3], "waiters")
		if err != nil {
			return nil, fmt.Errorf("%s reply: %w", CmdLockInfo, err)
		}
		l.Waiters = int(w)
	}
	return l, nil
}
