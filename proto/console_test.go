package proto

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func argsOf(a []any) [][]byte {
	out := make([][]byte, len(a))
	for i, x := range a {
		out[i] = fmt.Append(nil, x)
	}
	return out
}

func TestScanBuildParse(t *testing.T) {
	for _, s := range []Scan{{Prefix: "svc.", Limit: 1}, {Prefix: "", Limit: MaxScanLimit}, {Prefix: "/a/b", Limit: 20}} {
		got, err := ParseDScan(argsOf(s.DScanArgs()))
		if err != nil || !reflect.DeepEqual(*got, s) {
			t.Errorf("DSCAN %+v: %+v %v", s, got, err)
		}
		got, err = ParseSubs(argsOf(s.SubsArgs()))
		if err != nil || !reflect.DeepEqual(*got, s) {
			t.Errorf("SLOTREG SUBS %+v: %+v %v", s, got, err)
		}
	}
	for _, bad := range [][]any{
		{CmdDScan, "a"},
		{CmdDScan, "a", "0"},
		{CmdDScan, "a", "1001"},
		{CmdDScan, "a", "-1"},
		{CmdDScan, "a", "x"},
		{CmdDScan, strings.Repeat("k", MaxKeyLen+1), "1"},
	} {
		if _, err := ParseDScan(argsOf(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := ParseSubs(argsOf([]any{CmdSlotreg, SubSubs, "a"})); !errors.Is(err, ErrInvalid) {
		t.Errorf("SUBS without a limit: %v", err)
	}
}

func TestLockListBuildParse(t *testing.T) {
	if l, err := ParseLockList(argsOf((&LockList{}).Args())); err != nil || l.Limit != MaxScanLimit {
		t.Errorf("no limit: %+v %v", l, err)
	}
	if l, err := ParseLockList(argsOf((&LockList{Limit: 7}).Args())); err != nil || l.Limit != 7 {
		t.Errorf("limit 7: %+v %v", l, err)
	}
	for _, bad := range [][]any{{CmdMLockList, "0"}, {CmdMLockList, "1001"}, {CmdMLockList, "x"}, {CmdMLockList, "1", "2"}} {
		if _, err := ParseLockList(argsOf(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestConsoleReplies(t *testing.T) {
	r, err := ParseScanReply(`{"node":"d1","items":[{"dataInfoId":"a","slot":3,"version":9,"publishers":2,"sample":[{"registerId":"r","data":"x"}]}],"truncated":true}`)
	if err != nil || r.Node != "d1" || len(r.Items) != 1 || r.Items[0].Sample[0].Data != "x" || !r.Truncated {
		t.Errorf("scan reply: %+v %v", r, err)
	}
	if _, err := ParseScanReply(`{"items":[{"slot":256}]}`); err == nil {
		t.Error("slot 256 accepted")
	}
	if _, err := ParseScanReply(int64(1)); err == nil {
		t.Error("an integer accepted as a DSCAN reply")
	}
	s, err := ParseSessionSubs([]byte(`{"node":"s1","subs":{"a":2},"watches":{"/x/":1}}`))
	if err != nil || s.Subs["a"] != 2 || s.Watches["/x/"] != 1 {
		t.Errorf("subs reply: %+v %v", s, err)
	}
	if _, err := ParseSessionSubs(`{"subs":{"a":-1}}`); err == nil {
		t.Error("a negative count accepted")
	}
	l, err := ParseLockListReply(`{"locks":[{"name":"m","owner":"w","token":4,"ttlMs":10,"waiters":1}]}`)
	if err != nil || len(l.Locks) != 1 || l.Locks[0].Token != 4 || l.Locks[0].Waiters != 1 {
		t.Errorf("lock list reply: %+v %v", l, err)
	}
}

func TestClipData(t *testing.T) {
	if s, cut := ClipData("short"); s != "short" || cut {
		t.Errorf("short: %q %v", s, cut)
	}
	long := strings.Repeat("é", ScanDataLen) // 2 bytes each
	s, cut := ClipData(long)
	if !cut || len(s) > ScanDataLen || !utf8.ValidString(s) || !strings.HasPrefix(long, s) {
		t.Errorf("long: %d bytes, cut %v, valid %v", len(s), cut, utf8.ValidString(s))
	}
}
