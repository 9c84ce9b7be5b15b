package dataserver

import (
	"fmt"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// command is one row of the data node's command table: everything the
// node knows of a command it serves. Adding a command is one row here
// and its handler.
type command struct {
	name string // lower case, proto's constant
	// arity counts the arguments with the name, as Redis does: n means
	// exactly n, -n at least n. A parser may check more (DWRITE's ops
	// come in groups).
	arity int
	run   func(n *Node, conn redcon.Conn, cmd redcon.Command)
}

// parsed makes a row's handler of the command's parser in proto and the
// handler of what it parses: input the parser refuses gets its error.
func parsed[T any](parse func([][]byte) (T, error), h func(*Node, redcon.Conn, T)) func(*Node, redcon.Conn, redcon.Command) {
	return func(n *Node, conn redcon.Conn, cmd redcon.Command) {
		req, err := parse(cmd.Args)
		if err != nil {
			conn.WriteError(proto.ToRESP(err))
			return
		}
		h(n, conn, req)
	}
}

// commands is every command a data node serves, by lower-cased name.
// AUTH is not here: the cluster secret's gate answers it before dispatch.
var commands = newCommandTable([]command{
	{proto.CmdDWrite, -6, parsed(proto.ParseDWrite, (*Node).handleWrite)},
	{proto.CmdDLookup, 3, parsed(proto.ParseDLookup, (*Node).handleLookup)},
	{proto.CmdDChildren, 3, parsed(proto.ParseDChildren, (*Node).handleChildren)},
	{proto.CmdDPSync, 4, parsed(proto.ParseDPSync, (*Node).handleDPSync)},
	{proto.CmdDPull, 4, parsed(proto.ParseDPull, (*Node).handlePull)},
	{proto.CmdDXPull, 4, parsed(proto.ParseDXPull, (*Node).handleXPull)},
	{proto.CmdDXStats, 1, (*Node).handleXStats},
	{proto.CmdDReconcile, -5, parsed(proto.ParseDReconcile, (*Node).handleReconcile)},
	{proto.CmdDSync, -7, parsed(proto.ParseDSync, (*Node).handleSync)},
	{proto.CmdDAlive, -2, parsed(proto.ParseDAlive, (*Node).handleAlive)},
	{proto.CmdDStats, -1, (*Node).handleStats},
	{proto.CmdDScan, 3, parsed(proto.ParseDScan, (*Node).handleScan)},
	// A session's change stream; a bare SUBSCRIBE opens one that watches
	// nothing yet, as it always has.
	{proto.CmdSubscribe, -1, (*Node).startStream},
	{proto.CmdPSubscribe, -1, (*Node).startStream},
	{proto.CmdPing, -1, func(_ *Node, conn redcon.Conn, _ redcon.Command) { conn.WriteString("PONG") }},
	{proto.CmdQuit, -1, func(_ *Node, conn redcon.Conn, _ redcon.Command) {
		conn.WriteString("OK")
		conn.Close()
	}},
})

// commandTable finds a command by name.
type commandTable map[string]*command

// newCommandTable indexes rows by name; a name that is not lower case or
// comes twice is a bug, caught when the package loads.
func newCommandTable(rows []command) commandTable {
	t := make(commandTable, len(rows))
	for i := range rows {
		c := &rows[i]
		if c.name == "" || c.name != strings.ToLower(c.name) || c.arity == 0 || c.run == nil {
			panic(fmt.Sprintf("dataserver: malformed command row %+v", *c))
		}
		if _, dup := t[c.name]; dup {
			panic("dataserver: command " + c.name + " registered twice")
		}
		t[c.name] = c
	}
	return t
}

// lookup finds the command named name, in any case. Peers send the
// lower-case names proto builds, which are found without allocating.
func (t commandTable) lookup(name []byte) *command {
	if c, ok := t[string(name)]; ok {
		return c
	}
	return t[strings.ToLower(string(name))]
}

// arityOK says whether a command of argc arguments (name included) has
// the arity c takes.
func (c *command) arityOK(argc int) bool {
	if c.arity < 0 {
		return argc >= -c.arity
	}
	return argc == c.arity
}

// handle dispatches one command, once the cluster secret's gate let it
// through.
func (n *Node) handle(conn redcon.Conn, cmd redcon.Command) {
	if !n.gate.Allow(conn, cmd.Args) {
		return
	}
	c := commands.lookup(cmd.Args[0])
	switch {
	case c == nil:
		conn.WriteError(fmt.Sprintf("ERR unknown command '%s'", proto.Clip(cmd.Args[0])))
	case !c.arityOK(len(cmd.Args)):
		conn.WriteError(proto.ToRESP(proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", c.name)))
	default:
		c.run(n, conn, cmd)
	}
}
