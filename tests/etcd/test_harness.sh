#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# This file tests the etcd harness (lib.sh, with-etcd.sh) that the etcd
# backend's tests stand on: a three-member cluster serves every member,
# survives the loss of its leader (a put on a survivor succeeds within a
# bounded time, a new leader is elected), takes the killed member back
# (it catches up, seen by a serializable read of its own), keeps etcd's
# default request limits, and leaves no process and no directory behind;
# a test that fails, is killed with SIGTERM or cleans up through
# tests/integration/lib.sh's at_exit still removes its cluster, and its
# own EXIT trap still runs; a start that meets a taken port tries new
# ones; with-etcd.sh hands CMD a working endpoint and passes CMD's exit
# status (77 included) through.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

_failed=0
fail() {
	echo "not ok: $*" >&2
	_failed=1
}
# check DESCRIPTION EXPECTED ACTUAL
check() {
	if [ "$2" == "$3" ]; then
		echo "ok: $1"
	else
		fail "$1: expected [${2:0:300}], got [${3:0:300}]"
	fi
}

# Whether no process has a data directory under $1.
no_etcd_under() { ! pgrep -f -- "--data-dir $1/" >/dev/null; }
gone() { [ ! -e "/proc/$1" ]; }

S=$(mktemp -d "${TMPDIR:-/tmp}/ustate-etcd-harness.XXXXXX")
# Ours, set after lib.sh's: it must call etcd_cleanup itself.
trap 'rc=$?; set +e; etcd_cleanup; rm -rf "$S"; exit $rc' EXIT

# -- a failing test cleans up, and its own EXIT trap still runs --
rc=0
bash -c '
	trap "echo \"own trap saw \$?\" > \"$1/trap\"" EXIT
	source "$2/lib.sh"
	etcd_cluster_start 1 || exit 9
	echo "$ETCD_DIR ${ETCD_MEMBER_PID[0]}" > "$1/fail.info"
	etcdctl --endpoints="$ETCD_ENDPOINTS" put /k v >/dev/null || exit 9
	exit 7
' child "$S" "$here" || rc=$?
check "a failing test exits with its status" 7 "$rc"
check "its own EXIT trap ran, with that status" "own trap saw 7" \
	"$(cat "$S/trap" 2>/dev/null)"
read -r dir pid < "$S/fail.info" || true
check "its member is gone" yes "$(gone "${pid:-0}" && echo yes)"
check "its directory is gone" no "$([ -e "${dir:-/nonexistent}" ] &&
	echo yes || echo no)"

# -- so does a test killed by SIGTERM (meson's timeout) --
rc=0
bash -c '
	source "$2/lib.sh"
	etcd_cluster_start 1 || exit 9
	echo "$ETCD_DIR ${ETCD_MEMBER_PID[0]}" > "$1/term.info"
	kill -TERM $$
	sleep 5
	exit 9
' child "$S" "$here" || rc=$?
check "a test killed by SIGTERM exits with 143" 143 "$rc"
read -r dir pid < "$S/term.info" || true
check "its member is gone" yes "$(gone "${pid:-0}" && echo yes)"
check "its directory is gone" no "$([ -e "${dir:-/nonexistent}" ] &&
	echo yes || echo no)"

# -- with tests/integration/lib.sh's at_exit (as it defines it), the
# cluster goes through that chain --
rc=0
bash -c '
	_cleanup=()
	at_exit() { _cleanup=("$*" "${_cleanup[@]}"); }
	trap '\''for c in "${_cleanup[@]}"; do eval "$c"; done'\'' EXIT
	source "$2/lib.sh"
	[ "${_cleanup[0]:-}" = etcd_cleanup ] || exit 8
	etcd_cluster_start 1 || exit 9
	echo "$ETCD_DIR ${ETCD_MEMBER_PID[0]}" > "$1/at_exit.info"
	exit 5
' child "$S" "$here" || rc=$?
check "a test using at_exit exits with its status" 5 "$rc"
read -r dir pid < "$S/at_exit.info" || true
check "its member is gone" yes "$(gone "${pid:-0}" && echo yes)"
check "its directory is gone" no "$([ -e "${dir:-/nonexistent}" ] &&
	echo yes || echo no)"

