package dataserver

import (
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/slotreg/slotreg/proto"
)

// Cross-datacenter data, as a slot's copy holds it. Each slot's leader
// in another datacenter syncs the slot's local publishers there to this
// datacenter's leader of the slot (xdc.go); they are kept here apart from
// the local ones, per datacenter: they are not counted as local, never
// synced onward, and no session owns them. Every change to them is an
// entry of the slot's op-log (OpRemotePut, OpRemoteDel), so followers
// hold them too, and it raises the datum's version here, so a view that
// merges datacenters has one version that only grows.

// place is where a publisher was registered: its datacenter ("" for this
// one) and the zone of the session that took it. Places are interned: a
// cluster has a handful.
type place struct{ dc, zone string }

var places = struct {
	sync.Mutex
	m map[place]*place
}{m: make(map[place]*place)}

func placeOf(dc, zone string) *place {
	places.Lock()
	defer places.Unlock()
	k := place{dc, zone}
	if p := places.m[k]; p != nil {
		return p
	}
	p := &k
	places.m[k] = p
	return p
}

// localHash is what a publisher adds to the digest of the slot's local
// publishers, and of a remote datacenter's copy of them: the two compare
// equal when they hold the same publishers.
func localHash(id, rid, data, zone string) uint64 { return proto.PubHash(id, rid, data, zone) }

// remoteSlot is one remote datacenter's publishers in this slot.
type remoteSlot struct {
	dc     string
	datums map[string][]publisher // by dataInfoId, sorted by registerId
	owners map[string]*owner      // by zone, shared by its publishers
	digest proto.Digest           // localHash of each publisher
	pubs   int

	// Where this node, as the slot's leader, stands with the remote
	// datacenter's leader of the slot (xdc.go). Not replicated: a new
	// leader starts from a digest compare, which costs nothing when its
	// copy is current.
	epoch, seq uint64
	// syncedAt is when an answer last covered the slot (unix nanos; 0:
	// none since this node led it).
	syncedAt int64
}

// remoteSlot returns the slot's copy of dc's publishers, made empty if
// there is none.
func (s *slotStore) remoteSlot(dc string) *remoteSlot {
	r := s.remote[dc]
	if r == nil {
		r = &remoteSlot{dc: dc, datums: make(map[string][]publisher), owners: make(map[string]*owner)}
		s.remote[dc] = r
	}
	return r
}

func (r *remoteSlot) owner(zone string) *owner {
	o := r.owners[zone]
	if o == nil {
		o = &owner{at: placeOf(r.dc, zone)}
		r.owners[zone] = o
	}
	return o
}

func findPub(pubs []publisher, rid string) (int, bool) {
	i := sort.Search(len(pubs), func(i int) bool { return pubs[i].registerID() >= rid })
	return i, i < len(pubs) && pubs[i].registerID() == rid
}

// set stores a publisher; false when it held exactly that already. kv is
// the publisher's string.
func (r *remoteSlot) set(id, rid, data, zone string) (kv string, changed bool) {
	pubs := r.datums[id]
	i, found := findPub(pubs, rid)
	if found {
		p := &pubs[i]
		if p.data() == data && p.own.at.zone == zone {
			return p.kv, false
		}
		r.digest.Sub(localHash(id, rid, p.data(), p.own.at.zone))
		p.kv, p.own = makeKV(rid, data), r.owner(zone)
		r.digest.Add(localHash(id, rid, data, zone))
		return p.kv, true
	}
	p := publisher{kv: makeKV(rid, data), own: r.owner(zone)}
	r.datums[id] = slices.Insert(pubs, i, p)
	r.digest.Add(localHash(id, rid, data, zone))
	r.pubs++
	return p.kv, true
}

// del drops a publisher; false when there was none.
func (r *remoteSlot) del(id, rid string) bool {
	pubs := r.datums[id]
	i, found := findPub(pubs, rid)
	if !found {
		return false
	}
	p := &pubs[i]
	r.digest.Sub(localHash(id, rid, p.data(), p.own.at.zone))
	if len(pubs) == 1 {
		delete(r.datums, id)
	} else {
		r.datums[id] = slices.Delete(pubs, i, i+1)
	}
	r.pubs--
	return true
}

// datumOf returns id's datum, made (empty) if there is none: a remote
// publisher's changes raise its version.
func (s *slotStore) datumOf(id string) *datum {
	d, ok := s.datums.Get(id)
	if !ok {
		d = &datum{id: id}
		s.datums.Set(id, d)
	}
	return d
}

// applyRemote stores, as the leader, one local write of dc's leader of
// the slot (an OpRegister or OpUnregister entry of its log) and says
// whether anything changed here.
func (s *slotStore) applyRemote(dc string, e *LogEntry) bool {
	op := &e.Op
	r := s.remoteSlot(dc)
	switch op.Type {
	case proto.OpRegister:
		kv, changed := r.set(op.DataInfoID, op.RegisterID, op.Data, op.Zone)
		if changed {
			s.logRemote(proto.OpRemotePut, op.DataInfoID, kv, r.owner(op.Zone))
		}
		return changed
	case proto.OpUnregister:
		if r.del(op.DataInfoID, op.RegisterID) {
			s.logRemote(proto.OpRemoteDel, op.DataInfoID, makeKV(op.RegisterID, ""), r.owner(""))
			return true
		}
	}
	return false
}

