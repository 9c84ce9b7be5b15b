package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
)

// TestNetnsPartitionTooling checks scripts/cluster.sh's network-namespace
// mode and its fault commands (partition, slow, heal) against a real
// cluster: addresses, silent drops both ways, and that heal undoes them.
func TestNetnsPartitionTooling(t *testing.T) {
	c := mustNetnsCluster(t, "SLOTREG_LEASE=3s")
	start := time.Now()

	// Every node listens on its own namespace address, with the loopback
	// mode's ports.
	ports := map[string]int{
		"meta1": c.base + 21, "meta2": c.base + 22, "meta3": c.base + 23,
		"data1": c.base + 41, "data2": c.base + 42, "data3": c.base + 43,
		"session1": c.base + 61, "session2": c.base + 62,
	}
	st := c.status()
	if len(st) != len(ports) {
		t.Fatalf("status: %d nodes, want %d: %+v", len(st), len(ports), st)
	}
	for _, n := range st {
		want := netnsAddr[n.id] + ":" + strconv.Itoa(ports[n.id])
		if n.addr != want || !n.up {
			t.Errorf("status %s: address %s up=%v, want %s up", n.id, n.addr, n.up, want)
		}
		// The pid is the registry process itself (ip netns exec execs it).
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.pid)); err != nil || exe != registryBin {
			t.Errorf("%s: pid %d runs %q (%v), want %s", n.id, n.pid, exe, err, registryBin)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	s1, s2 := c.node("session1").addr, c.node("session2").addr

	// A client in the root namespace registers through session1 and looks
	// up through session2.
	a := mustClient(t, s1)
	b := mustClient(t, s2)
	register(t, a, "netns-svc", "r1", "10.0.0.1:80")
	if _, set := lookup(t, b, "netns-svc"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP via session2: %v", set)
	}

	// An established connection to session1, to see it stall.
	held := quickClient(t, s1, 500*time.Millisecond)
	if err := held.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING session1: %v", err)
	}

	// partition session1: cut off from every node and from the root
	// namespace, silently: a dial times out rather than being refused.
	c.partition("session1")
	if err := dialErr(s1, 500*time.Millisecond); !silentTimeout(err) {
		t.Fatalf("dial session1 while partitioned: %v, want a timeout", err)
	}
	if err := held.Ping(context.Background()).Err(); !silentTimeout(err) {
		t.Fatalf("PING on a connection to session1 made before the partition: %v, want a timeout", err)
	}
	if err := quickClient(t, s2, 2*time.Second).Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING session2 while session1 is partitioned: %v", err)
	}
	c.heal()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		err := quickClient(t, s1, 500*time.Millisecond).Ping(context.Background()).Err()
		return err == nil, fmt.Sprintf("PING session1 after heal: %v", err)
	})

	// partition data1 -- data2: only between those two, both ways.
	d1, d2, d3 := "slotreg-data1", "slotreg-data2", "slotreg-data3"
	mustNsDial := func(ns, id string) {
		t.Helper()
		if _, err := nsDial(ns, netnsAddr[id], ports[id]); err != nil {
			t.Fatalf("%s -> %s: %v", ns, id, err)
		}
	}
	mustNsTimeout := func(ns, id string) {
		t.Helper()
		if timedOut, err := nsDial(ns, netnsAddr[id], ports[id]); !timedOut {
			t.Fatalf("%s -> %s while partitioned: %v, want a timeout", ns, id, err)
		}
	}
	mustNsDial(d1, "data2")
	c.partition("data1", "--", "data2")
	mustNsTimeout(d1, "data2")
	mustNsTimeout(d2, "data1")
	mustNsDial(d1, "data3")
	mustNsDial(d3, "data2")
	if err := dialErr(c.node("data2").addr, 2*time.Second); err != nil {
		t.Fatalf("dial data2 from the root namespace while data1 -- data2 is partitioned: %v", err)
	}
	c.heal()
	mustNsDial(d1, "data2")
	mustNsDial(d2, "data1")

	t.Run("slow", func(t *testing.T) {
		c := &scriptCluster{t: t, base: c.base, dir: c.dir, env: c.env} // fail this subtest, not its parent
		if !netemAvailable(t, "slotreg-session2") {
			// slow then delays with iptables' NFQUEUE and scripts/netdelay.
			if _, err := exec.LookPath("iptables-legacy"); err != nil {
				t.Fatalf("this kernel has no netem qdisc, so slow needs iptables-legacy (apt-get install iptables; .ci/run does): %v", err)
			}
		}
		fast := quickClient(t, s2, 5*time.Second)
		if rtt, err := pingRTT(fast, 3); err != nil || rtt >= 100*time.Millisecond {
			t.Fatalf("PING session2 before slow: %v %v", rtt, err)
		}
		// DELAY applies to each direction: a round trip grows by twice
		// that, and a held connection feels it too.
		c.slow("session2", "200ms", "")
		rtt, err := pingRTT(fast, 3)
		if err != nil || rtt < 390*time.Millisecond || rtt > time.Second {
			t.Fatalf("PING session2 with slow 200ms: %v %v, want about 400ms (200ms each way)", rtt, err)
		}
		t.Logf("PING session2 with slow 200ms: %v", rtt)
		// A second slow replaces the first.
		c.slow("session2", "50ms", "")
		if rtt, err = pingRTT(fast, 3); err != nil || rtt < 95*time.Millisecond || rtt > 300*time.Millisecond {
			t.Fatalf("PING session2 after slow 50ms replaced 200ms: %v %v, want about 100ms", rtt, err)
		}
		t.Logf("PING session2 with slow 50ms: %v", rtt)
		// Loss, alone and with a delay: at 100% nothing gets through.
		for _, delay := range []string{"0ms", "100ms"} {
			c.slow("session2", delay, "100%")
			if err := dialErr(s2, 500*time.Millisecond); !silentTimeout(err) {
				t.Fatalf("dial session2 at slow %s 100%%: %v, want a timeout", delay, err)
			}
		}
		c.heal()
		testutil.Eventually(t, 10*time.Second, func() (bool, string) {
			rtt, err = pingRTT(quickClient(t, s2, 500*time.Millisecond), 3)
			return err == nil && rtt < 100*time.Millisecond, fmt.Sprintf("PING session2 after heal: %v %v", rtt, err)
		})
		t.Logf("PING session2 after heal: %v", rtt)
		// Nothing but the node itself is left running in its namespace
		// (no netdelay).
		if extra := nsOthers(t, "slotreg-session2", c.node("session2").pid); len(extra) > 0 {
			t.Fatalf("after heal, slotreg-session2 still runs %v", extra)
		}
	})

	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v, want under 60s", d)
	}
}

