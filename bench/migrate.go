package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// MigrateConfig drives the migrate scenario (issue 4's measurement): one
// slot is filled with Publishers publishers, a writer load runs on that
// slot, and the slot's leadership is moved twice: to a node that already
// follows it (freeze, drain, switch), and to a node that does not (a
// snapshot of the whole slot first). For each move it reports the time
// from MOVESLOT until meta names the new leader, and the longest any
// write on that slot waited meanwhile: the pause a client sees.
type MigrateConfig struct {
	Session    string   // a session client address
	Metas      []string // meta RPC addresses
	Publishers int      // in the moved slot (default 100k)
	Writers    int      // clients writing to the slot during the move (default 8)
	Progress   *Progress
}

// Migrate runs the scenario; the cluster needs at least 3 data nodes so
// that some node does not follow the slot.
func Migrate(ctx context.Context, cfg MigrateConfig) (*Result, error) {
	if cfg.Publishers <= 0 {
		cfg.Publishers = 100_000
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 8
	}
	res := &Result{Scenario: "migrate", Target: cfg.Session,
		Params: map[string]any{"publishers": cfg.Publishers, "writers": cfg.Writers}}
	tab, err := FetchTable(ctx, cfg.Metas)
	if err != nil {
		return nil, err
	}
	if len(tab.Nodes) < 3 {
		return nil, fmt.Errorf("migrate needs 3 data nodes, the table has %d", len(tab.Nodes))
	}
	const s = 7
	// Services that all hash to slot s, 1000 publishers each.
	perSvc := 1000
	var svcs []string
	for i := 0; len(svcs)*perSvc < cfg.Publishers; i++ {
		if id := "migrate-svc-" + strconv.Itoa(i); slot.Of(id) == s {
			svcs = append(svcs, id)
		}
	}
	cfg.Progress.Logf("filling slot %d with %d publishers over %d services", s, len(svcs)*perSvc, len(svcs))
	// Connection-bound publishers, so the connections stay open until the
	// end; pipelined in batches.
	holders := dialN(8, cfg.Session)
	defer closeAll(holders)
	var fillErr atomic.Value
	var wg sync.WaitGroup
	for h, c := range holders {
		wg.Add(1)
		go func(h int, c *redis.Client) {
			defer wg.Done()
			pipe := c.Pipeline()
			for i, svc := range svcs {
				if i%len(holders) != h {
					continue
				}
				for p := 0; p < perSvc; p++ {
					pipe.Do(ctx, proto.CmdRegister, svc, "p"+strconv.Itoa(p), "10.1."+strconv.Itoa(p/256)+"."+strconv.Itoa(p%256)+":8080")
				}
				if _, err := pipe.Exec(ctx); err != nil {
					fillErr.Store(err)
					return
				}
			}
		}(h, c)
	}
	wg.Wait()
	if err, _ := fillErr.Load().(error); err != nil {
		return nil, fmt.Errorf("filling the slot: %w", err)
	}
	total := len(svcs) * perSvc

	// Writers keep updating publishers of the slot, timing every write.
	hist := NewHistogram()
	var histMu sync.Mutex
	var ops, errs atomic.Int64
	stop := make(chan struct{})
	writers := dialN(cfg.Writers, cfg.Session)
	defer closeAll(writers)
	var wwg sync.WaitGroup
	var worstMu sync.Mutex
	var windowStart time.Time
	var worst time.Duration
	for i, c := range writers {
		wwg.Add(1)
		go func(i int, c *redis.Client) {
			defer wwg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				svc := svcs[(i+n)%len(svcs)]
				start := time.Now()
				err := c.Do(ctx, proto.CmdRegister, svc, "w"+strconv.Itoa(i), strconv.Itoa(n)).Err()
				d := time.Since(start)
				if err != nil {
					errs.Add(1)
					continue
				}
				ops.Add(1)
				histMu.Lock()
				hist.Record(d)
				histMu.Unlock()
				worstMu.Lock()
				if !windowStart.IsZero() && start.After(windowStart.Add(-d)) && d > worst {
					worst = d
				}
				worstMu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}(i, c)
	}
	stopTrack := cfg.Progress.track("migrate writes", &ops, &errs)
	defer stopTrack()
	time.Sleep(time.Second) // let the load run before the first move

	move := func(name string, pick func(t *slot.Table) string) error {
		t, err := FetchTable(ctx, cfg.Metas)
		if err != nil {
			return err
		}
		to := pick(t)
		if to == "" {
			return fmt.Errorf("%s: no node to move slot %d to", name, s)
		}
		worstMu.Lock()
		worst, windowStart = 0, time.Now()
		worstMu.Unlock()
		start := time.Now()
		if err := metaDo(ctx, cfg.Metas, (&proto.MoveSlot{Slot: s, To: to}).Args()...); err != nil {
			return fmt.Errorf("%s: MOVESLOT %d %s: %w", name, s, to, err)
		}
		for {
			t, err := FetchTable(ctx, cfg.Metas)
			if err == nil && t.Slots[s].Leader == to && t.Slots[s].Target == "" {
				break
			}
			if err == nil && t.Slots[s].Target == "" && t.Slots[s].Leader != to {
				return fmt.Errorf("%s: the move of slot %d to %s was cancelled", name, s, to)
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("%s: slot %d not moved to %s within a minute", name, s, to)
			}
			time.Sleep(2 * time.Millisecond)
		}
		took := time.Since(start)
		time.Sleep(500 * time.Millisecond) // writes routed meanwhile finish
		worstMu.Lock()
		pause := worst
		windowStart = time.Time{}
		worstMu.Unlock()
		res.Add(name+"_move_ms", ms(took), "ms")
		res.Add(name+"_client_pause_ms", ms(pause), "ms")
		cfg.Progress.Logf("%s: slot %d (%d publishers) moved to %s in %v; longest write wait %v", name, s, total, to, took.Round(time.Millisecond), pause.Round(time.Millisecond))
		return nil
	}
	err = errors.Join(
		move("to_follower", func(t *slot.Table) string {
			for _, f := range t.Slots[s].Followers {
				return f
			}
			return ""
		}),
		move("to_new_node", func(t *slot.Table) string {
			for _, n := range t.Nodes {
				if n.ID != t.Slots[s].Leader && !slices.Contains(t.Slots[s].Followers, n.ID) {
					return n.ID
				}
			}
			return ""
		}),
	)
	close(stop)
	wwg.Wait()
	res.Ops, res.Errors = ops.Load(), errs.Load()
	res.setHist(hist)
	res.Latency = hist.Summary()
	res.Add("slot_publishers", float64(total), "publishers")
	if err != nil {
		return res, err
	}
	return res, nil
}

// metaDo sends a write command to the meta leader, following NOTLEADER.
func metaDo(ctx context.Context, metas []string, args ...any) error {
	addrs := slices.Clone(metas)
	var last error
	for tries := 0; tries < 2*len(metas)+2 && len(addrs) > 0; tries++ {
		addr := addrs[0]
		c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1})
		err := c.Do(ctx, args...).Err()
		c.Close()
		if err == nil {
			return nil
		}
		last = err
		if leader, ok := proto.LeaderAddr(proto.FromRESP(err.Error())); ok && leader != "" {
			addrs = append([]string{leader}, addrs...)
			continue
		}
		addrs = addrs[1:]
	}
	return last
}
