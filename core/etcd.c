/* SPDX-License-Identifier: MIT */
/*
 * This file implements the etcd backend: the backend table mapped onto
 * etcd v3 (through the transport of etcd_http.c). The store of SOURCE
 * etcd://HOSTS/PREFIX lives in etcd's keys under PREFIX, and nothing
 * outside PREFIX is read or written:
 *
 *   PREFIX + K               the value of key K, raw (etcdctl prints it);
 *                            its etcd version is the key's version
 *   PREFIX + "//k" + K + "\tc" K's created_at (decimal unix seconds)
 *   PREFIX + "//k" + K + "\tu" K's updated_at, written by each write of K
 *   PREFIX + "//k" + K + "\tm" K's owner and mode ("uid gid mode", octal),
 *                            then its times ("flags mtime_ns ctime_ns")
 *   PREFIX + "//k" + K + "\tx" + N  K's extended attribute N, raw; one
 *                            older than K's incarnation (its create
 *                            revision, or its created_at's) is stale
 *   PREFIX + "//x" + P + "\t" + N  directory record P's attribute N
 *                            (stale when older than the record)
 *   PREFIX + "//d" + P       the directory record of P ("" or its owner
 *                            and mode); "//d/" holds the root's
 *   PREFIX + "//l/" + NAME   lease NAME: the decimal ID of its etcd lease,
 *                            then its owner if it has one (" uid gid
 *                            mode", octal), attached to that lease, so
 *                            it goes with it
 *   PREFIX + "//r/"          the write mark: empty, put by every Txn that
 *                            writes, so its mod revision is the store's
 *                            last write through libustate (what a read
 *                            of a replica waits for; see quorum_rev())
 *
 * A key attached to a lease is put with the etcd lease, and so are the
 * side keys its write puts (times), so that they go with it. Expiry and
 * revoke are etcd's own: all of a lease's keys in one revision.
 *
 * No key of the store can collide with a side key: a key has no empty
 * segment, so never starts with "//". A key's side keys are one range
 * (a tab, a control character, ends no key), read and deleted by one
 * request, and sort in the order of their keys. Side keys are written in
 * the same Txn as their key; a write of a key costs three etcd operations
 * (so a Txn under etcd's --max-txn-ops of 128 holds 42 writes). A key written
 * by another etcd client has no fresh side keys: a side key older than the
 * key's incarnation (mod revision below its create revision) or, for
 * updated_at, older than its last write, is stale and reads as absent (times 0,
 * no owner).
 *
 * A transaction is one etcd Txn: the checks and the conditions its writes
 * need (a CREATE's key absent, a DELETE's present) are compares on
 * VERSION; the success branch writes the net effect of the ops on each key
 * (etcd takes one write of a key per Txn) and reads the versions before,
 * from which the results are computed; the failure branch reads what the
 * compares looked at, and the op that failed is found from that, read in
 * the same atomic step. Only a CHECK_CHILDREN of a non-zero count, or ops
 * that fail whatever the state, read first.
 *
 * Watches read a ring of changes fed by one etcd watch on the whole
 * PREFIX, started by the first read of the history and resumed from the
 * last revision + 1 after any break, on the next endpoint; events at or
 * below the last revision applied are dropped (etcd 3.4 can repeat them).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "etcd_http_i.h"
#include "etcd_mirror_i.h"

#define PAGE 1000		   /* keys a range asks for at once */
#define TXN_TRIES 16		   /* a transaction raced this often: -EBUSY */
#define DEFAULT_MAX_VALUE 1556480  /* 1.5 MiB of request, less 16 KiB */
#define DEFAULT_MAX_TXN_OPS 128	   /* etcd's --max-txn-ops */
#define SINGLE_SET_MAX (64u << 10) /* value bytes of a single_set Txn */
#define SIDE_LEN 3		   /* "//k" */
#define REPLICA_WAIT_MS 100	   /* a replica behind a quorum read */
#define QUORUM_READS 1		   /* quorum reads under way at once */

struct etcd_backend {
	struct ustate_etcd_conn *conn;
	ustate_options opts;
	char *prefix; /* no trailing "/" */
	size_t plen;
	char *source; /* for messages */

	pthread_mutex_t lock;
	pthread_cond_t cond;	    /* the ring grew, or the stream ended */
	struct ustate_change *ring; /* protected by lock */
	size_t cap, head, len;	    /* protected by lock */
	uint64_t oldest;	    /* the ring holds every change from
				     * here to applied, protected by lock */
	uint64_t applied;	    /* protected by lock */
	uint64_t compacted;	    /* etcd has nothing below, protected
				     * by lock; 0: not seen */
	uint64_t want;		    /* our last commit, protected by lock */
	uint64_t restart;	    /* stream again from here (0: no),
				     * protected by lock */
	bool streaming, stopping;   /* protected by lock */
	pthread_t thread;
	struct ustate_etcd_stream *st;

	/* The replica (NULL: none) and what its reads wait for. */
	struct ustate_etcd_mirror *mirror;
	pthread_mutex_t qlock;
	pthread_cond_t qcond;	/* a quorum read finished */
	uint64_t qstarted;	/* quorum reads started; by qlock */
	uint64_t qdone;		/* the latest started of those done, */
	uint64_t qrev;		/* ... its revision */
	int qrc;		/* ... and outcome; by qlock */
	unsigned qinflight;	/* under way; by qlock */
	uint64_t qreads;	/* made; by qlock */
	uint64_t passed;	/* the replica's revision when it last did
				 * not reach a quorum revision; by qlock */
	uint64_t local, remote; /* reads the replica answered, or etcd;
				 * by qlock */
	uint64_t floor;		/* the last barrier's revision; by lock */
};

/* ---- etcd keys -------------------------------------------------------- */

/* A new etcd key: PREFIX, then "//" tag when tag, then the store path. */
static char *ekey(const struct etcd_backend *e, char tag, const char *path)
{
	size_t len = strlen(path);
	char *k;

	k = malloc(e->plen + SIDE_LEN + len + 2);
	if (!k)
		return NULL;
	memcpy(k, e->prefix, e->plen);
	if (tag) {
		k[e->plen] = '/';
		k[e->plen + 1] = '/';
		k[e->plen + 2] = tag;
		memcpy(k + e->plen + SIDE_LEN, path, len + 1);
	} else {
		memcpy(k + e->plen, path, len + 1);
	}
	return k;
}

/* The end of the range of keys that start with k (k's length n): k + 1. */
static char *range_end(const char *k, size_t n)
{
	char *r = malloc(n + 1);

	if (!r)
		return NULL;
	memcpy(r, k, n);
	while (n && (unsigned char)r[n - 1] == 0xff)
		n--;
	if (n)
		r[n - 1]++;
	r[n] = '\0';
	return r;
}

#define KEY_TEXT_MAX (USTATE_KEY_MAX * 2 + 64)

/* Append n bytes of s at *len in buf (KEY_TEXT_MAX), cut at its end. */
static void key_add(char *buf, size_t *len, const char *s, size_t n)
{
	if (n > KEY_TEXT_MAX - 1 - *len)
		n = KEY_TEXT_MAX - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
}

/*
 * The text of an etcd key into buf (KEY_TEXT_MAX bytes), as ekey() with
 * suffix appended, and its length. memcpy, not snprintf: this runs for
 * each key of every request, and three snprintf calls cost more than
 * the base64 encoding that follows.
 */
static size_t key_text(char *buf, const struct etcd_backend *e, char tag,
		       const char *path, const char *suffix)
{
	char side[3] = {'/', '/', tag};
	size_t n = 0;

	key_add(buf, &n, e->prefix, e->plen);
	if (tag)
		key_add(buf, &n, side, sizeof(side));
	key_add(buf, &n, path, strlen(path));
	if (suffix)
		key_add(buf, &n, suffix, strlen(suffix));
	buf[n] = '\0';
	return n;
}

/* JSON of an etcd key; tag as for ekey(); suffix appended ("/" or NULL). */
static json_t *jkey(const struct etcd_backend *e, char tag, const char *path,
		    const char *suffix)
{
	char buf[KEY_TEXT_MAX];

	return ustate_etcd_b64(buf, key_text(buf, e, tag, path, suffix));
}

/* JSON of the range end of all keys starting with tag, path, suffix. */
static json_t *jend(const struct etcd_backend *e, char tag, const char *path,
		    const char *suffix)
{
	char buf[KEY_TEXT_MAX], *r;
	json_t *j;

	r = range_end(buf, key_text(buf, e, tag, path, suffix));
	if (!r)
		return NULL;
	j = ustate_etcd_b64s(r);
	free(r);
	return j;
}

/*
 * What an etcd key of PREFIX is: 0 for a key of the store, the tag of a
 * side key, -1 for neither; *path points into k at the store path.
 */
static int classify(const struct etcd_backend *e, const char *k, size_t n,
		    const char **path)
{
	if (n <= e->plen || memcmp(k, e->prefix, e->plen) || k[e->plen] != '/')
		return -1;
	if (k[e->plen + 1] != '/') {
		*path = k + e->plen;
		return 0;
	}
	if (n < e->plen + SIDE_LEN + 1 || k[e->plen + SIDE_LEN] != '/')
		return -1;
	*path = k + e->plen + SIDE_LEN;
	return (unsigned char)k[e->plen + 2];
}

/* ---- JSON requests ---------------------------------------------------- */

/* Steal-and-check: json_pack's "o" takes references even on failure. */
static json_t *op_range(json_t *key, json_t *end, bool keys_only,
			bool count_only, uint64_t limit)
{
	json_t *r = json_object();

	if (!r || !key)
		goto fail;
	json_object_set_new_nocheck(r, "key", key);
	key = NULL;
	if (end)
		json_object_set_new_nocheck(r, "range_end", end);
	end = NULL;
	if (keys_only)
		json_object_set_new_nocheck(r, "keys_only", json_true());
	if (count_only)
		json_object_set_new_nocheck(r, "count_only", json_true());
	if (limit)
		json_object_set_new_nocheck(r, "limit", ustate_etcd_u64(limit));
	return r;
fail:
	json_decref(key);
	json_decref(end);
	json_decref(r);
	return NULL;
}

static json_t *wrap(const char *what, json_t *o)
{
	json_t *w;

	if (!o)
		return NULL;
	w = json_object();
	if (!w || json_object_set_new_nocheck(w, what, o) < 0) {
		json_decref(w);
		return NULL;
	}
	return w;
}

static json_t *req_range(json_t *key, json_t *end, bool keys_only)
{
	return wrap("request_range", op_range(key, end, keys_only, false, 0));
}

/* A put of key with value b64, already encoded; takes both references. */
static json_t *req_put_b64(json_t *key, json_t *b64)
{
	json_t *r = json_object();

	if (!r || !key || !b64) {
		json_decref(key);
		json_decref(b64);
		json_decref(r);
		return NULL;
	}
	json_object_set_new_nocheck(r, "key", key);
	json_object_set_new_nocheck(r, "value", b64);
	return wrap("request_put", r);
}

static json_t *req_put(json_t *key, const void *val, size_t len)
{
	return req_put_b64(key, ustate_etcd_b64(val, len));
}

/* The time now, as the value of a side key (base64 of its decimal text). */
/* The put of the write mark (see the top of this file). */
static json_t *req_mark(const struct etcd_backend *e)
{
	return req_put(jkey(e, 'r', "/", NULL), "", 0);
}

static json_t *jnow(void)
{
	char now[24];

	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	return ustate_etcd_b64s(now);
}

static json_t *req_put_str(json_t *key, const char *s)
{
	return req_put(key, s, strlen(s));
}

static json_t *req_del(json_t *key, json_t *end)
{
	json_t *r = json_object();

	if (!r || !key) {
		json_decref(key);
		json_decref(end);
		json_decref(r);
		return NULL;
	}
	json_object_set_new_nocheck(r, "key", key);
	if (end)
		json_object_set_new_nocheck(r, "range_end", end);
	return wrap("request_delete_range", r);
}

/* A compare of target ("VERSION", "CREATE") with result ("EQUAL", ...). */
static json_t *cmp(json_t *key, json_t *end, const char *target,
		   const char *result, uint64_t v)
{
	json_t *c = json_object();

	if (!c || !key) {
		json_decref(key);
		json_decref(end);
		json_decref(c);
		return NULL;
	}
	json_object_set_new_nocheck(c, "key", key);
	if (end)
		json_object_set_new_nocheck(c, "range_end", end);
	json_object_set_new_nocheck(c, "target", json_string_nocheck(target));
	json_object_set_new_nocheck(c, "result", json_string_nocheck(result));
	json_object_set_new_nocheck(c,
				    !strcmp(target, "VERSION") ? "version"
				    : !strcmp(target, "CREATE")
					    ? "create_revision"
					    : "mod_revision",
				    ustate_etcd_u64(v));
	return c;
}

/* Append o to array a; a NULL o (out of memory) poisons the array. */
static int add(json_t *a, json_t *o)
{
	if (!o)
		return -ENOMEM;
	return json_array_append_new(a, o) < 0 ? -ENOMEM : 0;
}

/* The first kv of a range response, or NULL. */
static json_t *first_kv(json_t *range_resp)
{
	return json_array_get(json_object_get(range_resp, "kvs"), 0);
}

/* The n-th response of a Txn's branch, unwrapped ("response_range"...). */
static json_t *txn_resp(json_t *txn, size_t n, const char *what)
{
	return json_object_get(
		json_array_get(json_object_get(txn, "responses"), n), what);
}

static uint64_t header_rev(json_t *resp)
{
	return ustate_etcd_get_u64(json_object_get(resp, "header"), "revision");
}

static int call(struct etcd_backend *e, const char *path, json_t *req,
		unsigned flags, json_t **out)
{
	int rc;

	if (!req)
		return -ENOMEM;
	rc = ustate_etcd_call(e->conn, path, req, flags, out);
	json_decref(req);
	if (rc == -E2BIG)
		ustate_log(&e->opts, LOG_ERR,
			   "%s: etcd refused a transaction of more operations "
			   "than its --max-txn-ops allows (128 by default)",
			   e->source);
	else if (rc == -EFBIG)
		ustate_log(&e->opts, LOG_ERR,
			   "%s: etcd refused a request over its "
			   "--max-request-bytes (1.5 MiB by default)",
			   e->source);
	return rc;
}

/*
 * The revision a linearizable read of the replica must wait for, from a
 * quorum read that began after this call did: the mod revision of the
 * write mark, the last write through libustate, anywhere. (Not etcd's
 * revision: other stores of the cluster move it, outside PREFIX, where
 * the replica's watch never reaches. So a write into PREFIX by another
 * etcd client, which puts no mark, is seen within the watch's delay.)
 * A store without a mark yet waits for etcd's revision. Up to
 * QUORUM_READS are under way at once; a reader that finds as many waits
 * for the next that starts after it arrived, and shares its answer with
 * every reader that arrived before it started. One at a time: with 4,
 * 16 readers of a mount read 0.51x an etcd range, with 1 0.78x (the
 * 2-core benchmark machine, where etcd's CPU is the limit); with the
 * mount's 64 FUSE threads, 2 at once 0.93x, 1 1.06-1.13x.
 */
static int quorum_rev(struct etcd_backend *e, uint64_t *rev)
{
	json_t *resp = NULL;
	uint64_t arrived, mine, got;
	int rc;

	pthread_mutex_lock(&e->qlock);
	/* Only a read started after this one arrived will do. */
	arrived = e->qstarted;
	while (e->qdone <= arrived) {
		if (e->qinflight >= QUORUM_READS) {
			pthread_cond_wait(&e->qcond, &e->qlock);
			continue;
		}
		mine = ++e->qstarted;
		e->qinflight++;
		pthread_mutex_unlock(&e->qlock);
		rc = call(
			e, "/v3/kv/range",
			op_range(jkey(e, 'r', "/", NULL), NULL, true, false, 0),
			USTATE_ETCD_READ, &resp);
		got = rc == 0 ? ustate_etcd_get_u64(first_kv(resp),
						    "mod_revision")
			      : 0;
		if (rc == 0 && !got)
			got = header_rev(resp);
		json_decref(resp);
		resp = NULL;
		pthread_mutex_lock(&e->qlock);
		e->qinflight--;
		e->qreads++;
		/* The latest started of those done answers the waiters. */
		if (mine > e->qdone) {
			e->qdone = mine;
			e->qrc = rc;
			e->qrev = got;
		}
		pthread_cond_broadcast(&e->qcond);
	}
	rc = e->qrc;
	*rev = e->qrev;
	pthread_mutex_unlock(&e->qlock);
	return rc;
}

/*
 * A read (range, or Txn of ranges) from the replica when there is one
 * and it can answer at the consistency asked, else from etcd. The
 * replica waits for the handle's own last commit in either level.
 */
/*
 * Whether the replica was passed by at revision at already (a read there
 * found it behind, and went to the cluster): then no wait again.
 */
static bool replica_passed(struct etcd_backend *e, uint64_t at)
{
	bool yes;

	pthread_mutex_lock(&e->qlock);
	yes = e->passed == at;
	pthread_mutex_unlock(&e->qlock);
	return yes;
}

/*
 * Whether the replica may answer a read, and the revision it must reach
 * first (*need): 1, or 0 when etcd must (no replica, or one passed by at
 * its revision), or -errno of the quorum read.
 */
static int replica_plan(struct etcd_backend *e, uint64_t *need)
{
	uint64_t want, at;
	int rc;

	if (!e->mirror)
		return 0;
	pthread_mutex_lock(&e->lock);
	want = e->want > e->floor ? e->want : e->floor;
	pthread_mutex_unlock(&e->lock);
	*need = want;
	if (e->opts.consistency == USTATE_CONSISTENCY_LINEARIZABLE) {
		at = ustate_etcd_mirror_revision(e->mirror);
		if (!at || replica_passed(e, at))
			return 0;
		rc = quorum_rev(e, need);
		if (rc < 0)
			return rc;
		if (*need < want)
			*need = want;
	}
	at = ustate_etcd_mirror_revision(e->mirror);
	return *need > at && replica_passed(e, at) ? 0 : 1;
}

/*
 * After a read the replica could not answer (-EAGAIN) at need: when it
 * was behind, no read waits for it again at that revision.
 */
static void replica_missed(struct etcd_backend *e, uint64_t need)
{
	uint64_t at = ustate_etcd_mirror_revision(e->mirror);

	pthread_mutex_lock(&e->qlock);
	if (at && at < need)
		e->passed = at;
	pthread_mutex_unlock(&e->qlock);
}

static void replica_count(struct etcd_backend *e, bool local)
{
	if (!e->mirror)
		return;
	pthread_mutex_lock(&e->qlock);
	if (local)
		e->local++;
	else
		e->remote++;
	pthread_mutex_unlock(&e->qlock);
}

static int read_call(struct etcd_backend *e, const char *path, json_t *req,
		     json_t **out)
{
	uint64_t need = 0;
	int rc;

	rc = req ? replica_plan(e, &need) : 0;
	if (rc < 0) {
		json_decref(req);
		return rc;
	}
	if (rc > 0) {
		rc = ustate_etcd_mirror_read(e->mirror, path, req, need,
					     REPLICA_WAIT_MS, out);
		if (rc != -EAGAIN) {
			replica_count(e, true);
			json_decref(req);
			return rc;
		}
		replica_missed(e, need);
	}
	replica_count(e, false);
	return call(e, path, req, USTATE_ETCD_READ, out);
}

