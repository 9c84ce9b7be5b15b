package proto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Client commands: what a session parses from a client before it acts.
// Each parser checks the command's arity itself, so it is safe on any
// input, and words its errors as the session replies them.

// Names of the client limits that parsing applies, as the session's flags
// and its errors spell them.
const (
	LimitKeySize  = "max-key-size"
	LimitDataSize = "max-data-size"
)

// What CheckKey checks, as errors name it.
const (
	KindDataInfoID = "dataInfoId"
	KindRegisterID = "registerId"
)

// ClientLimits are the limits a session holds its clients' keys and data
// to; each can only be lowered below the protocol's MaxKeyLen and
// MaxDataLen.
type ClientLimits struct {
	MaxKeySize  int
	MaxDataSize int
}

// LimitError is the reply to a request over a limit: what is over, the
// limit's name and its value.
func LimitError(name string, max int, what string) error {
	return Errorf(ErrInvalid, "%s, over the %s limit of %d", what, name, max)
}

// CheckKey validates a dataInfoId or registerId (kind says which).
func (l *ClientLimits) CheckKey(kind, id string) error {
	if id == "" {
		return Errorf(ErrInvalid, "empty %s", kind)
	}
	if len(id) > l.MaxKeySize {
		return LimitError(LimitKeySize, l.MaxKeySize, fmt.Sprintf("%s is %d bytes", kind, len(id)))
	}
	return nil
}

// WrongArity is the reply to a command with the wrong number of
// arguments, as Redis words it; name is lower-case, "parent|sub" for a
// subcommand.
func WrongArity(name string) error {
	return Errorf(ErrInvalid, "wrong number of arguments for '%s' command", name)
}

// Clip makes an argument from the wire fit for an error reply or a log
// line: at most 64 bytes ("..." says it was cut), and no control
// characters (a line break would end a RESP error reply early).
func Clip(b []byte) string {
	cut := len(b) > 64
	if cut {
		b = b[:64]
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, string(b))
	if cut {
		s += "..."
	}
	return s
}

// ReplyError is a refusal whose reply text is fixed, prefix included, as
// Redis words it (NOPROTO, NOAUTH ...), so client libraries recognise it.
type ReplyError struct {
	Sentinel error // what errors.Is matches; ErrInvalid when none fits
	Text     string
}

func (e *ReplyError) Error() string { return e.Text }

// Unwrap lets errors.Is find the sentinel.
func (e *ReplyError) Unwrap() error { return e.Sentinel }

// ReplyText renders an error as the text of a client's error reply: a
// ReplyError as it is, anything else as ToRESP does.
func ReplyText(err error) string {
	var re *ReplyError
	if errors.As(err, &re) {
		return re.Text
	}
	return ToRESP(err)
}

// ClientArgs builds the client command that makes op: REGISTER
// dataInfoId registerId data [TTL seconds], UNREGISTER or RENEW
// dataInfoId registerId.
func (o *Op) ClientArgs() []any {
	switch o.Type {
	case OpRegister:
		if o.TTL > 0 {
			return []any{CmdRegister, o.DataInfoID, o.RegisterID, o.Data, OptTTL, strconv.FormatUint(uint64(o.TTL), 10)}
		}
		return []any{CmdRegister, o.DataInfoID, o.RegisterID, o.Data}
	case OpUnregister:
		return []any{CmdUnregister, o.DataInfoID, o.RegisterID}
	}
	return []any{CmdRenew, o.DataInfoID, o.RegisterID}
}

// MaxTTL is the longest TTL a publisher may ask for, in seconds.
const MaxTTL = 1 << 31

// ParseRegister parses REGISTER dataInfoId registerId data [TTL seconds].
func ParseRegister(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpRegister}
	if len(args) != 4 && len(args) != 6 {
		return op, WrongArity(CmdRegister)
	}
	if len(args) == 6 {
		if !strings.EqualFold(string(args[4]), OptTTL) {
			return op, Errorf(ErrInvalid, "syntax error: expected TTL <seconds>, got %q", Clip(args[4]))
		}
		ttl, err := parseTTL(args[5])
		if err != nil {
			return op, err
		}
		op.TTL = ttl
	}
	op.Data = string(args[3])
	if len(op.Data) > lim.MaxDataSize {
		return op, LimitError(LimitDataSize, lim.MaxDataSize, fmt.Sprintf("data is %d bytes", len(op.Data)))
	}
	return op, parsePublisher(&op, args, lim)
}

// parseTTL parses a publisher's TTL in seconds.
func parseTTL(b []byte) (uint32, error) {
	ttl, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil || ttl == 0 || ttl > MaxTTL {
		return 0, Errorf(ErrInvalid, "TTL must be a whole number of seconds from 1 to %d", MaxTTL)
	}
	return uint32(ttl), nil
}

// ParseUnregister parses UNREGISTER dataInfoId registerId.
func ParseUnregister(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpUnregister}
	if len(args) != 3 {
		return op, WrongArity(CmdUnregister)
	}
	return op, parsePublisher(&op, args, lim)
}

// ParseRenew parses RENEW dataInfoId registerId.
func ParseRenew(args [][]byte, lim *ClientLimits) (Op, error) {
	op := Op{Type: OpRenew}
	if len(args) != 3 {
		return op, WrongArity(CmdRenew)
	}
	return op, parsePublisher(&op, args, lim)
}

// parsePublisher takes the dataInfoId and registerId every write names.
func parsePublisher(op *Op, args [][]byte, lim *ClientLimits) error {
	op.DataInfoID, op.RegisterID = string(args[1]), string(args[2])
	if err := lim.CheckKey(KindDataInfoID, op.DataInfoID); err != nil {
		return err
	}
	if strings.HasPrefix(op.DataInfoID, ReservedPrefix) {
		return Errorf(ErrInvalid, "dataInfoIds starting with %s are reserved", ReservedPrefix)
	}
	return lim.CheckKey(KindRegisterID, op.RegisterID)
}

