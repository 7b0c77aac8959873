/* SPDX-License-Identifier: MIT */
/*
 * This file implements the C API half of the counter test: PROCS forked
 * processes, each with its own ustate_open_sqlite() of one database file,
 * each make INCS increments of one key with ustate_compare_and_set() retry
 * loops (read value and version, write value + 1 at that version, start
 * over on -ECANCELED). The key holds a decimal number; if it is missing it
 * is created as "0". Every increment keeps value - version constant, so
 * each commit must have written (its version + that constant), and no two
 * commits may share a version. Alone (the default) the final value and
 * version must have grown by exactly PROCS x INCS, and the store revision
 * too; with -s other writers share the key and only the per-commit checks
 * are made here (the caller checks the sum). Any error other than a
 * version conflict fails the run.
 *
 * SQLite hands its write lock on unfairly (a waiter sleeps while the holder
 * takes it again), so without a pause between the read and the write one
 * process makes most of its increments in a row; the pause (-d, a random
 * 0..MICROS, default 200) makes the others commit inside the window.
 *
 * usage: counter_capi [-n PROCS] [-i INCS] [-k KEY] [-d MICROS] [-s]
 *                     [-V FILE] DB
 *   -V FILE  write the version of each commit, one a line
 * Prints one line: value= version= commits= conflicts= attempts= seconds=
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ustate.h"

struct shared {
	uint64_t conflicts; /* summed by the children, atomically */
	struct {
		uint64_t version;
		int64_t value;
	} commit[]; /* child c owns [c * incs, (c + 1) * incs) */
};

static long pause_us = 200;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read key: its decimal value and its version. */
static int read_counter(ustate *s, const char *key, int64_t *val, uint64_t *ver)
{
	ustate_entry *e;
	char *end;
	int rc;

	rc = ustate_get(s, key, &e);
	if (rc < 0)
		return rc;
	*val = strtoll(e->value, &end, 10);
	*ver = e->version;
	rc = (e->value_len && *end == '\0') ? 0 : -EBADMSG;
	ustate_entry_free(e);
	return rc;
}

/*
 * One child: incs increments of key in its own connection to db, started
 * when the parent closes the write end of the start pipe (so that every
 * child contends from the first increment).
 */
