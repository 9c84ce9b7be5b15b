// Command registry runs one slotreg node: meta, data or session, or all of
// them in one process for local use (dev).
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/console"
	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/gcfloor"
	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/sessionserver"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "registry",
		Usage: "a sharded service registry that speaks RESP",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"SLOTREG_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"SLOTREG_LOG_LEVEL"}},
			flagConfig,
		},
		Commands: []*cli.Command{metaCommand(), dataCommand(), sessionCommand(), nodeCommand(), devCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

func logger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	log, err := obs.NewLogger(w, c.String("log-format"), c.String("log-level"))
	if err != nil {
		return nil, err
	}
	// go-redis reports every failed dial to a node that is down; the
	// nodes log what matters themselves, so its lines go to debug.
	redis.SetLogger(redisLogger{log})
	return log, nil
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parsePeers reads "id=raftaddr,id=raftaddr".
func parsePeers(s string) ([]meta.Peer, error) {
	var peers []meta.Peer
	for _, p := range splitList(s) {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", p)
		}
		peers = append(peers, meta.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

var (
	flagID   = &cli.StringFlag{Name: "id", Usage: "node id, unique in the cluster"}
	flagMeta = &cli.StringFlag{Name: "meta", Usage: "meta RPC addresses, comma separated", EnvVars: []string{"SLOTREG_META"}}
	flagHTTP = &cli.StringFlag{Name: "http", Usage: "address for /metrics, /healthz and /readyz, and on meta the web console at /ui/ (empty: off)"}
	// flagAdminPassword lets the web console's actions through.
	flagAdminPassword = &cli.StringFlag{Name: "admin-password", EnvVars: []string{"SLOTREG_ADMIN_PASSWORD"},
		Usage: "password the web console (/ui/ on --http) asks for its actions (move a slot, drain, rebalance); the cluster secret works too"}
	// flagPprof adds Go's profiler to the HTTP endpoint, as etcd's
	// --enable-pprof does: off by default, since a profile exposes code
	// paths and costs CPU while it runs.
	flagPprof = &cli.BoolFlag{Name: "pprof", Usage: "serve Go's profiler at /debug/pprof/ on the --http endpoint", EnvVars: []string{"SLOTREG_PPROF"}}
	flagBeat  = &cli.DurationFlag{Name: "heartbeat", Value: 500 * time.Millisecond, Usage: "how often to renew the lease with meta"}
	flagDC    = &cli.StringFlag{Name: "datacenter", Value: proto.DefaultDatacenter, EnvVars: []string{"SLOTREG_DATACENTER"},
		Usage: "the datacenter this cluster is (every node of a cluster names the same one)"}
)

// running is a node a role's start function built, as serve needs it.
type running struct {
	// stop closes the node; how may depend on the signal.
	stop func(os.Signal) error
	// ready answers /readyz: whether the node serves, and if not, why.
	ready func() (bool, string)
	// routes are more HTTP routes (a session's config pull endpoint).
	routes  map[string]http.Handler
	metrics []prometheus.Gatherer
	// announce, when set, is called once the HTTP endpoint is up, with
	// its address ("" without --http): dev prints its banner then.
	announce func(httpAddr string)
}

// readyWhen is a readiness probe: ready while ok holds, else not, for why.
func readyWhen(ok func() bool, why string) func() (bool, string) {
	return func() (bool, string) {
		if !ok() {
			return false, why
		}
		return true, ""
	}
}

// roleCommand is the skeleton every role shares: the config file read
// before the flags are used, the role's flags followed by its security
// flags, then logger, security, start, and serve until a signal.
// internode says the role has inter-node listeners (and so takes the
// secret to also accept and serves inter-node TLS); client that it has a
// client listener.
func roleCommand(name, usage string, internode, client bool, flags []cli.Flag,
	start func(c *cli.Context, log *slog.Logger, sec *security) (*running, error)) *cli.Command {
	return &cli.Command{
		Name:   name,
		Usage:  usage,
		Before: applyConfig,
		Flags:  append(append(flags, flagGCFloor), securityFlags(internode, client)...),
		Action: func(c *cli.Context) error {
			log, err := logger(c, os.Stderr)
			if err != nil {
				return err
			}
			sec, err := loadSecurity(c, internode)
			if err != nil {
				return err
			}
			if gc := tuneGC(c, log); gc != nil {
				defer gc.Stop()
			}
			r, err := start(c, log, sec)
			if err != nil {
				return err
			}
			return serve(c, log, r)
		},
	}
}

func metaCommand() *cli.Command {
	return roleCommand("meta", "run a meta node: membership and the slot table, on Raft", true, false, metaFlags(), startMeta)
}

func metaFlags() []cli.Flag {
	return []cli.Flag{
		flagID,
		&cli.StringFlag{Name: "raft", Usage: "Raft listen address", Value: "127.0.0.1:9700"},
		&cli.StringFlag{Name: "rpc", Usage: "RPC listen address (heartbeats, registryctl)", Value: "127.0.0.1:9710"},
		&cli.StringFlag{Name: "advertise-raft", Usage: "Raft address peers dial (default: --raft)"},
		&cli.StringFlag{Name: "advertise-rpc", Usage: "RPC address others dial (default: --rpc)"},
		&cli.StringFlag{Name: "peers", Usage: "all voters as id=raftaddr,... (empty: a single voter)"},
		&cli.StringFlag{Name: "data-dir", Usage: "where the Raft log and snapshots live"},
		&cli.DurationFlag{Name: "lease", Value: 3 * time.Second, Usage: "how long a data or session node may miss heartbeats before it is evicted"},
		&cli.IntFlag{Name: "replicas", Value: 2, Usage: "copies of each slot (leader + followers)"},
		&cli.BoolFlag{Name: "auto-rebalance", Usage: "move slot leaders to new data nodes by themselves, a few at a time"},
		&cli.IntFlag{Name: "max-moves", Value: 4, Usage: "slot moves in progress at once under --auto-rebalance"},
		&cli.DurationFlag{Name: "move-timeout", Value: 30 * time.Second, Usage: "a slot move not finished in this time is cancelled"},
		flagDC,
		&cli.StringFlag{Name: "remote-datacenters", EnvVars: []string{"SLOTREG_REMOTE_DATACENTERS"},
			Usage: "the other datacenters' meta RPC addresses, NAME=HOST:PORT[,HOST:PORT][;NAME=...]: data nodes sync every slot with theirs"},
		flagHTTP, flagPprof, flagAdminPassword,
		&cli.BoolFlag{Name: flagTLSClient, EnvVars: []string{"SLOTREG_TLS_CLIENT"},
			Usage: "the sessions serve clients over TLS (their --tls-client): the web console dials them so, trusting --tls-ca"},
	}
}

func startMeta(c *cli.Context, log *slog.Logger, sec *security) (*running, error) {
	_, r, err := newMeta(c, log, sec)
	return r, err
}

// newMeta starts the meta node the flags describe.
func newMeta(c *cli.Context, log *slog.Logger, sec *security) (*meta.Node, *running, error) {
	peers, err := parsePeers(c.String("peers"))
	if err != nil {
		return nil, nil, err
	}
	n, err := meta.New(meta.Config{
		NodeID: c.String("id"), RaftAddr: c.String("raft"), RPCAddr: c.String("rpc"),
		AdvertiseRaft: c.String("advertise-raft"), AdvertiseRPC: c.String("advertise-rpc"),
		DataDir: c.String("data-dir"), Peers: peers, Lease: c.Duration("lease"),
		Replicas: c.Int("replicas"), AutoRebalance: c.Bool("auto-rebalance"),
		MaxMoves: c.Int("max-moves"), MoveTimeout: c.Duration("move-timeout"), Logger: log,
		Datacenter: c.String("datacenter"), RemoteDatacenters: c.String("remote-datacenters"),
		Secret: sec.secret, ServerTLS: sec.internode, PeerTLS: sec.peer,
	})
	if err != nil {
		return nil, nil, err
	}
	hasLeader := func() bool {
		_, err := n.WaitForLeader(instant())
		return err == nil
	}
	con, err := newConsole(c, log, sec, []string{n.RPCAddr()})
	if err != nil {
		n.Close()
		return nil, nil, err
	}
	return n, &running{stop: func(os.Signal) error { con.Close(); return n.Close() }, ready: readyWhen(hasLeader, "no meta leader"),
		routes: map[string]http.Handler{"/ui/": con.Handler()}, metrics: []prometheus.Gatherer{n.Metrics()}}, nil
}

func dataCommand() *cli.Command {
	return roleCommand("data", "run a data node: leads and follows slots of the table", true, false, dataFlags(""), startData)
}

// dataFlags are a data node's flags; its listen and advertise flags take
// prefix (`registry node` has them as --data-listen and --data-advertise,
// beside the session's).
func dataFlags(prefix string) []cli.Flag {
	return []cli.Flag{
		flagID, flagMeta, flagHTTP, flagPprof, flagBeat,
		&cli.StringFlag{Name: prefix + "listen", Usage: "inter-node listen address", Value: "127.0.0.1:9800"},
		&cli.StringFlag{Name: prefix + "advertise", Usage: "address sessions dial (default: --" + prefix + "listen)"},
		&cli.IntFlag{Name: "oplog-size", Value: dataserver.DefaultOpLogSize, Usage: "op-log entries kept per slot; a follower further behind gets a snapshot"},
		&cli.IntFlag{Name: "gc-percent", Value: 50, EnvVars: []string{"SLOTREG_GC_PERCENT"},
			Usage: "Go GC percent (as GOGC; GOGC in the environment wins unless this is given): lower keeps RSS nearer the live heap at some CPU"},
		&cli.DurationFlag{Name: "reconcile-timeout", Value: 3 * time.Second, Usage: "how long a new slot leader waits for the sessions to reconcile before it serves the slot"},
		&cli.DurationFlag{Name: "session-grace", Value: 3 * time.Second, Usage: "how long a session may be missing from meta's list before this node drops its connection-bound publishers (a live session evicted by mistake joins again within it)"},
		&cli.DurationFlag{Name: "replica-ack-timeout", Value: time.Second, Usage: "how long a TTL write waits for a follower to have it"},
		&cli.BoolFlag{Name: "drain-on-stop", Value: true, Usage: "on SIGTERM, hand every led slot to another node before exiting"},
		&cli.DurationFlag{Name: "drain-timeout", Value: 30 * time.Second, Usage: "longest wait for the drain on SIGTERM"},
		&cli.Int64Flag{Name: dataserver.LimitMessageSize, Value: dataserver.DefaultMaxMessageSize, EnvVars: []string{envName(dataserver.LimitMessageSize)},
			Usage: "largest inter-node request, in bytes; a peer announcing more is disconnected"},
		flagDC,
		&cli.DurationFlag{Name: "remote-expire", EnvVars: []string{"SLOTREG_REMOTE_EXPIRE"},
			Usage: "drop a remote datacenter's publishers from a slot once its leader there went unheard this long (0: keep them until it is back)"},
	}
}

func startData(c *cli.Context, log *slog.Logger, sec *security) (*running, error) {
	_, r, err := newData(c, log, sec, "")
	return r, err
}

// newData starts the data node the flags describe (with prefix, see
// dataFlags).
func newData(c *cli.Context, log *slog.Logger, sec *security, prefix string) (*dataserver.Node, *running, error) {
	n, err := dataserver.New(dataserver.Config{
		NodeID: c.String("id"), Addr: c.String(prefix + "listen"), Advertise: c.String(prefix + "advertise"),
		Metas: splitList(c.String("meta")), Heartbeat: c.Duration("heartbeat"),
		OpLogSize: c.Int("oplog-size"), ReconcileTimeout: c.Duration("reconcile-timeout"),
		SessionGrace:      c.Duration("session-grace"),
		ReplicaAckTimeout: c.Duration("replica-ack-timeout"), MaxMessageSize: c.Int64(dataserver.LimitMessageSize), Logger: log,
		Datacenter: c.String("datacenter"), RemoteExpire: c.Duration("remote-expire"),
		Secret: sec.secret, ServerTLS: sec.internode, PeerTLS: sec.peer,
	})
	if err != nil {
		return nil, nil, err
	}
	stop := func(sig os.Signal) error {
		// SIGTERM hands the slots off first, so nothing waits for a
		// lease to lapse and nothing is lost; SIGINT (a whole cluster
		// going down) just leaves.
		if sig == syscall.SIGTERM && c.Bool("drain-on-stop") {
			ctx, cancel := context.WithTimeout(context.Background(), c.Duration("drain-timeout"))
			if err := n.Drain(ctx); err != nil {
				log.Warn("stopping without a full drain", "err", err)
			}
			cancel()
		}
		return n.Close()
	}
	hasTable := func() bool { return n.Table() != nil }
	return n, &running{stop: stop, ready: readyWhen(hasTable, "no slot table yet"), metrics: []prometheus.Gatherer{n.Metrics()}}, nil
}

func sessionCommand() *cli.Command {
	return roleCommand("session", "run a session node: holds client connections (RESP)", false, true, sessionFlags(), startSession)
}

func sessionFlags() []cli.Flag {
	return append([]cli.Flag{
		flagID, flagMeta, flagHTTP, flagPprof, flagBeat,
		&cli.StringFlag{Name: "listen", Usage: "client listen address", Value: "127.0.0.1:9600"},
		&cli.StringFlag{Name: "advertise", Usage: "client address recorded in meta (default: --listen)"},
		&cli.DurationFlag{Name: "write-timeout", Usage: "how long a write or lookup may wait for its slot leader (default: meta's lease + 0.9 s, so a client has its answer within lease + 1 s)"},
		&cli.DurationFlag{Name: "reconcile-interval", Value: 5 * time.Second, Usage: "how often every slot leader's view of this session's publishers is checked"},
		flagRequirePass, flagUsersFile,
		&cli.DurationFlag{Name: "shutdown-grace", Value: 5 * time.Second, EnvVars: []string{"SLOTREG_SHUTDOWN_GRACE"},
			Usage: "on SIGTERM, how long clients have to go elsewhere before their connections are closed"},
		flagDC,
		&cli.StringFlag{Name: "zone", EnvVars: []string{"SLOTREG_ZONE"},
			Usage: "this session's zone in its datacenter (default: the datacenter's name); SCOPE zone shows a client the publishers of its zone"},
	}, sessionLimitFlags()...)
}

func startSession(c *cli.Context, log *slog.Logger, sec *security) (*running, error) {
	return newSession(c, log, sec, nil)
}

// newSession starts the session the flags describe; local are the data
// nodes of this process.
func newSession(c *cli.Context, log *slog.Logger, sec *security, local []inproc.Data) (*running, error) {
	auth, err := clientAuth(c)
	if err != nil {
		return nil, err
	}
	n, err := sessionserver.New(sessionserver.Config{
		NodeID: c.String("id"), Addr: c.String("listen"), Advertise: c.String("advertise"), Auth: auth,
		Metas: splitList(c.String("meta")), Heartbeat: c.Duration("heartbeat"),
		WriteTimeout: c.Duration("write-timeout"), ReconcileInterval: c.Duration("reconcile-interval"),
		Limits: sessionLimits(c), Logger: log, Datacenter: c.String("datacenter"), Zone: c.String("zone"),
		ClusterSecret: sec.secret.Current, ServerTLS: sec.client, PeerTLS: sec.peer, Local: local,
	})
	if err != nil {
		return nil, err
	}
	// SIGTERM tells the clients to go and gives them time to; SIGINT
	// closes at once.
	stop := func(s os.Signal) error {
		if s == syscall.SIGTERM {
			return n.Shutdown(c.Duration("shutdown-grace"))
		}
		return n.Close()
	}
	return &running{stop: stop, ready: readyWhen(n.Ready, "slot table incomplete"),
		routes: n.HTTPHandlers(), metrics: []prometheus.Gatherer{n.Metrics()}}, nil
}

// instant is a context that is already done: for readiness probes that
// must not wait.
func instant() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// serve serves /metrics (the node's registries), health and the node's
// routes when --http is set, and blocks until SIGINT or SIGTERM, then
// stops the node.
func serve(c *cli.Context, log *slog.Logger, r *running) error {
	var hs *obs.Server
	if addr := c.String("http"); addr != "" {
		routes := r.routes
		cfg, err := adminTLS(c)
		if c.Bool("pprof") {
			routes = withPprof(routes)
		}
		if err == nil {
			hs, err = obs.ServeTLS(addr, cfg, r.ready, routes, r.metrics...)
		}
		if err != nil {
			r.stop(syscall.SIGINT)
			return err
		}
		log.Info("http endpoint", "addr", hs.Addr())
	}
	if r.announce != nil {
		addr := ""
		if hs != nil {
			addr = hs.Addr()
		}
		r.announce(addr)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	log.Info("stopping", "signal", s.String())
	if hs != nil {
		hs.Close()
	}
	return r.stop(s)
}

func devCommand() *cli.Command {
	return roleCommand("dev", "run a whole registry in one process: 1 meta, 2 data nodes, 1 session", true, true, []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: "127.0.0.1:9600", Usage: "client (session) address"},
		&cli.StringFlag{Name: "data-dir", Usage: "meta state directory (default: a temporary directory, removed on exit)"},
		&cli.StringFlag{Name: "http", Value: "127.0.0.1:9680", Usage: "address for the web console (/ui/), /metrics, /healthz and /readyz (empty: off)"},
		flagPprof, flagRequirePass, flagUsersFile, flagAdminPassword,
	}, startDev)
}

func startDev(c *cli.Context, log *slog.Logger, sec *security) (*running, error) {
	auth, err := clientAuth(c)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	dir, removeDir := c.String("data-dir"), func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "slotreg-dev-"); err != nil {
			ln.Close()
			return nil, err
		}
		tmp := dir
		removeDir = func() { os.RemoveAll(tmp) }
	}
	cl, err := cluster.Start(cluster.Options{
		Dir: dir, Data: 2, Sessions: 1, SessionListeners: []net.Listener{ln}, SessionAuth: auth, Logger: log, InProcess: true,
		Secret: sec.secret, InternodeTLS: sec.internode, PeerTLS: sec.peer, ClientTLS: sec.client,
	})
	if err != nil {
		removeDir()
		return nil, err
	}
	stop := func(os.Signal) error {
		defer removeDir()
		return cl.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = cl.WaitReady(ctx)
	cancel()
	if err != nil {
		stop(syscall.SIGINT)
		return nil, err
	}
	con, err := newConsole(c, log, sec, cl.Metas())
	if err != nil {
		stop(syscall.SIGINT)
		return nil, err
	}
	stopCluster := stop
	stop = func(s os.Signal) error {
		con.Close()
		return stopCluster(s)
	}
	sess := cl.Sessions[0]
	routes := maps.Clone(sess.HTTPHandlers())
	routes["/ui/"] = con.Handler()
	announce := func(httpAddr string) {
		fmt.Print(devBanner(sess.Addr(), cl, dir, httpAddr, sec.client != nil, c.Bool(flagTLSAdmin)))
		fmt.Println("ready")
	}
	metrics := []prometheus.Gatherer{cl.Meta.Metrics()}
	for _, d := range cl.Data {
		metrics = append(metrics, d.Metrics())
	}
	for _, s := range cl.Sessions {
		metrics = append(metrics, s.Metrics())
	}
	return &running{stop: stop, ready: readyWhen(sess.Ready, "slot table incomplete"), routes: routes, metrics: metrics,
		announce: announce}, nil
}

// newConsole is the web console of a meta (or dev) node, reading the
// cluster through metas.
func newConsole(c *cli.Context, log *slog.Logger, sec *security, metas []string) (*console.Console, error) {
	return console.New(console.Config{Metas: metas, Secret: sec.secret.Current, TLS: sec.peer, SessionTLS: sec.sessions,
		AdminPassword: c.String("admin-password"), Logger: log})
}

// devBanner is what `registry dev` prints before ready: where to connect
// and what it serves. Its first line is read by scripts and tests.
func devBanner(session string, cl *cluster.Local, dir, httpAddr string, clientTLS, adminTLS bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "slotreg dev: session on %s (meta %s, data %s and %s, state in %s)\n",
		session, cl.Meta.RPCAddr(), cl.Data[0].Addr(), cl.Data[1].Addr(), dir)
	_, port, _ := net.SplitHostPort(session)
	if clientTLS {
		fmt.Fprintf(&b, "  connect with: redis-cli --tls --cacert CA.pem -p %s\n", port)
	} else {
		fmt.Fprintf(&b, "  connect with: redis-cli -p %s\n", port)
	}
	if httpAddr != "" {
		scheme := "http"
		if adminTLS {
			scheme = "https"
		}
		fmt.Fprintf(&b, "  web console:  %s://%s/ui/\n", scheme, httpAddr)
		fmt.Fprintf(&b, "  metrics:      %s://%s/metrics\n", scheme, httpAddr)
	} else {
		b.WriteString("  web console:  off (start with --http 127.0.0.1:9680 to serve it)\n")
	}
	return b.String()
}

