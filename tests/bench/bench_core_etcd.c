/* SPDX-License-Identifier: MIT */
/*
 * This file implements the etcd rows of scripts/bench-core: ops/s of get,
 * set, compare-and-set and a 4-op transaction through libustate on the etcd
 * backend, at 1 and 16 threads, each next to the same operation made
 * directly on etcd's HTTP/JSON gateway by a minimal client, on the same
 * etcd in the same run, as a ratio (target >= 0.8x); and, to split that
 * ratio, the direct client sending the very request the backend sends.
 *
 *   usage: bench_core_etcd [-q] [-o OP]... [-p ETCD_PID] [-r ROUNDS]
 *                          [-t SECS] HOST:PORT
 *
 * -o OP (get, set, cas or txn) keeps only the rows of those operations;
 * -p names etcd's process, whose CPU time the second table then shows.
 *
 * Each operation is made three ways, each under its own prefix of the
 * etcd (all of /core/ is deleted first):
 *
 *   libustate  the library, ustate_open("etcd://HOST:PORT/core/u"): one
 *              handle shared by the threads (its transport pools one
 *              libcurl handle, so one kept-alive connection, per thread);
 *   direct     what a minimal etcd client sends for the operation: a get
 *              is one range; a set one put; a CAS one Txn of a VERSION
 *              compare and a put; the transaction one Txn of that compare
 *              and three puts;
 *   mapped     the direct client sending the request core/etcd.c sends,
 *              operation for operation (checked against strace of the
 *              library): a get is a Txn of two ranges (the value, its side
 *              keys); a set a Txn whose compare asks whether the key is
 *              new, writing the value and updated_at in either branch (and
 *              created_at on success, after a read of the version on
 *              failure); a CAS a Txn of the compare, the put and the put
 *              of updated_at (the compare decides that the key exists);
 *              the transaction the same for the task key, and for each
 *              node key the put, updated_at's put and a nested Txn that
 *              writes created_at if the key is new; a Txn with a compare
 *              reads each key it writes in its failure branch.
 *
 * mapped / direct is what the side keys cost (etcd's work and the bytes);
 * libustate / mapped is what the library costs as a client (libcurl,
 * jansson, the mapping's own work); their product is libustate / direct,
 * the row with the target.
 *
 * The direct client is bench_http.c's plain socket rather than libcurl:
 * the reference is the cheapest client of the same protocol (HTTP/1.1
 * keep-alive, one connection per thread, JSON bodies written with
 * snprintf, keys and values in base64, replies checked with strstr and not
 * parsed), so that everything libustate adds, its choice of libcurl
 * included, shows in its ratio instead of being paid on both sides. The
 * threads of all three run in this one process, so the client's CPU and
 * etcd's share the same cores, as they would for a real orchestrator on
 * the etcd machine.
 *
 * A second table gives the CPU time of an operation, each way: of this
 * process (getrusage(), so all its threads: the client's own cost) and of
 * etcd (its utime and stime in /proc, with -p). On a shared machine these
 * move less than the rates, and they tell where a ratio comes from: the
 * client's CPU, or etcd's work on the request.
 *
 * The figures: 100-byte values. set: each thread writes its own 100 keys
 * in turn, all written once before (so a set finds its key and takes
 * the failure branch of its Txn, and a nested Txn writes no created_at:
 * the steady state). get: one key
 * that all threads read, with its side keys. CAS: each thread its own key.
 * The transaction is an orchestrator's move of a task: CHECK_VERSION of
 * the thread's task key, and SETs of it and of two node keys. Each round
 * runs the three for SECS each (0.5 s; -q: 0.2 s and 3 rounds instead of
 * 7), in an order that rotates from round to round; a figure is the median
 * of the rounds, a ratio the median of the rounds' ratios, with their
 * range. A thread counts over its own time and the figure sums their
 * rates. It is a benchmark, not a test: it asserts only that the
 * operations succeed.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_i.h"
#include "ustate.h"

#define MAX_ROUNDS 15
#define MAX_THREADS 16
#define KEYS 100   /* a set's keys per thread */
#define WARMUP 3   /* operations of a thread before the common start */
#define BODY 16384 /* the largest request body */

enum { OP_GET, OP_SET, OP_CAS, OP_TXN, NOPS };
enum { V_LIB, V_DIRECT, V_MAPPED, NV };

static const char *const prefix[NV] = {"/core/u", "/core/d", "/core/m"};
static const char *const way[NV] = {"libustate", "direct", "mapped"};
static const char *const op_names[NOPS] = {"get", "set", "cas",
					   "txn (check + 3 sets)"};
