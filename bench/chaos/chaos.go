// Package chaos drives a registry with writers and subscribers while faults
// are injected, and checks what the clients saw against what the registry
// acknowledged, after Jepsen and etcd's robustness tests:
//
//   - lost: a publisher whose REGISTER was acknowledged, on a connection
//     that stayed open, and that was never unregistered, missing from LOOKUP
//     once the cluster has settled;
//   - false removals: a push, at a version at or above that REGISTER's, that
//     leaves such a publisher out while it was present for sure;
//   - regressions: a subscriber receiving a lower version of a service than
//     one it already got;
//   - convergence: how long after the last fault every session's LOOKUP and
//     every subscriber's last push agree with the acknowledged state.
//
// Each writer owns its registerIds and one connection, so the model needs
// no cross-writer ordering: a key is present (from the REGISTER's reply),
// absent (from the UNREGISTER's reply), or unknown (from the moment a
// command is sent until its reply; for good after an error, until the next
// acknowledged command). Pushes are checked as they arrive, against the
// model at that moment.
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/slotreg/slotreg/proto"
)

// Options shape the load.
type Options struct {
	Sessions    []string // session client addresses; writers and subscribers spread over them
	Writers     int      // default 8
	Services    int      // default 64
	KeysPerWrit int      // registerIds per writer, default 12
	// OpTimeout bounds one write as the client sees it (the connection is
	// kept: a timed-out command is abandoned, not the connection); default 30 s.
	OpTimeout time.Duration
	// Pause between one writer's operations; default 2 ms.
	Pause time.Duration
	// Prefix namespaces the services, so runs do not see each other.
	Prefix string
}

func (o *Options) defaults() {
	if o.Writers == 0 {
		o.Writers = 8
	}
	if o.Services == 0 {
		o.Services = 64
	}
	if o.KeysPerWrit == 0 {
		o.KeysPerWrit = 12
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 30 * time.Second
	}
	if o.Pause == 0 {
		o.Pause = 2 * time.Millisecond
	}
	if o.Prefix == "" {
		o.Prefix = "chaos-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
}

type keyState uint8

const (
	absent keyState = iota
	present
	unknown
)

type key struct {
	state   keyState
	version uint64    // the acknowledged REGISTER's, when present
	at      time.Time // when its reply came
}

// Violation is one false removal, regression or lost publisher.
type Violation struct {
	Kind    string // "false-removal", "regression", "lost", "resurrected"
	At      time.Time
	Service string
	Detail  string
}

// Report is what a run found.
type Report struct {
	Ops, Acked, Failed  int64
	Pushes              int64
	Reconnects          int64 // writer connections opened again (their publishers go legitimately)
	LongestWait         time.Duration
	LongestWaitAt       time.Time // when that write was sent
	Lost, FalseRemovals int
	// Fenced are removals of a writer's publishers that its session then
	// explained by closing the writer's connection before the writer had
	// any other write through (a session that fenced itself, cut off or
	// paused past its lease): legitimate, as a dropped connection's are.
	Fenced               int
	Regressions          int
	Resurrected          int
	Converged            bool
	Convergence          time.Duration // from Settle's call to agreement
	Violations           []Violation   // the first 50
	MaxPublishersPerPush int
}

func (r *Report) String() string {
	return fmt.Sprintf("ops %d (acked %d, failed %d), pushes %d, reconnects %d, longest wait %v; lost %d, false removals %d (fenced %d), regressions %d, resurrected %d; converged %v in %v",
		r.Ops, r.Acked, r.Failed, r.Pushes, r.Reconnects, r.LongestWait.Round(time.Millisecond), r.Lost, r.FalseRemovals,
		r.Fenced, r.Regressions, r.Resurrected, r.Converged, r.Convergence.Round(time.Millisecond))
}

// Run is one load in progress.
type Run struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	model      map[string]map[string]*key // service -> registerId -> state
	lastSeen   []map[string]uint64        // per subscriber: service -> last version
	lastPush   []map[string][]string      // per subscriber: service -> registerIds of the last push
	violations []Violation
	rep        Report
	// pending are removals of a writer's live publishers not yet judged:
	// the writer's next acknowledged write makes them false removals, its
	// reconnection (the session closed its connection) legitimate.
	pending map[int][]Violation

	ops, acked, failed, pushes, reconnects atomic.Int64
	longest                                atomic.Int64
	clients                                []*redis.Client
	writers                                []*redis.Client // the writers' own, also in clients
	subs                                   []*redis.PubSub
}

