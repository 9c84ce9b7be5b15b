package sessionserver

import (
	"strings"
	"testing"

	"github.com/slotreg/slotreg/proto"
)

// Every row and subcommand refuses a call with too few words (and, for
// an exact arity, too many) with the arity error the table implies, so
// the arity COMMAND reports is the one the session applies.
func TestTableArityIsEnforced(t *testing.T) {
	n := mustNode(t, Limits{})
	c := mustConn(t, n)
	var all []*command
	for _, r := range commands.rows {
		all = append(all, r)
		all = append(all, r.subs...)
	}
	for _, cmd := range all {
		words := strings.Split(cmd.Name, "|")
		var bad [][]string
		min := cmd.Arity
		if min < 0 {
			min = -min
		}
		if min > len(words) {
			bad = append(bad, words) // too few
		}
		if cmd.Arity > 0 {
			long := append(append([]string{}, words...), make([]string, cmd.Arity-len(words)+1)...)
			for i := len(words); i < len(long); i++ {
				long[i] = "x"
			}
			bad = append(bad, long) // one too many
		}
		for _, args := range bad {
			got := do(t, c, args...)
			want := "ERR wrong number of arguments for '" + cmd.Name + "' command"
			if strings.HasPrefix(cmd.Name, "slotreg") {
				want = "ERR usage: SLOTREG DIGESTS | SLOTREG MEMORY [GC] | SLOTREG SUBS prefix limit"
			}
			if len(got) != 1 || errText(got[0]) != want {
				t.Errorf("%q: got %#v, want %q", args, got, want)
			}
		}
	}
}

