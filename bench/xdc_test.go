package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The datacenters scenario, small: two script clusters, 2,000 publishers
// of dc1 synced to dc2, a cut dc2 rides out and one past its
// --remote-expire. XDC itself checks, through a global LOOKUP in dc2,
// that every publisher arrived with its latest data, and fails
// otherwise; here every probe must arrive too.
func TestXDCSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters of 8 processes")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("cutting the link between datacenters needs root; CI runs as root")
		}
		t.Skip("cutting the link between datacenters needs root")
	}
	for _, tool := range []string{"nft", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: %v", tool, err)
		}
	}
	bin := filepath.Join(t.TempDir(), "registry")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/registry").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := XDC(ctx, XDCConfig{
		Script: ScriptOptions{Bin: bin, Lease: 3 * time.Second},
		Rounds: 50, LoadRate: 500, LoadClients: 8,
		Publishers: 2000, Services: 100, Conns: 4, Batch: 64,
		RemoteExpire: 3 * time.Second, ShortCut: time.Second, LongCut: 3500 * time.Millisecond, ChangePct: 5,
		Settle: 500 * time.Millisecond, Window: 30 * time.Second,
	})
	for _, r := range rs {
		t.Logf("%s: ops %d errors %d %v", r.Scenario, r.Ops, r.Errors, r.Notes)
	}
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.Scenario] = true
		if r.Errors != 0 {
			t.Errorf("%s: %d errors", r.Scenario, r.Errors)
		}
		switch r.Scenario {
		case "xdc-propagation", "xdc-propagation-loaded":
			if r.Ops != 50 || r.Latency == nil {
				t.Errorf("%s: %d of 50 probes reached dc2", r.Scenario, r.Ops)
			}
		case "xdc-resync":
			if r.Ops != 2000 {
				t.Errorf("xdc-resync: %d of 2000 REGISTERs acknowledged", r.Ops)
			}
		}
	}
	for _, s := range []string{"xdc-propagation", "xdc-propagation-loaded", "xdc-register-background", "xdc-resync", "xdc-memory"} {
		if !seen[s] {
			t.Errorf("no %s result", s)
		}
	}
}
