#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Torn reads: 2 writers replace one key with values of varying length
# (through the file and through /.txn) while 3 readers read it (the file
# in 64 KiB reads, in reads of the whole size, and /.txn get): values of
# about 1 MiB for 3 seconds, then of about 64 KiB for 2; then one writer
# through /.txn alone (another process's commits, which never make a
# reader go direct as this mount's writers do) with values of about 4 KiB
# (one page: read and replaced the fastest) for 3.
# torn.py checks every read against the value it names; here, that enough
# happened to mean something.
#   torn.sh [USTATEFS OPTIONS...]   (-o direct_io, or none: the page cache)
#   TORN_ROUNDS: repeat the 4 KiB run up to this many times while no read
#   is torn (1; a test expected to fail sets more, so that it does)
. "$(dirname "$0")/../integration/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M" "$@"
runs=("1048576 ${TORN_SECONDS:-3} file,txn" "65536 2 file,txn")
for ((i = 0; i < ${TORN_ROUNDS:-1}; i++)); do
	runs+=("4096 3 txn")
done
num() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< " $out"; }
for run in "${runs[@]}"; do
	read -r size secs writers <<< "$run"
	# Once a read is torn, more rounds tell nothing new.
	[ "$size" = 4096 ] && [ "${torn:-0}" != 0 ] && break
	out=$(python3 "$(dirname "$0")/torn.py" "$M" "$secs" "$size" \
		"$writers") || true
	echo "${*:-page cache}, $size bytes, writers $writers: $out"
	torn=$(num torn)
	check "$size bytes: no torn read" 0 "$(num torn)"
	check "writers wrote many values" 1 $(($(num writes) >= 20))
	check "readers read many values" 1 $(($(num reads) >= 20))
	check "readers saw many different values" 1 \
		$(($(num distinct-values-read) >= 5))
done

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
