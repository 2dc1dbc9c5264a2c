/*-------------------------------------------------------------------------
 *
 * storage.h
 *		  Confluence's storage format without PostgreSQL: Markdown and plain
 *		  text converted to it, its well-formedness check, and the comparison
 *		  that tells an unchanged page from a changed one.
 *
 * Like pure.h, these use only libc, cmark-gfm and libxml2 and report
 * problems through return values, so the unit tests and the fuzzers link
 * them directly.  Output grows in a CfdwBuf through a cmark_mem allocator:
 * the extension passes one that allocates in a memory context (content.c),
 * the tests cmark's default, malloc.
 *
 * IDENTIFICATION
 *		  src/storage.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CFDW_STORAGE_H
#define CFDW_STORAGE_H

#include <stdbool.h>
#include <stddef.h>

#include <cmark-gfm.h>

/* A growing, always NUL-terminated output buffer. */
typedef struct CfdwBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	cmark_mem  *mem;
} CfdwBuf;

extern void cfdw_buf_init(CfdwBuf *buf, cmark_mem *mem);
extern void cfdw_buf_free(CfdwBuf *buf);

/*
 * Markdown (CommonMark with GitHub's tables, task lists, strikethrough and
 * autolinks) to storage format, appended to out.  Raw HTML is escaped,
 * never passed through; invalid UTF-8 and characters XML cannot hold
 * become U+FFFD.  The result is always well formed (the fuzzer checks).
 */
extern void cfdw_markdown_to_storage(const char *md, size_t len, CfdwBuf *out);

/* Plain text: escaped, a paragraph per blank-line-separated block, line
 * breaks kept as <br />. */
extern void cfdw_text_to_storage(const char *text, size_t len, CfdwBuf *out);

/* Where and why a body is not well formed. */
typedef struct CfdwXmlFault
{
	int			line;			/* 1-based, in the body as given */
	int			column;			/* 1-based */
	char		message[256];
} CfdwXmlFault;

/*
 * Whether body is well-formed storage format: XML content (any number of
 * top-level elements and text) where the ac:, ri: and at: prefixes are
 * bound and HTML's named entities (&nbsp;, &mdash;, ...) are defined.
 * On false, fault says where the first fault is.
 */
extern bool cfdw_storage_check(const char *body, size_t len, CfdwXmlFault *fault);

/*
 * Whether two storage bodies say the same: equal XML trees once what
 * Confluence adds on save (macro and local ids, schema versions, data-*
 * layout attributes, task ids, colgroups) is left out and white space is
 * collapsed.  Returns 1 equal (byte-identical bodies always are), 0
 * different, -1 when either is not well formed (then only byte equality
 * could tell, and they are not byte-identical).
 */
extern int	cfdw_storage_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif							/* CFDW_STORAGE_H */
