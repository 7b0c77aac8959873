#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: the kernel's caches. A hot read costs one synchronous FUSE
# request (OPEN), counted in the daemon's -d trace; yet after a commit
# from anywhere (this mount, /.txn, another process on the database) the
# next open sees the new bytes and size, even when only the bytes
# changed, and a reader keeps its snapshot across commits.
. "$(dirname "$0")/lib.sh"
: "${USTATE_CLI:?}"

M=$T/mnt
DB=$T/state.db
mkdir -p "$M"
# Foreground with -d: the trace names every request the kernel sends.
"$USTATEFS" -d -o attr_timeout=60,timeout=60 "$DB" "$M" 2> "$T/trace" &
at_exit "fusermount3 -uz '$M'"
wait_for 5 grep -q " $M fuse.ustatefs " /proc/mounts || fail "mount"

# Requests of each kind since the mark: "OPEN READ GETATTR LOOKUP FLUSH".
mark() { wc -l < "$T/trace"; }
count() {
	local from=$1 op out=""
	for op in OPEN READ GETATTR LOOKUP FLUSH; do
		out+="$(tail -n +"$((from + 1))" "$T/trace" |
			grep -c "opcode: $op (") "
	done
	echo "${out% }"
}

# -- the hot path: OPEN and nothing else that waits --
echo value-1 > "$M/k"
# The first cat READs the value (which makes the kernel's atime stale:
# the next fstat asks once); from then on the pages and attributes serve.
cat "$M/k" > /dev/null
cat "$M/k" > /dev/null
from=$(mark)
for i in $(seq 50); do cat "$M/k" > /dev/null; done
check "50 hot cats: 50 OPEN, no READ, GETATTR, LOOKUP or FLUSH" \
	"50 0 0 0 0" "$(count "$from")"

# -- after a commit, wherever it came from, the next open is exact --
# Same length each time: only the revision tells the pages are stale.
echo value-2 > "$M/k"
check "a write through the mount: next cat" value-2 "$(cat "$M/k")"
printf 'set /k 8\nvalue-3\n\ncommit\n' > "$M/.txn"
check "a /.txn commit: next cat" value-3 "$(cat "$M/k")"
printf 'value-4\n' | "$USTATE_CLI" -d "$DB" set /k > /dev/null
check "another process on the database: next cat" value-4 "$(cat "$M/k")"
printf 'longer value-5\n' | "$USTATE_CLI" -d "$DB" set /k > /dev/null
check "... with a new size: cat reads all of it" "longer value-5" \
	"$(cat "$M/k")"
check "... and stat then says so" 15 "$(stat -c %s "$M/k")"
echo short > "$M/k"
check "a shorter write through the mount: stat at once" 6 \
	"$(stat -c %s "$M/k")"
printf 'a much longer value\n' | "$USTATE_CLI" -d "$DB" set /k > /dev/null
size_is() { [ "$(stat -c %s "$1")" = "$2" ]; }
wait_for 10 size_is "$M/k" 20 || true
check "another process's commit: stat follows within the watch delay" 20 \
	"$(stat -c %s "$M/k")"
truncate -s 3 "$M/k"
check "truncate: stat and cat at once" "3 a m" \
	"$(stat -c %s "$M/k") $(cat "$M/k")"

# Many rounds, as fast as possible: read, commit elsewhere, read.
echo 0000 > "$M/c"
check "300 rounds of commit-then-read see every commit" "0" "$(python3 - "$M" "$DB" "$USTATE_CLI" <<'EOF'
import os, subprocess, sys
m, db, cli = sys.argv[1:4]
def rd(p):
    fd = os.open(p, os.O_RDONLY)
    b = b""
    while True:
        x = os.read(fd, 4096)
        if not x:
            break
        b += x
    os.close(fd)
    return b
bad = 0
for i in range(300):
    rd(m + "/c")
    n = b"%04d" % i
    if i % 30 == 29:
        subprocess.run([cli, "-d", db, "set", "/c", n.decode()],
                       stdout=subprocess.DEVNULL, check=True)
    elif i % 2:
        fd = os.open(m + "/.txn", os.O_RDWR)
        os.write(fd, b"set /c 4\n%s\ncommit\n" % n)
        os.close(fd)
    else:
        fd = os.open(m + "/c", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, n)
        os.close(fd)
    if rd(m + "/c") != n:
        bad += 1
print(bad)
EOF
)"

# -- a reader keeps its snapshot while the page cache serves others --
check "snapshots hold across commits of every kind and size" "ok" \
	"$(python3 - "$M" <<'EOF'
import os, sys
m = sys.argv[1]
p = m + "/s"
def put(v):
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC | os.O_CREAT)
    os.write(fd, v)
    os.close(fd)
