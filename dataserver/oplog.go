package dataserver

import "github.com/slotreg/slotreg/proto"

// LogEntry is one applied write (see proto.LogEntry).
type LogEntry = proto.LogEntry

// opLog is a slot's bounded, append-only log: a ring that keeps the newest
// entries. A reader that asks for entries older than the ring holds has
// fallen off and must be sent a snapshot of the slot instead.
type opLog struct {
	buf   []LogEntry
	start int    // index of the oldest entry in buf
	n     int    // entries held
	first uint64 // Seq of the oldest entry held (valid when n > 0)
	base  uint64 // the Seq the log starts after: entries <= base are not held
}

// reset empties the log so that it continues after seq (a snapshot at seq
// was installed).
func (l *opLog) reset(seq uint64) {
	l.buf = l.buf[:0]
	l.start, l.n, l.first, l.base = 0, 0, 0, seq
}

func newOpLog(capacity int) *opLog {
	if capacity < 1 {
		capacity = 1
	}
	return &opLog{buf: make([]LogEntry, 0, capacity)}
}

// append adds e; its Seq must be one past the last appended.
func (l *opLog) append(e LogEntry) {
	c := cap(l.buf)
	if len(l.buf) < c {
		l.buf = append(l.buf, e)
		if l.n == 0 {
			l.first = e.Seq
		}
		l.n++
		return
	}
	// Full: overwrite the oldest.
	l.buf[l.start] = e
	l.start = (l.start + 1) % c
	l.first++
}

// since returns up to max entries with Seq > seq, and false if entries
// after seq have already been dropped from the ring (or, after a snapshot
// was installed, were never held).
func (l *opLog) since(seq uint64, max int) ([]LogEntry, bool) {
	if l.n == 0 {
		return nil, seq >= l.base
	}
	if seq+1 < l.first {
		return nil, false
	}
	last := l.first + uint64(l.n) - 1
	if seq >= last {
		return nil, true
	}
	from := seq + 1 - l.first
	cnt := int(last - seq)
	if max > 0 && cnt > max {
		cnt = max
	}
	out := make([]LogEntry, cnt)
	c := cap(l.buf)
	for i := range out {
		out[i] = l.buf[(l.start+int(from)+i)%c]
	}
	return out, true
}

// len is the number of entries held.
func (l *opLog) len() int { return l.n }
