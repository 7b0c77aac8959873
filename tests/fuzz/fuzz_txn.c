/* SPDX-License-Identifier: MIT */
/*
 * This file implements the fuzz target of transaction scripts (the /.txn
 * protocol, core/script.c). Each input is a script. It runs three times,
 * each on a fresh memory store holding the same few keys: fed whole, fed
 * one byte at a time, and fed in pieces of random sizes (empty ones too)
 * drawn from a seed that the input's bytes make. The target checks:
 *  - the parser gives the same result, the same reply and leaves the same
 *    store however the bytes are cut. One difference is inherent to a
 *    stream and allowed: when the piece that completes "commit" ends
 *    before other input, the transaction has run (and committed or
 *    failed) before that input arrives, where a whole run refuses the
 *    input after the commit. So a run in pieces must equal a whole run of
 *    the bytes up to the piece that ended it, and that one must equal the
 *    whole run of everything unless the whole run refused input after a
 *    commit;
 *  - ustate_script_feed() returns 0 until the end, then the result, as
 *    does ustate_script_result(); after the end every feed gets the
 *    failure again, or after a commit -EINVAL, except for newlines, which
 *    a commit ignores as it does in its own piece;
 *  - the reply is empty before the end, "ok REVISION" with the store's
 *    revision after a commit, "error LINE CODE ..." naming the result's
 *    code after a failure, and ends with a newline;
 *  - nothing is written unless the result is 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_i.h"

#define MAX_VALUE 256 /* small, so that the limits are in reach */
#define MAX_OPS 16

enum feed_mode { WHOLE, BYTES, PIECES };

/* The outcome of one run of a script. */
struct run {
	ustate *s;
	int first;  /* the first non-zero return of a feed, else 0 */
	size_t end; /* offset after the piece that returned it */
	int result; /* ustate_script_result() at the end */
	char *reply;
	size_t reply_len;
};

/* A memory store with a few keys and a directory record, always alike. */
static ustate *fresh_store(void)
{
	ustate_options o = USTATE_OPTIONS_INIT;
	ustate_op mkdir = {.type = USTATE_OP_MKDIR, .key = "/empty"};
	ustate *s;

	o.max_value_size = MAX_VALUE;
	o.max_txn_ops = MAX_OPS;
	FUZZ_CHECK(ustate_open_memory(&s, &o) == 0, "open");
	FUZZ_CHECK(ustate_set(s, "/a", "1", 1, NULL) == 0 &&
			   ustate_set(s, "/b", "hello", 5, NULL) == 0 &&
			   ustate_set(s, "/b", "hello\n", 6, NULL) == 0 &&
			   ustate_set(s, "/dir/x", "x", 1, NULL) == 0 &&
			   ustate_set(s, "/dir/y", "", 0, NULL) == 0 &&
			   ustate_set(s, "/gone", "z", 1, NULL) == 0 &&
			   ustate_delete(s, "/gone") == 0 &&
			   ustate_transaction(s, &mkdir, 1, NULL) == 0,
		   "seed the store");
	return s;
}

/* Whether data[0..len) is only newlines (or nothing). */
static int only_newlines(const uint8_t *data, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (data[i] != '\n')
			return 0;
	return 1;
}

static size_t next_piece(enum feed_mode mode, uint64_t *seed, size_t left)
{
	size_t want;

	switch (mode) {
	case WHOLE:
		return left;
	case BYTES:
		return 1;
	case PIECES:
		break;
	}
	want = fuzz_rand(seed);
	switch (want % 8) {
	case 0:
		want = 0;
		break;
	case 1:
	case 2:
	case 3:
	case 4:
		want = 1 + (want >> 8) % 4;
		break;
	case 5:
	case 6:
		want = 1 + (want >> 8) % 64;
		break;
	default:
		want = left;
	}
	return want < left ? want : left;
}

/* What a reply must look like, whoever made it. */
static void check_reply(const struct run *r)
{
	char head[64];
	const char *name;
	int len;

	if (r->result == 0) {
		FUZZ_CHECK(r->reply_len == 0, "a reply before the end");
		return;
	}
	FUZZ_CHECK(r->reply_len > 0 && r->reply[r->reply_len - 1] == '\n',
		   "reply without its final newline");
	if (r->result == 1) {
		len = snprintf(head, sizeof(head), "ok %" PRIu64 "\n",
			       ustate_revision(r->s));
		FUZZ_CHECK(r->reply_len >= (size_t)len &&
				   !memcmp(r->reply, head, (size_t)len),
			   "a commit replied \"%.*s\"", (int)r->reply_len,
			   r->reply);
		return;
	}
	/* The C library's name of the code, not the parser's own table. */
	name = strerrorname_np(-r->result);
	FUZZ_CHECK(name, "unexpected failure %d", r->result);
	FUZZ_CHECK(r->reply_len > 6 && !memcmp(r->reply, "error ", 6),
		   "a failure replied \"%.*s\"", (int)r->reply_len, r->reply);
	len = snprintf(head, sizeof(head), " %s ", name);
	FUZZ_CHECK(memmem(r->reply, r->reply_len, head, (size_t)len),
		   "failure %d, reply \"%.*s\"", r->result, (int)r->reply_len,
		   r->reply);
}

