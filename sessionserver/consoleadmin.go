package sessionserver

import (
	"maps"
	"slices"
	"strings"

	"github.com/slotreg/slotreg/proto"
)

// slotregSubs answers SLOTREG SUBS prefix limit: for the web console's
// search, how many of this session's client connections subscribe to
// each dataInfoId with the prefix (any scope), the first limit ids in
// order; and the path prefixes watched (PSUBSCRIBE) that start with it.
func (c *clientConn) slotregSubs(sc *proto.Scan) {
	out := proto.SessionSubs{Node: c.n.cfg.NodeID}
	out.Subs, out.Truncated = c.n.subs.countPrefix(sc.Prefix, sc.Limit)
	out.Watches = c.n.pwatch.countPrefix(sc.Prefix, sc.Limit)
	c.writeJSON(out)
}

// countPrefix returns, by dataInfoId starting with prefix, the client
// connections subscribed to it summed over scopes: the first limit ids
// in order, and whether there were more.
func (r *subRegistry) countPrefix(prefix string, limit int) (map[string]int, bool) {
	all := map[string]int{}
	for i := range r.slots {
		sl := &r.slots[i]
		sl.mu.Lock()
		for k, t := range sl.topics {
			if strings.HasPrefix(k.id, prefix) && len(t.subs) > 0 {
				all[k.id] += len(t.subs)
			}
		}
		sl.mu.Unlock()
	}
	if len(all) <= limit {
		return all, false
	}
	out := make(map[string]int, limit)
	for _, id := range slices.Sorted(maps.Keys(all))[:limit] {
		out[id] = all[id]
	}
	return out, true
}

// countPrefix returns, by watched path prefix starting with prefix, the
// client connections watching it summed over scopes; at most limit
// prefixes, the first in order.
func (w *prefixWatches) countPrefix(prefix string, limit int) map[string]int {
	all := map[string]int{}
	w.mu.Lock()
	for k, g := range w.groups {
		if strings.HasPrefix(k.prefix, prefix) && len(g.subs) > 0 {
			all[k.prefix] += len(g.subs)
		}
	}
	w.mu.Unlock()
	if len(all) <= limit {
		return all
	}
	out := make(map[string]int, limit)
	for _, p := range slices.Sorted(maps.Keys(all))[:limit] {
		out[p] = all[p]
	}
	return out
}
