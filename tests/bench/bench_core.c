/* SPDX-License-Identifier: MIT */
/*
 * This file implements the core benchmark behind scripts/bench-core: ops/s
 * of get, set (at each sync level), compare-and-set and list on both
 * backends, each next to raw SQLite running the same statement with the
 * same pragmas on a plain kv_store table, in the same run, as a ratio.
 * Every figure is the median of several rounds. It is a benchmark, not a
 * test: it asserts only that the operations succeed.
 *
 * usage: bench_core [-q] [-k KEYS_FOR_LIST] [DIR]
 */
#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_floor.h"
#include "ustate.h"

#define ROUNDS 5
#define VALUE_LEN 100

static char dir[256] = "/tmp";
static char value[VALUE_LEN];
static int quick;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_core: %s: %s\n", what, ustate_strerror(rc));
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return v[n / 2];
}

/* ---- raw SQLite, the reference ---------------------------------------- */

static const char *const sync_names[] = {"FULL", "NORMAL", "OFF"};

static sqlite3 *raw_open(const char *path, int sync)
{
	char sql[128];
	sqlite3 *db;

	unlink(path);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die("sqlite3_open", -EIO);
	snprintf(sql, sizeof(sql),
		 "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;",
		 sync_names[sync]);
	sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_exec(
		db,
		"CREATE TABLE kv_store (key TEXT PRIMARY KEY NOT NULL,"
		" value BLOB NOT NULL, version INTEGER NOT NULL,"
		" created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
		"CREATE INDEX idx_kv_store_prefix ON kv_store(key);",
		NULL, NULL, NULL);
	return db;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare: %s\n", sqlite3_errmsg(db));
		exit(1);
	}
	return st;
}

static void raw_set(sqlite3_stmt *st, const char *key)
{
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, value, VALUE_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, time(NULL));
	while (sqlite3_step(st) == SQLITE_ROW)
		;
	sqlite3_reset(st);
}

#define RAW_UPSERT BENCH_RAW_UPSERT

static double raw_set_rate(int sync, int n)
{
	char path[300], key[64];
	sqlite3_stmt *st;
	sqlite3 *db;
	double t;
	int i;

	snprintf(path, sizeof(path), "%s/raw.db", dir);
	db = raw_open(path, sync);
	st = prep(db, RAW_UPSERT);
	t = now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", i % 1000);
		raw_set(st, key);
	}
	t = now() - t;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n / t;
}

/*
 * The floor of a write that keeps what the store keeps: raw SQLite's
 * upsert plus, in the same transaction, a history row, the key's mod
 * revision and the revision counter, each in a table of its own as in
 * the store, written by plain prepared statements (no trigger). What the
 * extra pages of those three tables cost, with no code of ours at all.
 */
static double floor_set_rate(int sync, int n)
{
	struct bench_floor *f;
	char path[300], key[64];
	double t;
	int i;

	snprintf(path, sizeof(path), "%s/raw.db", dir);
	f = bench_floor_open(path, sync_names[sync]);
	t = now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", i % 1000);
		bench_floor_begin(f);
		bench_floor_write(f, key, value, VALUE_LEN);
		bench_floor_commit(f);
	}
	t = now() - t;
	bench_floor_close(f);
	return n / t;
}

static sqlite3 *raw_filled(int sync, int keys)
{
	char path[300], key[64];
	sqlite3_stmt *st;
	sqlite3 *db;
	int i;

	snprintf(path, sizeof(path), "%s/raw.db", dir);
	db = raw_open(path, sync);
	st = prep(db, RAW_UPSERT);
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (i = 0; i < keys; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", i);
		raw_set(st, key);
	}
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_finalize(st);
	return db;
}

/*
 * Raw SQLite's read of a key; with floor, the floor of a get that also
 * returns what the store keeps beside kv_store (whose columns are the
 * reference's): the key's mod revision and its lease, each in a table of
 * its own. The same statement as the store's, on tables filled by hand
 * (every key with a mod revision, none with a lease, as in get_rate()).
 */
static double raw_get_rate(int keys, int n, int floor)
{
	sqlite3 *db = raw_filled(USTATE_SYNC_NORMAL, keys);
	sqlite3_stmt *st;
	char key[64];
	size_t sum = 0;
	double t;
	int i;

	if (floor)
		sqlite3_exec(db,
			     "CREATE TABLE keyrev (key TEXT PRIMARY KEY NOT "
			     "NULL, mod_revision INTEGER NOT NULL) WITHOUT "
			     "ROWID; INSERT INTO keyrev SELECT key, rowid "
			     "FROM kv_store; CREATE TABLE lease_keys (key "
			     "TEXT PRIMARY KEY NOT NULL, lease TEXT NOT NULL) "
			     "WITHOUT ROWID;",
			     NULL, NULL, NULL);
	st = prep(db, floor ? "SELECT k.value, k.version, k.created_at, "
			      "k.updated_at, r.mod_revision, l.lease FROM "
			      "kv_store k LEFT JOIN keyrev r ON r.key = k.key "
			      "LEFT JOIN lease_keys l ON l.key = k.key WHERE "
			      "k.key = ?1"
			    : "SELECT value, version, created_at, updated_at "
			      "FROM kv_store WHERE key = ?1");
	t = now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", (i * 7919) % keys);
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			sum += sqlite3_column_bytes(st, 0) +
			       sqlite3_column_int64(st, 1);
		sqlite3_reset(st);
	}
	t = now() - t;
	if (sum == 0)
		die("raw get", -ENOENT);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n / t;
}

