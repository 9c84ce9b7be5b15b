package dataserver

import (
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// slotUnit is one of the 256 slots as this node holds it, and everything
// about it: the copy of its data (the store, with its op-log), the role
// this node plays for it, the followers' acks, the reconcile and handoff
// state, and the session streams that watch its dataInfoIds. The node
// holds one for every slot, from start to close, whether it leads the
// slot, follows it or neither.
//
// One mutex guards all of it, and only the methods in unit.go,
// unit_repl.go, unit_paths.go, unit_xdc.go and scan.go take it: the rest
// of the package asks a unit to do a whole step (apply a write, answer a
// pull, adopt a role) and gets its outcome. Slots never share a lock, so
// writes to different slots run in parallel. A step that changes a datum
// tells its watchers before the lock is let go, so a write costs one lock
// round trip.
type slotUnit struct {
	mu      sync.Mutex
	id      int
	logSize int          // the op-log entries a new store keeps
	log     *slog.Logger // the node's
	dc      string       // the node's datacenter, which local publishers name

	// store is this node's copy of the slot, as its leader or a follower;
	// nil while it holds none.
	store   *slotStore
	leading bool

	// Leader only.
	ready    bool                // reconciled with the sessions: may serve reads and pushes
	waiting  map[string]struct{} // sessions a new leader still waits for
	frozen   bool                // handing the slot off: refuse writes
	frozenAt time.Time           // when it froze
	target   string              // the node the slot is handed to
	acked    map[string]uint64   // follower -> seq it has applied
	ackCh    chan struct{}       // closed and replaced when acked grows and someone waits
	ackWait  bool                // a writer waits on ackCh: pulls answer without lingering
	// stamps holds, by session, the stamp of the newest write batch or
	// sync of that session applied here as leader: a DSYNC stamped
	// before it is refused (see proto.Stamp).
	stamps map[string]proto.Stamp
	// staleCount counts the requests refused for that (the node's).
	staleCount *atomic.Uint64
	// persistRev is the meta revision of PERSISTENT paths the slot holds
	// as leader (persist.go); 0 until it first synced.
	persistRev uint64

	// watchers maps the slot's dataInfoIds to the session streams that
	// watch them; kept across role changes, since a stream subscribes
	// once and follows whichever node leads.
	watchers map[string]map[*stream]struct{}
	// prefixes maps the path prefixes session streams watch (PSUBSCRIBE)
	// to those streams; every stream's prefixes are in all 256 units.
	prefixes map[string]map[*stream]struct{}
}

func newSlotUnit(id, logSize int, log *slog.Logger) *slotUnit {
	return &slotUnit{
		id:       id,
		logSize:  logSize,
		log:      log,
		acked:    make(map[string]uint64),
		ackCh:    make(chan struct{}),
		stamps:   make(map[string]proto.Stamp),
		watchers: make(map[string]map[*stream]struct{}),
		prefixes: make(map[string]map[*stream]struct{}),
	}
}

// lead makes this node the slot's leader by assignment a. from is the
// assignment a planned handoff to this node left (the old table's, when
// it named this node as target and its leader is still a member), else
// nil. A follower's copy is promoted: after a planned handoff it is ready
// at once (promoted, ready); otherwise the slot first reconciles with the
// sessions (promoted, !ready) and every datum's version rises, so that
// what it serves supersedes anything the old leader pushed. A slot with
// no copy here starts empty and reconciles.
func (u *slotUnit) lead(a *slot.Assignment, from *slot.Assignment) (promoted, ready bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil {
		u.store = newSlotStore(a.LeaderEpoch, u.logSize)
	}
	st := u.store
	if !u.leading {
		planned := from != nil && st.leaderEpoch == from.LeaderEpoch
		u.leading = true
		u.persistRev = 0
		st.leaderEpoch = a.LeaderEpoch
		now := time.Now().UnixNano()
		for _, r := range st.remote {
			// Where an earlier term left the sync no longer says what
			// the copy holds: start from a digest compare. The copy
			// counts as current when this node takes over (its old
			// leader was syncing it), so staleness and --remote-expire
			// count from here.
			r.epoch, r.seq, r.syncedAt = 0, 0, now
		}
		clear(u.acked)
		promoted = true
		if planned {
			u.ready = true
		} else {
			st.touch()
			u.ready = false
		}
	} else if a.LeaderEpoch > st.leaderEpoch {
		st.leaderEpoch = a.LeaderEpoch
	}
	if u.target != a.Target {
		u.target = a.Target
		u.frozen = false
	}
	return promoted, promoted && u.ready
}

// follow makes this node a follower of the slot: a demoted leader keeps
// its data; a slot with no copy here gets an empty one, which its first
// pull fills with a snapshot.
func (u *slotUnit) follow() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil {
		u.store = newSlotStore(0, u.logSize)
		return
	}
	u.demote()
}

