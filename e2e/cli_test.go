package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
)

// TestDevPrintsReadyAndServes runs `registry dev` as a newcomer would and
// uses the address it prints: the start reads well (a banner naming where
// to connect and the console, then ready, within 30 lines and with no
// warning or error logged), the console it names answers, and INFO says
// what its counters count.
func TestDevPrintsReadyAndServes(t *testing.T) {
	var stderr testutil.LockedBuffer
	p := startDevProcess(t, nil, &stderr)
	if len(p.before) > 30 {
		t.Errorf("registry dev printed %d lines before ready, want at most 30:\n%s", len(p.before), strings.Join(p.before, "\n"))
	}
	for _, line := range p.before {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("a normal start logged: %s", line)
		}
	}
	if p.console == "" {
		t.Fatalf("the banner names no web console:\n%s", strings.Join(p.before, "\n"))
	}
	resp, err := http.Get(p.console)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "slotreg") {
		t.Fatalf("GET %s: %s\n%.200s", p.console, resp.Status, page)
	}

	c := mustClient(t, p.session)
	register(t, c, "dev-svc", "r1", "10.0.0.1:80")
	if _, set := lookup(t, c, "dev-svc"); fmt.Sprint(set) != "[r1=10.0.0.1:80]" {
		t.Fatalf("LOOKUP: %v", set)
	}
	// A TTL publisher lives in the data nodes, not in the session that
	// took it: INFO counts it in the cluster, not as the session's.
	register(t, c, "dev-svc", "r2", "10.0.0.2:80", "TTL", 60)
	info, err := c.Info(ctxT(t), "registry").Result()
	if err != nil || !strings.Contains(info, "\nsession_conn_publishers:1\r\n") {
		t.Fatalf("INFO registry: %v\n%s", err, info)
	}
	info, err = c.Info(ctxT(t), "cluster").Result()
	for _, want := range []string{"cluster_publishers:2\r\n", "cluster_conn_publishers:1\r\n", "cluster_ttl_publishers:1\r\n",
		"cluster_datainfo_ids:1\r\n", "cluster_data_nodes_answered:2/2\r\n"} {
		if err != nil || !strings.Contains(info, want) {
			t.Fatalf("INFO cluster lacks %q: %v\n%s", want, err, info)
		}
	}
	c.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.waitErr != nil {
			t.Fatalf("registry dev exited with %v after SIGTERM", p.waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("registry dev did not exit after SIGTERM")
	}
}

func TestSubcommandHelpListsFlags(t *testing.T) {
	for role, flags := range map[string][]string{
		"meta":    {"--id", "--raft", "--rpc", "--peers", "--data-dir", "--lease", "--http"},
		"data":    {"--id", "--listen", "--meta", "--http"},
		"session": {"--id", "--listen", "--meta", "--http"},
		"dev":     {"--listen"},
		"node":    {"--id", "--roles", "--listen", "--data-listen", "--raft", "--rpc", "--meta", "--oplog-size", "--max-connections"},
	} {
		out, err := exec.Command(registryBin, role, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help: %v\n%s", role, err, out)
		}
		for _, f := range flags {
			if !strings.Contains(string(out), f) {
				t.Errorf("%s --help lacks %s:\n%s", role, f, out)
			}
		}
	}
	out, err := exec.Command(registryBin, "data", "--id", "d1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "meta") {
		t.Fatalf("data without --meta: err=%v out=%s", err, out)
	}
}

// redisCLI runs redis-cli; CI installs it, elsewhere the test skips
// without it.
func redisCLI(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-cli is not installed; .ci/run should have installed redis-tools")
		}
		t.Skip("redis-cli not installed (apt-get install redis-tools)")
	}
	return path
}

func TestRedisCLI(t *testing.T) {
	cli := redisCLI(t)
	cl := mustCluster(t, 1)
	host, port, _ := strings.Cut(cl.Sessions[0].Addr(), ":")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := run("PING"); out != "PONG" {
		t.Fatalf("PING: %q", out)
	}
	if out := run("REGISTER", "cli-svc", "r1", "10.0.0.1:80", "TTL", "30"); strings.HasPrefix(out, "ERR") || out == "" {
		t.Fatalf("REGISTER: %q", out)
	}
	if out := run("LOOKUP", "cli-svc"); !strings.Contains(out, "r1") || !strings.Contains(out, "10.0.0.1:80") {
		t.Fatalf("LOOKUP: %q", out)
	}
	if out := run("-3", "LOOKUP", "cli-svc"); !strings.Contains(out, "10.0.0.1:80") {
		t.Fatalf("LOOKUP over RESP3: %q", out)
	}
	for _, q := range [][]string{{"COMMAND", "DOCS"}, {"COMMAND"}, {"COMMAND", "COUNT"}, {"INFO"}, {"CLIENT", "SETNAME", "x"}} {
		if out := run(q...); strings.HasPrefix(out, "ERR") {
			t.Fatalf("%v: %q", q, out)
		}
	}
	if out := run("NOSUCH"); !strings.HasPrefix(out, "ERR unknown command") {
		t.Fatalf("unknown command: %q", out)
	}

	// SUBSCRIBE prints the current state, then a change.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "SUBSCRIBE", "cli-svc")
	out, err := sub.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sub.Process.Kill(); sub.Wait() }()
	sc := bufio.NewScanner(out)
	waitLine := func(want string) {
		t.Helper()
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				return
			}
		}
		t.Fatalf("redis-cli SUBSCRIBE never printed %q", want)
	}
	waitLine(`"registerId":"r1"`)
	c := redis.NewClient(&redis.Options{Addr: cl.Sessions[0].Addr()})
	defer c.Close()
	register(t, c, "cli-svc", "r2", "10.0.0.2:80")
	waitLine(`"registerId":"r2"`)
}
