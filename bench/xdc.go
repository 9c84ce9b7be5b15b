package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/xdclink"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// The datacenters scenario (issue 16). Two whole clusters, dc1 and dc2
// (scripts/cluster.sh: 3 meta, 3 data, 2 sessions each), run side by side
// on loopback, each listing the other as remote; dc2 runs under
// xdclink.Wrap, so the link between them can be cut and healed. It
// measures how long a REGISTER in dc1 takes to reach a SCOPE global
// subscriber in dc2, unloaded and under load; how long dc2 takes to
// hold P of dc1's publishers, and to be current again after an outage it
// rode out (a position compare) and after one that made it drop them
// (--remote-expire: a full resync); and the heap a remote publisher
// costs against a local one.

// XDCConfig drives the datacenters scenario.
type XDCConfig struct {
	// Script says how to run cluster.sh (Bin, Lease, Keep); Base, Env and
	// Wrap are set per datacenter here.
	Script ScriptOptions
	// Rounds are the propagation probes, one at a time, unloaded and
	// again under load, over ProbeServices services.
	Rounds        int
	ProbeServices int
	// LoadRate is the background REGISTER/s over both datacenters' four
	// sessions during the loaded probes; 0 takes LoadFraction of what
	// LoadClients closed-loop writers sustained for MaxFor.
	LoadRate     float64
	LoadFraction float64
	LoadClients  int
	MaxFor       time.Duration
	// Publishers (P) are registered in dc1 for the resync and memory
	// parts, over Services services, held by Conns connections over dc1's
	// sessions, Batch REGISTERs pipelined on each.
	Publishers int
	Services   int
	Conns      int
	Batch      int
	// RemoteExpire is dc2's SLOTREG_REMOTE_EXPIRE.
	RemoteExpire time.Duration
	// ShortCut is the outage dc2 rides out (shorter than RemoteExpire);
	// LongCut the one after which it has dropped dc1's publishers.
	ShortCut, LongCut time.Duration
	// ChangePct of dc1's publishers get new data during the long cut.
	ChangePct float64
	// Settle is the wait before the heap readings, for followers.
	Settle time.Duration
	// Window bounds each wait for a sync.
	Window   time.Duration
	Progress *Progress
}

func (c *XDCConfig) defaults() {
	c.Rounds = cmp.Or(max(c.Rounds, 0), 2000)
	c.ProbeServices = cmp.Or(max(c.ProbeServices, 0), 50)
	c.LoadFraction = cmp.Or(max(c.LoadFraction, 0), 0.5)
	c.LoadClients = cmp.Or(max(c.LoadClients, 0), 48)
	c.MaxFor = cmp.Or(max(c.MaxFor, 0), 5*time.Second)
	c.Publishers = cmp.Or(max(c.Publishers, 0), 1_000_000)
	c.Services = cmp.Or(max(c.Services, 0), 10_000)
	c.Services = min(c.Services, c.Publishers)
	c.Conns = cmp.Or(max(c.Conns, 0), 16)
	c.Batch = cmp.Or(max(c.Batch, 0), 256)
	c.RemoteExpire = cmp.Or(max(c.RemoteExpire, 0), 5*time.Second)
	c.ShortCut = cmp.Or(max(c.ShortCut, 0), 2*time.Second)
	c.LongCut = cmp.Or(max(c.LongCut, 0), 8*time.Second)
	c.Settle = cmp.Or(max(c.Settle, 0), 5*time.Second)
	c.Window = cmp.Or(max(c.Window, 0), 3*time.Minute)
}

// dcPair is the two datacenters and the link between them.
type dcPair struct {
	dc [2]*ScriptCluster
	// sessions and data are each datacenter's node addresses; dataIDs
	// the data nodes' ids.
	sessions, data, dataIDs [2][]string
	link                    *xdclink.Link
	binDir                  string
}

var dcNames = [2]string{"dc1", "dc2"}

