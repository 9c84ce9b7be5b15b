package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/internal/xdclink"
	"github.com/slotreg/slotreg/proto"
)

// Two datacenters, each a whole cluster.sh cluster (3 meta, 3 data, 2
// sessions) on loopback, each listing the other as remote. dc2's
// processes run under another group, so that nftables can tell the two
// datacenters' connections apart and cut the link between them
// (internal/xdclink).

// mustDatacenters starts dc1 and dc2, side by side.
func mustDatacenters(t *testing.T) (dc1, dc2 *scriptCluster, link *xdclink.Link) {
	t.Helper()
	var b1, b2 int
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatal("no two free port blocks")
		}
		b1, b2 = 20000+100*rand.IntN(120), 20000+100*rand.IntN(120)
		if b1 != b2 && portsFree(b1) && portsFree(b2) {
			break
		}
	}
	metas := func(b int) string {
		return fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", b+21, b+22, b+23)
	}
	// dc1 drops dc2's publishers 5 s after it last heard of them; dc2
	// keeps dc1's (the default).
	dc1 = newScriptCluster(t, b1, t.TempDir(), "SLOTREG_DATACENTER=dc1", "SLOTREG_REMOTE_DATACENTERS=dc2="+metas(b2),
		"SLOTREG_SESSION_ZONES=za,zb", "SLOTREG_REMOTE_EXPIRE=5s")
	dc2 = newScriptCluster(t, b2, t.TempDir(), "SLOTREG_DATACENTER=dc2", "SLOTREG_REMOTE_DATACENTERS=dc1="+metas(b1))
	link, err := xdclink.Tag(b1, b2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := link.Close(); err != nil {
			t.Error(err)
		}
	})
	dc2.wrap = xdclink.Wrap()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i, c := range []*scriptCluster{dc1, dc2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = c.run("up")
		}()
	}
	wg.Wait()
	t.Cleanup(dc1.down)
	t.Cleanup(dc2.down)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("dc%d: cluster.sh up: %v\n%s", i+1, err, outs[i])
		}
	}
	return dc1, dc2, link
}

// scopedClient is a client whose every connection sends SCOPE scope first.
func scopedClient(t *testing.T, addr, scope string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
		return cn.Do(ctx, "SCOPE", scope).Err()
	}})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping %s: %v", addr, err)
	}
	return c
}

// eventuallySet waits until LOOKUP id on c holds exactly want.
func eventuallySet(t *testing.T, c *redis.Client, d time.Duration, id string, want ...string) {
	t.Helper()
	sort.Strings(want)
	testutil.Eventually(t, d, func() (bool, string) {
		v, err := c.Do(context.Background(), "LOOKUP", id).Slice()
		if err != nil || len(v) != 2 {
			return false, fmt.Sprintf("LOOKUP %s: %v %v", id, v, err)
		}
		pairs, _ := v[1].([]any)
		got := make([]string, 0, len(pairs))
		for _, p := range pairs {
			kv := p.([]any)
			got = append(got, kv[0].(string)+"="+kv[1].(string))
		}
		sort.Strings(got)
		return slices.Equal(got, want), fmt.Sprintf("LOOKUP %s = %v, want %v", id, got, want)
	})
}

// scrape returns the lines of a node's /metrics that start with name.
func scrape(addr, name string) []string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") {
			out = append(out, line)
		}
	}
	return out
}

// remoteInfo reads INFO datacenters from a session: for each remote
// datacenter, its publishers and how stale its least current slot is.
func remoteInfo(c *redis.Client) (map[string][2]int64, error) {
	s, err := c.Info(context.Background(), "datacenters").Result()
	if err != nil {
		return nil, err
	}
	out := map[string][2]int64{}
	re := regexp.MustCompile(`remote_(\S+):publishers=(\d+),stale_ms=(-?\d+)`)
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		p, _ := strconv.ParseInt(m[2], 10, 64)
		st, _ := strconv.ParseInt(m[3], 10, 64)
		out[m[1]] = [2]int64{p, st}
	}
	return out, nil
}

