/*-------------------------------------------------------------------------
 *
 * storage.c
 *		  Markdown and plain text to Confluence's storage format, the
 *		  well-formedness check of a storage body, and storage comparison.
 *
 * No PostgreSQL here (see storage.h): content.c wraps these for the
 * extension, test/unit and fuzz/ call them directly.
 *
 * The converter walks cmark-gfm's tree with its iterator rather than by
 * recursion, so nesting depth costs no stack; elements nested deeper than
 * MAX_NEST are not opened (their content still is), so no input makes
 * output that libxml2 (or Confluence) refuses for its depth.
 *
 * Memory.  cmark-gfm 0.29.0.gfm.6 (Debian 12) allocates through a parser's
 * cmark_mem for everything a parse makes: cmark_parser_new_with_mem keeps
 * it, and the parser, its line buffers, reference map, nodes, inline
 * delimiters, node strings (cmark_node_get_literal, _get_url and the like
 * convert a chunk to a C string in the node's mem), iterators
 * (cmark_iter_new takes the root's mem) and the extensions' own data (the
 * table extension's rows, cells and alignments, the tasklist state, the
 * autolink extension's new nodes, cmark_parser_attach_syntax_extension's
 * list) all come from it, and cmark_node_free / cmark_parser_free give
 * them back there.  cmark's default allocator (calloc or abort()) serves
 * only what takes no mem: cmark_parser_new, cmark_node_new,
 * cmark_markdown_to_html, cmark_parse_document and the extension registry
 * (cmark_gfm_core_extensions_ensure_registered: the plugin, each
 * cmark_syntax_extension, its name and special-character list, and the
 * global list cmark_find_syntax_extension reads, which itself allocates
 * nothing).  None of the first four is called here; the registry is made
 * once per process, by content.c before anything else (see there).  The
 * renderers (cmark_render_*) are not used: this file writes the storage
 * format itself.  The table extension's cmark_arena_push/pop act only on
 * cmark's arena allocator, which nothing here uses.  test_storage.c checks
 * this against the installed library: with cmark's default allocator
 * counting its calls, converting, checking and comparing documents that
 * use every extension make none.
 *
 * The allocator a caller passes may leave by longjmp (palloc's ERROR).
 * cmark-gfm then stops mid-parse with only its mem's memory in use, and
 * one process-wide table changed: the inline parser's special characters,
 * which a parse sets from its extensions (strikethrough's '~', the
 * autolinks' ':', 'w' and '@') and clears at its end.  Every parser here
 * attaches the same extensions and sets those characters again, so a
 * later parse reads the same table either way.  This file allocates
 * through the allocator only while no libxml2 object (which comes from
 * malloc) is alive, so a longjmp leaks none: the prologues are built
 * before a parser starts, and the comparison's text buffers are sized
 * before the trees are parsed (no run of text in a tree is longer than its
 * body, so they never grow while the trees exist).
 *
 * IDENTIFICATION
 *		  src/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "storage.h"
#include "html_entities.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlversion.h>

/*
 * libxml2 2.12 passes the structured error callback a const xmlError
 * (Debian 12 and 13 have 2.9, forky and sid 2.15).
 */
#if LIBXML_VERSION >= 21200
typedef const xmlError *CfdwXmlErrorPtr;
#else
typedef xmlError *CfdwXmlErrorPtr;
#endif

/* Deepest element nesting the converter opens (libxml2 stops at 256). */
#define MAX_NEST 128

/* ---------------------------------------------------------------- buffer */

/* A buffer with room for cap - 1 bytes and the NUL before it grows. */
static void
buf_init_cap(CfdwBuf *buf, cmark_mem *mem, size_t cap)
{
	buf->mem = mem;
	buf->cap = cap < 256 ? 256 : cap;
	buf->len = 0;
	buf->data = mem->calloc(1, buf->cap);
}

void
cfdw_buf_init(CfdwBuf *buf, cmark_mem *mem)
{
	buf_init_cap(buf, mem, 256);
}

