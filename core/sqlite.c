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
 * Ownership (USTATE_OP_META, MKDIR with a value) lives in ustate_meta, one
 * row per key or directory record that has any; triggers drop the row
 * when its key or record goes, whoever removes it. A file made before
 * that table existed gets it (and the triggers) at its next writable
 * open. The times of a row (ustate_meta.flags, mtime_ns, ctime_ns) live
 * beside it in ustate_meta_times, so that ustate_meta keeps the columns
 * older libraries insert into; a key's row there holds the version the
 * key had when its mtime was set (pin), and the mtime holds while the
 * key is still at that version, whoever writes it next. Extended
 * attributes live in ustate_xattrs, a row per name, tied to their key or
 * record by triggers as the metadata is.
 *
 * Leases live in ustate_leases and ustate_lease_keys (see lease_sql):
 * triggers detach a key that any program writes without attaching it,
 * and every lease write, or expiry, runs under the writer with the
 * overdue leases ended first in the same transaction, each in one
 * revision of its own.
 *
 * Connections: one writer, guarded by a mutex, and a pool of readers (WAL
 * lets them read while the writer commits). Every statement is prepared
 * once per connection; no SQLite code leaves this file (sq_errno()).
 *
 * Processes: the writer takes turns with those of other libustate
 * processes on the same file (sqlite_turns.c), from its BEGIN to the end
 * of its COMMIT (the WAL hook), and leaves pauses for programs outside
 * libustate while one has the file open (pace()).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "backend_i.h"
#include "sqlite_turns_i.h"

#define SEQ_BITS 20 /* changes one revision may hold: 2^20 */
#define BUSY_TIMEOUT_MS 5000

/*
 * Pauses for writers outside libustate (see pace()): while one has the
 * file open, the write lock is left free GAP_WATCH times as long as it was
 * held (a fifth of the time), GAP_SERVE times (a third) for SERVE_NS after
 * a commit of another connection was seen, at least GAP_MIN_NS (shorter
 * pauses add up until they reach it) and at most GAP_MAX_NS at once;
 * whether one has the file open is looked up every LOOK_NS at most.
 */
#define GAP_WATCH 0.25
#define GAP_SERVE 0.5
#define SERVE_NS 1000000000ull
#define GAP_MIN_NS 1000000ull
#define GAP_MAX_NS 100000000ull
#define LOOK_NS 100000000ull
#define LOOK_IDLE_NS 10000000000ull /* with nothing opened: see look_due() */
#define WAL_CHECKPOINT_PAGES 1000   /* SQLite's default autocheckpoint */

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
	ST_BEGIN_READ,
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
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_EXPORT_KEYS,
	ST_EXPORT_DIRS,
	ST_NONEMPTY,
	ST_PENDING_SET,
	ST_REVISION_BACK,
	ST_RESTORE_PUT,
	ST_META_GET,
	ST_META_GET_TIMES,
	ST_META_SET,
	ST_META_DROP,
	ST_TIMES_SET,
	ST_TIMES_DROP,
	ST_XATTR_SET,
	ST_XATTR_DROP,
	ST_XATTRS_GET,
	ST_DIR_EXISTS,
	ST_META_DROP_DIR,
	ST_XATTRS_DROP,
	ST_NODE,
	ST_GET_L,
	ST_NODE_L,
	ST_LEASE_ALIVE,
	ST_LEASE_ATTACH,
	ST_LEASE_UPSERT,
	ST_LEASE_TOUCH,
	ST_LEASE_GET,
	ST_LEASE_KEYS,
	ST_LEASE_LIST,
	ST_LEASE_DUE,
	ST_LEASE_NEXT,
	ST_LEASE_DEL_KEYS,
	ST_LEASE_DROP,
	ST_LEASE_GET_OWNED,
	ST_LEASE_OWNER,
	ST_LEASE_OWN,
	ST_LEASE_DISOWN,
	ST_LEASE_DETACH,
	ST_EXPORT_KEYS_L,
	ST_EXPORT_LEASES,
	ST_EXPORT_LEASES_O,
	ST_DATA_VERSION,
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
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_PENDING_ON] = "UPDATE ustate_state SET revision = revision + 1, "
			  "pending = 1",
	[ST_PENDING_OFF] = "UPDATE ustate_state SET pending = 0",
	[ST_UPSERT] = "INSERT INTO kv_store(key, value, version, created_at, "
		      "updated_at) VALUES (?1, ?2, 1, ?3, ?3) "
		      "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
		      "version = version + 1, updated_at = excluded.updated_at",
	[ST_INSERT] = "INSERT INTO kv_store(key, value, version, created_at, "
		      "updated_at) VALUES (?1, ?2, 1, ?3, ?3) "
		      "ON CONFLICT(key) DO NOTHING",
	[ST_DELETE] = "DELETE FROM kv_store WHERE key = ?1 RETURNING version",
	[ST_TRIM] = "DELETE FROM ustate_history WHERE id < ?1",
	[ST_TRIMMED] = "UPDATE ustate_state SET compacted = ?1",
	[ST_MKDIR] =
		"INSERT INTO ustate_dirs VALUES (?1) ON CONFLICT DO NOTHING",
	[ST_RMDIR] = "DELETE FROM ustate_dirs WHERE path = ?1",
	/* ?1 is key + "/", ?2 key + "/" + 0xff: the keys below key. */
	[ST_CHILDREN] = "SELECT count(*) FROM kv_store WHERE key >= ?1 AND "
			"key < ?2",
	[ST_SAVEPOINT] = "SAVEPOINT ustate_group",
	[ST_RELEASE] = "RELEASE ustate_group",
	[ST_ROLLBACK_TO] = "ROLLBACK TO ustate_group",
	[ST_META_GET] = "SELECT uid, gid, mode FROM ustate_meta WHERE "
			"path = ?1 AND dir = ?2",
	[ST_META_SET] = "INSERT INTO ustate_meta VALUES (?1, ?2, ?3, ?4, ?5) "
			"ON CONFLICT(path, dir) DO UPDATE SET "
			"uid = excluded.uid, gid = excluded.gid, "
			"mode = excluded.mode",
	[ST_META_DROP] = "DELETE FROM ustate_meta WHERE path = ?1 AND dir = 0",
	[ST_META_GET_TIMES] =
		"SELECT m.uid, m.gid, m.mode, t.flags, t.mtime, t.ctime,"
		" CASE WHEN ?2 OR t.pin IS NULL OR t.flags & 1 = 0 THEN 1"
		" ELSE t.pin IS (SELECT version FROM kv_store WHERE key = ?1)"
		" END"
		" FROM ustate_meta m LEFT JOIN ustate_meta_times t"
		" ON t.path = m.path AND t.dir = m.dir"
		" WHERE m.path = ?1 AND m.dir = ?2",
	[ST_TIMES_SET] = "INSERT INTO ustate_meta_times VALUES (?1, ?2, ?3, ?4,"
			 " ?5, ?6) ON CONFLICT(path, dir) DO UPDATE SET "
			 "flags = excluded.flags, mtime = excluded.mtime, "
			 "pin = excluded.pin, ctime = excluded.ctime",
	[ST_TIMES_DROP] = "DELETE FROM ustate_meta_times WHERE path = ?1 AND "
			  "dir = ?2",
	[ST_XATTR_SET] = "INSERT INTO ustate_xattrs VALUES (?1, ?2, ?3, ?4) "
			 "ON CONFLICT(path, dir, name) DO UPDATE SET "
			 "value = excluded.value",
	[ST_XATTR_DROP] = "DELETE FROM ustate_xattrs WHERE path = ?1 AND "
			  "dir = ?2 AND name = ?3",
	[ST_XATTRS_GET] = "SELECT name, value FROM ustate_xattrs WHERE "
			  "path = ?1 AND dir = ?2 ORDER BY name",
	[ST_DIR_EXISTS] = "SELECT 1 FROM ustate_dirs WHERE path = ?1",
	[ST_META_DROP_DIR] = "DELETE FROM ustate_meta WHERE path = ?1 AND "
			     "dir = 1",
	[ST_XATTRS_DROP] = "DELETE FROM ustate_xattrs WHERE path = ?1 AND "
			   "dir = ?2",
	/*
	 * ustate_node_get() in one read: ?1 the path, ?2 the path + "/", ?3
	 * that + 0xff: the store revision, whether keys or records lie
	 * below the path, whether it is a record, then its entry (NULLs
	 * when it has no value).
	 */
	[ST_NODE] = "SELECT (SELECT revision FROM ustate_state), "
		    "EXISTS (SELECT 1 FROM kv_store WHERE key >= ?2 AND "
		    "key < ?3), EXISTS (SELECT 1 FROM ustate_dirs WHERE "
		    "path >= ?2 AND path < ?3), EXISTS (SELECT 1 FROM "
		    "ustate_dirs WHERE path = ?1), k.value, k.version, "
		    "k.created_at, k.updated_at, r.mod_revision FROM "
		    "(SELECT 1) LEFT JOIN kv_store k ON k.key = ?1 LEFT JOIN "
		    "ustate_keyrev r ON r.key = ?1",
	/* ?1 is the prefix, ?2 the prefix + 0xff upper bound. */
	[ST_EXPORT_KEYS] = "SELECT k.key, k.value, k.version, k.created_at, "
			   "k.updated_at, r.mod_revision FROM kv_store k "
			   "LEFT JOIN ustate_keyrev r ON r.key = k.key "
			   "WHERE k.key >= ?1 AND k.key < ?2 ORDER BY k.key",
	[ST_EXPORT_DIRS] = "SELECT path FROM ustate_dirs WHERE path >= ?1 "
			   "AND path < ?2 ORDER BY path",
	[ST_NONEMPTY] = "SELECT EXISTS (SELECT 1 FROM kv_store) OR "
			"EXISTS (SELECT 1 FROM ustate_dirs)",
	/* The rows that follow join the revision of the current one. */
	[ST_PENDING_SET] = "UPDATE ustate_state SET pending = 1",
	/* Changes when another connection commits (see pace()). */
	[ST_DATA_VERSION] = "PRAGMA data_version",
	[ST_REVISION_BACK] = "UPDATE ustate_state SET revision = revision - 1",
	/* A row is written only when it differs, so it may change nothing. */
	[ST_RESTORE_PUT] =
		"INSERT INTO kv_store(key, value, version, "
		"created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) "
		"ON CONFLICT(key) DO UPDATE SET "
		"value = excluded.value, version = excluded.version, "
		"created_at = excluded.created_at, "
		"updated_at = excluded.updated_at "
		"WHERE value IS NOT excluded.value "
		"OR version IS NOT excluded.version "
		"OR created_at IS NOT excluded.created_at "
		"OR updated_at IS NOT excluded.updated_at",
	/* ST_GET and ST_NODE with the key's lease as one more column. */
	[ST_GET_L] = "SELECT k.value, k.version, k.created_at, k.updated_at, "
		     "r.mod_revision, l.lease FROM kv_store k LEFT JOIN "
		     "ustate_keyrev r ON r.key = k.key LEFT JOIN "
		     "ustate_lease_keys l ON l.key = k.key WHERE k.key = ?1",
	[ST_NODE_L] = "SELECT (SELECT revision FROM ustate_state), "
		      "EXISTS (SELECT 1 FROM kv_store WHERE key >= ?2 AND "
		      "key < ?3), EXISTS (SELECT 1 FROM ustate_dirs WHERE "
		      "path >= ?2 AND path < ?3), EXISTS (SELECT 1 FROM "
		      "ustate_dirs WHERE path = ?1), k.value, k.version, "
		      "k.created_at, k.updated_at, r.mod_revision, l.lease "
		      "FROM (SELECT 1) LEFT JOIN kv_store k ON k.key = ?1 "
		      "LEFT JOIN ustate_keyrev r ON r.key = ?1 LEFT JOIN "
		      "ustate_lease_keys l ON l.key = k.key",
	/* Leases: ?1 a name, ?2 the time now (unix ms). */
	[ST_LEASE_ALIVE] = "SELECT 1 FROM ustate_leases WHERE name = ?1 AND "
			   "deadline > ?2",
	[ST_LEASE_ATTACH] = "INSERT INTO ustate_lease_keys VALUES (?1, ?2) "
			    "ON CONFLICT(key) DO UPDATE SET "
			    "lease = excluded.lease",
	[ST_LEASE_UPSERT] = "INSERT INTO ustate_leases VALUES (?1, ?3, "
			    "?2 + ?3 * 1000) ON CONFLICT(name) DO UPDATE SET "
			    "ttl = excluded.ttl, deadline = excluded.deadline "
			    "RETURNING ttl, deadline",
	[ST_LEASE_TOUCH] = "UPDATE ustate_leases SET deadline = ?2 + ttl * "
			   "1000 WHERE name = ?1 AND deadline > ?2 "
			   "RETURNING ttl, deadline",
	[ST_LEASE_GET] = "SELECT ttl, deadline FROM ustate_leases WHERE "
			 "name = ?1 AND deadline > ?2",
	[ST_LEASE_KEYS] = "SELECT key FROM ustate_lease_keys WHERE "
			  "lease = ?1 ORDER BY key",
	[ST_LEASE_LIST] = "SELECT name FROM ustate_leases WHERE "
			  "deadline > ?1 ORDER BY name",
	[ST_LEASE_DUE] = "SELECT name FROM ustate_leases WHERE "
			 "deadline <= ?1 ORDER BY deadline LIMIT 1",
	[ST_LEASE_NEXT] = "SELECT min(deadline) FROM ustate_leases",
	[ST_LEASE_DEL_KEYS] = "DELETE FROM kv_store WHERE key IN (SELECT key "
			      "FROM ustate_lease_keys WHERE lease = ?1)",
	[ST_LEASE_DROP] = "DELETE FROM ustate_leases WHERE name = ?1",
	/* Lease owners: ?1 a name, ?2 unused, ?3 uid, ?4 gid, ?5 mode. */
	[ST_LEASE_GET_OWNED] = "SELECT l.ttl, l.deadline, o.uid, o.gid, "
			       "o.mode FROM ustate_leases l LEFT JOIN "
			       "ustate_lease_owners o ON o.name = l.name "
			       "WHERE l.name = ?1 AND l.deadline > ?2",
	[ST_LEASE_OWNER] = "SELECT uid, gid, mode FROM ustate_lease_owners "
			   "WHERE name = ?1 AND ?2 = ?2",
	[ST_LEASE_OWN] = "INSERT OR REPLACE INTO ustate_lease_owners "
			 "VALUES (?1, ?3, ?4, ?5)",
	[ST_LEASE_DISOWN] = "DELETE FROM ustate_lease_owners WHERE name = ?1 "
			    "AND ?2 = ?2",
	[ST_LEASE_DETACH] = "DELETE FROM ustate_lease_keys WHERE key = ?1",
	/* Exports with leases: ?1, ?2 the prefix's range, ?3 now. */
	[ST_EXPORT_KEYS_L] = "SELECT k.key, k.value, k.version, k.created_at, "
			     "k.updated_at, r.mod_revision, l.lease FROM "
			     "kv_store k LEFT JOIN ustate_keyrev r ON r.key = "
			     "k.key LEFT JOIN ustate_lease_keys l ON l.key = "
			     "k.key WHERE k.key >= ?1 AND k.key < ?2 ORDER BY "
			     "k.key",
	[ST_EXPORT_LEASES] = "SELECT l.name, l.ttl, NULL, NULL, NULL FROM "
			     "ustate_leases l WHERE l.deadline > ?3 AND (?1 "
			     "IN ('', '/') OR EXISTS (SELECT 1 FROM "
			     "ustate_lease_keys k WHERE k.lease = l.name AND "
			     "k.key >= ?1 AND k.key < ?2)) ORDER BY l.name",
	[ST_EXPORT_LEASES_O] = "SELECT l.name, l.ttl, o.uid, o.gid, o.mode "
			       "FROM ustate_leases l LEFT JOIN "
			       "ustate_lease_owners o ON o.name = l.name "
			       "WHERE l.deadline > ?3 AND (?1 IN ('', '/') OR "
			       "EXISTS (SELECT 1 FROM ustate_lease_keys k "
			       "WHERE k.lease = l.name AND k.key >= ?1 AND "
			       "k.key < ?2)) ORDER BY l.name",
};

