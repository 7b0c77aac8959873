#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustate dump, restore and backup carry what a mount keeps beside values
# (issue 14): owners, modes, times set by hand, ctimes and user xattrs of
# files, directories and the root, so that a restored store mounts as the
# same tree, compared path by path (value, version, owner, mode, times,
# xattrs); a restore over changed metadata puts the dump's back; a dump
# line with bad metadata restores nothing.
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
u() { "$USTATE_CLI" -d "$1" "${@:2}"; }
M=$T/mnt
# Every path of a mount: what stat and getfattr tell, less what is the
# mount's own (/.txn, /.leases, user.revision; a directory's times, which move in the
# mount's memory when entries change: one set by hand is checked apart).
tree() {
	(cd "$1" && find . -path ./.txn -prune -o -path ./.leases -prune -o \
		-print | sort) | while read -r f; do
		local p="$1/$f"
		if [ -d "$p" ]; then
			stat -c "$f %F %a %u %g" "$p"
		else
			stat -c "$f %F %s %a %u %g %y %z" "$p"
			echo " $(cat "$p" | od -An -tx1 | tr -d ' \n')"
		fi
		getfattr --absolute-names -d -e hex -m '^user\.' "$p" 2>/dev/null |
			grep -v -E '^(# file|user\.(revision|connected)=)' |
			sed '/^$/d;s/^/ /'
	done
}

u "$T/state.db" set /plain plain > /dev/null
u "$T/state.db" set /bare bare > /dev/null
mount_fs "$T/state.db" "$M"
mkdir -p "$M/etc/app" "$M/srv"
echo "port=80" > "$M/etc/app/conf"
printf 'bin\0\377' > "$M/srv/blob"
chmod 640 "$M/etc/app/conf"
chown 12:34 "$M/etc/app/conf"
chmod 2750 "$M/etc/app"
chown 5:6 "$M/srv"
touch -d '2011-11-11 11:11:11.111111111' "$M/etc/app/conf"
touch -d '2012-12-12 12:12:12' "$M/srv"
setfattr -n user.owner -v ops "$M/etc/app/conf"
setfattr -n user.bin -v 0x00ff01 "$M/srv/blob"
setfattr -n user.team -v infra "$M/etc"
setfattr -n user.site -v eu-1 "$M"
setfattr -n "$(printf 'user.\351t\377')" -v odd "$M/plain"
chmod 0750 "$M"
want=$(tree "$M")
srv=$(stat -c %y "$M/srv")
umount_fs "$M"

u "$T/state.db" dump > "$T/dump"
check "the dump has owners, modes and times" \
	'"meta":{"uid":12,"gid":34,"mode":"0640","mtime_ns":1321009871111111111,' \
	"$(grep '"key":"/etc/app/conf"' "$T/dump" | grep -o '"meta":{[^,]*,[^,]*,[^,]*,[^,]*,')"
check "... xattrs" '[{"name":"user.owner","encoding":"utf-8","value":"ops"}]' \
	"$(jq -c 'select(.key == "/etc/app/conf") | .xattrs' "$T/dump")"
check "... and the root's first" '/ 0750 eu-1' \
	"$(head -1 "$T/dump" | jq -r '"\(.dir) \(.meta.mode) \(.xattrs[0].value)"')"
check "a key without metadata has no such fields (as earlier dumps)" \
	'["created_at","encoding","key","updated_at","value","version"]' \
	"$(jq -c 'select(.key == "/bare") | keys' "$T/dump")"
check "a name that is not UTF-8 goes in base64" 'base64 dXNlci7pdP8= odd' \
	"$(jq -r 'select(.key == "/plain") | .xattrs[0] |
		"\(.name_encoding) \(.name) \(.value)"' "$T/dump")"

u "$T/new.db" restore "$T/dump" > /dev/null
mount_fs "$T/new.db" "$M"
check "a restored store mounts as the same tree" "$want" "$(tree "$M")"
check "... with a directory's time set by hand" "$srv" "$(stat -c %y "$M/srv")"
umount_fs "$M"

u "$T/state.db" backup "$T/backup.db" > /dev/null
mount_fs "$T/backup.db" "$M"
check "so does a backup" "$want" "$(tree "$M")"
# Change what the dump holds, then restore it over: the dump wins.
chmod 600 "$M/etc/app/conf"
setfattr -x user.owner "$M/etc/app/conf"
setfattr -n user.extra -v x "$M/etc/app/conf"
touch "$M/srv"
chown 0:0 "$M/srv"
umount_fs "$M"
u "$T/backup.db" restore --merge "$T/dump" > /dev/null
mount_fs "$T/backup.db" "$M"
check "restore --merge puts the dump's metadata back" "$want" "$(tree "$M")"
umount_fs "$M"

# A bad mode, a bad xattr: the restore fails and writes nothing.
jq -c 'if .key == "/plain" then . + {meta: {uid: 1, gid: 1, mode: "9999"}}
	else . end' "$T/dump" > "$T/bad"
rc=0
u "$T/bad.db" restore "$T/bad" > "$T/out" 2>&1 || rc=$?
check "a bad mode: the restore fails" 1 $((rc != 0))
check "... saying where" 1 "$(grep -c 'meta: a bad owner, group or mode' "$T/out")"
check "... and nothing is written" "" "$(u "$T/bad.db" dump)"
long=$(printf 'user.%0251d' 0)
jq -c --arg n "$long" 'if .key == "/plain" then . +
	{xattrs: [{name: $n, encoding: "utf-8", value: "v"}]} else . end' \
	"$T/dump" > "$T/bad"
rc=0
u "$T/bad.db" restore "$T/bad" > "$T/out" 2>&1 || rc=$?
check "an xattr name over 255 bytes: the restore fails" 1 $((rc != 0))
check "... and nothing is written" "" "$(u "$T/bad.db" dump)"
exit $_failed
