#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Leader election in bash on a ustatefs mount: every contender tries to
# create DIR/leader with set -C (O_CREAT|O_EXCL, which ustatefs commits at
# open, so exactly one create wins, on every mount of the store). Each
# contender holds its lease file open, and ustatefs attaches a key that
# a holder of a lease file (or a child of one) creates to that lease, in
# the create itself: the winner's key is leased from its first version,
# and outlives the leader by one TTL at most; the others wait for the
# key's IN_DELETE and try again.
#
#   leader.sh DIR NAME [TTL]
#
# DIR is a directory on a ustatefs mount (the mount's root is found from
# it: /.leases is there), NAME the contender's name (one key segment),
# TTL its lease's time to live (default 5). It prints "leader NAME" when
# it wins, and then leads until it is killed.
#
# Hold exactly one lease file open: a process holding several gets no
# lease on what it creates (see the README, "Leases on the mount").
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: leader.sh DIR NAME [TTL]" >&2
	exit 2
fi
dir=$1 name=$2 ttl=${3:-5}
mnt=$(stat -c %m "$dir")
key=$dir/leader

echo "$ttl" > "$mnt/.leases/$name"
exec 9< "$mnt/.leases/$name"

while :; do
	if (set -C; echo "$name" > "$key") 2>/dev/null; then
		echo "leader $name"
		# Lead until killed; the children close the lease's descriptor.
		while :; do
			sleep 1 9<&- &
			wait $! || true
		done
	fi
	# Someone leads: wait for the key to go (or a second, whichever
	# comes first), then try again.
	inotifywait -qq -t 1 -e delete -e moved_from "$dir" 9<&- 2>/dev/null ||
		true
done
