package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// FanoutConfig drives the fanout scenario: Subscribers connections spread
// over Addrs all watch one service; each round one change is made and the
// time until every subscriber has received it is taken.
type FanoutConfig struct {
	Addrs []string
	// Target is TargetSlotreg (SUBSCRIBE a service, each round a REGISTER
	// of its probe publisher) or TargetRedis (SUBSCRIBE a channel, each
	// round one PUBLISH); either way the change carries its send time.
	Target      string
	Subscribers int
	Rounds      int
	// PayloadBytes is the size of each Redis PUBLISH (default 32, the
	// probe data slotreg's push carries); slotreg's push is that data in
	// its JSON state, several times the size.
	PayloadBytes int
	Gap          time.Duration // between rounds
	Timeout      time.Duration // longest wait for one round's deliveries
	Progress     *Progress
}

// ScenarioFanoutPushSize names a Redis fanout run whose PUBLISH carries
// as many bytes as slotreg's push did in the same report.
const ScenarioFanoutPushSize = "fanout-push-size"

// Fanout's metrics the goal table reads.
const (
	fanoutMedian   = "all subscribers delivered after (median)"
	fanoutComplete = "rounds reaching every subscriber"
)

// fanRound is one change being delivered.
type fanRound struct {
	sentNs int64
	got    atomic.Int64
	lastNs atomic.Int64 // latest receipt
	hist   *Histogram
}

// Fanout runs the fanout scenario.
func Fanout(ctx context.Context, cfg FanoutConfig) (*Result, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("fanout: no address")
	}
	cfg.Subscribers = cmp.Or(max(cfg.Subscribers, 0), 10000)
	cfg.Rounds = cmp.Or(max(cfg.Rounds, 0), 5)
	cfg.Gap = cmp.Or(max(cfg.Gap, 0), time.Second)
	cfg.Timeout = cmp.Or(max(cfg.Timeout, 0), 10*time.Second)
	cfg.Target = cmp.Or(cfg.Target, TargetSlotreg)
	cfg.PayloadBytes = cmp.Or(max(cfg.PayloadBytes, 0), 32)
	if cfg.Target != TargetSlotreg && cfg.Target != TargetRedis {
		return nil, fmt.Errorf("fanout: no %s workload", cfg.Target)
	}
	svc := serviceName(runPrefix("fanout"), 0)
	var cur atomic.Pointer[fanRound]
	var pushBytes atomic.Int64 // the size of the messages subscribers receive
	cfg.Progress.Logf("%s fanout: opening %d subscribers", cfg.Target, cfg.Subscribers)
	opened := time.Now()
	one := []string{svc}
	subs, err := subscribeEach(ctx, cfg.Target, cfg.Addrs, cfg.Subscribers, func(int) []string { return one }, func(int) func(*push) {
		var lastRound *fanRound
		return func(p *push) {
			r := cur.Load()
			if r == nil || r == lastRound {
				return
			}
			d, ok := p.probe(cfg.Target)
			if !ok {
				return
			}
			sent, ok := parseStamp(d)
			if !ok || sent.UnixNano() < r.sentNs {
				return
			}
			lastRound = r
			pushBytes.Store(int64(p.bytes))
			r.hist.Record(p.recv.Sub(sent))
			for {
				old := r.lastNs.Load()
				if p.recv.UnixNano() <= old || r.lastNs.CompareAndSwap(old, p.recv.UnixNano()) {
					break
				}
			}
			r.got.Add(1)
		}
	}, true)
	if err != nil {
		return nil, fmt.Errorf("fanout: %w", err)
	}
	defer closeSubs(subs)
	cfg.Progress.Logf("%s fanout: %d subscribers ready in %v", cfg.Target, cfg.Subscribers, time.Since(opened).Round(time.Millisecond))
	w := dial(cfg.Addrs[0])
	defer w.Close()
	all := NewHistogram()
	var spans []time.Duration
	res := &Result{Scenario: "fanout", Target: cfg.Target, Params: map[string]any{
		"subscribers": cfg.Subscribers, "rounds": cfg.Rounds, "sessions": len(cfg.Addrs),
	}}
	if cfg.Target == TargetRedis {
		res.Params["payload_bytes"] = cfg.PayloadBytes
	}
	start := time.Now()
	for rd := 1; rd <= cfg.Rounds; rd++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.Gap):
		}
		now := time.Now()
		r := &fanRound{sentNs: now.UnixNano(), hist: NewHistogram()}
		cur.Store(r)
		var err error
		if cfg.Target == TargetRedis {
			var n int64
			if n, err = w.Publish(ctx, svc, stampData(now, cfg.PayloadBytes)).Result(); err == nil && n != int64(cfg.Subscribers) {
				res.Note("round %d: PUBLISH reached %d receivers, want %d", rd, n, cfg.Subscribers)
			}
		} else {
			err = w.Do(ctx, proto.CmdRegister, svc, probeRID, stampData(now, 32)).Err()
		}
		if err != nil {
			res.Errors++
			res.Note("round %d: write failed: %v", rd, err)
			continue
		}
		deadline := time.Now().Add(cfg.Timeout)
		for r.got.Load() < int64(cfg.Subscribers) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		got := r.got.Load()
		all.Merge(r.hist)
		res.Ops += got
		if got < int64(cfg.Subscribers) {
			res.Note("round %d: only %d of %d subscribers received the change within %v", rd, got, cfg.Subscribers, cfg.Timeout)
			continue
		}
		span := time.Duration(r.lastNs.Load() - r.sentNs)
		spans = append(spans, span)
		cfg.Progress.Logf("%s fanout round %d: all %d subscribers had the change after %v", cfg.Target, rd, cfg.Subscribers, span.Round(time.Microsecond))
	}
	res.Seconds = time.Since(start).Seconds()
	res.Params["message_bytes"] = int(pushBytes.Load())
	res.Rate = float64(res.Ops) / res.Seconds
	res.setHist(all)
	addSpread(res, "all subscribers delivered after", spans)
	res.Add(fanoutComplete, float64(len(spans)), "rounds")
	if len(spans) < cfg.Rounds {
		return res, fmt.Errorf("fanout: %d of %d rounds reached every subscriber", len(spans), cfg.Rounds)
	}
	return res, nil
}
