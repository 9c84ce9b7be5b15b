package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func remotesCommand() *cli.Command {
	return &cli.Command{
		Name:  "remotes",
		Usage: "show the remote datacenters: their metas, the remote publishers held here, staleness, when last heard",
		Description: "Meta names this datacenter and the remote ones with their meta addresses (REMOTES, its\n" +
			"--remote-datacenters). Every data node of the table reports (DXSTATS), per remote datacenter,\n" +
			"when it last heard from it, how stale the slots it leads are, and per slot it leads the remote\n" +
			"publishers it holds and the remote leader epoch and seq its copy is at. Publishers are counted\n" +
			"on each slot's leader in the table; the slots whose leader does not answer, or that have none,\n" +
			"are named and not counted. --slots adds a line per remote datacenter and slot.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "slots", Usage: "a line per remote datacenter and slot: leader here, publishers, remote leader epoch and seq, sync lag"},
			jsonFlag(),
		},
		Action: action(runRemotes),
	}
}

// remotesReport is the JSON output of remotes.
type remotesReport struct {
	Datacenter string      `json:"datacenter"` // this cluster's, as meta names it
	TableEpoch uint64      `json:"tableEpoch"`
	Remotes    []remoteRow `json:"remotes"`
	// NoAnswer are the slots whose leader did not answer DXSTATS, and
	// NoLeader those without a leader: their remote publishers are not
	// counted.
	NoAnswer []int `json:"noAnswerSlots"`
	NoLeader []int `json:"noLeaderSlots"`
	// Errors are the data nodes that did not answer, and why.
	Errors map[string]string `json:"errors,omitempty"`
}

// remoteRow is one remote datacenter.
type remoteRow struct {
	Name  string   `json:"name"`
	Metas []string `json:"metas"`
	// Configured says meta lists it; a data node may hold publishers
	// of a datacenter meta no longer lists (until --remote-expire).
	Configured bool `json:"configured"`
	// Publishers are its publishers held in the slots led here.
	Publishers int `json:"publishers"`
	// StaleMs is the longest staleness a data node reports (0: every
	// slot is current); HeardMs the time since any data node last heard
	// from it, -1 for never. Both are null when no data node answered.
	StaleMs *int64       `json:"staleMs"`
	HeardMs *int64       `json:"heardMs"`
	Slots   []remoteSlot `json:"slots,omitempty"` // with --slots
}

// remoteSlot is one slot's sync state with one remote datacenter.
type remoteSlot struct {
	Slot   int    `json:"slot"`
	Leader string `json:"leader"` // the slot's leader here, "" for none
	Status string `json:"status"` // one of the slot* constants
	// Publishers, LeaderEpoch, Seq and LagMs are what the leader
	// reports: the remote publishers it holds, the remote leader epoch
	// and seq its copy is at, and the time since it was last current
	// (-1 before the first answer). Null where it holds no copy, or did
	// not answer.
	Publishers  *int    `json:"publishers"`
	LeaderEpoch *uint64 `json:"leaderEpoch"`
	Seq         *uint64 `json:"seq"`
	LagMs       *int64  `json:"lagMs"`
}

// A slot's status in remotes --slots.
const (
	slotSynced    = "synced"     // the leader holds a copy, current LagMs ago
	slotNotSynced = "not synced" // the leader has no answer from the remote yet
	slotNoAnswer  = "no answer"  // the leader did not answer DXSTATS
	slotNoLeader  = "no leader"
)

func runRemotes(c *cli.Context, e *env) error {
	if c.NArg() > 0 {
		return usageErrorf("remotes takes no arguments, got %q", c.Args().Slice())
	}
	self, configured, err := e.readRemotes()
	if err != nil {
		return err
	}
	t, err := e.readTable()
	if err != nil {
		return err
	}
	answers, errs := askEach(t.Nodes, e.dxstats)
	rep := buildRemotes(self, configured, t, answers, errs, c.Bool("slots"))
	for _, id := range sortedIDs(errs) {
		e.warnf("data node %s: %s; the slots it leads are not counted", id, rep.Errors[id])
	}
	if c.Bool("json") {
		return writeJSON(c.App.Writer, rep)
	}
	return printRemotes(e, rep, len(t.Nodes), c.Bool("slots"))
}

