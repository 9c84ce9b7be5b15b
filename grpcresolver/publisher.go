package grpcresolver

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc/attributes"
)

// This file is the pure part: reading a publisher's data and the
// attributes an address carries. No locks, no I/O.

// Publisher is what the resolver knows of the publisher behind an
// address: its registerId, where it registered, and the attributes its
// JSON data carried (nil for plain host:port data).
type Publisher struct {
	RegisterID string
	// Datacenter and Zone are those of the session the publisher
	// registered through; empty if the session did not say.
	Datacenter string
	Zone       string
	Attributes map[string]string
}

// attrKey is the key of the publisher's record in an address's or an
// endpoint's attributes.
type attrKey struct{}

// pubAttr is the value stored under attrKey. gRPC compares attributes
// (to tell whether an address changed), and a map is not comparable with
// ==, hence the pointer with an Equal method.
type pubAttr struct{ p Publisher }

// Equal reports whether o holds the same publisher record; gRPC calls it
// when it compares attributes.
func (a *pubAttr) Equal(o any) bool {
	b, ok := o.(*pubAttr)
	if !ok || a == nil || b == nil {
		return ok && a == b
	}
	return a.p.RegisterID == b.p.RegisterID && a.p.Datacenter == b.p.Datacenter &&
		a.p.Zone == b.p.Zone && maps.Equal(a.p.Attributes, b.p.Attributes)
}

// PublisherOf returns the publisher record the resolver put in attrs: a
// resolver.Address's Attributes or a resolver.Endpoint's Attributes, as
// a balancer or a credentials handshake sees them. The second result is
// false for attributes this package did not set. The Attributes map is
// the caller's own copy.
func PublisherOf(attrs *attributes.Attributes) (Publisher, bool) {
	a, ok := attrs.Value(attrKey{}).(*pubAttr)
	if !ok || a == nil {
		return Publisher{}, false
	}
	p := a.p
	p.Attributes = maps.Clone(p.Attributes)
	return p, true
}

// jsonData is a publisher's data in its JSON form. Fields other than
// these are ignored, so publishers may add some before resolvers know
// them.
type jsonData struct {
	Addr       string            `json:"addr"`
	Attributes map[string]string `json:"attributes"`
}

// parseData reads a publisher's data: "host:port", or a JSON object with
// "addr" (host:port) and optional "attributes" (string values only).
func parseData(data string) (addr string, attrs map[string]string, err error) {
	data = strings.TrimSpace(data)
	if strings.HasPrefix(data, "{") {
		var d jsonData
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			return "", nil, fmt.Errorf("bad JSON: %w", err)
		}
		if d.Addr == "" {
			return "", nil, errors.New(`JSON without "addr"`)
		}
		if err := checkAddr(d.Addr); err != nil {
			return "", nil, fmt.Errorf(`"addr": %w`, err)
		}
		if len(d.Attributes) == 0 {
			d.Attributes = nil
		}
		return d.Addr, d.Attributes, nil
	}
	if err := checkAddr(data); err != nil {
		return "", nil, err
	}
	return data, nil, nil
}

// checkAddr accepts host:port with a non-empty host and a numeric port
// from 1 to 65535: what a gRPC client can dial.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", clip(addr), err)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n/") {
		return fmt.Errorf("%q has no usable host", clip(addr))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", clip(addr), port)
	}
	return nil
}

// clip shortens s for a log line: publisher data may be up to the
// registry's limit, which is no place for a log.
func clip(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
