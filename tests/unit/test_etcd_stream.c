/* SPDX-License-Identifier: MIT */
/*
 * This file tests the etcd watch-stream reader (core/etcd_stream.c) on
 * streams that a real etcd 3.4.23 sent through its HTTP/JSON gateway. The
 * splitter gets each recording whole, cut in two at every point, byte by
 * byte, in random pieces (fixed seed) and in the HTTP chunks the server
 * used, also with "\r\n" endings and blank lines put between the
 * messages: every way must give exactly the recording's messages, in
 * order, each NUL-terminated, and what a stream ends without "\n" comes
 * out of finish. Then its limits (max_line, callback errors, bad
 * arguments), and the parser on the recorded results and errors, on
 * every gRPC and HTTP code it maps and on lines that are not messages.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "etcd_http_i.h"
#include "etcd_stream_i.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/*
 * The recordings, as record_watch.sh printed them: watches of the prefix
 * /a/ (see its header for what each one did). rec_events_chunks are the
 * sizes of the HTTP chunks of rec_events: one a message, except the long
 * one, whose "\n" came in a chunk of its own.
 * Recorded by tests/etcd/record_watch.sh, etcd Version: 3.4.23.
 */
static const char rec_events[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"1\",\"raf"
	"t_term\":\"2\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"2\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EveA==\",\"crea"
	"te_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"v"
	"alue\":\"aGVsbG8=\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"3\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EveQ==\",\"crea"
	"te_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\",\"v"
	"alue\":\"d2l0aCAicXVvdGVzIiBhbmQKbmV3bGluZQ==\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"5\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EveA==\",\"crea"
	"te_revision\":\"2\",\"mod_revision\":\"5\",\"version\":\"2\",\"v"
	"alue\":\"YWdhaW4=\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"6\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EvdDE=\",\"crea"
	"te_revision\":\"6\",\"mod_revision\":\"6\",\"version\":\"1\",\"v"
	"alue\":\"b25l\"}},{\"kv\":{\"key\":\"L2EvdDI=\",\"create_revisio"
	"n\":\"6\",\"mod_revision\":\"6\",\"version\":\"1\",\"value\":\"d"
	"Hdv\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"7\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EvYmln\",\"crea"
	"te_revision\":\"7\",\"mod_revision\":\"7\",\"version\":\"1\",\"v"
	"alue\":\"YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJ"
	"iYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJiYmI=\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"8\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\""
	":\"L2EveA==\",\"mod_revision\":\"8\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"9\",\"raf"
	"t_term\":\"2\"},\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\""
	":\"L2EvYmln\",\"mod_revision\":\"9\"}},{\"type\":\"DELETE\",\"kv"
	"\":{\"key\":\"L2EvdDE=\",\"mod_revision\":\"9\"}},{\"type\":\"DE"
	"LETE\",\"kv\":{\"key\":\"L2EvdDI=\",\"mod_revision\":\"9\"}},{\""
	"type\":\"DELETE\",\"kv\":{\"key\":\"L2EveQ==\",\"mod_revision\":"
	"\"9\"}}]}}\n";
static const size_t rec_events_chunks[] = {
	141, 237, 265, 237, 329, 2896, 1, 198, 381,
};
static const char rec_compacted[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"11\",\"ra"
	"ft_term\":\"2\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"raft_term\":\"2\"},\"c"
	"anceled\":true,\"compact_revision\":\"11\"}}\n";
static const char rec_killed[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"11\",\"ra"
	"ft_term\":\"2\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"12\",\"ra"
	"ft_term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2Evaw==\",\"cre"
	"ate_revision\":\"12\",\"mod_revision\":\"12\",\"version\":\"1\","
	"\"value\":\"MQ==\"}}]}}\n";
static const char rec_stopped[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"12\",\"ra"
	"ft_term\":\"3\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"12529038473961494653\""
	",\"member_id\":\"15632494125465384962\",\"revision\":\"13\",\"ra"
	"ft_term\":\"3\"},\"events\":[{\"kv\":{\"key\":\"L2Evcw==\",\"cre"
	"ate_revision\":\"13\",\"mod_revision\":\"13\",\"version\":\"1\","
	"\"value\":\"MQ==\"}}]}}\n"
	"{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"tra"
	"nsport is closing\",\"http_status\":\"Service Unavailable\"}}";
/*
 * Recorded by hand the same way (curl -sN, etcd 3.4.23): a watch whose
 * member was stopped with SIGTERM at another moment ends in CANCELLED,
 * HTTP 408; a watch request whose key is not base64 gets, before any
 * streaming, the body of a unary error (HTTP 500).
 */
static const char rec_cancelled[] =
	"{\"result\":{\"header\":{\"cluster_id\":\"4843220296332891944\","
	"\"member_id\":\"5463020914563897009\",\"revision\":\"8\",\"raft_"
	"term\":\"2\"},\"created\":true}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"4843220296332891944\","
	"\"member_id\":\"5463020914563897009\",\"revision\":\"8\",\"raft_"
	"term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EvdDE=\",\"create"
	"_revision\":\"8\",\"mod_revision\":\"8\",\"version\":\"1\",\"val"
	"ue\":\"b25l\"}},{\"kv\":{\"key\":\"L2EvdDI=\",\"create_revision"
	"\":\"8\",\"mod_revision\":\"8\",\"version\":\"1\",\"value\":\"dH"
	"dv\"}}]}}\n"
	"{\"result\":{\"header\":{\"cluster_id\":\"4843220296332891944\","
	"\"member_id\":\"5463020914563897009\",\"revision\":\"9\",\"raft_"
	"term\":\"2\"},\"events\":[{\"kv\":{\"key\":\"L2EvcQ==\",\"create"
	"_revision\":\"9\",\"mod_revision\":\"9\",\"version\":\"1\",\"val"
	"ue\":\"MQ==\"}}]}}\n"
	"{\"error\":{\"grpc_code\":1,\"http_code\":408,\"message\":\"grpc"
	": the client connection is closing\",\"http_status\":\"Request T"
	"imeout\"}}";
static const char rec_refused[] =
	"{\"error\":\"illegal base64 data at input byte 0\",\"message\":"
	"\"illegal base64 data at input byte 0\",\"code\":2}";

/* One recording, and what a splitter must make of it. */
struct recording {
	const char *name;
	const char *text;
	size_t len;
	size_t lines;	  /* the messages that end in "\n" */
	size_t at_finish; /* 1: the stream ends in a message without "\n" */
	const char *first_revision; /* header.revision of the first */
};

/* A recording's name, text and length. */
#define REC_TEXT(n) #n, rec_##n, sizeof(rec_##n) - 1

static const struct recording recordings[] = {
	{REC_TEXT(events), .lines = 8, .first_revision = "1"},
	{REC_TEXT(compacted), .lines = 2, .first_revision = "11"},
	{REC_TEXT(killed), .lines = 2, .first_revision = "11"},
	{REC_TEXT(stopped), .lines = 2, .at_finish = 1, .first_revision = "12"},
	{REC_TEXT(cancelled), .lines = 3, .at_finish = 1,
	 .first_revision = "8"},
	{REC_TEXT(refused), .lines = 0, .at_finish = 1},
};

#define MAX_LINES 16

/* What the callback saw: a copy of each line. */
struct collected {
	size_t n;
	char *line[MAX_LINES];
	size_t len[MAX_LINES];
	size_t fail_at; /* return fail_rc from this call (1-based); 0: never */
	int fail_rc;
	int ret; /* what the other calls return */
};

static int collect(void *arg, const char *line, size_t len)
{
	struct collected *c = arg;

	assert_true(c->n < MAX_LINES);
	/* NUL-terminated, and no NUL inside: strlen sees the whole line. */
	assert_int_equal(line[len], '\0');
	assert_int_equal(strlen(line), len);
	c->line[c->n] = malloc(len + 1);
	assert_non_null(c->line[c->n]);
	memcpy(c->line[c->n], line, len + 1);
	c->len[c->n] = len;
	c->n++;
	if (c->n == c->fail_at)
		return c->fail_rc;
	return c->ret;
}

static void collected_clear(struct collected *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->line[i]);
	c->n = 0;
}

/* The messages of a text, split naively: lines without "\n" and "\r",
 * blank ones left out, the unterminated rest last. */
struct expected {
	size_t n;
	const char *p[MAX_LINES];
	size_t len[MAX_LINES];
};

static void expected_of(const struct recording *r, struct expected *e)
{
	const char *p = r->text, *end = r->text + r->len, *nl;
	size_t n;

	e->n = 0;
	while (p < end) {
		nl = memchr(p, '\n', end - p);
		n = (nl ? nl : end) - p;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > 0) {
			assert_true(e->n < MAX_LINES);
			e->p[e->n] = p;
			e->len[e->n] = n;
			e->n++;
		}
		p = nl ? nl + 1 : end;
	}
	/* The recording is what its table entry says it is. */
	assert_int_equal(e->n, r->lines + r->at_finish);
}

static void check_lines(const struct collected *c, const struct expected *e,
			const char *what)
{
	size_t i;

	if (c->n != e->n)
		fail_msg("%s: %zu lines, expected %zu", what, c->n, e->n);
	for (i = 0; i < e->n; i++) {
		if (c->len[i] != e->len[i] ||
		    memcmp(c->line[i], e->p[i], e->len[i]) != 0)
			fail_msg(
				"%s: line %zu differs: [%.60s...] (%zu bytes), "
				"expected [%.60s...] (%zu bytes)",
				what, i, c->line[i], c->len[i], e->p[i],
				e->len[i]);
	}
}

/* The bytes after the last "\n" of the first n bytes of text. */
static size_t tail_after_newline(const char *text, size_t n)
{
	size_t i = n;

	while (i > 0 && text[i - 1] != '\n')
		i--;
	return n - i;
}

/*
 * Feed text in the pieces that the sizes give (the last one up to the
 * end), then finish; the splitter must take every byte.
 */
static void feed_pieces(const char *text, size_t len, const size_t *sizes,
			size_t n_sizes, size_t max_line, struct collected *c)
{
	struct ustate_etcd_splitter sp;
	size_t off = 0, i, n;

	assert_int_equal(ustate_etcd_splitter_init(&sp, max_line), 0);
	for (i = 0; off < len; i++) {
		n = i < n_sizes ? sizes[i] : len - off;
		if (n > len - off)
			n = len - off;
		assert_int_equal(ustate_etcd_splitter_feed(&sp, text + off, n,
							   collect, c),
				 0);
		off += n;
		assert_int_equal(ustate_etcd_splitter_pending(&sp),
				 tail_after_newline(text, off));
	}
	assert_int_equal(ustate_etcd_splitter_finish(&sp, collect, c), 0);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 0);
	ustate_etcd_splitter_free(&sp);
}

/* Large enough for every recording, as the backend would set it. */
#define MAX_LINE (64 * 1024)

/*
 * text with "\r\n" for "\n", blank lines (empty, "\r\n", spaces and tabs)
 * before the first message and after each, and a last blank line without
 * its "\n"; the caller frees it.
 */
static char *with_blank_lines(const struct recording *r, size_t *len)
{
	static const char blanks[] = "\r\n\n \t \r\n\t\n";
	size_t i, n = 0, newlines = 0;
	char *out;

	for (i = 0; i < r->len; i++)
		newlines += r->text[i] == '\n';
	out = malloc(3 + r->len + newlines * (sizeof(blanks) - 2) + 2);
	assert_non_null(out);
	memcpy(out + n, "\n\r\n", 3);
	n += 3;
	for (i = 0; i < r->len; i++) {
		if (r->text[i] != '\n') {
			out[n++] = r->text[i];
			continue;
		}
		memcpy(out + n, blanks, sizeof(blanks) - 1);
		n += sizeof(blanks) - 1;
	}
	if (r->at_finish) {
		/* The message without "\n" stays last: it must end the text. */
		*len = n;
		return out;
	}
	memcpy(out + n, " \t", 2);
	n += 2;
	*len = n;
	return out;
}

/*
 * Feed every recording and its variant with blank lines in the pieces
 * that plan gives for rounds 0, 1, ... (until rounds, or until it says
 * SIZE_MAX), checking the lines of each; returns the number of feeds.
 */
typedef size_t (*plan_fn)(const char *text, size_t len, size_t *sizes,
			  size_t max, size_t round);

static size_t run_plan(plan_fn plan, size_t rounds, const char *what)
{
	size_t r, k, len, variant_len, n, cap, feeds = 0;
	struct collected c = {0};
	struct expected e;
	size_t *sizes;
	char *variant, buf[128];
	const char *text;
	int v;

	for (r = 0; r < ARRAY_SIZE(recordings); r++) {
		expected_of(&recordings[r], &e);
		variant = with_blank_lines(&recordings[r], &variant_len);
		for (v = 0; v < 2; v++) {
			text = v ? variant : recordings[r].text;
			len = v ? variant_len : recordings[r].len;
			cap = len + 1;
			sizes = malloc(cap * sizeof(*sizes));
			assert_non_null(sizes);
			for (k = 0; k < rounds; k++) {
				n = plan(text, len, sizes, cap, k);
				if (n == SIZE_MAX)
					break;
				feed_pieces(text, len, sizes, n, MAX_LINE, &c);
				snprintf(buf, sizeof(buf),
					 "%s%s, %s, round %zu",
					 recordings[r].name,
					 v ? " with blank lines" : "", what, k);
				check_lines(&c, &e, buf);
				collected_clear(&c);
				feeds++;
			}
			free(sizes);
		}
		free(variant);
	}
	return feeds;
}

/* Round k: two pieces, cut at byte k (0 to len); SIZE_MAX past the end. */
static size_t plan_split(const char *text, size_t len, size_t *sizes,
			 size_t max, size_t k)
{
	if (k > len)
		return SIZE_MAX;
	sizes[0] = k;
	return 1;
}

static size_t plan_bytes(const char *text, size_t len, size_t *sizes,
			 size_t max, size_t k)
{
	size_t i;

	for (i = 0; i < len; i++)
		sizes[i] = 1;
	return len;
}

/* xorshift64*, seeded once per run_plan round: the same pieces each run. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Pieces of 1 to 16 bytes or of 1 to 1024, at random. */
static size_t plan_random(const char *text, size_t len, size_t *sizes,
			  size_t max, size_t k)
{
	uint64_t s = 0x9e3779b97f4a7c15ULL + k;
	size_t n = 0, off = 0;

	while (off < len && n < max) {
		sizes[n] = 1 + rng_next(&s) % (rng_next(&s) % 2 ? 16 : 1024);
		off += sizes[n++];
	}
	return n;
}

static void test_whole(void **state)
{
	(void)state;
	run_plan(plan_split, 1, "whole"); /* round 0: "" and everything */
}

static void test_every_split(void **state)
{
	size_t r, len, want = 0;
	char *variant;

	(void)state;
	for (r = 0; r < ARRAY_SIZE(recordings); r++) {
		variant = with_blank_lines(&recordings[r], &len);
		free(variant);
		want += recordings[r].len + 1 + len + 1;
	}
	/* Every cut from 0 to len bytes, of both texts of each recording. */
	assert_int_equal(run_plan(plan_split, SIZE_MAX, "split"), want);
}

static void test_byte_by_byte(void **state)
{
	(void)state;
	run_plan(plan_bytes, 1, "byte by byte");
}

static void test_random_pieces(void **state)
{
	(void)state;
	assert_int_equal(run_plan(plan_random, 200, "random pieces"),
			 2 * 200 * ARRAY_SIZE(recordings));
}

/* The HTTP chunks etcd sent: every one ended in "\n" but one, whose "\n"
 * came alone; all add up to the recording. */
static void test_server_chunks(void **state)
{
	struct collected c = {0};
	struct expected e;
	size_t i, sum = 0;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(rec_events_chunks); i++)
		sum += rec_events_chunks[i];
	assert_int_equal(sum, sizeof(rec_events) - 1);
	assert_true(ARRAY_SIZE(rec_events_chunks) > recordings[0].lines);
	expected_of(&recordings[0], &e);
	feed_pieces(rec_events, sizeof(rec_events) - 1, rec_events_chunks,
		    ARRAY_SIZE(rec_events_chunks), MAX_LINE, &c);
	check_lines(&c, &e, "events in the server's chunks");
	collected_clear(&c);
}

