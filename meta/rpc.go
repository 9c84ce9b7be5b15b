package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tidwall/redcon"

	"github.com/slotreg/slotreg/proto"
)

// handler serves one RESP command; args[0] is the command name.
type handler func(conn redcon.Conn, args [][]byte)

// newHandlers builds the dispatch table, keyed by lower-cased command
// name; a duplicate or empty registration is a programming error reported
// at start-up.
func (n *Node) newHandlers() (map[string]handler, error) {
	table := map[string]handler{}
	for _, r := range []struct {
		name string
		fn   handler
	}{
		{proto.CmdPing, n.handlePing},
		{proto.CmdHeartbeat, n.handleHeartbeat},
		{proto.CmdLeave, n.handleLeave},
		{proto.CmdTable, n.handleTable},
		{proto.CmdNodes, n.handleNodes},
		{proto.CmdMetaJoin, n.handleMetaJoin},
		{proto.CmdHandoff, n.handleHandoff},
		{proto.CmdMoveSlot, n.handleMoveSlot},
		{proto.CmdRebalance, n.handleRebalance},
		{proto.CmdCancelMove, n.handleCancelMove},
		{proto.CmdDrain, n.handleDrain},
		{proto.CmdMetaRemove, n.handleMetaRemove},
		{proto.CmdUndrain, n.handleUndrain},
		{proto.CmdConfSet, n.handleConfSet},
		{proto.CmdConfDel, n.handleConfDel},
		{proto.CmdConfGet, n.handleConfGet},
		{proto.CmdConfList, n.handleConfList},
		{proto.CmdConfHistory, n.handleConfHistory},
		{proto.CmdConfWatch, n.handleConfWatch},
		{proto.CmdMLock, n.handleMLock},
		{proto.CmdMUnlock, n.handleMUnlock},
		{proto.CmdMLockInfo, n.handleMLockInfo},
	} {
		name := strings.ToLower(r.name)
		if name == "" || r.fn == nil {
			return nil, fmt.Errorf("meta %s: rpc handler registration for %q is incomplete", n.cfg.NodeID, r.name)
		}
		if _, dup := table[name]; dup {
			return nil, fmt.Errorf("meta %s: rpc command %q registered twice", n.cfg.NodeID, name)
		}
		table[name] = r.fn
	}
	return table, nil
}

// startRPC serves RESP on the RPC listener. Connections are counted so
// Close can wait for their goroutines.
func (n *Node) startRPC() {
	n.rpcSrv = redcon.NewServerNetwork("tcp", n.rpcLn.Addr().String(), n.dispatch,
		func(redcon.Conn) bool { n.rpcConns.Add(1); return true },
		func(redcon.Conn, error) { n.rpcConns.Done() })
	go func() {
		defer close(n.rpcDone)
		if err := n.rpcSrv.Serve(n.rpcLn); err != nil && n.ctx.Err() == nil {
			n.log.Error("rpc server stopped", "err", err)
		}
	}()
}

func (n *Node) dispatch(conn redcon.Conn, cmd redcon.Command) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("rpc handler panicked", "cmd", safeName(cmd.Args), "panic", r)
			conn.WriteError("ERR internal error")
		}
	}()
	if len(cmd.Args) == 0 {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "empty command"))
		return
	}
	if !n.gate.Allow(conn, cmd.Args) {
		return
	}
	h, ok := n.handlers[strings.ToLower(string(cmd.Args[0]))]
	if !ok {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "unknown command '%s'", safeName(cmd.Args)))
		return
	}
	h(conn, cmd.Args)
}

