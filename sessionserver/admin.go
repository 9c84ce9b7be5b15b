package sessionserver

import (
	"encoding/json"
	"strings"

	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// slotregCmd answers SLOTREG DIGESTS: the per-slot digests of this
// session's connection-bound publishers, for `registryctl verify`.
func (c *clientConn) slotregCmd(args [][]byte) {
	if len(args) != 2 || strings.ToLower(string(args[1])) != proto.SubDigests {
		c.writeError("ERR usage: SLOTREG DIGESTS")
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
