package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// Global locks (LOCK, UNLOCK) held in the name of Options.Identity. The
// session binds a lock to the connection that took it and releases it
// when that connection closes, so each lock gets a connection of its own
// on the session the client holds: it waits there in line (LOCK ...
// WAIT) without holding up anything else, is renewed there, and goes
// with it. A lock is never replayed on another session: another owner
// may have taken it meanwhile. Its loss is reported instead (OnLockLost).

// Lock errors.
var (
	// ErrLockNotHeld is returned by ReleaseLock for a lock this client
	// does not hold.
	ErrLockNotHeld = errors.New("lock is not held by this client")
	// ErrLockLost is returned by ReleaseLock for a lock lost while held
	// (OnLockLost reported it).
	ErrLockLost = errors.New("lock was lost while held")
	// ErrLockTimeout is returned by AcquireLockTimeout when the lock was
	// not granted in time.
	ErrLockTimeout = errors.New("lock not granted in time")
)

// sessionLockTimeout is how long past a LOCK's wait a session may take
// to answer it: its own bound on a trip to meta, redirects included.
const sessionLockTimeout = 5 * time.Second

// LockLoss reports a lock this client held and lost: its session was
// lost, or the lock could not be renewed before its TTL ran out, or
// another owner holds it now.
type LockLoss struct {
	Name  string
	Token uint64
	Err   error
}

// lockSlot is this client's turn on one lock name: AcquireLock callers
// of the same client take turns on it before asking the session, since
// the session knows them all as one owner. Guarded by Client.mu, except
// turn.
type lockSlot struct {
	turn  chan struct{} // holding its one value is having the turn
	users int           // callers holding or waiting for the turn
	held  *heldLock
}

// heldLock is a lock granted to this client.
type heldLock struct {
	name    string
	token   uint64
	granted time.Time // when the LOCK that got it was sent
	lc      *lockConn
	stop    chan struct{} // closed by ReleaseLock
	done    chan struct{} // closed when the renewer has returned
	lost    error         // guarded by Client.mu
}

// AcquireLock takes the global lock name for this client, waiting in
// line behind its holder and earlier waiters until it is granted or ctx
// ends, and returns its fencing token (higher than every earlier grant's).
// The client renews the lock in the background until ReleaseLock or
// Close. It is not reentrant: other callers of this client wait for
// ReleaseLock as callers of other clients do.
//
// A held lock is bound to the client's session and is not carried over
// a failover: OnLockLost reports it lost, and the caller must stop using
// it, call ReleaseLock and acquire it again if it still needs it.
func (c *Client) AcquireLock(ctx context.Context, name string) (token uint64, err error) {
	if err := proto.CheckLockName(name); err != nil {
		return 0, fmt.Errorf("acquire lock %s: %w", name, err)
	}
	slot, err := c.takeTurn(ctx, name)
	if err != nil {
		return 0, fmt.Errorf("acquire lock %s: %w", name, err)
	}
	lk, err := c.acquire(ctx, name)
	if err != nil {
		c.leaveTurn(name, slot)
		return 0, fmt.Errorf("acquire lock %s: %w", name, err)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		lk.lc.close()
		c.leaveTurn(name, slot)
		return 0, ErrClosed
	}
	slot.held = lk
	c.wg.Add(1)
	go c.keepLock(lk)
	c.mu.Unlock()
	return lk.token, nil
}

// AcquireLockTimeout is AcquireLock bounded by timeout; when it passes
// the error wraps ErrLockTimeout.
func (c *Client) AcquireLockTimeout(name string, timeout time.Duration) (token uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	token, err = c.AcquireLock(ctx, name)
	if errors.Is(err, context.DeadlineExceeded) {
		return 0, fmt.Errorf("acquire lock %s: %w within %v", name, ErrLockTimeout, timeout)
	}
	return token, err
}

// ReleaseLock releases a lock this client holds and lets the next caller
// of this client have its turn. A lock that was lost meanwhile is
// released here too, and the error wraps ErrLockLost.
func (c *Client) ReleaseLock(ctx context.Context, name string) error {
	c.mu.Lock()
	slot := c.locks[name]
	if slot == nil || slot.held == nil {
		c.mu.Unlock()
		return fmt.Errorf("release lock %s: %w", name, ErrLockNotHeld)
	}
	lk := slot.held
	slot.held = nil
	c.mu.Unlock()
	close(lk.stop)
	<-lk.done
	c.mu.Lock()
	lost := lk.lost
	c.mu.Unlock()
	var err error
	if lost != nil {
		err = fmt.Errorf("%w: %w", ErrLockLost, lost)
	} else {
		v, uerr := lk.lc.do(ctx, c.lockSlack(), (&proto.Unlock{Name: name, Owner: c.opts.Identity}).Args()...)
		switch n, _ := v.(int64); {
		case uerr == nil && n != 1:
			err = fmt.Errorf("%w: the session says this client did not hold it", ErrLockLost)
		case uerr != nil:
			// Closing the lock's connection, below, has the session
			// release it; at worst its TTL does.
			c.log.Debug("UNLOCK failed; closing the lock's connection releases it", "lock", name, "err", uerr)
		}
	}
	lk.lc.close()
	c.leaveTurn(name, slot)
	if err != nil {
		return fmt.Errorf("release lock %s: %w", name, err)
	}
	return nil
}

