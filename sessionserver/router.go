package sessionserver

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/internal/rlink"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// writeReq is one op on its way to a slot leader. done is nil for writes
// nobody waits on (re-syncs, clean-ups after a connection closed).
type writeReq struct {
	op       proto.Op
	deadline time.Time
	done     chan struct{}
	res      uint64
	err      error
	backoff  time.Duration
	slot     int
}

func (r *writeReq) finish(res uint64, err error) {
	r.res, r.err = res, err
	if r.done != nil {
		close(r.done)
	}
}

// router forwards writes to slot leaders. Each data node gets one link: a
// goroutine that gathers whatever writes are queued into one DWRITE, so
// under load one round trip carries hundreds of ops, and the ops for one
// node keep the order they were submitted in.
type router struct {
	n        *Node
	mu       sync.Mutex
	links    map[string]*link
	inflight atomic.Int64
	// slotInflight counts writes in flight per slot: a slot with writes
	// on the way is skipped by the periodic digest check.
	slotInflight [slot.Count]atomic.Int32
	// gates order each slot's DSYNC against its writes (see slotGate).
	gates [slot.Count]slotGate
	// hints are owners data nodes named in NOTOWNER refusals, by slot
	// (see learn); a table at least as new as a hint overrides it.
	hints [slot.Count]atomic.Pointer[hint]
	// refreshing says a background table refresh is on its way.
	refreshing atomic.Bool
	// run and seq stamp what the session sends slot leaders, in the
	// order it sends it (see proto.Stamp).
	run  uint64
	seq  atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

// hint is a slot's owner as a data node with a newer table than the
// session's named it, as a Redis Cluster node names one in MOVED.
type hint struct {
	addr  string
	epoch uint64 // the table epoch of the node that named it
}

type link struct {
	addr string
	// local, for a data node of this process, takes the write batches
	// by call; raw is then never dialed. amu then serializes stamping
	// and applying a batch, whoever sends it (sendNow or the send loop),
	// and queued counts the writes handed to the send loop and not yet
	// settled.
	local  inproc.Data
	amu    sync.Mutex
	queued atomic.Int64
	one    [1]*writeReq  // sendNow's batch, under amu
	rdb    *redis.Client // lookups
	ch     chan *writeReq
	// The write path, used by sendLoop alone: its own connection, the
	// batch and the encoded command, all reused from batch to batch.
	raw *rlink.Conn
	w   proto.DWrite
	buf []byte
	// cur is raw, for closing from another goroutine: gone is set when
	// the node leaves the table (see leftTable), and closing cur ends a
	// batch that waits on it.
	cur  atomic.Pointer[rlink.Conn]
	gone atomic.Bool
}

func newRouter(n *Node) *router {
	return &router{n: n, links: make(map[string]*link), run: rand.Uint64(), stop: make(chan struct{})}
}

// stamp stamps a write batch or a sync about to be sent.
func (r *router) stamp() proto.Stamp {
	return proto.Stamp{Run: r.run, Seq: r.seq.Add(1)}
}

// newDataClient returns a go-redis client for a data node, shared by the
// write link, lookups and the change feed. It authenticates with the
// cluster secret on every new connection and speaks TLS when the
// inter-node links do.
func (n *Node) newDataClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        n.cfg.ClusterSecret,
		TLSConfig:       n.cfg.PeerTLS,
		Protocol:        2,
		DisableIdentity: true,
		MaxRetries:      -1,
		DialTimeout:     time.Second,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
		// A caller's deadline bounds its wait: without this go-redis
		// waits ReadTimeout whatever the context says, so a reconcile
		// with a cut-off leader took 5 s, past the new leaders' wait.
		ContextTimeoutEnabled: true,
		PoolSize:              8,
	})
}

func (r *router) link(addr string) *link {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.links[addr]; l != nil {
		return l
	}
	l := &link{addr: addr, local: r.n.local(addr), rdb: r.n.newDataClient(addr), ch: make(chan *writeReq, 4096)}
	r.links[addr] = l
	r.wg.Add(1)
	go r.sendLoop(l)
	return l
}

