#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A write that begins after another process's delete of its key returned
# is kept, although the daemon hears of the delete (and ends the name of
# the key's earlier writers) only a few milliseconds later. 200 rounds of:
# /.txn creates and deletes /kN, then `printf b > kN` at once.
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

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
