/* SPDX-License-Identifier: MIT */
/*
 * This file tests that both backends keep the contract of ustate.h and
 * ustate_json.h: one table of cases runs once per backend, chosen by the
 * program's argument ("sqlite" or "memory"; both when none), and each case
 * gets a fresh store of that backend from its setup (a new SQLite file in a
 * new temporary directory, or a new memory store). The cases cover every
 * public function and every error code it documents: versions, revisions,
 * listing, compare-and-set, transactions and their all-or-nothing rule,
 * read-only stores, options (version 1 structs too), ustate_open() of
 * every SOURCE and the library's log, watches (patterns, replay,
 * overflow, the descriptor, writes from other threads), directory
 * records, ownership metadata, transaction scripts (with a caller's check
 * and owner) and the JSON helpers. A few cases only make sense for one
 * backend and are appended to its table: other processes, raw SQL and the
 * Rust univrs-state on the same SQLite file, the file's mode, reopening,
 * damaged files, files made before the ownership table, symbolic links,
 * ustate_global_tune() in a fresh process, opening by path; and
 * independent memory stores, opened by ":memory:".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "backend_i.h" /* ustate_log(), the backends' way to the log */
#include "store_i.h"   /* ustate_lease_expire_now() */
#include "ustate.h"
#include "ustate_json.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum backend { BACKEND_SQLITE, BACKEND_MEMORY, BACKEND_ETCD };

static const enum backend sqlite_backend = BACKEND_SQLITE;
static const enum backend memory_backend = BACKEND_MEMORY;
static const enum backend etcd_backend = BACKEND_ETCD;

/* etcd: the client endpoint of the member the run uses (with-etcd.sh). */
static const char *etcd_endpoint;

/* What one case works on; teardown closes whatever is still open. */
struct fixture {
	enum backend kind;
	char dir[64];	     /* sqlite: the case's temporary directory */
	char path[PATH_MAX]; /* sqlite: the file of s; etcd: its SOURCE */
	char last[PATH_MAX]; /* ... the one open_fresh() made last */
	unsigned nfiles;     /* sqlite: files made in dir so far */
	uint64_t base;	     /* the revision of the new store: 0, but for
			      * etcd, whose revision counts every write of
			      * the cluster, other prefixes' too */
	ustate *s;	     /* the case's store */
	ustate *s2;	     /* a second store a case may open */
	ustate_watch *w;     /* watches, closed before the stores */
	ustate_watch *w2;
};

/* The options of most stores here: fsync-free commits keep the suite fast. */
static ustate_options fast_options(void)
{
	ustate_options o = USTATE_OPTIONS_INIT;

	o.sync = USTATE_SYNC_NORMAL;
	return o;
}

/* A revision n revisions after the store was new (see fixture.base). */
#define REV(n) (f->base + (n))

/* Open a new, empty store of the case's backend. */
static int open_fresh(struct fixture *f, const ustate_options *o, ustate **out)
{
	static unsigned stores;

	if (f->kind == BACKEND_MEMORY)
		return ustate_open_memory(out, o);
	if (f->kind == BACKEND_ETCD) {
		/* A new PREFIX of the run's etcd is a new store. */
		snprintf(f->last, sizeof(f->last), "etcd://%s/conf/%d/%u",
			 etcd_endpoint, (int)getpid(), stores++);
		/*
		 * USTATE_TEST_REPLICA: every case again, reading a replica
		 * (but those that pass the options of an older version).
		 */
		if (getenv("USTATE_TEST_REPLICA") &&
		    (!o || o->version == USTATE_OPTIONS_VERSION)) {
			ustate_options r = USTATE_OPTIONS_INIT;

			if (o)
				r = *o;
			r.replica = "";
			return ustate_open(out, f->last, &r);
		}
		return ustate_open(out, f->last, o);
	}
	snprintf(f->last, sizeof(f->last), "%s/store%u.db", f->dir,
		 f->nfiles++);
	return ustate_open_sqlite(out, f->last, o);
}

static void remove_dir(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dp;

	dp = opendir(dir);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		unlink(path);
	}
	closedir(dp);
	rmdir(dir);
}

static int group_setup_sqlite(void **state)
{
	*state = (void *)&sqlite_backend;
	return 0;
}

static int group_setup_memory(void **state)
{
	*state = (void *)&memory_backend;
	return 0;
}

static int group_setup_etcd(void **state)
{
	*state = (void *)&etcd_backend;
	return 0;
}

static int setup(void **state)
{
	const enum backend *kind = *state;
	ustate_options o = fast_options();
	struct fixture *f;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->kind = *kind;
	if (f->kind == BACKEND_SQLITE) {
		strcpy(f->dir, "/tmp/ustate-conf-XXXXXX");
		if (!mkdtemp(f->dir))
			goto fail;
	}
	if (open_fresh(f, &o, &f->s) < 0)
		goto fail;
	strcpy(f->path, f->last);
	f->base = ustate_revision(f->s);
	*state = f;
	return 0;
fail:
	if (f->dir[0])
		remove_dir(f->dir);
	free(f);
	return -1;
}

static int64_t clock_moved;

static int teardown(void **state)
{
	struct fixture *f = *state;

	ustate_clock_advance(-clock_moved);
	clock_moved = 0;
	ustate_clock_freeze(false);
	ustate_expiry_pause(false);
	ustate_watch_close(f->w);
	ustate_watch_close(f->w2);
	ustate_close(f->s2);
	ustate_close(f->s);
	if (f->kind == BACKEND_SQLITE)
		remove_dir(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static void put(ustate *s, const char *key, const char *val,
		uint64_t want_version)
{
	uint64_t v = 0;

	assert_int_equal(ustate_set(s, key, val, strlen(val), &v), 0);
	assert_int_equal(v, want_version);
}

static void assert_value(ustate *s, const char *key, const char *val,
			 uint64_t version)
{
	ustate_entry *e = NULL;

	assert_int_equal(ustate_get(s, key, &e), 0);
	assert_string_equal(e->key, key);
	assert_int_equal(e->value_len, strlen(val));
	assert_memory_equal(e->value, val, strlen(val) + 1);
	assert_int_equal(e->version, version);
	ustate_entry_free(e);
}

static void assert_absent(ustate *s, const char *key)
{
	ustate_entry *e = (ustate_entry *)1;
	uint64_t v = 1;

	assert_int_equal(ustate_get(s, key, &e), -ENOENT);
	assert_ptr_equal(e, (ustate_entry *)1);
	assert_int_equal(ustate_exists(s, key), 0);
	assert_int_equal(ustate_version(s, key, &v), 0);
	assert_int_equal(v, 0);
}

static uint64_t mod_revision(ustate *s, const char *key)
{
	ustate_entry *e = NULL;
	uint64_t rev;

	assert_int_equal(ustate_get(s, key, &e), 0);
	rev = e->mod_revision;
	ustate_entry_free(e);
	return rev;
}

/*
 * Everything a reader can see of a store, as text: the revision, then each
 * key with its metadata and value. Two equal snapshots mean no change.
 */
static char *snapshot(ustate *s)
{
	char *buf = NULL, **keys = NULL;
	size_t len = 0, n = 0, i, j;
	ustate_entry *e;
	FILE *fp;

	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	fprintf(fp, "revision %" PRIu64 "\n", ustate_revision(s));
	assert_int_equal(ustate_list(s, "", &keys, &n), 0);
	for (i = 0; i < n; i++) {
		assert_int_equal(ustate_get(s, keys[i], &e), 0);
		fprintf(fp,
			"%s v%" PRIu64 " m%" PRIu64 " c%" PRId64 " u%" PRId64
			" =",
			e->key, e->version, e->mod_revision, e->created_at,
			e->updated_at);
		for (j = 0; j < e->value_len; j++)
			fprintf(fp, "%02x", ((unsigned char *)e->value)[j]);
		if (e->lease)
			fprintf(fp, " lease %s", e->lease);
		fputc('\n', fp);
		ustate_entry_free(e);
	}
	ustate_list_free(keys, n);
	fclose(fp);
	return buf;
}

static void assert_snapshot(ustate *s, const char *before)
{
	char *now = snapshot(s);

	assert_string_equal(now, before);
	free(now);
}

static void assert_list(ustate *s, const char *prefix, const char *const *want,
			size_t nwant)
{
	char **keys = NULL;
	size_t n = 0, i;

	assert_int_equal(ustate_list(s, prefix, &keys, &n), 0);
	assert_int_equal(n, nwant);
	if (!n)
		assert_null(keys);
	for (i = 0; i < n; i++)
		assert_string_equal(keys[i], want[i]);
	ustate_list_free(keys, n);
}

static void expect_event(ustate_watch *w, ustate_event_type type,
			 const char *key, uint64_t version, uint64_t revision)
{
	ustate_event ev;

	memset(&ev, 0, sizeof(ev));
	assert_int_equal(ustate_watch_next(w, &ev, 2000), 0);
	assert_string_equal(ev.key, key);
	assert_int_equal(ev.type, type);
	assert_int_equal(ev.version, version);
	assert_int_equal(ev.revision, revision);
}

static void expect_no_event(ustate_watch *w)
{
	ustate_event ev;

	assert_int_equal(ustate_watch_next(w, &ev, 0), -EAGAIN);
}

/* 1 if fd polls readable within timeout_ms, else 0. */
static int readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int rc;

	rc = poll(&p, 1, timeout_ms);
	assert_true(rc >= 0);
	return rc > 0 && (p.revents & POLLIN);
}

/*
 * Make sure the watch dispatcher of s runs before a test that is about
 * something else: the first watch on a store starts it, and a write that
 * races its start goes unsignalled (test_watch_fd_first_write). This
 * writes the key /settle until a watch on it is signalled.
 */
static void settle_watches(ustate *s)
{
	ustate_watch *w;
	int i;

	assert_int_equal(ustate_watch_open(&w, s, "/settle", 0), 0);
	for (i = 0; i < 100; i++) {
		assert_int_equal(ustate_set(s, "/settle", "x", 1, NULL), 0);
		if (readable(ustate_watch_fd(w), 50))
			break;
	}
	ustate_watch_close(w);
	assert_true(i < 100);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000 +
	       (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * Add one to the decimal counter at key with get + compare-and-set,
 * retrying on a version conflict; *retries counts the conflicts.
 */
static int cas_increment(ustate *s, const char *key, int *retries)
{
	ustate_entry *e;
	char buf[32];
	uint64_t v;
	long val;
	int rc;

	for (;;) {
		rc = ustate_get(s, key, &e);
		if (rc < 0)
			return rc;
		val = strtol(e->value, NULL, 10);
		v = e->version;
		ustate_entry_free(e);
		snprintf(buf, sizeof(buf), "%ld", val + 1);
		rc = ustate_compare_and_set(s, key, v, buf, strlen(buf), NULL);
		if (rc != -ECANCELED)
			return rc;
		(*retries)++;
	}
}

/* Run a whole script in one piece; returns what the last feed returned. */
static int script_run(ustate *s, const char *text, char **reply)
{
	ustate_script *sc = NULL;
	const char *r;
	size_t len;
	int rc;

	assert_int_equal(ustate_script_new(&sc, s), 0);
	assert_int_equal(ustate_script_result(sc), 0);
	rc = ustate_script_feed(sc, text, strlen(text));
	r = ustate_script_reply(sc, &len);
	*reply = strndup(r, len);
	assert_int_equal(ustate_script_result(sc), rc);
	/* A commit that wrote is the store's last revision; nothing else. */
	if (rc != 1)
		assert_int_equal(ustate_script_revision(sc), 0);
	else if (ustate_script_revision(sc))
		assert_int_equal(ustate_script_revision(sc),
				 ustate_revision(s));
	ustate_script_free(sc);
	return rc;
}

/* ---- keys, values, versions -------------------------------------------- */

static void test_versions(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	uint64_t v = 99;

	assert_int_equal(ustate_version(s, "/a", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(ustate_exists(s, "/a"), 0);
	put(s, "/a", "one", 1);
	assert_int_equal(ustate_exists(s, "/a"), 1);
	assert_int_equal(ustate_version(s, "/a", &v), 0);
	assert_int_equal(v, 1);
	put(s, "/a", "two", 2);
	put(s, "/a", "three", 3);
	assert_value(s, "/a", "three", 3);

	assert_int_equal(ustate_delete(s, "/a"), 0);
	assert_absent(s, "/a");
	put(s, "/a", "again", 1);
	assert_value(s, "/a", "again", 1);

	/* The version pointer is optional. */
	assert_int_equal(ustate_set(s, "/a", "x", 1, NULL), 0);
	assert_value(s, "/a", "x", 2);
	/* Keys are independent. */
	put(s, "/a/b", "child", 1);
	assert_value(s, "/a", "x", 2);
}

static void test_get_entry(void **state)
{
	struct fixture *f = *state;
	ustate_entry *e = NULL;
	ustate *s = f->s;
	char key[] = "/g/a";
	uint64_t r1, r2, r3;
	time_t t0, t1;

	t0 = time(NULL);
	put(s, key, "hello", 1);
	r1 = ustate_revision(s);
	assert_int_equal(r1, REV(1));
	put(s, "/g/b", "other", 1);
	r2 = ustate_revision(s);
	assert_int_equal(r2, REV(2));

	assert_int_equal(ustate_get(s, key, &e), 0);
	t1 = time(NULL);
	assert_non_null(e);
	assert_string_equal(e->key, "/g/a");
	/* The entry owns a copy of the key. */
	assert_ptr_not_equal(e->key, key);
	assert_int_equal(e->value_len, 5);
	assert_memory_equal(e->value, "hello", 5);
	assert_int_equal(((char *)e->value)[5], '\0');
	assert_int_equal(e->version, 1);
	assert_int_equal(e->mod_revision, r1);
	assert_in_range(e->created_at, t0 - 2, t1 + 2);
	assert_in_range(e->updated_at, t0 - 2, t1 + 2);
	assert_true(e->created_at <= e->updated_at);
	ustate_entry_free(e);

	assert_int_equal(mod_revision(s, "/g/b"), r2);
	put(s, key, "changed", 2);
	r3 = ustate_revision(s);
	assert_int_equal(r3, REV(3));
	assert_int_equal(mod_revision(s, key), r3);
	assert_int_equal(mod_revision(s, "/g/b"), r2);
}

/* An update keeps created_at and moves updated_at; a re-create resets both. */
static void test_timestamps(void **state)
{
	struct fixture *f = *state;
	ustate_entry *e = NULL;
	int64_t created;
	ustate *s = f->s;

	put(s, "/ts", "1", 1);
	assert_int_equal(ustate_get(s, "/ts", &e), 0);
	created = e->created_at;
	assert_int_equal(e->updated_at, created);
	ustate_entry_free(e);

	usleep(1100 * 1000);
	put(s, "/ts", "2", 2);
	assert_int_equal(ustate_get(s, "/ts", &e), 0);
	assert_int_equal(e->created_at, created);
	assert_true(e->updated_at >= created + 1);
	ustate_entry_free(e);

	assert_int_equal(ustate_delete(s, "/ts"), 0);
	put(s, "/ts", "3", 1);
	assert_int_equal(ustate_get(s, "/ts", &e), 0);
	assert_true(e->created_at >= created + 1);
	assert_int_equal(e->updated_at, e->created_at);
	ustate_entry_free(e);
}

static void test_binary_and_empty_values(void **state)
{
	static const char bin[] = "a\0b\0\0c";
	struct fixture *f = *state;
	unsigned char all[256];
	ustate_entry *e = NULL;
	ustate *s = f->s;
	size_t big = 1 << 20, i;
	char *large;

	assert_int_equal(ustate_set(s, "/bin", bin, 6, NULL), 0);
	assert_int_equal(ustate_get(s, "/bin", &e), 0);
	assert_int_equal(e->value_len, 6);
	assert_memory_equal(e->value, bin, 6);
	assert_int_equal(((char *)e->value)[6], '\0');
	ustate_entry_free(e);

	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)i;
	assert_int_equal(ustate_set(s, "/all", all, sizeof(all), NULL), 0);
	assert_int_equal(ustate_get(s, "/all", &e), 0);
	assert_int_equal(e->value_len, sizeof(all));
	assert_memory_equal(e->value, all, sizeof(all));
	ustate_entry_free(e);

	/* An empty value, given as NULL or as "", is a value all the same. */
	assert_int_equal(ustate_set(s, "/empty", NULL, 0, NULL), 0);
	assert_int_equal(ustate_set(s, "/empty2", "", 0, NULL), 0);
	assert_int_equal(ustate_exists(s, "/empty"), 1);
	assert_int_equal(ustate_get(s, "/empty", &e), 0);
	assert_int_equal(e->value_len, 0);
	assert_non_null(e->value);
	assert_int_equal(((char *)e->value)[0], '\0');
	ustate_entry_free(e);
	assert_value(s, "/empty2", "", 1);

	large = malloc(big);
	assert_non_null(large);
	for (i = 0; i < big; i++)
		large[i] = (char)(i * 7 + i / 256);
	assert_int_equal(ustate_set(s, "/large", large, big, NULL), 0);
	assert_int_equal(ustate_get(s, "/large", &e), 0);
	assert_int_equal(e->value_len, big);
	assert_memory_equal(e->value, large, big);
	ustate_entry_free(e);
	free(large);
}

static void test_missing_key(void **state)
{
	struct fixture *f = *state;
	ustate_entry *e = (ustate_entry *)1;
	ustate *s = f->s;

	assert_int_equal(ustate_get(s, "/nope", &e), -ENOENT);
	assert_ptr_equal(e, (ustate_entry *)1);
	assert_int_equal(ustate_delete(s, "/nope"), -ENOENT);
	assert_absent(s, "/nope");
	put(s, "/nope/child", "x", 1);
	assert_int_equal(ustate_get(s, "/nope", &e), -ENOENT);
	assert_int_equal(ustate_delete(s, "/nope"), -ENOENT);
	assert_int_equal(ustate_delete(s, "/nope/child"), 0);
	assert_int_equal(ustate_delete(s, "/nope/child"), -ENOENT);
	/* Only the set and the first delete counted. */
	assert_int_equal(ustate_revision(s), REV(2));
}

static void test_max_value_size(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_txn_result res = {0};
	char buf[101], *before;
	uint64_t v = 0;
	json_t *j;
	ustate *s;
	ustate_op ops[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/ok",
		 .value = "1",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/new",
		 .value = buf,
		 .value_len = 101},
	};

	o.max_value_size = 100;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	s = f->s2;
	memset(buf, 'v', sizeof(buf));
	assert_int_equal(ustate_set(s, "/big", buf, 100, &v), 0);
	assert_int_equal(v, 1);

	before = snapshot(s);
	v = 42;
	assert_int_equal(ustate_set(s, "/big", buf, 101, &v), -EFBIG);
	assert_int_equal(v, 42);
	assert_int_equal(ustate_set(s, "/new", buf, 101, NULL), -EFBIG);
	assert_int_equal(ustate_create_if_not_exists(s, "/new", buf, 101, &v),
			 -EFBIG);
	assert_int_equal(ustate_compare_and_set(s, "/big", 1, buf, 101, &v),
			 -EFBIG);
	assert_int_equal(v, 42);
	assert_int_equal(ustate_transaction(s, ops, 2, &res), -EFBIG);
	j = json_string("a string whose JSON text is longer than one hundred "
			"bytes, which is the limit of this particular store");
	assert_int_equal(ustate_set_json(s, "/json", j, NULL), -EFBIG);
	json_decref(j);
	assert_snapshot(s, before);
	assert_absent(s, "/new");
	assert_absent(s, "/ok");
	free(before);
}

/* ---- revisions --------------------------------------------------------- */

static void test_revision(void **state)
{
	struct fixture *f = *state;
	ustate_txn_result res = {0};
	ustate *s = f->s;
	uint64_t v;
	ustate_op write3[3] = {
		{.type = USTATE_OP_SET,
		 .key = "/r/a",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/r/d",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/r/c"},
	};
	ustate_op checks[2] = {
		{.type = USTATE_OP_CHECK_VERSION, .key = "/r/a", .version = 4},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/r/x", .version = 0},
	};
	ustate_op bad_check[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/r/a",
		 .value = "u",
		 .value_len = 1},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/r/x", .version = 3},
	};

	assert_int_equal(ustate_revision(s), REV(0));
	put(s, "/r/a", "1", 1);
	assert_int_equal(ustate_revision(s), REV(1));
	put(s, "/r/a", "2", 2);
	assert_int_equal(ustate_revision(s), REV(2));
	put(s, "/r/b", "1", 1);
	assert_int_equal(ustate_revision(s), REV(3));
	assert_int_equal(ustate_delete(s, "/r/b"), 0);
	assert_int_equal(ustate_revision(s), REV(4));
	assert_int_equal(ustate_compare_and_set(s, "/r/a", 2, "3", 1, &v), 0);
	assert_int_equal(ustate_revision(s), REV(5));
	assert_int_equal(ustate_create_if_not_exists(s, "/r/c", "c", 1, &v), 0);
	assert_int_equal(ustate_revision(s), REV(6));

	/* Failed writes do not count. */
	assert_int_equal(ustate_compare_and_set(s, "/r/a", 1, "x", 1, &v),
			 -ECANCELED);
	assert_int_equal(ustate_create_if_not_exists(s, "/r/c", "c", 1, &v),
			 -EEXIST);
	assert_int_equal(ustate_delete(s, "/r/zz"), -ENOENT);
	assert_int_equal(ustate_set(s, "/r//bad", "x", 1, &v), -EINVAL);
	assert_int_equal(ustate_revision(s), REV(6));

	/* A transaction counts once, and all its keys share the revision. */
	assert_int_equal(ustate_transaction(s, write3, 3, &res), 0);
	assert_int_equal(res.revision, REV(7));
	assert_int_equal(ustate_revision(s), REV(7));
	assert_int_equal(mod_revision(s, "/r/a"), REV(7));
	assert_int_equal(mod_revision(s, "/r/d"), REV(7));
	assert_absent(s, "/r/c");

	/* Neither a check-only nor a failed transaction counts. */
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, checks, 2, &res), 0);
	assert_int_equal(res.revision, REV(7));
	assert_int_equal(ustate_revision(s), REV(7));
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, bad_check, 2, &res), -ECANCELED);
	assert_int_equal(res.revision, REV(7));
	assert_int_equal(ustate_revision(s), REV(7));
	assert_int_equal(ustate_transaction(s, NULL, 0, NULL), 0);
	assert_int_equal(ustate_revision(s), REV(7));
}

/* ---- listing ----------------------------------------------------------- */

static void test_list(void **state)
{
	static const char *const sorted[] = {
		"/Z", "/a", "/a b", "/a/b", "/a/c/d", "/ab", "/b", "/\xc3\xa4",
	};
	static const char *const under_a[] = {
		"/a", "/a b", "/a/b", "/a/c/d", "/ab",
	};
	static const char *const under_a_slash[] = {"/a/b", "/a/c/d"};
	static const size_t order[] = {5, 7, 0, 3, 6, 1, 4, 2};
	struct fixture *f = *state;
	char **keys = (char **)1;
	char prefix[2050];
	ustate *s = f->s;
	size_t i, n = 99;

	assert_list(s, "", NULL, 0);
	for (i = 0; i < ARRAY_SIZE(order); i++)
		put(s, sorted[order[i]], "v", 1);
	assert_list(s, "", sorted, ARRAY_SIZE(sorted));
	assert_list(s, "/", sorted, ARRAY_SIZE(sorted));
	assert_list(s, "/a", under_a, ARRAY_SIZE(under_a));
	assert_list(s, "/a/", under_a_slash, ARRAY_SIZE(under_a_slash));
	assert_list(s, "/a/c/d", &under_a_slash[1], 1);
	assert_list(s, "/\xc3\xa4", &sorted[7], 1);
	assert_list(s, "/nomatch", NULL, 0);
	assert_list(s, "/a/c/d/e", NULL, 0);
	assert_list(s, "zzz", NULL, 0);

	assert_int_equal(ustate_delete(s, "/a b"), 0);
	assert_list(s, "/a/", under_a_slash, ARRAY_SIZE(under_a_slash));
	assert_list(s, "/a ", NULL, 0);

	/* A prefix is plain text: no wildcard of LIKE or GLOB. */
	put(s, "/w%x", "v", 1);
	put(s, "/w_x", "v", 1);
	put(s, "/w*x", "v", 1);
	put(s, "/wax", "v", 1);
	assert_list(s, "/w%", (const char *const[]){"/w%x"}, 1);
	assert_list(s, "/w_", (const char *const[]){"/w_x"}, 1);
	assert_list(s, "/w*", (const char *const[]){"/w*x"}, 1);
	assert_list(s, "/w",
		    (const char *const[]){"/w%x", "/w*x", "/w_x", "/wax"}, 4);

	/* Bad prefixes, and *keys and *n left alone. */
	assert_int_equal(ustate_list(s, "/a\x01", &keys, &n), -EINVAL);
	assert_int_equal(ustate_list(s, "/\n", &keys, &n), -EINVAL);
	assert_int_equal(ustate_list(s, "/\xc3", &keys, &n), -EINVAL);
	assert_int_equal(ustate_list(s, "/\xff", &keys, &n), -EINVAL);
	memset(prefix, 'p', 2049);
	prefix[0] = '/';
	prefix[2049] = '\0';
	assert_int_equal(ustate_list(s, prefix, &keys, &n), -ENAMETOOLONG);
	assert_ptr_equal(keys, (char **)1);
	assert_int_equal(n, 99);
	prefix[2048] = '\0';
	assert_list(s, prefix, NULL, 0);
}

/*
 * Apply n ops in one transaction; on etcd, whose --max-txn-ops (128 by
 * default) holds 42 writes in a Txn, in transactions of 42. Returns the
 * number of transactions.
 */
#define ETCD_TXN_WRITES 42
static uint64_t txn_many(struct fixture *f, ustate *s, const ustate_op *ops,
			 size_t n)
{
	size_t step = f->kind == BACKEND_ETCD ? ETCD_TXN_WRITES : n, i;
	uint64_t txns = 0;

	for (i = 0; i < n; i += step, txns++)
		assert_int_equal(ustate_transaction(s, ops + i,
						    n - i < step ? n - i : step,
						    NULL),
				 0);
	return txns;
}

static void test_list_1000(void **state)
{
	struct fixture *f = *state;
	char(*names)[16], **keys = NULL;
	ustate *s = f->s;
	uint64_t txns;
	size_t i, n = 0;
	ustate_op *ops;

	names = calloc(1000, sizeof(*names));
	ops = calloc(1000, sizeof(*ops));
	assert_non_null(names);
	assert_non_null(ops);
	/* Written in a scrambled order, in one transaction. */
	for (i = 0; i < 1000; i++) {
		snprintf(names[i], sizeof(names[i]), "/k/%04zu",
			 i * 7919 % 1000);
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = names[i],
				     .value = names[i],
				     .value_len = strlen(names[i])};
	}
	txns = txn_many(f, s, ops, 1000);
	assert_int_equal(ustate_revision(s), REV(txns));
	put(s, "/k0", "not under /k/", 1);
	put(s, "/j/0120", "not under /k/", 1);

	assert_int_equal(ustate_list(s, "/k/012", &keys, &n), 0);
	assert_int_equal(n, 10);
	for (i = 0; i < n; i++) {
		char want[32];

		snprintf(want, sizeof(want), "/k/012%u", (unsigned)i);
		assert_string_equal(keys[i], want);
	}
	ustate_list_free(keys, n);

	assert_int_equal(ustate_list(s, "/k/", &keys, &n), 0);
	assert_int_equal(n, 1000);
	for (i = 0; i < n; i++) {
		char want[32];

		snprintf(want, sizeof(want), "/k/%04u", (unsigned)i);
		assert_string_equal(keys[i], want);
	}
	ustate_list_free(keys, n);
	assert_int_equal(ustate_list(s, "", &keys, &n), 0);
	assert_int_equal(n, 1002);
	ustate_list_free(keys, n);
	assert_value(s, "/k/0999", "/k/0999", 1);
	assert_in_range(mod_revision(s, "/k/0500"), REV(1), REV(txns));
	free(ops);
	free(names);
}

/* ---- compare-and-set, create ------------------------------------------- */

static void test_compare_and_set(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	uint64_t r, v = 0;

	put(s, "/c", "one", 1);
	assert_int_equal(ustate_compare_and_set(s, "/c", 1, "two", 3, &v), 0);
	assert_int_equal(v, 2);
	assert_value(s, "/c", "two", 2);

	r = ustate_revision(s);
	v = 0;
	assert_int_equal(ustate_compare_and_set(s, "/c", 1, "bad", 3, &v),
			 -ECANCELED);
	assert_int_equal(v, 2);
	assert_int_equal(ustate_compare_and_set(s, "/c", 3, "bad", 3, &v),
			 -ECANCELED);
	assert_int_equal(v, 2);
	/* 0 means "must not exist". */
	assert_int_equal(ustate_compare_and_set(s, "/c", 0, "bad", 3, &v),
			 -ECANCELED);
	assert_int_equal(v, 2);
	assert_value(s, "/c", "two", 2);
	assert_int_equal(ustate_revision(s), r);

	assert_int_equal(ustate_compare_and_set(s, "/new", 5, "x", 1, &v),
			 -ECANCELED);
	assert_int_equal(v, 0);
	assert_absent(s, "/new");
	assert_int_equal(ustate_compare_and_set(s, "/new", 0, "x", 1, &v), 0);
	assert_int_equal(v, 1);
	assert_value(s, "/new", "x", 1);
	assert_int_equal(ustate_compare_and_set(s, "/new", 1, "y", 1, NULL), 0);
	assert_value(s, "/new", "y", 2);
	assert_int_equal(ustate_compare_and_set(s, "/new", 1, "z", 1, NULL),
			 -ECANCELED);

	/* After a delete the key is absent again: expected 0 works. */
	assert_int_equal(ustate_delete(s, "/c"), 0);
	assert_int_equal(ustate_compare_and_set(s, "/c", 2, "bad", 3, &v),
			 -ECANCELED);
	assert_int_equal(v, 0);
	assert_int_equal(ustate_compare_and_set(s, "/c", 0, "re", 2, &v), 0);
	assert_int_equal(v, 1);
}

static void test_create_if_not_exists(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	uint64_t r, v = 0;

	assert_int_equal(ustate_create_if_not_exists(s, "/n", "one", 3, &v), 0);
	assert_int_equal(v, 1);
	r = ustate_revision(s);
	v = 0;
	assert_int_equal(ustate_create_if_not_exists(s, "/n", "two", 3, &v),
			 -EEXIST);
	assert_int_equal(v, 1);
	assert_value(s, "/n", "one", 1);
	assert_int_equal(ustate_revision(s), r);

	put(s, "/n", "three", 2);
	assert_int_equal(ustate_create_if_not_exists(s, "/n", "four", 4, &v),
			 -EEXIST);
	assert_int_equal(v, 2);
	assert_int_equal(ustate_create_if_not_exists(s, "/n", "four", 4, NULL),
			 -EEXIST);
	assert_value(s, "/n", "three", 2);

	assert_int_equal(ustate_delete(s, "/n"), 0);
	assert_int_equal(ustate_create_if_not_exists(s, "/n", "five", 4, &v),
			 0);
	assert_int_equal(v, 1);
	assert_value(s, "/n", "five", 1);
}

/* ---- transactions ------------------------------------------------------ */

static void test_txn_all_or_nothing(void **state)
{
	/* Each op here would succeed on the state below. */
	static const ustate_op good[4] = {
		{.type = USTATE_OP_SET,
		 .key = "/t/a",
		 .value = "A",
		 .value_len = 1},
		{.type = USTATE_OP_CREATE,
		 .key = "/t/b",
		 .value = "B",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/t/c"},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/t/x", .version = 1},
	};
	/* ... and each of these fails, wherever it stands. */
	static const struct {
		ustate_op op;
		int err;
		uint64_t found;
	} bad[] = {
		{{.type = USTATE_OP_CHECK_VERSION, .key = "/t/x", .version = 5},
		 -ECANCELED,
		 1},
		{{.type = USTATE_OP_CHECK_VERSION,
		  .key = "/t/missing",
		  .version = 1},
		 -ECANCELED,
		 0},
		{{.type = USTATE_OP_CREATE,
		  .key = "/t/x",
		  .value = "X",
		  .value_len = 1},
		 -EEXIST,
		 1},
		{{.type = USTATE_OP_DELETE, .key = "/t/missing"}, -ENOENT, 0},
	};
	struct fixture *f = *state;
	ustate *s = f->s;
	ustate_txn_result res;
	uint64_t versions[4], r, xrev;
	ustate_op ops[4];
	char *before;
	size_t pos, k;

	put(s, "/t/a", "a", 1);
	put(s, "/t/c", "c", 1);
	put(s, "/t/c", "c", 2);
	put(s, "/t/x", "x", 1);
	xrev = mod_revision(s, "/t/x");
	r = ustate_revision(s);
	before = snapshot(s);

	for (k = 0; k < ARRAY_SIZE(bad); k++) {
		for (pos = 0; pos < 4; pos++) {
			memcpy(ops, good, sizeof(ops));
			ops[pos] = bad[k].op;
			memset(&res, 0, sizeof(res));
			res.versions = versions;
			res.failed = 99;
			res.found = 99;
			assert_int_equal(ustate_transaction(s, ops, 4, &res),
					 bad[k].err);
			assert_int_equal(res.failed, pos);
			assert_int_equal(res.found, bad[k].found);
			assert_int_equal(res.revision, r);
			assert_snapshot(s, before);
		}
	}
	free(before);

	memset(&res, 0, sizeof(res));
	res.versions = versions;
	assert_int_equal(ustate_transaction(s, good, 4, &res), 0);
	assert_int_equal(res.revision, r + 1);
	assert_int_equal(ustate_revision(s), r + 1);
	assert_int_equal(versions[0], 2);
	assert_int_equal(versions[1], 1);
	assert_int_equal(versions[2], 0);
	assert_int_equal(versions[3], 1);
	assert_value(s, "/t/a", "A", 2);
	assert_value(s, "/t/b", "B", 1);
	assert_absent(s, "/t/c");
	assert_value(s, "/t/x", "x", 1);
	assert_int_equal(mod_revision(s, "/t/a"), r + 1);
	assert_int_equal(mod_revision(s, "/t/b"), r + 1);
	assert_int_equal(mod_revision(s, "/t/x"), xrev);

	/* The same ops again: now the create and the delete fail. */
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, good, 4, &res), -EEXIST);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.found, 1);
}

