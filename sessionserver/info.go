package sessionserver

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
)

// info renders INFO [section]: Redis's text format, "# Section" headers
// and key:value lines.
func (n *Node) info(args [][]byte) string {
	want := "all"
	if len(args) > 0 {
		want = strings.ToLower(string(args[0]))
	}
	var b strings.Builder
	section := func(name string, kv ...any) {
		if want != "all" && want != "default" && want != "everything" && want != strings.ToLower(name) {
			return
		}
		fmt.Fprintf(&b, "# %s\r\n", name)
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(&b, "%v:%v\r\n", kv[i], kv[i+1])
		}
		b.WriteString("\r\n")
	}
	var epoch uint64
	var cluster string
	if t := n.table.Load(); t != nil {
		epoch, cluster = t.Epoch, t.Cluster
	}
	n.mu.Lock()
	conns := len(n.conns)
	n.mu.Unlock()
	topics, subs := n.subs.counts()
	prefixes, watches := n.pwatch.counts()
	section("Server",
		"slotreg_version", version,
		"role", proto.KindSession,
		"node_id", n.cfg.NodeID,
		"datacenter", n.cfg.Datacenter,
		"zone", n.cfg.Zone,
		"tcp_addr", n.addr,
		"uptime_in_seconds", int(time.Since(n.started).Seconds()),
		"go_version", runtime.Version(),
	)
	section("Clients", "connected_clients", conns)
	// Registry is this session's own: what its clients hold here. TTL
	// publishers are not held by any session (their leases live in the
	// data nodes); Cluster counts them.
	section("Registry",
		"table_epoch", epoch,
		"cluster_id", cluster,
		"ready", boolInt(n.Ready()),
		"session_conn_publishers", n.pubs.count(),
		"session_subscribed_topics", topics,
		"session_subscribers", subs,
		"session_watched_prefixes", prefixes,
		"session_prefix_watches", watches,
		"writes_inflight", n.router.inflight.Load(),
	)
	if want == "cluster" || want == "all" || want == "everything" {
		// Asks every data node: only when asked.
		c := n.clusterCounts()
		section("Cluster",
			"cluster_publishers", c.publishers,
			"cluster_conn_publishers", c.publishers-c.ttl,
			"cluster_ttl_publishers", c.ttl,
			"cluster_datainfo_ids", c.datums,
			"cluster_data_nodes_answered", fmt.Sprintf("%d/%d", c.answered, c.asked),
		)
	}
	if want == "memory" || want == "all" || want == "everything" {
		// Reading the heap stops the world briefly: only when asked.
		m := obs.ReadMemory(false)
		section("Memory",
			"used_memory", m.UsedMemory,
			"used_memory_human", humanBytes(m.UsedMemory),
			"heap_inuse", m.HeapInuse,
			"heap_live", m.HeapLive,
			"heap_sys", m.HeapSys,
			"heap_released", m.HeapReleased,
			"gc_cycles", m.GCCycles,
		)
	}
	if want == "datacenters" || want == "all" || want == "everything" {
		// Asks every data node: only when asked.
		var kv []any
		for _, r := range n.remoteStatus() {
			kv = append(kv, "remote_"+r.Name, fmt.Sprintf("publishers=%d,stale_ms=%d,heard_ms=%d", r.Publishers, r.StaleMs, r.HeardMs))
		}
		section("Datacenters", kv...)
	}
	calls, errs := n.stats.totals()
	section("Stats",
		"total_commands_processed", calls,
		"total_error_replies", errs,
		"total_pushes", n.stats.pushes.Load(),
		"reconcile_repairs", n.stats.repairs.Load(),
	)
	names := metricNames()
	cmdstats := make([]any, 0, 2*len(names))
	for i := range n.stats.cmds {
		c := &n.stats.cmds[i]
		cmdstats = append(cmdstats, "cmdstat_"+names[i],
			fmt.Sprintf("calls=%d,failed_calls=%d", c.calls.Load(), c.errors.Load()))
	}
	section("Commandstats", cmdstats...)
	return b.String()
}

// humanBytes renders n as Redis's *_human fields do (1.50M).
func humanBytes(n uint64) string {
	const units = "KMGT"
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.2f%c", v, units[i])
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
