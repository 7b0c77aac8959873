/* SPDX-License-Identifier: MIT */
/*
 * This file declares the etcd transport: requests to etcd v3's HTTP/JSON
 * gateway (POST /v3/...) through libcurl, with failover between the
 * endpoints of a SOURCE, one deadline per request, etcd's auth token, and
 * the watch stream. It knows HTTP, JSON and etcd's error codes, nothing of
 * the store: the mapping onto the backend table is etcd.c's.
 */
#ifndef USTATE_ETCD_HTTP_I_H
#define USTATE_ETCD_HTTP_I_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "backend_i.h"

/* A connection to one etcd cluster: thread-safe. */
struct ustate_etcd_conn;

/* How to reach the cluster; every string is copied. */
struct ustate_etcd_config {
	const char *const *endpoints; /* "host:port" (IPv6 as "[::1]:p") */
	size_t nendpoints;
	bool tls;		  /* https (etcds://) */
	unsigned request_timeout; /* ms, a whole call, failover included */
	unsigned dial_timeout;	  /* ms, connecting to one endpoint */
	const char *tls_ca, *tls_cert, *tls_key;
	const char *user, *password;
	const ustate_options *log; /* borrowed for the connection's life */
};

/* Flags of ustate_etcd_call(). */
#define USTATE_ETCD_READ 0x1 /* idempotent: may be sent again elsewhere */

/**
 * ustate_etcd_conn_new() - prepare a connection (nothing is sent yet). The
 * first one loads libcurl (libcurl.so.4), which the library does not link.
 * @out: receives it; free with ustate_etcd_conn_free().
 * Return: 0; -EINVAL (no endpoint); -ENOMEM; -ELIBACC (libcurl cannot be
 * loaded: logged with the reason); -EIO (libcurl failed).
 */
int ustate_etcd_conn_new(struct ustate_etcd_conn **out,
			 const struct ustate_etcd_config *cfg);

/** ustate_etcd_conn_free() - close every connection; NULL is a no-op. */
void ustate_etcd_conn_free(struct ustate_etcd_conn *c);

/**
 * ustate_etcd_authenticate() - get an auth token when a user is set (a
 * no-op otherwise). Called by the opener, and again by a call whose token
 * the server no longer takes.
 * Return: 0; -EACCES (bad credentials); the errors of ustate_etcd_call().
 */
int ustate_etcd_authenticate(struct ustate_etcd_conn *c);

/**
 * ustate_etcd_call() - POST req (borrowed) to path ("/v3/kv/range") on the
 * current endpoint, failing over to the next ones, within the request
 * timeout.
 * @flags: USTATE_ETCD_READ for a request that may be sent twice; without
 *         it, a request is sent to another endpoint only when it surely
 *         did not reach the first (the connection was refused or never
 *         made).
 * @out:   receives the parsed response (a new reference).
 *
 * Return: 0; for a request that was not applied: -ECONNREFUSED,
 * -EHOSTUNREACH, -ENETUNREACH, -ENOTCONN (no endpoint answered, or the
 * cluster has no leader), -EACCES (credentials, permissions), -EINVAL,
 * -E2BIG (over --max-txn-ops), -EFBIG (over --max-request-bytes),
 * -ENOSPC (etcd's space quota), -ENODATA (a compacted revision); and
 * -ETIMEDOUT when the outcome is unknown: a write was sent and no answer
 * came in time, or the connection broke after it was sent. Reads get
 * -ETIMEDOUT when no endpoint answered in time; a read gives each endpoint
 * it tries an equal share of the time left, so that one that hangs does
 * not keep it from the others.
 */
int ustate_etcd_call(struct ustate_etcd_conn *c, const char *path, json_t *req,
		     unsigned flags, json_t **out);

/**
 * ustate_etcd_errno() - the errno of an error etcd answered: the one
 * function that maps etcd's error space (ustate_etcd_call() and the watch
 * stream's parser use it).
 * @grpc_code: its gRPC code, or -1 when it has none;
 * @http_code: the gateway's HTTP status, used when there is no gRPC code
 *             (-1: none);
 * @msg:       its message, which tells apart errors of one code (NULL);
 * @write:     whether it answers a write, which may then have been
 *             applied: an error that does not say it was refused is
 *             -ETIMEDOUT, "outcome unknown".
 */
