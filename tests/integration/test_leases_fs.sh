#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# /.leases on the mount: echo TTL > /.leases/NAME grants, cat shows the
# state, ls lists, rm revokes (its keys go, as IN_DELETE events); expiry
# deletes the keys at the deadline; a file held open keeps its lease
# alive past several TTLs, and SIGKILL of the holder ends it within
# TTL + 1 s; a key created by a holder of a lease file (or a child) is
# attached to it at once, and goes with it; a restart of the daemon keeps
# leases, their deadlines and owners (kept in the store);
# bad input is a clear error and changes nothing. Real TTLs of 1-3 s,
# every wait bounded.
. "$(dirname "$0")/lib.sh"

: "${USTATE_CLI:?USTATE_CLI must name the ustate command}"
M=$T/mnt
L=$M/.leases
u() { "$USTATE_CLI" -d "$T/state.db" "$@"; }
gone() { [ ! -e "$1" ]; }
mount_fs "$T/state.db" "$M"

# inotifywait on $M/nodes: events to $T/events.
watch_start() {
	: > "$T/events"
	(inotifywait -m -r --format '%e %w%f' "$M/nodes" 2>"$T/inotify.err" |
		while read -r ev; do echo "$ev" >> "$T/events"; done) &
	at_exit "pkill -f 'inotifywait -m -r --format %e %w%f $M/nodes'"
	wait_for 5 grep -q "Watches established" "$T/inotify.err"
}
watch_stop() { pkill -f "inotifywait -m -r --format %e %w%f $M/nodes" || true; }
seen() { grep -qx "$1" "$T/events"; }
# kill_holder PID KEY TTL WHAT: SIGKILL PID; KEY must go within TTL + 1 s.
kill_holder() {
	local killed took
	kill -9 "$1"
	wait "$1" 2>/dev/null || true
	killed=$(date +%s%3N)
	wait_for 5 gone "$2" || fail "$2 outlived the lease's holder"
	took=$(($(date +%s%3N) - killed))
	check "$4 within TTL + 1 s (${took} ms)" 1 "$((took <= ($3 + 1) * 1000))"
}

check "/.leases is a sticky directory" "drwxrwxrwt" \
	"$(stat -c %A "$L")"
check "ls -a / shows it" ".leases" "$(ls -a "$M" | grep -x .leases)"
check "echo 10 grants" 0 "$(echo 10 > "$L/node-1"; echo $?)"
check "ls lists" "node-1" "$(ls "$L")"
check "the lease is the library's" "ttl 10" "$(u lease get node-1 | head -1)"
check "cat: its TTL" "ttl 10" "$(head -1 "$L/node-1")"
check "cat: its time left" 1 "$(sed -n 's/^left \([0-9]*\)\..*/\1/p' "$L/node-1" |
	awk '{ print ($1 >= 8 && $1 <= 10) }')"
u set --lease node-1 /nodes/node-1/status up >/dev/null
u create --lease node-1 /nodes/node-1/addr 10.0.0.1 >/dev/null
check "cat: its keys" "key /nodes/node-1/addr key /nodes/node-1/status" \
	"$(grep '^key' "$L/node-1" | tr '\n' ' ' | sed 's/ $//')"
check "the creator owns it, mode from the umask" "$(id -u) 640" \
	"$(umask 027; echo 5 > "$L/mine"; stat -c '%u %a' "$L/mine")"
check "echo 3 refreshes with the new TTL" "ttl 3" \
	"$(echo 3 > "$L/node-1"; head -1 "$L/node-1")"
check "... and keeps the keys" "up" "$(cat "$M/nodes/node-1/status")"
check "echo >> refreshes too" "ttl 10" \
	"$(echo 10 >> "$L/node-1"; head -1 "$L/node-1")"
check_err "touch of no lease makes none: ENOENT" "No such file" \
	touch "$L/none"

# Bad input: a clear error, nothing changed.
before=$(u dump; u lease list; u revision)
check_err "a TTL that is no number: EINVAL" "Invalid argument" \
	bash -c "echo ten > '$L/bad'"
check_err "TTL 0: EINVAL" "Invalid argument" bash -c "echo 0 > '$L/bad'"
check_err "a TTL of an existing lease: EINVAL" "Invalid argument" \
	bash -c "echo -5 > '$L/node-1'"
check "... which keeps its TTL" "ttl 10" "$(head -1 "$L/node-1")"
check "a TTL over ten years: EINVAL" 1 \
	"$(echo 999999999999 > "$L/bad" 2>/dev/null; echo $?)"
