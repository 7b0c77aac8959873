#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: who may do what. Without allow_other only the mounting user
# gets in. With it, owners and modes are kept per key and directory, and
# the kernel enforces them (default_permissions): another uid (nobody,
# through setpriv) is refused what the modes refuse, through paths and
# through /.txn alike, until a chmod or chown lets it in; what it creates
# is its own, with its umask. Owners survive a remount and move with a
# rename; a key or directory made again does not inherit them. The
# database is 0600, a symbolic link as SOURCE is named in the log (one to
# nothing refused), and no message holds a value.
. "$(dirname "$0")/lib.sh"

use_nobody
umask 022
M=$T/mnt
DB=$T/state.db
LOG=$T/daemon.log

# A transaction from stdin, as nobody: the write's outcome, then the reply.
cat > "$T/txn.py" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    os.write(fd, sys.stdin.buffer.read())
    print("written")
except OSError as e:
    print(os.strerror(e.errno))
sys.stdout.write(os.read(fd, 65536).decode(errors="replace"))
PY
txn_nobody() { as_nobody "$PY" "$T/txn.py" "$M/.txn"; }

owner_mode() { stat -c '%U:%G %a' "$1"; }

# -- without allow_other: the mounting user alone ------------------------
mount_fs "$DB" "$M"
echo hi > "$M/k"
check_err "without allow_other, another uid is refused the mountpoint" \
	"Permission denied" as_nobody stat "$M/"
check_err "... and every file in it" "Permission denied" \
	as_nobody cat "$M/k"
umount_fs "$M"

# -- with allow_other: owners and modes ---------------------------------
# In the foreground with the request trace, to audit what is logged.
mount_other() {
	"$USTATEFS" -f -d -o allow_other "$DB" "$M" 2>> "$LOG" &
	at_exit "fusermount3 -uz '$M'"
	wait_for 5 grep -q " $M fuse.ustatefs " /proc/mounts || fail "mount"
}
mount_other
secret=secret-$RANDOM$RANDOM
echo "$secret" > "$M/secret"
chmod 600 "$M/secret"
echo pub > "$M/pub"
mkdir "$M/rootdir"
check "a new key: its creator's, 0666 less the umask" "root:root 644" \
	"$(owner_mode "$M/pub")"
check "chmod is kept" "root:root 600" "$(owner_mode "$M/secret")"
check "a new directory: 0777 less the umask" "root:root 755" \
	"$(owner_mode "$M/rootdir")"

check_err "nobody may not read a 0600 key of root" "Permission denied" \
	as_nobody cat "$M/secret"
check_err "nobody may not write a 0644 key of root" "Permission denied" \
	as_nobody sh -c "echo x > '$M/pub'"
check_err "nobody may not create in a 0755 directory of root" \
	"Permission denied" as_nobody touch "$M/rootdir/new"
check_err "nobody may not delete from it" "Permission denied" \
	as_nobody rm -f "$M/pub"
check_err "nobody may not mkdir in it" "Permission denied" \
	as_nobody mkdir "$M/rootdir/d"
check_err "nobody may not chmod a key of root" "Operation not permitted" \
	as_nobody chmod 666 "$M/pub"
check "nobody may read a 0644 key" pub "$(as_nobody cat "$M/pub")"

# /.txn: the same rules, op by op, the line of the refused one named.
rev=$("$USTATE_CLI" -d "$DB" revision)
check "txn get of the 0600 key: refused, line named, no value" \
	"Permission denied|error 1 EACCES /secret 0|/secret: Permission denied" \
	"$(printf 'get /secret\ncommit\n' | txn_nobody | tr '\n' '|' | sed 's/|$//')"
check "txn set of the 0644 key: refused at its line" \
	"Permission denied|error 3 EACCES /pub 0" \
	"$(printf '# a comment\ncheck /pub 1\nset /pub 1\nx\ncommit\n' |
		txn_nobody | head -2 | tr '\n' '|' | sed 's/|$//')"
check "txn delete: refused" "Permission denied|error 1 EACCES /pub 0" \
	"$(printf 'delete /pub\ncommit\n' | txn_nobody | head -2 |
		tr '\n' '|' | sed 's/|$//')"
