package netsec_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/internal/netsec/netsectest"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
)

const testWait = 10 * time.Second

// mustGatedServer serves PING behind a gate on 127.0.0.1:0, over TLS
// when cfg is set, and returns its address.
func mustGatedServer(t *testing.T, g *netsec.Gate, cfg *tls.Config) string {
	t.Helper()
	ln := netsec.Listen(testutil.MustListen(t), cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = redcon.Serve(ln, func(conn redcon.Conn, cmd redcon.Command) {
			if !g.Allow(conn, cmd.Args) {
				return
			}
			if strings.EqualFold(string(cmd.Args[0]), proto.CmdPing) {
				conn.WriteString("PONG")
				return
			}
			conn.WriteError("ERR unknown command")
		}, nil, nil)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func client(t *testing.T, addr, password string, cfg *tls.Config) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: 2 * time.Second, TLSConfig: cfg})
	t.Cleanup(func() { c.Close() })
	return c
}

func ping(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	return c.Ping(ctx).Err()
}

func TestGateRefusals(t *testing.T) {
	log, buf := testutil.Logger(t)
	g := netsec.NewGate(netsec.Secret{Current: "s3cret-now", AlsoAccept: []string{"s3cret-next"}}, log)
	addr := mustGatedServer(t, g, nil)

	if err := ping(client(t, addr, "s3cret-now", nil)); err != nil {
		t.Fatalf("PING with the current secret: %v", err)
	}
	if err := ping(client(t, addr, "s3cret-next", nil)); err != nil {
		t.Fatalf("PING with the other accepted secret: %v", err)
	}

	err := ping(client(t, addr, "", nil))
	if err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("PING without AUTH: got %v, want a NOAUTH error", err)
	}
	if !errors.Is(proto.FromRESP(err.Error()), proto.ErrNoAuth) {
		t.Errorf("NOAUTH reply %q does not map to proto.ErrNoAuth", err)
	}
	if !strings.Contains(buf.String(), "refused an unauthenticated inter-node command") {
		t.Errorf("the refusal was not logged:\n%s", buf)
	}

	start := time.Now()
	err = ping(client(t, addr, "not-it", nil))
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("PING with a wrong secret: got %v, want WRONGPASS", err)
	}
	if d := time.Since(start); d < netsec.DefaultAuthFailDelay {
		t.Errorf("a wrong secret was answered after %v, want at least %v", d, netsec.DefaultAuthFailDelay)
	}
	if !strings.Contains(buf.String(), "refused a wrong cluster secret") {
		t.Errorf("the wrong secret was not logged:\n%s", buf)
	}
	for _, s := range []string{"s3cret-now", "s3cret-next", "not-it"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("a secret (%q) appears in the log:\n%s", s, buf)
		}
	}
}

// TestGateLogsOncePerConnection: a node that keeps sending without AUTH
// costs one log line per connection, and a wrong AUTH takes back what a
// right one gave.
func TestGateLogsOncePerConnection(t *testing.T) {
	log, buf := testutil.Logger(t)
	g := netsec.NewGate(netsec.Secret{Current: "abc"}, log)
	addr := mustGatedServer(t, g, nil)
	conn, err := net.DialTimeout("tcp", addr, testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testWait))
	send := func(cmd string) string {
		t.Helper()
		if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
			t.Fatalf("write %q: %v", cmd, err)
		}
		var line []byte
		for {
			b := make([]byte, 1)
			if _, err := conn.Read(b); err != nil {
				t.Fatalf("read reply to %q: %v", cmd, err)
			}
			if b[0] == '\n' {
				return strings.TrimSpace(string(line))
			}
			line = append(line, b[0])
		}
	}
	for range 3 {
		if r := send("PING"); !strings.HasPrefix(r, "-NOAUTH") {
			t.Fatalf("PING before AUTH: %q", r)
		}
	}
	if n := strings.Count(buf.String(), "refused an unauthenticated"); n != 1 {
		t.Errorf("logged %d refusals for one connection, want 1:\n%s", n, buf)
	}
	if r := send("AUTH someuser abc"); r != "+OK" {
		t.Fatalf("AUTH user secret: %q", r)
	}
	if r := send("PING"); r != "+PONG" {
		t.Fatalf("PING after AUTH: %q", r)
	}
	if r := send("AUTH"); !strings.HasPrefix(r, "-ERR wrong number") {
		t.Fatalf("AUTH without a secret: %q", r)
	}
	if r := send("AUTH wrong"); !strings.HasPrefix(r, "-WRONGPASS") {
		t.Fatalf("AUTH wrong: %q", r)
	}
	if r := send("PING"); !strings.HasPrefix(r, "-NOAUTH") {
		t.Fatalf("PING after a wrong AUTH: %q, want NOAUTH", r)
	}
	if got := g.Refused(); got != 5 {
		t.Errorf("Refused() = %d, want 5 (4 commands, 1 wrong secret)", got)
	}
}

