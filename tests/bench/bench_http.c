/* SPDX-License-Identifier: MIT */
/*
 * This file implements the load drivers' HTTP client (bench_i.h): one
 * keep-alive HTTP/1.1 connection on a plain socket, POST requests of
 * JSON sent in one write, and replies read whole, with a Content-Length
 * or chunked. It is what a minimal client of etcd's HTTP/JSON gateway
 * does, and no more: the requests are a few fixed lines, the replies
 * small, so a hundred lines keep the client's cost out of the figures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench_i.h"

struct bench_http {
	int fd;
	char host[64];
	int port;
	char buf[65536];
	size_t off, len; /* unread bytes: buf[off, len) */
};

void bench_b64(char *out, const void *in, size_t n)
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

struct bench_http *bench_http_open(const char *hostport)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct bench_http *c;
	const char *colon = strrchr(hostport, ':');
	int one = 1;

	c = calloc(1, sizeof(*c));
	if (!c)
		bench_die("memory", ENOMEM);
	if (!colon || colon - hostport >= (int)sizeof(c->host))
		bench_die("not HOST:PORT", EINVAL);
	memcpy(c->host, hostport, colon - hostport);
	c->port = bench_int_arg(colon + 1, 1, 65535);
	sa.sin_port = htons(c->port);
	if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1)
		bench_die("bad address", EINVAL);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		bench_die("socket", errno);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bench_die("connect", errno);
	return c;
}

void bench_http_close(struct bench_http *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

/* Make at least one unread byte available. */
static void fill(struct bench_http *c)
{
	ssize_t n;

	if (c->off < c->len)
		return;
	n = read(c->fd, c->buf, sizeof(c->buf));
	if (n <= 0)
		bench_die("the server closed the connection",
			  n < 0 ? errno : EPIPE);
	c->off = 0;
	c->len = n;
}

/* One line without its CRLF, into line (truncated to n - 1). */
static void read_line(struct bench_http *c, char *line, size_t n)
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

/* Read len body bytes, keeping the first n - 1 in out (from at). */
static size_t read_body(struct bench_http *c, size_t len, char *out, size_t n,
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

int bench_http_post(struct bench_http *c, const char *path, const char *body,
		    char *out, size_t n)
{
	char head[512], line[512];
	long clen = -1;
	int chunked = 0, status = 0, len;
	size_t blen = strlen(body), at = 0;
	struct iovec iov[2];

	len = snprintf(head, sizeof(head),
		       "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
		       "Content-Type: application/json\r\n"
		       "Content-Length: %zu\r\n\r\n",
		       path, c->host, c->port, blen);
	if (len >= (int)sizeof(head))
		bench_die("request line too long", E2BIG);
	/* One write: the request leaves in one segment, as curl's does. */
	iov[0] = (struct iovec){.iov_base = head, .iov_len = len};
	iov[1] = (struct iovec){.iov_base = (void *)body, .iov_len = blen};
	if (writev(c->fd, iov, 2) != (ssize_t)(len + blen))
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
	return status;
}
