// Package dataserver is the data role: for every slot this node leads it
// holds the datums (a tidwall/btree keyed by dataInfoId), issues their
// versions, keeps the slot's op-log and streams change notices to the
// sessions that watch a dataInfoId.
//
// The slot is the unit: a slotUnit (unit.go, unit_repl.go, unit_paths.go) owns one
// slot's store and op-log, this node's role for it, its followers' acks,
// its reconcile and handoff state and its watchers, under a lock no other
// file takes; the node holds 256 of them and the rest of the package calls
// their methods. Commands reach their handlers through one table
// (commands.go).
//
// It must never accept a write for a slot it does not lead by its latest
// table (it refuses with NOTOWNER naming the owner), never issue a version
// lower than one it issued before for the same dataInfoId, and never block
// a writer on a slow watcher: notices coalesce per watcher.
package dataserver
