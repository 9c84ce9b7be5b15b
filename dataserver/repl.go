package dataserver

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/internal/rlink"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
)

// Replication is pull-based: each follower long-polls each leader it
// follows slots of with one DPULL for all those slots. A leader answers as
// soon as any of them has new entries, so followers lag by a round trip,
// not by a polling interval. A position also acknowledges what the
// follower has applied, which is what a handoff and a TTL write wait for.

const (
	pullWait     = 500 * time.Millisecond
	pullMaxBatch = 4096
	// pullLinger is how long a leader holds a pull that has news before it
	// answers, so that the writes of the next moment ride on the same
	// answer. Under load this turns one pull per write batch into about
	// one per millisecond per follower; unloaded it delays only what waits
	// on a follower (TTL writes, handoffs) by as much.
	pullLinger = time.Millisecond
	// pullFull is the backlog at which a pull is answered without
	// lingering: the answer is worth its round trip already.
	pullFull = 256
)

// signalAppend wakes every long poll waiting for new entries.
func (n *Node) signalAppend() {
	n.appendMu.Lock()
	close(n.appendCh)
	n.appendCh = make(chan struct{})
	n.appendMu.Unlock()
}

func (n *Node) appendSignal() <-chan struct{} {
	n.appendMu.Lock()
	defer n.appendMu.Unlock()
	return n.appendCh
}

type pullResult struct {
	slot  int
	kind  string
	epoch uint64
	blob  []byte
}

func (n *Node) handlePull(conn redcon.Conn, p *proto.DPull) {
	n.ackPull(p)
	n.awaitNews(time.Duration(p.WaitMs)*time.Millisecond, func() (int, bool) { return n.pullBacklog(p) })
	res := n.pullOnce(p)
	conn.WriteArray(len(res))
	for _, r := range res {
		conn.WriteArray(4)
		conn.WriteInt(r.slot)
		conn.WriteBulkString(r.kind)
		conn.WriteUint64(r.epoch)
		conn.WriteBulk(r.blob)
	}
}

