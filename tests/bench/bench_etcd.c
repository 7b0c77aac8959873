/* SPDX-License-Identifier: MIT */
/*
 * This file implements bench_etcd, the etcd load driver of scripts/bench:
 * puts and range reads over etcd's HTTP/JSON gateway (grpc-gateway, at
 * /v3/kv/... in etcd 3.4; /v3beta/ is its deprecated alias), with one
 * keep-alive HTTP/1.1 connection per worker process.
 *
 *   bench_etcd put HOST:PORT [-p N] [-t SECS]   each writer puts its own
 *                                               100 keys, 100-byte values
 *   bench_etcd range HOST:PORT [-p N] [-t SECS] a range of one key, /hot/k
 *                                               (put once beforehand)
 * Prints the total operations per second.
 *
 * Plain sockets rather than libcurl (bench_http.c): the requests are a
 * few fixed lines, the replies small with a Content-Length (or chunked,
 * also handled), so a hundred lines keep the client's cost out of the
 * figure and add no build dependency.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_i.h"

#define KEYS 100

static const char *addr;

struct conn {
	struct bench_http *h;
	int w;
	char value[BENCH_VALUE_LEN];
};

/* POST body to path; the reply's body (its start) goes to out. */
static void post(struct conn *c, const char *path, const char *body, char *out,
		 size_t n)
{
	int status = bench_http_post(c->h, path, body, out, n);

	if (status != 200) {
		fprintf(stderr, "bench_etcd: %s: HTTP %d: %s\n", path, status,
			out);
		exit(1);
	}
}

static void put(struct conn *c, const char *key, const char *value, size_t len)
{
	char k64[400], v64[400], body[1024], reply[1024];

	bench_b64(k64, key, strlen(key));
	bench_b64(v64, value, len);
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64,
		 v64);
	post(c, "/v3/kv/put", body, reply, sizeof(reply));
	if (!strstr(reply, "\"revision\""))
		bench_die("put: no revision in the reply", EPROTO);
}

static void *setup(int w, void *arg)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		bench_die("memory", ENOMEM);
	c->w = w;
	c->h = bench_http_open(addr);
	return c;
}

static void put_op(void *state, long i)
{
	struct conn *c = state;
	char key[64];

	snprintf(key, sizeof(key), "/bench/w%02d/k%03ld", c->w, i % KEYS);
	bench_value(c->value, key, i);
	put(c, key, c->value, sizeof(c->value));
}

static void range_op(void *state, long i)
{
	struct conn *c = state;
	char k64[64], body[128], reply[1024];

	bench_b64(k64, "/hot/k", 6);
	snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k64);
	post(c, "/v3/kv/range", body, reply, sizeof(reply));
	/* The value is there: a miss would be a cheaper, wrong measure. */
	if (!strstr(reply, "\"count\":\"1\""))
		bench_die("range: /hot/k not found", ENOENT);
}

int main(int argc, char **argv)
{
	struct bench_job job = {.workers = 1, .secs = 1, .setup = setup};
	char value[BENCH_VALUE_LEN];
	struct conn *c;
	int ch;

	if (argc < 3) {
	usage:
		fprintf(stderr, "usage: bench_etcd put|range HOST:PORT "
				"[-p N] [-t SECS]\n");
		return 2;
	}
	optind = 3;
	while ((ch = getopt(argc, argv, "p:t:")) != -1) {
		if (ch == 'p')
			job.workers = bench_int_arg(optarg, 1, 256);
		else if (ch == 't')
			job.secs = bench_secs_arg(optarg);
		else
			goto usage;
	}
	if (!strchr(argv[2], ':'))
		goto usage;
	addr = argv[2];

	if (!strcmp(argv[1], "put")) {
		job.op = put_op;
	} else if (!strcmp(argv[1], "range")) {
		c = setup(0, NULL);
		bench_value(value, "/hot/k", 0);
		put(c, "/hot/k", value, sizeof(value));
		bench_http_close(c->h);
		free(c);
		job.op = range_op;
		job.warmup = 100;
	} else {
		goto usage;
	}
	printf("%.1f\n", bench_run(&job));
	return 0;
}
