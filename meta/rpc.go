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

// rpcCommand is one row of meta's RPC table: everything dispatch needs
// to know about a command. A new command is one row (rpcCommands) and
// its handler.
type rpcCommand struct {
	name string
	// arity counts the arguments with the name, as Redis's COMMAND does:
	// n is exactly n, -n is at least n (the parser checks the rest).
	arity int
	// leaderOnly commands are served only by a leader that finished
	// taking over (leaderGate); the others are answered by any meta.
	leaderOnly bool
	// parse turns the arguments into the request (a parser in proto, or
	// one that adds meta's own checks); run handles it and either writes
	// the reply and returns nil, or returns the error to reply with.
	parse func(args [][]byte) (any, error)
	run   func(conn redcon.Conn, req any) error
}

// Whether a command needs the leader, for the rows of rpcCommands.
const (
	leaderOnly = true
	anyMeta    = false
)

// rpc makes a row from a typed parser and handler.
func rpc[T any](name string, arity int, onLeader bool, parse func([][]byte) (T, error), run func(redcon.Conn, T) error) rpcCommand {
	return rpcCommand{name: name, arity: arity, leaderOnly: onLeader,
		parse: func(args [][]byte) (any, error) { return parse(args) },
		run:   func(conn redcon.Conn, req any) error { return run(conn, req.(T)) },
	}
}

// rawArgs is the parser of commands whose handler reads the arguments
// itself.
func rawArgs(args [][]byte) ([][]byte, error) { return args, nil }

// rpcCommands is meta's RPC table.
func (n *Node) rpcCommands() []rpcCommand {
	return []rpcCommand{
		rpc(proto.CmdPing, -1, anyMeta, rawArgs, n.handlePing),
		rpc(proto.CmdHeartbeat, -5, leaderOnly, n.parseHeartbeat, n.handleHeartbeat),
		rpc(proto.CmdLeave, 3, leaderOnly, proto.ParseLeave, n.handleLeave),
		rpc(proto.CmdSuspect, 4, leaderOnly, proto.ParseSuspect, n.handleSuspect),
		rpc(proto.CmdTableWait, 4, leaderOnly, proto.ParseTableWait, n.handleTableWait),
		rpc(proto.CmdTable, 1, anyMeta, rawArgs, n.handleTable),
		rpc(proto.CmdNodes, 1, anyMeta, rawArgs, n.handleNodes),
		rpc(proto.CmdRemotes, 1, anyMeta, rawArgs, n.handleRemotes),
		rpc(proto.CmdMetaJoin, 3, leaderOnly, proto.ParseMetaJoin, n.handleMetaJoin),
		rpc(proto.CmdMetaRemove, 2, leaderOnly, proto.ParseMetaRemove, n.handleMetaRemove),
		rpc(proto.CmdHandoff, 5, leaderOnly, proto.ParseHandoff, n.handleHandoff),
		rpc(proto.CmdMoveSlot, 3, leaderOnly, proto.ParseMoveSlot, n.handleMoveSlot),
		rpc(proto.CmdRebalance, 3, leaderOnly, proto.ParseRebalance, n.handleRebalance),
		rpc(proto.CmdCancelMove, 2, leaderOnly, proto.ParseCancelMove, n.handleCancelMove),
		rpc(proto.CmdDrain, 2, leaderOnly, proto.ParseDrain, n.handleDrain),
		rpc(proto.CmdUndrain, 2, leaderOnly, proto.ParseUndrain, n.handleUndrain),
		rpc(proto.CmdConfSet, 3, leaderOnly, proto.ParseConfSet, n.handleConfSet),
		rpc(proto.CmdConfDel, 2, leaderOnly, confKey(proto.CmdConfDel), n.handleConfDel),
		rpc(proto.CmdConfGet, 2, leaderOnly, confKey(proto.CmdConfGet), n.handleConfGet),
		rpc(proto.CmdConfList, -1, leaderOnly, proto.ParseConfList, n.handleConfList),
		rpc(proto.CmdConfHistory, 2, leaderOnly, confKey(proto.CmdConfHistory), n.handleConfHistory),
		rpc(proto.CmdConfWatch, 3, leaderOnly, proto.ParseConfWatch, n.handleConfWatch),
		rpc(proto.CmdMLock, -6, leaderOnly, proto.ParseMLock, n.handleMLock),
		rpc(proto.CmdMUnlock, 4, leaderOnly, proto.ParseMUnlock, n.handleMUnlock),
		rpc(proto.CmdMLockInfo, 2, leaderOnly, lockInfo(proto.CmdMLockInfo), n.handleMLockInfo),
		rpc(proto.CmdMLockList, -1, leaderOnly, proto.ParseLockList, n.handleMLockList),
		rpc(proto.CmdMPPut, 3, leaderOnly, proto.ParseMPPut, n.handleMPPut),
		rpc(proto.CmdMPDel, 2, leaderOnly, proto.ParseMPDel, n.handleMPDel),
		rpc(proto.CmdMPSlots, -1, leaderOnly, proto.ParseMPSlots, n.handleMPSlots),
	}
}

