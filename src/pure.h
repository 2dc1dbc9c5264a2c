/*-------------------------------------------------------------------------
 *
 * pure.h
 *		  The parts of confluence_fdw that need no PostgreSQL server: header
 *		  option parsing, endpoint path checks, Retry-After parsing, and
 *		  request bodies (JSON paths, XML, form) built from a cJSON tree.
 *
 * They use only libc, cJSON, libcurl and libxml2, allocate with malloc, and
 * report problems through a return value and a message buffer instead of
 * ereport, so the unit tests and fuzzers in test/unit and fuzz/ can call
 * them directly.  The extension wraps each in an ereport at its call site.
 *
 * IDENTIFICATION
 *		  src/pure.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CFDW_PURE_H
#define CFDW_PURE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

/* Size for message buffers passed to these functions. */
#define CFDW_ERRLEN 256

/*
 * Parse a headers option, "Name:value,Name2:value2".  Calls emit once per
 * header with the trimmed name and value (not NUL-terminated).  Returns
 * false with a message in err (naming the header, never repeating its
 * value) when a name has characters outside RFC 9110's (ASCII) token set,
 * a value has control or non-ASCII characters, an item has no ':' (an empty
 * item too, as in ",," or a trailing ','), or the header is one the
 * extension must set itself (Authorization, Host, Content-Length, cookies,
 * ...).  An empty or NULL spec means no headers.
 */
typedef void (*cfdw_header_emit) (void *arg, const char *name, size_t namelen,
								  const char *value, size_t valuelen);
extern bool cfdw_headers_parse(const char *spec, cfdw_header_emit emit, void *arg,
							   char *err, size_t errlen);

/*
 * Check a manual endpoint ("/wiki/api/v2/pages/{id}?x=y"): it must start
 * with one '/', and contain no "//", no dot segments (literal or encoded),
 * no encoded slashes or backslashes, no '#', no spaces, control or
 * non-ASCII characters, no '%' that does not start a %XX escape (which a
 * placeholder value could complete), and well-formed {placeholders}.  So
 * it can never leave the server's origin.
 */
extern bool cfdw_path_check(const char *path, char *err, size_t errlen);

/*
 * A placeholder value is percent-encoded before it is put in the URL, which
 * leaves "." and ".." as they are: refuse those (and the empty string), the
 * only values that could still change the path's meaning.
 */
extern bool cfdw_placeholder_value_ok(const char *value);

/*
 * Percent-encode exactly len bytes of value with libcurl (RFC 3986
 * unreserved characters stay); len 0 gives "".  Free the result with
 * curl_free; NULL when out of memory or len exceeds INT_MAX.
 */
extern char *cfdw_percent_encode(const char *value, size_t len);

/*
 * A Retry-After (or Beta-Retry-After) value in milliseconds: delay-seconds
 * or an HTTP-date.  -1 when absent or unreadable; 0 for a negative number or
 * a date in the past; capped at one day.
 */
extern long cfdw_retry_after_ms(const char *value, time_t now);

/*
 * Put item at a dotted path ("body.value") under root, creating objects on
 * the way; an existing value at the path, or a non-object on the way, is
 * replaced (in its place).  Takes ownership of item in every case.  false
 * when out of memory, or when the path is empty or has an empty segment
 * ("a.", ".a", "a..b"): then the tree is left as it was.
 */
extern bool cfdw_json_put(cJSON *root, const char *dotted, cJSON *item);

/*
 * Serialise a request body tree as XML: <request> with one child element
 * per key, nested objects as nested elements, arrays as <item> elements,
 * booleans and numbers as text, JSON null as an empty element.  With batch,
 * root must be an array and the result is <requests> holding one <request>
 * per element.  Raw items (numbers kept as text, embedded JSON) are
 * expanded.  Returns malloc'd UTF-8 text, or NULL with err set (a key that
 * is not an XML name, say, or text with a character XML 1.0 cannot carry:
 * a control character other than tab, CR and LF, or U+FFFE/U+FFFF).
 */
extern char *cfdw_json_to_xml(const cJSON *root, bool batch, char *err, size_t errlen);