/*
 * The schema. kv_store and its index are those of the Rust univrs-state,
 * byte for byte; everything else is ours. The history id gives a change
 * the next id inside its revision (the first, when the row is a revision
 * of its own). Trigger bodies use UPSERT, not INSERT OR REPLACE, whose
 * conflict policy an outer statement overrides, and insert their history
 * rows with VALUES: an INSERT ... SELECT that reads its own table fills
 * a temporary table first, which cost half the instructions of a write.
 */
#define HISTORY_ID                                                             \
	"(SELECT CASE WHEN s.pending = 0 THEN s.revision << 20 ELSE coalesce(" \
	"(SELECT max(h.id) + 1 FROM ustate_history h WHERE h.id >= "           \
	"s.revision << 20), s.revision << 20) END FROM ustate_state s)"

/* The second change of a revision (a rename's new key). */
#define HISTORY_NEXT_ID                                                        \
	"(SELECT coalesce((SELECT max(h.id) + 1 FROM ustate_history h"         \
	" WHERE h.id >= s.revision << 20), s.revision << 20)"                  \
	" FROM ustate_state s)"

#define REVISION_BUMP                                                          \
	" UPDATE ustate_state SET revision = revision + 1 WHERE pending = 0;"

#define KEYREV_SET(key)                                                        \
	" INSERT INTO ustate_keyrev VALUES (" key ","                          \
	" (SELECT revision FROM ustate_state)) ON CONFLICT(key) DO UPDATE"     \
	" SET mod_revision = excluded.mod_revision;"

/*
 * The triggers that give every change of kv_store and ustate_dirs a
 * revision, a history row and (for keys) a mod revision, by name, as
 * sqlite_master keeps their text. A writable open makes a file's set
 * exactly this one (triggers_setup()). An outside UPDATE may rename a
 * key: the old one is then gone and the new one written, two changes in
 * one revision (so the second takes the next id of the revision).
 * Directory records made or dropped are changes too (types 4 and 5, the
 * USTATE_EVENT_DIR_* values).
 */
struct trigger {
	const char *name;
	const char *sql;
};

static const struct trigger triggers[] = {
	{"ustate_kv_insert",
	 "CREATE TRIGGER ustate_kv_insert AFTER INSERT ON kv_store BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 1, NEW.key,"
	 "  NEW.version);" KEYREV_SET("NEW.key") " END"},
	{"ustate_kv_write",
	 "CREATE TRIGGER ustate_kv_write AFTER UPDATE ON kv_store"
	 " WHEN OLD.key IS NEW.key BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 2, NEW.key,"
	 "  NEW.version);" KEYREV_SET("NEW.key") " END"},
	{"ustate_kv_rename",
	 "CREATE TRIGGER ustate_kv_rename AFTER UPDATE ON kv_store"
	 " WHEN OLD.key IS NOT NEW.key BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 3, OLD.key, 0);"
	 " DELETE FROM ustate_keyrev WHERE key = OLD.key;"
	 " INSERT INTO ustate_history VALUES (" HISTORY_NEXT_ID ", 1, NEW.key,"
	 "  NEW.version);" KEYREV_SET("NEW.key") " END"},
	{"ustate_kv_delete",
	 "CREATE TRIGGER ustate_kv_delete AFTER DELETE ON kv_store BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 3, OLD.key, 0);"
	 " DELETE FROM ustate_keyrev WHERE key = OLD.key; END"},
	{"ustate_dirs_insert",
	 "CREATE TRIGGER ustate_dirs_insert AFTER INSERT ON ustate_dirs BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 4, NEW.path, 0);"
	 " END"},
	{"ustate_dirs_delete",
	 "CREATE TRIGGER ustate_dirs_delete AFTER DELETE ON ustate_dirs BEGIN" REVISION_BUMP
	 " INSERT INTO ustate_history VALUES (" HISTORY_ID ", 5, OLD.path, 0);"
	 " END"},
};

/*
 * Triggers of earlier versions that the set above replaces: libustate
 * 0.6 and older kept both kinds of update in ustate_kv_update.
 */
static const char *const triggers_gone[] = {"ustate_kv_update"};

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
	"INSERT INTO ustate_keyrev SELECT key, 1 FROM kv_store;";

/*
 * Ownership: a row per key (dir = 0) or directory record (dir = 1) that
 * has metadata. The triggers tie a row to its key or record, so that a
 * delete by any program (the Rust crate, the sqlite3 shell) leaves no
 * owner behind for a key created again later. The root's row ("/", 1)
 * has no record and stays. Run at every writable open: a file made
 * before gets them.
 */
static const char meta_sql[] =
	"CREATE TABLE IF NOT EXISTS ustate_meta ("
	" path TEXT NOT NULL,"
	" dir INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL,"
	" mode INTEGER NOT NULL,"
	" PRIMARY KEY (path, dir)) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS ustate_meta_kv_delete"
	" AFTER DELETE ON kv_store BEGIN"
	" DELETE FROM ustate_meta WHERE path = OLD.key AND dir = 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS ustate_meta_kv_rename"
	" AFTER UPDATE OF key ON kv_store WHEN OLD.key IS NOT NEW.key BEGIN"
	" DELETE FROM ustate_meta WHERE path = OLD.key AND dir = 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS ustate_meta_rmdir"
	" AFTER DELETE ON ustate_dirs BEGIN"
	" DELETE FROM ustate_meta WHERE path = OLD.path AND dir = 1;"
	" END;"
	"CREATE TABLE IF NOT EXISTS ustate_meta_times ("
	" path TEXT NOT NULL,"
	" dir INTEGER NOT NULL,"
	" flags INTEGER NOT NULL,"
	" mtime INTEGER NOT NULL,"
	" pin INTEGER NOT NULL,"
	" ctime INTEGER NOT NULL,"
	" PRIMARY KEY (path, dir)) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS ustate_meta_times_drop"
	" AFTER DELETE ON ustate_meta BEGIN"
	" DELETE FROM ustate_meta_times WHERE path = OLD.path"
	"  AND dir = OLD.dir;"
	" END;"
	"CREATE TABLE IF NOT EXISTS ustate_xattrs ("
	" path TEXT NOT NULL,"
	" dir INTEGER NOT NULL,"
	" name TEXT NOT NULL,"
	" value BLOB NOT NULL,"
	" PRIMARY KEY (path, dir, name)) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS ustate_xattrs_kv_delete"
	" AFTER DELETE ON kv_store BEGIN"
	" DELETE FROM ustate_xattrs WHERE path = OLD.key AND dir = 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS ustate_xattrs_kv_rename"
	" AFTER UPDATE OF key ON kv_store WHEN OLD.key IS NOT NEW.key BEGIN"
	" DELETE FROM ustate_xattrs WHERE path = OLD.key AND dir = 0;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS ustate_xattrs_rmdir"
	" AFTER DELETE ON ustate_dirs BEGIN"
	" DELETE FROM ustate_xattrs WHERE path = OLD.path AND dir = 1;"
	" END;";

/*
 * Two deletes, not one with OR, which SQLite runs through a temporary
 * table. Files made before get this text (lease_triggers[]).
 */
#define LEASE_KV_UPDATE                                                        \
	"ustate_lease_kv_update AFTER UPDATE ON kv_store BEGIN"                \
	" DELETE FROM ustate_lease_keys WHERE key = NEW.key;"                  \
	" DELETE FROM ustate_lease_keys WHERE key = OLD.key"                   \
	"  AND OLD.key IS NOT NEW.key; END"

/*
 * Leases: ustate_leases holds each lease's TTL (seconds) and deadline
 * (unix ms, the wall clock), ustate_lease_keys the key each attached key
 * belongs to. kv_store is not touched: the triggers detach a key at
 * every write of its row that does not attach it again (our SET or
 * CREATE without a lease, and any write by a program that knows no
 * leases: the Rust crate, the sqlite3 shell), at its delete and at its
 * rename by an UPDATE; an attaching write inserts its mapping after its
 * row. A lease dropped by hand takes its mappings along, not its keys.
 * ustate_lease_owners holds the owner of a lease granted with one (since
 * libustate 0.6; beside ustate_leases, whose columns older libraries
 * insert into), dropped with its lease by a trigger, whoever drops it.
 * Made in one transaction at every writable open: a file from before
 * gets them whole or not at all.
 */
static const char lease_sql[] =
	"BEGIN IMMEDIATE;"
	"CREATE TABLE IF NOT EXISTS ustate_leases ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" ttl INTEGER NOT NULL,"
	" deadline INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS ustate_leases_deadline"
	" ON ustate_leases(deadline);"
	"CREATE TABLE IF NOT EXISTS ustate_lease_keys ("
	" key TEXT PRIMARY KEY NOT NULL,"
	" lease TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS ustate_lease_keys_lease"
	" ON ustate_lease_keys(lease, key);"
	"CREATE TRIGGER IF NOT EXISTS ustate_lease_kv_insert"
	" AFTER INSERT ON kv_store BEGIN"
	" DELETE FROM ustate_lease_keys WHERE key = NEW.key;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS " LEASE_KV_UPDATE ";"
	"CREATE TRIGGER IF NOT EXISTS ustate_lease_kv_delete"
	" AFTER DELETE ON kv_store BEGIN"
	" DELETE FROM ustate_lease_keys WHERE key = OLD.key;"
	" END;"
	"CREATE TRIGGER IF NOT EXISTS ustate_lease_drop"
	" AFTER DELETE ON ustate_leases BEGIN"
	" DELETE FROM ustate_lease_keys WHERE lease = OLD.name;"
	" END;"
	"CREATE TABLE IF NOT EXISTS ustate_lease_owners ("
	" name TEXT PRIMARY KEY NOT NULL,"
	" uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL,"
	" mode INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TRIGGER IF NOT EXISTS ustate_lease_owner_drop"
	" AFTER DELETE ON ustate_leases BEGIN"
	" DELETE FROM ustate_lease_owners WHERE name = OLD.name;"
	" END;"
	"COMMIT";

static const struct trigger lease_triggers[] = {
	{"ustate_lease_kv_update", "CREATE TRIGGER " LEASE_KV_UPDATE},
};

struct conn {
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	struct conn *next; /* in the free list, protected by sq->plock */
};

/* A transaction waiting for its group commit (see sq_txn()). */
struct group_req {
	const ustate_op *ops;
	size_t n;
	ustate_txn_result *res;
	unsigned flags;
	int rc;
	bool done;		/* protected by glock */
	struct group_req *next; /* protected by glock */
	pthread_cond_t wake;	/* done, or first in the queue to lead */
};

struct sq {
	char *path;
	ustate_options opts;
	pthread_mutex_t wlock;
	struct conn *writer; /* protected by wlock */
	pthread_mutex_t plock;
	struct conn *readers; /* free readers, protected by plock */
	pthread_cond_t pcond; /* a reader came back to the pool */
	unsigned nreaders;    /* readers opened, protected by plock */
	unsigned lone_writes; /* protected by wlock */
	pthread_mutex_t glock;
	struct group_req *queue, **qtail; /* waiting, protected by glock */
	bool leading; /* a thread commits a group, protected by glock */
	dev_t dev;    /* the database file the writer opened */
	ino_t ino;
	bool has_meta;	 /* ustate_meta exists; atomic */
	bool has_times;	 /* ustate_meta_times exists; atomic */
	bool has_xattrs; /* ustate_xattrs exists; atomic */
	bool has_leases; /* the lease tables exist; set at open */
	bool has_owners; /* ustate_lease_owners exists; set at open */
	/* Turns between processes; NULL: SQLite's busy handler alone. */
	struct ustate_turns *turns; /* taken under wlock */
	char *shm_path;	      /* the -shm that SQLite's connections lock */
	uint64_t gap_until;   /* ns: no group before; protected by glock */
	uint64_t looked;      /* ns: the last look, protected by leading */
	uint64_t polled;      /* ns: open_watch last read, by leading */
	bool looked_once;     /* protected by leading */
	int open_watch;	      /* inotify of opens of the file, or -1 */
	bool foreign;	      /* an outside process has the file open,
				 protected by leading */
	int64_t data_version; /* protected by wlock */
	bool holding;	      /* a group holds the turn, under wlock */
	uint64_t hold_start;  /* ns: since when, under wlock */
	uint64_t gap_end;     /* ns: its pause ends, under wlock */
	uint64_t served;      /* ns: another's last commit seen, under wlock */
	uint64_t owed;	      /* ns: pause not yet left, under wlock */
	uint64_t last_end;    /* ns: the last hold's end, under wlock */
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
	struct stat st;
	int rc;

