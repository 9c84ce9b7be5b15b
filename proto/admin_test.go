package proto

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDataStatsRoundTrip(t *testing.T) {
	in := &DataStats{Node: "d1", Slots: []SlotStats{
		{Slot: 0, Role: RoleLeader, LeaderEpoch: 3, Seq: 1 << 40, Publishers: 12, Datums: 4, Hash: 1<<64 - 1, Ready: true,
			Sessions: map[string]Digest{"s1": {Count: 7, Sum: 1<<63 + 5}, "s2": {Count: 5, Sum: 9}}},
		{Slot: 255, Role: RoleFollower, LeaderEpoch: 2, Seq: 17, Publishers: 1, Datums: 1, Hash: 42},
	}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	// The wire names are the contract with the data nodes.
	for _, key := range []string{`"node":`, `"slots":`, `"slot":`, `"role":"leader"`, `"leaderEpoch":`, `"seq":`,
		`"publishers":`, `"datums":`, `"hash":18446744073709551615`, `"ready":`, `"sessions":`, `"count":7`, `"sum":`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("DSTATS JSON %s lacks %s", b, key)
		}
	}
	if strings.Count(string(b), `"sessions"`) != 1 {
		t.Errorf("a follower's slot carries sessions: %s", b)
	}
	for _, v := range []any{string(b), b} {
		out, err := ParseDataStats(v)
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	for _, v := range []any{nil, int64(3), "", "{", `{"slots":3}`} {
		if _, err := ParseDataStats(v); err == nil {
			t.Errorf("ParseDataStats(%#v) succeeded", v)
		}
	}
}

func TestSessionDigestsRoundTrip(t *testing.T) {
	in := &SessionDigests{Node: "s1", Slots: map[int]Digest{0: {Count: 1, Sum: 2}, 255: {Count: 3, Sum: 1<<64 - 1}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"node":"s1","slots":{"0":{"count":1,"sum":2},"255":{"count":3,"sum":18446744073709551615}}}`; string(b) != want {
		t.Fatalf("SLOTREG DIGESTS JSON %s, want %s", b, want)
	}
	for _, v := range []any{string(b), b} {
		out, err := ParseSessionDigests(v)
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	for _, v := range []any{nil, "[]", `{"slots":{"x":{}}}`, `{"slots":{"256":{"count":1}}}`, `{"slots":{"-1":{"count":1}}}`} {
		if _, err := ParseSessionDigests(v); err == nil {
			t.Errorf("ParseSessionDigests(%#v) succeeded", v)
		}
	}
}

func TestMemoryStatsRoundTrip(t *testing.T) {
	in := &MemoryStats{UsedMemory: 1, HeapInuse: 2, HeapLive: 3, HeapSys: 4, HeapReleased: 5, GCCycles: 6}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"used_memory":1,"heap_inuse":2,"heap_live":3,"heap_sys":4,"heap_released":5,"gc_cycles":6}`; string(b) != want {
		t.Fatalf("SLOTREG MEMORY JSON %s, want %s", b, want)
	}
	for _, v := range []any{string(b), b} {
		out, err := ParseMemoryStats(v)
		if err != nil || *out != *in {
			t.Fatalf("round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	// DSTATS carries the same object under "memory", and only when set.
	ds := &DataStats{Node: "d1", Memory: in}
	b, _ = json.Marshal(ds)
	out, err := ParseDataStats(b)
	if err != nil || out.Memory == nil || *out.Memory != *in {
		t.Fatalf("DSTATS memory round trip: %+v, %v", out, err)
	}
	if b, _ = json.Marshal(&DataStats{Node: "d1"}); strings.Contains(string(b), "memory") {
		t.Fatalf("DSTATS without memory figures: %s", b)
	}
	if _, err := ParseMemoryStats("["); err == nil {
		t.Fatal("ParseMemoryStats of bad JSON succeeded")
	}
}