static void test_txn_same_key(void **state)
{
	bool net;
	struct fixture *f = *state;
	ustate *s = f->s;
	ustate_txn_result res;
	uint64_t v[3], r;
	char *before;
	ustate_op set_set[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/s",
		 .value = "1",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/s",
		 .value = "2",
		 .value_len = 1},
	};
	ustate_op delete_create[2] = {
		{.type = USTATE_OP_DELETE, .key = "/s"},
		{.type = USTATE_OP_CREATE,
		 .key = "/s",
		 .value = "new",
		 .value_len = 3},
	};
	ustate_op set_check[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/m",
		 .value = "m",
		 .value_len = 1},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/m", .version = 0},
	};
	ustate_op check_set_check[3] = {
		{.type = USTATE_OP_CHECK_VERSION, .key = "/m", .version = 1},
		{.type = USTATE_OP_SET,
		 .key = "/m",
		 .value = "m2",
		 .value_len = 2},
		{.type = USTATE_OP_CHECK_VERSION, .key = "/m", .version = 1},
	};
	ustate_op create_create[2] = {
		{.type = USTATE_OP_CREATE,
		 .key = "/q",
		 .value = "1",
		 .value_len = 1},
		{.type = USTATE_OP_CREATE,
		 .key = "/q",
		 .value = "2",
		 .value_len = 1},
	};
	ustate_op delete_delete[2] = {
		{.type = USTATE_OP_DELETE, .key = "/s"},
		{.type = USTATE_OP_DELETE, .key = "/s"},
	};
	ustate_op create_delete[2] = {
		{.type = USTATE_OP_CREATE,
		 .key = "/z",
		 .value = "1",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/z"},
	};
	ustate_op set_delete_set[3] = {
		{.type = USTATE_OP_SET,
		 .key = "/u",
		 .value = "a",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/u"},
		{.type = USTATE_OP_SET,
		 .key = "/u",
		 .value = "b",
		 .value_len = 1},
	};

	/*
	 * etcd takes one write of a key in a Txn: there a transaction does
	 * the net effect of its ops on each key, every op on a key reports
	 * the version the key ends at, and a transaction whose net effect
	 * is nothing takes no revision. Elsewhere each op is a step.
	 */
	net = f->kind == BACKEND_ETCD;
	memset(&res, 0, sizeof(res));
	res.versions = v;
	assert_int_equal(ustate_transaction(s, set_set, 2, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], net ? 1 : 2);
	assert_value(s, "/s", "2", net ? 1 : 2);
	assert_int_equal(ustate_revision(s), REV(1));
	assert_int_equal(ustate_transaction(s, set_set, 2, &res), 0);
	assert_int_equal(v[0], net ? 2 : 3);
	assert_int_equal(v[1], net ? 2 : 4);
	assert_value(s, "/s", "2", net ? 2 : 4);
	assert_int_equal(ustate_revision(s), REV(2));

	assert_int_equal(ustate_transaction(s, delete_create, 2, &res), 0);
	assert_int_equal(v[0], net ? 3 : 0);
	assert_int_equal(v[1], net ? 3 : 1);
	assert_value(s, "/s", "new", net ? 3 : 1);

	/* Checks see the state before the transaction. */
	assert_int_equal(ustate_transaction(s, set_check, 2, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 0);
	assert_value(s, "/m", "m", 1);
	assert_int_equal(ustate_transaction(s, check_set_check, 3, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 2);
	assert_int_equal(v[2], 1);
	assert_value(s, "/m", "m2", 2);

	/* Creates and deletes see the earlier ops. */
	r = ustate_revision(s);
	before = snapshot(s);
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, create_create, 2, &res),
			 -EEXIST);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.found, 1);
	assert_absent(s, "/q");
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, delete_delete, 2, &res),
			 -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.found, 0);
	assert_snapshot(s, before);
	free(before);

	memset(&res, 0, sizeof(res));
	res.versions = v;
	assert_int_equal(ustate_transaction(s, create_delete, 2, &res), 0);
	assert_int_equal(v[0], net ? 0 : 1);
	assert_int_equal(v[1], 0);
	assert_absent(s, "/z");
	assert_int_equal(ustate_revision(s), net ? r : r + 1);
	assert_int_equal(res.revision, net ? r : r + 1);

	assert_int_equal(ustate_transaction(s, set_delete_set, 3, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], net ? 1 : 0);
	assert_int_equal(v[2], 1);
	assert_value(s, "/u", "b", 1);
	assert_int_equal(ustate_revision(s), net ? r + 1 : r + 2);
}

static void test_txn_limits(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_txn_result res;
	ustate *s = f->s;
	char *before, long_seg[300];
	ustate_op ops[4];
	size_t i;

	o.max_txn_ops = 3;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	for (i = 0; i < 4; i++)
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = i % 2 ? "/l/odd" : "/l/even",
				     .value = "v",
				     .value_len = 1};
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(f->s2, ops, 4, &res), -E2BIG);
	assert_int_equal(ustate_transaction(f->s2, ops, 4, NULL), -E2BIG);
	assert_int_equal(ustate_revision(f->s2), REV(0));
	assert_absent(f->s2, "/l/odd");
	assert_int_equal(ustate_transaction(f->s2, ops, 3, &res), 0);
	assert_int_equal(res.revision, REV(1));
	/* etcd: one write of a key in a Txn (test_txn_same_key). */
	assert_value(f->s2, "/l/even", "v", f->kind == BACKEND_ETCD ? 1 : 2);

	/*
	 * No ops: nothing to do, and nothing changes. (On etcd the writes
	 * of f->s2, another prefix, moved the revision too.)
	 */
	put(s, "/l/x", "x", 1);
	before = snapshot(s);
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, NULL, 0, &res), 0);
	assert_int_equal(res.revision,
			 f->kind == BACKEND_ETCD ? ustate_revision(s) : REV(1));
	assert_int_equal(ustate_transaction(s, ops, 0, NULL), 0);
	assert_snapshot(s, before);

	/* A bad key or op type anywhere: -EINVAL, naming the op. */
	memset(long_seg, 'x', sizeof(long_seg));
	long_seg[0] = '/';
	long_seg[sizeof(long_seg) - 1] = '\0';
	for (i = 0; i < 4; i++) {
		ustate_op bad[4];

		memcpy(bad, ops, sizeof(bad));
		bad[i].key = "/l/./x";
		memset(&res, 0, sizeof(res));
		assert_int_equal(ustate_transaction(s, bad, 4, &res), -EINVAL);
		assert_int_equal(res.failed, i);

		memcpy(bad, ops, sizeof(bad));
		bad[i].key = long_seg;
		memset(&res, 0, sizeof(res));
		assert_int_equal(ustate_transaction(s, bad, 4, &res),
				 -ENAMETOOLONG);
		assert_int_equal(res.failed, i);

		memcpy(bad, ops, sizeof(bad));
		bad[i].type = (ustate_op_type)0;
		memset(&res, 0, sizeof(res));
		assert_int_equal(ustate_transaction(s, bad, 4, &res), -EINVAL);
		assert_int_equal(res.failed, i);

		memcpy(bad, ops, sizeof(bad));
		bad[i].type = (ustate_op_type)99;
		memset(&res, 0, sizeof(res));
		assert_int_equal(ustate_transaction(s, bad, 4, &res), -EINVAL);
		assert_int_equal(res.failed, i);
	}
	assert_snapshot(s, before);
	free(before);
}

/* ---- read-only stores and options -------------------------------------- */

static void test_read_only(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_txn_result res;
	const char *key = "/ro/a";
	ustate_entry *e = NULL;
	char *before, **keys, *reply;
	uint64_t v, exp_rev;
	ustate_event ev;
	json_t *j;
	ustate *ro;
	size_t n;
	ustate_op write1 = {.type = USTATE_OP_SET,
			    .key = "/ro/b",
			    .value = "b",
			    .value_len = 1};
	ustate_op check_delete[2] = {
		{.type = USTATE_OP_CHECK_VERSION, .key = key, .version = 2},
		{.type = USTATE_OP_DELETE, .key = key},
	};

	o.read_only = 1;
	if (f->kind == BACKEND_SQLITE) {
		put(f->s, key, "x", 1);
		put(f->s, key, "y", 2);
		ustate_close(f->s);
		f->s = NULL;
		assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
		exp_rev = 2;
	} else {
		assert_int_equal(ustate_open_memory(&f->s2, &o), 0);
		exp_rev = 0;
	}
	ro = f->s2;
	before = snapshot(ro);

	/* Every write is -EROFS. */
	assert_int_equal(ustate_set(ro, key, "z", 1, &v), -EROFS);
	assert_int_equal(ustate_set(ro, "/ro/new", "z", 1, &v), -EROFS);
	assert_int_equal(ustate_delete(ro, key), -EROFS);
	assert_int_equal(ustate_compare_and_set(ro, key, 2, "z", 1, &v),
			 -EROFS);
	assert_int_equal(ustate_compare_and_set(ro, "/ro/new", 0, "z", 1, &v),
			 -EROFS);
	assert_int_equal(ustate_create_if_not_exists(ro, "/ro/new", "z", 1, &v),
			 -EROFS);
	assert_int_equal(ustate_transaction(ro, &write1, 1, NULL), -EROFS);
	assert_int_equal(ustate_transaction(ro, check_delete, 2, NULL), -EROFS);
	j = json_integer(1);
	assert_int_equal(ustate_set_json(ro, "/ro/json", j, NULL), -EROFS);
	json_decref(j);
	assert_snapshot(ro, before);
	free(before);

	/* Every read works. */
	assert_int_equal(ustate_revision(ro), exp_rev);
	assert_int_equal(ustate_list(ro, "/ro/", &keys, &n), 0);
	assert_int_equal(n, f->kind == BACKEND_SQLITE ? 1 : 0);
	ustate_list_free(keys, n);
	assert_int_equal(ustate_exists(ro, "/ro/new"), 0);
	if (f->kind == BACKEND_SQLITE) {
		assert_value(ro, key, "y", 2);
		assert_int_equal(ustate_exists(ro, key), 1);
	} else {
		assert_int_equal(ustate_get(ro, key, &e), -ENOENT);
	}
	assert_int_equal(ustate_watch_open(&f->w, ro, "/ro/*", 0), 0);
	expect_no_event(f->w);

	/* A transaction of checks only writes nothing: it is a read. */
	memset(&res, 0, sizeof(res));
	check_delete[0].version = f->kind == BACKEND_SQLITE ? 2 : 0;
	assert_int_equal(ustate_transaction(ro, check_delete, 1, &res), 0);
	assert_int_equal(res.revision, exp_rev);
	memset(&res, 0, sizeof(res));
	check_delete[0].version = 7;
	assert_int_equal(ustate_transaction(ro, check_delete, 1, &res),
			 -ECANCELED);
	assert_int_equal(res.failed, 0);

	/* Scripts: writes are -EROFS, checks and gets work. */
	assert_int_equal(script_run(ro, "set /ro/new 1\nz\ncommit\n", &reply),
			 -EROFS);
	free(reply);
	assert_int_equal(
		script_run(ro, "check /ro/new 0\nget /ro/a\ncommit\n", &reply),
		1);
	free(reply);

	if (f->kind != BACKEND_SQLITE)
		return;
	/* A read-only handle sees the writes of a writer on the same file. */
	o.read_only = 0;
	assert_int_equal(ustate_open_sqlite(&f->s, f->path, &o), 0);
	put(f->s, "/ro/b", "b", 1);
	assert_value(ro, "/ro/b", "b", 1);
	assert_int_equal(ustate_revision(ro), REV(3));
	assert_int_equal(ustate_watch_next(f->w, &ev, 2000), 0);
	assert_string_equal(ev.key, "/ro/b");
	assert_int_equal(ev.revision, REV(3));
}

static void test_options(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate *s = (ustate *)1;

	o.version = 0;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	o.version = USTATE_OPTIONS_VERSION + 1;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	o = fast_options();
	o.sync = (ustate_sync)42;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	/* One revision holds at most 2^20 - 1 changes. */
	o = fast_options();
	o.max_txn_ops = USTATE_MAX_TXN_OPS + 1;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	o.max_txn_ops = USTATE_MAX_TXN_OPS;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	ustate_close(f->s2);
	f->s2 = NULL;

	/* NULL means the defaults (full sync included). */
	assert_int_equal(open_fresh(f, NULL, &f->s2), 0);
	put(f->s2, "/defaults", "ok", 1);
	assert_value(f->s2, "/defaults", "ok", 1);
	assert_int_equal(ustate_revision(f->s2), REV(1));
}

/* Timeouts: 1 ms to one hour; 0 is no default but an error. */
static void test_options_timeouts(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate *s = (ustate *)1;
	int rc;

	o.request_timeout = 0;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	o = fast_options();
	o.dial_timeout = 0;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	o = fast_options();
	o.request_timeout = USTATE_MAX_TIMEOUT_MS + 1;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	o = fast_options();
	o.dial_timeout = USTATE_MAX_TIMEOUT_MS + 1;
	assert_int_equal(open_fresh(f, &o, &s), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	o = fast_options();
	o.request_timeout = USTATE_MAX_TIMEOUT_MS;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	put(f->s2, "/t", "ok", 1);
	/*
	 * 1 ms to connect is a value it takes: on etcd, a connection to
	 * loopback may still take longer (under valgrind it does), and
	 * then the open says so.
	 */
	o = fast_options();
	o.dial_timeout = 1;
	s = NULL;
	rc = open_fresh(f, &o, &s);
	if (rc != -ETIMEDOUT)
		assert_int_equal(rc, 0);
	ustate_close(s);
}

/* ustate_options as a program built against version 1 has it. */
struct options_v1 {
	unsigned version;
	ustate_sync sync;
	size_t max_value_size;
	int read_only;
	uint64_t history;
	size_t max_txn_ops;
};

/*
 * A version 1 struct, of exactly its size (so that the sanitizers see a
 * read past it), is read for its fields alone: the version 2 fields get
 * their defaults, whatever bytes follow it in memory.
 */
static void test_options_v1(void **state)
{
	ustate_options def = USTATE_OPTIONS_INIT, got;
	struct fixture *f = *state;
	struct options_v1 *v1;
	char *big;

	/* The version 1 fields are the version 2 struct's first ones. */
	assert_int_equal(offsetof(ustate_options, max_txn_ops),
			 offsetof(struct options_v1, max_txn_ops));
	v1 = malloc(sizeof(*v1));
	assert_non_null(v1);
	*v1 = (struct options_v1){.version = 1,
				  .sync = USTATE_SYNC_NORMAL,
				  .max_value_size = 4321,
				  .read_only = 0,
				  .history = 55,
				  .max_txn_ops = 7};
	assert_int_equal(open_fresh(f, (const ustate_options *)v1, &f->s2), 0);
	free(v1);
	memset(&got, 0xa5, sizeof(got));
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.version, USTATE_OPTIONS_VERSION);
	assert_int_equal(got.sync, USTATE_SYNC_NORMAL);
	assert_int_equal(got.max_value_size, 4321);
	assert_int_equal(got.read_only, 0);
	assert_int_equal(got.history, 55);
	assert_int_equal(got.max_txn_ops, 7);
	assert_int_equal(got.request_timeout, def.request_timeout);
	assert_int_equal(got.request_timeout, 5000);
	assert_int_equal(got.dial_timeout, 2000);
	assert_null(got.tls_ca);
	assert_null(got.tls_cert);
	assert_null(got.tls_key);
	assert_null(got.user);
	assert_null(got.password);
	assert_null(got.log);
	assert_null(got.log_arg);
	put(f->s2, "/v1", "ok", 1);
	big = calloc(1, 4322);
	assert_non_null(big);
	assert_int_equal(ustate_set(f->s2, "/big", big, 4322, NULL), -EFBIG);
	assert_int_equal(ustate_set(f->s2, "/big", big, 4321, NULL), 0);
	free(big);
}

/* ---- ustate_open() and the log ----------------------------------------- */

/* What a log function received. */
struct log_record {
	int calls;
	int priority;
	char msg[1100];
};

static void record_log(void *arg, int priority, const char *msg)
{
	struct log_record *r = arg;

	r->calls++;
	r->priority = priority;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

/*
 * Sources that name no store: NULL, "", an unknown scheme; etcd:// and
 * etcds:// without the etcd backend. Nothing is set, and bad options
 * are -EINVAL whatever the source.
 */
static void test_open_bad_sources(void **state)
{
	ustate_options o = fast_options();
	struct log_record r = {0};
	ustate *s = (ustate *)1;

	(void)state;
	o.log = record_log; /* quiet */
	o.log_arg = &r;
	assert_int_equal(ustate_open(&s, NULL, &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "foo://x", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "://x", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "ETCD://h:2379/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcdx://h:2379/p", &o), -EINVAL);
	/* etcd SOURCEs that do not parse: no request is made. */
	assert_int_equal(ustate_open(&s, "etcd://", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379/", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379/p/", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379/p//q", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379/p/./q", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:2379p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://:2379/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:0/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:65536/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:x/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:1,,g:2/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://h:1,/p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcds:///p", &o), -EINVAL);
	assert_int_equal(ustate_open(&s, "etcd://[::1/p", &o), -EINVAL);
	o.request_timeout = 0;
	assert_int_equal(ustate_open(&s, ":memory:", &o), -EINVAL);
	o.request_timeout = 5000;
	o.consistency = 2;
	assert_int_equal(ustate_open(&s, ":memory:", &o), -EINVAL);
	o.consistency = USTATE_CONSISTENCY_LOCAL;
	o.version = USTATE_OPTIONS_VERSION + 1;
	assert_int_equal(ustate_open(&s, ":memory:", &o), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
}

/*
 * A failed open says why through the caller's log function: one line,
 * at LOG_ERR, naming the source and the unknown scheme.
 */
static void test_open_log(void **state)
{
	ustate_options o = fast_options();
	struct log_record r = {0};
	ustate *s = (ustate *)1;

	(void)state;
	o.log = record_log;
	o.log_arg = &r;
	assert_int_equal(ustate_open(&s, "foo://x", &o), -EINVAL);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.priority, LOG_ERR);
	assert_non_null(strstr(r.msg, "foo://x"));
	assert_non_null(strstr(r.msg, "\"foo\""));
	assert_null(strchr(r.msg, '\n'));
	/* An etcd SOURCE that does not parse: named, with its form. */
	r.calls = 0;
	assert_int_equal(ustate_open(&s, "etcd://h:2379/p/", &o), -EINVAL);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.priority, LOG_ERR);
	assert_non_null(strstr(r.msg, "etcd://h:2379/p/"));
	assert_non_null(strstr(r.msg, "PREFIX"));
	/* No member answers: -ECONNREFUSED, the endpoint and the cause. */
	r.calls = 0;
	assert_int_equal(ustate_open(&s, "etcd://127.0.0.1:1/p", &o),
			 -ECONNREFUSED);
	assert_ptr_equal(s, (ustate *)1);
	assert_true(r.calls >= 1);
	assert_int_equal(r.priority, LOG_ERR);
	assert_non_null(strstr(r.msg, "127.0.0.1:1"));
	assert_non_null(strstr(r.msg, "refused"));
	r.calls = 0;
	assert_int_equal(ustate_open(&s, "", &o), -EINVAL);
	assert_int_equal(r.calls, 1);
	assert_ptr_equal(s, (ustate *)1);

	/* A store that opens says nothing. */
	r.calls = 0;
	assert_int_equal(ustate_open(&s, ":memory:", &o), 0);
	ustate_close(s);
	assert_int_equal(r.calls, 0);
}

/* Run fn with stderr in a file; return what it wrote (static buffer). */
static const char *stderr_of(void (*fn)(void))
{
	static char out[2048];
	FILE *tmp = tmpfile();
	int saved;
	size_t n;

	assert_non_null(tmp);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
	fn();
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, sizeof(out) - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return out;
}

static void open_unknown_scheme(void)
{
	ustate *s;

	assert_int_equal(ustate_open(&s, "foo://x", NULL), -EINVAL);
}

static void log_each_level(void)
{
	ustate_options o = fast_options();

	ustate_log(&o, LOG_ERR, "an error %d", 1);
	ustate_log(&o, LOG_WARNING, "a warning\n");
	ustate_log(&o, LOG_NOTICE, "a notice");
	ustate_log(&o, LOG_INFO, "some info");
	ustate_log(&o, LOG_DEBUG, "a detail");
	ustate_log(NULL, LOG_ERR, "without options");
}

/*
 * Without a log function, warnings and worse go to stderr as
 * "ustate: MSG", one line each; the rest nowhere.
 */
static void test_log_default(void **state)
{
	const char *out, *want;

	(void)state;
	out = stderr_of(open_unknown_scheme);
	want = "ustate: foo://x: unknown scheme \"foo\"";
	assert_int_equal(strncmp(out, want, strlen(want)), 0);
	assert_non_null(strchr(out, '\n'));
	assert_int_equal(strchr(out, '\n')[1], '\0');
	out = stderr_of(log_each_level);
	assert_string_equal(out, "ustate: an error 1\n"
				 "ustate: a warning\n"
				 "ustate: without options\n");
}

/* ---- watches ----------------------------------------------------------- */

/* The events of one revision, in any order. */
static void expect_events_of_revision(ustate_watch *w, uint64_t revision,
				      const ustate_event *want, size_t n)
{
	bool seen[8] = {false};
	ustate_event ev;
	size_t i, j;

	assert_true(n <= ARRAY_SIZE(seen));
	for (i = 0; i < n; i++) {
		assert_int_equal(ustate_watch_next(w, &ev, 2000), 0);
		assert_int_equal(ev.revision, revision);
		for (j = 0; j < n; j++)
			if (!seen[j] && !strcmp(ev.key, want[j].key) &&
			    ev.type == want[j].type &&
			    ev.version == want[j].version)
				break;
		assert_true(j < n);
		seen[j] = true;
	}
}

static void test_watch_prefix(void **state)
{
	struct fixture *f = *state;
	ustate_event want[2];
	ustate *s = f->s;
	uint64_t r[5];
	ustate_op ops[3] = {
		{.type = USTATE_OP_SET,
		 .key = "/w/t1",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/y/1",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/w/b/c"},
	};

	put(s, "/w/before", "old", 1);
	assert_int_equal(ustate_watch_open(&f->w, s, "/w/*", 0), 0);
	expect_no_event(f->w);
	put(s, "/w/a", "1", 1);
	r[0] = ustate_revision(s);
	put(s, "/w/a", "2", 2);
	r[1] = ustate_revision(s);
	put(s, "/x/a", "no", 1);
	put(s, "/w", "no", 1);
	put(s, "/ww/a", "no", 1);
	assert_int_equal(ustate_delete(s, "/w/a"), 0);
	r[2] = ustate_revision(s);
	put(s, "/w/b/c", "deep", 1);
	r[3] = ustate_revision(s);
	assert_int_equal(ustate_transaction(s, ops, 3, NULL), 0);
	r[4] = ustate_revision(s);
	put(s, "/v/after", "no", 1);

	expect_event(f->w, USTATE_EVENT_CREATED, "/w/a", 1, r[0]);
	expect_event(f->w, USTATE_EVENT_UPDATED, "/w/a", 2, r[1]);
	expect_event(f->w, USTATE_EVENT_DELETED, "/w/a", 0, r[2]);
	expect_event(f->w, USTATE_EVENT_CREATED, "/w/b/c", 1, r[3]);
	want[0] = (ustate_event){.type = USTATE_EVENT_CREATED, .version = 1};
	strcpy(want[0].key, "/w/t1");
	want[1] = (ustate_event){.type = USTATE_EVENT_DELETED, .version = 0};
	strcpy(want[1].key, "/w/b/c");
	expect_events_of_revision(f->w, r[4], want, 2);
	expect_no_event(f->w);
}

static void test_watch_exact_key(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	uint64_t r[3];

	assert_int_equal(ustate_watch_open(&f->w, s, "/w/k", 0), 0);
	put(s, "/w/k", "1", 1);
	r[0] = ustate_revision(s);
	put(s, "/w/kk", "no", 1);
	put(s, "/w/k/x", "no", 1);
	put(s, "/w", "no", 1);
	put(s, "/w/k", "2", 2);
	r[1] = ustate_revision(s);
	assert_int_equal(ustate_delete(s, "/w/k"), 0);
	r[2] = ustate_revision(s);
	expect_event(f->w, USTATE_EVENT_CREATED, "/w/k", 1, r[0]);
	expect_event(f->w, USTATE_EVENT_UPDATED, "/w/k", 2, r[1]);
	expect_event(f->w, USTATE_EVENT_DELETED, "/w/k", 0, r[2]);
	expect_no_event(f->w);
}

/* Every change, in order, once: a mix of writes, read back with "*". */
static void test_watch_all_in_order(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	ustate_event ev;
	uint64_t prev = 0;
	size_t i, count = 0, want = 0, revs = 1;
	char key[32];
	ustate_op ops[3] = {
		{.type = USTATE_OP_SET,
		 .key = "/m/t",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/m/t",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/m/t"},
	};

	put(s, "/m/old", "old", 1);
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);
	for (i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "/m/%zu", i % 7);
		switch (i % 5) {
		case 0:
		case 1:
		case 2:
			assert_int_equal(ustate_set(s, key, "v", 1, NULL), 0);
			want++;
			revs++;
			break;
		case 3:
			if (ustate_delete(s, key) == 0) {
				want++;
				revs++;
			}
			break;
		case 4:
			assert_int_equal(ustate_transaction(s, ops, 3, NULL),
					 0);
			/* etcd does the net effect: nothing (txn_same_key). */
			if (f->kind == BACKEND_ETCD)
				break;
			want += 3;
			revs++;
			break;
		}
	}
	assert_int_equal(ustate_revision(s), REV(revs));
	while (ustate_watch_next(f->w, &ev, 0) == 0) {
		/* A revision's changes come together; none is skipped. */
		if (count == 0)
			assert_int_equal(ev.revision, REV(2));
		else
			assert_in_range(ev.revision, prev, prev + 1);
		prev = ev.revision;
		count++;
	}
	assert_int_equal(count, want);
	assert_int_equal(prev, ustate_revision(s));
}

static void test_watch_eagain(void **state)
{
	struct fixture *f = *state;
	struct timespec t0;
	ustate_event ev;
	long ms;

	assert_int_equal(ustate_watch_open(&f->w, f->s, "/none/*", 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ustate_watch_next(f->w, &ev, 0), -EAGAIN);
	assert_true(ms_since(&t0) < 100);
	put(f->s, "/other", "x", 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ustate_watch_next(f->w, &ev, 150), -EAGAIN);
	ms = ms_since(&t0);
	assert_in_range(ms, 140, 1500);
}

static void test_watch_fd(void **state)
{
	struct fixture *f = *state;
	ustate_event ev;
	int fd;

	assert_int_equal(ustate_watch_open(&f->w, f->s, "/p/*", 0), 0);
	fd = ustate_watch_fd(f->w);
	assert_true(fd >= 0);
	assert_int_equal(readable(fd, 0), 0);
	assert_int_equal(readable(fd, 100), 0);
	put(f->s, "/q/x", "not watched", 1);
	assert_int_equal(readable(fd, 100), 0);

	put(f->s, "/p/a", "1", 1);
	assert_int_equal(readable(fd, 1000), 1);
	assert_int_equal(ustate_watch_fd(f->w), fd);
	assert_int_equal(ustate_watch_next(f->w, &ev, 0), 0);
	assert_string_equal(ev.key, "/p/a");
	assert_int_equal(readable(fd, 0), 0);
	expect_no_event(f->w);

	/* With an event pending, waiting for ever returns at once. */
	put(f->s, "/p/b", "2", 1);
	assert_int_equal(readable(fd, 1000), 1);
	assert_int_equal(ustate_watch_next(f->w, &ev, -1), 0);
	assert_string_equal(ev.key, "/p/b");
}

/*
 * The first write after the first watch on a store must make the watch's
 * descriptor readable, however soon it follows ustate_watch_open(). Each
 * round uses a new store, so each round opens a store's first watch.
 */
static void test_watch_fd_first_write(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_event ev;
	int round;

	for (round = 0; round < 10; round++) {
		assert_int_equal(open_fresh(f, &o, &f->s2), 0);
		assert_int_equal(ustate_watch_open(&f->w2, f->s2, "*", 0), 0);
		put(f->s2, "/first", "x", 1);
		assert_int_equal(readable(ustate_watch_fd(f->w2), 1000), 1);
		/* The event itself is there whatever the descriptor says. */
		assert_int_equal(ustate_watch_next(f->w2, &ev, 0), 0);
		ustate_watch_close(f->w2);
		f->w2 = NULL;
		ustate_close(f->s2);
		f->s2 = NULL;
	}
}

/*
 * A watch hears of a transaction of its own handle that asks for its
 * revision at once: its descriptor is readable when the transaction
 * returns. A single write, which does not read its revision back, is
 * signaled by the dispatcher soon after. Either way the event is there at
 * once, and the descriptor is readable once for it, not again after it
 * is taken (test_watch_fd).
 */
static void test_watch_own_writes_at_once(void **state)
{
	ustate_op op = {.type = USTATE_OP_SET,
			.key = "/own/t",
			.value = "t",
			.value_len = 1};
	struct fixture *f = *state;
	ustate_txn_result res = {0};
	ustate_event ev;
	int round;

	assert_int_equal(ustate_watch_open(&f->w, f->s, "/own/*", 0), 0);
	for (round = 0; round < 20; round++) {
		put(f->s, "/own/s", "s", (uint64_t)round + 1);
		assert_int_equal(readable(ustate_watch_fd(f->w), 1000), 1);
		assert_int_equal(ustate_watch_next(f->w, &ev, 0), 0);
		assert_string_equal(ev.key, "/own/s");
		/* The dispatcher's next looks signal nothing more. */
		assert_int_equal(readable(ustate_watch_fd(f->w), 30), 0);
		assert_int_equal(ustate_transaction(f->s, &op, 1, &res), 0);
		assert_int_equal(readable(ustate_watch_fd(f->w), 0), 1);
		assert_int_equal(ustate_watch_next(f->w, &ev, 0), 0);
		assert_string_equal(ev.key, "/own/t");
		assert_int_equal(ev.revision, res.revision);
		assert_int_equal(readable(ustate_watch_fd(f->w), 30), 0);
		/* Another key's write signals nothing, and is nothing. */
		put(f->s, "/else", "e", (uint64_t)round + 1);
		assert_int_equal(ustate_watch_next(f->w, &ev, 0), -EAGAIN);
	}
}

static void test_watch_replay(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	uint64_t r[5];

	put(s, "/h/1", "a", 1);
	r[0] = ustate_revision(s);
	put(s, "/h/2", "b", 1);
	r[1] = ustate_revision(s);
	put(s, "/h/1", "c", 2);
	r[2] = ustate_revision(s);
	assert_int_equal(ustate_delete(s, "/h/2"), 0);
	r[3] = ustate_revision(s);
	put(s, "/h/3", "d", 1);
	r[4] = ustate_revision(s);

	/* Changes 2 to 5 are replayed, and are pending at once. */
	assert_int_equal(ustate_watch_open(&f->w, s, "/h/*", r[1]), 0);
	assert_int_equal(readable(ustate_watch_fd(f->w), 1000), 1);
	expect_event(f->w, USTATE_EVENT_CREATED, "/h/2", 1, r[1]);
	expect_event(f->w, USTATE_EVENT_UPDATED, "/h/1", 2, r[2]);
	expect_event(f->w, USTATE_EVENT_DELETED, "/h/2", 0, r[3]);
	expect_event(f->w, USTATE_EVENT_CREATED, "/h/3", 1, r[4]);
	expect_no_event(f->w);
	ustate_watch_close(f->w);

	/* From the first revision, for one key. */
	assert_int_equal(ustate_watch_open(&f->w, s, "/h/2", r[0]), 0);
	expect_event(f->w, USTATE_EVENT_CREATED, "/h/2", 1, r[1]);
	expect_event(f->w, USTATE_EVENT_DELETED, "/h/2", 0, r[3]);
	expect_no_event(f->w);
	ustate_watch_close(f->w);

	/* From the next revision: nothing yet, then the next change. */
	assert_int_equal(ustate_watch_open(&f->w, s, "*", r[4] + 1), 0);
	expect_no_event(f->w);
	put(s, "/h/4", "e", 1);
	expect_event(f->w, USTATE_EVENT_CREATED, "/h/4", 1, r[4] + 1);
	expect_no_event(f->w);
}

static void test_watch_overflow(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_watch *w = (ustate_watch *)1;
	ustate_event ev;
	uint64_t rev, i;
	char key[32];
	ustate *s;

	o.history = 10;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	s = f->s2;
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);
	for (i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "/o/%" PRIu64, i % 13);
		assert_int_equal(ustate_set(s, key, "v", 1, NULL), 0);
	}
	rev = ustate_revision(s);
	assert_int_equal(rev, REV(200));

	/* Never a silent skip, and the watch stays overflowed. */
	assert_int_equal(ustate_watch_next(f->w, &ev, 0), -EOVERFLOW);
	assert_int_equal(ustate_watch_next(f->w, &ev, 0), -EOVERFLOW);
	put(s, "/o/more", "v", 1);
	assert_int_equal(ustate_watch_next(f->w, &ev, 100), -EOVERFLOW);
	rev++;

	/*
	 * A start older than the history kept: -ENODATA. etcd keeps its own
	 * history until it is compacted, and replays from there (the
	 * history option only bounds what the client holds).
	 */
	if (f->kind == BACKEND_ETCD) {
		assert_int_equal(ustate_watch_open(&w, s, "*", REV(1)), 0);
		ustate_watch_close(w);
		w = (ustate_watch *)1;
	} else {
		assert_int_equal(ustate_watch_open(&w, s, "*", 1), -ENODATA);
	}
	assert_ptr_equal(w, (ustate_watch *)1);

	/* The last history revisions are kept, and replay in full. */
	assert_int_equal(ustate_watch_open(&f->w2, s, "*", rev - 9), 0);
	for (i = 0; i < 10; i++) {
		assert_int_equal(ustate_watch_next(f->w2, &ev, 0), 0);
		assert_int_equal(ev.revision, rev - 9 + i);
	}
	expect_no_event(f->w2);
}

