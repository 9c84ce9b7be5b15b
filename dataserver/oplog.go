package dataserver

import "github.com/slotreg/slotreg/proto"

// LogEntry is one applied write (see proto.LogEntry).
type LogEntry = proto.LogEntry

// opLogMaxBytes bounds the string bytes a slot's op-log keeps (registerIds
// and data), whatever its entry count: with 64 KiB data, 4096 entries
// would hold 256 MiB a slot of superseded publishers. Most bytes counted
// are shared with live publishers, so the bound is conservative.
const opLogMaxBytes = 4 << 20

// logEntry is one applied write as the op-log holds it. It shares its
// strings with the store: the datum (its dataInfoId), the publisher
// (registerId and data, as publisher.kv) and the interned owner (session
// and connection), so an entry costs its 48 bytes and not a copy of the
// publisher. Its Seq is its place in the ring. Only a register carries
// data; the entries of other ops keep their registerId's publisher's kv
// and read only the registerId from it.
type logEntry struct {
	version uint64
	d       *datum // nil for a touch
	kv      string
	own     *owner // the writer's session and the op's connection
	ttl     uint32
	typ     proto.OpType
}

// size is what e counts against opLogMaxBytes.
func (e *logEntry) size() int { return len(e.kv) }

// wire is e as followers receive it.
func (e *logEntry) wire(seq uint64) LogEntry {
	out := LogEntry{Seq: seq, Version: e.version, Session: e.own.session,
		Op: proto.Op{Type: e.typ, ConnID: e.own.conn, TTL: e.ttl, Zone: e.own.at.zone}, DC: e.own.at.dc}
	if e.d != nil {
		out.Op.DataInfoID = e.d.id
	}
	if e.kv != "" {
		rid, data := splitKV(e.kv)
		out.Op.RegisterID = rid
		if e.typ == proto.OpRegister || e.typ == proto.OpRemotePut {
			out.Op.Data = data
		}
	}
	return out
}

// opLog is a slot's bounded, append-only log: a ring that keeps the newest
// entries, at most max of them and about maxBytes of their strings. The
// ring grows as entries come, so a quiet slot costs little. A reader that
// asks for entries older than the ring holds has fallen off and must be
// sent a snapshot of the slot instead.
type opLog struct {
	buf      []logEntry
	max      int    // entries kept at most
	maxBytes int    // string bytes kept at most (the newest entry is always kept)
	bytes    int    // string bytes of the entries held
	start    int    // index of the oldest entry in buf
	n        int    // entries held
	first    uint64 // Seq of the oldest entry held (valid when n > 0)
	base     uint64 // the Seq the log starts after: entries <= base are not held
}

func newOpLog(capacity, maxBytes int) *opLog {
	return &opLog{max: max(capacity, 1), maxBytes: maxBytes}
}

// reset empties the log so that it continues after seq (a snapshot at seq
// was installed).
func (l *opLog) reset(seq uint64) {
	clear(l.buf)
	l.start, l.n, l.first, l.base, l.bytes = 0, 0, 0, seq, 0
}

// append adds e as entry seq, which must be one past the last appended.
func (l *opLog) append(seq uint64, e logEntry) {
	if l.n == 0 {
		l.start, l.first = 0, seq
	}
	if l.n == len(l.buf) && len(l.buf) < l.max {
		l.grow()
	}
	if l.n == len(l.buf) {
		l.dropOldest()
	}
	l.buf[(l.start+l.n)%len(l.buf)] = e
	l.n++
	l.bytes += e.size()
	for l.bytes > l.maxBytes && l.n > 1 {
		l.dropOldest()
	}
}

// grow doubles the ring, up to max, keeping the entries in order.
func (l *opLog) grow() {
	nb := make([]logEntry, min(max(2*len(l.buf), 64), l.max))
	for i := 0; i < l.n; i++ {
		nb[i] = l.buf[(l.start+i)%len(l.buf)]
	}
	l.buf, l.start = nb, 0
}

func (l *opLog) dropOldest() {
	e := &l.buf[l.start]
	l.bytes -= e.size()
	*e = logEntry{} // its strings may be the only reference left
	l.start = (l.start + 1) % len(l.buf)
	l.n--
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
	from := int(seq + 1 - l.first)
	cnt := int(last - seq)
	if max > 0 && cnt > max {
		cnt = max
	}
	out := make([]LogEntry, cnt)
	for i := range out {
		out[i] = l.buf[(l.start+from+i)%len(l.buf)].wire(seq + 1 + uint64(i))
	}
	return out, true
}

// len is the number of entries held.
func (l *opLog) len() int { return l.n }
