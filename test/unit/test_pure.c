/*-------------------------------------------------------------------------
 *
 * test_pure.c
 *		  Unit tests of src/pure.c: header option parsing, endpoint path
 *		  checks, percent-encoding, Retry-After, JSON dotted paths, XML and
 *		  form bodies, rate-limit headers, site keys and pacing.  No PostgreSQL server is needed.
 *
 * Built and run by "make unit" (gcc), "make unit-asan" (clang with
 * AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer) and
 * "make unit-valgrind"; see test/unit/unit.mk.  Every check prints what
 * failed, with the expected and actual values; the program exits 1 when
 * any check failed and ends with "unit: N passed, M failed".
 *
 * IDENTIFICATION
 *		  test/unit/test_pure.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <libxml/parser.h>

#include "pure.h"

/* ---------------------------------------------------------------------
 * A tiny check framework
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

/* Printable form of a string for failure messages (static rotating buffers). */
static const char *
show(const char *s)
{
	static char bufs[8][1024];
	static int	next;
	char	   *out = bufs[next++ % 8];
	size_t		o = 0;

	if (s == NULL)
		return "(null)";
	out[o++] = '"';
	for (; *s && o < 1000; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			o += snprintf(out + o, 1024 - o, "\\x%02x", c);
		else
			out[o++] = c;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

#define CHECK_STR(actual, expected, what) \
	do { \
		const char *a_ = (actual); \
		const char *e_ = (expected); \
		CHECK(a_ != NULL && e_ != NULL ? strcmp(a_, e_) == 0 : a_ == e_, \
			  "%s: expected %s, got %s", (what), show(e_), show(a_)); \
	} while (0)

#define CHECK_LONG(actual, expected, what) \
	do { \
		long a_ = (actual); \
		long e_ = (expected); \
		CHECK(a_ == e_, "%s: expected %ld, got %ld", (what), e_, a_); \
	} while (0)

/* ---------------------------------------------------------------------
 * Headers
 * ---------------------------------------------------------------------
 */

typedef struct Collected
{
	char		text[4096];		/* "name=value|name=value|" */
	int			count;
} Collected;

static void
collect(void *arg, const char *name, size_t namelen, const char *value, size_t valuelen)
{
	Collected  *c = arg;
	size_t		used = strlen(c->text);

	snprintf(c->text + used, sizeof(c->text) - used, "%.*s=%.*s|",
			 (int) namelen, name, (int) valuelen, value);
	c->count++;
}

/* A spec that must parse, emitting exactly "expected" ("N=v|N2=v2|"). */
static void
headers_ok(const char *spec, const char *expected, int count)
{
	Collected	c;
	char		err[CFDW_ERRLEN] = "";
	bool		ok;
	char		what[300];

	memset(&c, 0, sizeof(c));
	ok = cfdw_headers_parse(spec, collect, &c, err, sizeof(err));
	snprintf(what, sizeof(what), "headers %s", show(spec));
	CHECK(ok, "%s: expected success, got error %s", what, show(err));
	CHECK_STR(c.text, expected, what);
	CHECK(c.count == count, "%s: expected %d headers, got %d", what, count, c.count);
}

/*
 * A spec that must be refused, with a message that contains "needle" (may
 * be NULL) and never "secret" (the header's value).
 */
static void
headers_bad(const char *spec, const char *needle, const char *secret)
{
	char		err[CFDW_ERRLEN] = "";
	bool		ok;
	char		what[300];

	ok = cfdw_headers_parse(spec, NULL, NULL, err, sizeof(err));
	snprintf(what, sizeof(what), "headers %s", show(spec));
	CHECK(!ok, "%s: expected an error, got success", what);
	CHECK(err[0] != '\0', "%s: error message is empty", what);
	if (needle)
		CHECK(strstr(err, needle) != NULL, "%s: error %s does not contain %s",
			  what, show(err), show(needle));
	if (secret)
		CHECK(strstr(err, secret) == NULL, "%s: error %s repeats the value %s",
			  what, show(err), show(secret));
}

static void
test_headers(void)
{
	static const char *const forbidden[] = {
		"Authorization", "AUTHORIZATION", "authorization", "aUtHoRiZaTiOn",
		"Proxy-Authorization", "PROXY-AUTHORIZATION", "Host", "HOST", "host",
		"Content-Length", "content-LENGTH", "Transfer-Encoding", "Connection",
		"Cookie", "COOKIE", "Cookie2", "Set-Cookie", "SET-COOKIE2", "Expect",
		"TE", "te", "Upgrade", "Keep-Alive", NULL
	};
	const char *const *f;
	char		spec[300];
	char		err[CFDW_ERRLEN];
	Collected	c;
	bool		ok;

	current_group = "headers";

	/* valid lists */
	headers_ok("X-Atlassian-Token:nocheck", "X-Atlassian-Token=nocheck|", 1);
	headers_ok("X-A:1,X-B:2", "X-A=1|X-B=2|", 2);
	headers_ok("X-A:1,X-B:2,Accept:application/json",
			   "X-A=1|X-B=2|Accept=application/json|", 3);
	headers_ok("Content-Type:application/json; charset=utf-8",
			   "Content-Type=application/json; charset=utf-8|", 1);
	/* the first ':' splits: values may hold more */
	headers_ok("X-Url:http://example.test:8080/a", "X-Url=http://example.test:8080/a|", 1);
	/* whitespace trimming around names and values, inner whitespace kept */
	headers_ok("  X-A \t: \t one  two \t ,\tX-B:2 ", "X-A=one  two|X-B=2|", 2);
	headers_ok("X-Atlassian-Token:nocheck, X-Empty: ,Accept:application/vnd.test+json",
			   "X-Atlassian-Token=nocheck|X-Empty=|Accept=application/vnd.test+json|", 3);
	/* empty values */
	headers_ok("X-Empty:", "X-Empty=|", 1);
	headers_ok("X-Empty:   ", "X-Empty=|", 1);
	headers_ok("X-Empty:\t", "X-Empty=|", 1);
	/* every token character is allowed in a name */
	headers_ok("X-!#$%&'*+-.^_`|~09az:v", "X-!#$%&'*+-.^_`|~09az=v|", 1);
	/* printable ASCII and tabs in values */
	headers_ok("X-A:a\tb !\"#$%&'()*+-./;<=>?@[\\]^_`{|}~",
			   "X-A=a\tb !\"#$%&'()*+-./;<=>?@[\\]^_`{|}~|", 1);
	/* nothing, or no option at all */
	headers_ok("", "", 0);
	memset(&c, 0, sizeof(c));
	CHECK(cfdw_headers_parse(NULL, collect, &c, err, sizeof(err)) && c.count == 0,
		  "headers NULL: expected success with no header");
	/* names that only look like forbidden ones */
	headers_ok("X-Authorization:1,Hosts:2,Cookies:3,Content-Length-X:4,T:5",
			   "X-Authorization=1|Hosts=2|Cookies=3|Content-Length-X=4|T=5|", 5);
	/* a NULL callback just validates */
	err[0] = '\0';
	CHECK(cfdw_headers_parse("X-A:1,X-B:2", NULL, NULL, err, sizeof(err)),
		  "headers with NULL emit: expected success, got %s", show(err));

	/* forbidden names, case-insensitively, alone or after a good header */
	for (f = forbidden; *f; f++)
	{
		snprintf(spec, sizeof(spec), "%s:S3CR3T-VALUE", *f);
		headers_bad(spec, "cannot be set", "S3CR3T");
		snprintf(spec, sizeof(spec), "X-Trace:1, %s : Bearer S3CR3T-VALUE ", *f);
		headers_bad(spec, "cannot be set", "S3CR3T");
	}
	headers_bad("Authorization:Basic opt-s3cr3t-VALUE", "\"Authorization\"", "s3cr3t");

	/* CR or LF anywhere */
	headers_bad("X-A:1\r\nX-Injected:S3CR3T", "carriage returns or line feeds", "S3CR3T");
	headers_bad("X-A:S3CR3T\n", "line feeds", "S3CR3T");
	headers_bad("X-A:S3CR3T\r", "line feeds", "S3CR3T");
	headers_bad("\rX-A:S3CR3T", "line feeds", "S3CR3T");
	headers_bad("X-\nA:S3CR3T", "line feeds", "S3CR3T");
	headers_bad("X-A:S3C\r3T,X-B:2", "line feeds", "S3C");

	/* control and non-ASCII characters */
	headers_bad("X-A:caf\xc3\xa9-S3CR3T", "control or non-ASCII", "S3CR3T");
	headers_bad("X-A:S3CR3T\x01", "\"X-A\"", "S3CR3T");
	headers_bad("X-A:S3CR3T\x7f", "control or non-ASCII", "S3CR3T");
	headers_bad("X-A:S3CR3T\x1b[0m", "control or non-ASCII", "S3CR3T");
	headers_bad("X-A:\xffS3CR3T", "control or non-ASCII", "S3CR3T");
	headers_bad("X-Caf\xc3\xa9:S3CR3T", "not allowed in header names", "S3CR3T");
	headers_bad("X-\x01:S3CR3T", "not allowed in header names", "S3CR3T");
	headers_bad("X-\x7f:S3CR3T", "not allowed in header names", "S3CR3T");

	/* items without a ':' */
	headers_bad("X-Team", "header 1 has no ':'", NULL);
	headers_bad("X-A:1,X-Team", "header 2 has no ':'", NULL);
	headers_bad("S3CR3T", "has no ':'", "S3CR3T");

	/* empty items: ",,", leading, trailing and lone commas */
	headers_bad("X-A:S3CR3T,,X-B:2", "header 2 has no ':'", "S3CR3T");
	headers_bad(",X-A:S3CR3T", "header 1 has no ':'", "S3CR3T");
	headers_bad("X-A:S3CR3T,", "header 2 has no ':'", "S3CR3T");
	headers_bad("X-A:S3CR3T, ", "header 2 has no ':'", "S3CR3T");
	headers_bad(",", "header 1 has no ':'", NULL);
	headers_bad(",,", "has no ':'", NULL);
	headers_bad("   ", "has no ':'", NULL);

	/* empty names and names with spaces or separators */
	headers_bad(":S3CR3T", "header 1 has an empty name", "S3CR3T");
	headers_bad("  \t:S3CR3T", "empty name", "S3CR3T");
	headers_bad("X-A:1, :S3CR3T", "header 2 has an empty name", "S3CR3T");
	headers_bad("Bad Name:S3CR3T", "not allowed in header names", "S3CR3T");
	headers_bad("Bad\tName:S3CR3T", "not allowed in header names", "S3CR3T");
	headers_bad("X(A):S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X/A:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X\"A:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X@A:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X[A]:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X=A:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X;A:S3CR3T", "not allowed", "S3CR3T");
	headers_bad("X{A}:S3CR3T", "not allowed", "S3CR3T");

	/* a small or absent message buffer is never overrun */
	memset(spec, 'Z', sizeof(spec));
	spec[sizeof(spec) - 1] = '\0';
	ok = cfdw_headers_parse("Authorization:x", NULL, NULL, spec, 8);
	CHECK(!ok && strlen(spec) == 7 && spec[8] == 'Z',
		  "headers: an 8-byte message buffer holds %s", show(spec));
	CHECK(!cfdw_headers_parse("Authorization:x", NULL, NULL, NULL, 0),
		  "headers: NULL message buffer still refuses");
	spec[0] = 'Q';
	CHECK(!cfdw_headers_parse("Authorization:x", NULL, NULL, spec, 0) && spec[0] == 'Q',
		  "headers: errlen 0 must leave the buffer alone");
}

/*
 * Header names are ASCII tokens whatever LC_CTYPE says.  PostgreSQL sets
 * LC_CTYPE from the database, and in a single-byte locale (LATIN1, say)
 * isalnum() is true for bytes such as 0xE9.  unit.mk builds such a locale
 * under test/unit/build/locale when localedef can and names that folder in
 * CFDW_TEST_LOCPATH; otherwise this is skipped.  LOCPATH is set only around
 * setlocale(): set for the whole process, glibc's newlocale() (called by a
 * library constructor of libcurl's dependencies) leaks its copy of it.
 */
static void
test_headers_locale(void)
{
	static const char *const names[] = {
		"en_US.ISO-8859-1", "en_US.iso88591", "de_DE.ISO-8859-1", "fr_FR.ISO-8859-1", NULL
	};
	const char *const *n;
	const char *got = NULL;

	const char *locpath = getenv("CFDW_TEST_LOCPATH");

	current_group = "headers-locale";
	if (locpath)
		setenv("LOCPATH", locpath, 1);
	for (n = names; *n && got == NULL; n++)
		got = setlocale(LC_CTYPE, *n);
	unsetenv("LOCPATH");
	if (got == NULL)
	{
		printf("SKIP headers-locale: no ISO-8859-1 locale (see CFDW_TEST_LOCPATH in unit.mk)\n");
		return;
	}
	headers_bad("X-Caf\xe9:1", "not allowed in header names", NULL);
	headers_bad("\xc0:1", "not allowed in header names", NULL);
	headers_bad("X-\xb5\xaa:1", "not allowed in header names", NULL);
	headers_ok("X-A:1", "X-A=1|", 1);
	setlocale(LC_CTYPE, "C");
}

/* ---------------------------------------------------------------------
 * Paths, placeholders, percent-encoding
 * ---------------------------------------------------------------------
 */

static void
path_ok(const char *path)
{
	char		err[CFDW_ERRLEN] = "";

	CHECK(cfdw_path_check(path, err, sizeof(err)),
		  "path %s: expected success, got %s", show(path), show(err));
}

static void
path_bad(const char *path, const char *needle)
{
	char		err[CFDW_ERRLEN] = "";
	bool		ok = cfdw_path_check(path, err, sizeof(err));

	CHECK(!ok, "path %s: expected an error, got success", show(path));
	if (!ok && needle)
		CHECK(strstr(err, needle) != NULL, "path %s: error %s does not contain %s",
			  show(path), show(err), show(needle));
}

static void
test_paths(void)
{
	current_group = "paths";

	path_ok("/");
	path_ok("/wiki/api/v2/pages");
	path_ok("/wiki/api/v2/pages/");
	path_ok("/wiki/api/v2/pages/{id}");
	path_ok("/wiki/api/v2/pages/{page_id}/labels/{Label2}");
	path_ok("/wiki/api/v2/pages/{id}?body-format=storage");
	path_ok("/wiki/api/v2/spaces/{space_id}/pages?limit=10&cursor={cursor}");
	path_ok("/a/x{id}y/{n}{m}");
	path_ok("/a/...");
	path_ok("/a/.../b");
	path_ok("/a/.b/c.");
	path_ok("/a..b/..c/c..");
	path_ok("/a%20b/%41%2d%5f");
	path_ok("/a/-._~!$&'()*+,;=:@");
	/* the query string may hold what the path may not */
	path_ok("/a?next=../b&x=./c");
	path_ok("/a?u=http://example.test//x");
	path_ok("/a?x=%2e%2E%2f%5C");
	path_ok("/a?");
	path_ok("/a%41%7e/{id}%20x?q=%2B");

	/* a '%' must start a complete %XX escape, in the path or the query */
	/* servlet path parameters: "..;" is ".." to Tomcat and some proxies */
	path_bad("/wiki/..;/admin", "segments");
	path_bad("/wiki/api/v2/pages/..;jsessionid=1/x", "segments");
	path_bad("/wiki/.;x/pages", "segments");
	path_bad("/wiki/..;", "segments");
	path_ok("/wiki/a..;b/pages");
	path_ok("/wiki/;../pages");
	path_bad("/a%", "must start a percent-encoded byte");
	path_bad("/a%2", "must start a percent-encoded byte");
	path_bad("/a%zz", "must start a percent-encoded byte");
	path_bad("/a%/b", "must start a percent-encoded byte");
	path_bad("/x/%{id}%{id}", "must start a percent-encoded byte");
	path_bad("/x/%2{id}", "must start a percent-encoded byte");
	path_bad("/x?q=%{id}", "must start a percent-encoded byte");
	path_bad("/x?q=%", "must start a percent-encoded byte");

	/* not a path of the server's origin */
	path_bad("", "starting with \"/\"");
	path_bad("wiki/api/v2/pages", "starting with \"/\"");
	path_bad("http://x", "starting with \"/\"");
	path_bad("https://evil.example/wiki", "starting with \"/\"");
	path_bad("?x=1", "starting with \"/\"");
	path_bad("{id}", "starting with \"/\"");
	path_bad("//evil.example/wiki", "\"//\"");
	path_bad("/a//b", "\"//\"");
	path_bad("/a/b//", "\"//\"");
	path_bad("/a//?x", "\"//\"");

	/* dot segments, literal or encoded */
	path_bad("/..", "\".\" or \"..\"");
	path_bad("/.", "\".\" or \"..\"");
	path_bad("/a/..", "\".\" or \"..\"");
	path_bad("/a/.", "\".\" or \"..\"");
	path_bad("/a/../b", "\".\" or \"..\"");
	path_bad("/a/./b", "\".\" or \"..\"");
	path_bad("/../etc", "\".\" or \"..\"");
	path_bad("/a/..?x=1", "\".\" or \"..\"");
	path_bad("/a/.?x=1", "\".\" or \"..\"");
	path_bad("/a/..//b", NULL);
	path_bad("/a/%2e%2e/b", "percent-encoded");
	path_bad("/a/%2E%2E/b", "percent-encoded");
	path_bad("/a/%2E", "percent-encoded");
	path_bad("/a/%2e", "percent-encoded");
	path_bad("/a/.%2e/b", "percent-encoded");
	path_bad("/a/%2e./b", "percent-encoded");
	path_bad("/a/b%2e", "percent-encoded");
	path_bad("/a%2fb", "percent-encoded");
	path_bad("/a%2Fb", "percent-encoded");
	path_bad("/a%5cb", "percent-encoded");
	path_bad("/a%5Cb", "percent-encoded");

	/* characters a path may not hold */
	path_bad("/a#frag", "'#'");
	path_bad("/a?x=1#frag", "'#'");
	path_bad("/a\\b", "'\\'");
	path_bad("/\\evil.example", NULL);
	path_bad("/a b", "spaces");
	path_bad("/a?x=a b", "spaces");
	path_bad("/a\tb", "control characters");
	path_bad("/a\x01", "control characters");
	path_bad("/a\x7f", "non-ASCII");
	path_bad("/caf\xc3\xa9", "non-ASCII");
	path_bad("/a\xff", "non-ASCII");

	/* placeholders: balanced, non-empty, column-name characters only */
	path_bad("/a/{", "not closed");
	path_bad("/a/{id", "not closed");
	path_bad("/a/{id/b", NULL);
	path_bad("/a/}", "without a matching '{'");
	path_bad("/a/id}", "without a matching '{'");
	path_bad("/a/{id}}", "without a matching '{'");
	path_bad("/a/{}", "needs a column name");
	path_bad("/a/{}/b", "needs a column name");
	path_bad("/a/{{id}}", "may not contain '{'");
	path_bad("/a/{i-d}", "column name");
	path_bad("/a/{i.d}", "column name");
	path_bad("/a/{i d}", NULL);
	path_bad("/a/{id?x}", "column name");
	path_bad("/a/{../x}", "column name");
	path_bad("/a?x={}", "needs a column name");
	path_bad("/a?x={id", "not closed");

	/* a small message buffer is never overrun */
	{
		char		small[16];
		bool		ok;

		memset(small, 'Z', sizeof(small));
		small[sizeof(small) - 1] = '\0';
		ok = cfdw_path_check("/a/../b", small, 4);
		CHECK(!ok && strlen(small) == 3 && small[4] == 'Z',
			  "path: a 4-byte message buffer holds %s", show(small));
		CHECK(!cfdw_path_check("/a/../b", NULL, 0), "path: NULL message buffer still refuses");
	}
}

static void
test_placeholders(void)
{
	current_group = "placeholders";
	CHECK(!cfdw_placeholder_value_ok(""), "placeholder \"\" must be refused");
	CHECK(!cfdw_placeholder_value_ok("."), "placeholder \".\" must be refused");
	CHECK(!cfdw_placeholder_value_ok(".."), "placeholder \"..\" must be refused");
	CHECK(cfdw_placeholder_value_ok("..."), "placeholder \"...\" must be allowed");
	CHECK(!cfdw_placeholder_value_ok("..;"), "placeholder \"..;\" must be refused");
	CHECK(!cfdw_placeholder_value_ok("..;x=1"), "placeholder \"..;x=1\" must be refused");
	CHECK(!cfdw_placeholder_value_ok(".;"), "placeholder \".;\" must be refused");
	CHECK(cfdw_placeholder_value_ok("a..;"), "placeholder \"a..;\" must be allowed");
	CHECK(cfdw_placeholder_value_ok("a.b"), "placeholder \"a.b\" must be allowed");
	CHECK(cfdw_placeholder_value_ok(".a"), "placeholder \".a\" must be allowed");
	CHECK(cfdw_placeholder_value_ok("..a"), "placeholder \"..a\" must be allowed");
	CHECK(cfdw_placeholder_value_ok("a.."), "placeholder \"a..\" must be allowed");
	CHECK(cfdw_placeholder_value_ok("1234567"), "placeholder \"1234567\" must be allowed");
	CHECK(cfdw_placeholder_value_ok("%2e%2e"), "placeholder \"%%2e%%2e\" must be allowed (it is encoded)");
	CHECK(cfdw_placeholder_value_ok("../x"), "placeholder \"../x\" must be allowed (it is encoded)");
	CHECK(cfdw_placeholder_value_ok(" "), "placeholder \" \" must be allowed (it is encoded)");
}

static void
encode_is(const char *value, size_t len, const char *expected)
{
	char	   *e = cfdw_percent_encode(value, len);
	char		what[200];

	snprintf(what, sizeof(what), "percent-encode %s (%zu bytes)", show(value), len);
	CHECK_STR(e, expected, what);
	curl_free(e);
}

static void
test_percent_encode(void)
{
	char		unterminated[3] = {'a', 'b', 'c'};

	current_group = "percent-encode";
	encode_is("a b/c?d#e%f", strlen("a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
	encode_is("caf\xc3\xa9", 5, "caf%C3%A9");
	encode_is("\xe2\x82\xac \xf0\x9f\x98\x80", 8, "%E2%82%AC%20%F0%9F%98%80");
	encode_is("AZaz09-._~", 10, "AZaz09-._~");
	encode_is(".", 1, ".");
	encode_is("..", 2, "..");
	encode_is("%2e%2e", 6, "%252e%252e");
	encode_is("../x", 4, "..%2Fx");
	encode_is("a\\b{c}&d=e+f;g", 14, "a%5Cb%7Bc%7D%26d%3De%2Bf%3Bg");
	encode_is("\r\n\t", 3, "%0D%0A%09");
	/* exactly len bytes: a prefix, an embedded NUL, nothing at all */
	encode_is("abcdef", 3, "abc");
	encode_is("a\0b", 3, "a%00b");
	encode_is("abc", 0, "");
	{
		/* len 0 must not read the (unterminated) buffer */
		char	   *e = cfdw_percent_encode(unterminated, 0);

		CHECK_STR(e, "", "percent-encode of 0 bytes of an unterminated buffer");
		curl_free(e);
		e = cfdw_percent_encode(unterminated, sizeof(unterminated));
		CHECK_STR(e, "abc", "percent-encode of an unterminated buffer");
		curl_free(e);
	}
}

/* ---------------------------------------------------------------------
 * Retry-After
 * ---------------------------------------------------------------------
 */

/* Sun, 06 Nov 1994 08:49:37 GMT */
#define DATE_1994 ((time_t) 784111777)

static void
retry_is(const char *value, time_t now, long expected)
{
	char		what[200];

	snprintf(what, sizeof(what), "Retry-After %s at %lld", show(value), (long long) now);
	CHECK_LONG(cfdw_retry_after_ms(value, now), expected, what);
}

static void
test_retry_after(void)
{
	const time_t now = 1700000000;

	current_group = "retry-after";
	/* delay-seconds */
	retry_is("0", now, 0);
	retry_is("5", now, 5000);
	retry_is("120", now, 120000);
	retry_is("007", now, 7000);
	retry_is(" 7 ", now, 7000);
	retry_is("\t9\t", now, 9000);
	retry_is("+3", now, 3000);
	retry_is("-1", now, 0);
	retry_is("-0", now, 0);
	retry_is("-99999999999999999999", now, 0);
	retry_is("86399", now, 86399000);
	retry_is("86400", now, 86400000);
	retry_is("86401", now, 86400000);
	retry_is("99999999999999999999", now, 86400000);
	retry_is("999999999999999999999999999999999999999999", now, 86400000);
	/* absent or unreadable */
	retry_is(NULL, now, -1);
	retry_is("", now, -1);
	retry_is("   ", now, -1);
	retry_is("abc", now, -1);
	retry_is("5x", now, -1);
	retry_is("5 5", now, -1);
	retry_is("1.5", now, -1);
	retry_is("1e3", now, -1);
	retry_is("0x10", now, -1);
	retry_is("-", now, -1);
	retry_is("+", now, -1);
	retry_is("--1", now, -1);
	retry_is("+-1", now, -1);
	retry_is("- 1", now, -1);
	retry_is("now", now, -1);

	/* HTTP-dates, IMF-fixdate, RFC 850 and asctime forms */
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994 - 120, 120000);
	retry_is("Sunday, 06-Nov-94 08:49:37 GMT", DATE_1994 - 120, 120000);
	retry_is("Sun Nov  6 08:49:37 1994", DATE_1994 - 120, 120000);
	retry_is("  Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994 - 1, 1000);
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994, 0);
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994 + 10, 0);
	retry_is("Sunday, 06-Nov-94 08:49:37 GMT", DATE_1994 + 3600, 0);
	retry_is("Sun Nov  6 08:49:37 1994", DATE_1994 + 1, 0);
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994 - 86400, 86400000);
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", DATE_1994 - 86401, 86400000);
	retry_is("Sun, 06 Nov 1994 08:49:37 GMT", 0, 86400000);
	retry_is("Fri, 31 Dec 9999 23:59:59 GMT", now, 86400000);
	retry_is("Thu, 01 Jan 1970 00:00:00 GMT", now, 0);
}

/* ---------------------------------------------------------------------
 * JSON dotted paths
 * ---------------------------------------------------------------------
 */

static void
tree_is(const cJSON *root, const char *expected, const char *what)
{
	char	   *printed = cJSON_PrintUnformatted(root);

	CHECK_STR(printed, expected, what);
	cJSON_free(printed);
}

static void
test_json_put(void)
{
	cJSON	   *root = cJSON_CreateObject();
	cJSON	   *other;
	cJSON	   *detached;
	char		longkey[1200];
	char		longpath[2500];
	char		expected[2600];

	current_group = "json-put";

	CHECK(cfdw_json_put(root, "title", cJSON_CreateString("T")), "put title");
	tree_is(root, "{\"title\":\"T\"}", "put title");
	/* nested creation */
	CHECK(cfdw_json_put(root, "body.value", cJSON_CreateString("<p>x</p>")), "put body.value");
	tree_is(root, "{\"title\":\"T\",\"body\":{\"value\":\"<p>x</p>\"}}", "put body.value");
	CHECK(cfdw_json_put(root, "body.representation", cJSON_CreateString("storage")),
		  "put body.representation");
	tree_is(root, "{\"title\":\"T\",\"body\":{\"value\":\"<p>x</p>\",\"representation\":\"storage\"}}",
			"put into an existing object");
	CHECK(cfdw_json_put(root, "a.b.c.d", cJSON_CreateNumber(1)), "put a.b.c.d");
	tree_is(root, "{\"title\":\"T\",\"body\":{\"value\":\"<p>x</p>\",\"representation\":\"storage\"},"
			"\"a\":{\"b\":{\"c\":{\"d\":1}}}}", "deep creation");

	/* replacing an existing value keeps its place */
	CHECK(cfdw_json_put(root, "title", cJSON_CreateNumber(2)), "replace title");
	CHECK(cfdw_json_put(root, "body.value", cJSON_CreateNull()), "replace body.value");
	tree_is(root, "{\"title\":2,\"body\":{\"value\":null,\"representation\":\"storage\"},"
			"\"a\":{\"b\":{\"c\":{\"d\":1}}}}", "replace values");
	/* replacing a whole object */
	CHECK(cfdw_json_put(root, "a.b", cJSON_CreateTrue()), "replace a.b");
	tree_is(root, "{\"title\":2,\"body\":{\"value\":null,\"representation\":\"storage\"},"
			"\"a\":{\"b\":true}}", "replace an object by a value");
	/* a non-object on the way is replaced by an object */
	CHECK(cfdw_json_put(root, "title.x", cJSON_CreateString("y")), "put title.x");
	CHECK(cfdw_json_put(root, "a.b.c", cJSON_CreateArray()), "put a.b.c");
	tree_is(root, "{\"title\":{\"x\":\"y\"},\"body\":{\"value\":null,\"representation\":\"storage\"},"
			"\"a\":{\"b\":{\"c\":[]}}}", "replace non-objects on the way");
	other = cJSON_CreateObject();
	cJSON_AddItemToArray(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "a"), "b"), "c"),
						 cJSON_CreateNumber(5));
	CHECK(cfdw_json_put(root, "a.b.c.d", other), "put through an array");
	tree_is(root, "{\"title\":{\"x\":\"y\"},\"body\":{\"value\":null,\"representation\":\"storage\"},"
			"\"a\":{\"b\":{\"c\":{\"d\":{}}}}}", "an array on the way is replaced");

	/* keys are case-sensitive */
	CHECK(cfdw_json_put(root, "Title", cJSON_CreateString("t")), "put Title");
	CHECK(cJSON_GetObjectItemCaseSensitive(root, "Title") != NULL &&
		  cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "title")),
		  "Title and title are different keys");
	cJSON_Delete(root);

	/* an item that still has a key (detached from another object) */
	root = cJSON_CreateObject();
	other = cJSON_Parse("{\"old\":{\"k\":1},\"keep\":2}");
	detached = cJSON_DetachItemFromObject(other, "old");
	CHECK(cfdw_json_put(root, "new", detached), "put a detached item");
	cJSON_AddNumberToObject(root, "z", 0);
	detached = cJSON_DetachItemFromObject(other, "keep");
	CHECK(cfdw_json_put(root, "z", detached), "replace with a detached item");
	tree_is(root, "{\"new\":{\"k\":1},\"z\":2}", "detached items take their new key");
	cJSON_Delete(other);

	/* empty and bad paths: false, the item is freed, the tree is unchanged */
	CHECK(!cfdw_json_put(root, "", cJSON_CreateString("leak?")), "empty path refused");
	CHECK(!cfdw_json_put(root, NULL, cJSON_CreateString("leak?")), "NULL path refused");
	CHECK(!cfdw_json_put(root, ".", cJSON_CreateString("leak?")), "path \".\" refused");
	CHECK(!cfdw_json_put(root, ".new", cJSON_CreateString("leak?")), "path \".new\" refused");
	CHECK(!cfdw_json_put(root, "z.", cJSON_CreateString("leak?")), "path \"z.\" refused");
	CHECK(!cfdw_json_put(root, "new.k.", cJSON_CreateString("leak?")), "path \"new.k.\" refused");
	CHECK(!cfdw_json_put(root, "new..k", cJSON_CreateString("leak?")), "path \"new..k\" refused");
	CHECK(!cfdw_json_put(root, "q..", cJSON_CreateString("leak?")), "path \"q..\" refused");
	tree_is(root, "{\"new\":{\"k\":1},\"z\":2}", "a refused path leaves the tree as it was");
	CHECK(!cfdw_json_put(root, "x", NULL), "NULL item refused");
	CHECK(!cfdw_json_put(NULL, "x", cJSON_CreateString("leak?")), "NULL root refused");
	other = cJSON_CreateArray();
	CHECK(!cfdw_json_put(other, "x", cJSON_CreateString("leak?")), "array root refused");
	tree_is(other, "[]", "array root unchanged");
	cJSON_Delete(other);

	/* long keys (a field option has no length limit) */
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	snprintf(longpath, sizeof(longpath), "%s.%s", longkey, longkey);
	CHECK(cfdw_json_put(root, longpath, cJSON_CreateNumber(7)), "put a path with 1199-byte keys");
	snprintf(expected, sizeof(expected), "{\"new\":{\"k\":1},\"z\":2,\"%s\":{\"%s\":7}}", longkey, longkey);
	tree_is(root, expected, "long keys");
	cJSON_Delete(root);

	/* UTF-8 and odd characters in keys are kept as they are */
	root = cJSON_CreateObject();
	CHECK(cfdw_json_put(root, "caf\xc3\xa9.a b.\"q\"", cJSON_CreateString("v")), "put odd keys");
	tree_is(root, "{\"caf\xc3\xa9\":{\"a b\":{\"\\\"q\\\"\":\"v\"}}}", "odd keys");
	cJSON_Delete(root);
}