void
cfdw_buf_free(CfdwBuf *buf)
{
	buf->mem->free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

/*
 * Room for n more bytes and the NUL.  A cmark_mem allocator never returns
 * NULL: it aborts (cmark's default) or raises an ERROR (content.c's).
 */
static void
buf_reserve(CfdwBuf *buf, size_t n)
{
	size_t		need = buf->len + n + 1;

	if (need <= buf->cap)
		return;
	while (buf->cap < need)
		buf->cap *= 2;
	buf->data = buf->mem->realloc(buf->data, buf->cap);
}

static void
buf_put(CfdwBuf *buf, const char *s, size_t n)
{
	buf_reserve(buf, n);
	memcpy(buf->data + buf->len, s, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

static void
buf_puts(CfdwBuf *buf, const char *s)
{
	buf_put(buf, s, strlen(s));
}

/* ---------------------------------------------------------------- escaping */

typedef enum EscapeMode
{
	ESC_TEXT,					/* element content: & < > */
	ESC_ATTR,					/* a "-quoted attribute: & < > " and breaks */
	ESC_CDATA					/* inside CDATA: only ]]> needs care */
} EscapeMode;

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes) that XML 1.0
 * allows as a character, or 0: invalid UTF-8, overlong forms, surrogates,
 * U+FFFE and U+FFFF, and C0 controls other than tab, LF and CR are not.
 */
static size_t
xml_char_len(const unsigned char *s, size_t n)
{
	unsigned int c = s[0];
	size_t		len;
	unsigned int cp;

	if (c < 0x80)
		return (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') ? 1 : 0;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF)
		return 0;
	return len;
}

/* Append s escaped for mode; what XML cannot hold becomes U+FFFD. */
static void
put_escaped(CfdwBuf *buf, const char *s, size_t n, EscapeMode mode)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	buf_reserve(buf, n);
	while (i < n)
	{
		size_t		run = i;

		/* copy the longest run that needs nothing, in one go */
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 &&
			   p[run] != '&' && p[run] != '<' && p[run] != '>' &&
			   p[run] != '"' && p[run] != ']')
			run++;
		if (run > i)
		{
			buf_put(buf, s + i, run - i);
			i = run;
			continue;
		}

		if (mode == ESC_CDATA && n - i >= 3 && memcmp(s + i, "]]>", 3) == 0)
		{
			/* end this CDATA section between ]] and >, then start another */
			buf_puts(buf, "]]]]><![CDATA[>");
			i += 3;
			continue;
		}
		if (mode != ESC_CDATA && p[i] == '&')
			buf_puts(buf, "&amp;");
		else if (mode != ESC_CDATA && p[i] == '<')
			buf_puts(buf, "&lt;");
		else if (mode != ESC_CDATA && p[i] == '>')
			buf_puts(buf, "&gt;");
		else if (mode == ESC_ATTR && p[i] == '"')
			buf_puts(buf, "&quot;");
		else if (mode == ESC_ATTR && (p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
			buf_puts(buf, " ");
		else
		{
			size_t		len = xml_char_len(p + i, n - i);

			if (len == 0)
			{
				/*
				 * One U+FFFD for the sequence, not one per byte: a lead
				 * byte takes the continuation bytes it announces along
				 * (U+FFFF is one character, a truncated sequence one
				 * fault).
				 */
				size_t		want = p[i] >= 0xF0 ? 4 : p[i] >= 0xE0 ? 3 : p[i] >= 0xC0 ? 2 : 1;

				buf_puts(buf, "\xEF\xBF\xBD");
				i++;
				while (--want > 0 && i < n && (p[i] & 0xC0) == 0x80)
					i++;
				continue;
			}
			buf_put(buf, s + i, len);
			i += len;
			continue;
		}
		i++;
	}
}

static void
put_text(CfdwBuf *buf, const char *s)
{
	if (s)
		put_escaped(buf, s, strlen(s), ESC_TEXT);
}

/* ---------------------------------------------------------------- plain text */

static bool
blank_line(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return false;
	return true;
}

void
cfdw_text_to_storage(const char *text, size_t len, CfdwBuf *out)
{
	size_t		pos = 0;
	bool		in_para = false;

	while (pos < len)
	{
		size_t		end = pos;
		size_t		next;

		while (end < len && text[end] != '\n' && text[end] != '\r')
			end++;
		next = end;
		if (next < len && text[next] == '\r')
			next++;
		if (next < len && text[next] == '\n' && (next == end || text[end] == '\r'))
			next++;

		if (blank_line(text + pos, end - pos))
		{
			/* a line per paragraph, as the Markdown converter writes */
			if (in_para)
				buf_puts(out, "</p>\n");
			in_para = false;
		}
		else
		{
			buf_puts(out, in_para ? "<br />" : "<p>");
			put_escaped(out, text + pos, end - pos, ESC_TEXT);
			in_para = true;
		}
		pos = next;
	}
	if (in_para)
		buf_puts(out, "</p>\n");
}

/* ---------------------------------------------------------------- Markdown */

/*
 * Languages Confluence's code macro highlights, and what Markdown authors
 * call them.  Anything else gets no language: Confluence does not render a
 * code block whose language it does not know.
 */
static const struct
{
	const char *alias;
	const char *language;
} code_languages[] = {
	{"actionscript", "actionscript3"}, {"actionscript3", "actionscript3"},
	{"applescript", "applescript"}, {"bash", "bash"}, {"sh", "bash"},
	{"shell", "bash"}, {"zsh", "bash"}, {"console", "bash"},
	{"c", "c"}, {"h", "c"}, {"c#", "csharp"}, {"cs", "csharp"},
	{"csharp", "csharp"}, {"c++", "cpp"}, {"cpp", "cpp"}, {"cc", "cpp"},
	{"hpp", "cpp"}, {"coldfusion", "coldfusion"}, {"css", "css"},
	{"delphi", "delphi"}, {"pascal", "delphi"}, {"diff", "diff"},
	{"patch", "diff"}, {"erlang", "erlang"}, {"erl", "erlang"}, {"go", "go"},
	{"golang", "go"}, {"groovy", "groovy"}, {"html", "html"}, {"xml", "xml"},
	{"xhtml", "xml"}, {"svg", "xml"}, {"java", "java"}, {"javafx", "javafx"},
	{"javascript", "javascript"}, {"js", "javascript"}, {"jsx", "javascript"}, {"json", "json"},
	{"kotlin", "kotlin"}, {"kt", "kotlin"}, {"perl", "perl"}, {"pl", "perl"},
	{"php", "php"}, {"powershell", "powershell"}, {"ps1", "powershell"},
	{"python", "python"}, {"py", "python"}, {"python3", "python"}, {"ruby", "ruby"},
	{"rb", "ruby"}, {"rust", "rust"}, {"rs", "rust"}, {"sass", "sass"},
	{"scss", "sass"}, {"scala", "scala"}, {"sql", "sql"}, {"plpgsql", "sql"},
	{"psql", "sql"}, {"pgsql", "sql"}, {"postgresql", "sql"},
	{"typescript", "typescript"}, {"ts", "typescript"}, {"vb", "vb"},
	{"vbnet", "vb"}, {"yaml", "yaml"}, {"yml", "yaml"},
};

/* The code macro language for a fence's info string, or NULL. */
static const char *
code_language(const char *info)
{
	char		word[32];
	size_t		n = 0;

	if (info == NULL)
		return NULL;
	while (*info == ' ' || *info == '\t')
		info++;
	while (info[n] && info[n] != ' ' && info[n] != '\t' && info[n] != '{' &&
		   n < sizeof(word) - 1)
	{
		word[n] = info[n];
		n++;
	}
	word[n] = '\0';
	for (size_t i = 0; i < sizeof(code_languages) / sizeof(code_languages[0]); i++)
		if (strcasecmp(word, code_languages[i].alias) == 0)
			return code_languages[i].language;
	return NULL;
}

/*
 * GitHub alerts, "> [!NOTE]" on the first line of a quote, and the panel
 * macro each becomes (kovetskiy/mark's mapping: Confluence's note panel is
 * the yellow one, its warning panel the red one).
 */
static const struct
{
	const char *marker;
	const char *macro;
} alerts[] = {
	{"[!NOTE]", "info"}, {"[!TIP]", "tip"}, {"[!IMPORTANT]", "info"},
	{"[!WARNING]", "note"}, {"[!CAUTION]", "warning"},
};

/* What the renderer remembers of a node between entering and leaving it. */
#define NODE_FLAT	0x100		/* too deep: its tags were not written */
#define NODE_ALERT	0x0FF		/* 1 + index in alerts[], or 0 */
#define NODE_TASKS	0x200		/* a list written as ac:task-list */
#define NODE_LEVELS_SHIFT 12	/* bits 12-13: the levels its tags open */

typedef struct Render
{
	CfdwBuf    *out;
	int			depth;			/* elements open */
	int			next_task_id;
} Render;

static int
node_flags(cmark_node *node)
{
	return (int) (intptr_t) cmark_node_get_user_data(node);
}

static void
set_node_flags(cmark_node *node, int flags)
{
	cmark_node_set_user_data(node, (void *) (intptr_t) flags);
}

static bool
node_is(cmark_node *node, const char *type_string)
{
	const char *t = cmark_node_get_type_string(node);

	return t != NULL && strcmp(t, type_string) == 0;
}

/*
 * If this quote is a GitHub alert, take the marker out of its first
 * paragraph (and the line break after it, and the paragraph if nothing is
 * left) and return 1 + the alert's index; else 0.
 */
static int
take_alert(cmark_node *quote)
{
	cmark_node *para = cmark_node_first_child(quote);
	cmark_node *first = para ? cmark_node_first_child(para) : NULL;
	cmark_node *after = first;
	char		marker[16];
	size_t		len = 0;

	if (first == NULL || cmark_node_get_type(para) != CMARK_NODE_PARAGRAPH)
		return 0;

	/*
	 * The first line's text: cmark splits "[!NOTE]" into several text
	 * nodes ("[", "!NOTE", "]"), so read them together.
	 */
	while (after && cmark_node_get_type(after) == CMARK_NODE_TEXT)
	{
		const char *lit = cmark_node_get_literal(after);
		size_t		n = lit ? strlen(lit) : 0;

		if (len + n >= sizeof(marker))
			return 0;
		memcpy(marker + len, lit, n);
		len += n;
		after = cmark_node_next(after);
	}
	while (len > 0 && (marker[len - 1] == ' ' || marker[len - 1] == '\t'))
		len--;
	marker[len] = '\0';
	/* the marker must be alone on its line */
	if (after && cmark_node_get_type(after) != CMARK_NODE_SOFTBREAK &&
		cmark_node_get_type(after) != CMARK_NODE_LINEBREAK)
		return 0;
	for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++)
	{
		if (strcasecmp(marker, alerts[i].marker) != 0)
			continue;
		while (cmark_node_first_child(para) != after)
			cmark_node_free(cmark_node_first_child(para));
		if (after)
			cmark_node_free(after);
		if (cmark_node_first_child(para) == NULL)
			cmark_node_free(para);
		return (int) i + 1;
	}
	return 0;
}

/* Whether every item of this list is a task ("- [ ]" or "- [x]"). */
static bool
all_tasks(cmark_node *list)
{
	cmark_node *item = cmark_node_first_child(list);

	if (item == NULL)
		return false;
	for (; item; item = cmark_node_next(item))
		if (!node_is(item, "tasklist"))
			return false;
	return true;
}

/* Whether a paragraph's <p> is left out, as in a tight list's items. */
static bool
tight_paragraph(cmark_node *para)
{
	cmark_node *item = cmark_node_parent(para);
	cmark_node *list = item ? cmark_node_parent(item) : NULL;

	return list && cmark_node_get_type(item) == CMARK_NODE_ITEM &&
		cmark_node_get_type(list) == CMARK_NODE_LIST && cmark_node_get_list_tight(list);
}

/*
 * Schemes a link may not have: they run code in the reader's browser.
 * Browsers drop leading controls and spaces from a URL and tabs and line
 * breaks anywhere in it, so " javascript:" (a destination may begin with
 * "&#32;") and "java&#9;script:" are read the same way here.
 */
static bool
dangerous_url(const char *url)
{
	static const char *const schemes[] = {"javascript:", "vbscript:", "file:", "data:"};
	char		lower[16];
	size_t		n = 0;

	for (; *url && n < sizeof(lower) - 1; url++)
	{
		unsigned char c = (unsigned char) *url;

		if ((n == 0 && c <= ' ') || c == '\t' || c == '\n' || c == '\r')
			continue;
		lower[n++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
	}
	lower[n] = '\0';
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(lower, schemes[i], strlen(schemes[i])) == 0)
			return true;
	return false;
}

/*
 * Whether url names a scheme ("https:", "mailto:") or a host
 * ("//cdn.example.com/logo.png", scheme-relative), not a file name.
 */
static bool
is_url(const char *url)
{
	size_t		i = 0;

	if (url[0] == '/' && url[1] == '/')
		return true;

	while ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
		   (i > 0 && ((url[i] >= '0' && url[i] <= '9') || url[i] == '+' ||
					  url[i] == '-' || url[i] == '.')))
		i++;
	return i > 1 && url[i] == ':';
}

static void
put_attr(CfdwBuf *out, const char *name, const char *value)
{
	buf_puts(out, " ");
	buf_puts(out, name);
	buf_puts(out, "=\"");
	put_escaped(out, value, strlen(value), ESC_ATTR);
	buf_puts(out, "\"");
}

/* The text of a subtree (an image's alt text), escaped for an attribute. */
static void
put_plain_attr(CfdwBuf *out, cmark_node *root)
{
	cmark_iter *iter = cmark_iter_new(root);
	cmark_event_type ev;

	while ((ev = cmark_iter_next(iter)) != CMARK_EVENT_DONE)
	{
		cmark_node *node = cmark_iter_get_node(iter);
		cmark_node_type type = cmark_node_get_type(node);

		if (ev != CMARK_EVENT_ENTER)
			continue;
		if (type == CMARK_NODE_TEXT || type == CMARK_NODE_CODE ||
			type == CMARK_NODE_HTML_INLINE)
		{
			const char *lit = cmark_node_get_literal(node);

			put_escaped(out, lit, strlen(lit), ESC_ATTR);
		}
		else if (type == CMARK_NODE_SOFTBREAK || type == CMARK_NODE_LINEBREAK)
			buf_puts(out, " ");
	}
	cmark_iter_free(iter);
}

static void
render_image(Render *r, cmark_node *node)
{
	const char *url = cmark_node_get_url(node);
	const char *title = cmark_node_get_title(node);

	/* as for links: a script URL is no image, its alt text is what stays */
	if (url && dangerous_url(url))
	{
		put_plain_attr(r->out, node);
		return;
	}
	buf_puts(r->out, "<ac:image ac:alt=\"");
	put_plain_attr(r->out, node);
	buf_puts(r->out, "\"");
	if (title && *title)
		put_attr(r->out, "ac:title", title);
	if (url == NULL || is_url(url))
	{
		buf_puts(r->out, "><ri:url");
		put_attr(r->out, "ri:value", url ? url : "");
	}
	else
	{
		/* a bare name: an attachment of the page */
		buf_puts(r->out, "><ri:attachment");
		put_attr(r->out, "ri:filename", url);
	}
	buf_puts(r->out, " /></ac:image>");
}

static void
render_code_block(Render *r, cmark_node *node)
{
	const char *code = cmark_node_get_literal(node);
	size_t		len = code ? strlen(code) : 0;
	const char *language = NULL;

	int			fence_len;
	int			fence_offset;
	char		fence_char;

	if (cmark_node_get_fenced(node, &fence_len, &fence_offset, &fence_char))
		language = code_language(cmark_node_get_fence_info(node));
	if (len > 0 && code[len - 1] == '\n')
		len--;
	buf_puts(r->out, "<ac:structured-macro ac:name=\"code\" ac:schema-version=\"1\">");
	if (language)
	{
		buf_puts(r->out, "<ac:parameter ac:name=\"language\">");
		buf_puts(r->out, language);
		buf_puts(r->out, "</ac:parameter>");
	}
	buf_puts(r->out, "<ac:plain-text-body><![CDATA[");
	put_escaped(r->out, code ? code : "", len, ESC_CDATA);
	buf_puts(r->out, "]]></ac:plain-text-body></ac:structured-macro>");
}

/* A raw HTML block, shown as the text it is. */
static void
render_html_block(Render *r, cmark_node *node)
{
	const char *html = cmark_node_get_literal(node);
	size_t		len = html ? strlen(html) : 0;

	while (len > 0 && (html[len - 1] == '\n' || html[len - 1] == '\r'))
		len--;
	buf_puts(r->out, "<p>");
	put_escaped(r->out, html ? html : "", len, ESC_TEXT);
	buf_puts(r->out, "</p>");
}

/* The opening tag of a table cell, with its column's alignment. */
static void
open_cell(Render *r, cmark_node *cell)
{
	cmark_node *row = cmark_node_parent(cell);
	cmark_node *table = row ? cmark_node_parent(row) : NULL;
	bool		header = row && cmark_gfm_extensions_get_table_row_is_header(row);
	uint8_t    *align = table ? cmark_gfm_extensions_get_table_alignments(table) : NULL;
	uint16_t	ncols = table ? cmark_gfm_extensions_get_table_columns(table) : 0;
	int			col = 0;

	for (cmark_node *c = cmark_node_first_child(row); c && c != cell; c = cmark_node_next(c))
		col++;
	buf_puts(r->out, header ? "<th" : "<td");
	if (align && col < ncols && align[col] == 'c')
		buf_puts(r->out, " style=\"text-align: center;\"");
	else if (align && col < ncols && align[col] == 'r')
		buf_puts(r->out, " style=\"text-align: right;\"");
	buf_puts(r->out, ">");
}

/*
 * The opening (or, on exit, closing) tags of a container node that
 * known_container() says has tags.  Returns false for any other.
 */
static bool
container_tags(Render *r, cmark_node *node, bool enter)
{
	CfdwBuf    *out = r->out;
	int			flags = node_flags(node);

	switch (cmark_node_get_type(node))
	{
		case CMARK_NODE_PARAGRAPH:
			if (!tight_paragraph(node))
				buf_puts(out, enter ? "<p>" : "</p>");
			return true;
		case CMARK_NODE_HEADING:
			{
				char		tag[8];

				snprintf(tag, sizeof(tag), enter ? "<h%d>" : "</h%d>",
						 cmark_node_get_heading_level(node));
				buf_puts(out, tag);
				return true;
			}
		case CMARK_NODE_BLOCK_QUOTE:
			if ((flags & NODE_ALERT) == 0)
				buf_puts(out, enter ? "<blockquote>" : "</blockquote>");
			else if (enter)
			{
				buf_puts(out, "<ac:structured-macro ac:name=\"");
				buf_puts(out, alerts[(flags & NODE_ALERT) - 1].macro);
				buf_puts(out, "\" ac:schema-version=\"1\"><ac:rich-text-body>");
			}
			else
				buf_puts(out, "</ac:rich-text-body></ac:structured-macro>");
			return true;
		case CMARK_NODE_LIST:
			if (flags & NODE_TASKS)
				buf_puts(out, enter ? "<ac:task-list>" : "</ac:task-list>");
			else if (cmark_node_get_list_type(node) == CMARK_ORDERED_LIST)
			{
				char		tag[32];

				if (!enter)
					buf_puts(out, "</ol>");
				else if (cmark_node_get_list_start(node) != 1)
				{
					snprintf(tag, sizeof(tag), "<ol start=\"%d\">",
							 cmark_node_get_list_start(node));
					buf_puts(out, tag);
				}
				else
					buf_puts(out, "<ol>");
			}
			else
				buf_puts(out, enter ? "<ul>" : "</ul>");
			return true;
		case CMARK_NODE_ITEM:
			if ((node_flags(cmark_node_parent(node)) & NODE_TASKS) == 0)
				buf_puts(out, enter ? "<li>" : "</li>");
			else if (enter)
			{
				char		id[64];

				snprintf(id, sizeof(id), "<ac:task><ac:task-id>%d</ac:task-id>",
						 r->next_task_id++);
				buf_puts(out, id);
				buf_puts(out, cmark_gfm_extensions_get_tasklist_item_checked(node) ?
						 "<ac:task-status>complete</ac:task-status>" :
						 "<ac:task-status>incomplete</ac:task-status>");
				buf_puts(out, "<ac:task-body>");
			}
			else
				buf_puts(out, "</ac:task-body></ac:task>");
			return true;
		case CMARK_NODE_EMPH:
			buf_puts(out, enter ? "<em>" : "</em>");
			return true;
		case CMARK_NODE_STRONG:
			buf_puts(out, enter ? "<strong>" : "</strong>");
			return true;
		case CMARK_NODE_LINK:
			if (dangerous_url(cmark_node_get_url(node)))
				return true;	/* the link text, without the link */
			if (!enter)
				buf_puts(out, "</a>");
			else
			{
				const char *title = cmark_node_get_title(node);

				buf_puts(out, "<a");
				put_attr(out, "href", cmark_node_get_url(node));
				if (title && *title)
					put_attr(out, "title", title);
				buf_puts(out, ">");
			}
			return true;
		default:
			break;
	}

	/* the extensions' nodes */
	if (node_is(node, "table"))
		buf_puts(out, enter ? "<table><tbody>" : "</tbody></table>");
	else if (node_is(node, "table_header") || node_is(node, "table_row"))
		buf_puts(out, enter ? "<tr>" : "</tr>");
	else if (node_is(node, "table_cell"))
	{
		if (enter)
			open_cell(r, node);
		else
			buf_puts(out, cmark_gfm_extensions_get_table_row_is_header(cmark_node_parent(node)) ?
					 "</th>" : "</td>");
	}
	else if (node_is(node, "strikethrough"))
		buf_puts(out, enter ? "<del>" : "</del>");
	else
		return false;
	return true;
}

/* Whether the converter writes tags for this container. */
static bool
known_container(cmark_node *node)
{
	static const char *const extension_types[] = {
		"table", "table_header", "table_row", "table_cell", "strikethrough"
	};

	switch (cmark_node_get_type(node))
	{
		case CMARK_NODE_PARAGRAPH:
			return !tight_paragraph(node);
		case CMARK_NODE_LINK:
			return !dangerous_url(cmark_node_get_url(node));
		case CMARK_NODE_HEADING:
		case CMARK_NODE_BLOCK_QUOTE:
		case CMARK_NODE_LIST:
		case CMARK_NODE_ITEM:
		case CMARK_NODE_EMPH:
		case CMARK_NODE_STRONG:
			return true;
		default:
			break;
	}
	for (size_t i = 0; i < sizeof(extension_types) / sizeof(extension_types[0]); i++)
		if (node_is(node, extension_types[i]))
			return true;
	return false;
}

/* Levels of element a container's tags open, for the depth limit. */
static int
container_levels(cmark_node *node)
{
	int			flags = node_flags(node);

	if (!known_container(node))
		return 0;
	if (cmark_node_get_type(node) == CMARK_NODE_BLOCK_QUOTE && (flags & NODE_ALERT))
		return 2;
	if (cmark_node_get_type(node) == CMARK_NODE_ITEM &&
		(node_flags(cmark_node_parent(node)) & NODE_TASKS))
		return 3;				/* ac:task, ac:task-body (counted with room) */
	if (node_is(node, "table"))
		return 2;
	return 1;
}

/*
 * A task item in a list whose items are not all tasks is written as an
 * <li>, since an ac:task-list holds only tasks.  cmark took its "[ ]" or
 * "[x]" out of the text; put it back at the start of the item's first
 * paragraph (or of the item, when that starts with something else) so
 * the state is not lost.  Called on entering each container.
 */
static void
put_lone_task_marker(Render *r, cmark_node *node)
{
	cmark_node *item = node;
	cmark_node *list;

	if (cmark_node_get_type(node) == CMARK_NODE_PARAGRAPH)
	{
		item = cmark_node_parent(node);
		if (item == NULL || cmark_node_first_child(item) != node)
			return;
	}
	else if (cmark_node_get_type(node) != CMARK_NODE_ITEM ||
			 cmark_node_get_type(cmark_node_first_child(node)) == CMARK_NODE_PARAGRAPH)
		return;
	list = cmark_node_parent(item);
	if (cmark_node_get_type(item) != CMARK_NODE_ITEM || !node_is(item, "tasklist") ||
		list == NULL || (node_flags(list) & NODE_TASKS))
		return;
	buf_puts(r->out, cmark_gfm_extensions_get_tasklist_item_checked(item) ? "[x] " : "[ ] ");
}

/*
 * A node with children: its tags, unless nested too deep (then it is
 * marked flat on the way in, and its end tag is left out on the way out).
 */
static void
render_container(Render *r, cmark_node *node, bool enter)
{
	int			flags;
	int			levels;

	if (enter)
	{
		flags = 0;
		if (cmark_node_get_type(node) == CMARK_NODE_BLOCK_QUOTE)
			flags = take_alert(node);
		else if (cmark_node_get_type(node) == CMARK_NODE_LIST && all_tasks(node))
			flags = NODE_TASKS;
		set_node_flags(node, flags);
		/* worked out once: the exit event reads it back */
		levels = container_levels(node);
		flags |= levels << NODE_LEVELS_SHIFT;
		if (r->depth + levels > MAX_NEST)
			flags |= NODE_FLAT;
		set_node_flags(node, flags);
	}
	flags = node_flags(node);
	levels = (flags >> NODE_LEVELS_SHIFT) & 3;
	if ((flags & NODE_FLAT) == 0)
	{
		if (!enter)
			r->depth -= levels;
		if (levels > 0)
			container_tags(r, node, enter);
		if (enter)
			r->depth += levels;
	}
	else if (enter &&
			 (cmark_node_get_type(node) & CMARK_NODE_TYPE_MASK) == CMARK_NODE_TYPE_BLOCK &&
			 r->out->len > 0 && r->out->data[r->out->len - 1] != '>' &&
			 r->out->data[r->out->len - 1] != '\n')
	{
		/*
		 * A block without its tags: a line break keeps its text from
		 * running into the text before it ("level 64level 65").  Text
		 * never ends in a raw '>', so after one there is a tag.
		 */
		buf_puts(r->out, "\n");
	}
	if (enter)
		put_lone_task_marker(r, node);
}

/* Whether cmark's iterator gives this node an exit event too. */
static bool
is_leaf(cmark_node *node)
{
	switch (cmark_node_get_type(node))
	{
		case CMARK_NODE_TEXT:
		case CMARK_NODE_SOFTBREAK:
		case CMARK_NODE_LINEBREAK:
		case CMARK_NODE_CODE:
		case CMARK_NODE_HTML_INLINE:
		case CMARK_NODE_HTML_BLOCK:
		case CMARK_NODE_CODE_BLOCK:
		case CMARK_NODE_THEMATIC_BREAK:
		case CMARK_NODE_FOOTNOTE_REFERENCE:
			return true;
		default:
			return false;
	}
}

/* A node without children (or whose children it writes itself). */
static void
render_leaf(Render *r, cmark_node *node)
{
	CfdwBuf    *out = r->out;

	switch (cmark_node_get_type(node))
	{
		case CMARK_NODE_TEXT:
			put_text(out, cmark_node_get_literal(node));
			break;
		case CMARK_NODE_SOFTBREAK:
			buf_puts(out, "\n");
			break;
		case CMARK_NODE_LINEBREAK:
			buf_puts(out, "<br />");
			break;
		case CMARK_NODE_CODE:
			buf_puts(out, "<code>");
			put_text(out, cmark_node_get_literal(node));
			buf_puts(out, "</code>");
			break;
		case CMARK_NODE_HTML_INLINE:
			put_text(out, cmark_node_get_literal(node));
			break;
		case CMARK_NODE_HTML_BLOCK:
			render_html_block(r, node);
			break;
		case CMARK_NODE_CODE_BLOCK:
			render_code_block(r, node);
			break;
		case CMARK_NODE_THEMATIC_BREAK:
			buf_puts(out, "<hr />");
			break;
		case CMARK_NODE_IMAGE:
			render_image(r, node);
			break;
		default:
			/* anything else (footnotes are not enabled): its text */
			put_text(out, cmark_node_get_literal(node));
			break;
	}
}

static cmark_parser *
new_parser(cmark_mem *mem)
{
	static const char *const extensions[] = {"table", "strikethrough", "autolink", "tasklist"};
	cmark_parser *parser;

	cmark_gfm_core_extensions_ensure_registered();
	parser = cmark_parser_new_with_mem(CMARK_OPT_VALIDATE_UTF8, mem);
	for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++)
	{
		cmark_syntax_extension *ext = cmark_find_syntax_extension(extensions[i]);

		if (ext)
			cmark_parser_attach_syntax_extension(parser, ext);
	}
	return parser;
}