check "txn create in root's directory: refused" \
	"Permission denied|error 2 EACCES /rootdir/new 0" \
	"$(printf 'check /pub 1\ncreate /rootdir/new 1\nx\ncommit\n' |
		txn_nobody | head -2 | tr '\n' '|' | sed 's/|$//')"
check "txn create of a new top-level key: refused" \
	"Permission denied|error 1 EACCES /top 0" \
	"$(printf 'create /top 1\nx\ncommit\n' | txn_nobody | head -2 |
		tr '\n' '|' | sed 's/|$//')"
check "refused transactions change nothing" \
	"$rev|pub|$secret|absent|absent" \
	"$("$USTATE_CLI" -d "$DB" revision)|$(cat "$M/pub")|$(cat "$M/secret")|$(
		[ -e "$M/rootdir/new" ] && echo there || echo absent)|$(
		[ -e "$M/top" ] && echo there || echo absent)"
check "root passes every check (CAP_DAC_OVERRIDE)" "ok" \
	"$(printf 'get /secret\ncommit\n' | "$PY" "$T/txn.py" "$M/.txn" |
		sed -n 2p | cut -d' ' -f1)"

# The kernel must see a new mode at once: its attributes are cached.
chmod 666 "$M/pub"
as_nobody sh -c "echo nobody-wrote > '$M/pub'" || fail "write after chmod 666"
check "after chmod 0666 nobody may write" nobody-wrote "$(cat "$M/pub")"
check "... and through /.txn" "written" \
	"$(printf 'set /pub 3\nyes\ncommit\n' | txn_nobody | head -1)"
chmod 600 "$M/pub"
check_err "after chmod 0600, refused at once (no stale cache)" \
	"Permission denied" as_nobody cat "$M/pub"
chmod 644 "$M/pub"

chown nobody "$M/secret"
check "chown: ls -l shows the new owner" "-rw------- nobody root" \
	"$(ls -l "$M/secret" | awk '{print $1, $3, $4}')"
as_nobody chmod 640 "$M/secret" || fail "the owner's chmod"
check "the new owner may chmod" "nobody:root 640" \
	"$(owner_mode "$M/secret")"
check "and read" "$secret" "$(as_nobody cat "$M/secret")"
chgrp nogroup "$M/secret"
check "chgrp is kept" "nobody:nogroup 640" "$(owner_mode "$M/secret")"

# What nobody creates is its own, with its umask.
chmod 777 "$M/rootdir"
as_nobody sh -c "umask 027; echo mine > '$M/rootdir/mine'; mkdir '$M/rootdir/mydir'" ||
	fail "nobody creates in a 0777 directory"
check "nobody's new key: nobody's, umask 027 applied" "nobody:nogroup 640" \
	"$(owner_mode "$M/rootdir/mine")"
check "nobody's new directory likewise" "nobody:nogroup 750" \
	"$(owner_mode "$M/rootdir/mydir")"
check "a key made by nobody's transaction is nobody's" \
	"written|nobody:nogroup 644" \
	"$(printf 'create /rootdir/bytxn 1\nt\ncommit\n' | txn_nobody |
		head -1)|$(owner_mode "$M/rootdir/bytxn")"
check "ls -l shows owners and modes" \
	"-rw-r--r-- nobody nogroup bytxn|-rw-r----- nobody nogroup mine|drwxr-x--- nobody nogroup mydir" \
	"$(ls -l "$M/rootdir" | awk 'NR > 1 {print $1, $3, $4, $9}' |
		tr '\n' '|' | sed 's/|$//')"

# A setgid directory hands down its group; the sticky bit guards names.
mkdir "$M/shared"
chgrp nogroup "$M/shared"
chmod 3777 "$M/shared"
echo r > "$M/shared/roots"
as_nobody sh -c "echo n > '$M/shared/nobodys'; mkdir '$M/shared/sub'" ||
	fail "nobody creates in a 1777 directory"
check "setgid directory: its group for new keys and directories" \
	"root:nogroup|nobody:nogroup 2755" \
	"$(stat -c '%U:%G' "$M/shared/roots")|$(owner_mode "$M/shared/sub")"
check_err "sticky: nobody may not delete root's key" \
	"Operation not permitted" as_nobody rm -f "$M/shared/roots"
