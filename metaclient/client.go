package metaclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// DefaultInterval is the heartbeat interval when Config.Interval is 0.
const DefaultInterval = 500 * time.Millisecond

// ErrClientStopped is returned by a Client after Leave or Close.
var ErrClientStopped = ErrClosed

// Config configures a Client.
type Config struct {
	// Kind is proto.KindData or proto.KindSession.
	Kind string
	// Datacenter and Zone are what heartbeats say of the node: meta
	// refuses a node of another datacenter. Zone is a session's.
	Datacenter, Zone string
	// NodeID identifies this node in the membership.
	NodeID string
	// Addr is this node's advertised address: the inter-node address of a
	// data node, the client address of a session.
	Addr string
	// Metas are meta RPC addresses; any of them will do, followers
	// redirect to the leader.
	Metas []string
	// Interval between heartbeats. Default DefaultInterval. It must stay
	// well below the meta lease.
	Interval time.Duration
	// AttemptTimeout bounds one try at one meta (dial, or wait for the
	// reply); then the client moves to the next meta. Default 1 s, a
	// third of the default lease: a node must find a new meta leader well
	// within the lease when the old one goes silent.
	AttemptTimeout time.Duration
	// OnTable is called whenever a newer table arrives, never
	// concurrently and in increasing epoch order (from the heartbeat
	// goroutine once Start was called). It must not call Refresh.
	OnTable func(*slot.Table)
	// OnSessions is called whenever a newer session list arrives, with
	// its members epoch and the live session nodes sorted by ID, under
	// the same rules as OnTable (never concurrently with it or itself,
	// in increasing epoch order). When one heartbeat brings both, the
	// sessions come first, so a node that takes over slots in OnTable
	// already knows every live session to reconcile with. It must not
	// call Refresh.
	OnSessions func(membersEpoch uint64, sessions []proto.Member)
	// Progress, if set, is called before each heartbeat; a data node
	// returns, for each slot it follows, the op-log sequence it has
	// applied, so meta can promote the most advanced follower when a
	// leader departs. It runs on the heartbeat goroutine, never
	// concurrently, and must return quickly; the client only reads the
	// map. Slots outside 0..slot.Count-1 are dropped.
	Progress func() map[int]uint64
	// Secret is the cluster secret, sent with AUTH on every new
	// connection to a meta; empty when the cluster has none.
	Secret string
	// TLS, when set, dials the metas over TLS (their RPC listeners must
	// be TLS).
	TLS *tls.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports the first field that is wrong, by name.
func (c *Config) Validate() error {
	if c.Kind != proto.KindData && c.Kind != proto.KindSession {
		return fmt.Errorf("meta client config: Kind %q is neither %q nor %q", c.Kind, proto.KindData, proto.KindSession)
	}
	if c.NodeID == "" || strings.ContainsAny(c.NodeID, " \t\r\n") {
		return fmt.Errorf("meta client config: NodeID %q is empty or contains white space", c.NodeID)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("meta client config: Addr %q is not host:port: %w", c.Addr, err)
	}
	if len(c.Metas) == 0 {
		return errors.New("meta client config: Metas is empty")
	}
	for i, m := range c.Metas {
		if _, _, err := net.SplitHostPort(m); err != nil {
			return fmt.Errorf("meta client config: Metas[%d] %q is not host:port: %w", i, m, err)
		}
	}
	if c.Interval < 0 {
		return fmt.Errorf("meta client config: Interval %v is negative", c.Interval)
	}
	return nil
}

// Client is what data and session nodes embed to heartbeat to the meta
// leader and receive tables. While meta has no leader it keeps the last
// table and keeps trying: nodes go on serving with the table they have.
type Client struct {
	cfg Config
	log *slog.Logger

	table    atomic.Pointer[slot.Table]
	sessions atomic.Pointer[sessionList]
	// beatMu serializes heartbeats, so tables are compared, stored and
	// delivered one at a time and in order.
	beatMu sync.Mutex

	leader *Leader
	// watcher holds the TABLEWAIT long poll (see watch), on connections
	// of its own so that it never delays a heartbeat.
	watcher *Leader

	mu      sync.Mutex
	started bool
	stopped bool // Leave or Close: the loop will not run (again)

	loopCtx    context.Context
	loopCancel context.CancelFunc
	refreshCh  chan refreshReq
	kickCh     chan struct{} // a heartbeat soon, without waiting for it
	running    atomic.Bool
	wg         sync.WaitGroup
	failures   obs.Failures // heartbeat failures; loop goroutine only
	lastOK     atomic.Int64 // unix nanos of the last heartbeat meta answered
	// leaseFrom is when the last heartbeat meta answered was sent (unix
	// nanos), and lease meta's lease as it said; see LeaseLeft.
	leaseFrom atomic.Int64
	lease     atomic.Int64

	// suspected is when each data node was last reported (see Suspect).
	suspectMu sync.Mutex
	suspected map[string]time.Time
}

// suspectEvery is how often one node reports the same suspect.
const suspectEvery = 200 * time.Millisecond

// sessionList is a session list as meta sent it; published, it is
// immutable.
type sessionList struct {
	epoch   uint64
	members []proto.Member
}

type refreshReq struct {
	ctx  context.Context
	done chan error
}

// NewClient checks cfg and returns a client; Start begins heartbeating.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Metas = append([]string(nil), cfg.Metas...)
	c := &Client{
		cfg: cfg,
		log: cfg.Logger.With("node", cfg.NodeID, "kind", cfg.Kind),
		leader: NewLeader(LeaderOptions{Metas: cfg.Metas, Secret: cfg.Secret, TLS: cfg.TLS,
			ReadTimeout: cfg.AttemptTimeout, DialTimeout: cfg.AttemptTimeout}),
		watcher: NewLeader(LeaderOptions{Metas: cfg.Metas, Secret: cfg.Secret, TLS: cfg.TLS, PoolSize: 1,
			ReadTimeout: tableWait + cfg.AttemptTimeout, DialTimeout: cfg.AttemptTimeout}),
		refreshCh: make(chan refreshReq),
		kickCh:    make(chan struct{}, 1),
	}
	c.failures = obs.Failures{Log: c.log, Msg: "meta heartbeat failed; keeping the last table", Recovered: "meta heartbeat recovered"}
	c.loopCtx, c.loopCancel = context.WithCancel(context.Background())
	return c, nil
}

