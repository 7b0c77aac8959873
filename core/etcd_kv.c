/* SPDX-License-Identifier: MIT */
/*
 * This file implements etcd's key-values in C (see etcd_kv_i.h): results
 * of a Txn of ranges, and their JSON both ways, with etcd's encoding
 * (base64 bytes, int64 as strings, defaults left out).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_http_i.h"
#include "etcd_kv_i.h"

struct ustate_etcd_ranges *ustate_etcd_ranges_new(size_t n)
{
	struct ustate_etcd_ranges *res;

	res = calloc(1, sizeof(*res) + n * sizeof(res->r[0]));
	if (res)
		res->n = n;
	return res;
}

void ustate_etcd_kvs_clear(struct ustate_etcd_kvs *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->kv[i].key);
	free(s->kv);
	*s = (struct ustate_etcd_kvs){0};
}

void ustate_etcd_ranges_free(struct ustate_etcd_ranges *res)
{
	size_t i;

	if (!res)
		return;
	for (i = 0; i < res->n; i++)
		ustate_etcd_kvs_clear(&res->r[i]);
	free(res);
}

int ustate_etcd_kvs_add(struct ustate_etcd_kvs *s, const void *key, size_t klen,
			const void *value, size_t vlen, uint64_t create_rev,
			uint64_t mod_rev, uint64_t version, int64_t lease)
{
	struct ustate_etcd_kv *kv;
	char *b;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4;

		kv = realloc(s->kv, cap * sizeof(*kv));
		if (!kv)
			return -ENOMEM;
		s->kv = kv;
		s->cap = cap;
	}
	b = malloc(klen + vlen + 2);
	if (!b)
		return -ENOMEM;
	if (klen)
		memcpy(b, key, klen);
	b[klen] = '\0';
	if (vlen)
		memcpy(b + klen + 1, value, vlen);
	b[klen + 1 + vlen] = '\0';
	s->kv[s->n++] = (struct ustate_etcd_kv){.key = b,
						.klen = klen,
						.value = b + klen + 1,
						.vlen = vlen,
						.create_rev = create_rev,
						.mod_rev = mod_rev,
						.version = version,
						.lease = lease};
	return 0;
}

/* ---- JSON ------------------------------------------------------------- */

json_t *ustate_etcd_range_request(const struct ustate_etcd_range *r)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new_nocheck(o, "key", ustate_etcd_b64(r->key, r->klen));
	if (r->elen)
		json_object_set_new_nocheck(o, "range_end",
					    ustate_etcd_b64(r->end, r->elen));
	if (r->limit)
		json_object_set_new_nocheck(o, "limit",
					    ustate_etcd_u64(r->limit));
	if (r->revision)
		json_object_set_new_nocheck(o, "revision",
					    ustate_etcd_u64(r->revision));
	if (r->keys_only)
		json_object_set_new_nocheck(o, "keys_only", json_true());
	if (r->count_only)
		json_object_set_new_nocheck(o, "count_only", json_true());
	if (!json_object_get(o, "key")) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *range_json(const struct ustate_etcd_range *r)
{
	json_t *o = ustate_etcd_range_request(r), *w = json_object();

	if (!o || !w || json_object_set_new_nocheck(w, "request_range", o)) {
		json_decref(o);
		json_decref(w);
		return NULL;
	}
	return w;
}

json_t *ustate_etcd_ranges_request(const struct ustate_etcd_range *rs, size_t n)
{
	json_t *req = json_object(), *ops = json_array();
	size_t i;

	if (!req || !ops || json_object_set_nocheck(req, "success", ops))
		goto fail;
	for (i = 0; i < n; i++)
		if (json_array_append_new(ops, range_json(&rs[i])))
			goto fail;
	json_decref(ops);
	return req;
fail:
	json_decref(ops);
	json_decref(req);
	return NULL;
}

static int64_t i64_of(json_t *obj, const char *name)
{
	return (int64_t)ustate_etcd_get_u64(obj, name);
}

int ustate_etcd_kv_parse(json_t *kv, struct ustate_etcd_kvs *s)
{
	char *k = NULL, *v = NULL;
	size_t klen, vlen;
	int rc;

	rc = ustate_etcd_get_bytes(kv, "key", &k, &klen);
	if (rc == 0)
		rc = ustate_etcd_get_bytes(kv, "value", &v, &vlen);
	if (rc == 0)
		rc = ustate_etcd_kvs_add(
			s, k, klen, v, vlen,
			ustate_etcd_get_u64(kv, "create_revision"),
			ustate_etcd_get_u64(kv, "mod_revision"),
			ustate_etcd_get_u64(kv, "version"),
			i64_of(kv, "lease"));
	free(k);
	free(v);
	return rc;
}

int ustate_etcd_kvs_parse(json_t *kvs, struct ustate_etcd_kvs *s)
{
	size_t i;
	json_t *kv;
	int rc = 0;

	json_array_foreach(kvs, i, kv)
	{
		rc = ustate_etcd_kv_parse(kv, s);
		if (rc < 0)
			break;
	}
	return rc;
}

