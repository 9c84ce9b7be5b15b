package proto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/tidwall/redcon"
)

// Replication and reconciliation between data nodes and sessions.

// Inter-node commands for replication and reconciliation, served by data
// nodes.
const (
	CmdDPull      = "dpull"
	CmdDReconcile = "dreconcile"
	CmdDSync      = "dsync"
	CmdDAlive     = "dalive"
)

// DAlive is a session's word to a data node that it is alive, sent every
// heartbeat. A data node drops the connection-bound publishers of a
// session that left meta's list only once it has not heard from it for
// its grace either: a session cut off from meta alone keeps serving its
// clients, and their publishers stay. The reply is the data node's
// session grace in milliseconds (older nodes: +OK), which the session
// fences itself by (sessionserver/fence.go).
type DAlive struct {
	Session string
	// Reset says the session has closed every client connection after a
	// data node answered it ErrDropped: the node takes its writes again.
	Reset bool
}

// Args builds the command.
func (a *DAlive) Args() []any {
	if a.Reset {
		return []any{CmdDAlive, a.Session, "RESET"}
	}
	return []any{CmdDAlive, a.Session}
}

// ParseDAlive parses DALIVE session [RESET].
func ParseDAlive(args [][]byte) (*DAlive, error) {
	if len(args) != 2 && len(args) != 3 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDAlive)
	}
	a := &DAlive{Session: string(args[1])}
	if len(args) == 3 {
		if !strings.EqualFold(string(args[2]), "RESET") {
			return nil, Errorf(ErrInvalid, "%s: unknown option %q (want RESET)", CmdDAlive, args[2])
		}
		a.Reset = true
	}
	if err := checkNodeID(a.Session); err != nil {
		return nil, err
	}
	return a, nil
}

// ErrDropped is a data node refusing a session's write, sync or DALIVE
// because it dropped the session's connection-bound publishers (meta had
// evicted the session and it went unheard for the node's grace, as when
// it was paused) and the session has not yet said, by DALIVE RESET, that
// it closed its clients' connections. The detail is when the node
// dropped them (unix milliseconds), so the session fences once per drop.
var ErrDropped = errors.New("session dropped")

// OpTouch is a log-only op: the new leader of a slot raises every datum's
// version to the entry's, so subscribers converge on its state even where
// it lacks a change the old leader had pushed but not replicated.
const OpTouch OpType = 'T'

// The log-only ops of cross-datacenter sync: a slot's leader stores a
// remote datacenter's publisher (LogEntry.DC) or drops one, as that
// datacenter's leader of the slot said, and its followers replay them.
// They raise the datum's version here, so every view of it moves on.
const (
	OpRemotePut OpType = 'P'
	OpRemoteDel OpType = 'D'
	// OpRemoteDrop drops every publisher of LogEntry.DC in the slot
	// (--remote-expire), raising each of their datums to its version:
	// one entry, however many publishers.
	OpRemoteDrop OpType = 'X'
)

// LogEntry is one applied write in a slot's op-log. Seq is dense and
// rising within a slot; Version is the datum version the write produced
// (0 for a renew, which changes no datum).
type LogEntry struct {
	Seq     uint64
	Version uint64
	Session string
	Op      Op
	// DC is the source datacenter of an OpRemotePut or OpRemoteDel.
	DC string
}

// AppendBinary encodes e.
func (e *LogEntry) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = binary.AppendUvarint(dst, e.Version)
	dst = appendString(dst, e.Session)
	dst = append(dst, byte(e.Op.Type))
	dst = appendString(dst, e.Op.DataInfoID)
	dst = appendString(dst, e.Op.RegisterID)
	dst = appendString(dst, e.Op.Data)
	dst = appendString(dst, e.Op.ConnID)
	dst = binary.AppendUvarint(dst, uint64(e.Op.TTL))
	dst = appendString(dst, e.Op.Zone)
	return appendString(dst, e.DC)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	if r.err != nil {
		return ""
	}
	var s string
	s, r.b, r.err = readString(r.b)
	return s
}

func (r *reader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errors.New("short buffer")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) entry() LogEntry {
	e := LogEntry{Seq: r.uvarint(), Version: r.uvarint(), Session: r.str()}
	e.Op.Type = OpType(r.byte1())
	e.Op.DataInfoID = r.str()
	e.Op.RegisterID = r.str()
	e.Op.Data = r.str()
	e.Op.ConnID = r.str()
	ttl := r.uvarint()
	if ttl > 1<<31 && r.err == nil {
		r.err = errors.New("bad ttl")
	}
	e.Op.TTL = uint32(ttl)
	e.Op.Zone = r.str()
	e.DC = r.str()
	return e
}