// Start begins the heartbeat loop: one heartbeat at once, then one per
// Interval, and one as soon as meta has a newer table or session list
// (see watch). Calling it again, or after Leave or Close, does nothing.
func (c *Client) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopped {
		return
	}
	c.started = true
	c.running.Store(true)
	c.wg.Add(2)
	go c.run()
	go c.watch()
}

// tableWait is how long one TABLEWAIT poll waits for news before the
// next one is sent.
const tableWait = 5 * time.Second

// watch keeps a TABLEWAIT long poll open with the meta leader, and kicks
// a heartbeat as soon as meta's table or session list differs from what
// this node was last told, so a change (a move's next step, a node
// joining or leaving) arrives a round trip after meta commits it rather
// than up to an Interval later. Tables still come only through
// heartbeats, whole and in order. While the poll fails (no meta leader,
// a meta that predates TABLEWAIT) it is sent again every Interval, and
// heartbeats alone bring the changes, as before.
func (c *Client) watch() {
	defer c.wg.Done()
	epoch, members := c.epoch(), c.membersEpoch()
	for c.loopCtx.Err() == nil {
		w := proto.TableWait{Epoch: epoch, MembersEpoch: members, WaitMs: uint32(tableWait / time.Millisecond)}
		v, err := c.watcher.Do(c.loopCtx, w.Args()...)
		if err == nil {
			var e, m uint64
			if e, m, err = proto.ParseTableWaitReply(v); err == nil {
				if e != epoch || m != members {
					c.kick()
				}
				// The next poll waits for news beyond what meta said, not
				// beyond what this node has: the heartbeat just kicked may
				// not have brought it yet, and polling from the node's own
				// epochs would spin until it had.
				epoch, members = e, m
				continue
			}
		}
		if c.loopCtx.Err() != nil {
			return
		}
		c.log.Debug("table wait failed; heartbeats alone bring changes", "err", err)
		t := time.NewTimer(c.cfg.Interval)
		select {
		case <-c.loopCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		epoch, members = c.epoch(), c.membersEpoch()
	}
}

func (c *Client) run() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	c.noteBeat(c.beat(c.loopCtx))
	for {
		select {
		case <-c.loopCtx.Done():
			return
		case <-t.C:
			c.noteBeat(c.beat(c.loopCtx))
		case <-c.kickCh:
			c.noteBeat(c.beat(c.loopCtx))
		case req := <-c.refreshCh:
			ctx, cancel := context.WithCancel(req.ctx)
			stop := context.AfterFunc(c.loopCtx, cancel)
			err := c.beat(ctx)
			stop()
			cancel()
			c.noteBeat(err)
			req.done <- err
		}
	}
}

