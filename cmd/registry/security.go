package main

import (
	"crypto/tls"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/internal/netsec"
)

// Security flags (docs/security.md). The environment variables let one
// file configure every role and registryctl alike; a secret in the
// environment also stays out of `ps`.
const (
	flagClusterSecret       = "cluster-secret"
	flagClusterSecretAccept = "cluster-secret-accept"
	flagTLSCert             = "tls-cert"
	flagTLSKey              = "tls-key"
	flagTLSCA               = "tls-ca"
	flagTLSClient           = "tls-client"
	flagTLSInternode        = "tls-internode"
	flagTLSAdmin            = "tls-admin"
)

// securityFlags are the flags of a role. A role with inter-node
// listeners (meta, data, dev) checks secrets and so takes the secret to
// also accept; a role with a client listener (session, dev) takes
// --tls-client.
func securityFlags(internodeListener, clientListener bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagClusterSecret, EnvVars: []string{"SLOTREG_CLUSTER_SECRET"},
			Usage: "shared secret every inter-node connection authenticates with (empty: none; prefer the environment variable)"},
	}
	if internodeListener {
		flags = append(flags, &cli.StringFlag{Name: flagClusterSecretAccept, EnvVars: []string{"SLOTREG_CLUSTER_SECRET_ACCEPT"},
			Usage: "one more secret accepted from peers but never sent, while rotating the secret"})
	}
	flags = append(flags,
		&cli.StringFlag{Name: flagTLSCert, EnvVars: []string{"SLOTREG_TLS_CERT"}, Usage: "PEM certificate (chain) the TLS listeners present"},
		&cli.StringFlag{Name: flagTLSKey, EnvVars: []string{"SLOTREG_TLS_KEY"}, Usage: "PEM private key of --tls-cert"},
		&cli.StringFlag{Name: flagTLSCA, EnvVars: []string{"SLOTREG_TLS_CA"}, Usage: "PEM CA bundle trusted when dialing other nodes over TLS (default: the system's)"},
		&cli.BoolFlag{Name: flagTLSInternode, EnvVars: []string{"SLOTREG_TLS_INTERNODE"},
			Usage: "TLS on the inter-node listeners (meta RPC and Raft, data) and on every connection to them"},
		&cli.BoolFlag{Name: flagTLSAdmin, EnvVars: []string{"SLOTREG_TLS_ADMIN"}, Usage: "HTTPS on --http (/metrics, /healthz, /readyz)"},
	)
	if clientListener {
		flags = append(flags, &cli.BoolFlag{Name: flagTLSClient, EnvVars: []string{"SLOTREG_TLS_CLIENT"},
			Usage: "TLS on the client listener (sessions)"})
	}
	return flags
}

// security is what the flags ask for, loaded and checked.
type security struct {
	secret netsec.Secret
	// internode serves the meta and data listeners; peer dials them.
	internode, peer *tls.Config
	// client serves a session's client listener; sessions dials the
	// sessions' client listeners (meta's and dev's web console).
	client, sessions *tls.Config
}

// loadSecurity reads the security flags of a role: serves says whether
// it has inter-node listeners (meta, data) and so needs a certificate
// for --tls-internode; a session only dials them.
func loadSecurity(c *cli.Context, serves bool) (*security, error) {
	s := &security{secret: netsec.Secret{Current: c.String(flagClusterSecret)}}
	if a := c.String(flagClusterSecretAccept); a != "" {
		s.secret.AlsoAccept = []string{a}
	}
	if err := s.secret.Validate(); err != nil {
		return nil, fmt.Errorf("--%s: %w", flagClusterSecret, err)
	}
	files := netsec.TLSFiles{Cert: c.String(flagTLSCert), Key: c.String(flagTLSKey), CA: c.String(flagTLSCA)}
	var server *tls.Config
	serverFor := func(flag string) (*tls.Config, error) {
		if server != nil {
			return server, nil
		}
		cfg, err := netsec.ServerConfig(files)
		if err != nil {
			return nil, fmt.Errorf("--%s needs --%s and --%s: %w", flag, flagTLSCert, flagTLSKey, err)
		}
		server = cfg
		return cfg, nil
	}
	var err error
	if c.Bool(flagTLSInternode) {
		if serves {
			if s.internode, err = serverFor(flagTLSInternode); err != nil {
				return nil, err
			}
		}
		if s.peer, err = netsec.ClientConfig(files); err != nil {
			return nil, fmt.Errorf("--%s: %w", flagTLSCA, err)
		}
	}
	if c.Bool(flagTLSClient) {
		// On meta the flag says the sessions serve TLS: its web console
		// dials them so, and meta has no client listener to serve it on.
		if c.Command.Name != "meta" {
			if s.client, err = serverFor(flagTLSClient); err != nil {
				return nil, err
			}
		}
		if s.sessions, err = netsec.ClientConfig(files); err != nil {
			return nil, fmt.Errorf("--%s: %w", flagTLSCA, err)
		}
	}
	// Checked here so a bad flag stops the node before it starts;
	// serveUntil loads it again for the HTTP endpoint.
	if _, err := adminTLS(c); err != nil {
		return nil, err
	}
	return s, nil
}

// adminTLS is the HTTP endpoint's TLS configuration, nil without
// --tls-admin.
func adminTLS(c *cli.Context) (*tls.Config, error) {
	if !c.Bool(flagTLSAdmin) {
		return nil, nil
	}
	cfg, err := netsec.ServerConfig(netsec.TLSFiles{Cert: c.String(flagTLSCert), Key: c.String(flagTLSKey)})
	if err != nil {
		return nil, fmt.Errorf("--%s needs --%s and --%s: %w", flagTLSAdmin, flagTLSCert, flagTLSKey, err)
	}
	return cfg, nil
}