void
cfdw_markdown_to_storage(const char *md, size_t len, CfdwBuf *out)
{
	cmark_parser *parser = new_parser(out->mem);
	cmark_node *doc;
	cmark_iter *iter;
	cmark_event_type ev;
	Render		r = {out, 0, 1};

	cmark_parser_feed(parser, md, len);
	doc = cmark_parser_finish(parser);
	iter = cmark_iter_new(doc);
	while ((ev = cmark_iter_next(iter)) != CMARK_EVENT_DONE)
	{
		cmark_node *node = cmark_iter_get_node(iter);

		if (cmark_node_get_type(node) == CMARK_NODE_DOCUMENT)
			continue;
		if (cmark_node_get_type(node) == CMARK_NODE_IMAGE)
		{
			/* an image writes its alt text itself: skip its children */
			if (ev == CMARK_EVENT_ENTER)
			{
				render_leaf(&r, node);
				cmark_iter_reset(iter, node, CMARK_EVENT_EXIT);
			}
		}
		else if (is_leaf(node))
			render_leaf(&r, node);
		else
		{
			render_container(&r, node, ev == CMARK_EVENT_ENTER);

			/*
			 * take_alert() may have freed the quote's first paragraph, the
			 * node the iterator had already chosen to visit next: step on
			 * from the quote as it is now.
			 */
			if (ev == CMARK_EVENT_ENTER &&
				cmark_node_get_type(node) == CMARK_NODE_BLOCK_QUOTE)
				cmark_iter_reset(iter, node, CMARK_EVENT_ENTER);
		}

		/* a line per top-level block, for whoever reads or diffs the body */
		if (cmark_node_parent(node) == doc &&
			(ev == CMARK_EVENT_EXIT || is_leaf(node)))
			buf_puts(out, "\n");
	}
	cmark_iter_free(iter);
	cmark_node_free(doc);
	cmark_parser_free(parser);
}

