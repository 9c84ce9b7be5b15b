package proto

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Configuration push (DRM style). Config keys live in the meta Raft group;
// an admin writes them through any meta node (followers redirect), and
// sessions keep a cache fed by a long poll on the meta leader, from which
// they answer CONFGET, pushes on config/<KEY> channels and HTTP pulls.
const (
	// CmdConfGet reads a key: served by sessions (from their cache) and
	// by the meta leader (from the FSM), with the same reply.
	CmdConfGet = "confget"
	// CmdConfSet writes a key on the meta leader.
	CmdConfSet = "confset"
	// CmdConfDel deletes a key on the meta leader.
	CmdConfDel = "confdel"
	// CmdConfList lists keys with a prefix on the meta leader.
	CmdConfList = "conflist"
	// CmdConfHistory returns a key's last versions from the meta leader.
	CmdConfHistory = "confhistory"
	// CmdConfWatch is a session's long poll for config changes on the
	// meta leader.
	CmdConfWatch = "confwatch"
)

// Limits and names of the config feature.
const (
	// MaxConfigKeyLen bounds a config key. Keys are printable ASCII
	// without blanks, so they fit a channel name and a URL path as they
	// are.
	MaxConfigKeyLen = 256
	// MaxConfigValueLen bounds a config value (256 KiB).
	MaxConfigValueLen = 256 << 10
	// ConfigChannelPrefix is the pub/sub namespace of config keys: a
	// client subscribing to config/<KEY> watches KEY.
	ConfigChannelPrefix = "config/"
	// ConfigHistoryLen is how many versions of a key meta keeps
	// (the current one included).
	ConfigHistoryLen = 10
	// MaxConfigWait bounds a CONFWATCH long poll.
	MaxConfigWait = 60_000
)

// CheckConfigKey validates a config key: 1..MaxConfigKeyLen bytes of
// printable ASCII other than the space.
func CheckConfigKey(k string) error {
	if k == "" || len(k) > MaxConfigKeyLen {
		return Errorf(ErrInvalid, "config key must be 1 to %d bytes, got %d", MaxConfigKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' {
			return Errorf(ErrInvalid, "config key may hold only printable ASCII without spaces (byte %d is 0x%02x)", i, k[i])
		}
	}
	return nil
}

// CheckConfigValue validates a config value: valid UTF-8 (so that every
// reply, push and HTTP body can carry it in JSON unchanged) of at most
// MaxConfigValueLen bytes. The empty value is allowed.
func CheckConfigValue(v string) error {
	if len(v) > MaxConfigValueLen {
		return Errorf(ErrInvalid, "config value is %d bytes, over the %d byte limit", len(v), MaxConfigValueLen)
	}
	if !utf8.ValidString(v) {
		return Errorf(ErrInvalid, "config value is not valid UTF-8")
	}
	return nil
}

// ConfigEntry is one version of a config key. A deleted key keeps its
// last version as a tombstone (Deleted, empty Value), so versions stay
// monotonic when a key is deleted and set again.
type ConfigEntry struct {
	Key     string `json:"key"`
	Version uint64 `json:"version"`
	Value   string `json:"value"`
	Deleted bool   `json:"deleted,omitempty"`
	// Size is the value's length where the value itself is left out
	// (CONFLIST).
	Size int `json:"size,omitempty"`
}

// AppendPushJSON appends the entry as a subscriber's message payload and
// the HTTP pull body: {"key","version","value","deleted"}.
func (e *ConfigEntry) AppendPushJSON(dst []byte) []byte {
	dst = append(dst, `{"key":`...)
	dst = appendJSONString(dst, e.Key)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, e.Version, 10)
	dst = append(dst, `,"value":`...)
	dst = appendJSONString(dst, e.Value)
	dst = append(dst, `,"deleted":`...)
	dst = strconv.AppendBool(dst, e.Deleted)
	return append(dst, '}')
}

// ConfSet writes Key = Value.
type ConfSet struct{ Key, Value string }

// Args builds the command.
func (c *ConfSet) Args() []any { return []any{CmdConfSet, c.Key, c.Value} }

// ParseConfSet parses CONFSET key value.
func ParseConfSet(args [][]byte) (*ConfSet, error) {
	if err := arity(args, CmdConfSet, 3); err != nil {
		return nil, err
	}
	c := &ConfSet{Key: string(args[1]), Value: string(args[2])}
	if err := CheckConfigKey(c.Key); err != nil {
		return nil, err
	}
	return c, CheckConfigValue(c.Value)
}

