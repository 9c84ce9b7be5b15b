package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/slotreg/slotreg/metaclient"
)

//go:embed assets
var assets embed.FS

// Defaults of Config's durations.
const (
	DefaultTimeout  = time.Second
	DefaultCacheTTL = 500 * time.Millisecond
)

// Config configures a Console.
type Config struct {
	// Metas are the meta RPC addresses, this node's first.
	Metas []string
	// Secret is the cluster secret, sent with AUTH to the metas and the
	// data nodes, and as the user proto.ClusterUser to the sessions; it
	// also authorizes actions. Empty: the cluster has none.
	Secret string
	// TLS, when set, dials the metas and data nodes (inter-node ports)
	// over TLS; nil dials them plain.
	TLS *tls.Config
	// SessionTLS, when set, dials the sessions' client ports over TLS;
	// nil dials them plain.
	SessionTLS *tls.Config
	// AdminPassword authorizes actions (as does Secret). With neither
	// set, actions are refused.
	AdminPassword string
	// Timeout bounds each call to a node; default DefaultTimeout. A node
	// that does not answer in time is shown as not answering.
	Timeout time.Duration
	// CacheTTL is how long one fan-out's result serves every browser tab;
	// default DefaultCacheTTL.
	CacheTTL time.Duration
	Logger   *slog.Logger
}

// Validate says which field is wrong.
func (c *Config) Validate() error {
	if len(c.Metas) == 0 {
		return errors.New("console: Metas is empty")
	}
	for i, a := range c.Metas {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("console: Metas[%d] %q is not host:port", i, a)
		}
	}
	if strings.ContainsAny(c.Secret, "\r\n") {
		return errors.New("console: Secret contains a line break")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("console: Timeout %v is negative", c.Timeout)
	}
	if c.CacheTTL < 0 {
		return fmt.Errorf("console: CacheTTL %v is negative", c.CacheTTL)
	}
	return nil
}

// Console serves the web console. It is safe for concurrent use; Close
// releases its connections.
type Console struct {
	cfg    Config
	log    *slog.Logger
	leader *metaclient.Leader
	pool   *pool
	static http.Handler

	mu       sync.Mutex
	snap     *snapshot
	snapAt   time.Time
	inflight chan struct{}
	searches map[searchKey]cachedSearch

	ctx    context.Context
	cancel context.CancelFunc
}

// New returns a Console for cfg.
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("console: assets: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Console{
		cfg: cfg,
		log: cfg.Logger.With("component", "console"),
		leader: metaclient.NewLeader(metaclient.LeaderOptions{Metas: cfg.Metas, Secret: cfg.Secret, TLS: cfg.TLS,
			ReadTimeout: cfg.Timeout, DialTimeout: cfg.Timeout}),
		pool:     newPool(cfg),
		static:   http.StripPrefix("/ui/", http.FileServer(http.FS(sub))),
		searches: map[searchKey]cachedSearch{},
		ctx:      ctx,
		cancel:   cancel,
	}
	return c, nil
}

// Close releases the console's connections; requests after it fail.
func (c *Console) Close() {
	c.cancel()
	c.leader.Close()
	c.pool.close()
}

// Handler serves /ui/ (the page) and /ui/api/ (its JSON API); mount it
// at "/ui/".
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ui/api/overview", c.get(c.apiOverview))
	mux.HandleFunc("/ui/api/stats", c.get(c.apiStats))
	mux.HandleFunc("/ui/api/moves", c.get(c.apiMoves))
	mux.HandleFunc("/ui/api/search", c.get(c.apiSearch))
	mux.HandleFunc("/ui/api/config", c.get(c.apiConfig))
	mux.HandleFunc("/ui/api/config/history", c.get(c.apiConfigHistory))
	mux.HandleFunc("/ui/api/locks", c.get(c.apiLocks))
	mux.HandleFunc("/ui/api/move", c.action(c.actMove))
	mux.HandleFunc("/ui/api/drain", c.action(c.actDrain))
	mux.HandleFunc("/ui/api/undrain", c.action(c.actUndrain))
	mux.HandleFunc("/ui/api/rebalance", c.action(c.actRebalance))
	mux.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no API endpoint %s", r.URL.Path))
	})
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusMethodNotAllowed, "the console's pages are read with GET")
			return
		}
		c.static.ServeHTTP(w, r)
	})
	return securityHeaders(mux)
}

// securityHeaders keeps the page to its own assets (no inline script, no
// other origin) and out of frames.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// get wraps a read-only API handler: GET (or HEAD) only, its value as
// JSON, never cached by the browser.
func (c *Console) get(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.URL.Path+" is read with GET")
			return
		}
		v, err := h(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// action wraps an action: POST only, with the admin password or the
// cluster secret as a bearer token, and a small JSON body.
func (c *Console) action(h func(ctx context.Context, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, r.URL.Path+" is an action: send it with POST")
			return
		}
		if status, msg := c.authorize(r); status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="slotreg console"`)
			}
			c.log.Warn("console action refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", status)
			writeError(w, status, msg)
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			writeErr(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*c.cfg.Timeout)
		defer cancel()
		v, err := h(ctx, body)
		if err != nil {
			c.log.Info("console action failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			writeErr(w, err)
			return
		}
		c.log.Info("console action", "path", r.URL.Path, "remote", r.RemoteAddr, "body", string(body))
		c.invalidate()
		writeJSON(w, http.StatusOK, v)
	}
}

// authorize checks the bearer token: 0 if it is the admin password or
// the cluster secret, else the status and message to refuse with.
func (c *Console) authorize(r *http.Request) (int, string) {
	if c.cfg.AdminPassword == "" && c.cfg.Secret == "" {
		return http.StatusForbidden, "actions are disabled: start meta with --admin-password (or SLOTREG_ADMIN_PASSWORD), or give the cluster a --cluster-secret"
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return http.StatusUnauthorized, "actions need the admin password or the cluster secret: send Authorization: Bearer <password>"
	}
	got := sha256.Sum256([]byte(token))
	match := 0
	for _, want := range []string{c.cfg.AdminPassword, c.cfg.Secret} {
		w := sha256.Sum256([]byte(want))
		match |= subtle.ConstantTimeCompare(got[:], w[:]) & boolInt(want != "")
	}
	if match != 1 {
		return http.StatusUnauthorized, "wrong password: actions need the admin password or the cluster secret"
	}
	return 0, ""
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// maxBody bounds an action's JSON body.
const maxBody = 4 << 10

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, badRequest("the request body is over %d bytes", maxBody)
	case err != nil:
		return nil, badRequest("reading the request body: %v", err)
	}
	return b, nil
}

// contextFor is the request's context, bounded by d.
func contextFor(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

// decodeBody decodes an action's JSON body into v, refusing unknown
// fields and trailing data; an empty body decodes as {}.
func decodeBody(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the request body is not the JSON expected: %v", err)
	}
	if dec.More() {
		return badRequest("the request body has data after its JSON object")
	}
	return nil
}

// httpError is an error with the HTTP status it is answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func unavailable(format string, args ...any) error {
	return &httpError{status: http.StatusServiceUnavailable, msg: fmt.Sprintf(format, args...)}
}

func writeErr(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.status, he.msg)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the reply failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
