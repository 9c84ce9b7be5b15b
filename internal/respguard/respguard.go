// Package respguard bounds what a RESP peer can make a server buffer.
//
// redcon's reader grows its buffer until a whole command has arrived, so a
// peer that announces a bulk of a gigabyte and then trickles bytes would
// make the server hold all of them. A guarded connection follows the
// request framing as the bytes are read (array headers, bulk headers and
// bodies, inline lines) and fails the read as soon as one command would go
// over the limit: at the header that announces it, before the bytes come.
//
// It only measures; it never parses commands for the server and never
// rejects what it does not understand (the RESP reader above it does that).
package respguard

import (
	"fmt"
	"net"
)

// LimitError is the read error of a connection whose peer went over a
// limit. Its text names the limit, so it can go back to the peer as is.
type LimitError struct {
	Limit string // the limit's name as the operator sets it
	Max   int64
	Got   int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Protocol error: request of %d bytes is over the %s limit of %d bytes", e.Got, e.Limit, e.Max)
}

// maxHeader bounds a header line: '*' or '$', 20 digits, "\r\n".
const maxHeader = 32

type state uint8

const (
	stStart    state = iota // at the first byte of a command
	stArrayLen              // in "*<n>\r\n"
	stBulkHdr               // at '$' of the next bulk
	stBulkLen               // in "$<n>\r\n"
	stBulkBody              // skipping a bulk's bytes and its "\r\n"
	stInline                // in an inline command line
	stOff                   // the stream is malformed: the reader above will say so
)

// Scanner follows the framing of a RESP request stream and measures each
// command. The zero value is not usable; use NewScanner.
type Scanner struct {
	name    string
	max     int64
	st      state
	num     int64 // the number being read
	digits  int
	neg     bool
	hdr     int   // bytes of the header line so far
	args    int64 // bulks left in the current array
	skip    int64 // body bytes left, "\r\n" included
	command int64 // bytes of the current command so far
}

// NewScanner measures commands against max bytes each; name is the
// limit's name for errors.
func NewScanner(name string, max int64) *Scanner {
	return &Scanner{name: name, max: max}
}

func (s *Scanner) over(n int64) error {
	return &LimitError{Limit: s.name, Max: s.max, Got: n}
}

// Scan takes the next bytes of the stream. It returns a *LimitError once a
// command goes over the limit, or is announced to.
func (s *Scanner) Scan(b []byte) error {
	for i := 0; i < len(b); {
		switch s.st {
		case stOff:
			return nil
		case stStart:
			s.command = 0
			if b[i] == '*' {
				s.st, s.num, s.digits, s.neg, s.hdr = stArrayLen, 0, 0, false, 1
			} else {
				s.st = stInline
			}
			s.command++
			i++
		case stInline:
			j := i
			for j < len(b) && b[j] != '\n' {
				j++
			}
			s.command += int64(j - i)
			if s.command > s.max {
				return s.over(s.command)
			}
			if j < len(b) {
				s.command++
				s.st = stStart
				j++
			}
			i = j
		case stArrayLen, stBulkLen:
			c := b[i]
			i++
			s.command++
			s.hdr++
			switch {
			case c >= '0' && c <= '9' && s.digits < 19:
				s.num = s.num*10 + int64(c-'0')
				s.digits++
			case c == '-' && s.digits == 0 && !s.neg:
				s.neg = true
			case c == '\r':
			case c == '\n':
				if s.digits == 0 {
					s.st = stOff
					continue
				}
				if err := s.endHeader(); err != nil {
					return err
				}
				continue
			default:
				s.st = stOff
				continue
			}
			if s.hdr > maxHeader {
				s.st = stOff
			}
		case stBulkHdr:
			if b[i] != '$' {
				s.st = stOff
				continue
			}
			s.st, s.num, s.digits, s.neg, s.hdr = stBulkLen, 0, 0, false, 1
			s.command++
			i++
		case stBulkBody:
			n := int64(len(b) - i)
			if n > s.skip {
				n = s.skip
			}
			s.skip -= n
			i += int(n)
			if s.skip == 0 {
				s.nextArg()
			}
		}
	}
	return nil
}

// endHeader acts on a header line just read.
func (s *Scanner) endHeader() error {
	if s.neg {
		// "*-1" or "$-1": not a request; the reader above refuses it.
		s.st = stOff
		return nil
	}
	if s.st == stArrayLen {
		// Each bulk takes at least 4 bytes ("$0\r\n\r\n" is 6), so the
		// count alone can say the command will not fit.
		if s.command+s.num*6 > s.max {
			return s.over(s.command + s.num*6)
		}
		s.args = s.num
		if s.args == 0 {
			s.st = stStart
		} else {
			s.st = stBulkHdr
		}
		return nil
	}
	if s.command+s.num+2 > s.max {
		return s.over(s.command + s.num + 2)
	}
	s.command += s.num + 2
	s.skip = s.num + 2
	s.st = stBulkBody
	if s.skip == 0 {
		s.nextArg()
	}
	return nil
}

func (s *Scanner) nextArg() {
	s.args--
	if s.args <= 0 {
		s.st = stStart
	} else {
		s.st = stBulkHdr
	}
}

// Conn is a net.Conn whose reads are measured by a Scanner. Once a command
// goes over the limit, the bytes of that read are still handed over (the
// whole commands before it are served), and every later read fails with
// the *LimitError, so the oversize command is never completed.
type Conn struct {
	net.Conn
	s       *Scanner
	err     error
	onLimit func(net.Conn, *LimitError)
}

// Wrap guards c with a limit of max bytes a command (0 or less: no
// guard). onLimit, if set, hears of the peer going over it, once.
func Wrap(c net.Conn, name string, max int64, onLimit func(net.Conn, *LimitError)) net.Conn {
	if max <= 0 {
		return c
	}
	return &Conn{Conn: c, s: NewScanner(name, max), onLimit: onLimit}
}

// NetConn is the connection it guards (as tls.Conn's NetConn).
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if serr := c.s.Scan(p[:n]); serr != nil {
			c.err = serr
			if le, ok := serr.(*LimitError); ok && c.onLimit != nil {
				c.onLimit(c.Conn, le)
			}
		}
	}
	return n, err
}

// Listener guards every connection it accepts.
type Listener struct {
	net.Listener
	name    string
	max     int64
	onLimit func(net.Conn, *LimitError)
}

// Listen wraps ln so each accepted connection is guarded with max bytes a
// command (0 or less: ln itself); onLimit as for Wrap.
func Listen(ln net.Listener, name string, max int64, onLimit func(net.Conn, *LimitError)) net.Listener {
	if max <= 0 {
		return ln
	}
	return &Listener{Listener: ln, name: name, max: max, onLimit: onLimit}
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.name, l.max, l.onLimit), nil
}
