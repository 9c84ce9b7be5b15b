package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

// env is what every command gets: its context (with the output streams),
// the per-request timeout, and the connections it opened (to metas, data
// nodes and sessions), closed when the command ends.
type env struct {
	c       *cli.Context
	timeout time.Duration
	meta    *metaConn
	pool    *pool
}

func newEnv(c *cli.Context) (*env, error) {
	var addrs []string
	for _, a := range strings.Split(c.String(flagMeta), ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, usageErrorf("--meta: %q is not HOST:PORT", a)
		}
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, usageErrorf("no meta address: pass --meta HOST:PORT[,HOST:PORT...] or set SLOTREG_META")
	}
	timeout := c.Duration(flagTimeout)
	if timeout <= 0 {
		return nil, usageErrorf("--timeout %v: must be positive", timeout)
	}
	p := newPool(timeout)
	p.secret = c.String(flagClusterSecret)
	p.user, p.password = c.String(flagUser), c.String(flagPassword)
	if c.Bool(flagTLSInternode) || c.Bool(flagTLSClient) {
		cfg, err := netsec.ClientConfig(netsec.TLSFiles{CA: c.String(flagTLSCA)})
		if err != nil {
			return nil, usageErrorf("--%s: %v", flagTLSCA, err)
		}
		if c.Bool(flagTLSInternode) {
			p.internodeTLS = cfg
		}
		if c.Bool(flagTLSClient) {
			p.sessionTLS = cfg
		}
	}
	return &env{c: c, timeout: timeout, meta: newMetaConn(addrs, p), pool: p}, nil
}

func newMetaConn(addrs []string, p *pool) *metaConn {
	lead := metaclient.NewLeader(metaclient.LeaderOptions{
		Metas: addrs, Secret: p.secret, TLS: p.internodeTLS,
		ReadTimeout: p.timeout, DialTimeout: min(p.timeout, 2*time.Second),
	})
	return &metaConn{addrs: addrs, pool: p, lead: lead}
}

func (e *env) close() {
	e.meta.lead.Close()
	e.pool.close()
}

// ctx is a context for one request: the command's, bounded by --timeout.
func (e *env) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.c.Context, e.timeout)
}

// write sends a command to the meta leader, waiting up to --timeout for
// one to be elected.
func (e *env) write(args ...any) (any, error) {
	return e.meta.write(e.c.Context, e.timeout, args...)
}

func (e *env) printf(format string, args ...any) {
	fmt.Fprintf(e.c.App.Writer, format, args...)
}

func (e *env) warnf(format string, args ...any) {
	fmt.Fprintf(e.c.App.ErrWriter, "registryctl: warning: "+format+"\n", args...)
}

// pool holds one go-redis client per node address. Metas and data nodes
// are reached on their inter-node ports, with the cluster secret and
// inter-node TLS; sessions on their client ports, with client TLS.
type pool struct {
	timeout time.Duration
	// secret is sent with AUTH to metas and data nodes; user and
	// password to sessions.
	secret, user, password string
	// internodeTLS and sessionTLS, when set, dial those ports over TLS.
	internodeTLS, sessionTLS *tls.Config

	mu       sync.Mutex
	clients  map[string]*redis.Client
	sessions map[string]bool // addresses of session nodes (markSessions)
}

func newPool(timeout time.Duration) *pool {
	return &pool{timeout: timeout, clients: map[string]*redis.Client{}, sessions: map[string]bool{}}
}

// markSessions records which addresses are sessions' client ports, which
// take no cluster secret and their own TLS setting; registryctl learns
// them from NODES before it dials any.
func (p *pool) markSessions(members []proto.Member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range members {
		if p.sessions[m.Addr] {
			continue
		}
		p.sessions[m.Addr] = true
		if c, ok := p.clients[m.Addr]; ok {
			_ = c.Close()
			delete(p.clients, m.Addr)
		}
	}
}

func (p *pool) client(addr string) *redis.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clients[addr]
	if !ok {
		user, secret, tlsCfg := "", p.secret, p.internodeTLS
		if p.sessions[addr] {
			user, secret, tlsCfg = p.user, p.password, p.sessionTLS
		}
		c = redis.NewClient(&redis.Options{
			Addr:                  addr,
			Username:              user,
			Password:              secret,
			TLSConfig:             tlsCfg,
			Protocol:              2,
			DisableIdentity:       true,
			DialTimeout:           min(p.timeout, 2*time.Second),
			ReadTimeout:           p.timeout,
			WriteTimeout:          p.timeout,
			ContextTimeoutEnabled: true,
			// go-redis reads 0 as "3 retries" and retries dials 5
			// times; registryctl moves on to the next node itself.
			MaxRetries:               -1,
			DialerRetries:            1,
			PoolSize:                 2,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
		p.clients[addr] = c
	}
	return c
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		_ = c.Close()
	}
	clear(p.clients)
}

