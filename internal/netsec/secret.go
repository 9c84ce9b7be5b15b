// Package netsec is slotreg's one place for securing the links between
// nodes: the cluster secret (the RESP gate that every inter-node listener
// puts in front of its handlers, and the handshake that opens every Raft
// connection) and the TLS configurations built from the operator's files.
//
// It owns no listener and starts no goroutine: the servers call into it.
// It must never log a secret, nor anything derived from one.
package netsec

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Secret is the cluster secret as one node holds it. With Current empty
// the node neither sends nor checks a secret (dev mode, and the
// behaviour of a cluster that never set one).
type Secret struct {
	// Current is sent whenever this node dials another, and accepted
	// from peers.
	Current string
	// AlsoAccept are further secrets accepted from peers but never sent:
	// while a secret is rotated, every node accepts both the old and the
	// new one (docs/security.md).
	AlsoAccept []string
}

// Enabled says whether connections must authenticate.
func (s Secret) Enabled() bool { return s.Current != "" }

// Validate says what is wrong with the secret settings.
func (s Secret) Validate() error {
	if s.Current == "" && len(s.AlsoAccept) > 0 {
		return errors.New("secrets to also accept are set without a current cluster secret")
	}
	if strings.ContainsAny(s.Current, "\r\n") {
		return errors.New("the cluster secret contains a line break")
	}
	for i, a := range s.AlsoAccept {
		if a == "" {
			return fmt.Errorf("secret %d to also accept is empty", i+1)
		}
		if strings.ContainsAny(a, "\r\n") {
			return fmt.Errorf("secret %d to also accept contains a line break", i+1)
		}
	}
	return nil
}

// accepted returns every secret a peer may present, the current first.
func (s Secret) accepted() []string {
	if !s.Enabled() {
		return nil
	}
	return append([]string{s.Current}, s.AlsoAccept...)
}

// Accepts says whether given is one of the accepted secrets. It compares
// SHA-256 digests in constant time and always looks at every accepted
// secret, so neither the time taken nor an early exit tells a prober how
// long a secret is or which one nearly matched.
func (s Secret) Accepts(given []byte) bool {
	if !s.Enabled() {
		return false
	}
	g := sha256.Sum256(given)
	ok := 0
	for _, a := range s.accepted() {
		d := sha256.Sum256([]byte(a))
		ok |= subtle.ConstantTimeCompare(g[:], d[:])
	}
	return ok == 1
}

// String never shows the secret, so a Secret printed by accident (%v of a
// Config in a log line or an error) leaks nothing.
func (s Secret) String() string {
	if !s.Enabled() {
		return "cluster secret: none"
	}
	return fmt.Sprintf("cluster secret: set (+%d accepted)", len(s.AlsoAccept))
}

// GoString is String, for %#v.
func (s Secret) GoString() string { return s.String() }
