package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// lookup runs LOOKUP id and decodes [version, [[rid, data]...]].
func lookup(ctx context.Context, c *redis.Client, id string) (*push, error) {
	v, err := c.Do(ctx, proto.CmdLookup, id).Slice()
	if err != nil {
		return nil, err
	}
	return decodeLookup(id, v)
}

// decodeLookup decodes a LOOKUP reply of id.
func decodeLookup(id string, v []any) (*push, error) {
	if len(v) != 2 {
		return nil, fmt.Errorf("lookup %s: reply of %d elements", id, len(v))
	}
	ver, ok := v[0].(int64)
	if !ok {
		return nil, fmt.Errorf("lookup %s: version is %T", id, v[0])
	}
	p := &push{Push: proto.Push{DataInfoID: id, Version: uint64(ver)}}
	pubs, _ := v[1].([]any)
	for _, e := range pubs {
		pair, _ := e.([]any)
		if len(pair) != 2 {
			return nil, fmt.Errorf("lookup %s: publisher entry %v", id, e)
		}
		rid, _ := pair[0].(string)
		data, _ := pair[1].(string)
		p.Publishers = append(p.Publishers, proto.PushEntry{RegisterID: rid, Data: data})
	}
	return p, nil
}

// LookupConfig drives the lookup scenario: Services services with
// PerService publishers each are registered first, then Clients
// connections LOOKUP random services for Duration.
type LookupConfig struct {
	Addrs      []string
	Clients    int
	Services   int
	PerService int
	Duration   time.Duration
	DataSize   int
	Progress   *Progress
}

// Lookup runs the lookup scenario.
func Lookup(ctx context.Context, cfg LookupConfig) (*Result, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("lookup: no address")
	}
	cfg.Clients = cmp.Or(max(cfg.Clients, 0), 50)
	cfg.Services = cmp.Or(max(cfg.Services, 0), 100)
	cfg.PerService = cmp.Or(max(cfg.PerService, 0), 10)
	cfg.Duration = cmp.Or(max(cfg.Duration, 0), 10*time.Second)
	prefix := runPrefix("lookup")
	_, f, err := runRegister(ctx, RegisterConfig{
		Addrs: cfg.Addrs, Clients: cfg.Clients, Publishers: cfg.Services * cfg.PerService, Services: cfg.Services,
		Duration: 5 * time.Minute, OnePass: true, DataSize: cfg.DataSize, Prefix: prefix,
	})
	defer f.Close()
	if err != nil {
		return nil, fmt.Errorf("lookup: registering: %w", err)
	}
	clients := dialN(cfg.Clients, cfg.Addrs...)
	defer closeAll(clients)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var ops, errs, short atomic.Int64
	var firstErr atomic.Value
	hist := NewHistogram()
	stop := cfg.Progress.track("slotreg lookup", &ops, &errs)
	start := time.Now()
	var wg sync.WaitGroup
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := NewHistogram()
			defer hist.Merge(h)
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for runCtx.Err() == nil {
				svc := serviceName(prefix, rng.IntN(cfg.Services))
				t0 := time.Now()
				p, err := lookup(runCtx, c, svc)
				if err != nil {
					if runCtx.Err() != nil {
						return
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				h.Record(time.Since(t0))
				ops.Add(1)
				if len(p.Publishers) != cfg.PerService {
					short.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	res := &Result{Scenario: "lookup", Target: TargetSlotreg, Params: map[string]any{
		"clients": cfg.Clients, "services": cfg.Services, "publishers_per_service": cfg.PerService,
		"duration_s": cfg.Duration.Seconds(), "sessions": len(cfg.Addrs),
	}}
	res.timed(ops.Load(), errs.Load(), elapsed, hist)
	res.Add("lookups with a publisher count other than registered", float64(short.Load()), "")
	if e := firstErr.Load(); e != nil {
		res.Note("first error: %v", e)
	}
	return res, nil
}
