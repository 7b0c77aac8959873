#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# This file tests the etcd backend under faults, one scenario per run
# (test_faults.sh SCENARIO), with etcd_faults as the client: this script
# owns the cluster and kills, stops, restarts and compacts when the
# client asks ("@ kill 1" on its stdout, "ok" back on its stdin).
#
#  failover  3 members; 4 threads write unique keys through a client whose
#            first endpoint is the leader, which is SIGKILLed, then started
#            again: every write acknowledged is in etcd with its value,
#            every write refused (-ENOTCONN, -ECONNREFUSED) is not, only
#            -ETIMEDOUT ones may be either; writes begun after the kill
#            and after the restart succeed (failover); no other errno; no
#            call outlasts request_timeout by more than 3 s.
#  watch     3 members; a watch of /w/* on a client whose stream uses the
#            leader, which is killed and restarted while another client
#            writes 300 sets and deletes: the watch gives exactly etcd's
#            own history of those keys (etcdctl watch --rev 1), in
#            revision order, each change once, every acknowledged write
#            with its type and version, within a bounded time.
#  lagging   3 members; a watch whose only endpoint is a follower, which is
#            killed; the others write and compact past the watch (at a
#            revision outside its prefix: only the notice tells it); the
#            follower comes back: the watch gives some of the 5 events its
#            ring had, in order, nothing after the gap, then -EOVERFLOW at
#            once (not at the end of its wait), again at the next call;
#            a watch from below the compaction is -ENODATA, from it is
#            woken by another client's write at once.
#  noquorum  3 members; two killed: writes (-ETIMEDOUT or -ENOTCONN), reads,
#            lists, the revision and a watch fail within request_timeout
#            (2 s) + 3 s; both back, the same handle writes at once; a
#            refused write was not applied.
#  hung      3 members; the first endpoint of a client, a follower, is
#            SIGSTOPped (connections are made, never answered): a read on
#            the open handle still succeeds within request_timeout + 3 s,
#            then a write; ustate_open() with it first succeeds, and its
#            handle reads and writes; a watch whose stream was on the
#            hung member moves on (its probe) and hears the write.
#  limits    1 member; a value of the library's max_value_size with the
#            longest key is taken, one byte more is -EFBIG; a transaction
#            of 42 SETs (what etcd.c says fits etcd's 128) is; raised limits
#            meet etcd's: a 2 MiB value -EFBIG, 200 SETs in a transaction
#            -E2BIG, each logged with the etcd flag; 127.0.0.1:1 is
#            -ECONNREFUSED at open; a PREFIX that is no key is -EINVAL;
#            etcd's keys and revision are unchanged by each.
#  auth      1 member, auth enabled: the user and password work, a wrong
#            password, no user and a user without a role are -EACCES at
#            open (logged with the endpoint); after a restart, which
#            forgets the token, the same handle works; the CLI's --user
#            and --password-file work, and etcdctl reads what it wrote.
#  cut       1 member behind tests/etcd/cutproxy.py, which passes a write
#            to etcd and then resets the client's connection before the
#            answer (a member dying just after it took the write): a set,
#            a cas, a create and a txn through the CLI each fail with the
#            message of -ETIMEDOUT (outcome unknown) and are in etcd once
#            (version 1), whether the proxy takes the next connection or
#            refuses it and the client fails over to the member itself;
#            a read cut so is sent again and answers.
#  replica   3 members; stores that read a replica (consistency
#            linearizable on every endpoint; local on a follower F only,
#            in a file): each write is read at once linearizably (also
#            while another PREFIX is written in between), the local one
#            reads its own writes at once and another's within 5 s; with F
#            hung, the local replica reads on and a linearizable one on F
#            refuses; the file is resumed at the next open and catches
#            up; compacted past while F was down, it is loaded again;
#            the file opened on a new cluster (same PREFIX) is loaded
#            again, with the new cluster's keys only.
#  tls       1 member on https with a throwaway CA: etcds:// with the CA
#            works; without it, or with another CA, open is -EACCES; then
#            a member that requires client certificates: tls_cert and
#            tls_key work, open without them is -EACCES (the member's
#            TLS alert, which libcurl reports as a failed receive), and so
#            is the CLI's with a certificate of another CA.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${ETCD_FAULTS:?ETCD_FAULTS must name the etcd_faults binary}"
: "${USTATE_CLI:?USTATE_CLI must name the ustate binary}"
scenario=${1:?usage: test_faults.sh SCENARIO}
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

