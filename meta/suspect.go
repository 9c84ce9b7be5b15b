package meta

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/redcon"
)

// Fast crash detection. A data node whose process died refuses
// connections at once, but its lease would keep it in the table for the
// whole lease, and writes to the slots it led would wait that long. The
// sessions and followers that find it refusing report it (SUSPECT), and
// the leader checks for itself: it dials the node, and evicts it only if
// the dial is refused too. A node that accepts the dial is alive, however
// slow (a paused process still completes TCP handshakes in the kernel), and
// one that does not answer at all may be cut off rather than dead: both
// are left to their lease. Only a refusal, which no live process gives,
// shortens the wait; so a report cannot evict a live node, and a false or
// hostile one costs one dial.

const (
	// probeTimeout bounds the leader's dial of a suspected node.
	probeTimeout = 300 * time.Millisecond
	// probeEvery is how often one node may be probed; reports in between
	// get the last verdict.
	probeEvery = 100 * time.Millisecond
)

// prober runs at most one probe per node at a time and remembers the last.
type prober struct {
	mu   sync.Mutex
	last map[string]probe
}

type probe struct {
	at      time.Time
	addr    string
	refused bool
	done    chan struct{} // closed when the probe has finished
}

// check dials addr unless a probe of it finished within probeEvery (or is
// under way: then it waits for that one), and says whether it was refused.
func (p *prober) check(addr string) bool {
	p.mu.Lock()
	if p.last == nil {
		p.last = map[string]probe{}
	}
	if pr, ok := p.last[addr]; ok && (pr.at.IsZero() || time.Since(pr.at) < probeEvery) {
		p.mu.Unlock()
		<-pr.done
		p.mu.Lock()
		refused := p.last[addr].refused
		p.mu.Unlock()
		return refused
	}
	pr := probe{addr: addr, done: make(chan struct{})}
	p.last[addr] = pr
	p.mu.Unlock()

	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err == nil {
		c.Close()
	}
	pr.refused = errors.Is(err, syscall.ECONNREFUSED)
	pr.at = time.Now()
	p.mu.Lock()
	p.last[addr] = pr
	p.mu.Unlock()
	close(pr.done)
	return pr.refused
}

// handleSuspect answers SUSPECT: 1 if the node is (now) out of the
// cluster, 0 if meta found it alive or could not tell.
func (n *Node) handleSuspect(conn redcon.Conn, s *proto.Suspect) error {
	addr, ok := n.store.state().members(s.Kind)[s.NodeID]
	if !ok {
		conn.WriteInt(1)
		return nil
	}
	if !n.probes.check(addr) {
		n.log.Debug("suspected node answers, or cannot be reached; its lease decides", "node", s.NodeID, "reporter", s.Reporter)
		conn.WriteInt(0)
		return nil
	}
	res, prefer, err := n.evict(leaseKey{s.Kind, s.NodeID}, reasonRefused)
	switch {
	case err != nil:
		return err
	case res.Err == nil:
		n.evictionsRefused.Add(1)
		n.log.Warn("evicted node: it refuses connections", "node", s.NodeID, "kind", s.Kind, "addr", addr,
			"reporter", s.Reporter, "epoch", res.Epoch, "promotedByProgress", prefer)
	case !errors.Is(res.Err, errUnknownMember):
		return proto.Errorf(proto.ErrInvalid, "evicting %s node %s: %v", s.Kind, s.NodeID, res.Err)
	}
	conn.WriteInt(1)
	return nil
}

// evict removes a data or session node from the membership (promoting
// followers by their reported progress for the slots it led) and forgets
// its lease and progress. prefer is how many slots got a preferred
// follower. res.Err is errUnknownMember when it was no member any more.
func (n *Node) evict(k leaseKey, reason string) (res result, prefer int, err error) {
	pref := n.preferFor(n.store.state(), k.kind, k.id)
	res, err = n.propose(&command{Type: cmdRemove, Kind: k.kind, ID: k.id, Reason: reason, Prefer: pref})
	if err != nil {
		return res, 0, err
	}
	n.leases.forget(k.kind, k.id)
	if k.kind == proto.KindData {
		n.progress.forget(k.id)
	}
	return res, len(pref), nil
}
