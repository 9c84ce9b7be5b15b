package proto

import (
	"bytes"
	"reflect"
	"testing"
)

// splitArgs turns fuzz bytes into a RESP argument list: NUL separates
// arguments, as no command of ours needs one inside an argument to reach
// deep paths.
func splitArgs(b []byte) [][]byte {
	args := bytes.Split(b, []byte{0})
	if len(args) > 64 {
		args = args[:64]
	}
	return args
}

// FuzzParseCommands feeds every inter-node parser arbitrary arguments: each
// must return a value or an error, never panic, and whatever parses must
// build back to arguments that parse to the same thing.
func FuzzParseCommands(f *testing.F) {
	for _, seed := range [][]any{
		(&Heartbeat{Kind: KindData, NodeID: "d1", Addr: "127.0.0.1:1", Epoch: 3, MembersEpoch: 2, Progress: map[int]uint64{1: 5}, Datacenter: "dc2", Zone: "z"}).Args(),
		(&DWrite{Epoch: 1, SessionID: "s1", Zone: "z1", Ops: []Op{{Type: OpRegister, DataInfoID: "svc", RegisterID: "r", Data: "d", ConnID: "c", TTL: 3}}}).Args(),
		(&DLookup{Epoch: 1, DataInfoID: "svc"}).Args(),
		(&DChildren{Epoch: 1, Path: "/a/b"}).Args(),
		(&PathArgs{Cmd: CmdMPPut, Path: "/a/b", Value: "v"}).Args(),
		(&PathArgs{Cmd: CmdMPDel, Path: "/a/b"}).Args(),
		(&MPSlots{Slots: []int{0, 255}}).Args(),
		(&DPSync{Slot: 3, Rev: 9, DataInfoID: "/a"}).Args(),
		(&MLock{Name: "n", Owner: "o", TTLMs: 1000, Session: "s1", Conn: "c.1", WaitMs: 500}).Args(),
		(&DPull{Follower: "d2", WaitMs: 10, Pos: []PullPos{{Slot: 3, LeaderEpoch: 1, Seq: 9}}}).Args(),
		(&DXPull{Datacenter: "dc2", WaitMs: 10, Pos: []XPullPos{{Slot: 3, LeaderEpoch: 1, Seq: 9, Digest: Digest{Count: 2, Sum: 7}}}}).Args(),
		{CmdScope, "global"},
		{CmdRemotes, "dc2=127.0.0.1:1,h:2;dc3=h:3"},
		(&DReconcile{Session: "s1", Stamp: Stamp{Run: 1, Seq: 2}, Slots: []SlotDigest{{Slot: 1, LeaderEpoch: 2, Digest: Digest{Count: 1, Sum: 5}}}}).Args(),
		(&DSync{Session: "s1", Zone: "z1", Slot: 1, LeaderEpoch: 2, Stamp: Stamp{Run: 3, Seq: 4}, Pubs: []SyncPub{{DataInfoID: "a", RegisterID: "b", Data: "c", Conn: "d"}}}).Args(),
		(&Leave{Kind: KindSession, NodeID: "s1"}).Args(),
		(&Suspect{Kind: KindData, NodeID: "d1", Reporter: "s1"}).Args(),
		{CmdDWrite, "1", "s1", "z", "2", "3", "R", "", "r", "d", "c", "99999999999"},
		{CmdDPull, "d1", "1", "300"},
		{CmdHeartbeat, KindData, "d1", "a:1", "1", "1", "1:2,1:3"},
		(&ConfSet{Key: "app/k", Value: "v"}).Args(),
		(&ConfWatch{Since: 3, WaitMs: 100}).Args(),
		(&TableWait{Epoch: 7, MembersEpoch: 2, WaitMs: 100}).Args(),
		(&MLock{Name: "n", Owner: "o", TTLMs: 1000, Session: "s1", Conn: "c.1"}).Args(),
		(&MUnlock{Name: "n", Owner: "o", Conn: "c.1"}).Args(),
	} {
		f.Add(bytes.Join(ArgsBytes(seed), []byte{0}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		args := splitArgs(b)
		if h, err := ParseHeartbeat(args); err == nil {
			if _, err := ParseHeartbeat(ArgsBytes(h.Args())); err != nil {
				t.Fatalf("heartbeat %+v does not round-trip: %v", h, err)
			}
		}
		if w, err := ParseDWrite(args); err == nil {
			if _, err := ParseDWrite(ArgsBytes(w.Args())); err != nil {
				t.Fatalf("dwrite does not round-trip: %v", err)
			}
		}
		ParseDLookup(args)
		roundTrip(t, "dchildren", args, ParseDChildren, (*DChildren).Args)
		roundTrip(t, "mpput", args, ParseMPPut, (*PathArgs).Args)
		roundTrip(t, "mpdel", args, ParseMPDel, (*PathArgs).Args)
		roundTrip(t, "mpslots", args, ParseMPSlots, (*MPSlots).Args)
		roundTrip(t, "dpsync", args, ParseDPSync, (*DPSync).Args)
		ParseLeave(args)
		roundTrip(t, "suspect", args, ParseSuspect, (*Suspect).Args)
		if p, err := ParseDPull(args); err == nil {
			if _, err := ParseDPull(ArgsBytes(p.Args())); err != nil {
				t.Fatalf("dpull does not round-trip: %v", err)
			}
		}
		roundTrip(t, "dxpull", args, ParseDXPull, (*DXPull).Args)
		ParseScope(args)
		if len(args) == 2 {
			if rs, err := ParseRemotes(string(args[1]), "dc1"); err == nil {
				if again, err := ParseRemotes(FormatRemotes(rs), "dc1"); err != nil || !reflect.DeepEqual(again, rs) {
					t.Fatalf("remotes %q do not round-trip: %+v %v", args[1], again, err)
				}
			}
		}
		ParseDReconcile(args)
		ParseDSync(args)
		ParseHandoff(args)
		ParseMoveSlot(args)
		ParseRebalance(args)
		ParseCancelMove(args)
		ParseMetaJoin(args)
		roundTrip(t, "confset", args, ParseConfSet, (*ConfSet).Args)
		roundTrip(t, "confwatch", args, ParseConfWatch, (*ConfWatch).Args)
		roundTrip(t, "tablewait", args, ParseTableWait, (*TableWait).Args)
		roundTrip(t, "mlock", args, ParseMLock, (*MLock).Args)
		roundTrip(t, "munlock", args, ParseMUnlock, (*MUnlock).Args)
		roundTrip(t, "lock", args, ParseLock, (*Lock).Args)
		ParseConfList(args)
		ParseConfKey(CmdConfGet, args)
		ParseLockInfo(CmdLockInfo, args)
		ParseUnlock(args)
	})
}

// roundTrip checks that whatever parse accepts builds back to arguments
// that parse to the same value.
func roundTrip[T any](t *testing.T, what string, args [][]byte, parse func([][]byte) (*T, error), build func(*T) []any) {
	v, err := parse(args)
	if err != nil {
		return
	}
	again, err := parse(ArgsBytes(build(v)))
	if err != nil || !reflect.DeepEqual(again, v) {
		t.Fatalf("%s %+v does not round-trip: %+v, %v", what, v, again, err)
	}
}

// FuzzParseBinary feeds the binary decoders arbitrary bytes: they must
// fail cleanly, and what they accept must survive an encode and a parse
// unchanged (not byte for byte: a varint may arrive longer than needed).
func FuzzParseBinary(f *testing.F) {
	f.Add((&Datum{DataInfoID: "svc", Version: 1 << 32, Entries: []Entry{{RegisterID: "r", Data: "d", DC: "dc2", Zone: "z"}}}).AppendBinary(nil))
	f.Add(AppendEntries(nil, []LogEntry{{Seq: 1, Version: 2, Session: "s", Op: Op{Type: OpRegister, DataInfoID: "a", RegisterID: "b", Data: "c", TTL: 4}}}))
	f.Add((&SlotSnapshot{LeaderEpoch: 1, Seq: 2, Datums: []SnapDatum{{DataInfoID: "a", Version: 3, Pubs: []SnapPub{{RegisterID: "r", Session: "s", Conn: "c", TTL: 1, RemainMs: 5}}}}}).AppendBinary(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := ParseDatum(b); err == nil {
			again, err := ParseDatum(d.AppendBinary(nil))
			if err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("datum %+v does not survive a round trip: %+v %v", d, again, err)
			}
			d.AppendPushJSON(nil)
		}
		if es, err := ParseEntries(b); err == nil {
			again, err := ParseEntries(AppendEntries(nil, es))
			if err != nil || !reflect.DeepEqual(again, es) {
				t.Fatalf("entries %+v do not survive a round trip: %+v %v", es, again, err)
			}
		}
		if s, err := ParseSlotSnapshot(b); err == nil {
			s.AppendBinary(nil)
		}
		ParseProgress(string(b))
		FromRESP(string(b))
	})
}