static double raw_cas_rate(int n)
{
	sqlite3 *db = raw_filled(USTATE_SYNC_NORMAL, 1);
	sqlite3_stmt *st;
	double t;
	int i;

	st = prep(db, "UPDATE kv_store SET value = ?1, version = version + 1,"
		      " updated_at = ?2 WHERE key = ?3 AND version = ?4");
	t = now();
	for (i = 0; i < n; i++) {
		sqlite3_bind_blob(st, 1, value, VALUE_LEN, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, time(NULL));
		sqlite3_bind_text(st, 3, "/bench/k0", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, i + 1);
		sqlite3_step(st);
		if (sqlite3_changes(db) != 1)
			die("raw cas", -ECANCELED);
		sqlite3_reset(st);
	}
	t = now() - t;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n / t;
}

/* ---- libustate -------------------------------------------------------- */

static ustate *open_store(int sqlite, int sync)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	char path[300];
	ustate *s;
	int rc;

	o.sync = sync;
	if (sqlite) {
		snprintf(path, sizeof(path), "%s/ustate.db", dir);
		unlink(path);
		rc = ustate_open_sqlite(&s, path, &o);
	} else {
		rc = ustate_open_memory(&s, &o);
	}
	if (rc < 0)
		die("open", rc);
	return s;
}

/* Fill with keys /bench/k<i>, or /g<i> (7 digits) for the list test. */
static void fill(ustate *s, int keys, int grouped)
{
	ustate_op *ops = calloc(10000, sizeof(*ops));
	char(*names)[64] = calloc(10000, 64);
	int i, j, rc;

	for (i = 0; i < keys; i += 10000) {
		for (j = 0; j < 10000 && i + j < keys; j++) {
			if (grouped)
				snprintf(names[j], 64, "/g%07d", i + j);
			else
				snprintf(names[j], 64, "/bench/k%d", i + j);
			ops[j] = (ustate_op){.type = USTATE_OP_SET,
					     .key = names[j],
					     .value = value,
					     .value_len = VALUE_LEN};
		}
		rc = ustate_transaction(s, ops, j, NULL);
		if (rc < 0)
			die("fill", rc);
	}
	free(ops);
	free(names);
}

static double set_rate(int sqlite, int sync, int n)
{
	ustate *s = open_store(sqlite, sync);
	char key[64];
	double t;
	int i, rc;

	t = now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", i % 1000);
		rc = ustate_set(s, key, value, VALUE_LEN, NULL);
		if (rc < 0)
			die("set", rc);
	}
	t = now() - t;
	ustate_close(s);
	return n / t;
}

static double get_rate(int sqlite, int keys, int n)
{
	ustate *s = open_store(sqlite, USTATE_SYNC_NORMAL);
	ustate_entry *e;
	char key[64];
	double t;
	int i, rc;

	fill(s, keys, 0);
	t = now();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/bench/k%d", (i * 7919) % keys);
		rc = ustate_get(s, key, &e);
		if (rc < 0)
			die("get", rc);
		ustate_entry_free(e);
	}
	t = now() - t;
	ustate_close(s);
	return n / t;
}

static double cas_rate(int sqlite, int n)
{
	ustate *s = open_store(sqlite, USTATE_SYNC_NORMAL);
	uint64_t v;
	double t;
	int i, rc;

	ustate_set(s, "/bench/k0", value, VALUE_LEN, &v);
	t = now();
	for (i = 0; i < n; i++) {
		rc = ustate_compare_and_set(s, "/bench/k0", v, value, VALUE_LEN,
					    &v);
		if (rc < 0)
			die("cas", rc);
	}
	t = now() - t;
	ustate_close(s);
	return n / t;
}

/* Mean time of listing 100 keys among `keys`, in microseconds. */
static double list_us(int sqlite, int keys, int n)
{
	ustate *s = open_store(sqlite, USTATE_SYNC_OFF);
	char prefix[64], **v;
	size_t cnt;
	double t;
	int i, rc;

	/* 100 keys a group: /g<group>/k<i>. */
	fill(s, keys, 1);
	t = now();
	for (i = 0; i < n; i++) {
		snprintf(prefix, sizeof(prefix), "/g%05d",
			 (i * 7919) % (keys / 100));
		rc = ustate_list(s, prefix, &v, &cnt);
		if (rc < 0 || cnt != 100)
			die("list", rc < 0 ? rc : -EIO);
		ustate_list_free(v, cnt);
	}
	t = now() - t;
	ustate_close(s);
	return t / n * 1e6;
}

