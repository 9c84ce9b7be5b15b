package meta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/netsec/netsectest"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
)

func pingErr(t *testing.T, addr, secret string, cfg *tls.Config) error {
	t.Helper()
	rdb := newRedis(addr, secret, cfg)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	return respErr(rdb.Ping(ctx).Err())
}

// TestRPCRefusesWithoutSecret: with a cluster secret, the RPC endpoint
// answers NOAUTH to a client that did not AUTH, WRONGPASS to a wrong
// secret, and serves a client with the right one; meta logs the
// refusals without the secrets.
func TestRPCRefusesWithoutSecret(t *testing.T) {
	log, buf := testutil.Logger(t)
	n := mustSingleWith(t, func(c *Config) {
		c.Secret = netsec.Secret{Current: "right-secret"}
		c.Logger = log
	})
	addr := n.RPCAddr()
	if err := pingErr(t, addr, "", nil); !errors.Is(err, proto.ErrNoAuth) {
		t.Errorf("PING without AUTH: got %v, want NOAUTH", err)
	}
	if err := pingErr(t, addr, "wrong-secret", nil); !errors.Is(err, proto.ErrWrongPass) {
		t.Errorf("PING with a wrong secret: got %v, want WRONGPASS", err)
	}
	if err := pingErr(t, addr, "right-secret", nil); err != nil {
		t.Errorf("PING with the secret: %v", err)
	}
	logs := buf.String()
	for _, want := range []string{"refused an unauthenticated inter-node command", "refused a wrong cluster secret"} {
		if !strings.Contains(logs, want) {
			t.Errorf("meta did not log %q", want)
		}
	}
	if strings.Contains(logs, "right-secret") || strings.Contains(logs, "wrong-secret") {
		t.Error("a secret appears in meta's log")
	}
}

// TestNodeWithWrongSecretCannotJoin: a data node heartbeating with the
// wrong secret is refused (and meta logs it); with the right one it
// joins.
func TestNodeWithWrongSecretCannotJoin(t *testing.T) {
	log, buf := testutil.Logger(t)
	n := mustSingleWith(t, func(c *Config) {
		c.Secret = netsec.Secret{Current: "s1"}
		c.Logger = log
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()

	bad := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d-bad", Metas: []string{n.RPCAddr()}, Secret: "s2"})
	if err := bad.Refresh(ctx); !errors.Is(err, proto.ErrWrongPass) {
		t.Fatalf("heartbeat with a wrong secret: got %v, want WRONGPASS", err)
	}
	none := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d-none", Metas: []string{n.RPCAddr()}})
	if err := none.Refresh(ctx); !errors.Is(err, proto.ErrNoAuth) {
		t.Fatalf("heartbeat without a secret: got %v, want NOAUTH", err)
	}
	if m := n.Members(); len(m.Data) != 0 {
		t.Fatalf("refused nodes joined: %+v", m.Data)
	}
	if !strings.Contains(buf.String(), "refused a wrong cluster secret") {
		t.Error("meta did not log the wrong secret")
	}

	good := newTestClient(t, metaclient.Config{Kind: proto.KindData, NodeID: "d-good", Metas: []string{n.RPCAddr()}, Secret: "s1"})
	if err := good.Refresh(ctx); err != nil {
		t.Fatalf("heartbeat with the secret: %v", err)
	}
	if m := n.Members(); !hasIDs(m.Data, "d-good") {
		t.Fatalf("data members %v, want d-good", memberIDs(m.Data))
	}
}

// TestRaftRefusesWrongSecret: of three voters, the one with the wrong
// secret is shut out of Raft both ways (each side logs the refusal) and
// never learns the state; restarted with the right secret, it catches up.
func TestRaftRefusesWrongSecret(t *testing.T) {
	specs := make([]*nodeSpec, 3)
	bufs := make([]*testutil.LockedBuffer, 3)
	var peers []Peer
	for i := range specs {
		log, buf := testutil.Logger(t)
		bufs[i] = buf
		specs[i] = &nodeSpec{id: fmt.Sprintf("m%d", i+1), raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: testWait, logger: log}
		peers = append(peers, Peer{ID: specs[i].id, RaftAddr: specs[i].raftLn.Addr().String()})
	}
	secrets := []string{"good", "good", "bad"}
	nodes := make([]*Node, 3)
	for i, s := range specs {
		s.peers = peers
		cfg := s.config(t)
		cfg.Secret = netsec.Secret{Current: secrets[i]}
		n, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%s): %v", s.id, err)
		}
		nodes[i] = n
	}
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	leader, _ := leaderOf(t, nodes[:2])
	m3 := nodes[2]
	m3Addr := peers[2].RaftAddr
	waitFor(t, "both sides to log the refused raft connections", func() (bool, string) {
		// The leader refuses m3's vote requests; m3 refuses the leader's
		// appends.
		leaderLog := bufs[0].String() + bufs[1].String()
		a := strings.Contains(leaderLog, "refused a raft connection")
		b := strings.Contains(bufs[2].String(), "refused a raft connection")
		return a && b, fmt.Sprintf("good side logged %v, m3 logged %v", a, b)
	})
	if m3.store.state().Table != nil {
		t.Fatal("m3, with the wrong secret, has the group's table")
	}
	if m3.IsLeader() {
		t.Fatal("m3, with the wrong secret, leads")
	}

	// Restart m3 with the right secret on its address and state.
	if err := m3.Close(); err != nil {
		t.Fatalf("close m3: %v", err)
	}
	ln, err := net.Listen("tcp", m3Addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", m3Addr, err)
	}
	specs[2].raftLn = ln
	cfg := specs[2].config(t)
	cfg.Secret = netsec.Secret{Current: "good"}
	if nodes[2], err = New(cfg); err != nil {
		t.Fatalf("restart m3: %v", err)
	}
	m3 = nodes[2]
	want := leader.Table().Epoch
	waitFor(t, "m3 to catch up", func() (bool, string) {
		tb := m3.store.state().Table
		if tb == nil {
			return false, "no table"
		}
		return tb.Epoch >= want, fmt.Sprintf("epoch %d, want %d", tb.Epoch, want)
	})
}

