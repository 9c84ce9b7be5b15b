package dataserver

import (
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

var storeHeapProfile = flag.String("store-heap-profile", "", "BenchmarkStoreMemory writes a heap profile of the filled stores here")

// fillOps builds the writes of the bench's memory scenario: n connection-
// bound publishers on services names, over conns connections of one
// session, with 32-byte data. Every string is allocated on its own, as
// ParseDWrite allocates them.
func fillOps(n, services, conns int) []proto.Op {
	ops := make([]proto.Op, n)
	data := "10.1.2.3:12200?weight=100&zone=a"
	for i := range ops {
		ops[i] = proto.Op{
			Type:       proto.OpRegister,
			DataInfoID: string([]byte("bench-mem-abcdef-svc-" + strconv.Itoa(i%services))),
			RegisterID: "r" + strconv.Itoa(i),
			Data:       string([]byte(data)),
			ConnID:     "m1a2b3c4d5e6." + strconv.Itoa(i%conns),
		}
	}
	return ops
}

// BenchmarkStoreMemory fills one copy of every slot with the memory
// scenario's publishers as a leader would and reports the heap each
// publisher costs, and what of it is beyond its own strings.
func BenchmarkStoreMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchStoreMemory(b, n) })
	}
}

func benchStoreMemory(b *testing.B, n int) {
	const services, conns = 10000, 50
	var perPub, own float64
	for b.Loop() {
		b.StopTimer()
		base := testutil.HeapInuse()
		ops := fillOps(n, services, conns)
		for i := range ops {
			own += float64(len(ops[i].RegisterID) + len(ops[i].Data))
		}
		own += float64(services * len(ops[0].DataInfoID))
		b.StartTimer()
		var stores [slot.Count]*slotStore
		for s := range stores {
			stores[s] = newSlotStore(1, 4096)
		}
		for i := range ops {
			op := &ops[i]
			stores[slot.Of(op.DataInfoID)].apply("session-1", op, 0)
		}
		b.StopTimer()
		// Whatever of ops the stores did not keep is garbage now.
		ops = nil
		perPub += float64(testutil.HeapInuse()-base) / float64(n)
		if *storeHeapProfile != "" {
			f, err := os.Create(*storeHeapProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		runtime.KeepAlive(stores)
		b.StartTimer()
	}
	b.ReportMetric(perPub/float64(b.N), "heapB/pub")
	b.ReportMetric((perPub-own/float64(n))/float64(b.N), "beyond-data-B/pub")
}

// BenchmarkStoreApplyNew registers new publishers, 100 to a service, as
// the leader of one slot.
func BenchmarkStoreApplyNew(b *testing.B) {
	ops := fillOps(1<<16, 1<<16/100, 50)
	s := newSlotStore(1, 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(ops) {
			b.StopTimer()
			s = newSlotStore(1, 4096)
			i = 0
			b.StartTimer()
		}
		s.apply("session-1", &ops[i], 0)
		i++
	}
}

// BenchmarkStoreRegisterUnregister adds and removes a publisher of a
// service that has 100.
func BenchmarkStoreRegisterUnregister(b *testing.B) {
	s := newSlotStore(1, 4096)
	for _, op := range fillOps(100, 1, 1) {
		s.apply("session-1", &op, 0)
	}
	op := reg("bench-mem-abcdef-svc-0", "r50x", "10.1.2.3:12200?weight=100&zone=a", "m1a2b3c4d5e6.0", 0)
	un := &proto.Op{Type: proto.OpUnregister, DataInfoID: op.DataInfoID, RegisterID: op.RegisterID, ConnID: op.ConnID}
	b.ReportAllocs()
	for b.Loop() {
		s.apply("session-1", op, 0)
		s.apply("session-1", un, 0)
	}
}

// BenchmarkReplay applies a leader's entries on a follower, as a pull
// reply delivers them.
func BenchmarkReplay(b *testing.B) {
	leader := newSlotStore(1, 1<<16)
	ops := fillOps(1<<16, 1<<16/100, 50)
	for i := range ops {
		leader.apply("session-1", &ops[i], 0)
	}
	es, _ := leader.log.since(0, 0)
	f := newSlotStore(1, 4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(es) {
			b.StopTimer()
			f, i = newSlotStore(1, 4096), 0
			b.StartTimer()
		}
		f.replay(&es[i], 0)
		i++
	}
}

// BenchmarkOpLogSince reads a full pull batch of 4096 entries, as a
// leader answering a follower's DPULL does.
func BenchmarkOpLogSince(b *testing.B) {
	s := newSlotStore(1, 4096)
	ops := fillOps(8192, 80, 50)
	for i := range ops {
		s.apply("session-1", &ops[i], 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		if es, ok := s.log.since(s.seq-4096, 4096); !ok || len(es) != 4096 {
			b.Fatal(len(es), ok)
		}
	}
}
