package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runWithConfig runs a registry-shaped app whose session action records
// the values it was given.
func runWithConfig(t *testing.T, config string, args ...string) (map[string]string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slotreg.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	sess := sessionCommand()
	sess.Action = func(c *cli.Context) error {
		for _, k := range []string{"id", "meta", "listen", "max-connections", "client-stall-timeout", "log-format"} {
			got[k] = c.String(k)
		}
		return nil
	}
	app := &cli.App{Flags: []cli.Flag{
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"SLOTREG_LOG_FORMAT"}}, flagConfig,
	}, Commands: []*cli.Command{sess}}
	err := app.Run(append([]string{"registry", "--config", path, "session"}, args...))
	return got, err
}

func TestConfigFileFillsWhatFlagsAndEnvLeave(t *testing.T) {
	t.Setenv("SLOTREG_MAX_CONNECTIONS", "5")
	got, err := runWithConfig(t, `
log-format: json
session:
  id: from-file
  meta: [127.0.0.1:1, 127.0.0.1:2]
  listen: 127.0.0.1:7000
  max-connections: 77
  client-stall-timeout: 3s
`, "--listen", "127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"id": "from-file", "meta": "127.0.0.1:1,127.0.0.1:2", "log-format": "json", "client-stall-timeout": "3s",
		"listen":          "127.0.0.1:8000", // the flag wins over the file
		"max-connections": "5",              // the environment wins over the file
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestConfigFileErrorsNameTheSetting(t *testing.T) {
	cases := map[string]string{
		"session:\n  id: a\n  meta: b\n  bogus: 1\n":              "session.bogus is not a setting here",
		"session:\n  id: a\n  meta: b\n  max-connections: lots\n": "session.max-connections",
		"nonsense: 1\nsession:\n  id: a\n  meta: b\n":             "nonsense is not a setting here",
		"session: 3\n":          "session: want a section",
		"session:\n  meta: b\n": "--id is required",
		"session: [\n":          "yaml",
	}
	for config, want := range cases {
		_, err := runWithConfig(t, config)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: got %v, want an error containing %q", config, err, want)
		}
	}
}
