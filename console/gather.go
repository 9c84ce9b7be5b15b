package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/slotreg/slotreg/internal/fanout"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// pool holds one go-redis client per node address: metas and data nodes
// on their inter-node ports (the cluster secret, inter-node TLS),
// sessions on their client ports (the cluster user, client TLS).
type pool struct {
	cfg Config

	mu      sync.Mutex
	clients map[poolKey]*redis.Client
	closed  bool
}

type poolKey struct {
	session bool
	addr    string
}

func newPool(cfg Config) *pool { return &pool{cfg: cfg, clients: map[poolKey]*redis.Client{}} }

func (p *pool) client(k poolKey) (*redis.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("console closed")
	}
	if c, ok := p.clients[k]; ok {
		return c, nil
	}
	user, tlsCfg := "", p.cfg.TLS
	if k.session {
		tlsCfg = p.cfg.SessionTLS
		if p.cfg.Secret != "" {
			user = proto.ClusterUser
		}
	}
	c := redis.NewClient(&redis.Options{
		Addr: k.addr, Username: user, Password: p.cfg.Secret, TLSConfig: tlsCfg,
		Protocol: 2, DisableIdentity: true,
		DialTimeout: p.cfg.Timeout, ReadTimeout: p.cfg.Timeout, WriteTimeout: p.cfg.Timeout,
		ContextTimeoutEnabled: true,
		// The console asks again on its next poll; go-redis's own
		// retries would only stretch a poll past its timeout.
		MaxRetries: -1, DialerRetries: 1, PoolSize: 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	p.clients[k] = c
	return c, nil
}

// forget drops the clients of addresses no longer in the cluster, so a
// long-running console does not keep connections to departed nodes.
func (p *pool) forget(keep map[poolKey]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.clients {
		if !keep[k] {
			_ = c.Close()
			delete(p.clients, k)
		}
	}
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.clients {
		_ = c.Close()
	}
	clear(p.clients)
}

// call sends one command to the node at k, bounded by the timeout. An
// error reply comes back as its proto sentinel; no answer as the network
// error.
func (p *pool) call(ctx context.Context, k poolKey, args ...any) (any, error) {
	c, err := p.client(k)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	v, err := c.Do(ctx, args...).Result()
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, redis.Nil):
		return nil, nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return nil, proto.FromRESP(rerr.Error())
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("no answer within %v", p.cfg.Timeout)
	}
	return nil, err
}

// snapshot is one fan-out over the cluster: what the API's overview,
// stats, moves, config and locks show.
type snapshot struct {
	At         time.Time
	MetaLeader string // RPC address; "" when no meta leader answered
	MetaError  string // why there is no leader's view
	Members    proto.Members
	Table      *slot.Table
	TableError string
	Config     []proto.ConfigEntry
	ConfigErr  string
	Locks      *proto.LockListReply
	LocksErr   string
	// By node address: the metas' PING, the data nodes' DSTATS and the
	// sessions' INFO, or why a node gave none.
	MetaUp   map[string]error
	DStats   map[string]*proto.DataStats
	Info     map[string]map[string]string
	NodeErrs map[string]error
}

// snapshot returns the latest fan-out if it is younger than CacheTTL,
// else runs one; concurrent callers share it.
func (c *Console) snapshot(ctx context.Context) (*snapshot, error) {
	c.mu.Lock()
	if c.snap != nil && time.Since(c.snapAt) < c.cfg.CacheTTL {
		s := c.snap
		c.mu.Unlock()
		return s, nil
	}
	if ch := c.inflight; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, unavailable("gave up waiting for the cluster's state: %v", ctx.Err())
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.snap, nil
	}
	ch := make(chan struct{})
	c.inflight = ch
	c.mu.Unlock()

	// The fan-out is everyone's, so the first request's cancellation
	// must not cut it short; the console's own context and the timeouts
	// bound it.
	s := c.gather(c.ctx)
	c.mu.Lock()
	c.snap, c.snapAt, c.inflight = s, time.Now(), nil
	c.mu.Unlock()
	close(ch)
	return s, nil
}

// invalidate makes the next request fan out again (after an action).
func (c *Console) invalidate() {
	c.mu.Lock()
	c.snapAt = time.Time{}
	c.mu.Unlock()
}

