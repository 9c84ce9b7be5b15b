package dataserver

import (
	"encoding/json"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
	"github.com/tidwall/redcon"
)

// contentHash sums a hash of every publisher (with its owner) and of every
// datum's version: a leader and a follower at the same seq have the same
// hash, which is what `registryctl verify` compares. TTL deadlines are
// left out, since each replica counts them from its own clock.
func (s *slotStore) contentHash() uint64 {
	var sum uint64
	var d xxhash.Digest
	s.datums.Scan(func(id string, dt *datum) bool {
		d.Reset()
		d.WriteString(id)
		var v [8]byte
		for i := range v {
			v[i] = byte(dt.version >> (8 * i))
		}
		d.Write(v[:])
		sum += d.Sum64()
		for i := range dt.pubs {
			p := &dt.pubs[i]
			rid, data := splitKV(p.kv)
			sum += proto.PubHash(id, rid, data, p.own.conn) ^ xxhash.Sum64String(p.own.session) ^ uint64(p.own.ttl)
		}
		return true
	})
	return sum
}

// handleStats answers DSTATS [GC|COUNTS]: per slot this node holds, its
// role, position, size and content hash, for led slots each session's
// digest, and the node's heap; COUNTS leaves out the hash and digests.
func (n *Node) handleStats(conn redcon.Conn, cmd redcon.Command) {
	args := cmd.Args
	opt := ""
	if len(args) == 2 {
		opt = strings.ToLower(string(args[1]))
	}
	if len(args) > 2 || (len(args) == 2 && opt != proto.OptGC && opt != proto.OptCounts) {
		conn.WriteError("ERR usage: DSTATS [GC|COUNTS]")
		return
	}
	full := opt != proto.OptCounts
	out := proto.DataStats{Node: n.cfg.NodeID}
	mem := obs.ReadMemory(opt == proto.OptGC)
	out.Memory = &mem
	for _, u := range n.slots {
		if ss, ok := u.stats(full); ok {
			out.Slots = append(out.Slots, ss)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		conn.WriteError("ERR " + err.Error())
		return
	}
	conn.WriteBulk(b)
}