// submit routes a write to its slot's leader. With done == nil the caller
// does not wait; the write is still retried until its deadline.
func (r *router) submit(op *proto.Op, done chan struct{}) *writeReq {
	return r.submitAdmitted(op, done, nil)
}

// submitAdmitted is submit with admit run once the write has passed its
// slot's gate, before it is sent: what admit changes in the session's
// list of publishers (a connection taking a publisher, or letting it go)
// then happens in the write's place in the slot's order, never inside a
// reconcile that holds the slot's writes back. An error from admit is
// the write's, and nothing is sent.
func (r *router) submitAdmitted(op *proto.Op, done chan struct{}, admit func() error) *writeReq {
	timeout := r.n.writeTimeout()
	if done == nil {
		timeout *= 3
	}
	req := &writeReq{op: *op, deadline: time.Now().Add(timeout), done: done, slot: slot.Of(op.DataInfoID)}
	if !r.gates[req.slot].enterWrite(req.deadline) {
		req.finish(0, proto.Errorf(proto.ErrTimeout, "slot %d was being reconciled with its leader until the write's deadline; not sent", req.slot))
		return req
	}
	if admit != nil {
		if err := admit(); err != nil {
			r.gates[req.slot].exitWrite()
			req.finish(0, err)
			return req
		}
	}
	r.inflight.Add(1)
	r.slotInflight[req.slot].Add(1)
	r.route(req)
	return req
}

func (r *router) route(req *writeReq) {
	addr, err := r.leaderAddr(req.op.DataInfoID)
	if err != nil {
		r.retry([]*writeReq{req}, err)
		return
	}
	l := r.link(addr)
	if l.local != nil && r.sendNow(l, req) {
		return
	}
	l.queued.Add(1)
	select {
	case l.ch <- req:
	case <-r.stop:
		l.queued.Add(-1)
		r.complete(req, 0, proto.Errorf(proto.ErrUnavailable, "session is stopping"))
	}
}

// sendNow applies req on the caller's goroutine when its leader is a data
// node of this process that nothing else is writing to, and no write to
// it waits in the queue (which req must not overtake): the write then
// costs no hand-off to the send loop and back. It reports whether it
// did; under load the writes queue up and go in batches as before.
func (r *router) sendNow(l *link, req *writeReq) bool {
	if l.queued.Load() != 0 || !l.amu.TryLock() {
		return false
	}
	defer l.amu.Unlock()
	if l.queued.Load() != 0 {
		return false
	}
	l.one[0] = req
	r.sendBatch(l, l.one[:])
	l.one[0] = nil
	return true
}

func (r *router) complete(req *writeReq, res uint64, err error) {
	req.finish(res, err)
	r.slotInflight[req.slot].Add(-1)
	r.inflight.Add(-1)
	r.gates[req.slot].exitWrite()
}

func (r *router) leaderAddr(id string) (string, error) {
	return r.slotLeaderAddr(slot.Of(id))
}

// slotLeaderAddr is the address of slot s's leader: a hint newer than the
// table, else the table's.
func (r *router) slotLeaderAddr(s int) (string, error) {
	t := r.n.table.Load()
	if h := r.hints[s].Load(); h != nil && (t == nil || h.epoch > t.Epoch) {
		return h.addr, nil
	}
	if t == nil {
		return "", proto.Errorf(proto.ErrUnavailable, "session has no slot table yet")
	}
	leader := t.Slots[s].Leader
	addr, ok := t.Addr(leader)
	if leader == "" || !ok {
		return "", proto.Errorf(proto.ErrUnavailable, "slot %d has no leader (table epoch %d)", s, t.Epoch)
	}
	return addr, nil
}

func (r *router) sendLoop(l *link) {
	defer r.wg.Done()
	defer func() {
		if l.raw != nil {
			l.raw.Close()
		}
	}()
	max := r.n.cfg.MaxBatch
	batch := make([]*writeReq, 0, max)
	for {
		select {
		case req := <-l.ch:
			batch = append(batch, req)
		case <-r.stop:
			return
		}
	gather:
		for len(batch) < max {
			select {
			case req := <-l.ch:
				batch = append(batch, req)
			default:
				break gather
			}
		}
		r.send(l, batch)
		l.queued.Add(-int64(len(batch)))
		clear(batch)
		batch = batch[:0]
	}
}

