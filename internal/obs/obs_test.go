package obs_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/internal/testutil"
)

func mustCluster(t *testing.T) *cluster.Local {
	t.Helper()
	cl, err := cluster.Start(cluster.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

func mustGet(t *testing.T, url string) (int, string) {
	t.Helper()
	code, b, _ := testutil.MustGet(t, url)
	return code, string(b)
}

func TestServeMetricsAndHealth(t *testing.T) {
	cl := mustCluster(t)
	gs := []prometheus.Gatherer{cl.Meta.Metrics()}
	for _, d := range cl.Data {
		gs = append(gs, d.Metrics())
	}
	sess := cl.Sessions[0]
	gs = append(gs, sess.Metrics())
	srv, err := obs.Serve("127.0.0.1:0", func() (bool, string) { return sess.Ready(), "slot table incomplete" }, gs...)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: sess.Addr(), Protocol: 2})
	defer rdb.Close()
	sub := rdb.Subscribe(ctx, "svc.metrics")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := rdb.Do(ctx, "REGISTER", "svc.metrics", "r1", "10.0.0.1:80").Err(); err != nil {
		t.Fatalf("register: %v", err)
	}
	for {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if strings.Contains(msg.Payload, "r1") {
			break
		}
	}

	base := "http://" + srv.Addr()
	code, body := mustGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`slotreg_session_requests_total{command="register",datacenter="dc1",node="session1",role="session"}`,
		`slotreg_session_request_duration_seconds_bucket{command="subscribe",datacenter="dc1",node="session1",role="session",le=`,
		`slotreg_session_pushes_total{datacenter="dc1",node="session1",role="session"}`,
		`slotreg_session_push_latency_seconds_count{datacenter="dc1",node="session1",role="session"}`,
		`slotreg_session_publishers{datacenter="dc1",node="session1",role="session"} 1`,
		`slotreg_session_subscribed_topics{datacenter="dc1",node="session1",role="session"} 1`,
		`slotreg_session_connected_clients{datacenter="dc1",node="session1",role="session"}`,
		`slotreg_session_table_epoch{datacenter="dc1",node="session1",role="session"}`,
		`slotreg_data_slots_led{datacenter="dc1",node="data1",role="data"}`,
		`slotreg_data_slots_followed{datacenter="dc1",node="data2",role="data"}`,
		`slotreg_data_follower_lag_entries{datacenter="dc1",node="data1",role="data"}`,
		`slotreg_data_ops_applied_total{datacenter="dc1",node="data1",role="data",type="register"}`,
		`slotreg_data_pull_round_trips_total{datacenter="dc1",node="data2",role="data"}`,
		`slotreg_meta_raft_state{datacenter="dc1",node="meta1",role="meta"} 2`,
		`slotreg_meta_raft_leader{datacenter="dc1",node="meta1",role="meta"} 1`,
		`slotreg_meta_data_nodes{datacenter="dc1",node="meta1",role="meta"} 2`,
		`slotreg_meta_table_epoch{datacenter="dc1",node="meta1",role="meta"}`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A push is counted after the flush the client saw, so it may lag
	// by the length of a scrape; the register is counted before its reply.
	if v := value(t, body, `slotreg_session_requests_total{command="register",datacenter="dc1",node="session1",role="session"}`); v < 1 {
		t.Errorf("register counter = %v, want >= 1", v)
	}
	if v := value(t, body, `slotreg_session_subscriptions{datacenter="dc1",node="session1",role="session"}`); v != 1 {
		t.Errorf("subscriptions = %v, want 1", v)
	}
	// Both data nodes together applied the one register.
	var applied float64
	for _, m := range regexp.MustCompile(`(?m)^slotreg_data_ops_applied_total\{datacenter="dc1",node="data\d",role="data",type="register"\} (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		applied += v
	}
	if applied != 1 {
		t.Errorf("data ops applied (register) = %v, want 1", applied)
	}

	info, err := rdb.Info(ctx, "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "total_pushes:") || !strings.Contains(info, "total_commands_processed:") {
		t.Errorf("INFO stats:\n%s", info)
	}

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := mustGet(t, base+p); code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
		}
	}
}

// value is the sample value of series in a text exposition.
func value(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

func TestReadyzNotReady(t *testing.T) {
	srv, err := obs.Serve("127.0.0.1:0", func() (bool, string) { return false, "no slot table yet" })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if code, body := mustGet(t, "http://"+srv.Addr()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no slot table") {
		t.Errorf("/readyz: %d %q", code, body)
	}
}

func TestReadMemoryAfterACollection(t *testing.T) {
	before := obs.ReadMemory(false)
	keep := make([][]byte, 1000)
	for i := range keep {
		keep[i] = make([]byte, 1024)
	}
	after := obs.ReadMemory(true)
	if after.GCCycles <= before.GCCycles {
		t.Fatalf("no collection: %d then %d cycles", before.GCCycles, after.GCCycles)
	}
	// Right after a collection the live heap holds what is kept.
	if after.HeapLive < 1000*1024 || after.HeapLive > after.HeapInuse || after.UsedMemory == 0 || after.HeapSys < after.HeapInuse {
		t.Fatalf("implausible figures %+v", after)
	}
	runtime.KeepAlive(keep)
}
