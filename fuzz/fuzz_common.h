/*-------------------------------------------------------------------------
 *
 * fuzz_common.h
 *		  Helpers shared by the libFuzzer harnesses of src/pure.c.
 *
 * Each harness checks what the function promises, not just that it does
 * not crash: a broken promise calls FUZZ_FAIL, which prints the reason and
 * aborts, so libFuzzer records a crash file like any sanitizer finding.
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_common.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CFDW_FUZZ_COMMON_H
#define CFDW_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "pure.h"

#define FUZZ_FAIL(...) \
	do { \
		fprintf(stderr, "fuzz oracle failed at %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		abort(); \
	} while (0)

#define FUZZ_ASSERT(cond, ...) \
	do { \
		if (!(cond)) \
			FUZZ_FAIL(__VA_ARGS__); \
	} while (0)

/* A NUL-terminated malloc'd copy of n bytes. */
static inline char *
fuzz_strndup(const uint8_t *data, size_t n)
{
	char	   *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static inline bool
fuzz_valid_utf8(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = s[i];
		size_t		len;
		uint32_t	cp;
		size_t		k;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (i + len > n)
			return false;
		for (k = 1; k < len; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
			(cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += len;
	}
	return true;
}

/* The message buffer after a refusal: a non-empty NUL-terminated string. */
static inline void
fuzz_check_err(const char *err, size_t errlen)
{
	FUZZ_ASSERT(memchr(err, '\0', errlen) != NULL, "error message is not NUL-terminated");
	FUZZ_ASSERT(err[0] != '\0', "refused without an error message");
}

#endif							/* CFDW_FUZZ_COMMON_H */
