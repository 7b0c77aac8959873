/* SPDX-License-Identifier: MIT */
/*
 * This file implements the operator commands of `ustate`: dump and restore
 * (JSON lines through jansson, binary values in base64 through libsodium's
 * strict codec), backup, check and compact, each over one libustate call,
 * and the progress bar that restore and backup draw on stderr when it is
 * a terminal.
 *
 * The dump format, one JSON object a line, in key order:
 *   {"key":K,"version":V,"created_at":T,"updated_at":T,
 *    "encoding":"utf-8"|"base64","value":TEXT[,"meta":M][,"xattrs":X]}
 *   {"dir":PATH[,"meta":M][,"xattrs":X]}   a directory record (mkdir);
 *                                         "/" first: the root's own
 *   {"lease":NAME,"ttl":SECONDS[,"meta":M]}  a lease and its owner,
 *                                         before the keys
 * where M is {"uid":U,"gid":G,"mode":"0644"[,"mtime_ns":N][,"ctime_ns":N]}
 * (the owner, the mode in octal, a time set by hand, the last change of
 * metadata) and X an array, in byte order of names, of
 * {"name":N,"encoding":E,"value":TEXT}. A value is text when it is UTF-8
 * without NUL bytes, else base64 (RFC 4648, padded). Restore accepts
 * exactly these fields, and \u0000 in text. "meta" and "xattrs" came with
 * libustate 0.5 and appear only on records that have some: a dump of a
 * store without owners or xattrs is what earlier versions wrote and read.
 * Leases came with 0.6: a key attached to one has "lease":NAME after its
 * value, and a restore gives each lease a whole TTL from then.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli_i.h"

#define B64 sodium_base64_VARIANT_ORIGINAL
#define BAR_WIDTH 30
#define BAR_EVERY_MS 100

/* ---- progress bar ------------------------------------------------------ */

/* A progress bar on stderr; it draws nothing unless stderr is a terminal. */
struct bar {
	const char *what;
	bool on, drawn;
	struct timespec last;
};

static void bar_init(struct bar *b, const char *what)
{
	*b = (struct bar){.what = what, .on = isatty(STDERR_FILENO)};
}

/* Bytes as a short human figure: "512 B", "12.3 MiB". */
static void human(char *buf, size_t len, uint64_t bytes)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = bytes;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", v, unit[i]);
}

/*
 * Draw done of total bytes (total 0: unknown) and a count of records (0:
 * none), at most every BAR_EVERY_MS unless final.
 */
static void bar_show(struct bar *b, uint64_t done, uint64_t total,
		     uint64_t records, bool final)
{
	char hd[32], ht[32], fill[BAR_WIDTH + 1];
	struct timespec now;
	unsigned pct;
	long ms;

	if (!b->on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - b->last.tv_sec) * 1000 +
	     (now.tv_nsec - b->last.tv_nsec) / 1000000;
	if (!final && b->drawn && ms < BAR_EVERY_MS)
		return;
	b->last = now;
	b->drawn = true;
	human(hd, sizeof(hd), done);
	if (!total) {
		fprintf(stderr, "\r%s: %s, %" PRIu64 " records\033[K", b->what,
			hd, records);
		return;
	}
	pct = done >= total ? 100 : (unsigned)(done * 100 / total);
	memset(fill, '#', sizeof(fill));
	fill[pct * BAR_WIDTH / 100] = '\0';
	human(ht, sizeof(ht), total);
	fprintf(stderr, "\r%s [%-*s] %3u%% %s of %s\033[K", b->what, BAR_WIDTH,
		fill, pct, hd, ht);
}

/* End the bar's line, if it drew one. */
static void bar_end(struct bar *b)
{
	if (b->drawn)
		fputc('\n', stderr);
	b->drawn = false;
}

/* ---- dump --------------------------------------------------------------- */

