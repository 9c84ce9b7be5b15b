package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
)

// configMsg is a config/<KEY> push, decoded.
type configMsg struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Value   string `json:"value"`
	Deleted bool   `json:"deleted"`
}

// configWatcher records the pushes of config channels on one connection
// and checks that versions never go back per key.
type configWatcher struct {
	t    *testing.T
	mu   sync.Mutex
	msgs map[string][]configMsg
	bad  []string
	ps   *redis.PubSub
	done chan struct{}
}

func mustWatchConfig(t *testing.T, c *redis.Client, keys ...string) *configWatcher {
	t.Helper()
	chans := make([]string, len(keys))
	for i, k := range keys {
		chans[i] = proto.ConfigChannelPrefix + k
	}
	ps := mustSubscribe(t, c, chans...)
	w := &configWatcher{t: t, msgs: map[string][]configMsg{}, ps: ps, done: make(chan struct{})}
	ch := ps.Channel()
	go func() {
		defer close(w.done)
		for m := range ch {
			var p configMsg
			w.mu.Lock()
			if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
				w.bad = append(w.bad, fmt.Sprintf("bad payload %q: %v", m.Payload, err))
			} else {
				prev := w.msgs[p.Key]
				if n := len(prev); n > 0 && p.Version <= prev[n-1].Version {
					w.bad = append(w.bad, fmt.Sprintf("%s: version went from %d to %d", p.Key, prev[n-1].Version, p.Version))
				}
				if m.Channel != proto.ConfigChannelPrefix+p.Key {
					w.bad = append(w.bad, fmt.Sprintf("channel %s carried key %s", m.Channel, p.Key))
				}
				w.msgs[p.Key] = append(prev, p)
			}
			w.mu.Unlock()
		}
	}()
	reportAtCleanup(t, ps, w.done, &w.mu, &w.bad)
	return w
}

func (w *configWatcher) last(key string) (configMsg, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs[key]
	if len(m) == 0 {
		return configMsg{}, false
	}
	return m[len(m)-1], true
}

// waitVersion waits until the newest push for key has version v.
func (w *configWatcher) waitVersion(key string, v uint64) configMsg {
	w.t.Helper()
	var got configMsg
	testutil.Eventually(w.t, 10*time.Second, func() (bool, string) {
		m, ok := w.last(key)
		got = m
		return ok && m.Version == v, fmt.Sprintf("last push for %s: %+v (want version %d)", key, m, v)
	})
	return got
}

// metaDo sends one command to the meta RPC address.
func metaDo(t *testing.T, addr string, args ...any) any {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctxT(t), args...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("meta %v: %v", args[0], err)
	}
	return v
}

func confGet(t *testing.T, c *redis.Client, key string) (proto.ConfigEntry, bool) {
	t.Helper()
	v, err := c.Do(ctxT(t), proto.CmdConfGet, key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("CONFGET %s: %v", key, err)
	}
	e, ok, err := proto.ParseConfGetReply(key, v)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

// httpConfig pulls GET /v1/config/KEY and returns the status, the
// decoded body and the X-Config-Version header.
func httpConfig(t *testing.T, base, key string) (int, configMsg, string) {
	t.Helper()
	code, b, h := testutil.MustGet(t, base+"/v1/config/"+key)
	var m configMsg
	if code == http.StatusOK || code == http.StatusNotFound {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("HTTP body %q: %v", b, err)
		}
	}
	return code, m, h.Get("X-Config-Version")
}

