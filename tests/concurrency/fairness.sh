#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Writers of other processes get in while a mount is saturated: 16
# writers rewrite files of the mount without pause while `ustate set`
# (FAIR_CLI writes, a process each), as many ustate_set() calls of one
# process (fair_capi) and the sqlite3 shell (FAIR_SHELL
# upserts, .timeout 5000) write the same database file. Not one of their
# writes may fail with "database is locked" (EBUSY); the waits and rates
# are printed, not asserted (scripts/bench-fair runs the full counts).
. "$(dirname "$0")/../integration/lib.sh"
: "${USTATE:?USTATE must name the ustate command}"
: "${FAIR_CAPI:?FAIR_CAPI must name fair_capi}"
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3 shell"; exit 77; }

M=$T/mnt
# FAIR_MOUNT_OPTS: e.g. "-o sync=normal", where commits are shortest.
# shellcheck disable=SC2086
mount_fs "$T/state.db" "$M" ${FAIR_MOUNT_OPTS:-}
python3 "$(dirname "$0")/fair.py" "$USTATE" "$FAIR_CAPI" "$T/state.db" "$M" \
	"${FAIR_WRITERS:-16}" "${FAIR_CLI:-2000}" "${FAIR_SHELL:-500}" \
	"${FAIR_SECONDS:-3}" > "$T/out" || fail "an outside write failed"
cat "$T/out"
check "every ustate set landed" "${FAIR_CLI:-2000}" "$(sqlite3 "$T/state.db" \
	"SELECT sum(version) FROM kv_store WHERE key LIKE '/cli/%'")"
check "every library write landed" "${FAIR_CLI:-2000}" "$(sqlite3 \
	"$T/state.db" "SELECT sum(version) FROM kv_store WHERE key LIKE '/capi/%'")"
check "every shell write landed" "${FAIR_SHELL:-500}" "$(sqlite3 \
	"$T/state.db" "SELECT sum(version) FROM kv_store WHERE key LIKE '/shell/%'")"
check "the mount sees the shell's last write" "$((${FAIR_SHELL:-500} - 1))" \
	"$(cat "$M/shell/k$(((${FAIR_SHELL:-500} - 1) % 50))")"
umount_fs "$M"
