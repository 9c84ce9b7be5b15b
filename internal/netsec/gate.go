package netsec

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// DefaultAuthFailDelay is how long a wrong secret waits for its error
// reply: long enough to make guessing over one connection slow, short
// enough that a misconfigured node still reports its error promptly.
const DefaultAuthFailDelay = 200 * time.Millisecond

// Replies of the gate. They carry Redis's own prefixes, which go-redis
// and redis-cli print as they are and proto.FromRESP maps to
// proto.ErrNoAuth and proto.ErrWrongPass.
const (
	replyNoAuth    = "NOAUTH authentication required: send AUTH with the cluster secret first"
	replyWrongPass = "WRONGPASS wrong cluster secret"
	replyNoSecret  = "ERR AUTH sent, but this node has no cluster secret configured"
	replyAuthArity = "ERR wrong number of arguments for 'auth' command"
)

// Gate puts the cluster secret in front of a redcon handler: on a
// connection that has not sent AUTH with an accepted secret, every
// command but AUTH is refused. The gate keeps its per-connection state
// in the connection's redcon context, so a server that uses a Gate must
// not call SetContext itself.
//
// A Gate with no secret lets everything through, as if it were not
// there, except AUTH, which it answers with an error naming the
// misconfiguration (the dialer believes the cluster has a secret).
type Gate struct {
	secret Secret
	log    *slog.Logger
	delay  time.Duration
	// refused counts refused commands and wrong secrets, for tests and
	// metrics.
	refused atomic.Uint64
}

// NewGate returns a gate for secret; refusals are logged to log at Warn
// with the peer's address (never the secret).
func NewGate(secret Secret, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.Default()
	}
	return &Gate{secret: secret, log: log, delay: DefaultAuthFailDelay}
}

// Enabled says whether the gate checks anything.
func (g *Gate) Enabled() bool { return g.secret.Enabled() }

// Refused is how many commands and AUTH attempts the gate has refused.
func (g *Gate) Refused() uint64 { return g.refused.Load() }

// connState is what the gate knows of one connection.
type connState struct {
	authed bool
	// logged is set once a refused command was logged for this
	// connection: a peer that keeps sending without AUTH (a
	// misconfigured node pipelining heartbeats) costs one log line, not
	// one per command.
	logged bool
}

func stateOf(conn redcon.Conn) *connState {
	if st, ok := conn.Context().(*connState); ok {
		return st
	}
	st := &connState{}
	conn.SetContext(st)
	return st
}

// Allow is called with every command before the server's own handler.
// It returns true when the handler may run; otherwise it has written the
// reply itself (to AUTH, or the refusal). It runs on the connection's
// goroutine, as redcon handlers do.
func (g *Gate) Allow(conn redcon.Conn, args [][]byte) bool {
	if len(args) == 0 {
		return !g.secret.Enabled()
	}
	// The common cases first, without allocating: this runs for every
	// command a data node serves.
	if strings.EqualFold(string(args[0]), proto.CmdAuth) {
		g.auth(conn, args)
		return false
	}
	if !g.secret.Enabled() {
		return true
	}
	st := stateOf(conn)
	if st.authed {
		return true
	}
	name := strings.ToLower(string(args[0]))
	g.refused.Add(1)
	// go-redis opens every connection with HELLO and, when that fails,
	// falls back to AUTH: a refused HELLO is the normal handshake, not
	// worth a log line.
	if name != proto.CmdHello && !st.logged {
		st.logged = true
		g.log.Warn("refused an unauthenticated inter-node command", "remote", conn.RemoteAddr(), "cmd", proto.Clip(args[0]))
	}
	conn.WriteError(replyNoAuth)
	return false
}

// auth answers AUTH [user] secret. The user name is ignored: the cluster
// has one secret, not users.
func (g *Gate) auth(conn redcon.Conn, args [][]byte) {
	if !g.secret.Enabled() {
		conn.WriteError(replyNoSecret)
		return
	}
	if len(args) != 2 && len(args) != 3 {
		conn.WriteError(replyAuthArity)
		return
	}
	st := stateOf(conn)
	if g.secret.Accepts(args[len(args)-1]) {
		st.authed = true
		conn.WriteString("OK")
		return
	}
	// Fail closed: a connection that sends a wrong secret loses what it
	// had, as it would on Redis.
	st.authed = false
	g.refused.Add(1)
	g.log.Warn("refused a wrong cluster secret", "remote", conn.RemoteAddr())
	time.Sleep(g.delay)
	conn.WriteError(replyWrongPass)
}
