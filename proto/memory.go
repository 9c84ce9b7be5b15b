package proto

// Memory figures of data and session nodes, for operators and the bench's
// memory scenario.
const (
	// SubMemory is SLOTREG's sub-command for the session's MemoryStats:
	// SLOTREG MEMORY [GC].
	SubMemory = "memory"
	// OptGC asks DSTATS and SLOTREG MEMORY to run a full garbage
	// collection first, so that the figures count live memory only. It
	// costs a collection of the whole heap: for benchmarks and debugging,
	// not for frequent polling.
	OptGC = "gc"
)

// MemoryStats is a node process's Go heap, in bytes. RSS also counts
// garbage not yet collected and freed memory not yet returned to the OS;
// HeapLive is the honest cost of what the node holds.
type MemoryStats struct {
	// UsedMemory is the heap's allocated objects: live ones and garbage
	// not yet swept (runtime.MemStats.HeapAlloc).
	UsedMemory uint64 `json:"used_memory"`
	// HeapInuse is the heap spans holding objects, including their
	// unused slots (HeapInuse).
	HeapInuse uint64 `json:"heap_inuse"`
	// HeapLive is what the last completed collection found live.
	HeapLive uint64 `json:"heap_live"`
	// HeapSys is the heap memory obtained from the OS, and HeapReleased
	// the part of it returned since.
	HeapSys      uint64 `json:"heap_sys"`
	HeapReleased uint64 `json:"heap_released"`
	// GCCycles counts completed collections.
	GCCycles uint32 `json:"gc_cycles"`
}

// ParseMemoryStats parses a SLOTREG MEMORY reply as a RESP client returns
// it (a bulk as string or []byte).
func ParseMemoryStats(v any) (*MemoryStats, error) {
	m := &MemoryStats{}
	if err := parseJSONBulk(v, CmdSlotreg+" "+SubMemory, m); err != nil {
		return nil, err
	}
	return m, nil
}
