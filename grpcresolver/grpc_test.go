package grpcresolver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/slotreg/slotreg/internal/testutil"
)

// mustServer starts a real gRPC server (the health service) on
// 127.0.0.1:0 and returns its address; the address a call reached is
// how the test tells the servers apart (grpc.Peer).
func mustServer(t *testing.T) string {
	t.Helper()
	ln := testutil.MustListen(t)
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String()
}

// reached makes n calls on conn and counts the servers that answered;
// it stops at the first error.
func reached(conn *grpc.ClientConn, n int) (map[string]int, error) {
	hc := healthpb.NewHealthClient(conn)
	seen := make(map[string]int)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var p peer.Peer
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
		cancel()
		if err != nil {
			return seen, err
		}
		seen[p.Addr.String()]++
	}
	return seen, nil
}

// waitServers waits until calls on conn reach exactly the servers want,
// every one of them: round robin over the live publishers.
func waitServers(t *testing.T, conn *grpc.ClientConn, want ...string) {
	t.Helper()
	slices.Sort(want)
	testutil.WaitFor(t, within, "calls to reach "+strings.Join(want, ","), func() (bool, string) {
		seen, err := reached(conn, 4*len(want))
		got := slices.Sorted(maps.Keys(seen))
		return err == nil && slices.Equal(got, want), fmt.Sprintf("reached %v, err %v", seen, err)
	})
}

// End to end with real gRPC servers: calls are spread over every live
// publisher, and follow publishers that come, unregister, or lose the
// connection they registered on; bad data is skipped; with no publisher
// left RPCs fail with Unavailable, and work again when one comes.
func TestGRPCRoundRobinFollowsPublishers(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	s1, s2, s3 := mustServer(t), mustServer(t), mustServer(t)

	pubA := mustClient(t, sess)
	// B's publisher lives on B's connection, which goes through a proxy
	// the test can cut.
	px := mustProxy(t, sess)
	pubB := mustClient(t, px.Addr())
	pubC := mustClient(t, sess)
	r1 := mustRegister(t, pubA, "svc", "s1", s1)
	mustRegister(t, pubB, "svc", "s2", fmt.Sprintf(`{"addr":%q,"attributes":{"name":"s2","zone":"z1"}}`, s2))
	mustRegister(t, pubA, "svc", "junk", "not an address")

	b := mustBuilder(t, Options{Client: fastClient(t, sess)})
	conn, err := grpc.NewClient("slotreg:///svc", grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	waitServers(t, conn, s1, s2)
	if b.BadPublishers() == 0 {
		t.Error("the junk publisher was not counted")
	}

	// A new server gets calls.
	r3 := mustRegister(t, pubC, "svc", "s3", s3)
	waitServers(t, conn, s1, s2, s3)

	// An unregistered one stops getting them.
	mustUnregister(t, r1)
	waitServers(t, conn, s2, s3)

	// So does one whose registry connection is gone: the session drops
	// the publishers bound to it.
	px.setDown(true)
	waitServers(t, conn, s3)

	// No publisher left (the junk one is no use): Unavailable.
	mustUnregister(t, r3)
	testutil.WaitFor(t, within, "calls to fail with Unavailable", func() (bool, string) {
		_, err := reached(conn, 1)
		return status.Code(err) == codes.Unavailable, fmt.Sprint(err)
	})
	_, err = reached(conn, 1)
	t.Logf("with no usable publisher: %v", err)

	// And back.
	mustRegister(t, pubC, "svc", "s3", s3)
	waitServers(t, conn, s3)
}

// The authority names the session; the builder needs no default then.
func TestGRPCAuthority(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	s1 := mustServer(t)
	mustRegister(t, mustClient(t, sess), "svc", "s1", s1)

	b := mustBuilder(t, Options{Client: fastClient(t)})
	conn, err := grpc.NewClient("slotreg://"+sess+"/svc", grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServers(t, conn, s1)
}

// The service config can be replaced: pick_first shows why no publisher
// is usable; with NoServiceConfig the channel's default applies.
func TestGRPCServiceConfig(t *testing.T) {
	cl := mustCluster(t, 1)
	sess := cl.Sessions[0].Addr()
	pub := mustClient(t, sess)
	mustRegister(t, pub, "junk", "j", `{"addr":"nowhere"}`)
	s1, s2 := mustServer(t), mustServer(t)
	mustRegister(t, pub, "svc", "s1", s1)
	mustRegister(t, pub, "svc", "s2", s2)

	pf := mustBuilder(t, Options{Client: fastClient(t, sess), ServiceConfig: `{"loadBalancingConfig":[{"pick_first":{}}]}`})
	conn, err := grpc.NewClient("slotreg:///junk", grpc.WithResolvers(pf),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testutil.WaitFor(t, within, "calls to fail naming the bad publisher", func() (bool, string) {
		_, err := reached(conn, 1)
		return status.Code(err) == codes.Unavailable && strings.Contains(fmt.Sprint(err), "no usable publisher"), fmt.Sprint(err)
	})

	none := mustBuilder(t, Options{Client: fastClient(t, sess), NoServiceConfig: true})
	conn2, err := grpc.NewClient("slotreg:///svc", grpc.WithResolvers(none),
		grpc.WithDefaultServiceConfig(DefaultServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	waitServers(t, conn2, s1, s2)
}
