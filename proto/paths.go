package proto

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Paths (DESIGN.md, "Paths"): a dataInfoId that starts with "/" names a
// node of a tree. The path /a/b/c is the publisher with registerId c under
// dataInfoId /a/b (and /a the registerId a under "/"), so the slots,
// replication, failover and migration carry paths as they carry any
// publisher, and REGISTER /a/b c v and PUT /a/b/c v are the same write.

// Path commands.
const (
	CmdPut          = "put"
	CmdGet          = "get"
	CmdDel          = "del"
	CmdExists       = "exists"
	CmdChildren     = "children"
	CmdPSubscribe   = "psubscribe"
	CmdPUnsubscribe = "punsubscribe"

	OptEphemeral = "ephemeral"

	// MaxPathLen bounds a path, as a dataInfoId is bounded.
	MaxPathLen = 512
)

// Push kinds of prefix watches (Redis pub/sub framing).
const (
	PushPSubscribe   = "psubscribe"
	PushPUnsubscribe = "punsubscribe"
	PushPMessage     = "pmessage"
)

// CheckPath validates a path: it starts with "/", has no empty segment,
// no trailing "/" (but "/" itself, the root, is a path) and is at most
// MaxPathLen bytes.
func CheckPath(path string) error {
	if !strings.HasPrefix(path, "/") {
		return Errorf(ErrInvalid, "a path starts with /, got %q", Clip([]byte(path)))
	}
	if len(path) > MaxPathLen {
		return Errorf(ErrInvalid, "path is %d bytes, over the %d byte limit", len(path), MaxPathLen)
	}
	if path != "/" && (strings.HasSuffix(path, "/") || strings.Contains(path, "//")) {
		return Errorf(ErrInvalid, "path %q has an empty segment (a trailing / or //)", Clip([]byte(path)))
	}
	return nil
}

// SplitPath splits a path into its parent's dataInfoId and its last
// segment: /a/b/c into /a/b and c, /a into / and a. A path starts with
// "/", has no empty segment and no trailing "/"; "/" itself has no
// parent and is refused.
func SplitPath(path string) (parent, name string, err error) {
	if err := CheckPath(path); err != nil {
		return "", "", err
	}
	if path == "/" {
		return "", "", Errorf(ErrInvalid, "the root / holds no value: name a path under it")
	}
	i := strings.LastIndexByte(path, '/')
	parent, name = path[:i], path[i+1:]
	if parent == "" {
		parent = "/"
	}
	return parent, name, nil
}

// pathOp fills op's dataInfoId and registerId from a path, within the
// client limits.
func pathOp(op *Op, path []byte, lim *ClientLimits) error {
	parent, name, err := SplitPath(string(path))
	if err != nil {
		return err
	}
	op.DataInfoID, op.RegisterID = parent, name
	if err := lim.CheckKey(KindDataInfoID, parent); err != nil {
		return err
	}
	return lim.CheckKey(KindRegisterID, name)
}

// ParsePut parses PUT path value [EPHEMERAL | PERSISTENT | TTL seconds]:
// a REGISTER of the path's last segment under its parent. EPHEMERAL, the
// default, binds the value to the connection, as REGISTER does.
func ParsePut(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpRegister}
	switch {
	case len(args) == 3:
	case len(args) == 4 && strings.EqualFold(string(args[3]), OptEphemeral):
	case len(args) == 4 && strings.EqualFold(string(args[3]), OptPersistent):
		op.Persistent = true
	case len(args) == 5 && strings.EqualFold(string(args[3]), OptTTL):
		ttl, err := parseTTL(args[4])
		if err != nil {
			return op, err
		}
		op.TTL = ttl
	case len(args) == 4 || len(args) == 5:
		return op, Errorf(ErrInvalid, "syntax error: expected EPHEMERAL, PERSISTENT or TTL <seconds>, got %q", Clip(args[3]))
	default:
		return op, WrongArity(CmdPut)
	}
	op.Data = string(args[2])
	if len(op.Data) > lim.MaxDataSize {
		return op, LimitError(LimitDataSize, lim.MaxDataSize, fmt.Sprintf("value is %d bytes", len(op.Data)))
	}
	return op, pathOp(&op, args[1], lim)
}

