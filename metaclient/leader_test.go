package metaclient

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// fakeMeta is a RESP endpoint that answers every command with reply(),
// counting the commands it got.
type fakeMeta struct {
	addr  string
	calls atomic.Int64
}

func startFake(t *testing.T, reply func(redcon.Conn)) *fakeMeta {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMeta{addr: ln.Addr().String()}
	srv := redcon.NewServer("", func(conn redcon.Conn, cmd redcon.Command) {
		if strings.EqualFold(string(cmd.Args[0]), "HELLO") { // as meta: RESP2 only
			conn.WriteError("ERR unknown command 'HELLO'")
			return
		}
		f.calls.Add(1)
		reply(conn)
	}, nil, nil)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// silentMeta accepts connections and reads, but never answers: a meta
// whose replies are dropped by a partition.
func silentMeta(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = c.Read(make([]byte, 1<<16)) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

func notLeader(addr string) func(redcon.Conn) {
	return func(c redcon.Conn) { c.WriteError(proto.ToRESP(proto.NotLeader(addr))) }
}

func answer(c redcon.Conn) { c.WriteInt(7) }

// A follower that still names a silent old leader must not send every
// attempt back to it: one timeout there, then the other metas, and the
// real leader answers.
func TestLeaderSkipsSilentMetaFollowersStillName(t *testing.T) {
	silent := silentMeta(t)
	leader := startFake(t, answer)
	follower := startFake(t, notLeader(silent))
	l := NewLeader(LeaderOptions{Metas: []string{silent, follower.addr, leader.addr},
		ReadTimeout: 200 * time.Millisecond, DialTimeout: 200 * time.Millisecond, Cooldown: time.Minute})
	defer l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := l.Do(ctx, "PING")
	if err != nil {
		t.Fatalf("Do: %v (the silent meta named by a follower must be passed over)", err)
	}
	if v != int64(7) {
		t.Fatalf("Do = %#v, want 7 from the leader", v)
	}
	if got := l.Current(); got != leader.addr {
		t.Fatalf("Current = %s, want the leader %s", got, leader.addr)
	}
	// Later calls go straight to the leader.
	before := follower.calls.Load()
	for range 5 {
		if _, err := l.Do(ctx, "PING"); err != nil {
			t.Fatal(err)
		}
	}
	if n := follower.calls.Load() - before; n != 0 {
		t.Fatalf("the follower got %d more calls, want 0", n)
	}
}

// In the next call, while the silent meta cools down, a follower naming
// it is not followed either; once every other meta has been tried, the
// call returns instead of waiting on the silent one again.
func TestLeaderCooldownBoundsACallWithoutLeader(t *testing.T) {
	silent := silentMeta(t)
	f1 := startFake(t, notLeader(silent))
	f2 := startFake(t, notLeader(silent))
	l := NewLeader(LeaderOptions{Metas: []string{silent, f1.addr, f2.addr},
		ReadTimeout: time.Second, DialTimeout: time.Second, Cooldown: time.Minute})
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := l.Do(ctx, "PING"); !errors.Is(err, proto.ErrNotLeader) {
		t.Fatalf("first Do: %v, want NOTLEADER after the followers", err)
	}
	// The silent meta is cooling: a second call must not touch it, so it
	// fails fast (NOTLEADER from the followers, no timeout).
	start := time.Now()
	_, err := l.Do(ctx, "PING")
	if !errors.Is(err, proto.ErrNotLeader) {
		t.Fatalf("second Do: %v, want NOTLEADER", err)
	}
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("second Do took %v: it waited on the silent meta again", d)
	}
}

// A redirect to a healthy leader is followed at once.
func TestLeaderFollowsRedirect(t *testing.T) {
	leader := startFake(t, answer)
	follower := startFake(t, notLeader(leader.addr))
	l := NewLeader(LeaderOptions{Metas: []string{follower.addr, leader.addr}})
	defer l.Close()
	if v, err := l.Do(context.Background(), "PING"); err != nil || v != int64(7) {
		t.Fatalf("Do = %#v, %v", v, err)
	}
	if follower.calls.Load() != 1 || l.Current() != leader.addr {
		t.Fatalf("follower calls %d, current %s", follower.calls.Load(), l.Current())
	}
	l.Close()
	if _, err := l.Do(context.Background(), "PING"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v, want ErrClosed", err)
	}
}
