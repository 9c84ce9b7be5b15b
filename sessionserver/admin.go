package sessionserver

import (
	"encoding/json"
	"strings"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// slotregCmd answers SLOTREG DIGESTS: the per-slot digests of this
// session's connection-bound publishers, for `registryctl verify`; and
// SLOTREG MEMORY [GC]: the session's heap, after a full collection with
// GC.
func (c *clientConn) slotregCmd(args [][]byte) {
	if len(args) >= 2 && len(args) <= 3 && strings.ToLower(string(args[1])) == proto.SubMemory {
		gc := len(args) == 3 && strings.ToLower(string(args[2])) == proto.OptGC
		if len(args) == 3 && !gc {
			c.writeError("ERR usage: SLOTREG MEMORY [GC]")
			return
		}
		b, err := json.Marshal(obs.ReadMemory(gc))
		if err != nil {
			c.writeError("ERR " + err.Error())
			return
		}
		c.wr.WriteBulk(b)
		return
	}
	if len(args) != 2 || strings.ToLower(string(args[1])) != proto.SubDigests {
		c.writeError("ERR usage: SLOTREG DIGESTS | SLOTREG MEMORY [GC]")
		return
	}
	out := proto.SessionDigests{Node: c.n.cfg.NodeID, Slots: make(map[int]proto.Digest)}
	for s := 0; s < slot.Count; s++ {
		if d := c.n.pubs.digestOf(s); d.Count > 0 {
			out.Slots[s] = d
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		c.writeError("ERR " + err.Error())
		return
	}
	c.wr.WriteBulk(b)
}
