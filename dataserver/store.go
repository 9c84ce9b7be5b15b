package dataserver

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/btree"
)

// publisher is one registration as a replica of its slot holds it.
type publisher struct {
	registerID string
	data       string
	session    string // owning session node
	conn       string // owning client connection; "" for TTL publishers
	ttl        uint32 // seconds; 0 = bound to its connection
	expireAt   int64  // unix nanos; 0 when not TTL-bound
}

// datum is a dataInfoId's publishers, kept sorted by registerID: most
// services have a handful of publishers, where a sorted slice is smaller
// and faster than a tree, and lookups return them in order for free.
type datum struct {
	version uint64
	pubs    []*publisher
}

func (d *datum) find(rid string) (int, bool) {
	i := sort.Search(len(d.pubs), func(i int) bool { return d.pubs[i].registerID >= rid })
	return i, i < len(d.pubs) && d.pubs[i].registerID == rid
}

// expiryKey orders TTL publishers by deadline so the sweeper pops only what
// is due.
type expiryKey struct {
	at         int64
	dataInfoID string
	registerID string
}

func expiryLess(a, b expiryKey) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.dataInfoID != b.dataInfoID {
		return a.dataInfoID < b.dataInfoID
	}
	return a.registerID < b.registerID
}

// slotStore is this node's copy of one slot, as its leader or a follower:
// datums, op-log, TTL deadlines and per-session digests, under one mutex.
// Slots never share a lock, so writes to different slots run in parallel.
//
// The leader assigns each write the next seq and the version
// leaderEpoch<<32|seq; a follower replays the leader's entries with the
// seq and version they carry, so a promoted follower continues the same
// sequence and the same versions.
type slotStore struct {
	mu          sync.Mutex
	id          int
	leading     bool
	leaderEpoch uint64 // the epoch of the leader this copy follows (or is)
	seq         uint64
	datums      btree.Map[string, *datum]
	expiry      *btree.BTreeG[expiryKey]
	log         *opLog
	publishers  int
	digests     map[string]*proto.Digest // session -> its connection-bound publishers
	retired     bool                     // the node no longer holds the slot

	// Leader only.
	ready    bool                // reconciled with the sessions: may serve reads and pushes
	waiting  map[string]struct{} // sessions a new leader still waits for
	frozen   bool                // handing the slot off: refuse writes
	frozenAt time.Time           // when it froze
	target   string              // the node the slot is handed to
	acked    map[string]uint64   // follower -> seq it has applied
	ackCh    chan struct{}       // closed and replaced whenever acked grows
}

func newSlotStore(id int, leaderEpoch uint64, logSize int) *slotStore {
	return &slotStore{
		id:          id,
		leaderEpoch: leaderEpoch,
		expiry:      btree.NewBTreeGOptions(expiryLess, btree.Options{NoLocks: true}),
		log:         newOpLog(logSize),
		digests:     make(map[string]*proto.Digest),
		acked:       make(map[string]uint64),
		ackCh:       make(chan struct{}),
	}
}

// nextVersion raises the slot's sequence and returns the version for it:
// leaderEpoch in the high 32 bits, so a new leader's versions exceed every
// version an older leader issued.
func (s *slotStore) next() (seq, version uint64) {
	s.seq++
	return s.seq, s.leaderEpoch<<32 | (s.seq & 0xffffffff)
}

func (s *slotStore) append(e LogEntry) { s.log.append(e) }

// apply runs one write as the leader at time now (unix nanos) and returns
// its result (the version for a register, 1 or 0 for unregister and
// renew), whether subscribers must hear of it, and whether it touched a
// TTL publisher (its reply then waits for a follower to have it).
func (s *slotStore) apply(session string, op *proto.Op, now int64) (result uint64, changed, ttl bool) {
	switch op.Type {
	case proto.OpRegister:
		seq, v := s.next()
		ttl = op.TTL > 0 || s.isTTL(op.DataInfoID, op.RegisterID)
		s.put(session, op, now, v)
		s.append(LogEntry{Seq: seq, Version: v, Session: session, Op: *op})
		return v, true, ttl
	case proto.OpUnregister:
		p := s.get(op.DataInfoID, op.RegisterID)
		if p == nil || (op.ConnID != "" && (p.conn != op.ConnID || p.session != session)) {
			return 0, false, false
		}
		ttl = p.ttl > 0
		seq, v := s.next()
		s.del(op.DataInfoID, op.RegisterID, v)
		s.append(LogEntry{Seq: seq, Version: v, Session: session, Op: *op})
		return 1, true, ttl
	case proto.OpRenew:
		if !s.renew(op.DataInfoID, op.RegisterID, now) {
			return 0, false, false
		}
		seq, _ := s.next()
		s.append(LogEntry{Seq: seq, Session: session, Op: *op})
		return 1, false, true
	}
	return 0, false, false
}

