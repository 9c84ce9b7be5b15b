package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// ctl runs registryctl against the cluster's metas and returns its
// output and exit code.
func (c *scriptCluster) ctl(args ...string) (string, int) {
	c.t.Helper()
	var metas []string
	for _, m := range c.byRole("meta") {
		if m.up {
			metas = append(metas, m.addr)
		}
	}
	cmd := exec.Command(registryctlBin, append([]string{"--meta", strings.Join(metas, ",")}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("registryctl %v: %v", args, err)
	}
	return out.String(), code
}

func (c *scriptCluster) mustCtl(args ...string) string {
	c.t.Helper()
	out, code := c.ctl(args...)
	if code != 0 {
		c.t.Fatalf("registryctl %v: exit %d\n%s", args, code, out)
	}
	return out
}

// stopAndCheck stops the writers, checks that no write failed and waits
// until every watcher and lookup agrees with what the writers wrote.
func (r *failoverRig) stopAndCheck() {
	r.f.stopWriters()
	r.f.assertNoFailures()
	r.f.converge(15*time.Second, r.ws, r.lookups)
	r.f.convergePaths(15*time.Second, r.pvs)
}

// waitGone waits until meta's table no longer holds the data node id.
func (r *failoverRig) waitGone(t *testing.T, id string, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, within, func() (bool, string) {
		return !metaTable(t, r.c.byRole("meta")).HasNode(id), id + " still in the table"
	})
}

// killHalfwayThroughAMove starts moving slot s to target, kills victim
// (the target or the leader) before the move can end, and waits until the
// slot has a leader other than victim and no move in flight.
func (r *failoverRig) killHalfwayThroughAMove(t *testing.T, s int, target, victim string) {
	t.Helper()
	r.c.mustCtl("move-slot", fmt.Sprint(s), "--to", target, "--no-wait")
	kill(t, r.c.node(victim))
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		a := tab.Slots[s]
		return !tab.HasNode(victim) && a.Target == "" && a.Leader != "" && a.Leader != victim,
			fmt.Sprintf("slot %d: leader %s target %q", s, a.Leader, a.Target)
	})
}

// settle waits until nothing is moving and verify finds no difference.
func (r *failoverRig) settle(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		if n := len(tab.Moving()); n > 0 {
			return false, fmt.Sprintf("%d slots moving", n)
		}
		out, code := r.c.ctl("verify")
		return code == 0, "verify: " + out
	})
}

func TestRebalanceAfterAddingADataNode(t *testing.T) {
	r := mustRig(t, "SLOTREG_AUTO_REBALANCE=0")
	r.f.startWriters(20 * time.Millisecond)
	if out, err := r.c.run("start", "data4"); err != nil {
		t.Fatalf("start data4: %v\n%s", err, out)
	}
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		tab := metaTable(t, r.c.byRole("meta"))
		return len(tab.FollowedBy("data4")) > 0, "data4 holds no follower place"
	})
	if tab := metaTable(t, r.c.byRole("meta")); len(tab.LedBy("data4")) != 0 {
		t.Fatalf("data4 leads %d slots before any rebalance", len(tab.LedBy("data4")))
	}
	plan := r.c.mustCtl("rebalance", "--dry-run")
	if !strings.Contains(plan, "data4") {
		t.Fatalf("dry-run plan names no move to data4:\n%s", plan)
	}
	if tab := metaTable(t, r.c.byRole("meta")); len(tab.Moving()) != 0 {
		t.Fatal("--dry-run started moves")
	}
	r.c.mustCtl("rebalance", "--max-moves", "8")
	tab := metaTable(t, r.c.byRole("meta"))
	for _, n := range tab.Nodes {
		if c := len(tab.LedBy(n.ID)); c < slot.Count/4 || c > slot.Count/4+1 {
			t.Errorf("%s leads %d slots after rebalance", n.ID, c)
		}
	}
	r.stopAndCheck()
	r.settle(t)
}

func TestDrainThenKill(t *testing.T) {
	r := mustRig(t)
	r.f.startWriters(20 * time.Millisecond)
	r.c.mustCtl("drain", "data1")
	if tab := metaTable(t, r.c.byRole("meta")); len(tab.LedBy("data1")) != 0 {
		t.Fatalf("data1 still leads %d slots after drain", len(tab.LedBy("data1")))
	}
	kill(t, r.c.node("data1"))
	r.waitGone(t, "data1", 20*time.Second)
	r.stopAndCheck()
	r.settle(t)
}

