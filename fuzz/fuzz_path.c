/*-------------------------------------------------------------------------
 *
 * fuzz_path.c
 *		  libFuzzer harness for cfdw_path_check, cfdw_placeholder_value_ok
 *		  and cfdw_percent_encode.
 *
 * The input is an endpoint, a line feed (which no endpoint may hold), and
 * a placeholder value (any bytes, NUL included).
 * Oracles, by an independent reading of the rules: an accepted endpoint
 * starts with '/', holds only printable ASCII but '#' and '\', and its
 * path part has no %2e/%2f/%5c; once each {placeholder} is replaced by the
 * encoded value (when the value is accepted), every '%' starts a %XX
 * escape lying wholly in the template or in the value, and the path part
 * has no "//" and no "." or ".." segment even with its escapes decoded, so
 * the request cannot leave the path it names.  A value is refused exactly
 * when it is "", "." or "..".  Percent-encoding of exactly len bytes
 * (never reading past them, which ASan watches) gives only unreserved
 * characters and %XX, and decodes back.
 *
 * IDENTIFICATION
 *		  fuzz/fuzz_path.c
 *
 *-------------------------------------------------------------------------
 */
#include <strings.h>

#include "fuzz_common.h"

static bool
unreserved(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		c == '-' || c == '.' || c == '_' || c == '~';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Encoded text must be unreserved characters and %XX and decode to value. */
static void
check_encoding(const char *enc, const unsigned char *value, size_t len)
{
	size_t		i = 0;
	size_t		o = 0;

	FUZZ_ASSERT(enc != NULL, "percent-encoding returned NULL");
	while (enc[i])
	{
		int			c;

		if (enc[i] == '%')
		{
			int			hi = hexval(enc[i + 1]);
			int			lo = hi < 0 ? -1 : hexval(enc[i + 2]);

			FUZZ_ASSERT(hi >= 0 && lo >= 0, "bad %%XX in encoded text");
			c = hi * 16 + lo;
			FUZZ_ASSERT(!unreserved((unsigned char) c), "unreserved byte 0x%02x was encoded", c);
			i += 3;
		}
		else
		{
			FUZZ_ASSERT(unreserved((unsigned char) enc[i]), "byte 0x%02x left unencoded",
						(unsigned char) enc[i]);
			c = (unsigned char) enc[i++];
		}
		FUZZ_ASSERT(o < len && value[o] == c, "encoded text does not decode to the value");
		o++;
	}
	FUZZ_ASSERT(o == len, "encoded text decodes to %zu bytes, not %zu", o, len);
}

/* The promises about an accepted endpoint, checked on its path part. */
static void
check_safe_template(const char *url)
{
	const char *q = strchr(url, '?');
	size_t		pathlen = q ? (size_t) (q - url) : strlen(url);
	size_t		i;

	FUZZ_ASSERT(url[0] == '/', "accepted endpoint does not start with '/'");
	for (i = 0; url[i]; i++)
	{
		unsigned char c = (unsigned char) url[i];

		FUZZ_ASSERT(c > ' ' && c < 0x7f && c != '#' && c != '\\',
					"accepted endpoint holds byte 0x%02x", c);
	}
	for (i = 0; i < pathlen; i++)
		if (url[i] == '%')
			FUZZ_ASSERT(strncasecmp(url + i, "%2e", 3) != 0 && strncasecmp(url + i, "%2f", 3) != 0 &&
						strncasecmp(url + i, "%5c", 3) != 0,
						"accepted endpoint has an encoded dot, slash or backslash");
}

/*
 * A filled endpoint (origin[i] is 'T' for a template byte, 'V' for a byte of
 * an encoded value): it starts with '/'; every '%' starts a %XX escape that
 * lies wholly in the template or wholly in one value, so a value can never
 * complete an escape the template began; in the path part no segment is
 * empty, and none is "." or ".." even once its escapes are decoded.
 */
static void
check_filled(const char *url, const char *origin)
{
	const char *q = strchr(url, '?');
	size_t		pathlen = q ? (size_t) (q - url) : strlen(url);
	size_t		i;

	FUZZ_ASSERT(url[0] == '/', "filled endpoint does not start with '/'");
	for (i = 0; url[i]; i++)
	{
		unsigned char c = (unsigned char) url[i];

		FUZZ_ASSERT(c > ' ' && c < 0x7f && c != '#' && c != '\\',
					"filled endpoint holds byte 0x%02x", c);
		if (c == '%')
		{
			FUZZ_ASSERT(hexval(url[i + 1]) >= 0 && hexval(url[i + 2]) >= 0,
						"filled endpoint \"%s\" has a '%%' that starts no %%XX escape", url);
			FUZZ_ASSERT(origin[i] == origin[i + 1] && origin[i] == origin[i + 2],
						"filled endpoint \"%s\": a %%XX escape at %zu straddles template and value",
						url, i);
		}
	}
	for (i = 0; i < pathlen; i++)
	{
		if (url[i] == '/')
		{
			char		seg[3];
			size_t		n = 0;
			size_t		j = i + 1;

			/* the segment decoded, as far as its first three bytes */
			while (j < pathlen && url[j] != '/')
			{
				int			c = (unsigned char) url[j];

				if (c == '%')
				{
					c = hexval(url[j + 1]) * 16 + hexval(url[j + 2]);
					j += 3;
				}
				else
					j++;
				if (n < 3)
					seg[n] = (char) c;
				n++;
			}
			FUZZ_ASSERT(n > 0 || i + 1 == pathlen, "filled endpoint \"%s\" has \"//\"", url);
			FUZZ_ASSERT(!(n == 1 && seg[0] == '.'), "filled endpoint \"%s\" has a \".\" segment", url);
			FUZZ_ASSERT(!(n == 2 && seg[0] == '.' && seg[1] == '.'),
						"filled endpoint \"%s\" has a \"..\" segment", url);
		}
	}
}

/* Fill every placeholder of an accepted endpoint as request.c does; check. */
static void
fill_and_check(const char *path, const char *vstr)
{
	size_t		vl = strlen(vstr);
	char	   *e = cfdw_percent_encode(vstr, vl);
	size_t		elen;
	size_t		cap;
	char	   *url;
	char	   *origin;
	size_t		o = 0;
	const char *p;

	check_encoding(e, (const unsigned char *) vstr, vl);
	elen = strlen(e);
	cap = strlen(path) * (elen + 1) + 1;
	url = malloc(cap);
	origin = malloc(cap);
	if (url == NULL || origin == NULL)
		abort();
	for (p = path; *p; p++)
	{
		if (*p == '{')
		{
			const char *close = strchr(p, '}');

			FUZZ_ASSERT(close != NULL, "accepted endpoint has an open placeholder");
			memcpy(url + o, e, elen);
			memset(origin + o, 'V', elen);
			o += elen;
			p = close;
		}
		else
		{
			origin[o] = 'T';
			url[o++] = *p;
		}
	}
	url[o] = '\0';
	origin[o] = '\0';
	check_filled(url, origin);
	free(origin);
	free(url);
	curl_free(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, '\n', size);
	size_t		pathlen = sep ? (size_t) (sep - data) : size;
	char	   *path = fuzz_strndup(data, pathlen);
	size_t		vlen = sep ? size - pathlen - 1 : 0;
	unsigned char *value = malloc(vlen ? vlen : 1);	/* exact size: no NUL after it */
	char	   *vstr = fuzz_strndup(sep ? sep + 1 : data, vlen);
	char		err[CFDW_ERRLEN];
	bool		vok;
	char	   *enc;

	if (value == NULL)
		abort();
	memcpy(value, sep ? sep + 1 : data, vlen);
	if (vlen == 0)
		value[0] = 'Z';			/* zero bytes to encode: this one must not be read */

	/* the value alone */
	vok = cfdw_placeholder_value_ok(vstr);
	FUZZ_ASSERT(vok == !(strcmp(vstr, "") == 0 || strcmp(vstr, ".") == 0 || strcmp(vstr, "..") == 0),
				"placeholder value \"%s\" answered %d", vstr, vok);
	enc = cfdw_percent_encode((const char *) value, vlen);
	check_encoding(enc, value, vlen);
	curl_free(enc);

	/* the endpoint */
	memset(err, 0x7f, sizeof(err));
	if (!cfdw_path_check(path, err, sizeof(err)))
		fuzz_check_err(err, sizeof(err));
	else
	{
		check_safe_template(path);

		fill_and_check(path, "x");
		if (vok)
			fill_and_check(path, vstr);
	}

	free(vstr);
	free(value);
	free(path);
	return 0;
}
