package meta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// leaderLoop follows leadership changes. On winning, the node takes over
// (takeOver) before it serves heartbeats; on losing, it drops its leases.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-n.raft.LeaderCh():
			// LeaderCh keeps only the latest transition, so a lost and
			// regained term can arrive as a single true: always start
			// the take-over from scratch.
			n.ready.Store(false)
			if !isLeader {
				n.leases.clear()
				n.progress.clear()
				n.log.Info("lost meta leadership")
				continue
			}
			n.log.Info("won meta leadership; taking over")
			n.takeOver()
		}
	}
}

// takeOver retries prepareLeadership while this node stays leader.
func (n *Node) takeOver() {
	for n.IsLeader() {
		err := n.prepareLeadership()
		if err == nil {
			n.ready.Store(true)
			st := n.store.state()
			n.log.Info("meta leader ready", "epoch", tableEpoch(st),
				"dataNodes", len(st.Data), "sessionNodes", len(st.Sessions))
			return
		}
		if errors.Is(err, raft.ErrRaftShutdown) || n.ctx.Err() != nil {
			return
		}
		n.log.Warn("meta leader take-over failed; retrying", "err", err)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prepareLeadership makes a new leader fit to judge membership: its FSM
// has applied every entry of earlier terms (Barrier), the group is
// initialized, its own RPC address is recorded (so followers can name it
// in NOTLEADER replies), and every member starts with a fresh lease, so a
// leader change evicts nobody.
func (n *Node) prepareLeadership() error {
	if err := n.raft.Barrier(applyTimeout).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	st := n.store.state()
	switch {
	case st.Replicas == 0:
		// The cluster's name is drawn here, not in the applier, which
		// must give every replica the same state.
		var id [8]byte
		_, _ = rand.Read(id[:])
		res, err := n.propose(&command{Type: cmdInit, Replicas: n.cfg.Replicas, ID: hex.EncodeToString(id[:])})
		if err != nil {
			return fmt.Errorf("initialize: %w", err)
		}
		if res.Err != nil && !errors.Is(res.Err, errAlreadyInitialized) {
			return fmt.Errorf("initialize with replicas %d: %w", n.cfg.Replicas, res.Err)
		}
		n.log.Info("initialized the slot table", "replicas", n.cfg.Replicas, "epoch", res.Epoch, "cluster", n.store.state().Table.Cluster)
	case st.Replicas != n.cfg.Replicas:
		n.log.Warn("configured Replicas differs from the cluster's; the cluster's value stays",
			"configured", n.cfg.Replicas, "cluster", st.Replicas)
	}
	if n.store.state().Metas[n.cfg.NodeID] != n.advertiseRPC {
		res, err := n.propose(&command{Type: cmdRecordMeta, ID: n.cfg.NodeID, Addr: n.advertiseRPC})
		if err != nil {
			return fmt.Errorf("record own rpc address: %w", err)
		}
		if res.Err != nil {
			return fmt.Errorf("record own rpc address: %w", res.Err)
		}
	}
	n.leases.grant(n.store.state(), time.Now())
	return nil
}

// leaderGate lets a request through only on a leader that finished taking
// over; others get NOTLEADER naming the leader, or UNAVAILABLE.
func (n *Node) leaderGate() error {
	if !n.IsLeader() {
		return proto.NotLeader(n.leaderRPCAddr())
	}
	if !n.ready.Load() {
		return proto.Errorf(proto.ErrUnavailable, "meta %s: leader is still taking over", n.cfg.NodeID)
	}
	return nil
}

// leaseLoop checks leases four times per lease period. If the checker
// itself ran late by more than half a lease, the process (not the nodes)
// was stalled (GC pause, suspended VM, overloaded host) and every
// heartbeat in that time went unread; it renews all leases instead of
// evicting the whole fleet.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Lease / 4)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			if late := now.Sub(last) - n.cfg.Lease/4; late > n.cfg.Lease/2 && n.ready.Load() {
				n.log.Warn("lease checker ran late; renewing every lease instead of evicting", "lateMs", late.Milliseconds())
				n.leases.grant(n.store.state(), now)
			} else {
				n.checkLeases()
			}
			last = now
		}
	}
}

// checkLeases removes, through the log, every member whose lease lapsed.
func (n *Node) checkLeases() {
	if !n.ready.Load() || !n.IsLeader() {
		return
	}
	st, now := n.store.state(), time.Now()
	exp := n.leases.expired(st, now, n.cfg.Lease)
	if n.leases.holdMass(st, exp, now, n.cfg.Lease) {
		n.evictionsHeld.Add(1)
		if now.Sub(n.lastHeldLog) >= n.cfg.Lease {
			n.lastHeldLog = now
			n.log.Warn("holding back a mass eviction: so many lapsed leases at once look like this meta's own isolation",
				"lapsed", len(exp), "dataNodes", len(st.Data), "sessionNodes", len(st.Sessions), "nodes", leaseIDs(exp))
		}
		return
	}
	for _, k := range exp {
		last, ok := n.leases.get(k.kind, k.id)
		if !ok || time.Since(last) <= n.cfg.Lease {
			continue // a heartbeat arrived meanwhile
		}
		res, prefer, err := n.evict(k, reasonLease)
		if err != nil {
			n.log.Warn("evicting node failed", "node", k.id, "kind", k.kind, "err", err)
			return
		}
		if res.Err != nil {
			if !errors.Is(res.Err, errUnknownMember) {
				n.log.Warn("evicting node refused", "node", k.id, "kind", k.kind, "err", res.Err)
			}
			continue
		}
		n.log.Warn("evicted node: lease lapsed", "node", k.id, "kind", k.kind, "epoch", res.Epoch,
			"lastSeenMs", time.Since(last).Milliseconds(), "promotedByProgress", prefer)
	}
}

func leaseIDs(ks []leaseKey) []string {
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i] = k.id
	}
	return ids
}

// registerLoop makes sure this node's RPC address is recorded in the FSM:
// a follower asks the leader with METAJOIN until it sees its own record
// applied. (A leader records itself in prepareLeadership.)
func (n *Node) registerLoop() { n.every(n.cfg.RaftHeartbeatTimeout, n.registerSelf) }

// every calls f every d until the node stops; it is a background loop
// counted in n.wg.
func (n *Node) every(d time.Duration, f func()) {
	defer n.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (n *Node) registerSelf() {
	if n.IsLeader() || n.store.state().Metas[n.cfg.NodeID] == n.advertiseRPC {
		return
	}
	addr := n.leaderRPCAddr()
	if addr == "" {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	mj := &proto.MetaJoin{NodeID: n.cfg.NodeID, RPCAddr: n.advertiseRPC}
	if _, err := metaclient.CallOnce(ctx, addr, n.cfg.Secret.Current, n.cfg.PeerTLS, mj.Args()); err != nil {
		n.log.Debug("recording rpc address with the leader failed", "leader", addr, "err", err)
	}
}

// isVoter reports whether id is a voter in the latest Raft configuration.
func (n *Node) isVoter(id string) (bool, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, fmt.Errorf("raft configuration: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter {
			return true, nil
		}
	}
	return false, nil
}
