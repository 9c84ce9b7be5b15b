package dataserver

import (
	"slices"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

// The children of a path are its datum's registerIds and the first
// segment of each non-empty dataInfoId below it; names that only look
// alike (/a/b!x beside /a/b/...) are not skipped, and emptied datums do
// not count.
func TestStoreChildren(t *testing.T) {
	s := newSlotStore(1, 64)
	for _, w := range [][2]string{
		{"/", "top"},
		{"/a", "leaf"},
		{"/a/b", "c"},
		{"/a/b/c/d", "e"},
		{"/a/b!x", "y"},
		{"/a/gone", "z"},
		{"/a/deep/er/still", "x"},
		{"/ab", "q"},
		{"svc", "not-a-path"},
	} {
		s.apply("s1", reg(w[0], w[1], "v", "c1", 0), 0)
	}
	s.apply("s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "/a/gone", RegisterID: "z"}, 0)
	names := func(path string) []string {
		var out []string
		s.children(path, func(n string) { out = append(out, n) })
		slices.Sort(out)
		return slices.Compact(out)
	}
	for path, want := range map[string][]string{
		"/":        {"a", "ab", "top"},
		"/a":       {"b", "b!x", "deep", "leaf"},
		"/a/b":     {"c"},
		"/a/b/c":   {"d"},
		"/a/b/c/d": {"e"},
		"/a/gone":  nil,
		"/nothing": nil,
	} {
		if got := names(path); !slices.Equal(got, want) {
			t.Errorf("children(%q) = %q, want %q", path, got, want)
		}
	}
}
