#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs under systemd: the unit passes systemd-analyze verify, and the
# daemon speaks the notify protocol: READY=1 once the mount answers,
# WATCHDOG=1 while its loop answers, STOPPING=1 and exit 0 on SIGTERM.
. "$(dirname "$0")/lib.sh"

: "${USTATEFS_UNIT:?USTATEFS_UNIT must name the generated unit}"

# The unit as installed, but with ExecStart at this build's daemon.
mkdir -p "$T/units"
sed "s|^ExecStart=[^ ]*ustatefs |ExecStart=$USTATEFS |" "$USTATEFS_UNIT" \
	> "$T/units/ustatefs@.service"
check "systemd-analyze verify" "" \
	"$(systemd-analyze verify "$T/units/ustatefs@.service" 2>&1)"
# The etcd node's unit, with a configuration of its own.
etcd_unit=${USTATEFS_UNIT%/*}/ustatefs-etcd@.service
sed "s|^ExecStart=[^ ]*ustatefs |ExecStart=$USTATEFS |; s|/etc/ustate/%i.conf|$T/%i.conf|" \
	"$etcd_unit" > "$T/units/ustatefs-etcd@.service"
printf 'SOURCE=etcd://127.0.0.1:2379/t\nOPTIONS=-o request_timeout=5000\n' > "$T/t.conf"
check "systemd-analyze verify, the etcd node's unit" "" \
	"$(systemd-analyze verify "$T/units/ustatefs-etcd@t.service" 2>&1)"

# A notify socket that records what the daemon says, with arrival times.
M=$T/mnt
mkdir -p "$M"
python3 - "$T/notify.sock" "$T/notify.log" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "w", buffering=1) as log:
    while True:
        msg = s.recv(4096).decode()
        for line in msg.split("\n"):
            log.write("%.3f %s\n" % (time.monotonic(), line))
        if "STOPPING=1" in msg:
            break
PY
listener=$!
at_exit "kill $listener"
wait_for 5 test -S "$T/notify.sock"

NOTIFY_SOCKET=$T/notify.sock WATCHDOG_USEC=200000 \
	bash -c 'export WATCHDOG_PID=$$; exec "$0" -f "$1" "$2"' \
	"$USTATEFS" "$T/state.db" "$M" &
pid=$!
at_exit "kill -9 $pid; fusermount3 -uz '$M'"
wait_for 5 grep -q READY=1 "$T/notify.log"
check "READY=1 once the mount answers" 1 \
	"$(grep -c '^[0-9.]* READY=1$' "$T/notify.log")"
check "the mount answers when READY=1 arrives" "" \
	"$(ls -A "$M" | grep -v -e '^.txn$' -e '^.leases$' || true)"
sleep 1
pings=$(grep -c 'WATCHDOG=1' "$T/notify.log")
check "WATCHDOG=1 every half period (200 ms) while the loop answers" 1 \
	$((pings >= 4))
kill -TERM $pid
rc=0
wait $pid || rc=$?
check "SIGTERM: exit 0" 0 "$rc"
wait_for 5 grep -q STOPPING=1 "$T/notify.log"
check "STOPPING=1 on the way out" 1 "$(grep -c 'STOPPING=1' "$T/notify.log")"
check "and unmounted" "" "$(awk -v m="$M" '$2 == m' /proc/mounts)"
