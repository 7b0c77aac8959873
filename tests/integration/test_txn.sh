#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: /.txn, the transaction file. Success and its reply, each kind
# of failure and what the shell sees, a CAS retry loop, and that a closed
# but uncommitted transaction changes nothing.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"
echo 1 > "$M/a"
echo hello > "$M/b"

# Run a script through one descriptor; print the write's fate and the reply.
txn() { txn_run "$M/.txn" "$1"; }

out=$(txn $'check /a 1\nset /a 2\nhi\ncreate /c 0\n\ndelete /b\nget /a\ncommit\n')
rev=$(sqlite3 "$T/state.db" 'SELECT revision FROM ustate_state')
check "commit succeeds" "write ok
ok $rev
check /a 1
set /a 2
create /c 1
delete /b 0
get /a 1 2
1
" "$out
"
check "set applied" "hi 2" "$(cat "$M/a") $(xattr version "$M/a")"
check "create applied (empty value)" "1 0" \
	"$(xattr version "$M/c") $(stat -c %s "$M/c")"
check "delete applied" no "$( [ -e "$M/b" ] && echo yes || echo no)"
check "all keys share one revision" "$rev $rev" \
	"$(xattr revision "$M/a") $(xattr revision "$M/c")"

snapshot() { sqlite3 "$T/state.db" 'SELECT key, version, hex(value) FROM kv_store ORDER BY key'; }
before=$(snapshot)
out=$(txn $'set /a 1\nX\ncheck /a 5\ncommit\n')
check "failed check: ECANCELED with line and found version" \
	"write ECANCELED|error 3 ECANCELED /a 2" "$(echo "$out" | head -2 | tr '\n' '|' | sed 's/|$//')"
out=$(txn $'create /a 1\nX\ncommit\n')
check "create of an existing key: EEXIST" "write EEXIST" "$(echo "$out" | head -1)"
out=$(txn $'delete /nope\ncommit\n')
check "delete of a missing key: ENOENT" "write ENOENT" "$(echo "$out" | head -1)"
out=$(txn $'set /a 1\nX\nfrobnicate /a\ncommit\n')
check "unknown command: EINVAL on line 3" "write EINVAL|error 3 EINVAL - 0" \
	"$(echo "$out" | head -2 | tr '\n' '|' | sed 's/|$//')"
out=$(txn $'set /a 3\nX\ncommit\n')
check "value shorter than its length: EINVAL" "write EINVAL" "$(echo "$out" | head -1)"
out=$(txn $'set /a x\n')
check "length not a number: EINVAL" "write EINVAL" "$(echo "$out" | head -1)"
out=$(txn $'set /bad//key 1\nX\ncommit\n')
check "bad key: EINVAL" "write EINVAL" "$(echo "$out" | head -1)"
out=$(txn $'set /a 1\nX\n')
check "closing without commit discards" "write ok" "$(echo "$out" | head -1)"
check "failures and discards changed nothing" "$before" "$(snapshot)"

check_err "the shell sees a failed commit" "Operation canceled" \
	bash -c "printf 'check /a 5\nset /a 2\nhi\ncommit\n' > '$M/.txn'"
check "and nothing changed" "$before" "$(snapshot)"

# A CAS retry loop in bash, as the README shows it: 4 x 25 increments.
inc() {
	local i v n
	for ((i = 0; i < 25; i++)); do
		while :; do
			v=$(xattr version "$M/counter")
			n=$(( $(cat "$M/counter") + 1 ))
			printf 'check /counter %s\nset /counter %s\n%s\ncommit\n' \
				"$v" "${#n}" "$n" > "$M/.txn" 2>/dev/null && break
		done
	done
}
echo 0 > "$M/counter"
for j in 1 2 3 4; do inc & done
wait
check "CAS retry loops lose no update" 100 "$(cat "$M/counter")"
