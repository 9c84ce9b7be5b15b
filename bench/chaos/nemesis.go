package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Cluster is what the nemesis needs of a running cluster: the nodes by
// role, and the faults (bench.ScriptCluster in network-namespace mode).
type Cluster interface {
	IDs(ctx context.Context, role string) ([]string, error)
	MetaLeader(ctx context.Context) (string, error)
	Partition(ctx context.Context, args ...string) error
	Heal(ctx context.Context) error
	Kill(ctx context.Context, id string) error
	Start(ctx context.Context, id string) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Slow(ctx context.Context, id, delay, loss string) error
	// Addrs lists the running nodes' addresses of a role (for meta, the
	// RPC address).
	Addrs(ctx context.Context, role string) ([]string, error)
}

// A Fault is one kind of trouble: inject starts it and returns what ends
// it. Names are stable, for reports and for choosing kinds.
type Fault struct {
	Name   string
	inject func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error
}

// Faults lists every kind the nemesis knows, by name.
var Faults = []Fault{
	{"kill-data", restartAfter("data")},
	{"kill-meta", restartAfter("meta")},
	{"kill-meta-leader", killMetaLeader},
	{"pause-data", pauseFor("data")},
	{"pause-session", pauseFor("session")},
	{"pause-meta-leader", pauseMetaLeader},
	{"isolate-data", isolate("data")},
	{"isolate-session", isolate("session")},
	{"isolate-meta", isolate("meta")},
	{"isolate-meta-leader", isolateMetaLeader},
	// Issue 19: a data node cut off, healed, then at once the meta leader.
	{"isolate-data-then-meta-leader", isolateDataThenMetaLeader},
	{"split-session-data", splitRoles("session", "data")},
	{"split-data-meta", splitRoles("data", "meta")},
	{"split-session-meta", splitRoles("session", "meta")},
	{"slow-data", slowLink("data")},
	{"lossy-session", lossyLink("session")},
	{"move-slots", moveSlots},
}

// FaultsNamed picks faults by name; an unknown name is an error naming
// the known ones.
func FaultsNamed(names []string) ([]Fault, error) {
	var out []Fault
	for _, n := range names {
		i := slices.IndexFunc(Faults, func(f Fault) bool { return f.Name == n })
		if i < 0 {
			known := make([]string, len(Faults))
			for j, f := range Faults {
				known[j] = f.Name
			}
			return nil, fmt.Errorf("chaos: no fault %q (known: %s)", n, strings.Join(known, ", "))
		}
		out = append(out, Faults[i])
	}
	return out, nil
}

// NemesisOptions shape a fault schedule.
type NemesisOptions struct {
	Faults   []Fault       // default: all
	Hold     time.Duration // how long a fault lasts, at most; default 8 s
	MinHold  time.Duration // how long it lasts at least; default Hold/2
	Recover  time.Duration // quiet time after each fault; default 5 s
	Seed     uint64        // 0: from the clock
	Log      func(format string, args ...any)
	Duration time.Duration // stop starting faults after this long
}

// Injected is one fault the nemesis ran.
type Injected struct {
	Name       string
	Start, End time.Time
	Err        error
}

// RunNemesis injects faults, one at a time, until Duration passes or ctx
// ends, healing each before the next; it returns what it injected. An
// error injecting a fault is recorded and the nemesis goes on after a
// heal.
func RunNemesis(ctx context.Context, c Cluster, o NemesisOptions) []Injected {
	if len(o.Faults) == 0 {
		o.Faults = Faults
	}
	if o.Hold == 0 {
		o.Hold = 8 * time.Second
	}
	if o.MinHold == 0 || o.MinHold > o.Hold {
		o.MinHold = o.Hold / 2
	}
	if o.Recover == 0 {
		o.Recover = 5 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	logf := o.Log
	o.Log = func(format string, args ...any) { // stamped, to line faults up with violations
		logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 1))
	o.Log("nemesis: seed %d, %d kinds of fault", o.Seed, len(o.Faults))
	end := time.Now().Add(o.Duration)
	var done []Injected
	for time.Now().Before(end) && ctx.Err() == nil {
		f := o.Faults[rng.IntN(len(o.Faults))]
		hold := o.MinHold + time.Duration(rng.Int64N(int64(o.Hold-o.MinHold)+1))
		in := Injected{Name: f.Name, Start: time.Now()}
		o.Log("nemesis: %s for %v", f.Name, hold.Round(time.Millisecond))
		in.Err = f.inject(ctx, c, rng, hold, o.Log)
		o.Log("nemesis: %s healed", f.Name)
		if in.Err != nil {
			o.Log("nemesis: %s: %v", f.Name, in.Err)
			_ = c.Heal(context.WithoutCancel(ctx))
		}
		in.End = time.Now()
		done = append(done, in)
		sleep(ctx, o.Recover)
	}
	return done
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func pick(ctx context.Context, c Cluster, rng *rand.Rand, role string) (string, error) {
	ids, err := c.IDs(ctx, role)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("no %s node", role)
	}
	return ids[rng.IntN(len(ids))], nil
}

