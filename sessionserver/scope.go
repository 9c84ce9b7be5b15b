package sessionserver

import (
	"github.com/cespare/xxhash/v2"

	"github.com/slotreg/slotreg/proto"
)

// Scopes (SCOPE zone|datacenter|global). A data node's datum holds the
// publishers of every datacenter, each with its datacenter and zone, at
// one version that every change to any of them raises. A view of it is
// the publishers a scope sees, at that version: so the version a
// connection receives for a view only grows, whatever it merges. Views
// are built here, per topic and per prefix watch, not per client.

// scopeCmd answers SCOPE: the view of the LOOKUP, SUBSCRIBE and
// PSUBSCRIBE this connection sends next.
func (c *clientConn) scopeCmd(s proto.Scope) {
	c.scope = s
	c.wr.WriteString("OK")
}

// view returns the publishers of d that scope s sees from this session:
// d itself when it sees them all. filtered says some were left out.
func (n *Node) view(d *proto.Datum, s proto.Scope) (v *proto.Datum, filtered bool) {
	dc, zone := n.cfg.Datacenter, n.cfg.Zone
	for i := range d.Entries {
		if !s.Sees(&d.Entries[i], dc, zone) {
			filtered = true
			break
		}
	}
	if !filtered {
		return d, false
	}
	v = &proto.Datum{DataInfoID: d.DataInfoID, Version: d.Version, Entries: make([]proto.Entry, 0, len(d.Entries))}
	for i := range d.Entries {
		if s.Sees(&d.Entries[i], dc, zone) {
			v.Entries = append(v.Entries, d.Entries[i])
		}
	}
	return v, true
}

// entriesHash sums a view's publishers, to tell a change that a view
// does not see (a remote publisher, under datacenter scope) from one it
// does.
func entriesHash(es []proto.Entry) uint64 {
	var d xxhash.Digest
	for i := range es {
		e := &es[i]
		for _, s := range [...]string{e.RegisterID, e.Data, e.DC, e.Zone} {
			d.WriteString(s)
			d.Write([]byte{0})
		}
	}
	return d.Sum64()
}
