package proto

import (
	"errors"
	"reflect"
	"testing"

	"github.com/slotreg/slotreg/slot"
)

func TestSlotCountMatchesSlot(t *testing.T) {
	if metaSlotCount != slot.Count {
		t.Fatalf("proto assumes %d slots, slot.Count is %d", metaSlotCount, slot.Count)
	}
}

func TestMoveCommandsRoundTrip(t *testing.T) {
	for _, in := range []*Handoff{
		{Slot: 0, From: "d1", To: "d2", LeaderEpoch: 1},
		{Slot: 255, From: "data-7", To: "data-9", LeaderEpoch: 1 << 50},
	} {
		out, err := ParseHandoff(ArgsBytes(in.Args()))
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("Handoff round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	for _, in := range []*MoveSlot{{Slot: 0, To: "d1"}, {Slot: 255, To: "d2"}} {
		out, err := ParseMoveSlot(ArgsBytes(in.Args()))
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("MoveSlot round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	for _, in := range []*CancelMove{{Slot: 0}, {Slot: 17}, {Slot: 255}} {
		out, err := ParseCancelMove(ArgsBytes(in.Args()))
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("CancelMove round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
	for _, in := range []*Rebalance{{}, {MaxMoves: 4}, {MaxMoves: 256, DryRun: true}} {
		out, err := ParseRebalance(ArgsBytes(in.Args()))
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("Rebalance round trip: got %+v, %v; want %+v", out, err, in)
		}
	}
}

func TestMoveCommandsReject(t *testing.T) {
	for _, c := range []struct {
		parse func([][]byte) error
		args  []any
	}{
		{handoff, []any{CmdHandoff, "1", "d1", "d2"}},
		{handoff, []any{CmdHandoff, "256", "d1", "d2", "1"}},
		{handoff, []any{CmdHandoff, "-1", "d1", "d2", "1"}},
		{handoff, []any{CmdHandoff, "x", "d1", "d2", "1"}},
		{handoff, []any{CmdHandoff, "1", "", "d2", "1"}},
		{handoff, []any{CmdHandoff, "1", "d1", "d 2", "1"}},
		{handoff, []any{CmdHandoff, "1", "d1", "d1", "1"}},
		{handoff, []any{CmdHandoff, "1", "d1", "d2", "-1"}},
		{moveSlot, []any{CmdMoveSlot, "1"}},
		{moveSlot, []any{CmdMoveSlot, "1", "d1", "x"}},
		{moveSlot, []any{CmdMoveSlot, "300", "d1"}},
		{moveSlot, []any{CmdMoveSlot, "1", ""}},
		{cancelMove, []any{CmdCancelMove}},
		{cancelMove, []any{CmdCancelMove, "256"}},
		{cancelMove, []any{CmdCancelMove, "1", "2"}},
		{rebalance, []any{CmdRebalance, "4"}},
		{rebalance, []any{CmdRebalance, "-1", "0"}},
		{rebalance, []any{CmdRebalance, "257", "0"}},
		{rebalance, []any{CmdRebalance, "4", "yes"}},
		{rebalance, []any{CmdRebalance, "4", "2"}},
	} {
		if err := c.parse(ArgsBytes(c.args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("parse %q = %v, want ErrInvalid", c.args, err)
		}
	}
}

func handoff(a [][]byte) error    { _, err := ParseHandoff(a); return err }
func moveSlot(a [][]byte) error   { _, err := ParseMoveSlot(a); return err }
func cancelMove(a [][]byte) error { _, err := ParseCancelMove(a); return err }
func rebalance(a [][]byte) error  { _, err := ParseRebalance(a); return err }

func TestRebalanceReplyRoundTrip(t *testing.T) {
	for _, in := range []*RebalanceReply{
		{Epoch: 9, Moves: []SlotMove{}},
		{Epoch: 10, Moves: []SlotMove{{Slot: 0, From: "d1", To: "d2"}, {Slot: 255, From: "d1", To: "d3"}}, Started: true},
	} {
		b := in.AppendJSON(nil)
		for _, v := range []any{string(b), b} {
			out, err := ParseRebalanceReply(v)
			if err != nil || !reflect.DeepEqual(out, in) {
				t.Fatalf("round trip %s: got %+v, %v; want %+v", b, out, err, in)
			}
		}
	}
	if b := (&RebalanceReply{Epoch: 1}).AppendJSON(nil); string(b) != `{"epoch":1,"moves":[],"started":false}` {
		t.Fatalf("no moves encode as %s, want an empty array", b)
	}
	for _, v := range []any{nil, int64(1), "{", `{"epoch":-1}`} {
		if _, err := ParseRebalanceReply(v); err == nil {
			t.Errorf("ParseRebalanceReply(%#v) succeeded", v)
		}
	}
}