/* ---------------------------------------------------------------------
 * XML bodies
 * ---------------------------------------------------------------------
 */

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

static bool
well_formed(const char *xml)
{
	xmlDocPtr	doc = xmlReadMemory(xml, (int) strlen(xml), "body.xml", NULL,
									XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);

	if (doc == NULL)
		return false;
	xmlFreeDoc(doc);
	return true;
}

/* root must serialise to XML_DECL expected "\n"; root is freed. */
static void
xml_is(cJSON *root, bool batch, const char *expected, const char *what)
{
	char		err[CFDW_ERRLEN] = "";
	char	   *xml = cfdw_json_to_xml(root, batch, err, sizeof(err));
	char		full[4096];

	snprintf(full, sizeof(full), XML_DECL "%s\n", expected);
	CHECK(xml != NULL, "%s: expected XML, got error %s", what, show(err));
	CHECK_STR(xml, full, what);
	if (xml)
		CHECK(well_formed(xml), "%s: output is not well-formed XML: %s", what, show(xml));
	free(xml);
	cJSON_Delete(root);
}

static void
xml_json_is(const char *json, bool batch, const char *expected)
{
	cJSON	   *root = cJSON_Parse(json);
	char		what[300];

	snprintf(what, sizeof(what), "XML of %s", show(json));
	CHECK(root != NULL, "%s: test JSON does not parse", what);
	if (root)
		xml_is(root, batch, expected, what);
}

