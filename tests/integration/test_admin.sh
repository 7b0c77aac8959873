#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The operator commands of ustate: dump and restore give back the same
# bytes, versions and timestamps; a bad restore changes nothing; a backup
# taken while a writer writes is sound; check finds damage made with
# sqlite3; compact drops history that watch --from then cannot replay;
# progress bars only on a terminal.
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
u() { "$USTATE_CLI" -d "$T/state.db" "$@"; }
code() { local rc=0; "$@" >/dev/null 2>&1 || rc=$?; echo $rc; }
# The daemon's replay of writes made beside the mount keeps it busy for a
# moment (EBUSY): try again until it lets go.
unmount() { wait_for 10 umount_fs "$1"; }

# A store with history, a binary value, an empty one, text that needs
# escaping, and a directory made by mkdir through a mount.
M=$T/mnt
mount_fs "$T/state.db" "$M"
u set /a one >/dev/null
u set /a two >/dev/null
printf 'bin\0\377\200end' | u set /bin >/dev/null
u set /empty '' >/dev/null
u set /text "$(printf 'quote " backslash \\ tab \t é')" >/dev/null
u set /deep/er/key v >/dev/null
mkdir "$M/made"
unmount "$M"

u dump > "$T/dump1"
check "dump: one line per key and directory" 6 "$(wc -l < "$T/dump1")"
check "dump: a binary value is base64" \
	'{"key":"/bin","version":1,"encoding":"base64","value":"YmluAP+AZW5k"}' \
	"$(grep '"/bin"' "$T/dump1" | jq -c '{key, version, encoding, value}')"
check "dump: text stays text" "utf-8 2 two" \
	"$(grep '"/a"' "$T/dump1" | jq -r '"\(.encoding) \(.version) \(.value)"')"
check "dump: directory records, with the owner mkdir gave" \
	'{"dir":"/made","meta":{"uid":0,"gid":0,"mode":"0755"}}' \
	"$(grep made "$T/dump1")"
check "dump PREFIX" "/deep/er/key" "$(u dump /deep | jq -r .key)"

"$USTATE_CLI" -d "$T/copy.db" restore "$T/dump1" > "$T/out" 2> "$T/err"
check "restore into a new store" \
	"restored keys: 5, directories: 1, written: 5, deleted: 0, revision: 1" \
	"$(cat "$T/out")"
check "no progress bar when stderr is no terminal" "" "$(cat "$T/err")"
"$USTATE_CLI" -d "$T/copy.db" dump > "$T/dump2"
if cmp -s "$T/dump1" "$T/dump2"; then
	echo "ok: dump, restore, dump: byte for byte the same"
else
	fail "the second dump differs: $(diff "$T/dump1" "$T/dump2")"
fi
check "the binary value is back, byte for byte" \
	"$(printf 'bin\0\377\200end' | od -An -tx1)" \
	"$("$USTATE_CLI" -d "$T/copy.db" get /bin | od -An -tx1)"
check "versions and timestamps are back" \
	"$(u get /a --json | jq -c '[.version, .created_at, .updated_at]')" \
	"$("$USTATE_CLI" -d "$T/copy.db" get /a --json |
		jq -c '[.version, .created_at, .updated_at]')"
check "restore from stdin, into a store with keys: exit 4" 4 \
	"$(code "$USTATE_CLI" -d "$T/copy.db" restore - < "$T/dump1")"
check "restore --replace of the same dump changes nothing" \
	'{"keys":5,"dirs":1,"written":0,"deleted":0,"revision":1}' \
	"$("$USTATE_CLI" -d "$T/copy.db" --json restore --replace "$T/dump1")"

# A bad line anywhere: an error that names it, and no change at all.
"$USTATE_CLI" -d "$T/copy.db" set /a changed >/dev/null
before=$("$USTATE_CLI" -d "$T/copy.db" dump)
rev=$("$USTATE_CLI" -d "$T/copy.db" revision)
{ head -3 "$T/dump1"; echo '{"key":"/x","version":"one"}'; tail -2 "$T/dump1"; } \
	> "$T/bad"
rc=0
"$USTATE_CLI" -d "$T/copy.db" restore --merge "$T/bad" 2> "$T/err" || rc=$?
check "a malformed line: exit 1" 1 "$rc"
check "the error names the file and line" "ustate: restore: $T/bad line 4" \
	"$(head -1 "$T/err" | cut -d: -f1-3)"
check "and the store is unchanged" "$before" \
	"$("$USTATE_CLI" -d "$T/copy.db" dump)"
check "its revision too" "$rev" "$("$USTATE_CLI" -d "$T/copy.db" revision)"
{ cat "$T/dump1"; head -1 "$T/dump1"; } > "$T/twice"
check "a key given twice: exit 1, naming it" "line 7: /a: given twice" \
	"$("$USTATE_CLI" -d "$T/copy.db" restore --replace "$T/twice" 2>&1 |
		head -1 | grep -o 'line 7: /a: given twice')"
check "still unchanged" "$before" "$("$USTATE_CLI" -d "$T/copy.db" dump)"
check "--merge with --replace: exit 2" 2 \
	"$(code "$USTATE_CLI" -d "$T/copy.db" restore --merge --replace "$T/dump1")"

