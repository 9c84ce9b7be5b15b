package sessionserver

import (
	"context"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// aliveLoop tells every data node in the table, once a heartbeat, that
// this session is alive (DALIVE). A data node drops the publishers of a
// session meta evicted only if it has not heard from it either, so a
// session cut off from meta alone, which goes on serving its clients,
// keeps their publishers.
func (n *Node) aliveLoop() {
	defer n.bgWg.Done()
	tick := time.NewTicker(n.cfg.Heartbeat)
	defer tick.Stop()
	req := (&proto.DAlive{Session: n.cfg.NodeID}).Args()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		t := n.table.Load()
		if t == nil {
			continue
		}
		var wg sync.WaitGroup
		for _, d := range t.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Heartbeat)
				defer cancel()
				sent := time.Now()
				v, err := n.router.link(d.Addr).rdb.Do(ctx, req...).Result()
				if err == nil {
					// The reply is the node's session grace in ms (OK
					// from a node that does not say).
					ms, _ := v.(int64)
					n.alive.note(d.Addr, sent, time.Duration(ms)*time.Millisecond)
				}
			}()
		}
		wg.Wait()
		n.checkFence()
	}
}
