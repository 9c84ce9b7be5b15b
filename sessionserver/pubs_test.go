package sessionserver

import (
	"runtime"
	"sort"
	"strconv"
	"testing"
	"unsafe"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func testNode() *Node {
	n := &Node{}
	n.cfg.Limits.MaxPublishersPerConn = 1 << 30
	n.pubs.init()
	return n
}

func regOp(id, rid, data string, c *clientConn) *proto.Op {
	return &proto.Op{Type: proto.OpRegister, DataInfoID: id, RegisterID: rid, Data: data, ConnID: c.id}
}

// The registry's digest is always the one its DSYNC list sums to, as
// publishers are added, replaced and removed, and a connection removes
// only what it still owns.
func TestPubRegistryKeepsDigestAndOwners(t *testing.T) {
	n := testNode()
	c1 := &clientConn{n: n, id: "inc.1", owned: map[pubKey]struct{}{}}
	c2 := &clientConn{n: n, id: "inc.2", owned: map[pubKey]struct{}{}}
	r := &n.pubs
	k := r.put(regOp("svc", "a", "x", c1), c1)
	r.put(regOp("svc", "b", "y", c1), c1)
	r.put(regOp("svc", "a", "x2", c2), c2) // c2 takes "a" over
	r.put(regOp("other", "a", "z", c2), c2)
	if r.count() != 3 {
		t.Fatalf("count = %d", r.count())
	}
	if r.remove(k, c1) {
		t.Fatal("c1 removed the publisher c2 took over")
	}
	check := func() {
		t.Helper()
		for s := 0; s < slot.Count; s++ {
			var want proto.Digest
			for _, p := range r.syncList(s) {
				if slot.Of(p.DataInfoID) != s {
					t.Fatalf("%s listed in slot %d", p.DataInfoID, s)
				}
				want.Add(proto.PubHash(p.DataInfoID, p.RegisterID, p.Data, p.Conn))
			}
			if got := r.digestOf(s); got != want {
				t.Fatalf("slot %d: digest %+v, list sums to %+v", s, got, want)
			}
		}
	}
	check()
	list := r.syncList(slot.Of("svc"))
	sort.Slice(list, func(i, j int) bool { return list[i].RegisterID < list[j].RegisterID })
	if slot.Of("svc") != slot.Of("other") && (len(list) != 2 || list[0].Data != "x2" || list[0].Conn != "inc.2" || list[1].Conn != "inc.1") {
		t.Fatalf("svc list %+v", list)
	}
	if !r.remove(k, c2) || r.remove(k, nil) {
		t.Fatal("the owner could not remove its publisher, or it was removed twice")
	}
	if !r.remove(pubKey{"svc", "b"}, nil) || !r.remove(pubKey{"other", "a"}, c2) {
		t.Fatal("remove failed")
	}
	check()
	if r.count() != 0 || len(r.slots[slot.Of("svc")].m) != 0 {
		t.Fatalf("count %d, services left %d", r.count(), len(r.slots[slot.Of("svc")].m))
	}
}

// A connection keeps the registry's copy of a service name, not its own.
func TestPubRegistrySharesTheServiceName(t *testing.T) {
	n := testNode()
	c := &clientConn{n: n, id: "inc.1", owned: map[pubKey]struct{}{}}
	first := string([]byte("svc"))
	n.pubs.put(regOp(first, "a", "x", c), c)
	k := n.pubs.put(regOp(string([]byte("svc")), "b", "y", c), c)
	if unsafe.StringData(k.dataInfoID) != unsafe.StringData(first) {
		t.Fatal("the key holds the op's copy of the service name")
	}
}

// BenchmarkPubRegistryMemory registers the memory scenario's publishers
// (1M over 10,000 services and 50 connections, 32-byte data) as a
// session's connections do, and reports the heap a publisher costs.
func BenchmarkPubRegistryMemory(b *testing.B) {
	const total, services, conns = 1_000_000, 10000, 50
	var perPub float64
	for b.Loop() {
		b.StopTimer()
		base := testutil.HeapInuse()
		n := testNode()
		cs := make([]*clientConn, conns)
		for i := range cs {
			cs[i] = &clientConn{n: n, id: "m1a2b3c4d5e6." + strconv.Itoa(i), owned: map[pubKey]struct{}{}}
		}
		b.StartTimer()
		for i := 0; i < total; i++ {
			c := cs[i%conns]
			op := regOp(string([]byte("bench-mem-abcdef-svc-"+strconv.Itoa(i%services))), "r"+strconv.Itoa(i),
				string([]byte("10.1.2.3:12200?weight=100&zone=a")), c)
			if err := c.own(pubKey{op.DataInfoID, op.RegisterID}, op); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		perPub += float64(testutil.HeapInuse()-base) / total
		runtime.KeepAlive(cs)
		b.StartTimer()
	}
	b.ReportMetric(perPub/float64(b.N), "heapB/pub")
}
