package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestDelayQueueOrderAndTiming(t *testing.T) {
	q := newDelayQueue(200*time.Millisecond, 0, nil)
	t0 := time.Now()
	// Many packets in flight at once, a millisecond apart: each is due
	// 200 ms after it came, not 200 ms after the previous one left.
	for i := range 100 {
		if !q.Add(uint32(i), t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("packet %d dropped with no loss", i)
		}
	}
	if ids, next, ok := q.Due(t0.Add(199 * time.Millisecond)); len(ids) != 0 || !ok || !next.Equal(t0.Add(200*time.Millisecond)) {
		t.Fatalf("before the delay: released %v, next %v %v", ids, next.Sub(t0), ok)
	}
	ids, next, ok := q.Due(t0.Add(200*time.Millisecond + 9*time.Millisecond + 500*time.Microsecond))
	if want := []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(ids, want) {
		t.Fatalf("at 209.5ms: released %v, want %v", ids, want)
	}
	if !ok || !next.Equal(t0.Add(210*time.Millisecond)) {
		t.Fatalf("next due %v %v, want 210ms", next.Sub(t0), ok)
	}
	// All 100 are out within 100 ms of the first: throughput is not one
	// packet per delay.
	ids, _, ok = q.Due(t0.Add(299 * time.Millisecond))
	if len(ids) != 90 || ids[0] != 10 || ids[89] != 99 || ok || q.Len() != 0 {
		t.Fatalf("at 299ms: released %d (%v..), more %v, left %d", len(ids), ids[:min(len(ids), 3)], ok, q.Len())
	}
}

func TestDelayQueueKeepsOrderWhenTheClockStepsBack(t *testing.T) {
	q := newDelayQueue(50*time.Millisecond, 0, nil)
	t0 := time.Now()
	q.Add(1, t0)
	q.Add(2, t0.Add(-10*time.Millisecond))
	if ids, _, _ := q.Due(t0.Add(45 * time.Millisecond)); len(ids) != 0 {
		t.Fatalf("released %v before the first was due", ids)
	}
	if ids, _, _ := q.Due(t0.Add(50 * time.Millisecond)); !slices.Equal(ids, []uint32{1, 2}) {
		t.Fatalf("released %v, want [1 2]", ids)
	}
}

func TestDelayQueueLoss(t *testing.T) {
	t0 := time.Now()
	count := func(loss float64) int {
		q := newDelayQueue(time.Millisecond, loss, rand.New(rand.NewPCG(1, 2)).Float64)
		kept := 0
		for i := range 10000 {
			if q.Add(uint32(i), t0) {
				kept++
			}
		}
		if q.Len() != kept {
			t.Fatalf("loss %v: %d kept but %d queued", loss, kept, q.Len())
		}
		return kept
	}
	if n := count(0); n != 10000 {
		t.Errorf("loss 0: kept %d of 10000", n)
	}
	if n := count(1); n != 0 {
		t.Errorf("loss 1: kept %d of 10000", n)
	}
	if n := count(0.3); n < 6700 || n > 7300 {
		t.Errorf("loss 0.3: kept %d of 10000, want about 7000", n)
	}
}

func TestDelayQueueDrain(t *testing.T) {
	q := newDelayQueue(time.Hour, 0.5, rand.New(rand.NewPCG(3, 4)).Float64)
	t0 := time.Now()
	var kept []uint32
	for i := range 20 {
		if q.Add(uint32(i), t0) {
			kept = append(kept, uint32(i))
		}
	}
	if got := q.Drain(); !slices.Equal(got, kept) {
		t.Fatalf("drain: %v, want %v", got, kept)
	}
	// After a drain nothing is delayed or dropped.
	for i := range 100 {
		if !q.Add(uint32(100+i), t0) {
			t.Fatalf("packet dropped after drain")
		}
	}
	if ids, _, ok := q.Due(t0); len(ids) != 100 || ok {
		t.Fatalf("after drain: released %d at once, more %v", len(ids), ok)
	}
}

func TestAttrPadding(t *testing.T) {
	a := attr(2, []byte{1, 2, 3, 4, 5})
	if len(a) != 12 || a[0] != 9 || a[2] != 2 {
		t.Fatalf("attr: % x", a)
	}
	p, ok := parsePacket(append(attr(nfqaPacketHdr, []byte{0, 0, 1, 2, 8, 0, hookLocalOut}), attr(9, []byte{1})...))
	if !ok || p.id != 258 || p.hook != hookLocalOut {
		t.Fatalf("parsePacket: %+v %v", p, ok)
	}
}
