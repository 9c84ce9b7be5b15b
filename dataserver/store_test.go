package dataserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

func reg(id, rid, data, conn string, ttl uint32) *proto.Op {
	return &proto.Op{Type: proto.OpRegister, DataInfoID: id, RegisterID: rid, Data: data, ConnID: conn, TTL: ttl}
}

func TestStoreVersionsRiseAndEntriesSort(t *testing.T) {
	s := newSlotStore(2, 16)
	var last uint64
	for _, rid := range []string{"c", "a", "b", "a"} {
		v, changed, _ := s.apply("s1", reg("svc", rid, "x-"+rid, "c1", 0), 0)
		if !changed || v <= last || v>>32 != 2 {
			t.Fatalf("register %s: version %x after %x (changed=%v)", rid, v, last, changed)
		}
		last = v
	}
	d := s.snapshot("svc", "")
	if d.Version != last || len(d.Entries) != 3 || d.Entries[0].RegisterID != "a" || d.Entries[2].RegisterID != "c" {
		t.Fatalf("snapshot %+v", d)
	}
	if s.publishers != 3 {
		t.Fatalf("publishers = %d", s.publishers)
	}
	if e := s.snapshot("none", ""); e.Version != 0 || len(e.Entries) != 0 {
		t.Fatalf("missing datum: %+v", e)
	}
}

func TestStoreOwnerCheckedUnregister(t *testing.T) {
	s := newSlotStore(1, 16)
	s.apply("s1", reg("svc", "r", "old", "c1", 0), 0)
	s.apply("s1", reg("svc", "r", "new", "c2", 0), 0) // c2 took it over
	un := &proto.Op{Type: proto.OpUnregister, DataInfoID: "svc", RegisterID: "r", ConnID: "c1"}
	if res, changed, _ := s.apply("s1", un, 0); res != 0 || changed {
		t.Fatal("c1 closing removed c2's publisher")
	}
	un.ConnID = "c2"
	if res, _, _ := s.apply("s2", un, 0); res != 0 {
		t.Fatal("another session's c2 removed it")
	}
	if res, _, _ := s.apply("s1", un, 0); res != 1 {
		t.Fatal("owner could not remove it")
	}
	if res, _, _ := s.apply("s1", un, 0); res != 0 {
		t.Fatal("second remove reported success")
	}
	if len(s.snapshot("svc", "").Entries) != 0 || s.publishers != 0 {
		t.Fatal("publisher still there")
	}
}

func TestStoreTTLExpiryAndRenew(t *testing.T) {
	s := newSlotStore(1, 16)
	const sec = int64(1e9)
	s.apply("s1", reg("svc", "t", "d", "", 2), 0)
	s.apply("s1", reg("svc", "b", "d", "c1", 0), 0)
	if got := s.expire(sec); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	if res, _, _ := s.apply("s1", &proto.Op{Type: proto.OpRenew, DataInfoID: "svc", RegisterID: "t"}, sec); res != 1 {
		t.Fatal("renew failed")
	}
	if res, _, _ := s.apply("s1", &proto.Op{Type: proto.OpRenew, DataInfoID: "svc", RegisterID: "b"}, sec); res != 0 {
		t.Fatal("renew of a connection-bound publisher succeeded")
	}
	if got := s.expire(2 * sec); len(got) != 0 {
		t.Fatalf("expired despite renewal: %v", got)
	}
	if got := s.expire(3*sec + 1); len(got) != 1 || got[0] != "svc" {
		t.Fatalf("expire = %v", got)
	}
	d := s.snapshot("svc", "")
	if len(d.Entries) != 1 || d.Entries[0].RegisterID != "b" {
		t.Fatalf("after expiry: %+v", d)
	}
	if s.expiry.Len() != 0 {
		t.Fatalf("expiry index holds %d keys", s.expiry.Len())
	}
}

