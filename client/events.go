package client

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/slotreg/slotreg/proto"
)

// This file is the pure part of prefix watches: decoding events,
// deciding which ones are news, and what a watcher must be told. No
// locks, no I/O.

// EventType says what happened to a path.
type EventType string

// The event types, as the session names them.
const (
	EventAdd    EventType = proto.EventAdd
	EventUpdate EventType = proto.EventUpdate
	EventRemove EventType = proto.EventRemove
)

// Event is one change of a path under a watched prefix. Version is the
// version of the path's parent dataInfoId at the change; per path it
// only grows. A REMOVE carries the value, datacenter and zone the path
// last had.
type Event struct {
	Type    EventType
	Path    string
	Value   string
	Version uint64
	// Datacenter and Zone are those of the session the path's value was
	// set through. They are empty when the client learned the path from
	// a lookup after a failover (a LOOKUP reply does not name them) or
	// from a session that predates datacenters. A change of either is
	// an UPDATE, as the session tells it.
	Datacenter string
	Zone       string
}

// wireEvent is a pmessage payload:
// {"type","path","value","version","datacenter","zone"}.
type wireEvent struct {
	Type       EventType `json:"type"`
	Path       string    `json:"path"`
	Value      string    `json:"value"`
	Version    uint64    `json:"version"`
	Datacenter string    `json:"datacenter"`
	Zone       string    `json:"zone"`
}

// parseEvent decodes the payload of a pmessage that came on channel (the
// changed path) for a watch of prefix.
func parseEvent(prefix, channel, payload string) (Event, error) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		return Event{}, fmt.Errorf("event on %s: %w", channel, err)
	}
	switch w.Type {
	case EventAdd, EventUpdate, EventRemove:
	default:
		return Event{}, fmt.Errorf("event on %s: unknown type %q", channel, w.Type)
	}
	if w.Path != channel {
		return Event{}, fmt.Errorf("event on %s names path %q", channel, w.Path)
	}
	if !strings.HasPrefix(w.Path, prefix) {
		return Event{}, fmt.Errorf("event on %s: not under the watched prefix %q", channel, prefix)
	}
	if _, _, err := proto.SplitPath(w.Path); err != nil {
		return Event{}, fmt.Errorf("event on %s: %w", channel, err)
	}
	if w.Version == 0 {
		return Event{}, fmt.Errorf("event on %s: version 0", channel)
	}
	return Event(w), nil
}

// pathRec is what the client knows of one path: its value, where it
// was set, and the version it was seen at. A removed path is kept
// (present false) for its version, so an older ADD arriving late cannot
// bring it back.
type pathRec struct {
	value   string
	version uint64
	present bool
	at      place
}

// place is the datacenter and zone a path's value was set in; an empty
// field is unknown (a LOOKUP does not name them).
type place struct{ datacenter, zone string }

// or fills p's unknown fields from q.
func (p place) or(q place) place {
	if p.datacenter == "" {
		p.datacenter = q.datacenter
	}
	if p.zone == "" {
		p.zone = q.zone
	}
	return p
}

// differs says whether p and q are known to be different places.
func (p place) differs(q place) bool {
	known := func(a, b string) bool { return a != "" && b != "" && a != b }
	return known(p.datacenter, q.datacenter) || known(p.zone, q.zone)
}

// apply returns the record after an event at place at, whether the event
// was newer than the record (else it is ignored), and whether a watcher
// must hear of it: the path appeared, went, or its value or place
// changed. An ADD of a path already present is an upsert; a newer
// version with the same value and place is recorded but is no news, as
// the session sends no event for it either. What at leaves unknown is
// kept from the record.
func (r pathRec) apply(typ EventType, value string, version uint64, at place) (next pathRec, newer, news bool) {
	if version <= r.version {
		return r, false, false
	}
	next = pathRec{value: value, version: version, present: typ != EventRemove, at: at.or(r.at)}
	if !next.present {
		// A REMOVE says which value went; keep the one the client held
		// when the event (a reconcile's) carries none.
		if value == "" {
			next.value = r.value
		}
		return next, true, r.present
	}
	return next, true, !r.present || r.value != value || r.at.differs(next.at)
}

// tell is the event that takes a watcher from what it was told of a path
// (had) to the path's current record (cur), if any.
func tell(path string, had, cur pathRec) (Event, bool) {
	if cur.version <= had.version {
		return Event{}, false
	}
	ev := Event{Path: path, Value: cur.value, Version: cur.version, Datacenter: cur.at.datacenter, Zone: cur.at.zone}
	switch {
	case !had.present && cur.present:
		ev.Type = EventAdd
	case had.present && !cur.present:
		ev.Type, ev.Value, ev.Datacenter, ev.Zone = EventRemove, had.value, had.at.datacenter, had.at.zone
	case had.present && cur.present && (had.value != cur.value || had.at.differs(cur.at)):
		ev.Type = EventUpdate
	default:
		return Event{}, false
	}
	return ev, true
}

// pathChange is one record a reconcile sets.
type pathChange struct {
	path  string
	typ   EventType
	value string
	at    place
}

// reconcileChanges compares a LOOKUP of the dataInfoId parent (its
// publishers are the paths parent/registerId) with the paths the client
// holds under it and prefix: an ADD for every path the LOOKUP has, a
// REMOVE for every held path it lacks. Applied at the LOOKUP's version,
// they bring what the client holds up to that version; apply keeps
// whatever the client already saw newer.
func reconcileChanges(prefix string, snap Snapshot, held map[string]*pathRec) []pathChange {
	var out []pathChange
	in := make(map[string]bool, len(snap.Publishers))
	for _, p := range snap.Publishers {
		path := proto.JoinPath(snap.DataInfoID, p.RegisterID)
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		in[path] = true
		out = append(out, pathChange{path: path, typ: EventAdd, value: p.Data, at: place{p.Datacenter, p.Zone}})
	}
	for path, r := range held {
		if !r.present || in[path] || parentOf(path) != snap.DataInfoID {
			continue
		}
		out = append(out, pathChange{path: path, typ: EventRemove})
	}
	return out
}

// parentOf is the dataInfoId that holds path ("" for the root or a bad
// path).
func parentOf(path string) string {
	parent, _, err := proto.SplitPath(path)
	if err != nil {
		return ""
	}
	return parent
}

// pathQueue holds, for a watcher, the newest record of each path it has
// not yet been told about, in the order the paths first changed: a slow
// watcher is told the net change of each path, not every step of it.
type pathQueue struct {
	next  map[string]pathRec
	order []string
}

// put records cur as path's newest record.
func (q *pathQueue) put(path string, cur pathRec) {
	if q.next == nil {
		q.next = make(map[string]pathRec)
	}
	if old, ok := q.next[path]; ok {
		if cur.version > old.version {
			q.next[path] = cur
		}
		return
	}
	q.next[path] = cur
	q.order = append(q.order, path)
}

// take removes the oldest path queued and returns it with its record.
func (q *pathQueue) take() (string, pathRec, bool) {
	if len(q.order) == 0 {
		return "", pathRec{}, false
	}
	path := q.order[0]
	q.order[0] = ""
	q.order = q.order[1:]
	if len(q.order) == 0 {
		q.order = nil // let the backing array go
	}
	cur := q.next[path]
	delete(q.next, path)
	return path, cur, true
}