/* root must be refused with a message containing needle; root is freed. */
static void
xml_refused(cJSON *root, bool batch, const char *needle, const char *what)
{
	char		err[CFDW_ERRLEN] = "";
	char	   *xml = cfdw_json_to_xml(root, batch, err, sizeof(err));

	CHECK(xml == NULL, "%s: expected an error, got %s", what, show(xml));
	CHECK(strstr(err, needle) != NULL, "%s: error %s does not contain %s",
		  what, show(err), show(needle));
	free(xml);
	cJSON_Delete(root);
}

static void
xml_json_refused(const char *json, bool batch, const char *needle)
{
	cJSON	   *root = cJSON_Parse(json);
	char		what[300];

	snprintf(what, sizeof(what), "XML of %s", show(json));
	CHECK(root != NULL, "%s: test JSON does not parse", what);
	if (root)
		xml_refused(root, batch, needle, what);
}

/* {"<key>": raw} */
static cJSON *
with_raw(const char *key, const char *raw)
{
	cJSON	   *root = cJSON_CreateObject();

	cJSON_AddItemToObject(root, key, cJSON_CreateRaw(raw));
	return root;
}

static cJSON *
nested(int levels)
{
	cJSON	   *root = cJSON_CreateObject();
	cJSON	   *node = root;
	int			i;

	for (i = 0; i < levels; i++)
	{
		cJSON	   *child = cJSON_CreateObject();

		cJSON_AddItemToObject(node, "n", child);
		node = child;
	}
	cJSON_AddStringToObject(node, "leaf", "x");
	return root;
}

