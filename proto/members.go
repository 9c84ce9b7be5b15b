package proto

// Members is the cluster membership as the meta FSM holds it, each list
// sorted by ID.
type Members struct {
	Data     []Member `json:"data"`
	Sessions []Member `json:"sessions"`
	Metas    []Member `json:"metas"`
}

// Member is one node of the cluster.
type Member struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
	Kind string `json:"kind"` // KindData, KindSession or KindMeta
	// LastSeenMs is the time since the node's last heartbeat, in
	// milliseconds, as the meta leader sees it; 0 on followers and for
	// meta members.
	LastSeenMs int64 `json:"lastSeenMs,omitempty"`
	// Draining is set on a data node being drained (see DRAIN).
	Draining bool `json:"draining,omitempty"`
	// Datacenter is the cluster's (every member's, as meta refuses any
	// other); Zone a session's, as its heartbeats say (the meta leader
	// learns it within a heartbeat of taking over).
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
}
