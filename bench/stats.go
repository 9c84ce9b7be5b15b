package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency bounds recorded by a Histogram, in microseconds: 1 µs to 10 min,
// three significant figures.
const (
	minLatencyUs = 1
	maxLatencyUs = int64(10 * time.Minute / time.Microsecond)
)

// Histogram is a latency distribution in microseconds, safe for
// concurrent use. Load loops record into their own Histogram and merge at
// the end, so the lock is uncontended on the hot path.
type Histogram struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(minLatencyUs, maxLatencyUs, 3)}
}

// Record adds one latency; values outside the range are clamped so that
// an outlier is still counted.
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	us = max(us, minLatencyUs)
	us = min(us, maxLatencyUs)
	h.mu.Lock()
	h.h.RecordValue(us) //nolint:errcheck // clamped into range above
	h.mu.Unlock()
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o == h {
		return
	}
	o.mu.Lock()
	c := hdrhistogram.Import(o.h.Export())
	o.mu.Unlock()
	h.mu.Lock()
	h.h.Merge(c)
	h.mu.Unlock()
}

// Count is the number of values recorded.
func (h *Histogram) Count() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.TotalCount()
}

// Summary returns the distribution's headline figures.
func (h *Histogram) Summary() *LatencySummary {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return &LatencySummary{
		Count:  h.h.TotalCount(),
		MinMs:  ms(h.h.Min()),
		MeanMs: h.h.Mean() / 1000,
		P50Ms:  ms(h.h.ValueAtQuantile(50)),
		P90Ms:  ms(h.h.ValueAtQuantile(90)),
		P99Ms:  ms(h.h.ValueAtQuantile(99)),
		P999Ms: ms(h.h.ValueAtQuantile(99.9)),
		MaxMs:  ms(h.h.Max()),
	}
}

// CDF returns (latency ms, fraction <= it) points for plotting.
func (h *Histogram) CDF() (ms, frac []float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	total := h.h.TotalCount()
	if total == 0 {
		return nil, nil
	}
	var seen int64
	for _, b := range h.h.Distribution() {
		if b.Count == 0 {
			continue
		}
		seen += b.Count
		ms = append(ms, float64(b.To)/1000)
		frac = append(frac, float64(seen)/float64(total))
	}
	return ms, frac
}

// LatencySummary is a latency distribution's headline figures, in
// milliseconds.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}
