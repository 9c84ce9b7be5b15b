package meta

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Defaults for the zero values of Config.
const (
	DefaultLease                = 3 * time.Second
	DefaultReplicas             = 2
	DefaultRaftHeartbeatTimeout = time.Second
	DefaultRaftElectionTimeout  = time.Second
	DefaultMaxMoves             = 4
	DefaultMoveTimeout          = 30 * time.Second
)

// Peer is one voter of the meta Raft group.
type Peer struct {
	ID       string // Raft server ID, the meta node's NodeID
	RaftAddr string // host:port other voters dial for Raft traffic
}

// Config configures a meta node. The zero value of every optional field
// means its default.
type Config struct {
	// NodeID is this node's Raft server ID; it must appear in Peers when
	// Peers is set.
	NodeID string
	// RaftListener is an already open listener for Raft traffic (tests
	// pass 127.0.0.1:0 listeners); the node takes ownership of it. When
	// nil, RaftAddr is listened on.
	RaftListener net.Listener
	RaftAddr     string
	// RPCListener is an already open listener for the RESP endpoint; when
	// nil, RPCAddr is listened on.
	RPCListener net.Listener
	// RPCAddr is the RESP address for heartbeats and registryctl.
	RPCAddr string
	// AdvertiseRaft and AdvertiseRPC are the addresses other nodes use to
	// reach this one; they default to the listeners' addresses (for Raft,
	// to this node's entry in Peers when there is one).
	AdvertiseRaft, AdvertiseRPC string
	// DataDir holds raft.db (log and stable store) and the snapshots.
	DataDir string
	// Peers are all voters including this node, identical on every voter;
	// empty means a single voter (this node).
	Peers []Peer
	// Lease is how long a data or session node may go without a heartbeat
	// before the leader removes it. Default DefaultLease.
	Lease time.Duration
	// Replicas is the number of copies of each slot (leader + followers)
	// the table is computed for. Only the first leader's value is used: it
	// enters the log once, so all voters agree. Default DefaultReplicas.
	Replicas int
	// Raft timing; defaults DefaultRaftHeartbeatTimeout and
	// DefaultRaftElectionTimeout. Tests use ~200ms.
	RaftHeartbeatTimeout, RaftElectionTimeout time.Duration
	// AutoRebalance lets the leader even out the slot leaders by itself:
	// it starts moves (slot.PlanMoves) whenever fewer than MaxMoves slots
	// are moving. Off by default; REBALANCE and MOVESLOT work either way.
	AutoRebalance bool
	// MaxMoves bounds the moves the leader starts by itself, for drains
	// and AutoRebalance: it starts none while MaxMoves or more slots are
	// moving, whoever started them. Default DefaultMaxMoves; at most
	// slot.Count.
	MaxMoves int
	// MoveTimeout is how long a move may stay in progress before the
	// leader cancels it (whether AutoRebalance is on or not). Default
	// DefaultMoveTimeout.
	MoveTimeout time.Duration
	// Secret is the cluster secret. When set, every RPC connection must
	// AUTH with it before any other command, every Raft connection opens
	// with the secret handshake (netsec.DialHandshake), and this node
	// uses it when it dials other metas. Empty: no authentication.
	Secret netsec.Secret
	// ServerTLS, when set, serves the RPC and Raft listeners over TLS.
	ServerTLS *tls.Config
	// PeerTLS, when set, is used to dial the other metas (Raft and RPC);
	// it must be set exactly when their listeners are TLS.
	PeerTLS *tls.Config
	// Logger receives the node's logs (Raft's own at Warn and above).
	// Default slog.Default().
	Logger *slog.Logger
	// Datacenter is the cluster's datacenter (default "dc1"): a data or
	// session node that says it is of another one is refused.
	Datacenter string
	// RemoteDatacenters are the other datacenters, with their meta
	// addresses, as --remote-datacenters spells them (proto.ParseRemotes):
	// this cluster's data nodes sync each slot with theirs.
	RemoteDatacenters string
}