// logRemote raises the datum's version for a remote change and logs it.
func (s *slotStore) logRemote(typ proto.OpType, id, kv string, own *owner) {
	seq, v := s.next()
	d := s.datumOf(id)
	d.version = v
	s.log.append(seq, logEntry{version: v, d: d, kv: kv, own: own, typ: typ})
}

// replayRemote applies a leader's remote entry on a follower.
func (s *slotStore) replayRemote(e *LogEntry) {
	r := s.remoteSlot(e.DC)
	if e.Op.Type == proto.OpRemoteDrop {
		s.clearRemote(r, e.Version)
		s.seq = e.Seq
		s.log.append(e.Seq, logEntry{version: e.Version, own: r.owner(""), typ: e.Op.Type})
		return
	}
	var kv string
	if e.Op.Type == proto.OpRemotePut {
		kv, _ = r.set(e.Op.DataInfoID, e.Op.RegisterID, e.Op.Data, e.Op.Zone)
	} else {
		r.del(e.Op.DataInfoID, e.Op.RegisterID)
		kv = makeKV(e.Op.RegisterID, "")
	}
	d := s.datumOf(e.Op.DataInfoID)
	d.version = e.Version
	s.seq = e.Seq
	s.log.append(e.Seq, logEntry{version: e.Version, d: d, kv: kv, own: r.owner(e.Op.Zone), typ: e.Op.Type})
}

// diffRemote makes, as the leader, dc's copy exactly snap (a snapshot of
// the slot's local publishers there), changing only what differs, so a
// resync never shows a subscriber a publisher leaving that stays. It
// returns the dataInfoIds that changed.
func (s *slotStore) diffRemote(dc string, snap *proto.SlotSnapshot) []string {
	r := s.remoteSlot(dc)
	var changed []string
	seen := make(map[string]map[string]struct{}, len(snap.Datums))
	for _, sd := range snap.Datums {
		rids := make(map[string]struct{}, len(sd.Pubs))
		seen[sd.DataInfoID] = rids
		ch := false
		for _, sp := range sd.Pubs {
			rids[sp.RegisterID] = struct{}{}
			e := LogEntry{Op: proto.Op{Type: proto.OpRegister, DataInfoID: sd.DataInfoID, RegisterID: sp.RegisterID, Data: sp.Data, Zone: sp.Zone}}
			ch = s.applyRemote(dc, &e) || ch
		}
		if ch {
			changed = append(changed, sd.DataInfoID)
		}
	}
	for id, pubs := range r.datums {
		var gone []string
		for i := range pubs {
			if _, ok := seen[id][pubs[i].registerID()]; !ok {
				gone = append(gone, pubs[i].registerID())
			}
		}
		for _, rid := range gone {
			e := LogEntry{Op: proto.Op{Type: proto.OpUnregister, DataInfoID: id, RegisterID: rid}}
			s.applyRemote(dc, &e)
		}
		if len(gone) > 0 {
			changed = append(changed, id)
		}
	}
	sort.Strings(changed)
	return slices.Compact(changed)
}

// dropRemote removes, as the leader, every publisher of dc in the slot
// (it went unheard for longer than --remote-expire) and returns the
// dataInfoIds that changed.
func (s *slotStore) dropRemote(dc string) []string {
	r := s.remote[dc]
	if r == nil || r.pubs == 0 {
		return nil
	}
	seq, v := s.next()
	changed := s.clearRemote(r, v)
	s.log.append(seq, logEntry{version: v, own: r.owner(""), typ: proto.OpRemoteDrop})
	return changed
}

// clearRemote empties r, raising the datum of each of its dataInfoIds to
// version v, and returns those ids.
func (s *slotStore) clearRemote(r *remoteSlot, v uint64) []string {
	ids := slices.Sorted(maps.Keys(r.datums))
	for _, id := range ids {
		s.datumOf(id).version = v
	}
	clear(r.datums)
	r.digest, r.pubs = proto.Digest{}, 0
	return ids
}

// remoteEntries appends to out the remote publishers of its dataInfoId;
// false when there are none.
func (s *slotStore) remoteEntries(out *proto.Datum) bool {
	added := false
	for dc, r := range s.remote {
		for _, p := range r.datums[out.DataInfoID] {
			rid, data := splitKV(p.kv)
			out.Entries = append(out.Entries, proto.Entry{RegisterID: rid, Data: data, DC: dc, Zone: p.own.at.zone})
			added = true
		}
	}
	return added
}

// dumpRemote adds the remote publishers to a snapshot of the whole slot
// for a follower; every remote dataInfoId has a datum in it.
func (s *slotStore) dumpRemote(out *proto.SlotSnapshot) {
	if len(s.remote) == 0 {
		return
	}
	for i := range out.Datums {
		sd := &out.Datums[i]
		for dc, r := range s.remote {
			for _, p := range r.datums[sd.DataInfoID] {
				rid, data := splitKV(p.kv)
				sd.Pubs = append(sd.Pubs, proto.SnapPub{RegisterID: rid, Data: data, Zone: p.own.at.zone, DC: dc})
			}
		}
	}
}
