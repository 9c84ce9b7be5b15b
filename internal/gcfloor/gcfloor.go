// Package gcfloor keeps the Go collector's headroom above a floor.
//
// GOGC sets the headroom as a share of the live heap. A data node runs at
// 50 so that RSS stays near the live heap when it holds millions of
// publishers; but a node with a small heap then collects many times a
// second under load, which cost the registry a tenth of its REGISTER
// throughput and a millisecond of loaded push p99 on two cores. With a
// floor, the percent is raised while the live heap is small, so the
// headroom is at least the floor, and it falls back to the base as the
// heap grows past floor*100/base: large heaps keep the memory bound they
// were given.
package gcfloor

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// MaxPercent bounds the percent a floor can ask for, so a nearly empty
// heap is not given a hundred times its size.
const MaxPercent = 2000

// Percent is the GC percent that gives a live heap of live bytes at least
// floor bytes of headroom, never below base and at most MaxPercent (or
// base, if that is higher).
func Percent(base int, live, floor uint64) int {
	if live == 0 || floor == 0 {
		return base
	}
	p := floor * 100 / live
	if p > MaxPercent {
		p = MaxPercent
	}
	return max(base, int(p))
}

const liveMetric = "/gc/heap/live:bytes"

// Tuner sets the runtime's GC percent from the live heap, every interval,
// until Stop.
type Tuner struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	mu   sync.Mutex
	cur  int
}

// Start begins tuning: base is the percent for a large heap, floor the
// least headroom in bytes.
func Start(base int, floor uint64, every time.Duration) *Tuner {
	t := &Tuner{stop: make(chan struct{}), cur: -1} // the first apply sets it
	t.apply(base, floor)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.apply(base, floor)
			}
		}
	}()
	return t
}

func (t *Tuner) apply(base int, floor uint64) {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	var live uint64
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	p := Percent(base, live, floor)
	t.mu.Lock()
	defer t.mu.Unlock()
	// Small moves are not worth a change: each one makes the runtime
	// recompute its pacing.
	if t.cur > 0 && p > t.cur*9/10 && p < t.cur*11/10 {
		return
	}
	t.cur = p
	debug.SetGCPercent(p)
}

// Current is the percent last set.
func (t *Tuner) Current() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur
}

// Stop ends the tuning; the last percent set stays.
func (t *Tuner) Stop() {
	t.once.Do(func() { close(t.stop) })
	t.wg.Wait()
}
