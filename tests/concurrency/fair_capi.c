/* SPDX-License-Identifier: MIT */
/*
 * This file implements the libustate side of the fairness test: one
 * process, one ustate_open_sqlite() of the database, N ustate_set() calls
 * in a row on 50 keys (/capi/k0..49), each timed: the wait of a write as
 * the library sees it, without the start of a process that `ustate set`
 * pays each time. Any failure is counted and reported.
 *
 * usage: fair_capi DB N
 * Prints one line: writes= failures= p50= p99= max= (milliseconds);
 * exits 1 when a write failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ustate.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int i, n, rc, fails = 0;
	char key[32], val[32];
	double *t, t0;
	ustate *s;

	if (argc != 3 || (n = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: fair_capi DB N\n");
		return 2;
	}
	t = calloc(n, sizeof(*t));
	rc = t ? ustate_open_sqlite(&s, argv[1], NULL) : -ENOMEM;
	if (rc < 0) {
		fprintf(stderr, "fair_capi: open: %s\n", strerror(-rc));
		return 1;
	}
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "/capi/k%d", i % 50);
		snprintf(val, sizeof(val), "%d", i);
		t0 = now();
		rc = ustate_set(s, key, val, strlen(val), NULL);
		t[i] = now() - t0;
		if (rc < 0) {
			fprintf(stderr, "fair_capi: set: %s\n", strerror(-rc));
			fails++;
		}
	}
	ustate_close(s);
	qsort(t, n, sizeof(*t), cmp);
	printf("writes=%d failures=%d p50=%.1fms p99=%.1fms max=%.1fms\n", n,
	       fails, t[n / 2] * 1e3, t[n * 99 / 100] * 1e3, t[n - 1] * 1e3);
	free(t);
	return fails ? 1 : 0;
}
