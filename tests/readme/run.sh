#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Run the README's example program and compare what it prints.
set -euo pipefail
out=$("$1")
if [ "$out" != "$(cat "$2")" ]; then
	printf 'README example printed:\n%s\nexpected:\n%s\n' "$out" "$(cat "$2")" >&2
	exit 1
fi
echo "README example: output as expected"
