package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/slotreg/slotreg/proto"
)

// Publisher is one registered instance of a service. Its Datacenter and
// Zone are those of the session it was registered through; a
// subscription's snapshots carry them; a Lookup a session answered
// leaves them empty (LOOKUP replies with registerIds and data only).
type Publisher = proto.PushEntry

// Snapshot is the state of a dataInfoId at one version: every publisher,
// sorted by RegisterID. Snapshots are shared between callbacks and the
// cache; treat Publishers as read-only.
type Snapshot struct {
	DataInfoID string      `json:"dataInfoId"`
	Version    uint64      `json:"version"`
	Publishers []Publisher `json:"publishers"`
	// Stale is set on a Lookup answered from the client's cache because no
	// session could answer: it is the newest state a subscription on this
	// dataInfoId received, which may since have changed.
	Stale bool `json:"-"`
}

// topic is one subscribed dataInfoId: its subscriptions, the newest
// snapshot received (the cache) and what the current link has of it.
// Guarded by Client.mu.
type topic struct {
	id   string
	subs map[*Subscription]struct{}
	last *Snapshot
	// sentOn is the link SUBSCRIBE was sent on; confirmedOn the link whose
	// session confirmed it.
	sentOn, confirmedOn uint64
}

// Subscription delivers a dataInfoId's state to a callback until
// Unsubscribe or Close.
type Subscription struct {
	c  *Client
	t  *topic
	fn func(Snapshot)

	mu        sync.Mutex
	next      *Snapshot // newest not yet delivered
	delivered *Snapshot
	stopped   bool
	wake      chan struct{}
	quit      chan struct{}
}

// Subscribe calls fn with the state of dataInfoID: first the current
// state, then the newest state after every change. Calls are serial and
// coalesced: a slow fn gets the latest state next, not every state in
// between. fn never gets a version lower than, or equal to, one it already
// got, including after the client fails over to another session, with one
// exception: a registry that started again from empty (a new cluster, as
// its sessions say) numbers versions from the start again, and fn then
// gets the new registry's state whatever its version. Subscribe
// returns once a session has confirmed the subscription; the first
// snapshot follows through fn.
func (c *Client) Subscribe(ctx context.Context, dataInfoID string, fn func(Snapshot)) (*Subscription, error) {
	if err := proto.CheckKey(dataInfoID); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", dataInfoID, err)
	}
	if fn == nil {
		return nil, fmt.Errorf("subscribe %s: nil callback: %w", dataInfoID, proto.ErrInvalid)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	t := c.topics[dataInfoID]
	if t == nil {
		t = &topic{id: dataInfoID, subs: make(map[*Subscription]struct{})}
		c.topics[dataInfoID] = t
	}
	s := &Subscription{c: c, t: t, fn: fn, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	t.subs[s] = struct{}{}
	if t.last != nil {
		s.offer(t.last)
	}
	c.wg.Add(1)
	go s.loop()
	c.mu.Unlock()
	c.kickManager()
	err := c.await(ctx, func() (bool, error) { return t.sentOn != 0 && t.confirmedOn == t.sentOn, nil })
	if err != nil {
		s.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", dataInfoID, err)
	}
	return s, nil
}

// DataInfoID is the subscribed key.
func (s *Subscription) DataInfoID() string { return s.t.id }

// Last is the snapshot most recently handed to the callback, and false
// if there was none yet.
func (s *Subscription) Last() (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.delivered == nil {
		return Snapshot{}, false
	}
	return *s.delivered, true
}

// Unsubscribe stops deliveries: no callback starts after it returns (one
// already running may finish). The session is told in the background.
// It may be called from the callback.
func (s *Subscription) Unsubscribe() {
	s.stop()
	c := s.c
	c.mu.Lock()
	delete(s.t.subs, s)
	c.mu.Unlock()
	c.kickManager()
}

func (s *Subscription) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		close(s.quit)
	}
}

// forgetVersion makes the next snapshot offered one to deliver, whatever
// its version (see Client.noteCluster).
func (s *Subscription) forgetVersion() {
	s.mu.Lock()
	s.delivered, s.next = nil, nil
	s.mu.Unlock()
}

// offer hands the subscription a snapshot; only the newest one waiting is
// kept.
func (s *Subscription) offer(snap *Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if s.next == nil || snap.Version > s.next.Version {
		s.next = snap
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop runs the callback, one snapshot at a time.
func (s *Subscription) loop() {
	defer s.c.wg.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-s.wake:
		}
		s.mu.Lock()
		snap := s.next
		s.next = nil
		deliver := snap != nil && !s.stopped && (s.delivered == nil || snap.Version > s.delivered.Version)
		if deliver {
			s.delivered = snap
		}
		s.mu.Unlock()
		if deliver {
			s.fn(*snap)
		}
	}
}

// confirmed records the session's confirmation of a SUBSCRIBE on l.
func (c *Client) confirmed(l *link, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.topics[id]; t != nil && t.sentOn == l.id {
		t.confirmedOn = l.id
		c.broadcast()
	}
}

// pushed takes a message from the session: if it is newer than what the
// topic has, it becomes the cached state and goes to every subscription.
// Versions are the data leader's and grow across every session, so the
// check holds across failovers too.
func (c *Client) pushed(channel, payload string) {
	snap := new(Snapshot)
	if err := json.Unmarshal([]byte(payload), snap); err != nil || snap.DataInfoID != channel {
		if err == nil {
			err = errors.New("payload names another dataInfoId")
		}
		c.log.Warn("bad push from session", "dataInfoId", channel, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.topics[channel]
	if t == nil || (t.last != nil && snap.Version <= t.last.Version) {
		return
	}
	t.last = snap
	for s := range t.subs {
		s.offer(snap)
	}
}