/*
 * opts.history bounds what a watch can replay from the past; a watch that
 * keeps up with the store must get every change even with no history.
 */
/* history = 0 is refused; history = 1 still serves a watch that keeps up. */
static void test_watch_history_zero(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	char key[32];
	int i;

	o.history = 0;
	f->s2 = (ustate *)1;
	assert_int_equal(open_fresh(f, &o, &f->s2), -EINVAL);
	assert_ptr_equal(f->s2, (ustate *)1);
	f->s2 = NULL;
	o.history = 1;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	assert_int_equal(ustate_watch_open(&f->w, f->s2, "*", 0), 0);
	for (i = 0; i < 3; i++) {
		snprintf(key, sizeof(key), "/z/%d", i);
		put(f->s2, key, "v", 1);
		expect_event(f->w, USTATE_EVENT_CREATED, key, 1,
			     REV((uint64_t)i + 1));
	}
	expect_no_event(f->w);
}

/*
 * An idle watch costs (almost) nothing: the dispatcher sleeps between
 * polls. A busy loop would burn the whole wait in CPU time.
 */
static void test_watch_idle_cpu(void **state)
{
	struct fixture *f = *state;
	struct timespec a, b;
	ustate_event ev;
	double used;

	assert_int_equal(ustate_watch_open(&f->w, f->s, "*", 0), 0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	assert_int_equal(ustate_watch_next(f->w, &ev, 500), -EAGAIN);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	used = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	assert_true(used < 0.2);
}

static void test_watch_bad_pattern(void **state)
{
	static const char *const bad[] = {
		"",	   "a",		"/",	 "/a/", "/a//b",
		"/a/./b",  "/a/.value", "/a/**", "**",	"/\x01*",
		"/a\xff*", "/\xc3*",	"/a\n",
	};
	static const char *const good[] = {"*", "/*", "/a/*", "/a*", "/a"};
	struct fixture *f = *state;
	ustate_watch *w;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		w = (ustate_watch *)1;
		assert_int_equal(ustate_watch_open(&w, f->s, bad[i], 0),
				 -EINVAL);
		assert_ptr_equal(w, (ustate_watch *)1);
	}
	w = (ustate_watch *)1;
	assert_int_equal(ustate_watch_open(&w, f->s, NULL, 0), -EINVAL);
	assert_ptr_equal(w, (ustate_watch *)1);
	for (i = 0; i < ARRAY_SIZE(good); i++) {
		assert_int_equal(ustate_watch_open(&w, f->s, good[i], 0), 0);
		ustate_watch_close(w);
	}
}

/*
 * A pattern too long for either kind is -ENAMETOOLONG, whatever its bytes
 * (found by fuzz_keys: past USTATE_KEY_MAX + 1 bytes, the kind of pattern
 * was read from the byte at that offset, not from the last, so that a long
 * "x...x*" was -EINVAL).
 */
static void test_watch_long_pattern(void **state)
{
	static const struct {
		size_t len; /* bytes of the pattern: first, then "a"s */
		char first;
		size_t star; /* offset of a '*', or 0 */
		int rc;
	} cases[] = {
		{USTATE_KEY_MAX + 1, '/', USTATE_KEY_MAX, 0},
		{USTATE_KEY_MAX + 2, '/', USTATE_KEY_MAX + 1, -ENAMETOOLONG},
		{USTATE_KEY_MAX + 2, 'x', 0, -ENAMETOOLONG},
		{3000, 'x', 2999, -ENAMETOOLONG},
		{3000, '/', USTATE_KEY_MAX + 1, -ENAMETOOLONG},
		{3000, '/', 0, -ENAMETOOLONG},
		{USTATE_KEY_MAX + 1, 'x', 0, -EINVAL},
	};
	struct fixture *f = *state;
	ustate_watch *w;
	char *pattern;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		pattern = malloc(cases[i].len + 1);
		assert_non_null(pattern);
		memset(pattern, 'a', cases[i].len);
		pattern[0] = cases[i].first;
		if (cases[i].star)
			pattern[cases[i].star] = '*';
		pattern[cases[i].len] = '\0';
		w = (ustate_watch *)1;
		assert_int_equal(ustate_watch_open(&w, f->s, pattern, 0),
				 cases[i].rc);
		if (cases[i].rc == 0)
			ustate_watch_close(w);
		else
			assert_ptr_equal(w, (ustate_watch *)1);
		free(pattern);
	}
}

struct writer {
	ustate *s;
	int id;
	int n;
	int delay_ms;
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *wr = arg;
	char key[32];
	int i;

	if (wr->delay_ms)
		usleep(wr->delay_ms * 1000);
	for (i = 0; i < wr->n && wr->rc == 0; i++) {
		snprintf(key, sizeof(key), "/c/%d/%03d", wr->id, i);
		wr->rc = ustate_set(wr->s, key, "v", 1, NULL);
	}
	return NULL;
}

static void test_watch_other_thread(void **state)
{
	struct fixture *f = *state;
	struct writer wr = {.s = f->s, .n = 1, .delay_ms = 100};
	struct timespec t0;
	ustate_event ev;
	pthread_t t;

	assert_int_equal(ustate_watch_open(&f->w, f->s, "/c/*", 0), 0);
	assert_int_equal(pthread_create(&t, NULL, writer_main, &wr), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(ustate_watch_next(f->w, &ev, 2000), 0);
	assert_true(ms_since(&t0) < 2000);
	pthread_join(t, NULL);
	assert_int_equal(wr.rc, 0);
	assert_string_equal(ev.key, "/c/0/000");
	assert_int_equal(ev.type, USTATE_EVENT_CREATED);
	assert_int_equal(ev.revision, REV(1));
	expect_no_event(f->w);
}

/* Writers in four threads: one event per write, no gap, in program order. */
static void test_watch_concurrent_writers(void **state)
{
	struct fixture *f = *state;
	struct writer wr[4];
	int next[4] = {0}, id, i;
	unsigned seq;
	ustate_event ev;
	pthread_t t[4];

	assert_int_equal(ustate_watch_open(&f->w, f->s, "*", 0), 0);
	for (i = 0; i < 4; i++) {
		wr[i] = (struct writer){.s = f->s, .id = i, .n = 50};
		assert_int_equal(
			pthread_create(&t[i], NULL, writer_main, &wr[i]), 0);
	}
	for (i = 0; i < 200; i++) {
		assert_int_equal(ustate_watch_next(f->w, &ev, 2000), 0);
		assert_int_equal(ev.revision, REV((uint64_t)i + 1));
		assert_int_equal(sscanf(ev.key, "/c/%d/%u", &id, &seq), 2);
		assert_in_range(id, 0, 3);
		assert_int_equal(seq, next[id]);
		next[id]++;
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(wr[i].rc, 0);
	}
	expect_no_event(f->w);
}

/* A transaction larger than any batch a watch reads at once. */
static void test_watch_big_txn(void **state)
{
	struct fixture *f = *state;
	char(*names)[16];
	bool seen[600] = {false};
	ustate_event ev;
	ustate_op *ops;
	uint64_t txns;
	unsigned idx;
	size_t i;

	names = calloc(600, sizeof(*names));
	ops = calloc(600, sizeof(*ops));
	assert_non_null(names);
	assert_non_null(ops);
	for (i = 0; i < 600; i++) {
		snprintf(names[i], sizeof(names[i]), "/b/%03zu", i);
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = names[i],
				     .value = "v",
				     .value_len = 1};
	}
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/b/*", 0), 0);
	assert_int_equal(ustate_watch_open(&f->w2, f->s, "/b/1*", 0), 0);
	txns = txn_many(f, f->s, ops, 600);
	put(f->s, "/b/x", "after", 1);

	for (i = 0; i < 600; i++) {
		assert_int_equal(ustate_watch_next(f->w, &ev, 2000), 0);
		assert_int_equal(ev.revision,
				 REV(1 + (txns > 1 ? i / ETCD_TXN_WRITES : 0)));
		assert_int_equal(sscanf(ev.key, "/b/%u", &idx), 1);
		assert_true(idx < 600);
		assert_false(seen[idx]);
		seen[idx] = true;
	}
	expect_event(f->w, USTATE_EVENT_CREATED, "/b/x", 1, REV(txns + 1));
	expect_no_event(f->w);

	for (i = 0; i < 100; i++) {
		assert_int_equal(ustate_watch_next(f->w2, &ev, 2000), 0);
		assert_in_range(ev.revision, REV(1), REV(txns));
		assert_memory_equal(ev.key, "/b/1", 4);
	}
	expect_no_event(f->w2);
	free(ops);
	free(names);
}

/* ---- threads ----------------------------------------------------------- */

struct racer {
	ustate *s;
	int n;
	int rc;
	int retries;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	int i;

	for (i = 0; i < r->n && r->rc == 0; i++)
		r->rc = cas_increment(r->s, "/counter", &r->retries);
	return NULL;
}

static void test_thread_cas_race(void **state)
{
	struct fixture *f = *state;
	struct racer r[4];
	pthread_t t[4];
	int i;

	put(f->s, "/counter", "0", 1);
	for (i = 0; i < 4; i++) {
		r[i] = (struct racer){.s = f->s, .n = 200};
		assert_int_equal(pthread_create(&t[i], NULL, racer_main, &r[i]),
				 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(r[i].rc, 0);
	}
	assert_value(f->s, "/counter", "800", 801);
	assert_int_equal(ustate_revision(f->s), REV(801));
}

/*
 * Concurrent transactions that share commits (the SQLite backend groups
 * them): each one's outcome is its own. Per thread and round: a set of
 * its key, a create of a shared key that fails but for the first, and a
 * checked two-op transaction. Every success gets a revision of its own,
 * in order, and the history holds exactly the successes.
 */
struct grouper {
	ustate *s;
	int id;
	int commits;
	int rc;
};

static void *grouper_main(void *arg)
{
	struct grouper *g = arg;
	char key[32], sub[40], val[16];
	ustate_op ops[2];
	uint64_t v;
	int j, rc;

	snprintf(key, sizeof(key), "/g/%d", g->id);
	snprintf(sub, sizeof(sub), "/g/%d/sub", g->id);
	for (j = 0; j < 150 && g->rc == 0; j++) {
		snprintf(val, sizeof(val), "%d", j);
		rc = ustate_set(g->s, key, val, strlen(val), &v);
		if (rc == 0 && v != (uint64_t)j + 1)
			rc = -EPROTO;
		if (rc < 0)
			break;
		g->commits++;
		rc = ustate_create_if_not_exists(g->s, "/g/shared", "x", 1,
						 NULL);
		if (rc == 0)
			g->commits++;
		else if (rc != -EEXIST)
			break;
		ops[0] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				     .key = key,
				     .version = (uint64_t)j + 1};
		ops[1] = (ustate_op){.type = USTATE_OP_SET,
				     .key = sub,
				     .value = val,
				     .value_len = strlen(val)};
		rc = ustate_transaction(g->s, ops, 2, NULL);
		if (rc < 0)
			break;
		g->commits++;
		/* A check that must fail: its group-mates are unaffected. */
		ops[0].version = (uint64_t)j + 7;
		rc = ustate_transaction(g->s, ops, 2, NULL);
		if (rc != -ECANCELED) {
			rc = rc ? rc : -EPROTO;
			break;
		}
		rc = 0;
	}
	g->rc = rc;
	return NULL;
}

static void test_thread_group_commit(void **state)
{
	struct fixture *f = *state;
	struct grouper g[8];
	pthread_t t[8];
	uint64_t last = 0, events = 0;
	ustate_event ev;
	int i, total = 0;

	for (i = 0; i < 8; i++) {
		g[i] = (struct grouper){.s = f->s, .id = i};
		assert_int_equal(
			pthread_create(&t[i], NULL, grouper_main, &g[i]), 0);
	}
	for (i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(g[i].rc, 0);
		total += g[i].commits;
	}
	assert_int_equal(total, 8 * 150 * 2 + 1);
	assert_int_equal(ustate_revision(f->s), REV((uint64_t)total));
	assert_value(f->s, "/g/shared", "x", 1);
	assert_value(f->s, "/g/7/sub", "149", 150);
	/* One event per commit, revisions 1..total, none twice. */
	assert_int_equal(ustate_watch_open(&f->w, f->s, "*", REV(1)), 0);
	last = f->base;
	while (ustate_watch_next(f->w, &ev, 0) == 0) {
		assert_int_equal(ev.revision, last + 1);
		last = ev.revision;
		events++;
	}
	assert_int_equal(events, (uint64_t)total);
}

/*
 * Several keys from one snapshot: what each holds, NULL for an absent
 * one, the snapshot's revision; a bad key reads nothing.
 */
static void test_get_many(void **state)
{
	static const char *const keys[] = {"/m/a", "/m/none", "/m/b", "/m/a"};
	static const char *const bad[] = {"/m/a", "no-slash"};
	struct fixture *f = *state;
	ustate_entry *out[4];
	uint64_t rev = 0;
	size_t i;

	put(f->s, "/m/a", "1", 1);
	put(f->s, "/m/b", "22", 1);
	put(f->s, "/m/b", "333", 2);
	assert_int_equal(ustate_get_many(f->s, keys, 4, out, &rev), 0);
	assert_int_equal(rev, ustate_revision(f->s));
	assert_int_equal(rev, REV(3));
	assert_non_null(out[0]);
	assert_non_null(out[3]);
	assert_null(out[1]);
	assert_non_null(out[2]);
	assert_string_equal(out[0]->key, "/m/a");
	assert_int_equal(out[0]->value_len, 1);
	assert_memory_equal(out[0]->value, "1", 1);
	assert_int_equal(out[0]->version, 1);
	assert_int_equal(out[0]->mod_revision, REV(1));
	assert_int_equal(out[3]->version, 1);
	assert_int_equal(out[2]->value_len, 3);
	assert_memory_equal(out[2]->value, "333", 3);
	assert_int_equal(out[2]->version, 2);
	assert_int_equal(out[2]->mod_revision, REV(3));
	for (i = 0; i < 4; i++)
		ustate_entry_free(out[i]);

	/* Nothing to read: the revision alone. */
	rev = 0;
	assert_int_equal(ustate_get_many(f->s, keys, 0, out, &rev), 0);
	assert_int_equal(rev, REV(3));
	/* A bad key: nothing read, every slot NULL. */
	out[0] = out[1] = (ustate_entry *)&rev;
	assert_int_equal(ustate_get_many(f->s, bad, 2, out, NULL), -EINVAL);
	assert_null(out[0]);
	assert_null(out[1]);
}

/*
 * Reads of two keys that every write changes together, while writers
 * change them as fast as they can: ustate_get_many() and a /.txn script
 * of gets only see them equal, at a revision no older than either, and
 * the script never fails for the writers (it writes nothing, so it needs
 * no check that they could make fail).
 */
struct pair_writer {
	ustate *s;
	const int *stop;
	int writes;
	int rc;
};

static void *pair_writer_main(void *arg)
{
	struct pair_writer *w = arg;
	ustate_op ops[2];
	char val[16];
	int j;

	for (j = 0; j < 4000 && !__atomic_load_n(w->stop, __ATOMIC_ACQUIRE);
	     j++) {
		snprintf(val, sizeof(val), "%d", j);
		ops[0] = (ustate_op){.type = USTATE_OP_SET,
				     .key = "/p/a",
				     .value = val,
				     .value_len = strlen(val)};
		ops[1] = ops[0];
		ops[1].key = "/p/b";
		w->rc = ustate_transaction(w->s, ops, 2, NULL);
		if (w->rc < 0)
			break;
		__atomic_add_fetch(&w->writes, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* Whether each of the n writers has written (it may start late). */
static bool pair_writers_wrote(struct pair_writer *w, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!__atomic_load_n(&w[i].writes, __ATOMIC_RELAXED))
			return false;
	return true;
}

/* What one round of test_get_many_under_writes() read wrong, or NULL. */
static const char *pair_read(ustate *s, uint64_t base)
{
	static const char *const keys[] = {"/p/a", "/p/b"};
	static const char text[] = "get /p/a\nget /p/b\ncommit\n";
	const char *wrong = NULL;
	unsigned long long rev;
	ustate_script *sc = NULL;
	ustate_entry *out[2];
	char a[16], b[16];
	const char *r;
	size_t len;
	uint64_t at;
	int rc;

	rc = ustate_get_many(s, keys, 2, out, &at);
	if (rc < 0)
		return "ustate_get_many() failed";
	if (!out[0] || !out[1])
		wrong = "a key is missing";
	else if (out[0]->value_len != out[1]->value_len ||
		 memcmp(out[0]->value, out[1]->value, out[0]->value_len))
		wrong = "the two values differ";
	else if (out[0]->mod_revision != out[1]->mod_revision ||
		 at < out[0]->mod_revision)
		wrong = "the revisions disagree";
	if (wrong && out[0] && out[1])
		fprintf(stderr, "at %llu: %.*s v%llu r%llu, %.*s v%llu r%llu\n",
			(unsigned long long)at, (int)out[0]->value_len,
			(const char *)out[0]->value,
			(unsigned long long)out[0]->version,
			(unsigned long long)out[0]->mod_revision,
			(int)out[1]->value_len, (const char *)out[1]->value,
			(unsigned long long)out[1]->version,
			(unsigned long long)out[1]->mod_revision);
	ustate_entry_free(out[0]);
	ustate_entry_free(out[1]);
	if (wrong)
		return wrong;

	if (ustate_script_new(&sc, s) < 0)
		return "ustate_script_new() failed";
	rc = ustate_script_feed(sc, text, strlen(text));
	r = ustate_script_reply(sc, &len);
	if (rc != 1)
		wrong = "the script failed";
	else if (
		sscanf(r,
		       "ok %llu\nget /p/a %*u %*u\n%15s\nget /p/b %*u %*u\n%15s\n",
		       &rev, a, b) != 3)
		wrong = "the script's reply does not parse";
	else if (strcmp(a, b))
		wrong = "the script read two values";
	else if (rev < base + 1)
		wrong = "the script's revision is too old";
	if (wrong)
		fprintf(stderr, "reply: %.*s\n", (int)len, r);
	ustate_script_free(sc);
	return wrong;
}

static void test_get_many_under_writes(void **state)
{
	struct fixture *f = *state;
	struct pair_writer w[3];
	const char *wrong = NULL;
	struct timespec t0;
	pthread_t t[3];
	int i, round, stop = 0;
	ustate_op ops[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/p/a",
		 .value = "-",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/p/b",
		 .value = "-",
		 .value_len = 1},
	};

	assert_int_equal(ustate_transaction(f->s, ops, 2, NULL), 0);
	for (i = 0; i < 3; i++) {
		w[i] = (struct pair_writer){.s = f->s, .stop = &stop};
		assert_int_equal(
			pthread_create(&t[i], NULL, pair_writer_main, &w[i]),
			0);
	}
	/*
	 * No assertion until the writers are gone: they use the store. At
	 * least 150 rounds, and on until every writer has written (a loaded
	 * machine may start a thread late), for 10 s at most.
	 */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (round = 0; round < 1000000 && !wrong; round++) {
		if (round >= 150 &&
		    (pair_writers_wrote(w, 3) || ms_since(&t0) > 10000))
			break;
		wrong = pair_read(f->s, f->base);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	if (wrong)
		fail_msg("round %d: %s", round, wrong);
	for (i = 0; i < 3; i++) {
		assert_int_equal(w[i].rc, 0);
		assert_true(w[i].writes > 0);
	}
}

/*
 * etcd reads n keys in one Txn of 2n ranges: over max_txn_ops that is
 * -E2BIG, and a script of that many gets reads them one by one instead,
 * made consistent by its checks.
 */
static void test_etcd_get_many_limit(void **state)
{
	static const char *const keys[] = {"/e/a", "/e/b", "/e/c"};
	static const char text[] = "get /e/a\nget /e/b\nget /e/c\ncommit\n";
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_entry *out[3];
	char *reply;
	uint64_t rev;

	o.max_txn_ops = 4;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	put(f->s2, "/e/a", "1", 1);
	put(f->s2, "/e/c", "3", 1);
	out[0] = out[1] = out[2] = (ustate_entry *)&rev;
	assert_int_equal(ustate_get_many(f->s2, keys, 3, out, &rev), -E2BIG);
	assert_null(out[0]);
	assert_null(out[1]);
	assert_null(out[2]);
	assert_int_equal(ustate_get_many(f->s2, keys, 2, out, &rev), 0);
	assert_non_null(out[0]);
	assert_null(out[1]);
	ustate_entry_free(out[0]);
	assert_int_equal(script_run(f->s2, text, &reply), 1);
	assert_non_null(strstr(reply, "\nget /e/a 1 1\n1\nget /e/b 0 0\n\n"
				      "get /e/c 1 1\n3\n"));
	free(reply);
}

/* ---- options, directories, scripts ------------------------------------- */

static void test_options_get(void **state)
{
	ustate_options def = USTATE_OPTIONS_INIT, o = fast_options(), got;
	struct fixture *f = *state;

	/*
	 * etcd's defaults are its server's: a value that fits under its
	 * --max-request-bytes (1.5 MiB, less room for the keys) and its
	 * --max-txn-ops (128).
	 */
	if (f->kind == BACKEND_ETCD) {
		def.max_value_size = 1536 * 1024 - 16 * 1024;
		def.max_txn_ops = 128;
	}

	memset(&got, 0xa5, sizeof(got));
	ustate_options_get(f->s, &got);
	assert_int_equal(got.version, USTATE_OPTIONS_VERSION);
	assert_int_equal(got.sync, USTATE_SYNC_NORMAL);
	assert_int_equal(got.max_value_size, def.max_value_size);
	assert_int_equal(got.read_only, 0);
	assert_int_equal(got.history, def.history);
	assert_int_equal(got.max_txn_ops, def.max_txn_ops);

	o.max_value_size = 1234;
	o.history = 77;
	o.max_txn_ops = 9;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.max_value_size, 1234);
	assert_int_equal(got.history, 77);
	assert_int_equal(got.max_txn_ops, 9);
	ustate_close(f->s2);
	f->s2 = NULL;

	/* NULL means USTATE_OPTIONS_INIT. */
	assert_int_equal(open_fresh(f, NULL, &f->s2), 0);
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.version, def.version);
	assert_int_equal(got.sync, def.sync);
	assert_int_equal(got.max_value_size, def.max_value_size);
	assert_int_equal(got.read_only, def.read_only);
	assert_int_equal(got.history, def.history);
	assert_int_equal(got.max_txn_ops, def.max_txn_ops);
	assert_int_equal(got.request_timeout, 5000);
	assert_int_equal(got.dial_timeout, 2000);
	assert_null(got.tls_ca);
	assert_null(got.user);
	assert_null(got.password);
	assert_null(got.log);
}

/*
 * The strings of the options are borrowed for the open only: the store
 * keeps copies of its own, which ustate_options_get() shows.
 */
static void test_options_strings(void **state)
{
	char ca[] = "/etc/ca.pem", cert[] = "/etc/cert.pem",
	     key[] = "/etc/key.pem", user[] = "root", pass[] = "secret";
	ustate_options o = fast_options(), got;
	struct fixture *f = *state;
	int arg;

	o.request_timeout = 1500;
	o.dial_timeout = 700;
	o.tls_ca = ca;
	o.tls_cert = cert;
	o.tls_key = key;
	o.user = user;
	o.password = pass;
	o.log_arg = &arg;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	memset(ca, 'x', sizeof(ca) - 1);
	memset(cert, 'x', sizeof(cert) - 1);
	memset(key, 'x', sizeof(key) - 1);
	memset(user, 'x', sizeof(user) - 1);
	memset(pass, 'x', sizeof(pass) - 1);
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.request_timeout, 1500);
	assert_int_equal(got.dial_timeout, 700);
	assert_string_equal(got.tls_ca, "/etc/ca.pem");
	assert_string_equal(got.tls_cert, "/etc/cert.pem");
	assert_string_equal(got.tls_key, "/etc/key.pem");
	assert_string_equal(got.user, "root");
	assert_string_equal(got.password, "secret");
	assert_ptr_not_equal(got.password, pass);
	assert_ptr_equal(got.log_arg, &arg);
	put(f->s2, "/s", "ok", 1);

	/* Only some of them: the others stay NULL. */
	ustate_close(f->s2);
	f->s2 = NULL;
	o = fast_options();
	o.user = "u";
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	ustate_options_get(f->s2, &got);
	assert_string_equal(got.user, "u");
	assert_null(got.password);
	assert_null(got.tls_ca);
}

static void mkdir_rmdir(ustate *s, ustate_op_type type, const char *path)
{
	ustate_op op = {.type = type, .key = path};

	assert_int_equal(ustate_transaction(s, &op, 1, NULL), 0);
}

static unsigned node_flags(ustate *s, const char *path)
{
	unsigned flags = 0xdead;

	assert_int_equal(ustate_node(s, path, &flags), 0);
	return flags;
}

/*
 * Records: no version; a record made or dropped is a change with a
 * revision and an event, a no-op is nothing; all or nothing.
 */
static void test_dir_records(void **state)
{
	static const char *const recs[] = {"/d/a", "/d/b/c", "/e"};
	struct fixture *f = *state;
	ustate_txn_result res;
	ustate *s = f->s;
	uint64_t v[2], r;
	char *before;
	ustate_op mixed[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/d/k",
		 .value = "k",
		 .value_len = 1},
		{.type = USTATE_OP_MKDIR, .key = "/d/a"},
	};
	ustate_op failing[2] = {
		{.type = USTATE_OP_MKDIR, .key = "/d/never"},
		{.type = USTATE_OP_DELETE, .key = "/d/missing"},
	};

	put(s, "/x", "x", 1);
	r = ustate_revision(s);
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);

	memset(&res, 0, sizeof(res));
	res.versions = v;
	v[0] = 99;
	/* A MKDIR's value is its metadata: none here. */
	mixed[0] = (ustate_op){.type = USTATE_OP_MKDIR, .key = "/d/b/c"};
	assert_int_equal(ustate_transaction(s, mixed, 2, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 1);
	assert_int_equal(res.revision, r + 1);
	expect_events_of_revision(
		f->w, r + 1,
		(const ustate_event[]){
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/d/b/c"},
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/d/a"}},
		2);
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/e");
	expect_event(f->w, USTATE_EVENT_DIR_CREATED, "/e", 0, r + 2);
	/* Doing it again is a no-op: no revision, no event. */
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/e");
	assert_int_equal(ustate_revision(s), r + 2);
	expect_no_event(f->w);
	r += 2;
	assert_list(s, "", (const char *const[]){"/x"}, 1);
	assert_absent(s, "/e");
	{
		char **paths = NULL;
		size_t n = 0, i;

		assert_int_equal(ustate_list_dirs(s, "", &paths, &n), 0);
		assert_int_equal(n, ARRAY_SIZE(recs));
		for (i = 0; i < n; i++)
			assert_string_equal(paths[i], recs[i]);
		ustate_list_free(paths, n);
		assert_int_equal(ustate_list_dirs(s, "/d/", &paths, &n), 0);
		assert_int_equal(n, 2);
		ustate_list_free(paths, n);
		assert_int_equal(ustate_list_dirs(s, "/z", &paths, &n), 0);
		assert_int_equal(n, 0);
		assert_null(paths);
		paths = (char **)1;
		assert_int_equal(ustate_list_dirs(s, "/\x01", &paths, &n),
				 -EINVAL);
		assert_ptr_equal(paths, (char **)1);
	}

	/* A key write with a record already made: one revision, one event. */
	mixed[0] = (ustate_op){.type = USTATE_OP_SET,
			       .key = "/d/k",
			       .value = "k",
			       .value_len = 1};
	memset(&res, 0, sizeof(res));
	res.versions = v;
	assert_int_equal(ustate_transaction(s, mixed, 2, &res), 0);
	assert_int_equal(res.revision, r + 1);
	assert_int_equal(v[1], 0);
	expect_event(f->w, USTATE_EVENT_CREATED, "/d/k", 1, r + 1);
	expect_no_event(f->w);

	/* A failed transaction leaves no record behind. */
	before = snapshot(s);
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, failing, 2, &res), -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_int_equal(node_flags(s, "/d/never"), 0);
	assert_snapshot(s, before);
	free(before);

	/* Removing a record, twice: the second time is a no-op. */
	mkdir_rmdir(s, USTATE_OP_RMDIR, "/e");
	mkdir_rmdir(s, USTATE_OP_RMDIR, "/e");
	mkdir_rmdir(s, USTATE_OP_RMDIR, "/never/made");
	assert_int_equal(node_flags(s, "/e"), 0);
	assert_int_equal(ustate_revision(s), r + 2);
	expect_event(f->w, USTATE_EVENT_DIR_DELETED, "/e", 0, r + 2);
	expect_no_event(f->w);

	/* Paths follow the key rules. */
	failing[0].key = "/d/../x";
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, failing, 1, &res), -EINVAL);
	failing[0].type = USTATE_OP_RMDIR;
	assert_int_equal(ustate_transaction(s, failing, 1, &res), -EINVAL);
}

static void test_node(void **state)
{
	struct fixture *f = *state;
	unsigned flags;
	ustate *s = f->s;

	assert_int_equal(node_flags(s, "/"), USTATE_NODE_RECORD);
	assert_int_equal(node_flags(s, "/a"), 0);
	put(s, "/a/b/c", "v", 1);
	assert_int_equal(node_flags(s, "/"),
			 USTATE_NODE_RECORD | USTATE_NODE_CHILDREN);
	assert_int_equal(node_flags(s, "/a"), USTATE_NODE_CHILDREN);
	assert_int_equal(node_flags(s, "/a/b"), USTATE_NODE_CHILDREN);
	assert_int_equal(node_flags(s, "/a/b/c"), USTATE_NODE_VALUE);
	assert_int_equal(node_flags(s, "/a/b/c/d"), 0);
	/* A sibling that shares the prefix is no child. */
	put(s, "/ab", "v", 1);
	put(s, "/a-b/x", "v", 1);
	assert_int_equal(node_flags(s, "/ab"), USTATE_NODE_VALUE);
	assert_int_equal(node_flags(s, "/a/b/c"), USTATE_NODE_VALUE);
	put(s, "/a", "v", 1);
	assert_int_equal(node_flags(s, "/a"),
			 USTATE_NODE_VALUE | USTATE_NODE_CHILDREN);
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/a");
	assert_int_equal(node_flags(s, "/a"), USTATE_NODE_VALUE |
						      USTATE_NODE_CHILDREN |
						      USTATE_NODE_RECORD);
	/* A record below makes children; a record's prefix is not a record. */
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/r/s/t");
	assert_int_equal(node_flags(s, "/r"), USTATE_NODE_CHILDREN);
	assert_int_equal(node_flags(s, "/r/s"), USTATE_NODE_CHILDREN);
	assert_int_equal(node_flags(s, "/r/s/t"), USTATE_NODE_RECORD);
	assert_int_equal(node_flags(s, "/r/s/tt"), 0);

	assert_int_equal(ustate_delete(s, "/a/b/c"), 0);
	assert_false(node_flags(s, "/a/b/c") & USTATE_NODE_VALUE);
	mkdir_rmdir(s, USTATE_OP_RMDIR, "/a");
	assert_int_equal(node_flags(s, "/a") & USTATE_NODE_RECORD, 0);

	assert_int_equal(ustate_node(s, "/a/", &flags), -EINVAL);
	assert_int_equal(ustate_node(s, "a", &flags), -EINVAL);
	assert_int_equal(ustate_node(s, "", &flags), -EINVAL);
	assert_int_equal(ustate_node(s, NULL, &flags), -EINVAL);
	assert_int_equal(ustate_node(s, "/\x7f", &flags), -EINVAL);
}

/*
 * ustate_node_get(): the flags of ustate_node(), the store revision and
 * the entry of ustate_get(), whatever the path is; outputs untouched on a
 * bad path.
 */
static void test_node_get(void **state)
{
	static const char *const paths[] = {"/",   "/a",   "/a/b", "/a/b/c",
					    "/ab", "/r/s", "/none"};
	struct fixture *f = *state;
	ustate_entry *e, *g, *kept;
	ustate *s = f->s;
	uint64_t rev;
	unsigned flags;
	size_t i;
	int rc;

	put(s, "/a/b/c", "vc", 1);
	put(s, "/a", "va", 1);
	put(s, "/ab", "vab", 1);
	put(s, "/ab", "vab2", 2);
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/r/s");
	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		e = (ustate_entry *)&rev; /* must be overwritten */
		assert_int_equal(ustate_node_get(s, paths[i], &flags, &rev, &e),
				 0);
		assert_int_equal(flags, node_flags(s, paths[i]));
		assert_int_equal(rev, ustate_revision(s));
		rc = strcmp(paths[i], "/") ? ustate_get(s, paths[i], &g)
					   : -ENOENT;
		if (rc == -ENOENT) {
			assert_null(e);
			assert_false(flags & USTATE_NODE_VALUE);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_non_null(e);
		assert_true(flags & USTATE_NODE_VALUE);
		assert_string_equal(e->key, g->key);
		assert_int_equal(e->value_len, g->value_len);
		assert_memory_equal(e->value, g->value, g->value_len);
		assert_int_equal(e->version, g->version);
		assert_int_equal(e->mod_revision, g->mod_revision);
		assert_int_equal(e->created_at, g->created_at);
		assert_int_equal(e->updated_at, g->updated_at);
		ustate_entry_free(e);
		ustate_entry_free(g);
	}
	/* Either output may be left out. */
	assert_int_equal(ustate_node_get(s, "/a", &flags, NULL, NULL), 0);
	assert_int_equal(flags, USTATE_NODE_VALUE | USTATE_NODE_CHILDREN);
	/* A bad path leaves every output as it was. */
	kept = e = (ustate_entry *)&rev;
	rev = 77;
	flags = 0xdead;
	assert_int_equal(ustate_node_get(s, "/a/", &flags, &rev, &e), -EINVAL);
	assert_int_equal(flags, 0xdead);
	assert_int_equal(rev, 77);
	assert_ptr_equal(e, kept);
}

