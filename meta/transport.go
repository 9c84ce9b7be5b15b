package meta

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is the raft.StreamLayer over a listener the node was given
// or opened, so tests can hand over 127.0.0.1:0 listeners already open. It
// tracks every connection it accepted or dialed and closes them all on
// Close: raft's NetworkTransport does not close inbound connections itself,
// and their handler goroutines would otherwise outlive the node.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newStreamLayer(ln net.Listener, advertise string) *streamLayer {
	return &streamLayer{ln: ln, advertise: tcpAddr(advertise), conns: map[*trackedConn]struct{}{}}
}

// Accept implements net.Listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Addr implements net.Listener: the advertised address, which raft uses as
// this node's address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Close implements net.Listener: it closes the listener and every tracked
// connection. It may be called more than once.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	err := s.ln.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return nil, fmt.Errorf("raft stream layer: %w", net.ErrClosed)
	}
	s.conns[tc] = struct{}{}
	return tc, nil
}

func (s *streamLayer) forget(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
}

// trackedConn removes itself from its stream layer when closed.
type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.forget(c) })
	return c.Conn.Close()
}

// tcpAddr is a net.Addr for an advertised host:port that need not resolve
// locally.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }
