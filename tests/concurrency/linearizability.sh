#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Linearizability: 4 processes run random get, set, compare-and-set and
# delete operations on 3 keys through a mount (files, renames, unlink and
# /.txn), recording a history, and lincheck.py confirms it is
# linearizable (a versioned register per key). Then the same history with
# one read made stale must fail, so the check is known to bite on real
# data. Once on a SQLite file, once on :memory:.
#   LIN_OPS (1000), LIN_PROCS (4), LIN_KEYS (3): the size of each history
#   (scripts/stress --linearizability N runs long ones).
. "$(dirname "$0")/../integration/lib.sh"

D=$(dirname "$0")
ops=${LIN_OPS:-1000}
n=0
for src in "$T/state.db" :memory:; do
	n=$((n + 1))
	M=$T/mnt$n
	mount_fs "$src" "$M"
	python3 "$D/linhistory.py" --procs "${LIN_PROCS:-4}" \
		--keys "${LIN_KEYS:-3}" "$M" "$T/h$n.jsonl" "$ops"
	check "$src: history of $ops operations recorded" $((ops + ${LIN_KEYS:-3})) \
		"$(wc -l < "$T/h$n.jsonl")"
	if python3 "$D/lincheck.py" --dump "$T/prefix$n.jsonl" "$T/h$n.jsonl"; then
		echo "ok: $src: the history is linearizable"
	else
		keep=$(mktemp -d /tmp/ustate-lin-failed.XXXXXX)
		cp "$T/h$n.jsonl" "$T/prefix$n.jsonl" "$keep/"
		fail "$src: the history is not linearizable (kept in $keep)"
	fi
	python3 "$D/lincheck_test.py" --mutant "$T/h$n.jsonl" ||
		fail "$src: the checker missed a stale read"
	umount_fs "$M"
	check "$src: unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
done