	flags |= q->opts.read_only ? SQLITE_OPEN_READONLY
				   : SQLITE_OPEN_READWRITE;
	/*
	 * A reader opened later must read the writer's file: one that
	 * replaced it at the path would get our WAL replayed into it when
	 * the reader closes (see file_check()).
	 */
	if (q->ino && (stat(q->path, &st) < 0 || st.st_dev != q->dev ||
		       st.st_ino != q->ino))
		return -EIO;
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

/*
 * Whether a table exists; ustate_state stands for our tables (a missing
 * kv_store is created with them).
 */
static int table_present(struct conn *c, const char *name, bool *present)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(c->db,
				"SELECT 1 FROM sqlite_master WHERE type = "
				"'table' AND name = ?1",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(c->db, rc);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*present = rc == SQLITE_ROW;
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	sqlite3_finalize(st);
	return rc;
}

/*
 * A set of triggers as sqlite_master keeps their text, and the names of
 * earlier ones that it replaces.
 */
struct trigger_set {
	const struct trigger *t;
	size_t n;
	const char *const *gone;
	size_t n_gone;
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Whether the file's triggers of set ts are exactly those. */
static int triggers_current(struct conn *c, const struct trigger_set *ts,
			    bool *current)
{
	sqlite3_stmt *st = NULL;
	const char *sql;
	size_t i;
	int rc = SQLITE_OK;

	rc = sqlite3_prepare_v2(c->db,
				"SELECT sql FROM sqlite_master WHERE "
				"type = 'trigger' AND name = ?1",
				-1, &st, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(c->db, rc);
	*current = true;
	for (i = 0; i < ts->n + ts->n_gone && *current; i++) {
		sqlite3_bind_text(
			st, 1, i < ts->n ? ts->t[i].name : ts->gone[i - ts->n],
			-1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			break;
		sql = rc == SQLITE_ROW
			      ? (const char *)sqlite3_column_text(st, 0)
			      : NULL;
		if (i < ts->n)
			*current = sql && !strcmp(sql, ts->t[i].sql);
		else
			*current = !sql;
		rc = SQLITE_OK;
		sqlite3_reset(st);
	}
	rc = rc == SQLITE_OK ? 0 : sq_errno(c->db, rc);
	sqlite3_finalize(st);
	return rc;
}

/*
 * Make the file's triggers of set ts those, inside the caller's write
 * transaction: drop each of them and of the earlier ones, create anew.
 */
static int triggers_install(struct conn *c, const struct trigger_set *ts)
{
	char sql[96];
	size_t i;
	int rc = SQLITE_OK;

	for (i = 0; i < ts->n + ts->n_gone && rc == SQLITE_OK; i++) {
		snprintf(sql, sizeof(sql), "DROP TRIGGER IF EXISTS %s",
			 i < ts->n ? ts->t[i].name : ts->gone[i - ts->n]);
		rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	}
	for (i = 0; i < ts->n && rc == SQLITE_OK; i++)
		rc = sqlite3_exec(c->db, ts->t[i].sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : sq_errno(c->db, rc);
}

/*
 * A file made by an earlier version gets the triggers of set ts in one
 * transaction: a crash leaves the old set or the new one, and a writer
 * of another process (which must take SQLite's write lock) sees either.
 */
static int triggers_setup(struct conn *c, const struct trigger_set *ts)
{
	bool current;
	int rc;

	rc = triggers_current(c, ts, &current);
	if (rc < 0 || current)
		return rc;
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		return rc;
	rc = triggers_current(c, ts, &current);
	if (rc == 0 && !current)
		rc = triggers_install(c, ts);
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static const struct trigger_set change_set = {
	triggers, N_OF(triggers), triggers_gone, N_OF(triggers_gone)};

static int schema_setup(struct conn *c)
{
	bool present;
	int rc;

	rc = sqlite3_exec(c->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(c->db, rc);
	rc = table_present(c, "ustate_state", &present);
	if (rc < 0)
		return rc;
	if (present) {
		rc = sqlite3_exec(c->db, meta_sql, NULL, NULL, NULL);
		rc = sq_errno(c->db, rc);
		return rc < 0 ? rc : triggers_setup(c, &change_set);
	}
	/* Two processes may race to create it: decide under the lock. */
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		return rc;
	rc = table_present(c, "ustate_state", &present);
	if (rc == 0 && !present) {
		rc = sqlite3_exec(c->db, schema_sql, NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(c->db, meta_sql, NULL, NULL, NULL);
		rc = sq_errno(c->db, rc);
		if (rc == 0)
			rc = triggers_install(c, &change_set);
	}
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0)
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Give the file the lease tables and triggers, if it lacks them. */
static int leases_setup(struct conn *c)
{
	int rc;

	static const struct trigger_set set = {lease_triggers,
					       N_OF(lease_triggers), NULL, 0};

	rc = sqlite3_exec(c->db, lease_sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_errno(c->db, rc);
		if (!sqlite3_get_autocommit(c->db))
			sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	return triggers_setup(c, &set);
}

/*
 * Create a missing database file with mode 0600 before SQLite opens it.
 * A symbolic link to nothing is -ENOENT: SQLite would create its target
 * with the default mode.
 */
static int file_create(const char *path)
{
	struct stat st;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno != EEXIST)
		return -errno;
	return stat(path, &st) < 0 ? -errno : 0;
}

/*
 * Take the write side: wlock, then the turn of this process among those
 * that write the file. A turn not given in time is done without: SQLite's
 * lock still excludes, and its busy handler decides.
 */
static void writer_lock(struct sq *q)
{
	pthread_mutex_lock(&q->wlock);
	ustate_turn_take(q->turns, BUSY_TIMEOUT_MS);
}

static void writer_unlock(struct sq *q)
{
	ustate_turn_give(q->turns);
	pthread_mutex_unlock(&q->wlock);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Note, at now (ns), whether a connection other than the writer committed
 * since the last call (PRAGMA data_version moved). Under wlock.
 */
static void others_committed(struct sq *q, uint64_t now)
{
	sqlite3_stmt *st = NULL;
	int64_t v;

	if (stmt(q->writer, ST_DATA_VERSION, &st) < 0)
		return;
	if (sqlite3_step(st) == SQLITE_ROW) {
		v = sqlite3_column_int64(st, 0);
		if (v != q->data_version)
			q->served = now;
		q->data_version = v;
	}
	done(st);
}

/*
 * Whether to look for outside processes now (at most every LOOK_NS).
 * Reading /proc/locks stalls every file lock of the machine for a moment
 * (the kernel takes its lock list's semaphore for writing: an RCU grace
 * period, milliseconds; ten looks a second cost a single writer a tenth
 * of its writes), so with an inotify watch of the database's opens it is
 * read only when something opened the file since, while an outside
 * process is there (to see it go), once after the open (for those that
 * opened it before us), and every LOOK_IDLE_NS else. Leader only.
 */
static bool look_due(struct sq *q, uint64_t now)
{
	char buf[4096]
		__attribute__((aligned(__alignof__(struct inotify_event))));
	bool opened = false;

	if (now - q->looked < LOOK_NS || now - q->polled < LOOK_NS)
		return false;
	q->polled = now;
	if (q->open_watch < 0 || q->foreign || !q->looked_once)
		return true;
	while (read(q->open_watch, buf, sizeof(buf)) > 0)
		opened = true;
	return opened || now - q->looked >= LOOK_IDLE_NS;
}

/*
 * When the next group may start, after one that held the write lock from
 * start to end (ns). The turns serve libustate processes; a writer outside
 * them (the sqlite3 shell, the Rust crate) only polls, between sleeps of
 * up to 100 ms, and gets in when a poll finds the lock free. While such a
 * process has the file open, the lock is left free a fifth of the time:
 * each poll finds it free with odds of one in five whatever the load (a
 * first write waits 1 s with odds of 1.4%, 5 s with odds of 2 in a
 * million); for a second after another connection's commit was seen
 * (the writer is at work), a third of the time (the rest of its writes
 * wait 1 s with odds of 1 in 2,000). Nobody else there, groups follow
 * each other at once. Leader only.
 */
static uint64_t pace(struct sq *q, uint64_t start, uint64_t end)
{
	uint64_t gap, idle;

	if (look_due(q, end)) {
		q->looked = end;
		q->looked_once = true;
		q->foreign = ustate_turns_foreign(q->turns, q->shm_path);
	}
	if (!q->foreign) {
		q->owed = q->last_end = 0;
		return 0;
	}
	/*
	 * The pause owed builds up over short holds (a sleep of a few
	 * microseconds lasts far longer than asked), and time the lock was
	 * free anyway pays it off.
	 */
	idle = q->last_end && start > q->last_end ? start - q->last_end : 0;
	q->owed = q->owed > idle ? q->owed - idle : 0;
	q->owed += (uint64_t)((double)(end - start) *
			      (end - q->served < SERVE_NS ? GAP_SERVE
							  : GAP_WATCH));
	q->last_end = end;
	if (q->owed < GAP_MIN_NS)
		return 0;
	gap = q->owed < GAP_MAX_NS ? q->owed : GAP_MAX_NS;
	q->owed = 0;
	return end + gap;
}

/*
 * A group's BEGIN IMMEDIATE got SQLite's lock: its hold starts now, not
 * while its busy handler waited for another process's (the pause after
 * it is for the time we held the lock). Under wlock.
 */
static void held_from(struct sq *q)
{
	if (q->holding && q->foreign)
		q->hold_start = mono_ns();
}

/*
 * The write lock of a group is free again: set the pause that follows it
 * (for every member of the queue, so before the turn goes) and give the
 * turn. Under wlock.
 */
static void hold_over(struct sq *q)
{
	if (q->holding) {
		q->holding = false;
		q->gap_end = pace(q, q->hold_start, mono_ns());
		if (q->gap_end)
			ustate_turns_pause(q->turns, q->gap_end);
	}
	ustate_turn_give(q->turns);
}

/*
 * The writer's WAL hook, run once a commit has released SQLite's write
 * lock: the turn goes at once, and this connection checkpoints (as
 * SQLite's own hook does at 1000 pages, which ours replaces) after it,
 * while the next in turn writes; a checkpoint copies pages and syncs the
 * file, and took every other process's turn with it otherwise.
 */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	hold_over(arg);
	if (pages >= WAL_CHECKPOINT_PAGES)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE,
					  NULL, NULL);
	return SQLITE_OK;
}

/*
 * A free reader, or a new one. When the database file was deleted or
 * replaced, no new reader may open (conn_open()), but the store still
 * answers from the file it opened: the caller then waits (2 s at most)
 * for a reader of the pool to come back.
 */
static struct conn *reader_get(struct sq *q, int *rc)
{
	struct timespec until;
	struct conn *c;

	pthread_mutex_lock(&q->plock);
	c = q->readers;
	if (c)
		q->readers = c->next;
	pthread_mutex_unlock(&q->plock);
	*rc = 0;
	if (c)
		return c;
	*rc = conn_open(q, &c);
	pthread_mutex_lock(&q->plock);
	if (*rc == 0) {
		q->nreaders++;
	} else if (*rc == -EIO && q->nreaders) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 2;
		while (!q->readers &&
		       pthread_cond_timedwait(&q->pcond, &q->plock, &until) ==
			       0)
			;
		c = q->readers;
		if (c) {
			q->readers = c->next;
			*rc = 0;
		}
	}
	pthread_mutex_unlock(&q->plock);
	return c;
}

static void reader_put(struct sq *q, struct conn *c)
{
	pthread_mutex_lock(&q->plock);
	c->next = q->readers;
	q->readers = c;
	pthread_cond_signal(&q->pcond);
	pthread_mutex_unlock(&q->plock);
}

/*
 * Whether the file c has open is still the one at its path. Deleted or
 * replaced underneath (rm, mv over it, a restore by copy), it takes our
 * commits where nobody will ever read them: -EIO, never a silent success.
 * Readers keep reading it, and new ones are not opened on another file
 * (conn_open()); sq_close() empties the WAL into it, so that nothing of
 * ours is replayed into a file that replaced it. Only the database file
 * is checked: a lone -wal removed is not seen.
 */
static int file_check(struct conn *c)
{
	int moved = 0;

	if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_HAS_MOVED,
				 &moved) != SQLITE_OK)
		return 0;
	return moved ? -EIO : 0;
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
	/*
	 * SQLite does not checkpoint at close a file that was moved or
	 * replaced, and its WAL would then be replayed into whatever file
	 * is at the path now: empty the WAL into our own file first.
	 */
	if (q->writer && file_check(q->writer) < 0)
		sqlite3_exec(q->writer->db, "PRAGMA wal_checkpoint(TRUNCATE)",
			     NULL, NULL, NULL);
	conn_close(q->writer);
	ustate_turns_close(q->turns);
	if (q->open_watch >= 0)
		close(q->open_watch);
	free(q->shm_path);
	pthread_mutex_destroy(&q->wlock);
	pthread_mutex_destroy(&q->plock);
	pthread_cond_destroy(&q->pcond);
	pthread_mutex_destroy(&q->glock);
	free(q->path);
	free(q);
}

/*
 * The entry of key from the columns value, version, created_at,
 * updated_at, mod_revision (and lease, when st has it) of st's row, from
 * column i on; NULL when out of memory.
 */
static ustate_entry *entry_of_row(sqlite3_stmt *st, int i, const char *key)
{
	const char *lease = NULL;
	ustate_entry *e;

	/* ST_GET_L and ST_NODE_L give the lease in one more column. */
	if (sqlite3_column_count(st) > i + 5)
		lease = (const char *)sqlite3_column_text(st, i + 5);
	e = ustate_entry_new_leased(key, sqlite3_column_blob(st, i),
				    sqlite3_column_bytes(st, i), lease);
	if (e) {
		e->version = sqlite3_column_int64(st, i + 1);
		e->created_at = sqlite3_column_int64(st, i + 2);
		e->updated_at = sqlite3_column_int64(st, i + 3);
		e->mod_revision = sqlite3_column_int64(st, i + 4);
	}
	return e;
}

/* The entry of key on connection c; -ENOENT when absent. */
static int get_on(struct sq *q, struct conn *c, const char *key,
		  ustate_entry **out)
{
	sqlite3_stmt *st = NULL;
	ustate_entry *e;
	int rc;

	rc = stmt(c, q->has_leases ? ST_GET_L : ST_GET, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else if (rc != SQLITE_ROW) {
		rc = sq_errno(c->db, rc);
	} else {
		e = entry_of_row(st, 0, key);
		if (e)
			*out = e;
		rc = e ? 0 : -ENOMEM;
	}
	done(st);
	return rc;
}

static int sq_get(void *b, const char *key, ustate_entry **out)
{
	struct sq *q = b;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = get_on(q, c, key, out);
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

/*
 * prefix + 0xff into upper (USTATE_KEY_MAX + 2 bytes), the end of the
 * range of names that start with prefix: names are UTF-8, which never
 * holds 0xff. Returns its length.
 */
static size_t range_end(const char *prefix, char *upper)
{
	size_t len = strlen(prefix);

	memcpy(upper, prefix, len);
	upper[len] = (char)0xff;
	return len + 1;
}

/*
 * key + "/" + 0xff into lo (USTATE_KEY_MAX + 3 bytes): its first len + 1
 * bytes are the lower bound of the names below key, all of it the upper
 * one. Returns len, key's length.
 */
static size_t below_range(const char *key, char *lo)
{
	size_t len = strlen(key);

	memcpy(lo, key, len);
	lo[len] = '/';
	lo[len + 1] = (char)0xff;
	return len;
}

/* The number of keys below key on connection c. */
static int children_on(struct conn *c, const char *key, uint64_t *count)
{
	char lo[USTATE_KEY_MAX + 3];
	size_t len = below_range(key, lo);
	sqlite3_stmt *st = NULL;
	int rc;

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

static int sq_node(void *b, const char *path, unsigned *flags,
		   uint64_t *revision, ustate_entry **entry)
{
	char below[USTATE_KEY_MAX + 3];
	size_t len = below_range(path, below);
	sqlite3_stmt *st = NULL;
	ustate_entry *e = NULL;
	struct sq *q = b;
	struct conn *c;
	bool value;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = stmt(c, q->has_leases ? ST_NODE_L : ST_NODE, &st);
	if (rc < 0)
		goto out;
	sqlite3_bind_text(st, 1, path, len, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, below, len + 1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, below, len + 2, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EUCLEAN : sq_errno(c->db, rc);
		goto done;
	}
	value = sqlite3_column_type(st, 5) != SQLITE_NULL;
	if (entry && value) {
		e = entry_of_row(st, 4, path);
		if (!e) {
			rc = -ENOMEM;
			goto done;
		}
	}
	*flags = (value ? USTATE_NODE_VALUE : 0) |
		 (sqlite3_column_int(st, 1) || sqlite3_column_int(st, 2)
			  ? USTATE_NODE_CHILDREN
			  : 0) |
		 (sqlite3_column_int(st, 3) ? USTATE_NODE_RECORD : 0);
	if (revision)
		*revision = sqlite3_column_int64(st, 0);
	if (entry)
		*entry = e;
	rc = 0;
done:
	done(st);
out:
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

	range_end(prefix, upper);
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

/* In one read transaction of a reader: WAL readers never wait for writers. */
static int sq_get_many(void *b, const char *const *keys, size_t n,
		       ustate_entry **out, uint64_t *revision)
{
	uint64_t compacted;
	struct sq *q = b;
	struct conn *c;
	size_t i;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = exec1(c, ST_BEGIN_READ);
	if (rc < 0)
		goto out;
	rc = state_on(c, revision, &compacted);
	for (i = 0; rc == 0 && i < n; i++) {
		rc = get_on(q, c, keys[i], &out[i]);
		if (rc == -ENOENT)
			rc = 0;
	}
	exec1(c, ST_COMMIT);
	for (i = 0; rc < 0 && i < n; i++) {
		ustate_entry_free(out[i]);
		out[i] = NULL;
	}
out:
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
	rc = exec1(c, ST_BEGIN_READ);
	if (rc < 0)
		goto out;
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
	exec1(c, ST_COMMIT);
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

/*
 * Run a write statement; *version receives the key's version after it (a
 * delete's: the version it removed), 0 when it wrote no row. The upsert
 * and the insert have no RETURNING clause, which SQLite serves through a
 * temporary table: the version is read back (the upsert) or is 1 (an
 * insert that wrote its row), a lookup in a page the write just touched.
 */
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
	if (rc < 0 || i == ST_DELETE)
		return rc;
	if (i == ST_INSERT) {
		*version = sqlite3_changes(c->db) > 0;
		return 0;
	}
	rc = stmt(c, ST_VERSION, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*version = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
	rc = rc == SQLITE_ROW	 ? 0
	     : rc == SQLITE_DONE ? -EIO
				 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/*
 * Drop every change of the revisions before first, inside the caller's
 * write transaction; *removed (if not NULL) receives how many went.
 */
static int drop_history(struct conn *c, uint64_t first, uint64_t *removed)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, ST_TRIM, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(first << SEQ_BITS));
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	if (rc < 0)
		return rc;
	if (removed)
		*removed = (uint64_t)sqlite3_changes(c->db);
	rc = stmt(c, ST_TRIMMED, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(first - 1));
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Drop history older than the retained window, with some slack. */
static int trim(struct sq *q, struct conn *c, uint64_t rev, uint64_t compacted)
{
	uint64_t keep = q->opts.history, slack = keep / 8 + 16;

	if (rev <= compacted + keep + slack)
		return 0;
	return drop_history(c, rev - keep + 1, NULL);
}

/* Keep m's times for path (dir 0: a key at version pin), or none. */
static int times_set(struct conn *c, const char *path, int dir,
		     const ustate_meta *m, uint64_t pin)
{
	bool keep = m->flags || m->ctime_ns;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, keep ? ST_TIMES_SET : ST_TIMES_DROP, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, dir);
	if (keep) {
		sqlite3_bind_int64(st, 3, m->flags);
		sqlite3_bind_int64(st, 4, m->mtime_ns);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)pin);
		sqlite3_bind_int64(st, 6, m->ctime_ns);
	}
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/*
 * Keep op's metadata (a ustate_meta) for its key (dir 0, now at version
 * pin) or record; its trigger drops the times with the row.
 */
static int meta_set(struct conn *c, const ustate_op *op, int dir, uint64_t pin)
{
	const ustate_meta *m = op->value;
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, m ? ST_META_SET : ST_META_DROP, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	if (m) {
		sqlite3_bind_int(st, 2, dir);
		sqlite3_bind_int64(st, 3, m->uid);
		sqlite3_bind_int64(st, 4, m->gid);
		sqlite3_bind_int64(st, 5, m->mode);
	}
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	if (rc == 0 && m)
		rc = times_set(c, op->key, dir, m, pin);
	return rc;
}

/* USTATE_OP_META: the key must exist; *v receives its version. */
static int meta_op(struct conn *c, const ustate_op *op, uint64_t *v,
		   ustate_txn_result *res)
{
	int rc;

	rc = version_on(c, op->key, v);
	if (rc == 0 && *v == 0) {
		res->found = 0;
		rc = -ENOENT;
	}
	return rc < 0 ? rc : meta_set(c, op, 0, *v);
}

/*
 * USTATE_OP_XATTR: the key (or record, or "/") must exist; then one row
 * set or removed.
 */
static int xattr_op(struct conn *c, const ustate_op *op, uint64_t *v,
		    ustate_txn_result *res)
{
	int dir = (op->version & ~(uint64_t)USTATE_XATTR_REMOVE) ==
		  USTATE_META_DIR;
	const char *name = op->value;
	size_t nlen = strlen(name) + 1;
	sqlite3_stmt *st = NULL;
	int rc;

	*v = 0;
	if (!dir) {
		rc = version_on(c, op->key, v);
	} else if (strcmp(op->key, "/")) {
		rc = stmt(c, ST_DIR_EXISTS, &st);
		if (rc < 0)
			return rc;
		sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		*v = rc == SQLITE_ROW;
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE
			     ? 0
			     : sq_errno(c->db, rc);
		done(st);
	} else {
		*v = 1;
		rc = 0;
	}
	if (rc == 0 && *v == 0) {
		res->found = 0;
		rc = -ENOENT;
	}
	if (dir)
		*v = 0;
	if (rc == 0)
		rc = stmt(c,
			  op->version & USTATE_XATTR_REMOVE ? ST_XATTR_DROP
							    : ST_XATTR_SET,
			  &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, dir);
	sqlite3_bind_text(st, 3, name, (int)nlen - 1, SQLITE_STATIC);
	if (!(op->version & USTATE_XATTR_REMOVE))
		sqlite3_bind_blob(st, 4, name + nlen,
				  (int)(op->value_len - nlen), SQLITE_STATIC);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Bind the text ?1 and the integer ?2 of st (either may be absent). */
static void bind_name_at(sqlite3_stmt *st, const char *name, int64_t at)
{
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, at);
}

/* Whether lease name is live at now on c: 0 or -ENOENT. */
static int lease_alive(struct conn *c, const char *name, int64_t now)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, ST_LEASE_ALIVE, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, name, now);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_ROW	 ? 0
	     : rc == SQLITE_DONE ? -ENOENT
				 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/*
 * A SET or CREATE (statement i) that attaches its key to op->lease,
 * which must be live: the row first (its triggers detach the key), then
 * the mapping. Several statements: its caller must undo it on failure.
 */
static int leased_write(struct conn *c, int i, const ustate_op *op, int64_t now,
			uint64_t *v, ustate_txn_result *res)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = lease_alive(c, op->lease, ustate_clock_ms());
	if (rc == -ENOENT) {
		*v = 0;
		res->found = 0;
		return -ENOENT;
	}
	if (rc == 0)
		rc = write_step(c, i, op, now, v);
	if (rc < 0 || *v == 0)
		return rc;
	rc = stmt(c, ST_LEASE_ATTACH, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, op->lease, -1, SQLITE_STATIC);
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
	int rc = 0;

	switch (op->type) {
	case USTATE_OP_SET:
		if (op->lease)
			return leased_write(c, ST_UPSERT, op, now, v, res);
		return write_step(c, ST_UPSERT, op, now, v);
	case USTATE_OP_CREATE:
		if (op->lease)
			rc = leased_write(c, ST_INSERT, op, now, v, res);
		else
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
	case USTATE_OP_META:
		return meta_op(c, op, v, res);
	case USTATE_OP_XATTR:
		return xattr_op(c, op, v, res);
	case USTATE_OP_MKDIR:
	case USTATE_OP_RMDIR:
		*v = 0;
		/* The root is no record; only its metadata is kept. */
		if (strcmp(op->key, "/")) {
			rc = stmt(c,
				  op->type == USTATE_OP_MKDIR ? ST_MKDIR
							      : ST_RMDIR,
				  &st);
			if (rc < 0)
				return rc;
			sqlite3_bind_text(st, 1, op->key, -1, SQLITE_STATIC);
			rc = sqlite3_step(st);
			rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
			/* 1 when the record changed (its trigger wrote
			 * history). */
			*v = rc == 0 && sqlite3_changes(c->db) > 0;
			done(st);
		}
		if (rc == 0 && op->type == USTATE_OP_MKDIR && op->value)
			rc = meta_set(c, op, 1, 0);
		return rc;
	default:
		return -EINVAL;
	}
}

/*
 * The body of sq_txn(), run inside BEGIN IMMEDIATE on the writer. The
 * history is trimmed after it when trim_now (a group trims once, after
 * its last transaction).
 */
static int txn_apply(struct sq *q, struct conn *c, const ustate_op *ops,
		     size_t n, ustate_txn_result *res, bool trim_now)
{
	int64_t now = time(NULL);
	uint64_t v, compacted;
	size_t i, writes = 0, changes = 0;
	int rc;

	for (i = 0; i < n; i++) {
		if (!ustate_op_is_check(ops[i].type)) {
			writes++;
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
		/*
		 * A key write always changes; a record op when v is 1;
		 * metadata never (v is its key's version).
		 */
		if (ops[i].type != USTATE_OP_META &&
		    ops[i].type != USTATE_OP_XATTR)
			changes += v || (ops[i].type != USTATE_OP_MKDIR &&
					 ops[i].type != USTATE_OP_RMDIR);
	}
	if (writes > 1) {
		rc = exec1(c, ST_PENDING_OFF);
		/* Nothing changed after all: no revision either. */
		if (rc == 0 && !changes)
			rc = exec1(c, ST_REVISION_BACK);
		if (rc < 0)
			return rc;
	}
	rc = state_on(c, &res->revision, &compacted);
	if (rc == 0 && writes && trim_now)
		rc = trim(q, c, res->revision, compacted);
	return rc;
}

/* The lease an op attaches its key to, or NULL. */
static const char *op_lease(const ustate_op *op)
{
	return op->type == USTATE_OP_SET || op->type == USTATE_OP_CREATE
		       ? op->lease
		       : NULL;
}

/*
 * Whether a failure of the transaction can leave nothing of it behind
 * without a savepoint: one write, of a key, which is one statement (a
 * statement that fails is undone whole by SQLite), whatever it checks
 * first.
 */
static bool one_statement(const ustate_op *ops, size_t n)
{
	size_t i, writes = 0;

	for (i = 0; i < n; i++) {
		if (ustate_op_is_check(ops[i].type))
			continue;
		if (!ustate_op_writes_key(ops[i].type) || op_lease(&ops[i]))
			return false;
		writes++;
	}
	return writes == 1;
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

/* One transaction on its own: BEGIN IMMEDIATE ... COMMIT. Under wlock. */
static int txn_alone(struct sq *q, const ustate_op *ops, size_t n,
		     ustate_txn_result *res, unsigned flags)
{
	struct conn *c = q->writer;
	uint64_t compacted;
	int rc;

	if (n == 1 && !ustate_op_is_check(ops[0].type) && !op_lease(ops) &&
	    (flags & USTATE_TXN_NO_REVISION))
		return txn_single(q, c, ops, res);
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		return rc;
	held_from(q);
	rc = txn_apply(q, c, ops, n, res, true);
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0) {
		if (!sqlite3_get_autocommit(c->db))
			exec1(c, ST_ROLLBACK);
		/* On failure, tell the revision the transaction saw. */
		if (state_on(c, &res->revision, &compacted) < 0)
			res->revision = 0;
	}
	return rc;
}

/*
 * Several transactions in one SQLite transaction, each in a savepoint of
 * its own (but for one_statement() ones, which need none): one that fails
 * is rolled back alone; one COMMIT (one sync of the WAL) makes the others
 * durable together. The history is trimmed once, at the end. Under wlock.
 */
static void txn_group(struct sq *q, struct group_req *g)
{
	struct conn *c = q->writer;
	uint64_t rev, compacted;
	struct group_req *r;
	bool sp, wrote = false;
	int rc;

	rc = exec1(c, ST_BEGIN);
	if (rc == 0)
		held_from(q);
	for (r = g; rc == 0 && r; r = r->next) {
		sp = !one_statement(r->ops, r->n);
		r->rc = sp ? exec1(c, ST_SAVEPOINT) : 0;
		if (r->rc == 0)
			r->rc = txn_apply(q, c, r->ops, r->n, r->res, false);
		if (r->rc < 0) {
			/* Savepoints end with RELEASE, even rolled back. */
			if (sp && (exec1(c, ST_ROLLBACK_TO) < 0 ||
				   exec1(c, ST_RELEASE) < 0))
				rc = r->rc; /* the whole group is lost */
			if (state_on(c, &r->res->revision, &compacted) < 0)
				r->res->revision = 0;
		} else {
			wrote = true;
			if (sp)
				rc = exec1(c, ST_RELEASE);
		}
	}
	if (rc == 0 && wrote) {
		rc = state_on(c, &rev, &compacted);
		if (rc == 0)
			rc = trim(q, c, rev, compacted);
	}
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc == 0)
		return;
	if (!sqlite3_get_autocommit(c->db))
		exec1(c, ST_ROLLBACK);
	/*
	 * Nothing of the group landed: those that succeeded, or were not
	 * reached, fail with the group; the others keep their own error.
	 */
	for (r = g; r; r = r->next) {
		if (r->rc == 0) {
			r->rc = rc;
			if (state_on(c, &r->res->revision, &compacted) < 0)
				r->res->revision = 0;
		}
	}
}

#define GROUP_MAX 64 /* transactions in one commit */

/*
 * Group commit. A transaction joins the queue; the first thread to find
 * no commit under way leads: it takes what is queued (its own and those
 * that arrived while the last commit synced) and commits them together,
 * then wakes the others. Alone, a transaction commits at once as before;
 * under load, N writers share one sync. Every caller returns only after
 * its own outcome is durable (or known failed).
 *
 * Each waiter sleeps on a condition of its own: the leader wakes exactly
 * the members of its group, and the first of the queue to lead next. A
 * shared condition woke every waiter at every commit, and on a machine
 * with few cores those wakeups cost more than the commits.
 */
static int sq_txn(void *b, const ustate_op *ops, size_t n,
		  ustate_txn_result *res, unsigned flags)
{
	struct group_req me = {ops, n,	   res,	 flags,
			       0,   false, NULL, PTHREAD_COND_INITIALIZER};
	struct group_req *g, *r, *next;
	uint64_t end, now;
	struct sq *q = b;
	size_t i;
	int rc;

	pthread_mutex_lock(&q->glock);
	*q->qtail = &me;
	q->qtail = &me.next;
	while (!me.done) {
		if (q->leading) {
			pthread_cond_wait(&me.wake, &q->glock);
			continue;
		}
		q->leading = true;
		/* A pause left for outside writers (pace()). */
		now = q->gap_until ? mono_ns() : 0;
		if (now < q->gap_until) {
			pthread_mutex_unlock(&q->glock);
			usleep((q->gap_until - now) / 1000 + 1);
			pthread_mutex_lock(&q->glock);
		}
		g = q->queue;
		for (r = g, i = 1; r->next && i < GROUP_MAX; r = r->next)
			i++;
		q->queue = r->next;
		if (!q->queue)
			q->qtail = &q->queue;
		r->next = NULL;
		pthread_mutex_unlock(&q->glock);

		writer_lock(q);
		q->hold_start = mono_ns();
		q->holding = true;
		q->gap_end = 0;
		/* A database moved or replaced underneath takes no writes. */
		rc = file_check(q->writer);
		for (r = g; rc < 0 && r; r = r->next)
			r->rc = rc;
		if (rc == 0 && !g->next)
			g->rc = txn_alone(q, g->ops, g->n, g->res, g->flags);
		else if (rc == 0)
			txn_group(q, g);
		/* Unless the commit's hook did (no commit, or no write);
		 * a second call keeps the pause the first one set. */
		hold_over(q);
		if (q->foreign)
			others_committed(q, mono_ns());
		end = q->gap_end;
		writer_unlock(q);

		pthread_mutex_lock(&q->glock);
		q->gap_until = end;
		for (r = g; r; r = next) {
			/* Once done, r may return and leave the stack. */
			next = r->next;
			r->done = true;
			if (r != &me)
				pthread_cond_signal(&r->wake);
		}
		q->leading = false;
		if (q->queue)
			pthread_cond_signal(&q->queue->wake);
	}
	pthread_mutex_unlock(&q->glock);
	pthread_cond_destroy(&me.wake);
	return me.rc;
}

/* ---- administration ---------------------------------------------------- */

#define BACKUP_STEP_PAGES 1024 /* pages copied between progress reports */
/* The changes one revision can hold (SEQ_BITS): a restore opens another. */
#define REV_CHANGES_MAX ((1u << SEQ_BITS) - 1)

/* Whether a step left a statement able to go on. */
static bool stepping(int rc)
{
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* The record of the current row of ST_EXPORT_KEYS. */
static void export_key_row(sqlite3_stmt *st, ustate_record *r)
{
	const void *val = sqlite3_column_blob(st, 1);

	*r = (ustate_record){
		.type = USTATE_RECORD_KEY,
		.key = (const char *)sqlite3_column_text(st, 0),
		.value = val ? val : "",
		.value_len = sqlite3_column_bytes(st, 1),
		.version = sqlite3_column_int64(st, 2),
		.created_at = sqlite3_column_int64(st, 3),
		.updated_at = sqlite3_column_int64(st, 4),
		.mod_revision = sqlite3_column_int64(st, 5),
		.lease = sqlite3_column_count(st) > 6
				 ? (const char *)sqlite3_column_text(st, 6)
				 : NULL,
	};
}

/*
 * The LEASE records of an export of the range lo..hi, on c in its read:
 * the live leases (at least one key in the range unless it is all).
 */
static int export_leases(struct sq *q, struct conn *c, const char *lo,
			 const char *hi, size_t len, ustate_export_fn fn,
			 void *arg)
{
	ustate_record r = {.type = USTATE_RECORD_LEASE};
	sqlite3_stmt *st = NULL;
	ustate_meta owner;
	int rc;

	if (!q->has_leases)
		return 0;
	rc = stmt(c, q->has_owners ? ST_EXPORT_LEASES_O : ST_EXPORT_LEASES,
		  &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, lo, len, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, hi, len + 1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, ustate_clock_ms());
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r.key = (const char *)sqlite3_column_text(st, 0);
		r.ttl = sqlite3_column_int64(st, 1);
		r.meta = NULL;
		if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
			owner = (ustate_meta){
				.uid = (uint32_t)sqlite3_column_int64(st, 2),
				.gid = (uint32_t)sqlite3_column_int64(st, 3),
				.mode = (uint32_t)sqlite3_column_int64(st, 4)};
			r.meta = &owner;
		}
		rc = fn(arg, &r);
		if (rc < 0)
			break;
	}
	rc = rc < 0 ? rc : rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

static int conn_meta(struct sq *q, struct conn *c, const char *path,
		     unsigned which, ustate_meta *out);
static int conn_xattrs(struct sq *q, struct conn *c, const char *path,
		       unsigned which, void **blob, size_t *len);

/* A record's own buffers for its metadata and xattrs, reused. */
struct rec_meta {
	ustate_meta meta;
	void *blob;
	ustate_xattr *xs;
	size_t cap;
};

/* Give r its metadata and xattrs, read on c in the export's snapshot. */
static int export_meta(struct sq *q, struct conn *c, ustate_record *r,
		       struct rec_meta *rm)
{
	unsigned which = r->type == USTATE_RECORD_DIR ? USTATE_META_DIR
						      : USTATE_META_KEY;
	size_t len = 0, off = 0, n = 0, vlen;
	const char *name;
	ustate_xattr *grown;
	const void *v;
	int rc;

	rc = conn_meta(q, c, r->key, which, &rm->meta);
	if (rc == 0)
		r->meta = &rm->meta;
	else if (rc != -ENOENT)
		return rc;
	free(rm->blob);
	rm->blob = NULL;
	rc = conn_xattrs(q, c, r->key, which, &rm->blob, &len);
	if (rc == -ENOENT)
		return 0;
	while (rc == 0 &&
	       ustate_xattr_entry(rm->blob, len, &off, &name, &v, &vlen) == 1) {
		if (n == rm->cap) {
			grown = realloc(rm->xs,
					(rm->cap * 2 + 4) * sizeof(*rm->xs));
			if (!grown)
				return -ENOMEM;
			rm->xs = grown;
			rm->cap = rm->cap * 2 + 4;
		}
		rm->xs[n++] = (ustate_xattr){
			.name = name, .value = v, .value_len = vlen};
	}
	r->xattrs = rm->xs;
	r->nxattrs = n;
	return rc;
}

/* Walk the keys and the records in step, merging them by path. */
static int sq_export(void *b, const char *prefix, ustate_export_fn fn,
		     void *arg)
{
	char upper[USTATE_KEY_MAX + 2];
	size_t len = strlen(prefix);
	sqlite3_stmt *ks = NULL, *ds = NULL;
	int krc = SQLITE_DONE, drc = SQLITE_DONE, rc;
	struct rec_meta rm = {0};
	struct sq *q = b;
	ustate_record r;
	struct conn *c;
	bool key_next;

	range_end(prefix, upper);
	c = reader_get(q, &rc);
	if (!c)
		return rc;
	/* One read transaction: both walks see the same snapshot. */
	rc = sq_errno(c->db, sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL));
	if (rc < 0)
		goto out;
	rc = export_leases(q, c, prefix, upper, len, fn, arg);
	if (rc == 0)
		rc = stmt(c, q->has_leases ? ST_EXPORT_KEYS_L : ST_EXPORT_KEYS,
			  &ks);
	if (rc == 0)
		rc = stmt(c, ST_EXPORT_DIRS, &ds);
	if (rc < 0)
		goto end;
	sqlite3_bind_text(ks, 1, prefix, len, SQLITE_STATIC);
	sqlite3_bind_text(ks, 2, upper, len + 1, SQLITE_STATIC);
	sqlite3_bind_text(ds, 1, prefix, len, SQLITE_STATIC);
	sqlite3_bind_text(ds, 2, upper, len + 1, SQLITE_STATIC);
	krc = sqlite3_step(ks);
	drc = sqlite3_step(ds);
	while (rc == 0 && stepping(krc) && stepping(drc) &&
	       (krc == SQLITE_ROW || drc == SQLITE_ROW)) {
		key_next =
			drc != SQLITE_ROW ||
			(krc == SQLITE_ROW &&
			 strcmp((const char *)sqlite3_column_text(ks, 0),
				(const char *)sqlite3_column_text(ds, 0)) <= 0);
		if (key_next) {
			export_key_row(ks, &r);
			rc = export_meta(q, c, &r, &rm);
			if (rc == 0)
				rc = fn(arg, &r);
			krc = sqlite3_step(ks);
		} else {
			r = (ustate_record){
				.type = USTATE_RECORD_DIR,
				.key = (const char *)sqlite3_column_text(ds, 0),
			};
			rc = export_meta(q, c, &r, &rm);
			if (rc == 0)
				rc = fn(arg, &r);
			drc = sqlite3_step(ds);
		}
	}
	if (rc == 0 && !stepping(krc))
		rc = sq_errno(c->db, krc);
	if (rc == 0 && !stepping(drc))
		rc = sq_errno(c->db, drc);
end:
	if (ks)
		done(ks);
	if (ds)
		done(ds);
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
out:
	reader_put(q, c);
	free(rm.blob);
	free(rm.xs);
	return rc;
}

/* What sq_lease_write() does once the overdue leases are gone. */
enum lease_act {
	LEASE_GRANT,
	LEASE_KEEPALIVE,
	LEASE_REVOKE,
	LEASE_EXPIRE,
	LEASE_OWN
};

/* A lease write, alone in a transaction of its own: BEGIN ... COMMIT. */
struct lease_write {
	enum lease_act act;
	const char *name;
	int64_t ttl, now;
	unsigned expired;	  /* leases ended, overdue or revoked */
	uint64_t revision;	  /* LEASE_REVOKE: of the keys' deletion */
	int64_t got_ttl, got_dl;  /* GRANT, KEEPALIVE: the lease after */
	const ustate_meta *owner; /* GRANT: of a lease it makes; OWN */
	bool owned;		  /* GRANT, KEEPALIVE: got_owner is set */
	ustate_meta got_owner;
};

static int lease_set(struct conn *c, int i, struct lease_write *w);
static int lease_owner_write(struct conn *c, int i, struct lease_write *w);
static int leases_due(struct conn *c, int64_t now, unsigned *expired);

/*
 * A restore in progress on the writer. Its changes go into revisions of
 * at most REV_CHANGES_MAX changes: the first change of a revision bumps it
 * through the trigger (pending is 0), and pending = 1 then makes the
 * changes that follow join it, so a restore that changes nothing makes no
 * revision at all.
 */
struct restore {
	struct conn *c;
	ustate_restore_result *res;
	bool open;	 /* a revision is open: pending is 1 */
	uint64_t in_rev; /* changes in it so far */
	int64_t now;	 /* the lease clock at its start */
	sqlite3_stmt *seen;
	sqlite3_stmt *gone;
};

/* The restore's own table of the paths it was given. */
static const char restore_seen_sql[] =
	"CREATE TEMP TABLE ustate_restore_seen (type INTEGER NOT NULL,"
	" key TEXT NOT NULL, PRIMARY KEY (type, key)) WITHOUT ROWID";

/* Before a write that may change a key: close a full revision. */
static int restore_room(struct restore *r)
{
	if (!r->open || r->in_rev < REV_CHANGES_MAX)
		return 0;
	r->open = false;
	return exec1(r->c, ST_PENDING_OFF);
}

/* After a write that changed a key. */
static int restore_changed(struct restore *r)
{
	r->in_rev++;
	if (r->open)
		return 0;
	r->open = true;
	r->in_rev = 1;
	return exec1(r->c, ST_PENDING_SET);
}

static int restore_key(struct restore *r, const ustate_record *rec)
{
	sqlite3_stmt *st = NULL;
	bool changed;
	int rc;

	rc = restore_room(r);
	if (rc == 0)
		rc = stmt(r->c, ST_RESTORE_PUT, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
	bind_value(st, 2, rec->value, rec->value_len);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)rec->version);
	sqlite3_bind_int64(st, 4, rec->created_at);
	sqlite3_bind_int64(st, 5, rec->updated_at);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
	/* Only the row counts here, not what the triggers wrote. */
	changed = rc == 0 && sqlite3_changes(r->c->db) > 0;
	done(st);
	if (!changed)
		return rc;
	r->res->written++;
	return restore_changed(r);
}

/*
 * Give a restored key (at its version) or record exactly the metadata and
 * xattrs of its record.
 */
static int restore_meta(struct restore *r, const ustate_record *rec)
{
	int dir = rec->type == USTATE_RECORD_DIR;
	ustate_op op = {.key = rec->key, .value = rec->meta};
	sqlite3_stmt *st = NULL;
	size_t i, nlen;
	int rc;

	if (rec->meta) {
		rc = meta_set(r->c, &op, dir, dir ? 0 : rec->version);
	} else {
		rc = stmt(r->c, dir ? ST_META_DROP_DIR : ST_META_DROP, &st);
		if (rc == 0) {
			sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
			rc = sqlite3_step(st);
			rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
			done(st);
		}
	}
	if (rc == 0)
		rc = stmt(r->c, ST_XATTRS_DROP, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, dir);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
	done(st);
	for (i = 0; rc == 0 && i < rec->nxattrs; i++) {
		rc = stmt(r->c, ST_XATTR_SET, &st);
		if (rc < 0)
			break;
		nlen = strlen(rec->xattrs[i].name);
		sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, dir);
		sqlite3_bind_text(st, 3, rec->xattrs[i].name, (int)nlen,
				  SQLITE_STATIC);
		bind_value(st, 4, rec->xattrs[i].value,
			   rec->xattrs[i].value_len);
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
		done(st);
	}
	return rc;
}

/*
 * A LEASE record: the lease made or refreshed, with the record's TTL and
 * owner and a deadline a TTL from now.
 */
static int restore_lease(struct restore *r, const ustate_record *rec)
{
	struct lease_write w = {.name = rec->key,
				.ttl = rec->ttl,
				.now = r->now,
				.owner = rec->meta};
	int rc;

	rc = lease_set(r->c, ST_LEASE_UPSERT, &w);
	if (rc == 0)
		rc = lease_owner_write(
			r->c, rec->meta ? ST_LEASE_OWN : ST_LEASE_DISOWN, &w);
	return rc;
}

/* A KEY record's lease: attached, or (none) detached. */
static int restore_key_lease(struct restore *r, const ustate_record *rec)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(r->c, rec->lease ? ST_LEASE_ATTACH : ST_LEASE_DETACH, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, rec->key, -1, SQLITE_STATIC);
	if (rec->lease)
		sqlite3_bind_text(st, 2, rec->lease, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
	done(st);
	return rc;
}

/*
 * After the records: REPLACE ends the leases no record gave; then every
 * restored key's lease must be live (-ENOENT).
 */
static int restore_leases_end(struct restore *r, unsigned flags)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (flags & USTATE_RESTORE_REPLACE)
		rc = sq_errno(
			r->c->db,
			sqlite3_exec(r->c->db,
				     "DELETE FROM ustate_leases WHERE name"
				     " NOT IN (SELECT key FROM"
				     " temp.ustate_restore_seen WHERE"
				     " type = 3)",
				     NULL, NULL, NULL));
	if (rc == 0)
		rc = sq_errno(r->c->db,
			      sqlite3_prepare_v2(
				      r->c->db,
				      "SELECT 1 FROM ustate_lease_keys k WHERE"
				      " k.key IN (SELECT key FROM"
				      " temp.ustate_restore_seen WHERE type ="
				      " 1) AND NOT EXISTS (SELECT 1 FROM"
				      " ustate_leases l WHERE l.name = k.lease"
				      " AND l.deadline > ?1) LIMIT 1",
				      -1, &st, NULL));
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(st, 1, r->now);
	rc = sqlite3_step(st);
	rc = rc == SQLITE_ROW	 ? -ENOENT
	     : rc == SQLITE_DONE ? 0
				 : sq_errno(r->c->db, rc);
	sqlite3_finalize(st);
	return rc;
}

/* Write one record; -EEXIST when its path came before. */
static int restore_record(struct restore *r, const ustate_record *rec)
{
	ustate_op op = {.type = USTATE_OP_MKDIR, .key = rec->key};
	ustate_txn_result res = {0};
	uint64_t v;
	int rc;

	sqlite3_bind_int(r->seen, 1, rec->type);
	sqlite3_bind_text(r->seen, 2, rec->key, -1, SQLITE_STATIC);
	rc = sqlite3_step(r->seen);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(r->c->db, rc);
	if (rc == 0 && sqlite3_changes(r->c->db) == 0)
		rc = -EEXIST;
	sqlite3_reset(r->seen);
	if (rc < 0)
		return rc;
	if (rec->type == USTATE_RECORD_LEASE)
		return restore_lease(r, rec);
	if (rec->type == USTATE_RECORD_KEY) {
		rc = restore_key(r, rec);
		if (rc == 0)
			rc = restore_meta(r, rec);
		return rc < 0 ? rc : restore_key_lease(r, rec);
	}
	/* The root is no record: only its metadata is restored. */
	if (!strcmp(rec->key, "/"))
		return restore_meta(r, rec);
	rc = restore_room(r);
	if (rc == 0)
		rc = apply_op(r->c, &op, 0, &v, &res);
	if (rc == 0 && v)
		rc = restore_changed(r);
	return rc < 0 ? rc : restore_meta(r, rec);
}

/*
 * Drop the directory records not restored, each a change (the trigger's):
 * in the open revision, or in one opened for them.
 */
static int restore_prune_dirs(struct restore *r)
{
	bool opened = !r->open;
	uint64_t n;
	int rc = 0;

	if (opened)
		rc = exec1(r->c, ST_PENDING_ON);
	if (rc == 0)
		rc = sq_errno(r->c->db,
			      sqlite3_exec(r->c->db,
					   "DELETE FROM ustate_dirs WHERE path"
					   " NOT IN (SELECT key FROM"
					   " temp.ustate_restore_seen WHERE"
					   " type = 2)",
					   NULL, NULL, NULL));
	if (rc < 0)
		return rc;
	n = (uint64_t)sqlite3_changes(r->c->db);
	if (opened && !n) {
		rc = exec1(r->c, ST_PENDING_OFF);
		return rc ? rc : exec1(r->c, ST_REVISION_BACK);
	}
	r->open = true;
	r->in_rev = opened ? n : r->in_rev + n;
	return 0;
}

/* USTATE_RESTORE_REPLACE: remove every key and record not restored. */
static int restore_prune(struct restore *r)
{
	ustate_op op = {.type = USTATE_OP_DELETE};
	ustate_txn_result res = {0};
	uint64_t v;
	int rc;

	/* The keys to delete, as type 0, so no walk reads what it deletes. */
	rc = sqlite3_exec(r->c->db,
			  "INSERT INTO temp.ustate_restore_seen SELECT 0, key"
			  " FROM kv_store WHERE key NOT IN (SELECT key FROM"
			  " temp.ustate_restore_seen WHERE type = 1)",
			  NULL, NULL, NULL);
	rc = sq_errno(r->c->db, rc);
	if (rc == 0)
		rc = restore_prune_dirs(r);
	while (rc == 0 && (rc = sqlite3_step(r->gone)) == SQLITE_ROW) {
		op.key = (const char *)sqlite3_column_text(r->gone, 0);
		rc = restore_room(r);
		if (rc == 0)
			rc = apply_op(r->c, &op, 0, &v, &res);
		if (rc == 0) {
			r->res->deleted++;
			rc = restore_changed(r);
		}
	}
	rc = rc == SQLITE_DONE ? 0 : rc < 0 ? rc : sq_errno(r->c->db, rc);
	sqlite3_reset(r->gone);
	return rc;
}

/* The body of sq_restore(), inside BEGIN IMMEDIATE on the writer. */
static int restore_run(struct sq *q, struct restore *r, ustate_import_fn next,
		       void *arg, unsigned flags)
{
	sqlite3 *db = r->c->db;
	sqlite3_stmt *st = NULL;
	uint64_t compacted;
	ustate_record rec;
	unsigned expired = 0;
	int rc, more = 0;

	/* Overdue leases end first, each in a revision of its own. */
	rc = leases_due(r->c, r->now, &expired);
	if (rc < 0)
		return rc;
	if (!flags) {
		rc = stmt(r->c, ST_NONEMPTY, &st);
		if (rc < 0)
			return rc;
		rc = sqlite3_step(st);
		rc = rc != SQLITE_ROW		 ? sq_errno(db, rc)
		     : sqlite3_column_int(st, 0) ? -ENOTEMPTY
						 : 0;
		done(st);
		if (rc < 0)
			return rc;
	}
	rc = sq_errno(db, sqlite3_exec(db, restore_seen_sql, NULL, NULL, NULL));
	if (rc == 0)
		rc = sq_errno(db,
			      sqlite3_prepare_v2(
				      db,
				      "INSERT INTO temp.ustate_restore_seen"
				      " VALUES (?1, ?2) ON CONFLICT DO NOTHING",
				      -1, &r->seen, NULL));
	if (rc == 0)
		rc = sq_errno(db,
			      sqlite3_prepare_v2(
				      db,
				      "SELECT key FROM temp.ustate_restore_seen"
				      " WHERE type = 0",
				      -1, &r->gone, NULL));
	while (rc == 0 && (more = next(arg, &rec)) > 0)
		rc = restore_record(r, &rec);
	if (rc == 0 && more < 0)
		rc = more;
	if (rc == 0 && (flags & USTATE_RESTORE_REPLACE))
		rc = restore_prune(r);
	if (rc == 0)
		rc = restore_leases_end(r, flags);
	if (rc == 0 && r->open)
		rc = exec1(r->c, ST_PENDING_OFF);
	if (rc == 0)
		rc = state_on(r->c, &r->res->revision, &compacted);
	if (rc == 0 && r->res->written + r->res->deleted)
		rc = trim(q, r->c, r->res->revision, compacted);
	if (rc < 0)
		return rc;
	/* The table goes with the transaction, so finish its statements. */
	sqlite3_finalize(r->seen);
	sqlite3_finalize(r->gone);
	r->seen = r->gone = NULL;
	return sq_errno(db,
			sqlite3_exec(db, "DROP TABLE temp.ustate_restore_seen",
				     NULL, NULL, NULL));
}

static int sq_restore(void *b, ustate_import_fn next, void *arg, unsigned flags,
		      ustate_restore_result *res)
{
	struct sq *q = b;
	struct restore r = {.res = res, .now = ustate_clock_ms()};
	int rc;

	writer_lock(q);
	r.c = q->writer;
	rc = exec1(r.c, ST_BEGIN);
	if (rc < 0)
		goto out;
	rc = restore_run(q, &r, next, arg, flags);
	sqlite3_finalize(r.seen);
	sqlite3_finalize(r.gone);
	if (rc == 0)
		rc = exec1(r.c, ST_COMMIT);
	/* The rollback also drops the restore's table. */
	if (rc < 0 && !sqlite3_get_autocommit(r.c->db))
		exec1(r.c, ST_ROLLBACK);
out:
	writer_unlock(q);
	return rc;
}

/* The value of a pragma that returns one integer. */
static int pragma_int(sqlite3 *db, const char *sql, int64_t *v)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(st, 0);
	rc = rc == SQLITE_ROW ? 0 : sq_errno(db, rc ? rc : SQLITE_ERROR);
	sqlite3_finalize(st);
	return rc;
}

