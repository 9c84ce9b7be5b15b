package proto

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

var testLimits = ClientLimits{MaxKeySize: MaxKeyLen, MaxDataSize: MaxDataLen}

// Build, parse, compare: every write op survives ClientArgs and its
// parser.
func TestClientWritesRoundTrip(t *testing.T) {
	parsers := map[OpType]func([][]byte, *ClientLimits) (Op, error){
		OpRegister: ParseRegister, OpUnregister: ParseUnregister, OpRenew: ParseRenew,
	}
	for _, op := range []Op{
		{Type: OpRegister, DataInfoID: "svc#@#DEFAULT", RegisterID: "r1", Data: "10.0.0.1:80"},
		{Type: OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "", TTL: 30},
		{Type: OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: strings.Repeat("d", MaxDataLen), TTL: MaxTTL},
		{Type: OpUnregister, DataInfoID: "svc", RegisterID: "r1"},
		{Type: OpRenew, DataInfoID: strings.Repeat("k", MaxKeyLen), RegisterID: strings.Repeat("r", MaxKeyLen)},
	} {
		got, err := parsers[op.Type](ArgsBytes(op.ClientArgs()), &testLimits)
		if err != nil || got != op {
			t.Fatalf("%+v: parsed %+v, %v", op, got, err)
		}
	}
}

