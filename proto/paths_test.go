package proto

import (
	"errors"
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
		{"PUT /a v PERMANENT", Op{}, "expected EPHEMERAL or TTL"},
		{"PUT /a v FOREVER x", Op{}, "expected EPHEMERAL or TTL"},
		{"PUT /a", Op{}, "wrong number of arguments"},
		{"PUT /a v TTL 1 x", Op{}, "wrong number of arguments"},
		{"PUT a v", Op{}, "starts with /"},
		{"DEL /a/b", Op{Type: OpUnregister, DataInfoID: "/a", RegisterID: "b"}, ""},
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
