package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// state is the replicated state. A published state is immutable: the
// applier returns a new state (sharing whatever did not change) instead of
// editing it, so readers and snapshots take a pointer, never a lock, and a
// snapshot costs nothing.
type state struct {
	// Replicas is 0 until cmdInit is applied.
	Replicas int
	// Data, Sessions: node ID -> advertised address. Metas: Raft server
	// ID -> RPC address.
	Data, Sessions, Metas map[string]string
	// Table is nil until cmdInit is applied.
	Table *slot.Table
	// MembersEpoch is raised on every change to the session nodes (join,
	// address change, removal), so data and session nodes can ask for the
	// session list only when it changed. Init sets it to 1, so 0 always
	// means "no list yet" to a client.
	MembersEpoch uint64
	// Draining holds the data nodes being drained (always members of
	// Data): the leader moves the slots they lead to other nodes, and no
	// move may target them. Removing a node from Data removes it here.
	Draining map[string]bool
	// Config holds every config key ever set, deleted ones as tombstones
	// (see configkv.go); ConfigRev is the highest version given out, the
	// one counter every key's versions come from.
	Config    map[string]*configKey
	ConfigRev uint64
	// Locks are the held global locks (see locks.go). FenceSeq is the
	// last fencing token granted. Clock is the latest leader time any
	// lock entry carried (Unix ms): it never goes back, whatever the
	// clocks of successive leaders say.
	Locks map[string]*lockState
	// Persist are the PERSISTENT paths by slot (persist.go), PersistRev
	// the revision of the last change to any.
	Persist    [slot.Count]map[string]*persistPath
	PersistRev uint64
	// LockQueues are, by lock, the owners waiting for it (LOCK ... WAIT)
	// in arrival order.
	LockQueues map[string][]lockWaiter `json:"lockQueues,omitempty"`
	FenceSeq   uint64
	Clock      int64
}

func newState() *state {
	return &state{Data: map[string]string{}, Sessions: map[string]string{}, Metas: map[string]string{},
		Draining: map[string]bool{}, Config: map[string]*configKey{}, Locks: map[string]*lockState{}}
}

// members returns the map for a node kind, nil for an unknown kind.
func (s *state) members(kind string) map[string]string {
	switch kind {
	case proto.KindData:
		return s.Data
	case proto.KindSession:
		return s.Sessions
	case proto.KindMeta:
		return s.Metas
	}
	return nil
}

// dataNodes lists the data nodes sorted by ID, the input slot.Balance gets.
func dataNodes(m map[string]string) []slot.Node {
	nodes := make([]slot.Node, 0, len(m))
	for _, id := range slices.Sorted(maps.Keys(m)) {
		nodes = append(nodes, slot.Node{ID: id, Addr: m[id]})
	}
	return nodes
}

// sessionList lists the session nodes sorted by ID, as heartbeat replies
// carry them.
func (s *state) sessionList() []proto.Member {
	out := make([]proto.Member, 0, len(s.Sessions))
	for _, id := range slices.Sorted(maps.Keys(s.Sessions)) {
		out = append(out, proto.Member{ID: id, Addr: s.Sessions[id], Kind: proto.KindSession})
	}
	return out
}

func (s *state) membersCopy() proto.Members {
	list := func(kind string) []proto.Member {
		m := s.members(kind)
		out := make([]proto.Member, 0, len(m))
		for _, id := range slices.Sorted(maps.Keys(m)) {
			out = append(out, proto.Member{ID: id, Addr: m[id], Kind: kind})
		}
		return out
	}
	m := proto.Members{Data: list(proto.KindData), Sessions: list(proto.KindSession), Metas: list(proto.KindMeta)}
	for i := range m.Data {
		m.Data[i].Draining = s.Draining[m.Data[i].ID]
	}
	return m
}

// drainingList is Draining sorted, for snapshots.
func (s *state) drainingList() []string {
	return slices.Sorted(maps.Keys(s.Draining))
}

// Snapshot format: an 8-byte magic, a 4-byte big-endian version, then the
// state as JSON (maps are encoded with sorted keys, so equal states give
// equal bytes).
//
// Version 2 added membersEpoch (and tables may carry move targets, which
// slot's own encoding handles); version 3 added draining. Older snapshots
// are still read: a version 1 state gets MembersEpoch 1 if it was
// initialized, as if the session list had never changed since init, and
// versions 1 and 2 drain no node. Version 4 added config (every key's
// bounded history), configRev, locks, fenceSeq and clock; older snapshots
// restore with none.
var snapshotMagic = [8]byte{'S', 'L', 'O', 'T', 'M', 'E', 'T', 'A'}