func TestDatacenters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters of 8 processes")
	}
	// Beside the in-process tests, not after them: its processes mostly
	// wait on leases and polls.
	t.Parallel()
	dc1, dc2, link := mustDatacenters(t)
	s1, s2 := dc1.byRole("session"), dc2.byRole("session")
	// za and zb are dc1's sessions' zones; dc2's is dc2.
	a1, a2, b1 := mustClient(t, s1[0].addr), mustClient(t, s1[1].addr), mustClient(t, s2[0].addr)

	t.Run("identity", func(t *testing.T) {
		var ms proto.Members
		s, err := redis.NewClient(&redis.Options{Addr: dc1.byRole("meta")[0].addr}).Do(ctxT(t), "NODES").Text()
		if err != nil || json.Unmarshal([]byte(s), &ms) != nil {
			t.Fatalf("NODES: %v %s", err, s)
		}
		zones := map[string]string{}
		for _, m := range append(ms.Data, ms.Sessions...) {
			if m.Datacenter != "dc1" {
				t.Errorf("%s %s: datacenter %q", m.Kind, m.ID, m.Datacenter)
			}
			zones[m.ID] = m.Zone
		}
		// Zones are learned from heartbeats; NODES may be a follower's.
		testutil.Eventually(t, 10*time.Second, func() (bool, string) {
			for _, m := range dc1.byRole("meta") {
				var ms proto.Members
				c := redis.NewClient(&redis.Options{Addr: m.addr})
				s, _ := c.Do(context.Background(), "NODES").Text()
				c.Close()
				if json.Unmarshal([]byte(s), &ms) == nil {
					for _, x := range ms.Sessions {
						if x.Zone != "" {
							zones[x.ID] = x.Zone
						}
					}
				}
			}
			return zones["session1"] == "za" && zones["session2"] == "zb", fmt.Sprint("session zones ", zones)
		})
		info := a1.Info(ctxT(t), "server").Val()
		if !strings.Contains(info, "datacenter:dc1\r\n") || !strings.Contains(info, "zone:za\r\n") {
			t.Errorf("INFO server of dc1's session1:\n%s", info)
		}
		// A node of another datacenter is refused by meta.
		mc := redis.NewClient(&redis.Options{Addr: dc1.byRole("meta")[0].addr, MaxRetries: -1})
		defer mc.Close()
		err = mc.Do(ctxT(t), proto.CmdHeartbeat, proto.KindData, "intruder", "127.0.0.1:1", "0", "0", "", "dc9", "").Err()
		if err == nil || !strings.Contains(err.Error(), "datacenter dc9") {
			t.Errorf("a heartbeat from datacenter dc9: %v", err)
		}
	})

	t.Run("scopes", func(t *testing.T) {
		g2 := scopedClient(t, s2[0].addr, "global")
		w := mustWatch(t, g2, "svc.x")
		local2 := mustWatch(t, b1, "svc.x")
		register(t, a1, "svc.x", "p1", "10.1.0.1:80")
		register(t, a2, "svc.x", "p2", "10.1.0.2:80")
		register(t, b1, "svc.x", "q1", "10.2.0.1:80")
		p := w.waitSet("svc.x", "p1=10.1.0.1:80", "p2=10.1.0.2:80", "q1=10.2.0.1:80")
		where := map[string]string{}
		for _, e := range p.Publishers {
			where[e.RegisterID] = e.Datacenter + "/" + e.Zone
		}
		if fmt.Sprint(where) != "map[p1:dc1/za p2:dc1/zb q1:dc2/dc2]" {
			t.Errorf("a global push's datacenters and zones: %v", where)
		}
		local2.waitSet("svc.x", "q1=10.2.0.1:80")
		eventuallySet(t, b1, 10*time.Second, "svc.x", "q1=10.2.0.1:80")
		eventuallySet(t, scopedClient(t, s1[0].addr, "zone"), 10*time.Second, "svc.x", "p1=10.1.0.1:80")
		eventuallySet(t, scopedClient(t, s1[1].addr, "zone"), 10*time.Second, "svc.x", "p2=10.1.0.2:80")
		eventuallySet(t, scopedClient(t, s1[1].addr, "global"), 10*time.Second, "svc.x",
			"p1=10.1.0.1:80", "p2=10.1.0.2:80", "q1=10.2.0.1:80")
		// A removal crosses over too.
		if n, err := a1.Do(ctxT(t), "UNREGISTER", "svc.x", "p1").Int(); err != nil || n != 1 {
			t.Fatalf("UNREGISTER: %d %v", n, err)
		}
		w.waitSet("svc.x", "p2=10.1.0.2:80", "q1=10.2.0.1:80")
		// Bad input gets an error and changes nothing.
		if err := b1.Do(ctxT(t), "SCOPE", "planet").Err(); err == nil || !strings.Contains(err.Error(), "zone, datacenter or global") {
			t.Errorf("SCOPE planet: %v", err)
		}

		// Prefix watches see the paths of their scope, with their place.
		ps := g2.PSubscribe(ctxT(t), "/xdc/*")
		defer ps.Close()
		if _, err := ps.Receive(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := a2.Do(ctxT(t), "PUT", "/xdc/n/w1", "v1").Err(); err != nil {
			t.Fatal(err)
		}
		msg, err := ps.ReceiveMessage(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		var ev struct{ Type, Path, Value, Datacenter, Zone string }
		if json.Unmarshal([]byte(msg.Payload), &ev) != nil || ev.Type != "ADD" || ev.Path != "/xdc/n/w1" || ev.Datacenter != "dc1" || ev.Zone != "zb" {
			t.Errorf("a global prefix watch in dc2 got %s", msg.Payload)
		}
		// A path is its datacenter's: dc2 does not GET dc1's.
		if v, err := b1.Do(ctxT(t), "GET", "/xdc/n/w1").Result(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET of dc1's path in dc2: %v %v", v, err)
		}
	})

	t.Run("leaders killed under load, then slots moved back", func(t *testing.T) {
		killedUnderLoad(t, dc1, dc2)
	})

	t.Run("link cut", func(t *testing.T) {
		linkCut(t, dc1, dc2, link)
	})
}

// xwriter registers publishers of its own on one session, one after the
// other, and remembers those the session confirmed.
type xwriter struct {
	c      *redis.Client
	prefix string
	mu     sync.Mutex
	ok     []string // "id rid"
	next   int      // the next registerId's number, across runs
}

func (w *xwriter) run(ctx context.Context) {
	for ; ctx.Err() == nil; w.next++ {
		i := w.next
		id, rid := fmt.Sprintf("%s.%d", w.prefix, i%50), fmt.Sprintf("r%d", i)
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.c.Do(cctx, "REGISTER", id, rid, "d"+rid).Err()
		cancel()
		if err == nil {
			w.mu.Lock()
			w.ok = append(w.ok, id+" "+rid)
			w.mu.Unlock()
		}
	}
}

// killedUnderLoad kills a data node of each datacenter with SIGKILL while
// writers register in both, and checks that every confirmed publisher is
// then seen by a global LOOKUP on both sides; then it starts the killed
// nodes again, so that both datacenters move slots back to them under
// the same load, and checks again.
func killedUnderLoad(t *testing.T, dc1, dc2 *scriptCluster) {
	var writers []*xwriter
	for d, c := range []*scriptCluster{dc1, dc2} {
		for i, s := range c.byRole("session") {
			for k := range 4 {
				// One connection each: its publishers live as long as it.
				w := &xwriter{c: redis.NewClient(&redis.Options{Addr: s.addr, PoolSize: 1, MaxRetries: 3}),
					prefix: fmt.Sprintf("load.dc%d.s%d.w%d", d+1, i+1, k)}
				t.Cleanup(func() { w.c.Close() })
				writers = append(writers, w)
			}
		}
	}
	var cancel context.CancelFunc
	var wg sync.WaitGroup
	start := func() {
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		for _, w := range writers {
			wg.Add(1)
			go func() { defer wg.Done(); w.run(ctx) }()
		}
	}
	start()
	confirmed := func() int {
		n := 0
		for _, w := range writers {
			w.mu.Lock()
			n += len(w.ok)
			w.mu.Unlock()
		}
		return n
	}
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		return confirmed() > 500, fmt.Sprintf("%d registrations confirmed", confirmed())
	})
	victims := make([]procNode, 2)
	for i, c := range []*scriptCluster{dc1, dc2} {
		victims[i] = c.byRole("data")[rand.IntN(3)]
		if err := syscall.Kill(victims[i].pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed %s (pid %d) of dc%d", victims[i].id, victims[i].pid, i+1)
	}
	before := confirmed()
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		return confirmed() > before+500, fmt.Sprintf("%d registrations confirmed after the kills (%d before)", confirmed(), before)
	})
	cancel()
	wg.Wait()
	checkConfirmed(t, dc1, dc2, writers)

	// The killed nodes come back; each datacenter's meta moves slots to
	// them (--auto-rebalance) while the writers go on.
	start()
	for i, c := range []*scriptCluster{dc1, dc2} {
		if out, err := c.run("start", victims[i].id); err != nil {
			t.Fatalf("cluster.sh start %s: %v\n%s", victims[i].id, err, out)
		}
	}
	testutil.Eventually(t, 60*time.Second, func() (bool, string) {
		for i, c := range []*scriptCluster{dc1, dc2} {
			tab := metaTable(t, c.byRole("meta"))
			if n := len(tab.LedBy(victims[i].id)); n < 40 {
				return false, fmt.Sprintf("dc%d's %s leads %d slots again", i+1, victims[i].id, n)
			}
		}
		return true, ""
	})
	cancel()
	wg.Wait()
	checkConfirmed(t, dc1, dc2, writers)
}

