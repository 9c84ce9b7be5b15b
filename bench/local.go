package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// LocalOptions says what StartLocal starts: real registry processes on
// 127.0.0.1, one meta voter, Data data nodes and Sessions session nodes.
type LocalOptions struct {
	// Bin is the registry binary; when empty it is built from ModuleDir
	// into Dir.
	Bin       string
	ModuleDir string
	Data      int           // default 2
	Sessions  int           // default 1
	Replicas  int           // default 2
	Lease     time.Duration // meta lease, default 3s
	// Dir holds state and logs; a temporary directory (removed by Close)
	// when empty.
	Dir      string
	Progress *Progress
	// Integrated runs `registry node` processes instead: one per data
	// node, each with a session beside its data node and the first with
	// meta too (Sessions is then Data).
	Integrated bool
}

// KindNode is the role of a `registry node` process (Integrated).
const KindNode = "node"

// Proc is one registry process the harness started.
type Proc struct {
	Role, ID string
	Addr     string // the address clients or nodes dial
	HTTP     string // /readyz and /metrics
	cmd      *exec.Cmd
	done     chan struct{}
	log      *os.File
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM, then SIGKILL after grace.
func (p *Proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Local is a cluster of registry processes started by StartLocal.
type Local struct {
	Dir    string
	Procs  []*Proc
	ownDir bool
	metas  []string
}

// Metas lists the meta RPC addresses.
func (l *Local) Metas() []string { return l.metas }

// ByRole lists the processes of one role, in start order.
func (l *Local) ByRole(role string) []*Proc {
	var out []*Proc
	for _, p := range l.Procs {
		if p.Role == role {
			out = append(out, p)
		}
	}
	return out
}

// Sessions lists the session client addresses.
func (l *Local) Sessions() []string {
	var out []string
	for _, p := range append(l.ByRole(proto.KindSession), l.ByRole(KindNode)...) {
		out = append(out, p.Addr)
	}
	return out
}

// Close stops sessions, then data nodes, then meta (integrated nodes
// first of all, the one with meta last), and removes a temporary Dir.
func (l *Local) Close() error {
	nodes := l.ByRole(KindNode)
	for i := len(nodes) - 1; i >= 0; i-- {
		nodes[i].stop(10 * time.Second)
	}
	for _, role := range []string{proto.KindSession, proto.KindData, proto.KindMeta} {
		for _, p := range l.ByRole(role) {
			p.stop(10 * time.Second)
		}
	}
	if l.ownDir {
		return os.RemoveAll(l.Dir)
	}
	return nil
}

// workDir returns dir, or a new temporary directory named after pattern
// when dir is empty; own says it was made here, for the caller to remove.
func workDir(dir, pattern string) (_ string, own bool, _ error) {
	if dir != "" {
		return dir, false, nil
	}
	d, err := os.MkdirTemp("", pattern)
	return d, err == nil, err
}

// registryBinary returns bin, or when it is empty builds the registry
// binary into dir (see BuildRegistry).
func registryBinary(ctx context.Context, bin, moduleDir, dir string, p *Progress) (string, error) {
	if bin != "" {
		return bin, nil
	}
	p.Logf("building the registry binary")
	return BuildRegistry(ctx, moduleDir, dir)
}

// BuildRegistry builds cmd/registry of the module in moduleDir (found
// from the working directory when empty) into outDir and returns the
// binary's path.
func BuildRegistry(ctx context.Context, moduleDir, outDir string) (string, error) {
	if moduleDir == "" {
		var err error
		if moduleDir, err = ModuleDir(); err != nil {
			return "", err
		}
	}
	bin := filepath.Join(outDir, "registry")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/registry")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build registry in %s: %v\n%s", moduleDir, err, out)
	}
	return bin, nil
}

// ModuleDir finds the slotreg module root from the working directory.
func ModuleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the slotreg module: run from the repository or pass --bin")
	}
	dir := filepath.Dir(mod)
	if _, err := os.Stat(filepath.Join(dir, "cmd", "registry")); err != nil {
		return "", fmt.Errorf("%s has no cmd/registry: run from the slotreg repository or pass --bin", dir)
	}
	return dir, nil
}

// freePorts returns n distinct loopback ports that were free a moment
// ago. The nodes are separate processes that take addresses as flags, so
// the listeners cannot be handed over open; StartLocal retries on a clash.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// StartLocal starts a cluster of registry processes and waits until the
// sessions route every slot over a balanced table holding every data
// node.
func StartLocal(ctx context.Context, o LocalOptions) (*Local, error) {
	if o.Data <= 0 {
		o.Data = 2
	}
	if o.Sessions <= 0 {
		o.Sessions = 1
	}
	if o.Replicas <= 0 {
		o.Replicas = 2
	}
	if o.Lease <= 0 {
		o.Lease = 3 * time.Second
	}
	l := &Local{}
	var err error
	if l.Dir, l.ownDir, err = workDir(o.Dir, "slotreg-bench-"); err != nil {
		return nil, err
	}
	if o.Bin, err = registryBinary(ctx, o.Bin, o.ModuleDir, l.Dir, o.Progress); err != nil {
		l.Close()
		return nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		if err = l.launch(ctx, o); err == nil {
			return l, nil
		}
		for _, p := range l.Procs {
			p.stop(5 * time.Second)
			p.log.Close()
		}
		l.Procs = nil
		os.RemoveAll(filepath.Join(l.Dir, "meta1"))
	}
	l.Close()
	return nil, err
}

