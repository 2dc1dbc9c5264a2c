/*-------------------------------------------------------------------------
 *
 * fuzz_headers.c
 *		  libFuzzer harness for cfdw_headers_parse.
 *
 * The input is the headers option.  Oracles: every emitted header has a
 * non-empty name of RFC 9110 token characters that is not a forbidden
 * header, and a trimmed value of printable ASCII and tabs without commas;
 * both lie inside the option; a refusal has a message; the option holds
 * no CR or LF when accepted; and the message never depends on the letters
 * and digits of a value (so it cannot repeat it): the same option with
 * those rotated gives the same answer and the same message.  An accepted
 * non-empty option emits one header per comma-separated part.
 *
 * Header names must be ASCII whatever LC_CTYPE says, so the harness runs
 * in an ISO-8859-1 locale when it can find one: `make fuzz` builds one
 * under test/unit/build/locale and names that folder in CFDW_FUZZ_LOCPATH
 * (LOCPATH is set only around setlocale: set for the whole process,
 * glibc's newlocale() in a library constructor leaks its copy of it).
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_headers.c
 *
 *-------------------------------------------------------------------------
 */
#include <locale.h>
#include <strings.h>

#include "fuzz_common.h"

static const char *const forbidden[] = {
	"authorization", "proxy-authorization", "host", "content-length",
	"transfer-encoding", "connection", "cookie", "cookie2", "set-cookie",
	"set-cookie2", "expect", "te", "upgrade", "keep-alive", NULL
};

typedef struct Ctx
{
	const char *spec;
	size_t		speclen;
	int			count;
} Ctx;

static bool
ascii_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void
check_emit(void *arg, const char *name, size_t namelen, const char *value, size_t valuelen)
{
	Ctx		   *c = arg;
	const char *const *f;
	size_t		i;

	c->count++;
	FUZZ_ASSERT(name >= c->spec && name + namelen <= c->spec + c->speclen,
				"header name outside the option");
	FUZZ_ASSERT(value >= c->spec && value + valuelen <= c->spec + c->speclen,
				"header value outside the option");
	FUZZ_ASSERT(namelen > 0, "empty header name emitted");
	for (i = 0; i < namelen; i++)
		FUZZ_ASSERT(ascii_tchar((unsigned char) name[i]),
					"header name byte 0x%02x is not a token character", (unsigned char) name[i]);
	for (f = forbidden; *f; f++)
		FUZZ_ASSERT(!(strlen(*f) == namelen && strncasecmp(*f, name, namelen) == 0),
					"forbidden header %.*s emitted", (int) namelen, name);
	for (i = 0; i < valuelen; i++)
	{
		unsigned char ch = (unsigned char) value[i];

		FUZZ_ASSERT(ch == '\t' || (ch >= 0x20 && ch < 0x7f), "value byte 0x%02x emitted", ch);
		FUZZ_ASSERT(ch != ',', "comma inside an emitted value");
	}
	if (valuelen > 0)
	{
		FUZZ_ASSERT(value[0] != ' ' && value[0] != '\t', "value not trimmed on the left");
		FUZZ_ASSERT(value[valuelen - 1] != ' ' && value[valuelen - 1] != '\t',
					"value not trimmed on the right");
	}
}

/* Rotate the letters and digits of every value (after each item's first ':'). */
static void
rotate_values(char *s)
{
	bool		in_value = false;

	for (; *s; s++)
	{
		if (*s == ',')
			in_value = false;
		else if (!in_value && *s == ':')
			in_value = true;
		else if (in_value)
		{
			if (*s >= 'a' && *s <= 'z')
				*s = 'a' + (*s - 'a' + 7) % 26;
			else if (*s >= 'A' && *s <= 'Z')
				*s = 'A' + (*s - 'A' + 7) % 26;
			else if (*s >= '0' && *s <= '9')
				*s = '0' + (*s - '0' + 3) % 10;
		}
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const names[] = {
		"en_US.ISO-8859-1", "de_DE.ISO-8859-1", "fr_FR.ISO-8859-1", NULL
	};
	const char *const *n;
	const char *got = NULL;

	const char *locpath = getenv("CFDW_FUZZ_LOCPATH");

	(void) argc;
	(void) argv;
	if (locpath)
		setenv("LOCPATH", locpath, 1);
	for (n = names; *n && got == NULL; n++)
		got = setlocale(LC_CTYPE, *n);
	unsetenv("LOCPATH");
	fprintf(stderr, "fuzz_headers: LC_CTYPE is %s\n", got ? got : "C (no ISO-8859-1 locale found)");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *spec = fuzz_strndup(data, size);
	char	   *rotated;
	char		err[CFDW_ERRLEN];
	char		err2[CFDW_ERRLEN];
	char		tiny[4];
	Ctx			c;
	bool		ok;
	bool		ok2;

	c.spec = spec;
	c.speclen = strlen(spec);
	c.count = 0;
	memset(err, 0x7f, sizeof(err));
	ok = cfdw_headers_parse(spec, check_emit, &c, err, sizeof(err));
	if (ok)
	{
		const char *p;
		int			parts = 1;

		FUZZ_ASSERT(strpbrk(spec, "\r\n") == NULL, "an option with CR or LF was accepted");
		for (p = spec; *p; p++)
			parts += (*p == ',');
		FUZZ_ASSERT(spec[0] == '\0' ? c.count == 0 : c.count == parts,
					"%d headers emitted for %d comma-separated parts", c.count, parts);
	}
	else
		fuzz_check_err(err, sizeof(err));

	rotated = strdup(spec);
	if (rotated == NULL)
		abort();
	rotate_values(rotated);
	memset(err2, 0x7f, sizeof(err2));
	ok2 = cfdw_headers_parse(rotated, NULL, NULL, err2, sizeof(err2));
	FUZZ_ASSERT(ok == ok2, "the answer depends on the letters of a value");
	if (!ok)
		FUZZ_ASSERT(strcmp(err, err2) == 0,
					"the message depends on the letters of a value: \"%s\" vs \"%s\"", err, err2);

	/* a tiny message buffer is never overrun (ASan watches the stack) */
	ok2 = cfdw_headers_parse(spec, NULL, NULL, tiny, sizeof(tiny));
	FUZZ_ASSERT(ok == ok2, "the answer depends on the message buffer");

	free(rotated);
	free(spec);
	return 0;
}