// TestConfigPushThroughTwoSessions: a change reaches every watcher on
// both sessions with its version; CONFGET and an HTTP pull agree; a new
// subscriber gets the current value at once; a delete is pushed too.
func TestConfigPushThroughTwoSessions(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	metaAddr := cl.Meta.RPCAddr()
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())
	wa := mustWatchConfig(t, a, "app/db.url", "app/flag")
	wb := mustWatchConfig(t, b, "app/db.url")
	wb2 := mustWatchConfig(t, mustClient(t, cl.Sessions[1].Addr()), "app/db.url")

	v1, _ := metaDo(t, metaAddr, proto.CmdConfSet, "app/db.url", "postgres://db1").(int64)
	for _, w := range []*configWatcher{wa, wb, wb2} {
		if m := w.waitVersion("app/db.url", uint64(v1)); m.Value != "postgres://db1" || m.Deleted {
			t.Fatalf("first push: %+v", m)
		}
	}
	v2, _ := metaDo(t, metaAddr, proto.CmdConfSet, "app/db.url", "postgres://db2").(int64)
	if v2 <= v1 {
		t.Fatalf("second version %d after %d", v2, v1)
	}
	for _, w := range []*configWatcher{wa, wb, wb2} {
		if m := w.waitVersion("app/db.url", uint64(v2)); m.Value != "postgres://db2" {
			t.Fatalf("second push: %+v", m)
		}
	}
	if _, ok := wa.last("app/flag"); ok {
		t.Fatal("a push for a key that was never set")
	}

	// Reads agree with the pushes, on both sessions and over HTTP.
	for i, c := range []*redis.Client{a, b} {
		testutil.Eventually(t, 5*time.Second, func() (bool, string) {
			e, ok := confGet(t, c, "app/db.url")
			return ok && e.Version == uint64(v2) && e.Value == "postgres://db2", fmt.Sprintf("session %d CONFGET: %+v", i+1, e)
		})
	}
	hs, err := obs.ServeWith("127.0.0.1:0", func() (bool, string) { return true, "" }, cl.Sessions[1].HTTPHandlers())
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	base := "http://" + hs.Addr()
	code, m, hdr := httpConfig(t, base, "app/db.url")
	if code != http.StatusOK || m.Version != uint64(v2) || m.Value != "postgres://db2" || hdr != strconv.FormatInt(v2, 10) {
		t.Fatalf("HTTP pull: %d %+v version header %q, want version %d", code, m, hdr, v2)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/config/app/db.url", nil)
	req.Header.Set("If-None-Match", `"`+hdr+`"`)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current version: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if code, _, _ := httpConfig(t, base, "no/such"); code != http.StatusNotFound {
		t.Fatalf("HTTP pull of an unknown key: %d", code)
	}
	if code, _, _ := httpConfig(t, base, "bad%20key"); code != http.StatusBadRequest {
		t.Fatalf("HTTP pull of a bad key: %d", code)
	}

	// A new subscriber gets the current value at once.
	late := mustWatchConfig(t, mustClient(t, cl.Sessions[0].Addr()), "app/db.url")
	late.waitVersion("app/db.url", uint64(v2))

	// A delete reaches the watchers as a tombstone with a higher version.
	v3, _ := metaDo(t, metaAddr, proto.CmdConfDel, "app/db.url").(int64)
	for _, w := range []*configWatcher{wa, wb, late} {
		if m := w.waitVersion("app/db.url", uint64(v3)); !m.Deleted || m.Value != "" {
			t.Fatalf("delete push: %+v", m)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() (bool, string) {
		_, ok := confGet(t, b, "app/db.url")
		return !ok, "CONFGET still answers a deleted key"
	})
	if code, m, _ := httpConfig(t, base, "app/db.url"); code != http.StatusNotFound || m.Version != uint64(v3) || !m.Deleted {
		t.Fatalf("HTTP pull of a deleted key: %d %+v", code, m)
	}

	// Bad input gets ERR and the session keeps serving.
	for _, args := range [][]any{{proto.CmdConfGet}, {proto.CmdConfGet, "a b"}, {proto.CmdConfGet, "k", "x"}} {
		if err := a.Do(ctxT(t), args...).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
			t.Errorf("%v: %v, want ERR", args, err)
		}
	}
	if err := a.Ping(ctxT(t)).Err(); err != nil {
		t.Fatal(err)
	}
}

// lockCmd sends LOCK and returns the token, 0 if refused.
func lockCmd(t *testing.T, c *redis.Client, name, owner string, ttlMs int) uint64 {
	t.Helper()
	v, err := c.Do(ctxT(t), proto.CmdLock, name, owner, ttlMs).Result()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatalf("LOCK %s %s: %v", name, owner, err)
	}
	return uint64(v.(int64))
}

func lockInfo(t *testing.T, c *redis.Client, name string) *proto.LockInfo {
	t.Helper()
	v, err := c.Do(ctxT(t), proto.CmdLockInfo, name).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("LOCKINFO %s: %v", name, err)
	}
	info, err := proto.ParseLockInfoReply(v)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestLockMutualExclusion: 20 clients over two sessions compete for one