// AppendEntries encodes a batch of entries: a count, then each entry.
func AppendEntries(dst []byte, es []LogEntry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	for i := range es {
		dst = es[i].AppendBinary(dst)
	}
	return dst
}

// ParseEntries decodes AppendEntries' output; it never panics.
func ParseEntries(b []byte) ([]LogEntry, error) {
	r := &reader{b: b}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(b)) {
		return nil, errors.New("entries: bad count")
	}
	out := make([]LogEntry, 0, min(n, 1024)) // n is untrusted until the entries parse
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, r.entry())
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("entries: %w", r.err)
	}
	return out, nil
}

// SnapPub is a publisher with everything a replica needs.
type SnapPub struct {
	RegisterID string
	Data       string
	Session    string
	Conn       string
	TTL        uint32
	RemainMs   uint64 // time left before a TTL publisher expires
	Zone       string
	DC         string // "" for a local publisher, else its source datacenter
}

// SnapDatum is one datum in a slot snapshot.
type SnapDatum struct {
	DataInfoID string
	Version    uint64
	Pubs       []SnapPub
}

// SlotSnapshot is a whole slot, sent to a follower that has fallen off the
// leader's op-log or follows a new leader.
type SlotSnapshot struct {
	LeaderEpoch uint64
	Seq         uint64
	Datums      []SnapDatum
}

// AppendBinary encodes s.
func (s *SlotSnapshot) AppendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, s.LeaderEpoch)
	dst = binary.AppendUvarint(dst, s.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(s.Datums)))
	for _, d := range s.Datums {
		dst = appendString(dst, d.DataInfoID)
		dst = binary.AppendUvarint(dst, d.Version)
		dst = binary.AppendUvarint(dst, uint64(len(d.Pubs)))
		for _, p := range d.Pubs {
			dst = appendString(dst, p.RegisterID)
			dst = appendString(dst, p.Data)
			dst = appendString(dst, p.Session)
			dst = appendString(dst, p.Conn)
			dst = binary.AppendUvarint(dst, uint64(p.TTL))
			dst = binary.AppendUvarint(dst, p.RemainMs)
			dst = appendString(dst, p.Zone)
			dst = appendString(dst, p.DC)
		}
	}
	return dst
}

// ParseSlotSnapshot decodes AppendBinary's output; it never panics.
func ParseSlotSnapshot(b []byte) (*SlotSnapshot, error) {
	r := &reader{b: b}
	s := &SlotSnapshot{LeaderEpoch: r.uvarint(), Seq: r.uvarint()}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(b)) {
		return nil, errors.New("snapshot: bad datum count")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		d := SnapDatum{DataInfoID: r.str(), Version: r.uvarint()}
		np := r.uvarint()
		if r.err == nil && np > uint64(len(r.b)) {
			r.err = errors.New("bad publisher count")
		}
		for j := uint64(0); j < np && r.err == nil; j++ {
			p := SnapPub{RegisterID: r.str(), Data: r.str(), Session: r.str(), Conn: r.str()}
			p.TTL = uint32(r.uvarint())
			p.RemainMs = r.uvarint()
			p.Zone, p.DC = r.str(), r.str()
			d.Pubs = append(d.Pubs, p)
		}
		s.Datums = append(s.Datums, d)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return nil, fmt.Errorf("snapshot: %w", r.err)
	}
	return s, nil
}

// PullPos is where a follower stands in one slot.
type PullPos struct {
	Slot        int
	LeaderEpoch uint64 // the leader epoch its copy follows; 0 for none
	Seq         uint64
}

// DPull is a follower's long poll for the op-logs of the slots it follows
// from one leader. The leader answers once any slot has news (lingering a
// moment so that one answer carries a batch), else after WaitMs. Each
// position also acknowledges what the follower has applied. The positions
// travel as one binary argument (a count, then slot, leaderEpoch and seq
// as uvarints), so a pull for 128 slots costs one argument, not 384. The
// reply holds one [slot, kind, leaderEpoch, blob] array per slot that has
// news: kind "log" (blob: AppendEntries) or "snap" (blob: a SlotSnapshot).
// A slot left out of the reply has nothing new, or is not led there.
type DPull struct {
	Follower string
	WaitMs   uint32
	Pos      []PullPos
}

// Pull reply kinds.
const (
	PullLog  = "log"
	PullSnap = "snap"
)

// AppendPositions encodes pull positions: a count, then each position.
func AppendPositions(dst []byte, ps []PullPos) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	for _, x := range ps {
		dst = binary.AppendUvarint(dst, uint64(x.Slot))
		dst = binary.AppendUvarint(dst, x.LeaderEpoch)
		dst = binary.AppendUvarint(dst, x.Seq)
	}
	return dst
}