/* What each recording holds, through the parser: the messages really are
 * what record_watch.sh made etcd send. */
static void test_recorded_content(void **state)
{
	static const char *const revisions[] = {"1", "2", "3", "5",
						"6", "7", "8", "9"};
	static const size_t events[] = {0, 1, 1, 1, 2, 1, 1, 4};
	struct expected e;
	json_t *res;
	char *msg;
	size_t i;

	(void)state;
	expected_of(&recordings[0], &e);
	for (i = 0; i < e.n; i++) {
		assert_int_equal(
			ustate_etcd_stream_parse(e.p[i], e.len[i], &res, &msg),
			0);
		assert_null(msg);
		assert_string_equal(
			json_string_value(json_object_get(
				json_object_get(res, "header"), "revision")),
			revisions[i]);
		assert_int_equal(
			json_array_size(json_object_get(res, "events")),
			events[i]);
		assert_int_equal(json_is_true(json_object_get(res, "created")),
				 i == 0);
		json_decref(res);
	}
	/* compacted: created, then canceled at the compacted revision. */
	expected_of(&recordings[1], &e);
	assert_int_equal(ustate_etcd_stream_parse(e.p[1], e.len[1], &res, NULL),
			 0);
	assert_true(json_is_true(json_object_get(res, "canceled")));
	assert_string_equal(
		json_string_value(json_object_get(res, "compact_revision")),
		"11");
	json_decref(res);
	/* Every first message is created, at the revision recorded. */
	for (i = 0; i < ARRAY_SIZE(recordings); i++) {
		if (!recordings[i].first_revision)
			continue;
		expected_of(&recordings[i], &e);
		assert_int_equal(
			ustate_etcd_stream_parse(e.p[0], e.len[0], &res, NULL),
			0);
		assert_true(json_is_true(json_object_get(res, "created")));
		assert_string_equal(
			json_string_value(json_object_get(
				json_object_get(res, "header"), "revision")),
			recordings[i].first_revision);
		json_decref(res);
	}
}