// newRPCTable keys the rows by lower-cased name; a duplicate or
// incomplete row is a programming error reported at start-up.
func (n *Node) newRPCTable() (map[string]*rpcCommand, error) {
	table := map[string]*rpcCommand{}
	for _, c := range n.rpcCommands() {
		name := strings.ToLower(c.name)
		if name == "" || c.arity == 0 || c.parse == nil || c.run == nil {
			return nil, fmt.Errorf("meta %s: rpc command %q is registered incompletely", n.cfg.NodeID, c.name)
		}
		if _, dup := table[name]; dup {
			return nil, fmt.Errorf("meta %s: rpc command %q registered twice", n.cfg.NodeID, name)
		}
		table[name] = &c
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
			n.log.Error("rpc handler panicked", "cmd", proto.Clip(cmd.Args[0]), "panic", r)
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
	c, ok := n.rpc[strings.ToLower(string(cmd.Args[0]))]
	if !ok {
		writeErr(conn, proto.Errorf(proto.ErrInvalid, "unknown command '%s'", proto.Clip(cmd.Args[0])))
		return
	}
	if err := n.serve(conn, c, cmd.Args); err != nil {
		writeErr(conn, err)
	}
}

// serve checks the arity, parses, lets a leader-only command through
// only on a ready leader, and runs the handler. A malformed request is
// refused whoever leads; only a well-formed one is redirected.
func (n *Node) serve(conn redcon.Conn, c *rpcCommand, args [][]byte) error {
	if c.arity > 0 && len(args) != c.arity || c.arity < 0 && len(args) < -c.arity {
		return proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", c.name)
	}
	req, err := c.parse(args)
	if err != nil {
		return err
	}
	if c.leaderOnly {
		if err := n.leaderGate(); err != nil {
			return err
		}
	}
	return c.run(conn, req)
}

// commit proposes c and turns a refusal by the state machine into an
// ErrInvalid reply "<refused>: <reason>"; errors of Raft itself come as
// propose gives them (NOTLEADER naming the leader, and so on).
func (n *Node) commit(c *command, refused string) (result, error) {
	res, err := n.propose(c)
	if err == nil && res.Err != nil {
		err = proto.Errorf(proto.ErrInvalid, "%s: %v", refused, res.Err)
	}
	return res, err
}

// writeErr writes err as a RESP error; line breaks would end the reply
// early, so they are replaced.
func writeErr(conn redcon.Conn, err error) {
	conn.WriteError(strings.NewReplacer("\r", " ", "\n", " ").Replace(proto.ToRESP(err)))
}

func (n *Node) handlePing(conn redcon.Conn, args [][]byte) error {
	if len(args) > 2 {
		return proto.Errorf(proto.ErrInvalid, "wrong number of arguments for '%s' command", proto.CmdPing)
	}
	if len(args) == 2 {
		conn.WriteBulk(args[1])
		return nil
	}
	conn.WriteString("PONG")
	return nil
}

// parseHeartbeat is proto.ParseHeartbeat and a check of the sender's
// address, so a malformed heartbeat is refused whoever leads.
func (n *Node) parseHeartbeat(args [][]byte) (*proto.Heartbeat, error) {
	h, err := proto.ParseHeartbeat(args)
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(h.Addr); err != nil {
		return nil, proto.Errorf(proto.ErrInvalid, "heartbeat from %s: address %q is not host:port", h.NodeID, h.Addr)
	}
	if h.Datacenter != "" && h.Datacenter != n.cfg.Datacenter {
		return nil, proto.Errorf(proto.ErrInvalid, "%s node %s is of datacenter %s; this cluster is %s's",
			h.Kind, h.NodeID, h.Datacenter, n.cfg.Datacenter)
	}
	return h, nil
}

// handleHeartbeat renews the sender's lease, records a data node's
// progress, makes the sender a member (or updates its address) through the
// log when needed, and replies with the table epoch and the members epoch
// and, where the sender's differ, the table and the session list.
func (n *Node) handleHeartbeat(conn redcon.Conn, h *proto.Heartbeat) error {
	n.leases.touch(h.Kind, h.NodeID, time.Now())
	if h.Kind == proto.KindSession {
		n.zones.Store(h.NodeID, h.Zone)
	}
	if h.Kind == proto.KindData {
		n.progress.set(h.NodeID, h.Progress)
	}
	st := n.store.state()
	if addr, ok := st.members(h.Kind)[h.NodeID]; !ok || addr != h.Addr {
		res, err := n.commit(&command{Type: cmdJoin, Kind: h.Kind, ID: h.NodeID, Addr: h.Addr},
			fmt.Sprintf("join %s node %s", h.Kind, h.NodeID))
		if err != nil {
			n.log.Warn("join failed", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "err", err)
			return err
		}
		if ok {
			n.log.Info("node address changed", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "was", addr, "epoch", res.Epoch)
		} else {
			n.log.Info("node joined", "node", h.NodeID, "kind", h.Kind, "addr", h.Addr, "epoch", res.Epoch)
		}
		st = n.store.state()
	}
	if st.Table == nil {
		return n.unavailable("no table yet")
	}
	reply := proto.HeartbeatReply{Epoch: st.Table.Epoch, MembersEpoch: st.MembersEpoch, LeaseMs: uint64(n.cfg.Lease.Milliseconds())}
	var err error
	if h.Epoch != st.Table.Epoch {
		if reply.Table, err = n.encodeTable(st.Table); err != nil {
			return n.unavailable(err.Error())
		}
	}
	if h.MembersEpoch != st.MembersEpoch {
		if reply.Sessions, err = n.encodeSessions(st); err != nil {
			return n.unavailable(err.Error())
		}
	}
	conn.WriteRaw(reply.AppendRESP(nil))
	return nil
}

// unavailable is the UNAVAILABLE error "meta <id>: <why>".
func (n *Node) unavailable(why string) error {
	return proto.Errorf(proto.ErrUnavailable, "meta %s: %s", n.cfg.NodeID, why)
}

// handleLeave removes the sender at once: :1 if it was a member, :0 if not.
// A data node's slots go to their most advanced followers, as on eviction.
func (n *Node) handleLeave(conn redcon.Conn, l *proto.Leave) error {
	res, prefer, err := n.evict(leaseKey{l.Kind, l.NodeID}, reasonLeave)
	if err != nil {
		return err
	}
	switch {
	case errors.Is(res.Err, errUnknownMember):
		conn.WriteInt(0)
	case res.Err != nil:
		return proto.Errorf(proto.ErrInvalid, "leave %s node %s: %v", l.Kind, l.NodeID, res.Err)
	default:
		n.log.Info("node left", "node", l.NodeID, "kind", l.Kind, "epoch", res.Epoch, "promotedByProgress", prefer)
		conn.WriteInt(1)
	}
	return nil
}

// handleTable replies with the local FSM's table as JSON; followers answer
// too (possibly a little stale).
func (n *Node) handleTable(conn redcon.Conn, _ [][]byte) error {
	t := n.store.state().Table
	if t == nil {
		t = n.Table()
	}
	b, err := n.encodeTable(t)
	if err != nil {
		return n.unavailable(err.Error())
	}
	conn.WriteBulk(b)
	return nil
}

// handleRemotes replies with this cluster's datacenter and the remote
// ones, as --remote-datacenters spells them.
func (n *Node) handleRemotes(conn redcon.Conn, _ [][]byte) error {
	conn.WriteArray(2)
	conn.WriteBulkString(n.cfg.Datacenter)
	conn.WriteBulkString(n.cfg.RemoteDatacenters)
	return nil
}

// handleNodes replies with Members as JSON.
func (n *Node) handleNodes(conn redcon.Conn, _ [][]byte) error {
	b, err := json.Marshal(n.Members())
	if err != nil {
		return n.unavailable(fmt.Sprintf("encode members: %v", err))
	}
	conn.WriteBulk(b)
	return nil
}

// handleMetaJoin records a voter's RPC address; only voters of the current
// Raft configuration may be recorded.
func (n *Node) handleMetaJoin(conn redcon.Conn, mj *proto.MetaJoin) error {
	voter, err := n.isVoter(mj.NodeID)
	if err != nil {
		return n.unavailable(err.Error())
	}
	if !voter {
		return proto.Errorf(proto.ErrInvalid, "%s is not a voter of the meta group", mj.NodeID)
	}
	res, err := n.commit(&command{Type: cmdRecordMeta, ID: mj.NodeID, Addr: mj.RPCAddr}, "record meta "+mj.NodeID)
	if err != nil {
		return err
	}
	if res.Changed {
		n.log.Info("recorded meta rpc address", "node", mj.NodeID, "addr", mj.RPCAddr)
	}
	conn.WriteString("OK")
	return nil
}

// handleMetaRemove takes a voter out of the Raft group: its RPC address
// record goes first (while this node surely leads), then the Raft
// configuration change, which the removed node's Raft answers by
// shutting down. Removing the leader itself is allowed: it steps down
// once the change commits and the others elect a new leader.
func (n *Node) handleMetaRemove(conn redcon.Conn, mr *proto.MetaRemove) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return n.unavailable(fmt.Sprintf("raft configuration: %v", err))
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
		return proto.Errorf(proto.ErrInvalid, "%s is not in the meta group", mr.NodeID)
	case voters <= 1:
		return proto.Errorf(proto.ErrInvalid, "%s is the last meta voter; the group cannot go on without it", mr.NodeID)
	}
	c := &command{Type: cmdRemove, Kind: proto.KindMeta, ID: mr.NodeID}
	res, err := n.propose(c)
	if err == nil && res.Err != nil && !errors.Is(res.Err, errUnknownMember) {
		err = proto.Errorf(proto.ErrInvalid, "remove meta %s: %v", mr.NodeID, res.Err)
	}
	if err != nil {
		return err
	}
	if err := n.raft.RemoveServer(raft.ServerID(mr.NodeID), 0, 10*time.Second).Error(); err != nil {
		return n.raftError(c, err)
	}
	n.log.Info("meta voter removed", "removed", mr.NodeID, "voters", voters-1)
	conn.WriteString("OK")
	return nil
}