// Replies of the commands a session answers by itself, and the errors of
// bad input, through the table as a client meets them.
func TestSessionCommands(t *testing.T) {
	n := mustNode(t, Limits{MaxKeySize: 8, MaxDataSize: 16})
	for _, tc := range []struct {
		args []string
		want any // a reply, or an error's text prefix as respErr
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"ping", "hi"}, "hi"},
		{[]string{"PING", "a", "b"}, respErr("ERR wrong number of arguments for 'ping' command")},
		{[]string{"ECHO", "x"}, "x"},
		{[]string{"ECHO"}, respErr("ERR wrong number of arguments for 'echo' command")},
		{[]string{"SELECT", "0"}, "OK"},
		{[]string{"SELECT", "1"}, respErr("ERR DB index is out of range")},
		{[]string{"SELECT", "zero"}, respErr("ERR DB index is out of range")},
		{[]string{"CLIENT", "SETNAME", "n1"}, "OK"},
		{[]string{"CLIENT", "GETNAME"}, "n1"},
		{[]string{"client", "id"}, int64(7)},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "OK"},
		{[]string{"CLIENT", "KILL"}, respErr("ERR unknown subcommand 'KILL' for 'client'")},
		{[]string{"CLIENT"}, respErr("ERR wrong number of arguments for 'client' command")},
		{[]string{"COMMAND", "COUNT"}, int64(len(commands.rows))},
		{[]string{"COMMAND", "NOPE"}, respErr("ERR unknown subcommand 'NOPE' for 'command'")},
		{[]string{"SLOTREG", "NOPE"}, respErr("ERR usage: SLOTREG DIGESTS | SLOTREG MEMORY [GC] | SLOTREG SUBS prefix limit")},
		{[]string{"SLOTREG", "MEMORY", "NOW"}, respErr("ERR usage: SLOTREG MEMORY [GC]")},
		{[]string{"SLOTREG", "DIGESTS"}, `{"node":"s-test","slots":{}}`},
		{[]string{"NOSUCH", "x"}, respErr("ERR unknown command 'NOSUCH'")},
		{[]string{strings.Repeat("Z", 100)}, respErr("ERR unknown command '" + strings.Repeat("Z", 64) + "...'")},
		{[]string{"HELLO", "4"}, respErr("NOPROTO unsupported protocol version")},
		{[]string{"HELLO", "3", "AUTH", "u"}, respErr("ERR syntax error in HELLO option 'auth'")},
		{[]string{"HELLO", "3", "SETNAME"}, respErr("ERR syntax error in HELLO option 'setname'")},
		{[]string{"HELLO", "2", "BOGUS"}, respErr("ERR syntax error in HELLO option 'BOGUS'")},
		{[]string{"AUTH", "pw"}, respErr("ERR AUTH <password> called without any password configured")},
		{[]string{"AUTH", "a", "b", "c"}, respErr("ERR wrong number of arguments for 'auth' command")},
		// Parsing that refuses before any data node is asked.
		{[]string{"REGISTER", "svc", "r"}, respErr("ERR wrong number of arguments for 'register' command")},
		{[]string{"REGISTER", "svc", "r", "d", "TTL"}, respErr("ERR wrong number of arguments for 'register' command")},
		{[]string{"REGISTER", "svc", "r", "d", "TTL", "0"}, respErr("ERR TTL must be a whole number of seconds from 1 to 2147483648")},
		{[]string{"REGISTER", "svc", "r", "d", "TTL", "ten"}, respErr("ERR TTL must be")},
		{[]string{"REGISTER", "svc", "r", "d", "XX", "1"}, respErr(`ERR syntax error: expected TTL <seconds>, got "XX"`)},
		{[]string{"REGISTER", "svc", "r", strings.Repeat("d", 17)}, respErr("ERR data is 17 bytes, over the max-data-size limit of 16")},
		{[]string{"REGISTER", "service-x", "r", "d"}, respErr("ERR dataInfoId is 9 bytes, over the max-key-size limit of 8")},
		{[]string{"REGISTER", "svc", "register9", "d"}, respErr("ERR registerId is 9 bytes, over the max-key-size limit of 8")},
		{[]string{"REGISTER", "", "r", "d"}, respErr("ERR empty dataInfoId")},
		{[]string{"REGISTER", "__slotreg__:x", "r", "d"}, respErr("ERR dataInfoId is 13 bytes")},
		{[]string{"UNREGISTER", "svc"}, respErr("ERR wrong number of arguments for 'unregister' command")},
		{[]string{"RENEW", "svc", ""}, respErr("ERR empty registerId")},
		{[]string{"LOOKUP"}, respErr("ERR wrong number of arguments for 'lookup' command")},
		{[]string{"LOOKUP", "service-x"}, respErr("ERR dataInfoId is 9 bytes, over the max-key-size limit of 8")},
		{[]string{"SUBSCRIBE"}, respErr("ERR wrong number of arguments for 'subscribe' command")},
		{[]string{"SUBSCRIBE", "service-x"}, respErr("ERR dataInfoId is 9 bytes, over the max-key-size limit of 8")},
		{[]string{"LOCK", "job", "w1", "-1"}, respErr("ERR lock ttl must be")},
		{[]string{"LOCK", "job", "w1", "1000", "x"}, respErr("ERR syntax error: LOCK name owner ttl-ms [WAIT ms]")},
		{[]string{"LOCK", "job", "w1", "1000", "WAIT", "0"}, respErr("ERR WAIT must be a whole number of milliseconds from 1 to 600000")},
		{[]string{"LOCK", "job", "w1", "1000", "WAIT", "1", "x"}, respErr("ERR wrong number of arguments for 'lock' command")},
		{[]string{"UNLOCK", "job", ""}, respErr("ERR lock owner must be")},
		{[]string{"LOCKINFO", ""}, respErr("ERR lock name must be")},
		{[]string{"CONFGET", "bad key"}, respErr("ERR config key may hold only printable ASCII")},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			c := mustConn(t, n)
			if len(tc.args) == 2 && tc.args[1] == "GETNAME" {
				do(t, c, "CLIENT", "SETNAME", "n1")
			}
			got := do(t, c, tc.args...)
			if len(got) != 1 {
				t.Fatalf("got %d replies %#v", len(got), got)
			}
			if e, ok := tc.want.(respErr); ok {
				if !strings.HasPrefix(errText(got[0]), string(e)) {
					t.Fatalf("got %#v, want an error starting %q", got[0], e)
				}
				return
			}
			if got[0] != tc.want {
				t.Fatalf("got %#v, want %#v", got[0], tc.want)
			}
		})
	}
}

// Before AUTH only the rows marked noAuth run; the gate reads the table.
func TestAuthGateFollowsTheTable(t *testing.T) {
	auth, err := NewAuth("pw", "")
	if err != nil {
		t.Fatal(err)
	}
	auth.FailDelay = 0
	n := mustNode(t, Limits{})
	n.cfg.Auth = auth
	for _, r := range commands.rows {
		c := mustConn(t, n)
		c.authed = false
		args := []string{r.Name}
		if r.Name == "auth" {
			args = append(args, "wrong")
		}
		got := do(t, c, args...)
		gated := len(got) == 1 && errText(got[0]) == replyNoAuth
		if gated == r.noAuth {
			t.Errorf("%s: noAuth=%v but reply %#v", r.Name, r.noAuth, got)
		}
	}
	c := mustConn(t, n)
	c.authed = false
	if got := do(t, c, "NOSUCH"); errText(got[0]) != replyNoAuth {
		t.Fatalf("unknown command before AUTH: %#v", got)
	}
	if got := do(t, c, "AUTH", "pw"); got[0] != "OK" || !c.authed {
		t.Fatalf("AUTH pw: %#v", got)
	}
}