func TestGateWithoutSecret(t *testing.T) {
	log, _ := testutil.Logger(t)
	g := netsec.NewGate(netsec.Secret{}, log)
	addr := mustGatedServer(t, g, nil)
	if err := ping(client(t, addr, "", nil)); err != nil {
		t.Fatalf("PING to a gate without a secret: %v", err)
	}
	err := ping(client(t, addr, "something", nil))
	if err == nil || !strings.Contains(err.Error(), "no cluster secret configured") {
		t.Fatalf("AUTH to a node without a secret: got %v, want an error naming the misconfiguration", err)
	}
}

func TestSecretValidate(t *testing.T) {
	for _, tc := range []struct {
		s  netsec.Secret
		ok bool
	}{
		{netsec.Secret{}, true},
		{netsec.Secret{Current: "a"}, true},
		{netsec.Secret{Current: "a", AlsoAccept: []string{"b"}}, true},
		{netsec.Secret{AlsoAccept: []string{"b"}}, false},
		{netsec.Secret{Current: "a", AlsoAccept: []string{""}}, false},
		{netsec.Secret{Current: "a\nb"}, false},
	} {
		if err := tc.s.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%d, %d accepted): %v, want ok=%v", len(tc.s.Current), len(tc.s.AlsoAccept), err, tc.ok)
		}
	}
	s := netsec.Secret{Current: "hunter2", AlsoAccept: []string{"hunter3"}}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "hunter") {
			t.Errorf("%s of a Secret shows it: %q", f, out)
		}
	}
	if !s.Accepts([]byte("hunter3")) || s.Accepts([]byte("hunter")) || (netsec.Secret{}).Accepts(nil) {
		t.Error("Accepts is wrong")
	}
}

// handshake runs both sides over loopback TCP and returns their errors.
func handshake(t *testing.T, dialer, listener netsec.Secret) (dialErr, acceptErr error) {
	t.Helper()
	ln := testutil.MustListen(t)
	defer ln.Close()
	acc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- err
			return
		}
		defer c.Close()
		err = netsec.AcceptHandshake(c, listener, testWait)
		acc <- err
		if err == nil {
			// Echo one byte: the stream works after the handshake.
			b := make([]byte, 1)
			if _, err := c.Read(b); err == nil {
				_, _ = c.Write(b)
			}
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dialErr = netsec.DialHandshake(c, dialer, testWait)
	if dialErr == nil {
		_ = c.SetDeadline(time.Now().Add(testWait))
		if _, err := c.Write([]byte{42}); err != nil {
			t.Fatalf("write after handshake: %v", err)
		}
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 42 {
			t.Fatalf("echo after handshake: %v %v", b, err)
		}
	}
	return dialErr, <-acc
}

