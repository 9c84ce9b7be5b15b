package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/redis/go-redis/v9"
	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/sessionserver"
)

// mustLimitedCluster is an in-process cluster whose session has lim.
func mustLimitedCluster(t *testing.T, lim sessionserver.Limits) *cluster.Local {
	t.Helper()
	return mustClusterWith(t, 1, func(o *cluster.Options) { o.SessionLimits = lim })
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil || !strings.HasPrefix(err.Error(), "ERR") {
		t.Fatalf("got %v, want an ERR naming %q", err, parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

// TestLimitsRefuseWithErrorsNamingThem sets every per-client limit low and
// goes over each: the reply names the limit, and neither the offender's
// other data nor another client's changes.
func TestLimitsRefuseWithErrorsNamingThem(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustLimitedCluster(t, sessionserver.Limits{
		MaxKeySize: 16, MaxDataSize: 100, MaxPublishersPerConn: 3, MaxSubscriptionsPerConn: 2,
		MaxRequestSize: 70_000,
	})
	addr := cl.Sessions[0].Addr()
	other := mustClient(t, addr)
	register(t, other, "bystander", "r", "kept")
	ctx := ctxT(t)

	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	wantErr(t, c.Do(ctx, "REGISTER", strings.Repeat("k", 17), "r", "d").Err(), "dataInfoId is 17 bytes", "max-key-size limit of 16")
	wantErr(t, c.Do(ctx, "REGISTER", "svc", strings.Repeat("r", 17), "d").Err(), "registerId is 17 bytes", "max-key-size")
	wantErr(t, c.Do(ctx, "LOOKUP", strings.Repeat("k", 17)).Err(), "max-key-size")
	wantErr(t, c.Do(ctx, "REGISTER", "svc", "r", strings.Repeat("d", 101)).Err(), "data is 101 bytes", "max-data-size limit of 100")

	for i := 1; i <= 3; i++ {
		register(t, c, "svc", "r"+strconv.Itoa(i), "d")
	}
	wantErr(t, c.Do(ctx, "REGISTER", "svc", "r4", "d").Err(), "max-publishers-per-conn limit of 3")
	// Replacing one it has is not a new publisher; a TTL publisher is not
	// bound to the connection.
	register(t, c, "svc", "r1", "d2")
	register(t, c, "svc", "ttl", "d", "TTL", "60")
	// Another connection has its own budget.
	register(t, other, "svc", "r9", "d")
	if _, set := lookup(t, other, "svc"); fmt.Sprint(set) != "[r1=d2 r2=d r3=d r9=d ttl=d]" {
		t.Fatalf("svc holds %v", set)
	}

	// SUBSCRIBE past the limit: the confirmations for what fits, then an
	// error for the rest, on a raw connection to see the exact frames.
	nc, rd := rawConn(t, addr)
	fmt.Fprint(nc, "SUBSCRIBE a b c\r\n")
	var frames []string
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(frames) < 3 {
		v, err := readFrame(rd)
		if err != nil {
			t.Fatalf("reading SUBSCRIBE replies: %v (so far %q)", err, frames)
		}
		if strings.HasPrefix(v, "[message") {
			continue // a subscribed service's state
		}
		frames = append(frames, v)
	}
	if frames[0] != "[subscribe a :1]" || frames[1] != "[subscribe b :2]" ||
		!strings.Contains(frames[2], "max-subscriptions-per-conn limit of 2") {
		t.Fatalf("SUBSCRIBE a b c over a limit of 2 got %q", frames)
	}

	// A request announcing more than max-request-size is refused at its
	// header: the session does not wait for the bytes.
	big, bigRd := rawConn(t, addr)
	fmt.Fprint(big, "*4\r\n$8\r\nREGISTER\r\n$3\r\nsvc\r\n$2\r\nrx\r\n$1000000000\r\nabc")
	big.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bigRd.ReadString('\n')
	if err != nil || !strings.Contains(line, "max-request-size limit of 70000") {
		t.Fatalf("huge bulk length: got %q, %v; want an error naming max-request-size", line, err)
	}
	if _, err := bigRd.ReadByte(); err == nil {
		t.Fatal("the connection stayed open after a request over the limit")
	}
	// Huge array counts and endless inline lines too.
	for _, junk := range []string{"*900000000\r\n", strings.Repeat("x", 80_000)} {
		nc, rd := rawConn(t, addr)
		io.WriteString(nc, junk)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := rd.ReadString('\n'); err != nil || !strings.Contains(line, "max-request-size") {
			t.Fatalf("%.20q...: got %q, %v", junk, line, err)
		}
	}
	// A data node disconnects a peer that announces an inter-node
	// request over max-message-size, and goes on serving.
	dn, dnRd := rawConn(t, cl.Data[0].Addr())
	fmt.Fprint(dn, "*2\r\n$4\r\nPING\r\n$999999999999\r\n")
	dn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := dnRd.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("a data node kept a peer announcing a 1 TB request: %v", err)
	}
	if _, set := lookup(t, other, "bystander"); fmt.Sprint(set) != "[r=kept]" {
		t.Fatalf("a bystander's publisher changed: %v", set)
	}
	if _, set := lookup(t, other, "svc"); fmt.Sprint(set) != "[r1=d2 r2=d r3=d r9=d ttl=d]" {
		t.Fatalf("svc changed: %v", set)
	}
}

// readFrame reads one reply and renders it: arrays, RESP3 pushes and maps
// as [a b c], bulks as their text, anything else as its line.
func readFrame(rd *bufio.Reader) (string, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty line")
	}
	switch line[0] {
	case '*', '>', '%':
		n, _ := strconv.Atoi(line[1:])
		if line[0] == '%' {
			n *= 2 // a map's keys and values
		}
		parts := make([]string, 0, n)
		for range n {
			p, err := readFrame(rd)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "[" + strings.Join(parts, " ") + "]", nil
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return line, nil
	}
}

func TestMaxConnectionsRefusesTheNextClient(t *testing.T) {
	t.Parallel() // an in-process cluster of its own
	cl := mustLimitedCluster(t, sessionserver.Limits{MaxConnections: 4})
	addr := cl.Sessions[0].Addr()
	var held []net.Conn
	for range 4 {
		nc, rd := rawConn(t, addr)
		fmt.Fprint(nc, "PING\r\n")
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := rd.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("connection %d: %q %v", len(held)+1, line, err)
		}
		held = append(held, nc)
	}
	nc, rd := rawConn(t, addr)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := rd.ReadString('\n')
	if err != nil || !strings.Contains(line, "max-connections limit of 4") {
		t.Fatalf("5th connection: got %q, %v; want an error naming max-connections", line, err)
	}
	// A slot frees up when a client leaves.
	held[0].Close()
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return false, err.Error()
		}
		defer nc.Close()
		fmt.Fprint(nc, "PING\r\n")
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(nc).ReadString('\n')
		return line == "+PONG\r\n", fmt.Sprintf("%q %v", line, err)
	})
}

