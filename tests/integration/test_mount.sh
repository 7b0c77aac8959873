#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: starting and stopping. mount -t fuse.ustatefs and an fstab
# line (through mount.fuse3), options, bad SOURCE and options, SIGTERM and
# fusermount3 -u ending cleanly with every closed value committed, stable
# inode numbers, copying trees in with cp -a, and the SOURCE forms:
# :memory:, schemes, a file name with a comma, the remote-store options
# (timeouts, TLS files, user and password file).
. "$(dirname "$0")/lib.sh"

M=$T/mnt
daemon_pid() { pgrep -f "ustatefs .*$1" | head -1; }

# -- mount -t and fstab, as root would with ustatefs installed --
# mount(8) runs helpers with a PATH of its own, so the test installs
# ustatefs in /usr/local/sbin inside a private mount namespace only.
mkdir -p "$T/bin" "$M"
ln -s "$USTATEFS" "$T/bin/ustatefs"
echo "$T/a.db $M fuse.ustatefs defaults,noauto,sync=normal 0 0" > "$T/fstab"
unshare -m --propagation private bash -euc '
	mount --bind "$1/bin" /usr/local/sbin
	M=$2
	mount -t fuse.ustatefs -o sync=normal "$1/a.db" "$M"
	awk -v m="$M" "\$2 == m {print \$3}" /proc/mounts
	echo hi > "$M/k"
	cat "$M/k"
	umount "$M"
	awk -v m="$M" "\$2 == m {print \$3}" /proc/mounts
	mount -T "$1/fstab" "$M"
	cat "$M/k"
	umount "$M"
' bash "$T" "$M" > "$T/mount.out" 2>&1 || true
check "mount -t fuse.ustatefs, umount, and an fstab line" \
	"fuse.ustatefs|hi|hi" "$(tr '\n' '|' < "$T/mount.out" | sed 's/|$//')"

# -- in the background, nothing of the caller's stdio stays open --
# (The guard and the replay helper are forked before the mount is live:
# they kept the caller's stdout and stderr, so that a pipeline such as
# `ustatefs ... | tee log` did not end until the unmount.)
rc=0
timeout 20 bash -c '"$1" "$2" "$3" 2>&1 | cat' bash "$USTATEFS" \
	"$T/pipe.db" "$M" > "$T/pipe.out" || rc=$?
at_exit "fusermount3 -uz '$M' 2>/dev/null"
check "ustatefs ... | cat returns once the mount is live" 0 $rc
check "... and the mount is there" 1 \
	"$(awk -v m="$M" '$2 == m' /proc/mounts | wc -l)"
fusermount3 -u "$M"
wait_for 5 _no_daemon || fail "the daemon of the pipe mount is still there"

# -- bad SOURCE and bad options: a clear error, no mount --
head -c 8192 /dev/urandom > "$T/garbage.db"
check_err "a file that is not a database" "corrupt or not a SQLite database" \
	"$USTATEFS" "$T/garbage.db" "$M"
check "no mount left" "" "$(awk -v m="$M" '$2 == m' /proc/mounts)"
check_err "bad sync=" "sync=sometimes: must be full, normal or off" \
	"$USTATEFS" -o sync=sometimes \
	"$T/b.db" "$M"
check_err "missing mountpoint" "usage" "$USTATEFS" "$T/b.db"
check_err "mountpoint that does not exist" "No such file" \
	"$USTATEFS" "$T/b.db" "$T/nowhere"
check "the database is created 0600" 600 \
	"$( "$USTATEFS" "$T/new.db" "$M" && stat -c %a "$T/new.db"; fusermount3 -u "$M")"

# -- SIGTERM: exit 0, every closed value committed --
"$USTATEFS" -f "$T/c.db" "$M" & pid=$!
at_exit "kill -9 $pid"
wait_for 5 grep -q " $M fuse.ustatefs " /proc/mounts
for i in $(seq 1 20); do echo "v$i" > "$M/k$i"; done
kill -TERM $pid
rc=0
wait $pid || rc=$?
check "SIGTERM: exit 0" 0 "$rc"
check "SIGTERM: unmounted" "" "$(awk -v m="$M" '$2 == m' /proc/mounts)"
check "SIGTERM: every closed value committed" 20 \
	"$(sqlite3 "$T/c.db" "SELECT count(*) FROM kv_store WHERE CAST(value AS TEXT) = 'v' || substr(key, 3) || char(10)")"

mount_fs "$T/c.db" "$M"
pid=$(daemon_pid "$M")
fusermount3 -u "$M"
check "fusermount3 -u ends the daemon" 1 \
	"$(wait_for 5 bash -c "! kill -0 $pid 2>/dev/null" && echo 1)"

# -- inode numbers stay while mounted, also across the kernel forgetting --
mount_fs "$T/c.db" "$M"
mkdir -p "$M/dir"
echo x > "$M/dir/f"
i1=$(stat -c %i "$M/dir/f")
echo 3 > /proc/sys/vm/drop_caches
i2=$(stat -c %i "$M/dir/f")
check "inode number stable across a forget" "$i1" "$i2"
check "readdir's d_ino matches" "$i1" "$(ls -i "$M/dir" | awk '{print $1}')"

