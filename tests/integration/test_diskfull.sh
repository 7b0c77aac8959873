#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Disk full: the database on a small tmpfs, filled through the mount. The
# write that does not fit fails with ENOSPC at close(); what was written
# before is intact (values and versions); once space is freed on the
# tmpfs, writing works again without remounting.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
D=$T/small
P=$(dirname "$0")/put.py
mkdir -p "$D"
mount -t tmpfs -o size=16m tmpfs "$D"
at_exit "umount -l '$D'"
# Space that the test frees later: more than the WAL grows to (4 MiB)
# before a checkpoint, which copies the WAL into the database file.
head -c 8M /dev/zero > "$D/filler"

mount_fs "$D/state.db" "$M"
mkdir "$M/fill"
printf 'v1\n' > "$M/keep"
printf 'v2\n' > "$M/keep"
check "a key written before the disk fills" "v2|2" \
	"$(cat "$M/keep")|$(xattr version "$M/keep")"

python3 "$P" --fill "$M/fill" 65536 > "$T/fill.out"
n=$(head -1 "$T/fill.out" | cut -d' ' -f1)
echo "$n values of 64 KiB fitted"
check "the value that does not fit fails with ENOSPC at close()" \
	"close ENOSPC" "$(tail -1 "$T/fill.out")"
check "some values fitted first" 1 $((n > 50))
check "the failed value was not committed" "" "$(ls "$M/fill" | grep -x "f$((n + 1))")"
# A small value may still fit: the WAL, once checkpointed, is written
# again from its start in the space it already holds (where its cycle
# stands depends on the schema's pages). Either it fails with ENOSPC, or
# it is there; never a silent loss.
small=$(python3 "$P" "$M/small" 100)
if [ "$small" = ok ]; then
	check "a small value that still fits is really there" 100 \
		"$(stat -c %s "$M/small")"
else
	check "a small value fails too, not silently" "close ENOSPC" "$small"
fi
check "the daemon still answers" "v2|2" "$(cat "$M/keep")|$(xattr version "$M/keep")"
check "every value that fitted is there" "$n" "$(ls "$M/fill" | wc -l)"
check "... intact" "$(python3 -c 'import sys; p=sys.argv[1]; print(((p + "\n") * 65536)[:65536], end="")' "$M/fill/f$n" | md5sum)" \
	"$(md5sum < "$M/fill/f$n")"
check "... at version 1" 1 "$(xattr version "$M/fill/f1")"

# Free space on the tmpfs: writes work again, on the same mount.
rm "$D/filler"
check "after space is freed, the failed value can be written" "ok" \
	"$(python3 "$P" "$M/fill/f$((n + 1))" 65536)"
check "... and the small one" "ok|100" \
	"$(python3 "$P" "$M/small" 100)|$(stat -c %s "$M/small")"
printf 'v3\n' > "$M/keep"
check "an old key moves on from its version" "v3|3" \
	"$(cat "$M/keep")|$(xattr version "$M/keep")"

umount_fs "$M"
wait_for 5 _no_daemon
check "integrity_check after the disk was full" ok \
	"$(sqlite3 "$D/state.db" 'PRAGMA integrity_check')"
check "nothing mounted is left" "" "$(grep -E "$T" /proc/mounts | grep -v "$D" || true)"
