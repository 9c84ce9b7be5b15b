package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// opTimeout bounds one request: a session may hold a write up to its
// --write-timeout (10 s by default) while a slot changes leader.
const opTimeout = 15 * time.Second

// dial returns a go-redis client holding exactly one connection, so that
// everything a load worker does (and every connection-bound publisher it
// makes) stays on one connection. Retries are off: a failed request is
// counted, not hidden.
func dial(addr string) *redis.Client {
	o := oneConn(addr)
	o.ReadTimeout, o.WriteTimeout = opTimeout, opTimeout
	o.ReadBufferSize, o.WriteBufferSize = 16<<10, 16<<10
	return redis.NewClient(o)
}

// dialSub returns a client whose Subscribe calls each open one connection;
// small buffers keep ten thousand subscribers cheap for the harness.
func dialSub(addr string) *redis.Client {
	o := oneConn(addr)
	o.ReadBufferSize, o.WriteBufferSize = 8<<10, 4<<10
	return redis.NewClient(o)
}

// oneConn are the options dial and dialSub share: RESP2 without CLIENT
// SETINFO, one connection, no retries.
func oneConn(addr string) *redis.Options {
	return &redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, PoolSize: 1, MaxRetries: -1, DialTimeout: 5 * time.Second}
}

// dialN dials n clients (see dial), round-robin over addrs.
func dialN(n int, addrs ...string) []*redis.Client {
	cs := make([]*redis.Client, n)
	for i := range cs {
		cs[i] = dial(addrs[i%len(addrs)])
	}
	return cs
}

// closeAll closes every client, ignoring errors (the harness is done
// with them).
func closeAll(cs []*redis.Client) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// stampData returns a publisher data string that carries the time it was
// made (unix nanoseconds), padded with 'x' to size bytes.
func stampData(t time.Time, size int) string {
	b := make([]byte, 0, max(size, 24))
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	b = append(b, '|')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

// parseStamp reads the send time stampData put in data.
func parseStamp(data string) (time.Time, bool) {
	end := 0
	for end < len(data) && data[end] >= '0' && data[end] <= '9' {
		end++
	}
	if end == 0 || end >= len(data) || data[end] != '|' {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(data[:end], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// pacer spaces one worker's operations evenly at a given rate. A worker
// that falls more than a second behind starts afresh instead of bursting
// to catch up.
type pacer struct {
	interval time.Duration
	next     time.Time
}

func newPacer(perSecond float64) *pacer {
	if perSecond <= 0 {
		return &pacer{}
	}
	return &pacer{interval: time.Duration(float64(time.Second) / perSecond), next: time.Now()}
}

// wait blocks until the next operation is due; false if ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	if p.interval == 0 {
		return ctx.Err() == nil
	}
	now := time.Now()
	if now.Sub(p.next) > time.Second {
		p.next = now
	}
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	p.next = p.next.Add(p.interval)
	return ctx.Err() == nil
}

// Progress prints a one-line status to W every Every while a long run
// goes on. A nil *Progress prints nothing.
type Progress struct {
	W     io.Writer
	Every time.Duration

	mu sync.Mutex
}

// track starts printing name's counters until the returned stop is
// called; it prints a final line on stop when it printed any.
func (p *Progress) track(name string, ops, errs *atomic.Int64) (stop func()) {
	if p == nil || p.W == nil {
		return func() {}
	}
	every := p.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(every)
		defer t.Stop()
		var last int64
		lastT := start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := ops.Load()
				var e int64
				if errs != nil {
					e = errs.Load()
				}
				p.mu.Lock()
				fmt.Fprintf(p.W, "%s: %5.1fs  %d ops  %.0f/s  %d errors\n", name, now.Sub(start).Seconds(), n,
					float64(n-last)/now.Sub(lastT).Seconds(), e)
				p.mu.Unlock()
				last, lastT = n, now
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// Logf prints one progress message.
func (p *Progress) Logf(format string, args ...any) {
	if p == nil || p.W == nil {
		return
	}
	p.mu.Lock()
	fmt.Fprintf(p.W, format+"\n", args...)
	p.mu.Unlock()
}
