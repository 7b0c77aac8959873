/* SPDX-License-Identifier: MIT */
/*
 * This file implements the replica of the etcd backend (etcd_mirror_i.h
 * says what it promises): a SQLite file of etcd's keys in one range, fed
 * by a watch of the range, answering etcd.c's reads with etcd's JSON. It
 * sees the transport (etcd_http_i.h) and SQLite, nothing of the store.
 *
 * The file holds two tables:
 *
 *   kv(key BLOB PRIMARY KEY, value, create_rev, mod_rev, version, lease)
 *            etcd's keys as they are; keys compare as bytes, as etcd's
 *   meta(k TEXT PRIMARY KEY, v)
 *            format (1), lo and hi (the range), cluster (etcd's cluster
 *            ID), revision, and complete (1 once a load has finished)
 *
 * One connection, used while the replica loads by the streams of the
 * load (the replica's thread and LOAD_STREAMS - 1 more, one at a time;
 * reads are refused meanwhile) and under the lock afterwards, by the
 * replica's thread and by readers.
 * The file is a cache: synchronous=OFF, and a file that is not complete,
 * or of another cluster or range, is loaded again from scratch.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "etcd_mirror_i.h"

#define FORMAT 1
#define PAGE 1000	      /* keys a load asks for at once */
#define PAGES_PER_COMMIT 100  /* ... and commits at once */
#define PROGRESS_KEYS 100000u /* a progress line per this many keys */

enum {
	S_PUT,
	S_DEL,
	S_META,
	S_ONE,
	S_FROM,
	S_RANGE,
	S_COUNT_ONE,
	S_COUNT_FROM,
	S_COUNT_RANGE,
	S_REV,
	S_BEGIN,
	S_COMMIT,
	NSTMT
};

static const char *const sql[NSTMT] = {
	[S_PUT] = "INSERT OR REPLACE INTO kv VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_DEL] = "DELETE FROM kv WHERE key = ?1",
	[S_META] = "INSERT OR REPLACE INTO meta VALUES (?1, ?2)",
	[S_ONE] = "SELECT key, value, create_rev, mod_rev, version, lease "
		  "FROM kv WHERE key = ?1",
	[S_FROM] = "SELECT key, value, create_rev, mod_rev, version, lease "
		   "FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?3",
	[S_RANGE] = "SELECT key, value, create_rev, mod_rev, version, lease "
		    "FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key "
		    "LIMIT ?3",
	[S_COUNT_ONE] = "SELECT count(*) FROM kv WHERE key = ?1",
	[S_COUNT_FROM] = "SELECT count(*) FROM kv WHERE key >= ?1",
	[S_COUNT_RANGE] =
		"SELECT count(*) FROM kv WHERE key >= ?1 AND key < ?2",
	[S_REV] = "SELECT v FROM meta WHERE k = 'revision'",
	/* A reader's snapshot, prepared once (a parse costs more). */
	[S_BEGIN] = "BEGIN",
	[S_COMMIT] = "COMMIT",
};

#define READERS 16 /* reading connections kept */

/* A connection of readers, with its statements. */
struct reader {
	sqlite3 *db;
	sqlite3_stmt *st[NSTMT];
};

/* What a read sees: one reader's snapshot, at its revision. */
struct view {
	struct ustate_etcd_mirror *m;
	struct reader *r;
	uint64_t rev;
};

struct ustate_etcd_mirror {
	struct ustate_etcd_conn *c;
	const ustate_options *opts;
	char *lo, *hi;
	char *path;
	bool temp; /* remove the file at close */
	sqlite3 *db;
	sqlite3_stmt *st[NSTMT];
	struct ustate_etcd_stream *stream;
	char cluster[32]; /* etcd's cluster ID, as etcd writes it */

	pthread_mutex_t lock;
	pthread_cond_t cond; /* the revision moved, or readiness changed */
	uint64_t rev;	     /* protected by lock */
	bool ready;	     /* loaded: reads may use db; protected by lock */
	bool stopping;	     /* protected by lock */
	bool tried;	     /* the first load or resume is over; by lock */
	bool connected;	     /* the watch hears its cluster; by lock */
	int first_rc;	     /* ... its outcome; by lock */
	pthread_t thread;
	bool started;

	pthread_mutex_t plock;
	struct reader *idle[READERS]; /* protected by plock */
	size_t nidle;		      /* protected by plock */
};

/* ---- the file --------------------------------------------------------- */

static int db_errno(struct ustate_etcd_mirror *m, int rc, const char *what)
{
	ustate_log(m->opts, LOG_ERR, "the replica %s: %s: %s", m->path, what,
		   sqlite3_errmsg(m->db));
	return rc == SQLITE_NOMEM  ? -ENOMEM
	       : rc == SQLITE_FULL ? -ENOSPC
				   : -EIO;
}

static int exec(struct ustate_etcd_mirror *m, const char *s)
{
	int rc = sqlite3_exec(m->db, s, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : db_errno(m, rc, s);
}

static int meta_set(struct ustate_etcd_mirror *m, const char *k, const char *v)
{
	sqlite3_stmt *s = m->st[S_META];
	int rc;

	sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : db_errno(m, rc, "meta");
}

static int meta_rev(struct ustate_etcd_mirror *m, uint64_t rev)
{
	char v[24];

	snprintf(v, sizeof(v), "%" PRIu64, rev);
	return meta_set(m, "revision", v);
}

/* meta k's value into buf ("" when absent). */
static void meta_get(struct ustate_etcd_mirror *m, const char *k, char *buf,
		     size_t len)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *v;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(m->db, "SELECT v FROM meta WHERE k = ?1", -1, &s,
			       NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW && (v = sqlite3_column_text(s, 0)))
		snprintf(buf, len, "%s", (const char *)v);
	sqlite3_finalize(s);
}

/*
 * A connection to the file, with the statements prepared, after the SQL
 * schema (NULL: none) has run on it.
 */