/* What each way sends, per operation. */
static const char *const sent[NV][NOPS] = {
	{"libustate", "libustate", "libustate", "libustate"},
	{"1 range", "1 put", "Txn: cmp, put", "Txn: cmp, 3 puts"},
	{"Txn: 2 ranges", "Txn: cmp, 3 ops", "Txn: cmp, 2 ops",
	 "Txn: cmp, 8 ops"},
};

static const char *addr;
static ustate *store;
static int etcd_pid; /* -p: the server, for its CPU time */

struct job {
	int op, v, threads, warmup;
	double secs;
	pthread_barrier_t go;
};

struct worker {
	int w;
	struct job *job;
	struct bench_http *h;	/* the direct client's, opened at first use */
	long seq[NV][NOPS];	/* operations made */
	uint64_t ver[NV][NOPS]; /* CAS, txn: the version the next expects */
	double rate;		/* of the last job */
	long ops;		/* ... and its operations, timed */
	char value[BENCH_VALUE_LEN];
	char body[BODY], reply[16384];
	size_t len; /* of body */
	pthread_t thread;
};

static struct worker workers[MAX_THREADS];

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_core_etcd: %s: %s\n", what, ustate_strerror(rc));
	exit(1);
}

/* ---- the direct client's requests ------------------------------------- */

