/* SPDX-License-Identifier: MIT */
/*
 * This file declares the JSON helpers of libustate: values stored as JSON
 * text, read and written as jansson values (the set_json / get_json of the
 * Rust univrs-state).
 */
#ifndef USTATE_JSON_H
#define USTATE_JSON_H

#include <jansson.h>

#include "ustate.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * ustate_set_json() - store a JSON value as compact UTF-8 text.
 * @v:       any JSON value (object, array, string, number, ...); borrowed.
 * @version: if not NULL, receives the key's new version.
 *
 * Return: 0; -EINVAL for a bad key or a value jansson cannot encode (a
 * NaN, say); -ENOMEM; the errors of ustate_set().
 */
int ustate_set_json(ustate *s, const char *key, const json_t *v,
		    uint64_t *version);

/**
 * ustate_get_json() - read a key and parse its value as JSON.
 * @out: receives a new reference, owned by the caller (json_decref()).
 *
 * Return: 0; -ENOENT when the key does not exist; -EBADMSG when its value
 * is not one JSON text; the errors of ustate_get().
 */
int ustate_get_json(ustate *s, const char *key, json_t **out);

#ifdef __cplusplus
}
#endif

#endif /* USTATE_JSON_H */
