package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
)

// push is one message a subscriber received, decoded.
type push struct {
	proto.Push
	recv  time.Time
	bytes int // the payload's size
}

// data returns the data of registerId rid, if present.
func (p *push) data(rid string) (string, bool) {
	for _, e := range p.Publishers {
		if e.RegisterID == rid {
			return e.Data, true
		}
	}
	return "", false
}

// probe returns the stamped data of a probe change: the probe
// publisher's data for slotreg, the message itself for Redis pub/sub.
func (p *push) probe(target string) (string, bool) {
	if target == TargetRedis {
		if len(p.Publishers) == 0 {
			return "", false
		}
		return p.Publishers[0].Data, true
	}
	return p.data(probeRID)
}

// subscriber is one subscribing connection. OnPush runs on its reader
// goroutine for every message, in arrival order.
type subscriber struct {
	addr   string
	target string
	c      *redis.Client
	ps     *redis.PubSub
	want   int
	onPush func(*push)
	// light decodes only the version and the probe publisher's data, so
	// ten thousand subscribers cost the harness little CPU.
	light bool

	confirmed int
	ready     chan struct{}
	done      chan struct{}
	err       atomic.Value // the error that ended the reader, if any
	decodeErr atomic.Int64
}

// subscribeAll opens n subscribing connections spread over addrs, each
// subscribed to services (or, with servicesOf set, to servicesOf(i)), and
// waits until every subscription is
// confirmed. onPush(i) gives the callback of subscriber i. On error every
// connection opened is closed.
func subscribeAll(ctx context.Context, target string, addrs []string, n int, services []string,
	onPush func(i int) func(*push)) ([]*subscriber, error) {
	return subscribeEach(ctx, target, addrs, n, func(int) []string { return services }, onPush, false)
}

// subscribeEach is subscribeAll with each subscriber's own services.
func subscribeEach(ctx context.Context, target string, addrs []string, n int, servicesOf func(i int) []string,
	onPush func(i int) func(*push), light bool) ([]*subscriber, error) {
	subs := make([]*subscriber, n)
	// Open a bounded number at a time: ten thousand simultaneous dials
	// would overflow the listen backlog.
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range subs {
		services := servicesOf(i)
		s := &subscriber{
			addr: addrs[i%len(addrs)], target: target, want: len(services), onPush: onPush(i),
			ready: make(chan struct{}), done: make(chan struct{}), light: light,
		}
		subs[i] = s
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.c = dialSub(s.addr)
			s.ps = s.c.Subscribe(ctx, services...)
			go s.read(ctx)
		}()
	}
	wg.Wait()
	deadline := time.NewTimer(30*time.Second + time.Duration(n)*time.Millisecond)
	defer deadline.Stop()
	for i, s := range subs {
		select {
		case <-s.ready:
		case <-s.done:
			closeSubs(subs)
			return nil, fmt.Errorf("subscriber %d on %s: %v", i, s.addr, s.err.Load())
		case <-deadline.C:
			closeSubs(subs)
			return nil, fmt.Errorf("subscriber %d on %s: subscriptions not confirmed in time", i, s.addr)
		case <-ctx.Done():
			closeSubs(subs)
			return nil, ctx.Err()
		}
	}
	return subs, nil
}

func (s *subscriber) read(ctx context.Context) {
	defer close(s.done)
	for {
		m, err := s.ps.Receive(ctx)
		if err != nil {
			s.err.Store(err)
			return
		}
		now := time.Now()
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.confirmed++
				if s.confirmed == s.want {
					close(s.ready)
				}
			}
		case *redis.Message:
			p := &push{recv: now, bytes: len(m.Payload)}
			if s.target == TargetRedis {
				p.DataInfoID = m.Channel
				p.Publishers = []proto.PushEntry{{Data: m.Payload}}
			} else if s.light {
				if !lightDecode(m.Payload, p) {
					s.decodeErr.Add(1)
					continue
				}
			} else if err := json.Unmarshal([]byte(m.Payload), p); err != nil {
				s.decodeErr.Add(1)
				continue
			}
			if s.onPush != nil {
				s.onPush(p)
			}
		}
	}
}

// closeSubs closes every subscriber and waits for its reader to end.
func closeSubs(subs []*subscriber) {
	for _, s := range subs {
		if s == nil || s.ps == nil {
			continue
		}
		s.ps.Close()
		s.c.Close()
	}
	for _, s := range subs {
		if s != nil && s.ps != nil {
			<-s.done
		}
	}
}

// decodeErrors sums the payloads subscribers could not decode.
func decodeErrors(subs []*subscriber) int64 {
	var n int64
	for _, s := range subs {
		n += s.decodeErr.Load()
	}
	return n
}

// lightDecode reads dataInfoId, version and the probe publisher's data
// from a push payload without a JSON decoder; it relies on the payload's
// fixed field order and on probe data needing no escapes.
func lightDecode(payload string, p *push) bool {
	const verKey, probeKey = `"version":`, `{"registerId":"` + probeRID + `","data":"`
	i := strings.Index(payload, verKey)
	if i < 0 {
		return false
	}
	i += len(verKey)
	j := i
	for j < len(payload) && payload[j] >= '0' && payload[j] <= '9' {
		j++
	}
	v, err := strconv.ParseUint(payload[i:j], 10, 64)
	if err != nil {
		return false
	}
	p.Version = v
	if k := strings.Index(payload, probeKey); k >= 0 {
		k += len(probeKey)
		if e := strings.IndexByte(payload[k:], '"'); e >= 0 {
			p.Publishers = []proto.PushEntry{{RegisterID: probeRID, Data: payload[k : k+e]}}
		}
	}
	return true
}
