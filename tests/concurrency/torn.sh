#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Torn reads: 2 writers replace one key with 1 MiB values (through the file
# and through /.txn) while 3 readers read it (the file in 64 KiB reads, in
# one read, and /.txn get), for 3 seconds through the page cache (the
# default) and 3 with -o direct_io. torn.py checks every read against the
# value it names; here, that enough happened to mean something.
. "$(dirname "$0")/../integration/lib.sh"

n=0
for opts in "" "-o direct_io"; do
	n=$((n + 1))
	M=$T/mnt$n
	# shellcheck disable=SC2086 # opts is empty or two words
	mount_fs "$T/state$n.db" "$M" $opts
	out=$(python3 "$(dirname "$0")/torn.py" "$M" "${TORN_SECONDS:-3}")
	echo "${opts:-page cache}: $out"
	num() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< " $out"; }
	check "${opts:-page cache}: no torn read" 0 "$(num torn)"
	check "writers wrote many values" 1 $(($(num writes) >= 20))
	check "readers read many values" 1 $(($(num reads) >= 20))
	check "readers saw many different values" 1 \
		$(($(num distinct-values-read) >= 5))
	umount_fs "$M"
	check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
done