T=$(mktemp -d "${TMPDIR:-/tmp}/ustate-etcd-faults.XXXXXX")
drv=""
trap 'rc=$?; set +e; [ -n "$drv" ] && kill "$drv" 2>/dev/null &&
	wait "$drv" 2>/dev/null; etcd_cleanup; rm -rf "$T";
	[ $rc = 0 ] && rc=$_failed; exit $rc' EXIT

# What "@ mark" saved and "@ same" compares: every key with its value and
# mod revision, and the cluster's revision.
etcd_state() {
	etcd_ctl get "" --prefix -w json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["header"]["revision"])
for kv in r.get("kvs", []):
    print(kv["key"], kv.get("value", ""), kv["mod_revision"])'
}

# Do what the client asked; the exit status is the answer.
serve() {
	case $1 in
	kill) etcd_member_kill "$2" ;;
	stop) etcd_member_stop "$2" ;;
	start) etcd_member_start "$2" ;;
	pause) etcd_member_pause "$2" ;;
	resume) etcd_member_resume "$2" ;;
	compact) etcd_ctl compact "$2" >/dev/null ;;
	put) etcd_ctl put "$2" "$3" >/dev/null ;;
	mark) etcd_state >"$T/mark" ;;
	same)
		etcd_state >"$T/now"
		cmp -s "$T/mark" "$T/now" ||
			{ diff "$T/mark" "$T/now" | head -5 >&2; false; }
		;;
	*) false ;;
	esac
}

# drive ARGS...: run etcd_faults ARGS, answering its requests (100 at
# most, each within 120 s); returns its exit status.
drive() {
	local line rc=0 n=0 rq rp
	rm -f "$T/req" "$T/rep"
	mkfifo "$T/req" "$T/rep"
	"$ETCD_FAULTS" "$@" >"$T/req" <"$T/rep" &
	drv=$!
	exec {rq}<"$T/req" {rp}>"$T/rep"
	while ((n++ < 100)); do
		rc=0
		IFS= read -r -t 120 line <&"$rq" || rc=$?
		if [ "$rc" -gt 128 ]; then
			fail "etcd_faults asked nothing for 120 s"
			kill "$drv" 2>/dev/null || true
			break
		fi
		[ "$rc" = 0 ] || break # it closed stdout: it is done
		[ "${line:0:2}" = "@ " ] || continue
		echo "# ${line:2}" >&2
		# shellcheck disable=SC2086 # the request's words
		if serve ${line:2}; then echo ok >&"$rp"; else echo fail >&"$rp"; fi
	done
	exec {rq}<&- {rp}>&-
	rc=0
	wait "$drv" || rc=$?
	drv=""
	return "$rc"
}

# The index of a member that is not $1 (nor $2).
other() {
	local i
	for i in 0 1 2; do
		[ "$i" != "$1" ] && [ "$i" != "${2:-}" ] && echo "$i" && return
	done
}

# A SOURCE of members $@, in that order.
source_of() {
	local prefix=$1 list="" i
	shift
	for i in "$@"; do list+=${list:+,}${ETCD_MEMBER_ENDPOINT[$i]}; done
	echo "etcd://$list$prefix"
}

case $scenario in
failover)
	etcd_cluster_start 3
	L=$(etcd_leader)
	A=$(other "$L") B=$(other "$L" "$A")
	drive failover "$(source_of /fo "$L" "$A" "$B")" "$L" "$T/outcomes" ||
		fail "the client's checks (above)"
	etcd_ctl get /fo/f/ --prefix -w json >"$T/etcd.json"
	python3 - "$T/outcomes" "$T/etcd.json" <<'EOF' || fail "acknowledged writes are in etcd, refused ones are not"
