/* SPDX-License-Identifier: MIT */
/*
 * This file implements the small helpers shared by the backends: the
 * entry a get returns, the release of a history batch, the report of a
 * problem to a check's callback, and the library's log (the caller's
 * ustate_log_fn, or stderr). A backend reaches the rest of the
 * library only through these and the public API of ustate.h, never
 * through the store front (store.c), so that a new backend (etcd) needs
 * nothing but backend_i.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "backend_i.h"

ustate_entry *ustate_entry_new(const char *key, const void *val, size_t len)
{
	size_t klen = strlen(key);
	ustate_entry *e;

	/* One block: the entry, then the key, then the value and its NUL. */
	e = malloc(sizeof(*e) + klen + 1 + len + 1);
	if (!e)
		return NULL;
	memset(e, 0, sizeof(*e));
	e->key = (char *)(e + 1);
	memcpy(e->key, key, klen + 1);
	e->value = e->key + klen + 1;
	if (len)
		memcpy(e->value, val, len);
	((char *)e->value)[len] = '\0';
	e->value_len = len;
	return e;
}

void ustate_changes_free(struct ustate_change *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(c[i].key);
	free(c);
}

int ustate_report(ustate_problem_fn fn, void *arg, const char *check,
		  const char *key, const char *fmt, ...)
{
	ustate_problem p = {.check = check, .key = key};
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	p.detail = detail;
	return fn(arg, &p);
}

/* The log of a store opened without a log function. */
static void log_stderr(int priority, const char *msg)
{
	if (priority <= LOG_WARNING)
		fprintf(stderr, "ustate: %s\n", msg);
}

void ustate_log(const ustate_options *o, int priority, const char *fmt, ...)
{
	char msg[1024];
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The contract of ustate_log_fn: one line, no trailing newline. */
	len = strlen(msg);
	while (len && msg[len - 1] == '\n')
		msg[--len] = '\0';
	if (o && o->log)
		o->log(o->log_arg, priority, msg);
	else
		log_stderr(priority, msg);
}