// startDatacenters starts dc1 and dc2 side by side; dc2 drops dc1's
// publishers after RemoteExpire unheard, dc1 keeps dc2's.
func startDatacenters(ctx context.Context, cfg *XDCConfig) (*dcPair, error) {
	p := &dcPair{}
	o := cfg.Script
	if o.Bin == "" {
		dir, err := os.MkdirTemp("", "slotreg-bench-xdc-bin-")
		if err != nil {
			return nil, err
		}
		p.binDir = dir
		cfg.Progress.Logf("building the registry binary")
		if o.Bin, err = BuildRegistry(ctx, o.ModuleDir, dir); err != nil {
			p.close()
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if err := p.start(ctx, cfg, o); err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return p, nil
	}
	p.close()
	return nil, lastErr
}

func (p *dcPair) start(ctx context.Context, cfg *XDCConfig, o ScriptOptions) error {
	b1, err := FreeBase()
	if err != nil {
		return err
	}
	b2, err := FreeBase(b1)
	if err != nil {
		return err
	}
	metas := func(b int) string {
		return fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", b+21, b+22, b+23)
	}
	// Tag before dc2 starts, so every connection it opens is tagged.
	if p.link, err = xdclink.Tag(b1, b2); err != nil {
		return err
	}
	opts := [2]ScriptOptions{o, o}
	opts[0].Base, opts[1].Base = b1, b2
	opts[0].Env = append(slices.Clone(o.Env), "SLOTREG_DATACENTER=dc1", "SLOTREG_REMOTE_DATACENTERS=dc2="+metas(b2))
	opts[1].Env = append(slices.Clone(o.Env), "SLOTREG_DATACENTER=dc2", "SLOTREG_REMOTE_DATACENTERS=dc1="+metas(b1),
		"SLOTREG_REMOTE_EXPIRE="+cfg.RemoteExpire.String())
	opts[1].Wrap = xdclink.Wrap()
	cfg.Progress.Logf("xdc: starting dc1 (base port %d) and dc2 (base port %d, run as group %d)", b1, b2, xdclink.Group)
	var wg sync.WaitGroup
	var errs [2]error
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.dc[i], errs[i] = StartScriptCluster(ctx, opts[i])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		p.down()
		return err
	}
	for i, c := range p.dc {
		ns, err := c.Status(ctx)
		if err != nil {
			p.down()
			return err
		}
		for _, n := range ns {
			switch n.Role {
			case proto.KindSession:
				p.sessions[i] = append(p.sessions[i], n.Addr)
			case proto.KindData:
				p.data[i] = append(p.data[i], n.Addr)
				p.dataIDs[i] = append(p.dataIDs[i], n.ID)
			}
		}
	}
	return nil
}

// down stops both datacenters and removes the link's table.
func (p *dcPair) down() {
	var wg sync.WaitGroup
	for i, c := range p.dc {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.Down() }()
			p.dc[i] = nil
		}
	}
	wg.Wait()
	if p.link != nil {
		p.link.Close()
		p.link = nil
	}
}

func (p *dcPair) close() {
	p.down()
	if p.binDir != "" {
		os.RemoveAll(p.binDir)
	}
}

// xinfo is one session's INFO datacenters line for a remote datacenter.
type xinfo struct {
	pubs, staleMs, heardMs int64
	ok                     bool
}

var xinfoRE = regexp.MustCompile(`remote_(\S+):publishers=(\d+),stale_ms=(-?\d+),heard_ms=(-?\d+)`)

// readXInfo reads INFO datacenters from a session: what it says of dc.
func readXInfo(ctx context.Context, addr, dc string) (xinfo, error) {
	c := redis.NewClient(oneConn(addr))
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := c.Do(cctx, proto.CmdInfo, "datacenters").Text()
	if err != nil {
		return xinfo{}, fmt.Errorf("INFO datacenters on %s: %w", addr, err)
	}
	for _, m := range xinfoRE.FindAllStringSubmatch(s, -1) {
		if m[1] != dc {
			continue
		}
		x := xinfo{ok: true}
		x.pubs, _ = strconv.ParseInt(m[2], 10, 64)
		x.staleMs, _ = strconv.ParseInt(m[3], 10, 64)
		x.heardMs, _ = strconv.ParseInt(m[4], 10, 64)
		return x, nil
	}
	return xinfo{}, nil
}

// xstate is a datacenter's copy of another's publishers, read from
// every data node's DXSTATS (slots are counted where they are led).
type xstate struct {
	pubs    int
	staleMs int64
	// slots are the slots led with a copy; synced those of them whose
	// last answer came after the time asked about.
	slots, synced int
}

// readXState reads DXSTATS from every data node of a datacenter: its
// copy of dc's publishers, and how many slots had an answer from dc in
// the last `since` (since <= 0: do not count).
func readXState(ctx context.Context, data []string, dc string, since time.Duration) (xstate, error) {
	var st xstate
	seen := map[int]bool{}
	for _, a := range data {
		c := redis.NewClient(oneConn(a))
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := c.Do(cctx, proto.CmdDXStats).Text()
		cancel()
		c.Close()
		if err != nil {
			return st, fmt.Errorf("DXSTATS on %s: %w", a, err)
		}
		var rs []proto.XRemote
		if err := json.Unmarshal([]byte(s), &rs); err != nil {
			return st, fmt.Errorf("DXSTATS on %s: %w", a, err)
		}
		for _, r := range rs {
			if r.Name != dc {
				continue
			}
			st.pubs += r.Publishers
			st.staleMs = max(st.staleMs, r.StaleMs)
			for _, x := range r.Slots {
				if seen[x.Slot] {
					continue // a leader change between two reads
				}
				seen[x.Slot] = true
				st.slots++
				if since > 0 && x.LagMs >= 0 && x.LagMs <= since.Milliseconds() {
					st.synced++
				}
			}
		}
	}
	return st, nil
}

