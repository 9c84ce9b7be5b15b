package client

import (
	"context"
	"sync"
	"time"
)

// Status is a point-in-time view of a client's connection.
type Status struct {
	// Ready is true while the client holds a session on which every
	// registration and subscription has been replayed.
	Ready bool
	// Session is the address of the session held while Ready, else "".
	Session string
	// ReadySince is when the client last became ready.
	ReadySince time.Time
	// Failovers counts sessions lost after they were ready.
	Failovers int
	// LastError is the latest connection or replay failure, nil if none.
	LastError error
}

// Status reports the client's connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Ready: c.ready, ReadySince: c.since, Failovers: c.fails, LastError: c.lastErr}
	if c.ready {
		s.Session = c.link.addr
	}
	return s
}

// Ready reports whether the client holds a session and has replayed
// every registration and subscription on it. Registrations made while it
// is not ready are held and sent once it is.
func (c *Client) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// WaitReady blocks until the client is ready, ctx ends or the client is
// closed.
func (c *Client) WaitReady(ctx context.Context) error {
	return c.await(ctx, func() (bool, error) { return c.ready, nil })
}

// State is a change of the client's connection, as OnStateChange
// reports it.
type State int

// The states a listener hears of.
const (
	// StateConnected: the client became ready for the first time (or was
	// ready when the listener was added).
	StateConnected State = iota + 1
	// StateDisconnected: the session the client was ready on is lost.
	// Ephemeral values and locks held there are gone from the session;
	// the client is failing over.
	StateDisconnected
	// StateReconnected: the client is ready again, on a new session, and
	// has replayed its ephemeral values, subscriptions and watches there.
	// Locks are not replayed: OnLockLost has reported each one lost.
	StateReconnected
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "CONNECTED"
	case StateDisconnected:
		return "DISCONNECTED"
	case StateReconnected:
		return "RECONNECTED"
	}
	return "UNKNOWN"
}

// OnStateChange calls fn on every change of the client's connection:
// StateConnected once, then StateDisconnected and StateReconnected on
// each failover (a session that says it is stopping is left for the next
// without a StateDisconnected in between). If the client is ready when fn
// is added, fn first gets StateConnected; if it lost its session and is
// not ready yet, StateDisconnected. Listeners run one at a time, in
// order, on one goroutine of the client: keep them short. The returned
// func removes fn.
func (c *Client) OnStateChange(fn func(State)) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listenerSeq++
	id := c.listenerSeq
	c.stateFns[id] = fn
	switch {
	case c.ready:
		c.notify.post(func() { fn(StateConnected) })
	case c.everReady:
		c.notify.post(func() { fn(StateDisconnected) })
	}
	return func() {
		c.mu.Lock()
		delete(c.stateFns, id)
		c.mu.Unlock()
	}
}

// emitState queues s for every state listener; callers hold mu.
func (c *Client) emitState(s State) {
	for _, fn := range c.stateFns {
		c.notify.post(func() { fn(s) })
	}
}

// notifier runs listener calls, in the order they were posted, on one
// goroutine, so that no listener runs under the client's lock and a
// listener that calls back into the client cannot deadlock it.
type notifier struct {
	mu   sync.Mutex
	q    []func()
	wake chan struct{}
}

func newNotifier() *notifier { return &notifier{wake: make(chan struct{}, 1)} }

func (n *notifier) post(f func()) {
	n.mu.Lock()
	n.q = append(n.q, f)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run calls what is posted until quit is closed; calls still queued then
// are dropped.
func (n *notifier) run(quit <-chan struct{}) {
	for {
		select {
		case <-quit:
			return
		case <-n.wake:
		}
		for {
			n.mu.Lock()
			if len(n.q) == 0 {
				n.mu.Unlock()
				break
			}
			f := n.q[0]
			n.q[0] = nil
			n.q = n.q[1:]
			n.mu.Unlock()
			select {
			case <-quit:
				return
			default:
			}
			f()
		}
	}
}
