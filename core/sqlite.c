/* SPDX-License-Identifier: MIT */
/*
 * This file implements the SQLite backend: the kv_store table of the Rust
 * univrs-state, unchanged, plus tables of our own (ustate_state,
 * ustate_keyrev, ustate_history) that triggers on kv_store keep up to
 * date. Because triggers do the bookkeeping, a write by any program on the
 * same file (another process of ours, the Rust crate, the sqlite3 shell)
 * gets a revision and reaches watchers.
 *
 * Revisions: ustate_state.revision counts commits. A trigger bumps it for
 * each changed row unless ustate_state.pending is set, which our own
 * multi-key transactions do (inside their write transaction, so no other
 * connection ever sees it set) to give all their rows one revision.
 * A history row's id is (revision << 20) + its position in the revision,
 * so ids are ordered like changes and a revision is a range of ids.
 *
 * Connections: one writer, guarded by a mutex, and a pool of readers (WAL
 * lets them read while the writer commits). Every statement is prepared
 * once per connection; no SQLite code leaves this file (sq_errno()).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_i.h"

#define SEQ_BITS 20 /* changes one revision may hold: 2^20 */
#define BUSY_TIMEOUT_MS 5000

enum {
	ST_GET,
	ST_VERSION,
	ST_SCAN_KEYS_GE,
	ST_SCAN_KEYS_GT,
	ST_SCAN_DIRS_GE,
	ST_SCAN_DIRS_GT,
	ST_STATE,
	ST_HISTORY,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_PENDING_ON,
	ST_PENDING_OFF,
	ST_UPSERT,
	ST_INSERT,
	ST_DELETE,
	ST_TRIM,
	ST_TRIMMED,
	ST_MKDIR,
	ST_RMDIR,
	ST_CHILDREN,
	ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
	[ST_GET] = "SELECT k.value, k.version, k.created_at, k.updated_at, "
		   "r.mod_revision FROM kv_store k LEFT JOIN ustate_keyrev r "
		   "ON r.key = k.key WHERE k.key = ?1",
	[ST_VERSION] = "SELECT version FROM kv_store WHERE key = ?1",
	/* ?1 is the lower bound, ?2 the prefix + 0xff upper bound. */
	[ST_SCAN_KEYS_GE] = "SELECT key FROM kv_store WHERE key >= ?1 AND "
			    "key < ?2 ORDER BY key LIMIT ?3",
	[ST_SCAN_KEYS_GT] = "SELECT key FROM kv_store WHERE key > ?1 AND "
			    "key < ?2 ORDER BY key LIMIT ?3",
	[ST_SCAN_DIRS_GE] = "SELECT path FROM ustate_dirs WHERE path >= ?1 "
			    "AND path < ?2 ORDER BY path LIMIT ?3",
	[ST_SCAN_DIRS_GT] = "SELECT path FROM ustate_dirs WHERE path > ?1 "
			    "AND path < ?2 ORDER BY path LIMIT ?3",
	[ST_STATE] = "SELECT revision, compacted FROM ustate_state",
	[ST_HISTORY] = "SELECT id >> 20, type, key, version FROM "
		       "ustate_history WHERE id >= ?1 ORDER BY id LIMIT ?2",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PENDING_ON] = "UPDATE ustate_state SET revision = revision + 1, "
			  "pending = 1",
	[ST_PENDING_OFF] = "UPDATE ustate_state SET pending = 0",
	[ST_UPSERT] = "INSERT INTO kv_store(key, value, version, created_at, "
		      "updated_at) VALUES (?1, ?2, 1, ?3, ?3) "
		      "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
		      "version = version + 1, updated_at = excluded.updated_at "
		      "RETURNING version",
	[ST_INSERT] = "INSERT INTO kv_store(key, value, version, created_at, "
		      "updated_at) VALUES (?1, ?2, 1, ?3, ?3) "
		      "ON CONFLICT(key) DO NOTHING RETURNING version",
	[ST_DELETE] = "DELETE FROM kv_store WHERE key = ?1 RETURNING version",
	[ST_TRIM] = "DELETE FROM ustate_history WHERE id < ?1",
	[ST_TRIMMED] = "UPDATE ustate_state SET compacted = ?1",
	[ST_MKDIR] =
		"INSERT INTO ustate_dirs VALUES (?1) ON CONFLICT DO NOTHING",
	[ST_RMDIR] = "DELETE FROM ustate_dirs WHERE path = ?1",
	/* ?1 is key + "/", ?2 key + "/" + 0xff: the keys below key. */
	[ST_CHILDREN] = "SELECT count(*) FROM kv_store WHERE key >= ?1 AND "
			"key < ?2",
};

/*
 * The schema. kv_store and its index are those of the Rust univrs-state,
 * byte for byte; everything else is ours. The history expression gives a
 * change the next id inside its revision (the first, when the row is a
 * revision of its own). Trigger bodies use UPSERT, not
 * INSERT OR REPLACE, whose conflict policy an outer statement overrides.
 */
#define HISTORY_ID                                                             \
	"CASE WHEN s.pending = 0 THEN s.revision << 20 ELSE coalesce("         \
	"(SELECT max(h.id) + 1 FROM ustate_history h WHERE h.id >= "           \
	"s.revision << 20), s.revision << 20) END"

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS kv_store ("
	" key TEXT PRIMARY KEY NOT NULL,"
	" value BLOB NOT NULL,"
	" version INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" updated_at INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS idx_kv_store_prefix ON kv_store(key);"
	"CREATE TABLE ustate_state ("
	" id INTEGER PRIMARY KEY CHECK (id = 0),"
	" revision INTEGER NOT NULL,"
	" pending INTEGER NOT NULL,"
	" compacted INTEGER NOT NULL);"
	"CREATE TABLE ustate_keyrev ("
	" key TEXT PRIMARY KEY NOT NULL,"
	" mod_revision INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE ustate_dirs ("
	" path TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE ustate_history ("
	" id INTEGER PRIMARY KEY,"
	" type INTEGER NOT NULL,"
	" key TEXT NOT NULL,"
	" version INTEGER NOT NULL);"
	/* Keys written before our tables existed count as revision 1. */
	"INSERT INTO ustate_state VALUES (0,"
	" (SELECT count(*) > 0 FROM kv_store), 0,"
	" (SELECT count(*) > 0 FROM kv_store));"
	"INSERT INTO ustate_keyrev SELECT key, 1 FROM kv_store;"
	"CREATE TRIGGER ustate_kv_insert AFTER INSERT ON kv_store BEGIN"
	" UPDATE ustate_state SET revision = revision + 1 WHERE pending = 0;"
	" INSERT INTO ustate_history SELECT " HISTORY_ID ", 1, NEW.key,"
	"  NEW.version FROM ustate_state s;"
	" INSERT INTO ustate_keyrev SELECT NEW.key, revision FROM ustate_state"
	"  WHERE true ON CONFLICT(key) DO UPDATE"
	"  SET mod_revision = excluded.mod_revision;"
	" END;"
	"CREATE TRIGGER ustate_kv_update AFTER UPDATE ON kv_store BEGIN"
	" UPDATE ustate_state SET revision = revision + 1 WHERE pending = 0;"
	/* An outside UPDATE may rename a key: the old one is then gone. */
	" INSERT INTO ustate_history SELECT " HISTORY_ID ", 3, OLD.key, 0"
	"  FROM ustate_state s WHERE OLD.key IS NOT NEW.key;"
	" DELETE FROM ustate_keyrev WHERE key = OLD.key"
	"  AND OLD.key IS NOT NEW.key;"
	" INSERT INTO ustate_history SELECT " HISTORY_ID ","
	"  CASE WHEN OLD.key IS NEW.key THEN 2 ELSE 1 END, NEW.key,"
	"  NEW.version FROM ustate_state s;"
	" INSERT INTO ustate_keyrev SELECT NEW.key, revision FROM ustate_state"
	"  WHERE true ON CONFLICT(key) DO UPDATE"
	"  SET mod_revision = excluded.mod_revision;"
	" END;"
	"CREATE TRIGGER ustate_kv_delete AFTER DELETE ON kv_store BEGIN"
	" UPDATE ustate_state SET revision = revision + 1 WHERE pending = 0;"
	" INSERT INTO ustate_history SELECT " HISTORY_ID ", 3, OLD.key, 0"
	"  FROM ustate_state s;"
	" DELETE FROM ustate_keyrev WHERE key = OLD.key;"
	" END;";

struct conn {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	struct conn *next; /* in the free list, protected by sq->plock */
};

struct sq {
	char *path;
	ustate_options opts;
	pthread_mutex_t wlock;
	struct conn *writer; /* protected by wlock */
	pthread_mutex_t plock;
	struct conn *readers; /* free readers, protected by plock */
	unsigned lone_writes; /* protected by wlock */
};

/*
 * The one place where SQLite result codes become errno values. The OS
 * error behind an I/O or open failure is passed up when SQLite kept it.
 */
static int sq_errno(sqlite3 *db, int rc)
{
	int sys;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_TOOBIG:
		return -EFBIG;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_INTERRUPT:
		return -EINTR;
	case SQLITE_CANTOPEN:
		sys = db ? sqlite3_system_errno(db) : 0;
		return sys ? -sys : -EACCES;
	case SQLITE_IOERR:
		if (rc == SQLITE_IOERR_NOMEM)
			return -ENOMEM;
		sys = db ? sqlite3_system_errno(db) : 0;
		return sys == ENOSPC || sys == EDQUOT ? -ENOSPC : -EIO;
	default:
		return -EIO;
	}
}

static void conn_close(struct conn *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close_v2(c->db);
	free(c);
}

/* The prepared statement i of c, reset and ready to bind. */
static int stmt(struct conn *c, int i, sqlite3_stmt **out)
{
	int rc;

	if (!c->st[i]) {
		rc = sqlite3_prepare_v3(c->db, sql_text[i], -1,
					SQLITE_PREPARE_PERSISTENT, &c->st[i],
					NULL);
		if (rc != SQLITE_OK)
			return sq_errno(c->db, rc);
	}
	*out = c->st[i];
	return 0;
}

/* Finish with a statement: its read snapshot must not outlive the call. */
static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Run a statement that returns no row (or ignore its rows). */
static int exec1(struct conn *c, int i)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, i, &st);
	if (rc < 0)
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

static int conn_open(struct sq *q, struct conn **out)
{
	static const char *const sync_pragma[] = {
		[USTATE_SYNC_FULL] = "PRAGMA synchronous = FULL",
		[USTATE_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
		[USTATE_SYNC_OFF] = "PRAGMA synchronous = OFF",
	};
	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
	struct conn *c;
	int rc;

	flags |= q->opts.read_only ? SQLITE_OPEN_READONLY
				   : SQLITE_OPEN_READWRITE;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	rc = sqlite3_open_v2(q->path, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_errno(c->db, rc);
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_exec(c->db, sync_pragma[q->opts.sync], NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_errno(c->db, rc);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	conn_close(c);
	return rc;
}

/* Whether our tables exist; a missing kv_store is created with them. */
static int schema_present(struct conn *c, bool *present)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(c->db,
				"SELECT 1 FROM sqlite_master WHERE type = "
				"'table' AND name = 'ustate_state'",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(c->db, rc);
	rc = sqlite3_step(st);
	*present = rc == SQLITE_ROW;
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	sqlite3_finalize(st);
	return rc;
}

static int schema_setup(struct conn *c)
{
	bool present;
	int rc;

	rc = sqlite3_exec(c->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(c->db, rc);
	rc = schema_present(c, &present);
	if (rc < 0 || present)
		return rc;
	/* Two processes may race to create it: decide under the lock. */
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		return rc;
	rc = schema_present(c, &present);
	if (rc == 0 && !present) {
		rc = sqlite3_exec(c->db, schema_sql, NULL, NULL, NULL);
		rc = sq_errno(c->db, rc);
	}
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Create a missing database file with mode 0600 before SQLite opens it. */
static int file_create(const char *path)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : -errno;
	close(fd);
	return 0;
}

static struct conn *reader_get(struct sq *q, int *rc)
{
	struct conn *c;

	pthread_mutex_lock(&q->plock);
	c = q->readers;
	if (c)
		q->readers = c->next;
	pthread_mutex_unlock(&q->plock);
	*rc = 0;
	if (!c)
		*rc = conn_open(q, &c);
	return c;
}

static void reader_put(struct sq *q, struct conn *c)
{
	pthread_mutex_lock(&q->plock);
	c->next = q->readers;
	q->readers = c;
	pthread_mutex_unlock(&q->plock);
}

static void sq_close(void *b)
{
	struct sq *q = b;
	struct conn *c;

	if (!q)
		return;
	while ((c = q->readers)) {
		q->readers = c->next;
		conn_close(c);
	}
	conn_close(q->writer);
	pthread_mutex_destroy(&q->wlock);
	pthread_mutex_destroy(&q->plock);
	free(q->path);
	free(q);
}

static int sq_get(void *b, const char *key, ustate_entry **out)
{
	struct sq *q = b;
	sqlite3_stmt *st = NULL;
	ustate_entry *e;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = stmt(c, ST_GET, &st);
	if (rc < 0)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else if (rc != SQLITE_ROW) {
		rc = sq_errno(c->db, rc);
	} else {
		e = ustate_entry_new(key, sqlite3_column_blob(st, 0),
				     sqlite3_column_bytes(st, 0));
		if (e) {
			e->version = sqlite3_column_int64(st, 1);
			e->created_at = sqlite3_column_int64(st, 2);
			e->updated_at = sqlite3_column_int64(st, 3);
			e->mod_revision = sqlite3_column_int64(st, 4);
			*out = e;
		}
		rc = e ? 0 : -ENOMEM;
	}
	done(st);
out:
	reader_put(q, c);
	return rc;
}

/* The version of key on connection c (0 when absent). */
static int version_on(struct conn *c, const char *key, uint64_t *version)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, ST_VERSION, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*version = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* The number of keys below key on connection c. */
static int children_on(struct conn *c, const char *key, uint64_t *count)
{
	char lo[USTATE_KEY_MAX + 3];
	size_t len = strlen(key);
	sqlite3_stmt *st = NULL;
	int rc;

	memcpy(lo, key, len);
	lo[len] = '/';
	lo[len + 1] = (char)0xff;
	rc = stmt(c, ST_CHILDREN, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, lo, len + 1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, lo, len + 2, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*count = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	rc = rc == SQLITE_ROW ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

static int sq_version(void *b, const char *key, uint64_t *version)
{
	struct sq *q = b;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = version_on(c, key, version);
	reader_put(q, c);
	return rc;
}

static int sq_scan(void *b, int set, const char *prefix, const char *after,
		   size_t max, char ***names, size_t *n)
{
	char upper[USTATE_KEY_MAX + 2], **v = NULL, **grown;
	size_t len = strlen(prefix), cap = 0, cnt = 0;
	bool gt = after && strcmp(after, prefix) >= 0;
	struct sq *q = b;
	sqlite3_stmt *st = NULL;
	struct conn *c;
	int rc;

	/* Names are UTF-8, which never holds 0xff: prefix + 0xff is past all.
	 */
	memcpy(upper, prefix, len);
	upper[len] = (char)0xff;
	c = reader_get(q, &rc);
	if (!c)
		return rc;
	if (set == USTATE_SCAN_KEYS)
		rc = stmt(c, gt ? ST_SCAN_KEYS_GT : ST_SCAN_KEYS_GE, &st);
	else
		rc = stmt(c, gt ? ST_SCAN_DIRS_GT : ST_SCAN_DIRS_GE, &st);
	if (rc < 0)
		goto out;
	sqlite3_bind_text(st, 1, gt ? after : prefix, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, upper, len + 1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(v, cap * sizeof(*v));
			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			v = grown;
		}
		v[cnt] = strdup((const char *)sqlite3_column_text(st, 0));
		if (!v[cnt]) {
			rc = -ENOMEM;
			break;
		}
		cnt++;
	}
	rc = rc == SQLITE_DONE ? 0 : rc < 0 ? rc : sq_errno(c->db, rc);
	done(st);
out:
	reader_put(q, c);
	if (rc < 0) {
		ustate_list_free(v, cnt);
		return rc;
	}
	*names = v;
	*n = cnt;
	return 0;
}

static int state_on(struct conn *c, uint64_t *rev, uint64_t *compacted)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, ST_STATE, &st);
	if (rc < 0)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*rev = sqlite3_column_int64(st, 0);
		*compacted = sqlite3_column_int64(st, 1);
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -EUCLEAN : sq_errno(c->db, rc);
	}
	done(st);
	return rc;
}

static int sq_revision(void *b, uint64_t *rev)
{
	struct sq *q = b;
	uint64_t compacted;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = state_on(c, rev, &compacted);
	reader_put(q, c);
	return rc;
}

static int sq_history(void *b, uint64_t from, size_t skip, size_t max,
		      struct ustate_change **out, size_t *n, uint64_t *oldest)
{
	struct ustate_change *v = NULL;
	uint64_t rev, compacted = 0;
	struct sq *q = b;
	sqlite3_stmt *st = NULL;
	struct conn *c;
	size_t cnt = 0;
	int rc;

	*out = NULL;
	*n = 0;
	c = reader_get(q, &rc);
	if (!c)
		return rc;
	/* One read transaction, so the trim point and the rows agree. */
	rc = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_errno(c->db, rc);
		goto out;
	}
	rc = state_on(c, &rev, &compacted);
	if (rc < 0 || max == 0)
		goto end;
	v = calloc(max < 256 ? max : 256, sizeof(*v));
	rc = stmt(c, ST_HISTORY, &st);
	if (!v || rc < 0) {
		rc = v ? rc : -ENOMEM;
		goto end;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)((from << SEQ_BITS) + skip));
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt && cnt % 256 == 0) {
			struct ustate_change *grown;

			grown = realloc(v, (cnt + 256) * sizeof(*v));
			if (!grown) {
				rc = -ENOMEM;
				break;
			}
			v = grown;
		}
		v[cnt].revision = sqlite3_column_int64(st, 0);
		v[cnt].type = sqlite3_column_int(st, 1);
		v[cnt].version = sqlite3_column_int64(st, 3);
		v[cnt].key = strdup((const char *)sqlite3_column_text(st, 2));
		if (!v[cnt].key) {
			rc = -ENOMEM;
			break;
		}
		cnt++;
	}
	rc = rc == SQLITE_DONE ? 0 : rc < 0 ? rc : sq_errno(c->db, rc);
	done(st);
end:
	*oldest = compacted + 1;
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
out:
	reader_put(q, c);
	if (rc < 0) {
		ustate_changes_free(v, cnt);
		return rc;
	}
	if (cnt) {
		*out = v;
		*n = cnt;
	} else {
		free(v);
	}
	return 0;
}

/* Bind a value; SQLite binds a NULL pointer as NULL, so "" for empty. */
static void bind_value(sqlite3_stmt *st, int i, const void *val, size_t len)
{
	sqlite3_bind_blob64(st, i, len ? val : "", len, SQLITE_STATIC);
}

/* Run a write statement that returns the key's version, 0 when no row. */
static int write_step(struct conn *c, int i, const ustate_op *op, int64_t now,
		      uint64_t *version)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, i, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	if (i != ST_DELETE) {
		bind_value(st, 2, op->value, op->value_len);
		sqlite3_bind_int64(st, 3, now);
	}
	rc = sqlite3_step(st);
	*version = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	if (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Drop history older than the retained window, with some slack. */
static int trim(struct sq *q, struct conn *c, uint64_t rev, uint64_t compacted)
{
	uint64_t keep = q->opts.history, slack = keep / 8 + 16;
	sqlite3_stmt *st = NULL;
	int rc;

	if (rev <= compacted + keep + slack)
		return 0;
	rc = stmt(c, ST_TRIM, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1,
			   (sqlite3_int64)((rev - keep + 1) << SEQ_BITS));
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	if (rc < 0)
		return rc;
	rc = stmt(c, ST_TRIMMED, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(rev - keep));
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Apply one write op; on failure res->found tells what the key held. */
static int apply_op(struct conn *c, const ustate_op *op, int64_t now,
		    uint64_t *v, ustate_txn_result *res)
{
	sqlite3_stmt *st = NULL;
	int rc;

	switch (op->type) {
	case USTATE_OP_SET:
		return write_step(c, ST_UPSERT, op, now, v);
	case USTATE_OP_CREATE:
		rc = write_step(c, ST_INSERT, op, now, v);
		if (rc == 0 && *v == 0) {
			rc = version_on(c, op->key, &res->found);
			rc = rc < 0 ? rc : -EEXIST;
		}
		return rc;
	case USTATE_OP_DELETE:
		rc = write_step(c, ST_DELETE, op, now, v);
		if (rc == 0 && *v == 0) {
			res->found = 0;
			rc = -ENOENT;
		}
		*v = 0;
		return rc;
	case USTATE_OP_MKDIR:
	case USTATE_OP_RMDIR:
		rc = stmt(c, op->type == USTATE_OP_MKDIR ? ST_MKDIR : ST_RMDIR,
			  &st);
		if (rc < 0)
			return rc;
		sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
		done(st);
		*v = 0;
		return rc;
	default:
		return -EINVAL;
	}
}

/* The body of sq_txn(), run inside BEGIN IMMEDIATE on the writer. */
static int txn_apply(struct sq *q, struct conn *c, const ustate_op *ops,
		     size_t n, ustate_txn_result *res)
{
	int64_t now = time(NULL);
	uint64_t v, compacted;
	size_t i, writes = 0;
	int rc;

	for (i = 0; i < n; i++) {
		if (!ustate_op_is_check(ops[i].type)) {
			/* Directory records are no change of the key space. */
			writes += ops[i].type != USTATE_OP_MKDIR &&
				  ops[i].type != USTATE_OP_RMDIR;
			continue;
		}
		if (ops[i].type == USTATE_OP_CHECK_CHILDREN)
			rc = children_on(c, ops[i].key, &v);
		else
			rc = version_on(c, ops[i].key, &v);
		if (rc < 0)
			return rc;
		res->versions[i] = v;
		if (v != ops[i].version) {
			res->failed = i;
			res->found = v;
			return -ECANCELED;
		}
	}
	/* A single write gets its revision from the trigger. */
	if (writes > 1) {
		rc = exec1(c, ST_PENDING_ON);
		if (rc < 0)
			return rc;
	}
	for (i = 0; i < n; i++) {
		if (ustate_op_is_check(ops[i].type))
			continue;
		rc = apply_op(c, &ops[i], now, &v, res);
		if (rc < 0) {
			res->failed = i;
			return rc;
		}
		res->versions[i] = v;
	}
	if (writes > 1) {
		rc = exec1(c, ST_PENDING_OFF);
		if (rc < 0)
			return rc;
	}
	rc = state_on(c, &res->revision, &compacted);
	if (rc == 0 && writes)
		rc = trim(q, c, res->revision, compacted);
	return rc;
}

/*
 * A lone write whose caller needs no revision is one statement in
 * autocommit mode: atomic by itself, and half the statements of a full
 * transaction. The history is trimmed every trim_every() such writes.
 */
static unsigned trim_every(const struct sq *q)
{
	uint64_t slack = q->opts.history / 8 + 16;

	return slack < 1024 ? (unsigned)slack : 1024;
}

static int txn_single(struct sq *q, struct conn *c, const ustate_op *op,
		      ustate_txn_result *res)
{
	uint64_t rev, compacted;
	int rc;

	rc = apply_op(c, op, time(NULL), &res->versions[0], res);
	if (rc < 0 || ++q->lone_writes < trim_every(q))
		return rc;
	q->lone_writes = 0;
	if (exec1(c, ST_BEGIN) < 0)
		return 0;
	if (state_on(c, &rev, &compacted) < 0 ||
	    trim(q, c, rev, compacted) < 0 || exec1(c, ST_COMMIT) < 0)
		exec1(c, ST_ROLLBACK);
	return 0;
}

static int sq_txn(void *b, const ustate_op *ops, size_t n,
		  ustate_txn_result *res, unsigned flags)
{
	struct sq *q = b;
	struct conn *c;
	uint64_t compacted;
	int rc;

	pthread_mutex_lock(&q->wlock);
	c = q->writer;
	if (n == 1 && !ustate_op_is_check(ops[0].type) &&
	    (flags & USTATE_TXN_NO_REVISION)) {
		rc = txn_single(q, c, ops, res);
		goto out;
	}
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		goto out;
	rc = txn_apply(q, c, ops, n, res);
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0) {
		if (!sqlite3_get_autocommit(c->db))
			exec1(c, ST_ROLLBACK);
		/* On failure, tell the revision the transaction saw. */
		if (state_on(c, &res->revision, &compacted) < 0)
			res->revision = 0;
	}
out:
	pthread_mutex_unlock(&q->wlock);
	return rc;
}

static const struct ustate_backend_ops sqlite_ops = {
	.version = USTATE_BACKEND_VERSION,
	.name = "sqlite",
	.close = sq_close,
	.get = sq_get,
	.key_version = sq_version,
	.scan = sq_scan,
	.txn = sq_txn,
	.revision = sq_revision,
	.history = sq_history,
};

int ustate_sqlite_backend_open(void **b, const struct ustate_backend_ops **ops,
			       const char *path, const ustate_options *opts)
{
	struct sq *q;
	bool present;
	int rc;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->opts = *opts;
	pthread_mutex_init(&q->wlock, NULL);
	pthread_mutex_init(&q->plock, NULL);
	/*
	 * The path is a file name, always. SQLite would make ":memory:" a
	 * private database of each connection (the readers would never see
	 * what the writer wrote) and, built with URI support as Debian's is,
	 * read "file:..." as a URI: refuse the first, and open the second as
	 * "./file:...", the file that file_create() makes.
	 */
	if (!strcmp(path, ":memory:")) {
		rc = -EINVAL;
		goto fail;
	}
	if (!strncmp(path, "file:", 5)) {
		if (asprintf(&q->path, "./%s", path) < 0)
			q->path = NULL;
	} else {
		q->path = strdup(path);
	}
	if (!q->path) {
		rc = -ENOMEM;
		goto fail;
	}
	if (!opts->read_only) {
		rc = file_create(path);
		if (rc < 0)
			goto fail;
	}
	rc = conn_open(q, &q->writer);
	if (rc < 0)
		goto fail;
	if (opts->read_only) {
		rc = schema_present(q->writer, &present);
		if (rc == 0 && !present)
			rc = -EROFS;
	} else {
		rc = schema_setup(q->writer);
	}
	if (rc < 0)
		goto fail;
	*b = q;
	*ops = &sqlite_ops;
	return 0;
fail:
	sq_close(q);
	return rc;
}
