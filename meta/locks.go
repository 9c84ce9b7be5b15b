package meta

import (
	"fmt"
	"maps"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// Global locks, for schedulers (one master at a time, one worker per
// task). The state lives in the FSM; time enters only as the leader's
// clock stamped into each entry (command.Now), and the FSM's Clock is the
// latest such stamp, so expiry is the same on every replica and never
// runs backwards when a leader with a slower clock takes over.
//
// Every new grant takes the next value of one counter, FenceSeq, as its
// fencing token; a renewal by the holder keeps its token. A resource
// that remembers the highest token it has seen can therefore refuse a
// holder whose lock expired and was granted to someone else.

// lockState is a held lock. Published lockStates are immutable.
type lockState struct {
	Owner string `json:"owner"`
	Token uint64 `json:"token"`
	// Expires is the leader time (Unix ms) at which the lock lapses.
	Expires int64 `json:"expires"`
	// Session and Conn: the session node and client connection the lock
	// is bound to ("" if none); the session releases it when the
	// connection closes, and meta when the session leaves the cluster.
	Session string `json:"session,omitempty"`
	Conn    string `json:"conn,omitempty"`
}

// lockResult is what a lock entry tells its proposer.
type lockResult struct {
	Granted  bool
	Released bool
	// Token, Holder and Expires describe the lock after the entry: the
	// grant, or for a refusal, who holds it.
	Token   uint64
	Holder  string
	Expires int64
}

// lockNow is the time an entry is judged at: the leader's stamp, or the
// FSM's clock if that is later (a previous leader's clock ran ahead).
func lockNow(s *state, c *command) int64 { return max(s.Clock, c.Now) }

// applyLockAcquire grants c.Name to c.Owner for c.TTLMs from now, if the
// lock is free, expired, or held by c.Owner already (a renewal, which
// keeps the token and rebinds the lock to the renewing connection). A
// lock held by someone else is a refusal in the result, not an error.
func applyLockAcquire(s *state, c *command) (*state, *lockResult, error) {
	if err := checkLockCommand(c); err != nil {
		return nil, nil, err
	}
	if c.TTLMs < proto.MinLockTTL || c.TTLMs > proto.MaxLockTTL {
		return nil, nil, fmt.Errorf("%w: lock %s: ttl %d ms is not in %d..%d", errBadCommand, c.Name, c.TTLMs, proto.MinLockTTL, proto.MaxLockTTL)
	}
	now := lockNow(s, c)
	cur := s.Locks[c.Name]
	held := cur != nil && cur.Expires > now
	if held && cur.Owner != c.Owner {
		return nil, &lockResult{Token: cur.Token, Holder: cur.Owner, Expires: cur.Expires}, nil
	}
	next := *s
	next.Clock = now
	token := s.FenceSeq + 1
	if held {
		token = cur.Token
	} else {
		next.FenceSeq = token
	}
	l := &lockState{Owner: c.Owner, Token: token, Expires: now + c.TTLMs, Session: c.Session, Conn: c.Conn}
	next.Locks = maps.Clone(s.Locks)
	if next.Locks == nil {
		next.Locks = map[string]*lockState{}
	}
	next.Locks[c.Name] = l
	return &next, &lockResult{Granted: true, Token: token, Holder: c.Owner, Expires: l.Expires}, nil
}

// applyLockRelease releases c.Name if c.Owner holds it and, when c.Conn
// is set, only while the lock is still bound to that connection. A lock
// that has expired by now is dropped but reported as not released: its
// owner no longer held it.
func applyLockRelease(s *state, c *command) (*state, *lockResult, error) {
	if err := checkLockCommand(c); err != nil {
		return nil, nil, err
	}
	cur := s.Locks[c.Name]
	if cur == nil || cur.Owner != c.Owner || (c.Conn != "" && cur.Conn != c.Conn) {
		return nil, &lockResult{}, nil
	}
	now := lockNow(s, c)
	next := *s
	next.Clock = now
	next.Locks = maps.Clone(s.Locks)
	delete(next.Locks, c.Name)
	return &next, &lockResult{Released: cur.Expires > now, Token: cur.Token}, nil
}

// applyLockExpire drops every lock that has expired by now. Nothing
// expired: no change.
func applyLockExpire(s *state, c *command) (*state, error) {
	now := lockNow(s, c)
	var locks map[string]*lockState
	for name, l := range s.Locks { // deletions only: the order is irrelevant
		if l.Expires > now {
			continue
		}
		if locks == nil {
			locks = maps.Clone(s.Locks)
		}
		delete(locks, name)
	}
	if locks == nil {
		return nil, nil
	}
	next := *s
	next.Clock = now
	next.Locks = locks
	return &next, nil
}

// withoutSessionLocks drops the locks bound to a session node that left
// the cluster (or whose lease lapsed): its connections are gone, and so
// are the locks they held. next is a state of the caller's own making.
func withoutSessionLocks(next *state, session string) {
	var locks map[string]*lockState
	for name, l := range next.Locks { // deletions only: the order is irrelevant
		if l.Session != session {
			continue
		}
		if locks == nil {
			locks = maps.Clone(next.Locks)
		}
		delete(locks, name)
	}
	if locks != nil {
		next.Locks = locks
	}
}

func checkLockCommand(c *command) error {
	if err := proto.CheckLockName(c.Name); err != nil {
		return fmt.Errorf("%w: %s: %v", errBadCommand, c.Type, err)
	}
	if err := proto.CheckLockOwner(c.Owner); err != nil {
		return fmt.Errorf("%w: %s %s: %v", errBadCommand, c.Type, c.Name, err)
	}
	return nil
}

// lockCheckInterval is how often the leader looks for expired locks; it
// bounds how late past its TTL a lock is dropped from the state (a
// newcomer may take an expired lock at once whatever this says).
const lockCheckInterval = 100 * time.Millisecond

// lockLoop proposes an expiry entry whenever, by the leader's clock, a
// held lock has expired.
func (n *Node) lockLoop() {
	n.every(lockCheckInterval, func() { n.expireLocks(time.Now().UnixMilli()) })
}

func (n *Node) expireLocks(now int64) {
	if !n.IsLeader() || !n.ready.Load() {
		return
	}
	due := 0
	for _, l := range n.store.state().Locks {
		if l.Expires <= now {
			due++
		}
	}
	if due == 0 {
		return
	}
	if _, err := n.propose(&command{Type: cmdLockExpire, Now: now}); err != nil {
		n.log.Warn("lock expiry failed", "locks", due, "err", err)
		return
	}
	n.log.Info("locks expired", "locks", due)
}

// handleMLock takes or renews a lock; replies proto.LockReply.
func (n *Node) handleMLock(conn redcon.Conn, m *proto.MLock) error {
	now := time.Now().UnixMilli()
	// A lock another owner holds is refused without a log entry: a
	// refusal is never unsafe (the client retries), and twenty clients
	// polling a held lock would otherwise each write to the log. Grants
	// and renewals always go through the log.
	st := n.store.state()
	if l := st.Locks[m.Name]; l != nil && l.Owner != m.Owner && l.Expires > max(now, st.Clock) {
		reply := proto.LockReply{Token: l.Token, Holder: l.Owner, TTLMs: l.Expires - max(now, st.Clock)}
		conn.WriteRaw(reply.AppendRESP(nil))
		return nil
	}
	res, err := n.commit(&command{Type: cmdLockAcquire, Name: m.Name, Owner: m.Owner, TTLMs: m.TTLMs, Now: now,
		Session: m.Session, Conn: m.Conn}, "lock refused")
	if err != nil {
		return err
	}
	lr := res.Lock
	now = max(now, n.store.state().Clock)
	reply := proto.LockReply{Granted: lr.Granted, Token: lr.Token, Holder: lr.Holder, TTLMs: lr.Expires - now}
	conn.WriteRaw(reply.AppendRESP(nil))
	return nil
}

// handleMUnlock releases a lock; replies :1 if the owner held it, :0 if
// not.
func (n *Node) handleMUnlock(conn redcon.Conn, m *proto.MUnlock) error {
	res, err := n.commit(&command{Type: cmdLockRelease, Name: m.Name, Owner: m.Owner, Conn: m.Conn, Now: time.Now().UnixMilli()}, "unlock refused")
	if err != nil {
		return err
	}
	if res.Lock.Released {
		conn.WriteInt(1)
		return nil
	}
	conn.WriteInt(0)
	return nil
}

// lockInfo is the parser of a command that names a lock.
func lockInfo(name string) func([][]byte) (*proto.LockInfoCmd, error) {
	return func(args [][]byte) (*proto.LockInfoCmd, error) { return proto.ParseLockInfo(name, args) }
}

// handleMLockInfo replies proto.LockInfo, or null if the lock is free
// (or expired, even if the expiry entry is not applied yet).
func (n *Node) handleMLockInfo(conn redcon.Conn, m *proto.LockInfoCmd) error {
	st := n.store.state()
	now := max(time.Now().UnixMilli(), st.Clock)
	l := st.Locks[m.Name]
	if l == nil || l.Expires <= now {
		conn.WriteNull()
		return nil
	}
	info := proto.LockInfo{Owner: l.Owner, Token: l.Token, TTLMs: l.Expires - now}
	conn.WriteRaw(info.AppendRESP(nil))
	return nil
}