/* Output parameters are set only on success (the header's conventions). */
static void test_node_bad_path_output(void **state)
{
	struct fixture *f = *state;
	char long_seg[300];
	unsigned flags;

	memset(long_seg, 's', sizeof(long_seg));
	long_seg[0] = '/';
	long_seg[sizeof(long_seg) - 1] = '\0';
	flags = 0xdead;
	assert_int_equal(ustate_node(f->s, "/a//b", &flags), -EINVAL);
	assert_int_equal(flags, 0xdead);
	assert_int_equal(ustate_node(f->s, long_seg, &flags), -ENAMETOOLONG);
	assert_int_equal(flags, 0xdead);
}

static void assert_readdir(ustate *s, const char *dir, const char *const *names,
			   const unsigned *flags, size_t nwant)
{
	ustate_dirent *d = NULL;
	size_t n = 0, i;

	assert_int_equal(ustate_readdir(s, dir, &d, &n), 0);
	assert_int_equal(n, nwant);
	if (!n)
		assert_null(d);
	for (i = 0; i < n; i++) {
		assert_string_equal(d[i].name, names[i]);
		assert_int_equal(d[i].flags, flags[i]);
	}
	ustate_dirents_free(d, n);
}

static void test_readdir(void **state)
{
	enum {
		V = USTATE_NODE_VALUE,
		C = USTATE_NODE_CHILDREN,
		R = USTATE_NODE_RECORD,
	};
	static const char *const d_names[] = {
		"a", "b", "c", "c-d", "c.e", "e", "r", "\xc3\xa9",
	};
	static const unsigned d_flags[] = {
		V, V | C | R, V | C, V, C, C, R, V,
	};
	struct fixture *f = *state;
	ustate_dirent *d = (ustate_dirent *)1;
	ustate *s = f->s;
	size_t n = 99;

	assert_readdir(s, "/", NULL, NULL, 0);
	assert_readdir(s, "/d", NULL, NULL, 0);
	put(s, "/d/\xc3\xa9", "v", 1);
	put(s, "/d/c/x", "v", 1);
	put(s, "/d/c", "v", 1);
	put(s, "/d/a", "v", 1);
	put(s, "/d/b", "v", 1);
	put(s, "/d/b/c", "v", 1);
	put(s, "/d/b/c/d/e", "v", 1);
	put(s, "/d/c-d", "v", 1);
	put(s, "/d/c.e/f", "v", 1);
	put(s, "/d/e/f/g", "v", 1);
	put(s, "/dd", "not in /d", 1);
	put(s, "/top", "v", 1);
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/d/b");
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/d/r");
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/d/e/x");
	mkdir_rmdir(s, USTATE_OP_MKDIR, "/empty");
	assert_readdir(s, "/d", d_names, d_flags, ARRAY_SIZE(d_names));
	assert_readdir(s, "/", (const char *const[]){"d", "dd", "empty", "top"},
		       (const unsigned[]){C, V, R, V}, 4);
	assert_readdir(s, "/d/b", (const char *const[]){"c"},
		       (const unsigned[]){V | C}, 1);
	assert_readdir(s, "/d/e", (const char *const[]){"f", "x"},
		       (const unsigned[]){C, R}, 2);
	assert_readdir(s, "/d/a", NULL, NULL, 0);
	assert_readdir(s, "/nothing/here", NULL, NULL, 0);

	assert_int_equal(ustate_readdir(s, "/d/", &d, &n), -EINVAL);
	assert_int_equal(ustate_readdir(s, "", &d, &n), -EINVAL);
	assert_int_equal(ustate_readdir(s, NULL, &d, &n), -EINVAL);
	assert_int_equal(ustate_readdir(s, "/d\x01", &d, &n), -EINVAL);
	assert_ptr_equal(d, (ustate_dirent *)1);
	assert_int_equal(n, 99);
}

/* More names than one batch, each with a subtree to jump over. */
static void test_readdir_many(void **state)
{
	struct fixture *f = *state;
	char(*names)[32];
	ustate_dirent *d = NULL;
	ustate_op *ops;
	size_t i, n = 0, nops = 0;

	names = calloc(700, sizeof(*names));
	ops = calloc(700, sizeof(*ops));
	assert_non_null(names);
	assert_non_null(ops);
	for (i = 0; i < 150; i++) {
		/* Even children have subtrees, odd ones are plain keys. */
		if (i % 2 == 0) {
			snprintf(names[nops], sizeof(names[0]), "/m/c%03u/x/y",
				 (unsigned)i);
			nops++;
			snprintf(names[nops], sizeof(names[0]), "/m/c%03u/z",
				 (unsigned)i);
			nops++;
		} else {
			snprintf(names[nops], sizeof(names[0]), "/m/c%03u",
				 (unsigned)i);
			nops++;
		}
	}
	for (i = 0; i < nops; i++)
		ops[i] = (ustate_op){.type = USTATE_OP_SET,
				     .key = names[i],
				     .value = "v",
				     .value_len = 1};
	txn_many(f, f->s, ops, nops);
	for (i = 0; i < 100; i++) {
		snprintf(names[i], sizeof(names[0]), "/m/r%03u", (unsigned)i);
		mkdir_rmdir(f->s, USTATE_OP_MKDIR, names[i]);
	}

	assert_int_equal(ustate_readdir(f->s, "/m", &d, &n), 0);
	assert_int_equal(n, 250);
	for (i = 0; i < n; i++) {
		char want[32];

		if (i < 150)
			snprintf(want, sizeof(want), "c%03u", (unsigned)i);
		else
			snprintf(want, sizeof(want), "r%03u",
				 (unsigned)(i - 150));
		assert_string_equal(d[i].name, want);
		assert_int_equal(d[i].flags, i >= 150	  ? USTATE_NODE_RECORD
					     : i % 2 == 0 ? USTATE_NODE_CHILDREN
							  : USTATE_NODE_VALUE);
	}
	ustate_dirents_free(d, n);
	free(ops);
	free(names);
}

/* The first line of a reply, which says what happened. */
static void assert_reply_head(const char *reply, const char *head)
{
	size_t len = strcspn(reply, "\n");

	assert_int_equal(reply[len], '\n');
	assert_true(strlen(reply) > len + 1); /* then a sentence */
	assert_memory_equal(reply, head, strlen(head));
	assert_int_equal(len, strlen(head));
}

/*
 * A script's reply: "ok REVISION" for the n-th revision of the store,
 * then rest (in a buffer that the next call reuses).
 */
static const char *okr(const struct fixture *f, uint64_t n, const char *rest)
{
	static char buf[1024];

	snprintf(buf, sizeof(buf), "ok %" PRIu64 "\n%s", f->base + n, rest);
	return buf;
}

static void test_script(void **state)
{
	static const char text[] = "# a comment\n"
				   "set /s/a 5\nhe\nlo\n"
				   "create /s/my key 3\nabc\n"
				   "\n"
				   "check /s/c 0\n"
				   "get /s/a\n"
				   "commit\n";
	static const char text2[] = "set /s/a 2\nHI\n"
				    "check /s/my key 1\n"
				    "get /s/a\n"
				    "commit\n";
	struct fixture *f = *state;
	char reply2[1024];
	ustate_script *sc = NULL;
	ustate *s = f->s;
	char *reply;
	const char *r;
	size_t i, len;

	snprintf(reply2, sizeof(reply2), "%s",
		 okr(f, 2,
		     "set /s/a 2\ncheck /s/my key 1\nget /s/a 1 5\nhe\nlo\n"));
	assert_int_equal(script_run(s, text, &reply), 1);
	/* The get reads the state before the commit: no /s/a yet. */
	assert_string_equal(reply, okr(f, 1,
				       "set /s/a 1\n"
				       "create /s/my key 1\n"
				       "check /s/c 0\n"
				       "get /s/a 0 0\n\n"));
	free(reply);
	assert_value(s, "/s/a", "he\nlo", 1);
	assert_value(s, "/s/my key", "abc", 1);
	assert_int_equal(ustate_revision(s), REV(1));

	/* Fed one byte at a time: only the last byte commits. */
	assert_int_equal(ustate_script_new(&sc, s), 0);
	for (i = 0; i + 1 < sizeof(text2) - 1; i++)
		assert_int_equal(ustate_script_feed(sc, &text2[i], 1), 0);
	assert_int_equal(ustate_revision(s), REV(1));
	assert_int_equal(ustate_script_revision(sc), 0);
	assert_int_equal(ustate_script_feed(sc, &text2[i], 1), 1);
	assert_int_equal(ustate_script_result(sc), 1);
	assert_int_equal(ustate_script_revision(sc), REV(2));
	r = ustate_script_reply(sc, &len);
	assert_int_equal(len, strlen(reply2));
	assert_memory_equal(r, reply2, len);
	/* Input after the end. */
	assert_int_equal(ustate_script_feed(sc, "set", 3), -EINVAL);
	assert_int_equal(ustate_script_result(sc), 1);
	ustate_script_free(sc);
	assert_value(s, "/s/a", "HI", 2);
	assert_int_equal(ustate_revision(s), REV(2));
}

/*
 * Newlines after a commit are ignored in the same piece, so also in later
 * ones (found by fuzz_txn: fed "commit\n" then "\n", the second write
 * failed with EINVAL where one write of both succeeded).
 */
static void test_script_newlines_after_commit(void **state)
{
	static const char text[] = "set /s/a 1\nx\ncommit\n";
	struct fixture *f = *state;
	ustate_script *sc = NULL;
	const char *r;
	char *reply;
	size_t len;

	assert_int_equal(
		script_run(f->s, "set /s/a 1\nx\ncommit\n\n\n", &reply), 1);
	assert_string_equal(reply, okr(f, 1, "set /s/a 1\n"));
	free(reply);

	assert_int_equal(ustate_script_new(&sc, f->s), 0);
	assert_int_equal(ustate_script_feed(sc, text, sizeof(text) - 1), 1);
	assert_int_equal(ustate_script_feed(sc, "\n", 1), 1);
	assert_int_equal(ustate_script_feed(sc, "\n\n", 2), 1);
	assert_int_equal(ustate_script_feed(sc, "", 0), 1);
	/* Anything else is still input after the end. */
	assert_int_equal(ustate_script_feed(sc, "\nx", 2), -EINVAL);
	assert_int_equal(ustate_script_feed(sc, " ", 1), -EINVAL);
	assert_int_equal(ustate_script_result(sc), 1);
	r = ustate_script_reply(sc, &len);
	assert_int_equal(len, strlen(okr(f, 2, "set /s/a 2\n")));
	assert_memory_equal(r, okr(f, 2, "set /s/a 2\n"), len);
	ustate_script_free(sc);
	assert_value(f->s, "/s/a", "x", 2);
	assert_int_equal(ustate_revision(f->s), REV(2));
}

static void test_script_failures(void **state)
{
	static const struct {
		const char *text;
		int rc;
		const char *head; /* NULL: any */
	} cases[] = {
		{"check /s/a 7\ncommit\n", -ECANCELED,
		 "error 1 ECANCELED /s/a 1"},
		{"check /s/x 0\ndelete /s/nope\ncommit\n", -ENOENT,
		 "error 2 ENOENT /s/nope 0"},
		{"create /s/a 1\ny\ncommit\n", -EEXIST,
		 "error 1 EEXIST /s/a 1"},
		{"set /s/new 1\nx\ncreate /s/a 1\ny\ncommit\n", -EEXIST, NULL},
		{"bogus /s/a\ncommit\n", -EINVAL, NULL},
		{"set /s/a\ncommit\n", -EINVAL, NULL},
		{"set /s/a x\ncommit\n", -EINVAL, NULL},
		{"set /s/a -1\ncommit\n", -EINVAL, NULL},
		{"set /s/a 3\nabcd\ncommit\n", -EINVAL, NULL},
		{"set /s//bad 1\nx\ncommit\n", -EINVAL, NULL},
		{"delete /s/a/.\ncommit\n", -EINVAL, NULL},
		{"set /s/a 99999999999\n", -EFBIG, NULL},
	};
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_script *sc = NULL;
	ustate *s = f->s;
	char *before, *reply;
	size_t i;

	put(s, "/s/a", "a", 1);
	before = snapshot(s);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(script_run(s, cases[i].text, &reply),
				 cases[i].rc);
		assert_memory_equal(reply, "error ", 6);
		if (cases[i].head)
			assert_reply_head(reply, cases[i].head);
		free(reply);
		assert_snapshot(s, before);
	}

	/* More ops than the store allows in one transaction. */
	o.max_txn_ops = 2;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	assert_int_equal(script_run(f->s2,
				    "check /a 0\ncheck /b 0\n"
				    "check /c 0\ncommit\n",
				    &reply),
			 -E2BIG);
	free(reply);
	assert_int_equal(script_run(f->s2,
				    "check /a 0\ncheck /b 0\n"
				    "commit\n",
				    &reply),
			 1);
	free(reply);

	/* A failed script keeps failing; an unfinished one writes nothing. */
	assert_int_equal(ustate_script_new(&sc, s), 0);
	assert_int_equal(ustate_script_feed(sc, "bogus\n", 6), -EINVAL);
	assert_int_equal(ustate_script_feed(sc, "commit\n", 7), -EINVAL);
	assert_int_equal(ustate_script_result(sc), -EINVAL);
	ustate_script_free(sc);
	assert_int_equal(ustate_script_new(&sc, s), 0);
	assert_int_equal(ustate_script_feed(sc, "delete /s/a\ncommi", 17), 0);
	assert_int_equal(ustate_script_result(sc), 0);
	ustate_script_free(sc);
	assert_snapshot(s, before);
	free(before);
}

/* ---- ownership: USTATE_OP_META, MKDIR with metadata, scripts ---------- */

/* One META (or MKDIR) op with metadata m (NULL: none); its result. */
static int meta_txn(ustate *s, ustate_op_type type, const char *key,
		    const ustate_meta *m)
{
	ustate_op op = {.type = type,
			.key = key,
			.value = m,
			.value_len = m ? sizeof(*m) : 0};

	return ustate_transaction(s, &op, 1, NULL);
}

static void assert_meta(ustate *s, const char *path, unsigned which,
			const ustate_meta *want)
{
	ustate_meta m = {.uid = 7, .gid = 7, .mode = 7};

	if (!want) {
		assert_int_equal(ustate_meta_get(s, path, which, &m), -ENOENT);
		assert_int_equal(m.uid, 7); /* untouched */
		return;
	}
	assert_int_equal(ustate_meta_get(s, path, which, &m), 0);
	assert_int_equal(m.uid, want->uid);
	assert_int_equal(m.gid, want->gid);
	assert_int_equal(m.mode, want->mode);
}

static void test_meta_keys(void **state)
{
	static const ustate_meta m1 = {.uid = 1000, .gid = 100, .mode = 0600},
				 m2 = {.uid = 0, .gid = 0, .mode = 04755};
	struct fixture *f = *state;
	ustate_txn_result res;
	ustate *s = f->s;
	uint64_t v[4], r;
	char *before;
	ustate_op ops[4] = {
		{.type = USTATE_OP_CREATE,
		 .key = "/m/n",
		 .value = "n",
		 .value_len = 1},
		{.type = USTATE_OP_META,
		 .key = "/m/n",
		 .value = &m1,
		 .value_len = sizeof(m1)},
	};

	assert_meta(s, "/m/a", USTATE_META_KEY, NULL);
	put(s, "/m/a", "a", 1);
	assert_meta(s, "/m/a", USTATE_META_KEY, NULL);
	r = ustate_revision(s);
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);

	/*
	 * Metadata is no change of the key: no version, no event, and no
	 * revision but on etcd, whose revision counts every write of a key
	 * (the metadata is one, of a side key).
	 */
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/m/a", &m1), 0);
	assert_meta(s, "/m/a", USTATE_META_KEY, &m1);
	assert_meta(s, "/m/a", USTATE_META_DIR, NULL);
	assert_int_equal(ustate_revision(s),
			 f->kind == BACKEND_ETCD ? r + 1 : r);
	assert_value(s, "/m/a", "a", 1);
	expect_no_event(f->w);

	/* A set keeps it, a NULL META drops it. */
	put(s, "/m/a", "b", 2);
	assert_meta(s, "/m/a", USTATE_META_KEY, &m1);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/m/a", &m2), 0);
	assert_meta(s, "/m/a", USTATE_META_KEY, &m2);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/m/a", NULL), 0);
	assert_meta(s, "/m/a", USTATE_META_KEY, NULL);

	/* A delete takes it along: a key made again has none. */
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/m/a", &m1), 0);
	assert_int_equal(ustate_delete(s, "/m/a"), 0);
	assert_meta(s, "/m/a", USTATE_META_KEY, NULL);
	put(s, "/m/a", "c", 1);
	assert_meta(s, "/m/a", USTATE_META_KEY, NULL);

	/* The key must exist when the META runs. */
	memset(&res, 0, sizeof(res));
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/m/none", &m1), -ENOENT);
	assert_meta(s, "/m/none", USTATE_META_KEY, NULL);

	/* Created and owned in one transaction; versions[] of a META. */
	memset(&res, 0, sizeof(res));
	res.versions = v;
	assert_int_equal(ustate_transaction(s, ops, 2, &res), 0);
	assert_int_equal(v[0], 1);
	assert_int_equal(v[1], 1);
	assert_meta(s, "/m/n", USTATE_META_KEY, &m1);

	/* Deleted and created again in one: no owner, or the new one. */
	ops[0] = (ustate_op){.type = USTATE_OP_DELETE, .key = "/m/n"};
	ops[1] = (ustate_op){.type = USTATE_OP_CREATE,
			     .key = "/m/n",
			     .value = "x",
			     .value_len = 1};
	assert_int_equal(ustate_transaction(s, ops, 2, NULL), 0);
	assert_meta(s, "/m/n", USTATE_META_KEY, NULL);
	ops[2] = (ustate_op){.type = USTATE_OP_META,
			     .key = "/m/n",
			     .value = &m2,
			     .value_len = sizeof(m2)};
	assert_int_equal(ustate_transaction(s, ops, 3, NULL), 0);
	assert_meta(s, "/m/n", USTATE_META_KEY, &m2);

	/* A rename moves it, atomically with the key. */
	/* etcd: each delete and create again was a write (txn_same_key). */
	ops[0] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
			     .key = "/m/n",
			     .version = f->kind == BACKEND_ETCD ? 3 : 1};
	ops[1] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/m/r",
			     .value = "x",
			     .value_len = 1};
	ops[2] = (ustate_op){.type = USTATE_OP_DELETE, .key = "/m/n"};
	ops[3] = (ustate_op){.type = USTATE_OP_META,
			     .key = "/m/r",
			     .value = &m2,
			     .value_len = sizeof(m2)};
	assert_int_equal(ustate_transaction(s, ops, 4, NULL), 0);
	assert_meta(s, "/m/r", USTATE_META_KEY, &m2);
	assert_meta(s, "/m/n", USTATE_META_KEY, NULL);

	/* All or nothing: a later failure undoes a META. */
	before = snapshot(s);
	ops[0] = ops[3];
	ops[0].value = &m1;
	ops[1] = (ustate_op){.type = USTATE_OP_DELETE, .key = "/m/missing"};
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, ops, 2, &res), -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_meta(s, "/m/r", USTATE_META_KEY, &m2);
	ops[1] = ops[0];
	ops[0] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/m/s",
			     .value = "s",
			     .value_len = 1};
	ops[1].key = "/m/missing";
	memset(&res, 0, sizeof(res));
	assert_int_equal(ustate_transaction(s, ops, 2, &res), -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.found, 0);
	assert_snapshot(s, before);
	free(before);
	/* On etcd, the metadata before it took a revision. */
	expect_event(f->w, USTATE_EVENT_UPDATED, "/m/a", 2,
		     f->kind == BACKEND_ETCD ? r + 2 : r + 1);
}

/* The times kept with metadata, and the assertion of their fields. */
static void assert_times(ustate *s, const char *path, unsigned which,
			 uint32_t flags, int64_t mtime, int64_t ctime)
{
	ustate_meta m;

	assert_int_equal(ustate_meta_get(s, path, which, &m), 0);
	assert_int_equal(m.flags, flags);
	if (flags)
		assert_int_equal(m.mtime_ns, mtime);
	assert_int_equal(m.ctime_ns, ctime);
}

/*
 * Times: a key's mtime holds until its next write, and through a rename
 * (a META after the SET of one transaction); a record's until its next
 * metadata; a delete drops them; bad flags change nothing.
 */
static void test_meta_times(void **state)
{
	static const ustate_meta t1 = {.uid = 1,
				       .gid = 2,
				       .mode = 0644,
				       .flags = USTATE_META_MTIME,
				       .mtime_ns = -1234567890123LL,
				       .ctime_ns = 5},
				 t2 = {.uid = 1,
				       .gid = 2,
				       .mode = 0600,
				       .flags = USTATE_META_MTIME,
				       .mtime_ns = 1700000000123456789LL,
				       .ctime_ns = 1700000001000000000LL},
				 plain = {.uid = 3, .gid = 4, .mode = 0755};
	ustate_meta bad = t1;
	struct fixture *f = *state;
	ustate *s = f->s;
	ustate_op ops[3] = {
		{.type = USTATE_OP_DELETE, .key = "/t/a"},
		{.type = USTATE_OP_SET,
		 .key = "/t/b",
		 .value = "b",
		 .value_len = 1},
		{.type = USTATE_OP_META,
		 .key = "/t/b",
		 .value = &t2,
		 .value_len = sizeof(t2)},
	};

	put(s, "/t/a", "a", 1);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/t/a", &t1), 0);
	assert_times(s, "/t/a", USTATE_META_KEY, USTATE_META_MTIME, t1.mtime_ns,
		     5);
	/* Metadata again (a chmod) keeps the time it carries. */
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/t/a", &t1), 0);
	assert_times(s, "/t/a", USTATE_META_KEY, USTATE_META_MTIME, t1.mtime_ns,
		     5);
	/* The next write ends the mtime; owner, mode and ctime stay. */
	put(s, "/t/a", "aa", 2);
	assert_times(s, "/t/a", USTATE_META_KEY, 0, 0, 5);
	assert_meta(s, "/t/a", USTATE_META_KEY, &t1);

	/* A rename: the new key has the times from its first version. */
	assert_int_equal(ustate_transaction(s, ops, 3, NULL), 0);
	assert_times(s, "/t/b", USTATE_META_KEY, USTATE_META_MTIME, t2.mtime_ns,
		     t2.ctime_ns);
	assert_meta(s, "/t/a", USTATE_META_KEY, NULL);
	put(s, "/t/b", "bb", 2);
	assert_times(s, "/t/b", USTATE_META_KEY, 0, 0, t2.ctime_ns);

	/* A delete takes them: the key made again has none. */
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/t/b", &t2), 0);
	assert_int_equal(ustate_delete(s, "/t/b"), 0);
	put(s, "/t/b", "b", 1);
	assert_meta(s, "/t/b", USTATE_META_KEY, NULL);

	/* Metadata without times keeps none. */
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/t/b", &plain), 0);
	assert_times(s, "/t/b", USTATE_META_KEY, 0, 0, 0);

	/* A record's time holds while keys come and go below it. */
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/t/d", &t1), 0);
	put(s, "/t/d/x", "x", 1);
	assert_int_equal(ustate_delete(s, "/t/d/x"), 0);
	assert_times(s, "/t/d", USTATE_META_DIR, USTATE_META_MTIME, t1.mtime_ns,
		     5);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/t/d", &plain), 0);
	assert_times(s, "/t/d", USTATE_META_DIR, 0, 0, 0);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", &t2), 0);
	assert_times(s, "/", USTATE_META_DIR, USTATE_META_MTIME, t2.mtime_ns,
		     t2.ctime_ns);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", &plain), 0);

	/* Unknown flags: -EINVAL, and the metadata as it was. */
	bad.flags = 0x2;
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/t/b", &bad), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/t/d", &bad), -EINVAL);
	assert_meta(s, "/t/b", USTATE_META_KEY, &plain);
	assert_times(s, "/t/b", USTATE_META_KEY, 0, 0, 0);
	assert_times(s, "/t/d", USTATE_META_DIR, 0, 0, 0);
}

/* The names of path's xattrs, joined by spaces ("" for none). */
static void assert_xattr_names(ustate *s, const char *path, unsigned which,
			       const char *want)
{
	char buf[512] = "", **names;
	size_t n, i;

	assert_int_equal(ustate_xattr_list(s, path, which, &names, &n), 0);
	for (i = 0; i < n; i++) {
		if (i)
			strcat(buf, " ");
		strcat(buf, names[i]);
	}
	ustate_list_free(names, n);
	assert_string_equal(buf, want);
}

static void assert_xattr(ustate *s, const char *path, unsigned which,
			 const char *name, const char *want)
{
	size_t len;
	void *v;

	if (!want) {
		assert_int_equal(
			ustate_xattr_get(s, path, which, name, &v, &len),
			-ENODATA);
		return;
	}
	assert_int_equal(ustate_xattr_get(s, path, which, name, &v, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(v, want, len);
	free(v);
}

/*
 * Extended attributes: set, replaced, removed, kept by a set of the
 * value, dropped with the key or record, moved by a rename's transaction,
 * refused with ext4's errors and the state unchanged.
 */
static void test_xattrs(void **state)
{
	static const char big_name[] =
		"user.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
	struct fixture *f = *state;
	ustate *s = f->s;
	ustate_txn_result res = {0};
	char *big;
	uint64_t r;
	ustate_op ops[3] = {
		{.type = USTATE_OP_DELETE, .key = "/x/a"},
		{.type = USTATE_OP_SET,
		 .key = "/x/b",
		 .value = "b",
		 .value_len = 1},
		{.type = USTATE_OP_XATTR,
		 .key = "/x/b",
		 .version = USTATE_META_KEY,
		 .value = "user.moved\0yes",
		 .value_len = sizeof("user.moved\0yes") - 1},
	};

	assert_int_equal(sizeof(big_name) - 1, USTATE_XATTR_NAME_MAX + 1);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.a",
					  "1", 1, 0),
			 -ENOENT);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.a",
					  NULL, 0, 0),
			 -ENOENT);
	assert_int_equal(ustate_xattr_set(s, "/x/d", USTATE_META_DIR, "user.a",
					  "1", 1, USTATE_XATTR_REPLACE),
			 -ENOENT);
	put(s, "/x/a", "a", 1);
	assert_xattr_names(s, "/x/a", USTATE_META_KEY, "");
	r = ustate_revision(s);
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.b",
					  "", 0, 0),
			 0);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.a",
					  "one", 3, USTATE_XATTR_CREATE),
			 0);
	assert_xattr_names(s, "/x/a", USTATE_META_KEY, "user.a user.b");
	assert_xattr(s, "/x/a", USTATE_META_KEY, "user.a", "one");
	assert_xattr(s, "/x/a", USTATE_META_KEY, "user.b", "");
	assert_xattr(s, "/x/a", USTATE_META_DIR, "user.a", NULL);
	/* No change of the key: no version, no event, no revision (etcd
	 * counts every write of a key, and xattrs are keys there). */
	assert_value(s, "/x/a", "a", 1);
	expect_no_event(f->w);
	assert_int_equal(ustate_revision(s),
			 f->kind == BACKEND_ETCD ? r + 2 : r);

	/* setxattr(2)'s flags. */
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.a",
					  "x", 1, USTATE_XATTR_CREATE),
			 -EEXIST);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.c",
					  "x", 1, USTATE_XATTR_REPLACE),
			 -ENODATA);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.c",
					  NULL, 0, 0),
			 -ENODATA);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "user.a",
					  "two", 3, USTATE_XATTR_REPLACE),
			 0);
	assert_xattr(s, "/x/a", USTATE_META_KEY, "user.a", "two");

	/* ext4's limits, and nothing changes. */
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY, big_name,
					  "v", 1, 0),
			 -ERANGE);
	assert_int_equal(
		ustate_xattr_set(s, "/x/a", USTATE_META_KEY, "", "v", 1, 0),
		-EINVAL);
	big = calloc(1, USTATE_XATTR_SIZE_MAX + 1);
	assert_non_null(big);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY,
					  "user.big", big,
					  USTATE_XATTR_SIZE_MAX + 1, 0),
			 -E2BIG);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY,
					  "user.big", big,
					  USTATE_XATTR_SIZE_MAX, 0),
			 0);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY,
					  "user.big2", big,
					  USTATE_XATTR_SIZE_MAX, 0),
			 -ENOSPC);
	free(big);
	assert_int_equal(ustate_xattr_set(s, "/x/a", USTATE_META_KEY,
					  "user.big", NULL, 0, 0),
			 0);
	assert_xattr_names(s, "/x/a", USTATE_META_KEY, "user.a user.b");

	/* A set keeps them; a rename's transaction sets the new key's. */
	put(s, "/x/a", "aa", 2);
	assert_xattr(s, "/x/a", USTATE_META_KEY, "user.a", "two");
	assert_int_equal(ustate_transaction(s, ops, 3, NULL), 0);
	assert_xattr_names(s, "/x/b", USTATE_META_KEY, "user.moved");
	assert_xattr(s, "/x/b", USTATE_META_KEY, "user.moved", "yes");
	assert_xattr_names(s, "/x/a", USTATE_META_KEY, "");

	/* A delete takes them: the key made again has none. */
	assert_int_equal(ustate_delete(s, "/x/b"), 0);
	put(s, "/x/b", "b", 1);
	assert_xattr_names(s, "/x/b", USTATE_META_KEY, "");

	/* An XATTR of a key absent then fails the whole transaction. */
	ops[0] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/x/c",
			     .value = "c",
			     .value_len = 1};
	ops[1] = (ustate_op){.type = USTATE_OP_XATTR,
			     .key = "/x/none",
			     .version = USTATE_META_KEY,
			     .value = "user.a\0v",
			     .value_len = 8};
	assert_int_equal(ustate_transaction(s, ops, 2, &res), -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_int_equal(ustate_exists(s, "/x/c"), 0);
	/* Ill-formed ops: -EINVAL. */
	ops[1].key = "/x/b";
	ops[1].value = "user.a";
	ops[1].value_len = 6; /* no NUL */
	assert_int_equal(ustate_transaction(s, &ops[1], 1, NULL), -EINVAL);
	ops[1].value = "user.a\0v";
	ops[1].value_len = 8;
	ops[1].version = USTATE_META_KEY | USTATE_XATTR_REMOVE; /* + bytes */
	assert_int_equal(ustate_transaction(s, &ops[1], 1, NULL), -EINVAL);
	ops[1].version = 7;
	assert_int_equal(ustate_transaction(s, &ops[1], 1, NULL), -EINVAL);
	assert_xattr_names(s, "/x/b", USTATE_META_KEY, "");

	/* Set, then dropped by a delete or rmdir of the same transaction. */
	{
		ustate_op t[4] = {
			{.type = USTATE_OP_XATTR,
			 .key = "/x/r",
			 .version = USTATE_META_KEY,
			 .value = "user.a\0v",
			 .value_len = 8},
			{.type = USTATE_OP_DELETE, .key = "/x/r"},
			{.type = USTATE_OP_SET,
			 .key = "/x/r",
			 .value = "r",
			 .value_len = 1},
			{.type = USTATE_OP_XATTR,
			 .key = "/x/r",
			 .version = USTATE_META_KEY,
			 .value = "user.b\0w",
			 .value_len = 8},
		};

		put(s, "/x/r", "r", 1);
		assert_int_equal(ustate_xattr_set(s, "/x/r", USTATE_META_KEY,
						  "user.old", "o", 1, 0),
				 0);
		assert_int_equal(ustate_transaction(s, t, 3, NULL), 0);
		assert_xattr_names(s, "/x/r", USTATE_META_KEY, "");
		assert_int_equal(ustate_xattr_set(s, "/x/r", USTATE_META_KEY,
						  "user.old", "o", 1, 0),
				 0);
		assert_int_equal(ustate_transaction(s, t, 4, NULL), 0);
		assert_xattr_names(s, "/x/r", USTATE_META_KEY, "user.b");
		t[0] = (ustate_op){.type = USTATE_OP_RMDIR, .key = "/x/e"};
		t[1] = (ustate_op){.type = USTATE_OP_MKDIR, .key = "/x/e"};
		t[2] = (ustate_op){.type = USTATE_OP_XATTR,
				   .key = "/x/e",
				   .version = USTATE_META_DIR,
				   .value = "user.n\0n",
				   .value_len = 8};
		assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/x/e", NULL), 0);
		assert_int_equal(ustate_xattr_set(s, "/x/e", USTATE_META_DIR,
						  "user.old", "o", 1, 0),
				 0);
		assert_int_equal(ustate_transaction(s, t, 2, NULL), 0);
		assert_xattr_names(s, "/x/e", USTATE_META_DIR, "");
		assert_int_equal(ustate_xattr_set(s, "/x/e", USTATE_META_DIR,
						  "user.old", "o", 1, 0),
				 0);
		assert_int_equal(ustate_transaction(s, t, 3, NULL), 0);
		assert_xattr_names(s, "/x/e", USTATE_META_DIR, "user.n");
	}

	/* Records, and the root. */
	assert_int_equal(ustate_xattr_set(s, "/x/d", USTATE_META_DIR, "user.d",
					  "1", 1, 0),
			 -ENOENT);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/x/d", NULL), 0);
	assert_int_equal(ustate_xattr_set(s, "/x/d", USTATE_META_DIR, "user.d",
					  "1", 1, 0),
			 0);
	assert_xattr(s, "/x/d", USTATE_META_DIR, "user.d", "1");
	assert_xattr(s, "/x/d", USTATE_META_KEY, "user.d", NULL);
	assert_int_equal(meta_txn(s, USTATE_OP_RMDIR, "/x/d", NULL), 0);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/x/d", NULL), 0);
	assert_xattr_names(s, "/x/d", USTATE_META_DIR, "");
	assert_int_equal(ustate_xattr_set(s, "/", USTATE_META_DIR, "user.r",
					  "root", 4, 0),
			 0);
	assert_xattr(s, "/", USTATE_META_DIR, "user.r", "root");
	assert_int_equal(ustate_xattr_set(s, "/", USTATE_META_KEY, "user.r",
					  "root", 4, 0),
			 -EINVAL);
	assert_int_equal(
		ustate_xattr_set(s, "/", USTATE_META_DIR, "user.r", NULL, 0, 0),
		0);
	assert_xattr_names(s, "/", USTATE_META_DIR, "");
}

