package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/client"
	"github.com/slotreg/slotreg/proto"
)

// SessionFailoverConfig drives the session-failover scenario (issue 8's
// measurement): providers using the Go client (package client) hold their
// publishers on one session of a scripts/cluster.sh cluster; each round
// kill -9's that session and measures, per provider, the time until its
// publishers are registered again through the other session, i.e. until
// the client is ready there, every REGISTER of the replay acknowledged (a
// session acknowledges a REGISTER once the slot leader applied it, so from
// then on any session's LOOKUP returns it). After the victim's lease
// lapses and its own publishers are dropped, a LOOKUP through the
// surviving session must still show every provider publisher.
type SessionFailoverConfig struct {
	Script      ScriptOptions
	Rounds      int
	Providers   int // client.Client instances, each its own connections
	PerProvider int // registrations per provider
	Services    int // dataInfoIds the registrations spread over
	// HealthCheck is the clients' HealthCheckInterval (0: the client's
	// default).
	HealthCheck time.Duration
	Window      time.Duration // longest wait for the providers after a kill
	// Pause, when set, stops the session with SIGSTOP for that long
	// instead of killing it: a hung session rather than a dead one. It
	// is resumed, not restarted, once every provider is back.
	Pause    time.Duration
	Progress *Progress
}

func (c *SessionFailoverConfig) defaults() {
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Providers <= 0 {
		c.Providers = 50
	}
	if c.PerProvider <= 0 {
		c.PerProvider = 4
	}
	if c.Services <= 0 {
		c.Services = 20
	}
	if c.Window <= 0 {
		c.Window = 30 * time.Second
	}
	if c.Script.Lease <= 0 {
		c.Script.Lease = 2 * time.Second
	}
	c.Script.Progress = c.Progress
}

// sfConsumer is a client on the other session watching every service; it
// counts provider publishers that vanish from a push, which should never
// happen: the providers register again long before the victim's lease
// lapses.
type sfConsumer struct {
	mu        sync.Mutex
	last      map[string]client.Snapshot
	vanished  int
	snapshots int
	// seen names the first vanished publishers, for the notes: which,
	// when, and between which versions.
	seen []string
}

func (s *sfConsumer) fn(snap client.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots++
	if prev, ok := s.last[snap.DataInfoID]; ok {
		have := make(map[string]bool, len(snap.Publishers))
		for _, p := range snap.Publishers {
			have[p.RegisterID] = true
		}
		for _, p := range prev.Publishers {
			if !have[p.RegisterID] {
				s.vanished++
				if len(s.seen) < 10 {
					s.seen = append(s.seen, fmt.Sprintf("%s %s/%s: in v%d, not in v%d (%d publishers)",
						time.Now().UTC().Format("15:04:05.000"), snap.DataInfoID, p.RegisterID, prev.Version, snap.Version, len(snap.Publishers)))
				}
			}
		}
	}
	s.last[snap.DataInfoID] = snap
}

