package respguard

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

func bulkCmd(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

// scanChunked feeds s in random chunk sizes.
func scanChunked(t *testing.T, s *Scanner, in string, r *rand.Rand) error {
	t.Helper()
	for len(in) > 0 {
		n := 1 + r.IntN(len(in))
		if err := s.Scan([]byte(in[:n])); err != nil {
			return err
		}
		in = in[n:]
	}
	return nil
}

func TestCommandsUnderTheLimitPass(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	one := bulkCmd("REGISTER", "svc", "r1", strings.Repeat("x", 900))
	if len(one) > 1000 {
		t.Fatalf("test command is %d bytes", len(one))
	}
	// A pipeline far over the limit in total, each command under it.
	stream := strings.Repeat(one, 50) + "PING\r\n" + bulkCmd("PING") + strings.Repeat(one, 50)
	for round := 0; round < 50; round++ {
		s := NewScanner("max-request-size", 1000)
		if err := scanChunked(t, s, stream, r); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

func TestOversizeCommandsFail(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := map[string]string{
		"huge bulk length announced": "*2\r\n$4\r\nECHO\r\n$1000000000\r\n",
		"huge array count announced": "*100000000\r\n",
		"bulk body over the limit":   bulkCmd("ECHO", strings.Repeat("y", 2000)),
		"inline line over the limit": strings.Repeat("z", 5000),
		"many small bulks":           bulkCmd(strings.Split(strings.Repeat("a,", 300), ",")...),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			s := NewScanner("max-request-size", 1000)
			err := scanChunked(t, s, bulkCmd("PING")+in, r)
			var le *LimitError
			if !errors.As(err, &le) {
				t.Fatalf("got %v, want a LimitError", err)
			}
			if le.Limit != "max-request-size" || le.Max != 1000 || le.Got <= 1000 {
				t.Fatalf("error %+v does not describe the limit", le)
			}
			if !strings.Contains(err.Error(), "max-request-size") {
				t.Fatalf("error text %q does not name the limit", err)
			}
		})
	}
}

func TestMalformedStreamIsLeftToTheReader(t *testing.T) {
	for _, in := range []string{"*x\r\n", "*2\r\n+OK\r\n", "*-1\r\n", "*1\r\n$99999999999999999999999\r\n"} {
		s := NewScanner("max-request-size", 1000)
		if err := s.Scan([]byte(in + strings.Repeat("q", 5000))); err != nil {
			t.Fatalf("%q: %v (malformed input is the RESP reader's to refuse)", in, err)
		}
	}
}

// TestGuardedServer runs redcon's reader over a guarded connection: a
// normal pipeline is read whole, a huge bulk header fails the read at once
// without the server waiting for or buffering the announced bytes.
func TestGuardedServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var heard *LimitError
	gl := Listen(ln, "max-request-size", 4096, func(_ net.Conn, e *LimitError) { heard = e })
	defer gl.Close()
	type result struct {
		cmds int
		err  error
	}
	results := make(chan result, 1)
	go func() {
		c, err := gl.Accept()
		if err != nil {
			results <- result{err: err}
			return
		}
		defer c.Close()
		rd := redcon.NewReader(c)
		n := 0
		for {
			cmds, err := rd.ReadCommands()
			n += len(cmds)
			if err != nil {
				results <- result{n, err}
				return
			}
		}
	}()
	c, err := net.Dial("tcp", gl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, strings.Repeat(bulkCmd("SET", "k", strings.Repeat("v", 3000)), 10)+"*2\r\n$4\r\nECHO\r\n$2000000000\r\nabc"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		var le *LimitError
		if !errors.As(r.err, &le) {
			t.Fatalf("read ended with %v, want a LimitError", r.err)
		}
		if heard != r.err {
			t.Fatalf("onLimit heard %v, the read failed with %v", heard, r.err)
		}
		if r.cmds != 10 {
			t.Fatalf("read %d whole commands before the bad one, want 10", r.cmds)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server was still waiting for the announced bytes")
	}
}

func TestZeroLimitIsNoGuard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if Listen(ln, "x", 0, nil) != ln {
		t.Fatal("a zero limit wrapped the listener")
	}
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte(bulkCmd("REGISTER", "a", "b", "c")), uint8(3))
	f.Add([]byte("PING\r\n*1\r\n$4\r\nPING\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		s := NewScanner("max-request-size", 256)
		step := int(chunk%16) + 1
		for len(in) > 0 {
			n := min(step, len(in))
			if err := s.Scan(in[:n]); err != nil {
				var le *LimitError
				if !errors.As(err, &le) || le.Got <= le.Max {
					t.Fatalf("bad error %v", err)
				}
				return
			}
			in = in[n:]
		}
	})
}