/*
 * Serialise a request body tree as application/x-www-form-urlencoded:
 * nested keys flattened with dots ("body.value=..."), array elements as the
 * same key repeated, JSON null as an empty value.  Returns malloc'd text,
 * or NULL with err set.
 */
extern char *cfdw_json_to_form(const cJSON *root, char *err, size_t errlen);

/*
 * The target of the rel="next" link of a Link header (RFC 8288), as in
 * Confluence's `</wiki/api/v2/pages?cursor=X>; rel="next", <https://...>;
 * rel="base"`, copied into out.  false when there is none, when it is
 * malformed, or when it does not fit in outsize.
 */
extern bool cfdw_link_next(const char *header, char *out, size_t outsize);

/*
 * Egress control.  cfdw_host_allowed: does host match one of the
 * comma-separated patterns ("name" exactly, "*.domain" for any name under
 * domain), case-insensitively?  cfdw_address_internal: is the address
 * loopback, link-local (169.254.0.0/16 with cloud metadata, fe80::/10),
 * private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), unspecified
 * or multicast, also as an IPv4-mapped IPv6 address?
 */
struct sockaddr;
extern bool cfdw_host_allowed(const char *host, const char *patterns);
extern bool cfdw_address_internal(const struct sockaddr *sa);

#include <stdint.h>

/*
 * Rate limits.  The headers of one answer, read leniently: a value that is
 * absent, malformed or inconsistent (Remaining above Limit, a reset in the
 * past or more than a day ahead) is left out, never an error.
 *
 * cfdw_rate_count: a whole number 0 .. 10^12 (blanks around it allowed).
 * cfdw_rate_time: an ISO 8601 UTC time, "2026-03-26T14:00Z", with seconds
 * and fractions or an offset too ("+01:00", "+0100"); a fraction rounds up,
 * so a reset is never taken for earlier than it is.
 * cfdw_rate_flag: 1 for "true", 0 for "false" (any case), -1 otherwise.
 * cfdw_rate_param: the integer parameter key (one letter, as q, w, r, t) of
 * the first item of a structured header such as Beta-RateLimit-Policy's
 * "tenant-app-quota";q=100100;w=3600, its item name in name.
 */
extern bool cfdw_rate_count(const char *value, long long *out);
extern bool cfdw_rate_time(const char *value, time_t *out);
extern int	cfdw_rate_flag(const char *value);

/* The raw values of the rate-limit headers of an answer (NULL or "": absent). */
typedef struct CfdwRateHeaders
{
	const char *limit;			/* X-RateLimit-Limit */
	const char *remaining;		/* X-RateLimit-Remaining */
	const char *reset;			/* X-RateLimit-Reset */
	const char *near_limit;		/* X-RateLimit-NearLimit (or the X-Beta- one) */
	const char *reason;			/* RateLimit-Reason (or X-Beta-RateLimit-Reason) */
	const char *policy;			/* Beta-RateLimit-Policy */
	const char *beta;			/* Beta-RateLimit */
} CfdwRateHeaders;

#define CFDW_RATE_REASON_LEN 64

/* What the headers of one answer say; -1, 0 or "" where they say nothing. */
typedef struct CfdwRateInfo
{
	long long	limit;			/* requests (points) per window */
	long long	remaining;		/* left in this window */
	time_t		reset;			/* when the window ends */
	int			near_limit;		/* 1, 0, or -1: not said */
	char		reason[CFDW_RATE_REASON_LEN];	/* printable ASCII only */
} CfdwRateInfo;

/*
 * Read the headers of an answer at now.  X-RateLimit-Limit/-Remaining/
 * -Reset and the Beta pair (q and w of the policy, r and t of the state,
 * matched by item name; t is taken only up to w) are two sources; when both
 * tell a reset, the one that allows the slower pace (fewer requests per
 * second until its reset) wins.  Returns whether anything was read.
 */
extern bool cfdw_rate_parse(const CfdwRateHeaders *h, time_t now, CfdwRateInfo *out);

/*
 * The key of the site a URL reaches, for rate limits: the cloudId when
 * cloud_id is given or the URL is an API gateway URL (.../ex/confluence/
 * {cloudId}/...), else the host name in lower case, with ":port" unless it
 * is the scheme's default.  false when the URL has no host or the key does
 * not fit in outsize.
 */