// SessionFailover runs the session-failover scenario on its own
// cluster.sh cluster (3 meta, 3 data, 2 sessions).
func SessionFailover(ctx context.Context, cfg SessionFailoverConfig) (*Result, error) {
	cfg.defaults()
	sc, err := StartScriptCluster(ctx, cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("session-failover: %w", err)
	}
	defer func() {
		cfg.Progress.Logf("cluster.sh down")
		sc.Down()
		if cfg.Script.Keep {
			cfg.Progress.Logf("state and logs kept in %s", sc.Dir)
		}
	}()
	if err := waitSettled(ctx, sc, 3, 60*time.Second); err != nil {
		return nil, err
	}
	nodes, err := sc.Status(ctx)
	if err != nil {
		return nil, err
	}
	var sessions []NodeStatus
	var metas []string
	for _, n := range nodes {
		switch n.Role {
		case proto.KindSession:
			sessions = append(sessions, n)
		case proto.KindMeta:
			metas = append(metas, n.Addr)
		}
	}
	if len(sessions) != 2 {
		return nil, fmt.Errorf("session-failover: want 2 sessions, cluster.sh has %d", len(sessions))
	}
	for _, s := range sessions {
		if err := waitSessionReady(ctx, s.Addr, 30*time.Second); err != nil {
			return nil, err
		}
	}

	prefix := runPrefix("sf")
	services := make([]string, cfg.Services)
	for i := range services {
		services[i] = serviceName(prefix, i)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(order ...string) client.Options {
		return client.Options{Sessions: order, Logger: discard, HealthCheckInterval: cfg.HealthCheck}
	}
	first, second := sessions[0].Addr, sessions[1].Addr

	cons := &sfConsumer{last: make(map[string]client.Snapshot)}
	cc, err := client.New(opts(second, first))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, svc := range services {
		if _, err := cc.Subscribe(sctx, svc, cons.fn); err != nil {
			return nil, fmt.Errorf("session-failover: consumer: %w", err)
		}
	}

	cfg.Progress.Logf("%d providers register %d publishers each through %s", cfg.Providers, cfg.PerProvider, sessions[0].ID)
	provs := make([]*client.Client, cfg.Providers)
	defer func() {
		for _, p := range provs {
			if p != nil {
				p.Close()
			}
		}
	}()
	want := make(map[string]map[string]string, len(services)) // service -> registerId -> data
	for _, svc := range services {
		want[svc] = make(map[string]string)
	}
	for i := range provs {
		p, err := client.New(opts(first, second))
		if err != nil {
			return nil, err
		}
		provs[i] = p
		for j := 0; j < cfg.PerProvider; j++ {
			svc := services[(i*cfg.PerProvider+j)%len(services)]
			rid, data := fmt.Sprintf("p%d-%d", i, j), fmt.Sprintf("10.%d.%d.%d:80", i/250, i%250, j)
			if _, err := p.Register(sctx, svc, rid, data); err != nil {
				return nil, fmt.Errorf("session-failover: provider %d: %w", i, err)
			}
			want[svc][rid] = data
		}
	}

	hist := NewHistogram()
	var allBack []time.Duration
	missing := 0
	res := &Result{Scenario: "session-failover", Target: TargetSlotreg, Params: map[string]any{
		"rounds": cfg.Rounds, "providers": cfg.Providers, "publishers": cfg.Providers * cfg.PerProvider,
		"services": cfg.Services, "lease_s": cfg.Script.Lease.Seconds(),
		"health_check": healthCheck(cfg.HealthCheck),
		"cluster":      "3 meta, 3 data, 2 sessions (scripts/cluster.sh); providers and a consumer on the Go client",
	}}
	start := time.Now()
	holder, other := sessions[0], sessions[1]
	for rd := 1; rd <= cfg.Rounds; rd++ {
		for _, p := range provs {
			if st := p.Status(); !st.Ready || st.Session != holder.Addr {
				return res, fmt.Errorf("session-failover: round %d: a provider is on %q (ready %v), want %s", rd, st.Session, st.Ready, holder.Addr)
			}
		}
		pid, err := sc.Pid(ctx, holder.ID)
		if err != nil {
			return res, err
		}
		cons.mu.Lock()
		vanishedBefore := cons.vanished
		cons.mu.Unlock()
		sig, what := syscall.SIGKILL, "kill -9"
		if cfg.Pause > 0 {
			sig, what = syscall.SIGSTOP, fmt.Sprintf("SIGSTOP for %v", cfg.Pause)
		}
		cfg.Progress.Logf("round %d: %s %s (pid %d), which holds every provider", rd, what, holder.ID, pid)
		kill := time.Now()
		if err := syscall.Kill(pid, sig); err != nil {
			return res, fmt.Errorf("%s %s (pid %d): %w", what, holder.ID, pid, err)
		}
		var worst time.Duration
		for i, p := range provs {
			for {
				st := p.Status()
				if st.Ready && st.Session == other.Addr && st.ReadySince.After(kill) {
					d := st.ReadySince.Sub(kill)
					hist.Record(d)
					worst = max(worst, d)
					break
				}
				if time.Since(kill) > cfg.Window {
					return res, fmt.Errorf("session-failover: round %d: provider %d not back within %v: %+v", rd, i, cfg.Window, st)
				}
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
		}
		allBack = append(allBack, worst)
		// The victim's lease lapses; leaders drop what it still owned.
		evicted, err := waitNotMember(ctx, metas, holder.ID, 30*time.Second)
		if err != nil {
			return res, err
		}
		lost, err := countMissing(ctx, other.Addr, want)
		if err != nil {
			return res, err
		}
		missing += lost
		if cfg.Pause > 0 {
			// Resumed once the pause is over, after meta evicted it: it
			// finds it was dropped and must not bring anything back
			// (the consumer would see publishers vanish).
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(time.Until(kill.Add(cfg.Pause))):
			}
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				return res, fmt.Errorf("resume %s (pid %d): %w", holder.ID, pid, err)
			}
		}
		cfg.Progress.Logf("round %d: every provider back through %s after %v (evicted after %v, %d publishers missing)",
			rd, other.ID, worst.Round(time.Millisecond), evicted.Sub(kill).Round(time.Millisecond), lost)
		if cfg.Pause == 0 {
			cfg.Progress.Logf("round %d: restarting %s", rd, holder.ID)
			if err := sc.Start(ctx, holder.ID); err != nil {
				return res, err
			}
		}
		if err := waitSessionReady(ctx, holder.Addr, 30*time.Second); err != nil {
			return res, err
		}
		cons.mu.Lock()
		vanished := cons.vanished - vanishedBefore
		cons.mu.Unlock()
		res.Note("round %d: %s %s; all %d providers re-registered through %s after %.1f ms; %s evicted %.0f ms after it; %d publishers missing after that; the consumer (on %s first) saw %d vanish by the time the victim served again",
			rd, what, holder.ID, len(provs), other.ID, ms(worst), holder.ID, ms(evicted.Sub(kill)), lost, second, vanished)
		holder, other = other, holder
	}
	res.Seconds = time.Since(start).Seconds()
	res.Ops = hist.Count()
	res.setHist(hist)
	fault := "kill -9"
	if cfg.Pause > 0 {
		fault = "SIGSTOP"
	}
	addSpread(res, fault+" to every provider back (per round)", allBack)
	res.Add("provider publishers missing after the victim's eviction (expected 0)", float64(missing), "")
	cons.mu.Lock()
	res.Add("provider publishers seen vanishing by a consumer (expected 0)", float64(cons.vanished), "")
	for _, v := range cons.seen {
		res.Note("vanished: %s", v)
	}
	cons.mu.Unlock()
	res.Note("latency = %s of the session holding the provider -> the provider's client ready on the other session "+
		"(every publisher's REGISTER acknowledged there), one sample per provider per round", fault)
	return res, nil
}

