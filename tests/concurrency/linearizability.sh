#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Linearizability: 4 processes run random get, set, compare-and-set and
# delete operations on 3 keys through a mount (files, renames, unlink and
# /.txn), recording a history, and lincheck.py confirms it is
# linearizable (a versioned register per key). Then the same history with
# one read made stale must fail, so the check is known to bite on real
# data. Once on a SQLite file, once on :memory:, once through two mounts
# of one SQLite file, and (LIN_RUNS=etcd, under tests/etcd/with-etcd.sh)
# through two mounts of one store on etcd.
#   LIN_OPS (1000), LIN_PROCS (4), LIN_KEYS (3): the size of each history
#   (scripts/stress --linearizability N runs long ones); LIN_DELETES: the
#   weight of deletes (linhistory.py --deletes); LIN_RUNS: which of
#   "sqlite memory two-mounts" to run (all); LIN_OPTS: mount options.
. "$(dirname "$0")/../integration/lib.sh"

D=$(dirname "$0")
ops=${LIN_OPS:-1000}
keys=${LIN_KEYS:-3}

# run NAME SOURCE MOUNTS: mount SOURCE at each of MOUNTS, record a
# history through all of them (process p uses mount p mod n), check it.
run() {
	local name=$1 src=$2 m keep
	shift 2
	for m in "$@"; do
		# shellcheck disable=SC2086 # LIN_OPTS: options, word-split
		mount_fs "$src" "$m" ${LIN_OPTS:-}
	done
	python3 "$D/linhistory.py" --procs "${LIN_PROCS:-4}" --keys "$keys" \
		--deletes "${LIN_DELETES:-0.06}" \
		"$(IFS=,; echo "$*")" "$T/$name.jsonl" "$ops"
	check "$name: history of $ops operations recorded" $((ops + keys)) \
		"$(wc -l < "$T/$name.jsonl")"
	if python3 "$D/lincheck.py" --dump "$T/$name.prefix.jsonl" \
		"$T/$name.jsonl"; then
		echo "ok: $name: the history is linearizable"
	else
		keep=$(mktemp -d /tmp/ustate-lin-failed.XXXXXX)
		cp "$T/$name".*jsonl "$keep/"
		fail "$name: the history is not linearizable (kept in $keep)"
	fi
	python3 "$D/lincheck_test.py" --mutant "$T/$name.jsonl" ||
		fail "$name: the checker missed a stale read"
	for m in "$@"; do
		umount_fs "$m"
		check "$name: unmounted cleanly" "" \
			"$(grep " $m " /proc/mounts || true)"
	done
}

runs=" ${LIN_RUNS:-sqlite memory two-mounts} "
[[ $runs != *" sqlite "* ]] || run sqlite "$T/state.db" "$T/mnt"
[[ $runs != *" memory "* ]] || run memory :memory: "$T/mnt"
# Two daemons on one file: each hears of the other's changes through the
# store's change history, a few milliseconds late.
[[ $runs != *" two-mounts "* ]] || run two-mounts "$T/two.db" "$T/mnt" "$T/mnt2"
[[ $runs != *" etcd "* ]] || run etcd "etcd://$USTATE_TEST_ETCD/lin" "$T/mnt" "$T/mnt2"
