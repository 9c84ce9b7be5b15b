#!/usr/bin/env bash
# Network-namespace mode of scripts/cluster.sh, which sources this file
# after setting B, DIR, NETNS, BR, BRIP and MARK and defining ip_of,
# valid_id, alive and pid_of. It is not run on its own.
#
# Network-namespace mode (root only; needs iproute2 `ip`/`tc` and `nft`,
# and for slow without netem iptables-legacy and go; see below):
#
#   SLOTREG_NETNS=1 scripts/cluster.sh up
#
# runs every node in its own network namespace slotreg-<id> (slotreg-meta1,
# slotreg-data2, slotreg-session1, ...), joined by a veth pair (sr-<id> in
# the root namespace, eth0 inside) to the bridge slotreg-br0, which holds
# 10.77.0.254/24 in the root namespace (where clients and tests run).
# Addresses: meta1..3 10.77.0.11..13, data1..9 10.77.0.21..29, session1..2
# 10.77.0.31..32, with the same ports as above; every node listens on and
# advertises its own address, and `status` prints it. The namespaces have
# no default route: 10.77.0.0/24 is used only on that bridge, and no
# other address is ever a target. `up` writes the marker file
# $SLOTREG_CLUSTER_DIR/netns, so the later commands (start, status, down,
# partition, slow, heal) need not set SLOTREG_NETNS again. The names are
# fixed, so only one netns cluster can exist on a machine at a time: `up`
# refuses while another one's processes live in slotreg-* namespaces, and
# otherwise first removes what a crashed run left behind. `down` stops the
# nodes, then removes every slotreg-* namespace, sr-* link, the bridge, and
# with them every nft table and qdisc the commands below made; it succeeds
# when some or all of them are already gone. `start ID` creates the node's
# namespace and link when missing (e.g. for data4).
# (If br_netfilter is loaded, the root namespace's forward rules also see
# the bridged traffic: a firewall there that drops forwarded packets
# would cut the nodes off from each other.)
#
# Faults, in netns mode only (elsewhere they exit 2):
#
#   scripts/cluster.sh partition A [B...]            cut A,B.. off from all else
#   scripts/cluster.sh partition A [B...] -- C [D..] cut A,B.. off from C,D..
#   scripts/cluster.sh slow ID DELAY [LOSS%]         e.g. slow data1 100ms 5%
#   scripts/cluster.sh heal                          undo every partition/slow
#
# partition silently drops (no RST, no ICMP) every packet, both ways,
# between each node of the first group and every address on the bridge
# but the first group's own (the other nodes and the root namespace,
# 10.77.0.254), or with `--` only those of the second group. Established
# connections stall too. It is an nft table `inet slotreg` (input and output
# chains, ip saddr/daddr drop rules on eth0) in the first group's
# namespaces, and, for the `--` form, the mirrored rules in the second
# group's namespaces that exist. Partitions accumulate until `heal`.
# slow adds DELAY to each direction of the node's link (so a round trip
# through it grows by 2*DELAY) and drops LOSS percent (default 0) of the
# packets in each direction. Calling slow again for the same node replaces
# its setting. Where the kernel has sch_netem, that is a netem qdisc on
# the namespace's eth0 (what the node sends) and one on the root side
# sr-ID (what it receives). Where it has none, slow uses netfilter in the
# node's namespace instead (needs iptables-legacy, from Debian's iptables
# package, and the kernel's NFQUEUE target):
#   - DELAY other than 0: two iptables-legacy rules send every packet in
#     (INPUT -i eth0) and out (OUTPUT -o eth0) to nfqueue 77, and
#     scripts/netdelay, running in the namespace, holds each one DELAY
#     before accepting it (many in flight at once, in order) and drops
#     LOSS percent, so each direction again gets DELAY and LOSS. slow
#     builds it into $SLOTREG_CLUSTER_DIR/netdelay when missing (with go,
#     from this checkout), starts it before the rules, waits until it has
#     bound the queue (it prints "ready" to $SLOTREG_CLUSTER_DIR/
#     netdelay-ID.log), and keeps its pid in netdelay-ID.pid. Were it to
#     die, the rules would drop the node's traffic (no --queue-bypass),
#     never pass it undelayed.
#   - DELAY 0: LOSS alone, by nft random drops (table inet slotreg_slow);
#     LOSS must then be a whole percentage.
# heal removes the nft tables and iptables rules from every node namespace
# and the qdiscs from every eth0 and sr-* link, and stops every netdelay
# (SIGTERM: it first lets the packets it holds through); down does too.


