// Package client is a Go client for slotreg sessions, built on go-redis v9,
// that keeps a process's registrations and subscriptions alive across the
// loss of the session it talks to.
//
// A publisher in slotreg belongs to the client connection that registered
// it: when that connection closes, or its session dies, the publisher is
// removed. A raw Redis client therefore has to notice the loss and publish
// again. This package does it: a Client holds one session at a time, sends
// every REGISTER and UNREGISTER over one dedicated connection that go-redis
// never swaps behind its back, and when that session fails it picks the
// next one from Options.Sessions, replays every registration and
// subscription there, and only then reports itself ready again (Ready,
// WaitReady, Status). Between attempts it backs off with jitter, so a fleet
// of clients does not stampede the surviving sessions.
//
// Options.Scope picks the publishers that lookups, subscriptions and
// watches see: those of the session's zone, of its datacenter (the
// default) or of every datacenter. The client sends it (SCOPE) on every
// connection it opens, so it holds across failovers. A Watch keeps one
// record per path: under ScopeGlobal, a path set in two datacenters at
// once shows as the one whose event came last, and the removal of either
// reads as the path's (the session's events tell them apart by their
// datacenter; a LOOKUP after a failover does not). Paths meant to be
// watched across datacenters should have names of their own per
// datacenter.
//
// Subscriptions deliver each dataInfoId's newest state to a callback,
// coalesced (a slow callback gets the latest state, not a queue) and never
// older than a state the callback already got, also across a failover. The
// last state per subscription is kept, and Lookup answers from it, marked
// Stale, when no session can be reached.
//
// The path surface is DolphinScheduler's Registry on slotreg (DESIGN.md,
// "Paths"): Put (ephemeral values are registrations of this client, so
// they are replayed like any other; persistent and TTL values belong to
// no connection), Get, Delete, Exists and Children; Watch, a prefix
// watch (PSUBSCRIBE) whose ADD, UPDATE and REMOVE events are coalesced
// per path, never go back in version, and are brought up to date after
// a failover, removals included; AcquireLock, AcquireLockTimeout and
// ReleaseLock, global locks held in the name of Options.Identity, each
// on a connection of its own, renewed in the background and reported
// lost (OnLockLost), never replayed, when their session goes; and
// OnStateChange, which reports CONNECTED, DISCONNECTED and RECONNECTED.
//
// What the package owns: the desired state (registrations, subscriptions,
// watches, held locks) and the goroutines that keep one session in line
// with it. It must never reuse a connection go-redis may have replaced
// without replaying, never deliver a version lower than one already
// delivered, never keep a lock across the loss of the connection that
// held it, and never leave a goroutine behind after Close.
package client
