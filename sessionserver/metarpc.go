package sessionserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/slotreg/slotreg/proto"
)

// metaRPC sends config and lock commands to the meta leader. It is apart
// from the heartbeat client (meta.Client) on purpose: a long poll must not
// hold a connection heartbeats need, and twenty clients queueing for a
// lock must not delay the heartbeat that keeps this session's lease.
type metaRPC struct {
	metas       []string
	readTimeout time.Duration
	poolSize    int

	mu     sync.Mutex
	cur    string
	next   int
	conns  map[string]*redis.Client
	closed bool
}

func newMetaRPC(metas []string, readTimeout time.Duration, poolSize int) *metaRPC {
	return &metaRPC{metas: metas, readTimeout: readTimeout, poolSize: poolSize, cur: metas[0],
		next: 1 % len(metas), conns: map[string]*redis.Client{}}
}

// errMetaClosed is returned once the session is stopping.
var errMetaClosed = errors.New("meta connection closed")

// do sends args to the meta leader, following NOTLEADER redirects and
// moving to the next meta on network errors, for at most len(metas)+2
// attempts. A null reply is (nil, nil); an error reply comes back as its
// proto sentinel.
func (m *metaRPC) do(ctx context.Context, args []any) (any, error) {
	var lastErr error
	for range len(m.metas) + 2 {
		addr, rdb, err := m.conn()
		if err != nil {
			return nil, err
		}
		v, err := rdb.Do(ctx, args...).Result()
		switch {
		case err == nil:
			return v, nil
		case errors.Is(err, redis.Nil):
			return nil, nil
		case ctx.Err() != nil:
			return nil, fmt.Errorf("meta %s: %w", addr, ctx.Err())
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			perr := proto.FromRESP(rerr.Error())
			leader, ok := proto.LeaderAddr(perr)
			if !ok {
				return nil, fmt.Errorf("meta %s: %w", addr, perr)
			}
			m.redirect(addr, leader)
			lastErr = fmt.Errorf("meta %s: %w", addr, perr)
			continue
		}
		m.redirect(addr, "")
		lastErr = fmt.Errorf("meta %s: %w", addr, err)
	}
	return nil, lastErr
}

func (m *metaRPC) conn() (string, *redis.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", nil, errMetaClosed
	}
	rdb, ok := m.conns[m.cur]
	if !ok {
		rdb = redis.NewClient(&redis.Options{
			Addr:                  m.cur,
			Protocol:              2,
			DisableIdentity:       true,
			DialTimeout:           time.Second,
			ReadTimeout:           m.readTimeout,
			WriteTimeout:          time.Second,
			ContextTimeoutEnabled: true,
			// go-redis reads 0 as "3 retries"; do moves on itself.
			MaxRetries:               -1,
			PoolSize:                 m.poolSize,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		m.conns[m.cur] = rdb
	}
	return m.cur, rdb, nil
}

// redirect moves away from the meta at from: to leader if it names one,
// else to the next in the list, unless another caller moved already.
func (m *metaRPC) redirect(from, leader string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != from {
		return
	}
	if leader != "" && leader != from {
		m.cur = leader
		return
	}
	m.cur = m.metas[m.next]
	m.next = (m.next + 1) % len(m.metas)
}

func (m *metaRPC) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	for _, c := range m.conns {
		_ = c.Close()
	}
	clear(m.conns)
}