// safeName is the command name fit for a log line or an error reply.
func safeName(args [][]byte) string {
	if len(args) == 0 {
		return ""
	}
	s := string(args[0])
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

// writeErr writes err as a RESP error; line breaks would end the reply
// early, so they are replaced.
func writeErr(conn redcon.Conn, err error) {
	conn.WriteError(strings.NewReplacer("\r", " ", "\n", " ").Replace(proto.ToRESP(err)))
}

func (n *Node) handlePing(conn redcon.Conn, args [][]byte) {
	switch len(args) {
	case 1:
		conn.WriteString("PONG")
	case 2:
		conn.WriteBulk(args[1])
	default:
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", proto.CmdPing))
	}
}

// handleHeartbeat renews the sender's lease, records a data node's
// progress, makes the sender a member (or updates its address) through the
// log when needed, and replies with the table epoch and the members epoch
// and, where the sender's differ, the table and the session list.
func (n *Node) handleHeartbeat(conn redcon.Conn, args [][]byte) {
	h, err := proto.ParseHeartbeat(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "heartbeat from %s: address %q is not host:port", h.NodeID, h.Addr))
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	n.leases.touch(h.Kind, h.NodeID, time.Now())
	if h.Kind == proto.KindData {
		n.progress.set(h.NodeID, h.Progress)
	}
	st := n.store.state()
	if addr, ok := st.members(h.Kind)[h.NodeID]; !ok || addr != h.Addr {
		res, err := n.propose(&command{Type: cmdJoin, Kind: h.Kind, ID: h.NodeID, Addr: h.Addr})
		if err == nil && res.Err != nil {
			err = proto.Errorf(proto.ErrInvalid, "join %s node %s: %v", h.Kind, h.NodeID, res.Err)
		}
		if err != nil {
			n.log.Warn("join failed", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "err", err)
			writeErr(conn, err)
			return
		}
		if ok {
			n.log.Info("node address changed", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "was", addr, "epoch", res.Epoch)
		} else {
			n.log.Info("node joined", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "epoch", res.Epoch)
		}
		st = n.store.state()
	}
	if st.Table == nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: no table yet", n.cfg.NodeID))
		return
	}
	reply := proto.HeartbeatReply{Epoch: st.Table.Epoch, MembersEpoch: st.MembersEpoch}
	if h.Epoch != st.Table.Epoch {
		if reply.Table, err = n.encodeTable(st.Table); err != nil {
			writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: %v", n.cfg.NodeID, err))
			return
		}
	}
	if h.MembersEpoch != st.MembersEpoch {
		if reply.Sessions, err = n.encodeSessions(st); err != nil {
			writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: %v", n.cfg.NodeID, err))
			return
		}
	}
	conn.WriteRaw(reply.AppendRESP(nil))
}

// handleLeave removes the sender at once: :1 if it was a member, :0 if not.
// A data node's slots go to their most advanced followers, as on eviction.
func (n *Node) handleLeave(conn redcon.Conn, args [][]byte) {
	l, err := proto.ParseLeave(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	prefer := n.preferFor(n.store.state(), l.Kind, l.NodeID)
	res, err := n.propose(&command{Type: cmdRemove, Kind: l.Kind, ID: l.NodeID, Reason: reasonLeave, Prefer: prefer})
	if err != nil {
		writeErr(conn, err)
		return
	}
	n.leases.forget(l.Kind, l.NodeID)
	if l.Kind == proto.KindData {
		n.progress.forget(l.NodeID)
	}
	switch {
	case errors.Is(res.Err, errUnknownMember):
		conn.WriteInt(0)
	case res.Err != nil:
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "leave %s node %s: %v", l.Kind, l.NodeID, res.Err))
	default:
		n.log.Info("node left", "node", l.NodeID, "kind", l.Kind, "epoch", res.Epoch, "promotedByProgress", len(prefer))
		conn.WriteInt(1)
	}
}

// handleTable replies with the local FSM's table as JSON; followers answer
// too (possibly a little stale).
func (n *Node) handleTable(conn redcon.Conn, args [][]byte) {
	if len(args) != 1 {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", proto.CmdTable))
		return
	}
	t := n.store.state().Table
	if t == nil {
		t = n.Table()
	}
	b, err := n.encodeTable(t)
	if err != nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: %v", n.cfg.NodeID, err))
		return
	}
	conn.WriteBulk(b)
}