// Each client parser: good input, wrong arity, bad numbers, oversize
// keys and data; errors as the session replies them.
func TestClientParsers(t *testing.T) {
	small := ClientLimits{MaxKeySize: 4, MaxDataSize: 8}
	write := func(p func([][]byte, *ClientLimits) (Op, error), lim *ClientLimits) func([][]byte) (any, error) {
		return func(a [][]byte) (any, error) { return p(a, lim) }
	}
	lookup := func(a [][]byte) (any, error) { return ParseLookup(a, &small) }
	wrap := func(p any) func([][]byte) (any, error) {
		return func(a [][]byte) (any, error) {
			out := reflect.ValueOf(p).Call([]reflect.Value{reflect.ValueOf(a)})
			err, _ := out[1].Interface().(error)
			return out[0].Interface(), err
		}
	}
	for _, tc := range []struct {
		parse func([][]byte) (any, error)
		args  string // words split on spaces; "_" is an empty word
		want  any    // the parsed value, or nil when wantErr is set
		err   string // a prefix of the error's reply text
	}{
		{write(ParseRegister, &small), "REGISTER svc r1 data", Op{Type: OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "data"}, ""},
		{write(ParseRegister, &small), "register svc r1 data ttl 5", Op{Type: OpRegister, DataInfoID: "svc", RegisterID: "r1", Data: "data", TTL: 5}, ""},
		{write(ParseRegister, &small), "REGISTER svc r1", nil, "ERR wrong number of arguments for 'register' command"},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL", nil, "ERR wrong number of arguments for 'register' command"},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL 5 x", nil, "ERR wrong number of arguments"},
		{write(ParseRegister, &small), "REGISTER svc r1 d EX 5", nil, `ERR syntax error: expected TTL <seconds>, got "EX"`},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL -1", nil, "ERR TTL must be a whole number of seconds from 1 to 2147483648"},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL 0", nil, "ERR TTL must be"},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL 2147483649", nil, "ERR TTL must be"},
		{write(ParseRegister, &small), "REGISTER svc r1 d TTL 1e3", nil, "ERR TTL must be"},
		{write(ParseRegister, &small), "REGISTER svc r1 123456789", nil, "ERR data is 9 bytes, over the max-data-size limit of 8"},
		{write(ParseRegister, &small), "REGISTER svc12 r1 d", nil, "ERR dataInfoId is 5 bytes, over the max-key-size limit of 4"},
		{write(ParseRegister, &small), "REGISTER svc r1234 d", nil, "ERR registerId is 5 bytes, over the max-key-size limit of 4"},
		{write(ParseRegister, &small), "REGISTER _ r1 d", nil, "ERR empty dataInfoId"},
		{write(ParseRegister, &testLimits), "REGISTER __slotreg__:goaway r1 d", nil, "ERR dataInfoIds starting with __slotreg__: are reserved"},
		{write(ParseUnregister, &small), "UNREGISTER svc r1", Op{Type: OpUnregister, DataInfoID: "svc", RegisterID: "r1"}, ""},
		{write(ParseUnregister, &small), "UNREGISTER svc", nil, "ERR wrong number of arguments for 'unregister' command"},
		{write(ParseUnregister, &small), "UNREGISTER svc _", nil, "ERR empty registerId"},
		{write(ParseRenew, &small), "RENEW svc r1", Op{Type: OpRenew, DataInfoID: "svc", RegisterID: "r1"}, ""},
		{write(ParseRenew, &small), "RENEW svc r1 r2", nil, "ERR wrong number of arguments for 'renew' command"},
		{write(ParseRenew, &small), "RENEW svc12 r1", nil, "ERR dataInfoId is 5 bytes"},
		{lookup, "LOOKUP svc", &Lookup{DataInfoID: "svc"}, ""},
		{lookup, "LOOKUP", nil, "ERR wrong number of arguments for 'lookup' command"},
		{lookup, "LOOKUP svc12", nil, "ERR dataInfoId is 5 bytes, over the max-key-size limit of 4"},
		{wrap(ParseSubscribe), "SUBSCRIBE a b", &Subscribe{Channels: [][]byte{[]byte("a"), []byte("b")}}, ""},
		{wrap(ParseSubscribe), "SUBSCRIBE", nil, "ERR wrong number of arguments for 'subscribe' command"},
		{wrap(ParsePing), "PING", &Message{}, ""},
		{wrap(ParsePing), "PING hi", &Message{Text: []byte("hi"), Set: true}, ""},
		{wrap(ParsePing), "PING a b", nil, "ERR wrong number of arguments for 'ping' command"},
		{wrap(ParseEcho), "ECHO hi", &Message{Text: []byte("hi"), Set: true}, ""},
		{wrap(ParseEcho), "ECHO", nil, "ERR wrong number of arguments for 'echo' command"},
		{wrap(ParseSelect), "SELECT 0", &struct{}{}, ""},
		{wrap(ParseSelect), "SELECT 1", nil, "ERR DB index is out of range (slotreg has only database 0)"},
		{wrap(ParseSelect), "SELECT", nil, "ERR wrong number of arguments for 'select' command"},
		{wrap(ParseAuth), "AUTH pw", &Auth{Password: "pw"}, ""},
		{wrap(ParseAuth), "AUTH bob pw", &Auth{User: "bob", Password: "pw"}, ""},
		{wrap(ParseAuth), "AUTH", nil, "ERR wrong number of arguments for 'auth' command"},
		{wrap(ParseAuth), "AUTH a b c", nil, "ERR wrong number of arguments for 'auth' command"},
		{wrap(ParseHello), "HELLO", &Hello{}, ""},
		{wrap(ParseHello), "HELLO 3", &Hello{Proto: 3}, ""},
		{wrap(ParseHello), "HELLO 3 AUTH u p SETNAME n", &Hello{Proto: 3, Auth: &Auth{User: "u", Password: "p"}, SetName: ptr("n")}, ""},
		{wrap(ParseHello), "HELLO 1", nil, "NOPROTO unsupported protocol version"},
		{wrap(ParseHello), "HELLO three", nil, "NOPROTO unsupported protocol version"},
		{wrap(ParseHello), "HELLO 2 AUTH u", nil, "ERR syntax error in HELLO option 'auth'"},
		{wrap(ParseHello), "HELLO 2 SETNAME", nil, "ERR syntax error in HELLO option 'setname'"},
		{wrap(ParseHello), "HELLO 2 MAXAGE 3", nil, "ERR syntax error in HELLO option 'MAXAGE'"},
		{wrap(ParseClientSetName), "CLIENT SETNAME n", &ClientSetName{Name: "n"}, ""},
		{wrap(ParseClientSetName), "CLIENT SETNAME", nil, "ERR wrong number of arguments for 'client|setname' command"},
		{wrap(ParseMemory), "SLOTREG MEMORY", &Memory{}, ""},
		{wrap(ParseMemory), "SLOTREG MEMORY gc", &Memory{GC: true}, ""},
		{wrap(ParseMemory), "SLOTREG MEMORY now", nil, "ERR usage: SLOTREG MEMORY [GC]"},
		{wrap(ParseMemory), "SLOTREG MEMORY GC GC", nil, "ERR usage: SLOTREG MEMORY [GC]"},
		{wrap(ParseCommandNames), "COMMAND DOCS", &CommandNames{}, ""},
		{wrap(ParseCommandNames), "COMMAND DOCS Register LOOKUP", &CommandNames{Names: []string{"register", "lookup"}}, ""},
		{wrap(ParseCommandNames), "COMMAND", nil, "ERR wrong number of arguments for 'command' command"},
	} {
		var args [][]byte
		for _, w := range strings.Split(tc.args, " ") {
			if w == "_" {
				w = ""
			}
			args = append(args, []byte(w))
		}
		got, err := tc.parse(args)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(ReplyText(err), tc.err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %#v, %v; want %#v", tc.args, got, err, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }

// ArityOK follows Redis: positive exact, negative at least.
func TestArityOK(t *testing.T) {
	for _, tc := range []struct {
		arity, n int
		ok       bool
	}{
		{2, 2, true}, {2, 1, false}, {2, 3, false},
		{-2, 1, false}, {-2, 2, true}, {-2, 9, true},
		{-1, 1, true},
	} {
		s := CommandSpec{Arity: tc.arity}
		if s.ArityOK(tc.n) != tc.ok {
			t.Errorf("arity %d, %d words: want %v", tc.arity, tc.n, tc.ok)
		}
	}
}

// A spec's COMMAND DOCS value is the map Redis 7 sends: RESP3 map and set
// headers, or flat arrays in RESP2, flags as simple strings (redis-cli
// asserts they are).
func TestCommandDocsShape(t *testing.T) {
	s := &CommandSpec{Name: "x", Summary: "Does x.", Since: "1", Group: "g",
		Args: []ArgSpec{{Name: "n", Type: ArgInteger, Token: "N", Optional: true}}}
	want3 := "%4\r\n$7\r\nsummary\r\n$7\r\nDoes x.\r\n$5\r\nsince\r\n$1\r\n1\r\n$5\r\ngroup\r\n$1\r\ng\r\n" +
		"$9\r\narguments\r\n*1\r\n%4\r\n$4\r\nname\r\n$1\r\nn\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$1\r\nN\r\n" +
		"$5\r\nflags\r\n~1\r\n+optional\r\n"
	if got := string(s.AppendDocs(nil, true)); got != want3 {
		t.Fatalf("RESP3:\n%q\nwant\n%q", got, want3)
	}
	want2 := strings.NewReplacer("%4", "*8", "~1", "*1").Replace(want3)
	if got := string(s.AppendDocs(nil, false)); got != want2 {
		t.Fatalf("RESP2:\n%q\nwant\n%q", got, want2)
	}
}

func TestClip(t *testing.T) {
	for in, want := range map[string]string{
		"get":                   "get",
		"a\r\nb\x00\x7f":        "a??b??",
		strings.Repeat("x", 64): strings.Repeat("x", 64),
		strings.Repeat("y", 65): strings.Repeat("y", 64) + "...",
	} {
		if got := Clip([]byte(in)); got != want {
			t.Errorf("Clip(%q) = %q, want %q", in, got, want)
		}
	}
}
