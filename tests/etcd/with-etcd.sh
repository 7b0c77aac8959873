#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# with-etcd.sh CMD [ARGS...]: start a one-member etcd on free loopback
# ports (tests/etcd/lib.sh), run CMD with USTATE_TEST_ETCD set to its
# client endpoint (127.0.0.1:PORT), then stop the member and remove its
# data, and exit with CMD's status (77, a skip, passes through like any
# other). Exits 1 when etcd does not come up, 77 when it is not installed.
# CMD runs under $WITH_ETCD_WRAP when that is set (scripts/test runs the
# etcd conformance suite under valgrind so).
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: with-etcd.sh CMD [ARGS...]" >&2
	exit 2
fi
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

etcd_cluster_start 1
export USTATE_TEST_ETCD=${ETCD_MEMBER_ENDPOINT[0]}
rc=0
# WITH_ETCD_WRAP: a command line to run CMD under (valgrind, say).
# shellcheck disable=SC2086
${WITH_ETCD_WRAP:-} "$@" || rc=$?
etcd_cluster_stop
exit "$rc"
