#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: rename is one transaction. mv of files and directories,
# RENAME_NOREPLACE, and the save patterns of sed -i, editors and python's
# write-temp-then-os.replace: one new version of the target, no temp key.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"
keys() { sqlite3 "$T/state.db" 'SELECT key FROM kv_store ORDER BY key' | tr '\n' ' '; }

echo one > "$M/src"
mv "$M/src" "$M/dst"
check "mv to a new name: version 1" "one 1" "$(cat "$M/dst") $(xattr version "$M/dst")"
check "source gone" "/dst " "$(keys)"
echo two > "$M/src"
mv "$M/src" "$M/dst"
check "mv over a key: its version + 1" "two 2" "$(cat "$M/dst") $(xattr version "$M/dst")"

printf 'a=1\nb=2\n' > "$M/conf"
sed -i 's/b=2/b=3/' "$M/conf"
check "sed -i: one new version" "2 b=3" "$(xattr version "$M/conf") $(tail -1 "$M/conf")"
check "sed -i leaves no temp key" "/conf /dst " "$(keys)"

python3 - "$M" <<'PY'
import json, os, sys
d = sys.argv[1]
tmp = os.path.join(d, ".conf.json.tmp")
with open(tmp, "w") as f:
    json.dump({"replicas": 3}, f)
os.replace(tmp, os.path.join(d, "conf.json"))
PY
check "python write-temp-then-replace" '1 {"replicas": 3}' \
	"$(xattr version "$M/conf.json") $(cat "$M/conf.json")"
check "no temp key after os.replace" "/conf /conf.json /dst " "$(keys)"

mkdir -p "$M/d1/sub"
echo x > "$M/d1/sub/k1"
echo y > "$M/d1/k2"
mkdir "$M/d1/emptydir"
mv "$M/d1" "$M/d2"
check "mv of a directory moves every key" "/conf /conf.json /d2/k2 /d2/sub/k1 /dst " "$(keys)"
check "and its empty directories" directory "$(stat -c %F "$M/d2/emptydir")"
check "moved values" "x y" "$(cat "$M/d2/sub/k1") $(cat "$M/d2/k2")"
check "old directory gone" no "$( [ -e "$M/d1" ] && echo yes || echo no)"

echo z > "$M/other"
check_err "RENAME_NOREPLACE onto an existing key" "File exists" \
	python3 -c "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, b'$M/other', -100, b'$M/dst', 1)
if r: sys.exit(os.strerror(ctypes.get_errno()))"
check "NOREPLACE left both" "z two" "$(cat "$M/other") $(cat "$M/dst")"
check_err "mv of a directory onto a file" "Not a directory" \
	python3 -c "import os; os.rename('$M/d2', '$M/dst')"
check_err "mv of a file onto a non-empty directory" "Is a directory" \
	python3 -c "import os; os.rename('$M/dst', '$M/d2')"
mkdir "$M/d3"
echo w > "$M/d3/k"
check_err "mv of a directory onto a non-empty one" "not empty" \
	python3 -c "import os; os.rename('$M/d2', '$M/d3')"

# vim saving in place, three times: three new versions, no swap file left.
vim=$(command -v vim || command -v vim.tiny)
echo "a=1" > "$M/vimmed"
for i in 1 2 3; do
	HOME=$T "$vim" -u NONE -es -c 's/$/x/' -c wq "$M/vimmed" < /dev/null
done
check "vim: one version a save" "a=1xxx 4" "$(cat "$M/vimmed") $(xattr version "$M/vimmed")"
check "vim leaves no swap key" "" "$(keys | tr ' ' '\n' | grep -F .sw || true)"

# A file replaced by a rename while a reader holds it open keeps its node
# (an orphan, out of the path index) for that reader; a rename of the new
# file on must move only the new file's node (it crashed the daemon).
echo old > "$M/held"
echo new > "$M/fresh"
exec 3< "$M/held"
mv "$M/fresh" "$M/held"
mv "$M/held" "$M/moved"
check "rename of a file whose replaced one is still open" "new old" \
	"$(cat "$M/moved") $(cat <&3)"
exec 3<&-
check "the daemon still serves, and the old name is gone" "new no" \
	"$(cat "$M/moved") $([ -e "$M/held" ] && echo yes || echo no)"
