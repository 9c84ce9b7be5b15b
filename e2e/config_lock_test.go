package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
)

// Multi-process tests of config push and global locks: the real binaries
// under scripts/cluster.sh, meta nodes killed by pid.

// metaAddrs is the --meta list of the script cluster.
func (c *scriptCluster) metaAddrs() string {
	var out []string
	for _, m := range c.byRole("meta") {
		out = append(out, m.addr)
	}
	return strings.Join(out, ",")
}

// sessionHTTP is session i's (1-based) HTTP base URL, per cluster.sh.
func (c *scriptCluster) sessionHTTP(i int) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.base+70+i)
}

// ctlRun runs the registryctl binary against the cluster's metas.
func (c *scriptCluster) ctlRun(args ...string) (string, error) {
	return c.ctlRunTimeout(10*time.Second, args...)
}

func (c *scriptCluster) ctlRunTimeout(timeout time.Duration, args ...string) (string, error) {
	cmd := exec.Command(registryctlBin, append([]string{"--meta", c.metaAddrs(), "--timeout", timeout.String()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustConfigSet sets key through registryctl and returns its version.
func (c *scriptCluster) mustConfigSet(key, value string) uint64 {
	c.t.Helper()
	out, err := c.ctlRun("config", "set", key, value)
	if err != nil {
		c.t.Fatalf("registryctl config set: %v\n%s", err, out)
	}
	f := strings.Fields(out)
	v, err := strconv.ParseUint(f[len(f)-1], 10, 64)
	if err != nil {
		c.t.Fatalf("registryctl config set printed %q", out)
	}
	return v
}

// killMetas SIGKILLs the metas given and waits until they are gone.
func (c *scriptCluster) killMetas(ms ...procNode) {
	c.t.Helper()
	for _, m := range ms {
		if err := syscall.Kill(m.pid, syscall.SIGKILL); err != nil {
			c.t.Fatalf("kill %s: %v", m.id, err)
		}
	}
	testutil.Eventually(c.t, 10*time.Second, func() (bool, string) {
		for _, n := range c.status() {
			for _, m := range ms {
				if n.id == m.id && n.up {
					return false, m.id + " still up"
				}
			}
		}
		return true, ""
	})
}

// startMetas starts the metas given together: one alone would wait for a
// quorum that never comes.
func (c *scriptCluster) startMetas(ms ...procNode) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(ms))
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := c.run("start", m.id); err != nil {
				errs[i] = fmt.Sprintf("start %s: %v\n%s", m.id, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			c.t.Fatal(e)
		}
	}
}

// TestConfigSurvivesMetaRestart: a config key written through registryctl
// survives SIGKILL of every meta node; after they restart it reads back
// with its version, and a later change still reaches a watcher that was
// connected throughout, with a higher version.
func TestConfigSurvivesMetaRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	sessions := c.byRole("session")
	v1 := c.mustConfigSet("app/feature", "on")
	w := mustWatchConfig(t, mustClient(t, sessions[0].addr), "app/feature")
	w.waitVersion("app/feature", v1)

	metas := c.byRole("meta")
	c.killMetas(metas...)
	// With every meta gone the sessions still answer from their cache.
	if e, ok := confGet(t, mustClient(t, sessions[1].addr), "app/feature"); !ok || e.Version != v1 || e.Value != "on" {
		t.Fatalf("CONFGET with no meta: %+v %v", e, ok)
	}
	c.startMetas(metas...)

	out, err := c.ctlRun("config", "get", "app/feature", "--json")
	var e proto.ConfigEntry
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || e.Version != v1 || e.Value != "on" {
		t.Fatalf("config get after restarting every meta: %v\n%s", err, out)
	}
	v2 := c.mustConfigSet("app/feature", "off")
	if v2 <= v1 {
		t.Fatalf("version after restart %d, before %d", v2, v1)
	}
	if m := w.waitVersion("app/feature", v2); m.Value != "off" {
		t.Fatalf("push after restart: %+v", m)
	}
	out, err = c.ctlRun("config", "history", "app/feature", "--json")
	var hist []proto.ConfigEntry
	if err != nil || json.Unmarshal([]byte(out), &hist) != nil || len(hist) != 2 || hist[1].Version != v1 {
		t.Fatalf("history after restart: %v\n%s", err, out)
	}
}

// TestConfigPushesWithoutMetaQuorum: with two of three metas killed the
// sessions keep serving config: watchers stay subscribed, a new
// subscriber gets the cached value at once, CONFGET and the HTTP pull
// answer it; once quorum returns, the next change reaches the watcher
// that was subscribed throughout.
func TestConfigPushesWithoutMetaQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	c.waitSettled()
	sessions := c.byRole("session")
	v1 := c.mustConfigSet("svc/timeout", "250ms")
	w := mustWatchConfig(t, mustClient(t, sessions[0].addr), "svc/timeout")
	w.waitVersion("svc/timeout", v1)

	leader := metaLeader(t, c.byRole("meta"))
	victims := []procNode{leader}
	for _, m := range c.byRole("meta") {
		if m.id != leader.id && len(victims) < 2 {
			victims = append(victims, m)
		}
	}
	c.killMetas(victims...)
	out, err := c.ctlRunTimeout(2*time.Second, "config", "set", "svc/timeout", "1s")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("a config write without a meta quorum: %v (want exit 1)\n%s", err, out)
	}

	// No quorum: the sessions serve what they have.
	s2 := mustClient(t, sessions[1].addr)
	late := mustWatchConfig(t, s2, "svc/timeout")
	if m := late.waitVersion("svc/timeout", v1); m.Value != "250ms" {
		t.Fatalf("new subscriber without quorum: %+v", m)
	}
	if e, ok := confGet(t, s2, "svc/timeout"); !ok || e.Version != v1 {
		t.Fatalf("CONFGET without quorum: %+v %v", e, ok)
	}
	code, m, hdr := httpConfig(t, c.sessionHTTP(2), "svc/timeout")
	if code != http.StatusOK || m.Version != v1 || hdr != strconv.FormatUint(v1, 10) {
		t.Fatalf("HTTP pull without quorum: %d %+v %q", code, m, hdr)
	}
	// The registry's own pushes go on too.
	sub := mustWatch(t, mustClient(t, sessions[1].addr), "nq-svc")
	register(t, mustClient(t, sessions[0].addr), "nq-svc", "r1", "10.0.0.1:80", "TTL", "60")
	sub.waitSet("nq-svc", "r1=10.0.0.1:80")

	c.startMetas(victims...)
	v2 := c.mustConfigSet("svc/timeout", "500ms")
	for _, x := range []*configWatcher{w, late} {
		if m := x.waitVersion("svc/timeout", v2); m.Value != "500ms" {
			t.Fatalf("push after quorum returned: %+v", m)
		}
	}
}

