package meta

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// fsm is the thin raft.FSM adapter: one delegating line per method. The
// rules live in applyCommand; the published state lives in store.
type fsm struct{ s *store }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.s.apply(l.Data) }

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return f.s.snapshot(), nil }

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error { return f.s.restore(rc) }

// store publishes the current state. Raft calls apply and restore from one
// goroutine; everyone else only loads the pointer.
type store struct {
	cur atomic.Pointer[state]
	// changed gets a token (never blocking, at most one pending) whenever
	// a new state is published, so the leader's move loop reacts to a
	// table change at once instead of at its next tick.
	changed chan struct{}
	// cfg wakes CONFWATCH long polls when the config revision changes.
	cfg stateSignal
	// tables wakes TABLEWAIT long polls when the table or the session
	// list changes.
	tables stateSignal
	// changes wakes whoever waits for any new state (LOCK ... WAIT).
	changes stateSignal
}

func newStore() *store {
	s := &store{changed: make(chan struct{}, 1)}
	s.cfg.matters, s.tables.matters = configChanged, tableChanged
	s.cur.Store(newState())
	return s
}

// publish makes st the current state and signals changed.
func (s *store) publish(st *state) {
	old := s.cur.Swap(st)
	if old == st {
		return
	}
	s.cfg.notify(old, st)
	s.tables.notify(old, st)
	s.changes.notify(old, st)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// state returns the current state; callers must not modify it.
func (s *store) state() *state { return s.cur.Load() }

func (s *store) apply(entry []byte) result {
	c, err := decodeCommand(entry)
	if err != nil {
		// An entry this build cannot read means the log and the code
		// disagree; going on would let replicas diverge.
		panic(fmt.Sprintf("meta: undecodable raft log entry: %v", err))
	}
	next, res := applyCommand(s.cur.Load(), c)
	s.publish(next)
	return res
}

func (s *store) snapshot() *fsmSnapshot { return &fsmSnapshot{st: s.cur.Load()} }

func (s *store) restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readState(rc)
	if err != nil {
		return err
	}
	s.publish(st)
	return nil
}

// fsmSnapshot is a point-in-time state; states are immutable, so holding
// the pointer is the copy.
type fsmSnapshot struct{ st *state }

// Persist implements raft.FSMSnapshot.
func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := f.st.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("snapshot: close sink: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot.
func (f *fsmSnapshot) Release() {}
