package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/internal/fanout"
	"github.com/slotreg/slotreg/proto"
)

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "show publishers and subscribers per node, and the totals",
		Description: "Data nodes report (DSTATS) the slots they lead and follow, and the publishers and datums of\n" +
			"the slots they lead, so their sum counts every publisher once. Sessions report (INFO) the\n" +
			"publishers they hold for their clients, their subscribers, subscribed topics and clients.",
		Flags:  []cli.Flag{jsonFlag()},
		Action: action(runStats),
	}
}

// statsRow is one node in the output of stats; a field that does not
// apply to the node's role, or that it did not report, is absent.
type statsRow struct {
	Role        string `json:"role"`
	ID          string `json:"id"`
	Addr        string `json:"addr"`
	Leads       *int   `json:"leads,omitempty"`
	Follows     *int   `json:"follows,omitempty"`
	Publishers  *int   `json:"publishers,omitempty"`
	Datums      *int   `json:"datums,omitempty"`
	Subscribers *int   `json:"subscribers,omitempty"`
	Topics      *int   `json:"subscribedTopics,omitempty"`
	Clients     *int   `json:"connectedClients,omitempty"`
	Error       string `json:"error,omitempty"` // why the node did not report
}

// statsTotals sums the rows that reported.
type statsTotals struct {
	// Publishers and Datums are what the slot leaders hold: every
	// publisher once.
	Publishers int `json:"publishers"`
	Datums     int `json:"datums"`
	// SessionPublishers are the publishers the sessions hold for their
	// clients.
	SessionPublishers int `json:"sessionPublishers"`
	Subscribers       int `json:"subscribers"`
	Topics            int `json:"subscribedTopics"`
	Clients           int `json:"connectedClients"`
}

type statsReport struct {
	Nodes  []statsRow  `json:"nodes"`
	Totals statsTotals `json:"totals"`
}

func runStats(c *cli.Context, e *env) error {
	m, err := e.readMembers()
	if err != nil {
		return err
	}
	var members []proto.Member
	members = append(members, m.Data...)
	members = append(members, m.Sessions...)
	rep := statsReport{Nodes: make([]statsRow, len(members))}
	fanout.ForEach(len(members), 0, func(i int) {
		mb := members[i]
		r := statsRow{Role: mb.Kind, ID: mb.ID, Addr: mb.Addr}
		var err error
		if mb.Kind == proto.KindData {
			err = e.dataRow(&r)
		} else {
			err = e.sessionRow(&r)
		}
		if err != nil {
			r.Error = oneLine(err.Error())
		}
		rep.Nodes[i] = r
	})
	tot := &rep.Totals
	for _, r := range rep.Nodes {
		if r.Error != "" {
			e.warnf("%s node %s did not report: %s", r.Role, r.ID, r.Error)
			continue
		}
		if r.Role == proto.KindData {
			tot.Publishers += *r.Publishers
			tot.Datums += *r.Datums
			continue
		}
		tot.SessionPublishers += deref(r.Publishers)
		tot.Subscribers += deref(r.Subscribers)
		tot.Topics += deref(r.Topics)
		tot.Clients += deref(r.Clients)
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROLE\tID\tADDRESS\tLEADS\tFOLLOWS\tPUBLISHERS\tDATUMS\tSUBSCRIBERS\tTOPICS\tCLIENTS")
	for _, r := range rep.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Role, r.ID, r.Addr, num(r.Leads), num(r.Follows),
			num(r.Publishers), num(r.Datums), num(r.Subscribers), num(r.Topics), num(r.Clients))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	e.printf("total: %s in %s on the slot leaders; sessions hold %s for %s, %s on %s\n",
		count(tot.Publishers, "publisher"), count(tot.Datums, "datum"), count(tot.SessionPublishers, "publisher"),
		count(tot.Clients, "client"), count(tot.Subscribers, "subscriber"), count(tot.Topics, "topic"))
	return nil
}

// dataRow fills a data node's row from its DSTATS.
func (e *env) dataRow(r *statsRow) error {
	ds, err := e.dstats(r.Addr)
	if err != nil {
		return err
	}
	var leads, follows, pubs, datums int
	for _, s := range ds.Slots {
		if s.Role == proto.RoleLeader {
			leads++
			pubs += s.Publishers
			datums += s.Datums
		} else {
			follows++
		}
	}
	r.Leads, r.Follows, r.Publishers, r.Datums = &leads, &follows, &pubs, &datums
	return nil
}

// sessionRow fills a session's row from its INFO.
func (e *env) sessionRow(r *statsRow) error {
	ctx, cancel := e.ctx()
	defer cancel()
	v, err := e.pool.call(ctx, r.Addr, proto.CmdInfo)
	if err != nil {
		return fmt.Errorf("INFO: %w", err)
	}
	text, err := bulk(v, "INFO reply")
	if err != nil {
		return err
	}
	info := parseInfo(string(text))
	for _, f := range []struct {
		key string
		dst **int
	}{
		{"session_conn_publishers", &r.Publishers},
		{"session_subscribers", &r.Subscribers},
		{"session_subscribed_topics", &r.Topics},
		{"connected_clients", &r.Clients},
	} {
		if s, ok := info[f.key]; ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("INFO: %s is %q, not a number", f.key, s)
			}
			*f.dst = &n
		}
	}
	return nil
}

// parseInfo reads Redis INFO text: "# Section" headers, blank lines and
// key:value lines.
func parseInfo(text string) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

// count is "1 thing" or "n things"; plural, if given, replaces thing+"s".
func count(n int, thing string, plural ...string) string {
	if n == 1 {
		return "1 " + thing
	}
	if len(plural) > 0 {
		return strconv.Itoa(n) + " " + plural[0]
	}
	return strconv.Itoa(n) + " " + thing + "s"
}

func num(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
