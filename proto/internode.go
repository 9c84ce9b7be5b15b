package proto

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// Every inter-node command struct has Args, which builds the argument list
// (command name first) for a RESP client such as go-redis's Do, and a
// ParseX that takes the arguments as a RESP server received them (command
// name first) and validates them.

// Heartbeat is a data or session node's lease renewal with the meta leader.
// The reply (HeartbeatReply) carries the table when the node's Epoch is
// behind, and the session list when its MembersEpoch is.
type Heartbeat struct {
	Kind   string // KindData or KindSession
	NodeID string
	Addr   string // the node's inter-node (data) or client (session) address
	Epoch  uint64 // the table epoch the node has
	// Datacenter is the node's; meta refuses a node of another one. Zone
	// is a session's ("" for a data node). Both are "" in the older
	// forms.
	Datacenter, Zone string
	// MembersEpoch is the epoch of the session list the node has, 0 for
	// none.
	MembersEpoch uint64
	// Progress is, on a data node, the op-log sequence it has applied for
	// each slot it follows; meta promotes the most advanced follower when
	// a leader departs. nil (never an empty map after parsing) for none.
	Progress map[int]uint64
}

// Args builds the command, always in the 9-argument form.
func (h *Heartbeat) Args() []any {
	return []any{CmdHeartbeat, h.Kind, h.NodeID, h.Addr, strconv.FormatUint(h.Epoch, 10),
		strconv.FormatUint(h.MembersEpoch, 10), FormatProgress(h.Progress), h.Datacenter, h.Zone}
}

// ParseHeartbeat parses HEARTBEAT kind nodeId addr epoch [membersEpoch
// progress [datacenter zone]]. The 5-argument form is what nodes built
// before the session list and progress existed send; it parses with
// MembersEpoch 0 and no Progress. The 7-argument form predates
// datacenters.
func ParseHeartbeat(args [][]byte) (*Heartbeat, error) {
	if len(args) != 5 && len(args) != 7 && len(args) != 9 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdHeartbeat)
	}
	h := &Heartbeat{Kind: string(args[1]), NodeID: string(args[2]), Addr: string(args[3])}
	if err := checkKind(h.Kind); err != nil {
		return nil, err
	}
	if err := checkNodeID(h.NodeID); err != nil {
		return nil, err
	}
	var err error
	if h.Epoch, err = parseUint(args[4], "epoch"); err != nil {
		return nil, err
	}
	if len(args) == 5 {
		return h, nil
	}
	if h.MembersEpoch, err = parseUint(args[5], "members epoch"); err != nil {
		return nil, err
	}
	if h.Progress, err = ParseProgress(string(args[6])); err != nil {
		return nil, err
	}
	if len(args) == 7 {
		return h, nil
	}
	h.Datacenter, h.Zone = string(args[7]), string(args[8])
	if err := CheckPlace("datacenter", h.Datacenter, true); err != nil {
		return nil, err
	}
	if err := CheckPlace("zone", h.Zone, true); err != nil {
		return nil, err
	}
	return h, nil
}

// FormatProgress encodes per-slot sequences compactly for a heartbeat:
// "slot:seq,slot:seq", sorted by slot, "" for none.
func FormatProgress(p map[int]uint64) string {
	if len(p) == 0 {
		return ""
	}
	slots := make([]int, 0, len(p))
	for s := range p {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	b := make([]byte, 0, len(slots)*10)
	for i, s := range slots {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(s), 10)
		b = append(b, ':')
		b = strconv.AppendUint(b, p[s], 10)
	}
	return string(b)
}

