#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The counter from both sides of one database file at once: 4 processes
# through the mount's /.txn and 4 through the C API on the file itself,
# 250 increments each. Together they must make 2000 distinct versions and
# the value 2000, whichever side reads it.
. "$(dirname "$0")/../integration/lib.sh"
: "${COUNTER_CAPI:?COUNTER_CAPI must name counter_capi}"

M=$T/mnt
mount_fs "$T/state.db" "$M"
printf 0 > "$M/counter"

python3 "$(dirname "$0")/counter.py" --shared --versions "$T/fs.v" \
	"$M" /counter 4 250 > "$T/fs.out" &
fs_pid=$!
at_exit "kill $fs_pid"
# Both sides at once: the C API starts once the mount's side is running.
past() { (($(xattr version "$M/counter") > $1)); }
wait_for 20 past 20 || fail "the mount's side made no increment"
"$COUNTER_CAPI" -s -n 4 -i 250 -V "$T/capi.v" "$T/state.db" > "$T/capi.out"
wait $fs_pid
echo "mount: $(cat "$T/fs.out")"
echo "C API: $(cat "$T/capi.out")"

check "2000 increments from both sides" 2000 "$(cat "$M/counter")"
check "one version for each" 2001 "$(xattr version "$M/counter")"
check "the database agrees" "2000|2001" "$(sqlite3 "$T/state.db" \
	"SELECT CAST(value AS TEXT), version FROM kv_store WHERE key = '/counter'")"
for side in fs capi; do
	conflicts=$(sed -n 's/.*conflicts=\([0-9]*\).*/\1/p' "$T/$side.out")
	check "$side side met conflicts" 1 $((conflicts > 0))
done
check "the two sides made distinct versions 2..2001" "$(seq 2 2001)" \
	"$(sort -n "$T/fs.v" "$T/capi.v")"

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
