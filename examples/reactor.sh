#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# An inotify reactor on a ustatefs mount: it runs a service and restarts
# it each time the service's config key gets a new version, whoever wrote
# it (a write through this mount, a /.txn commit, `ustate set` on the
# database file, another mount of it: ustatefs turns each into the same
# inotify events). While the key does not exist the service is stopped.
#
#   reactor.sh CONFIG_FILE [COMMAND [ARGS...]]
#
# CONFIG_FILE is a file on a ustatefs mount, in a directory that exists.
# COMMAND is started with CONFIG (the file) and CONFIG_VERSION (the
# version the reactor saw) in its environment and stopped with SIGTERM;
# without one, a demo service prints the config it read and sleeps. The
# reactor logs each step on stdout; SIGTERM or SIGINT stops it and its
# service.
#
# By hand:
#   ustatefs /tmp/state.db /tmp/mnt && mkdir -p /tmp/mnt/svc
#   echo v1 > /tmp/mnt/svc/config
#   examples/reactor.sh /tmp/mnt/svc/config &
#   echo v2 > /tmp/mnt/svc/config                 # restarts the service
#   ustate -d /tmp/state.db set /svc/config v3    # ... and so does this
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: reactor.sh CONFIG_FILE [COMMAND [ARGS...]]" >&2
	exit 2
fi
config=$1
shift
command=("$@")
dir=$(dirname "$config")
name=$(basename "$config")
[ -d "$dir" ] || { echo "reactor: $dir: no such directory" >&2; exit 1; }

# The demo service reads its config once, at start, as most daemons do.
demo_service() {
	local sleeper=
	trap 'kill $sleeper 2>/dev/null; wait; exit 0' TERM
	echo "service $BASHPID: config version $CONFIG_VERSION: $(cat "$CONFIG")"
	sleep infinity &
	sleeper=$!
	wait
}

svc='' running=0
start() {
	echo "reactor: starting the service at config version $2"
	if [ ${#command[@]} -gt 0 ]; then
		CONFIG=$config CONFIG_VERSION=$2 "${command[@]}" &
	else
		CONFIG=$config CONFIG_VERSION=$2 demo_service &
	fi
	svc=$! running=$1
}
stop() {
	[ -n "$svc" ] || return 0
	echo "reactor: stopping the service (pid $svc)"
	kill -TERM "$svc" 2>/dev/null || true
	wait "$svc" 2>/dev/null || true
	svc='' running=0
}

# A read-only xattr of the key: version (1 when created, + 1 at each
# write) or revision (the store revision of its last change); 0 when the
# key does not exist.
xattr() {
	getfattr --absolute-names --only-values -n "user.$1" "$config" \
		2>/dev/null || echo 0
}

# (Re)start the service when the key changed since the service started.
# The key's revision moves at every change of it, and nothing else moves
# it, so events that change nothing restart nothing. (Its version would
# not do: a key deleted and made again is at version 1 again.)
react() {
	local rev
	rev=$(xattr revision)
	[ "$rev" != "$running" ] || return 0
	stop
	if [ "$rev" = 0 ]; then
		echo "reactor: $config does not exist; the service stays stopped"
	else
		start "$rev" "$(xattr version)"
	fi
}

inotify=''
cleanup() {
	trap - EXIT TERM INT
	stop
	if [ -n "$inotify" ]; then
		kill "$inotify" 2>/dev/null || true
		wait "$inotify" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 0' TERM INT

# Watch the directory, not the file: an update is CLOSE_WRITE on the
# name, a rename over it (editors, os.replace) MOVED_TO, and a delete or
# a rename away DELETE or MOVED_FROM; a file watch would not survive
# either. inotifywait says "Watches established." on stderr once it
# watches: act only then, so no change after the first read is missed.
exec {events}< <(exec inotifywait -m \
	-e close_write -e moved_to -e moved_from -e delete \
	--format '%e %f' "$dir" 2>&1)
inotify=$!
while read -r -u "$events" line; do
	[ "$line" != "Watches established." ] || break
done
react
while read -r -u "$events" event file; do
	[ "$file" = "$name" ] || continue
	echo "reactor: $event $name"
	react
done
echo "reactor: inotifywait ended" >&2
exit 1