static void
test_xml(void)
{
	current_group = "xml";

	/* escaping: libxml2 escapes &, < and >; quotes need none in text */
	xml_json_is("{\"a\":\"x&y<z>\\\"q'\"}", false,
				"<request><a>x&amp;y&lt;z&gt;\"q'</a></request>");
	xml_json_is("{\"a\":\"]]><![CDATA[&lt;\"}", false,
				"<request><a>]]&gt;&lt;![CDATA[&amp;lt;</a></request>");
	xml_json_is("{\"a\":\"tab\\there\\nline\\r\"}", false,
				"<request><a>tab\there\nline&#13;</a></request>");
	xml_json_is("{\"caf\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd\"}", false,
				"<request><caf\xc3\xa9>\xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd</caf\xc3\xa9></request>");
	xml_json_is("{\"a\":\"\"}", false, "<request><a></a></request>");

	/* nested objects, in order */
	xml_json_is("{\"spaceId\":\"42\",\"title\":\"T\",\"body\":{\"representation\":\"storage\","
				"\"value\":\"<p>Hi</p>\"}}", false,
				"<request><spaceId>42</spaceId><title>T</title><body><representation>storage"
				"</representation><value>&lt;p&gt;Hi&lt;/p&gt;</value></body></request>");
	xml_json_is("{\"a\":{\"b\":{\"c\":{}}}}", false, "<request><a><b><c/></b></a></request>");
	xml_json_is("{}", false, "<request/>");

	/* arrays as <item> elements */
	xml_json_is("{\"labels\":[\"a\",\"b&c\"]}", false,
				"<request><labels><item>a</item><item>b&amp;c</item></labels></request>");
	xml_json_is("{\"m\":[[1,2],[],{\"k\":\"v\"}]}", false,
				"<request><m><item><item>1</item><item>2</item></item><item/>"
				"<item><k>v</k></item></m></request>");
	xml_json_is("{\"e\":[]}", false, "<request><e/></request>");

	/* null, booleans, numbers */
	xml_json_is("{\"n\":null,\"t\":true,\"f\":false}", false,
				"<request><n/><t>true</t><f>false</f></request>");
	xml_json_is("{\"i\":42,\"neg\":-7,\"d\":2.5,\"z\":0,\"big\":1e300,\"small\":-1.25e-10}", false,
				"<request><i>42</i><neg>-7</neg><d>2.5</d><z>0</z><big>1e+300</big>"
				"<small>-1.25e-10</small></request>");
	xml_json_is("{\"arr\":[null,true,3]}", false,
				"<request><arr><item/><item>true</item><item>3</item></arr></request>");

	/* raw items: numbers kept as text, embedded JSON expanded */
	xml_is(with_raw("big", "12345678901234567890.000000000000000001"), false,
		   "<request><big>12345678901234567890.000000000000000001</big></request>", "raw number");
	xml_is(with_raw("neg", "-0.5"), false, "<request><neg>-0.5</neg></request>", "raw negative number");
	xml_is(with_raw("doc", "{\"x\":[1,true,null],\"y\":\"a<b\"}"), false,
		   "<request><doc><x><item>1</item><item>true</item><item/></x><y>a&lt;b</y></doc></request>",
		   "raw object");
	xml_is(with_raw("doc", " [1, \"two\"]"), false,
		   "<request><doc><item>1</item><item>two</item></doc></request>", "raw array");
	xml_is(with_raw("s", "\"str&\""), false, "<request><s>str&amp;</s></request>", "raw string");
	xml_is(with_raw("n", "null"), false, "<request><n/></request>", "raw null");
	xml_is(with_raw("b", "false"), false, "<request><b>false</b></request>", "raw false");
	xml_refused(with_raw("doc", "{bad"), false, "field \"doc\" holds JSON that cannot be read", "raw bad JSON");
	xml_refused(with_raw("doc", ""), false, "cannot be read", "raw empty text");
	xml_refused(with_raw("num", "1\x01"), false, "control character", "raw number with a control character");
	xml_refused(with_raw("doc", "{\"1x\":1}"), false, "\"1x\" is not a valid XML element name",
				"raw JSON with a bad name");

	/* element names */
	xml_json_is("{\"_a\":1,\"a-b.c\":2,\"A1\":3,\"xmlish\":4}", false,
				"<request><_a>1</_a><a-b.c>2</a-b.c><A1>3</A1><xmlish>4</xmlish></request>");
	xml_json_refused("{\"1abc\":1}", false, "field \"1abc\" is not a valid XML element name");
	xml_json_refused("{\"9\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"a b\":1}", false, "not a valid XML element name");
	xml_json_refused("{\" a\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"a \":1}", false, "not a valid XML element name");
	xml_json_refused("{\"ns:el\":1}", false, "\"ns:el\" is not a valid XML element name");
	xml_json_refused("{\":a\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"-a\":1}", false, "not a valid XML element name");
	xml_json_refused("{\".a\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"a<b\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"a&b\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"a\\\"b\":1}", false, "not a valid XML element name");
	xml_json_refused("{\"ok\":{\"fine\":{\"bad name\":1}}}", false, "\"bad name\"");
	xml_json_refused("{\"ok\":[{\"1\":1}]}", false, "\"1\"");

	/* characters XML 1.0 cannot carry */
	xml_json_refused("{\"a\":\"x\\u0001y\"}", false, "field \"a\" holds a control character");
	xml_json_refused("{\"a\":\"\\u001f\"}", false, "control character");
	xml_json_refused("{\"a\":\"\\u000b\\u000c\"}", false, "control character");
	xml_json_refused("{\"a\":{\"b\":[\"ok\",\"\\u0008\"]}}", false, "control character");
	xml_json_refused("{\"a\":\"\\uFFFE\"}", false, "field \"a\" holds a control character or U+FFFE/U+FFFF");
	xml_json_refused("{\"a\":\"x\\uFFFFy\"}", false, "XML cannot carry");
	xml_json_refused("{\"a\":[\"\\uFFFF\"]}", false, "XML cannot carry");
	xml_refused(with_raw("doc", "{\"x\":\"\\uFFFE\"}"), false, "XML cannot carry", "raw JSON with U+FFFE");
	/* their neighbours are fine: U+FFFD, U+FEFF, U+EFBF, U+1FFFE */
	xml_json_is("{\"a\":\"\\uFFFD\\uFEFF\\uEFBF\\uD83F\\uDFFE\"}", false,
				"<request><a>\xef\xbf\xbd\xef\xbb\xbf\xee\xbe\xbf\xf0\x9f\xbf\xbe</a></request>");

	/* the root */
	xml_json_refused("[]", false, "a request body must be an object");
	xml_json_refused("\"x\"", false, "must be an object");
	xml_json_refused("null", false, "must be an object");

	/* batches */
	xml_json_is("[{\"a\":1},{\"b\":\"x<y\"}]", true,
				"<requests><request><a>1</a></request><request><b>x&lt;y</b></request></requests>");
	xml_json_is("[{\"title\":\"T\",\"body\":{\"value\":\"v\"}}]", true,
				"<requests><request><title>T</title><body><value>v</value></body></request></requests>");
	xml_json_is("[]", true, "<requests/>");
	xml_json_is("[{}, null]", true, "<requests><request/><request/></requests>");
	xml_json_refused("{\"a\":1}", true, "a batch body must be an array");
	xml_json_refused("[{\"a\":1},{\"2b\":1}]", true, "\"2b\" is not a valid XML element name");
	xml_json_refused("[{\"a\":\"\\u0002\"}]", true, "control character");

	/* nesting depth */
	xml_is(nested(10), false,
		   "<request><n><n><n><n><n><n><n><n><n><n><leaf>x</leaf></n></n></n></n></n></n></n></n></n></n></request>",
		   "10 levels");
	{
		cJSON	   *deep = nested(62);
		char		err[CFDW_ERRLEN] = "";
		char	   *xml = cfdw_json_to_xml(deep, false, err, sizeof(err));

		CHECK(xml != NULL && well_formed(xml), "62 levels: expected XML, got %s", show(err));
		free(xml);
		cJSON_Delete(deep);
	}
	xml_refused(nested(64), false, "nests more than 64 levels", "64 levels and a leaf");
	xml_refused(nested(500), false, "nests more than 64 levels", "500 levels");

	/* a small message buffer is never overrun */
	{
		cJSON	   *root = cJSON_Parse("{\"bad name\":1}");
		char		small[16];
		char	   *xml;

		memset(small, 'Z', sizeof(small));
		small[sizeof(small) - 1] = '\0';
		xml = cfdw_json_to_xml(root, false, small, 6);
		CHECK(xml == NULL && strlen(small) == 5 && small[6] == 'Z',
			  "xml: a 6-byte message buffer holds %s", show(small));
		CHECK(cfdw_json_to_xml(root, false, NULL, 0) == NULL, "xml: NULL message buffer still refuses");
		cJSON_Delete(root);
	}
}