// Client authentication of a session (and of dev's session).
var (
	flagRequirePass = &cli.StringFlag{Name: "requirepass", EnvVars: []string{"SLOTREG_REQUIREPASS"},
		Usage: "clients must AUTH with this password (the default user)"}
	flagUsersFile = &cli.StringFlag{Name: "users-file", EnvVars: []string{"SLOTREG_USERS_FILE"},
		Usage: "clients must AUTH as one of these users: a file of \"name password\" or \"name sha256:<hex>\" lines"}
)

// clientAuth is the session's client authentication; nil when neither
// flag is set.
func clientAuth(c *cli.Context) (*sessionserver.Auth, error) {
	a, err := sessionserver.NewAuth(c.String("requirepass"), c.String("users-file"))
	if err != nil {
		return nil, fmt.Errorf("--users-file: %w", err)
	}
	return a, nil
}

// sessionLimitFlags are the per-client limits of a session; each can be
// set by flag or by env (SLOTREG_ and the flag's name in capitals).
func sessionLimitFlags() []cli.Flag {
	d := sessionserver.DefaultLimits()
	intFlag := func(name string, def int, usage string) cli.Flag {
		return &cli.IntFlag{Name: name, Value: def, Usage: usage, EnvVars: []string{envName(name)}}
	}
	return []cli.Flag{
		intFlag(sessionserver.LimitKeySize, d.MaxKeySize, "largest dataInfoId or registerId, in bytes (at most 512)"),
		intFlag(sessionserver.LimitDataSize, d.MaxDataSize, "largest publisher data, in bytes (at most 65536)"),
		intFlag(sessionserver.LimitPublishers, d.MaxPublishersPerConn, "connection-bound publishers one client connection may hold"),
		intFlag(sessionserver.LimitSubscriptions, d.MaxSubscriptionsPerConn, "dataInfoIds one client connection may subscribe to"),
		intFlag(sessionserver.LimitConnections, d.MaxConnections, "client connections the session accepts"),
		intFlag(sessionserver.LimitOutputBuffer, d.MaxOutputBuffer, "bytes of replies and pushes held for one client before the session waits on it"),
		intFlag(sessionserver.LimitRequestSize, d.MaxRequestSize, "largest client command, in bytes"),
		&cli.DurationFlag{Name: sessionserver.LimitClientStall, Value: d.ClientStallTimeout, EnvVars: []string{envName(sessionserver.LimitClientStall)},
			Usage: "a client that leaves its output unread this long is disconnected"},
	}
}

