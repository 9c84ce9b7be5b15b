package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/proto"
)

// Issue 15's measurements of the path surface, each also taken against
// etcd by bench/etcdpeer in the same run: a prefix watch's event latency
// with many watchers over many paths (PrefixWatch), CHILDREN of a parent
// with many children (PathChildren), and the handover of a lock from its
// holder to the first waiter of LOCK ... WAIT (LockHandover).

// PathsConfig drives the paths scenarios. Zero fields take the defaults
// in brackets.
type PathsConfig struct {
	Addrs []string
	// LoadConns are the connections the preloads go through, pipelined;
	// the paths are EPHEMERAL, bound to them, so they stay open for the
	// run and closing them removes the paths [8].
	LoadConns int

	// Watchers PSUBSCRIBE the run's prefix, spread over Addrs [1000].
	Watchers int
	// Paths are put under the prefix before the watchers come, spread
	// over Parents parents: /root/g<k>/p<i> [100k over 1000].
	Paths, Parents int
	// Attach is how many watchers take their initial ADDs at once: each
	// gets an ADD for every path, and a session builds them all when the
	// watch starts [8].
	Attach int
	// Changes are timed PUTs of one path each, one at a time, the next
	// Gap after every watcher had the previous one [200, 20ms].
	Changes int
	Gap     time.Duration

	// Children is how many children the CHILDREN parent has, in each of
	// the two shapes; Calls how many CHILDREN calls are timed in each
	// [10k, 200].
	Children, Calls int

	// Contenders loop LOCK name owner LockTTL WAIT LockWait, hold the
	// lock for Hold and UNLOCK, until Handovers handovers were timed
	// [8, 300, 1ms, 10s, 30s].
	Contenders        int
	Handovers         int
	Hold              time.Duration
	LockTTL, LockWait time.Duration

	// Timeout bounds a watcher's initial ADDs and one change's delivery
	// to every watcher [60s].
	Timeout  time.Duration
	Progress *Progress
}

func (c *PathsConfig) defaults() error {
	if len(c.Addrs) == 0 {
		return errors.New("paths: no address")
	}
	c.LoadConns = cmp.Or(max(c.LoadConns, 0), 8)
	c.Watchers = cmp.Or(max(c.Watchers, 0), 1000)
	c.Paths = cmp.Or(max(c.Paths, 0), 100_000)
	c.Parents = min(cmp.Or(max(c.Parents, 0), 1000), c.Paths)
	c.Attach = cmp.Or(max(c.Attach, 0), 8)
	c.Changes = cmp.Or(max(c.Changes, 0), 200)
	c.Gap = cmp.Or(max(c.Gap, 0), 20*time.Millisecond)
	c.Children = cmp.Or(max(c.Children, 0), 10_000)
	c.Calls = cmp.Or(max(c.Calls, 0), 200)
	c.Contenders = cmp.Or(max(c.Contenders, 0), 8)
	c.Handovers = cmp.Or(max(c.Handovers, 0), 300)
	c.Hold = cmp.Or(max(c.Hold, 0), time.Millisecond)
	c.LockTTL = cmp.Or(max(c.LockTTL, 0), 10*time.Second)
	c.LockWait = cmp.Or(max(c.LockWait, 0), 30*time.Second)
	c.Timeout = cmp.Or(max(c.Timeout, 0), time.Minute)
	return nil
}

// pathRoot names a run's subtree, /bench-<what>-<run>, so that runs
// against one cluster do not see each other's paths.
func pathRoot(what string) string { return "/" + strings.TrimSuffix(runPrefix(what), "-") }

