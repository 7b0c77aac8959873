#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustate lease: grant, keepalive, revoke, get and list, keys attached
# with set --lease and create --lease, and `lease run`: it passes on its
# command's exit status and revokes the lease when the command ends, and
# when it is killed with SIGKILL the lease ends within TTL + 1 s; dump and
# restore carry leases, their owners and the keys' leases. Real
# TTLs of 2 s at most; no sleep waits out a longer one.
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
u() { "$USTATE_CLI" -d "$T/state.db" "$@"; }
code() { local rc=0; "$@" >/dev/null 2>&1 || rc=$?; echo $rc; }
gone() { [ "$(code u exists "$1")" = 3 ]; }
now_ms() { date +%s%3N; }

check "grant prints the TTL" "ttl 30" "$(u lease grant node-1 30 | head -1)"
check "set --lease attaches" 1 "$(u set --lease node-1 /nodes/node-1 up)"
check "create --lease attaches" 1 "$(u create /nodes/extra x --lease node-1)"
check "txn: set with lease= attaches" "ok" \
	"$(printf 'set /nodes/txn 1 lease=node-1\nt\ncommit\n' | u txn | cut -d' ' -f1 | head -1)"
check "... as get --json says" '"lease":"node-1"}' \
	"$(u --json get /nodes/txn | grep -o '"lease":.*')"
u delete /nodes/txn >/dev/null
check "txn: lease= of no lease: exit 4, its line" "4 line 1: no such lease: nope" \
	"$(printf 'set /x 1 lease=nope\nt\ncommit\n' | u txn 2>"$T/txn.err" >/dev/null
	echo "$? $(tail -1 "$T/txn.err")")"
u set /plain p >/dev/null
check "get lists the keys" "key /nodes/extra key /nodes/node-1" \
	"$(u lease get node-1 | grep '^key' | tr '\n' ' ' | sed 's/ $//')"
check "get --json" '{"name":"node-1","ttl":30' \
	"$(u --json lease get node-1 | cut -d, -f1-2)"
check "list" "node-1" "$(u lease list)"
check "get --json of a key names its lease" '"lease":"node-1"}' \
	"$(u --json get /nodes/node-1 | grep -o '"lease":.*')"
check "... and a key without one has none" "" \
	"$(u --json get /plain | grep -o '"lease":.*' || true)"
check "keepalive of a live lease" 0 "$(code u lease keepalive node-1)"
check "a set without --lease detaches" "key /nodes/node-1" \
	"$(u set /nodes/extra y >/dev/null; u lease get node-1 | grep '^key')"

# Bad input: a clear error, its exit code, and nothing changed.
before=$(u dump; u revision)
check "set --lease of no lease: exit 3" 3 "$(code u set --lease nope /x 1)"
check_err "... says the lease is missing" "no such lease" \
	u set --lease nope /x 1
check "create --lease of no lease: exit 3" 3 "$(code u create --lease nope /x 1)"
check "keepalive of no lease: exit 3" 3 "$(code u lease keepalive nope)"
check "revoke of no lease: exit 3" 3 "$(code u lease revoke nope)"
check "get of no lease: exit 3" 3 "$(code u lease get nope)"
check "a bad name: exit 2" 2 "$(code u lease grant a/b 5)"
check "TTL 0: exit 2" 2 "$(code u lease grant t 0)"
check "TTL not a number: exit 2" 2 "$(code u lease grant t 1x)"
check "run without --ttl: exit 2" 2 "$(code u lease run t -- true)"
check "an unknown subcommand: exit 2" 2 "$(code u lease frob)"
check "nothing changed" "$before" "$(u dump; u revision)"

# A dump carries the leases, their owners and the keys' leases; a restore
# makes them again, each a whole TTL from then.
(umask 077; u lease grant dumped 30 >/dev/null)
u set --lease dumped /nodes/dumped d >/dev/null
u dump > "$T/dump.json"
check "dump: the lease record, with its owner" \
	"{\"lease\":\"dumped\",\"ttl\":30,\"meta\":{\"uid\":$(id -u),\"gid\":$(id -g),\"mode\":\"0600\"}}" \
	"$(grep '^{"lease":"dumped"' "$T/dump.json")"