// ParseDel parses DEL path: an UNREGISTER of the path, whoever holds it,
// PERSISTENT or not.
func ParseDel(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpUnregister, Persistent: true}
	if len(args) != 2 {
		return op, WrongArity(CmdDel)
	}
	return op, pathOp(&op, args[1], lim)
}

// Get is GET path: the path's parent and last segment.
type Get struct{ Parent, Name string }

// ParseGet parses GET path.
func ParseGet(args [][]byte, lim *ClientLimits) (*Get, error) {
	if len(args) != 2 {
		return nil, WrongArity(CmdGet)
	}
	var op Op
	if err := pathOp(&op, args[1], lim); err != nil {
		return nil, err
	}
	return &Get{Parent: op.DataInfoID, Name: op.RegisterID}, nil
}

// JoinPath is SplitPath's inverse: the path of registerId name under the
// dataInfoId parent.
func JoinPath(parent, name string) string {
	if parent == "/" {
		return "/" + name
	}
	return parent + "/" + name
}

// ChildPrefix is what the dataInfoIds below path start with: "/" for the
// root, path+"/" for any other.
func ChildPrefix(path string) string {
	if path == "/" {
		return path
	}
	return path + "/"
}

// ParsePathArg parses a command whose one argument is a path, the root
// included (EXISTS, CHILDREN).
func ParsePathArg(name string) func(args [][]byte) (string, error) {
	return func(args [][]byte) (string, error) {
		if len(args) != 2 {
			return "", WrongArity(name)
		}
		p := string(args[1])
		return p, CheckPath(p)
	}
}

// ParsePattern parses a PSUBSCRIBE pattern: a path prefix followed by *
// ("/nodes/*", "/nodes/wor*", "/*"). It returns the prefix.
func ParsePattern(pattern []byte) (string, error) {
	p := string(pattern)
	prefix, star := strings.CutSuffix(p, "*")
	if !star || !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "*?[]\\") {
		return "", Errorf(ErrInvalid, "PSUBSCRIBE takes a path prefix followed by *, as /nodes/*; got %q", Clip(pattern))
	}
	if len(prefix) > MaxPathLen {
		return "", Errorf(ErrInvalid, "prefix is %d bytes, over the %d byte limit", len(prefix), MaxPathLen)
	}
	if strings.Contains(prefix, "//") {
		return "", Errorf(ErrInvalid, "prefix %q has an empty segment (//)", Clip(pattern))
	}
	return prefix, nil
}

// PrefixDir is the dataInfoId whose registerIds can complete prefix to a
// path: "/nodes" for "/nodes/wor" and for "/nodes/", "/" for "/n".
func PrefixDir(prefix string) string {
	i := strings.LastIndexByte(prefix, '/')
	if i <= 0 {
		return "/"
	}
	return prefix[:i]
}

// PrefixHolds says whether the dataInfoId id can hold a path that starts
// with prefix: id starts with prefix, or is the prefix's directory.
func PrefixHolds(prefix, id string) bool {
	return strings.HasPrefix(id, prefix) || id == PrefixDir(prefix)
}

// DChildren asks a data node for the children of a path in the slots it
// leads: the registerIds of the path's own datum and the first segment
// of every dataInfoId below it, counting only datums with publishers.
// The reply is [slots, names...]: a SlotSet of the slots answered for
// (led here and reconciled), then the names, sorted and unique.
type DChildren struct {
	Epoch uint64
	Path  string
}

// Args builds the command.
func (c *DChildren) Args() []any {
	return []any{CmdDChildren, strconv.FormatUint(c.Epoch, 10), c.Path}
}