// HeldLock returns the token of lock name if this client holds it and
// has not lost it.
func (c *Client) HeldLock(name string) (token uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot := c.locks[name]; slot != nil && slot.held != nil && slot.held.lost == nil {
		return slot.held.token, true
	}
	return 0, false
}

// OnLockLost calls fn for every lock lost while held, on the goroutine
// that runs OnStateChange's listeners, in order with them. The returned
// func removes fn.
func (c *Client) OnLockLost(fn func(LockLoss)) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listenerSeq++
	id := c.listenerSeq
	c.lockFns[id] = fn
	return func() {
		c.mu.Lock()
		delete(c.lockFns, id)
		c.mu.Unlock()
	}
}

// heldLocks lists the locks held; callers hold mu.
func (c *Client) heldLocks() []*heldLock {
	var out []*heldLock
	for _, s := range c.locks {
		if s.held != nil {
			out = append(out, s.held)
		}
	}
	return out
}

// lockSlack is how long past a LOCK's wait its answer may take.
func (c *Client) lockSlack() time.Duration { return c.opts.CommandTimeout + sessionLockTimeout }

// takeTurn waits for this client's turn on lock name.
func (c *Client) takeTurn(ctx context.Context, name string) (*lockSlot, error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	slot := c.locks[name]
	if slot == nil {
		slot = &lockSlot{turn: make(chan struct{}, 1)}
		c.locks[name] = slot
	}
	slot.users++
	c.mu.Unlock()
	var err error
	select {
	case slot.turn <- struct{}{}:
		return slot, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.closeCh:
		err = ErrClosed
	}
	c.forgetSlot(name, slot)
	return nil, err
}

// leaveTurn gives the turn on name to the next caller.
func (c *Client) leaveTurn(name string, slot *lockSlot) {
	<-slot.turn
	c.forgetSlot(name, slot)
}

func (c *Client) forgetSlot(name string, slot *lockSlot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slot.users--
	if slot.users == 0 && c.locks[name] == slot {
		delete(c.locks, name)
	}
}

// acquire asks the session for the lock, over a connection of its own,
// until it is granted or ctx ends. An answer that may hide a grant (the
// session could not reach meta) is followed by asking again on the same
// connection, which then renews what was granted; a connection that
// fails takes any grant with it, as the session releases it.
func (c *Client) acquire(ctx context.Context, name string) (*heldLock, error) {
	var lc *lockConn
	fail := func(err error) (*heldLock, error) {
		if lc != nil {
			lc.close()
		}
		return nil, err
	}
	failures := 0
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		l, err := c.servingLink(ctx)
		if err != nil {
			return fail(err)
		}
		if lc != nil && lc.l != l {
			lc.close()
			lc = nil
		}
		if lc == nil {
			lc = newLockConn(l)
		}
		wait := c.opts.LockWaitChunk
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		req := proto.Lock{Name: name, Owner: c.opts.Identity, TTLMs: c.opts.LockTTL.Milliseconds(), WaitMs: max(wait.Milliseconds(), 1)}
		sent := time.Now()
		v, err := lc.do(ctx, time.Duration(req.WaitMs)*time.Millisecond+c.lockSlack(), req.Args()...)
		if err == nil {
			tok, ok := v.(int64)
			if !ok || tok <= 0 {
				return fail(fmt.Errorf("malformed LOCK reply from %s: %T %v", l.addr, v, v))
			}
			return &heldLock{name: name, token: uint64(tok), granted: sent, lc: lc,
				stop: make(chan struct{}), done: make(chan struct{})}, nil
		}
		if errors.Is(err, redis.Nil) {
			failures = 0
			continue // the wait passed: ask again
		}
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		if serr, isReply := serverError(err); isReply {
			if permanent(serr) {
				return fail(serr)
			}
			failures++
		} else {
			lc.close()
			lc = nil
			if l.err() == nil {
				failures++
			} // else: wait for the next session, without a backoff of our own
		}
		c.log.Debug("LOCK failed; asking again", "lock", name, "session", l.addr, "err", err)
		if failures > 0 {
			if err := c.sleep(ctx, c.opts.backoff(failures)); err != nil {
				return fail(err)
			}
		}
	}
}