/*
 * Read the n ranges rs (borrowed) as one Txn, by read_call()'s rules:
 * from the replica without any JSON, else from etcd. 0 with *out (the
 * caller frees it with ustate_etcd_ranges_free()), or -errno.
 */
static int read_ranges(struct etcd_backend *e,
		       const struct ustate_etcd_range *rs, size_t n,
		       struct ustate_etcd_ranges **out)
{
	json_t *resp = NULL;
	uint64_t need = 0;
	int rc;

	rc = replica_plan(e, &need);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		rc = ustate_etcd_mirror_ranges(e->mirror, rs, n, need,
					       REPLICA_WAIT_MS, out);
		if (rc != -EAGAIN) {
			replica_count(e, true);
			return rc;
		}
		replica_missed(e, need);
	}
	replica_count(e, false);
	/* One range alone is etcd's Range (with what a Txn may refuse). */
	if (n == 1) {
		*out = ustate_etcd_ranges_new(1);
		if (!*out)
			return -ENOMEM;
		rc = call(e, "/v3/kv/range", ustate_etcd_range_request(rs),
			  USTATE_ETCD_READ, &resp);
		if (rc == 0) {
			(*out)->revision = header_rev(resp);
			rc = ustate_etcd_range_resp_parse(resp, &(*out)->r[0]);
		}
	} else {
		rc = call(e, "/v3/kv/txn", ustate_etcd_ranges_request(rs, n),
			  USTATE_ETCD_READ, &resp);
		if (rc == 0)
			rc = ustate_etcd_ranges_parse(resp, n, out);
	}
	json_decref(resp);
	if (rc < 0 && n == 1) {
		ustate_etcd_ranges_free(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * A barrier: at USTATE_CONSISTENCY_LOCAL, the reads that follow wait for
 * the replica to reach etcd's revision now (one quorum read, shared),
 * or go to etcd. Otherwise every read sees every commit already.
 */
static int etcd_barrier(void *b)
{
	struct etcd_backend *e = b;
	uint64_t rev;
	int rc;

	if (!e->mirror || e->opts.consistency != USTATE_CONSISTENCY_LOCAL)
		return 0;
	rc = quorum_rev(e, &rev);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&e->lock);
	if (rev > e->floor)
		e->floor = rev;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

static bool etcd_connected(void *b)
{
	struct etcd_backend *e = b;

	return e->mirror ? ustate_etcd_mirror_connected(e->mirror)
			 : ustate_etcd_reachable(e->conn);
}

/* A Txn of reads only (no compare): one consistent snapshot, from the
 * replica when local (see read_call()), else from etcd. */
static int read_txn(struct etcd_backend *e, json_t *ops, bool local,
		    json_t **out)
{
	json_t *req;

	req = json_object();
	if (!req || !ops) {
		json_decref(req);
		json_decref(ops);
		return -ENOMEM;
	}
	json_object_set_new_nocheck(req, "success", ops);
	return local ? read_call(e, "/v3/kv/txn", req, out)
		     : call(e, "/v3/kv/txn", req, USTATE_ETCD_READ, out);
}

/* ---- reads ------------------------------------------------------------ */

/*
 * Whether etcd key k (n bytes) is a side key of tag ('c', 'u', 'm'): K +
 * tab + tag, the one tab (no key holds one), not an attribute's name that
 * ends so.
 */
static bool side_is(const char *k, size_t n, char tag)
{
	return n >= 2 && memchr(k, '\t', n) == k + n - 2 && k[n - 1] == tag;
}

/* The side key (tag) among the kvs of a range, or NULL. */
static const struct ustate_etcd_kv *side_kv(const struct ustate_etcd_kvs *s,
					    char tag)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (side_is(s->kv[i].key, s->kv[i].klen, tag))
			return &s->kv[i];
	return NULL;
}

/* The side key (tag) among the JSON kvs of a range, or NULL. */
static json_t *side_of(json_t *kvs, char tag)
{
	json_t *kv;
	size_t i, n;
	char *k;
	bool yes;

	json_array_foreach(kvs, i, kv)
	{
		if (ustate_etcd_get_bytes(kv, "key", &k, &n) < 0)
			continue;
		yes = side_is(k, n, tag);
		free(k);
		if (yes)
			return kv;
	}
	return NULL;
}

/* The entry of a key from the kv of its value and the kvs of its sides. */
static int entry_from(const char *key, const struct ustate_etcd_kv *kv,
		      const struct ustate_etcd_kvs *sides, ustate_entry **out)
{
	const struct ustate_etcd_kv *c = side_kv(sides, 'c');
	const struct ustate_etcd_kv *u = side_kv(sides, 'u');
	ustate_entry *en;

	en = ustate_entry_new(key, kv->value, kv->vlen);
	if (!en)
		return -ENOMEM;
	en->version = kv->version;
	en->mod_revision = kv->mod_rev;
	/* Side keys older than this incarnation, or write, are stale. */
	if (c && c->mod_rev >= kv->create_rev)
		en->created_at = strtoll(c->value, NULL, 10);
	if (u && u->mod_rev == kv->mod_rev)
		en->updated_at = strtoll(u->value, NULL, 10);
	*out = en;
	return 0;
}

/* entry_from() with etcd's JSON kv and kvs of sides (borrowed). */
static int entry_of(const char *key, json_t *kv, json_t *sides,
		    ustate_entry **out)
{
	struct ustate_etcd_kvs one = {0}, ss = {0};
	int rc;

	rc = ustate_etcd_kv_parse(kv, &one);
	if (rc == 0)
		rc = ustate_etcd_kvs_parse(sides, &ss);
	if (rc == 0)
		rc = entry_from(key, &one.kv[0], &ss, out);
	ustate_etcd_kvs_clear(&one);
	ustate_etcd_kvs_clear(&ss);
	return rc;
}

static int entry_lease_id(struct etcd_backend *e, int64_t id,
			  ustate_entry **en);

/* r reads the etcd key of path (tag, suffix as key_text()) alone. */
static void range_key(struct ustate_etcd_range *r, char *buf,
		      const struct etcd_backend *e, char tag, const char *path,
		      const char *suffix)
{
	r->key = buf;
	r->klen = key_text(buf, e, tag, path, suffix);
}

/* r reads every etcd key that starts with that of path + suffix. */
static void range_prefix(struct ustate_etcd_range *r, char *buf, char *ebuf,
			 const struct etcd_backend *e, char tag,
			 const char *path, const char *suffix)
{
	size_t n;

	range_key(r, buf, e, tag, path, suffix);
	n = r->klen;
	memcpy(ebuf, buf, n);
	while (n && (unsigned char)ebuf[n - 1] == 0xff)
		n--;
	if (n) {
		ebuf[n - 1]++;
	} else {
		ebuf[0] = '\0'; /* every key from it on */
		n = 1;
	}
	r->end = ebuf;
	r->elen = n;
}

/* r reads the side keys of key but its attributes ("\tx..."). */
static void range_sides(struct ustate_etcd_range *r, char *buf, char *ebuf,
			const struct etcd_backend *e, const char *key)
{
	range_key(r, buf, e, 'k', key, "\t");
	r->end = ebuf;
	r->elen = key_text(ebuf, e, 'k', key, "\tx");
}

static int etcd_get(void *b, const char *key, ustate_entry **out)
{
	struct etcd_backend *e = b;
	struct ustate_etcd_range rs[2] = {{0}};
	struct ustate_etcd_ranges *res = NULL;
	char *kb;
	int rc;

	kb = malloc(3 * KEY_TEXT_MAX);
	if (!kb)
		return -ENOMEM;
	range_key(&rs[0], kb, e, 0, key, NULL);
	/* Its side keys but the attributes, which an entry has no use for. */
	range_sides(&rs[1], kb + KEY_TEXT_MAX, kb + 2 * KEY_TEXT_MAX, e, key);
	rc = read_ranges(e, rs, 2, &res);
	free(kb);
	if (rc < 0)
		return rc;
	if (!res->r[0].n)
		rc = -ENOENT;
	else
		rc = entry_from(key, &res->r[0].kv[0], &res->r[1], out);
	if (rc == 0)
		rc = entry_lease_id(e, res->r[0].kv[0].lease, out);
	ustate_etcd_ranges_free(res);
	return rc;
}

/*
 * Two ranges a key (its value, its sides) in one read: etcd's Txn, or
 * the replica's one transaction. n = 0 reads the revision key alone.
 */
static int etcd_get_many(void *b, const char *const *keys, size_t n,
			 ustate_entry **out, uint64_t *revision)
{
	struct etcd_backend *e = b;
	struct ustate_etcd_ranges *res = NULL;
	struct ustate_etcd_range *rs;
	char *kb;
	size_t i;
	int rc;

	if (2 * n > e->opts.max_txn_ops) {
		ustate_log(&e->opts, LOG_ERR,
			   "%s: %zu keys take %zu ranges, over the server's "
			   "--max-txn-ops (max_txn_ops=%zu)",
			   e->source, n, 2 * n, e->opts.max_txn_ops);
		return -E2BIG;
	}
	rs = calloc(n ? 2 * n : 1, sizeof(*rs));
	kb = malloc((n ? 3 * n : 1) * KEY_TEXT_MAX);
	if (!rs || !kb) {
		rc = -ENOMEM;
		goto out;
	}
	if (!n)
		range_key(&rs[0], kb, e, 'v', "/", NULL);
	for (i = 0; i < n; i++) {
		range_key(&rs[2 * i], kb + 3 * i * KEY_TEXT_MAX, e, 0, keys[i],
			  NULL);
		range_sides(&rs[2 * i + 1], kb + (3 * i + 1) * KEY_TEXT_MAX,
			    kb + (3 * i + 2) * KEY_TEXT_MAX, e, keys[i]);
	}
	rc = read_ranges(e, rs, n ? 2 * n : 1, &res);
	if (rc < 0)
		goto out;
	*revision = res->revision;
	for (i = 0; rc == 0 && i < n; i++) {
		if (!res->r[2 * i].n)
			continue;
		rc = entry_from(keys[i], &res->r[2 * i].kv[0],
				&res->r[2 * i + 1], &out[i]);
		if (rc == 0)
			rc = entry_lease_id(e, res->r[2 * i].kv[0].lease,
					    &out[i]);
	}
	for (i = 0; rc < 0 && i < n; i++) {
		ustate_entry_free(out[i]);
		out[i] = NULL;
	}
out:
	ustate_etcd_ranges_free(res);
	free(kb);
	free(rs);
	return rc;
}

static int etcd_key_version(void *b, const char *key, uint64_t *version)
{
	struct etcd_backend *e = b;
	json_t *resp = NULL;
	int rc;

	rc = read_call(e, "/v3/kv/range",
		       op_range(jkey(e, 0, key, NULL), NULL, true, false, 0),
		       &resp);
	if (rc < 0)
		return rc;
	*version = ustate_etcd_get_u64(first_kv(resp), "version");
	json_decref(resp);
	return 0;
}

static int etcd_revision(void *b, uint64_t *rev)
{
	struct etcd_backend *e = b;
	json_t *resp = NULL;
	int rc;

	/* A linearizable read of one key nobody writes: the revision. */
	rc = call(e, "/v3/kv/range",
		  op_range(jkey(e, 'v', "/", NULL), NULL, true, true, 0),
		  USTATE_ETCD_READ, &resp);
	if (rc < 0)
		return rc;
	*rev = header_rev(resp);
	json_decref(resp);
	return 0;
}

/* ---- paginated ranges ------------------------------------------------- */

/*
 * A walk over the etcd keys in [start, end), PAGE at a time, all pages at
 * the revision of the first. Keys the walk gives are borrowed until the
 * next call.
 */
struct walk {
	struct etcd_backend *e;
	char *start, *end; /* raw etcd keys; start moves on */
	size_t slen;
	bool keys_only;
	uint64_t rev;			  /* 0 until the first page */
	json_t *page;			  /* the kvs of the page */
	struct ustate_etcd_ranges *npage; /* ... when native */
	bool native; /* keys read without JSON (read_ranges()) */
	size_t pos;
	bool more; /* etcd has more after the page */
	bool done;
	uint64_t limit; /* keys at most in all (0: no limit) */
	uint64_t given;
	uint64_t want; /* keys the caller still needs (0: as many as come) */
};

static int walk_init(struct walk *w, struct etcd_backend *e, const char *start,
		     size_t slen, const char *end, size_t elen, bool keys_only,
		     uint64_t rev)
{
	memset(w, 0, sizeof(*w));
	w->e = e;
	w->start = malloc(slen + 1);
	w->end = malloc(elen + 1);
	if (!w->start || !w->end) {
		free(w->start);
		free(w->end);
		return -ENOMEM;
	}
	memcpy(w->start, start, slen);
	w->start[slen] = '\0';
	w->slen = slen;
	memcpy(w->end, end, elen);
	w->end[elen] = '\0';
	w->keys_only = keys_only;
	w->rev = rev;
	w->more = true;
	return 0;
}

static void walk_free(struct walk *w)
{
	free(w->start);
	free(w->end);
	json_decref(w->page);
	ustate_etcd_ranges_free(w->npage);
	w->start = w->end = NULL;
	w->page = NULL;
	w->npage = NULL;
}

/* A page of a native walk: its kvs, or NULL before the first. */
static const struct ustate_etcd_kvs *walk_kvs(const struct walk *w)
{
	return w->npage ? &w->npage->r[0] : NULL;
}

static int walk_fetch_native(struct walk *w, uint64_t lim)
{
	struct ustate_etcd_range q = {.key = w->start,
				      .klen = w->slen,
				      .end = w->end,
				      .elen = strlen(w->end),
				      .limit = lim,
				      .revision = w->rev,
				      .keys_only = w->keys_only};
	struct ustate_etcd_ranges *res = NULL;
	int rc;

	rc = read_ranges(w->e, &q, 1, &res);
	if (rc < 0)
		return rc;
	if (!w->rev)
		w->rev = res->revision;
	ustate_etcd_ranges_free(w->npage);
	w->npage = res;
	w->more = res->r[0].more;
	w->pos = 0;
	return 0;
}

static int walk_fetch(struct walk *w)
{
	json_t *r, *resp = NULL;
	uint64_t lim = PAGE;
	int rc;

	if (w->limit && w->limit - w->given < lim)
		lim = w->limit - w->given;
	if (w->want && w->want < lim)
		lim = w->want;
	if (w->native)
		return walk_fetch_native(w, lim);
	r = op_range(ustate_etcd_b64(w->start, w->slen),
		     ustate_etcd_b64s(w->end), w->keys_only, false, lim);
	if (r && w->rev)
		json_object_set_new_nocheck(r, "revision",
					    ustate_etcd_u64(w->rev));
	rc = read_call(w->e, "/v3/kv/range", r, &resp);
	if (rc < 0)
		return rc;
	if (!w->rev)
		w->rev = header_rev(resp);
	json_decref(w->page);
	w->page = json_incref(json_object_get(resp, "kvs"));
	w->more = json_is_true(json_object_get(resp, "more"));
	w->pos = 0;
	json_decref(resp);
	return 0;
}

/*
 * The next kv (borrowed), and in *key (*klen bytes) its decoded etcd
 * key, owned by the walk until the next call: 1, 0 at the end, or an
 * error.
 */
static int walk_next(struct walk *w, json_t **kv, char **key, size_t *klen)
{
	json_t *x;
	int rc;

	free(*key);
	*key = NULL;
	if (w->done)
		return 0;
	if (w->native ? !w->npage || w->pos >= walk_kvs(w)->n
		      : !w->page || w->pos >= json_array_size(w->page)) {
		if (!w->more || (w->limit && w->given >= w->limit)) {
			w->done = true;
			return 0;
		}
		rc = walk_fetch(w);
		if (rc < 0)
			return rc;
		if (w->native ? !walk_kvs(w)->n : !json_array_size(w->page)) {
			w->done = true;
			return 0;
		}
	}
	if (w->native) {
		/* (No JSON: kv is NULL.) */
		const struct ustate_etcd_kv *nk = &walk_kvs(w)->kv[w->pos++];

		x = NULL;
		*key = malloc(nk->klen + 1);
		if (!*key)
			return -ENOMEM;
		memcpy(*key, nk->key, nk->klen + 1);
		*klen = nk->klen;
	} else {
		x = json_array_get(w->page, w->pos++);
		rc = ustate_etcd_get_bytes(x, "key", key, klen);
		if (rc < 0)
			return rc;
	}
	/* The next page starts just after this key. */
	free(w->start);
	w->start = malloc(*klen + 1);
	if (!w->start)
		return -ENOMEM;
	memcpy(w->start, *key, *klen);
	w->start[*klen] = '\0';
	w->slen = *klen + 1;
	w->given++;
	*kv = x;
	return 1;
}

/* ---- scan ------------------------------------------------------------- */

struct names {
	char **v;
	size_t n, cap;
};

static int names_add(struct names *l, const char *s)
{
	char **g;

	if (l->n == l->cap) {
		g = realloc(l->v, (l->cap ? l->cap * 2 : 16) * sizeof(*g));
		if (!g)
			return -ENOMEM;
		l->v = g;
		l->cap = l->cap ? l->cap * 2 : 16;
	}
	l->v[l->n] = strdup(s);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

/*
 * Walk names of one tag (0: keys) in [lo, hi) of store paths, appending
 * those that are valid to l, up to max in all.
 */
static int scan_range(struct etcd_backend *e, char tag, const char *lo,
		      size_t lolen, const char *hi, size_t hilen, size_t max,
		      uint64_t *rev, struct names *l)
{
	char *s = NULL, *en = NULL, *k = NULL;
	size_t base = e->plen + (tag ? SIDE_LEN : 0), klen;
	const char *path;
	struct walk w;
	json_t *kv;
	int rc;

	s = malloc(base + lolen + 1);
	en = malloc(base + hilen + 1);
	if (!s || !en) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(s, e->prefix, e->plen);
	memcpy(en, e->prefix, e->plen);
	if (tag) {
		memcpy(s + e->plen, "//", 2);
		s[e->plen + 2] = tag;
		memcpy(en + e->plen, s + e->plen, SIDE_LEN);
	}
	memcpy(s + base, lo, lolen);
	memcpy(en + base, hi, hilen);
	rc = walk_init(&w, e, s, base + lolen, en, base + hilen, true, *rev);
	if (rc < 0)
		goto out;
	w.native = true; /* keys only: no kv needed */
	/* A page of what is still wanted (keys the store skips ask again). */
	while (l->n < max && (w.want = max - l->n) &&
	       (rc = walk_next(&w, &kv, &k, &klen)) > 0) {
		if (classify(e, k, klen, &path) != tag ||
		    strlen(path) != klen - base)
			continue;
		/* Keys other clients wrote that break the key rules. */
		if (ustate_key_valid(path) < 0)
			continue;
		rc = names_add(l, path);
		if (rc < 0)
			break;
	}
	if (!*rev)
		*rev = w.rev;
	free(k);
	walk_free(&w);
out:
	free(s);
	free(en);
	return rc < 0 ? rc : 0;
}

static int etcd_scan(void *b, int set, const char *prefix, const char *after,
		     size_t max, char ***out, size_t *n)
{
	struct etcd_backend *e = b;
	struct names l = {0};
	char lo[USTATE_KEY_MAX + 8], *hi;
	size_t lolen, plen, hilen;
	uint64_t rev = 0;
	char tag = set == USTATE_SCAN_DIRS ? 'd' : 0;
	int rc;

	/* Every path starts with "/"; none of the store with "//". */
	if (!*prefix)
		prefix = "/";
	plen = strlen(prefix);
	if (prefix[0] != '/' || (plen > 1 && prefix[1] == '/') || !max) {
		*out = NULL;
		*n = 0;
		return 0;
	}
	lolen = plen;
	memcpy(lo, prefix, plen);
	if (after && strcmp(after, prefix) >= 0) {
		/* Strictly after: after + "\0" is the first key past it. */
		lolen = strlen(after) + 1;
		if (lolen > sizeof(lo))
			lolen = sizeof(lo);
		memcpy(lo, after, lolen);
	}
	hi = range_end(prefix, plen);
	if (!hi)
		return -ENOMEM;
	hilen = strlen(hi);
	if (!tag && plen == 1 && (lolen < 2 || lo[1] <= '/')) {
		/* The side keys lie in "//" ... "/0": walk around them. */
		rc = 0;
		if (lolen < 2 || lo[1] < '/')
			rc = scan_range(e, 0, lo, lolen, "//", 2, max, &rev,
					&l);
		if (rc == 0 && l.n < max)
			rc = scan_range(e, 0, "/0", 2, hi, hilen, max, &rev,
					&l);
	} else {
		rc = scan_range(e, tag, lo, lolen, hi, hilen, max, &rev, &l);
	}
	free(hi);
	if (rc < 0) {
		ustate_list_free(l.v, l.n);
		return rc;
	}
	/* The root's record holds its owner only: no record of a path. */
	if (tag && l.n && !strcmp(l.v[0], "/")) {
		free(l.v[0]);
		memmove(l.v, l.v + 1, --l.n * sizeof(*l.v));
	}
	*out = l.n ? l.v : NULL;
	if (!l.n)
		free(l.v);
	*n = l.n;
	return 0;
}

static int etcd_node(void *b, const char *path, unsigned *flags,
		     uint64_t *revision, ustate_entry **entry)
{
	struct etcd_backend *e = b;
	struct ustate_etcd_range rs[5] = {{0}};
	struct ustate_etcd_ranges *res = NULL;
	ustate_entry *en = NULL;
	unsigned f = 0;
	char *kb;
	int rc = 0;

	kb = malloc(8 * KEY_TEXT_MAX);
	if (!kb)
		return -ENOMEM;
	/* The value, a child of either kind, the record, the sides. */
	range_key(&rs[0], kb, e, 0, path, NULL);
	rs[0].keys_only = !entry;
	range_prefix(&rs[1], kb + KEY_TEXT_MAX, kb + 2 * KEY_TEXT_MAX, e, 0,
		     path, "/");
	range_prefix(&rs[2], kb + 3 * KEY_TEXT_MAX, kb + 4 * KEY_TEXT_MAX, e,
		     'd', path, "/");
	rs[1].keys_only = rs[2].keys_only = true;
	rs[1].limit = rs[2].limit = 1;
	range_key(&rs[3], kb + 5 * KEY_TEXT_MAX, e, 'd', path, NULL);
	rs[3].keys_only = true;
	if (entry)
		range_sides(&rs[4], kb + 6 * KEY_TEXT_MAX,
			    kb + 7 * KEY_TEXT_MAX, e, path);
	rc = read_ranges(e, rs, entry ? 5 : 4, &res);
	free(kb);
	if (rc < 0)
		return rc;
	if (res->r[0].n) {
		f |= USTATE_NODE_VALUE;
		if (entry)
			rc = entry_from(path, &res->r[0].kv[0], &res->r[4],
					&en);
		if (entry && rc == 0)
			rc = entry_lease_id(e, res->r[0].kv[0].lease, &en);
	}
	if (res->r[1].n || res->r[2].n)
		f |= USTATE_NODE_CHILDREN;
	if (res->r[3].n)
		f |= USTATE_NODE_RECORD;
	if (rc == 0) {
		*flags = f;
		if (revision)
			*revision = res->revision;
		if (entry)
			*entry = en;
	}
	ustate_etcd_ranges_free(res);
	return rc;
}

/*
 * Parse "uid gid mode[ flags mtime_ns ctime_ns]" into m: 0, or -ENOENT
 * for an empty or bad value. Libraries before the times wrote the first
 * three alone, and read those alone.
 */
static int meta_parse(json_t *kv, ustate_meta *m)
{
	unsigned uid, gid, mode, flags = 0;
	long long mtime = 0, ctime = 0;
	char *v;
	size_t n;
	int rc, got;

	rc = ustate_etcd_get_bytes(kv, "value", &v, &n);
	if (rc < 0)
		return rc;
	got = sscanf(v, "%u %u %o %u %lld %lld", &uid, &gid, &mode, &flags,
		     &mtime, &ctime);
	rc = (got == 3 || got == 6) && mode <= 07777 ? 0 : -ENOENT;
	free(v);
	if (rc == 0)
		*m = (ustate_meta){.uid = uid,
				   .gid = gid,
				   .mode = mode,
				   .flags = flags & USTATE_META_MTIME,
				   .mtime_ns = mtime,
				   .ctime_ns = ctime};
	return rc;
}

#define META_TEXT_MAX 96

static void meta_text(char *buf, size_t len, const ustate_meta *m)
{
	if (!m->flags && !m->ctime_ns)
		snprintf(buf, len, "%u %u %04o", m->uid, m->gid, m->mode);
	else
		snprintf(buf, len, "%u %u %04o %u %lld %lld", m->uid, m->gid,
			 m->mode, m->flags, (long long)m->mtime_ns,
			 (long long)m->ctime_ns);
}

static int etcd_meta_get(void *b, const char *path, unsigned which,
			 ustate_meta *out)
{
	struct etcd_backend *e = b;
	json_t *ops = json_array(), *resp = NULL, *kv, *m;
	int rc;

	if (which == USTATE_META_DIR) {
		rc = read_call(e, "/v3/kv/range",
			       op_range(jkey(e, 'd', path, NULL), NULL, false,
					false, 0),
			       &resp);
		if (rc < 0) {
			json_decref(ops);
			return rc;
		}
		kv = first_kv(resp);
		rc = kv ? meta_parse(kv, out) : -ENOENT;
		json_decref(resp);
		json_decref(ops);
		return rc;
	}
	if (add(ops, req_range(jkey(e, 0, path, NULL), NULL, true)) ||
	    add(ops, req_range(jkey(e, 'k', path, "\tm"), NULL, false))) {
		json_decref(ops);
		return -ENOMEM;
	}
	rc = read_txn(e, ops, true, &resp);
	if (rc < 0)
		return rc;
	kv = first_kv(txn_resp(resp, 0, "response_range"));
	m = first_kv(txn_resp(resp, 1, "response_range"));
	/*
	 * An owner older than the key's incarnation went with the old one;
	 * a time older than its last write went with that write.
	 */
	if (!kv || !m ||
	    ustate_etcd_get_u64(m, "mod_revision") <
		    ustate_etcd_get_u64(kv, "create_revision"))
		rc = -ENOENT;
	else
		rc = meta_parse(m, out);
	if (rc == 0 && ustate_etcd_get_u64(m, "mod_revision") <
			       ustate_etcd_get_u64(kv, "mod_revision"))
		out->flags &= ~(uint32_t)USTATE_META_MTIME;
	json_decref(resp);
	return rc;
}

/*
 * The attributes of a range response into a blob: each kv whose etcd key
 * is the skip bytes of its side key's prefix, then the name, from an
 * incarnation at or after rev (the others went with an older one).
 */
static int xattrs_blob(json_t *range, size_t skip, uint64_t rev, void **blob,
		       size_t *len)
{
	json_t *kvs = json_object_get(range, "kvs"), *kv;
	size_t i, klen, vlen, used = 0, cap = 0;
	char *buf = NULL, *k, *v;
	int rc = 0;

	json_array_foreach(kvs, i, kv)
	{
		if (ustate_etcd_get_u64(kv, "mod_revision") < rev)
			continue;
		rc = ustate_etcd_get_bytes(kv, "key", &k, &klen);
		if (rc < 0)
			break;
		rc = ustate_etcd_get_bytes(kv, "value", &v, &vlen);
		if (rc < 0) {
			free(k);
			break;
		}
		if (klen > skip)
			rc = ustate_xattr_append(&buf, &used, &cap, k + skip, v,
						 vlen);
		free(k);
		free(v);
		if (rc < 0)
			break;
	}
	if (rc == 0 && !used)
		rc = -ENOENT;
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*blob = buf;
	*len = used;
	return 0;
}

static int etcd_xattrs(void *b, const char *path, unsigned which, void **blob,
		       size_t *len)
{
	struct etcd_backend *e = b;
	bool dir = which == USTATE_META_DIR, root = dir && !strcmp(path, "/");
	const char *suffix = dir ? "\t" : "\tx";
	char tag = dir ? 'x' : 'k';
	json_t *ops = json_array(), *resp = NULL, *kv, *c;
	size_t skip = e->plen + SIDE_LEN + strlen(path) + strlen(suffix);
	uint64_t rev = 0;
	int rc;

	/* The key (and its created_at) or the record, then the names. */
	if (root)
		rc = 0;
	else if (dir)
		rc = add(ops, req_range(jkey(e, 'd', path, NULL), NULL, true));
	else
		rc = add(ops, req_range(jkey(e, 0, path, NULL), NULL, true)) ||
		     add(ops, req_range(jkey(e, 'k', path, "\tc"), NULL, true));
	if (rc == 0)
		rc = add(ops, req_range(jkey(e, tag, path, suffix),
					jend(e, tag, path, suffix), false));
	if (rc) {
		json_decref(ops);
		return -ENOMEM;
	}
	rc = read_txn(e, ops, true, &resp);
	if (rc < 0)
		return rc;
	if (!root) {
		kv = first_kv(txn_resp(resp, 0, "response_range"));
		rev = ustate_etcd_get_u64(kv, "create_revision");
		c = dir ? NULL : first_kv(txn_resp(resp, 1, "response_range"));
		/* A key deleted and written in one Txn: its created_at. */
		if (c && ustate_etcd_get_u64(c, "mod_revision") > rev)
			rev = ustate_etcd_get_u64(c, "mod_revision");
		if (!kv)
			rc = -ENOENT;
	}
	if (rc == 0)
		rc = xattrs_blob(txn_resp(resp,
					  root	? 0
					  : dir ? 1
						: 2,
					  "response_range"),
				 skip, rev, blob, len);
	json_decref(resp);
	return rc;
}

struct plan;
static json_t *lease_jkey(const struct etcd_backend *e, const char *name);
static int lease_resolve(struct etcd_backend *e, struct plan *p,
			 ustate_txn_result *res);

/* ---- transactions ----------------------------------------------------- */

enum { UNKNOWN, PRESENT, ABSENT };

/* One key that a transaction checks or writes. */
struct tkey {
	const char *key;
	bool written;	/* by a SET, CREATE, DELETE or META */
	int need;	/* PRESENT or ABSENT before: a compare; or UNKNOWN */
	bool set_first; /* the first write is a SET on an unknown state */
	bool recreated; /* it goes from absent to present in the txn */
	int state;	/* after the ops, as far as the ops tell */
	int value_op;	/* the last SET or CREATE still in effect, or -1 */
	int meta;	/* 0 untouched, 1 set by meta_op, 2 dropped */
	int meta_op;
	bool deleted; /* a DELETE among its ops */
	bool xattrs;  /* an XATTR after its last DELETE */
	bool checked; /* a CHECK_VERSION names its state before */
	bool built;   /* its writes are in the Txn */
	uint64_t v0;  /* the version before, once read */
	int src;      /* where a committed Txn tells v0 (SRC_*) */
	size_t at;    /* ... at this index of success (or of nest) */
	size_t fail;  /* its read in the failure branch */
	json_t *jk;   /* its etcd key as JSON, while txn_send builds */
};

/* How a committed Txn tells the version a key had before. */
enum {
	SRC_CHECK,  /* checked: at the version its first check named */
	SRC_KNOWN0, /* a CREATE's compare: absent */
	SRC_NEST,   /* the nested Txn that writes created_at */
	SRC_RANGE,  /* a read before the writes */
};

/* One directory record that a transaction makes or drops. */
struct tdir {
	const char *path;
	bool root;
	int state;    /* PRESENT or ABSENT after */
	bool dropped; /* an RMDIR among its ops */
	int meta_op;  /* the last MKDIR with a value, or -1 */
	bool v0;      /* recorded before, once read */
	int src;      /* where a committed Txn tells v0 (DSRC_*) */
	size_t at;    /* ... at this index of nest or of the writes */
};

enum { DSRC_NONE, DSRC_NEST, DSRC_PUT, DSRC_DEL };

struct plan {
	const ustate_op *ops;
	size_t n;
	struct tkey *keys;
	size_t nkeys;
	struct tdir *dirs;
	size_t ndirs;
	size_t *slot;	      /* per op: its key or dir */
	uint64_t *count;      /* per op: CHECK_CHILDREN's count, once read */
	size_t *cfail;	      /* per op: CHECK_CHILDREN's read on failure */
	bool needs_read;      /* read the state before building the Txn */
	size_t xattr_puts;    /* XATTR puts in the Txn (txn_certain()) */
	bool static_fail;     /* fails whatever the state: read, and report */
	struct names *kids;   /* per op: the children a CHECK_CHILDREN read */
	uint64_t read_rev;    /* the revision of that read */
	size_t nest_at, w_at; /* where nest and the writes begin in success */
	size_t mark_fail;     /* where failure reads the write mark */
	bool single_set;      /* one SET: a Txn of its own shape (txn_send) */
	int64_t *lease_id;    /* per op: the etcd lease of its write, or 0 */
	uint64_t *lease_crev; /* ... and the create revision of its record */
};

/* Whether an XATTR op names a directory record (else a key). */
static bool xattr_of_dir(const ustate_op *op)
{
	return (op->version & ~(uint64_t)USTATE_XATTR_REMOVE) ==
	       USTATE_META_DIR;
}

static bool op_on_key(const ustate_op *op)
{
	ustate_op_type t = op->type;

	return t == USTATE_OP_CHECK_VERSION || t == USTATE_OP_SET ||
	       t == USTATE_OP_CREATE || t == USTATE_OP_DELETE ||
	       t == USTATE_OP_META ||
	       (t == USTATE_OP_XATTR && !xattr_of_dir(op));
}

/* MKDIR, RMDIR; a record's XATTR is neither (see xattr_dirs_check()). */
static bool op_on_dir(const ustate_op *op)
{
	return op->type == USTATE_OP_MKDIR || op->type == USTATE_OP_RMDIR;
}

static void plan_free(struct plan *p)
{
	size_t i;

	for (i = 0; p->kids && i < p->n; i++)
		ustate_list_free(p->kids[i].v, p->kids[i].n);
	free(p->kids);
	free(p->keys);
	free(p->dirs);
	free(p->slot);
	free(p->count);
	free(p->cfail);
	free(p->lease_id);
	free(p->lease_crev);
}

/* Walk the ops with the state before unknown: what the Txn must say. */
static int plan_make(struct plan *p, const ustate_op *ops, size_t n)
{
	size_t i, k;

	memset(p, 0, sizeof(*p));
	p->ops = ops;
	p->n = n;
	p->keys = calloc(n, sizeof(*p->keys));
	p->dirs = calloc(n, sizeof(*p->dirs));
	p->slot = calloc(n, sizeof(*p->slot));
	p->count = calloc(n, sizeof(*p->count));
	p->cfail = calloc(n, sizeof(*p->cfail));
	p->kids = calloc(n, sizeof(*p->kids));
	p->lease_id = calloc(n, sizeof(*p->lease_id));
	p->lease_crev = calloc(n, sizeof(*p->lease_crev));
	if (!p->keys || !p->dirs || !p->slot || !p->count || !p->cfail ||
	    !p->kids || !p->lease_id || !p->lease_crev)
		return -ENOMEM;
	/*
	 * A check is a compare on the state before: where the Txn commits,
	 * it tells whether its key was there, whatever op it comes after.
	 */
	for (i = 0; i < n; i++) {
		if (ops[i].type != USTATE_OP_CHECK_VERSION)
			continue;
		for (k = 0; k < p->nkeys; k++)
			if (!strcmp(p->keys[k].key, ops[i].key))
				break;
		if (k < p->nkeys)
			continue;
		p->keys[k] = (struct tkey){.key = ops[i].key,
					   .state = ops[i].version ? PRESENT
								   : ABSENT,
					   .checked = true,
					   .value_op = -1,
					   .meta_op = -1};
		p->nkeys++;
	}
	/* Both of its branches carry the value: a small one only. */
	p->single_set = n == 1 && ops[0].type == USTATE_OP_SET &&
			ops[0].value_len <= SINGLE_SET_MAX && !ops[0].lease;
	for (i = 0; i < n; i++) {
		const ustate_op *op = &ops[i];
		struct tkey *t;
		struct tdir *d;

		if (op->type == USTATE_OP_CHECK_CHILDREN) {
			if (op->version)
				p->needs_read = true;
			continue;
		}
		if (op_on_dir(op)) {
			for (k = 0; k < p->ndirs; k++)
				if (!strcmp(p->dirs[k].path, op->key))
					break;
			if (k == p->ndirs) {
				p->dirs[k] = (struct tdir){
					.path = op->key,
					.root = !strcmp(op->key, "/"),
					.state = UNKNOWN,
					.meta_op = -1,
				};
				p->ndirs++;
			}
			p->slot[i] = k;
			d = &p->dirs[k];
			if (op->type == USTATE_OP_RMDIR) {
				d->state = ABSENT;
				d->dropped = true;
				d->meta_op = -1;
			} else {
				d->state = PRESENT;
				if (op->value)
					d->meta_op = (int)i;
			}
			continue;
		}
		if (op->type == USTATE_OP_XATTR && xattr_of_dir(op))
			continue; /* checked and written apart */
		if (!op_on_key(op))
			return -EINVAL;
		for (k = 0; k < p->nkeys; k++)
			if (!strcmp(p->keys[k].key, op->key))
				break;
		if (k == p->nkeys) {
			p->keys[k] = (struct tkey){.key = op->key,
						   .state = UNKNOWN,
						   .value_op = -1,
						   .meta_op = -1};
			p->nkeys++;
		}
		p->slot[i] = k;
		t = &p->keys[k];
		if (op->type == USTATE_OP_CHECK_VERSION)
			continue;
		t->written = true;
		switch (op->type) {
		case USTATE_OP_SET:
			if (t->state == UNKNOWN && t->need == UNKNOWN)
				t->set_first = true;
			if (t->state == ABSENT)
				t->recreated = true;
			t->state = PRESENT;
			t->value_op = (int)i;
			break;
		case USTATE_OP_CREATE:
			if (t->state == PRESENT) {
				p->static_fail = true;
				break;
			}
			if (t->state == UNKNOWN)
				t->need = ABSENT;
			t->recreated = true;
			t->state = PRESENT;
			t->value_op = (int)i;
			break;
		case USTATE_OP_DELETE:
			if (t->state == ABSENT) {
				p->static_fail = true;
				break;
			}
			if (t->state == UNKNOWN)
				t->need = PRESENT;
			t->state = ABSENT;
			t->deleted = true;
			t->xattrs = false;
			t->value_op = -1;
			t->meta = 2;
			t->recreated = false;
			break;
		case USTATE_OP_META:
		case USTATE_OP_XATTR:
			if (t->state == ABSENT) {
				p->static_fail = true;
				break;
			}
			if (t->state == UNKNOWN)
				t->need = PRESENT;
			t->state = PRESENT;
			if (op->type == USTATE_OP_XATTR) {
				t->xattrs = true;
				break;
			}
			t->meta = op->value ? 1 : 2;
			t->meta_op = (int)i;
			break;
		default:
			break;
		}
	}
	for (k = 0; k < p->nkeys; k++) {
		struct tkey *t = &p->keys[k];

		if (!t->written || t->checked)
			t->src = SRC_CHECK;
		else if (t->set_first && !t->recreated && t->state == PRESENT)
			t->src = SRC_NEST;
		else if (t->need == ABSENT)
			t->src = SRC_KNOWN0;
		else
			t->src = SRC_RANGE;
	}
	if (p->static_fail)
		p->needs_read = true;
	return 0;
}

/*
 * Play the ops on the state before (keys' v0, counts, records' v0), as
 * the other backends do: the checks first, then the writes in op order;
 * the first failure is reported. On success res->versions gets what the
 * key is at after the Txn, which etcd versions once per written key.
 */
static int plan_play(struct plan *p, ustate_txn_result *res)
{
	const ustate_op *ops = p->ops;
	uint64_t ver[p->nkeys ? p->nkeys : 1], fin;
	bool put[p->nkeys ? p->nkeys : 1], dpres[p->ndirs ? p->ndirs : 1];
	size_t i, k;
	uint64_t v;

	for (i = 0; i < p->n; i++) {
		if (ops[i].type == USTATE_OP_CHECK_VERSION)
			v = p->keys[p->slot[i]].v0;
		else if (ops[i].type == USTATE_OP_CHECK_CHILDREN)
			v = p->count[i];
		else
			continue;
		if (v != ops[i].version) {
			res->failed = i;
			res->found = v;
			return -ECANCELED;
		}
		res->versions[i] = v;
	}
	for (k = 0; k < p->nkeys; k++) {
		ver[k] = p->keys[k].v0;
		put[k] = false;
	}
	for (i = 0; i < p->n; i++) {
		if (!op_on_key(&ops[i]) ||
		    ops[i].type == USTATE_OP_CHECK_VERSION)
			continue;
		k = p->slot[i];
		switch (ops[i].type) {
		case USTATE_OP_CREATE:
			if (ver[k]) {
				res->failed = i;
				res->found = ver[k];
				return -EEXIST;
			}
			/* fall through */
		case USTATE_OP_SET:
			ver[k]++;
			put[k] = true;
			break;
		case USTATE_OP_DELETE:
		case USTATE_OP_META:
		case USTATE_OP_XATTR:
			if (!ver[k]) {
				res->failed = i;
				res->found = 0;
				return -ENOENT;
			}
			if (ops[i].type == USTATE_OP_DELETE) {
				ver[k] = 0;
				put[k] = false;
			}
			break;
		default:
			break;
		}
	}
	for (k = 0; k < p->ndirs; k++)
		dpres[k] = p->dirs[k].root || p->dirs[k].v0;
	for (i = 0; i < p->n; i++) {
		k = p->slot[i];
		if (op_on_dir(&ops[i])) {
			bool mk = ops[i].type == USTATE_OP_MKDIR;

			res->versions[i] = !p->dirs[k].root && dpres[k] != mk;
			dpres[k] = mk;
			continue;
		}
		if (!op_on_key(&ops[i]) ||
		    ops[i].type == USTATE_OP_CHECK_VERSION)
			continue;
		/* One put of a key per Txn: its version moves once. */
		fin = !ver[k] ? 0 : put[k] ? p->keys[k].v0 + 1 : ver[k];
		if (put[k] && !p->keys[k].v0)
			fin = 1;
		res->versions[i] = fin;
	}
	return 0;
}

static json_t *nested(json_t *compare, json_t *success, json_t *failure)
{
	json_t *t = json_object();

	if (!t || !compare || !success || !failure) {
		json_decref(t);
		json_decref(compare);
		json_decref(success);
		json_decref(failure);
		return NULL;
	}
	json_object_set_new_nocheck(t, "compare", compare);
	json_object_set_new_nocheck(t, "success", success);
	json_object_set_new_nocheck(t, "failure", failure);
	return wrap("request_txn", t);
}

static json_t *one(json_t *o)
{
	json_t *a = json_array();

	if (add(a, o) < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Attach a put request to etcd lease id (0: none, as it is). */
static json_t *leased(json_t *put, int64_t id)
{
	char buf[24];

	if (put && id) {
		snprintf(buf, sizeof(buf), "%lld", (long long)id);
		json_object_set_new(json_object_get(put, "request_put"),
				    "lease", json_string(buf));
	}
	return put;
}

/* A put that also answers with what it replaced (prev_kv). */
static json_t *req_put_prev(json_t *key, const char *v)
{
	json_t *r = req_put_str(key, v);

	if (r)
		json_object_set_new_nocheck(json_object_get(r, "request_put"),
					    "prev_kv", json_true());
	return r;
}

/*
 * The writes of key t, the net effect of its ops, into w (and nest: the
 * conditional writes that must see the state before): three operations
 * for a write, two for a delete.
 */
static int build_key(struct etcd_backend *e, const struct plan *p,
		     struct tkey *t, json_t *now, json_t *nest, json_t *w)
{
	const ustate_op *op;
	int64_t lease = 0;
	char m[META_TEXT_MAX];
	json_t *inner;
	int rc = 0;

	if (t->state == ABSENT) {
		rc |= add(w, req_del(json_incref(t->jk), NULL));
		rc |= add(w, req_del(jkey(e, 'k', t->key, "\t"),
				     jend(e, 'k', t->key, "\t")));
		return rc ? -ENOMEM : 0;
	}
	if (t->value_op >= 0) {
		op = &p->ops[t->value_op];
		lease = p->lease_id[t->value_op];
		rc |= add(w, leased(req_put(json_incref(t->jk), op->value,
					    op->value_len),
				    lease));
		rc |= add(w, leased(req_put_b64(jkey(e, 'k', t->key, "\tu"),
						json_incref(now)),
				    lease));
	}
	if (t->recreated) {
		rc |= add(w, leased(req_put_b64(jkey(e, 'k', t->key, "\tc"),
						json_incref(now)),
				    lease));
	} else if (t->src == SRC_NEST) {
		/*
		 * Created only if absent, decided inside the Txn before the
		 * put; its failure branch reads the version before.
		 */
		inner = one(leased(req_put_b64(jkey(e, 'k', t->key, "\tc"),
					       json_incref(now)),
				   lease));
		t->at = json_array_size(nest);
		rc |= add(nest, nested(one(cmp(json_incref(t->jk), NULL,
					       "VERSION", "EQUAL", 0)),
				       inner,
				       one(req_range(json_incref(t->jk), NULL,
						     true))));
	}
	if (t->meta == 1) {
		meta_text(m, sizeof(m), p->ops[t->meta_op].value);
		rc |= add(w, req_put_str(jkey(e, 'k', t->key, "\tm"), m));
	} else if (t->meta == 2) {
		rc |= add(w, req_del(jkey(e, 'k', t->key, "\tm"), NULL));
	}
	return rc ? -ENOMEM : 0;
}

/*
 * The write of directory record d; its response tells whether the record
 * was there before (d->src, d->at).
 */
static int build_dir(struct etcd_backend *e, const struct plan *p,
		     struct tdir *d, json_t *nest, json_t *w)
{
	char m[META_TEXT_MAX];
	json_t *o;

	d->at = json_array_size(w);
	if (d->state == ABSENT) {
		d->src = DSRC_DEL;
		/* Its xattrs go with it (stale anyway, see etcd_xattrs()). */
		return add(w, req_del(jkey(e, 'd', d->path, NULL), NULL)) ||
		       add(w, req_del(jkey(e, 'x', d->path, "\t"),
				      jend(e, 'x', d->path, "\t")));
	}
	if (d->meta_op >= 0 || d->dropped) {
		m[0] = '\0';
		if (d->meta_op >= 0)
			meta_text(m, sizeof(m), p->ops[d->meta_op].value);
		d->src = d->root ? DSRC_NONE : DSRC_PUT;
		return add(w, req_put_prev(jkey(e, 'd', d->path, NULL), m));
	}
	/* A MKDIR keeps an existing record's owner: put only if absent. */
	d->src = DSRC_NEST;
	d->at = json_array_size(nest);
	o = nested(one(cmp(jkey(e, 'd', d->path, NULL), NULL, "VERSION",
			   "EQUAL", 0)),
		   one(req_put_str(jkey(e, 'd', d->path, NULL), "")),
		   json_array());
	return add(nest, o);
}

/* The etcd key of attribute name of path: tag, path, sep, name. */
static json_t *xattr_jkey_of(const struct etcd_backend *e, char tag,
			     const char *path, const char *sep,
			     const char *name)
{
	char suffix[USTATE_XATTR_NAME_MAX + 3];

	snprintf(suffix, sizeof(suffix), "%s%s", sep, name);
	return jkey(e, tag, path, suffix);
}

/* The etcd key of XATTR op's attribute (the name its value starts with). */
static json_t *xattr_jkey(const struct etcd_backend *e, const ustate_op *op)
{
	return xattr_jkey_of(e, xattr_of_dir(op) ? 'x' : 'k', op->key,
			     xattr_of_dir(op) ? "\t" : "\tx", op->value);
}

/* Whether XATTR ops i and j name the same attribute of the same path. */
static bool xattr_same(const ustate_op *a, const ustate_op *b)
{
	return b->type == USTATE_OP_XATTR &&
	       xattr_of_dir(a) == xattr_of_dir(b) && !strcmp(a->key, b->key) &&
	       !strcmp(a->value, b->value);
}

/* Whether op b drops what XATTR op a set: a DELETE of its key, an RMDIR
 * of its record. */
static bool xattr_dropped_by(const ustate_op *a, const ustate_op *b)
{
	return !strcmp(a->key, b->key) &&
	       (xattr_of_dir(a) ? b->type == USTATE_OP_RMDIR
				: b->type == USTATE_OP_DELETE);
}

/*
 * A record dropped and made again in one Txn keeps its create revision,
 * so its old attributes would stay live: delete them. A range delete when
 * no XATTR on it follows its last RMDIR; else each old name that no later
 * op sets, from a read just before (a name added in between stays).
 */
static int xattrs_redone(struct etcd_backend *e, const struct plan *p,
			 const struct tdir *d, json_t *w)
{
	size_t i, j, last = 0, klen, skip;
	json_t *resp = NULL, *kv, *kvs;
	bool later = false, set;
	char *k, *name;
	int rc;

	for (i = 0; i < p->n; i++)
		if (p->ops[i].type == USTATE_OP_RMDIR &&
		    !strcmp(p->ops[i].key, d->path))
			last = i;
	for (i = last + 1; i < p->n; i++)
		later |= p->ops[i].type == USTATE_OP_XATTR &&
			 xattr_of_dir(&p->ops[i]) &&
			 !strcmp(p->ops[i].key, d->path);
	if (!later)
		return add(w, req_del(jkey(e, 'x', d->path, "\t"),
				      jend(e, 'x', d->path, "\t")));
	rc = read_call(e, "/v3/kv/range",
		       op_range(jkey(e, 'x', d->path, "\t"),
				jend(e, 'x', d->path, "\t"), true, false, 0),
		       &resp);
	if (rc < 0)
		return rc;
	skip = e->plen + SIDE_LEN + strlen(d->path) + 1;
	kvs = json_object_get(resp, "kvs");
	json_array_foreach(kvs, i, kv)
	{
		if (ustate_etcd_get_bytes(kv, "key", &k, &klen) < 0)
			continue;
		name = klen > skip ? k + skip : NULL;
		for (j = last + 1, set = false; name && j < p->n; j++)
			set |= p->ops[j].type == USTATE_OP_XATTR &&
			       xattr_of_dir(&p->ops[j]) &&
			       !strcmp(p->ops[j].key, d->path) &&
			       !strcmp(p->ops[j].value, name);
		if (name && !set)
			rc |= add(w, req_del(xattr_jkey_of(e, 'x', d->path,
							   "\t", name),
					     NULL));
		free(k);
	}
	json_decref(resp);
	return rc ? -ENOMEM : 0;
}

/* The record of path among the plan's, or NULL. */
static struct tdir *plan_dir(struct plan *p, const char *path)
{
	size_t k;

	for (k = 0; k < p->ndirs; k++)
		if (!strcmp(p->dirs[k].path, path))
			return &p->dirs[k];
	return NULL;
}

/*
 * The writes of the XATTR ops into w: for each attribute the last op on
 * it, when its key or record is there after the Txn (a delete's range
 * takes the rest). A key deleted and written again loses those before
 * (a range delete, unless an XATTR writes into that range: those before
 * then stay, stale, see etcd_xattrs()).
 */
static int build_xattrs(struct etcd_backend *e, struct plan *p, json_t *w)
{
	const ustate_op *ops = p->ops, *op;
	struct tdir *d;
	size_t i, j, k;
	int rc = 0;

	for (k = 0; k < p->nkeys; k++) {
		struct tkey *t = &p->keys[k];

		if (t->deleted && t->state == PRESENT && !t->xattrs)
			rc |= add(w, req_del(jkey(e, 'k', t->key, "\tx"),
					     jend(e, 'k', t->key, "\tx")));
	}
	for (k = 0; k < p->ndirs; k++) {
		d = &p->dirs[k];
		if (d->dropped && d->state == PRESENT)
			rc |= xattrs_redone(e, p, d, w);
	}
	for (i = 0; i < p->n; i++) {
		op = &ops[i];
		if (op->type != USTATE_OP_XATTR)
			continue;
		/* The last op on this name, after any drop of its owner: a
		 * delete's range (or staleness, see etcd_xattrs()) takes the
		 * ones before. */
		for (j = i + 1; j < p->n && !xattr_same(op, &ops[j]) &&
				!xattr_dropped_by(op, &ops[j]);
		     j++)
			;
		if (j < p->n)
			continue;
		if (xattr_of_dir(op)) {
			d = plan_dir(p, op->key);
			if (d && d->state == ABSENT)
				continue;
		} else if (p->keys[p->slot[i]].state == ABSENT) {
			continue;
		}
		if (op->version & USTATE_XATTR_REMOVE) {
			rc |= add(w, req_del(xattr_jkey(e, op), NULL));
		} else {
			size_t nlen = strlen(op->value) + 1;

			rc |= add(w, req_put(xattr_jkey(e, op),
					     (const char *)op->value + nlen,
					     op->value_len - nlen));
			p->xattr_puts++;
		}
	}
	return rc ? -ENOMEM : 0;
}

/*
 * Before the Txn: each XATTR of a record that the transaction does not
 * make or drop before it needs the record there now (read here; an rmdir
 * that lands between this read and the Txn leaves an attribute no read
 * sees, as if it had come first and the rmdir after): -ENOENT, with
 * res->failed, when it is not.
 */
static int xattr_dirs_check(struct etcd_backend *e, const struct plan *p,
			    ustate_txn_result *res)
{
	const ustate_op *ops = p->ops;
	json_t *resp = NULL;
	size_t i, j;
	int rc, state;

	for (i = 0; i < p->n; i++) {
		if (ops[i].type != USTATE_OP_XATTR || !xattr_of_dir(&ops[i]))
			continue;
		res->versions[i] = 0;
		if (!strcmp(ops[i].key, "/"))
			continue;
		state = UNKNOWN;
		for (j = 0; j < i; j++)
			if (op_on_dir(&ops[j]) &&
			    !strcmp(ops[j].key, ops[i].key))
				state = ops[j].type == USTATE_OP_MKDIR ? PRESENT
								       : ABSENT;
		if (state == UNKNOWN) {
			rc = read_call(e, "/v3/kv/range",
				       op_range(jkey(e, 'd', ops[i].key, NULL),
						NULL, true, true, 0),
				       &resp);
			if (rc < 0)
				return rc;
			state = ustate_etcd_get_u64(resp, "count") ? PRESENT
								   : ABSENT;
			json_decref(resp);
		}
		if (state == ABSENT) {
			res->failed = i;
			res->found = 0;
			return -ENOENT;
		}
	}
	return 0;
}

/* The compares of CHECK_CHILDREN op i and its read on failure. */
static int build_children(struct etcd_backend *e, struct plan *p, size_t i,
			  json_t *c, json_t *f)
{
	const ustate_op *op = &p->ops[i];
	size_t j;
	int rc = 0;

	p->cfail[i] = json_array_size(f);
	rc |= add(f, wrap("request_range",
			  op_range(jkey(e, 0, op->key, "/"),
				   jend(e, 0, op->key, "/"), true, true, 0)));
	if (!op->version) {
		/* No key in the range: every one would have a version. */
		rc |= add(c,
			  cmp(jkey(e, 0, op->key, "/"),
			      jend(e, 0, op->key, "/"), "VERSION", "EQUAL", 0));
		return rc ? -ENOMEM : 0;
	}
	/* The same keys as read: none made since, none of them gone. */
	rc |= add(c, cmp(jkey(e, 0, op->key, "/"), jend(e, 0, op->key, "/"),
			 "CREATE", "LESS", p->read_rev + 1));
	for (j = 0; j < p->kids[i].n; j++)
		rc |= add(c, cmp(jkey(e, 0, p->kids[i].v[j], NULL), NULL,
				 "VERSION", "GREATER", 0));
	return rc ? -ENOMEM : 0;
}

/* Read the state before: versions, counts (and children), records. */
static int plan_read(struct etcd_backend *e, struct plan *p)
{
	json_t *ops = json_array(), *resp = NULL, *r;
	size_t i, k, idx = 0, *at;
	int rc = 0;

	at = calloc(p->n + 1, sizeof(*at));
	if (!at) {
		json_decref(ops);
		return -ENOMEM;
	}
	for (k = 0; k < p->nkeys; k++)
		rc |= add(ops, req_range(jkey(e, 0, p->keys[k].key, NULL), NULL,
					 true));
	idx = p->nkeys;
	for (i = 0; i < p->n; i++) {
		if (p->ops[i].type != USTATE_OP_CHECK_CHILDREN)
			continue;
		at[i] = idx++;
		rc |= add(ops, wrap("request_range",
				    op_range(jkey(e, 0, p->ops[i].key, "/"),
					     jend(e, 0, p->ops[i].key, "/"),
					     true, true, 0)));
	}
	for (k = 0; k < p->ndirs; k++)
		rc |= add(ops, req_range(jkey(e, 'd', p->dirs[k].path, NULL),
					 NULL, true));
	if (rc) {
		json_decref(ops);
		free(at);
		return -ENOMEM;
	}
	rc = read_txn(e, ops, false, &resp);
	if (rc < 0) {
		free(at);
		return rc;
	}
	p->read_rev = header_rev(resp);
	for (k = 0; k < p->nkeys; k++)
		p->keys[k].v0 = ustate_etcd_get_u64(
			first_kv(txn_resp(resp, k, "response_range")),
			"version");
	for (i = 0; i < p->n; i++) {
		if (p->ops[i].type != USTATE_OP_CHECK_CHILDREN)
			continue;
		r = txn_resp(resp, at[i], "response_range");
		p->count[i] = ustate_etcd_get_u64(r, "count");
	}
	for (k = 0; k < p->ndirs; k++)
		p->dirs[k].v0 = first_kv(txn_resp(resp, idx + k,
						  "response_range")) != NULL;
	json_decref(resp);
	free(at);
	/* The children to hold in place, from the same snapshot. */
	for (i = 0; i < p->n && rc == 0; i++) {
		char below[USTATE_KEY_MAX + 2], *hi;
		uint64_t rev = p->read_rev;
		size_t len;

		if (p->ops[i].type != USTATE_OP_CHECK_CHILDREN ||
		    !p->ops[i].version || p->count[i] != p->ops[i].version)
			continue;
		ustate_list_free(p->kids[i].v, p->kids[i].n);
		memset(&p->kids[i], 0, sizeof(p->kids[i]));
		len = strlen(p->ops[i].key);
		memcpy(below, p->ops[i].key, len);
		memcpy(below + len, "/", 2);
		hi = range_end(below, len + 1);
		if (!hi)
			return -ENOMEM;
		rc = scan_range(e, 0, below, len + 1, hi, strlen(hi), SIZE_MAX,
				&rev, &p->kids[i]);
		free(hi);
	}
	return rc;
}

/* Whether a committed Txn changed anything (so made a revision). */
static bool txn_changed(json_t *resp)
{
	json_t *r, *x;
	size_t i;

	json_array_foreach(json_object_get(resp, "responses"), i, r)
	{
		if (json_object_get(r, "response_put"))
			return true;
		x = json_object_get(r, "response_delete_range");
		if (x && ustate_etcd_get_u64(x, "deleted"))
			return true;
		x = json_object_get(r, "response_txn");
		if (x && json_is_true(json_object_get(x, "succeeded")))
			return true;
	}
	return false;
}

/*
 * Our own commit at rev, or a revision a failed compare of ours saw: a
 * watch of ours waits for it (etcd_history), and so do reads of the
 * replica (read_call()).
 */
static void note_commit(struct etcd_backend *e, uint64_t rev)
{
	pthread_mutex_lock(&e->lock);
	if (rev > e->want)
		e->want = rev;
	pthread_mutex_unlock(&e->lock);
}

/*
 * One SET alone, the commonest write, of a value up to SINGLE_SET_MAX:
 * its Txn asks whether the key is new at the top, which etcd does cheaper
 * than a nested Txn (measured in docs/PERFORMANCE.md), and both branches
 * write: success (new) the value and both times, failure the value and
 * updated_at, after reading the version before. The request carries the
 * value twice, so a larger one takes the general shape, under etcd's
 * --max-request-bytes. *ok: whether it was new.
 */
static int single_set_send(struct etcd_backend *e, const ustate_op *op,
			   json_t **resp, bool *ok)
{
	json_t *req = json_object(), *c = json_array(), *s = json_array(),
	       *f = json_array(), *now = jnow(), *key, *put, *put_u;
	int rc = 0;

	if (!req || !c || !s || !f)
		rc = -ENOMEM;
	/*
	 * Both branches put the same value and updated_at: one tree of each
	 * in both arrays (jansson counts the references), so the value is
	 * encoded, and the key built, once.
	 */
	key = jkey(e, 0, op->key, NULL);
	put = req_put(json_incref(key), op->value, op->value_len);
	put_u = req_put_b64(jkey(e, 'k', op->key, "\tu"), json_incref(now));
	rc |= add(c, cmp(json_incref(key), NULL, "VERSION", "EQUAL", 0));
	rc |= add(s, json_incref(put));
	rc |= add(s, json_incref(put_u));
	rc |= add(s,
		  req_put_b64(jkey(e, 'k', op->key, "\tc"), json_incref(now)));
	rc |= add(f, req_range(json_incref(key), NULL, true));
	rc |= add(f, json_incref(put));
	rc |= add(f, json_incref(put_u));
	rc |= add(s, req_mark(e));
	rc |= add(f, req_mark(e));
	json_decref(key);
	json_decref(put);
	json_decref(put_u);
	json_decref(now);
	if (rc) {
		json_decref(req);
		json_decref(c);
		json_decref(s);
		json_decref(f);
		return -ENOMEM;
	}
	json_object_set_new_nocheck(req, "compare", c);
	json_object_set_new_nocheck(req, "success", s);
	json_object_set_new_nocheck(req, "failure", f);
	rc = call(e, "/v3/kv/txn", req, 0, resp);
	if (rc == 0)
		*ok = json_is_true(json_object_get(*resp, "succeeded"));
	return rc;
}

/* Whether the Txn of plan p, if its compares hold, surely writes. */
static bool txn_certain(const struct plan *p)
{
	const struct tkey *t;
	const struct tdir *d;
	size_t k;

	for (k = 0; k < p->nkeys; k++) {
		t = &p->keys[k];
		if (!t->built)
			continue;
		if (t->state == ABSENT
			    ? t->need == PRESENT
			    : t->value_op >= 0 || t->recreated || t->meta)
			return true;
	}
	for (k = 0; k < p->ndirs; k++) {
		d = &p->dirs[k];
		if (d->state != ABSENT && (d->meta_op >= 0 || d->dropped))
			return true;
	}
	return p->xattr_puts > 0;
}

/* Build and send the Txn of a plan; *ok: whether its compares held. */
static int txn_send(struct etcd_backend *e, struct plan *p, json_t **resp,
		    bool *ok)
{
	json_t *req = json_object(), *c = json_array(), *s = json_array(),
	       *f = json_array(), *nest = json_array(), *w = json_array();
	const ustate_op *ops = p->ops;
	json_t *now = NULL;
	struct tkey *t;
	size_t i, k;
	int rc = 0;

	if (!req || !c || !s || !f || !nest || !w) {
		rc = -ENOMEM;
		goto out;
	}
	/*
	 * The time and each key's name go into several operations: each is
	 * encoded once, and its tree shared (jansson counts references).
	 */
	now = jnow();
	for (k = 0; k < p->nkeys; k++) {
		p->keys[k].jk = jkey(e, 0, p->keys[k].key, NULL);
		if (!p->keys[k].jk)
			rc = -ENOMEM;
	}
	if (!now || rc) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->n; i++) {
		if (ops[i].type == USTATE_OP_CHECK_VERSION)
			rc |= add(c,
				  cmp(json_incref(p->keys[p->slot[i]].jk), NULL,
				      "VERSION", "EQUAL", ops[i].version));
		else if (ops[i].type == USTATE_OP_CHECK_CHILDREN)
			rc |= build_children(e, p, i, c, f);
	}
	for (k = 0; k < p->nkeys; k++) {
		t = &p->keys[k];
		if (t->need == ABSENT)
			rc |= add(c, cmp(json_incref(t->jk), NULL, "VERSION",
					 "EQUAL", 0));
		else if (t->need == PRESENT)
			rc |= add(c, cmp(json_incref(t->jk), NULL, "VERSION",
					 "GREATER", 0));
		t->fail = json_array_size(f);
		rc |= add(f, req_range(json_incref(t->jk), NULL, true));
		if (t->src == SRC_RANGE) {
			t->at = json_array_size(s);
			rc |= add(s, req_range(json_incref(t->jk), NULL, true));
		}
	}
	/* Each lease named is the incarnation resolved (lease_resolve()). */
	for (i = 0; i < p->n; i++)
		if (p->lease_id[i])
			rc |= add(c, cmp(lease_jkey(e, ops[i].lease), NULL,
					 "CREATE", "EQUAL", p->lease_crev[i]));
	/*
	 * The writes in the order of each key's first write, so that the
	 * watch tells a revision's changes in the order of the ops, as the
	 * other backends' histories do (a mount's replay pairs the set and
	 * the delete of a rename by it).
	 */
	for (i = 0; i < p->n && rc == 0; i++) {
		if (!op_on_key(&ops[i]) ||
		    ops[i].type == USTATE_OP_CHECK_VERSION)
			continue;
		t = &p->keys[p->slot[i]];
		if (!t->built) {
			t->built = true;
			rc = build_key(e, p, t, now, nest, w);
		}
	}
	for (k = 0; k < p->ndirs && rc == 0; k++)
		rc = build_dir(e, p, &p->dirs[k], nest, w);
	if (rc == 0)
		rc = build_xattrs(e, p, w);
	if (rc) {
		rc = -ENOMEM;
		goto out;
	}
	/*
	 * The write mark, last, where the Txn surely makes a revision (an
	 * etcd Txn that changes nothing makes none, and neither may the
	 * mark): with any put, or the delete of a key known present. A Txn
	 * whose only write is one conditional put (a MKDIR that may find its
	 * record) puts it in that branch; one of several conditional writes
	 * only puts none (see quorum_rev()).
	 */
	if (txn_certain(p))
		rc = add(w, req_mark(e)) ? -ENOMEM : 0;
	else if (json_array_size(nest) == 1 && !json_array_size(w))
		rc = add(json_object_get(
				 json_object_get(json_array_get(nest, 0),
						 "request_txn"),
				 "success"),
			 req_mark(e))
			     ? -ENOMEM
			     : 0;
	if (rc)
		goto out;
	/* Reads of the state before, the conditional writes, the rest. */
	p->nest_at = json_array_size(s);
	p->w_at = p->nest_at + json_array_size(nest);
	json_array_extend(s, nest);
	json_array_extend(s, w);
	/* On failure, the write mark: what the compares saw, at least. */
	p->mark_fail = json_array_size(f);
	if (add(f, req_range(jkey(e, 'r', "/", NULL), NULL, true))) {
		rc = -ENOMEM;
		goto out;
	}
	json_object_set_new_nocheck(req, "compare", c);
	json_object_set_new_nocheck(req, "success", s);
	json_object_set_new_nocheck(req, "failure", f);
	c = s = f = NULL;
	rc = call(e, "/v3/kv/txn", req, 0, resp);
	req = NULL;
	if (rc == 0)
		*ok = json_is_true(json_object_get(*resp, "succeeded"));
out:
	for (k = 0; k < p->nkeys; k++) {
		json_decref(p->keys[k].jk);
		p->keys[k].jk = NULL;
	}
	json_decref(now);
	json_decref(req);
	json_decref(c);
	json_decref(s);
	json_decref(f);
	json_decref(nest);
	json_decref(w);
	return rc;
}

/* The state before, from the responses of a Txn that committed. */
static void read_before(struct plan *p, json_t *resp)
{
	const ustate_op *ops = p->ops;
	json_t *r;
	size_t i, k;

	for (k = 0; k < p->nkeys; k++) {
		struct tkey *t = &p->keys[k];

		switch (t->src) {
		case SRC_NEST:
			r = txn_resp(resp, p->nest_at + t->at, "response_txn");
			t->v0 = json_is_true(json_object_get(r, "succeeded"))
					? 0
					: ustate_etcd_get_u64(
						  first_kv(txn_resp(
							  r, 0,
							  "response_range")),
						  "version");
			break;
		case SRC_RANGE:
			t->v0 = ustate_etcd_get_u64(
				first_kv(txn_resp(resp, t->at,
						  "response_range")),
				"version");
			break;
		default:
			t->v0 = 0; /* absent (a CREATE's compare) */
			break;
		}
	}
	for (i = 0; i < p->n; i++) {
		if (ops[i].type == USTATE_OP_CHECK_CHILDREN)
			p->count[i] = ops[i].version;
		else if (ops[i].type == USTATE_OP_CHECK_VERSION &&
			 p->keys[p->slot[i]].src == SRC_CHECK)
			p->keys[p->slot[i]].v0 = ops[i].version; /* all equal */
	}
	for (k = 0; k < p->ndirs; k++) {
		struct tdir *d = &p->dirs[k];

		switch (d->src) {
		case DSRC_NEST:
			r = txn_resp(resp, p->nest_at + d->at, "response_txn");
			d->v0 = !json_is_true(json_object_get(r, "succeeded"));
			break;
		case DSRC_PUT:
			r = txn_resp(resp, p->w_at + d->at, "response_put");
			d->v0 = json_object_get(r, "prev_kv") != NULL;
			break;
		case DSRC_DEL:
			r = txn_resp(resp, p->w_at + d->at,
				     "response_delete_range");
			d->v0 = ustate_etcd_get_u64(r, "deleted") != 0;
			break;
		default:
			d->v0 = true;
			break;
		}
	}
}

static int etcd_txn(void *b, const ustate_op *ops, size_t n,
		    ustate_txn_result *res, unsigned flags)
{
	struct etcd_backend *e = b;
	json_t *resp = NULL;
	struct plan p;
	unsigned tries;
	size_t i, k;
	bool ok;
	int rc;

	rc = plan_make(&p, ops, n);
	if (rc == 0)
		rc = xattr_dirs_check(e, &p, res);
	if (rc == 0)
		rc = lease_resolve(e, &p, res);
	if (rc < 0)
		goto out;
	if (p.single_set) {
		/* Both branches of its Txn write: it commits either way. */
		ok = false;
		rc = single_set_send(e, ops, &resp, &ok);
		if (rc < 0)
			goto out;
		res->revision = header_rev(resp);
		res->versions[0] =
			ok ? 1
			   : ustate_etcd_get_u64(
				     first_kv(txn_resp(resp, 0,
						       "response_range")),
				     "version") +
					1;
		note_commit(e, res->revision);
		goto out;
	}
	for (tries = 0; tries < TXN_TRIES; tries++) {
		if (p.needs_read) {
			rc = plan_read(e, &p);
			if (rc < 0)
				goto out;
			rc = plan_play(&p, res);
			if (rc < 0) {
				res->revision = p.read_rev;
				goto out;
			}
		}
		json_decref(resp);
		resp = NULL;
		ok = false;
		rc = txn_send(e, &p, &resp, &ok);
		if (rc < 0)
			goto out;
		res->revision = header_rev(resp);
		if (ok) {
			read_before(&p, resp);
			if (plan_play(&p, res) < 0)
				ustate_log(&e->opts, LOG_ERR,
					   "%s: a committed transaction does "
					   "not replay: its versions are wrong",
					   e->source);
			if (txn_changed(resp))
				note_commit(e, res->revision);
			rc = 0;
			goto out;
		}
		/*
		 * The reads that follow (a script's retry) see at least what
		 * failed the compares: the last write through libustate.
		 */
		note_commit(e, ustate_etcd_get_u64(
				       first_kv(txn_resp(resp, p.mark_fail,
							 "response_range")),
				       "mod_revision"));
		/* A lease gone meanwhile fails the op that names it. */
		rc = lease_resolve(e, &p, res);
		if (rc < 0)
			goto out;
		/* What the compares saw, read in the same step. */
		for (k = 0; k < p.nkeys; k++)
			p.keys[k].v0 = ustate_etcd_get_u64(
				first_kv(txn_resp(resp, p.keys[k].fail,
						  "response_range")),
				"version");
		for (i = 0; i < n; i++)
			if (ops[i].type == USTATE_OP_CHECK_CHILDREN)
				p.count[i] = ustate_etcd_get_u64(
					txn_resp(resp, p.cfail[i],
						 "response_range"),
					"count");
		for (k = 0; k < p.ndirs; k++)
			p.dirs[k].v0 = false;
		/*
		 * Else a race the compares saw and the ops do not care about
		 * (the children of a CHECK_CHILDREN changed, not their
		 * number): read again, and try again.
		 */
		rc = plan_play(&p, res);
		if (rc < 0)
			goto out;
	}
	rc = -EBUSY;
out:
	json_decref(resp);
	plan_free(&p);
	return rc;
}

/* ---- the change history: a ring fed by one watch ---------------------- */

/* Append a change to the ring, trimming whole revisions. Under lock. */
static int ring_push(struct etcd_backend *e, ustate_event_type type,
		     uint64_t version, uint64_t rev, const char *path,
		     size_t len)
{
	struct ustate_change *c;
	uint64_t drop;
	char *k;

	k = strndup(path, len);
	if (!k)
		return -ENOMEM;
	while (e->len >= e->cap) {
		/* The oldest revision goes whole. */
		drop = e->ring[e->head].revision;
		while (e->len && e->ring[e->head].revision == drop) {
			free(e->ring[e->head].key);
			e->head = (e->head + 1) % e->cap;
			e->len--;
		}
		e->oldest = drop + 1;
	}
	c = &e->ring[(e->head + e->len) % e->cap];
	*c = (struct ustate_change){
		.type = type, .version = version, .revision = rev, .key = k};
	e->len++;
	return 0;
}

static void ring_clear(struct etcd_backend *e, uint64_t from)
{
	while (e->len) {
		free(e->ring[e->head].key);
		e->head = (e->head + 1) % e->cap;
		e->len--;
	}
	e->oldest = from;
	e->applied = from - 1;
}

/* One event of the stream: a change of the store, or none (side keys). */
static int on_event(struct etcd_backend *e, json_t *ev)
{
	json_t *kv = json_object_get(ev, "kv");
	bool del =
		!strcmp(json_string_value(json_object_get(ev, "type")) ?: "PUT",
			"DELETE");
	uint64_t rev = ustate_etcd_get_u64(kv, "mod_revision");
	uint64_t ver = ustate_etcd_get_u64(kv, "version");
	const char *path;
	size_t klen;
	char *k;
	int tag, rc = 0;

	rc = ustate_etcd_get_bytes(kv, "key", &k, &klen);
	if (rc < 0)
		return rc;
	tag = classify(e, k, klen, &path);
	if (tag == 0 && ustate_key_valid(path) == 0)
		rc = ring_push(e,
			       del	  ? USTATE_EVENT_DELETED
			       : ver == 1 ? USTATE_EVENT_CREATED
					  : USTATE_EVENT_UPDATED,
			       del ? 0 : ver, rev, path, klen - (path - k));
	/* A record made (version 1) or dropped; a new owner is no change. */
	else if (tag == 'd' && strcmp(path, "/") &&
		 ustate_key_valid(path) == 0 && (del || ver == 1))
		rc = ring_push(e,
			       del ? USTATE_EVENT_DIR_DELETED
				   : USTATE_EVENT_DIR_CREATED,
			       0, rev, path, klen - (path - k));
	free(k);
	return rc;
}

static int on_watch(void *arg, json_t *result)
{
	struct etcd_backend *e = arg;
	json_t *evs = json_object_get(result, "events"), *ev;
	uint64_t rev, last = 0;
	const char *why;
	size_t i;
	int rc = 0;

	if (json_is_true(json_object_get(result, "canceled"))) {
		rev = ustate_etcd_get_u64(result, "compact_revision");
		why = json_string_value(
			json_object_get(result, "cancel_reason"));
		/* "invalid auth token": the member forgot it (a restart). */
		if (!rev && why && strstr(why, "auth"))
			return -EACCES;
		if (!rev)
			return -ECANCELED;
		pthread_mutex_lock(&e->lock);
		if (rev > e->compacted)
			e->compacted = rev;
		pthread_mutex_unlock(&e->lock);
		return -ENODATA;
	}
	pthread_mutex_lock(&e->lock);
	json_array_foreach(evs, i, ev)
	{
		rev = ustate_etcd_get_u64(json_object_get(ev, "kv"),
					  "mod_revision");
		/* etcd 3.4 may repeat events: never go back in time. */
		if (rev <= e->applied)
			continue;
		/* A revision's events come in one message: mark after it. */
		if (last && rev != last)
			e->applied = last;
		rc = on_event(e, ev);
		if (rc < 0)
			break;
		last = rev;
	}
	if (last && rc == 0)
		e->applied = last;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static void *stream_main(void *arg)
{
	struct etcd_backend *e = arg;
	unsigned backoff = 50, fails = 0;
	json_t *req, *cr;
	uint64_t from;
	size_t ep;
	int rc;

	ep = ustate_etcd_current(e->conn);
	for (;;) {
		pthread_mutex_lock(&e->lock);
		if (e->stopping) {
			pthread_mutex_unlock(&e->lock);
			break;
		}
		if (e->restart) {
			ring_clear(e, e->restart);
			e->restart = 0;
			pthread_cond_broadcast(&e->cond);
		}
		from = e->applied + 1;
		pthread_mutex_unlock(&e->lock);

		cr = json_object();
		req = wrap("create_request", cr);
		if (cr) {
			json_object_set_new_nocheck(cr, "key",
						    jkey(e, 0, "/", NULL));
			json_object_set_new_nocheck(cr, "range_end",
						    jend(e, 0, "/", NULL));
			json_object_set_new_nocheck(cr, "start_revision",
						    ustate_etcd_u64(from));
		}
		rc = req ? ustate_etcd_stream_run(e->st, ep, req, on_watch, e)
			 : -ENOMEM;
		json_decref(req);
		/*
		 * A watch refused for its token is tried again with a new
		 * one: calls log in again by themselves, but a handle that
		 * only watches makes none (a no-op without a user).
		 */
		if (rc == -EACCES)
			ustate_etcd_authenticate(e->conn);

		pthread_mutex_lock(&e->lock);
		if (e->stopping) {
			pthread_mutex_unlock(&e->lock);
			break;
		}
		if (rc == -ENODATA) {
			/* Compacted past us: what we missed is gone. */
			ustate_log(&e->opts, LOG_WARNING,
				   "%s: etcd compacted its history at revision "
				   "%llu, past this watch's %llu: the watches "
				   "reading before it get EOVERFLOW",
				   e->source, (unsigned long long)e->compacted,
				   (unsigned long long)from);
			if (!e->restart)
				ring_clear(e, e->compacted);
			pthread_cond_broadcast(&e->cond);
			pthread_mutex_unlock(&e->lock);
			continue;
		}
		/* Where the next run starts: past what this one gave. */
		from = e->applied + 1;
		pthread_mutex_unlock(&e->lock);
		/* 0: stopped for a restart, which the loop's top makes. */
		if (rc != 0) {
			if (!fails++)
				ustate_log(&e->opts, LOG_WARNING,
					   "%s: the watch on %s ended (%s); "
					   "resuming from revision %llu",
					   e->source,
					   ustate_etcd_endpoint(e->conn, ep),
					   strerror(rc < 0 ? -rc : rc),
					   (unsigned long long)from);
			ep = (ep + 1) % ustate_etcd_nendpoints(e->conn);
			/* Sleep, but wake for a stop. */
			pthread_mutex_lock(&e->lock);
			if (!e->stopping) {
				struct timespec t;

				clock_gettime(CLOCK_MONOTONIC, &t);
				t.tv_nsec += (long)backoff * 1000000L;
				t.tv_sec += t.tv_nsec / 1000000000L;
				t.tv_nsec %= 1000000000L;
				pthread_cond_timedwait(&e->cond, &e->lock, &t);
			}
			pthread_mutex_unlock(&e->lock);
			backoff = backoff < 1000 ? backoff * 2 : 1000;
		} else {
			fails = 0;
			backoff = 50;
		}
	}
	return NULL;
}

/* Start the watch from revision from, if it runs not yet. Under lock. */
static int stream_start(struct etcd_backend *e, uint64_t from)
{
	int rc;

	if (e->streaming)
		return 0;
	ring_clear(e, from);
	rc = -pthread_create(&e->thread, NULL, stream_main, e);
	if (rc == 0)
		e->streaming = true;
	return rc;
}

/* Whether etcd still has revision rev (a range at it). */
static int still_kept(struct etcd_backend *e, uint64_t rev)
{
	json_t *r, *resp = NULL;
	int rc;

	r = op_range(jkey(e, 'v', "/", NULL), NULL, true, true, 0);
	if (r)
		json_object_set_new_nocheck(r, "revision",
					    ustate_etcd_u64(rev));
	rc = call(e, "/v3/kv/range", r, USTATE_ETCD_READ, &resp);
	json_decref(resp);
	/* A future revision (a watch from now) is no loss either. */
	return rc == -EINVAL ? 0 : rc;
}

static int etcd_watch_from(void *b, uint64_t rev)
{
	struct etcd_backend *e = b;
	int rc;

	pthread_mutex_lock(&e->lock);
	rc = stream_start(e, rev);
	pthread_mutex_unlock(&e->lock);
	return rc;
}

static int etcd_history(void *b, uint64_t from, size_t skip, size_t max,
			struct ustate_change **out, size_t *n, uint64_t *oldest)
{
	struct etcd_backend *e = b;
	struct ustate_change *v = NULL, *c;
	struct timespec until;
	size_t i, got = 0, want_n, skip0 = skip;
	int rc = 0;

	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&e->lock);
	if (!e->streaming) {
		/* A first watch from a compacted revision fails at once. */
		pthread_mutex_unlock(&e->lock);
		rc = from > 1 ? still_kept(e, from) : 0;
		pthread_mutex_lock(&e->lock);
		if (rc == 0 && !e->streaming)
			rc = stream_start(e, from);
		if (rc < 0)
			goto out;
	}
	/*
	 * Below a compaction: a watch that starts there is -ENODATA; one
	 * that reads on gets what the ring holds, from its oldest, past
	 * from, and the front says -EOVERFLOW (ustate_compact()'s contract).
	 */
	if (from < e->compacted && !max) {
		rc = -ENODATA;
		goto out;
	}
	if (from < e->oldest && !max) {
		/*
		 * A watch that starts before what the ring holds: watch
		 * again from there, if etcd still has it.
		 */
		pthread_mutex_unlock(&e->lock);
		rc = from ? still_kept(e, from) : 0;
		pthread_mutex_lock(&e->lock);
		if (rc < 0)
			goto out;
		if (from < e->oldest) {
			e->restart = from;
			e->oldest = from;
			ustate_etcd_stream_stop(e->st);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += e->opts.request_timeout / 1000;
	until.tv_nsec += (long)(e->opts.request_timeout % 1000) * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	/*
	 * Our own commits are in the ring before a watch reads on, and a
	 * watch again from the past has begun (bounded by the timeout).
	 */
	while (max && (e->restart || (e->want > e->applied && from <= e->want)))
		if (pthread_cond_timedwait(&e->cond, &e->lock, &until) != 0)
			break;
	*oldest = e->restart ? e->restart : e->oldest;
	if (!max || e->restart)
		goto out;
	want_n = 0;
	for (i = 0; i < e->len; i++) {
		c = &e->ring[(e->head + i) % e->cap];
		if (c->revision < from)
			continue;
		if (c->revision == from && skip) {
			skip--;
			continue;
		}
		if (want_n == max)
			break;
		want_n++;
	}
	if (!want_n)
		goto out;
	v = calloc(want_n, sizeof(*v));
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	skip = skip0;
	for (i = 0; i < e->len && got < want_n; i++) {
		c = &e->ring[(e->head + i) % e->cap];
		if (c->revision < from)
			continue;
		if (c->revision == from && skip) {
			skip--;
			continue;
		}
		v[got] = *c;
		v[got].key = strdup(c->key);
		if (!v[got].key) {
			ustate_changes_free(v, got);
			v = NULL;
			got = 0;
			rc = -ENOMEM;
			goto out;
		}
		got++;
	}
out:
	pthread_mutex_unlock(&e->lock);
	*out = v;
	*n = got;
	return rc;
}

/* ---- export, backup, check -------------------------------------------- */

/*
 * A walk over the records at or below a prefix, in path order, from one
 * snapshot: the keys (around the side keys when the prefix is "/"), their
 * created and updated side keys, and the directory records, merged.
 */
/* The owner a lease record tells after its ID, if any. */
struct lease_owner {
	bool owned;
	ustate_meta m;
};

/* Parse a lease record "ID[ uid gid mode]": its ID, or 0 when bad. */
static int64_t lease_parse(const char *v, struct lease_owner *own)
{
	unsigned long uid, gid, mode;
	char *end;
	int64_t id;

	errno = 0;
	id = strtoll(v, &end, 10);
	if (errno || end == v)
		return 0;
	if (own) {
		own->owned =
			sscanf(end, " %lu %lu %lo", &uid, &gid, &mode) == 3 &&
			uid <= UINT32_MAX && gid <= UINT32_MAX && mode <= 07777;
		memset(&own->m, 0, sizeof(own->m));
		if (own->owned) {
			own->m.uid = (uint32_t)uid;
			own->m.gid = (uint32_t)gid;
			own->m.mode = (uint32_t)mode;
		}
	}
	return id;
}

/* The text of a lease record for etcd lease id and owner (or NULL). */
static void lease_format(char *buf, size_t size, int64_t id,
			 const ustate_meta *owner)
{
	if (owner)
		snprintf(buf, size, "%lld %" PRIu32 " %" PRIu32 " %" PRIo32,
			 (long long)id, owner->uid, owner->gid,
			 owner->mode & 07777);
	else
		snprintf(buf, size, "%lld", (long long)id);
}

struct exp {
	struct etcd_backend *e;
	struct walk keys[2], side[2], dirs, dx;
	size_t nkeys, kseg;
	json_t *kv[2], *skv[2], *dkv, *xkv; /* the head of each walk,
					     * borrowed */
	char *kk, *sk[2], *dk, *xk;	    /* their decoded etcd keys */
	size_t kklen, sklen[2], dklen, xklen;
	bool kend, send[2], dend, xend;
	char *val; /* the record's value, owned */
	uint64_t rev;
	/* The record's metadata and xattrs, owned until the next one. */
	ustate_meta meta;
	ustate_xattr *xs;
	char **xbufs; /* each xattr's name and value, in one block */
	size_t nx, xcap;
	/* The live leases, by name: LEASE records first, then keys'. */
	struct exp_lease *leases;
	size_t nleases, lpos;
};

static int64_t get_i64(json_t *o, const char *name);
static int lease_call(struct etcd_backend *e, const char *path, int64_t id,
		      bool keys, bool read, json_t **resp);

/* A lease of an export. */
struct exp_lease {
	char *name;
	int64_t id, ttl;
	bool owned, used; /* used: has a key under the prefix */
	ustate_meta owner;
};

/* A walk over [base + lo, base + hi) where base is PREFIX and tag. */
static int exp_walk(struct exp *x, struct walk *w, char tag, const char *lo,
		    const char *hi)
{
	char s[USTATE_KEY_MAX * 2 + 64], en[USTATE_KEY_MAX * 2 + 64];
	struct etcd_backend *e = x->e;
	int sn, enn;

	char t[4] = {'/', '/', tag, '\0'};

	if (!tag)
		t[0] = '\0';
	sn = snprintf(s, sizeof(s), "%s%s%s", e->prefix, t, lo);
	enn = snprintf(en, sizeof(en), "%s%s%s", e->prefix, t, hi);
	return walk_init(w, e, s, (size_t)sn, en, (size_t)enn, tag != 0,
			 x->rev);
}

static int exp_step(struct walk *w, json_t **kv, char **k, size_t *klen,
		    bool *end)
{
	int rc = walk_next(w, kv, k, klen);

	*end = rc <= 0;
	return rc < 0 ? rc : 0;
}

/* The path of a walk's head (tag's length past PREFIX). */
static const char *head_path(const struct etcd_backend *e, const char *k,
			     char tag)
{
	return k + e->plen + (tag ? SIDE_LEN : 0);
}

/* Order a side key's path ("K\tc") against a key: by K. */
static int side_cmp(const char *side, const char *key)
{
	size_t n = strcspn(side, "\t"), klen = strlen(key);
	int c = memcmp(side, key, n < klen ? n : klen);

	if (c)
		return c;
	return n < klen ? -1 : n > klen ? 1 : 0;
}

/* Forget the last record's xattrs. */
static void exp_meta_reset(struct exp *x)
{
	size_t i;

	for (i = 0; i < x->nx; i++)
		free(x->xbufs[i]);
	x->nx = 0;
}

/* Add the attribute name (nlen bytes) with kv's value to the record's. */
static int exp_xattr(struct exp *x, const char *name, size_t nlen, json_t *kv)
{
	char *v, *buf;
	size_t vlen;
	void *grown;
	int rc;

	if (x->nx == x->xcap) {
		grown = realloc(x->xs, (x->xcap * 2 + 4) * sizeof(*x->xs));
		if (!grown)
			return -ENOMEM;
		x->xs = grown;
		grown = realloc(x->xbufs,
				(x->xcap * 2 + 4) * sizeof(*x->xbufs));
		if (!grown)
			return -ENOMEM;
		x->xbufs = grown;
		x->xcap = x->xcap * 2 + 4;
	}
	rc = ustate_etcd_get_bytes(kv, "value", &v, &vlen);
	if (rc < 0)
		return rc;
	buf = malloc(nlen + 1 + vlen);
	if (!buf) {
		free(v);
		return -ENOMEM;
	}
	memcpy(buf, name, nlen);
	buf[nlen] = '\0';
	memcpy(buf + nlen + 1, v, vlen);
	free(v);
	x->xbufs[x->nx] = buf;
	x->xs[x->nx++] = (ustate_xattr){
		.name = buf, .value = buf + nlen + 1, .value_len = vlen};
	return 0;
}

/*
 * The metadata and xattrs of key kp (its kv and side kvs) into r, by the
 * rules of etcd_meta_get() and etcd_xattrs().
 */
static int exp_key_meta(struct exp *x, const char *kp, json_t *kv,
			json_t *sides, ustate_record *r)
{
	uint64_t crev = ustate_etcd_get_u64(kv, "create_revision");
	uint64_t mrev = ustate_etcd_get_u64(kv, "mod_revision"), inc, srev;
	json_t *m = side_of(sides, 'm'), *c = side_of(sides, 'c'), *sk;
	size_t i, klen, skip = x->e->plen + SIDE_LEN + strlen(kp) + 2;
	char *k;
	int rc = 0;

	exp_meta_reset(x);
	if (m && ustate_etcd_get_u64(m, "mod_revision") >= crev &&
	    meta_parse(m, &x->meta) == 0) {
		if (ustate_etcd_get_u64(m, "mod_revision") < mrev)
			x->meta.flags &= ~(uint32_t)USTATE_META_MTIME;
		r->meta = &x->meta;
	}
	inc = crev;
	if (c && ustate_etcd_get_u64(c, "mod_revision") > inc)
		inc = ustate_etcd_get_u64(c, "mod_revision");
	json_array_foreach(sides, i, sk)
	{
		srev = ustate_etcd_get_u64(sk, "mod_revision");
		rc = ustate_etcd_get_bytes(sk, "key", &k, &klen);
		if (rc < 0)
			return rc;
		if (klen > skip && k[skip - 2] == '\t' && k[skip - 1] == 'x' &&
		    srev >= inc)
			rc = exp_xattr(x, k + skip, klen - skip, sk);
		free(k);
		if (rc < 0)
			return rc;
	}
	r->xattrs = x->xs;
	r->nxattrs = x->nx;
	return 0;
}

/*
 * The metadata of record dp (its kv, x->dkv) and its xattrs, from the walk
 * of "//x" in step, into r: those of records gone (older than the record
 * there now, or with none) are passed over.
 */
static int exp_dir_meta(struct exp *x, const char *dp, json_t *dkv,
			ustate_record *r)
{
	uint64_t crev = ustate_etcd_get_u64(dkv, "create_revision");
	struct etcd_backend *e = x->e;
	size_t skip = e->plen + SIDE_LEN + strlen(dp) + 1;
	int rc, c;

	exp_meta_reset(x);
	if (meta_parse(dkv, &x->meta) == 0)
		r->meta = &x->meta;
	while (!x->xend) {
		c = side_cmp(head_path(e, x->xk, 'x'), dp);
		if (c > 0)
			break;
		if (c == 0 &&
		    ustate_etcd_get_u64(x->xkv, "mod_revision") >= crev &&
		    x->xklen > skip) {
			rc = exp_xattr(x, x->xk + skip, x->xklen - skip,
				       x->xkv);
			if (rc < 0)
				return rc;
		}
		rc = exp_step(&x->dx, &x->xkv, &x->xk, &x->xklen, &x->xend);
		if (rc < 0)
			return rc;
	}
	r->xattrs = x->xs;
	r->nxattrs = x->nx;
	return 0;
}

static void exp_free(struct exp *x)
{
	size_t i;

	for (i = 0; i < 2; i++) {
		walk_free(&x->keys[i]);
		walk_free(&x->side[i]);
		free(x->sk[i]);
	}
	walk_free(&x->dirs);
	walk_free(&x->dx);
	free(x->kk);
	free(x->dk);
	free(x->xk);
	free(x->val);
	exp_meta_reset(x);
	free(x->xs);
	free(x->xbufs);
	for (i = 0; i < x->nleases; i++)
		free(x->leases[i].name);
	free(x->leases);
}

/* Every lease record, //l/..., in one range read: *resp the answer. */
static int lease_records(struct etcd_backend *e, json_t **resp)
{
	char *lo = ekey(e, 'l', "/"), *hi;
	int rc;

	hi = lo ? range_end(lo, strlen(lo)) : NULL;
	rc = lo && hi ? 0 : -ENOMEM;
	if (rc == 0)
		rc = call(e, "/v3/kv/range",
			  op_range(ustate_etcd_b64s(lo), ustate_etcd_b64s(hi),
				   false, false, 0),
			  USTATE_ETCD_READ, resp);
	free(lo);
	free(hi);
	return rc;
}

/*
 * Whether one of the etcd keys of a timetolive answer is a key of the
 * store at or below prefix (plen bytes).
 */
static bool lease_has_key_under(struct etcd_backend *e, json_t *keys,
				const char *prefix, size_t plen)
{
	const char *path;
	json_t *one_key, *k;
	bool yes = false;
	char *raw;
	size_t i, n;

	json_array_foreach(keys, i, k)
	{
		one_key = json_pack("{s:O}", "k", k);
		raw = NULL;
		if (one_key &&
		    ustate_etcd_get_bytes(one_key, "k", &raw, &n) == 0)
			yes = classify(e, raw, n, &path) == 0 &&
			      !strncmp(path, prefix, plen);
		json_decref(one_key);
		free(raw);
		if (yes)
			break;
	}
	return yes;
}

/*
 * The live leases into x, from the records under //l/ and etcd's own
 * (their TTL as granted): all of them when all, else those with a key at
 * or below prefix.
 */
static int exp_leases_load(struct exp *x, const char *prefix, bool all)
{
	struct etcd_backend *e = x->e;
	json_t *resp = NULL, *tr, *kv;
	struct lease_owner own;
	struct exp_lease *l;
	size_t i, n, kn, plen = strlen(prefix);
	const char *path;
	char *v, *k;
	int rc;

	rc = lease_records(e, &resp);
	if (rc < 0)
		return rc;
	n = json_array_size(json_object_get(resp, "kvs"));
	x->leases = calloc(n + 1, sizeof(*x->leases));
	if (!x->leases) {
		json_decref(resp);
		return -ENOMEM;
	}
	json_array_foreach(json_object_get(resp, "kvs"), i, kv)
	{
		l = &x->leases[x->nleases];
		v = k = NULL;
		if (ustate_etcd_get_bytes(kv, "value", &v, &n) < 0 ||
		    ustate_etcd_get_bytes(kv, "key", &k, &kn) < 0) {
			free(v);
			rc = -ENOMEM;
			break;
		}
		l->id = lease_parse(v, &own);
		free(v);
		if (l->id <= 0 || classify(e, k, kn, &path) != 'l') {
			free(k);
			continue;
		}
		l->name = strdup(path + 1);
		free(k);
		if (!l->name) {
			rc = -ENOMEM;
			break;
		}
		tr = NULL;
		rc = lease_call(e, "/v3/lease/timetolive", l->id, !all, true,
				&tr);
		if (rc < 0) {
			free(l->name);
			break;
		}
		l->ttl = get_i64(tr, "grantedTTL");
		l->used = all ||
			  lease_has_key_under(e, json_object_get(tr, "keys"),
					      prefix, plen);
		l->owned = own.owned;
		l->owner = own.m;
		/* Ended since the record was read: not live. */
		if (l->ttl <= 0 || get_i64(tr, "TTL") < 0) {
			json_decref(tr);
			free(l->name);
			l->name = NULL;
			continue;
		}
		json_decref(tr);
		x->nleases++;
	}
	json_decref(resp);
	return rc;
}

/* The name of the live etcd lease id among x's, or NULL. */
static const char *exp_lease_name(const struct exp *x, int64_t id)
{
	size_t i;

	for (i = 0; id && i < x->nleases; i++)
		if (x->leases[i].id == id)
			return x->leases[i].name;
	return NULL;
}

static int exp_init(struct exp *x, struct etcd_backend *e, const char *prefix)
{
	char hi[USTATE_KEY_MAX + 8], *r;
	size_t plen;
	int rc;

	memset(x, 0, sizeof(*x));
	x->e = e;
	if (!*prefix)
		prefix = "/";
	plen = strlen(prefix);
	if (prefix[0] != '/' || (plen > 1 && prefix[1] == '/')) {
		x->kend = x->send[0] = x->send[1] = x->dend = true;
		return 0;
	}
	r = range_end(prefix, plen);
	if (!r)
		return -ENOMEM;
	snprintf(hi, sizeof(hi), "%s", r);
	free(r);
	/* The first page fixes the snapshot of every other walk. */
	if (plen == 1) {
		rc = exp_walk(x, &x->keys[0], 0, "/", "//");
		if (rc == 0)
			rc = exp_walk(x, &x->keys[1], 0, "/0", hi);
		x->nkeys = 2;
	} else {
		rc = exp_walk(x, &x->keys[0], 0, prefix, hi);
		x->nkeys = 1;
	}
	if (rc < 0)
		return rc;
	rc = exp_step(&x->keys[0], &x->kv[0], &x->kk, &x->kklen, &x->kend);
	if (rc < 0)
		return rc;
	x->rev = x->keys[0].rev;
	if (x->nkeys == 2)
		x->keys[1].rev = x->rev;
	rc = exp_walk(x, &x->side[0], 'k', prefix, hi);
	if (rc == 0)
		rc = exp_walk(x, &x->dirs, 'd', prefix, hi);
	if (rc == 0)
		rc = exp_walk(x, &x->dx, 'x', prefix, hi);
	if (rc < 0)
		return rc;
	x->dx.keys_only = false;
	x->dirs.keys_only = false; /* a record's value: its metadata */
	rc = exp_step(&x->dx, &x->xkv, &x->xk, &x->xklen, &x->xend);
	if (rc < 0)
		return rc;
	x->side[0].keys_only = false;
	x->send[1] = true;
	rc = exp_step(&x->side[0], &x->skv[0], &x->sk[0], &x->sklen[0],
		      &x->send[0]);
	if (rc == 0)
		rc = exp_step(&x->dirs, &x->dkv, &x->dk, &x->dklen, &x->dend);
	if (rc == 0)
		rc = exp_leases_load(x, prefix, plen == 1);
	return rc;
}

/* Move the key walk on, to its second segment when the first ends. */
static int exp_next_key(struct exp *x)
{
	int rc;

	for (;;) {
		rc = exp_step(&x->keys[x->kseg], &x->kv[0], &x->kk, &x->kklen,
			      &x->kend);
		if (rc < 0 || !x->kend || x->kseg + 1 >= x->nkeys)
			return rc;
		x->kseg++;
	}
}

/*
 * The next record (pointers owned by x until the next call): 1, 0 at the
 * end, or an error. Keys that break the key rules are left out.
 */
static int exp_next(struct exp *x, ustate_record *r)
{
	struct etcd_backend *e = x->e;
	const char *kp, *dp;
	json_t *sides;
	int rc, cmpv;

	/* The leases first. */
	while (x->lpos < x->nleases) {
		const struct exp_lease *l = &x->leases[x->lpos++];

		if (!l->used)
			continue;
		*r = (ustate_record){.type = USTATE_RECORD_LEASE,
				     .key = l->name,
				     .ttl = l->ttl,
				     .meta = l->owned ? &l->owner : NULL};
		return 1;
	}
	for (;;) {
		/* Skip the root's record and anything not a valid path. */
		while (!x->dend &&
		       (!strcmp(head_path(e, x->dk, 'd'), "/") ||
			ustate_key_valid(head_path(e, x->dk, 'd')) < 0)) {
			rc = exp_step(&x->dirs, &x->dkv, &x->dk, &x->dklen,
				      &x->dend);
			if (rc < 0)
				return rc;
		}
		if (x->kend && x->nkeys > x->kseg + 1) {
			rc = exp_next_key(x);
			if (rc < 0)
				return rc;
		}
		if (x->kend && x->dend)
			return 0;
		kp = x->kend ? NULL : head_path(e, x->kk, 0);
		dp = x->dend ? NULL : head_path(e, x->dk, 'd');
		cmpv = !kp ? 1 : !dp ? -1 : strcmp(kp, dp);
		if (cmpv > 0) {
			memset(r, 0, sizeof(*r));
			r->type = USTATE_RECORD_DIR;
			free(x->val);
			x->val = strdup(dp);
			if (!x->val)
				return -ENOMEM;
			r->key = x->val;
			rc = exp_dir_meta(x, x->val, x->dkv, r);
			if (rc == 0)
				rc = exp_step(&x->dirs, &x->dkv, &x->dk,
					      &x->dklen, &x->dend);
			return rc < 0 ? rc : 1;
		}
		if (ustate_key_valid(kp) < 0 ||
		    strlen(kp) != x->kklen - e->plen) {
			rc = exp_next_key(x);
			if (rc < 0)
				return rc;
			continue;
		}
		/*
		 * The side keys of this key, if any, from a walk in step:
		 * they sort as their keys do (K + tab + tag).
		 */
		sides = json_array();
		if (!sides)
			return -ENOMEM;
		while (!x->send[0]) {
			cmpv = side_cmp(head_path(e, x->sk[0], 'k'), kp);
			if (cmpv > 0)
				break;
			if (cmpv == 0 &&
			    json_array_append(sides, x->skv[0]) < 0) {
				json_decref(sides);
				return -ENOMEM;
			}
			rc = exp_step(&x->side[0], &x->skv[0], &x->sk[0],
				      &x->sklen[0], &x->send[0]);
			if (rc < 0) {
				json_decref(sides);
				return rc;
			}
		}
		{
			ustate_entry *en = NULL;

			rc = entry_of(kp, x->kv[0], sides, &en);
			if (rc < 0) {
				json_decref(sides);
				return rc;
			}
			free(x->val);
			x->val = (char *)en;
			memset(r, 0, sizeof(*r));
			r->type = USTATE_RECORD_KEY;
			r->key = en->key;
			r->value = en->value;
			r->value_len = en->value_len;
			r->version = en->version;
			r->created_at = en->created_at;
			r->updated_at = en->updated_at;
			r->mod_revision = en->mod_revision;
			r->lease =
				exp_lease_name(x, get_i64(x->kv[0], "lease"));
			rc = exp_key_meta(x, en->key, x->kv[0], sides, r);
			json_decref(sides);
			if (rc < 0)
				return rc;
		}
		rc = exp_next_key(x);
		return rc < 0 ? rc : 1;
	}
}

static int etcd_export(void *b, const char *prefix, ustate_export_fn fn,
		       void *arg)
{
	ustate_record r;
	struct exp x;
	int rc;

	rc = exp_init(&x, b, prefix);
	while (rc == 0 && (rc = exp_next(&x, &r)) > 0)
		rc = fn(arg, &r);
	exp_free(&x);
	return rc < 0 ? rc : 0;
}

struct backup_feed {
	struct exp x;
	uint64_t done;
};

static int backup_next(void *arg, ustate_record *r)
{
	struct backup_feed *f = arg;
	int rc = exp_next(&f->x, r);

	/* A key with an unknown time gets the time of the copy. */
	if (rc > 0 && r->type == USTATE_RECORD_KEY) {
		if (!r->updated_at)
			r->updated_at =
				r->created_at ? r->created_at : time(NULL);
		if (!r->created_at)
			r->created_at = r->updated_at;
		f->done += r->value_len;
	}
	return rc;
}

/*
 * The root's metadata and xattrs, which are no record, into the copy sq:
 * one transaction after the restore (read after the snapshot).
 */
static int backup_root(struct etcd_backend *e,
		       const struct ustate_backend_ops *ops, void *sq)
{
	ustate_txn_result res = {0};
	size_t len = 0, off = 0, n = 0, k = 0, nlen, vlen, i;
	uint64_t *versions = NULL;
	ustate_op *txn = NULL;
	char **bufs = NULL;
	const char *name;
	void *blob = NULL;
	const void *v;
	ustate_meta m;
	bool meta;
	int rc;

	rc = etcd_meta_get(e, "/", USTATE_META_DIR, &m);
	meta = rc == 0;
	if (rc == -ENOENT)
		rc = 0;
	if (rc == 0)
		rc = etcd_xattrs(e, "/", USTATE_META_DIR, &blob, &len);
	if (rc == -ENOENT)
		rc = 0;
	while (rc == 0 &&
	       ustate_xattr_entry(blob, len, &off, &name, &v, &vlen) == 1)
		k++;
	if (rc < 0 || (!meta && !k))
		goto out;
	txn = calloc(k + 1, sizeof(*txn));
	bufs = calloc(k + 1, sizeof(*bufs));
	versions = calloc(k + 1, sizeof(*versions));
	if (!txn || !bufs || !versions) {
		rc = -ENOMEM;
		goto out;
	}
	if (meta)
		txn[n++] = (ustate_op){.type = USTATE_OP_MKDIR,
				       .key = "/",
				       .value = &m,
				       .value_len = sizeof(m)};
	for (off = 0, i = 0; i < k; i++) {
		ustate_xattr_entry(blob, len, &off, &name, &v, &vlen);
		nlen = strlen(name) + 1;
		bufs[i] = malloc(nlen + vlen);
		if (!bufs[i]) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(bufs[i], name, nlen);
		memcpy(bufs[i] + nlen, v, vlen);
		txn[n++] = (ustate_op){.type = USTATE_OP_XATTR,
				       .key = "/",
				       .version = USTATE_META_DIR,
				       .value = bufs[i],
				       .value_len = nlen + vlen};
	}
	res.versions = versions;
	rc = ops->txn(sq, txn, n, &res, USTATE_TXN_NO_REVISION);
out:
	for (i = 0; bufs && i < k; i++)
		free(bufs[i]);
	free(bufs);
	free(txn);
	free(versions);
	free(blob);
	return rc;
}

static int etcd_backup(void *b, const char *path, ustate_progress_fn progress,
		       void *arg)
{
	struct etcd_backend *e = b;
	const struct ustate_backend_ops *ops;
	ustate_options o = e->opts;
	struct backup_feed f;
	ustate_restore_result res = {0};
	void *sq;
	int rc;

	/* The snapshot as a SQLite store, through its backend's restore. */
	o.read_only = 0;
	o.max_value_size = 1u << 30;
	rc = ustate_sqlite_backend_open(&sq, &ops, path, &o);
	if (rc < 0)
		return rc;
	rc = exp_init(&f.x, e, "/");
	f.done = 0;
	if (rc == 0)
		rc = ops->restore(sq, backup_next, &f, 0, &res);
	exp_free(&f.x);
	if (rc == 0)
		rc = backup_root(e, ops, sq);
	ops->close(sq);
	if (rc == 0 && progress)
		rc = progress(arg, f.done, f.done);
	return rc;
}

static int etcd_check(void *b, ustate_problem_fn fn, void *arg)
{
	struct etcd_backend *e = b;
	char *k = NULL, *lo, *hi, key[USTATE_KEY_MAX + 1];
	json_t *kv, *resp;
	uint64_t crev;
	const char *path;
	struct walk w;
	size_t klen, n;
	int rc;

	/*
	 * Every side key belongs to a key of its age: a delete by another
	 * client leaves some behind (they read as absent, and the next
	 * write through libustate replaces them).
	 */
	lo = ekey(e, 'k', "/");
	hi = lo ? range_end(lo, strlen(lo) - 1) : NULL;
	rc = lo && hi
		     ? walk_init(&w, e, lo, strlen(lo), hi, strlen(hi), true, 0)
		     : -ENOMEM;
	free(lo);
	free(hi);
	if (rc < 0)
		return rc;
	while ((rc = walk_next(&w, &kv, &k, &klen)) > 0) {
		if (classify(e, k, klen, &path) != 'k')
			continue;
		n = strcspn(path, "\t");
		if (n > USTATE_KEY_MAX || !path[n] || !path[n + 1]) {
			rc = ustate_report(fn, arg, "side-invalid", NULL,
					   "a side key that names no key");
			if (rc < 0)
				break;
			continue;
		}
		memcpy(key, path, n);
		key[n] = '\0';
		resp = NULL;
		rc = call(e, "/v3/kv/range",
			  op_range(jkey(e, 0, key, NULL), NULL, true, false, 0),
			  USTATE_ETCD_READ, &resp);
		if (rc < 0)
			break;
		crev = ustate_etcd_get_u64(first_kv(resp), "create_revision");
		json_decref(resp);
		if (!crev)
			rc = ustate_report(fn, arg, "side-orphan", key,
					   "the side key %c of a key that does "
					   "not exist",
					   path[n + 1]);
		else if (ustate_etcd_get_u64(kv, "mod_revision") < crev)
			rc = ustate_report(fn, arg, "side-stale", key,
					   "the side key %c is older than the "
					   "key",
					   path[n + 1]);
		if (rc < 0)
			break;
	}
	free(k);
	walk_free(&w);
	return rc < 0 ? rc : 0;
}

/* ---- open and close --------------------------------------------------- */

static void etcd_close(void *b)
{
	struct etcd_backend *e = b;
	bool join;

	if (!e)
		return;
	pthread_mutex_lock(&e->lock);
	e->stopping = true;
	join = e->streaming;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	if (e->st)
		ustate_etcd_stream_stop(e->st);
	if (join)
		pthread_join(e->thread, NULL);
	if (e->mirror)
		ustate_log(&e->opts, LOG_INFO,
			   "%s: the replica answered %llu reads, etcd %llu; "
			   "%llu quorum reads",
			   e->source, (unsigned long long)e->local,
			   (unsigned long long)e->remote,
			   (unsigned long long)e->qreads);
	ustate_etcd_mirror_close(e->mirror);
	ustate_etcd_stream_free(e->st);
	ustate_etcd_conn_free(e->conn);
	if (e->ring) {
		pthread_mutex_lock(&e->lock);
		ring_clear(e, 1);
		pthread_mutex_unlock(&e->lock);
	}
	free(e->ring);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->qcond);
	pthread_mutex_destroy(&e->qlock);
	free(e->prefix);
	free(e->source);
	free(e);
}

/* ---- leases ----------------------------------------------------------- */

#define LEASE_TRIES 8 /* grants that raced another grant of the name */

/* JSON of the etcd key of lease name's record, PREFIX//l/NAME. */
static json_t *lease_jkey(const struct etcd_backend *e, const char *name)
{
	char path[USTATE_SEGMENT_MAX + 2];

	snprintf(path, sizeof(path), "/%s", name);
	return jkey(e, 'l', path, NULL);
}

/* A signed decimal field of an etcd response (IDs, TTLs), or 0. */
static int64_t get_i64(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	if (json_is_string(v))
		return strtoll(json_string_value(v), NULL, 10);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/*
 * The etcd lease ID of lease name, the create revision of its record and
 * its owner (crev and own may be NULL); -ENOENT when it has none (it
 * expired, or was never granted).
 */
static int lease_lookup(struct etcd_backend *e, const char *name, int64_t *id,
			uint64_t *crev, struct lease_owner *own)
{
	json_t *resp = NULL, *kv;
	char *v;
	size_t n;
	int rc;

	rc = call(e, "/v3/kv/range",
		  op_range(lease_jkey(e, name), NULL, false, false, 0),
		  USTATE_ETCD_READ, &resp);
	if (rc < 0)
		return rc;
	kv = first_kv(resp);
	rc = kv ? ustate_etcd_get_bytes(kv, "value", &v, &n) : -ENOENT;
	if (rc == 0) {
		*id = lease_parse(v, own);
		free(v);
		if (crev)
			*crev = ustate_etcd_get_u64(kv, "create_revision");
		rc = *id > 0 ? 0 : -ENOENT;
	}
	json_decref(resp);
	return rc;
}

/*
 * The etcd lease of each op that names one, into p; -ENOENT for the first
 * op whose lease does not exist (res->failed names it).
 */
static int lease_resolve(struct etcd_backend *e, struct plan *p,
			 ustate_txn_result *res)
{
	const ustate_op *ops = p->ops;
	size_t i, j;
	int rc;

	for (i = 0; i < p->n; i++) {
		p->lease_id[i] = 0;
		if ((ops[i].type != USTATE_OP_SET &&
		     ops[i].type != USTATE_OP_CREATE) ||
		    !ops[i].lease)
			continue;
		for (j = 0; j < i; j++)
			if (p->lease_id[j] &&
			    !strcmp(ops[j].lease, ops[i].lease))
				break;
		if (j < i) {
			p->lease_id[i] = p->lease_id[j];
			p->lease_crev[i] = p->lease_crev[j];
			continue;
		}
		rc = lease_lookup(e, ops[i].lease, &p->lease_id[i],
				  &p->lease_crev[i], NULL);
		if (rc == -ENOENT) {
			res->failed = i;
			res->found = 0;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * The name of etcd lease id among the records (a range of //l/), or NULL:
 * an entry names its lease.
 */
static int lease_name_of(struct etcd_backend *e, int64_t id, char **name)
{
	json_t *resp = NULL, *kv;
	const char *path;
	size_t i, n, kn;
	char *v, *k;
	int rc;

	*name = NULL;
	rc = lease_records(e, &resp);
	if (rc < 0)
		return rc;
	json_array_foreach(json_object_get(resp, "kvs"), i, kv)
	{
		if (get_i64(kv, "lease") != id ||
		    ustate_etcd_get_bytes(kv, "value", &v, &n) < 0)
			continue;
		if (lease_parse(v, NULL) == id &&
		    ustate_etcd_get_bytes(kv, "key", &k, &kn) == 0) {
			if (classify(e, k, kn, &path) == 'l')
				*name = strdup(path + 1);
			free(k);
		}
		free(v);
		if (*name)
			break;
	}
	json_decref(resp);
	return 0;
}

/* Give *en the name of the lease kv is attached to, if any. */
static int entry_lease_id(struct etcd_backend *e, int64_t id, ustate_entry **en)
{
	ustate_entry *x, *old = *en;
	char *name;
	int rc;

	if (!id)
		return 0;
	rc = lease_name_of(e, id, &name);
	if (rc < 0 || !name)
		goto fail;
	x = ustate_entry_new_leased(old->key, old->value, old->value_len, name);
	free(name);
	if (!x) {
		rc = -ENOMEM;
		goto fail;
	}
	x->version = old->version;
	x->created_at = old->created_at;
	x->updated_at = old->updated_at;
	x->mod_revision = old->mod_revision;
	ustate_entry_free(old);
	*en = x;
	return 0;
fail:
	ustate_entry_free(old);
	*en = NULL;
	return rc;
}

/* POST a lease request {"ID": id}, plus keys when asked. */
static int lease_call(struct etcd_backend *e, const char *path, int64_t id,
		      bool keys, bool read, json_t **resp)
{
	json_t *req = json_object();
	char buf[24];

	snprintf(buf, sizeof(buf), "%lld", (long long)id);
	if (req) {
		json_object_set_new(req, "ID", json_string(buf));
		if (keys)
			json_object_set_new(req, "keys", json_true());
	}
	return call(e, path, req, read ? USTATE_ETCD_READ : 0, resp);
}

/*
 * A keepalive of etcd lease id: the gateway answers its stream with one
 * message, {"result": {..., "TTL"}}; a TTL of 0 means the lease is gone.
 */
static int lease_touch(struct etcd_backend *e, int64_t id, int64_t *ttl)
{
	json_t *resp = NULL;
	int rc;

	/* Sending it twice only keeps it alive twice. */
	rc = lease_call(e, "/v3/lease/keepalive", id, false, true, &resp);
	if (rc < 0)
		return rc;
	*ttl = get_i64(json_object_get(resp, "result"), "TTL");
	json_decref(resp);
	return *ttl > 0 ? 0 : -ENOENT;
}

static int lease_out(const char *name, int64_t ttl, int64_t now,
		     const ustate_meta *owner, ustate_lease_info **out)
{
	ustate_lease_info *li;

	if (!out)
		return 0;
	li = ustate_lease_info_new(name, ttl, now + ttl * 1000, now);
	if (!li)
		return -ENOMEM;
	ustate_lease_info_owner(li, owner);
	*out = li;
	return 0;
}

/*
 * Put the record of lease name, attached to etcd lease id, with owner
 * (or none), if no record exists (crev 0) or if the record is still the
 * one made at crev: false in *made when another grant got there first, or
 * the record changed.
 */
static int lease_record(struct etcd_backend *e, const char *name, int64_t id,
			const ustate_meta *owner, uint64_t crev, bool *made)
{
	json_t *req = json_object(), *resp = NULL;
	char buf[80];
	int rc = 0;

	lease_format(buf, sizeof(buf), id, owner);
	if (!req)
		return -ENOMEM;
	rc |= json_object_set_new(req, "compare",
				  one(crev ? cmp(lease_jkey(e, name), NULL,
						 "CREATE", "EQUAL", crev)
					   : cmp(lease_jkey(e, name), NULL,
						 "VERSION", "EQUAL", 0)));
	rc |= json_object_set_new(
		req, "success",
		one(leased(req_put_str(lease_jkey(e, name), buf), id)));
	if (rc) {
		json_decref(req);
		return -ENOMEM;
	}
	rc = call(e, "/v3/kv/txn", req, 0, &resp);
	if (rc == 0) {
		*made = json_is_true(json_object_get(resp, "succeeded"));
		if (*made)
			note_commit(e, header_rev(resp));
	}
	json_decref(resp);
	return rc;
}

/*
 * A live lease is kept alive: etcd cannot change the TTL of a lease, so
 * its first TTL stays (reported in *out). Else a new etcd lease, whose
 * TTL etcd may raise to its minimum (about 2 s), and its record.
 */
static int etcd_lease_grant(void *b, const char *name, int64_t ttl,
			    const ustate_meta *owner, int64_t now,
			    ustate_lease_info **out)
{
	struct etcd_backend *e = b;
	json_t *req, *resp = NULL;
	struct lease_owner own;
	int64_t id, got;
	unsigned tries;
	bool made;
	int rc;

	for (tries = 0; tries < LEASE_TRIES; tries++) {
		rc = lease_lookup(e, name, &id, NULL, &own);
		if (rc == 0)
			rc = lease_touch(e, id, &got);
		if (rc == 0)
			return lease_out(name, got, now,
					 own.owned ? &own.m : NULL, out);
		if (rc != -ENOENT)
			return rc;
		req = json_pack("{s:I}", "TTL", (json_int_t)ttl);
		rc = call(e, "/v3/lease/grant", req, 0, &resp);
		if (rc < 0)
			return rc;
		id = get_i64(resp, "ID");
		got = get_i64(resp, "TTL");
		json_decref(resp);
		resp = NULL;
		if (id <= 0 || got <= 0)
			return -EIO;
		rc = lease_record(e, name, id, owner, 0, &made);
		if (rc == 0 && made)
			return lease_out(name, got, now, owner, out);
		/* Another grant of the name won: ours goes, and theirs is
		 * kept alive at the next turn. */
		lease_call(e, "/v3/lease/revoke", id, false, false, &resp);
		json_decref(resp);
		resp = NULL;
		if (rc < 0)
			return rc;
	}
	return -EBUSY;
}

static int etcd_lease_keepalive(void *b, const char *name, int64_t now,
				ustate_lease_info **out)
{
	struct etcd_backend *e = b;
	struct lease_owner own;
	int64_t id, ttl = 0;
	int rc;

	rc = lease_lookup(e, name, &id, NULL, &own);
	if (rc == 0)
		rc = lease_touch(e, id, &ttl);
	return rc < 0 ? rc
		      : lease_out(name, ttl, now, own.owned ? &own.m : NULL,
				  out);
}

/*
 * A new owner is a put of the record, still with its lease, only if it is
 * the record looked up (a lease granted again since is another lease).
 */
static int etcd_lease_owner(void *b, const char *name, const ustate_meta *owner,
			    int64_t now)
{
	struct etcd_backend *e = b;
	uint64_t crev = 0;
	bool made = false;
	int64_t id;
	int rc;

	(void)now;
	rc = lease_lookup(e, name, &id, &crev, NULL);
	if (rc == 0)
		rc = lease_record(e, name, id, owner, crev, &made);
	return rc < 0 ? rc : made ? 0 : -ENOENT;
}

/* etcd deletes the lease's keys, side keys and record in one revision. */
static int etcd_lease_revoke(void *b, const char *name, int64_t now,
			     uint64_t *revision)
{
	struct etcd_backend *e = b;
	json_t *resp = NULL;
	int64_t id;
	int rc;

	*revision = 0;
	rc = lease_lookup(e, name, &id, NULL, NULL);
	if (rc == 0)
		rc = lease_call(e, "/v3/lease/revoke", id, false, false, &resp);
	if (rc == 0) {
		*revision = header_rev(resp);
		note_commit(e, *revision);
	}
	json_decref(resp);
	return rc;
}

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The store keys among the etcd keys of a timetolive answer, sorted. */
static int lease_keys_of(struct etcd_backend *e, json_t *keys,
			 ustate_lease_info *li)
{
	const char *path;
	size_t i, n, nk = json_array_size(keys);
	json_t *k;
	char *raw;

	if (!nk)
		return 0;
	li->keys = calloc(nk, sizeof(*li->keys));
	if (!li->keys)
		return -ENOMEM;
	json_array_foreach(keys, i, k)
	{
		json_t *one_key = json_pack("{s:O}", "k", k);

		raw = NULL;
		if (!one_key || ustate_etcd_get_bytes(one_key, "k", &raw, &n)) {
			json_decref(one_key);
			return -ENOMEM;
		}
		json_decref(one_key);
		if (classify(e, raw, n, &path) == 0 &&
		    ustate_key_valid(path) == 0) {
			li->keys[li->nkeys] = strdup(path);
			if (!li->keys[li->nkeys]) {
				free(raw);
				return -ENOMEM;
			}
			li->nkeys++;
		}
		free(raw);
	}
	qsort(li->keys, li->nkeys, sizeof(*li->keys), key_cmp);
	if (!li->nkeys) {
		free(li->keys);
		li->keys = NULL;
	}
	return 0;
}

/* etcd tells the time left in whole seconds. */
static int etcd_lease_get(void *b, const char *name, int64_t now,
			  ustate_lease_info **out)
{
	struct etcd_backend *e = b;
	ustate_lease_info *li = NULL;
	struct lease_owner own;
	json_t *resp = NULL;
	int64_t id, left;
	int rc;

	rc = lease_lookup(e, name, &id, NULL, &own);
	if (rc == 0)
		rc = lease_call(e, "/v3/lease/timetolive", id, true, true,
				&resp);
	if (rc < 0)
		return rc;
	left = get_i64(resp, "TTL");
	if (left < 0) {
		rc = -ENOENT;
		goto out;
	}
	li = ustate_lease_info_new(name, get_i64(resp, "grantedTTL"),
				   now + left * 1000, now);
	if (li)
		ustate_lease_info_owner(li, own.owned ? &own.m : NULL);
	rc = li ? lease_keys_of(e, json_object_get(resp, "keys"), li) : -ENOMEM;
	if (rc == 0) {
		*out = li;
		li = NULL;
	}
out:
	ustate_lease_info_free(li);
	json_decref(resp);
	return rc;
}

/* The records under //l/ are the live leases (each goes with its lease). */
static int etcd_lease_list(void *b, int64_t now, char ***names, size_t *n)
{
	struct etcd_backend *e = b;
	struct names l = {0};
	uint64_t rev = 0;
	size_t i;
	int rc;

	/* The paths of the records, "/" + NAME, sorted. */
	rc = scan_range(e, 'l', "/", 1, "0", 1, SIZE_MAX, &rev, &l);
	for (i = 0; rc == 0 && i < l.n; i++)
		memmove(l.v[i], l.v[i] + 1, strlen(l.v[i]));
	if (rc < 0) {
		ustate_list_free(l.v, l.n);
		return rc;
	}
	*names = l.n ? l.v : NULL;
	if (!l.n)
		free(l.v);
	*n = l.n;
	return 0;
}

static const struct ustate_backend_ops etcd_ops = {
	.version = USTATE_BACKEND_VERSION,
	.name = "etcd",
	.close = etcd_close,
	.get = etcd_get,
	.key_version = etcd_key_version,
	.scan = etcd_scan,
	.txn = etcd_txn,
	.revision = etcd_revision,
	.history = etcd_history,
	.export = etcd_export,
	/* etcd numbers versions itself: a restore cannot set them. */
	.restore = NULL,
	.backup = etcd_backup,
	.check = etcd_check,
	/* etcd compacts the whole cluster, other prefixes too: not ours. */
	.compact = NULL,
	.meta_get = etcd_meta_get,
	.xattrs = etcd_xattrs,
	.node = etcd_node,
	.watch_from = etcd_watch_from,
	.lease_grant = etcd_lease_grant,
	.lease_owner = etcd_lease_owner,
	.get_many = etcd_get_many,
	.lease_keepalive = etcd_lease_keepalive,
	.lease_revoke = etcd_lease_revoke,
	.lease_get = etcd_lease_get,
	.lease_list = etcd_lease_list,
	/* etcd expires its leases itself. */
	.lease_expire = NULL,
	.barrier = etcd_barrier,
	.connected = etcd_connected,
};

/*
 * Split "HOST:PORT[,HOST:PORT...]/PREFIX" (after the scheme) into
 * endpoints (new strings in *hosts, *n of them) and *prefix (new).
 */
static int source_parse(const char *rest, char ***hosts, size_t *n,
			char **prefix)
{
	const char *slash = strchr(rest, '/'), *p, *end, *colon;
	char **v = NULL, *h;
	size_t cnt = 0, len;
	long port;

	*hosts = NULL;
	*n = 0;
	*prefix = NULL;
	if (!slash || slash == rest)
		return -EINVAL;
	for (p = rest; p < slash; p = end + 1) {
		end = memchr(p, ',', (size_t)(slash - p));
		if (!end)
			end = slash;
		len = (size_t)(end - p);
		if (!len)
			goto bad;
		colon = p[0] == '[' ? memchr(p, ']', len) : p;
		if (!colon)
			goto bad;
		colon = memchr(colon, ':', len - (size_t)(colon - p));
		if (!colon || colon + 1 >= end || colon == p)
			goto bad;
		port = strtol(colon + 1, &h, 10);
		if (h != end || port < 1 || port > 65535)
			goto bad;
		h = strndup(p, len);
		if (!h)
			goto nomem;
		{
			char **g = realloc(v, (cnt + 1) * sizeof(*v));

			if (!g) {
				free(h);
				goto nomem;
			}
			v = g;
		}
		v[cnt++] = h;
		if (end == slash)
			break;
	}
	/* A list that ends in a comma names an empty endpoint. */
	if (slash[-1] == ',')
		goto bad;
	if (ustate_key_valid(slash) < 0)
		goto bad;
	*prefix = strdup(slash);
	if (!*prefix)
		goto nomem;
	*hosts = v;
	*n = cnt;
	return 0;
bad:
	ustate_list_free(v, cnt);
	return -EINVAL;
nomem:
	ustate_list_free(v, cnt);
	return -ENOMEM;
}

int ustate_etcd_backend_open(void **b, const struct ustate_backend_ops **ops,
			     const char *source, ustate_options *opts)
{
	static const ustate_options def = USTATE_OPTIONS_INIT;
	struct ustate_etcd_config cfg = {0};
	struct etcd_backend *e;
	char **hosts = NULL, *prefix = NULL;
	size_t nhosts = 0, i;
	uint64_t rev;
	bool tls;
	int rc;

	tls = !strncmp(source, "etcds://", 8);
	if (!tls && strncmp(source, "etcd://", 7)) {
		rc = -EINVAL;
		goto fail_parse;
	}
	rc = source_parse(source + (tls ? 8 : 7), &hosts, &nhosts, &prefix);
	if (rc < 0)
		goto fail_parse;
	if (opts->max_value_size == def.max_value_size)
		opts->max_value_size = DEFAULT_MAX_VALUE;
	if (opts->max_txn_ops == def.max_txn_ops)
		opts->max_txn_ops = DEFAULT_MAX_TXN_OPS;

	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto fail_hosts;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->qlock, NULL);
	pthread_cond_init(&e->qcond, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&e->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	e->opts = *opts;
	/* The strings are the caller's; the transport keeps copies. */
	e->opts.tls_ca = e->opts.tls_cert = e->opts.tls_key = NULL;
	e->opts.user = e->opts.password = NULL;
	e->prefix = prefix;
	prefix = NULL;
	e->plen = strlen(e->prefix);
	e->source = strdup(source);
	e->cap = opts->history < (1u << 20) ? (size_t)opts->history : 1u << 20;
	e->ring = calloc(e->cap, sizeof(*e->ring));
	e->oldest = 1;
	if (!e->source || !e->ring) {
		rc = -ENOMEM;
		goto fail;
	}
	cfg.endpoints = (const char *const *)hosts;
	cfg.nendpoints = nhosts;
	cfg.tls = tls;
	cfg.request_timeout = opts->request_timeout;
	cfg.dial_timeout = opts->dial_timeout;
	cfg.tls_ca = opts->tls_ca;
	cfg.tls_cert = opts->tls_cert;
	cfg.tls_key = opts->tls_key;
	cfg.user = opts->user;
	cfg.password = opts->password;
	cfg.log = &e->opts;
	e->opts.replica = NULL;
	rc = ustate_etcd_conn_new(&e->conn, &cfg);
	if (rc == 0)
		rc = ustate_etcd_stream_new(&e->st, e->conn);
	if (rc < 0)
		goto fail;
	/* Fail fast: one linearizable read, which needs a quorum. */
	rc = ustate_etcd_authenticate(e->conn);
	if (rc == 0)
		rc = etcd_revision(e, &rev);
	/* A TLS session that broke: refused credentials, or the network. */
	if (rc < 0 && rc != -EACCES &&
	    ustate_etcd_tls_refused(e->conn) == -EACCES)
		rc = -EACCES;
	if (rc < 0) {
		char why[512];

		ustate_etcd_last_error(e->conn, why, sizeof(why));
		ustate_log(&e->opts, LOG_ERR, "%s: %s: %s (%s)", source,
			   rc == -EACCES   ? "etcd refused the credentials"
			   : rc == -EINVAL ? "etcd refused the request"
					   : "no etcd endpoint answered",
			   why, strerror(-rc));
		goto fail;
	}
	if (opts->replica) {
		char *lo = ekey(e, 0, "/");
		char *hi = lo ? range_end(lo, strlen(lo)) : NULL;

		rc = lo && hi ? ustate_etcd_mirror_open(&e->mirror, e->conn, lo,
							hi, opts->replica,
							&e->opts)
			      : -ENOMEM;
		free(lo);
		free(hi);
		if (rc < 0)
			goto fail;
	}
	for (i = 0; i < nhosts; i++)
		free(hosts[i]);
	free(hosts);
	*b = e;
	*ops = &etcd_ops;
	return 0;

fail:
	etcd_close(e);
fail_hosts:
	for (i = 0; i < nhosts; i++)
		free(hosts[i]);
	free(hosts);
	free(prefix);
	return rc;
fail_parse:
	ustate_log(opts, LOG_ERR,
		   "%s: not an etcd SOURCE (etcd://HOST:PORT[,HOST:PORT...]"
		   "/PREFIX, PREFIX a key)",
		   source);
	return rc;
}
