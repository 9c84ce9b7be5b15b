package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func lookupCommand() *cli.Command {
	return &cli.Command{
		Name:      "lookup",
		Usage:     "show a dataInfoId's version and publishers, and the slot that holds it",
		ArgsUsage: "DATAINFOID",
		Description: "Asks a session node (the first that answers, from the membership) with LOOKUP, as a\n" +
			"client would, and the table for the slot and its leader.",
		Flags:  []cli.Flag{jsonFlag()},
		Action: action(runLookup),
	}
}

// lookupReport is the output of lookup --json.
type lookupReport struct {
	DataInfoID  string            `json:"dataInfoId"`
	Slot        int               `json:"slot"`
	Leader      string            `json:"leader"`
	LeaderEpoch uint64            `json:"leaderEpoch"`
	Version     uint64            `json:"version"`
	Session     string            `json:"session"` // the session that answered
	Publishers  []proto.PushEntry `json:"publishers"`
}

func runLookup(c *cli.Context, e *env) error {
	id, err := oneArg(c, "DATAINFOID")
	if err != nil {
		return err
	}
	if err := proto.CheckKey(id); err != nil {
		return usageErrorf("dataInfoId %q: %v", id, err)
	}
	m, err := e.readMembers()
	if err != nil {
		return err
	}
	if len(m.Sessions) == 0 {
		return fmt.Errorf("no session node in the cluster to ask")
	}
	var v any
	var last error
	rep := lookupReport{DataInfoID: id, Slot: slot.Of(id), Publishers: []proto.PushEntry{}}
	for _, s := range m.Sessions {
		ctx, cancel := e.ctx()
		v, err = e.pool.call(ctx, s.Addr, proto.CmdLookup, id)
		cancel()
		if err == nil {
			rep.Session = s.ID
			break
		}
		if isReply(err) {
			return fmt.Errorf("session %s: LOOKUP %s: %w", s.ID, id, err)
		}
		last = fmt.Errorf("session %s: %w", s.ID, err)
	}
	if rep.Session == "" {
		return fmt.Errorf("no session node answered LOOKUP: %w", last)
	}
	if err := parseLookup(v, &rep); err != nil {
		return fmt.Errorf("session %s: LOOKUP %s: %w", rep.Session, id, err)
	}
	if t, err := e.readTable(); err == nil {
		a := t.Slots[rep.Slot]
		rep.Leader, rep.LeaderEpoch = a.Leader, a.LeaderEpoch
	} else {
		e.warnf("reading the table: %v", err)
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "dataInfoId\t%s\n", id)
	fmt.Fprintf(w, "slot\t%d (leader %s, leader epoch %d)\n", rep.Slot, orDash(rep.Leader), rep.LeaderEpoch)
	fmt.Fprintf(w, "version\t%d (leader epoch %d, seq %d)\n", rep.Version, rep.Version>>32, rep.Version&(1<<32-1))
	fmt.Fprintf(w, "session\t%s\n", rep.Session)
	fmt.Fprintf(w, "publishers\t%d\n", len(rep.Publishers))
	if err := w.Flush(); err != nil {
		return err
	}
	w = tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	for _, p := range rep.Publishers {
		fmt.Fprintf(w, "  %s\t%s\n", p.RegisterID, p.Data)
	}
	return w.Flush()
}

// parseLookup reads a LOOKUP reply as go-redis returns it: [version,
// [[registerId, data], ...]].
func parseLookup(v any, rep *lookupReport) error {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return fmt.Errorf("want [version, publishers], got %T", v)
	}
	ver, ok := a[0].(int64)
	if !ok || ver < 0 {
		return fmt.Errorf("bad version %v", a[0])
	}
	rep.Version = uint64(ver)
	pubs, ok := a[1].([]any)
	if !ok {
		return fmt.Errorf("bad publisher list %T", a[1])
	}
	for _, p := range pubs {
		pair, ok := p.([]any)
		if !ok || len(pair) != 2 {
			return fmt.Errorf("bad publisher %v", p)
		}
		rid, ok1 := pair[0].(string)
		data, ok2 := pair[1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("bad publisher %v", p)
		}
		rep.Publishers = append(rep.Publishers, proto.PushEntry{RegisterID: rid, Data: data})
	}
	return nil
}
