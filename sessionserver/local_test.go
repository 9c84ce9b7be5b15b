package sessionserver_test

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/proto"
)

// Where the data nodes share the session's process, a write goes by call,
// on the client's goroutine when nothing waits for that node, else
// through the send loop in batches. Either way one connection's writes
// are applied in the order it sent them: each connection here pipelines
// register, replace, unregister and register again of its own key, many
// connections at once so that both paths are taken, and every key ends
// as the last write left it, with versions that rose write by write.
func TestLocalWritesKeepEachConnectionsOrder(t *testing.T) {
	cl, ctx := startCluster(t, cluster.Options{Data: 2, Sessions: 1, InProcess: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	const conns, rounds = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rdb := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr(), Protocol: 2, DisableIdentity: true, PoolSize: 1})
			defer rdb.Close()
			for r := range rounds {
				id := fmt.Sprintf("order.svc.%d.%d", c, r%4)
				p := rdb.Pipeline()
				v1 := p.Do(ctx, proto.CmdRegister, id, "k", "v1")
				v2 := p.Do(ctx, proto.CmdRegister, id, "k", "v2")
				p.Do(ctx, proto.CmdUnregister, id, "k")
				v3 := p.Do(ctx, proto.CmdRegister, id, "k", fmt.Sprint("v3-", r))
				if _, err := p.Exec(ctx); err != nil {
					errs <- fmt.Errorf("%s: %v", id, err)
					return
				}
				a, b, d := v1.Val().(int64), v2.Val().(int64), v3.Val().(int64)
				if !(a < b && b < d) {
					errs <- fmt.Errorf("%s: versions %d, %d, %d do not rise in the order sent", id, a, b, d)
					return
				}
				got, err := rdb.Do(ctx, proto.CmdLookup, id).Slice()
				if err != nil {
					errs <- fmt.Errorf("LOOKUP %s: %v", id, err)
					return
				}
				pubs := got[1].([]any)
				if len(pubs) != 1 || pubs[0].([]any)[1] != fmt.Sprint("v3-", r) {
					errs <- fmt.Errorf("%s after round %d: %v, want [k v3-%d]", id, r, pubs, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var calls uint64
	for _, d := range cl.Data {
		calls += d.Stats().CallBatches
	}
	if calls == 0 {
		t.Error("no write went by call")
	}
}
