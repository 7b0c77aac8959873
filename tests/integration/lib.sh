# SPDX-License-Identifier: MIT
# Shared helpers of the integration tests: mount a real ustatefs, clean up
# whatever a test started (newest first) even when it fails, and assert.
# Source it from a test; USTATEFS names the daemon (meson sets it).
set -euo pipefail

: "${USTATEFS:?USTATEFS must name the ustatefs binary}"

# Skip (exit 77) only when FUSE is truly missing.
if [ ! -c /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	echo "SKIP: /dev/fuse or fusermount3 missing"
	exit 77
fi

T=$(mktemp -d /tmp/ustatefs-test.XXXXXX)
# What a program makes for itself in TMPDIR (an etcd store's private
# replica) goes with the test's folder, even from a daemon killed with
# SIGKILL, which cannot remove it.
export TMPDIR=$T
_cleanup=()
_failed=0

# A daemon's stderr is gone once it is in the background: sanitizer
# reports go to files, which the exit check reads.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$T/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$T/sanitizer"

# Run a command at exit, before those registered earlier.
at_exit() { _cleanup=("$*" "${_cleanup[@]}"); }

# On failure: where each of this test's daemons' threads is waiting.
_dump_daemons() {
	local pid t
	for pid in $(pgrep -f "ustatefs .*$T/"); do
		echo "== daemon $pid: $(tr '\0' ' ' < /proc/$pid/cmdline)" >&2
		for t in /proc/$pid/task/*; do
			echo "-- thread ${t##*/} $(cat $t/wchan 2>/dev/null)" >&2
			head -4 $t/stack >&2 2>/dev/null
		done
	done
}

# Abort the FUSE connection of every mount under $T that is still there
# (a daemon stuck or killed mid-request): the last resort of recovery.
_abort_mounts() {
	local dev mnt
	grep -q fusectl /proc/mounts ||
		mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null
	while read -r _ _ dev _ mnt _; do
		case $mnt in "$T"/*) ;; *) continue ;; esac
		echo 1 > "/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null
		fusermount3 -uz "$mnt" 2>/dev/null
	done < /proc/self/mountinfo
}

_on_exit() {
	local rc=$? c
	set +e
	if [ $rc -ne 0 ] || [ $_failed -ne 0 ]; then _dump_daemons; fi
	for c in "${_cleanup[@]}"; do
		eval "$c" >/dev/null 2>&1
	done
	_abort_mounts
	# Daemons exit after their unmount; then their reports are complete.
	wait_for 5 _no_daemon
	if compgen -G "$T/sanitizer*" >/dev/null; then
		cat "$T"/sanitizer* >&2
		_failed=1
	fi
	rm -rf "$T"
	# A skip (exit 77) after the start, as use_nobody's.
	if [ $rc -eq 77 ] && [ $_failed -eq 0 ]; then
		exit 77
	fi
	if [ $rc -ne 0 ] || [ $_failed -ne 0 ]; then
		echo "FAILED: $(basename "$0")" >&2
		exit 1
	fi
	echo "PASSED: $(basename "$0")"
}
trap _on_exit EXIT

# Poll a command for up to $1 seconds.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 20; i++)); do
		if "$@" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

_no_daemon() { ! pgrep -f "ustatefs .*$T/" >/dev/null; }

# mount_fs SOURCE MOUNTPOINT [ustatefs args...]: mount; unmount at exit.
mount_fs() {
	local src=$1 mnt=$2
	shift 2
	mkdir -p "$mnt"
	"$USTATEFS" "$@" "$src" "$mnt"
	at_exit "fusermount3 -uz '$mnt'"
	grep -q " $mnt fuse.ustatefs " /proc/mounts
}

# The LD_PRELOAD value that loads the test layer $POWERLOSS_SO into a
# daemon: an AddressSanitizer build wants its runtime first in the list.
shim_preload() {
	local asan
	asan=$(ldd "$USTATEFS" | awk '/libasan/ { print $3 }')
	echo "${asan:+$asan:}$POWERLOSS_SO"
}

# umount_fs MOUNTPOINT: unmount; retried while the kernel says EBUSY,
# which it does while the daemon replays a change made outside the
# mount's own requests (its helper holds a file open for a moment).
umount_fs() {
	wait_for 5 fusermount3 -u "$1" || fusermount3 -u "$1"
}

# For a test that acts as another user too: NOBODY (its uid), PY (a
# python3 that user can run, not a shim in /root) and as_nobody COMMAND...
# A skip (77) when the system has none of them. $T becomes 0755, for the
# other user to reach the mountpoints: nothing in it but the test's files
# and databases (0600).
use_nobody() {
	NOBODY=65534
	PY=/usr/bin/python3
	if ! id -u nobody > /dev/null 2>&1 || [ ! -x "$PY" ] ||
		! command -v setpriv > /dev/null; then
		echo "SKIP: needs the nobody user, $PY and setpriv"
		exit 77
	fi
	chmod 0755 "$T"
}

as_nobody() { setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups "$@"; }

fail() {
	echo "not ok: $*" >&2
	_failed=1
}

# check DESCRIPTION EXPECTED ACTUAL
check() {
	if [ "$2" == "$3" ]; then
		echo "ok: $1"
	else
		fail "$1: expected [${2:0:300}], got [${3:0:300}]"
	fi
}

# check_err DESCRIPTION ERRNO_TEXT COMMAND...: the command fails, saying so.
check_err() {
	local what=$1 want=$2 out
	shift 2
	if out=$("$@" 2>&1); then
		fail "$what: succeeded, expected $want"
	elif [[ "$out" != *"$want"* ]]; then
		fail "$what: expected \"$want\", got \"$out\""
	else
		echo "ok: $what"
	fi
}

xattr() { getfattr --absolute-names --only-values -n "user.$1" "$2" 2>/dev/null; }

# txn_run FILE SCRIPT: one write of SCRIPT to the /.txn FILE, then its
# reply; the first line says "write ok" or "write ERRNO".
txn_run() {
	python3 - "$1" "$2" <<'PY'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    os.write(fd, sys.argv[2].encode())
    print("write ok")
except OSError as e:
    print("write", errno.errorcode[e.errno])
sys.stdout.flush()
sys.stdout.buffer.write(os.read(fd, 65536))
os.close(fd)
PY
}
