package e2e

import (
	"bufio"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
)

// devProcess is a running `registry dev`, started by startDevProcess.
type devProcess struct {
	cmd           *exec.Cmd
	session, meta string // the addresses it printed
	console       string // the web console's URL it printed, if any
	// before is what it printed on stdout before ready, then what it had
	// logged by then when stderr was collected.
	before []string
	// exited is closed once the process has exited, and waitErr is then
	// what cmd.Wait returned.
	exited  chan struct{}
	waitErr error
}

// devReady is the line `registry dev` prints first: its session address,
// then meta's.
var devReady = regexp.MustCompile(`^slotreg dev: session on (\S+)(?: \(meta ([^,\s)]+))?`)

// devConsole is the banner's line with the web console's URL.
var devConsole = regexp.MustCompile(`^\s*web console:\s+(https?://\S+)`)

// startDevProcess runs `registry dev --listen 127.0.0.1:0` with args (and
// --http 127.0.0.1:0 unless args set --http) and waits until it prints
// ready; env, when set, is its whole environment, and stderr, when set,
// collects what it logs (and is shown when it fails to start). The
// process is killed at cleanup.
func startDevProcess(t *testing.T, env []string, stderr *testutil.LockedBuffer, args ...string) *devProcess {
	t.Helper()
	base := []string{"dev", "--listen", "127.0.0.1:0"}
	if !slices.Contains(args, "--http") {
		base = append(base, "--http", "127.0.0.1:0")
	}
	cmd := exec.Command(registryBin, append(base, args...)...)
	cmd.Env = env
	if stderr != nil {
		cmd.Stderr = stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, exited: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	stderrText := func() string {
		if stderr == nil {
			return ""
		}
		return "; stderr:\n" + stderr.String()
	}
	timeout := time.After(30 * time.Second)
	for ready := false; !ready; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("registry dev exited before printing ready%s", stderrText())
			}
			if m := devReady.FindStringSubmatch(line); m != nil {
				p.session, p.meta = m[1], m[2]
			}
			if m := devConsole.FindStringSubmatch(line); m != nil {
				p.console = m[1]
			}
			ready = line == "ready"
			if !ready {
				p.before = append(p.before, line)
			} else if stderr != nil {
				// The log so far: what a newcomer's terminal shows
				// above ready (a line or two after it may be counted).
				p.before = append(p.before, strings.Split(strings.TrimSpace(stderr.String()), "\n")...)
			}
		case <-timeout:
			t.Fatalf("registry dev printed no ready line in 30s%s", stderrText())
		}
	}
	if p.session == "" {
		t.Fatal("registry dev did not print its session address")
	}
	go func() {
		for range lines {
		}
	}()
	return p
}
