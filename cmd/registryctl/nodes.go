package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
)

func jsonFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"}
}

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "nodes",
		Usage: "list every meta, data and session node: role, address, datacenter, zone, lease age, slots led and followed, draining, health",
		Description: "Lease ages, and sessions' zones, come from the meta leader (as heartbeats tell it). Slot counts come\n" +
			"from the table. Health is a PING to each node's address (a data node's inter-node port, a session's\n" +
			"client port, a meta's RPC port).",
		Flags:  []cli.Flag{jsonFlag()},
		Action: action(runNodes),
	}
}

// nodeRow is one node in the output of nodes.
type nodeRow struct {
	Role   string `json:"role"`
	ID     string `json:"id"`
	Addr   string `json:"addr"`
	Leader bool   `json:"leader,omitempty"` // the meta leader
	// Datacenter is the cluster's, as meta names it; Zone a session's,
	// as its heartbeats tell the meta leader (absent on a follower).
	Datacenter string `json:"datacenter,omitempty"`
	Zone       string `json:"zone,omitempty"`
	// LeaseAgeMs is the time since the node's last heartbeat, as the meta
	// leader saw it; absent for metas and when no leader answered.
	LeaseAgeMs *int64 `json:"leaseAgeMs,omitempty"`
	// Leads and Follows count slots in the table (data nodes only).
	Leads    *int   `json:"leads,omitempty"`
	Follows  *int   `json:"follows,omitempty"`
	Draining bool   `json:"draining,omitempty"`
	Healthy  bool   `json:"healthy"`
	Error    string `json:"error,omitempty"` // why it is not healthy
}

// nodesReport is the JSON output of nodes.
type nodesReport struct {
	Leader     string    `json:"leader"` // the meta leader's RPC address, "" if none answered
	TableEpoch uint64    `json:"tableEpoch"`
	Nodes      []nodeRow `json:"nodes"`
}

func runNodes(c *cli.Context, e *env) error {
	leader, err := e.findLeader(true)
	if err != nil {
		return err
	}
	m, err := e.readMembers()
	if err != nil {
		return err
	}
	t, err := e.readTable()
	if err != nil {
		return err
	}
	rep := nodesReport{Leader: leader, TableEpoch: t.Epoch}
	add := func(kind string, ms []proto.Member) {
		for _, mb := range ms {
			r := nodeRow{Role: kind, ID: mb.ID, Addr: mb.Addr, Datacenter: mb.Datacenter, Zone: mb.Zone, Draining: mb.Draining}
			if kind == proto.KindMeta {
				r.Leader = leader != "" && mb.Addr == leader
			} else if leader != "" {
				age := mb.LastSeenMs
				r.LeaseAgeMs = &age
			}
			if kind == proto.KindData {
				leads, follows := len(t.LedBy(mb.ID)), len(t.FollowedBy(mb.ID))
				r.Leads, r.Follows = &leads, &follows
			}
			rep.Nodes = append(rep.Nodes, r)
		}
	}
	add(proto.KindMeta, m.Metas)
	add(proto.KindData, m.Data)
	add(proto.KindSession, m.Sessions)
	addrs := make([]string, len(rep.Nodes))
	for i, r := range rep.Nodes {
		addrs[i] = r.Addr
	}
	for i, err := range e.pingAll(addrs) {
		rep.Nodes[i].Healthy = err == nil
		if err != nil {
			rep.Nodes[i].Error = oneLine(err.Error())
		}
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROLE\tID\tADDRESS\tDATACENTER\tZONE\tLEASE\tLEADS\tFOLLOWS\tDRAINING\tHEALTH")
	for _, r := range rep.Nodes {
		lease, leads, follows, draining := "-", "-", "-", "-"
		if r.LeaseAgeMs != nil {
			lease = fmt.Sprintf("%.1fs", float64(*r.LeaseAgeMs)/1000)
		}
		if r.Leads != nil {
			leads, follows, draining = strconv.Itoa(*r.Leads), strconv.Itoa(*r.Follows), "no"
			if r.Draining {
				draining = "yes"
			}
		}
		health := "ok"
		if !r.Healthy {
			health = "down: " + r.Error
		}
		if r.Role == proto.KindMeta && r.Healthy && leader != "" {
			health = "ok, follower"
			if r.Leader {
				health = "ok, leader"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Role, r.ID, r.Addr, orDash(r.Datacenter), orDash(r.Zone),
			lease, leads, follows, draining, health)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if leader == "" {
		e.printf("table epoch %d; no meta leader answered\n", t.Epoch)
	} else {
		e.printf("table epoch %d; meta leader %s\n", t.Epoch, leader)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
