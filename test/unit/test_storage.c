/*-------------------------------------------------------------------------
 *
 * test_storage.c
 *		  Unit tests of src/storage.c: Markdown and plain text to storage
 *		  format against the corpus in test/corpus, the well-formedness
 *		  check and its fault positions, and storage comparison.  No
 *		  PostgreSQL server is needed.
 *
 *		  test_storage CORPUS_DIR...
 *			  convert every NN-name.md (Markdown) and NN-name.txt (plain
 *			  text) in each directory and compare the result byte for byte
 *			  with NN-name.storage, then run the focused tests.
 *		  test_storage --write CORPUS_DIR...
 *			  (re)write each NN-name.storage from the converter instead; the
 *			  files are expected outputs, so read what changed before
 *			  committing it ("make corpus-update" shows the diff).
 *
 * Built and run by "make unit-storage" (gcc), also part of "make unit",
 * and by "make unit-asan" (clang with ASan/UBSan/LSan); see
 * test/unit/unit.mk.  Ends with "storage: N passed, M failed" and exits 1
 * when any check failed.
 *
 * IDENTIFICATION
 *		  test/unit/test_storage.c
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/xmlmemory.h>
#include <libxml/xmlversion.h>

#include "html_entities.h"
#include "storage.h"

/* ---------------------------------------------------------------------
 * A tiny check framework (as in test_pure.c)
 * ---------------------------------------------------------------------
 */

static int	n_passed;
static int	n_failed;
static const char *current_group = "";

