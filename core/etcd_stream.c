/* SPDX-License-Identifier: MIT */
/*
 * This file implements the reader of etcd's watch streams for the etcd
 * backend: etcd's HTTP/JSON gateway (grpc-gateway) answers POST /v3/watch
 * with one JSON object per line, {"result":{...}}, and ends a stream that
 * fails with {"error":{...}} and no newline after it. HTTP chunks (and the
 * reads of libcurl) cut that text anywhere: a message may arrive in many
 * pieces, a piece may hold several. The splitter is a two-state machine
 * (between lines, inside one) that keeps the bytes of the line it is in
 * and hands each complete line to a callback; the parser turns one line
 * into its result object or into a negative errno.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_http_i.h"
#include "etcd_stream_i.h"

/* The first buffer of a splitter: most watch messages fit. */
#define SPLITTER_MIN_CAP 512

int ustate_etcd_splitter_init(struct ustate_etcd_splitter *sp, size_t max_line)
{
	if (!sp || max_line == 0 || max_line > SIZE_MAX / 2)
		return -EINVAL;
	*sp = (struct ustate_etcd_splitter){.max = max_line};
	return 0;
}

void ustate_etcd_splitter_free(struct ustate_etcd_splitter *sp)
{
	if (!sp)
		return;
	free(sp->buf);
	*sp = (struct ustate_etcd_splitter){0};
}

void ustate_etcd_splitter_reset(struct ustate_etcd_splitter *sp)
{
	if (!sp)
		return;
	sp->len = 0;
	sp->err = 0;
}

size_t ustate_etcd_splitter_pending(const struct ustate_etcd_splitter *sp)
{
	return sp ? sp->len : 0;
}

/* Make sp unusable until reset: bytes of the stream are lost. */
static int splitter_fail(struct ustate_etcd_splitter *sp, int rc)
{
	sp->len = 0;
	sp->err = rc;
	return rc;
}

/*
 * Append the n bytes at p to the line held. A last "\r" does not count
 * against the limit yet: it may be the one before the "\n".
 */
static int splitter_append(struct ustate_etcd_splitter *sp, const char *p,
			   size_t n)
{
	size_t need, limit = sp->max + 2, cap;
	char *nb;

	if (n == 0)
		return 0;
	/* sp->len <= max + 1 always: the difference cannot wrap. */
	if (n > sp->max + 1 - sp->len)
		return splitter_fail(sp, -EMSGSIZE);
	need = sp->len + n;
	if (need - (p[n - 1] == '\r') > sp->max)
		return splitter_fail(sp, -EMSGSIZE);
	if (need + 1 > sp->cap) {
		/* Doubling, capped at limit (>= need + 1): a few rounds. */
		cap = sp->cap ? sp->cap : SPLITTER_MIN_CAP;
		while (cap < need + 1)
			cap = cap > limit / 2 ? limit : cap * 2;
		if (cap > limit)
			cap = limit;
		nb = realloc(sp->buf, cap);
		if (!nb)
			return splitter_fail(sp, -ENOMEM);
		sp->buf = nb;
		sp->cap = cap;
	}
	memcpy(sp->buf + sp->len, p, n);
	sp->len = need;
	sp->buf[need] = '\0';
	return 0;
}

/*
 * The line held is complete: take it off sp, and hand it to fn unless it
 * is blank. Returns fn's value when negative, else 0.
 */
static int splitter_emit(struct ustate_etcd_splitter *sp,
			 ustate_etcd_line_fn fn, void *arg)
{
	size_t n = sp->len, i;
	int rc;

	sp->len = 0;
	if (n > 0 && sp->buf[n - 1] == '\r')
		n--;
	for (i = 0; i < n; i++) {
		if (sp->buf[i] != ' ' && sp->buf[i] != '\t' &&
		    sp->buf[i] != '\r')
			break;
	}
	if (i == n)
		return 0;
	sp->buf[n] = '\0';
	rc = fn(arg, sp->buf, n);
	return rc < 0 ? rc : 0;
}

int ustate_etcd_splitter_feed(struct ustate_etcd_splitter *sp, const char *buf,
			      size_t len, ustate_etcd_line_fn fn, void *arg)
{
	const char *p, *end, *nl;
	int rc;

	if (!sp || sp->max == 0 || (!buf && len > 0) || !fn)
		return -EINVAL;
	if (sp->err)
		return sp->err;
	if (len == 0)
		return 0;
	/* Each round takes the bytes up to a "\n", or the rest: <= len. */
	for (p = buf, end = buf + len; p < end; p = nl + 1) {
		nl = memchr(p, '\n', end - p);
		rc = splitter_append(sp, p, (nl ? nl : end) - p);
		if (rc < 0)
			return rc;
		if (!nl)
			break;
		rc = splitter_emit(sp, fn, arg);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int ustate_etcd_splitter_finish(struct ustate_etcd_splitter *sp,
				ustate_etcd_line_fn fn, void *arg)
{
	int rc;

	if (!sp || !fn)
		return -EINVAL;
	rc = sp->err;
	if (rc == 0)
		rc = splitter_emit(sp, fn, arg);
	ustate_etcd_splitter_reset(sp);
	return rc;
}

/* The integer member name of o, or -1 when o has none (or not >= 0). */
static long long int_member(const json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return json_integer_value(v);
}

int ustate_etcd_stream_parse(const char *line, size_t len, json_t **out,
			     char **msg)
{
	const char *text;
	json_t *root, *err, *result;
	int rc;

	if (msg)
		*msg = NULL;
	if (!line || !out)
		return -EINVAL;
	root = json_loadb(line, len, 0, NULL);
	if (!json_is_object(root)) {
		rc = -EPROTO;
		goto out;
	}
	err = json_object_get(root, "error");
	if (json_is_object(err)) {
		/* The stream's own error: {"error":{"grpc_code":14,...}}. */
		text = json_string_value(json_object_get(err, "message"));
		rc = ustate_etcd_errno(int_member(err, "grpc_code"),
				       int_member(err, "http_code"), text,
				       false);
	} else if (json_is_string(err)) {
		/* A request refused before any streaming, as a unary call's
		 * body: {"error":"..","message":"..","code":3}. */
		text = json_string_value(json_object_get(root, "message"));
		if (!text)
			text = json_string_value(err);
		rc = ustate_etcd_errno(int_member(root, "code"), -1, text,
				       false);
	} else if (err) {
		rc = -EPROTO;
		goto out;
	} else {
		result = json_object_get(root, "result");
		if (!json_is_object(result)) {
			rc = -EPROTO;
			goto out;
		}
		*out = json_incref(result);
		rc = 0;
		goto out;
	}
	if (msg) {
		*msg = strdup(text ? text : "");
		if (!*msg)
			rc = -ENOMEM;
	}
out:
	json_decref(root);
	return rc;
}