// ParseProgress is FormatProgress's inverse. It is strict, because the
// values steer failover: every slot must be in 0..255 and appear once, and
// "" is the only encoding of none (it parses to nil). Slots need not be
// sorted.
func ParseProgress(s string) (map[int]uint64, error) {
	if s == "" {
		return nil, nil
	}
	n := strings.Count(s, ",") + 1
	if n > metaSlotCount {
		return nil, Errorf(ErrInvalid, "progress lists %d slots, more than the %d there are", n, metaSlotCount)
	}
	p := make(map[int]uint64, n)
	for pair := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(pair, ":")
		if !ok {
			return nil, Errorf(ErrInvalid, "progress entry %q is not slot:seq", pair)
		}
		sl, err := strconv.ParseUint(k, 10, 16)
		if err != nil || sl >= metaSlotCount || (len(k) > 1 && k[0] == '0') {
			return nil, Errorf(ErrInvalid, "progress entry %q: slot is not in 0..%d", pair, metaSlotCount-1)
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, Errorf(ErrInvalid, "progress entry %q: sequence is not an unsigned integer", pair)
		}
		if _, dup := p[int(sl)]; dup {
			return nil, Errorf(ErrInvalid, "progress lists slot %d twice", sl)
		}
		p[int(sl)] = seq
	}
	return p, nil
}

// Leave is a node leaving the cluster on purpose, so meta need not wait for
// its lease to lapse.
type Leave struct {
	Kind   string
	NodeID string
}

// Args builds the command.
func (l *Leave) Args() []any { return []any{CmdLeave, l.Kind, l.NodeID} }

// ParseLeave parses LEAVE kind nodeId.
func ParseLeave(args [][]byte) (*Leave, error) {
	if err := arity(args, CmdLeave, 3); err != nil {
		return nil, err
	}
	l := &Leave{Kind: string(args[1]), NodeID: string(args[2])}
	if err := checkKind(l.Kind); err != nil {
		return nil, err
	}
	return l, checkNodeID(l.NodeID)
}

// Suspect reports that a data node refused a connection from the
// reporter: its process is likely gone. Meta checks for itself (it dials
// the node) and evicts it at once if the node refuses meta too, instead
// of waiting for its lease to lapse; a node that accepts the dial (it is
// alive, perhaps paused) or does not answer (cut off) is left to its
// lease. The reply is 1 when the node is, or already was, out of the
// cluster, else 0.
type Suspect struct {
	Kind     string // of the suspected node: KindData
	NodeID   string
	Reporter string // the reporting node's ID, for the log
}

// Args builds the command.
func (s *Suspect) Args() []any { return []any{CmdSuspect, s.Kind, s.NodeID, s.Reporter} }

// ParseSuspect parses SUSPECT kind nodeId reporter.
func ParseSuspect(args [][]byte) (*Suspect, error) {
	if err := arity(args, CmdSuspect, 4); err != nil {
		return nil, err
	}
	s := &Suspect{Kind: string(args[1]), NodeID: string(args[2]), Reporter: string(args[3])}
	if s.Kind != KindData {
		return nil, Errorf(ErrInvalid, "suspect: only %s nodes can be suspected, not %q", KindData, s.Kind)
	}
	if err := checkNodeID(s.NodeID); err != nil {
		return nil, err
	}
	return s, checkNodeID(s.Reporter)
}

// OpType says what a write op does.
type OpType byte

// The write ops a session forwards to a slot leader.
const (
	OpRegister   OpType = 'R'
	OpUnregister OpType = 'U' // with ConnID set: only if that connection owns it
	OpRenew      OpType = 'N'
)

// Op is one write for one publisher.
type Op struct {
	Type       OpType
	DataInfoID string
	RegisterID string
	Data       string // OpRegister only
	ConnID     string // the owning client connection, "" for none
	TTL        uint32 // seconds; 0 binds the publisher to its connection
	// Persistent marks a client's PUT ... PERSISTENT, and DEL (which may
	// remove a PERSISTENT path): the session takes them to meta first.
	// It never travels between nodes.
	Persistent bool
	// Zone is the zone of the session that took the write; it travels
	// once per DWRITE and DSYNC, not per op.
	Zone string
}

const opArgs = 6