/* The error lines that end the recordings, and the refused request. */
static void test_recorded_errors(void **state)
{
	static const struct {
		const struct recording *r;
		int rc;
		const char *msg;
	} cases[] = {
		{&recordings[3], -ENOTCONN, "transport is closing"},
		{&recordings[4], -ENOTCONN,
		 "grpc: the client connection is closing"},
		{&recordings[5], -EIO, "illegal base64 data at input byte 0"},
	};
	struct expected e;
	json_t *res = (json_t *)&res; /* a sentinel: must stay */
	char *msg;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		expected_of(cases[i].r, &e);
		assert_int_equal(ustate_etcd_stream_parse(e.p[e.n - 1],
							  e.len[e.n - 1], &res,
							  &msg),
				 cases[i].rc);
		assert_ptr_equal(res, (json_t *)&res);
		assert_non_null(msg);
		assert_string_equal(msg, cases[i].msg);
		free(msg);
		/* msg is optional. */
		assert_int_equal(ustate_etcd_stream_parse(e.p[e.n - 1],
							  e.len[e.n - 1], &res,
							  NULL),
				 cases[i].rc);
	}
}

/* Blank lines and "\r\n": nothing for the callback, no "\r" in a line. */
static void test_blank_and_crlf(void **state)
{
	static const char blank[] = "\n\n\r\n \t \r\n\t\n\r\r\n";
	static const char lines[] = "{}\r\na\r\r\n b \n";
	struct ustate_etcd_splitter sp;
	struct collected c = {0};

	(void)state;
	assert_int_equal(ustate_etcd_splitter_init(&sp, 16), 0);
	assert_int_equal(ustate_etcd_splitter_feed(
				 &sp, blank, sizeof(blank) - 1, collect, &c),
			 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 0);
	/* Only the last "\r" goes; one inside stays part of the line. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, lines, strlen(lines),
						   collect, &c),
			 0);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.line[0], "{}");
	assert_string_equal(c.line[1], "a\r");
	assert_string_equal(c.line[2], " b ");
	collected_clear(&c);
	/* A "\r" at the end of a piece waits for what follows. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "x\r", 2, collect, &c),
			 0);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 2);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "y\n", 2, collect, &c),
			 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.line[0], "x\ry");
	collected_clear(&c);
	/* A blank partial line at the end is no message either. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, " \r", 2, collect, &c),
			 0);
	assert_int_equal(ustate_etcd_splitter_finish(&sp, collect, &c), 0);
	assert_int_equal(c.n, 0);
	ustate_etcd_splitter_free(&sp);
}

/* A line of max_line bytes passes ("\r" not counted), one more does not;
 * the error sticks until reset. */
static void test_max_line(void **state)
{
	struct ustate_etcd_splitter sp;
	struct collected c = {0};

	(void)state;
	assert_int_equal(ustate_etcd_splitter_init(&sp, 10), 0);
	assert_int_equal(ustate_etcd_splitter_feed(&sp,
						   "0123456789\n0123456789\r\n",
						   23, collect, &c),
			 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.len[0], 10);
	assert_int_equal(c.len[1], 10);
	collected_clear(&c);
	/* The buffer never grows past max_line + 2 (the "\r", the NUL). */
	assert_true(sp.cap <= 10 + 2);
	/* Ten bytes and a "\r" held: it may still be a "\r\n". */
	assert_int_equal(
		ustate_etcd_splitter_feed(&sp, "0123456789\r", 11, collect, &c),
		0);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 11);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "\n", 1, collect, &c),
			 0);
	assert_int_equal(c.n, 1);
	collected_clear(&c);
	/* ... but not when something else follows the "\r". */
	assert_int_equal(
		ustate_etcd_splitter_feed(&sp, "0123456789\r", 11, collect, &c),
		0);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "x", 1, collect, &c),
			 -EMSGSIZE);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 0);
	/* Unusable until reset: feed and finish say so again. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "ok\n", 3, collect, &c),
			 -EMSGSIZE);
	assert_int_equal(ustate_etcd_splitter_finish(&sp, collect, &c),
			 -EMSGSIZE);
	assert_int_equal(c.n, 0);
	/* finish reset it; a line too long in one piece, then across two. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "0123456789a\n", 12,
						   collect, &c),
			 -EMSGSIZE);
	ustate_etcd_splitter_reset(&sp);
	assert_int_equal(
		ustate_etcd_splitter_feed(&sp, "012345", 6, collect, &c), 0);
	assert_int_equal(
		ustate_etcd_splitter_feed(&sp, "6789a", 5, collect, &c),
		-EMSGSIZE);
	assert_int_equal(c.n, 0);
	ustate_etcd_splitter_reset(&sp);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "ok\n", 3, collect, &c),
			 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.line[0], "ok");
	collected_clear(&c);
	ustate_etcd_splitter_free(&sp);
}

/* On the recording: a limit one byte under its longest message stops
 * the feed there, after the messages before it; at its length all pass. */
