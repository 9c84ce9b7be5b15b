package dataserver_test

import (
	"bytes"
	"testing"

	"github.com/slotreg/slotreg/cluster/fuzzutil"
)

// FuzzDataCommands sends arbitrary inter-node commands to a data node: it
// must answer or close, keep serving, and leave a session's publisher
// alone unless the input names it.
func FuzzDataCommands(f *testing.F) {
	for _, s := range []string{
		"DWRITE\x001\x00s1\x00R\x00svc\x00r\x00d\x00c\x000",
		"DWRITE\x0099999\x00s1\x00U\x00svc\x00r\x00\x00c\x000",
		"DWRITE\x001\x00s1\x00N\x00svc\x00r\x00\x00\x0010",
		"DLOOKUP\x001\x00svc",
		"DPULL\x00f1\x000\x001\x003\x000\x000",
		"DPULL\x00f1\x0060000\x002\x003\x001\x001",
		"DRECONCILE\x00s1\x001\x005\x001\x000\x000",
		"DSYNC\x00s1\x005\x001\x00svc\x00r\x00d\x00c",
		"DSTATS",
		"SUBSCRIBE\x00svc",
		"PING",
		"\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cl, control, err := fuzzutil.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range cl.Data {
			if err := fuzzutil.Send(d.Addr(), fuzzutil.SplitArgs(b)); err != nil {
				t.Fatalf("data node %s not accepting: %v", d.ID(), err)
			}
		}
		if bytes.Contains(b, []byte(fuzzutil.ControlKey)) || bytes.Contains(b, []byte("session1")) {
			return // it may legitimately write as the session
		}
		if err := fuzzutil.CheckControl(control); err != nil {
			t.Fatal(err)
		}
	})
}
