// Command scheduler is a workflow scheduler's use of slotreg, in the shape
// of DolphinScheduler's registry center: masters elect one active master
// through a waiting global lock; workers register ephemeral paths under
// /nodes/worker/<group>/<id>; the active master watches the workers and
// hands a dead worker's tasks to the living. Tasks are PERSISTENT paths
// /scheduler/tasks/<task> whose value is the worker that runs it, so they
// outlive every process and a restart of the registry.
//
//	go run ./examples/scheduler --role master --id m1 --sessions 127.0.0.1:19061,127.0.0.1:19062
//	go run ./examples/scheduler --role worker --id w1 --sessions 127.0.0.1:19062,127.0.0.1:19061
//
// It prints one line per thing it does (ACTIVE, ASSIGN, RUN), which the
// e2e test reads.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/proto"
)

const (
	masterLock  = "/scheduler/master"
	activePath  = "/scheduler/active"
	tasksDir    = "/scheduler/tasks"
	workersDir  = "/nodes/worker/default"
	unassigned  = "-"
	callTimeout = 10 * time.Second
)

func main() {
	role := flag.String("role", "worker", "master or worker")
	id := flag.String("id", "", "this process's name (default: host/pid)")
	sessions := flag.String("sessions", "127.0.0.1:9600", "session addresses, comma-separated, in order of preference")
	tasks := flag.Int("tasks", 12, "master: the tasks to keep assigned")
	lockTTL := flag.Duration("lock-ttl", 5*time.Second, "master: the master lock's TTL")
	flag.Parse()
	if *id == "" {
		host, _ := os.Hostname()
		*id = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.New(client.Options{Sessions: strings.Split(*sessions, ","), Identity: *id, ClientName: *role + "-" + *id, LockTTL: *lockTTL})
	if err == nil {
		defer c.Close()
		c.OnStateChange(func(s client.State) { say("STATE %s %s", *id, s) })
		switch *role {
		case "master":
			err = master(ctx, c, *id, *tasks)
		case "worker":
			err = worker(ctx, c, *id)
		default:
			err = fmt.Errorf("--role is master or worker, not %q", *role)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		os.Exit(1)
	}
}

// say prints one line the test (or a reader) follows.
func say(format string, a ...any) { fmt.Printf(format+"\n", a...) }

// master waits for the master lock, then keeps every task assigned to a
// live worker until ctx ends or it loses the lock.
func master(ctx context.Context, c *client.Client, id string, tasks int) error {
	say("STANDBY %s", id)
	token, err := c.AcquireLock(ctx, masterLock)
	if err != nil {
		return err
	}
	lost := make(chan client.LockLoss, 1)
	c.OnLockLost(func(l client.LockLoss) { lost <- l })
	say("ACTIVE %s token %d", id, token)
	if err := call(ctx, func(ctx context.Context) error { return c.Put(ctx, activePath, id, true) }); err != nil {
		return err
	}
	m := &scheduler{c: c, live: map[string]bool{}, events: make(chan client.Event, 1024)}
	w, err := c.Watch(ctx, workersDir+"/", func(ev client.Event) { m.events <- ev })
	if err != nil {
		return err
	}
	defer w.Close()
	if err := m.takeOver(ctx, tasks); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l := <-lost:
			// Another master may hold it now: stop scheduling at once.
			return fmt.Errorf("lost the master lock: %v", l)
		case ev := <-m.events:
			if err := m.apply(ctx, ev); err != nil {
				return err
			}
		}
	}
}

// scheduler is the active master's view: live workers and assignments.
type scheduler struct {
	c      *client.Client
	live   map[string]bool
	tasks  map[string]string // task -> worker
	events chan client.Event
}

// takeOver reads the tasks (creating the missing ones) and reassigns
// those whose worker is gone: it may have died while no master was
// active.
func (m *scheduler) takeOver(ctx context.Context, n int) error {
	m.tasks = map[string]string{}
	for i := range n {
		task := fmt.Sprintf("t%02d", i)
		var v string
		var ok bool
		if err := call(ctx, func(ctx context.Context) (err error) {
			v, _, ok, err = m.c.Get(ctx, tasksDir+"/"+task)
			return err
		}); err != nil {
			return err
		}
		if !ok {
			v = unassigned
		}
		m.tasks[task] = v
	}
	workers, err := m.workers(ctx)
	if err != nil {
		return err
	}
	for _, w := range workers {
		m.live[w] = true
	}
	return m.rebalance(ctx)
}

func (m *scheduler) workers(ctx context.Context) (ws []string, err error) {
	err = call(ctx, func(ctx context.Context) (err error) {
		ws, err = m.c.Children(ctx, workersDir)
		return err
	})
	return ws, err
}

// apply follows one worker event.
func (m *scheduler) apply(ctx context.Context, ev client.Event) error {
	w := ev.Path[strings.LastIndexByte(ev.Path, '/')+1:]
	switch ev.Type {
	case client.EventAdd:
		m.live[w] = true
	case client.EventRemove:
		delete(m.live, w)
		say("WORKER-GONE %s", w)
	default:
		return nil
	}
	return m.rebalance(ctx)
}

// rebalance gives every task whose worker is not live to the live
// worker with the fewest tasks.
func (m *scheduler) rebalance(ctx context.Context) error {
	if len(m.live) == 0 {
		return nil
	}
	load := map[string]int{}
	for _, w := range m.tasks {
		if m.live[w] {
			load[w]++
		}
	}
	for _, task := range slices.Sorted(maps.Keys(m.tasks)) {
		if m.live[m.tasks[task]] {
			continue
		}
		best := ""
		for _, w := range slices.Sorted(maps.Keys(m.live)) {
			if best == "" || load[w] < load[best] {
				best = w
			}
		}
		if err := call(ctx, func(ctx context.Context) error {
			return m.c.Put(ctx, tasksDir+"/"+task, best, false)
		}); err != nil {
			return err
		}
		say("ASSIGN %s %s (was %s)", task, best, m.tasks[task])
		m.tasks[task] = best
		load[best]++
	}
	return nil
}

// worker registers itself and runs the tasks assigned to it.
func worker(ctx context.Context, c *client.Client, id string) error {
	if err := call(ctx, func(ctx context.Context) error { return c.Put(ctx, workersDir+"/"+id, "up", true) }); err != nil {
		return err
	}
	say("WORKER %s", id)
	w, err := c.Watch(ctx, tasksDir+"/", func(ev client.Event) {
		if ev.Type != client.EventRemove && ev.Value == id {
			say("RUN %s %s", id, ev.Path[len(tasksDir)+1:])
		}
	})
	if err != nil {
		return err
	}
	defer w.Close()
	<-ctx.Done()
	return ctx.Err()
}

// call runs one registry call with its own deadline, again while the
// registry answers that it could not yet (a slot changing leader).
func call(ctx context.Context, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	for {
		err := f(cctx)
		if !errors.Is(err, proto.ErrTimeout) && !errors.Is(err, proto.ErrUnavailable) || cctx.Err() != nil {
			return err
		}
		select {
		case <-cctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}
