package dataserver

import (
	"sort"
	"sync"

	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/btree"
)

// publisher is one registration as the slot leader holds it.
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

// slotStore is one led slot: datums, op-log and TTL deadlines, under one
// mutex. Slots never share a lock, so writes to different slots run in
// parallel.
type slotStore struct {
	mu          sync.Mutex
	id          int
	leaderEpoch uint64
	seq         uint64
	datums      btree.Map[string, *datum]
	expiry      *btree.BTreeG[expiryKey]
	log         *opLog
	publishers  int
	retired     bool // the node no longer leads the slot
}

func newSlotStore(id int, leaderEpoch uint64, logSize int) *slotStore {
	return &slotStore{
		id:          id,
		leaderEpoch: leaderEpoch,
		expiry:      btree.NewBTreeGOptions(expiryLess, btree.Options{NoLocks: true}),
		log:         newOpLog(logSize),
	}
}

// nextVersion raises the slot's sequence and returns the version for it:
// leaderEpoch in the high 32 bits, so a new leader's versions exceed every
// version an older leader issued.
func (s *slotStore) nextVersion() uint64 {
	s.seq++
	return s.leaderEpoch<<32 | (s.seq & 0xffffffff)
}

// apply runs one op at time now (unix nanos) and returns its result: the
// new version for a register, 1 or 0 for unregister and renew. changed
// says whether subscribers must hear of it.
func (s *slotStore) apply(session string, op *proto.Op, now int64) (result uint64, changed bool) {
	switch op.Type {
	case proto.OpRegister:
		return s.register(session, op, now), true
	case proto.OpUnregister:
		if s.remove(session, op) {
			return 1, true
		}
		return 0, false
	case proto.OpRenew:
		return s.renew(op, now), false
	}
	return 0, false
}

func (s *slotStore) register(session string, op *proto.Op, now int64) uint64 {
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
		old := d.pubs[i]
		if old.expireAt != 0 {
			s.expiry.Delete(expiryKey{old.expireAt, op.DataInfoID, old.registerID})
		}
		d.pubs[i] = p
	} else {
		d.pubs = append(d.pubs, nil)
		copy(d.pubs[i+1:], d.pubs[i:])
		d.pubs[i] = p
		s.publishers++
	}
	d.version = s.nextVersion()
	s.log.append(LogEntry{Seq: s.seq, Version: d.version, Session: session, Op: *op})
	return d.version
}

// remove deletes a publisher. When op.ConnID is set it removes it only if
// that connection of session still owns it, so a connection closing never
// takes away a registration another client has since replaced.
func (s *slotStore) remove(session string, op *proto.Op) bool {
	dataInfoID, registerID := op.DataInfoID, op.RegisterID
	d, ok := s.datums.Get(dataInfoID)
	if !ok {
		return false
	}
	i, found := d.find(registerID)
	if !found {
		return false
	}
	p := d.pubs[i]
	if op.ConnID != "" && (p.conn != op.ConnID || p.session != session) {
		return false
	}
	if p.expireAt != 0 {
		s.expiry.Delete(expiryKey{p.expireAt, dataInfoID, registerID})
	}
	copy(d.pubs[i:], d.pubs[i+1:])
	d.pubs[len(d.pubs)-1] = nil
	d.pubs = d.pubs[:len(d.pubs)-1]
	s.publishers--
	// An emptied datum stays, so its version keeps rising for watchers.
	d.version = s.nextVersion()
	s.log.append(LogEntry{Seq: s.seq, Version: d.version, Session: session, Op: *op})
	return true
}

func (s *slotStore) renew(op *proto.Op, now int64) uint64 {
	d, ok := s.datums.Get(op.DataInfoID)
	if !ok {
		return 0
	}
	i, found := d.find(op.RegisterID)
	if !found || d.pubs[i].ttl == 0 {
		return 0
	}
	p := d.pubs[i]
	s.expiry.Delete(expiryKey{p.expireAt, op.DataInfoID, p.registerID})
	p.expireAt = now + int64(p.ttl)*1e9
	s.expiry.Set(expiryKey{p.expireAt, op.DataInfoID, p.registerID})
	return 1
}

// expire removes the TTL publishers due at now and returns the
// dataInfoIds that changed.
func (s *slotStore) expire(now int64) []string {
	var changed []string
	for {
		k, ok := s.expiry.Min()
		if !ok || k.at > now {
			return changed
		}
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.dataInfoID, RegisterID: k.registerID}
		if s.remove("", &op) {
			changed = append(changed, k.dataInfoID)
		} else {
			s.expiry.Delete(k)
		}
	}
}

// dropSession removes every connection-bound publisher a session owned
// (meta evicted it) and returns the dataInfoIds that changed.
func (s *slotStore) dropSession(session string) []string {
	type victim struct{ id, rid, conn string }
	var vs []victim
	s.datums.Scan(func(id string, d *datum) bool {
		for _, p := range d.pubs {
			if p.session == session && p.conn != "" {
				vs = append(vs, victim{id, p.registerID, p.conn})
			}
		}
		return true
	})
	var changed []string
	for _, v := range vs {
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: v.id, RegisterID: v.rid, ConnID: v.conn}
		if s.remove(session, &op) {
			if len(changed) == 0 || changed[len(changed)-1] != v.id {
				changed = append(changed, v.id)
			}
		}
	}
	return changed
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
