package proto

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, in := range []*Heartbeat{
		{Kind: KindData, NodeID: "d1", Addr: "127.0.0.1:7000", Epoch: 42},
		{Kind: KindSession, NodeID: "s1", Addr: "127.0.0.1:9600", Epoch: 3, MembersEpoch: 7},
		{Kind: KindData, NodeID: "d2", Addr: "h:1", Epoch: 1 << 40, MembersEpoch: 1,
			Progress: map[int]uint64{0: 0, 9: 1 << 63, 255: 17, 3: 4}, Datacenter: "dc2"},
		{Kind: KindSession, NodeID: "s2", Addr: "h:2", Datacenter: "east-1", Zone: "rack.7"},
	} {
		args := in.Args()
		if len(args) != 9 {
			t.Fatalf("Args gives %d arguments, want 9: %q", len(args), args)
		}
		out, err := ParseHeartbeat(ArgsBytes(args))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("got %+v want %+v", out, in)
		}
	}
	// The form nodes sent before the session list and progress existed.
	old, err := ParseHeartbeat(ArgsBytes([]any{CmdHeartbeat, KindData, "d1", "h:1", "5"}))
	if err != nil {
		t.Fatalf("old 5-argument heartbeat: %v", err)
	}
	if want := (&Heartbeat{Kind: KindData, NodeID: "d1", Addr: "h:1", Epoch: 5}); !reflect.DeepEqual(old, want) {
		t.Fatalf("old heartbeat: got %+v want %+v", old, want)
	}
	for _, bad := range [][]any{
		{CmdHeartbeat, KindData, "d1", "a"},
		{CmdHeartbeat, KindData, "d1", "a", "1", "2"},
		{CmdHeartbeat, KindData, "d1", "a", "1", "2", "", "x"},
		{CmdHeartbeat, "nope", "d1", "a", "1"},
		{CmdHeartbeat, KindData, "", "a", "1"},
		{CmdHeartbeat, KindData, "d1", "a", "-1"},
		{CmdHeartbeat, KindData, "d1", "a", "1", "-2", ""},
		{CmdHeartbeat, KindData, "d1", "a", "1", "2", "1:2,1:3"},
	} {
		if _, err := ParseHeartbeat(ArgsBytes(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: want ErrInvalid, got %v", bad, err)
		}
	}
}