static void add(struct worker *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append to the body being built. */
static void add(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(w->body + w->len, BODY - w->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= BODY - w->len)
		bench_die("request body too long", E2BIG);
	w->len += n;
}

/* Append the base64 of an etcd key: PREFIX, "//k" for a side key, the
 * store key, then suffix. */
static void add_key(struct worker *w, int v, int side, const char *key,
		    const char *suffix)
{
	char k[256];
	int n;

	n = snprintf(k, sizeof(k), "%s%s%s%s", prefix[v], side ? "//k" : "",
		     key, suffix);
	if (w->len + (n + 2) / 3 * 4 + 1 > BODY)
		bench_die("request body too long", E2BIG);
	bench_b64(w->body + w->len, k, n);
	w->len += strlen(w->body + w->len);
}

static void add_value(struct worker *w, const void *val, size_t n)
{
	if (w->len + (n + 2) / 3 * 4 + 1 > BODY)
		bench_die("request body too long", E2BIG);
	bench_b64(w->body + w->len, val, n);
	w->len += strlen(w->body + w->len);
}

/* {"request_range":...} of a key, or of a side key's range of tags. */
static void add_range(struct worker *w, int v, const char *key, int sides,
		      int keys_only)
{
	add(w, "{\"request_range\":{\"key\":\"");
	add_key(w, v, sides, key, sides ? "\t" : "");
	if (sides) {
		add(w, "\",\"range_end\":\"");
		add_key(w, v, sides, key, "\n"); /* "\t" + 1 */
	}
	add(w, "\"%s}}", keys_only ? ",\"keys_only\":true" : "");
}

/* {"request_put":...} of a key (suffix "") or of a side key ("\tu"). */
static void add_put(struct worker *w, int v, const char *key,
		    const char *suffix, const void *val, size_t n)
{
	add(w, "{\"request_put\":{\"key\":\"");
	add_key(w, v, suffix[0] != '\0', key, suffix);
	add(w, "\",\"value\":\"");
	add_value(w, val, n);
	add(w, "\"}}");
}

/* A compare of key's version with ver. */
static void add_cmp(struct worker *w, int v, const char *key, uint64_t ver)
{
	add(w, "{\"key\":\"");
	add_key(w, v, 0, key, "");
	add(w,
	    "\",\"target\":\"VERSION\",\"result\":\"EQUAL\",\"version\":"
	    "\"%llu\"}",
	    (unsigned long long)ver);
}

/* The backend's nested Txn: created_at, written only if key is new. */
static void add_created(struct worker *w, int v, const char *key,
			const char *now)
{
	add(w, "{\"request_txn\":{\"compare\":[");
	add_cmp(w, v, key, 0);
	add(w, "],\"success\":[");
	add_put(w, v, key, "\tc", now, strlen(now));
	add(w, "],\"failure\":[");
	add_range(w, v, key, 0, 1);
	add(w, "]}}");
}

/* The backend's write of key: created_at if new, the value, updated_at;
 * nest and put are the two halves, which a Txn of several keys orders
 * nested Txns first. */
static void add_write(struct worker *w, int v, const char *key, const char *now)
{
	add_put(w, v, key, "", w->value, sizeof(w->value));
	add(w, ",");
	add_put(w, v, key, "\tu", now, strlen(now));
}

/* POST the body built to path; the reply must hold want. */
static void post(struct worker *w, const char *path, const char *want)
{
	int status;

	if (!w->h)
		w->h = bench_http_open(addr);
	status = bench_http_post(w->h, path, w->body, w->reply,
				 sizeof(w->reply));
	if (status != 200 || !strstr(w->reply, want)) {
		fprintf(stderr, "bench_core_etcd: %s: HTTP %d: %s\n", path,
			status, w->reply);
		exit(1);
	}
	w->len = 0;
}

/* ---- the operations --------------------------------------------------- */

static void op_get(struct worker *w, int v)
{
	ustate_entry *e;
	int rc;

	switch (v) {
	case V_LIB:
		rc = ustate_get(store, "/hot/k", &e);
		if (rc < 0)
			die("get", rc);
		ustate_entry_free(e);
		break;
	case V_DIRECT:
		add(w, "{\"key\":\"");
		add_key(w, v, 0, "/hot/k", "");
		add(w, "\"}");
		/* The value is there: a miss would be cheaper, and wrong. */
		post(w, "/v3/kv/range", "\"count\":\"1\"");
		break;
	case V_MAPPED:
		add(w, "{\"success\":[");
		add_range(w, v, "/hot/k", 0, 0);
		add(w, ",");
		add_range(w, v, "/hot/k", 1, 0);
		add(w, "]}");
		post(w, "/v3/kv/txn", "\"count\":\"2\"");
		break;
	}
}

static void op_set(struct worker *w, int v, long i)
{
	char key[64], now[24];
	int rc;

	snprintf(key, sizeof(key), "/w%02d/k%03ld", w->w, i % KEYS);
	bench_value(w->value, key, i);
	switch (v) {
	case V_LIB:
		rc = ustate_set(store, key, w->value, sizeof(w->value), NULL);
		if (rc < 0)
			die("set", rc);
		break;
	case V_DIRECT:
		add(w, "{\"key\":\"");
		add_key(w, v, 0, key, "");
		add(w, "\",\"value\":\"");
		add_value(w, w->value, sizeof(w->value));
		add(w, "\"}");
		post(w, "/v3/kv/put", "\"revision\"");
		break;
	case V_MAPPED:
		/* The key exists: the failure branch runs (no "succeeded"). */
		snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		add(w, "{\"compare\":[");
		add_cmp(w, v, key, 0);
		add(w, "],\"success\":[");
		add_write(w, v, key, now);
		add(w, ",");
		add_put(w, v, key, "\tc", now, strlen(now));
		add(w, "],\"failure\":[");
		add_range(w, v, key, 0, 1);
		add(w, ",");
		add_write(w, v, key, now);
		add(w, "]}");
		post(w, "/v3/kv/txn", "\"response_put\"");
		break;
	}
}

static void op_cas(struct worker *w, int v, long i)
{
	uint64_t *ver = &w->ver[v][OP_CAS];
	char key[64], now[24];
	int rc;

	snprintf(key, sizeof(key), "/w%02d/cas", w->w);
	bench_value(w->value, key, i);
	switch (v) {
	case V_LIB:
		rc = ustate_compare_and_set(store, key, *ver, w->value,
					    sizeof(w->value), ver);
		if (rc < 0)
			die("cas", rc);
		return;
	case V_DIRECT:
		add(w, "{\"compare\":[");
		add_cmp(w, v, key, *ver);
		add(w, "],\"success\":[");
		add_put(w, v, key, "", w->value, sizeof(w->value));
		add(w, "]}");
		break;
	case V_MAPPED:
		snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		add(w, "{\"compare\":[");
		add_cmp(w, v, key, *ver);
		add(w, "],\"success\":[");
		add_write(w, v, key, now);
		add(w, "],\"failure\":[");
		add_range(w, v, key, 0, 1);
		add(w, "]}");
		break;
	}
	/* A conflict would be an error: the key is this thread's alone. */
	post(w, "/v3/kv/txn", "\"succeeded\":true");
	(*ver)++;
}

static void op_txn(struct worker *w, int v, long i)
{
	uint64_t *ver = &w->ver[v][OP_TXN], vers[4];
	char keys[3][64], now[24];
	ustate_txn_result res = {.versions = vers};
	ustate_op ops[4];
	int rc, k;

	snprintf(keys[0], sizeof(keys[0]), "/w%02d/task", w->w);
	snprintf(keys[1], sizeof(keys[1]), "/w%02d/node-a", w->w);
	snprintf(keys[2], sizeof(keys[2]), "/w%02d/node-b", w->w);
	/* One value for the three: the bytes, not their content, cost. */
	bench_value(w->value, keys[0], i);
	switch (v) {
	case V_LIB:
		ops[0] = (ustate_op){.type = USTATE_OP_CHECK_VERSION,
				     .key = keys[0],
				     .version = *ver};
		for (k = 0; k < 3; k++)
			ops[k + 1] = (ustate_op){.type = USTATE_OP_SET,
						 .key = keys[k],
						 .value = w->value,
						 .value_len = sizeof(w->value)};
		rc = ustate_transaction(store, ops, 4, &res);
		if (rc < 0)
			die("transaction", rc);
		*ver = vers[1];
		return;
	case V_DIRECT:
		add(w, "{\"compare\":[");
		add_cmp(w, v, keys[0], *ver);
		add(w, "],\"success\":[");
		for (k = 0; k < 3; k++) {
			add_put(w, v, keys[k], "", w->value, sizeof(w->value));
			add(w, k < 2 ? "," : "]}");
		}
		break;
	case V_MAPPED:
		snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		add(w, "{\"compare\":[");
		add_cmp(w, v, keys[0], *ver);
		add(w, "],\"success\":[");
		/* The compare decides that the task key exists. */
		for (k = 1; k < 3; k++) {
			add_created(w, v, keys[k], now);
			add(w, ",");
		}
		for (k = 0; k < 3; k++) {
			add_write(w, v, keys[k], now);
			add(w, k < 2 ? "," : "],\"failure\":[");
		}
		for (k = 0; k < 3; k++) {
			add_range(w, v, keys[k], 0, 1);
			add(w, k < 2 ? "," : "]}");
		}
		break;
	}
	post(w, "/v3/kv/txn", "\"succeeded\":true");
	(*ver)++;
}

static void op_run(struct worker *w, int op, int v)
{
	long i = w->seq[v][op]++;

	switch (op) {
	case OP_GET:
		op_get(w, v);
		break;
	case OP_SET:
		op_set(w, v, i);
		break;
	case OP_CAS:
		op_cas(w, v, i);
		break;
	case OP_TXN:
		op_txn(w, v, i);
		break;
	}
}

/* ---- the harness ------------------------------------------------------ */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct job *j = w->job;
	double t0, t, end;
	long n = 0;
	int i;

	for (i = 0; i < j->warmup; i++)
		op_run(w, j->op, j->v);
	pthread_barrier_wait(&j->go);
	w->rate = 0;
	w->ops = 0;
	if (j->secs <= 0)
		return NULL;
	t0 = bench_now();
	end = t0 + j->secs;
	do {
		op_run(w, j->op, j->v);
		n++;
		t = bench_now();
	} while (t < end);
	w->rate = n / (t - t0);
	w->ops = n;
	return NULL;
}

