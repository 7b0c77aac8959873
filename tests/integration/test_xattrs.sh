#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs stores user xattrs as a local file system does (issue 14):
# - any user.* name but the computed ones is kept per file and per
#   directory, listed by getfattr -d with the computed ones, survives a
#   remount and is seen by another mount of the store;
# - mv moves them (and a rename over a file replaces its own), rm takes
#   them along, a file made again at the name has none;
# - ext4's limits: a name over 255 bytes ERANGE, a value over 64 KiB
#   E2BIG, more than the store's total per file ENOSPC; none on /.txn
#   (EPERM); other namespaces ENOTSUP; each refusal changes nothing;
# - cp -a, rsync -aX (ext4 to the mount, the mount to ext4, mount to
#   mount) and tar --xattrs copy trees with their xattrs intact.
# Run with USTATE_TEST_ETCD (tests/etcd/with-etcd.sh) it mounts a store on
# that etcd.
. "$(dirname "$0")/lib.sh"

umask 022
M=$T/mnt
M2=$T/mnt2
DB=$T/state.db
SRC=$T/src
if [ -n "${USTATE_TEST_ETCD:-}" ]; then
	DB=etcd://$USTATE_TEST_ETCD/xattrs-$$-$RANDOM
fi
version() { xattr version "$1"; }
# The stored user xattrs of a file, without the computed ones.
uxattrs() {
	getfattr --absolute-names -d -m '^user\.' "$1" 2>/dev/null |
		grep -v -E '^(# file|user\.(version|created_at|updated_at|revision|lease|connected)=)' |
		sed '/^$/d'
}
# The same for every file and directory of a tree, by relative path.
tree_xattrs() {
	local f
	(cd "$1" && find . | sort) | while read -r f; do
		echo "$f: $(uxattrs "$1/$f" | paste -sd " ")"
	done
}

mount_fs "$DB" "$M"

# -- set, get, list, remove ------------------------------------------------
echo data > "$M/f"
setfattr -n user.color -v blue "$M/f"
setfattr -n user.empty "$M/f"
check "getfattr -n reads a stored one" blue \
	"$(getfattr --only-values -n user.color "$M/f")"
check "getfattr -d lists them with the computed ones" \
	"user.color user.created_at user.empty user.revision user.updated_at user.version" \
	"$(getfattr --absolute-names -d "$M/f" | grep -o '^user\.[a-z_]*' |
		sort | xargs)"
check "a set makes no version" 1 "$(version "$M/f")"
check "... and the value stays" data "$(cat "$M/f")"
check_err "an absent name: ENODATA" "No such attribute" \
	getfattr -n user.none "$M/f"
setfattr -x user.color "$M/f"
check "setfattr -x removes it" 'user.empty=""' "$(uxattrs "$M/f")"
check_err "removing an absent one: ENODATA" "No such attribute" \
	setfattr -x user.color "$M/f"
echo more >> "$M/f"
check "a write keeps them" 'user.empty=""' "$(uxattrs "$M/f")"

mkdir -p "$M/d/sub"
setfattr -n user.dir -v yes "$M/d"
echo k > "$M/implicit-key"
check "a directory keeps its own" 'user.dir="yes"' "$(uxattrs "$M/d")"
setfattr -n user.root -v r "$M"
check "... and the root" 'user.root="r"' "$(uxattrs "$M")"
setfattr -x user.root "$M"

# -- limits, and places that keep none ---------------------------------------
long=$(printf 'user.%0251d' 0)
check_err "a name of 256 bytes: ERANGE" "Numerical result out of range" \
	setfattr -n "$long" -v x "$M/f"
head -c 65537 /dev/zero | tr '\0' v > "$T/big"
check_err "a value over 64 KiB: E2BIG" "Argument list too long" \
	setfattr -n user.big -v "$(cat "$T/big")" "$M/f"
head -c 65536 /dev/zero | tr '\0' v > "$T/max"
setfattr -n user.max1 -v "$(cat "$T/max")" "$M/f"
check "a value of 64 KiB is kept whole" 65536 \
	"$(getfattr --only-values -n user.max1 "$M/f" | wc -c)"
