package sessionserver_test

import (
	"bytes"
	"testing"

	"github.com/slotreg/slotreg/cluster/fuzzutil"
)

// FuzzSessionCommands sends arbitrary RESP arrays to a session: it must
// answer or close, keep serving, and leave another client's publisher
// alone unless the input names it.
func FuzzSessionCommands(f *testing.F) {
	for _, s := range []string{
		"REGISTER\x00svc\x00r1\x00d",
		"REGISTER\x00svc\x00r1\x00d\x00TTL\x0010",
		"REGISTER\x00svc\x00r1\x00d\x00TTL\x00-5",
		"UNREGISTER\x00svc\x00r1",
		"RENEW\x00svc\x00r1",
		"LOOKUP\x00svc",
		"SUBSCRIBE\x00svc\x00other",
		"UNSUBSCRIBE",
		"HELLO\x003\x00SETNAME\x00x",
		"HELLO\x009",
		"CLIENT\x00SETNAME\x00n",
		"COMMAND\x00DOCS",
		"COMMAND\x00DOCS\x00register\x00client\x00nosuch",
		"COMMAND\x00INFO\x00lookup",
		"COMMAND\x00COUNT\x00x",
		"command",
		"CLIENT\x00SETINFO\x00LIB-NAME\x00fuzz",
		"CLIENT\x00GETNAME\x00x",
		"SLOTREG\x00MEMORY\x00NOW",
		"HELLO\x002\x00AUTH\x00u",
		"INFO\x00registry",
		"SLOTREG\x00DIGESTS",
		"PING\x00a\x00b",
		"ECHO",
		"SELECT\x001",
		"CONFGET\x00app/k",
		"SUBSCRIBE\x00config/app/k",
		"LOCK\x00job\x00w1\x001000",
		"LOCK\x00job\x00w1\x00-1",
		"UNLOCK\x00job\x00w1",
		"LOCKINFO\x00job",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cl, control, err := fuzzutil.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		if err := fuzzutil.Send(cl.Sessions[0].Addr(), fuzzutil.SplitArgs(b)); err != nil {
			t.Fatalf("session not accepting: %v", err)
		}
		if bytes.Contains(b, []byte(fuzzutil.ControlKey)) {
			return
		}
		if err := fuzzutil.CheckControl(control); err != nil {
			t.Fatal(err)
		}
	})
}
