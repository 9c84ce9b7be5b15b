package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "read and write config keys (pushed to every client watching config/<KEY>)",
		Description: "Config keys live in the meta Raft group. Every write gets a version that only grows;\n" +
			"sessions push it to clients subscribed to config/<KEY> and serve it on GET /v1/config/<KEY>.",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "set KEY to VALUE (or to the contents of --file)",
				ArgsUsage: "KEY [VALUE]",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "file", Usage: "read the value from FILE ('-': stdin)"}},
				Action:    action(runConfigSet),
			},
			{
				Name:      "get",
				Usage:     "print KEY's value (with --json: key, version and value)",
				ArgsUsage: "KEY",
				Flags:     []cli.Flag{jsonFlag()},
				Action:    action(runConfigGet),
			},
			{
				Name:      "del",
				Usage:     "delete KEY (watchers get a push with deleted: true)",
				ArgsUsage: "KEY",
				Action:    action(runConfigDel),
			},
			{
				Name:      "list",
				Usage:     "list the keys (that start with PREFIX): key, version, size",
				ArgsUsage: "[PREFIX]",
				Flags:     []cli.Flag{jsonFlag()},
				Action:    action(runConfigList),
			},
			{
				Name:      "history",
				Usage:     fmt.Sprintf("KEY's last versions, newest first (meta keeps %d)", proto.ConfigHistoryLen),
				ArgsUsage: "KEY",
				Flags:     []cli.Flag{jsonFlag()},
				Action:    action(runConfigHistory),
			},
		},
	}
}

// configKeyArg is the command's only (or first) argument, a valid key.
func configKeyArg(c *cli.Context, most int) (string, error) {
	if c.NArg() < 1 || c.NArg() > most {
		return "", usageErrorf("want %s (see 'registryctl config %s --help')", c.Command.ArgsUsage, c.Command.Name)
	}
	k := c.Args().First()
	if err := proto.CheckConfigKey(k); err != nil {
		return "", usageErrorf("%s", strings.TrimPrefix(proto.ToRESP(err), "ERR "))
	}
	return k, nil
}

func runConfigSet(c *cli.Context, e *env) error {
	key, err := configKeyArg(c, 2)
	if err != nil {
		return err
	}
	var value string
	switch f := c.String("file"); {
	case f != "" && c.NArg() == 2:
		return usageErrorf("give VALUE or --file, not both")
	case f == "-":
		b, err := readAllLimited(os.Stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		value = string(b)
	case f != "":
		fh, err := os.Open(f)
		if err != nil {
			return usageErrorf("--file: %v", err)
		}
		b, err := readAllLimited(fh)
		fh.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		value = string(b)
	case c.NArg() == 2:
		value = c.Args().Get(1)
	default:
		return usageErrorf("want KEY VALUE or KEY --file FILE")
	}
	if err := proto.CheckConfigValue(value); err != nil {
		return usageErrorf("%s", strings.TrimPrefix(proto.ToRESP(err), "ERR "))
	}
	v, err := e.write((&proto.ConfSet{Key: key, Value: value}).Args()...)
	if err != nil {
		return fmt.Errorf("config set %s: %w", key, err)
	}
	ver, _ := v.(int64)
	e.printf("%s version %d\n", key, ver)
	return nil
}

// readAllLimited reads a value, refusing one over the limit without
// reading all of a huge file.
func readAllLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, proto.MaxConfigValueLen+1))
	if err != nil {
		return nil, err
	}
	if len(b) > proto.MaxConfigValueLen {
		return nil, usageErrorf("the value is over the %d byte limit", proto.MaxConfigValueLen)
	}
	return b, nil
}

func runConfigGet(c *cli.Context, e *env) error {
	key, err := configKeyArg(c, 1)
	if err != nil {
		return err
	}
	v, err := e.write((&proto.ConfKey{Cmd: proto.CmdConfGet, Key: key}).Args()...)
	if err != nil {
		return fmt.Errorf("config get %s: %w", key, err)
	}
	ent, ok, err := proto.ParseConfGetReply(key, v)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("config get %s: no such key", key)
	}
	if c.Bool("json") {
		return printJSON(e, ent)
	}
	e.printf("%s", ent.Value)
	if !strings.HasSuffix(ent.Value, "\n") {
		e.printf("\n")
	}
	return nil
}

func runConfigDel(c *cli.Context, e *env) error {
	key, err := configKeyArg(c, 1)
	if err != nil {
		return err
	}
	v, err := e.write((&proto.ConfKey{Cmd: proto.CmdConfDel, Key: key}).Args()...)
	if err != nil {
		return fmt.Errorf("config del %s: %w", key, err)
	}
	if ver, _ := v.(int64); ver > 0 {
		e.printf("%s deleted at version %d\n", key, ver)
	} else {
		e.printf("%s: no such key\n", key)
	}
	return nil
}

func runConfigList(c *cli.Context, e *env) error {
	if c.NArg() > 1 {
		return usageErrorf("want [PREFIX]")
	}
	v, err := e.write((&proto.ConfList{Prefix: c.Args().First()}).Args()...)
	if err != nil {
		return fmt.Errorf("config list: %w", err)
	}
	es, err := proto.ParseConfigEntries(v, proto.CmdConfList)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e, es)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVERSION\tBYTES")
	for _, x := range es {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", x.Key, x.Version, x.Size)
	}
	return tw.Flush()
}

func runConfigHistory(c *cli.Context, e *env) error {
	key, err := configKeyArg(c, 1)
	if err != nil {
		return err
	}
	v, err := e.write((&proto.ConfKey{Cmd: proto.CmdConfHistory, Key: key}).Args()...)
	if err != nil {
		return fmt.Errorf("config history %s: %w", key, err)
	}
	es, err := proto.ParseConfigEntries(v, proto.CmdConfHistory)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(e, es)
	}
	if len(es) == 0 {
		return fmt.Errorf("config history %s: no such key", key)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tVALUE")
	for _, x := range es {
		val := fmt.Sprintf("%q", x.Value)
		if len(val) > 72 {
			val = val[:69] + "..."
		}
		if x.Deleted {
			val = "(deleted)"
		}
		fmt.Fprintf(tw, "%d\t%s\n", x.Version, val)
	}
	return tw.Flush()
}

func printJSON(e *env, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	e.printf("%s\n", b)
	return nil
}
