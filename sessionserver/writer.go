package sessionserver

import (
	"net"
	"time"

	"github.com/tidwall/redcon"
)

// respWriter buffers a client's replies and pushes. Unlike redcon.Writer
// it tells how much it holds, so the session can bound what one client
// makes it buffer, and every flush has a deadline, so a client that stops
// reading cannot hold a goroutine forever.
type respWriter struct {
	nc  net.Conn
	b   []byte
	err error     // sticky: once a flush failed, the connection is done
	dl  time.Time // the write deadline set on nc
}

func newRespWriter(nc net.Conn) *respWriter { return &respWriter{nc: nc} }

// Len is the number of bytes written but not flushed.
func (w *respWriter) Len() int { return len(w.b) }

// The Write methods append one RESP value each, as redcon.Writer's do.

func (w *respWriter) WriteError(msg string)    { w.b = redcon.AppendError(w.b, msg) }
func (w *respWriter) WriteString(msg string)   { w.b = redcon.AppendString(w.b, msg) }
func (w *respWriter) WriteBulk(b []byte)       { w.b = redcon.AppendBulk(w.b, b) }
func (w *respWriter) WriteBulkString(s string) { w.b = redcon.AppendBulkString(w.b, s) }
func (w *respWriter) WriteInt(n int)           { w.b = redcon.AppendInt(w.b, int64(n)) }
func (w *respWriter) WriteUint64(n uint64)     { w.b = redcon.AppendUint(w.b, n) }
func (w *respWriter) WriteInt64(n int64)       { w.b = redcon.AppendInt(w.b, n) }
func (w *respWriter) WriteArray(n int)         { w.b = redcon.AppendArray(w.b, n) }
func (w *respWriter) WriteNull()               { w.b = redcon.AppendNull(w.b) }
func (w *respWriter) WriteRaw(b []byte)        { w.b = append(w.b, b...) }

// Flush writes what is buffered, giving the client between 3/4 of stall
// and stall to take it. The deadline is moved only when less than 3/4 of
// stall is left of it, not twice on every flush: setting it costs as much
// as a tenth of a small write. A buffer grown large by one burst is let go
// afterwards.
func (w *respWriter) Flush(stall time.Duration) error {
	if w.err != nil {
		return w.err
	}
	if len(w.b) == 0 {
		return nil
	}
	if stall > 0 {
		if now := time.Now(); w.dl.Sub(now) < stall-stall/4 {
			w.dl = now.Add(stall)
			w.nc.SetWriteDeadline(w.dl)
		}
	}
	_, w.err = w.nc.Write(w.b)
	if cap(w.b) > 1<<20 || w.err != nil {
		w.b = nil
	} else {
		w.b = w.b[:0]
	}
	return w.err
}
