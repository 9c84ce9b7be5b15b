package meta

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// leases holds, on the leader only, when each data and session node last
// heartbeated. It is deliberately not replicated: a new leader starts every
// member's lease afresh (see grant), which costs one lease period of
// detection delay after a leader change and saves a log write per
// heartbeat.
type leases struct {
	mu   sync.Mutex
	seen map[leaseKey]time.Time
}

type leaseKey struct{ kind, id string }

func newLeases() *leases { return &leases{seen: map[leaseKey]time.Time{}} }

func (l *leases) touch(kind, id string, now time.Time) {
	l.mu.Lock()
	l.seen[leaseKey{kind, id}] = now
	l.mu.Unlock()
}

func (l *leases) get(kind, id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.seen[leaseKey{kind, id}]
	return t, ok
}

func (l *leases) forget(kind, id string) {
	l.mu.Lock()
	delete(l.seen, leaseKey{kind, id})
	l.mu.Unlock()
}

// grant gives every data and session member of st a fresh lease starting
// at now and drops everything else; a node that just became leader calls
// it so that a leader change evicts nobody.
func (l *leases) grant(st *state, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.seen)
	for _, kind := range []string{proto.KindData, proto.KindSession} {
		for id := range st.members(kind) {
			l.seen[leaseKey{kind, id}] = now
		}
	}
}

func (l *leases) clear() {
	l.mu.Lock()
	clear(l.seen)
	l.mu.Unlock()
}

// expired lists the members of st whose lease is older than lease at now,
// data nodes first, each kind sorted by ID. A member without a lease entry
// (it joined through a log entry this leader did not see as a heartbeat)
// gets one starting now instead.
func (l *leases) expired(st *state, now time.Time, lease time.Duration) []leaseKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []leaseKey
	for _, kind := range []string{proto.KindData, proto.KindSession} {
		for _, id := range slices.Sorted(maps.Keys(st.members(kind))) {
			k := leaseKey{kind, id}
			t, ok := l.seen[k]
			if !ok {
				l.seen[k] = now
				continue
			}
			if now.Sub(t) > lease {
				out = append(out, k)
			}
		}
	}
	return out
}