// TestStalledSubscriberIsCutOffAndOthersKeepTheirLatency subscribes a
// client that never reads to 100 services, then makes 100k changes to
// them, on a cluster of real processes. The stalled client gets coalesced
// state until its output limit is full, then is disconnected after the
// stall timeout; the session's resident memory stays bounded, and a
// reading subscriber of the same services on the same session gets every
// final state with the push latency of a control subscriber on the other
// session, measured over the same changes (so the comparison holds
// however loaded the machine is).
func TestStalledSubscriberIsCutOffAndOthersKeepTheirLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("100k changes")
	}
	// The collector's headroom floor (--gc-floor) is memory an operator
	// chose, taken under any write load, stalled client or not: it is
	// off here, so the RSS budget below measures what the stall costs.
	c := mustScriptCluster(t, "SLOTREG_MAX_OUTPUT_BUFFER=262144", "SLOTREG_CLIENT_STALL_TIMEOUT=2s", "SLOTREG_GC_FLOOR=0")
	session, control := c.byRole("session")[0], c.byRole("session")[1]
	addr := session.addr
	const services = 100
	ids := make([]string, services)
	for i := range ids {
		ids[i] = "stall-svc-" + strconv.Itoa(i)
	}
	// The writes go through the control's session, so the session under
	// test does no more work than serve its subscribers.
	writer := redis.NewClient(&redis.Options{Addr: control.addr, PoolSize: 4})
	t.Cleanup(func() { writer.Close() })
	pad := strings.Repeat("p", 100)
	seq := 0
	// change makes n changes round-robin over the services, in pipelined
	// batches of 500 as fast as the cluster takes them; each change
	// carries its send time.
	change := func(n int) {
		t.Helper()
		for done := 0; done < n; {
			p := writer.Pipeline()
			for j := 0; j < 500 && done < n; j++ {
				seq++
				p.Do(context.Background(), "REGISTER", ids[seq%services], "r", strconv.FormatInt(time.Now().UnixNano(), 10)+" "+strconv.Itoa(seq)+" "+pad)
				done++
			}
			if _, err := p.Exec(context.Background()); err != nil {
				t.Fatalf("writes: %v", err)
			}
		}
	}
	change(services)

	healthy := newLatencyWatcher(t, addr, ids)
	other := newLatencyWatcher(t, control.addr, ids)
	healthy.waitAll(t, seq)
	other.waitAll(t, seq)
	healthy.reset() // the states on subscribe are old news, not latency
	other.reset()

	rssBefore := rss(t, session.pid)

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalled.Close() })
	stalled.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(stalled, "SUBSCRIBE %s\r\n", strings.Join(ids, " "))

	var peak uint64
	stopPeak := make(chan struct{})
	peakDone := make(chan struct{})
	go func() {
		defer close(peakDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopPeak:
				return
			case <-tick.C:
				peak = max(peak, rss(t, session.pid))
			}
		}
	}()
	change(100_000)
	healthy.waitAll(t, seq)
	other.waitAll(t, seq)
	close(stopPeak)
	<-peakDone
	during, ctl := healthy.reset(), other.reset()

	// The stalled client was cut off: reading now drains what the kernel
	// held and then meets the closed connection, far short of 100k pushes.
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.Copy(io.Discard, stalled)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the stalled connection: %v after %d bytes; the session did not cut it off", err, got)
	}
	if got > 50<<20 {
		t.Fatalf("the stalled client was sent %d bytes: pushes were queued, not coalesced", got)
	}
	const rssBudget = 64 << 20
	if peak > rssBefore+rssBudget {
		t.Fatalf("the session's RSS rose from %d to %d while a subscriber stalled (budget %d more)", rssBefore, peak, rssBudget)
	}
	t.Logf("push latency p50/p99/max: %v/%v/%v beside the stalled subscriber, %v/%v/%v on the other session; session RSS %d -> peak %d; stalled client got %d bytes",
		during.p50, during.p99, during.max, ctl.p50, ctl.p99, ctl.max, rssBefore, peak, got)
	// Relative to the control, with room for noise: a stalled peer must
	// not turn milliseconds into seconds for its neighbours.
	if during.p99 > 3*ctl.p99+100*time.Millisecond {
		t.Fatalf("p99 %v beside the stalled subscriber, %v on the other session", during.p99, ctl.p99)
	}
	if _, set := lookup(t, writer, ids[seq%services]); len(set) != 1 || !strings.Contains(set[0], " "+strconv.Itoa(seq)+" ") {
		t.Fatalf("the last write is not what LOOKUP sees: %.80v", set)
	}
}

