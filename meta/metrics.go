package meta

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
)

// newMetrics builds the node's registry. Every metric is read from Raft or
// the FSM's published state at scrape time, so nothing is counted on the
// apply path.
func (n *Node) newMetrics() *prometheus.Registry {
	reg, r := obs.NodeRegistry(n.cfg.NodeID, proto.KindMeta, n.cfg.Datacenter)
	gauge := func(name, help string, f func() float64) {
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("slotreg_meta_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shut down.",
		func() float64 { return float64(n.raft.State()) })
	gauge("slotreg_meta_raft_leader", "1 while this node is the Raft leader.",
		func() float64 { return float64(boolInt(n.IsLeader())) })
	gauge("slotreg_meta_raft_term", "The current Raft term.",
		func() float64 { return float64(n.raft.CurrentTerm()) })
	gauge("slotreg_meta_table_epoch", "Epoch of the slot table in the FSM (0 before init).",
		func() float64 {
			if t := n.store.state().Table; t != nil {
				return float64(t.Epoch)
			}
			return 0
		})
	gauge("slotreg_meta_data_nodes", "Data nodes in the membership.",
		func() float64 { return float64(len(n.store.state().Data)) })
	gauge("slotreg_meta_session_nodes", "Session nodes in the membership.",
		func() float64 { return float64(len(n.store.state().Sessions)) })
	gauge("slotreg_meta_moves_in_progress", "Slots whose leader is being moved.",
		func() float64 {
			if t := n.store.state().Table; t != nil {
				return float64(len(t.Moving()))
			}
			return 0
		})
	gauge("slotreg_meta_config_revision", "The highest config version given out (every key's versions come from it).",
		func() float64 { return float64(n.store.state().ConfigRev) })
	gauge("slotreg_meta_config_polls", "CONFWATCH long polls from sessions waiting on this node.",
		func() float64 { return float64(n.store.cfg.polls.Load()) })
	gauge("slotreg_meta_table_polls", "TABLEWAIT long polls from data and session nodes waiting on this node.",
		func() float64 { return float64(n.store.tables.polls.Load()) })
	gauge("slotreg_meta_locks_held", "Global locks in the FSM (expired ones until the leader's expiry entry drops them).",
		func() float64 { return float64(len(n.store.state().Locks)) })
	gauge("slotreg_meta_fence_token", "The last fencing token granted.",
		func() float64 { return float64(n.store.state().FenceSeq) })
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "slotreg_meta_evictions_held_total",
		Help: "Lease checks that held back evicting many nodes at once, for want of evidence that they are gone."},
		func() float64 { return float64(n.evictionsHeld.Load()) }))
	r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "slotreg_meta_evictions_refused_total",
		Help: "Data nodes evicted before their lease ran out because a node reported them and they refused meta's connection too."},
		func() float64 { return float64(n.evictionsRefused.Load()) }))
	return reg
}

// Metrics is the node's Prometheus registry, labelled node and role.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
