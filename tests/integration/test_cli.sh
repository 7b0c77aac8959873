#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustate, the command line: each subcommand, its exit codes, --json, the
# SOURCE forms of -d and the options of remote stores, and that its
# changes reach the inotify watchers of a mount of the same file.
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
u() { "$USTATE_CLI" -d "$T/state.db" "$@"; }
code() { local rc=0; "$@" >/dev/null 2>&1 || rc=$?; echo $rc; }

check "set prints the new version" 1 "$(u set /a hello)"
check "set from stdin" 2 "$(printf 'from\nstdin' | u set /a)"
check "get prints the value, byte for byte" "$(printf 'from\nstdin')" "$(u get /a)"
check "get --json" '{"key":"/a","value":"from\nstdin","version":2' \
	"$(u get /a --json | cut -d, -f1-3)"
check "version" 2 "$(u version /a)"
check "version of a missing key is 0" 0 "$(u version /nope)"
u set /b/c x >/dev/null
u set /b/d y >/dev/null
check "list PREFIX" "/b/c /b/d" "$(u list /b/ | tr '\n' ' ' | sed 's/ $//')"
check "list --json" '["/a","/b/c","/b/d"]' "$(u --json list)"
check "exists: 0 when present" 0 "$(code u exists /a)"
check "exists: 3 when missing" 3 "$(code u exists /nope)"
check "get of a missing key: exit 3" 3 "$(code u get /nope)"
check "delete of a missing key: exit 3" 3 "$(code u delete /nope)"
check "cas at the right version" 3 "$(u cas /a 2 new)"
check "cas at a stale version: exit 4" 4 "$(code u cas /a 2 newer)"
check "and the value stayed" new "$(u get /a)"
check "create of an existing key: exit 4" 4 "$(code u create /a x)"
check "create of a new key" 1 "$(u create /fresh x)"
check "delete" "0 3" "$(code u delete /fresh) $(code u get /fresh)"
check "txn: success prints the reply" "ok $(( $(u revision) + 1 ))" \
	"$(printf 'check /a 3\nset /a 2\nok\ncommit\n' | u txn | head -1)"
check "txn: a failed check exits 4" 4 \
	"$(printf 'check /a 1\nset /a 1\nx\ncommit\n' | code u txn)"
check "txn: a malformed script exits 2" 2 "$(printf 'bogus\n' | code u txn)"
check "txn without commit writes nothing and exits 2" "2 ok" \
	"$(printf 'set /a 1\nz\n' | code u txn) $(u get /a)"
check "a bad key: exit 1" 1 "$(code u set /bad//key x)"
check "usage errors: exit 2" "2 2 2" \
	"$(code u frobnicate) $(code u get) $(code u cas /a notanumber)"
check "--help of a command" 0 "$(code u cas --help)"
check "a file that is not a database: exit 1" 1 \
	"$(head -c 4096 /dev/urandom > "$T/junk" && code "$USTATE_CLI" -d "$T/junk" get /a)"

# -d takes every SOURCE that ustate_open() knows; :memory: is a new store
# in each run, so one run writes and reads in one transaction.
m() { "$USTATE_CLI" -d :memory: "$@"; }
check "-d :memory: opens a store and writes" 1 "$(m set /a hi)"
check "-d :memory: is empty in each run" 3 "$(code m get /a)"
check "-d :memory: txn: a check, a set and a get in one run" \
	"ok 1|check /a 0|set /a 1|get /b 0 0" \
	"$(printf 'check /a 0\nset /a 2\nhi\nget /b\ncommit\n' | m txn |
		tr '\n' '|' | sed 's/|*$//')"
check "-d :memory: for a command that needs an existing store" "ok" \
	"$(m check)"
check_err "-d with an unknown scheme" 'foo://x: unknown scheme "foo"' \
	"$USTATE_CLI" -d foo://x get /a
check "... exits 1, explained once" "1 1" \
	"$(code "$USTATE_CLI" -d foo://x get /a) $("$USTATE_CLI" -d foo://x get /a 2>&1 | wc -l)"
check_err "-d etcd:// that does not open" "etcd://127.0.0.1:9/app" \
	"$USTATE_CLI" --dial-timeout 200 --request-timeout 500 \
	-d etcd://127.0.0.1:9/app get /a
check_err "--request-timeout 0" '--request-timeout: "0" is not 1 to 3600000 ms' \
	"$USTATE_CLI" --request-timeout 0 -d :memory: get /a
check "--request-timeout 0 is a usage error" 2 \
	"$(code "$USTATE_CLI" --request-timeout 0 -d :memory: get /a)"
echo 's3cret' > "$T/password"
chmod 604 "$T/password"
check_err "a password file others may read" \
	"--password-file $T/password: readable by its group or others (mode 0604)" \
	"$USTATE_CLI" --user app --password-file "$T/password" -d :memory: revision
chmod 600 "$T/password"
check "the remote-store options are taken (and unused by :memory:)" 0 \
	"$("$USTATE_CLI" --user app --password-file "$T/password" \
		--tls-ca ca.pem --tls-cert c.pem --tls-key k.pem \
		--request-timeout 100 --dial-timeout 50 -d :memory: revision)"

rev=$(u revision)
"$USTATE_CLI" -d "$T/state.db" watch '/w/*' --from "$((rev + 1))" \
	> "$T/watch" 2>&1 &
wpid=$!
at_exit "kill $wpid"
u set /w/x 1 >/dev/null
u delete /w/x
wait_for 5 grep -q deleted "$T/watch"
kill -INT $wpid
rc=0
wait $wpid || rc=$?
check "watch ends cleanly on SIGINT" 0 "$rc"
check "watch prints JSON lines" \
"{\"type\":\"created\",\"key\":\"/w/x\",\"version\":1,\"revision\":$((rev + 1))}
{\"type\":\"deleted\",\"key\":\"/w/x\",\"version\":0,\"revision\":$((rev + 2))}" \
	"$(cat "$T/watch")"

# Its changes reach a mount's inotify watchers through the replay.
M=$T/mnt
mount_fs "$T/state.db" "$M"
inotifywait -m --format '%e %f' "$M/b" > "$T/events" 2> "$T/inotify.err" &
at_exit "kill $!"
wait_for 5 grep -q "Watches established" "$T/inotify.err"
u set /b/c changed >/dev/null
wait_for 5 grep -q 'CLOSE_WRITE,CLOSE c' "$T/events"
check "a CLI write reaches the mount's watchers" "CLOSE_WRITE,CLOSE c" \
	"$(grep CLOSE_WRITE "$T/events")"
check "and the mount reads it" changed "$(cat "$M/b/c")"
