package meta

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
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

// lockWaiter is an owner in a lock's queue (LOCK ... WAIT), waiting
// until Until (leader time, Unix ms) to be granted the lock for TTLMs.
type lockWaiter struct {
	Owner   string `json:"owner"`
	TTLMs   int64  `json:"ttlMs"`
	Until   int64  `json:"until"`
	Session string `json:"session,omitempty"`
	Conn    string `json:"conn,omitempty"`
}

// lockResult is what a lock entry tells its proposer.
type lockResult struct {
	Granted  bool
	Released bool
	// Queued: the acquirer waits in the lock's queue.
	Queued bool
	// Token, Holder and Expires describe the lock after the entry: the
	// grant, or for a refusal, who holds it.
	Token   uint64
	Holder  string
	Expires int64
}

// lockNow is the time an entry is judged at: the leader's stamp, or the
// FSM's clock if that is later (a previous leader's clock ran ahead).
func lockNow(s *state, c *command) int64 { return max(s.Clock, c.Now) }

// Waiting locks: a LOCK with WAIT that finds the lock held joins the
// lock's queue, an entry like any other, so the order is the log's.
// Whenever the lock comes free (released, expired, its session gone)
// the same entry grants it to the first waiter whose wait has not
// passed, with a new token: a handover is one log entry. A waiter whose
// wait passes leaves the queue by cmdLockCancel (or is skipped).

// firstWaiter is the index of the first waiter of name still waiting at
// now, or -1.
func firstWaiter(s *state, name string, now int64) int {
	for i, w := range s.LockQueues[name] {
		if w.Until > now {
			return i
		}
	}
	return -1
}

// setQueue replaces name's queue in next, whose LockQueues the caller
// has cloned.
func setQueue(next *state, name string, q []lockWaiter) {
	if len(q) == 0 {
		delete(next.LockQueues, name)
		return
	}
	next.LockQueues[name] = q
}

// withoutWaiter is q without owner's entry for conn.
func withoutWaiter(q []lockWaiter, owner, conn string) ([]lockWaiter, bool) {
	for i, w := range q {
		if w.Owner == owner && w.Conn == conn {
			return slices.Delete(slices.Clone(q), i, i+1), true
		}
	}
	return q, false
}

// grantNext gives the free lock name to its first waiter still waiting
// at now, dropping the ones whose wait passed. next's Locks and
// LockQueues are the caller's own.
func grantNext(next *state, name string, now int64) {
	q := next.LockQueues[name]
	i := firstWaiter(next, name, now)
	if i < 0 {
		delete(next.LockQueues, name)
		return
	}
	w := q[i]
	next.FenceSeq++
	next.Locks[name] = &lockState{Owner: w.Owner, Token: next.FenceSeq, Expires: now + w.TTLMs, Session: w.Session, Conn: w.Conn}
	setQueue(next, name, slices.Clone(q[i+1:]))
}

// cloneLocks gives next its own Locks and LockQueues.
func cloneLocks(next *state) {
	next.Locks = maps.Clone(next.Locks)
	if next.Locks == nil {
		next.Locks = map[string]*lockState{}
	}
	next.LockQueues = maps.Clone(next.LockQueues)
	if next.LockQueues == nil {
		next.LockQueues = map[string][]lockWaiter{}
	}
}

// applyLockAcquire grants c.Name to c.Owner for c.TTLMs from now, if the
// lock is free (and no earlier waiter is still waiting), expired, or held
// by c.Owner already (a renewal, which keeps the token and rebinds the
// lock to the renewing connection). A lock held by someone else is a
// refusal in the result, not an error, or with c.WaitMs a place in its
// queue (kept if the owner's connection is in it already).
func applyLockAcquire(s *state, c *command) (*state, *lockResult, error) {
	if err := checkLockCommand(c); err != nil {
		return nil, nil, err
	}
	if c.TTLMs < proto.MinLockTTL || c.TTLMs > proto.MaxLockTTL {
		return nil, nil, fmt.Errorf("%w: lock %s: ttl %d ms is not in %d..%d", errBadCommand, c.Name, c.TTLMs, proto.MinLockTTL, proto.MaxLockTTL)
	}
	if c.WaitMs < 0 || c.WaitMs > proto.MaxLockWait {
		return nil, nil, fmt.Errorf("%w: lock %s: wait %d ms is not in 0..%d", errBadCommand, c.Name, c.WaitMs, proto.MaxLockWait)
	}
	now := lockNow(s, c)
	cur := s.Locks[c.Name]
	held := cur != nil && cur.Expires > now
	busy := held && cur.Owner != c.Owner
	if !held {
		// Free, but served in arrival order: an earlier waiter first.
		if i := firstWaiter(s, c.Name, now); i >= 0 {
			w := s.LockQueues[c.Name][i]
			busy = w.Owner != c.Owner || w.Conn != c.Conn
		}
	}
	if busy {
		res := &lockResult{}
		if held {
			res.Token, res.Holder, res.Expires = cur.Token, cur.Owner, cur.Expires
		}
		if c.WaitMs == 0 {
			return nil, res, nil
		}
		next := *s
		next.Clock = now
		cloneLocks(&next)
		w := lockWaiter{Owner: c.Owner, TTLMs: c.TTLMs, Until: now + c.WaitMs, Session: c.Session, Conn: c.Conn}
		q := next.LockQueues[c.Name]
		if i := slices.IndexFunc(q, func(x lockWaiter) bool { return x.Owner == c.Owner && x.Conn == c.Conn }); i >= 0 {
			q = slices.Clone(q)
			q[i] = w // asked again: its place is kept
		} else {
			q = append(slices.Clip(q), w)
		}
		setQueue(&next, c.Name, q)
		res.Queued = true
		return &next, res, nil
	}
	next := *s
	next.Clock = now
	cloneLocks(&next)
	token := s.FenceSeq + 1
	if held {
		token = cur.Token
	} else {
		next.FenceSeq = token
	}
	l := &lockState{Owner: c.Owner, Token: token, Expires: now + c.TTLMs, Session: c.Session, Conn: c.Conn}
	next.Locks[c.Name] = l
	if q, had := withoutWaiter(next.LockQueues[c.Name], c.Owner, c.Conn); had {
		setQueue(&next, c.Name, q)
	}
	return &next, &lockResult{Granted: true, Token: token, Holder: c.Owner, Expires: l.Expires}, nil
}

