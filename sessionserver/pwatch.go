package sessionserver

import (
	"maps"
	"slices"
	"sync"

	"github.com/slotreg/slotreg/proto"
)

// Prefix watches (PSUBSCRIBE /nodes/*): every data node's change stream
// watches each prefix some client of this session watches, and sends
// the newest datum of every dataInfoId that can hold a path under it:
// all of them when the watch starts or the stream reconnects, each one
// as it changes, and all of a slot's when the slot gets a new leader.
// The session keeps, per prefix, the datum it last turned into events
// for each such id, and turns each newer datum into ADD, UPDATE and
// REMOVE events by comparing the two; so versions only grow per path,
// and a client that applies the events holds what GET shows.

// pevent is one event of a prefix watch, as its clients receive it.
type pevent struct {
	pattern string
	path    string
	payload []byte
}

// pgroup is a prefix some clients of this session watch, in one scope.
type pgroup struct {
	prefix, pattern string
	scope           proto.Scope
	subs            map[*clientConn]struct{}
	// known is, by dataInfoId, the view of the datum last turned into
	// events (emptied ones kept, for their version).
	known map[string]*proto.Datum
	// adds caches, by dataInfoId, the ADDs that give a joining client
	// known's paths: encoded once however many clients join.
	adds map[string][]pevent
}

// prefixWatches holds the session's prefix watches.
type prefixWatches struct {
	mu     sync.Mutex
	groups map[pgroupKey]*pgroup
}

type pgroupKey struct {
	prefix string
	scope  proto.Scope
}

func (w *prefixWatches) init() { w.groups = make(map[pgroupKey]*pgroup) }

// events turns old into d as g's events.
func (g *pgroup) events(old, d *proto.Datum) []pevent {
	var evs []pevent
	var oldEntries []proto.Entry
	if old != nil {
		oldEntries = old.Entries
	}
	proto.DiffEntries(g.prefix, d.DataInfoID, oldEntries, d.Entries, func(typ, path string, e *proto.Entry) {
		evs = append(evs, pevent{pattern: g.pattern, path: path, payload: proto.AppendPathEventJSON(nil, typ, path, e, d.Version)})
	})
	return evs
}

// add makes c watch prefix: an ADD for each path the session knows under
// it, then every change. The first client of a prefix starts the watch on
// the data nodes, whose answers come as changes.
func (n *Node) pwatchAdd(c *clientConn, prefix string, scope proto.Scope) {
	w := &n.pwatch
	w.mu.Lock()
	k := pgroupKey{prefix, scope}
	g := w.groups[k]
	fresh := g == nil
	if fresh {
		g = &pgroup{prefix: prefix, pattern: prefix + "*", scope: scope, subs: make(map[*clientConn]struct{}),
			known: make(map[string]*proto.Datum), adds: make(map[string][]pevent)}
		w.groups[k] = g
	}
	g.subs[c] = struct{}{}
	var evs []pevent
	for _, id := range slices.Sorted(maps.Keys(g.known)) {
		adds, ok := g.adds[id]
		if !ok {
			adds = g.events(nil, g.known[id])
			g.adds[id] = adds
		}
		evs = append(evs, adds...)
	}
	c.queueInitial(evs)
	w.mu.Unlock()
	if fresh {
		n.subs.start(n)
		n.subs.request(watchReq{pattern: prefix, add: true})
	}
}

// pwatchRemove stops c's watch of prefix; the last client's stops the
// watch on the data nodes.
func (n *Node) pwatchRemove(c *clientConn, prefix string, scope proto.Scope) {
	w := &n.pwatch
	w.mu.Lock()
	k := pgroupKey{prefix, scope}
	g := w.groups[k]
	last := false
	if g != nil {
		delete(g.subs, c)
		if len(g.subs) == 0 {
			delete(w.groups, k)
			last = !w.hasLocked(prefix)
		}
	}
	w.mu.Unlock()
	if last {
		n.subs.request(watchReq{pattern: prefix})
	}
}

// has says whether some client of this session watches prefix.
func (w *prefixWatches) has(prefix string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hasLocked(prefix)
}

func (w *prefixWatches) hasLocked(prefix string) bool {
	for _, s := range proto.Scopes {
		if _, ok := w.groups[pgroupKey{prefix, s}]; ok {
			return true
		}
	}
	return false
}

// deliver turns a datum from a change stream into the events of every
// prefix that holds it, if it is newer than what the prefix has: the
// events of the view of it the prefix watch's scope sees.
func (w *prefixWatches) deliver(n *Node, d *proto.Datum) {
	if len(d.DataInfoID) == 0 || d.DataInfoID[0] != '/' {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.groups {
		if !proto.PrefixHolds(g.prefix, d.DataInfoID) {
			continue
		}
		old := g.known[d.DataInfoID]
		if old != nil && d.Version <= old.Version {
			continue
		}
		v, _ := n.view(d, g.scope)
		g.known[d.DataInfoID] = v
		delete(g.adds, d.DataInfoID)
		evs := g.events(old, v)
		if len(evs) == 0 {
			continue
		}
		for c := range g.subs {
			if old == nil {
				c.queueInitial(evs) // an id new to the prefix: its state
			} else {
				c.queueEvents(evs)
			}
		}
	}
}

// counts returns the prefixes watched and the watches.
func (w *prefixWatches) counts() (prefixes, watches int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, g := range w.groups {
		watches += len(g.subs)
	}
	return len(w.groups), watches
}
