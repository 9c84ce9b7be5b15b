package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// FailoverConfig drives the failover scenario (issue 3's measurement): a
// scripts/cluster.sh cluster with a writer load on both sessions and
// subscribers on every service; each round kill -9's the data node that
// leads the most slots, measures how long until writes to its slots
// succeed again and until every subscriber has seen the new leader's
// state, then restarts it and waits for the table to settle.
type FailoverConfig struct {
	Script ScriptOptions
	Rounds int
	// Rate is the total writes/s; every slot has one writer per session,
	// so a write stuck on a dead leader stalls only its own slot.
	Rate            float64
	ServicesPerSlot int
	Subscribers     int           // per session, each on every service
	Settle          time.Duration // load before each kill
	Window          time.Duration // longest wait for recovery after a kill
	Progress        *Progress
}

func (c *FailoverConfig) defaults() {
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Rate <= 0 {
		c.Rate = 1000
	}
	if c.ServicesPerSlot <= 0 {
		c.ServicesPerSlot = 2
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 2
	}
	if c.Settle <= 0 {
		c.Settle = 3 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 30 * time.Second
	}
	if c.Script.Lease <= 0 {
		c.Script.Lease = 2 * time.Second
	}
	c.Script.Progress = c.Progress
}

// foRound is what one kill's writes and pushes record.
type foRound struct {
	kill   time.Time
	victim map[int]bool // slots the victim led
	mu     sync.Mutex
	// firstOK is, per victim slot, when the first write issued after the
	// kill succeeded; v0 per victim service that write's version.
	firstOK map[int]time.Time
	v0      map[string]uint64
	// seen is, per subscriber and victim service, the pushes received
	// after the kill.
	seen     map[int]map[string][]seenPush
	errs     int
	worstLat time.Duration
}

type seenPush struct {
	version uint64
	at      time.Time
}

func (r *foRound) noteWrite(sl int, svc string, start, end time.Time, version uint64, err error) {
	if start.Before(r.kill) || !r.victim[sl] {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.worstLat = max(r.worstLat, end.Sub(start))
	if err != nil {
		r.errs++
		return
	}
	if _, ok := r.firstOK[sl]; !ok {
		r.firstOK[sl] = end
	}
	if _, ok := r.v0[svc]; !ok {
		r.v0[svc] = version
	}
}

func (r *foRound) notePush(sub int, svc string, version uint64, at time.Time) {
	if at.Before(r.kill) || !r.victim[slot.Of(svc)] {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.seen[sub]
	if m == nil {
		m = make(map[string][]seenPush)
		r.seen[sub] = m
	}
	m[svc] = append(m[svc], seenPush{version, at})
}

// outcome returns the time until every victim slot took a write and
// until every subscriber saw, for every victim service, a version at
// least the first post-kill write's; ok is false while either is not yet
// the case.
func (r *foRound) outcome(victimSvcs []string, subs int) (writes, converge time.Duration, ok bool, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sl := range r.victim {
		t, done := r.firstOK[sl]
		if !done {
			return 0, 0, false, fmt.Sprintf("slot %d has taken no write since the kill", sl)
		}
		writes = max(writes, t.Sub(r.kill))
	}
	for _, svc := range victimSvcs {
		v0, done := r.v0[svc]
		if !done {
			return writes, 0, false, fmt.Sprintf("%s has taken no write since the kill", svc)
		}
		for sub := 0; sub < subs; sub++ {
			var at time.Time
			for _, p := range r.seen[sub][svc] {
				if p.version >= v0 {
					at = p.at
					break
				}
			}
			if at.IsZero() {
				return writes, 0, false, fmt.Sprintf("subscriber %d has not seen %s at version >= %d", sub, svc, v0)
			}
			converge = max(converge, at.Sub(r.kill))
		}
	}
	return writes, converge, true, ""
}

// slotWrites returns, over the victim slots, the times from the kill to
// the first successful write, sorted.
func (r *foRound) slotWrites() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ds []time.Duration
	for _, t := range r.firstOK {
		ds = append(ds, t.Sub(r.kill))
	}
	slices.Sort(ds)
	return ds
}

// medianSlotWrite is the median of slotWrites.
func (r *foRound) medianSlotWrite() time.Duration {
	ds := r.slotWrites()
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)/2]
}

// foSubState is a subscriber's latest view of each service.
type foSubState struct {
	mu       sync.Mutex
	last     map[string]*push
	regress  int
	removals int
}