// awaitNews holds a long poll until backlog says there is news (then
// lingers a moment unless the news is urgent or already a full batch),
// for at most wait.
func (n *Node) awaitNews(wait time.Duration, backlog func() (int, bool)) {
	deadline := time.Now().Add(wait)
	for {
		sig := n.appendSignal()
		backlog, urgent := backlog()
		if backlog > 0 {
			if backlog < pullFull && !urgent {
				pause(min(pullLinger, time.Until(deadline)), n.stop)
			}
			break
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		timer := time.NewTimer(wait)
		select {
		case <-sig:
		case <-timer.C:
		case <-n.stop:
		}
		timer.Stop()
		if n.closing.Load() {
			break
		}
	}
}

// pause waits for d; false if stop closed first.
func pause(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// ackPull records each position as what the follower has applied.
func (n *Node) ackPull(p *proto.DPull) {
	for _, pos := range p.Pos {
		n.slots[pos.Slot].ack(p.Follower, pos.LeaderEpoch, pos.Seq)
	}
}

// pullBacklog counts the entries the positions are behind by, over the
// slots led here; a position on another leader epoch (it needs a
// snapshot) counts as a full batch. urgent says a writer waits for the
// follower to have some of them (a TTL write): the pull is then answered
// at once, since lingering would add to that write's latency.
func (n *Node) pullBacklog(p *proto.DPull) (total int, urgent bool) {
	for _, pos := range p.Pos {
		b, u := n.slots[pos.Slot].backlog(pos.LeaderEpoch, pos.Seq)
		total += b
		urgent = urgent || u
	}
	return total, urgent
}

// pullOnce answers the positions that have news: entries, or a snapshot
// for a follower on another leader epoch or too far behind the op-log.
func (n *Node) pullOnce(p *proto.DPull) []pullResult {
	var res []pullResult
	now := time.Now().UnixNano()
	for _, pos := range p.Pos {
		epoch, es, snap, ok := n.slots[pos.Slot].since(pos.LeaderEpoch, pos.Seq, pullMaxBatch, now)
		switch {
		case !ok:
		case snap != nil:
			res = append(res, pullResult{slot: pos.Slot, kind: proto.PullSnap, epoch: epoch, blob: snap.AppendBinary(nil)})
		case len(es) > 0:
			res = append(res, pullResult{slot: pos.Slot, kind: proto.PullLog, epoch: epoch, blob: proto.AppendEntries(nil, es)})
		}
	}
	return res
}

// replicator runs one puller per leader this node follows slots of,
// keyed by the leader's node ID.
type replicator struct {
	n *Node
	pullerSet[string]
}

// pullerSet holds running pullers by key K, each polling one address.
type pullerSet[K comparable] struct {
	mu      sync.Mutex
	pullers map[K]*puller
	wg      sync.WaitGroup
}

// match halts the pullers not wanted or wanted at another address, and
// starts run for each wanted key that has none.
func (s *pullerSet[K]) match(want map[K]string, run func(K, *puller)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pullers == nil {
		s.pullers = make(map[K]*puller)
	}
	for k, p := range s.pullers {
		if addr, ok := want[k]; !ok || addr != p.addr {
			p.halt()
			delete(s.pullers, k)
		}
	}
	for k, addr := range want {
		if _, ok := s.pullers[k]; ok {
			continue
		}
		p := &puller{addr: addr, stop: make(chan struct{})}
		s.pullers[k] = p
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer p.drop()
			run(k, p)
		}()
	}
}

// close halts every puller and waits for them.
func (s *pullerSet[K]) close() {
	s.mu.Lock()
	for k, p := range s.pullers {
		p.halt()
		delete(s.pullers, k)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// puller long-polls one leader on a connection of its own (rlink: a
// pull is one small command and one reply, and go-redis cost more than
// both). halt closes that connection so a poll in flight ends at once.
type puller struct {
	addr string
	stop chan struct{}
	mu   sync.Mutex
	conn *rlink.Conn
}

func (p *puller) halt() {
	close(p.stop)
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// dial connects to the leader unless the puller was halted meanwhile.
func (p *puller) dial(n *Node) (*rlink.Conn, error) {
	c, err := rlink.Dial(p.addr, rlink.Options{Password: n.cfg.Secret.Current, TLS: n.cfg.PeerTLS, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop: // halted meanwhile: halt closed stop before taking mu
		c.Close()
		return nil, net.ErrClosed
	default:
	}
	p.conn = c
	return c, nil
}

func (p *puller) drop() {
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
	p.mu.Unlock()
}

func newReplicator(n *Node) *replicator { return &replicator{n: n} }

// pollOptions say how a puller polls (see poll).
type pollOptions struct {
	idle                time.Duration // pause when there is nothing to ask
	timeout             time.Duration // a round's answer is due within this
	backoff, maxBackoff time.Duration // after a failed round, doubling
	// request appends the next request to dst; false: nothing to ask now.
	request func(dst []byte) ([]byte, bool)
	// dialed, if set, learns each dial's error.
	dialed func(error)
	// failed, if set, learns each failed round's error.
	failed func(error)
	// answer takes an array reply and says how long to pause before the
	// next round.
	answer func(*rlink.Reply) time.Duration
}

// poll is a puller's life, until it is halted: each round sends the next
// request on the puller's connection (dialled when it has none) and hands
// the reply to o.answer; a round that fails drops the connection and
// backs off.
func (p *puller) poll(n *Node, o pollOptions) {
	backoff := o.backoff
	var buf []byte
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		var ok bool
		if buf, ok = o.request(buf[:0]); !ok {
			if !pause(o.idle, p.stop) {
				return
			}
			continue
		}
		p.mu.Lock()
		c := p.conn
		p.mu.Unlock()
		var err error
		if c == nil {
			c, err = p.dial(n)
			if o.dialed != nil {
				o.dialed(err)
			}
		}
		var rep *rlink.Reply
		if err == nil {
			rep, err = c.Do(time.Now().Add(o.timeout), buf)
		}
		if err == nil && rep.Kind != '*' {
			err = fmt.Errorf("poll %s: reply %q %s", p.addr, rep.Kind, rep.Str)
		}
		if err != nil {
			if o.failed != nil {
				o.failed(err)
			}
			p.drop()
			if !pause(backoff, p.stop) {
				return
			}
			backoff = min(2*backoff, o.maxBackoff)
			continue
		}
		backoff = o.backoff
		if !pause(o.answer(rep), p.stop) {
			return
		}
	}
}

// update starts and stops pullers to match the table.
func (r *replicator) update(t *slot.Table) {
	me := r.n.cfg.NodeID
	want := make(map[string]string)
	for _, s := range t.FollowedBy(me) {
		l := t.Slots[s].Leader
		if l == "" || l == me {
			continue
		}
		if addr, ok := t.Addr(l); ok {
			want[l] = addr
		}
	}
	r.match(want, r.run)
}

// run pulls the slots this node follows from leader.
func (r *replicator) run(leader string, p *puller) {
	n := r.n
	p.poll(n, pollOptions{
		idle: 50 * time.Millisecond, timeout: pullWait + 5*time.Second,
		backoff: 20 * time.Millisecond, maxBackoff: 500 * time.Millisecond,
		request: func(dst []byte) ([]byte, bool) {
			req := r.positions(leader)
			return req.AppendRESP(dst), len(req.Pos) > 0
		},
		dialed: func(err error) {
			if errors.Is(err, syscall.ECONNREFUSED) {
				// The leader's process is likely gone: tell meta, which
				// checks and may fail it over now rather than after its
				// lease (see proto.Suspect).
				n.meta.Suspect(leader)
			}
		},
		answer: func(rep *rlink.Reply) time.Duration {
			now := time.Now().UnixNano()
			for i := range rep.Arr {
				r.applyResult(&rep.Arr[i], now, leader)
			}
			n.pulls.Add(1)
			return 0
		},
	})
}

// positions builds a DPULL for the slots this node follows from leader.
func (r *replicator) positions(leader string) *proto.DPull {
	n := r.n
	req := &proto.DPull{Follower: n.cfg.NodeID, WaitMs: uint32(pullWait / time.Millisecond)}
	t := n.table.Load()
	if t == nil {
		return req
	}
	for _, s := range t.FollowedBy(n.cfg.NodeID) {
		if t.Slots[s].Leader != leader {
			continue
		}
		if epoch, seq, ok := n.slots[s].position(); ok {
			req.Pos = append(req.Pos, proto.PullPos{Slot: s, LeaderEpoch: epoch, Seq: seq})
		}
	}
	return req
}

// applyResult applies one [slot, kind, leaderEpoch, blob] of a pull reply.
func (r *replicator) applyResult(v *rlink.Reply, now int64, leader string) {
	n := r.n
	if len(v.Arr) != 4 || v.Arr[0].Kind != ':' {
		return
	}
	s64, kind, blob := v.Arr[0].Int, string(v.Arr[1].Str), v.Arr[3].Str
	if s64 < 0 || s64 >= slot.Count {
		return
	}
	s := int(s64)
	if t := n.table.Load(); t == nil || t.Slots[s].Leader != leader {
		return
	}
	u := n.slots[s]
	switch kind {
	case proto.PullLog:
		es, err := proto.ParseEntries(blob)
		if err != nil {
			n.log.Warn("bad pull reply", "slot", s, "leader", leader, "err", err)
			return
		}
		u.replay(es, now)
	case proto.PullSnap:
		snap, err := proto.ParseSlotSnapshot(blob)
		if err != nil {
			n.log.Warn("bad snapshot", "slot", s, "leader", leader, "err", err)
			return
		}
		if u.install(snap, now) {
			n.log.Debug("installed slot snapshot", "slot", s, "leader", leader, "seq", snap.Seq, "datums", len(snap.Datums))
		}
	}
}