// learn takes the owner a NOTOWNER names as its slot's route when the
// refusing node's table is newer than the session's and than any hint
// the slot has, so a refused write goes there at once instead of waiting
// for meta. It reports whether it did; an older hint (a node that has not
// caught up) is ignored, and a newer table overrides the hint.
func (r *router) learn(no *proto.NotOwnerError) bool {
	if no.Addr == "" || no.Slot < 0 || no.Slot >= slot.Count {
		return false
	}
	h := &hint{addr: no.Addr, epoch: no.Epoch}
	for {
		if t := r.n.table.Load(); t != nil && t.Epoch >= no.Epoch {
			return false
		}
		cur := r.hints[no.Slot].Load()
		if cur != nil && cur.epoch >= no.Epoch {
			return false
		}
		if r.hints[no.Slot].CompareAndSwap(cur, h) {
			r.n.log.Debug("slot redirected by its old owner", "slot", no.Slot, "owner", no.Owner, "addr", no.Addr, "epoch", no.Epoch)
			return true
		}
	}
}

// moved reports whether err is a NOTOWNER for slot s naming an owner the
// router has learnt to route to.
func (r *router) moved(err error, s int) bool {
	var no *proto.NotOwnerError
	return errors.As(err, &no) && no.Slot == s && r.learn(no)
}

// refreshSoon asks meta for the table in the background, once at a
// time: a hint is followed meanwhile.
func (r *router) refreshSoon() {
	if !r.refreshing.CompareAndSwap(false, true) {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r.n.refreshTable(ctx)
	}()
}

// redirect routes requests again at once, to the owners learnt for their
// slots; from its own goroutine, as a send loop must not block on
// another link's queue.
func (r *router) redirect(reqs []*writeReq) {
	r.refreshSoon()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for _, req := range reqs {
			r.route(req)
		}
	}()
}

// send carries one batch and settles each op: done, failed for good,
// sent on to the owner a NOTOWNER named, or queued for a retry after the
// table is refreshed.
func (r *router) send(l *link, batch []*writeReq) {
	if l.local != nil {
		l.amu.Lock()
		defer l.amu.Unlock()
	}
	r.sendBatch(l, batch)
}

// sendBatch is send, with amu held for a local link.
func (r *router) sendBatch(l *link, batch []*writeReq) {
	t := r.n.table.Load()
	if l.gone.Load() {
		// Not to a node meta has evicted (it may hang): the writes go to
		// the slots' new leaders.
		r.retry(append([]*writeReq(nil), batch...), proto.Errorf(proto.ErrUnavailable, "data node %s left the table", l.addr))
		return
	}
	l.w.SessionID, l.w.Zone, l.w.Epoch, l.w.Stamp = r.n.cfg.NodeID, r.n.cfg.Zone, 0, r.stamp()
	if t != nil {
		l.w.Epoch = t.Epoch
	}
	l.w.Ops = l.w.Ops[:0]
	for _, req := range batch {
		l.w.Ops = append(l.w.Ops, req.op)
	}
	if l.local != nil {
		results, refused := l.local.ApplyWrite(&l.w)
		clear(l.w.Ops)
		r.settle(l, batch, len(results), func(i int) (uint64, error) {
			if refused != nil && refused[i] != nil {
				// As the port would carry it, so that both paths
				// settle alike.
				return 0, proto.FromRESP(proto.ToRESP(refused[i]))
			}
			return results[i], nil
		}, nil)
		return
	}
	l.buf = l.w.AppendRESP(l.buf[:0])
	// The batch waits no longer than its most pressing write may: a node
	// that does not answer costs a caller its deadline, not the link's
	// whole read timeout past it.
	deadline := time.Now().Add(5 * time.Second)
	for _, req := range batch {
		if req.deadline.Before(deadline) {
			deadline = req.deadline
		}
	}
	rep, err := l.do(r.n, l.buf, deadline)
	clear(l.w.Ops)
	if err == nil {
		switch {
		case rep.Kind == '-':
			err = proto.FromRESP(string(rep.Str))
		case rep.Kind != '*':
			err = proto.Errorf(proto.ErrUnavailable, "data node %s answered %q to a write batch", l.addr, rep.Kind)
		}
	}
	n := 0
	if err == nil {
		n = len(rep.Arr)
	}
	r.settle(l, batch, n, func(i int) (uint64, error) {
		v := &rep.Arr[i]
		switch v.Kind {
		case ':':
			return uint64(v.Int), nil
		case '-':
			return 0, proto.FromRESP(string(v.Str))
		}
		return 0, proto.Errorf(proto.ErrInvalid, "unexpected reply %q from data node %s", v.Kind, l.addr)
	}, err)
}