// applyLockRelease releases c.Name if c.Owner holds it and, when c.Conn
// is set, only while the lock is still bound to that connection, and
// hands it to the first waiter. A lock that has expired by now is
// dropped but reported as not released: its owner no longer held it.
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
	cloneLocks(&next)
	delete(next.Locks, c.Name)
	grantNext(&next, c.Name, now)
	return &next, &lockResult{Released: cur.Expires > now, Token: cur.Token}, nil
}

// applyLockCancel takes c.Owner's connection c.Conn out of the queue of
// c.Name: its wait passed. The result says whether it was granted the
// lock meanwhile (then it keeps it: the caller replies the grant).
func applyLockCancel(s *state, c *command) (*state, *lockResult, error) {
	if err := checkLockCommand(c); err != nil {
		return nil, nil, err
	}
	now := lockNow(s, c)
	res := &lockResult{}
	if cur := s.Locks[c.Name]; cur != nil && cur.Expires > now {
		res.Token, res.Holder, res.Expires = cur.Token, cur.Owner, cur.Expires
		res.Granted = cur.Owner == c.Owner && cur.Conn == c.Conn
	}
	q, had := withoutWaiter(s.LockQueues[c.Name], c.Owner, c.Conn)
	if !had {
		return nil, res, nil
	}
	next := *s
	next.Clock = now
	cloneLocks(&next)
	setQueue(&next, c.Name, q)
	return &next, res, nil
}

// applyLockExpire drops every lock that has expired by now, handing each
// to its first waiter, and every waiter whose wait passed. Nothing due:
// no change.
func applyLockExpire(s *state, c *command) (*state, error) {
	now := lockNow(s, c)
	if !locksDue(s, now) {
		return nil, nil
	}
	next := *s
	next.Clock = now
	cloneLocks(&next)
	for _, name := range slices.Sorted(maps.Keys(s.Locks)) { // sorted: grants take tokens in order
		if s.Locks[name].Expires <= now {
			delete(next.Locks, name)
			grantNext(&next, name, now)
		}
	}
	for name, q := range next.LockQueues {
		live := slices.DeleteFunc(slices.Clone(q), func(w lockWaiter) bool { return w.Until <= now })
		setQueue(&next, name, live)
	}
	return &next, nil
}

// locksDue says whether by now a lock has expired or a waiter's wait has
// passed.
func locksDue(s *state, now int64) bool {
	for _, l := range s.Locks {
		if l.Expires <= now {
			return true
		}
	}
	for _, q := range s.LockQueues {
		for _, w := range q {
			if w.Until <= now {
				return true
			}
		}
	}
	return false
}

