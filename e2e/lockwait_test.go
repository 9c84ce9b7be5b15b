package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
)

// LOCK ... WAIT blocks until the lock is granted, in arrival order across
// sessions; closing the holder's connection hands the lock on; a wait
// that passes answers null and leaves the queue; bad WAITs get an error.
func TestLockWaitServesInArrivalOrder(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustCluster(t, 2)
	holder := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	defer holder.Close()
	if tok, err := holder.Do(ctxT(t), "LOCK", "master", "m0", 30000).Uint64(); err != nil || tok == 0 {
		t.Fatalf("LOCK: %d %v", tok, err)
	}
	type grant struct {
		owner string
		token uint64
		err   error
		c     *redis.Client
	}
	grants := make(chan grant, 4)
	for i := 1; i <= 4; i++ {
		c := redis.NewClient(&redis.Options{Addr: cl.Sessions[i%2].Addr(), PoolSize: 1, ReadTimeout: 40 * time.Second})
		defer c.Close()
		owner := fmt.Sprintf("m%d", i)
		go func() {
			tok, err := c.Do(context.Background(), "LOCK", "master", owner, 30000, "WAIT", 30000).Uint64()
			grants <- grant{owner, tok, err, c}
		}()
		// The next waiter arrives once this one is in the queue.
		waitQueue(t, holder, "master", i)
	}
	// None is answered while m0 holds the lock.
	select {
	case g := <-grants:
		t.Fatalf("%s answered while m0 holds the lock: %+v", g.owner, g)
	case <-time.After(300 * time.Millisecond):
	}
	// m0's connection closes: m1 gets it; each then unlocks in turn.
	holder.Close()
	var last uint64
	for i := 1; i <= 4; i++ {
		select {
		case g := <-grants:
			if g.err != nil || g.owner != fmt.Sprintf("m%d", i) || g.token <= last {
				t.Fatalf("grant %d: %+v (last token %d)", i, g, last)
			}
			last = g.token
			if n, err := g.c.Do(ctxT(t), "UNLOCK", "master", g.owner).Int64(); err != nil || n != 1 {
				t.Fatalf("UNLOCK by %s: %d %v", g.owner, n, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("grant %d did not come", i)
		}
	}
	// A wait that passes: null, and the lock's next taker is not held up.
	a := mustClient(t, cl.Sessions[0].Addr())
	b := mustClient(t, cl.Sessions[1].Addr())
	if err := a.Do(ctxT(t), "LOCK", "job", "a", 30000).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Do(ctxT(t), "LOCK", "job", "b", 30000, "WAIT", 200).Err(); err != redis.Nil {
		t.Fatalf("a wait that passed: %v, want null", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("WAIT 200 answered after %v", took)
	}
	if err := a.Do(ctxT(t), "UNLOCK", "job", "a").Err(); err != nil {
		t.Fatal(err)
	}
	if tok, err := a.Do(ctxT(t), "LOCK", "job", "c", 30000).Uint64(); err != nil || tok == 0 {
		t.Fatalf("after the waiter gave up, LOCK by another: %d %v", tok, err)
	}
	for _, cmd := range [][]any{
		{"LOCK", "job", "x", 1000, "WAIT", 0}, {"LOCK", "job", "x", 1000, "WAIT", -5},
		{"LOCK", "job", "x", 1000, "WAIT", 600001}, {"LOCK", "job", "x", 1000, "WAIT"},
		{"LOCK", "job", "x", 1000, "LATER", 10}, {"LOCK", "job", "x", 1000, "WAIT", "soon"},
	} {
		err := b.Do(ctxT(t), cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "ERR ") {
			t.Errorf("%v: %v, want an ERR reply", cmd, err)
		}
	}
}

// waitQueue waits until LOCKINFO counts n waiters for the lock.
func waitQueue(t *testing.T, c *redis.Client, name string, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		v, err := c.Do(ctxT(t), "LOCKINFO", name).Slice()
		if err != nil || len(v) != 4 {
			return false, fmt.Sprintf("LOCKINFO %s: %v %v", name, v, err)
		}
		return v[3] == int64(n), fmt.Sprintf("LOCKINFO %s: %v, want %d waiters", name, v, n)
	})
}