static void test_meta_dirs(void **state)
{
	static const ustate_meta m1 = {.uid = 1000, .gid = 100, .mode = 0700},
				 m2 = {.uid = 5, .gid = 6, .mode = 01777};
	struct fixture *f = *state;
	ustate_dirent *d = NULL;
	char **paths = NULL;
	ustate *s = f->s;
	size_t n = 0;
	uint64_t r;
	ustate_op failing[2] = {
		{.type = USTATE_OP_MKDIR,
		 .key = "/d2",
		 .value = &m1,
		 .value_len = sizeof(m1)},
		{.type = USTATE_OP_DELETE, .key = "/missing"},
	};

	r = ustate_revision(s);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/d", &m1), 0);
	assert_int_equal(node_flags(s, "/d"), USTATE_NODE_RECORD);
	assert_meta(s, "/d", USTATE_META_DIR, &m1);
	assert_meta(s, "/d", USTATE_META_KEY, NULL);
	/* Without metadata, a MKDIR of a record keeps what it has. */
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/d", NULL), 0);
	assert_meta(s, "/d", USTATE_META_DIR, &m1);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/d", &m2), 0);
	assert_meta(s, "/d", USTATE_META_DIR, &m2);
	/*
	 * The record made is a change; its metadata alone is none (but a
	 * revision on etcd, as in test_meta_keys).
	 */
	assert_int_equal(ustate_revision(s),
			 f->kind == BACKEND_ETCD ? r + 2 : r + 1);
	/* RMDIR takes it along. */
	assert_int_equal(meta_txn(s, USTATE_OP_RMDIR, "/d", NULL), 0);
	assert_meta(s, "/d", USTATE_META_DIR, NULL);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/d", NULL), 0);
	assert_meta(s, "/d", USTATE_META_DIR, NULL);

	/* A key and a record of one path: two owners. */
	put(s, "/kd", "v", 1);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/kd", &m1), 0);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/kd", &m2), 0);
	assert_meta(s, "/kd", USTATE_META_DIR, &m1);
	assert_meta(s, "/kd", USTATE_META_KEY, &m2);
	assert_int_equal(ustate_delete(s, "/kd"), 0);
	assert_meta(s, "/kd", USTATE_META_DIR, &m1);
	assert_meta(s, "/kd", USTATE_META_KEY, NULL);

	/* The root: metadata only, never a record, a name or a change. */
	r = ustate_revision(s);
	assert_meta(s, "/", USTATE_META_DIR, NULL);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", &m2), 0);
	assert_meta(s, "/", USTATE_META_DIR, &m2);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", NULL), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_RMDIR, "/", NULL), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/", &m2), -EINVAL);
	assert_int_equal(ustate_list_dirs(s, "", &paths, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(paths[0], "/d");
	assert_string_equal(paths[1], "/kd");
	ustate_list_free(paths, n);
	assert_int_equal(ustate_readdir(s, "/", &d, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(d[0].name, "d");
	ustate_dirents_free(d, n);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", &m1), 0);
	assert_meta(s, "/", USTATE_META_DIR, &m1);

	/* A failed transaction leaves neither record nor owner. */
	assert_int_equal(ustate_transaction(s, failing, 2, NULL), -ENOENT);
	assert_int_equal(node_flags(s, "/d2"), 0);
	assert_meta(s, "/d2", USTATE_META_DIR, NULL);
	/* etcd: the root's two owners were two writes (test_meta_keys). */
	assert_int_equal(ustate_revision(s),
			 f->kind == BACKEND_ETCD ? r + 2 : r);
}

static void test_meta_invalid(void **state)
{
	static const ustate_meta ok = {.uid = 1, .gid = 2, .mode = 0644},
				 bad = {.uid = 1, .gid = 2, .mode = 010000};
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_meta m;
	ustate *s = f->s;
	ustate_op op = {.type = USTATE_OP_META,
			.key = "/i",
			.value = &ok,
			.value_len = sizeof(ok) - 1};

	put(s, "/i", "i", 1);
	assert_int_equal(ustate_transaction(s, &op, 1, NULL), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/i", &bad), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/i", &bad), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_MKDIR, "/", &bad), -EINVAL);
	assert_int_equal(meta_txn(s, USTATE_OP_META, "/i/", &ok), -EINVAL);
	assert_meta(s, "/i", USTATE_META_KEY, NULL);
	assert_int_equal(ustate_meta_get(s, "/i", 2, &m), -EINVAL);
	assert_int_equal(ustate_meta_get(s, "/", USTATE_META_KEY, &m), -EINVAL);
	assert_int_equal(ustate_meta_get(s, "/a/../b", USTATE_META_DIR, &m),
			 -EINVAL);
	assert_int_equal(ustate_meta_get(s, NULL, USTATE_META_DIR, &m),
			 -EINVAL);

	/* A read-only store keeps its owners: -EROFS. */
	o.read_only = 1;
	if (f->kind == BACKEND_SQLITE) {
		assert_int_equal(meta_txn(s, USTATE_OP_META, "/i", &ok), 0);
		assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
		assert_meta(f->s2, "/i", USTATE_META_KEY, &ok);
	} else {
		assert_int_equal(ustate_open_memory(&f->s2, &o), 0);
	}
	assert_int_equal(meta_txn(f->s2, USTATE_OP_META, "/i", &ok), -EROFS);
	assert_int_equal(meta_txn(f->s2, USTATE_OP_MKDIR, "/", &ok), -EROFS);
}

/* A check that refuses keys below /deny, and counts what it saw. */
struct vetting {
	unsigned calls;
	ustate_op_type types[8];
};

static int deny_check(void *arg, const ustate_op *op)
{
	struct vetting *v = arg;

	if (v->calls < ARRAY_SIZE(v->types))
		v->types[v->calls] = op->type;
	v->calls++;
	return strncmp(op->key, "/deny/", 6) ? 0 : -EACCES;
}

/* Feed text in one piece to a script with a check and an owner. */
static int script_vetted(ustate *s, const char *text, struct vetting *v,
			 const ustate_meta *owner, char **reply)
{
	ustate_script *sc = NULL;
	const char *r;
	size_t len;
	int rc;

	assert_int_equal(ustate_script_new(&sc, s), 0);
	if (v)
		ustate_script_set_check(sc, deny_check, v);
	ustate_script_set_owner(sc, owner);
	rc = ustate_script_feed(sc, text, strlen(text));
	r = ustate_script_reply(sc, &len);
	*reply = strndup(r, len);
	ustate_script_free(sc);
	return rc;
}

static void test_script_check(void **state)
{
	struct fixture *f = *state;
	struct vetting v = {0};
	ustate *s = f->s;
	char *before, *reply;

	put(s, "/deny/x", "secret", 1);
	before = snapshot(s);
	assert_int_equal(script_vetted(s,
				       "set /ok 1\na\n"
				       "get /deny/x\n"
				       "delete /ok2\ncommit\n",
				       &v, NULL, &reply),
			 -EACCES);
	assert_reply_head(reply, "error 3 EACCES /deny/x 0");
	/* Refused before anything was read: the value is not there. */
	assert_null(strstr(reply, "secret"));
	free(reply);
	assert_int_equal(v.calls, 2);
	assert_int_equal(v.types[0], USTATE_OP_SET);
	assert_int_equal(v.types[1], USTATE_OP_CHECK_VERSION);
	assert_snapshot(s, before);
	free(before);

	memset(&v, 0, sizeof(v));
	assert_int_equal(script_vetted(s,
				       "create /ok 1\na\ncheck /ok2 0\n"
				       "get /ok3\ndelete /deny2\ncommit\n",
				       &v, NULL, &reply),
			 -ENOENT);
	free(reply);
	assert_int_equal(v.calls, 4);
	assert_int_equal(v.types[0], USTATE_OP_CREATE);
	assert_int_equal(v.types[1], USTATE_OP_CHECK_VERSION);
	assert_int_equal(v.types[2], USTATE_OP_CHECK_VERSION);
	assert_int_equal(v.types[3], USTATE_OP_DELETE);
	assert_int_equal(
		script_vetted(s, "set /ok 1\na\ncommit\n", &v, NULL, &reply),
		1);
	free(reply);
	assert_value(s, "/ok", "a", 1);
}

static void test_script_owner(void **state)
{
	static const ustate_meta own = {.uid = 1000, .gid = 100, .mode = 0644};
	struct fixture *f = *state;
	ustate *s = f->s;
	char *reply;

	put(s, "/o/old", "o", 1);
	put(s, "/o/gone", "g", 1);
	assert_int_equal(script_vetted(s,
				       "set /o/new 1\na\nset /o/old 1\nb\n"
				       "create /o/c 1\nc\ndelete /o/gone\n"
				       "set /o/t 1\nt\ndelete /o/t\n"
				       "get /o/new\ncommit\n",
				       NULL, &own, &reply),
			 1);
	/*
	 * The owner's ops stay out of the reply. (etcd: each op on a key
	 * reports the version the key ends at, test_txn_same_key.)
	 */
	assert_string_equal(reply,
			    okr(f, 3,
				f->kind == BACKEND_ETCD
					? "set /o/new 1\nset /o/old 2\n"
					  "create /o/c 1\ndelete /o/gone 0\n"
					  "set /o/t 0\ndelete /o/t 0\n"
					  "get /o/new 0 0\n\n"
					: "set /o/new 1\nset /o/old 2\n"
					  "create /o/c 1\ndelete /o/gone 0\n"
					  "set /o/t 1\ndelete /o/t 0\n"
					  "get /o/new 0 0\n\n"));
	free(reply);
	assert_meta(s, "/o/new", USTATE_META_KEY, &own);
	assert_meta(s, "/o/c", USTATE_META_KEY, &own);
	assert_meta(s, "/o/old", USTATE_META_KEY, NULL);
	assert_absent(s, "/o/t");

	/* Deleted and set again by the script: a new key, a new owner. */
	assert_int_equal(script_vetted(s,
				       "delete /o/old\nset /o/old 1\nz\n"
				       "commit\n",
				       NULL, &own, &reply),
			 1);
	free(reply);
	assert_meta(s, "/o/old", USTATE_META_KEY, &own);
	/* etcd: the net effect, a write of /o/old at 2 (test_txn_same_key). */
	assert_value(s, "/o/old", "z", f->kind == BACKEND_ETCD ? 3 : 1);

	/* Without an owner, nothing is kept. */
	assert_int_equal(script_vetted(s, "set /o/plain 1\np\ncommit\n", NULL,
				       NULL, &reply),
			 1);
	free(reply);
	assert_meta(s, "/o/plain", USTATE_META_KEY, NULL);
}

/* ---- JSON, errors, NULL ------------------------------------------------ */

static void test_json(void **state)
{
	struct fixture *f = *state;
	json_t *obj, *out = (json_t *)1, *str;
	ustate_entry *e = NULL;
	ustate *s = f->s;
	uint64_t v = 0;

	obj = json_pack("{s:i, s:[b, n, s], s:{s:f}, s:s}", "a", 1, "b", 1, "x",
			"c", "d", 1.5, "u", "caf\xc3\xa9");
	assert_non_null(obj);
	assert_int_equal(ustate_set_json(s, "/j", obj, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(ustate_get_json(s, "/j", &out), 0);
	assert_true(json_equal(obj, out));
	json_decref(out);
	/* Stored as compact text. */
	assert_int_equal(ustate_get(s, "/j", &e), 0);
	assert_null(memchr(e->value, '\n', e->value_len));
	assert_null(memchr(e->value, ' ', e->value_len));
	ustate_entry_free(e);
	assert_int_equal(ustate_set_json(s, "/j", obj, &v), 0);
	assert_int_equal(v, 2);

	str = json_string("just a string");
	assert_int_equal(ustate_set_json(s, "/j/str", str, NULL), 0);
	assert_int_equal(ustate_get_json(s, "/j/str", &out), 0);
	assert_true(json_equal(str, out));
	json_decref(out);
	json_decref(str);

	out = (json_t *)1;
	put(s, "/j/text", "not json", 1);
	assert_int_equal(ustate_get_json(s, "/j/text", &out), -EBADMSG);
	put(s, "/j/two", "1 2", 1);
	assert_int_equal(ustate_get_json(s, "/j/two", &out), -EBADMSG);
	put(s, "/j/empty", "", 1);
	assert_int_equal(ustate_get_json(s, "/j/empty", &out), -EBADMSG);
	assert_int_equal(ustate_get_json(s, "/j/missing", &out), -ENOENT);
	assert_int_equal(ustate_get_json(s, "/j//bad", &out), -EINVAL);
	assert_ptr_equal(out, (json_t *)1);

	assert_int_equal(ustate_set_json(s, "/j/./bad", obj, NULL), -EINVAL);
	assert_int_equal(ustate_set_json(s, "/j/null", NULL, NULL), -EINVAL);
	assert_absent(s, "/j/null");
	json_decref(obj);
}

static void test_strerror(void **state)
{
	static const int codes[] = {
		ECANCELED, ENOENT,    EOVERFLOW, ENODATA,      EEXIST, EFBIG,
		EROFS,	   E2BIG,     EINVAL,	 ENAMETOOLONG, EAGAIN, EUCLEAN,
		EBADMSG,   ETIMEDOUT, ENOTCONN,	 ECONNREFUSED, EBUSY,
	};
	const char *text[ARRAY_SIZE(codes)];
	size_t i, j;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(codes); i++) {
		text[i] = ustate_strerror(-codes[i]);
		assert_non_null(text[i]);
		assert_true(strlen(text[i]) > 0);
		assert_string_equal(ustate_strerror(codes[i]), text[i]);
		for (j = 0; j < i; j++)
			assert_string_not_equal(text[i], text[j]);
	}
	/* An unknown outcome says so: the write may have been applied. */
	assert_non_null(strstr(ustate_strerror(-ETIMEDOUT), "may or may not"));
	assert_non_null(strstr(ustate_strerror(-ENOTCONN), "nothing was"));
	assert_non_null(ustate_strerror(-123456));
	assert_true(strlen(ustate_strerror(-123456)) > 0);
	assert_non_null(ustate_strerror(0));
}

/* CHECK_CHILDREN counts the keys strictly below a key, not its siblings. */
static void test_check_children(void **state)
{
	struct fixture *f = *state;
	ustate_txn_result res = {0};
	uint64_t rev;
	ustate_op op = {.type = USTATE_OP_CHECK_CHILDREN, .key = "/d"};

	put(f->s, "/d", "own", 1);
	put(f->s, "/d/a", "1", 1);
	put(f->s, "/d/b/c", "2", 1);
	put(f->s, "/d-x", "3", 1);
	put(f->s, "/dd", "4", 1);
	rev = ustate_revision(f->s);
	op.version = 2;
	assert_int_equal(ustate_transaction(f->s, &op, 1, &res), 0);
	assert_int_equal(ustate_revision(f->s), rev);
	op.version = 3;
	assert_int_equal(ustate_transaction(f->s, &op, 1, &res), -ECANCELED);
	assert_int_equal(res.failed, 0);
	assert_int_equal(res.found, 2);
	op.key = "/nothing";
	op.version = 0;
	assert_int_equal(ustate_transaction(f->s, &op, 1, &res), 0);
	op.key = "/d/";
	assert_int_equal(ustate_transaction(f->s, &op, 1, &res), -EINVAL);
}

static void test_null_is_noop(void **state)
{
	(void)state;
	ustate_close(NULL);
	ustate_entry_free(NULL);
	ustate_list_free(NULL, 0);
	ustate_watch_close(NULL);
	ustate_dirents_free(NULL, 0);
	ustate_script_free(NULL);
}

/* ---- administration: export, restore, backup, check, compact ---------- */

/* Records copied out of an export, to feed a restore. */
struct recs {
	ustate_record *v;
	size_t n;
	size_t pos;  /* the next one a restore takes */
	int fail_at; /* feed: return fail_rc instead of record fail_at */
	int fail_rc;
	size_t calls;
};

static int recs_add(void *arg, const ustate_record *r)
{
	struct recs *rs = arg;
	ustate_record *c;
	void *val = NULL;

	rs->v = realloc(rs->v, (rs->n + 1) * sizeof(*rs->v));
	assert_non_null(rs->v);
	c = &rs->v[rs->n++];
	*c = *r;
	c->key = strdup(r->key);
	assert_non_null(c->key);
	if (r->type == USTATE_RECORD_KEY) {
		assert_non_null(r->value);
		val = malloc(r->value_len + 1);
		assert_non_null(val);
		memcpy(val, r->value, r->value_len);
	}
	c->value = val;
	c->lease = r->lease ? strdup(r->lease) : NULL;
	/* Its metadata and xattrs, borrowed too. */
	if (r->meta) {
		c->meta = malloc(sizeof(*c->meta));
		assert_non_null(c->meta);
		memcpy((ustate_meta *)c->meta, r->meta, sizeof(*r->meta));
	}
	c->xattrs = NULL;
	if (r->nxattrs) {
		ustate_xattr *x = calloc(r->nxattrs, sizeof(*x));
		size_t i;

		assert_non_null(x);
		for (i = 0; i < r->nxattrs; i++) {
			x[i].name = strdup(r->xattrs[i].name);
			x[i].value = malloc(r->xattrs[i].value_len + 1);
			assert_non_null(x[i].name);
			assert_non_null(x[i].value);
			memcpy((void *)x[i].value, r->xattrs[i].value,
			       r->xattrs[i].value_len);
			x[i].value_len = r->xattrs[i].value_len;
		}
		c->xattrs = x;
	}
	return 0;
}

static void recs_free(struct recs *rs)
{
	size_t i, j;

	for (i = 0; i < rs->n; i++) {
		free((char *)rs->v[i].key);
		free((void *)rs->v[i].value);
		free((char *)rs->v[i].lease);
		free((void *)rs->v[i].meta);
		for (j = 0; j < rs->v[i].nxattrs; j++) {
			free((char *)rs->v[i].xattrs[j].name);
			free((void *)rs->v[i].xattrs[j].value);
		}
		free((void *)rs->v[i].xattrs);
	}
	free(rs->v);
	memset(rs, 0, sizeof(*rs));
}

static int recs_next(void *arg, ustate_record *r)
{
	struct recs *rs = arg;

	rs->calls++;
	if (rs->fail_rc && rs->pos == (size_t)rs->fail_at)
		return rs->fail_rc;
	if (rs->pos == rs->n)
		return 0;
	*r = rs->v[rs->pos++];
	return 1;
}

static void recs_export(ustate *s, const char *prefix, struct recs *rs)
{
	memset(rs, 0, sizeof(*rs));
	assert_int_equal(ustate_export(s, prefix, recs_add, rs), 0);
}

/* An export as text, every field but mod_revision: equal means same data. */
static char *export_text(ustate *s)
{
	char *buf = NULL;
	size_t len = 0, i, j;
	struct recs rs;
	FILE *fp;

	recs_export(s, "", &rs);
	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	for (i = 0; i < rs.n; i++) {
		const ustate_record *r = &rs.v[i];

		fprintf(fp, "%d %s", r->type, r->key);
		if (r->type == USTATE_RECORD_KEY)
			fprintf(fp, " v%" PRIu64 " c%" PRId64 " u%" PRId64 " =",
				r->version, r->created_at, r->updated_at);
		for (j = 0; r->type == USTATE_RECORD_KEY && j < r->value_len;
		     j++)
			fprintf(fp, "%02x",
				((const unsigned char *)r->value)[j]);
		fputc('\n', fp);
	}
	fclose(fp);
	recs_free(&rs);
	return buf;
}

static void assert_list_dirs(ustate *s, const char *const *want, size_t nwant)
{
	char **v = NULL;
	size_t n = 0, i;

	assert_int_equal(ustate_list_dirs(s, "", &v, &n), 0);
	assert_int_equal(n, nwant);
	for (i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	ustate_list_free(v, n);
}

static void mkdir_record(ustate *s, const char *path)
{
	ustate_op op = {.type = USTATE_OP_MKDIR, .key = path};

	assert_int_equal(ustate_transaction(s, &op, 1, NULL), 0);
}

/* Keys at several versions, binary and empty values, directory records. */
static void fill_admin(ustate *s)
{
	static const char bin[] = {'\0', (char)0xff, 'a', '\n', (char)0x80};
	uint64_t v;

	put(s, "/b/x", "1", 1);
	put(s, "/b/x", "2", 2);
	put(s, "/b/x", "three", 3);
	assert_int_equal(ustate_set(s, "/bin", bin, sizeof(bin), &v), 0);
	assert_int_equal(ustate_set(s, "/empty", "", 0, &v), 0);
	put(s, "/gone", "g", 1);
	assert_int_equal(ustate_delete(s, "/gone"), 0);
	put(s, "/a", "\xc3\xa9t\xc3\xa9", 1);
	mkdir_record(s, "/b");
	mkdir_record(s, "/d/e");
	mkdir_record(s, "/b/x");
}

/* An export as text with every record's metadata and xattrs. */
static char *export_meta_text(ustate *s)
{
	char *buf = NULL;
	size_t len = 0, i, j, k;
	struct recs rs;
	FILE *fp;

	recs_export(s, "", &rs);
	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	for (i = 0; i < rs.n; i++) {
		const ustate_record *r = &rs.v[i];

		fprintf(fp, "%d %s", r->type, r->key);
		if (r->meta)
			fprintf(fp, " %u:%u:%04o:%u:%" PRId64 ":%" PRId64,
				r->meta->uid, r->meta->gid, r->meta->mode,
				r->meta->flags,
				r->meta->flags ? r->meta->mtime_ns : 0,
				r->meta->ctime_ns);
		for (j = 0; j < r->nxattrs; j++) {
			fprintf(fp, " %s=", r->xattrs[j].name);
			for (k = 0; k < r->xattrs[j].value_len; k++)
				fprintf(fp, "%02x",
					((const unsigned char *)r->xattrs[j]
						 .value)[k]);
		}
		fputc('\n', fp);
	}
	fclose(fp);
	recs_free(&rs);
	return buf;
}

/*
 * Export and restore carry metadata (owner, mode, times) and xattrs of
 * keys, records and the root; a restore gives each exactly its record's.
 */
static void test_restore_meta(void **state)
{
	static const ustate_meta ma = {.uid = 1,
				       .gid = 2,
				       .mode = 04750,
				       .flags = USTATE_META_MTIME,
				       .mtime_ns = 1500000000123456789LL,
				       .ctime_ns = 1600000000000000001LL},
				 md = {.uid = 3, .gid = 4, .mode = 0700},
				 mr = {.uid = 5, .gid = 6, .mode = 01777};
	static const char want[] =
		"2 / 5:6:1777:0:0:0 user.r=72\n"
		"1 /m/a 1:2:4750:1:1500000000123456789:1600000000000000001"
		" user.a=31 user.bin=00ff\n"
		"1 /m/b user.only=\n"
		"1 /m/c 3:4:0700:0:0:0\n"
		"2 /m/d 3:4:0700:0:0:0 user.d=6464\n";
	ustate_options o = fast_options();
	struct fixture *f = *state;
	char *text, *again;
	struct recs rs;
	uint64_t v;
	ustate_op op = {.type = USTATE_OP_MKDIR,
			.key = "/m/d",
			.value = &md,
			.value_len = sizeof(md)};

	put(f->s, "/m/a", "a", 1);
	assert_int_equal(meta_txn(f->s, USTATE_OP_META, "/m/a", &ma), 0);
	assert_int_equal(ustate_xattr_set(f->s, "/m/a", USTATE_META_KEY,
					  "user.bin", "\0\xff", 2, 0),
			 0);
	assert_int_equal(ustate_xattr_set(f->s, "/m/a", USTATE_META_KEY,
					  "user.a", "1", 1, 0),
			 0);
	put(f->s, "/m/b", "b", 1);
	assert_int_equal(ustate_xattr_set(f->s, "/m/b", USTATE_META_KEY,
					  "user.only", "", 0, 0),
			 0);
	put(f->s, "/m/c", "c", 1);
	assert_int_equal(meta_txn(f->s, USTATE_OP_META, "/m/c", &md), 0);
	assert_int_equal(ustate_transaction(f->s, &op, 1, NULL), 0);
	assert_int_equal(ustate_xattr_set(f->s, "/m/d", USTATE_META_DIR,
					  "user.d", "dd", 2, 0),
			 0);
	assert_int_equal(meta_txn(f->s, USTATE_OP_MKDIR, "/", &mr), 0);
	assert_int_equal(ustate_xattr_set(f->s, "/", USTATE_META_DIR, "user.r",
					  "r", 1, 0),
			 0);
	text = export_meta_text(f->s);
	assert_string_equal(text, want);
	if (f->kind == BACKEND_ETCD) {
		free(text);
		return;
	}
	/* Into a new store: the same, record for record. */
	recs_export(f->s, "", &rs);
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs, 0, NULL), 0);
	again = export_meta_text(f->s2);
	assert_string_equal(again, want);
	free(again);
	/* Over changed metadata (merged): each gets its record's again. */
	assert_int_equal(meta_txn(f->s2, USTATE_OP_META, "/m/a", &md), 0);
	assert_int_equal(ustate_xattr_set(f->s2, "/m/a", USTATE_META_KEY,
					  "user.a", NULL, 0, 0),
			 0);
	assert_int_equal(ustate_xattr_set(f->s2, "/m/b", USTATE_META_KEY,
					  "user.new", "n", 1, 0),
			 0);
	assert_int_equal(ustate_set(f->s2, "/m/x", "x", 1, &v), 0);
	rs.pos = 0;
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs,
					USTATE_RESTORE_REPLACE, NULL),
			 0);
	again = export_meta_text(f->s2);
	assert_string_equal(again, want);
	free(again);
	recs_free(&rs);
	free(text);
}

static void test_export(void **state)
{
	static const char *const order[] = {"/a",   "/b",   "/b/x",  "/b/x",
					    "/bin", "/d/e", "/empty"};
	static const int types[] = {1, 2, 1, 2, 1, 2, 1};
	struct fixture *f = *state;
	struct recs rs;
	ustate_entry *e;
	size_t i;

	fill_admin(f->s);
	recs_export(f->s, "", &rs);
	/* Byte order; a key before the record of the same path. */
	assert_int_equal(rs.n, 7);
	for (i = 0; i < rs.n; i++) {
		assert_string_equal(rs.v[i].key, order[i]);
		assert_int_equal(rs.v[i].type, types[i]);
		if (rs.v[i].type != USTATE_RECORD_KEY)
			continue;
		assert_int_equal(ustate_get(f->s, rs.v[i].key, &e), 0);
		assert_int_equal(rs.v[i].version, e->version);
		assert_int_equal(rs.v[i].created_at, e->created_at);
		assert_int_equal(rs.v[i].updated_at, e->updated_at);
		assert_int_equal(rs.v[i].mod_revision, e->mod_revision);
		assert_int_equal(rs.v[i].value_len, e->value_len);
		assert_memory_equal(rs.v[i].value, e->value, e->value_len);
		ustate_entry_free(e);
	}
	assert_int_equal(rs.v[2].version, 3);
	assert_int_equal(rs.v[4].value_len, 5);
	recs_free(&rs);

	/* A prefix is a plain string prefix. */
	recs_export(f->s, "/b", &rs);
	assert_int_equal(rs.n, 4);
	assert_string_equal(rs.v[3].key, "/bin");
	recs_free(&rs);
	recs_export(f->s, "/zzz", &rs);
	assert_int_equal(rs.n, 0);
	recs_free(&rs);
	assert_int_equal(ustate_export(f->s, "bad\x01", recs_add, &rs),
			 -EINVAL);
	assert_int_equal(ustate_export(f->s, "", NULL, NULL), -EINVAL);
}

static int stop_after_two(void *arg, const ustate_record *r)
{
	int *n = arg;

	return ++*n == 2 ? -EINTR : 0;
}

static void test_export_stops(void **state)
{
	struct fixture *f = *state;
	int n = 0;

	fill_admin(f->s);
	assert_int_equal(ustate_export(f->s, "", stop_after_two, &n), -EINTR);
	assert_int_equal(n, 2);
	/* The store is fine afterwards: the snapshot was let go. */
	put(f->s, "/after", "x", 1);
}

/*
 * etcd numbers the versions of its keys itself: no restore can keep a
 * record's version there, so it has none (-EOPNOTSUPP), and it leaves
 * the store as it was.
 */
static void assert_no_restore(struct fixture *f)
{
	ustate_restore_result res = {0};
	struct recs rs;
	char *before;

	fill_admin(f->s);
	recs_export(f->s, "", &rs);
	before = snapshot(f->s);
	assert_int_equal(ustate_restore(f->s, recs_next, &rs,
					USTATE_RESTORE_REPLACE, &res),
			 -EOPNOTSUPP);
	assert_snapshot(f->s, before);
	free(before);
	recs_free(&rs);
}

static void test_restore_roundtrip(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_restore_result res;
	char *before, *after;
	struct recs rs;

	if (f->kind == BACKEND_ETCD) {
		assert_no_restore(f);
		return;
	}
	fill_admin(f->s);
	recs_export(f->s, "", &rs);
	before = export_text(f->s);
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	assert_int_equal(ustate_watch_open(&f->w, f->s2, "*", 1), 0);
	memset(&res, 0xff, sizeof(res));
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs, 0, &res), 0);
	assert_int_equal(res.keys, 4);
	assert_int_equal(res.dirs, 3);
	assert_int_equal(res.written, 4);
	assert_int_equal(res.deleted, 0);
	/* One revision for the whole restore. */
	assert_int_equal(res.revision, REV(1));
	assert_int_equal(ustate_revision(f->s2), REV(1));
	after = export_text(f->s2);
	assert_string_equal(after, before);
	free(after);
	assert_int_equal(mod_revision(f->s2, "/b/x"), REV(1));
	/* Watches see the keys created at their restored versions. */
	expect_events_of_revision(
		f->w, 1,
		(const ustate_event[]){
			{.type = USTATE_EVENT_CREATED,
			 .key = "/a",
			 .version = 1},
			{.type = USTATE_EVENT_CREATED,
			 .key = "/b/x",
			 .version = 3},
			{.type = USTATE_EVENT_CREATED,
			 .key = "/bin",
			 .version = 1},
			{.type = USTATE_EVENT_CREATED,
			 .key = "/empty",
			 .version = 1},
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/b"},
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/b/x"},
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/d/e"}},
		7);
	expect_no_event(f->w);
	/* The store goes on from the restored versions. */
	put(f->s2, "/b/x", "four", 4);
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);

	/* A store that is not empty is refused before a record is read. */
	rs.pos = 0;
	rs.calls = 0;
	free(before);
	before = snapshot(f->s2);
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs, 0, NULL),
			 -ENOTEMPTY);
	assert_int_equal(rs.calls, 0);
	assert_snapshot(f->s2, before);
	free(before);
	recs_free(&rs);
}

static void test_restore_not_empty_dirs(void **state)
{
	struct fixture *f = *state;
	struct recs rs = {0};

	if (f->kind == BACKEND_ETCD) {
		assert_no_restore(f);
		return;
	}
	/* A directory record alone makes a store not empty. */
	mkdir_record(f->s, "/only");
	assert_int_equal(ustate_restore(f->s, recs_next, &rs, 0, NULL),
			 -ENOTEMPTY);
	assert_int_equal(ustate_restore(f->s, recs_next, &rs,
					USTATE_RESTORE_MERGE, NULL),
			 0);
	assert_int_equal(ustate_revision(f->s), REV(1)); /* the record's */
}

static void test_restore_merge_replace(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_restore_result res;
	struct recs rs = {0};
	ustate_entry *e;
	uint64_t r0;
	ustate_record in[] = {
		{.type = USTATE_RECORD_KEY,
		 .key = "/a",
		 .value = "old",
		 .value_len = 3,
		 .version = 2,
		 .created_at = 10,
		 .updated_at = 20},
		{.type = USTATE_RECORD_KEY,
		 .key = "/new",
		 .value = "n",
		 .value_len = 1,
		 .version = 7,
		 .created_at = 5,
		 .updated_at = 6},
		{.type = USTATE_RECORD_DIR, .key = "/dir"},
		{.type = USTATE_RECORD_KEY, .key = "/same"},
	};

	if (f->kind == BACKEND_ETCD) {
		assert_no_restore(f);
		return;
	}
	put(f->s, "/a", "a1", 1);
	put(f->s, "/a", "a2", 2);
	put(f->s, "/a", "a3", 3);
	put(f->s, "/c", "c", 1);
	put(f->s, "/same", "s", 1);
	mkdir_record(f->s, "/olddir");
	/* A record equal to its key is no change. */
	assert_int_equal(ustate_get(f->s, "/same", &e), 0);
	in[3].value = "s";
	in[3].value_len = 1;
	in[3].version = e->version;
	in[3].created_at = e->created_at;
	in[3].updated_at = e->updated_at;
	ustate_entry_free(e);
	rs.v = in;
	rs.n = ARRAY_SIZE(in);

	/* The same start on a second store, for the replace. */
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	put(f->s2, "/a", "a1", 1);
	put(f->s2, "/c", "c", 1);
	mkdir_record(f->s2, "/olddir");

	r0 = ustate_revision(f->s);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "*", r0 + 1), 0);
	assert_int_equal(ustate_restore(f->s, recs_next, &rs,
					USTATE_RESTORE_MERGE, &res),
			 0);
	assert_int_equal(res.keys, 3);
	assert_int_equal(res.dirs, 1);
	assert_int_equal(res.written, 2);
	assert_int_equal(res.deleted, 0);
	assert_int_equal(res.revision, r0 + 1);
	/* The version may go down: the record says so. */
	assert_value(f->s, "/a", "old", 2);
	assert_int_equal(ustate_get(f->s, "/a", &e), 0);
	assert_int_equal(e->created_at, 10);
	assert_int_equal(e->updated_at, 20);
	assert_int_equal(e->mod_revision, r0 + 1);
	ustate_entry_free(e);
	assert_value(f->s, "/new", "n", 7);
	assert_value(f->s, "/c", "c", 1);
	assert_int_equal(mod_revision(f->s, "/same"), REV(5));
	expect_events_of_revision(
		f->w, r0 + 1,
		(const ustate_event[]){
			{.type = USTATE_EVENT_UPDATED,
			 .key = "/a",
			 .version = 2},
			{.type = USTATE_EVENT_CREATED,
			 .key = "/new",
			 .version = 7},
			{.type = USTATE_EVENT_DIR_CREATED, .key = "/dir"}},
		3);
	expect_no_event(f->w);
	assert_list_dirs(f->s, (const char *const[]){"/dir", "/olddir"}, 2);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);

	/* Merging the same records again changes nothing: no revision. */
	rs.pos = 0;
	assert_int_equal(ustate_restore(f->s, recs_next, &rs,
					USTATE_RESTORE_MERGE, &res),
			 0);
	assert_int_equal(res.written, 0);
	assert_int_equal(res.revision, r0 + 1);
	assert_int_equal(ustate_revision(f->s), r0 + 1);

	/* Replace: what the records do not name goes. */
	rs.pos = 0;
	r0 = ustate_revision(f->s2);
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs,
					USTATE_RESTORE_REPLACE, &res),
			 0);
	assert_int_equal(res.written, 3);
	assert_int_equal(res.deleted, 1);
	assert_int_equal(res.revision, r0 + 1);
	assert_absent(f->s2, "/c");
	assert_value(f->s2, "/a", "old", 2);
	assert_list_dirs(f->s2, (const char *const[]){"/dir"}, 1);
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	rs.pos = 0;
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs,
					USTATE_RESTORE_REPLACE, &res),
			 0);
	assert_int_equal(res.written + res.deleted, 0);
	assert_int_equal(ustate_revision(f->s2), r0 + 1);
}