import base64, errno, json, sys
d = lambda s: base64.b64decode(s).decode()
kvs = {d(kv["key"]): d(kv.get("value", "")) for kv in json.load(open(sys.argv[2])).get("kvs", [])}
# Each key is set once: a version above 1 is a write applied twice.
vers = {d(kv["key"]): int(kv["version"]) for kv in json.load(open(sys.argv[2])).get("kvs", [])}
twice = sum(1 for v in vers.values() if v != 1)
lost = wrong = ghost = unknown_in = unknown_out = n = 0
for line in open(sys.argv[1]):
    key, val, rc = line.split()
    rc, ek = int(rc), "/fo" + key
    n += 1
    if rc == 0:
        if ek not in kvs:
            lost += 1
        elif kvs[ek] != val:
            wrong += 1
    elif rc == -errno.ETIMEDOUT:
        if ek in kvs:
            unknown_in += 1
        else:
            unknown_out += 1
    elif ek in kvs:
        ghost += 1
print("# %d writes; -ETIMEDOUT: %d applied, %d not" % (n, unknown_in, unknown_out), file=sys.stderr)
print("# lost %d, wrong value %d, refused but written %d, applied twice %d" % (lost, wrong, ghost, twice), file=sys.stderr)
sys.exit(1 if lost or wrong or ghost or twice or n == 0 else 0)
EOF
	;;
watch)
	etcd_cluster_start 3
	L=$(etcd_leader)
	A=$(other "$L") B=$(other "$L" "$A")
	drive watch "$(source_of /fw "$L" "$A" "$B")" \
		"$(source_of /fw "$A" "$B" "$L")" "$L" "$T/events" ||
		fail "the client's checks (above)"
	# etcd's own history of the store's keys, from revision 1.
	timeout 3 etcdctl --endpoints="$ETCD_ENDPOINTS" watch --prefix \
		--rev=1 /fw/w/ -w json >"$T/history.json" 2>/dev/null || true
	python3 - "$T/events" "$T/history.json" <<'EOF' || fail "the watch gave etcd's history exactly"
import base64, json, sys
got = [tuple(l.split()) for l in open(sys.argv[1]) if l.strip()]
got = [(int(r), int(t), k, int(v)) for r, t, k, v in got]
if not got:
    sys.exit("no events")
end = got[-1][0]
want = []
dec = json.JSONDecoder()
text, pos = open(sys.argv[2]).read(), 0
while True:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        break
    msg, pos = dec.raw_decode(text, pos)
    for ev in msg.get("Events") or []:
        kv = ev["kv"]
        rev = int(kv["mod_revision"])
        if rev > end:
            continue
        key = base64.b64decode(kv["key"]).decode()[len("/fw"):]
        if ev.get("type", 0) in (1, "DELETE"):
            want.append((rev, 3, key, 0))
        else:
            v = int(kv["version"])
            want.append((rev, 1 if v == 1 else 2, key, v))
print("# %d events, etcd's history has %d up to revision %d" % (len(got), len(want), end), file=sys.stderr)
for i, (a, b) in enumerate(zip(got, want)):
    if a != b:
        sys.exit("first difference at event %d: got %s, etcd has %s" % (i, a, b))
sys.exit(0 if got == want else "the lengths differ")
EOF
	;;
lagging)
	etcd_cluster_start 3
	L=$(etcd_leader)
	F=$(other "$L")
	O=$(other "$F" "$L")
	drive lagging "$(source_of /fl "$F")" "$(source_of /fl "$L" "$O")" \
		"$F" || fail "the client's checks (above)"
	;;
noquorum)
	etcd_cluster_start 3
	L=$(etcd_leader)
	A=$(other "$L") B=$(other "$L" "$A")
	drive noquorum "$(source_of /nq "$L" "$A" "$B")" "$A" "$B" ||
		fail "the client's checks (above)"
	;;
hung)
	etcd_cluster_start 3
	L=$(etcd_leader)
	F=$(other "$L") O=$(other "$L" "$F")
	drive hung "$(source_of /hu "$F" "$L" "$O")" "$F" ||
		fail "the client's checks (above)"
	;;
limits)
	etcd_cluster_start 1
	etcd_ctl put /beside x >/dev/null
	drive limits "${ETCD_MEMBER_ENDPOINT[0]}" ||
		fail "the client's checks (above)"
	check "the key beside PREFIX is untouched" x \
		"$(etcd_ctl get /beside --print-value-only)"
	;;