// handleHandoff finishes a move: the data leader From reports it handed
// the slot over to To. Replies the table epoch after it; a handoff that
// no longer matches the table (cancelled move, changed leader, wrong
// leader epoch) gets ERR with the reason, and the sender must go by the
// table, which still names its leader.
func (n *Node) handleHandoff(conn redcon.Conn, h *proto.Handoff) error {
	res, err := n.commit(&command{Type: cmdFinishMove, Slot: h.Slot, From: h.From, To: h.To, LeaderEpoch: h.LeaderEpoch}, "handoff refused")
	if err != nil {
		if res.Err != nil {
			n.log.Warn("handoff refused", "slot", h.Slot, "from", h.From, "to", h.To, "leaderEpoch", h.LeaderEpoch, "err", res.Err)
		}
		return err
	}
	if res.Changed {
		n.log.Debug("move finished", "slot", h.Slot, "from", h.From, "to", h.To,
			"leaderEpoch", h.LeaderEpoch+1, "epoch", res.Epoch)
	}
	conn.WriteInt64(int64(res.Epoch))
	return nil
}

// handleMoveSlot starts one move; replies the table epoch after it.
func (n *Node) handleMoveSlot(conn redcon.Conn, m *proto.MoveSlot) error {
	res, err := n.commit(&command{Type: cmdStartMoves, Moves: []moveSpec{{Slot: m.Slot, To: m.To}}}, "move refused")
	if err == nil && len(res.MoveErrs) == 1 && res.MoveErrs[0] != nil {
		err = proto.Errorf(proto.ErrInvalid, "move refused: %v", res.MoveErrs[0])
	}
	if err != nil {
		return err
	}
	n.log.Debug("move started", "by", "moveslot", "slot", m.Slot, "to", m.To, "epoch", res.Epoch)
	n.moveRun.begin(n.log, "moveslot", 1, res.Epoch)
	conn.WriteInt64(int64(res.Epoch))
	return nil
}

