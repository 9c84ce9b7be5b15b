#!/usr/bin/env bash
# Starts, stops and lists a local multi-process slotreg cluster on loopback
# (or, as root, with every node in its own network namespace; see below):
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
# State, logs and pid files go to SLOTREG_CLUSTER_DIR (default .cluster/);
# it remembers the base port it was made with and refuses another.
# SLOTREG_BIN names the registry binary (default bin/registry, built when
# missing). SLOTREG_LEASE sets the meta lease (default 3s).
# SLOTREG_HEARTBEAT sets the data and session nodes' heartbeat (default
# 500ms; keep it well under the lease).
# SLOTREG_AUTO_REBALANCE=0 turns meta's --auto-rebalance off (default on).
# The nodes inherit the environment, so SLOTREG_CLUSTER_SECRET (and the
# other SLOTREG_TLS_* settings but SLOTREG_TLS_ADMIN: the readiness probe
# below speaks plain HTTP) reach every node; see docs/security.md.
# `start data4` (up to data9) adds a data node beyond the first three.
#
# Datacenters: SLOTREG_DATACENTER names this cluster's datacenter (default
# dc1) and SLOTREG_REMOTE_DATACENTERS lists the others' meta RPC addresses
# (NAME=HOST:PORT[,HOST:PORT][;NAME=...], meta's --remote-datacenters);
# the nodes read both from the environment. So two clusters with their own
# SLOTREG_BASE_PORT and SLOTREG_CLUSTER_DIR form two datacenters on one
# machine. SLOTREG_SESSION_ZONES=z1,z2 gives session1 and session2 their
# zones (default: the datacenter's name).
#
# As root, SLOTREG_NETNS=1 runs every node in its own network namespace,
# and `partition`, `slow` and `heal` cut or degrade links between them:
# scripts/netns.sh, sourced below, describes that mode and implements it.
#   scripts/cluster.sh partition A [B...] [-- C [D..]]
#   scripts/cluster.sh slow ID DELAY [LOSS%]
#   scripts/cluster.sh heal
set -euo pipefail

B=${SLOTREG_BASE_PORT:-19000}
DIR=${SLOTREG_CLUSTER_DIR:-.cluster}
BIN=${SLOTREG_BIN:-bin/registry}
LEASE=${SLOTREG_LEASE:-3s}
BEAT=${SLOTREG_HEARTBEAT:-500ms}
AUTO=--auto-rebalance
[ "${SLOTREG_AUTO_REBALANCE:-1}" = 0 ] && AUTO=""

# The checkout this script belongs to (for building scripts/netdelay).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Network-namespace mode: asked for with SLOTREG_NETNS=1, remembered by the
# marker file `up` writes.
BR=slotreg-br0
BRIP=10.77.0.254
MARK=$DIR/netns
NETNS=0
if [ "${SLOTREG_NETNS:-0}" = 1 ] || [ -f "$MARK" ]; then
	NETNS=1
fi

# ip_of ID: the node's address: 127.0.0.1, or its 10.77.0.x in netns mode.
ip_of() {
	local i=${1: -1}
	if [ "$NETNS" != 1 ]; then
		echo 127.0.0.1
		return
	fi
	case "$1" in
	meta[1-3]) echo "10.77.0.1$i" ;;
	data[1-9]) echo "10.77.0.2$i" ;;
	session[1-2]) echo "10.77.0.3$i" ;;
	*) return 1 ;;
	esac
}

# valid_id ID: one of meta1-3, data1-9, session1-2.
valid_id() {
	case "$1" in
	meta[1-3] | data[1-9] | session[1-2]) return 0 ;;
	*) return 1 ;;
	esac
}

M1=$(ip_of meta1) M2=$(ip_of meta2) M3=$(ip_of meta3)
META_RPCS="$M1:$((B + 21)),$M2:$((B + 22)),$M3:$((B + 23))"
PEERS="meta1=$M1:$((B + 11)),meta2=$M2:$((B + 12)),meta3=$M3:$((B + 13))"

# zone_arg I: --zone for session I from SLOTREG_SESSION_ZONES, if set.
zone_arg() {
	local zones z
	[ -n "${SLOTREG_SESSION_ZONES:-}" ] || return 0
	IFS=, read -r -a zones <<<"$SLOTREG_SESSION_ZONES"
	z=${zones[$(($1 - 1))]:-}
	[ -z "$z" ] || echo " --zone $z"
}