/* CPU seconds this process used, all its threads. */
static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds the etcd process used (clock ticks), or 0 without -p. */
static double etcd_cpu(void)
{
	unsigned long ut, st;
	char path[64], buf[1024], *p;
	size_t n;
	FILE *f;

	if (!etcd_pid)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", etcd_pid);
	f = fopen(path, "r");
	if (!f)
		bench_die(path, errno);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After "(comm)": state, 5 ints, flags, 4 fault counts, then
	 * utime and stime (proc(5)). */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%lu %lu",
			 &ut, &st) != 2)
		bench_die("etcd's /proc/PID/stat", EPROTO);
	return (double)(ut + st) / sysconf(_SC_CLK_TCK);
}

/* What a run measured: the sum of the threads' rates, and the CPU time
 * per operation of this process and of etcd (0 without -p), in us. */
struct fig {
	double rate, client_us, etcd_us;
};

/* Run op the way v on threads threads, each warmup times, then all for
 * secs (0: none). */
static struct fig run(int op, int v, int threads, int warmup, double secs)
{
	struct job j = {.op = op,
			.v = v,
			.threads = threads,
			.warmup = warmup,
			.secs = secs};
	struct fig f = {0};
	double c0, e0;
	long ops = 0;
	int t, err;

	/* Ours too: the CPU clocks start once every thread is warm. */
	pthread_barrier_init(&j.go, NULL, threads + 1);
	for (t = 0; t < threads; t++) {
		workers[t].job = &j;
		err = pthread_create(&workers[t].thread, NULL, worker_main,
				     &workers[t]);
		if (err)
			bench_die("pthread_create", err);
	}
	pthread_barrier_wait(&j.go);
	c0 = self_cpu();
	e0 = etcd_cpu();
	for (t = 0; t < threads; t++) {
		pthread_join(workers[t].thread, NULL);
		f.rate += workers[t].rate;
		ops += workers[t].ops;
	}
	if (ops) {
		f.client_us = (self_cpu() - c0) / ops * 1e6;
		f.etcd_us = (etcd_cpu() - e0) / ops * 1e6;
	}
	pthread_barrier_destroy(&j.go);
	return f;
}