// Args builds the command.
func (p *DPull) Args() []any {
	return []any{CmdDPull, p.Follower, strconv.FormatUint(uint64(p.WaitMs), 10), AppendPositions(nil, p.Pos)}
}

// AppendRESP appends the command as a RESP array (what Args would send).
func (p *DPull) AppendRESP(dst []byte) []byte {
	dst = redcon.AppendArray(dst, 4)
	dst = redcon.AppendBulkString(dst, CmdDPull)
	dst = redcon.AppendBulkString(dst, p.Follower)
	dst = redcon.AppendBulk(dst, strconv.AppendUint(nil, uint64(p.WaitMs), 10))
	return redcon.AppendBulk(dst, AppendPositions(nil, p.Pos))
}

// ParseDPull parses DPULL follower waitMs positions.
func ParseDPull(args [][]byte) (*DPull, error) {
	if len(args) != 4 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDPull)
	}
	p := &DPull{Follower: string(args[1])}
	if err := checkNodeID(p.Follower); err != nil {
		return nil, err
	}
	var err error
	if p.WaitMs, err = parseWaitMs(args[2]); err != nil {
		return nil, err
	}
	err = parsePositions(args[3], "pull", func(slot int, r *reader) {
		p.Pos = append(p.Pos, PullPos{Slot: slot, LeaderEpoch: r.uvarint(), Seq: r.uvarint()})
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// parseWaitMs parses a long poll's wait, 0..60000 ms.
func parseWaitMs(b []byte) (uint32, error) {
	w, err := parseUint(b, "waitMs")
	if err != nil || w > 60000 {
		return 0, Errorf(ErrInvalid, "waitMs must be 0..60000")
	}
	return uint32(w), nil
}

// parsePositions parses a long poll's positions: a count (at most 256),
// then per position its slot, each slot once, and what one reads from r.
func parsePositions(b []byte, what string, one func(slot int, r *reader)) error {
	r := &reader{b: b}
	n := r.uvarint()
	if r.err != nil || n > 256 {
		return Errorf(ErrInvalid, "bad %s positions: count", what)
	}
	var seen [256]bool
	for range n {
		s := r.uvarint()
		if r.err == nil && s >= 256 {
			return Errorf(ErrInvalid, "slot %d is not in 0..255", s)
		}
		if r.err == nil && seen[s] {
			return Errorf(ErrInvalid, "slot %d twice", s)
		}
		if r.err == nil {
			seen[s] = true
			one(int(s), r)
		}
		if r.err != nil {
			return Errorf(ErrInvalid, "bad %s positions: %v", what, r.err)
		}
	}
	if len(r.b) != 0 {
		return Errorf(ErrInvalid, "bad %s positions: trailing bytes", what)
	}
	return nil
}

func parseSlot(b []byte) (int, error) {
	s, err := strconv.Atoi(string(b))
	if err != nil || s < 0 || s >= 256 {
		return 0, Errorf(ErrInvalid, "slot %q is not in 0..255", b)
	}
	return s, nil
}

// Digest summarises a session's connection-bound publishers in one slot:
// their count and the wrapping sum of PubHash over them. Sums add and
// subtract as publishers come and go, so both sides keep it up to date for
// free and compare it in one round trip.
type Digest struct {
	Count uint64 `json:"count"`
	Sum   uint64 `json:"sum"`
}

// Add counts a publisher in.
func (d *Digest) Add(h uint64) { d.Count++; d.Sum += h }

// Sub counts a publisher out.
func (d *Digest) Sub(h uint64) { d.Count--; d.Sum -= h }

// PubHash is the hash a Digest sums: every field that makes two copies of
// a publisher differ.
func PubHash(dataInfoID, registerID, data, conn string) uint64 {
	var h xxhash.Digest
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	for _, s := range [...]string{dataInfoID, registerID, data, conn} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.WriteString(s)
	}
	return h.Sum64()
}

// SlotDigest is a Digest for one slot at the leader epoch it was sent to.
type SlotDigest struct {
	Slot        int
	LeaderEpoch uint64
	Digest
}

// DReconcile compares a session's digests with the leader's for some
// slots. The reply has one integer per slot: 1 equal, 0 different (the
// session then sends DSYNC), -1 the node does not lead the slot at that
// leader epoch. Stamp is when the digests were taken: a leader refuses
// the session's writes stamped before it in those slots (see Stamp), so
// that a batch the session gave up on before the slot changed leader
// cannot reach the new leader after what the session sent since.
type DReconcile struct {
	Session string
	Stamp   Stamp
	Slots   []SlotDigest
}

// dreconcileHead is how many arguments come before a DRECONCILE's slots.
const dreconcileHead = 3 + stampArgs

// Args builds the command.
func (r *DReconcile) Args() []any {
	a := make([]any, 0, dreconcileHead+4*len(r.Slots))
	a = append(a, CmdDReconcile, r.Session)
	a = r.Stamp.appendArgs(a)
	a = append(a, strconv.Itoa(len(r.Slots)))
	for _, s := range r.Slots {
		a = append(a, strconv.Itoa(s.Slot), strconv.FormatUint(s.LeaderEpoch, 10),
			strconv.FormatUint(s.Count, 10), strconv.FormatUint(s.Sum, 10))
	}
	return a
}

// ParseDReconcile parses DRECONCILE session run seq n [slot leaderEpoch count sum]...
func ParseDReconcile(args [][]byte) (*DReconcile, error) {
	if len(args) < dreconcileHead {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDReconcile)
	}
	r := &DReconcile{Session: string(args[1])}
	if err := checkNodeID(r.Session); err != nil {
		return nil, err
	}
	var err error
	if r.Stamp, err = parseStamp(args[2:]); err != nil {
		return nil, err
	}
	n, err := parseUint(args[4], "count")
	if err != nil || n > 256 || uint64(len(args)) != dreconcileHead+4*n {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDReconcile)
	}
	for i := 0; i < int(n); i++ {
		a := args[dreconcileHead+4*i:]
		var sd SlotDigest
		if sd.Slot, err = parseSlot(a[0]); err != nil {
			return nil, err
		}
		if sd.LeaderEpoch, err = parseUint(a[1], "leaderEpoch"); err != nil {
			return nil, err
		}
		if sd.Count, err = parseUint(a[2], "count"); err != nil {
			return nil, err
		}
		if sd.Sum, err = parseUint(a[3], "sum"); err != nil {
			return nil, err
		}
		r.Slots = append(r.Slots, sd)
	}
	return r, nil
}