// lock; never two hold it at once, and each grant's fencing token is
// above every earlier grant's.
func TestLockMutualExclusion(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	const clients, rounds = 20, 3
	var holder atomic.Int64 // the client in the critical section, -1 none
	holder.Store(-1)
	var mu sync.Mutex
	var lastToken uint64
	var grants int
	var bad []string
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for i := range clients {
		c := mustClient(t, cl.Sessions[i%2].Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			owner := "worker-" + strconv.Itoa(i)
			retry := time.NewTicker(5 * time.Millisecond)
			defer retry.Stop()
			for got := 0; got < rounds && ctx.Err() == nil; {
				v, err := c.Do(ctx, proto.CmdLock, "scheduler/master", owner, 10_000).Result()
				if errors.Is(err, redis.Nil) {
					<-retry.C // held by another: poll again
					continue
				}
				if err != nil {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s LOCK: %v", owner, err))
					mu.Unlock()
					return
				}
				token := uint64(v.(int64))
				if prev := holder.Swap(int64(i)); prev != -1 {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s got the lock while worker-%d held it", owner, prev))
					mu.Unlock()
				}
				mu.Lock()
				if token <= lastToken {
					bad = append(bad, fmt.Sprintf("%s got token %d after %d", owner, token, lastToken))
				}
				lastToken = token
				grants++
				mu.Unlock()
				holder.Store(-1)
				if n, err := c.Do(ctx, proto.CmdUnlock, "scheduler/master", owner).Int(); err != nil || n != 1 {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%s UNLOCK: %d, %v", owner, n, err))
					mu.Unlock()
					return
				}
				got++
			}
		}()
	}
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
	if grants != clients*rounds {
		t.Fatalf("%d grants, want %d (context: %v)", grants, clients*rounds, ctx.Err())
	}
}

// TestLockReleasedWhenConnectionCloses: a lock held by a connection that
// closes is released long before its TTL, and the next holder gets a
// higher token.
func TestLockReleasedWhenConnectionCloses(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	holderConn := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	tok := lockCmd(t, holderConn, "job/42", "w1", 60_000)
	if tok == 0 {
		t.Fatal("first LOCK refused")
	}
	other := mustClient(t, cl.Sessions[1].Addr())
	if info := lockInfo(t, other, "job/42"); info == nil || info.Owner != "w1" || info.Token != tok || info.TTLMs <= 50_000 {
		t.Fatalf("LOCKINFO: %+v", info)
	}
	if lockCmd(t, other, "job/42", "w2", 60_000) != 0 {
		t.Fatal("a second owner got a held lock")
	}
	// Renewal by the holder keeps its token.
	if again := lockCmd(t, holderConn, "job/42", "w1", 60_000); again != tok {
		t.Fatalf("renewal: token %d, want %d", again, tok)
	}
	start := time.Now()
	holderConn.Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		info := lockInfo(t, other, "job/42")
		return info == nil, fmt.Sprintf("still held: %+v", info)
	})
	t.Logf("released %v after the connection closed", time.Since(start).Round(time.Millisecond))
	if next := lockCmd(t, other, "job/42", "w2", 60_000); next <= tok {
		t.Fatalf("next grant: token %d, want above %d", next, tok)
	}
	// UNLOCK by a non-holder changes nothing.
	if n, err := other.Do(ctxT(t), proto.CmdUnlock, "job/42", "w1").Int(); err != nil || n != 0 {
		t.Fatalf("UNLOCK by a non-holder: %d, %v", n, err)
	}
	for _, args := range [][]any{
		{proto.CmdLock, "n", "o"}, {proto.CmdLock, "n", "o", "abc"}, {proto.CmdLock, "n", "o", "0"},
		{proto.CmdUnlock, "n"}, {proto.CmdLockInfo},
	} {
		if err := other.Do(ctxT(t), args...).Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR") {
			t.Errorf("%v: %v, want ERR", args, err)
		}
	}
}

// TestLockExpiresAtTTL: a lock whose holder stays connected but does not
// renew is free once its TTL has passed, and not before.
func TestLockExpiresAtTTL(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 1)
	holderConn := mustClient(t, cl.Sessions[0].Addr())
	other := mustClient(t, cl.Sessions[0].Addr())
	const ttl = 600 * time.Millisecond
	start := time.Now()
	tok := lockCmd(t, holderConn, "ttl-lock", "w1", int(ttl/time.Millisecond))
	if tok == 0 {
		t.Fatal("LOCK refused")
	}
	var got uint64
	testutil.Eventually(t, ttl+5*time.Second, func() (bool, string) {
		got = lockCmd(t, other, "ttl-lock", "w2", 60_000)
		return got != 0, "w2 still refused"
	})
	elapsed := time.Since(start)
	if elapsed < ttl {
		t.Fatalf("the lock went to w2 after %v, before its TTL of %v", elapsed, ttl)
	}
	if got <= tok {
		t.Fatalf("w2's token %d is not above w1's %d", got, tok)
	}
	if info := lockInfo(t, other, "ttl-lock"); info == nil || info.Owner != "w2" {
		t.Fatalf("LOCKINFO after expiry: %+v", info)
	}
	t.Logf("lock with TTL %v taken over after %v", ttl, elapsed.Round(time.Millisecond))
}
