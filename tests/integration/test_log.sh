#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: where messages go, at which levels. In the foreground to
# stderr; under systemd (stderr is $JOURNAL_STREAM) with "<N>" priority
# prefixes for journald; in the background to syslog (checked with a
# /dev/log of our own in a private mount namespace). -o log_level= drops
# what is below it, -d traces each FUSE request, and no message ever
# holds a value.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mkdir -p "$M"
secret=value-$RANDOM$RANDOM

# run_fg LOGFILE ARGS...: a foreground daemon, some requests, unmount.
run_fg() {
	local log=$1
	shift
	"$USTATEFS" -f "$@" "$T/state.db" "$M" 2>> "$log" &
	at_exit "fusermount3 -uz '$M'"
	wait_for 5 grep -q " $M fuse.ustatefs " /proc/mounts || fail "mount"
	echo "$secret" > "$M/k"
	cat "$M/k" > /dev/null
	printf 'set /t %d\n%s\ncommit\n' ${#secret} "$secret" > "$M/.txn"
	umount_fs "$M"
	wait
}

run_fg "$T/fg.log"
check "foreground: stderr says where it serves, and when it stops" \
	"ustatefs: serving $T/state.db at $M (sync=full)|ustatefs: unmounting $M" \
	"$(tr '\n' '|' < "$T/fg.log" | sed 's/|$//')"

run_fg "$T/quiet.log" -o log_level=warning
check "log_level=warning: no info messages" "" "$(cat "$T/quiet.log")"

# Under systemd: stderr is the journal stream $JOURNAL_STREAM names.
: > "$T/journal.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$T/journal.log") run_fg "$T/journal.log" -d
check "journal stream: info messages carry <6>" \
	"<6>serving $T/state.db at $M (sync=full)" \
	"$(grep serving "$T/journal.log")"
check "-d: each request traced at debug priority" 1 \
	$(($(grep -c '^<7>unique: .*opcode: WRITE' "$T/journal.log") >= 2))
check "no message holds a value (-d included)" 0 \
	"$(cat "$T"/*.log | grep -c -- "$secret" || true)"

check_err "a bad log_level is refused" "log_level=loud: must be" \
	"$USTATEFS" -o log_level=loud "$T/state.db" "$M"

# In the background: syslog. A private /dev with our own /dev/log.
cat > "$T/syslog.sh" <<EOF
set -e
mount -t tmpfs none /dev
mknod -m 666 /dev/fuse c 10 229
mknod -m 666 /dev/null c 1 3
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/dev/log")
open(sys.argv[2], "w").close()
with open(sys.argv[1], "w", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode(errors="replace") + "\n")
' "$T/syslog.out" "$T/syslog.ready" &
trap 'kill \$! 2>/dev/null; fusermount3 -uz "$M" 2>/dev/null || true' EXIT
for i in \$(seq 100); do [ -e "$T/syslog.ready" ] && break; sleep 0.05; done
"$USTATEFS" "$T/state.db" "$M"
echo "$secret" > "$M/k"
fusermount3 -u "$M"
for i in \$(seq 100); do grep -q unmounting "$T/syslog.out" && break; sleep 0.05; done
EOF
unshare -m --propagation private bash "$T/syslog.sh" > "$T/bg.out" 2>&1 ||
	fail "background run: $(cat "$T/bg.out")"
check "background: the terminal hears nothing" "" "$(cat "$T/bg.out")"
check "background: syslog, facility daemon, priority info" \
	"<30> serving $T/state.db at $M (sync=full)|<30> unmounting $M" \
	"$(sed -E 's/^(<[0-9]+>).*ustatefs\[[0-9]+\]:/\1/' "$T/syslog.out" |
		grep . | tr '\n' '|' | sed 's/|$//')"