// COMMAND, COMMAND INFO and COMMAND DOCS describe each row as Redis 7
// does: redis-cli builds its hints from the docs' arguments.
func TestCommandIntrospection(t *testing.T) {
	n := mustNode(t, Limits{})
	c := mustConn(t, n)
	all := do(t, c, "COMMAND")[0].([]any)
	if len(all) != len(commands.rows) {
		t.Fatalf("COMMAND lists %d, table has %d", len(all), len(commands.rows))
	}
	info := do(t, c, "COMMAND", "INFO", "REGISTER", "nosuch")[0].([]any)
	reg := info[0].([]any)
	if len(reg) != 10 || reg[0] != "register" || reg[1] != int64(-4) || reg[2].([]any)[0] != "write" || reg[3] != int64(1) {
		t.Fatalf("COMMAND INFO register: %#v", reg)
	}
	if info[1] != nil {
		t.Fatalf("COMMAND INFO nosuch: %#v", info[1])
	}
	for _, resp3 := range []bool{false, true} {
		c.resp3 = resp3
		docs := pairs(t, do(t, c, "COMMAND", "DOCS", "register", "client", "nosuch")[0])
		if len(docs) != 2 {
			t.Fatalf("resp3=%v: docs for %d commands, want 2", resp3, len(docs))
		}
		d := pairs(t, docs["register"])
		if d["group"] != "registry" || !strings.Contains(d["summary"].(string), "Publishes") {
			t.Fatalf("docs: %#v", d)
		}
		var hint []string
		for _, a := range d["arguments"].([]any) {
			m := pairs(t, a)
			s := m["name"].(string)
			if tok, ok := m["token"]; ok {
				s = tok.(string) + " " + s
			}
			if _, ok := m["flags"]; ok {
				s = "[" + s + "]"
			}
			hint = append(hint, s)
		}
		if got := strings.Join(hint, " "); got != "dataInfoId registerId data [TTL seconds]" {
			t.Fatalf("resp3=%v: hint %q", resp3, got)
		}
		subs := pairs(t, pairs(t, docs["client"])["subcommands"])
		if _, ok := subs["client|setname"]; !ok || len(subs) != 4 {
			t.Fatalf("client subcommands: %#v", subs)
		}
	}
	c.resp3 = false
	if got := do(t, c, "COMMAND", "DOCS")[0].([]any); len(got) != 2*len(commands.rows) {
		t.Fatalf("COMMAND DOCS: %d items", len(got))
	}
}

// Metric labels are the table's names plus "other".
func TestMetricLabelsComeFromTheTable(t *testing.T) {
	names := metricNames()
	if len(names) != len(commands.rows)+1 || names[len(names)-1] != "other" {
		t.Fatalf("labels %v", names)
	}
	for _, r := range commands.rows {
		if names[commands.metric(r)] != r.Name {
			t.Fatalf("%s counts as %s", r.Name, names[commands.metric(r)])
		}
		for _, s := range r.subs {
			if commands.metric(s) != commands.metric(r) {
				t.Fatalf("%s does not count as %s", s.Name, r.Name)
			}
		}
	}
	if names[commands.metric(commands.lookup([]byte("nosuch")))] != "other" {
		t.Fatal("an unknown command is not other")
	}
	if commands.lookup([]byte("ReGiStEr")) == nil {
		t.Fatal("lookup is not case-blind")
	}
}

// A table with a duplicate row, or a row without a handler, does not load.
func TestBadTablesPanic(t *testing.T) {
	for name, rows := range map[string][]*command{
		"duplicate":  {commandRows()[0], commandRows()[0]},
		"no handler": {{CommandSpec: proto.CommandSpec{Name: "x", Arity: 1}}},
		"no arity":   {{CommandSpec: proto.CommandSpec{Name: "x"}, run: (*clientConn).quitCmd}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			mustTable(rows)
		}()
	}
}