// TestMetaOverTLS: three voters with TLS on Raft and RPC and a secret
// elect a leader and record each other's RPC addresses (meta-to-meta RPC
// over TLS); a node with TLS and the secret joins; a plaintext client and
// one that does not trust the CA fail.
func TestMetaOverTLS(t *testing.T) {
	certs := netsectest.MustGenerate(t)
	tc := certs.MustConfigs(t)
	srv, peer := tc.Server, tc.Client
	log := testLogger(t)
	specs := make([]*nodeSpec, 3)
	var peers []Peer
	for i := range specs {
		specs[i] = &nodeSpec{id: fmt.Sprintf("m%d", i+1), raftLn: testutil.MustListen(t), dir: t.TempDir(), lease: testWait, logger: log}
		peers = append(peers, Peer{ID: specs[i].id, RaftAddr: specs[i].raftLn.Addr().String()})
	}
	nodes := make([]*Node, 3)
	for i, s := range specs {
		s.peers = peers
		cfg := s.config(t)
		cfg.Secret = netsec.Secret{Current: "tls-secret"}
		cfg.ServerTLS, cfg.PeerTLS = srv, peer
		nodes[i] = mustNode(t, cfg)
	}
	leader, _ := leaderOf(t, nodes)
	waitFor(t, "every voter's RPC address recorded", func() (bool, string) {
		m := leader.store.state().Metas
		return len(m) == 3, fmt.Sprintf("%d recorded", len(m))
	})

	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	c := newTestClient(t, metaclient.Config{Kind: proto.KindSession, NodeID: "s1", Metas: []string{nodes[0].RPCAddr()},
		Secret: "tls-secret", TLS: peer})
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("heartbeat over TLS: %v", err)
	}
	if err := pingErr(t, leader.RPCAddr(), "tls-secret", nil); err == nil {
		t.Error("a plaintext client to the TLS RPC listener succeeded")
	}
	other, err := netsec.ClientConfig(netsec.TLSFiles{CA: certs.OtherCA})
	if err != nil {
		t.Fatal(err)
	}
	if err := pingErr(t, leader.RPCAddr(), "tls-secret", other); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client trusting another CA: got %v, want a certificate error", err)
	}
}
