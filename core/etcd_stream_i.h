/* SPDX-License-Identifier: MIT */
/*
 * This file declares the watch-stream reader of the etcd backend
 * (etcd_stream.c): a splitter that cuts the bytes of etcd's HTTP/JSON
 * gateway stream, arriving in chunks that do not follow its messages,
 * into lines, and the parser of one such line ({"result":{...}} or
 * {"error":{...}}) with the mapping of gateway errors to errno.
 */
#ifndef USTATE_ETCD_STREAM_I_H
#define USTATE_ETCD_STREAM_I_H

#include <stddef.h>

#include <jansson.h>

/*
 * A splitter: zero it or not, then ustate_etcd_splitter_init(). Its
 * fields are public so that it can be embedded; only the functions below
 * change them.
 */
struct ustate_etcd_splitter {
	char *buf;  /* the partial line, then a NUL; NULL until needed */
	size_t len; /* bytes of the partial line in buf */
	size_t cap; /* bytes allocated at buf */
	size_t max; /* the longest line accepted (init's max_line) */
	int err;    /* 0, or the error that made the splitter unusable */
};

/*
 * Make sp an empty splitter that accepts lines of up to max_line bytes
 * (not counting the "\n" that ends a line, nor a "\r" before it). It
 * allocates nothing yet: a buffer grows as lines need it, up to
 * max_line + 2 bytes.
 *
 * Returns 0, or -EINVAL when sp is NULL, max_line is 0 or larger than
 * SIZE_MAX / 2.
 */
int ustate_etcd_splitter_init(struct ustate_etcd_splitter *sp, size_t max_line);

/* Free the buffer of sp (not sp itself); sp is then as if zeroed. NULL is
 * a no-op. */
void ustate_etcd_splitter_free(struct ustate_etcd_splitter *sp);

/*
 * The callback of feed and finish: line is one line of the stream,
 * without its "\n" and a "\r" before it, len bytes long, followed by a
 * NUL (so json_loads can parse it too). It stays valid only until the
 * callback returns. A negative return stops the splitter there and is
 * returned to the caller; any other value goes on.
 */
typedef int (*ustate_etcd_line_fn)(void *arg, const char *line, size_t len);

/*
 * Feed the len bytes at buf, the next piece of the stream (any piece:
 * half a line, several lines, a lone "\r"). Calls fn(arg, line, len) once
 * per line that the piece completes, in order, and keeps the bytes of a
 * line still incomplete for the next call. Lines that are empty or hold
 * only spaces, tabs and "\r" are skipped.
 *
 * Returns 0 once every byte is taken, or:
 *   the first negative value fn returned: the splitter stops at that
 *   line and the bytes of buf after it are not taken (the stream cannot
 *   be resumed: reset before feeding another);
 *   -EMSGSIZE when a line grows longer than max_line;
 *   -ENOMEM when its buffer cannot grow;
 *   -EINVAL when sp, or buf with len > 0, or fn is NULL, or sp is not
 *   initialised (or freed).
 * After -EMSGSIZE or -ENOMEM bytes of the stream are lost: the splitter
 * holds nothing and every feed or finish returns that code again until
 * ustate_etcd_splitter_reset().
 */
int ustate_etcd_splitter_feed(struct ustate_etcd_splitter *sp, const char *buf,
			      size_t len, ustate_etcd_line_fn fn, void *arg);

/*
 * End of the stream: hand the partial line held, if not blank, to fn as
 * the last line, then reset. etcd's gateway ends a stream it fails (say,
 * the server shuts down) with {"error":{...}} and no "\n" after it: this
 * is how a reader gets that message.
 *
 * Returns 0, the negative value fn returned, or the error (-EMSGSIZE,
 * -ENOMEM) that made the splitter unusable; -EINVAL when sp or fn is
 * NULL. The splitter is empty and usable afterwards in every case.
 */
int ustate_etcd_splitter_finish(struct ustate_etcd_splitter *sp,
				ustate_etcd_line_fn fn, void *arg);

/* Drop the partial line held and any error: sp is usable again, for a new
 * stream. Keeps its buffer. */
void ustate_etcd_splitter_reset(struct ustate_etcd_splitter *sp);

/* The number of bytes of a partial line that sp holds (0 between lines
 * and after an error). */
size_t ustate_etcd_splitter_pending(const struct ustate_etcd_splitter *sp);

/*
 * Parse one line of a watch stream (len bytes at line).
 *
 * {"result":{...}}: returns 0 and sets *out to the "result" object (a new
 * reference: the caller json_decref()s it).
 * {"error":{"grpc_code":..,"http_code":..,"message":..}} (how the stream
 * ends when it fails), or the gateway's body for a request it refused
 * before streaming, {"error":"..","code":..,"message":".."}: returns the
 * ustate_etcd_errno() of its codes (-EIO when it has none) and, when
 * msg is not NULL, sets *msg to a malloc'd copy of its message ("" when
 * it has none), which the caller frees. An "error" member wins over a
 * "result" one.
 *
 * Returns -EPROTO for anything else (not JSON, not an object, neither
 * member, a "result" that is not an object), -ENOMEM, or -EINVAL when
 * line or out is NULL. *out is set only on success; *msg, when msg is not
 * NULL, is set in every case: NULL unless the line is an error.
 */
int ustate_etcd_stream_parse(const char *line, size_t len, json_t **out,
			     char **msg);

#endif /* USTATE_ETCD_STREAM_I_H */
