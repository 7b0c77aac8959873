#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Faults: I/O errors on the database (injected by powerloss.so in the
# daemon) and the database file deleted or replaced under a mounted store.
# Each fails the commit at close() (or the .txn write, or rename) with
# EIO, leaves the old value in place, and the daemon keeps serving. Also:
# a creation whose commit failed leaves a name that can be created again.
. "$(dirname "$0")/lib.sh"

: "${POWERLOSS_SO:?POWERLOSS_SO must name powerloss.so}"
M=$T/mnt
DB=$T/state.db
CTL=$T/ctl
P=$(dirname "$0")/put.py
put() { python3 "$P" "$@"; }
state() { echo "$(wc -c < "$1")|$(xattr version "$1")"; }
txn() {
	python3 -c 'import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    os.write(fd, b"set /t 2\nhi\ncommit\n")
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "$M/.txn"
}
# inject WHAT SKIP COUNT: fail COUNT writes or syncs after SKIP more.
inject() { echo "$*" > "$CTL"; }

mkdir -p "$M"
env LD_PRELOAD="$(shim_preload)" POWERLOSS_DB="$DB" POWERLOSS_CTL="$CTL" \
	"$USTATEFS" -o max_value_size=4096 "$DB" "$M"
at_exit "fusermount3 -uz '$M'"

# -- a creation whose commit failed: the name can be created again --
check "a new value over the maximum fails" "write EFBIG" "$(put "$M/big" 5000)"
check "... and the name is free for a create at once" "ok|5" \
	"$(put "$M/big" 5)|$(stat -c %s "$M/big")"
put "$M/gone" 5000 >/dev/null
check_err "... or absent for a plain open" "No such file" cat "$M/gone"

# -- a failed fdatasync of the WAL: the commit fails, nothing changes --
put "$M/k" 10 >/dev/null
inject sync 0 1
check "an fdatasync EIO fails the commit at close()" "close EIO" "$(put "$M/k" 20)"
check "... the fault was consumed" "" "$(ls "$CTL" 2>/dev/null)"
check "... the old value and version stay" "10|1" "$(state "$M/k")"
check "... and stay after the release" "10|1" "$(sleep 0.2; state "$M/k")"
check "the next write works" "ok|20|2" "$(put "$M/k" 20)|$(state "$M/k")"

# -- a failed write of the WAL --
inject write 0 1
check "a write EIO fails the commit at close()" "close EIO" "$(put "$M/k" 30)"
check "... the old value and version stay" "20|2" "$(state "$M/k")"
inject write 2 1
check "a write EIO in the middle of a commit" "close EIO" "$(put "$M/k" 4000)"
check "... the old value and version stay" "20|2" "$(state "$M/k")"
check "the next write works" "ok|30|3" "$(put "$M/k" 30)|$(state "$M/k")"

# -- a disk that fails every write: every kind of commit says so --
inject write 0 1000000
check "every write failing: close()" "close EIO" "$(put "$M/k" 40)"
check "... a .txn commit" EIO "$(txn)"
check_err "... rename" "Input/output error" mv "$M/k" "$M/k2"
check_err "... unlink" "Input/output error" rm "$M/k"
check_err "... mkdir" "Input/output error" mkdir "$M/d"
check "... reads still work, the value unchanged" "30|3" "$(state "$M/k")"
inject write 0 0
check "the disk back: writes work again" "ok|40|4|ok" \
	"$(put "$M/k" 40)|$(state "$M/k")|$(txn)"

# -- a commit that failed, then a crash: its outcome is unknown --
inject sync 0 1
check "a failed commit before a crash" "close EIO" "$(put "$M/k" 50)"
pkill -9 -o -f "^$USTATEFS -o max_value_size=4096 $DB" || true
wait_for 10 bash -c "! pgrep -f '^$USTATEFS -o max_value_size=4096 $DB'"
fusermount3 -uz "$M"
check "integrity_check after the crash" ok "$(sqlite3 "$DB" 'PRAGMA integrity_check')"
after=$(sqlite3 "$DB" "SELECT length(value) || '|' || version FROM kv_store WHERE key = '/k'")
echo "after the crash /k is $after (40|4: the failed commit vanished; 50|5: it came back)"
check "... the key holds the old value or the failed one, whole" 1 \
	"$([[ $after == 40\|4 || $after == 50\|5 ]] && echo 1)"

# -- the database file deleted under the mount --
mount_fs "$T/del.db" "$M"
put "$M/a" 10 >/dev/null
rm "$T/del.db" "$T/del.db-wal" "$T/del.db-shm" "$T/del.db-ulock"
check "the database deleted: close() fails" "close EIO" "$(put "$M/a" 20)"
check "... a new file too" "close EIO" "$(put "$M/b" 20)"
check "... a .txn commit" EIO "$(txn)"
check_err "... mkdir" "Input/output error" mkdir "$M/d"
check "... the daemon still answers, from the store it opened" "10|1" "$(state "$M/a")"
# More readers at once than the pool had: none may open the deleted file
# anew, so they wait for the pool's (once they failed with EIO, at times).
pids=()
for i in $(seq 8); do
	(for j in $(seq 5); do state "$M/a"; done > "$T/par.$i") &
	pids+=($!)
done
wait "${pids[@]}"
check "... to 8 readers at once" "40 10|1" \
	"$(cat "$T"/par.* | wc -l) $(sort -u "$T"/par.*)"
umount_fs "$M"
check "... and unmounts cleanly" 0 "$(wait_for 5 _no_daemon; echo $?)"
check "... without making a database again" "" "$(ls "$T"/del.db* 2>/dev/null)"

# -- moved away and back; then replaced by another database. SQLite does
# not checkpoint a moved file at close, and would replay the WAL left at
# the path into the new file: the store empties it into its own first. --
mount_fs "$T/rep.db" "$M"
put "$M/a" 10 >/dev/null
mv "$T/rep.db" "$T/rep.moved"
check "the database moved away: close() fails" "close EIO" "$(put "$M/a" 20)"
mv "$T/rep.moved" "$T/rep.db"
check "... and back: writes work again" "ok|20|2" "$(put "$M/a" 20)|$(state "$M/a")"
sqlite3 "$T/other.db" "CREATE TABLE other(x); INSERT INTO other VALUES (1)"
mv "$T/other.db" "$T/rep.db"
check "the database replaced: close() fails" "close EIO" "$(put "$M/a" 30)"
check "... the daemon still answers" "20|2" "$(state "$M/a")"
umount_fs "$M"
wait_for 5 _no_daemon
check "... and the new file is untouched" "other|1" \
	"$(sqlite3 "$T/rep.db" ".tables" | xargs)|$(sqlite3 "$T/rep.db" "SELECT x FROM other")"
check "... and no WAL of ours is left to replay into it" 0 "$(stat -c %s "$T/rep.db-wal")"

# -- moved away for good: the file there holds every commit, without WAL --
mount_fs "$T/mv.db" "$M"
put "$M/a" 10 "$M/b" 20 >/dev/null
mv "$T/mv.db" "$T/mv.old"
check "the database renamed: close() fails" "close EIO" "$(put "$M/c" 1)"
umount_fs "$M"
wait_for 5 _no_daemon
check "... the renamed file has what was committed before" "/a /b" \
	"$(sqlite3 "$T/mv.old" "SELECT key FROM kv_store ORDER BY key" | xargs)"
check "no mount left" "" "$(grep " $T/" /proc/mounts || true)"
