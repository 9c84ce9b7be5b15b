package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/meta"
	"github.com/slotreg/slotreg/metaclient"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// TestRemotes: a meta with two remote datacenters (nothing listens at
// their addresses: meta only names them) and data nodes that report
// their sync state with them.
func TestRemotes(t *testing.T) {
	c := mustCluster(t, func(cfg *meta.Config) {
		cfg.RemoteDatacenters = "dc2=127.0.0.1:2,127.0.0.1:3;dc9=127.0.0.1:1"
	}, []string{"d1", "d2"}, nil)
	c.handoffs()
	addr := c.meta.RPCAddr()
	// d1 leads every slot. It holds 4 publishers of dc2 in slot 3 and 1 in
	// slot 5 (whose first answer is still to come), 2 of dc7, which meta
	// no longer lists, and has never reached dc9: the way a real node
	// reports an unreachable datacenter, heard never, no publisher, no
	// slot. d2 heard from dc2 more recently.
	c.fakes["d1"].set(func(f *fakeNode) {
		f.xstats = []proto.XRemote{
			{Name: "dc2", Metas: []string{"127.0.0.1:2", "127.0.0.1:3"}, HeardMs: 300, Publishers: 5, StaleMs: 1500, Slots: []proto.XSlot{
				{Slot: 3, Publishers: 4, LeaderEpoch: 2, Seq: 17, LagMs: 40},
				{Slot: 5, Publishers: 1, LeaderEpoch: 0, Seq: 0, LagMs: -1},
			}},
			{Name: "dc7", Metas: []string{"127.0.0.1:7"}, HeardMs: -1, Publishers: 2, Slots: []proto.XSlot{
				{Slot: 9, Publishers: 2, LeaderEpoch: 1, Seq: 4, LagMs: 60000},
			}},
			{Name: "dc9", Metas: []string{"127.0.0.1:1"}, HeardMs: -1},
		}
	})
	c.fakes["d2"].set(func(f *fakeNode) {
		f.xstats = []proto.XRemote{
			{Name: "dc2", Metas: []string{"127.0.0.1:2", "127.0.0.1:3"}, HeardMs: 100},
			{Name: "dc9", Metas: []string{"127.0.0.1:1"}, HeardMs: -1},
		}
	})
	epoch := c.meta.Table().Epoch

	r := ctl("--meta", addr, "remotes")
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || r.err != "" || len(lines) != 5 {
		t.Fatalf("remotes: want a heading, a header and 3 datacenters: %v", r)
	}
	if want := fmt.Sprintf("datacenter dc1 (table epoch %d): 3 remote datacenters; 2 of 2 data nodes answered", epoch); lines[0] != want {
		t.Errorf("heading %q, want %q", lines[0], want)
	}
	if f := strings.Fields(lines[1]); !slices.Equal(f, []string{"DATACENTER", "METAS", "PUBLISHERS", "STALE", "HEARD"}) {
		t.Errorf("header %q", lines[1])
	}
	for i, want := range [][]string{
		{"dc2", "127.0.0.1:2,127.0.0.1:3", "5", "1.5s", "0.1s", "ago"},
		{"dc7", "127.0.0.1:7", "(not", "configured)", "2", "0.0s", "never"},
		{"dc9", "127.0.0.1:1", "0", "0.0s", "never"},
	} {
		if f := strings.Fields(lines[2+i]); !slices.Equal(f, want) {
			t.Errorf("row %q, want %q", lines[2+i], want)
		}
	}

	// d2 leads slot 17 now, and does not answer: the slot is named, and
	// its publishers are not counted.
	if r := ctl("--meta", addr, "move-slot", "17", "--to", "d2"); r.code != 0 {
		t.Fatalf("move-slot: %v", r)
	}
	c.fakes["d2"].set(func(f *fakeNode) { f.xstats = nil })
	epoch = c.meta.Table().Epoch
	r = ctl("--meta", addr, "remotes", "--slots")
	lines = strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || len(lines) != 2+3+1+1+3*slot.Count+1 {
		t.Fatalf("remotes --slots: want a heading, 3 datacenters, a blank line, 3x256 slots and what was not counted: %v", r)
	}
	if want := fmt.Sprintf("datacenter dc1 (table epoch %d): 3 remote datacenters; 1 of 2 data nodes answered", epoch); lines[0] != want {
		t.Errorf("heading %q", lines[0])
	}
	if !strings.Contains(r.err, "data node d2: DXSTATS: ") || !strings.Contains(r.err, "not counted") || strings.Count(r.err, "\n") != 1 {
		t.Errorf("remotes --slots: want one warning naming d2: %q", r.err)
	}
	if f := strings.Fields(lines[2+2]); !slices.Equal(f, []string{"dc9", "127.0.0.1:1", "0", "0.0s", "never"}) {
		t.Errorf("dc9 row %q", lines[2+2])
	}
	if lines[5] != "" || !slices.Equal(strings.Fields(lines[6]),
		[]string{"DATACENTER", "SLOT", "LEADER", "PUBLISHERS", "LEADER-EPOCH", "SEQ", "LAG-MS", "STATUS"}) {
		t.Errorf("slot table header %q after %q", lines[6], lines[5])
	}
	slotLine := func(dc, s int) []string { return strings.Fields(lines[7+dc*slot.Count+s]) }
	for _, c := range []struct {
		dc, slot int
		want     []string
	}{
		{0, 0, []string{"dc2", "0", "d1", "-", "-", "-", "-", "not", "synced"}},
		{0, 3, []string{"dc2", "3", "d1", "4", "2", "17", "40", "synced"}},
		{0, 5, []string{"dc2", "5", "d1", "1", "0", "0", "-", "not", "synced"}},
		{0, 17, []string{"dc2", "17", "d2", "-", "-", "-", "-", "no", "answer"}},
		{1, 9, []string{"dc7", "9", "d1", "2", "1", "4", "60000", "synced"}},
		{2, 0, []string{"dc9", "0", "d1", "-", "-", "-", "-", "not", "synced"}},
		{2, 17, []string{"dc9", "17", "d2", "-", "-", "-", "-", "no", "answer"}},
		{2, 255, []string{"dc9", "255", "d1", "-", "-", "-", "-", "not", "synced"}},
	} {
		if f := slotLine(c.dc, c.slot); !slices.Equal(f, c.want) {
			t.Errorf("slot line %q, want %q", strings.Join(f, " "), c.want)
		}
	}
	if last := lines[len(lines)-1]; last != "not counted: 1 slot whose leader did not answer: 17" {
		t.Errorf("last line %q", last)
	}

	r = ctl("--meta", addr, "remotes", "--json")
	var rep remotesReport
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil || r.code != 0 {
		t.Fatalf("remotes --json: %v, %v", err, r)
	}
	if rep.Datacenter != "dc1" || rep.TableEpoch != epoch || len(rep.Remotes) != 3 || !slices.Equal(rep.NoAnswer, []int{17}) ||
		len(rep.NoLeader) != 0 || !strings.Contains(rep.Errors["d2"], "DXSTATS") {
		t.Fatalf("remotes --json: %+v", rep)
	}
	dc2, dc7, dc9 := rep.Remotes[0], rep.Remotes[1], rep.Remotes[2]
	if dc2.Name != "dc2" || !dc2.Configured || dc2.Publishers != 5 || *dc2.StaleMs != 1500 || *dc2.HeardMs != 300 || dc2.Slots != nil ||
		dc7.Name != "dc7" || dc7.Configured || dc7.Publishers != 2 ||
		dc9.Name != "dc9" || !slices.Equal(dc9.Metas, []string{"127.0.0.1:1"}) || dc9.Publishers != 0 || *dc9.HeardMs != -1 {
		t.Fatalf("remotes --json rows: %+v", rep.Remotes)
	}
	r = ctl("--meta", addr, "remotes", "--json", "--slots")
	rep = remotesReport{}
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil || r.code != 0 {
		t.Fatalf("remotes --json --slots: %v, %v", err, r)
	}
	s3, s17 := rep.Remotes[0].Slots[3], rep.Remotes[0].Slots[17]
	if len(rep.Remotes[2].Slots) != slot.Count || s3.Status != slotSynced || *s3.Publishers != 4 || *s3.LagMs != 40 || s3.Leader != "d1" ||
		s17.Status != slotNoAnswer || s17.Leader != "d2" || s17.Publishers != nil {
		t.Fatalf("remotes --json --slots: slot 3 %+v, slot 17 %+v", s3, s17)
	}
}

