// Command registryctl is slotreg's admin tool: it shows the cluster (nodes,
// the slot table, statistics, the remote datacenters), moves slots
// (move-slot, rebalance, drain) and checks that sessions, slot leaders and
// followers agree (verify).
//
// It talks to any meta node (--meta or SLOTREG_META; followers answer
// reads, and writes follow NOTLEADER to the leader), to data nodes on
// their inter-node port (PING, DSTATS, DXSTATS) and to sessions on their
// client port (PING, INFO, LOOKUP, SLOTREG DIGESTS). It never changes
// data: every slot move goes through meta, which has the data nodes carry
// it out.
//
// Exit codes: 0 success, 1 an operational error (no meta reachable, an
// unknown node, a refused move, a move that failed), 2 a usage error (bad
// flags or arguments, a slot out of 0..255), 3 verify found differences.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitDifferences = 3
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// exitError is an error with the exit code it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage error (exit 2): the command line is wrong.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// run runs registryctl with args (args[0] is the program name), writing
// output to stdout and errors to stderr, and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	quietRedis()
	app := newApp(stdout, stderr)
	err := app.Run(normalizeArgs(app, args))
	if err == nil {
		return exitOK
	}
	// urfave/cli returns its own errors only for a bad command line.
	code := exitUsage
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(stderr, "registryctl: %s\n", oneLine(err.Error()))
	return code
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

var quietOnce sync.Once

// quietRedis stops go-redis from logging failed dials to stderr: a node
// that is down is reported in registryctl's own output.
func quietRedis() {
	quietOnce.Do(func() { redis.SetLogger(discardLogger{}) })
}

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// Global flags. urfave/cli keeps parsed values in the flag structs, so
// every app gets its own (globalFlags); run may be called more than once
// in a process (the tests do).
const (
	flagMeta          = "meta"
	flagTimeout       = "timeout"
	flagClusterSecret = "cluster-secret"
	flagUser          = "user"
	flagPassword      = "password"
	flagTLSCA         = "tls-ca"
	flagTLSInternode  = "tls-internode"
	flagTLSClient     = "tls-client"
)

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    flagMeta,
			Usage:   "meta RPC addresses, HOST:PORT[,HOST:PORT...]; any meta node will do",
			EnvVars: []string{"SLOTREG_META"},
		},
		&cli.DurationFlag{
			Name:  flagTimeout,
			Value: 5 * time.Second,
			Usage: "how long to wait for each request to a node",
		},
		// The same names and variables as the registry's own flags, so
		// one environment configures the nodes and registryctl.
		&cli.StringFlag{
			Name:    flagClusterSecret,
			EnvVars: []string{"SLOTREG_CLUSTER_SECRET"},
			Usage:   "the cluster secret, sent to metas and data nodes (prefer the environment variable)",
		},
		&cli.StringFlag{
			Name:    flagUser,
			EnvVars: []string{"SLOTREG_USER"},
			Usage:   "the user registryctl AUTHs as on sessions that require client passwords (default: the default user)",
		},
		&cli.StringFlag{
			Name:    flagPassword,
			EnvVars: []string{"SLOTREG_REQUIREPASS"},
			Usage:   "the client password for sessions started with --requirepass or --users-file (prefer the environment variable)",
		},
		&cli.StringFlag{
			Name:    flagTLSCA,
			EnvVars: []string{"SLOTREG_TLS_CA"},
			Usage:   "PEM CA bundle that signed the nodes' certificates (default: the system's)",
		},
		&cli.BoolFlag{
			Name:    flagTLSInternode,
			EnvVars: []string{"SLOTREG_TLS_INTERNODE"},
			Usage:   "reach metas and data nodes over TLS (nodes run with --tls-internode)",
		},
		&cli.BoolFlag{
			Name:    flagTLSClient,
			EnvVars: []string{"SLOTREG_TLS_CLIENT"},
			Usage:   "reach sessions over TLS (sessions run with --tls-client)",
		},
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "registryctl",
		Usage: "administer a slotreg cluster",
		Description: "Exit codes: 0 ok, 1 operational error, 2 usage error, 3 verify found differences.\n" +
			"Flags may follow a command's arguments: registryctl move-slot 17 --to data2.",
		Flags:           globalFlags(),
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		OnUsageError:    onUsageError,
		ExitErrHandler:  func(*cli.Context, error) {}, // run picks the exit code; only main exits
		CommandNotFound: func(*cli.Context, string) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q (see 'registryctl --help')", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return usageErrorf("no command given")
		},
		Commands: []*cli.Command{
			nodesCommand(), slotsCommand(), rebalanceCommand(), moveSlotCommand(),
			drainCommand(), undrainCommand(), lookupCommand(), statsCommand(), remotesCommand(), verifyCommand(),
			metaCommand(), configCommand(),
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = onUsageError
		for _, sub := range cmd.Subcommands {
			sub.OnUsageError = onUsageError
		}
	}
	return app
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	name := "registryctl"
	if c.Command != nil && c.Command.Name != "" {
		name += " " + c.Command.Name
	}
	return usageErrorf("%v (see '%s --help')", err, name)
}

