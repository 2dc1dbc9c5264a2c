/*-------------------------------------------------------------------------
 *
 * storage.h
 *		  Confluence's storage format without PostgreSQL: Markdown and plain
 *		  text converted to it, its well-formedness check, and the comparison
 *		  that tells an unchanged page from a changed one.
 *
 * Like pure.h, these use only libc, cmark-gfm and libxml2 and report
 * problems through return values, so the unit tests and the fuzzers link
 * them directly.  Every allocation of cmark-gfm's and of this code goes
 * through the cmark_mem the caller passes (a CfdwBuf carries it for the
 * converters), save the one-time registration of cmark-gfm's extensions,
 * which knows only cmark's default allocator (content.c does it first, see
 * there, and storage.c's header comment lists what cmark-gfm allocates
 * where).  The extension passes one that allocates in a memory context
 * and raises an ERROR when memory runs out (content.c), the tests and the
 * fuzzers cmark's default (malloc, abort() on failure) or their own.
 *
 * An allocator may so leave by longjmp at any allocation.  What these
 * functions allocated through it is then the caller's to drop (content.c
 * resets the context); nothing else is held at that moment: no libxml2
 * object is alive while they allocate through the allocator, and cmark-gfm
 * keeps no state between calls that a later call would trip over (the
 * findings are in storage.c's header comment).
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
 * On false, fault says where the first fault is.  libxml2 allocates with
 * malloc itself; mem serves this code's buffers.
 */
extern bool cfdw_storage_check(const char *body, size_t len, CfdwXmlFault *fault,
							   cmark_mem *mem);

/*
 * Whether two storage bodies say the same: equal XML trees once what
 * Confluence adds on save (macro and local ids, schema versions, data-*
 * layout attributes, task ids, colgroups) is left out and white space is
 * collapsed.  Returns 1 equal (byte-identical bodies always are), 0
 * different, -1 when either is not well formed (then only byte equality
 * could tell, and they are not byte-identical).
 */
extern int	cfdw_storage_equal(const char *a, size_t alen, const char *b, size_t blen,
							   cmark_mem *mem);

#endif							/* CFDW_STORAGE_H */
