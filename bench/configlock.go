package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/proto"
)

// ConfigPushConfig drives the config-push scenario: Watchers connections
// spread over Addrs subscribe to one config key; Changes times, the
// harness writes a new value (carrying the time it was sent) through
// meta, and each watcher records the time from the write being sent to
// its push arriving.
type ConfigPushConfig struct {
	Addrs    []string // sessions
	Metas    []string // meta RPC addresses (any; followers redirect)
	Watchers int
	Changes  int
	Gap      time.Duration // between changes
	Timeout  time.Duration // longest wait for one change to reach every watcher
	Progress *Progress
}

// WithDefaults returns cfg with every unset knob at its default, the
// shape ConfigPush runs (and an etcd peer is given).
func (cfg ConfigPushConfig) WithDefaults() ConfigPushConfig {
	cfg.Watchers = cmp.Or(max(cfg.Watchers, 0), 100)
	cfg.Changes = cmp.Or(max(cfg.Changes, 0), 200)
	cfg.Gap = cmp.Or(max(cfg.Gap, 0), 20*time.Millisecond)
	cfg.Timeout = cmp.Or(max(cfg.Timeout, 0), 10*time.Second)
	return cfg
}

// ConfigPush runs the config-push scenario. The latency is end to end:
// CONFSET to the meta leader (a Raft commit), the sessions' long polls
// waking, and the push to each watcher.
func ConfigPush(ctx context.Context, cfg ConfigPushConfig) (*Result, error) {
	if len(cfg.Addrs) == 0 || len(cfg.Metas) == 0 {
		return nil, errors.New("config-push: need session and meta addresses")
	}
	cfg = cfg.WithDefaults()
	key := "bench/" + runPrefix("cfg")
	hist := NewHistogram()
	setHist := NewHistogram()
	var cur atomic.Pointer[cfgRound]
	clients := make([]*redis.Client, cfg.Watchers)
	defer closeAll(clients)
	var wg sync.WaitGroup
	cfg.Progress.Logf("config-push: opening %d watchers", cfg.Watchers)
	for i := range clients {
		clients[i] = dialSub(cfg.Addrs[i%len(cfg.Addrs)])
		ps := clients[i].Subscribe(ctx, proto.ConfigChannelPrefix+key)
		if _, err := ps.Receive(ctx); err != nil {
			return nil, fmt.Errorf("config-push: subscribe watcher %d: %w", i, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ps.Close()
			for {
				msg, err := ps.ReceiveMessage(ctx)
				if err != nil {
					return
				}
				now := time.Now()
				var e proto.ConfigEntry
				r := cur.Load()
				if json.Unmarshal([]byte(msg.Payload), &e) != nil || r == nil || e.Value != r.value {
					continue
				}
				hist.Record(now.Sub(r.sent))
				if r.got.Add(1) == int64(cfg.Watchers) {
					close(r.done)
				}
			}
		}()
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	meta := newMetaWriter(cfg.Metas)
	defer meta.close()
	res := &Result{Scenario: "config-push", Target: TargetSlotreg, Params: map[string]any{
		"watchers": cfg.Watchers, "changes": cfg.Changes, "gap": cfg.Gap.String(), "sessions": len(cfg.Addrs)}}
	start := time.Now()
	var errs int64
	for i := range cfg.Changes {
		if ctx.Err() != nil {
			break
		}
		r := &cfgRound{sent: time.Now(), done: make(chan struct{})}
		r.value = strconv.FormatInt(r.sent.UnixNano(), 10)
		cur.Store(r)
		if _, err := meta.do(ctx, proto.CmdConfSet, key, r.value); err != nil {
			errs++
			continue
		}
		setHist.Record(time.Since(r.sent))
		select {
		case <-r.done:
		case <-time.After(cfg.Timeout):
			errs++
			cfg.Progress.Logf("config-push: change %d reached %d of %d watchers in %v", i, r.got.Load(), cfg.Watchers, cfg.Timeout)
		case <-ctx.Done():
		}
		select {
		case <-time.After(cfg.Gap):
		case <-ctx.Done():
		}
		if (i+1)%50 == 0 {
			cfg.Progress.Logf("config-push: %d/%d changes", i+1, cfg.Changes)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.Ops = hist.Count()
	res.Errors = errs
	res.Rate = float64(res.Ops) / res.Seconds
	res.setHist(hist)
	if s := setHist.Summary(); s != nil {
		res.Add("confset_p50", s.P50Ms, "ms")
		res.Add("confset_p99", s.P99Ms, "ms")
	}
	return res, nil
}

// cfgRound is one config change being delivered.
type cfgRound struct {
	value string
	sent  time.Time
	got   atomic.Int64
	done  chan struct{}
}

// LockConfig drives the lock-acquire scenario: Clients connections over
// Addrs each take and release a lock in a loop for Duration; with Locks
// below Clients, clients share locks and compete.
type LockConfig struct {
	Addrs    []string
	Clients  int
	Locks    int
	Duration time.Duration
	Progress *Progress
}

// LockTTL is the TTL of every lock the lock scenario takes (and of an
// etcd peer's sessions).
const LockTTL = 30 * time.Second

// WithDefaults returns cfg with every unset knob at its default, the
// shape LockAcquire runs (and an etcd peer is given).
func (cfg LockConfig) WithDefaults() LockConfig {
	cfg.Clients = cmp.Or(max(cfg.Clients, 0), 8)
	cfg.Locks = cmp.Or(max(cfg.Locks, 0), cfg.Clients)
	cfg.Duration = cmp.Or(max(cfg.Duration, 0), 10*time.Second)
	return cfg
}

// LockAcquire runs the lock-acquire scenario: the latency of each granted
// LOCK (a Raft commit on the meta leader, through a session); refusals
// (a competitor held it) are counted apart.
func LockAcquire(ctx context.Context, cfg LockConfig) (*Result, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("lock: no address")
	}
	cfg = cfg.WithDefaults()
	prefix := runPrefix("lock")
	hist := NewHistogram()
	var ops, errs, refused atomic.Int64
	stop := cfg.Progress.track("lock", &ops, &errs)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.Clients {
		c := dial(cfg.Addrs[i%len(cfg.Addrs)])
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			h := NewHistogram()
			defer hist.Merge(h)
			name := prefix + "/" + strconv.Itoa(i%cfg.Locks)
			owner := "bench-" + strconv.Itoa(i)
			for ctx.Err() == nil {
				t0 := time.Now()
				err := c.Do(ctx, proto.CmdLock, name, owner, LockTTL.Milliseconds()).Err()
				switch {
				case errors.Is(err, redis.Nil):
					refused.Add(1)
					continue
				case err != nil:
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				h.Record(time.Since(t0))
				ops.Add(1)
				if err := c.Do(ctx, proto.CmdUnlock, name, owner).Err(); err != nil && ctx.Err() == nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	res := &Result{Scenario: "lock-acquire", Target: TargetSlotreg, Params: map[string]any{
		"clients": cfg.Clients, "locks": cfg.Locks, "duration": cfg.Duration.String(), "sessions": len(cfg.Addrs)},
		Ops: ops.Load(), Errors: errs.Load(), Seconds: time.Since(start).Seconds()}
	res.Rate = float64(res.Ops) / res.Seconds
	res.setHist(hist)
	res.Add("refused", float64(refused.Load()), "locks")
	return res, nil
}

// metaWriter sends commands to the meta leader, following NOTLEADER.
type metaWriter struct {
	metas []string
	mu    sync.Mutex
	cur   string
	conns map[string]*redis.Client
}

func newMetaWriter(metas []string) *metaWriter {
	return &metaWriter{metas: metas, cur: metas[0], conns: map[string]*redis.Client{}}
}

func (m *metaWriter) client(addr string) *redis.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.conns[addr]
	if c == nil {
		c = dial(addr)
		m.conns[addr] = c
	}
	return c
}

func (m *metaWriter) do(ctx context.Context, args ...any) (any, error) {
	var last error
	for i := range 2 * len(m.metas) {
		v, err := m.client(m.cur).Do(ctx, args...).Result()
		if err == nil {
			return v, nil
		}
		last = err
		var rerr redis.Error
		if errors.As(err, &rerr) {
			if leader, ok := proto.LeaderAddr(proto.FromRESP(rerr.Error())); ok && leader != "" {
				m.cur = leader
				continue
			}
			if _, ok := proto.LeaderAddr(proto.FromRESP(rerr.Error())); !ok {
				return nil, err
			}
		}
		m.cur = m.metas[(i+1)%len(m.metas)]
	}
	return nil, last
}

func (m *metaWriter) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		c.Close()
	}
}