# -- a port taken before etcd binds it: the start retries, new ports --
cat > "$S/clash.sh" <<'EOF'
source "$2/lib.sh"
python3 -c 'import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)' > "$1/busy" &
holder=$!
trap 'etcd_cleanup; kill $holder' EXIT # replaces lib.sh's handler
etcd_wait_for 5 test -s "$1/busy" || exit 9
busy=$(cat "$1/busy")
# The first choice of ports hands member 0 the taken one as its client port.
eval "_real_free_ports() $(declare -f _etcd_free_ports | tail -n +2)"
_etcd_free_ports() {
	local p
	read -r -a p <<<"$(_real_free_ports "$1")"
	if mkdir "$S_DIR/clashed" 2>/dev/null; then p[0]=$busy; fi
	echo "${p[*]}"
}
S_DIR=$1
etcd_cluster_start 1 2> "$1/clash.err" || exit 9
[ "${ETCD_MEMBER_ENDPOINT[0]}" != "127.0.0.1:$busy" ] || exit 8
etcdctl --endpoints="$ETCD_ENDPOINTS" put /k v >/dev/null || exit 7
EOF
rc=0
bash "$S/clash.sh" "$S" "$here" || rc=$?
check "a start that meets a taken port succeeds on new ports" 0 "$rc"
check "... after saying why" "a port was taken" \
	"$(grep -o 'a port was taken' "$S/clash.err" 2>/dev/null)"
check "... and the first choice was the taken port" yes \
	"$([ -d "$S/clashed" ] && echo yes)"

# -- with-etcd.sh: a working endpoint, the status passed through --
rc=0
"$here/with-etcd.sh" bash -c '
	echo "$USTATE_TEST_ETCD" > "$1/with.ep"
	etcdctl --endpoints="$USTATE_TEST_ETCD" put /w hello >/dev/null &&
	etcdctl --endpoints="$USTATE_TEST_ETCD" get --print-value-only /w \
		> "$1/with.val"
	exit 77
' child "$S" || rc=$?
check "with-etcd.sh passes 77 through" 77 "$rc"
ep=$(cat "$S/with.ep" 2>/dev/null || true)
check "USTATE_TEST_ETCD is a loopback endpoint" yes \
	"$([[ "$ep" =~ ^127\.0\.0\.1:[0-9]+$ ]] && echo yes)"
check "CMD could put and get there" hello "$(cat "$S/with.val" 2>/dev/null)"
check "the endpoint is closed after CMD" no \
	"$(etcdctl --dial-timeout=1s --command-timeout=1s --endpoints="$ep" \
		get /w >/dev/null 2>&1 && echo yes || echo no)"
rc=0
"$here/with-etcd.sh" false || rc=$?
check "with-etcd.sh passes a failure through" 1 "$rc"

# -- a three-member cluster --
etcd_cluster_start 3
dir=$ETCD_DIR
pids=("${ETCD_MEMBER_PID[@]}")
check "three members" 3 "${#ETCD_MEMBER_ENDPOINT[@]}"
check "ETCD_ENDPOINTS lists them" "$(IFS=,; echo "${ETCD_MEMBER_ENDPOINT[*]}")" \
	"$ETCD_ENDPOINTS"
check "ETCD_ENDPOINTS is exported" "$ETCD_ENDPOINTS" \
	"$(bash -c 'echo "$ETCD_ENDPOINTS"')"
check "three distinct loopback client endpoints" 3 \
	"$(printf '%s\n' "${ETCD_MEMBER_ENDPOINT[@]}" |
		grep -E '^127\.0\.0\.1:[0-9]+$' | sort -u | wc -l)"
check "each member logs in the cluster's directory" 3 \
	"$(ls "$dir"/m*.log | wc -l)"

# Each member takes a write; every member serves every write.
for i in 0 1 2; do
	check "put via member $i" OK "$(etcd_member_ctl "$i" put "/h/m$i" "v$i")"
done
for i in 0 1 2; do
	check "member $i reads all three" "v0 v1 v2" \
		"$(etcd_member_ctl "$i" get --prefix /h/m --print-value-only |
			xargs)"
done

# The leader: the members name the same one, and it names itself.
leader=$(etcd_leader) || leader=""
check "the members agree on a leader" yes \
	"$([[ "$leader" =~ ^[0-2]$ ]] && echo yes)"
leader=${leader:-0}
check "the leader says it leads" yes "$(etcd_member_ctl "$leader" endpoint \
	status -w json | python3 -c '
import json, sys
st = json.load(sys.stdin)[0]["Status"]
print("yes" if st["leader"] == st["header"]["member_id"] else "no")')"
s1=$(((leader + 1) % 3)) s2=$(((leader + 2) % 3))