# node_line ID: role id address http extra-args
node_line() {
	valid_id "$1" || return 1
	local i=${1: -1} h
	h=$(ip_of "$1")
	case "$1" in
	meta[1-3]) echo "meta meta$i $h:$((B + 20 + i)) $h:$((B + 30 + i)) --raft $h:$((B + 10 + i)) --rpc $h:$((B + 20 + i)) --peers $PEERS --data-dir $DIR/meta$i --lease $LEASE $AUTO" ;;
	data[1-9]) echo "data data$i $h:$((B + 40 + i)) $h:$((B + 50 + i)) --listen $h:$((B + 40 + i)) --meta $META_RPCS --heartbeat $BEAT" ;;
	session[1-2]) echo "session session$i $h:$((B + 60 + i)) $h:$((B + 70 + i)) --listen $h:$((B + 60 + i)) --meta $META_RPCS --heartbeat $BEAT$(zone_arg "$i")" ;;
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
# alive PID: the process exists and is not a zombie (a killed node whose
# parent, init here, has not reaped it yet is gone for our purposes).
alive() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
	local st
	st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
	[ "$st" != Z ]
}

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

# shellcheck source=scripts/netns.sh
. "$ROOT/scripts/netns.sh"

# --- nodes ----------------------------------------------------------------

# launch ROLE ID HTTP ARGS...: start one node in the background. In netns
# mode, `ip netns exec` execs the binary, so $! is still the node's pid.
launch() {
	local role=$1 id=$2 http=$3
	shift 3
	if alive "$(pid_of "$id")"; then
		echo "$id already running"
		return
	fi
	if [ "$NETNS" = 1 ]; then
		net_node "$id"
		ip netns exec "slotreg-$id" "$BIN" "$role" --id "$id" --http "$http" "$@" >>"$DIR/$id.log" 2>&1 &
	else
		"$BIN" "$role" --id "$id" --http "$http" "$@" >>"$DIR/$id.log" 2>&1 &
	fi
	echo $! >"$DIR/$id.pid"
}

build() {
	if [ ! -x "$BIN" ]; then
		echo "building $BIN"
		go build -o "$BIN" ./cmd/registry
	fi
	mkdir -p "$DIR"
	same_ports
}

# same_ports: the state in DIR was made with this base port, or there is
# none yet. The metas keep their peers' addresses in their Raft state, so
# a cluster started again on other ports over the same DIR could never
# elect a leader; refuse, saying what to do.
same_ports() {
	local was
	was=$(cat "$DIR/base_port" 2>/dev/null || true)
	if [ -n "$was" ] && [ "$was" != "$B" ] && ls -d "$DIR"/meta[1-3] >/dev/null 2>&1; then
		echo "$DIR holds a cluster made with SLOTREG_BASE_PORT=$was, not $B: its metas would look for their peers on the old ports." >&2
		echo "Use another SLOTREG_CLUSTER_DIR for base port $B, or SLOTREG_BASE_PORT=$was, or remove $DIR (after 'down') to start afresh." >&2
		exit 2
	fi
	echo "$B" >"$DIR/base_port"
}

up() {
	local role id addr http args
	build
	[ "$NETNS" = 1 ] && netns_up
	while read -r role id addr http args; do
		# shellcheck disable=SC2086
		launch "$role" "$id" "$http" $args
	done < <(nodes)
	wait_ready ""
	echo "cluster up: clients connect to $(ip_of session1):$((B + 61)) or $(ip_of session2):$((B + 62))"
}

start() {
	local line
	if ! line=$(node_line "$1"); then
		echo "no node $1: ids are meta1-3, data1-9, session1-2" >&2
		exit 2
	fi
	build
	[ "$NETNS" = 1 ] && need_root_tools
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
	if [ "$NETNS" = 1 ]; then
		need_root_tools
		delayers_stop
	fi
	rm -f "$DIR"/*.pid
	if [ "$NETNS" = 1 ]; then
		net_teardown
		rm -f "$MARK"
	fi
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
partition)
	shift
	partition "$@"
	;;
slow)
	shift
	slow "$@"
	;;
heal) heal ;;
*)
	echo "usage: $0 up|down|status|start ID|partition A.. [-- C..]|slow ID DELAY [LOSS%]|heal" >&2
	exit 2
	;;
esac
