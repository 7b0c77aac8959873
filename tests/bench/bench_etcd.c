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
 * Plain sockets rather than libcurl: the requests are a few fixed lines,
 * the replies small with a Content-Length (or chunked, also handled), so
 * a hundred lines keep the client's cost out of the figure and add no
 * build dependency.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_i.h"

#define KEYS 100

static char host[64];
static int port;

struct conn {
	int fd, w;
	char buf[65536];
	size_t off, len; /* unread bytes: buf[off, len) */
	char value[BENCH_VALUE_LEN];
};

static void b64(char *out, const void *in, size_t n)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = in;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*out++ = tab[p[i] >> 2];
		*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*out++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*out++ = tab[p[i + 2] & 63];
	}
	if (i < n) {
		*out++ = tab[p[i] >> 2];
		if (i + 1 < n) {
			*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*out++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*out++ = tab[(p[i] & 3) << 4];
			*out++ = '=';
		}
		*out++ = '=';
	}
	*out = '\0';
}

static void conn_open(struct conn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons(port)};
	int one = 1;

	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		bench_die("bad address", EINVAL);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		bench_die("socket", errno);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bench_die("connect", errno);
	c->off = c->len = 0;
}

/* Make at least one unread byte available. */
static void fill(struct conn *c)
{
	ssize_t n;

	if (c->off < c->len)
		return;
	n = read(c->fd, c->buf, sizeof(c->buf));
	if (n <= 0)
		bench_die("etcd closed the connection", n < 0 ? errno : EPIPE);
	c->off = 0;
	c->len = n;
}

/* One line without its CRLF, into line (truncated to n - 1). */
static void read_line(struct conn *c, char *line, size_t n)
{
	size_t i = 0;
	char ch;

	for (;;) {
		fill(c);
		ch = c->buf[c->off++];
		if (ch == '\n')
			break;
		if (ch != '\r' && i + 1 < n)
			line[i++] = ch;
	}
	line[i] = '\0';
}

/* Read len body bytes, keeping the first n - 1 in out. */
static size_t read_body(struct conn *c, size_t len, char *out, size_t n,
			size_t at)
{
	size_t k;

	while (len > 0) {
		fill(c);
		k = c->len - c->off;
		if (k > len)
			k = len;
		if (at + 1 < n) {
			size_t m = k < n - 1 - at ? k : n - 1 - at;

			memcpy(out + at, c->buf + c->off, m);
			at += m;
		}
		c->off += k;
		len -= k;
	}
	out[at] = '\0';
	return at;
}

/* POST body to path; the reply's body (its start) goes to out. */
static void post(struct conn *c, const char *path, const char *body, char *out,
		 size_t n)
{
	char req[1024], line[512];
	long clen = -1;
	int chunked = 0, status = 0, len;
	size_t at = 0;

	len = snprintf(req, sizeof(req),
		       "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
		       "Content-Type: application/json\r\n"
		       "Content-Length: %zu\r\n\r\n%s",
		       path, host, port, strlen(body), body);
	if (len >= (int)sizeof(req))
		bench_die("request too long", E2BIG);
	if (write(c->fd, req, len) != len)
		bench_die("send", errno);
	read_line(c, line, sizeof(line));
	if (sscanf(line, "HTTP/1.%*d %d", &status) != 1)
		bench_die("not an HTTP reply", EPROTO);
	for (;;) {
		read_line(c, line, sizeof(line));
		if (!line[0])
			break;
		if (!strncasecmp(line, "content-length:", 15))
			clen = atol(line + 15);
		else if (!strncasecmp(line, "transfer-encoding:", 18) &&
			 strstr(line, "chunked"))
			chunked = 1;
	}
	if (chunked) {
		for (;;) {
			read_line(c, line, sizeof(line));
			clen = strtol(line, NULL, 16);
			if (clen == 0)
				break;
			at = read_body(c, clen, out, n, at);
			read_line(c, line, sizeof(line));
		}
		do
			read_line(c, line, sizeof(line));
		while (line[0]);
	} else if (clen >= 0) {
		read_body(c, clen, out, n, 0);
	} else {
		bench_die("reply without a length", EPROTO);
	}
	if (status != 200) {
		fprintf(stderr, "bench_etcd: %s: HTTP %d: %s\n", path, status,
			out);
		exit(1);
	}
}

static void put(struct conn *c, const char *key, const char *value, size_t len)
{
	char k64[400], v64[400], body[1024], reply[1024];

	b64(k64, key, strlen(key));
	b64(v64, value, len);
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
	conn_open(c);
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

	b64(k64, "/hot/k", 6);
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
	const char *colon;
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
	colon = strrchr(argv[2], ':');
	if (!colon || colon - argv[2] >= (int)sizeof(host))
		goto usage;
	memcpy(host, argv[2], colon - argv[2]);
	port = bench_int_arg(colon + 1, 1, 65535);

	if (!strcmp(argv[1], "put")) {
		job.op = put_op;
	} else if (!strcmp(argv[1], "range")) {
		c = setup(0, NULL);
		bench_value(value, "/hot/k", 0);
		put(c, "/hot/k", value, sizeof(value));
		close(c->fd);
		free(c);
		job.op = range_op;
		job.warmup = 100;
	} else {
		goto usage;
	}
	printf("%.1f\n", bench_run(&job));
	return 0;
}