/* ---------------------------------------------------------------------
 * Form bodies
 * ---------------------------------------------------------------------
 */

/* root must serialise to expected; root is freed. */
static void
form_is(cJSON *root, const char *expected, const char *what)
{
	char		err[CFDW_ERRLEN] = "";
	char	   *form = cfdw_json_to_form(root, err, sizeof(err));

	CHECK(form != NULL, "%s: expected a form, got error %s", what, show(err));
	CHECK_STR(form, expected, what);
	free(form);
	cJSON_Delete(root);
}

static void
form_json_is(const char *json, const char *expected)
{
	cJSON	   *root = cJSON_Parse(json);
	char		what[300];

	snprintf(what, sizeof(what), "form of %s", show(json));
	CHECK(root != NULL, "%s: test JSON does not parse", what);
	if (root)
		form_is(root, expected, what);
}

static void
form_refused(cJSON *root, const char *needle, const char *what)
{
	char		err[CFDW_ERRLEN] = "";
	char	   *form = cfdw_json_to_form(root, err, sizeof(err));

	CHECK(form == NULL, "%s: expected an error, got %s", what, show(form));
	CHECK(strstr(err, needle) != NULL, "%s: error %s does not contain %s",
		  what, show(err), show(needle));
	free(form);
	cJSON_Delete(root);
}

static void
test_form(void)
{
	cJSON	   *root;

	current_group = "form";

	/* escaping of keys and values */
	form_json_is("{\"a\":\"x y&z=w+v%/?#\"}", "a=x%20y%26z%3Dw%2Bv%25%2F%3F%23");
	form_json_is("{\"title\":\"caf\xc3\xa9 \xe2\x82\xac\"}", "title=caf%C3%A9%20%E2%82%AC");
	form_json_is("{\"a b&c=d\":\"v\"}", "a%20b%26c%3Dd=v");
	form_json_is("{\"k\":\"AZaz09-._~\"}", "k=AZaz09-._~");
	form_json_is("{\"k\":\"line\\r\\nnext\\u0001\"}", "k=line%0D%0Anext%01");
	form_json_is("{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}", "a=1&b=2&c=3");
	form_json_is("{}", "");
	form_json_is("{\"a\":\"\"}", "a=");

	/* nested dotted keys */
	form_json_is("{\"title\":\"T\",\"body\":{\"value\":\"<p>x</p>\",\"representation\":\"storage\"}}",
				 "title=T&body.value=%3Cp%3Ex%3C%2Fp%3E&body.representation=storage");
	form_json_is("{\"a\":{\"b\":{\"c\":\"d\"}},\"e\":{}}", "a.b.c=d");
	form_json_is("{\"a b\":{\"c&d\":1}}", "a%20b.c%26d=1");

	/* arrays: the same key repeated */
	form_json_is("{\"labels\":[\"a\",\"b c\"]}", "labels=a&labels=b%20c");
	form_json_is("{\"l\":[[1,2],[3]]}", "l=1&l=2&l=3");
	form_json_is("{\"l\":[{\"x\":1},{\"x\":2,\"y\":null}]}", "l.x=1&l.x=2&l.y=");
	form_json_is("{\"l\":[],\"m\":1}", "m=1");

	/* null, booleans, numbers */
	form_json_is("{\"n\":null,\"t\":true,\"f\":false}", "n=&t=true&f=false");
	form_json_is("{\"i\":42,\"d\":-2.5,\"e\":1e300,\"z\":0}", "i=42&d=-2.5&e=1e%2B300&z=0");

	/* raw values */
	root = cJSON_CreateObject();
	cJSON_AddItemToObject(root, "big", cJSON_CreateRaw("12345678901234567890.5"));
	cJSON_AddItemToObject(root, "neg", cJSON_CreateRaw("-1e+5"));
	cJSON_AddItemToObject(root, "doc", cJSON_CreateRaw("{\"x\":1,\"y\":[true,null],\"z\":{\"w\":\"a&b\"}}"));
	cJSON_AddItemToObject(root, "arr", cJSON_CreateRaw("[1,\"two\"]"));
	cJSON_AddItemToObject(root, "s", cJSON_CreateRaw("\"q\""));
	form_is(root, "big=12345678901234567890.5&neg=-1e%2B5&doc.x=1&doc.y=true&doc.y=&doc.z.w=a%26b"
			"&arr=1&arr=two&s=q", "raw values");
	form_refused(with_raw("doc", "{bad"), "field \"doc\" holds JSON that cannot be read", "raw bad JSON");
	form_refused(with_raw("doc", ""), "cannot be read", "raw empty");

	/* the root and the depth */
	form_refused(cJSON_Parse("[1]"), "must be built from an object", "array root");
	form_refused(cJSON_CreateString("x"), "must be built from an object", "string root");
	form_refused(NULL, "must be built from an object", "NULL root");
	root = nested(60);
	{
		char		err[CFDW_ERRLEN] = "";
		char	   *form = cfdw_json_to_form(root, err, sizeof(err));

		CHECK(form != NULL && strncmp(form, "n.n.n.", 6) == 0 && strstr(form, ".leaf=x") != NULL,
			  "form of 60 levels: got %s, error %s", show(form), show(err));
		free(form);
		cJSON_Delete(root);
	}
	form_refused(nested(100), "nests more than 64 levels", "100 levels");
}

/* ---------------------------------------------------------------------
 * Out of memory inside cJSON: every allocation fails from the Nth on.
 * Nothing may leak (ASan's LeakSanitizer and valgrind check that), the
 * item given to cfdw_json_put is always taken, and failures say so.
 * ---------------------------------------------------------------------
 */

static long oom_countdown = -1;	/* -1: never fail */

static void *
oom_malloc(size_t size)
{
	if (oom_countdown == 0)
		return NULL;
	if (oom_countdown > 0)
		oom_countdown--;
	return malloc(size);
}

static void
oom_arm(long n)
{
	cJSON_Hooks hooks = {oom_malloc, free};

	oom_countdown = n;
	cJSON_InitHooks(&hooks);
}

static void
oom_disarm(void)
{
	oom_countdown = -1;
	cJSON_InitHooks(NULL);
}

static void
test_oom(void)
{
	long		n;
	int			put_failures = 0;
	int			xml_failures = 0;

	current_group = "oom";
	for (n = 0; n < 12; n++)
	{
		cJSON	   *root = cJSON_Parse("{\"a\":1,\"b\":{\"c\":2}}");
		cJSON	   *item = cJSON_CreateString("v");
		cJSON	   *item2 = cJSON_CreateString("w");
		cJSON	   *item3 = cJSON_CreateNumber(3);
		bool		ok1,
					ok2,
					ok3;

		oom_arm(n);
		ok1 = cfdw_json_put(root, "a", item);	/* replaces */
		ok2 = cfdw_json_put(root, "x.y.z", item2);	/* creates */
		ok3 = cfdw_json_put(root, "b.c", item3);	/* replaces, nested */
		oom_disarm();
		put_failures += !ok1 + !ok2 + !ok3;
		if (ok1 && ok2 && ok3)
			tree_is(root, "{\"a\":\"v\",\"b\":{\"c\":3},\"x\":{\"y\":{\"z\":\"w\"}}}",
					"json_put with enough memory");
		cJSON_Delete(root);
	}
	CHECK(put_failures > 0, "json_put never met an allocation failure");

	for (n = 0; n < 4; n++)
	{
		cJSON	   *root = cJSON_Parse("{\"n\":1.5,\"r\":1,\"m\":[2,3]}");
		char		err[CFDW_ERRLEN] = "";
		char	   *xml;
		char	   *form;

		cJSON_ReplaceItemInObject(root, "r", cJSON_CreateRaw("{\"k\":[4,5]}"));
		oom_arm(n);
		xml = cfdw_json_to_xml(root, false, err, sizeof(err));
		if (xml == NULL)
		{
			xml_failures++;
			CHECK(err[0] != '\0', "xml under OOM %ld: no message", n);
		}
		oom_disarm();
		oom_arm(n);
		form = cfdw_json_to_form(root, err, sizeof(err));
		oom_disarm();
		if (form == NULL)
			CHECK(err[0] != '\0', "form under OOM %ld: no message", n);
		free(xml);
		free(form);
		cJSON_Delete(root);
	}
	CHECK(xml_failures > 0, "xml never met an allocation failure");
}

static struct sockaddr_storage ss;

static const struct sockaddr *
addr(const char *text)
{
	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':'))
	{
		struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;

		a->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, text, &a->sin6_addr) != 1)
			abort();
	}
	else
	{
		struct sockaddr_in *a = (struct sockaddr_in *) &ss;

		a->sin_family = AF_INET;
		if (inet_pton(AF_INET, text, &a->sin_addr) != 1)
			abort();
	}
	return (const struct sockaddr *) &ss;
}

