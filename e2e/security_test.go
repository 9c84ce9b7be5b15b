package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/dataserver"
	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/netsec/netsectest"
	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/sessionserver"
)

func mustStart(t *testing.T, o cluster.Options) *cluster.Local {
	t.Helper()
	cl, err := cluster.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Errorf("cluster close: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

func pingWith(opts *redis.Options) error {
	opts.MaxRetries = -1
	opts.DialTimeout = 2 * time.Second
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// TestSecureClusterEndToEnd runs a whole in-process cluster with a
// cluster secret and TLS on the client, inter-node and admin listeners:
// clients register, look up and get pushes over TLS; /metrics answers
// over HTTPS; plaintext and untrusting clients are refused.
func TestSecureClusterEndToEnd(t *testing.T) {
	certs := netsectest.MustGenerate(t)
	tc := certs.MustConfigs(t)
	srv, cli, untrusting := tc.Server, tc.Client, tc.Untrusting
	cl := mustStart(t, cluster.Options{
		Dir: t.TempDir(), Data: 2, Sessions: 2, Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Secret: netsec.Secret{Current: "e2e-secret"}, InternodeTLS: srv, PeerTLS: cli, ClientTLS: srv,
	})

	// Clients: go-redis with its defaults (HELLO 3) over TLS.
	a := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), TLSConfig: cli})
	b := redis.NewClient(&redis.Options{Addr: cl.Sessions[1].Addr(), TLSConfig: cli})
	t.Cleanup(func() { a.Close(); b.Close() })
	w := mustWatch(t, b, "tls-svc")
	register(t, a, "tls-svc", "r1", "10.0.0.1:80")
	if _, set := lookup(t, b, "tls-svc"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP via the other session: %v", set)
	}
	w.waitSet("tls-svc", "r1=10.0.0.1:80")
	register(t, a, "tls-svc", "r2", "10.0.0.2:80")
	w.waitSet("tls-svc", "r1=10.0.0.1:80", "r2=10.0.0.2:80")

	// Refusals on the client listener.
	if err := pingWith(&redis.Options{Addr: cl.Sessions[0].Addr()}); err == nil {
		t.Error("a plaintext client to the TLS client listener succeeded")
	}
	if err := pingWith(&redis.Options{Addr: cl.Sessions[0].Addr(), TLSConfig: untrusting}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client not trusting the CA: got %v, want a certificate error", err)
	}
	// Refusals on a data node's inter-node listener.
	data := cl.Data[0].Addr()
	if err := pingWith(&redis.Options{Addr: data, Password: "e2e-secret"}); err == nil {
		t.Error("a plaintext client to the TLS data listener succeeded")
	}
	if err := pingWith(&redis.Options{Addr: data, TLSConfig: cli}); !errors.Is(proto.FromRESP(errText(err)), proto.ErrNoAuth) {
		t.Errorf("a TLS client without the secret to a data node: got %v, want NOAUTH", err)
	}
	if err := pingWith(&redis.Options{Addr: data, TLSConfig: cli, Password: "nope"}); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a TLS client with a wrong secret to a data node: got %v, want WRONGPASS", err)
	}
	if err := pingWith(&redis.Options{Addr: data, TLSConfig: cli, Password: "e2e-secret"}); err != nil {
		t.Errorf("a TLS client with the secret to a data node: %v", err)
	}

	// Admin over HTTPS.
	gatherers := []prometheus.Gatherer{cl.Meta.Metrics(), cl.Data[0].Metrics(), cl.Sessions[0].Metrics()}
	hs, err := obs.ServeTLS("127.0.0.1:0", srv, func() (bool, string) { return true, "" }, nil, gatherers...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Close() })
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cli}}
	resp, err := hc.Get("https://" + hs.Addr() + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics over https: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`role="session"`)) {
		t.Fatalf("/metrics over https: %s\n%.300s", resp.Status, body)
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + hs.Addr() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain http to the https endpoint served /metrics")
		}
	}
	untrustingHC := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: untrusting}}
	if _, err := untrustingHC.Get("https://" + hs.Addr() + "/metrics"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("https client not trusting the CA: got %v, want a certificate error", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestWrongSecretNodesCannotJoin: a data node and a session with the
// wrong secret are refused by meta (which logs it, with the address and
// without the secret) and never get a table; the nodes with the right
// secret are members.
func TestWrongSecretNodesCannotJoin(t *testing.T) {
	logs := &testutil.LockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	cl := mustStart(t, cluster.Options{
		Dir: t.TempDir(), Data: 1, Sessions: 1, Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second,
		Logger: log, Secret: netsec.Secret{Current: "the-right-one"},
	})
	d, err := dataserver.New(dataserver.Config{NodeID: "intruder-data", Addr: "127.0.0.1:0", Metas: cl.Metas(),
		Heartbeat: 100 * time.Millisecond, Logger: log, Secret: netsec.Secret{Current: "the-wrong-one"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s, err := sessionserver.New(sessionserver.Config{NodeID: "intruder-session", Addr: "127.0.0.1:0", Metas: cl.Metas(),
		Heartbeat: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	refusal := regexp.MustCompile(`msg="refused a wrong cluster secret" meta=meta1 dc=dc1 remote=127\.0\.0\.1:\d+`)
	noAuth := regexp.MustCompile(`msg="refused an unauthenticated inter-node command" meta=meta1 dc=dc1 remote=127\.0\.0\.1:\d+ cmd=heartbeat`)
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		l := logs.String()
		return refusal.MatchString(l) && noAuth.MatchString(l), "meta has not logged both refusals yet"
	})
	m := cl.Meta.Members()
	for _, list := range [][]string{ids(m.Data), ids(m.Sessions)} {
		for _, id := range list {
			if strings.HasPrefix(id, "intruder") {
				t.Errorf("%s joined with a wrong or no secret", id)
			}
		}
	}
	if fmt.Sprint(ids(m.Data), ids(m.Sessions)) != "[data1] [session1]" {
		t.Errorf("members: data %v, sessions %v; want data1 and session1", ids(m.Data), ids(m.Sessions))
	}
	if d.Table() != nil || s.Table() != nil {
		t.Error("a refused node got the slot table")
	}
	if strings.Contains(logs.String(), "the-right-one") || strings.Contains(logs.String(), "the-wrong-one") {
		t.Error("a secret appears in the logs")
	}
}

func ids(ms []proto.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// runCtl runs the registryctl binary with env and returns its output and
// exit code.
func runCtl(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(registryctlBin, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("registryctl %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// envWithout is the test's environment without the SLOTREG_ variables
// named.
func envWithout(names ...string) []string {
	var out []string
outer:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// TestScriptClusterWithSecret starts the multi-process cluster with
// SLOTREG_CLUSTER_SECRET in the environment (cluster.sh passes it on to
// every node): clients work, a client without the secret is refused by a
// data node, and registryctl works only with the secret.
func TestScriptClusterWithSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t, "SLOTREG_CLUSTER_SECRET=script-secret")
	sessions, datas, metas := c.byRole("session"), c.byRole("data"), c.byRole("meta")
	a := mustClient(t, sessions[0].addr)
	b := mustClient(t, sessions[1].addr)
	register(t, a, "sec-svc", "r1", "10.0.0.1:80")
	if _, set := lookup(t, b, "sec-svc"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP via session2: %v", set)
	}
	if err := pingWith(&redis.Options{Addr: datas[0].addr, Protocol: 2}); !errors.Is(proto.FromRESP(errText(err)), proto.ErrNoAuth) {
		t.Errorf("a client without the secret to a data node: got %v, want NOAUTH", err)
	}
	if err := pingWith(&redis.Options{Addr: metas[0].addr, Protocol: 2, Password: "guess"}); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("a client with a wrong secret to a meta: got %v, want WRONGPASS", err)
	}

	metaList := metas[0].addr + "," + metas[1].addr + "," + metas[2].addr
	env := envWithout("SLOTREG_CLUSTER_SECRET", "SLOTREG_META")
	_, errOut, code := runCtl(t, env, "--meta", metaList, "nodes")
	if code != 1 || !strings.Contains(errOut, "requires the cluster secret") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("registryctl without the secret: exit %d, stderr %q; want exit 1 and one line", code, errOut)
	}
	_, errOut, code = runCtl(t, env, "--meta", metaList, "--cluster-secret", "guess", "nodes")
	if code != 1 || !strings.Contains(errOut, "refused the cluster secret") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("registryctl with a wrong secret: exit %d, stderr %q; want exit 1 and one line", code, errOut)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		out, errOut, code := runCtl(t, append(env, "SLOTREG_CLUSTER_SECRET=script-secret"), "--meta", metaList, "nodes")
		if code != 0 {
			return false, fmt.Sprintf("exit %d: %s", code, errOut)
		}
		healthy := len(regexp.MustCompile(`(?m)^(meta|data|session) .* ok(, \w+)?$`).FindAllString(out, -1))
		return healthy == 8, fmt.Sprintf("%d of 8 nodes healthy:\n%s", healthy, out)
	})
}

// secureDev is a running `registry dev` and its HTTP endpoint.
type secureDev struct {
	*devProcess
	http string
}

// startSecureDev runs `registry dev` with args and waits until it is ready.
func startSecureDev(t *testing.T, args ...string) *secureDev {
	t.Helper()
	var errLog testutil.LockedBuffer
	p := &secureDev{devProcess: startDevProcess(t, envWithout("SLOTREG_CLUSTER_SECRET"), &errLog,
		append([]string{"--http", "127.0.0.1:0"}, args...)...)}
	re := regexp.MustCompile(`msg="http endpoint" addr=(\S+)`)
	testutil.WaitFor(t, 10*time.Second, "registry dev to log its http endpoint", func() (bool, string) {
		m := re.FindStringSubmatch(errLog.String())
		if m != nil {
			p.http = m[1]
		}
		return m != nil, "stderr:\n" + errLog.String()
	})
	return p
}

// TestDevWithTLSAndSecret runs the binary with every security flag and
// drives it as an operator would: a TLS client, https /readyz, and
// registryctl with --tls-ca and the secret.
func TestDevWithTLSAndSecret(t *testing.T) {
	certs := netsectest.MustGenerate(t)
	cli := certs.MustConfigs(t).Client
	p := startSecureDev(t, "--cluster-secret", "dev-secret", "--tls-cert", certs.Files.Cert, "--tls-key", certs.Files.Key,
		"--tls-ca", certs.Files.CA, "--tls-client", "--tls-internode", "--tls-admin")

	c := redis.NewClient(&redis.Options{Addr: p.session, TLSConfig: cli})
	t.Cleanup(func() { c.Close() })
	register(t, c, "dev-tls", "r1", "10.0.0.1:80")
	if _, set := lookup(t, c, "dev-tls"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP: %v", set)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cli}}
	resp, err := hc.Get("https://" + p.http + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz over https: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz over https: %s", resp.Status)
	}

	env := envWithout("SLOTREG_CLUSTER_SECRET", "SLOTREG_META", "SLOTREG_TLS_CA", "SLOTREG_TLS_INTERNODE", "SLOTREG_TLS_CLIENT")
	out, errOut, code := runCtl(t, env, "--meta", p.meta, "--cluster-secret", "dev-secret",
		"--tls-internode", "--tls-client", "--tls-ca", certs.Files.CA, "stats")
	if code != 0 || !strings.Contains(out, "session1") {
		t.Fatalf("registryctl stats with --tls-ca and the secret: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runCtl(t, env, "--meta", p.meta, "--cluster-secret", "dev-secret", "stats")
	if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("plaintext registryctl to a TLS meta: exit %d, stderr %q; want exit 1 and one line", code, errOut)
	}
	_, errOut, code = runCtl(t, env, "--meta", p.meta, "--tls-internode", "--tls-ca", certs.Files.CA, "stats")
	if code != 1 || !strings.Contains(errOut, "requires the cluster secret") {
		t.Errorf("registryctl over TLS without the secret: exit %d, stderr %q", code, errOut)
	}
}
