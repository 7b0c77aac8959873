#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/reactor.sh restarts its service, which reads the new config,
# for every change of the config key: through the mount (a write, a
# rename over it), through `ustate` on the database file, through /.txn;
# it stops it while the key is gone, ignores other keys, and stops the
# service when it is stopped itself.
. "$(dirname "$0")/lib.sh"

u() { ustate "$@" >/dev/null; }
M=$T/mnt
mount_fs "$DB" "$M"
mkdir "$M/svc"
echo v1 > "$M/svc/config"

spawn "$EXAMPLES/reactor.sh" "$M/svc/config" > "$T/log" 2>&1
reactor=$!

# service VERSION VALUE: wait until a service reports it read VALUE at
# VERSION; print its pid.
service() {
	local pattern="^service [0-9]*: config version $1: $2\$"
	if ! wait_for 10 grep -q "$pattern" "$T/log"; then
		fail "no service read config version $1 ($2)"
		cat "$T/log" >&2
		exit 1
	fi
	grep "$pattern" "$T/log" | tail -1 | cut -d' ' -f2 | tr -d :
}
# alive PID: yes while PID runs (a zombie is dead: nobody may reap it).
alive() {
	local state
	state=$(ps -o stat= -p "$1" 2>/dev/null) || state=Z
	[[ $state == Z* ]] && echo no || echo yes
}
starts() { grep -c 'starting the service' "$T/log" || true; }

s1=$(service 1 v1)
check "the service runs with the config it read" yes "$(alive "$s1")"

echo v2 > "$M/svc/config"
s2=$(service 2 v2)
check "a write through the mount restarts it: the old one is gone" \
	"no yes" "$(alive "$s1") $(alive "$s2")"

u set /svc/config v3
s3=$(service 3 v3)
check "ustate set on the database file restarts it" \
	"no yes" "$(alive "$s2") $(alive "$s3")"

echo v4 > "$M/svc/.config.new"
mv "$M/svc/.config.new" "$M/svc/config"
s4=$(service 4 v4)
check "a rename over the key (as editors save) restarts it" \
	"no yes" "$(alive "$s3") $(alive "$s4")"

u delete /svc/config
wait_for 10 grep -q 'does not exist; the service stays stopped' "$T/log" ||
	fail "no stop when the key was deleted"
check "a deleted key stops it" no "$(alive "$s4")"

# Made again it is at version 1, which the reactor told from the first 1.
printf 'set /svc/config 2\nv5\ncommit\n' > "$M/.txn"
s5=$(service 1 v5)
check "a /.txn commit starts it again" yes "$(alive "$s5")"

n=$(starts)
: >> "$M/svc/config" # opened for writing, closed unwritten: no commit
echo other > "$M/svc/other"
u set /svc/unrelated x
u set /svc/config v6
s6=$(service 2 v6)
check "other keys, and a close that wrote nothing, restart nothing" $((n + 1)) "$(starts)"

sleeper=$(pgrep -P "$s6" sleep || true)
check "the demo service has its sleep" yes "$(alive "${sleeper:-0}")"
kill -TERM "$reactor"
rc=0
wait "$reactor" || rc=$?
check "the reactor ends cleanly on SIGTERM" 0 "$rc"
check "... and stops its service first" "no no" \
	"$(alive "$s6") $(alive "$sleeper")"
check "the reactor logged each step" "" "$(grep -v -E \
	'^(reactor: (starting|stopping|CLOSE_WRITE,CLOSE|MOVED_TO|DELETE|/.* does not exist)|service [0-9]+: )' \
	"$T/log")"
