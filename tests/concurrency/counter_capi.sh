#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The counter through the C API: 8 processes x 250 ustate_compare_and_set
# increments of one key in one SQLite file (counter_capi checks each
# commit), then the file read with the sqlite3 shell, not through libustate.
#   counter_capi.sh COUNTER_CAPI
set -euo pipefail
T=$(mktemp -d /tmp/ustate-counter.XXXXXX)
trap 'rm -rf "$T"' EXIT

out=$("$1" -n 8 -i 250 "$T/state.db")
echo "$out"
read -r value version < <(sqlite3 "$T/state.db" \
	"SELECT CAST(value AS TEXT), version FROM kv_store WHERE key = '/counter'" |
	tr '|' ' ')
if [ "$value $version" != "2000 2001" ]; then
	echo "not ok: the file holds $value at version $version, not 2000 at 2001" >&2
	exit 1
fi
echo "ok: 8 x 250 C API increments: 2000 at version 2001"
conflicts=$(sed -n 's/.*conflicts=\([0-9]*\).*/\1/p' <<< "$out")
if ! ((conflicts > 0)); then
	echo "not ok: no conflict: the processes did not contend" >&2
	exit 1
fi
echo "ok: the processes contended ($conflicts conflicts)"
