// Package fanout runs one call per node of a fleet at once, a bounded
// number at a time: registryctl and the web console ask every data node
// and session the same question. It owns no connection and no timeout;
// the function it runs does.
package fanout

import "sync"

// DefaultLimit is how many calls a fan-out has in flight at most: enough
// for a large fleet to answer within a few round trips, few enough not
// to open hundreds of connections at once.
const DefaultLimit = 32

// ForEach runs fn(0..n-1), at most limit at a time (DefaultLimit when
// limit < 1), and returns when every call has.
func ForEach(n, limit int, fn func(i int)) {
	if limit < 1 {
		limit = DefaultLimit
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}
