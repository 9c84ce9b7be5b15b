package dataserver

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
	"github.com/tidwall/redcon"
)

// discardConn is a redcon.Conn that drops every reply; the methods the
// handlers do not write with panic through the nil embedded Conn.
type discardConn struct{ redcon.Conn }

func (discardConn) WriteArray(int)         {}
func (discardConn) WriteUint64(uint64)     {}
func (discardConn) WriteInt(int)           {}
func (discardConn) WriteError(string)      {}
func (discardConn) WriteString(string)     {}
func (discardConn) WriteBulk([]byte)       {}
func (discardConn) WriteBulkString(string) {}

// leaderNode is a node that leads every slot at table epoch 1 with no
// followers, ready to serve, and talks to no meta: enough to drive the
// write path in process.
func leaderNode(tb testing.TB) *Node {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A meta client that never heartbeats: no lease, so never fenced.
	mc, err := metaclient.NewClient(metaclient.Config{Kind: proto.KindData, NodeID: "d1", Addr: "127.0.0.1:1", Metas: []string{"127.0.0.1:1"}})
	if err != nil {
		tb.Fatal(err)
	}
	n := &Node{cfg: Config{NodeID: "d1", OpLogSize: DefaultOpLogSize}, log: log, meta: mc, streams: make(map[*stream]struct{}),
		gate: netsec.NewGate(netsec.Secret{}, log), appendCh: make(chan struct{}), stop: make(chan struct{})}
	t := &slot.Table{Epoch: 1, Replicas: 1, Nodes: []slot.Node{{ID: "d1", Addr: "127.0.0.1:1"}}}
	for s := range t.Slots {
		t.Slots[s] = slot.Assignment{Leader: "d1", LeaderEpoch: 1}
	}
	n.table.Store(t)
	for s := range n.slots {
		n.slots[s] = newSlotUnit(s, DefaultOpLogSize, log)
		n.slots[s].lead(&t.Slots[s], &t.Slots[s]) // planned: ready at once
	}
	return n
}

// dwriteArgs is a DWRITE of batch connection-bound REGISTERs as a session
// sends it, over services spread across the slots.
func dwriteArgs(batch, round int) [][]byte {
	w := proto.DWrite{Epoch: 1, SessionID: "session-1"}
	for i := range batch {
		w.Ops = append(w.Ops, proto.Op{Type: proto.OpRegister, DataInfoID: "bench-svc-" + strconv.Itoa((round*batch+i)%1000),
			RegisterID: "r" + strconv.Itoa(i), Data: "10.1.2.3:12200?weight=100&zone=a", ConnID: "m1a2b3c4d5e6.0"})
	}
	args, _ := redcon.Parse(w.AppendRESP(nil))
	return args.Args
}

// BenchmarkDWrite runs DWRITE batches through the node's dispatch, as a
// session's REGISTERs arrive: parsing, the slot's lock, apply, notices.
func BenchmarkDWrite(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprint(batch), func(b *testing.B) { benchDWrite(b, batch) })
	}
}

func benchDWrite(b *testing.B, batch int) {
	n := leaderNode(b)
	cmds := make([]redcon.Command, 16)
	for i := range cmds {
		cmds[i] = redcon.Command{Args: dwriteArgs(batch, i)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n.handle(discardConn{}, cmds[i%len(cmds)])
		i++
	}
}

// BenchmarkDWriteParallel is BenchmarkDWrite's 64-op batch from every
// core at once: writers meet on the slots' locks.
func BenchmarkDWriteParallel(b *testing.B) {
	n := leaderNode(b)
	cmds := make([]redcon.Command, 16)
	for i := range cmds {
		cmds[i] = redcon.Command{Args: dwriteArgs(64, i)}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			n.handle(discardConn{}, cmds[i%len(cmds)])
			i++
		}
	})
}
