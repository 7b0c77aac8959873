/* SPDX-License-Identifier: MIT */
/*
 * Files made by every libustate that shipped a change of the SQLite
 * schema (tests/unit/schemas/NN-COMMIT.sql, dumps that make-fixtures
 * wrote from scenario.c) open with this one and are migrated in place:
 * every key, value, version, time, mod revision, the store revision and
 * every history entry are what the old library wrote, a watch from
 * revision 1 replays that history, the file then has this version's
 * triggers and passes ustate_check(), and new changes (ours and those of
 * a program outside libustate, renames included) get the next revisions.
 * A read-only open changes nothing.
 *   test_migrate FIXTURE_DIR
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "ustate.h"

static const char *fixture_dir;

struct fixture {
	char dir[64];
	char path[96];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ustate-migrate.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/old.db", f->dir);
	*state = f;
	return 0;
}

/* The store's file and SQLite's (and libustate's) beside it. */
static void files_drop(struct fixture *f)
{
	char p[128];

	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-ulock", f->path);
	unlink(p);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	files_drop(f);
	rmdir(f->dir);
	free(f);
	return 0;
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	return buf;
}

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);

	if (rc != SQLITE_OK)
		print_error("%s: %s\n", sql, err ? err : "?");
	sqlite3_free(err);
	assert_int_equal(rc, SQLITE_OK);
}

/* The rows of a query, one line each, columns joined by '|'. */
static char *rows(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	int i, rc;

	assert_non_null(m);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		for (i = 0; i < sqlite3_column_count(st); i++)
			fprintf(m, "%s%s", i ? "|" : "",
				sqlite3_column_text(st, i)
					? (const char *)sqlite3_column_text(st,
									    i)
					: "NULL");
		fputc('\n', m);
	}
	assert_int_equal(rc, SQLITE_DONE);
	sqlite3_finalize(st);
	fclose(m);
	return out;
}

static int64_t scalar(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* What a migration must keep, read through SQL alone. */
static const char *const kept[] = {
	"SELECT key, hex(value), version, created_at, updated_at FROM "
	"kv_store ORDER BY key",
	"SELECT key, mod_revision FROM ustate_keyrev ORDER BY key",
	"SELECT path FROM ustate_dirs ORDER BY path",
	"SELECT id, type, key, version FROM ustate_history ORDER BY id",
	"SELECT revision, pending, compacted FROM ustate_state",
};

#define N_KEPT (sizeof(kept) / sizeof(kept[0]))

static void snapshot(sqlite3 *db, char **out)
{
	size_t i;

	for (i = 0; i < N_KEPT; i++)
		out[i] = rows(db, kept[i]);
}

static int count_problem(void *arg, const ustate_problem *p)
{
	(void)p;
	++*(int *)arg;
	return 0;
}

/* Each key of kv_store, through the library: the same entry. */
static void keys_match(ustate *s, sqlite3 *db)
{
	sqlite3_stmt *st;
	ustate_entry *e;
	int rc, n = 0;

	assert_int_equal(
		sqlite3_prepare_v2(db,
				   "SELECT k.key, k.value, k.version, "
				   "k.created_at, k.updated_at, r.mod_revision "
				   "FROM kv_store k JOIN ustate_keyrev r "
				   "ON r.key = k.key ORDER BY k.key",
				   -1, &st, NULL),
		SQLITE_OK);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);

		assert_int_equal(ustate_get(s, key, &e), 0);
		assert_int_equal(e->value_len,
				 (size_t)sqlite3_column_bytes(st, 1));
		assert_memory_equal(e->value, sqlite3_column_blob(st, 1),
				    e->value_len);
		assert_int_equal(e->version, sqlite3_column_int64(st, 2));
		assert_int_equal(e->created_at, sqlite3_column_int64(st, 3));
		assert_int_equal(e->updated_at, sqlite3_column_int64(st, 4));
		assert_int_equal(e->mod_revision, sqlite3_column_int64(st, 5));
		ustate_entry_free(e);
		n++;
	}
	assert_int_equal(rc, SQLITE_DONE);
	sqlite3_finalize(st);
	/* scenario.c leaves four keys. */
	assert_int_equal(n, 4);
}

/* A watch from revision 1 gives the history rows, in order. */
static void history_replays(ustate *s, sqlite3 *db)
{
	ustate_watch *w;
	ustate_event ev;
	sqlite3_stmt *st;
	int rc, n = 0;

	assert_int_equal(ustate_watch_open(&w, s, "/*", 1), 0);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT id >> 20, type, key, "
					    "version FROM ustate_history "
					    "ORDER BY id",
					    -1, &st, NULL),
			 SQLITE_OK);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		assert_int_equal(ustate_watch_next(w, &ev, 5000), 0);
		assert_int_equal(ev.revision, sqlite3_column_int64(st, 0));
		assert_int_equal(ev.type, sqlite3_column_int(st, 1));
		assert_string_equal(ev.key, sqlite3_column_text(st, 2));
		assert_int_equal(ev.version, sqlite3_column_int64(st, 3));
		n++;
	}
	assert_int_equal(rc, SQLITE_DONE);
	sqlite3_finalize(st);
	assert_true(n >= 12);
	assert_int_equal(ustate_watch_next(w, &ev, 0), -EAGAIN);
	ustate_watch_close(w);
}

/* The next event of w, which must come. */
static void expect(ustate_watch *w, ustate_event_type type, const char *key,
		   uint64_t version, uint64_t revision)
{
	ustate_event ev;

	assert_int_equal(ustate_watch_next(w, &ev, 5000), 0);
	assert_int_equal(ev.type, type);
	assert_string_equal(ev.key, key);
	assert_int_equal(ev.version, version);
	assert_int_equal(ev.revision, revision);
}

