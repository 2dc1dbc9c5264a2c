/*-------------------------------------------------------------------------
 *
 * pure.c
 *		  Server-independent parts of confluence_fdw (see pure.h): plain C on
 *		  malloc, so they can be unit-tested and fuzzed without PostgreSQL.
 *
 * IDENTIFICATION
 *		  src/pure.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <libxml/tree.h>

#include "pure.h"

static bool fail(char *err, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static bool
fail(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (err && errlen > 0)
	{
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return false;
}

/* ---------------------------------------------------------------------
 * Headers
 * ---------------------------------------------------------------------
 */

/*
 * RFC 9110 token characters, the only ones allowed in a header name.  ASCII
 * only: isalnum() follows LC_CTYPE, which PostgreSQL sets from the database,
 * and in a single-byte locale (LATIN1, say) it is true for bytes like 0xE9.
 */
static bool
is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * Headers the extension sets itself or that would change what the request
 * means on the wire: a user must not be able to replace the credentials,
 * the target host or the framing.
 */
static const char *const forbidden_headers[] = {
	"authorization", "proxy-authorization", "host", "content-length",
	"transfer-encoding", "connection", "cookie", "cookie2", "set-cookie",
	"set-cookie2", "expect", "te", "upgrade", "keep-alive", NULL
};

bool
cfdw_headers_parse(const char *spec, cfdw_header_emit emit, void *arg,
				   char *err, size_t errlen)
{
	const char *p = spec;
	int			n = 0;
	bool		more;

	if (spec == NULL || spec[0] == '\0')
		return true;
	if (strpbrk(spec, "\r\n") != NULL)
		return fail(err, errlen, "headers must not contain carriage returns or line feeds");

	/* one item per comma-separated part, the empty part after a trailing ',' too */
	do
	{
		const char *item = p;
		const char *end = strchr(p, ',');
		const char *colon;
		const char *name,
				   *value;
		size_t		namelen,
					valuelen;
		const char *const *f;
		size_t		i;

		if (end == NULL)
			end = p + strlen(p);
		more = (*end == ',');
		p = more ? end + 1 : end;
		n++;

		colon = memchr(item, ':', end - item);
		if (colon == NULL)
		{
			/* an empty item (",,", trailing ",") is a typo, not a header */
			return fail(err, errlen, "header %d has no ':' between its name and value", n);
		}
		name = item;
		namelen = colon - item;
		while (namelen > 0 && (*name == ' ' || *name == '\t'))
			name++, namelen--;
		while (namelen > 0 && (name[namelen - 1] == ' ' || name[namelen - 1] == '\t'))
			namelen--;
		value = colon + 1;
		valuelen = end - value;
		while (valuelen > 0 && (*value == ' ' || *value == '\t'))
			value++, valuelen--;
		while (valuelen > 0 && (value[valuelen - 1] == ' ' || value[valuelen - 1] == '\t'))
			valuelen--;

		if (namelen == 0)
			return fail(err, errlen, "header %d has an empty name", n);
		for (i = 0; i < namelen; i++)
			if (!is_tchar((unsigned char) name[i]))
				return fail(err, errlen,
							"header %d has a name with a character not allowed in header names", n);
		for (i = 0; i < valuelen; i++)
		{
			unsigned char c = (unsigned char) value[i];

			if ((c < 0x20 && c != '\t') || c >= 0x7f)
				return fail(err, errlen,
							"value of header \"%.*s\" has a control or non-ASCII character",
							(int) namelen, name);
		}
		for (f = forbidden_headers; *f; f++)
			if (strlen(*f) == namelen && strncasecmp(*f, name, namelen) == 0)
				return fail(err, errlen,
							"header \"%.*s\" cannot be set: confluence_fdw sets it itself or it would change the request's framing or credentials",
							(int) namelen, name);
		if (emit)
			emit(arg, name, namelen, value, valuelen);
	} while (more);
	return true;
}

/* ---------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------
 */

/*
 * Is this path segment "." or "..", also with servlet path parameters
 * ("..;", "..;jsessionid=x"), which Tomcat and some proxies in front of
 * Confluence treat as the bare dot segment?
 */
static bool
dot_segment(const char *seg, size_t len)
{
	const char *semi = memchr(seg, ';', len);

	if (semi)
		len = (size_t) (semi - seg);
	return (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.');
}

bool
cfdw_path_check(const char *path, char *err, size_t errlen)
{
	const char *p;
	const char *query = strchr(path, '?');
	size_t		pathlen = query ? (size_t) (query - path) : strlen(path);
	bool		in_placeholder = false;

	if (path[0] != '/')
		return fail(err, errlen, "a manual endpoint must be a path starting with \"/\"");

	for (p = path; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= ' ' || c >= 0x7f || c == '#' || c == '\\')
			return fail(err, errlen,
						"a path may not contain spaces, control characters, '#', '\\' or non-ASCII characters");
		/*
		 * Every '%' starts a %XX escape: a bare one would let a placeholder
		 * value complete it ("%{id}" with "2e" makes "%2e").
		 */
		if (c == '%' && !(isxdigit((unsigned char) p[1]) && isxdigit((unsigned char) p[2])))
			return fail(err, errlen,
						"a '%%' in a path must start a percent-encoded byte such as %%20");
		if (c == '{')
		{
			if (in_placeholder)
				return fail(err, errlen, "a placeholder may not contain '{'");
			in_placeholder = true;
			if (p[1] == '}')
				return fail(err, errlen, "a placeholder needs a column name, as in {id}");
		}
		else if (c == '}')
		{
			if (!in_placeholder)
				return fail(err, errlen, "'}' without a matching '{'");
			in_placeholder = false;
		}
		else if (in_placeholder && !(isalnum(c) || c == '_'))
			return fail(err, errlen,
						"a placeholder holds a column name (letters, digits, '_'), as in {id}");
	}
	if (in_placeholder)
		return fail(err, errlen, "a placeholder is not closed with '}'");

	for (p = path; p < path + pathlen; p++)
	{
		if (p[0] == '/' && p[1] == '/')
			return fail(err, errlen, "a path may not contain \"//\"");
		if (*p == '/')
		{
			const char *seg = p + 1;
			size_t		seglen = strcspn(seg, "/?");

			if (dot_segment(seg, seglen))
				return fail(err, errlen,
							"a path may not contain \".\" or \"..\" segments (also as \"..;\")");
		}
		if (*p == '%' && (strncasecmp(p, "%2e", 3) == 0 ||
						  strncasecmp(p, "%2f", 3) == 0 ||
						  strncasecmp(p, "%5c", 3) == 0))
			return fail(err, errlen,
						"a path may not contain percent-encoded dots, slashes or backslashes");
	}
	return true;
}

