#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The counter through /.txn: 8 processes x 250 increments of one key, each
# a compare-and-set retry loop of two transactions (get; check + set).
# counter.py checks every commit; here the result is read back through the
# file, its xattrs and the database itself.
. "$(dirname "$0")/../integration/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"
printf 0 > "$M/counter"
rev0=$(xattr revision "$M/counter")

out=$(python3 "$(dirname "$0")/counter.py" "$M" /counter 8 250)
echo "$out"
check "2000 increments through /.txn" 2000 "$(cat "$M/counter")"
check "one version for each" 2001 "$(xattr version "$M/counter")"
check "one revision for each" $((rev0 + 2000)) "$(xattr revision "$M/counter")"
check "the database agrees" "2000|2001" "$(sqlite3 "$T/state.db" \
	"SELECT CAST(value AS TEXT), version FROM kv_store WHERE key = '/counter'")"
conflicts=$(sed -n 's/.*conflicts=\([0-9]*\).*/\1/p' <<< "$out")
check "the processes did contend (conflicts seen)" 1 $((conflicts > 0))

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
