package proto

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSplitPath(t *testing.T) {
	for _, c := range []struct{ path, parent, name, err string }{
		{"/a/b/c", "/a/b", "c", ""},
		{"/a", "/", "a", ""},
		{"/nodes/worker/default/10.0.0.7:1234", "/nodes/worker/default", "10.0.0.7:1234", ""},
		{"/", "", "", "root"},
		{"a/b", "", "", "starts with /"},
		{"", "", "", "starts with /"},
		{"/a/", "", "", "empty segment"},
		{"/a//b", "", "", "empty segment"},
	} {
		parent, name, err := SplitPath(c.path)
		if c.err != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("SplitPath(%q): %v, want an invalid-request error about %q", c.path, err, c.err)
			}
			continue
		}
		if err != nil || parent != c.parent || name != c.name {
			t.Errorf("SplitPath(%q) = %q, %q, %v; want %q, %q", c.path, parent, name, err, c.parent, c.name)
		}
	}
}

func TestParsePathCommands(t *testing.T) {
	lim := testLimits
	words := func(s string) [][]byte {
		var out [][]byte
		for _, w := range strings.Fields(s) {
			out = append(out, []byte(w))
		}
		return out
	}
	for _, c := range []struct {
		cmd  string
		want Op
		err  string
	}{
		{"PUT /a/b/c v", Op{Type: OpRegister, DataInfoID: "/a/b", RegisterID: "c", Data: "v"}, ""},
		{"PUT /a/b/c v ephemeral", Op{Type: OpRegister, DataInfoID: "/a/b", RegisterID: "c", Data: "v"}, ""},
		{"PUT /a v TTL 30", Op{Type: OpRegister, DataInfoID: "/", RegisterID: "a", Data: "v", TTL: 30}, ""},
		{"PUT /a v TTL 0", Op{}, "TTL must be"},
		{"PUT /a v PERMANENT", Op{}, "expected EPHEMERAL, PERSISTENT or TTL"},
		{"PUT /a v FOREVER x", Op{}, "expected EPHEMERAL, PERSISTENT or TTL"},
		{"PUT /a v persistent", Op{Type: OpRegister, DataInfoID: "/", RegisterID: "a", Data: "v", Persistent: true}, ""},
		{"PUT /a", Op{}, "wrong number of arguments"},
		{"PUT /a v TTL 1 x", Op{}, "wrong number of arguments"},
		{"PUT a v", Op{}, "starts with /"},
		{"DEL /a/b", Op{Type: OpUnregister, DataInfoID: "/a", RegisterID: "b", Persistent: true}, ""},
		{"DEL /a/b/", Op{}, "empty segment"},
		{"DEL", Op{}, "wrong number of arguments"},
	} {
		args := words(c.cmd)
		parse := ParsePut
		if strings.EqualFold(string(args[0]), CmdDel) {
			parse = ParseDel
		}
		op, err := parse(args, &lim)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want an error about %q", c.cmd, err, c.err)
			}
			continue
		}
		if err != nil || op != c.want {
			t.Errorf("%s = %+v, %v; want %+v", c.cmd, op, err, c.want)
		}
	}
	g, err := ParseGet(words("GET /x/y"), &lim)
	if err != nil || *g != (Get{Parent: "/x", Name: "y"}) {
		t.Errorf("GET /x/y = %+v, %v", g, err)
	}
	if _, err := ParseGet(words("GET /x/y z"), &lim); err == nil {
		t.Error("GET with two paths: no error")
	}
	long := "/" + strings.Repeat("a", MaxKeyLen+1)
	if _, err := ParseGet([][]byte{[]byte("GET"), []byte(long)}, &lim); err == nil {
		t.Error("GET of an over-long name: no error")
	}
}

func TestParsePattern(t *testing.T) {
	for _, c := range []struct{ pattern, prefix, err string }{
		{"/nodes/*", "/nodes/", ""},
		{"/nodes/wor*", "/nodes/wor", ""},
		{"/*", "/", ""},
		{"/nodes", "", "path prefix followed by *"},
		{"nodes/*", "", "path prefix followed by *"},
		{"*", "", "path prefix followed by *"},
		{"/a*b*", "", "path prefix followed by *"},
		{"/a?/*", "", "path prefix followed by *"},
		{"/a//*", "", "empty segment"},
		{"/" + strings.Repeat("x", MaxPathLen) + "*", "", "byte limit"},
	} {
		prefix, err := ParsePattern([]byte(c.pattern))
		if c.err != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParsePattern(%q): %v, want an error about %q", c.pattern, err, c.err)
			}
			continue
		}
		if err != nil || prefix != c.prefix {
			t.Errorf("ParsePattern(%q) = %q, %v; want %q", c.pattern, prefix, err, c.prefix)
		}
	}
}

