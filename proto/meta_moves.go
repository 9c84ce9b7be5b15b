package proto

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Slot moves. A move changes a slot's leader without losing data: meta
// marks the target on the slot (MOVESLOT, REBALANCE or its own
// auto-rebalance), the old data leader hands the slot over once the target
// has caught up and then reports it with HANDOFF, and meta switches the
// leader. Replies to HANDOFF, MOVESLOT and CANCELMOVE are the new table
// epoch as an integer; a refusal is an ERR reply with the reason.

// Handoff is the data leader From reporting that it handed Slot over to
// To, the move's target, while it led the slot at LeaderEpoch. Meta
// switches the leader only if its table still says exactly that.
type Handoff struct {
	Slot        int
	From, To    string // node IDs: the leader handing over, the target
	LeaderEpoch uint64 // the slot's leader epoch under From
}

// Args builds the command.
func (h *Handoff) Args() []any {
	return []any{CmdHandoff, strconv.Itoa(h.Slot), h.From, h.To, strconv.FormatUint(h.LeaderEpoch, 10)}
}

// ParseHandoff parses HANDOFF slot from to leaderEpoch.
func ParseHandoff(args [][]byte) (*Handoff, error) {
	if err := arity(args, CmdHandoff, 5); err != nil {
		return nil, err
	}
	h := &Handoff{From: string(args[2]), To: string(args[3])}
	var err error
	if h.Slot, err = parseMetaSlot(args[1]); err != nil {
		return nil, err
	}
	if err := checkNodeID(h.From); err != nil {
		return nil, err
	}
	if err := checkNodeID(h.To); err != nil {
		return nil, err
	}
	if h.From == h.To {
		return nil, Errorf(ErrInvalid, "handoff of slot %d from %s to itself", h.Slot, h.From)
	}
	if h.LeaderEpoch, err = parseUint(args[4], "leader epoch"); err != nil {
		return nil, err
	}
	return h, nil
}

// MoveSlot asks meta to start moving Slot's leadership to the data node To.
type MoveSlot struct {
	Slot int
	To   string
}

// Args builds the command.
func (m *MoveSlot) Args() []any { return []any{CmdMoveSlot, strconv.Itoa(m.Slot), m.To} }

// ParseMoveSlot parses MOVESLOT slot to.
func ParseMoveSlot(args [][]byte) (*MoveSlot, error) {
	if err := arity(args, CmdMoveSlot, 3); err != nil {
		return nil, err
	}
	m := &MoveSlot{To: string(args[2])}
	var err error
	if m.Slot, err = parseMetaSlot(args[1]); err != nil {
		return nil, err
	}
	return m, checkNodeID(m.To)
}

// CancelMove asks meta to cancel Slot's move in progress.
type CancelMove struct{ Slot int }

// Args builds the command.
func (c *CancelMove) Args() []any { return []any{CmdCancelMove, strconv.Itoa(c.Slot)} }

// ParseCancelMove parses CANCELMOVE slot.
func ParseCancelMove(args [][]byte) (*CancelMove, error) {
	if err := arity(args, CmdCancelMove, 2); err != nil {
		return nil, err
	}
	s, err := parseMetaSlot(args[1])
	if err != nil {
		return nil, err
	}
	return &CancelMove{Slot: s}, nil
}

// Rebalance asks meta for the leader moves that even out the leaders, at
// most MaxMoves of them (0: no limit), and unless DryRun, to start them.
// The reply is a RebalanceReply as a JSON bulk.
type Rebalance struct {
	MaxMoves int
	DryRun   bool
}

// maxMovesLimit bounds MaxMoves; no plan can have more moves than slots.
const maxMovesLimit = metaSlotCount

// Args builds the command.
func (r *Rebalance) Args() []any {
	dry := "0"
	if r.DryRun {
		dry = "1"
	}
	return []any{CmdRebalance, strconv.Itoa(r.MaxMoves), dry}
}

// ParseRebalance parses REBALANCE maxMoves dryRun, dryRun being 0 or 1.
func ParseRebalance(args [][]byte) (*Rebalance, error) {
	if err := arity(args, CmdRebalance, 3); err != nil {
		return nil, err
	}
	n, err := parseUint(args[1], "max moves")
	if err != nil {
		return nil, err
	}
	if n > maxMovesLimit {
		return nil, Errorf(ErrInvalid, "max moves %d is over %d", n, maxMovesLimit)
	}
	r := &Rebalance{MaxMoves: int(n)}
	switch string(args[2]) {
	case "0":
	case "1":
		r.DryRun = true
	default:
		return nil, Errorf(ErrInvalid, "dry run is %q, want 0 or 1", args[2])
	}
	return r, nil
}

// SlotMove is one leader move in a RebalanceReply (slot.Move's JSON form).
type SlotMove struct {
	Slot int    `json:"slot"`
	From string `json:"from"`
	To   string `json:"to"`
}

// RebalanceReply is the JSON answer to REBALANCE: the table epoch after
// the request, the moves (planned on a dry run, else the ones started) and
// whether any move was started.
type RebalanceReply struct {
	Epoch   uint64     `json:"epoch"`
	Moves   []SlotMove `json:"moves"`
	Started bool       `json:"started"`
}

// AppendJSON appends the reply's JSON to dst; Moves is always an array,
// never null.
func (r *RebalanceReply) AppendJSON(dst []byte) []byte {
	out := *r
	if out.Moves == nil {
		out.Moves = []SlotMove{}
	}
	b, err := json.Marshal(&out)
	if err != nil {
		// Only ints, bools and strings: Marshal cannot fail.
		panic(fmt.Sprintf("proto: encode rebalance reply: %v", err))
	}
	return append(dst, b...)
}

// ParseRebalanceReply parses the bulk a client received (string or []byte).
func ParseRebalanceReply(v any) (*RebalanceReply, error) {
	b, err := replyBulk(v, "rebalance reply")
	if err != nil || b == nil {
		return nil, fmt.Errorf("rebalance reply: want a JSON bulk, got %T", v)
	}
	r := &RebalanceReply{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("rebalance reply: %w", err)
	}
	return r, nil
}

// metaSlotCount is the number of slots (slot.Count). proto imports nothing
// from the rest of the module; a test checks the two agree.
const metaSlotCount = 256

// parseMetaSlot reads a slot number, 0..255.
func parseMetaSlot(b []byte) (int, error) {
	s, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil || s >= metaSlotCount {
		return 0, Errorf(ErrInvalid, "slot %q is not in 0..%d", b, metaSlotCount-1)
	}
	return int(s), nil
}