/* Bytes as JSON text when they are UTF-8 without NUL, else as base64. */
static json_t *bytes_text(const void *val, size_t n, const char **encoding)
{
	size_t len = sodium_base64_ENCODED_LEN(n, B64);
	json_t *v = NULL;
	char *b64;

	*encoding = "utf-8";
	if (!memchr(val, '\0', n))
		v = json_stringn(val, n);
	if (v)
		return v;
	*encoding = "base64";
	b64 = malloc(len);
	if (!b64)
		return NULL;
	sodium_bin2base64(b64, len, val, n, B64);
	v = json_stringn(b64, len - 1);
	free(b64);
	return v;
}

/* A record's "meta" and "xattrs" into j, when it has some: 0 or -ENOMEM. */
static int dump_meta(json_t *j, const ustate_record *r)
{
	const char *enc;
	json_t *m, *xs, *v;
	char mode[8];
	size_t i;

	if (r->meta) {
		snprintf(mode, sizeof(mode), "%04o", r->meta->mode);
		m = json_pack("{s:I, s:I, s:s}", "uid",
			      (json_int_t)r->meta->uid, "gid",
			      (json_int_t)r->meta->gid, "mode", mode);
		if (m && (r->meta->flags & USTATE_META_MTIME))
			json_object_set_new(m, "mtime_ns",
					    json_integer(r->meta->mtime_ns));
		if (m && r->meta->ctime_ns)
			json_object_set_new(m, "ctime_ns",
					    json_integer(r->meta->ctime_ns));
		if (!m || json_object_set_new(j, "meta", m) < 0)
			return -ENOMEM;
	}
	if (!r->nxattrs)
		return 0;
	xs = json_array();
	if (!xs || json_object_set_new(j, "xattrs", xs) < 0)
		return -ENOMEM;
	for (i = 0; i < r->nxattrs; i++) {
		const char *nenc;
		json_t *n, *x;

		/* A name need not be UTF-8 (ext4's need not): then base64. */
		n = bytes_text(r->xattrs[i].name, strlen(r->xattrs[i].name),
			       &nenc);
		v = bytes_text(r->xattrs[i].value, r->xattrs[i].value_len,
			       &enc);
		x = n && v ? json_pack("{s:o, s:s, s:o}", "name", n, "encoding",
				       enc, "value", v)
			   : NULL;
		if (x && strcmp(nenc, "utf-8"))
			json_object_set_new(x, "name_encoding",
					    json_string(nenc));
		if (!x) {
			json_decref(n);
			json_decref(v);
		}
		if (!x || json_array_append_new(xs, x) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int dump_record(void *arg, const ustate_record *r)
{
	const char *encoding;
	FILE *out = arg;
	json_t *j, *v;
	int rc;

	if (r->type == USTATE_RECORD_DIR) {
		j = json_pack("{s:s}", "dir", r->key);
	} else if (r->type == USTATE_RECORD_LEASE) {
		j = json_pack("{s:s, s:I}", "lease", r->key, "ttl",
			      (json_int_t)r->ttl);
	} else {
		v = bytes_text(r->value, r->value_len, &encoding);
		j = v ? json_pack("{s:s, s:I, s:I, s:I, s:s, s:o}", "key",
				  r->key, "version", (json_int_t)r->version,
				  "created_at", (json_int_t)r->created_at,
				  "updated_at", (json_int_t)r->updated_at,
				  "encoding", encoding, "value", v)
		      : NULL;
		if (j && r->lease &&
		    json_object_set_new(j, "lease", json_string(r->lease)) <
			    0) {
			json_decref(j);
			j = NULL;
		}
	}
	if (j && dump_meta(j, r) < 0) {
		json_decref(j);
		j = NULL;
	}
	if (!j)
		return -ENOMEM;
	rc = json_dumpf(j, out, JSON_COMPACT);
	json_decref(j);
	if (rc < 0 || fputc('\n', out) == EOF)
		return -EIO;
	return interrupted ? -EINTR : 0;
}

/* libsodium asks to be set up before use, though its codecs need nothing. */
static int sodium_ready(void)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "ustate: libsodium failed to start\n");
		return EXIT_ERROR;
	}
	return 0;
}