// PrefixHolds finds every dataInfoId that can hold a path under a
// prefix: JoinPath(id, rid) starts with the prefix only if it does.
func TestPrefixHolds(t *testing.T) {
	ids := []string{"/", "/a", "/ab", "/a/b", "/a/bc", "/a/b/c", "/b", "svc"}
	rids := []string{"a", "b", "bc", "x"}
	for _, prefix := range []string{"/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/z"} {
		for _, id := range ids {
			some := false
			for _, rid := range rids {
				some = some || (strings.HasPrefix(id, "/") && strings.HasPrefix(JoinPath(id, rid), prefix))
			}
			if some && !PrefixHolds(prefix, id) {
				t.Errorf("PrefixHolds(%q, %q) = false, but a path of it starts with the prefix", prefix, id)
			}
		}
	}
	if PrefixHolds("/a/b/", "/a") || PrefixHolds("/a/b/", "/ab") {
		t.Error("PrefixHolds holds ids none of whose paths can match")
	}
}

func TestCheckPathAndDChildren(t *testing.T) {
	for path, ok := range map[string]bool{"/": true, "/a": true, "/a/b": true, "a": false, "/a/": false, "//": false, "": false,
		"/" + strings.Repeat("x", MaxPathLen): false} {
		if err := CheckPath(path); (err == nil) != ok {
			t.Errorf("CheckPath(%q) = %v", path, err)
		}
	}
	in := &DChildren{Epoch: 7, Path: "/a/b"}
	out, err := ParseDChildren(ArgsBytes(in.Args()))
	if err != nil || *out != *in {
		t.Fatalf("DChildren round trip: %+v %v", out, err)
	}
	if _, err := ParseDChildren(ArgsBytes((&DChildren{Path: "a/"}).Args())); err == nil {
		t.Fatal("DCHILDREN of a bad path parsed")
	}
	var s SlotSet
	s.Add(0)
	s.Add(255)
	back, err := ParseSlotSet(s[:])
	if err != nil || !back.Has(0) || !back.Has(255) || back.Has(1) || back.Len() != 2 {
		t.Fatalf("SlotSet round trip: %v %v", back, err)
	}
	if _, err := ParseSlotSet([]byte("short")); err == nil {
		t.Fatal("a short slot set parsed")
	}
}

func TestDiffEntries(t *testing.T) {
	e := func(kv ...string) []Entry {
		var out []Entry
		for i := 0; i < len(kv); i += 2 {
			out = append(out, Entry{RegisterID: kv[i], Data: kv[i+1]})
		}
		return out
	}
	var got []string
	DiffEntries("/w/", "/w", e("a", "1", "b", "2", "d", "4"), e("b", "2", "c", "3", "d", "5"), func(typ, path string, en *Entry) {
		got = append(got, typ+" "+path+"="+en.Data)
	})
	if want := "[REMOVE /w/a=1 ADD /w/c=3 UPDATE /w/d=5]"; fmt.Sprint(got) != want {
		t.Fatalf("diff = %v, want %s", got, want)
	}
	got = nil
	DiffEntries("/w/b", "/w", nil, e("a", "1", "b", "2", "bc", "3"), func(typ, path string, _ *Entry) { got = append(got, path) })
	if fmt.Sprint(got) != "[/w/b /w/bc]" {
		t.Fatalf("a prefix inside the last segment selects %v", got)
	}
	// One registerId in two datacenters is two paths of a global view:
	// dc2's leaving removes only its own.
	got = nil
	both := []Entry{{RegisterID: "a", Data: "1", DC: "dc1"}, {RegisterID: "a", Data: "2", DC: "dc2"}}
	DiffEntries("/w/", "/w", both, both[:1], func(typ, path string, en *Entry) {
		got = append(got, typ+" "+path+"@"+en.DC+"="+en.Data)
	})
	if want := "[REMOVE /w/a@dc2=2]"; fmt.Sprint(got) != want {
		t.Fatalf("diff across datacenters = %v, want %s", got, want)
	}
	b := AppendPathEventJSON(nil, EventAdd, "/w/\"x\"", &Entry{Data: "v\n", DC: "dc2", Zone: "z1"}, 7)
	var ev struct {
		Type, Path, Value, Datacenter, Zone string
		Version                             uint64
	}
	if err := json.Unmarshal(b, &ev); err != nil || ev.Type != "ADD" || ev.Path != `/w/"x"` || ev.Value != "v\n" || ev.Version != 7 ||
		ev.Datacenter != "dc2" || ev.Zone != "z1" {
		t.Fatalf("event JSON %s: %+v %v", b, ev, err)
	}
}
