#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Linearizability across three nodes while a member dies: 4 processes run
# random get, set, compare-and-set and delete operations through the
# three mounts (tests/concurrency/linhistory.py, process p on node p mod
# 3), and the member node 0 talks to is killed with SIGKILL in the middle
# and restarted; lincheck.py must find the history linearizable. A write
# whose outcome the daemon could not know (ETIMEDOUT) is recorded as never
# completed, so it may or may not have happened; any other failure fails
# the run. Each node must also be sequentially consistent (seqcheck.py).
#   LIN_OPS (2000): the size of the history.
. "$(dirname "$0")/lib.sh"

ops=${LIN_OPS:-2000}
cluster_start
history_under_kill "$T/h.jsonl" "$ops" 4
if python3 "$LIN_D/lincheck.py" "$T/h.jsonl"; then
	echo "ok: linearizable across three nodes, a member killed and restarted"
else
	keep=$(mktemp -d /tmp/ustate-lin-failed.XXXXXX)
	cp "$T/h.jsonl" "$keep/"
	fail "not linearizable (kept in $keep)"
fi
# Linearizable nodes are sequentially consistent each, too.
if history_seqcheck "$T/h.jsonl"; then
	echo "ok: each node sequentially consistent"
else
	fail "a node is not sequentially consistent"
fi
for i in 0 1 2; do umount_fs "${NODE[i]}"; done