static void test_max_line_recorded(void **state)
{
	struct ustate_etcd_splitter sp;
	struct collected c = {0};
	struct expected e;
	size_t i, longest = 0, at = 0;

	(void)state;
	expected_of(&recordings[0], &e);
	for (i = 0; i < e.n; i++) {
		if (e.len[i] > longest) {
			longest = e.len[i];
			at = i;
		}
	}
	assert_true(longest > 2000); /* the 2000-byte value */
	assert_int_equal(ustate_etcd_splitter_init(&sp, longest - 1), 0);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, rec_events,
						   sizeof(rec_events) - 1,
						   collect, &c),
			 -EMSGSIZE);
	assert_int_equal(c.n, at);
	collected_clear(&c);
	ustate_etcd_splitter_free(&sp);

	feed_pieces(rec_events, sizeof(rec_events) - 1, NULL, 0, longest, &c);
	check_lines(&c, &e, "events at max_line = its longest message");
	collected_clear(&c);
}

/* A negative return from the callback stops the feed at that line and
 * comes back; other values do not stop it. */
static void test_callback_error(void **state)
{
	struct ustate_etcd_splitter sp;
	struct collected c = {.fail_at = 3, .fail_rc = -ECANCELED};
	struct expected e;

	(void)state;
	expected_of(&recordings[0], &e);
	assert_int_equal(ustate_etcd_splitter_init(&sp, MAX_LINE), 0);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, rec_events,
						   sizeof(rec_events) - 1,
						   collect, &c),
			 -ECANCELED);
	assert_int_equal(c.n, 3);
	assert_memory_equal(c.line[2], e.p[2], e.len[2]);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 0);
	collected_clear(&c);

	/* From finish too, for the message without "\n". */
	ustate_etcd_splitter_reset(&sp);
	c = (struct collected){.fail_at = 3, .fail_rc = -EBADMSG};
	assert_int_equal(ustate_etcd_splitter_feed(&sp, rec_stopped,
						   sizeof(rec_stopped) - 1,
						   collect, &c),
			 0);
	assert_int_equal(ustate_etcd_splitter_finish(&sp, collect, &c),
			 -EBADMSG);
	assert_int_equal(c.n, 3);
	assert_int_equal(ustate_etcd_splitter_pending(&sp), 0);
	collected_clear(&c);

	/* A positive return goes on, and is not returned. */
	c = (struct collected){.ret = 1};
	assert_int_equal(ustate_etcd_splitter_feed(&sp, rec_events,
						   sizeof(rec_events) - 1,
						   collect, &c),
			 0);
	assert_int_equal(c.n, e.n);
	collected_clear(&c);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, rec_stopped,
						   sizeof(rec_stopped) - 1,
						   collect, &c),
			 0);
	assert_int_equal(ustate_etcd_splitter_finish(&sp, collect, &c), 0);
	assert_int_equal(c.n, 3);
	collected_clear(&c);
	ustate_etcd_splitter_free(&sp);
}