#define CFDW_SITE_KEY_LEN 272
extern bool cfdw_site_key(const char *url, const char *cloud_id, char *out, size_t outsize);

/*
 * Pacing of one site, in microseconds on any one clock.  budget counts the
 * requests still allowed before reset: the last answer's Remaining, less
 * the other requests in flight then (claimed and not yet answered: waiting
 * for their turn, sent, or being answered, which that Remaining may not
 * count yet), less each request claimed since.  A request starts no earlier
 * than now, not_before, the pause and next_at; when the site is near its
 * limit (near_limit, or a budget under a fifth of limit) the budget left is
 * spread evenly until the reset, an exhausted budget waits for the reset,
 * and max_rate (requests per second, 0: none) caps the pace in any case.
 */
typedef struct CfdwPace
{
	int64_t		next_at;		/* no request before this (0: none) */
	int64_t		paused_until;	/* a Retry-After pause (0: none) */
	int64_t		reset;			/* end of the window (0: unknown) */
	long long	limit;			/* -1: unknown */
	long long	budget;			/* -1: unknown */
	int			near_limit;		/* 1, 0, -1: unknown */
	long long	inflight;		/* claimed and not yet answered */
} CfdwPace;

/*
 * When a request may start; claims that time (the request is in flight
 * until cfdw_pace_answered).  *paced: later than it would have started
 * without the pace or max_rate.  A turn of the window's pace further than
 * max_wait (microseconds; negative: no bound) from when it could start
 * is not waited for: the request starts then, spaced by max_rate only,
 * and the window's state is left as it was.
 */
extern int64_t cfdw_pace_claim(CfdwPace *p, int64_t now, int64_t not_before,
							   double max_rate, int64_t max_wait, bool *paced);

/*
 * A claimed request is over: answered, with what its headers said (info,
 * reset already on the pace's clock, 0: none), or with info NULL, failed
 * or given up.  An answer with a Remaining but without a reset while a
 * window is known is of a window that is over: only its NearLimit is taken.
 */
extern void cfdw_pace_answered(CfdwPace *p, const CfdwRateInfo *info, int64_t reset,
							   int64_t now);

/*
 * Atlassian's API gateway.  cfdw_cloud_id_valid: is s a cloudId (a UUID:
 * 8-4-4-4-12 hexadecimal digits)?  It goes into URLs, so nothing else is
 * taken.  cfdw_cloud_id_of_url: the cloudId of a URL of the form
 * .../ex/confluence/{cloudId}..., copied into out; false when there is
 * none (or it is not a cloudId).
 */
extern bool cfdw_cloud_id_valid(const char *s);
extern bool cfdw_cloud_id_of_url(const char *url, char *out, size_t outsize);

/*
 * A next link of a page of results, against the base URL of the server
 * (origin plus optional prefix, no trailing '/'): the part to append to the
 * base, or NULL when the link leaves it.  A link relative to the site
 * ("/wiki/api/v2/pages?cursor=X", which is how Confluence writes them
 * behind the gateway too) is appended whole, so the prefix
 * ("/ex/confluence/{cloudId}") is kept; one that already starts with the
 * prefix, or is absolute on the base, gives what follows the prefix, so it
 * is never doubled.  The caller checks the link's characters.
 */
extern const char *cfdw_next_link_rest(const char *base, const char *link);

/*
 * The OAuth scope an operation needs (Atlassian's spec, "security"):
 * method, path pattern as in the spec ("/wiki/api/v2/pages/{id}"), scope.
 * cfdw_scopes ends with a NULL method.  cfdw_scope_find: the row for a
 * request's method and path (a query is ignored; "{x}" matches one
 * segment), or NULL when the path is not one of them.
 */
typedef struct CfdwScope
{
	const char *method;
	const char *path;
	const char *scope;
} CfdwScope;

extern const CfdwScope cfdw_scopes[];
extern const CfdwScope *cfdw_scope_find(const char *method, const char *path);

#endif							/* CFDW_PURE_H */
