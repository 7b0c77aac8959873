#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writing a key right after another process deleted it. The daemon hears
# of the delete a few milliseconds later (and then ends the name of the
# key's earlier writers), and until then the kernel may still hold the
# name in its cache. Yet a write begun after the delete returned must
# succeed and be kept: 200 rounds of: /.txn creates and deletes /kN, then
# `printf b > kN` at once; then 200 rounds of the same on one key that
# the kernel has just looked up (cat).
. "$(dirname "$0")/../integration/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"
rounds=200 failed=0
for ((i = 0; i < rounds; i++)); do
	printf 'set /k%d 1\na\ndelete /k%d\ncommit\n' $i $i > "$M/.txn"
	printf b > "$M/k$i" || failed=$((failed + 1))
done
check "every write after a delete succeeded" 0 $failed
# Long enough for every replay of the deletes to have run.
sleep 0.5
kept=0
for ((i = 0; i < rounds; i++)); do
	[ "$(cat "$M/k$i" 2>/dev/null)" = b ] && kept=$((kept + 1))
done
check "every write after a delete was kept" $rounds $kept

failed=0 kept=0
for ((i = 0; i < rounds; i++)); do
	printf a > "$M/c" || { failed=$((failed + 1)); continue; }
	cat "$M/c" > /dev/null
	printf 'delete /c\ncommit\n' > "$M/.txn"
	if printf b > "$M/c"; then
		[ "$(cat "$M/c" 2>/dev/null)" = b ] && kept=$((kept + 1))
	else
		failed=$((failed + 1))
	fi
done
check "writes to a name the kernel still caches succeeded" 0 $failed
check "and were kept" $rounds $kept

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
