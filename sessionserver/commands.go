package sessionserver

import (
	"fmt"
	"strings"

	"github.com/slotreg/slotreg/proto"
)

// The command table is the one place a client command is declared: its
// name, kind, arity and docs (proto.CommandSpec), the parser (in proto)
// and the handler. Dispatch, the AUTH gate, COMMAND/COMMAND INFO/COMMAND
// DOCS and the metric labels all read it; adding a command is a row here
// and its handler.

// cmdKind is what a command does; it gives the command's Redis flags and
// its default docs group.
type cmdKind uint8

const (
	// kindConn reads or sets the connection's own state (PING, HELLO,
	// AUTH, CLIENT ...).
	kindConn cmdKind = iota
	// kindRead answers from a slot leader, meta or the session's caches.
	kindRead
	// kindWrite changes registry, lock or config state.
	kindWrite
	// kindPubSub subscribes or unsubscribes.
	kindPubSub
	// kindAdmin is for operators and tools (INFO, SLOTREG).
	kindAdmin
)

// flags and group are the Redis command flags and the default docs group
// of each kind.
var kindFacts = [...]struct{ flags, group string }{
	kindConn:   {"fast", "connection"},
	kindRead:   {"readonly", "registry"},
	kindWrite:  {"write", "registry"},
	kindPubSub: {"pubsub", "pubsub"},
	kindAdmin:  {"admin", "server"},
}

// command is one row of the table.
type command struct {
	proto.CommandSpec
	kind cmdKind
	// noAuth lets the command run before the connection authenticated.
	noAuth bool
	// op parses a write bound for a slot leader. Such commands have no
	// run: a run of them in a pipeline is sent together (execWrites).
	op func(args [][]byte, lim *proto.ClientLimits) (proto.Op, error)
	// run parses (through a parser in proto) and answers any other
	// command; the caller holds wmu. A container (subs set) has run only
	// if it answers without a subcommand too (COMMAND).
	run func(c *clientConn, args [][]byte)
	// subs are a container's subcommands, chosen by the second word.
	subs []*command
	// usage, when set, replaces a container's errors for an unknown
	// subcommand or a wrong arity.
	usage string
	// idx is the command's place in the metrics; subcommands count as
	// their container.
	idx int
}