/* ---------------------------------------------------------------- the check */

/* The namespaces Confluence's storage format uses. */
#define ROOT_OPEN "<cfdw-storage xmlns:ac=\"http://atlassian.com/content\" " \
	"xmlns:ri=\"http://atlassian.com/resource/identifier\" " \
	"xmlns:at=\"http://atlassian.com/template\">"
#define ROOT_NAME "cfdw-storage"
#define ROOT_CLOSE "</cfdw-storage>"

/*
 * The line that goes before a body: a DOCTYPE declaring each HTML entity
 * the body names (and only those: an unknown one stays undeclared, which
 * is the fault to report), then the root element binding the prefixes.
 * All on one line, so a fault's line number is the body's, and only
 * columns on line 1 need the prologue's length taken off.
 */
static int
html_entity_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const CfdwHtmlEntity *) elem)->name);
}

/* HTML 4.01's named character reference NAME, or NULL */
static const CfdwHtmlEntity *
html_entity(const char *name)
{
	return bsearch(name, cfdw_html_entities,
				   sizeof(cfdw_html_entities) / sizeof(cfdw_html_entities[0]),
				   sizeof(cfdw_html_entities[0]), html_entity_cmp);
}

static void
build_prologue(const char *body, size_t len, CfdwBuf *pro)
{
	const char *declared[256];
	int			ndeclared = 0;

	buf_puts(pro, "<!DOCTYPE " ROOT_NAME " [");
	for (size_t i = 0; i < len; i++)
	{
		char		name[33];
		size_t		n = 0;
		const CfdwHtmlEntity *ent;
		bool		seen = false;
		char		decl[96];

		if (body[i] != '&')
			continue;
		while (i + 1 + n < len && n < sizeof(name) - 1 &&
			   ((body[i + 1 + n] >= 'a' && body[i + 1 + n] <= 'z') ||
				(body[i + 1 + n] >= 'A' && body[i + 1 + n] <= 'Z') ||
				(n > 0 && body[i + 1 + n] >= '0' && body[i + 1 + n] <= '9')))
		{
			name[n] = body[i + 1 + n];
			n++;
		}
		name[n] = '\0';
		if (n == 0 || i + 1 + n >= len || body[i + 1 + n] != ';')
			continue;
		ent = html_entity(name);
		if (ent == NULL || strcmp(name, "amp") == 0 || strcmp(name, "lt") == 0 ||
			strcmp(name, "gt") == 0 || strcmp(name, "quot") == 0 || strcmp(name, "apos") == 0)
			continue;
		for (int k = 0; k < ndeclared && !seen; k++)
			seen = (declared[k] == (const char *) ent->name);
		if (seen || ndeclared == (int) (sizeof(declared) / sizeof(declared[0])))
			continue;
		declared[ndeclared++] = (const char *) ent->name;
		snprintf(decl, sizeof(decl), "<!ENTITY %s \"&#%u;\">", ent->name, ent->codepoint);
		buf_puts(pro, decl);
	}
	buf_puts(pro, "]>" ROOT_OPEN);
}

