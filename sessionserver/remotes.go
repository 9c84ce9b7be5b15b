package sessionserver

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// remoteStatus asks every data node of the table for its view of the
// remote datacenters (DXSTATS) and sums it per datacenter: the remote
// publishers held, the longest staleness of any slot, and the most
// recent answer any node had. A data node that does not answer in time
// is left out.
func (n *Node) remoteStatus() []proto.XRemote {
	t := n.table.Load()
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	byDC := make(map[string]*proto.XRemote)
	for _, nd := range t.Nodes {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			s, err := n.router.link(addr).rdb.Do(ctx, proto.CmdDXStats).Text()
			if err != nil {
				return
			}
			var rs []proto.XRemote
			if json.Unmarshal([]byte(s), &rs) != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
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
		}(nd.Addr)
	}
	wg.Wait()
	out := make([]proto.XRemote, 0, len(byDC))
	for _, r := range byDC {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