check "sticky, through /.txn too" "Operation not permitted" \
	"$(printf 'delete /shared/roots\ncommit\n' | txn_nobody | head -1)"
as_nobody rm "$M/shared/nobodys" || fail "sticky: nobody deletes its own"

# The root directory keeps a mode too.
chmod 1777 "$M"
as_nobody sh -c "echo t > '$M/top'" || fail "nobody creates in a 1777 root"
check "chmod of the mountpoint is kept" "1777|nobody" \
	"$(stat -c %a "$M/")|$(stat -c %U "$M/top")"
chmod 755 "$M"

# Renames move owners; a key or directory made again starts afresh.
chmod 604 "$M/rootdir/mine"
mv "$M/rootdir/mine" "$M/rootdir/moved"
mv "$M/rootdir/mydir" "$M/rootdir/mydir2"
mv "$M/pub" "$M/rootdir/mydir2/pub"
check "a rename keeps owner and mode: key, directory, across dirs" \
	"nobody:nogroup 604|nobody:nogroup 750|root:root 644" \
	"$(owner_mode "$M/rootdir/moved")|$(owner_mode "$M/rootdir/mydir2")|$(
		owner_mode "$M/rootdir/mydir2/pub")"
echo over > "$M/over"
chmod 600 "$M/over"
mv "$M/rootdir/moved" "$M/over"
check "a rename over a key gives it the source's owner and mode" \
	"nobody:nogroup 604" "$(owner_mode "$M/over")"
rm "$M/over" "$M/rootdir/bytxn"
echo again > "$M/over"
printf 'create /rootdir/bytxn 1\nr\ncommit\n' > "$M/.txn"
check "deleted and made again: no old owner (path and /.txn)" \
	"root:root 644|root:root 644" \
	"$(owner_mode "$M/over")|$(owner_mode "$M/rootdir/bytxn")"
rm "$M/rootdir/mydir2/pub"
rmdir "$M/rootdir/mydir2"
mkdir "$M/rootdir/mydir2"
check "a directory removed and made again: no old owner" "root:root 755" \
	"$(owner_mode "$M/rootdir/mydir2")"

# A remount keeps them.
chmod 640 "$M/over"
umount_fs "$M"
wait_for 5 _no_daemon || fail "the daemon ended"
mount_other
check "owners and modes survive a remount" \
	"nobody:nogroup 640|root:root 640|root:root 777|nobody:nogroup 2755" \
	"$(owner_mode "$M/secret")|$(owner_mode "$M/over")|$(
		owner_mode "$M/rootdir")|$(owner_mode "$M/shared/sub")"
check_err "and the kernel still enforces them" "Permission denied" \
	as_nobody cat "$M/over"
getfattr -d "$M/secret" > /dev/null
umount_fs "$M"
wait_for 5 _no_daemon || fail "the daemon ended"

# -- the database file --------------------------------------------------
check "the database is 0600, its write-ahead log too" "600|600" \
	"$(stat -c %a "$DB")|$(stat -c %a "$DB-wal" 2> /dev/null || echo 600)"
check "no message held a value (-d trace included)" 0 \
	"$(grep -c -e "$secret" -e nobody-wrote "$LOG" || true)"

mkdir "$T/real"
ln -s "$T/real/r.db" "$T/link.db"
M2=$T/mnt2
check_err "a symbolic link to nothing as SOURCE is refused" \
	"symbolic link to nothing" "$USTATEFS" "$T/link.db" "$M"
check "... and nothing is created through it" absent \
	"$([ -e "$T/real/r.db" ] && echo there || echo absent)"
"$USTATE_CLI" -d "$T/real/r.db" set /x 1 > /dev/null
mkdir -p "$M2"
"$USTATEFS" "$T/link.db" "$M2" 2> "$T/link.log"
at_exit "fusermount3 -uz '$M2'"
check "a symbolic link as SOURCE: the log names the file opened" \
	"ustatefs: notice: $T/link.db is a symbolic link: opening $T/real/r.db" \
	"$(head -1 "$T/link.log")"
check "... which is the one served" 1 "$(cat "$M2/x")"
umount_fs "$M2"