// noteBeat logs heartbeat failures without flooding (obs.Failures):
// quiet while meta elects its first leader, then the first of a run,
// every 20th, and the recovery.
func (c *Client) noteBeat(err error) {
	switch {
	case err == nil:
		c.lastOK.Store(time.Now().UnixNano())
		c.failures.OK()
	case c.loopCtx.Err() == nil:
		c.failures.Fail(err, "epoch", c.epoch())
	}
}

// Reachable says whether the meta leader answered a heartbeat within the
// last d: a data node asks before it freezes a slot to hand it off, since
// a handoff needs meta to commit it.
func (c *Client) Reachable(d time.Duration) bool {
	t := c.lastOK.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < d
}

// LeaseLeft is how much longer meta surely counts this node as a member:
// meta's lease, from when the last heartbeat meta answered was sent (meta
// took it as contact later than that), less now. It goes negative once
// the lease may have lapsed and meta may have evicted the node. ok is
// false before the first answer, or with a meta that does not say its
// lease.
//
// While meta has lost its quorum, no leader can evict the node: when a
// majority of the metas showed that (see Leader.LeaderlessSince), the
// lease counts from then, so nodes go on serving without meta.
func (c *Client) LeaseLeft() (left time.Duration, ok bool) {
	from, lease := c.leaseFrom.Load(), c.lease.Load()
	if from == 0 || lease == 0 {
		return 0, false
	}
	since := time.Unix(0, from)
	if t, ok := c.leader.LeaderlessSince(); ok && t.After(since) {
		since = t
	}
	return time.Duration(lease) - time.Since(since), true
}

// Lease is meta's lease as its last answered heartbeat said; 0 before
// that, or from a meta that does not say it.
func (c *Client) Lease() time.Duration { return time.Duration(c.lease.Load()) }

// Table returns the latest table, nil before the first. Callers must not
// modify it.
func (c *Client) Table() *slot.Table { return c.table.Load() }

func (c *Client) epoch() uint64 {
	if t := c.table.Load(); t != nil {
		return t.Epoch
	}
	return 0
}

// Sessions returns the latest session list and its members epoch; (0,
// nil) before the first. The slice is the caller's.
func (c *Client) Sessions() (uint64, []proto.Member) {
	l := c.sessions.Load()
	if l == nil {
		return 0, nil
	}
	return l.epoch, slices.Clone(l.members)
}

func (c *Client) membersEpoch() uint64 {
	if l := c.sessions.Load(); l != nil {
		return l.epoch
	}
	return 0
}

// kick asks the loop for a heartbeat soon and returns at once, so it is
// safe to call from OnTable. Without a running loop it does nothing.
func (c *Client) kick() {
	if !c.running.Load() {
		return
	}
	select {
	case c.kickCh <- struct{}{}:
	default:
	}
}