// withoutSessionLocks drops the locks and waiters bound to a session node
// that left the cluster (or whose lease lapsed): its connections are
// gone, and so are the locks they held and waited for. A lock freed goes
// to its first waiter. next is a state of the caller's own making.
func withoutSessionLocks(next *state, session string, now int64) {
	touched := false
	for _, l := range next.Locks {
		touched = touched || l.Session == session
	}
	for _, q := range next.LockQueues {
		for _, w := range q {
			touched = touched || w.Session == session
		}
	}
	if !touched {
		return
	}
	old := next.Locks
	cloneLocks(next)
	for name, q := range next.LockQueues {
		setQueue(next, name, slices.DeleteFunc(slices.Clone(q), func(w lockWaiter) bool { return w.Session == session }))
	}
	for _, name := range slices.Sorted(maps.Keys(old)) {
		if old[name].Session == session {
			delete(next.Locks, name)
			grantNext(next, name, now)
		}
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
	if !locksDue(n.store.state(), now) {
		return
	}
	if _, err := n.propose(&command{Type: cmdLockExpire, Now: now}); err != nil {
		n.log.Warn("lock expiry failed", "err", err)
		return
	}
	n.log.Debug("locks or lock waits expired")
}

// handleMLock takes or renews a lock; replies proto.LockReply.
func (n *Node) handleMLock(conn redcon.Conn, m *proto.MLock) error {
	now := time.Now().UnixMilli()
	// A lock another owner holds is refused without a log entry: a
	// refusal is never unsafe (the client retries), and twenty clients
	// polling a held lock would otherwise each write to the log. Grants
	// and renewals always go through the log.
	st := n.store.state()
	if l := st.Locks[m.Name]; m.WaitMs == 0 && l != nil && l.Owner != m.Owner && l.Expires > max(now, st.Clock) {
		reply := proto.LockReply{Token: l.Token, Holder: l.Owner, TTLMs: l.Expires - max(now, st.Clock)}
		conn.WriteRaw(reply.AppendRESP(nil))
		return nil
	}
	res, err := n.commit(&command{Type: cmdLockAcquire, Name: m.Name, Owner: m.Owner, TTLMs: m.TTLMs, Now: now,
		Session: m.Session, Conn: m.Conn, WaitMs: m.WaitMs}, "lock refused")
	if err != nil {
		return err
	}
	if res.Lock.Queued {
		return n.awaitLock(conn, m, time.UnixMilli(now).Add(time.Duration(m.WaitMs)*time.Millisecond))
	}
	n.writeLockReply(conn, res.Lock)
	return nil
}

func (n *Node) writeLockReply(conn redcon.Conn, lr *lockResult) {
	now := max(time.Now().UnixMilli(), n.store.state().Clock)
	reply := proto.LockReply{Granted: lr.Granted, Token: lr.Token, Holder: lr.Holder, TTLMs: max(lr.Expires-now, 0)}
	conn.WriteRaw(reply.AppendRESP(nil))
}

// awaitLock waits until the queued request m is granted (as the entry
// that frees the lock hands it over), leaves the queue (its session
// left), or its wait passes: then it leaves the queue by an entry of its
// own, which also tells whether the grant came first.
func (n *Node) awaitLock(conn redcon.Conn, m *proto.MLock, until time.Time) error {
	var granted bool
	var now int64
	settled := func(st *state) bool {
		now = max(time.Now().UnixMilli(), st.Clock)
		l := st.Locks[m.Name]
		granted = l != nil && l.Owner == m.Owner && l.Conn == m.Conn && l.Expires > now
		return granted ||
			!slices.ContainsFunc(st.LockQueues[m.Name], func(w lockWaiter) bool { return w.Owner == m.Owner && w.Conn == m.Conn })
	}
	st, ok, err := n.longPoll(&n.store.changes, time.Until(until), settled)
	if err != nil {
		return err
	}
	if !ok {
		res, err := n.commit(&command{Type: cmdLockCancel, Name: m.Name, Owner: m.Owner, Conn: m.Conn, Now: time.Now().UnixMilli()}, "lock cancel refused")
		if err != nil {
			return err
		}
		n.writeLockReply(conn, res.Lock)
		return nil
	}
	l := st.Locks[m.Name]
	if granted {
		n.writeLockReply(conn, &lockResult{Granted: true, Token: l.Token, Holder: l.Owner, Expires: l.Expires})
		return nil
	}
	// Out of the queue (its session left): say who holds the lock, if
	// anyone.
	res := &lockResult{}
	if l != nil && l.Expires > now {
		res.Token, res.Holder, res.Expires = l.Token, l.Owner, l.Expires
	}
	n.writeLockReply(conn, res)
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
	info := proto.LockInfo{Owner: l.Owner, Token: l.Token, TTLMs: l.Expires - now, Waiters: len(st.LockQueues[m.Name])}
	conn.WriteRaw(info.AppendRESP(nil))
	return nil
}

// handleMLockList replies proto.LockListReply as JSON: every lock held
// now (an expired one whose expiry entry is not applied yet is left
// out), sorted by name, at most l.Limit.
func (n *Node) handleMLockList(conn redcon.Conn, l *proto.LockList) error {
	st := n.store.state()
	now := max(time.Now().UnixMilli(), st.Clock)
	reply := proto.LockListReply{Locks: []proto.HeldLock{}}
	for _, name := range slices.Sorted(maps.Keys(st.Locks)) {
		lk := st.Locks[name]
		if lk.Expires <= now {
			continue
		}
		if len(reply.Locks) == l.Limit {
			reply.Truncated = true
			break
		}
		reply.Locks = append(reply.Locks, proto.HeldLock{Name: name, Owner: lk.Owner, Token: lk.Token, TTLMs: lk.Expires - now,
			Session: lk.Session, Conn: lk.Conn, Waiters: len(st.LockQueues[name])})
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return n.unavailable(fmt.Sprintf("encode locks: %v", err))
	}
	conn.WriteBulk(b)
	return nil
}