// waitXState polls readXState every `every` until ok holds; it returns
// the time it held, and the last state read.
func waitXState(ctx context.Context, data []string, dc string, from time.Time, every, within time.Duration,
	ok func(st xstate, at time.Duration) bool) (time.Duration, xstate, error) {
	deadline := time.Now().Add(within)
	var last xstate
	var lastErr error
	for {
		asked := time.Now()
		st, err := readXState(ctx, data, dc, asked.Sub(from))
		if err == nil {
			last = st
			if ok(st, asked.Sub(from)) {
				return asked.Sub(from), st, nil
			}
		} else {
			lastErr = err
		}
		if ctx.Err() != nil {
			return 0, last, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, last, fmt.Errorf("after %v: %d publishers of %s in %d slots (%d answered since), last error %v",
				within, last.pubs, dc, last.slots, last.synced, lastErr)
		}
		time.Sleep(every)
	}
}

// XDC runs the datacenters scenario.
func XDC(ctx context.Context, cfg XDCConfig) ([]*Result, error) {
	cfg.defaults()
	if cfg.ShortCut >= cfg.RemoteExpire {
		return nil, fmt.Errorf("xdc: the short cut (%v) must be shorter than --remote-expire (%v)", cfg.ShortCut, cfg.RemoteExpire)
	}
	pair, err := startDatacenters(ctx, &cfg)
	if err != nil {
		return nil, fmt.Errorf("xdc: %w", err)
	}
	defer pair.close()
	logs := func() []string { return nodeLogSummary(pair) }

	// Both sides must have heard of each other before the first probe.
	for i := range 2 {
		other := dcNames[1-i]
		deadline := time.Now().Add(time.Minute)
		for {
			x, err := readXInfo(ctx, pair.sessions[i][0], other)
			if err == nil && x.ok && x.heardMs >= 0 {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("xdc: %s never heard from %s: %+v %v", dcNames[i], other, x, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var out []*Result
	rs, err := xdcPropagation(ctx, pair, &cfg)
	out = append(out, rs...)
	if err == nil {
		rs, err = xdcResync(ctx, pair, &cfg)
		out = append(out, rs...)
	}
	// What the nodes complained of, on the resync's result (it has the
	// cuts) or else the last one.
	if len(out) > 0 {
		r := out[len(out)-1]
		for _, x := range out {
			if x.Scenario == "xdc-resync" {
				r = x
			}
		}
		for _, n := range logs() {
			r.Note("%s", n)
		}
	}
	return out, err
}

// xprobe is a SCOPE global subscriber in dc2 waiting for one publisher
// of dc1 at a time.
type xprobe struct {
	c    *redis.Client
	ps   *redis.PubSub
	done chan struct{}
	got  chan time.Time

	mu       sync.Mutex
	svc, rid string
	// unplaced counts awaited publishers that arrived without their
	// datacenter dc1 and a zone.
	unplaced atomic.Int64
}

func newXProbe(ctx context.Context, addr string, services []string) (*xprobe, error) {
	o := oneConn(addr)
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		return cn.Do(ctx, proto.CmdScope, proto.ScopeGlobal.String()).Err()
	}
	p := &xprobe{c: redis.NewClient(o), done: make(chan struct{}), got: make(chan time.Time, 1)}
	p.ps = p.c.Subscribe(ctx, services...)
	for n := 0; n < len(services); {
		m, err := p.ps.ReceiveTimeout(ctx, 10*time.Second)
		if err != nil {
			p.ps.Close()
			p.c.Close()
			return nil, fmt.Errorf("subscribe on %s: %w", addr, err)
		}
		if s, ok := m.(*redis.Subscription); ok && s.Kind == "subscribe" {
			n++
		}
	}
	go p.read()
	return p, nil
}

func (p *xprobe) read() {
	defer close(p.done)
	for {
		m, err := p.ps.Receive(context.Background())
		if err != nil {
			return
		}
		now := time.Now()
		msg, ok := m.(*redis.Message)
		if !ok {
			continue
		}
		var push proto.Push
		if json.Unmarshal([]byte(msg.Payload), &push) != nil {
			continue
		}
		p.mu.Lock()
		if push.DataInfoID == p.svc {
			for _, e := range push.Publishers {
				if e.RegisterID != p.rid {
					continue
				}
				if e.Datacenter != dcNames[0] || e.Zone == "" {
					p.unplaced.Add(1)
				}
				p.svc = ""
				select {
				case p.got <- now:
				default:
				}
				break
			}
		}
		p.mu.Unlock()
	}
}

// expect says which publisher to wait for next.
func (p *xprobe) expect(svc, rid string) {
	p.mu.Lock()
	p.svc, p.rid = svc, rid
	select {
	case <-p.got:
	default:
	}
	p.mu.Unlock()
}

func (p *xprobe) close() {
	p.ps.Close()
	p.c.Close()
	<-p.done
}

// probeRounds REGISTERs a new publisher on w, one at a time, and records
// the time until p has it; then UNREGISTERs it (untimed: the next round
// uses another service). The first warm rounds are not recorded.
func probeRounds(ctx context.Context, p *xprobe, w *redis.Client, services []string, tag string, warm, n int) (*Histogram, int64, error) {
	h := NewHistogram()
	var errs int64
	var first error
	for i := 0; i < warm+n && ctx.Err() == nil; i++ {
		svc := services[i%len(services)]
		rid := "probe-" + tag + "-" + strconv.Itoa(i)
		p.expect(svc, rid)
		t0 := time.Now()
		if err := w.Do(ctx, proto.CmdRegister, svc, rid, "10.0.0.1:12200").Err(); err != nil {
			errs++
			first = cmp.Or(first, fmt.Errorf("REGISTER %s %s: %w", svc, rid, err))
			continue
		}
		wait := 10 * time.Second
		if i < warm {
			wait = 30 * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case at := <-p.got:
			if i >= warm {
				h.Record(at.Sub(t0))
			}
		case <-t.C:
			errs++
			first = cmp.Or(first, fmt.Errorf("%s %s did not reach dc2 in %v", svc, rid, wait))
		case <-ctx.Done():
		}
		t.Stop()
		if err := w.Do(ctx, proto.CmdUnregister, svc, rid).Err(); err != nil && ctx.Err() == nil {
			errs++
			first = cmp.Or(first, fmt.Errorf("UNREGISTER %s %s: %w", svc, rid, err))
		}
	}
	return h, errs, first
}

// xdcPropagation measures REGISTER in dc1 -> push to a SCOPE global
// subscriber in dc2, unloaded and then under a background load on both
// datacenters.
func xdcPropagation(ctx context.Context, pair *dcPair, cfg *XDCConfig) ([]*Result, error) {
	prefix := runPrefix("xdcprobe")
	services := make([]string, cfg.ProbeServices)
	for i := range services {
		services[i] = serviceName(prefix, i)
	}
	probe, err := newXProbe(ctx, pair.sessions[1][0], services)
	if err != nil {
		return nil, fmt.Errorf("xdc: %w", err)
	}
	defer probe.close()
	w := dial(pair.sessions[0][0])
	defer w.Close()
	params := func() map[string]any {
		return map[string]any{"rounds": cfg.Rounds, "services": cfg.ProbeServices,
			"from": "dc1 " + pair.sessions[0][0], "to": "dc2 " + pair.sessions[1][0] + " (SCOPE global)"}
	}
	var out []*Result

	cfg.Progress.Logf("xdc: %d propagation rounds, unloaded", cfg.Rounds)
	start := time.Now()
	h, errs, first := probeRounds(ctx, probe, w, services, "u", 20, cfg.Rounds)
	r := &Result{Scenario: "xdc-propagation", Target: TargetSlotreg, Params: params()}
	r.timed(h.Count(), errs, time.Since(start), h)
	if first != nil {
		r.Note("first error: %v", first)
	}
	out = append(out, r)
	if ctx.Err() != nil {
		return out, ctx.Err()
	}

	all := append(slices.Clone(pair.sessions[0]), pair.sessions[1]...)
	load := RegisterConfig{Addrs: all, Clients: cfg.LoadClients, Publishers: 10_000, Services: 100, DataSize: 32,
		Prefix: runPrefix("xdcload")}
	rate := cfg.LoadRate
	if rate <= 0 {
		cfg.Progress.Logf("xdc: measuring the REGISTER/s both datacenters sustain (%d writers over 4 sessions, %v)", cfg.LoadClients, cfg.MaxFor)
		mx := load
		mx.Duration, mx.Progress = cfg.MaxFor, cfg.Progress
		mr, err := Register(ctx, mx)
		if mr != nil {
			mr.Scenario = "xdc-register-max"
			out = append(out, mr)
		}
		if err != nil {
			return out, fmt.Errorf("xdc: measuring the maximum: %w", err)
		}
		rate = cfg.LoadFraction * mr.Rate
	}
	cfg.Progress.Logf("xdc: %d propagation rounds under %.0f REGISTER/s over both datacenters", cfg.Rounds, rate)
	bgCtx, stopBG := context.WithCancel(ctx)
	bgCfg := load
	bgCfg.Duration, bgCfg.Rate = time.Hour, rate
	var bg *Result
	var bgErr error
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		bg, bgErr = Register(bgCtx, bgCfg)
	}()
	time.Sleep(time.Second) // the load under way
	start = time.Now()
	h, errs, first = probeRounds(ctx, probe, w, services, "l", 20, cfg.Rounds)
	elapsed := time.Since(start)
	stopBG()
	<-bgDone
	r = &Result{Scenario: "xdc-propagation-loaded", Target: TargetSlotreg, Params: params()}
	r.Params["load_rate"] = math.Round(rate)
	r.Params["load_clients"] = cfg.LoadClients
	r.timed(h.Count(), errs, elapsed, h)
	if first != nil {
		r.Note("first error: %v", first)
	}
	r.Add("background target REGISTER/s", math.Round(rate), "ops/s")
	if bg != nil {
		bg.Scenario = "xdc-register-background"
		r.Add("background REGISTER/s achieved", math.Round(bg.Rate), "ops/s")
	}
	if n := probe.unplaced.Load(); n > 0 {
		r.Note("%d probe publishers arrived without datacenter dc1 and a zone", n)
		r.Errors += n
	}
	out = append(out, r)
	if bg != nil {
		out = append(out, bg)
	}
	if bgErr != nil {
		return out, fmt.Errorf("xdc: background load: %w", bgErr)
	}
	// The background publishers went with their connections: wait until
	// neither side holds the other's, so the heap baseline is clean.
	for i := range 2 {
		if _, st, err := waitXState(ctx, pair.data[1-i], dcNames[i], time.Now(), 200*time.Millisecond, cfg.Window,
			func(st xstate, _ time.Duration) bool { return st.pubs == 0 }); err != nil {
			return out, fmt.Errorf("xdc: %s still holds %d of %s's publishers after the load: %w", dcNames[1-i], st.pubs, dcNames[i], err)
		}
	}
	return out, ctx.Err()
}

// xholder registers dc1's publishers, pipelined, each through the one
// connection that holds it (publisher p: connection p%len(conns)).
type xholder struct {
	conns    []*redis.Client
	prefix   string
	services int
}

func (h *xholder) svc(p int) string { return serviceName(h.prefix, p%h.services) }

// xrid and xdata are publisher p's registerId (20 bytes) and data (20
// bytes, an address; version v changes the port).
func xrid(p int) string { return fmt.Sprintf("pub-%016d", p) }
func xdata(p, v int) string {
	return fmt.Sprintf("10.%03d.%03d.%03d:%05d", p>>16&255, p>>8&255, p&255, 12200+v)
}

// write registers publishers 0..n-1 for which pick holds (all when nil)
// with data version ver(p).
func (h *xholder) write(ctx context.Context, n, batch int, pick func(int) bool, ver func(int) int, name string,
	progress *Progress) (ops, errs int64, first error) {
	var nOps, nErrs atomic.Int64
	var firstErr atomic.Value
	stop := progress.track(name, &nOps, &nErrs)
	var wg sync.WaitGroup
	for w, c := range h.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pipe := c.Pipeline()
			flush := func() {
				cmds, _ := pipe.Exec(ctx)
				for _, cmd := range cmds {
					if err := cmd.Err(); err != nil {
						nErrs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					} else {
						nOps.Add(1)
					}
				}
			}
			for p := w; p < n && ctx.Err() == nil; p += len(h.conns) {
				if pick != nil && !pick(p) {
					continue
				}
				pipe.Do(ctx, proto.CmdRegister, h.svc(p), xrid(p), xdata(p, ver(p)))
				if pipe.Len() >= batch {
					flush()
				}
			}
			flush()
		}()
	}
	wg.Wait()
	stop()
	if e := firstErr.Load(); e != nil {
		first = e.(error)
	}
	return nOps.Load(), nErrs.Load(), first
}

