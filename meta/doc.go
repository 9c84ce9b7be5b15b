// Package meta owns slotreg's cluster membership and its slot table: a
// small hashicorp/raft group (1, 3 or 5 voters) whose replicated state is
// the data nodes, the session nodes, the meta voters' RPC addresses and the
// 256-slot table computed from the data nodes by slot.Balance.
//
// It serves a RESP endpoint (HEARTBEAT, LEAVE, TABLE, NODES, METAJOIN, PING,
// the slot moves HANDOFF, MOVESLOT, REBALANCE, CANCELMOVE, and DRAIN and
// UNDRAIN) on every meta node, and provides the Client that data and session nodes embed to
// heartbeat to the meta leader, receive newer tables and session lists, and
// report handoffs.
//
// The leader promotes, for each slot of a departed data node, the follower
// that reported the most applied ops, and moves leadership to another node
// only through a migration the data side completes (start-move, HANDOFF);
// it cancels moves that take longer than MoveTimeout, moves every slot off
// a draining data node and, with AutoRebalance, keeps leaders even by
// starting moves itself.
//
// What meta must never do:
//   - commit heartbeats to Raft: lease times and progress reports live in
//     the leader's memory only; the log sees membership changes (join,
//     address change, leave, eviction) and moves, so its size follows
//     churn, not fleet size times rate;
//   - read the clock, draw random numbers or depend on map order inside the
//     FSM: every replica must compute the same table from the same log;
//   - change the table anywhere but through the Raft log on the leader;
//   - exit the process or block a caller forever: errors are returned, and
//     every wait is bounded by a timeout or the caller's context;
//   - hold publisher data: that belongs to the data nodes.
//
// See DESIGN.md in this directory for the log commands, the lease rules,
// how followers learn the leader's RPC address, and bootstrapping.
package meta