static void migrate_one(struct fixture *f, const char *file)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	char *before[N_KEPT], *after[N_KEPT], *dump, *triggers;
	int problems = 0;
	uint64_t rev, v;
	ustate_op op;
	ustate_watch *w;
	ustate *s;
	sqlite3 *db;
	size_t i;

	files_drop(f);
	db = raw_open(f->path);
	dump = slurp(file);
	exec_sql(db, dump);
	free(dump);
	snapshot(db, before);
	rev = (uint64_t)scalar(db, "SELECT revision FROM ustate_state");
	sqlite3_close(db);

	/* Read-only: the old file as it is, readable, unchanged. */
	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&s, f->path, &o), 0);
	assert_int_equal(ustate_revision(s), rev);
	ustate_close(s);
	db = raw_open(f->path);
	triggers = rows(db, "SELECT name, sql FROM sqlite_master WHERE "
			    "type = 'trigger' ORDER BY name");
	snapshot(db, after);
	for (i = 0; i < N_KEPT; i++) {
		assert_string_equal(after[i], before[i]);
		free(after[i]);
	}
	sqlite3_close(db);

	/* The writable open migrates. */
	o.read_only = 0;
	assert_int_equal(ustate_open_sqlite(&s, f->path, &o), 0);
	db = raw_open(f->path);
	snapshot(db, after);
	for (i = 0; i < N_KEPT; i++) {
		assert_string_equal(after[i], before[i]);
		free(after[i]);
	}
	/* Old triggers replaced: no ustate_kv_update, the set differs. */
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_master WHERE "
				    "name = 'ustate_kv_update'"),
			 0);
	dump = rows(db, "SELECT name, sql FROM sqlite_master WHERE "
			"type = 'trigger' ORDER BY name");
	assert_string_not_equal(dump, triggers);
	free(dump);
	free(triggers);
	assert_int_equal(ustate_revision(s), rev);
	keys_match(s, db);
	history_replays(s, db);
	assert_int_equal(ustate_check(s, count_problem, &problems), 0);
	assert_int_equal(problems, 0);

	/* New changes take the next revisions, from us and from outside. */
	assert_int_equal(ustate_watch_open(&w, s, "/*", rev + 1), 0);
	assert_int_equal(ustate_set(s, "/app/a", "4444", 4, &v), 0);
	assert_int_equal(v, 4);
	exec_sql(db, "INSERT INTO kv_store VALUES ('/ext2', x'31', 1, 0, 0)");
	exec_sql(db, "UPDATE kv_store SET value = x'32', version = 2 "
		     "WHERE key = '/ext2'");
	exec_sql(db, "UPDATE kv_store SET key = '/moved' WHERE key = '/ext'");
	exec_sql(db, "DELETE FROM kv_store WHERE key = '/t/2'");
	op = (ustate_op){.type = USTATE_OP_MKDIR, .key = "/newdir"};
	assert_int_equal(ustate_transaction(s, &op, 1, NULL), 0);
	expect(w, USTATE_EVENT_UPDATED, "/app/a", 4, rev + 1);
	expect(w, USTATE_EVENT_CREATED, "/ext2", 1, rev + 2);
	expect(w, USTATE_EVENT_UPDATED, "/ext2", 2, rev + 3);
	/* A rename by UPDATE: two changes of one revision. */
	expect(w, USTATE_EVENT_DELETED, "/ext", 0, rev + 4);
	expect(w, USTATE_EVENT_CREATED, "/moved", 2, rev + 4);
	expect(w, USTATE_EVENT_DELETED, "/t/2", 0, rev + 5);
	/* Even a file from before directory records were changes. */
	expect(w, USTATE_EVENT_DIR_CREATED, "/newdir", 0, rev + 6);
	ustate_watch_close(w);
	assert_int_equal(ustate_revision(s), rev + 6);
	assert_int_equal(scalar(db, "SELECT mod_revision FROM ustate_keyrev "
				    "WHERE key = '/moved'"),
			 (int64_t)(rev + 4));
	assert_int_equal(scalar(db, "SELECT count(*) FROM ustate_keyrev WHERE "
				    "key IN ('/ext', '/t/2')"),
			 0);
	problems = 0;
	assert_int_equal(ustate_check(s, count_problem, &problems), 0);
	assert_int_equal(problems, 0);
	ustate_close(s);

	/* Opened again: nothing more to migrate, nothing changes. */
	for (i = 0; i < N_KEPT; i++)
		free(before[i]);
	snapshot(db, before);
	triggers =
		rows(db, "SELECT name, sql FROM sqlite_master ORDER BY name");
	assert_int_equal(ustate_open_sqlite(&s, f->path, &o), 0);
	ustate_close(s);
	snapshot(db, after);
	for (i = 0; i < N_KEPT; i++) {
		assert_string_equal(after[i], before[i]);
		free(after[i]);
		free(before[i]);
	}
	dump = rows(db, "SELECT name, sql FROM sqlite_master ORDER BY name");
	assert_string_equal(dump, triggers);
	free(dump);
	free(triggers);
	sqlite3_close(db);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_fixture(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 4 && !strcmp(d->d_name + n - 4, ".sql");
}

static void test_every_schema(void **state)
{
	struct fixture *f = *state;
	struct dirent **names;
	char path[4096];
	int n, i;

	n = scandir(fixture_dir, &names, is_fixture, by_name);
	assert_true(n >= 8);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", fixture_dir,
			 names[i]->d_name);
		print_message("# %s\n", names[i]->d_name);
		migrate_one(f, path);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_schema, setup,
						teardown),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: test_migrate FIXTURE_DIR\n");
		return 2;
	}
	fixture_dir = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
