package obs

import (
	"runtime"
	"runtime/metrics"

	"github.com/slotreg/slotreg/proto"
)

// ReadMemory reads the process's Go heap figures; with gc set it first
// runs a full collection, so that they count live memory only.
func ReadMemory(gc bool) proto.MemoryStats {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	out := proto.MemoryStats{
		UsedMemory: ms.HeapAlloc, HeapInuse: ms.HeapInuse, HeapSys: ms.HeapSys,
		HeapReleased: ms.HeapReleased, GCCycles: ms.NumGC,
	}
	if live[0].Value.Kind() == metrics.KindUint64 {
		out.HeapLive = live[0].Value.Uint64()
	}
	return out
}
