package gcfloor

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		base        int
		live, floor uint64
		want        int
	}{
		{50, 16 * mib, 64 * mib, 400},   // a small heap gets the floor
		{50, 128 * mib, 64 * mib, 50},   // at floor*100/base the base takes over
		{50, 1024 * mib, 64 * mib, 50},  // a large heap keeps the base
		{100, 32 * mib, 64 * mib, 200},  // the runtime's default as base
		{50, 1 * mib, 64 * mib, 2000},   // bounded by MaxPercent
		{3000, 1 * mib, 64 * mib, 3000}, // a base above the bound is kept
		{50, 0, 64 * mib, 50},           // no reading yet
		{50, 16 * mib, 0, 50},           // no floor
		{100, 700 * mib, 64 * mib, 100}, // never below the base
	} {
		if got := Percent(tc.base, tc.live, tc.floor); got != tc.want {
			t.Errorf("Percent(%d, %d MiB, %d MiB) = %d, want %d", tc.base, tc.live/mib, tc.floor/mib, got, tc.want)
		}
	}
}

// The tuner sets the runtime's percent from its own live heap, and
// follows it down as the heap grows.
func TestTunerFollowsTheLiveHeap(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	runtime.GC()
	tu := Start(50, 1<<40, 10*time.Millisecond) // a floor no heap here reaches
	defer tu.Stop()
	if got := tu.Current(); got != MaxPercent {
		t.Fatalf("a small heap under a 1 TiB floor: percent %d, want %d", got, MaxPercent)
	}
	if got := debug.SetGCPercent(MaxPercent); got != MaxPercent {
		t.Fatalf("the runtime's percent is %d, want %d", got, MaxPercent)
	}
	tu.Stop()

	// A floor far below the live heap: the base.
	tu = Start(70, 1, 10*time.Millisecond)
	defer tu.Stop()
	if got := debug.SetGCPercent(70); got != 70 || tu.Current() != 70 {
		t.Fatalf("the runtime's percent is %d (tuner %d), want 70", got, tu.Current())
	}
}
