package client

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, channel, payload string
		want                           Event
		err                            string
	}{
		{"add", "/nodes/", "/nodes/w1", `{"type":"ADD","path":"/nodes/w1","value":"10.0.0.1","version":7}`,
			Event{Type: EventAdd, Path: "/nodes/w1", Value: "10.0.0.1", Version: 7}, ""},
		{"update", "/nodes/", "/nodes/w1", `{"type":"UPDATE","path":"/nodes/w1","value":"x","version":8}`,
			Event{Type: EventUpdate, Path: "/nodes/w1", Value: "x", Version: 8}, ""},
		{"remove with its zone and an unknown field", "/n", "/nodes/a/b", `{"type":"REMOVE","path":"/nodes/a/b","value":"x","version":9,"zone":"z1","new":1}`,
			Event{Type: EventRemove, Path: "/nodes/a/b", Value: "x", Version: 9, Zone: "z1"}, ""},
		{"add with datacenter and zone", "/", "/a", `{"type":"ADD","path":"/a","value":"v","version":3,"datacenter":"dc2","zone":"dc2-b"}`,
			Event{Type: EventAdd, Path: "/a", Value: "v", Version: 3, Datacenter: "dc2", Zone: "dc2-b"}, ""},
		{"escaped value", "/", "/a", `{"type":"ADD","path":"/a","value":"{\"k\":\"v\"}\n","version":1}`,
			Event{Type: EventAdd, Path: "/a", Value: "{\"k\":\"v\"}\n", Version: 1}, ""},
		{"bad json", "/", "/a", `{"type":`, Event{}, "unexpected end"},
		{"unknown type", "/", "/a", `{"type":"CHANGE","path":"/a","value":"","version":1}`, Event{}, "unknown type"},
		{"path differs from channel", "/", "/a", `{"type":"ADD","path":"/b","value":"","version":1}`, Event{}, "names path"},
		{"outside prefix", "/x/", "/a", `{"type":"ADD","path":"/a","value":"","version":1}`, Event{}, "not under"},
		{"bad path", "/", "/a/", `{"type":"ADD","path":"/a/","value":"","version":1}`, Event{}, "empty segment"},
		{"version zero", "/", "/a", `{"type":"ADD","path":"/a","value":"","version":0}`, Event{}, "version 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEvent(tc.prefix, tc.channel, tc.payload)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestPathRecApply(t *testing.T) {
	absent := pathRec{}
	v5 := pathRec{value: "a", version: 5, present: true}
	gone7 := pathRec{value: "a", version: 7}
	for _, tc := range []struct {
		name        string
		rec         pathRec
		typ         EventType
		value       string
		version     uint64
		want        pathRec
		newer, news bool
	}{
		{"add new path", absent, EventAdd, "a", 5, v5, true, true},
		{"older add ignored", v5, EventAdd, "b", 4, v5, false, false},
		{"same version ignored", v5, EventUpdate, "b", 5, v5, false, false},
		{"update", v5, EventUpdate, "b", 6, pathRec{"b", 6, true, place{}}, true, true},
		{"add of known path is an upsert", v5, EventAdd, "b", 6, pathRec{"b", 6, true, place{}}, true, true},
		{"same value, newer version: recorded, no news", v5, EventAdd, "a", 9, pathRec{"a", 9, true, place{}}, true, false},
		{"remove", v5, EventRemove, "a", 7, gone7, true, true},
		{"remove without value keeps the last one", v5, EventRemove, "", 7, gone7, true, true},
		{"remove of unknown path: tombstone, no news", absent, EventRemove, "z", 3, pathRec{"z", 3, false, place{}}, true, false},
		{"stale add after remove ignored", gone7, EventAdd, "a", 6, gone7, false, false},
		{"add after remove", gone7, EventAdd, "c", 8, pathRec{"c", 8, true, place{}}, true, true},
		{"update of removed path brings it back", gone7, EventUpdate, "c", 8, pathRec{"c", 8, true, place{}}, true, true},
		{"remove of removed path", gone7, EventRemove, "a", 9, pathRec{"a", 9, false, place{}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, newer, news := tc.rec.apply(tc.typ, tc.value, tc.version, place{})
			if got != tc.want || newer != tc.newer || news != tc.news {
				t.Fatalf("apply = %+v newer=%v news=%v; want %+v newer=%v news=%v", got, newer, news, tc.want, tc.newer, tc.news)
			}
		})
	}
	// Where the value was set: a known change is news, an unknown
	// place (a reconcile's LOOKUP) keeps the record's.
	at := place{"dc1", "z1"}
	p5 := pathRec{"a", 5, true, at}
	for _, tc := range []struct {
		name     string
		typ      EventType
		value    string
		at, want place
		news     bool
	}{
		{"same place", EventUpdate, "a", at, at, false},
		{"unknown place keeps the record's", EventAdd, "a", place{}, at, false},
		{"half known", EventAdd, "a", place{zone: "z1"}, at, false},
		{"zone changed", EventUpdate, "a", place{"dc1", "z2"}, place{"dc1", "z2"}, true},
		{"datacenter changed", EventUpdate, "a", place{"dc2", "z1"}, place{"dc2", "z1"}, true},
		{"remove keeps the place", EventRemove, "", place{}, at, true},
	} {
		got, newer, news := p5.apply(tc.typ, tc.value, 6, tc.at)
		if !newer || news != tc.news || got.at != tc.want || got.value != "a" {
			t.Errorf("%s: apply = %+v newer=%v news=%v; want place %+v news=%v", tc.name, got, newer, news, tc.want, tc.news)
		}
	}
}

func TestTell(t *testing.T) {
	for _, tc := range []struct {
		name     string
		had, cur pathRec
		want     Event
		ok       bool
	}{
		{"new path", pathRec{}, pathRec{"a", 3, true, place{}}, Event{Type: EventAdd, Path: "/p", Value: "a", Version: 3}, true},
		{"changed value", pathRec{"a", 3, true, place{}}, pathRec{"b", 4, true, place{}}, Event{Type: EventUpdate, Path: "/p", Value: "b", Version: 4}, true},
		{"gone, with the value it had", pathRec{"a", 3, true, place{}}, pathRec{"b", 5, false, place{}}, Event{Type: EventRemove, Path: "/p", Value: "a", Version: 5}, true},
		{"same value", pathRec{"a", 3, true, place{}}, pathRec{"a", 6, true, place{}}, Event{}, false},
		{"never told, gone", pathRec{}, pathRec{"a", 6, false, place{}}, Event{}, false},
		{"older than told", pathRec{"a", 6, true, place{}}, pathRec{"b", 5, true, place{}}, Event{}, false},
		{"equal to told", pathRec{"a", 6, true, place{}}, pathRec{"b", 6, false, place{}}, Event{}, false},
		{"new path with its place", pathRec{}, pathRec{"a", 3, true, place{"dc2", "z"}},
			Event{Type: EventAdd, Path: "/p", Value: "a", Version: 3, Datacenter: "dc2", Zone: "z"}, true},
		{"moved zone", pathRec{"a", 3, true, place{"dc1", "z1"}}, pathRec{"a", 4, true, place{"dc1", "z2"}},
			Event{Type: EventUpdate, Path: "/p", Value: "a", Version: 4, Datacenter: "dc1", Zone: "z2"}, true},
		{"place learned, same value", pathRec{"a", 3, true, place{}}, pathRec{"a", 4, true, place{"dc1", "z1"}}, Event{}, false},
		{"gone, with the place it had", pathRec{"a", 3, true, place{"dc1", "z1"}}, pathRec{"a", 5, false, place{"dc9", "z9"}},
			Event{Type: EventRemove, Path: "/p", Value: "a", Version: 5, Datacenter: "dc1", Zone: "z1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tell("/p", tc.had, tc.cur)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("tell = %+v %v; want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestReconcileChanges(t *testing.T) {
	held := map[string]*pathRec{
		"/nodes/w1":       {"a", 3, true, place{}},
		"/nodes/w2":       {"b", 3, true, place{}},
		"/nodes/w3":       {"c", 2, false, place{}}, // already removed
		"/nodes/sub/x":    {"d", 3, true, place{}},  // another parent
		"/nodes/workers2": {"e", 3, true, place{}},  // same parent, kept
	}
	snap := Snapshot{DataInfoID: "/nodes", Version: 10, Publishers: []Publisher{
		{RegisterID: "other", Data: "o"}, // outside the prefix /nodes/w
		{RegisterID: "w1", Data: "a2"},
		{RegisterID: "w4", Data: "n"},
		{RegisterID: "workers2", Data: "e"},
	}}
	got := reconcileChanges("/nodes/w", snap, held)
	var lines []string
	for _, ch := range got {
		lines = append(lines, fmt.Sprintf("%s %s=%s", ch.typ, ch.path, ch.value))
	}
	slices.Sort(lines)
	want := []string{"ADD /nodes/w1=a2", "ADD /nodes/w4=n", "ADD /nodes/workers2=e", "REMOVE /nodes/w2="}
	if !slices.Equal(lines, want) {
		t.Fatalf("changes %q, want %q", lines, want)
	}
	// Applied at the lookup's version, through the same filter as events.
	pt := &ptopic{prefix: "/nodes/w", paths: held}
	for _, ch := range got {
		pt.set(ch.path, ch.typ, ch.value, snap.Version, ch.at)
	}
	if r := held["/nodes/w2"]; r.present || r.version != 10 || r.value != "b" {
		t.Fatalf("w2 after reconcile: %+v", *r)
	}
	// A path seen newer than the lookup is left alone.
	held["/nodes/w4"] = &pathRec{"newer", 12, true, place{}}
	pt.set("/nodes/w4", EventRemove, "", 11, place{})
	if r := held["/nodes/w4"]; !r.present || r.value != "newer" {
		t.Fatalf("w4 after an older reconcile: %+v", *r)
	}
}

// A watcher's queue coalesces per path, keeps first-change order, and
// never tells a version at or below one it told.
func TestWatchCoalescing(t *testing.T) {
	type step struct {
		path string
		rec  pathRec
	}
	for _, tc := range []struct {
		name  string
		told  map[string]pathRec
		steps []step
		want  []string
	}{
		{"one per change when fast", nil, []step{{"/a", pathRec{"1", 1, true, place{}}}}, []string{"ADD /a=1@1"}},
		{"add then update is one add", nil, []step{
			{"/a", pathRec{"1", 1, true, place{}}}, {"/b", pathRec{"x", 2, true, place{}}}, {"/a", pathRec{"2", 3, true, place{}}},
		}, []string{"ADD /a=2@3", "ADD /b=x@2"}},
		{"add then remove is nothing", nil, []step{
			{"/a", pathRec{"1", 1, true, place{}}}, {"/a", pathRec{"1", 2, false, place{}}},
		}, nil},
		{"remove then add back with the same value is nothing", map[string]pathRec{"/a": {"1", 1, true, place{}}}, []step{
			{"/a", pathRec{"1", 2, false, place{}}}, {"/a", pathRec{"1", 3, true, place{}}},
		}, nil},
		{"update then remove is a remove of the told value", map[string]pathRec{"/a": {"1", 1, true, place{}}}, []step{
			{"/a", pathRec{"2", 2, true, place{}}}, {"/a", pathRec{"2", 3, false, place{}}},
		}, []string{"REMOVE /a=1@3"}},
		{"an older record queued later is dropped", map[string]pathRec{"/a": {"1", 5, true, place{}}}, []step{
			{"/a", pathRec{"0", 4, false, place{}}}, {"/b", pathRec{"b", 6, true, place{}}},
		}, []string{"ADD /b=b@6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &Watch{told: make(map[string]pathRec), wake: make(chan struct{}, 1)}
			for p, r := range tc.told {
				w.told[p] = r
			}
			for _, s := range tc.steps {
				w.offer(s.path, s.rec)
			}
			var got []string
			for {
				ev, ok := w.next()
				if !ok {
					break
				}
				got = append(got, fmt.Sprintf("%s %s=%s@%d", ev.Type, ev.Path, ev.Value, ev.Version))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("events %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseReplies(t *testing.T) {
	if v, ver, err := parseGet([]any{int64(42), "x"}); err != nil || v != "x" || ver != 42 {
		t.Fatalf("parseGet: %q %d %v", v, ver, err)
	}
	for _, bad := range []any{nil, "x", []any{int64(1)}, []any{"1", "x"}, []any{int64(0), "x"}, []any{int64(1), int64(2)}} {
		if _, _, err := parseGet(bad); err == nil {
			t.Errorf("parseGet(%#v) accepted", bad)
		}
	}
	if n, err := parseNames([]any{"a", "b"}); err != nil || !slices.Equal(n, []string{"a", "b"}) {
		t.Fatalf("parseNames: %q %v", n, err)
	}
	if n, err := parseNames(nil); err != nil || len(n) != 0 {
		t.Fatalf("parseNames(nil): %q %v", n, err)
	}
	for _, bad := range []any{"a", []any{"a", int64(1)}} {
		if _, err := parseNames(bad); err == nil {
			t.Errorf("parseNames(%#v) accepted", bad)
		}
	}
}

func TestLockOptionsValidate(t *testing.T) {
	base := func() Options { return Options{Sessions: []string{"127.0.0.1:1"}} }
	for _, tc := range []struct {
		name string
		edit func(*Options)
		err  string
	}{
		{"defaults", func(*Options) {}, ""},
		{"ttl too short", func(o *Options) { o.LockTTL = 50 * time.Millisecond }, "LockTTL"},
		{"ttl too long", func(o *Options) { o.LockTTL = 25 * time.Hour }, "LockTTL"},
		{"chunk too long", func(o *Options) { o.LockWaitChunk = 11 * time.Minute }, "LockWaitChunk"},
		{"identity too long", func(o *Options) { o.Identity = strings.Repeat("x", 300) }, "Identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.edit(&o)
			o.setDefaults()
			err := o.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Validate: %v, want %q", err, tc.err)
			}
		})
	}
	a, b := base(), base()
	a.setDefaults()
	b.setDefaults()
	if a.Identity == b.Identity {
		t.Fatalf("two clients got the same default identity %q", a.Identity)
	}
}