func TestHandshake(t *testing.T) {
	a := netsec.Secret{Current: "alpha"}
	if d, l := handshake(t, a, a); d != nil || l != nil {
		t.Fatalf("same secret: dialer %v, listener %v", d, l)
	}
	// Rotation: a listener that also accepts the dialer's secret.
	if d, l := handshake(t, netsec.Secret{Current: "beta"}, netsec.Secret{Current: "alpha", AlsoAccept: []string{"beta"}}); d != nil || l != nil {
		t.Fatalf("rotation: dialer %v, listener %v", d, l)
	}
	d, l := handshake(t, netsec.Secret{Current: "wrong"}, a)
	if !errors.Is(d, netsec.ErrHandshake) || !strings.Contains(d.Error(), "refused") {
		t.Errorf("wrong secret, dialer side: %v", d)
	}
	if !errors.Is(l, netsec.ErrHandshake) || !strings.Contains(l.Error(), "wrong") {
		t.Errorf("wrong secret, listener side: %v", l)
	}
}

// TestHandshakeImpostor: a listener that does not know the secret but
// accepts anything is caught by the dialer.
func TestHandshakeImpostor(t *testing.T) {
	ln := testutil.MustListen(t)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 40)
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = c.Write(make([]byte, 32)) // a nonce
		proof := make([]byte, 32)
		if _, err := c.Read(proof); err != nil {
			return
		}
		_, _ = c.Write(append([]byte{1}, make([]byte, 32)...)) // "accepted", with a bogus proof
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), testWait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = netsec.DialHandshake(c, netsec.Secret{Current: "alpha"}, testWait)
	if !errors.Is(err, netsec.ErrHandshake) || !strings.Contains(err.Error(), "does not know") {
		t.Fatalf("impostor listener: %v", err)
	}
}

// TestHandshakeGarbage: a dialer without a secret (raft bytes) is refused.
func TestHandshakeGarbage(t *testing.T) {
	ln := testutil.MustListen(t)
	defer ln.Close()
	go func() {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), testWait)
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(bytes.Repeat([]byte{0}, 64))
		_, _ = c.Read(make([]byte, 1))
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = netsec.AcceptHandshake(c, netsec.Secret{Current: "alpha"}, testWait)
	if !errors.Is(err, netsec.ErrHandshake) || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("garbage from the dialer: %v", err)
	}
}

func TestTLSGate(t *testing.T) {
	certs := netsectest.MustGenerate(t)
	srv, err := netsec.ServerConfig(certs.Files)
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion < tls.VersionTLS12 {
		t.Errorf("server MinVersion %x", srv.MinVersion)
	}
	cli, err := netsec.ClientConfig(certs.Files)
	if err != nil {
		t.Fatal(err)
	}
	other, err := netsec.ClientConfig(netsec.TLSFiles{CA: certs.OtherCA})
	if err != nil {
		t.Fatal(err)
	}
	log, _ := testutil.Logger(t)
	addr := mustGatedServer(t, netsec.NewGate(netsec.Secret{Current: "k"}, log), srv)

	if err := ping(client(t, addr, "k", cli)); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := ping(client(t, addr, "k", other)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("TLS client trusting another CA: got %v, want a certificate error", err)
	}
	if err := ping(client(t, addr, "k", nil)); err == nil {
		t.Fatal("a plaintext client to a TLS listener succeeded")
	}
	if _, err := netsec.ServerConfig(netsec.TLSFiles{Cert: certs.Files.Cert}); err == nil {
		t.Error("ServerConfig without a key succeeded")
	}
	if _, err := netsec.ClientConfig(netsec.TLSFiles{CA: certs.Files.Key}); err == nil {
		t.Error("ClientConfig with a key file as the CA bundle succeeded")
	}
	c, err := netsec.Dial(addr, testWait, cli)
	if err != nil {
		t.Fatalf("netsec.Dial over TLS: %v", err)
	}
	c.Close()
	if _, err := netsec.Dial(addr, testWait, other); err == nil {
		t.Fatal("netsec.Dial trusting another CA succeeded")
	}
}
