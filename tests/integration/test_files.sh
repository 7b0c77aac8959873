#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: keys as files. Versions after echo, append, truncate and
# editing in place; one close is one version; xattrs; directories made by
# keys and by mkdir; .value files; type changes; every bad input.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M" -o max_value_size=4096

# -- one close, one version --
echo v1 > "$M/k"
check "echo creates version 1" 1 "$(xattr version "$M/k")"
echo v2 > "$M/k"
check "echo again is version 2" 2 "$(xattr version "$M/k")"
check "value" v2 "$(cat "$M/k")"
echo more >> "$M/k"
check "append is one version" 3 "$(xattr version "$M/k")"
check "appended value" "$(printf 'v2\nmore')" "$(cat "$M/k")"
: > "$M/k"
check ": > k commits an empty value" "4 0" \
	"$(xattr version "$M/k") $(stat -c %s "$M/k")"
printf 'hello world' > "$M/k"
truncate -s 5 "$M/k"
check "truncate -s" "hello 6" "$(cat "$M/k") $(xattr version "$M/k")"
python3 - "$M/k" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"J", 0)
os.close(fd)
PY
check "O_RDWR edits in place" "Jello 7" "$(cat "$M/k") $(xattr version "$M/k")"
check "st_size is the value length" 5 "$(stat -c %s "$M/k")"
printf 'a\0b' > "$M/bin"
check "NUL bytes survive" 3 "$(stat -c %s "$M/bin")"
check "NUL bytes read back" "610062" "$(od -An -tx1 "$M/bin" | tr -d ' \n')"

# -- xattrs --
names=$(getfattr --absolute-names -d "$M/k" | grep -o '^user\.[a-z_]*' | sort | tr '\n' ' ')
check "getfattr -d lists the four" \
	"user.created_at user.revision user.updated_at user.version " "$names"
v=$(xattr version "$M/k")
setfattr -n user.version -v 9 "$M/k"
check "user.version is read-only: a set changes nothing (rsync -X)" "$v" \
	"$(xattr version "$M/k")"
setfattr -n user.other -v 9 "$M/k"
check "other user xattrs are stored (test_xattrs.sh)" 9 "$(xattr other "$M/k")"
setfattr -n user.version -v "$v" "$M/k"
check "setting user.version to its value is a no-op" "$v" "$(xattr version "$M/k")"
check "XATTR_CREATE of user.version: EEXIST" EEXIST "$(python3 -c '
import errno, os, sys
try:
    os.setxattr(sys.argv[1], "user.version", b"1", os.XATTR_CREATE)
    print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])' "$M/k")"
setfattr -x user.version "$M/k"
check "removing user.version succeeds and changes nothing (rsync -X)" \
	"$v" "$(xattr version "$M/k")"
setfattr -x user.other "$M/k"
check_err "... and removed" "No such attribute" setfattr -x user.other "$M/k"
mkdir "$M/xd"
check_err "a directory has no user.version to remove" "No such attribute" \
	setfattr -x user.version "$M/xd"
rmdir "$M/xd"
rev1=$(xattr revision "$M/k")
echo x > "$M/k"
rev2=$(xattr revision "$M/k")
check "user.revision grows with a write" 1 $((rev2 > rev1))

# -- a reader sees the value as it was at open() --
echo before > "$M/snap"
exec 3< "$M/snap"
echo after-a-longer-value > "$M/snap"
check "reader keeps its snapshot" before "$(cat <&3)"
exec 3<&-
check "new reader sees the commit" after-a-longer-value "$(cat "$M/snap")"
# ... and keeps it when the key is deleted (cat asks fstat() first)
exec 3< "$M/snap"
rm "$M/snap"
check "a reader of a deleted key keeps its snapshot" \
	"21 after-a-longer-value" \
	"$(stat -L -c %s /dev/stdin <&3) $(cat <&3)"
exec 3<&-

# -- a file being written is not a key until its close --
# (python holds one descriptor and starts no process: a close of any
# copy of it, even by exec in a child, is a flush and so a commit). The
# writer's own stat tells what it wrote; others see it empty
# (test_posix.sh).
python3 - "$M/growing" <<'PY' > "$T/growing.out"
import os, sys
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"partial")
size = os.stat(p).st_size
try:
    os.getxattr(p, "user.version")
    ver = "has-version"
except OSError:
    ver = "no-version"
os.close(fd)
print(size, ver)
PY
check "being created: visible, its writer's size, not yet a key" \
	"7 no-version" \
	"$(cat "$T/growing.out")"
check "created at close" "1 partial" \
	"$(xattr version "$M/growing") $(cat "$M/growing")"
touch "$M/touched"
check "touch creates an empty key" "1 0" \
	"$(xattr version "$M/touched") $(stat -c %s "$M/touched")"

# -- noclobber is create_if_not_exists --
set -o noclobber
check_err "noclobber on an existing key" "cannot overwrite existing file" \
	bash -c "set -o noclobber; echo x > '$M/k'"
check_err "O_CREAT|O_EXCL on an existing key" "FileExistsError" \
	python3 -c "import os; os.open('$M/k', os.O_WRONLY|os.O_CREAT|os.O_EXCL)"
echo first > "$M/fresh"
set +o noclobber
# The name is claimed at open (version 1, empty), the value is the close's.
check "noclobber creates a new key, claimed at open" "2 first" \
	"$(xattr version "$M/fresh") $(cat "$M/fresh")"