func TestStoreDropSession(t *testing.T) {
	s := newSlotStore(1, 16)
	s.apply("s1", reg("a", "1", "", "c1", 0), 0)
	s.apply("s1", reg("a", "2", "", "c2", 0), 0)
	s.apply("s1", reg("b", "1", "", "", 30), 0) // TTL: outlives its session
	s.apply("s2", reg("b", "2", "", "c9", 0), 0)
	changed := s.dropSession("s1")
	if len(changed) != 1 || changed[0] != "a" {
		t.Fatalf("changed = %v", changed)
	}
	if len(s.snapshot("a", "").Entries) != 0 || len(s.snapshot("b", "").Entries) != 2 {
		t.Fatalf("a=%+v b=%+v", s.snapshot("a", ""), s.snapshot("b", ""))
	}
}

func TestOpLog(t *testing.T) {
	l := newOpLog(4, 1<<20)
	if got, ok := l.since(0, 0); !ok || len(got) != 0 {
		t.Fatal("empty log")
	}
	for i := uint64(1); i <= 6; i++ {
		l.append(i, logEntry{own: nobody, typ: proto.OpTouch})
	}
	if l.len() != 4 {
		t.Fatalf("len = %d", l.len())
	}
	if _, ok := l.since(1, 0); ok {
		t.Fatal("reader at seq 1 should have fallen off (oldest is 3)")
	}
	got, ok := l.since(2, 0)
	if !ok || len(got) != 4 || got[0].Seq != 3 || got[3].Seq != 6 {
		t.Fatalf("since(2) = %+v %v", got, ok)
	}
	got, _ = l.since(4, 1)
	if len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("since(4, max 1) = %+v", got)
	}
	if got, ok := l.since(6, 0); !ok || len(got) != 0 {
		t.Fatalf("since(last) = %+v", got)
	}
}

// The ring grows as entries come, keeps their order across growth and
// wrap-around, and drops the oldest once over its byte bound.
func TestOpLogGrowsAndBoundsBytes(t *testing.T) {
	l := newOpLog(200, 1<<20)
	d := &datum{id: "svc"}
	for i := uint64(1); i <= 500; i++ {
		l.append(i, logEntry{d: d, kv: makeKV(fmt.Sprint(i), ""), own: nobody, typ: proto.OpRenew})
	}
	if l.len() != 200 || len(l.buf) != 200 {
		t.Fatalf("len %d, ring %d", l.len(), len(l.buf))
	}
	got, ok := l.since(300, 0)
	if !ok || len(got) != 200 {
		t.Fatalf("since(300): %d entries, ok=%v", len(got), ok)
	}
	for i, e := range got {
		if e.Seq != uint64(301+i) || e.Op.RegisterID != fmt.Sprint(301+i) || e.Op.DataInfoID != "svc" {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}

	b := newOpLog(1000, 100)
	for i := uint64(1); i <= 10; i++ {
		b.append(i, logEntry{d: d, kv: makeKV("r", strings.Repeat("x", 30)), own: nobody, typ: proto.OpRegister})
	}
	// 32 bytes an entry: three fit in 100.
	if b.len() != 3 || b.bytes != 96 {
		t.Fatalf("len %d bytes %d", b.len(), b.bytes)
	}
	if _, ok := b.since(6, 0); ok {
		t.Fatal("a reader before the byte-bounded ring must take a snapshot")
	}
	if got, ok := b.since(7, 0); !ok || len(got) != 3 || got[2].Seq != 10 {
		t.Fatalf("since(7) = %+v %v", got, ok)
	}
	// An entry over the bound alone is still kept: the log never empties.
	b.append(11, logEntry{d: d, kv: makeKV("r", strings.Repeat("x", 500)), own: nobody, typ: proto.OpRegister})
	if got, ok := b.since(10, 0); !ok || len(got) != 1 || len(got[0].Op.Data) != 500 {
		t.Fatalf("since(10) after a big entry = %d entries, ok=%v", len(got), ok)
	}
}

func TestKVRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 300, proto.MaxKeyLen} {
		rid := strings.Repeat("r", n)
		for _, data := range []string{"", "d", strings.Repeat("\x80", 200)} {
			if r, d := splitKV(makeKV(rid, data)); r != rid || d != data {
				t.Fatalf("rid %d bytes, data %q: got %d bytes, %q", n, data, len(r), d)
			}
		}
	}
}

