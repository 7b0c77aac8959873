/* SPDX-License-Identifier: MIT */
/*
 * This file declares what the load drivers of scripts/bench share: a
 * monotonic clock, fatal errors, the 100-byte values, a harness that runs
 * one operation in a loop in N worker processes, started together, for a
 * fixed time, and a minimal HTTP client for etcd's HTTP/JSON gateway.
 */
#ifndef BENCH_I_H
#define BENCH_I_H

#include <stddef.h>

#define BENCH_VALUE_LEN 100

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);

/* Print "PROG: WHAT: strerror(err)" and exit 1; err is a positive errno
 * (0: no errno part). */
void bench_die(const char *what, int err) __attribute__((noreturn));

/* Fill buf with a 100-byte printable line that names key, ending in a
 * newline; seq varies the bytes between writes of one key. */
void bench_value(char *buf, const char *key, long seq);

/* Parse the arguments of -p and -t; exit 2 when out of range. */
int bench_int_arg(const char *s, int min, int max);
double bench_secs_arg(const char *s);

struct bench_job {
	int workers; /* processes */
	double secs; /* time each runs its loop */
	int warmup;  /* operations before the common start */
	/* Runs in the worker process; returns the worker's state. */
	void *(*setup)(int worker, void *arg);
	/* One operation: the i-th of this worker; exits on failure. */
	void (*op)(void *state, long i);
	void *arg;
};

/*
 * Fork j->workers processes; each runs setup and the warm-up, then all
 * start their loop together and run it for j->secs. Returns the sum of
 * each worker's operations per second (its count over its own time),
 * or exits if a worker failed.
 */
double bench_run(const struct bench_job *j);

/* One keep-alive HTTP/1.1 connection on a plain socket (bench_http.c). */
struct bench_http;

/* Connect to hostport, "A.B.C.D:PORT"; exits on failure. */
struct bench_http *bench_http_open(const char *hostport);

/* Close the connection; NULL is a no-op. */
void bench_http_close(struct bench_http *c);

/*
 * POST the JSON body to path ("/v3/kv/put") and read the whole reply; the
 * start of its body, at most n - 1 bytes and NUL-terminated, goes to out.
 * Returns the HTTP status; exits if the connection breaks or the reply is
 * no HTTP.
 */
int bench_http_post(struct bench_http *c, const char *path, const char *body,
		    char *out, size_t n);

/* The base64 of n bytes of in, NUL-terminated: 4 * ((n + 2) / 3) + 1 bytes
 * of out. */
void bench_b64(char *out, const void *in, size_t n);

#endif
