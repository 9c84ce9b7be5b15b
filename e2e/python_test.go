package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// python3Redis is a Python 3 that has redis-py: Debian's /usr/bin/python3
// with python3-redis (which .ci/run installs), or the first python3 on
// PATH that has it. A machine with neither fails the test.
func python3Redis(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
		tried = append(tried, path)
	}
	t.Fatalf("no python3 with redis-py (tried %v): apt-get install python3-redis (.ci/run does)", tried)
	return ""
}

// TestPythonExample runs examples/python/registry_demo.py, the redis-py
// provider and consumer, against a session: it registers two instances,
// and its subscriber is pushed both, then one when the other is
// unregistered, then none once the provider's connection is closed.
func TestPythonExample(t *testing.T) {
	t.Parallel()
	py := python3Redis(t)
	cl := mustCluster(t, 1)
	host, port, _ := strings.Cut(cl.Sessions[0].Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "../examples/python/registry_demo.py", "--host", host, "--port", port, "--service", "py-svc")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("registry_demo.py: %v\n%s", err, out)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^registered i1 10\.0\.0\.1:8080 at version \d+$`),
		regexp.MustCompile(`^registered i2 10\.0\.0\.2:8080 at version \d+$`),
		regexp.MustCompile(`^push \d+ \[\('i1', '10\.0\.0\.1:8080'\), \('i2', '10\.0\.0\.2:8080'\)\]$`),
		regexp.MustCompile(`^push \d+ \[\('i1', '10\.0\.0\.1:8080'\)\]$`),
		regexp.MustCompile(`^push \d+ \[\]$`),
		regexp.MustCompile(`^lookup \[\d+, \[\]\]$`),
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(want) {
		t.Fatalf("registry_demo.py printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d: %q does not match %s", i+1, lines[i], re)
		}
	}
}
