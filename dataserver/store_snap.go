package dataserver

import "github.com/slotreg/slotreg/proto"

// A slot's copy as a whole: for a follower that must start over (dump,
// install) and for another datacenter's leader of the slot (localDump).

// dump is the whole slot for a follower that must start over.
func (s *slotStore) dump(now int64) *proto.SlotSnapshot {
	out := &proto.SlotSnapshot{LeaderEpoch: s.leaderEpoch, Seq: s.seq, Datums: make([]proto.SnapDatum, 0, s.datums.Len())}
	s.datums.Scan(func(id string, d *datum) bool {
		sd := proto.SnapDatum{DataInfoID: id, Version: d.version, Pubs: make([]proto.SnapPub, len(d.pubs))}
		for i := range d.pubs {
			p := &d.pubs[i]
			sp := &sd.Pubs[i]
			sp.RegisterID, sp.Data = splitKV(p.kv)
			sp.Session, sp.Conn, sp.TTL, sp.Zone = p.own.session, p.own.conn, p.own.ttl, p.own.at.zone
			if p.own.expireAt > now {
				sp.RemainMs = uint64((p.own.expireAt - now) / 1e6)
			}
		}
		out.Datums = append(out.Datums, sd)
		return true
	})
	s.dumpRemote(out)
	return out
}

// install replaces the slot's content with a leader's snapshot.
func (s *slotStore) install(snap *proto.SlotSnapshot, now int64) {
	s.datums.Clear()
	s.expiry.Clear()
	s.owners = make(map[ownerKey]*owner)
	s.digests = make(map[string]*proto.Digest)
	s.remote = make(map[string]*remoteSlot)
	s.local = proto.Digest{}
	s.publishers = 0
	for _, sd := range snap.Datums {
		d := &datum{id: sd.DataInfoID, version: sd.Version, pubs: make([]publisher, 0, len(sd.Pubs))}
		for _, sp := range sd.Pubs {
			if sp.DC != "" {
				s.remoteSlot(sp.DC).set(d.id, sp.RegisterID, sp.Data, sp.Zone)
				continue
			}
			d.pubs = append(d.pubs, publisher{kv: makeKV(sp.RegisterID, sp.Data)})
			p := &d.pubs[len(d.pubs)-1]
			if sp.TTL > 0 {
				p.own = &owner{session: sp.Session, conn: sp.Conn, ttl: sp.TTL, expireAt: now + int64(sp.RemainMs)*1e6, at: placeOf("", sp.Zone)}
				s.expiry.Set(expiryKey{p.own.expireAt, d.id, p.registerID()})
			} else {
				p.own = s.intern(sp.Session, sp.Conn, sp.Zone)
			}
			s.count(d.id, p, 1)
		}
		s.publishers += len(d.pubs)
		s.datums.Set(d.id, d)
	}
	s.leaderEpoch, s.seq = snap.LeaderEpoch, snap.Seq
	s.log.reset(snap.Seq)
}

// localDump is the slot's local publishers, for a remote datacenter's
// leader of the slot that must start over: no remote ones (no echo), no
// owners, no emptied datums.
func (s *slotStore) localDump() *proto.SlotSnapshot {
	out := &proto.SlotSnapshot{LeaderEpoch: s.leaderEpoch, Seq: s.seq}
	s.datums.Scan(func(id string, d *datum) bool {
		if len(d.pubs) == 0 {
			return true
		}
		sd := proto.SnapDatum{DataInfoID: id, Version: d.version, Pubs: make([]proto.SnapPub, len(d.pubs))}
		for i := range d.pubs {
			sp := &sd.Pubs[i]
			sp.RegisterID, sp.Data = splitKV(d.pubs[i].kv)
			sp.Zone = d.pubs[i].own.at.zone
		}
		out.Datums = append(out.Datums, sd)
		return true
	})
	return out
}