/* A restore of rs into s must fail with want, changing nothing. */
static void restore_fails_with(ustate *s, struct recs *rs, unsigned flags,
			       int want)
{
	char *before = snapshot(s);

	assert_int_equal(ustate_restore(s, recs_next, rs, flags, NULL), want);
	assert_snapshot(s, before);
	free(before);
}

static void restore_fails(ustate *s, ustate_record *rec, size_t n,
			  unsigned flags, int want)
{
	struct recs rs = {.v = rec, .n = n};

	restore_fails_with(s, &rs, flags, want);
}

static void test_restore_all_or_nothing(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	struct recs rs = {0};
	char big[64] = {0};
	ustate_record good = {.type = USTATE_RECORD_KEY,
			      .key = "/ok",
			      .value = "v",
			      .value_len = 1,
			      .version = 1};
	ustate_record in[2];

	if (f->kind == BACKEND_ETCD) {
		assert_no_restore(f);
		return;
	}
	in[0] = good;
	/* Each bad record after a good one: nothing is written. */
	in[1] = good;
	in[1].key = "/bad//key";
	restore_fails(f->s, in, 2, 0, -EINVAL);
	in[1] = good;
	in[1].key = "/two";
	in[1].version = 0;
	restore_fails(f->s, in, 2, 0, -EINVAL);
	in[1].version = (uint64_t)INT64_MAX + 1;
	restore_fails(f->s, in, 2, 0, -EINVAL);
	in[1] = good;
	in[1].type = 9;
	restore_fails(f->s, in, 2, 0, -EINVAL);
	in[1] = good;
	in[1].value = NULL;
	restore_fails(f->s, in, 2, 0, -EINVAL);
	in[1] = good;
	restore_fails(f->s, in, 2, 0, -EEXIST);
	in[1] = (ustate_record){.type = USTATE_RECORD_DIR, .key = "/d"};
	in[0] = in[1];
	restore_fails(f->s, in, 2, 0, -EEXIST);
	/* A key and a record may share a path. */
	in[0] = good;
	in[1].key = "/ok";
	rs.v = in;
	rs.n = 2;
	assert_int_equal(ustate_restore(f->s, recs_next, &rs, 0, NULL), 0);
	assert_value(f->s, "/ok", "v", 1);

	/* The input's own error ends it, also in a store with keys. */
	in[0] = good;
	in[0].key = "/other";
	in[1] = good;
	in[1].key = "/third";
	rs = (struct recs){.v = in, .n = 2, .fail_at = 1, .fail_rc = -EBADMSG};
	restore_fails_with(f->s, &rs, USTATE_RESTORE_MERGE, -EBADMSG);
	rs.pos = 0;
	assert_int_equal(
		ustate_restore(f->s, recs_next, &rs,
			       USTATE_RESTORE_MERGE | USTATE_RESTORE_REPLACE,
			       NULL),
		-EINVAL);
	assert_int_equal(ustate_restore(f->s, recs_next, &rs, 0x10, NULL),
			 -EINVAL);
	assert_int_equal(ustate_restore(f->s, NULL, NULL, 0, NULL), -EINVAL);

	/* A value over the store's maximum. */
	o.max_value_size = 16;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	in[0] = good;
	in[1] = good;
	in[1].key = "/big";
	in[1].value = big;
	in[1].value_len = sizeof(big);
	restore_fails(f->s2, in, 2, 0, -EFBIG);
	assert_int_equal(ustate_revision(f->s2), REV(0));
}

static void test_compact(void **state)
{
	struct fixture *f = *state;
	uint64_t removed = 99, r, i;
	ustate_watch *w = NULL;
	ustate_op two[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/t/a",
		 .value = "a",
		 .value_len = 1},
		{.type = USTATE_OP_SET,
		 .key = "/t/b",
		 .value = "b",
		 .value_len = 1},
	};

	/*
	 * etcd compacts its history for the whole cluster, other stores'
	 * prefixes too: that is no store's call (-EOPNOTSUPP; an operator
	 * runs etcdctl compact), and nothing changes.
	 */
	if (f->kind == BACKEND_ETCD) {
		put(f->s, "/k", "v", 1);
		r = ustate_revision(f->s);
		assert_int_equal(ustate_compact(f->s, r, &removed),
				 -EOPNOTSUPP);
		assert_int_equal(removed, 99);
		assert_int_equal(ustate_watch_open(&w, f->s, "*", r), 0);
		expect_event(w, USTATE_EVENT_CREATED, "/k", 1, r);
		ustate_watch_close(w);
		return;
	}
	for (i = 0; i < 8; i++)
		put(f->s, "/k", "v", i + 1);
	/* Revision 9 holds two changes. */
	assert_int_equal(ustate_transaction(f->s, two, 2, NULL), 0);
	put(f->s, "/k", "v", 9);
	r = ustate_revision(f->s);
	assert_int_equal(r, REV(10));

	assert_int_equal(ustate_compact(f->s, 0, &removed), -EINVAL);
	assert_int_equal(ustate_compact(f->s, r + 2, &removed), -EINVAL);
	assert_int_equal(removed, 99);
	assert_int_equal(ustate_compact(f->s, 1, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(ustate_compact(f->s, 6, &removed), 0);
	assert_int_equal(removed, 5);
	assert_int_equal(ustate_watch_open(&w, f->s, "*", 5), -ENODATA);
	assert_int_equal(ustate_watch_open(&w, f->s, "*", 6), 0);
	expect_event(w, USTATE_EVENT_UPDATED, "/k", 6, REV(6));
	ustate_watch_close(w);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "*", 7), 0);
	/* Compacting to an older point keeps what is gone gone. */
	assert_int_equal(ustate_compact(f->s, 3, &removed), 0);
	assert_int_equal(removed, 0);
	assert_int_equal(ustate_compact(f->s, 10, &removed), 0);
	assert_int_equal(removed, 5);
	/* The watch about to read revision 7 lost its history. */
	assert_int_equal(ustate_watch_next(f->w, &(ustate_event){0}, 0),
			 -EOVERFLOW);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
	assert_int_equal(ustate_compact(f->s, r + 1, &removed), 0);
	assert_int_equal(removed, 1);
	assert_int_equal(ustate_watch_open(&w, f->s, "*", r), -ENODATA);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
	/* Keys and revisions stay; new changes are history again. */
	assert_value(f->s, "/k", "v", 9);
	assert_int_equal(ustate_revision(f->s), r);
	assert_int_equal(ustate_watch_open(&f->w2, f->s, "*", r + 1), 0);
	put(f->s, "/k", "v", 10);
	expect_event(f->w2, USTATE_EVENT_UPDATED, "/k", 10, r + 1);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
	assert_int_equal(ustate_compact(f->s, 5, NULL), 0);
}

/* Problems a check reported, as "check key" lines. */
static int collect_problem(void *arg, const ustate_problem *p)
{
	FILE *fp = arg;

	assert_non_null(p->check);
	assert_non_null(p->detail);
	assert_true(strlen(p->detail) > 0);
	fprintf(fp, "%s %s\n", p->check, p->key ? p->key : "-");
	return 0;
}

/* The problems of a check, which must count want (< 0: any > 0). */
static char *check_text(ustate *s, int want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp;
	int rc;

	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	rc = ustate_check(s, collect_problem, fp);
	fclose(fp);
	if (want >= 0)
		assert_int_equal(rc, want);
	else
		assert_true(rc > 0);
	return buf;
}

static int stop_check(void *arg, const ustate_problem *p)
{
	return -ECANCELED;
}

static void test_check_clean(void **state)
{
	ustate_options o = fast_options();
	struct fixture *f = *state;
	char *text;
	int i;

	text = check_text(f->s, 0);
	assert_string_equal(text, "");
	free(text);
	fill_admin(f->s);
	for (i = 0; i < 50; i++)
		put(f->s, "/many", "x", i + 1);
	assert_int_equal(ustate_delete(f->s, "/many"), 0);
	text = check_text(f->s, 0);
	assert_string_equal(text, "");
	free(text);
	/* Trimmed history is no problem either. */
	o.history = 5;
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	for (i = 0; i < 100; i++)
		put(f->s2, i % 2 ? "/odd" : "/even", "x", i / 2 + 1);
	assert_int_equal(ustate_check(f->s2, stop_check, NULL), 0);
}

/* ---- SQLite only ------------------------------------------------------- */

/* A child's 200 increments; its exit status tells the parent how it went. */
static int child_increments(const char *path, int go_fd, int n)
{
	ustate_options o = fast_options();
	int i, rc = 0, retries = 0;
	ustate *s;
	char c;

	if (read(go_fd, &c, 1) < 0)
		return 2;
	if (ustate_open_sqlite(&s, path, &o) < 0)
		return 3;
	for (i = 0; i < n && rc == 0; i++)
		rc = cas_increment(s, "/counter", &retries);
	ustate_close(s);
	return rc == 0 ? 0 : 4;
}

static void test_sqlite_process_cas_race(void **state)
{
	struct fixture *f = *state;
	int go[2], status, i;
	pid_t pid[2];

	put(f->s, "/counter", "0", 1);
	/* No SQLite connection may cross fork(): close ours first. */
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			close(go[1]);
			_exit(child_increments(f->path, go[0], 200));
		}
	}
	close(go[0]);
	close(go[1]); /* both children start now */
	for (i = 0; i < 2; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_value(f->s, "/counter", "400", 401);
	assert_int_equal(ustate_revision(f->s), REV(401));
}

/* The child of test_sqlite_process_watch: writes when told to. */
static int child_writer(const char *path, int go_fd, int time_fd)
{
	ustate_options o = fast_options();
	struct timespec t;
	ustate *s;
	char c;
	int rc;

	if (ustate_open_sqlite(&s, path, &o) < 0)
		return 2;
	if (read(go_fd, &c, 1) != 1) {
		ustate_close(s);
		return 3;
	}
	rc = ustate_set(s, "/x/1", "a", 1, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (write(time_fd, &t, sizeof(t)) != sizeof(t))
		rc = -EIO;
	rc = rc ? rc : ustate_set(s, "/x/2", "b", 1, NULL);
	rc = rc ? rc : ustate_delete(s, "/x/1");
	rc = rc ? rc : ustate_set(s, "/y/ignored", "c", 1, NULL);
	ustate_close(s);
	return rc == 0 ? 0 : 4;
}

static void test_sqlite_process_watch(void **state)
{
	struct fixture *f = *state;
	struct timespec written, seen;
	int go[2], tp[2], status;
	ustate_event ev;
	uint64_t r0;
	pid_t pid;
	long ms;

	put(f->s, "/x/0", "before", 1);
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(tp), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		close(tp[0]);
		_exit(child_writer(f->path, go[0], tp[1]));
	}
	close(go[0]);
	close(tp[1]);

	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	settle_watches(f->s);
	r0 = ustate_revision(f->s);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/x/*", 0), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);

	/* Wait for the first event, then compare with the child's clock. */
	assert_int_equal(ustate_watch_next(f->w, &ev, 5000), 0);
	clock_gettime(CLOCK_MONOTONIC, &seen);
	assert_int_equal(read(tp[0], &written, sizeof(written)),
			 sizeof(written));
	close(tp[0]);
	ms = (seen.tv_sec - written.tv_sec) * 1000 +
	     (seen.tv_nsec - written.tv_nsec) / 1000000;
	assert_true(ms < 1000);
	assert_string_equal(ev.key, "/x/1");
	assert_int_equal(ev.type, USTATE_EVENT_CREATED);
	assert_int_equal(ev.version, 1);
	assert_int_equal(ev.revision, r0 + 1);
	expect_event(f->w, USTATE_EVENT_CREATED, "/x/2", 1, r0 + 2);
	expect_event(f->w, USTATE_EVENT_DELETED, "/x/1", 0, r0 + 3);

	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	expect_no_event(f->w);
	assert_int_equal(ustate_revision(f->s), r0 + 4);
	assert_value(f->s, "/y/ignored", "c", 1);
}

static void test_sqlite_not_a_database(void **state)
{
	static const char line[] = "this is a text file, not a database\n";
	ustate_options o = fast_options();
	struct fixture *f = *state;
	char path[PATH_MAX];
	ustate *s = (ustate *)1;
	size_t done = 0, chunk;
	int fd;

	snprintf(path, sizeof(path), "%s/text.db", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	while (done < 4096) {
		chunk = 4096 - done < sizeof(line) - 1 ? 4096 - done
						       : sizeof(line) - 1;
		assert_int_equal(write(fd, line, chunk), chunk);
		done += chunk;
	}
	close(fd);
	assert_int_equal(ustate_open_sqlite(&s, path, &o), -EUCLEAN);
	assert_ptr_equal(s, (ustate *)1);
	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&s, path, &o), -EUCLEAN);
	assert_ptr_equal(s, (ustate *)1);

	/* An empty file is an empty database, without the store's tables. */
	snprintf(path, sizeof(path), "%s/empty.db", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ustate_open_sqlite(&s, path, &o), -EROFS);

	snprintf(path, sizeof(path), "%s/missing.db", f->dir);
	assert_int_equal(ustate_open_sqlite(&s, path, &o), -ENOENT);
	o.read_only = 0;
	snprintf(path, sizeof(path), "%s/no/such/dir.db", f->dir);
	assert_int_equal(ustate_open_sqlite(&s, path, &o), -ENOENT);
	assert_int_equal(ustate_open_sqlite(&s, "", &o), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
}

static void test_sqlite_file_mode(void **state)
{
	struct fixture *f = *state;
	char wal[PATH_MAX + 8];
	struct stat st;
	mode_t old;
	int rc;

	/* With no umask to help, the library itself must ask for 0600. */
	old = umask(0);
	rc = open_fresh(f, NULL, &f->s2);
	umask(old);
	assert_int_equal(rc, 0);
	assert_int_equal(stat(f->last, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* The write-ahead log holds the same data: it must be as private. */
	put(f->s2, "/secret", "x", 1);
	snprintf(wal, sizeof(wal), "%s-wal", f->last);
	if (stat(wal, &st) == 0)
		assert_int_equal(st.st_mode & 0777, 0600);
}

/*
 * A path is a file name, never one of SQLite's special names: ":memory:"
 * made a store whose reads saw none of its writes (each connection had a
 * database of its own) and left an empty file named ":memory:" behind,
 * and "file:" names were taken as URIs the same way.
 */
static void test_sqlite_special_names(void **state)
{
	static const char uri[] = "file:u.db?mode=memory";
	ustate_options o = fast_options();
	struct fixture *f = *state;
	char cwd[PATH_MAX];
	struct stat st;
	ustate *s;

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(f->dir), 0);
	s = (ustate *)1;
	assert_int_equal(ustate_open_sqlite(&s, ":memory:", &o), -EINVAL);
	assert_ptr_equal(s, (ustate *)1);
	assert_int_equal(stat(":memory:", &st), -1);

	/* A "file:" name is a file like any other, seen by every reader. */
	assert_int_equal(ustate_open_sqlite(&f->s2, uri, &o), 0);
	put(f->s2, "/u", "x", 1);
	assert_value(f->s2, "/u", "x", 1);
	assert_int_equal(ustate_revision(f->s2), REV(1));
	ustate_close(f->s2);
	assert_int_equal(ustate_open_sqlite(&f->s2, uri, &o), 0);
	assert_value(f->s2, "/u", "x", 1);
	assert_int_equal(stat(uri, &st), 0);
	assert_true(S_ISREG(st.st_mode) && st.st_size > 0);
	assert_int_equal(chdir(cwd), 0);
}

static void test_sqlite_reopen(void **state)
{
	struct fixture *f = *state;
	ustate_op ops[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/p/a",
		 .value = "t",
		 .value_len = 1},
		{.type = USTATE_OP_DELETE, .key = "/p/gone"},
	};
	char *before;

	put(f->s, "/p/a", "1", 1);
	put(f->s, "/p/a", "2", 2);
	put(f->s, "/p/gone", "x", 1);
	put(f->s, "/p/bin", "b", 1);
	assert_int_equal(ustate_transaction(f->s, ops, 2, NULL), 0);
	before = snapshot(f->s);
	ustate_close(f->s);
	f->s = NULL;

	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_snapshot(f->s, before);
	free(before);
	assert_int_equal(ustate_revision(f->s), REV(5));
	assert_absent(f->s, "/p/gone");
	put(f->s, "/p/a", "4", 4);
	assert_int_equal(ustate_revision(f->s), REV(6));
	assert_int_equal(mod_revision(f->s, "/p/a"), REV(6));

	/* The history survives too: a watch can replay across the reopen. */
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/p/a", 1), 0);
	expect_event(f->w, USTATE_EVENT_CREATED, "/p/a", 1, REV(1));
	expect_event(f->w, USTATE_EVENT_UPDATED, "/p/a", 2, REV(2));
	expect_event(f->w, USTATE_EVENT_UPDATED, "/p/a", 3, REV(5));
	expect_event(f->w, USTATE_EVENT_UPDATED, "/p/a", 4, REV(6));
	expect_no_event(f->w);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc;

	rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		print_error("%s: %s\n", sql, err ? err : "?");
	sqlite3_free(err);
	assert_int_equal(rc, SQLITE_OK);
}

static void test_sqlite_external_write(void **state)
{
	struct fixture *f = *state;
	ustate *s = f->s;
	sqlite3 *db;
	uint64_t r0;

	put(s, "/in", "x", 1);
	settle_watches(s);
	r0 = ustate_revision(s);
	assert_int_equal(ustate_watch_open(&f->w, s, "*", 0), 0);
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);

	exec_sql(db, "INSERT INTO kv_store VALUES('/ext', x'6869', 1, 0, 0)");
	assert_int_equal(ustate_revision(s), r0 + 1);
	assert_int_equal(readable(ustate_watch_fd(f->w), 1000), 1);
	expect_event(f->w, USTATE_EVENT_CREATED, "/ext", 1, r0 + 1);
	assert_value(s, "/ext", "hi", 1);
	assert_int_equal(mod_revision(s, "/ext"), r0 + 1);

	exec_sql(db, "UPDATE kv_store SET value = x'6f6b', "
		     "version = version + 1 WHERE key = '/ext'");
	assert_int_equal(ustate_revision(s), r0 + 2);
	expect_event(f->w, USTATE_EVENT_UPDATED, "/ext", 2, r0 + 2);
	assert_value(s, "/ext", "ok", 2);

	/* An outside rename: two changes in one revision. */
	exec_sql(db, "UPDATE kv_store SET key = '/moved' WHERE key = '/ext'");
	assert_int_equal(ustate_revision(s), r0 + 3);
	expect_events_of_revision(
		f->w, r0 + 3,
		(const ustate_event[]){
			{.type = USTATE_EVENT_DELETED, .key = "/ext"},
			{.type = USTATE_EVENT_CREATED,
			 .key = "/moved",
			 .version = 2}},
		2);
	assert_value(s, "/moved", "ok", 2);
	assert_absent(s, "/ext");

	exec_sql(db, "DELETE FROM kv_store WHERE key = '/moved'");
	assert_int_equal(ustate_revision(s), r0 + 4);
	expect_event(f->w, USTATE_EVENT_DELETED, "/moved", 0, r0 + 4);
	assert_absent(s, "/moved");
	expect_no_event(f->w);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	assert_int_equal(ustate_check(s, NULL, NULL), 0);

	/* Our own writes go on from there. */
	put(s, "/ext", "again", 1);
	expect_event(f->w, USTATE_EVENT_CREATED, "/ext", 1, r0 + 5);
}

/* A file made by the Rust univrs-state: only kv_store, rows already in. */
static void test_sqlite_rust_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	ustate_entry *e;
	uint64_t r;
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/rust.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	exec_sql(db, "CREATE TABLE kv_store (key TEXT PRIMARY KEY NOT NULL,"
		     " value BLOB NOT NULL, version INTEGER NOT NULL,"
		     " created_at INTEGER NOT NULL,"
		     " updated_at INTEGER NOT NULL);"
		     "CREATE INDEX idx_kv_store_prefix ON kv_store(key);"
		     "INSERT INTO kv_store VALUES"
		     " ('/r/a', x'31', 3, 100, 200),"
		     " ('/r/b', x'32', 1, 150, 150)");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);

	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	assert_int_equal(ustate_get(f->s2, "/r/a", &e), 0);
	assert_int_equal(e->version, 3);
	assert_int_equal(e->created_at, 100);
	assert_int_equal(e->updated_at, 200);
	assert_int_equal(e->value_len, 1);
	assert_memory_equal(e->value, "1", 2);
	r = ustate_revision(f->s2);
	assert_true(r >= 1);
	assert_in_range(e->mod_revision, 1, r);
	ustate_entry_free(e);
	put(f->s2, "/r/a", "4", 4);
	assert_int_equal(ustate_revision(f->s2), r + 1);
	assert_int_equal(mod_revision(f->s2, "/r/a"), r + 1);
}

/* ---- SQLite administration --------------------------------------------- */

struct progress {
	uint64_t calls, done, total;
	int fail_rc;
};

static int on_progress(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;

	assert_true(done <= total);
	assert_true(done >= p->done);
	p->calls++;
	p->done = done;
	p->total = total;
	return p->fail_rc;
}

/* The number of entries of a directory, . and .. aside. */
static int dir_entries(const char *dir)
{
	struct dirent *d;
	int n = 0;
	DIR *dp;

	dp = opendir(dir);
	assert_non_null(dp);
	while ((d = readdir(dp)))
		n += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
	closedir(dp);
	return n;
}

static void test_sqlite_backup(void **state)
{
	struct fixture *f = *state;
	struct progress p = {0};
	char path[PATH_MAX], *before, *after;
	char big[8192];
	struct stat st;
	int files, i;

	fill_admin(f->s);
	memset(big, 'x', sizeof(big));
	for (i = 0; i < 640; i++) {
		char key[32];

		snprintf(key, sizeof(key), "/big/%d", i);
		assert_int_equal(ustate_set(f->s, key, big, sizeof(big), NULL),
				 0);
	}
	snprintf(path, sizeof(path), "%s/backup.db", f->dir);
	files = dir_entries(f->dir);
	assert_int_equal(ustate_backup(f->s, path, 0, on_progress, &p), 0);
	assert_true(p.calls >= 2); /* 5 MB in steps of 1024 pages */
	assert_int_equal(p.done, p.total);
	assert_true(p.total > 640 * sizeof(big));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, p.total);
	/* Only the copy is new: no temporary file is left. */
	assert_int_equal(dir_entries(f->dir), files + 1);

	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	before = export_text(f->s);
	after = export_text(f->s2);
	assert_string_equal(after, before);
	free(after);
	assert_int_equal(ustate_revision(f->s2), ustate_revision(f->s));
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	ustate_close(f->s2);
	f->s2 = NULL;

	/* An existing file stays unless forced. */
	put(f->s, "/later", "l", 1);
	assert_int_equal(ustate_backup(f->s, path, 0, NULL, NULL), -EEXIST);
	assert_int_equal(ustate_backup(f->s, path, 0x8, NULL, NULL), -EINVAL);
	assert_int_equal(ustate_backup(f->s, "", 0, NULL, NULL), -EINVAL);
	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	assert_int_equal(ustate_exists(f->s2, "/later"), 0);
	ustate_close(f->s2);
	f->s2 = NULL;
	assert_int_equal(
		ustate_backup(f->s, path, USTATE_BACKUP_FORCE, NULL, NULL), 0);
	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	assert_int_equal(ustate_exists(f->s2, "/later"), 1);
	ustate_close(f->s2);
	f->s2 = NULL;

	/* A progress error stops the copy and leaves nothing behind. */
	snprintf(path, sizeof(path), "%s/stopped.db", f->dir);
	p = (struct progress){.fail_rc = -EINTR};
	files = dir_entries(f->dir);
	assert_int_equal(ustate_backup(f->s, path, 0, on_progress, &p), -EINTR);
	assert_int_equal(p.calls, 1);
	assert_int_equal(dir_entries(f->dir), files);
	snprintf(path, sizeof(path), "%s/no/such/dir.db", f->dir);
	assert_int_equal(ustate_backup(f->s, path, 0, NULL, NULL), -ENOENT);
	free(before);
}

struct bk_writer {
	ustate *s;
	volatile int stop;
	volatile uint64_t writes;
	uint64_t rev; /* the store's revision at the first step */
	ustate *reader;
};

static void *write_loop(void *arg)
{
	struct bk_writer *w = arg;
	char key[32];

	while (!w->stop) {
		snprintf(key, sizeof(key), "/w/%" PRIu64, w->writes % 50);
		if (ustate_set(w->s, key, "value", 5, NULL) == 0)
			w->writes++;
	}
	return NULL;
}

/*
 * Called while the backup holds its snapshot: the writer must get on with
 * its commits meanwhile (a locked store would stop it).
 */
static int writes_go_on(void *arg, uint64_t done, uint64_t total)
{
	struct bk_writer *w = arg;
	uint64_t before = w->writes;
	int i;

	if (w->rev)
		return 0;
	w->rev = ustate_revision(w->reader);
	for (i = 0; i < 5000 && w->writes < before + 10; i++)
		usleep(1000);
	assert_true(w->writes >= before + 10);
	return 0;
}

/* A backup with a writer at work is one consistent snapshot. */
static void test_sqlite_backup_while_writing(void **state)
{
	struct fixture *f = *state;
	struct bk_writer w = {.reader = f->s};
	char path[PATH_MAX], big[4096];
	pthread_t t;
	int i;

	memset(big, 'b', sizeof(big));
	for (i = 0; i < 500; i++) {
		char key[32];

		snprintf(key, sizeof(key), "/big/%d", i);
		assert_int_equal(ustate_set(f->s, key, big, sizeof(big), NULL),
				 0);
	}
	/* The writer has its own handle, like another process. */
	assert_int_equal(ustate_open_sqlite(&w.s, f->path, NULL), 0);
	assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
	while (w.writes < 20)
		usleep(1000);
	snprintf(path, sizeof(path), "%s/live.db", f->dir);
	assert_int_equal(ustate_backup(f->s, path, 0, writes_go_on, &w), 0);
	w.stop = 1;
	pthread_join(t, NULL);
	ustate_close(w.s);
	/* The copy is the snapshot from before those writes, and sound. */
	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	assert_true(ustate_revision(f->s2) <= w.rev);
	assert_true(ustate_revision(f->s2) + 10 <= ustate_revision(f->s));
	assert_int_equal(ustate_exists(f->s2, "/big/499"), 1);
}

/*
 * A local commit signals its watches itself only when every revision
 * before its own was signaled: here another handle commits first, and
 * the local commit right after it must not hide that change from a watch
 * on the other key (the dispatcher reads it). Many rounds, so that some
 * local commits land before the dispatcher's next look.
 */
static void test_sqlite_watch_foreign_then_local(void **state)
{
	ustate_op mine = {.type = USTATE_OP_SET, .key = "/mine/k"};
	struct fixture *f = *state;
	ustate_txn_result res = {0};
	ustate_event ev;
	char val[16];
	int round;

	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, NULL), 0);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/other/*", 0), 0);
	for (round = 0; round < 50; round++) {
		snprintf(val, sizeof(val), "%d", round);
		put(f->s2, "/other/k", val, (uint64_t)round + 1);
		/* A transaction that asks its revision: no dispatcher. */
		mine.value = val;
		mine.value_len = strlen(val);
		assert_int_equal(ustate_transaction(f->s, &mine, 1, &res), 0);
		assert_int_equal(res.revision, 2 * (uint64_t)round + 2);
		assert_int_equal(readable(ustate_watch_fd(f->w), 2000), 1);
		assert_int_equal(ustate_watch_next(f->w, &ev, 0), 0);
		assert_string_equal(ev.key, "/other/k");
		assert_int_equal(ev.version, (uint64_t)round + 1);
		assert_int_equal(ustate_watch_next(f->w, &ev, 0), -EAGAIN);
	}
}

struct local_writer {
	ustate *s;
	int id;
	volatile int *stop;
};

/*
 * Transactions that ask their revision, till told to stop; a pause
 * between them, so that another handle's writer is not starved of the
 * write lock (under valgrind, for longer than its busy timeout).
 */
static void *local_writes(void *arg)
{
	struct local_writer *lw = arg;
	ustate_txn_result res = {0};
	ustate_op op = {.type = USTATE_OP_SET, .value = "x", .value_len = 1};
	char key[32];

	snprintf(key, sizeof(key), "/mine/t%d", lw->id);
	op.key = key;
	while (!*lw->stop) {
		if (ustate_transaction(lw->s, &op, 1, &res) < 0)
			break;
		usleep(200);
	}
	return NULL;
}

/*
 * Local commits of one group return in any order, and each marks its
 * revision signaled: a change of another handle between them must still
 * reach a watch (here while four threads commit locally all along). No
 * assertion while the threads run: one would leave them running on this
 * frame.
 */
static void test_sqlite_watch_foreign_among_groups(void **state)
{
	struct fixture *f = *state;
	struct local_writer lw[4];
	volatile int stop = 0;
	pthread_t t[4];
	ustate_event ev;
	int i, round;
	uint64_t v;

	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, NULL), 0);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/other/*", 0), 0);
	for (i = 0; i < 4; i++) {
		lw[i] = (struct local_writer){f->s, i, &stop};
		assert_int_equal(
			pthread_create(&t[i], NULL, local_writes, &lw[i]), 0);
	}
	for (round = 0; round < 30; round++) {
		if (ustate_set(f->s2, "/other/k", "o", 1, &v) < 0 ||
		    v != (uint64_t)round + 1)
			break;
		if (!readable(ustate_watch_fd(f->w), 5000))
			break;
		if (ustate_watch_next(f->w, &ev, 0) < 0 ||
		    strcmp(ev.key, "/other/k"))
			break;
	}
	stop = 1;
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(round, 30);
}

/* The case's file, opened with SQLite itself, as another program would. */
static sqlite3 *raw_open(struct fixture *f)
{
	sqlite3 *db;

	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void test_sqlite_check_finds(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;
	char *text;

	fill_admin(f->s);
	db = raw_open(f);

	exec_sql(db, "DELETE FROM ustate_keyrev WHERE key = '/a'");
	text = check_text(f->s, 1);
	assert_string_equal(text, "keyrev-missing /a\n");
	free(text);
	exec_sql(db, "INSERT INTO ustate_keyrev VALUES ('/a', 99)");
	text = check_text(f->s, 2);
	assert_string_equal(text, "keyrev-range /a\nkeyrev-revision /a\n");
	free(text);
	exec_sql(db, "UPDATE ustate_keyrev SET mod_revision = (SELECT "
		     "mod_revision FROM ustate_keyrev WHERE key = '/bin') "
		     "WHERE key = '/a'");
	text = check_text(f->s, 1);
	assert_string_equal(text, "keyrev-revision /a\n");
	free(text);
	exec_sql(db, "INSERT INTO ustate_keyrev VALUES ('/nokey', 1)");
	text = check_text(f->s, 2);
	assert_string_equal(text, "keyrev-orphan /nokey\nkeyrev-revision /a\n");
	free(text);

	/* Writes that bypass the triggers. */
	exec_sql(db,
		 "DELETE FROM ustate_keyrev WHERE key = '/nokey';"
		 "UPDATE ustate_keyrev SET mod_revision = 8 WHERE key = '/a';"
		 "DROP TRIGGER ustate_kv_write;"
		 "UPDATE kv_store SET version = 0 WHERE key = '/empty'");
	text = check_text(f->s, 3);
	assert_string_equal(text,
			    "schema -\nversion /empty\nhistory-last /empty\n");
	free(text);
	sqlite3_close(db);
}

/* Damage in the history and the state row. */
static void test_sqlite_check_history(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;
	char *text;

	fill_admin(f->s);
	db = raw_open(f);
	/* /bin was written at revision 4, and nothing since. */
	exec_sql(db, "DELETE FROM ustate_history WHERE id >> 20 = 4");
	text = check_text(f->s, 2);
	assert_string_equal(text, "history-gap -\nhistory-missing /bin\n");
	free(text);
	/* As a compaction would have left it, it is sound. */
	exec_sql(db, "DELETE FROM ustate_history WHERE id >> 20 < 4;"
		     "UPDATE ustate_state SET compacted = 4");
	text = check_text(f->s, 0);
	free(text);
	exec_sql(db, "UPDATE ustate_state SET revision = revision + 2");
	text = check_text(f->s, 1);
	assert_string_equal(text, "history-gap -\n");
	free(text);
	exec_sql(db, "UPDATE ustate_state SET revision = revision - 2;"
		     "UPDATE ustate_history SET version = 0 WHERE key = '/a'");
	text = check_text(f->s, 2);
	assert_string_equal(text, "history-version /a\nhistory-last /a\n");
	free(text);
	sqlite3_close(db);
}

/* A damaged file: the integrity check says where. */
static void test_sqlite_check_integrity(void **state)
{
	struct fixture *f = *state;
	char *text;
	sqlite3 *db;

	fill_admin(f->s);
	db = raw_open(f);
	/* An index that disagrees with its table. */
	exec_sql(db, "PRAGMA writable_schema = ON;"
		     "UPDATE sqlite_master SET sql = replace(sql, 'key)', "
		     "'version)') WHERE name = 'idx_kv_store_prefix'");
	sqlite3_close(db);
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, NULL), 0);
	text = check_text(f->s2, -1);
	assert_non_null(strstr(text, "integrity -\n"));
	free(text);
}

