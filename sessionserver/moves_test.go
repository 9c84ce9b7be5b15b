package sessionserver_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/slotreg/slotreg/cluster"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// Writes to a slot that moves back and forth between data nodes all
// succeed: refused ones follow the owner the refusal names (or the table)
// without a client seeing an error, and each REGISTER's version only
// grows. So too where the session reaches the data nodes by calls
// (internal/inproc), whose refusals it must follow alike.
func TestWritesFollowAMovingSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("an in-process cluster moving a slot")
	}
	for _, calls := range []bool{false, true} {
		t.Run(fmt.Sprintf("calls=%v", calls), func(t *testing.T) { writesFollowAMovingSlot(t, calls) })
	}
}

func writesFollowAMovingSlot(t *testing.T, viaCalls bool) {
	redirects := &countingWriter{want: "slot redirected by its old owner"}
	cl, ctx := startCluster(t, cluster.Options{Data: 2, Sessions: 1, InProcess: viaCalls,
		Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(redirects, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	sess := cl.Sessions[0]
	client := redis.NewClient(&redis.Options{Addr: sess.Addr(), Protocol: 2, DisableIdentity: true})
	defer client.Close()
	meta := redis.NewClient(&redis.Options{Addr: cl.Metas()[0], Protocol: 2, DisableIdentity: true})
	defer meta.Close()

	const id = "moving-svc"
	s := slot.Of(id)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	writes := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last int64
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v, err := client.Do(ctx, proto.CmdRegister, id, "r"+strconv.Itoa(i%8), "d"+strconv.Itoa(i), proto.OptTTL, "60").Int64()
			mu.Lock()
			writes++
			if err == nil && v <= last {
				err = proto.Errorf(proto.ErrInvalid, "version %d after %d", v, last)
			}
			if err != nil {
				failures = append(failures, err)
			}
			mu.Unlock()
			last = max(last, v)
		}
	}()
	for i := 0; i < 4; i++ {
		tab := sess.Table()
		from := tab.Slots[s].Leader
		to := tab.Slots[s].Followers[0]
		if err := meta.Do(ctx, (&proto.MoveSlot{Slot: s, To: to}).Args()...).Err(); err != nil {
			t.Fatalf("move %d of slot %d to %s: %v", i, s, to, err)
		}
		for sess.Table().Slots[s].Leader == from {
			if ctx.Err() != nil {
				t.Fatalf("move %d: the session never saw slot %d leave %s", i, s, from)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // writes under the new leader
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 || writes == 0 {
		t.Fatalf("%d writes, %d failed: %v", writes, len(failures), failures)
	}
	var port, calls uint64
	for _, d := range cl.Data {
		st := d.Stats()
		port, calls = port+st.PortBatches, calls+st.CallBatches
	}
	if viaCalls && (calls == 0 || port > 0) || !viaCalls && (port == 0 || calls > 0) {
		t.Fatalf("write batches: %d over the port, %d by calls; want all by calls: %v", port, calls, viaCalls)
	}
	t.Logf("%d writes while slot %d moved 4 times; %d followed a NOTOWNER at once", writes, s, redirects.n.Load())
}

// countingWriter counts the log lines that contain want.
type countingWriter struct {
	want string
	n    atomic.Int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if strings.Contains(string(b), w.want) {
		w.n.Add(1)
	}
	return len(b), nil
}

// startCluster starts an in-process cluster in a temporary directory and
// waits until it is ready; it is closed when the test ends. ctx bounds
// the test's calls to it.
func startCluster(t *testing.T, o cluster.Options) (*cluster.Local, context.Context) {
	t.Helper()
	o.Dir = t.TempDir()
	cl, err := cluster.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := cl.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return cl, ctx
}