// DWrite is a batch of ops from one session to one data node, tagged with
// the table epoch the session routed by and the session's stamp for the
// batch. The reply is an array with one element per op: an integer (the
// version for OpRegister, 1/0 for the others) or an error (NOTOWNER for a
// slot the node does not lead).
type DWrite struct {
	Epoch     uint64
	SessionID string
	Zone      string // the session's zone, every op's
	Stamp     Stamp
	Ops       []Op
}

// Stamp orders what one session sends its slot leaders: its write batches
// and its DSYNCs. Run is drawn at random when the session starts; Seq
// counts up within the run. A leader refuses a DSYNC stamped before a
// write of the same run it has already applied to the slot: the sync's
// list was taken before that write, and applying it would undo the write.
type Stamp struct {
	Run, Seq uint64
}

// Before reports whether s was stamped before o in the same run.
func (s Stamp) Before(o Stamp) bool { return s.Run == o.Run && s.Seq < o.Seq }

// stampArgs is how many arguments a Stamp takes on the wire.
const stampArgs = 2

func (s Stamp) appendArgs(a []any) []any {
	return append(a, strconv.FormatUint(s.Run, 10), strconv.FormatUint(s.Seq, 10))
}

func (s Stamp) appendRESP(dst []byte) []byte {
	var num [20]byte
	dst = redcon.AppendBulk(dst, strconv.AppendUint(num[:0], s.Run, 10))
	return redcon.AppendBulk(dst, strconv.AppendUint(num[:0], s.Seq, 10))
}

func parseStamp(args [][]byte) (s Stamp, err error) {
	if s.Run, err = parseUint(args[0], "run"); err != nil {
		return s, err
	}
	s.Seq, err = parseUint(args[1], "seq")
	return s, err
}

// Args builds the command.
func (d *DWrite) Args() []any {
	a := make([]any, 0, dwriteHead+opArgs*len(d.Ops))
	a = append(a, CmdDWrite, strconv.FormatUint(d.Epoch, 10), d.SessionID, d.Zone)
	a = d.Stamp.appendArgs(a)
	for i := range d.Ops {
		o := &d.Ops[i]
		a = append(a, string(rune(o.Type)), o.DataInfoID, o.RegisterID, o.Data, o.ConnID,
			strconv.FormatUint(uint64(o.TTL), 10))
	}
	return a
}

// AppendRESP appends the command as a RESP array, the same bytes a RESP
// client would send for Args(), without boxing every argument.
func (d *DWrite) AppendRESP(dst []byte) []byte {
	dst = redcon.AppendArray(dst, dwriteHead+opArgs*len(d.Ops))
	dst = redcon.AppendBulkString(dst, CmdDWrite)
	var num [20]byte
	dst = redcon.AppendBulk(dst, strconv.AppendUint(num[:0], d.Epoch, 10))
	dst = redcon.AppendBulkString(dst, d.SessionID)
	dst = redcon.AppendBulkString(dst, d.Zone)
	dst = d.Stamp.appendRESP(dst)
	for i := range d.Ops {
		o := &d.Ops[i]
		dst = redcon.AppendBulk(dst, []byte{byte(o.Type)})
		dst = redcon.AppendBulkString(dst, o.DataInfoID)
		dst = redcon.AppendBulkString(dst, o.RegisterID)
		dst = redcon.AppendBulkString(dst, o.Data)
		dst = redcon.AppendBulkString(dst, o.ConnID)
		dst = redcon.AppendBulk(dst, strconv.AppendUint(num[:0], uint64(o.TTL), 10))
	}
	return dst
}

// dwriteHead is how many arguments come before a DWRITE's ops: the
// command, the epoch, the session, its zone and its stamp.
const dwriteHead = 4 + stampArgs

