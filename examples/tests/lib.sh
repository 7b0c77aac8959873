# SPDX-License-Identifier: MIT
# Shared helpers of the example tests, on top of the integration tests'
# lib.sh (mounts, cleanup at exit, check, wait_for). Meson sets USTATEFS,
# USTATE_CLI, EXAMPLES (the examples' folder) and WATCH_EXAMPLE.
. "$(dirname "${BASH_SOURCE[0]}")/../../tests/integration/lib.sh"

: "${USTATE_CLI:?}" "${EXAMPLES:?}"
DB=$T/state.db

# ustate ARGS...: the command line on the test's database.
ustate() { "$USTATE_CLI" -d "$DB" "$@"; }

# spawn COMMAND...: run in the background, killed at exit if still there;
# its pid is appended to $pids.
pids=()
spawn() {
	"$@" &
	pids+=($!)
	at_exit "kill $!"
}

# wait_spawned: wait for every spawned command; 0 if all succeeded.
wait_spawned() {
	local p rc=0
	for p in "${pids[@]}"; do
		wait "$p" || rc=$?
	done
	pids=()
	return $rc
}
