package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// ScriptCluster is a 3 meta / 3 data / 2 session cluster run by
// scripts/cluster.sh, with its own base port and state directory.
type ScriptCluster struct {
	Script string
	Dir    string
	Base   int
	env    []string
	wrap   []string
	ownDir bool
	keep   bool
}

// ScriptOptions says how to run scripts/cluster.sh.
type ScriptOptions struct {
	ModuleDir string        // the repository (default: found from the working directory)
	Bin       string        // registry binary (default: built into Dir)
	Lease     time.Duration // SLOTREG_LEASE
	Heartbeat time.Duration // SLOTREG_HEARTBEAT (default cluster.sh's)
	Dir       string        // SLOTREG_CLUSTER_DIR (default: a temporary directory)
	Keep      bool          // leave a temporary Dir (logs) in place after Down
	// NetNS runs every node in its own network namespace (SLOTREG_NETNS=1,
	// as root), so faults can partition and slow links (see faults.go).
	NetNS bool
	// Base fixes SLOTREG_BASE_PORT (default: a free one is picked, and
	// another on a clash); two datacenters must know each other's first.
	Base int
	// Env is added to the nodes' environment (SLOTREG_DATACENTER and the
	// like).
	Env []string
	// Wrap runs cluster.sh, and so every node, under a command prefix
	// (xdclink.Wrap for the second datacenter).
	Wrap     []string
	Progress *Progress
}

// NodeStatus is one line of `cluster.sh status`.
type NodeStatus struct {
	Role, ID, Addr string
	Pid            int
	Up             bool
}

// StartScriptCluster picks a free base port and runs `cluster.sh up`.
func StartScriptCluster(ctx context.Context, o ScriptOptions) (*ScriptCluster, error) {
	if o.ModuleDir == "" {
		var err error
		if o.ModuleDir, err = ModuleDir(); err != nil {
			return nil, err
		}
	}
	s := &ScriptCluster{Script: filepath.Join(o.ModuleDir, "scripts", "cluster.sh"), keep: o.Keep, wrap: o.Wrap}
	var err error
	if s.Dir, s.ownDir, err = workDir(o.Dir, "slotreg-bench-cluster-"); err != nil {
		return nil, err
	}
	if o.Bin, err = registryBinary(ctx, o.Bin, o.ModuleDir, s.Dir, o.Progress); err != nil {
		s.remove()
		return nil, err
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Second
	}
	var lastErr error
	attempts := 5
	if o.Base > 0 {
		attempts = 1
	}
	for attempt := 0; attempt < attempts; attempt++ {
		base := o.Base
		if base <= 0 {
			if base, err = freeBase(); err != nil {
				lastErr = err
				continue
			}
		}
		s.Base = base
		s.env = append(os.Environ(), "SLOTREG_BASE_PORT="+strconv.Itoa(base), "SLOTREG_CLUSTER_DIR="+s.Dir,
			"SLOTREG_BIN="+o.Bin, "SLOTREG_LEASE="+o.Lease.String())
		s.env = append(s.env, o.Env...)
		if o.Heartbeat > 0 {
			s.env = append(s.env, "SLOTREG_HEARTBEAT="+o.Heartbeat.String())
		}
		if o.NetNS {
			s.env = append(s.env, "SLOTREG_NETNS=1")
		}
		o.Progress.Logf("cluster.sh up (base port %d, state in %s)", base, s.Dir)
		if _, err := s.run(ctx, "up"); err != nil {
			lastErr = err
			s.run(context.Background(), "down")
			continue
		}
		return s, nil
	}
	s.remove()
	return nil, lastErr
}

// FreeBase picks a base port for StartScriptCluster (ScriptOptions.Base)
// whose cluster ports are all free at the moment and that differs from
// every one in not.
func FreeBase(not ...int) (int, error) {
	for range 20 {
		b, err := freeBase()
		if err != nil {
			return 0, err
		}
		if !slices.Contains(not, b) {
			return b, nil
		}
	}
	return 0, fmt.Errorf("no free base port found")
}

// freeBase picks a base port whose cluster ports (base+11 .. base+72) are
// all free at the moment.
func freeBase() (int, error) {
	for range 20 {
		// Below 32768, where Linux starts handing out ephemeral source
		// ports: a client connection holding one of the cluster's ports
		// would stop a restarted node from listening on it.
		base := 20000 + rand.IntN(120)*100
		ok := true
		for p := base + 11; p <= base+72 && ok; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no free base port found")
}

func (s *ScriptCluster) run(ctx context.Context, args ...string) (string, error) {
	argv := append(append(append([]string{}, s.wrap...), "bash", s.Script), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = s.env
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Status lists the nodes.
func (s *ScriptCluster) Status(ctx context.Context) ([]NodeStatus, error) {
	out, err := s.run(ctx, "status")
	if err != nil {
		return nil, err
	}
	var ns []NodeStatus
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			continue
		}
		pid, _ := strconv.Atoi(f[3])
		ns = append(ns, NodeStatus{Role: f[0], ID: f[1], Addr: f[2], Pid: pid, Up: f[4] == "up"})
	}
	return ns, nil
}

// Addrs lists the addresses of the nodes of one role.
func (s *ScriptCluster) Addrs(ctx context.Context, role string) ([]string, error) {
	ns, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range ns {
		if n.Role == role {
			out = append(out, n.Addr)
		}
	}
	return out, nil
}

// Kill sends SIGKILL to node id.
func (s *ScriptCluster) Kill(ctx context.Context, id string) error {
	pid, err := s.Pid(ctx, id)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	// Until the process is gone, `cluster.sh start` finds it running and
	// then sees it exit: a restart right after the kill would fail.
	for deadline := time.Now().Add(10 * time.Second); !processGone(pid); {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) still exists 10 s after SIGKILL", id, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Pid is the process id of a running node. Look it up before timing a
// kill: `cluster.sh status` takes tens of milliseconds, during which the
// node still serves.
func (s *ScriptCluster) Pid(ctx context.Context, id string) (int, error) {
	ns, err := s.Status(ctx)
	if err != nil {
		return 0, err
	}
	for _, n := range ns {
		if n.ID == id {
			if !n.Up || n.Pid <= 0 {
				return 0, fmt.Errorf("%s is not running", id)
			}
			return n.Pid, nil
		}
	}
	return 0, fmt.Errorf("no node %s", id)
}

// Start restarts node id (after a kill) and waits until it is ready.
func (s *ScriptCluster) Start(ctx context.Context, id string) error {
	_, err := s.run(ctx, "start", id)
	return err
}

// Table fetches the slot table from the meta nodes.
func (s *ScriptCluster) Table(ctx context.Context) (*slot.Table, error) {
	metas, err := s.Addrs(ctx, proto.KindMeta)
	if err != nil {
		return nil, err
	}
	return FetchTable(ctx, metas)
}

// Down stops every node and removes a temporary Dir unless asked to
// keep it.
func (s *ScriptCluster) Down() error {
	_, err := s.run(context.Background(), "down")
	s.remove()
	return err
}

func (s *ScriptCluster) remove() {
	if s.ownDir && !s.keep {
		os.RemoveAll(s.Dir)
	}
}

// processGone says whether pid has exited: it no longer exists, or it is a
// zombie its parent (init, for a node cluster.sh started) has not reaped.
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}