// Refresh heartbeats now, so a node told its table is stale can catch up;
// if a newer table arrives, OnTable has been called when Refresh returns.
func (c *Client) Refresh(ctx context.Context) error {
	if c.running.Load() {
		req := refreshReq{ctx: ctx, done: make(chan error, 1)}
		select {
		case c.refreshCh <- req:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.loopCtx.Done():
			return ErrClientStopped
		}
		select {
		case err := <-req.done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.loopCtx.Err() != nil {
		return ErrClientStopped
	}
	return c.beat(ctx)
}

// Leave stops the heartbeat loop (so the node does not join again) and
// tells the meta leader the node is leaving, so it is removed without
// waiting for its lease to lapse. Call Close afterwards.
func (c *Client) Leave(ctx context.Context) error {
	c.stopLoop()
	l := &proto.Leave{Kind: c.cfg.Kind, NodeID: c.cfg.NodeID}
	if _, err := c.leader.Do(ctx, l.Args()...); err != nil {
		return fmt.Errorf("%s node %s: leave: %w", c.cfg.Kind, c.cfg.NodeID, err)
	}
	c.log.Info("left the cluster")
	return nil
}

// Handoff reports to the meta leader that this data node, leading slot at
// leaderEpoch, has handed it over to to, the slot's move target; meta
// then makes to the leader (leader epoch + 1). It follows NOTLEADER
// redirects and returns nil once the switch is applied (also when a
// retried handoff finds it applied already). It then asks the heartbeat
// loop for a heartbeat, so OnTable delivers the new table soon after;
// Handoff itself does not wait for that, so it may be called from
// OnTable.
//
// An error matching proto.ErrInvalid is a refusal: the move was cancelled
// (for example it timed out) or the table changed, and the table still
// names the slot's leader, which this node must go by. Other errors
// (network, no meta leader) leave the outcome unknown; retrying is safe.
func (c *Client) Handoff(ctx context.Context, slot int, to string, leaderEpoch uint64) error {
	if c.cfg.Kind != proto.KindData {
		return fmt.Errorf("%s node %s: handoff of slot %d: only data nodes lead slots", c.cfg.Kind, c.cfg.NodeID, slot)
	}
	h := &proto.Handoff{Slot: slot, From: c.cfg.NodeID, To: to, LeaderEpoch: leaderEpoch}
	if _, err := c.leader.Do(ctx, h.Args()...); err != nil {
		return fmt.Errorf("data node %s: handoff of slot %d to %s at leader epoch %d: %w",
			c.cfg.NodeID, slot, to, leaderEpoch, err)
	}
	c.log.Debug("slot handed off", "slot", slot, "to", to, "leaderEpoch", leaderEpoch+1)
	c.kick()
	return nil
}

// Do sends any meta command (args: the command name, then its arguments,
// as go-redis's Do takes them) to the meta leader, following NOTLEADER
// redirects and moving to the next meta on network errors. RESP error
// replies come back as proto sentinels (errors.Is(err, proto.ErrInvalid)
// and so on). It is meant for admin tools (MOVESLOT, REBALANCE, ...);
// heartbeats are the loop's business.
func (c *Client) Do(ctx context.Context, args ...any) (any, error) {
	return c.leader.Do(ctx, args...)
}

// Suspect tells meta, in the background, that data node id refused a
// connection from this node (see proto.Suspect). A node reports the same
// suspect at most every suspectEvery; when meta answers that the suspect
// is out of the cluster, a heartbeat follows at once to fetch the table
// without it.
func (c *Client) Suspect(id string) {
	c.suspectMu.Lock()
	if time.Since(c.suspected[id]) < suspectEvery {
		c.suspectMu.Unlock()
		return
	}
	if c.suspected == nil {
		c.suspected = map[string]time.Time{}
	}
	c.suspected[id] = time.Now()
	c.suspectMu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.loopCtx, 2*time.Second)
		defer cancel()
		s := &proto.Suspect{Kind: proto.KindData, NodeID: id, Reporter: c.cfg.NodeID}
		v, err := c.leader.Do(ctx, s.Args()...)
		if err != nil {
			c.log.Debug("reporting a suspected data node failed", "suspect", id, "err", err)
			return
		}
		if out, _ := v.(int64); out == 1 {
			c.log.Info("meta confirmed that a data node refusing connections is out", "suspect", id)
			c.kick()
		}
	}()
}

// Close stops the heartbeat loop, waits for its goroutine and releases the
// connections. It may be called more than once.
func (c *Client) Close() {
	c.stopLoop()
	c.leader.Close()
}

func (c *Client) stopLoop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.loopCancel()
	// A poll in flight ends only when its connection does: cancelling
	// the context does not interrupt a read with no deadline of its own.
	c.watcher.Close()
	c.wg.Wait()
	c.running.Store(false)
}