static void
test_egress(void)
{
	const char *def = "*.atlassian.net,api.atlassian.com";
	const char *internal[] = {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "::",
		"fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "ff02::1",
		"192.0.0.1", "192.0.0.170", "192.0.0.255", "198.18.0.1", "198.19.255.255",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.1.2.3", "64:ff9b:1::8.8.8.8",
		"fec0::1", "feff:ffff::1"};
	const char *external[] = {"104.192.141.1", "172.32.0.1", "172.15.255.255", "100.128.0.1",
		"8.8.8.8", "2600:1f18::1", "::ffff:104.192.141.1", "2001:db8::1",
		"192.0.1.1", "191.255.255.255", "198.17.255.255", "198.20.0.1",
		"64:ff9b::104.192.141.1", "64:ff9b::808:808", "64:ff9c::7f00:1", "fe7f::1"};
	size_t		i;

	CHECK(cfdw_host_allowed("acme.atlassian.net", def), "a site under *.atlassian.net is allowed");
	CHECK(cfdw_host_allowed("ACME.Atlassian.NET", def), "host names match case-insensitively");
	CHECK(cfdw_host_allowed("acme.atlassian.net.", def), "a trailing dot names the same host");
	CHECK(cfdw_host_allowed("a.b.atlassian.net", def), "deeper names match *.atlassian.net");
	CHECK(cfdw_host_allowed("api.atlassian.com", def), "an exact name is allowed");
	CHECK(!cfdw_host_allowed("atlassian.net", def), "*.atlassian.net needs a label before it");
	CHECK(!cfdw_host_allowed("evilatlassian.net", def), "a suffix without the dot does not match");
	CHECK(!cfdw_host_allowed("acme.atlassian.net.evil.com", def), "a longer name does not match");
	CHECK(!cfdw_host_allowed("x.api.atlassian.com", def), "an exact pattern matches only itself");
	CHECK(!cfdw_host_allowed("127.0.0.1", def), "an address is not an allowed name");
	CHECK(!cfdw_host_allowed("", def), "an empty host is never allowed");
	CHECK(cfdw_host_allowed("wiki.corp", " wiki.corp , *.atlassian.net "), "patterns are trimmed");
	CHECK(!cfdw_host_allowed("wiki.corp", ""), "an empty list allows nothing");
	for (i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
		CHECK(cfdw_address_internal(addr(internal[i])), "%s is internal", internal[i]);
	for (i = 0; i < sizeof(external) / sizeof(external[0]); i++)
		CHECK(!cfdw_address_internal(addr(external[i])), "%s is not internal", external[i]);
}

/* The rel="next" target of a Link header, or "(none)". */
static size_t
Min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static const char *
link_next(const char *header, size_t outsize)
{
	static char out[512];

	if (!cfdw_link_next(header, out, Min_size(outsize, sizeof(out))))
		return "(none)";
	return out;
}

static void
test_link_next(void)
{
	current_group = "link";

	CHECK_STR(link_next("</wiki/api/v2/pages?cursor=abc&limit=250>; rel=\"next\", "
						"<https://acme.atlassian.net/wiki>; rel=\"base\"", 512),
			  "/wiki/api/v2/pages?cursor=abc&limit=250", "Confluence's form");
	CHECK_STR(link_next("<https://acme.atlassian.net/wiki>; rel=\"base\", </n?c=1>; rel=\"next\"", 512),
			  "/n?c=1", "next after base");
	CHECK_STR(link_next("</n?c=1>;rel=next", 512), "/n?c=1", "an unquoted rel");
	CHECK_STR(link_next("</n?c=1>; title=\"a, b; c\"; rel=\"prev next\"", 512), "/n?c=1",
			  "a quoted parameter with ',' and ';', and a rel list");
	CHECK_STR(link_next("</n>; REL=\"NEXT\"", 512), "/n", "names and values are case-insensitive");
	CHECK_STR(link_next("<https://acme.atlassian.net/wiki>; rel=\"base\"", 512), "(none)",
			  "no next link on the last page");
	CHECK_STR(link_next("</n>; rel=\"nextpage\"", 512), "(none)", "a longer rel is not next");
	CHECK_STR(link_next("", 512), "(none)", "an empty header");
	CHECK_STR(link_next("/n; rel=next", 512), "(none)", "a target without <>");
	CHECK_STR(link_next("</n; rel=next", 512), "(none)", "an unclosed <");
	CHECK_STR(link_next("</n>; rel=\"next", 512), "(none)", "an unclosed quote");
	CHECK_STR(link_next("</n>; rel=next", 512), "/n", "fits exactly");
	CHECK_STR(link_next("</n>; rel=next", 2), "(none)", "too long for the buffer is no link");
	CHECK_STR(link_next("<>; rel=next", 512), "(none)", "an empty target");
	CHECK(!cfdw_link_next(NULL, NULL, 0), "NULL header");
}

/* ---------------------------------------------------------------------
 * Rate-limit headers, site keys and pacing
 * ---------------------------------------------------------------------
 */

/* 2026-03-26T14:00:00Z */
#define T_2026 ((time_t) 1774533600)

static void
count_is(const char *value, long long expected)
{
	long long	v = -1;
	bool		ok = cfdw_rate_count(value, &v);

	CHECK(expected < 0 ? !ok : (ok && v == expected),
		  "count %s: expected %lld, got %s %lld", show(value), expected, ok ? "ok" : "refused", v);
}

static void
time_is(const char *value, long long expected)
{
	time_t		t = 0;
	bool		ok = cfdw_rate_time(value, &t);

	CHECK(expected < 0 ? !ok : (ok && (long long) t == expected),
		  "time %s: expected %lld, got %s %lld", show(value), expected,
		  ok ? "ok" : "refused", (long long) t);
}

/* Parse headers at T_2026; check limit, remaining, reset offset, near, reason. */
static void
rate_is(const CfdwRateHeaders *h, bool any, long long limit, long long remaining,
		long long reset_in, int near, const char *reason, const char *what)
{
	CfdwRateInfo info;
	bool		got = cfdw_rate_parse(h, T_2026, &info);

	CHECK(got == any, "%s: expected %s, got %s", what, any ? "something" : "nothing",
		  got ? "something" : "nothing");
	CHECK(info.limit == limit, "%s: limit: expected %lld, got %lld", what, limit, info.limit);
	CHECK(info.remaining == remaining, "%s: remaining: expected %lld, got %lld", what,
		  remaining, info.remaining);
	CHECK((reset_in < 0 ? info.reset == 0 : (long long) (info.reset - T_2026) == reset_in),
		  "%s: reset: expected +%lld, got %lld", what, reset_in,
		  info.reset ? (long long) (info.reset - T_2026) : -1LL);
	CHECK(info.near_limit == near, "%s: near: expected %d, got %d", what, near, info.near_limit);
	CHECK_STR(info.reason, reason, what);
}

static void
key_is(const char *url, const char *cloud_id, const char *expected)
{
	char		out[CFDW_SITE_KEY_LEN];
	bool		ok = cfdw_site_key(url, cloud_id, out, sizeof(out));
	char		what[300];

	snprintf(what, sizeof(what), "site key of %s (cloudId %s)", show(url), show(cloud_id));
	CHECK_STR(ok ? out : NULL, expected, what);
}

static void
test_rate(void)
{
	CfdwRateHeaders h;
	CfdwPace	p;
	bool		paced;
	char		small[8];
	int64_t		t;
	int			i;

	current_group = "rate";

	/* counts */
	count_is("0", 0);
	count_is("350", 350);
	count_is(" 349 ", 349);
	count_is("1000000000000", 1000000000000LL);
	count_is("1000000000001", -1);
	count_is("99999999999999999999999", -1);
	count_is("-1", -1);
	count_is("+5", -1);
	count_is("1.5", -1);
	count_is("12abc", -1);
	count_is("", -1);
	count_is("   ", -1);
	count_is("0x10", -1);
	count_is(NULL, -1);

	/* ISO 8601 times */
	time_is("2026-03-26T14:00Z", T_2026);
	time_is("2026-03-26T14:00:00Z", T_2026);
	time_is("2026-03-26T14:00:05Z", T_2026 + 5);
	time_is("2026-03-26T14:00:05.000Z", T_2026 + 5);
	time_is("2026-03-26T14:00:05.001Z", T_2026 + 6);	/* a fraction rounds up */
	time_is("2026-03-26t14:00z", T_2026);
	time_is("2026-03-26 14:00Z", T_2026);
	time_is(" 2026-03-26T14:00Z ", T_2026);
	time_is("2026-03-26T15:00+01:00", T_2026);
	time_is("2026-03-26T15:00+0100", T_2026);
	time_is("2026-03-26T15:00+01", T_2026);
	time_is("2026-03-26T13:30-00:30", T_2026);
	time_is("2024-02-29T00:00Z", 1709164800);
	time_is("1970-01-01T00:00Z", 0);
	time_is("2026-03-26T14:00", -1);	/* no zone */
	time_is("2026-03-26", -1);
	time_is("2026-3-26T14:00Z", -1);
	time_is("2026-13-26T14:00Z", -1);
	time_is("2026-02-29T14:00Z", -1);
	time_is("2026-03-32T14:00Z", -1);
	time_is("2026-03-26T24:00Z", -1);
	time_is("2026-03-26T14:60Z", -1);
	time_is("2026-03-26T14:00:61Z", -1);
	time_is("2026-03-26T14:00Zjunk", -1);
	time_is("2026-03-26T14:00+25:00", -1);
	time_is("2026-03-26T14:00:05.Z", -1);
	time_is("1969-12-31T23:59Z", -1);
	time_is("Thu, 26 Mar 2026 14:00:00 GMT", -1);
	time_is("1774533600", -1);
	time_is("", -1);
	time_is(NULL, -1);

	/* flags */
	CHECK(cfdw_rate_flag("true") == 1, "flag true");
	CHECK(cfdw_rate_flag(" TRUE ") == 1, "flag TRUE");
	CHECK(cfdw_rate_flag("false") == 0, "flag false");
	CHECK(cfdw_rate_flag("False") == 0, "flag False");
	CHECK(cfdw_rate_flag("1") == -1, "flag 1");
	CHECK(cfdw_rate_flag("yes") == -1, "flag yes");
	CHECK(cfdw_rate_flag("truest") == -1, "flag truest");
	CHECK(cfdw_rate_flag("") == -1, "flag empty");
	CHECK(cfdw_rate_flag(NULL) == -1, "flag NULL");

	/* whole answers */
	memset(&h, 0, sizeof(h));
	rate_is(&h, false, -1, -1, -1, -1, "", "no headers");
	h.limit = "100";
	h.remaining = "17";
	h.reset = "2026-03-26T14:00:30Z";
	h.near_limit = "true";
	h.reason = "confluence-quota-tenant-based";
	rate_is(&h, true, 100, 17, 30, 1, "confluence-quota-tenant-based", "all X- headers");
	h.remaining = "101";
	rate_is(&h, true, -1, -1, -1, 1, "confluence-quota-tenant-based",
			"Remaining above Limit: neither is used");
	h.remaining = "garbage";
	rate_is(&h, true, -1, -1, -1, 1, "confluence-quota-tenant-based", "unreadable Remaining");
	h.remaining = "5";
	h.reset = "2026-03-26T13:59:59Z";
	rate_is(&h, true, 100, 5, -1, 1, "confluence-quota-tenant-based", "a reset in the past");
	h.reset = "2026-03-28T14:00Z";
	rate_is(&h, true, 100, 5, -1, 1, "confluence-quota-tenant-based", "a reset two days ahead");
	h.reset = "soon";
	h.limit = "lots";
	h.near_limit = "maybe";
	h.reason = "bad\x01reason";
	rate_is(&h, true, -1, 5, -1, -1, "", "garbage but Remaining");
	h.reason = "caf\xc3\xa9";
	rate_is(&h, true, -1, 5, -1, -1, "", "a non-ASCII reason");
	h.reason = "  jira-burst-based  ";
	rate_is(&h, true, -1, 5, -1, -1, "jira-burst-based", "a reason is trimmed");
	h.reason = "x123456789x123456789x123456789x123456789x123456789x123456789x123456789";
	{
		CfdwRateInfo info;

		cfdw_rate_parse(&h, T_2026, &info);
		CHECK(strlen(info.reason) == CFDW_RATE_REASON_LEN - 1, "a long reason is cut: %zu",
			  strlen(info.reason));
	}

	/* the Beta pair */
	memset(&h, 0, sizeof(h));
	h.policy = "\"tenant-app-quota\";q=100100;w=3600";
	h.beta = "\"tenant-app-quota\";r=17842;t=2107";
	rate_is(&h, true, 100100, 17842, 2107, -1, "", "Beta headers as seen live");
	h.beta = "\"tenant-app-quota\";r=17842;t=4000";
	rate_is(&h, true, 100100, 17842, -1, -1, "", "a t beyond the window is not used");
	h.beta = "\"tenant-app-quota\";r=200000;t=10";
	rate_is(&h, false, -1, -1, -1, -1, "", "r above q");
	h.policy = NULL;
	h.beta = "\"tenant-app-quota\";r=0;t=10";
	rate_is(&h, true, -1, 0, 10, -1, "", "the policy is gone at r=0");
	h.beta = "tenant-app-quota;r=12;t=10";
	rate_is(&h, true, -1, 12, 10, -1, "", "an unquoted name");
	h.beta = "\"a\";r=100;t=100, \"b\";r=5;t=100";
	rate_is(&h, true, -1, 5, 100, -1, "", "of two, the slower pace");
	h.beta = "\"a\";r=x;t=100";
	rate_is(&h, false, -1, -1, -1, -1, "", "an unreadable r");
	h.beta = "\"unterminated;r=1;t=1";
	rate_is(&h, false, -1, -1, -1, -1, "", "an unterminated name");
	h.beta = ";;;,,,\"\";r=;t";
	rate_is(&h, false, -1, -1, -1, -1, "", "punctuation only");
	h.beta = "\"a\"junk;r=1";
	rate_is(&h, false, -1, -1, -1, -1, "", "junk after the name");
	/* both sources: the one that allows fewer requests per second */
	h.limit = "350";
	h.remaining = "349";
	h.reset = "2026-03-26T14:01Z";
	h.policy = "\"tenant-app-quota\";q=100100;w=3600";
	h.beta = "\"tenant-app-quota\";r=100;t=3000";
	rate_is(&h, true, 100100, 100, 3000, -1, "", "Beta is slower");
	h.beta = "\"tenant-app-quota\";r=90000;t=3000";
	rate_is(&h, true, 350, 349, 60, -1, "", "X- is slower");

	/* site keys */
	key_is("https://acme.atlassian.net", NULL, "acme.atlassian.net");
	key_is("https://ACME.Atlassian.NET/wiki/api/v2/pages", NULL, "acme.atlassian.net");
	key_is("https://acme.atlassian.net:443/wiki", NULL, "acme.atlassian.net");
	key_is("http://127.0.0.1:8080/wiki", NULL, "127.0.0.1:8080");
	key_is("http://localhost:80", NULL, "localhost");
	key_is("https://h:8443", NULL, "h:8443");
	key_is("https://[::1]:8443/x", NULL, "[::1]:8443");
	key_is("https://user@host.example/x", NULL, "host.example");
	key_is("https://api.atlassian.com/ex/confluence/1A2b-3c/wiki/api/v2/pages", NULL, "1a2b-3c");
	key_is("https://api.atlassian.com/ex/confluence/1a2b-3c", NULL, "1a2b-3c");
	key_is("https://api.atlassian.com/ex/confluence/", NULL, "api.atlassian.com");
	key_is("https://api.atlassian.com/ex/confluence/a%2Fb/wiki", NULL, "api.atlassian.com");
	key_is("https://api.atlassian.com/ex/jira/abc/rest", NULL, "api.atlassian.com");
	key_is("https://acme.atlassian.net", "ABC-123", "abc-123");
	key_is("https://acme.atlassian.net", "", "acme.atlassian.net");
	key_is("https://acme.atlassian.net", "bad/id", NULL);
	key_is("acme.atlassian.net", NULL, NULL);
	key_is("https://", NULL, NULL);
	key_is("https://[::1/x", NULL, NULL);
	key_is(NULL, NULL, NULL);
	CHECK(!cfdw_site_key("https://toolongforeight.example", NULL, small, sizeof(small)),
		  "a key that does not fit");

	/* pacing: far from the limit, requests go at once */
	memset(&p, 0, sizeof(p));
	p.limit = p.budget = p.near_limit = -1;
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 0 && !paced && p.inflight == 1, "unknown: at once, in flight %lld", p.inflight);
	{
		CfdwRateInfo info = {100, 90, 0, 0, ""};

		cfdw_pace_answered(&p, &info, 10000000, 0);
	}
	CHECK(p.budget == 90 && p.reset == 10000000 && p.inflight == 0,
		  "answered: budget %lld reset %lld in flight %lld", p.budget, (long long) p.reset,
		  p.inflight);
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 0 && !paced && p.budget == 89, "far from the limit: at %lld, budget %lld",
		  (long long) t, p.budget);
	/* below a fifth of the limit: the budget is spread until the reset */
	p.budget = 10;
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 0 && !paced && p.next_at == 1000000, "first paced one at once, next in 1 s: %lld",
		  (long long) p.next_at);
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 1000000 && paced, "second at 1 s: %lld", (long long) t);
	for (i = 0; i < 7; i++)
		t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 8000000 && p.budget == 1, "ninth at 8 s: %lld, budget %lld", (long long) t, p.budget);
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 9000000 && p.budget == 0, "the last one before the reset: %lld", (long long) t);
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 10000000 && paced, "nothing left: at the reset: %lld", (long long) t);
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 10000000 && p.budget == -1 && p.inflight == 13,
		  "the new window is unknown: at once %lld (in flight %lld)", (long long) t, p.inflight);
	for (i = 0; i < 20; i++)
		cfdw_pace_answered(&p, NULL, 0, 0);
	CHECK(p.inflight == 0, "failures are no longer in flight, never below 0: %lld", p.inflight);

	/* Remaining less the other requests in flight */
	memset(&p, 0, sizeof(p));
	p.limit = p.budget = p.near_limit = -1;
	for (i = 0; i < 4; i++)
		(void) cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	{
		CfdwRateInfo info = {10, 9, 0, -1, ""};

		/* the first of 4 in flight: 9 left for it, 6 for anyone else */
		cfdw_pace_answered(&p, &info, 60000000, 1000);
		CHECK(p.budget == 6 && p.inflight == 3, "in flight: budget %lld", p.budget);
		info.remaining = 6;
		cfdw_pace_answered(&p, &info, 60000000, 2000);
		CHECK(p.budget == 4, "the second, 2 still in flight: budget %lld", p.budget);
		(void) cfdw_pace_claim(&p, 3000, 0, 0, -1, &paced);
		(void) cfdw_pace_claim(&p, 3000, 0, 0, -1, &paced);
		info.remaining = 1;
		cfdw_pace_answered(&p, &info, 60000000, 4000);
		CHECK(p.budget == 0, "more in flight than left: budget %lld", p.budget);
		/* the answer of a request the server took earlier, read later */
		{
			CfdwPace	q = p;

			q.budget = 2;
			info.remaining = 7;
			cfdw_pace_answered(&q, &info, 60400000, 4000);
			CHECK(q.budget == 2, "out of order, same window: no budget given back: %lld",
				  q.budget);
			info.remaining = 1;
		}
		/* an answer of a window that is over, read after a later one's */
		info.remaining = 5;
		cfdw_pace_answered(&p, &info, 0, 4000);
		CHECK(p.budget == 0 && p.reset == 60000000,
			  "no reset while a later window is known: budget %lld, reset %lld",
			  p.budget, (long long) p.reset);
		cfdw_pace_answered(&p, &info, 50000000, 4000);
		CHECK(p.budget == 4 && p.reset == 50000000,
			  "an earlier reset still ahead is taken: budget %lld, reset %lld", p.budget,
			  (long long) p.reset);
		info.remaining = 0;
		cfdw_pace_answered(&p, &info, 60000000, 4000);
		CHECK(p.inflight == 0, "all answered: %lld", p.inflight);
		info.remaining = 100;
		info.near_limit = 1;
		(void) cfdw_pace_claim(&p, 61000000, 0, 0, -1, &paced);
		cfdw_pace_answered(&p, &info, 120000000, 61000000);
		t = cfdw_pace_claim(&p, 61000000, 0, 0, -1, &paced);
		CHECK(p.next_at == 61000000 + 59000000 / 100, "NearLimit spreads at once: next %lld",
			  (long long) p.next_at);
		info.near_limit = -1;
		cfdw_pace_answered(&p, &info, 120000000, 61000000);
		CHECK(p.near_limit == 1, "NearLimit holds for its window: %d", p.near_limit);
		cfdw_pace_answered(&p, &info, 180000000, 121000000);
		CHECK(p.near_limit == -1, "and not into the next: %d", p.near_limit);
		info.remaining = -1;
		info.near_limit = 0;
		cfdw_pace_answered(&p, &info, 0, 121000000);
		CHECK(p.near_limit == 0 && p.budget == 100, "NearLimit alone: %d, budget %lld",
			  p.near_limit, p.budget);
	}
	/* the pause and not_before come first; max_rate caps without headers */
	memset(&p, 0, sizeof(p));
	p.limit = p.budget = p.near_limit = -1;
	p.paused_until = 5000000;
	t = cfdw_pace_claim(&p, 0, 0, 0, -1, &paced);
	CHECK(t == 5000000 && !paced, "a pause is no pacing: %lld", (long long) t);
	t = cfdw_pace_claim(&p, 6000000, 7000000, 4, -1, &paced);
	CHECK(t == 7000000 && !paced && p.next_at == 7250000, "max_rate 4: next %lld",
		  (long long) p.next_at);
	t = cfdw_pace_claim(&p, 6000000, 0, 4, -1, &paced);
	CHECK(t == 7250000 && paced, "max_rate 4: second %lld", (long long) t);
	t = cfdw_pace_claim(&p, 0, 0, 1e-30, -1, &paced);
	CHECK(t == 7500000 && p.next_at > t, "a tiny max_rate does not overflow: %lld",
		  (long long) p.next_at);

	/*
	 * Nothing left until a reset an hour away, and a request may wait 60 s:
	 * it goes at once, spaced by max_rate only, and the window stays as it
	 * was (the next one is not held either); within the bound, it waits.
	 */
	memset(&p, 0, sizeof(p));
	p.limit = 1000;
	p.budget = 0;
	p.near_limit = 1;
	p.reset = 3600000000LL;
	t = cfdw_pace_claim(&p, 0, 0, 0, 60000000, &paced);
	CHECK(t == 0 && !paced && p.budget == 0 && p.reset == 3600000000LL && p.next_at == 0 &&
		  p.inflight == 1, "a reset beyond the wait: at once %lld, budget %lld, next %lld",
		  (long long) t, p.budget, (long long) p.next_at);
	t = cfdw_pace_claim(&p, 0, 0, 4, 60000000, &paced);
	CHECK(t == 0 && p.next_at == 250000, "then max_rate only: %lld, next %lld",
		  (long long) t, (long long) p.next_at);
	t = cfdw_pace_claim(&p, 0, 0, 4, 60000000, &paced);
	CHECK(t == 250000 && paced, "max_rate still spaces them: %lld", (long long) t);
	t = cfdw_pace_claim(&p, 3590000000LL, 0, 0, 60000000, &paced);
	CHECK(t == 3600000000LL && paced && p.budget == -1, "a reset within the wait is waited for: %lld",
		  (long long) t);
}

