package proto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestConfigCommandsRoundTrip(t *testing.T) {
	set := &ConfSet{Key: "app/db.url", Value: "postgres://h/db\nline two ünï"}
	if out, err := ParseConfSet(ArgsBytes(set.Args())); err != nil || !reflect.DeepEqual(out, set) {
		t.Fatalf("ConfSet: got %+v, %v; want %+v", out, err, set)
	}
	empty := &ConfSet{Key: "k", Value: ""}
	if out, err := ParseConfSet(ArgsBytes(empty.Args())); err != nil || !reflect.DeepEqual(out, empty) {
		t.Fatalf("ConfSet empty value: got %+v, %v", out, err)
	}
	for _, name := range []string{CmdConfGet, CmdConfDel, CmdConfHistory} {
		k := &ConfKey{Cmd: name, Key: "a.b"}
		if out, err := ParseConfKey(name, ArgsBytes(k.Args())); err != nil || !reflect.DeepEqual(out, k) {
			t.Fatalf("%s: got %+v, %v", name, out, err)
		}
	}
	for _, p := range []string{"", "app/"} {
		l := &ConfList{Prefix: p}
		if out, err := ParseConfList(ArgsBytes(l.Args())); err != nil || !reflect.DeepEqual(out, l) {
			t.Fatalf("ConfList %q: got %+v, %v", p, out, err)
		}
	}
	w := &ConfWatch{Since: 1 << 40, WaitMs: 5000}
	if out, err := ParseConfWatch(ArgsBytes(w.Args())); err != nil || !reflect.DeepEqual(out, w) {
		t.Fatalf("ConfWatch: got %+v, %v", out, err)
	}
}