// demote ends the leader's state; u.mu is held.
func (u *slotUnit) demote() {
	if u.leading {
		u.leading, u.ready, u.frozen, u.target, u.waiting = false, false, false, "", nil
	}
}

// drop lets the copy go: the node neither leads nor follows the slot.
func (u *slotUnit) drop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil {
		return
	}
	u.demote()
	u.store = nil
	clear(u.acked)
}

// written is the outcome of one write the leader applied: its result
// (the version for a register, 1 or 0 for unregister and renew), whether
// watchers were told, and the seq a follower must have before the reply
// when it touched a TTL publisher (0: none).
type written struct {
	result  uint64
	changed bool
	durable uint64
}

// write applies op as the slot's leader at now (unix nanos), from a
// batch the session stamped stamp. errNotLeading says this node does not
// lead the slot; target is then set when it is handing the slot off, to
// the node it hands it to. A batch stamped before one of the session's
// already applied to the slot is refused (see stale).
func (u *slotUnit) write(session string, stamp proto.Stamp, op *proto.Op, now int64) (w written, target string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if target, err := u.admit("write batch", session, stamp, u.store != nil && u.leading); err != nil {
		return w, target, err
	}
	// A PERSISTENT path changes only through meta (persist.go); a
	// connection's closing leaves it, as the owners differ.
	overwrite := op.Type == proto.OpRegister || op.Type == proto.OpUnregister && op.ConnID == ""
	// Located once, for the check and the write.
	at := u.store.locateFor(op)
	if overwrite && at.persistent() {
		return w, "", proto.Errorf(proto.ErrInvalid, "%s is a PERSISTENT path: DEL it first, or PUT it PERSISTENT",
			proto.JoinPath(op.DataInfoID, op.RegisterID))
	}
	res, changed, ttl := u.store.applyAt(session, op, now, at)
	w.result, w.changed = res, changed
	if ttl {
		// Writes to TTL publishers are acknowledged once a follower has
		// them (unlike connection-bound ones, no session holds them to
		// restore), and pulls then answer without lingering.
		w.durable = u.store.seq
		u.ackWait = true
	}
	if changed {
		u.notify(op.DataInfoID)
	}
	return w, "", nil
}

// read returns a datum as subscribers see it. leading is false when this
// node does not lead the slot; ready, when it leads it but has not yet
// reconciled it with the sessions.
func (u *slotUnit) read(id string) (d *proto.Datum, leading, ready bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading {
		return nil, false, false
	}
	if !u.ready {
		return nil, true, false
	}
	return u.store.snapshot(id, u.dc), true, true
}

// expire removes, as the leader, the TTL publishers due at now and tells
// their watchers; it says whether anything changed. A slot being handed
// off waits: its writes are frozen.
func (u *slotUnit) expire(now int64) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading || u.frozen {
		return false
	}
	changed := u.store.expire(now)
	for _, id := range changed {
		u.notify(id)
	}
	return len(changed) > 0
}

// slotCounts is what a unit adds to the node's counters.
type slotCounts struct {
	held       bool // the node has a copy
	leading    bool
	publishers int
	datums     int
	lag        uint64 // leader: the most entries one of the followers has yet to apply
}

// counts reads the unit's counters; followers are the slot's, by the
// table, for the lag (nil: not wanted).
func (u *slotUnit) counts(followers []string) slotCounts {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil {
		return slotCounts{}
	}
	c := slotCounts{held: true, leading: u.leading, publishers: st.publishers, datums: st.datums.Len()}
	if u.leading {
		// A follower that has not acked yet is behind by all of seq.
		for _, f := range followers {
			c.lag = max(c.lag, st.seq-min(u.acked[f], st.seq))
		}
	}
	return c
}