// readRemotes asks a meta for REMOTES: this datacenter's name and the
// remote ones, with their meta addresses.
func (e *env) readRemotes() (string, []proto.Remote, error) {
	v, err := e.meta.read(e.c.Context, proto.CmdRemotes)
	if err != nil {
		return "", nil, fmt.Errorf("REMOTES: %w", err)
	}
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return "", nil, fmt.Errorf("REMOTES reply: want [datacenter, remotes], got %T %v", v, v)
	}
	self, ok1 := a[0].(string)
	spec, ok2 := a[1].(string)
	if !ok1 || !ok2 {
		return "", nil, fmt.Errorf("REMOTES reply: want two strings, got %T and %T", a[0], a[1])
	}
	rs, err := proto.ParseRemotes(spec, self)
	if err != nil {
		return "", nil, fmt.Errorf("REMOTES reply: %w", err)
	}
	return self, rs, nil
}

// dxstats asks the data node at addr for DXSTATS.
func (e *env) dxstats(addr string) ([]proto.XRemote, error) {
	return askNode(e, addr, proto.CmdDXStats, parseDXStats)
}

func parseDXStats(v any) ([]proto.XRemote, error) {
	b, err := bulk(v, "DXSTATS reply")
	if err != nil {
		return nil, err
	}
	var rs []proto.XRemote
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("DXSTATS reply: %w", err)
	}
	return rs, nil
}

// buildRemotes sums what the data nodes answered (answers, by node id;
// errs for those that did not) per remote datacenter: the ones meta
// lists, and any other a data node still holds publishers of.
func buildRemotes(self string, configured []proto.Remote, t *slot.Table, answers map[string][]proto.XRemote,
	errs map[string]error, withSlots bool) *remotesReport {
	rep := &remotesReport{Datacenter: self, TableEpoch: t.Epoch, Remotes: []remoteRow{}, NoAnswer: []int{}, NoLeader: []int{}}
	rows := map[string]*remoteRow{}
	row := func(name string) *remoteRow {
		r := rows[name]
		if r == nil {
			r = &remoteRow{Name: name, Metas: []string{}}
			if len(answers) > 0 {
				stale, heard := int64(0), int64(-1)
				r.StaleMs, r.HeardMs = &stale, &heard
			}
			rows[name] = r
		}
		return r
	}
	for _, rm := range configured {
		r := row(rm.Name)
		r.Metas, r.Configured = rm.Metas, true
	}
	// held[node][datacenter][slot] is what node reports of the slot.
	held := map[string]map[string]map[int]proto.XSlot{}
	for id, xs := range answers {
		held[id] = map[string]map[int]proto.XSlot{}
		for _, x := range xs {
			r := row(x.Name)
			if !r.Configured && len(r.Metas) == 0 && len(x.Metas) > 0 {
				r.Metas = x.Metas
			}
			*r.StaleMs = max(*r.StaleMs, x.StaleMs)
			if x.HeardMs >= 0 && (*r.HeardMs < 0 || x.HeardMs < *r.HeardMs) {
				*r.HeardMs = x.HeardMs
			}
			bySlot := make(map[int]proto.XSlot, len(x.Slots))
			for _, s := range x.Slots {
				bySlot[s.Slot] = s
			}
			held[id][x.Name] = bySlot
		}
	}
	for s := range slot.Count {
		leader := t.Slots[s].Leader
		switch {
		case leader == "":
			rep.NoLeader = append(rep.NoLeader, s)
		case held[leader] == nil:
			rep.NoAnswer = append(rep.NoAnswer, s)
		}
	}
	for _, name := range sortedIDs(rows) {
		r := rows[name]
		for s := range slot.Count {
			leader := t.Slots[s].Leader
			rs := remoteSlot{Slot: s, Leader: leader}
			switch x, ok := held[leader][name][s]; {
			case leader == "":
				rs.Status = slotNoLeader
			case held[leader] == nil:
				rs.Status = slotNoAnswer
			case !ok:
				rs.Status = slotNotSynced
			default:
				r.Publishers += x.Publishers
				rs.Status = slotSynced
				if x.LagMs < 0 {
					rs.Status = slotNotSynced
				}
				rs.Publishers, rs.LeaderEpoch, rs.Seq, rs.LagMs = &x.Publishers, &x.LeaderEpoch, &x.Seq, &x.LagMs
			}
			if withSlots {
				r.Slots = append(r.Slots, rs)
			}
		}
		rep.Remotes = append(rep.Remotes, *r)
	}
	if len(errs) > 0 {
		rep.Errors = make(map[string]string, len(errs))
		for id, err := range errs {
			rep.Errors[id] = oneLine(err.Error())
		}
	}
	return rep
}