static void run_script(struct run *r, const uint8_t *data, size_t size,
		       enum feed_mode mode, uint64_t seed)
{
	ustate_script *sc;
	ustate *pristine;
	size_t off = 0, piece, len;
	const char *reply;
	int rc;

	memset(r, 0, sizeof(*r));
	r->s = fresh_store();
	FUZZ_CHECK(ustate_script_new(&sc, r->s) == 0, "script_new");
	r->end = size;
	while (off < size) {
		piece = next_piece(mode, &seed, size - off);
		rc = ustate_script_feed(sc, data + off, piece);
		off += piece;
		FUZZ_CHECK(rc <= 1, "feed returned %d", rc);
		if (!r->first) {
			r->first = rc;
			r->end = off;
			continue;
		}
		if (r->first < 0)
			FUZZ_CHECK(rc == r->first, "feed after failure %d: %d",
				   r->first, rc);
		else if (only_newlines(data + off - piece, piece))
			FUZZ_CHECK(rc == 1, "newlines after a commit: %d", rc);
		else
			FUZZ_CHECK(rc == -EINVAL, "input after a commit: %d",
				   rc);
	}
	r->result = ustate_script_result(sc);
	FUZZ_CHECK(r->result == r->first, "result %d, the feeds said %d",
		   r->result, r->first);
	reply = ustate_script_reply(sc, &len);
	r->reply = malloc(len + 1);
	FUZZ_CHECK(r->reply, "out of memory");
	memcpy(r->reply, reply, len);
	r->reply_len = len;
	ustate_script_free(sc);
	check_reply(r);

	/* Nothing is written unless the script committed. */
	if (r->result != 1) {
		pristine = fresh_store();
		fuzz_same_state(r->s, pristine, "a script that did not commit");
		ustate_close(pristine);
	}
}

static void run_free(struct run *r)
{
	ustate_close(r->s);
	free(r->reply);
}

static void same_run(const struct run *a, const struct run *b, const char *what)
{
	FUZZ_CHECK(a->result == b->result, "%s: result %d against %d", what,
		   a->result, b->result);
	FUZZ_CHECK(a->reply_len == b->reply_len &&
			   !memcmp(a->reply, b->reply, a->reply_len),
		   "%s: replies differ:\n%.*s\n--- against ---\n%.*s", what,
		   (int)a->reply_len, a->reply, (int)b->reply_len, b->reply);
	fuzz_same_state(a->s, b->s, what);
}

/*
 * A run in pieces against the whole run of the same bytes. The piece-wise
 * run must equal a whole run of the bytes up to the piece that ended it;
 * that run must equal the whole run, unless it ended at a commit that the
 * whole run refused for the input after it.
 */
static void compare(const struct run *whole, const struct run *cut,
		    const uint8_t *data, size_t size, const char *what)
{
	static const char after[] = "input after commit";
	struct run upto;

	if (cut->end == size) {
		same_run(whole, cut, what);
		return;
	}
	run_script(&upto, data, cut->end, WHOLE, 0);
	same_run(&upto, cut, what);
	if (upto.result != whole->result ||
	    upto.reply_len != whole->reply_len ||
	    memcmp(upto.reply, whole->reply, upto.reply_len)) {
		FUZZ_CHECK(whole->result == -EINVAL &&
				   memmem(whole->reply, whole->reply_len, after,
					  sizeof(after) - 1) &&
				   !only_newlines(data + cut->end,
						  size - cut->end),
			   "%s: ended with %d at byte %zu, whole %d", what,
			   cut->result, cut->end, whole->result);
	} else {
		same_run(whole, &upto, what);
	}
	run_free(&upto);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, bytes, pieces;

	run_script(&whole, data, size, WHOLE, 0);
	run_script(&bytes, data, size, BYTES, 0);
	compare(&whole, &bytes, data, size, "byte by byte");
	run_free(&bytes);
	run_script(&pieces, data, size, PIECES, fuzz_hash(data, size));
	compare(&whole, &pieces, data, size, "in pieces");
	run_free(&pieces);
	run_free(&whole);
	return 0;
}
