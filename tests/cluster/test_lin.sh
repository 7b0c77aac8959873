#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Linearizability across three nodes while a member dies: 4 processes run
# random get, set, compare-and-set and delete operations through the
# three mounts (tests/concurrency/linhistory.py, process p on node p mod
# 3), and the member node 0 talks to is killed with SIGKILL in the middle
# and restarted; lincheck.py must find the history linearizable. A write
# whose outcome the daemon could not know (ETIMEDOUT) is recorded as never
# completed, so it may or may not have happened; any other failure fails
# the run.
#   LIN_OPS (2000): the size of the history.
. "$(dirname "$0")/lib.sh"

D=$(dirname "$0")/../concurrency
ops=${LIN_OPS:-2000}
cluster_start
# (TMPDIR: the workers' logs, which the wait below counts, under $T.)
TMPDIR=$T python3 "$D/linhistory.py" --procs 4 --keys 2 --deletes 0.2 --faults \
	"${NODE[0]},${NODE[1]},${NODE[2]}" "$T/h.jsonl" "$ops" > "$T/counts" &
hist=$!
# The kill lands once a quarter of the history is written, or after 10 s.
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
rc=0
wait $hist || rc=$?
cat "$T/counts"
check "the history of $ops operations through three nodes was recorded" 0 $rc
if python3 "$D/lincheck.py" "$T/h.jsonl"; then
	echo "ok: linearizable across three nodes, a member killed and restarted"
else
	keep=$(mktemp -d /tmp/ustate-lin-failed.XXXXXX)
	cp "$T/h.jsonl" "$keep/"
	fail "not linearizable (kept in $keep)"
fi
for i in 0 1 2; do umount_fs "${NODE[i]}"; done
