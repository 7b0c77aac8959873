#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs behaves as a local file system in what tools rely on (issue 14,
# the items that need nothing of the store):
# - a write by a user without CAP_FSETID (nobody, with allow_other) clears
#   the set-user-ID bit, and the set-group-ID bit of a group-executable
#   file; root's write keeps them; chown (by root too) clears them;
# - a writer sees its own writes: fstat() and stat() of the writing
#   process tell its buffer's size before close, another process the
#   committed value's;
# - an open file that is unlinked (or renamed over) stays readable and
#   fstat()-able with st_nlink 0; a writer's close then makes no key, and
#   a key made again at the name is another file;
# - a directory has 2 + its subdirectories links.
. "$(dirname "$0")/lib.sh"

use_nobody
umask 022
M=$T/mnt
DB=$T/state.db
mode() { stat -c '%a' "$1"; }
version() { xattr version "$1"; }

mount_fs "$DB" "$M" -o allow_other

# -- set-user-ID and set-group-ID bits ---------------------------------
echo v1 > "$M/suid"
chmod 4777 "$M/suid"
as_nobody sh -c "echo v2 >> '$M/suid'"
check "nobody's write clears the set-user-ID bit" 777 "$(mode "$M/suid")"
check "... and its data commits" "v1 v2" "$(tr '\n' ' ' < "$M/suid" | xargs)"
check "... in one version (the mode takes none)" 2 "$(version "$M/suid")"

chmod 2777 "$M/suid"
as_nobody sh -c "echo v3 >> '$M/suid'"
check "nobody's write clears set-group-ID with group execute" 777 \
	"$(mode "$M/suid")"

# Without group execute it marks mandatory locking: kept for the group's
# members (root here), cleared for others (nobody is not in group root).
chmod 2766 "$M/suid"
as_nobody sh -c "echo v4 >> '$M/suid'"
check "set-group-ID without group execute: cleared by a non-member" 766 \
	"$(mode "$M/suid")"

chmod 6777 "$M/suid"
echo v5 >> "$M/suid"
check "root's write keeps both bits" 6777 "$(mode "$M/suid")"

as_nobody "$PY" - "$M/suid" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.close(fd)
PY
check "nobody's O_TRUNC open with no write clears them too" 777 \
	"$(mode "$M/suid")"

chmod 4777 "$M/suid"
as_nobody truncate -s 1 "$M/suid"
check "nobody's truncate(1) clears them" 777 "$(mode "$M/suid")"

chmod 4777 "$M/suid"
check "nobody's read changes nothing" 4777 \
	"$(as_nobody cat "$M/suid" > /dev/null && mode "$M/suid")"

chmod 6775 "$M/suid"
chown $NOBODY "$M/suid"
check "chown (by root) clears both bits" "775 $NOBODY" \
	"$(stat -c '%a %u' "$M/suid")"
chmod 2775 "$M/suid"
chgrp $NOBODY "$M/suid"
check "chgrp clears set-group-ID" "775 $NOBODY" "$(stat -c '%a %g' "$M/suid")"

# A file nobody creates, with the bit, in a directory open to all.
mkdir "$M/pub"
chmod 1777 "$M/pub"
as_nobody "$PY" - "$M/pub/suid-new" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o4755)
os.fchmod(fd, 0o4755)
os.write(fd, b"new\n")
os.close(fd)
PY
check "nobody's write of the file it creates clears its bit" 755 \
	"$(mode "$M/pub/suid-new")"

# A directory's set-group-ID bit is not touched by writes in it.
mkdir "$M/sgid-dir"
chmod 2777 "$M/sgid-dir"
as_nobody sh -c "echo x > '$M/sgid-dir/f'"
check "a setgid directory keeps its bit" 2777 "$(mode "$M/sgid-dir")"

