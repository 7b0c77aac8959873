# SPDX-License-Identifier: MIT
# Shared by the cluster tests: a three-member etcd cluster on free
# loopback ports (tests/etcd/lib.sh) and three ustatefs mounts of one
# store on it, as three nodes: node i talks to member i first and fails
# over to the others in turn. Everything is unmounted, stopped and removed
# at exit, even when the test fails (tests/integration/lib.sh's at_exit).
#
#   cluster_start [MOUNT-OPTIONS...]   start the members, mount the nodes:
#                                      NODE[0..2] their mountpoints,
#                                      NODE_SRC[0..2] their SOURCEs
#   PREFIX                             the store's etcd prefix (/c)
#   history_under_kill OUT OPS PROCS   a history of OPS random operations
#                                      by PROCS processes through the
#                                      nodes (linhistory.py) into OUT,
#                                      node 0's member killed and
#                                      restarted meanwhile; then checks
#                                      that it was recorded
#   history_seqcheck HISTORY           check each node of HISTORY
#                                      sequentially consistent against the
#                                      cluster's write log (seqcheck.py)
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../etcd/lib.sh"

PREFIX=/c
NODE=()
NODE_SRC=()

# node_source I: the SOURCE of node I, its own member first.
node_source() {
	local i=$1 j eps=""
	for j in 0 1 2; do
		eps+=${eps:+,}${ETCD_MEMBER_ENDPOINT[$(((i + j) % 3))]}
	done
	echo "etcd://$eps$PREFIX"
}

cluster_start() {
	local i
	etcd_cluster_start 3
	for i in 0 1 2; do
		NODE[i]=$T/node$i
		NODE_SRC[i]=$(node_source $i)
		mount_fs "${NODE_SRC[i]}" "${NODE[i]}" "$@"
	done
}

LIN_D=$(dirname "${BASH_SOURCE[0]}")/../concurrency

history_under_kill() {
	local out=$1 ops=$2 procs=$3 hist n deadline rc=0
	# (TMPDIR: the workers' logs, which the wait below counts, under $T.)
	TMPDIR=$T python3 "$LIN_D/linhistory.py" --procs "$procs" --keys 2 \
		--deletes 0.2 --faults "${NODE[0]},${NODE[1]},${NODE[2]}" \
		"$out" "$ops" > "$T/counts" &
	hist=$!
	# The kill lands once a quarter of the history is written, or after
	# 10 s.
	deadline=$((SECONDS + 10))
	while [ $SECONDS -lt $deadline ] && kill -0 $hist 2>/dev/null; do
		n=$(cat "$T"/linhistory.*/*.jsonl 2>/dev/null | wc -l || true)
		[ "$n" -lt $((ops / 4)) ] || break
		sleep 0.1
	done
	etcd_member_kill 0
	echo "killed member 0 after $(cat "$T"/linhistory.*/*.jsonl 2>/dev/null | wc -l || true) operations"
	sleep 2
	etcd_member_start 0
	wait $hist || rc=$?
	cat "$T/counts"
	check "the history of $ops operations through three nodes was recorded" \
		0 $rc
}

# The log ends at a change written once the history is done, which
# etcdlog.py waits for.
history_seqcheck() {
	echo end > "${NODE[1]}/lin/end"
	python3 "$(dirname "${BASH_SOURCE[0]}")/etcdlog.py" \
		"${ETCD_MEMBER_ENDPOINT[1]}" "$PREFIX" /lin/ /lin/end \
		"$T/log.jsonl" &&
		python3 "$LIN_D/seqcheck.py" "$T/log.jsonl" "$1"
}
