# SPDX-License-Identifier: MIT
# Shared helpers of the etcd tests: start a 1- or 3-member etcd cluster on
# free loopback ports, each member with its own data directory and log
# under one temporary directory; kill, stop and restart members; and tear
# it all down at exit, even when the test fails. Source it from bash:
#
#   etcd_cluster_start N     N = 1 or 3; sets ETCD_DIR, ETCD_ENDPOINTS
#                            ("127.0.0.1:P1,127.0.0.1:P2,..." exported),
#                            ETCD_MEMBER_ENDPOINT[i] and ETCD_MEMBER_PID[i]
#                            (members are numbered from 0)
#   etcd_member_kill I       SIGKILL member I and reap it
#   etcd_member_stop I       SIGTERM member I, wait for it (SIGKILL after 10 s)
#   etcd_member_start I      restart member I on its data dir and ports,
#                            wait until it is healthy
#   etcd_member_pause I      SIGSTOP member I: it hangs, its sockets stay
#                            open (a cleanup or kill resumes it first)
#   etcd_member_resume I     SIGCONT member I
#   etcd_cluster_stop        stop every member (SIGKILL after 1 s), remove
#                            ETCD_DIR
#   etcd_cleanup             the same, for a caller's own EXIT trap
#   etcd_ctl ARGS...         etcdctl on all endpoints, with short timeouts
#   etcd_member_ctl I ARGS.. etcdctl on member I only
#   etcd_leader              print the index of the leader (fails if none)
#   etcd_wait_for SECS CMD.. poll CMD until it succeeds, at most SECS
#
# ETCD_LISTEN_ALSO (a plain shell variable, set before etcd_cluster_start):
# more addresses where each member serves clients on its client port, such
# as the host end of a test namespace's veth pair.
#
# TLS: set ETCD_TLS_CERT and ETCD_TLS_KEY (a server certificate for
# 127.0.0.1 and its key) and ETCD_TLS_CA (its CA) before
# etcd_cluster_start, and the members serve clients over https only (the
# peers keep http), and etcd_ctl trusts that CA (etcd_leader does not
# speak TLS). With ETCD_TLS_CLIENT_CERT and ETCD_TLS_CLIENT_KEY set too
# (signed by that CA), members take only clients with a certificate of
# that CA (--client-cert-auth), and etcd_ctl shows that one. Plain shell
# variables: do not export them (etcd would read ETCD_* of its
# environment).
#
# Cleanup at exit: when tests/integration/lib.sh's at_exit is defined, the
# cluster is stopped through it (newest first, with the mounts); otherwise
# this file chains its own handler in front of any EXIT trap already set.
# A caller that sets its EXIT trap after sourcing this file replaces ours
# and must call etcd_cleanup from it. Call etcd_cluster_start from the
# shell itself, not from $(...): the member processes are its children.
# Only loopback is ever addressed; etcd's default request limits (128
# operations in a txn, 1.5 MiB per request) are kept, since tests check
# them; automatic compaction is off, elections are fast.

export ETCDCTL_API=3

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null ||
	! command -v python3 >/dev/null; then
	echo "SKIP: etcd, etcdctl or python3 missing (scripts/deps installs them)"
	exit 77
fi

ETCD_DIR=""
ETCD_ENDPOINTS=""
# Addresses, besides 127.0.0.1, where members also serve clients on their
# client port (a test's network namespaces reach them so); plain http.
ETCD_LISTEN_ALSO=${ETCD_LISTEN_ALSO:-}
ETCD_TLS_CERT=${ETCD_TLS_CERT:-}
ETCD_TLS_KEY=${ETCD_TLS_KEY:-}
ETCD_TLS_CA=${ETCD_TLS_CA:-}
ETCD_TLS_CLIENT_CERT=${ETCD_TLS_CLIENT_CERT:-}
ETCD_TLS_CLIENT_KEY=${ETCD_TLS_CLIENT_KEY:-}
ETCD_MEMBER_ENDPOINT=()
ETCD_MEMBER_PID=()
_etcd_peer=()	     # member index -> peer URL
_etcd_cluster=""     # the --initial-cluster value
_etcd_n=0