const (
	snapshotVersion   uint32 = 4
	snapshotVersionV3 uint32 = 3
	snapshotVersionV2 uint32 = 2
	snapshotVersionV1 uint32 = 1
)

// stateJSON is the persisted form of state. The table keeps slot's own
// encoding so slot.Unmarshal validates it on restore.
type stateJSON struct {
	Replicas int               `json:"replicas"`
	Data     map[string]string `json:"data"`
	Sessions map[string]string `json:"sessions"`
	Metas    map[string]string `json:"metas"`
	Table    json.RawMessage   `json:"table,omitempty"`
	// MembersEpoch is absent from version 1.
	MembersEpoch uint64 `json:"membersEpoch"`
	// Draining (sorted) is absent before version 3.
	Draining []string `json:"draining,omitempty"`
	// Config, ConfigRev, Locks, FenceSeq and Clock are absent before
	// version 4.
	Config    map[string][]configRev `json:"config,omitempty"`
	ConfigRev uint64                 `json:"configRev,omitempty"`
	Locks     map[string]*lockState  `json:"locks,omitempty"`
	// Persist and PersistRev are absent before PERSISTENT paths.
	Persist    map[string]*persistPath `json:"persist,omitempty"`
	PersistRev uint64                  `json:"persistRev,omitempty"`
	// LockQueues is absent before waiting locks.
	LockQueues map[string][]lockWaiter `json:"lockQueues,omitempty"`
	FenceSeq   uint64                  `json:"fenceSeq,omitempty"`
	Clock      int64                   `json:"clock,omitempty"`
}

// writeTo persists s in the snapshot format.
func (s *state) writeTo(w io.Writer) error {
	sj := stateJSON{Replicas: s.Replicas, Data: s.Data, Sessions: s.Sessions, Metas: s.Metas, MembersEpoch: s.MembersEpoch,
		Draining: s.drainingList(), ConfigRev: s.ConfigRev, Locks: s.Locks, LockQueues: s.LockQueues, FenceSeq: s.FenceSeq, Clock: s.Clock,
		Persist: persistJSON(s), PersistRev: s.PersistRev}
	if len(s.Config) > 0 {
		sj.Config = make(map[string][]configRev, len(s.Config))
		for k, ck := range s.Config {
			sj.Config[k] = ck.Revs
		}
	}
	if s.Table != nil {
		b, err := s.Table.Marshal()
		if err != nil {
			return fmt.Errorf("snapshot: encode table epoch %d: %w", s.Table.Epoch, err)
		}
		sj.Table = b
	}
	body, err := json.Marshal(&sj)
	if err != nil {
		return fmt.Errorf("snapshot: encode state: %w", err)
	}
	hdr := make([]byte, 0, len(snapshotMagic)+4)
	hdr = append(hdr, snapshotMagic[:]...)
	hdr = binary.BigEndian.AppendUint32(hdr, snapshotVersion)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("snapshot: write header: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return fmt.Errorf("snapshot: write state: %w", err)
	}
	return nil
}

// readState parses what writeTo wrote, checking the header first.
func readState(r io.Reader) (*state, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("restore: read snapshot: %w", err)
	}
	if len(b) < len(snapshotMagic)+4 || !bytes.Equal(b[:len(snapshotMagic)], snapshotMagic[:]) {
		return nil, fmt.Errorf("restore: not a meta snapshot (bad magic)")
	}
	v := binary.BigEndian.Uint32(b[len(snapshotMagic):])
	if v != snapshotVersion && v != snapshotVersionV3 && v != snapshotVersionV2 && v != snapshotVersionV1 {
		return nil, fmt.Errorf("restore: snapshot version %d, this build reads %d to %d", v, snapshotVersionV1, snapshotVersion)
	}
	var sj stateJSON
	if err := json.Unmarshal(b[len(snapshotMagic)+4:], &sj); err != nil {
		return nil, fmt.Errorf("restore: decode state: %w", err)
	}
	s := newState()
	s.Replicas = sj.Replicas
	s.MembersEpoch = sj.MembersEpoch
	if v == snapshotVersionV1 && s.Replicas != 0 {
		s.MembersEpoch = 1
	}
	maps.Copy(s.Data, sj.Data)
	maps.Copy(s.Sessions, sj.Sessions)
	maps.Copy(s.Metas, sj.Metas)
	for _, id := range sj.Draining {
		if _, ok := s.Data[id]; !ok {
			return nil, fmt.Errorf("restore: draining node %q is not a data node", id)
		}
		s.Draining[id] = true
	}
	if len(sj.Table) > 0 {
		if s.Table, err = slot.Unmarshal(sj.Table); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if err := restoreConfigAndLocks(s, &sj); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := restorePersist(s, &sj); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return s, nil
}
