package meta

import (
	"context"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newRaftLogger routes hashicorp/raft's hclog output into slog at Warn and
// above: raft is chatty at Info, and the transitions an operator needs
// (leadership won and lost, nodes evicted) are logged by meta itself.
func newRaftLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Warn,
		Output:      &hclogWriter{log: log.With("component", "raft")},
		DisableTime: true,
		Color:       hclog.ColorOff,
	})
}

// hclogWriter receives one formatted hclog line per write, with its level.
type hclogWriter struct{ log *slog.Logger }

// Write implements io.Writer for lines that come without a level.
func (w *hclogWriter) Write(p []byte) (int, error) {
	return w.LevelWrite(hclog.Warn, p)
}

// LevelWrite implements hclog.LevelWriter.
func (w *hclogWriter) LevelWrite(level hclog.Level, p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	// Drop hclog's "[WARN]  raft: " prefix; slog adds its own level.
	if strings.HasPrefix(msg, "[") {
		if i := strings.Index(msg, "]"); i >= 0 {
			msg = strings.TrimSpace(msg[i+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "raft: ")
	if level == hclog.Warn && firstElection(msg) {
		level = hclog.Info
	}
	w.log.Log(context.Background(), slogLevel(level), msg)
	return len(p), nil
}

func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l >= hclog.Error:
		return slog.LevelError
	case l == hclog.Warn:
		return slog.LevelWarn
	case l == hclog.Info:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// firstElection says whether a raft warning is the election timeout of a
// node that has never heard of a leader: every meta group's first start
// has it, so it is no cause for alarm. The same timeout with a leader it
// has lost stays a warning.
func firstElection(msg string) bool {
	return strings.Contains(msg, "starting election") && strings.HasSuffix(msg, "last-leader-addr= last-leader-id=")
}
