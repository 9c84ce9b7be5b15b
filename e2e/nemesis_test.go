package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/slotreg/slotreg/bench/chaos"
)

// nemesisTarget gives the nemesis a script cluster's faults, as errors
// rather than test failures (the nemesis goes on after a failed fault).
type nemesisTarget struct{ c *scriptCluster }

var _ chaos.Cluster = nemesisTarget{}

func (n nemesisTarget) do(args ...string) error {
	if out, err := n.c.run(args...); err != nil {
		return fmt.Errorf("cluster.sh %v: %v: %s", args, err, out)
	}
	return nil
}

// running lists a field of the role's running nodes.
func (n nemesisTarget) running(role string, field func(procNode) string) []string {
	var out []string
	for _, p := range n.c.byRole(role) {
		if p.up {
			out = append(out, field(p))
		}
	}
	return out
}

func (n nemesisTarget) IDs(_ context.Context, role string) ([]string, error) {
	return n.running(role, func(p procNode) string { return p.id }), nil
}

func (n nemesisTarget) Addrs(_ context.Context, role string) ([]string, error) {
	return n.running(role, func(p procNode) string { return p.addr }), nil
}

func (n nemesisTarget) MetaLeader(context.Context) (string, error) {
	return metaLeader(n.c.t, n.c.byRole("meta")).id, nil
}

func (n nemesisTarget) Partition(_ context.Context, args ...string) error {
	return n.do(append([]string{"partition"}, args...)...)
}

func (n nemesisTarget) Heal(context.Context) error { return n.do("heal") }

func (n nemesisTarget) Start(_ context.Context, id string) error { return n.do("start", id) }

func (n nemesisTarget) Slow(_ context.Context, id, delay, loss string) error {
	if loss != "" {
		return n.do("slow", id, delay, loss+"%")
	}
	return n.do("slow", id, delay)
}

func (n nemesisTarget) signal(id string, sig syscall.Signal) error {
	for _, p := range n.c.status() {
		if p.id == id && p.up {
			return syscall.Kill(p.pid, sig)
		}
	}
	return fmt.Errorf("%s is not running", id)
}

func (n nemesisTarget) Kill(_ context.Context, id string) error {
	return n.signal(id, syscall.SIGKILL)
}

func (n nemesisTarget) Pause(_ context.Context, id string) error {
	return n.signal(id, syscall.SIGSTOP)
}

func (n nemesisTarget) Resume(_ context.Context, id string) error {
	return n.signal(id, syscall.SIGCONT)
}

// TestNemesisShort is the short run of the nemesis: about a minute of
// randomized faults (SLOTREG_NEMESIS_SEED replays a schedule) under 8
// writers and a subscriber per session, with nothing lost, no false
// removal, no version going back, and agreement soon after the last heal.
func TestNemesisShort(t *testing.T) {
	c, run, ctx := startChaos(t, 4*time.Minute)
	faults := chaos.Faults // every kind; registry-bench chaos runs them longer
	seed, _ := strconv.ParseUint(os.Getenv("SLOTREG_NEMESIS_SEED"), 10, 64)
	injected := chaos.RunNemesis(ctx, nemesisTarget{c}, chaos.NemesisOptions{Faults: faults, Seed: seed,
		Hold: 6 * time.Second, Recover: 4 * time.Second, Duration: 40 * time.Second, Log: t.Logf})
	if err := (nemesisTarget{c}).Heal(ctx); err != nil {
		t.Error(err)
	}
	run.StopWriters()
	rep := run.Settle(ctx, 20*time.Second)
	t.Logf("%d faults; %s", len(injected), rep)
	for _, in := range injected {
		if in.Err != nil {
			t.Errorf("fault %s failed: %v", in.Name, in.Err)
		}
	}
	for _, v := range rep.Violations {
		t.Logf("%s %s %s: %s", v.At.Format("15:04:05.000"), v.Kind, v.Service, v.Detail)
	}
	if len(injected) == 0 || rep.Acked == 0 || rep.Pushes == 0 {
		t.Fatalf("no faults or no load: %d faults, %s", len(injected), rep)
	}
	// Removals a fenced session explained (rep.Fenced) are legitimate.
	if rep.FalseRemovals != 0 || rep.Lost != 0 || rep.Regressions != 0 || rep.Resurrected != 0 || !rep.Converged {
		t.Fatalf("%s", rep)
	}
}