/* The parser's first error, recorded by the SAX error callback. */
typedef struct CheckState
{
	bool		failed;
	int			line;
	int			column;
	int			code;
	char		message[200];
	char		opened[64];		/* a tag the root's end found still open */
	int			opened_line;
	char		stray[64];		/* an end tag that met only the root open */
} CheckState;

static void
check_error(void *ctx, CfdwXmlErrorPtr error)
{
	xmlParserCtxtPtr parser = ctx;
	CheckState *st = parser->_private;
	size_t		n;

	if (st->failed || error->level < XML_ERR_ERROR)
		return;
	st->failed = true;
	st->line = error->line;
	st->column = error->int2;
	st->code = error->code;
	snprintf(st->message, sizeof(st->message), "%s", error->message ? error->message : "");
	n = strlen(st->message);
	while (n > 0 && (st->message[n - 1] == '\n' || st->message[n - 1] == ' '))
		st->message[--n] = '\0';
	if (error->code == XML_ERR_TAG_NAME_MISMATCH && error->str2 &&
		strcmp(error->str2, ROOT_NAME) == 0 && error->str1)
	{
		snprintf(st->opened, sizeof(st->opened), "%s", error->str1);
		st->opened_line = error->int1;
	}
	/* libxml2 would name our root, which is not in the body */
	if (error->code == XML_ERR_TAG_NAME_MISMATCH && error->str1 &&
		strcmp(error->str1, ROOT_NAME) == 0 && error->str2)
		snprintf(st->stray, sizeof(st->stray), "%s", error->str2);
}