/*
 * A file of an earlier version, without ustate_meta: a read-only store
 * reads no owners, a writable one adds the table; deletes by other
 * programs take the owner along (the triggers); kv_store stays as the
 * Rust crate made it.
 */
static void test_sqlite_meta_old_file(void **state)
{
	static const char kv_sql[] =
		"CREATE TABLE kv_store ( key TEXT PRIMARY KEY NOT NULL, "
		"value BLOB NOT NULL, version INTEGER NOT NULL, created_at "
		"INTEGER NOT NULL, updated_at INTEGER NOT NULL)";
	static const ustate_meta m = {.uid = 1000, .gid = 100, .mode = 0600};
	ustate_options o = fast_options();
	struct fixture *f = *state;
	sqlite3_stmt *st;
	sqlite3 *db;

	put(f->s, "/old/a", "a", 1);
	put(f->s, "/old/b", "b", 1);
	mkdir_rmdir(f->s, USTATE_OP_MKDIR, "/old/d");
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	exec_sql(db, "DROP TRIGGER ustate_meta_kv_delete;"
		     "DROP TRIGGER ustate_meta_kv_rename;"
		     "DROP TRIGGER ustate_meta_rmdir;"
		     "DROP TABLE ustate_meta");

	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
	assert_meta(f->s2, "/old/a", USTATE_META_KEY, NULL);
	assert_meta(f->s2, "/", USTATE_META_DIR, NULL);
	assert_value(f->s2, "/old/a", "a", 1);

	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_value(f->s, "/old/a", "a", 1);
	assert_int_equal(meta_txn(f->s, USTATE_OP_META, "/old/a", &m), 0);
	assert_int_equal(meta_txn(f->s, USTATE_OP_META, "/old/b", &m), 0);
	assert_int_equal(meta_txn(f->s, USTATE_OP_MKDIR, "/old/d", &m), 0);
	/* The read-only store sees the table once it is there. */
	assert_meta(f->s2, "/old/a", USTATE_META_KEY, &m);

	exec_sql(db, "DELETE FROM kv_store WHERE key = '/old/a';"
		     "DELETE FROM ustate_dirs WHERE path = '/old/d';"
		     "INSERT INTO kv_store VALUES ('/old/a', x'31', 1, 0, 0);"
		     "INSERT INTO ustate_dirs VALUES ('/old/d')");
	assert_meta(f->s, "/old/a", USTATE_META_KEY, NULL);
	assert_meta(f->s, "/old/b", USTATE_META_KEY, &m);
	assert_meta(f->s, "/old/d", USTATE_META_DIR, NULL);

	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT sql FROM sqlite_master "
					    "WHERE name = 'kv_store'",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal(sqlite3_column_text(st, 0), kv_sql);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A symbolic link: followed to a file, refused when it leads nowhere. */
static void test_sqlite_symlink(void **state)
{
	struct fixture *f = *state;
	char link[PATH_MAX], target[PATH_MAX];
	struct stat st;

	snprintf(link, sizeof(link), "%s/link.db", f->dir);
	snprintf(target, sizeof(target), "%s/nothing.db", f->dir);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(ustate_open_sqlite(&f->s2, link, NULL), -ENOENT);
	assert_null(f->s2);
	assert_int_equal(lstat(target, &st), -1);
	assert_int_equal(unlink(link), 0);

	put(f->s, "/l", "l", 1);
	assert_int_equal(symlink(f->path, link), 0);
	assert_int_equal(ustate_open_sqlite(&f->s2, link, NULL), 0);
	assert_value(f->s2, "/l", "l", 1);
	assert_int_equal(unlink(link), 0);
}

/* ---- memory only ------------------------------------------------------- */

/* This program's path, to run it again in a fresh process. */
static const char *self;

/*
 * "test_conformance global-tune DIR": in a process where SQLite is not
 * initialised yet, ustate_global_tune() takes effect (SQLite counts no
 * memory), and once a SQLite store is open it is too late. The exit code
 * says which step failed.
 */
static int global_tune_child(const char *dir)
{
	char path[PATH_MAX];
	ustate *s;
	int rc = 0;

	if (ustate_global_tune(USTATE_TUNE_NO_MEMSTATS) != 0)
		return 10;
	if (ustate_global_tune(USTATE_TUNE_NO_MEMSTATS) != 0)
		return 11;
	snprintf(path, sizeof(path), "%s/tuned.db", dir);
	if (ustate_open_sqlite(&s, path, NULL) != 0)
		return 12;
	if (ustate_set(s, "/a", "1", 1, NULL) != 0)
		rc = 13;
	else if (sqlite3_memory_used() != 0)
		rc = 14;
	else if (ustate_global_tune(USTATE_TUNE_NO_MEMSTATS) != -EBUSY)
		rc = 15;
	ustate_close(s);
	return rc;
}

static void test_sqlite_global_tune(void **state)
{
	struct fixture *f = *state;
	int status;
	pid_t pid;

	assert_int_equal(ustate_global_tune(0x80), -EINVAL);
	assert_int_equal(ustate_global_tune(0), 0);
	/* The fixture's store is open: SQLite runs already. */
	assert_int_equal(ustate_global_tune(USTATE_TUNE_NO_MEMSTATS), -EBUSY);
	assert_true(sqlite3_memory_used() > 0);
	put(f->s, "/still", "ok", 1);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self, self, "global-tune", f->dir, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * ustate_open() of a file path is ustate_open_sqlite(): the same file,
 * with the caller's options.
 */
static void test_sqlite_open_source(void **state)
{
	ustate_options o = fast_options(), got;
	struct fixture *f = *state;
	char path[PATH_MAX + 16];
	ustate *s;

	snprintf(path, sizeof(path), "%s/by-source.db", f->dir);
	o.max_value_size = 100;
	assert_int_equal(ustate_open(&f->s2, path, &o), 0);
	put(f->s2, "/a", "1", 1);
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.max_value_size, 100);
	assert_int_equal(ustate_set(f->s2, "/big", path, 101, NULL), -EFBIG);
	assert_int_equal(ustate_open_sqlite(&s, path, &o), 0);
	assert_value(s, "/a", "1", 1);
	put(s, "/b", "2", 1);
	ustate_close(s);
	assert_value(f->s2, "/b", "2", 1);

	/* The fixture's file, by its name. */
	put(f->s, "/fixture", "x", 1);
	assert_int_equal(ustate_open(&s, f->path, NULL), 0);
	assert_value(s, "/fixture", "x", 1);
	ustate_close(s);
}

/* ustate_open(":memory:") is ustate_open_memory(): a new store each time. */
static void test_memory_open_source(void **state)
{
	ustate_options o = fast_options(), got;
	struct fixture *f = *state;
	ustate *s;

	o.history = 3;
	assert_int_equal(ustate_open(&f->s2, ":memory:", &o), 0);
	put(f->s2, "/a", "1", 1);
	assert_value(f->s2, "/a", "1", 1);
	ustate_options_get(f->s2, &got);
	assert_int_equal(got.history, 3);
	assert_int_equal(ustate_open(&s, ":memory:", NULL), 0);
	assert_absent(s, "/a");
	ustate_close(s);
	assert_absent(f->s, "/a");
}

static void test_memory_stores_are_separate(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(ustate_open_memory(&f->s2, NULL), 0);
	put(f->s, "/same", "first", 1);
	assert_absent(f->s2, "/same");
	put(f->s2, "/same", "second", 1);
	assert_value(f->s, "/same", "first", 1);
	assert_int_equal(ustate_revision(f->s), REV(1));
	assert_int_equal(ustate_revision(f->s2), REV(1));
}

static void test_memory_backup(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(ustate_backup(f->s, "/tmp/never.db", 0, NULL, NULL),
			 -EOPNOTSUPP);
	assert_int_equal(access("/tmp/never.db", F_OK), -1);
}

/*
 * An etcd store backs up into a SQLite file: one snapshot of every key
 * (value, version, times) and directory record, which ustate opens as it
 * would any store, sound by its check.
 */
static void test_etcd_backup(void **state)
{
	struct fixture *f = *state;
	char dir[] = "/tmp/ustate-etcd-backup-XXXXXX", path[PATH_MAX];
	struct progress p = {0};
	char *before, *after;
	struct stat st;

	fill_admin(f->s);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/backup.db", dir);
	assert_int_equal(ustate_backup(f->s, path, 0, on_progress, &p), 0);
	assert_int_equal(p.done, p.total);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	before = export_text(f->s);
	after = export_text(f->s2);
	assert_string_equal(after, before);
	free(before);
	free(after);
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	ustate_close(f->s2);
	f->s2 = NULL;
	/* An existing file stays unless forced. */
	assert_int_equal(ustate_backup(f->s, path, 0, NULL, NULL), -EEXIST);
	assert_int_equal(
		ustate_backup(f->s, path, USTATE_BACKUP_FORCE, NULL, NULL), 0);
	remove_dir(dir);
}

/* ---- leases ------------------------------------------------------------ */

/*
 * The lease clock moves by ustate_clock_advance() (tests only), for the
 * whole process: each case that moves it records how far, and teardown
 * moves it back, so a failed case leaves the next its real clock. A case
 * that moves it also stops it, so a check one second short of a deadline
 * cannot fail because the machine stalled or CLOCK_REALTIME stepped
 * between two calls (seen once in CI); teardown lets it run again.
 */
static void clock_forward(int64_t ms)
{
	ustate_clock_freeze(true);
	ustate_clock_advance(ms);
	clock_moved += ms;
}

/* The description of a live lease; the caller frees it. */
static ustate_lease_info *lease_info(ustate *s, const char *name)
{
	ustate_lease_info *li = NULL;

	assert_int_equal(ustate_lease_get(s, name, &li), 0);
	assert_non_null(li);
	assert_string_equal(li->name, name);
	return li;
}

/* Lease name does not exist (or expired). */
static void assert_no_lease(ustate *s, const char *name)
{
	ustate_lease_info *li = NULL;

	assert_int_equal(ustate_lease_get(s, name, &li), -ENOENT);
	assert_null(li);
}

/* The keys attached to lease name are exactly want[]. */
static void assert_lease_keys(ustate *s, const char *name,
			      const char *const *want, size_t nwant)
{
	ustate_lease_info *li = lease_info(s, name);
	size_t i;

	assert_int_equal(li->nkeys, nwant);
	if (!nwant)
		assert_null(li->keys);
	for (i = 0; i < nwant; i++)
		assert_string_equal(li->keys[i], want[i]);
	ustate_lease_info_free(li);
}

/* The lease of key (NULL: none) as its entry tells. */
static void assert_key_lease(ustate *s, const char *key, const char *lease)
{
	ustate_entry *e = NULL;

	assert_int_equal(ustate_get(s, key, &e), 0);
	if (lease)
		assert_string_equal(e->lease, lease);
	else
		assert_null(e->lease);
	ustate_entry_free(e);
}

static void assert_leases(ustate *s, const char *const *want, size_t nwant)
{
	char **v = (char **)1;
	size_t n = 99, i;

	assert_int_equal(ustate_lease_list(s, &v, &n), 0);
	assert_int_equal(n, nwant);
	if (!n)
		assert_null(v);
	for (i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
	ustate_list_free(v, n);
}

static void test_lease_grant_get_list(void **state)
{
	struct fixture *f = *state;
	ustate_lease_info *li = NULL;
	int64_t now = ustate_clock_ms();

	assert_leases(f->s, NULL, 0);
	assert_int_equal(ustate_lease_grant(f->s, "node-1", 10, &li), 0);
	assert_string_equal(li->name, "node-1");
	assert_int_equal(li->ttl, 10);
	assert_true(li->deadline >= now + 10000);
	assert_true(li->deadline <= ustate_clock_ms() + 10000);
	assert_true(li->remaining_ms > 9000 && li->remaining_ms <= 10000);
	assert_null(li->keys);
	assert_int_equal(li->nkeys, 0);
	ustate_lease_info_free(li);
	/* NULL: no description wanted. */
	assert_int_equal(ustate_lease_grant(f->s, "a", 3, NULL), 0);
	assert_leases(f->s, (const char *const[]){"a", "node-1"}, 2);

	/* Time passes: less is left; a keepalive gives the whole TTL. */
	clock_forward(4000);
	li = lease_info(f->s, "node-1");
	assert_int_equal(li->ttl, 10);
	assert_true(li->remaining_ms > 5000 && li->remaining_ms <= 6000);
	ustate_lease_info_free(li);
	li = NULL;
	assert_int_equal(ustate_lease_keepalive(f->s, "node-1", &li), 0);
	assert_true(li->remaining_ms > 9000 && li->remaining_ms <= 10000);
	ustate_lease_info_free(li);
	/* "a" (3 s) ran out meanwhile: gone for every call. */
	assert_int_equal(ustate_lease_keepalive(f->s, "a", NULL), -ENOENT);
	assert_int_equal(ustate_lease_get(f->s, "a", &li), -ENOENT);
	assert_leases(f->s, (const char *const[]){"node-1"}, 1);

	/* A grant of an existing lease refreshes it with the new TTL. */
	li = NULL;
	assert_int_equal(ustate_lease_grant(f->s, "node-1", 60, &li), 0);
	assert_int_equal(li->ttl, 60);
	assert_true(li->remaining_ms > 59000);
	ustate_lease_info_free(li);
	assert_int_equal(ustate_lease_keepalive(f->s, "node-1", NULL), 0);
	li = lease_info(f->s, "node-1");
	assert_int_equal(li->ttl, 60);
	ustate_lease_info_free(li);
}

static void test_lease_attach_detach(void **state)
{
	struct fixture *f = *state;
	ustate_op ops[2] = {
		{.type = USTATE_OP_CREATE,
		 .key = "/n/c",
		 .value = "c",
		 .value_len = 1,
		 .lease = "l1"},
		{.type = USTATE_OP_SET,
		 .key = "/n/d",
		 .value = "d",
		 .value_len = 1,
		 .lease = "l2"},
	};
	uint64_t v = 0;

	assert_int_equal(ustate_lease_grant(f->s, "l1", 30, NULL), 0);
	assert_int_equal(ustate_lease_grant(f->s, "l2", 30, NULL), 0);
	/* A lease may have no keys. */
	assert_lease_keys(f->s, "l1", NULL, 0);

	assert_int_equal(ustate_set_leased(f->s, "/n/a", "1", 1, "l1", &v), 0);
	assert_int_equal(v, 1);
	assert_key_lease(f->s, "/n/a", "l1");
	assert_int_equal(ustate_transaction(f->s, ops, 2, NULL), 0);
	assert_key_lease(f->s, "/n/c", "l1");
	assert_key_lease(f->s, "/n/d", "l2");
	assert_lease_keys(f->s, "l1", (const char *const[]){"/n/a", "/n/c"}, 2);
	assert_lease_keys(f->s, "l2", (const char *const[]){"/n/d"}, 1);

	/* A write without a lease detaches (etcd's rule)... */
	put(f->s, "/n/a", "2", 2);
	assert_key_lease(f->s, "/n/a", NULL);
	assert_lease_keys(f->s, "l1", (const char *const[]){"/n/c"}, 1);
	/* ... one with another lease moves the key ... */
	assert_int_equal(ustate_set_leased(f->s, "/n/c", "3", 1, "l2", &v), 0);
	assert_int_equal(v, 2);
	assert_lease_keys(f->s, "l1", NULL, 0);
	assert_lease_keys(f->s, "l2", (const char *const[]){"/n/c", "/n/d"}, 2);
	/* ... and a delete detaches: created again, the key has none. */
	assert_int_equal(ustate_delete(f->s, "/n/d"), 0);
	assert_lease_keys(f->s, "l2", (const char *const[]){"/n/c"}, 1);
	put(f->s, "/n/d", "again", 1);
	assert_key_lease(f->s, "/n/d", NULL);
	/* A create that finds its key changes nothing, the lease neither. */
	assert_int_equal(ustate_transaction(f->s, ops, 1, NULL), -EEXIST);
	assert_key_lease(f->s, "/n/c", "l2");
	/* A rename is a delete and a set: the set says the lease. */
	ops[0] = (ustate_op){.type = USTATE_OP_DELETE, .key = "/n/c"};
	ops[1] = (ustate_op){.type = USTATE_OP_SET,
			     .key = "/n/moved",
			     .value = "3",
			     .value_len = 1,
			     .lease = "l2"};
	assert_int_equal(ustate_transaction(f->s, ops, 2, NULL), 0);
	assert_lease_keys(f->s, "l2", (const char *const[]){"/n/moved"}, 1);
	/* ustate_set_leased() with NULL is ustate_set(). */
	assert_int_equal(ustate_set_leased(f->s, "/n/moved", "4", 1, NULL, &v),
			 0);
	assert_key_lease(f->s, "/n/moved", NULL);
	assert_lease_keys(f->s, "l2", NULL, 0);
}

/* Keys /r/1 and /r/2 on lease r, /r/3 on none, and a watch on /r/. */
static void revoke_setup(struct fixture *f)
{
	assert_int_equal(ustate_lease_grant(f->s, "r", 30, NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/r/1", "a", 1, "r", NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/r/2", "b", 1, "r", NULL), 0);
	put(f->s, "/r/3", "c", 1);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/r/*", 0), 0);
}

/* The lease's two keys went in revision rev, one revision, and no more. */
static void expect_lease_deleted(struct fixture *f, uint64_t rev)
{
	assert_int_equal(ustate_revision(f->s), rev);
	expect_events_of_revision(
		f->w, rev,
		(const ustate_event[]){
			{.type = USTATE_EVENT_DELETED, .key = "/r/1"},
			{.type = USTATE_EVENT_DELETED, .key = "/r/2"}},
		2);
	expect_no_event(f->w);
	assert_absent(f->s, "/r/1");
	assert_absent(f->s, "/r/2");
	assert_value(f->s, "/r/3", "c", 1);
	assert_leases(f->s, NULL, 0);
}

static void test_lease_revoke(void **state)
{
	struct fixture *f = *state;
	uint64_t rev;
	char *before;

	revoke_setup(f);
	rev = ustate_revision(f->s);
	assert_int_equal(ustate_lease_revoke(f->s, "r"), 0);
	expect_lease_deleted(f, rev + 1);
	/* Gone: a second revoke, and a write naming it, change nothing. */
	before = snapshot(f->s);
	assert_int_equal(ustate_lease_revoke(f->s, "r"), -ENOENT);
	assert_int_equal(ustate_set_leased(f->s, "/r/1", "x", 1, "r", NULL),
			 -ENOENT);
	assert_snapshot(f->s, before);
	free(before);
	/*
	 * A lease without keys ends without a revision (on etcd, its record
	 * goes in one: etcd's revision moves with side keys too).
	 */
	assert_int_equal(ustate_lease_grant(f->s, "empty", 5, NULL), 0);
	rev = ustate_revision(f->s);
	assert_int_equal(ustate_lease_revoke(f->s, "empty"), 0);
	assert_int_equal(ustate_revision(f->s),
			 rev + (f->kind == BACKEND_ETCD));
	assert_no_lease(f->s, "empty");
	assert_leases(f->s, NULL, 0);
}

static void test_lease_expiry(void **state)
{
	struct fixture *f = *state;
	ustate_lease_info *li = NULL;
	uint64_t rev;
	char *before;

	revoke_setup(f);
	rev = ustate_revision(f->s);
	/* Not yet: a keepalive at 20 s makes it last until 50 s. */
	clock_forward(20000);
	assert_int_equal(ustate_lease_expire_now(f->s), 0);
	assert_int_equal(ustate_lease_keepalive(f->s, "r", NULL), 0);
	clock_forward(29000);
	assert_int_equal(ustate_lease_expire_now(f->s), 0);
	assert_int_equal(ustate_revision(f->s), rev);
	assert_value(f->s, "/r/1", "a", 1);

	/*
	 * Past the deadline, before the store expires it: it counts as gone,
	 * and a write naming it fails whole. (The expiry thread would expire
	 * it within half a second, in the middle of the snapshots.)
	 */
	ustate_expiry_pause(true);
	clock_forward(2000);
	before = snapshot(f->s);
	assert_int_equal(ustate_set_leased(f->s, "/r/9", "x", 1, "r", NULL),
			 -ENOENT);
	assert_int_equal(ustate_lease_get(f->s, "r", &li), -ENOENT);
	assert_null(li);
	assert_leases(f->s, NULL, 0);
	assert_snapshot(f->s, before);
	free(before);
	ustate_expiry_pause(false);
	assert_int_equal(ustate_lease_expire_now(f->s), 0);
	expect_lease_deleted(f, rev + 1);
	/* Expired, the name is free: a grant makes a new, empty lease. */
	assert_int_equal(ustate_lease_grant(f->s, "r", 5, NULL), 0);
	assert_lease_keys(f->s, "r", NULL, 0);
}

/* A keepalive that finds its lease overdue expires it: no key stays. */
static void test_lease_grant_after_deadline(void **state)
{
	struct fixture *f = *state;
	uint64_t rev;

	revoke_setup(f);
	rev = ustate_revision(f->s);
	clock_forward(31000);
	assert_int_equal(ustate_lease_keepalive(f->s, "r", NULL), -ENOENT);
	expect_lease_deleted(f, rev + 1);
	assert_int_equal(ustate_lease_grant(f->s, "r", 30, NULL), 0);
	assert_lease_keys(f->s, "r", NULL, 0);
}

static void test_lease_errors(void **state)
{
	static const char *const bad[] = {"", "a/b", "/a", "..", ".", "a\n"};
	struct fixture *f = *state;
	ustate_lease_info *li = NULL;
	ustate_txn_result res = {0};
	char long_name[USTATE_SEGMENT_MAX + 2];
	ustate_op ops[2] = {
		{.type = USTATE_OP_SET,
		 .key = "/e/x",
		 .value = "x",
		 .value_len = 1},
		{.type = USTATE_OP_CREATE,
		 .key = "/e/y",
		 .value = "y",
		 .value_len = 1,
		 .lease = "nope"},
	};
	char *before, **v = NULL;
	size_t i, n = 0;

	assert_int_equal(ustate_lease_grant(f->s, "ok", 30, NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/e/k", "k", 1, "ok", NULL),
			 0);
	/* The longest name is a name (etcd's revision moves with it). */
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[USTATE_SEGMENT_MAX] = '\0';
	assert_int_equal(ustate_lease_grant(f->s, long_name, 5, NULL), 0);
	assert_int_equal(ustate_lease_revoke(f->s, long_name), 0);
	long_name[USTATE_SEGMENT_MAX] = 'n'; /* one byte too long */
	long_name[sizeof(long_name) - 1] = '\0';
	before = snapshot(f->s);

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(ustate_lease_grant(f->s, bad[i], 5, &li),
				 -EINVAL);
		assert_int_equal(ustate_lease_keepalive(f->s, bad[i], &li),
				 -EINVAL);
		assert_int_equal(ustate_lease_revoke(f->s, bad[i]), -EINVAL);
		assert_int_equal(ustate_lease_get(f->s, bad[i], &li), -EINVAL);
		assert_int_equal(
			ustate_set_leased(f->s, "/e/z", "z", 1, bad[i], NULL),
			-EINVAL);
	}
	assert_int_equal(ustate_lease_grant(f->s, NULL, 5, &li), -EINVAL);
	assert_int_equal(ustate_lease_grant(f->s, long_name, 5, &li),
			 -ENAMETOOLONG);
	/* TTLs: 1 .. USTATE_LEASE_TTL_MAX; a refresh with a bad one fails. */
	assert_int_equal(ustate_lease_grant(f->s, "t", 0, &li), -EINVAL);
	assert_int_equal(ustate_lease_grant(f->s, "t", -1, &li), -EINVAL);
	assert_int_equal(
		ustate_lease_grant(f->s, "t", USTATE_LEASE_TTL_MAX + 1, &li),
		-EINVAL);
	assert_int_equal(ustate_lease_grant(f->s, "ok", 0, &li), -EINVAL);
	assert_null(li);
	/* Unknown leases. */
	assert_int_equal(ustate_lease_keepalive(f->s, "nope", &li), -ENOENT);
	assert_int_equal(ustate_lease_revoke(f->s, "nope"), -ENOENT);
	assert_int_equal(ustate_lease_get(f->s, "nope", &li), -ENOENT);
	assert_null(li);
	assert_int_equal(ustate_set_leased(f->s, "/e/k", "2", 1, "nope", NULL),
			 -ENOENT);
	/* A transaction with one op naming no lease fails whole. */
	assert_int_equal(ustate_transaction(f->s, ops, 2, &res), -ENOENT);
	assert_int_equal(res.failed, 1);
	assert_int_equal(res.found, 0);
	ops[1].lease = "bad/name";
	assert_int_equal(ustate_transaction(f->s, ops, 2, &res), -EINVAL);
	assert_int_equal(res.failed, 1);
	assert_snapshot(f->s, before);
	free(before);
	assert_int_equal(ustate_lease_list(f->s, &v, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(v[0], "ok");
	ustate_list_free(v, n);
	assert_lease_keys(f->s, "ok", (const char *const[]){"/e/k"}, 1);
}

/* Lease-writing calls on a read-only store: -EROFS, nothing changes. */
/* Lease li has exactly the owner uid, gid, mode. */
static void assert_lease_owner(const ustate_lease_info *li, uint32_t uid,
			       uint32_t gid, uint32_t mode)
{
	assert_int_equal(li->flags & USTATE_LEASE_OWNED, USTATE_LEASE_OWNED);
	assert_int_equal(li->uid, uid);
	assert_int_equal(li->gid, gid);
	assert_int_equal(li->mode, mode);
}

static void assert_lease_owned(ustate *s, const char *name, uint32_t uid,
			       uint32_t gid, uint32_t mode)
{
	ustate_lease_info *li = lease_info(s, name);

	assert_lease_owner(li, uid, gid, mode);
	ustate_lease_info_free(li);
}

/* A grant of name (ttl s) without an owner makes a lease without one. */
static void assert_grant_unowned(ustate *s, const char *name, int64_t ttl)
{
	ustate_lease_info *li = NULL;

	assert_int_equal(ustate_lease_grant(s, name, ttl, &li), 0);
	assert_int_equal(li->flags, 0);
	ustate_lease_info_free(li);
	li = lease_info(s, name);
	assert_int_equal(li->flags, 0);
	ustate_lease_info_free(li);
}

/*
 * A lease's owner: given by the grant that makes it, kept by refreshes,
 * changed by set_owner, told by every call that describes it, kept in the
 * store (another handle sees it), gone with the lease.
 */
static void test_lease_owner(void **state)
{
	struct fixture *f = *state;
	ustate_meta alice = {.uid = 1000, .gid = 100, .mode = 0640};
	ustate_meta bob = {.uid = 2000, .gid = 200, .mode = 0600};
	ustate_meta bad = {.uid = 1, .gid = 1, .mode = 010000};
	ustate_options o = fast_options();
	ustate_lease_info *li = NULL;
	char *before;

	assert_int_equal(ustate_lease_grant_owned(f->s, "a", 30, &alice, &li),
			 0);
	assert_int_equal(li->ttl, 30);
	assert_lease_owner(li, 1000, 100, 0640);
	ustate_lease_info_free(li);
	li = NULL;
	assert_lease_owned(f->s, "a", 1000, 100, 0640);
	/* A refresh, whoever asks, keeps the creator's. */
	assert_int_equal(ustate_lease_grant_owned(f->s, "a", 30, &bob, &li), 0);
	assert_lease_owner(li, 1000, 100, 0640);
	ustate_lease_info_free(li);
	li = NULL;
	assert_int_equal(ustate_lease_grant(f->s, "a", 30, NULL), 0);
	assert_int_equal(ustate_lease_keepalive(f->s, "a", &li), 0);
	assert_lease_owner(li, 1000, 100, 0640);
	ustate_lease_info_free(li);
	li = NULL;

	/* A plain grant makes a lease without one. */
	assert_grant_unowned(f->s, "plain", 30);

	/* chown/chmod: the deadline and the keys stay. */
	assert_int_equal(
		ustate_set_leased(f->s, "/own/k", "v", 1, "plain", NULL), 0);
	assert_int_equal(ustate_lease_set_owner(f->s, "plain", &bob), 0);
	assert_lease_owned(f->s, "plain", 2000, 200, 0600);
	assert_lease_keys(f->s, "plain", (const char *const[]){"/own/k"}, 1);
	assert_key_lease(f->s, "/own/k", "plain");
	bob.mode = 0644;
	assert_int_equal(ustate_lease_set_owner(f->s, "a", &bob), 0);
	assert_lease_owned(f->s, "a", 2000, 200, 0644);

	/* Bad input changes nothing. */
	before = snapshot(f->s);
	assert_int_equal(ustate_lease_set_owner(f->s, "none", &alice), -ENOENT);
	assert_no_lease(f->s, "none");
	assert_int_equal(ustate_lease_set_owner(f->s, "a", &bad), -EINVAL);
	assert_int_equal(ustate_lease_set_owner(f->s, "a", NULL), -EINVAL);
	assert_int_equal(ustate_lease_set_owner(f->s, "a/b", &alice), -EINVAL);
	assert_int_equal(ustate_lease_grant_owned(f->s, "new", 30, &bad, NULL),
			 -EINVAL);
	assert_no_lease(f->s, "new");
	assert_lease_owned(f->s, "a", 2000, 200, 0644);
	assert_snapshot(f->s, before);
	free(before);

	/* Another handle on the store sees them. */
	if (f->kind != BACKEND_MEMORY) {
		assert_int_equal(ustate_open(&f->s2, f->path, &o), 0);
		assert_lease_owned(f->s2, "a", 2000, 200, 0644);
		assert_lease_owned(f->s2, "plain", 2000, 200, 0600);
		assert_int_equal(ustate_lease_set_owner(f->s2, "a", &alice), 0);
		assert_lease_owned(f->s, "a", 1000, 100, 0640);
	}

	/* Revoked, granted again: the new lease has the new grant's. */
	assert_int_equal(ustate_lease_revoke(f->s, "a"), 0);
	assert_int_equal(ustate_lease_set_owner(f->s, "a", &bob), -ENOENT);
	assert_grant_unowned(f->s, "a", 30);
	assert_int_equal(ustate_lease_revoke(f->s, "a"), 0);
	assert_int_equal(ustate_lease_grant_owned(f->s, "a", 30, &bob, NULL),
			 0);
	assert_lease_owned(f->s, "a", 2000, 200, 0644);
}

/* An expired lease's owner goes with it. */
static void test_lease_owner_expiry(void **state)
{
	struct fixture *f = *state;
	ustate_meta alice = {.uid = 1000, .gid = 100, .mode = 0640};

	assert_int_equal(ustate_lease_grant_owned(f->s, "x", 5, &alice, NULL),
			 0);
	clock_forward(6000);
	assert_int_equal(ustate_lease_set_owner(f->s, "x", &alice), -ENOENT);
	assert_grant_unowned(f->s, "x", 5);
}

/* The leases of an export as text: "name ttl owner|-" each, then keys'. */
static char *export_lease_text(ustate *s, const char *prefix)
{
	char *buf = NULL;
	size_t len = 0, i;
	struct recs rs;
	FILE *fp;

	recs_export(s, prefix, &rs);
	fp = open_memstream(&buf, &len);
	assert_non_null(fp);
	for (i = 0; i < rs.n; i++) {
		const ustate_record *r = &rs.v[i];

		if (r->type == USTATE_RECORD_LEASE && r->meta)
			fprintf(fp, "lease %s %" PRId64 " %u:%u:%o\n", r->key,
				r->ttl, r->meta->uid, r->meta->gid,
				r->meta->mode);
		else if (r->type == USTATE_RECORD_LEASE)
			fprintf(fp, "lease %s %" PRId64 " -\n", r->key, r->ttl);
		else if (r->type == USTATE_RECORD_KEY)
			fprintf(fp, "key %s %s\n", r->key,
				r->lease ? r->lease : "-");
	}
	fclose(fp);
	recs_free(&rs);
	return buf;
}

/*
 * Leases a (Alice's, 30 s) and b (10 s) with a key each, and /p without:
 * a prefix export gives the leases of its keys alone (not "unused").
 */
static void lease_export_setup(ustate *s, const char *want)
{
	ustate_meta alice = {.uid = 1000, .gid = 100, .mode = 0640};
	char *text;

	assert_int_equal(ustate_lease_grant_owned(s, "a", 30, &alice, NULL), 0);
	assert_int_equal(ustate_lease_grant(s, "b", 10, NULL), 0);
	assert_int_equal(ustate_lease_grant(s, "unused", 10, NULL), 0);
	assert_int_equal(ustate_set_leased(s, "/l/x", "x", 1, "a", NULL), 0);
	assert_int_equal(ustate_set_leased(s, "/l/y", "y", 1, "b", NULL), 0);
	put(s, "/p", "p", 1);
	text = export_lease_text(s, "/l/");
	assert_string_equal(text, "lease a 30 1000:100:640\nlease b 10 -\n"
				  "key /l/x a\nkey /l/y b\n");
	free(text);
	assert_int_equal(ustate_lease_revoke(s, "unused"), 0);
	text = export_lease_text(s, "");
	assert_string_equal(text, want);
	free(text);
}

/* Export a store's leases: its records feed a restore in a new store. */
static int old_export_count(void *arg, const ustate_record *r)
{
	size_t *n = arg;

	assert_int_not_equal(r->type, USTATE_RECORD_LEASE);
	++*n;
	return 0;
}

/*
 * Leases in exports and restores (since 0.6): LEASE records first, each
 * key naming its lease; a restore makes the leases with a whole TTL from
 * then and their owners, attaches the keys; a key naming a lease nobody
 * has is -ENOENT and nothing changes; REPLACE ends the leases no record
 * gives; an older program's export sees no LEASE record.
 */
static void test_restore_leases(void **state)
{
	static const char want[] = "lease a 30 1000:100:640\n"
				   "lease b 10 -\n"
				   "key /l/x a\n"
				   "key /l/y b\n"
				   "key /p -\n";
	ustate_options o = fast_options();
	struct fixture *f = *state;
	ustate_lease_info *li;
	ustate_record swap;
	struct recs rs;
	char *text, *before;
	size_t n = 0, i;

	lease_export_setup(f->s, want);
	/* What a program built before 0.6 calls: no LEASE records. */
	{
		extern int ustate_export_v1(ustate *, const char *,
					    ustate_export_fn, void *);

		assert_int_equal(
			ustate_export_v1(f->s, "", old_export_count, &n), 0);
		assert_int_equal(n, 3);
	}

	/* Into a new store, later: each lease a whole TTL from then. */
	recs_export(f->s, "", &rs);
	clock_forward(5000);
	assert_int_equal(open_fresh(f, &o, &f->s2), 0);
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs, 0, NULL), 0);
	text = export_lease_text(f->s2, "");
	assert_string_equal(text, want);
	free(text);
	li = lease_info(f->s2, "a");
	assert_true(li->remaining_ms > 29000);
	assert_lease_owner(li, 1000, 100, 0640);
	ustate_lease_info_free(li);
	assert_lease_keys(f->s2, "b", (const char *const[]){"/l/y"}, 1);
	assert_key_lease(f->s2, "/l/x", "a");
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	/* The leases work: revoking one takes its key. */
	assert_int_equal(ustate_lease_revoke(f->s2, "b"), 0);
	assert_absent(f->s2, "/l/y");

	/* A key naming a lease that nobody has: -ENOENT, nothing changes. */
	for (i = 0; i < rs.n; i++)
		if (rs.v[i].type == USTATE_RECORD_LEASE &&
		    !strcmp(rs.v[i].key, "b"))
			break;
	assert_true(i < rs.n);
	swap = rs.v[i];
	rs.v[i] = rs.v[rs.n - 1];
	rs.v[rs.n - 1] = swap;
	rs.n--;
	before = snapshot(f->s2);
	rs.pos = 0;
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs,
					USTATE_RESTORE_MERGE, NULL),
			 -ENOENT);
	assert_snapshot(f->s2, before);
	free(before);
	assert_no_lease(f->s2, "b");
	rs.n++;

	/* REPLACE: the store becomes the records, leases too. */
	assert_int_equal(ustate_lease_grant(f->s2, "b", 10, NULL), 0);
	assert_int_equal(ustate_lease_grant(f->s2, "extra", 10, NULL), 0);
	assert_int_equal(
		ustate_set_leased(f->s2, "/l/x", "x", 1, "extra", NULL), 0);
	rs.pos = 0;
	assert_int_equal(ustate_restore(f->s2, recs_next, &rs,
					USTATE_RESTORE_REPLACE, NULL),
			 0);
	assert_no_lease(f->s2, "extra");
	assert_key_lease(f->s2, "/l/x", "a");
	assert_key_lease(f->s2, "/l/y", "b");
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	recs_free(&rs);
}

/* Restore records with bad leases: -EINVAL, nothing changes. */
static void test_restore_lease_invalid(void **state)
{
	struct fixture *f = *state;
	ustate_record bad[] = {
		{.type = USTATE_RECORD_LEASE, .key = "a/b", .ttl = 5},
		{.type = USTATE_RECORD_LEASE, .key = "a", .ttl = 0},
		{.type = USTATE_RECORD_LEASE,
		 .key = "a",
		 .ttl = USTATE_LEASE_TTL_MAX + 1},
		{.type = USTATE_RECORD_KEY,
		 .key = "/k",
		 .value = "v",
		 .value_len = 1,
		 .version = 1,
		 .lease = "a/b"},
	};
	struct recs rs = {0};
	char *before;
	size_t i;

	before = snapshot(f->s);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rs.v = &bad[i];
		rs.n = 1;
		rs.pos = 0;
		assert_int_equal(ustate_restore(f->s, recs_next, &rs, 0, NULL),
				 -EINVAL);
	}
	assert_snapshot(f->s, before);
	free(before);
	assert_leases(f->s, NULL, 0);
}

