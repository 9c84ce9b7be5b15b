package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// ptopic is one watched path prefix: its watches, every path seen under
// it (the state the watches are told about) and what the current link
// has of it. Guarded by Client.mu.
type ptopic struct {
	prefix  string
	watches map[*Watch]struct{}
	paths   map[string]*pathRec
	// sentOn is the link PSUBSCRIBE was sent on; confirmedOn the link
	// whose session confirmed it.
	sentOn, confirmedOn uint64
	// resyncOn is the link on which the prefix was subscribed again after
	// a failover, 0 if it never was; checked holds the parents already
	// reconciled there after their first event.
	resyncOn uint64
	checked  map[string]bool
}

// Watch delivers the changes of every path under a prefix to a callback,
// until Close or the client's Close.
type Watch struct {
	c  *Client
	pt *ptopic
	fn func(Event)

	mu      sync.Mutex
	queue   pathQueue
	told    map[string]pathRec // the paths the callback holds as present
	stopped bool
	wake    chan struct{}
	quit    chan struct{}
}

// Watch calls fn with the changes of every path that starts with prefix
// (as PSUBSCRIBE prefix*: "/nodes/" for everything below /nodes, "/nodes"
// would also match /nodes2): first an ADD for every path there now, then
// an ADD, UPDATE or REMOVE for each change, also of paths under parents
// created later. Calls are serial. Per path they are coalesced: a slow fn
// is told the net change since what it last got (a path added and
// removed meanwhile is not mentioned at all), and a path's version never
// goes back, also across a failover.
//
// The watch is made again on every session the client fails over to.
// The client then sends what changed while it was away: UPDATEs and ADDs
// from the session, and a REMOVE for a path it held that is gone, found
// by looking up the paths' parents on the new session. Watch returns once
// a session has confirmed the watch; the ADDs follow through fn.
func (c *Client) Watch(ctx context.Context, prefix string, fn func(Event)) (*Watch, error) {
	if _, err := proto.ParsePattern([]byte(prefix + "*")); err != nil {
		return nil, fmt.Errorf("watch %s: %w", prefix, err)
	}
	if fn == nil {
		return nil, fmt.Errorf("watch %s: nil callback: %w", prefix, proto.ErrInvalid)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	pt := c.ptopics[prefix]
	if pt == nil {
		pt = &ptopic{prefix: prefix, watches: make(map[*Watch]struct{}), paths: make(map[string]*pathRec)}
		c.ptopics[prefix] = pt
	}
	w := &Watch{c: c, pt: pt, fn: fn, told: make(map[string]pathRec), wake: make(chan struct{}, 1), quit: make(chan struct{})}
	pt.watches[w] = struct{}{}
	for path, r := range pt.paths {
		if r.present {
			w.offer(path, *r)
		}
	}
	c.wg.Add(1)
	go w.loop()
	c.mu.Unlock()
	c.kickManager()
	err := c.await(ctx, func() (bool, error) { return pt.sentOn != 0 && pt.confirmedOn == pt.sentOn, nil })
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", prefix, err)
	}
	return w, nil
}

// Prefix is the watched prefix.
func (w *Watch) Prefix() string { return w.pt.prefix }

// Paths returns the paths under the prefix as the callback has been
// told them so far: path to value.
func (w *Watch) Paths() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.told))
	for p, r := range w.told {
		out[p] = r.value
	}
	return out
}

// Close stops deliveries: no callback starts after it returns (one
// already running may finish). The session is told in the background.
// It may be called from the callback.
func (w *Watch) Close() {
	w.stop()
	c := w.c
	c.mu.Lock()
	delete(w.pt.watches, w)
	c.mu.Unlock()
	c.kickManager()
}

func (w *Watch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.quit)
	}
}

// offer queues a path's newest record for the callback.
func (w *Watch) offer(path string, cur pathRec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.queue.put(path, cur)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// forgetVersions keeps what the callback was told of each path but not
// at which version, so a path's next change is news whatever its version
// (see Client.noteCluster).
func (w *Watch) forgetVersions() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for path, r := range w.told {
		r.version = 0
		w.told[path] = r
	}
}

// next takes the next event for the callback, if any.
func (w *Watch) next() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.stopped {
		path, cur, ok := w.queue.take()
		if !ok {
			return Event{}, false
		}
		had := w.told[path]
		ev, news := tell(path, had, cur)
		switch {
		case cur.version <= had.version:
		case cur.present:
			w.told[path] = cur
		default:
			delete(w.told, path)
		}
		if news {
			return ev, true
		}
	}
	return Event{}, false
}

// loop runs the callback, one event at a time.
func (w *Watch) loop() {
	defer w.c.wg.Done()
	for {
		select {
		case <-w.quit:
			return
		case <-w.wake:
		}
		for {
			ev, ok := w.next()
			if !ok {
				break
			}
			w.fn(ev)
		}
	}
}

// set applies a change to a path of pt and tells every watch if it is
// news; callers hold Client.mu.
func (pt *ptopic) set(path string, typ EventType, value string, version uint64, at place) {
	r := pt.paths[path]
	if r == nil {
		r = new(pathRec)
		pt.paths[path] = r
	}
	next, newer, news := r.apply(typ, value, version, at)
	if !newer {
		return
	}
	*r = next
	if news {
		for w := range pt.watches {
			w.offer(path, next)
		}
	}
}

