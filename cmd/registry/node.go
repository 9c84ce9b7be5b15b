package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"

	"github.com/slotreg/slotreg/internal/inproc"
	"github.com/slotreg/slotreg/proto"
	"github.com/urfave/cli/v2"
)

// nodeCommand runs several roles in one process, SOFARegistry's
// integrated mode for a small deployment: one process per machine instead
// of three. Each role is the node it would be on its own, with the same
// flags, except that the data node's listen and advertise flags are
// --data-listen and --data-advertise (--listen is the session's client
// port). The session reaches the data node beside it by calls
// (internal/inproc), which is where the mode's speed comes from.
func nodeCommand() *cli.Command {
	flags := []cli.Flag{&cli.StringFlag{Name: "roles", Value: "meta,data,session", EnvVars: []string{"SLOTREG_ROLES"},
		Usage: "the roles this process runs, comma separated: meta, data, session"}}
	// roleCommand adds these; meta's --tls-client is among them.
	seen := map[string]bool{"roles": true, flagGCFloor.Name: true}
	for _, f := range securityFlags(true, true) {
		seen[f.Names()[0]] = true
	}
	for _, f := range slices.Concat(metaFlags(), dataFlags("data-"), sessionFlags()) {
		if name := f.Names()[0]; !seen[name] {
			seen[name] = true
			flags = append(flags, f)
		}
	}
	return roleCommand("node", "run several roles in one process (by default all three): a small deployment's one process per machine",
		true, true, flags, startNode)
}

// nodeRoles reads --roles.
func nodeRoles(s string) (meta, data, session bool, err error) {
	for _, r := range splitList(s) {
		switch r {
		case proto.KindMeta:
			meta = true
		case proto.KindData:
			data = true
		case proto.KindSession:
			session = true
		default:
			return false, false, false, fmt.Errorf("--roles: %q is not a role (meta, data or session)", r)
		}
	}
	if !meta && !data && !session {
		return false, false, false, errors.New("--roles names no role")
	}
	return meta, data, session, nil
}

func startNode(c *cli.Context, log *slog.Logger, sec *security) (*running, error) {
	withMeta, withData, withSession, err := nodeRoles(c.String("roles"))
	if err != nil {
		return nil, err
	}
	if withMeta && c.String("data-dir") == "" {
		return nil, errors.New("--data-dir is required with the meta role")
	}
	var parts []*running
	stopAll := func(sig os.Signal) error {
		// Sessions first (their clients' publishers are removed while
		// the data node still answers), then data, then meta.
		var errs []error
		for _, p := range slices.Backward(parts) {
			errs = append(errs, p.stop(sig))
		}
		return errors.Join(errs...)
	}
	if withMeta {
		m, r, err := newMeta(c, log, sec)
		if err != nil {
			return nil, err
		}
		parts = append(parts, r)
		if !c.IsSet(flagMeta.Name) {
			// The other roles find meta here; a meta group's leader is
			// found from any of its members.
			c.Set(flagMeta.Name, m.RPCAddr())
		}
	}
	if c.String(flagMeta.Name) == "" {
		return nil, errors.New("--meta is required without the meta role")
	}
	var local []inproc.Data
	if withData {
		d, r, err := newData(c, log, sec, "data-")
		if err != nil {
			stopAll(os.Interrupt)
			return nil, err
		}
		parts = append(parts, r)
		local = append(local, d)
	}
	if withSession {
		r, err := newSession(c, log, sec, local)
		if err != nil {
			stopAll(os.Interrupt)
			return nil, err
		}
		parts = append(parts, r)
	}
	all := &running{stop: stopAll, routes: make(map[string]http.Handler)}
	for _, p := range parts {
		maps.Copy(all.routes, p.routes)
		all.metrics = append(all.metrics, p.metrics...)
	}
	all.ready = func() (bool, string) {
		for _, p := range parts {
			if ok, why := p.ready(); !ok {
				return false, why
			}
		}
		return true, ""
	}
	return all, nil
}
