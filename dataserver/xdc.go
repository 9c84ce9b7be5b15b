package dataserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/rlink"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Cross-datacenter sync. Every datacenter runs a whole cluster with the
// same 256 slots, so slots map one to one. This node, for each slot it
// leads, pulls the local publishers of the same slot from its leader in
// every remote datacenter (DXPULL, one long poll per remote node, for all
// the slots that node leads there), as a follower pulls its leader's
// op-log: incrementally from the op-log, a snapshot when the position is
// too far behind or on another leader epoch, and a digest compare as the
// backstop, which also makes a leader change on either side cheap when
// nothing was missed. Meta says which datacenters there are and where
// their meta nodes are (REMOTES); each remote datacenter's slot table,
// read from its meta, says whom to ask. See DESIGN.md, "Datacenters and
// zones", and docs/decisions.md.

const (
	// xdcTick is how often the remote tables are read and the pullers
	// matched to them.
	xdcTick = time.Second
	// xSnapBudget bounds the publishers of the slot snapshots one DXPULL
	// answer carries (a slot larger than that goes alone), so that an
	// answer is built, sent and applied well within its poll's deadline
	// however large the datacenter, and the first publishers of a full
	// resync arrive at once.
	xSnapBudget = 64 << 10
	// xdcConfigEvery is how many ticks pass between asking meta for the
	// remote datacenters.
	xdcConfigEvery = 5
)

type xdc struct {
	n    *Node
	kick chan struct{}

	mu      sync.Mutex
	remotes []proto.Remote
	tables  map[string]*slot.Table // by datacenter
	heard   map[string]time.Time   // by datacenter: its last answer

	// pullers long-poll the remote nodes, one each.
	pullers pullerSet[xkey]
}

// xkey names a remote node: its datacenter and address.
type xkey struct{ dc, addr string }

func newXDC(n *Node) *xdc {
	return &xdc{n: n, kick: make(chan struct{}, 1), tables: make(map[string]*slot.Table),
		heard: make(map[string]time.Time)}
}

// poke asks the loop to look again soon (a table changed here, or a
// remote node said it does not serve a slot).
func (x *xdc) poke() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

func (x *xdc) loop() {
	defer x.n.wg.Done()
	t := time.NewTicker(xdcTick)
	defer t.Stop()
	// Expiry runs on its own clock: reading an unreachable datacenter's
	// table takes as long as its metas' timeouts.
	x.n.wg.Add(1)
	go x.expireLoop()
	for i := 0; ; i++ {
		if i%xdcConfigEvery == 0 {
			x.readConfig()
		}
		x.readTables()
		x.match()
		select {
		case <-x.n.stop:
			x.pullers.close()
			return
		case <-t.C:
		case <-x.kick:
		}
	}
}

func (x *xdc) remoteList() []proto.Remote {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.remotes
}

// readConfig asks meta for the remote datacenters.
func (x *xdc) readConfig() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := x.n.meta.Do(ctx, proto.CmdRemotes)
	if err != nil {
		return
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return
	}
	spec, _ := arr[1].(string)
	rs, err := proto.ParseRemotes(spec, x.n.cfg.Datacenter)
	if err != nil {
		x.n.log.Warn("meta's remote datacenters do not parse", "err", err)
		return
	}
	x.mu.Lock()
	x.remotes = rs
	x.mu.Unlock()
}

// readTables reads each remote datacenter's slot table from one of its
// meta nodes.
func (x *xdc) readTables() {
	for _, r := range x.remoteList() {
		t, err := x.readTable(r)
		if err != nil {
			x.n.log.Debug("remote datacenter's table not read", "remote", r.Name, "err", err)
			continue
		}
		x.mu.Lock()
		// A lagging meta follower there may answer an older table.
		if cur := x.tables[r.Name]; cur == nil || t.Epoch >= cur.Epoch {
			x.tables[r.Name] = t
		}
		x.mu.Unlock()
	}
}

