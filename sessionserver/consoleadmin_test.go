package sessionserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// subscribe puts conns on id's topic in scope s, as SUBSCRIBE does, without
// starting the change feeds.
func subscribeConns(n *Node, id string, s proto.Scope, conns ...*clientConn) {
	sl := &n.subs.slots[slot.Of(id)]
	if sl.topics == nil {
		sl.topics = map[topicKey]*topic{}
	}
	t := &topic{id: id, scope: s, subs: map[*clientConn]struct{}{}}
	for _, c := range conns {
		t.subs[c] = struct{}{}
	}
	sl.topics[topicKey{id, s}] = t
}

// SLOTREG SUBS counts each dataInfoId's subscribers over scopes, only for
// ids with the prefix, at most limit of them (the first in order), and
// the path watches under the prefix.
func TestSlotregSubsCountsByPrefix(t *testing.T) {
	n := mustNode(t, Limits{})
	n.pwatch.init()
	c1, c2, c3 := mustConn(t, n), mustConn(t, n), mustConn(t, n)
	subscribeConns(n, "svc.a", proto.ScopeDatacenter, c1, c2)
	subscribeConns(n, "svc.a", proto.ScopeGlobal, c3)
	subscribeConns(n, "svc.b", proto.ScopeDatacenter, c1)
	subscribeConns(n, "other", proto.ScopeDatacenter, c1)
	subscribeConns(n, "svc.none", proto.ScopeDatacenter)
	n.pwatch.groups[pgroupKey{"/svc/x/", proto.ScopeDatacenter}] = &pgroup{subs: map[*clientConn]struct{}{c1: {}, c2: {}}}

	c := mustConn(t, n)
	got := do(t, c, "SLOTREG", "SUBS", "svc.", "10")
	r, err := proto.ParseSessionSubs(got[0])
	if err != nil {
		t.Fatalf("%#v: %v", got, err)
	}
	if r.Node != "s-test" || len(r.Subs) != 2 || r.Subs["svc.a"] != 3 || r.Subs["svc.b"] != 1 || r.Truncated {
		t.Errorf("svc.: %+v", r)
	}
	if r, _ = proto.ParseSessionSubs(do(t, c, "slotreg", "subs", "svc.", "1")[0]); len(r.Subs) != 1 || r.Subs["svc.a"] != 3 || !r.Truncated {
		t.Errorf("limit 1: %+v", r)
	}
	if r, _ = proto.ParseSessionSubs(do(t, c, "slotreg", "subs", "/svc", "10")[0]); len(r.Subs) != 0 || r.Watches["/svc/x/"] != 2 {
		t.Errorf("/svc: %+v", r)
	}
	if r, _ = proto.ParseSessionSubs(do(t, c, "slotreg", "subs", "", "10")[0]); len(r.Subs) != 3 {
		t.Errorf("every id: %+v", r)
	}
	for _, bad := range [][]string{
		{"slotreg", "subs", "svc."},
		{"slotreg", "subs", "svc.", "0"},
		{"slotreg", "subs", "svc.", "x"},
		{"slotreg", "subs", strings.Repeat("k", proto.MaxKeyLen+1), "1"},
	} {
		if got := do(t, c, bad...); len(got) != 1 || !strings.HasPrefix(errText(got[0]), "ERR") {
			t.Errorf("%.40q: %#v, want an ERR", bad, got)
		}
	}
}

// AUTH slotreg-cluster <secret> is meta's console's login: the cluster
// secret lets it in, a wrong one gets WRONGPASS, and with no cluster
// secret configured the user is refused; the client users' AUTH is as
// before.
func TestAuthClusterUser(t *testing.T) {
	auth, err := NewAuth("pw", "")
	if err != nil {
		t.Fatal(err)
	}
	auth.FailDelay = 0
	n := mustNode(t, Limits{})
	n.cfg.Auth = auth
	n.cfg.ClusterSecret = "s3cret"
	try := func(args ...string) (any, bool) {
		c := mustConn(t, n)
		c.authed = false
		got := do(t, c, args...)
		return got[0], c.authed
	}
	if got, authed := try("AUTH", proto.ClusterUser, "s3cret"); got != "OK" || !authed {
		t.Errorf("right secret: %#v authed=%v", got, authed)
	}
	if got, authed := try("AUTH", proto.ClusterUser, "s3creT"); errText(got) != replyWrongPass || authed {
		t.Errorf("wrong secret: %#v authed=%v", got, authed)
	}
	if got, authed := try("AUTH", proto.ClusterUser, "pw"); errText(got) != replyWrongPass || authed {
		t.Errorf("the client password as the cluster user: %#v authed=%v", got, authed)
	}
	if got, authed := try("AUTH", "pw"); got != "OK" || !authed {
		t.Errorf("client password: %#v authed=%v", got, authed)
	}
	if got, authed := try("AUTH", "s3cret"); errText(got) != replyWrongPass || authed {
		t.Errorf("the secret as the default user's password: %#v authed=%v", got, authed)
	}
	if got, authed := try("HELLO", "3", "AUTH", proto.ClusterUser, "s3cret"); authed == false {
		t.Errorf("HELLO AUTH with the secret: %#v", got)
	}

	// No cluster secret: the user is refused whatever it sends.
	n.cfg.ClusterSecret = ""
	for _, pass := range []string{"", "s3cret", "pw"} {
		if got, authed := try("AUTH", proto.ClusterUser, pass); errText(got) != replyWrongPass || authed {
			t.Errorf("no cluster secret, %q: %#v authed=%v", pass, got, authed)
		}
	}

	// A session without client passwords answers AUTH as before, but
	// takes the cluster user's AUTH when it has a cluster secret.
	n.cfg.Auth = nil
	if got, _ := try("AUTH", "pw"); errText(got) != replyNoPassword {
		t.Errorf("no passwords, AUTH pw: %#v", got)
	}
	if got, _ := try("AUTH", proto.ClusterUser, "s3cret"); errText(got) != replyNoPassword {
		t.Errorf("no passwords, no secret: %#v", got)
	}
	n.cfg.ClusterSecret = "s3cret"
	if got, _ := try("AUTH", proto.ClusterUser, "s3cret"); got != "OK" {
		t.Errorf("no passwords, the secret: %#v", got)
	}
}

func TestUsersFileReservesTheClusterUser(t *testing.T) {
	f := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(f, []byte("alice pw\n"+proto.ClusterUser+" x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuth("", f); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("NewAuth: %v, want the name refused as reserved", err)
	}
}
