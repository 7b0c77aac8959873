/* SPDX-License-Identifier: MIT */
/*
 * This file implements the small helpers shared by the backends: the
 * entry a get returns, a lease's description, the lease clock, the
 * release of a history batch, the report of a problem to a check's
 * callback, and the library's log (the caller's
 * ustate_log_fn, or stderr). A backend reaches the rest of the
 * library only through these and the public API of ustate.h, never
 * through the store front (store.c), so that a new backend (etcd) needs
 * nothing but backend_i.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "backend_i.h"

ustate_entry *ustate_entry_new(const char *key, const void *val, size_t len)
{
	return ustate_entry_new_leased(key, val, len, NULL);
}

ustate_entry *ustate_entry_new_leased(const char *key, const void *val,
				      size_t len, const char *lease)
{
	size_t klen = strlen(key), llen = lease ? strlen(lease) + 1 : 0;
	ustate_entry *e;

	/*
	 * One block: the entry, then the key, then the value and its NUL,
	 * then the lease's name.
	 */
	e = malloc(sizeof(*e) + klen + 1 + len + 1 + llen);
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
	if (lease) {
		memcpy((char *)e->value + len + 1, lease, llen);
		e->lease = (char *)e->value + len + 1;
	}
	return e;
}

ustate_lease_info *ustate_lease_info_new(const char *name, int64_t ttl,
					 int64_t deadline, int64_t now)
{
	ustate_lease_info *li;

	li = calloc(1, sizeof(*li));
	if (!li)
		return NULL;
	li->name = strdup(name);
	if (!li->name) {
		free(li);
		return NULL;
	}
	li->ttl = ttl;
	li->deadline = deadline;
	li->remaining_ms = deadline > now ? deadline - now : 0;
	return li;
}

void ustate_lease_info_owner(ustate_lease_info *li, const ustate_meta *owner)
{
	li->flags = owner ? USTATE_LEASE_OWNED : 0;
	li->uid = owner ? owner->uid : 0;
	li->gid = owner ? owner->gid : 0;
	li->mode = owner ? owner->mode & 07777 : 0;
}

void ustate_lease_info_free(ustate_lease_info *li)
{
	size_t i;

	if (!li)
		return;
	for (i = 0; i < li->nkeys; i++)
		free(li->keys[i]);
	free(li->keys);
	free(li->name);
	free(li);
}

/* Milliseconds that ustate_clock_advance() added; tests only. */
static _Atomic int64_t clock_offset_ms;
/* The real clock's reading ustate_clock_freeze() kept, or 0: running. */
static _Atomic int64_t clock_frozen_ms;

static int64_t clock_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ustate_clock_ms(void)
{
	int64_t frozen = clock_frozen_ms;

	return (frozen ? frozen : clock_real_ms()) + clock_offset_ms;
}

void ustate_clock_freeze(bool frozen)
{
	int64_t running = 0;

	if (!frozen)
		clock_frozen_ms = 0;
	else /* a stopped clock stays where it stopped */
		atomic_compare_exchange_strong(&clock_frozen_ms, &running,
					       clock_real_ms());
}

static atomic_bool expiry_paused;

void ustate_expiry_pause(bool paused)
{
	expiry_paused = paused;
}

bool ustate_expiry_paused(void)
{
	return expiry_paused;
}

void ustate_clock_advance(int64_t ms)
{
	clock_offset_ms += ms;
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

int ustate_xattr_entry(const void *blob, size_t len, size_t *off,
		       const char **name, const void **value, size_t *value_len)
{
	const unsigned char *p = blob, *nul;
	uint32_t vlen;

	if (*off == len)
		return 0;
	nul = memchr(p + *off, '\0', len - *off);
	if (!nul || (size_t)(nul - p) + 5 > len)
		return -EIO;
	vlen = (uint32_t)nul[1] | (uint32_t)nul[2] << 8 |
	       (uint32_t)nul[3] << 16 | (uint32_t)nul[4] << 24;
	if (vlen > len - (size_t)(nul - p) - 5)
		return -EIO;
	*name = (const char *)p + *off;
	*value = nul + 5;
	*value_len = vlen;
	*off = (size_t)(nul - p) + 5 + vlen;
	return 1;
}

int ustate_xattr_append(char **buf, size_t *used, size_t *cap, const char *name,
			const void *value, size_t len)
{
	size_t nlen = strlen(name) + 1, need = *used + nlen + 4 + len;
	unsigned char *p;
	char *grown;

	if (need > *cap) {
		grown = realloc(*buf, need * 2);
		if (!grown)
			return -ENOMEM;
		*buf = grown;
		*cap = need * 2;
	}
	p = (unsigned char *)*buf + *used;
	memcpy(p, name, nlen);
	p += nlen;
	p[0] = (unsigned char)len;
	p[1] = (unsigned char)(len >> 8);
	p[2] = (unsigned char)(len >> 16);
	p[3] = (unsigned char)(len >> 24);
	if (len)
		memcpy(p + 4, value, len);
	*used = need;
	return 0;
}
