package meta

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// stateSignal wakes the long polls waiting on one part of the state
// (CONFWATCH on the config revision, TABLEWAIT on the table and session
// list, LOCK ... WAIT on anything): waiters take the current channel,
// which publish closes (and the next waiter replaces) when a new state
// matters to them, so no change is missed between reading the state and
// starting to wait.
type stateSignal struct {
	// matters says whether going from old to cur concerns the waiters;
	// nil means every new state does.
	matters func(old, cur *state) bool

	mu sync.Mutex
	ch chan struct{}
	// polls counts the long polls waiting on it (for /metrics).
	polls atomic.Int64
}

func (c *stateSignal) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *stateSignal) notify(old, cur *state) {
	if old != nil && c.matters != nil && !c.matters(old, cur) {
		return
	}
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

// configChanged: CONFWATCH waits on the config revision.
func configChanged(old, cur *state) bool { return old.ConfigRev != cur.ConfigRev }

// tableChanged: TABLEWAIT waits on the table and the session list.
func tableChanged(old, cur *state) bool {
	return old.Table != cur.Table || old.MembersEpoch != cur.MembersEpoch
}

// leaderCheck is how often a waiting long poll checks that this node
// still leads: after a leader change, changes are applied by the new
// leader's log, and a node polling a deposed one must move on soon.
const leaderCheck = 200 * time.Millisecond

// longPoll waits on sig until ready holds for the current state or wait
// passes, and returns the last state it read and whether ready held. It
// fails with NOTLEADER once this node no longer leads (checked every
// leaderCheck), and with UNAVAILABLE when it shuts down.
func (n *Node) longPoll(sig *stateSignal, wait time.Duration, ready func(*state) bool) (*state, bool, error) {
	sig.polls.Add(1)
	defer sig.polls.Add(-1)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	check := time.NewTicker(leaderCheck)
	defer check.Stop()
	for {
		wake := sig.wait()
		st := n.store.state()
		if ready(st) {
			return st, true, nil
		}
		select {
		case <-wake:
		case <-check.C:
			if err := n.leaderGate(); err != nil {
				return nil, false, err
			}
		case <-deadline.C:
			return st, false, nil
		case <-n.ctx.Done():
			return nil, false, proto.Errorf(proto.ErrUnavailable, "meta %s is shutting down", n.cfg.NodeID)
		}
	}
}

// handleTableWait answers as soon as the table epoch or the members epoch
// differs from the node's (at once if it does already), else after
// waitMs, with both epochs: the node then heartbeats to fetch what
// changed. It saves a node up to a heartbeat interval on every change (a
// move's steps, a new member), and only the leader answers.
func (n *Node) handleTableWait(conn redcon.Conn, w *proto.TableWait) error {
	news := func(st *state) bool {
		return st.Table != nil && (st.Table.Epoch != w.Epoch || st.MembersEpoch != w.MembersEpoch)
	}
	st, _, err := n.longPoll(&n.store.tables, time.Duration(w.WaitMs)*time.Millisecond, news)
	if err != nil {
		return err
	}
	if st.Table == nil {
		return n.unavailable("no table yet")
	}
	conn.WriteRaw(proto.AppendTableWaitReply(nil, st.Table.Epoch, st.MembersEpoch))
	return nil
}