// printRemotes writes the text output of remotes: a heading, a line per
// remote datacenter, with --slots a line per datacenter and slot, and
// the slots that were not counted.
func printRemotes(e *env, rep *remotesReport, dataNodes int, withSlots bool) error {
	if len(rep.Remotes) == 0 {
		e.printf("datacenter %s (table epoch %d): no remote datacenters\n", rep.Datacenter, rep.TableEpoch)
		return nil
	}
	e.printf("datacenter %s (table epoch %d): %s; %d of %s answered\n", rep.Datacenter, rep.TableEpoch,
		count(len(rep.Remotes), "remote datacenter"), dataNodes-len(rep.Errors), count(dataNodes, "data node"))
	w := tabwriter.NewWriter(e.c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DATACENTER\tMETAS\tPUBLISHERS\tSTALE\tHEARD")
	for _, r := range rep.Remotes {
		metas := orDash(strings.Join(r.Metas, ","))
		if !r.Configured {
			metas += " (not configured)"
		}
		stale, heard := "-", "-"
		if r.StaleMs != nil {
			stale = seconds(*r.StaleMs)
			heard = "never"
			if *r.HeardMs >= 0 {
				heard = seconds(*r.HeardMs) + " ago"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.Name, metas, r.Publishers, stale, heard)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if withSlots {
		e.printf("\n")
		w = tabwriter.NewWriter(e.c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "DATACENTER\tSLOT\tLEADER\tPUBLISHERS\tLEADER-EPOCH\tSEQ\tLAG-MS\tSTATUS")
		for _, r := range rep.Remotes {
			for _, s := range r.Slots {
				pubs, epoch, seq, lag := "-", "-", "-", "-"
				if s.Publishers != nil {
					pubs, epoch, seq = strconv.Itoa(*s.Publishers), strconv.FormatUint(*s.LeaderEpoch, 10), strconv.FormatUint(*s.Seq, 10)
					if *s.LagMs >= 0 {
						lag = strconv.FormatInt(*s.LagMs, 10)
					}
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, s.Slot, orDash(s.Leader), pubs, epoch, seq, lag, s.Status)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if n := len(rep.NoAnswer); n > 0 {
		e.printf("not counted: %s whose leader did not answer: %s\n", count(n, "slot"), slotRanges(rep.NoAnswer))
	}
	if n := len(rep.NoLeader); n > 0 {
		e.printf("not counted: %s without a leader: %s\n", count(n, "slot"), slotRanges(rep.NoLeader))
	}
	return nil
}

// seconds formats milliseconds as the other commands do lease ages.
func seconds(ms int64) string {
	return fmt.Sprintf("%.1fs", float64(ms)/1000)
}

// slotRanges writes sorted slots compactly: "0-127,200,255".
func slotRanges(slots []int) string {
	slots = slices.Clone(slots)
	slices.Sort(slots)
	var b strings.Builder
	for i := 0; i < len(slots); {
		j := i
		for j+1 < len(slots) && slots[j+1] == slots[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(slots[i]))
		if j > i {
			b.WriteString("-" + strconv.Itoa(slots[j]))
		}
		i = j + 1
	}
	return b.String()
}