auth)
	etcd_cluster_start 1
	EP=${ETCD_MEMBER_ENDPOINT[0]}
	etcd_ctl user add root:rootpw >/dev/null
	etcd_ctl user add nobody:nobodypw >/dev/null
	etcd_ctl auth enable >/dev/null 2>&1 # it warns, then grants root its role
	# etcdctl's own variable: every etcdctl of lib.sh now logs in.
	export ETCDCTL_USER=root:rootpw
	drive auth "$EP" root rootpw || fail "the client's checks (above)"
	check "etcdctl reads what the client wrote" 2 \
		"$(etcd_ctl get /auth/b --print-value-only)"
	rc=0
	env -u ETCDCTL_USER etcdctl --endpoints="$EP" --dial-timeout=1s \
		--command-timeout=2s get /auth/b >/dev/null 2>&1 || rc=$?
	check "etcdctl without the user is refused" 1 "$rc"
	printf 'rootpw\n' >"$T/pw"
	chmod 600 "$T/pw"
	u() {
		timeout 20 "$USTATE_CLI" -d "etcd://$EP/auth" --user root \
			--password-file "$T/pw" "$@"
	}
	check "the CLI writes with --user, --password-file" 1 \
		"$(u set /cli hello)"
	check "etcdctl reads it" hello \
		"$(etcd_ctl get /auth/cli --print-value-only)"
	check "the CLI reads it back" hello "$(u get /cli)"
	printf 'wrong\n' >"$T/pw"
	rc=0
	u get /cli >/dev/null 2>"$T/cli.err" || rc=$?
	check "the CLI with a wrong password fails" 1 "$rc"
	grep -q "$EP" "$T/cli.err" ||
		fail "its message names the endpoint: $(cat "$T/cli.err")"
	;;
replica)
	etcd_cluster_start 3
	L=$(etcd_leader)
	F=$(other "$L") O=$(other "$L" "$F")
	drive replica "$(source_of /rp "$L" "$F" "$O")" "$(source_of /rp "$F")" \
		"$F" "$T/replica.db" "$(source_of /other "$L" "$F" "$O")" ||
		fail "the client's checks (above)"
	# The same file on a new cluster (same PREFIX): loaded again.
	etcd_cluster_stop
	etcd_cluster_start 1
	etcd_ctl put /rp/fresh new >/dev/null
	drive replica-moved "$(source_of /rp 0)" "$T/replica.db" ||
		fail "the client's checks of the moved replica (above)"
	;;
cut)
	etcd_cluster_start 1
	EP=${ETCD_MEMBER_ENDPOINT[0]}
	# version KEY: etcd's version of /cu/KEY (0: missing).
	version() {
		etcd_ctl get "/cu$1" -w json | python3 -c '
import json, sys
kvs = json.load(sys.stdin).get("kvs", [])
print(kvs[0].get("version", 0) if kvs else 0)'
	}
	# through WHAT MODE KEY CMD...: run `ustate CMD...` through a new
	# proxy (MODE: "" or --refuse) that cuts the request after the open's
	# check; it must fail as a write of unknown outcome, applied once.
	through() {
		local what=$1 mode=$2 key=$3 src rc=0 pport got
		shift 3
		coproc PROXY { exec python3 "$here/cutproxy.py" $mode "${EP##*:}"; }
		read -r pport <&"${PROXY[0]}"
		src=etcd://127.0.0.1:$pport/cu
		[ -z "$mode" ] || src=etcd://127.0.0.1:$pport,$EP/cu
		timeout 20 "$USTATE_CLI" -d "$src" "$@" >"$T/out" 2>"$T/err" ||
			rc=$?
		exec {PROXY[1]}>&-
		wait "$PROXY_PID" 2>/dev/null || true
		got="rc $rc: $(cat "$T/out" "$T/err")"
		[ "$rc" = 0 ] ||
			! grep -q "may or may not have been applied" "$T/err" ||
			got=unknown
		check "$what ${mode:+(failing over) }fails as unknown" unknown \
			"$got"
		check "... and is in etcd once" 1 "$(version "$key")"
	}
	through "a set cut after etcd took it" "" /a set /a 1
	through "a set" --refuse /b set /b 1
	through "a cas" "" /c cas /c 0 1
	through "a cas" --refuse /d cas /d 0 1
	through "a create" "" /e create /e 1
	printf 'set /f 1\n1\nset /g 1\n1\ncommit\n' >"$T/script"
	through "a txn" --refuse /f txn <"$T/script"
	check "... its other key is in etcd once" 1 "$(version /g)"
	coproc PROXY { exec python3 "$here/cutproxy.py" "${EP##*:}"; }
	read -r pport <&"${PROXY[0]}"
	check "a read cut is sent again" 1 \
		"$(timeout 20 "$USTATE_CLI" -d "etcd://127.0.0.1:$pport/cu" get /a)"
	read -r what <&"${PROXY[0]}"
	check "... it was cut" cut "$what"
	exec {PROXY[1]}>&-
	wait "$PROXY_PID" 2>/dev/null || true
	;;
