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

// The collector's settings: a data node's percent, the floor for every
// role, and GOGC in the environment left alone unless a flag is given.
func TestGCPlan(t *testing.T) {
	for _, tc := range []struct {
		role    *cli.Command
		env     bool // GOGC is set, at 200
		args    []string
		percent int // what is set (0: nothing)
		base    int
		floor   int
	}{
		{dataCommand(), false, nil, 50, 50, 64},
		{dataCommand(), false, []string{"--gc-percent", "80", "--gc-floor", "0"}, 80, 80, 0},
		{sessionCommand(), false, nil, 0, 100, 64},
		{sessionCommand(), false, []string{"--gc-floor", "16"}, 0, 100, 16},
		{dataCommand(), true, nil, 0, 200, 0},                             // GOGC alone
		{dataCommand(), true, []string{"--gc-floor", "32"}, 0, 200, 32},   // GOGC's percent, a floor
		{dataCommand(), true, []string{"--gc-percent", "70"}, 70, 70, 64}, // the flag wins
		{sessionCommand(), true, nil, 0, 200, 0},
	} {
		current := 100
		if tc.env {
			current = 200
		}
		var percent, base, floor int
		tc.role.Before = nil // the config file's checks are not the point here
		tc.role.Action = func(c *cli.Context) error {
			percent, base, floor = gcPlan(c, tc.env, current)
			return nil
		}
		app := &cli.App{Commands: []*cli.Command{tc.role}}
		if err := app.Run(append([]string{"registry", tc.role.Name}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if percent != tc.percent || base != tc.base || floor != tc.floor {
			t.Errorf("%s %v (GOGC set: %v): percent %d, base %d, floor %d; want %d, %d, %d",
				tc.role.Name, tc.args, tc.env, percent, base, floor, tc.percent, tc.base, tc.floor)
		}
	}
}

// A node: section sets the flags of every role `registry node` runs,
// the data node's listen address under its node name.
func TestConfigFileNodeSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slotreg.yaml")
	if err := os.WriteFile(path, []byte(`
node:
  id: n1
  roles: data,session
  meta: 127.0.0.1:1
  data-listen: 127.0.0.1:7001
  listen: 127.0.0.1:7000
  oplog-size: 64
  max-connections: 9
`), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	node := nodeCommand()
	node.Action = func(c *cli.Context) error {
		for _, k := range []string{"id", "roles", "meta", "data-listen", "listen", "oplog-size", "max-connections", "raft"} {
			got[k] = c.String(k)
		}
		return nil
	}
	app := &cli.App{Flags: []cli.Flag{flagConfig}, Commands: []*cli.Command{node}}
	if err := app.Run([]string{"registry", "--config", path, "node"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": "n1", "roles": "data,session", "meta": "127.0.0.1:1", "data-listen": "127.0.0.1:7001",
		"listen": "127.0.0.1:7000", "oplog-size": "64", "max-connections": "9", "raft": "127.0.0.1:9700"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