// TestRemotesNone: a meta without remote datacenters.
func TestRemotesNone(t *testing.T) {
	c := mustCluster(t, func(cfg *meta.Config) { cfg.Datacenter = "east" }, []string{"d1"}, nil)
	c.fakes["d1"].set(func(f *fakeNode) { f.xstats = []proto.XRemote{} })
	r := ctl("--meta", c.meta.RPCAddr(), "remotes")
	if want := fmt.Sprintf("datacenter east (table epoch %d): no remote datacenters\n", c.meta.Table().Epoch); r.code != 0 || r.out != want {
		t.Fatalf("remotes: %v\nwant %q", r, want)
	}
	if r := ctl("--meta", c.meta.RPCAddr(), "remotes", "x"); r.code != exitUsage {
		t.Fatalf("remotes with an argument: %v", r)
	}
}

// TestBuildRemotesNoLeader: slots without a leader, and no data node
// that answered.
func TestBuildRemotesNoLeader(t *testing.T) {
	rep := buildRemotes("dc1", []proto.Remote{{Name: "dc2", Metas: []string{"h:1"}}}, slot.NewTable(1), nil, nil, true)
	if len(rep.NoLeader) != slot.Count || len(rep.NoAnswer) != 0 || len(rep.Remotes) != 1 {
		t.Fatalf("report %+v", rep)
	}
	r := rep.Remotes[0]
	if r.StaleMs != nil || r.HeardMs != nil || len(r.Slots) != slot.Count || r.Slots[7].Status != slotNoLeader || r.Slots[7].Leader != "" {
		t.Fatalf("dc2: %+v", r)
	}
}