// Start begins the load: Writers writers, each on its own connection to
// a session (round robin), and one subscriber per session on every
// service. It returns once every subscriber is subscribed.
func Start(ctx context.Context, o Options) (*Run, error) {
	o.defaults()
	if len(o.Sessions) == 0 {
		return nil, errors.New("chaos: no sessions")
	}
	r := &Run{o: o, model: map[string]map[string]*key{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for s := range o.Services {
		r.model[r.service(s)] = map[string]*key{}
	}
	for i, addr := range o.Sessions {
		ps, err := r.subscribe(ctx, i, addr)
		if err != nil {
			r.Close()
			return nil, err
		}
		r.subs = append(r.subs, ps)
	}
	for w := range o.Writers {
		r.wg.Add(1)
		go r.writer(w, o.Sessions[w%len(o.Sessions)])
	}
	return r, nil
}

func (r *Run) service(s int) string { return fmt.Sprintf("%s/svc%02d", r.o.Prefix, s) }

func newClient(addr string, readTimeout time.Duration, onConnect func()) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 1,
		DialTimeout: 2 * time.Second, ReadTimeout: readTimeout, WriteTimeout: readTimeout,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		OnConnect: func(context.Context, *redis.Conn) error {
			if onConnect != nil {
				onConnect()
			}
			return nil
		},
	})
}

// writer registers and unregisters its keys at random, on one connection.
func (r *Run) writer(w int, addr string) {
	defer r.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	var conns atomic.Int64 // go-redis may dial on another goroutine
	rdb := newClient(addr, r.o.OpTimeout, func() {
		if conns.Add(1) > 1 {
			// A new connection: the old one's publishers are gone, as
			// they should be; nothing of this writer is known any more.
			r.reconnects.Add(1)
			r.forget(w)
			r.mu.Lock()
			r.judge(w, true, time.Now())
			r.mu.Unlock()
		}
	})
	r.mu.Lock()
	r.clients = append(r.clients, rdb)
	r.writers = append(r.writers, rdb)
	r.mu.Unlock()
	for r.ctx.Err() == nil {
		svc := r.service(rng.IntN(r.o.Services))
		rid := fmt.Sprintf("w%d-k%d", w, rng.IntN(r.o.KeysPerWrit))
		r.mu.Lock()
		k := r.model[svc][rid]
		if k == nil {
			k = &key{}
			r.model[svc][rid] = k
		}
		unreg := k.state == present
		k.state = unknown
		r.mu.Unlock()

		start := time.Now()
		var v int64
		var err error
		if unreg {
			v, err = rdb.Do(r.ctx, "UNREGISTER", svc, rid).Int64()
		} else {
			v, err = rdb.Do(r.ctx, "REGISTER", svc, rid, fmt.Sprintf("10.0.%d.%d:80", w, rng.IntN(250))).Int64()
		}
		wait := time.Since(start)
		r.ops.Add(1)
		if r.ctx.Err() != nil {
			return
		}
		if int64(wait) > r.longest.Load() {
			r.mu.Lock()
			if int64(wait) > r.longest.Load() {
				r.longest.Store(int64(wait))
				r.rep.LongestWaitAt = start
			}
			r.mu.Unlock()
		}
		r.mu.Lock()
		switch {
		case err != nil:
			r.failed.Add(1) // stays unknown
		case unreg:
			r.acked.Add(1)
			k.state = absent
		default:
			r.acked.Add(1)
			k.state, k.version, k.at = present, uint64(v), time.Now()
		}
		if err == nil {
			r.judge(w, false, start)
		}
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(r.o.Pause):
		}
	}
}

// forget marks every key of writer w unknown.
func (r *Run) forget(w int) {
	prefix := fmt.Sprintf("w%d-", w)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, keys := range r.model {
		for rid, k := range keys {
			if strings.HasPrefix(rid, prefix) {
				k.state = unknown
			}
		}
	}
}

