package sessionserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// eventConn is a connection whose queued prefix events the test reads
// straight from its queue (no push loop runs).
func eventConn(id string) *clientConn {
	nc, _ := net.Pipe()
	return &clientConn{id: id, nc: nc, wake: make(chan struct{}, 1), pats: map[string]proto.Scope{}, n: &Node{log: slog.New(slog.DiscardHandler)}}
}

// cut says whether the session closed c's connection.
func cut(c *clientConn) bool {
	c.nc.SetWriteDeadline(time.Now().Add(time.Millisecond)) // nobody reads the pipe
	_, err := c.nc.Write([]byte{0})
	return errors.Is(err, io.ErrClosedPipe)
}

func takeEvents(t *testing.T, c *clientConn) string {
	t.Helper()
	c.mu.Lock()
	evs := c.events
	c.events, c.evBytes = nil, 0
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
	n.subs.init(n)
	close(n.subs.stop) // no manager: requests are dropped
	a := eventConn("a")
	n.pwatchAdd(a, "/w/", proto.ScopeDatacenter)
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
		n.pwatch.deliver(n, s.d)
		if got := takeEvents(t, a); got != s.want {
			t.Fatalf("step %d (%s v%d): events %q, want %q", i, s.d.DataInfoID, s.d.Version, got, s.want)
		}
	}
	// A late joiner gets what is there now; a narrower prefix on the
	// same session only its part.
	b := eventConn("b")
	n.pwatchAdd(b, "/w/", proto.ScopeDatacenter)
	if got := takeEvents(t, b); got != "ADD /w/x=1@5" {
		t.Fatalf("late joiner's events %q", got)
	}
	nb := eventConn("nb")
	n.pwatchAdd(nb, "/w/g", proto.ScopeDatacenter)
	n.pwatch.deliver(n, datum("/w/g2", 14, "s", "1"))
	n.pwatch.deliver(n, datum("/w", 15, "x", "1", "g0", "leaf"))
	if got := takeEvents(t, nb); got != "ADD /w/g2/s=1@14, ADD /w/g0=leaf@15" {
		t.Fatalf("narrow prefix events %q", got)
	}
	if got := takeEvents(t, b); got != "ADD /w/g2/s=1@14, ADD /w/g0=leaf@15" {
		t.Fatalf("late joiner's later events %q", got)
	}
	// The last client of a prefix leaving drops its state.
	n.pwatchRemove(a, "/w/", proto.ScopeDatacenter)
	n.pwatchRemove(b, "/w/", proto.ScopeDatacenter)
	if p, w := n.pwatch.counts(); p != 1 || w != 1 {
		t.Fatalf("after two leave: %d prefixes, %d watches", p, w)
	}
}

// A client watching a prefix gets its whole state whatever its size (as
// a SUBSCRIBE gets the whole datum), the first from the data nodes,
// later joiners from ADDs encoded once for all; only changes it leaves
// unread past maxEventBacklog count against it, and cut it off.
func TestPrefixJoinIsNotABacklog(t *testing.T) {
	defer func(v int) { maxEventBacklog = v }(maxEventBacklog)
	maxEventBacklog = 3 << 10
	n := &Node{}
	n.pwatch.init()
	n.subs.init(n)
	close(n.subs.stop)
	first := eventConn("first")
	n.pwatchAdd(first, "/big/", proto.ScopeDatacenter)
	var kv []string
	for i := range 200 {
		kv = append(kv, fmt.Sprintf("p%03d", i), strings.Repeat("v", 20))
	}
	n.pwatch.deliver(n, datum("/big", 3, kv...))
	takeEvents(t, first)
	a, b := eventConn("a"), eventConn("b")
	n.pwatchAdd(a, "/big/", proto.ScopeDatacenter) // 200 ADDs, well over the 1 KiB backlog: still connected
	n.pwatchAdd(b, "/big/", proto.ScopeDatacenter)
	a.mu.Lock()
	same := len(a.events) == 200 && len(b.events) == 200 && &a.events[0].payload[0] == &b.events[0].payload[0]
	a.mu.Unlock()
	if !same {
		t.Fatalf("joiners got %d and %d ADDs, or each its own encoding", len(a.events), len(b.events))
	}
	if got := takeEvents(t, a); !strings.HasPrefix(got, "ADD /big/p000=") || strings.Count(got, "ADD") != 200 {
		t.Fatalf("joiner's ADDs: %.80s...", got)
	}
	if cut(first) || cut(a) || cut(b) {
		t.Fatal("a watcher was cut off for its initial state")
	}
	// Two bursts of 15 changes (about 2 KiB each): a reads between them,
	// b reads nothing and is cut off at the second.
	burst := func(v uint64, value string) {
		for i := 1; i < 30; i += 2 {
			kv[i] = value
		}
		n.pwatch.deliver(n, datum("/big", v, kv...))
	}
	burst(4, strings.Repeat("w", 20))
	if cut(a) || cut(b) {
		t.Fatal("cut off after one burst")
	}
	takeEvents(t, a)
	burst(5, strings.Repeat("x", 20))
	if !cut(b) || cut(a) {
		t.Fatalf("after two bursts: b cut %v (want true), a cut %v (want false)", cut(b), cut(a))
	}
}
