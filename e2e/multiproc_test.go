package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// registryBin is the registry binary the multi-process tests run, built
// once per test binary.
var registryBin, registryctlBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "slotreg-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		registryBin = filepath.Join(dir, "registry")
		registryctlBin = filepath.Join(dir, "registryctl")
		for bin, pkg := range map[string]string{registryBin: "../cmd/registry", registryctlBin: "../cmd/registryctl"} {
			build := exec.Command("go", "build", "-o", bin, pkg)
			build.Stderr = os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building", pkg, err)
				return 1
			}
		}
		// SLOTREG_E2E_REGISTRY runs the multi-process tests against
		// another registry binary, e.g. an older build, to show that a
		// test fails without the fix it covers.
		if bin := os.Getenv("SLOTREG_E2E_REGISTRY"); bin != "" {
			registryBin = bin
		}
		return m.Run()
	}()
	os.Exit(code)
}

// procNode is one line of `cluster.sh status`.
type procNode struct {
	role, id, addr string
	pid            int
	up             bool
}

// scriptCluster is a cluster started by scripts/cluster.sh.
type scriptCluster struct {
	t    *testing.T
	base int
	dir  string
	env  []string
	// wrap runs cluster.sh under a command (dc2's setpriv, xdc_test.go).
	wrap []string
}

func (c *scriptCluster) run(args ...string) (string, error) {
	argv := append(append(slices.Clone(c.wrap), "bash", "../scripts/cluster.sh"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// portsFree says whether the block of ports a base would use is free now.
// cluster.sh takes fixed ports by design (DESIGN.md); the test picks a
// random base in 20000-31900 and moves on if any port is taken.
func portsFree(base int) bool {
	for off := 11; off <= 73; off++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// newScriptCluster is a cluster.sh cluster on ports from base with its
// state in dir, not yet up; env are more settings for cluster.sh.
func newScriptCluster(t *testing.T, base int, dir string, env ...string) *scriptCluster {
	return &scriptCluster{t: t, base: base, dir: dir, env: append(append(os.Environ(),
		"SLOTREG_BASE_PORT="+strconv.Itoa(base),
		"SLOTREG_CLUSTER_DIR="+dir,
		"SLOTREG_BIN="+registryBin,
		"SLOTREG_LEASE=2s",
	), env...)}
}

// down runs `cluster.sh down`, after printing the logs of a failed test,
// and checks that no node is left running.
func (c *scriptCluster) down() {
	if c.t.Failed() {
		c.dumpLogs()
	}
	if out, err := c.run("down"); err != nil {
		c.t.Errorf("cluster.sh down: %v\n%s", err, out)
	}
	for _, n := range c.status() {
		if n.up {
			c.t.Errorf("%s %s (pid %d) still running after down", n.role, n.id, n.pid)
		}
	}
}

// mustScriptCluster starts the script cluster; extra are more environment
// settings for cluster.sh (e.g. SLOTREG_AUTO_REBALANCE=0).
func mustScriptCluster(t *testing.T, extra ...string) *scriptCluster {
	t.Helper()
	var lastOut string
	for try := 0; try < 5; try++ {
		// Below 32768, where Linux starts handing out ephemeral source
		// ports: a client connection holding one of the cluster's ports
		// would stop a restarted node from listening on it.
		base := 20000 + 100*rand.IntN(120)
		if !portsFree(base) {
			continue
		}
		// A fresh dir each try: cluster.sh refuses a dir made with
		// another base port.
		c := newScriptCluster(t, base, t.TempDir(), extra...)
		out, err := c.run("up")
		if err == nil {
			t.Cleanup(c.down)
			return c
		}
		lastOut = out
		c.run("down")
	}
	t.Fatalf("cluster.sh up failed:\n%s", lastOut)
	return nil
}

// dumpLogs prints the nodes' logs (warnings and errors, and the last lines)
// into the test output, for a failed test.
func (c *scriptCluster) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(c.dir, "*.log"))
	if keep := os.Getenv("SLOTREG_KEEP_LOGS"); keep != "" {
		dst := filepath.Join(keep, c.t.Name())
		os.MkdirAll(dst, 0o755)
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				os.WriteFile(filepath.Join(dst, filepath.Base(l)), b, 0o644)
			}
		}
		c.t.Logf("node logs kept in %s", dst)
	}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var keep []string
		for i, line := range lines {
			if i >= len(lines)-15 || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				keep = append(keep, line)
			}
		}
		if len(keep) > 60 {
			keep = keep[len(keep)-60:]
		}
		c.t.Logf("--- %s\n%s", filepath.Base(l), strings.Join(keep, "\n"))
	}
}