func TestMoveSlotBackAndForthUnderLoad(t *testing.T) {
	r := mustRig(t, "SLOTREG_AUTO_REBALANCE=0")
	busy := r.f.services[0]
	s := slot.Of(busy)
	r.f.startWriters(10 * time.Millisecond)
	for i := 0; i < 20; i++ {
		tab := metaTable(t, r.c.byRole("meta"))
		to := tab.Slots[s].Followers[0]
		r.c.mustCtl("move-slot", fmt.Sprint(s), "--to", to)
		if tab := metaTable(t, r.c.byRole("meta")); tab.Slots[s].Leader != to {
			t.Fatalf("move %d: slot %d led by %s, want %s", i, s, tab.Slots[s].Leader, to)
		}
	}
	r.stopAndCheck()
	r.settle(t)
}

// TestKilledHalfwayThroughAMove kills a node in the middle of a move: the
// target (one that is not yet a follower where there is one, so it has to
// catch up first) or the slot's leader. The slot ends up led by a live
// node with no move in flight, and no write is lost.
func TestKilledHalfwayThroughAMove(t *testing.T) {
	for _, tc := range []struct {
		name       string
		service    int
		killTarget bool
	}{
		{name: "target", service: 1, killTarget: true},
		{name: "leader", service: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRig(t, "SLOTREG_AUTO_REBALANCE=0")
			r.f.startWriters(10 * time.Millisecond)
			tab := metaTable(t, r.c.byRole("meta"))
			s := slot.Of(r.f.services[tc.service])
			leader := tab.Slots[s].Leader
			target, victim := tab.Slots[s].Followers[0], leader
			if tc.killTarget {
				for _, n := range tab.Nodes {
					if n.ID != leader && !tab.Follows(n.ID, s) {
						target = n.ID
					}
				}
				victim = target
			}
			r.killHalfwayThroughAMove(t, s, target, victim)
			r.stopAndCheck()
			r.settle(t)
		})
	}
}

func TestRegistryctlErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	c := mustScriptCluster(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"move-slot", "300", "--to", "data1"}, "slot"},
		{[]string{"move-slot", "abc", "--to", "data1"}, "slot"},
		{[]string{"move-slot", "3", "--to", "no-such-node"}, "no-such-node"},
		{[]string{"drain", "no-such-node"}, "no-such-node"},
	} {
		out, code := c.ctl(tc.args...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("registryctl %v: exit %d, output %q; want a failure naming %q", tc.args, code, out, tc.want)
		}
	}
	out, err := exec.Command(registryctlBin, "--meta", "127.0.0.1:1", "nodes").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "127.0.0.1:1") {
		t.Errorf("no meta reachable: %v, %q", err, out)
	}
	// Meta followers record their RPC address with the leader shortly
	// after it is elected, so all three show up within a moment.
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		out := c.mustCtl("nodes")
		ok := strings.Contains(out, "data3") && strings.Contains(out, "session2")
		for _, m := range []string{"meta1", "meta2", "meta3"} {
			ok = ok && strings.Contains(out, m)
		}
		return ok, "nodes:\n" + out
	})
	if out := c.mustCtl("slots", "--map"); strings.Count(out, "\n") < 16 {
		t.Errorf("slots --map:\n%s", out)
	}
	if out, code := c.ctl("verify"); code != 0 {
		t.Errorf("verify on a quiet cluster: exit %d\n%s", code, out)
	}
}

// TestSIGTERMDrainsADataNode stops a data node the way an orchestrator
// does: it hands every slot off before it exits, so no write waits for a
// lease and nothing is lost.
func TestSIGTERMDrainsADataNode(t *testing.T) {
	r := mustRig(t)
	r.f.startWriters(20 * time.Millisecond)
	victim := r.c.node("data2")
	if err := syscall.Kill(victim.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 40*time.Second, func() (bool, string) {
		return !r.c.node("data2").up, "data2 still running"
	})
	logb, err := os.ReadFile(filepath.Join(r.c.dir, "data2.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logb), "drained: this node leads no slot") {
		t.Fatalf("data2 exited without draining; its log ends:\n%s", tail(string(logb), 10))
	}
	r.waitGone(t, "data2", 10*time.Second)
	r.stopAndCheck()
	r.settle(t)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
