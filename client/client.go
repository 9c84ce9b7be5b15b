package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("slotreg client is closed")

// Client keeps a process's registrations and subscriptions on one slotreg
// session at a time, failing over to another when that session fails. It
// is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change; waiters watch it
	regs    map[regKey]*regState
	topics  map[string]*topic
	// ptopics are the watched path prefixes (PSUBSCRIBE), by prefix.
	ptopics map[string]*ptopic
	// locks are the lock names this client takes or holds, by name.
	locks map[string]*lockSlot
	link  *link // the link being made or held; nil between attempts
	ready bool  // link has replayed everything and serves
	// readyLink is the id of the last link that became ready.
	readyLink uint64
	since     time.Time
	lastErr   error
	links     uint64 // links made so far; the next link's id is links+1
	fails     int    // links lost after they were ready
	closing   bool
	everReady bool // a link has been ready once: the next is a reconnect
	// cluster is the last cluster_id a session named (see
	// slot.Table.Cluster); "" until one did.
	cluster string

	// Listeners (OnStateChange, OnLockLost), called through notify.
	notify      *notifier
	listenerSeq uint64
	stateFns    map[uint64]func(State)
	lockFns     map[uint64]func(LockLoss)

	kick    chan struct{} // wakes the manager: desired state changed or a link failed
	closeCh chan struct{}
	done    chan struct{} // the manager has returned
	wg      sync.WaitGroup
	once    sync.Once
}