// replay applies a leader's entry on a follower.
func (s *slotStore) replay(e *LogEntry, now int64) {
	switch e.Op.Type {
	case proto.OpRegister:
		s.put(e.Session, &e.Op, now, e.Version)
	case proto.OpUnregister:
		s.del(e.Op.DataInfoID, e.Op.RegisterID, e.Version)
	case proto.OpRenew:
		s.renew(e.Op.DataInfoID, e.Op.RegisterID, now)
	case proto.OpTouch:
		s.touchAll(e.Version)
	}
	s.seq = e.Seq
	s.append(*e)
}

// touch raises every datum's version (a new leader after a failover), so
// that what it serves supersedes anything the old leader pushed.
func (s *slotStore) touch() {
	seq, v := s.next()
	s.touchAll(v)
	s.append(LogEntry{Seq: seq, Version: v, Op: proto.Op{Type: proto.OpTouch}})
}

func (s *slotStore) touchAll(v uint64) {
	s.datums.Scan(func(_ string, d *datum) bool {
		d.version = v
		return true
	})
}

func (s *slotStore) get(id, rid string) *publisher {
	d, ok := s.datums.Get(id)
	if !ok {
		return nil
	}
	if i, found := d.find(rid); found {
		return d.pubs[i]
	}
	return nil
}

func (s *slotStore) isTTL(id, rid string) bool {
	p := s.get(id, rid)
	return p != nil && p.ttl > 0
}

func (s *slotStore) digest(session string) *proto.Digest {
	d := s.digests[session]
	if d == nil {
		d = &proto.Digest{}
		s.digests[session] = d
	}
	return d
}

// count adds (sign 1) or removes (-1) p from its session's digest.
func (s *slotStore) count(id string, p *publisher, sign int) {
	if p.conn == "" {
		return
	}
	h := proto.PubHash(id, p.registerID, p.data, p.conn)
	d := s.digest(p.session)
	if sign > 0 {
		d.Add(h)
		return
	}
	d.Sub(h)
	if d.Count == 0 {
		delete(s.digests, p.session)
	}
}

func (s *slotStore) put(session string, op *proto.Op, now int64, version uint64) {
	d, ok := s.datums.Get(op.DataInfoID)
	if !ok {
		d = &datum{}
		s.datums.Set(op.DataInfoID, d)
	}
	p := &publisher{registerID: op.RegisterID, data: op.Data, session: session, ttl: op.TTL}
	if op.TTL > 0 {
		p.expireAt = now + int64(op.TTL)*1e9
		s.expiry.Set(expiryKey{p.expireAt, op.DataInfoID, op.RegisterID})
	} else {
		p.conn = op.ConnID
	}
	i, found := d.find(op.RegisterID)
	if found {
		s.forget(op.DataInfoID, d.pubs[i])
		d.pubs[i] = p
	} else {
		d.pubs = append(d.pubs, nil)
		copy(d.pubs[i+1:], d.pubs[i:])
		d.pubs[i] = p
		s.publishers++
	}
	s.count(op.DataInfoID, p, 1)
	d.version = version
}

// forget drops p's expiry and digest entries.
func (s *slotStore) forget(id string, p *publisher) {
	if p.expireAt != 0 {
		s.expiry.Delete(expiryKey{p.expireAt, id, p.registerID})
	}
	s.count(id, p, -1)
}

func (s *slotStore) del(id, rid string, version uint64) bool {
	d, ok := s.datums.Get(id)
	if !ok {
		return false
	}
	i, found := d.find(rid)
	if !found {
		return false
	}
	s.forget(id, d.pubs[i])
	copy(d.pubs[i:], d.pubs[i+1:])
	d.pubs[len(d.pubs)-1] = nil
	d.pubs = d.pubs[:len(d.pubs)-1]
	s.publishers--
	// An emptied datum stays, so its version keeps rising for watchers.
	d.version = version
	return true
}

func (s *slotStore) renew(id, rid string, now int64) bool {
	p := s.get(id, rid)
	if p == nil || p.ttl == 0 {
		return false
	}
	s.expiry.Delete(expiryKey{p.expireAt, id, rid})
	p.expireAt = now + int64(p.ttl)*1e9
	s.expiry.Set(expiryKey{p.expireAt, id, rid})
	return true
}

// expire removes, as the leader, the TTL publishers due at now and returns
// the dataInfoIds that changed.
func (s *slotStore) expire(now int64) []string {
	var changed []string
	for {
		k, ok := s.expiry.Min()
		if !ok || k.at > now {
			return changed
		}
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.dataInfoID, RegisterID: k.registerID}
		if _, ch, _ := s.apply("", &op, now); ch {
			changed = append(changed, k.dataInfoID)
		} else {
			s.expiry.Delete(k)
		}
	}
}

// connPubs lists a session's connection-bound publishers in the slot.
func (s *slotStore) connPubs(session string) map[pubKey]*publisher {
	out := make(map[pubKey]*publisher)
	s.datums.Scan(func(id string, d *datum) bool {
		for _, p := range d.pubs {
			if p.session == session && p.conn != "" {
				out[pubKey{id, p.registerID}] = p
			}
		}
		return true
	})
	return out
}