func healthCheck(d time.Duration) string {
	if d == 0 {
		return "client default (1s)"
	}
	return d.String()
}

// waitSessionReady waits until a session answers INFO with ready:1.
func waitSessionReady(ctx context.Context, addr string, within time.Duration) error {
	c := dial(addr)
	defer c.Close()
	deadline := time.Now().Add(within)
	last := "no answer"
	for {
		info, err := c.Info(ctx, "registry").Result()
		if err == nil && strings.Contains(info, "ready:1") {
			return nil
		} else if err != nil {
			last = err.Error()
		} else {
			last = "ready:0"
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("session %s not ready after %v: %s", addr, within, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitNotMember waits until no meta lists the session id and returns when
// that was seen.
func waitNotMember(ctx context.Context, metas []string, id string, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		listed := false
		for _, m := range metas {
			c := redis.NewClient(&redis.Options{Addr: m, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
				DialTimeout: time.Second, ReadTimeout: 2 * time.Second, PoolSize: 1})
			s, err := c.Do(ctx, proto.CmdNodes).Text()
			c.Close()
			if err != nil {
				continue
			}
			var ms struct {
				Sessions []struct {
					ID string `json:"id"`
				} `json:"sessions"`
			}
			if json.Unmarshal([]byte(s), &ms) != nil {
				continue
			}
			for _, s := range ms.Sessions {
				listed = listed || s.ID == id
			}
		}
		if !listed {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("session %s still a member %v after its kill", id, within)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countMissing looks every service up through addr and counts the
// expected publishers absent or with other data.
func countMissing(ctx context.Context, addr string, want map[string]map[string]string) (int, error) {
	c := dial(addr)
	defer c.Close()
	missing := 0
	for svc, pubs := range want {
		p, err := lookup(ctx, c, svc)
		if err != nil {
			return 0, fmt.Errorf("LOOKUP %s via %s: %w", svc, addr, err)
		}
		for rid, data := range pubs {
			if got, ok := p.data(rid); !ok || got != data {
				missing++
			}
		}
	}
	return missing, nil
}