// Lookup is LOOKUP dataInfoId.
type Lookup struct{ DataInfoID string }

// Args builds the command.
func (l *Lookup) Args() []any { return []any{CmdLookup, l.DataInfoID} }

// ParseLookup parses LOOKUP dataInfoId.
func ParseLookup(args [][]byte, lim *ClientLimits) (*Lookup, error) {
	if len(args) != 2 {
		return nil, WrongArity(CmdLookup)
	}
	l := &Lookup{DataInfoID: string(args[1])}
	return l, lim.CheckKey(KindDataInfoID, l.DataInfoID)
}

// Subscribe is SUBSCRIBE channel [channel ...]. The channels are checked
// one by one as they are subscribed: a bad one is refused alone, as
// Redis refuses nothing for the others.
type Subscribe struct{ Channels [][]byte }

// ParseSubscribe parses SUBSCRIBE channel [channel ...].
func ParseSubscribe(args [][]byte) (*Subscribe, error) {
	if len(args) < 2 {
		return nil, WrongArity(CmdSubscribe)
	}
	return &Subscribe{Channels: args[1:]}, nil
}

// Message is the optional or required text of PING [message] and ECHO
// message.
type Message struct {
	Text []byte
	Set  bool
}

// ParsePing parses PING [message].
func ParsePing(args [][]byte) (*Message, error) {
	if len(args) > 2 {
		return nil, WrongArity(CmdPing)
	}
	if len(args) == 2 {
		return &Message{Text: args[1], Set: true}, nil
	}
	return &Message{}, nil
}

// ParseEcho parses ECHO message.
func ParseEcho(args [][]byte) (*Message, error) {
	if len(args) != 2 {
		return nil, WrongArity(CmdEcho)
	}
	return &Message{Text: args[1], Set: true}, nil
}

// ParseSelect parses SELECT index: slotreg has only database 0.
func ParseSelect(args [][]byte) (*struct{}, error) {
	if len(args) != 2 {
		return nil, WrongArity(CmdSelect)
	}
	if string(args[1]) != "0" {
		return nil, Errorf(ErrInvalid, "DB index is out of range (slotreg has only database 0)")
	}
	return &struct{}{}, nil
}

// Auth is AUTH [user] password; User is "" when only the password is
// given (the session's default user).
type Auth struct{ User, Password string }

// ParseAuth parses AUTH [user] password.
func ParseAuth(args [][]byte) (*Auth, error) {
	switch len(args) {
	case 2:
		return &Auth{Password: string(args[1])}, nil
	case 3:
		return &Auth{User: string(args[1]), Password: string(args[2])}, nil
	}
	return nil, WrongArity(CmdAuth)
}

// Hello is HELLO [protover [AUTH user password] [SETNAME name]].
type Hello struct {
	Proto   int // 2 or 3; 0 keeps the connection's
	Auth    *Auth
	SetName *string
}

// ParseHello parses HELLO [protover [AUTH user password] [SETNAME name]].
func ParseHello(args [][]byte) (*Hello, error) {
	h := &Hello{}
	if len(args) < 2 {
		return h, nil
	}
	v, err := strconv.Atoi(string(args[1]))
	if err != nil || (v != 2 && v != 3) {
		return nil, &ReplyError{Sentinel: ErrInvalid, Text: "NOPROTO unsupported protocol version"}
	}
	h.Proto = v
	for i := 2; i < len(args); i++ {
		switch strings.ToLower(string(args[i])) {
		case OptAuth:
			if i+2 >= len(args) {
				return nil, Errorf(ErrInvalid, "syntax error in HELLO option 'auth'")
			}
			h.Auth = &Auth{User: string(args[i+1]), Password: string(args[i+2])}
			i += 2
		case SubSetName:
			if i+1 >= len(args) {
				return nil, Errorf(ErrInvalid, "syntax error in HELLO option 'setname'")
			}
			i++
			name := string(args[i])
			h.SetName = &name
		default:
			return nil, Errorf(ErrInvalid, "syntax error in HELLO option '%s'", Clip(args[i]))
		}
	}
	return h, nil
}

// ClientSetName is CLIENT SETNAME name.
type ClientSetName struct{ Name string }

// ParseClientSetName parses CLIENT SETNAME name.
func ParseClientSetName(args [][]byte) (*ClientSetName, error) {
	if len(args) != 3 {
		return nil, WrongArity(CmdClient + "|" + SubSetName)
	}
	return &ClientSetName{Name: string(args[2])}, nil
}

// Memory is SLOTREG MEMORY [GC].
type Memory struct{ GC bool }

// ParseMemory parses SLOTREG MEMORY [GC].
func ParseMemory(args [][]byte) (*Memory, error) {
	switch {
	case len(args) == 2:
		return &Memory{}, nil
	case len(args) == 3 && strings.EqualFold(string(args[2]), OptGC):
		return &Memory{GC: true}, nil
	}
	return nil, Errorf(ErrInvalid, "usage: SLOTREG MEMORY [GC]")
}

// CommandNames is COMMAND INFO|DOCS [name ...]: the commands asked
// about, lower-cased; none asks about every command.
type CommandNames struct{ Names []string }

// ParseCommandNames parses COMMAND INFO|DOCS [name ...].
func ParseCommandNames(args [][]byte) (*CommandNames, error) {
	if len(args) < 2 {
		return nil, WrongArity(CmdCommand)
	}
	c := &CommandNames{}
	for _, a := range args[2:] {
		c.Names = append(c.Names, strings.ToLower(string(a)))
	}
	return c, nil
}
