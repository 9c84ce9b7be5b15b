package proto

import (
	"fmt"
	"strings"
)

// Paths (DESIGN.md, "Paths"): a dataInfoId that starts with "/" names a
// node of a tree. The path /a/b/c is the publisher with registerId c under
// dataInfoId /a/b (and /a the registerId a under "/"), so the slots,
// replication, failover and migration carry paths as they carry any
// publisher, and REGISTER /a/b c v and PUT /a/b/c v are the same write.

// Path commands.
const (
	CmdPut = "put"
	CmdGet = "get"
	CmdDel = "del"

	OptEphemeral = "ephemeral"
)

// SplitPath splits a path into its parent's dataInfoId and its last
// segment: /a/b/c into /a/b and c, /a into / and a. A path starts with
// "/", has no empty segment and no trailing "/"; "/" itself has no
// parent and is refused.
func SplitPath(path string) (parent, name string, err error) {
	if !strings.HasPrefix(path, "/") {
		return "", "", Errorf(ErrInvalid, "a path starts with /, got %q", Clip([]byte(path)))
	}
	if path == "/" {
		return "", "", Errorf(ErrInvalid, "the root / holds no value: name a path under it")
	}
	if strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
		return "", "", Errorf(ErrInvalid, "path %q has an empty segment (a trailing / or //)", Clip([]byte(path)))
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

// ParsePut parses PUT path value [EPHEMERAL | TTL seconds]: a REGISTER of
// the path's last segment under its parent. EPHEMERAL, the default, binds
// the value to the connection, as REGISTER does.
func ParsePut(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpRegister}
	switch {
	case len(args) == 3:
	case len(args) == 4 && strings.EqualFold(string(args[3]), OptEphemeral):
	case len(args) == 5 && strings.EqualFold(string(args[3]), OptTTL):
		ttl, err := parseTTL(args[4])
		if err != nil {
			return op, err
		}
		op.TTL = ttl
	case len(args) == 4 || len(args) == 5:
		return op, Errorf(ErrInvalid, "syntax error: expected EPHEMERAL or TTL <seconds>, got %q", Clip(args[3]))
	default:
		return op, WrongArity(CmdPut)
	}
	op.Data = string(args[2])
	if len(op.Data) > lim.MaxDataSize {
		return op, LimitError(LimitDataSize, lim.MaxDataSize, fmt.Sprintf("value is %d bytes", len(op.Data)))
	}
	return op, pathOp(&op, args[1], lim)
}

// ParseDel parses DEL path: an UNREGISTER of the path, whoever holds it.
func ParseDel(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpUnregister}
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
