/* SPDX-License-Identifier: MIT */
/*
 * This file implements powerloss.so, an LD_PRELOAD layer for the ustatefs
 * daemon in the power-loss and fault tests. It records what a power cut
 * could undo, and it injects I/O errors.
 *
 * Recording: for the database POWERLOSS_DB and its -wal and -journal
 * (not the -shm: SQLite rebuilds it from the WAL when the first
 * connection opens the database), every successful write, truncation,
 * fdatasync/fsync and unlink is appended to the log POWERLOSS_LOG, in
 * the order the daemon made them, writes with their bytes. powercut.py
 * later rebuilds the files from a copy taken before the daemon started
 * and this log, as a power cut could leave them: everything before each
 * file's last sync, plus any subset of what came after. A sync is logged
 * only once the real one has returned, and a write only once it is done,
 * so a record is never claimed durable too early; a SIGKILL between a
 * write and its record loses an unsynced write, which a power cut may do
 * too. One lock orders the records of all files like the calls.
 *
 * Faults: when the file POWERLOSS_CTL exists, the next tracked write or
 * sync reads it and deletes it. "write SKIP COUNT" (or "sync SKIP
 * COUNT") lets SKIP more writes (syncs) through, then fails the COUNT
 * after them with EIO, without touching the file.
 */
/* We define both open and open64: no renaming of the one to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096

/*
 * The log: records of 24 bytes, little-endian as written on x86-64 and
 * aarch64, a write's bytes following its record. powercut.py reads them
 * with struct format "<IBBHQQ".
 */
#define PL_MAGIC 0x504c4f47u /* "GOLP" */
enum { PL_WRITE = 1, PL_TRUNC, PL_SYNC, PL_UNLINK };
enum { PL_DB, PL_WAL, PL_JOURNAL, PL_FILES };

struct pl_record {
	uint32_t magic;
	uint8_t type;
	uint8_t file; /* PL_DB ... */
	uint16_t pad;
	uint64_t off; /* PL_WRITE: offset; PL_TRUNC: the new size */
	uint64_t len; /* PL_WRITE: bytes that follow */
};
_Static_assert(sizeof(struct pl_record) == 24, "record layout");

/* The files we follow, by suffix of the database name. */
static const char *const suffixes[PL_FILES] = {
	[PL_DB] = "",
	[PL_WAL] = "-wal",
	[PL_JOURNAL] = "-journal",
};

static char paths[PL_FILES][PATH_MAX];
static const char *log_path, *ctl_path;
static int log_fd = -1;
static bool active;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char fd_file[MAX_FD]; /* file + 1, 0: not followed;
				       * protected by lock */

/* Injected faults, protected by lock. */
static struct fault {
	long skip, count;
} faults[2];
enum { F_WRITE, F_SYNC };

static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_unlink)(const char *);

static void *next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		fprintf(stderr, "powerloss: no %s\n", name);
		abort();
	}
	return p;
}

__attribute__((constructor)) static void init(void)
{
	const char *db = getenv("POWERLOSS_DB");
	int i;

	real_openat = next("openat");
	real_write = next("write");
	real_pwrite = next("pwrite");
	real_ftruncate = next("ftruncate");
	real_fsync = next("fsync");
	real_fdatasync = next("fdatasync");
	real_close = next("close");
	real_unlink = next("unlink");
	log_path = getenv("POWERLOSS_LOG");
	ctl_path = getenv("POWERLOSS_CTL");
	if (!db || db[0] != '/')
		return;
	for (i = 0; i < PL_FILES; i++)
		snprintf(paths[i], sizeof(paths[i]), "%s%s", db, suffixes[i]);
	active = true;
}

static int file_of(const char *path)
{
	int i;

	if (!active || !path)
		return -1;
	for (i = 0; i < PL_FILES; i++)
		if (!strcmp(path, paths[i]))
			return i;
	return -1;
}

/* The followed file fd is, or -1. Called with lock. */
static int tracked(int fd)
{
	return fd >= 0 && fd < MAX_FD ? fd_file[fd] - 1 : -1;
}

static void opened(int fd, const char *path)
{
	int f = file_of(path);

	if (fd < 0 || fd >= MAX_FD)
		return;
	pthread_mutex_lock(&lock);
	fd_file[fd] = f + 1;
	pthread_mutex_unlock(&lock);
}

/* Append one record; a failure to log must stop the test loudly. */
static void record(int type, int file, uint64_t off, const void *data,
		   uint64_t len)
{
	struct pl_record r = {
		.magic = PL_MAGIC,
		.type = type,
		.file = file,
		.off = off,
		.len = len,
	};
	struct iovec iov[2] = {
		{.iov_base = &r, .iov_len = sizeof(r)},
		{.iov_base = (void *)data, .iov_len = data ? len : 0},
	};
	size_t want = sizeof(r) + (data ? len : 0);

	if (!log_path)
		return;
	if (log_fd < 0)
		log_fd = real_openat(AT_FDCWD, log_path,
				     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
				     0600);
	if (log_fd < 0 || writev(log_fd, iov, 2) != (ssize_t)want) {
		fprintf(stderr, "powerloss: %s: %s\n", log_path,
			strerror(errno));
		abort();
	}
}

