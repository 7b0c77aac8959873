/* SPDX-License-Identifier: MIT */
/*
 * This file implements the rules every key, list prefix and watch pattern
 * must follow before it reaches a backend, and the store's explanation of
 * its error codes. It touches no state.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "store_i.h"

/*
 * Length of the UTF-8 sequence starting at p (at most avail bytes), or 0 if
 * it is not valid UTF-8 (overlong forms, surrogates and code points over
 * U+10FFFF are invalid, as RFC 3629 says). Control characters, C0 and C1
 * and DEL, are refused here too: no key should contain them.
 */
static size_t utf8_char(const unsigned char *p, size_t avail)
{
	unsigned char c = p[0];
	size_t len, i;
	unsigned cp;

	if (c < 0x20 || c == 0x7f)
		return 0;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (avail < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return len;
}

int ustate_text_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_char(p + i, len - i);
		if (!n)
			return -EINVAL;
		i += n;
	}
	return 0;
}

int ustate_key_valid(const char *key)
{
	size_t len, seg, i, start;

	if (!key || key[0] != '/')
		return -EINVAL;
	len = strnlen(key, USTATE_KEY_MAX + 1);
	if (len > USTATE_KEY_MAX)
		return -ENAMETOOLONG;
	if (ustate_text_valid(key, len))
		return -EINVAL;
	for (start = 1; start <= len; start = i + 1) {
		for (i = start; i < len && key[i] != '/'; i++)
			;
		seg = i - start;
		if (seg == 0)
			return -EINVAL;
		if (seg > USTATE_SEGMENT_MAX)
			return -ENAMETOOLONG;
		if ((seg == 1 && key[start] == '.') ||
		    (seg == 2 && !memcmp(key + start, "..", 2)) ||
		    (seg == 6 && !memcmp(key + start, ".value", 6)) ||
		    (seg == 4 && !memcmp(key + start, ".txn", 4)))
			return -EINVAL;
	}
	return 0;
}

int ustate_prefix_valid(const char *prefix)
{
	size_t len;

	if (!prefix)
		return -EINVAL;
	len = strnlen(prefix, USTATE_KEY_MAX + 1);
	if (len > USTATE_KEY_MAX)
		return -ENAMETOOLONG;
	return ustate_text_valid(prefix, len);
}

int ustate_pattern_parse(const char *pattern, char *prefix, bool *is_prefix)
{
	size_t len;
	int rc;

	if (!pattern)
		return -EINVAL;
	/*
	 * Too long for either kind. Decided first: past this bound, which
	 * kind the pattern is would depend on a byte in its middle.
	 */
	len = strnlen(pattern, USTATE_KEY_MAX + 2);
	if (len > USTATE_KEY_MAX + 1)
		return -ENAMETOOLONG;
	if (len > 0 && pattern[len - 1] == '*') {
		memcpy(prefix, pattern, len - 1);
		prefix[len - 1] = '\0';
		if (strchr(prefix, '*'))
			return -EINVAL;
		*is_prefix = true;
		return ustate_prefix_valid(prefix);
	}
	rc = ustate_key_valid(pattern);
	if (rc < 0)
		return rc;
	memcpy(prefix, pattern, len + 1);
	*is_prefix = false;
	return 0;
}

bool ustate_pattern_match(const char *prefix, size_t plen, bool is_prefix,
			  const char *key)
{
	if (is_prefix)
		return strncmp(key, prefix, plen) == 0;
	return strcmp(key, prefix) == 0;
}

const char *ustate_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case ENOENT:
		return "no such key";
	case EINVAL:
		return "invalid key, pattern, option or request";
	case ENAMETOOLONG:
		return "key too long (over 2048 bytes, or a segment over 255)";
	case EFBIG:
		return "value larger than the store's maximum value size";
	case ECANCELED:
		return "version conflict: the key is not at the expected version";
	case EEXIST:
		return "key already exists";
	case E2BIG:
		return "too many operations in one transaction";
	case EROFS:
		return "store is read-only";
	case ENODATA:
		return "revision no longer in the retained history";
	case EOVERFLOW:
		return "watch fell behind the retained history; events lost";
	case EAGAIN:
		return "no event before the timeout";
	case EBUSY:
		return "store busy: locked past the busy timeout, or a "
		       "transaction that raced other writers too often";
	case EUCLEAN:
		return "database file is corrupt or not a SQLite database";
	case ENOSPC:
		return "no space left for the store (disk, or etcd's quota)";
	case EIO:
		return "I/O error in the storage backend";
	case EBADMSG:
		return "value is not valid JSON";
	case ENOTEMPTY:
		return "directory not empty (for a restore: the store)";
	case EOPNOTSUPP:
		return "operation not supported by this store's backend";
	case ETIMEDOUT:
		return "no answer in time: a write may or may not have been "
		       "applied";
	case ENOTCONN:
		return "no server of the store answered: nothing was applied";
	case ECONNREFUSED:
		return "the store's server refused the connection: nothing was "
		       "applied";
	case ENOMEM:
		return "out of memory";
	default:
		return strerrordesc_np(err) ? strerrordesc_np(err)
					    : "unknown error";
	}
}
