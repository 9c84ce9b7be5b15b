package meta

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// Config keys (DRM style): an admin writes a key through the meta leader,
// every session learns of it through a long poll (CONFWATCH) and pushes
// it to its watchers.
//
// Versions come from one counter, ConfigRev, raised by every change to
// any key. A key's version therefore only grows, also across a delete and
// a new set, and "every change after revision R" is one question a
// session can ask whatever keys it has seen. Deleting a key keeps a
// tombstone (with its history), so a session that was away learns of the
// delete; tombstones are small and are never purged.

// configRev is one version of a key.
type configRev struct {
	Version uint64 `json:"version"`
	Value   string `json:"value,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// configKey is a key's last proto.ConfigHistoryLen versions, oldest
// first; the last is the current one. Published configKeys are immutable.
type configKey struct {
	Revs []configRev
}

func (k *configKey) cur() configRev { return k.Revs[len(k.Revs)-1] }

// withRev returns the key's history with r appended, trimmed to the
// history length, in a new slice (the old one may be published).
func (k *configKey) withRev(r configRev) *configKey {
	var old []configRev
	if k != nil {
		old = k.Revs
	}
	if len(old) >= proto.ConfigHistoryLen {
		old = old[len(old)-proto.ConfigHistoryLen+1:]
	}
	revs := make([]configRev, 0, len(old)+1)
	revs = append(append(revs, old...), r)
	return &configKey{Revs: revs}
}

// applyConfigSet sets c.Key to c.Value at version ConfigRev+1. Setting the
// value a key already has changes nothing and returns its version, so an
// admin's retry neither raises the version nor pushes anything.
func applyConfigSet(s *state, c *command) (*state, uint64, error) {
	if err := proto.CheckConfigKey(c.Key); err != nil {
		return nil, 0, fmt.Errorf("%w: config-set: %v", errBadCommand, err)
	}
	if err := proto.CheckConfigValue(c.Value); err != nil {
		return nil, 0, fmt.Errorf("%w: config-set %s: %v", errBadCommand, c.Key, err)
	}
	old := s.Config[c.Key]
	if old != nil && !old.cur().Deleted && old.cur().Value == c.Value {
		return nil, old.cur().Version, nil
	}
	return withConfigRev(s, c.Key, old, configRev{Value: c.Value})
}

// applyConfigDel deletes c.Key, leaving a tombstone at version ConfigRev+1;
// deleting a key that does not exist (or no longer does) changes nothing
// and returns version 0.
func applyConfigDel(s *state, c *command) (*state, uint64, error) {
	if err := proto.CheckConfigKey(c.Key); err != nil {
		return nil, 0, fmt.Errorf("%w: config-del: %v", errBadCommand, err)
	}
	old := s.Config[c.Key]
	if old == nil || old.cur().Deleted {
		return nil, 0, nil
	}
	return withConfigRev(s, c.Key, old, configRev{Deleted: true})
}

func withConfigRev(s *state, key string, old *configKey, r configRev) (*state, uint64, error) {
	next := *s
	next.ConfigRev = s.ConfigRev + 1
	r.Version = next.ConfigRev
	next.Config = maps.Clone(s.Config)
	if next.Config == nil {
		next.Config = map[string]*configKey{}
	}
	next.Config[key] = old.withRev(r)
	return &next, r.Version, nil
}

// restoreConfigAndLocks copies the config and locks of a snapshot into s,
// checking what the applier relies on: every key has a history whose
// versions rise and stay within ConfigRev, and no lock's token is above
// FenceSeq.
func restoreConfigAndLocks(s *state, sj *stateJSON) error {
	s.ConfigRev, s.FenceSeq, s.Clock = sj.ConfigRev, sj.FenceSeq, sj.Clock
	for k, revs := range sj.Config {
		if len(revs) == 0 {
			return fmt.Errorf("config key %q has no versions", k)
		}
		for i, r := range revs {
			if r.Version == 0 || r.Version > sj.ConfigRev || (i > 0 && r.Version <= revs[i-1].Version) {
				return fmt.Errorf("config key %q: version %d out of order (config rev %d)", k, r.Version, sj.ConfigRev)
			}
		}
		s.Config[k] = &configKey{Revs: revs}
	}
	for name, l := range sj.Locks {
		if l == nil || l.Token == 0 || l.Token > sj.FenceSeq {
			return fmt.Errorf("lock %q: bad token (fence seq %d)", name, sj.FenceSeq)
		}
		s.Locks[name] = l
	}
	for name, q := range sj.LockQueues {
		if err := proto.CheckLockName(name); err != nil || len(q) == 0 {
			return fmt.Errorf("lock queue %q: bad name or empty", name)
		}
	}
	s.LockQueues = sj.LockQueues
	return nil
}

// configWatchMaxBytes bounds one CONFWATCH reply: a new session may have
// hundreds of keys of up to 256 KiB each to catch up on, and gets them in
// several replies instead of one huge one.
const configWatchMaxBytes = 4 << 20

// configSince lists the keys whose version is above since, in version
// order, up to about maxBytes of values (at least one key), and the
// revision the caller has caught up to once it applied them.
func configSince(st *state, since uint64, maxBytes int) (uint64, []proto.ConfigEntry) {
	var out []proto.ConfigEntry
	for k, ck := range st.Config {
		if r := ck.cur(); r.Version > since {
			out = append(out, proto.ConfigEntry{Key: k, Version: r.Version, Value: r.Value, Deleted: r.Deleted})
		}
	}
	slices.SortFunc(out, func(a, b proto.ConfigEntry) int { return cmp.Compare(a.Version, b.Version) })
	size := 0
	for i := range out {
		size += len(out[i].Key) + len(out[i].Value)
		if size > maxBytes && i > 0 {
			return out[i-1].Version, out[:i]
		}
	}
	return st.ConfigRev, out
}

// handleConfSet writes a key; replies the key's version.
func (n *Node) handleConfSet(conn redcon.Conn, cs *proto.ConfSet) error {
	return n.commitConfig(conn, &command{Type: cmdConfigSet, Key: cs.Key, Value: cs.Value})
}

// handleConfDel deletes a key; replies the tombstone's version, 0 if
// there was no such key.
func (n *Node) handleConfDel(conn redcon.Conn, ck *proto.ConfKey) error {
	return n.commitConfig(conn, &command{Type: cmdConfigDel, Key: ck.Key})
}

// commitConfig proposes a config change and replies the key's version.
func (n *Node) commitConfig(conn redcon.Conn, c *command) error {
	res, err := n.commit(c, c.Type.String()+" refused")
	if err != nil {
		return err
	}
	if res.Changed {
		n.log.Info("config changed", "op", c.Type.String(), "key", c.Key, "version", res.Version, "bytes", len(c.Value))
	}
	conn.WriteUint64(res.Version)
	return nil
}

// confKey is the parser of a command whose one argument is a key.
func confKey(name string) func([][]byte) (*proto.ConfKey, error) {
	return func(args [][]byte) (*proto.ConfKey, error) { return proto.ParseConfKey(name, args) }
}

// handleConfGet replies [version, value], or null if the key does not
// exist (or was deleted).
func (n *Node) handleConfGet(conn redcon.Conn, ck *proto.ConfKey) error {
	k := n.store.state().Config[ck.Key]
	if k == nil || k.cur().Deleted {
		conn.WriteNull()
		return nil
	}
	conn.WriteArray(2)
	conn.WriteUint64(k.cur().Version)
	conn.WriteBulkString(k.cur().Value)
	return nil
}

// handleConfList replies a JSON array of the live keys with the prefix,
// sorted: key, version and the value's size (no values: a list of large
// values would make one huge reply).
func (n *Node) handleConfList(conn redcon.Conn, cl *proto.ConfList) error {
	st := n.store.state()
	var out []proto.ConfigEntry
	for _, k := range slices.Sorted(maps.Keys(st.Config)) {
		if r := st.Config[k].cur(); strings.HasPrefix(k, cl.Prefix) && !r.Deleted {
			out = append(out, proto.ConfigEntry{Key: k, Version: r.Version, Size: len(r.Value)})
		}
	}
	return n.writeEntries(conn, out)
}

// handleConfHistory replies a JSON array of the key's kept versions,
// newest first, deletes included; empty for an unknown key.
func (n *Node) handleConfHistory(conn redcon.Conn, ck *proto.ConfKey) error {
	var out []proto.ConfigEntry
	if k := n.store.state().Config[ck.Key]; k != nil {
		for i := len(k.Revs) - 1; i >= 0; i-- {
			r := k.Revs[i]
			out = append(out, proto.ConfigEntry{Key: ck.Key, Version: r.Version, Value: r.Value, Deleted: r.Deleted})
		}
	}
	return n.writeEntries(conn, out)
}

func (n *Node) writeEntries(conn redcon.Conn, es []proto.ConfigEntry) error {
	b, err := proto.MarshalConfigEntries(es)
	if err != nil {
		return n.unavailable(err.Error())
	}
	conn.WriteBulk(b)
	return nil
}

// handleConfWatch is a session's long poll: it replies as soon as the
// FSM holds a version above since (or at once if it does), else after
// waitMs with no entries. Only the leader answers, so a session never
// reads from a follower that is partitioned away and silently stale; a
// leader that loses leadership while a poll waits answers NOTLEADER.
func (n *Node) handleConfWatch(conn redcon.Conn, w *proto.ConfWatch) error {
	// A ConfigRev below since means the group was rebuilt from scratch;
	// answer at once so the session can say so.
	st, changed, err := n.longPoll(&n.store.cfg, time.Duration(w.WaitMs)*time.Millisecond,
		func(st *state) bool { return st.ConfigRev != w.Since })
	if err != nil {
		return err
	}
	if !changed {
		return n.writeWatch(conn, st.ConfigRev, nil)
	}
	rev, es := configSince(st, w.Since, configWatchMaxBytes)
	return n.writeWatch(conn, rev, es)
}

func (n *Node) writeWatch(conn redcon.Conn, rev uint64, es []proto.ConfigEntry) error {
	if es == nil {
		es = []proto.ConfigEntry{}
	}
	b, err := json.Marshal(&proto.ConfWatchReply{Rev: rev, Entries: es})
	if err != nil {
		return n.unavailable(err.Error())
	}
	conn.WriteBulk(b)
	return nil
}
