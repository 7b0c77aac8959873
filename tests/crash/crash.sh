#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Crash consistency: in a loop, mount a store (sync=full), run concurrent
# writers (files, /.txn transactions, renames) that log each operation
# that returned success, kill the daemon with SIGKILL at a random moment,
# recover the mountpoint, and check: PRAGMA integrity_check is ok; every
# acknowledged value is there (at least the acknowledged counter); every
# transaction is all or nothing; nothing is half-written.
#   crash.sh [CYCLES]           (USTATEFS names the daemon)
. "$(dirname "$0")/../integration/lib.sh"

cycles=${1:-30}
M=$T/mnt
DB=$T/state.db
W=$(dirname "$0")/writers.py
mkdir -p "$M" "$T/ack"
lost=0 acked=0 torn=0 ops=0

value() { sqlite3 "$DB" "SELECT CAST(value AS TEXT) FROM kv_store WHERE key = '$1'"; }

for ((c = 1; c <= cycles; c++)); do
	"$USTATEFS" -o sync=full "$DB" "$M"
	mkdir -p "$M/c" "$M/r" "$M/t"
	pids=()
	for i in 1 2; do
		for kind in file txn rename; do
			python3 "$W" "$M" "$T/ack" $kind "$i" $((c * 1000000)) &
			pids+=($!)
		done
	done
	sleep "0.$((RANDOM % 8 + 2))"
	pkill -9 -o -f "^$USTATEFS -o sync=full $DB" || true
	# A killed daemon must really go, whatever it was doing (its replay
	# helper follows it).
	if ! wait_for 10 bash -c "! pgrep -f '^$USTATEFS -o sync=full $DB'"; then
		fail "cycle $c: the killed daemon did not exit"
		exit 1
	fi
	wait "${pids[@]}" 2>/dev/null || true
	# Recovering a mountpoint after SIGKILL: unmount, then mount again.
	fusermount3 -uz "$M"

	check "cycle $c: integrity_check" ok "$(sqlite3 "$DB" 'PRAGMA integrity_check')"
	for f in "$T"/ack/*; do
		[ -s "$f" ] || continue
		last=$(tail -1 "$f")
		ops=$((ops + $(wc -l < "$f")))
		kind=${f##*/}
		id=${kind#*.}
		kind=${kind%.*}
		case $kind in
		file) keys=("/c/w$id") ;;
		txn) keys=("/t/a$id" "/t/b$id") ;;
		rename) keys=("/r/f$id") ;;
		esac
		for k in "${keys[@]}"; do
			v=$(value "$k")
			acked=$((acked + 1))
			if ! [[ "$v" =~ ^[0-9]+$ ]]; then
				torn=$((torn + 1))
				fail "cycle $c: $k holds [$v], acknowledged $last"
			elif ((v < last)); then
				lost=$((lost + 1))
				fail "cycle $c: $k is at $v, acknowledged $last"
			fi
		done
		if [ "$kind" = txn ] && [ "$(value "/t/a$id")" != "$(value "/t/b$id")" ]; then
			torn=$((torn + 1))
			fail "cycle $c: transaction $id half applied"
		fi
	done
	rm -f "$T"/ack/*
done
echo "cycles=$cycles acknowledged-operations=$ops values-checked=$acked lost=$lost torn=$torn"
check "writers were acknowledged at all" 1 $((ops > cycles))
check "no acknowledged write lost, no transaction torn" "0 0" "$lost $torn"
