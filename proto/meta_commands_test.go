package proto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestMetaJoinRoundTrip(t *testing.T) {
	in := &MetaJoin{NodeID: "meta-1", RPCAddr: "127.0.0.1:9700"}
	out, err := ParseMetaJoin(ArgsBytes(in.Args()))
	if err != nil {
		t.Fatalf("ParseMetaJoin: %v", err)
	}
	if *out != *in {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestParseMetaJoinRejects(t *testing.T) {
	for _, args := range [][]any{
		{CmdMetaJoin, "m1"},
		{CmdMetaJoin, "m1", "127.0.0.1:1", "extra"},
		{CmdMetaJoin, "", "127.0.0.1:1"},
		{CmdMetaJoin, "m 1", "127.0.0.1:1"},
		{CmdMetaJoin, "m1", ""},
		{CmdMetaJoin, "m1", "no-port"},
	} {
		if _, err := ParseMetaJoin(ArgsBytes(args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMetaJoin(%q) = %v, want ErrInvalid", args, err)
		}
	}
}

// readReply decodes the RESP subset a heartbeat reply uses into the values
// go-redis returns for it: int64, string, nil and []any.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("bad line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, err
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected type %q", line[0])
}

func TestHeartbeatReplyRoundTrip(t *testing.T) {
	for _, in := range []*HeartbeatReply{
		{Epoch: 0},
		{Epoch: 7},
		{Epoch: 42, Table: []byte(`{"epoch":42}`)},
		{Epoch: 1 << 40, Table: []byte{}},
		{Epoch: 3, MembersEpoch: 9, Sessions: []byte(`[{"id":"s1","addr":"h:1","kind":"session"}]`)},
		{Epoch: 3, Table: []byte(`{}`), MembersEpoch: 1, Sessions: []byte(`[]`)},
		{Epoch: 3, MembersEpoch: 2, Sessions: []byte{}},
		{Epoch: 4, MembersEpoch: 2, LeaseMs: 3000},
	} {
		raw := in.AppendRESP(nil)
		if !bytes.HasPrefix(raw, []byte("*5\r\n")) {
			t.Fatalf("reply %q is not a 5-element array", raw)
		}
		v, err := readReply(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("decode %q: %v", raw, err)
		}
		out, err := ParseHeartbeatReply(v)
		if err != nil {
			t.Fatalf("ParseHeartbeatReply(%q): %v", raw, err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Fatalf("round trip %q: got %+v, want %+v", raw, out, in)
		}
	}
}

// TestHeartbeatReplyOldForm: meta nodes built before the session list
// answered with [:epoch, $table] only.
func TestHeartbeatReplyOldForm(t *testing.T) {
	for raw, want := range map[string]*HeartbeatReply{
		"*2\r\n:5\r\n$-1\r\n":             {Epoch: 5},
		"*2\r\n:6\r\n$7\r\n{\"e\":6}\r\n": {Epoch: 6, Table: []byte(`{"e":6}`)},
	} {
		v, err := readReply(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("decode %q: %v", raw, err)
		}
		got, err := ParseHeartbeatReply(v)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseHeartbeatReply(%q) = %+v, %v; want %+v", raw, got, err, want)
		}
	}
	if got, err := ParseHeartbeatReply([]any{int64(1), []byte("t"), int64(2), []byte("s")}); err != nil ||
		string(got.Table) != "t" || string(got.Sessions) != "s" || got.MembersEpoch != 2 || got.LeaseMs != 0 {
		t.Fatalf("[]byte bulks, four elements (before the lease): %+v, %v", got, err)
	}
}

func TestParseHeartbeatReplyRejects(t *testing.T) {
	for _, v := range []any{
		nil,
		"x",
		[]any{int64(1)},
		[]any{int64(1), nil, int64(2)},
		[]any{int64(1), nil, int64(2), nil, nil},
		[]any{int64(1), nil, int64(2), nil, int64(-5)},
		[]any{int64(1), nil, int64(2), nil, int64(3), nil},
		[]any{"1", nil},
		[]any{int64(-1), nil},
		[]any{int64(1), int64(2)},
		[]any{int64(1), nil, int64(-2), nil},
		[]any{int64(1), nil, "2", nil},
		[]any{int64(1), nil, int64(2), int64(3)},
	} {
		if _, err := ParseHeartbeatReply(v); err == nil {
			t.Errorf("ParseHeartbeatReply(%#v) succeeded, want an error", v)
		}
	}
}

func TestNotLeaderAcrossRESP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:9700", ""} {
		wire := ToRESP(NotLeader(addr))
		err := FromRESP(wire)
		if !errors.Is(err, ErrNotLeader) {
			t.Fatalf("FromRESP(%q) = %v, want ErrNotLeader", wire, err)
		}
		got, ok := LeaderAddr(err)
		if !ok || got != addr {
			t.Fatalf("LeaderAddr(%q) = %q, %v; want %q, true", wire, got, ok, addr)
		}
	}
	if _, ok := LeaderAddr(ErrTimeout); ok {
		t.Fatal("LeaderAddr(ErrTimeout) reported a NOTLEADER error")
	}
}

func TestTableWaitRoundTrip(t *testing.T) {
	w := &TableWait{Epoch: 1 << 40, MembersEpoch: 3, WaitMs: 60000}
	if out, err := ParseTableWait(ArgsBytes(w.Args())); err != nil || !reflect.DeepEqual(out, w) {
		t.Fatalf("TableWait: got %+v, %v; want %+v", out, err, w)
	}
	for _, args := range [][]any{
		{CmdTableWait, "1", "2"},
		{CmdTableWait, "-1", "2", "10"},
		{CmdTableWait, "1", "x", "10"},
		{CmdTableWait, "1", "2", "-1"},
		{CmdTableWait, "1", "2", "60001"},
		{CmdTableWait, "1", "2", "10", "extra"},
	} {
		if _, err := ParseTableWait(ArgsBytes(args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTableWait(%v) = %v, want an ERR reply", args, err)
		}
	}
	raw := AppendTableWaitReply(nil, 9, 4)
	v, err := readReply(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if e, m, err := ParseTableWaitReply(v); err != nil || e != 9 || m != 4 {
		t.Fatalf("ParseTableWaitReply(%q) = %d, %d, %v", raw, e, m, err)
	}
	for _, v := range []any{nil, int64(1), []any{int64(1)}, []any{int64(1), "2"}, []any{int64(-1), int64(2)}} {
		if _, _, err := ParseTableWaitReply(v); err == nil {
			t.Errorf("ParseTableWaitReply(%#v) succeeded, want an error", v)
		}
	}
}