// sessionLockInfo is LOCKINFO through a session, nil if free; errors
// (no meta leader yet) are returned, not fatal.
func sessionLockInfo(c *redis.Client, name string) (*proto.LockInfo, error) {
	v, err := c.Do(context.Background(), proto.CmdLockInfo, name).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	return proto.ParseLockInfoReply(v)
}

// TestLockSurvivesMetaLeaderKill: a lock taken through a session is still
// held, with its token, after the meta leader is killed; a competitor is
// still refused; the holder renews it with the same token; the next
// grant after it is released has a higher token.
func TestLockSurvivesMetaLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	sessions := c.byRole("session")
	holder := mustClient(t, sessions[0].addr)
	other := mustClient(t, sessions[1].addr)
	tok := lockCmd(t, holder, "scheduler/master", "sched-a", 30_000)
	if tok == 0 {
		t.Fatal("LOCK refused on an idle cluster")
	}

	leader := metaLeader(t, c.byRole("meta"))
	c.killMetas(leader)
	testutil.Eventually(t, 15*time.Second, func() (bool, string) {
		info, err := sessionLockInfo(other, "scheduler/master")
		return err == nil && info != nil && info.Owner == "sched-a" && info.Token == tok,
			fmt.Sprintf("LOCKINFO: %+v, %v", info, err)
	})
	if got := lockCmd(t, other, "scheduler/master", "sched-b", 30_000); got != 0 {
		t.Fatalf("sched-b got the lock (token %d) while sched-a holds it", got)
	}
	if again := lockCmd(t, holder, "scheduler/master", "sched-a", 30_000); again != tok {
		t.Fatalf("renewal under the new leader: token %d, want %d", again, tok)
	}
	if n, err := holder.Do(ctxT(t), proto.CmdUnlock, "scheduler/master", "sched-a").Int(); err != nil || n != 1 {
		t.Fatalf("UNLOCK: %d, %v", n, err)
	}
	if next := lockCmd(t, other, "scheduler/master", "sched-b", 30_000); next <= tok {
		t.Fatalf("grant after the leader change: token %d, want above %d", next, tok)
	}
}