// stats is the slot's line of DSTATS; false when the node has no copy.
func (u *slotUnit) stats(full bool) (proto.SlotStats, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.store
	if st == nil {
		return proto.SlotStats{}, false
	}
	ss := proto.SlotStats{
		Slot: u.id, LeaderEpoch: st.leaderEpoch, Seq: st.seq,
		Publishers: st.publishers, TTLPublishers: st.expiry.Len(), Datums: st.datums.Len(), Ready: u.ready,
	}
	if full {
		ss.Hash = st.contentHash()
	}
	if !u.leading {
		ss.Role = proto.RoleFollower
		ss.Ready = st.leaderEpoch != 0 // holds a copy of some leader's slot
	} else {
		ss.Role = proto.RoleLeader
	}
	if u.leading && full {
		ss.Sessions = make(map[string]proto.Digest, len(st.digests))
		for id, d := range st.digests {
			ss.Sessions[id] = *d
		}
	}
	return ss, true
}

// awaitSessions makes a newly led slot wait for these sessions to
// reconcile it before it serves reads and pushes; with none to wait for
// it is ready at once. waiting says it waits, at leader epoch epoch.
func (u *slotUnit) awaitSessions(sessions []string) (epoch uint64, waiting bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading {
		return 0, false
	}
	u.waiting = make(map[string]struct{}, len(sessions))
	for _, id := range sessions {
		u.waiting[id] = struct{}{}
	}
	if len(u.waiting) == 0 {
		u.ready, u.waiting = true, nil
		u.notifyAll()
		return u.store.leaderEpoch, false
	}
	return u.store.leaderEpoch, true
}

// giveUpWaiting makes the slot ready when it still waits for sessions at
// leader epoch epoch (the reconcile timeout passed) and returns the
// sessions it waited for, sorted; false when there was nothing to do.
func (u *slotUnit) giveUpWaiting(epoch uint64) (missing []string, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ready || !u.leading || u.store == nil || u.store.leaderEpoch != epoch {
		return nil, false
	}
	missing = make([]string, 0, len(u.waiting))
	for id := range u.waiting {
		missing = append(missing, id)
	}
	sort.Strings(missing)
	u.ready, u.waiting = true, nil
	u.notifyAll()
	return missing, true
}

// reconciled marks a session done with the slot; the last one makes it
// ready and its watchers hear of every datum. u.mu is held.
func (u *slotUnit) reconciled(session string) {
	if u.ready || u.waiting == nil {
		return
	}
	delete(u.waiting, session)
	if len(u.waiting) == 0 {
		u.ready, u.waiting = true, nil
		u.log.Debug("slot reconciled with every live session; serving it", "slot", u.id, "epoch", u.store.leaderEpoch, "last", session)
		u.notifyAll()
	}
}

// reconcilable says whether a session's reconcile of the slot at leader
// epoch epoch counts: the node leads it, and is ready or knows whom it
// waits for. Between lead and awaitSessions (onTable, then
// startReconcile) a slot taken over without a handoff leads but waits for
// no one yet; a reconcile then would be forgotten when the wait begins,
// and the slot would wait ReconcileTimeout for a session that had already
// reconciled. The session is told the node does not lead (yet), and asks
// again. u.mu is held.
func (u *slotUnit) reconcilable(epoch uint64) bool {
	return u.leads(epoch) && (u.ready || u.waiting != nil)
}

// leads says whether the node leads the slot at leader epoch epoch;
// u.mu is held.
func (u *slotUnit) leads(epoch uint64) bool {
	return u.store != nil && u.leading && u.store.leaderEpoch == epoch
}

// compareDigest answers a session's DRECONCILE for the slot: whether its
// digest of its connection-bound publishers equals the leader's (an
// equal one counts as the session reconciled). ok is false when the node
// does not lead the slot at epoch. Either way the session's writes
// stamped before stamp are refused from now on: the session's digest
// already has what they did, or has it undone.
func (u *slotUnit) compareDigest(session string, stamp proto.Stamp, epoch uint64, dg proto.Digest) (equal, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.reconcilable(epoch) {
		return false, false
	}
	u.stamped(session, stamp)
	var have proto.Digest
	if d := u.store.digests[session]; d != nil {
		have = *d
	}
	if have != dg {
		return false, true
	}
	u.reconciled(session)
	return true, true
}

// admit says, with u.mu held, whether a session's write batch or sync
// stamped stamp may apply to the slot, and notes its stamp if so: not
// where the node does not lead it, nor while it hands it off (target is
// then set), nor when the session has sent newer since (see stale).
func (u *slotUnit) admit(what, session string, stamp proto.Stamp, leading bool) (target string, err error) {
	if !leading {
		return "", errNotLeading
	}
	if u.frozen {
		return u.target, errNotLeading
	}
	cur, ok := u.stamps[session]
	switch {
	case ok && stamp.Before(cur):
		return "", u.stale(what, session, stamp, cur)
	case !ok || cur != stamp: // the ops of one batch share its stamp
		u.stamps[session] = stamp
	}
	return "", nil
}