func TestProgressEncoding(t *testing.T) {
	if s := FormatProgress(nil); s != "" {
		t.Fatalf("FormatProgress(nil) = %q", s)
	}
	if s := FormatProgress(map[int]uint64{}); s != "" {
		t.Fatalf("FormatProgress(empty) = %q", s)
	}
	p := map[int]uint64{200: 1, 3: 18446744073709551615, 0: 0, 17: 42}
	s := FormatProgress(p)
	if s != "0:0,3:18446744073709551615,17:42,200:1" {
		t.Fatalf("FormatProgress = %q, want sorted by slot", s)
	}
	back, err := ParseProgress(s)
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("ParseProgress(%q) = %v, %v", s, back, err)
	}
	if back, err := ParseProgress(""); err != nil || back != nil {
		t.Fatalf("ParseProgress(\"\") = %#v, %v; want nil, nil", back, err)
	}
	if back, err := ParseProgress("9:1,2:5"); err != nil || !reflect.DeepEqual(back, map[int]uint64{9: 1, 2: 5}) {
		t.Fatalf("unsorted input: %v, %v", back, err)
	}
	all := make(map[int]uint64)
	for s := range 256 {
		all[s] = uint64(s) * 1000
	}
	if back, err := ParseProgress(FormatProgress(all)); err != nil || !reflect.DeepEqual(back, all) {
		t.Fatalf("every slot: %v", err)
	}
	for _, bad := range []string{
		",", "1", "1:", ":1", "1:2,", ",1:2", "1:2,,3:4", "256:1", "-1:1", "+1:1", "01:1",
		"1:-2", "1:x", "x:1", "1:2:3", "1:18446744073709551616", "1:2,1:3", " 1:2", "1:2 ",
		strings.Repeat("1:1,", 256) + "1:1",
	} {
		if _, err := ParseProgress(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseProgress(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestLeaveRoundTrip(t *testing.T) {
	in := &Leave{Kind: KindSession, NodeID: "s1"}
	out, err := ParseLeave(ArgsBytes(in.Args()))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestSuspectRoundTripAndRefusals(t *testing.T) {
	in := &Suspect{Kind: KindData, NodeID: "d1", Reporter: "s1"}
	out, err := ParseSuspect(ArgsBytes(in.Args()))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
	for _, bad := range [][]any{
		{CmdSuspect, KindSession, "s1", "d1"}, // only data nodes
		{CmdSuspect, KindData, "", "s1"},
		{CmdSuspect, KindData, "d 1", "s1"},
		{CmdSuspect, KindData, "d1"},
	} {
		if _, err := ParseSuspect(ArgsBytes(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSuspect(%v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDWriteRoundTrip(t *testing.T) {
	in := &DWrite{Epoch: 7, SessionID: "s1", Stamp: Stamp{Run: 1 << 63, Seq: 12}, Ops: []Op{
		{Type: OpRegister, DataInfoID: "svc#@#DEFAULT", RegisterID: "r1", Data: "10.0.0.1:80", ConnID: "c.1"},
		{Type: OpRegister, DataInfoID: "svc", RegisterID: "r2", Data: "", TTL: 30},
		{Type: OpUnregister, DataInfoID: "svc", RegisterID: "r1", ConnID: "c.1"},
		{Type: OpRenew, DataInfoID: "svc", RegisterID: "r2"},
	}}
	out, err := ParseDWrite(ArgsBytes(in.Args()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v want %+v", out, in)
	}
	empty := &DWrite{Epoch: 1, SessionID: "s1", Ops: []Op{}}
	if out, err := ParseDWrite(ArgsBytes(empty.Args())); err != nil || len(out.Ops) != 0 {
		t.Fatalf("empty batch: %+v %v", out, err)
	}
}

func TestDWriteRejects(t *testing.T) {
	good := []any{CmdDWrite, "1", "s1", "z1", "5", "6", "R", "svc", "r1", "d", "c", "0"}
	cases := map[string]func([]any){
		"arity":     func(a []any) { a[len(a)-1] = nil },
		"type":      func(a []any) { a[6] = "X" },
		"empty key": func(a []any) { a[7] = "" },
		"long key":  func(a []any) { a[7] = strings.Repeat("k", MaxKeyLen+1) },
		"long data": func(a []any) { a[9] = strings.Repeat("d", MaxDataLen+1) },
		"ttl":       func(a []any) { a[11] = "x" },
		"epoch":     func(a []any) { a[1] = "e" },
		"run":       func(a []any) { a[4] = "-1" },
		"seq":       func(a []any) { a[5] = "s" },
		"zone":      func(a []any) { a[3] = "no spaces" },
	}
	if _, err := ParseDWrite(ArgsBytes(good)); err != nil {
		t.Fatalf("the good batch: %v", err)
	}
	for name, mutate := range cases {
		a := append([]any(nil), good...)
		mutate(a)
		if a[len(a)-1] == nil {
			a = a[:len(a)-1]
		}
		if _, err := ParseDWrite(ArgsBytes(a)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: want ErrInvalid, got %v", name, err)
		}
	}
}

func TestDLookupRoundTrip(t *testing.T) {
	in := &DLookup{Epoch: 3, DataInfoID: "svc"}
	out, err := ParseDLookup(ArgsBytes(in.Args()))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestDatumBinaryRoundTrip(t *testing.T) {
	in := &Datum{DataInfoID: "svc", Version: 5<<32 | 9, Entries: []Entry{{RegisterID: "a", Data: "1", DC: "dc1", Zone: "z1"}, {RegisterID: "b", DC: "dc2"}, {RegisterID: "c", Data: strings.Repeat("x", 300)}}}
	out, err := ParseDatum(in.AppendBinary(nil))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v", out, err)
	}
	b := in.AppendBinary(nil)
	for i := 0; i < len(b); i++ {
		if _, err := ParseDatum(b[:i]); err == nil {
			t.Fatalf("truncated at %d parsed without error", i)
		}
	}
}

func TestPushJSONParses(t *testing.T) {
	d := &Datum{DataInfoID: "svc\"<\x01>", Version: 1<<32 | 2, Entries: []Entry{
		{RegisterID: "r1", Data: "10.0.0.1:80", DC: "dc1", Zone: "z1"}, {RegisterID: "r\\2", Data: "line\nbreak\t\u2028"}, {RegisterID: "bad", Data: "\xff\xfe"},
	}}
	var got Push
	if err := json.Unmarshal(d.AppendPushJSON(nil), &got); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, d.AppendPushJSON(nil))
	}
	if got.DataInfoID != d.DataInfoID || got.Version != d.Version || len(got.Publishers) != 3 {
		t.Fatalf("got %+v", got)
	}
	if got.Publishers[0].Datacenter != "dc1" || got.Publishers[0].Zone != "z1" {
		t.Fatalf("datacenter and zone: %+v", got.Publishers[0])
	}
	if got.Publishers[1].Data != "line\nbreak\t\u2028" || got.Publishers[2].Data != "\ufffd\ufffd" {
		t.Fatalf("escaping: %+v", got.Publishers)
	}
	empty := (&Datum{DataInfoID: "x"}).AppendPushJSON(nil)
	if string(empty) != `{"dataInfoId":"x","version":0,"publishers":[]}` {
		t.Fatalf("empty datum: %s", empty)
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	for _, s := range []error{ErrInvalid, ErrNotOwner, ErrNotLeader, ErrStaleEpoch, ErrUnavailable, ErrTimeout} {
		e := Errorf(s, "detail %d", 1)
		back := FromRESP(ToRESP(e))
		if !errors.Is(back, s) {
			t.Errorf("%v: came back as %v", s, back)
		}
		if !strings.HasPrefix(ToRESP(e), Prefix(s)+" ") {
			t.Errorf("%v: RESP text %q lacks prefix %s", s, ToRESP(e), Prefix(s))
		}
	}
	no := &NotOwnerError{Slot: 12, Owner: "d2", Addr: "127.0.0.1:1", Epoch: 9}
	var back *NotOwnerError
	if err := FromRESP("-" + ToRESP(no)); !errors.As(err, &back) || *back != *no || !errors.Is(err, ErrNotOwner) {
		t.Fatalf("NOTOWNER came back as %#v", err)
	}
	unknownOwner := &NotOwnerError{Slot: 1}
	if err := FromRESP(ToRESP(unknownOwner)); !errors.As(err, &back) || *back != *unknownOwner {
		t.Fatalf("NOTOWNER without owner came back as %#v", err)
	}
	if err := FromRESP("WRONGTYPE whatever"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown prefix: %v", err)
	}
	if got := ToRESP(errors.New("plain")); got != "ERR plain" {
		t.Fatalf("plain error: %q", got)
	}
}

func BenchmarkPushJSON(b *testing.B) {
	d := &Datum{DataInfoID: "com.example.Service#@#DEFAULT#@#GROUP", Version: 1 << 32}
	for i := 0; i < 10; i++ {
		d.Entries = append(d.Entries, Entry{RegisterID: "r" + string(rune('a'+i)), Data: "10.0.0.1:8080"})
	}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = d.AppendPushJSON(buf[:0])
	}
}

func BenchmarkParseDWrite(b *testing.B) {
	w := &DWrite{Epoch: 1, SessionID: "s1"}
	for i := 0; i < 64; i++ {
		w.Ops = append(w.Ops, Op{Type: OpRegister, DataInfoID: "svc", RegisterID: "r", Data: "10.0.0.1:80", ConnID: "c.1"})
	}
	args := ArgsBytes(w.Args())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDWrite(args); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDWriteAppendRESP: the hand-encoded command is what a RESP client
// would send for Args(), and parses back to the same batch.
func TestDWriteAppendRESP(t *testing.T) {
	w := &DWrite{Epoch: 42, SessionID: "s1", Stamp: Stamp{Run: 9, Seq: 1<<64 - 1}, Ops: []Op{
		{Type: OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "d\r\nx", ConnID: "c.1"},
		{Type: OpRegister, DataInfoID: "svc2", RegisterID: "r2", Data: "", TTL: 30},
		{Type: OpUnregister, DataInfoID: "svc", RegisterID: "r1"},
	}}
	cmd, err := redcon.Parse(w.AppendRESP(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := ArgsBytes(w.Args())
	if len(cmd.Args) != len(want) {
		t.Fatalf("%d args, want %d", len(cmd.Args), len(want))
	}
	for i := range want {
		if string(cmd.Args[i]) != string(want[i]) {
			t.Fatalf("arg %d = %q, want %q", i, cmd.Args[i], want[i])
		}
	}
	got, err := ParseDWrite(cmd.Args)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, w) {
		t.Fatalf("parsed %+v, want %+v", got, w)
	}
}

// TestDPullRoundTrip: positions survive both encodings, and a bad
// positions argument is an error.
func TestDPullRoundTrip(t *testing.T) {
	p := &DPull{Follower: "d2", WaitMs: 500, Pos: []PullPos{{Slot: 0, LeaderEpoch: 1, Seq: 0}, {Slot: 255, LeaderEpoch: 1 << 40, Seq: 1<<63 + 5}}}
	cmd, err := redcon.Parse(p.AppendRESP(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][][]byte{cmd.Args, ArgsBytes(p.Args())} {
		got, err := ParseDPull(args)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("parsed %+v, want %+v", got, p)
		}
	}
	for name, blob := range map[string][]byte{
		"count over 256": AppendPositions(nil, make([]PullPos, 257)),
		"slot twice":     AppendPositions(nil, []PullPos{{Slot: 3}, {Slot: 3}}),
		"slot 256":       AppendPositions(nil, []PullPos{{Slot: 256}}),
		"truncated":      AppendPositions(nil, []PullPos{{Slot: 3, Seq: 1 << 40}})[:4],
		"trailing":       append(AppendPositions(nil, []PullPos{{Slot: 3}}), 0),
	} {
		if _, err := ParseDPull([][]byte{[]byte(CmdDPull), []byte("d2"), []byte("10"), blob}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want an ErrInvalid", name, err)
		}
	}
}

func TestDSyncRoundTrip(t *testing.T) {
	in := &DSync{Session: "s1", Slot: 255, LeaderEpoch: 4, Stamp: Stamp{Run: 77, Seq: 3}, Pubs: []SyncPub{
		{DataInfoID: "svc", RegisterID: "r1", Data: "10.0.0.1:80", Conn: "c.1"},
		{DataInfoID: "svc2", RegisterID: "r2", Data: "", Conn: "c.2"},
	}}
	out, err := ParseDSync(ArgsBytes(in.Args()))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v; want %+v", out, err, in)
	}
	short := ArgsBytes(in.Args())[:5] // the stamp's seq missing
	if _, err := ParseDSync(short); !errors.Is(err, ErrInvalid) {
		t.Fatalf("without a stamp: want ErrInvalid, got %v", err)
	}
}

func TestStampBefore(t *testing.T) {
	a, b := Stamp{Run: 1, Seq: 5}, Stamp{Run: 1, Seq: 6}
	if !a.Before(b) || b.Before(a) || a.Before(a) {
		t.Fatal("within a run, the lower seq comes first")
	}
	// Another run (the session restarted) is not ordered against this one.
	if c := (Stamp{Run: 2, Seq: 9}); a.Before(c) || c.Before(a) {
		t.Fatal("stamps of different runs are not ordered")
	}
}

func TestDReconcileRoundTrip(t *testing.T) {
	in := &DReconcile{Session: "s1", Stamp: Stamp{Run: 8, Seq: 9}, Slots: []SlotDigest{
		{Slot: 3, LeaderEpoch: 2, Digest: Digest{Count: 4, Sum: 1 << 60}},
		{Slot: 255, LeaderEpoch: 1},
	}}
	out, err := ParseDReconcile(ArgsBytes(in.Args()))
	if err != nil || !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, %v; want %+v", out, err, in)
	}
	bad := ArgsBytes(in.Args())
	bad[4] = []byte("3") // more slots than it carries
	if _, err := ParseDReconcile(bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a wrong slot count: %v", err)
	}
}