/* ---------------------------------------------------------------------
 * Atlassian's API gateway: cloudIds, next links, scopes
 * ---------------------------------------------------------------------
 */

static void
test_cloud_id(void)
{
	char		out[64];

	current_group = "cloud_id";
	CHECK(cfdw_cloud_id_valid("a436116f-02ce-4520-8fbb-7301462a1674"), "a cloudId");
	CHECK(cfdw_cloud_id_valid("A436116F-02CE-4520-8FBB-7301462A1674"), "upper case");
	CHECK(!cfdw_cloud_id_valid(""), "empty");
	CHECK(!cfdw_cloud_id_valid(NULL), "NULL");
	CHECK(!cfdw_cloud_id_valid("a436116f02ce45208fbb7301462a1674"), "no dashes");
	CHECK(!cfdw_cloud_id_valid("a436116f-02ce-4520-8fbb-7301462a16745"), "one digit too many");
	CHECK(!cfdw_cloud_id_valid("a436116f-02ce-4520-8fbb-7301462a167"), "one digit too few");
	CHECK(!cfdw_cloud_id_valid("g436116f-02ce-4520-8fbb-7301462a1674"), "not hex");
	CHECK(!cfdw_cloud_id_valid("a436116f-02ce-4520-8fbb-7301462a1674/"), "a trailing slash");
	CHECK(!cfdw_cloud_id_valid("../../x-02ce-4520-8fbb-7301462a1674"), "a path");

	CHECK(cfdw_cloud_id_of_url("https://api.atlassian.com/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674",
							   out, sizeof(out)), "a gateway base");
	CHECK_STR(out, "a436116f-02ce-4520-8fbb-7301462a1674", "its cloudId");
	CHECK(cfdw_cloud_id_of_url("http://127.0.0.1:1/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674/wiki/api/v2/pages?x=1",
							   out, sizeof(out)), "a URL under it");
	CHECK_STR(out, "a436116f-02ce-4520-8fbb-7301462a1674", "its cloudId");
	CHECK(!cfdw_cloud_id_of_url("https://acme.atlassian.net", out, sizeof(out)), "a site");
	CHECK(!cfdw_cloud_id_of_url("https://api.atlassian.com/ex/confluence/", out, sizeof(out)), "no id");
	CHECK(!cfdw_cloud_id_of_url("https://api.atlassian.com/ex/confluence/abc", out, sizeof(out)), "not a cloudId");
	CHECK(!cfdw_cloud_id_of_url("https://api.atlassian.com/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674",
								out, 10), "too long for the buffer");
}

