package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// probeRID is the registerId of the probe writer's publisher.
const probeRID = "w"

// PushConfig drives the push-latency scenario: Subscribers connections
// spread over Addrs, each subscribed to Services probe services; one
// writer per address changes the probe services at Rate changes/s in
// total, each change carrying its send time; latency is receipt minus
// send, per push.
type PushConfig struct {
	Addrs       []string
	Target      string // TargetSlotreg (REGISTER/SUBSCRIBE) or TargetRedis (PUBLISH/SUBSCRIBE)
	Subscribers int
	Services    int
	Rate        float64
	Duration    time.Duration
	// Warmup runs before measuring; pushes of changes sent before the
	// measurement starts are not counted.
	Warmup   time.Duration
	DataSize int
	Prefix   string
	// Background, when set, runs alongside from before the warmup until
	// the measurement ends (its ctx is then cancelled).
	Background func(ctx context.Context)
	Progress   *Progress
}

func (c *PushConfig) defaults() error {
	if len(c.Addrs) == 0 {
		return errors.New("push-latency: no address")
	}
	if c.Target == "" {
		c.Target = TargetSlotreg
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 10
	}
	if c.Services <= 0 {
		c.Services = 10
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	} else if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.DataSize <= 0 {
		c.DataSize = 32
	}
	if c.Prefix == "" {
		c.Prefix = runPrefix("push")
	}
	return nil
}

// Push runs the push-latency scenario.
func Push(ctx context.Context, cfg PushConfig) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	services := make([]string, cfg.Services)
	for i := range services {
		services[i] = serviceName(cfg.Prefix, i)
	}
	var measureFrom atomic.Int64 // unix nanos; 0 until measuring
	measureFrom.Store(1<<63 - 1)
	hists := make([]*Histogram, cfg.Subscribers)
	var received, regress, dups atomic.Int64
	subs, err := subscribeAll(ctx, cfg.Target, cfg.Addrs, cfg.Subscribers, services, func(i int) func(*push) {
		h := NewHistogram()
		hists[i] = h
		last := make(map[string]uint64, len(services))
		return func(p *push) {
			if cfg.Target == TargetSlotreg {
				if p.Version < last[p.DataInfoID] {
					regress.Add(1)
				} else if p.Version == last[p.DataInfoID] {
					dups.Add(1)
				}
				last[p.DataInfoID] = p.Version
			}
			d, ok := p.probe(cfg.Target)
			if !ok {
				return
			}
			sent, ok := parseStamp(d)
			if !ok || sent.UnixNano() < measureFrom.Load() {
				return
			}
			h.Record(p.recv.Sub(sent))
			received.Add(1)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("push-latency: %w", err)
	}
	defer closeSubs(subs)

	var bgWg sync.WaitGroup
	bgCtx, bgCancel := context.WithCancel(ctx)
	defer func() { bgCancel(); bgWg.Wait() }()
	if cfg.Background != nil {
		bgWg.Add(1)
		go func() { defer bgWg.Done(); cfg.Background(bgCtx) }()
	}

	// Writers: one per address, each owning the services i%len(Addrs).
	writers := dialN(len(cfg.Addrs), cfg.Addrs...)
	defer closeAll(writers)
	var sent, werrs atomic.Int64
	var firstErr atomic.Value
	runCtx, cancel := context.WithTimeout(ctx, cfg.Warmup+cfg.Duration)
	defer cancel()
	stopProgress := cfg.Progress.track(cfg.Target+" push-latency (pushes)", &received, &werrs)
	var wg sync.WaitGroup
	start := time.Now()
	measureStart := start.Add(cfg.Warmup)
	measureFrom.Store(measureStart.UnixNano())
	for w, c := range writers {
		mine := []string{}
		for i := w; i < len(services); i += len(writers) {
			mine = append(mine, services[i])
		}
		if len(mine) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := newPacer(cfg.Rate / float64(len(writers)))
			for k := 0; pace.wait(runCtx); k++ {
				now := time.Now()
				svc, data := mine[k%len(mine)], stampData(now, cfg.DataSize)
				var err error
				if cfg.Target == TargetRedis {
					err = c.Publish(runCtx, svc, data).Err()
				} else {
					err = c.Do(runCtx, proto.CmdRegister, svc, probeRID, data).Err()
				}
				if err != nil {
					if runCtx.Err() != nil {
						return
					}
					werrs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				if !now.Before(measureStart) {
					sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	measured := time.Since(measureStart)
	bgCancel()
	// Let the last pushes arrive.
	time.Sleep(200 * time.Millisecond)
	stopProgress()

	res := &Result{
		Scenario: "push-latency", Target: cfg.Target,
		Params: map[string]any{
			"subscribers": cfg.Subscribers, "services": cfg.Services, "rate": cfg.Rate,
			"duration_s": cfg.Duration.Seconds(), "warmup_s": cfg.Warmup.Seconds(), "sessions": len(cfg.Addrs),
			"data_bytes": cfg.DataSize,
		},
	}
	res.timed(received.Load(), werrs.Load(), measured, hists...)
	res.Add("changes sent", float64(sent.Load()), "")
	res.Add("pushes expected (changes x subscribers)", float64(sent.Load()*int64(cfg.Subscribers)), "")
	res.Add("pushes measured", float64(res.Ops), "")
	if cfg.Target == TargetSlotreg {
		res.Add("version regressions seen", float64(regress.Load()), "")
		res.Add("pushes repeating the version before (whole run)", float64(dups.Load()), "")
	}
	if n := decodeErrors(subs); n > 0 {
		res.Add("undecodable pushes", float64(n), "")
	}
	if e := firstErr.Load(); e != nil {
		res.Note("first write error: %v", e)
	}
	if res.Ops == 0 {
		return res, fmt.Errorf("push-latency: no push received (changes sent %d, write errors %d)", sent.Load(), werrs.Load())
	}
	return res, nil
}

// PushUnderLoad measures the closed-loop register maximum with reg for
// maxFor, then runs push-latency with a background register load at
// fraction of that maximum. It returns the maximum run, the push run and
// the background run, in that order.
func PushUnderLoad(ctx context.Context, pc PushConfig, reg RegisterConfig, fraction float64, maxFor time.Duration) ([]*Result, error) {
	if err := pc.defaults(); err != nil {
		return nil, err
	}
	mx := reg
	mx.Duration, mx.Rate = maxFor, 0
	maxRes, err := Register(ctx, mx)
	if err != nil {
		return nil, fmt.Errorf("push-latency: measuring the maximum: %w", err)
	}
	maxRes.Scenario = "register-max"
	load := reg
	load.Rate = fraction * maxRes.Rate
	load.Duration = pc.Warmup + pc.Duration + 5*time.Second
	load.Progress = nil
	var bg *Result
	var bgErr error
	pc.Background = func(ctx context.Context) { bg, bgErr = Register(ctx, load) }
	res, err := Push(ctx, pc)
	if err != nil {
		return nil, err
	}
	res.Scenario = "push-latency-loaded"
	res.Params["load_fraction"] = fraction
	res.Params["load_rate"] = load.Rate
	if bg == nil {
		return nil, fmt.Errorf("push-latency: background load: %v", bgErr)
	}
	bg.Scenario = "register-background"
	res.Add("background REGISTER/s achieved", bg.Rate, "ops/s")
	res.Add("background target REGISTER/s", load.Rate, "ops/s")
	return []*Result{maxRes, res, bg}, nil
}
