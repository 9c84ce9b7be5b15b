package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/internal/testutil"
)

func TestRegisterSeenByLookupOnAnotherSession(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())

	v := register(t, a, "svc#@#DEFAULT#@#G", "r1", "10.0.0.1:80")
	if v>>32 == 0 {
		t.Fatalf("version %x carries no leader epoch", v)
	}
	ver, set := lookup(t, b, "svc#@#DEFAULT#@#G")
	if ver != v || fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP via B: version %d set %v, want %d [r1=10.0.0.1:80]", ver, set, v)
	}
	// Replacing the same registerId keeps one entry and raises the version.
	v2 := register(t, a, "svc#@#DEFAULT#@#G", "r1", "10.0.0.1:81")
	ver, set = lookup(t, b, "svc#@#DEFAULT#@#G")
	if v2 <= v || ver != v2 || fmt.Sprint(set) != "[r1=10.0.0.1:81]" {
		t.Fatalf("after replace: v2=%d lookup %d %v", v2, ver, set)
	}
	if ver, set := lookup(t, b, "never-registered"); ver != 0 || len(set) != 0 {
		t.Fatalf("unknown service: %d %v", ver, set)
	}
}

func TestSubscriberGetsInitialStateThenEveryChange(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())
	const id = "orders"

	register(t, a, id, "r1", "x1")
	w := mustWatch(t, b, id)
	w.waitSet(id, "r1=x1")
	register(t, a, id, "r2", "x2")
	w.waitSet(id, "r1=x1", "r2=x2")
	register(t, a, id, "r3", "x3")
	last := w.waitSet(id, "r1=x1", "r2=x2", "r3=x3")
	if ver, _ := lookup(t, a, id); ver != last.Version {
		t.Fatalf("last push version %d, LOOKUP version %d", last.Version, ver)
	}
	if n := len(w.all(id)); n < 2 {
		t.Fatalf("got %d pushes, want the initial state and changes", n)
	}

	// A subscription to a service nobody publishes gets an empty state.
	w2 := mustWatch(t, b, "empty-service")
	p := w2.waitSet("empty-service")
	if p.Version != 0 {
		t.Fatalf("empty service version %d", p.Version)
	}
}

func TestClosingPublisherConnectionPushesRemoval(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	sub := mustClient(t, cl.Sessions[1].Addr())
	keep := mustClient(t, cl.Sessions[0].Addr())
	pubc := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	const id = "payments"

	register(t, keep, id, "stays", "a")
	register(t, pubc, id, "goes", "b")
	w := mustWatch(t, sub, id)
	w.waitSet(id, "goes=b", "stays=a")
	pubc.Close()
	w.waitSet(id, "stays=a")
	if _, set := lookup(t, keep, id); fmt.Sprint(set) != "[stays=a]" {
		t.Fatalf("LOOKUP after close: %v", set)
	}
}

func TestTTLPublisherOutlivesConnectionThenExpires(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	look := mustClient(t, cl.Sessions[0].Addr())
	one := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	register(t, one, "cron", "job1", "host1", "TTL", 2)
	register(t, one, "cron", "job2", "host2", "TTL", 1)
	one.Close()

	// job1 is renewed through another connection; job2 is not.
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n, err := look.Do(ctxT(t), "RENEW", "cron", "job1").Int(); err != nil || n != 1 {
			t.Fatalf("RENEW job1: %d %v", n, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		_, set := lookup(t, look, "cron")
		return fmt.Sprint(set) == "[job1=host1]", fmt.Sprint(set)
	})
	if n, _ := look.Do(ctxT(t), "RENEW", "cron", "job2").Int(); n != 0 {
		t.Fatalf("RENEW of an expired publisher returned %d", n)
	}
	testutil.Eventually(t, 6*time.Second, func() (bool, string) {
		_, set := lookup(t, look, "cron")
		return len(set) == 0, fmt.Sprint(set)
	})
}

func TestUnregister(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	c := mustClient(t, cl.Sessions[0].Addr())
	register(t, c, "svc", "a", "1")
	register(t, c, "svc", "b", "2")
	if n, err := c.Do(ctxT(t), "UNREGISTER", "svc", "a").Int(); err != nil || n != 1 {
		t.Fatalf("UNREGISTER: %d %v", n, err)
	}
	if n, err := c.Do(ctxT(t), "UNREGISTER", "svc", "a").Int(); err != nil || n != 0 {
		t.Fatalf("second UNREGISTER: %d %v", n, err)
	}
	if _, set := lookup(t, c, "svc"); fmt.Sprint(set) != "[b=2]" {
		t.Fatalf("after UNREGISTER: %v", set)
	}
}

func TestThousandServicesOverBothDataNodes(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	c := mustClient(t, cl.Sessions[0].Addr())
	ctx := ctxT(t)
	pipe := c.Pipeline()
	for i := 0; i < 1000; i++ {
		pipe.Do(ctx, "REGISTER", fmt.Sprintf("service-%d", i), "r", fmt.Sprintf("10.0.%d.%d:80", i/256, i%256))
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			t.Fatal(cmd.Err())
		}
	}
	for i := 0; i < 1000; i++ {
		_, set := lookup(t, c, fmt.Sprintf("service-%d", i))
		if want := fmt.Sprintf("[r=10.0.%d.%d:80]", i/256, i%256); fmt.Sprint(set) != want {
			t.Fatalf("service-%d: %v want %v", i, set, want)
		}
	}
	total := 0
	for _, d := range cl.Data {
		st := d.Stats()
		if st.Publishers == 0 {
			t.Fatalf("data node %s holds no publishers", d.ID())
		}
		total += st.Publishers
	}
	if total != 1000 {
		t.Fatalf("data nodes hold %d publishers, want 1000", total)
	}
}