/* Feed a parser len bytes, in pieces an int can count. */
static void
feed(xmlParserCtxtPtr parser, const char *s, size_t len, bool last)
{
	/*
	 * libxml2 before 2.11.3 stops a push parse with "Huge input lookup"
	 * when more than XML_MAX_LOOKUP_LIMIT (10,000,000) bytes of its buffer
	 * are left after one xmlParseChunk(): feed it pieces well below that.
	 */
	const size_t piece = 1 << 20;

	do
	{
		size_t		n = len < piece ? len : piece;

		xmlParseChunk(parser, s, (int) n, last && n == len);
		s += n;
		len -= n;
	} while (len > 0);
}

/* Turn the parser's position into the body's, and its words into ours. */
static void
describe_fault(const CheckState *st, const char *body, size_t len, size_t prologue_len,
			   CfdwXmlFault *fault)
{
	int			lines = 1;
	size_t		last_start = 0;

	for (size_t i = 0; i < len; i++)
		if (body[i] == '\n')
			lines++, last_start = i + 1;
	fault->line = st->line > 0 ? st->line : 1;
	fault->column = st->column > 0 ? st->column : 1;
	if (fault->line == 1)
		fault->column = fault->column > (int) prologue_len ?
			fault->column - (int) prologue_len : 1;
	if (fault->line > lines || (fault->line == lines && fault->column > (int) (len - last_start) + 1))
	{
		/* the fault is in what follows the body: it ends too early */
		fault->line = lines;
		fault->column = (int) (len - last_start) + 1;
	}
	if (st->opened[0])
		snprintf(fault->message, sizeof(fault->message),
				 "element <%s> opened on line %d is not closed", st->opened, st->opened_line);
	else if (st->stray[0])
		snprintf(fault->message, sizeof(fault->message),
				 "end tag </%s> closes no open element", st->stray);
	else if (st->code == XML_ERR_NOT_WELL_BALANCED || st->code == XML_ERR_TAG_NOT_FINISHED)
		snprintf(fault->message, sizeof(fault->message), "the body ends inside an element or tag");
	else if (st->code == XML_ERR_NAME_REQUIRED || st->code == XML_ERR_ENTITYREF_SEMICOL_MISSING)
		snprintf(fault->message, sizeof(fault->message),
				 "an '&' that starts no entity (write &amp; for the character itself)");
	else
		snprintf(fault->message, sizeof(fault->message), "%s", st->message);
}

/*
 * Parse body inside the prologue, calling back only for errors (the tree
 * is not built: a check needs none).  Returns the parser's state.
 */
static void
parse_checked(const char *body, size_t len, const CfdwBuf *pro, CheckState *st)
{
	xmlSAXHandler sax;
	xmlParserCtxtPtr parser;

	xmlInitParser();
	memset(&sax, 0, sizeof(sax));
	xmlSAXVersion(&sax, 2);
	/*
	 * Keep the document and DTD callbacks (entities live there), drop the
	 * rest.  Both element pairs go: libxml2 parses with namespaces (and
	 * reports an unbound prefix) only when a SAX2 handler has the Ns pair
	 * or no element callback at all, and from 2.14 on xmlSAXVersion(2)
	 * fills the SAX1 pair too.
	 */
	sax.startElementNs = NULL;
	sax.endElementNs = NULL;
	sax.startElement = NULL;
	sax.endElement = NULL;
	sax.characters = NULL;
	sax.ignorableWhitespace = NULL;
	sax.cdataBlock = NULL;
	sax.comment = NULL;
	sax.processingInstruction = NULL;
	sax.reference = NULL;
	sax.warning = NULL;
	sax.error = NULL;
	sax.fatalError = NULL;
	sax.serror = check_error;

	parser = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
	if (parser == NULL)
	{
		st->failed = true;
		snprintf(st->message, sizeof(st->message), "libxml2 could not start a parser");
		return;
	}
	parser->_private = st;

	/*
	 * No XML_PARSE_NOERROR: from libxml2 2.13 on it silences the structured
	 * callback as well, and the check would only learn "not well formed".
	 * Nothing reaches stderr without it: errors go to check_error alone.
	 */
	xmlCtxtUseOptions(parser, XML_PARSE_NONET);
	feed(parser, pro->data, pro->len, false);
	if (len > 0)
		feed(parser, body, len, false);
	feed(parser, ROOT_CLOSE, strlen(ROOT_CLOSE), true);
	if (!st->failed && (!parser->wellFormed || !parser->nsWellFormed))
	{
		st->failed = true;
		snprintf(st->message, sizeof(st->message), "not well formed");
	}
	if (parser->myDoc)
		xmlFreeDoc(parser->myDoc);
	xmlFreeParserCtxt(parser);
}

bool
cfdw_storage_check(const char *body, size_t len, CfdwXmlFault *fault, cmark_mem *mem)
{
	CfdwBuf		pro;
	CheckState	st;

	memset(&st, 0, sizeof(st));
	/* before the parser exists: see "Memory" at the top */
	cfdw_buf_init(&pro, mem);
	build_prologue(body, len, &pro);
	parse_checked(body, len, &pro, &st);
	if (st.failed && fault)
		describe_fault(&st, body, len, pro.len, fault);
	cfdw_buf_free(&pro);
	return !st.failed;
}

/* ---------------------------------------------------------------- comparison */

/* Attributes Confluence adds or rewrites when it saves a page. */
static bool
ignored_attribute(xmlAttrPtr attr)
{
	const char *name = (const char *) attr->name;

	return strcmp(name, "macro-id") == 0 || strcmp(name, "local-id") == 0 ||
		strcmp(name, "schema-version") == 0 || strcmp(name, "breakout-mode") == 0 ||
		strcmp(name, "breakout-width") == 0 || strncmp(name, "data-", 5) == 0;
}

/* Elements Confluence adds or renumbers: task ids, table column widths. */
static bool
ignored_element(xmlNodePtr node)
{
	const char *name = (const char *) node->name;

	return strcmp(name, "task-id") == 0 || strcmp(name, "task-uuid") == 0 ||
		strcmp(name, "colgroup") == 0;
}

static const char *
ns_href(xmlNodePtr node)
{
	return node->ns && node->ns->href ? (const char *) node->ns->href : "";
}