func TestConfigCommandsReject(t *testing.T) {
	big := strings.Repeat("v", MaxConfigValueLen+1)
	for _, c := range []struct {
		parse func([][]byte) error
		args  []any
	}{
		{confSet, []any{CmdConfSet, "k"}},
		{confSet, []any{CmdConfSet, "k", "v", "x"}},
		{confSet, []any{CmdConfSet, "", "v"}},
		{confSet, []any{CmdConfSet, "a b", "v"}},
		{confSet, []any{CmdConfSet, "k\n", "v"}},
		{confSet, []any{CmdConfSet, strings.Repeat("k", MaxConfigKeyLen+1), "v"}},
		{confSet, []any{CmdConfSet, "k", big}},
		{confSet, []any{CmdConfSet, "k", "\xff\xfe"}},
		{confGet, []any{CmdConfGet}},
		{confGet, []any{CmdConfGet, "k", "x"}},
		{confGet, []any{CmdConfGet, "ü"}},
		{confList, []any{CmdConfList, "a", "b"}},
		{confWatch, []any{CmdConfWatch, "1"}},
		{confWatch, []any{CmdConfWatch, "-1", "10"}},
		{confWatch, []any{CmdConfWatch, "1", "-5"}},
		{confWatch, []any{CmdConfWatch, "1", "600001"}},
	} {
		if err := c.parse(ArgsBytes(c.args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("parse %.60q = %v, want ErrInvalid", c.args, err)
		}
	}
	// The limit itself is allowed.
	if _, err := ParseConfSet(ArgsBytes([]any{CmdConfSet, "k", big[1:]})); err != nil {
		t.Fatalf("a value of exactly %d bytes: %v", MaxConfigValueLen, err)
	}
}

func confSet(a [][]byte) error   { _, err := ParseConfSet(a); return err }
func confGet(a [][]byte) error   { _, err := ParseConfKey(CmdConfGet, a); return err }
func confList(a [][]byte) error  { _, err := ParseConfList(a); return err }
func confWatch(a [][]byte) error { _, err := ParseConfWatch(a); return err }

func TestConfigEntryPushJSON(t *testing.T) {
	for _, e := range []ConfigEntry{
		{Key: "k", Version: 7, Value: `{"a":"<b>"}` + "\n\t\u2028ü"},
		{Key: "gone", Version: 1 << 50, Deleted: true},
	} {
		var out ConfigEntry
		if err := json.Unmarshal(e.AppendPushJSON(nil), &out); err != nil {
			t.Fatalf("push JSON %q: %v", e.AppendPushJSON(nil), err)
		}
		if out != e {
			t.Fatalf("push JSON round trip: got %+v, want %+v", out, e)
		}
	}
}

func TestConfWatchReplyRoundTrip(t *testing.T) {
	in := &ConfWatchReply{Rev: 12, Entries: []ConfigEntry{{Key: "a", Version: 11, Value: "x"}, {Key: "b", Version: 12, Deleted: true}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseConfWatchReply(string(b))
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("got %+v, %v; want %+v", out, err, in)
	}
	if _, err := ParseConfWatchReply(int64(3)); err == nil {
		t.Fatal("an integer parsed as a watch reply")
	}
	e, ok, err := ParseConfGetReply("k", []any{int64(9), "val"})
	if err != nil || !ok || e != (ConfigEntry{Key: "k", Version: 9, Value: "val"}) {
		t.Fatalf("CONFGET reply: %+v %v %v", e, ok, err)
	}
	if _, ok, err := ParseConfGetReply("k", nil); ok || err != nil {
		t.Fatalf("CONFGET nil reply: ok %v err %v", ok, err)
	}
}

func TestLockCommandsRoundTrip(t *testing.T) {
	l := &Lock{Name: "job/17", Owner: "worker-3", TTLMs: 30000}
	if out, err := ParseLock(ArgsBytes(l.Args())); err != nil || !reflect.DeepEqual(out, l) {
		t.Fatalf("Lock: got %+v, %v", out, err)
	}
	u := &Unlock{Name: "job/17", Owner: "worker-3"}
	if out, err := ParseUnlock(ArgsBytes(u.Args())); err != nil || !reflect.DeepEqual(out, u) {
		t.Fatalf("Unlock: got %+v, %v", out, err)
	}
	for _, name := range []string{CmdLockInfo, CmdMLockInfo} {
		i := &LockInfoCmd{Cmd: name, Name: "job/17"}
		if out, err := ParseLockInfo(name, ArgsBytes(i.Args())); err != nil || !reflect.DeepEqual(out, i) {
			t.Fatalf("%s: got %+v, %v", name, out, err)
		}
	}
	for _, m := range []*MLock{
		{Name: "n", Owner: "o", TTLMs: MinLockTTL, Session: "session1", Conn: "abc.7"},
		{Name: "n", Owner: "o", TTLMs: MaxLockTTL},
	} {
		if out, err := ParseMLock(ArgsBytes(m.Args())); err != nil || !reflect.DeepEqual(out, m) {
			t.Fatalf("MLock: got %+v, %v; want %+v", out, err, m)
		}
	}
	for _, m := range []*MUnlock{{Name: "n", Owner: "o", Conn: "abc.7"}, {Name: "n", Owner: "o"}} {
		if out, err := ParseMUnlock(ArgsBytes(m.Args())); err != nil || !reflect.DeepEqual(out, m) {
			t.Fatalf("MUnlock: got %+v, %v; want %+v", out, err, m)
		}
	}
}

func TestLockCommandsReject(t *testing.T) {
	for _, c := range []struct {
		parse func([][]byte) error
		args  []any
	}{
		{lock, []any{CmdLock, "n", "o"}},
		{lock, []any{CmdLock, "n", "o", "1000", "x"}},
		{lock, []any{CmdLock, "n", "o", "99"}},
		{lock, []any{CmdLock, "n", "o", "86400001"}},
		{lock, []any{CmdLock, "n", "o", "1s"}},
		{lock, []any{CmdLock, "n", "o", "-5"}},
		{lock, []any{CmdLock, "", "o", "1000"}},
		{lock, []any{CmdLock, "n", "", "1000"}},
		{lock, []any{CmdLock, strings.Repeat("n", MaxLockNameLen+1), "o", "1000"}},
		{unlock, []any{CmdUnlock, "n"}},
		{unlock, []any{CmdUnlock, "n", ""}},
		{mlock, []any{CmdMLock, "n", "o", "1000", "s"}},
		{mlock, []any{CmdMLock, "n", "o", "1000", "s", "c d"}},
		{munlock, []any{CmdMUnlock, "n", "o"}},
		{lockInfo, []any{CmdLockInfo}},
		{lockInfo, []any{CmdLockInfo, ""}},
	} {
		if err := c.parse(ArgsBytes(c.args)); !errors.Is(err, ErrInvalid) {
			t.Errorf("parse %q = %v, want ErrInvalid", c.args, err)
		}
	}
}

func lock(a [][]byte) error     { _, err := ParseLock(a); return err }
func unlock(a [][]byte) error   { _, err := ParseUnlock(a); return err }
func mlock(a [][]byte) error    { _, err := ParseMLock(a); return err }
func munlock(a [][]byte) error  { _, err := ParseMUnlock(a); return err }
func lockInfo(a [][]byte) error { _, err := ParseLockInfo(CmdLockInfo, a); return err }

func TestLockRepliesRoundTrip(t *testing.T) {
	for _, in := range []*LockReply{
		{Granted: true, Token: 1},
		{Granted: true, Token: 1 << 40, Holder: "me", TTLMs: 500},
		{Granted: false, Token: 9, Holder: "other", TTLMs: 29_000},
	} {
		v, err := readReply(bufio.NewReader(bytes.NewReader(in.AppendRESP(nil))))
		if err != nil {
			t.Fatal(err)
		}
		out, err := ParseLockReply(v)
		if err != nil || !reflect.DeepEqual(out, in) {
			t.Fatalf("LockReply: got %+v, %v; want %+v", out, err, in)
		}
	}
	in := &LockInfo{Owner: "w1", Token: 42, TTLMs: 1234}
	v, err := readReply(bufio.NewReader(bytes.NewReader(in.AppendRESP(nil))))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseLockInfoReply(v)
	if err != nil || !reflect.DeepEqual(out, in) {
		t.Fatalf("LockInfo: got %+v, %v; want %+v", out, err, in)
	}
	if out, err := ParseLockInfoReply(nil); out != nil || err != nil {
		t.Fatalf("nil LOCKINFO reply: %+v, %v", out, err)
	}
}
