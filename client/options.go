package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/proto"
)

// Options configures a Client. Only Sessions is required.
type Options struct {
	// Sessions are the session nodes' client addresses (HOST:PORT), in
	// order of preference: the client starts with the first and, when the
	// session it holds fails, moves on to the next (wrapping around). To
	// spread a fleet over the sessions, give each process its own order.
	Sessions []string
	// Username and Password are sent with AUTH when a connection opens.
	Username string
	Password string
	// TLS, when set, wraps every connection in TLS; an empty ServerName
	// is filled in from the session's host.
	TLS *tls.Config
	// ClientName is set on every connection (CLIENT SETNAME), so that
	// operators can tell clients apart.
	ClientName string
	// Scope is which publishers Lookup, Subscribe and Watch see (DESIGN.md,
	// "Datacenters and zones"): ScopeDatacenter (the default) those of
	// the session's datacenter, ScopeZone those registered through
	// sessions of the zone of the session the client is on, ScopeGlobal
	// those of every datacenter. The client sends SCOPE on every
	// connection it opens to a session, so the scope holds on every
	// session it fails over to; a session that refuses SCOPE (one older
	// than datacenters) is one it cannot use.
	Scope Scope

	// DialTimeout bounds opening one connection (default 2s).
	DialTimeout time.Duration
	// CommandTimeout bounds one reply on the registration connection
	// (default 5s). It must exceed the session's own wait for a slot
	// leader (its --write-timeout, meta's lease + 1 s by default, 4 s): a
	// timeout here ends the connection, and with it every publisher the
	// client holds there. It is also how long a client waits on a session
	// that hangs (paused, cut off from its clients) before it goes to
	// another.
	CommandTimeout time.Duration
	// HealthCheckInterval is how often the client checks that the session
	// still answers and that its registration connection is the one it
	// registered on (default 1s). A session that dies outright is noticed
	// at once, through the subscription connection; the check catches
	// connections that hang.
	HealthCheckInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed attempts to
	// reach a session and between retries of a refused write (defaults
	// 50ms and 2s). The wait doubles per failure, with jitter.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// CloseTimeout bounds how long Close spends unregistering before it
	// drops the connections, which removes the publishers anyway
	// (default 5s).
	CloseTimeout time.Duration
	// LookupPoolSize is the number of connections Lookup may use at once
	// (default 4). Registrations never share them.
	LookupPoolSize int
	// Logger gets failovers at Info and details at Debug (default
	// slog.Default()).
	Logger *slog.Logger

	// Identity names this client as a lock owner (LOCK name owner). The
	// session knows a lock's holder only by it, so two clients with the
	// same Identity hold each other's locks: give every process its own.
	// The default is host/pid/random, unique per Client.
	Identity string
	// LockTTL is the TTL of every lock this client takes (default 15s).
	// A held lock is renewed every third of it; it lapses that long after
	// the client stops renewing (its process hangs, or the session is
	// cut off from meta). Between 100ms and 24h.
	LockTTL time.Duration
	// LockWaitChunk bounds one LOCK ... WAIT request (default and
	// maximum 10m, the session's limit): an AcquireLock that waits longer
	// asks again, at the end of the line if meta dropped its passed wait
	// first. A session that fails or hangs ends the wait at once (the
	// client closes the lock's connection with the link), so there is no
	// reason to keep it short.
	LockWaitChunk time.Duration
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, 2*time.Second)
	def(&o.CommandTimeout, 5*time.Second)
	def(&o.HealthCheckInterval, time.Second)
	def(&o.MinBackoff, 50*time.Millisecond)
	def(&o.MaxBackoff, 2*time.Second)
	def(&o.CloseTimeout, 5*time.Second)
	if o.LookupPoolSize == 0 {
		o.LookupPoolSize = 4
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def(&o.LockTTL, 15*time.Second)
	def(&o.LockWaitChunk, proto.MaxLockWait*time.Millisecond)
	if o.Identity == "" {
		o.Identity = defaultIdentity()
	}
}

// Scope is a view of the publishers: the zone, the datacenter or every
// datacenter.
type Scope = proto.Scope

