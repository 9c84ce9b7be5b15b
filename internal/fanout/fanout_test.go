package fanout

import (
	"sync/atomic"
	"testing"
)

// Every index is called once, and no more than limit calls run at once.
func TestForEachCallsEachOnceWithinTheLimit(t *testing.T) {
	const n, limit = 100, 3
	var calls [n]atomic.Int32
	var running, most atomic.Int32
	ForEach(n, limit, func(i int) {
		r := running.Add(1)
		for {
			m := most.Load()
			if r <= m || most.CompareAndSwap(m, r) {
				break
			}
		}
		calls[i].Add(1)
		running.Add(-1)
	})
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Fatalf("index %d called %d times", i, c)
		}
	}
	if m := most.Load(); m > limit {
		t.Fatalf("%d calls ran at once, over the limit %d", m, limit)
	}
}
