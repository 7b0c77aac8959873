/* SPDX-License-Identifier: MIT */
/*
 * This file implements the JSON helpers of ustate_json.h with jansson:
 * values are stored as compact JSON text and parsed back on read.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ustate_json.h"

int ustate_set_json(ustate *s, const char *key, const json_t *v,
		    uint64_t *version)
{
	char *text;
	int rc;

	if (!v)
		return -EINVAL;
	text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text)
		return -EINVAL;
	rc = ustate_set(s, key, text, strlen(text), version);
	free(text);
	return rc;
}

int ustate_get_json(ustate *s, const char *key, json_t **out)
{
	json_error_t err;
	ustate_entry *e;
	json_t *v;
	int rc;

	rc = ustate_get(s, key, &e);
	if (rc < 0)
		return rc;
	v = json_loadb(e->value, e->value_len, JSON_DECODE_ANY, &err);
	ustate_entry_free(e);
	if (!v)
		return -EBADMSG;
	*out = v;
	return 0;
}
