/* SPDX-License-Identifier: MIT */
/*
 * This file implements the helpers of the load drivers (bench_i.h): the
 * clock, errors, values, and the worker harness. Workers are processes,
 * not threads, so that concurrent clients of a file system do not share
 * a file descriptor table, as separate programs would not.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_i.h"

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

void bench_die(const char *what, int err)
{
	if (err)
		fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name,
			what, strerror(err));
	else
		fprintf(stderr, "%s: %s\n", program_invocation_short_name,
			what);
	exit(1);
}

void bench_value(char *buf, const char *key, long seq)
{
	char line[BENCH_VALUE_LEN + 1];
	int n;

	n = snprintf(line, sizeof(line), "value of %.60s, write %ld", key, seq);
	if (n > BENCH_VALUE_LEN - 1)
		n = BENCH_VALUE_LEN - 1;
	memset(line + n, ' ', BENCH_VALUE_LEN - 1 - n);
	line[BENCH_VALUE_LEN - 1] = '\n';
	memcpy(buf, line, BENCH_VALUE_LEN);
}

int bench_int_arg(const char *s, int min, int max)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "%s: bad number %s (%d..%d)\n",
			program_invocation_short_name, s, min, max);
		exit(2);
	}
	return (int)v;
}

double bench_secs_arg(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v > 0 && v < 3600)) {
		fprintf(stderr, "%s: bad duration %s\n",
			program_invocation_short_name, s);
		exit(2);
	}
	return v;
}

/* What each worker reports back, in memory shared with the parent. */
struct result {
	long ops;
	double secs;
};

static void worker(const struct bench_job *j, int w, int ready, int start,
		   struct result *res)
{
	void *state = j->setup ? j->setup(w, j->arg) : j->arg;
	double t0, t, end;
	long i;
	char c = 0;

	for (i = 0; i < j->warmup; i++)
		j->op(state, i);
	if (write(ready, &c, 1) != 1)
		bench_die("ready pipe", errno);
	/* Once all are ready or dead, the parent reads EOF, not forever. */
	close(ready);
	/* The parent closes its end: read() returns 0, and all go. */
	if (read(start, &c, 1) < 0)
		bench_die("start pipe", errno);
	t0 = bench_now();
	end = t0 + j->secs;
	do {
		j->op(state, i++);
		t = bench_now();
	} while (t < end);
	res->ops = i - j->warmup;
	res->secs = t - t0;
}

double bench_run(const struct bench_job *j)
{
	struct result *res;
	int ready[2], start[2], w, st, n, failed = 0;
	double total = 0;
	pid_t *pids;
	char c;

	res = mmap(NULL, sizeof(*res) * j->workers, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pids = calloc(j->workers, sizeof(*pids));
	if (res == MAP_FAILED || !pids)
		bench_die("memory", ENOMEM);
	if (pipe(ready) < 0 || pipe(start) < 0)
		bench_die("pipe", errno);
	fflush(NULL);
	for (w = 0; w < j->workers; w++) {
		pids[w] = fork();
		if (pids[w] < 0)
			bench_die("fork", errno);
		if (pids[w] == 0) {
			close(ready[0]);
			close(start[1]);
			worker(j, w, ready[1], start[0], &res[w]);
			_exit(0);
		}
	}
	close(ready[1]);
	close(start[0]);
	/* All set up and warm, or one died (EOF before n bytes). */
	for (n = 0; n < j->workers && read(ready[0], &c, 1) == 1; n++)
		;
	if (n < j->workers)
		for (w = 0; w < j->workers; w++)
			kill(pids[w], SIGKILL);
	close(start[1]);
	close(ready[0]);
	for (w = 0; w < j->workers; w++) {
		if (waitpid(pids[w], &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0)
			failed = 1;
		else if (res[w].secs > 0)
			total += res[w].ops / res[w].secs;
	}
	if (failed || n < j->workers)
		bench_die("a worker failed", 0);
	munmap(res, sizeof(*res) * j->workers);
	free(pids);
	return total;
}