// Validate reports the first field that is wrong, by name. Zero values of
// optional fields are valid (they mean the default).
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("meta config: NodeID is empty")
	}
	if strings.ContainsAny(c.NodeID, " \t\r\n") {
		return fmt.Errorf("meta config: NodeID %q contains white space", c.NodeID)
	}
	if err := proto.CheckPlace("datacenter", c.Datacenter, true); err != nil {
		return fmt.Errorf("meta config: %w", err)
	}
	if _, err := proto.ParseRemotes(c.RemoteDatacenters, cmp.Or(c.Datacenter, proto.DefaultDatacenter)); err != nil {
		return fmt.Errorf("meta config: RemoteDatacenters: %w", err)
	}
	if c.RaftListener == nil && c.RaftAddr == "" {
		return errors.New("meta config: RaftAddr is empty and no RaftListener is given")
	}
	if c.RPCListener == nil && c.RPCAddr == "" {
		return errors.New("meta config: RPCAddr is empty and no RPCListener is given")
	}
	for _, f := range []struct{ name, addr string }{
		{"RaftAddr", c.RaftAddr}, {"RPCAddr", c.RPCAddr},
		{"AdvertiseRaft", c.AdvertiseRaft}, {"AdvertiseRPC", c.AdvertiseRPC},
	} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return fmt.Errorf("meta config: %s %q is not host:port: %w", f.name, f.addr, err)
		}
	}
	if c.DataDir == "" {
		return errors.New("meta config: DataDir is empty")
	}
	if err := c.validatePeers(); err != nil {
		return err
	}
	if err := c.Secret.Validate(); err != nil {
		return fmt.Errorf("meta config: Secret: %w", err)
	}
	if err := netsec.CheckServerTLS(c.ServerTLS); err != nil {
		return fmt.Errorf("meta config: %w", err)
	}
	switch {
	case c.Lease < 0:
		return fmt.Errorf("meta config: Lease %v is negative", c.Lease)
	case c.Replicas < 0:
		return fmt.Errorf("meta config: Replicas %d is negative", c.Replicas)
	case c.RaftHeartbeatTimeout < 0:
		return fmt.Errorf("meta config: RaftHeartbeatTimeout %v is negative", c.RaftHeartbeatTimeout)
	case c.RaftElectionTimeout < 0:
		return fmt.Errorf("meta config: RaftElectionTimeout %v is negative", c.RaftElectionTimeout)
	case c.MaxMoves < 0 || c.MaxMoves > slot.Count:
		return fmt.Errorf("meta config: MaxMoves %d is not in 0..%d", c.MaxMoves, slot.Count)
	case c.MoveTimeout < 0:
		return fmt.Errorf("meta config: MoveTimeout %v is negative", c.MoveTimeout)
	}
	d := c.withDefaults()
	if d.RaftElectionTimeout < d.RaftHeartbeatTimeout {
		return fmt.Errorf("meta config: RaftElectionTimeout %v is shorter than RaftHeartbeatTimeout %v",
			d.RaftElectionTimeout, d.RaftHeartbeatTimeout)
	}
	if d.RaftHeartbeatTimeout < 5*time.Millisecond {
		return fmt.Errorf("meta config: RaftHeartbeatTimeout %v is below 5ms", d.RaftHeartbeatTimeout)
	}
	if d.Lease < 4*time.Millisecond {
		return fmt.Errorf("meta config: Lease %v is below 4ms", d.Lease)
	}
	return nil
}

func (c *Config) validatePeers() error {
	if len(c.Peers) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(c.Peers))
	self := false
	for i, p := range c.Peers {
		if p.ID == "" {
			return fmt.Errorf("meta config: Peers[%d].ID is empty", i)
		}
		if seen[p.ID] {
			return fmt.Errorf("meta config: Peers[%d].ID %q is listed twice", i, p.ID)
		}
		seen[p.ID] = true
		if _, _, err := net.SplitHostPort(p.RaftAddr); err != nil {
			return fmt.Errorf("meta config: Peers[%d].RaftAddr %q is not host:port: %w", i, p.RaftAddr, err)
		}
		if p.ID == c.NodeID {
			self = true
			if c.AdvertiseRaft != "" && c.AdvertiseRaft != p.RaftAddr {
				return fmt.Errorf("meta config: AdvertiseRaft %q differs from this node's Peers entry %q",
					c.AdvertiseRaft, p.RaftAddr)
			}
		}
	}
	if !self {
		return fmt.Errorf("meta config: Peers does not list NodeID %q", c.NodeID)
	}
	return nil
}

// withDefaults returns a copy with every zero optional field set.
func (c Config) withDefaults() Config {
	c.Lease = cmp.Or(c.Lease, DefaultLease)
	c.Replicas = cmp.Or(c.Replicas, DefaultReplicas)
	c.RaftHeartbeatTimeout = cmp.Or(c.RaftHeartbeatTimeout, DefaultRaftHeartbeatTimeout)
	c.RaftElectionTimeout = cmp.Or(c.RaftElectionTimeout, DefaultRaftElectionTimeout)
	c.MaxMoves = cmp.Or(c.MaxMoves, DefaultMaxMoves)
	c.MoveTimeout = cmp.Or(c.MoveTimeout, DefaultMoveTimeout)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.Datacenter = cmp.Or(c.Datacenter, proto.DefaultDatacenter)
	return c
}