// beat sends one heartbeat and takes in a newer session list and a newer
// table if they come back, in that order.
func (c *Client) beat(ctx context.Context) error {
	c.beatMu.Lock()
	defer c.beatMu.Unlock()
	have := c.epoch()
	hb := &proto.Heartbeat{Kind: c.cfg.Kind, NodeID: c.cfg.NodeID, Addr: c.cfg.Addr, Epoch: have,
		MembersEpoch: c.membersEpoch(), Progress: c.progress(), Datacenter: c.cfg.Datacenter, Zone: c.cfg.Zone}
	sent := time.Now()
	v, err := c.leader.Do(ctx, hb.Args()...)
	if err != nil {
		return fmt.Errorf("%s node %s: heartbeat at epoch %d: %w", c.cfg.Kind, c.cfg.NodeID, have, err)
	}
	rep, err := proto.ParseHeartbeatReply(v)
	if err != nil {
		return fmt.Errorf("%s node %s: %w", c.cfg.Kind, c.cfg.NodeID, err)
	}
	if rep.LeaseMs > 0 {
		c.lease.Store(int64(time.Duration(rep.LeaseMs) * time.Millisecond))
		c.leaseFrom.Store(sent.UnixNano())
	}
	// A bad session list must not hold back the table, nor the reverse.
	return errors.Join(c.takeSessions(rep), c.takeTable(rep, have))
}

// progress is the Progress report to send, without slots meta would
// reject (which would fail the whole heartbeat and cost the lease).
func (c *Client) progress() map[int]uint64 {
	if c.cfg.Progress == nil {
		return nil
	}
	p := c.cfg.Progress()
	for s := range p {
		if s < 0 || s >= slot.Count {
			c.log.Warn("progress for a slot out of range dropped", "slot", s)
			p = maps.Clone(p)
			maps.DeleteFunc(p, func(s int, _ uint64) bool { return s < 0 || s >= slot.Count })
			break
		}
	}
	return p
}

// takeSessions stores and delivers the session list of rep if it is newer.
func (c *Client) takeSessions(rep *proto.HeartbeatReply) error {
	if rep.Sessions == nil {
		return nil
	}
	have := c.membersEpoch()
	if rep.MembersEpoch <= have {
		c.log.Warn("meta sent an older session list; ignored", "membersEpoch", have, "metaMembersEpoch", rep.MembersEpoch)
		return nil
	}
	var list []proto.Member
	if err := json.Unmarshal(rep.Sessions, &list); err != nil {
		return fmt.Errorf("%s node %s: session list of members epoch %d from meta: %w",
			c.cfg.Kind, c.cfg.NodeID, rep.MembersEpoch, err)
	}
	if list == nil {
		list = []proto.Member{}
	}
	c.sessions.Store(&sessionList{epoch: rep.MembersEpoch, members: list})
	c.log.Info("session list updated", "membersEpoch", rep.MembersEpoch, "was", have, "sessions", len(list))
	if c.cfg.OnSessions != nil {
		c.cfg.OnSessions(rep.MembersEpoch, slices.Clone(list))
	}
	return nil
}

// takeTable stores and delivers the table of rep if it is newer than have.
func (c *Client) takeTable(rep *proto.HeartbeatReply, have uint64) error {
	if rep.Table == nil {
		return nil
	}
	t, err := slot.Unmarshal(rep.Table)
	if err != nil {
		return fmt.Errorf("%s node %s: table epoch %d from meta: %w", c.cfg.Kind, c.cfg.NodeID, rep.Epoch, err)
	}
	if t.Epoch <= have {
		// Only a rebuilt meta group can go back; keep the newer table
		// rather than undo leader epochs data nodes already fenced on.
		c.log.Warn("meta sent an older table; ignored", "epoch", have, "metaEpoch", t.Epoch)
		return nil
	}
	c.table.Store(t)
	c.log.Debug("slot table updated", "epoch", t.Epoch, "was", have, "dataNodes", len(t.Nodes))
	if c.cfg.OnTable != nil {
		c.cfg.OnTable(t)
	}
	return nil
}