int ustate_etcd_errno(long long grpc_code, long long http_code, const char *msg,
		      bool write);

/*
 * The last failure of a call, "HOST:PORT: what the server or libcurl
 * said", into buf: for messages.
 */
void ustate_etcd_last_error(struct ustate_etcd_conn *c, char *buf, size_t len);

/*
 * After a call failed on a TLS session that broke once connected (a
 * failed send or receive): whether that member refuses the client's
 * credentials. Under TLS 1.3 a member checks the client's certificate
 * after the client's side of the handshake, and its alert races the
 * reset of the connection: libcurl may report either. This asks again
 * in one handshake of TLS 1.2 at most, where the member refuses inside
 * the handshake, and sends no request. -EACCES if the member refused
 * with a certificate alert (the last error then quotes it), 0 if not, or
 * when no session broke or it cannot tell (a member of TLS 1.3 only).
 */
int ustate_etcd_tls_refused(struct ustate_etcd_conn *c);

/* The endpoint a stream should use first: the one calls last succeeded on. */
size_t ustate_etcd_current(struct ustate_etcd_conn *c);
/* Whether the last request that ended found a member (no network error). */
bool ustate_etcd_reachable(struct ustate_etcd_conn *c);
size_t ustate_etcd_nendpoints(const struct ustate_etcd_conn *c);
const char *ustate_etcd_endpoint(const struct ustate_etcd_conn *c, size_t i);

/* A watch stream on one endpoint. */
struct ustate_etcd_stream;

/*
 * Receives each message of a stream: the "result" object, borrowed for
 * the call. Return 0 to go on, or a negative errno that ends the stream
 * (ustate_etcd_stream_run() returns it).
 */
typedef int (*ustate_etcd_stream_fn)(void *arg, json_t *result);

/**
 * ustate_etcd_stream_new() - a stream handle, which can be stopped from
 * another thread. Return: 0; -ENOMEM; -EIO.
 */
int ustate_etcd_stream_new(struct ustate_etcd_stream **out,
			   struct ustate_etcd_conn *c);
void ustate_etcd_stream_free(struct ustate_etcd_stream *st);

/**
 * ustate_etcd_stream_run() - POST /v3/watch with req (a WatchRequest,
 * borrowed) to endpoint ep and hand every message to fn, until the stream
 * ends, fn fails or ustate_etcd_stream_stop() is called (then 0). Blocks;
 * one run at a time per handle. Dead connections are found by TCP
 * keepalive within a few seconds.
 * Return: 0 when stopped; fn's error; -ENOTCONN, -ECONNREFUSED,
 * -ETIMEDOUT (the connection ended or could not be made); the errno of a
 * final {"error":...} message; -EPROTO (a message that is no JSON).
 */
int ustate_etcd_stream_run(struct ustate_etcd_stream *st, size_t ep,
			   json_t *req, ustate_etcd_stream_fn fn, void *arg);

/**
 * ustate_etcd_stream_stop() - make the current run, or the next one if
 * none runs, return 0 soon; from any thread.
 */
void ustate_etcd_stream_stop(struct ustate_etcd_stream *st);

/* ---- JSON helpers of etcd's encoding ---------------------------------- */

/* A new JSON string: the base64 of len bytes. */
json_t *ustate_etcd_b64(const void *buf, size_t len);
json_t *ustate_etcd_b64s(const char *s);

/*
 * Decode the base64 string member name of obj into a new NUL-terminated
 * buffer (*out, *len); an absent member is the empty string (etcd omits
 * defaults). Return 0; -EPROTO; -ENOMEM.
 */
int ustate_etcd_get_bytes(json_t *obj, const char *name, char **out,
			  size_t *len);

/* An int64 member sent as a string (or absent: 0). */
uint64_t ustate_etcd_get_u64(json_t *obj, const char *name);

/* A decimal string for an int64 field. */
json_t *ustate_etcd_u64(uint64_t v);

#endif /* USTATE_ETCD_HTTP_I_H */
