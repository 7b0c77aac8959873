#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# This file tests that a store on etcd and any other etcd client share one
# key space, both ways, with Debian's etcdctl as the other client: a value
# set through libustate is the raw value of PREFIX+KEY, its version is
# etcd's; a key put by etcdctl is a key of the store, with etcd's version
# and unknown (0) times; deletes cross both ways; a watch of the store
# sees etcdctl's puts and deletes in revision order; keys that break the
# store's key rules are left out of lists; and nothing outside PREFIX is
# ever read or written (a key beside it, and one that shares its bytes
# but not its path, stay as they were).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${USTATE_CLI:?USTATE_CLI must name the ustate binary}"
# shellcheck source=lib.sh
source "$here/lib.sh"

_failed=0
fail() {
	echo "not ok: $*" >&2
	_failed=1
}
check() {
	if [ "$2" == "$3" ]; then
		echo "ok: $1"
	else
		fail "$1: expected [${2:0:300}], got [${3:0:300}]"
	fi
}

T=$(mktemp -d "${TMPDIR:-/tmp}/ustate-etcd-interop.XXXXXX")
watcher=""
trap 'rc=$?; set +e; [ -n "$watcher" ] && kill "$watcher" 2>/dev/null;
	etcd_cleanup; rm -rf "$T"; [ $rc = 0 ] && rc=$_failed; exit $rc' EXIT

etcd_cluster_start 1
EP=${ETCD_MEMBER_ENDPOINT[0]}
S="etcd://$EP/interop/app"
u() { timeout 20 "$USTATE_CLI" -d "$S" "$@"; }
ectl() { etcd_ctl "$@"; }
# etcd's version of a key (0 when absent), from etcdctl's JSON.
eversion() {
	ectl get "$1" -w json | python3 -c '
import json, sys
kvs = json.load(sys.stdin).get("kvs", [])
print(kvs[0].get("version", 0) if kvs else 0)'
}

# Neighbours that the store must never touch.
ectl put /interop/other x >/dev/null
ectl put /interop/appendix y >/dev/null

# libustate -> etcdctl: the raw value, etcd's version.
check "set prints the version" 1 "$(u set /a hello)"
check "etcdctl reads the value" hello "$(ectl get /interop/app/a --print-value-only)"
u set /a again >/dev/null
check "etcd's version is the key's" 2 "$(eversion /interop/app/a)"
printf 'bin\0ary' | u set /bin >/dev/null
check "a binary value is raw in etcd" "$(printf 'bin\0ary' | od -An -c)" \
	"$(ectl get /interop/app/bin --print-value-only | head -c 7 | od -An -c)"

# etcdctl -> libustate: a key of the store, etcd's version, no times.
ectl put /interop/app/b world >/dev/null
check "a foreign key is read" world "$(u get /b)"
check "its version is etcd's" 1 "$(u version /b)"
ectl put /interop/app/b world2 >/dev/null
check "a foreign write moves the version" 2 "$(u version /b)"
check "a foreign key has unknown times" "0 0" \
	"$(u --json get /b | python3 -c 'import json,sys; e=json.load(sys.stdin); print(e["created_at"], e["updated_at"])')"
u set /b mine >/dev/null
check "a write through libustate knows its time" 1 \
	"$(u --json get /b | python3 -c 'import json,sys,time; e=json.load(sys.stdin); print(int(abs(e["updated_at"] - time.time()) < 60))')"
check "a CAS at etcd's version" 4 "$(u cas /b 3 next)"

# Deletes, both ways.
ectl del /interop/app/a >/dev/null
rc=0
u get /a >/dev/null 2>&1 || rc=$?
check "a key etcdctl deleted is gone" 3 "$rc"
u set /a back >/dev/null
check "set again: version 1" 1 "$(eversion /interop/app/a)"
u delete /b
check "a key the store deleted is gone from etcd" 0 "$(eversion /interop/app/b)"

# Keys that break the key rules are no keys of the store.
ectl put /interop/app/bad/./x v >/dev/null
ectl put /interop/app/ok/y v >/dev/null
check "list leaves out what is no key" "/a /bin /ok/y" "$(u list / | tr '\n' ' ' | sed 's/ $//')"

# A watch sees etcdctl's changes, in revision order.
u watch '*' >"$T/watch" 2>"$T/watch.err" &
watcher=$!
# The watch is live once a write of ours shows in it (it may start
# after the first ones).
marked() { u set /mark 1 >/dev/null && sleep 0.2 && grep -q '"/mark"' "$T/watch"; }
etcd_wait_for 10 marked || fail "the watch saw our own write"
ectl put /interop/app/w/1 a >/dev/null
ectl put /interop/app/w/1 b >/dev/null
ectl del /interop/app/w/1 >/dev/null
ectl put /interop/app/w/2 c >/dev/null
etcd_wait_for 10 grep -q '"/w/2"' "$T/watch" || fail "the watch saw etcdctl's puts"
kill "$watcher"
wait "$watcher" 2>/dev/null || true
watcher=""
check "etcdctl's changes, in order" \
	"created /w/1 1|updated /w/1 2|deleted /w/1 0|created /w/2 1" \
	"$(python3 -c '
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
evs = [e for e in evs if e["key"].startswith("/w/")]
revs = [e["revision"] for e in evs]
assert revs == sorted(revs), revs
print("|".join("%s %s %d" % (e["type"], e["key"], e["version"]) for e in evs))' "$T/watch")"

# Nothing outside PREFIX was read or written.
check "the neighbour beside PREFIX is untouched" "x 1" \
	"$(ectl get /interop/other --print-value-only) $(eversion /interop/other)"
check "a key sharing PREFIX's bytes is untouched" "y 1" \
	"$(ectl get /interop/appendix --print-value-only) $(eversion /interop/appendix)"
check "every etcd key is under PREFIX or was there" "" \
	"$(ectl get "" --prefix --keys-only | grep -v '^$' |
		grep -v -e '^/interop/app/' -e '^/interop/app//' \
			-e '^/interop/other$' -e '^/interop/appendix$' || true)"

exit "$_failed"
