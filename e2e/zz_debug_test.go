package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestZZHandoverBetweenSessions(t *testing.T) {
	cl := mustCluster(t, 2)
	a := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), PoolSize: 1})
	b := redis.NewClient(&redis.Options{Addr: cl.Sessions[1].Addr(), PoolSize: 1})
	defer b.Close()
	register(t, a, "hsvc", "r1", "d")
	register(t, a, "hsvc", "r2", "d")
	register(t, b, "hsvc", "r1", "d")
	register(t, b, "hsvc", "r2", "d")
	a.Close()
	for i := 0; i < 30; i++ {
		_, set := lookup(t, b, "hsvc")
		if fmt.Sprint(set) != "[r1=d r2=d]" {
			t.Fatalf("after %d00ms: %v", i, set)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