static void
test_next_link_rest(void)
{
	const char *gw = "https://api.atlassian.com/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674";

	current_group = "next_link";
	CHECK_STR(cfdw_next_link_rest(gw, "/wiki/api/v2/pages?cursor=X"), "/wiki/api/v2/pages?cursor=X",
			  "relative to the site: appended, the prefix kept");
	CHECK_STR(cfdw_next_link_rest(gw, "/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674/wiki/api/v2/pages?cursor=X"),
			  "/wiki/api/v2/pages?cursor=X", "already with the prefix: not doubled");
	CHECK_STR(cfdw_next_link_rest(gw, "https://api.atlassian.com/ex/confluence/a436116f-02ce-4520-8fbb-7301462a1674/wiki/api/v2/pages?cursor=X"),
			  "/wiki/api/v2/pages?cursor=X", "absolute on the base");
	CHECK(cfdw_next_link_rest(gw, "https://acme.atlassian.net/wiki/api/v2/pages?cursor=X") == NULL,
		  "absolute on the site: leaves the gateway");
	CHECK(cfdw_next_link_rest(gw, "https://api.atlassian.com/ex/confluence/b436116f-02ce-4520-8fbb-7301462a1674/wiki") == NULL,
		  "another cloudId");
	CHECK(cfdw_next_link_rest(gw, "//evil.example/wiki") == NULL, "scheme-relative");
	CHECK_STR(cfdw_next_link_rest("https://acme.atlassian.net", "/wiki/api/v2/pages?cursor=X"),
			  "/wiki/api/v2/pages?cursor=X", "a site without prefix");
	CHECK_STR(cfdw_next_link_rest("http://127.0.0.1:5/ex/confluence/x", "/ex/confluence/xy/wiki"),
			  "/ex/confluence/xy/wiki", "a longer segment is not the prefix");
}

/* The v2 spec's oAuthDefinitions scopes of one operation, or NULL. */
static const char *
spec_scope(cJSON *spec, const char *method, const char *path)
{
	char		lower[16];
	cJSON	   *op;
	cJSON	   *sec;
	cJSON	   *req;

	size_t		i;

	for (i = 0; i < sizeof(lower) - 1 && method[i]; i++)
		lower[i] = (char) tolower((unsigned char) method[i]);
	lower[i] = '\0';
	op = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
												cJSON_GetObjectItemCaseSensitive(spec, "paths"), path), lower);
	sec = cJSON_GetObjectItemCaseSensitive(op, "security");
	cJSON_ArrayForEach(req, sec)
	{
		cJSON	   *scopes = cJSON_GetObjectItemCaseSensitive(req, "oAuthDefinitions");

		if (cJSON_IsArray(scopes) && cJSON_GetArraySize(scopes) == 1 &&
			cJSON_IsString(cJSON_GetArrayItem(scopes, 0)))
			return cJSON_GetArrayItem(scopes, 0)->valuestring;
	}
	return NULL;
}

static void
test_scopes(void)
{
	const char *file = getenv("CFDW_TEST_SPEC");
	FILE	   *f;
	char	   *text;
	long		len;
	cJSON	   *spec;
	int			compared = 0;

	current_group = "scopes";
	CHECK_STR(cfdw_scope_find("POST", "/wiki/api/v2/pages")->scope, "write:page:confluence", "create a page");
	CHECK_STR(cfdw_scope_find("PUT", "/wiki/api/v2/pages/123")->scope, "write:page:confluence", "update one");
	CHECK_STR(cfdw_scope_find("GET", "/wiki/api/v2/pages?title=x&limit=250")->scope, "read:page:confluence",
			  "a list, with a query");
	CHECK_STR(cfdw_scope_find("GET", "/wiki/api/v2/pages/12/footer-comments?limit=250")->scope,
			  "read:comment:confluence", "the comments of a page");
	CHECK_STR(cfdw_scope_find("DELETE", "/wiki/api/v2/footer-comments/9")->path,
			  "/wiki/api/v2/footer-comments/{comment-id}", "the spec's path");
	CHECK(cfdw_scope_find("GET", "/wiki/api/v2/pages/") == NULL, "an empty segment");
	CHECK(cfdw_scope_find("PATCH", "/wiki/api/v2/pages/1") == NULL, "no such operation");
	CHECK(cfdw_scope_find("GET", "/wiki/echo/x") == NULL, "not Confluence's");

	if (file == NULL)
	{
		printf("unit: SKIP the scope table against the spec (CFDW_TEST_SPEC unset)\n");
		return;
	}
	f = fopen(file, "rb");
	CHECK(f != NULL, "open %s", file);
	if (f == NULL)
		return;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = malloc(len + 1);
	CHECK(text && fread(text, 1, len, f) == (size_t) len, "read %s", file);
	fclose(f);
	text[len] = '\0';
	spec = cJSON_Parse(text);
	free(text);
	CHECK(spec != NULL, "parse %s", file);
	for (const CfdwScope *s = cfdw_scopes; spec && s->method; s++)
	{
		/* the v1 user/current row is from the v1 spec, not kept here */
		if (strncmp(s->path, "/wiki/api/v2/", 13) != 0)
			continue;
		CHECK_STR(s->scope, spec_scope(spec, s->method, s->path + strlen("/wiki/api/v2")), s->path);
		compared++;
	}
	CHECK(compared >= 29, "every v2 row compared (%d)", compared);
	cJSON_Delete(spec);
}

int
main(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
	{
		fprintf(stderr, "curl_global_init failed\n");
		return 2;
	}
	xmlInitParser();

	test_headers();
	test_headers_locale();
	test_paths();
	test_placeholders();
	test_percent_encode();
	test_retry_after();
	test_json_put();
	test_xml();
	test_form();
	test_egress();
	test_link_next();
	test_rate();
	test_cloud_id();
	test_next_link_rest();
	test_scopes();
	test_oom();

	xmlCleanupParser();
	curl_global_cleanup();

	printf("unit: %d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
