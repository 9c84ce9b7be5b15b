package proto

// Draining a data node. A draining node keeps its data and its follower
// places, but meta moves every slot it leads to other nodes (through the
// usual moves: StartMove, the data leader's HANDOFF) and starts no move
// to it, so it can be shut down with nothing lost. Both commands are
// answered by the meta leader only (followers reply NOTLEADER) with the
// table epoch after them as an integer; a refusal (an unknown node, the
// last data node that is not draining) is an ERR reply with the reason.
const (
	// CmdDrain marks a data node as draining.
	CmdDrain = "drain"
	// CmdUndrain ends a data node's draining; leaders may then move back
	// to it (by rebalance).
	CmdUndrain = "undrain"
)

// Drain asks meta to drain the data node NodeID.
type Drain struct{ NodeID string }

// Args builds the command.
func (d *Drain) Args() []any { return []any{CmdDrain, d.NodeID} }

// ParseDrain parses DRAIN nodeId.
func ParseDrain(args [][]byte) (*Drain, error) {
	if err := arity(args, CmdDrain, 2); err != nil {
		return nil, err
	}
	d := &Drain{NodeID: string(args[1])}
	return d, checkNodeID(d.NodeID)
}

// Undrain asks meta to stop draining the data node NodeID.
type Undrain struct{ NodeID string }

// Args builds the command.
func (u *Undrain) Args() []any { return []any{CmdUndrain, u.NodeID} }

// ParseUndrain parses UNDRAIN nodeId.
func ParseUndrain(args [][]byte) (*Undrain, error) {
	if err := arity(args, CmdUndrain, 2); err != nil {
		return nil, err
	}
	u := &Undrain{NodeID: string(args[1])}
	return u, checkNodeID(u.NodeID)
}