# Kill the leader: a put on a survivor succeeds within 10 s.
etcd_member_kill "$leader"
check "the killed leader's process is gone" yes \
	"$(gone "${pids[$leader]}" && echo yes)"
check "the killed leader does not answer" no \
	"$(etcd_member_ctl "$leader" get /h/m0 >/dev/null 2>&1 && echo yes ||
		echo no)"
t0=${EPOCHREALTIME//[!0-9]/}
if etcd_wait_for 10 etcd_member_ctl "$s1" put /h/after kill >/dev/null; then
	echo "ok: put on survivor $s1 after $(((${EPOCHREALTIME//[!0-9]/} - t0) / 1000)) ms"
else
	fail "no put on survivor $s1 within 10 s of the leader's death"
fi
check "the other survivor reads it" kill \
	"$(etcd_member_ctl "$s2" get --print-value-only /h/after)"
new=$(etcd_leader) || new=""
check "a survivor leads now" yes \
	"$([ "$new" = "$s1" ] || [ "$new" = "$s2" ] && echo yes)"

# Restart it: it catches up on what was written without it.
if etcd_member_start "$leader"; then
	echo "ok: member $leader restarted"
else
	fail "member $leader did not come back"
fi
check "it runs a new process" yes \
	"$([ "${ETCD_MEMBER_PID[$leader]}" != "${pids[$leader]}" ] &&
		_etcd_alive "$leader" && echo yes)"
caught_up() {
	[ "$(etcd_member_ctl "$leader" get --consistency=s \
		--print-value-only /h/after)" = kill ]
}
if etcd_wait_for 10 caught_up; then
	echo "ok: member $leader caught up (serializable read of its own)"
else
	fail "member $leader has not caught up after 10 s"
fi

# A follower stopped with SIGTERM: two of three still write.
etcd_member_stop "$s2"
check "the stopped member's process is gone" yes \
	"$(gone "${pids[$s2]}" && echo yes)"
check "two of three still write" OK "$(etcd_ctl put /h/two yes)"
etcd_member_start "$s2" || fail "member $s2 did not come back"
if etcd_wait_for 10 eval '[ "$(etcd_member_ctl '"$s2"' get \
	--consistency=s --print-value-only /h/two)" = yes ]'; then
	echo "ok: member $s2 caught up"
else
	fail "member $s2 has not caught up after 10 s"
fi

# etcd's default limits hold: 128 operations in a txn, 1.5 MiB a request.
txn_of() {
	local i
	echo
	for ((i = 0; i < $1; i++)); do echo "put /h/t$i x"; done
	echo
	echo
}
check "a txn of 128 puts is applied" SUCCESS \
	"$(txn_of 128 | etcd_ctl txn 2>&1 | head -1)"
check "a txn of 129 puts is refused" "too many operations in txn request" \
	"$(txn_of 129 | etcd_ctl txn 2>&1 |
		grep -o -m1 'too many operations in txn request' | head -1)"
check "... and nothing of it is applied (/h/t128 is only in it)" "" \
	"$(etcd_ctl get --keys-only /h/t128)"
head -c $((1400 * 1024)) /dev/zero | tr '\0' a > "$S/big"
check "a 1.4 MiB put is applied" OK "$(etcd_ctl put /h/big < "$S/big" 2>&1)"
head -c $((1600 * 1024)) /dev/zero | tr '\0' b > "$S/big"
check "a 1.6 MiB put is refused" "request is too large" \
	"$(etcd_ctl put /h/big < "$S/big" 2>&1 |
		grep -o -m1 'request is too large' | head -1)"
check "... and the 1.4 MiB value stays" $((1400 * 1024)) \
	"$(etcd_ctl get --print-value-only /h/big | tr -d '\n' | wc -c)"

# Stop: no process of the cluster, no directory.
pids=("${ETCD_MEMBER_PID[@]}")
etcd_cluster_stop
check "no etcd process of the test remains" yes \
	"$(no_etcd_under "$dir" && echo yes)"
for i in 0 1 2; do
	check "member $i's last process is gone" yes \
		"$(gone "${pids[$i]}" && echo yes)"
done
check "the cluster's directory is gone" no \
	"$([ -e "$dir" ] && echo yes || echo no)"
check "ETCD_DIR is cleared" "" "$ETCD_DIR"

if [ "$_failed" -ne 0 ]; then
	echo "FAILED: $(basename "$0")" >&2
	exit 1
fi
echo "PASSED: $(basename "$0")"
