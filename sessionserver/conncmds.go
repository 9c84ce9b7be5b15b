package sessionserver

import (
	"strconv"
	"strings"

	"github.com/slotreg/slotreg/proto"
)

// The connection's own commands (PING, ECHO, QUIT, SELECT, HELLO,
// CLIENT), COMMAND, which reads the command table, and INFO. Each answers
// what its proto parser made of the arguments; the caller holds wmu.

// version is the slotreg version HELLO and INFO report.
const version = "0.1.0"

func (c *clientConn) ping(m *proto.Message) {
	if !c.resp3 && c.subscribed() {
		// Redis answers a PING in subscribed mode as a pub/sub frame.
		c.wr.WriteArray(2)
		c.wr.WriteBulkString("pong")
		c.wr.WriteBulk(m.Text)
		return
	}
	if m.Set {
		c.wr.WriteBulk(m.Text)
		return
	}
	c.wr.WriteString("PONG")
}

func (c *clientConn) echo(m *proto.Message) { c.wr.WriteBulk(m.Text) }

func (c *clientConn) quitCmd([][]byte) {
	c.wr.WriteString("OK")
	c.quit = true
}

func (c *clientConn) selectDB(*struct{}) { c.wr.WriteString("OK") }

func (c *clientConn) infoCmd(args [][]byte) { c.wr.WriteBulkString(c.n.info(args[1:])) }

// hello negotiates the protocol: HELLO [2|3 [AUTH user pass] [SETNAME n]].
func (c *clientConn) hello(h *proto.Hello) {
	ver := 2
	if c.resp3 {
		ver = 3
	}
	if h.Proto != 0 {
		ver = h.Proto
	}
	// Without passwords configured any AUTH is accepted, as Redis does
	// for its default user without a password.
	if h.Auth != nil && c.n.cfg.Auth != nil && !c.authenticate(h.Auth.User, h.Auth.Password) {
		return
	}
	if h.SetName != nil {
		c.name = *h.SetName
	}
	if !c.authed {
		c.writeError(replyNoAuthHello)
		return
	}
	c.resp3 = ver == 3
	fields := []struct {
		k string
		v any
	}{
		{"server", "slotreg"}, {"version", version}, {"proto", ver}, {"id", int(c.n.nextConn.Load())},
		{"mode", "standalone"}, {"role", "master"}, {"modules", nil},
	}
	if c.resp3 {
		c.wr.WriteRaw([]byte("%" + strconv.Itoa(len(fields)) + "\r\n"))
	} else {
		c.wr.WriteArray(2 * len(fields))
	}
	for _, f := range fields {
		c.wr.WriteBulkString(f.k)
		switch v := f.v.(type) {
		case string:
			c.wr.WriteBulkString(v)
		case int:
			c.wr.WriteInt(v)
		default:
			c.wr.WriteArray(0)
		}
	}
}

func (c *clientConn) clientSetName(s *proto.ClientSetName) {
	c.name = s.Name
	c.wr.WriteString("OK")
}

func (c *clientConn) clientGetName([][]byte) {
	if c.name == "" {
		c.wr.WriteNull()
		return
	}
	c.wr.WriteBulkString(c.name)
}

// clientSetInfo accepts what client libraries send on connecting (CLIENT
// SETINFO LIB-NAME|LIB-VER value) and keeps nothing.
func (c *clientConn) clientSetInfo([][]byte) { c.wr.WriteString("OK") }

func (c *clientConn) clientID([][]byte) {
	n, _ := strconv.ParseUint(c.id[strings.LastIndexByte(c.id, '.')+1:], 10, 64)
	c.wr.WriteUint64(n)
}

// commandAll answers COMMAND: every command's COMMAND INFO entry.
func (c *clientConn) commandAll([][]byte) {
	c.writeInfos(commands.specs)
}

func (c *clientConn) commandCount([][]byte) { c.wr.WriteInt(len(commands.rows)) }

func (c *clientConn) commandList([][]byte) {
	c.wr.WriteArray(len(commands.rows))
	for _, r := range commands.rows {
		c.wr.WriteBulkString(r.Name)
	}
}

// commandInfo answers COMMAND INFO [name ...]: an entry per name, nil for
// a name the table does not have.
func (c *clientConn) commandInfo(q *proto.CommandNames) {
	if len(q.Names) == 0 {
		c.writeInfos(commands.specs)
		return
	}
	c.wr.WriteArray(len(q.Names))
	for _, name := range q.Names {
		if cmd := commands.byName[name]; cmd != nil {
			c.wr.WriteRaw(cmd.AppendInfo(nil, c.resp3))
			continue
		}
		c.wr.WriteNull()
	}
}

func (c *clientConn) writeInfos(specs []*proto.CommandSpec) {
	c.wr.WriteArray(len(specs))
	for _, s := range specs {
		c.wr.WriteRaw(s.AppendInfo(nil, c.resp3))
	}
}

// commandDocs answers COMMAND DOCS [name ...]: a map of name to docs, as
// redis-cli reads it for its hints and help; names the table does not
// have are left out, as Redis does.
func (c *clientConn) commandDocs(q *proto.CommandNames) {
	specs := commands.specs
	if len(q.Names) > 0 {
		specs = nil
		for _, name := range q.Names {
			if cmd := commands.byName[name]; cmd != nil {
				specs = append(specs, &cmd.CommandSpec)
			}
		}
	}
	c.wr.WriteRaw(proto.AppendDocsReply(nil, specs, c.resp3))
}