// checkConfirmed checks that a global LOOKUP on either side shows every
// publisher the writers had confirmed.
func checkConfirmed(t *testing.T, dc1, dc2 *scriptCluster, writers []*xwriter) {
	t.Helper()
	want := map[string][]string{}
	for _, w := range writers {
		for _, k := range w.ok {
			id, rid, _ := strings.Cut(k, " ")
			want[id] = append(want[id], rid+"=d"+rid)
		}
	}
	n := 0
	for _, rids := range want {
		n += len(rids)
	}
	t.Logf("%d publishers over %d ids confirmed", n, len(want))
	for _, c := range []*scriptCluster{dc1, dc2} {
		g := scopedClient(t, c.byRole("session")[0].addr, "global")
		ids := slices.Sorted(func(yield func(string) bool) {
			for id := range want {
				if !yield(id) {
					return
				}
			}
		})
		for _, id := range ids {
			eventuallySet(t, g, 30*time.Second, id, want[id]...)
		}
	}
}

// linkCut cuts the link between the datacenters while both go on
// changing, then heals it: each side kept serving and kept the other's
// publishers (saying how stale they are), and after the heal both
// converge with no false removal and no version going back.
func linkCut(t *testing.T, dc1, dc2 *scriptCluster, link *xdclink.Link) {
	a := mustClient(t, dc1.byRole("session")[0].addr)
	b := mustClient(t, dc2.byRole("session")[0].addr)
	for i := range 5 {
		register(t, a, "svc.cut", fmt.Sprintf("a%d", i), "dc1")
		register(t, b, "svc.cut", fmt.Sprintf("b%d", i), "dc2")
	}
	all := func(extra ...string) []string {
		var s []string
		for i := range 5 {
			s = append(s, fmt.Sprintf("a%d=dc1", i), fmt.Sprintf("b%d=dc2", i))
		}
		return append(s, extra...)
	}
	wa := mustWatch(t, scopedClient(t, dc1.byRole("session")[1].addr, "global"), "svc.cut")
	wb := mustWatch(t, scopedClient(t, dc2.byRole("session")[1].addr, "global"), "svc.cut")
	wa.waitSet("svc.cut", all()...)
	wb.waitSet("svc.cut", all()...)
	// From here on only a4 and b4 are removed, on purpose; and dc1,
	// whose --remote-expire is 5 s, drops dc2's publishers during the
	// cut, as it was told to.
	var removing atomic.Bool
	wb.allowed = func(_, rid string) bool { return removing.Load() && (rid == "a4" || rid == "b4") }
	wa.allowed = func(_, rid string) bool { return removing.Load() && (rid == "a4" || rid[0] == 'b') }

	if err := link.Cut(); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	// Each side goes on serving its own clients, and changing.
	register(t, a, "svc.cut", "a5", "dc1")
	register(t, b, "svc.cut", "b5", "dc2")
	removing.Store(true)
	for _, c := range []struct {
		cl  *redis.Client
		rid string
	}{{a, "a4"}, {b, "b4"}} {
		if n, err := c.cl.Do(ctxT(t), "UNREGISTER", "svc.cut", c.rid).Int(); err != nil || n != 1 {
			t.Fatalf("UNREGISTER %s during the cut: %d %v", c.rid, n, err)
		}
	}
	// Each still shows the other's publishers, and says they are stale.
	eventuallySet(t, scopedClient(t, dc2.byRole("session")[0].addr, "global"), 10*time.Second, "svc.cut",
		"a0=dc1", "a1=dc1", "a2=dc1", "a3=dc1", "a4=dc1", "b0=dc2", "b1=dc2", "b2=dc2", "b3=dc2", "b5=dc2")
	testutil.Eventually(t, 20*time.Second, func() (bool, string) {
		ri, err := remoteInfo(b)
		return err == nil && ri["dc1"][0] > 0 && ri["dc1"][1] >= 2000, fmt.Sprintf("INFO datacenters on dc2: %v %v", ri, err)
	})
	// dc1 drops them once --remote-expire passes.
	eventuallySet(t, scopedClient(t, dc1.byRole("session")[0].addr, "global"), 20*time.Second, "svc.cut",
		"a0=dc1", "a1=dc1", "a2=dc1", "a3=dc1", "a5=dc1")
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		// Each slot expires on its own clock, within a second or two.
		ri, err := remoteInfo(a)
		return err == nil && ri["dc2"][0] == 0, fmt.Sprintf("INFO datacenters on dc1 after --remote-expire: %v %v", ri, err)
	})
	// So do dc2's data nodes' metrics.
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		var seen []string
		for i := 1; i <= 3; i++ {
			for _, line := range scrape(fmt.Sprintf("127.0.0.1:%d", dc2.base+50+i), "slotreg_data_remote_stale_seconds") {
				if strings.Contains(line, `remote="dc1"`) {
					seen = append(seen, line)
					if f := strings.Fields(line); len(f) == 2 && f[1] != "0" {
						return true, ""
					}
				}
			}
		}
		return false, fmt.Sprint("dc2's data nodes report ", seen)
	})
	t.Logf("the cut lasted %v", time.Since(cutAt).Round(time.Millisecond))
	if err := link.Heal(); err != nil {
		t.Fatal(err)
	}
	final := []string{"a0=dc1", "a1=dc1", "a2=dc1", "a3=dc1", "a5=dc1", "b0=dc2", "b1=dc2", "b2=dc2", "b3=dc2", "b5=dc2"}
	healed := time.Now()
	wa.waitSet("svc.cut", final...)
	wb.waitSet("svc.cut", final...)
	t.Logf("converged %v after the heal", time.Since(healed).Round(time.Millisecond))
	testutil.Eventually(t, 10*time.Second, func() (bool, string) {
		ri, err := remoteInfo(b)
		return err == nil && ri["dc1"][1] == 0, fmt.Sprintf("INFO datacenters on dc2 after the heal: %v %v", ri, err)
	})
}