check "dump: the key names its lease" 1 \
	"$(grep -c '"key":"/nodes/dumped".*"lease":"dumped"' "$T/dump.json")"
r() { "$USTATE_CLI" -d "$T/restored.db" "$@"; }
check "restore" 0 "$(code r restore < "$T/dump.json")"
check "... makes the leases" "$(u lease list | xargs)" "$(r lease list | xargs)"
check "... with their owners and keys" "owner $(id -u):$(id -g) 0600 key /nodes/dumped" \
	"$(r lease get dumped | grep -E '^(owner|key)' | xargs)"
check "... and dumps the same again" "$(cat "$T/dump.json")" "$(r dump)"
check "... and its lease ends its keys" "3" \
	"$(r lease revoke dumped >/dev/null; code r exists /nodes/dumped)"
grep -v '^{"lease":"dumped"' "$T/dump.json" > "$T/orphan.json"
check_err "a key naming a lease no one has: a clear error" \
	"names a lease that neither" \
	bash -c "'$USTATE_CLI' -d '$T/orphan.db' restore < '$T/orphan.json'"
check "... and nothing written" "" \
	"$("$USTATE_CLI" -d "$T/orphan.db" dump 2>/dev/null)"
u lease revoke dumped >/dev/null

check "revoke" 0 "$(code u lease revoke node-1)"
check "... took its key" 3 "$(code u exists /nodes/node-1)"
check "... and left the others" "p y" "$(u get /plain) $(u get /nodes/extra)"
check "... and the lease" "" "$(u lease list)"

# lease run: the command's status, the lease while it runs, revoked after.
check "run passes the exit status" 7 "$(code u lease run job --ttl 5 -- \
	sh -c 'exit 7')"
check "run: a command killed by a signal exits 128 + N" 143 \
	"$(code u lease run job --ttl 5 -- sh -c 'kill -TERM $$')"
check "run: the command sees USTATE_LEASE, and its keys live" "job 1" \
	"$(u lease run job --ttl 5 -- sh -c \
		'echo $USTATE_LEASE; "$0" -d "$1" set --lease "$USTATE_LEASE" /job/k v' \
		"$USTATE_CLI" "$T/state.db" | tr '\n' ' ' | sed 's/ $//')"
check "run: revoked at the end, with its keys" "3 " \
	"$(code u exists /job/k) $(u lease list)"

# A held lease lives past several TTLs: keepalives at TTL / 3.
u lease run held --ttl 1 -- sh -c \
	'"$0" -d "$1" set --lease held /held/k v >/dev/null; sleep 3.5' \
	"$USTATE_CLI" "$T/state.db" &
runner=$!
at_exit "kill -9 $runner"
wait_for 5 u exists /held/k || fail "lease run: the key was never written"
sleep 2.5
check "a 1 s lease held by run lives past 2 TTLs" 0 "$(code u exists /held/k)"
wait $runner
check "... and goes when its command ends" 3 "$(code u exists /held/k)"

# SIGKILL of `ustate lease run` (the process itself, not a subshell):
# nothing revokes; the TTL ends it.
"$USTATE_CLI" -d "$T/state.db" lease run doomed --ttl 2 -- sh -c \
	'"$0" -d "$1" set --lease doomed /doomed/k v >/dev/null; exec sleep 30' \
	"$USTATE_CLI" "$T/state.db" &
runner=$!
at_exit "kill -9 $runner"
wait_for 5 u exists /doomed/k || fail "lease run: /doomed/k never written"
child=$(pgrep -P $runner || true)
at_exit "kill -9 $child"
kill -9 $runner
killed=$(now_ms)
wait $runner 2>/dev/null || true
# Another process must expire it: a writable open of the store does, and
# so does the expiry thread of a process that keeps it open.
if wait_for 4 gone /doomed/k; then
	elapsed=$(( $(now_ms) - killed ))
	echo "# SIGKILL to expiry: ${elapsed} ms (TTL 2000 ms)"
	if [ "$elapsed" -gt 3500 ]; then
		fail "the lease ended ${elapsed} ms after the kill, over TTL + 1 s"
	fi
else
	fail "the lease of a killed lease run never ended"
fi
check "... and the lease is gone" "" "$(u lease list)"
kill -9 $child 2>/dev/null || true