/* Copy steps of pages from src to dst, reporting bytes. */
static int backup_copy(sqlite3 *dst, sqlite3 *src, ustate_progress_fn progress,
		       void *arg)
{
	sqlite3_backup *bk;
	int64_t page = 0;
	uint64_t total, left;
	int rc, step, fin;

	rc = pragma_int(src, "PRAGMA page_size", &page);
	if (rc < 0)
		return rc;
	bk = sqlite3_backup_init(dst, "main", src, "main");
	if (!bk)
		return sq_errno(dst, sqlite3_extended_errcode(dst));
	do {
		step = sqlite3_backup_step(bk, BACKUP_STEP_PAGES);
		if (progress && (step == SQLITE_OK || step == SQLITE_DONE)) {
			total = (uint64_t)sqlite3_backup_pagecount(bk);
			left = (uint64_t)sqlite3_backup_remaining(bk);
			rc = progress(arg, (total - left) * page, total * page);
		}
	} while (rc == 0 && step == SQLITE_OK);
	fin = sqlite3_backup_finish(bk);
	if (rc == 0 && step != SQLITE_DONE)
		rc = sq_errno(dst, step);
	if (rc == 0 && fin != SQLITE_OK)
		rc = sq_errno(dst, fin);
	return rc;
}

static int sq_backup(void *b, const char *path, ustate_progress_fn progress,
		     void *arg)
{
	uint64_t rev, compacted;
	sqlite3 *dst = NULL;
	struct sq *q = b;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = sqlite3_open_v2(path, &dst,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = sq_errno(dst, rc);
		goto out;
	}
	/*
	 * A read transaction held across the steps pins one snapshot, so the
	 * copy never restarts for a commit made meanwhile; in WAL mode (every
	 * store is, see schema_setup()) a reader blocks no writer.
	 */
	rc = sq_errno(c->db, sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL));
	if (rc == 0)
		rc = state_on(c, &rev, &compacted);
	if (rc == 0)
		rc = backup_copy(dst, c->db, progress, arg);
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
out:
	if (sqlite3_close(dst) != SQLITE_OK && rc == 0)
		rc = -EIO;
	reader_put(q, c);
	return rc;
}

/* What one check of sq_check() works with. */
struct check {
	struct conn *c;
	ustate_problem_fn fn;
	void *arg;
	uint64_t rev, compacted;
	uint64_t last; /* the history walk: the last revision seen */
	bool broken;   /* tables are missing: skip the other checks */
};

/*
 * Run sql, with ?1 bound to the revision and ?2 to the compaction point
 * (when the statement has them), and hand each row to row().
 */
static int check_query(struct check *k, const char *sql,
		       int (*row)(struct check *k, sqlite3_stmt *st))
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(k->c->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sq_errno(k->c->db, rc);
	if (sqlite3_bind_parameter_count(st) >= 1)
		sqlite3_bind_int64(st, 1, (sqlite3_int64)k->rev);
	if (sqlite3_bind_parameter_count(st) >= 2)
		sqlite3_bind_int64(st, 2, (sqlite3_int64)k->compacted);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = row(k, st);
		if (rc < 0)
			break;
	}
	rc = rc == SQLITE_DONE ? 0 : rc < 0 ? rc : sq_errno(k->c->db, rc);
	sqlite3_finalize(st);
	return rc;
}

static const char *col(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);

	return t ? t : "";
}

static int check_integrity_row(struct check *k, sqlite3_stmt *st)
{
	if (!strcmp(col(st, 0), "ok"))
		return 0;
	return ustate_report(k->fn, k->arg, "integrity", NULL, "%s",
			     col(st, 0));
}

