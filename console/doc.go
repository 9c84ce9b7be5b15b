// Package console is slotreg's web console: a single page served at /ui/
// on every meta node's HTTP endpoint, and the JSON API under /ui/api/ it
// polls. It shows the nodes (role, health, lease age), the slot map with
// the moves in progress and how far each has got, per-node stats, a
// search over dataInfoIds and paths by prefix with their publishers and
// subscriber counts, the config keys with their history, and the held
// locks.
//
// It owns the page's assets (embedded, plain HTML, CSS and JS: no build
// step, nothing fetched from elsewhere) and the fan-out that feeds the
// API: TABLE, NODES, CONFLIST and MLOCKLIST from the meta leader, DSTATS
// and DSCAN from the data nodes, INFO and SLOTREG SUBS from the sessions,
// each call bounded by a short timeout, with one result shared by every
// browser tab for a short while.
//
// It holds no state of the cluster's and never writes anything, except
// through its three kinds of action (move a slot; drain or undrain a
// data node; rebalance), which are POSTs that must carry the admin
// password or the cluster secret, and which it hands to the meta leader
// as registryctl would. Every GET is read-only.
package console