// TestNetnsFaultsRefused: the fault commands refuse a loopback cluster
// directory and unknown ids, with exit status 2.
func TestNetnsFaultsRefused(t *testing.T) {
	dir := t.TempDir()
	c := &scriptCluster{t: t, dir: dir, env: append(os.Environ(), "SLOTREG_CLUSTER_DIR="+dir, "SLOTREG_NETNS=")}
	for _, args := range [][]string{{"partition", "data1"}, {"slow", "data1", "100ms"}, {"heal"}} {
		out, err := c.run(args...)
		if code := exitCode(err); code != 2 || !strings.Contains(out, "network-namespace mode") {
			t.Errorf("cluster.sh %v on a loopback dir: exit %d\n%s", args, code, out)
		}
	}
	// Unknown ids are refused before anything else is looked at (in netns
	// mode too: the marker file makes this a netns directory).
	if err := os.WriteFile(dir+"/netns", []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return // the netns commands check for root first
	}
	for _, args := range [][]string{{"partition", "data0"}, {"partition", "data1", "--", "nosuch"}, {"slow", "meta4", "100ms"}, {"start", "session3"}} {
		out, err := c.run(args...)
		if code := exitCode(err); code != 2 || !strings.Contains(out, "no node") {
			t.Errorf("cluster.sh %v: exit %d\n%s", args, code, out)
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	return -1
}