check "no lease was made" "" "$(ls "$L" | grep -x bad || true)"
check_err "mkdir in /.leases: EPERM" "Operation not permitted" mkdir "$L/d"
check_err "rename of a lease: EPERM" "Operation not permitted" \
	mv "$L/node-1" "$L/node-2"
check_err "rm of no lease: ENOENT" "No such file" rm "$L/nope"
check "nothing changed" "$before" "$(u dump; u lease list; u revision)"

# user.lease: a key's lease, attached and detached with setfattr; a
# rename keeps it.
check "getfattr -n user.lease" "node-1" \
	"$(xattr lease "$M/nodes/node-1/status")"
u set /nodes/plain p >/dev/null
check_err "... of a key without one: ENODATA" "No such attribute" \
	getfattr -n user.lease "$M/nodes/plain"
check "getfattr -d lists it only when set" "1 0" \
	"$(getfattr -d "$M/nodes/node-1/status" | grep -c user.lease) $(getfattr -d "$M/nodes/plain" | grep -c user.lease)"
check "setfattr attaches a key" "node-1 p" \
	"$(setfattr -n user.lease -v node-1 "$M/nodes/plain"; xattr lease "$M/nodes/plain") $(cat "$M/nodes/plain")"
check "... which the lease lists" "key /nodes/plain" \
	"$(grep -x 'key /nodes/plain' "$L/node-1")"
check "setfattr -x detaches it" "" \
	"$(setfattr -x user.lease "$M/nodes/plain"; xattr lease "$M/nodes/plain" || true)"
mv "$M/nodes/node-1/addr" "$M/nodes/node-1/address"
check "mv keeps the lease" "node-1" "$(xattr lease "$M/nodes/node-1/address")"
before=$(u dump; u lease list; u revision)
check_err "setfattr of no lease: ENOENT" "No such file" \
	setfattr -n user.lease -v nope "$M/nodes/plain"
check_err "setfattr of a bad lease name: EINVAL" "Invalid argument" \
	setfattr -n user.lease -v a/b "$M/nodes/plain"
check "nothing changed" "$before" "$(u dump; u lease list; u revision)"

# /.txn: set and create take lease=NAME as their last word.
txn() { txn_run "$M/.txn" "$1"; }
check "/.txn: set and create with lease=" "write ok" \
	"$(txn $'set /nodes/t1 2 lease=node-1\nhi\ncreate /nodes/t 2 2 lease=node-1\nyo\ncommit\n' | sed -n 1p)"
check "... attach their keys" "node-1 node-1 hi" \
	"$(xattr lease "$M/nodes/t1") $(xattr lease "$M/nodes/t 2") $(cat "$M/nodes/t1")"
before=$(u dump; u lease list; u revision)
check "/.txn naming no lease fails whole with ENOENT and its line" \
	"write ENOENT
error 3 ENOENT /nodes/t4 0
line 3: no such lease: nope" \
	"$(txn $'set /nodes/t3 1\na\nset /nodes/t4 1 lease=nope\nb\ncommit\n')"
check "... and changes nothing" "$before" "$(u dump; u lease list; u revision)"
u delete /nodes/t1 >/dev/null
u delete "/nodes/t 2" >/dev/null

# touch keeps it alive; so does any write.
sleep 1.2
touch "$L/node-1"
check "touch keeps it alive" 1 "$(sed -n 's/^left \([0-9.]*\)$/\1/p' "$L/node-1" |
	awk '{ print ($1 > 9.5) }')"

# rm revokes: its keys go in one revision, as IN_DELETE events.
setfattr -x user.lease "$M/nodes/plain" 2>/dev/null || true
watch_start
rev=$(u revision)
check "rm revokes" 0 "$(rm "$L/node-1"; echo $?)"
check "... its keys are gone" "no no" \
	"$(for k in status address; do [ -e "$M/nodes/node-1/$k" ] && echo yes || echo no; done | xargs)"
check "... in one revision" "$((rev + 1))" "$(u revision)"
wait_for 5 seen "DELETE $M/nodes/node-1/status" &&
	wait_for 5 seen "DELETE $M/nodes/node-1/address" ||
	fail "no IN_DELETE events after rm: $(cat "$T/events")"
echo "ok: rm: IN_DELETE events"
check "... and the lease" "" "$(ls "$L" | grep -x node-1 || true)"
watch_stop

# Writing a lease that was deleted under an open file: ENOENT.
echo 5 > "$L/old"
exec 8> "$L/old"
rm "$L/old"
check "writing a deleted lease: ENOENT" 1 "$( (echo 5 >&8) 2>/dev/null; echo $?)"
exec 8>&-
check "... made no lease" "" "$(ls "$L" | grep -x old || true)"

