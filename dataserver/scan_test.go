package dataserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

func scan(t *testing.T, n *Node, a ...string) *proto.ScanReply {
	t.Helper()
	c := &replyConn{}
	n.handle(c, redcon.Command{Args: args(append([]string{"dscan"}, a...)...)})
	if len(c.replies) != 1 || !strings.HasPrefix(c.replies[0], "$") {
		t.Fatalf("DSCAN %q: %q", a, c.replies)
	}
	r, err := proto.ParseScanReply(c.replies[0][1:])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// DSCAN lists, over every slot the node leads, the ids with the prefix in
// order, each with its publisher count and the first publishers; ids
// without publishers, and slots it follows, are left out; the limit cuts
// the list and says so.
func TestDScanByPrefixOverLedSlots(t *testing.T) {
	n := leaderNode(t)
	var want []string
	for i := range 30 {
		id := fmt.Sprintf("svc.%02d", i)
		want = append(want, id)
		mustWrite(t, n.slots[slot.Of(id)], "s1", reg(id, "r1", "10.0.0.1:80", "c1", 0))
	}
	many := "svc.many"
	for i := range proto.ScanPublishers + 5 {
		mustWrite(t, n.slots[slot.Of(many)], "s1", reg(many, fmt.Sprintf("r%02d", i), strings.Repeat("é", proto.ScanDataLen), "c1", 0))
	}
	mustWrite(t, n.slots[slot.Of("other")], "s1", reg("other", "r1", "x", "c1", 0))
	gone := "svc.gone"
	mustWrite(t, n.slots[slot.Of(gone)], "s1", reg(gone, "r1", "x", "c1", 0))
	mustWrite(t, n.slots[slot.Of(gone)], "s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: gone, RegisterID: "r1"})

	r := scan(t, n, "svc.", "1000")
	var got []string
	for _, it := range r.Items {
		got = append(got, it.DataInfoID)
	}
	if fmt.Sprint(got) != fmt.Sprint(append(want, many)) || r.Truncated {
		t.Fatalf("ids %v (truncated %v), want %v", got, r.Truncated, append(want, many))
	}
	first := r.Items[0]
	if first.Publishers != 1 || len(first.Sample) != 1 || first.Sample[0].RegisterID != "r1" ||
		first.Sample[0].Data != "10.0.0.1:80" || first.Slot != slot.Of("svc.00") || first.Version == 0 {
		t.Errorf("svc.00: %+v", first)
	}
	m := r.Items[len(r.Items)-1]
	if m.Publishers != proto.ScanPublishers+5 || len(m.Sample) != proto.ScanPublishers || m.Sample[0].RegisterID != "r00" ||
		!m.Sample[0].DataTruncated || len(m.Sample[0].Data) > proto.ScanDataLen || !strings.HasPrefix(strings.Repeat("é", proto.ScanDataLen), m.Sample[0].Data) {
		t.Errorf("svc.many: %d publishers, %d in the sample, first %+v", m.Publishers, len(m.Sample), m.Sample[0].RegisterID)
	}

	r = scan(t, n, "svc.", "5")
	if len(r.Items) != 5 || !r.Truncated || r.Items[4].DataInfoID != "svc.04" {
		t.Errorf("limit 5: %d items, truncated %v", len(r.Items), r.Truncated)
	}
	if r = scan(t, n, "", "1000"); len(r.Items) != 32 {
		t.Errorf("empty prefix: %d items, want 32", len(r.Items))
	}
	if r = scan(t, n, "nope", "10"); len(r.Items) != 0 || r.Items == nil {
		t.Errorf("no match: %+v", r)
	}

	// A slot this node only follows is not its to answer for.
	n.slots[slot.Of("svc.00")].follow()
	if r = scan(t, n, "svc.00", "10"); len(r.Items) != 0 {
		t.Errorf("followed slot: %+v", r.Items)
	}
}

func TestDScanBadInput(t *testing.T) {
	n := leaderNode(t)
	for _, tc := range []struct {
		a    []string
		want string
	}{
		{[]string{"dscan"}, "-ERR wrong number of arguments for 'dscan' command"},
		{[]string{"dscan", "a"}, "-ERR wrong number of arguments for 'dscan' command"},
		{[]string{"dscan", "a", "0"}, "-ERR limit must be a whole number from 1 to 1000"},
		{[]string{"dscan", "a", "1001"}, "-ERR limit must be a whole number from 1 to 1000"},
		{[]string{"dscan", "a", "x"}, "-ERR limit must be a whole number from 1 to 1000"},
		{[]string{"dscan", strings.Repeat("k", proto.MaxKeyLen+1), "1"}, "-ERR prefix is 513 bytes"},
	} {
		c := &replyConn{}
		n.handle(c, redcon.Command{Args: args(tc.a...)})
		if len(c.replies) != 1 || !strings.HasPrefix(c.replies[0], tc.want) {
			t.Errorf("%.40q: %q, want %s", tc.a, c.replies, tc.want)
		}
	}
}
