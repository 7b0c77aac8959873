/* SPDX-License-Identifier: MIT */
/*
 * This file declares etcd's key-values in C, for the etcd backend's hot
 * reads: a Txn of ranges (struct ustate_etcd_range) and its result
 * (struct ustate_etcd_ranges), with raw bytes and numbers, no JSON and no
 * base64. The replica (etcd_mirror.c) fills results from its rows
 * directly; for etcd itself, ustate_etcd_ranges_request() makes the JSON
 * request and ustate_etcd_ranges_parse() reads the answer back, once. It
 * knows etcd's encoding, nothing of the store's mapping (etcd.c's).
 */
#ifndef USTATE_ETCD_KV_I_H
#define USTATE_ETCD_KV_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * One range of a read, as etcd's RangeRequest: the key alone (elen 0),
 * every key in [key, end), or every key from key on (end "\0", elen 1).
 * limit 0: no limit; revision 0: the latest. The bytes are borrowed for
 * the call.
 */
struct ustate_etcd_range {
	const char *key, *end;
	size_t klen, elen;
	uint64_t limit, revision;
	bool keys_only, count_only;
};

/*
 * One key-value. key and value are one block, owned by the result: key
 * bytes, NUL, value bytes, NUL (keys_only: an empty value).
 */
struct ustate_etcd_kv {
	char *key, *value;
	size_t klen, vlen;
	uint64_t create_rev, mod_rev, version;
	int64_t lease; /* 0: none */
};

/* The answer to one range: its kvs in key order, or its count. */
struct ustate_etcd_kvs {
	struct ustate_etcd_kv *kv;
	size_t n, cap;
	uint64_t count; /* count_only, or a range answered whole */
	bool more;	/* cut by its limit */
};

/* The answers to n ranges, read at one revision. */
struct ustate_etcd_ranges {
	uint64_t revision;
	size_t n;
	struct ustate_etcd_kvs r[];
};

/* A result of n empty answers; NULL when out of memory. */
struct ustate_etcd_ranges *ustate_etcd_ranges_new(size_t n);

/* Free a result and every kv in it. NULL is a no-op. */
void ustate_etcd_ranges_free(struct ustate_etcd_ranges *res);

/* Append a copy of a key-value to s: 0, or -ENOMEM. */
int ustate_etcd_kvs_add(struct ustate_etcd_kvs *s, const void *key, size_t klen,
			const void *value, size_t vlen, uint64_t create_rev,
			uint64_t mod_rev, uint64_t version, int64_t lease);

/* The JSON RangeRequest of r (a new reference); NULL: ENOMEM. */
json_t *ustate_etcd_range_request(const struct ustate_etcd_range *r);

/* The answer s of etcd's JSON RangeResponse r (borrowed): 0, -EPROTO. */
int ustate_etcd_range_resp_parse(json_t *r, struct ustate_etcd_kvs *s);

/* The JSON Txn request of n ranges (a new reference); NULL: ENOMEM. */
json_t *ustate_etcd_ranges_request(const struct ustate_etcd_range *rs,
				   size_t n);

/*
 * The result of etcd's JSON answer (borrowed) to the Txn of n ranges into
 * *out (the caller frees it): 0, -EPROTO when it is not such an answer,
 * -ENOMEM.
 */
int ustate_etcd_ranges_parse(json_t *resp, size_t n,
			     struct ustate_etcd_ranges **out);

/* Free the kvs of s and empty it. */
void ustate_etcd_kvs_clear(struct ustate_etcd_kvs *s);

/* Append etcd's JSON kv (borrowed) to s: 0, -EPROTO, -ENOMEM. */
int ustate_etcd_kv_parse(json_t *kv, struct ustate_etcd_kvs *s);

/* Append the kvs of etcd's JSON array kvs (borrowed) to s: the same. */
int ustate_etcd_kvs_parse(json_t *kvs, struct ustate_etcd_kvs *s);

/*
 * The range of etcd's JSON RangeRequest r (borrowed) into *out, its key
 * and end decoded into *kbuf and *ebuf (the caller frees both): 0,
 * -EINVAL for a field this layer does not know (then etcd must answer),
 * -EPROTO, -ENOMEM.
 */
int ustate_etcd_range_parse(json_t *r, struct ustate_etcd_range *out,
			    char **kbuf, char **ebuf);

/*
 * The JSON RangeResponse of s, with the header {cluster_id, revision}
 * (cluster: etcd's text of its ID); NULL when out of memory.
 */
json_t *ustate_etcd_kvs_json(const struct ustate_etcd_kvs *s,
			     const char *cluster, uint64_t revision);

#endif /* USTATE_ETCD_KV_I_H */
