#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/node-agent.sh announces its node with leased keys, which live
# past several TTLs while it runs (it holds its lease file open), go
# within TTL + 1 s when it is killed with SIGKILL, and go at once when it
# leaves on SIGTERM.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mount_fs "$DB" "$M"
now_ms() { date +%s%3N; }
gone() { [ ! -e "$1" ]; }

"$EXAMPLES/node-agent.sh" "$M" node-1 1 > "$T/log1" 2>&1 &
agent=$!
at_exit "kill -9 $agent"
wait_for 10 grep -q "agent node-1: up" "$T/log1" || fail "the agent did not start"
check "it announces itself" "up $agent" \
	"$(cat "$M/nodes/node-1/status") $(cat "$M/nodes/node-1/pid")"
check "... with leased keys" "node-1 node-1" \
	"$(xattr lease "$M/nodes/node-1/status") $(xattr lease "$M/nodes/node-1/pid")"
sleep 3.5
check "its keys outlive 3 TTLs while it runs" "up" \
	"$(cat "$M/nodes/node-1/status" 2>&1)"
kill -9 "$agent"
wait "$agent" 2>/dev/null || true
killed=$(now_ms)
wait_for 5 gone "$M/nodes/node-1/status" || fail "the keys outlived the agent"
took=$(($(now_ms) - killed))
check "SIGKILL: the keys are gone within TTL + 1 s (${took} ms)" 1 \
	"$((took <= 2000))"
check "... both of them" "" "$(ls "$M/nodes" 2>/dev/null)"

"$EXAMPLES/node-agent.sh" "$M" node-2 30 > "$T/log2" 2>&1 &
agent=$!
at_exit "kill -9 $agent"
wait_for 10 grep -q "agent node-2: up" "$T/log2" || fail "the agent did not start"
check "a second agent is up" "up" "$(cat "$M/nodes/node-2/status")"
kill -TERM "$agent"
rc=0
wait "$agent" || rc=$?
check "SIGTERM: a clean leave" 0 "$rc"
check "... its keys go at once" "" "$(ls "$M/nodes" 2>/dev/null)"
check "... and its lease" "" "$(ls "$M/.leases")"
