// Package e2e holds slotreg's black-box tests: go-redis (and redis-cli,
// where installed) against real listeners, first with a whole cluster in
// one process, then with the real binaries started by scripts/cluster.sh.
package e2e
