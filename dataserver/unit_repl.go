package dataserver

import (
	"time"

	"github.com/slotreg/slotreg/proto"
)

// The slotUnit's replication steps: the leader's side of a pull (acks,
// backlog, entries or a snapshot), the follower's (its position, replay,
// install), waiting for a follower to have a TTL write, and a handoff's
// freeze and thaw. See repl.go and handoff.go for the protocols.

// ack records that follower has applied up to seq of the slot at leader
// epoch epoch, and wakes writers waiting for it. A position on another
// leader epoch acknowledges nothing here.
func (u *slotUnit) ack(follower string, epoch, seq uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.leads(epoch) || seq <= u.acked[follower] {
		return
	}
	u.acked[follower] = seq
	if u.ackWait {
		close(u.ackCh)
		u.ackCh = make(chan struct{})
		u.ackWait = false
	}
}

// replicated says whether some follower has applied seq; if not, it
// returns a channel that closes when acks move.
func (u *slotUnit) replicated(seq uint64, followers []string) (bool, <-chan struct{}) {
	if len(followers) == 0 {
		return true, nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range followers {
		if u.acked[f] >= seq {
			return true, nil
		}
	}
	u.ackWait = true
	return false, u.ackCh
}

// backlog is how many entries a follower at (epoch, seq) is behind the
// leader by, at most pullFull; one on another leader epoch (it needs a
// snapshot) counts as pullFull. urgent says a writer waits for a
// follower to have some of them.
func (u *slotUnit) backlog(epoch, seq uint64) (n int, urgent bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	switch {
	case st == nil || !u.leading:
	case epoch != st.leaderEpoch:
		n = pullFull
	case st.seq > seq:
		n = int(min(st.seq-seq, pullFull))
		urgent = u.ackWait
	}
	return n, urgent
}

// since answers a follower at (epoch, seq) with up to max entries after
// seq, or with a snapshot of the slot when it is on another leader epoch
// or further behind than the op-log holds. leaderEpoch is the leader's;
// ok is false when this node does not lead the slot. The caller encodes
// the answer after the lock is let go.
func (u *slotUnit) since(epoch, seq uint64, max int, now int64) (leaderEpoch uint64, es []LogEntry, snap *proto.SlotSnapshot, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || !u.leading {
		return 0, nil, nil, false
	}
	inLog := false
	if epoch == st.leaderEpoch {
		es, inLog = st.log.since(seq, max)
	}
	if !inLog {
		snap = st.dump(now)
	}
	return st.leaderEpoch, es, snap, true
}

// position is where this node's copy of a followed slot stands: the
// leader epoch it follows (0: it needs a snapshot) and the seq it has
// applied. ok is false when it does not follow the slot.
func (u *slotUnit) position() (epoch, seq uint64, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || u.leading {
		return 0, 0, false
	}
	return u.store.leaderEpoch, u.store.seq, true
}

// replay applies a leader's entries to a followed slot. A gap in their
// seqs stops it and makes the next pull ask for a snapshot.
func (u *slotUnit) replay(es []LogEntry, now int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || u.leading {
		return
	}
	for i := range es {
		if es[i].Seq != st.seq+1 {
			st.leaderEpoch = 0
			return
		}
		st.replay(&es[i], now)
	}
}

// install replaces a followed slot's copy with the leader's snapshot;
// false when the node does not follow the slot.
func (u *slotUnit) install(snap *proto.SlotSnapshot, now int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || u.leading {
		return false
	}
	u.store.install(snap, now)
	return true
}

// handoffStep is what a handoff of the slot needs from the node next.
type handoffStep struct {
	action handoffAction
	target string
	epoch  uint64 // leader epoch (stepCommit)
	seq    uint64 // the leader's seq and what the target acked (stepThawed)
	acked  uint64
}

type handoffAction int

const (
	stepNone   handoffAction = iota
	stepCommit               // the target has every entry: ask meta to switch the leader
	stepThawed               // the target did not drain within handoffDrain: the slot thawed
)

// handoffStep moves the slot's handoff on by one tick at now (see
// handoff.go): it freezes the slot once the target has nearly caught up
// and meta answers (metaUp), asks for the commit once the target has the
// last entry, and thaws a slot frozen longer than handoffDrain.
func (u *slotUnit) handoffStep(metaUp bool, now time.Time) handoffStep {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil || !u.leading || u.target == "" || !u.ready {
		return handoffStep{}
	}
	acked, following := u.acked[u.target]
	switch {
	case !u.frozen && following && metaUp && st.seq-min(acked, st.seq) <= handoffLag:
		u.frozen, u.frozenAt = true, now
	case u.frozen && acked >= st.seq:
		return handoffStep{action: stepCommit, target: u.target, epoch: st.leaderEpoch}
	case u.frozen && now.Sub(u.frozenAt) > handoffDrain:
		u.frozen = false
		return handoffStep{action: stepThawed, target: u.target, seq: st.seq, acked: acked}
	}
	return handoffStep{}
}

// thaw takes writes for the slot again: its handoff failed.
func (u *slotUnit) thaw() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.frozen = false
}

// frozenFor says whether the slot is still frozen for a handoff to target
// at leader epoch epoch: a newer table that demoted this node, or changed
// the slot's target, settled the handoff's outcome.
func (u *slotUnit) frozenFor(target string, epoch uint64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.leads(epoch) && u.frozen && u.target == target
}
