package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/internal/testutil"
)

// TestSessionSIGTERMTellsClientsToGo stops a session with SIGTERM. It stops
// accepting and tells its clients to go: a RESP3 client gets a goaway push,
// a subscribed one a message on the goaway channel. A provider that moves
// to the other session within the grace period keeps its publisher
// without a subscriber ever seeing it vanish; one that stays is closed
// after the grace period, and its publisher goes. The Go client moves by
// itself, registering through the other session before it lets go of the
// stopping one, so its publishers never vanish either. The process exits.
func TestSessionSIGTERMTellsClientsToGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t, "SLOTREG_SHUTDOWN_GRACE=4s")
	// Start from a settled table, so what the subscriber sees is the
	// handover alone.
	c.waitSettled()
	ss := c.byRole("session")
	leaving, staying := ss[0], ss[1]
	const svc = "svc-goaway"

	other := mustClient(t, staying.addr)
	w := mustWatch(t, other, svc)
	w.guardRemovals(func(_, rid string) bool { return rid == "stays-put" })

	mover, moverRd := rawConn(t, leaving.addr)
	mover.SetReadDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprint(mover, "HELLO 3\r\nREGISTER "+svc+" mover 10.0.0.1:80\r\n")
	if v, err := readFrame(moverRd); err != nil || !strings.Contains(v, "slotreg") {
		t.Fatalf("HELLO 3: %q %v", v, err)
	}
	if v, err := readFrame(moverRd); err != nil || !strings.HasPrefix(v, ":") {
		t.Fatalf("REGISTER: %q %v", v, err)
	}
	stays, staysRd := rawConn(t, leaving.addr)
	fmt.Fprint(stays, "REGISTER "+svc+" stays-put 10.0.0.2:80\r\n")
	stays.SetReadDeadline(time.Now().Add(60 * time.Second))
	if v, err := readFrame(staysRd); err != nil || !strings.HasPrefix(v, ":") {
		t.Fatalf("REGISTER: %q %v", v, err)
	}
	sdk, err := client.New(client.Options{Sessions: []string{leaving.addr, staying.addr},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	for _, rid := range []string{"sdk-1", "sdk-2"} {
		if _, err := sdk.Register(ctxT(t), svc, rid, "10.0.1.1:80"); err != nil {
			t.Fatal(err)
		}
	}
	if st := sdk.Status(); !st.Ready || st.Session != leaving.addr {
		t.Fatalf("the Go client is not on the session to be stopped: %+v", st)
	}
	sub := redis.NewClient(&redis.Options{Addr: leaving.addr, MaxRetries: -1})
	defer sub.Close()
	ps := sub.Subscribe(context.Background(), svc)
	defer ps.Close()
	if _, err := ps.Receive(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w.waitSet(svc, "mover=10.0.0.1:80", "sdk-1=10.0.1.1:80", "sdk-2=10.0.1.1:80", "stays-put=10.0.0.2:80")

	stopped := time.Now()
	if err := syscall.Kill(leaving.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The mover hears it must go, moves, then hangs up.
	if v, err := readFrame(moverRd); err != nil || v != "[goaway 4000]" {
		t.Fatalf("the RESP3 client got %q %v, want the goaway push", v, err)
	}
	register(t, other, svc, "mover", "10.0.0.1:80")
	mover.Close()
	// The subscriber hears it on the goaway channel.
	for {
		m, err := ps.ReceiveMessage(ctxT(t))
		if err != nil {
			t.Fatalf("the subscriber got no goaway message: %v", err)
		}
		if m.Channel == "__slotreg__:goaway" {
			if m.Payload != "4000" {
				t.Fatalf("goaway payload %q", m.Payload)
			}
			break
		}
	}
	if err := pingOnce(t, leaving.addr); err == nil {
		t.Fatal("the stopping session still accepts connections")
	}
	// The client that stayed is closed after the grace period and its
	// publisher goes; the mover's stays.
	if _, err := readFrame(staysRd); err == nil {
		t.Fatal("the connection that stayed got a reply instead of a close")
	}
	if took := time.Since(stopped); took < 4*time.Second {
		t.Fatalf("the session closed a client %v after SIGTERM, before its 4s grace", took)
	}
	w.waitSet(svc, "mover=10.0.0.1:80", "sdk-1=10.0.1.1:80", "sdk-2=10.0.1.1:80")
	if st := sdk.Status(); !st.Ready || st.Session != staying.addr {
		t.Fatalf("the Go client did not move to the other session: %+v", st)
	}
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		return syscall.Kill(leaving.pid, 0) != nil, "the session is still running after its grace period"
	})
	if _, set := lookup(t, other, svc); fmt.Sprint(set) != "[mover=10.0.0.1:80 sdk-1=10.0.1.1:80 sdk-2=10.0.1.1:80]" {
		t.Fatalf("LOOKUP after the session left: %v", set)
	}
	// The deferred sdk.Close unregisters its publishers: real removals.
	w.guardRemovals(func(string, string) bool { return true })
}

// pingOnce dials addr and PINGs once, without retries.
func pingOnce(t *testing.T, addr string) error {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Ping(ctxT(t)).Err()
}
