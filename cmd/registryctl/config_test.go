package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

func TestConfigCommands(t *testing.T) {
	c := mustCluster(t, nil, nil, nil)
	m := "--meta=" + c.meta.RPCAddr()
	if r := ctl(m, "config", "set", "app/db", "postgres://one"); r.code != 0 || r.out != "app/db version 1\n" {
		t.Fatalf("set: %s", r)
	}
	file := filepath.Join(t.TempDir(), "v")
	if err := os.WriteFile(file, []byte("line1\nline2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Flags may follow the arguments of a subcommand too.
	if r := ctl(m, "config", "set", "app/db", "--file", file); r.code != 0 || r.out != "app/db version 2\n" {
		t.Fatalf("set --file: %s", r)
	}
	if r := ctl(m, "config", "get", "app/db"); r.code != 0 || r.out != "line1\nline2\n" {
		t.Fatalf("get: %s", r)
	}
	r := ctl(m, "config", "get", "app/db", "--json")
	var e proto.ConfigEntry
	if err := json.Unmarshal([]byte(r.out), &e); r.code != 0 || err != nil || e.Version != 2 || e.Value != "line1\nline2\n" {
		t.Fatalf("get --json: %s (%v)", r, err)
	}
	ctl(m, "config", "set", "other", "x")
	if r := ctl(m, "config", "list", "app/"); r.code != 0 || !strings.Contains(r.out, "app/db") || strings.Contains(r.out, "other") ||
		!strings.Contains(r.out, "12") {
		t.Fatalf("list app/: %s", r)
	}
	if r := ctl(m, "config", "del", "app/db"); r.code != 0 || r.out != "app/db deleted at version 4\n" {
		t.Fatalf("del: %s", r)
	}
	if r := ctl(m, "config", "get", "app/db"); r.code != exitFailed || !strings.Contains(r.err, "no such key") {
		t.Fatalf("get after del: %s", r)
	}
	r = ctl(m, "config", "history", "app/db", "--json")
	var hist []proto.ConfigEntry
	if err := json.Unmarshal([]byte(r.out), &hist); r.code != 0 || err != nil || len(hist) != 3 ||
		!hist[0].Deleted || hist[1].Version != 2 || hist[2].Value != "postgres://one" {
		t.Fatalf("history: %s (%v)", r, err)
	}
	if r := ctl(m, "config", "history", "app/db"); r.code != 0 || !strings.Contains(r.out, "(deleted)") {
		t.Fatalf("history table: %s", r)
	}
	for _, args := range [][]string{
		{"config", "set", "k"},
		{"config", "set", "bad key", "v"},
		{"config", "set", "k", "v", "--file", file},
		{"config", "set", "k", strings.Repeat("v", proto.MaxConfigValueLen+1)},
		{"config", "get"},
		{"config", "list", "a", "b"},
	} {
		if r := ctl(append([]string{m}, args...)...); r.code != exitUsage {
			t.Errorf("%v: %s, want exit %d", args, r, exitUsage)
		}
	}
}