check_err "more than the total per file: ENOSPC" "No space left" \
	setfattr -n user.max2 -v "$(cat "$T/max")" "$M/f"
setfattr -x user.max1 "$M/f"
check "... and the refusals changed nothing" 'user.empty=""' "$(uxattrs "$M/f")"
check_err "none on /.txn: EPERM" "not permitted" \
	setfattr -n user.x -v 1 "$M/.txn"
check_err "other namespaces: ENOTSUP" "not supported" \
	setfattr -n trusted.x -v 1 "$M/f"
check_err "none on /.leases: EPERM" "not permitted" \
	setfattr -n user.x -v 1 "$M/.leases"

# -- with the file: mv, rename over, rm ------------------------------------
setfattr -n user.tag -v t1 "$M/f"
mv "$M/f" "$M/g"
check "mv moves them" 'user.empty="" user.tag="t1"' "$(uxattrs "$M/g" | paste -sd " ")"
echo other > "$M/h"
setfattr -n user.own -v h "$M/h"
mv "$M/g" "$M/h"
check "a rename over a file replaces its own" 'user.empty="" user.tag="t1"' \
	"$(uxattrs "$M/h" | paste -sd " ")"
mv "$M/d" "$M/d2"
check "mv of a directory moves its own" 'user.dir="yes"' "$(uxattrs "$M/d2")"
rm "$M/h"
echo again > "$M/h"
check "rm takes them: the name made again has none" "" "$(uxattrs "$M/h")"

# -- another mount, a remount ------------------------------------------------
setfattr -n user.persist -v p "$M/h"
if [ -z "${USTATE_TEST_ETCD:-}" ]; then
	mount_fs "$DB" "$M2"
	check "another mount of the store sees them" 'user.persist="p"' \
		"$(uxattrs "$M2/h")"
	umount_fs "$M2"
fi
umount_fs "$M"
mount_fs "$DB" "$M"
check "they survive a remount" 'user.persist="p"' "$(uxattrs "$M/h")"
check "... a directory's too" 'user.dir="yes"' "$(uxattrs "$M/d2")"

# -- copy tools ----------------------------------------------------------------
mkdir -p "$SRC/sub/deep"
echo a > "$SRC/a"
echo b > "$SRC/sub/b"
echo c > "$SRC/sub/deep/c"
setfattr -n user.k -v v1 "$SRC/a"
setfattr -n user.bin -v 0x00ff00 "$SRC/a"
setfattr -n user.s -v "$(head -c 3000 /dev/zero | tr '\0' s)" "$SRC/sub/b"
setfattr -n user.d -v dv "$SRC/sub"
want=$(tree_xattrs "$SRC")

cp -a "$SRC" "$M/cp"
check "cp -a into the mount" "$want" "$(tree_xattrs "$M/cp")"
cp -a "$M/cp" "$T/cp-out"
check "cp -a out of it" "$want" "$(tree_xattrs "$T/cp-out")"

rsync -aX "$SRC/" "$M/rs/"
check "rsync -aX from ext4 into the mount" "$want" "$(tree_xattrs "$M/rs")"
rsync -aX "$M/rs/" "$T/rs-out/"
check "rsync -aX from the mount to ext4" "$want" \
	"$(tree_xattrs "$T/rs-out")"
rsync -aX "$T/rs-out/" "$M/rs2/"
check "... and back, with the copied computed names" "$want" \
	"$(tree_xattrs "$M/rs2")"
if [ -z "${USTATE_TEST_ETCD:-}" ]; then
	mount_fs "$T/other.db" "$M2"
	rsync -aX "$M/rs/" "$M2/rs/"
	check "rsync -aX from one mount to another" "$want" \
		"$(tree_xattrs "$M2/rs")"
	check "... whose versions are its own" 1 "$(version "$M2/rs/a")"
fi

(cd "$SRC" && tar --xattrs -cf - .) | (mkdir "$M/tar" && cd "$M/tar" &&
	tar --xattrs --xattrs-include='user.*' -xf -)
check "tar --xattrs into the mount" "$want" "$(tree_xattrs "$M/tar")"
check "... with the data" a "$(cat "$M/tar/a")"
exit $_failed
