package sessionserver

import (
	"net"
	"sort"
	"sync"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// A session cut off from the cluster fences itself. Its clients'
// connection-bound publishers live on the data nodes, which drop them once
// meta has evicted the session (its lease lapsed) and they have not heard
// from it either (DALIVE) for their session grace. A session that is cut
// off, or was paused, past that point has clients whose connections are
// open and whose publishers are gone: they would never publish again. So
// when its lease with meta may have lapsed and some data node has not
// acknowledged a DALIVE for nearly its grace, the session closes every
// client connection (the clients reconnect, to another session if this one
// is still cut off, and publish again) and refuses new ones until meta
// answers its heartbeats and every data node its DALIVEs again. A session
// cut off from meta alone keeps talking to the data nodes, keeps its
// publishers, and does not fence; nor does one whose meta lost its quorum
// (metaclient.Client.LeaseLeft).

// aliveBook is when each data node last acknowledged a DALIVE and the
// grace it said it gives (0: an older data node that did not say).
type aliveBook struct {
	mu     sync.Mutex
	at     map[string]time.Time // by data node address: when the DALIVE was sent
	grace  map[string]time.Duration
	fenced bool // the session has fenced itself and not yet recovered
}

func (b *aliveBook) note(addr string, sent time.Time, grace time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at == nil {
		b.at, b.grace = map[string]time.Time{}, map[string]time.Duration{}
	}
	b.at[addr], b.grace[addr] = sent, grace
}

// atRisk lists the data nodes of t that may drop this session's
// publishers by now: not acknowledged a DALIVE for their grace less
// margin (counted from since for one never reached).
func (b *aliveBook) atRisk(t *slot.Table, now, since time.Time, defGrace, margin time.Duration) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, d := range t.Nodes {
		at, ok := b.at[d.Addr]
		if !ok {
			at = since
		}
		g := b.grace[d.Addr]
		if g == 0 {
			g = defGrace
		}
		if now.Sub(at) >= g-margin {
			out = append(out, d.ID)
		}
	}
	sort.Strings(out)
	return out
}

// checkFence fences or unfences the session (see above); the alive loop
// calls it once a heartbeat, after its DALIVEs.
func (n *Node) checkFence() {
	t := n.table.Load()
	left, ok := n.meta.LeaseLeft()
	var risk []string
	if t != nil && ok && left <= 0 {
		// A data node that did not say its grace gets meta's lease, the
		// default of both.
		risk = n.alive.atRisk(t, time.Now(), n.started, n.meta.Lease(), n.cfg.Heartbeat)
	}
	n.alive.mu.Lock()
	was := n.alive.fenced
	n.alive.fenced = len(risk) > 0
	n.alive.mu.Unlock()
	switch {
	case len(risk) > 0 && !was:
		n.stats.fenced.Add(1)
		conns := n.clientConns()
		n.log.Warn("cut off from meta and from data nodes: closing every client connection so that the clients publish again elsewhere",
			"lease_over_by", (-left).Round(time.Millisecond), "data_nodes_not_reached", risk, "clients", len(conns))
		for _, c := range conns {
			c.nc.Close()
		}
	case len(risk) == 0 && was:
		n.log.Info("in touch with meta and the data nodes again; taking clients")
	}
}

// isFenced says whether the session refuses clients for now.
func (n *Node) isFenced() bool {
	n.alive.mu.Lock()
	defer n.alive.mu.Unlock()
	return n.alive.fenced
}

// refuseFenced turns away a client while the session is fenced.
func (n *Node) refuseFenced(nc net.Conn) {
	msg := proto.ToRESP(proto.Errorf(proto.ErrUnavailable, "session %s is cut off from the cluster; connect to another session", n.cfg.NodeID))
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte("-" + msg + "\r\n"))
	nc.Close()
}
