package obs

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// levels is the level of each line logged, in order.
func levels(buf *bytes.Buffer) []string {
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		for _, l := range []string{"DEBUG", "INFO", "WARN", "ERROR"} {
			if strings.Contains(line, "level="+l) {
				out = append(out, l)
			}
		}
	}
	return out
}

func newFailures(buf *bytes.Buffer) *Failures {
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &Failures{Log: log, Msg: "call failed", Recovered: "call recovered"}
}

// A node that starts before its meta leader is elected: the failures of
// the start are quiet, and so is the recovery from them.
func TestFailuresQuietWhileStarting(t *testing.T) {
	var buf bytes.Buffer
	f := newFailures(&buf)
	f.Start(time.Now())
	for range 3 {
		f.Fail(errors.New("NOTLEADER"))
	}
	f.OK()
	if got := strings.Join(levels(&buf), ","); got != "DEBUG,DEBUG,DEBUG,DEBUG" {
		t.Fatalf("levels %s, want the start's failures and recovery at debug:\n%s", got, buf.String())
	}
}

// Failing past the start's grace, or after a first success, warns: the
// first failure of a run and every 20th, and the recovery at info.
func TestFailuresWarnPastTheStart(t *testing.T) {
	var buf bytes.Buffer
	f := newFailures(&buf)
	f.Start(time.Now().Add(-StartGrace))
	for range 20 {
		f.Fail(errors.New("refused"))
	}
	f.OK()
	want := "WARN" + strings.Repeat(",DEBUG", 18) + ",WARN,INFO"
	if got := strings.Join(levels(&buf), ","); got != want {
		t.Fatalf("levels %s, want %s", got, want)
	}
	if f.Count() != 0 {
		t.Fatalf("Count after OK = %d", f.Count())
	}

	buf.Reset()
	g := newFailures(&buf)
	g.Start(time.Now())
	g.OK() // up: from now on every run of failures is warned of
	g.Fail(errors.New("refused"))
	g.OK()
	if got := strings.Join(levels(&buf), ","); got != "WARN,INFO" {
		t.Fatalf("after a success: levels %s, want WARN,INFO", got)
	}
}
