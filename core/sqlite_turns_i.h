/* SPDX-License-Identifier: MIT */
/*
 * This file declares the turns of the SQLite backend (sqlite_turns.c):
 * the queue that hands the write lock of one database file to the
 * libustate processes in the order they asked for it, and the test that
 * tells whether a process outside that queue (the sqlite3 shell, the Rust
 * crate) has the file open. The queue only orders: SQLite's own lock
 * still excludes, so a queue that cannot be opened, or a turn not given
 * in time, leaves a writer with SQLite's busy handler, as before.
 */
#ifndef USTATE_SQLITE_TURNS_I_H
#define USTATE_SQLITE_TURNS_I_H

#include <stdbool.h>
#include <stdint.h>

struct ustate_turns;

/*
 * Join the queue of the database file db: DB-ulock beside it, created
 * (with the mode of the database) when missing if create is set. *out receives
 * the caller's place, which ustate_turns_close() frees. Returns 0, -ENOMEM,
 * -ENOSPC when the queue already has its 64 places taken, or the errno of the
 * lock file's open, mmap or lock.
 */
int ustate_turns_open(struct ustate_turns **out, const char *db, bool create);

/* Leave the queue; a turn held is given first. NULL is a no-op. */
void ustate_turns_close(struct ustate_turns *t);

/*
 * Wait for the caller's turn, at most timeout_ms: every place that asked
 * before has had its turn (or died, or gave up). A turn is taken by one
 * thread at a time per place (the SQLite backend holds its wlock).
 * Returns 0 with the turn held, or -ETIMEDOUT without it (the caller
 * goes on under SQLite's lock alone). t NULL: 0 at once.
 */
int ustate_turn_take(struct ustate_turns *t, unsigned timeout_ms);

/*
 * Let no turn of any member start before until (CLOCK_MONOTONIC, ns): a
 * pause left for writers outside the queue, which the next member would
 * fill otherwise. A turn that comes earlier waits (100 ms at most).
 * t NULL: no-op.
 */
void ustate_turns_pause(struct ustate_turns *t, uint64_t until);

/* Give the turn taken (if any) to the next in the queue. */
void ustate_turn_give(struct ustate_turns *t);

/*
 * Whether a process that is no member of the queue holds a lock on the
 * file path (the database's -shm, which every SQLite connection in WAL
 * mode locks while it is open), as /proc/locks lists them. t may be NULL:
 * then every other process counts. False when /proc/locks is unreadable.
 */
bool ustate_turns_foreign(struct ustate_turns *t, const char *path);

#endif
