package sessionserver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// Global locks: LOCK, UNLOCK and LOCKINFO go to the meta leader, which
// holds the state. A lock is bound to the client connection that took (or
// last renewed) it: when that connection closes the session releases it,
// and when the session itself dies meta drops it as the session's lease
// lapses; the TTL bounds it in every case.

// lockTimeout bounds one lock command's trip to meta (redirects
// included); without a meta quorum the client gets an error rather than
// waiting for it.
const lockTimeout = 5 * time.Second

// lockReleaseTimeout bounds how long a closed connection's locks are
// retried against meta; past that (meta without quorum for so long) their
// TTL releases them.
const lockReleaseTimeout = 10 * time.Second

// lockKey names a lock held by an owner.
type lockKey struct{ name, owner string }

// lockRegistry records which locks each client connection holds, so they
// can be released when it closes.
type lockRegistry struct {
	rpc *metaclient.Leader
	// waits carries LOCK ... WAIT, each of which holds a connection to
	// meta while it waits.
	waits  *metaclient.Leader
	mu     sync.Mutex
	byConn map[*clientConn]map[lockKey]struct{}
}

func (l *lockRegistry) init(n *Node) {
	// Pool: one connection per concurrent lock command, up to a point;
	// beyond it commands queue for a connection.
	l.rpc = n.metaLeader(lockTimeout, 32)
	l.waits = n.metaLeader(lockTimeout, maxLockWaiters)
	l.byConn = map[*clientConn]map[lockKey]struct{}{}
}

func (l *lockRegistry) close() {
	l.rpc.Close()
	l.waits.Close()
}

// maxLockWaiters bounds the LOCK ... WAIT calls a session has at meta at
// once; more wait for one of them to end.
const maxLockWaiters = 1024

// bind records that c holds k; false if c has closed meanwhile (its
// cleanup has run, so the caller must release the lock itself).
func (l *lockRegistry) bind(c *clientConn, k lockKey) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return false
	}
	m := l.byConn[c]
	if m == nil {
		m = map[lockKey]struct{}{}
		l.byConn[c] = m
	}
	m[k] = struct{}{}
	return true
}

func (l *lockRegistry) unbind(c *clientConn, k lockKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := l.byConn[c]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(l.byConn, c)
		}
	}
}

// connClosed releases the locks c holds; c is marked closed already, so
// no bind for it can follow.
func (n *Node) locksConnClosed(c *clientConn) {
	n.locks.mu.Lock()
	held := n.locks.byConn[c]
	delete(n.locks.byConn, c)
	n.locks.mu.Unlock()
	for k := range held {
		n.releaseConnLock(c, k)
	}
}

