package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slotreg/slotreg/internal/testutil"
	"github.com/slotreg/slotreg/slot"
)

// integratedNode is a `registry node` process.
type integratedNode struct {
	id                             string
	client, data, raft, rpc, httpA string
	cmd                            *exec.Cmd
	exited                         chan struct{}
}

// freeAddrs finds n free loopback ports. They are closed before the
// process listens on them, as a node's addresses must be known to the
// others before it starts.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// startNode runs `registry node --id id` with args, its state and log in
// dir, and kills it at cleanup.
func startNode(t *testing.T, id, dir string, args ...string) *integratedNode {
	t.Helper()
	a := freeAddrs(t, 5)
	n := &integratedNode{id: id, client: a[0], data: a[1], raft: a[2], rpc: a[3], httpA: a[4], exited: make(chan struct{})}
	logf, err := os.Create(filepath.Join(dir, id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"node", "--id", id, "--listen", n.client, "--data-listen", n.data, "--raft", n.raft, "--rpc", n.rpc,
		"--http", n.httpA, "--heartbeat", "100ms"}
	n.cmd = exec.Command(registryBin, append(base, args...)...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.cmd.Wait(); logf.Close(); close(n.exited) }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, id+".log"))
			t.Logf("%s's log:\n%s", id, b)
		}
	})
	return n
}

func (n *integratedNode) ready() (bool, string) {
	select {
	case <-n.exited:
		return false, n.id + " exited"
	default:
	}
	resp, err := http.Get("http://" + n.httpA + "/readyz")
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s /readyz: %s", n.id, resp.Status)
}

// TestIntegratedNodesLoseNothingWhenOneDies runs a registry as two
// `registry node` processes, the first with all three roles, the second
// with data and session, and kills the second: the publishers of the
// first's clients stay, in lookups and in pushes, while the slots the
// second led fail over to the first.
func TestIntegratedNodesLoseNothingWhenOneDies(t *testing.T) {
	dir := t.TempDir()
	n1 := startNode(t, "n1", dir, "--data-dir", filepath.Join(dir, "meta"), "--replicas", "2", "--lease", "1s", "--auto-rebalance")
	n2 := startNode(t, "n2", dir, "--roles", "data,session", "--meta", n1.rpc)
	metas := []procNode{{id: "n1", addr: n1.rpc}}
	testutil.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, n := range []*integratedNode{n1, n2} {
			if ok, why := n.ready(); !ok {
				return false, why
			}
		}
		tab := metaTable(t, metas)
		led := len(tab.LedBy("n2"))
		return len(tab.Nodes) == 2 && len(tab.Moving()) == 0 && led >= slot.Count/2-1,
			fmt.Sprintf("table: %d data nodes, n2 leads %d slots, %d moving", len(tab.Nodes), led, len(tab.Moving()))
	})

	// Services spread over both nodes' slots, published on both nodes'
	// sessions and watched on n1's.
	tab := metaTable(t, metas)
	var ids []string
	for i := 0; len(ids) < 16; i++ {
		id := fmt.Sprintf("svc.node.%d", i)
		want := "n1"
		if len(ids)%2 == 1 {
			want = "n2"
		}
		if tab.Leader(slot.Of(id)) == want {
			ids = append(ids, id)
		}
	}
	pub1, pub2, sub := mustClient(t, n1.client), mustClient(t, n2.client), mustClient(t, n1.client)
	w := mustWatch(t, sub, ids...)
	for _, id := range ids {
		register(t, pub1, id, "a", "on-n1")
		register(t, pub2, id, "b", "on-n2")
	}
	for _, id := range ids {
		w.waitSet(id, "a=on-n1", "b=on-n2")
	}

	// n1's session wrote to the data node beside it by calls.
	calls := scrape(n1.httpA, "slotreg_data_write_batches_total")
	if !slices.ContainsFunc(calls, func(l string) bool { return strings.Contains(l, `via="calls"`) && !strings.HasSuffix(l, " 0") }) {
		t.Errorf("n1's data node took no write batch by calls: %q", calls)
	}

	n2.cmd.Process.Kill()
	<-n2.exited
	// n2's session is gone with its clients, so their publishers go; the
	// ones of n1's clients stay, wherever their slot was led.
	for _, id := range ids {
		w.waitSet(id, "a=on-n1")
	}
	testutil.Eventually(t, 15*time.Second, func() (bool, string) {
		tab := metaTable(t, metas)
		for _, id := range ids {
			if l := tab.Leader(slot.Of(id)); l != "n1" {
				return false, fmt.Sprintf("%s is led by %q", id, l)
			}
		}
		return true, ""
	})
	for _, id := range ids {
		if _, got := lookup(t, pub1, id); !slices.Equal(got, []string{"a=on-n1"}) {
			t.Errorf("LOOKUP %s after n2 died: %v, want [a=on-n1]", id, got)
		}
	}
	// And the survivor takes writes for every slot, n2's old ones too.
	for _, id := range ids {
		register(t, pub1, id, "c", "later")
		w.waitSet(id, "a=on-n1", "c=later")
	}
}

// TestNodeRefusesBadRoles: a role list it cannot run is refused before
// anything starts.
func TestNodeRefusesBadRoles(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--roles", "data,cache"}, `"cache" is not a role`},
		{[]string{"--roles", ","}, "names no role"},
		{[]string{"--roles", "data,session"}, "--meta is required"},
		{[]string{"--roles", "meta"}, "--data-dir is required"},
	} {
		out, err := exec.Command(registryBin, append([]string{"node", "--id", "x"}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("registry node %v: err=%v, output %q; want an error saying %q", c.args, err, out, c.want)
		}
	}
}
