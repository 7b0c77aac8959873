/* SPDX-License-Identifier: MIT */
/*
 * This file implements the floor write of the benchmarks (see
 * bench_floor.h): raw SQLite's upsert on the reference kv_store table,
 * plus by hand, in the same transaction, the three rows the store keeps
 * with each write. No trigger, no code of libustate: the most any write
 * on these tables reaches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "bench_floor.h"

struct bench_floor {
	sqlite3 *db;
	sqlite3_stmt *upsert, *hist, *keyrev, *rev, *begin, *commit;
	sqlite3_int64 revision;
};

static void floor_die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "bench floor: %s: %s\n", what,
		db ? sqlite3_errmsg(db) : "out of memory");
	exit(1);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		floor_die(db, sql);
	return st;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		floor_die(db, sql);
}

struct bench_floor *bench_floor_open(const char *path, const char *sync)
{
	struct bench_floor *f = calloc(1, sizeof(*f));
	char sql[128];

	if (!f)
		floor_die(NULL, "calloc");
	unlink(path);
	if (sqlite3_open(path, &f->db) != SQLITE_OK)
		floor_die(f->db, path);
	snprintf(sql, sizeof(sql),
		 "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;", sync);
	exec_sql(f->db, sql);
	exec_sql(f->db,
		 "CREATE TABLE kv_store (key TEXT PRIMARY KEY NOT NULL,"
		 " value BLOB NOT NULL, version INTEGER NOT NULL,"
		 " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
		 "CREATE INDEX idx_kv_store_prefix ON kv_store(key);"
		 "CREATE TABLE state (id INTEGER PRIMARY KEY,"
		 " revision INTEGER NOT NULL);"
		 "INSERT INTO state VALUES (0, 0);"
		 "CREATE TABLE history (id INTEGER PRIMARY KEY,"
		 " type INTEGER NOT NULL, key TEXT NOT NULL,"
		 " version INTEGER NOT NULL);"
		 "CREATE TABLE keyrev (key TEXT PRIMARY KEY NOT NULL,"
		 " mod_revision INTEGER NOT NULL) WITHOUT ROWID;");
	f->upsert = prep(f->db, BENCH_RAW_UPSERT);
	f->hist = prep(f->db, "INSERT INTO history VALUES (?1, 2, ?2, ?3)");
	f->keyrev = prep(f->db,
			 "INSERT INTO keyrev VALUES (?1, ?2) ON CONFLICT(key)"
			 " DO UPDATE SET mod_revision = excluded.mod_revision");
	f->rev = prep(f->db, "UPDATE state SET revision = ?1");
	f->begin = prep(f->db, "BEGIN IMMEDIATE");
	f->commit = prep(f->db, "COMMIT");
	return f;
}

void bench_floor_close(struct bench_floor *f)
{
	if (!f)
		return;
	sqlite3_finalize(f->upsert);
	sqlite3_finalize(f->hist);
	sqlite3_finalize(f->keyrev);
	sqlite3_finalize(f->rev);
	sqlite3_finalize(f->begin);
	sqlite3_finalize(f->commit);
	sqlite3_close(f->db);
	free(f);
}

static void step_done(struct bench_floor *f, sqlite3_stmt *st)
{
	if (sqlite3_step(st) != SQLITE_DONE)
		floor_die(f->db, sqlite3_sql(st));
	sqlite3_reset(st);
}

void bench_floor_begin(struct bench_floor *f)
{
	step_done(f, f->begin);
}

void bench_floor_commit(struct bench_floor *f)
{
	step_done(f, f->commit);
}

void bench_floor_write(struct bench_floor *f, const char *key,
		       const void *value, size_t len)
{
	sqlite3_int64 version = 0;
	int rc;

	f->revision++;
	sqlite3_bind_text(f->upsert, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(f->upsert, 2, value, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(f->upsert, 3, time(NULL));
	while ((rc = sqlite3_step(f->upsert)) == SQLITE_ROW)
		version = sqlite3_column_int64(f->upsert, 0);
	if (rc != SQLITE_DONE)
		floor_die(f->db, "upsert");
	sqlite3_reset(f->upsert);
	sqlite3_bind_int64(f->hist, 1, f->revision << 20);
	sqlite3_bind_text(f->hist, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(f->hist, 3, version);
	step_done(f, f->hist);
	sqlite3_bind_text(f->keyrev, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(f->keyrev, 2, f->revision);
	step_done(f, f->keyrev);
	sqlite3_bind_int64(f->rev, 1, f->revision);
	step_done(f, f->rev);
}
