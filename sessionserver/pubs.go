package sessionserver

import (
	"sync"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

type pubKey struct {
	dataInfoID string
	registerID string
}

// localPub is a connection-bound publisher this session made: the session
// is its source of truth, and sends it again to a slot's new leader. Its
// dataInfoId and registerId are the keys it is held under, its connection
// id is conn's, and it has no TTL, so this is all the rest of its op.
type localPub struct {
	data string
	conn *clientConn
}

// service is one dataInfoId's publishers made through this session.
type service struct {
	id   string // held once, shared by the keys connections keep
	pubs map[string]localPub
}

// pubRegistry holds the session's connection-bound publishers by slot, so
// a slot's publishers can be re-sent without scanning the others. Within a
// slot they are held by dataInfoId, then registerId: a service's name is
// stored once, not once per publisher.
type pubRegistry struct {
	slots [slot.Count]struct {
		mu     sync.Mutex
		m      map[string]*service
		n      int          // publishers held
		digest proto.Digest // what the slot's leader should hold for this session
	}
}

func hashOf(id, rid string, p localPub) uint64 {
	return proto.PubHash(id, rid, p.data, p.conn.id)
}

func (r *pubRegistry) init() {
	for i := range r.slots {
		r.slots[i].m = make(map[string]*service)
	}
}

// put records op, a connection-bound register of conn, replacing whatever
// this session had under the same key. It returns the key with the
// dataInfoId string the registry holds, so that a connection keeping the
// key shares it rather than holding the op's copy.
func (r *pubRegistry) put(op *proto.Op, conn *clientConn) pubKey {
	sl := &r.slots[slot.Of(op.DataInfoID)]
	p := localPub{data: op.Data, conn: conn}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	svc := sl.m[op.DataInfoID]
	if svc == nil {
		svc = &service{id: op.DataInfoID, pubs: make(map[string]localPub, 1)}
		sl.m[svc.id] = svc
	}
	if old, had := svc.pubs[op.RegisterID]; had {
		sl.digest.Sub(hashOf(svc.id, op.RegisterID, old))
	} else {
		sl.n++
	}
	svc.pubs[op.RegisterID] = p
	sl.digest.Add(hashOf(svc.id, op.RegisterID, p))
	return pubKey{svc.id, op.RegisterID}
}

// remove deletes the key; with owner set, only if owner still holds it.
// It reports whether something was removed.
func (r *pubRegistry) remove(k pubKey, owner *clientConn) bool {
	sl := &r.slots[slot.Of(k.dataInfoID)]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	svc := sl.m[k.dataInfoID]
	if svc == nil {
		return false
	}
	p, ok := svc.pubs[k.registerID]
	if !ok || (owner != nil && p.conn != owner) {
		return false
	}
	delete(svc.pubs, k.registerID)
	if len(svc.pubs) == 0 {
		delete(sl.m, k.dataInfoID)
	}
	sl.n--
	sl.digest.Sub(hashOf(k.dataInfoID, k.registerID, p))
	return true
}

// digestOf returns the slot's digest.
func (r *pubRegistry) digestOf(s int) proto.Digest {
	sl := &r.slots[s]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.digest
}

// syncList returns the slot's publishers as DSYNC sends them.
func (r *pubRegistry) syncList(s int) []proto.SyncPub {
	sl := &r.slots[s]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	out := make([]proto.SyncPub, 0, sl.n)
	for _, svc := range sl.m {
		for rid, p := range svc.pubs {
			out = append(out, proto.SyncPub{DataInfoID: svc.id, RegisterID: rid, Data: p.data, Conn: p.conn.id})
		}
	}
	return out
}

// count is the number of publishers held.
func (r *pubRegistry) count() int {
	n := 0
	for i := range r.slots {
		sl := &r.slots[i]
		sl.mu.Lock()
		n += sl.n
		sl.mu.Unlock()
	}
	return n
}
