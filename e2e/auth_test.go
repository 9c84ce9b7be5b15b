package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/sessionserver"
)

func writeUsersFile(t *testing.T) string {
	t.Helper()
	sum := sha256.Sum256([]byte("bob-pw"))
	path := filepath.Join(t.TempDir(), "users")
	body := "# slotreg users\nalice alice-pw\n\nbob sha256:" + hex.EncodeToString(sum[:]) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClientAuth: with passwords set, a client that has not authenticated
// can only AUTH, HELLO or QUIT; a wrong password is answered late; the
// right one, as the default user or a named one, opens every command.
func TestClientAuth(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	auth, err := sessionserver.NewAuth("s3cret", writeUsersFile(t))
	if err != nil {
		t.Fatal(err)
	}
	auth.FailDelay = 300 * time.Millisecond
	cl := mustClusterWith(t, 1, func(o *cluster.Options) { o.SessionAuth = auth })
	addr := cl.Sessions[0].Addr()

	nc, rd := rawConn(t, addr)
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	say := func(cmd string) (string, time.Duration) {
		t.Helper()
		start := time.Now()
		fmt.Fprint(nc, cmd+"\r\n")
		v, err := readFrame(rd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return v, time.Since(start)
	}
	for _, cmd := range []string{"PING", "REGISTER sneaky r1 d", "LOOKUP svc", "SUBSCRIBE svc", "INFO", "CLIENT SETNAME x"} {
		if v, _ := say(cmd); !strings.HasPrefix(v, "-NOAUTH Authentication required") {
			t.Fatalf("%s before AUTH: %q", cmd, v)
		}
	}
	if v, _ := say("HELLO 3"); !strings.HasPrefix(v, "-NOAUTH HELLO must be called") {
		t.Fatalf("HELLO 3 without AUTH: %q", v)
	}
	for _, cmd := range []string{"AUTH wrong", "AUTH alice bob-pw", "AUTH nobody s3cret", "HELLO 2 AUTH default nope"} {
		v, took := say(cmd)
		if !strings.HasPrefix(v, "-WRONGPASS") {
			t.Fatalf("%s: %q, want WRONGPASS", cmd, v)
		}
		if took < auth.FailDelay {
			t.Fatalf("%s answered after %v, before the %v delay", cmd, took, auth.FailDelay)
		}
	}
	if v, _ := say("PING"); !strings.HasPrefix(v, "-NOAUTH") {
		t.Fatalf("PING after failed AUTHs: %q", v)
	}
	if v, _ := say("AUTH a b c"); !strings.Contains(v, "wrong number of arguments") {
		t.Fatalf("AUTH with 3 arguments: %q", v)
	}
	// AUTH and a write in one pipeline.
	fmt.Fprint(nc, "AUTH s3cret\r\nREGISTER svc r1 d1\r\n")
	if v, err := readFrame(rd); err != nil || v != "+OK" {
		t.Fatalf("AUTH s3cret: %q %v", v, err)
	}
	if v, err := readFrame(rd); err != nil || !strings.HasPrefix(v, ":") {
		t.Fatalf("REGISTER after AUTH in the same pipeline: %q %v", v, err)
	}
	if v, _ := say("QUIT"); v != "+OK" {
		t.Fatalf("QUIT: %q", v)
	}

	// QUIT is allowed before AUTH.
	nc2, rd2 := rawConn(t, addr)
	fmt.Fprint(nc2, "QUIT\r\n")
	nc2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if v, err := readFrame(rd2); err != nil || v != "+OK" {
		t.Fatalf("QUIT before AUTH: %q %v", v, err)
	}

	// go-redis with a password (HELLO 3 AUTH), as a named user, and wrong.
	for _, o := range []redis.Options{
		{Addr: addr, Password: "s3cret"},
		{Addr: addr, Username: "alice", Password: "alice-pw"},
		{Addr: addr, Username: "bob", Password: "bob-pw", Protocol: 2},
	} {
		c := redis.NewClient(&o)
		register(t, c, "svc", "by-"+o.Username, "x")
		if _, set := lookup(t, c, "svc"); !strings.Contains(fmt.Sprint(set), "by-"+o.Username+"=x") {
			t.Fatalf("%s: LOOKUP %v", o.Username, set)
		}
		w := mustWatch(t, c, "svc")
		if p := w.waitSet("svc", "by-"+o.Username+"=x"); p.Version == 0 {
			t.Fatalf("%s: push without a version", o.Username)
		}
		c.Close()
	}
	bad := redis.NewClient(&redis.Options{Addr: addr, Username: "alice", Password: "nope", MaxRetries: -1})
	defer bad.Close()
	if err := bad.Ping(ctxT(t)).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("go-redis with a wrong password: %v", err)
	}
	// The refused writes left nothing behind.
	good := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret"})
	defer good.Close()
	if ver, set := lookup(t, good, "sneaky"); ver != 0 || len(set) != 0 {
		t.Fatalf("a REGISTER before AUTH was applied: %d %v", ver, set)
	}
}

// TestDevTakesPasswordsFromFlagsAndEnv runs `registry dev` with the
// password in the environment and a users file by flag.
func TestDevTakesPasswordsFromFlagsAndEnv(t *testing.T) {
	addr, metaAddr, _ := startDev(t, []string{"SLOTREG_REQUIREPASS=from-env"}, "--users-file", writeUsersFile(t))
	open := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer open.Close()
	if err := open.Do(ctxT(t), "LOOKUP", "svc").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("LOOKUP without AUTH: %v", err)
	}
	def := redis.NewClient(&redis.Options{Addr: addr, Password: "from-env"})
	defer def.Close()
	alice := redis.NewClient(&redis.Options{Addr: addr, Username: "alice", Password: "alice-pw"})
	defer alice.Close()
	register(t, def, "svc", "r-default", "x")
	register(t, alice, "svc", "r-alice", "y")
	if _, set := lookup(t, alice, "svc"); fmt.Sprint(set) != "[r-alice=y r-default=x]" {
		t.Fatalf("LOOKUP: %v", set)
	}

	// registryctl reads sessions too: without the password it says what
	// to pass; with it (by env, or as a named user by flag) it works.
	ctl := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(registryctlBin, append([]string{"--meta", metaAddr}, args...)...)
		cmd.Env = append(envWithout("SLOTREG_REQUIREPASS"), env...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := ctl(nil, "lookup", "svc"); code != 1 || !strings.Contains(out, "--password") {
		t.Fatalf("registryctl without the password: exit %d: %s", code, out)
	}
	if out, code := ctl([]string{"SLOTREG_REQUIREPASS=from-env"}, "lookup", "svc"); code != 0 || !strings.Contains(out, "r-alice") {
		t.Fatalf("registryctl with the password in the environment: exit %d: %s", code, out)
	}
	if out, code := ctl(nil, "--user", "bob", "--password", "bob-pw", "lookup", "svc"); code != 0 || !strings.Contains(out, "r-default") {
		t.Fatalf("registryctl as bob: exit %d: %s", code, out)
	}
}
