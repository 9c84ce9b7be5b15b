package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
)

// TestSchedulerExample runs examples/scheduler against a multi-process
// cluster: two masters, one active through the waiting lock; three
// workers; killing a worker (kill -9) gets its tasks reassigned; killing
// the active master gets the standby active within the lock's TTL, and
// it goes on reassigning. Then the whole cluster restarts: the tasks,
// PERSISTENT paths, are still there; the workers, ephemeral, are not.
func TestSchedulerExample(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes and 5 more")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "scheduler")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/scheduler").CombinedOutput(); err != nil {
		t.Fatalf("building examples/scheduler: %v\n%s", err, out)
	}
	c := mustScriptCluster(t)
	ss := c.byRole("session")
	orders := []string{ss[0].addr + "," + ss[1].addr, ss[1].addr + "," + ss[0].addr}
	const lockTTL = 5 * time.Second
	procs := map[string]*exec.Cmd{}
	start := func(role, id string, i int) {
		log, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--role", role, "--id", id, "--sessions", orders[i%2], "--lock-ttl", lockTTL.String())
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[id] = cmd
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("%s's output:\n%s", id, b)
			}
		})
	}
	start("master", "m1", 0)
	start("master", "m2", 1)
	for i, w := range []string{"w1", "w2", "w3"} {
		start("worker", w, i)
	}
	admin := mustClient(t, ss[0].addr)
	active := func() string {
		v, err := admin.Do(ctxT(t), "LOCKINFO", "/scheduler/master").Slice()
		if err != nil || len(v) < 1 {
			return ""
		}
		s, _ := v[0].(string)
		return s
	}
	// assigned waits until every task runs on one of the workers named.
	assigned := func(within time.Duration, workers ...string) {
		t.Helper()
		testutil.Eventually(t, within, func() (bool, string) {
			names, err := admin.Do(ctxT(t), "CHILDREN", "/scheduler/tasks").StringSlice()
			if err != nil || len(names) != 12 {
				return false, fmt.Sprintf("tasks: %v %v", names, err)
			}
			for _, task := range names {
				_, w, ok := getE(t, admin, "/scheduler/tasks/"+task)
				if !ok || !strings.Contains(" "+strings.Join(workers, " ")+" ", " "+w+" ") {
					return false, fmt.Sprintf("task %s runs on %q, want one of %v", task, w, workers)
				}
			}
			return true, ""
		})
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		a := active()
		return a == "m1" || a == "m2", fmt.Sprintf("active master %q", a)
	})
	assigned(30*time.Second, "w1", "w2", "w3")

	kill9 := func(id string) {
		t.Helper()
		if err := procs[id].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		procs[id].Wait()
	}
	kill9("w1")
	assigned(20*time.Second, "w2", "w3")

	first := active()
	standby := map[string]string{"m1": "m2", "m2": "m1"}[first]
	kill9(first)
	killed := time.Now()
	testutil.Eventually(t, 2*lockTTL, func() (bool, string) {
		return active() == standby, fmt.Sprintf("active master %q, want %s", active(), standby)
	})
	took := time.Since(killed)
	t.Logf("%s took over %v after %s was killed (lock TTL %v)", standby, took.Round(time.Millisecond), first, lockTTL)
	if took > lockTTL {
		t.Errorf("%s took over after %v, past the lock TTL %v", standby, took, lockTTL)
	}
	kill9("w2")
	assigned(20*time.Second, "w3")
	// The surviving worker runs what it was given.
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "w3.log"))
		ran := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if task, ok := strings.CutPrefix(line, "RUN w3 "); ok {
				ran[task] = true
			}
		}
		return len(ran) == 12, fmt.Sprintf("w3 ran %d distinct tasks", len(ran))
	})

	for id, p := range procs {
		if p.ProcessState == nil {
			kill9(id)
		}
	}
	if out, err := c.run("down"); err != nil {
		t.Fatalf("cluster.sh down: %v\n%s", err, out)
	}
	if out, err := c.run("up"); err != nil {
		t.Fatalf("cluster.sh up again: %v\n%s", err, out)
	}
	admin = mustClient(t, c.byRole("session")[1].addr)
	assigned(30*time.Second, "w3")
	if names, err := admin.Do(ctxT(t), "CHILDREN", "/nodes/worker/default").StringSlice(); err != nil || len(names) != 0 {
		t.Fatalf("after the restart, CHILDREN of the workers = %v %v, want none", names, err)
	}
}
