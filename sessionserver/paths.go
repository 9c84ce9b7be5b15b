package sessionserver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Paths (DESIGN.md, "Paths"): GET reads one publisher of a datum; EXISTS
// and CHILDREN ask every slot, since a path's descendants hash to any
// of them. Each data node scans the slots it leads in their sorted
// dataInfoIds (dataserver's slotStore.children), so the index of which
// paths exist is the data itself: it is replicated, fails over and
// migrates with the slots, and costs nothing to keep.

// get answers GET path: the version of the path's parent datum and the
// path's value, or null.
func (c *clientConn) get(g *proto.Get) {
	d, ok := c.fetch(g.Parent)
	if !ok {
		return
	}
	data, found := entryData(d, g.Name, c.n.cfg.Datacenter)
	if !found {
		c.wr.WriteNull()
		return
	}
	c.wr.WriteArray(2)
	c.wr.WriteUint64(d.Version)
	c.wr.WriteBulkString(data)
}

// entryData finds registerId name of datacenter dc among a datum's
// sorted entries. A path is its datacenter's: GET, EXISTS and CHILDREN
// see no other (SCOPE is for LOOKUP, SUBSCRIBE and PSUBSCRIBE).
func entryData(d *proto.Datum, name, dc string) (string, bool) {
	want := proto.Entry{RegisterID: name, DC: dc}
	i, found := slices.BinarySearchFunc(d.Entries, &want, func(e proto.Entry, w *proto.Entry) int {
		switch {
		case proto.EntryLess(&e, w):
			return -1
		case proto.EntryLess(w, &e):
			return 1
		}
		return 0
	})
	if !found {
		return "", false
	}
	return d.Entries[i].Data, true
}

// childrenCmd answers CHILDREN path: the sorted names of its children.
func (c *clientConn) childrenCmd(path string) {
	names, ok := c.childrenOf(path)
	if !ok {
		return
	}
	c.wr.WriteArray(len(names))
	for _, name := range names {
		c.wr.WriteBulkString(name)
	}
}

// exists answers EXISTS path: 1 if the path has a value or children.
func (c *clientConn) exists(path string) {
	if path != "/" {
		parent, name, _ := proto.SplitPath(path)
		d, ok := c.fetch(parent)
		if !ok {
			return
		}
		if _, found := entryData(d, name, c.n.cfg.Datacenter); found {
			c.wr.WriteInt(1)
			return
		}
	}
	names, ok := c.childrenOf(path)
	if !ok {
		return
	}
	c.wr.WriteInt(min(len(names), 1))
}

// childrenOf asks the data nodes for path's children, or replies the
// error and returns false.
func (c *clientConn) childrenOf(path string) (names []string, ok bool) {
	ok = c.awaitNodes(func(ctx context.Context) (err error) {
		names, err = c.n.router.children(ctx, path)
		return err
	})
	return names, ok
}

// children gathers path's children from the leaders of all slots. Each
// node says which slots it answered for; slots that no answer covered
// (a leader changed, a slot is reconciling) are asked again of their
// leaders by a fresher table, until ctx ends.
func (r *router) children(ctx context.Context, path string) ([]string, error) {
	names := make(map[string]struct{})
	var got proto.SlotSet
	wait := 10 * time.Millisecond
	for {
		byAddr := make(map[string]bool)
		var lastErr error
		missing := 0
		for s := range slot.Count {
			if got.Has(s) {
				continue
			}
			missing++
			addr, err := r.slotLeaderAddr(s)
			if err != nil {
				lastErr = err
				continue
			}
			byAddr[addr] = true
		}
		if missing == 0 {
			return slices.Sorted(maps.Keys(names)), nil
		}
		var epoch uint64
		if t := r.n.table.Load(); t != nil {
			epoch = t.Epoch
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for addr := range byAddr {
			wg.Go(func() {
				served, found, err := r.childrenAt(ctx, addr, epoch, path)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					lastErr = err
					return
				}
				got.Union(&served)
				for _, name := range found {
					names[name] = struct{}{}
				}
			})
		}
		wg.Wait()
		if got.Len() == slot.Count {
			continue // every slot answered: the top of the loop returns
		}
		r.refreshSoon()
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = fmt.Errorf("slots were changing leader")
			}
			return nil, proto.Errorf(proto.ErrTimeout, "children of %q: %d slots unanswered: %v", path, slot.Count-got.Len(), lastErr)
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// childrenAt sends DCHILDREN to one data node.
func (r *router) childrenAt(ctx context.Context, addr string, epoch uint64, path string) (proto.SlotSet, []string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req := proto.DChildren{Epoch: epoch, Path: path}
	vals, err := r.link(addr).rdb.Do(cctx, req.Args()...).Slice()
	if err != nil {
		return proto.SlotSet{}, nil, fromRedis(err)
	}
	if len(vals) == 0 {
		return proto.SlotSet{}, nil, proto.Errorf(proto.ErrUnavailable, "data node %s sent an empty DCHILDREN reply", addr)
	}
	set, _ := vals[0].(string)
	served, err := proto.ParseSlotSet([]byte(set))
	if err != nil {
		return served, nil, err
	}
	names := make([]string, 0, len(vals)-1)
	for _, v := range vals[1:] {
		if s, ok := v.(string); ok {
			names = append(names, s)
		}
	}
	return served, names, nil
}
