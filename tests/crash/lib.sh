# SPDX-License-Identifier: MIT
# Shared by crash.sh and powerloss.sh (after tests/integration/lib.sh):
# one cycle of writers killed with the daemon, and the invariants checked
# after it, on the database $DB mounted at $M and the acknowledgements the
# writers (writers.py) leave in $T/ack: PRAGMA integrity_check is ok; every acknowledged counter is
# there, at least as high as acknowledged; both keys of a transaction hold
# the same counter; no value is half-written.
# Totals: acks (operations acknowledged), checked (values checked), lost,
# torn.
acks=0 checked=0 lost=0 torn=0
mkdir -p "$M" "$T/ack"

# crash_cycle C SYNC [VAR=VALUE...]: mount $DB at $M with sync=SYNC (the
# daemon's environment plus the VAR=VALUEs), run concurrent writers, kill
# the daemon with SIGKILL at a random moment, recover the mountpoint.
crash_cycle() {
	local c=$1 sync=$2 i kind pid pids=()
	shift 2
	env "$@" "$USTATEFS" -o "sync=$sync" "$DB" "$M"
	mkdir -p "$M/c" "$M/r" "$M/t"
	for i in 1 2; do
		for kind in file txn rename; do
			python3 "$(dirname "${BASH_SOURCE[0]}")/writers.py" \
				"$M" "$T/ack" $kind "$i" $((c * 1000000)) &
			pids+=($!)
		done
	done
	# The kill lands at a random moment once every writer has had an
	# operation acknowledged, not at a fixed time after their start: a
	# loaded machine (or a sanitizer build) can take longer than the
	# sleep just to start them.
	wait_for 20 _all_acked || true
	sleep "0.$((RANDOM % 8 + 2))"
	pid=$(pgrep -o -f "^$USTATEFS -o sync=$sync $DB" || true)
	[ -n "$pid" ] && kill -9 "$pid"
	# A killed daemon must really go, whatever it was doing (its replay
	# helper and its guard follow it): its process, not only its command
	# line, which a process stuck in its exit no longer shows.
	if ! wait_for 10 bash -c "! [ -e /proc/$pid ] && ! pgrep -f '^$USTATEFS -o sync=$sync $DB'"; then
		fail "cycle $c: the killed daemon did not exit"
		exit 1
	fi
	wait "${pids[@]}" 2>/dev/null || true
	# Recovering a mountpoint after SIGKILL: unmount, then mount again.
	fusermount3 -uz "$M"
}

# _all_acked: every writer of the cycle has an acknowledgement in $T/ack.
_all_acked() {
	local kind i
	for i in 1 2; do
		for kind in file txn rename; do
			[ -s "$T/ack/$kind.$i" ] || return 1
		done
	done
}

# count_acks: add the operations acknowledged in $T/ack to acks.
count_acks() {
	local f
	for f in "$T"/ack/*; do
		[ -s "$f" ] && acks=$((acks + $(wc -l < "$f")))
	done
	return 0
}

# verify LABEL [may-lose]: check the invariants; with may-lose, a value
# below its acknowledgement is counted in lost but is no failure.
verify() {
	local label=$1 may_lose=${2:-} f kind id last k v
	local -A val=()
	check "$label: integrity_check" ok "$(sqlite3 "$DB" 'PRAGMA integrity_check')"
	while read -r k v; do
		val[$k]=$v
	done < <(sqlite3 -separator ' ' "$DB" "SELECT key,
		replace(rtrim(CAST(value AS TEXT), char(10)), char(10), '\n')
		FROM kv_store WHERE key GLOB '/[ctr]/*'")
	for f in "$T"/ack/*; do
		[ -s "$f" ] || continue
		last=$(tail -1 "$f")
		kind=${f##*/}
		id=${kind#*.}
		kind=${kind%.*}
		case $kind in
		file) keys=("/c/w$id") ;;
		txn) keys=("/t/a$id" "/t/b$id") ;;
		rename) keys=("/r/f$id") ;;
		esac
		for k in "${keys[@]}"; do
			v=${val[$k]:-}
			checked=$((checked + 1))
			if ! [[ "$v" =~ ^[0-9]+$ ]]; then
				if [ -n "$may_lose" ] && [ -z "$v" ]; then
					lost=$((lost + 1))
					continue
				fi
				torn=$((torn + 1))
				fail "$label: $k holds [$v], acknowledged $last"
			elif ((v < last)); then
				lost=$((lost + 1))
				[ -n "$may_lose" ] ||
					fail "$label: $k is at $v, acknowledged $last"
			fi
		done
		if [ "$kind" = txn ] && [ "${val[/t/a$id]:-}" != "${val[/t/b$id]:-}" ]; then
			torn=$((torn + 1))
			fail "$label: transaction $id half applied"
		fi
	done
}
