#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Optimistic concurrency through /.txn: increment a counter key TIMES
# times without ever losing an update, however many copies of this script
# run at once, on this mount or on others of the same database. Each
# increment reads the value and its version with a "get" transaction,
# then commits "check KEY VERSION" + "set KEY" in a second one; if another
# writer got there first, the check fails (ECANCELED) and it starts over.
#
#   cas-counter.sh MOUNTPOINT KEY [TIMES]
#
# It prints the value each increment committed, one a line, and on
# stderr how many conflicts it retried. A missing key counts as 0 (the
# check is then "version 0": the key must not exist).
#
# By hand:
#   ustatefs /tmp/state.db /tmp/mnt
#   for i in 1 2 3 4; do examples/cas-counter.sh /tmp/mnt /hits 50 & done; wait
#   cat /tmp/mnt/hits                        # 200
set -euo pipefail
export LC_ALL=C # lengths in bytes

if [ $# -lt 2 ]; then
	echo "usage: cas-counter.sh MOUNTPOINT KEY [TIMES]" >&2
	exit 2
fi
txn=$1/.txn key=$2 times=${3:-1}
retries=0

# get: read KEY's value and version in one transaction into $value and
# $version (0 and "" when it does not exist). The reply is
#   ok REVISION
#   get KEY VERSION LEN
#   LEN bytes of value, then a newline
# /.txn is not seekable, so bash's read takes it a byte at a time and
# leaves the rest for the next read.
get() {
	local fd ok line len
	exec {fd}<>"$txn"
	printf 'get %s\ncommit\n' "$key" >&"$fd"
	read -r -u "$fd" ok _ && [ "$ok" = ok ]
	read -r -u "$fd" line
	len=${line##* } line=${line% *}
	version=${line##* }
	value=
	[ "$len" = 0 ] || read -r -N "$len" -u "$fd" value
	exec {fd}>&-
}

# put NEW: commit NEW only if KEY is still at $version. Returns 1 on a
# version conflict; any other failure ends the script.
put() {
	local fd status=0 reply
	exec {fd}<>"$txn"
	# The write that completes "commit" fails with the transaction.
	printf 'check %s %s\nset %s %s\n%s\ncommit\n' \
		"$key" "$version" "$key" "${#1}" "$1" >&"$fd" 2>/dev/null ||
		status=1
	# The reply: "ok REVISION ..." or "error LINE CODE KEY FOUND" and why.
	reply=$(cat <&"$fd")
	exec {fd}>&-
	[ $status = 0 ] && return 0
	case $reply in
	"error 1 ECANCELED "*) return 1 ;;
	*) echo "cas-counter: $reply" >&2; exit 1 ;;
	esac
}

for ((i = 0; i < times; i++)); do
	while :; do
		get
		if put $((${value:-0} + 1)); then
			break
		fi
		retries=$((retries + 1))
	done
	echo $((${value:-0} + 1))
done
echo "cas-counter: $times increments, $retries conflicts retried" >&2
