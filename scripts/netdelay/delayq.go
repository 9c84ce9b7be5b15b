package main

import (
	"sync"
	"time"
)

// pending is one queued packet: its nfqueue id and when it is due.
type pending struct {
	id  uint32
	due time.Time
}

// delayQueue holds the packets taken from the queue until their delay has
// passed. Every packet gets the same delay, so the packets fall due in the
// order they arrived: a FIFO is already sorted by due time, and releasing
// from its head keeps the order of the packets (and so of each direction)
// while any number of them are in flight at once.
type delayQueue struct {
	mu      sync.Mutex
	delay   time.Duration
	loss    float64        // probability 0..1 that a packet is dropped
	rnd     func() float64 // uniform in [0,1)
	items   []pending
	head    int
	lastDue time.Time
}

func newDelayQueue(delay time.Duration, loss float64, rnd func() float64) *delayQueue {
	return &delayQueue{delay: delay, loss: loss, rnd: rnd}
}

// Add takes packet id, seen at now. It returns false if the packet is to
// be dropped (with the queue's loss probability) and true if it was
// queued; it then falls due delay after now, but never before a packet
// added earlier (so the order holds even if the clock steps back).
func (q *delayQueue) Add(id uint32, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.loss > 0 && (q.loss >= 1 || q.rnd() < q.loss) {
		return false
	}
	due := now.Add(q.delay)
	if due.Before(q.lastDue) {
		due = q.lastDue
	}
	q.lastDue = due
	q.items = append(q.items, pending{id: id, due: due})
	return true
}

// Due removes and returns, oldest first, the packets due at now, and
// says when the next one falls due (ok is false when none is left).
func (q *delayQueue) Due(now time.Time) (ids []uint32, next time.Time, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head < len(q.items) && !q.items[q.head].due.After(now) {
		ids = append(ids, q.items[q.head].id)
		q.head++
	}
	q.compact()
	if q.head < len(q.items) {
		return ids, q.items[q.head].due, true
	}
	return ids, time.Time{}, false
}

// Drain removes and returns every queued packet, oldest first, and turns
// the delay and the loss off for the packets added after it.
func (q *delayQueue) Drain() []uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]uint32, 0, len(q.items)-q.head)
	for _, p := range q.items[q.head:] {
		ids = append(ids, p.id)
	}
	q.items, q.head = q.items[:0], 0
	q.delay, q.loss, q.lastDue = 0, 0, time.Time{}
	return ids
}

// Len is the number of queued packets.
func (q *delayQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// compact drops the released head of the slice once it is most of it.
func (q *delayQueue) compact() {
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		return
	}
	if q.head > 1024 && q.head > len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		q.items, q.head = q.items[:n], 0
	}
}