/*
 * etcd: an export gives the leases (their TTL as granted, their owners)
 * and each key's lease, and a backup's SQLite copy has them.
 */
static void test_etcd_export_leases(void **state)
{
	static const char want[] = "lease a 30 1000:100:640\n"
				   "lease b 10 -\n"
				   "key /l/x a\n"
				   "key /l/y b\n"
				   "key /p -\n";
	char dir[] = "/tmp/ustate-etcd-leases-XXXXXX", path[PATH_MAX];
	struct fixture *f = *state;
	ustate_lease_info *li;
	char *text;

	lease_export_setup(f->s, want);

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/backup.db", dir);
	assert_int_equal(ustate_backup(f->s, path, 0, NULL, NULL), 0);
	assert_int_equal(ustate_open_sqlite(&f->s2, path, NULL), 0);
	text = export_lease_text(f->s2, "");
	assert_string_equal(text, want);
	free(text);
	li = lease_info(f->s2, "a");
	assert_lease_owner(li, 1000, 100, 0640);
	ustate_lease_info_free(li);
	assert_int_equal(ustate_check(f->s2, NULL, NULL), 0);
	ustate_close(f->s2);
	f->s2 = NULL;
	remove_dir(dir);
}

static void test_lease_read_only(void **state)
{
	struct fixture *f = *state;
	ustate_options o = fast_options();
	ustate_lease_info *li = NULL;

	if (f->kind == BACKEND_MEMORY) {
		/* A read-only memory store is a new, empty one. */
		o.read_only = 1;
		assert_int_equal(ustate_open_memory(&f->s2, &o), 0);
	} else {
		assert_int_equal(ustate_lease_grant(f->s, "ro", 30, NULL), 0);
		o.read_only = 1;
		assert_int_equal(ustate_open(&f->s2, f->path, &o), 0);
		li = lease_info(f->s2, "ro");
		assert_int_equal(li->ttl, 30);
		ustate_lease_info_free(li);
		li = NULL;
	}
	assert_int_equal(ustate_lease_grant(f->s2, "x", 5, &li), -EROFS);
	assert_int_equal(ustate_lease_keepalive(f->s2, "ro", &li), -EROFS);
	assert_int_equal(ustate_lease_revoke(f->s2, "ro"), -EROFS);
	assert_int_equal(ustate_set_leased(f->s2, "/k", "v", 1, "ro", NULL),
			 -EROFS);
	assert_null(li);
}

#define CONTENDERS 8

struct contender {
	ustate *s;
	int id;
	int64_t ttl;
	int rc; /* of its create */
	pthread_barrier_t *start;
};

/* Grant its own lease, then try to be the leader with it. */
static void *contend(void *arg)
{
	struct contender *c = arg;
	char name[16];

	snprintf(name, sizeof(name), "c%d", c->id);
	c->rc = ustate_lease_grant(c->s, name, c->ttl, NULL);
	pthread_barrier_wait(c->start);
	if (c->rc == 0) {
		ustate_op op = {.type = USTATE_OP_CREATE,
				.key = "/leader",
				.value = name,
				.value_len = strlen(name),
				.lease = name};

		c->rc = ustate_transaction(c->s, &op, 1, NULL);
	}
	return NULL;
}

/*
 * One race of the contenders not excluded (-1: none): exactly one wins,
 * the others see -EEXIST; the winner's index.
 */
static int elect(struct contender *c, int excluded)
{
	pthread_barrier_t start;
	pthread_t t[CONTENDERS];
	int i, n = 0, winner = -1;
	ustate_entry *e = NULL;

	for (i = 0; i < CONTENDERS; i++)
		n += i != excluded;
	pthread_barrier_init(&start, NULL, n);
	for (i = 0; i < CONTENDERS; i++) {
		c[i].start = &start;
		c[i].rc = 1;
		if (i != excluded)
			assert_int_equal(
				pthread_create(&t[i], NULL, contend, &c[i]), 0);
	}
	for (i = 0; i < CONTENDERS; i++) {
		if (i == excluded)
			continue;
		pthread_join(t[i], NULL);
		if (c[i].rc == 0) {
			assert_int_equal(winner, -1);
			winner = i;
		} else {
			assert_int_equal(c[i].rc, -EEXIST);
		}
	}
	pthread_barrier_destroy(&start);
	assert_true(winner >= 0);
	assert_int_equal(ustate_get(c[0].s, "/leader", &e), 0);
	assert_int_equal(atoi(e->lease + 1), winner);
	assert_int_equal(atoi((const char *)e->value + 1), winner);
	ustate_entry_free(e);
	return winner;
}

/*
 * Leader election: create /leader with a lease. Each contender has a
 * store of its own where the backend allows (a handle on the same SQLite
 * file or etcd prefix); memory stores share the case's.
 */
static void test_lease_leader_election(void **state)
{
	struct fixture *f = *state;
	struct contender c[CONTENDERS];
	ustate_options o = fast_options();
	int i, first, second, round;
	char name[16];

	bool etcd = f->kind == BACKEND_ETCD;

	for (i = 0; i < CONTENDERS; i++) {
		/* etcd's clock is the server's: its shortest TTL, for real. */
		c[i] = (struct contender){
			.s = f->s, .id = i, .ttl = etcd ? 2 : 5};
		if (f->kind != BACKEND_MEMORY)
			assert_int_equal(ustate_open(&c[i].s, f->path, &o), 0);
	}
	first = elect(c, -1);
	/*
	 * The holder stops its keepalives; the others keep theirs until
	 * /leader falls free (on etcd, within 8 s of real time).
	 */
	for (round = 0; round < (etcd ? 80 : 2); round++) {
		if (etcd)
			usleep(100000);
		else
			clock_forward(3000);
		for (i = 0; i < CONTENDERS && (!etcd || round % 5 == 0); i++) {
			snprintf(name, sizeof(name), "c%d", i);
			if (i != first)
				assert_int_equal(ustate_lease_keepalive(
							 c[i].s, name, NULL),
						 0);
		}
		assert_int_equal(ustate_lease_expire_now(f->s), 0);
		if (ustate_exists(f->s, "/leader") == 0)
			break;
	}
	assert_absent(f->s, "/leader");
	second = elect(c, first);
	assert_true(second != first);
	for (i = 0; i < CONTENDERS; i++)
		if (c[i].s != f->s)
			ustate_close(c[i].s);
}

/*
 * The expiry thread, in real time: a 1 s lease ends within a second of
 * its deadline. The bound is generous (the machine is shared); it fails
 * only when no expiry comes at all.
 */
static void test_lease_thread_expires(void **state)
{
	struct fixture *f = *state;
	ustate_event ev;

	assert_int_equal(ustate_lease_grant(f->s, "short", 1, NULL), 0);
	assert_int_equal(
		ustate_set_leased(f->s, "/short/k", "v", 1, "short", NULL), 0);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/short/*", 0), 0);
	assert_int_equal(ustate_watch_next(f->w, &ev, 4000), 0);
	assert_int_equal(ev.type, USTATE_EVENT_DELETED);
	assert_string_equal(ev.key, "/short/k");
	assert_absent(f->s, "/short/k");
	assert_no_lease(f->s, "short");
	assert_leases(f->s, NULL, 0);
}

/*
 * A lease that ran out while no one had the file open is expired by the
 * next writable open, before it returns: the first write after it finds
 * the keys gone. A read-only open reports the lease gone and the keys
 * still there (it never writes).
 */
static void test_sqlite_lease_expired_while_closed(void **state)
{
	struct fixture *f = *state;
	ustate_options o = fast_options();
	uint64_t rev;

	revoke_setup(f);
	ustate_watch_close(f->w);
	f->w = NULL;
	rev = ustate_revision(f->s);
	ustate_close(f->s);
	f->s = NULL;
	clock_forward(3600 * 1000);

	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
	assert_int_equal(ustate_lease_expire_now(f->s2), 0);
	assert_leases(f->s2, NULL, 0);
	assert_value(f->s2, "/r/1", "a", 1);

	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_int_equal(ustate_revision(f->s), rev + 1);
	assert_absent(f->s, "/r/1");
	assert_absent(f->s, "/r/2");
	assert_value(f->s, "/r/3", "c", 1);
	assert_int_equal(ustate_watch_open(&f->w, f->s, "/r/*", rev + 1), 0);
	expect_events_of_revision(
		f->w, rev + 1,
		(const ustate_event[]){
			{.type = USTATE_EVENT_DELETED, .key = "/r/1"},
			{.type = USTATE_EVENT_DELETED, .key = "/r/2"}},
		2);
	assert_absent(f->s2, "/r/1");
}

/* A restart keeps each lease with its deadline and its keys. */
static void test_sqlite_lease_restart(void **state)
{
	struct fixture *f = *state;
	ustate_lease_info *li;
	int64_t deadline;

	assert_int_equal(ustate_lease_grant(f->s, "keep", 100, NULL), 0);
	assert_int_equal(
		ustate_set_leased(f->s, "/keep/k", "v", 1, "keep", NULL), 0);
	li = lease_info(f->s, "keep");
	deadline = li->deadline;
	ustate_lease_info_free(li);
	ustate_close(f->s);
	f->s = NULL;
	clock_forward(30000);
	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	li = lease_info(f->s, "keep");
	assert_int_equal(li->deadline, deadline);
	assert_int_equal(li->ttl, 100);
	assert_true(li->remaining_ms <= 70000 && li->remaining_ms > 60000);
	ustate_lease_info_free(li);
	assert_lease_keys(f->s, "keep", (const char *const[]){"/keep/k"}, 1);
	assert_key_lease(f->s, "/keep/k", "keep");
}

/*
 * Programs that know no leases (the sqlite3 shell, the Rust crate)
 * detach the keys they write: triggers drop the mapping.
 */
static void test_sqlite_lease_outside_write(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;

	assert_int_equal(ustate_lease_grant(f->s, "l", 30, NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/o/up", "1", 1, "l", NULL),
			 0);
	assert_int_equal(ustate_set_leased(f->s, "/o/rep", "1", 1, "l", NULL),
			 0);
	assert_int_equal(ustate_set_leased(f->s, "/o/mv", "1", 1, "l", NULL),
			 0);
	assert_int_equal(ustate_set_leased(f->s, "/o/stay", "1", 1, "l", NULL),
			 0);
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	exec_sql(db, "UPDATE kv_store SET value = x'32', version = 2 "
		     "WHERE key = '/o/up'");
	exec_sql(db, "INSERT OR REPLACE INTO kv_store VALUES('/o/rep', x'32', "
		     "2, 0, 0)");
	exec_sql(db, "UPDATE kv_store SET key = '/o/moved' WHERE "
		     "key = '/o/mv'");
	sqlite3_close(db);
	assert_key_lease(f->s, "/o/up", NULL);
	assert_key_lease(f->s, "/o/rep", NULL);
	assert_key_lease(f->s, "/o/moved", NULL);
	assert_key_lease(f->s, "/o/stay", "l");
	assert_lease_keys(f->s, "l", (const char *const[]){"/o/stay"}, 1);
	/* Only the attached key goes with the lease. */
	assert_int_equal(ustate_lease_revoke(f->s, "l"), 0);
	assert_absent(f->s, "/o/stay");
	assert_value(f->s, "/o/up", "2", 2);
}

/*
 * A file from before leases: read-only, it reads (no key has a lease,
 * no lease exists); the first writable open adds the tables.
 */
static void test_sqlite_lease_old_file(void **state)
{
	struct fixture *f = *state;
	ustate_options o = fast_options();
	sqlite3 *db;

	put(f->s, "/old", "v", 1);
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	exec_sql(db, "DROP TRIGGER ustate_lease_kv_insert;"
		     "DROP TRIGGER ustate_lease_kv_update;"
		     "DROP TRIGGER ustate_lease_kv_delete;"
		     "DROP TRIGGER ustate_lease_drop;"
		     "DROP TRIGGER ustate_lease_owner_drop;"
		     "DROP TABLE ustate_lease_owners;"
		     "DROP TABLE ustate_lease_keys; DROP TABLE ustate_leases");
	sqlite3_close(db);

	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
	assert_key_lease(f->s2, "/old", NULL);
	assert_leases(f->s2, NULL, 0);
	assert_no_lease(f->s2, "x");
	assert_int_equal(ustate_lease_get(f->s2, "x", NULL), -EINVAL);
	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_int_equal(ustate_lease_grant(f->s, "x", 30, NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/old", "w", 1, "x", NULL), 0);
	assert_key_lease(f->s, "/old", "x");
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
}

/*
 * A file of libustate 0.3 to 0.5 has the lease tables but no owners: a
 * read-only open reads its leases without owners, a writable one adds
 * the table; the statements of older libraries still work on it, and a
 * lease dropped by hand takes its owner along.
 */
static void test_sqlite_lease_owner_old_file(void **state)
{
	struct fixture *f = *state;
	ustate_meta alice = {.uid = 1000, .gid = 100, .mode = 0640};
	ustate_options o = fast_options();
	ustate_lease_info *li;
	char sql[160];
	sqlite3 *db;

	assert_int_equal(ustate_lease_grant(f->s, "x", 30, NULL), 0);
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	exec_sql(db, "DROP TRIGGER ustate_lease_owner_drop;"
		     "DROP TABLE ustate_lease_owners");
	sqlite3_close(db);

	o.read_only = 1;
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, &o), 0);
	li = lease_info(f->s2, "x");
	assert_int_equal(li->flags, 0);
	ustate_lease_info_free(li);
	ustate_close(f->s2);
	f->s2 = NULL;

	assert_int_equal(ustate_open_sqlite(&f->s, f->path, NULL), 0);
	assert_int_equal(ustate_lease_grant_owned(f->s, "y", 30, &alice, NULL),
			 0);
	assert_lease_owned(f->s, "y", 1000, 100, 0640);
	assert_int_equal(ustate_lease_set_owner(f->s, "x", &alice), 0);
	assert_lease_owned(f->s, "x", 1000, 100, 0640);
	/* An older library's grant, and a lease dropped by hand. */
	assert_int_equal(
		sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
		SQLITE_OK);
	snprintf(sql, sizeof(sql),
		 "INSERT INTO ustate_leases VALUES ('old', 30, %lld);"
		 "DELETE FROM ustate_leases WHERE name = 'y'",
		 (long long)ustate_clock_ms() + 30000);
	exec_sql(db, sql);
	exec_sql(db, "INSERT INTO ustate_leases VALUES ('y', 30, "
		     "9000000000000)");
	sqlite3_close(db);
	li = lease_info(f->s, "old");
	assert_int_equal(li->flags, 0);
	ustate_lease_info_free(li);
	li = lease_info(f->s, "y");
	assert_int_equal(li->flags, 0);
	ustate_lease_info_free(li);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
}

struct expirer {
	ustate *s;
	pthread_barrier_t *start;
	int rc;
};

static void *expire_main(void *arg)
{
	struct expirer *x = arg;

	pthread_barrier_wait(x->start);
	x->rc = ustate_lease_expire_now(x->s);
	return NULL;
}

/* Two handles expire at once: the lease ends once, in one revision. */
static void test_sqlite_lease_expire_once(void **state)
{
	struct fixture *f = *state;
	struct expirer x[2];
	pthread_barrier_t start;
	pthread_t t[2];
	uint64_t rev;
	int i;

	revoke_setup(f);
	assert_int_equal(ustate_open_sqlite(&f->s2, f->path, NULL), 0);
	rev = ustate_revision(f->s);
	clock_forward(31000);
	pthread_barrier_init(&start, NULL, 2);
	for (i = 0; i < 2; i++) {
		x[i] = (struct expirer){.s = i ? f->s2 : f->s, .start = &start};
		assert_int_equal(
			pthread_create(&t[i], NULL, expire_main, &x[i]), 0);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(x[i].rc, 0);
	}
	pthread_barrier_destroy(&start);
	expect_lease_deleted(f, rev + 1);
	assert_int_equal(ustate_revision(f->s2), rev + 1);
}

/*
 * etcd: its leases, with the server's clock. A grant reports the TTL etcd
 * granted (it raises one under its minimum, 2 s here); a grant of a live
 * lease keeps it alive, and keeps its TTL (etcd cannot change a lease's
 * TTL: a difference of this backend).
 */
static void test_etcd_lease_grant(void **state)
{
	struct fixture *f = *state;
	ustate_lease_info *li = NULL;

	assert_leases(f->s, NULL, 0);
	assert_int_equal(ustate_lease_grant(f->s, "node-1", 10, &li), 0);
	assert_string_equal(li->name, "node-1");
	assert_int_equal(li->ttl, 10);
	assert_true(li->remaining_ms > 9000 && li->remaining_ms <= 10000);
	ustate_lease_info_free(li);
	li = NULL;
	/* What etcd granted: its minimum depends on its heartbeat. */
	assert_int_equal(ustate_lease_grant(f->s, "short", 1, &li), 0);
	assert_true(li->ttl >= 1 && li->ttl <= 2);
	ustate_lease_info_free(li);
	assert_leases(f->s, (const char *const[]){"node-1", "short"}, 2);
	li = lease_info(f->s, "node-1");
	assert_int_equal(li->ttl, 10);
	/* etcd tells whole seconds left. */
	assert_true(li->remaining_ms >= 8000 && li->remaining_ms <= 10000);
	ustate_lease_info_free(li);
	li = NULL;
	assert_int_equal(ustate_lease_keepalive(f->s, "node-1", &li), 0);
	assert_int_equal(li->ttl, 10);
	ustate_lease_info_free(li);
	li = NULL;
	assert_int_equal(ustate_lease_grant(f->s, "node-1", 60, &li), 0);
	assert_int_equal(li->ttl, 10);
	ustate_lease_info_free(li);
	assert_int_equal(ustate_lease_revoke(f->s, "short"), 0);
	assert_no_lease(f->s, "short");
	assert_int_equal(ustate_lease_keepalive(f->s, "short", NULL), -ENOENT);
	assert_leases(f->s, (const char *const[]){"node-1"}, 1);
}

/* etcd: a client's restart keeps the lease, its TTL and its keys. */
static void test_etcd_lease_reopen(void **state)
{
	struct fixture *f = *state;
	ustate_options o = fast_options();
	ustate_lease_info *li;

	assert_int_equal(ustate_lease_grant(f->s, "keep", 30, NULL), 0);
	assert_int_equal(
		ustate_set_leased(f->s, "/keep/k", "v", 1, "keep", NULL), 0);
	ustate_close(f->s);
	f->s = NULL;
	assert_int_equal(ustate_open(&f->s, f->path, &o), 0);
	li = lease_info(f->s, "keep");
	assert_int_equal(li->ttl, 30);
	assert_true(li->remaining_ms > 20000);
	ustate_lease_info_free(li);
	assert_lease_keys(f->s, "keep", (const char *const[]){"/keep/k"}, 1);
	assert_key_lease(f->s, "/keep/k", "keep");
}

/*
 * etcd: a leased key's side keys go with it (they are attached to the
 * lease too), and the lease's record: nothing is left behind.
 */
static void test_etcd_lease_side_keys(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(ustate_lease_grant(f->s, "s", 30, NULL), 0);
	assert_int_equal(ustate_set_leased(f->s, "/s/a", "1", 1, "s", NULL), 0);
	assert_int_equal(
		ustate_create_if_not_exists(f->s, "/s/b", "2", 1, NULL), 0);
	assert_key_lease(f->s, "/s/a", "s");
	assert_int_equal(ustate_lease_revoke(f->s, "s"), 0);
	assert_absent(f->s, "/s/a");
	assert_value(f->s, "/s/b", "2", 1);
	assert_int_equal(ustate_check(f->s, NULL, NULL), 0);
	assert_leases(f->s, NULL, 0);
}

/* What test_etcd_replica_load() hears: the line of a finished load. */
struct load_log {
	unsigned long long keys, pages;
	int loads;
};

static void load_log(void *arg, int priority, const char *msg)
{
	struct load_log *l = arg;
	const char *at = strstr(msg, "the replica: ");
	double secs;

	(void)priority;
	if (at && strstr(at, "loaded in") &&
	    sscanf(at,
		   "the replica: %llu keys at revision %*u, loaded in %lf s (%llu pages)",
		   &l->keys, &secs, &l->pages) == 3)
		l->loads++;
}

/*
 * A replica loaded from a store of several thousand etcd keys, dense and
 * sparse, some sharing more than 16 bytes past their prefix: it reads in
 * windows of about a page each (etcd.c's load guesses their ends), and
 * holds exactly what etcd holds.
 */
static void test_etcd_replica_load(void **state)
{
	struct fixture *f = *state;
	ustate_options o = fast_options();
	struct load_log l = {0};
	char keys[40][96], **a = NULL, **b = NULL;
	size_t na = 0, nb = 0, i, j, total = 0;
	ustate_entry *e = NULL;
	ustate_op ops[40];
	ustate *r = NULL;
	int set;

	/* Sets of 40: 1500 dense, 400 long, 300 spread, 8 sparse keys. */
	for (set = 0; set < 56; set++) {
		for (j = 0; j < 40; j++) {
			i = (size_t)set * 40 + j;
			if (i < 1500)
				snprintf(keys[j], sizeof(keys[j]), "/w/d/%05zu",
					 i);
			else if (i < 1900)
				snprintf(
					keys[j], sizeof(keys[j]),
					"/w/l/%s/%04zu",
					"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
					i);
			else if (i < 2200)
				snprintf(keys[j], sizeof(keys[j]), "/w/z%07zu",
					 i * 9973);
			else
				snprintf(keys[j], sizeof(keys[j]), "/w/s/%c",
					 (char)('a' + 3 * (i - 2200)));
			ops[j] = (ustate_op){.type = USTATE_OP_SET,
					     .key = keys[j],
					     .value = keys[j],
					     .value_len = strlen(keys[j])};
		}
		j = set == 55 ? 8 : 40;
		assert_int_equal(ustate_transaction(f->s, ops, j, NULL), 0);
		total += j;
	}
	assert_int_equal(total, 2208);

	o.replica = "";
	o.log = load_log;
	o.log_arg = &l;
	assert_int_equal(ustate_open(&r, f->path, &o), 0);
	assert_int_equal(l.loads, 1);
	/* Three etcd keys a key (its value, created_at, updated_at). */
	assert_true(l.keys >= 3 * total);
	/*
	 * Windows of up to a page (1,000 keys), their ends guessed: the gaps
	 * between the groups take a few small windows each (56 pages here
	 * when written), but never a page for a few keys.
	 */
	assert_true(l.pages >= l.keys / 1000);
	assert_true(l.pages <= l.keys / 50);

	assert_int_equal(ustate_list(f->s, "/w/", &a, &na), 0);
	assert_int_equal(ustate_list(r, "/w/", &b, &nb), 0);
	assert_int_equal(na, total);
	assert_int_equal(nb, total);
	for (i = 0; i < na; i++) {
		assert_string_equal(a[i], b[i]);
		assert_int_equal(ustate_get(r, b[i], &e), 0);
		assert_int_equal(e->value_len, strlen(b[i]));
		assert_memory_equal(e->value, b[i], e->value_len);
		ustate_entry_free(e);
	}
	ustate_list_free(a, na);
	ustate_list_free(b, nb);
	ustate_close(r);
}

/* ---- tables ------------------------------------------------------------ */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* The cases every backend runs. */
#define COMMON_CASES                                                           \
	T(test_versions), T(test_get_entry), T(test_timestamps),               \
		T(test_binary_and_empty_values), T(test_missing_key),          \
		T(test_max_value_size), T(test_revision), T(test_list),        \
		T(test_list_1000), T(test_compare_and_set),                    \
		T(test_create_if_not_exists), T(test_txn_all_or_nothing),      \
		T(test_txn_same_key), T(test_txn_limits), T(test_read_only),   \
		T(test_options), T(test_options_timeouts), T(test_options_v1), \
		T(test_open_bad_sources), T(test_open_log),                    \
		T(test_log_default), T(test_watch_prefix),                     \
		T(test_watch_exact_key), T(test_watch_all_in_order),           \
		T(test_watch_eagain), T(test_watch_fd),                        \
		T(test_watch_fd_first_write),                                  \
		T(test_watch_own_writes_at_once), T(test_watch_replay),        \
		T(test_watch_overflow), T(test_watch_history_zero),            \
		T(test_watch_bad_pattern), T(test_watch_long_pattern),         \
		T(test_watch_other_thread), T(test_watch_idle_cpu),            \
		T(test_watch_concurrent_writers), T(test_watch_big_txn),       \
		T(test_thread_cas_race), T(test_thread_group_commit),          \
		T(test_get_many), T(test_get_many_under_writes),               \
		T(test_options_get), T(test_options_strings),                  \
		T(test_dir_records), T(test_node),                             \
		T(test_node_bad_path_output), T(test_node_get),                \
		T(test_readdir), T(test_readdir_many), T(test_script),         \
		T(test_script_newlines_after_commit), T(test_script_failures), \
		T(test_json), T(test_strerror), T(test_null_is_noop),          \
		T(test_check_children), T(test_export), T(test_export_stops),  \
		T(test_restore_roundtrip), T(test_restore_not_empty_dirs),     \
		T(test_restore_merge_replace), T(test_restore_all_or_nothing), \
		T(test_compact), T(test_check_clean), T(test_meta_keys),       \
		T(test_meta_dirs), T(test_meta_times), T(test_xattrs),         \
		T(test_restore_meta), T(test_meta_invalid),                    \
		T(test_script_check), T(test_script_owner)

/*
 * The lease cases of SQLite and memory. etcd runs those that need no
 * clock of ours (its leases run on the server's), and real-time variants.
 */
#define LEASE_CASES                                                            \
	T(test_lease_grant_get_list), T(test_lease_attach_detach),             \
		T(test_lease_revoke), T(test_lease_expiry),                    \
		T(test_lease_grant_after_deadline), T(test_lease_errors),      \
		T(test_lease_read_only), T(test_lease_leader_election),        \
		T(test_lease_thread_expires), T(test_lease_owner),             \
		T(test_lease_owner_expiry), T(test_restore_leases),            \
		T(test_restore_lease_invalid)

static const struct CMUnitTest sqlite_cases[] = {
	COMMON_CASES,
	LEASE_CASES,
	T(test_sqlite_lease_expired_while_closed),
	T(test_sqlite_lease_restart),
	T(test_sqlite_lease_outside_write),
	T(test_sqlite_lease_old_file),
	T(test_sqlite_lease_owner_old_file),
	T(test_sqlite_lease_expire_once),
	T(test_sqlite_process_cas_race),
	T(test_sqlite_process_watch),
	T(test_sqlite_not_a_database),
	T(test_sqlite_file_mode),
	T(test_sqlite_special_names),
	T(test_sqlite_reopen),
	T(test_sqlite_external_write),
	T(test_sqlite_rust_file),
	T(test_sqlite_backup),
	T(test_sqlite_backup_while_writing),
	T(test_sqlite_check_finds),
	T(test_sqlite_check_history),
	T(test_sqlite_check_integrity),
	T(test_sqlite_meta_old_file),
	T(test_sqlite_symlink),
	T(test_sqlite_watch_foreign_then_local),
	T(test_sqlite_watch_foreign_among_groups),
	T(test_sqlite_global_tune),
	T(test_sqlite_open_source),
};

static const struct CMUnitTest memory_cases[] = {
	COMMON_CASES,
	LEASE_CASES,
	T(test_memory_stores_are_separate),
	T(test_memory_open_source),
	T(test_memory_backup),
};

static const struct CMUnitTest etcd_cases[] = {
	COMMON_CASES,
	T(test_etcd_backup),
	T(test_etcd_lease_grant),
	T(test_lease_attach_detach),
	T(test_lease_revoke),
	T(test_lease_errors),
	T(test_lease_read_only),
	T(test_lease_leader_election),
	T(test_lease_thread_expires),
	T(test_lease_owner),
	T(test_etcd_export_leases),
	T(test_etcd_lease_side_keys),
	T(test_etcd_lease_reopen),
	T(test_etcd_get_many_limit),
	T(test_etcd_replica_load),
};

int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "";
	int rc = 0;

	self = argv[0];
	if (!strcmp(which, "global-tune") && argc == 3)
		return global_tune_child(argv[2]);

	if (*which && strcmp(which, "sqlite") && strcmp(which, "memory") &&
	    strcmp(which, "etcd")) {
		fprintf(stderr, "usage: %s [sqlite|memory|etcd]\n", argv[0]);
		return 2;
	}
	if (!*which || !strcmp(which, "sqlite"))
		rc += cmocka_run_group_tests_name("sqlite", sqlite_cases,
						  group_setup_sqlite, NULL);
	if (!*which || !strcmp(which, "memory"))
		rc += cmocka_run_group_tests_name("memory", memory_cases,
						  group_setup_memory, NULL);
	if (!strcmp(which, "etcd")) {
		/* tests/etcd/with-etcd.sh starts the member and says where. */
		etcd_endpoint = getenv("USTATE_TEST_ETCD");
		if (!etcd_endpoint || !*etcd_endpoint) {
			fprintf(stderr,
				"%s etcd: USTATE_TEST_ETCD must name "
				"an etcd endpoint (run it through "
				"tests/etcd/with-etcd.sh)\n",
				argv[0]);
			return 2;
		}
		rc += cmocka_run_group_tests_name("etcd", etcd_cases,
						  group_setup_etcd, NULL);
	}
	return rc;
}