func TestSlotRanges(t *testing.T) {
	for _, c := range []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{4}, "4"},
		{[]int{9, 0, 1, 2, 5, 6, 255}, "0-2,5-6,9,255"},
	} {
		if got := slotRanges(c.in); got != c.want {
			t.Errorf("slotRanges(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestNodesDatacenterAndZone: nodes shows the cluster's datacenter on
// every node and each session's zone, in the table and the JSON.
func TestNodesDatacenterAndZone(t *testing.T) {
	c := mustCluster(t, func(cfg *meta.Config) { cfg.Datacenter = "east" }, []string{"d1"}, nil)
	c.joinAs(proto.KindSession, "s1", c.fake("s1").addr, func(cfg *metaclient.Config) { cfg.Datacenter, cfg.Zone = "east", "east-b" })
	addr := c.meta.RPCAddr()

	r := ctl("--meta", addr, "nodes")
	lines := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
	if r.code != 0 || len(lines) != 5 {
		t.Fatalf("nodes: %v", r)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f[:5], []string{"ROLE", "ID", "ADDRESS", "DATACENTER", "ZONE"}) {
		t.Errorf("header %q", lines[0])
	}
	for i, want := range [][]string{
		{"meta", "m1", addr, "east", "-"},
		{"data", "d1", c.fakes["d1"].addr, "east", "-"},
		{"session", "s1", c.fakes["s1"].addr, "east", "east-b"},
	} {
		if f := strings.Fields(lines[1+i]); !slices.Equal(f[:5], want) {
			t.Errorf("row %q, want %q...", lines[1+i], want)
		}
	}

	r = ctl("--meta", addr, "nodes", "--json")
	var nr nodesReport
	if err := json.Unmarshal([]byte(r.out), &nr); err != nil || r.code != 0 || len(nr.Nodes) != 3 {
		t.Fatalf("nodes --json: %v, %v", err, r)
	}
	for _, n := range nr.Nodes {
		zone := ""
		if n.Role == proto.KindSession {
			zone = "east-b"
		}
		if n.Datacenter != "east" || n.Zone != zone {
			t.Errorf("nodes --json row %+v: want datacenter east, zone %q", n, zone)
		}
	}
	if !strings.Contains(r.out, `"datacenter": "east"`) || !strings.Contains(r.out, `"zone": "east-b"`) {
		t.Errorf("nodes --json lacks the datacenter and zone fields:\n%s", r.out)
	}
}
