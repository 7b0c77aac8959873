#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Leases tell which node is alive, across the three nodes of a cluster
# (lib.sh: three mounts of one store on a three-member etcd):
#  - a lease granted on one node is a file on the others, with its
#    creator's owner and mode (kept in the store with the lease), and a
#    chmod on one node is seen on the others;
#  - a key created on node A by a holder of the lease file is attached to
#    it (user.lease on every node), and when the holder dies (SIGKILL) the
#    key goes within TTL + 1 s, as an IN_DELETE on the other nodes;
#  - a node whose daemon dies (SIGKILL of ustatefs) stops keeping its
#    held leases alive: their keys go within TTL + 1 s, seen elsewhere;
#  - leader election across the nodes with set -C of a key under a held
#    lease: exactly one leader, and another node takes over within
#    TTL + 1 s of the leader's death;
#  - rm of a lease on one node ends it everywhere, with its keys.
# Real TTLs of 2 s (etcd's minimum here is 1 s: elections are fast);
# every wait is bounded.
. "$(dirname "$0")/lib.sh"

TTL=2
cluster_start
A=${NODE[0]} B=${NODE[1]} C=${NODE[2]}
now_ms() { date +%s%3N; }
gone() { [ ! -e "$1" ]; }

# watch NAME DIR: deletes seen in DIR, one name a line, into $T/NAME.
watch() {
	inotifywait -m -e delete --format '%e %f' "$2" 2>"$T/$1.err" > "$T/$1" &
	at_exit "pkill -f 'inotifywait -m -e delete --format %e %f $2\$'"
	wait_for 5 grep -q "Watches established" "$T/$1.err" ||
		fail "$1: inotifywait did not start"
}

# holder NODE LEASE KEY: a process on NODE that holds /.leases/LEASE open
# and creates KEY under it (set -C), then waits; its pid in $holder_pid.
holder() {
	bash -c "exec 9< '$1/.leases/$2' && set -C && echo up > '$1/$3' &&
		exec sleep 120" &
	holder_pid=$!
	at_exit "kill -9 $holder_pid 2>/dev/null || true"
}

# gone_within SECS FILE WHAT: FILE must vanish within SECS of now; the
# time it took is checked against TTL + 1 s.
took_to_go() {
	local from=$1 file=$2 what=$3 took
	wait_for 10 gone "$file" || fail "$what: $file is still there"
	took=$(($(now_ms) - from))
	check "$what within TTL + 1 s (${took} ms)" 1 \
		"$((took <= (TTL + 1) * 1000))"
}

# -- a lease of one node is a file of all, with its owner ----------------------
mkdir "$A/nodes"
(umask 027 && echo $TTL > "$A/.leases/node-a")
for n in "$B" "$C"; do
	wait_for 5 test -e "$n/.leases/node-a" || fail "$n: no lease file"
done
check "B lists A's lease" "node-a" "$(ls "$B/.leases")"
check "B shows its creator and mode" "$(id -u) 640" \
	"$(stat -c '%u %a' "$B/.leases/node-a")"
chmod 0604 "$B/.leases/node-a"
wait_for 5 bash -c "[ \"\$(stat -c %a '$C/.leases/node-a')\" = 604 ]" ||
	fail "C: the chmod on B did not arrive"
echo "ok: a chmod on B is seen on C"

# -- a holder's key goes with its death, seen on the other nodes -------------
watch wb "$B/nodes"
watch wc "$C/nodes"
holder "$A" node-a nodes/a
wait_for 5 test -e "$B/nodes/a" || fail "B: nodes/a did not appear"
check "the holder's key is on the lease, as B sees it" "node-a" \
	"$(xattr lease "$B/nodes/a")"
check "... and as C's lease file lists it" "key /nodes/a" \
	"$(grep '^key' "$C/.leases/node-a")"
sleep $((TTL * 2)) # several TTLs: A's daemon keeps it alive
check "held past two TTLs, the key stays" "up" "$(cat "$C/nodes/a")"
kill -9 "$holder_pid"
wait "$holder_pid" 2>/dev/null || true
took_to_go "$(now_ms)" "$B/nodes/a" "the holder killed: its key gone on B"
wait_for 5 grep -qx "DELETE a" "$T/wb" || fail "B: no IN_DELETE of a"
wait_for 5 grep -qx "DELETE a" "$T/wc" || fail "C: no IN_DELETE of a"
check "... one IN_DELETE on B and on C" "1 1" \
	"$(grep -cx 'DELETE a' "$T/wb") $(grep -cx 'DELETE a' "$T/wc")"
