package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// flagConfig names a YAML file of settings. Its top level holds the
// global settings (log-format, log-level) and one section per role
// (meta, data, session, node, dev) holding that role's; every key is a flag's
// name and takes the value the flag would. A flag given on the command
// line wins over its environment variable, which wins over the file,
// which wins over the default.
var flagConfig = &cli.StringFlag{Name: "config", EnvVars: []string{"SLOTREG_CONFIG"},
	Usage: "YAML file of settings: globals at the top, a section per role; flags and env win over it"}

// applyConfig is each role's Before: it sets, from the config file, every
// flag not already given by flag or env.
func applyConfig(c *cli.Context) error {
	path := c.String(flagConfig.Name)
	if path == "" {
		return checkRequired(c)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	role := c.Command.Name
	global := make(map[string]any)
	for k, v := range doc {
		if _, isRole := roleNames[k]; isRole {
			continue
		}
		global[k] = v
	}
	if err := setFrom(c, path, "", global, c.App.Flags); err != nil {
		return err
	}
	section, _ := doc[role].(map[string]any)
	if doc[role] != nil && section == nil {
		return fmt.Errorf("config %s: %s: want a section of settings, got %T", path, role, doc[role])
	}
	if err := setFrom(c, path, role+".", section, c.Command.Flags); err != nil {
		return err
	}
	return checkRequired(c)
}

// required are the settings each role cannot start without. They are
// checked after the config file is read, so the file can give them.
var required = map[string][]string{
	"meta":    {"id", "data-dir"},
	"data":    {"id", "meta"},
	"session": {"id", "meta"},
	"node":    {"id"},
}

func checkRequired(c *cli.Context) error {
	for _, name := range required[c.Command.Name] {
		if c.String(name) == "" {
			return fmt.Errorf("--%s is required (by flag, by %s or as %s.%s in the --config file)",
				name, envName(name), c.Command.Name, name)
		}
	}
	return nil
}

// roleNames are the sections a config file may have.
var roleNames = map[string]struct{}{"meta": {}, "data": {}, "session": {}, "node": {}, "dev": {}}

func setFrom(c *cli.Context, path, prefix string, settings map[string]any, flags []cli.Flag) error {
	known := make(map[string]bool)
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] || k == flagConfig.Name || k == "help" {
			return fmt.Errorf("config %s: %s%s is not a setting here (settings are the flag names of `registry %s --help`)",
				path, prefix, k, strings.TrimSuffix(prefix, "."))
		}
		if c.IsSet(k) {
			continue // the command line or the environment said
		}
		v, err := configValue(settings[k])
		if err != nil {
			return fmt.Errorf("config %s: %s%s: %w", path, prefix, k, err)
		}
		if err := c.Set(k, v); err != nil {
			return fmt.Errorf("config %s: %s%s: %w", path, prefix, k, err)
		}
	}
	return nil
}

// configValue renders a YAML value as its flag would take it: a list
// becomes a comma-separated string.
func configValue(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", fmt.Errorf("no value")
	case map[string]any:
		return "", fmt.Errorf("want a value, got a section")
	case []any:
		parts := make([]string, len(v))
		for i, p := range v {
			s, err := configValue(p)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	default:
		return fmt.Sprint(v), nil
	}
}
