package dataserver

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/btree"
)

// owner is who holds a publisher: the session that wrote it and, for a
// connection-bound one, the client connection. The connection-bound
// publishers of one connection share one owner, interned per slot (a slot's
// publishers come from a few connections), so a publisher costs a pointer
// and not two strings. A TTL publisher has an owner of its own that also
// carries its lease, since its deadline is its own.
type owner struct {
	session  string
	conn     string // "" for TTL publishers
	refs     int    // interned owners: the publishers pointing here
	ttl      uint32 // seconds; 0 = bound to its connection
	expireAt int64  // unix nanos; 0 when not TTL-bound
	at       *place // where it was registered (remote.go)
}

type ownerKey struct{ session, conn string }

// nobody is the owner of log entries no session wrote (expiry, touch).
var nobody = &owner{at: placeOf("", "")}

// publisher is one registration as a replica of its slot holds it: its
// registerId and data in one string (kv) and its owner. Datums hold
// publishers by value.
type publisher struct {
	kv  string
	own *owner
}

func (p *publisher) registerID() string { rid, _ := splitKV(p.kv); return rid }
func (p *publisher) data() string       { _, d := splitKV(p.kv); return d }

// makeKV packs a registerId and data into one string, the registerId's
// length first as a uvarint (one or two bytes: registerIds are at most
// proto.MaxKeyLen bytes), so a publisher's strings are one allocation.
func makeKV(rid, data string) string {
	var b strings.Builder
	b.Grow(2 + len(rid) + len(data))
	n := uint(len(rid))
	for n >= 0x80 {
		b.WriteByte(byte(n) | 0x80)
		n >>= 7
	}
	b.WriteByte(byte(n))
	b.WriteString(rid)
	b.WriteString(data)
	return b.String()
}

// splitKV undoes makeKV.
func splitKV(kv string) (rid, data string) {
	// The common case first: a registerId under 128 bytes has a one-byte
	// length.
	if len(kv) > 0 && kv[0] < 0x80 {
		n := 1 + int(kv[0])
		return kv[1:n], kv[n:]
	}
	var n, shift uint
	i := 0
	for ; i < len(kv); i++ {
		c := kv[i]
		n |= uint(c&0x7f) << shift
		shift += 7
		if c < 0x80 {
			break
		}
	}
	i++
	return kv[i : i+int(n)], kv[i+int(n):]
}

// datum is a dataInfoId's publishers, kept sorted by registerId: most
// services have a handful of publishers, where a sorted slice is smaller
// and faster than a tree, and lookups return them in order for free.
type datum struct {
	id      string // the key it is stored under
	version uint64
	pubs    []publisher
}

