#!/usr/bin/env bash
# Starts, stops and lists a local multi-process slotreg cluster on loopback:
# 3 meta, 3 data and 2 session nodes, every port offset from
# SLOTREG_BASE_PORT (default 19000).
#
#   scripts/cluster.sh up       build if needed, start, wait until ready
#   scripts/cluster.sh down     stop every node (SIGINT, then SIGKILL)
#   scripts/cluster.sh status   one line per node: role id address pid state
#   scripts/cluster.sh start ID start one node that is not running (after a kill)
#
# Ports (B = SLOTREG_BASE_PORT, i = 1..3):
#   meta i:    raft B+10+i, rpc B+20+i, http B+30+i
#   data i:    listen B+40+i, http B+50+i
#   session i: listen B+60+i, http B+70+i   (clients connect here)
# State, logs and pid files go to SLOTREG_CLUSTER_DIR (default .cluster/).
# SLOTREG_BIN names the registry binary (default bin/registry, built when
# missing). SLOTREG_LEASE sets the meta lease (default 3s).
# SLOTREG_HEARTBEAT sets the data and session nodes' heartbeat (default
# 500ms; keep it well under the lease).
# SLOTREG_AUTO_REBALANCE=0 turns meta's --auto-rebalance off (default on).
# The nodes inherit the environment, so SLOTREG_CLUSTER_SECRET (and the
# other SLOTREG_TLS_* settings but SLOTREG_TLS_ADMIN: the readiness probe
# below speaks plain HTTP) reach every node; see docs/security.md.
# `start data4` (up to data9) adds a data node beyond the first three.
set -euo pipefail

B=${SLOTREG_BASE_PORT:-19000}
DIR=${SLOTREG_CLUSTER_DIR:-.cluster}
BIN=${SLOTREG_BIN:-bin/registry}
LEASE=${SLOTREG_LEASE:-3s}
BEAT=${SLOTREG_HEARTBEAT:-500ms}
AUTO=--auto-rebalance
[ "${SLOTREG_AUTO_REBALANCE:-1}" = 0 ] && AUTO=""
HOST=127.0.0.1

META_RPCS="$HOST:$((B + 21)),$HOST:$((B + 22)),$HOST:$((B + 23))"
PEERS="meta1=$HOST:$((B + 11)),meta2=$HOST:$((B + 12)),meta3=$HOST:$((B + 13))"

# node_line ID: role id address http extra-args
node_line() {
	local i=${1: -1}
	case "$1" in
	meta[1-3]) echo "meta meta$i $HOST:$((B + 20 + i)) $HOST:$((B + 30 + i)) --raft $HOST:$((B + 10 + i)) --rpc $HOST:$((B + 20 + i)) --peers $PEERS --data-dir $DIR/meta$i --lease $LEASE $AUTO" ;;
	data[1-9]) echo "data data$i $HOST:$((B + 40 + i)) $HOST:$((B + 50 + i)) --listen $HOST:$((B + 40 + i)) --meta $META_RPCS --heartbeat $BEAT" ;;
	session[1-2]) echo "session session$i $HOST:$((B + 60 + i)) $HOST:$((B + 70 + i)) --listen $HOST:$((B + 60 + i)) --meta $META_RPCS --heartbeat $BEAT" ;;
	*) return 1 ;;
	esac
}

# nodes: the standard 3 meta, 3 data, 2 sessions, then any extra data node
# started with `start dataN`.
nodes() {
	for id in meta1 meta2 meta3 data1 data2 data3 session1 session2; do
		node_line "$id"
	done
	for i in 4 5 6 7 8 9; do
		[ -f "$DIR/data$i.pid" ] && node_line "data$i"
	done
	return 0
}

pid_of() { cat "$DIR/$1.pid" 2>/dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# ready ADDR: the node's /readyz answers 200.
ready() {
	(
		host=${1%:*} port=${1##*:}
		exec 3<>"/dev/tcp/$host/$port" || exit 1
		printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
		read -r -t 2 line <&3 || line=""
		[[ "$line" == *" 200 "* ]]
	) 2>/dev/null
}

# launch ROLE ID HTTP ARGS...: start one node in the background.
launch() {
	local role=$1 id=$2 http=$3
	shift 3
	if alive "$(pid_of "$id")"; then
		echo "$id already running"
		return
	fi
	"$BIN" "$role" --id "$id" --http "$http" "$@" >>"$DIR/$id.log" 2>&1 &
	echo $! >"$DIR/$id.pid"
}

build() {
	if [ ! -x "$BIN" ]; then
		echo "building $BIN"
		go build -o "$BIN" ./cmd/registry
	fi
	mkdir -p "$DIR"
}

up() {
	local role id addr http args
	build
	while read -r role id addr http args; do
		# shellcheck disable=SC2086
		launch "$role" "$id" "$http" $args
	done < <(nodes)
	wait_ready ""
	echo "cluster up: clients connect to $HOST:$((B + 61)) or $HOST:$((B + 62))"
}

start() {
	build
	local line
	if ! line=$(node_line "$1"); then
		echo "no node $1: ids are meta1-3, data1-9, session1-2" >&2
		exit 2
	fi
	# shellcheck disable=SC2086
	set -- $line
	local role=$1 id=$2 http=$4
	shift 4
	launch "$role" "$id" "$http" "$@"
	wait_ready "$id"
	echo "$id started"
}

# wait_ready [ID]: wait until every node (or just ID) answers /readyz.
wait_ready() {
	local deadline=$((SECONDS + 60)) role id addr http args
	while read -r role id addr http args; do
		if [ -n "$1" ] && [ "$id" != "$1" ]; then
			continue
		fi
		[ -f "$DIR/$id.pid" ] || continue
		until ready "$http"; do
			if ! alive "$(pid_of "$id")"; then
				echo "$id exited; its log ($DIR/$id.log):" >&2
				tail -20 "$DIR/$id.log" >&2
				exit 1
			fi
			if [ $SECONDS -ge $deadline ]; then
				echo "$id not ready after 60s; its log ($DIR/$id.log):" >&2
				tail -20 "$DIR/$id.log" >&2
				exit 1
			fi
			sleep 0.1
		done
	done < <(nodes)
}

down() {
	local pids=() role id addr http args
	while read -r role id addr http args; do
		local p
		p=$(pid_of "$id")
		if alive "$p"; then
			# SIGINT: the whole cluster goes, so data nodes need not
			# hand their slots to each other first (SIGTERM would).
			kill -INT "$p" 2>/dev/null || true
			pids+=("$p")
		fi
	done < <(nodes)
	local deadline=$((SECONDS + 15))
	for p in "${pids[@]}"; do
		while alive "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		alive "$p" && kill -KILL "$p" 2>/dev/null || true
	done
	rm -f "$DIR"/*.pid
	echo "cluster down"
}

status() {
	local role id addr http args
	while read -r role id addr http args; do
		local p state=down
		p=$(pid_of "$id")
		alive "$p" && state=up
		echo "$role $id $addr ${p:--} $state"
	done < <(nodes)
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
start)
	[ -n "${2:-}" ] || {
		echo "usage: $0 start ID" >&2
		exit 2
	}
	start "$2"
	;;
*)
	echo "usage: $0 up|down|status|start ID" >&2
	exit 2
	;;
esac