tls)
	if ! command -v openssl >/dev/null; then
		echo "SKIP: openssl missing (scripts/deps installs it)"
		exit 77
	fi
	# A throwaway CA, a server certificate for 127.0.0.1 signed by it,
	# and another CA that signed nothing.
	cd "$T"
	for ca in ca other; do
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
			-keyout $ca.key -out $ca.pem -subj "/CN=ustate test $ca" \
			2>/dev/null
	done
	openssl req -newkey rsa:2048 -nodes -keyout server.key \
		-out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1\n' >ext
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
		-CAcreateserial -days 2 -extfile ext -out server.pem 2>/dev/null
	cd - >/dev/null
	ETCD_TLS_CERT=$T/server.pem ETCD_TLS_KEY=$T/server.key
	ETCD_TLS_CA=$T/ca.pem
	etcd_cluster_start 1
	EP=${ETCD_MEMBER_ENDPOINT[0]}
	drive tls "$EP" "$T/ca.pem" "$T/other.pem" ||
		fail "the client's checks (above)"
	check "etcdctl reads over TLS what the client wrote" secret \
		"$(etcd_ctl get /tls/a --print-value-only)"
	check "the CLI with --tls-ca" secret \
		"$(timeout 20 "$USTATE_CLI" -d "etcds://$EP/tls" \
			--tls-ca "$T/ca.pem" get /a)"

	# Again, with client certificates required.
	etcd_cluster_stop
	openssl req -newkey rsa:2048 -nodes -keyout "$T/client.key" \
		-out "$T/client.csr" -subj "/CN=ustate test client" 2>/dev/null
	openssl x509 -req -in "$T/client.csr" -CA "$T/ca.pem" \
		-CAkey "$T/ca.key" -CAcreateserial -days 2 \
		-out "$T/client.pem" 2>/dev/null
	ETCD_TLS_CLIENT_CERT=$T/client.pem ETCD_TLS_CLIENT_KEY=$T/client.key
	etcd_cluster_start 1
	EP=${ETCD_MEMBER_ENDPOINT[0]}
	drive tls-client "$EP" "$T/ca.pem" "$T/client.pem" "$T/client.key" ||
		fail "the client's checks (above)"
	check "the CLI with --tls-cert, --tls-key" cert \
		"$(timeout 20 "$USTATE_CLI" -d "etcds://$EP/tls" \
			--tls-ca "$T/ca.pem" --tls-cert "$T/client.pem" \
			--tls-key "$T/client.key" get /c)"
	# A certificate of another CA: refused by the member, -EACCES.
	openssl req -newkey rsa:2048 -nodes -keyout "$T/rogue.key" \
		-out "$T/rogue.csr" -subj "/CN=ustate test rogue" 2>/dev/null
	openssl x509 -req -in "$T/rogue.csr" -CA "$T/other.pem" \
		-CAkey "$T/other.key" -CAcreateserial -days 2 \
		-out "$T/rogue.pem" 2>/dev/null
	rc=0
	timeout 20 "$USTATE_CLI" -d "etcds://$EP/tls" --tls-ca "$T/ca.pem" \
		--tls-cert "$T/rogue.pem" --tls-key "$T/rogue.key" get /c \
		>"$T/rogue.out" 2>&1 || rc=$?
	check "the CLI with a certificate of another CA fails" 1 "$rc"
	n=$(grep -c "refused the credentials" "$T/rogue.out" || true)
	check "... saying the credentials were refused" 1 "$n"
	[ "$n" = 1 ] || sed "s/^/# /" "$T/rogue.out" >&2
	;;
*)
	echo "test_faults.sh: no scenario $scenario" >&2
	exit 2
	;;
esac
exit "$_failed"
