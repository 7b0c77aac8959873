#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/watch.c prints, in revision order, the changes to the keys its
# pattern matches, whoever made them: writes through a mount, a rename, a
# /.txn commit, `ustate` on the database file; nothing for other keys. It
# exits after -n events, and cleanly on SIGINT. Its SOURCE is any that
# ustate_open() takes: an unknown scheme is refused, saying so.
. "$(dirname "$0")/lib.sh"

: "${WATCH_EXAMPLE:?}"
u() { ustate "$@" >/dev/null; }
M=$T/mnt
mount_fs "$DB" "$M"
mkdir "$M/jobs"
echo before > "$M/jobs/old"
r=$(ustate revision)

spawn "$WATCH_EXAMPLE" -n 8 "$DB" '/jobs/*' > "$T/out" 2> "$T/err"
w=$!
wait_for 10 grep -q '^watching' "$T/out" || fail "the watch did not start"

echo one > "$M/jobs/a"                          # r+1
echo two > "$M/jobs/a"                          # r+2
echo elsewhere > "$M/other"                     # r+3, not watched
u set /jobs/b x                                 # r+4
printf 'set /jobs/a 5\nthree\ndelete /jobs/b\ncommit\n' > "$M/.txn"  # r+5
mv "$M/jobs/old" "$M/jobs/new"                  # r+6
u delete /jobs/a                                # r+7

rc=0
wait_for 10 eval "! kill -0 $w" || fail "no exit after 8 events"
wait "$w" || rc=$?
check "it exits 0 after -n events" 0 "$rc"
# (the changes of one transaction come in the order of its operations)
check "every change under /jobs/, in revision order" \
"watching /jobs/* after revision $r
created /jobs/a version 1 revision $((r + 1))
updated /jobs/a version 2 revision $((r + 2))
created /jobs/b version 1 revision $((r + 4))
updated /jobs/a version 3 revision $((r + 5))
deleted /jobs/b version 0 revision $((r + 5))
created /jobs/new version 1 revision $((r + 6))
deleted /jobs/old version 0 revision $((r + 6))
deleted /jobs/a version 0 revision $((r + 7))" "$(cat "$T/out")"
check "nothing on stderr" "" "$(cat "$T/err")"

# -r replays the retained history; SIGINT ends it with status 0.
spawn "$WATCH_EXAMPLE" -r $((r + 4)) "$DB" '/jobs/b' > "$T/out2" 2>&1
w=$!
wait_for 10 grep -q 'deleted /jobs/b' "$T/out2" || fail "no replay"
kill -INT "$w"
rc=0
wait "$w" || rc=$?
check "-r replays history; SIGINT ends it cleanly" "0
watching /jobs/b after revision $((r + 3))
created /jobs/b version 1 revision $((r + 4))
deleted /jobs/b version 0 revision $((r + 5))" "$rc
$(cat "$T/out2")"

check_err "a SOURCE with an unknown scheme" \
	'watch: foo://x: invalid' "$WATCH_EXAMPLE" foo://x '/jobs/*'
check "... and the library names the scheme" 1 \
	"$("$WATCH_EXAMPLE" foo://x '/jobs/*' 2>&1 | grep -c 'unknown scheme "foo"')"
