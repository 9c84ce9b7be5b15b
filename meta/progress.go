package meta

import (
	"maps"
	"sync"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// progressBook holds, on the leader only, the latest Progress each data
// node reported in its heartbeat: for every slot it follows, the op-log
// sequence it has applied. Like leases it is not replicated: it changes
// with every heartbeat, and it matters only at the moment the leader
// removes a data node, when it decides (and logs, as Prefer) which
// follower of each orphaned slot to promote. A new leader starts empty and
// learns it within one heartbeat interval.
type progressBook struct {
	mu sync.Mutex
	by map[string]map[int]uint64 // data node ID -> slot -> seq
}

func newProgressBook() *progressBook { return &progressBook{by: map[string]map[int]uint64{}} }

// set replaces a node's report; nil (an old client, or a node following
// nothing) forgets it.
func (p *progressBook) set(id string, prog map[int]uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prog == nil {
		delete(p.by, id)
		return
	}
	p.by[id] = prog
}

func (p *progressBook) forget(id string) {
	p.mu.Lock()
	delete(p.by, id)
	p.mu.Unlock()
}

func (p *progressBook) clear() {
	p.mu.Lock()
	clear(p.by)
	p.mu.Unlock()
}

// copyOf returns a node's last report (nil if none); callers may keep it.
func (p *progressBook) copyOf(id string) map[int]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.by[id])
}

// preferFor is the Prefer payload for removing the data node id from st:
// for each slot id leads, the follower to promote. Nil for a session.
func (n *Node) preferFor(st *state, kind, id string) map[int]string {
	if kind != proto.KindData || st.Table == nil {
		return nil
	}
	remaining := maps.Clone(st.Data)
	delete(remaining, id)
	return preferFollowers(st.Table, remaining, id, n.progress.copyOf)
}

// preferFollowers chooses, for every slot departed leads in t, the present
// follower (a member of remaining) that reported the highest applied
// sequence for it; progress returns a node's last report. A follower that
// never reported ranks below every one that did. Ties keep the table's
// follower order: the first follower with the highest sequence wins. An
// entry is made only where the choice differs from the first present
// follower, which is whom the balancer promotes by default, so a cluster
// without progress reports logs no Prefer at all.
func preferFollowers(t *slot.Table, remaining map[string]string, departed string, progress func(id string) map[int]uint64) map[int]string {
	reports := map[string]map[int]uint64{}
	report := func(id string) map[int]uint64 {
		r, ok := reports[id]
		if !ok {
			r = progress(id)
			reports[id] = r
		}
		return r
	}
	var prefer map[int]string
	for _, s := range t.LedBy(departed) {
		first, best := "", ""
		var bestSeq uint64
		for _, f := range t.Slots[s].Followers {
			if _, ok := remaining[f]; !ok {
				continue
			}
			if first == "" {
				first = f
			}
			seq, ok := report(f)[s]
			if ok && (best == "" || seq > bestSeq) {
				best, bestSeq = f, seq
			}
		}
		if best != "" && best != first {
			if prefer == nil {
				prefer = map[int]string{}
			}
			prefer[s] = best
		}
	}
	return prefer
}