struct row {
	const char *op, *backend, *target;
	double ours, ref; /* ref 0: no reference */
	const char *unit;
};

static void print_row(const struct row *r)
{
	if (r->ref > 0)
		printf("| %-14s | %-7s | %12.0f | %12.0f | %6.2fx | %-10s |\n",
		       r->op, r->backend, r->ours, r->ref, r->ours / r->ref,
		       r->target);
	else
		printf("| %-14s | %-7s | %12.2f | %12s | %7s | %-10s |\n",
		       r->op, r->backend, r->ours, r->unit, "", r->target);
	fflush(stdout);
}

#define MEDIAN(expr)                                                           \
	({                                                                     \
		double v_[ROUNDS];                                             \
		int r_;                                                        \
		for (r_ = 0; r_ < rounds; r_++)                                \
			v_[r_] = (expr);                                       \
		median(v_, rounds);                                            \
	})

int main(int argc, char **argv)
{
	int list_keys = 1000000, rounds = ROUNDS, n, c, sync;
	double mem_get, sq_get, raw_get;
	struct row r;

	while ((c = getopt(argc, argv, "qk:")) != -1) {
		switch (c) {
		case 'q':
			quick = 1;
			rounds = 3;
			break;
		case 'k':
			list_keys = atoi(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: bench_core [-q] [-k KEYS] [DIR]\n");
			return 2;
		}
	}
	if (optind < argc)
		snprintf(dir, sizeof(dir), "%s", argv[optind]);
	memset(value, 'v', sizeof(value));
	n = quick ? 20000 : 200000;

	printf("| %-14s | %-7s | %12s | %12s | %7s | %-10s |\n", "operation",
	       "backend", "ops/s", "raw SQLite", "ratio", "target");
	printf("|----------------|---------|--------------|--------------|"
	       "---------|------------|\n");

	raw_get = MEDIAN(raw_get_rate(10000, n, 0));
	sq_get = MEDIAN(get_rate(1, 10000, n));
	mem_get = MEDIAN(get_rate(0, 10000, n));
	r = (struct row){"get", "sqlite", ">= 0.9x", sq_get, raw_get, ""};
	print_row(&r);
	/* The floor of a get that returns the mod revision and lease. */
	r = (struct row){"floor get", "raw+2",
			 "",	      MEDIAN(raw_get_rate(10000, n, 1)),
			 raw_get,     ""};
	print_row(&r);
	r = (struct row){"get", "memory", ">= 3x sq", mem_get, sq_get, ""};
	print_row(&r);

	for (sync = USTATE_SYNC_FULL; sync <= USTATE_SYNC_OFF; sync++) {
		static const char *const names[] = {
			"set sync=full", "set sync=normal", "set sync=off"};
		int m = sync == USTATE_SYNC_FULL ? (quick ? 200 : 1000) : n / 4;
		double raw = MEDIAN(raw_set_rate(sync, m));
		double ours = MEDIAN(set_rate(1, sync, m));

		static const char *const floors[] = {"floor sync=full",
						     "floor sync=normal",
						     "floor sync=off"};
		double floor = MEDIAN(floor_set_rate(sync, m));

		r = (struct row){names[sync], "sqlite", ">= 0.7x",
				 ours,	      raw,	""};
		print_row(&r);
		/* The floor against raw: the most the store's tables allow. */
		r = (struct row){floors[sync], "raw+3", "", floor, raw, ""};
		print_row(&r);
	}
	r = (struct row){"set",
			 "memory",
			 "",
			 MEDIAN(set_rate(0, 0, n)),
			 MEDIAN(raw_set_rate(USTATE_SYNC_OFF, n / 4)),
			 ""};
	print_row(&r);

	r = (struct row){"cas sync=normal", "sqlite", "", 0, 0, ""};
	r.ref = MEDIAN(raw_cas_rate(n / 4));
	r.ours = MEDIAN(cas_rate(1, n / 4));
	print_row(&r);
	r = (struct row){"cas", "memory", "", MEDIAN(cas_rate(0, n)),
			 r.ref, ""};
	print_row(&r);

	if (list_keys >= 1000) {
		char name[32];

		snprintf(name, sizeof(name), "list 100/%dk", list_keys / 1000);
		r = (struct row){name, "sqlite", "< 1000 us", 0, 0, "us/op"};
		r.ours = list_us(1, list_keys, 1000);
		print_row(&r);
		r.backend = "memory";
		r.ours = list_us(0, list_keys, 1000);
		print_row(&r);
	}
	return 0;
}
