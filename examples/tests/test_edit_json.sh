#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/edit-json.py edits JSON state through the mount: write-temp-
# then-os.replace ends as exactly one new version with the new content
# and no temporary key left; --cas commits through /.txn, and concurrent
# --cas edits of different fields all land.
. "$(dirname "$0")/lib.sh"

E=$EXAMPLES/edit-json.py
M=$T/mnt
mount_fs "$DB" "$M"
mkdir "$M/apps"
echo '{"image": "nginx", "replicas": 2}' > "$M/apps/web"
# json KEY: the value in the database, compact and with sorted keys.
json() { ustate get "$1" | jq -cS .; }

check "os.replace: exactly one new version, printed" 2 \
	"$("$E" "$M/apps/web" replicas=3 labels.tier=front 'ports=[80, 443]')"
check "... the version the mount shows" 2 "$(xattr version "$M/apps/web")"
check "... with the new content" \
	'{"image":"nginx","labels":{"tier":"front"},"ports":[80,443],"replicas":3}' \
	"$(json /apps/web)"
check "... and no temporary key left" "/apps/web" \
	"$(ustate list /apps/)"

check "--cas: one new version, printed" 3 \
	"$("$E" --cas "$M/apps/web" replicas=4 -d labels.tier)"
check "... with the new content" \
	'{"image":"nginx","labels":{},"ports":[80,443],"replicas":4}' \
	"$(json /apps/web)"

check "a missing file starts as {}" "1 {\"a\":{\"b\":true}}" \
	"$("$E" "$M/apps/new" a.b=true) $(json /apps/new)"

# A directory key's own value is DIR/.value: written in place.
ustate set /apps/web/pod x >/dev/null
wait_for 5 test -f "$M/apps/web/.value" || fail "web did not become a directory"
check "DIR/.value is edited in place" \
	"4 5 {\"image\":\"nginx\",\"labels\":{},\"ports\":[80,443],\"replicas\":6}" \
	"$("$E" "$M/apps/web/.value" replicas=5) $("$E" --cas "$M/apps/web/.value" replicas=6) $(json /apps/web)"

# Four editors at once, each setting its own field five times: with the
# version check of --cas none of their edits is lost.
edits() { for i in 1 2 3 4 5; do "$E" --cas "$M/apps/par" "$1=$i"; done; }
for f in a b c d; do
	spawn edits $f > /dev/null
done
rc=0
wait_spawned || rc=$?
check "concurrent --cas edits all succeed" 0 "$rc"
check "... and all land" '{"a":5,"b":5,"c":5,"d":5}' "$(json /apps/par)"
check "... one version each" 20 "$(xattr version "$M/apps/par")"
