#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A write whose close() returned 0 is not lost to a rename over its key
# that then fails (rename_race.py races the three, 1000 rounds).
. "$(dirname "$0")/../integration/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"
out=$(python3 "$(dirname "$0")/rename_race.py" "$M" "${RENAME_ROUNDS:-1000}") ||
	fail "a write was lost to a failed rename"
echo "$out"

umount_fs "$M"
check "unmounted cleanly" "" "$(grep " $M " /proc/mounts || true)"