func (d *datum) find(rid string) (int, bool) {
	lo, hi := 0, len(d.pubs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.pubs[m].registerID() < rid {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(d.pubs) && d.pubs[lo].registerID() == rid
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
// datums, op-log, TTL deadlines and per-session digests. It has no lock
// and no notion of its role: the slot's slotUnit holds it, guards it and
// decides what may run on it.
//
// The leader assigns each write the next seq and the version
// leaderEpoch<<32|seq; a follower replays the leader's entries with the
// seq and version they carry, so a promoted follower continues the same
// sequence and the same versions.
type slotStore struct {
	leaderEpoch uint64 // the epoch of the leader this copy follows (or is)
	seq         uint64
	datums      btree.Map[string, *datum]
	expiry      *btree.BTreeG[expiryKey]
	log         *opLog
	publishers  int
	owners      map[ownerKey]*owner      // interned owners of connection-bound publishers
	digests     map[string]*proto.Digest // session -> its connection-bound publishers
	// local sums every local publisher (localHash), as the slot's
	// leaders in other datacenters compare with what they hold of it.
	local proto.Digest
	// remote holds, by datacenter, the publishers the slot's leaders
	// there sync here, apart from the local ones (remote.go).
	remote map[string]*remoteSlot
}

func newSlotStore(leaderEpoch uint64, logSize int) *slotStore {
	return &slotStore{
		leaderEpoch: leaderEpoch,
		expiry:      btree.NewBTreeGOptions(expiryLess, btree.Options{NoLocks: true}),
		log:         newOpLog(logSize, opLogMaxBytes),
		owners:      make(map[ownerKey]*owner),
		digests:     make(map[string]*proto.Digest),
		remote:      make(map[string]*remoteSlot),
	}
}

// nextVersion raises the slot's sequence and returns the version for it:
// leaderEpoch in the high 32 bits, so a new leader's versions exceed every
// version an older leader issued.
func (s *slotStore) next() (seq, version uint64) {
	s.seq++
	return s.seq, s.leaderEpoch<<32 | (s.seq & 0xffffffff)
}

// apply runs one write as the leader at time now (unix nanos) and returns
// its result (the version for a register, 1 or 0 for unregister and
// renew), whether subscribers must hear of it, and whether it touched a
// TTL publisher (its reply then waits for a follower to have it).
func (s *slotStore) apply(session string, op *proto.Op, now int64) (result uint64, changed, ttl bool) {
	return s.applyAt(session, op, now, s.locateFor(op))
}

// locateFor locates op's publisher where applyAt reads the spot
// (REGISTER and UNREGISTER).
func (s *slotStore) locateFor(op *proto.Op) spot {
	if op.Type != proto.OpRegister && op.Type != proto.OpUnregister {
		return spot{}
	}
	return s.locate(op.DataInfoID, op.RegisterID)
}

// spot is where a publisher is, or would go, in its datum: d is nil
// when the datum does not exist.
type spot struct {
	d     *datum
	i     int
	found bool
}

// locate finds the spot of publisher rid of id.
func (s *slotStore) locate(id, rid string) spot {
	d, ok := s.datums.Get(id)
	if !ok {
		return spot{}
	}
	i, found := d.find(rid)
	return spot{d, i, found}
}

// pub is the publisher at the spot, or nil.
func (at spot) pub() *publisher {
	if !at.found {
		return nil
	}
	return &at.d.pubs[at.i]
}

// applyAt is apply with op's publisher already located (at, from
// locate, with the store unchanged since), so a write that checked it
// first does not look it up twice.
func (s *slotStore) applyAt(session string, op *proto.Op, now int64, at spot) (result uint64, changed, ttl bool) {
	switch op.Type {
	case proto.OpRegister:
		seq, v := s.next()
		d, kv, wasTTL := s.putAt(session, op, now, v, at)
		s.logOp(seq, v, session, op, d, kv)
		return v, true, op.TTL > 0 || wasTTL
	case proto.OpUnregister:
		d, p := at.d, at.pub()
		if p == nil || (op.ConnID != "" && (p.own.conn != op.ConnID || p.own.session != session)) {
			return 0, false, false
		}
		ttl = p.own.ttl > 0
		kv := p.kv
		seq, v := s.next()
		// The entry is made before the delete, which may drop the owner it
		// can share.
		e := s.entry(v, session, op, d, kv)
		s.del(op.DataInfoID, op.RegisterID, v)
		s.log.append(seq, e)
		return 1, true, ttl
	case proto.OpRenew:
		p := s.get(op.DataInfoID, op.RegisterID)
		if p == nil || !s.renew(op.DataInfoID, op.RegisterID, now) {
			return 0, false, false
		}
		d, _ := s.datums.Get(op.DataInfoID)
		seq, _ := s.next()
		s.logOp(seq, 0, session, op, d, p.kv)
		return 1, false, true
	}
	return 0, false, false
}

// entry builds the log entry of op, sharing the datum d and the
// publisher string kv where the caller has them.
func (s *slotStore) entry(version uint64, session string, op *proto.Op, d *datum, kv string) logEntry {
	e := logEntry{version: version, d: d, kv: kv, own: s.writer(session, op.ConnID, op.Zone), ttl: op.TTL, typ: op.Type}
	if op.Type == proto.OpTouch {
		return e
	}
	if e.d == nil {
		// Only a follower out of step with its leader gets here; the
		// entry still needs the dataInfoId.
		var ok bool
		if e.d, ok = s.datums.Get(op.DataInfoID); !ok {
			e.d = &datum{id: op.DataInfoID}
		}
	}
	if e.kv == "" {
		e.kv = makeKV(op.RegisterID, "")
	}
	return e
}

func (s *slotStore) logOp(seq, version uint64, session string, op *proto.Op, d *datum, kv string) {
	s.log.append(seq, s.entry(version, session, op, d, kv))
}

// writer is the owner a log entry names: the interned one when a
// publisher of that connection is held, else a new one.
func (s *slotStore) writer(session, conn, zone string) *owner {
	if o := s.owners[ownerKey{session, conn}]; o != nil {
		return o
	}
	if session == "" && conn == "" {
		return nobody
	}
	return &owner{session: session, conn: conn, at: placeOf("", zone)}
}

// replay applies a leader's entry on a follower.
func (s *slotStore) replay(e *LogEntry, now int64) {
	var d *datum
	var kv string
	switch e.Op.Type {
	case proto.OpRegister:
		d, kv, _ = s.put(e.Session, &e.Op, now, e.Version)
	case proto.OpUnregister:
		if p := s.get(e.Op.DataInfoID, e.Op.RegisterID); p != nil {
			kv = p.kv
		}
		d, _ = s.datums.Get(e.Op.DataInfoID)
		en := s.entry(e.Version, e.Session, &e.Op, d, kv)
		s.del(e.Op.DataInfoID, e.Op.RegisterID, e.Version)
		s.seq = e.Seq
		s.log.append(e.Seq, en)
		return
	case proto.OpRenew:
		s.renew(e.Op.DataInfoID, e.Op.RegisterID, now)
		if p := s.get(e.Op.DataInfoID, e.Op.RegisterID); p != nil {
			kv = p.kv
		}
		d, _ = s.datums.Get(e.Op.DataInfoID)
	case proto.OpTouch:
		s.touchAll(e.Version)
	case proto.OpRemotePut, proto.OpRemoteDel, proto.OpRemoteDrop:
		s.replayRemote(e)
		return
	}
	s.seq = e.Seq
	s.logOp(e.Seq, e.Version, e.Session, &e.Op, d, kv)
}

// touch raises every datum's version (a new leader after a failover), so
// that what it serves supersedes anything the old leader pushed.
func (s *slotStore) touch() {
	seq, v := s.next()
	s.touchAll(v)
	s.logOp(seq, v, "", &proto.Op{Type: proto.OpTouch}, nil, "")
}

func (s *slotStore) touchAll(v uint64) {
	s.datums.Scan(func(_ string, d *datum) bool {
		d.version = v
		return true
	})
}

// persistent says whether the publisher is a PERSISTENT path's.
func (s *slotStore) persistent(id, rid string) bool {
	return s.locate(id, rid).persistent()
}

// persistent says whether the publisher at the spot is a PERSISTENT
// path's.
func (at spot) persistent() bool {
	p := at.pub()
	return p != nil && p.own.session == proto.PersistentOwner
}

// get returns the publisher, valid until the datum next changes.
func (s *slotStore) get(id, rid string) *publisher {
	d, ok := s.datums.Get(id)
	if !ok {
		return nil
	}
	if i, found := d.find(rid); found {
		return &d.pubs[i]
	}
	return nil
}

func (s *slotStore) digest(session string) *proto.Digest {
	d := s.digests[session]
	if d == nil {
		d = &proto.Digest{}
		s.digests[session] = d
	}
	return d
}

// count adds (sign 1) or removes (-1) p, a local publisher, from the
// slot's local digest and its session's.
func (s *slotStore) count(id string, p *publisher, sign int) {
	rid, data := splitKV(p.kv)
	if lh := localHash(id, rid, data, p.own.at.zone); sign > 0 {
		s.local.Add(lh)
	} else {
		s.local.Sub(lh)
	}
	if p.own.conn == "" {
		return
	}
	h := proto.PubHash(id, rid, data, p.own.conn)
	d := s.digest(p.own.session)
	if sign > 0 {
		d.Add(h)
		return
	}
	d.Sub(h)
	if d.Count == 0 {
		delete(s.digests, p.own.session)
	}
}

// intern returns the slot's shared owner for a connection, counting one
// more publisher on it.
func (s *slotStore) intern(session, conn, zone string) *owner {
	k := ownerKey{session, conn}
	o := s.owners[k]
	if o == nil {
		o = &owner{session: session, conn: conn, at: placeOf("", zone)}
		s.owners[k] = o
	}
	o.refs++
	return o
}

// release counts a publisher off its owner; an interned owner no
// publisher points to any more leaves the table.
func (s *slotStore) release(o *owner) {
	if o.ttl > 0 {
		return // a TTL publisher's own, never interned
	}
	if o.refs--; o.refs == 0 {
		delete(s.owners, ownerKey{o.session, o.conn})
	}
}

// put stores a register and returns its datum, the publisher's kv, which
// its log entry shares, and whether it replaced a TTL publisher.
func (s *slotStore) put(session string, op *proto.Op, now int64, version uint64) (_ *datum, _ string, wasTTL bool) {
	return s.putAt(session, op, now, version, s.locate(op.DataInfoID, op.RegisterID))
}

// putAt is put with the publisher's spot found (see applyAt).
func (s *slotStore) putAt(session string, op *proto.Op, now int64, version uint64, at spot) (_ *datum, _ string, wasTTL bool) {
	d := at.d
	if d == nil {
		d = &datum{id: op.DataInfoID}
		s.datums.Set(op.DataInfoID, d)
	}
	p := publisher{kv: makeKV(op.RegisterID, op.Data)}
	if op.TTL > 0 {
		p.own = &owner{session: session, ttl: op.TTL, expireAt: now + int64(op.TTL)*1e9, at: placeOf("", op.Zone)}
		s.expiry.Set(expiryKey{p.own.expireAt, d.id, p.registerID()})
	} else {
		p.own = s.intern(session, op.ConnID, op.Zone)
	}
	i, found := at.i, at.found
	if found {
		wasTTL = d.pubs[i].own.ttl > 0
		s.forget(d.id, &d.pubs[i])
		d.pubs[i] = p
	} else {
		d.pubs = slices.Insert(d.pubs, i, p)
		s.publishers++
	}
	s.count(d.id, &p, 1)
	d.version = version
	return d, p.kv, wasTTL
}

// forget drops p's expiry and digest entries and its hold on its owner.
func (s *slotStore) forget(id string, p *publisher) {
	if p.own.ttl > 0 {
		s.expiry.Delete(expiryKey{p.own.expireAt, id, p.registerID()})
	}
	s.count(id, p, -1)
	s.release(p.own)
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
	s.forget(id, &d.pubs[i])
	copy(d.pubs[i:], d.pubs[i+1:])
	d.pubs[len(d.pubs)-1] = publisher{}
	d.pubs = d.pubs[:len(d.pubs)-1]
	if c := cap(d.pubs); c > 32 && len(d.pubs) < c/4 {
		d.pubs = slices.Clip(slices.Clone(d.pubs))
	}
	s.publishers--
	// An emptied datum stays, so its version keeps rising for watchers.
	d.version = version
	return true
}

func (s *slotStore) renew(id, rid string, now int64) bool {
	p := s.get(id, rid)
	if p == nil || p.own.ttl == 0 {
		return false
	}
	s.expiry.Delete(expiryKey{p.own.expireAt, id, rid})
	p.own.expireAt = now + int64(p.own.ttl)*1e9
	s.expiry.Set(expiryKey{p.own.expireAt, id, rid})
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

// connPubs lists a session's connection-bound publishers in the slot, as
// copies: the caller changes the datums while it reads them.
func (s *slotStore) connPubs(session string) map[pubKey]publisher {
	out := make(map[pubKey]publisher)
	s.datums.Scan(func(id string, d *datum) bool {
		for _, p := range d.pubs {
			if p.own.session == session && p.own.conn != "" {
				out[pubKey{id, p.registerID()}] = p
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
	return s.sync(session, "", nil)
}

// sync makes the session's connection-bound publishers in the slot exactly
// pubs, as the leader, and returns the dataInfoIds that changed. zone is
// the session's.
func (s *slotStore) sync(session, zone string, pubs []proto.SyncPub) []string {
	have := s.connPubs(session)
	now := time.Now().UnixNano()
	var changed []string
	for i := range pubs {
		p := &pubs[i]
		k := pubKey{p.DataInfoID, p.RegisterID}
		cur, had := have[k]
		delete(have, k)
		if had && cur.data() == p.Data && cur.own.conn == p.Conn && cur.own.at.zone == zone || s.persistent(k.id, k.rid) {
			continue
		}
		op := proto.Op{Type: proto.OpRegister, DataInfoID: p.DataInfoID, RegisterID: p.RegisterID, Data: p.Data, ConnID: p.Conn, Zone: zone}
		s.apply(session, &op, now)
		changed = append(changed, p.DataInfoID)
	}
	for k, p := range have {
		op := proto.Op{Type: proto.OpUnregister, DataInfoID: k.id, RegisterID: k.rid, ConnID: p.own.conn}
		if _, ch, _ := s.apply(session, &op, now); ch {
			changed = append(changed, k.id)
		}
	}
	sort.Strings(changed)
	return slices.Compact(changed)
}

// snapshot returns the datum as subscribers see it: the local publishers,
// of datacenter dc, and those of every remote datacenter, sorted by
// proto.EntryLess. A dataInfoId never written has version 0 and no
// entries.
func (s *slotStore) snapshot(dataInfoID, dc string) *proto.Datum {
	out := &proto.Datum{DataInfoID: dataInfoID}
	d, ok := s.datums.Get(dataInfoID)
	if !ok {
		return out
	}
	out.Version = d.version
	out.Entries = make([]proto.Entry, len(d.pubs))
	for i := range d.pubs {
		e := &out.Entries[i]
		e.RegisterID, e.Data = splitKV(d.pubs[i].kv)
		e.DC, e.Zone = dc, d.pubs[i].own.at.zone
	}
	if s.remoteEntries(out) {
		sort.Slice(out.Entries, func(i, j int) bool { return proto.EntryLess(&out.Entries[i], &out.Entries[j]) })
	}
	return out
}

// children calls fn with the name of each child of path held in this
// slot: the registerIds of path's own datum, and the first segment below
// path of every dataInfoId under it that has publishers. A name can come
// more than once. The scan skips each child's subtree once it has named
// the child, so it costs a seek per child, not a step per descendant.
func (s *slotStore) children(path string, fn func(name string)) {
	if d, ok := s.datums.Get(path); ok {
		for i := range d.pubs {
			fn(d.pubs[i].registerID())
		}
	}
	pre := proto.ChildPrefix(path)
	it := s.datums.Iter()
	for ok := it.Seek(pre); ok && strings.HasPrefix(it.Key(), pre); {
		rest := it.Key()[len(pre):]
		seg, _, deeper := strings.Cut(rest, "/")
		if rest == "" || len(it.Value().pubs) == 0 {
			ok = it.Next()
			continue
		}
		fn(seg)
		if deeper {
			// Past every id that starts with pre+seg+"/" ('0' follows '/').
			ok = it.Seek(pre + seg + "0")
		} else {
			ok = it.Next()
		}
	}
}