// settle settles a batch's ops by the data node's answer: err for the
// whole batch, else op i's result or error from answer(i).
func (r *router) settle(l *link, batch []*writeReq, n int, answer func(i int) (uint64, error), err error) {
	if err == nil && n != len(batch) {
		err = proto.Errorf(proto.ErrUnavailable, "data node %s answered %d results for %d ops", l.addr, n, len(batch))
	}
	if err != nil {
		if errors.Is(err, proto.ErrInvalid) {
			for _, req := range batch {
				r.complete(req, 0, err)
			}
			return
		}
		if errors.Is(err, proto.ErrDropped) {
			r.n.onDropped(l.addr, err)
		}
		r.retry(append([]*writeReq(nil), batch...), err)
		return
	}
	var again, moved []*writeReq
	var lastErr error
	for i, req := range batch {
		res, e := answer(i)
		switch {
		case e == nil:
			r.complete(req, res, nil)
		case errors.Is(e, proto.ErrInvalid):
			r.complete(req, 0, e)
		case r.moved(e, req.slot):
			moved = append(moved, req)
		default:
			if errors.Is(e, proto.ErrDropped) && lastErr == nil {
				r.n.onDropped(l.addr, e) // once a batch
			}
			again = append(again, req)
			lastErr = e
		}
	}
	if len(moved) > 0 {
		r.redirect(moved)
	}
	if len(again) > 0 {
		r.retry(again, lastErr)
	}
}

// do sends one encoded command on the link's write connection, dialing
// it first if need be. A failed connection is dropped, to be dialed again
// by the next batch; the failure is a network one, so the ops are retried.
func (l *link) do(n *Node, cmd []byte, deadline time.Time) (*rlink.Reply, error) {
	if l.raw == nil {
		// A dial waits no longer than the batch may.
		timeout := min(time.Second, max(time.Until(deadline), 10*time.Millisecond))
		c, err := rlink.Dial(l.addr, rlink.Options{Password: n.cfg.ClusterSecret, TLS: n.cfg.PeerTLS, Timeout: timeout})
		if err != nil {
			var re rlink.Error
			if errors.As(err, &re) {
				return nil, proto.FromRESP(string(re))
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				n.suspect(l.addr)
			}
			return nil, proto.Errorf(proto.ErrUnavailable, "data node %s: %v", l.addr, err)
		}
		l.raw = c
		l.cur.Store(c)
		if l.gone.Load() { // left the table while dialing
			c.Close()
		}
	}
	rep, err := l.raw.Do(deadline, cmd)
	if err != nil {
		l.raw.Close()
		l.raw = nil
		l.cur.Store(nil)
		return nil, proto.Errorf(proto.ErrUnavailable, "data node %s: %v", l.addr, err)
	}
	return rep, nil
}

// suspect reports the data node at addr to meta: it refused a
// connection, so its process is likely gone, and meta may evict it now
// rather than when its lease lapses (see proto.Suspect).
func (n *Node) suspect(addr string) {
	t := n.table.Load()
	if t == nil {
		return
	}
	for _, d := range t.Nodes {
		if d.Addr == addr {
			n.meta.Suspect(d.ID)
			return
		}
	}
}

