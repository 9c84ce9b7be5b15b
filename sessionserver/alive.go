package sessionserver

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// aliveLoop tells every data node in the table, once a heartbeat, that
// this session is alive (DALIVE). A data node drops the publishers of a
// session meta evicted only if it has not heard from it either, so a
// session cut off from meta alone, which goes on serving its clients,
// keeps their publishers. A data node that answers again after a gap
// (a partition between them healed) has its slots reconciled at once
// (writes whose outcome the session never learned may have left the two
// apart, and the periodic check would take up to ReconcileInterval), and
// its feed of changes opened again (see renewFeed).
func (n *Node) aliveLoop() {
	defer n.bgWg.Done()
	tick := time.NewTicker(n.cfg.Heartbeat)
	defer tick.Stop()
	req := (&proto.DAlive{Session: n.cfg.NodeID}).Args()
	reset := (&proto.DAlive{Session: n.cfg.NodeID, Reset: true}).Args()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-n.alive.kick:
		}
		t := n.table.Load()
		if t == nil {
			if check := n.alive.takeCheck(); check != nil {
				close(check)
			}
			continue
		}
		check := n.alive.takeCheck()
		resets := n.alive.takeResets()
		var wg sync.WaitGroup
		for _, d := range t.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Heartbeat)
				defer cancel()
				args := req
				if resets[d.Addr] {
					args = reset
				}
				sent := time.Now()
				v, err := n.router.link(d.Addr).rdb.Do(ctx, args...).Result()
				switch {
				case err == nil:
					// The reply is the node's session grace in ms (OK
					// from a node that does not say).
					ms, _ := v.(int64)
					if n.alive.note(d.Addr, sent, time.Duration(ms)*time.Millisecond, 3*n.cfg.Heartbeat) {
						n.reconcileLedBy(t, d.ID)
						n.subs.renewFeed(n, d.Addr)
					}
				case errors.Is(fromRedis(err), proto.ErrDropped):
					n.onDropped(d.Addr, fromRedis(err))
				case resets[d.Addr]:
					n.alive.mu.Lock() // not told: tell it next time
					n.alive.owe(d.Addr)
					n.alive.mu.Unlock()
				}
			}()
		}
		wg.Wait()
		n.checkFence()
		if check != nil {
			close(check)
		}
	}
}

// reconcileLedBy asks the reconcile loop to check every slot node leads
// in t.
func (n *Node) reconcileLedBy(t *slot.Table, node string) {
	if slots := t.LedBy(node); len(slots) > 0 {
		n.log.Info("data node answers again; reconciling its slots", "node", node, "slots", len(slots))
		go n.kickReconcile(slots)
	}
}
