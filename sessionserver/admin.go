package sessionserver

import (
	"encoding/json"

	"github.com/slotreg/slotreg/internal/obs"
	"github.com/slotreg/slotreg/proto"
	"github.com/slotreg/slotreg/slot"
)

// slotregMemory answers SLOTREG MEMORY [GC]: the session's heap, after a
// full collection with GC.
func (c *clientConn) slotregMemory(m *proto.Memory) {
	c.writeJSON(obs.ReadMemory(m.GC))
}

// slotregDigests answers SLOTREG DIGESTS: the per-slot digests of this
// session's connection-bound publishers, for `registryctl verify`.
func (c *clientConn) slotregDigests([][]byte) {
	out := proto.SessionDigests{Node: c.n.cfg.NodeID, Slots: make(map[int]proto.Digest)}
	for s := 0; s < slot.Count; s++ {
		if d := c.n.pubs.digestOf(s); d.Count > 0 {
			out.Slots[s] = d
		}
	}
	c.writeJSON(out)
}

// writeJSON answers v as a JSON bulk string.
func (c *clientConn) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.writeError("ERR " + err.Error())
		return
	}
	c.wr.WriteBulk(b)
}
