package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slotreg/slotreg/internal/fanout"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// bulk reads a bulk reply as go-redis returns it.
func bulk(v any, what string) ([]byte, error) {
	switch b := v.(type) {
	case string:
		return []byte(b), nil
	case []byte:
		return b, nil
	}
	return nil, fmt.Errorf("%s: want a bulk reply, got %T", what, v)
}

// readTable reads the slot table from a meta (the leader first, once
// known; any meta will do).
func (e *env) readTable() (*slot.Table, error) {
	v, err := e.meta.read(e.c.Context, proto.CmdTable)
	if err != nil {
		return nil, err
	}
	b, err := bulk(v, "TABLE reply")
	if err != nil {
		return nil, err
	}
	t, err := slot.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("TABLE reply: %w", err)
	}
	return t, nil
}

// readMembers reads the membership from a meta (the leader first, once
// known, which alone knows lease ages).
func (e *env) readMembers() (*proto.Members, error) {
	v, err := e.meta.read(e.c.Context, proto.CmdNodes)
	if err != nil {
		return nil, err
	}
	b, err := bulk(v, "NODES reply")
	if err != nil {
		return nil, err
	}
	m := &proto.Members{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("NODES reply: %w", err)
	}
	e.pool.markSessions(m.Sessions)
	return m, nil
}

// leaderProbeTimeout bounds the wait for a meta leader when reads can do
// without one: long enough for an election, short enough not to stall
// `nodes` when the quorum is lost.
const leaderProbeTimeout = 3 * time.Second

// findLeader asks for the meta leader so that later reads go to it and
// see the latest table (and lease ages); without a leader (an election,
// quorum lost) reads go to any meta, and with warn it says so. It fails
// when no meta answers at all, or refuses registryctl's credentials
// (which no follower would take either).
func (e *env) findLeader(warn bool) (string, error) {
	addr, err := e.meta.leaderAddr(e.c.Context, min(e.timeout, leaderProbeTimeout))
	if err == nil {
		return addr, nil
	}
	var nm *noMetaError
	if errors.As(err, &nm) || errors.Is(err, proto.ErrNoAuth) || errors.Is(err, proto.ErrWrongPass) {
		return "", err
	}
	if warn {
		e.warnf("no meta leader (%v); showing what a follower knows", oneLine(err.Error()))
	}
	return "", nil
}

// dataNode returns the data member id, or an error naming the data
// nodes there are.
func dataNode(m *proto.Members, id string) (proto.Member, error) {
	var ids []string
	for _, d := range m.Data {
		if d.ID == id {
			return d, nil
		}
		ids = append(ids, d.ID)
	}
	for _, s := range m.Sessions {
		if s.ID == id {
			return proto.Member{}, fmt.Errorf("%q is a session node, not a data node (data nodes: %s)", id, listOrNone(ids))
		}
	}
	return proto.Member{}, fmt.Errorf("unknown data node %q (data nodes: %s)", id, listOrNone(ids))
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// dataView is what the data nodes said to DSTATS: per node, per slot.
type dataView struct {
	slots map[string]map[int]*proto.SlotStats // node -> slot -> stats
	errs  map[string]error                    // nodes that did not answer
}

// stats returns what node holds of slot s, nil if it did not answer or
// does not hold it.
func (v *dataView) stats(node string, s int) *proto.SlotStats {
	return v.slots[node][s]
}

// readDataStats asks every data node of t for DSTATS, in parallel.
func (e *env) readDataStats(nodes []slot.Node) *dataView {
	stats, errs := askEach(nodes, e.dstats)
	v := &dataView{slots: make(map[string]map[int]*proto.SlotStats, len(stats)), errs: errs}
	for id, ds := range stats {
		m := make(map[int]*proto.SlotStats, len(ds.Slots))
		for j := range ds.Slots {
			m[ds.Slots[j].Slot] = &ds.Slots[j]
		}
		v.slots[id] = m
	}
	return v
}

// askEach calls ask with the address of every node, in parallel, and
// returns per node id its answer, or why it gave none.
func askEach[T any](nodes []slot.Node, ask func(addr string) (T, error)) (map[string]T, map[string]error) {
	out, errs := make(map[string]T, len(nodes)), map[string]error{}
	var mu sync.Mutex
	fanout.ForEach(len(nodes), 0, func(i int) {
		v, err := ask(nodes[i].Addr)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs[nodes[i].ID] = err
			return
		}
		out[nodes[i].ID] = v
	})
	return out, errs
}

// dstats asks the data node at addr for DSTATS.
func (e *env) dstats(addr string) (*proto.DataStats, error) {
	return askNode(e, addr, proto.CmdDStats, proto.ParseDataStats)
}

// askNode sends the argument-less admin command cmd to the node at addr
// and parses its reply; a node that does not answer, or refuses, is an
// error naming the command.
func askNode[T any](e *env, addr, cmd string, parse func(v any) (T, error)) (T, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	r, err := e.pool.call(ctx, addr, cmd)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", strings.ToUpper(cmd), err)
	}
	return parse(r)
}

// ping reports whether the node at addr answers PING.
func (e *env) ping(addr string) error {
	ctx, cancel := e.ctx()
	defer cancel()
	v, err := e.pool.call(ctx, addr, proto.CmdPing)
	if err != nil {
		return err
	}
	if s, _ := v.(string); s != "PONG" {
		return fmt.Errorf("%s: PING answered %v", addr, v)
	}
	return nil
}

// pingAll pings every address in parallel; the result is aligned with
// addrs.
func (e *env) pingAll(addrs []string) []error {
	errs := make([]error, len(addrs))
	fanout.ForEach(len(addrs), 0, func(i int) { errs[i] = e.ping(addrs[i]) })
	return errs
}

// sortedIDs returns the keys of m sorted.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