// ParseDWrite parses DWRITE epoch sessionId zone run seq [type id registerId data connId ttl]...
func ParseDWrite(args [][]byte) (*DWrite, error) {
	if len(args) < dwriteHead || (len(args)-dwriteHead)%opArgs != 0 {
		return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdDWrite)
	}
	d := &DWrite{SessionID: string(args[2]), Zone: string(args[3])}
	var err error
	if d.Epoch, err = parseUint(args[1], "epoch"); err != nil {
		return nil, err
	}
	if err := checkNodeID(d.SessionID); err != nil {
		return nil, err
	}
	if err := CheckPlace("zone", d.Zone, true); err != nil {
		return nil, err
	}
	if d.Stamp, err = parseStamp(args[4:]); err != nil {
		return nil, err
	}
	d.Ops = make([]Op, (len(args)-dwriteHead)/opArgs)
	for i := range d.Ops {
		a := args[dwriteHead+i*opArgs:]
		o := &d.Ops[i]
		if len(a[0]) != 1 {
			return nil, Errorf(ErrInvalid, "op %d: bad type %q", i, a[0])
		}
		o.Type = OpType(a[0][0])
		switch o.Type {
		case OpRegister, OpUnregister, OpRenew:
		default:
			return nil, Errorf(ErrInvalid, "op %d: bad type %q", i, a[0])
		}
		o.DataInfoID, o.RegisterID, o.Data, o.ConnID, o.Zone = string(a[1]), string(a[2]), string(a[3]), string(a[4]), d.Zone
		if err := CheckKey(o.DataInfoID); err != nil {
			return nil, err
		}
		if err := CheckRegisterID(o.RegisterID); err != nil {
			return nil, err
		}
		if len(o.Data) > MaxDataLen {
			return nil, Errorf(ErrInvalid, "data is %d bytes, over the %d byte limit", len(o.Data), MaxDataLen)
		}
		ttl, err := parseUint(a[5], "ttl")
		if err != nil || ttl > 1<<31 {
			return nil, Errorf(ErrInvalid, "op %d: bad ttl %q", i, a[5])
		}
		o.TTL = uint32(ttl)
	}
	return d, nil
}

// DLookup asks a slot leader for a datum. The reply is the datum in binary
// form (Datum.AppendBinary), an empty datum if there is none.
type DLookup struct {
	Epoch      uint64
	DataInfoID string
}

// Args builds the command.
func (l *DLookup) Args() []any {
	return []any{CmdDLookup, strconv.FormatUint(l.Epoch, 10), l.DataInfoID}
}

// ParseDLookup parses DLOOKUP epoch dataInfoId.
func ParseDLookup(args [][]byte) (*DLookup, error) {
	if err := arity(args, CmdDLookup, 3); err != nil {
		return nil, err
	}
	l := &DLookup{DataInfoID: string(args[2])}
	var err error
	if l.Epoch, err = parseUint(args[1], "epoch"); err != nil {
		return nil, err
	}
	return l, CheckKey(l.DataInfoID)
}

// CheckKey validates a dataInfoId: 1..MaxKeyLen bytes.
func CheckKey(id string) error {
	if len(id) == 0 {
		return Errorf(ErrInvalid, "empty dataInfoId")
	}
	if len(id) > MaxKeyLen {
		return Errorf(ErrInvalid, "dataInfoId is %d bytes, over the %d byte limit", len(id), MaxKeyLen)
	}
	return nil
}

// CheckRegisterID validates a registerId, held to the same limit as keys.
func CheckRegisterID(id string) error {
	if len(id) == 0 {
		return Errorf(ErrInvalid, "empty registerId")
	}
	if len(id) > MaxKeyLen {
		return Errorf(ErrInvalid, "registerId is %d bytes, over the %d byte limit", len(id), MaxKeyLen)
	}
	return nil
}

func arity(args [][]byte, name string, n int) error {
	if len(args) != n {
		return Errorf(ErrInvalid, "wrong number of arguments for '%s' command", name)
	}
	return nil
}

