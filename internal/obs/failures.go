package obs

import (
	"context"
	"log/slog"
	"time"
)

// StartGrace is how long a node's calls to meta may fail quietly while
// the node starts: a meta group elects its first leader in about a
// second, and until then every heartbeat and poll is refused. Failures
// that last longer are warned of as any others.
const StartGrace = 5 * time.Second

// Failures logs a run of failures of a call made again and again (a
// heartbeat, a long poll) without flooding the log: the first failure of
// a run and every 20th at Warn, and the recovery at Info. Until the call
// has first succeeded, failures within Grace of the start are at Debug
// (a node that comes up before its meta leader has been elected is
// normal, not a fault); one that fails past Grace is warned of.
//
// A Failures is used by one goroutine, the one that makes the call.
type Failures struct {
	Log *slog.Logger
	// Msg is the warning, Recovered the line of the recovery.
	Msg, Recovered string
	// Grace is how long failures are quiet at the start (0: StartGrace).
	Grace time.Duration

	start  time.Time
	everOK bool
	n      int
	warned bool // a failure of this run was logged above Debug
}

// Start sets when the start grace begins; the first Fail does it when
// Start was not called.
func (f *Failures) Start(now time.Time) { f.start = now }

// Count is the number of failures in the current run.
func (f *Failures) Count() int { return f.n }

// Fail notes a failure; attrs are logged with it.
func (f *Failures) Fail(err error, attrs ...any) {
	now := time.Now()
	if f.start.IsZero() {
		f.start = now
	}
	grace := f.Grace
	if grace == 0 {
		grace = StartGrace
	}
	f.n++
	lvl := slog.LevelDebug
	starting := !f.everOK && now.Sub(f.start) < grace
	if !starting && (!f.warned || f.n%20 == 0) {
		lvl, f.warned = slog.LevelWarn, true
	}
	if !f.Log.Enabled(context.Background(), lvl) {
		return
	}
	f.Log.Log(context.Background(), lvl, f.Msg, append([]any{"failures", f.n, "err", err}, attrs...)...)
}

// OK notes a success; it ends the run of failures, if any.
func (f *Failures) OK(attrs ...any) {
	f.everOK = true
	if f.n == 0 {
		return
	}
	lvl := slog.LevelDebug
	if f.warned {
		lvl = slog.LevelInfo
	}
	f.Log.Log(context.Background(), lvl, f.Recovered, append([]any{"failures", f.n}, attrs...)...)
	f.n, f.warned = 0, false
}