# Expiry at the deadline deletes the keys, with IN_DELETE events.
u set /nodes/keep k >/dev/null
watch_start
echo 2 > "$L/short"
u set --lease short /nodes/short v >/dev/null
check "the leased key is there" "v" "$(cat "$M/nodes/short")"
wait_for 5 gone "$M/nodes/short" || fail "the key outlived its lease"
wait_for 5 seen "DELETE $M/nodes/short" ||
	fail "no IN_DELETE event at expiry: $(cat "$T/events")"
echo "ok: expiry: the key and its IN_DELETE event"
check "... the lease's file is gone" "" "$(ls "$L" | grep -x short || true)"
check "... and other keys stay" "k" "$(cat "$M/nodes/keep")"
watch_stop

# A file held open keeps its lease alive past several TTLs; the last
# close starts its TTL; SIGKILL of the holder ends it within TTL + 1 s.
echo 1 > "$L/held"
u set --lease held /nodes/held v >/dev/null
bash -c "exec 9< '$L/held'; exec sleep 30" &
holder=$!
at_exit "kill -9 $holder"
sleep 3.5
check "held open: alive after 3 TTLs" "v" "$(cat "$M/nodes/held" 2>&1)"
kill_holder "$holder" "$M/nodes/held" 1 "SIGKILL of the holder: gone"

# A key created by a process holding a lease file open (or by one of its
# children) is created attached to that lease, in the create's
# transaction; the holder's later writes keep it attached.
echo 2 > "$L/auto"
bash -c "exec 9< '$L/auto'; set -C
	echo me > '$M/nodes/leader' || exit 1
	(echo child > '$M/nodes/child') || exit 1
	echo again > '$M/nodes/again' && echo again2 >| '$M/nodes/again'
	touch '$T/auto.ready'; exec sleep 30" &
holder=$!
at_exit "kill -9 $holder"
wait_for 5 test -e "$T/auto.ready" || fail "the holder did not create its keys"
check "set -C by a holder: leased at once, no setfattr" "auto me" \
	"$(xattr lease "$M/nodes/leader") $(cat "$M/nodes/leader")"
check "... by a child of the holder too" "auto child" \
	"$(xattr lease "$M/nodes/child") $(cat "$M/nodes/child")"
check "... a rewrite by the holder keeps the lease" "auto again2" \
	"$(xattr lease "$M/nodes/again") $(cat "$M/nodes/again")"
check "the lease lists its keys" "key /nodes/again key /nodes/child key /nodes/leader" \
	"$(grep '^key' "$L/auto" | tr '\n' ' ' | sed 's/ $//')"
check "a process holding no lease creates an unleased key" "free -" \
	"$(echo free > "$M/nodes/free"; cat "$M/nodes/free") $(xattr lease "$M/nodes/free" || echo -)"
check "a write by a non-holder detaches (etcd's rule)" "-" \
	"$(echo mine > "$M/nodes/child"; xattr lease "$M/nodes/child" || echo -)"
sleep 2.5
check "held: the keys outlive the TTL" "me" "$(cat "$M/nodes/leader" 2>&1)"
kill_holder "$holder" "$M/nodes/leader" 2 "SIGKILL of the holder: the key gone"
check "... and the unleased keys stay" "free mine" \
	"$(cat "$M/nodes/free") $(cat "$M/nodes/child")"
u delete /nodes/free >/dev/null
u delete /nodes/child >/dev/null

# Only a descriptor open for reading holds: a grant (echo TTL >) does not.
check "a create right after a grant is unleased" "-" \
	"$(bash -c "echo 30 > '$L/w'; echo v > '$M/nodes/wonly'"
	   xattr lease "$M/nodes/wonly" || echo -)"
rm "$L/w"
u delete /nodes/wonly >/dev/null

# Holding several leases: no guess, the key gets none.
echo 30 > "$L/la"
echo 30 > "$L/lb"
check "a holder of two leases creates an unleased key" "two -" \
	"$(bash -c "exec 8< '$L/la' 9< '$L/lb'; echo two > '$M/nodes/two'"
	   echo "$(cat "$M/nodes/two") $(xattr lease "$M/nodes/two" || echo -)")"
check "... the nearest holder counts: a child holding one" "lb" \
	"$(bash -c "exec 8< '$L/la'; bash -c \"exec 9< '$L/lb'; echo n > '$M/nodes/near'\"; :"
	   xattr lease "$M/nodes/near")"