// verify LOOKUPs every service through a SCOPE global connection to
// addr and compares the publishers of dc1 with what was written: it
// counts those missing, with other data, and any it does not know.
func (h *xholder) verify(ctx context.Context, addr string, n int, ver func(int) int) (missing, wrong, extra int, err error) {
	const conns, batch = 4, 64
	var nMissing, nWrong, nExtra atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := oneConn(addr)
			o.ReadTimeout = opTimeout
			o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
				return cn.Do(ctx, proto.CmdScope, proto.ScopeGlobal.String()).Err()
			}
			c := redis.NewClient(o)
			defer c.Close()
			for s0 := w * batch; s0 < h.services; s0 += conns * batch {
				pipe := c.Pipeline()
				var cmds []*redis.Cmd
				for s := s0; s < min(s0+batch, h.services); s++ {
					cmds = append(cmds, pipe.Do(ctx, proto.CmdLookup, serviceName(h.prefix, s)))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				for k, cmd := range cmds {
					got, err := lookupPairs(cmd)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					for p := s0 + k; p < n; p += h.services {
						d, ok := got[xrid(p)]
						switch {
						case !ok:
							nMissing.Add(1)
						case d != xdata(p, ver(p)):
							nWrong.Add(1)
						}
						delete(got, xrid(p))
					}
					nExtra.Add(int64(len(got)))
				}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		err = e.(error)
	}
	return int(nMissing.Load()), int(nWrong.Load()), int(nExtra.Load()), err
}