func restartAfter(role string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, role)
		if err != nil {
			return err
		}
		return killRestart(ctx, c, id, hold, log)
	}
}

// moveSlots moves the leadership of a few random slots to random data
// nodes (MOVESLOT, as registryctl move does) under the load: handoffs,
// with their freeze and drain, in the middle of everything. Moves meta
// refuses (the node leads the slot already, a move is under way) are
// logged and skipped.
func moveSlots(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
	metas, err := c.Addrs(ctx, "meta")
	if err != nil {
		return err
	}
	data, err := c.IDs(ctx, "data")
	if err != nil {
		return err
	}
	if len(metas) == 0 || len(data) == 0 {
		return errors.New("chaos: move-slots: no meta or no data node running")
	}
	l := metaclient.NewLeader(metaclient.LeaderOptions{Metas: metas})
	defer l.Close()
	for range 4 {
		m := proto.MoveSlot{Slot: rng.IntN(slot.Count), To: data[rng.IntN(len(data))]}
		if _, err := l.Do(ctx, m.Args()...); err != nil {
			log("nemesis: move slot %d to %s: %v", m.Slot, m.To, err)
			continue
		}
		log("nemesis: moving slot %d to %s", m.Slot, m.To)
	}
	sleep(ctx, hold)
	return nil
}

func killRestart(ctx context.Context, c Cluster, id string, hold time.Duration, log func(string, ...any)) error {
	log("nemesis: kill -9 %s", id)
	if err := c.Kill(ctx, id); err != nil {
		return err
	}
	sleep(ctx, hold)
	return c.Start(context.WithoutCancel(ctx), id)
}

func killMetaLeader(ctx context.Context, c Cluster, _ *rand.Rand, hold time.Duration, log func(string, ...any)) error {
	id, err := c.MetaLeader(ctx)
	if err != nil {
		return err
	}
	return killRestart(ctx, c, id, hold, log)
}

func pauseFor(role string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, role)
		if err != nil {
			return err
		}
		return pauseResume(ctx, c, id, hold, log)
	}
}

func pauseResume(ctx context.Context, c Cluster, id string, hold time.Duration, log func(string, ...any)) error {
	log("nemesis: SIGSTOP %s", id)
	if err := c.Pause(ctx, id); err != nil {
		return err
	}
	sleep(ctx, hold)
	return c.Resume(context.WithoutCancel(ctx), id)
}

func pauseMetaLeader(ctx context.Context, c Cluster, _ *rand.Rand, hold time.Duration, log func(string, ...any)) error {
	id, err := c.MetaLeader(ctx)
	if err != nil {
		return err
	}
	return pauseResume(ctx, c, id, hold, log)
}

func isolate(role string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, role)
		if err != nil {
			return err
		}
		return cutOff(ctx, c, hold, log, id)
	}
}

func cutOff(ctx context.Context, c Cluster, hold time.Duration, log func(string, ...any), args ...string) error {
	log("nemesis: partition %s", strings.Join(args, " "))
	if err := c.Partition(ctx, args...); err != nil {
		return err
	}
	sleep(ctx, hold)
	return c.Heal(context.WithoutCancel(ctx))
}

func isolateMetaLeader(ctx context.Context, c Cluster, _ *rand.Rand, hold time.Duration, log func(string, ...any)) error {
	id, err := c.MetaLeader(ctx)
	if err != nil {
		return err
	}
	return cutOff(ctx, c, hold, log, id)
}

func isolateDataThenMetaLeader(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
	if err := isolate("data")(ctx, c, rng, hold, log); err != nil {
		return err
	}
	return isolateMetaLeader(ctx, c, rng, hold, log)
}

// splitRoles cuts one node of role a off from every node of role b.
func splitRoles(a, b string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, a)
		if err != nil {
			return err
		}
		others, err := c.IDs(ctx, b)
		if err != nil {
			return err
		}
		return cutOff(ctx, c, hold, log, append([]string{id, "--"}, others...)...)
	}
}

func slowLink(role string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, role)
		if err != nil {
			return err
		}
		log("nemesis: slow %s 50ms", id)
		if err := c.Slow(ctx, id, "50ms", ""); err != nil {
			return err
		}
		sleep(ctx, hold)
		return c.Heal(context.WithoutCancel(ctx))
	}
}

func lossyLink(role string) func(context.Context, Cluster, *rand.Rand, time.Duration, func(string, ...any)) error {
	return func(ctx context.Context, c Cluster, rng *rand.Rand, hold time.Duration, log func(string, ...any)) error {
		id, err := pick(ctx, c, rng, role)
		if err != nil {
			return err
		}
		log("nemesis: 20%% loss on %s", id)
		if err := c.Slow(ctx, id, "0ms", "20"); err != nil {
			return err
		}
		sleep(ctx, hold)
		return c.Heal(context.WithoutCancel(ctx))
	}
}
