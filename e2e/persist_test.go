package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
)

// PERSISTENT paths survive a restart of the whole cluster (every meta,
// data node and session stopped, then started on the same state); the
// ephemeral ones do not, their connections being gone.
func TestPersistentPathsSurviveAWholeClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes twice")
	}
	c := mustScriptCluster(t)
	sessions := c.byRole("session")
	a := redis.NewClient(&redis.Options{Addr: sessions[0].addr, MaxRetries: -1})
	want := map[string]string{}
	for i := range 20 {
		p := fmt.Sprintf("/ds/config/k%02d", i)
		want[p] = fmt.Sprintf("v%d", i)
		if err := a.Do(ctxT(t), "PUT", p, want[p], "PERSISTENT").Err(); err != nil {
			t.Fatalf("PUT %s PERSISTENT: %v", p, err)
		}
	}
	if err := a.Do(ctxT(t), "PUT", "/ds/nodes/w1", "up").Err(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if out, err := c.run("down"); err != nil {
		t.Fatalf("cluster.sh down: %v\n%s", err, out)
	}
	if out, err := c.run("up"); err != nil {
		t.Fatalf("cluster.sh up again: %v\n%s", err, out)
	}
	b := mustClient(t, c.byRole("session")[1].addr)
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		for p, v := range want {
			_, got, ok := getE(t, b, p)
			if !ok || got != v {
				return false, fmt.Sprintf("GET %s = %q %v after the restart, want %q", p, got, ok, v)
			}
		}
		return true, ""
	})
	if got := strs(t, b, "CHILDREN", "/ds"); fmt.Sprint(got) != "[config]" {
		t.Fatalf("CHILDREN /ds after the restart = %v (the ephemeral /ds/nodes/w1 must be gone)", got)
	}
}

// getE is GET without failing the test: ok is false for null or an
// error.
func getE(t *testing.T, c *redis.Client, path string) (uint64, string, bool) {
	ctx, cancel := context.WithTimeout(ctxT(t), 5*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "GET", path).Slice()
	if err != nil || len(v) != 2 {
		return 0, "", false
	}
	ver, _ := v[0].(int64)
	val, _ := v[1].(string)
	return uint64(ver), val, true
}