// leftTable is told of each table the session adopts after old: links to
// data nodes that were in old and are not in t stop waiting on them. A
// node meta evicted may only hang (paused, cut off), and a batch sent to
// it would wait out the full read timeout on a node no longer in charge;
// its connection is closed instead, and that batch and later ones go to
// the slots' new leaders. A node back in the table is written to again.
func (r *router) leftTable(old, t *slot.Table) {
	in := func(t *slot.Table, addr string) bool {
		for _, n := range t.Nodes {
			if n.Addr == addr {
				return true
			}
		}
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for addr, l := range r.links {
		switch now := in(t, addr); {
		case !now && old != nil && in(old, addr) && !l.gone.Load():
			l.gone.Store(true)
			if c := l.cur.Load(); c != nil {
				c.Close()
			}
			r.n.log.Info("data node left the table; writes waiting on it go to the new leaders", "addr", addr, "epoch", t.Epoch)
		case now && l.gone.Load():
			l.gone.Store(false)
		}
	}
}

// retry refreshes the table and routes the requests again after a short,
// growing pause, failing those whose deadline has passed.
func (r *router) retry(reqs []*writeReq, cause error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		// The table refresh takes no longer than the latest caller may
		// still wait: a write is answered at its deadline, not a refresh
		// later.
		last := time.Now()
		for _, req := range reqs {
			if req.deadline.After(last) {
				last = req.deadline
			}
		}
		refreshBy := time.Now().Add(time.Second)
		if last.Before(refreshBy) {
			refreshBy = last
		}
		ctx, cancel := context.WithDeadline(context.Background(), refreshBy)
		r.n.refreshTable(ctx)
		cancel()
		wait := 10 * time.Millisecond
		for _, req := range reqs {
			if req.backoff > wait {
				wait = req.backoff
			}
		}
		if until := time.Until(last); until < wait {
			wait = max(until, 0)
		}
		select {
		case <-time.After(wait):
		case <-r.stop:
			for _, req := range reqs {
				r.complete(req, 0, proto.Errorf(proto.ErrUnavailable, "session is stopping"))
			}
			return
		}
		now := time.Now()
		for _, req := range reqs {
			if !now.Before(req.deadline) {
				r.complete(req, 0, proto.Errorf(proto.ErrTimeout, "no slot leader accepted the write in time: %v", cause))
				continue
			}
			req.backoff = min(2*wait, 200*time.Millisecond)
			r.route(req)
		}
	}()
}

// lookup reads a datum from its slot's leader, following the table.
func (r *router) lookup(ctx context.Context, id string) (*proto.Datum, error) {
	wait := 10 * time.Millisecond
	for {
		d, err := r.lookupOnce(ctx, id)
		if err == nil || errors.Is(err, proto.ErrInvalid) {
			return d, err
		}
		if r.moved(err, slot.Of(id)) {
			r.refreshSoon()
			continue
		}
		r.n.refreshTable(ctx)
		select {
		case <-ctx.Done():
			return nil, proto.Errorf(proto.ErrTimeout, "lookup of %q: %v", id, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (r *router) lookupOnce(ctx context.Context, id string) (*proto.Datum, error) {
	addr, err := r.leaderAddr(id)
	if err != nil {
		return nil, err
	}
	req := proto.DLookup{DataInfoID: id}
	if t := r.n.table.Load(); t != nil {
		req.Epoch = t.Epoch
	}
	l := r.link(addr)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := l.rdb.Do(cctx, req.Args()...).Text()
	if err != nil {
		return nil, fromRedis(err)
	}
	return proto.ParseDatum([]byte(b))
}

// drain waits until every queued write has been settled, or timeout.
func (r *router) drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for r.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *router) close() {
	close(r.stop)
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		l.rdb.Close()
	}
	// Anything still queued is failed so no caller waits forever.
	for _, l := range r.links {
		for {
			select {
			case req := <-l.ch:
				r.complete(req, 0, proto.Errorf(proto.ErrUnavailable, "session is stopping"))
				continue
			default:
			}
			break
		}
	}
}

// fromRedis turns a go-redis error into one of proto's sentinels: a RESP
// error reply by its prefix, anything else (the network) as unavailable.
func fromRedis(err error) error {
	var re redis.Error
	if errors.As(err, &re) {
		return proto.FromRESP(re.Error())
	}
	if errors.Is(err, redis.Nil) {
		return proto.Errorf(proto.ErrUnavailable, "empty reply")
	}
	return proto.Errorf(proto.ErrUnavailable, "%v", err)
}