// ConfKey is the argument of the commands that name one key: CONFGET,
// CONFDEL and CONFHISTORY.
type ConfKey struct {
	Cmd string // CmdConfGet, CmdConfDel or CmdConfHistory
	Key string
}

// Args builds the command.
func (c *ConfKey) Args() []any { return []any{c.Cmd, c.Key} }

// ParseConfKey parses `name key` for the command name given.
func ParseConfKey(name string, args [][]byte) (*ConfKey, error) {
	if err := arity(args, name, 2); err != nil {
		return nil, err
	}
	c := &ConfKey{Cmd: name, Key: string(args[1])}
	return c, CheckConfigKey(c.Key)
}

// ConfList lists the keys that start with Prefix ("" for all).
type ConfList struct{ Prefix string }

// Args builds the command.
func (c *ConfList) Args() []any {
	if c.Prefix == "" {
		return []any{CmdConfList}
	}
	return []any{CmdConfList, c.Prefix}
}

// ParseConfList parses CONFLIST [prefix].
func ParseConfList(args [][]byte) (*ConfList, error) {
	switch len(args) {
	case 1:
		return &ConfList{}, nil
	case 2:
		if len(args[1]) > MaxConfigKeyLen {
			return nil, Errorf(ErrInvalid, "prefix is %d bytes, over the %d byte limit", len(args[1]), MaxConfigKeyLen)
		}
		return &ConfList{Prefix: string(args[1])}, nil
	}
	return nil, Errorf(ErrInvalid, "wrong number of arguments for '%s' command", CmdConfList)
}

// ConfWatch asks the meta leader for the config entries whose version is
// above Since, waiting up to WaitMs milliseconds for one to appear.
type ConfWatch struct {
	Since  uint64
	WaitMs int
}

// Args builds the command.
func (c *ConfWatch) Args() []any {
	return []any{CmdConfWatch, strconv.FormatUint(c.Since, 10), strconv.Itoa(c.WaitMs)}
}

// ParseConfWatch parses CONFWATCH since waitMs.
func ParseConfWatch(args [][]byte) (*ConfWatch, error) {
	if err := arity(args, CmdConfWatch, 3); err != nil {
		return nil, err
	}
	since, err := parseUint(args[1], "since")
	if err != nil {
		return nil, err
	}
	w, err := strconv.Atoi(string(args[2]))
	if err != nil || w < 0 || w > MaxConfigWait {
		return nil, Errorf(ErrInvalid, "wait must be 0 to %d milliseconds, got %q", MaxConfigWait, args[2])
	}
	return &ConfWatch{Since: since, WaitMs: w}, nil
}

// ConfWatchReply is the answer to CONFWATCH, a JSON bulk: Rev is the
// version the session has caught up to once it applied Entries (every
// key, tombstones included, whose version is in (Since, Rev], in version
// order). A reply with no entries is a timed-out poll. Meta bounds a
// reply's size; Rev is then below the group's latest version and the
// session polls again at once.
type ConfWatchReply struct {
	Rev     uint64        `json:"rev"`
	Entries []ConfigEntry `json:"entries"`
}

// ParseConfWatchReply decodes a CONFWATCH reply as go-redis returns it.
func ParseConfWatchReply(v any) (*ConfWatchReply, error) {
	var r ConfWatchReply
	if err := parseJSONBulk(v, CmdConfWatch, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ParseConfigEntries decodes the JSON array CONFLIST and CONFHISTORY
// reply with.
func ParseConfigEntries(v any, what string) ([]ConfigEntry, error) {
	var out []ConfigEntry
	if err := parseJSONBulk(v, what, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseConfGetReply decodes a CONFGET reply: [version, value], or nil
// (ok false) when the key does not exist.
func ParseConfGetReply(key string, v any) (e ConfigEntry, ok bool, err error) {
	if v == nil {
		return ConfigEntry{Key: key}, false, nil
	}
	a, isArr := v.([]any)
	if !isArr || len(a) != 2 {
		return e, false, fmt.Errorf("%s reply: want [version, value], got %T", CmdConfGet, v)
	}
	ver, err := replyUint(a[0], "version")
	if err != nil {
		return e, false, err
	}
	val, err := replyBulk(a[1], "value")
	if err != nil {
		return e, false, err
	}
	return ConfigEntry{Key: key, Version: ver, Value: string(val)}, true, nil
}

// MarshalConfigEntries is the JSON of a list of entries, never null.
func MarshalConfigEntries(es []ConfigEntry) ([]byte, error) {
	if es == nil {
		es = []ConfigEntry{}
	}
	b, err := json.Marshal(es)
	if err != nil {
		return nil, fmt.Errorf("encode config entries: %w", err)
	}
	return b, nil
}
