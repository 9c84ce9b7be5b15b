package proto

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// DefaultDatacenter is a node's datacenter unless it is given one.
const DefaultDatacenter = "dc1"

// Cross-datacenter sync (DESIGN.md, "Datacenters and zones").
const (
	// CmdDXPull is a slot leader's long poll, to the leader of the same
	// slots in another datacenter, for the local publishers there.
	CmdDXPull = "dxpull"
	// CmdDXStats asks a data node for its remote datacenters and, per
	// slot it leads, its sync state with each (JSON).
	CmdDXStats = "dxstats"
	// CmdRemotes asks a meta node for its datacenter and the meta
	// addresses of the remote ones (its --remote-datacenters).
	CmdRemotes = "remotes"
	// CmdScope sets a client connection's view: zone, datacenter or
	// global.
	CmdScope = "scope"
)

// XPullPos is where a leader stands with one slot of a remote
// datacenter: the remote leader epoch and seq its copy is at (0, 0 for
// none yet), and the digest of that copy (the sum of PubHash(dataInfoId,
// registerId, data, zone) of each publisher).
type XPullPos struct {
	Slot        int
	LeaderEpoch uint64
	Seq         uint64
	Digest      Digest
}

// DXPull is DXPULL datacenter waitMs positions: a leader of datacenter
// Datacenter asks for what changed in the slots of its positions since
// them. The answer comes once any slot has news, else after WaitMs; it
// holds one [slot, kind, leaderEpoch, seq, blob] per slot with news:
//   - "log": the local writes after the position (blob: AppendEntries of
//     OpRegister and OpUnregister entries; seq is the position to take,
//     past entries the sync leaves out);
//   - "snap": the slot's local publishers (blob: a SlotSnapshot), for a
//     position on another leader epoch, behind the log, or whose digest
//     differs;
//   - "pos": the copy is current (its digest matches) at leaderEpoch, seq;
//   - "none": this node does not lead the slot: ask by a fresher table;
//   - "wait": it leads the slot but is still reconciling it with its
//     sessions (what it holds may lack publishers that are alive).
//
// A slot left out is current as of the answer.
type DXPull struct {
	Datacenter string
	WaitMs     uint32
	Pos        []XPullPos
}

// XPull reply kinds beyond PullLog and PullSnap.
const (
	XPullAt   = "pos"
	XPullNone = "none"
	XPullWait = "wait"
)

// Args builds the command.
func (p *DXPull) Args() []any {
	return []any{CmdDXPull, p.Datacenter, strconv.FormatUint(uint64(p.WaitMs), 10), p.positions()}
}

// AppendRESP appends the command as a RESP array (what Args would send).
func (p *DXPull) AppendRESP(dst []byte) []byte {
	dst = redcon.AppendArray(dst, 4)
	dst = redcon.AppendBulkString(dst, CmdDXPull)
	dst = redcon.AppendBulkString(dst, p.Datacenter)
	dst = redcon.AppendBulk(dst, strconv.AppendUint(nil, uint64(p.WaitMs), 10))
	return redcon.AppendBulk(dst, p.positions())
}

// positions encodes the positions as one argument: a count, then slot,
// leader epoch, seq and the digest's count and sum of each, as uvarints.
func (p *DXPull) positions() []byte {
	b := binary.AppendUvarint(nil, uint64(len(p.Pos)))
	for _, x := range p.Pos {
		b = binary.AppendUvarint(b, uint64(x.Slot))
		b = binary.AppendUvarint(b, x.LeaderEpoch)
		b = binary.AppendUvarint(b, x.Seq)
		b = binary.AppendUvarint(b, x.Digest.Count)
		b = binary.AppendUvarint(b, x.Digest.Sum)
	}
	return b
}

