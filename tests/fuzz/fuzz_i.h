/* SPDX-License-Identifier: MIT */
/*
 * This file declares what the fuzz targets share (common.c): the libFuzzer
 * entry point, a check that aborts with a message (libFuzzer and the
 * standalone replayer both treat an abort as a failure), a reader that
 * decodes an input byte by byte, and the comparison of two stores.
 */
#ifndef USTATE_FUZZ_I_H
#define USTATE_FUZZ_I_H

#include <stddef.h>
#include <stdint.h>

#include "ustate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn, format(printf, 4, 5))) void
fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...);

/* Abort with the condition and a printf-style explanation unless cond. */
#define FUZZ_CHECK(cond, ...)                                                  \
	do {                                                                   \
		if (!(cond))                                                   \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);     \
	} while (0)

/* An input being decoded: bytes past its end read as 0. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline unsigned fuzz_byte(struct fuzz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* A deterministic stream of numbers seeded by the bytes of an input. */
uint64_t fuzz_hash(const uint8_t *data, size_t size);
uint64_t fuzz_rand(uint64_t *state);

/*
 * Abort unless a and b hold the same keys (values, versions, mod
 * revisions, times within a second or two), the same directory records
 * and the same revision. what names the comparison in the message.
 */
void fuzz_same_state(ustate *a, ustate *b, const char *what);

/*
 * A directory for files of this process, removed at exit: under
 * $FUZZ_TMPDIR, else /dev/shm when it exists, else /tmp.
 */
const char *fuzz_tmpdir(void);

#endif /* USTATE_FUZZ_I_H */