# -- a writer sees its own writes --------------------------------------
printf 'hello\n' > "$M/grow"
out=$("$PY" - "$M/grow" <<'PY'
import os, subprocess, sys, threading
path = sys.argv[1]
# The other process starts before the open: a child of the writer's
# would close an inherited descriptor at exec, a flush, so a commit.
other = subprocess.Popen(
    [sys.executable, "-c",
     "import os, sys\n"
     "for line in sys.stdin:\n"
     "    print(os.stat(line.strip()).st_size, flush=True)\n"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def other_size(p=path):
    other.stdin.write(p + "\n")
    other.stdin.flush()
    return other.stdout.readline().strip()
out = []
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
n = os.write(fd, b"world, and more\n")
out.append("fstat=%d" % os.fstat(fd).st_size)
out.append("stat=%d" % os.stat(path).st_size)
out.append("other=%s" % other_size())
out.append("fstat-after-other=%d" % os.fstat(fd).st_size)
out.append("seek-end=%d" % os.lseek(fd, 0, os.SEEK_END))
# Another thread of the writer is the writer too (the kernel names it).
got = []
t = threading.Thread(target=lambda: got.append(os.stat(path).st_size))
t.start()
t.join(timeout=10)
out.append("thread=%s" % got[0])
os.ftruncate(fd, 3)
out.append("ftruncate=%d" % os.fstat(fd).st_size)
out.append("other=%s" % other_size())
os.write(fd, b"lo")
os.close(fd)
out.append("closed=%d" % os.stat(path).st_size)
out.append("other=%s" % other_size())
# A new file: empty for the others until its close.
fd = os.open(path + "-new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(fd, b"x" * 10000)
out.append("new-fstat=%d" % os.fstat(fd).st_size)
out.append("new-other=%s" % other_size(path + "-new"))
os.close(fd)
out.append("new-closed=%s" % other_size(path + "-new"))
other.stdin.close()
other.wait(timeout=10)
print(" ".join(out))
PY
)
check "fstat and stat tell the writer's buffer, others the committed size" \
	"fstat=22 stat=22 other=6 fstat-after-other=22 seek-end=22 thread=22 ftruncate=3 other=6 closed=5 other=5 new-fstat=10000 new-other=0 new-closed=10000" \
	"$out"
check "... the commit is the writer's" "hello" "$(cat "$M/grow")"

# -- open, unlink, fstat, read -----------------------------------------
printf 'snapshot' > "$M/gone"
chmod 640 "$M/gone"
printf 'written' > "$M/gone-w"
mkdir "$M/vd"
printf 'dirvalue' > "$M/vd/.value"
printf 'child' > "$M/vd/child"
printf 'replaced!' > "$M/over"
printf 'mover' > "$M/mover"
out=$("$PY" - "$M" <<'PY'
import os, sys
m = sys.argv[1]
out = []
def st(fd):
    s = os.fstat(fd)
    return "%d/%d/%o" % (s.st_size, s.st_nlink, s.st_mode & 0o7777)
fd = os.open(m + "/gone", os.O_RDONLY)
os.unlink(m + "/gone")
out.append("reader=" + st(fd))
out.append(os.read(fd, 100).decode())
# The name made again is another file; the open one keeps its snapshot.
with open(m + "/gone", "w") as f:
    f.write("a new and longer value")
out.append("again=" + st(fd))
out.append(os.pread(fd, 100, 0).decode())
out.append("new=%d/%d" % (os.stat(m + "/gone").st_size,
                          os.stat(m + "/gone").st_nlink))
os.close(fd)
# A writer: its edits stay its own, and its close makes no key.
fd = os.open(m + "/gone-w", os.O_RDWR)
os.unlink(m + "/gone-w")
os.write(fd, b"W")
out.append("writer=" + st(fd))
out.append(os.pread(fd, 100, 0).decode())
os.ftruncate(fd, 3)
out.append("ftruncate=" + st(fd) + ":" + os.pread(fd, 100, 0).decode())
os.close(fd)
out.append("writer-closed=%s" % os.path.exists(m + "/gone-w"))
# A file being created, unlinked before its first commit.
fd = os.open(m + "/gone-c", os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"abc")
os.unlink(m + "/gone-c")
out.append("creating=" + st(fd))
os.close(fd)
out.append("creating-closed=%s" % os.path.exists(m + "/gone-c"))
# A directory key's own value.
fd = os.open(m + "/vd/.value", os.O_RDONLY)
os.unlink(m + "/vd/.value")
out.append("value=" + st(fd) + ":" + os.read(fd, 100).decode())
os.close(fd)
# Renamed over.
fd = os.open(m + "/over", os.O_RDONLY)
os.rename(m + "/mover", m + "/over")
out.append("over=" + st(fd) + ":" + os.read(fd, 100).decode())
out.append("over-new=" + open(m + "/over").read())
os.close(fd)
print(" ".join(out))
PY
)
check "an unlinked open file keeps its snapshot, with no link" \
	"reader=8/0/640 snapshot again=8/0/640 snapshot new=22/1 writer=7/0/644 Written ftruncate=3/0/644:Wri writer-closed=False creating=3/0/600 creating-closed=False value=8/0/644:dirvalue over=9/0/644:replaced! over-new=mover" \
	"$out"
check "the key made again is untouched" "a new and longer value" \
	"$(cat "$M/gone")"
check "the directory keeps its other key" "child" "$(cat "$M/vd/child")"

# -- directory links ---------------------------------------------------
mkdir -p "$M/links/a" "$M/links/b/c"
echo f > "$M/links/file"
mkdir "$M/links/keys"
echo k > "$M/links/keys/k"
check "a directory: 2 + its subdirectories" 5 "$(stat -c %h "$M/links")"
check "... a leaf directory: 2" 2 "$(stat -c %h "$M/links/a")"
check "... with one subdirectory: 3" 3 "$(stat -c %h "$M/links/b")"
rmdir "$M/links/a"
check "... one less after rmdir" 4 "$(stat -c %h "$M/links")"
mv "$M/links/b" "$M/links-b"
check "... and after a rename out" 3 "$(stat -c %h "$M/links")"
dirs=$(find "$M" -mindepth 1 -maxdepth 1 -type d | wc -l)
check "the root: 2 + its subdirectories, /.leases among them" \
	$((2 + dirs)) "$(stat -c %h "$M")"

umount_fs "$M"