# A restore reaches the watchers of a mount, like any other write.
mount_fs "$T/copy.db" "$M"
"$USTATE_CLI" -d "$T/copy.db" restore --merge "$T/dump1" >/dev/null
wait_for 5 grep -qx two "$M/a"
check "a mount sees what restore wrote" two "$(cat "$M/a")"
unmount "$M"

# Backup: a bigger store, copied while another process keeps writing.
python3 - "$T/big" <<'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        f.write(json.dumps({"key": "/big/%05d" % i, "version": 1,
                            "created_at": 1, "updated_at": 1,
                            "encoding": "utf-8", "value": "v" * 200},
                           separators=(",", ":")) + "\n")
EOF
u restore --merge "$T/big" >/dev/null
(
	for i in $(seq 1 200); do
		"$USTATE_CLI" -d "$T/state.db" set "/w/$((i % 10))" "$i" >/dev/null ||
			exit 1
	done
) &
writer=$!
at_exit "kill $writer"
writing() { [ "$(u version /w/5)" -ge 1 ]; }
wait_for 10 writing
u backup "$T/backup.db" 2> "$T/err"
rc=0
wait $writer || rc=$?
check "the writer went on without errors" 0 "$rc"
check "the backup is 0600" 600 "$(stat -c %a "$T/backup.db")"
check "no progress bar without a terminal" "" "$(cat "$T/err")"
check "the backup passes check" ok "$("$USTATE_CLI" -d "$T/backup.db" check)"
check "and holds the keys" 20000 \
	"$("$USTATE_CLI" -d "$T/backup.db" list /big/ | wc -l)"
check "an existing file is kept: exit 1" 1 "$(code u backup "$T/backup.db")"
check "--force replaces it" 0 "$(code u backup --force "$T/backup.db")"
check "which has the writer's last value" 200 \
	"$("$USTATE_CLI" -d "$T/backup.db" get /w/0)"
script -qc "'$USTATE_CLI' -d '$T/state.db' backup '$T/tty.db'" /dev/null \
	> "$T/tty" </dev/null
check "on a terminal, backup draws a progress bar" 1 \
	"$(tr '\r' '\n' < "$T/tty" | grep -c '^backup \[#*\] 100% ')"

# Check: clean, then damage made behind the store's back.
check "check of a sound store: ok, exit 0" "ok 0" \
	"$(u check) $(code u check)"
sqlite3 "$T/backup.db" "DELETE FROM ustate_keyrev WHERE key = '/a'"
rc=0
"$USTATE_CLI" -d "$T/backup.db" check > "$T/out" || rc=$?
check "check finds a deleted keyrev row: exit 5" 5 "$rc"
check "and says which" \
	"keyrev-missing /a: the key has no ustate_keyrev row (no revision)" \
	"$(head -1 "$T/out")"
check "check --json" '{"ok":false,"count":1,"check":"keyrev-missing","key":"/a"}' \
	"$("$USTATE_CLI" -d "$T/backup.db" --json check |
		jq -c '{ok, count, check: .problems[0].check, key: .problems[0].key}')"
# Pages overwritten in a copy: SQLite's own check speaks.
"$USTATE_CLI" -d "$T/state.db" backup "$T/torn.db"
python3 - "$T/torn.db" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    for page in (2, 40, 100):
        f.seek(4096 * page)
        f.write(b"\xde\xad" * 2048)
EOF
rc=0
"$USTATE_CLI" -d "$T/torn.db" check > "$T/out" || rc=$?
check "check of a torn file: exit 5" 5 "$rc"
check "SQLite's integrity check reports it" 1 \
	"$(grep -c '^integrity: \*\*\* in database main' "$T/out")"
head -c 8192 /dev/urandom > "$T/junk.db"
check "check of a file that is no database: exit 5" 5 \
	"$(code "$USTATE_CLI" -d "$T/junk.db" check)"
check "check of a missing file: exit 1, nothing made" "1 no" \
	"$(code "$USTATE_CLI" -d "$T/none.db" check) $(test -e "$T/none.db" && echo yes || echo no)"

# Compact: the history goes, and so does watch --from before it.
rev=$(u revision)
check "compact needs --keep or --revision: exit 2" 2 "$(code u compact)"
check "compact past the revision: exit 2" 2 \
	"$(code u compact --revision $((rev + 2)))"
# Revisions 1 to rev - 2, one of them the restore of 20000 keys.
check "compact --keep 2" \
	"removed $((rev - 3 + 20000)) changes before revision $((rev - 1))" \
	"$(u compact --keep 2)"
rc=0
timeout 5 "$USTATE_CLI" -d "$T/state.db" watch '*' --from 1 > "$T/out" 2>&1 || rc=$?
check "watch --from a dropped revision: exit 1" 1 "$rc"
check "saying the history is gone" \
	"ustate: *: revision no longer in the retained history" "$(cat "$T/out")"
timeout 2 "$USTATE_CLI" -d "$T/state.db" watch '/w/*' --from $((rev - 1)) \
	> "$T/out" 2>&1 || true
check "watch --from a kept revision still replays" \
	"$((rev - 1)) $rev" "$(jq -r .revision "$T/out" | tr '\n' ' ' | sed 's/ $//')"
check "compact --revision, as JSON" "{\"removed\":2,\"revision\":$((rev + 1))}" \
	"$(u --json compact --revision $((rev + 1)))"
check "the store is sound after compaction" ok "$(u check)"
check "compact --help" 0 "$(code u compact --help)"