bool
cfdw_placeholder_value_ok(const char *value)
{
	/* percent-encoding keeps the dots, and ';' decodes back at a proxy */
	return value[0] != '\0' && !dot_segment(value, strlen(value));
}

char *
cfdw_percent_encode(const char *value, size_t len)
{
	/*
	 * RFC 3986 unreserved characters stay, everything else is %XX.  libcurl
	 * takes length 0 to mean strlen(), and its length is an int.
	 */
	if (len > INT_MAX)
		return NULL;
	if (len == 0)
		return curl_easy_escape(NULL, "", 0);
	return curl_easy_escape(NULL, value, (int) len);
}

/* ---------------------------------------------------------------------
 * Retry-After
 * ---------------------------------------------------------------------
 */

#define RETRY_AFTER_CAP_S 86400L

long
cfdw_retry_after_ms(const char *value, time_t now)
{
	const char *p = value;
	long		secs = 0;
	bool		negative = false;
	time_t		when;

	if (value == NULL)
		return -1;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return -1;
	if (*p == '-' || *p == '+')
	{
		negative = (*p == '-');
		p++;
		if (!isdigit((unsigned char) *p))
			return -1;
	}
	if (isdigit((unsigned char) *p))
	{
		for (; isdigit((unsigned char) *p); p++)
		{
			/* saturate instead of overflowing on "99999999999999999999" */
			if (secs <= RETRY_AFTER_CAP_S)
				secs = secs * 10 + (*p - '0');
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '\0')
			return -1;
		if (negative)
			return 0;
		return (secs > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : secs) * 1000;
	}

	/* An HTTP-date; libcurl's parser takes the three formats RFC 9110 names. */
	when = curl_getdate(p, NULL);
	if (when == -1)
		return -1;
	if (when <= now)
		return 0;
	if (when - now > RETRY_AFTER_CAP_S)
		return RETRY_AFTER_CAP_S * 1000;
	return (long) (when - now) * 1000;
}

/* ---------------------------------------------------------------------
 * JSON paths
 * ---------------------------------------------------------------------
 */

/*
 * Replace or add key in obj; takes ownership of item.  A replacement keeps
 * the old member's place.  Not cJSON_ReplaceItemInObjectCaseSensitive:
 * cJSON 1.7.15 ignores a failure to copy the key there, and reports success
 * with a member that has no key.
 */
static bool
set_member(cJSON *obj, const char *key, cJSON *item)
{
	cJSON	   *old = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (old)
	{
		size_t		len = strlen(key) + 1;
		char	   *copy = cJSON_malloc(len);

		if (copy == NULL)
		{
			cJSON_Delete(item);
			return false;
		}
		memcpy(copy, key, len);
		if (item->string && !(item->type & cJSON_StringIsConst))
			cJSON_free(item->string);
		item->string = copy;
		item->type &= ~cJSON_StringIsConst;
		return cJSON_ReplaceItemViaPointer(obj, old, item);
	}
	if (!cJSON_AddItemToObject(obj, key, item))
	{
		cJSON_Delete(item);
		return false;
	}
	return true;
}

bool
cfdw_json_put(cJSON *root, const char *dotted, cJSON *item)
{
	cJSON	   *node = root;
	char	   *copy;
	char	   *key;
	const char *p;
	bool		ok;

	if (item == NULL)
		return false;

	/*
	 * Check the whole path first, so that a refused one ("a.", "a..b")
	 * leaves the tree as it was: no empty segment.
	 */
	ok = root != NULL && dotted != NULL && dotted[0] != '\0' && cJSON_IsObject(root);
	for (p = dotted; ok && *p; p++)
		if (*p == '.' && (p == dotted || p[1] == '\0' || p[1] == '.'))
			ok = false;
	copy = ok ? strdup(dotted) : NULL;
	if (copy == NULL)
	{
		cJSON_Delete(item);
		return false;
	}

	for (key = copy;;)
	{
		char	   *dot = strchr(key, '.');
		cJSON	   *child;

		if (dot == NULL)
		{
			ok = set_member(node, key, item);
			break;
		}
		*dot = '\0';
		child = cJSON_GetObjectItemCaseSensitive(node, key);
		if (child == NULL || !cJSON_IsObject(child))
		{
			child = cJSON_CreateObject();
			if (child == NULL || !set_member(node, key, child))
			{
				cJSON_Delete(item);
				ok = false;
				break;
			}
		}
		node = child;
		key = dot + 1;
	}
	free(copy);
	return ok;
}

/* ---------------------------------------------------------------------
 * XML bodies
 * ---------------------------------------------------------------------
 */

/*
 * XML 1.0 cannot carry most control characters, escaped or not, nor
 * U+FFFE and U+FFFF (UTF-8 EF BF BE and EF BF BF), which are valid UTF-8
 * and so pass PostgreSQL's checks.  Other bytes pass through as they are.
 */
static bool
xml_text_ok(const char *s)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
			return false;
		if (c == 0xef && (unsigned char) s[1] == 0xbf &&
			((unsigned char) s[2] == 0xbe || (unsigned char) s[2] == 0xbf))
			return false;
	}
	return true;
}

static bool xml_add_value(xmlNodePtr parent, const char *name, const cJSON *item,
						  char *err, size_t errlen, int depth);

/* Add the members of an object (or the items of an array) under parent. */
static bool
xml_add_children(xmlNodePtr parent, const cJSON *item, char *err, size_t errlen,
				 int depth)
{
	const cJSON *child;

	cJSON_ArrayForEach(child, item)
	{
		const char *name = cJSON_IsArray(item) ? "item" : child->string;

		if (!xml_add_value(parent, name, child, err, errlen, depth + 1))
			return false;
	}
	return true;
}

static bool
xml_add_value(xmlNodePtr parent, const char *name, const cJSON *item,
			  char *err, size_t errlen, int depth)
{
	xmlNodePtr	node;
	const char *text = NULL;

	if (depth > 64)
		return fail(err, errlen, "body nests more than 64 levels deep");
	if (name == NULL || xmlValidateName((const xmlChar *) name, 0) != 0 ||
		strchr(name, ':') != NULL)
		return fail(err, errlen, "field \"%s\" is not a valid XML element name",
					name ? name : "");

	if (cJSON_IsRaw(item))
	{
		/* numbers kept as text, or embedded JSON: expand the latter */
		const char *raw = item->valuestring;
		cJSON	   *parsed;
		bool		ok;

		if (raw[0] == '-' || isdigit((unsigned char) raw[0]))
			text = raw;
		else
		{
			parsed = cJSON_Parse(raw);
			if (parsed == NULL)
				return fail(err, errlen, "field \"%s\" holds JSON that cannot be read", name);
			ok = xml_add_value(parent, name, parsed, err, errlen, depth);
			cJSON_Delete(parsed);
			return ok;
		}
	}
	else if (cJSON_IsString(item))
		text = item->valuestring;
	else if (cJSON_IsBool(item))
		text = cJSON_IsTrue(item) ? "true" : "false";
	else if (cJSON_IsNumber(item))
	{
		char	   *printed = cJSON_PrintUnformatted(item);

		if (printed == NULL)
			return fail(err, errlen, "out of memory");
		node = xmlNewTextChild(parent, NULL, (const xmlChar *) name, (const xmlChar *) printed);
		cJSON_free(printed);
		return node != NULL || fail(err, errlen, "out of memory");
	}

	if (text != NULL)
	{
		if (!xml_text_ok(text))
			return fail(err, errlen,
						"field \"%s\" holds a control character or U+FFFE/U+FFFF, which XML cannot carry",
						name);
		/* xmlNewTextChild escapes &, < and > itself */
		node = xmlNewTextChild(parent, NULL, (const xmlChar *) name, (const xmlChar *) text);
		return node != NULL || fail(err, errlen, "out of memory");
	}

	node = xmlNewChild(parent, NULL, (const xmlChar *) name, NULL);
	if (node == NULL)
		return fail(err, errlen, "out of memory");
	if (cJSON_IsObject(item) || cJSON_IsArray(item))
		return xml_add_children(node, item, err, errlen, depth);
	return true;				/* JSON null: an empty element */
}

char *
cfdw_json_to_xml(const cJSON *root, bool batch, char *err, size_t errlen)
{
	xmlDocPtr	doc = xmlNewDoc((const xmlChar *) "1.0");
	xmlNodePtr	top;
	xmlChar    *mem = NULL;
	int			size = 0;
	char	   *result = NULL;
	bool		ok = true;

	if (doc == NULL)
	{
		fail(err, errlen, "out of memory");
		return NULL;
	}
	top = xmlNewNode(NULL, (const xmlChar *) (batch ? "requests" : "request"));
	if (top == NULL)
	{
		xmlFreeDoc(doc);
		fail(err, errlen, "out of memory");
		return NULL;
	}
	xmlDocSetRootElement(doc, top);

	if (batch)
	{
		const cJSON *row;

		if (!cJSON_IsArray(root))
			ok = fail(err, errlen, "a batch body must be an array");
		else
			cJSON_ArrayForEach(row, root)
			{
				xmlNodePtr	r = xmlNewChild(top, NULL, (const xmlChar *) "request", NULL);

				if (r == NULL)
					ok = fail(err, errlen, "out of memory");
				else if (cJSON_IsObject(row))
					ok = xml_add_children(r, row, err, errlen, 1);
				if (!ok)
					break;
			}
	}
	else if (cJSON_IsObject(root))
		ok = xml_add_children(top, root, err, errlen, 1);
	else
		ok = fail(err, errlen, "a request body must be an object");

	if (ok)
	{
		xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
		if (mem == NULL)
			fail(err, errlen, "out of memory");
		else
		{
			result = malloc((size_t) size + 1);
			if (result == NULL)
				fail(err, errlen, "out of memory");
			else
			{
				memcpy(result, mem, size);
				result[size] = '\0';
			}
			xmlFree(mem);
		}
	}
	xmlFreeDoc(doc);
	return result;
}

/* ---------------------------------------------------------------------
 * Form bodies
 * ---------------------------------------------------------------------
 */

typedef struct FormBuf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		oom;
} FormBuf;