// The scopes.
const (
	ScopeDatacenter = proto.ScopeDatacenter
	ScopeZone       = proto.ScopeZone
	ScopeGlobal     = proto.ScopeGlobal
)

// defaultIdentity is host/pid/random: unique per Client, and telling an
// operator reading LOCKINFO which process holds a lock.
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d/%08x", host, os.Getpid(), rand.Uint32())
}

// Validate says which field is wrong, if any. New calls it after filling
// in defaults.
func (o *Options) Validate() error {
	if len(o.Sessions) == 0 {
		return errors.New("client options: Sessions is empty: give at least one session address")
	}
	for i, s := range o.Sessions {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("client options: Sessions[%d] %q is not HOST:PORT: %w", i, s, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"DialTimeout", o.DialTimeout}, {"CommandTimeout", o.CommandTimeout},
		{"HealthCheckInterval", o.HealthCheckInterval}, {"MinBackoff", o.MinBackoff},
		{"MaxBackoff", o.MaxBackoff}, {"CloseTimeout", o.CloseTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("client options: %s is negative (%v)", d.name, d.v)
		}
	}
	if o.MinBackoff > o.MaxBackoff {
		return fmt.Errorf("client options: MinBackoff %v exceeds MaxBackoff %v", o.MinBackoff, o.MaxBackoff)
	}
	if !slices.Contains(proto.Scopes[:], o.Scope) {
		return fmt.Errorf("client options: Scope %d is not ScopeDatacenter, ScopeZone or ScopeGlobal", o.Scope)
	}
	if o.LookupPoolSize < 0 {
		return fmt.Errorf("client options: LookupPoolSize is negative (%d)", o.LookupPoolSize)
	}
	if err := proto.CheckLockOwner(o.Identity); err != nil {
		return fmt.Errorf("client options: Identity: %w", err)
	}
	if ms := o.LockTTL.Milliseconds(); ms < proto.MinLockTTL || ms > proto.MaxLockTTL {
		return fmt.Errorf("client options: LockTTL %v is outside %dms to %dms", o.LockTTL, proto.MinLockTTL, proto.MaxLockTTL)
	}
	if ms := o.LockWaitChunk.Milliseconds(); ms < 1 || ms > proto.MaxLockWait {
		return fmt.Errorf("client options: LockWaitChunk %v is outside 1ms to %dms", o.LockWaitChunk, proto.MaxLockWait)
	}
	return nil
}

// backoff is the wait before retry number attempt (1 for the first):
// MinBackoff doubled per attempt up to MaxBackoff, of which the upper half
// is random. The fixed half keeps a flapping session from being hammered;
// the random half keeps many clients that lost the same session from
// arriving at the next one in step.
func (o *Options) backoff(attempt int) time.Duration {
	attempt = max(attempt, 1)
	d := o.MaxBackoff
	if attempt < 30 {
		if b := o.MinBackoff << (attempt - 1); b > 0 && b < d {
			d = b
		}
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// onConnect sends SCOPE on a new connection when the client's scope is
// not the session's default.
func (o *Options) onConnect(ctx context.Context, cn *redis.Conn) error {
	if o.Scope == ScopeDatacenter {
		return nil
	}
	if err := cn.Do(ctx, proto.CmdScope, o.Scope.String()).Err(); err != nil {
		return fmt.Errorf("SCOPE %s: %w", o.Scope, err)
	}
	return nil
}

// redisOptions are the go-redis options every connection to a session
// shares. RESP2 is what every session speaks; no CLIENT SETINFO round
// trip; go-redis must never retry on its own, since a retry may run on a
// new connection that holds none of this client's publishers or locks.
// Callers set ReadTimeout and PoolSize.
func (o *Options) redisOptions(addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		Dialer:                dial,
		Username:              o.Username,
		Password:              o.Password,
		ClientName:            o.ClientName,
		Protocol:              2,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialTimeout:           o.DialTimeout,
		DialerRetries:         1,
		WriteTimeout:          o.CommandTimeout,
		ContextTimeoutEnabled: true,
	}
}
