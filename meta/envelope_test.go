package meta

import (
	"reflect"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, in := range []*command{
		{Type: cmdInit, Replicas: 3},
		{Type: cmdJoin, Kind: proto.KindData, ID: "d1", Addr: "127.0.0.1:9701"},
		{Type: cmdJoin, Kind: proto.KindSession, ID: "s1", Addr: "10.0.0.1:9600"},
		{Type: cmdRemove, Kind: proto.KindData, ID: "d1", Reason: reasonLease},
		{Type: cmdRecordMeta, ID: "m1", Addr: "127.0.0.1:9500"},
		{Type: cmdRemove, Kind: proto.KindData, ID: "d2", Reason: reasonLeave, Prefer: map[int]string{0: "d3", 255: "d1"}},
		{Type: cmdStartMoves, Moves: []moveSpec{{Slot: 0, To: "d2"}, {Slot: 17, To: "d3"}}},
		{Type: cmdFinishMove, Slot: 17, From: "d1", To: "d3", LeaderEpoch: 1 << 40},
		{Type: cmdCancelMove, Slot: 0, Reason: reasonTimeout},
		{Type: cmdDrain, ID: "d3"},
		{Type: cmdUndrain, ID: "d3"},
		{Type: cmdConfigSet, Key: "app/x", Value: "v\n\u00fc"},
		{Type: cmdConfigDel, Key: "app/x"},
		{Type: cmdLockAcquire, Name: "job", Owner: "w1", TTLMs: 3000, Now: 1_700_000_000_000, Session: "s1", Conn: "abc.3"},
		{Type: cmdLockRelease, Name: "job", Owner: "w1", Conn: "abc.3", Now: 1_700_000_000_500},
		{Type: cmdLockExpire, Now: 1_700_000_001_000},
		{Type: cmdEvenFollowers},
		{Type: cmdLockAcquire, Name: "job", Owner: "w2", TTLMs: 3000, Now: 1_700_000_000_000, Session: "s1", Conn: "abc.4", WaitMs: 5000},
		{Type: cmdLockCancel, Name: "job", Owner: "w2", Conn: "abc.4", Now: 1_700_000_005_000},
		{Type: cmdPersistPut, Key: "/a/b", Value: "v"},
		{Type: cmdPersistDel, Key: "/a/b"},
	} {
		b, err := encodeCommand(in)
		if err != nil {
			t.Fatalf("encode %+v: %v", in, err)
		}
		if cmdType(b[0]) != in.Type {
			t.Fatalf("encode %+v: type byte %d, want %d", in, b[0], in.Type)
		}
		out, err := decodeCommand(b)
		if err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("round trip: got %+v, want %+v", out, in)
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	if _, err := encodeCommand(&command{Type: cmdUnknown}); err == nil {
		t.Error("encoding an unknown type succeeded")
	}
	for _, b := range [][]byte{
		nil,
		{0},
		{0, '{', '}'},
		{99, '{', '}'},
		{byte(cmdPersistDel) + 1, '{', '}'},
		{byte(cmdStartMoves), '{', '"', 'm', 'o', 'v', 'e', 's', '"', ':', '1', '}'},
		{byte(cmdJoin)},
		{byte(cmdJoin), '{'},
		{byte(cmdJoin), '[', ']'},
	} {
		if c, err := decodeCommand(b); err == nil {
			t.Errorf("decodeCommand(%q) = %+v, want an error", b, c)
		}
	}
}
