package sessionserver

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// askDataNodes sends args to every data node of the table at once and
// hands each answer to take (one call at a time); a node that does not
// answer within a second is left out. It is for INFO sections that ask
// the cluster, only when asked.
func (n *Node) askDataNodes(args []any, take func(reply string)) {
	t := n.table.Load()
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, nd := range t.Nodes {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			s, err := n.router.link(addr).rdb.Do(ctx, args...).Text()
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			take(s)
		}(nd.Addr)
	}
	wg.Wait()
}

// remoteStatus asks every data node of the table for its view of the
// remote datacenters (DXSTATS) and sums it per datacenter: the remote
// publishers held, the longest staleness of any slot, and the most
// recent answer any node had. A data node that does not answer in time
// is left out.
func (n *Node) remoteStatus() []proto.XRemote {
	byDC := make(map[string]*proto.XRemote)
	n.askDataNodes([]any{proto.CmdDXStats}, func(s string) {
		var rs []proto.XRemote
		if json.Unmarshal([]byte(s), &rs) != nil {
			return
		}
		for _, r := range rs {
			sum := byDC[r.Name]
			if sum == nil {
				sum = &proto.XRemote{Name: r.Name, Metas: r.Metas, HeardMs: -1}
				byDC[r.Name] = sum
			}
			sum.Publishers += r.Publishers
			sum.StaleMs = max(sum.StaleMs, r.StaleMs)
			if r.HeardMs >= 0 && (sum.HeardMs < 0 || r.HeardMs < sum.HeardMs) {
				sum.HeardMs = r.HeardMs
			}
		}
	})
	out := make([]proto.XRemote, 0, len(byDC))
	for _, r := range byDC {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// clusterCounts is what the data nodes hold of this datacenter, from
// each slot's leader (DSTATS COUNTS): publishers, how many of them have
// a TTL, and dataInfoIds; answered is how many data nodes answered of
// asked.
type clusterCounts struct {
	publishers, ttl, datums int
	answered, asked         int
}

func (n *Node) clusterCounts() clusterCounts {
	var c clusterCounts
	if t := n.table.Load(); t != nil {
		c.asked = len(t.Nodes)
	}
	n.askDataNodes([]any{proto.CmdDStats, proto.OptCounts}, func(s string) {
		st, err := proto.ParseDataStats(s)
		if err != nil {
			return
		}
		c.answered++
		for _, ss := range st.Slots {
			if ss.Role == proto.RoleLeader {
				c.publishers += ss.Publishers
				c.ttl += ss.TTLPublishers
				c.datums += ss.Datums
			}
		}
	})
	return c
}
