// Package netsectest makes throwaway certificates for tests: a CA and a
// node certificate it signed, for 127.0.0.1 and localhost, written as
// PEM files into a directory the test owns. Tests only; nothing in a
// node imports it.
package netsectest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/netsec"
)

// Certs are the files Generate wrote.
type Certs struct {
	// Files are the node certificate, its key and the CA that signed it.
	Files netsec.TLSFiles
	// OtherCA is a second CA that signed nothing here: a client trusting
	// only it must refuse the nodes.
	OtherCA string
}

// Generate writes ca.pem, node.pem, node-key.pem and other-ca.pem into
// dir. The node certificate is valid for an hour for 127.0.0.1, ::1 and
// localhost.
func Generate(dir string) (*Certs, error) {
	caKey, caCert, caPEM, err := newCA("slotreg test CA")
	if err != nil {
		return nil, err
	}
	_, _, otherPEM, err := newCA("some other CA")
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "slotreg test node"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	c := &Certs{
		Files: netsec.TLSFiles{
			Cert: filepath.Join(dir, "node.pem"),
			Key:  filepath.Join(dir, "node-key.pem"),
			CA:   filepath.Join(dir, "ca.pem"),
		},
		OtherCA: filepath.Join(dir, "other-ca.pem"),
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{c.Files.CA, caPEM, 0o644},
		{c.OtherCA, otherPEM, 0o644},
		{c.Files.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644},
		{c.Files.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600},
	} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return c, nil
}

// Configs are the TLS settings made from Certs.
type Configs struct {
	// Server is a node listener's, with the node certificate.
	Server *tls.Config
	// Client trusts the CA that signed the node certificate.
	Client *tls.Config
	// Untrusting trusts only OtherCA, so it refuses the nodes.
	Untrusting *tls.Config
}

// MustConfigs makes the TLS settings of c with netsec.ServerConfig and
// netsec.ClientConfig; it fails the test on error.
func (c *Certs) MustConfigs(t testing.TB) Configs {
	t.Helper()
	var cfg Configs
	var err error
	if cfg.Server, err = netsec.ServerConfig(c.Files); err != nil {
		t.Fatal(err)
	}
	if cfg.Client, err = netsec.ClientConfig(c.Files); err != nil {
		t.Fatal(err)
	}
	if cfg.Untrusting, err = netsec.ClientConfig(netsec.TLSFiles{CA: c.OtherCA}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// MustGenerate is Generate into a fresh t.TempDir(); it fails the test on
// error.
func MustGenerate(t testing.TB) *Certs {
	t.Helper()
	c, err := Generate(t.TempDir())
	if err != nil {
		t.Fatalf("generate test certificates: %v", err)
	}
	return c
}

func newCA(name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
