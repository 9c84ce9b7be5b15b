package sessionserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

// eventConn is a connection whose queued prefix events the test reads
// straight from its queue (no push loop runs).
func eventConn(id string) *clientConn {
	return &clientConn{id: id, wake: make(chan struct{}, 1), pats: map[string]struct{}{}}
}

func takeEvents(t *testing.T, c *clientConn) string {
	t.Helper()
	c.mu.Lock()
	evs := c.events
	c.events = nil
	c.mu.Unlock()
	var out []string
	for _, ev := range evs {
		var e struct {
			Type, Path, Value string
			Version           uint64
		}
		if err := json.Unmarshal(ev.payload, &e); err != nil || e.Path != ev.path {
			t.Fatalf("event %q for %s: %v", ev.payload, ev.path, err)
		}
		out = append(out, fmt.Sprintf("%s %s=%s@%d", e.Type, e.Path, e.Value, e.Version))
	}
	return strings.Join(out, ", ")
}

func datum(id string, v uint64, kv ...string) *proto.Datum {
	d := &proto.Datum{DataInfoID: id, Version: v}
	for i := 0; i < len(kv); i += 2 {
		d.Entries = append(d.Entries, proto.Entry{RegisterID: kv[i], Data: kv[i+1]})
	}
	return d
}

// A prefix group turns each newer datum into the difference from the
// last one; older or equal versions (a late answer from a slot's old
// leader, a re-sent state) change nothing; a client joining later gets
// the current paths as ADDs first.
func TestPrefixWatchEvents(t *testing.T) {
	n := &Node{}
	n.pwatch.init()
	n.subs.init()
	close(n.subs.stop) // no manager: requests are dropped
	a := eventConn("a")
	n.pwatchAdd(a, "/w/")
	steps := []struct {
		d    *proto.Datum
		want string
	}{
		{datum("/w", 5, "x", "1"), "ADD /w/x=1@5"}, // the prefix's own directory
		{datum("/w/g1", 7, "p", "a", "q", "b"), "ADD /w/g1/p=a@7, ADD /w/g1/q=b@7"},
		{datum("/w/g1", 6, "p", "old"), ""}, // older: ignored
		{datum("/w/g1", 7, "p", "a"), ""},   // equal: ignored
		{datum("/w/g1", 9, "p", "a2", "r", "c"), "UPDATE /w/g1/p=a2@9, REMOVE /w/g1/q=b@9, ADD /w/g1/r=c@9"},
		{datum("/w/g1", 10, "p", "a2", "r", "c"), ""},                     // a new leader's raised version
		{datum("/wx", 11, "y", "1"), ""},                                  // outside the prefix
		{datum("svc", 12, "y", "1"), ""},                                  // not a path
		{datum("/w/g1", 13), "REMOVE /w/g1/p=a2@13, REMOVE /w/g1/r=c@13"}, // emptied
	}
	for i, s := range steps {
		n.pwatch.deliver(s.d)
		if got := takeEvents(t, a); got != s.want {
			t.Fatalf("step %d (%s v%d): events %q, want %q", i, s.d.DataInfoID, s.d.Version, got, s.want)
		}
	}
	// A late joiner gets what is there now; a narrower prefix on the
	// same session only its part.
	b := eventConn("b")
	n.pwatchAdd(b, "/w/")
	if got := takeEvents(t, b); got != "ADD /w/x=1@5" {
		t.Fatalf("late joiner's events %q", got)
	}
	nb := eventConn("nb")
	n.pwatchAdd(nb, "/w/g")
	n.pwatch.deliver(datum("/w/g2", 14, "s", "1"))
	n.pwatch.deliver(datum("/w", 15, "x", "1", "g0", "leaf"))
	if got := takeEvents(t, nb); got != "ADD /w/g2/s=1@14, ADD /w/g0=leaf@15" {
		t.Fatalf("narrow prefix events %q", got)
	}
	if got := takeEvents(t, b); got != "ADD /w/g2/s=1@14, ADD /w/g0=leaf@15" {
		t.Fatalf("late joiner's later events %q", got)
	}
	// The last client of a prefix leaving drops its state.
	n.pwatchRemove(a, "/w/")
	n.pwatchRemove(b, "/w/")
	if p, w := n.pwatch.counts(); p != 1 || w != 1 {
		t.Fatalf("after two leave: %d prefixes, %d watches", p, w)
	}
}