static void
check_impl(bool ok, const char *file, int line, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

static void
check_impl(bool ok, const char *file, int line, const char *fmt,...)
{
	va_list		ap;

	if (ok)
	{
		n_passed++;
		return;
	}
	n_failed++;
	fprintf(stderr, "FAIL [%s] %s:%d: ", current_group, file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

#define CHECK(cond, ...) check_impl((cond), __FILE__, __LINE__, __VA_ARGS__)

/* Printable form of at most 200 bytes of s (static rotating buffers). */
static const char *
show_n(const char *s, size_t n)
{
	static char bufs[8][1024];
	static int	next;
	char	   *out = bufs[next++ % 8];
	size_t		o = 0;

	if (s == NULL)
		return "(null)";
	out[o++] = '"';
	for (size_t i = 0; i < n && i < 200; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			o += snprintf(out + o, 1024 - o, "\\x%02x", c);
		else
			out[o++] = c;
	}
	if (n > 200)
		o += snprintf(out + o, 1024 - o, "...");
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static const char *
show(const char *s)
{
	return show_n(s, s ? strlen(s) : 0);
}

/* ---------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------
 */

static cmark_mem *
mem(void)
{
	return cmark_get_default_mem_allocator();
}

/* Markdown to storage in a fresh buffer the caller frees. */
static CfdwBuf
md(const char *s, size_t len)
{
	CfdwBuf		out;

	cfdw_buf_init(&out, mem());
	cfdw_markdown_to_storage(s, len, &out);
	return out;
}

static CfdwBuf
text(const char *s, size_t len)
{
	CfdwBuf		out;

	cfdw_buf_init(&out, mem());
	cfdw_text_to_storage(s, len, &out);
	return out;
}

static int
equal(const char *a, const char *b)
{
	return cfdw_storage_equal(a, strlen(a), b, strlen(b), mem());
}

/* Markdown must convert to exactly expected. */
static void
md_is(const char *in, const char *expected, const char *what)
{
	CfdwBuf		out = md(in, strlen(in));

	CHECK(strcmp(out.data, expected) == 0, "%s: %s gave %s, expected %s",
		  what, show(in), show(out.data), show(expected));
	cfdw_buf_free(&out);
}

/* The Markdown's output holds needle (want) or does not (!want). */
static void
md_has(const char *in, const char *needle, bool want, const char *what)
{
	CfdwBuf		out = md(in, strlen(in));
	bool		has = strstr(out.data, needle) != NULL;

	CHECK(has == want, "%s: %s gave %s, which %s %s", what, show(in), show(out.data),
		  want ? "lacks" : "has", show(needle));
	cfdw_buf_free(&out);
}

/* The output is well formed (the converter's promise). */
static bool
well_formed(const char *s, size_t len, CfdwXmlFault *fault)
{
	CfdwXmlFault local;

	return cfdw_storage_check(s, len, fault ? fault : &local, mem());
}

static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *data = NULL;
	size_t		cap = 0;
	size_t		n = 0;
	size_t		got;

	if (f == NULL)
		return NULL;
	do
	{
		if (cap - n < 65536)
		{
			cap = cap ? cap * 2 : 65536;
			data = realloc(data, cap + 1);
		}
		got = fread(data + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	fclose(f);
	data[n] = '\0';
	*len = n;
	return data;
}

/* ---------------------------------------------------------------------
 * The corpus
 * ---------------------------------------------------------------------
 */

/* The line of s (n bytes) that starts at start, clipped around column col. */
static void
print_line(char sign, const char *s, size_t n, size_t start, size_t col)
{
	size_t		end = start;
	size_t		from;

	while (end < n && s[end] != '\n')
		end++;
	if (start >= n && sign != ' ')
	{
		fprintf(stderr, "%c(end of file)\n", sign);
		return;
	}
	/* long lines (most of the corpus's are) are shown around the difference */
	from = col > 80 ? start + col - 80 : start;
	fprintf(stderr, "%c%s%s\n", sign, from > start ? "..." : "",
			show_n(s + from, end - from));
}

/*
 * A unified-diff-like view of the first difference: the line number and
 * column where expected and actual part, a line of context before, the
 * expected line (-) and the actual one (+).
 */
static void
report_difference(const char *expected_path, const char *input_path,
				  const char *exp, size_t elen, const char *act, size_t alen)
{
	size_t		i = 0;
	size_t		line_start = 0;
	size_t		prev_start = 0;
	int			line = 1;

	while (i < elen && i < alen && exp[i] == act[i])
	{
		if (exp[i] == '\n')
		{
			prev_start = line_start;
			line_start = i + 1;
			line++;
		}
		i++;
	}
	fprintf(stderr, "--- %s (expected)\n+++ %s, converted\n@@ line %d, column %zu (byte %zu) @@\n",
			expected_path, input_path, line, i - line_start + 1, i);
	if (line > 1)
		print_line(' ', exp, elen, prev_start, 0);
	print_line('-', exp, elen, line_start, i - line_start);
	print_line('+', act, alen, line_start, i - line_start);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s);
	size_t		m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* One corpus input: convert, compare (or write), check. */
static void
corpus_file(const char *dir, const char *name, bool write)
{
	char		path[4096];
	char		expected_path[4096];
	char	   *input;
	char	   *expected;
	size_t		inlen;
	size_t		explen = 0;
	bool		markdown = ends_with(name, ".md");
	CfdwBuf		out;
	CfdwXmlFault fault;
	int			eq;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(expected_path, sizeof(expected_path), "%s/%.*s.storage", dir,
			 (int) (strlen(name) - (markdown ? 3 : 4)), name);
	input = read_file(path, &inlen);
	CHECK(input != NULL, "%s: cannot read", path);
	if (input == NULL)
		return;
	out = markdown ? md(input, inlen) : text(input, inlen);

	if (write)
	{
		FILE	   *f = fopen(expected_path, "wb");

		CHECK(f != NULL && fwrite(out.data, 1, out.len, f) == out.len && fclose(f) == 0,
			  "%s: cannot write", expected_path);
		printf("wrote %s (%zu bytes)\n", expected_path, out.len);
	}
	else
	{
		expected = read_file(expected_path, &explen);
		CHECK(expected != NULL, "%s: no expected output %s", path, expected_path);
		if (expected)
		{
			bool		same = explen == out.len && memcmp(expected, out.data, explen) == 0;

			CHECK(same, "%s: the output differs from %s", path, expected_path);
			if (!same)
				report_difference(expected_path, path, expected, explen, out.data, out.len);
			free(expected);
		}
	}

	memset(&fault, 0, sizeof(fault));
	CHECK(cfdw_storage_check(out.data, out.len, &fault, mem()),
		  "%s: the output is not well formed: line %d column %d: %s",
		  path, fault.line, fault.column, fault.message);
	eq = cfdw_storage_equal(out.data, out.len, out.data, out.len, mem());
	CHECK(eq == 1, "%s: storage_equal(output, output) is %d", path, eq);

	/* the same once more past the byte comparison's shortcut: a trailing line */
	{
		char	   *longer = malloc(out.len + 2);

		memcpy(longer, out.data, out.len);
		memcpy(longer + out.len, "\n", 2);
		eq = cfdw_storage_equal(out.data, out.len, longer, out.len + 1, mem());
		CHECK(eq == 1, "%s: storage_equal(output, output + \"\\n\") is %d", path, eq);
		free(longer);
	}

	/* converting twice gives the same bytes */
	{
		CfdwBuf		again = markdown ? md(input, inlen) : text(input, inlen);

		CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0,
			  "%s: a second conversion differs", path);
		cfdw_buf_free(&again);
	}
	cfdw_buf_free(&out);
	free(input);
}

/* Every NN-name.md and NN-name.txt of dir, in name order.  Returns how many. */
static int
corpus_dir(const char *dir, bool write)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	char	  **names = NULL;
	int			n = 0;

	CHECK(d != NULL, "cannot open corpus directory %s", dir);
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
	{
		if (e->d_name[0] < '0' || e->d_name[0] > '9' ||
			!(ends_with(e->d_name, ".md") || ends_with(e->d_name, ".txt")))
			continue;
		names = realloc(names, sizeof(char *) * (n + 1));
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(char *), compare_names);
	for (int i = 0; i < n; i++)
	{
		corpus_file(dir, names[i], write);
		free(names[i]);
	}
	free(names);
	return n;
}

/* ---------------------------------------------------------------------
 * The well-formedness check
 * ---------------------------------------------------------------------
 */

/*
 * body must be refused at line, with the column within [col_lo, col_hi]
 * (libxml2 reports where it noticed: the fault's first character or just
 * past the construct), and a message holding want (or any when NULL).
 */
static void
check_fault(const char *body, int line, int col_lo, int col_hi, const char *want,
			const char *what)
{
	CfdwXmlFault fault;
	bool		ok;

	memset(&fault, 0, sizeof(fault));
	ok = cfdw_storage_check(body, strlen(body), &fault, mem());
	CHECK(!ok, "%s: %s was accepted", what, show(body));
	if (ok)
		return;
	CHECK(fault.line == line && fault.column >= col_lo && fault.column <= col_hi,
		  "%s: %s: fault at %d:%d, expected line %d, column %d..%d (%s)",
		  what, show(body), fault.line, fault.column, line, col_lo, col_hi, fault.message);
	CHECK(fault.message[0] != '\0', "%s: an empty message", what);
	if (want)
		CHECK(strstr(fault.message, want) != NULL, "%s: message %s lacks %s",
			  what, show(fault.message), show(want));
}

static void
check_accepted(const char *body, const char *what)
{
	CfdwXmlFault fault;
	bool		ok;

	memset(&fault, 0, sizeof(fault));
	ok = cfdw_storage_check(body, strlen(body), &fault, mem());
	CHECK(ok, "%s: %s refused at %d:%d: %s", what, show(body), fault.line,
		  fault.column, fault.message);
}

/*
 * src/html_entities.h: sorted for bsearch, every name accepted by the check,
 * and (where libxml2 still offers htmlEntityLookup without deprecating it,
 * before 2.14) the same names and code points as libxml2's HTML parser.
 */
static void
test_html_entities(void)
{
	size_t		n = sizeof(cfdw_html_entities) / sizeof(cfdw_html_entities[0]);
	char		body[64];

	current_group = "html entities";
	CHECK(n == 253, "the table has %zu entities, HTML 4.01 has 253", n);
	for (size_t i = 0; i < n; i++)
	{
		const CfdwHtmlEntity *e = &cfdw_html_entities[i];

		if (i > 0)
			CHECK(strcmp(cfdw_html_entities[i - 1].name, e->name) < 0,
				  "%s comes after %s: the table must be sorted by name",
				  e->name, cfdw_html_entities[i - 1].name);
		snprintf(body, sizeof(body), "<p>&%s;</p>", e->name);
		check_accepted(body, e->name);
#if LIBXML_VERSION < 21400
		{
			const htmlEntityDesc *lx = htmlEntityLookup((const xmlChar *) e->name);

			CHECK(lx != NULL && lx->value == e->codepoint,
				  "&%s; is %u here and %u in libxml2", e->name, e->codepoint,
				  lx ? lx->value : 0);
		}
#endif
	}
}

static void
test_check(void)
{
	current_group = "check";

	/* a bare & is column 6; libxml2 stops just after it */
	check_fault("<p>a & b</p>", 1, 6, 7, "'&'", "bare &");
	check_fault("<p>one</p>\n<p>two</p>\n<p>AT&T</p>", 3, 6, 8, "'&'", "bare & on line 3");
	check_fault("<p>one</p>\n<p>two", 2, 4, 7, "<p> opened on line 2 is not closed",
				"unclosed <p>");
	check_fault("<p>", 1, 1, 4, "<p> opened on line 1", "only an open tag");
	check_fault("<p>x</p>\n<p>y</p>\n<p><b>z</i></p>", 3, 8, 12, "mismatch",
				"mismatched tag on line 3");
	check_fault("</p>", 1, 1, 5, "</p> closes no open element", "a stray end tag");
	check_fault("<p>&bogus;</p>", 1, 4, 11, "bogus", "undefined entity");
	check_fault("<p>\n\n  x &bogus; y</p>", 3, 5, 12, "bogus", "undefined entity on line 3");
	check_fault("<foo:bar/>", 1, 1, 10, "foo", "unbound prefix");
	check_fault("<p>a</p>\n<ac:x><foo:bar>t</foo:bar></ac:x>", 2, 7, 15, "foo",
				"unbound prefix inside a bound one");
	check_fault("<p>a ]]> b</p>", 1, 6, 9, "]]>", "]]> in text");
	check_fault("<p>a</p><?xml version=\"1.0\"?>", 1, 9, 14, "XML declaration",
				"XML declaration after content");
	check_fault("<p>a</p>\n<?xml version=\"1.0\"?>", 2, 1, 6, "XML declaration",
				"XML declaration on line 2");
	check_fault("<p a=1>x</p>", 1, 4, 7, NULL, "an unquoted attribute");
	check_fault("<p>&#0;</p>", 1, 4, 8, NULL, "a character reference to NUL");
	check_fault("<p>x</p></cfdw-storage><p>", 1, 9, 27, NULL,
				"a body closing the wrapper the check puts around it");
	check_fault("<p>x</p>\n<!-- open comment", 2, 1, 18, NULL, "an unclosed comment");

	check_accepted("<p>&nbsp;&mdash;&hellip;&copy;&eacute;&frac12;&amp;&lt;&gt;&quot;&apos;</p>",
				   "HTML's named entities and XML's");
	check_accepted("<p>&#160;&#x1F600;</p>", "character references");
	check_accepted("<ac:structured-macro ac:name=\"toc\" ac:schema-version=\"1\">"
				   "<ac:parameter ac:name=\"maxLevel\">3</ac:parameter></ac:structured-macro>"
				   "<p><ac:link><ri:page ri:content-title=\"Home\" /></ac:link></p>"
				   "<at:declarations><at:string at:name=\"v\" /></at:declarations>"
				   "<p><at:var at:name=\"v\" /></p>", "ac:, ri: and at: elements");
	check_accepted("", "an empty body");
	check_accepted("plain text, no element", "plain text");
	check_accepted("text <b>and</b> more text\n\nand a line", "text around elements");
	check_accepted("<p><![CDATA[ a < b & c ]]></p>", "CDATA");
	check_accepted("<!-- a comment --><p>x</p>", "a comment");

	/* a NULL fault is allowed */
	CHECK(!cfdw_storage_check("<p>", 3, NULL, mem()), "a NULL fault pointer");
	CHECK(cfdw_storage_check("<p/>", 4, NULL, mem()), "a NULL fault pointer, accepted");

	/*
	 * A body over libxml2's 10,000,000-byte lookup limit: fed in one piece,
	 * libxml2 2.9 stopped with "Huge input lookup" (found by fuzz_markdown).
	 */
	{
		const char unit[] = "<p>hello world</p>\n";
		size_t		n = 12 * 1000 * 1000 / (sizeof(unit) - 1);
		char	   *big = malloc(n * (sizeof(unit) - 1) + 1);
		CfdwXmlFault fault;

		for (size_t i = 0; i < n; i++)
			memcpy(big + i * (sizeof(unit) - 1), unit, sizeof(unit) - 1);
		big[n * (sizeof(unit) - 1)] = '\0';
		CHECK(cfdw_storage_check(big, n * (sizeof(unit) - 1), &fault, mem()),
			  "a 12 MB body refused at %d:%d: %s", fault.line, fault.column, fault.message);
		CHECK(cfdw_storage_equal(big, n * (sizeof(unit) - 1), big, n * (sizeof(unit) - 1) - 1, mem()) == 1,
			  "a 12 MB body and the same without its last newline differ");
		free(big);
	}
}

/* ---------------------------------------------------------------------
 * Comparison
 * ---------------------------------------------------------------------
 */

static void
test_equal(void)
{
	current_group = "equal";

	CHECK(equal("<ac:structured-macro ac:name=\"info\" ac:schema-version=\"1\" "
				"ac:macro-id=\"9f1a\"><ac:rich-text-body><p>x</p></ac:rich-text-body>"
				"</ac:structured-macro>",
				"<ac:structured-macro ac:name=\"info\"><ac:rich-text-body><p>x</p>"
				"</ac:rich-text-body></ac:structured-macro>") == 1,
		  "macro-id and schema-version are ignored");
	CHECK(equal("<p local-id=\"a1\">x</p>", "<p>x</p>") == 1, "local-id is ignored");
	CHECK(equal("<table data-layout=\"wide\" data-table-width=\"760\"><tbody><tr><td>1</td></tr></tbody></table>",
				"<table><tbody><tr><td>1</td></tr></tbody></table>") == 1,
		  "data-* attributes are ignored");
	CHECK(equal("<ac:task-list><ac:task><ac:task-id>17</ac:task-id>"
				"<ac:task-status>complete</ac:task-status><ac:task-body>t</ac:task-body>"
				"</ac:task></ac:task-list>",
				"<ac:task-list><ac:task><ac:task-id>1</ac:task-id>"
				"<ac:task-status>complete</ac:task-status><ac:task-body>t</ac:task-body>"
				"</ac:task></ac:task-list>") == 1, "task ids are ignored");
	CHECK(equal("<table><colgroup><col style=\"width: 50px;\" /></colgroup><tbody><tr><td>1</td></tr></tbody></table>",
				"<table><tbody><tr><td>1</td></tr></tbody></table>") == 1,
		  "a colgroup is ignored");
	CHECK(equal("<p>a&nbsp;b</p>", "<p>a&#160;b</p>") == 1, "&nbsp; and &#160;");
	CHECK(equal("<p>a\xc2\xa0" "b</p>", "<p>a&nbsp;b</p>") == 1, "U+00A0 and &nbsp;");
	CHECK(equal("<p>&copy; &amp;</p>", "<p>\xc2\xa9 &#38;</p>") == 1, "entities and characters");
	CHECK(equal("<p>a   b\n\tc </p>", "<p> a b c</p>") == 1, "white space is collapsed");
	CHECK(equal("<p>x</p>\n<p>y</p>\n", "<p>x</p><p>y</p>") == 1,
		  "white space between blocks");
	CHECK(equal("<p><![CDATA[a < b]]></p>", "<p>a &lt; b</p>") == 1, "CDATA and escaped text");
	CHECK(equal("<p a=\"1\" b=\"2\">x</p>", "<p b=\"2\" a=\"1\">x</p>") == 1,
		  "attribute order");
	CHECK(equal("<p>x<!-- note --></p>", "<p>x</p>") == 1, "comments");

	CHECK(equal("<p>a</p>", "<p>b</p>") == 0, "different text");
	CHECK(equal("<p>a b</p>", "<p>ab</p>") == 0, "a space inside text matters");
	CHECK(equal("<p>a&nbsp;b</p>", "<p>a b</p>") == 0, "a no-break space is not a space");
	CHECK(equal("<p class=\"x\">a</p>", "<p class=\"y\">a</p>") == 0, "different attribute value");
	CHECK(equal("<p class=\"x\">a</p>", "<p>a</p>") == 0, "an extra attribute");
	CHECK(equal("<p>a</p>", "<div>a</div>") == 0, "different element");
	CHECK(equal("<ac:image><ri:url ri:value=\"u\" /></ac:image>",
				"<ac:image><ri:attachment ri:value=\"u\" /></ac:image>") == 0,
		  "different ri: element");
	CHECK(equal("<p>a</p>", "<p>a</p><p></p>") == 0, "an extra element");
	CHECK(equal("<p><b>a</b>c</p>", "<p><b>a</b></p>") == 0, "text after an element");
	CHECK(equal("<ac:structured-macro ac:name=\"info\"/>",
				"<ac:structured-macro ac:name=\"tip\"/>") == 0, "different macro");

	CHECK(equal("<p>a", "<p>a</p>") == -1, "malformed first");
	CHECK(equal("<p>a</p>", "<p>a &bogus;</p>") == -1, "malformed second");
	CHECK(equal("<p>a</p>", "x & y") == -1, "a bare & is malformed");
	/* equal bytes are equal whether or not they are well formed */
	CHECK(equal("<p>a", "<p>a") == 1, "identical malformed bodies");
	CHECK(equal("", "") == 1, "two empty bodies");
	CHECK(equal("", " \n") == 1, "empty and white space");
}

/* ---------------------------------------------------------------------
 * The converter: focused cases
 * ---------------------------------------------------------------------
 */

/* Markdown of n nested quotes / n '*' around a word must be well formed. */
static void
test_deep_nesting(void)
{
	char	   *in = malloc(20000);
	CfdwBuf		out;
	CfdwXmlFault fault;
	size_t		n;

	current_group = "deep";

	n = 0;
	for (int i = 0; i < 200; i++)
		in[n++] = '>';
	memcpy(in + n, " innermost\n", 11);
	n += 11;
	out = md(in, n);
	memset(&fault, 0, sizeof(fault));
	CHECK(well_formed(out.data, out.len, &fault), "200 nested quotes: %d:%d %s",
		  fault.line, fault.column, fault.message);
	CHECK(strstr(out.data, "innermost") != NULL, "200 nested quotes keep the text");
	cfdw_buf_free(&out);

	n = 0;
	for (int i = 0; i < 5000; i++)
		in[n++] = '*';
	memcpy(in + n, "word", 4);
	n += 4;
	for (int i = 0; i < 5000; i++)
		in[n++] = '*';
	out = md(in, n);
	memset(&fault, 0, sizeof(fault));
	CHECK(well_formed(out.data, out.len, &fault), "5000 nested '*': %d:%d %s",
		  fault.line, fault.column, fault.message);
	CHECK(strstr(out.data, "word") != NULL, "5000 nested '*' keep the word");
	cfdw_buf_free(&out);

	/* unbalanced: 5000 openers only */
	n = 0;
	for (int i = 0; i < 5000; i++)
	{
		in[n++] = '*';
		in[n++] = 'a';
	}
	out = md(in, n);
	CHECK(well_formed(out.data, out.len, NULL), "5000 unmatched '*'");
	cfdw_buf_free(&out);

	/* 1000 nested lists, links inside links, quotes in lists */
	n = 0;
	for (int i = 0; i < 1000; i++)
	{
		memcpy(in + n, "- ", 2);
		n += 2;
	}
	memcpy(in + n, "x\n", 2);
	n += 2;
	out = md(in, n);
	CHECK(well_formed(out.data, out.len, NULL), "1000 nested list markers on one line");
	cfdw_buf_free(&out);

	n = 0;
	for (int i = 0; i < 3000; i++)
		in[n++] = '[';
	memcpy(in + n, "x", 1);
	n++;
	for (int i = 0; i < 3000; i++)
	{
		memcpy(in + n, "](u)", 4);
		n += 4;
	}
	out = md(in, n);
	CHECK(well_formed(out.data, out.len, NULL), "3000 nested link brackets");
	cfdw_buf_free(&out);

	n = 0;
	for (int i = 0; i < 300; i++)
	{
		memcpy(in + n, "> - ", 4);
		n += 4;
	}
	memcpy(in + n, "- [ ] **~~`x`~~**\n", 18);
	n += 18;
	out = md(in, n);
	CHECK(well_formed(out.data, out.len, NULL), "300 quotes and lists around a task");
	CHECK(strstr(out.data, "<code>x</code>") != NULL, "the innermost code span is kept");
	cfdw_buf_free(&out);
	free(in);
}

static void
test_converter(void)
{
	current_group = "markdown";

	md_is("", "", "empty");
	md_is("# Title\n\ntext\n", "<h1>Title</h1>\n<p>text</p>\n", "a line per top-level block");
	md_is("a & b < c > d \"e\"", "<p>a &amp; b &lt; c &gt; d \"e\"</p>\n", "text is escaped");

	/* alerts */
	md_is("> [!NOTE]\n> body", "<ac:structured-macro ac:name=\"info\" ac:schema-version=\"1\">"
		  "<ac:rich-text-body><p>body</p></ac:rich-text-body></ac:structured-macro>\n", "NOTE");
	md_has("> [!TIP]\n> b", "ac:name=\"tip\"", true, "TIP");
	md_has("> [!IMPORTANT]\n> b", "ac:name=\"info\"", true, "IMPORTANT");
	md_has("> [!WARNING]\n> b", "ac:name=\"note\"", true, "WARNING");
	md_has("> [!CAUTION]\n> b", "ac:name=\"warning\"", true, "CAUTION");
	/* the marker alone in its paragraph: the paragraph goes, what follows stays */
	md_is("> [!NOTE]\n>\n> after a blank line",
		  "<ac:structured-macro ac:name=\"info\" ac:schema-version=\"1\"><ac:rich-text-body>"
		  "<p>after a blank line</p></ac:rich-text-body></ac:structured-macro>\n",
		  "an alert whose marker is its own paragraph");
	md_is("> [!WARNING]\n", "<ac:structured-macro ac:name=\"note\" ac:schema-version=\"1\">"
		  "<ac:rich-text-body></ac:rich-text-body></ac:structured-macro>\n", "only a marker");
	md_is("> [!NOTE] text", "<blockquote><p>[!NOTE] text</p></blockquote>\n",
		  "a marker with text after it is no alert");

	/* task lists */
	md_is("- [ ] a\n- [x] b", "<ac:task-list><ac:task><ac:task-id>1</ac:task-id>"
		  "<ac:task-status>incomplete</ac:task-status><ac:task-body>a</ac:task-body></ac:task>"
		  "<ac:task><ac:task-id>2</ac:task-id><ac:task-status>complete</ac:task-status>"
		  "<ac:task-body>b</ac:task-body></ac:task></ac:task-list>\n", "a task list");
	md_is("- [x] done\n- plain\n- [ ] open",
		  "<ul><li>[x] done</li><li>plain</li><li>[ ] open</li></ul>\n",
		  "tasks mixed with items keep their boxes as text");
	md_is("1. [ ] a\n\n2. b\n", "<ol><li><p>[ ] a</p></li><li><p>b</p></li></ol>\n",
		  "a mixed loose list puts the box inside the paragraph");
	md_is("- [x]    \n- b\n", "<ul><li>[x] </li><li>b</li></ul>\n",
		  "an empty task item in a mixed list");

	/* code */
	md_is("```py\nx = 1\n```", "<ac:structured-macro ac:name=\"code\" ac:schema-version=\"1\">"
		  "<ac:parameter ac:name=\"language\">python</ac:parameter><ac:plain-text-body>"
		  "<![CDATA[x = 1]]></ac:plain-text-body></ac:structured-macro>\n", "a known language");
	md_has("```cobol\nx\n```", "language", false, "an unknown language");
	md_has("```\na]]>b\n```", "<![CDATA[a]]]]><![CDATA[>b]]>", true, "]]> in code");

	/* links and images */
	md_is("[x](javascript:alert(1))", "<p>x</p>\n", "javascript:");
	md_is("[x](&#32;javascript:alert(1))", "<p>x</p>\n", "a space before javascript:");
	md_is("[x](<java&#9;script:alert(1)>)", "<p>x</p>\n", "a tab inside javascript:");
	md_is("[x](&#1;JAVASCRIPT:alert(1))", "<p>x</p>\n", "a control before JAVASCRIPT:");
	md_is("[x](VBScript:x) [y](file:///etc) [z](data:text/html,x)", "<p>x y z</p>\n",
		  "vbscript:, file:, data:");
	md_is("<javascript:alert(1)>", "<p>javascript:alert(1)</p>\n", "a javascript: autolink");
	md_is("[x](https://e/javascript:)", "<p><a href=\"https://e/javascript:\">x</a></p>\n",
		  "javascript: later in a URL");
	md_is("![a](//cdn.example.com/i.png)", "<p><ac:image ac:alt=\"a\"><ri:url "
		  "ri:value=\"//cdn.example.com/i.png\" /></ac:image></p>\n", "a scheme-relative image");
	md_is("![a](i.png)", "<p><ac:image ac:alt=\"a\"><ri:attachment ri:filename=\"i.png\" />"
		  "</ac:image></p>\n", "an attachment");

	/* raw HTML */
	md_is("<b>x</b>", "<p>&lt;b&gt;x&lt;/b&gt;</p>\n", "an HTML block");
	md_is("a <b>x</b>", "<p>a &lt;b&gt;x&lt;/b&gt;</p>\n", "inline HTML");

	/* what XML cannot hold */
	md_is("a\x01" "b\xef\xbf\xbf" "c", "<p>a\xef\xbf\xbd" "b\xef\xbf\xbd" "c</p>\n",
		  "a control and U+FFFF become one U+FFFD each");

	current_group = "text";
	{
		const char *in = "a <b>\r\nc & d\r\n\r\ne\rf\n\n\n";
		CfdwBuf		out = text(in, strlen(in));

		CHECK(strcmp(out.data, "<p>a &lt;b&gt;<br />c &amp; d</p>\n<p>e<br />f</p>\n") == 0,
			  "plain text: %s", show(out.data));
		cfdw_buf_free(&out);
		out = text("", 0);
		CHECK(out.len == 0, "empty plain text: %s", show(out.data));
		cfdw_buf_free(&out);
		out = text(" \t\n\n", 4);
		CHECK(out.len == 0, "white-space-only plain text: %s", show(out.data));
		cfdw_buf_free(&out);
		out = text("x\xe2\x82", 3);
		CHECK(strcmp(out.data, "<p>x\xef\xbf\xbd</p>\n") == 0,
			  "a truncated sequence: %s", show(out.data));
		cfdw_buf_free(&out);
	}
}

/*
 * Random Markdown from pieces that open and close constructs, with a fixed
 * seed: whatever the pieces make, the output must be well formed.
 */
static void
test_random(void)
{
	static const char *const pieces[] = {
		"> ", "- ", "1. ", "* ", "- [ ] ", "- [x] ", "```", "~~~", "    ", "\t",
		"\n", "\n\n", "\r\n", "# ", "###### ", "---\n", "===\n", "| a | b |\n|---|:-:|\n",
		"|", "\\|", "*", "**", "_", "~~", "`", "[", "]", "(", ")", "![", "](", "<",
		">", "&", "&nbsp;", "&bogus;", "&#0;", "]]>", "<![CDATA[", "<div>", "</div>",
		"<!--", "-->", "javascript:", "https://x.org", "www.x.org", "a@b.co",
		"[!NOTE]", "[!CAUTION]\n", "\"", "'", "\\", "  \n", "\xc3\xa9", "\xf0\x9f\x98\x80",
		"\xff", "\xe2\x82", "\x01", "\x00", "text", " ", "[r]: /u \"t\"\n", "[r]",
	};
	uint64_t	state = 0x9E3779B97F4A7C15ULL;
	char		in[4096];
	int			bad = 0;

	current_group = "random";
	for (int round = 0; round < 3000; round++)
	{
		size_t		n = 0;
		int			count;
		CfdwBuf		out;
		CfdwXmlFault fault;

		state = state * 6364136223846793005ULL + 1442695040888963407ULL;
		count = 1 + (int) ((state >> 33) % 120);
		for (int k = 0; k < count; k++)
		{
			const char *p;
			size_t		len;

			state = state * 6364136223846793005ULL + 1442695040888963407ULL;
			p = pieces[(state >> 33) % (sizeof(pieces) / sizeof(pieces[0]))];
			len = (p[0] == '\0') ? 1 : strlen(p);	/* the "\x00" piece is one NUL */
			if (n + len >= sizeof(in))
				break;
			memcpy(in + n, p, len);
			n += len;
		}
		out = md(in, n);
		memset(&fault, 0, sizeof(fault));
		if (!well_formed(out.data, out.len, &fault) ||
			cfdw_storage_equal(out.data, out.len, out.data, out.len, mem()) != 1)
		{
			if (bad++ < 3)
				CHECK(false, "round %d: %s gave %s, refused at %d:%d: %s", round,
					  show_n(in, n), show(out.data), fault.line, fault.column, fault.message);
		}
		cfdw_buf_free(&out);
		out = text(in, n);
		if (!well_formed(out.data, out.len, &fault))
		{
			if (bad++ < 3)
				CHECK(false, "round %d: plain text %s gave %s", round, show_n(in, n),
					  show(out.data));
		}
		cfdw_buf_free(&out);
	}
	CHECK(bad == 0, "%d of 3000 random inputs gave output that is not well formed", bad);
}

/* ---------------------------------------------------------------------
 * Allocators: cmark-gfm and storage.c allocate only through the cmark_mem
 * they are given, and one that leaves by longjmp at any call (as the
 * extension's does: palloc raises an ERROR when memory runs out) leaves
 * nothing behind once what it handed out is dropped (as the extension
 * resets its memory context), and nothing a later call trips over.
 * ---------------------------------------------------------------------
 */

/* libxml2's live blocks (it allocates with malloc, through xmlMemSetup) */
static long xml_live;

static void
xml_free(void *p)
{
	if (p)
		xml_live--;
	free(p);
}

static void *
xml_malloc(size_t size)
{
	void	   *p = malloc(size);

	if (p)
		xml_live++;
	return p;
}

static void *
xml_realloc(void *p, size_t size)
{
	void	   *q = realloc(p, size);

	if (q && p == NULL)
		xml_live++;
	return q;
}

static char *
xml_strdup(const char *s)
{
	char	   *p = strdup(s);

	if (p)
		xml_live++;
	return p;
}

/* A block handed out by the tracking allocator, in a list of live ones. */
typedef union Tracked
{
	struct
	{
		union Tracked *prev;
		union Tracked *next;
	}			h;
	max_align_t align;
} Tracked;

static Tracked tracked = {{&tracked, &tracked}};
static long track_calls;		/* calloc and realloc calls so far */
static long track_fail_at;		/* the call that longjmps (0: none) */
static jmp_buf track_jmp;
static long xml_baseline;		/* libxml2's live blocks outside a call */
static int	xml_alive_at_alloc; /* allocations while more were alive */

static void
track_link(Tracked *t)
{
	t->h.prev = &tracked;
	t->h.next = tracked.h.next;
	tracked.h.next->h.prev = t;
	tracked.h.next = t;
}

static void
track_unlink(Tracked *t)
{
	t->h.prev->h.next = t->h.next;
	t->h.next->h.prev = t->h.prev;
}

/* every call may be the one that fails, as palloc's may */
static void
track_call(void)
{
	if (xml_live != xml_baseline)
		xml_alive_at_alloc++;
	if (++track_calls == track_fail_at)
		longjmp(track_jmp, 1);
}

static void *
track_calloc(size_t count, size_t size)
{
	Tracked    *t;

	track_call();
	if (size != 0 && count > (SIZE_MAX - sizeof(Tracked)) / size)
		abort();
	t = calloc(1, sizeof(Tracked) + count * size);
	if (t == NULL)
		abort();
	track_link(t);
	return t + 1;
}

static void *
track_realloc(void *p, size_t size)
{
	Tracked    *t;

	if (p == NULL)
		return track_calloc(1, size);
	track_call();
	t = (Tracked *) p - 1;
	track_unlink(t);
	t = realloc(t, sizeof(Tracked) + size);
	if (t == NULL)
		abort();
	track_link(t);
	return t + 1;
}

static void
track_free(void *p)
{
	Tracked    *t;

	if (p == NULL)
		return;
	t = (Tracked *) p - 1;
	track_unlink(t);
	free(t);
}

/* Drop everything still handed out, as a memory context reset does. */
static long
track_reset(void)
{
	long		n = 0;

	while (tracked.h.next != &tracked)
	{
		Tracked    *t = tracked.h.next;

		track_unlink(t);
		free(t);
		n++;
	}
	return n;
}

static cmark_mem track_mem = {track_calloc, track_realloc, track_free};

/* cmark's default allocator as it was, and its calls while counted */
static cmark_mem default_saved;
static long default_calls;

static void *
counting_calloc(size_t count, size_t size)
{
	default_calls++;
	return default_saved.calloc(count, size);
}

static void *
counting_realloc(void *p, size_t size)
{
	default_calls++;
	return default_saved.realloc(p, size);
}

/* Every extension, an alert, entities, raw HTML, links, code. */
static const char alloc_doc[] =
	"# Title &amp; more\n\n"
	"| left | right | centre |\n|:--|--:|:-:|\n| ~~gone~~ | www.example.com | a \\| b |\n| x |\n\n"
	"- [ ] to do\n- [x] done, see https://example.com/a?b=c\n\n"
	"> [!NOTE]\n> an alert with <b>raw</b> HTML &nbsp; and `code`\n\n"
	"1. *one*\n2. **two** [link](http://example.com \"title\") ![alt](http://example.com/i.png)\n\n"
	"```sql\nSELECT 1;\n```\n\n[ref]: http://example.com/ref\n\nfoo@example.com [ref]\n";

/*
 * Convert alloc_doc (as Markdown and as plain text), check the result and
 * compare it with itself plus a line feed, all through m; returns the
 * Markdown's storage in a malloc'd string.
 */
static char *
alloc_work(cmark_mem *m)
{
	CfdwBuf		out;
	CfdwBuf		text;
	CfdwXmlFault fault;
	char	   *more;
	char	   *result;

	cfdw_buf_init(&out, m);
	cfdw_markdown_to_storage(alloc_doc, strlen(alloc_doc), &out);
	cfdw_buf_init(&text, m);
	cfdw_text_to_storage(alloc_doc, strlen(alloc_doc), &text);
	CHECK(cfdw_storage_check(out.data, out.len, &fault, m), "not well formed: %s", fault.message);
	CHECK(cfdw_storage_check(text.data, text.len, &fault, m), "not well formed: %s", fault.message);
	CHECK(!cfdw_storage_check("<p>&bogus;</p>", 14, &fault, m), "&bogus; accepted");
	more = m->calloc(1, out.len + 2);
	memcpy(more, out.data, out.len);
	more[out.len] = '\n';
	CHECK(cfdw_storage_equal(out.data, out.len, more, out.len + 1, m) == 1,
		  "the output and the output plus a line feed differ");
	CHECK(cfdw_storage_equal(out.data, out.len, text.data, text.len, m) == 0,
		  "the Markdown's and the plain text's output are equal");
	m->free(more);
	result = strdup(out.data);
	cfdw_buf_free(&text);
	cfdw_buf_free(&out);
	return result;
}

static void
test_allocator(void)
{
	cmark_mem  *dflt = cmark_get_default_mem_allocator();
	char	   *reference;
	char	   *again;
	long		total;
	long		failed = 0;
	long		left_behind = 0;
	long		xml_leaked = 0;

	current_group = "allocator";
	/* once first: cmark-gfm registers its extensions (the default allocator) */
	free(alloc_work(dflt));

	/* every allocation through the given allocator, none through the default */
	default_saved = *dflt;
	dflt->calloc = counting_calloc;
	dflt->realloc = counting_realloc;
	track_calls = 0;
	track_fail_at = 0;
	xml_baseline = xml_live;
	reference = alloc_work(&track_mem);
	*dflt = default_saved;
	total = track_calls;
	CHECK(default_calls == 0, "%ld calls of cmark's default allocator during a conversion, check and comparison",
		  default_calls);
	CHECK(total > 100, "only %ld allocations through the given allocator", total);
	CHECK(track_reset() == 0, "blocks left allocated after a conversion, check and comparison");
	CHECK(xml_alive_at_alloc == 0, "%d allocations while libxml2 objects were alive", xml_alive_at_alloc);
	CHECK(xml_live == xml_baseline, "libxml2 blocks left after a check and comparison");

	/* the allocator fails at each of those calls in turn */
	for (long k = 1; k <= total; k++)
	{
		track_calls = 0;
		track_fail_at = k;
		xml_baseline = xml_live;
		if (setjmp(track_jmp) == 0)
		{
			free(alloc_work(&track_mem));
			CHECK(false, "the allocation that was to fail at call %ld of %ld never came", k, total);
		}
		else
			failed++;
		track_fail_at = 0;
		left_behind += track_reset() > 0;
		if (xml_live != xml_baseline)
			xml_leaked++;
		xml_live = xml_baseline;
	}
	CHECK(failed == total, "%ld of %ld allocations failed", failed, total);
	CHECK(left_behind > 0, "no failure left cmark's memory to drop");
	CHECK(xml_alive_at_alloc == 0, "%d allocations while libxml2 objects were alive (they leak on a longjmp)",
		  xml_alive_at_alloc);
	CHECK(xml_leaked == 0, "%ld failures left libxml2 objects behind", xml_leaked);

	/* and nothing a later conversion trips over */
	again = alloc_work(&track_mem);
	CHECK(strcmp(again, reference) == 0, "after the failures, the document converts to %s, not %s",
		  show(again), show(reference));
	CHECK(track_reset() == 0, "blocks left allocated after a conversion");
	free(again);
	free(reference);
}

int
main(int argc, char **argv)
{
	bool		write = false;
	int			files = 0;
	int			first = 1;

	if (argc > 1 && strcmp(argv[1], "--write") == 0)
	{
		write = true;
		first = 2;
	}
	if (first >= argc)
	{
		fprintf(stderr, "usage: %s [--write] CORPUS_DIR...\n", argv[0]);
		return 2;
	}
	/* before libxml2 allocates anything: test_allocator() counts its blocks */
	if (xmlMemSetup(xml_free, xml_malloc, xml_realloc, xml_strdup) != 0)
	{
		fprintf(stderr, "xmlMemSetup failed\n");
		return 2;
	}
	xmlInitParser();

	current_group = "corpus";
	for (int i = first; i < argc; i++)
		files += corpus_dir(argv[i], write);
	CHECK(files > 0, "no corpus files found");
	if (write)
	{
		printf("wrote the expected output of %d corpus files: review the diff\n", files);
		xmlCleanupParser();
		return n_failed == 0 ? 0 : 1;
	}

	test_html_entities();
	test_check();
	test_equal();
	test_converter();
	test_deep_nesting();
	test_random();
	test_allocator();

	xmlCleanupParser();
	printf("storage: %d corpus files; %d passed, %d failed\n", files, n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