check "... and the lease is gone everywhere" "" \
	"$(ls "$A/.leases" "$B/.leases" "$C/.leases" | grep -x node-a || true)"

# -- a node whose daemon dies loses its leases ---------------------------------
echo $TTL > "$A/.leases/node-a"
holder "$A" node-a nodes/alive
wait_for 5 test -e "$C/nodes/alive" || fail "C: nodes/alive did not appear"
sleep $TTL
check "A's daemon keeps the held lease alive" "up" "$(cat "$C/nodes/alive")"
pkill -9 -f "^$USTATEFS ${NODE_SRC[0]} $A\$"
took_to_go "$(now_ms)" "$C/nodes/alive" "A's daemon killed: A's key gone on C"
kill -9 "$holder_pid" 2>/dev/null || true
wait "$holder_pid" 2>/dev/null || true
fusermount3 -uz "$A"
"$USTATEFS" "${NODE_SRC[0]}" "$A"
check "A mounts again, without the key" "no" \
	"$([ -e "$A/nodes/alive" ] && echo yes || echo no)"

# -- leader election across the nodes ------------------------------------------
# contend I: node I grants its lease, holds it, and tries to become the
# leader with set -C of /leader under it; it writes "leader" to $T/won.I
# when it did, and keeps trying once a second while it is not.
contend() {
	local n=${NODE[$1]}
	echo $TTL > "$n/.leases/cand$1"
	bash -c "exec 9< '$n/.leases/cand$1'
		for t in \$(seq 60); do
			if (set -C && echo node$1 > '$n/leader') 2>/dev/null; then
				echo leader > '$T/won.$1'
				exec sleep 120
			fi
			sleep 0.2
		done" &
	cand_pid[$1]=$!
	at_exit "kill -9 ${cand_pid[$1]} 2>/dev/null || true"
}
cand_pid=()
rm -f "$T"/won.*
for i in 0 1 2; do contend $i; done
wait_for 10 bash -c "ls '$T'/won.* >/dev/null 2>&1" || fail "no leader"
sleep 1
check "exactly one leader" 1 "$(ls "$T"/won.* | wc -l)"
first=$(ls "$T"/won.* | sed 's/.*won\.//')
check "every node reads the same leader" "node$first node$first node$first" \
	"$(cat "$A/leader") $(cat "$B/leader") $(cat "$C/leader")"
check "its key is on its lease" "cand$first" "$(xattr lease "$B/leader")"
kill -9 "${cand_pid[$first]}"
wait "${cand_pid[$first]}" 2>/dev/null || true
killed=$(now_ms)
rm -f "$T/won.$first"
wait_for 10 bash -c "ls '$T'/won.* >/dev/null 2>&1" ||
	fail "no new leader after node $first's died"
took=$(($(now_ms) - killed))
check "a new leader within TTL + 1 s of the leader's death (${took} ms)" 1 \
	"$((took <= (TTL + 1) * 1000 + 200))"
sleep 1
check "... exactly one" 1 "$(ls "$T"/won.* | wc -l)"
second=$(ls "$T"/won.* | sed 's/.*won\.//')
check "... on another node" 1 "$((second != first))"
wait_for 5 bash -c "[ \"\$(cat '$A/leader')\" = node$second ]" ||
	fail "A does not read the new leader"

# -- rm of a lease on one node ends it everywhere ------------------------------
rm "$C/.leases/cand$second"
wait_for 5 gone "$A/leader" || fail "A: /leader outlived its lease's rm"
check "rm on C: the lease is gone on A" "" \
	"$(ls "$A/.leases" | grep -x "cand$second" || true)"
for p in "${cand_pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
for i in 0 1 2; do wait "${cand_pid[$i]}" 2>/dev/null || true; done

for i in 0 1 2; do umount_fs "${NODE[i]}"; done
check "unmounted cleanly" "" "$(grep "$T/node" /proc/mounts || true)"