// SyncPub is one connection-bound publisher in a DSYNC.
type SyncPub struct {
	DataInfoID string
	RegisterID string
	Data       string
	Conn       string
}

// DSync replaces a session's connection-bound publishers in one slot with
// the list it holds: the leader adds what is missing and removes what the
// session no longer has. The reply is the number of changes made. Stamp
// says when the list was taken (see Stamp).
type DSync struct {
	Session     string
	Zone        string
	Slot        int
	LeaderEpoch uint64
	Stamp       Stamp
	Pubs        []SyncPub
}

// dsyncHead is how many arguments come before a DSYNC's publishers.
const dsyncHead = 5 + stampArgs

// Args builds the command.
func (s *DSync) Args() []any {
	a := make([]any, 0, dsyncHead+4*len(s.Pubs))
	a = append(a, CmdDSync, s.Session, s.Zone, strconv.Itoa(s.Slot), strconv.FormatUint(s.LeaderEpoch, 10))
	a = s.Stamp.appendArgs(a)
	for _, p := range s.Pubs {
		a = append(a, p.DataInfoID, p.RegisterID, p.Data, p.Conn)
	}
	return a
}

// ParseDSync parses DSYNC session zone slot leaderEpoch run seq [id registerId data conn]...
func ParseDSync(args [][]byte) (*DSync, error) {
	if len(args) < dsyncHead || (len(args)-dsyncHead)%4 != 0 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDSync)
	}
	s := &DSync{Session: string(args[1]), Zone: string(args[2])}
	if err := checkNodeID(s.Session); err != nil {
		return nil, err
	}
	if err := CheckPlace("zone", s.Zone, true); err != nil {
		return nil, err
	}
	var err error
	if s.Slot, err = parseSlot(args[3]); err != nil {
		return nil, err
	}
	if s.LeaderEpoch, err = parseUint(args[4], "leaderEpoch"); err != nil {
		return nil, err
	}
	if s.Stamp, err = parseStamp(args[5:]); err != nil {
		return nil, err
	}
	for i := dsyncHead; i < len(args); i += 4 {
		p := SyncPub{DataInfoID: string(args[i]), RegisterID: string(args[i+1]), Data: string(args[i+2]), Conn: string(args[i+3])}
		if err := CheckKey(p.DataInfoID); err != nil {
			return nil, err
		}
		if err := CheckRegisterID(p.RegisterID); err != nil {
			return nil, err
		}
		if len(p.Data) > MaxDataLen {
			return nil, Errorf(ErrInvalid, "data is %d bytes, over the %d byte limit", len(p.Data), MaxDataLen)
		}
		if p.Conn == "" {
			return nil, Errorf(ErrInvalid, "publisher %q/%q has no connection", p.DataInfoID, p.RegisterID)
		}
		s.Pubs = append(s.Pubs, p)
	}
	return s, nil
}