// New starts a client. It returns at once: the client connects, and
// reconnects, in the background. Calls made before it is ready wait for
// it (within their context); WaitReady waits explicitly.
func New(opts Options) (*Client, error) {
	opts.Sessions = append([]string(nil), opts.Sessions...)
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := &Client{
		opts:     opts,
		log:      opts.Logger.With("component", "slotreg-client"),
		changed:  make(chan struct{}),
		regs:     make(map[regKey]*regState),
		topics:   make(map[string]*topic),
		ptopics:  make(map[string]*ptopic),
		locks:    make(map[string]*lockSlot),
		notify:   newNotifier(),
		stateFns: make(map[uint64]func(State)),
		lockFns:  make(map[uint64]func(LockLoss)),
		kick:     make(chan struct{}, 1),
		closeCh:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.wg.Add(2)
	go c.run()
	go func() {
		defer c.wg.Done()
		c.notify.run(c.closeCh)
	}()
	return c, nil
}

// broadcast wakes every waiter; callers hold mu.
func (c *Client) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// await waits until cond (run under mu) says done, ctx ends or the
// client closes. cond's error is returned when it is done.
func (c *Client) await(ctx context.Context, cond func() (bool, error)) error {
	for {
		c.mu.Lock()
		done, err := cond()
		ch, closing, last := c.changed, c.closing, c.lastErr
		c.mu.Unlock()
		if done {
			return err
		}
		if closing {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last connection error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-ch:
		}
	}
}

// failLink breaks l from outside the manager and wakes everyone who
// waits on it.
func (c *Client) failLink(l *link, err error) {
	l.fail(err)
	c.mu.Lock()
	c.broadcast()
	c.mu.Unlock()
	c.kickManager()
}

func (c *Client) kickManager() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run is the manager: the one goroutine that makes links, replays onto
// them and sends every registration change, so the order of writes on the
// pinned connection is the order they were decided in.
func (c *Client) run() {
	defer c.wg.Done()
	defer close(c.done)
	next, failures := 0, 0
	// leaving is a link whose session said it is stopping: it is kept
	// open until the next link is ready, so the publishers it holds are
	// registered through the next session before its connection closes
	// (whose unregisters then remove nothing) and no subscriber sees
	// them go.
	var leaving *link
	for {
		select {
		case <-c.closeCh:
			if leaving != nil {
				c.dropLeaving(leaving)
			}
			return
		default:
		}
		addr := c.opts.Sessions[next%len(c.opts.Sessions)]
		l, err := c.connect(addr)
		if leaving != nil {
			c.dropLeaving(leaving)
			leaving = nil
		}
		if err == nil {
			failures = 0
			err = c.serve(l)
		}
		closing := c.isClosing()
		if closing && err == nil {
			c.unregisterAll(l)
		}
		if errors.Is(err, errGoAway) && !closing {
			c.log.Info("slotreg session is stopping; moving to the next", "session", l.addr)
			leaving = l
			next++
			continue
		}
		c.drop(l, err)
		if closing {
			return
		}
		next++
		if c.wasReady(l) {
			// A session that served until now failed: another is likely
			// fine, so try the next one at once.
			continue
		}
		failures++
		t := time.NewTimer(c.opts.backoff(failures))
		select {
		case <-c.closeCh:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

func (c *Client) wasReady(l *link) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l != nil && !c.since.IsZero() && c.readyLink == l.id
}

// connect makes a link to addr and replays onto it; it returns the link
// once the client is ready on it.
func (c *Client) connect(addr string) (*link, error) {
	c.mu.Lock()
	c.links++
	l := newLink(c, c.links, addr)
	c.link = l
	c.mu.Unlock()
	if err := l.open(); err != nil {
		return l, err
	}
	c.noteCluster(l)
	l.receiving = true
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		l.receive()
	}()
	go func() {
		defer c.wg.Done()
		c.reconcileLoop(l)
	}()
	if err := c.replay(l); err != nil {
		return l, err
	}
	c.mu.Lock()
	c.ready, c.since, c.readyLink = true, time.Now(), l.id
	if c.everReady {
		c.emitState(StateReconnected)
	} else {
		c.emitState(StateConnected)
	}
	c.everReady = true
	nregs, ntopics, nwatches := len(c.regs), len(c.topics), len(c.ptopics)
	c.broadcast()
	c.mu.Unlock()
	c.log.Info("slotreg session ready", "session", addr, "registrations", nregs, "subscriptions", ntopics, "watches", nwatches)
	return l, nil
}

// noteCluster compares the cluster a new link's session belongs to with
// the last one's. A different one is a registry that started again from
// empty: its versions start over, below those this client holds, and
// every state it pushes would be dropped as old. The client then forgets
// the versions it holds (not the states: subscribers keep the last they
// got until the new registry's arrives), before anything is received on
// the link.
func (c *Client) noteCluster(l *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.cluster == "" || l.cluster == c.cluster {
		return
	}
	if c.cluster != "" {
		c.log.Warn("the registry is a new cluster (it started again from empty); versions start over",
			"session", l.addr, "cluster", l.cluster, "was", c.cluster)
		for _, t := range c.topics {
			t.last = nil
			for s := range t.subs {
				s.forgetVersion()
			}
		}
		for _, pt := range c.ptopics {
			for _, r := range pt.paths {
				r.version = 0
			}
			for w := range pt.watches {
				w.forgetVersions()
			}
		}
	}
	c.cluster = l.cluster
}

// replay sends every registration and subscription on a new link and
// waits until the session has acknowledged them all. A write the session
// refuses for now (its slot leader is failing over) is retried a few
// times here; if it is still refused, the link is given up.
func (c *Client) replay(l *link) error {
	const attempts = 6
	c.mu.Lock()
	for _, st := range c.regs {
		// A new session: what another refused is worth sending at once.
		st.attempts, st.retryAt = 0, time.Time{}
	}
	c.mu.Unlock()
	for i := 1; ; i++ {
		if err := c.flush(l); err != nil {
			return err
		}
		wait, last := c.unsynced(l)
		if wait < 0 {
			break
		}
		if i == attempts {
			return fmt.Errorf("session %s: replay: writes still refused after %d attempts: %w", l.addr, attempts, last)
		}
		if err := c.pause(l, wait); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(l.ctx, c.opts.CommandTimeout)
	defer cancel()
	return c.await(ctx, func() (bool, error) {
		if err := l.err(); err != nil {
			return true, err
		}
		// Only what was sent: a Subscribe that arrived since is sent by
		// serve, and its caller waits for that itself.
		for _, t := range c.topics {
			if len(t.subs) > 0 && t.sentOn == l.id && t.confirmedOn != l.id {
				return false, nil
			}
		}
		for _, pt := range c.ptopics {
			if len(pt.watches) > 0 && pt.sentOn == l.id && pt.confirmedOn != l.id {
				return false, nil
			}
		}
		return true, nil
	})
}

// pause waits d, or until the link fails or the client closes.
func (c *Client) pause(l *link, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-l.failed:
		return l.err()
	case <-c.closeCh:
		return ErrClosed
	}
}

// unsynced returns how long until the earliest registration still to be
// sent on l may be retried (-1 if none is left), and its last error.
func (c *Client) unsynced(l *link) (time.Duration, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wait := time.Duration(-1)
	var last error
	now := time.Now()
	for _, st := range c.regs {
		if st.inSync(l.id) {
			continue
		}
		d := max(st.retryAt.Sub(now), 0)
		if wait < 0 || d < wait {
			wait, last = d, st.lastErr
		}
	}
	return wait, last
}

// serve keeps l in line with the desired state until l fails or the
// client closes (then it returns nil).
func (c *Client) serve(l *link) error {
	health := time.NewTicker(c.opts.HealthCheckInterval)
	defer health.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if err := c.flush(l); err != nil {
			return err
		}
		if wait, _ := c.unsynced(l); wait >= 0 {
			retry.Reset(max(wait, time.Millisecond))
		}
		select {
		case <-c.closeCh:
			return nil
		case <-l.failed:
			return l.err()
		case <-l.goaway:
			return errGoAway
		case <-c.kick:
		case <-retry.C:
		case <-health.C:
			if err := l.check(c.opts.HealthCheckInterval); err != nil {
				l.fail(err)
				return err
			}
		}
	}
}

// errGoAway ends serve when the session says it is shutting down.
var errGoAway = errors.New("the session is shutting down")

// dropLeaving closes a link that was told to go, once the next link is
// ready (or could not be made): it is no longer the client's link, so it
// touches none of the client's readiness.
func (c *Client) dropLeaving(l *link) {
	l.close()
	c.log.Debug("closed the link to a stopping session", "session", l.addr)
}

// drop ends a link and records why.
func (c *Client) drop(l *link, err error) {
	if l == nil {
		return
	}
	c.mu.Lock()
	wasReady := c.ready && c.readyLink == l.id
	if wasReady && err != nil {
		c.fails++
	}
	if c.ready && !c.closing {
		c.emitState(StateDisconnected)
	}
	c.ready = false
	if err != nil && !errors.Is(err, ErrClosed) {
		c.lastErr = err
	}
	c.link = nil
	c.broadcast()
	c.mu.Unlock()
	l.close()
	switch {
	case err == nil:
	case wasReady:
		c.log.Warn("lost slotreg session; failing over", "session", l.addr, "err", err)
	default:
		c.log.Debug("slotreg session attempt failed", "session", l.addr, "err", err)
	}
}

// flush sends on l what the desired state asks and l lacks: REGISTER or
// UNREGISTER per registration, pipelined on the pinned connection,
// SUBSCRIBE or UNSUBSCRIBE per dataInfoId and PSUBSCRIBE or PUNSUBSCRIBE
// per watched prefix. An error means l is broken.
func (c *Client) flush(l *link) error {
	ops, subs, unsubs := c.pending(l)
	if err := c.flushWatches(l); err != nil {
		return err
	}
	if len(unsubs) > 0 {
		if err := l.ps.Unsubscribe(l.ctx, unsubs...); err != nil {
			return fmt.Errorf("session %s: UNSUBSCRIBE: %w", l.addr, err)
		}
	}
	if len(subs) > 0 {
		if err := l.ps.Subscribe(l.ctx, subs...); err != nil {
			return fmt.Errorf("session %s: SUBSCRIBE: %w", l.addr, err)
		}
	}
	if len(ops) == 0 {
		return nil
	}
	cmds, _ := l.pin.Pipelined(l.ctx, func(p redis.Pipeliner) error {
		for _, op := range ops {
			if op.register {
				p.Do(l.ctx, proto.CmdRegister, op.key.dataInfoID, op.key.registerID, op.data)
			} else {
				p.Do(l.ctx, proto.CmdUnregister, op.key.dataInfoID, op.key.registerID)
			}
		}
		return nil
	})
	var linkErr error
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.broadcast()
	for i, op := range ops {
		var v uint64
		err := errors.New("no reply")
		if i < len(cmds) {
			v, err = cmds[i].(*redis.Cmd).Uint64()
		}
		if err == nil {
			op.st.acked(l.id, op, v)
			continue
		}
		serr, isReply := serverError(err)
		if !isReply {
			linkErr = fmt.Errorf("session %s: %s %s %s: %w", l.addr, op.name(), op.key.dataInfoID, op.key.registerID, err)
			continue
		}
		op.st.refused(l.id, op, serr, now, &c.opts)
		if !permanent(serr) {
			c.log.Debug("write refused; will retry", "session", l.addr, "dataInfoId", op.key.dataInfoID,
				"registerId", op.key.registerID, "err", serr)
		}
	}
	c.gc()
	return linkErr
}

// pending collects, under mu, what l must be sent, and marks subscription
// sends as made (a failed send fails the link, which resets them).
func (c *Client) pending(l *link) (ops []regOp, subs, unsubs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, st := range c.regs {
		if st.inSync(l.id) || st.retryAt.After(now) {
			continue
		}
		switch {
		case st.want:
			ops = append(ops, regOp{st: st, key: st.key, gen: st.gen, register: true, data: st.data})
		case st.onLink == l.id:
			ops = append(ops, regOp{st: st, key: st.key, gen: st.gen})
		default:
			// Withdrawn, and this connection never had it: nothing to undo.
			st.settle(l.id, st.gen)
		}
	}
	for id, t := range c.topics {
		if len(t.subs) == 0 {
			if t.sentOn == l.id {
				unsubs = append(unsubs, id)
			}
			delete(c.topics, id)
			continue
		}
		if t.sentOn != l.id {
			t.sentOn = l.id
			subs = append(subs, id)
		}
	}
	c.gc()
	return ops, subs, unsubs
}

// gc forgets withdrawn registrations that no connection holds any more;
// callers hold mu.
func (c *Client) gc() {
	for k, st := range c.regs {
		if !st.want && st.onLink == 0 && st.ackGen >= st.gen {
			delete(c.regs, k)
		}
	}
}

// unregisterAll is Close's clean exit: UNREGISTER every registration on
// the link it holds, bounded by CloseTimeout. Closing the connection would
// remove them too; saying so explicitly lets the session drop them at
// once and in order with any write before.
func (c *Client) unregisterAll(l *link) {
	c.mu.Lock()
	var keys []regKey
	for k, st := range c.regs {
		if st.onLink == l.id {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, c.opts.CloseTimeout)
	defer cancel()
	_, err := l.pin.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Do(ctx, proto.CmdUnregister, k.dataInfoID, k.registerID)
		}
		return nil
	})
	if err != nil {
		c.log.Debug("unregister on close", "session", l.addr, "registrations", len(keys), "err", err)
	}
}