func (l *Local) launch(ctx context.Context, o LocalOptions) error {
	ports, err := freePorts(3 + 3*o.Data + 2*o.Sessions)
	if err != nil {
		return err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	metaRPC := addr(1)
	l.metas = []string{metaRPC}
	type spec struct {
		role, id, addr, http string
		args                 []string
	}
	specs := []spec{{proto.KindMeta, "meta1", metaRPC, addr(2), []string{
		"--raft", addr(0), "--rpc", metaRPC, "--data-dir", filepath.Join(l.Dir, "meta1"),
		"--lease", o.Lease.String(), "--replicas", strconv.Itoa(o.Replicas), "--auto-rebalance",
	}}}
	next := 3
	if o.Integrated {
		// The meta spec's addresses become the first node's.
		base := specs[0].args
		specs = nil
		for i := 1; i <= o.Data; i++ {
			a, d, h := addr(next), addr(next+1), addr(next+2)
			if i == 1 {
				h = addr(2)
			}
			next += 3
			args := []string{"--listen", a, "--data-listen", d}
			if i == 1 {
				args = append(args, base...)
			} else {
				args = append(args, "--roles", "data,session", "--meta", metaRPC)
			}
			specs = append(specs, spec{KindNode, "node" + strconv.Itoa(i), a, h, args})
		}
	}
	for i := 1; i <= o.Data && !o.Integrated; i++ {
		a, h := addr(next), addr(next+1)
		next += 2
		specs = append(specs, spec{proto.KindData, "data" + strconv.Itoa(i), a, h, []string{"--listen", a, "--meta", metaRPC}})
	}
	for i := 1; i <= o.Sessions && !o.Integrated; i++ {
		a, h := addr(next), addr(next+1)
		next += 2
		specs = append(specs, spec{proto.KindSession, "session" + strconv.Itoa(i), a, h, []string{"--listen", a, "--meta", metaRPC}})
	}
	for _, s := range specs {
		logf, err := os.OpenFile(filepath.Join(l.Dir, s.id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		args := append([]string{s.role, "--id", s.id, "--http", s.http}, s.args...)
		cmd := exec.Command(o.Bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", s.id, err)
		}
		p := &Proc{Role: s.role, ID: s.id, Addr: s.addr, HTTP: s.http, cmd: cmd, done: make(chan struct{}), log: logf}
		go func() { cmd.Wait(); logf.Close(); close(p.done) }()
		l.Procs = append(l.Procs, p)
	}
	o.Progress.Logf("started %d processes in %s; waiting for a balanced table", len(specs), l.Dir)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, p := range l.Procs {
		if err := waitReadyz(ctx, p, l.Dir); err != nil {
			return err
		}
	}
	want := min(o.Replicas-1, o.Data-1)
	last := "no table yet"
	for {
		t, err := FetchTable(ctx, []string{metaRPC})
		if err == nil {
			if ok, why := settled(t, o.Data, want); ok {
				break
			} else {
				last = why
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster in %s not settled: %s", l.Dir, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, p := range append(l.ByRole(proto.KindSession), l.ByRole(KindNode)...) {
		if err := waitReadyz(ctx, p, l.Dir); err != nil {
			return err
		}
	}
	return nil
}

// settled says whether t holds nodes data nodes, every slot has a leader
// and followers followers, nothing moves and leaders are spread evenly.
func settled(t *slot.Table, nodes, followers int) (bool, string) {
	if len(t.Nodes) != nodes {
		return false, fmt.Sprintf("table has %d data nodes, want %d", len(t.Nodes), nodes)
	}
	if m := t.Moving(); len(m) > 0 {
		return false, fmt.Sprintf("%d slots moving", len(m))
	}
	for s := range t.Slots {
		a := &t.Slots[s]
		if a.Leader == "" || len(a.Followers) < followers {
			return false, fmt.Sprintf("slot %d has leader %q and %d followers", s, a.Leader, len(a.Followers))
		}
	}
	lo, hi := slot.Count, 0
	for _, n := range t.Nodes {
		c := len(t.LedBy(n.ID))
		lo, hi = min(lo, c), max(hi, c)
	}
	if hi-lo > 1 {
		return false, fmt.Sprintf("leaders uneven (%d..%d a node)", lo, hi)
	}
	return true, ""
}

func waitReadyz(ctx context.Context, p *Proc, dir string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited; see %s", p.ID, filepath.Join(dir, p.ID+".log"))
		default:
		}
		if resp, err := hc.Get("http://" + p.HTTP + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready; see %s", p.ID, filepath.Join(dir, p.ID+".log"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FetchTable asks each meta node for the slot table and returns the one
// with the highest epoch (followers may answer a little stale).
func FetchTable(ctx context.Context, metas []string) (*slot.Table, error) {
	var best *slot.Table
	var errs []error
	for _, m := range metas {
		c := redis.NewClient(&redis.Options{Addr: m, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, PoolSize: 1})
		s, err := c.Do(ctx, proto.CmdTable).Text()
		c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		t, err := slot.Unmarshal([]byte(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			continue
		}
		if best == nil || t.Epoch > best.Epoch {
			best = t
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no slot table: %w", errors.Join(errs...))
	}
	return best, nil
}
