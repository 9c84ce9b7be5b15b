package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// netnsMu keeps the netns clusters of this package one at a time: their
// namespace, link and bridge names are fixed (DESIGN.md), so two cannot
// coexist. The netns tests do not call t.Parallel either.
var netnsMu sync.Mutex

// netnsLockPath is a file whose flock keeps the netns clusters of the
// machine one at a time across test processes (go test of several
// packages, or of several checkouts, at once): a second `up` would be
// refused, and its cleanup's `down` would remove the first one's
// namespaces.
var netnsLockPath = filepath.Join(os.TempDir(), "slotreg-netns.lock")

// lockNetnsMachine takes that flock, waiting up to 10 minutes for another
// process's netns test to end, and releases it when t ends.
func lockNetnsMachine(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(netnsLockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("netns lock: %v", err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	logged := false
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("netns lock %s: %v", netnsLockPath, err)
		}
		if !logged {
			t.Logf("waiting for another process's netns test (lock %s)", netnsLockPath)
			logged = true
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { f.Close() }) // closing the file releases the lock
}

// netnsAddr is each node's address in network-namespace mode.
var netnsAddr = map[string]string{
	"meta1": "10.77.0.11", "meta2": "10.77.0.12", "meta3": "10.77.0.13",
	"data1": "10.77.0.21", "data2": "10.77.0.22", "data3": "10.77.0.23",
	"session1": "10.77.0.31", "session2": "10.77.0.32",
}

// needNetns: the netns tests run as root with ip, tc, nft and timeout. A
// missing tool fails the test; not being root skips it, but fails it in
// CI (which runs as root).
func needNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts 8 processes in network namespaces")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the network-namespace tests need root; CI runs as root")
		}
		t.Skip("the network-namespace tests need root")
	}
	for _, tool := range []string{"ip", "tc", "nft", "timeout", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install iproute2 nftables coreutils bash; .ci/run does): %v", tool, err)
		}
	}
}

// mustNetnsCluster starts the script cluster with SLOTREG_NETNS=1; extra
// are more environment settings for cluster.sh. Its cleanup runs `down`
// and checks that no slotreg-* namespace, sr-* link or slotreg-br0 is left.
func mustNetnsCluster(t *testing.T, extra ...string) *scriptCluster {
	t.Helper()
	needNetns(t)
	netnsMu.Lock()
	t.Cleanup(netnsMu.Unlock) // registered first, so it runs last
	lockNetnsMachine(t)
	if left := netnsLeftovers(t); len(left) > 0 {
		// cluster.sh up clears a crashed run's leftovers itself, unless
		// another netns cluster is running: it then refuses, below.
		t.Logf("before up: %v", left)
	}
	dir := t.TempDir()
	// The nodes listen on their own 10.77.0.x addresses, so loopback
	// ports in use do not matter; any base below 32768 will do.
	base := 20000 + 100*rand.IntN(120)
	c := newScriptCluster(t, base, dir, append([]string{"SLOTREG_NETNS=1"}, extra...)...)
	t.Cleanup(func() {
		c.down()
		if left := netnsLeftovers(t); len(left) > 0 {
			t.Errorf("after down, still there: %v", left)
		}
	})
	if out, err := c.run("up"); err != nil {
		t.Fatalf("SLOTREG_NETNS=1 cluster.sh up: %v\n%s", err, out)
	}
	return c
}

// netnsLeftovers lists the slotreg-* namespaces and the sr-* and
// slotreg-* links that exist.
func netnsLeftovers(t *testing.T) []string {
	t.Helper()
	var left []string
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "slotreg-") {
			left = append(left, "netns "+f[0])
		}
	}
	out, err = exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -o link: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, "sr-") || strings.HasPrefix(name, "slotreg-") {
			left = append(left, "link "+name)
		}
	}
	return left
}

// fault runs a fault command of cluster.sh and fails the test if it fails.
func (c *scriptCluster) fault(args ...string) {
	c.t.Helper()
	if out, err := c.run(args...); err != nil {
		c.t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// partition: cluster.sh partition A [B...] [-- C [D...]].
func (c *scriptCluster) partition(args ...string) {
	c.t.Helper()
	c.fault(append([]string{"partition"}, args...)...)
}

// slow: cluster.sh slow ID DELAY [LOSS%] (no LOSS when loss is "").
func (c *scriptCluster) slow(id, delay, loss string) {
	c.t.Helper()
	args := []string{"slow", id, delay}
	if loss != "" {
		args = append(args, loss)
	}
	c.fault(args...)
}

// heal: cluster.sh heal.
func (c *scriptCluster) heal() {
	c.t.Helper()
	c.fault("heal")
}

// netemAvailable says whether the kernel has the netem qdisc, probed on
// the loopback of one of the cluster's namespaces.
func netemAvailable(t *testing.T, ns string) bool {
	t.Helper()
	if exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms").Run() != nil {
		return false
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root").CombinedOutput(); err != nil {
		t.Fatalf("removing the netem probe: %v\n%s", err, out)
	}
	return true
}

// nsOthers lists the processes (pid and command) in namespace ns other
// than pid.
func nsOthers(t *testing.T, ns string, pid int) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "pids", ns).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns pids %s: %v\n%s", ns, err, out)
	}
	var others []string
	for _, f := range strings.Fields(string(out)) {
		if f == strconv.Itoa(pid) {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + f + "/comm")
		others = append(others, f+" "+strings.TrimSpace(string(comm)))
	}
	return others
}

// dialErr dials addr from the root namespace with a short timeout.
func dialErr(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err == nil {
		conn.Close()
	}
	return err
}

// silentTimeout: err is a timeout, not a refused or reset connection.
func silentTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout() &&
		!errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ECONNRESET)
}

// nsDial dials host:port with bash's /dev/tcp from inside namespace ns,
// giving up after 2 s: nil if it connected, else an error saying
// whether it timed out (exit 124 of timeout) or failed otherwise.
func nsDial(ns, host string, port int) (timedOut bool, err error) {
	cmd := exec.Command("timeout", "2", "ip", "netns", "exec", ns, "bash", "-c",
		"exec 3<>/dev/tcp/"+host+"/"+strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 124 {
		return true, err
	}
	if err != nil {
		return false, errors.New(err.Error() + ": " + strings.TrimSpace(string(out)))
	}
	return false, nil
}

// quickClient is a go-redis client that neither retries nor waits long, for
// probing nodes that may be cut off.
func quickClient(t *testing.T, addr string, timeout time.Duration) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolSize: 1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// pingRTT is the fastest of n PING round trips on c.
func pingRTT(c *redis.Client, n int) (time.Duration, error) {
	best := time.Duration(-1)
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := c.Ping(context.Background()).Err(); err != nil {
			return 0, err
		}
		if d := time.Since(start); best < 0 || d < best {
			best = d
		}
	}
	return best, nil
}
