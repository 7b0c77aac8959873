#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/leader.sh: 8 contenders, exactly one leader at any time; when
# the leader dies (SIGKILL), a new one within TTL + 1 s, three times over;
# the key is on the leader's lease from its creation (no setfattr).
. "$(dirname "$0")/lib.sh"

M=$T/mnt
TTL=1
mount_fs "$DB" "$M"
mkdir "$M/election"
now_ms() { date +%s%3N; }

declare -A pid_of
for i in 1 2 3 4 5 6 7 8; do
	"$EXAMPLES/leader.sh" "$M/election" "c$i" $TTL > "$T/log.c$i" 2>&1 &
	pid_of[c$i]=$!
	at_exit "kill -9 $!"
done

# leaders: the contenders alive that say they lead.
leaders() {
	local c
	for c in "${!pid_of[@]}"; do
		if kill -0 "${pid_of[$c]}" 2>/dev/null &&
			grep -qx "leader $c" "$T/log.$c"; then
			echo "$c"
		fi
	done | sort | xargs
}
one_leader() { [ -n "$(leaders)" ]; }

wait_for 10 one_leader || fail "no leader"
for round in 1 2 3; do
	# Exactly one, at several moments, and the key names it.
	for s in 1 2 3 4 5; do
		l=$(leaders)
		[ "$(wc -w <<< "$l")" = 1 ] || fail "round $round: leaders: [$l]"
		[ "$(cat "$M/election/leader" 2>/dev/null)" = "$l" ] ||
			fail "round $round: the key names another: $l"
		[ "$(getfattr --absolute-names --only-values -n user.lease \
			"$M/election/leader" 2>/dev/null)" = "$l" ] ||
			fail "round $round: the key is not on $l's lease"
		sleep 0.3
	done
	echo "ok: round $round: one leader, $l, named by the key"
	kill -9 "${pid_of[$l]}"
	wait "${pid_of[$l]}" 2>/dev/null || true
	killed=$(now_ms)
	unset "pid_of[$l]"
	wait_for 10 one_leader || fail "round $round: no new leader"
	took=$(($(now_ms) - killed))
	check "round $round: a new leader within TTL + 1 s (${took} ms)" 1 \
		"$((took <= (TTL + 1) * 1000))"
	check "... only one" 1 "$(leaders | wc -w)"
done
