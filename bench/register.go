package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// RegisterConfig drives the register scenario: Publishers publishers over
// Services services, written through Clients connections spread over
// Addrs. Publisher p belongs to service p%Services and always goes through
// connection p%Clients, so a connection-bound publisher keeps one owner.
type RegisterConfig struct {
	Addrs      []string
	Target     string // TargetSlotreg (REGISTER) or TargetRedis (SET)
	Clients    int
	Publishers int
	Services   int
	// Duration bounds the run; MaxOps, when > 0, too.
	Duration time.Duration
	MaxOps   int64
	// Rate is the total ops/s the clients keep to; 0 runs closed-loop, as
	// fast as the target answers.
	Rate     float64
	DataSize int
	TTL      int    // slotreg only: REGISTER ... TTL n when > 0
	Prefix   string // service names are Prefix+"svc-"+i
	// OnePass writes each publisher exactly once and stops (memory).
	OnePass bool
	// From skips the publishers below it, so a later pass can add to an
	// earlier one's.
	From     int
	Progress *Progress
}

func (c *RegisterConfig) defaults() error {
	if len(c.Addrs) == 0 {
		return errors.New("register: no address to write to")
	}
	if c.Target == "" {
		c.Target = TargetSlotreg
	}
	if c.Target != TargetSlotreg && c.Target != TargetRedis {
		return fmt.Errorf("register: unknown target %q", c.Target)
	}
	if c.Clients <= 0 {
		c.Clients = 50
	}
	if c.Publishers <= 0 {
		c.Publishers = 10000
	}
	if c.Services <= 0 {
		c.Services = 100
	}
	c.Clients = min(c.Clients, c.Publishers)
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.DataSize <= 0 {
		c.DataSize = 32
	}
	if c.Prefix == "" {
		c.Prefix = runPrefix("reg")
	}
	return nil
}

// runPrefix names a run's services so that runs against one cluster do
// not see each other's publishers.
func runPrefix(what string) string {
	return "bench-" + what + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-"
}

func serviceName(prefix string, i int) string { return prefix + "svc-" + strconv.Itoa(i) }

// fleet is the set of connections a register run wrote through; closing
// it removes their connection-bound publishers.
type fleet struct{ clients []*redis.Client }

func (f *fleet) Close() {
	if f != nil {
		closeAll(f.clients)
	}
}

// Register runs the register scenario and closes its connections.
func Register(ctx context.Context, cfg RegisterConfig) (*Result, error) {
	r, f, err := runRegister(ctx, cfg)
	f.Close()
	return r, err
}

// runRegister runs the register scenario and hands back its connections
// open, so their publishers stay registered.
func runRegister(ctx context.Context, cfg RegisterConfig) (*Result, *fleet, error) {
	if err := cfg.defaults(); err != nil {
		return nil, nil, err
	}
	f := &fleet{}
	for i := 0; i < cfg.Clients; i++ {
		f.clients = append(f.clients, dial(cfg.Addrs[i%len(cfg.Addrs)]))
	}
	for _, c := range f.clients[:min(len(f.clients), len(cfg.Addrs))] {
		if err := c.Ping(ctx).Err(); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("register: ping %s: %w", c.Options().Addr, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	var ops, errs atomic.Int64
	var firstErr atomic.Value
	hists := make([]*Histogram, cfg.Clients)
	stop := cfg.Progress.track(cfg.Target+" register", &ops, &errs)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Clients; w++ {
		hists[w] = NewHistogram()
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, h := f.clients[w], hists[w]
			var pace *pacer
			if cfg.Rate > 0 {
				pace = newPacer(cfg.Rate / float64(cfg.Clients))
			} else {
				pace = newPacer(0)
			}
			for p := cfg.From + w; pace.wait(ctx); p += cfg.Clients {
				if p >= cfg.Publishers {
					if cfg.OnePass {
						return
					}
					p = cfg.From + w
					if p >= cfg.Publishers {
						return
					}
				}
				if cfg.MaxOps > 0 && ops.Load()+errs.Load() >= cfg.MaxOps {
					return
				}
				t0 := time.Now()
				err := writeOne(ctx, c, &cfg, p, t0)
				if err != nil {
					if ctx.Err() != nil {
						return // the run ended under this request
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				h.Record(time.Since(t0))
				ops.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()

	res := &Result{
		Scenario: "register", Target: cfg.Target,
		Params: map[string]any{
			"clients": cfg.Clients, "publishers": cfg.Publishers, "services": cfg.Services,
			"duration_s": cfg.Duration.Seconds(), "data_bytes": cfg.DataSize, "rate": cfg.Rate, "ttl": cfg.TTL,
			"sessions": len(cfg.Addrs),
		},
	}
	res.timed(ops.Load(), errs.Load(), elapsed, hists...)
	if e := firstErr.Load(); e != nil {
		res.Note("first error: %v", e)
	}
	if res.Ops == 0 {
		return res, f, fmt.Errorf("register: no write succeeded against %v (errors %d)", cfg.Addrs, res.Errors)
	}
	return res, f, nil
}

// writeOne writes publisher p once.
func writeOne(ctx context.Context, c *redis.Client, cfg *RegisterConfig, p int, now time.Time) error {
	svc := serviceName(cfg.Prefix, p%cfg.Services)
	rid := "r" + strconv.Itoa(p)
	data := stampData(now, cfg.DataSize)
	if cfg.Target == TargetRedis {
		return c.Set(ctx, svc+"/"+rid, data, 0).Err()
	}
	if cfg.TTL > 0 {
		return c.Do(ctx, proto.CmdRegister, svc, rid, data, proto.OptTTL, cfg.TTL).Err()
	}
	return c.Do(ctx, proto.CmdRegister, svc, rid, data).Err()
}
