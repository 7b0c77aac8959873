/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_fill, which lays out the keys of scripts/bench
 * either in a store (through libustate, 10,000 keys a transaction, so a
 * million keys take seconds rather than a commit each) or as plain files
 * in a directory (for tmpfs and the local disk), with the same 100-byte
 * values in both; one value in 1,000 holds the word "needle" for grep.
 *
 *   bench_fill [-f] [-H HISTORY] TARGET LAYOUT...
 *     -f          TARGET is a directory: write files, not a store;
 *                 without it, a SOURCE as ustate_open() takes it (on
 *                 etcd, 40 keys a transaction)
 *     -H N        the store's history option (revisions kept) while
 *                 filling
 *   layouts:
 *     one KEY             a single key
 *     flat PREFIX N       PREFIX/k0000 ... PREFIX/k<N-1>
 *     tree PREFIX D K     PREFIX/d0000/k000 ... : D directories of K keys
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_i.h"
#include "ustate.h"

#define BATCH 10000

static int files;
static const char *target;
static ustate *store;
static long seq;

static ustate_op ops[BATCH];
static char names[BATCH][64];
static char values[BATCH][BENCH_VALUE_LEN];
static int pending;
static int batch = BATCH; /* ops a transaction; fewer on etcd */

static void flush(void)
{
	int rc;

	if (!pending)
		return;
	rc = ustate_transaction(store, ops, pending, NULL);
	if (rc < 0) {
		fprintf(stderr, "bench_fill: transaction: %s\n",
			ustate_strerror(rc));
		exit(1);
	}
	pending = 0;
}

/* mkdir -p of the directories of path (a file path). */
static void make_parents(char *path)
{
	char *p;

	for (p = path + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			bench_die(path, errno);
		*p = '/';
	}
}

static void add(const char *key)
{
	char path[4400];
	int fd;

	if (files) {
		char value[BENCH_VALUE_LEN];

		bench_value(value, key, 0);
		if (seq % 1000 == 0)
			memcpy(value, "needle", 6);
		snprintf(path, sizeof(path), "%s%s", target, key);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 && errno == ENOENT) {
			make_parents(path);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		}
		if (fd < 0)
			bench_die(path, errno);
		if (write(fd, value, sizeof(value)) != sizeof(value))
			bench_die("write", errno);
		close(fd);
	} else {
		snprintf(names[pending], sizeof(names[0]), "%s", key);
		bench_value(values[pending], key, 0);
		if (seq % 1000 == 0)
			memcpy(values[pending], "needle", 6);
		ops[pending] = (ustate_op){.type = USTATE_OP_SET,
					   .key = names[pending],
					   .value = values[pending],
					   .value_len = BENCH_VALUE_LEN};
		if (++pending == batch)
			flush();
	}
	seq++;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_fill [-f] [-H HISTORY] TARGET "
			"one KEY | flat PREFIX N | tree PREFIX D K ...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	char key[256];
	int a = 1, i, j, n, k, rc;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (!strcmp(argv[a], "-f"))
			files = 1;
		else if (!strcmp(argv[a], "-H") && a + 1 < argc)
			o.history = bench_int_arg(argv[++a], 1, 1 << 30);
		else
			usage();
	}
	if (a >= argc)
		usage();
	target = argv[a++];
	if (!files) {
		o.sync = USTATE_SYNC_OFF;
		rc = ustate_open(&store, target, &o);
		/* etcd takes 128 ops a Txn, and a write is three of them. */
		if (!strncmp(target, "etcd", 4))
			batch = 40;
		if (rc < 0) {
			fprintf(stderr, "bench_fill: %s: %s\n", target,
				ustate_strerror(rc));
			return 1;
		}
	}
	while (a < argc) {
		if (!strcmp(argv[a], "one") && a + 1 < argc) {
			add(argv[a + 1]);
			a += 2;
		} else if (!strcmp(argv[a], "flat") && a + 2 < argc) {
			n = bench_int_arg(argv[a + 2], 1, 10000);
			for (i = 0; i < n; i++) {
				snprintf(key, sizeof(key), "%s/k%04d",
					 argv[a + 1], i);
				add(key);
			}
			a += 3;
		} else if (!strcmp(argv[a], "tree") && a + 3 < argc) {
			n = bench_int_arg(argv[a + 2], 1, 10000);
			k = bench_int_arg(argv[a + 3], 1, 1000);
			for (i = 0; i < n; i++)
				for (j = 0; j < k; j++) {
					snprintf(key, sizeof(key),
						 "%s/d%04d/k%03d", argv[a + 1],
						 i, j);
					add(key);
				}
			a += 4;
		} else {
			usage();
		}
	}
	if (!files) {
		flush();
		ustate_close(store);
	}
	return 0;
}
