/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_io, the file system and SQLite load driver
 * of scripts/bench. The same code drives a ustatefs mount and its
 * references (tmpfs, the local disk, raw SQLite), so that only the target
 * differs between a figure and its reference.
 *
 * Loops, N processes for SECS, printing the total operations per second:
 *   bench_io read FILE      open, read to EOF, close (a hot `cat`)
 *   bench_io put DIR        open(O_TRUNC), write 100 bytes, close: a
 *                           commit on ustatefs
 *   bench_io fsync DIR      write a temporary file, fsync, close, rename
 *                           over the key, fsync the directory: the
 *                           durable write of a plain file
 *   bench_io sqlite DB      one single-row upsert per transaction, one
 *                           connection per process, WAL (-y: synchronous)
 * Each writer writes its own 100 keys, DIR/wNN/kNNN (-s: all writers in
 * DIR itself, DIR/wNN-kNNN), or /wNN/kNNN in DB.
 *
 * Once, printing milliseconds (one figure per DIR for ls):
 *   bench_io cat DIR N      open, read, close DIR/k0000 ... DIR/k<N-1>
 *   bench_io stat DIR N     lstat the same names
 *   bench_io ls DIR...      opendir, readdir to the end (-l: and lstat
 *                           each entry, as ls -l does)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_i.h"

#define KEYS 100

static const char *target;
static int shared_dir, long_ls;
static const char *sync_level = "NORMAL";

/* ---- hot reads -------------------------------------------------------- */

static off_t read_size;

static void read_op(void *state, long i)
{
	char buf[4096];
	ssize_t n, total = 0;
	int fd;

	fd = open(target, O_RDONLY);
	if (fd < 0)
		bench_die(target, errno);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	if (n < 0)
		bench_die("read", errno);
	close(fd);
	/* A short or long read would mean the harness measures nonsense. */
	if (total != read_size)
		bench_die("read: not the file's size", EIO);
}

/* ---- writes ----------------------------------------------------------- */

struct writer {
	int w, dirfd;
	char dir[4096], tmp[4200];
	char value[BENCH_VALUE_LEN];
};

static void *writer_setup(int w, void *arg)
{
	struct writer *wr = calloc(1, sizeof(*wr));

	if (!wr)
		bench_die("memory", ENOMEM);
	wr->w = w;
	if (shared_dir) {
		snprintf(wr->dir, sizeof(wr->dir), "%s", target);
		snprintf(wr->tmp, sizeof(wr->tmp), "%s/.tmp-w%02d", target, w);
	} else {
		snprintf(wr->dir, sizeof(wr->dir), "%s/w%02d", target, w);
		if (mkdir(wr->dir, 0755) < 0 && errno != EEXIST)
			bench_die(wr->dir, errno);
		snprintf(wr->tmp, sizeof(wr->tmp), "%s/.tmp", wr->dir);
	}
	wr->dirfd = open(wr->dir, O_RDONLY | O_DIRECTORY);
	if (wr->dirfd < 0)
		bench_die(wr->dir, errno);
	return wr;
}

static void key_path(const struct writer *wr, long i, char *path, size_t n)
{
	if (shared_dir)
		snprintf(path, n, "%s/w%02d-k%03ld", wr->dir, wr->w, i % KEYS);
	else
		snprintf(path, n, "%s/k%03ld", wr->dir, i % KEYS);
}

static void write_all(int fd, const char *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	if (n < 0)
		bench_die("write", errno);
	if ((size_t)n != len)
		bench_die("short write", EIO);
}

/* Create or truncate file, write the value of key's i-th write into it. */
static int write_value(struct writer *wr, const char *file, const char *key,
		       long i)
{
	int fd;

	bench_value(wr->value, key, i);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		bench_die(file, errno);
	write_all(fd, wr->value, sizeof(wr->value));
	return fd;
}

static void put_op(void *state, long i)
{
	struct writer *wr = state;
	char path[4300];
	int fd;

	key_path(wr, i, path, sizeof(path));
	fd = write_value(wr, path, path, i);
	/* On ustatefs the commit happens here, and fails here. */
	if (close(fd) < 0)
		bench_die("close", errno);
}

static void fsync_op(void *state, long i)
{
	struct writer *wr = state;
	char path[4300];
	int fd;

	key_path(wr, i, path, sizeof(path));
	fd = write_value(wr, wr->tmp, path, i);
	if (fsync(fd) < 0)
		bench_die("fsync", errno);
	if (close(fd) < 0)
		bench_die("close", errno);
	if (rename(wr->tmp, path) < 0)
		bench_die("rename", errno);
	if (fsync(wr->dirfd) < 0)
		bench_die("fsync of the directory", errno);
}

/* ---- raw SQLite ------------------------------------------------------- */

/* The statement of bench_core's raw reference, on the same table. */
#define RAW_UPSERT                                                             \
	"INSERT INTO kv_store VALUES (?1, ?2, 1, ?3, ?3) ON CONFLICT(key) DO " \
	"UPDATE SET value = excluded.value, version = version + 1, "           \
	"updated_at = excluded.updated_at RETURNING version"

struct sqlwriter {
	int w;
	sqlite3 *db;
	sqlite3_stmt *st;
	char value[BENCH_VALUE_LEN];
};

static void sql_die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "bench_io: %s: %s\n", what, sqlite3_errmsg(db));
	exit(1);
}

