package sessionserver

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
)

// metricNames are the command labels of the request metrics, by
// commands.metric: one per row of the command table, then "other" for
// names it does not have, so a client sending junk cannot raise the label
// count.
func metricNames() []string {
	names := make([]string, 0, len(commands.rows)+1)
	for _, r := range commands.rows {
		names = append(names, r.Name)
	}
	return append(names, "other")
}

// requestBuckets span 100µs to about 6s: a write is one round trip to a
// data node, and WriteTimeout bounds how long it may take.
var requestBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 13)

// stats is what the session counts for /metrics and INFO. Counters are
// atomics read by CounterFuncs; histograms are resolved per command once,
// so recording a request allocates nothing.
type stats struct {
	cmds        []cmdStats // by commands.metric
	pushes      atomic.Uint64
	pushLatency prometheus.Observer
	repairs     atomic.Uint64 // publishers DSYNC restored on a slot leader
	// stalled counts clients disconnected for leaving their output
	// unread; refused counts connections refused at max-connections.
	stalled, refused atomic.Uint64
	authFailures     atomic.Uint64 // AUTH with a wrong password
	fenced           atomic.Uint64 // times the session fenced itself (fence.go)
}

type cmdStats struct {
	calls, errors atomic.Uint64
	latency       prometheus.Observer
}

// record counts one command that took d.
func (s *stats) record(cmd int, d time.Duration, failed bool) {
	c := &s.cmds[cmd]
	c.calls.Add(1)
	if failed {
		c.errors.Add(1)
	}
	c.latency.Observe(d.Seconds())
}

// totals sums the calls and errors over every command.
func (s *stats) totals() (calls, errors uint64) {
	for i := range s.cmds {
		calls += s.cmds[i].calls.Load()
		errors += s.cmds[i].errors.Load()
	}
	return
}

// newMetrics builds the node's registry and wires n.stats into it.
func (n *Node) newMetrics() *prometheus.Registry {
	reg, r := obs.NodeRegistry(n.cfg.NodeID, proto.KindSession, n.cfg.Datacenter)
	counter := func(name, help string, labels prometheus.Labels, f func() uint64) {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f()) }))
	}
	gauge := func(name, help string, f func() float64) {
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "slotreg_session_info",
		Help: "Always 1; its zone label is the session's zone.", ConstLabels: prometheus.Labels{"zone": n.cfg.Zone}},
		func() float64 { return 1 }))
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "slotreg_session_request_duration_seconds", Help: "Time from reading a client command to its reply being ready, by command.",
		Buckets: requestBuckets,
	}, []string{"command"})
	r.MustRegister(lat)
	names := metricNames()
	n.stats.cmds = make([]cmdStats, len(names))
	for i, name := range names {
		c := &n.stats.cmds[i]
		labels := prometheus.Labels{"command": name}
		counter("slotreg_session_requests_total", "Client commands handled, by command.", labels, c.calls.Load)
		counter("slotreg_session_errors_total", "Client commands answered with an error, by command.", labels, c.errors.Load)
		c.latency = lat.WithLabelValues(name)
	}
	counter("slotreg_session_pushes_total", "Messages pushed to subscribers.", nil, n.stats.pushes.Load)
	push := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "slotreg_session_push_latency_seconds",
		Help:    "Time from the session receiving a datum from its data node to the push being flushed to a client.",
		Buckets: requestBuckets,
	})
	r.MustRegister(push)
	n.stats.pushLatency = push
	counter("slotreg_session_reconcile_repairs_total", "Publishers a slot leader was missing and reconciliation (DSYNC) restored.",
		nil, n.stats.repairs.Load)
	counter("slotreg_session_stalled_clients_total", "Clients disconnected because they left their output unread past client-stall-timeout.",
		nil, n.stats.stalled.Load)
	counter("slotreg_session_auth_failures_total", "Client AUTH attempts with a wrong user or password.", nil, n.stats.authFailures.Load)
	counter("slotreg_session_refused_connections_total", "Client connections refused at max-connections.", nil, n.stats.refused.Load)
	counter("slotreg_session_fenced_total", "Times the session, cut off from meta and from data nodes past their grace, closed every client connection.", nil, n.stats.fenced.Load)
	gauge("slotreg_session_connected_clients", "Open client connections.", func() float64 {
		n.mu.Lock()
		defer n.mu.Unlock()
		return float64(len(n.conns))
	})
	gauge("slotreg_session_publishers", "Connection-bound publishers held by this session's clients.",
		func() float64 { return float64(n.pubs.count()) })
	gauge("slotreg_session_subscribed_topics", "DataInfoIds some client of this session subscribes to.", func() float64 {
		t, _ := n.subs.counts()
		return float64(t)
	})
	gauge("slotreg_session_subscriptions", "Client subscriptions (a client subscribed to k dataInfoIds counts k).", func() float64 {
		_, s := n.subs.counts()
		return float64(s)
	})
	gauge("slotreg_session_writes_inflight", "Writes sent to data nodes and not yet answered.",
		func() float64 { return float64(n.router.inflight.Load()) })
	gauge("slotreg_session_table_epoch", "Epoch of the slot table this session routes by (0 before the first).", func() float64 {
		if t := n.table.Load(); t != nil {
			return float64(t.Epoch)
		}
		return 0
	})
	return reg
}

// Metrics is the node's Prometheus registry, labelled node and role.
func (n *Node) Metrics() *prometheus.Registry { return n.metrics }