// flushWatches sends l the PSUBSCRIBEs and PUNSUBSCRIBEs the watched
// prefixes ask for. A failed send fails the link, which resets them.
func (c *Client) flushWatches(l *link) error {
	var subs, unsubs []string
	c.mu.Lock()
	for prefix, pt := range c.ptopics {
		if len(pt.watches) == 0 {
			if pt.sentOn == l.id {
				unsubs = append(unsubs, prefix+"*")
			}
			delete(c.ptopics, prefix)
			continue
		}
		if pt.sentOn != l.id {
			pt.sentOn = l.id
			subs = append(subs, prefix+"*")
		}
	}
	c.mu.Unlock()
	if len(unsubs) > 0 {
		if err := l.ps.PUnsubscribe(l.ctx, unsubs...); err != nil {
			return fmt.Errorf("session %s: PUNSUBSCRIBE: %w", l.addr, err)
		}
	}
	if len(subs) > 0 {
		if err := l.ps.PSubscribe(l.ctx, subs...); err != nil {
			return fmt.Errorf("session %s: PSUBSCRIBE: %w", l.addr, err)
		}
	}
	return nil
}

// pconfirmed records the session's confirmation of a PSUBSCRIBE on l. A
// prefix confirmed before, on another link, is being subscribed again
// after a failover: what changed meanwhile must be found out. The
// session sends an ADD for every path it has; what went is found by
// looking up, on l, every parent the client holds a path under.
func (c *Client) pconfirmed(l *link, pattern string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.ptopics[strings.TrimSuffix(pattern, "*")]
	if pt == nil || pt.sentOn != l.id {
		return
	}
	again := pt.confirmedOn != 0
	pt.confirmedOn = l.id
	c.broadcast()
	if !again {
		return
	}
	pt.resyncOn, pt.checked = l.id, make(map[string]bool)
	for path, r := range pt.paths {
		if r.present {
			l.queueReconcile(pt.prefix, parentOf(path))
		}
	}
}

// ppushed takes an event of the watch of pattern from l.
//
// After a failover, the session's prefix watch may be new: it learns
// each parent's paths from the data nodes after it confirmed the watch,
// and what was removed before it learned a parent it cannot tell. So the
// first event for each parent on such a link has the parent looked up
// again, once the session surely knows it.
func (c *Client) ppushed(l *link, pattern, channel, payload string) {
	prefix := strings.TrimSuffix(pattern, "*")
	ev, err := parseEvent(prefix, channel, payload)
	if err != nil {
		c.log.Warn("bad watch event from session", "session", l.addr, "pattern", pattern, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.ptopics[prefix]
	if pt == nil {
		return
	}
	pt.set(ev.Path, ev.Type, ev.Value, ev.Version, place{ev.Datacenter, ev.Zone})
	if pt.resyncOn == l.id {
		if parent := parentOf(ev.Path); !pt.checked[parent] {
			pt.checked[parent] = true
			l.queueReconcile(prefix, parent)
		}
	}
}

// reconciled applies a LOOKUP of one parent of prefix's paths at its
// version.
func (c *Client) reconciled(prefix string, snap Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.ptopics[prefix]
	if pt == nil {
		return
	}
	for _, ch := range reconcileChanges(prefix, snap, pt.paths) {
		pt.set(ch.path, ch.typ, ch.value, snap.Version, ch.at)
	}
}

// queueReconcile asks l's reconciler to look parent up for prefix;
// callers hold Client.mu.
func (l *link) queueReconcile(prefix, parent string) {
	if parent == "" {
		return
	}
	if l.recon == nil {
		l.recon = make(map[reconKey]struct{})
	}
	l.recon[reconKey{prefix, parent}] = struct{}{}
	select {
	case l.reconWake <- struct{}{}:
	default:
	}
}

// reconKey is one parent to look up for one watched prefix.
type reconKey struct{ prefix, parent string }

// reconcileLoop looks up, on l, the parents queued for reconciliation,
// until l ends. A lookup the session refuses for now (a slot between
// leaders) is retried with backoff.
func (c *Client) reconcileLoop(l *link) {
	failures := 0
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.reconWake:
		}
		for {
			c.mu.Lock()
			var k reconKey
			found := false
			for k = range l.recon {
				found = true
				delete(l.recon, k)
				break
			}
			c.mu.Unlock()
			if !found {
				break
			}
			ctx, cancel := context.WithTimeout(l.ctx, c.opts.CommandTimeout)
			snap, err := l.lookup(ctx, k.parent)
			cancel()
			if err == nil {
				failures = 0
				c.reconciled(k.prefix, snap)
				continue
			}
			if l.ctx.Err() != nil {
				return
			}
			if errors.Is(err, proto.ErrInvalid) {
				c.log.Warn("watch reconcile lookup refused", "session", l.addr, "dataInfoId", k.parent, "err", err)
				continue
			}
			failures++
			c.log.Debug("watch reconcile lookup failed; will retry", "session", l.addr, "dataInfoId", k.parent, "err", err)
			c.mu.Lock()
			l.queueReconcile(k.prefix, k.parent)
			c.mu.Unlock()
			t := time.NewTimer(c.opts.backoff(failures))
			select {
			case <-l.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}
