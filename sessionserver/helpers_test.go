package sessionserver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/redcon"
)

// mustNode is a session node with no listener, meta or data nodes: enough
// for handlers that answer from the connection and the command table.
func mustNode(t *testing.T, lim Limits) *Node {
	t.Helper()
	lim.fill()
	n := testNode()
	n.cfg.NodeID = "s-test"
	n.cfg.Limits = lim
	n.lim = lim.client()
	n.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	n.stop = make(chan struct{})
	n.stats.cmds = make([]cmdStats, len(metricNames()))
	for i := range n.stats.cmds {
		n.stats.cmds[i].latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t"})
	}
	n.stats.pushLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "p"})
	n.router = newRouter(n)
	return n
}

// mustConn is an authenticated connection of n whose replies stay in its
// buffer until flushed.
func mustConn(t *testing.T, n *Node) *clientConn {
	t.Helper()
	nc, peer := net.Pipe()
	t.Cleanup(func() { nc.Close(); peer.Close() })
	return &clientConn{n: n, nc: nc, id: "inc.7", wr: newRespWriter(nc), owned: map[pubKey]struct{}{},
		topics: map[string]*topic{}, authed: true}
}

// do runs one command as the read loop does and returns the decoded
// replies it wrote.
func do(t *testing.T, c *clientConn, args ...string) []any {
	t.Helper()
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	cmd := commands.lookup(b[0])
	if c.authed && isOp(cmd) {
		c.execWrites([]redcon.Command{{Args: b}})
	} else {
		c.wmu.Lock()
		c.exec(cmd, b)
		c.wmu.Unlock()
	}
	out := decodeAll(t, c.wr.b)
	c.wr.b = c.wr.b[:0]
	return out
}

// respErr is a decoded error reply.
type respErr string

// decodeAll decodes every RESP2/RESP3 value in b: strings, errors
// (respErr), integers, nil, and aggregates as []any.
func decodeAll(t *testing.T, b []byte) []any {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(b))
	var out []any
	for {
		if _, err := r.Peek(1); err == io.EOF {
			return out
		}
		v, err := decode(r)
		if err != nil {
			t.Fatalf("decoding %q: %v", b, err)
		}
		out = append(out, v)
	}
}

func decode(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 {
		return nil, fmt.Errorf("short line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return respErr(body), nil
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '_':
		return nil, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*', '%', '~', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		if kind == '%' {
			n *= 2
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = decode(r); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("unknown RESP type %q", kind)
}

// pairs turns a decoded map (a flat array of key, value) into a Go map.
func pairs(t *testing.T, v any) map[string]any {
	t.Helper()
	a, ok := v.([]any)
	if !ok || len(a)%2 != 0 {
		t.Fatalf("not a map: %#v", v)
	}
	m := map[string]any{}
	for i := 0; i < len(a); i += 2 {
		m[a[i].(string)] = a[i+1]
	}
	return m
}

// errText is the text of an error reply, "" if v is none.
func errText(v any) string {
	e, _ := v.(respErr)
	return string(e)
}
