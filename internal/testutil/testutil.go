// Package testutil holds the helpers that the packages' tests share:
// waiting on a condition, a loopback listener handed over open, and
// loggers that stay quiet unless a test fails.
//
// It is a leaf: it imports no slotreg package, so any test, a role's own
// or one above every role, may use it. Only tests import it.
package testutil

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"
)

// pollEvery is how often WaitFor asks its condition again.
const pollEvery = 10 * time.Millisecond

// WaitFor polls cond until it holds or within passes; on timeout it fails
// t, naming what it waited for and what cond last saw.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last saw: %s", within, what, last)
		}
		time.Sleep(pollEvery)
	}
}

// Eventually is WaitFor for a condition that needs no name.
func Eventually(t testing.TB, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	WaitFor(t, within, "condition", cond)
}

// MustListen opens a listener on a free loopback port and hands it over
// open, so no other process can take the port between finding and using.
func MustListen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// Quiet is a logger that writes nowhere.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// LockedBuffer is a bytes.Buffer that one goroutine may read while others
// write to it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a logger that collects a test's logs at debug level, and
// the buffer it writes to; the logs are printed only if the test fails,
// and writing after the test ended is harmless.
func Logger(t testing.TB) (*slog.Logger, *LockedBuffer) {
	buf := &LockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", buf)
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// HeapInuse is the live heap after a full collection, for tests and
// benchmarks that measure what their data costs.
func HeapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// MustGet sends GET url and returns the status, the body and the
// response's headers; it fails the test if there is no response.
func MustGet(t testing.TB, url string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}
