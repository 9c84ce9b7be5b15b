package netsec

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The stream handshake opens every connection of a byte-stream protocol
// that has no AUTH command of its own (the meta nodes' Raft transport)
// when the cluster has a secret. It is a challenge and response with
// HMAC-SHA256 in both directions, so the secret never crosses the wire,
// a recorded handshake cannot be replayed (each side brings a fresh
// nonce), and the dialer learns that the listener knows the secret too
// before it sends anything of value:
//
//	dialer   -> listener: magic (8 bytes) | dialer nonce Nd (32)
//	listener -> dialer:   listener nonce Nl (32)
//	dialer   -> listener: HMAC(secret, "slotreg dialer" | Nd | Nl) (32)
//	listener -> dialer:   1 | HMAC(secret, "slotreg listener" | Nd | Nl) (32)
//	                      or 0, and the listener closes
//
// The labels keep the two proofs apart, so the listener's proof can never
// serve as a dialer's. The listener tries every accepted secret (rotation)
// and proves itself with the one that matched, which is the dialer's.
// The handshake authenticates the peer at connection start only; against
// an attacker who can alter traffic in flight, run the link over TLS too.

const (
	nonceSize = 32
	macSize   = sha256.Size
	// DefaultHandshakeTimeout bounds a handshake when the caller has no
	// deadline of its own.
	DefaultHandshakeTimeout = 5 * time.Second
)

var (
	magic          = []byte("SLOTRGH1")
	labelDialer    = []byte("slotreg dialer")
	labelListener  = []byte("slotreg listener")
	statusAccepted = byte(1)
	statusRefused  = byte(0)
)

// ErrHandshake is wrapped by every handshake failure: a peer that does
// not know the secret, speaks another protocol, or sent too little.
var ErrHandshake = errors.New("cluster secret handshake failed")

func proof(secret string, label, nd, nl []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(label)
	m.Write(nd)
	m.Write(nl)
	return m.Sum(nil)
}

// deadline sets conn's deadline for the handshake and returns a function
// that clears it, so the protocol that follows is not bound by it.
func deadline(conn net.Conn, timeout time.Duration) func() {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	return func() { _ = conn.SetDeadline(time.Time{}) }
}

// DialHandshake runs the dialer's side on a fresh connection with the
// node's current secret, within timeout. On error the caller must close
// conn.
func DialHandshake(conn net.Conn, secret Secret, timeout time.Duration) error {
	if !secret.Enabled() {
		return nil
	}
	defer deadline(conn, timeout)()
	nd := make([]byte, nonceSize)
	if _, err := rand.Read(nd); err != nil {
		return fmt.Errorf("%w: nonce: %w", ErrHandshake, err)
	}
	if _, err := conn.Write(append(append([]byte{}, magic...), nd...)); err != nil {
		return fmt.Errorf("%w: send hello: %w", ErrHandshake, err)
	}
	nl := make([]byte, nonceSize)
	if _, err := io.ReadFull(conn, nl); err != nil {
		return fmt.Errorf("%w: read the listener's nonce (does it have a cluster secret?): %w", ErrHandshake, err)
	}
	if _, err := conn.Write(proof(secret.Current, labelDialer, nd, nl)); err != nil {
		return fmt.Errorf("%w: send proof: %w", ErrHandshake, err)
	}
	reply := make([]byte, 1+macSize)
	if _, err := io.ReadFull(conn, reply[:1]); err != nil {
		return fmt.Errorf("%w: read the verdict: %w", ErrHandshake, err)
	}
	if reply[0] != statusAccepted {
		return fmt.Errorf("%w: the listener refused this node's cluster secret", ErrHandshake)
	}
	if _, err := io.ReadFull(conn, reply[1:]); err != nil {
		return fmt.Errorf("%w: read the listener's proof: %w", ErrHandshake, err)
	}
	if !hmac.Equal(reply[1:], proof(secret.Current, labelListener, nd, nl)) {
		return fmt.Errorf("%w: the listener does not know the cluster secret", ErrHandshake)
	}
	return nil
}

// AcceptHandshake runs the listener's side on a freshly accepted
// connection, within timeout. On error the caller must close conn; the
// dialer has been told it was refused when it got that far.
func AcceptHandshake(conn net.Conn, secret Secret, timeout time.Duration) error {
	if !secret.Enabled() {
		return nil
	}
	defer deadline(conn, timeout)()
	hello := make([]byte, len(magic)+nonceSize)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return fmt.Errorf("%w: read hello: %w", ErrHandshake, err)
	}
	if !bytes.Equal(hello[:len(magic)], magic) {
		return fmt.Errorf("%w: the dialer did not start the handshake (has it no cluster secret?)", ErrHandshake)
	}
	nd := hello[len(magic):]
	nl := make([]byte, nonceSize)
	if _, err := rand.Read(nl); err != nil {
		return fmt.Errorf("%w: nonce: %w", ErrHandshake, err)
	}
	if _, err := conn.Write(nl); err != nil {
		return fmt.Errorf("%w: send nonce: %w", ErrHandshake, err)
	}
	got := make([]byte, macSize)
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("%w: read proof: %w", ErrHandshake, err)
	}
	// Every accepted secret is tried, whichever matches, so the time
	// taken says nothing about which.
	matched := ""
	for _, s := range secret.accepted() {
		if hmac.Equal(got, proof(s, labelDialer, nd, nl)) && matched == "" {
			matched = s
		}
	}
	if matched == "" {
		_, _ = conn.Write([]byte{statusRefused})
		return fmt.Errorf("%w: the dialer's cluster secret is wrong", ErrHandshake)
	}
	if _, err := conn.Write(append([]byte{statusAccepted}, proof(matched, labelListener, nd, nl)...)); err != nil {
		return fmt.Errorf("%w: send verdict: %w", ErrHandshake, err)
	}
	return nil
}
