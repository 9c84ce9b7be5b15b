package dataserver

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// DSCAN: the web console's search over dataInfoIds by prefix. Ids are
// hashed over the slots, so a prefix lies in every slot; the scan seeks
// the prefix in each slot this node leads (its btree is ordered by id)
// and steps through at most limit+1 ids there. It runs in two passes so
// its cost stays bounded however many slots hold matches: the first
// gathers only the ids and keeps the first limit of them overall, the
// second reads those ids' publishers. Like the unit methods of unit*.go,
// the two unit methods here take u.mu themselves, one slot at a time.

// scanIDs returns the first limit ids of the slot that start with prefix
// and have publishers (local or remote), in order. leading says this
// node leads the slot; ready, that it has reconciled it and so serves it
// (ids is empty otherwise).
func (u *slotUnit) scanIDs(prefix string, limit int) (ids []string, leading, ready bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading {
		return nil, false, false
	}
	if !u.ready {
		return nil, true, false
	}
	it := u.store.datums.Iter()
	for ok := it.Seek(prefix); ok && strings.HasPrefix(it.Key(), prefix) && len(ids) < limit; ok = it.Next() {
		if len(it.Value().pubs) > 0 || u.store.remoteCount(it.Key()) > 0 {
			ids = append(ids, it.Key())
		}
	}
	return ids, true, true
}

// scanItems reads the publishers of ids, which scanIDs found in this
// slot; an id that has since lost every publisher, or a slot this node
// no longer serves, is left out.
func (u *slotUnit) scanItems(ids []string) []proto.ScanItem {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading || !u.ready {
		return nil
	}
	out := make([]proto.ScanItem, 0, len(ids))
	for _, id := range ids {
		d := u.store.snapshot(id, u.dc)
		if len(d.Entries) == 0 {
			continue
		}
		it := proto.ScanItem{DataInfoID: id, Slot: u.id, Version: d.Version, Publishers: len(d.Entries),
			Sample: make([]proto.ScanPublisher, 0, min(len(d.Entries), proto.ScanPublishers))}
		for _, e := range d.Entries[:min(len(d.Entries), proto.ScanPublishers)] {
			data, cut := proto.ClipData(e.Data)
			it.Sample = append(it.Sample, proto.ScanPublisher{RegisterID: e.RegisterID, Data: data, DataTruncated: cut,
				Datacenter: e.DC, Zone: e.Zone})
		}
		out = append(out, it)
	}
	return out
}

// remoteCount is how many publishers the remote datacenters hold under
// id in this slot.
func (s *slotStore) remoteCount(id string) int {
	n := 0
	for _, r := range s.remote {
		n += len(r.datums[id])
	}
	return n
}

// handleScan answers DSCAN prefix limit with a proto.ScanReply.
func (n *Node) handleScan(conn redcon.Conn, sc *proto.Scan) {
	type found struct {
		id   string
		unit *slotUnit
	}
	var all []found
	reply := proto.ScanReply{Node: n.cfg.NodeID, Items: []proto.ScanItem{}}
	for _, u := range n.slots {
		ids, leading, ready := u.scanIDs(sc.Prefix, sc.Limit+1)
		if leading && !ready {
			reply.Unready = append(reply.Unready, u.id)
		}
		for _, id := range ids {
			all = append(all, found{id, u})
		}
	}
	slices.SortFunc(all, func(a, b found) int { return strings.Compare(a.id, b.id) })
	if len(all) > sc.Limit {
		all, reply.Truncated = all[:sc.Limit], true
	}
	bySlot := map[*slotUnit][]string{}
	for _, f := range all {
		bySlot[f.unit] = append(bySlot[f.unit], f.id)
	}
	for _, u := range n.slots {
		if ids := bySlot[u]; len(ids) > 0 {
			reply.Items = append(reply.Items, u.scanItems(ids)...)
		}
	}
	slices.SortFunc(reply.Items, func(a, b proto.ScanItem) int { return strings.Compare(a.DataInfoID, b.DataInfoID) })
	b, err := json.Marshal(reply)
	if err != nil {
		conn.WriteError("ERR " + err.Error())
		return
	}
	conn.WriteBulk(b)
}
