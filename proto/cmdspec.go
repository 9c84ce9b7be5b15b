package proto

import (
	"strconv"

	"github.com/tidwall/redcon"
)

// Command specs: what a role's command table tells clients about each
// command through COMMAND, COMMAND INFO and COMMAND DOCS, in the reply
// shapes Redis 7 uses, so redis-cli's hints and help and the client
// libraries that read COMMAND work against slotreg as against Redis.

// ArgType is a documented argument's type, as COMMAND DOCS names it.
type ArgType string

// The argument types slotreg's commands use.
const (
	ArgKey       ArgType = "key"
	ArgString    ArgType = "string"
	ArgInteger   ArgType = "integer"
	ArgPureToken ArgType = "pure-token"
	ArgOneOf     ArgType = "oneof"
	ArgBlock     ArgType = "block"
)

// ArgSpec documents one argument.
type ArgSpec struct {
	Name     string
	Type     ArgType
	Token    string // the word that introduces it (TTL), if any
	Optional bool
	Multiple bool
	Args     []ArgSpec // of a oneof or a block
}

// CommandSpec is a command's facts as clients see them.
type CommandSpec struct {
	// Name is lower-case; a subcommand's is "parent|sub".
	Name string
	// Arity is Redis's: n > 0 exactly n words (the name included),
	// n < 0 at least -n.
	Arity int
	// Flags are Redis's command flags (write, readonly, pubsub ...).
	Flags []string
	// FirstKey, LastKey and KeyStep locate the key arguments, as Redis's
	// COMMAND reports them (0: no key).
	FirstKey, LastKey, KeyStep int
	Summary, Since, Group      string
	Complexity                 string
	Args                       []ArgSpec
	Subcommands                []*CommandSpec
}

// ArityOK says whether a command of n words (the name included) has the
// number of words the spec asks for.
func (s *CommandSpec) ArityOK(n int) bool {
	if s.Arity >= 0 {
		return n == s.Arity
	}
	return n >= -s.Arity
}

// respAggregate appends an aggregate header: a RESP3 map ('%') or set
// ('~') where the client speaks RESP3, else an array of the same items
// (a map's n pairs as 2n items).
func respAggregate(dst []byte, kind byte, n int, resp3 bool) []byte {
	if !resp3 {
		if kind == '%' {
			n *= 2
		}
		return redcon.AppendArray(dst, n)
	}
	dst = append(dst, kind)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// appendStatusSet appends a set of simple strings, as Redis sends flags.
func appendStatusSet(dst []byte, items []string, resp3 bool) []byte {
	dst = respAggregate(dst, '~', len(items), resp3)
	for _, it := range items {
		dst = redcon.AppendString(dst, it)
	}
	return dst
}

// AppendInfo appends the command's COMMAND INFO entry: name, arity,
// flags, first key, last key, key step, ACL categories, tips, key specs
// and subcommands.
func (s *CommandSpec) AppendInfo(dst []byte, resp3 bool) []byte {
	dst = redcon.AppendArray(dst, 10)
	dst = redcon.AppendBulkString(dst, s.Name)
	dst = redcon.AppendInt(dst, int64(s.Arity))
	dst = appendStatusSet(dst, s.Flags, resp3)
	dst = redcon.AppendInt(dst, int64(s.FirstKey))
	dst = redcon.AppendInt(dst, int64(s.LastKey))
	dst = redcon.AppendInt(dst, int64(s.KeyStep))
	dst = appendStatusSet(dst, nil, resp3) // ACL categories: slotreg has no ACLs
	dst = appendStatusSet(dst, nil, resp3) // tips
	dst = redcon.AppendArray(dst, 0)       // key specs
	dst = redcon.AppendArray(dst, len(s.Subcommands))
	for _, sub := range s.Subcommands {
		dst = sub.AppendInfo(dst, resp3)
	}
	return dst
}

// AppendDocs appends the command's COMMAND DOCS value (the caller writes
// its name before it): a map of summary, since, group, complexity,
// arguments and subcommands.
func (s *CommandSpec) AppendDocs(dst []byte, resp3 bool) []byte {
	n := 3
	if s.Complexity != "" {
		n++
	}
	if len(s.Args) > 0 {
		n++
	}
	if len(s.Subcommands) > 0 {
		n++
	}
	dst = respAggregate(dst, '%', n, resp3)
	dst = appendField(dst, "summary", s.Summary)
	dst = appendField(dst, "since", s.Since)
	dst = appendField(dst, "group", s.Group)
	if s.Complexity != "" {
		dst = appendField(dst, "complexity", s.Complexity)
	}
	if len(s.Args) > 0 {
		dst = redcon.AppendBulkString(dst, "arguments")
		dst = appendArgs(dst, s.Args, resp3)
	}
	if len(s.Subcommands) > 0 {
		dst = redcon.AppendBulkString(dst, "subcommands")
		dst = respAggregate(dst, '%', len(s.Subcommands), resp3)
		for _, sub := range s.Subcommands {
			dst = redcon.AppendBulkString(dst, sub.Name)
			dst = sub.AppendDocs(dst, resp3)
		}
	}
	return dst
}

func appendField(dst []byte, k, v string) []byte {
	return redcon.AppendBulkString(redcon.AppendBulkString(dst, k), v)
}

// appendArgs appends documented arguments, each a map of name, type and,
// where set, token, flags and nested arguments.
func appendArgs(dst []byte, args []ArgSpec, resp3 bool) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for i := range args {
		a := &args[i]
		var flags []string
		if a.Optional {
			flags = append(flags, "optional")
		}
		if a.Multiple {
			flags = append(flags, "multiple")
		}
		n := 2
		if a.Token != "" {
			n++
		}
		if len(flags) > 0 {
			n++
		}
		if len(a.Args) > 0 {
			n++
		}
		dst = respAggregate(dst, '%', n, resp3)
		dst = appendField(dst, "name", a.Name)
		dst = appendField(dst, "type", string(a.Type))
		if a.Token != "" {
			dst = appendField(dst, "token", a.Token)
		}
		if len(flags) > 0 {
			dst = redcon.AppendBulkString(dst, "flags")
			dst = appendStatusSet(dst, flags, resp3)
		}
		if len(a.Args) > 0 {
			dst = redcon.AppendBulkString(dst, "arguments")
			dst = appendArgs(dst, a.Args, resp3)
		}
	}
	return dst
}

// AppendDocsReply appends a whole COMMAND DOCS reply for specs: a map of
// name to docs.
func AppendDocsReply(dst []byte, specs []*CommandSpec, resp3 bool) []byte {
	dst = respAggregate(dst, '%', len(specs), resp3)
	for _, s := range specs {
		dst = redcon.AppendBulkString(dst, s.Name)
		dst = s.AppendDocs(dst, resp3)
	}
	return dst
}
