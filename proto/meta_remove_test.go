package proto

import (
	"errors"
	"testing"
)

func TestMetaRemoveRoundTrip(t *testing.T) {
	in := &MetaRemove{NodeID: "meta2"}
	out, err := ParseMetaRemove(ArgsBytes(in.Args()))
	if err != nil || *out != *in {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	for _, bad := range [][]any{{CmdMetaRemove}, {CmdMetaRemove, "a", "b"}, {CmdMetaRemove, ""}, {CmdMetaRemove, "a b"}} {
		if _, err := ParseMetaRemove(ArgsBytes(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
}
