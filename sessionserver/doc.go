// Package sessionserver is the session role: it holds the client
// connections (RESP, so any Redis client works), their publishers and
// subscribers, routes every write by slot to the data node that leads the
// slot, and pushes the newest state of a dataInfoId to its subscribers.
//
// A session is the source of truth for the connection-bound publishers its
// clients made: when a slot changes leader it sends them to the new leader
// again. It must never push a subscriber a version lower than one that
// subscriber already got, never let a slow subscriber queue more than one
// pending state per dataInfoId, and never let one client's bad input touch
// another client's data.
//
// Where things are: commands.go is the table of client commands (one row
// each: name, kind, arity, docs, proto parser, handler); conn.go the read
// loop that dispatches through it; writes.go the slot writes and LOOKUP;
// pubsub.go SUBSCRIBE and the push loop; router.go the links to the data
// nodes, which follow a NOTOWNER to the owner it names when that node's
// table is newer than the session's, as Redis Cluster clients follow
// MOVED.
package sessionserver