// handleNodes replies with Members as JSON.
func (n *Node) handleNodes(conn redcon.Conn, args [][]byte) {
	if len(args) != 1 {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", proto.CmdNodes))
		return
	}
	b, err := json.Marshal(n.Members())
	if err != nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: encode members: %v", n.cfg.NodeID, err))
		return
	}
	conn.WriteBulk(b)
}

// handleMetaJoin records a voter's RPC address; only voters of the current
// Raft configuration may be recorded.
func (n *Node) handleMetaJoin(conn redcon.Conn, args [][]byte) {
	mj, err := proto.ParseMetaJoin(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	voter, err := n.isVoter(mj.NodeID)
	if err != nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: %v", n.cfg.NodeID, err))
		return
	}
	if !voter {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "%s is not a voter of the meta group", mj.NodeID))
		return
	}
	res, err := n.propose(&command{Type: cmdRecordMeta, ID: mj.NodeID, Addr: mj.RPCAddr})
	if err == nil && res.Err != nil {
		err = proto.Errorf(proto.ErrInvalid, "record meta %s: %v", mj.NodeID, res.Err)
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	if res.Changed {
		n.log.Info("recorded meta rpc address", "node", mj.NodeID, "addr", mj.RPCAddr)
	}
	conn.WriteString("OK")
}

// handleMetaRemove takes a voter out of the Raft group: its RPC address
// record goes first (while this node surely leads), then the Raft
// configuration change, which the removed node's Raft answers by
// shutting down. Removing the leader itself is allowed: it steps down
// once the change commits and the others elect a new leader.
func (n *Node) handleMetaRemove(conn redcon.Conn, args [][]byte) {
	mr, err := proto.ParseMetaRemove(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: raft configuration: %v", n.cfg.NodeID, err))
		return
	}
	voters, found := 0, false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		found = found || string(s.ID) == mr.NodeID
	}
	switch {
	case !found:
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "%s is not in the meta group", mr.NodeID))
		return
	case voters <= 1:
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "%s is the last meta voter; the group cannot go on without it", mr.NodeID))
		return
	}
	res, err := n.propose(&command{Type: cmdRemove, Kind: proto.KindMeta, ID: mr.NodeID})
	if err == nil && res.Err != nil && !errors.Is(res.Err, errUnknownMember) {
		err = proto.Errorf(proto.ErrInvalid, "remove meta %s: %v", mr.NodeID, res.Err)
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.raft.RemoveServer(raft.ServerID(mr.NodeID), 0, 10*time.Second).Error(); err != nil {
		writeErr(conn, n.raftError(&command{Type: cmdRemove, Kind: proto.KindMeta, ID: mr.NodeID}, err))
		return
	}
	n.log.Info("meta voter removed", "removed", mr.NodeID, "voters", voters-1)
	conn.WriteString("OK")
}

