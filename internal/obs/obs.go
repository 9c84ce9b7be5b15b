// Package obs is what every node serves over HTTP for operators: the
// Prometheus /metrics endpoint, /healthz (the process is up) and /readyz
// (the node can do its job), and the slog logger the flags ask for.
package obs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NodeRegistry returns a fresh registry for one node and a registerer on
// it that adds the constant labels node, role and datacenter to every
// metric (one Prometheus can scrape several datacenters). Nodes
// never use the global default registry: `registry dev` and the test
// cluster run several nodes in one process, and a second registration of
// the same metric there would panic.
func NodeRegistry(node, role, datacenter string) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	return reg, prometheus.WrapRegistererWith(prometheus.Labels{"node": node, "role": role, "datacenter": datacenter}, reg)
}

var (
	processOnce sync.Once
	processReg  *prometheus.Registry
)

// processRegistry holds the Go runtime and process collectors, which
// exist once per process however many nodes it runs.
func processRegistry() *prometheus.Registry {
	processOnce.Do(func() {
		processReg = prometheus.NewRegistry()
		processReg.MustRegister(collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	})
	return processReg
}

// Server is a node's HTTP endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	err chan error
}

// Serve starts the endpoint on addr; ready reports whether the node can
// serve, with a reason when it cannot. /metrics exposes the gatherers
// given (each node's own registry) and the process's Go and process
// collectors.
func Serve(addr string, ready func() (bool, string), gatherers ...prometheus.Gatherer) (*Server, error) {
	return ServeTLS(addr, nil, ready, nil, gatherers...)
}

// ServeWith is Serve with more routes: a node's own HTTP API (a session's
// /v1/config/), keyed by net/http ServeMux pattern.
func ServeWith(addr string, ready func() (bool, string), routes map[string]http.Handler, gatherers ...prometheus.Gatherer) (*Server, error) {
	return ServeTLS(addr, nil, ready, routes, gatherers...)
}

// ServeTLS is ServeWith over TLS when cfg is set (plain HTTP when nil).
func ServeTLS(addr string, cfg *tls.Config, ready func() (bool, string), routes map[string]http.Handler, gatherers ...prometheus.Gatherer) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	mux := http.NewServeMux()
	gs := prometheus.Gatherers{processRegistry()}
	gs = append(gs, gatherers...)
	mux.Handle("/metrics", promhttp.HandlerFor(gs, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, why+"\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	for pattern, h := range routes {
		mux.Handle(pattern, h)
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln, err: make(chan error, 1)}
	go func() { s.err <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address served.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the endpoint and waits for its goroutine.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.err; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// NewLogger builds the process logger from --log-format and --log-level.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