func sessionLimits(c *cli.Context) sessionserver.Limits {
	return sessionserver.Limits{
		MaxKeySize:              c.Int(sessionserver.LimitKeySize),
		MaxDataSize:             c.Int(sessionserver.LimitDataSize),
		MaxPublishersPerConn:    c.Int(sessionserver.LimitPublishers),
		MaxSubscriptionsPerConn: c.Int(sessionserver.LimitSubscriptions),
		MaxConnections:          c.Int(sessionserver.LimitConnections),
		MaxOutputBuffer:         c.Int(sessionserver.LimitOutputBuffer),
		MaxRequestSize:          c.Int(sessionserver.LimitRequestSize),
		ClientStallTimeout:      c.Duration(sessionserver.LimitClientStall),
	}
}

// envName is the environment variable that sets a flag: SLOTREG_ and the
// name in capitals with underscores.
func envName(flag string) string {
	return "SLOTREG_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withPprof adds net/http/pprof's handlers to routes.
func withPprof(routes map[string]http.Handler) map[string]http.Handler {
	out := map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
	for k, v := range routes {
		out[k] = v
	}
	return out
}

// flagGCFloor is every role's: see internal/gcfloor.
var flagGCFloor = &cli.IntFlag{Name: "gc-floor", Value: 64, EnvVars: []string{"SLOTREG_GC_FLOOR"},
	Usage: "MiB: the Go collector's headroom is at least this, so a small heap is not collected many times a second; a heap above this*100/percent keeps the GC percent as set (0: the percent alone)"}

// gcPlan decides the collector's settings from the flags: the percent to
// set (0: leave the runtime's, which is current) and the floor in MiB (0:
// none). GOGC in the environment is left alone unless a flag is given; a
// data node's default --gc-percent gives way to GOGC, a given one wins.
func gcPlan(c *cli.Context, envGOGC bool, current int) (percent, base, floorMiB int) {
	if envGOGC && !c.IsSet("gc-percent") && !c.IsSet("gc-floor") {
		return 0, current, 0
	}
	base = current
	if p := c.Int("gc-percent"); p > 0 && (!envGOGC || c.IsSet("gc-percent")) {
		percent, base = p, p
	}
	if base <= 0 { // the collector is off
		return percent, base, 0
	}
	return percent, base, max(c.Int("gc-floor"), 0)
}

// tuneGC applies gcPlan and starts keeping the headroom above the floor.
func tuneGC(c *cli.Context, log *slog.Logger) *gcfloor.Tuner {
	current := debug.SetGCPercent(100)
	debug.SetGCPercent(current)
	percent, base, floor := gcPlan(c, os.Getenv("GOGC") != "", current)
	if percent > 0 {
		debug.SetGCPercent(percent)
	}
	if floor == 0 {
		return nil
	}
	log.Debug("gc headroom floor", "percent", base, "floor_mib", floor)
	return gcfloor.Start(base, uint64(floor)<<20, time.Second)
}