// handleRebalance plans leader moves (rebalancePlan: slot.PlanMoves among
// the nodes that are not draining) and, unless it is a dry run, starts
// them; replies proto.RebalanceReply as JSON.
func (n *Node) handleRebalance(conn redcon.Conn, r *proto.Rebalance) error {
	st := n.store.state()
	tb := st.Table
	if tb == nil {
		return n.unavailable("no table yet")
	}
	plan := rebalancePlan(st, r.MaxMoves)
	reply := proto.RebalanceReply{Epoch: tb.Epoch}
	if !r.DryRun && len(plan) > 0 {
		var err error
		if plan, reply.Epoch, err = n.startMoves(plan, "rebalance"); err != nil {
			return err
		}
		reply.Started = len(plan) > 0
	}
	for _, m := range plan {
		reply.Moves = append(reply.Moves, proto.SlotMove{Slot: m.Slot, From: m.From, To: m.To})
	}
	conn.WriteBulk(reply.AppendJSON(nil))
	return nil
}

// handleCancelMove cancels a slot's move; replies the table epoch after it.
func (n *Node) handleCancelMove(conn redcon.Conn, c *proto.CancelMove) error {
	res, err := n.commit(&command{Type: cmdCancelMove, Slot: c.Slot, Reason: reasonAdmin}, "cancel refused")
	if err != nil {
		return err
	}
	n.log.Info("move cancelled", "slot", c.Slot, "reason", reasonAdmin, "epoch", res.Epoch)
	conn.WriteInt64(int64(res.Epoch))
	return nil
}

// handleDrain marks a data node as draining; replies the table epoch
// after it. The move loop then moves the node's slots away.
func (n *Node) handleDrain(conn redcon.Conn, d *proto.Drain) error {
	return n.commitDrain(conn, &command{Type: cmdDrain, ID: d.NodeID})
}

// handleUndrain ends a data node's draining; replies the table epoch.
func (n *Node) handleUndrain(conn redcon.Conn, u *proto.Undrain) error {
	return n.commitDrain(conn, &command{Type: cmdUndrain, ID: u.NodeID})
}

// commitDrain proposes a drain or undrain and replies the table epoch.
func (n *Node) commitDrain(conn redcon.Conn, c *command) error {
	res, err := n.commit(c, c.Type.String()+" refused")
	if err != nil {
		return err
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
	return nil
}
