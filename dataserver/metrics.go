package dataserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
)

// opKinds are the op types counted by slotreg_data_ops_applied_total, in
// the order of Node.ops.
var opKinds = [...]struct {
	t    proto.OpType
	name string
}{{proto.OpRegister, "register"}, {proto.OpUnregister, "unregister"}, {proto.OpRenew, "renew"}}

// countOp counts one op applied as the leader.
func (n *Node) countOp(t proto.OpType) {
	for i := range opKinds {
		if opKinds[i].t == t {
			n.ops[i].Add(1)
			return
		}
	}
}

// newMetrics builds the node's registry. Counters read the node's atomics
// and the slot gauges are computed at scrape time (slotCollector), so the
// write path only pays an atomic add per op.
func (n *Node) newMetrics() *prometheus.Registry {
	reg, r := obs.NodeRegistry(n.cfg.NodeID, proto.KindData, n.cfg.Datacenter)
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) }))
	}
	for i := range opKinds {
		counter("slotreg_data_ops_applied_total", "Writes applied as slot leader, by op type.",
			prometheus.Labels{"type": opKinds[i].name}, n.ops[i].Load)
	}
	for i, via := range []string{"port", "calls"} {
		counter("slotreg_data_write_batches_total", "Write batches taken from sessions, by how they came: over the port, or by calls from a session in this process (registry node).",
			prometheus.Labels{"via": via}, n.batches[i].Load)
	}
	counter("slotreg_data_pull_round_trips_total", "Pull round trips done as a follower.", nil, n.pulls.Load)
	counter("slotreg_data_reconcile_repairs_total", "Publishers repaired by reconciliation with sessions.", nil, n.repairs.Load)
	counter("slotreg_data_handoffs_total", "Slots handed off to another node (planned moves).", nil, n.handoffs.Load)
	counter("slotreg_data_stale_refused_total", "Write ops and syncs refused because the session had sent newer ones since (a request that outlived the session's wait for it).", nil, n.stale.Load)
	counter("slotreg_data_fenced_total", "Write batches and syncs refused because the node's lease with meta was over (a pause, or meta out of reach).", nil, n.fences.Load)
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "slotreg_data_table_epoch", Help: "Epoch of the slot table this node has (0 before the first).",
	}, func() float64 {
		if t := n.table.Load(); t != nil {
			return float64(t.Epoch)
		}
		return 0
	}))
	r.MustRegister(&slotCollector{n: n})
	r.MustRegister(&remoteCollector{n: n})
	return reg
}

var (
	descRemotePubs = prometheus.NewDesc("slotreg_data_remote_publishers",
		"Publishers of a remote datacenter held in the slots this node leads (never counted in slotreg_data_publishers).", []string{"remote"}, nil)
	descRemoteStale = prometheus.NewDesc("slotreg_data_remote_stale_seconds",
		"How long the least current slot led here has gone without hearing from its leader in the remote datacenter (0 while every one is current).", []string{"remote"}, nil)
	descRemoteHeard = prometheus.NewDesc("slotreg_data_remote_heard_seconds",
		"Time since any node of the remote datacenter last answered this node's sync (-1: never).", []string{"remote"}, nil)
)

// remoteCollector reports the cross-datacenter sync per remote
// datacenter, at scrape time.
type remoteCollector struct{ n *Node }

func (c *remoteCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRemotePubs
	ch <- descRemoteStale
	ch <- descRemoteHeard
}

func (c *remoteCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.n.Remotes(false) {
		ch <- prometheus.MustNewConstMetric(descRemotePubs, prometheus.GaugeValue, float64(r.Publishers), r.Name)
		ch <- prometheus.MustNewConstMetric(descRemoteStale, prometheus.GaugeValue, float64(r.StaleMs)/1e3, r.Name)
		heard := float64(r.HeardMs) / 1e3
		if r.HeardMs < 0 {
			heard = -1
		}
		ch <- prometheus.MustNewConstMetric(descRemoteHeard, prometheus.GaugeValue, heard, r.Name)
	}
}

var (
	descSlotsLed      = prometheus.NewDesc("slotreg_data_slots_led", "Slots this node leads.", nil, nil)
	descSlotsFollowed = prometheus.NewDesc("slotreg_data_slots_followed", "Slots this node follows.", nil, nil)
	descPublishers    = prometheus.NewDesc("slotreg_data_publishers", "Publishers in the slots this node leads.", nil, nil)
	descReplicas      = prometheus.NewDesc("slotreg_data_replicas", "Publishers held as a follower.", nil, nil)
	descDatums        = prometheus.NewDesc("slotreg_data_datums", "DataInfoIds in the slots this node leads.", nil, nil)
	descFollowerLag   = prometheus.NewDesc("slotreg_data_follower_lag_entries",
		"On the leader: the largest number of op-log entries a follower of one of its slots has yet to apply.", nil, nil)
)

// slotCollector walks the slots once per scrape, each holding its lock
// only while it reads its counters.
type slotCollector struct{ n *Node }

func (c *slotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSlotsLed, descSlotsFollowed, descPublishers, descReplicas, descDatums, descFollowerLag} {
		ch <- d
	}
}

func (c *slotCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	t := n.table.Load()
	var led, followed, pubs, replicas, datums int
	var lag uint64
	for s, u := range n.slots {
		var followers []string
		if t != nil {
			followers = t.Slots[s].Followers
		}
		c := u.counts(followers)
		switch {
		case !c.held:
		case c.leading:
			led++
			pubs += c.publishers
			datums += c.datums
			lag = max(lag, c.lag)
		default:
			followed++
			replicas += c.publishers
		}
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descSlotsLed, float64(led))
	gauge(descSlotsFollowed, float64(followed))
	gauge(descPublishers, float64(pubs))
	gauge(descReplicas, float64(replicas))
	gauge(descDatums, float64(datums))
	gauge(descFollowerLag, float64(lag))
}

// Metrics is the node's Prometheus registry, labelled node and role.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics }
