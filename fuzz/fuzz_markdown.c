/*-------------------------------------------------------------------------
 *
 * fuzz_markdown.c
 *		  libFuzzer harness for cfdw_markdown_to_storage and
 *		  cfdw_text_to_storage (src/storage.c).
 *
 * The whole input is given to both converters, as Markdown and as plain
 * text.  Oracles, for each output: it is NUL-terminated at its length and
 * holds no NUL; cfdw_storage_check finds it well formed (the converters
 * promise that for any input, invalid UTF-8 and control characters
 * included); cfdw_storage_equal finds it equal to itself, and to itself
 * followed by a line feed (different bytes, so the trees are compared);
 * raw HTML never passes: outside CDATA sections every tag is one the
 * converter writes (plain text gives only <p> and <br />); and no link's
 * href, read as a browser reads it (blanks and C0 controls around it
 * dropped, tabs and line breaks in it removed, the scheme in lower case),
 * has a scheme that runs code (javascript:, vbscript:, file:, data:).
 *
 * cmark-gfm is the system's uninstrumented library, so ASan cannot see it
 * read a node the converter freed.  The converters allocate through the
 * CfdwBuf's cmark_mem, so the harness passes one that, on free, fills the
 * block with 0xDB, poisons it for ASan and keeps it until the input is
 * done: a stale node read inside cmark-gfm then follows a pointer of
 * 0xDBDB... and faults, and one read by instrumented code is reported as
 * use-after-poison.
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_markdown.c
 *
 *-------------------------------------------------------------------------
 */
#include <strings.h>

#include <libxml/parser.h>
#include <sanitizer/asan_interface.h>

#include "fuzz_common.h"
#include "storage.h"

/* ---------------------------------------------------------------- allocator */

typedef union Block
{
	max_align_t align;
	struct
	{
		size_t		size;
		union Block *next;		/* in the quarantine, once freed */
	}			h;
} Block;

static Block *quarantine;

static void *
scrub_calloc(size_t nmemb, size_t size)
{
	Block	   *b;

	if (size != 0 && nmemb > (SIZE_MAX - sizeof(Block)) / size)
		abort();
	b = calloc(1, sizeof(Block) + nmemb * size);
	if (b == NULL)
		abort();
	b->h.size = nmemb * size;
	return b + 1;
}

static void
scrub_free(void *p)
{
	Block	   *b;

	if (p == NULL)
		return;
	b = (Block *) p - 1;
	memset(p, 0xDB, b->h.size);
	ASAN_POISON_MEMORY_REGION(p, b->h.size);
	b->h.next = quarantine;
	quarantine = b;
}

/* Always moves, so a pointer kept across a realloc is stale too. */
static void *
scrub_realloc(void *p, size_t size)
{
	void	   *q = scrub_calloc(1, size);

	if (p != NULL)
	{
		Block	   *b = (Block *) p - 1;

		memcpy(q, p, b->h.size < size ? b->h.size : size);
		scrub_free(p);
	}
	return q;
}

static void
release_quarantine(void)
{
	while (quarantine)
	{
		Block	   *next = quarantine->h.next;

		ASAN_UNPOISON_MEMORY_REGION(quarantine + 1, quarantine->h.size);
		free(quarantine);
		quarantine = next;
	}
}

static cmark_mem scrub_mem = {scrub_calloc, scrub_realloc, scrub_free};

/* ---------------------------------------------------------------- oracles */

/* Every tag the Markdown converter writes. */
static const char *const markdown_tags[] = {
	"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li",
	"em", "strong", "del", "a", "code", "br", "hr", "table", "tbody", "tr",
	"th", "td", "ac:structured-macro", "ac:parameter", "ac:plain-text-body",
	"ac:rich-text-body", "ac:task-list", "ac:task", "ac:task-id",
	"ac:task-status", "ac:task-body", "ac:image", "ri:url", "ri:attachment",
	NULL
};

static const char *const text_tags[] = {"p", "br", NULL};

static bool
listed(const char *const *list, const char *s, size_t n)
{
	for (; *list; list++)
		if (strlen(*list) == n && memcmp(*list, s, n) == 0)
			return true;
	return false;
}

/*
 * The href of an <a> tag (the text between '<a' and '>') decoded and read
 * the way a browser's URL parser reads it, then its scheme checked.
 */
