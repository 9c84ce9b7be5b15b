package obs

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/slotreg/slotreg/proto"
)

// lastForcedGC is when ReadMemory last forced a collection (unix nanos).
var lastForcedGC atomic.Int64

// ReadMemory reads the process's Go heap figures; with gc set it first
// runs a full collection (at most one a second), so that they count live
// memory only.
func ReadMemory(gc bool) proto.MemoryStats {
	// A forced collection stops the world for a moment: anyone who can
	// send the command could otherwise keep a node collecting, so at most
	// one a second is forced.
	if gc {
		now := time.Now().UnixNano()
		last := lastForcedGC.Load()
		if now-last >= int64(time.Second) && lastForcedGC.CompareAndSwap(last, now) {
			runtime.GC()
		}
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