/* Read and consume the control file, if there is one. Called with lock. */
static void control(void)
{
	char op[16];
	long skip, count;
	FILE *f;

	if (!ctl_path)
		return;
	f = fopen(ctl_path, "re");
	if (!f)
		return;
	while (fscanf(f, "%15s %ld %ld", op, &skip, &count) == 3) {
		if (!strcmp(op, "write"))
			faults[F_WRITE] = (struct fault){skip, count};
		else if (!strcmp(op, "sync"))
			faults[F_SYNC] = (struct fault){skip, count};
	}
	fclose(f);
	real_unlink(ctl_path);
}

/* Whether this operation of kind k fails. Called with lock. */
static bool inject(int k)
{
	control();
	if (faults[k].count <= 0)
		return false;
	if (faults[k].skip > 0) {
		faults[k].skip--;
		return false;
	}
	faults[k].count--;
	return true;
}

static mode_t mode_arg(int flags, va_list ap)
{
	bool create = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;

	return create ? va_arg(ap, mode_t) : 0;
}

/*
 * open() and openat(), and their 64-bit names (on 64-bit systems the same
 * calls): one openat each, then the descriptor is followed if it is ours.
 */
int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;
	int fd;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	fd = real_openat(dirfd, path, flags, mode);
	opened(fd, path);
	return fd;
}
int openat64(int dirfd, const char *path, int flags, ...)
	__attribute__((alias("openat")));

int open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return openat(AT_FDCWD, path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/*
 * A write at off (-1: the file position) through fn, recorded when the
 * file is followed.
 */
static ssize_t do_write(int fd, const void *buf, size_t len, off_t off,
			ssize_t (*fn)(int, const void *, size_t, off_t))
{
	ssize_t n;
	int f;

	pthread_mutex_lock(&lock);
	f = tracked(fd);
	if (f < 0) {
		pthread_mutex_unlock(&lock);
		return fn ? fn(fd, buf, len, off) : real_write(fd, buf, len);
	}
	if (inject(F_WRITE)) {
		pthread_mutex_unlock(&lock);
		errno = EIO;
		return -1;
	}
	if (!fn)
		off = lseek(fd, 0, SEEK_CUR);
	n = fn ? fn(fd, buf, len, off) : real_write(fd, buf, len);
	if (n > 0 && off >= 0)
		record(PL_WRITE, f, (uint64_t)off, buf, (uint64_t)n);
	pthread_mutex_unlock(&lock);
	return n;
}

ssize_t write(int fd, const void *buf, size_t len)
{
	return do_write(fd, buf, len, -1, NULL);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return do_write(fd, buf, len, off, real_pwrite);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
	__attribute__((alias("pwrite")));

int ftruncate(int fd, off_t size)
{
	int rc, f;

	pthread_mutex_lock(&lock);
	f = tracked(fd);
	rc = real_ftruncate(fd, size);
	if (rc == 0 && f >= 0)
		record(PL_TRUNC, f, (uint64_t)size, NULL, 0);
	pthread_mutex_unlock(&lock);
	return rc;
}

int ftruncate64(int fd, off_t size) __attribute__((alias("ftruncate")));

static int do_sync(int fd, int (*fn)(int))
{
	int rc, f;

	pthread_mutex_lock(&lock);
	f = tracked(fd);
	if (f >= 0 && inject(F_SYNC)) {
		pthread_mutex_unlock(&lock);
		errno = EIO;
		return -1;
	}
	rc = fn(fd);
	if (rc == 0 && f >= 0)
		record(PL_SYNC, f, 0, NULL, 0);
	pthread_mutex_unlock(&lock);
	return rc;
}

int fsync(int fd)
{
	return do_sync(fd, real_fsync);
}

int fdatasync(int fd)
{
	return do_sync(fd, real_fdatasync);
}

int close(int fd)
{
	if (fd >= 0 && fd < MAX_FD) {
		pthread_mutex_lock(&lock);
		fd_file[fd] = 0;
		pthread_mutex_unlock(&lock);
	}
	return real_close(fd);
}

int unlink(const char *path)
{
	int f = file_of(path), rc;

	pthread_mutex_lock(&lock);
	rc = real_unlink(path);
	if (rc == 0 && f >= 0)
		record(PL_UNLINK, f, 0, NULL, 0);
	pthread_mutex_unlock(&lock);
	return rc;
}