static void test_bad_arguments(void **state)
{
	struct ustate_etcd_splitter sp = {0};
	struct collected c = {0};

	(void)state;
	assert_int_equal(ustate_etcd_splitter_init(NULL, 10), -EINVAL);
	assert_int_equal(ustate_etcd_splitter_init(&sp, 0), -EINVAL);
	assert_int_equal(ustate_etcd_splitter_init(&sp, SIZE_MAX), -EINVAL);
	/* Zeroed (never initialised) is not a splitter. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "a\n", 2, collect, &c),
			 -EINVAL);
	assert_int_equal(ustate_etcd_splitter_init(&sp, 10), 0);
	assert_int_equal(ustate_etcd_splitter_feed(NULL, "a\n", 2, collect, &c),
			 -EINVAL);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, NULL, 2, collect, &c),
			 -EINVAL);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "a\n", 2, NULL, &c),
			 -EINVAL);
	assert_int_equal(ustate_etcd_splitter_finish(&sp, NULL, &c), -EINVAL);
	assert_int_equal(ustate_etcd_splitter_finish(NULL, collect, &c),
			 -EINVAL);
	/* Nothing to feed is fine, even at NULL. */
	assert_int_equal(ustate_etcd_splitter_feed(&sp, NULL, 0, collect, &c),
			 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(ustate_etcd_splitter_pending(NULL), 0);
	ustate_etcd_splitter_free(&sp);
	ustate_etcd_splitter_free(&sp); /* twice: as if zeroed after one */
	ustate_etcd_splitter_free(NULL);
	ustate_etcd_splitter_reset(NULL);
	assert_int_equal(ustate_etcd_splitter_feed(&sp, "a\n", 2, collect, &c),
			 -EINVAL);
}

/* Every code the parser maps, in the stream's error object. */
static void test_error_codes(void **state)
{
	static const struct {
		const char *error;
		int rc;
	} cases[] = {
		{"\"grpc_code\":14,\"http_code\":503", -ENOTCONN},
		{"\"grpc_code\":4,\"http_code\":504", -ETIMEDOUT},
		{"\"grpc_code\":7,\"http_code\":403", -EACCES},
		{"\"grpc_code\":16,\"http_code\":401", -EACCES},
		/* OUT_OF_RANGE: a future revision, unless "compacted". */
		{"\"grpc_code\":11,\"http_code\":400", -EINVAL},
		{"\"grpc_code\":8,\"http_code\":429", -ENOSPC},
		/* CANCELED: how a member that goes down ends its streams. */
		{"\"grpc_code\":1,\"http_code\":408", -ENOTCONN},
		{"\"grpc_code\":2,\"http_code\":500", -EIO},
		{"\"grpc_code\":3,\"http_code\":400", -EINVAL},
		{"\"grpc_code\":0", -EIO},
		/* The gRPC code wins over the HTTP one. */
		{"\"grpc_code\":2,\"http_code\":503", -EIO},
		/* Without one, the HTTP status decides. */
		{"\"http_code\":503", -ENOTCONN},
		{"\"http_code\":504", -ETIMEDOUT},
		{"\"http_code\":401", -EACCES},
		{"\"http_code\":403", -EACCES},
		{"\"http_code\":500", -EIO},
		{"\"grpc_code\":\"14\",\"http_code\":504", -ETIMEDOUT},
		{"", -EIO},
	};
	char line[256], *msg;
	json_t *res;
	size_t i;
	int n;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		n = snprintf(line, sizeof(line),
			     "{\"error\":{%s%s\"message\":\"case %zu\"}}",
			     cases[i].error, *cases[i].error ? "," : "", i);
		assert_true(n > 0 && (size_t)n < sizeof(line));
		if (ustate_etcd_stream_parse(line, n, &res, &msg) !=
		    cases[i].rc)
			fail_msg("%s: not %d", line, cases[i].rc);
		assert_non_null(msg);
		snprintf(line, sizeof(line), "case %zu", i);
		assert_string_equal(msg, line);
		free(msg);
	}
	/* No message: "". */
	assert_int_equal(
		ustate_etcd_stream_parse("{\"error\":{}}", 12, &res, &msg),
		-EIO);
	assert_string_equal(msg, "");
	free(msg);
	/* The unary body: its "code", its "message", else its "error". */
	assert_int_equal(
		ustate_etcd_stream_parse("{\"error\":\"e\",\"code\":14}", 23,
					 &res, &msg),
		-ENOTCONN);
	assert_string_equal(msg, "e");
	free(msg);
	/* An error wins over a result. */
	assert_int_equal(ustate_etcd_stream_parse(
				 "{\"result\":{},\"error\":{\"grpc_code\":4}}",
				 37, &res, &msg),
			 -ETIMEDOUT);
	free(msg);
	assert_int_equal(ustate_etcd_errno(-1, -1, NULL, false), -EIO);
	assert_int_equal(ustate_etcd_errno(14, -1, NULL, false), -ENOTCONN);
	/* A write an error does not say was refused: outcome unknown. */
	assert_int_equal(ustate_etcd_errno(14, -1, "leader changed", true),
			 -ETIMEDOUT);
	assert_int_equal(
		ustate_etcd_errno(14, -1, "etcdserver: no leader", true),
		-ENOTCONN);
	assert_int_equal(ustate_etcd_errno(3, -1,
					   "etcdserver: too many operations "
					   "in txn request",
					   true),
			 -E2BIG);
	assert_int_equal(ustate_etcd_errno(-1, 504, NULL, false), -ETIMEDOUT);
	/* etcd's ErrGRPCRequestTooManyRequests: refused, not "no space". */
	assert_int_equal(
		ustate_etcd_errno(8, -1, "etcdserver: too many requests", true),
		-ENOTCONN);
	assert_int_equal(ustate_etcd_errno(8, -1,
					   "etcdserver: mvcc: database space "
					   "exceeded",
					   true),
			 -ENOSPC);
	/* No token where auth is on: credentials, not a bad request. */
	assert_int_equal(ustate_etcd_errno(3, -1,
					   "etcdserver: user name is empty",
					   false),
			 -EACCES);
}

