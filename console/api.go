package console

import (
	"errors"
	"net/http"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// The read-only API. Every view says when its state was gathered (At,
// Unix ms) and, per node, why the node gave nothing if it did not answer:
// the page renders whatever did.

// overviewView is GET /ui/api/overview.
type overviewView struct {
	At         int64      `json:"at"`
	MetaLeader string     `json:"metaLeader"`
	MetaError  string     `json:"metaError,omitempty"`
	TableEpoch uint64     `json:"tableEpoch"`
	TableError string     `json:"tableError,omitempty"`
	Nodes      []nodeView `json:"nodes"`
	// Slots is the table, one entry per slot (empty without a table).
	Slots []slotView `json:"slots"`
}

// nodeView is one node as the overview shows it.
type nodeView struct {
	Kind string `json:"kind"` // meta, data or session
	ID   string `json:"id"`
	Addr string `json:"addr"`
	// Role is a meta's leader or follower (unknown without a leader), a
	// data node's "data", a session's "session".
	Role       string `json:"role"`
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
	// LastSeenMs is the lease age: the time since the node's last
	// heartbeat, as the meta leader saw it (absent for metas and without
	// a leader).
	LastSeenMs *int64 `json:"lastSeenMs,omitempty"`
	Draining   bool   `json:"draining,omitempty"`
	Leads      *int   `json:"leads,omitempty"`
	Follows    *int   `json:"follows,omitempty"`
	// Healthy says the node answered the console just now; Error why not.
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
}

// slotView is one slot of the table.
type slotView struct {
	Slot        int      `json:"slot"`
	Leader      string   `json:"leader"`
	Followers   []string `json:"followers"`
	LeaderEpoch uint64   `json:"leaderEpoch"`
	// Target is the node the slot is moving to, "" when it is not.
	Target string `json:"target,omitempty"`
}

func (c *Console) apiOverview(r *http.Request) (any, error) {
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	return s.overview(), nil
}

func (s *snapshot) overview() *overviewView {
	o := &overviewView{At: s.At.UnixMilli(), MetaLeader: s.MetaLeader, MetaError: s.MetaError, TableError: s.TableError,
		Nodes: []nodeView{}, Slots: []slotView{}}
	seen := map[string]bool{}
	for _, m := range sortedBy(s.Members.Metas) {
		seen[m.Addr] = true
		o.Nodes = append(o.Nodes, s.metaView(m))
	}
	for addr := range s.MetaUp {
		if !seen[addr] {
			o.Nodes = append(o.Nodes, s.metaView(proto.Member{ID: "(" + addr + ")", Addr: addr, Kind: proto.KindMeta}))
		}
	}
	for _, m := range sortedBy(s.Members.Data) {
		v := s.memberView(m, "data")
		if s.Table != nil {
			leads, follows := len(s.Table.LedBy(m.ID)), len(s.Table.FollowedBy(m.ID))
			v.Leads, v.Follows = &leads, &follows
		}
		o.Nodes = append(o.Nodes, v)
	}
	for _, m := range sortedBy(s.Members.Sessions) {
		o.Nodes = append(o.Nodes, s.memberView(m, "session"))
	}
	if t := s.Table; t != nil {
		o.TableEpoch = t.Epoch
		o.Slots = make([]slotView, slot.Count)
		for i, a := range t.Slots {
			fs := a.Followers
			if fs == nil {
				fs = []string{}
			}
			o.Slots[i] = slotView{Slot: i, Leader: a.Leader, Followers: fs, LeaderEpoch: a.LeaderEpoch, Target: a.Target}
		}
	}
	return o
}

func (s *snapshot) metaView(m proto.Member) nodeView {
	v := nodeView{Kind: proto.KindMeta, ID: m.ID, Addr: m.Addr, Datacenter: m.Datacenter, Role: "unknown"}
	if s.MetaLeader != "" {
		v.Role = "follower"
		if m.Addr == s.MetaLeader {
			v.Role = "leader"
		}
	}
	err, asked := s.MetaUp[m.Addr]
	v.Healthy = asked && err == nil
	if err != nil {
		v.Error = oneLine(err)
	}
	return v
}

func (s *snapshot) memberView(m proto.Member, role string) nodeView {
	v := nodeView{Kind: m.Kind, ID: m.ID, Addr: m.Addr, Role: role, Datacenter: m.Datacenter, Zone: m.Zone, Draining: m.Draining}
	if s.MetaLeader != "" {
		age := m.LastSeenMs
		v.LastSeenMs = &age
	}
	err := s.NodeErrs[m.Addr]
	v.Healthy = err == nil
	if err != nil {
		v.Error = oneLine(err)
	}
	return v
}

// statsView is GET /ui/api/stats.
type statsView struct {
	At       int64          `json:"at"`
	Data     []dataStats    `json:"data"`
	Sessions []sessionStats `json:"sessions"`
}

// dataStats is a data node's DSTATS, summed: the publishers and datums of
// the slots it leads.
type dataStats struct {
	ID         string             `json:"id"`
	Addr       string             `json:"addr"`
	Leads      int                `json:"leads"`
	Follows    int                `json:"follows"`
	Publishers int                `json:"publishers"`
	Datums     int                `json:"datums"`
	Unready    int                `json:"unready"` // slots not yet fit to serve
	Memory     *proto.MemoryStats `json:"memory,omitempty"`
	Error      string             `json:"error,omitempty"`
}

// sessionStats is a session's INFO counters.
type sessionStats struct {
	ID       string           `json:"id"`
	Addr     string           `json:"addr"`
	Counters map[string]int64 `json:"counters"`
	Error    string           `json:"error,omitempty"`
}

// sessionCounters are the INFO fields the stats show.
var sessionCounters = []string{"connected_clients", "session_conn_publishers", "session_subscribed_topics", "session_subscribers",
	"session_watched_prefixes", "session_prefix_watches", "writes_inflight", "ready", "table_epoch", "uptime_in_seconds",
	"total_commands_processed", "total_error_replies", "total_pushes", "reconcile_repairs"}

func (c *Console) apiStats(r *http.Request) (any, error) {
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	v := &statsView{At: s.At.UnixMilli(), Data: []dataStats{}, Sessions: []sessionStats{}}
	for _, m := range sortedBy(s.Members.Data) {
		d := dataStats{ID: m.ID, Addr: m.Addr}
		if ds := s.DStats[m.Addr]; ds != nil {
			for _, st := range ds.Slots {
				if st.Role == proto.RoleLeader {
					d.Leads++
					d.Publishers += st.Publishers
					d.Datums += st.Datums
				} else {
					d.Follows++
				}
				if !st.Ready {
					d.Unready++
				}
			}
			d.Memory = ds.Memory
		} else {
			d.Error = oneLine(s.NodeErrs[m.Addr])
		}
		v.Data = append(v.Data, d)
	}
	for _, m := range sortedBy(s.Members.Sessions) {
		ss := sessionStats{ID: m.ID, Addr: m.Addr, Counters: map[string]int64{}}
		if info := s.Info[m.Addr]; info != nil {
			for _, k := range sessionCounters {
				if n, ok := infoInt(info, k); ok {
					ss.Counters[k] = n
				}
			}
		} else {
			ss.Error = oneLine(s.NodeErrs[m.Addr])
		}
		v.Sessions = append(v.Sessions, ss)
	}
	return v, nil
}

// movesView is GET /ui/api/moves.
type movesView struct {
	At    int64      `json:"at"`
	Moves []moveView `json:"moves"`
}

// moveView is one slot move in progress. Progress is the target's
// applied seq over the leader's (0..1), from both nodes' DSTATS; absent
// when either did not answer.
type moveView struct {
	Slot      int      `json:"slot"`
	From      string   `json:"from"`
	To        string   `json:"to"`
	LeaderSeq *uint64  `json:"leaderSeq,omitempty"`
	TargetSeq *uint64  `json:"targetSeq,omitempty"`
	Progress  *float64 `json:"progress,omitempty"`
	// Note says why Progress is absent or partial.
	Note string `json:"note,omitempty"`
}

func (c *Console) apiMoves(r *http.Request) (any, error) {
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	return s.moves(), nil
}

func (s *snapshot) moves() *movesView {
	v := &movesView{At: s.At.UnixMilli(), Moves: []moveView{}}
	if s.Table == nil {
		return v
	}
	stats := func(node string, sl int) (*proto.SlotStats, bool) {
		addr, ok := s.Table.Addr(node)
		ds := s.DStats[addr]
		if !ok || ds == nil {
			return nil, false
		}
		for i := range ds.Slots {
			if ds.Slots[i].Slot == sl {
				return &ds.Slots[i], true
			}
		}
		return nil, true // answered, holds no copy
	}
	for _, sl := range s.Table.Moving() {
		a := s.Table.Slots[sl]
		m := moveView{Slot: sl, From: a.Leader, To: a.Target}
		ls, lok := stats(a.Leader, sl)
		ts, tok := stats(a.Target, sl)
		switch {
		case !lok || !tok:
			m.Note = "a node did not answer"
		case ls == nil:
			m.Note = "the leader holds no copy"
		default:
			lseq := ls.Seq
			m.LeaderSeq = &lseq
			var tseq uint64
			if ts != nil && ts.LeaderEpoch == ls.LeaderEpoch {
				tseq = ts.Seq
			} else {
				m.Note = "the target has no copy yet"
			}
			m.TargetSeq = &tseq
			p := 1.0
			if lseq > 0 {
				p = min(float64(tseq)/float64(lseq), 1)
			}
			if ts == nil {
				p = 0
			}
			m.Progress = &p
		}
		v.Moves = append(v.Moves, m)
	}
	return v
}

// configView is GET /ui/api/config: the keys (CONFLIST: version and size
// of each, deleted ones as tombstones).
type configView struct {
	At    int64               `json:"at"`
	Keys  []proto.ConfigEntry `json:"keys"`
	Error string              `json:"error,omitempty"`
}

func (c *Console) apiConfig(r *http.Request) (any, error) {
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	v := &configView{At: s.At.UnixMilli(), Keys: s.Config, Error: s.ConfigErr}
	if v.Keys == nil {
		v.Keys = []proto.ConfigEntry{}
	}
	return v, nil
}

// historyView is GET /ui/api/config/history?key=K: the key's last
// versions, oldest first.
type historyView struct {
	Key      string              `json:"key"`
	Versions []proto.ConfigEntry `json:"versions"`
}

func (c *Console) apiConfigHistory(r *http.Request) (any, error) {
	key := r.URL.Query().Get("key")
	if err := proto.CheckConfigKey(key); err != nil {
		return nil, badRequest("key: %s", detail(err))
	}
	ctx, cancel := contextFor(r, 2*c.cfg.Timeout)
	defer cancel()
	v, err := c.leader.Do(ctx, (&proto.ConfKey{Cmd: proto.CmdConfHistory, Key: key}).Args()...)
	if err != nil {
		return nil, metaErr(err)
	}
	es, err := proto.ParseConfigEntries(v, proto.CmdConfHistory)
	if err != nil {
		return nil, unavailable("%v", err)
	}
	if es == nil {
		es = []proto.ConfigEntry{}
	}
	return &historyView{Key: key, Versions: es}, nil
}

// locksView is GET /ui/api/locks.
type locksView struct {
	At        int64            `json:"at"`
	Locks     []proto.HeldLock `json:"locks"`
	Truncated bool             `json:"truncated,omitempty"`
	Error     string           `json:"error,omitempty"`
}

func (c *Console) apiLocks(r *http.Request) (any, error) {
	s, err := c.snapshot(r.Context())
	if err != nil {
		return nil, err
	}
	v := &locksView{At: s.At.UnixMilli(), Locks: []proto.HeldLock{}, Error: s.LocksErr}
	if s.Locks != nil {
		v.Locks, v.Truncated = s.Locks.Locks, s.Locks.Truncated
	}
	return v, nil
}

// detail is a proto error's text without its RESP prefix.
func detail(err error) string {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe.Detail
	}
	return err.Error()
}

// metaErr turns an error from the meta leader into the API's: a refusal
// (bad input meta caught) is 400 with meta's reason; no leader, or no
// meta answering, 503.
func metaErr(err error) error {
	switch {
	case errors.Is(err, proto.ErrInvalid):
		return badRequest("%s", detail(err))
	case errors.Is(err, proto.ErrNoAuth), errors.Is(err, proto.ErrWrongPass):
		return unavailable("meta refused the console's cluster secret: %s", oneLine(err))
	}
	return unavailable("%s", oneLine(err))
}
