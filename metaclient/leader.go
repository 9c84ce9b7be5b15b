package metaclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/slotreg/slotreg/proto"
)

// DefaultCooldown is how long a meta that failed with a network error is
// passed over when another one is available (LeaderOptions.Cooldown).
const DefaultCooldown = time.Second

// LeaderOptions configures a Leader.
type LeaderOptions struct {
	// Metas are the meta RPC addresses; any one will do to start.
	Metas []string
	// Secret is sent with AUTH on every new connection (empty: none).
	Secret string
	// TLS, when set, dials the metas over TLS.
	TLS *tls.Config
	// ReadTimeout bounds one attempt's wait for a reply; default 1 s. A
	// long poll sets it above its own wait.
	ReadTimeout time.Duration
	// DialTimeout bounds one connection attempt; default 1 s.
	DialTimeout time.Duration
	// PoolSize is the connections kept per meta; default 2.
	PoolSize int
	// Cooldown: see DefaultCooldown.
	Cooldown time.Duration
	// DialRetries is how many times one connection attempt dials before
	// it fails; default 1. Leader moves on to the next meta itself, and
	// go-redis's own default (5 dials, 100 ms apart) made a silently cut
	// off meta cost 5 DialTimeouts: nodes redirected back to it by a
	// follower that still named it lost 5 s finding the new leader, and
	// their leases lapsed meanwhile.
	DialRetries int
}

// ReplyError is an error reply from a meta: it answered, and said no.
// Its text is "meta <addr>: <reply>"; errors.Is matches the reply's
// proto sentinel.
type ReplyError struct {
	Addr string // the meta that replied
	Err  error  // the reply as its proto sentinel error (proto.FromRESP)
}

func (e *ReplyError) Error() string { return fmt.Sprintf("meta %s: %v", e.Addr, e.Err) }

// Unwrap returns the proto sentinel error.
func (e *ReplyError) Unwrap() error { return e.Err }

// Leader sends commands to the meta leader over a list of meta addresses:
// it follows NOTLEADER redirects, moves to the next meta on a network
// error, and does not go back, within one call, to a meta that failed
// that way, nor for Cooldown in later calls while another meta is
// untried. A silently cut-off meta leader therefore costs one attempt's
// timeout, however often the followers still name it (they do until
// they elect another), instead of one per redirect. It is safe for
// concurrent use.
type Leader struct {
	opts LeaderOptions

	mu     sync.Mutex
	cur    string // the meta requests go to
	next   int    // index in opts.Metas of the next meta to fall back to
	failed map[string]time.Time
	conns  map[string]*redis.Client
	closed bool
	// leaderless is when each meta last showed that it could not be part
	// of a working meta leader's quorum: it refused the connection (no
	// process), or answered that it knows no leader. See LeaderlessSince.
	leaderless map[string]time.Time
}

// ErrClosed is returned by a Leader (and a Client) after Close.
var ErrClosed = errors.New("meta client stopped")

// NewLeader returns a Leader; opts.Metas must not be empty.
func NewLeader(opts LeaderOptions) *Leader {
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = time.Second
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 2
	}
	if opts.Cooldown == 0 {
		opts.Cooldown = DefaultCooldown
	}
	if opts.DialRetries == 0 {
		opts.DialRetries = 1
	}
	opts.Metas = append([]string(nil), opts.Metas...)
	return &Leader{opts: opts, cur: opts.Metas[0], next: 1 % len(opts.Metas),
		failed: map[string]time.Time{}, conns: map[string]*redis.Client{}, leaderless: map[string]time.Time{}}
}

// Do sends args (the command name, then its arguments) to the meta
// leader, for at most len(Metas)+2 attempts. A null reply is (nil, nil);
// an error reply comes back as its proto sentinel (errors.Is(err,
// proto.ErrInvalid) and so on), NOTLEADER only when every attempt was
// redirected. Error replies are *ReplyError.
func (l *Leader) Do(ctx context.Context, args ...any) (any, error) {
	var lastErr error
	var down map[string]bool // metas that failed with a network error in this call
	for range len(l.opts.Metas) + 2 {
		addr, rdb, err := l.conn()
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
			if ok && leader == "" {
				l.noteLeaderless(addr)
			}
			if !ok {
				return nil, &ReplyError{Addr: addr, Err: perr}
			}
			l.redirect(addr, leader, down)
			lastErr = &ReplyError{Addr: addr, Err: perr}
			continue
		}
		if down == nil {
			down = map[string]bool{}
		}
		down[addr] = true
		if errors.Is(err, syscall.ECONNREFUSED) {
			l.noteLeaderless(addr)
		}
		l.fail(addr)
		lastErr = fmt.Errorf("meta %s: %w", addr, err)
	}
	return nil, lastErr
}

func (l *Leader) noteLeaderless(addr string) {
	l.mu.Lock()
	l.leaderless[addr] = time.Now()
	l.mu.Unlock()
}

