package sessionserver

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/slotreg/slotreg/internal/netsec"
	"github.com/slotreg/slotreg/proto"
)

// DefaultUser is the user a one-argument AUTH (or --requirepass) speaks for,
// as in Redis.
const DefaultUser = "default"

// Replies of the client AUTH gate, as Redis words them so client libraries
// recognise them.
const (
	replyNoAuth      = "NOAUTH Authentication required."
	replyNoAuthHello = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	replyWrongPass   = "WRONGPASS invalid username-password pair or user is disabled."
	replyNoPassword  = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
)

// defaultFailDelay is Auth.FailDelay's default.
const defaultFailDelay = 200 * time.Millisecond

// Auth is who may use a session: users and the SHA-256 of their
// passwords. A nil *Auth lets every client in.
type Auth struct {
	users map[string][sha256.Size]byte
	// FailDelay is how long a wrong password waits for its answer, so
	// guessing is slow. Default 200ms.
	FailDelay time.Duration
}

// NewAuth builds the users from a password for the default user and a
// users file; both may be given. Neither gives nil: no authentication.
//
// The users file has one user a line, "name password" or "name
// sha256:<hex of the password's SHA-256>", with blank lines and lines
// starting with # ignored.
func NewAuth(password, usersFile string) (*Auth, error) {
	if password == "" && usersFile == "" {
		return nil, nil
	}
	a := &Auth{users: make(map[string][sha256.Size]byte), FailDelay: defaultFailDelay}
	if password != "" {
		a.users[DefaultUser] = sha256.Sum256([]byte(password))
	}
	if usersFile != "" {
		if err := a.load(usersFile); err != nil {
			return nil, err
		}
	}
	if len(a.users) == 0 {
		return nil, fmt.Errorf("users file %s: no users", usersFile)
	}
	return a, nil
}

func (a *Auth) load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return fmt.Errorf("users file %s line %d: want \"name password\", got %d fields", path, line, len(fields))
		}
		name, pass := fields[0], fields[1]
		if name == proto.ClusterUser {
			return fmt.Errorf("users file %s line %d: user name %q is reserved for the cluster secret", path, line, name)
		}
		if _, dup := a.users[name]; dup {
			return fmt.Errorf("users file %s line %d: user %q given twice", path, line, name)
		}
		if h, ok := strings.CutPrefix(pass, "sha256:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("users file %s line %d: sha256: wants %d hex digits", path, line, 2*sha256.Size)
			}
			a.users[name] = [sha256.Size]byte(b)
			continue
		}
		a.users[name] = sha256.Sum256([]byte(pass))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("users file %s: %w", path, err)
	}
	return nil
}

// check says whether the password is the user's, in time that does not
// depend on how much of it matched.
func (a *Auth) check(user, pass string) bool {
	want, ok := a.users[user]
	got := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1 && ok
}

// clusterLogin says whether AUTH proto.ClusterUser pass carries this
// session's cluster secret: the internal admin login through which meta's
// web console reads a session that asks its clients for a password. The
// compare takes the same time however much of the secret matched; with
// no cluster secret configured the user is refused.
func (c *clientConn) clusterLogin(pass string) bool {
	sec := netsec.Secret{Current: c.n.cfg.ClusterSecret}
	return sec.Enabled() && sec.Accepts([]byte(pass))
}

// authenticate runs AUTH [user] password for c; the caller holds wmu,
// which it releases during a failure's delay so pushes are not held up.
// A failure has been answered with WRONGPASS when it returns false. The
// user proto.ClusterUser is checked against the cluster secret, never
// against the users.
func (c *clientConn) authenticate(user, pass string) bool {
	a := c.n.cfg.Auth
	var ok bool
	if user == proto.ClusterUser {
		ok = c.clusterLogin(pass)
	} else {
		ok = a.check(user, pass)
	}
	if ok {
		c.authed, c.user = true, user
		return true
	}
	c.n.stats.authFailures.Add(1)
	c.n.log.Warn("client AUTH failed", "conn", c.id, "remote", c.nc.RemoteAddr().String(), "user", user)
	delay := defaultFailDelay
	if a != nil {
		delay = a.FailDelay
	}
	c.wmu.Unlock()
	select {
	case <-time.After(delay):
	case <-c.n.stop:
	}
	c.wmu.Lock()
	c.writeError(replyWrongPass)
	return false
}

// auth serves AUTH [user] password. A session without client passwords
// answers AUTH as Redis does, except AUTH proto.ClusterUser when it has a
// cluster secret: meta's console sends that to every session alike.
func (c *clientConn) auth(a *proto.Auth) {
	if c.n.cfg.Auth == nil && (a.User != proto.ClusterUser || c.n.cfg.ClusterSecret == "") {
		c.writeError(replyNoPassword)
		return
	}
	user := a.User
	if user == "" {
		user = DefaultUser
	}
	if c.authenticate(user, a.Password) {
		c.wr.WriteString("OK")
	}
}
