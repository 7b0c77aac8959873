/* SPDX-License-Identifier: MIT */
/*
 * This file implements the driver that a fuzz target is linked with in a
 * build without libFuzzer (gcc, the sanitizer build): it runs the target
 * once on each file named, and on each file of each directory named, in
 * name order, so the seed corpus is a regression test. A failed check
 * aborts, as it would under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_i.h"

/* Run the target on one file; -errno when it cannot be read. */
static int run_file(const char *path)
{
	uint8_t *data = NULL;
	long size;
	FILE *f;
	int rc = 0;

	f = fopen(path, "rb");
	if (!f)
		return -errno;
	if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) < 0) {
		rc = -errno;
		goto out;
	}
	/* One byte more, so that an empty file is not a NULL buffer. */
	data = malloc((size_t)size + 1);
	if (!data) {
		rc = -ENOMEM;
		goto out;
	}
	if (fread(data, 1, (size_t)size, f) != (size_t)size) {
		rc = -EIO;
		goto out;
	}
	LLVMFuzzerTestOneInput(data, (size_t)size);
out:
	free(data);
	fclose(f);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of a directory; the count run, or -errno. */
static int run_dir(const char *dir)
{
	char path[PATH_MAX], **names = NULL, **grown;
	size_t n = 0, cap = 0, i;
	struct dirent *d;
	int rc = 0, count = 0;
	DIR *dp;

	dp = opendir(dir);
	if (!dp)
		return -errno;
	while ((d = readdir(dp))) {
		if (d->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown) {
				rc = -ENOMEM;
				goto out;
			}
			names = grown;
		}
		names[n] = strdup(d->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n && rc == 0; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		rc = run_file(path);
		if (rc < 0)
			fprintf(stderr, "%s: %s\n", path, strerror(-rc));
		count++;
	}
out:
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(dp);
	return rc < 0 ? rc : count;
}

int main(int argc, char **argv)
{
	struct stat st;
	int i, rc, total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = run_dir(argv[i]);
		} else {
			rc = run_file(argv[i]);
			rc = rc < 0 ? rc : 1;
		}
		if (rc < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(-rc));
			return 1;
		}
		total += rc;
	}
	/* The exit status is the verdict; this line is for people. */
	printf("%s: %d inputs, no failure\n", argv[0], total);
	return 0;
}