// LeaderlessSince is the latest time by which a majority of the metas had
// each shown that it was not in a working leader's quorum (refused the
// connection, or answered that it knew no leader, at or after that
// time); false if no majority ever had. A leader elected after it must
// first give every node a fresh lease (meta does on taking over), so a
// node may count its lease from then as from an answered heartbeat: with
// meta's quorum lost, nodes keep serving.
func (l *Leader) LeaderlessSince() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ts []time.Time
	for _, a := range l.opts.Metas {
		if t, ok := l.leaderless[a]; ok {
			ts = append(ts, t)
		}
	}
	need := len(l.opts.Metas)/2 + 1
	if len(ts) < need {
		return time.Time{}, false
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
	return ts[need-1], true
}

// waitRetry is how often DoWait asks again while no meta leads.
const waitRetry = 100 * time.Millisecond

// DoWait is Do for a caller that can wait out an election: while the
// metas answer but none leads (NOTLEADER with no leader to follow, or
// UNAVAILABLE while a new leader takes over) it asks again every 100 ms,
// for up to wait in all, then fails with "no meta leader after <wait>".
// Any other error reply, and a call in which no meta answered at all
// (not a *ReplyError), end it at once.
func (l *Leader) DoWait(ctx context.Context, wait time.Duration, args ...any) (any, error) {
	start := time.Now()
	for {
		v, err := l.Do(ctx, args...)
		var re *ReplyError
		if err == nil || !errors.As(err, &re) ||
			!errors.Is(err, proto.ErrNotLeader) && !errors.Is(err, proto.ErrUnavailable) {
			return v, err
		}
		if time.Since(start) >= wait {
			return nil, fmt.Errorf("no meta leader after %v: %w", wait.Round(time.Millisecond), err)
		}
		t := time.NewTimer(waitRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Current is the meta the next request goes to.
func (l *Leader) Current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

func (l *Leader) conn() (string, *redis.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", nil, ErrClosed
	}
	rdb, ok := l.conns[l.cur]
	if !ok {
		rdb = newRedis(l.cur, l.opts)
		l.conns[l.cur] = rdb
	}
	return l.cur, rdb, nil
}

// fail notes a network error at addr and moves on to the next meta that
// has not failed lately.
func (l *Leader) fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed[addr] = time.Now()
	if l.cur == addr {
		l.cur = l.nextLocked(addr, nil)
	}
}

// redirect moves from `from` to the leader it named, unless that leader
// failed with a network error in this call (down) or lately, in which
// case a follower's word is not worth another timeout: it goes to the next
// meta instead. If another caller moved already, it does nothing.
func (l *Leader) redirect(from, leader string, down map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != from {
		return
	}
	if leader != "" && leader != from && !down[leader] && !l.coolingLocked(leader) {
		l.cur = leader
		return
	}
	l.cur = l.nextLocked(from, down)
}

func (l *Leader) coolingLocked(addr string) bool {
	t, ok := l.failed[addr]
	return ok && time.Since(t) < l.opts.Cooldown
}

// nextLocked picks, in list order from l.next, the first meta other than
// from that is neither down nor cooling; failing that the first one not
// down; failing that simply the next one.
func (l *Leader) nextLocked(from string, down map[string]bool) string {
	n := len(l.opts.Metas)
	pick := func(ok func(string) bool) (string, bool) {
		for i := range n {
			j := (l.next + i) % n
			if a := l.opts.Metas[j]; a != from && ok(a) {
				l.next = (j + 1) % n
				return a, true
			}
		}
		return "", false
	}
	if a, ok := pick(func(a string) bool { return !down[a] && !l.coolingLocked(a) }); ok {
		return a
	}
	if a, ok := pick(func(a string) bool { return !down[a] }); ok {
		return a
	}
	a := l.opts.Metas[l.next]
	l.next = (l.next + 1) % n
	return a
}

// Close releases the connections; later calls get ErrClosed.
func (l *Leader) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for _, c := range l.conns {
		_ = c.Close()
	}
	clear(l.conns)
}

// newRedis returns a RESP2 client for one meta with the given timeouts and
// no retries: the caller decides where to go next. go-redis sends AUTH
// with the secret (when set) on every new connection, before any command.
func newRedis(addr string, o LeaderOptions) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                  addr,
		Password:              o.Secret,
		TLSConfig:             o.TLS,
		Protocol:              2,
		DisableIdentity:       true,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		// go-redis reads 0 as "3 retries"; -1 disables them.
		MaxRetries:               -1,
		DialerRetries:            o.DialRetries,
		PoolSize:                 o.PoolSize,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// CallOnce sends one command to addr on a fresh connection (with the
// cluster secret and TLS settings given), turning RESP errors into proto
// sentinels.
func CallOnce(ctx context.Context, addr, secret string, tlsCfg *tls.Config, args []any) (any, error) {
	rdb := newRedis(addr, LeaderOptions{Secret: secret, TLS: tlsCfg, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, PoolSize: 1})
	defer rdb.Close()
	v, err := rdb.Do(ctx, args...).Result()
	var rerr redis.Error
	if err != nil && errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("meta %s: %w", addr, proto.FromRESP(rerr.Error()))
	}
	if err != nil {
		return nil, fmt.Errorf("meta %s: %w", addr, err)
	}
	return v, nil
}
