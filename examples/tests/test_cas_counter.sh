#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/cas-counter.sh: four copies at once, two on each of two mounts
# of the same database, increment a counter 25 times each; the CAS retry
# over /.txn loses no update, so the counter ends at exactly 100 and each
# value from 1 to 100 was committed by exactly one of them.
. "$(dirname "$0")/lib.sh"

A=$T/a B=$T/b
mount_fs "$DB" "$A"
mount_fs "$DB" "$B"

check "the first increment creates the key" 1 \
	"$("$EXAMPLES/cas-counter.sh" "$A" /hits 2>/dev/null)"
printf '%s\n' "$(( $(cat "$A/hits") - 1 ))" > "$A/hits"
check "a write between increments is honoured" "1 2" \
	"$("$EXAMPLES/cas-counter.sh" "$B" /hits 2 2>/dev/null | tr '\n' ' ' |
	sed 's/ $//')"
ustate set /hits 0 >/dev/null
v0=$(xattr version "$A/hits")

for i in 1 2 3 4; do
	mnt=$A
	[ $((i % 2)) = 0 ] && mnt=$B
	spawn "$EXAMPLES/cas-counter.sh" "$mnt" /hits 25 > "$T/out$i" 2> "$T/err$i"
done
rc=0
wait_spawned || rc=$?
check "every copy succeeded" 0 "$rc"
check "the counter is exactly 100" 100 "$(cat "$A/hits")"
check "... on the other mount too" 100 "$(cat "$B/hits")"
check "... in the database" 100 "$(ustate get /hits)"
check "one new version per increment" $((v0 + 100)) "$(xattr version "$A/hits")"
check "each value was committed once" "$(seq 1 100)" "$(sort -n "$T"/out*)"
cat "$T"/err*