// ParseDXPull parses DXPULL datacenter waitMs positions.
func ParseDXPull(args [][]byte) (*DXPull, error) {
	if len(args) != 4 {
		return nil, WrongArity(CmdDXPull)
	}
	p := &DXPull{Datacenter: string(args[1])}
	if err := CheckPlace("datacenter", p.Datacenter, false); err != nil {
		return nil, err
	}
	var err error
	if p.WaitMs, err = parseWaitMs(args[2]); err != nil {
		return nil, err
	}
	err = parsePositions(args[3], "xpull", func(slot int, r *reader) {
		p.Pos = append(p.Pos, XPullPos{Slot: slot, LeaderEpoch: r.uvarint(), Seq: r.uvarint(),
			Digest: Digest{Count: r.uvarint(), Sum: r.uvarint()}})
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Remote is one remote datacenter: its name and its meta addresses.
type Remote struct {
	Name  string
	Metas []string
}

// ParseRemotes parses --remote-datacenters: NAME=HOST:PORT[,HOST:PORT]
// [;NAME=...], "" for none. self is this cluster's datacenter, which
// may not be listed.
func ParseRemotes(spec, self string) ([]Remote, error) {
	var out []Remote
	seen := map[string]bool{}
	for part := range strings.SplitSeq(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, addrs, ok := strings.Cut(part, "=")
		if !ok {
			return nil, Errorf(ErrInvalid, "remote datacenter %q is not NAME=HOST:PORT[,HOST:PORT]", part)
		}
		if err := CheckPlace("datacenter", name, false); err != nil {
			return nil, err
		}
		if name == self {
			return nil, Errorf(ErrInvalid, "remote datacenter %q is this cluster's own", name)
		}
		if seen[name] {
			return nil, Errorf(ErrInvalid, "remote datacenter %q is listed twice", name)
		}
		seen[name] = true
		r := Remote{Name: name}
		for a := range strings.SplitSeq(addrs, ",") {
			a = strings.TrimSpace(a)
			if _, port, err := splitHostPort(a); err != nil || port == "" {
				return nil, Errorf(ErrInvalid, "remote datacenter %s: %q is not HOST:PORT", name, a)
			}
			r.Metas = append(r.Metas, a)
		}
		out = append(out, r)
	}
	return out, nil
}

// FormatRemotes is ParseRemotes' inverse.
func FormatRemotes(rs []Remote) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Name + "=" + strings.Join(r.Metas, ",")
	}
	return strings.Join(parts, ";")
}

func splitHostPort(a string) (host, port string, err error) {
	i := strings.LastIndexByte(a, ':')
	if i <= 0 || i == len(a)-1 {
		return "", "", Errorf(ErrInvalid, "no port")
	}
	return a[:i], a[i+1:], nil
}

// Scope is a client connection's view of publishers (SCOPE).
type Scope uint8

// The scopes, narrowest first. The zero value is the default.
const (
	ScopeDatacenter Scope = iota
	ScopeZone
	ScopeGlobal
)

// Scopes lists every scope.
var Scopes = [...]Scope{ScopeDatacenter, ScopeZone, ScopeGlobal}

func (s Scope) String() string {
	switch s {
	case ScopeZone:
		return "zone"
	case ScopeGlobal:
		return "global"
	}
	return "datacenter"
}

// ParseScope parses SCOPE zone|datacenter|global.
func ParseScope(args [][]byte) (Scope, error) {
	if len(args) != 2 {
		return 0, WrongArity(CmdScope)
	}
	switch strings.ToLower(string(args[1])) {
	case "zone":
		return ScopeZone, nil
	case "datacenter", "dc":
		return ScopeDatacenter, nil
	case "global":
		return ScopeGlobal, nil
	}
	return 0, Errorf(ErrInvalid, "scope %q is not zone, datacenter or global", Clip(args[1]))
}

// Sees says whether a view of scope s, from zone zone of datacenter dc,
// holds the publisher e.
func (s Scope) Sees(e *Entry, dc, zone string) bool {
	switch s {
	case ScopeGlobal:
		return true
	case ScopeZone:
		return e.DC == dc && e.Zone == zone
	}
	return e.DC == dc
}

// XRemote is one remote datacenter as a data node sees it (DXSTATS), for
// INFO, the metrics and registryctl.
type XRemote struct {
	Name  string   `json:"name"`
	Metas []string `json:"metas"`
	// HeardMs is the time since any of its nodes last answered, -1 for
	// never.
	HeardMs int64 `json:"heardMs"`
	// Publishers are its publishers held in the slots this node leads.
	Publishers int `json:"publishers"`
	// StaleMs is the longest time since a slot led here was last
	// current with it (0 while every one is).
	StaleMs int64 `json:"staleMs"`
	// Slots is, per slot led here, its sync state.
	Slots []XSlot `json:"slots,omitempty"`
}

// XSlot is one led slot's sync state with one remote datacenter.
type XSlot struct {
	Slot        int    `json:"slot"`
	Publishers  int    `json:"publishers"`
	LeaderEpoch uint64 `json:"leaderEpoch"`
	Seq         uint64 `json:"seq"`
	// LagMs is the time since the slot was last current with the remote
	// leader; -1 before the first answer.
	LagMs int64 `json:"lagMs"`
}
