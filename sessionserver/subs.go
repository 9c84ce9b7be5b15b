package sessionserver

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// pushState is a datum as subscribers get it, with the JSON payload built
// once per version however many subscribers receive it.
type pushState struct {
	version  uint64
	payload  []byte
	frame    []byte    // the RESP2 push of payload (see directpush.go)
	received time.Time // when the feed delivered it: push latency starts here
	// hash sums the view's publishers where the view left some out
	// (filtered), so a change it does not see pushes nothing.
	hash     uint64
	filtered bool
}

// topic is a dataInfoId some clients of this session subscribe to, in
// one scope.
type topic struct {
	id    string
	scope proto.Scope
	state atomic.Pointer[pushState]
	subs  map[*clientConn]struct{} // guarded by the registry slot's mu
	// fanning says a large fan-out of this topic is being written
	// (directpush.go).
	fanning atomic.Bool
}

// topicKey names a topic.
type topicKey struct {
	id    string
	scope proto.Scope
}

// subRegistry holds the topics by slot and the change feeds (one per data
// node) that keep their state current.
type subRegistry struct {
	slots [slot.Count]struct {
		mu     sync.Mutex
		topics map[topicKey]*topic
	}
	reqs   chan watchReq
	once   sync.Once
	mgrWg  sync.WaitGroup // the manager
	feedWg sync.WaitGroup // the feed readers
	stop   chan struct{}

	feedsMu sync.Mutex
	feeds   map[string]inproc.Feed
	n       *Node
}

type watchReq struct {
	id      string
	pattern string // a path prefix to watch (add) or stop watching
	add     bool
	table   bool   // re-target every watched id by the current table
	renew   string // a data node whose feed to open again (see renewFeed)
}

// pubsubFeed is the change feed from a data node over its port: Redis
// pub/sub through go-redis's PubSub, which reconnects and subscribes
// again by itself. A data node of this process gives its feed by calls
// instead (inproc.Data.OpenFeed); both are an inproc.Feed.
type pubsubFeed struct {
	n    *Node
	addr string
	rdb  *redis.Client
	ps   *redis.PubSub
}

// A failed (P)SUBSCRIBE is remembered by the PubSub and sent again when
// it reconnects, so an error is only worth a log line.
func (f *pubsubFeed) Watch(ids []string) {
	ctx, cancel := feedCtx()
	defer cancel()
	if err := f.ps.Subscribe(ctx, ids...); err != nil {
		f.n.log.Warn("watch", "data", f.addr, "ids", len(ids), "err", err)
	}
}

func (f *pubsubFeed) Unwatch(ids []string) {
	ctx, cancel := feedCtx()
	defer cancel()
	if err := f.ps.Unsubscribe(ctx, ids...); err != nil {
		f.n.log.Debug("unwatch", "data", f.addr, "ids", len(ids), "err", err)
	}
}

func (f *pubsubFeed) WatchPrefixes(prefixes []string) {
	pats := make([]string, len(prefixes))
	for i, p := range prefixes {
		pats[i] = p + "*"
	}
	ctx, cancel := feedCtx()
	defer cancel()
	if err := f.ps.PSubscribe(ctx, pats...); err != nil {
		f.n.log.Warn("prefix watch", "data", f.addr, "prefixes", len(pats), "err", err)
	}
}

func (f *pubsubFeed) UnwatchPrefix(prefix string) {
	ctx, cancel := feedCtx()
	defer cancel()
	if err := f.ps.PUnsubscribe(ctx, prefix+"*"); err != nil {
		f.n.log.Debug("prefix unwatch", "data", f.addr, "err", err)
	}
}

func (f *pubsubFeed) Close() {
	f.ps.Close()
	f.rdb.Close()
}

// feedCtx bounds a (un)subscribe on a feed: the PubSub sends it again on
// reconnecting anyway.
func feedCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

func (r *subRegistry) init(n *Node) {
	r.n = n
	for i := range r.slots {
		r.slots[i].topics = make(map[topicKey]*topic)
	}
	r.reqs = make(chan watchReq, 1024)
	r.stop = make(chan struct{})
	r.feeds = make(map[string]inproc.Feed)
}

func (r *subRegistry) start(n *Node) {
	r.once.Do(func() {
		r.n = n
		r.mgrWg.Add(1)
		go r.manage()
	})
}

// add subscribes c to id in scope s and returns the topic. The caller
// has already written the subscribe confirmation, so the first message
// follows it.
func (r *subRegistry) add(n *Node, c *clientConn, id string, s proto.Scope) *topic {
	if isConfigChannel(id) {
		return n.cfgs.add(c, id)
	}
	r.start(n)
	sl := &r.slots[slot.Of(id)]
	sl.mu.Lock()
	k := topicKey{id, s}
	t := sl.topics[k]
	fresh := t == nil
	if fresh {
		t = &topic{id: id, scope: s, subs: make(map[*clientConn]struct{})}
		sl.topics[k] = t
	}
	t.subs[c] = struct{}{}
	if t.state.Load() != nil {
		c.markPush(t)
	}
	sl.mu.Unlock()
	if fresh {
		r.request(watchReq{id: id, add: true})
	}
	return t
}