type pubKey struct{ id, rid string }

// dropSession removes, as the leader, every connection-bound publisher a
// session owned (meta evicted it) and returns the dataInfoIds that changed.
func (s *slotStore) dropSession(session string) []string {
	if _, ok := s.digests[session]; !ok {
		return nil
	}
	return s.sync(session, nil)
}

// sync makes the session's connection-bound publishers in the slot exactly
// pubs, as the leader, and returns the dataInfoIds that changed.
func (s *slotStore) sync(session string, pubs []proto.SyncPub) []string {
	have := s.connPubs(session)
	now := time.Now().UnixNano()
	var changed []string
	for i := range pubs {
		p := &pubs[i]
		k := pubKey{p.DataInfoID, p.RegisterID}
		cur := have[k]
		delete(have, k)
		if cur != nil && cur.data == p.Data && cur.conn == p.Conn {
			continue
		}
		op := proto.Op{Type: proto.OpRegister, DataInfoID: p.DataInfoID, RegisterID: p.RegisterID, Data: p.Data, ConnID: p.Conn}
		s.apply(session, &op, now)
		changed = append(changed, p.DataInfoID)
	}
	for k, p := range have {
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.id, RegisterID: k.rid, ConnID: p.conn}
		if _, ch, _ := s.apply(session, &op, now); ch {
			changed = append(changed, k.id)
		}
	}
	sort.Strings(changed)
	return slices.Compact(changed)
}

// snapshot returns the datum as subscribers see it. A dataInfoId never
// written has version 0 and no entries.
func (s *slotStore) snapshot(dataInfoID string) *proto.Datum {
	out := &proto.Datum{DataInfoID: dataInfoID}
	d, ok := s.datums.Get(dataInfoID)
	if !ok {
		return out
	}
	out.Version = d.version
	out.Entries = make([]proto.Entry, len(d.pubs))
	for i, p := range d.pubs {
		out.Entries[i] = proto.Entry{RegisterID: p.registerID, Data: p.data}
	}
	return out
}

// dump is the whole slot for a follower that must start over.
func (s *slotStore) dump(now int64) *proto.SlotSnapshot {
	out := &proto.SlotSnapshot{LeaderEpoch: s.leaderEpoch, Seq: s.seq, Datums: make([]proto.SnapDatum, 0, s.datums.Len())}
	s.datums.Scan(func(id string, d *datum) bool {
		sd := proto.SnapDatum{DataInfoID: id, Version: d.version, Pubs: make([]proto.SnapPub, len(d.pubs))}
		for i, p := range d.pubs {
			sp := proto.SnapPub{RegisterID: p.registerID, Data: p.data, Session: p.session, Conn: p.conn, TTL: p.ttl}
			if p.expireAt > now {
				sp.RemainMs = uint64((p.expireAt - now) / 1e6)
			}
			sd.Pubs[i] = sp
		}
		out.Datums = append(out.Datums, sd)
		return true
	})
	return out
}

// install replaces the slot's content with a leader's snapshot.
func (s *slotStore) install(snap *proto.SlotSnapshot, now int64) {
	s.datums.Clear()
	s.expiry.Clear()
	s.digests = make(map[string]*proto.Digest)
	s.publishers = 0
	for _, sd := range snap.Datums {
		d := &datum{version: sd.Version, pubs: make([]*publisher, len(sd.Pubs))}
		for i, sp := range sd.Pubs {
			p := &publisher{registerID: sp.RegisterID, data: sp.Data, session: sp.Session, conn: sp.Conn, ttl: sp.TTL}
			if sp.TTL > 0 {
				p.expireAt = now + int64(sp.RemainMs)*1e6
				s.expiry.Set(expiryKey{p.expireAt, sd.DataInfoID, sp.RegisterID})
			}
			d.pubs[i] = p
			s.count(sd.DataInfoID, p, 1)
		}
		s.publishers += len(d.pubs)
		s.datums.Set(sd.DataInfoID, d)
	}
	s.leaderEpoch, s.seq = snap.LeaderEpoch, snap.Seq
	s.log.reset(snap.Seq)
}

// ack records that follower has applied up to seq and wakes writers
// waiting for it.
func (s *slotStore) ack(follower string, seq uint64) {
	if seq <= s.acked[follower] {
		return
	}
	s.acked[follower] = seq
	close(s.ackCh)
	s.ackCh = make(chan struct{})
}

// replicated says whether some follower has applied seq; if not, it
// returns a channel that closes when acks move.
func (s *slotStore) replicated(seq uint64, followers []string) (bool, <-chan struct{}) {
	if len(followers) == 0 {
		return true, nil
	}
	for _, f := range followers {
		if s.acked[f] >= seq {
			return true, nil
		}
	}
	return false, s.ackCh
}