/* Lines that are no message: -EPROTO, *out untouched, *msg NULL. */
static void test_not_messages(void **state)
{
	static const char *const lines[] = {
		"",
		"garbage",
		"{",
		"{\"result\":{}",
		"{\"result\":{}} trailing",
		"{\"result\":{}}{\"result\":{}}",
		"[{\"result\":{}}]",
		"\"result\"",
		"42",
		"null",
		"{}",
		"{\"results\":{}}",
		"{\"result\":null}",
		"{\"result\":[]}",
		"{\"result\":\"x\"}",
		"{\"error\":null}",
		"{\"error\":42}",
		"{\"error\":[]}",
	};
	json_t *res = (json_t *)&res;
	char *msg = (char *)&msg;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(lines); i++) {
		if (ustate_etcd_stream_parse(lines[i], strlen(lines[i]), &res,
					     &msg) != -EPROTO)
			fail_msg("[%s]: not -EPROTO", lines[i]);
		assert_ptr_equal(res, (json_t *)&res);
		assert_null(msg);
		msg = (char *)&msg;
	}
	/* Only len bytes count: what follows them is not read. */
	assert_int_equal(
		ustate_etcd_stream_parse("{\"result\":{\"a\":1}}garbage", 18,
					 &res, &msg),
		0);
	assert_null(msg);
	assert_int_equal(json_integer_value(json_object_get(res, "a")), 1);
	json_decref(res);
	assert_int_equal(ustate_etcd_stream_parse(NULL, 0, &res, NULL),
			 -EINVAL);
	assert_int_equal(ustate_etcd_stream_parse("{}", 2, NULL, NULL),
			 -EINVAL);
}

/* The result is a new reference, alive after the line is gone. */
static void test_result_reference(void **state)
{
	char *line = strdup("{\"result\":{\"created\":true}}");
	json_t *res;

	(void)state;
	assert_non_null(line);
	assert_int_equal(
		ustate_etcd_stream_parse(line, strlen(line), &res, NULL), 0);
	memset(line, 'x', strlen(line));
	free(line);
	assert_true(json_is_true(json_object_get(res, "created")));
	assert_int_equal(res->refcount, 1);
	json_decref(res);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_random_pieces),
		cmocka_unit_test(test_server_chunks),
		cmocka_unit_test(test_recorded_content),
		cmocka_unit_test(test_recorded_errors),
		cmocka_unit_test(test_blank_and_crlf),
		cmocka_unit_test(test_max_line),
		cmocka_unit_test(test_max_line_recorded),
		cmocka_unit_test(test_callback_error),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_error_codes),
		cmocka_unit_test(test_not_messages),
		cmocka_unit_test(test_result_reference),
	};

	return cmocka_run_group_tests_name("etcd_stream", tests, NULL, NULL);
}