bad = []
for old, new in [(b"A" * 5000, b"B" * 100), (b"A" * 100, b"B" * 9000),
                 (b"A" * 5000, b"B" * 5000)]:
    for how in ["write", "txn", "truncate"]:
        put(old)
        fd = os.open(p, os.O_RDONLY)
        got = os.read(fd, 10)
        if how == "write":
            put(new)
        elif how == "txn":
            t = os.open(m + "/.txn", os.O_RDWR)
            os.write(t, b"set /s %d\n%s\ncommit\n" % (len(new), new))
            os.close(t)
        else:
            os.truncate(p, len(new))
        os.stat(p)  # another size reaches the kernel meanwhile
        while True:
            x = os.read(fd, 3000)
            if not x:
                break
            got += x
        os.close(fd)
        if got != old:
            bad.append("%s %d->%d: read %d bytes" % (how, len(old),
                                                     len(new), len(got)))
print("; ".join(bad) or "ok")
EOF
)"

# -- the replay tells a key's own inode no size that no revision had --
# Another process updates a key, then deletes it, while this mount's
# replay is busy with a large transaction: replaying the update finds the
# key gone already. A reader holding the key's file open shares its inode,
# whose size the kernel keeps between refreshes (statx with
# AT_STATX_DONT_SYNC reads it without asking): it stays the reader's. A
# made-up 0 there was once read as an empty value by a reader whose
# refreshes the kernel dropped, on two mounts of one file.
echo v0-value > "$M/r"
exec 3< "$M/r"
inotifywait -m -e delete --format '%e %f' "$M" > "$T/r-events" 2>&1 &
at_exit "kill $!"
wait_for 5 grep -q "Watches established" "$T/r-events" || fail "inotifywait"
python3 -c "
import sys
sys.stdout.write(''.join('set /big/k%d 1\\nx\\n' % i for i in range(2000)) +
                 'commit\\n')" | "$USTATE_CLI" -d "$DB" txn > /dev/null
"$USTATE_CLI" -d "$DB" set /r v1-value > /dev/null
"$USTATE_CLI" -d "$DB" delete /r
r_deleted() { grep -q "DELETE r" "$T/r-events"; }
wait_for 30 r_deleted || fail "the replay of the delete of /r"
check "a held file's size is its own after the replay of a gone key" \
	"9 v0-value" "$(python3 -c "
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
AT_EMPTY_PATH, AT_STATX_DONT_SYNC, STATX_SIZE = 0x1000, 0x4000, 0x200
if libc.statx(3, b'', AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE, buf):
    raise OSError(ctypes.get_errno(), 'statx')
print(int.from_bytes(buf.raw[40:48], 'little'))") $(cat <&3)"
exec 3<&-

# -- -o direct_io: every read asks the daemon --
D=$T/direct
mkdir -p "$D"
"$USTATEFS" -d -o direct_io "$T/direct.db" "$D" 2> "$T/trace" &
at_exit "fusermount3 -uz '$D'"
wait_for 5 grep -q " $D fuse.ustatefs " /proc/mounts || fail "mount direct"
echo v > "$D/k"
cat "$D/k" > /dev/null
from=$(mark)
for i in $(seq 20); do cat "$D/k" > /dev/null; done
n=$(count "$from" | cut -d' ' -f2)
check "-o direct_io: 20 cats, at least 20 READs" 1 $((n >= 20))

# -- -o noopen: no OPEN (nor FLUSH) at all; read-only; fresh via the watcher --
N=$T/noopen
mkdir -p "$N"
"$USTATE_CLI" -d "$T/noopen.db" set /k first > /dev/null
"$USTATEFS" -d -o noopen,attr_timeout=60,timeout=60 "$T/noopen.db" "$N" \
	2> "$T/trace" &
at_exit "fusermount3 -uz '$N'"
wait_for 5 grep -q " $N fuse.ustatefs " /proc/mounts || fail "mount noopen"
inotifywait -m --format '%e %f' "$N" > "$T/noopen-events" \
	2> "$T/noopen-watch" &
at_exit "kill $!"
wait_for 5 grep -q "Watches established" "$T/noopen-watch" || fail "inotifywait"
# Warm: the first reads READ and then refresh the atime they spoiled.
for i in 1 2 3 4 5; do
	from=$(mark)
	cat "$N/k" > /dev/null
	[ "$(count "$from")" = "0 0 0 0 0" ] && break
done
from=$(mark)
for i in $(seq 50); do cat "$N/k" > /dev/null; done
check "-o noopen: 50 hot cats, no request at all" "0 0 0 0 0" \
	"$(count "$from")"
"$USTATE_CLI" -d "$T/noopen.db" set /k second > /dev/null
reads_second() { [ "$(cat "$N/k")" = second ]; }
wait_for 10 reads_second || true
check "-o noopen: another process's commit is read once the daemon hears of it" \
	second "$(cat "$N/k")"
ev() { grep -q "CLOSE_WRITE,CLOSE k" "$T/noopen-events"; }
wait_for 10 ev || true
check "-o noopen: and inotify watchers get its event" 1 \
	"$(grep -c "CLOSE_WRITE,CLOSE k" "$T/noopen-events")"
check_err "-o noopen is read-only: write" "Read-only" bash -c "echo x > '$N/k'"
check_err "-o noopen is read-only: truncate" "Read-only" bash -c ": > '$N/k'"
check_err "-o noopen is read-only: /.txn" "Read-only" \
	bash -c "printf 'commit\n' > '$N/.txn'"
check "-o noopen: refused writes changed nothing" second "$(cat "$N/k")"
