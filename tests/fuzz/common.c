/* SPDX-License-Identifier: MIT */
/*
 * This file implements the helpers every fuzz target shares: the failure
 * report, a seeded random stream, the comparison of two whole stores and
 * a scratch directory that goes away with the process.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_i.h"

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt,
	       ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: check failed: %s\n  ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

uint64_t fuzz_hash(const uint8_t *data, size_t size)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < size; i++) {
		h ^= data[i];
		h *= 0x100000001b3ull;
	}
	return h | 1;
}

uint64_t fuzz_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

/* Times are taken once per commit in each store: allow a second's drift. */
static int near(int64_t a, int64_t b)
{
	return a - b <= 2 && b - a <= 2;
}

/* What one store must hold about every entry, whatever the other says. */
static void entry_sane(const ustate_entry *e, const char *key, uint64_t rev,
		       const char *what)
{
	FUZZ_CHECK(!strcmp(e->key, key), "%s: get(%s) names %s", what, key,
		   e->key);
	FUZZ_CHECK(e->version >= 1, "%s: %s at version 0", what, key);
	FUZZ_CHECK(e->mod_revision >= 1 && e->mod_revision <= rev,
		   "%s: %s mod_revision %llu, store at %llu", what, key,
		   (unsigned long long)e->mod_revision,
		   (unsigned long long)rev);
	FUZZ_CHECK(e->created_at <= e->updated_at,
		   "%s: %s created after its update", what, key);
	FUZZ_CHECK(((const char *)e->value)[e->value_len] == '\0',
		   "%s: %s value without its NUL", what, key);
}

static void same_names(char **ka, size_t na, char **kb, size_t nb,
		       const char *set, const char *what)
{
	size_t i;

	FUZZ_CHECK(na == nb, "%s: %zu %s against %zu", what, na, set, nb);
	for (i = 0; i < na; i++) {
		FUZZ_CHECK(!strcmp(ka[i], kb[i]), "%s: %s %zu: %s against %s",
			   what, set, i, ka[i], kb[i]);
		FUZZ_CHECK(i == 0 || strcmp(ka[i - 1], ka[i]) < 0,
			   "%s: %s not sorted at %s", what, set, ka[i]);
	}
}

void fuzz_same_state(ustate *a, ustate *b, const char *what)
{
	uint64_t ra = ustate_revision(a), rb = ustate_revision(b);
	ustate_entry *ea, *eb;
	char **ka, **kb;
	size_t na, nb, i;
	int rc;

	FUZZ_CHECK(ra == rb, "%s: revision %llu against %llu", what,
		   (unsigned long long)ra, (unsigned long long)rb);
	FUZZ_CHECK(ustate_list(a, "", &ka, &na) == 0, "%s: list", what);
	FUZZ_CHECK(ustate_list(b, "", &kb, &nb) == 0, "%s: list", what);
	same_names(ka, na, kb, nb, "keys", what);
	for (i = 0; i < na; i++) {
		rc = ustate_get(a, ka[i], &ea);
		FUZZ_CHECK(rc == 0, "%s: listed %s, get %d", what, ka[i], rc);
		rc = ustate_get(b, kb[i], &eb);
		FUZZ_CHECK(rc == 0, "%s: listed %s, get %d", what, kb[i], rc);
		entry_sane(ea, ka[i], ra, what);
		entry_sane(eb, kb[i], rb, what);
		FUZZ_CHECK(ea->value_len == eb->value_len &&
				   !memcmp(ea->value, eb->value, ea->value_len),
			   "%s: %s values differ (%zu and %zu bytes)", what,
			   ka[i], ea->value_len, eb->value_len);
		FUZZ_CHECK(ea->version == eb->version,
			   "%s: %s version %llu against %llu", what, ka[i],
			   (unsigned long long)ea->version,
			   (unsigned long long)eb->version);
		FUZZ_CHECK(ea->mod_revision == eb->mod_revision,
			   "%s: %s mod_revision %llu against %llu", what, ka[i],
			   (unsigned long long)ea->mod_revision,
			   (unsigned long long)eb->mod_revision);
		FUZZ_CHECK(near(ea->created_at, eb->created_at) &&
				   near(ea->updated_at, eb->updated_at),
			   "%s: %s times differ", what, ka[i]);
		ustate_entry_free(ea);
		ustate_entry_free(eb);
	}
	ustate_list_free(ka, na);
	ustate_list_free(kb, nb);

	FUZZ_CHECK(ustate_list_dirs(a, "", &ka, &na) == 0, "%s: dirs", what);
	FUZZ_CHECK(ustate_list_dirs(b, "", &kb, &nb) == 0, "%s: dirs", what);
	same_names(ka, na, kb, nb, "directory records", what);
	ustate_list_free(ka, na);
	ustate_list_free(kb, nb);
}

static char tmpdir[PATH_MAX];

/* Remove the scratch directory and the files in it (it has no subdirs). */
static void tmpdir_remove(void)
{
	char path[PATH_MAX + 256];
	struct dirent *d;
	DIR *dp;

	dp = opendir(tmpdir);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, d->d_name);
		unlink(path);
	}
	closedir(dp);
	rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
	const char *base = getenv("FUZZ_TMPDIR");
	struct stat st;

	if (tmpdir[0])
		return tmpdir;
	if (!base || !*base)
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
			       ? "/dev/shm"
			       : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/ustate-fuzz-XXXXXX", base);
	FUZZ_CHECK(mkdtemp(tmpdir), "mkdtemp %s: %s", tmpdir, strerror(errno));
	atexit(tmpdir_remove);
	return tmpdir;
}