static int check_schema_row(struct check *k, sqlite3_stmt *st)
{
	k->broken |= !strcmp(col(st, 1), "table");
	return ustate_report(k->fn, k->arg, "schema", NULL,
			     "the %s %s is missing", col(st, 1), col(st, 0));
}

static int check_state_row(struct check *k, sqlite3_stmt *st)
{
	int64_t rows = sqlite3_column_int64(st, 0);
	int rc = 0;

	k->rev = sqlite3_column_int64(st, 1);
	k->compacted = sqlite3_column_int64(st, 3);
	/* The history walk starts after the compaction point. */
	k->last = k->compacted;
	if (rows != 1)
		rc = ustate_report(k->fn, k->arg, "state", NULL,
				   "ustate_state has %lld rows, not 1",
				   (long long)rows);
	if (rc == 0 && sqlite3_column_int64(st, 2))
		rc = ustate_report(k->fn, k->arg, "state", NULL,
				   "a transaction left pending set");
	if (rc == 0 && k->compacted > k->rev)
		rc = ustate_report(k->fn, k->arg, "state", NULL,
				   "history compacted to revision %llu, past "
				   "the store revision %llu",
				   (unsigned long long)k->compacted,
				   (unsigned long long)k->rev);
	return rc;
}

static int check_key_row(struct check *k, sqlite3_stmt *st)
{
	const char *key = col(st, 0);
	int rc = 0;

	if (ustate_key_valid(key) < 0)
		rc = ustate_report(k->fn, k->arg, "key-invalid", key,
				   "the key breaks the key rules");
	if (rc == 0 && (sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
			sqlite3_column_int64(st, 1) < 1))
		rc = ustate_report(k->fn, k->arg, "version", key,
				   "version %s is not a number >= 1",
				   col(st, 1));
	if (rc == 0 &&
	    sqlite3_column_int64(st, 2) > sqlite3_column_int64(st, 3))
		rc = ustate_report(k->fn, k->arg, "timestamps", key,
				   "created at %lld, after its update at %lld",
				   (long long)sqlite3_column_int64(st, 2),
				   (long long)sqlite3_column_int64(st, 3));
	return rc;
}

