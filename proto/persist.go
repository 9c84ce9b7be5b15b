package proto

import (
	"encoding/json"
	"strconv"
)

// PERSISTENT paths (DESIGN.md, "Paths"): their durable copy is in the
// meta group's log, the one store slotreg keeps on disk; each slot's
// leader holds them as publishers of the owner PersistentOwner, synced
// from meta, so reads, pushes, CHILDREN and prefix watches see them as
// any publisher. See docs/decisions.md.
const (
	OptPersistent = "persistent"

	// PersistentOwner is the session name data nodes give the
	// publishers they hold for PERSISTENT paths; no session has it.
	PersistentOwner = "__slotreg__:persistent"

	// MaxPersistent bounds the PERSISTENT paths of a cluster: they live
	// in the meta group's state, which every meta holds in memory.
	MaxPersistent = 100_000

	// CmdMPPut stores a PERSISTENT path in meta: MPPUT path value;
	// replies :rev.
	CmdMPPut = "mpput"
	// CmdMPDel removes one: MPDEL path; replies :rev, or :0 if there was
	// none.
	CmdMPDel = "mpdel"
	// CmdMPSlots lists the PERSISTENT paths of slots: MPSLOTS slot...;
	// replies PersistSlots as JSON.
	CmdMPSlots = "mpslots"
	// CmdDPSync asks a slot leader to bring the slot's PERSISTENT paths
	// up to meta revision rev and reply the version of a datum:
	// DPSYNC slot rev dataInfoId.
	CmdDPSync = "dpsync"
)

// PersistPath is a PERSISTENT path as meta lists it.
type PersistPath struct {
	Path  string `json:"path"`
	Value string `json:"value"`
	Rev   uint64 `json:"rev"`
}

// PersistSlots is MPSLOTS's reply: the revision the list is as of (every
// change up to it is in it) and each slot's paths.
type PersistSlots struct {
	Rev   uint64                `json:"rev"`
	Slots map[int][]PersistPath `json:"slots"`
}

// PathArgs is a command whose arguments are a path and, for MPPUT, a
// value.
type PathArgs struct {
	Cmd, Path, Value string
}

// Args builds the command.
func (p *PathArgs) Args() []any {
	if p.Cmd == CmdMPPut {
		return []any{p.Cmd, p.Path, p.Value}
	}
	return []any{p.Cmd, p.Path}
}

// ParseMPPut parses MPPUT path value.
func ParseMPPut(args [][]byte) (*PathArgs, error) {
	if err := arity(args, CmdMPPut, 3); err != nil {
		return nil, err
	}
	p := &PathArgs{Cmd: CmdMPPut, Path: string(args[1]), Value: string(args[2])}
	if _, _, err := SplitPath(p.Path); err != nil {
		return nil, err
	}
	if len(p.Value) > MaxDataLen {
		return nil, Errorf(ErrInvalid, "value is %d bytes, over the %d byte limit", len(p.Value), MaxDataLen)
	}
	return p, nil
}

// ParseMPDel parses MPDEL path.
func ParseMPDel(args [][]byte) (*PathArgs, error) {
	if err := arity(args, CmdMPDel, 2); err != nil {
		return nil, err
	}
	p := &PathArgs{Cmd: CmdMPDel, Path: string(args[1])}
	_, _, err := SplitPath(p.Path)
	return p, err
}

// MPSlots lists slots.
type MPSlots struct{ Slots []int }

// Args builds the command.
func (m *MPSlots) Args() []any {
	args := []any{CmdMPSlots}
	for _, s := range m.Slots {
		args = append(args, strconv.Itoa(s))
	}
	return args
}

// ParseMPSlots parses MPSLOTS [slot...]; with no slot, the reply is the
// revision alone.
func ParseMPSlots(args [][]byte) (*MPSlots, error) {
	m := &MPSlots{}
	for _, a := range args[1:] {
		s, err := parseSlot(a)
		if err != nil {
			return nil, err
		}
		m.Slots = append(m.Slots, s)
	}
	return m, nil
}

// ParsePersistSlots decodes MPSLOTS's reply.
func ParsePersistSlots(b []byte) (*PersistSlots, error) {
	var p PersistSlots
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, Errorf(ErrInvalid, "%s reply: %v", CmdMPSlots, err)
	}
	return &p, nil
}

// DPSync asks a slot leader to sync the slot's PERSISTENT paths.
type DPSync struct {
	Slot       int
	Rev        uint64
	DataInfoID string
}

// Args builds the command.
func (d *DPSync) Args() []any {
	return []any{CmdDPSync, strconv.Itoa(d.Slot), strconv.FormatUint(d.Rev, 10), d.DataInfoID}
}

// ParseDPSync parses DPSYNC slot rev dataInfoId.
func ParseDPSync(args [][]byte) (*DPSync, error) {
	if err := arity(args, CmdDPSync, 4); err != nil {
		return nil, err
	}
	d := &DPSync{DataInfoID: string(args[3])}
	var err error
	if d.Slot, err = parseSlot(args[1]); err != nil {
		return nil, err
	}
	if d.Rev, err = parseUint(args[2], "rev"); err != nil {
		return nil, err
	}
	return d, CheckKey(d.DataInfoID)
}
