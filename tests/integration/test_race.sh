#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ustatefs: races. Many writers with noclobber on one key: exactly one
# wins; concurrent writers of one key never interleave: the last close
# wins whole; readers never see a torn value.
. "$(dirname "$0")/lib.sh"

M=$T/mnt
mount_fs "$T/state.db" "$M"

for round in 1 2 3; do
	for i in $(seq 1 16); do
		python3 -c "
import os, sys
try:
    fd = os.open('$M/lock$round', os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    os.write(fd, b'$i')
    os.close(fd)
    print('won')
except FileExistsError:
    print('lost')" > "$T/r$round.$i" &
	done
	wait
	check "round $round: exactly one O_EXCL creator wins" 1 \
		"$(cat "$T"/r$round.* | grep -c won)"
	# Claimed at open (version 1), the winner's value at its close (2).
	won=$(grep -l won "$T"/r$round.*)
	check "round $round: the key holds the winner's value" "2 ${won##*.}" \
		"$(xattr version "$M/lock$round") $(cat "$M/lock$round")"
done

# 8 writers of 64 KiB values made of one repeated letter, 4 readers.
torn=$(python3 - "$M/big" <<'PY'
import os, sys, threading
p = sys.argv[1]
bad = []
def writer(c):
    for _ in range(20):
        with open(p, "wb") as f:
            for _ in range(16):
                f.write(c * 4096)
def reader():
    for _ in range(60):
        try:
            with open(p, "rb") as f:
                v = f.read()
        except FileNotFoundError:
            continue
        if v and (len(v) != 65536 or v.count(v[:1]) != len(v)):
            bad.append(len(v))
ts = [threading.Thread(target=writer, args=(bytes([65 + i]),)) for i in range(8)]
ts += [threading.Thread(target=reader) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("torn %s" % bad if bad else "whole")
PY
)
check "readers beside writers never see a torn value" whole "$torn"
check_out=$(python3 -c "
v = open('$M/big','rb').read()
print(len(v), v.count(v[:1]) == len(v))")
check "last close wins whole" "65536 True" "$check_out"
