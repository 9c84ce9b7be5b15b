package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Peer is a system the same workloads run against for comparison.
type Peer struct {
	Kind string // TargetRedis or TargetEtcd
	Addr string // HOST:PORT, or "local" to start one
}

// ParsePeer reads "redis=HOST:PORT" or "etcd=HOST:PORT" (HOST:PORT may be
// "local").
func ParsePeer(s string) (Peer, error) {
	kind, addr, ok := strings.Cut(s, "=")
	if !ok || addr == "" || (kind != TargetRedis && kind != TargetEtcd) {
		return Peer{}, fmt.Errorf("--peer %q: want redis=HOST:PORT or etcd=HOST:PORT (or =local)", s)
	}
	return Peer{Kind: kind, Addr: addr}, nil
}

// Started is a peer process the harness started; Stop ends it and removes
// its state.
type Started struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// Stop terminates the process and removes its directory.
func (s *Started) Stop() {
	if s == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

func startProc(name string, dir string, args ...string) (*Started, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s not installed (apt-get install -y %s): %w", name, map[string]string{"redis-server": "redis-server", "etcd": "etcd-server"}[name], err)
	}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &Started{cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(s.done) }()
	return s, nil
}

// StartRedis starts redis-server on a free loopback port, without
// persistence (the registry's data nodes keep state in memory too).
func StartRedis(ctx context.Context) (*Started, error) {
	dir, err := os.MkdirTemp("", "slotreg-bench-redis-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	s, err := startProc("redis-server", dir, "--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no", "--dir", dir,
		// The fanout peer holds 10k subscribers (the default allows 10,000
		// clients in all); Redis lowers this to what RLIMIT_NOFILE allows.
		"--maxclients", "50000")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, DisableIdentity: true})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c.Ping(ctx).Err() == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("redis-server on %s not answering; log in %s", s.Addr, dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartEtcd starts a single-member etcd on free loopback ports with its
// default durability (fsync per commit).
func StartEtcd(ctx context.Context) (*Started, error) {
	dir, err := os.MkdirTemp("", "slotreg-bench-etcd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s, err := startProc("etcd", dir, "--name", "bench", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--log-level", "warn")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(ports[0])
	for deadline := time.Now().Add(15 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("etcd on %s not answering; log in %s", s.Addr, dir)
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RunEtcdPeer runs the etcd peer module (a separate Go module, so the
// registry never links the etcd client) with `go run . ARGS --json` in
// dir, or the binary bin when given, and decodes its results.
func RunEtcdPeer(ctx context.Context, dir, bin string, args ...string) ([]*Result, error) {
	var cmd *exec.Cmd
	args = append(args, "--json")
	if bin != "" {
		cmd = exec.CommandContext(ctx, bin, args...)
	} else {
		cmd = exec.CommandContext(ctx, "go", append([]string{"run", "."}, args...)...)
		cmd.Dir = dir
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("etcd peer (%s): %w", strings.Join(cmd.Args, " "), err)
	}
	var rs []*Result
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		return nil, fmt.Errorf("etcd peer output: %w", err)
	}
	return rs, nil
}
