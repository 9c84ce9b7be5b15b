package dataserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
)

// replyConn is a redcon.Conn that records the replies written to it.
type replyConn struct {
	discardConn
	replies []string
	closed  bool
}

func (c *replyConn) WriteError(s string)  { c.replies = append(c.replies, "-"+s) }
func (c *replyConn) WriteString(s string) { c.replies = append(c.replies, "+"+s) }
func (c *replyConn) WriteArray(n int)     { c.replies = append(c.replies, fmt.Sprintf("*%d", n)) }
func (c *replyConn) WriteUint64(v uint64) { c.replies = append(c.replies, fmt.Sprintf(":%d", v)) }
func (c *replyConn) WriteBulk(b []byte)   { c.replies = append(c.replies, "$"+string(b)) }
func (c *replyConn) Close() error         { c.closed = true; return nil }

func args(a ...string) [][]byte {
	out := make([][]byte, len(a))
	for i := range a {
		out[i] = []byte(a[i])
	}
	return out
}

func TestCommandTableArity(t *testing.T) {
	for _, tc := range []struct {
		arity, argc int
		ok          bool
	}{
		{3, 3, true}, {3, 2, false}, {3, 4, false},
		{-3, 2, false}, {-3, 3, true}, {-3, 10, true},
		{-1, 1, true},
	} {
		if got := (&command{arity: tc.arity}).arityOK(tc.argc); got != tc.ok {
			t.Errorf("arity %d with %d args: %v, want %v", tc.arity, tc.argc, got, tc.ok)
		}
	}
}

func TestCommandTableRefusesBadRows(t *testing.T) {
	run := func(*Node, redcon.Conn, redcon.Command) {}
	for name, rows := range map[string][]command{
		"duplicate":  {{"dwrite", -3, run}, {"dwrite", 2, run}},
		"upper case": {{"DWRITE", -3, run}},
		"no name":    {{"", 1, run}},
		"no arity":   {{"dwrite", 0, run}},
		"no handler": {{"dwrite", 1, nil}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("accepted")
				}
			}()
			newCommandTable(rows)
		})
	}
}

// Every inter-node command is in the table, found in any case.
func TestCommandTableNamesEveryCommand(t *testing.T) {
	for _, name := range []string{proto.CmdDWrite, proto.CmdDLookup, proto.CmdDPull, proto.CmdDReconcile,
		proto.CmdDSync, proto.CmdDStats, proto.CmdSubscribe, proto.CmdPing, proto.CmdQuit} {
		for _, spelt := range []string{name, strings.ToUpper(name)} {
			if c := commands.lookup([]byte(spelt)); c == nil || c.name != name {
				t.Errorf("%s: found %+v", spelt, c)
			}
		}
	}
	if c := commands.lookup([]byte("auth")); c != nil {
		t.Error("AUTH is the gate's, not the table's")
	}
}

// Dispatch answers unknown names and wrong arities before any handler
// runs, and bad input with the parser's error.
func TestDispatch(t *testing.T) {
	n := leaderNode(t)
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		args   [][]byte
		want   string
		closed bool
	}{
		{args: args("PING"), want: "[+PONG]"},
		{args: args("ping", "hi"), want: "[+PONG]"},
		{args: args("quit"), want: "[+OK]", closed: true},
		{args: args("nosuch", "a"), want: "[-ERR unknown command 'nosuch']"},
		{args: args(long), want: "[-ERR unknown command '" + long[:64] + "...']"},
		{args: args("dlookup", "1"), want: "[-ERR wrong number of arguments for 'dlookup' command]"},
		{args: args("DWRITE", "1"), want: "[-ERR wrong number of arguments for 'dwrite' command]"},
		{args: args("dwrite", "1", "s1", "R"), want: "[-ERR wrong number of arguments for 'dwrite' command]"},
		{args: args("dwrite", "1", "s1", "z", "2", "3", "R"), want: "[-ERR wrong number of arguments for 'dwrite' command]"},
		{args: args("dwrite", "1", "s1", "z", "x", "3"), want: "[-ERR run is not an unsigned integer"},
		{args: args("dlookup", "x", "svc"), want: "[-ERR epoch is not an unsigned integer"},
		{args: args("dstats", "nope"), want: "[-ERR usage: DSTATS [GC|COUNTS]]"},
		{args: args("dwrite", "1", "s1", "z", "2", "3", "R", "svc", "r", "d", "c", "0"), want: "[*1 :4294967297]"},
	} {
		c := &replyConn{}
		n.handle(c, redcon.Command{Args: tc.args})
		if got := fmt.Sprint(c.replies); !strings.HasPrefix(got, tc.want) || c.closed != tc.closed {
			t.Errorf("%q: %s (closed %v), want %s", tc.args, got, c.closed, tc.want)
		}
	}
}

// A DWRITE answers each op in order: its result, or the refusal naming
// the owner of a slot this node does not lead or is handing off.
func TestDWriteAnswersEachOp(t *testing.T) {
	n := leaderNode(t)
	ids := map[int]string{} // slot -> a dataInfoId in it
	for i := 0; len(ids) < 3; i++ {
		id := fmt.Sprint("svc-", i)
		ids[slot.Of(id)] = id
	}
	var order []string
	for _, id := range ids {
		order = append(order, id)
	}
	n.slots[slot.Of(order[1])].drop()
	u := n.slots[slot.Of(order[2])]
	u.lead(&slot.Assignment{Leader: "d1", LeaderEpoch: 1, Target: "d2"}, nil)
	mustWrite(t, u, "s1", reg(order[2], "before", "d", "c", 0))
	u.ack("d2", 1, 1) // the target follows and has it all
	u.handoffStep(true, time.Now())
	w := proto.DWrite{Epoch: 1, SessionID: "s1"}
	for _, id := range order {
		w.Ops = append(w.Ops, proto.Op{Type: proto.OpRegister, DataInfoID: id, RegisterID: "r", Data: "d", ConnID: "c"})
	}
	cmd, _ := redcon.Parse(w.AppendRESP(nil))
	c := &replyConn{}
	n.handle(c, cmd)
	if len(c.replies) != 4 || c.replies[0] != "*3" || c.replies[1] != ":4294967297" ||
		!strings.HasPrefix(c.replies[2], "-NOTOWNER") || !strings.Contains(c.replies[2], "d1") ||
		!strings.HasPrefix(c.replies[3], "-NOTOWNER") || !strings.Contains(c.replies[3], "d2") {
		t.Fatalf("replies %q", c.replies)
	}
}