// action wraps a command's body: it parses the global flags into an env,
// closes the env's connections afterwards, and makes every error that
// has no exit code an operational one (exit 1).
func action(body func(c *cli.Context, e *env) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		e, err := newEnv(c)
		if err != nil {
			return err
		}
		defer e.close()
		err = body(c, e)
		var ee *exitError
		if err != nil && !errors.As(err, &ee) {
			err = &exitError{code: exitFailed, err: err}
		}
		return err
	}
}

// normalizeArgs lets flags follow a command's arguments, as in
// "move-slot 17 --to d2", which urfave/cli v2 (like Go's flag package)
// would otherwise read as three arguments. It moves the command's flags
// before its arguments, moves global flags given after the command name
// to the front, and puts "--" before the arguments, so that an argument
// such as "-1" reaches the command (which then says that slot -1 is out
// of range) instead of failing as an unknown flag. A command line it does
// not understand is returned unchanged, for urfave/cli to judge.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := []string{}
	i := 1
	for i < len(args) && isFlagArg(args[i]) && args[i] != "--" {
		i = takeFlag(args, i, app.Flags, &globals)
	}
	if i >= len(args) || args[i] == "--" {
		return args
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args
	}
	names := []string{args[i]}
	// A command with subcommands (config set ...): the subcommand's flags
	// and arguments are what get sorted.
	if len(cmd.Subcommands) > 0 && i+1 < len(args) {
		if sub := cmd.Command(args[i+1]); sub != nil {
			i++
			names = append(names, args[i])
			cmd = sub
		}
	}
	var flags, positional []string
	for i++; i < len(args); {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case !isFlagArg(a):
			positional = append(positional, a)
			i++
		case findFlag(cmd.Flags, flagArgName(a)) == nil && findFlag(app.Flags, flagArgName(a)) != nil:
			i = takeFlag(args, i, app.Flags, &globals)
		default:
			i = takeFlag(args, i, cmd.Flags, &flags)
		}
	}
	out := append([]string{args[0]}, globals...)
	out = append(out, names...)
	out = append(out, flags...)
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	return out
}

// isFlagArg reports whether a looks like a flag; a negative number is an
// argument.
func isFlagArg(a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	return strings.TrimLeft(a[1:], "0123456789") != ""
}

// flagArgName is the flag's name in "-x", "--name" or "--name=value".
func flagArgName(a string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return name
}

// takeFlag appends the flag at args[i] (and its value, if it takes one
// and has none after "=") to dst and returns the index after it.
func takeFlag(args []string, i int, defs []cli.Flag, dst *[]string) int {
	a := args[i]
	*dst = append(*dst, a)
	i++
	if strings.Contains(a, "=") {
		return i
	}
	if f := findFlag(defs, flagArgName(a)); f != nil && takesValue(f) && i < len(args) {
		*dst = append(*dst, args[i])
		i++
	}
	return i
}

func findFlag(defs []cli.Flag, name string) cli.Flag {
	for _, f := range defs {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}
