package main

import (
	"context"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/netsec/netsectest"
	"github.com/slotreg/slotreg/internal/testutil"
)

// mustSecureCluster starts an in-process cluster (1 meta, 1 data node, 1
// session) with a cluster secret, TLS on the inter-node and client
// listeners, and waits until it is ready.
func mustSecureCluster(t *testing.T, secret string) (*cluster.Local, *netsectest.Certs) {
	t.Helper()
	certs := netsectest.MustGenerate(t)
	tc := certs.MustConfigs(t)
	srv, peer := tc.Server, tc.Client
	cl, err := cluster.Start(cluster.Options{
		Dir: t.TempDir(), Data: 1, Sessions: 1, Logger: testutil.Quiet,
		Secret: netsec.Secret{Current: secret}, InternodeTLS: srv, PeerTLS: peer, ClientTLS: srv,
	})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl, certs
}

// TestSecretAndTLS: registryctl reaches a cluster with a secret and TLS
// only with both right; each refusal is one clear line and exit 1.
func TestSecretAndTLS(t *testing.T) {
	cl, certs := mustSecureCluster(t, "ctl-secret")
	metaAddr := cl.Meta.RPCAddr()
	tlsArgs := []string{"--tls-internode", "--tls-client", "--tls-ca", certs.Files.CA}
	with := func(args ...string) result {
		return ctl(append(append([]string{"--meta", metaAddr}, tlsArgs...), args...)...)
	}

	r := with("--cluster-secret", "ctl-secret", "nodes")
	if r.code != 0 {
		t.Fatalf("nodes with the secret and TLS: %v", r)
	}
	for _, addr := range []string{cl.Data[0].Addr(), cl.Sessions[0].Addr()} {
		var line string
		for _, l := range strings.Split(r.out, "\n") {
			if strings.Contains(l, addr) {
				line = l
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), "ok") {
			t.Errorf("node %s not healthy over TLS with the secret: %q\n%s", addr, line, r.out)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret", []string{"nodes"}, "requires the cluster secret: pass --cluster-secret or set SLOTREG_CLUSTER_SECRET"},
		{"wrong secret", []string{"--cluster-secret", "nope", "nodes"}, "refused the cluster secret given"},
	} {
		r := with(tc.args...)
		if r.code != exitFailed || !strings.Contains(r.err, tc.want) || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
			t.Errorf("%s: want exit 1 and one line with %q; got %v", tc.name, tc.want, r)
		}
		if strings.Contains(r.err, "ctl-secret") {
			t.Errorf("%s: the secret appears in the output: %v", tc.name, r)
		}
	}

	// TLS refusals: a plaintext registryctl, and one that trusts another CA.
	r = ctl("--meta", metaAddr, "--cluster-secret", "ctl-secret", "nodes")
	if r.code != exitFailed || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
		t.Errorf("plaintext registryctl to TLS metas: want exit 1 and one line; got %v", r)
	}
	r = ctl("--meta", metaAddr, "--cluster-secret", "ctl-secret", "--tls-internode", "--tls-ca", certs.OtherCA, "nodes")
	if r.code != exitFailed || !strings.Contains(r.err, "certificate") {
		t.Errorf("registryctl trusting another CA: want exit 1 and a certificate error; got %v", r)
	}
	r = ctl("--meta", metaAddr, "--tls-internode", "--tls-ca", certs.Files.Key, "nodes")
	if r.code != exitUsage || !strings.Contains(r.err, "--tls-ca") {
		t.Errorf("registryctl with a bad CA file: want exit 2 naming --tls-ca; got %v", r)
	}
}