/* ---- the table -------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double w[MAX_ROUNDS];

	memcpy(w, v, n * sizeof(*w));
	qsort(w, n, sizeof(*w), cmp_double);
	return n % 2 ? w[n / 2] : (w[n / 2 - 1] + w[n / 2]) / 2;
}

/* A row: a (ours) against b (the reference), round by round. */
static void row(const char *label, int threads, const char *aname,
		const double *a, const char *bname, const double *b, int rounds,
		const char *target)
{
	double q[MAX_ROUNDS], lo = 0, hi = 0, ratio, t;
	const char *verdict = "";
	char range[32];
	int r;

	for (r = 0; r < rounds; r++) {
		q[r] = a[r] / b[r];
		if (r == 0 || q[r] < lo)
			lo = q[r];
		if (r == 0 || q[r] > hi)
			hi = q[r];
	}
	ratio = median(q, rounds);
	snprintf(range, sizeof(range), "%.2f-%.2fx", lo, hi);
	if (sscanf(target, ">= %lfx", &t) == 1)
		verdict = ratio >= t ? "met" : "NOT MET";
	printf("| %-20s | %7d | %-15s | %7.0f | %-16s | %7.0f | %5.2fx "
	       "| %-11s | %-7s | %-7s |\n",
	       label, threads, aname, median(a, rounds), bname,
	       median(b, rounds), ratio, range, target, verdict);
	fflush(stdout);
}

/* Put /hot/k, the key every get reads, each way (with side keys but for
 * direct). */
static void hot_key(void)
{
	struct worker *w = &workers[0];
	char now[24];
	int rc;

	bench_value(w->value, "/hot/k", 0);
	rc = ustate_set(store, "/hot/k", w->value, sizeof(w->value), NULL);
	if (rc < 0)
		die("set /hot/k", rc);
	add(w, "{\"key\":\"");
	add_key(w, V_DIRECT, 0, "/hot/k", "");
	add(w, "\",\"value\":\"");
	add_value(w, w->value, sizeof(w->value));
	add(w, "\"}");
	post(w, "/v3/kv/put", "\"revision\"");
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	add(w, "{\"success\":[");
	add_put(w, V_MAPPED, "/hot/k", "", w->value, sizeof(w->value));
	add(w, ",");
	add_put(w, V_MAPPED, "/hot/k", "\tc", now, strlen(now));
	add(w, ",");
	add_put(w, V_MAPPED, "/hot/k", "\tu", now, strlen(now));
	add(w, "]}");
	post(w, "/v3/kv/txn", "\"succeeded\":true");
}

/* One quantity of a cell's rounds: 0 the rate, 1 and 2 the CPU times. */
static void pick(double *out, const struct fig *f, int rounds, int what)
{
	int r;

	for (r = 0; r < rounds; r++)
		out[r] = what == 0   ? f[r].rate
			 : what == 1 ? f[r].client_us
				     : f[r].etcd_us;
}

