package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/slot"
)

func slotsCommand() *cli.Command {
	return &cli.Command{
		Name:  "slots",
		Usage: "show the slot table: per slot its leader, followers, leader epoch, move target and publishers",
		Description: "Publisher counts come from each slot leader's DSTATS; \"-\" where the leader does not answer.\n" +
			"--map shows the table as a 16x16 grid, one cell per slot, with a letter per leader and * on moving slots.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "map", Usage: "a compact 16x16 grid of the leaders, moving slots marked *"},
			jsonFlag(),
		},
		Action: action(runSlots),
	}
}

// slotRow is one slot in the output of slots --json.
type slotRow struct {
	Slot        int      `json:"slot"`
	Leader      string   `json:"leader"`
	Followers   []string `json:"followers"`
	LeaderEpoch uint64   `json:"leaderEpoch"`
	Target      string   `json:"target,omitempty"` // the move's target, while moving
	// Publishers is the count the leader reports, null if it did not
	// answer.
	Publishers *int `json:"publishers"`
}

// slotsReport is the JSON output of slots.
type slotsReport struct {
	Epoch    uint64      `json:"epoch"`
	Replicas int         `json:"replicas"`
	Nodes    []slot.Node `json:"nodes"`
	Slots    []slotRow   `json:"slots"`
}

func runSlots(c *cli.Context, e *env) error {
	t, err := e.readTable()
	if err != nil {
		return err
	}
	if c.Bool("map") && !c.Bool("json") {
		writeMap(e, t)
		return nil
	}
	dv := e.readDataStats(t.Nodes)
	for _, id := range sortedIDs(dv.errs) {
		e.warnf("data node %s: %v; its slots show no publisher count", id, oneLine(dv.errs[id].Error()))
	}
	rep := slotsReport{Epoch: t.Epoch, Replicas: t.Replicas, Nodes: t.Nodes, Slots: make([]slotRow, slot.Count)}
	if rep.Nodes == nil {
		rep.Nodes = []slot.Node{}
	}
	for s := range slot.Count {
		a := t.Slots[s]
		r := slotRow{Slot: s, Leader: a.Leader, Followers: a.Followers, LeaderEpoch: a.LeaderEpoch, Target: a.Target}
		if r.Followers == nil {
			r.Followers = []string{}
		}
		if st := dv.stats(a.Leader, s); st != nil {
			n := st.Publishers
			r.Publishers = &n
		}
		rep.Slots[s] = r
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	e.printf("%s\n", tableSummary(t))
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SLOT\tLEADER\tFOLLOWERS\tLEADER-EPOCH\tTARGET\tPUBLISHERS")
	for _, r := range rep.Slots {
		leader, followers, target, pubs := orDash(r.Leader), orDash(strings.Join(r.Followers, ",")), orDash(r.Target), "-"
		if r.Publishers != nil {
			pubs = strconv.Itoa(*r.Publishers)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%s\t%s\n", r.Slot, leader, followers, r.LeaderEpoch, target, pubs)
	}
	return w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tableSummary is the one-line heading of slots and slots --map.
func tableSummary(t *slot.Table) string {
	return fmt.Sprintf("table epoch %d: %d data nodes, replicas %d, %d slots moving",
		t.Epoch, len(t.Nodes), t.Replicas, len(t.Moving()))
}

// mapSymbols name the leaders in the grid, in node ID order; nodes past
// the last share "?" (the legend still lists them).
const mapSymbols = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func mapSymbol(i int) string {
	if i < len(mapSymbols) {
		return mapSymbols[i : i+1]
	}
	return "?"
}

// writeMap prints the table as a 16x16 grid: row r, column c is slot
// 16r+c; each cell is its leader's symbol ("." for a slot without a
// leader), then "*" if it is moving. A legend and the moves follow.
func writeMap(e *env, t *slot.Table) {
	sym := map[string]string{}
	for i, n := range t.Nodes {
		sym[n.ID] = mapSymbol(i)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (* moving, . no leader)\n", tableSummary(t))
	const side = 16
	header := "     "
	for col := range side {
		header += fmt.Sprintf(" %-2d", col)
	}
	b.WriteString(strings.TrimRight(header, " ") + "\n")
	for row := range slot.Count / side {
		line := fmt.Sprintf("%4d ", row*side)
		for col := range side {
			a := t.Slots[row*side+col]
			cell := "."
			if s, ok := sym[a.Leader]; ok {
				cell = s
			}
			mark := " "
			if a.Target != "" {
				mark = "*"
			}
			line += " " + cell + mark
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	counts := map[string]int{}
	for s := range slot.Count {
		counts[t.Slots[s].Leader]++
	}
	var legend []string
	for _, n := range t.Nodes {
		legend = append(legend, fmt.Sprintf("%s=%s (%d)", sym[n.ID], n.ID, counts[n.ID]))
	}
	if len(legend) == 0 {
		legend = append(legend, "no data nodes")
	}
	fmt.Fprintf(&b, "leaders: %s\n", strings.Join(legend, "  "))
	if moving := t.Moving(); len(moving) > 0 {
		var ms []string
		for _, s := range moving {
			a := t.Slots[s]
			ms = append(ms, fmt.Sprintf("%d %s->%s", s, a.Leader, a.Target))
		}
		fmt.Fprintf(&b, "moving: %s\n", strings.Join(ms, ", "))
	}
	e.printf("%s", b.String())
}
