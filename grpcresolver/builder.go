package grpcresolver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/proto"
)

// Scheme is the target scheme a Builder answers by default:
// slotreg:///<dataInfoId>.
const Scheme = "slotreg"

// DefaultServiceConfig is the service config the resolver gives gRPC
// unless Options say otherwise: round robin over every publisher.
const DefaultServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// ErrBuilderClosed is what Build returns, and what a resolver reports to
// gRPC, once the Builder is closed.
var ErrBuilderClosed = errors.New("grpcresolver: builder is closed")

// Options configures a Builder.
type Options struct {
	// Client configures the slotreg client the builder subscribes
	// through for targets that name no session (slotreg:///svc). Its
	// Sessions may be empty if every target names its sessions, as in
	// slotreg://10.0.0.1:9600/svc or slotreg://10.0.0.1:9600,10.0.0.2:9600/svc;
	// such targets get a client of their own made from these options
	// with those sessions, shared by every target that names the same
	// list. ClientName defaults to "grpcresolver", Logger to Logger.
	Client client.Options
	// Shared, when set, is a client of the caller's that the builder
	// subscribes through for targets that name no session, instead of
	// making one from Client (whose Sessions must then be empty). The
	// builder never closes it; closing it ends every such resolver.
	Shared *client.Client
	// Scheme is the target scheme the builder answers (default Scheme).
	Scheme string
	// ServiceConfig is the service config JSON every resolver hands gRPC
	// (default DefaultServiceConfig).
	ServiceConfig string
	// NoServiceConfig makes resolvers hand gRPC no service config, so
	// the channel's own applies (grpc.WithDefaultServiceConfig, else
	// pick_first). A service config from the resolver would override
	// grpc.WithDefaultServiceConfig. It excludes ServiceConfig.
	NoServiceConfig bool
	// SubscribeTimeout is how long a new resolver waits for the
	// publishers' first state before it reports the failure to gRPC, so
	// RPCs fail with Unavailable (naming the session error) instead of
	// waiting out their deadlines. It reports again every
	// SubscribeTimeout until a state arrives; the subscription itself is
	// never given up (default 10s).
	SubscribeTimeout time.Duration
	// Logger gets skipped publisher data at Warn and resolver life at
	// Debug (default slog.Default()).
	Logger *slog.Logger
}

// Builder is a resolver.Builder for slotreg targets. Pass it to
// grpc.WithResolvers, or register it globally (Register). It is safe for
// concurrent use.
type Builder struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	clients map[string]*sharedClient // by session list; "" the default
	closed  bool

	bad atomic.Uint64 // publisher data skipped, see BadPublishers
}

// sharedClient is one slotreg client and the resolvers that use it.
type sharedClient struct {
	c     *client.Client
	refs  int
	owned bool // made by the builder, closed by it
	// pinned clients live until the builder closes; the others close
	// with the last resolver that uses them.
	pinned bool
}