int main(int argc, char **argv)
{
	static const int nthreads[2] = {1, MAX_THREADS};
	static struct fig f[NOPS][2][NV][MAX_ROUNDS];
	static const int order[NV] = {V_DIRECT, V_MAPPED, V_LIB};
	ustate_options o = USTATE_OPTIONS_INIT;
	double secs = 0.5, a[NV][MAX_ROUNDS];
	int rounds = 7, c, op, i, r, k, v, t, rc;
	unsigned want = 0;
	char src[128];
	struct worker *w = &workers[0];

	while ((c = getopt(argc, argv, "o:p:qr:t:")) != -1) {
		switch (c) {
		case 'o':
			for (op = 0; op < NOPS; op++)
				if (!strncmp(optarg, op_names[op],
					     strlen(optarg)))
					break;
			if (!optarg[0] || op == NOPS)
				goto usage;
			want |= 1u << op;
			break;
		case 'p':
			etcd_pid = bench_int_arg(optarg, 1, 1 << 30);
			break;
		case 'q':
			rounds = 3;
			secs = 0.2;
			break;
		case 'r':
			rounds = bench_int_arg(optarg, 1, MAX_ROUNDS);
			break;
		case 't':
			secs = bench_secs_arg(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind + 1 != argc || !strchr(argv[optind], ':')) {
	usage:
		fprintf(stderr, "usage: bench_core_etcd [-q] [-o OP]... "
				"[-p ETCD_PID] [-r ROUNDS] [-t SECS] "
				"HOST:PORT\n");
		return 2;
	}
	if (!want)
		want = (1u << NOPS) - 1;
	addr = argv[optind];
	for (i = 0; i < MAX_THREADS; i++)
		workers[i].w = i;

	/* A clean slate: versions start at 0, as the CAS and txn expect. */
	add(w, "{\"key\":\"");
	add_value(w, "/core/", 6);
	add(w, "\",\"range_end\":\"");
	add_value(w, "/core0", 6);
	add(w, "\"}");
	post(w, "/v3/kv/deleterange", "\"header\"");
	snprintf(src, sizeof(src), "etcd://%s%s", addr, prefix[V_LIB]);
	rc = ustate_open(&store, src, &o);
	if (rc < 0)
		die(src, rc);
	hot_key();

	printf("| %-20s | %7s | %-15s | %7s | %-16s | %7s | %6s | %-11s "
	       "| %-7s | %-7s |\n",
	       "etcd operation", "threads", "measure", "ops/s", "reference",
	       "ops/s", "ratio", "range", "target", "");
	printf("|----------------------|---------|-----------------|---------|"
	       "------------------|---------|--------|-------------|---------|"
	       "---------|\n");
	for (op = 0; op < NOPS; op++) {
		if (!(want & (1u << op)))
			continue;
		/* Every key each thread will write, written once each way. */
		for (v = 0; v < NV; v++)
			run(op, v, MAX_THREADS, op == OP_SET ? KEYS : 1, 0);
		for (t = 0; t < 2; t++) {
			for (r = 0; r < rounds; r++)
				for (k = 0; k < NV; k++) {
					v = (k + r) % NV;
					f[op][t][v][r] = run(op, v, nthreads[t],
							     WARMUP, secs);
				}
			for (v = 0; v < NV; v++)
				pick(a[v], f[op][t][v], rounds, 0);
			row(op_names[op], nthreads[t], sent[V_LIB][op],
			    a[V_LIB], sent[V_DIRECT][op], a[V_DIRECT], rounds,
			    ">= 0.8x");
			row("  side keys", nthreads[t], sent[V_MAPPED][op],
			    a[V_MAPPED], sent[V_DIRECT][op], a[V_DIRECT],
			    rounds, "");
			row("  client", nthreads[t], sent[V_LIB][op], a[V_LIB],
			    sent[V_MAPPED][op], a[V_MAPPED], rounds, "");
		}
	}

	printf("\nCPU time per operation, us (medians): the client is this "
	       "process, all its\nthreads; etcd %s.\ndirect, mapped: the "
	       "direct client's two requests, as above.\n\n",
	       etcd_pid ? "the server's process (from its clock ticks)"
			: "not measured (no -p)");
	printf("| %-20s | %7s |", "etcd operation", "threads");
	for (k = 0; k < NV; k++)
		printf(" %9s client | %9s etcd |", way[order[k]],
		       way[order[k]]);
	printf("\n|----------------------|---------|");
	for (k = 0; k < NV; k++)
		printf("------------------|----------------|");
	printf("\n");
	for (op = 0; op < NOPS; op++) {
		if (!(want & (1u << op)))
			continue;
		for (t = 0; t < 2; t++) {
			printf("| %-20s | %7d |", op_names[op], nthreads[t]);
			for (k = 0; k < NV; k++) {
				v = order[k];
				pick(a[0], f[op][t][v], rounds, 1);
				pick(a[1], f[op][t][v], rounds, 2);
				printf(" %16.1f | %14.0f |",
				       median(a[0], rounds),
				       median(a[1], rounds));
			}
			printf("\n");
		}
	}
	ustate_close(store);
	for (i = 0; i < MAX_THREADS; i++)
		bench_http_close(workers[i].h);
	return 0;
}
