package proto

// CmdMetaRemove asks the meta leader to take a voter out of the Raft
// group (registryctl meta remove). The leader answers OK once the new
// configuration is committed; removing an unknown voter or the last one
// is an ERR reply with the reason. The removed node's Raft stops; its
// process can then be shut down.
const CmdMetaRemove = "metaremove"

// MetaRemove removes the meta voter NodeID.
type MetaRemove struct{ NodeID string }

// Args builds the command.
func (m *MetaRemove) Args() []any { return []any{CmdMetaRemove, m.NodeID} }

// ParseMetaRemove parses METAREMOVE nodeId.
func ParseMetaRemove(args [][]byte) (*MetaRemove, error) {
	if err := arity(args, CmdMetaRemove, 2); err != nil {
		return nil, err
	}
	m := &MetaRemove{NodeID: string(args[1])}
	return m, checkNodeID(m.NodeID)
}