// NewBuilder checks opts and makes the builder's default client (if
// Options.Client names sessions). The client connects in the background;
// NewBuilder does not wait for it.
func NewBuilder(opts Options) (*Builder, error) {
	if opts.Scheme == "" {
		opts.Scheme = Scheme
	}
	if opts.Scheme != strings.ToLower(opts.Scheme) {
		return nil, fmt.Errorf("grpcresolver options: Scheme %q has upper-case letters, which target parsing lower-cases", opts.Scheme)
	}
	if opts.NoServiceConfig && opts.ServiceConfig != "" {
		return nil, errors.New("grpcresolver options: ServiceConfig and NoServiceConfig are both set")
	}
	if opts.ServiceConfig == "" && !opts.NoServiceConfig {
		opts.ServiceConfig = DefaultServiceConfig
	}
	if opts.SubscribeTimeout < 0 {
		return nil, fmt.Errorf("grpcresolver options: SubscribeTimeout is negative (%v)", opts.SubscribeTimeout)
	}
	if opts.SubscribeTimeout == 0 {
		opts.SubscribeTimeout = 10 * time.Second
	}
	if opts.Shared != nil && len(opts.Client.Sessions) > 0 {
		return nil, errors.New("grpcresolver options: Shared and Client.Sessions are both set; give one")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client.Logger == nil {
		opts.Client.Logger = opts.Logger
	}
	if opts.Client.ClientName == "" {
		opts.Client.ClientName = "grpcresolver"
	}
	opts.Client.Sessions = append([]string(nil), opts.Client.Sessions...)
	b := &Builder{
		opts:    opts,
		log:     opts.Logger.With("component", "grpcresolver"),
		clients: make(map[string]*sharedClient),
	}
	switch {
	case opts.Shared != nil:
		b.clients[""] = &sharedClient{c: opts.Shared, pinned: true}
	case len(opts.Client.Sessions) > 0:
		c, err := client.New(opts.Client)
		if err != nil {
			return nil, fmt.Errorf("grpcresolver: %w", err)
		}
		b.clients[""] = &sharedClient{c: c, owned: true, pinned: true}
	}
	return b, nil
}

// Register makes a Builder (NewBuilder) and registers it with gRPC under
// its scheme, for every grpc.NewClient of the process. Like
// resolver.Register, call it at start-up, before any grpc.NewClient, and
// not concurrently with them. Prefer grpc.WithResolvers(b) where the
// dialling code is yours.
func Register(opts Options) (*Builder, error) {
	b, err := NewBuilder(opts)
	if err != nil {
		return nil, err
	}
	resolver.Register(b)
	return b, nil
}

// Scheme is the target scheme the builder answers.
func (b *Builder) Scheme() string { return b.opts.Scheme }

// BadPublishers counts the publisher data the builder's resolvers have
// skipped as unusable: each bad (registerId, data) once per resolver.
func (b *Builder) BadPublishers() uint64 { return b.bad.Load() }

// Build starts a resolver for target: slotreg:///<dataInfoId>, or
// slotreg://<session>[,<session>...]/<dataInfoId> to subscribe through
// those sessions instead of the builder's default ones. It returns at
// once; the addresses follow when the session pushes them.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	id := target.Endpoint()
	if err := proto.CheckKey(id); err != nil {
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.String(), err)
	}
	sessions, err := parseAuthority(target.URL.Host)
	if err != nil {
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.String(), err)
	}
	var sc *serviceconfig.ParseResult
	if !b.opts.NoServiceConfig && !opts.DisableServiceConfig {
		sc = cc.ParseServiceConfig(b.opts.ServiceConfig)
		if sc == nil {
			return nil, fmt.Errorf("grpcresolver: service config %s: gRPC could not parse it", b.opts.ServiceConfig)
		}
		if sc.Err != nil {
			return nil, fmt.Errorf("grpcresolver: service config %s: %w", b.opts.ServiceConfig, sc.Err)
		}
	}
	key := strings.Join(sessions, ",")
	c, err := b.acquire(key, sessions)
	if err != nil {
		return nil, fmt.Errorf("grpcresolver: target %q: %w", target.String(), err)
	}
	r := newResolver(b, cc, id, key, c, sc)
	b.log.Debug("resolver started", "dataInfoId", id, "sessions", key)
	return r, nil
}

// parseAuthority reads a target's authority: empty, or one or more
// session addresses separated by commas.
func parseAuthority(host string) ([]string, error) {
	if host == "" {
		return nil, nil
	}
	sessions := strings.Split(host, ",")
	for _, s := range sessions {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("authority names session %q, which is not HOST:PORT: %w", s, err)
		}
	}
	return sessions, nil
}

// acquire returns the client for a session list ("" the default) and
// counts one more resolver on it, making it if need be.
func (b *Builder) acquire(key string, sessions []string) (*client.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBuilderClosed
	}
	sc := b.clients[key]
	if sc == nil {
		if key == "" {
			return nil, errors.New("the target names no session and the builder has no default (Options.Client.Sessions and Options.Shared are empty)")
		}
		o := b.opts.Client
		o.Sessions = sessions
		c, err := client.New(o)
		if err != nil {
			return nil, err
		}
		sc = &sharedClient{c: c, owned: true}
		b.clients[key] = sc
	}
	sc.refs++
	return sc.c, nil
}

// release counts one resolver less on the client for key and closes a
// client nobody uses any more, unless it is pinned.
func (b *Builder) release(key string) {
	b.mu.Lock()
	sc := b.clients[key]
	if sc == nil {
		b.mu.Unlock()
		return
	}
	sc.refs--
	last := sc.refs == 0 && !sc.pinned && sc.owned
	if last {
		delete(b.clients, key)
	}
	b.mu.Unlock()
	if last {
		sc.c.Close()
	}
}

// Close closes every client the builder made (not Options.Shared),
// which ends the subscriptions of resolvers still open: they keep their
// last addresses and report ErrBuilderClosed. Build fails from then on.
// Close the gRPC channels first. Close is idempotent.
func (b *Builder) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var owned []*client.Client
	for _, sc := range b.clients {
		if sc.owned {
			owned = append(owned, sc.c)
		}
	}
	b.mu.Unlock()
	for _, c := range owned {
		c.Close()
	}
	return nil
}

func (b *Builder) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}
