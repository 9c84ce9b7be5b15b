package netsec

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// MinTLSVersion is the oldest TLS version any slotreg listener or dialer
// speaks: TLS 1.2, whose configurable cipher suites Go already limits to
// AEAD ones with forward secrecy.
const MinTLSVersion = tls.VersionTLS12

// TLSFiles names a node's PEM files.
type TLSFiles struct {
	// Cert and Key are this node's certificate (chain) and private key,
	// presented by every TLS listener of the node.
	Cert, Key string
	// CA is the bundle of certificate authorities trusted when this node
	// (or registryctl) dials a TLS listener. Empty means the system's
	// roots.
	CA string
}

// ServerConfig is the TLS configuration of a listener: Cert and Key must
// be set. Clients are not asked for certificates: the cluster secret
// authenticates the peer nodes, and client AUTH the clients.
func ServerConfig(f TLSFiles) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("tls: a listener needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: MinTLSVersion}, nil
}

// ClientConfig is the TLS configuration for dialing a TLS listener: it
// trusts CA, or the system's roots when CA is empty. The server's name
// is checked against the address dialed (Go's default), so node
// certificates must name the host or IP address the nodes advertise.
func ClientConfig(f TLSFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: MinTLSVersion}
	if f.CA == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: CA bundle %s holds no PEM certificate", f.CA)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// Listen wraps ln in TLS when cfg is set, and returns it as it is when
// not.
func Listen(ln net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		return ln
	}
	return tls.NewListener(ln, cfg)
}

// ListenOn is how a node opens its listener: ln when the caller handed
// one over open, else a new one on addr; served over TLS when cfg is set.
func ListenOn(ln net.Listener, addr string, cfg *tls.Config) (net.Listener, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return Listen(ln, cfg), nil
}

// CheckServerTLS says what is wrong with a listener's TLS configuration:
// none is fine (the listener is plain), but one must hold a certificate.
func CheckServerTLS(cfg *tls.Config) error {
	if cfg != nil && len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return errors.New("ServerTLS has no certificate")
	}
	return nil
}

// Dial opens a TCP connection to addr within timeout, over TLS when cfg
// is set; the TLS handshake is done before it returns, so a listener
// that is not TLS, or a certificate that is not trusted, fails here.
func Dial(addr string, timeout time.Duration, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if cfg == nil {
		return d.Dial("tcp", addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: cfg}
	return td.Dial("tcp", addr)
}