// rawConn speaks raw bytes to a session, as a misbehaving client would.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc, bufio.NewReader(nc)
}

func TestBadInputGetsErrorsAndHurtsNoOne(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	addr := cl.Sessions[0].Addr()
	good := mustClient(t, addr)
	register(t, good, "safe", "r", "kept")
	w := mustWatch(t, good, "safe")
	w.waitSet("safe", "r=kept")

	c := mustClient(t, addr)
	ctx := ctxT(t)
	bad := []struct {
		args []any
		want string
	}{
		{[]any{"REGISTER", "svc", "r"}, "wrong number of arguments"},
		{[]any{"LOOKUP"}, "wrong number of arguments"},
		{[]any{"UNREGISTER", "svc"}, "wrong number of arguments"},
		{[]any{"NOSUCHCMD", "x"}, "unknown command"},
		{[]any{"REGISTER", strings.Repeat("k", 513), "r", "d"}, "dataInfoId is 513 bytes, over the max-key-size limit of 512"},
		{[]any{"LOOKUP", strings.Repeat("k", 513)}, "over the max-key-size limit of 512"},
		{[]any{"REGISTER", "svc", "r", strings.Repeat("d", 64<<10+1)}, "data is 65537 bytes, over the max-data-size limit of 65536"},
		{[]any{"REGISTER", "svc", "r", "d", "TTL", "-1"}, "TTL must be"},
		{[]any{"REGISTER", "svc", "r", "d", "XX", "1"}, "syntax error"},
		{[]any{"REGISTER", "", "r", "d"}, "empty dataInfoId"},
	}
	for _, b := range bad {
		err := c.Do(ctx, b.args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR") || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%.40v: got %v, want an ERR containing %q", b.args, err, b.want)
		}
	}
	// A 64 KiB value is still fine.
	register(t, c, "svc", "big", strings.Repeat("d", 64<<10))

	// A non-RESP stream gets an error and/or a closed connection.
	for _, junk := range []string{
		"*2\r\n$3\r\nfoo\r\n$-5\r\n",   // negative bulk length
		"*1\r\n$abc\r\n",               // bad bulk length
		"\x00\x01\x02\xff garbage\r\n", // inline junk: an unknown command
		"*-3\r\n*x\r\n",                // bad array header
	} {
		nc, rd := rawConn(t, addr)
		nc.Write([]byte(junk))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := rd.ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "-ERR") {
			t.Errorf("junk %q: got %q, want an -ERR reply or a closed connection", junk, line)
		}
		if err != nil && isTimeout(err) {
			t.Errorf("junk %q: the session neither answered nor closed", junk)
		}
	}
	// A half frame, then the client goes away.
	nc, _ := rawConn(t, addr)
	nc.Write([]byte("*3\r\n$8\r\nREGISTER\r\n$3\r\nsv"))
	nc.Close()

	// The node is up and the other client's data untouched.
	if _, set := lookup(t, good, "safe"); fmt.Sprint(set) != "[r=kept]" {
		t.Fatalf("other client's data changed: %v", set)
	}
	register(t, good, "safe", "r2", "new")
	w.waitSet("safe", "r2=new", "r=kept")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestGoRedisDefaultsAndRESP2(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	addr := cl.Sessions[0].Addr()
	for _, protocol := range []int{3, 2} {
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: protocol, ClientName: "compat"})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id := fmt.Sprintf("compat-%d", protocol)
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("RESP%d ping: %v", protocol, err)
		}
		if name, err := c.ClientGetName(ctx).Result(); err != nil || name != "compat" {
			t.Fatalf("RESP%d CLIENT GETNAME: %q %v", protocol, name, err)
		}
		if v, err := c.Do(ctx, "REGISTER", id, "r", "d").Uint64(); err != nil || v == 0 {
			t.Fatalf("RESP%d REGISTER: %d %v", protocol, v, err)
		}
		ps := c.Subscribe(ctx, id)
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil || !strings.Contains(msg.Payload, `"registerId":"r"`) {
			t.Fatalf("RESP%d subscribe: %v %v", protocol, msg, err)
		}
		info, err := c.Info(ctx, "registry").Result()
		if err != nil || !strings.Contains(info, "table_epoch:") {
			t.Fatalf("RESP%d INFO: %q %v", protocol, info, err)
		}
		ps.Close()
		c.Close()
		cancel()
	}
}

// TestSessionCloseDoesNotWaitForTheConfigPoll: a session's config long
// poll waits on meta for up to 5 s in a read that a cancelled context
// does not interrupt; closing the session closes its meta connections
// instead of waiting the poll out (every in-process test's cluster took
// 4.7 s to stop, and every session stop as long).
func TestSessionCloseDoesNotWaitForTheConfigPoll(t *testing.T) {
	t.Parallel()
	cl := mustCluster(t, 1)
	s := cl.Sessions[0]
	// The poll is under way once the session has its first answer.
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		return s.ConfigRev() > 0 || s.Ready(), "session not ready"
	})
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= 4*time.Second {
		t.Fatalf("Close took %v: it waited for the config long poll", took)
	}
}