# --- network namespaces ---------------------------------------------------

# need_root_tools: netns mode runs as root with ip, tc and nft.
need_root_tools() {
	if [ "$(id -u)" != 0 ]; then
		echo "network-namespace mode needs root" >&2
		exit 2
	fi
	local t
	for t in ip tc nft; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "network-namespace mode needs $t (apt-get install iproute2 nftables)" >&2
			exit 2
		fi
	done
}

# our_netns: the slotreg-<id> namespaces that exist.
our_netns() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E '^slotreg-(meta[1-3]|data[1-9]|session[1-2])$' || true
}

# our_links: the root-side sr-<id> links that exist.
our_links() {
	ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
		grep -E '^sr-(meta[1-3]|data[1-9]|session[1-2])$' || true
}

# foreign_pids: processes in slotreg-* namespaces that are not this
# cluster directory's live nodes.
foreign_pids() {
	local ns p own=" "
	for f in "$DIR"/*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		alive "$p" && own+="$p "
	done
	for ns in $(our_netns); do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			[[ "$own" == *" $p "* ]] || echo "$p"
		done
	done
}

# net_teardown: stop whatever still runs in the namespaces, then remove
# every namespace, sr-* link and the bridge. Idempotent.
net_teardown() {
	local ns l p
	for ns in $(our_netns); do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			echo "killing pid $p left in $ns"
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	for l in $(our_links); do
		ip link del "$l" 2>/dev/null || true
	done
	if ip link show "$BR" >/dev/null 2>&1; then
		ip link del "$BR" 2>/dev/null || true
	fi
}

# net_bridge: the bridge with 10.77.0.254/24, refusing when 10.77.0.0/24
# is in use anywhere else.
net_bridge() {
	local other
	other=$(ip -o -4 addr show to 10.77.0.0/24 | awk -v br="$BR" '$2 != br {print $2}')
	if [ -n "$other" ]; then
		echo "10.77.0.0/24 is already in use on $other; netns mode needs it for $BR alone" >&2
		exit 1
	fi
	other=$(ip -4 route show to match 10.77.0.1 | grep -v -E '^default|dev '"$BR"'( |$)' || true)
	if [ -n "$other" ]; then
		echo "a route other than $BR covers 10.77.0.0/24: $other" >&2
		exit 1
	fi
	if ! ip link show "$BR" >/dev/null 2>&1; then
		ip link add "$BR" type bridge
	fi
	ip addr replace "$BRIP/24" dev "$BR"
	ip link set "$BR" up
}

# net_node ID: the node's namespace, lo up, its veth pair on the bridge
# and its address. Idempotent.
net_node() {
	local id=$1 ns=slotreg-$1 veth=sr-$1 addr
	addr=$(ip_of "$id")
	net_bridge
	ip netns list | awk '{print $1}' | grep -qx "$ns" || ip netns add "$ns"
	ip netns exec "$ns" ip link set lo up
	if ! ip link show "$veth" >/dev/null 2>&1; then
		ip netns exec "$ns" ip link del eth0 2>/dev/null || true
		ip link add "$veth" type veth peer name eth0 netns "$ns"
	fi
	ip link set "$veth" master "$BR" up
	ip netns exec "$ns" ip addr replace "$addr/24" dev eth0
	ip netns exec "$ns" ip link set eth0 up
}

# netns_up: before `up` in netns mode: refuse while another netns
# cluster runs, clear a crashed run's leftovers, write the marker.
netns_up() {
	need_root_tools
	local others running=0 id
	others=$(foreign_pids | tr '\n' ' ')
	if [ -n "${others// /}" ]; then
		echo "another netns cluster is running (pids $others in slotreg-* namespaces);" >&2
		echo "stop it with its own scripts/cluster.sh down first" >&2
		exit 1
	fi
	for id in meta1 meta2 meta3 data1 data2 data3 data4 data5 data6 data7 data8 data9 session1 session2; do
		alive "$(pid_of "$id")" && running=1
	done
	[ "$running" = 1 ] || net_teardown >/dev/null
	echo 1 >"$MARK"
}

# --- faults (netns mode) ----------------------------------------------------

need_netns() {
	if [ "$NETNS" != 1 ]; then
		echo "$1 works only in network-namespace mode (SLOTREG_NETNS=1 scripts/cluster.sh up); $DIR is not such a cluster" >&2
		exit 2
	fi
	need_root_tools
}

# need_ns ID: ID is a node id whose namespace exists.
need_ns() {
	if ! valid_id "$1"; then
		echo "no node $1: ids are meta1-3, data1-9, session1-2" >&2
		exit 2
	fi
	if ! our_netns | grep -qx "slotreg-$1"; then
		echo "node $1 has no namespace (start it first)" >&2
		exit 2
	fi
}

# nft_table NS: the inet slotreg table with its input and output chains
# in namespace NS.
nft_table() {
	ip netns exec "$1" nft -f - <<-'EOF'
		table inet slotreg {
			chain input { type filter hook input priority -10; policy accept; }
			chain output { type filter hook output priority -10; policy accept; }
		}
	EOF
}

# nft_drop NS NEG SET: drop, on eth0 both ways, what comes from or goes to
# SET (an nft set of addresses), or with NEG="!=" everything but SET.
nft_drop() {
	local ns=$1 neg=$2 set=$3
	nft_table "$ns"
	ip netns exec "$ns" nft "add rule inet slotreg input iifname eth0 ip saddr $neg $set drop"
	ip netns exec "$ns" nft "add rule inet slotreg output oifname eth0 ip daddr $neg $set drop"
}

partition() {
	need_netns partition
	local a=() c=() seen_sep=0 id
	for id in "$@"; do
		if [ "$id" = "--" ]; then
			[ "$seen_sep" = 0 ] || {
				echo "partition: one -- at most" >&2
				exit 2
			}
			seen_sep=1
			continue
		fi
		if ! valid_id "$id"; then
			echo "no node $id: ids are meta1-3, data1-9, session1-2" >&2
			exit 2
		fi
		if [ "$seen_sep" = 0 ]; then a+=("$id"); else c+=("$id"); fi
	done
	if [ ${#a[@]} = 0 ] || { [ "$seen_sep" = 1 ] && [ ${#c[@]} = 0 ]; }; then
		echo "usage: $0 partition A [B...] [-- C [D...]]" >&2
		exit 2
	fi
	for id in "${a[@]}"; do need_ns "$id"; done
	local aset cset
	aset="{ $(for id in "${a[@]}"; do ip_of "$id"; done | paste -sd, -) }"
	if [ "$seen_sep" = 0 ]; then
		# The first group keeps only its own members: every other node
		# and the root namespace are cut off.
		for id in "${a[@]}"; do nft_drop "slotreg-$id" "!=" "$aset"; done
		echo "partitioned ${a[*]} from every other node and the clients"
		return
	fi
	for id in "${c[@]}"; do
		for x in "${a[@]}"; do
			if [ "$id" = "$x" ]; then
				echo "partition: $id is in both groups" >&2
				exit 2
			fi
		done
	done
	cset="{ $(for id in "${c[@]}"; do ip_of "$id"; done | paste -sd, -) }"
	for id in "${a[@]}"; do nft_drop "slotreg-$id" "" "$cset"; done
	# The mirror image in the second group's namespaces that exist, so
	# the cut holds on both ends.
	for id in "${c[@]}"; do
		if our_netns | grep -qx "slotreg-$id"; then
			nft_drop "slotreg-$id" "" "$aset"
		fi
	done
	echo "partitioned ${a[*]} from ${c[*]}"
}

# netem_ok NS: the kernel has the netem qdisc (probed with a throwaway
# qdisc on the namespace's lo).
netem_ok() {
	local ns=$1
	ip netns exec "$ns" tc qdisc replace dev lo root netem delay 0ms 2>/dev/null || return 1
	ip netns exec "$ns" tc qdisc del dev lo root 2>/dev/null || true
	return 0
}

# Without netem, slow's delay is nfqueue QNUM in the node's namespace,
# served by scripts/netdelay (nfqueues are per namespace, so every node
# can use the same number).
QNUM=77
NDBIN=$DIR/netdelay

# ipt NS ARGS...: iptables-legacy in namespace NS (-w: wait for the lock).
ipt() {
	local ns=$1
	shift
	ip netns exec "$ns" iptables-legacy -w "$@"
}

# delay_rules add|del NS: the rules that send eth0's packets, both ways,
# to nfqueue QNUM (del removes every copy of them and ignores errors).
delay_rules() {
	local op=$1 ns=$2 r
	local rules=("INPUT -i eth0 -j NFQUEUE --queue-num $QNUM" "OUTPUT -o eth0 -j NFQUEUE --queue-num $QNUM")
	for r in "${rules[@]}"; do
		# shellcheck disable=SC2086
		if [ "$op" = add ]; then
			ipt "$ns" -A $r
		else
			command -v iptables-legacy >/dev/null 2>&1 || return 0
			while ipt "$ns" -C $r 2>/dev/null; do ipt "$ns" -D $r 2>/dev/null || break; done
		fi
	done
}

# delayer_stop ID: stop the node's netdelay (SIGTERM, which lets the
# packets it holds through, then SIGKILL after 5s) and remove its pid file.
delayer_stop() {
	local f=$DIR/netdelay-$1.pid p
	p=$(cat "$f" 2>/dev/null || true)
	if alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = netdelay ]; then
		kill -TERM "$p" 2>/dev/null || true
		local deadline=$((SECONDS + 5))
		while alive "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
		if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
	fi
	rm -f "$f"
}

# delayers_stop: remove the delay rules from every node namespace, then
# stop every netdelay this cluster directory started.
delayers_stop() {
	local ns f id
	for ns in $(our_netns); do delay_rules del "$ns"; done
	for f in "$DIR"/netdelay-*.pid; do
		[ -f "$f" ] || continue
		id=${f##*/netdelay-}
		delayer_stop "${id%.pid}"
	done
}