// handleHandoff finishes a move: the data leader From reports it handed
// the slot over to To. Replies the table epoch after it; a handoff that
// no longer matches the table (cancelled move, changed leader, wrong
// leader epoch) gets ERR with the reason, and the sender must go by the
// table, which still names its leader.
func (n *Node) handleHandoff(conn redcon.Conn, args [][]byte) {
	h, err := proto.ParseHandoff(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	res, err := n.propose(&command{Type: cmdFinishMove, Slot: h.Slot, From: h.From, To: h.To, LeaderEpoch: h.LeaderEpoch})
	if err == nil && res.Err != nil {
		n.log.Warn("handoff refused", "slot", h.Slot, "from", h.From, "to", h.To, "leaderEpoch", h.LeaderEpoch, "err", res.Err)
		err = proto.Errorf(proto.ErrInvalid, "handoff refused: %v", res.Err)
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	if res.Changed {
		n.log.Info("move finished", "slot", h.Slot, "from", h.From, "to", h.To,
			"leaderEpoch", h.LeaderEpoch+1, "epoch", res.Epoch)
	}
	conn.WriteInt64(int64(res.Epoch))
}

// handleMoveSlot starts one move; replies the table epoch after it.
func (n *Node) handleMoveSlot(conn redcon.Conn, args [][]byte) {
	m, err := proto.ParseMoveSlot(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	res, err := n.propose(&command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: m.Slot, To: m.To}}})
	if err == nil {
		err = res.Err
		if err == nil && len(res.MoveErrs) == 1 {
			err = res.MoveErrs[0]
		}
		if err != nil {
			err = proto.Errorf(proto.ErrInvalid, "move refused: %v", err)
		}
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	n.log.Info("move started", "by", "moveslot", "slot", m.Slot, "to", m.To, "epoch", res.Epoch)
	conn.WriteInt64(int64(res.Epoch))
}

// handleRebalance plans leader moves (rebalancePlan: slot.PlanMoves among
// the nodes that are not draining) and, unless it is a dry run, starts
// them; replies proto.RebalanceReply as JSON.
func (n *Node) handleRebalance(conn redcon.Conn, args [][]byte) {
	r, err := proto.ParseRebalance(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	st := n.store.state()
	tb := st.Table
	if tb == nil {
		writeErr(conn, proto.Errorf(proto.ErrUnavailable, "meta %s: no table yet", n.cfg.NodeID))
		return
	}
	plan := rebalancePlan(st, r.MaxMoves)
	reply := proto.RebalanceReply{Epoch: tb.Epoch}
	if !r.DryRun && len(plan) > 0 {
		if plan, reply.Epoch, err = n.startMoves(plan, "rebalance"); err != nil {
			writeErr(conn, err)
			return
		}
		reply.Started = len(plan) > 0
	}
	for _, m := range plan {
		reply.Moves = append(reply.Moves, proto.SlotMove{Slot: m.Slot, From: m.From, To: m.To})
	}
	conn.WriteBulk(reply.AppendJSON(nil))
}

// handleCancelMove cancels a slot's move; replies the table epoch after it.
func (n *Node) handleCancelMove(conn redcon.Conn, args [][]byte) {
	c, err := proto.ParseCancelMove(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	res, err := n.propose(&command{Type: cmdCancelMove, Slot: c.Slot, Reason: reasonAdmin})
	if err == nil && res.Err != nil {
		err = proto.Errorf(proto.ErrInvalid, "cancel refused: %v", res.Err)
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	n.log.Info("move cancelled", "slot", c.Slot, "reason", reasonAdmin, "epoch", res.Epoch)
	conn.WriteInt64(int64(res.Epoch))
}

// handleDrain marks a data node as draining; replies the table epoch
// after it. The move loop then moves the node's slots away.
func (n *Node) handleDrain(conn redcon.Conn, args [][]byte) {
	d, err := proto.ParseDrain(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	n.applyDrainRPC(conn, &command{Type: cmdDrain, ID: d.NodeID})
}

// handleUndrain ends a data node's draining; replies the table epoch.
func (n *Node) handleUndrain(conn redcon.Conn, args [][]byte) {
	u, err := proto.ParseUndrain(args)
	if err != nil {
		writeErr(conn, err)
		return
	}
	n.applyDrainRPC(conn, &command{Type: cmdUndrain, ID: u.NodeID})
}

// applyDrainRPC proposes a drain or undrain on the leader and replies.
func (n *Node) applyDrainRPC(conn redcon.Conn, c *command) {
	if err := n.leaderGate(); err != nil {
		writeErr(conn, err)
		return
	}
	res, err := n.propose(c)
	if err == nil && res.Err != nil {
		err = proto.Errorf(proto.ErrInvalid, "%s refused: %v", c.Type, res.Err)
	}
	if err != nil {
		writeErr(conn, err)
		return
	}
	if res.Changed {
		msg := "data node draining; moving its slots away"
		if c.Type == cmdUndrain {
			msg = "data node no longer draining"
		}
		st := n.store.state()
		n.log.Info(msg, "node", c.ID, "leads", len(st.Table.LedBy(c.ID)), "draining", len(st.Draining), "epoch", res.Epoch)
	}
	conn.WriteInt64(int64(res.Epoch))
}
