#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: watches are native inotify events on the mount, for writes
# through the mount (from the kernel, each once), for /.txn commits, for
# other processes writing the database through libustate or SQLite, and
# for a second mount of the same file (replayed by the daemon).
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
put() { "$USTATE_CLI" -d "$T/state.db" "$@" > /dev/null; }
M=$T/mnt
mount_fs "$T/state.db" "$M"
mkdir "$M/w"

# watch_start: inotifywait -m -r on the mount; events go to $T/events with
# the time each was read.
watch_start() {
	: > "$T/events"
	(inotifywait -m -r --format '%e %w%f' "$M" 2>"$T/inotify.err" |
		while read -r ev path; do
			echo "$(date +%s.%N) $ev ${path#$M}"
		done >> "$T/events") &
	at_exit "pkill -f 'inotifywait -m -r --format %e %w%f $M'"
	wait_for 5 grep -q "Watches established" "$T/inotify.err"
}
# events [DIR...]: the events seen so far, without times, reads and the
# writes of /.txn itself, and without events inside the directories named:
# inotifywait -r watches a new directory only after its CREATE, so what is
# made in it at once is missed, on any file system. Identical events in a
# row count once: inotify merges them when the reader is behind.
events() {
	local skip='^$' d
	for d in "$@"; do skip="$skip| ${d}/"; done
	cut -d' ' -f2- "$T/events" |
		grep -v -E '^(OPEN|ACCESS|CLOSE_NOWRITE)|/\.txn$' |
		grep -v -E "$skip" | uniq || true
}
settle() { sleep 0.3; }

watch_start
echo v1 > "$M/w/k"
echo v2 > "$M/w/k"
rm "$M/w/k"
mkdir "$M/w/d"
settle
# (the second echo truncates at open, then writes: two MODIFY, merged)
check "mount writes: native events, each once" \
"CREATE /w/k
MODIFY /w/k
CLOSE_WRITE,CLOSE /w/k
MODIFY /w/k
CLOSE_WRITE,CLOSE /w/k
DELETE /w/k
CREATE,ISDIR /w/d" "$(events)"

echo old > "$M/w/upd"
echo gone > "$M/w/del"
settle
: > "$T/events"
printf 'set /w/new 1\nA\nset /w/upd 1\nB\ndelete /w/del\ncommit\n' > "$M/.txn"
settle
check ".txn commit: replayed as if made through the mount" \
"CREATE /w/new
CLOSE_WRITE,CLOSE /w/new
CLOSE_WRITE,CLOSE /w/upd
DELETE /w/del" "$(events)"
check "the replay changed nothing" "A B" "$(cat "$M/w/new") $(cat "$M/w/upd")"

: > "$T/events"
t0=$(date +%s.%N)
put set /w/ext1 one
# (inotify merges two identical events in a row that nobody read yet)
wait_for 5 grep -q 'CLOSE_WRITE,CLOSE /w/ext1' "$T/events"
put set /w/ext1 two
put set /x/y/ext2 three
put delete /w/ext1
wait_for 5 grep -q 'DELETE /w/ext1' "$T/events"
check "another process through libustate: events in revision order" \
"CREATE /w/ext1
CLOSE_WRITE,CLOSE /w/ext1
CREATE,ISDIR /x
DELETE /w/ext1" "$(events /x)"
check "the create and the update each closed once" 2 \
	"$(grep -c 'CLOSE_WRITE,CLOSE /w/ext1$' "$T/events")"
first=$(grep -m1 'CREATE /w/ext1' "$T/events" | cut -d' ' -f1)
lat=$(echo "($first - $t0) * 1000" | bc -l | cut -d. -f1)
echo "first event ${lat:-0} ms after the write started"
check "external change reaches watchers within 1 s" 1 $((${lat:-0} < 1000))
check "a reader on the event sees the new value" three "$(cat "$M/x/y/ext2")"

: > "$T/events"
python3 - "$T/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE kv_store SET value = x'7a', version = version + 1 WHERE key = '/w/upd'")
db.commit()
PY
wait_for 5 grep -q 'CLOSE_WRITE,CLOSE /w/upd' "$T/events"
check "a plain SQLite client: updated" "CLOSE_WRITE,CLOSE /w/upd" "$(events)"

: > "$T/events"
echo spec > "$M/app"
settle
: > "$T/events"
put set /app/i1 x
wait_for 5 grep -q 'CREATE,ISDIR /app' "$T/events"
check "a file that gains a child turns into a directory" \
"DELETE /app
CREATE,ISDIR /app" "$(events /app)"
check "with its value as .value and the child" ".value i1" \
	"$(ls -A "$M/app" | tr '\n' ' ' | sed 's/ $//')"
check "and reads as one" "directory spec" "$(stat -c %F "$M/app") $(cat "$M/app/.value")"

M2=$T/mnt2
mount_fs "$T/state.db" "$M2"
: > "$T/events"
echo from-b > "$M2/w/b"
wait_for 5 grep -q 'CLOSE_WRITE,CLOSE /w/b' "$T/events"
check "a second mount's write reaches the first mount's watchers" \
"CREATE /w/b
CLOSE_WRITE,CLOSE /w/b" "$(events)"
check "and its value" from-b "$(cat "$M/w/b")"

# Directories made and removed on the second mount (records, no keys)
# reach the first mount's watchers too; its own mkdir is not doubled.
: > "$T/events"
mkdir "$M2/w/newdir" "$M2/w/deep"
# (inotifywait -r watches a new directory only once it saw it made)
wait_for 5 grep -q 'CREATE,ISDIR /w/deep' "$T/events"
settle
mkdir "$M2/w/deep/er"
rmdir "$M2/w/newdir"
wait_for 5 grep -q 'DELETE,ISDIR /w/newdir' "$T/events"
check "a second mount's mkdir and rmdir reach the first mount's watchers" \
"CREATE,ISDIR /w/newdir
CREATE,ISDIR /w/deep
CREATE,ISDIR /w/deep/er
DELETE,ISDIR /w/newdir" "$(events | grep -v DELETE_SELF)"
check "and the first mount lists them" "deep er, no newdir" \
	"$(ls "$M/w" | grep -x deep) $(ls "$M/w/deep"), $(ls "$M/w" | grep -qx newdir && echo newdir || echo no newdir)"
: > "$T/events"
mkdir "$M/w/mine"
settle
check "a mount's own mkdir: one event" "CREATE,ISDIR /w/mine" "$(events)"

# The last file of a directory removed elsewhere: the directory stays (its
# record is made in the same transaction), and no one hears it made anew.
mkdir "$M2/w/solo"
wait_for 5 grep -q 'CREATE,ISDIR /w/solo' "$T/events" || true
settle
echo x > "$M2/w/solo/f"
wait_for 5 grep -q 'CLOSE_WRITE,CLOSE /w/solo/f' "$T/events" || true
settle
: > "$T/events"
rm "$M2/w/solo/f"
wait_for 5 grep -q 'DELETE /w/solo/f' "$T/events" || true
settle
check "the last file removed elsewhere: its delete, and nothing else" \
	"DELETE /w/solo/f" "$(events)"
check "... and the directory stays" "directory" "$(stat -c %F "$M/w/solo")"