# slow_clear ID: undo slow on one node, whichever way it was done.
slow_clear() {
	local id=$1 ns=slotreg-$1
	ip netns exec "$ns" nft delete table inet slotreg_slow 2>/dev/null || true
	delay_rules del "$ns"
	delayer_stop "$id"
	ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
	tc qdisc del dev "sr-$id" root 2>/dev/null || true
}

# netdelay_build: $NDBIN from this checkout, when missing.
netdelay_build() {
	[ -x "$NDBIN" ] && return 0
	if ! command -v go >/dev/null 2>&1; then
		echo "slow: building scripts/netdelay needs go" >&2
		exit 2
	fi
	mkdir -p "$DIR"
	local out
	out=$(cd "$DIR" && pwd)/netdelay
	echo "building $NDBIN"
	(cd "$ROOT" && go build -o "$out" ./scripts/netdelay)
}

# netdelay_start ID DELAY LOSS: run netdelay on QNUM in the node's
# namespace and wait until it has bound the queue.
netdelay_start() {
	local id=$1 delay=$2 loss=$3 ns=slotreg-$1 log=$DIR/netdelay-$1.log p
	: >"$log"
	ip netns exec "$ns" "$NDBIN" --queue "$QNUM" --delay "$delay" --loss "$loss" </dev/null >>"$log" 2>&1 &
	p=$!
	echo "$p" >"$DIR/netdelay-$id.pid"
	local deadline=$((SECONDS + 10))
	until grep -q '^ready' "$log"; do
		if ! alive "$p"; then
			rm -f "$DIR/netdelay-$id.pid"
			echo "slow: netdelay for $id exited; its log ($log):" >&2
			cat "$log" >&2
			exit 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			delayer_stop "$id"
			echo "slow: netdelay for $id not ready after 10s; its log ($log):" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.05
	done
}