static int conn_open(struct ustate_etcd_mirror *m, sqlite3 **db,
		     sqlite3_stmt **st, const char *schema)
{
	int rc, i;

	rc = sqlite3_open_v2(m->path, db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				     SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		ustate_log(m->opts, LOG_ERR, "the replica %s: %s", m->path,
			   *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		return rc == SQLITE_CANTOPEN ? -EACCES : -EIO;
	}
	sqlite3_busy_timeout(*db, 5000);
	if (schema &&
	    sqlite3_exec(*db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		ustate_log(m->opts, LOG_ERR, "the replica %s: %s", m->path,
			   sqlite3_errmsg(*db));
		return sqlite3_errcode(*db) == SQLITE_FULL ? -ENOSPC : -EIO;
	}
	for (i = 0; i < NSTMT; i++)
		if (sqlite3_prepare_v3(*db, sql[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &st[i],
				       NULL) != SQLITE_OK) {
			ustate_log(m->opts, LOG_ERR, "the replica %s: %s",
				   m->path, sqlite3_errmsg(*db));
			return -EIO;
		}
	return 0;
}

static void conn_close(sqlite3 *db, sqlite3_stmt **st)
{
	int i;

	for (i = 0; i < NSTMT; i++)
		sqlite3_finalize(st[i]);
	sqlite3_close(db);
}

/* The thread's connection, the schema made first (conn_open's SQL needs it). */
static int db_open(struct ustate_etcd_mirror *m)
{
	return conn_open(m, &m->db, m->st,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
			 "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, "
			 "value BLOB NOT NULL, create_rev INTEGER NOT NULL, "
			 "mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, "
			 "lease INTEGER NOT NULL) WITHOUT ROWID;"
			 "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, "
			 "v);");
}

/* A kept file of this range, complete: its revision, or 0. */
static uint64_t db_kept(struct ustate_etcd_mirror *m)
{
	char v[4096];

	meta_get(m, "format", v, sizeof(v));
	if (atoi(v) != FORMAT)
		return 0;
	meta_get(m, "lo", v, sizeof(v));
	if (strcmp(v, m->lo))
		return 0;
	meta_get(m, "hi", v, sizeof(v));
	if (strcmp(v, m->hi))
		return 0;
	meta_get(m, "complete", v, sizeof(v));
	if (strcmp(v, "1"))
		return 0;
	meta_get(m, "cluster", m->cluster, sizeof(m->cluster));
	meta_get(m, "revision", v, sizeof(v));
	return strtoull(v, NULL, 10);
}

/* Put one etcd kv (a JSON object of a range or an event). */
static int put_kv(struct ustate_etcd_mirror *m, json_t *kv)
{
	sqlite3_stmt *s = m->st[S_PUT];
	struct ustate_etcd_kvs one = {0};
	const struct ustate_etcd_kv *x;
	int rc;

	rc = ustate_etcd_kv_parse(kv, &one);
	if (rc < 0)
		return rc;
	x = &one.kv[0];
	sqlite3_bind_blob(s, 1, x->key, (int)x->klen, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, x->value, (int)x->vlen, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (int64_t)x->create_rev);
	sqlite3_bind_int64(s, 4, (int64_t)x->mod_rev);
	sqlite3_bind_int64(s, 5, (int64_t)x->version);
	sqlite3_bind_int64(s, 6, x->lease);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	rc = rc == SQLITE_DONE ? 0 : db_errno(m, rc, "put");
	ustate_etcd_kvs_clear(&one);
	return rc;
}

static int del_kv(struct ustate_etcd_mirror *m, json_t *kv)
{
	sqlite3_stmt *s = m->st[S_DEL];
	char *k = NULL;
	size_t klen;
	int rc;

	rc = ustate_etcd_get_bytes(kv, "key", &k, &klen);
	if (rc < 0)
		return rc;
	sqlite3_bind_blob(s, 1, k, (int)klen, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	free(k);
	return rc == SQLITE_DONE ? 0 : db_errno(m, rc, "delete");
}

/* ---- loading ---------------------------------------------------------- */

static double secs_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Loaded or resumed at revision rev: reads may come. */
static int go_live(struct ustate_etcd_mirror *m, uint64_t rev)
{
	pthread_mutex_lock(&m->lock);
	m->rev = rev;
	m->ready = true;
	/* (The first time, without a word: etcd answered the load.) */
	if (!m->tried)
		m->connected = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/* A range of [from, end), PAGE keys at most, at revision rev (0: now). */
static int page(struct ustate_etcd_mirror *m, const char *from, size_t flen,
		const char *end, size_t elen, uint64_t rev, json_t **resp)
{
	json_t *r = json_object();
	int rc;

	if (!r)
		return -ENOMEM;
	json_object_set_new_nocheck(r, "key", ustate_etcd_b64(from, flen));
	json_object_set_new_nocheck(r, "range_end", ustate_etcd_b64(end, elen));
	json_object_set_new_nocheck(r, "limit", ustate_etcd_u64(PAGE));
	if (rev)
		json_object_set_new_nocheck(r, "revision",
					    ustate_etcd_u64(rev));
	rc = ustate_etcd_call(m->c, "/v3/kv/range", r, USTATE_ETCD_READ, resp);
	json_decref(r);
	return rc;
}

/*
 * A read of the one etcd key lo, keys only: the header (cluster, revision)
 * for the price of one key. A page of [lo, hi) would cost etcd 3.4 a walk
 * of every key of the range to count them (0.5 s at 3,000,000).
 */
static int probe(struct ustate_etcd_mirror *m, json_t **resp)
{
	const struct ustate_etcd_range one = {
		.key = m->lo, .klen = strlen(m->lo), .keys_only = true};
	json_t *r = ustate_etcd_range_request(&one);
	int rc;

	if (!r)
		return -ENOMEM;
	rc = ustate_etcd_call(m->c, "/v3/kv/range", r, USTATE_ETCD_READ, resp);
	json_decref(r);
	return rc;
}

static void cluster_of(struct ustate_etcd_mirror *m, json_t *resp, char *buf,
		       size_t len)
{
	json_t *id =
		json_object_get(json_object_get(resp, "header"), "cluster_id");

	snprintf(buf, len, "%s", json_string_value(id) ?: "");
}

/*
 * The windows of a load. etcd 3.4 answers a range with a limit after
 * walking every key of [key, range_end) in its index, to count them: pages
 * of [from, hi) cost O(keys from there on) each, and a load of N keys
 * O(N^2 / PAGE) (a store of 100,000 keys, 300,000 of etcd's, took 13 s
 * and 1,000,000 far over a minute). So each page asks for a window [from,
 * end) meant to hold about PAGE keys, its end guessed from the stretch
 * just read: [s, e) held n keys, so with keys read as numbers (WIN_BYTES
 * bytes, big-endian, from WIN_ROOM bytes before the end of the common
 * prefix of s and e), the next window is PAGE / n times as wide, and
 * WIN_GROWTH times at most. A guess that is off costs one page the walk
 * of its window (a third of a microsecond a key), and the count etcd
 * returns corrects the next. Where no guess can be made (s a prefix of e,
 * past 2^128), the window is [from, hi) as before.
 */
#define WIN_BYTES 16
#define WIN_ROOM 4
#define WIN_GROWTH 4

typedef unsigned __int128 win_num;

static win_num win_of(const char *k, size_t len, size_t p)
{
	win_num v = 0;
	size_t i;

	for (i = 0; i < WIN_BYTES; i++)
		v = v << 8 | (p + i < len ? (unsigned char)k[p + i] : 0);
	return v;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

/*
 * The end of a window from from after the stretch [s, e) of n keys was
 * read, into end (room for flen + WIN_BYTES bytes): from plus PAGE / n
 * times the width of the stretch. Its length, or 0 for "up to hi". The
 * numbers start WIN_ROOM bytes before the common prefix of s and e ends,
 * so that a window wider than what is left of that prefix carries into
 * it, as a sum of byte strings does.
 */
static size_t win_end(const char *s, size_t slen, const char *e, size_t elen,
		      uint64_t n, const char *from, size_t flen, const char *hi,
		      char *end)
{
	size_t p = 0, q, i, len;
	win_num a, b, w, x;
	uint64_t mult;

	while (p < slen && p < elen && s[p] == e[p])
		p++;
	q = p > WIN_ROOM ? p - WIN_ROOM : 0;
	a = win_of(s, slen, q);
	b = win_of(e, elen, q);
	if (b <= a || flen < q)
		return 0;
	w = b - a;
	x = win_of(from, flen, q);
	mult = n ? (PAGE + n - 1) / n : WIN_GROWTH;
	if (mult > WIN_GROWTH)
		mult = WIN_GROWTH;
	/* from + (b - a) * mult, without passing 2^128: past it, up to hi. */
	if (w > (~(win_num)0 - x) / mult)
		return 0;
	x += w * mult;
	memcpy(end, from, q);
	for (i = 0; i < WIN_BYTES; i++)
		end[q + i] = (char)(x >> (8 * (WIN_BYTES - 1 - i)) & 0xff);
	len = q + WIN_BYTES;
	if (bytes_cmp(end, len, hi, strlen(hi)) >= 0 ||
	    bytes_cmp(end, len, from, flen) <= 0)
		return 0;
	return len;
}

/* A byte string of a load (etcd's keys may hold any byte), owned. */
struct bkey {
	char *b;
	size_t len;
};

static int bkey_set(struct bkey *k, const char *b, size_t len)
{
	char *c = malloc(len + 1);

	if (!c)
		return -ENOMEM;
	if (len)
		memcpy(c, b, len);
	c[len] = '\0';
	free(k->b);
	k->b = c;
	k->len = len;
	return 0;
}

/*
 * A load: LOAD_STREAMS threads take windows in turn from the frontier,
 * each ranges its own (etcd serves them at once, on as many cores) and
 * writes what it got into the file, in whatever order: a load is of one
 * revision, so the rows do not depend on it. A window that held more
 * than a page goes on with its thread, from past its last key; one that
 * went up to hi (no guess could be made) gives the rest back to the
 * frontier instead. Streams without a window wait while others may still
 * give some back.
 */
#define LOAD_STREAMS 3

struct loader {
	struct ustate_etcd_mirror *m;
	uint64_t rev;
	struct timespec t0;

	pthread_mutex_t lock;	  /* protects everything below but the file */
	pthread_cond_t cond;	  /* a window was given back, or one ended */
	struct bkey frontier;	  /* where the next window starts */
	bool at_hi;		  /* no window left at the frontier */
	unsigned busy;		  /* streams that hold a window */
	struct bkey est_s, est_e; /* the last stretch read ... */
	uint64_t est_n;		  /* ... and its keys */
	int rc;			  /* the first failure */

	pthread_mutex_t dlock; /* the file, and: */
	uint64_t n;	       /* keys written */
	size_t pages;
};

static void load_fail(struct loader *l, int rc)
{
	pthread_mutex_lock(&l->lock);
	if (!l->rc)
		l->rc = rc;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/*
 * A window [from, end) from the frontier (end->len 0: up to hi): 1, or
 * 0 when none is left or the load failed.
 */
static int load_take(struct loader *l, struct bkey *from, struct bkey *end)
{
	size_t len;
	int rc = 1;

	pthread_mutex_lock(&l->lock);
	while (!l->rc && l->at_hi && l->busy)
		pthread_cond_wait(&l->cond, &l->lock);
	if (l->rc || l->at_hi) {
		rc = 0;
		goto out;
	}
	free(end->b);
	end->b = malloc(l->frontier.len + WIN_BYTES);
	if (!end->b || bkey_set(from, l->frontier.b, l->frontier.len) < 0) {
		rc = 0;
		l->rc = -ENOMEM;
		goto out;
	}
	len = win_end(l->est_s.b, l->est_s.len, l->est_e.b, l->est_e.len,
		      l->est_n, from->b, from->len, l->m->hi, end->b);
	end->len = len;
	if (len)
		rc = bkey_set(&l->frontier, end->b, len) < 0 ? -ENOMEM : 1;
	else
		l->at_hi = true;
	if (rc < 0) {
		l->rc = rc;
		rc = 0;
	} else {
		l->busy++;
	}
out:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

/*
 * What a window read: the stretch [from, next) of n keys for the next
 * guesses; with give_back, [next, hi) goes back to the frontier; with
 * done, the stream's window is over.
 */
static void load_learn(struct loader *l, const struct bkey *from,
		       const struct bkey *next, uint64_t n, bool give_back,
		       bool done)
{
	pthread_mutex_lock(&l->lock);
	if (bkey_set(&l->est_s, from->b, from->len) < 0 ||
	    bkey_set(&l->est_e, next->b, next->len) < 0)
		l->rc = l->rc ?: -ENOMEM;
	l->est_n = n;
	if (give_back) {
		if (bkey_set(&l->frontier, next->b, next->len) < 0)
			l->rc = l->rc ?: -ENOMEM;
		l->at_hi = false;
	}
	if (done)
		l->busy--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Write a page's kvs into the file; every PAGES_PER_COMMIT, commit. */
static int load_write(struct loader *l, json_t *kvs)
{
	struct ustate_etcd_mirror *m = l->m;
	json_t *kv;
	size_t i;
	int rc = 0;

	pthread_mutex_lock(&l->dlock);
	json_array_foreach(kvs, i, kv)
	{
		rc = put_kv(m, kv);
		if (rc < 0)
			break;
		if (++l->n % PROGRESS_KEYS == 0)
			ustate_log(m->opts, LOG_INFO,
				   "the replica: %" PRIu64
				   " keys loaded (%.1f s)",
				   l->n, secs_since(&l->t0));
	}
	if (rc == 0 && ++l->pages % PAGES_PER_COMMIT == 0)
		rc = exec(m, "COMMIT; BEGIN;");
	pthread_mutex_unlock(&l->dlock);
	return rc;
}

/*
 * One window range: its page into the file, and *next the key after the
 * last one read when there are more (*more). 0 or -errno.
 */
static int load_page(struct loader *l, const struct bkey *from,
		     const struct bkey *end, struct bkey *next, bool *more,
		     uint64_t *got)
{
	struct ustate_etcd_mirror *m = l->m;
	json_t *resp = NULL, *kvs;
	char *k = NULL;
	size_t klen;
	int rc;

	rc = page(m, from->b, from->len, end->len ? end->b : m->hi,
		  end->len ?: strlen(m->hi), l->rev, &resp);
	if (rc < 0)
		return rc;
	if (!l->rev) {
		l->rev = ustate_etcd_get_u64(json_object_get(resp, "header"),
					     "revision");
		cluster_of(m, resp, m->cluster, sizeof(m->cluster));
	}
	kvs = json_object_get(resp, "kvs");
	*got = json_array_size(kvs);
	rc = load_write(l, kvs);
	*more = rc == 0 && *got && json_is_true(json_object_get(resp, "more"));
	/* The next key after the last one read. */
	if (*more)
		rc = ustate_etcd_get_bytes(json_array_get(kvs, *got - 1), "key",
					   &k, &klen);
	if (*more && rc == 0) {
		rc = bkey_set(next, k, klen + 1);
		if (rc == 0)
			next->b[klen] = '\0';
	}
	free(k);
	json_decref(resp);
	return rc;
}

/*
 * A stream of a load: regions from the frontier until there are none,
 * each read in windows, their ends guessed from the stream's own last
 * stretch (a region that holds more than a page is walked like the whole
 * range was: a page of [from, region's end) each time would walk all the
 * rest of the region again).
 */
static void *load_stream(void *arg)
{
	struct loader *l = arg;
	struct bkey from = {0}, rend = {0}, wend = {0}, next = {0};
	struct bkey s = {0}, hi = {0};
	bool more, mine = false;
	uint64_t got = 0;
	int rc = 0;

	if (bkey_set(&hi, l->m->hi, strlen(l->m->hi)) < 0) {
		load_fail(l, -ENOMEM);
		return NULL;
	}
	while (mine || load_take(l, &from, &rend)) {
		/* The window: the region's start reads all of it. */
		free(wend.b);
		wend.b = malloc(from.len + WIN_BYTES);
		if (!wend.b) {
			rc = -ENOMEM;
			break;
		}
		wend.len = mine ? win_end(s.b, s.len, from.b, from.len, got,
					  from.b, from.len, l->m->hi, wend.b)
				: 0;
		if (!wend.len || (rend.len && bytes_cmp(wend.b, wend.len,
							rend.b, rend.len) >= 0))
			rc = bkey_set(&wend, rend.b, rend.len);
		if (rc == 0)
			rc = bkey_set(&s, from.b, from.len);
		if (rc == 0)
			rc = load_page(l, &from, &wend, &next, &more, &got);
		if (rc < 0)
			break;
		/* The stretch read: [s, from) now. */
		if (more)
			rc = bkey_set(&from, next.b, next.len);
		else if (wend.len)
			rc = bkey_set(&from, wend.b, wend.len);
		if (rc < 0)
			break;
		/*
		 * Done with the region at its end; a region up to hi gives
		 * the rest back to the frontier after its first page.
		 */
		mine = (more || wend.len != rend.len ||
			memcmp(wend.b, rend.b, wend.len)) &&
		       rend.len;
		load_learn(l, &s, more || wend.len ? &from : &hi, got,
			   more && !rend.len, !mine);
	}
	/* (Only a stream that holds a window breaks off: it lets it go.) */
	if (rc < 0) {
		load_learn(l, &s, &s, 0, false, true);
		load_fail(l, rc);
	}
	free(from.b);
	free(rend.b);
	free(wend.b);
	free(next.b);
	free(s.b);
	free(hi.b);
	return NULL;
}

/*
 * Load the whole range at one revision, committing every PAGES_PER_COMMIT
 * pages (the file says "not complete" until the end): a first page of
 * [lo, hi) fixes the revision and starts the guesses, then LOAD_STREAMS
 * streams read the rest in windows. Thread only.
 */
static int load(struct ustate_etcd_mirror *m)
{
	struct loader l = {.m = m,
			   .lock = PTHREAD_MUTEX_INITIALIZER,
			   .cond = PTHREAD_COND_INITIALIZER,
			   .dlock = PTHREAD_MUTEX_INITIALIZER};
	struct bkey lo = {0}, none = {0};
	pthread_t t[LOAD_STREAMS - 1];
	size_t started = 0, i;
	uint64_t got;
	bool more;
	char v[24];
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &l.t0);
	rc = bkey_set(&lo, m->lo, strlen(m->lo));
	if (rc == 0)
		rc = exec(m, "BEGIN; DELETE FROM kv; DELETE FROM meta;");
	if (rc == 0)
		rc = load_page(&l, &lo, &none, &l.frontier, &more, &got);
	if (rc == 0 && more) {
		/* The rest, from the frontier, with the first stretch's guess.
		 */
		rc = bkey_set(&l.est_s, lo.b, lo.len);
		if (rc == 0)
			rc = bkey_set(&l.est_e, l.frontier.b, l.frontier.len);
		l.est_n = got;
		l.rc = rc;
		for (i = 0; rc == 0 && i < LOAD_STREAMS - 1; i++)
			if (pthread_create(&t[i], NULL, load_stream, &l) == 0)
				started++;
		load_stream(&l);
		for (i = 0; i < started; i++)
			pthread_join(t[i], NULL);
		rc = l.rc;
	}
	free(lo.b);
	free(l.frontier.b);
	free(l.est_s.b);
	free(l.est_e.b);
	pthread_mutex_destroy(&l.lock);
	pthread_mutex_destroy(&l.dlock);
	pthread_cond_destroy(&l.cond);
	snprintf(v, sizeof(v), "%d", FORMAT);
	if (rc == 0)
		rc = meta_set(m, "format", v);
	if (rc == 0)
		rc = meta_set(m, "lo", m->lo);
	if (rc == 0)
		rc = meta_set(m, "hi", m->hi);
	if (rc == 0)
		rc = meta_set(m, "cluster", m->cluster);
	if (rc == 0)
		rc = meta_rev(m, l.rev);
	if (rc == 0)
		rc = meta_set(m, "complete", "1");
	if (rc == 0)
		rc = exec(m, "COMMIT");
	if (rc < 0) {
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	ustate_log(m->opts, l.n >= PROGRESS_KEYS ? LOG_NOTICE : LOG_INFO,
		   "the replica: %" PRIu64 " keys at revision %" PRIu64
		   ", loaded in %.1f s (%zu pages)",
		   l.n, l.rev, secs_since(&l.t0), l.pages);
	return go_live(m, l.rev);
}

/* A kept file: live at once if etcd is the same cluster. Thread only. */
static int resume(struct ustate_etcd_mirror *m, uint64_t rev)
{
	json_t *resp = NULL;
	char now[32];
	int rc;

	rc = probe(m, &resp);
	if (rc < 0)
		return rc;
	cluster_of(m, resp, now, sizeof(now));
	json_decref(resp);
	if (strcmp(now, m->cluster)) {
		ustate_log(m->opts, LOG_NOTICE,
			   "the replica %s is of another etcd cluster: "
			   "loading it again",
			   m->path);
		return -ESTALE;
	}
	ustate_log(m->opts, LOG_INFO,
		   "the replica %s: resuming from revision %" PRIu64, m->path,
		   rev);
	return go_live(m, rev);
}

/* ---- the watch -------------------------------------------------------- */

/* A change of connectedness, logged. */
static void set_connected(struct ustate_etcd_mirror *m, bool up,
			  const char *why)
{
	bool was;
	uint64_t rev;

	pthread_mutex_lock(&m->lock);
	was = m->connected;
	m->connected = up;
	rev = m->rev;
	pthread_mutex_unlock(&m->lock);
	if (was == up)
		return;
	if (up)
		ustate_log(m->opts, LOG_NOTICE,
			   "the replica hears etcd again, from revision "
			   "%" PRIu64,
			   rev);
	else
		ustate_log(m->opts, LOG_WARNING,
			   "the replica is cut off from etcd (%s): local "
			   "reads go on at revision %" PRIu64,
			   why, rev);
}

bool ustate_etcd_mirror_connected(struct ustate_etcd_mirror *m)
{
	bool up;

	pthread_mutex_lock(&m->lock);
	up = m->connected;
	pthread_mutex_unlock(&m->lock);
	return up;
}

/* One watch message: its events in one SQLite transaction. */
static int on_watch(void *arg, json_t *result)
{
	struct ustate_etcd_mirror *m = arg;
	json_t *evs = json_object_get(result, "events"), *ev, *kv;
	uint64_t rev, last = 0;
	size_t i;
	int rc = 0;

	if (json_is_true(json_object_get(result, "canceled")))
		return ustate_etcd_get_u64(result, "compact_revision")
			       ? -ENODATA
			       : -ECANCELED;
	/* The stream's first message (created) says the member is there. */
	set_connected(m, true, NULL);
	if (!json_array_size(evs))
		return 0;
	pthread_mutex_lock(&m->lock);
	rc = exec(m, "BEGIN");
	json_array_foreach(evs, i, ev)
	{
		if (rc < 0)
			break;
		kv = json_object_get(ev, "kv");
		rev = ustate_etcd_get_u64(kv, "mod_revision");
		/* etcd 3.4 may repeat events: never go back in time. */
		if (rev <= m->rev)
			continue;
		rc = !strcmp(json_string_value(json_object_get(ev, "type"))
				     ?: "PUT",
			     "DELETE")
			     ? del_kv(m, kv)
			     : put_kv(m, kv);
		last = rev;
	}
	if (rc == 0 && last)
		rc = meta_rev(m, last);
	if (rc == 0)
		rc = exec(m, "COMMIT");
	if (rc < 0) {
		sqlite3_exec(m->db, "ROLLBACK", NULL, NULL, NULL);
		/* A replica that cannot follow serves nothing. */
		m->ready = false;
	} else if (last) {
		m->rev = last;
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static bool stopping(struct ustate_etcd_mirror *m)
{
	bool stop;

	pthread_mutex_lock(&m->lock);
	stop = m->stopping;
	pthread_mutex_unlock(&m->lock);
	return stop;
}

/* The CLOCK_MONOTONIC time ms from now (m->cond waits on that clock). */
static struct timespec deadline(long ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	t.tv_sec += t.tv_nsec / 1000000000L;
	t.tv_nsec %= 1000000000L;
	return t;
}

/* Sleep ms, but wake for a stop. */
static void pause_ms(struct ustate_etcd_mirror *m, unsigned ms)
{
	struct timespec t = deadline(ms);

	pthread_mutex_lock(&m->lock);
	if (!m->stopping)
		pthread_cond_timedwait(&m->cond, &m->lock, &t);
	pthread_mutex_unlock(&m->lock);
}

/* An error another try may not meet: no member answered in time. */
static bool transient(int rc)
{
	return rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -ECONNREFUSED ||
	       rc == -EHOSTUNREACH || rc == -ENETUNREACH;
}

static void *mirror_main(void *arg)
{
	struct ustate_etcd_mirror *m = arg;
	unsigned backoff = 50, fails = 0;
	size_t ep = ustate_etcd_current(m->c);
	uint64_t kept = db_kept(m), from;
	struct timespec t0;
	json_t *req, *cr;
	bool ready;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!stopping(m)) {
		pthread_mutex_lock(&m->lock);
		ready = m->ready;
		from = m->rev + 1;
		pthread_mutex_unlock(&m->lock);
		if (!ready) {
			rc = kept ? resume(m, kept) : -ESTALE;
			/* (A network error keeps the file for the next try.) */
			if (rc == 0 || rc == -ESTALE)
				kept = 0;
			if (rc == -ESTALE)
				rc = load(m);
			pthread_mutex_lock(&m->lock);
			/*
			 * The open waits for the first load: a member that
			 * did not answer in time is tried again, as a call
			 * is, until request_timeout has passed.
			 */
			if (!m->tried && transient(rc) &&
			    secs_since(&t0) * 1000 < m->opts->request_timeout) {
				pthread_mutex_unlock(&m->lock);
				pause_ms(m, backoff);
				backoff = backoff < 1000 ? backoff * 2 : 1000;
				continue;
			}
			if (!m->tried) {
				m->tried = true;
				m->first_rc = rc;
				pthread_cond_broadcast(&m->cond);
			}
			pthread_mutex_unlock(&m->lock);
			if (rc < 0) {
				set_connected(m, false, strerror(-rc));
				if (!fails++)
					ustate_log(m->opts, LOG_WARNING,
						   "the replica: loading "
						   "failed (%s); reads go to "
						   "etcd until it is loaded",
						   strerror(-rc));
				pause_ms(m, backoff);
				backoff = backoff < 1000 ? backoff * 2 : 1000;
				continue;
			}
			continue;
		}
		cr = json_object();
		req = json_object();
		if (!cr || !req ||
		    json_object_set_new_nocheck(req, "create_request", cr)) {
			json_decref(req);
			pause_ms(m, backoff);
			continue;
		}
		json_object_set_new_nocheck(cr, "key", ustate_etcd_b64s(m->lo));
		json_object_set_new_nocheck(cr, "range_end",
					    ustate_etcd_b64s(m->hi));
		json_object_set_new_nocheck(cr, "start_revision",
					    ustate_etcd_u64(from));
		rc = ustate_etcd_stream_run(m->stream, ep, req, on_watch, m);
		json_decref(req);
		if (stopping(m))
			break;
		if (rc == -ENODATA) {
			ustate_log(m->opts, LOG_WARNING,
				   "the replica: etcd compacted its history "
				   "past revision %" PRIu64
				   ": loading it again (reads go to etcd "
				   "meanwhile)",
				   from);
			pthread_mutex_lock(&m->lock);
			m->ready = false;
			pthread_cond_broadcast(&m->cond);
			pthread_mutex_unlock(&m->lock);
			continue;
		}
		if (rc == -EACCES)
			ustate_etcd_authenticate(m->c);
		if (rc != 0 && rc != -EACCES)
			set_connected(m, false, strerror(-rc));
		if (rc != 0) {
			if (!fails++)
				ustate_log(m->opts, LOG_WARNING,
					   "the replica: the watch on %s "
					   "ended (%s); resuming",
					   ustate_etcd_endpoint(m->c, ep),
					   strerror(rc < 0 ? -rc : rc));
			ep = (ep + 1) % ustate_etcd_nendpoints(m->c);
			pause_ms(m, backoff);
			backoff = backoff < 1000 ? backoff * 2 : 1000;
		} else {
			fails = 0;
			backoff = 50;
		}
	}
	return NULL;
}

/* ---- opening and closing ---------------------------------------------- */

int ustate_etcd_mirror_open(struct ustate_etcd_mirror **out,
			    struct ustate_etcd_conn *c, const char *lo,
			    const char *hi, const char *path,
			    const ustate_options *opts)
{
	struct ustate_etcd_mirror *m;
	const char *dir;
	int rc, fd;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->c = c;
	m->opts = opts;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->plock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	m->lo = strdup(lo);
	m->hi = strdup(hi);
	if (path && *path) {
		m->path = strdup(path);
	} else if (m->lo) {
		/* A private file: made here, removed at close. */
		dir = getenv("TMPDIR") ?: "/var/tmp";
		m->temp = true;
		if (asprintf(&m->path, "%s/ustate-replica.XXXXXX", dir) < 0)
			m->path = NULL;
		fd = m->path ? mkstemp(m->path) : -1;
		if (m->path && fd < 0) {
			rc = -errno;
			ustate_log(opts, LOG_ERR,
				   "the replica: cannot make a file in %s: %s",
				   dir, strerror(errno));
			free(m->path);
			m->path = NULL;
			m->temp = false;
			goto fail;
		}
		if (fd >= 0)
			close(fd);
	}
	rc = m->lo && m->hi && m->path ? 0 : -ENOMEM;
	if (rc == 0)
		rc = db_open(m);
	if (rc == 0)
		rc = ustate_etcd_stream_new(&m->stream, c);
	if (rc == 0) {
		rc = -pthread_create(&m->thread, NULL, mirror_main, m);
		m->started = rc == 0;
	}
	if (rc < 0)
		goto fail;
	/* The store opens with its replica loaded, or not at all. */
	pthread_mutex_lock(&m->lock);
	while (!m->tried)
		pthread_cond_wait(&m->cond, &m->lock);
	rc = m->first_rc;
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		goto fail;
	*out = m;
	return 0;
fail:
	ustate_etcd_mirror_close(m);
	return rc;
}

void ustate_etcd_mirror_close(struct ustate_etcd_mirror *m)
{
	char *p;

	if (!m)
		return;
	if (m->started) {
		pthread_mutex_lock(&m->lock);
		m->stopping = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		ustate_etcd_stream_stop(m->stream);
		pthread_join(m->thread, NULL);
	}
	ustate_etcd_stream_free(m->stream);
	while (m->nidle--) {
		conn_close(m->idle[m->nidle]->db, m->idle[m->nidle]->st);
		free(m->idle[m->nidle]);
	}
	conn_close(m->db, m->st);
	if (m->temp) {
		unlink(m->path);
		if (asprintf(&p, "%s-wal", m->path) >= 0) {
			unlink(p);
			p[strlen(p) - 3] = 's';
			p[strlen(p) - 2] = 'h';
			p[strlen(p) - 1] = 'm';
			unlink(p);
			free(p);
		}
	}
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	pthread_mutex_destroy(&m->plock);
	free(m->path);
	free(m->lo);
	free(m->hi);
	free(m);
}

uint64_t ustate_etcd_mirror_revision(struct ustate_etcd_mirror *m)
{
	uint64_t rev;

	pthread_mutex_lock(&m->lock);
	rev = m->ready ? m->rev : 0;
	pthread_mutex_unlock(&m->lock);
	return rev;
}

/* ---- reads ------------------------------------------------------------ */

/*
 * The answer to range q at the view's revision into out: 0, -EAGAIN when
 * etcd must answer (a past revision, the file failed), -ENOMEM. "count"
 * is given for count_only and for a range answered whole; a range cut by
 * its limit says "more" only (etcd.c reads no count there, and counting
 * the rest costs a scan).
 */
static int range_run(const struct view *v, const struct ustate_etcd_range *q,
		     struct ustate_etcd_kvs *out)
{
	sqlite3_stmt *const *st = v->r->st;
	int step = SQLITE_DONE, rc = 0;
	sqlite3_stmt *s;
	uint64_t n = 0;

	if (q->revision && q->revision != v->rev)
		return -EAGAIN;
	/* range_end "\0": every key from key on. */
	if (q->elen == 1 && q->end[0] == '\0')
		s = st[q->count_only ? S_COUNT_FROM : S_FROM];
	else if (q->elen)
		s = st[q->count_only ? S_COUNT_RANGE : S_RANGE];
	else
		s = st[q->count_only ? S_COUNT_ONE : S_ONE];
	sqlite3_bind_blob(s, 1, q->key, (int)q->klen, SQLITE_STATIC);
	if (s == st[S_RANGE] || s == st[S_COUNT_RANGE])
		sqlite3_bind_blob(s, 2, q->end, (int)q->elen, SQLITE_STATIC);
	if (s == st[S_FROM] || s == st[S_RANGE])
		sqlite3_bind_int64(s, 3, q->limit ? (int64_t)q->limit + 1 : -1);
	while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
		if (q->count_only) {
			out->count = (uint64_t)sqlite3_column_int64(s, 0);
			continue;
		}
		if (q->limit && n == q->limit) {
			out->more = true;
			break;
		}
		rc = ustate_etcd_kvs_add(
			out, sqlite3_column_blob(s, 0),
			(size_t)sqlite3_column_bytes(s, 0),
			q->keys_only ? NULL : sqlite3_column_blob(s, 1),
			q->keys_only ? 0 : (size_t)sqlite3_column_bytes(s, 1),
			(uint64_t)sqlite3_column_int64(s, 2),
			(uint64_t)sqlite3_column_int64(s, 3),
			(uint64_t)sqlite3_column_int64(s, 4),
			sqlite3_column_int64(s, 5));
		n++;
	}
	if (rc == 0 && !out->more && step != SQLITE_DONE)
		rc = -EAGAIN; /* the file failed: etcd answers */
	sqlite3_reset(s);
	if (rc == 0 && !q->count_only && !out->more)
		out->count = n;
	return rc;
}

/* A JSON range's response at the view's revision, or NULL with *rc. */
static json_t *range(const struct view *v, json_t *r, int *rc)
{
	struct ustate_etcd_kvs kvs = {0};
	struct ustate_etcd_range q;
	json_t *resp = NULL;
	char *k, *end;

	*rc = ustate_etcd_range_parse(r, &q, &k, &end);
	if (*rc == -EINVAL)
		*rc = -EAGAIN;
	if (*rc == 0)
		*rc = range_run(v, &q, &kvs);
	if (*rc == 0) {
		resp = ustate_etcd_kvs_json(&kvs, v->m->cluster, v->rev);
		*rc = resp ? 0 : -ENOMEM;
	}
	ustate_etcd_kvs_clear(&kvs);
	free(k);
	free(end);
	return resp;
}

static json_t *header(const struct view *v)
{
	json_t *h = json_object();

	if (h) {
		json_object_set_new_nocheck(h, "cluster_id",
					    json_string(v->m->cluster));
		json_object_set_new_nocheck(h, "revision",
					    ustate_etcd_u64(v->rev));
	}
	return h;
}

/* A Txn of ranges only, no compare: its response, or NULL with *rc. */
static json_t *txn(const struct view *v, json_t *req, int *rc)
{
	json_t *ops = json_object_get(req, "success"), *op, *r, *rs, *resp;
	json_t *cmp = json_object_get(req, "compare");
	size_t i;

	*rc = -EAGAIN;
	if (!json_is_array(ops) || (cmp && json_array_size(cmp)))
		return NULL;
	resp = json_object();
	rs = json_array();
	*rc = resp && rs ? 0 : -ENOMEM;
	json_array_foreach(ops, i, op)
	{
		if (*rc < 0)
			break;
		r = json_object_get(op, "request_range");
		if (!r || json_object_size(op) != 1) {
			*rc = -EAGAIN;
			break;
		}
		r = range(v, r, rc);
		if (r)
			*rc = json_array_append_new(
				      rs,
				      json_pack("{s:o}", "response_range", r))
				      ? -ENOMEM
				      : 0;
	}
	if (*rc < 0) {
		json_decref(rs);
		json_decref(resp);
		return NULL;
	}
	json_object_set_new_nocheck(resp, "header", header(v));
	json_object_set_new_nocheck(resp, "succeeded", json_true());
	json_object_set_new_nocheck(resp, "responses", rs);
	return resp;
}

/* An idle reading connection, or a new one; NULL when none can be made. */
static struct reader *reader_get(struct ustate_etcd_mirror *m)
{
	struct reader *r = NULL;

	pthread_mutex_lock(&m->plock);
	if (m->nidle)
		r = m->idle[--m->nidle];
	pthread_mutex_unlock(&m->plock);
	if (r)
		return r;
	r = calloc(1, sizeof(*r));
	if (r && conn_open(m, &r->db, r->st, NULL) < 0) {
		conn_close(r->db, r->st);
		free(r);
		r = NULL;
	}
	return r;
}

static void reader_put(struct ustate_etcd_mirror *m, struct reader *r)
{
	pthread_mutex_lock(&m->plock);
	if (m->nidle < READERS) {
		m->idle[m->nidle++] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&m->plock);
	if (r) {
		conn_close(r->db, r->st);
		free(r);
	}
}

static void view_end(struct view *v);

/* Run statement i of r alone: 0, or -EAGAIN when it failed. */
static int run1(struct reader *r, int i)
{
	int rc = sqlite3_step(r->st[i]);

	sqlite3_reset(r->st[i]);
	return rc == SQLITE_DONE ? 0 : -EAGAIN;
}

/*
 * A snapshot of the file into v, at its own revision, once the replica
 * reached need (waiting up to wait_ms): 0, or -EAGAIN. The watch may have
 * moved it past need meanwhile: newer is as good. Readers run side by
 * side, and beside the watch's writes (WAL). view_end() ends it.
 */
static int view_begin(struct ustate_etcd_mirror *m, uint64_t need, long wait_ms,
		      struct view *v)
{
	struct timespec t;
	sqlite3_stmt *s;
	int rc = 0;

	*v = (struct view){.m = m};
	t = deadline(wait_ms);
	pthread_mutex_lock(&m->lock);
	while (m->ready && m->rev < need && rc == 0)
		rc = pthread_cond_timedwait(&m->cond, &m->lock, &t);
	rc = m->ready && m->rev >= need ? 0 : -EAGAIN;
	pthread_mutex_unlock(&m->lock);
	if (rc < 0)
		return rc;
	v->r = reader_get(m);
	if (!v->r)
		return -EAGAIN;
	rc = run1(v->r, S_BEGIN);
	s = v->r->st[S_REV];
	if (rc == 0 && sqlite3_step(s) == SQLITE_ROW)
		v->rev = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc == 0 && v->rev < need)
		rc = -EAGAIN; /* a load again began since */
	if (rc < 0) {
		view_end(v);
		return rc;
	}
	return 0;
}

static void view_end(struct view *v)
{
	if (!v->r)
		return;
	if (run1(v->r, S_COMMIT) < 0)
		sqlite3_exec(v->r->db, "ROLLBACK", NULL, NULL, NULL);
	reader_put(v->m, v->r);
	v->r = NULL;
}

int ustate_etcd_mirror_read(struct ustate_etcd_mirror *m, const char *path,
			    json_t *req, uint64_t need, long wait_ms,
			    json_t **out)
{
	struct view v;
	int rc;

	rc = view_begin(m, need, wait_ms, &v);
	if (rc < 0)
		return rc;
	if (!strcmp(path, "/v3/kv/range"))
		*out = range(&v, req, &rc);
	else if (!strcmp(path, "/v3/kv/txn"))
		*out = txn(&v, req, &rc);
	else
		rc = -EAGAIN;
	view_end(&v);
	return rc;
}

int ustate_etcd_mirror_ranges(struct ustate_etcd_mirror *m,
			      const struct ustate_etcd_range *rs, size_t n,
			      uint64_t need, long wait_ms,
			      struct ustate_etcd_ranges **out)
{
	struct ustate_etcd_ranges *res;
	struct view v;
	size_t i;
	int rc;

	res = ustate_etcd_ranges_new(n);
	if (!res)
		return -ENOMEM;
	rc = view_begin(m, need, wait_ms, &v);
	for (i = 0; rc == 0 && i < n; i++)
		rc = range_run(&v, &rs[i], &res->r[i]);
	res->revision = v.rev;
	view_end(&v);
	if (rc < 0) {
		ustate_etcd_ranges_free(res);
		return rc;
	}
	*out = res;
	return 0;
}