static void
form_append(FormBuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap * 2 : 256;
		char	   *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
		{
			b->oom = true;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
form_append_escaped(FormBuf *b, const char *s)
{
	/* libcurl's escaping: everything but RFC 3986 unreserved characters */
	char	   *e = curl_easy_escape(NULL, s, (int) strlen(s));

	if (e == NULL)
	{
		b->oom = true;
		return;
	}
	form_append(b, e, strlen(e));
	curl_free(e);
}

static bool form_add(FormBuf *b, const char *key, const cJSON *item, char *err,
					 size_t errlen, int depth);

static bool
form_pair(FormBuf *b, const char *key, const char *value)
{
	if (b->len > 0)
		form_append(b, "&", 1);
	form_append_escaped(b, key);
	form_append(b, "=", 1);
	form_append_escaped(b, value);
	return !b->oom;
}

static bool
form_add(FormBuf *b, const char *key, const cJSON *item, char *err, size_t errlen,
		 int depth)
{
	const cJSON *child;

	if (depth > 64)
		return fail(err, errlen, "body nests more than 64 levels deep");

	if (cJSON_IsRaw(item))
	{
		const char *raw = item->valuestring;
		cJSON	   *parsed;
		bool		ok;

		if (raw[0] == '-' || isdigit((unsigned char) raw[0]))
			return form_pair(b, key, raw) || fail(err, errlen, "out of memory");
		parsed = cJSON_Parse(raw);
		if (parsed == NULL)
			return fail(err, errlen, "field \"%s\" holds JSON that cannot be read", key);
		ok = form_add(b, key, parsed, err, errlen, depth);
		cJSON_Delete(parsed);
		return ok;
	}
	if (cJSON_IsObject(item))
	{
		cJSON_ArrayForEach(child, item)
		{
			size_t		klen = strlen(key) + strlen(child->string) + 2;
			char	   *sub = malloc(klen);
			bool		ok;

			if (sub == NULL)
				return fail(err, errlen, "out of memory");
			snprintf(sub, klen, "%s%s%s", key, key[0] ? "." : "", child->string);
			ok = form_add(b, sub, child, err, errlen, depth + 1);
			free(sub);
			if (!ok)
				return false;
		}
		return true;
	}
	if (cJSON_IsArray(item))
	{
		cJSON_ArrayForEach(child, item)
			if (!form_add(b, key, child, err, errlen, depth + 1))
			return false;
		return true;
	}
	if (cJSON_IsString(item))
		return form_pair(b, key, item->valuestring) || fail(err, errlen, "out of memory");
	if (cJSON_IsBool(item))
		return form_pair(b, key, cJSON_IsTrue(item) ? "true" : "false") ||
			fail(err, errlen, "out of memory");
	if (cJSON_IsNumber(item))
	{
		char	   *printed = cJSON_PrintUnformatted(item);
		bool		ok;

		if (printed == NULL)
			return fail(err, errlen, "out of memory");
		ok = form_pair(b, key, printed);
		cJSON_free(printed);
		return ok || fail(err, errlen, "out of memory");
	}
	return form_pair(b, key, "") || fail(err, errlen, "out of memory");
}

char *
cfdw_json_to_form(const cJSON *root, char *err, size_t errlen)
{
	FormBuf		b = {NULL, 0, 0, false};

	if (!cJSON_IsObject(root))
	{
		fail(err, errlen, "a form body must be built from an object");
		return NULL;
	}
	if (!form_add(&b, "", root, err, errlen, 0))
	{
		free(b.data);
		return NULL;
	}
	if (b.oom)
	{
		free(b.data);
		fail(err, errlen, "out of memory");
		return NULL;
	}
	if (b.data == NULL)
	{
		b.data = malloc(1);
		if (b.data)
			b.data[0] = '\0';
	}
	return b.data;
}

/* ---------------------------------------------------------------------
 * Egress control
 * ---------------------------------------------------------------------
 */

static bool
host_matches(const char *host, size_t hlen, const char *pat, size_t plen)
{
	if (plen > 2 && pat[0] == '*' && pat[1] == '.')
	{
		/* "*.atlassian.net": at least one label before ".atlassian.net" */
		size_t		suffix = plen - 1;

		return hlen > suffix &&
			strncasecmp(host + hlen - suffix, pat + 1, suffix) == 0;
	}
	return hlen == plen && strncasecmp(host, pat, plen) == 0;
}

bool
cfdw_host_allowed(const char *host, const char *patterns)
{
	size_t		hlen = strlen(host);
	const char *p = patterns;

	/* a fully qualified name's trailing dot names the same host */
	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--;
	if (hlen == 0 || patterns == NULL)
		return false;
	while (*p)
	{
		const char *end = strchr(p, ',');
		const char *a = p;
		const char *b = end ? end : p + strlen(p);

		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (b > a && host_matches(host, hlen, a, (size_t) (b - a)))
			return true;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return false;
}

static bool
ipv4_internal(const unsigned char *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 ||
		(a[0] == 100 && (a[1] & 0xc0) == 64) ||
		(a[0] == 169 && a[1] == 254) ||
		(a[0] == 172 && (a[1] & 0xf0) == 16) ||
		(a[0] == 192 && a[1] == 0 && a[2] == 0) ||	/* 192.0.0.0/24: IETF, DS-Lite, NAT64 discovery */
		(a[0] == 192 && a[1] == 168) ||
		(a[0] == 198 && (a[1] & 0xfe) == 18) ||	/* 198.18.0.0/15: benchmarking, lab networks */
		a[0] >= 224;
}

bool
cfdw_address_internal(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ipv4_internal((const unsigned char *) &((const struct sockaddr_in *) sa)->sin_addr);
	if (sa->sa_family == AF_INET6)
	{
		const unsigned char *a = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
		static const unsigned char nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 0x01};
		static const unsigned char zero[15] = {0};

		/*
		 * An IPv4-mapped address, and one in NAT64's well-known prefix
		 * 64:ff9b::/96 (RFC 6052: a DNS64 resolver hands these out on an
		 * IPv6-only network, and the gateway connects to the IPv4 address
		 * in the last 32 bits), go where their IPv4 address goes.
		 */
		if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
			return ipv4_internal(a + 12);
		return (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1)) ||	/* :: and ::1 */
			memcmp(a, nat64_local, 6) == 0 ||	/* 64:ff9b:1::/48, a site's own NAT64 */
			(a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||	/* fe80::/10 */
			(a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) ||	/* fec0::/10, site-local */
			(a[0] & 0xfe) == 0xfc ||	/* fc00::/7 */
			a[0] == 0xff;		/* multicast */
	}
	return true;				/* not an internet address at all */
}

/* ---------------------------------------------------------------------
 * Link headers (RFC 8288), for cursor pagination
 * ---------------------------------------------------------------------
 */

/* Does a rel value (a space-separated list of relation types) say next? */
static bool
rel_says_next(const char *v, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		start;

		while (i < len && v[i] == ' ')
			i++;
		start = i;
		while (i < len && v[i] != ' ')
			i++;
		if (i - start == 4 && strncasecmp(v + start, "next", 4) == 0)
			return true;
	}
	return false;
}

/*
 * The parameters of one link-value, from p (just after its '>') to the ','
 * that ends it or the end: sets *next when one is rel="next".  Returns where
 * the next link-value starts, or NULL when the parameters are malformed.
 */
static const char *
link_params(const char *p, bool *next)
{
	*next = false;
	for (;;)
	{
		const char *name;
		size_t		namelen;
		const char *val = "";
		size_t		vallen = 0;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == ',')
			return *p ? p + 1 : p;
		if (*p != ';')
			return NULL;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		name = p;
		while (*p && *p != '=' && *p != ';' && *p != ',' && *p != ' ')
			p++;
		namelen = p - name;
		while (*p == ' ')
			p++;
		if (*p == '=')
		{
			p++;
			while (*p == ' ')
				p++;
			if (*p == '"')
			{
				val = ++p;
				while (*p && *p != '"')
					p++;
				if (*p != '"')
					return NULL;
				vallen = p - val;
				p++;
			}
			else
			{
				val = p;
				while (*p && *p != ';' && *p != ',' && *p != ' ')
					p++;
				vallen = p - val;
			}
		}
		if (namelen == 3 && strncasecmp(name, "rel", 3) == 0 && rel_says_next(val, vallen))
			*next = true;
	}
}