// lookupPairs reads a LOOKUP reply: registerId -> data.
func lookupPairs(cmd *redis.Cmd) (map[string]string, error) {
	v, err := cmd.Slice()
	if err != nil {
		return nil, err
	}
	p, err := decodeLookup(fmt.Sprint(cmd.Args()[1]), v)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(p.Publishers))
	for _, e := range p.Publishers {
		out[e.RegisterID] = e.Data
	}
	return out, nil
}

// xdcResync loads P publishers into dc1 and measures dc2's initial sync,
// the heap a remote and a local publisher cost, and the resyncs after a
// short and a long outage of the link.
func xdcResync(ctx context.Context, pair *dcPair, cfg *XDCConfig) ([]*Result, error) {
	P := cfg.Publishers
	res := &Result{Scenario: "xdc-resync", Target: TargetSlotreg, Params: map[string]any{
		"publishers": P, "services": cfg.Services, "conns": cfg.Conns, "pipeline": cfg.Batch,
		"register_id_bytes": len(xrid(0)), "data_bytes": len(xdata(0, 0)),
		"remote_expire": cfg.RemoteExpire.String(), "short_cut": cfg.ShortCut.String(), "long_cut": cfg.LongCut.String(),
		"change_pct": cfg.ChangePct,
	}}
	mem := &Result{Scenario: "xdc-memory", Target: TargetSlotreg, Params: map[string]any{"publishers": P,
		"register_id_bytes": len(xrid(0)), "data_bytes": len(xdata(0, 0)), "replicas": 2}}
	out := []*Result{res, mem}
	fail := func(format string, args ...any) ([]*Result, error) {
		err := fmt.Errorf("xdc: "+format, args...)
		res.Note("stopped: %v", err)
		return out, err
	}
	procs := [2][]*Proc{}
	for i := range 2 {
		for k, a := range pair.data[i] {
			procs[i] = append(procs[i], &Proc{Role: proto.KindData, ID: pair.dataIDs[i][k], Addr: a})
		}
	}
	var base [2]map[string]proto.MemoryStats
	for i := range 2 {
		var err error
		if base[i], err = readHeaps(ctx, procs[i]); err != nil {
			return fail("%s heap before: %w", dcNames[i], err)
		}
	}

	h := &xholder{prefix: runPrefix("xdc"), services: cfg.Services}
	for i := range cfg.Conns {
		h.conns = append(h.conns, dial(pair.sessions[0][i%len(pair.sessions[0])]))
	}
	defer closeAll(h.conns)
	v0 := func(int) int { return 0 }

	// The initial sync, while dc1 takes the writes.
	cfg.Progress.Logf("xdc: registering %d publishers in dc1 (%d connections, %d pipelined)", P, cfg.Conns, cfg.Batch)
	loadStart := time.Now()
	var synced atomic.Int64 // ns after loadStart when dc2 first held P
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for watchCtx.Err() == nil {
			if st, err := readXState(watchCtx, pair.data[1], "dc1", 0); err == nil && st.pubs == P {
				synced.Store(int64(time.Since(loadStart)))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	ops, errs, first := h.write(ctx, P, cfg.Batch, nil, v0, "xdc register", cfg.Progress)
	loaded := time.Since(loadStart)
	res.Ops, res.Errors = ops, errs
	res.Seconds = loaded.Seconds()
	res.Rate = float64(ops) / loaded.Seconds()
	if first != nil {
		res.Note("first REGISTER error: %v", first)
	}
	res.Add("dc1: P registered in", round3(loaded.Seconds()), "s")
	res.Add("dc1: REGISTER/s while loading", math.Round(res.Rate), "ops/s")
	if errs > 0 {
		stopWatch()
		<-watchDone
		return fail("%d of %d REGISTERs failed: %v", errs, P, first)
	}
	select {
	case <-watchDone:
	case <-time.After(cfg.Window):
	case <-ctx.Done():
	}
	stopWatch()
	<-watchDone
	at := time.Duration(synced.Load())
	if at == 0 {
		st, _ := readXState(ctx, pair.data[1], "dc1", 0)
		return fail("dc2 holds %d of dc1's %d publishers %v after the last REGISTER", st.pubs, P, cfg.Window)
	}
	res.Add("initial sync: dc2 holds P, from the first REGISTER", round3(at.Seconds()), "s")
	res.Add("initial sync: dc2 holds P, after the last REGISTER acknowledged", round3((at - loaded).Seconds()), "s")

	// The heap each side's data nodes hold for them.
	cfg.Progress.Logf("xdc: dc2 holds all %d; settling %v before the heap readings", P, cfg.Settle)
	time.Sleep(cfg.Settle)
	for i, what := range []string{"local (dc1)", "remote (dc2)"} {
		heap, err := readHeaps(ctx, procs[i])
		if err != nil {
			return fail("%s heap after: %w", dcNames[i], err)
		}
		var grew int64
		for _, p := range procs[i] {
			d := int64(heap[p.ID].HeapInuse) - int64(base[i][p.ID].HeapInuse)
			grew += d
			mem.Add(fmt.Sprintf("%s %s heap before", dcNames[i], p.ID), mib(int64(base[i][p.ID].HeapInuse)), "MiB")
			mem.Add(fmt.Sprintf("%s %s heap after", dcNames[i], p.ID), mib(int64(heap[p.ID].HeapInuse)), "MiB")
		}
		mem.Add(fmt.Sprintf("%s: data nodes' heap growth (3 nodes)", what), mib(grew), "MiB")
		mem.Add(fmt.Sprintf("%s: per publisher, both copies", what), round1(float64(grew)/float64(P)), "B")
		mem.Add(fmt.Sprintf("%s: per publisher per copy", what), round1(float64(grew)/float64(2*P)), "B")
	}
	own := float64(len(xrid(0))+len(xdata(0, 0))) + float64(len(serviceName(h.prefix, cfg.Services-1)))*float64(cfg.Services)/float64(P)
	mem.Add("a publisher's own bytes (registerId, data, share of the service name)", round1(own), "B")
	mem.Note("heap is HeapInuse right after a full collection the harness asks each data node for (DSTATS GC), summed over a datacenter's 3 data nodes; every slot has 2 copies (its leader's and a follower's) and both hold the publishers, local or remote, so per copy is the growth / (2 × P); the op-log entries of the writes are included on both sides (dc2 logs each remote publisher as an OpRemotePut entry)")

	// (a) An outage dc2 rides out: a position compare on heal.
	s2 := pair.sessions[1][0]
	cfg.Progress.Logf("xdc: cutting the link for %v (dc2's --remote-expire is %v)", cfg.ShortCut, cfg.RemoteExpire)
	minPubs, maxStale, lasted, err := cutFor(ctx, pair.link, s2, cfg.ShortCut, nil)
	if err != nil {
		return fail("short cut: %w", err)
	}
	healAt := time.Now()
	res.Add("short cut: link cut for", round3(lasted.Seconds()), "s")
	res.Add("short cut: fewest dc1 publishers dc2 showed during the cut", float64(minPubs), "")
	res.Add("short cut: largest stale_ms dc2 showed during the cut", float64(maxStale), "ms")
	if minPubs != int64(P) {
		res.Note("short cut: dc2 showed %d of dc1's %d publishers during a %v cut (--remote-expire %v): it did not keep them all", minPubs, P, cfg.ShortCut, cfg.RemoteExpire)
		res.Errors++
	}
	minAfter := P
	d, _, err := waitXState(ctx, pair.data[1], "dc1", healAt, 50*time.Millisecond, cfg.Window, func(st xstate, _ time.Duration) bool {
		minAfter = min(minAfter, st.pubs)
		return st.pubs == P && st.slots == slot.Count && st.synced == slot.Count
	})
	if err != nil {
		return fail("after the short cut: %w", err)
	}
	res.Add("short cut: fewest dc1 publishers dc2 held after the heal, until current", float64(minAfter), "")
	if minAfter != P {
		res.Note("short cut: after the heal, before it was current again, dc2 held only %d of dc1's %d publishers: --remote-expire (%v) dropped slots of an outage of %v", minAfter, P, cfg.RemoteExpire, lasted.Round(time.Millisecond))
		res.Errors++
	}
	res.Add("short cut: heal -> every slot answered again, dc2 holds P", round3(d.Seconds()), "s")
	if dInfo, err := waitInfo(ctx, s2, healAt, cfg.Window, func(x xinfo) bool { return x.pubs == int64(P) && x.staleMs == 0 }); err == nil {
		res.Add("short cut: heal -> INFO datacenters stale_ms 0 and publishers P", round3(dInfo.Seconds()), "s")
	} else {
		res.Note("short cut: %v", err)
	}

	// (b) An outage past --remote-expire: dc2 drops dc1's publishers,
	// meanwhile some change in dc1, and the heal is a full resync.
	every := 0
	if cfg.ChangePct > 0 {
		every = max(1, int(math.Round(100/cfg.ChangePct)))
	}
	changed := func(p int) bool { return every > 0 && p%every == 0 }
	v1 := func(p int) int {
		if changed(p) {
			return 1
		}
		return 0
	}
	cfg.Progress.Logf("xdc: cutting the link for %v, past --remote-expire %v; changing %g%% of dc1's publishers meanwhile", cfg.LongCut, cfg.RemoteExpire, cfg.ChangePct)
	var changedOps, changedErrs int64
	var changeErr error
	var dropAt time.Duration
	minPubs, _, lasted, err = cutFor(ctx, pair.link, s2, cfg.LongCut, func(cutAt time.Time, x xinfo) bool {
		if dropAt == 0 && x.ok && x.pubs == 0 {
			dropAt = time.Since(cutAt)
		}
		return dropAt > 0
	}, func() {
		if every > 0 {
			changedOps, changedErrs, changeErr = h.write(ctx, P, cfg.Batch, changed, v1, "xdc change", nil)
		}
	})
	if err != nil {
		return fail("long cut: %w", err)
	}
	healAt = time.Now()
	res.Add("long cut: publishers changed in dc1 during the cut", float64(changedOps), "")
	if changedErrs > 0 {
		return fail("%d REGISTERs of the changes failed: %v", changedErrs, changeErr)
	}
	if dropAt == 0 {
		res.Note("long cut: dc2 never showed 0 of dc1's publishers (fewest %d) within the cut", minPubs)
		res.Errors++
	} else {
		res.Add("long cut: cut -> dc2 dropped dc1's publishers", round3(dropAt.Seconds()), "s")
	}
	res.Add("long cut: link cut for", round3(lasted.Seconds()), "s")
	var firstBack time.Duration
	d, _, err = waitXState(ctx, pair.data[1], "dc1", healAt, 100*time.Millisecond, cfg.Window, func(st xstate, at time.Duration) bool {
		if firstBack == 0 && st.pubs > 0 {
			firstBack = at
		}
		return st.pubs == P && st.slots == slot.Count && st.synced == slot.Count
	})
	if err != nil {
		return fail("after the long cut: %w", err)
	}
	res.Add("long cut: heal -> first of dc1's publishers back in dc2", round3(firstBack.Seconds()), "s")
	res.Add("long cut: heal -> dc2 holds P again (full resync)", round3(d.Seconds()), "s")
	res.Add("long cut: full resync, publishers/s", math.Round(float64(P)/d.Seconds()), "pub/s")

	// Every publisher, with its latest data, as a global LOOKUP in dc2
	// shows it.
	cfg.Progress.Logf("xdc: checking every publisher through a SCOPE global LOOKUP in dc2")
	vStart := time.Now()
	missing, wrong, extra, err := h.verify(ctx, s2, P, v1)
	if err != nil {
		return fail("verify: %w", err)
	}
	res.Add("check: LOOKUPs of every service in dc2 took", round3(time.Since(vStart).Seconds()), "s")
	res.Add("check: dc1 publishers missing in dc2", float64(missing), "")
	res.Add("check: with stale data", float64(wrong), "")
	res.Add("check: unknown publishers", float64(extra), "")
	if missing+wrong+extra > 0 {
		res.Errors += int64(missing + wrong + extra)
		return out, fmt.Errorf("xdc: after the resync dc2 misses %d of dc1's publishers, shows %d with stale data and %d unknown", missing, wrong, extra)
	}
	if res.Errors > 0 {
		return out, fmt.Errorf("xdc: %d errors (see the notes)", res.Errors)
	}
	return out, nil
}

// cutFor cuts the link for d, polling dc2's INFO datacenters (through
// sess, a dc2 session, which the cut does not touch) every 200 ms; it
// returns the fewest dc1 publishers and the largest stale_ms seen, and
// how long the cut lasted. When
// until is set, the cut lasts past d until it holds, for up to a minute
// more. during runs meanwhile (the cut lasts until it returns too).
func cutFor(ctx context.Context, link *xdclink.Link, sess string, d time.Duration, until func(time.Time, xinfo) bool,
	during ...func()) (minPubs, maxStale int64, lasted time.Duration, err error) {
	if err := link.Cut(); err != nil {
		return 0, 0, 0, err
	}
	cutAt := time.Now()
	defer func() {
		herr := link.Heal()
		lasted = time.Since(cutAt)
		if herr != nil && err == nil {
			err = herr
		}
	}()
	var wg sync.WaitGroup
	for _, f := range during {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	minPubs = math.MaxInt64
	held := false
	for {
		x, err := readXInfo(ctx, sess, "dc1")
		if err == nil && x.ok {
			minPubs = min(minPubs, x.pubs)
			maxStale = max(maxStale, x.staleMs)
			if until != nil && until(cutAt, x) {
				held = true
			}
		}
		if ctx.Err() != nil {
			wg.Wait()
			return minPubs, maxStale, 0, ctx.Err()
		}
		el := time.Since(cutAt)
		if el >= d && (until == nil || held || el >= d+time.Minute) {
			break
		}
		time.Sleep(min(200*time.Millisecond, max(d-el, time.Millisecond)))
	}
	wg.Wait()
	return minPubs, maxStale, 0, nil
}

// waitInfo polls a session's INFO datacenters about dc1 until ok holds
// and returns the time since from.
func waitInfo(ctx context.Context, sess string, from time.Time, within time.Duration, ok func(xinfo) bool) (time.Duration, error) {
	deadline := time.Now().Add(within)
	var last xinfo
	for {
		x, err := readXInfo(ctx, sess, "dc1")
		if err == nil && ok(x) {
			return time.Since(from), nil
		}
		if err == nil {
			last = x
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return 0, fmt.Errorf("INFO datacenters on %s: %+v after %v", sess, last, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// nodeLogSummary counts the WARN and ERROR lines of every node's log by
// message, and any panic.
func nodeLogSummary(pair *dcPair) []string {
	var out []string
	msgRE := regexp.MustCompile(`msg=("(?:[^"\\]|\\.)*"|\S+)`)
	for i, c := range pair.dc {
		if c == nil {
			continue
		}
		logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
		sort.Strings(logs)
		for _, f := range logs {
			counts := map[string]int{}
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				lvl := ""
				switch {
				case strings.Contains(line, "level=ERROR"):
					lvl = "ERROR"
				case strings.Contains(line, "level=WARN"):
					lvl = "WARN"
				case strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:"):
					counts[line]++
					continue
				default:
					continue
				}
				m := "?"
				if s := msgRE.FindStringSubmatch(line); s != nil {
					m = strings.Trim(s[1], `"`)
				}
				counts[lvl+" "+m]++
			}
			fh.Close()
			if len(counts) == 0 {
				continue
			}
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(a, b int) bool { return counts[keys[a]] > counts[keys[b]] })
			var parts []string
			for _, k := range keys[:min(len(keys), 4)] {
				parts = append(parts, fmt.Sprintf("%d× %s", counts[k], k))
			}
			out = append(out, fmt.Sprintf("log %s/%s: %s", dcNames[i], strings.TrimSuffix(filepath.Base(f), ".log"), strings.Join(parts, "; ")))
		}
	}
	if len(out) == 0 {
		out = append(out, "node logs: no WARN, ERROR or panic line")
	}
	return out
}