// commandRows is the session's table, in the order COMMAND lists it.
func commandRows() []*command {
	key := func(name string) proto.ArgSpec { return proto.ArgSpec{Name: name, Type: proto.ArgKey} }
	str := func(name string) proto.ArgSpec { return proto.ArgSpec{Name: name, Type: proto.ArgString} }
	opt := func(a proto.ArgSpec) proto.ArgSpec { a.Optional = true; return a }
	many := func(a proto.ArgSpec) proto.ArgSpec { a.Multiple = true; return a }
	onKey := func(s proto.CommandSpec) proto.CommandSpec { s.FirstKey, s.LastKey, s.KeyStep = 1, 1, 1; return s }
	return []*command{
		{CommandSpec: proto.CommandSpec{Name: proto.CmdPing, Arity: -1, Summary: "Returns PONG, or the message given.",
			Args: []proto.ArgSpec{opt(str("message"))}},
			kind: kindConn, run: parsed(proto.ParsePing, (*clientConn).ping)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdEcho, Arity: 2, Summary: "Returns the message given.",
			Args: []proto.ArgSpec{str("message")}},
			kind: kindConn, run: parsed(proto.ParseEcho, (*clientConn).echo)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdQuit, Arity: -1, Summary: "Closes the connection once the replies before it are sent."},
			kind: kindConn, noAuth: true, run: (*clientConn).quitCmd},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdHello, Arity: -1, Summary: "Picks the protocol (2 or 3), optionally authenticating and naming the connection.",
			Args: []proto.ArgSpec{opt(proto.ArgSpec{Name: "arguments", Type: proto.ArgBlock, Args: []proto.ArgSpec{
				{Name: "protover", Type: proto.ArgInteger},
				{Name: "auth", Type: proto.ArgBlock, Token: "AUTH", Optional: true, Args: []proto.ArgSpec{str("username"), str("password")}},
				{Name: "clientname", Type: proto.ArgString, Token: "SETNAME", Optional: true},
			}})}},
			kind: kindConn, noAuth: true, run: parsed(proto.ParseHello, (*clientConn).hello)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdAuth, Arity: -2, Summary: "Authenticates the connection.",
			Args: []proto.ArgSpec{opt(str("username")), str("password")}},
			kind: kindConn, noAuth: true, run: parsed(proto.ParseAuth, (*clientConn).auth)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdClient, Arity: -2, Summary: "A container for connection commands."},
			kind: kindConn, subs: []*command{
				{CommandSpec: proto.CommandSpec{Name: proto.SubSetName, Arity: 3, Summary: "Names the connection.",
					Args: []proto.ArgSpec{str("connection-name")}},
					run: parsed(proto.ParseClientSetName, (*clientConn).clientSetName)},
				{CommandSpec: proto.CommandSpec{Name: proto.SubGetName, Arity: 2, Summary: "Returns the connection's name, or nil."},
					run: (*clientConn).clientGetName},
				{CommandSpec: proto.CommandSpec{Name: proto.SubSetInfo, Arity: 4, Summary: "Accepts a client library's name or version (and keeps nothing).",
					Args: []proto.ArgSpec{str("attr"), str("value")}},
					run: (*clientConn).clientSetInfo},
				{CommandSpec: proto.CommandSpec{Name: proto.SubID, Arity: 2, Summary: "Returns the connection's number on this session."},
					run: (*clientConn).clientID},
			}},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdCommand, Arity: -1, Summary: "Returns the facts of every command."},
			kind: kindConn, run: (*clientConn).commandAll, subs: []*command{
				{CommandSpec: proto.CommandSpec{Name: proto.SubCount, Arity: 2, Summary: "Returns the number of commands."},
					run: (*clientConn).commandCount},
				{CommandSpec: proto.CommandSpec{Name: proto.SubDocs, Arity: -2, Summary: "Returns the docs of the commands named, or of all.",
					Args: []proto.ArgSpec{opt(many(str("command-name")))}},
					run: parsed(proto.ParseCommandNames, (*clientConn).commandDocs)},
				{CommandSpec: proto.CommandSpec{Name: proto.SubInfo, Arity: -2, Summary: "Returns the facts of the commands named, or of all.",
					Args: []proto.ArgSpec{opt(many(str("command-name")))}},
					run: parsed(proto.ParseCommandNames, (*clientConn).commandInfo)},
				{CommandSpec: proto.CommandSpec{Name: proto.SubList, Arity: 2, Summary: "Returns the name of every command."},
					run: (*clientConn).commandList},
			}},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdSelect, Arity: 2, Summary: "Selects database 0, the only one.",
			Args: []proto.ArgSpec{{Name: "index", Type: proto.ArgInteger}}},
			kind: kindConn, run: parsed(proto.ParseSelect, (*clientConn).selectDB)},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdRegister, Arity: -4,
			Summary:    "Publishes data under a registerId; bound to the connection, or to RENEW within a TTL. Replies the datum's version.",
			Complexity: "O(log N) where N is the number of publishers of the dataInfoId",
			Args: []proto.ArgSpec{key("dataInfoId"), str("registerId"), str("data"),
				{Name: "seconds", Type: proto.ArgInteger, Token: "TTL", Optional: true}}}),
			kind: kindWrite, op: proto.ParseRegister},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdUnregister, Arity: 3, Summary: "Removes a publisher: 1 removed, 0 there was none.",
			Args: []proto.ArgSpec{key("dataInfoId"), str("registerId")}}),
			kind: kindWrite, op: proto.ParseUnregister},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdRenew, Arity: 3, Summary: "Renews a TTL publisher: 1 renewed, 0 unknown or expired.",
			Args: []proto.ArgSpec{key("dataInfoId"), str("registerId")}}),
			kind: kindWrite, op: proto.ParseRenew},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdLookup, Arity: 2, Summary: "Returns a datum's version and its [registerId, data] pairs, sorted.",
			Args: []proto.ArgSpec{key("dataInfoId")}}),
			kind: kindRead, run: limited(proto.ParseLookup, (*clientConn).lookup)},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdPut, Arity: -3,
			Summary: "Sets a path's value (/a/b/c: registerId c under dataInfoId /a/b); EPHEMERAL (bound to the connection, the default), PERSISTENT (until DEL, through restarts) or TTL. Replies the version.",
			Args: []proto.ArgSpec{key("path"), str("value"), opt(proto.ArgSpec{Name: "lifetime", Type: proto.ArgOneOf, Args: []proto.ArgSpec{
				{Name: "ephemeral", Type: proto.ArgPureToken, Token: "EPHEMERAL"},
				{Name: "persistent", Type: proto.ArgPureToken, Token: "PERSISTENT"},
				{Name: "seconds", Type: proto.ArgInteger, Token: "TTL"}}})}}),
			kind: kindWrite, op: proto.ParsePut},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdGet, Arity: 2, Summary: "Returns a path's version and value, or null.",
			Args: []proto.ArgSpec{key("path")}}),
			kind: kindRead, run: limited(proto.ParseGet, (*clientConn).get)},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdDel, Arity: 2, Summary: "Removes a path's value, whoever set it: 1 removed, 0 there was none.",
			Args: []proto.ArgSpec{key("path")}}),
			kind: kindWrite, op: proto.ParseDel},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdExists, Arity: 2, Summary: "Returns 1 if a path has a value or any descendant, else 0.",
			Args: []proto.ArgSpec{key("path")}}),
			kind: kindRead, run: parsed(proto.ParsePathArg(proto.CmdExists), (*clientConn).exists)},
		{CommandSpec: onKey(proto.CommandSpec{Name: proto.CmdChildren, Arity: 2, Summary: "Returns the sorted names of a path's children that have a value or descendants (/ for the top level).",
			Args: []proto.ArgSpec{key("path")}}),
			kind: kindRead, run: parsed(proto.ParsePathArg(proto.CmdChildren), (*clientConn).childrenCmd)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdSubscribe, Arity: -2, Summary: "Pushes each dataInfoId's publishers now and on every change (config/<KEY>: a config key).",
			Args: []proto.ArgSpec{many(str("dataInfoId"))}},
			kind: kindPubSub, run: parsed(proto.ParseSubscribe, (*clientConn).subscribe)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdUnsubscribe, Arity: -1, Summary: "Stops pushes for the dataInfoIds named, or for all.",
			Args: []proto.ArgSpec{opt(many(str("dataInfoId")))}},
			kind: kindPubSub, run: (*clientConn).unsubscribe},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdPSubscribe, Arity: -2,
			Summary: "Pushes an ADD for every path under each prefix (pattern: prefix*), then every ADD, UPDATE and REMOVE below it.",
			Args:    []proto.ArgSpec{many(str("pattern"))}},
			kind: kindPubSub, run: parsed(proto.ParsePatterns(proto.CmdPSubscribe, 1), (*clientConn).psubscribe)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdPUnsubscribe, Arity: -1, Summary: "Stops the prefix watches named, or all.",
			Args: []proto.ArgSpec{opt(many(str("pattern")))}},
			kind: kindPubSub, run: parsed(proto.ParsePatterns(proto.CmdPUnsubscribe, 0), (*clientConn).punsubscribe)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdScope, Arity: 2,
			Summary: "Sets the view of this connection's next LOOKUP, SUBSCRIBE and PSUBSCRIBE: zone, datacenter (the default) or global.",
			Args: []proto.ArgSpec{{Name: "scope", Type: proto.ArgOneOf, Args: []proto.ArgSpec{
				{Name: "zone", Type: proto.ArgPureToken, Token: "ZONE"},
				{Name: "datacenter", Type: proto.ArgPureToken, Token: "DATACENTER"},
				{Name: "global", Type: proto.ArgPureToken, Token: "GLOBAL"}}}}},
			kind: kindConn, run: parsed(proto.ParseScope, (*clientConn).scopeCmd)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdInfo, Arity: -1, Summary: "Returns the session's state as Redis INFO text.",
			Args: []proto.ArgSpec{opt(str("section"))}},
			kind: kindAdmin, run: (*clientConn).infoCmd},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdSlotreg, Arity: -2, Summary: "A container for slotreg's admin commands."},
			kind: kindAdmin, usage: "SLOTREG DIGESTS | SLOTREG MEMORY [GC] | SLOTREG SUBS prefix limit", subs: []*command{
				{CommandSpec: proto.CommandSpec{Name: proto.SubDigests, Arity: 2, Summary: "Returns the per-slot digests of this session's connection-bound publishers (JSON)."},
					run: (*clientConn).slotregDigests},
				{CommandSpec: proto.CommandSpec{Name: proto.SubMemory, Arity: -2, Summary: "Returns the session's heap (JSON), after a full collection with GC.",
					Args: []proto.ArgSpec{{Name: "gc", Type: proto.ArgPureToken, Token: "GC", Optional: true}}},
					run: parsed(proto.ParseMemory, (*clientConn).slotregMemory)},
				{CommandSpec: proto.CommandSpec{Name: proto.SubSubs, Arity: 4, Summary: "Returns this session's subscriber counts per dataInfoId with a prefix, and its path watches under it (JSON).",
					Args: []proto.ArgSpec{str("prefix"), {Name: "limit", Type: proto.ArgInteger}}},
					run: parsed(proto.ParseSubs, (*clientConn).slotregSubs)},
			}},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdConfGet, Arity: 2, Group: "config", Summary: "Returns a config key's [version, value] from the session's cache, or nil.",
			Args: []proto.ArgSpec{str("key")}},
			kind: kindRead, run: parsed(named(proto.CmdConfGet, proto.ParseConfKey), (*clientConn).confGet)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdLock, Arity: -4, Group: "lock",
			Summary: "Takes or renews a global lock: its token, or nil while another owner holds it; with WAIT, waits in line that long.",
			Args: []proto.ArgSpec{str("name"), str("owner"), {Name: "ttl-ms", Type: proto.ArgInteger},
				{Name: "wait-ms", Type: proto.ArgInteger, Token: "WAIT", Optional: true}}},
			kind: kindWrite, run: parsed(proto.ParseLock, (*clientConn).lock)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdUnlock, Arity: 3, Group: "lock", Summary: "Releases a lock the owner holds: 1 released, 0 not held.",
			Args: []proto.ArgSpec{str("name"), str("owner")}},
			kind: kindWrite, run: parsed(proto.ParseUnlock, (*clientConn).unlock)},
		{CommandSpec: proto.CommandSpec{Name: proto.CmdLockInfo, Arity: 2, Group: "lock", Summary: "Returns a lock's [owner, token, ttl-ms], or nil if free.",
			Args: []proto.ArgSpec{str("name")}},
			kind: kindRead, run: parsed(named(proto.CmdLockInfo, proto.ParseLockInfo), (*clientConn).lockInfo)},
	}
}