// preloadPaths PUTs n paths, pathOf(i), with value "v", pipelined over
// conns connections; path i is bound (EPHEMERAL) to connection i%conns,
// so the connections returned must stay open while the paths are
// needed. On error the connections are closed.
func preloadPaths(ctx context.Context, addrs []string, conns, n int, pathOf func(int) string, p *Progress, what string) ([]*redis.Client, error) {
	const batch = 500
	cs := dialN(min(conns, n), addrs...)
	var done, errs atomic.Int64
	var first atomic.Value
	stop := p.track(what+" preload (PUTs)", &done, &errs)
	var wg sync.WaitGroup
	for w, c := range cs {
		wg.Go(func() {
			for from := w; from < n && ctx.Err() == nil; from += batch * len(cs) {
				pipe := c.Pipeline()
				for i := from; i < n && i < from+batch*len(cs); i += len(cs) {
					pipe.Do(ctx, proto.CmdPut, pathOf(i), "v")
				}
				cmds, err := pipe.Exec(ctx)
				for _, cmd := range cmds {
					if cmd.Err() != nil {
						errs.Add(1)
						first.CompareAndSwap(nil, cmd.Err())
					} else {
						done.Add(1)
					}
				}
				if err != nil && len(cmds) == 0 {
					errs.Add(1)
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	stop()
	if e := first.Load(); e != nil || ctx.Err() != nil {
		closeAll(cs)
		return nil, fmt.Errorf("%s preload: %d of %d PUTs failed, first: %v", what, errs.Load(), n, cmp.Or(e, any(ctx.Err())))
	}
	return cs, nil
}

// PrefixWatch runs the prefix-watch scenario: Paths paths under a fresh
// prefix; Watchers connections PSUBSCRIBE it, Attach at a time, each
// waiting for its ADD of every path; then Changes PUTs, one at a time, of
// one preloaded path each (through the connection that owns it), the
// value carrying its send time. It returns the change-to-event latency
// over every watcher ("prefix-watch") and the time each watcher took
// from PSUBSCRIBE to its last initial ADD ("prefix-watch-initial").
func PrefixWatch(ctx context.Context, cfg PathsConfig) ([]*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	root := pathRoot("pwatch")
	pathOf := func(i int) string { return root + "/g" + strconv.Itoa(i%cfg.Parents) + "/p" + strconv.Itoa(i) }
	cfg.Progress.Logf("prefix-watch: putting %d paths under %s/ over %d parents", cfg.Paths, root, cfg.Parents)
	t0 := time.Now()
	owners, err := preloadPaths(ctx, cfg.Addrs, cfg.LoadConns, cfg.Paths, pathOf, cfg.Progress, "prefix-watch")
	if err != nil {
		return nil, err
	}
	preload := time.Since(t0)
	// Watchers go before the paths: closing the owners first would send
	// every watcher a REMOVE of every path.
	defer closeAll(owners)

	var cur atomic.Pointer[pathRound]
	hist, initial := NewHistogram(), NewHistogram()
	var stray, wrongType, initialOther atomic.Int64
	ws := make([]*pathWatcher, cfg.Watchers)
	var readers sync.WaitGroup
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.nc.Close()
			}
		}
		readers.Wait()
	}()
	cfg.Progress.Logf("prefix-watch: %d watchers PSUBSCRIBE %s/*, %d at a time, each taking %d initial ADDs", cfg.Watchers, root, cfg.Attach, cfg.Paths)
	t0 = time.Now()
	sem := make(chan struct{}, cfg.Attach)
	var attachErr atomic.Value
	var attached atomic.Int64
	var attachWg sync.WaitGroup
	for i := range ws {
		if attachErr.Load() != nil || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		attachWg.Go(func() {
			defer func() { <-sem }()
			sent := time.Now()
			w, err := dialWatcher(ctx, cfg.Addrs[i%len(cfg.Addrs)], root+"/*")
			if err != nil {
				attachErr.CompareAndSwap(nil, fmt.Errorf("watcher %d: %w", i, err))
				return
			}
			ws[i] = w
			synced := make(chan struct{})
			readers.Go(func() {
				adds := 0
				var last *pathRound
				for {
					f, err := w.next()
					if err != nil {
						return
					}
					now := time.Now()
					if len(f) != 4 || string(f[0]) != proto.PushPMessage {
						stray.Add(1)
						continue
					}
					typ, value, ok := eventFields(f[3])
					if !ok {
						stray.Add(1)
						continue
					}
					if adds < cfg.Paths {
						if string(typ) != proto.EventAdd {
							initialOther.Add(1)
							continue
						}
						if adds++; adds == cfg.Paths {
							initial.Record(now.Sub(sent))
							close(synced)
						}
						continue
					}
					r := cur.Load()
					if r == nil || r == last || string(f[2]) != r.path || string(value) != r.value {
						stray.Add(1)
						continue
					}
					last = r
					if string(typ) != proto.EventUpdate {
						wrongType.Add(1)
					}
					hist.Record(now.Sub(r.sent))
					if r.got.Add(1) == int64(cfg.Watchers) {
						close(r.done)
					}
				}
			})
			select {
			case <-synced:
				if n := attached.Add(1); n%100 == 0 {
					cfg.Progress.Logf("prefix-watch: %d/%d watchers have their initial ADDs (%.1fs)", n, cfg.Watchers, time.Since(t0).Seconds())
				}
			case <-time.After(cfg.Timeout):
				attachErr.CompareAndSwap(nil, fmt.Errorf("watcher %d: not every initial ADD within %v", i, cfg.Timeout))
			case <-ctx.Done():
			}
		})
	}
	attachWg.Wait()
	if e := attachErr.Load(); e != nil {
		return nil, fmt.Errorf("prefix-watch: %w", e.(error))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	attach := time.Since(t0)

	cfg.Progress.Logf("prefix-watch: %d timed changes, %v apart", cfg.Changes, cfg.Gap)
	putHist := NewHistogram()
	var errs, missed int64
	var firstErr error
	start := time.Now()
	for i := range cfg.Changes {
		if ctx.Err() != nil {
			break
		}
		idx := (i*7919 + 13) % cfg.Paths
		r := &pathRound{path: pathOf(idx), sent: time.Now(), done: make(chan struct{})}
		r.value = stampData(r.sent, 32)
		cur.Store(r)
		if err := owners[idx%len(owners)].Do(ctx, proto.CmdPut, r.path, r.value).Err(); err != nil {
			errs++
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		putHist.Record(time.Since(r.sent))
		select {
		case <-r.done:
		case <-time.After(cfg.Timeout):
			missed += int64(cfg.Watchers) - r.got.Load()
			cfg.Progress.Logf("prefix-watch: change %d reached %d of %d watchers in %v", i, r.got.Load(), cfg.Watchers, cfg.Timeout)
		case <-ctx.Done():
		}
		select {
		case <-time.After(cfg.Gap):
		case <-ctx.Done():
		}
	}
	elapsed := time.Since(start)
	params := map[string]any{"watchers": cfg.Watchers, "paths": cfg.Paths, "parents": cfg.Parents, "changes": cfg.Changes,
		"gap": cfg.Gap.String(), "sessions": len(cfg.Addrs), "preload_conns": len(owners), "attach": cfg.Attach}
	res := &Result{Scenario: "prefix-watch", Target: TargetSlotreg, Params: params}
	res.timed(hist.Count(), errs+missed, elapsed, hist)
	if s := putHist.Summary(); s != nil {
		res.Add("put_p50", s.P50Ms, "ms")
		res.Add("put_p99", s.P99Ms, "ms")
	}
	res.Add("events missed (a change not delivered to a watcher in time)", float64(missed), "")
	res.Add("stray events (not the change under way, or repeated)", float64(stray.Load()), "")
	res.Add("events of a change not typed UPDATE", float64(wrongType.Load()), "")
	if firstErr != nil {
		res.Note("first PUT error: %v", firstErr)
	}
	ini := &Result{Scenario: "prefix-watch-initial", Target: TargetSlotreg, Params: params}
	ini.timed(initial.Count(), 0, attach, initial)
	ini.Add("initial ADDs per watcher", float64(cfg.Paths), "")
	ini.Add("initial events other than ADD", float64(initialOther.Load()), "")
	ini.Add("all watchers attached", attach.Seconds(), "s")
	ini.Add("preload", preload.Seconds(), "s")
	ini.Add("preload rate", float64(cfg.Paths)/preload.Seconds(), "PUT/s")
	if res.Ops == 0 {
		return []*Result{res, ini}, fmt.Errorf("prefix-watch: no event measured (PUT errors %d)", errs)
	}
	return []*Result{res, ini}, nil
}

// pathRound is one timed change being delivered to the watchers.
type pathRound struct {
	path, value string
	sent        time.Time
	got         atomic.Int64
	done        chan struct{}
}

// eventFields reads the type and value of a prefix watch event,
// {"type":T,"path":P,"value":V,"version":N} as the session writes it
// (proto.AppendPathEventJSON), without a JSON decoder: a thousand
// watchers take a hundred million initial events. Values here need no
// escapes.
func eventFields(payload []byte) (typ, value []byte, ok bool) {
	const typKey, valKey = `{"type":"`, `,"value":"`
	rest, found := bytes.CutPrefix(payload, []byte(typKey))
	if !found {
		return nil, nil, false
	}
	typ, rest, found = bytes.Cut(rest, []byte{'"'})
	if !found {
		return nil, nil, false
	}
	i := bytes.Index(rest, []byte(valKey))
	if i < 0 {
		return nil, nil, false
	}
	value, _, found = bytes.Cut(rest[i+len(valKey):], []byte{'"'})
	return typ, value, found
}

// pathWatcher is one PSUBSCRIBE connection, read without go-redis: a
// watcher's first frames are an ADD for every path under its prefix,
// and decoding a hundred million of them into go-redis's generic replies
// would cost the harness more CPU than the session spends sending them,
// on the same cores.
type pathWatcher struct {
	nc   net.Conn
	rd   *bufio.Reader
	buf  []byte
	offs []int
	args [][]byte
}

// dialWatcher connects to addr and PSUBSCRIBEs pattern, returning once
// the subscription is confirmed.
func dialWatcher(ctx context.Context, addr, pattern string) (*pathWatcher, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	w := &pathWatcher{nc: nc, rd: bufio.NewReaderSize(nc, 64<<10)}
	cmd := fmt.Sprintf("*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(proto.CmdPSubscribe), proto.CmdPSubscribe, len(pattern), pattern)
	nc.SetDeadline(time.Now().Add(opTimeout))
	if _, err := io.WriteString(nc, cmd); err != nil {
		nc.Close()
		return nil, err
	}
	f, err := w.next()
	nc.SetDeadline(time.Time{})
	if err == nil && (len(f) != 3 || string(f[0]) != proto.PushPSubscribe) {
		err = fmt.Errorf("PSUBSCRIBE %s answered %q", pattern, f)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return w, nil
}

// next reads one RESP2 array of bulk strings and integers; the slices it
// returns are valid until the next call.
func (w *pathWatcher) next() ([][]byte, error) {
	line, err := w.line()
	if err != nil {
		return nil, err
	}
	if line[0] == '-' {
		return nil, errors.New(string(line[1:]))
	}
	if line[0] != '*' {
		return nil, fmt.Errorf("expected an array, got %q", line)
	}
	n, ok := respInt(line[1:])
	if !ok || n > 16 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	w.buf, w.offs = w.buf[:0], w.offs[:0]
	for range n {
		line, err := w.line()
		if err != nil {
			return nil, err
		}
		switch line[0] {
		case ':':
			w.buf = append(w.buf, line[1:]...)
		case '$':
			l, ok := respInt(line[1:])
			if !ok {
				return nil, fmt.Errorf("bad bulk header %q", line)
			}
			at := len(w.buf)
			w.buf = append(w.buf, make([]byte, l+2)...)
			if _, err := io.ReadFull(w.rd, w.buf[at:]); err != nil {
				return nil, err
			}
			w.buf = w.buf[:at+l]
		default:
			return nil, fmt.Errorf("unexpected element %q", line)
		}
		w.offs = append(w.offs, len(w.buf))
	}
	w.args = w.args[:0]
	from := 0
	for _, to := range w.offs {
		w.args = append(w.args, w.buf[from:to])
		from = to
	}
	return w.args, nil
}

// respInt reads a RESP length, a non-negative decimal, without the
// allocation of strconv.Atoi(string(b)).
func respInt(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// line reads one CRLF-terminated line, without the CRLF.
func (w *pathWatcher) line() ([]byte, error) {
	line, err := w.rd.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed line %q", line)
	}
	return line[:len(line)-2], nil
}

// PathChildren runs the children scenario in its two shapes: a parent
// with Children paths directly under it (one dataInfoId with Children
// registerIds, "children-flat"), and a parent with Children children that
// are each a subtree /parent/c<i>/x (Children dataInfoIds over every
// slot, "children-subtrees"). It times Calls CHILDREN calls of each, one
// at a time, and counts replies without every child.
func PathChildren(ctx context.Context, cfg PathsConfig) ([]*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	root := pathRoot("children")
	shapes := []struct {
		scenario, parent string
		pathOf           func(i int) string
	}{
		{"children-flat", root + "/flat", func(i int) string { return root + "/flat/c" + strconv.Itoa(i) }},
		{"children-subtrees", root + "/tree", func(i int) string { return root + "/tree/c" + strconv.Itoa(i) + "/x" }},
	}
	c := dial(cfg.Addrs[0])
	defer c.Close()
	var out []*Result
	for _, sh := range shapes {
		cfg.Progress.Logf("%s: putting %d children under %s", sh.scenario, cfg.Children, sh.parent)
		owners, err := preloadPaths(ctx, cfg.Addrs, cfg.LoadConns, cfg.Children, sh.pathOf, cfg.Progress, sh.scenario)
		if err != nil {
			return out, err
		}
		h := NewHistogram()
		var errs, wrong int64
		var firstErr error
		for range 3 { // warm the connections on every hop
			c.Do(ctx, proto.CmdChildren, sh.parent)
		}
		start := time.Now()
		for range cfg.Calls {
			if ctx.Err() != nil {
				break
			}
			t0 := time.Now()
			names, err := c.Do(ctx, proto.CmdChildren, sh.parent).StringSlice()
			if err != nil {
				errs++
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			h.Record(time.Since(t0))
			if len(names) != cfg.Children {
				wrong++
			}
		}
		elapsed := time.Since(start)
		closeAll(owners)
		r := &Result{Scenario: sh.scenario, Target: TargetSlotreg, Params: map[string]any{
			"children": cfg.Children, "calls": cfg.Calls, "sessions": len(cfg.Addrs)}}
		r.timed(h.Count(), errs, elapsed, h)
		r.Add("replies without every child", float64(wrong), "")
		if firstErr != nil {
			r.Note("first CHILDREN error: %v", firstErr)
		}
		out = append(out, r)
		if r.Ops == 0 {
			return out, fmt.Errorf("%s: no CHILDREN call succeeded: %v", sh.scenario, firstErr)
		}
	}
	return out, nil
}

// LockHandover runs the lock-handover scenario: Contenders connections
// over Addrs loop LOCK name owner LockTTL WAIT LockWait, hold the lock
// for Hold and UNLOCK it. A handover is the time from the holder sending
// UNLOCK to the grant of a LOCK that was already waiting arriving; it
// runs until Handovers were timed. Grants that overlap another holder's
// and fencing tokens that do not grow are counted (0 expected).
func LockHandover(ctx context.Context, cfg PathsConfig) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	name := strings.TrimSuffix(runPrefix("lockh"), "-")
	ttl, wait := cfg.LockTTL.Milliseconds(), cfg.LockWait.Milliseconds()
	hist, unlockHist := NewHistogram(), NewHistogram()
	var unlockAt, holder atomic.Int64
	var timed, errs, fresh, overlaps, regress, notHeld, refused atomic.Int64
	var tokMu sync.Mutex
	var lastTok int64
	var first atomic.Value
	var stopped atomic.Bool
	stop := cfg.Progress.track("lock-handover (handovers)", &timed, &errs)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.LockWait+time.Duration(cfg.Handovers)*(time.Second+cfg.Hold))
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Contenders {
		o := oneConn(cfg.Addrs[i%len(cfg.Addrs)])
		o.ReadTimeout, o.WriteTimeout = cfg.LockWait+opTimeout, opTimeout
		c := redis.NewClient(o)
		wg.Go(func() {
			defer c.Close()
			owner := "bench-" + strconv.Itoa(i)
			id := int64(i + 1)
			for !stopped.Load() && ctx.Err() == nil {
				sent := time.Now()
				tok, err := c.Do(ctx, proto.CmdLock, name, owner, ttl, proto.OptWait, wait).Int64()
				got := time.Now()
				switch {
				case errors.Is(err, redis.Nil):
					refused.Add(1) // the wait passed
					continue
				case err != nil:
					if ctx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				if !holder.CompareAndSwap(0, id) {
					overlaps.Add(1)
					holder.Store(id)
				}
				tokMu.Lock()
				if tok <= lastTok {
					regress.Add(1)
				}
				lastTok = max(lastTok, tok)
				tokMu.Unlock()
				if u := unlockAt.Swap(0); u != 0 {
					switch {
					case stopped.Load():
						// the contenders leaving, one grant after another
					case sent.UnixNano() < u:
						hist.Record(got.Sub(time.Unix(0, u)))
						if timed.Add(1) >= int64(cfg.Handovers) {
							stopped.Store(true)
						}
					default:
						fresh.Add(1)
					}
				}
				time.Sleep(cfg.Hold)
				holder.CompareAndSwap(id, 0)
				u0 := time.Now()
				unlockAt.Store(u0.UnixNano())
				n, err := c.Do(ctx, proto.CmdUnlock, name, owner).Int64()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						errs.Add(1)
						first.CompareAndSwap(nil, err)
					}
				case n != 1:
					notHeld.Add(1)
				default:
					unlockHist.Record(time.Since(u0))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := &Result{Scenario: "lock-handover", Target: TargetSlotreg, Params: map[string]any{
		"contenders": cfg.Contenders, "handovers": cfg.Handovers, "hold": cfg.Hold.String(),
		"ttl_ms": ttl, "wait_ms": wait, "sessions": len(cfg.Addrs)}}
	res.timed(hist.Count(), errs.Load(), elapsed, hist)
	if s := unlockHist.Summary(); s != nil {
		res.Add("unlock_p50", s.P50Ms, "ms")
		res.Add("unlock_p99", s.P99Ms, "ms")
	}
	res.Add("grants to a LOCK sent after the release (not timed)", float64(fresh.Load()), "")
	res.Add("waits that passed (null)", float64(refused.Load()), "")
	res.Add("grants overlapping another holder", float64(overlaps.Load()), "")
	res.Add("fencing tokens not above the previous grant's", float64(regress.Load()), "")
	res.Add("UNLOCKs answered 0 (not held)", float64(notHeld.Load()), "")
	if e := first.Load(); e != nil {
		res.Note("first error: %v", e)
	}
	if res.Ops == 0 {
		return res, fmt.Errorf("lock-handover: no handover timed (errors %d)", errs.Load())
	}
	return res, nil
}

// pathScenarios are the scenarios PathRatios compares with etcd.
var pathScenarios = []string{"prefix-watch", "prefix-watch-initial", "children-flat", "children-subtrees", "lock-handover"}

// PathRatios appends to rp.Ratios, for each paths scenario run against
// slotreg and etcd, the ratios of their p50 and p99 latencies (slotreg /
// etcd: above 1, slotreg is slower).
func PathRatios(rp *Report) {
	find := func(scenario, target string) *Result {
		for _, r := range rp.Results {
			if r.Scenario == scenario && r.Target == target && r.Latency != nil {
				return r
			}
		}
		return nil
	}
	for _, sc := range pathScenarios {
		a, b := find(sc, TargetSlotreg), find(sc, TargetEtcd)
		if a == nil || b == nil {
			continue
		}
		if b.Latency.P50Ms > 0 {
			rp.Ratios = append(rp.Ratios, Ratio{sc, TargetEtcd, "p50 ms", a.Latency.P50Ms, b.Latency.P50Ms, a.Latency.P50Ms / b.Latency.P50Ms})
		}
		if b.Latency.P99Ms > 0 {
			rp.Ratios = append(rp.Ratios, Ratio{sc, TargetEtcd, "p99 ms", a.Latency.P99Ms, b.Latency.P99Ms, a.Latency.P99Ms / b.Latency.P99Ms})
		}
	}
}