static int child(const char *db, const char *key, long incs, struct shared *sh,
		 size_t first, int start)
{
	uint64_t ver, nver, conflicts = 0;
	unsigned seed = getpid();
	int64_t val;
	char buf[32];
	ustate *s;
	long i;
	int rc;

	rc = ustate_open_sqlite(&s, db, NULL);
	if (rc < 0) {
		fprintf(stderr, "counter_capi: open %s: %s\n", db,
			ustate_strerror(rc));
		return 1;
	}
	while (read(start, &i, 1) < 0 && errno == EINTR)
		;
	for (i = 0; i < incs; i++) {
		for (;;) {
			rc = read_counter(s, key, &val, &ver);
			if (rc < 0)
				goto out;
			if (pause_us)
				usleep(rand_r(&seed) % pause_us);
			snprintf(buf, sizeof(buf), "%" PRId64, val + 1);
			rc = ustate_compare_and_set(s, key, ver, buf,
						    strlen(buf), &nver);
			if (rc != -ECANCELED)
				break;
			if (nver == ver) {
				/* A conflict must name another version. */
				rc = -EPROTO;
				goto out;
			}
			conflicts++;
		}
		if (rc < 0)
			goto out;
		sh->commit[first + i].version = nver;
		sh->commit[first + i].value = val + 1;
	}
out:
	__atomic_add_fetch(&sh->conflicts, conflicts, __ATOMIC_SEQ_CST);
	if (rc < 0)
		fprintf(stderr, "counter_capi: increment %ld of %s: %s\n", i,
			key, ustate_strerror(rc));
	ustate_close(s);
	return rc < 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void usage(void)
{
	fprintf(stderr, "usage: counter_capi [-n PROCS] [-i INCS] [-k KEY] "
			"[-d MICROS] [-s] [-V FILE] DB\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *key = "/counter", *vfile = NULL, *db;
	long procs = 8, incs = 250, p, n, bad = 0;
	uint64_t ver0, ver1, rev0, rev1, *vers;
	int64_t val0, val1, delta;
	int opt, rc, status, shared_key = 0, start[2];
	struct shared *sh;
	size_t size;
	double t0;
	pid_t pid;
	ustate *s;
	FILE *f;

	while ((opt = getopt(argc, argv, "n:i:k:d:sV:")) != -1) {
		switch (opt) {
		case 'n':
			procs = atol(optarg);
			break;
		case 'i':
			incs = atol(optarg);
			break;
		case 'k':
			key = optarg;
			break;
		case 'd':
			pause_us = atol(optarg);
			break;
		case 's':
			shared_key = 1;
			break;
		case 'V':
			vfile = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || procs < 1 || incs < 1 || pause_us < 0)
		usage();
	db = argv[optind];
	n = procs * incs;

	/* The parent's store is closed before the fork: SQLite connections
	 * must not cross one. */
	rc = ustate_open_sqlite(&s, db, NULL);
	if (rc == 0) {
		rc = ustate_create_if_not_exists(s, key, "0", 1, NULL);
		if (rc == -EEXIST)
			rc = 0;
	}
	if (rc == 0)
		rc = read_counter(s, key, &val0, &ver0);
	rev0 = rc == 0 ? ustate_revision(s) : 0;
	ustate_close(s);
	if (rc < 0) {
		fprintf(stderr, "counter_capi: %s %s: %s\n", db, key,
			ustate_strerror(rc));
		return 1;
	}
	delta = val0 - (int64_t)ver0;

	size = sizeof(*sh) + n * sizeof(sh->commit[0]);
	sh = mmap(NULL, size, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		perror("counter_capi: mmap");
		return 1;
	}
	if (pipe(start) < 0) {
		perror("counter_capi: pipe");
		return 1;
	}
	for (p = 0; p < procs; p++) {
		pid = fork();
		if (pid < 0) {
			perror("counter_capi: fork");
			return 1;
		}
		if (pid == 0) {
			close(start[1]);
			_exit(child(db, key, incs, sh, p * incs, start[0]));
		}
	}
	t0 = now();
	close(start[0]);
	close(start[1]);
	while (wait(&status) > 0)
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			bad++;
	if (bad) {
		fprintf(stderr, "counter_capi: %ld processes failed\n", bad);
		return 1;
	}

	vers = calloc(n, sizeof(*vers));
	if (!vers)
		return 1;
	for (p = 0; p < n; p++) {
		vers[p] = sh->commit[p].version;
		if (sh->commit[p].value - (int64_t)vers[p] != delta) {
			fprintf(stderr,
				"counter_capi: version %" PRIu64
				" holds %" PRId64 ", not %" PRId64 "\n",
				vers[p], sh->commit[p].value,
				(int64_t)vers[p] + delta);
			bad++;
		}
	}
	qsort(vers, n, sizeof(*vers), cmp_u64);
	for (p = 0; p < n; p++) {
		if ((p && vers[p] == vers[p - 1]) ||
		    (!shared_key && vers[p] != ver0 + 1 + p)) {
			fprintf(stderr,
				"counter_capi: commit versions are not "
				"distinct %" PRIu64 "..%" PRIu64 "\n",
				ver0 + 1, ver0 + n);
			bad++;
			break;
		}
	}
	if (vfile) {
		f = fopen(vfile, "w");
		for (p = 0; f && p < n; p++)
			fprintf(f, "%" PRIu64 "\n", vers[p]);
		if (!f || fclose(f) != 0) {
			perror(vfile);
			bad++;
		}
	}

	rc = ustate_open_sqlite(&s, db, NULL);
	if (rc == 0)
		rc = read_counter(s, key, &val1, &ver1);
	rev1 = rc == 0 ? ustate_revision(s) : 0;
	ustate_close(s);
	if (rc < 0) {
		fprintf(stderr, "counter_capi: reading back %s: %s\n", key,
			ustate_strerror(rc));
		return 1;
	}
	printf("value=%" PRId64 " version=%" PRIu64 " commits=%ld "
	       "conflicts=%" PRIu64 " attempts=%" PRIu64 " seconds=%.1f\n",
	       val1, ver1, n, sh->conflicts, n + sh->conflicts, now() - t0);
	if (!shared_key && (val1 - val0 != n || ver1 - ver0 != (uint64_t)n ||
			    rev1 - rev0 != (uint64_t)n)) {
		fprintf(stderr,
			"counter_capi: expected value, version and revision "
			"+%ld, got +%" PRId64 ", +%" PRIu64 ", +%" PRIu64 "\n",
			n, val1 - val0, ver1 - ver0, rev1 - rev0);
		bad++;
	}
	free(vers);
	munmap(sh, size);
	return bad ? 1 : 0;
}
