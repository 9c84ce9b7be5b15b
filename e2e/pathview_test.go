package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
)

// pathView applies a prefix watch's events to a map of path -> value, as
// a DolphinScheduler-style client would, and records what a correct
// stream never does: a version going back on a path, an UPDATE or
// REMOVE of a path it does not hold, or a REMOVE its guard calls false.
type pathView struct {
	mu      sync.Mutex
	state   map[string]string
	vers    map[string]uint64
	allowed func(path string) bool // nil: every REMOVE is real
	bad     []string
}

func mustPathView(t *testing.T, addr, pattern string) *pathView {
	t.Helper()
	v := &pathView{state: map[string]string{}, vers: map[string]uint64{}}
	evs := watchPaths(t, addr, pattern)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range evs {
			v.apply(ev)
		}
	}()
	t.Cleanup(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		for i, b := range v.bad {
			if i == 10 {
				t.Errorf("... and %d more", len(v.bad)-10)
				break
			}
			t.Errorf("prefix watch on %s: %s", addr, b)
		}
	})
	return v
}

func (v *pathView) apply(ev pathEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ev.Version < v.vers[ev.Path] {
		v.bad = append(v.bad, fmt.Sprintf("%s %s: version %d after %d", ev.Type, ev.Path, ev.Version, v.vers[ev.Path]))
	}
	v.vers[ev.Path] = max(v.vers[ev.Path], ev.Version)
	_, held := v.state[ev.Path]
	switch ev.Type {
	case "ADD":
		// An ADD of a held path comes only after a reconnect, which
		// re-subscribes: an upsert.
		v.state[ev.Path] = ev.Value
	case "UPDATE":
		if !held {
			v.bad = append(v.bad, "UPDATE of a path not held: "+ev.Path)
		}
		v.state[ev.Path] = ev.Value
	case "REMOVE":
		if !held {
			v.bad = append(v.bad, "REMOVE of a path not held: "+ev.Path)
		}
		if v.allowed != nil && !v.allowed(ev.Path) {
			v.bad = append(v.bad, fmt.Sprintf("false removal of %s at version %d", ev.Path, ev.Version))
		}
		delete(v.state, ev.Path)
	default:
		v.bad = append(v.bad, "unknown event "+ev.Type)
	}
}

// guardRemovals flags every REMOVE that allowed does not call real.
func (v *pathView) guardRemovals(allowed func(path string) bool) {
	v.mu.Lock()
	v.allowed = allowed
	v.mu.Unlock()
}

func (v *pathView) snapshot() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.state)
}

// convergePaths waits until every path view holds the truth: the path
// svc/rid for each publisher, with its data.
func (f *fleet) convergePaths(within time.Duration, views []*pathView) {
	f.t.Helper()
	want := func() map[string]string {
		f.mu.Lock()
		defer f.mu.Unlock()
		out := map[string]string{}
		for svc, pubs := range f.truth {
			for rid, d := range pubs {
				out[svc+"/"+rid] = d
			}
		}
		return out
	}
	testutil.Eventually(f.t, within, func() (bool, string) {
		w := want()
		for i, v := range views {
			if got := v.snapshot(); !maps.Equal(got, w) {
				return false, fmt.Sprintf("path view %d: %s", i, diffPaths(got, w))
			}
		}
		return true, ""
	})
}

// diffPaths names the first few differences of two path maps.
func diffPaths(got, want map[string]string) string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[p]; !ok || g != want[p] {
			out = append(out, fmt.Sprintf("%s=%q want %q", p, g, want[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("%s=%q not wanted", p, got[p]))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("... %d in all", len(out)))
	}
	return strings.Join(out, "; ")
}
