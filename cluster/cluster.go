// Package cluster starts a whole slotreg cluster inside one process: one
// meta voter, data nodes and session nodes on loopback. `registry dev`
// runs it, and tests use it as their in-process cluster. It owns no logic
// of its own beyond wiring and waiting.
//
// It sits above every role package (meta, dataserver, sessionserver) and
// nothing below them may import it: internal/ holds only leaf libraries
// the roles share, so no import arrow runs back up from there.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/sessionserver"
	"github.com/slotreg/slotreg/slot"
)

// Options says what to start.
type Options struct {
	Dir      string // meta state directory
	Data     int    // data nodes (default 2)
	Sessions int    // session nodes (default 1)
	// SessionListeners are open listeners for the sessions, in order;
	// sessions without one listen on 127.0.0.1:0.
	SessionListeners []net.Listener
	Lease            time.Duration // meta lease (default meta's)
	Heartbeat        time.Duration // data/session heartbeat (default theirs)
	// SessionLimits are every session's client limits (zero: defaults).
	SessionLimits sessionserver.Limits
	// SessionAuth, when set, makes every session's clients AUTH.
	SessionAuth *sessionserver.Auth
	// Secret is the cluster secret every node gets; none when empty.
	Secret netsec.Secret
	// InternodeTLS, when set, serves the meta (RPC and Raft) and data
	// listeners over TLS; PeerTLS is what the nodes dial them with. Set
	// both or neither.
	InternodeTLS, PeerTLS *tls.Config
	// ClientTLS, when set, serves the sessions' client listeners over TLS.
	ClientTLS *tls.Config
	Logger    *slog.Logger
	// InProcess has each session reach the data nodes started before it
	// by calls, not through their ports (internal/inproc), as `registry
	// node` and `registry dev` do.
	InProcess bool
}

// Local is a running in-process cluster.
type Local struct {
	Meta     *meta.Node
	Data     []*dataserver.Node
	Sessions []*sessionserver.Node
	opts     Options
}

// Start starts the cluster; on error everything started is stopped.
func Start(o Options) (*Local, error) {
	if o.Data == 0 {
		o.Data = 2
	}
	if o.Sessions == 0 {
		o.Sessions = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	l := &Local{opts: o}
	m, err := meta.New(meta.Config{
		NodeID: "meta1", RaftAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", DataDir: o.Dir,
		Lease: o.Lease, AutoRebalance: true, Logger: o.Logger,
		Secret: o.Secret, ServerTLS: o.InternodeTLS, PeerTLS: o.PeerTLS,
		RaftHeartbeatTimeout: 200 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		closeAll(o.SessionListeners)
		return nil, err
	}
	l.Meta = m
	for i := 0; i < o.Data; i++ {
		if _, err := l.AddData(fmt.Sprintf("data%d", i+1)); err != nil {
			closeAll(o.SessionListeners)
			l.Close()
			return nil, err
		}
	}
	for i := 0; i < o.Sessions; i++ {
		var ln net.Listener
		if i < len(o.SessionListeners) {
			ln = o.SessionListeners[i]
		}
		if _, err := l.AddSession(fmt.Sprintf("session%d", i+1), ln); err != nil {
			closeAll(o.SessionListeners[i+1:])
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// Metas is the meta RPC address list nodes are given.
func (l *Local) Metas() []string { return []string{l.Meta.RPCAddr()} }

// AddData starts one more data node.
func (l *Local) AddData(id string) (*dataserver.Node, error) {
	d, err := dataserver.New(dataserver.Config{
		NodeID: id, Addr: "127.0.0.1:0", Metas: l.Metas(), Heartbeat: l.opts.Heartbeat, Logger: l.opts.Logger,
		Secret: l.opts.Secret, ServerTLS: l.opts.InternodeTLS, PeerTLS: l.opts.PeerTLS,
	})
	if err != nil {
		return nil, err
	}
	l.Data = append(l.Data, d)
	return d, nil
}

// AddSession starts one more session node, on ln if given.
func (l *Local) AddSession(id string, ln net.Listener) (*sessionserver.Node, error) {
	cfg := sessionserver.Config{NodeID: id, Listener: ln, Metas: l.Metas(), Heartbeat: l.opts.Heartbeat, Logger: l.opts.Logger,
		Limits: l.opts.SessionLimits, Auth: l.opts.SessionAuth,
		ClusterSecret: l.opts.Secret.Current, ServerTLS: l.opts.ClientTLS, PeerTLS: l.opts.PeerTLS}
	if l.opts.InProcess {
		for _, d := range l.Data {
			cfg.Local = append(cfg.Local, d)
		}
	}
	if ln == nil {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := sessionserver.New(cfg)
	if err != nil {
		return nil, err
	}
	l.Sessions = append(l.Sessions, s)
	return s, nil
}

// WaitReady waits until every session routes every slot over a table
// that holds every data node started, with the leaders spread evenly and
// no slot moving (meta runs with auto-rebalance).
func (l *Local) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, s := range l.Sessions {
			t := s.Table()
			if t == nil || len(t.Nodes) != len(l.Data) || !s.Ready() || !balanced(t) {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// balanced says whether leaders are spread evenly and nothing is moving.
func balanced(t *slot.Table) bool {
	if len(t.Moving()) > 0 || len(t.Nodes) == 0 {
		return false
	}
	lo, hi := slot.Count, 0
	for _, n := range t.Nodes {
		c := len(t.LedBy(n.ID))
		lo, hi = min(lo, c), max(hi, c)
	}
	return hi-lo <= 1
}

// Close stops sessions first (their clients' publishers are removed
// while the data nodes still answer), then data nodes, then meta.
func (l *Local) Close() error {
	var errs []error
	for _, s := range l.Sessions {
		errs = append(errs, s.Close())
	}
	for _, d := range l.Data {
		errs = append(errs, d.Close())
	}
	if l.Meta != nil {
		errs = append(errs, l.Meta.Close())
	}
	return errors.Join(errs...)
}
