package meta

import (
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

func members(data, sessions int) *state {
	st := &state{Data: map[string]string{}, Sessions: map[string]string{}}
	for i := range data {
		st.Data[string(rune('a'+i))] = "x:1"
	}
	for i := range sessions {
		st.Sessions[string(rune('p'+i))] = "x:1"
	}
	return st
}

func keys(kind string, ids ...string) []leaseKey {
	var out []leaseKey
	for _, id := range ids {
		out = append(out, leaseKey{kind, id})
	}
	return out
}

func TestMassive(t *testing.T) {
	d, s := proto.KindData, proto.KindSession
	for _, c := range []struct {
		name string
		st   *state
		exp  []leaseKey
		want bool
	}{
		{"one data node of three", members(3, 2), keys(d, "a"), false},
		{"the only session", members(3, 1), keys(s, "p"), false},
		{"two data nodes of three", members(3, 2), keys(d, "a", "b"), true},
		{"both sessions", members(3, 2), keys(s, "p", "q"), true},
		{"one data and one session of 3+2", members(3, 2), append(keys(d, "a"), keys(s, "p")...), false},
		{"three of five data nodes", members(5, 4), keys(d, "a", "b", "c"), true},
		{"two of five data nodes", members(5, 4), keys(d, "a", "b"), false},
		{"everything", members(3, 2), append(keys(d, "a", "b", "c"), keys(s, "p", "q")...), true},
	} {
		if got := massive(c.st, c.exp); got != c.want {
			t.Errorf("%s: massive = %v, want %v", c.name, got, c.want)
		}
	}
}

// A massive eviction waits one more lease, and even then only if some
// other member still heartbeats: a leader cut off from every node evicts
// nobody, however long it lasts.
func TestHoldMass(t *testing.T) {
	const lease = 3 * time.Second
	st := members(3, 2)
	t0 := time.Now()
	l := newLeases()
	l.grant(st, t0)
	all := append(keys(proto.KindData, "a", "b", "c"), keys(proto.KindSession, "p", "q")...)

	now := t0.Add(lease + time.Second)
	if !l.holdMass(st, all, now, lease) {
		t.Fatal("every member lapsed at once: want held")
	}
	if !l.holdMass(st, all, now.Add(10*lease), lease) {
		t.Fatal("every member still lapsed and nobody heartbeats: want held, however long")
	}

	// Two data nodes lapse, the rest heartbeat: held for one more lease,
	// then evicted.
	l = newLeases()
	l.grant(st, t0)
	now = t0.Add(lease + time.Second)
	for _, id := range []string{"c"} {
		l.touch(proto.KindData, id, now)
	}
	l.touch(proto.KindSession, "p", now)
	two := keys(proto.KindData, "a", "b")
	if !l.holdMass(st, two, now, lease) {
		t.Fatal("two of three data nodes lapsed: want held at first")
	}
	later := now.Add(lease)
	l.touch(proto.KindSession, "p", later)
	if l.holdMass(st, two, later, lease) {
		t.Fatal("still lapsed one lease later while a session heartbeats: want evicted")
	}

	// A lone lapse is never held, and ends a run of massive ones.
	if l.holdMass(st, keys(proto.KindData, "a"), later, lease) {
		t.Fatal("one lapsed node: want evicted at once")
	}
	if !l.holdMass(st, two, later, lease) {
		t.Fatal("a new massive run starts its wait afresh: want held")
	}
}