// gather asks the meta leader for the table, the members, the config
// keys and the locks (any meta for the table and members when none
// leads), then every node, in parallel, whether it answers.
func (c *Console) gather(ctx context.Context) *snapshot {
	s := &snapshot{At: time.Now(), MetaUp: map[string]error{}, DStats: map[string]*proto.DataStats{},
		Info: map[string]map[string]string{}, NodeErrs: map[string]error{}}
	c.gatherMeta(ctx, s)

	type job struct {
		kind, addr string
	}
	var jobs []job
	seen := map[string]bool{}
	for _, m := range s.Members.Metas {
		jobs, seen[m.Addr] = append(jobs, job{proto.KindMeta, m.Addr}), true
	}
	for _, a := range c.cfg.Metas {
		if !seen[a] {
			jobs = append(jobs, job{proto.KindMeta, a})
		}
	}
	for _, m := range s.Members.Data {
		jobs = append(jobs, job{proto.KindData, m.Addr})
	}
	for _, m := range s.Members.Sessions {
		jobs = append(jobs, job{proto.KindSession, m.Addr})
	}
	var mu sync.Mutex
	fanout.ForEach(len(jobs), 0, func(i int) {
		j := jobs[i]
		switch j.kind {
		case proto.KindMeta:
			_, err := c.pool.call(ctx, poolKey{addr: j.addr}, proto.CmdPing)
			mu.Lock()
			s.MetaUp[j.addr] = err
			mu.Unlock()
		case proto.KindData:
			v, err := c.pool.call(ctx, poolKey{addr: j.addr}, proto.CmdDStats, proto.OptCounts)
			var ds *proto.DataStats
			if err == nil {
				ds, err = proto.ParseDataStats(v)
			}
			mu.Lock()
			if err != nil {
				s.NodeErrs[j.addr] = fmt.Errorf("DSTATS: %w", err)
			} else {
				s.DStats[j.addr] = ds
			}
			mu.Unlock()
		case proto.KindSession:
			v, err := c.pool.call(ctx, poolKey{session: true, addr: j.addr}, proto.CmdInfo, "default")
			var info map[string]string
			if err == nil {
				info, err = parseInfo(v)
			}
			mu.Lock()
			if err != nil {
				s.NodeErrs[j.addr] = fmt.Errorf("INFO: %w", err)
			} else {
				s.Info[j.addr] = info
			}
			mu.Unlock()
		}
	})
	keep := map[poolKey]bool{}
	for _, j := range jobs {
		keep[poolKey{session: j.kind == proto.KindSession, addr: j.addr}] = true
	}
	c.pool.forget(keep)
	return s
}

// gatherMeta fills in the meta leader's view: CONFLIST (leader-only, so
// its success also names the leader), NODES (with lease ages), TABLE and
// MLOCKLIST. Without a leader, NODES and TABLE come from any meta.
func (c *Console) gatherMeta(ctx context.Context, s *snapshot) {
	lctx, cancel := context.WithTimeout(ctx, 2*c.cfg.Timeout)
	defer cancel()
	v, err := c.leader.Do(lctx, (&proto.ConfList{}).Args()...)
	if err == nil {
		s.MetaLeader = c.leader.Current()
		if s.Config, err = proto.ParseConfigEntries(v, proto.CmdConfList); err != nil {
			s.ConfigErr = err.Error()
		}
		if err = c.readMembersAndTable(lctx, s, func(args ...any) (any, error) { return c.leader.Do(lctx, args...) }); err == nil {
			if v, err := c.leader.Do(lctx, (&proto.LockList{}).Args()...); err != nil {
				s.LocksErr = oneLine(err)
			} else if s.Locks, err = proto.ParseLockListReply(v); err != nil {
				s.LocksErr = err.Error()
			}
			return
		}
	}
	s.MetaError = "no meta leader answered: " + oneLine(err)
	s.MetaLeader, s.ConfigErr, s.LocksErr = "", s.MetaError, s.MetaError
	var last error
	for _, a := range c.cfg.Metas {
		if last = c.readMembersAndTable(ctx, s, func(args ...any) (any, error) { return c.pool.call(ctx, poolKey{addr: a}, args...) }); last == nil {
			return
		}
	}
	s.TableError = "no meta answered: " + oneLine(last)
}

func (c *Console) readMembersAndTable(_ context.Context, s *snapshot, do func(args ...any) (any, error)) error {
	v, err := do(proto.CmdNodes)
	if err != nil {
		return fmt.Errorf("NODES: %w", err)
	}
	var m proto.Members
	b, ok := bulk(v)
	if !ok {
		return fmt.Errorf("NODES reply: want a bulk, got %T", v)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("NODES reply: %w", err)
	}
	v, err = do(proto.CmdTable)
	if err != nil {
		return fmt.Errorf("TABLE: %w", err)
	}
	if b, ok = bulk(v); !ok {
		return fmt.Errorf("TABLE reply: want a bulk, got %T", v)
	}
	t, err := slot.Unmarshal(b)
	if err != nil {
		return fmt.Errorf("TABLE reply: %w", err)
	}
	s.Members, s.Table = m, t
	return nil
}

func bulk(v any) ([]byte, bool) {
	switch b := v.(type) {
	case string:
		return []byte(b), true
	case []byte:
		return b, true
	}
	return nil, false
}

// parseInfo reads Redis INFO text into its key:value pairs.
func parseInfo(v any) (map[string]string, error) {
	b, ok := bulk(v)
	if !ok {
		return nil, fmt.Errorf("INFO reply: want a bulk, got %T", v)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, val, ok := strings.Cut(line, ":"); ok {
			out[k] = val
		}
	}
	return out, nil
}

// oneLine is err's text on one line ("" for nil).
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	var re *metaclient.ReplyError
	if errors.As(err, &re) {
		var pe *proto.Error
		if errors.As(re.Err, &pe) {
			return "meta " + re.Addr + ": " + pe.Detail
		}
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// infoInt reads a numeric INFO field; ok false when absent or not a
// number.
func infoInt(info map[string]string, key string) (int64, bool) {
	n, err := strconv.ParseInt(info[key], 10, 64)
	return n, err == nil
}

// sortedBy returns ms sorted by ID.
func sortedBy(ms []proto.Member) []proto.Member {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b proto.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}
