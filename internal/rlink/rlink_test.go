package rlink

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// serve answers each connection with the raw bytes reply returns for the
// command's first argument, after checking AUTH when a password is set.
func serve(t *testing.T, password string, reply func(cmd string) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go redcon.Serve(ln, func(conn redcon.Conn, cmd redcon.Command) {
		name := strings.ToLower(string(cmd.Args[0]))
		if name == "auth" {
			if len(cmd.Args) == 2 && string(cmd.Args[1]) == password {
				conn.WriteString("OK")
			} else {
				conn.WriteError("WRONGPASS bad secret")
			}
			return
		}
		conn.WriteRaw([]byte(reply(name)))
	}, nil, nil)
	return ln.Addr().String()
}

func TestDoReadsEveryKind(t *testing.T) {
	addr := serve(t, "s3cret", func(cmd string) string {
		switch cmd {
		case "ints":
			return "*3\r\n:1\r\n:-7\r\n-NOTOWNER slot 3\r\n"
		case "bulk":
			return "$5\r\nhe\r\no\r\n"
		case "nested":
			return "*2\r\n*2\r\n:4\r\n$3\r\nlog\r\n$-1\r\n"
		}
		return "-ERR unknown\r\n"
	})
	c, err := Dial(addr, Options{Password: "s3cret", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dl := time.Now().Add(2 * time.Second)

	r, err := c.Do(dl, AppendCommand(nil, "ints"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != '*' || len(r.Arr) != 3 || r.Arr[0].Int != 1 || r.Arr[1].Int != -7 || r.Arr[2].Kind != '-' ||
		r.Arr[2].Err().Error() != "NOTOWNER slot 3" {
		t.Fatalf("ints: %+v", r)
	}
	r, err = c.Do(dl, AppendCommand(nil, "bulk"))
	if err != nil || r.Kind != '$' || string(r.Str) != "he\r\no" {
		t.Fatalf("bulk: %+v, %v", r, err)
	}
	r, err = c.Do(dl, AppendCommand(nil, "nested"))
	if err != nil || len(r.Arr) != 2 || len(r.Arr[0].Arr) != 2 || string(r.Arr[0].Arr[1].Str) != "log" || r.Arr[1].Kind != '_' {
		t.Fatalf("nested: %+v, %v", r, err)
	}
	r, err = c.Do(dl, AppendCommand(nil, "other"))
	if err != nil || r.Err() == nil || r.Err().Error() != "ERR unknown" {
		t.Fatalf("error reply: %+v, %v", r, err)
	}
}

func TestDialRefusesAWrongPassword(t *testing.T) {
	addr := serve(t, "right", func(string) string { return "+OK\r\n" })
	_, err := Dial(addr, Options{Password: "wrong", Timeout: time.Second})
	var re Error
	if !errors.As(err, &re) || !strings.HasPrefix(string(re), "WRONGPASS") {
		t.Fatalf("dial with a wrong password: %v", err)
	}
}

func TestBadRepliesAreErrorsNotPanics(t *testing.T) {
	for name, raw := range map[string]string{
		"unknown type":  "?x\r\n",
		"no CR":         ":1\n",
		"bad int":       ":x\r\n",
		"huge bulk":     "$999999999999\r\n",
		"huge array":    "*999999999999\r\n",
		"short bulk":    "$10\r\nabc\r\n",
		"deep nesting":  strings.Repeat("*1\r\n", 20) + ":1\r\n",
		"empty line":    "\r\n",
		"bulk no count": "$\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			addr := serve(t, "", func(string) string { return raw })
			c, err := Dial(addr, Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.MaxReply = 1 << 20
			if r, err := c.Do(time.Now().Add(300*time.Millisecond), AppendCommand(nil, "x")); err == nil {
				t.Fatalf("reply %q read as %+v", raw, r)
			}
		})
	}
}