int ustate_etcd_range_resp_parse(json_t *r, struct ustate_etcd_kvs *s)
{
	if (!json_is_object(r))
		return -EPROTO;
	s->count = ustate_etcd_get_u64(r, "count");
	s->more = json_is_true(json_object_get(r, "more"));
	return ustate_etcd_kvs_parse(json_object_get(r, "kvs"), s);
}

int ustate_etcd_ranges_parse(json_t *resp, size_t n,
			     struct ustate_etcd_ranges **out)
{
	json_t *rs = json_object_get(resp, "responses"), *r;
	struct ustate_etcd_ranges *res;
	size_t i;
	int rc = 0;

	if (json_array_size(rs) != n)
		return -EPROTO;
	res = ustate_etcd_ranges_new(n);
	if (!res)
		return -ENOMEM;
	res->revision = ustate_etcd_get_u64(json_object_get(resp, "header"),
					    "revision");
	for (i = 0; rc == 0 && i < n; i++) {
		r = json_object_get(json_array_get(rs, i), "response_range");
		rc = ustate_etcd_range_resp_parse(r, &res->r[i]);
	}
	if (rc < 0) {
		ustate_etcd_ranges_free(res);
		return rc;
	}
	*out = res;
	return 0;
}

/* The fields of a range this layer knows; any other is etcd's alone. */
static bool range_known(json_t *r)
{
	static const char *const known[] = {
		"key",	      "range_end", "limit",	   "keys_only",
		"count_only", "revision",  "serializable",
	};
	const char *name;
	size_t i;
	json_t *v;

	json_object_foreach(r, name, v)
	{
		for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (!strcmp(name, known[i]))
				break;
		if (i == sizeof(known) / sizeof(known[0]))
			return false;
	}
	return true;
}

int ustate_etcd_range_parse(json_t *r, struct ustate_etcd_range *out,
			    char **kbuf, char **ebuf)
{
	size_t klen, elen = 0;
	char *k, *end = NULL;
	int rc;

	*kbuf = *ebuf = NULL;
	if (!range_known(r))
		return -EINVAL;
	rc = ustate_etcd_get_bytes(r, "key", &k, &klen);
	if (rc < 0)
		return rc;
	if (json_object_get(r, "range_end"))
		rc = ustate_etcd_get_bytes(r, "range_end", &end, &elen);
	if (rc < 0) {
		free(k);
		return rc;
	}
	*out = (struct ustate_etcd_range){
		.key = k,
		.klen = klen,
		.end = end,
		.elen = elen,
		.limit = ustate_etcd_get_u64(r, "limit"),
		.revision = ustate_etcd_get_u64(r, "revision"),
		.keys_only = json_is_true(json_object_get(r, "keys_only")),
		.count_only = json_is_true(json_object_get(r, "count_only"))};
	*kbuf = k;
	*ebuf = end;
	return 0;
}

static json_t *kv_json(const struct ustate_etcd_kv *kv)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new_nocheck(o, "key",
				    ustate_etcd_b64(kv->key, kv->klen));
	json_object_set_new_nocheck(o, "create_revision",
				    ustate_etcd_u64(kv->create_rev));
	json_object_set_new_nocheck(o, "mod_revision",
				    ustate_etcd_u64(kv->mod_rev));
	json_object_set_new_nocheck(o, "version", ustate_etcd_u64(kv->version));
	/* etcd leaves out what is at its default: an empty value, lease 0. */
	if (kv->vlen)
		json_object_set_new_nocheck(
			o, "value", ustate_etcd_b64(kv->value, kv->vlen));
	if (kv->lease)
		json_object_set_new_nocheck(
			o, "lease", ustate_etcd_u64((uint64_t)kv->lease));
	return o;
}

json_t *ustate_etcd_kvs_json(const struct ustate_etcd_kvs *s,
			     const char *cluster, uint64_t revision)
{
	json_t *resp = json_object(), *h = json_object(), *kvs = json_array();
	size_t i;

	if (!resp || !h || !kvs || json_object_set_nocheck(resp, "header", h))
		goto fail;
	json_object_set_new_nocheck(h, "cluster_id", json_string(cluster));
	json_object_set_new_nocheck(h, "revision", ustate_etcd_u64(revision));
	for (i = 0; i < s->n; i++)
		if (json_array_append_new(kvs, kv_json(&s->kv[i])))
			goto fail;
	if (s->n)
		json_object_set_nocheck(resp, "kvs", kvs);
	if (s->more)
		json_object_set_new_nocheck(resp, "more", json_true());
	else if (s->count)
		json_object_set_new_nocheck(resp, "count",
					    ustate_etcd_u64(s->count));
	json_decref(h);
	json_decref(kvs);
	return resp;
fail:
	json_decref(h);
	json_decref(kvs);
	json_decref(resp);
	return NULL;
}
