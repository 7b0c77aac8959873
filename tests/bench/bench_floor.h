/* SPDX-License-Identifier: MIT */
/*
 * This file declares the floor write of the benchmarks (bench_floor.c):
 * what a write that keeps what the store keeps costs in SQLite with no
 * code of ours, shared by bench_core (the library's floor rows) and
 * bench_nullfs -o commit= (the floor of a durable write through FUSE).
 */
#ifndef BENCH_FLOOR_H
#define BENCH_FLOOR_H

#include <sqlite3.h>
#include <stddef.h>

/*
 * A fresh database at path (any old file is removed) in WAL mode at
 * synchronous sync ("FULL", "NORMAL", "OFF"), with the reference kv_store
 * table and its index, and three tables of the store's kind: a revision,
 * a change history and each key's mod revision. Exits on failure. The
 * caller owns the result and frees it with bench_floor_close().
 */
struct bench_floor *bench_floor_open(const char *path, const char *sync);
void bench_floor_close(struct bench_floor *f);

/* BEGIN IMMEDIATE and COMMIT of f's connection; exit on failure. */
void bench_floor_begin(struct bench_floor *f);
void bench_floor_commit(struct bench_floor *f);

/*
 * Inside a transaction: the upsert of key with len bytes of value, as raw
 * SQLite does it, and by hand the three writes the store makes with it (a
 * history row, the key's mod revision, the next revision).
 */
void bench_floor_write(struct bench_floor *f, const char *key,
		       const void *value, size_t len);

/* The reference upsert of kv_store, returning the new version. */
#define BENCH_RAW_UPSERT                                                       \
	"INSERT INTO kv_store VALUES (?1, ?2, 1, ?3, ?3) ON CONFLICT(key) DO " \
	"UPDATE SET value = excluded.value, version = version + 1, "           \
	"updated_at = excluded.updated_at RETURNING version"

#endif