func (r *Run) subscribe(ctx context.Context, i int, addr string) (*redis.PubSub, error) {
	rdb := newClient(addr, 30*time.Second, nil)
	// The subscribers before this one already take pushes, and read
	// these slices under r.mu.
	r.mu.Lock()
	r.clients = append(r.clients, rdb)
	r.lastSeen = append(r.lastSeen, map[string]uint64{})
	r.lastPush = append(r.lastPush, map[string][]string{})
	r.mu.Unlock()
	names := make([]string, r.o.Services)
	for s := range names {
		names[s] = r.service(s)
	}
	ps := rdb.Subscribe(ctx, names...)
	for range names {
		if _, err := ps.ReceiveTimeout(ctx, 10*time.Second); err != nil {
			ps.Close()
			return nil, fmt.Errorf("chaos: subscribe at %s: %w", addr, err)
		}
	}
	ch := ps.Channel(redis.WithChannelSize(4096))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for m := range ch {
			r.onPush(i, m.Payload)
		}
	}()
	return ps, nil
}

func (r *Run) onPush(sub int, payload string) {
	var p proto.Push
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		return // not a service push (goaway, config)
	}
	now := time.Now()
	r.pushes.Add(1)
	ids := make([]string, len(p.Publishers))
	for i, pub := range p.Publishers {
		ids[i] = pub.RegisterID
	}
	sort.Strings(ids)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(ids) > r.rep.MaxPublishersPerPush {
		r.rep.MaxPublishersPerPush = len(ids)
	}
	if last := r.lastSeen[sub][p.DataInfoID]; p.Version < last {
		r.rep.Regressions++
		r.note(Violation{Kind: "regression", At: now, Service: p.DataInfoID,
			Detail: fmt.Sprintf("subscriber %d got version %d after %d", sub, p.Version, last)})
	} else {
		r.lastSeen[sub][p.DataInfoID] = p.Version
		r.lastPush[sub][p.DataInfoID] = ids
	}
	keys := r.model[p.DataInfoID]
	for rid, k := range keys {
		if k.state == present && k.version <= p.Version {
			if _, found := slices.BinarySearch(ids, rid); !found {
				var w int
				fmt.Sscanf(rid, "w%d-", &w)
				if r.pending == nil {
					r.pending = map[int][]Violation{}
				}
				r.pending[w] = append(r.pending[w], Violation{Kind: "false-removal", At: now, Service: p.DataInfoID,
					Detail: fmt.Sprintf("subscriber %d, version %d (epoch %d, seq %d), %d publishers: missing live %s (v%d.%d at %s)",
						sub, p.Version, p.Version>>32, p.Version&0xffffffff, len(ids), rid, k.version>>32, k.version&0xffffffff,
						k.at.Format("15:04:05.000"))})
			}
		}
	}
}

// judge settles writer w's pending removals: as false removals when it
// had a write acknowledged on the same connection that it sent after them
// (the session was serving it then: one sent before says nothing, as when
// a paused session answers, on waking, a write it took before the pause),
// as fenced when its session closed the connection first. before bounds
// the removals judged. r.mu is held.
func (r *Run) judge(w int, reconnected bool, before time.Time) {
	var keep []Violation
	for _, v := range r.pending[w] {
		switch {
		case reconnected:
			r.rep.Fenced++
		case v.At.Before(before):
			r.rep.FalseRemovals++
			r.note(v)
		default:
			keep = append(keep, v)
		}
	}
	if len(keep) == 0 {
		delete(r.pending, w)
		return
	}
	r.pending[w] = keep
}

func (r *Run) note(v Violation) {
	if len(r.violations) < 50 {
		r.violations = append(r.violations, v)
	}
}

// StopWriters ends the writers (each finishes or abandons its command);
// their connections, and so their publishers, stay until Close.
func (r *Run) StopWriters() {
	r.cancel()
}

// Settle waits, up to within, until every session's LOOKUP of every
// service and every subscriber's last push agree with the model (keys
// present for sure are there, keys absent for sure are not), then fills
// the report: publishers still missing count as lost, unwanted ones as
// resurrected. Call it after StopWriters.
func (r *Run) Settle(ctx context.Context, within time.Duration) *Report {
	start := time.Now()
	deadline := start.Add(within)
	// Each writer looks at its connection, as a client's health check
	// does: one its session closed (fenced, while it was cut off) fails a
	// PING, and the next PING connects again, which forgets the writer's
	// keys and explains their removal. Writers stopped right at a heal
	// would not find out otherwise. A PING waits behind the writer's last
	// write, which may still be waiting out its timeout: the views are
	// compared meanwhile (that write's key is unknown until it ends), so
	// convergence is the cluster's, not the client's wait.
	r.mu.Lock()
	writers := slices.Clone(r.writers)
	r.mu.Unlock()
	var pinged sync.WaitGroup
	for _, c := range writers {
		pinged.Add(1)
		go func() {
			defer pinged.Done()
			for range 2 {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := c.Ping(pctx).Err()
				cancel()
				if err == nil {
					break
				}
			}
		}()
	}
	look := make([]*redis.Client, len(r.o.Sessions))
	for i, addr := range r.o.Sessions {
		look[i] = newClient(addr, 5*time.Second, nil)
		defer look[i].Close()
	}
	var lost, resurrected int
	var detail []Violation
	for {
		lost, resurrected, detail = r.compare(ctx, look)
		if lost == 0 && resurrected == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	convergence := time.Since(start)
	pinged.Wait() // before judging: a PING may explain removals yet
	r.mu.Lock()
	defer r.mu.Unlock()
	for w := range r.pending {
		r.judge(w, false, time.Now()) // never explained by a closed connection
	}
	r.rep.Converged = lost == 0 && resurrected == 0
	r.rep.Convergence = convergence
	r.rep.Lost, r.rep.Resurrected = lost, resurrected
	for _, v := range detail {
		r.note(v)
	}
	return r.report()
}

// compare counts the differences between the model and what the sessions
// and subscribers show now.
func (r *Run) compare(ctx context.Context, look []*redis.Client) (lost, resurrected int, detail []Violation) {
	for s := range r.o.Services {
		svc := r.service(s)
		var views [][]string
		for _, c := range look {
			v, err := c.Do(ctx, "LOOKUP", svc).Slice()
			if err != nil || len(v) != 2 {
				return 1, 0, []Violation{{Kind: "lost", At: time.Now(), Service: svc, Detail: fmt.Sprintf("LOOKUP: %v", err)}}
			}
			pairs, _ := v[1].([]any)
			ids := make([]string, 0, len(pairs))
			for _, p := range pairs {
				if pp, ok := p.([]any); ok && len(pp) == 2 {
					ids = append(ids, fmt.Sprint(pp[0]))
				}
			}
			sort.Strings(ids)
			views = append(views, ids)
		}
		r.mu.Lock()
		for i := range r.lastPush {
			views = append(views, r.lastPush[i][svc])
		}
		for rid, k := range r.model[svc] {
			for vi, ids := range views {
				_, found := slices.BinarySearch(ids, rid)
				switch {
				case k.state == present && !found:
					lost++
					detail = append(detail, Violation{Kind: "lost", At: time.Now(), Service: svc, Detail: fmt.Sprintf("%s missing from view %d", rid, vi)})
				case k.state == absent && found:
					resurrected++
					detail = append(detail, Violation{Kind: "resurrected", At: time.Now(), Service: svc, Detail: fmt.Sprintf("%s still in view %d", rid, vi)})
				}
			}
		}
		r.mu.Unlock()
	}
	return lost, resurrected, detail
}

// Report is what was found so far (Settle fills in lost and convergence).
func (r *Run) Report() *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.report()
}

func (r *Run) report() *Report {
	rep := r.rep
	rep.Ops, rep.Acked, rep.Failed = r.ops.Load(), r.acked.Load(), r.failed.Load()
	rep.Pushes, rep.Reconnects = r.pushes.Load(), r.reconnects.Load()
	rep.LongestWait = time.Duration(r.longest.Load())
	rep.Violations = slices.Clone(r.violations)
	return &rep
}

// Close stops everything and closes every connection; the writers'
// publishers go with their connections.
func (r *Run) Close() {
	r.cancel()
	for _, ps := range r.subs {
		ps.Close()
	}
	r.mu.Lock()
	clients := slices.Clone(r.clients)
	r.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	r.wg.Wait()
}