// ParseDChildren parses DCHILDREN epoch path.
func ParseDChildren(args [][]byte) (*DChildren, error) {
	if err := arity(args, CmdDChildren, 3); err != nil {
		return nil, err
	}
	c := &DChildren{Path: string(args[2])}
	var err error
	if c.Epoch, err = parseUint(args[1], "epoch"); err != nil {
		return nil, err
	}
	return c, CheckPath(c.Path)
}

// SlotSet is a set of slots, one bit each, as it travels in a reply.
type SlotSet [256 / 8]byte

// Add puts slot s in the set.
func (b *SlotSet) Add(s int) { b[s/8] |= 1 << (s % 8) }

// Has says whether slot s is in the set.
func (b *SlotSet) Has(s int) bool { return b[s/8]&(1<<(s%8)) != 0 }

// Len counts the slots in the set.
func (b *SlotSet) Len() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Union adds every slot of o.
func (b *SlotSet) Union(o *SlotSet) {
	for i := range b {
		b[i] |= o[i]
	}
}

// ParseSlotSet reads a SlotSet from its bytes.
func ParseSlotSet(p []byte) (SlotSet, error) {
	var b SlotSet
	if len(p) != len(b) {
		return b, Errorf(ErrInvalid, "slot set is %d bytes, want %d", len(p), len(b))
	}
	copy(b[:], p)
	return b, nil
}

// Path event types (PSUBSCRIBE).
const (
	EventAdd    = "ADD"
	EventUpdate = "UPDATE"
	EventRemove = "REMOVE"
)

// AppendPathEventJSON encodes a prefix watch's event for the path of e:
// {"type":..,"path":..,"value":..,"version":..,"datacenter":..,"zone":..}.
func AppendPathEventJSON(dst []byte, typ, path string, e *Entry, version uint64) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","path":`...)
	dst = appendJSONString(dst, path)
	dst = append(dst, `,"value":`...)
	dst = appendJSONString(dst, e.Data)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, version, 10)
	dst = append(dst, `,"datacenter":`...)
	dst = appendJSONString(dst, e.DC)
	dst = append(dst, `,"zone":`...)
	dst = appendJSONString(dst, e.Zone)
	return append(dst, '}')
}

// DiffEntries calls fn for each path of the dataInfoId id under prefix
// that changed from old to cur (entries sorted by EntryLess, either may
// be nil): ADD for a new registerId, UPDATE for a new value, REMOVE for
// one gone. A path is a registerId in one datacenter: a global view can
// hold the same path from two.
func DiffEntries(prefix, id string, old, cur []Entry, fn func(typ, path string, e *Entry)) {
	emit := func(typ string, e *Entry) {
		if path := JoinPath(id, e.RegisterID); strings.HasPrefix(path, prefix) {
			fn(typ, path, e)
		}
	}
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || (i < len(old) && EntryLess(&old[i], &cur[j])):
			emit(EventRemove, &old[i])
			i++
		case i == len(old) || EntryLess(&cur[j], &old[i]):
			emit(EventAdd, &cur[j])
			j++
		default:
			if old[i].Data != cur[j].Data || old[i].Zone != cur[j].Zone {
				emit(EventUpdate, &cur[j])
			}
			i++
			j++
		}
	}
}

// EntryLess is the order of a datum's entries: by registerId, then by
// datacenter (a global view can hold one registerId from several).
func EntryLess(a, b *Entry) bool {
	if a.RegisterID != b.RegisterID {
		return a.RegisterID < b.RegisterID
	}
	return a.DC < b.DC
}

// ParsePatterns parses PSUBSCRIBE pattern... (at least one) or
// PUNSUBSCRIBE [pattern...] (min 0): the prefixes, in order. One bad
// pattern refuses the whole command.
func ParsePatterns(name string, min int) func(args [][]byte) ([]string, error) {
	return func(args [][]byte) ([]string, error) {
		if len(args)-1 < min {
			return nil, WrongArity(name)
		}
		out := make([]string, 0, len(args)-1)
		for _, a := range args[1:] {
			p, err := ParsePattern(a)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
}