# -- directories --
mkdir -p "$M/a/b"
echo c > "$M/a/b/c"
check "ls lists children" "b" "$(ls "$M/a")"
check "prefix directories are directories" directory "$(stat -c %F "$M/a/b")"
rm "$M/a/b/c"
check "removing the last file leaves the directory" directory \
	"$(stat -c %F "$M/a/b")"
check_err "rmdir of a non-empty directory" "not empty" rmdir "$M/a"
rmdir "$M/a/b"
rmdir "$M/a"
check "rmdir removes" "no" "$( [ -e "$M/a" ] && echo yes || echo no)"
mkdir "$M/empty"
umount_fs "$M"
mount_fs "$T/state.db" "$M" -o max_value_size=4096
check "mkdir survives a remount" directory "$(stat -c %F "$M/empty")"
check "values survive a remount" "x 8" "$(cat "$M/k") $(xattr version "$M/k")"

# -- a key with a value and children: DIR/.value --
echo spec > "$M/app"
python3 - "$T/state.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO kv_store VALUES ('/app/instances/i1', x'31', 1, 0, 0)")
db.commit()
PY
wait_for 2 test -d "$M/app"
check "a file key that gains a child turns into a directory" directory \
	"$(stat -c %F "$M/app")"
check "its own value is .value" spec "$(cat "$M/app/.value")"
check ".value has the key's version" 1 "$(xattr version "$M/app/.value")"
echo spec2 > "$M/app/.value"
check "writing .value writes the key" "spec2 2" \
	"$(cat "$M/app/.value") $(xattr version "$M/app/.value")"
check "ls shows .value and the child" ".value instances" \
	"$(ls -A "$M/app" | tr '\n' ' ' | sed 's/ $//')"
rm "$M/app/instances/i1"
rm "$M/app/.value"
check "after rm of .value the directory stays" directory \
	"$(stat -c %F "$M/app")"

# -- bad input: clear errors, nothing changes --
before=$(sqlite3 "$T/state.db" 'SELECT key, version, hex(value) FROM kv_store ORDER BY key')
check_err "reserved name .txn below the root" "Invalid argument" \
	bash -c "echo x > '$M/empty/.txn'"
check_err "reserved name .value at the root" "Invalid argument" \
	bash -c "echo x > '$M/.value'"
check_err "control character in a name" "Invalid argument" \
	bash -c "echo x > '$M/bad$(printf '\001')name'"
check_err "segment over 255 bytes" "too long" \
	bash -c "echo x > '$M/$(printf 'a%.0s' {1..256})'"
check_err "value over max_value_size fails at write()" "too large" \
	bash -c "head -c 5000 /dev/zero > '$M/big'"
check_err "symlink" "Operation not permitted" ln -s k "$M/sym"
check_err "hard link" "Operation not permitted" ln "$M/k" "$M/hard"
check_err "device node" "Operation not permitted" mknod "$M/dev" c 1 3
check_err "fifo" "Operation not permitted" mkfifo "$M/fifo"
check_err "unlink .txn" "Operation not permitted" rm -f "$M/.txn"
after=$(sqlite3 "$T/state.db" 'SELECT key, version, hex(value) FROM kv_store ORDER BY key')
check "bad input changed nothing" "$before" "$after"
check "no half-written big value" "no" \
	"$( [ -e "$M/big" ] && [ -n "$(xattr version "$M/big")" ] && echo yes || echo no)"

# -- read-only mount --
umount_fs "$M"
mount_fs "$T/state.db" "$M" -o ro
check "ro mount reads" x "$(cat "$M/k")"
check_err "ro mount refuses writes" "Read-only" bash -c "echo y > '$M/k'"
check_err "ro mount refuses .txn" "Read-only" \
	bash -c "printf 'commit\n' > '$M/.txn'"
for cmd in "rm '$M/k'" "mkdir '$M/nd'" "mv '$M/k' '$M/k2'" "touch '$M/new'" \
	"chmod 600 '$M/k'" "truncate -s 0 '$M/k'"; do
	check_err "ro mount refuses: ${cmd%% *}" "Read-only" bash -c "$cmd"
done
check "... and changed nothing" "$before" \
	"$(sqlite3 "$T/state.db" 'SELECT key, version, hex(value) FROM kv_store ORDER BY key')"

# A read-only mount still hears of every other writer: its watchers get
# the native events (the kernel mount stays rw for the daemon's replay).
inotifywait -m -r --format '%e %w%f' "$M" > "$T/ro-events" 2>/dev/null &
at_exit "kill $!"
sleep 0.3
"$USTATE_CLI" -d "$T/state.db" set /k z > /dev/null
"$USTATE_CLI" -d "$T/state.db" set /ro/new 1 > /dev/null
roev() { grep -q "CREATE,ISDIR $M/ro" "$T/ro-events" &&
	grep -q "CLOSE_WRITE,CLOSE $M/k" "$T/ro-events"; }
wait_for 3 roev || true
check "ro mount: another process's writes reach inotify" \
	"CLOSE_WRITE,CLOSE $M/k|CREATE,ISDIR $M/ro" \
	"$(grep -o -e "CLOSE_WRITE,CLOSE $M/k" -e "CREATE,ISDIR $M/ro" "$T/ro-events" | tr '\n' '|' | sed 's/|$//')"
check "ro mount: and reads see them" z "$(cat "$M/k")"
