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
// is its source of truth, and sends it again to a slot's new leader.
type localPub struct {
	op   proto.Op
	conn *clientConn
}

// pubRegistry holds the session's connection-bound publishers by slot, so
// a slot's publishers can be re-sent without scanning the others.
type pubRegistry struct {
	slots [slot.Count]struct {
		mu     sync.Mutex
		m      map[pubKey]*localPub
		digest proto.Digest // what the slot's leader should hold for this session
	}
}

func hashOf(op *proto.Op) uint64 {
	return proto.PubHash(op.DataInfoID, op.RegisterID, op.Data, op.ConnID)
}

func (r *pubRegistry) init() {
	for i := range r.slots {
		r.slots[i].m = make(map[pubKey]*localPub)
	}
}

// put records p, replacing whatever this session had under the same key.
func (r *pubRegistry) put(p *localPub) {
	k := pubKey{p.op.DataInfoID, p.op.RegisterID}
	sl := &r.slots[slot.Of(k.dataInfoID)]
	sl.mu.Lock()
	if old := sl.m[k]; old != nil {
		sl.digest.Sub(hashOf(&old.op))
	}
	sl.m[k] = p
	sl.digest.Add(hashOf(&p.op))
	sl.mu.Unlock()
}

// remove deletes the key; with owner set, only if owner still holds it.
// It reports whether something was removed.
func (r *pubRegistry) remove(k pubKey, owner *clientConn) bool {
	sl := &r.slots[slot.Of(k.dataInfoID)]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	p, ok := sl.m[k]
	if !ok || (owner != nil && p.conn != owner) {
		return false
	}
	delete(sl.m, k)
	sl.digest.Sub(hashOf(&p.op))
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
	out := make([]proto.SyncPub, 0, len(sl.m))
	for _, p := range sl.m {
		out = append(out, proto.SyncPub{DataInfoID: p.op.DataInfoID, RegisterID: p.op.RegisterID, Data: p.op.Data, Conn: p.op.ConnID})
	}
	return out
}

// count is the number of publishers held.
func (r *pubRegistry) count() int {
	n := 0
	for i := range r.slots {
		sl := &r.slots[i]
		sl.mu.Lock()
		n += len(sl.m)
		sl.mu.Unlock()
	}
	return n
}