/* Append text with runs of white space as one space. */
static void
put_collapsed(CfdwBuf *buf, const char *s)
{
	for (; *s; s++)
	{
		bool		space = (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r');

		if (!space)
			buf_put(buf, s, 1);
		else if (buf->len > 0 && buf->data[buf->len - 1] != ' ')
			buf_put(buf, " ", 1);
	}
}

/*
 * The next thing among siblings that counts: an element, or (returned as
 * NULL with the text in buf, trimmed) the text up to the next element.
 * Sets *done when nothing is left.
 */
static xmlNodePtr
next_item(xmlNodePtr *cur, CfdwBuf *buf, bool *done)
{
	buf->len = 0;
	buf->data[0] = '\0';
	for (;;)
	{
		xmlNodePtr	node = *cur;

		if (node == NULL || node->type == XML_ELEMENT_NODE)
		{
			if (buf->len > 0 && buf->data[buf->len - 1] == ' ')
				buf->data[--buf->len] = '\0';
			if (buf->len > 0)
				return NULL;
			*done = (node == NULL);
			if (node)
				*cur = node->next;
			if (node && ignored_element(node))
				continue;
			return node;
		}
		if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE)
		{
			if (buf->len == 0)
			{
				const char *t = (const char *) node->content;

				while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')
					t++;
				put_collapsed(buf, t);
			}
			else
				put_collapsed(buf, (const char *) node->content);
		}
		*cur = node->next;
	}
}

static bool same_children(xmlNodePtr a, xmlNodePtr b, CfdwBuf *ta, CfdwBuf *tb);

static int
count_attributes(xmlNodePtr node)
{
	int			n = 0;

	for (xmlAttrPtr attr = node->properties; attr; attr = attr->next)
		if (!ignored_attribute(attr))
			n++;
	return n;
}

static bool
same_element(xmlNodePtr a, xmlNodePtr b, CfdwBuf *ta, CfdwBuf *tb)
{
	if (strcmp((const char *) a->name, (const char *) b->name) != 0 ||
		strcmp(ns_href(a), ns_href(b)) != 0 ||
		count_attributes(a) != count_attributes(b))
		return false;
	for (xmlAttrPtr attr = a->properties; attr; attr = attr->next)
	{
		xmlChar    *va;
		xmlChar    *vb;
		bool		same;

		if (ignored_attribute(attr))
			continue;
		va = xmlNodeGetContent((xmlNodePtr) attr);
		vb = attr->ns ? xmlGetNsProp(b, attr->name, attr->ns->href) :
			xmlGetNoNsProp(b, attr->name);
		same = va && vb && strcmp((const char *) va, (const char *) vb) == 0;
		xmlFree(va);
		xmlFree(vb);
		if (!same)
			return false;
	}
	return same_children(a->children, b->children, ta, tb);
}

static bool
same_children(xmlNodePtr a, xmlNodePtr b, CfdwBuf *ta, CfdwBuf *tb)
{
	for (;;)
	{
		bool		done_a = false;
		bool		done_b = false;
		xmlNodePtr	ea = next_item(&a, ta, &done_a);
		xmlNodePtr	eb;
		bool		text_same;

		eb = next_item(&b, tb, &done_b);
		if (done_a || done_b)
			return done_a && done_b;
		if ((ea == NULL) != (eb == NULL))
			return false;
		if (ea == NULL)
		{
			text_same = strcmp(ta->data, tb->data) == 0;
			if (!text_same)
				return false;
			continue;
		}
		/* each buffer is reused below, so compare one element at a time */
		if (!same_element(ea, eb, ta, tb))
			return false;
	}
}

/*
 * Parse a storage body, after its prologue, into a tree (entities
 * replaced), or NULL.
 */
static xmlDocPtr
parse_tree(const char *body, size_t len, const CfdwBuf *pro)
{
	xmlParserCtxtPtr parser;
	xmlDocPtr	doc = NULL;
	CheckState	st;

	memset(&st, 0, sizeof(st));
	xmlInitParser();
	parser = xmlCreatePushParserCtxt(NULL, NULL, NULL, 0, NULL);
	if (parser != NULL)
	{
		/*
		 * Errors as the check sees them, the tree builder's too: it cuts a
		 * text node at XML_MAX_TEXT_LENGTH and reports that without
		 * clearing wellFormed (and, left to itself, on stderr).  Without
		 * XML_PARSE_NOERROR, as in parse_checked.
		 */
		parser->_private = &st;
		parser->sax->serror = check_error;
		xmlCtxtUseOptions(parser, XML_PARSE_NONET | XML_PARSE_NOENT | XML_PARSE_NOCDATA);
		feed(parser, pro->data, pro->len, false);
		if (len > 0)
			feed(parser, body, len, false);
		feed(parser, ROOT_CLOSE, strlen(ROOT_CLOSE), true);
		doc = parser->myDoc;
		if (doc && (st.failed || !parser->wellFormed || !parser->nsWellFormed))
		{
			xmlFreeDoc(doc);
			doc = NULL;
		}
		xmlFreeParserCtxt(parser);
	}
	return doc;
}

int
cfdw_storage_equal(const char *a, size_t alen, const char *b, size_t blen, cmark_mem *mem)
{
	xmlDocPtr	da;
	xmlDocPtr	db;
	CfdwBuf		pa;
	CfdwBuf		pb;
	CfdwBuf		ta;
	CfdwBuf		tb;
	int			result = -1;

	if (alen == blen && memcmp(a, b, alen) == 0)
		return 1;

	/*
	 * Everything from mem before the first tree, libxml2's malloc, exists
	 * (see "Memory" at the top): both prologues, and text buffers each as
	 * long as its body, which is more than any run of text in its tree (an
	 * entity or character reference is never shorter than the character it
	 * stands for, and white space only shrinks when collapsed), so they
	 * never grow.
	 */
	cfdw_buf_init(&pa, mem);
	build_prologue(a, alen, &pa);
	cfdw_buf_init(&pb, mem);
	build_prologue(b, blen, &pb);
	buf_init_cap(&ta, mem, alen + 1);
	buf_init_cap(&tb, mem, blen + 1);
	da = parse_tree(a, alen, &pa);
	db = da ? parse_tree(b, blen, &pb) : NULL;
	if (da && db)
		result = same_children(xmlDocGetRootElement(da)->children,
							   xmlDocGetRootElement(db)->children, &ta, &tb) ? 1 : 0;
	if (da)
		xmlFreeDoc(da);
	if (db)
		xmlFreeDoc(db);
	cfdw_buf_free(&ta);
	cfdw_buf_free(&tb);
	cfdw_buf_free(&pa);
	cfdw_buf_free(&pb);
	return result;
}