func (c *scriptCluster) status() []procNode {
	c.t.Helper()
	out, err := c.run("status")
	if err != nil {
		c.t.Fatalf("cluster.sh status: %v\n%s", err, out)
	}
	var nodes []procNode
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			c.t.Fatalf("status line %q: want 5 fields", line)
		}
		pid, _ := strconv.Atoi(f[3])
		nodes = append(nodes, procNode{role: f[0], id: f[1], addr: f[2], pid: pid, up: f[4] == "up"})
	}
	return nodes
}

func (c *scriptCluster) byRole(role string) []procNode {
	var out []procNode
	for _, n := range c.status() {
		if n.role == role {
			out = append(out, n)
		}
	}
	return out
}

// metaSession is a session as a meta's NODES lists it.
type metaSession struct {
	ID         string `json:"id"`
	LastSeenMs int64  `json:"lastSeenMs"` // only the leader tracks lease ages
}

// metaSessions asks the meta at addr which sessions it lists.
func metaSessions(addr string) ([]metaSession, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	s, err := c.Do(context.Background(), "NODES").Text()
	if err != nil {
		return nil, err
	}
	var ms struct {
		Sessions []metaSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(s), &ms); err != nil {
		return nil, err
	}
	return ms.Sessions, nil
}

// metaLeader finds the meta leader: only the leader tracks lease ages, so
// only its NODES listing carries lastSeenMs.
func metaLeader(t *testing.T, metas []procNode) procNode {
	t.Helper()
	var leader procNode
	testutil.Eventually(t, 15*time.Second, func() (bool, string) {
		for _, m := range metas {
			if ss, err := metaSessions(m.addr); err == nil && len(ss) > 0 && ss[0].LastSeenMs > 0 {
				leader = m
				return true, ""
			}
		}
		return false, "no meta reports lease ages"
	})
	return leader
}

func TestMultiProcessClusterSurvivesMetaLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	sessions := c.byRole("session")
	if len(sessions) != 2 || len(c.byRole("meta")) != 3 || len(c.byRole("data")) != 3 {
		t.Fatalf("status: %+v", c.status())
	}
	a := mustClient(t, sessions[0].addr)
	b := mustClient(t, sessions[1].addr)

	// The same flow as in-process: register, look up elsewhere, subscribe,
	// close a publisher's connection.
	register(t, a, "mp-svc", "r1", "10.0.0.1:80")
	if _, set := lookup(t, b, "mp-svc"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP via session2: %v", set)
	}
	w := mustWatch(t, b, "mp-svc")
	w.waitSet("mp-svc", "r1=10.0.0.1:80")
	short := redis.NewClient(&redis.Options{Addr: sessions[0].addr, PoolSize: 1})
	register(t, short, "mp-svc", "r2", "10.0.0.2:80")
	w.waitSet("mp-svc", "r1=10.0.0.1:80", "r2=10.0.0.2:80")
	short.Close()
	w.waitSet("mp-svc", "r1=10.0.0.1:80")

	// Kill the meta leader with SIGKILL.
	leader := metaLeader(t, c.byRole("meta"))
	if err := syscall.Kill(leader.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		for _, n := range c.status() {
			if n.id == leader.id {
				return !n.up, "killed meta still up"
			}
		}
		return false, "meta missing from status"
	})
	var rest []procNode
	for _, m := range c.byRole("meta") {
		if m.id != leader.id {
			rest = append(rest, m)
		}
	}
	newLeader := metaLeader(t, rest)
	t.Logf("killed meta leader %s; %s leads now", leader.id, newLeader.id)

	// Writes, lookups and pushes still work.
	register(t, a, "mp-svc", "r3", "10.0.0.3:80")
	w.waitSet("mp-svc", "r1=10.0.0.1:80", "r3=10.0.0.3:80")

	// A new session joins through the surviving metas and serves.
	ln := c.base + 69
	metas := make([]string, 0, 3)
	for _, m := range c.byRole("meta") {
		metas = append(metas, m.addr)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ln)
	cmd := exec.Command(registryBin, "session", "--id", "session9", "--listen", addr, "--meta", strings.Join(metas, ","))
	logf, err := os.Create(filepath.Join(c.dir, "session9.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	var s9 *redis.Client
	testutil.Eventually(t, 15*time.Second, func() (bool, string) {
		if s9 == nil {
			cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			if cl.Ping(context.Background()).Err() != nil {
				cl.Close()
				return false, "session9 not accepting"
			}
			s9 = cl
		}
		info, err := s9.Info(context.Background(), "registry").Result()
		return err == nil && strings.Contains(info, "ready:1"), "session9 INFO: " + info
	})
	defer s9.Close()
	register(t, s9, "mp-svc", "r9", "10.0.0.9:80")
	w.waitSet("mp-svc", "r1=10.0.0.1:80", "r3=10.0.0.3:80", "r9=10.0.0.9:80")
	if _, set := lookup(t, s9, "mp-svc"); len(set) != 3 {
		t.Fatalf("LOOKUP via the new session: %v", set)
	}
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		n := 0
		for _, m := range rest {
			cl := redis.NewClient(&redis.Options{Addr: m.addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
			s, _ := cl.Do(context.Background(), "NODES").Text()
			cl.Close()
			if strings.Contains(s, `"session9"`) {
				n++
			}
		}
		return n == len(rest), "session9 not in every surviving meta's membership"
	})
}

// waitSettled waits until the table has its leaders even, no slot moving
// and no change for a second: auto-rebalance and follower evening are
// done. A slot frozen for a handoff stays unwritable until meta commits
// it, so tests that take meta's quorum away start from here.
func (c *scriptCluster) waitSettled() {
	c.t.Helper()
	var lastEpoch uint64
	var stableSince time.Time
	testutil.Eventually(c.t, 60*time.Second, func() (bool, string) {
		tab := metaTable(c.t, c.byRole("meta"))
		lo, hi := slot.Count, 0
		for _, n := range tab.Nodes {
			k := len(tab.LedBy(n.ID))
			lo, hi = min(lo, k), max(hi, k)
		}
		if tab.Epoch != lastEpoch || len(tab.Moving()) > 0 || hi-lo > 1 {
			lastEpoch, stableSince = tab.Epoch, time.Now()
		}
		return time.Since(stableSince) > time.Second,
			fmt.Sprintf("epoch %d, %d slots moving, leaders %d..%d", tab.Epoch, len(tab.Moving()), lo, hi)
	})
}

// TestClusterScriptRefusesOtherPorts: a cluster dir made with one base
// port is refused, with what to do, when started with another (its metas
// would look for their peers on the old ports and never elect a leader);
// no node is started.
func TestClusterScriptRefusesOtherPorts(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "meta1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base_port"), []byte("23200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newScriptCluster(t, 23300, dir)
	out, err := c.run("up")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("cluster.sh up on another base port: %v, want exit 2\n%s", err, out)
	}
	for _, want := range []string{"SLOTREG_BASE_PORT=23200, not 23300", "SLOTREG_CLUSTER_DIR"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	}
	if pids, _ := filepath.Glob(filepath.Join(dir, "*.pid")); len(pids) > 0 {
		t.Errorf("nodes were started: %v", pids)
	}
}