int cmd_dump(ustate *s, int argc, char **argv)
{
	int rc;

	if (sodium_ready())
		return EXIT_ERROR;
	rc = ustate_export(s, argc ? argv[0] : "", dump_record, stdout);
	if (fflush(stdout) == EOF && rc == 0)
		rc = -errno;
	return rc < 0 ? fail("dump", rc) : 0;
}

/* ---- restore ------------------------------------------------------------ */

/* The input of a restore, read a line at a time as the library asks. */
struct feed {
	const char *name; /* the file, or "stdin" */
	FILE *in;
	char *line;
	size_t cap;
	unsigned long lineno; /* of the line read last */
	json_t *cur;	      /* its JSON, which the record points into */
	unsigned char *bin;   /* its value, decoded from base64 */
	ustate_meta meta;     /* its metadata */
	ustate_xattr *xs;     /* its xattrs, nx of them (cap allocated) */
	unsigned char **xbin; /* ... their values decoded from base64 */
	char **xname;	      /* ... and their names */
	size_t nx, xcap;
	const char *key; /* the key or path of the record given last */
	uint64_t bytes, total, records;
	struct bar bar;
	char err[256]; /* what is wrong with line lineno */
};

static int feed_fail(struct feed *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Note what is wrong with the current line; ends the restore. */
static int feed_fail(struct feed *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->err, sizeof(f->err), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/* A JSON string that must not hold NUL (a key or a path). */
static int no_nul(struct feed *f, const char *s, size_t len)
{
	if (strlen(s) == len)
		return 0;
	return feed_fail(f, "the key holds a NUL character");
}

/*
 * Bytes given as TEXT in encoding enc: *val and *len become the decoded
 * bytes, in *bin (free it) for base64.
 */
static int decode_text(struct feed *f, const char *enc, const char **val,
		       size_t *len, unsigned char **bin, const char *what)
{
	size_t max;

	if (!strcmp(enc, "base64")) {
		max = *len / 4 * 3 + 1;
		*bin = malloc(max);
		if (!*bin)
			return -ENOMEM;
		/* No end pointer: any byte that is not base64 is an error. */
		if (sodium_base642bin(*bin, max, *val, *len, NULL, len, NULL,
				      B64) != 0)
			return feed_fail(f, "%s is not valid base64", what);
		*val = (const char *)*bin;
	} else if (strcmp(enc, "utf-8")) {
		return feed_fail(f, "unknown encoding \"%s\"", enc);
	}
	return 0;
}

/*
 * An xattr's name of nlen bytes given in encoding enc: *name becomes the
 * decoded one, NUL-terminated, in *buf (free it) for base64.
 */
static int decode_name(struct feed *f, const char *enc, const char **name,
		       size_t nlen, char **buf)
{
	unsigned char *bin = NULL;
	size_t len = nlen;
	int rc;

	rc = decode_text(f, enc, name, &len, &bin, "an xattr's name");
	if (rc == 0 && memchr(*name, '\0', len))
		rc = feed_fail(f, "xattrs: a name holds a NUL");
	if (rc == 0 && bin) {
		*buf = malloc(len + 1);
		rc = *buf ? 0 : -ENOMEM;
		if (rc == 0) {
			memcpy(*buf, bin, len);
			(*buf)[len] = '\0';
			*name = *buf;
		}
	}
	free(bin);
	return rc;
}

/* The "meta" and "xattrs" of the current line (each may be NULL) into r. */
static int parse_meta(struct feed *f, json_t *meta, json_t *xattrs,
		      ustate_record *r)
{
	json_int_t uid, gid, mt = 0, ct = 0;
	const char *mode, *name, *enc, *val;
	json_t *mtime = NULL, *x;
	json_error_t jerr;
	size_t i, nlen, vlen;
	unsigned long m;
	char *end;
	void *grown;
	int rc;

	if (meta) {
		if (json_unpack_ex(meta, &jerr, JSON_STRICT,
				   "{s:I, s:I, s:s, s?o, s?I}", "uid", &uid,
				   "gid", &gid, "mode", &mode, "mtime_ns",
				   &mtime, "ctime_ns", &ct) < 0)
			return feed_fail(f, "meta: %s", jerr.text);
		m = strtoul(mode, &end, 8);
		if (uid < 0 || uid > UINT32_MAX || gid < 0 ||
		    gid > UINT32_MAX || !*mode || *end || m > 07777)
			return feed_fail(f, "meta: a bad owner, group or mode");
		if (mtime && !json_is_integer(mtime))
			return feed_fail(f, "meta: mtime_ns is no integer");
		if (mtime)
			mt = json_integer_value(mtime);
		f->meta = (ustate_meta){.uid = (uint32_t)uid,
					.gid = (uint32_t)gid,
					.mode = (uint32_t)m,
					.flags = mtime ? USTATE_META_MTIME : 0,
					.mtime_ns = mt,
					.ctime_ns = ct};
		r->meta = &f->meta;
	}
	if (!xattrs)
		return 0;
	if (!json_is_array(xattrs))
		return feed_fail(f, "xattrs: not an array");
	json_array_foreach(xattrs, i, x)
	{
		const char *nenc = "utf-8";

		if (json_unpack_ex(x, &jerr, JSON_STRICT,
				   "{s:s%, s?s, s:s, s:s%}", "name", &name,
				   &nlen, "name_encoding", &nenc, "encoding",
				   &enc, "value", &val, &vlen) < 0)
			return feed_fail(f, "xattrs: %s", jerr.text);
		if (f->nx == f->xcap) {
			grown = realloc(f->xs,
					(f->xcap * 2 + 4) * sizeof(*f->xs));
			if (!grown)
				return -ENOMEM;
			f->xs = grown;
			grown = realloc(f->xbin,
					(f->xcap * 2 + 4) * sizeof(*f->xbin));
			if (!grown)
				return -ENOMEM;
			f->xbin = grown;
			grown = realloc(f->xname,
					(f->xcap * 2 + 4) * sizeof(*f->xname));
			if (!grown)
				return -ENOMEM;
			f->xname = grown;
			f->xcap = f->xcap * 2 + 4;
		}
		f->xbin[f->nx] = NULL;
		f->xname[f->nx] = NULL;
		rc = decode_text(f, enc, &val, &vlen, &f->xbin[f->nx],
				 "an xattr's value");
		if (rc == 0)
			rc = decode_name(f, nenc, &name, nlen,
					 &f->xname[f->nx]);
		f->nx++;
		if (rc < 0)
			return rc;
		f->xs[f->nx - 1] = (ustate_xattr){
			.name = name, .value = val, .value_len = vlen};
	}
	r->xattrs = f->xs;
	r->nxattrs = f->nx;
	return 0;
}

/* The record of the current line, whose JSON is f->cur. */
static int parse_record(struct feed *f, ustate_record *r)
{
	const char *key, *enc, *val, *lease = NULL;
	json_t *meta = NULL, *xattrs = NULL;
	json_int_t v, c, u, ttl;
	size_t klen, vlen;
	json_error_t jerr;
	int rc;

	if (json_object_get(f->cur, "dir")) {
		if (json_unpack_ex(f->cur, &jerr, JSON_STRICT,
				   "{s:s%, s?o, s?o}", "dir", &key, &klen,
				   "meta", &meta, "xattrs", &xattrs) < 0)
			return feed_fail(f, "%s", jerr.text);
		if (no_nul(f, key, klen) < 0)
			return -EBADMSG;
		*r = (ustate_record){.type = USTATE_RECORD_DIR, .key = key};
		f->key = key;
		rc = parse_meta(f, meta, xattrs, r);
		return rc < 0 ? rc : 1;
	}
	if (json_object_get(f->cur, "lease") &&
	    !json_object_get(f->cur, "key")) {
		if (json_unpack_ex(f->cur, &jerr, JSON_STRICT,
				   "{s:s%, s:I, s?o}", "lease", &key, &klen,
				   "ttl", &ttl, "meta", &meta) < 0)
			return feed_fail(f, "%s", jerr.text);
		if (no_nul(f, key, klen) < 0)
			return -EBADMSG;
		*r = (ustate_record){
			.type = USTATE_RECORD_LEASE, .key = key, .ttl = ttl};
		f->key = key;
		rc = parse_meta(f, meta, NULL, r);
		return rc < 0 ? rc : 1;
	}
	if (json_unpack_ex(f->cur, &jerr, JSON_STRICT,
			   "{s:s%, s:I, s:I, s:I, s:s, s:s%, s?s, s?o, s?o}",
			   "key", &key, &klen, "version", &v, "created_at", &c,
			   "updated_at", &u, "encoding", &enc, "value", &val,
			   &vlen, "lease", &lease, "meta", &meta, "xattrs",
			   &xattrs) < 0)
		return feed_fail(f, "%s", jerr.text);
	if (no_nul(f, key, klen) < 0)
		return -EBADMSG;
	if (v < 1)
		return feed_fail(f, "version %lld is not 1 or more",
				 (long long)v);
	rc = decode_text(f, enc, &val, &vlen, &f->bin, "the value");
	if (rc < 0)
		return rc;
	*r = (ustate_record){
		.type = USTATE_RECORD_KEY,
		.key = key,
		.value = val,
		.value_len = vlen,
		.version = (uint64_t)v,
		.created_at = c,
		.updated_at = u,
		.lease = lease,
	};
	f->key = key;
	rc = parse_meta(f, meta, xattrs, r);
	return rc < 0 ? rc : 1;
}

/* Forget the last line's xattrs. */
static void feed_xattrs_reset(struct feed *f)
{
	size_t i;

	for (i = 0; i < f->nx; i++) {
		free(f->xbin[i]);
		free(f->xname[i]);
	}
	f->nx = 0;
}

static int feed_next(void *arg, ustate_record *r)
{
	struct feed *f = arg;
	json_error_t jerr;
	ssize_t n;

	json_decref(f->cur);
	f->cur = NULL;
	free(f->bin);
	f->bin = NULL;
	feed_xattrs_reset(f);
	f->key = NULL;
	do {
		if (interrupted)
			return -EINTR;
		n = getline(&f->line, &f->cap, f->in);
		if (n < 0) {
			bar_show(&f->bar, f->bytes, f->total, f->records, true);
			return ferror(f->in) ? -EIO : 0;
		}
		f->lineno++;
		f->bytes += n;
		bar_show(&f->bar, f->bytes, f->total, f->records, false);
		if (n && f->line[n - 1] == '\n')
			n--;
	} while (n == 0); /* blank lines are no records */
	f->cur = json_loadb(f->line, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
			    &jerr);
	if (!f->cur)
		return feed_fail(f, "not JSON: %s (column %d)", jerr.text,
				 jerr.column);
	if (!json_is_object(f->cur))
		return feed_fail(f, "not a JSON object");
	f->records++;
	return parse_record(f, r);
}

/* Say why a restore failed; the exit code. */
static int restore_failed(struct feed *f, int rc)
{
	const char *why = ustate_strerror(rc);

	if (f->err[0]) {
		fprintf(stderr, "ustate: restore: %s line %lu: %s\n", f->name,
			f->lineno, f->err);
	} else if (rc == -ENOTEMPTY) {
		fprintf(stderr, "ustate: restore: the store is not empty (use "
				"--merge or --replace)\n");
	} else if (rc == -EINTR) {
		fprintf(stderr, "ustate: restore: interrupted\n");
	} else if (rc == -ENOENT) {
		fprintf(stderr, "ustate: restore: a key names a lease that "
				"neither the input nor the store has\n");
	} else if (f->key && (rc == -EINVAL || rc == -ENAMETOOLONG ||
			      rc == -EFBIG || rc == -EEXIST || rc == -ERANGE ||
			      rc == -E2BIG || rc == -ENOSPC)) {
		if (rc == -EEXIST)
			why = "given twice in the input";
		if (rc == -EINVAL && f->cur && json_object_get(f->cur, "lease"))
			why = "a bad lease name or TTL";
		fprintf(stderr, "ustate: restore: %s line %lu: %s: %s\n",
			f->name, f->lineno, f->key, why);
	} else {
		fail("restore", rc);
	}
	fprintf(stderr, "ustate: restore: nothing was written\n");
	return rc == -ENOTEMPTY ? EXIT_CONFLICT : EXIT_ERROR;
}

int cmd_restore(ustate *s, int argc, char **argv)
{
	struct feed f = {.name = "stdin", .in = stdin};
	ustate_restore_result res;
	unsigned flags = 0;
	struct stat st;
	int rc;

	if (cli.merge && cli.replace) {
		fprintf(stderr, "ustate: restore: --merge or --replace, not "
				"both\n");
		return EXIT_USAGE;
	}
	if (sodium_ready())
		return EXIT_ERROR;
	if (argc && strcmp(argv[0], "-")) {
		f.name = argv[0];
		f.in = fopen(argv[0], "re");
		if (!f.in)
			return fail(argv[0], -errno);
	} else if (isatty(STDIN_FILENO)) {
		fprintf(stderr, "ustate: restore: give a FILE, or the dump on "
				"stdin\n");
		return EXIT_USAGE;
	}
	if (fstat(fileno(f.in), &st) == 0 && S_ISREG(st.st_mode))
		f.total = st.st_size;
	bar_init(&f.bar, "restore");
	flags = cli.merge     ? USTATE_RESTORE_MERGE
		: cli.replace ? USTATE_RESTORE_REPLACE
			      : 0;
	rc = ustate_restore(s, feed_next, &f, flags, &res);
	bar_end(&f.bar);
	if (rc < 0)
		rc = restore_failed(&f, rc);
	else if (cli.json)
		rc = print_json(json_pack("{s:I, s:I, s:I, s:I, s:I}", "keys",
					  (json_int_t)res.keys, "dirs",
					  (json_int_t)res.dirs, "written",
					  (json_int_t)res.written, "deleted",
					  (json_int_t)res.deleted, "revision",
					  (json_int_t)res.revision));
	else
		printf("restored keys: %" PRIu64 ", directories: %" PRIu64
		       ", written: %" PRIu64 ", deleted: %" PRIu64
		       ", revision: %" PRIu64 "\n",
		       res.keys, res.dirs, res.written, res.deleted,
		       res.revision);
	json_decref(f.cur);
	free(f.bin);
	feed_xattrs_reset(&f);
	free(f.xs);
	free(f.xbin);
	free(f.xname);
	free(f.line);
	if (f.in != stdin)
		fclose(f.in);
	return rc;
}

/* ---- backup ------------------------------------------------------------- */

struct backup_progress {
	struct bar bar;
	uint64_t total;
};

static int backup_step(void *arg, uint64_t done, uint64_t total)
{
	struct backup_progress *p = arg;

	p->total = total;
	bar_show(&p->bar, done, total, 0, done == total);
	return interrupted ? -EINTR : 0;
}

int cmd_backup(ustate *s, int argc, char **argv)
{
	struct backup_progress p = {.total = 0};
	int rc;

	bar_init(&p.bar, "backup");
	rc = ustate_backup(s, argv[0], cli.force ? USTATE_BACKUP_FORCE : 0,
			   backup_step, &p);
	bar_end(&p.bar);
	if (rc == -EEXIST) {
		fprintf(stderr,
			"ustate: backup: %s exists (--force replaces "
			"it)\n",
			argv[0]);
		return EXIT_ERROR;
	}
	if (rc < 0)
		return fail(argv[0], rc);
	if (cli.json)
		return print_json(json_pack("{s:s, s:I}", "backup", argv[0],
					    "bytes", (json_int_t)p.total));
	return 0;
}

/* ---- check -------------------------------------------------------------- */

/* The problems of a check, printed as lines or gathered in arr. */
struct problems {
	json_t *arr; /* --json */
	int n;
};

static int print_problem(void *arg, const ustate_problem *p)
{
	struct problems *ps = arg;

	ps->n++;
	if (ps->arr)
		return json_array_append_new(
			       ps->arr,
			       json_pack("{s:s, s:s?, s:s}", "check", p->check,
					 "key", p->key, "detail", p->detail))
			       ? -ENOMEM
			       : 0;
	printf("%s%s%s: %s\n", p->check, p->key ? " " : "",
	       p->key ? p->key : "", p->detail);
	return 0;
}

/* Report one problem the library could not, and end the check. */
static int check_end(struct problems *ps, const char *check, const char *detail)
{
	ustate_problem p = {.check = check, .detail = detail};

	if (check)
		print_problem(ps, &p);
	if (ps->arr)
		print_json(json_pack("{s:b, s:i, s:o}", "ok", ps->n == 0,
				     "count", ps->n, "problems", ps->arr));
	else if (ps->n == 0)
		puts("ok");
	else
		printf("%d problem%s\n", ps->n, ps->n == 1 ? "" : "s");
	return ps->n ? EXIT_PROBLEMS : 0;
}

int cmd_check(ustate *s, int argc, char **argv)
{
	struct problems ps = {.arr = cli.json ? json_array() : NULL};
	int rc;

	rc = ustate_check(s, print_problem, &ps);
	/* Corruption that stops a query is one more problem. */
	if (rc == -EUCLEAN)
		return check_end(&ps, "integrity",
				 "the file is too damaged to check further");
	if (rc < 0) {
		json_decref(ps.arr);
		return fail("check", rc);
	}
	return check_end(&ps, NULL, NULL);
}

int check_unopened(const char *db, int rc)
{
	struct problems ps = {.arr = cli.json ? json_array() : NULL};

	if (rc == -EUCLEAN)
		return check_end(&ps, "integrity",
				 "the file is corrupt or not a SQLite "
				 "database");
	if (rc == -EROFS)
		return check_end(&ps, "schema",
				 "the file has no store tables: not a ustate "
				 "store");
	json_decref(ps.arr);
	return -1;
}

/* ---- compact ------------------------------------------------------------ */

int cmd_compact(ustate *s, int argc, char **argv)
{
	uint64_t rev = ustate_revision(s), first, removed = 0;
	int rc;

	if (cli.keep_set == cli.revision_set) {
		fprintf(stderr, "ustate: compact: give --keep N or --revision "
				"R\n");
		return EXIT_USAGE;
	}
	if (cli.keep_set)
		first = cli.keep >= rev ? 1 : rev - cli.keep + 1;
	else
		first = cli.revision;
	rc = ustate_compact(s, first, &removed);
	if (rc == -EINVAL) {
		fprintf(stderr,
			"ustate: compact: revision %" PRIu64
			" is not in 1..%" PRIu64 " (the store revision + 1)\n",
			first, rev + 1);
		return EXIT_USAGE;
	}
	if (rc < 0)
		return fail("compact", rc);
	if (cli.json)
		return print_json(json_pack("{s:I, s:I}", "removed",
					    (json_int_t)removed, "revision",
					    (json_int_t)first));
	printf("removed %" PRIu64 " changes before revision %" PRIu64 "\n",
	       removed, first);
	return 0;
}