bool
cfdw_link_next(const char *header, char *out, size_t outsize)
{
	const char *p = header;

	if (header == NULL || outsize == 0)
		return false;
	while (*p)
	{
		const char *target;
		const char *close;
		bool		next;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		if (*p != '<' || (close = strchr(p, '>')) == NULL)
			return false;
		target = p + 1;
		p = link_params(close + 1, &next);
		if (p == NULL)
			return false;
		if (next)
		{
			size_t		len = close - target;

			if (len == 0 || len >= outsize)
				return false;
			memcpy(out, target, len);
			out[len] = '\0';
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------------
 * Rate limits
 *
 * Confluence's rate-limit headers are read from every answer, and they
 * are known to be wrong at times (a Beta-RateLimit "t" that did not match
 * the reset, a policy header that disappears at r=0): whatever does not
 * read cleanly is left out, and a statement never fails for a header.
 * ---------------------------------------------------------------------
 */

#define RATE_COUNT_MAX 1000000000000LL	/* 10^12: no quota is larger */
#define RATE_RESET_MAX_S 86400			/* a reset more than a day ahead is wrong */

static const char *
skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

bool
cfdw_rate_count(const char *value, long long *out)
{
	const char *p;
	long long	v = 0;

	if (value == NULL)
		return false;
	p = skip_blanks(value);
	if (!isdigit((unsigned char) *p))
		return false;
	for (; isdigit((unsigned char) *p); p++)
	{
		v = v * 10 + (*p - '0');
		if (v > RATE_COUNT_MAX)
			return false;
	}
	if (*skip_blanks(p) != '\0')
		return false;
	*out = v;
	return true;
}

/* Exactly n digits at *p, as a number; advances *p. */
static bool
fixed_digits(const char **p, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static long long
days_from_civil(int y, int m, int d)
{
	int			era;
	unsigned	yoe,
				doy,
				doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned) (y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (long long) era * 146097 + (long long) doe - 719468;
}

static int
days_in_month(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool		leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

bool
cfdw_rate_time(const char *value, time_t *out)
{
	const char *p;
	int			y,
				mo,
				d,
				h,
				mi,
				s = 0;
	bool		fraction = false;
	long long	offset = 0;
	long long	t;

	if (value == NULL)
		return false;
	p = skip_blanks(value);
	if (!fixed_digits(&p, 4, &y) || *p++ != '-' || !fixed_digits(&p, 2, &mo) ||
		*p++ != '-' || !fixed_digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!fixed_digits(&p, 2, &h) || *p++ != ':' || !fixed_digits(&p, 2, &mi))
		return false;
	if (*p == ':')
	{
		p++;
		if (!fixed_digits(&p, 2, &s))
			return false;
		if (*p == '.' || *p == ',')
		{
			p++;
			if (!isdigit((unsigned char) *p))
				return false;
			for (; isdigit((unsigned char) *p); p++)
				fraction |= *p != '0';
		}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = *p == '-' ? -1 : 1;
		int			oh,
					om = 0;

		p++;
		if (!fixed_digits(&p, 2, &oh))
			return false;
		if (*p == ':')
			p++;
		if (isdigit((unsigned char) *p) && !fixed_digits(&p, 2, &om))
			return false;
		if (oh > 23 || om > 59)
			return false;
		offset = sign * (oh * 3600LL + om * 60LL);
	}
	else
		return false;			/* a time without its zone is no time */
	if (*skip_blanks(p) != '\0')
		return false;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
		h > 23 || mi > 59 || s > 60)
		return false;
	t = days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL + s - offset +
		(fraction ? 1 : 0);
	if (t < 0 || (sizeof(time_t) < 8 && t > INT_MAX))
		return false;
	*out = (time_t) t;
	return true;
}

int
cfdw_rate_flag(const char *value)
{
	const char *p;
	size_t		len;

	if (value == NULL)
		return -1;
	p = skip_blanks(value);
	len = strlen(p);
	while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	if (len == 4 && strncasecmp(p, "true", 4) == 0)
		return 1;
	if (len == 5 && strncasecmp(p, "false", 5) == 0)
		return 0;
	return -1;
}

/*
 * One item of a structured list header: "name";k=v;k2=v2 (RFC 9651, the
 * parts Atlassian uses).  Fills name (quotes removed) and up to nparams
 * one-letter integer parameters (keys[i], vals[i]; a value that is not a
 * whole number is left out).  Returns where the next item starts, or NULL
 * when the item is malformed.
 */
#define RATE_ITEM_PARAMS 8

typedef struct RateItem
{
	char		name[64];
	int			nparams;
	char		keys[RATE_ITEM_PARAMS];
	long long	vals[RATE_ITEM_PARAMS];
} RateItem;

static const char *
rate_item(const char *p, RateItem *item)
{
	size_t		n = 0;

	memset(item, 0, sizeof(*item));
	p = skip_blanks(p);
	if (*p == '"')
	{
		for (p++; *p && *p != '"'; p++)
		{
			if (*p == '\\' || (unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e ||
				n + 1 >= sizeof(item->name))
				return NULL;
			item->name[n++] = *p;
		}
		if (*p++ != '"')
			return NULL;
	}
	else
	{
		for (; *p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t'; p++)
		{
			if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e ||
				n + 1 >= sizeof(item->name))
				return NULL;
			item->name[n++] = *p;
		}
	}
	item->name[n] = '\0';
	for (;;)
	{
		char		key[16];
		char		val[32];
		size_t		k = 0,
					v = 0;
		long long	num;

		p = skip_blanks(p);
		if (*p == '\0' || *p == ',')
			return p;
		if (*p++ != ';')
			return NULL;
		p = skip_blanks(p);
		while (*p && *p != '=' && *p != ';' && *p != ',')
		{
			if (k + 1 >= sizeof(key))
				return NULL;
			key[k++] = *p++;
		}
		key[k] = '\0';
		if (*p == '=')
		{
			p++;
			while (*p && *p != ';' && *p != ',')
			{
				if (v + 1 >= sizeof(val))
					return NULL;
				val[v++] = *p++;
			}
		}
		val[v] = '\0';
		if (k == 1 && item->nparams < RATE_ITEM_PARAMS && cfdw_rate_count(val, &num))
		{
			item->keys[item->nparams] = key[0];
			item->vals[item->nparams] = num;
			item->nparams++;
		}
	}
}

static bool
item_param(const RateItem *item, char key, long long *out)
{
	for (int i = 0; i < item->nparams; i++)
	{
		if (item->keys[i] == key)
		{
			*out = item->vals[i];
			return true;
		}
	}
	return false;
}

/* The items of a structured list header, at most max; how many read. */
static int
rate_items(const char *value, RateItem *items, int max)
{
	const char *p = value;
	int			n = 0;

	if (value == NULL)
		return 0;
	while (n < max && *(p = skip_blanks(p)) != '\0')
	{
		p = rate_item(p, &items[n]);
		if (p == NULL)
			return n;			/* what came before still counts */
		n++;
		if (*p == ',')
			p++;
	}
	return n;
}

/* One source of limit, remaining and reset. */
typedef struct RateSource
{
	bool		known;
	long long	limit;
	long long	remaining;
	time_t		reset;
} RateSource;

/*
 * Requests per second a source allows until its reset, for comparing two;
 * a source without a reset allows anything.
 */
static double
source_pace(const RateSource *s, time_t now)
{
	if (s->reset == 0)
		return 1e300;
	return (double) s->remaining / (double) (s->reset - now);
}

/* Keep printable ASCII only: the reason is shown in a view. */
static void
copy_reason(const char *value, char *out, size_t outsize)
{
	const char *p;
	size_t		n = 0;

	out[0] = '\0';
	if (value == NULL)
		return;
	p = skip_blanks(value);
	for (; *p && n + 1 < outsize; p++)
	{
		if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e)
		{
			n = 0;				/* not a reason Atlassian would send */
			break;
		}
		out[n++] = *p;
	}
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
		n--;
	out[n] = '\0';
}

bool
cfdw_rate_parse(const CfdwRateHeaders *h, time_t now, CfdwRateInfo *out)
{
	RateSource	x = {false, -1, -1, 0};
	RateSource	best;
	RateItem	policies[4];
	RateItem	states[4];
	int			npolicies = rate_items(h->policy, policies, 4);
	int			nstates = rate_items(h->beta, states, 4);
	time_t		reset;

	out->limit = -1;
	out->remaining = -1;
	out->reset = 0;
	out->near_limit = cfdw_rate_flag(h->near_limit);
	copy_reason(h->reason, out->reason, sizeof(out->reason));

	/* X-RateLimit-*: a Remaining above the Limit makes both unusable */
	if (cfdw_rate_count(h->remaining, &x.remaining))
	{
		x.known = true;
		if (cfdw_rate_count(h->limit, &x.limit) && x.remaining > x.limit)
			x.known = false;
	}
	if (x.known && cfdw_rate_time(h->reset, &reset) &&
		reset > now && reset - now <= RATE_RESET_MAX_S)
		x.reset = reset;
	best = x;

	/* Beta-RateLimit "name";r=..;t=.., with q and w of the policy of that name */
	for (int i = 0; i < nstates; i++)
	{
		RateSource	b = {true, -1, -1, 0};
		long long	t;
		long long	w = RATE_RESET_MAX_S;

		if (!item_param(&states[i], 'r', &b.remaining))
			continue;
		for (int j = 0; j < npolicies; j++)
		{
			if (strcmp(policies[j].name, states[i].name) != 0)
				continue;
			(void) item_param(&policies[j], 'q', &b.limit);
			if (item_param(&policies[j], 'w', &w) && (w <= 0 || w > RATE_RESET_MAX_S))
				w = RATE_RESET_MAX_S;
			break;
		}
		if (b.limit >= 0 && b.remaining > b.limit)
			continue;
		if (item_param(&states[i], 't', &t) && t > 0 && t <= w)
			b.reset = now + (time_t) t;
		if (!best.known ||
			(b.reset != 0 && source_pace(&b, now) < source_pace(&best, now)))
			best = b;
	}

	if (best.known)
	{
		out->limit = best.limit;
		out->remaining = best.remaining;
		out->reset = best.reset;
	}
	return best.known || out->near_limit >= 0 || out->reason[0] != '\0';
}

/* Lower-cased copy of n bytes into out at *len; false when it does not fit. */
static bool
key_append(char *out, size_t outsize, size_t *len, const char *s, size_t n)
{
	if (*len + n + 1 > outsize)
		return false;
	for (size_t i = 0; i < n; i++)
		out[(*len)++] = (char) tolower((unsigned char) s[i]);
	out[*len] = '\0';
	return true;
}

/* A cloudId: letters, digits and '-', as the UUIDs Atlassian gives. */
static bool
is_cloud_id(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
	{
		char		c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			  (c >= 'A' && c <= 'Z') || c == '-'))
			return false;
	}
	return true;
}

bool
cfdw_site_key(const char *url, const char *cloud_id, char *out, size_t outsize)
{
	const char *scheme_end;
	const char *auth;
	const char *auth_end;
	const char *at;
	const char *host;
	const char *host_end;
	const char *port = NULL;
	const char *path;
	static const char gateway[] = "/ex/confluence/";
	size_t		len = 0;
	bool		https;

	if (outsize == 0)
		return false;
	out[0] = '\0';
	if (cloud_id != NULL && cloud_id[0] != '\0')
		return is_cloud_id(cloud_id, strlen(cloud_id)) &&
			key_append(out, outsize, &len, cloud_id, strlen(cloud_id));
	if (url == NULL || (scheme_end = strstr(url, "://")) == NULL)
		return false;
	https = (size_t) (scheme_end - url) == 5 && strncasecmp(url, "https", 5) == 0;
	auth = scheme_end + 3;
	auth_end = auth + strcspn(auth, "/?#");
	path = auth_end;

	/* the gateway: /ex/confluence/{cloudId}/... names the site */
	if (strncmp(path, gateway, sizeof(gateway) - 1) == 0)
	{
		const char *id = path + sizeof(gateway) - 1;
		size_t		n = strcspn(id, "/?#");

		if (is_cloud_id(id, n))
			return key_append(out, outsize, &len, id, n);
	}

	/* user information never goes into a key (it is refused anyway) */
	at = memchr(auth, '@', auth_end - auth);
	host = at ? at + 1 : auth;
	if (*host == '[')
	{
		host_end = memchr(host, ']', auth_end - host);
		if (host_end == NULL)
			return false;
		host_end++;
	}
	else
		host_end = host + strcspn(host, ":/?#");
	if (host_end > auth_end)
		return false;
	if (host_end < auth_end && *host_end == ':')
		port = host_end + 1;
	if (host_end == host || !key_append(out, outsize, &len, host, host_end - host))
		return false;
	if (port != NULL && port < auth_end)
	{
		size_t		n = auth_end - port;

		/* the default port is no port: https://h and https://h:443 are one site */
		if (!((https && n == 3 && strncmp(port, "443", 3) == 0) ||
			  (!https && n == 2 && strncmp(port, "80", 2) == 0)))
		{
			if (!key_append(out, outsize, &len, ":", 1) ||
				!key_append(out, outsize, &len, port, n))
				return false;
		}
	}
	return true;
}

void
cfdw_pace_answered(CfdwPace *p, const CfdwRateInfo *info, int64_t reset, int64_t now)
{
	long long	others = p->inflight > 0 ? p->inflight - 1 : 0;
	long long	left;
	bool		new_window;

	if (p->inflight > 0)
		p->inflight--;
	if (info == NULL)
		return;

	if (info->remaining < 0)
	{
		if (info->near_limit >= 0)
			p->near_limit = info->near_limit;
		return;
	}
	/*
	 * No reset (or one that has passed, which reads as none) while a window
	 * is known: the answer of a window that is over, read after the next
	 * window's.  Any reset still ahead is news, even an earlier one (the
	 * headers' other source may have become the slower).
	 */
	if (p->reset > now && reset == 0)
		return;

	/*
	 * Remaining was counted when the server took this request: the others
	 * in flight may not be in it yet, and each of them goes out (or already
	 * went).  Counting them as spent errs on the safe side.
	 */
	left = info->remaining - others;
	new_window = p->reset == 0 || reset == 0 || p->reset <= now ||
		reset - p->reset > 1000000;

	/*
	 * In one window (the same reset, give or take a second: a reset made of
	 * Beta-RateLimit's "t" moves with the clock) Remaining only goes down,
	 * but answers are read out of order: an earlier request's answer, read
	 * after a later one's, counts fewer requests, and must not give back
	 * what the later one took.
	 */
	if (!new_window && p->budget >= 0 && left > p->budget &&
		reset - p->reset >= -1000000)
		left = p->budget;
	p->budget = left > 0 ? left : 0;
	p->near_limit = info->near_limit >= 0 ? info->near_limit :
		new_window ? -1 : p->near_limit;
	p->limit = info->limit;
	p->reset = reset;
}

int64_t
cfdw_pace_claim(CfdwPace *p, int64_t now, int64_t not_before, double max_rate,
				int64_t max_wait, bool *paced)
{
	CfdwPace	before = *p;
	int64_t		base = now;
	int64_t		t;
	int64_t		gap = 0;

	if (not_before > base)
		base = not_before;
	if (p->paused_until > base)
		base = p->paused_until;
	t = p->next_at > base ? p->next_at : base;

	/* the window is over: what it said no longer holds */
	if (p->reset != 0 && p->reset <= t)
	{
		p->budget = -1;
		p->near_limit = -1;
	}
	if (p->budget == 0 && p->reset > t)
	{
		/* nothing left: the first request of the next window */
		t = p->reset;
		p->budget = -1;
	}
	else if (p->budget > 0 && p->reset > t)
	{
		if (p->near_limit == 1 || (p->limit > 0 && p->budget * 5 < p->limit))
			gap = (p->reset - t) / p->budget;
		p->budget--;
	}

	/*
	 * A turn further away than the request may wait is not waited for: it
	 * goes now (the site's answer, a 429 with its Retry-After, decides),
	 * and the window is left as it was for the next one.
	 */
	if (max_wait >= 0 && t - base > max_wait)
	{
		*p = before;
		t = p->next_at > base && p->next_at - base <= max_wait ? p->next_at : base;
		gap = 0;
	}
	if (max_rate > 0)
	{
		double		min_gap = 1e6 / max_rate;

		if (min_gap > (double) gap)
			gap = min_gap > 1e15 ? (int64_t) 1e15 : (int64_t) min_gap;
	}
	p->next_at = t + gap;
	p->inflight++;
	*paced = t > base;
	return t;
}

/* ---------------------------------------------------------------------
 * Atlassian's API gateway: cloudIds, next links behind its prefix, and the
 * OAuth scope each endpoint the extension uses needs
 * ---------------------------------------------------------------------
 */

#define GATEWAY_PREFIX "/ex/confluence/"

bool
cfdw_cloud_id_valid(const char *s)
{
	/* 8-4-4-4-12 hexadecimal digits, as every cloudId Atlassian hands out */
	static const int groups[] = {8, 4, 4, 4, 12};
	const char *p = s;

	if (s == NULL)
		return false;
	for (int g = 0; g < 5; g++)
	{
		for (int i = 0; i < groups[g]; i++, p++)
			if (!isxdigit((unsigned char) *p))
				return false;
		if (g < 4 && *p++ != '-')
			return false;
	}
	return *p == '\0';
}

bool
cfdw_cloud_id_of_url(const char *url, char *out, size_t outsize)
{
	const char *p;
	const char *end;
	size_t		len;

	if (url == NULL || outsize == 0 || (p = strstr(url, GATEWAY_PREFIX)) == NULL)
		return false;
	p += strlen(GATEWAY_PREFIX);
	end = p + strcspn(p, "/?#");
	len = end - p;
	if (len == 0 || len >= outsize)
		return false;
	memcpy(out, p, len);
	out[len] = '\0';
	if (!cfdw_cloud_id_valid(out))
	{
		out[0] = '\0';
		return false;
	}
	return true;
}

/* Where the path of a URL starts ("" when it has none), past "scheme://host". */
static const char *
url_path(const char *url)
{
	const char *p = strstr(url, "://");

	p = p ? p + 3 : url;
	return p + strcspn(p, "/");
}

const char *
cfdw_next_link_rest(const char *base, const char *link)
{
	size_t		baselen = strlen(base);
	const char *prefix = url_path(base);
	size_t		prefixlen = strlen(prefix);

	if (link[0] == '/' && link[1] != '/')
	{
		/*
		 * Relative to the site, as Confluence writes them behind the gateway
		 * too ("/wiki/api/v2/pages?cursor=..."): joined onto the base, which
		 * keeps its prefix.  A link that already carries the prefix is
		 * joined onto the origin instead, so the prefix is never doubled.
		 */
		if (prefixlen > 0 && strncmp(link, prefix, prefixlen) == 0 &&
			link[prefixlen] == '/')
			return link + prefixlen;
		return link;
	}
	if (strncmp(link, base, baselen) == 0 && link[baselen] == '/')
		return link + baselen;
	return NULL;
}

/*
 * The scope each operation needs, from the "security" sections of
 * Atlassian's v2 spec (oAuthDefinitions) and, for the one v1 endpoint
 * test_connection reads, the v1 spec.  test/unit/test_pure.c checks every
 * v2 row against the spec.
 */
const CfdwScope cfdw_scopes[] = {
	{"GET", "/wiki/api/v2/pages", "read:page:confluence"},
	{"POST", "/wiki/api/v2/pages", "write:page:confluence"},
	{"GET", "/wiki/api/v2/pages/{id}", "read:page:confluence"},
	{"PUT", "/wiki/api/v2/pages/{id}", "write:page:confluence"},
	{"DELETE", "/wiki/api/v2/pages/{id}", "delete:page:confluence"},
	{"GET", "/wiki/api/v2/pages/{id}/footer-comments", "read:comment:confluence"},
	{"GET", "/wiki/api/v2/pages/{id}/inline-comments", "read:comment:confluence"},
	{"GET", "/wiki/api/v2/pages/{id}/labels", "read:page:confluence"},
	{"GET", "/wiki/api/v2/pages/{id}/versions", "read:page:confluence"},
	{"GET", "/wiki/api/v2/blogposts", "read:page:confluence"},
	{"POST", "/wiki/api/v2/blogposts", "write:page:confluence"},
	{"GET", "/wiki/api/v2/blogposts/{id}", "read:page:confluence"},
	{"PUT", "/wiki/api/v2/blogposts/{id}", "write:page:confluence"},
	{"DELETE", "/wiki/api/v2/blogposts/{id}", "delete:page:confluence"},
	{"GET", "/wiki/api/v2/blogposts/{id}/footer-comments", "read:comment:confluence"},
	{"GET", "/wiki/api/v2/blogposts/{id}/inline-comments", "read:comment:confluence"},
	{"GET", "/wiki/api/v2/blogposts/{id}/labels", "read:page:confluence"},
	{"GET", "/wiki/api/v2/footer-comments", "read:comment:confluence"},
	{"POST", "/wiki/api/v2/footer-comments", "write:comment:confluence"},
	{"GET", "/wiki/api/v2/footer-comments/{comment-id}", "read:comment:confluence"},
	{"PUT", "/wiki/api/v2/footer-comments/{comment-id}", "write:comment:confluence"},
	{"DELETE", "/wiki/api/v2/footer-comments/{comment-id}", "delete:comment:confluence"},
	{"GET", "/wiki/api/v2/inline-comments", "read:comment:confluence"},
	{"POST", "/wiki/api/v2/inline-comments", "write:comment:confluence"},
	{"GET", "/wiki/api/v2/inline-comments/{comment-id}", "read:comment:confluence"},
	{"PUT", "/wiki/api/v2/inline-comments/{comment-id}", "write:comment:confluence"},
	{"DELETE", "/wiki/api/v2/inline-comments/{comment-id}", "delete:comment:confluence"},
	{"GET", "/wiki/api/v2/spaces", "read:space:confluence"},
	{"GET", "/wiki/api/v2/spaces/{id}", "read:space:confluence"},
	{"GET", "/wiki/rest/api/user/current", "read:confluence-user"},
	{NULL, NULL, NULL}
};

/* Does the path (up to its query) match the pattern, {x} matching a segment? */
static bool
path_matches(const char *pattern, const char *path)
{
	const char *p = pattern;
	const char *q = path;

	while (*p)
	{
		if (*p == '{')
		{
			const char *close = strchr(p, '}');
			size_t		n = strcspn(q, "/?#");

			if (close == NULL || n == 0)
				return false;
			p = close + 1;
			q += n;
			continue;
		}
		if (*q != *p)
			return false;
		p++;
		q++;
	}
	return *q == '\0' || *q == '?' || *q == '#';
}

const CfdwScope *
cfdw_scope_find(const char *method, const char *path)
{
	if (method == NULL || path == NULL)
		return NULL;
	for (const CfdwScope *s = cfdw_scopes; s->method; s++)
		if (strcmp(s->method, method) == 0 && path_matches(s->path, path))
			return s;
	return NULL;
}