// remove unsubscribes c from t; the last subscriber stops the watch.
func (r *subRegistry) remove(c *clientConn, t *topic) {
	if isConfigChannel(t.id) {
		c.n.cfgs.remove(c, t)
		return
	}
	sl := &r.slots[slot.Of(t.id)]
	sl.mu.Lock()
	delete(t.subs, c)
	k := topicKey{t.id, t.scope}
	last := len(t.subs) == 0 && sl.topics[k] == t
	if last {
		delete(sl.topics, k)
	}
	sl.mu.Unlock()
	if last {
		r.request(watchReq{id: t.id})
	}
}

func (r *subRegistry) request(w watchReq) {
	select {
	case r.reqs <- w:
	case <-r.stop:
	}
}

// deliver takes a datum from a feed: for each scope's topic of it, if
// it is newer than what the topic has, its view becomes the topic's
// state and every subscriber is marked.
func (r *subRegistry) deliver(d *proto.Datum) {
	sl := &r.slots[slot.Of(d.DataInfoID)]
	now := time.Now()
	var changed [len(proto.Scopes)]struct {
		t    *topic
		st   *pushState
		subs []*clientConn
	}
	sl.mu.Lock()
	for i, s := range proto.Scopes {
		if t := sl.topics[topicKey{d.DataInfoID, s}]; t != nil {
			if st := r.setState(t, d, now); st != nil {
				changed[i].t, changed[i].st = t, st
				changed[i].subs = slices.Collect(maps.Keys(t.subs))
			}
		}
	}
	sl.mu.Unlock()
	// Written outside the slot's lock: the writes to a big topic's
	// subscribers do not hold up the slot's subscribes meanwhile. A
	// subscriber that left in between is told nothing (tryPush and the
	// push loop check), and one that came has been marked by add.
	for _, ch := range changed {
		if ch.t != nil {
			r.push(ch.t, ch.st, ch.subs)
		}
	}
}

// setState makes d, received at at, t's state if it is newer and
// changes what t's scope sees, and returns that state (nil if not); the
// slot's mu is held. The caller tells the subscribers.
func (r *subRegistry) setState(t *topic, d *proto.Datum, at time.Time) *pushState {
	cur := t.state.Load()
	if cur != nil && d.Version <= cur.version {
		return nil
	}
	v, filtered := r.n.view(d, t.scope)
	st := &pushState{version: d.Version, received: at, filtered: filtered}
	if filtered || cur != nil && cur.filtered {
		st.hash = entriesHash(v.Entries)
		if cur != nil && cur.hash == st.hash {
			return nil // a change this scope does not see
		}
	}
	st.frame, st.payload = pushFrame(t.id, v.AppendPushJSON(nil))
	t.state.Store(st)
	return st
}

// counts returns topics and subscriptions held.
func (r *subRegistry) counts() (topics, subs int) {
	for i := range r.slots {
		sl := &r.slots[i]
		sl.mu.Lock()
		topics += len(sl.topics)
		for _, t := range sl.topics {
			subs += len(t.subs)
		}
		sl.mu.Unlock()
	}
	return
}

// retarget asks the manager to move watches whose slot changed leader.
func (r *subRegistry) retarget(n *Node, _ *slot.Table) {
	r.start(n)
	r.request(watchReq{table: true})
}

// renewFeed opens the feed from the data node at addr again, with every
// id watched there: after a partition between the two heals, the old
// connection may be one the data node has closed without this side
// knowing (the FIN was dropped), and TCP would find out only at its next
// retransmission, seconds later. A new SUBSCRIBE answers with the current
// state of each id, so subscribers catch up at once.
func (r *subRegistry) renewFeed(n *Node, addr string) {
	r.start(n)
	r.request(watchReq{renew: addr})
}