// rss is a process's resident set size in bytes.
func rss(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Errorf("reading pid %d's status: %v", pid, err)
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Errorf("pid %d's status has no VmRSS", pid)
	return 0
}

// latencyWatcher subscribes to services and records, for each push, the
// time since the change it carries was sent.
type latencyWatcher struct {
	mu   sync.Mutex
	hist *hdrhistogram.Histogram
	last map[string]int // newest change sequence seen per service
	n    int            // services watched
	ps   *redis.PubSub
}

type latencies struct{ p50, p99, max time.Duration }

func newLatencyWatcher(t *testing.T, addr string, ids []string) *latencyWatcher {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	w := &latencyWatcher{hist: hdrhistogram.New(1, int64(time.Minute), 3), last: make(map[string]int), n: len(ids)}
	w.ps = mustSubscribe(t, c, ids...)
	ch := w.ps.Channel(redis.WithChannelSize(10_000))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			var p push
			if json.Unmarshal([]byte(m.Payload), &p) != nil || len(p.Publishers) != 1 {
				continue
			}
			f := strings.Fields(p.Publishers[0].Data)
			sent, _ := strconv.ParseInt(f[0], 10, 64)
			n, _ := strconv.Atoi(f[1])
			w.mu.Lock()
			w.hist.RecordValue(time.Now().UnixNano() - sent)
			w.last[m.Channel] = max(w.last[m.Channel], n)
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.ps.Close(); <-done })
	return w
}