# -- copying a tree in --
mkdir -p "$T/tree/etc/app" "$T/tree/var"
echo "a: 1" > "$T/tree/etc/app/config.yaml"
echo data > "$T/tree/var/state"
setfattr -n user.owner -v me "$T/tree/var/state" 2>/dev/null || true
chmod 600 "$T/tree/var/state"
cp -a "$T/tree" "$M/"
check "cp -a of a tree succeeds" "a: 1|data" \
	"$(cat "$M/tree/etc/app/config.yaml")|$(cat "$M/tree/var/state")"
check "grep -r finds it" "$M/tree/etc/app/config.yaml:a: 1" \
	"$(grep -r 'a: 1' "$M/tree")"
# rsync -X removes the xattrs its source lacks (ours are computed) and
# renames a temporary file onto each target; a second run updates.
mkdir -p "$T/rtree/etc/app"
echo "b: 2" > "$T/rtree/etc/app/config.yaml"
echo one > "$T/rtree/top"
check "rsync -aX copies a tree in" "0|b: 2|one" \
	"$(rsync -aX "$T/rtree/" "$M/rtree/" 2>&1; echo $?)|$(cat "$M/rtree/etc/app/config.yaml")|$(cat "$M/rtree/top")"
echo two > "$T/rtree/top"
touch -d '2001-01-01' "$T/rtree/top"
check "rsync -aX again updates in place: one new version" "0|two|2" \
	"$(rsync -aX "$T/rtree/" "$M/rtree/" 2>&1; echo $?)|$(cat "$M/rtree/top")|$(xattr version "$M/rtree/top")"
check "rsync left no temporary key behind" "etc top" \
	"$(ls -A "$M/rtree" | tr '\n' ' ' | sed 's/ $//')"
check "jq reads a JSON key" 2 \
	"$(echo '{"replicas": 2}' > "$M/spec" && jq .replicas "$M/spec")"

# -- SOURCE :memory: --
umount_fs "$M"
mount_fs :memory: "$M"
mkdir "$M/d"
printf 'set /d/x 1\nz\ncommit\n' > "$M/.txn"
check ":memory: store: files, directories, .txn" "z 1" \
	"$(cat "$M/d/x") $(xattr version "$M/d/x")"
echo hello > "$M/k"
check ":memory: store: a key written and read back" "hello 1" \
	"$(cat "$M/k") $(xattr version "$M/k")"
check ":memory: is the mount's source" ":memory: fuse.ustatefs" \
	"$(awk -v m="$M" '$2 == m {print $1, $3}' /proc/mounts)"
umount_fs "$M"

# -- SOURCE strings that name no store we can open, remote-store options --
check_err "an unknown scheme" 'foo://x: unknown scheme "foo"' \
	"$USTATEFS" foo://x "$M"
# Without the etcd backend this says so; with it, nothing listens there.
check_err "an etcd source that does not open" "etcd://127.0.0.1:9/app" \
	"$USTATEFS" -o dial_timeout=200,request_timeout=500 \
	etcd://127.0.0.1:9/app "$M"
check "no mount left" "" "$(awk -v m="$M" '$2 == m' /proc/mounts)"
check_err "request_timeout=0" "request_timeout=0: must be 1 to 3600000 ms" \
	"$USTATEFS" -o request_timeout=0 :memory: "$M"
check_err "dial_timeout over an hour" "dial_timeout=3600001: must be" \
	"$USTATEFS" -o dial_timeout=3600001 :memory: "$M"
echo 's3cret' > "$T/password"
chmod 644 "$T/password"
check_err "a password file others may read" \
	"password_file=$T/password: readable by its group or others (mode 0644)" \
	"$USTATEFS" -o user=app,password_file="$T/password" :memory: "$M"
check_err "a missing password file" "password_file=$T/nope: No such file" \
	"$USTATEFS" -o password_file="$T/nope" :memory: "$M"
chmod 600 "$T/password"
mount_fs :memory: "$M" -o user=app,password_file="$T/password" \
	-o request_timeout=100,dial_timeout=50,tls_ca=ca.pem,tls_cert=c.pem \
	-o tls_key=k.pem
echo v > "$M/k"
check "the remote-store options are taken (and unused by :memory:)" v \
	"$(cat "$M/k")"
check "the password is not on the command line" "" \
	"$(grep -l s3cret /proc/$(daemon_pid "$M")/cmdline 2>/dev/null)"
umount_fs "$M"

# -- a file SOURCE with a comma: escaped for FUSE, shown as it is --
mount_fs "$T/a,b.db" "$M"
echo x > "$M/k"
check "a file name with a comma" "$T/a,b.db x" \
	"$(awk -v m="$M" '$2 == m {print $1}' /proc/mounts) $(cat "$M/k")"