check "setfattr still attaches" "la" \
	"$(setfattr -n user.lease -v la "$M/nodes/two"; xattr lease "$M/nodes/two")"
rm "$L/la" "$L/lb"

# A lease that ended while held: the create fails with ENOENT, no key.
echo 30 > "$L/ended"
keys() { u dump | grep -v '^{"lease":'; } # the keys, not the leases
before=$(keys)
check_err "set -C under a revoked lease: ENOENT" "No such file" \
	bash -c "exec 9< '$L/ended'; rm '$L/ended'; set -C; echo me > '$M/nodes/nokey'"
check "... leaves no key" "no" \
	"$([ -e "$M/nodes/nokey" ] && echo yes || echo no)"
echo 30 > "$L/ended"
bash -c "exec 9< '$L/ended'; rm '$L/ended'; echo me > '$M/nodes/nokey2'" 2>/dev/null || true
check "... a plain create fails at close and leaves no key" "no" \
	"$([ -e "$M/nodes/nokey2" ] && echo yes || echo no)"
echo 30 > "$L/ended"
check_err "... a lease ended by another process (ustate lease revoke): ENOENT" \
	"No such file" bash -c "exec 9< '$L/ended'
		'$USTATE_CLI' -d '$T/state.db' lease revoke ended >/dev/null
		set -C; echo me > '$M/nodes/nokey3'"
check "... no key" "no" \
	"$([ -e "$M/nodes/nokey3" ] && echo yes || echo no)"
check "... nothing changed" "$before" "$(keys)"

# Owners live in the store: the library tells them, and a lease the CLI
# makes is its caller's, mode from its umask.
echo 60 > "$L/owned"
chmod 0604 "$L/owned"
chown 12:34 "$L/owned"
check "chmod and chown are the store's" "owner 12:34 0604" \
	"$(u lease get owned | grep '^owner')"
check "a lease the CLI grants is its caller's" "$(id -u) $(id -g) 600" \
	"$(umask 077; u lease grant bycli 60 >/dev/null
	   stat -c '%u %g %a' "$L/bycli")"
check_err "chmod of no lease: ENOENT" "No such file" chmod 600 "$L/none"

# A restart of the daemon keeps the leases, their deadlines and owners.
echo 3 > "$L/durable"
u set --lease durable /nodes/durable d >/dev/null
deadline=$(u --json lease get durable | grep -o '"deadline_ms":[0-9]*')
umount_fs "$M"
wait_for 5 _no_daemon
mount_fs "$T/state.db" "$M"
check "after a restart: the lease" "durable" "$(ls "$L" | grep -x durable)"
check "... with its deadline" "$deadline" \
	"$(u --json lease get durable | grep -o '"deadline_ms":[0-9]*')"
check "... and the owners and modes" "12 34 604 $(id -u) 600" \
	"$(stat -c '%u %g %a' "$L/owned") $(stat -c '%u %a' "$L/bycli")"
rm "$L/owned" "$L/bycli"
wait_for 6 gone "$M/nodes/durable" || fail "the lease outlived its deadline"
echo "ok: ... and it expires at it"

# With allow_other the kernel checks lease files like any file: a lease
# is its creator's, its mode from the umask, and /.leases is sticky.
if id -u nobody > /dev/null 2>&1 && command -v setpriv > /dev/null; then
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	umount_fs "$M"
	wait_for 5 _no_daemon
	chmod 0755 "$T" # nobody must reach the mountpoint
	mount_fs "$T/state.db" "$M" -o allow_other
	(umask 022; echo 30 > "$L/roots")
	check_err "nobody may not refresh root's 0644 lease" \
		"Permission denied" as_nobody bash -c "echo 5 > '$L/roots'"
	check_err "... nor revoke it (/.leases is sticky)" \
		"Operation not permitted" as_nobody rm -f "$L/roots"
	check "... but may read it" "ttl 30" \
		"$(as_nobody head -1 "$L/roots")"
	as_nobody bash -c "umask 077; echo 30 > '$L/nobodys'"
	check "a lease nobody grants is nobody's, mode from its umask" \
		"65534 600" "$(stat -c '%u %a' "$L/nobodys")"
	check "... which it may refresh" "ttl 7" \
		"$(as_nobody bash -c "echo 7 > '$L/nobodys'; head -1 '$L/nobodys'")"
	check "... and revoke" "" \
		"$(as_nobody rm "$L/nobodys"; ls "$L" | grep -x nobodys || true)"
	rm "$L/roots"
else
	echo "skipped: the permission checks need the nobody user and setpriv"
fi