// waitAll waits until every service's newest push is from the last
// round of changes, which ended at sequence seq.
func (w *latencyWatcher) waitAll(t *testing.T, seq int) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		var behind []string
		for id, s := range w.last {
			if s <= seq-w.n {
				behind = append(behind, fmt.Sprintf("%s@%d", id, s))
			}
		}
		sort.Strings(behind)
		return len(behind) == 0 && len(w.last) == w.n,
			fmt.Sprintf("%d of %d services heard from; %d behind seq %d: %.200v", len(w.last), w.n, len(behind), seq, behind)
	})
}

func (w *latencyWatcher) reset() latencies {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := latencies{
		p50: time.Duration(w.hist.ValueAtQuantile(50)),
		p99: time.Duration(w.hist.ValueAtQuantile(99)),
		max: time.Duration(w.hist.Max()),
	}
	w.hist.Reset()
	return l
}

// TestTenThousandIdleConnections holds 10k idle client connections open
// on a `registry dev` process while a normal client registers, looks up
// and subscribes; then closes them all. The test raises its own open
// file limit (the child inherits it).
func TestTenThousandIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("10k connections")
	}
	const conns = 10_000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < conns+500 {
		t.Skipf("the hard open-file limit is %d; this test needs %d", lim.Max, conns+500)
	}
	old := lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lim.Cur = old
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	})
	addr, _, pid := startDev(t, nil)

	c := mustClient(t, addr)
	register(t, c, "idle-svc", "r1", "before")
	w := mustWatch(t, c, "idle-svc")
	w.waitSet("idle-svc", "r1=before")

	idle := make([]net.Conn, 0, conns)
	t.Cleanup(func() {
		for _, nc := range idle {
			nc.Close()
		}
	})
	for len(idle) < conns {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", len(idle)+1, err)
		}
		idle = append(idle, nc)
	}
	// Every one of them is served: a PING on each gets its PONG.
	for i := 0; i < conns; i += 1000 {
		fmt.Fprint(idle[i], "PING\r\n")
		idle[i].SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(idle[i]).ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("connection %d: %q %v", i, line, err)
		}
	}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		info := c.Info(ctxT(t), "clients").Val()
		return strings.Contains(info, "connected_clients:"+strconv.Itoa(conns+2)), info
	})
	register(t, c, "idle-svc", "r1", "during")
	w.waitSet("idle-svc", "r1=during")
	if _, set := lookup(t, c, "idle-svc"); fmt.Sprint(set) != "[r1=during]" {
		t.Fatalf("LOOKUP with 10k idle clients: %v", set)
	}
	for _, nc := range idle {
		nc.Close()
	}
	idle = nil
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		info := c.Info(ctxT(t), "clients").Val()
		return strings.Contains(info, "connected_clients:2\r"), info
	})
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("registry dev is gone: %v", err)
	}
	if _, set := lookup(t, c, "idle-svc"); fmt.Sprint(set) != "[r1=during]" {
		t.Fatalf("LOOKUP after the idle clients left: %v", set)
	}
}

// startDev runs `registry dev` on a free loopback port, with env added to
// its environment, and returns the session address, the meta address and
// the pid; the process is killed at cleanup.
func startDev(t *testing.T, env []string, extra ...string) (addr, metaAddr string, pid int) {
	t.Helper()
	p := startDevProcess(t, append(os.Environ(), env...), nil, extra...)
	return p.session, p.meta, p.cmd.Process.Pid
}
