package proto

import (
	"encoding/json"
	"fmt"
)

// Admin commands between registryctl and the data and session nodes. Both
// reply with one JSON bulk; the structs below are that JSON, shared by the
// nodes that write it and registryctl, which reads it.
const (
	// CmdDStats asks a data node (on its inter-node port) for DataStats:
	// every slot it holds, its role, position, size and content hash, and
	// its heap (DSTATS GC collects garbage first; DSTATS COUNTS leaves out
	// the hash and digests).
	CmdDStats = "dstats"
	// CmdSlotreg is the session command for slotreg's own admin
	// sub-commands on the client port (SLOTREG DIGESTS).
	CmdSlotreg = "slotreg"
	// SubDigests is SLOTREG's sub-command: the session's per-slot digests
	// of its connection-bound publishers, as SessionDigests.
	SubDigests = "digests"
	// OptCounts asks DSTATS for the counts only: each slot's role,
	// position and sizes and the node's heap, without the content hash
	// (which reads every publisher) or the sessions' digests. Cheap
	// enough to poll.
	OptCounts = "counts"
)

// Slot roles in SlotStats.Role.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// DataStats is a data node's answer to DSTATS.
type DataStats struct {
	Node  string      `json:"node"`
	Slots []SlotStats `json:"slots"`
	// Memory is the node's Go heap; after a full collection when DSTATS
	// was sent with GC.
	Memory *MemoryStats `json:"memory,omitempty"`
}

// SlotStats is one slot as a data node holds it. A leader and a follower
// at the same LeaderEpoch and Seq hold the same content, so their Hash
// must be equal; that is what `registryctl verify` checks.
type SlotStats struct {
	Slot        int    `json:"slot"`
	Role        string `json:"role"` // RoleLeader or RoleFollower
	LeaderEpoch uint64 `json:"leaderEpoch"`
	Seq         uint64 `json:"seq"` // the last op applied
	Publishers  int    `json:"publishers"`
	// TTLPublishers is how many of Publishers are held by a TTL (the
	// rest are bound to a client connection).
	TTLPublishers int    `json:"ttlPublishers"`
	Datums        int    `json:"datums"`
	Hash          uint64 `json:"hash,omitempty"` // not with OptCounts
	// Ready is false while the slot is not fit to serve: a new leader
	// reconciling with the sessions, a follower catching up.
	Ready bool `json:"ready"`
	// Sessions is, on the leader only, each session's digest of the
	// connection-bound publishers it owns in the slot, by session ID.
	Sessions map[string]Digest `json:"sessions,omitempty"`
}

// SessionDigests is a session's answer to SLOTREG DIGESTS: the digest of
// its connection-bound publishers per slot, only for slots where it has
// any (Count > 0).
type SessionDigests struct {
	Node  string         `json:"node"`
	Slots map[int]Digest `json:"slots"`
}

// ParseDataStats parses a DSTATS reply as a RESP client returns it (a
// bulk as string or []byte).
func ParseDataStats(v any) (*DataStats, error) {
	d := &DataStats{}
	if err := parseJSONBulk(v, CmdDStats, d); err != nil {
		return nil, err
	}
	return d, nil
}

// ParseSessionDigests parses a SLOTREG DIGESTS reply as a RESP client
// returns it (a bulk as string or []byte).
func ParseSessionDigests(v any) (*SessionDigests, error) {
	d := &SessionDigests{}
	if err := parseJSONBulk(v, CmdSlotreg+" "+SubDigests, d); err != nil {
		return nil, err
	}
	for s := range d.Slots {
		if s < 0 || s >= metaSlotCount {
			return nil, fmt.Errorf("%s reply: slot %d is not in 0..%d", CmdSlotreg+" "+SubDigests, s, metaSlotCount-1)
		}
	}
	return d, nil
}

func parseJSONBulk(v any, what string, into any) error {
	b, err := replyBulk(v, what+" reply")
	if err != nil || b == nil {
		return fmt.Errorf("%s reply: want a JSON bulk, got %T", what, v)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s reply: %w", what, err)
	}
	return nil
}
