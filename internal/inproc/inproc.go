// Package inproc is the contract between roles that share a process
// (`registry node`, `registry dev`): a session reaches a data node of its
// own process by calls instead of through the data node's port. It holds
// interfaces only, so that neither role package imports the other.
//
// Only the two hot paths go this way: write batches (DWRITE) and the
// change feed. Everything else a session asks a data node (lookups,
// reconciles, status) still goes over the port, as it does to a data node
// in another process.
package inproc

import "github.com/slotreg/slotreg/proto"

// Data is a data node in this process.
type Data interface {
	// Addr is the address the slot table gives for the node: a session
	// reaches the node by calls wherever the table routes it there.
	Addr() string
	// ApplyWrite applies a write batch as DWRITE does, with the same
	// checks, and answers per op: results[i] is op i's result unless
	// refused is non-nil and refused[i] is not. It gives every op the
	// batch's Zone, as DWRITE's parse does; w is the caller's again once
	// it returns.
	ApplyWrite(w *proto.DWrite) (results []uint64, refused []error)
	// OpenFeed opens a change feed, the calls' form of a SUBSCRIBE stream
	// on the port: deliver gets the newest state of each watched id,
	// from one goroutine, once the id is watched and after each change.
	OpenFeed(deliver func(*proto.Datum)) Feed
}

// Feed is a change feed from a Data. Its methods take what the port's
// (P)SUBSCRIBE and (P)UNSUBSCRIBE take: dataInfoIds, and path prefixes
// without their '*'.
type Feed interface {
	Watch(ids []string)
	Unwatch(ids []string)
	WatchPrefixes(prefixes []string)
	UnwatchPrefix(prefix string)
	Close()
}
