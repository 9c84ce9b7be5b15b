package meta

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// TestRPCTableRows checks every row of meta's RPC table: a name, an
// arity, a parser and a handler, each name once.
func TestRPCTableRows(t *testing.T) {
	n := &Node{cfg: Config{NodeID: "m1"}}
	table, err := n.newRPCTable()
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != len(n.rpcCommands()) {
		t.Fatalf("%d rows but %d commands", len(n.rpcCommands()), len(table))
	}
	for _, name := range []string{proto.CmdHeartbeat, proto.CmdConfWatch, proto.CmdMLock, proto.CmdMetaRemove} {
		if c := table[strings.ToLower(name)]; c == nil || !c.leaderOnly {
			t.Errorf("%s: want a leader-only row, got %+v", name, c)
		}
	}
	for _, name := range []string{proto.CmdPing, proto.CmdTable, proto.CmdNodes} {
		if c := table[name]; c == nil || c.leaderOnly {
			t.Errorf("%s: want a row any meta serves, got %+v", name, c)
		}
	}
}

// TestRPCRefusesMalformedBeforeRedirecting: a follower answers a
// malformed request with the parse error, a well-formed leader-only one
// with NOTLEADER, and a read any meta serves itself.
func TestRPCRefusesMalformedBeforeRedirecting(t *testing.T) {
	nodes := mustCluster(t, 3, time.Second)
	leader, followers := leaderOf(t, nodes)
	waitFor(t, "the followers to know the leader's rpc address", func() (bool, string) {
		for _, f := range followers {
			if f.leaderRPCAddr() != leader.RPCAddr() {
				return false, f.ID() + " names " + f.leaderRPCAddr()
			}
		}
		return true, ""
	})
	rdb := rawClient(t, followers[0].RPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	for _, tc := range []struct {
		args []any
		want error
		text string
	}{
		{[]any{"moveslot", "1"}, proto.ErrInvalid, "wrong number of arguments for 'moveslot' command"},
		{[]any{"HEARTBEAT", "data", "d1", "nohostport"}, proto.ErrInvalid, "wrong number of arguments for 'heartbeat' command"},
		{[]any{"heartbeat", "data", "d1", "nohostport", "0"}, proto.ErrInvalid, `address "nohostport" is not host:port`},
		{[]any{"moveslot", "999", "d1"}, proto.ErrInvalid, ""},
		{[]any{"ping", "a", "b"}, proto.ErrInvalid, "wrong number of arguments for 'ping' command"},
		{[]any{"nosuch"}, proto.ErrInvalid, "unknown command 'nosuch'"},
		{[]any{"moveslot", "1", "d1"}, proto.ErrNotLeader, leader.RPCAddr()},
		{[]any{"confget", "app/k"}, proto.ErrNotLeader, leader.RPCAddr()},
	} {
		err := respErr(rdb.Do(ctx, tc.args...).Err())
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%v: got %v, want %v containing %q", tc.args, err, tc.want, tc.text)
		}
	}
	if v, err := rdb.Do(ctx, "table").Text(); err != nil || !strings.Contains(v, `"epoch"`) {
		t.Errorf("TABLE on a follower: %q, %v", v, err)
	}
	if v, err := rdb.Do(ctx, "ping").Text(); err != nil || v != "PONG" {
		t.Errorf("PING on a follower: %q, %v", v, err)
	}
}