// stamped notes that something the session stamped st was applied.
func (u *slotUnit) stamped(session string, st proto.Stamp) {
	if cur, ok := u.stamps[session]; !ok || !st.Before(cur) {
		u.stamps[session] = st
	}
}

// errNotLeading says the node does not lead a slot, or is handing it off.
var errNotLeading = errors.New("not leading the slot")

// stale refuses a write batch or sync of the session stamped st, older
// than cur, the newest applied: the session gave up on it (a timeout, a
// connection it closed) and has sent what came after, which it would undo.
func (u *slotUnit) stale(what, session string, st, cur proto.Stamp) error {
	if u.staleCount != nil {
		u.staleCount.Add(1)
	}
	u.log.Debug("refused a "+what+" older than one the leader applied", "slot", u.id, "session", session, "seq", st.Seq, "applied_seq", cur.Seq)
	return proto.Errorf(proto.ErrUnavailable, "slot %d: this %s of session %s is older (seq %d) than a write or sync of it already applied (seq %d)",
		u.id, what, session, st.Seq, cur.Seq)
}

// syncSession answers a session's DSYNC: its connection-bound publishers
// in the slot become exactly pubs, and the session counts as reconciled.
// It returns the dataInfoIds that changed (their watchers are told).
// errNotLeading says the node does not lead the slot at epoch, or is
// handing it off (target is then set, as for a write): the target has
// caught up with the log, and what a sync changed now would not reach it,
// so the session syncs with whichever node leads next. A sync whose list
// was taken before a write or sync of the session applied here is
// refused: it would undo that write (the session sends a newer one).
func (u *slotUnit) syncSession(session, zone string, epoch uint64, stamp proto.Stamp, pubs []proto.SyncPub) (changed []string, target string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if target, err := u.admit("sync", session, stamp, u.reconcilable(epoch)); err != nil {
		return nil, target, err
	}
	u.log.Debug("sync request", "slot", u.id, "session", session, "publishers", len(pubs), "digest", u.store.digests[session])
	changed = u.store.sync(session, zone, pubs)
	for _, id := range changed {
		u.notify(id)
	}
	u.reconciled(session)
	return changed, "", nil
}

// dropSessions removes, as the leader, the connection-bound publishers of
// sessions that left the cluster, and stops waiting for them to
// reconcile. It returns how many datums changed.
func (u *slotUnit) dropSessions(sessions []string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.store == nil || !u.leading {
		return 0
	}
	changed := 0
	for _, id := range sessions {
		ids := u.store.dropSession(id)
		for _, d := range ids {
			u.notify(d)
		}
		changed += len(ids)
		u.reconciled(id)
		delete(u.stamps, id)
	}
	return changed
}

// watch adds a stream as a watcher of id, a dataInfoId of the slot.
func (u *slotUnit) watch(id string, s *stream) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.watchers[id]
	if m == nil {
		m = make(map[*stream]struct{}, 1)
		u.watchers[id] = m
	}
	m[s] = struct{}{}
}

// unwatch removes a stream as a watcher of id.
func (u *slotUnit) unwatch(id string, s *stream) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if m := u.watchers[id]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(u.watchers, id)
		}
	}
}

// notify marks id changed for every stream watching it or a prefix of
// it; u.mu is held.
func (u *slotUnit) notify(id string) {
	for s := range u.watchers[id] {
		s.mark(id)
	}
	if len(u.prefixes) == 0 || id[0] != '/' {
		return
	}
	for prefix, m := range u.prefixes {
		if proto.PrefixHolds(prefix, id) {
			for s := range m {
				s.mark(id)
			}
		}
	}
}

// notifyAll marks every watched id of the slot changed (the slot got a
// new leader here); u.mu is held.
func (u *slotUnit) notifyAll() {
	for id, m := range u.watchers {
		for s := range m {
			s.mark(id)
		}
	}
	for prefix, m := range u.prefixes {
		for s := range m {
			u.markPrefix(prefix, s)
		}
	}
}

// announce tells every watcher of the slot that its datums changed: the
// slot became ready under this node as its new leader.
func (u *slotUnit) announce() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.notifyAll()
}