// Failover runs the failover scenario on its own cluster.sh cluster.
func Failover(ctx context.Context, cfg FailoverConfig) (*Result, error) {
	cfg.defaults()
	sc, err := StartScriptCluster(ctx, cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	defer func() {
		cfg.Progress.Logf("cluster.sh down")
		sc.Down()
		if cfg.Script.Keep {
			cfg.Progress.Logf("state and logs kept in %s", sc.Dir)
		}
	}()
	sessions, err := sc.Addrs(ctx, proto.KindSession)
	if err != nil {
		return nil, err
	}
	if err := waitSettled(ctx, sc, 3, 60*time.Second); err != nil {
		return nil, err
	}

	// Services: ServicesPerSlot in every slot.
	prefix := runPrefix("fo")
	bySlot := make([][]string, slot.Count)
	var services []string
	for i, filled := 0, 0; filled < slot.Count; i++ {
		svc := serviceName(prefix, i)
		sl := slot.Of(svc)
		if len(bySlot[sl]) < cfg.ServicesPerSlot {
			bySlot[sl] = append(bySlot[sl], svc)
			services = append(services, svc)
			if len(bySlot[sl]) == cfg.ServicesPerSlot {
				filled++
			}
		}
	}

	var round atomic.Pointer[foRound]
	// Removals count only while the writers run: closing their
	// connections at the end removes their publishers, rightly.
	var writing atomic.Bool
	writing.Store(true)
	nsubs := cfg.Subscribers * len(sessions)
	states := make([]*foSubState, nsubs)
	subs, err := subscribeAll(ctx, TargetSlotreg, sessions, nsubs, services, func(i int) func(*push) {
		st := &foSubState{last: make(map[string]*push)}
		states[i] = st
		return func(p *push) {
			st.mu.Lock()
			if prev := st.last[p.DataInfoID]; prev != nil {
				if p.Version < prev.Version {
					st.regress++
				}
				for _, e := range prev.Publishers {
					if _, ok := p.data(e.RegisterID); !ok && writing.Load() {
						st.removals++
					}
				}
			}
			st.last[p.DataInfoID] = p
			st.mu.Unlock()
			if r := round.Load(); r != nil {
				r.notePush(i, p.DataInfoID, p.Version, p.recv)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	defer closeSubs(subs)

	// Writers: one per (session, slot), registerId = the session's index.
	wctx, stopWriters := context.WithCancel(ctx)
	defer stopWriters()
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	hist := NewHistogram()
	var wg sync.WaitGroup
	perWriter := cfg.Rate / float64(len(sessions)*slot.Count)
	for si, addr := range sessions {
		rid := "s" + strconv.Itoa(si)
		for sl := 0; sl < slot.Count; sl++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := dial(addr)
				defer c.Close()
				h := NewHistogram()
				defer hist.Merge(h)
				pace := newPacer(perWriter)
				for k := 0; pace.wait(wctx); k++ {
					svc := bySlot[sl][k%len(bySlot[sl])]
					start := time.Now()
					v, err := c.Do(wctx, proto.CmdRegister, svc, rid, stampData(start, 32)).Uint64()
					end := time.Now()
					if wctx.Err() != nil {
						return
					}
					if r := round.Load(); r != nil {
						r.noteWrite(sl, svc, start, end, v, err)
					}
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					ops.Add(1)
					h.Record(end.Sub(start))
				}
			}()
		}
	}
	stopProgress := cfg.Progress.track("failover writes", &ops, &errs)
	runStart := time.Now()

	res := &Result{Scenario: "failover", Target: TargetSlotreg, Params: map[string]any{
		"rounds": cfg.Rounds, "rate": cfg.Rate, "services": len(services), "subscribers": nsubs,
		"lease_s": cfg.Script.Lease.Seconds(), "cluster": "3 meta, 3 data, 2 sessions (scripts/cluster.sh)",
	}}
	var writeWins, convWins []time.Duration
	var roundErr error
	for rd := 1; rd <= cfg.Rounds && roundErr == nil; rd++ {
		roundErr = func() error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(cfg.Settle):
			}
			tab, err := sc.Table(ctx)
			if err != nil {
				return err
			}
			victim, led := mostLeading(tab)
			r := &foRound{victim: map[int]bool{}, firstOK: map[int]time.Time{}, v0: map[string]uint64{},
				seen: map[int]map[string][]seenPush{}}
			var victimSvcs []string
			for _, sl := range led {
				r.victim[sl] = true
				victimSvcs = append(victimSvcs, bySlot[sl]...)
			}
			cfg.Progress.Logf("round %d: kill -9 %s, which leads %d slots (table epoch %d)", rd, victim, len(led), tab.Epoch)
			pid, err := sc.Pid(ctx, victim)
			if err != nil {
				return err
			}
			r.kill = time.Now()
			round.Store(r)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				return fmt.Errorf("kill %s (pid %d): %w", victim, pid, err)
			}
			deadline := time.Now().Add(cfg.Window)
			var wr, cv time.Duration
			for {
				var ok bool
				var why string
				wr, cv, ok, why = r.outcome(victimSvcs, nsubs)
				if ok {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("round %d: not recovered %v after killing %s: %s", rd, cfg.Window, victim, why)
				}
				time.Sleep(50 * time.Millisecond)
			}
			round.Store(nil)
			writeWins, convWins = append(writeWins, wr), append(convWins, cv)
			r.mu.Lock()
			stuck, worst := r.errs, r.worstLat
			r.mu.Unlock()
			cfg.Progress.Logf("round %d: writes to %s's slots back after %v (median slot %v), subscribers converged after %v",
				rd, victim, wr.Round(time.Millisecond), r.medianSlotWrite().Round(time.Millisecond), cv.Round(time.Millisecond))
			ds := r.slotWrites()
			early := 0
			for _, d := range ds {
				if d < cfg.Script.Lease/2 {
					early++
				}
			}
			res.Note("round %d: killed %s (led %d slots): all its slots writable after %.0f ms (slots: min %.0f, median %.0f ms; "+
				"%d writable within half the lease), subscribers converged after %.0f ms; longest write to its slots %.0f ms, %d failed writes to them",
				rd, victim, len(led), ms(wr), ms(ds[0]), ms(r.medianSlotWrite()), early, ms(cv), ms(worst), stuck)
			cfg.Progress.Logf("round %d: restarting %s", rd, victim)
			if err := sc.Start(ctx, victim); err != nil {
				return err
			}
			return waitSettled(ctx, sc, 3, 90*time.Second)
		}()
	}
	// Stop writing and check every subscriber ends on the truth (the
	// writers' publishers are removed as their connections close).
	writing.Store(false)
	stopWriters()
	wg.Wait()
	stopProgress()
	elapsed := time.Since(runStart)
	res.timed(ops.Load(), errs.Load(), elapsed, hist)
	if e := firstErr.Load(); e != nil {
		res.Note("first write error: %v", e)
	}
	addSpread(res, "writes back after kill", writeWins)
	addSpread(res, "subscribers converged after kill", convWins)
	finalAt, mismatch, err := convergeFinal(ctx, sessions[0], services, states, 20*time.Second)
	if err != nil {
		res.Note("final check: %v", err)
	}
	res.Add("final: subscribers equal LOOKUP after writes stopped, within", ms(finalAt), "ms")
	res.Add("final: subscriber/service views differing from LOOKUP", float64(mismatch), "")
	var regress, removals int
	for _, st := range states {
		st.mu.Lock()
		regress, removals = regress+st.regress, removals+st.removals
		st.mu.Unlock()
	}
	res.Add("version regressions seen by subscribers", float64(regress), "")
	res.Add("publisher removals seen by subscribers (expected 0)", float64(removals), "")
	res.Note("follower lag under load: see the lag scenario")
	if roundErr != nil {
		return res, fmt.Errorf("failover: %w", roundErr)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// addSpread adds min/median/max of ds as metrics.
func addSpread(r *Result, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r.Add(name+" (min)", ms(s[0]), "ms")
	r.Add(name+" (median)", ms(s[len(s)/2]), "ms")
	r.Add(name+" (max)", ms(s[len(s)-1]), "ms")
}

// mostLeading returns the data node leading the most slots (ties: the
// lowest ID) and its slots.
func mostLeading(t *slot.Table) (string, []int) {
	var best string
	var slots []int
	for _, n := range t.Nodes {
		if s := t.LedBy(n.ID); len(s) > len(slots) {
			best, slots = n.ID, s
		}
	}
	return best, slots
}

// waitSettled waits until the table holds nodes data nodes, evenly led,
// every slot with a follower and nothing moving.
func waitSettled(ctx context.Context, sc *ScriptCluster, nodes int, within time.Duration) error {
	deadline := time.Now().Add(within)
	last := "no table"
	for {
		t, err := sc.Table(ctx)
		if err == nil {
			ok, why := settled(t, nodes, 1)
			if ok {
				return nil
			}
			last = why
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("table not settled after %v: %s", within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// convergeFinal polls until every subscriber's last push of every service
// equals the session's LOOKUP; it returns how long that took and how
// many (subscriber, service) views still differ at the end.
func convergeFinal(ctx context.Context, addr string, services []string, states []*foSubState, within time.Duration) (time.Duration, int, error) {
	c := dial(addr)
	defer c.Close()
	start := time.Now()
	truth := make(map[string]*push, len(services))
	for {
		for _, svc := range services {
			p, err := lookup(ctx, c, svc)
			if err != nil {
				return time.Since(start), -1, err
			}
			truth[svc] = p
		}
		bad := 0
		for _, st := range states {
			st.mu.Lock()
			for _, svc := range services {
				if !samePush(st.last[svc], truth[svc]) {
					bad++
				}
			}
			st.mu.Unlock()
		}
		if bad == 0 || time.Since(start) > within {
			if bad > 0 {
				return time.Since(start), bad, errors.New("subscribers did not converge")
			}
			return time.Since(start), 0, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func samePush(a, b *push) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Version != b.Version || len(a.Publishers) != len(b.Publishers) {
		return false
	}
	am := make(map[string]string, len(a.Publishers))
	for _, e := range a.Publishers {
		am[e.RegisterID] = e.Data
	}
	bm := make(map[string]string, len(b.Publishers))
	for _, e := range b.Publishers {
		bm[e.RegisterID] = e.Data
	}
	return maps.Equal(am, bm)
}
