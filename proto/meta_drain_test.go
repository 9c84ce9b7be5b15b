package proto

import (
	"errors"
	"reflect"
	"testing"
)

func TestDrainCommandsRoundTrip(t *testing.T) {
	for _, id := range []string{"d1", "data-17", "10.0.0.1:7000"} {
		d := &Drain{NodeID: id}
		if out, err := ParseDrain(ArgsBytes(d.Args())); err != nil || !reflect.DeepEqual(out, d) {
			t.Fatalf("Drain round trip: got %+v, %v; want %+v", out, err, d)
		}
		u := &Undrain{NodeID: id}
		if out, err := ParseUndrain(ArgsBytes(u.Args())); err != nil || !reflect.DeepEqual(out, u) {
			t.Fatalf("Undrain round trip: got %+v, %v; want %+v", out, err, u)
		}
	}
}

func TestDrainCommandsReject(t *testing.T) {
	for _, c := range []struct {
		parse func([][]byte) error
		args  []any
	}{
		{drain, []any{CmdDrain}},
		{drain, []any{CmdDrain, "d1", "d2"}},
		{drain, []any{CmdDrain, ""}},
		{drain, []any{CmdDrain, "d 1"}},
		{undrain, []any{CmdUndrain}},
		{undrain, []any{CmdUndrain, "d1", "x"}},
		{undrain, []any{CmdUndrain, "d\n1"}},
	} {
		if err := c.parse(ArgsBytes(c.args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("parse %q = %v, want ErrInvalid", c.args, err)
		}
	}
}

func drain(a [][]byte) error   { _, err := ParseDrain(a); return err }
func undrain(a [][]byte) error { _, err := ParseUndrain(a); return err }