// Close unregisters every registration, ends every subscription and
// watch, releases every lock (by closing its connection) and waits until
// every goroutine the client started has returned. Calls waiting on the
// client return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closing = true
		subs := make([]*Subscription, 0, len(c.topics))
		for _, t := range c.topics {
			for s := range t.subs {
				subs = append(subs, s)
			}
		}
		var watches []*Watch
		for _, pt := range c.ptopics {
			for w := range pt.watches {
				watches = append(watches, w)
			}
		}
		held := c.heldLocks()
		c.broadcast()
		c.mu.Unlock()
		for _, s := range subs {
			s.stop()
		}
		for _, w := range watches {
			w.stop()
		}
		close(c.closeCh)
		// Closing a lock's connection releases the lock on the session;
		// no renewal may follow.
		for _, lk := range held {
			lk.lc.abort()
		}
		// The manager may be blocked on a slow reply; past the timeout,
		// cut its connections.
		t := time.NewTimer(c.opts.CloseTimeout + time.Second)
		select {
		case <-c.done:
		case <-t.C:
			c.mu.Lock()
			l := c.link
			c.mu.Unlock()
			if l != nil {
				l.fail(ErrClosed)
			}
			<-c.done
		}
		t.Stop()
		c.wg.Wait()
	})
	return nil
}