func (x *xdc) readTable(r proto.Remote) (*slot.Table, error) {
	var last error
	for _, addr := range r.Metas {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		v, err := metaclient.CallOnce(ctx, addr, x.n.cfg.Secret.Current, x.n.cfg.PeerTLS, []any{proto.CmdTable})
		cancel()
		if err != nil {
			last = err
			continue
		}
		s, ok := v.(string)
		if !ok {
			last = fmt.Errorf("meta %s: table reply is %T", addr, v)
			continue
		}
		return slot.Unmarshal([]byte(s))
	}
	return nil, cmpErr(last, errors.New("no meta address"))
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// wanted returns, by remote node, the slots this node leads that the
// node leads in its datacenter.
func (x *xdc) wanted() map[xkey][]int {
	t := x.n.table.Load()
	want := make(map[xkey][]int)
	if t == nil {
		return want
	}
	me := x.n.cfg.NodeID
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range x.remotes {
		rt := x.tables[r.Name]
		if rt == nil {
			continue
		}
		for s := range slot.Count {
			if t.Slots[s].Leader != me {
				continue
			}
			if addr, ok := rt.Addr(rt.Slots[s].Leader); ok {
				k := xkey{r.Name, addr}
				want[k] = append(want[k], s)
			}
		}
	}
	return want
}

// match starts and stops pullers to match the tables.
func (x *xdc) match() {
	want := make(map[xkey]string)
	for k := range x.wanted() {
		want[k] = k.addr
	}
	x.pullers.match(want, x.run)
}

// run pulls, from the remote node k, the slots this node leads that it
// leads there.
func (x *xdc) run(k xkey, p *puller) {
	n := x.n
	var req *proto.DXPull
	p.poll(n, pollOptions{
		// An answer is due after the long poll's wait, a linger and a
		// snapshot of the slots at most; one that has not come 2 s past
		// the wait is given up on, so that a cut link is found out soon
		// and, once healed, redialled within half a second.
		idle: 100 * time.Millisecond, timeout: pullWait + 2*time.Second,
		backoff: 50 * time.Millisecond, maxBackoff: 500 * time.Millisecond,
		request: func(dst []byte) ([]byte, bool) {
			req = &proto.DXPull{Datacenter: n.cfg.Datacenter, WaitMs: uint32(pullWait / time.Millisecond)}
			for _, s := range x.wanted()[k] {
				if pos, ok := n.slots[s].xposition(k.dc); ok {
					req.Pos = append(req.Pos, pos)
				}
			}
			return req.AppendRESP(dst), len(req.Pos) > 0
		},
		failed: func(err error) {
			n.log.Debug("cross-datacenter pull failed", "remote", k.dc, "addr", k.addr, "err", err)
			x.poke()
		},
		answer: func(rep *rlink.Reply) time.Duration {
			if x.take(k.dc, req, rep) > 0 {
				// It leads some of them no longer: a table here is
				// behind. The loop reads the remote tables again
				// meanwhile.
				return 100 * time.Millisecond
			}
			return 0
		},
	})
}

// take applies an answer to req and says for how many slots the node
// answered "none". A slot answered "wait" is left as it is, not current.
func (x *xdc) take(dc string, req *proto.DXPull, rep *rlink.Reply) (none int) {
	n := x.n
	now := time.Now()
	x.mu.Lock()
	x.heard[dc] = now
	x.mu.Unlock()
	answered := make(map[int]bool, len(rep.Arr))
	from := make(map[int]uint64, len(req.Pos))
	for _, pos := range req.Pos {
		from[pos.Slot] = pos.Seq
	}
	for i := range rep.Arr {
		v := &rep.Arr[i]
		if len(v.Arr) != 5 || v.Arr[0].Kind != ':' || v.Arr[0].Int < 0 || v.Arr[0].Int >= slot.Count {
			n.log.Warn("bad cross-datacenter pull reply", "remote", dc)
			continue
		}
		s := int(v.Arr[0].Int)
		answered[s] = true
		a := xanswer{kind: string(v.Arr[1].Str), epoch: uint64(v.Arr[2].Int), seq: uint64(v.Arr[3].Int), from: from[s]}
		var err error
		switch a.kind {
		case proto.XPullNone:
			x.poke()
			none++
			continue
		case proto.XPullWait:
			continue
		case proto.PullLog:
			a.es, err = proto.ParseEntries(v.Arr[4].Str)
		case proto.PullSnap:
			a.snap, err = proto.ParseSlotSnapshot(v.Arr[4].Str)
		}
		if err != nil {
			n.log.Warn("bad cross-datacenter pull reply", "remote", dc, "slot", s, "err", err)
			continue
		}
		n.slots[s].xapply(dc, &a, now.UnixNano())
	}
	for _, pos := range req.Pos {
		if !answered[pos.Slot] {
			n.slots[pos.Slot].xcurrent(dc, now.UnixNano())
		}
	}
	return none
}

// expireLoop drops, every xdcTick, the publishers of remote datacenters
// gone unheard for longer than RemoteExpire, slot by slot.
func (x *xdc) expireLoop() {
	defer x.n.wg.Done()
	after := x.n.cfg.RemoteExpire
	if after <= 0 {
		return
	}
	t := time.NewTicker(xdcTick)
	defer t.Stop()
	for {
		select {
		case <-x.n.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		for _, r := range x.remoteList() {
			for _, u := range x.n.slots {
				if k := u.xexpire(r.Name, now, int64(after)); k > 0 {
					x.n.log.Warn("dropped a remote datacenter's publishers: unheard for longer than --remote-expire",
						"remote", r.Name, "slot", u.id, "datums", k)
				}
			}
		}
	}
}

// handleXPull answers DXPULL from a remote datacenter's leader.
func (n *Node) handleXPull(conn redcon.Conn, p *proto.DXPull) {
	if p.Datacenter == n.cfg.Datacenter {
		conn.WriteError(proto.ToRESP(proto.Errorf(proto.ErrInvalid, "datacenter %s does not sync from itself", p.Datacenter)))
		return
	}
	n.awaitNews(time.Duration(p.WaitMs)*time.Millisecond, func() (int, bool) {
		news := 0
		for i := range p.Pos {
			if n.slots[p.Pos[i].Slot].xnews(&p.Pos[i]) {
				news++
			}
		}
		return news, false
	})
	type ans struct {
		slot int
		a    xanswer
	}
	var res []ans
	budget := xSnapBudget
	for i := range p.Pos {
		if a := n.slots[p.Pos[i].Slot].xsince(&p.Pos[i], pullMaxBatch, &budget); a.kind != "" {
			res = append(res, ans{p.Pos[i].Slot, a})
		}
	}
	conn.WriteArray(len(res))
	for _, r := range res {
		conn.WriteArray(5)
		conn.WriteInt(r.slot)
		conn.WriteBulkString(r.a.kind)
		conn.WriteUint64(r.a.epoch)
		conn.WriteUint64(r.a.seq)
		switch {
		case r.a.snap != nil:
			conn.WriteBulk(r.a.snap.AppendBinary(nil))
		case r.a.kind == proto.PullLog:
			conn.WriteBulk(proto.AppendEntries(nil, r.a.es))
		default:
			conn.WriteBulk(nil)
		}
	}
}

// Remotes reports the remote datacenters; withSlots adds each led
// slot's state.
func (n *Node) Remotes(withSlots bool) []proto.XRemote {
	x := n.xdc
	now := time.Now()
	x.mu.Lock()
	rs := x.remotes
	heard := make(map[string]time.Time, len(x.heard))
	for k, v := range x.heard {
		heard[k] = v
	}
	x.mu.Unlock()
	byDC := make(map[string]*proto.XRemote)
	for _, r := range rs {
		xr := &proto.XRemote{Name: r.Name, Metas: r.Metas, HeardMs: -1}
		if h, ok := heard[r.Name]; ok {
			xr.HeardMs = now.Sub(h).Milliseconds()
		}
		byDC[r.Name] = xr
	}
	for _, u := range n.slots {
		st, leading := u.xstats()
		if !leading {
			continue
		}
		for dc, s := range st {
			xr := byDC[dc]
			if xr == nil { // no longer configured, still held
				xr = &proto.XRemote{Name: dc, HeardMs: -1}
				byDC[dc] = xr
			}
			xr.Publishers += s.pubs
			lag := int64(-1)
			if s.syncedAt > 0 {
				lag = max(0, now.UnixNano()-s.syncedAt) / 1e6
			}
			// A long poll answers within pullWait: a slot is stale once
			// it went unanswered for longer than a few of those.
			if lag > 4*pullWait.Milliseconds() {
				xr.StaleMs = max(xr.StaleMs, lag)
			}
			if withSlots {
				xr.Slots = append(xr.Slots, proto.XSlot{Slot: u.id, Publishers: s.pubs, LeaderEpoch: s.epoch, Seq: s.seq, LagMs: lag})
			}
		}
	}
	out := make([]proto.XRemote, 0, len(byDC))
	for _, xr := range byDC {
		out = append(out, *xr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// handleXStats answers DXSTATS: Remotes(true) as JSON.
func (n *Node) handleXStats(conn redcon.Conn, _ redcon.Command) {
	b, err := json.Marshal(n.Remotes(true))
	if err != nil {
		conn.WriteError(proto.ToRESP(proto.Errorf(proto.ErrUnavailable, "encode: %v", err)))
		return
	}
	conn.WriteBulk(b)
}
