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
// only grows. A REMOVE carries the value the path last had.
type Event struct {
	Type    EventType
	Path    string
	Value   string
	Version uint64
}

// wireEvent is a pmessage payload: {"type","path","value","version"}.
type wireEvent struct {
	Type    EventType `json:"type"`
	Path    string    `json:"path"`
	Value   string    `json:"value"`
	Version uint64    `json:"version"`
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

// pathRec is what the client knows of one path: its value and the
// version it was seen at. A removed path is kept (present false) for
// its version, so an older ADD arriving late cannot bring it back.
type pathRec struct {
	value   string
	version uint64
	present bool
}

// apply returns the record after an event, whether the event was newer
// than the record (else it is ignored), and whether a watcher must hear
// of it: the path appeared, went, or its value changed. An ADD of a path
// already present is an upsert; a newer version with the same value is
// recorded but is no news, as the session sends no event for it either.
func (r pathRec) apply(typ EventType, value string, version uint64) (next pathRec, newer, news bool) {
	if version <= r.version {
		return r, false, false
	}
	next = pathRec{value: value, version: version, present: typ != EventRemove}
	if !next.present {
		// A REMOVE says which value went; keep the one the client held
		// when the event (a reconcile's) carries none.
		if value == "" {
			next.value = r.value
		}
		return next, true, r.present
	}
	return next, true, !r.present || r.value != value
}

// tell is the event that takes a watcher from what it was told of a path
// (had) to the path's current record (cur), if any.
func tell(path string, had, cur pathRec) (Event, bool) {
	if cur.version <= had.version {
		return Event{}, false
	}
	switch {
	case !had.present && cur.present:
		return Event{Type: EventAdd, Path: path, Value: cur.value, Version: cur.version}, true
	case had.present && !cur.present:
		return Event{Type: EventRemove, Path: path, Value: had.value, Version: cur.version}, true
	case had.present && cur.present && had.value != cur.value:
		return Event{Type: EventUpdate, Path: path, Value: cur.value, Version: cur.version}, true
	}
	return Event{}, false
}

// pathChange is one record a reconcile sets.
type pathChange struct {
	path  string
	typ   EventType
	value string
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
		out = append(out, pathChange{path: path, typ: EventAdd, value: p.Data})
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
