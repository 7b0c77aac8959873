/* SPDX-License-Identifier: MIT */
/*
 * This file declares what the store front shares with the rest of core/:
 * the key, prefix and pattern rules (keys.c) and the backend table
 * (backend_i.h). Nothing outside core/ includes it.
 */
#ifndef USTATE_STORE_I_H
#define USTATE_STORE_I_H

#include <stdbool.h>

#include "backend_i.h"
#include "ustate.h"

/* 0 if s[0..len) is UTF-8 without control characters, else -EINVAL. */
int ustate_text_valid(const char *s, size_t len);

/* A list prefix: UTF-8 text of at most USTATE_KEY_MAX bytes. */
int ustate_prefix_valid(const char *prefix);

/*
 * Split a watch pattern into the key or prefix it matches (prefix has room
 * for USTATE_KEY_MAX + 1 bytes) and whether it is a prefix pattern.
 */
int ustate_pattern_parse(const char *pattern, char *prefix, bool *is_prefix);
bool ustate_pattern_match(const char *prefix, size_t plen, bool is_prefix,
			  const char *key);

/* A lease name: one key segment; -EINVAL or -ENAMETOOLONG otherwise. */
int ustate_lease_name_valid(const char *name);

/*
 * For tests (and a daemon that wants it at once): expire the leases
 * overdue now, as the expiry thread of a writable store does at its next
 * turn. 0 on a read-only store or a backend without leases.
 */
int ustate_lease_expire_now(ustate *s);

#endif /* USTATE_STORE_I_H */