static int check_keyrev_missing_row(struct check *k, sqlite3_stmt *st)
{
	return ustate_report(k->fn, k->arg, "keyrev-missing", col(st, 0),
			     "the key has no ustate_keyrev row (no revision)");
}

static int check_keyrev_orphan_row(struct check *k, sqlite3_stmt *st)
{
	return ustate_report(k->fn, k->arg, "keyrev-orphan", col(st, 0),
			     "ustate_keyrev has a row for a missing key");
}

static int check_keyrev_range_row(struct check *k, sqlite3_stmt *st)
{
	return ustate_report(k->fn, k->arg, "keyrev-range", col(st, 0),
			     "modified at revision %lld, outside 1..%llu",
			     (long long)sqlite3_column_int64(st, 1),
			     (unsigned long long)k->rev);
}

/* Each row of the history, in id order: ranges, types and gaps. */
static int check_history_row(struct check *k, sqlite3_stmt *st)
{
	uint64_t rev = sqlite3_column_int64(st, 0);
	int type = sqlite3_column_int(st, 1);
	const char *key = col(st, 2);
	int64_t version = sqlite3_column_int64(st, 3);
	int rc = 0;

	if (rev <= k->compacted || rev > k->rev)
		return ustate_report(k->fn, k->arg, "history-range", key,
				     "a change at revision %llu, outside the "
				     "retained %llu..%llu",
				     (unsigned long long)rev,
				     (unsigned long long)k->compacted + 1,
				     (unsigned long long)k->rev);
	if (rev > k->last + 1)
		rc = ustate_report(k->fn, k->arg, "history-gap", NULL,
				   "revisions %llu..%llu have no change",
				   (unsigned long long)k->last + 1,
				   (unsigned long long)rev - 1);
	if (rev > k->last)
		k->last = rev;
	if (rc == 0 &&
	    (type < USTATE_EVENT_CREATED || type > USTATE_EVENT_DIR_DELETED))
		rc = ustate_report(k->fn, k->arg, "history-type", key,
				   "a change of unknown type %d at revision "
				   "%llu",
				   type, (unsigned long long)rev);
	else if (rc == 0 &&
		 (type == USTATE_EVENT_DELETED ||
		  type >= USTATE_EVENT_DIR_CREATED) != (version == 0))
		rc = ustate_report(k->fn, k->arg, "history-version", key,
				   "a change of type %d at revision %llu has "
				   "version %lld",
				   type, (unsigned long long)rev,
				   (long long)version);
	return rc;
}

/* The last change of each key against the key as it is. */
static int check_last_row(struct check *k, sqlite3_stmt *st)
{
	const char *key = col(st, 0);
	unsigned long long rev = sqlite3_column_int64(st, 1);
	int type = sqlite3_column_int(st, 2);
	long long hv = sqlite3_column_int64(st, 3);
	bool exists = sqlite3_column_type(st, 4) != SQLITE_NULL;
	long long kv = sqlite3_column_int64(st, 4);
	bool has_rev = sqlite3_column_type(st, 5) != SQLITE_NULL;
	unsigned long long mod = sqlite3_column_int64(st, 5);

	if (type == USTATE_EVENT_DELETED && exists)
		return ustate_report(k->fn, k->arg, "history-last", key,
				     "the last change, at revision %llu, "
				     "deleted the key, but it is at version "
				     "%lld",
				     rev, kv);
	if (type == USTATE_EVENT_DELETED)
		return 0;
	if (!exists)
		return ustate_report(k->fn, k->arg, "history-last", key,
				     "the last change, at revision %llu, wrote "
				     "version %lld, but the key is missing",
				     rev, hv);
	if (kv != hv)
		return ustate_report(k->fn, k->arg, "history-last", key,
				     "the last change, at revision %llu, wrote "
				     "version %lld, but the key is at %lld",
				     rev, hv, kv);
	if (has_rev && mod != rev)
		return ustate_report(k->fn, k->arg, "keyrev-revision", key,
				     "modified at revision %llu, but its last "
				     "change is at %llu",
				     mod, rev);
	return 0;
}

static int check_history_missing_row(struct check *k, sqlite3_stmt *st)
{
	return ustate_report(k->fn, k->arg, "history-missing", col(st, 0),
			     "modified at revision %lld, which the history "
			     "retains, but the history has no change of it",
			     (long long)sqlite3_column_int64(st, 1));
}

static int check_dir_row(struct check *k, sqlite3_stmt *st)
{
	if (ustate_key_valid(col(st, 0)) == 0)
		return 0;
	return ustate_report(k->fn, k->arg, "dir-invalid", col(st, 0),
			     "the directory record breaks the key rules");
}

/* The checks, in order; those after the schema need its tables. */
static const struct {
	const char *sql;
	int (*row)(struct check *k, sqlite3_stmt *st);
} checks[] = {
	{"PRAGMA integrity_check", check_integrity_row},
	{"WITH t(name, type) AS (VALUES ('kv_store', 'table'),"
	 " ('ustate_state', 'table'), ('ustate_keyrev', 'table'),"
	 " ('ustate_dirs', 'table'), ('ustate_history', 'table'),"
	 " ('ustate_kv_insert', 'trigger'), ('ustate_kv_write', 'trigger'),"
	 " ('ustate_kv_rename', 'trigger'), ('ustate_kv_delete', 'trigger'),"
	 " ('ustate_dirs_insert', 'trigger'), ('ustate_dirs_delete', 'trigger'))"
	 " SELECT name, type FROM t WHERE NOT EXISTS (SELECT 1 FROM"
	 " sqlite_master m WHERE m.name = t.name AND m.type = t.type)",
	 check_schema_row},
	{"SELECT count(*), max(revision), max(pending), max(compacted)"
	 " FROM ustate_state",
	 check_state_row},
	{"SELECT key, version, created_at, updated_at FROM kv_store",
	 check_key_row},
	{"SELECT k.key FROM kv_store k WHERE NOT EXISTS"
	 " (SELECT 1 FROM ustate_keyrev r WHERE r.key = k.key)",
	 check_keyrev_missing_row},
	{"SELECT r.key FROM ustate_keyrev r WHERE NOT EXISTS"
	 " (SELECT 1 FROM kv_store k WHERE k.key = r.key)",
	 check_keyrev_orphan_row},
	{"SELECT key, mod_revision FROM ustate_keyrev"
	 " WHERE mod_revision < 1 OR mod_revision > ?1",
	 check_keyrev_range_row},
	{"SELECT id >> 20, type, key, version FROM ustate_history ORDER BY id",
	 check_history_row},
	{"SELECT h.key, h.id >> 20, h.type, h.version, k.version,"
	 " r.mod_revision FROM (SELECT key, max(id) AS id FROM ustate_history"
	 " WHERE type <= 3 GROUP BY key) l JOIN ustate_history h ON h.id = l.id"
	 " LEFT JOIN kv_store k ON k.key = l.key"
	 " LEFT JOIN ustate_keyrev r ON r.key = l.key",
	 check_last_row},
	{"SELECT k.key, r.mod_revision FROM kv_store k JOIN ustate_keyrev r"
	 " ON r.key = k.key LEFT JOIN (SELECT DISTINCT key FROM"
	 " ustate_history WHERE type <= 3) h ON h.key = k.key"
	 " WHERE r.mod_revision > ?2 AND h.key IS NULL",
	 check_history_missing_row},
	{"SELECT path FROM ustate_dirs", check_dir_row},
};

static int sq_check(void *b, ustate_problem_fn fn, void *arg)
{
	struct check k = {.fn = fn, .arg = arg};
	struct sq *q = b;
	size_t i;
	int rc;

	k.c = reader_get(q, &rc);
	if (!k.c)
		return rc;
	/* One snapshot for every check, so they agree with each other. */
	rc = sq_errno(k.c->db,
		      sqlite3_exec(k.c->db, "BEGIN", NULL, NULL, NULL));
	for (i = 0; rc == 0 && i < sizeof(checks) / sizeof(checks[0]); i++) {
		if (k.broken)
			break;
		rc = check_query(&k, checks[i].sql, checks[i].row);
	}
	if (rc == 0 && !k.broken && k.rev > k.last)
		rc = ustate_report(fn, arg, "history-gap", NULL,
				   "revisions %llu..%llu have no change",
				   (unsigned long long)k.last + 1,
				   (unsigned long long)k.rev);
	sqlite3_exec(k.c->db, "COMMIT", NULL, NULL, NULL);
	reader_put(q, k.c);
	return rc;
}

static int sq_compact(void *b, uint64_t revision, uint64_t *removed)
{
	uint64_t rev, compacted, n = 0;
	struct sq *q = b;
	struct conn *c;
	int rc;

	writer_lock(q);
	c = q->writer;
	rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		goto out;
	rc = state_on(c, &rev, &compacted);
	if (rc == 0 && revision > rev + 1)
		rc = -EINVAL;
	if (rc == 0 && revision - 1 > compacted)
		rc = drop_history(c, revision, &n);
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0 && !sqlite3_get_autocommit(c->db))
		exec1(c, ST_ROLLBACK);
	if (rc == 0 && removed)
		*removed = n;
out:
	writer_unlock(q);
	return rc;
}

/*
 * The metadata of path (which: USTATE_META_*) on connection c, in the
 * read it is part of; -ENOENT when none.
 */
/*
 * Whether table name exists (*known, atomic, once it did): 0, -ENOENT when
 * not (a read-only store may predate it, or gain it later).
 */
static int table_known(struct conn *c, bool *known, const char *name)
{
	bool present;
	int rc;

	if (__atomic_load_n(known, __ATOMIC_RELAXED))
		return 0;
	rc = table_present(c, name, &present);
	if (rc == 0 && !present)
		rc = -ENOENT;
	if (rc == 0)
		__atomic_store_n(known, true, __ATOMIC_RELAXED);
	return rc;
}

static int conn_meta(struct sq *q, struct conn *c, const char *path,
		     unsigned which, ustate_meta *out)
{
	sqlite3_stmt *st = NULL;
	bool present, times;
	int rc;

	rc = table_known(c, &q->has_meta, "ustate_meta");
	if (rc < 0)
		return rc;
	/* ... and the times' table, which came later. */
	if (!__atomic_load_n(&q->has_times, __ATOMIC_RELAXED)) {
		rc = table_present(c, "ustate_meta_times", &present);
		if (rc < 0)
			return rc;
		__atomic_store_n(&q->has_times, present, __ATOMIC_RELAXED);
	}
	times = __atomic_load_n(&q->has_times, __ATOMIC_RELAXED);
	rc = stmt(c, times ? ST_META_GET_TIMES : ST_META_GET, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, which == USTATE_META_DIR);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = (ustate_meta){
			.uid = (uint32_t)sqlite3_column_int64(st, 0),
			.gid = (uint32_t)sqlite3_column_int64(st, 1),
			.mode = (uint32_t)sqlite3_column_int64(st, 2)};
		if (times) {
			out->flags = (uint32_t)sqlite3_column_int64(st, 3);
			out->mtime_ns = sqlite3_column_int64(st, 4);
			out->ctime_ns = sqlite3_column_int64(st, 5);
			/* A key's mtime holds until its next write. */
			if (!sqlite3_column_int(st, 6))
				out->flags &= ~(uint32_t)USTATE_META_MTIME;
		}
		rc = 0;
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : sq_errno(c->db, rc);
	}
	done(st);
	return rc;
}

static int sq_meta_get(void *b, const char *path, unsigned which,
		       ustate_meta *out)
{
	struct sq *q = b;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = conn_meta(q, c, path, which, out);
	reader_put(q, c);
	return rc;
}

/*
 * The xattrs of path on connection c, as the blob of backend_i.h's
 * xattrs() (*blob, free it); -ENOENT when none.
 */
static int conn_xattrs(struct sq *q, struct conn *c, const char *path,
		       unsigned which, void **blob, size_t *len)
{
	sqlite3_stmt *st = NULL;
	size_t used = 0, cap = 0;
	char *buf = NULL;
	int rc;

	rc = table_known(c, &q->has_xattrs, "ustate_xattrs");
	if (rc < 0)
		return rc;
	rc = stmt(c, ST_XATTRS_GET, &st);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, which == USTATE_META_DIR);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		rc = ustate_xattr_append(
			&buf, &used, &cap,
			(const char *)sqlite3_column_text(st, 0),
			sqlite3_column_blob(st, 1),
			(size_t)sqlite3_column_bytes(st, 1));
		if (rc < 0)
			break;
	}
	if (rc == SQLITE_DONE)
		rc = used ? 0 : -ENOENT;
	else if (rc > 0)
		rc = sq_errno(c->db, rc);
	done(st);
	if (rc == 0) {
		*blob = buf;
		*len = used;
		buf = NULL;
	}
	free(buf);
	return rc;
}

static int sq_xattrs(void *b, const char *path, unsigned which, void **blob,
		     size_t *len)
{
	struct sq *q = b;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = conn_xattrs(q, c, path, which, blob, len);
	reader_put(q, c);
	return rc;
}

/* ---- leases ------------------------------------------------------------ */

/* Run statement i with ?1 name and ?2 at, and ignore its rows. */
static int exec_name_at(struct conn *c, int i, const char *name, int64_t at)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, i, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, name, at);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/*
 * End lease name inside the writer's transaction: its keys deleted in
 * one revision of their own (*rev receives it, 0 when it had none), then
 * the lease itself.
 */
static int lease_end(struct conn *c, const char *name, uint64_t *rev)
{
	uint64_t compacted;
	int changes, rc;

	*rev = 0;
	rc = exec1(c, ST_PENDING_ON);
	if (rc == 0)
		rc = exec_name_at(c, ST_LEASE_DEL_KEYS, name, 0);
	changes = sqlite3_changes(c->db);
	if (rc == 0)
		rc = exec1(c, ST_PENDING_OFF);
	if (rc == 0 && !changes)
		rc = exec1(c, ST_REVISION_BACK);
	if (rc == 0 && changes)
		rc = state_on(c, rev, &compacted);
	if (rc == 0)
		rc = exec_name_at(c, ST_LEASE_DROP, name, 0);
	return rc;
}

