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
	// massSince is when the leader first found a massive set of lapsed
	// leases (see holdMass) in the run that goes on now; zero if none.
	massSince time.Time
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
	l.massSince = time.Time{}
	for _, kind := range []string{proto.KindData, proto.KindSession} {
		for id := range st.members(kind) {
			l.seen[leaseKey{kind, id}] = now
		}
	}
}

func (l *leases) clear() {
	l.mu.Lock()
	clear(l.seen)
	l.massSince = time.Time{}
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

// massive says whether evicting exp would remove a large part of the
// cluster at once: at least two nodes, and more than half of all data and
// session nodes, or of the data nodes, or of the session nodes.
func massive(st *state, exp []leaseKey) bool {
	if len(exp) < 2 {
		return false
	}
	var data, sessions int
	for _, k := range exp {
		if k.kind == proto.KindData {
			data++
		} else {
			sessions++
		}
	}
	nd, ns := len(st.Data), len(st.Sessions)
	return 2*len(exp) > nd+ns || 2*data > nd || 2*sessions > ns
}

// holdMass judges a massive eviction (see massive). So many nodes going
// silent at once is more often this meta's own isolation (or nodes still
// looking for a new leader) than so many deaths, and evicting a live
// session drops its publishers everywhere. The leader therefore evicts
// them only with more evidence: the condition has lasted one more lease,
// and some other member heartbeats meanwhile, so this leader is not cut
// off from the nodes. It returns true while it holds them back.
func (l *leases) holdMass(st *state, exp []leaseKey, now time.Time, lease time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !massive(st, exp) {
		l.massSince = time.Time{}
		return false
	}
	if l.massSince.IsZero() {
		l.massSince = now
	}
	if now.Sub(l.massSince) < lease {
		return true
	}
	for k, t := range l.seen {
		if now.Sub(t) <= lease && !slices.Contains(exp, k) {
			return false // someone else reaches this leader: they did go
		}
	}
	return true
}