func parseUint(b []byte, what string) (uint64, error) {
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, Errorf(ErrInvalid, "%s is not an unsigned integer: %q", what, b)
	}
	return v, nil
}

func checkKind(k string) error {
	switch k {
	case KindData, KindSession:
		return nil
	}
	return Errorf(ErrInvalid, "unknown node kind %q (want %s or %s)", k, KindData, KindSession)
}

func checkNodeID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n") {
		return Errorf(ErrInvalid, "bad node id %q", id)
	}
	return nil
}

// ArgsBytes turns an Args() list into what a RESP server hands a parser;
// tests and in-process callers use it.
func ArgsBytes(a []any) [][]byte {
	out := make([][]byte, len(a))
	for i, v := range a {
		switch v := v.(type) {
		case []byte:
			out[i] = v
		case string:
			out[i] = []byte(v)
		default:
			out[i] = []byte(fmt.Sprint(v))
		}
	}
	return out
}

// CheckPlace checks a datacenter or zone name (what says which): 1..64
// bytes of letters, digits, '-', '_' and '.', or empty where empty is
// allowed.
func CheckPlace(what, name string, empty bool) error {
	if name == "" {
		if empty {
			return nil
		}
		return Errorf(ErrInvalid, "%s name is empty", what)
	}
	if len(name) > 64 {
		return Errorf(ErrInvalid, "%s name is %d bytes, over 64", what, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return Errorf(ErrInvalid, "%s name %q may hold only letters, digits, '-', '_' and '.'", what, name)
		}
	}
	return nil
}

// TableWait asks the meta leader to answer as soon as its table epoch or
// members epoch differs from the ones given, or after WaitMs. A data or
// session node keeps one open so that a change reaches it at once rather
// than at its next heartbeat; the reply only says that there is news,
// and the node's next heartbeat fetches it.
type TableWait struct {
	Epoch, MembersEpoch uint64
	WaitMs              uint32 // at most 60000, as every long poll's
}

// Args builds the command.
func (w *TableWait) Args() []any {
	return []any{CmdTableWait, strconv.FormatUint(w.Epoch, 10), strconv.FormatUint(w.MembersEpoch, 10), strconv.FormatUint(uint64(w.WaitMs), 10)}
}

// ParseTableWait parses TABLEWAIT epoch membersEpoch waitMs.
func ParseTableWait(args [][]byte) (*TableWait, error) {
	if err := arity(args, CmdTableWait, 4); err != nil {
		return nil, err
	}
	w := &TableWait{}
	var err error
	if w.Epoch, err = parseUint(args[1], "epoch"); err != nil {
		return nil, err
	}
	if w.MembersEpoch, err = parseUint(args[2], "members epoch"); err != nil {
		return nil, err
	}
	if w.WaitMs, err = parseWaitMs(args[3]); err != nil {
		return nil, err
	}
	return w, nil
}

// AppendTableWaitReply appends TABLEWAIT's reply: the meta leader's
// table epoch and members epoch, as a two-integer array.
func AppendTableWaitReply(b []byte, epoch, membersEpoch uint64) []byte {
	b = redcon.AppendArray(b, 2)
	b = redcon.AppendUint(b, epoch)
	return redcon.AppendUint(b, membersEpoch)
}

// ParseTableWaitReply decodes a TABLEWAIT reply as go-redis returns it.
func ParseTableWaitReply(v any) (epoch, membersEpoch uint64, err error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return 0, 0, fmt.Errorf("%s reply: want an array of 2 integers, got %T %v", CmdTableWait, v, v)
	}
	if epoch, err = replyUint(a[0], "epoch"); err != nil {
		return 0, 0, fmt.Errorf("%s reply: %w", CmdTableWait, err)
	}
	if membersEpoch, err = replyUint(a[1], "members epoch"); err != nil {
		return 0, 0, fmt.Errorf("%s reply: %w", CmdTableWait, err)
	}
	return epoch, membersEpoch, nil
}
