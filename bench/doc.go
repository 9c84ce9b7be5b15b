// Package bench is slotreg's end-to-end load harness: it drives session
// nodes (or a Redis or etcd peer) over the network with the workloads of
// issue 5 (register, lookup, push latency, fan-out, churn, failover,
// memory), and issue 18's scale curve over cluster shapes, and reports
// throughput and HdrHistogram latency distributions.
//
// It owns no registry logic: it is a client of the RESP protocol, plus a
// launcher for real registry processes (StartLocal, ScriptCluster) when
// asked to bring its own cluster. Every load loop is bounded in time and
// count and stops by itself; every address it dials or starts is on
// loopback unless the caller names another target.
//
// cmd/registry-bench is the command-line front end; etcdpeer/ is a
// separate Go module so that the registry's own binaries never depend on
// the etcd client.
package bench
