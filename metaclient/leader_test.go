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

// An error reply names the meta that sent it and matches its sentinel.
func TestLeaderReplyErrorNamesTheMeta(t *testing.T) {
	m := startFake(t, func(c redcon.Conn) { c.WriteError("ERR move refused: slot 3 is moving") })
	l := NewLeader(LeaderOptions{Metas: []string{m.addr}})
	defer l.Close()
	_, err := l.Do(context.Background(), "MOVESLOT", "3", "d1")
	var re *ReplyError
	if !errors.As(err, &re) || re.Addr != m.addr || !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("Do: %#v, want a *ReplyError from %s matching ErrInvalid", err, m.addr)
	}
	if want := "meta " + m.addr + ": "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "move refused") {
		t.Fatalf("Do: %q, want %q and the reply", err, want)
	}
}

// DoWait asks again while a new leader takes over (UNAVAILABLE) or no
// meta names a leader, and returns the leader's answer once there is one.
func TestLeaderDoWaitOutlastsAnElection(t *testing.T) {
	var ready atomic.Bool
	leader := startFake(t, func(c redcon.Conn) {
		if !ready.Load() {
			c.WriteError(proto.ToRESP(proto.Errorf(proto.ErrUnavailable, "meta m1: leader is still taking over")))
			return
		}
		answer(c)
	})
	lost := startFake(t, notLeader(""))
	l := NewLeader(LeaderOptions{Metas: []string{lost.addr, leader.addr}})
	defer l.Close()
	time.AfterFunc(300*time.Millisecond, func() { ready.Store(true) })
	v, err := l.DoWait(context.Background(), 5*time.Second, "PING")
	if err != nil || v != int64(7) {
		t.Fatalf("DoWait = %#v, %v; want 7 once the leader is ready", v, err)
	}
	if leader.calls.Load() < 2 {
		t.Fatalf("the leader was asked %d times, want it asked again after UNAVAILABLE", leader.calls.Load())
	}
}

// DoWait gives up after its wait when no meta leads, returns another
// refusal at once, and does not wait when no meta answers at all.
func TestLeaderDoWaitGivesUp(t *testing.T) {
	lost := startFake(t, notLeader(""))
	l := NewLeader(LeaderOptions{Metas: []string{lost.addr}})
	defer l.Close()
	start := time.Now()
	_, err := l.DoWait(context.Background(), 300*time.Millisecond, "PING")
	if !errors.Is(err, proto.ErrNotLeader) || !strings.Contains(err.Error(), "no meta leader after 300ms") {
		t.Fatalf("DoWait without a leader: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
		t.Fatalf("DoWait without a leader returned after %v, want about 300ms", d)
	}

	refuser := startFake(t, func(c redcon.Conn) { c.WriteError("ERR no") })
	lr := NewLeader(LeaderOptions{Metas: []string{refuser.addr}})
	defer lr.Close()
	if _, err := lr.DoWait(context.Background(), time.Minute, "PING"); !errors.Is(err, proto.ErrInvalid) || refuser.calls.Load() != 1 {
		t.Fatalf("DoWait with a refusal: %v after %d calls, want ErrInvalid after 1", err, refuser.calls.Load())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ld := NewLeader(LeaderOptions{Metas: []string{dead}, DialRetries: 1})
	defer ld.Close()
	start = time.Now()
	_, err = ld.DoWait(context.Background(), time.Minute, "PING")
	var re *ReplyError
	if err == nil || errors.As(err, &re) || time.Since(start) > 5*time.Second {
		t.Fatalf("DoWait with no meta up: %v after %v, want a network error at once", err, time.Since(start))
	}
}

// refusedAddr is an address nothing listens on: a meta whose process is
// gone.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// LeaderlessSince needs a majority of the metas to have shown that no
// working leader can count on them: refused (dead) or answering without a
// leader. A meta that names a leader, or one that does not answer, is no
// such evidence.
func TestLeaderlessSinceNeedsAMajority(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		metas  func() []string
		expect bool
	}{
		{"two dead, one without a leader (quorum lost)", func() []string {
			return []string{refusedAddr(t), refusedAddr(t), startFake(t, notLeader("")).addr}
		}, true},
		{"one dead, two naming a leader", func() []string {
			named := startFake(t, answer).addr
			return []string{refusedAddr(t), startFake(t, notLeader(named)).addr, startFake(t, notLeader(named)).addr}
		}, false},
		{"one without a leader, two silent (cut off: they may have a leader)", func() []string {
			return []string{startFake(t, notLeader("")).addr, silentMeta(t), silentMeta(t)}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLeader(LeaderOptions{Metas: tc.metas(), ReadTimeout: 100 * time.Millisecond, DialTimeout: 100 * time.Millisecond, DialRetries: 1})
			defer l.Close()
			before := time.Now()
			_, _ = l.Do(ctx, "HEARTBEAT")
			at, ok := l.LeaderlessSince()
			if ok != tc.expect {
				t.Fatalf("LeaderlessSince = %v, %v; want ok=%v", at, ok, tc.expect)
			}
			if ok && at.Before(before) {
				t.Fatalf("LeaderlessSince = %v, before the call at %v", at, before)
			}
		})
	}
}