// sleep waits d, or until ctx ends or the client closes.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closeCh:
		return ErrClosed
	}
}

// keepLock renews lk every third of its TTL until ReleaseLock or Close,
// and reports it lost when its session goes, when another owner holds it,
// or when it could not be renewed before its TTL ran out.
func (c *Client) keepLock(lk *heldLock) {
	defer c.wg.Done()
	defer close(lk.done)
	ttl := c.opts.LockTTL
	every := ttl / 3
	expires := lk.granted.Add(ttl)
	renew := (&proto.Lock{Name: lk.name, Owner: c.opts.Identity, TTLMs: ttl.Milliseconds()}).Args()
	t := time.NewTimer(every)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-lk.stop:
			return
		case <-c.closeCh:
			lk.lc.close()
			return
		case <-lk.lc.l.failed:
			c.lockLost(lk, fmt.Errorf("its session %s was lost: %w", lk.lc.l.addr, lk.lc.l.err()))
			return
		case <-t.C:
		}
		sent := time.Now()
		v, err := lk.lc.do(context.Background(), c.lockSlack(), renew...)
		var lost error
		switch tok, _ := v.(int64); {
		case err == nil && uint64(tok) == lk.token:
			expires, failures = sent.Add(ttl), 0
			t.Reset(every)
			continue
		case err == nil:
			lost = fmt.Errorf("renewal was granted token %d, not %d: the lock had lapsed", tok, lk.token)
		case errors.Is(err, redis.Nil):
			lost = errors.New("another owner holds it")
		default:
			if serr, isReply := serverError(err); isReply && !permanent(serr) {
				failures++
				if wait := c.opts.backoff(failures); time.Now().Add(wait).Before(expires) {
					t.Reset(wait)
					continue
				}
				lost = fmt.Errorf("not renewed within its TTL: %w", serr)
			} else {
				lost = fmt.Errorf("renewal: %w", err)
			}
		}
		c.lockLost(lk, lost)
		return
	}
}

// lockLost records that lk is lost, closes its connection (so the session
// drops whatever it still binds there) and tells the listeners.
func (c *Client) lockLost(lk *heldLock, err error) {
	lk.lc.close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || lk.lost != nil {
		return
	}
	lk.lost = err
	c.log.Warn("lost a lock", "lock", lk.name, "token", lk.token, "err", err)
	loss := LockLoss{Name: lk.name, Token: lk.token, Err: err}
	for _, fn := range c.lockFns {
		c.notify.post(func() { fn(loss) })
	}
}

// lockConn is the connection one lock is taken and held on: a go-redis
// client of one connection, dialed through the link (so a failed link
// closes it), which aborts a LOCK ... WAIT by closing the socket under
// it when its caller gives up.
type lockConn struct {
	l   *link
	rdb *redis.Client
	cn  *redis.Conn

	mu   sync.Mutex
	nc   net.Conn
	dead bool
	once sync.Once
}

func newLockConn(l *link) *lockConn {
	lc := &lockConn{l: l}
	o := &l.c.opts
	ro := o.redisOptions(l.addr, lc.dial)
	// A LOCK ... WAIT answers when the lock is granted: every command
	// carries its own deadline instead.
	ro.ReadTimeout = -1
	ro.PoolSize = 1
	lc.rdb = redis.NewClient(ro)
	lc.cn = lc.rdb.Conn()
	return lc
}

func (lc *lockConn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := lc.l.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.dead {
		nc.Close()
		return nil, fmt.Errorf("lock connection to %s is closed", addr)
	}
	lc.nc = nc
	return nc, nil
}

// do sends one command, bounded by timeout. If ctx ends meanwhile, the
// socket is closed under it, which also has the session release a lock
// granted on it at that moment: a grant whose caller gave up is never
// kept.
func (lc *lockConn) do(ctx context.Context, timeout time.Duration, args ...any) (any, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, lc.abort)
	v, err := lc.cn.Do(cctx, args...).Result()
	if !stop() && err == nil {
		return nil, ctx.Err()
	}
	return v, err
}

// abort closes the socket; every command on it fails from then on.
func (lc *lockConn) abort() {
	lc.mu.Lock()
	lc.dead = true
	nc := lc.nc
	lc.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

func (lc *lockConn) close() {
	lc.once.Do(func() {
		lc.abort()
		lc.cn.Close()
		lc.rdb.Close()
	})
}