static void sql_create(void)
{
	sqlite3 *db;

	if (sqlite3_open(target, &db) != SQLITE_OK)
		sql_die(db, target);
	if (sqlite3_exec(db,
			 "PRAGMA journal_mode = WAL;"
			 "CREATE TABLE IF NOT EXISTS kv_store ("
			 " key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL,"
			 " version INTEGER NOT NULL,"
			 " created_at INTEGER NOT NULL,"
			 " updated_at INTEGER NOT NULL);"
			 "CREATE INDEX IF NOT EXISTS idx_kv_store_prefix"
			 " ON kv_store(key);",
			 NULL, NULL, NULL) != SQLITE_OK)
		sql_die(db, "schema");
	sqlite3_close(db);
}

static void *sql_setup(int w, void *arg)
{
	struct sqlwriter *sw = calloc(1, sizeof(*sw));
	char sql[64];

	if (!sw)
		bench_die("memory", ENOMEM);
	sw->w = w;
	if (sqlite3_open(target, &sw->db) != SQLITE_OK)
		sql_die(sw->db, target);
	/* Before anything that reads: the others may be writing. */
	sqlite3_busy_timeout(sw->db, 60000);
	snprintf(sql, sizeof(sql), "PRAGMA synchronous = %s", sync_level);
	if (sqlite3_exec(sw->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		sql_die(sw->db, sql);
	if (sqlite3_prepare_v2(sw->db, RAW_UPSERT, -1, &sw->st, NULL) !=
	    SQLITE_OK)
		sql_die(sw->db, "prepare");
	return sw;
}

static void sql_op(void *state, long i)
{
	struct sqlwriter *sw = state;
	char key[32];
	int rc;

	snprintf(key, sizeof(key), "/w%02d/k%03ld", sw->w, i % KEYS);
	bench_value(sw->value, key, i);
	sqlite3_bind_text(sw->st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_blob(sw->st, 2, sw->value, BENCH_VALUE_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(sw->st, 3, time(NULL));
	/* Busy past the timeout is retried: the writers wait their turn. */
	do {
		while ((rc = sqlite3_step(sw->st)) == SQLITE_ROW)
			;
		sqlite3_reset(sw->st);
	} while (rc == SQLITE_BUSY);
	if (rc != SQLITE_DONE)
		sql_die(sw->db, "upsert");
}

/* ---- one-shot walks --------------------------------------------------- */

static double cat_ms(const char *dir, int n)
{
	char path[4200], buf[4096];
	double t = bench_now();
	int i, fd;

	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/k%04d", dir, i);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			bench_die(path, errno);
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	return (bench_now() - t) * 1e3;
}

static double stat_ms(const char *dir, int n)
{
	char path[4200];
	double t = bench_now();
	struct stat st;
	int i;

	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/k%04d", dir, i);
		if (lstat(path, &st) < 0)
			bench_die(path, errno);
	}
	return (bench_now() - t) * 1e3;
}

static double ls_ms(const char *dir)
{
	double t = bench_now();
	char path[4400];
	struct dirent *d;
	struct stat st;
	int n = 0;
	DIR *dp;

	dp = opendir(dir);
	if (!dp)
		bench_die(dir, errno);
	while ((d = readdir(dp))) {
		n++;
		if (!long_ls)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if (lstat(path, &st) < 0)
			bench_die(path, errno);
	}
	closedir(dp);
	t = bench_now() - t;
	if (n < 3)
		bench_die("ls: an empty directory", ENOENT);
	return t * 1e3;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_io read|put|fsync|sqlite TARGET [-p N] [-t SECS]"
		" [-s] [-y full|normal]\n"
		"       bench_io cat|stat DIR N\n"
		"       bench_io ls [-l] DIR...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bench_job job = {.workers = 1, .secs = 1, .warmup = 1};
	const char *mode;
	struct stat st;
	int c, i;

	if (argc < 3)
		usage();
	mode = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "p:t:sly:")) != -1) {
		switch (c) {
		case 'p':
			job.workers = bench_int_arg(optarg, 1, 256);
			break;
		case 't':
			job.secs = bench_secs_arg(optarg);
			break;
		case 's':
			shared_dir = 1;
			break;
		case 'l':
			long_ls = 1;
			break;
		case 'y':
			sync_level =
				!strcmp(optarg, "full") ? "FULL" : "NORMAL";
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	target = argv[optind];

	if (!strcmp(mode, "read")) {
		if (stat(target, &st) < 0)
			bench_die(target, errno);
		read_size = st.st_size;
		job.op = read_op;
		job.warmup = 100;
	} else if (!strcmp(mode, "put") || !strcmp(mode, "fsync")) {
		job.setup = writer_setup;
		job.op = mode[0] == 'p' ? put_op : fsync_op;
	} else if (!strcmp(mode, "sqlite")) {
		sql_create();
		job.setup = sql_setup;
		job.op = sql_op;
	} else if (!strcmp(mode, "cat") || !strcmp(mode, "stat")) {
		if (optind + 2 != argc)
			usage();
		c = bench_int_arg(argv[optind + 1], 1, 10000);
		printf("%.3f\n",
		       mode[0] == 'c' ? cat_ms(target, c) : stat_ms(target, c));
		return 0;
	} else if (!strcmp(mode, "ls")) {
		for (i = optind; i < argc; i++)
			printf("%.3f\n", ls_ms(argv[i]));
		return 0;
	} else {
		usage();
	}
	printf("%.1f\n", bench_run(&job));
	return 0;
}
