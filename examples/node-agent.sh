#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A node agent that announces itself with leased keys: while it runs,
# /nodes/NAME/status says "up" and /nodes/NAME/pid its pid; when it dies
# (a crash, SIGKILL, the machine gone) the keys disappear a TTL later,
# with IN_DELETE events for anyone watching /nodes. No heartbeat loop: the
# agent holds its lease file open (exec 9<) and ustatefs keeps the lease
# alive for as long as that descriptor is open. SIGTERM or SIGINT is a
# clean leave: the agent revokes its lease and the keys go at once.
#
#   node-agent.sh MOUNT NAME [TTL]
#
# MOUNT is a ustatefs mount, NAME the node's name (one key segment), TTL
# the lease's time to live in seconds (default 5).
#
# By hand:
#   ustatefs /tmp/state.db /tmp/mnt
#   examples/node-agent.sh /tmp/mnt node-1 &
#   cat /tmp/mnt/nodes/node-1/status       # up
#   cat /tmp/mnt/.leases/node-1            # ttl, time left, keys
#   kill -9 %1; sleep 6; ls /tmp/mnt/nodes # node-1 is gone
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: node-agent.sh MOUNT NAME [TTL]" >&2
	exit 2
fi
mnt=$1 name=$2 ttl=${3:-5}
lease=$mnt/.leases/$name

# Grant (or refresh) the lease, then hold it: from now on it lives as
# long as this shell does.
echo "$ttl" > "$lease"
exec 9< "$lease"

# Announce, atomically and leased: both keys or neither.
announce() {
	local up=up pid=$$
	printf 'set /nodes/%s/status %d lease=%s\n%s\nset /nodes/%s/pid %d lease=%s\n%s\ncommit\n' \
		"$name" ${#up} "$name" "$up" "$name" ${#pid} "$name" "$pid" \
		> "$mnt/.txn"
}
announce

leave() {
	echo "agent $name: leaving"
	rm -f "$lease"
	exit 0
}
trap leave TERM INT
echo "agent $name: up (lease of ${ttl}s)"

# The node's work would go here. Children must not inherit the lease's
# descriptor, or they would keep it alive after the agent died: 9<&-.
while :; do
	sleep 1 9<&- &
	wait $! || true
done
