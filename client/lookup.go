package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/slotreg/slotreg/proto"
)

// ErrNoSession is returned (wrapped with the context's error) by a Lookup
// that found no session to ask and no cached state to fall back on.
var ErrNoSession = errors.New("no slotreg session reachable")

// Lookup returns the current state of dataInfoID from the session the
// client holds. When no session can answer (the client is between
// sessions, or the session failed the request) and a subscription of this
// client on dataInfoID has received a state, Lookup returns that state
// with Stale set instead of an error. Without one it waits for a session
// until ctx ends.
func (c *Client) Lookup(ctx context.Context, dataInfoID string) (Snapshot, error) {
	if err := proto.CheckKey(dataInfoID); err != nil {
		return Snapshot{}, fmt.Errorf("lookup %s: %w", dataInfoID, err)
	}
	for {
		c.mu.Lock()
		var l *link
		if c.ready {
			l = c.link
		}
		var cached *Snapshot
		if t := c.topics[dataInfoID]; t != nil {
			cached = t.last
		}
		ch, closing := c.changed, c.closing
		c.mu.Unlock()
		if closing {
			return Snapshot{}, ErrClosed
		}
		if l == nil {
			if cached != nil {
				return stale(cached), nil
			}
			select {
			case <-ctx.Done():
				return Snapshot{}, fmt.Errorf("lookup %s: %w: %w", dataInfoID, ErrNoSession, ctx.Err())
			case <-ch:
				continue
			}
		}
		snap, err := l.lookup(ctx, dataInfoID)
		if err == nil {
			return snap, nil
		}
		if errors.Is(err, proto.ErrInvalid) {
			return Snapshot{}, fmt.Errorf("lookup %s: %w", dataInfoID, err)
		}
		if cached != nil {
			return stale(cached), nil
		}
		if l.err() != nil && ctx.Err() == nil {
			continue // the link broke under us: wait for the next one
		}
		return Snapshot{}, fmt.Errorf("lookup %s via %s: %w", dataInfoID, l.addr, err)
	}
}

func stale(s *Snapshot) Snapshot {
	out := *s
	out.Stale = true
	return out
}

// lookup sends LOOKUP on one of the link's pooled connections and parses
// its reply: the version, then [registerId, data] pairs.
func (l *link) lookup(ctx context.Context, id string) (Snapshot, error) {
	res, err := l.rdb.Do(ctx, proto.CmdLookup, id).Slice()
	if err != nil {
		serr, _ := serverError(err)
		return Snapshot{}, serr
	}
	bad := func(what string) (Snapshot, error) {
		return Snapshot{}, fmt.Errorf("malformed LOOKUP reply from %s: %s", l.addr, what)
	}
	if len(res) != 2 {
		return bad(fmt.Sprintf("%d elements, want 2", len(res)))
	}
	v, ok := res[0].(int64)
	if !ok {
		return bad(fmt.Sprintf("version is %T", res[0]))
	}
	pairs, ok := res[1].([]any)
	if !ok {
		return bad(fmt.Sprintf("publishers are %T", res[1]))
	}
	snap := Snapshot{DataInfoID: id, Version: uint64(v), Publishers: make([]Publisher, 0, len(pairs))}
	for _, p := range pairs {
		kv, ok := p.([]any)
		if !ok || len(kv) != 2 {
			return bad("a publisher is not a [registerId, data] pair")
		}
		rid, ok1 := kv[0].(string)
		data, ok2 := kv[1].(string)
		if !ok1 || !ok2 {
			return bad("a publisher's fields are not strings")
		}
		snap.Publishers = append(snap.Publishers, Publisher{RegisterID: rid, Data: data})
	}
	return snap, nil
}