// parsed makes a handler of a proto parser and what answers its result.
func parsed[T any](parse func([][]byte) (T, error), h func(*clientConn, T)) func(*clientConn, [][]byte) {
	return limited(func(args [][]byte, _ *proto.ClientLimits) (T, error) { return parse(args) }, h)
}

// limited is parsed for parsers that apply the session's client limits.
func limited[T any](parse func([][]byte, *proto.ClientLimits) (T, error), h func(*clientConn, T)) func(*clientConn, [][]byte) {
	return func(c *clientConn, args [][]byte) {
		v, err := parse(args, &c.n.lim)
		if err != nil {
			c.replyErr(err)
			return
		}
		h(c, v)
	}
}

// named fixes the command name of a parser that serves several.
func named[T any](name string, parse func(string, [][]byte) (T, error)) func([][]byte) (T, error) {
	return func(args [][]byte) (T, error) { return parse(name, args) }
}

// commandTable indexes the rows.
type commandTable struct {
	rows   []*command
	byName map[string]*command // lower- and upper-case names
	specs  []*proto.CommandSpec
}

// commands is the session's table, checked when the package loads (in
// init: its handlers read it, which a variable's initializer may not).
var commands *commandTable

func init() { commands = mustTable(commandRows()) }

// mustTable indexes rows, fills in what the kinds imply and panics on a
// row that cannot work: a duplicate name, no handler, an arity of 0.
func mustTable(rows []*command) *commandTable {
	t := &commandTable{rows: rows, byName: map[string]*command{}}
	for i, c := range rows {
		c.idx = i
		c.fill(c.kind, "")
		if t.byName[c.Name] != nil {
			panic(fmt.Sprintf("sessionserver: command %q is in the table twice", c.Name))
		}
		t.byName[c.Name] = c
		t.byName[strings.ToUpper(c.Name)] = c
		t.specs = append(t.specs, &c.CommandSpec)
	}
	return t
}

