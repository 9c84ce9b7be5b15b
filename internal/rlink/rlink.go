// Package rlink is a small RESP client for the inter-node hot path: a
// session's writes to a data node. go-redis serves every other inter-node
// call, but on this path it cost more than the work it carried: it checks
// a pooled connection's health with a syscall before every command, boxes
// each argument in an interface and each reply element in another, and
// allocates a context per call. A Conn here is one connection used by one
// goroutine at a time: it writes a command the caller has already encoded
// and reads the reply into a reused tree.
package rlink

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/tidwall/redcon"
)

// Reply is one RESP value. Str holds a simple string, a bulk string or an
// error's text; Arr an array's elements. A Reply and the slices in it are
// reused by the next Do on the same Conn.
type Reply struct {
	Kind byte // '+', '-', ':', '$', '*'; '_' for a null
	Int  int64
	Str  []byte
	Arr  []Reply
}

// Err returns the reply as an error when it is one.
func (r *Reply) Err() error {
	if r.Kind == '-' {
		return Error(r.Str)
	}
	return nil
}

// Error is an error reply from the server.
type Error string

func (e Error) Error() string { return string(e) }

// Conn is one connection to a RESP server.
type Conn struct {
	nc    net.Conn
	br    *bufio.Reader
	buf   []byte
	reply Reply
	size  int // bytes of the last reply
	// MaxReply bounds a bulk string or array length the server may
	// announce, so a broken peer cannot make the client allocate without
	// limit.
	MaxReply int
}

// Options for Dial.
type Options struct {
	Password string      // sent with AUTH right after connecting, when set
	TLS      *tls.Config // nil for plain TCP
	Timeout  time.Duration
}

// Dial connects to addr and authenticates.
func Dial(addr string, o Options) (*Conn, error) {
	d := net.Dialer{Timeout: o.Timeout}
	var nc net.Conn
	var err error
	if o.TLS != nil {
		nc, err = tls.DialWithDialer(&d, "tcp", addr, o.TLS)
	} else {
		nc, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), MaxReply: 512 << 20}
	if o.Password != "" {
		c.buf = AppendCommand(c.buf[:0], "AUTH", o.Password)
		r, err := c.Do(time.Now().Add(o.Timeout), c.buf)
		if err == nil {
			err = r.Err()
		}
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("auth with %s: %w", addr, err)
		}
	}
	return c, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Do writes cmd, an encoded command (see AppendCommand), and reads its
// reply by deadline. After an error the Conn must be closed.
func (c *Conn) Do(deadline time.Time, cmd []byte) (*Reply, error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := c.nc.Write(cmd); err != nil {
		return nil, err
	}
	// The reply tree is reused, buffers and all, unless the last one was
	// big: a burst of large replies must not stay pinned afterwards.
	if c.size > 64<<10 {
		c.reply = Reply{}
	}
	c.size = 0
	if err := c.read(&c.reply, 0); err != nil {
		return nil, err
	}
	return &c.reply, nil
}

var errProto = errors.New("rlink: malformed reply")

func (c *Conn) line() ([]byte, error) {
	b, err := c.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(b) < 3 || b[len(b)-2] != '\r' {
		return nil, errProto
	}
	return b[:len(b)-2], nil
}

func (c *Conn) read(r *Reply, depth int) error {
	if depth > 8 {
		return errProto
	}
	b, err := c.line()
	if err != nil {
		return err
	}
	c.size += len(b) + 2
	r.Kind = b[0]
	body := b[1:]
	switch r.Kind {
	case '+', '-':
		r.Str = append(r.Str[:0], body...)
	case ':':
		if r.Int, err = strconv.ParseInt(string(body), 10, 64); err != nil {
			return errProto
		}
	case '$':
		n, err := c.length(body)
		if err != nil || n < 0 {
			r.Kind = '_'
			return err
		}
		if cap(r.Str) < n+2 {
			r.Str = make([]byte, n+2)
		}
		r.Str = r.Str[:n+2]
		if _, err := io.ReadFull(c.br, r.Str); err != nil {
			return err
		}
		c.size += n + 2
		r.Str = r.Str[:n]
	case '*':
		n, err := c.length(body)
		if err != nil || n < 0 {
			r.Kind = '_'
			return err
		}
		if cap(r.Arr) < n {
			r.Arr = append(r.Arr[:cap(r.Arr)], make([]Reply, n-cap(r.Arr))...)
		}
		r.Arr = r.Arr[:n]
		for i := range r.Arr {
			if err := c.read(&r.Arr[i], depth+1); err != nil {
				return err
			}
		}
	default:
		return errProto
	}
	return nil
}

// length parses a bulk string's or an array's announced length: -1 is a
// null, more than MaxReply an error.
func (c *Conn) length(body []byte) (int, error) {
	n, err := strconv.Atoi(string(body))
	if err != nil || n > c.MaxReply || n < -1 {
		return 0, errProto
	}
	return n, nil
}

// AppendCommand appends a command of string arguments in RESP.
func AppendCommand(dst []byte, args ...string) []byte {
	dst = redcon.AppendArray(dst, len(args))
	for _, a := range args {
		dst = redcon.AppendBulkString(dst, a)
	}
	return dst
}