// releaseConnLock releases k if it is still bound to c, in the
// background, retrying while meta cannot answer.
func (n *Node) releaseConnLock(c *clientConn, k lockKey) {
	n.bgWg.Add(1)
	go func() {
		defer n.bgWg.Done()
		args := (&proto.MUnlock{Name: k.name, Owner: k.owner, Conn: c.id}).Args()
		deadline := time.Now().Add(lockReleaseTimeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
			v, err := n.locks.rpc.Do(ctx, args...)
			cancel()
			if err == nil {
				n.log.Debug("lock released: connection closed", "lock", k.name, "owner", k.owner, "conn", c.id, "released", v)
				return
			}
			if errors.Is(err, proto.ErrInvalid) || errors.Is(err, metaclient.ErrClosed) || time.Now().After(deadline) {
				n.log.Warn("releasing a closed connection's lock failed; its TTL will", "lock", k.name, "owner", k.owner, "err", err)
				return
			}
			select {
			case <-n.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// metaCall runs one lock command on meta without holding the writer, so
// pushes to this connection go on meanwhile; the caller holds wmu.
func (c *clientConn) metaCall(args []any) (any, error) {
	c.wmu.Unlock()
	defer c.wmu.Lock()
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	return c.n.locks.rpc.Do(ctx, args...)
}

// metaWait sends a LOCK ... WAIT to meta, which answers when the lock is
// granted or the wait passed. If meta's leader changes meanwhile, it is
// sent again for the wait that is left: the queue is in meta's log, so
// the request keeps its place.
func (c *clientConn) metaWait(ml *proto.MLock) (any, error) {
	c.wmu.Unlock()
	defer c.wmu.Lock()
	until := time.Now().Add(time.Duration(ml.WaitMs) * time.Millisecond)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), until.Add(lockTimeout))
		v, err := c.n.locks.waits.Do(ctx, ml.Args()...)
		cancel()
		left := time.Until(until)
		if err == nil || errors.Is(err, proto.ErrInvalid) || left < time.Millisecond {
			return v, err
		}
		c.n.log.Debug("lock wait interrupted; asking again", "lock", ml.Name, "owner", ml.Owner, "left", left, "err", err)
		select {
		case <-c.n.stop:
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
		ml.WaitMs = max(time.Until(until).Milliseconds(), 1)
	}
}

// lock answers LOCK name owner ttlMs: :token when granted (a renewal by
// the holder keeps its token), null when another owner holds it.
func (c *clientConn) lock(l *proto.Lock) {
	ml := &proto.MLock{Name: l.Name, Owner: l.Owner, TTLMs: l.TTLMs, Session: c.n.cfg.NodeID, Conn: c.id, WaitMs: l.WaitMs}
	var v any
	var err error
	if l.WaitMs > 0 {
		v, err = c.metaWait(ml)
	} else {
		v, err = c.metaCall(ml.Args())
	}
	var rep *proto.LockReply
	if err == nil {
		rep, err = proto.ParseLockReply(v)
	}
	k := lockKey{l.Name, l.Owner}
	if err != nil {
		if !errors.Is(err, proto.ErrInvalid) {
			// The outcome is unknown: the lock may have been granted.
			// Bind it anyway, so closing the connection releases it;
			// a release of a lock not held is harmless.
			c.n.locks.bind(c, k)
		}
		c.replyErr(lockErr(err))
		return
	}
	if !rep.Granted {
		c.wr.WriteNull()
		return
	}
	if !c.n.locks.bind(c, k) {
		c.n.releaseConnLock(c, k)
	}
	c.wr.WriteUint64(rep.Token)
}

// unlock answers UNLOCK name owner: :1 released, :0 the owner did not
// hold it.
func (c *clientConn) unlock(u *proto.Unlock) {
	v, err := c.metaCall((&proto.MUnlock{Name: u.Name, Owner: u.Owner}).Args())
	if err != nil {
		c.replyErr(lockErr(err))
		return
	}
	c.n.locks.unbind(c, lockKey{u.Name, u.Owner})
	n, _ := v.(int64)
	c.wr.WriteInt64(n)
}

// lockInfo answers LOCKINFO name: [owner, token, ttlMs], or null if free.
func (c *clientConn) lockInfo(li *proto.LockInfoCmd) {
	v, err := c.metaCall((&proto.LockInfoCmd{Cmd: proto.CmdMLockInfo, Name: li.Name}).Args())
	var info *proto.LockInfo
	if err == nil {
		info, err = proto.ParseLockInfoReply(v)
	}
	if err != nil {
		c.replyErr(lockErr(err))
		return
	}
	if info == nil {
		c.wr.WriteNull()
		return
	}
	c.wr.WriteRaw(info.AppendRESP(nil))
}

// lockErr keeps a meta refusal (ERR) as it is and makes anything else
// (no meta leader, no quorum, a timeout) UNAVAILABLE: the client may
// retry, and must not assume it holds the lock.
func lockErr(err error) error {
	var pe *proto.Error
	if errors.As(err, &pe) && errors.Is(err, proto.ErrInvalid) {
		return err
	}
	if errors.As(err, &pe) && errors.Is(err, proto.ErrUnavailable) {
		return err
	}
	return proto.Errorf(proto.ErrUnavailable, "lock service: %v", err)
}