// manage owns which data node each watched id is subscribed on; one
// goroutine, so watch, unwatch and re-targeting never race.
func (r *subRegistry) manage() {
	defer r.mgrWg.Done()
	watched := make(map[string]string) // id -> data node address ("" = unrouted)
	prefixes := make(map[string]struct{})
	// pwatched are the data nodes whose feed watches every prefix.
	pwatched := make(map[string]bool)
	// pwatchAll has each data node of the table watch every prefix.
	pwatchAll := func() {
		if len(prefixes) == 0 {
			return
		}
		t := r.n.table.Load()
		if t == nil {
			return
		}
		for _, nd := range t.Nodes {
			if !pwatched[nd.Addr] {
				pwatched[nd.Addr] = true
				r.feed(nd.Addr).WatchPrefixes(slices.Collect(maps.Keys(prefixes)))
			}
		}
	}
	for {
		var w watchReq
		select {
		case w = <-r.reqs:
		case <-r.stop:
			return
		}
		switch {
		case w.pattern != "" && w.add:
			if !r.n.pwatch.has(w.pattern) {
				continue // its last client left meanwhile
			}
			prefixes[w.pattern] = struct{}{}
			// Every node that has a feed watches it again (its answer
			// is all it holds under the prefix, which a new group has
			// not got); the others get all prefixes.
			for addr := range pwatched {
				r.feed(addr).WatchPrefixes([]string{w.pattern})
			}
			pwatchAll()
		case w.pattern != "":
			if r.n.pwatch.has(w.pattern) {
				continue // a new client took the old one's place
			}
			delete(prefixes, w.pattern)
			for addr := range pwatched {
				r.feed(addr).UnwatchPrefix(w.pattern)
			}
		case w.renew != "":
			var ids []string
			for id, addr := range watched {
				if addr == w.renew {
					ids = append(ids, id)
				}
			}
			r.closeFeed(w.renew)
			delete(pwatched, w.renew)
			if len(ids) > 0 {
				r.feed(w.renew).Watch(ids)
			}
			pwatchAll()
		case w.table:
			byAddr := make(map[string][]string)
			oldBy := make(map[string][]string)
			for id, addr := range watched {
				na, _ := r.n.router.leaderAddr(id)
				if na == addr {
					continue
				}
				if addr != "" {
					oldBy[addr] = append(oldBy[addr], id)
				}
				if na != "" {
					byAddr[na] = append(byAddr[na], id)
				}
				watched[id] = na
			}
			t := r.n.table.Load()
			for addr, ids := range oldBy {
				if t != nil && !hasAddr(t, addr) {
					r.closeFeed(addr) // the node left the cluster
					delete(pwatched, addr)
					continue
				}
				r.feed(addr).Unwatch(ids)
			}
			for addr, ids := range byAddr {
				r.feed(addr).Watch(ids)
			}
			for addr := range pwatched {
				if t != nil && !hasAddr(t, addr) {
					r.closeFeed(addr)
					delete(pwatched, addr)
				}
			}
			pwatchAll()
		case w.add:
			// Requests can arrive out of order (a topic's last subscriber
			// leaves, a new one makes a new topic, and the two requests
			// race), so each is checked against the topics as they are.
			if !r.has(w.id) {
				continue
			}
			addr, ok := watched[w.id]
			if !ok {
				addr, _ = r.n.router.leaderAddr(w.id)
				watched[w.id] = addr
			}
			// Subscribed again even where still watched: the answer is
			// the current state, which a new topic has not got.
			if addr != "" {
				r.feed(addr).Watch([]string{w.id})
			}
		default:
			addr, ok := watched[w.id]
			if !ok || r.has(w.id) {
				continue // a new topic took the old one's place
			}
			delete(watched, w.id)
			if addr != "" {
				r.feed(addr).Unwatch([]string{w.id})
			}
		}
	}
}

// has says whether some client of this session subscribes to id.
func (r *subRegistry) has(id string) bool {
	sl := &r.slots[slot.Of(id)]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for _, s := range proto.Scopes {
		if _, ok := sl.topics[topicKey{id, s}]; ok {
			return true
		}
	}
	return false
}

// feed is the change feed from the data node at addr, opened on first
// use.
func (r *subRegistry) feed(addr string) inproc.Feed {
	r.feedsMu.Lock()
	defer r.feedsMu.Unlock()
	if f := r.feeds[addr]; f != nil {
		return f
	}
	if d := r.n.local(addr); d != nil {
		// Delivered from the data node's stream goroutine.
		f := d.OpenFeed(r.take)
		r.feeds[addr] = f
		return f
	}
	f := &pubsubFeed{n: r.n, addr: addr, rdb: r.n.newDataClient(addr)}
	f.ps = f.rdb.Subscribe(context.Background())
	ch := f.ps.Channel(redis.WithChannelSize(4096), redis.WithChannelHealthCheckInterval(time.Second))
	r.feeds[addr] = f
	r.feedWg.Add(1)
	go func() {
		defer r.feedWg.Done()
		for msg := range ch {
			d, err := proto.ParseDatum([]byte(msg.Payload))
			if err != nil || d.DataInfoID != msg.Channel {
				r.n.log.Warn("bad change notice", "data", addr, "channel", msg.Channel, "err", err)
				continue
			}
			r.take(d)
		}
	}()
	return f
}

// take is a change from a feed.
func (r *subRegistry) take(d *proto.Datum) {
	r.deliver(d)
	r.n.pwatch.deliver(r.n, d)
}

func hasAddr(t *slot.Table, addr string) bool {
	for _, n := range t.Nodes {
		if n.Addr == addr {
			return true
		}
	}
	return false
}

// closeFeed drops the feed from a data node that left the table; go-redis
// would otherwise keep reconnecting to it forever.
func (r *subRegistry) closeFeed(addr string) {
	r.feedsMu.Lock()
	f := r.feeds[addr]
	delete(r.feeds, addr)
	r.feedsMu.Unlock()
	if f != nil {
		f.Close()
	}
}

// closeFeeds stops the manager first, so no feed opens after the feeds
// are closed, then waits for the feed readers.
func (r *subRegistry) closeFeeds() {
	close(r.stop)
	r.mgrWg.Wait()
	r.feedsMu.Lock()
	for _, f := range r.feeds {
		f.Close()
	}
	r.feedsMu.Unlock()
	r.feedWg.Wait()
}