static void
check_href(const char *tag, size_t n, const char *out)
{
	const char *p = NULL;
	char		url[64];
	size_t		len = 0;
	size_t		i;
	size_t		k;

	for (i = 0; i + 7 <= n; i++)
		if (memcmp(tag + i, " href=\"", 7) == 0)
		{
			p = tag + i + 7;
			break;
		}
	if (p == NULL)
		return;
	/* XML-decode up to the closing quote, enough of it for a scheme */
	while (p < tag + n && *p != '"' && len < sizeof(url) - 1)
	{
		static const struct
		{
			const char *ref;
			char		c;
		}			refs[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}};
		bool		ref = false;

		for (k = 0; k < sizeof(refs) / sizeof(refs[0]); k++)
			if (strncmp(p, refs[k].ref, strlen(refs[k].ref)) == 0)
			{
				url[len++] = refs[k].c;
				p += strlen(refs[k].ref);
				ref = true;
				break;
			}
		if (ref)
			continue;
		/* the URL parser drops tabs and line breaks anywhere, C0 controls
		 * and spaces at the start */
		if (*p != '\t' && *p != '\n' && *p != '\r' && (len > 0 || (unsigned char) *p > 0x20))
			url[len++] = *p;
		p++;
	}
	url[len] = '\0';
	for (i = 0; i < len; i++)
		if (!((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
			  (i > 0 && ((url[i] >= '0' && url[i] <= '9') || url[i] == '+' ||
							 url[i] == '-' || url[i] == '.'))))
			break;
	if (i == 0 || i >= len || url[i] != ':')
		return;					/* no scheme: a relative reference */
	FUZZ_ASSERT(!(i == 10 && strncasecmp(url, "javascript", 10) == 0) &&
				!(i == 8 && strncasecmp(url, "vbscript", 8) == 0) &&
				!(i == 4 && strncasecmp(url, "file", 4) == 0) &&
				!(i == 4 && strncasecmp(url, "data", 4) == 0),
				"a link with the scheme \"%.*s\" in:\n%s", (int) i, url, out);
}

/* Outside CDATA sections, every tag is listed; hrefs are checked. */
static void
check_tags(const char *out, size_t len, const char *const *tags, const char *what)
{
	size_t		i = 0;

	while (i < len)
	{
		const char *gt;
		size_t		name;
		size_t		end;

		if (out[i] != '<')
		{
			i++;
			continue;
		}
		if (len - i >= 9 && memcmp(out + i, "<![CDATA[", 9) == 0)
		{
			const char *close = strstr(out + i + 9, "]]>");

			FUZZ_ASSERT(close != NULL, "%s: CDATA section not closed in:\n%s", what, out);
			i = (size_t) (close - out) + 3;
			continue;
		}
		name = i + 1 + (out[i + 1] == '/');
		end = name;
		while (end < len && out[end] != ' ' && out[end] != '/' && out[end] != '>')
			end++;
		FUZZ_ASSERT(listed(tags, out + name, end - name),
					"%s wrote the tag <%.*s> in:\n%s", what, (int) (end - name), out + name, out);
		gt = memchr(out + end, '>', len - end);
		FUZZ_ASSERT(gt != NULL, "%s: tag not closed in:\n%s", what, out);
		if (out[i + 1] != '/' && end - name == 1 && out[name] == 'a')
			check_href(out + end, (size_t) (gt - (out + end)), out);
		i = (size_t) (gt - out) + 1;
	}
}

static void
check_output(const CfdwBuf *out, const char *what, const char *const *tags)
{
	CfdwXmlFault fault;
	char	   *more;
	int			eq;

	FUZZ_ASSERT(out->data != NULL && out->len < out->cap && out->data[out->len] == '\0',
				"%s: the output is not NUL-terminated at its length", what);
	FUZZ_ASSERT(strlen(out->data) == out->len, "%s: the output holds a NUL", what);

	memset(&fault, 0x7f, sizeof(fault));
	FUZZ_ASSERT(cfdw_storage_check(out->data, out->len, &fault, &scrub_mem),
				"%s output is not well formed (line %d, column %d: %.256s):\n%s",
				what, fault.line, fault.column, fault.message, out->data);

	eq = cfdw_storage_equal(out->data, out->len, out->data, out->len, &scrub_mem);
	FUZZ_ASSERT(eq == 1, "%s: storage_equal(out, out) = %d:\n%s", what, eq, out->data);

	/* the same with a line feed after it: not byte-equal, the same tree */
	more = malloc(out->len + 2);
	if (more == NULL)
		abort();
	memcpy(more, out->data, out->len);
	more[out->len] = '\n';
	more[out->len + 1] = '\0';
	eq = cfdw_storage_equal(out->data, out->len, more, out->len + 1, &scrub_mem);
	FUZZ_ASSERT(eq == 1, "%s: storage_equal(out, out + \"\\n\") = %d:\n%s", what, eq, out->data);
	free(more);

	check_tags(out->data, out->len, tags, what);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	xmlInitParser();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *input = (const char *) data;
	CfdwBuf		out;

	cfdw_buf_init(&out, &scrub_mem);
	cfdw_markdown_to_storage(input, size, &out);
	check_output(&out, "markdown_to_storage", markdown_tags);
	cfdw_buf_free(&out);

	cfdw_buf_init(&out, &scrub_mem);
	cfdw_text_to_storage(input, size, &out);
	check_output(&out, "text_to_storage", text_tags);
	cfdw_buf_free(&out);

	release_quarantine();
	return 0;
}