# Poll a command for up to $1 seconds (at most 20 tries a second, and no
# try starts after the deadline).
etcd_wait_for() {
	local secs=$1 i deadline
	shift
	deadline=$((${EPOCHREALTIME//[!0-9]/} + secs * 1000000))
	for ((i = 0; i < secs * 20 + 1; i++)); do
		if "$@" 2>/dev/null; then return 0; fi
		[ "${EPOCHREALTIME//[!0-9]/}" -lt "$deadline" ] || return 1
		sleep 0.05
	done
	return 1
}

# etcdctl with bounded waits: nothing in a test may hang on a dead member.
_etcdctl() {
	etcdctl --dial-timeout=1s --command-timeout=2s \
		${ETCD_TLS_CA:+--cacert="$ETCD_TLS_CA"} \
		${ETCD_TLS_CLIENT_CERT:+--cert="$ETCD_TLS_CLIENT_CERT"} \
		${ETCD_TLS_CLIENT_KEY:+--key="$ETCD_TLS_CLIENT_KEY"} "$@"
}
etcd_ctl() { _etcdctl --endpoints="$ETCD_ENDPOINTS" "$@"; }
etcd_member_ctl() {
	local i=$1
	shift
	_etcdctl --endpoints="${ETCD_MEMBER_ENDPOINT[$i]}" "$@"
}

# Print N*2 distinct free loopback ports. All sockets stay bound until all
# are chosen, so no two are alike; another process may still take one
# before etcd binds it, which etcd_cluster_start detects and retries.
_etcd_free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(2 * int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Whether member I's process is running (not gone, not a zombie).
_etcd_alive() {
	local pid=${ETCD_MEMBER_PID[$1]:-}
	[ -n "$pid" ] && [ -e "/proc/$pid" ] &&
		! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null
}

# Start member I's process in the background, its output appended to
# its log. Inherited ETCD_* variables are dropped: etcd reads them as
# flags, and ETCD_ENDPOINTS is ours.
_etcd_spawn() {
	local i=$1 client=http://${ETCD_MEMBER_ENDPOINT[$1]} tls=() extra=""
	local port=${ETCD_MEMBER_ENDPOINT[$1]##*:} h
	for h in $ETCD_LISTEN_ALSO; do
		extra+=",http://$h:$port"
	done
	if [ -n "$ETCD_TLS_CERT" ]; then
		client=https://${ETCD_MEMBER_ENDPOINT[$1]}
		tls=(--cert-file "$ETCD_TLS_CERT" --key-file "$ETCD_TLS_KEY")
		[ -z "$ETCD_TLS_CLIENT_CERT" ] ||
			tls+=(--client-cert-auth --trusted-ca-file "$ETCD_TLS_CA")
	fi
	(
		for v in $(compgen -e ETCD_); do unset "$v"; done
		exec etcd --name "m$i" --data-dir "$ETCD_DIR/m$i" "${tls[@]}" \
			--listen-client-urls "$client$extra" \
			--advertise-client-urls "$client" \
			--listen-peer-urls "${_etcd_peer[$i]}" \
			--initial-advertise-peer-urls "${_etcd_peer[$i]}" \
			--initial-cluster "$_etcd_cluster" \
			--initial-cluster-state new \
			--initial-cluster-token "ustate-test-${ETCD_DIR##*.}" \
			--heartbeat-interval 50 --election-timeout 500 \
			--auto-compaction-retention 0 \
			--logger zap
	) >>"$ETCD_DIR/m$i.log" 2>&1 &
	ETCD_MEMBER_PID[i]=$!
}

# Wait (bounded) for member I to exit after a signal; SIGKILL it after
# $2 seconds. Reaps it: members are children of this shell.
_etcd_reap() {
	local i=$1 secs=$2 pid=${ETCD_MEMBER_PID[$1]:-}
	[ -n "$pid" ] || return 0
	etcd_wait_for "$secs" eval '! _etcd_alive '"$i" ||
		kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	ETCD_MEMBER_PID[i]=""
	return 0
}

# Whether every member answers endpoint health (a committed proposal).
_etcd_all_healthy() {
	local i
	for ((i = 0; i < _etcd_n; i++)); do
		_etcd_alive "$i" || return 1
	done
	_etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint health >/dev/null 2>&1
}

# Whether a member died because its port was taken (the only failure
# worth another try with new ports).
_etcd_port_clash() {
	local i
	for ((i = 0; i < _etcd_n; i++)); do
		if ! _etcd_alive "$i" &&
			grep -q 'address already in use' "$ETCD_DIR/m$i.log"; then
			return 0
		fi
	done
	return 1
}

# Whether any member process is gone.
_etcd_any_dead() {
	local i
	for ((i = 0; i < _etcd_n; i++)); do
		_etcd_alive "$i" || return 0
	done
	return 1
}

_etcd_dump_logs() {
	local f
	for f in "$ETCD_DIR"/m*.log; do
		[ -f "$f" ] || continue
		echo "== ${f##*/} (last 20 lines)" >&2
		tail -n 20 "$f" >&2
	done
}

# Whether no member process runs.
_etcd_none_alive() {
	local i
	for ((i = 0; i < _etcd_n; i++)); do
		! _etcd_alive "$i" || return 1
	done
}

# Stop every member that runs: SIGTERM to all, SIGKILL to those left
# after 1 s (a leader stopped with its followers waits seconds to hand
# over its leadership; the data goes anyway), then reap them.
_etcd_stop_all() {
	local i
	for ((i = 0; i < _etcd_n; i++)); do
		_etcd_alive "$i" || continue
		kill -CONT "${ETCD_MEMBER_PID[$i]}" 2>/dev/null
		kill -TERM "${ETCD_MEMBER_PID[$i]}" 2>/dev/null
	done
	etcd_wait_for 1 _etcd_none_alive || true
	for ((i = 0; i < _etcd_n; i++)); do
		_etcd_reap "$i" 0
	done
}

# etcd_cluster_start N: start an N-member cluster (N = 1 or 3) and wait
# up to 20 s until all members are healthy. Returns 1, with the members'
# logs on stderr, when that fails.
etcd_cluster_start() {
	local n=$1 attempt i ports cp pp start
	case $n in 1 | 3) ;; *)
		echo "etcd_cluster_start: N must be 1 or 3, not $n" >&2
		return 1
		;;
	esac
	if [ -n "$ETCD_DIR" ]; then
		echo "etcd_cluster_start: a cluster already runs in $ETCD_DIR" >&2
		return 1
	fi
	ETCD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ustate-etcd.XXXXXX") || return 1
	_etcd_n=$n
	for ((attempt = 1; attempt <= 5; attempt++)); do
		read -r -a ports <<<"$(_etcd_free_ports "$n")"
		ETCD_MEMBER_ENDPOINT=() _etcd_peer=() ETCD_MEMBER_PID=()
		_etcd_cluster=""
		for ((i = 0; i < n; i++)); do
			cp=${ports[2 * i]} pp=${ports[2 * i + 1]}
			ETCD_MEMBER_ENDPOINT[i]=127.0.0.1:$cp
			_etcd_peer[i]=http://127.0.0.1:$pp
			_etcd_cluster+=${_etcd_cluster:+,}m$i=${_etcd_peer[$i]}
		done
		ETCD_ENDPOINTS=$(
			IFS=,
			echo "${ETCD_MEMBER_ENDPOINT[*]}"
		)
		export ETCD_ENDPOINTS
		for ((i = 0; i < n; i++)); do
			_etcd_spawn "$i"
		done
		start=$SECONDS
		# Returns early when a member dies: no use waiting then.
		etcd_wait_for 20 eval '_etcd_any_dead || _etcd_all_healthy' ||
			true
		if ! _etcd_any_dead && _etcd_all_healthy; then
			return 0
		fi
		if ! _etcd_port_clash; then
			echo "etcd_cluster_start: $n members not healthy" \
				"after $((SECONDS - start)) s" >&2
			_etcd_dump_logs
			etcd_cluster_stop
			return 1
		fi
		echo "etcd_cluster_start: a port was taken, new ports" \
			"(attempt $attempt)" >&2
		_etcd_stop_all
		rm -rf "${ETCD_DIR:?}"/m*
	done
	echo "etcd_cluster_start: ports kept being taken" >&2
	etcd_cluster_stop
	return 1
}

_etcd_check_index() {
	if ! [[ "$1" =~ ^[0-9]+$ ]] || [ "$1" -ge "$_etcd_n" ]; then
		echo "etcd: no member $1 (the cluster has $_etcd_n)" >&2
		return 1
	fi
}

# etcd_member_kill I: SIGKILL member I (as a crash would) and reap it.
etcd_member_kill() {
	_etcd_check_index "$1" || return 1
	_etcd_alive "$1" && kill -KILL "${ETCD_MEMBER_PID[$1]}" 2>/dev/null
	_etcd_reap "$1" 5
}

# etcd_member_stop I: SIGTERM member I and wait for it to exit.
etcd_member_stop() {
	_etcd_check_index "$1" || return 1
	_etcd_alive "$1" && kill -CONT "${ETCD_MEMBER_PID[$1]}" 2>/dev/null &&
		kill -TERM "${ETCD_MEMBER_PID[$1]}" 2>/dev/null
	_etcd_reap "$1" 10
}

# etcd_member_pause I: SIGSTOP member I, as a hung process (its listening
# and open sockets stay, so connections are made and never answered).
etcd_member_pause() {
	_etcd_check_index "$1" || return 1
	_etcd_alive "$1" && kill -STOP "${ETCD_MEMBER_PID[$1]}"
}

# etcd_member_resume I: SIGCONT member I.
etcd_member_resume() {
	_etcd_check_index "$1" || return 1
	_etcd_alive "$1" && kill -CONT "${ETCD_MEMBER_PID[$1]}"
}

# etcd_member_start I: start member I again (same name, data directory
# and ports) and wait up to 20 s until it is healthy. Returns 1, with
# its log, when it is not.
etcd_member_start() {
	local i=$1
	_etcd_check_index "$i" || return 1
	if _etcd_alive "$i"; then
		echo "etcd_member_start: member $i runs already" >&2
		return 1
	fi
	_etcd_spawn "$i"
	etcd_wait_for 20 eval '! _etcd_alive '"$i"' ||
		etcd_member_ctl '"$i"' endpoint health >/dev/null 2>&1' || true
	if _etcd_alive "$i" &&
		etcd_member_ctl "$i" endpoint health >/dev/null 2>&1; then
		return 0
	fi
	echo "etcd_member_start: member $i not healthy" >&2
	_etcd_dump_logs
	return 1
}

# etcd_leader: print the index of the member that the running members
# name as leader. Fails when they name none, or disagree.
etcd_leader() {
	local i eps=()
	for ((i = 0; i < _etcd_n; i++)); do
		_etcd_alive "$i" && eps+=("$i=${ETCD_MEMBER_ENDPOINT[$i]}")
	done
	[ ${#eps[@]} -gt 0 ] || return 1
	# Member ids are 64-bit: python3 keeps them exact, jq would not.
	python3 -c '
import json, subprocess, sys
ids, leaders = {}, set()
for arg in sys.argv[1:]:
    i, ep = arg.split("=", 1)
    out = subprocess.run(["etcdctl", "--dial-timeout=1s",
                          "--command-timeout=2s", "--endpoints=" + ep,
                          "endpoint", "status", "-w", "json"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        continue
    st = json.loads(out.stdout)[0]["Status"]
    ids[st["header"]["member_id"]] = i
    leaders.add(st["leader"])
if len(leaders) != 1 or next(iter(leaders)) not in ids:
    sys.exit(1)
print(ids[leaders.pop()])
' "${eps[@]}"
}

# etcd_cluster_stop: stop every member (SIGTERM, SIGKILL after 1 s),
# remove the temporary directory. Does nothing when no cluster runs.
etcd_cluster_stop() {
	[ -n "$ETCD_DIR" ] || return 0
	_etcd_stop_all
	rm -rf "$ETCD_DIR"
	ETCD_DIR="" ETCD_ENDPOINTS="" _etcd_n=0
	ETCD_MEMBER_ENDPOINT=() ETCD_MEMBER_PID=() _etcd_peer=()
}

etcd_cleanup() { etcd_cluster_stop >/dev/null 2>&1 || true; }

# At exit: through at_exit when the caller uses tests/integration/lib.sh,
# or in front of the EXIT trap already set, which then runs with the
# exit status the shell was leaving with.
if declare -F at_exit >/dev/null; then
	at_exit etcd_cleanup
else
	# The command of the EXIT trap set so far ("" if none); a function,
	# so that set -- leaves the caller's arguments alone.
	_etcd_get_exit_trap() {
		eval "set -- $(trap -p EXIT)"
		_etcd_prev_exit=${3:-}
	}
	_etcd_get_exit_trap
	_etcd_on_exit() {
		local rc=$?
		set +e
		etcd_cleanup
		if [ -n "$_etcd_prev_exit" ]; then
			(exit "$rc")
			eval "$_etcd_prev_exit"
		fi
		exit "$rc"
	}
	trap _etcd_on_exit EXIT
fi
# meson's timeout sends SIGTERM: leave through the EXIT trap.
[ -n "$(trap -p TERM)" ] || trap 'exit 143' TERM
[ -n "$(trap -p INT)" ] || trap 'exit 130' INT