// fill completes a row: flags and group from its kind, and its
// subcommands' names, kinds and metric index from it.
func (c *command) fill(kind cmdKind, parent string) {
	c.kind = kind
	if parent != "" {
		c.Name = parent + "|" + c.Name
	}
	if c.Name != strings.ToLower(c.Name) || c.Arity == 0 {
		panic(fmt.Sprintf("sessionserver: command %q: want a lower-case name and an arity", c.Name))
	}
	if (c.op == nil) == (c.run == nil && c.subs == nil) || (c.op != nil && c.subs != nil) {
		panic(fmt.Sprintf("sessionserver: command %q: want exactly one of op, run or subcommands", c.Name))
	}
	c.Flags = append(c.Flags[:0], kindFacts[kind].flags)
	if c.noAuth {
		c.Flags = append(c.Flags, "noauth")
	}
	if c.Group == "" {
		c.Group = kindFacts[kind].group
	}
	if c.Since == "" {
		c.Since = version
	}
	seen := map[string]bool{}
	for _, s := range c.subs {
		if seen[s.Name] {
			panic(fmt.Sprintf("sessionserver: subcommand %q of %q is in the table twice", s.Name, c.Name))
		}
		seen[s.Name] = true
		s.idx = c.idx
		s.fill(kind, c.Name)
		c.Subcommands = append(c.Subcommands, &s.CommandSpec)
	}
}