// call sends one command to addr. An error reply comes back as a proto
// sentinel error (see replyError); anything else means the node did not
// answer.
func (p *pool) call(ctx context.Context, addr string, args ...any) (any, error) {
	v, err := p.client(addr).Do(ctx, args...).Result()
	if err == nil {
		return v, nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.Nil) {
		return nil, p.authHint(addr, &replyError{err: proto.FromRESP(rerr.Error())})
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return nil, fmt.Errorf("%s: %w", addr, err)
}

// authHint turns a refusal to authenticate into an error that tells the
// operator what to pass; other errors come back as they are.
func (p *pool) authHint(addr string, err *replyError) error {
	noAuth, wrong := errors.Is(err, proto.ErrNoAuth), errors.Is(err, proto.ErrWrongPass)
	if !noAuth && !wrong {
		return err
	}
	p.mu.Lock()
	session := p.sessions[addr]
	p.mu.Unlock()
	switch {
	case session:
		err.hint = fmt.Sprintf("session %s refused registryctl (%s): pass --%s (and --%s) or set SLOTREG_REQUIREPASS", addr, err.Error(), flagPassword, flagUser)
	case noAuth:
		err.hint = fmt.Sprintf("%s requires the cluster secret: pass --%s or set SLOTREG_CLUSTER_SECRET", addr, flagClusterSecret)
	default:
		err.hint = fmt.Sprintf("%s refused the cluster secret given (%s): check --%s or SLOTREG_CLUSTER_SECRET", addr, err.Error(), flagClusterSecret)
	}
	return err
}

// replyError is an error reply from a node (it answered, and said no), as
// opposed to a node that did not answer.
type replyError struct {
	err  error  // a proto sentinel error
	hint string // what to do about it, when registryctl knows (authHint)
}

// Error is the reply's text without its RESP prefix ("move refused: ..."),
// or the hint when there is one.
func (e *replyError) Error() string {
	if e.hint != "" {
		return e.hint
	}
	var pe *proto.Error
	if errors.As(e.err, &pe) {
		return pe.Detail
	}
	return e.err.Error()
}

func (e *replyError) Unwrap() error { return e.err }

func isReply(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}

// noMetaError says that no meta node answered at all.
type noMetaError struct {
	tried []string
	last  error
}

func (e *noMetaError) Error() string {
	return fmt.Sprintf("no meta node reachable (tried %s): %v", strings.Join(e.tried, ", "), e.last)
}

func (e *noMetaError) Unwrap() error { return e.last }

// metaConn talks to the meta group: reads go to any meta (the leader
// first, once known), writes go to the leader through a
// metaclient.Leader, the one follower of the meta leader that data and
// session nodes use too.
type metaConn struct {
	addrs []string
	pool  *pool
	lead  *metaclient.Leader

	mu     sync.Mutex
	leader string // the last meta that served a write
	good   string // the last meta that answered a read
}

// order lists the metas to try: the known leader, the last that
// answered, then the configured ones.
func (m *metaConn) order() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, a := range append([]string{m.leader, m.good}, m.addrs...) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// read sends a command any meta answers (TABLE, NODES): the first meta
// that answers gives the reply, error replies included. Each meta gets
// the per-request timeout, so one that hangs costs that long, and the
// next is asked.
func (m *metaConn) read(ctx context.Context, args ...any) (any, error) {
	var tried []string
	var last error
	for _, addr := range m.order() {
		actx, cancel := context.WithTimeout(ctx, m.pool.timeout)
		v, err := m.pool.call(actx, addr, args...)
		cancel()
		if err == nil || isReply(err) {
			if err == nil {
				m.mu.Lock()
				m.good = addr
				m.mu.Unlock()
			}
			return v, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("meta %s: %w", addr, ctx.Err())
		}
		tried, last = append(tried, addr), err
	}
	return nil, &noMetaError{tried: tried, last: last}
}

// write sends a command only the meta leader serves, through
// metaclient.Leader: it follows NOTLEADER to the leader, moves on from a
// meta that does not answer (each gets the per-request timeout), and
// while metas answer but none leads (an election, a new leader taking
// over) asks again for up to noLeader. Another error reply is returned
// as a refusal; no meta answering at all is a noMetaError.
func (m *metaConn) write(ctx context.Context, noLeader time.Duration, args ...any) (any, error) {
	v, err := m.lead.DoWait(ctx, noLeader, args...)
	if err == nil {
		addr := m.lead.Current()
		m.mu.Lock()
		m.leader, m.good = addr, addr
		m.mu.Unlock()
		return v, nil
	}
	var re *metaclient.ReplyError
	switch {
	case ctx.Err() != nil:
		return nil, err
	case !errors.As(err, &re):
		m.mu.Lock()
		m.leader = ""
		m.mu.Unlock()
		return nil, &noMetaError{tried: m.addrs, last: err}
	case errors.Is(err, proto.ErrNotLeader), errors.Is(err, proto.ErrUnavailable):
		return nil, err // no meta leader after noLeader
	}
	return nil, m.pool.authHint(re.Addr, &replyError{err: re.Err})
}

// leaderAddr returns the meta leader's address, found through a dry-run
// REBALANCE: the one read-only command that only the leader serves.
func (m *metaConn) leaderAddr(ctx context.Context, noLeader time.Duration) (string, error) {
	if _, err := m.write(ctx, noLeader, (&proto.Rebalance{MaxMoves: 1, DryRun: true}).Args()...); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
