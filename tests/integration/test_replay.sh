#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Two mounts A and B of one SQLite file: every change made through A
# reaches B's inotify watchers as exactly the events it gives on A (a
# directory that appears, once; a rename, as IN_MOVED_FROM and IN_MOVED_TO
# with one cookie; a tree removed, as its own removals), on the root and
# on a subdirectory; and once a renamed tree reads right on B, its old
# name is gone from B.
#   REPLAY_SOURCES: A's and B's SOURCE, space-separated (the cluster
#   tests mount two etcd endpoints of one store); default one SQLite file.
. "$(dirname "$0")/lib.sh"

A=$T/a
B=$T/b
read -r srcA srcB <<< "${REPLAY_SOURCES:-$T/state.db $T/state.db}"
mount_fs "$srcA" "$A"
mount_fs "$srcB" "$B"
EVENTS=create,delete,moved_from,moved_to,close_write

# watch NAME DIR: a non-recursive watcher of DIR into $T/NAME, stopped at
# exit; returns once it is established.
watch() {
	inotifywait -m -e "$EVENTS" --format '%e %f %c' "$2" > "$T/$1" 2>&1 &
	at_exit "kill $!"
	wait_for 5 grep -q "Watches established" "$T/$1" ||
		fail "$1: inotifywait did not start"
}

# events NAME [FROM]: its events (after the first FROM), one a line,
# cookies numbered by first use (c1, c2, ...; - for none).
events() {
	grep -v -e '^Setting up watches' -e '^Watches established' "$T/$1" |
		tail -n +"$((${2:-0} + 1))" |
		awk '{ c = "-"
		       if ($3 != 0) { if (!($3 in n)) n[$3] = ++k; c = "c" n[$3] }
		       print $1, $2, c }'
}

# settle N NAME...: wait (10 s at most) until each watcher has N events,
# then a little longer, so that a late extra one is seen too.
has_events() { [ "$(events "$2" | wc -l)" -ge "$1" ]; }
settle() {
	local n=$1 w
	shift
	for w in "$@"; do
		wait_for 10 has_events "$n" "$w" || true
	done
	sleep 0.5
}
count() { events "$1" | wc -l; }

reads() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }

# The watched subdirectory, and B's replay of it, before any watcher.
watch pre "$B"
mkdir "$A/s"
wait_for 5 grep -q "CREATE,ISDIR s" "$T/pre" || fail "B: the replay of mkdir s"

watch rootA "$A"
watch rootB "$B"
watch subA "$A/s"
watch subB "$B/s"

# The sequence of the issue, at once (B replays it while A is ahead), a
# file renamed, trees removed.
mkdir -p "$A/f1/x"
echo 1 > "$A/f1/x/k"
echo 2 > "$A/f1/k2"
mv "$A/f1" "$A/f2"
echo 3 > "$A/s/a"
mv "$A/s/a" "$A/s/b"
mkdir -p "$A/s/t/u"
echo 4 > "$A/s/t/u/v"
rm -r "$A/s/t"
wait_for 5 reads "$B/f2/x/k" 1 || fail "B: f2/x/k"
check "B: the renamed tree reads right, its old name is gone" "2 no" \
	"$(cat "$B/f2/k2") $([ -e "$B/f1" ] && echo yes || echo no)"
rm -r "$A/f2"

root="CREATE,ISDIR f1 -
MOVED_FROM,ISDIR f1 c1
MOVED_TO,ISDIR f2 c1
DELETE,ISDIR f2 -"
sub="CREATE a -
CLOSE_WRITE,CLOSE a -
MOVED_FROM a c1
MOVED_TO b c1
CREATE,ISDIR t -
DELETE,ISDIR t -"
settle 4 rootA rootB
settle 6 subA subB
check "A's root watcher: the native events" "$root" "$(events rootA)"
check "B's root watcher: the same" "$root" "$(events rootB)"
check "A's subdirectory watcher: the native events" "$sub" "$(events subA)"
check "B's subdirectory watcher: the same" "$sub" "$(events subB)"

# A rename over an existing file reaches B as what the store can tell:
# the target's new value and the source's delete (a transaction that sets
# one key and deletes another looks the same).
from=$(count subB)
echo 5 > "$A/s/c"
wait_for 5 reads "$B/s/c" 5 || fail "B: s/c"
mv "$A/s/b" "$A/s/c"
settle $((from + 4)) subB
check "B: a rename over a file, as its update and the source's delete" \
	"CREATE c -
CLOSE_WRITE,CLOSE c -
CLOSE_WRITE,CLOSE c -
DELETE b -" "$(events subB "$from")"

# Once the renamed tree reads right on B, its old name is gone there,
# even when B had it cached (read just before): five rounds.
stale=0
for i in 1 2 3 4 5; do
	mkdir -p "$A/d1/x"
	echo "$i" > "$A/d1/x/k"
	wait_for 5 reads "$B/d1/x/k" "$i" || fail "B: d1/x/k, round $i"
	mv "$A/d1" "$A/d2"
	wait_for 5 reads "$B/d2/x/k" "$i" || fail "B: d2/x/k, round $i"
	[ -e "$B/d1" ] && stale=$((stale + 1))
	rm -r "$A/d2"
	wait_for 5 bash -c "! [ -e '$B/d2' ]" || fail "B: d2 gone, round $i"
done
check "B: the old name gone as soon as the new one reads right" 0 "$stale"

umount_fs "$B"
umount_fs "$A"
check "unmounted cleanly" "" "$(grep -e " $A " -e " $B " /proc/mounts || true)"
