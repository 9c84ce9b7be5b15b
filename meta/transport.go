package meta

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/slotreg/slotreg/internal/netsec"
)

// streamLayer is the raft.StreamLayer over a listener the node was given
// or opened, so tests can hand over 127.0.0.1:0 listeners already open. It
// tracks every connection it accepted or dialed and closes them all on
// Close: raft's NetworkTransport does not close inbound connections itself,
// and their handler goroutines would otherwise outlive the node.
//
// With a cluster secret, every connection opens with the secret
// handshake (netsec.DialHandshake / AcceptHandshake) before raft sees
// it; a peer that fails it is closed and logged, and never reaches raft.
// Accepted connections are then handshaken off the accept path, each on
// its own goroutine, so a peer that connects and says nothing cannot hold
// up the others. With TLS, the listener is a TLS listener and Dial
// speaks TLS; the handshake then runs inside TLS.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	secret    netsec.Secret
	dialTLS   *tls.Config
	log       *slog.Logger

	// ready carries handshaken inbound connections to Accept, when a
	// secret is set; done is closed by Close.
	ready chan net.Conn
	done  chan struct{}
	bg    sync.WaitGroup // the accept loop and the handshakes

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

// handshakeTimeout bounds an inbound handshake; a peer slower than this
// on loopback or a LAN is not a working voter anyway.
const handshakeTimeout = 5 * time.Second

func newStreamLayer(ln net.Listener, advertise string, secret netsec.Secret, serverTLS, dialTLS *tls.Config, log *slog.Logger) *streamLayer {
	s := &streamLayer{ln: netsec.Listen(ln, serverTLS), advertise: tcpAddr(advertise), secret: secret, dialTLS: dialTLS,
		log: log, conns: map[*trackedConn]struct{}{}, done: make(chan struct{})}
	if secret.Enabled() {
		s.ready = make(chan net.Conn)
		s.bg.Add(1)
		go s.acceptLoop()
	}
	return s
}

// Accept implements net.Listener.
func (s *streamLayer) Accept() (net.Conn, error) {
	if s.ready == nil {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		tc, err := s.track(c)
		if err != nil {
			return nil, err
		}
		return tc, nil
	}
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.done:
		return nil, fmt.Errorf("raft stream layer: %w", net.ErrClosed)
	}
}

// acceptLoop accepts connections and handshakes each on its own
// goroutine, handing those that pass to Accept.
func (s *streamLayer) acceptLoop() {
	defer s.bg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A failed accept (out of file descriptors) must not spin.
			s.log.Warn("raft accept failed", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		tc, err := s.track(c)
		if err != nil {
			return
		}
		s.bg.Add(1)
		go s.handshake(tc)
	}
}

func (s *streamLayer) handshake(tc *trackedConn) {
	defer s.bg.Done()
	if err := netsec.AcceptHandshake(tc, s.secret, handshakeTimeout); err != nil {
		s.log.Warn("refused a raft connection", "remote", tc.RemoteAddr().String(), "err", err)
		_ = tc.Close()
		return
	}
	select {
	case s.ready <- tc:
	case <-s.done:
		_ = tc.Close()
	}
}

// Dial implements raft.StreamLayer.
func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := netsec.Dial(string(addr), timeout, s.dialTLS)
	if err != nil {
		return nil, err
	}
	// raft logs a failed dial itself, with this error.
	if err := netsec.DialHandshake(c, s.secret, timeout); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft dial %s: %w", addr, err)
	}
	tc, err := s.track(c)
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// Addr implements net.Listener: the advertised address, which raft uses as
// this node's address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Close implements net.Listener: it closes the listener and every tracked
// connection, and waits for the accept loop and handshakes. It may be
// called more than once.
func (s *streamLayer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.conns
	s.conns = nil
	close(s.done)
	s.mu.Unlock()
	err := s.ln.Close()
	for c := range conns {
		_ = c.Conn.Close()
	}
	s.bg.Wait()
	return err
}

func (s *streamLayer) track(c net.Conn) (*trackedConn, error) {
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
