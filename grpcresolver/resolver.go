package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/slotreg/slotreg/client"
)

// slotregResolver resolves one target: a subscription to its
// dataInfoId, and one goroutine (run) that alone talks to gRPC, so
// states reach it in the order of their versions.
type slotregResolver struct {
	b   *Builder
	cc  resolver.ClientConn
	id  string // the dataInfoId
	key string // the builder's key of the client
	c   *client.Client
	sc  *serviceconfig.ParseResult // nil: hand gRPC none
	log *slog.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	done   chan struct{} // run has returned
	once   sync.Once

	mu   sync.Mutex
	next *client.Snapshot // newest not yet handed to gRPC
	seen uint64           // version of the newest snapshot taken
	have bool             // a snapshot was taken
	wake chan struct{}

	// bad is the data of the publishers last reported unusable, by
	// registerId, so each is logged and counted once; run's own.
	bad map[string]string
}

func newResolver(b *Builder, cc resolver.ClientConn, id, key string, c *client.Client, sc *serviceconfig.ParseResult) *slotregResolver {
	r := &slotregResolver{
		b: b, cc: cc, id: id, key: key, c: c, sc: sc,
		log:  b.log.With("dataInfoId", id),
		done: make(chan struct{}),
		wake: make(chan struct{}, 1),
		bad:  make(map[string]string),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run()
	return r
}

// ResolveNow does nothing: the registry pushes every change, so there is
// nothing to ask for again.
func (r *slotregResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close ends the subscription and waits for the resolver's goroutine; a
// client of the builder's that no other target uses is closed too.
func (r *slotregResolver) Close() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
		r.b.release(r.key)
		r.log.Debug("resolver closed")
	})
}

// offer is the subscription's callback: it keeps the newest snapshot for
// run. The client never goes back in version on one subscription; the
// check also keeps a repeat of the state last taken from going to gRPC.
func (r *slotregResolver) offer(s client.Snapshot) {
	r.mu.Lock()
	if r.have && s.Version <= r.seen {
		r.mu.Unlock()
		return
	}
	r.have, r.seen, r.next = true, s.Version, &s
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *slotregResolver) hasState() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.have
}

// subResult is the outcome of Subscribe.
type subResult struct {
	s   *client.Subscription
	err error
}

// run subscribes, hands gRPC every new state, and reports to gRPC while
// no state has come, until Close.
func (r *slotregResolver) run() {
	defer close(r.done)
	// Subscribe waits for a session's confirmation, which may take long
	// (no session reachable yet): it runs aside, and run waits for it
	// before returning.
	pending := make(chan subResult, 1)
	go func() {
		s, err := r.c.Subscribe(r.ctx, r.id, r.offer)
		pending <- subResult{s, err}
	}()
	var sub *client.Subscription
	defer func() {
		if pending != nil {
			if res := <-pending; res.s != nil {
				res.s.Unsubscribe()
			}
		}
		if sub != nil {
			sub.Unsubscribe()
		}
	}()
	noState := time.NewTimer(r.b.opts.SubscribeTimeout)
	defer noState.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case res := <-pending:
			pending = nil
			if res.err == nil {
				sub = res.s
				continue
			}
			if r.ctx.Err() != nil {
				return
			}
			// The client is closed (the builder's, or Options.Shared):
			// nothing will come. The addresses given stay.
			err := res.err
			if errors.Is(err, client.ErrClosed) && r.b.isClosed() {
				err = ErrBuilderClosed
			}
			r.log.Warn("subscription failed", "err", err)
			r.cc.ReportError(fmt.Errorf("slotreg: subscribe %q: %w", r.id, err))
			noState.Stop()
		case <-noState.C:
			if r.hasState() {
				continue
			}
			st := r.c.Status()
			err := fmt.Errorf("slotreg: no publisher state for %q after %v (session ready: %v, last session error: %v)",
				r.id, r.b.opts.SubscribeTimeout, st.Ready, st.LastError)
			r.log.Warn("no state yet", "err", err)
			r.cc.ReportError(err)
			noState.Reset(r.b.opts.SubscribeTimeout)
		case <-r.wake:
			r.apply()
		}
	}
}

// apply hands gRPC the newest snapshot taken, if any.
func (r *slotregResolver) apply() {
	r.mu.Lock()
	snap := r.next
	r.next = nil
	r.mu.Unlock()
	if snap == nil {
		return
	}
	st, bad := r.state(snap)
	// An empty list is what the registry says: nothing to call. gRPC's
	// balancer then refuses it (round_robin and pick_first go to
	// TRANSIENT_FAILURE) and fails RPCs with Unavailable; the error it
	// returns asks for a re-resolution that cannot find more, so it is
	// only logged.
	if err := r.cc.UpdateState(st); err != nil {
		r.log.Debug("gRPC refused the state", "version", snap.Version, "addresses", len(st.Addresses), "err", err)
	}
	if len(st.Addresses) == 0 && bad != nil {
		// Publishers there are, but none usable: say why, for balancers
		// that show the resolver's error (pick_first does).
		r.cc.ReportError(fmt.Errorf("slotreg: no usable publisher for %q: %w", r.id, bad))
	}
	r.log.Debug("resolved", "version", snap.Version, "publishers", len(snap.Publishers), "addresses", len(st.Addresses))
}

// state turns a snapshot into a resolver state: one endpoint per usable
// publisher (the first by registerId of those that share an address),
// in registerId order. bad says what was wrong with the unusable ones,
// nil if none; each newly bad publisher is logged and counted.
func (r *slotregResolver) state(snap *client.Snapshot) (resolver.State, error) {
	st := resolver.State{ServiceConfig: r.sc}
	var errs []string
	seenAddr := make(map[string]bool, len(snap.Publishers))
	nowBad := make(map[string]string)
	for _, p := range snap.Publishers {
		addr, attrs, err := parseData(p.Data)
		if err != nil {
			nowBad[p.RegisterID] = p.Data
			if old, ok := r.bad[p.RegisterID]; !ok || old != p.Data {
				r.b.bad.Add(1)
				r.log.Warn("skipping publisher with unusable data", "registerId", p.RegisterID, "data", clip(p.Data), "err", err)
			}
			errs = append(errs, fmt.Sprintf("%s: %v", p.RegisterID, err))
			continue
		}
		if seenAddr[addr] {
			r.log.Debug("publisher repeats an address; skipped", "registerId", p.RegisterID, "addr", addr)
			continue
		}
		seenAddr[addr] = true
		a := attributes.New(attrKey{}, &pubAttr{Publisher{
			RegisterID: p.RegisterID, Datacenter: p.Datacenter, Zone: p.Zone, Attributes: attrs,
		}})
		ra := resolver.Address{Addr: addr, Attributes: a}
		st.Addresses = append(st.Addresses, ra)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{ra}, Attributes: a})
	}
	r.bad = nowBad
	if len(errs) == 0 {
		return st, nil
	}
	return st, errors.New(strings.Join(errs, "; "))
}
