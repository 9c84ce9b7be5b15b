package dataserver

import (
	"strings"

	"github.com/slotreg/slotreg/proto"
)

// The slot unit's part in paths (DESIGN.md, "Paths"): children of a
// path, prefix watches, and PERSISTENT paths synced from meta. Like
// unit.go and unit_repl.go, these methods take u.mu themselves (or run
// with it held, as they say).

// children calls fn with the children of path in this slot (see
// slotStore.children), if this node leads the slot and has reconciled
// it; ok says whether it did.
func (u *slotUnit) children(path string, fn func(string)) (ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading || !u.ready {
		return false
	}
	u.store.children(path, fn)
	return true
}

// markPrefix marks for s every dataInfoId of the slot that can hold a
// path under prefix, emptied ones included (their version says a path
// went away), if this node serves the slot; u.mu is held.
func (u *slotUnit) markPrefix(prefix string, s *stream) {
	if u.store == nil || !u.leading || !u.ready {
		return
	}
	if dir := proto.PrefixDir(prefix); !strings.HasPrefix(dir, prefix) {
		if _, ok := u.store.datums.Get(dir); ok {
			s.mark(dir)
		}
	}
	it := u.store.datums.Iter()
	for ok := it.Seek(prefix); ok && strings.HasPrefix(it.Key(), prefix); ok = it.Next() {
		s.mark(it.Key())
	}
}

// pwatch adds a stream as a watcher of a path prefix and marks what the
// slot holds under it, so the stream sends it all first.
func (u *slotUnit) pwatch(prefix string, s *stream) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.prefixes[prefix]
	if m == nil {
		m = make(map[*stream]struct{}, 1)
		u.prefixes[prefix] = m
	}
	m[s] = struct{}{}
	u.markPrefix(prefix, s)
}

// punwatch removes a stream as a watcher of a path prefix.
func (u *slotUnit) punwatch(prefix string, s *stream) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m := u.prefixes[prefix]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(u.prefixes, prefix)
		}
	}
}

// syncPersist makes the slot's PERSISTENT paths, as its leader, exactly
// paths, meta's list as of revision rev, unless the slot holds that
// revision or a later one already or is frozen for a handoff (its next
// leader syncs). The changes are ordinary logged writes of the owner
// proto.PersistentOwner, so followers get them and watchers hear of
// them. It returns the revision the slot holds after it.
func (u *slotUnit) syncPersist(rev uint64, paths []proto.PersistPath, now int64) uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading || u.frozen || rev <= u.persistRev {
		return u.persistRev
	}
	want := make(map[pubKey]string, len(paths))
	for _, p := range paths {
		parent, name, err := proto.SplitPath(p.Path)
		if err == nil {
			want[pubKey{parent, name}] = p.Value
		}
	}
	var ops []proto.Op
	u.store.datums.Scan(func(id string, d *datum) bool {
		for i := range d.pubs {
			p := &d.pubs[i]
			if p.own.session != proto.PersistentOwner {
				continue
			}
			rid := p.registerID()
			if _, keep := want[pubKey{id, rid}]; !keep {
				ops = append(ops, proto.Op{Type: proto.OpUnregister, DataInfoID: id, RegisterID: rid})
			}
		}
		return true
	})
	for k, v := range want {
		p := u.store.get(k.id, k.rid)
		if p == nil || p.own.session != proto.PersistentOwner || p.data() != v {
			ops = append(ops, proto.Op{Type: proto.OpRegister, DataInfoID: k.id, RegisterID: k.rid, Data: v})
		}
	}
	for i := range ops {
		if _, changed, _ := u.store.apply(proto.PersistentOwner, &ops[i], now); changed {
			u.notify(ops[i].DataInfoID)
		}
	}
	if len(ops) > 0 {
		u.log.Debug("PERSISTENT paths synced from meta", "slot", u.id, "rev", rev, "changes", len(ops))
	}
	u.persistRev = rev
	return rev
}

// behind says whether this node leads the slot and holds an older
// revision of its PERSISTENT paths than rev.
func (u *slotUnit) behind(rev uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.store != nil && u.leading && !u.frozen && u.persistRev < rev
}