/* End every lease overdue at now, in the writer's transaction. */
static int leases_due(struct conn *c, int64_t now, unsigned *expired)
{
	sqlite3_stmt *st = NULL;
	char *name;
	uint64_t rev;
	int rc;

	for (;;) {
		rc = stmt(c, ST_LEASE_DUE, &st);
		if (rc < 0)
			return rc;
		sqlite3_bind_int64(st, 1, now);
		rc = sqlite3_step(st);
		name = NULL;
		if (rc == SQLITE_ROW) {
			name = strdup((const char *)sqlite3_column_text(st, 0));
			rc = name ? 0 : -ENOMEM;
		} else {
			rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
		}
		done(st);
		if (rc < 0 || !name)
			return rc;
		rc = lease_end(c, name, &rev);
		free(name);
		if (rc < 0)
			return rc;
		++*expired;
	}
}

/* Run ST_LEASE_UPSERT or ST_LEASE_TOUCH: -ENOENT when no row. */
static int lease_set(struct conn *c, int i, struct lease_write *w)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, i, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, w->name, w->now);
	if (i == ST_LEASE_UPSERT)
		sqlite3_bind_int64(st, 3, w->ttl);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		w->got_ttl = sqlite3_column_int64(st, 0);
		w->got_dl = sqlite3_column_int64(st, 1);
		rc = sqlite3_step(st);
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_NOTFOUND; /* no row */
	}
	rc = rc == SQLITE_DONE	     ? 0
	     : rc == SQLITE_NOTFOUND ? -ENOENT
				     : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Run the owner statement i (ST_LEASE_OWN or _DISOWN) for w. */
static int lease_owner_write(struct conn *c, int i, struct lease_write *w)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, i, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, w->name, 0);
	if (i == ST_LEASE_OWN) {
		sqlite3_bind_int64(st, 3, w->owner->uid);
		sqlite3_bind_int64(st, 4, w->owner->gid);
		sqlite3_bind_int64(st, 5, w->owner->mode & 07777);
	}
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/* Read the owner of w's lease into w->got_owner (w->owned), if any. */
static int lease_owner_read(struct conn *c, struct lease_write *w)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = stmt(c, ST_LEASE_OWNER, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, w->name, 0);
	rc = sqlite3_step(st);
	w->owned = rc == SQLITE_ROW;
	if (w->owned) {
		w->got_owner.uid = (uint32_t)sqlite3_column_int64(st, 0);
		w->got_owner.gid = (uint32_t)sqlite3_column_int64(st, 1);
		w->got_owner.mode = (uint32_t)sqlite3_column_int64(st, 2);
	}
	rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_errno(c->db, rc);
	done(st);
	return rc;
}

/*
 * A grant: a lease it makes gets w->owner (a row of an owner left by
 * hand goes), a live one keeps its own.
 */
static int lease_grant_body(struct conn *c, struct lease_write *w)
{
	int rc, live;

	live = lease_alive(c, w->name, w->now);
	if (live < 0 && live != -ENOENT)
		return live;
	rc = lease_set(c, ST_LEASE_UPSERT, w);
	if (rc == 0 && live == -ENOENT)
		rc = lease_owner_write(
			c, w->owner ? ST_LEASE_OWN : ST_LEASE_DISOWN, w);
	return rc < 0 ? rc : lease_owner_read(c, w);
}

/* The body of sq_lease_write(), in the writer's transaction. */
static int lease_write_body(struct conn *c, struct lease_write *w)
{
	int rc;

	rc = leases_due(c, w->now, &w->expired);
	if (rc < 0)
		return rc;
	switch (w->act) {
	case LEASE_GRANT:
		return lease_grant_body(c, w);
	case LEASE_KEEPALIVE:
		rc = lease_set(c, ST_LEASE_TOUCH, w);
		return rc < 0 ? rc : lease_owner_read(c, w);
	case LEASE_OWN:
		rc = lease_alive(c, w->name, w->now);
		return rc < 0 ? rc : lease_owner_write(c, ST_LEASE_OWN, w);
	case LEASE_REVOKE:
		rc = lease_alive(c, w->name, w->now);
		if (rc == 0)
			rc = lease_end(c, w->name, &w->revision);
		if (rc == 0)
			w->expired++;
		return rc;
	case LEASE_EXPIRE:
		return 0;
	}
	return -EINVAL;
}

/*
 * Every lease write takes the writer, as a transaction does, and expires
 * the overdue leases first in the same transaction. An -ENOENT of the
 * act itself still commits the expiry that came before it.
 */
static int sq_lease_write(struct sq *q, struct lease_write *w)
{
	struct conn *c = q->writer;
	int rc, act;

	pthread_mutex_lock(&q->wlock);
	rc = file_check(c);
	if (rc == 0)
		rc = exec1(c, ST_BEGIN);
	if (rc < 0)
		goto out;
	act = lease_write_body(c, w);
	rc = act == -ENOENT ? 0 : act;
	if (rc == 0)
		rc = exec1(c, ST_COMMIT);
	if (rc < 0 && !sqlite3_get_autocommit(c->db))
		exec1(c, ST_ROLLBACK);
	if (rc < 0)
		w->expired = 0;
	else
		rc = act;
out:
	pthread_mutex_unlock(&q->wlock);
	return rc;
}

/* The description of a lease that sq_lease_write() left in w. */
static int lease_info_of(struct lease_write *w, ustate_lease_info **out)
{
	ustate_lease_info *li;

	if (!out)
		return 0;
	li = ustate_lease_info_new(w->name, w->got_ttl, w->got_dl, w->now);
	if (!li)
		return -ENOMEM;
	ustate_lease_info_owner(li, w->owned ? &w->got_owner : NULL);
	*out = li;
	return 0;
}

static int sq_lease_grant(void *b, const char *name, int64_t ttl,
			  const ustate_meta *owner, int64_t now,
			  ustate_lease_info **out)
{
	struct lease_write w = {.act = LEASE_GRANT,
				.name = name,
				.ttl = ttl,
				.now = now,
				.owner = owner};
	int rc = sq_lease_write(b, &w);

	return rc < 0 ? rc : lease_info_of(&w, out);
}

static int sq_lease_owner(void *b, const char *name, const ustate_meta *owner,
			  int64_t now)
{
	struct lease_write w = {
		.act = LEASE_OWN, .name = name, .now = now, .owner = owner};

	return sq_lease_write(b, &w);
}

static int sq_lease_keepalive(void *b, const char *name, int64_t now,
			      ustate_lease_info **out)
{
	struct lease_write w = {
		.act = LEASE_KEEPALIVE, .name = name, .now = now};
	int rc = sq_lease_write(b, &w);

	return rc < 0 ? rc : lease_info_of(&w, out);
}

static int sq_lease_revoke(void *b, const char *name, int64_t now,
			   uint64_t *revision)
{
	struct lease_write w = {.act = LEASE_REVOKE, .name = name, .now = now};
	int rc = sq_lease_write(b, &w);

	*revision = w.revision;
	return rc;
}

/* Read column 0 of every row of st into a new array; st is reset. */
static int rows_text(struct conn *c, sqlite3_stmt *st, char ***out, size_t *n)
{
	char **v = NULL, **nv;
	size_t len = 0, cap = 0;
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[len] = strdup((const char *)sqlite3_column_text(st, 0));
		if (!v[len])
			break;
		len++;
	}
	rc = rc == SQLITE_DONE	? 0
	     : rc == SQLITE_ROW ? -ENOMEM
				: sq_errno(c->db, rc);
	done(st);
	if (rc < 0) {
		ustate_list_free(v, len);
		return rc;
	}
	*out = len ? v : NULL;
	if (!len)
		free(v);
	*n = len;
	return 0;
}

/* sq_lease_get() on reader c, inside one read transaction. */
static int lease_get_on(struct conn *c, bool owners, const char *name,
			int64_t now, ustate_lease_info **out)
{
	sqlite3_stmt *st = NULL;
	ustate_lease_info *li = NULL;
	ustate_meta owner = {0};
	int rc;

	rc = stmt(c, owners ? ST_LEASE_GET_OWNED : ST_LEASE_GET, &st);
	if (rc < 0)
		return rc;
	bind_name_at(st, name, now);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		li = ustate_lease_info_new(name, sqlite3_column_int64(st, 0),
					   sqlite3_column_int64(st, 1), now);
		rc = li ? 0 : -ENOMEM;
		if (li && owners && sqlite3_column_type(st, 2) != SQLITE_NULL) {
			owner.uid = (uint32_t)sqlite3_column_int64(st, 2);
			owner.gid = (uint32_t)sqlite3_column_int64(st, 3);
			owner.mode = (uint32_t)sqlite3_column_int64(st, 4);
			ustate_lease_info_owner(li, &owner);
		}
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : sq_errno(c->db, rc);
	}
	done(st);
	if (rc == 0)
		rc = stmt(c, ST_LEASE_KEYS, &st);
	if (rc == 0) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		rc = rows_text(c, st, &li->keys, &li->nkeys);
	}
	if (rc < 0) {
		ustate_lease_info_free(li);
		return rc;
	}
	*out = li;
	return 0;
}

static int sq_lease_get(void *b, const char *name, int64_t now,
			ustate_lease_info **out)
{
	struct sq *q = b;
	struct conn *c;
	int rc;

	if (!q->has_leases)
		return -ENOENT;
	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = exec1(c, ST_BEGIN_READ);
	if (rc == 0) {
		rc = lease_get_on(c, q->has_owners, name, now, out);
		exec1(c, ST_COMMIT);
	}
	reader_put(q, c);
	return rc;
}

static int sq_lease_list(void *b, int64_t now, char ***names, size_t *n)
{
	sqlite3_stmt *st = NULL;
	struct sq *q = b;
	struct conn *c;
	int rc;

	if (!q->has_leases) {
		*names = NULL;
		*n = 0;
		return 0;
	}
	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = stmt(c, ST_LEASE_LIST, &st);
	if (rc == 0) {
		sqlite3_bind_int64(st, 1, now);
		rc = rows_text(c, st, names, n);
	}
	reader_put(q, c);
	return rc;
}

/* The earliest deadline of any lease, INT64_MAX for none, on a reader. */
static int lease_next(struct sq *q, int64_t *next)
{
	sqlite3_stmt *st = NULL;
	struct conn *c;
	int rc;

	c = reader_get(q, &rc);
	if (!c)
		return rc;
	rc = stmt(c, ST_LEASE_NEXT, &st);
	if (rc == 0) {
		rc = sqlite3_step(st);
		*next = rc == SQLITE_ROW && sqlite3_column_type(st, 0) !=
						    SQLITE_NULL
				? sqlite3_column_int64(st, 0)
				: INT64_MAX;
		rc = rc == SQLITE_ROW ? 0 : sq_errno(c->db, rc);
		done(st);
	}
	reader_put(q, c);
	return rc;
}

/*
 * A read finds whether anything is due (the thread asks twice a second);
 * only then does it take the writer, and under the database's write lock
 * it looks again, so of several processes only the first ends a lease.
 */
static int sq_lease_expire(void *b, int64_t now, unsigned *expired,
			   int64_t *next)
{
	struct lease_write w = {.act = LEASE_EXPIRE, .now = now};
	struct sq *q = b;
	int rc;

	*expired = 0;
	rc = lease_next(q, next);
	if (rc < 0 || *next > now)
		return rc;
	rc = sq_lease_write(q, &w);
	*expired = w.expired;
	return rc < 0 ? rc : lease_next(q, next);
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
	.export = sq_export,
	.restore = sq_restore,
	.backup = sq_backup,
	.check = sq_check,
	.compact = sq_compact,
	.meta_get = sq_meta_get,
	.xattrs = sq_xattrs,
	.node = sq_node,
	.lease_grant = sq_lease_grant,
	.lease_owner = sq_lease_owner,
	.get_many = sq_get_many,
	.lease_keepalive = sq_lease_keepalive,
	.lease_revoke = sq_lease_revoke,
	.lease_get = sq_lease_get,
	.lease_list = sq_lease_list,
	.lease_expire = sq_lease_expire,
};

int ustate_sqlite_global_tune(unsigned flags)
{
	int rc;

	if (!(flags & USTATE_TUNE_NO_MEMSTATS))
		return 0;
	rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/*
	 * SQLite refuses every configuration (MISUSE) once it is
	 * initialised: the one way this call can fail.
	 */
	if (rc == SQLITE_MISUSE)
		return -EBUSY;
	return sq_errno(NULL, rc);
}

int ustate_sqlite_backend_open(void **b, const struct ustate_backend_ops **ops,
			       const char *path, ustate_options *opts)
{
	struct stat st;
	struct sq *q;
	bool present;
	int rc;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->opts = *opts;
	q->open_watch = -1;
	pthread_mutex_init(&q->wlock, NULL);
	pthread_mutex_init(&q->plock, NULL);
	pthread_cond_init(&q->pcond, NULL);
	pthread_mutex_init(&q->glock, NULL);
	q->qtail = &q->queue;
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
	if (stat(path, &st) == 0) {
		q->dev = st.st_dev;
		q->ino = st.st_ino;
	}
	if (opts->read_only) {
		rc = table_present(q->writer, "ustate_state", &present);
		if (rc == 0 && !present)
			rc = -EROFS;
		if (rc == 0)
			rc = table_present(q->writer, "ustate_lease_keys",
					   &q->has_leases);
		if (rc == 0)
			rc = table_present(q->writer, "ustate_lease_owners",
					   &q->has_owners);
	} else {
		rc = schema_setup(q->writer);
		q->has_meta = rc == 0;
		q->has_times = rc == 0;
		q->has_xattrs = rc == 0;
		if (rc == 0)
			rc = leases_setup(q->writer);
		q->has_leases = rc == 0;
		q->has_owners = rc == 0;
	}
	if (rc < 0)
		goto fail;
	if (asprintf(&q->shm_path, "%s-shm", q->path) < 0) {
		q->shm_path = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	/*
	 * Without turns (a full queue, a read-only folder), writes are
	 * ordered by SQLite's busy handler alone, as before. A read-only
	 * store joins an existing queue only to be known as no outside
	 * writer (see pace()); it never takes a turn.
	 */
	rc = ustate_turns_open(&q->turns, q->path, !opts->read_only);
	if (rc == 0 && !opts->read_only)
		sqlite3_wal_hook(q->writer->db, wal_hook, q);
	if (rc < 0 && !opts->read_only)
		ustate_log(&q->opts, LOG_DEBUG,
			   "%s: no turns between processes: %s", q->path,
			   strerror(-rc));
	/* Opens of the file tell when to look for outside writers. */
	if (rc == 0 && !opts->read_only) {
		q->open_watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (q->open_watch >= 0 &&
		    inotify_add_watch(q->open_watch, q->path, IN_OPEN) < 0) {
			close(q->open_watch);
			q->open_watch = -1;
		}
	}
	q->looked = q->polled = mono_ns();
	*b = q;
	*ops = &sqlite_ops;
	return 0;
fail:
	sq_close(q);
	return rc;
}