// The log gives followers back every op as it was applied, and a
// follower's own log (which it serves once promoted) gives the same.
func TestLogEntriesAreTheOps(t *testing.T) {
	leader := newSlotStore(2, 100)
	type w struct {
		session string
		op      *proto.Op
	}
	ws := []w{
		{"s1", reg("a", "1", "x", "c1", 0)},
		{"s1", reg("a", "2", "y", "c1", 0)},
		{"s2", reg("a", "t", "ttl", "c7", 5)},
		{"s2", &proto.Op{Type: proto.OpRenew, DataInfoID: "a", RegisterID: "t", ConnID: "c7"}},
		{"s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "1", ConnID: "c1"}},
		{"s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "2", ConnID: "c1"}}, // c1's last
		{"s3", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "t"}},
	}
	for _, x := range ws {
		if res, _, _ := leader.apply(x.session, x.op, 0); res == 0 {
			t.Fatalf("%+v was refused", x.op)
		}
	}
	leader.touch()
	es, _ := leader.log.since(0, 0)
	if len(es) != len(ws)+1 {
		t.Fatalf("%d entries", len(es))
	}
	for i, x := range ws {
		if es[i].Seq != uint64(i+1) || es[i].Session != x.session || es[i].Op != *x.op {
			t.Fatalf("entry %d = %+v, want %s %+v", i, es[i], x.session, *x.op)
		}
	}
	if last := es[len(ws)]; last.Op.Type != proto.OpTouch || last.Session != "" || last.Version != 2<<32|uint64(len(ws)+1) {
		t.Fatalf("touch entry %+v", last)
	}
	follower := newSlotStore(2, 100)
	for i := range es {
		follower.replay(&es[i], 0)
	}
	again, _ := follower.log.since(0, 0)
	if fmt.Sprint(again) != fmt.Sprint(es) {
		t.Fatalf("follower log\n%+v\nleader log\n%+v", again, es)
	}
	if len(leader.owners) != 0 || len(follower.owners) != 0 {
		t.Fatalf("owners left with no publisher: %d, %d", len(leader.owners), len(follower.owners))
	}
}

func TestStoreLogsEveryChange(t *testing.T) {
	s := newSlotStore(1, 100)
	s.apply("s1", reg("a", "1", "", "c1", 0), 0)
	s.apply("s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "1"}, 0)
	s.apply("s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "1"}, 0) // no-op
	got, _ := s.log.since(0, 0)
	if len(got) != 2 || got[0].Op.Type != proto.OpRegister || got[1].Op.Type != proto.OpUnregister || got[1].Seq != 2 {
		t.Fatalf("log = %+v", got)
	}
}

func BenchmarkStoreRegister(b *testing.B) {
	s := newSlotStore(1, 4096)
	op := reg("svc", "r", "10.0.0.1:80", "c1", 0)
	b.ReportAllocs()
	for b.Loop() {
		s.apply("s1", op, 0)
	}
}

// A follower replaying the leader's log ends with the same datums,
// versions and digests; so does one that installs a snapshot.
func TestReplayAndSnapshotMatchTheLeader(t *testing.T) {
	leader := newSlotStore(3, 1000)
	ops := []struct {
		session string
		op      *proto.Op
	}{
		{"s1", reg("a", "1", "x", "c1", 0)},
		{"s1", reg("a", "2", "y", "c2", 0)},
		{"s2", reg("b", "1", "z", "c9", 0)},
		{"s1", reg("b", "t", "ttl", "", 30)},
		{"s1", &proto.Op{Type: proto.OpRenew, DataInfoID: "b", RegisterID: "t"}},
		{"s1", &proto.Op{Type: proto.OpUnregister, DataInfoID: "a", RegisterID: "1", ConnID: "c1"}},
		{"s1", reg("a", "2", "y2", "c2", 0)},
	}
	for _, o := range ops {
		leader.apply(o.session, o.op, 0)
	}
	leader.touch()
	follower := newSlotStore(3, 1000)
	es, ok := leader.log.since(0, 0)
	if !ok {
		t.Fatal("log lost entries")
	}
	for i := range es {
		follower.replay(&es[i], 0)
	}
	snapped := newSlotStore(0, 1000)
	snapped.install(leader.dump(0), 0)
	for _, f := range []*slotStore{follower, snapped} {
		if f.seq != leader.seq || f.leaderEpoch != leader.leaderEpoch || f.publishers != leader.publishers {
			t.Fatalf("seq %d/%d epoch %d/%d pubs %d/%d", f.seq, leader.seq, f.leaderEpoch, leader.leaderEpoch, f.publishers, leader.publishers)
		}
		for _, id := range []string{"a", "b"} {
			if got, want := f.snapshot(id, ""), leader.snapshot(id, ""); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: follower %+v leader %+v", id, got, want)
			}
		}
		if fmt.Sprint(f.digests["s1"], f.digests["s2"]) != fmt.Sprint(leader.digests["s1"], leader.digests["s2"]) {
			t.Fatal("digests differ")
		}
		if f.expiry.Len() != 1 {
			t.Fatalf("expiry index has %d keys", f.expiry.Len())
		}
	}
	// The touch raised every datum to one new version.
	if a, b := leader.snapshot("a", "").Version, leader.snapshot("b", "").Version; a != b || a != 3<<32|uint64(leader.seq) {
		t.Fatalf("after touch: a=%x b=%x seq=%d", a, b, leader.seq)
	}
	// A follower that asks past a reset log gets told to take a snapshot.
	if _, ok := snapped.log.since(0, 0); ok {
		t.Fatal("a snapshot-installed log claims to hold entries before its base")
	}
}

// The digest a data node keeps per session is the one a session computes
// from the same publishers.
func TestDigestsMatchWhatASessionComputes(t *testing.T) {
	s := newSlotStore(1, 100)
	s.apply("s1", reg("a", "1", "x", "c1", 0), 0)
	s.apply("s1", reg("a", "2", "y", "c2", 0), 0)
	s.apply("s1", reg("a", "3", "ttl", "", 10), 0) // TTL: not in the digest
	s.apply("s1", reg("a", "2", "y2", "c2", 0), 0)
	var want proto.Digest
	want.Add(proto.PubHash("a", "1", "x", "c1"))
	want.Add(proto.PubHash("a", "2", "y2", "c2"))
	if *s.digests["s1"] != want {
		t.Fatalf("digest %+v, want %+v", *s.digests["s1"], want)
	}
}

func TestSyncMakesTheSessionsSetExact(t *testing.T) {
	s := newSlotStore(1, 100)
	s.apply("s1", reg("a", "stale", "x", "c1", 0), 0)
	s.apply("s1", reg("a", "changed", "old", "c1", 0), 0)
	s.apply("s2", reg("a", "other", "o", "c5", 0), 0)
	changed := s.sync("s1", "", []proto.SyncPub{
		{DataInfoID: "a", RegisterID: "changed", Data: "new", Conn: "c1"},
		{DataInfoID: "b", RegisterID: "missing", Data: "m", Conn: "c2"},
	})
	if fmt.Sprint(changed) != "[a b]" {
		t.Fatalf("changed = %v", changed)
	}
	if got := fmt.Sprint(s.snapshot("a", "").Entries, s.snapshot("b", "").Entries); got != "[{changed new  } {other o  }] [{missing m  }]" {
		t.Fatalf("after sync: %s", got)
	}
	if again := s.sync("s1", "", []proto.SyncPub{
		{DataInfoID: "a", RegisterID: "changed", Data: "new", Conn: "c1"},
		{DataInfoID: "b", RegisterID: "missing", Data: "m", Conn: "c2"},
	}); len(again) != 0 {
		t.Fatalf("a second identical sync changed %v", again)
	}
}