// lookup finds a command by name in any case; nil if there is none.
func (t *commandTable) lookup(name []byte) *command {
	if c := t.byName[string(name)]; c != nil {
		return c
	}
	return t.byName[strings.ToLower(string(name))]
}

// metric is the command's index in the stats; an unknown command counts
// as "other", after every row.
func (t *commandTable) metric(c *command) int {
	if c == nil {
		return len(t.rows)
	}
	return c.idx
}

// exec runs one command that is not a batched write; the caller holds
// wmu. cmd is nil for a name the table does not have.
func (c *clientConn) exec(cmd *command, args [][]byte) {
	if !c.authed && (cmd == nil || !cmd.noAuth) {
		c.writeError(replyNoAuth)
		return
	}
	if cmd == nil {
		c.writeError("ERR unknown command '" + proto.Clip(args[0]) + "'")
		return
	}
	cmd.call(c, args)
}

// call checks the arity, picks the subcommand of a container and runs
// the handler.
func (cmd *command) call(c *clientConn, args [][]byte) {
	if len(cmd.subs) > 0 && len(args) >= 2 {
		sub := cmd.sub(args[1])
		if sub == nil {
			c.replyErr(cmd.refuse(proto.Errorf(proto.ErrInvalid, "unknown subcommand '%s' for '%s'", proto.Clip(args[1]), cmd.Name)))
			return
		}
		cmd = sub
	}
	if !cmd.ArityOK(len(args)) || cmd.run == nil {
		c.replyErr(cmd.refuse(proto.WrongArity(cmd.Name)))
		return
	}
	cmd.run(c, args)
}

// refuse is err, or the container's usage where it has one.
func (cmd *command) refuse(err error) error {
	parent := cmd
	if i := strings.IndexByte(cmd.Name, '|'); i >= 0 {
		parent = commands.byName[cmd.Name[:i]]
	}
	if parent != nil && parent.usage != "" {
		return proto.Errorf(proto.ErrInvalid, "usage: %s", parent.usage)
	}
	return err
}

// sub finds a container's subcommand by name in any case.
func (cmd *command) sub(name []byte) *command {
	for _, s := range cmd.subs {
		if strings.EqualFold(s.Name[strings.IndexByte(s.Name, '|')+1:], string(name)) {
			return s
		}
	}
	return nil
}

// replyErr answers err as the client's error reply.
func (c *clientConn) replyErr(err error) { c.writeError(proto.ReplyText(err)) }
