#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A staged install (meson install --destdir) puts every part in place (the
# man pages too, and groff renders them without a warning), and a C
# program builds against it with pkg-config and runs.
#   test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
T=$(mktemp -d /tmp/ustate-install.XXXXXX)
trap 'rm -rf "$T"' EXIT

meson install -C "$build" --destdir "$T/stage" --no-rebuild --quiet
option() {
	meson introspect "$build" --buildoptions | python3 -c '
import json, sys
print([o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]][0])' "$1"
}
prefix=$(option prefix)
# A sanitized library needs a program built with the same sanitizers.
sanitize=$(option b_sanitize)
cflags=()
[ "$sanitize" = none ] || cflags=(-fsanitize="$sanitize")
root=$T/stage$prefix
fail=0
for f in sbin/ustatefs bin/ustate include/ustate.h include/ustate_json.h; do
	[ -e "$root/$f" ] || { echo "missing: $prefix/$f"; fail=1; }
done
pc=$(find "$T/stage" -name ustate.pc | head -1)
lib=$(find "$T/stage" -name 'libustate.so*' | head -1)
unit=$(find "$T/stage" -name 'ustatefs@.service' | head -1)
[ -n "$pc" ] || { echo "missing: ustate.pc"; fail=1; }
[ -n "$lib" ] || { echo "missing: libustate.so"; fail=1; }
[ -n "$unit" ] || { echo "missing: ustatefs@.service"; fail=1; }
# The man pages, unless the build has none (-Dman=disabled, or auto
# without scdoc).
if [ "$(option man)" = enabled ] || [ -e "$build/doc/ustate.1" ]; then
	for page in man8/ustatefs.8 man1/ustate.1 man3/libustate.3; do
		f=$(find "$T/stage" -path "*/man/$page" | head -1)
		if [ -z "$f" ]; then
			echo "missing: man page $page"
			fail=1
			continue
		fi
		name=${page#*/}
		head -20 "$f" | grep -q "^\.TH \"${name%.*}\" \"${name##*.}\"" ||
			{ echo "$page: no .TH header"; fail=1; }
		# -ww: every warning; -z: parse and format, print nothing.
		warn=$(groff -man -Tutf8 -ww -z "$f" 2>&1)
		[ -z "$warn" ] || { echo "$page: groff: $warn"; fail=1; }
		text=$(groff -man -Tutf8 -P-cbou "$f" 2>/dev/null)
		for want in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
			grep -q "^$want" <<< "$text" ||
				{ echo "$page: no $want section"; fail=1; }
		done
		! grep -q '@[A-Z]*@' <<< "$text" ||
			{ echo "$page: unsubstituted @VAR@"; fail=1; }
	done
fi
[ $fail = 0 ] || exit 1

python3 "$src/tests/readme/extract.py" "$src/README.md" "$T/prog.c"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$T/stage
cc "${cflags[@]}" -o "$T/prog" "$T/prog.c" $(pkg-config --cflags --libs ustate)
out=$(LD_LIBRARY_PATH=$(dirname "$lib") "$T/prog")
if [ "$out" != "$(cat "$src/tests/readme/expected.txt")" ]; then
	echo "the program built against the staged install printed:"
	echo "$out"
	exit 1
fi
echo "staged install: files and man pages in place; pkg-config build runs"
