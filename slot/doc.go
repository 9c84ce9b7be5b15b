// Package slot owns slotreg's slot table: the fixed mapping of every
// dataInfoId onto one of Count slots, and the assignment of each slot to one
// leader data node plus followers.
//
// It is the single place where the balancing rules live, so that the meta
// Raft group (which recomputes the table when data nodes join or leave), the
// data nodes (which ask "do I lead this slot?") and the clients (which route
// by LeaderOf) all agree bit for bit.
//
// Leadership only moves in two data-safe ways:
//
//   - Failover: when a leader leaves, Balance (or BalanceWith, naming the
//     most caught-up follower) promotes a follower at once, raising the
//     slot's LeaderEpoch.
//   - Migration: a join never moves a leader; a new node only gets follower
//     places. Meta evens leaders out with PlanMoves, then for each move
//     StartMove sets the slot's Target (adding it as an extra follower if it
//     was not one), the old leader hands the slot over once the Target has
//     caught up, and FinishMove makes the Target the leader (or CancelMove
//     abandons the move).
//
// Because the table is recomputed inside a replicated state machine, every
// function here must be pure and deterministic: the same inputs must produce
// the same table on every replica. The package must therefore never do I/O,
// start goroutines, read the clock, use randomness, or depend on map
// iteration order. Callers own persistence, transport and timing.
package slot