slow() {
	need_netns slow
	local id=${1:-} delay=${2:-} loss=${3:-0}
	if [ -z "$id" ] || [ -z "$delay" ] || [ $# -gt 3 ]; then
		echo "usage: $0 slow ID DELAY [LOSS%]   (e.g. slow data1 100ms 5%)" >&2
		exit 2
	fi
	need_ns "$id"
	loss=${loss%\%}
	if ! [[ "$delay" =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]]; then
		echo "slow: DELAY like 100ms, 1.5s or 500us, not $delay" >&2
		exit 2
	fi
	if ! [[ "$loss" =~ ^[0-9]+(\.[0-9]+)?$ ]] || awk -v l="$loss" 'BEGIN{exit !(l > 100)}'; then
		echo "slow: LOSS a percentage 0..100, not ${3:-}" >&2
		exit 2
	fi
	local ns=slotreg-$id veth=sr-$id
	if netem_ok "$ns"; then
		slow_clear "$id"
		local args=(netem delay "$delay")
		[ "$loss" != 0 ] && args+=(loss "$loss%")
		ip netns exec "$ns" tc qdisc replace dev eth0 root "${args[@]}"
		tc qdisc replace dev "$veth" root "${args[@]}"
		echo "$id: $delay each way, ${loss}% loss each way (netem)"
		return
	fi
	if ! [[ "$delay" =~ ^0+(\.0+)?(us|ms|s)$ ]]; then
		# No sch_netem in this kernel: delay (and loss) by netdelay.
		if ! command -v iptables-legacy >/dev/null 2>&1; then
			echo "slow: this kernel has no netem qdisc (sch_netem); a delay then needs iptables-legacy (apt-get install iptables)" >&2
			exit 2
		fi
		netdelay_build
		slow_clear "$id"
		netdelay_start "$id" "$delay" "$loss"
		delay_rules add "$ns"
		echo "$id: $delay each way, ${loss}% loss each way (nfqueue and netdelay; no netem in this kernel)"
		return
	fi
	# No sch_netem and no delay: loss by nft random drops.
	if ! [[ "$loss" =~ ^[0-9]+$ ]]; then
		echo "slow: without netem and with no delay, LOSS must be a whole percentage, not $loss" >&2
		exit 2
	fi
	slow_clear "$id"
	local match="numgen random mod 100 < $loss"
	[ "$loss" -ge 100 ] && match=""
	if [ "$loss" -gt 0 ]; then
		ip netns exec "$ns" nft -f - <<-EOF
			table inet slotreg_slow {
				chain input { type filter hook input priority -5; policy accept; iifname eth0 $match drop; }
				chain output { type filter hook output priority -5; policy accept; oifname eth0 $match drop; }
			}
		EOF
	fi
	echo "$id: ${loss}% loss each way (nft; no netem in this kernel)"
}

heal() {
	need_netns heal
	local ns l
	delayers_stop
	for ns in $(our_netns); do
		ip netns exec "$ns" nft delete table inet slotreg 2>/dev/null || true
		ip netns exec "$ns" nft delete table inet slotreg_slow 2>/dev/null || true
		ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
	done
	for l in $(our_links); do
		tc qdisc del dev "$l" root 2>/dev/null || true
	done
	echo "healed"
}
