/*-------------------------------------------------------------------------
 *
 * options.c
 *		  Option catalog and validator of confluence_fdw, and the resolution of
 *		  server, user mapping, table and column options into one CfdwTable.
 *
 * The validator checks each option on its own and the combinations that can
 * be seen on one object (domain vs. base_url, api_token vs. bearer_token).
 * Everything that spans objects (a table without a server domain, a mapping
 * without credentials) is checked when the table is resolved at execution
 * time, which is also when server and mapping options are read, so that an
 * ALTER takes effect without re-planning.
 *
 * No message here ever contains the value of a secret option.
 *
 * IDENTIFICATION
 *		  src/options.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <limits.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "confluence_fdw.h"
#include "pure.h"

typedef enum CfdwOptType
{
	OPT_HOST,					/* bare host name */
	OPT_URL,					/* http(s) origin with optional prefix */
	OPT_MS,						/* milliseconds, 1 .. INT_MAX */
	OPT_COUNT,					/* 0 .. INT_MAX */
	OPT_BYTES,					/* 1 .. 1 GB */
	OPT_BOOL,
	OPT_TEXT,					/* any non-empty text */
	OPT_SECRET,					/* non-empty text, never echoed */
	OPT_ENDPOINT,
	OPT_METHOD,
	OPT_REPRESENTATION,
	OPT_FIELD,
	OPT_RESPONSE_FIELD,
	OPT_FORMAT,
	OPT_HEADERS,
	OPT_BATCH_SIZE,
	OPT_ON_ERROR,
	OPT_DELIVERY,
	OPT_CONCURRENCY,
	OPT_CA_FILE,
	OPT_PROXY,
	OPT_READ_ENDPOINT,			/* a manual path only */
	OPT_ON_CONFLICT,
	OPT_COLUMN_REPRESENTATION,
	OPT_RATE,					/* requests per second, above 0 */
	OPT_CLOUD_ID				/* a cloudId: a UUID */
} CfdwOptType;

typedef struct CfdwOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
	CfdwOptType type;
} CfdwOption;

/*
 * The option catalog.  An option appears once per object kind it is valid on.
 */
static const CfdwOption cfdw_options[] = {
	/* server */
	{"domain", ForeignServerRelationId, OPT_HOST},
	{"base_url", ForeignServerRelationId, OPT_URL},
	{"timeout_ms", ForeignServerRelationId, OPT_MS},
	{"connect_timeout_ms", ForeignServerRelationId, OPT_MS},
	{"max_response_bytes", ForeignServerRelationId, OPT_BYTES},
	{"keep_connections", ForeignServerRelationId, OPT_BOOL},
	{"max_retries", ForeignServerRelationId, OPT_COUNT},
	{"max_retry_wait_ms", ForeignServerRelationId, OPT_COUNT},
	{"max_concurrency", ForeignServerRelationId, OPT_CONCURRENCY},
	{"max_rate", ForeignServerRelationId, OPT_RATE},
	{"ca_file", ForeignServerRelationId, OPT_CA_FILE},
	{"proxy", ForeignServerRelationId, OPT_PROXY},
	{"delivery", ForeignServerRelationId, OPT_DELIVERY},
	{"token_url", ForeignServerRelationId, OPT_URL},
	{"cloud_id", ForeignServerRelationId, OPT_CLOUD_ID},
	{"api_gateway", ForeignServerRelationId, OPT_BOOL},
	{"api_gateway_url", ForeignServerRelationId, OPT_URL},

	/* user mapping */
	{"username", UserMappingRelationId, OPT_TEXT},
	{"api_token", UserMappingRelationId, OPT_SECRET},
	{"bearer_token", UserMappingRelationId, OPT_SECRET},
	{"client_id", UserMappingRelationId, OPT_TEXT},
	{"client_secret", UserMappingRelationId, OPT_SECRET},
	{"scope", UserMappingRelationId, OPT_TEXT},

	/* foreign table */
	{"endpoint", ForeignTableRelationId, OPT_ENDPOINT},
	{"method", ForeignTableRelationId, OPT_METHOD},
	{"representation", ForeignTableRelationId, OPT_REPRESENTATION},
	{"format", ForeignTableRelationId, OPT_FORMAT},
	{"headers", ForeignTableRelationId, OPT_HEADERS},
	{"batch_mode", ForeignTableRelationId, OPT_BOOL},
	{"batch_size", ForeignTableRelationId, OPT_BATCH_SIZE},
	{"on_error", ForeignTableRelationId, OPT_ON_ERROR},
	{"max_concurrency", ForeignTableRelationId, OPT_CONCURRENCY},
	{"delivery", ForeignTableRelationId, OPT_DELIVERY},
	{"read_endpoint", ForeignTableRelationId, OPT_READ_ENDPOINT},
	{"on_conflict", ForeignTableRelationId, OPT_ON_CONFLICT},

	/* column */
	{"field", AttributeRelationId, OPT_FIELD},
	{"response_field", AttributeRelationId, OPT_RESPONSE_FIELD},
	{"send", AttributeRelationId, OPT_BOOL},
	{"representation", AttributeRelationId, OPT_COLUMN_REPRESENTATION},

	{NULL, InvalidOid, OPT_TEXT}
};

static const char *
context_name(Oid context)
{
	switch (context)
	{
		case ForeignDataWrapperRelationId:
			return "foreign-data wrapper";
		case ForeignServerRelationId:
			return "server";
		case UserMappingRelationId:
			return "user mapping";
		case ForeignTableRelationId:
			return "foreign table";
		case AttributeRelationId:
			return "foreign table column";
	}
	return "object";
}

/* The valid option names for one object kind, comma separated. */
static char *
valid_options_list(Oid context)
{
	StringInfoData buf;
	const CfdwOption *opt;

	initStringInfo(&buf);
	for (opt = cfdw_options; opt->name; opt++)
	{
		if (opt->context != context)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, opt->name);
	}
	return buf.data;
}

static const CfdwOption *
find_option(const char *name, Oid context)
{
	const CfdwOption *opt;

	for (opt = cfdw_options; opt->name; opt++)
		if (opt->context == context && strcmp(opt->name, name) == 0)
			return opt;
	return NULL;
}

/*
 * Parse a whole non-negative number; false on anything else (sign, junk,
 * overflow).  Shared by the validator and the resolver.
 */
static bool
parse_count(const char *s, int64 max, int64 *result)
{
	int64		v = 0;
	const char *p = s;

	if (*p == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
		if (v > max)
			return false;
	}
	*result = v;
	return true;
}

bool
cfdw_parse_method(const char *s, CfdwMethod *method)
{
	if (pg_strcasecmp(s, "POST") == 0)
		*method = CFDW_POST;
	else if (pg_strcasecmp(s, "PUT") == 0)
		*method = CFDW_PUT;
	else if (pg_strcasecmp(s, "PATCH") == 0)
		*method = CFDW_PATCH;
	else if (pg_strcasecmp(s, "DELETE") == 0)
		*method = CFDW_DELETE;
	else if (pg_strcasecmp(s, "GET") == 0)
		*method = CFDW_GET;		/* a manual table that is read by SELECT */
	else
		return false;
	return true;
}

/* The format option: json, xml or form. */
static bool
parse_format(const char *s, CfdwFormat *format)
{
	if (strcmp(s, "json") == 0)
		*format = CFDW_FORMAT_JSON;
	else if (strcmp(s, "xml") == 0)
		*format = CFDW_FORMAT_XML;
	else if (strcmp(s, "form") == 0)
		*format = CFDW_FORMAT_FORM;
	else
		return false;
	return true;
}

/* The Content-Type of a body in this format. */
static const char *
format_content_type(CfdwFormat format)
{
	switch (format)
	{
		case CFDW_FORMAT_XML:
			return "application/xml";
		case CFDW_FORMAT_FORM:
			return "application/x-www-form-urlencoded";
		case CFDW_FORMAT_JSON:
			break;
	}
	return "application/json";
}

static void
invalid_value(const char *name, const char *value, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * An invalid value said by what is wrong with it rather than by itself, for
 * values that may be long or hold something that should not be repeated.
 */
static void
invalid_value_because(const char *name, const char *problem, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"%s\": %s", name, problem),
			 errhint("%s", hint)));
}

/*
 * A Confluence Cloud site name: letters, digits, '-' and '.', no empty label.
 * The messages say what was found (a scheme, a port, a path) because that is
 * the usual mistake: pasting a URL where a host name belongs.
 */
static void
check_host(const char *name, const char *value)
{
	const char *p;
	const char *hint = "Give the host name only, e.g. domain 'acme.atlassian.net'; use base_url for anything else.";
	size_t		len = strlen(value);

	/* user information may hold a password: never repeat such a value */
	if (strchr(value, '@'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must be a host name without user information", name),
				 errhint("%s", hint)));
	if (strstr(value, "://"))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must be a host name without a scheme: \"%s\"", name, value),
				 errhint("%s", hint)));
	if (strchr(value, '/'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must be a host name without a path: \"%s\"", name, value),
				 errhint("%s", hint)));
	if (strchr(value, ':'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must be a host name without a port: \"%s\"", name, value),
				 errhint("%s", hint)));

	if (len == 0 || len > 253 || value[0] == '.' || value[0] == '-' ||
		value[len - 1] == '.' || value[len - 1] == '-' || strstr(value, ".."))
		invalid_value(name, value, hint);
	for (p = value; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			invalid_value(name, value, hint);
	}
}

/* The host of a URL libcurl accepts, palloc'd, or NULL. */
static char *
url_host(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	char	   *result = NULL;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host)
		result = pstrdup(host);
	curl_free(host);
	curl_url_cleanup(u);
	return result;
}

/*
 * Egress control (README "Security notes"): a server that a role other than a superuser
 * sets up may only name hosts that confluence_fdw.allowed_hosts allows, or
 * it could read internal https services' answers through RETURNING.
 */
static void
check_egress_host(const char *option, const char *host, bool for_server_owner,
				  const char *servername)
{
	if (host != NULL && cfdw_host_allowed(host, cfdw_allowed_hosts))
		return;
	if (for_server_owner)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("server \"%s\" may not connect to \"%s\": it is not in confluence_fdw.allowed_hosts",
						servername, host ? host : ""),
				 errdetail("The server belongs to a role that is not a superuser."),
				 errhint("A superuser can add the host to confluence_fdw.allowed_hosts.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("host \"%s\" of option \"%s\" is not in confluence_fdw.allowed_hosts",
					host ? host : "", option),
			 errhint("Only a superuser may create servers for other hosts, or add them to confluence_fdw.allowed_hosts (now \"%s\").",
					 cfdw_allowed_hosts ? cfdw_allowed_hosts : "")));
}

/*
 * base_url: an http(s) origin with an optional path prefix, parsed by
 * libcurl's URL API so that what we accept is what libcurl will connect to.
 * Plain http is for a local stand-in and only a superuser may choose it, as
 * it would send the token in clear.  token_url follows the same rules: the
 * client secret goes there.
 */
static void
check_base_url(const char *name, const char *value)
{
	CURLU	   *u = curl_url();
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *user = NULL;
	char	   *query = NULL;
	char	   *fragment = NULL;
	bool		is_https;
	const char *problem = NULL;

	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));

	/* curl_url_set does not allocate on failure; free what get returns */
	rc = curl_url_set(u, CURLUPART_URL, value, 0);
	if (rc != CURLUE_OK)
		problem = "it is not a valid URL";
	else
	{
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
		if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user)
			problem = "it must not contain user information";
		else if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query)
			problem = "it must not contain a query string";
		else if (curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK && fragment)
			problem = "it must not contain a fragment";
		else if (scheme == NULL ||
				 (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0))
			problem = "its scheme must be https";
	}
	is_https = scheme && strcmp(scheme, "https") == 0;
	curl_free(scheme);
	curl_free(user);
	curl_free(query);
	curl_free(fragment);
	curl_url_cleanup(u);

	/* The URL itself is not a secret: user information is refused above. */
	if (problem)
		invalid_value_because(name, problem,
							  strcmp(name, "token_url") == 0 ?
							  "Give the URL of the OAuth 2.0 token endpoint, e.g. https://auth.atlassian.com/oauth/token." :
							  strcmp(name, "api_gateway_url") == 0 ?
							  "Give the gateway's origin, e.g. https://api.atlassian.com (the default)." :
							  "Use an origin with an optional path prefix, e.g. https://api.atlassian.com/ex/confluence/<cloudId>.");
	if (!is_https && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set option \"%s\" to a URL that is not https", name),
				 errdetail("Plain http would send the credentials unencrypted.")));
}

/*
 * The proxy option: an http:// or https:// proxy origin.  It sees every
 * request's host and, for plain http sites, the credentials, so only a
 * superuser may set it, as with ca_file.  Proxy credentials would be secrets
 * in a server option, where anyone with USAGE can read them: refused.
 */
static void
check_proxy(const char *name, const char *value)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *user = NULL;
	char	   *path = NULL;
	char	   *query = NULL;
	const char *problem = NULL;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set option \"%s\"", name),
				 errdetail("A proxy sees where every request goes.")));
	u = curl_url();
	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	/* any scheme parses, so that a wrong one gets its own message */
	if (curl_url_set(u, CURLUPART_URL, value, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
		problem = "it is not a valid URL";
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		problem = "its scheme must be http or https";
	else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user)
		problem = "it must not contain user information";
	else if ((curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
			  path && strcmp(path, "/") != 0) ||
			 (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query))
		problem = "it must be an origin only, without a path or query";
	curl_free(scheme);
	curl_free(user);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	if (problem)
		invalid_value_because(name, problem,
							  "Give the proxy's origin, e.g. http://proxy.example.com:3128.");
}

/*
 * A manual endpoint path must stay on the server's origin (pure.c says how);
 * placeholder values are percent-encoded when a row is sent, so they cannot
 * add anything that would leave it either.
 */
static void
check_manual_path(const char *name, const char *value)
{
	char		err[CFDW_ERRLEN];

	if (!cfdw_path_check(value, err, sizeof(err)))
		invalid_value_because(name, err,
							  psprintf("Give a path such as /wiki/api/v2/pages/{id}, or a template name (%s).",
									   cfdw_template_names()));
}

static void
check_endpoint(const char *name, const char *value)
{
	if (value[0] == '/')
	{
		check_manual_path(name, value);
		return;
	}
	if (cfdw_find_template(value) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
				 errhint("Use a template name (%s) or a path starting with \"/\".",
						 cfdw_template_names())));
}

/* A dotted path: non-empty segments; "." alone means the whole object. */
static bool
valid_dotted(const char *value)
{
	const char *p;
	bool		empty_segment = true;

	if (strcmp(value, ".") == 0)
		return true;
	for (p = value; *p; p++)
	{
		if (*p == '.')
		{
			if (empty_segment)
				return false;
			empty_segment = true;
		}
		else
			empty_segment = false;
	}
	return !empty_segment;
}

/*
 * Text and secrets: never empty.  Secrets are checked without ever
 * repeating them; a line break would end the header they are sent in.  A
 * username goes into "user:token" of Basic authentication, where a ':'
 * would end it early.
 */
static void
check_text(const CfdwOption *opt, const char *value)
{
	if (value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not be empty", opt->name)));
	if (opt->type == OPT_SECRET && strpbrk(value, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not contain line breaks", opt->name)));
	if (strcmp(opt->name, "username") == 0 && strpbrk(value, "\r\n:") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not contain ':' or line breaks", opt->name)));
}

/* The range of each number option, and the hint that says what it is. */
typedef struct CfdwNumberRange
{
	CfdwOptType type;
	int64		min;
	int64		max;
	const char *hint;
} CfdwNumberRange;

static const CfdwNumberRange number_ranges[] = {
	{OPT_MS, 1, INT_MAX, "Give a whole number of milliseconds greater than zero."},
	{OPT_COUNT, 0, INT_MAX, "Give a whole number, zero or greater."},
	{OPT_BYTES, 1, MaxAllocSize, "Give a number of bytes from 1 to 1073741823."},
	{OPT_BATCH_SIZE, 1, 10000, "Give a number of rows from 1 to 10000."},
	{OPT_CONCURRENCY, 1, CFDW_MAX_CONCURRENCY, "Give a number of requests from 1 to 64."}
};

static void
check_number(const CfdwOption *opt, const char *value)
{
	const CfdwNumberRange *r;
	int64		n;

	for (r = number_ranges; r < number_ranges + lengthof(number_ranges); r++)
	{
		if (r->type != opt->type)
			continue;
		if (!parse_count(value, r->max, &n) || n < r->min)
			invalid_value(opt->name, value, r->hint);
		return;
	}
	elog(ERROR, "option \"%s\" has no number range", opt->name);
}

/*
 * max_rate: requests per second, a plain decimal number above 0 and at most
 * CFDW_MAX_RATE ("10", "0.5"); no sign, exponent, or anything else.
 */
#define CFDW_MAX_RATE 1000000.0

static bool
parse_rate(const char *value, double *rate)
{
	const char *p = value;
	bool		digits = false;

	for (; *p >= '0' && *p <= '9'; p++)
		digits = true;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits = true;
	if (!digits || *p != '\0' || strlen(value) > 32)
		return false;
	*rate = strtod(value, NULL);
	return *rate > 0 && *rate <= CFDW_MAX_RATE;
}

/* An option that takes one of a few words. */
static void
check_word(const CfdwOption *opt, const char *value)
{
	bool		ok = false;
	const char *hint = NULL;
	bool		b;
	CfdwMethod	m;
	CfdwFormat	f;

	switch (opt->type)
	{
		case OPT_BOOL:
			ok = parse_bool(value, &b);
			hint = "Use true or false.";
			break;
		case OPT_METHOD:
			ok = cfdw_parse_method(value, &m);
			hint = "Use POST, PUT, PATCH or DELETE, or GET for a table read by SELECT.";
			break;
		case OPT_FORMAT:
			ok = parse_format(value, &f);
			hint = "Use json, xml or form.";
			break;
		case OPT_ON_ERROR:
			ok = strcmp(value, "error") == 0 || strcmp(value, "return") == 0;
			hint = "Use error or return.";
			break;
		case OPT_DELIVERY:
			ok = strcmp(value, "immediate") == 0 || strcmp(value, "queue") == 0;
			hint = "Use immediate (sent by the statement) or queue (sent by the worker after COMMIT).";
			break;
		case OPT_REPRESENTATION:
			ok = cfdw_valid_representation(value);
			hint = ok ? NULL : cfdw_representation_hint();
			break;
		case OPT_COLUMN_REPRESENTATION:
			ok = strcmp(value, "storage") == 0 || strcmp(value, "markdown") == 0 ||
				strcmp(value, "plain") == 0;
			hint = "Use markdown or plain (converted to storage format and checked), or storage (checked).";
			break;
		case OPT_ON_CONFLICT:
			ok = strcmp(value, "error") == 0 || strcmp(value, "update") == 0 ||
				strcmp(value, "skip") == 0;
			hint = "Use error, update (the page with the same title is updated) or skip (it is left alone).";
			break;
		default:
			elog(ERROR, "option \"%s\" takes no word", opt->name);
	}
	if (!ok)
		invalid_value(opt->name, value, hint);
}

static void
check_headers_option(const char *name, const char *value)
{
	char		err[CFDW_ERRLEN];

	/* the message names the header, never its value */
	if (!cfdw_headers_parse(value, NULL, NULL, err, sizeof(err)))
		invalid_value_because(name, err,
							  "Write headers as Name:value,Name2:value2; credentials belong in the user mapping.");
}

/* The CA bundle decides whom the token is sent to: a superuser's choice. */
static void
check_ca_file(const char *name, const char *value)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may set option \"%s\"", name),
				 errdetail("The CA bundle decides which servers are trusted with the credentials.")));
	if (!is_absolute_path(value))
		invalid_value(name, value, "Give the absolute path of a PEM file of CA certificates.");
}

/* Check one option's value by its type. */
static void
check_value(const CfdwOption *opt, DefElem *def)
{
	const char *value = defGetString(def);

	switch (opt->type)
	{
		case OPT_SECRET:
		case OPT_TEXT:
			check_text(opt, value);
			break;
		case OPT_HOST:
			check_host(opt->name, value);
			if (!superuser())
				check_egress_host(opt->name, value, false, NULL);
			break;
		case OPT_URL:
			check_base_url(opt->name, value);
			if (!superuser())
				check_egress_host(opt->name, url_host(value), false, NULL);
			break;
		case OPT_PROXY:
			check_proxy(opt->name, value);
			break;
		case OPT_CLOUD_ID:
			/* it goes into every URL: nothing but a UUID */
			if (!cfdw_cloud_id_valid(value))
				invalid_value(opt->name, value,
							  "A cloudId is a UUID such as a436116f-02ce-4520-8fbb-7301462a1674; https://{your-site}.atlassian.net/_edge/tenant_info shows your site's, or use api_gateway 'true' with domain to look it up.");
			break;
		case OPT_CA_FILE:
			check_ca_file(opt->name, value);
			break;
		case OPT_ENDPOINT:
			check_endpoint(opt->name, value);
			break;
		case OPT_READ_ENDPOINT:
			if (value[0] != '/')
				invalid_value(opt->name, value,
							  "Give the path a SELECT reads, such as /wiki/api/v2/pages/{page_id}/labels.");
			check_manual_path(opt->name, value);
			break;
		case OPT_HEADERS:
			check_headers_option(opt->name, value);
			break;
		case OPT_FIELD:
			if (!valid_dotted(value))
				invalid_value(opt->name, value,
							  "Give a dotted path such as body.value, or \".\" to merge a json object into the body.");
			break;
		case OPT_RESPONSE_FIELD:
			if (strcmp(value, "$status") != 0 && strcmp(value, "$queue_id") != 0 &&
				strcmp(value, "$action") != 0 && !valid_dotted(value))
				invalid_value(opt->name, value,
							  "Give a dotted path such as version.number, \".\" for the whole response, \"$status\" for the HTTP status, \"$action\" for what an upsert did, or \"$queue_id\" for the queue row of delivery 'queue'.");
			break;
		case OPT_BOOL:
		case OPT_METHOD:
		case OPT_FORMAT:
		case OPT_ON_ERROR:
		case OPT_DELIVERY:
		case OPT_REPRESENTATION:
		case OPT_COLUMN_REPRESENTATION:
		case OPT_ON_CONFLICT:
			check_word(opt, value);
			break;
		case OPT_MS:
		case OPT_COUNT:
		case OPT_BYTES:
		case OPT_BATCH_SIZE:
		case OPT_CONCURRENCY:
			check_number(opt, value);
			break;
		case OPT_RATE:
			{
				double		rate;

				if (!parse_rate(value, &rate))
					invalid_value(opt->name, value,
								  "Give requests per second to the site, a number above 0 such as 10 or 0.5.");
			}
			break;
	}
}

/*
 * Report an option that is not valid on this object, saying where it does
 * belong when it is one of ours.  Secrets get their own message so nobody is
 * tempted to put a token on a server or table.
 */
static void
report_misplaced_option(const char *name, Oid context)
{
	const CfdwOption *opt;
	Oid			home = InvalidOid;
	bool		secret = false;

	for (opt = cfdw_options; opt->name; opt++)
	{
		if (strcmp(opt->name, name) == 0)
		{
			home = opt->context;
			secret = (opt->type == OPT_SECRET || strcmp(name, "username") == 0);
			break;
		}
	}

	if (secret)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"%s\" is only allowed on a user mapping", name),
				 errhint("Credentials belong in CREATE USER MAPPING ... OPTIONS (...), where only their owner and superusers can read them.")));
	if (OidIsValid(home))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"%s\" is not allowed on a %s", name, context_name(context)),
				 errhint("Set \"%s\" on the %s.", name, context_name(home))));

	{
		char	   *valid = valid_options_list(context);

		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("invalid option \"%s\"", name),
				 valid[0] ? errhint("Valid options on a %s are: %s.", context_name(context), valid)
				 : errhint("There are no valid options on a %s.", context_name(context))));
	}
}

/*
 * A template sends its own format with its own method: another method or
 * format cannot work, so it is refused when the options are set, not when a
 * row is sent.
 */
static void
check_template_combination(const char *endpoint, const char *method,
						   const char *format)
{
	const CfdwTemplate *tmpl = cfdw_find_template(endpoint);
	CfdwMethod	m;
	CfdwFormat	f;

	if (tmpl == NULL)
		return;					/* check_endpoint has refused it already */
	if (method && cfdw_parse_method(method, &m) && m != tmpl->method)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"method\" '%s' cannot be used with option \"endpoint\" '%s'",
						method, endpoint),
				 errdetail("The %s template sends %s %s.", endpoint,
						   cfdw_method_name(tmpl->method), tmpl->path),
				 errhint("Drop the method option, or give a manual endpoint path such as %s/{id}.",
						 tmpl->path)));
	if (format && (!parse_format(format, &f) || f != tmpl->format))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"format\" '%s' cannot be used with option \"endpoint\" '%s'",
						format, endpoint),
				 errdetail("Confluence's v2 endpoints of the templates take JSON bodies only."),
				 errhint("Drop the format option, or give a manual endpoint path.")));
}

/*
 * What a table reads: a template its own list, a manual table its GET path
 * or read_endpoint.  A GET table sends nothing, so it queues nothing.
 */
static void
check_read_combination(const char *endpoint, const char *method,
					   bool has_read_endpoint, bool queued)
{
	if (has_read_endpoint && endpoint && endpoint[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"read_endpoint\" cannot be used with option \"endpoint\" '%s'",
						endpoint),
				 errdetail("The %s template reads its own list endpoint.", endpoint)));
	if (queued && method && pg_strcasecmp(method, "GET") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("delivery 'queue' cannot be used with method 'GET'"),
				 errdetail("A table with method 'GET' is read by SELECT; nothing is queued.")));
}

/* A queued row is one request: it cannot be part of a batch. */
static void
refuse_queued_batch(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("batch_mode cannot be used with delivery 'queue'"),
			 errdetail("The worker sends each queued row as a request of its own."),
			 errhint("Turn batch_mode off, or use delivery 'immediate'.")));
}

/*
 * on_conflict 'update' and 'skip' find a page or blog post by its title in
 * its space: only those templates have titles unique per space, and each
 * row needs answers of its own, which a batch does not get.
 */
static void
check_on_conflict(const char *endpoint, bool upsert, bool batch)
{
	if (!upsert)
		return;
	if (endpoint == NULL || (strcmp(endpoint, "pages") != 0 && strcmp(endpoint, "blogposts") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"on_conflict\" needs endpoint 'pages' or 'blogposts'"),
				 errdetail("Only pages and blog posts have a title that is unique in their space.")));
	if (batch)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"on_conflict\" cannot be used with batch_mode"),
				 errdetail("Each row of an upsert needs answers of its own.")));
}

/*
 * OAuth 2.0 client credentials (client_id, client_secret, optional scope)
 * are a kind of credential of their own: combined with another one, which
 * would be sent is anyone's guess, so the combination is refused, naming
 * both options.
 */
static void
check_client_credentials(bool has_client_id, bool has_client_secret, bool has_scope,
						 bool has_username, bool has_api_token, bool has_bearer)
{
	const char *other = has_api_token ? "api_token" : has_username ? "username" :
		has_bearer ? "bearer_token" : NULL;

	if ((has_client_id || has_client_secret) && other)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"%s\" cannot be combined with \"%s\"",
						has_client_id ? "client_id" : "client_secret", other),
				 errhint("Use client_id and client_secret (OAuth 2.0 client credentials of a service account), username and api_token, or bearer_token: one of them.")));
	if (has_client_secret && !has_client_id)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("option \"client_secret\" needs option \"client_id\""),
				 errhint("A service account's OAuth 2.0 credential has both: set them together.")));
	if (has_client_id && !has_client_secret)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("option \"client_id\" needs option \"client_secret\""),
				 errhint("A service account's OAuth 2.0 credential has both: set them together.")));
	if (has_scope && !has_client_id)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("option \"scope\" needs option \"client_id\""),
				 errdetail("scope is what an access token is asked for with client_id and client_secret.")));
}

/*
 * Where a server's requests go: its site (domain or base_url), or the API
 * gateway with the site's cloudId (cloud_id, or api_gateway 'true' to look
 * it up from the site).  Options that say two different things are refused
 * naming both.
 */
static void
check_gateway_combination(bool has_domain, bool has_base_url, bool has_cloud_id,
						  bool has_api_gateway, bool api_gateway, bool has_gateway_url)
{
	if (has_cloud_id && (has_domain || has_base_url))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"cloud_id\" and \"%s\" cannot both be set",
						has_domain ? "domain" : "base_url"),
				 errdetail("cloud_id sends requests to https://api.atlassian.com/ex/confluence/{cloud_id}; %s names another address.",
						   has_domain ? "domain" : "base_url"),
				 has_domain ?
				 errhint("Drop domain, or drop cloud_id and set api_gateway 'true' to look the cloudId up from the domain.") :
				 errhint("Drop one of them.")));
	if (has_cloud_id && has_api_gateway && !api_gateway)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"cloud_id\" cannot be used with api_gateway 'false'"),
				 errdetail("A cloudId is reached only through the API gateway.")));
	if (has_gateway_url && !has_cloud_id && !api_gateway)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"api_gateway_url\" needs option \"cloud_id\" or api_gateway 'true'"),
				 errdetail("Without them requests go to the site, not through the gateway.")));
}

PG_FUNCTION_INFO_V1(confluence_fdw_validator);

/*
 * confluence_fdw_validator
 *		Validate the options of a server, user mapping, foreign table or
 *		column.  The list is the object's complete option list after the
 *		command, so checks across options of one object belong here.
 */
Datum
confluence_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;
	bool		batch = false;
	bool		queued = false;
	const char *format = NULL;
	const char *endpoint = NULL;
	const char *method = NULL;
	bool		has_read_endpoint = false;
	bool		upsert = false;
	bool		has_domain = false,
				has_base_url = false,
				has_cloud_id = false,
				has_gateway_url = false,
				api_gateway = false,
				has_api_gateway = false,
				has_username = false,
				has_api_token = false,
				has_bearer = false;
	bool		has_client_id = false,
				has_client_secret = false,
				has_scope = false;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const CfdwOption *opt = find_option(def->defname, catalog);

		if (opt == NULL)
			report_misplaced_option(def->defname, catalog);
		check_value(opt, def);

		has_domain |= strcmp(opt->name, "domain") == 0;
		has_base_url |= strcmp(opt->name, "base_url") == 0;
		has_username |= strcmp(opt->name, "username") == 0;
		has_api_token |= strcmp(opt->name, "api_token") == 0;
		has_bearer |= strcmp(opt->name, "bearer_token") == 0;
		has_client_id |= strcmp(opt->name, "client_id") == 0;
		has_client_secret |= strcmp(opt->name, "client_secret") == 0;
		has_scope |= strcmp(opt->name, "scope") == 0;
		has_cloud_id |= strcmp(opt->name, "cloud_id") == 0;
		has_gateway_url |= strcmp(opt->name, "api_gateway_url") == 0;
		if (strcmp(opt->name, "api_gateway") == 0)
		{
			has_api_gateway = true;
			api_gateway = cfdw_option_bool(def);
		}
		if (strcmp(opt->name, "batch_mode") == 0)
			batch = cfdw_option_bool(def);
		else if (strcmp(opt->name, "format") == 0)
			format = defGetString(def);
		else if (strcmp(opt->name, "endpoint") == 0)
			endpoint = defGetString(def);
		else if (strcmp(opt->name, "method") == 0)
			method = defGetString(def);
		else if (strcmp(opt->name, "delivery") == 0)
			queued = strcmp(defGetString(def), "queue") == 0;
		else if (strcmp(opt->name, "read_endpoint") == 0)
			has_read_endpoint = true;
		else if (strcmp(opt->name, "on_conflict") == 0)
			upsert = strcmp(defGetString(def), "error") != 0;
	}
	if (catalog == ForeignTableRelationId)
		check_on_conflict(endpoint, upsert, batch);
	check_read_combination(endpoint, method, has_read_endpoint, queued);
	if (batch && queued)
		refuse_queued_batch();

	if (endpoint && endpoint[0] != '/')
		check_template_combination(endpoint, method, format);

	if (batch && format && strcmp(format, "form") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("batch_mode cannot be used with format 'form'"),
				 errdetail("A form body has no way to hold several rows."),
				 errhint("Use format 'json' or 'xml' for batches, or turn batch_mode off.")));
	if (batch && endpoint && strchr(endpoint, '{'))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("batch_mode cannot be used with an endpoint that has placeholders"),
				 errdetail("All rows of a batch go to one URL.")));

	if (has_domain && has_base_url)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"domain\" and \"base_url\" cannot both be set"),
				 errhint("Use domain for a Confluence Cloud site, base_url for anything else.")));
	check_client_credentials(has_client_id, has_client_secret, has_scope,
							 has_username, has_api_token, has_bearer);
	check_gateway_combination(has_domain, has_base_url, has_cloud_id, has_api_gateway,
							  api_gateway, has_gateway_url);
	if (has_bearer && (has_username || has_api_token))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("option \"bearer_token\" cannot be combined with \"username\" or \"api_token\""),
				 errhint("Use username and api_token for Basic authentication, or bearer_token alone.")));
	if (has_username != has_api_token)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("options \"username\" and \"api_token\" must be set together")));

	PG_RETURN_VOID();
}

/*
 * Split "a.b.c" into a List of String nodes; "." gives NIL (the whole body).
 */
List *
cfdw_split_path(const char *dotted)
{
	List	   *result = NIL;
	char	   *copy;
	char	   *seg;
	char	   *next;

	if (strcmp(dotted, ".") == 0)
		return NIL;
	copy = pstrdup(dotted);
	for (seg = copy; seg; seg = next)
	{
		next = strchr(seg, '.');
		if (next)
			*next++ = '\0';
		result = lappend(result, makeString(seg));
	}
	return result;
}

/* space_id -> spaceId: the default field name of a column. */
char *
cfdw_camel_case(const char *name)
{
	StringInfoData buf;
	bool		upper = false;
	const char *p;

	initStringInfo(&buf);
	for (p = name; *p; p++)
	{
		if (*p == '_' && buf.len > 0)
		{
			upper = true;
			continue;
		}
		if (upper && *p >= 'a' && *p <= 'z')
			appendStringInfoChar(&buf, *p - 'a' + 'A');
		else
			appendStringInfoChar(&buf, *p);
		upper = false;
	}
	return buf.data;
}

/*
 * A boolean option as the validator accepts it (parse_bool: true, yes, on,
 * 1, and so on); defGetBoolean would refuse some of those at run time.
 */
bool
cfdw_option_bool(DefElem *def)
{
	bool		result = false;

	if (!parse_bool(defGetString(def), &result))
		invalid_value(def->defname, defGetString(def), "Use true or false.");
	return result;
}

static int
option_ms(const char *name, const char *value)
{
	int64		n;

	if (!parse_count(value, INT_MAX, &n))
		invalid_value(name, value, NULL);
	return (int) n;
}

/*
 * cfdw_server_problem
 *		Why requests cannot be sent with this server and user mapping (no
 *		address, no credentials), or NULL when they can.  *hint says what to
 *		do.  confluence_fdw.test_connection answers with it; INSERT raises it.
 */
char *
cfdw_server_problem(ForeignServer *server, UserMapping *um, const char **hint)
{
	ListCell   *lc;
	bool		has_address = false;
	bool		has_user = false,
				has_token = false,
				has_bearer = false,
				has_client = false;

	foreach(lc, server->options)
	{
		const char *name = ((DefElem *) lfirst(lc))->defname;

		has_address |= strcmp(name, "domain") == 0 || strcmp(name, "base_url") == 0 ||
			strcmp(name, "cloud_id") == 0;
	}
	if (!has_address)
	{
		*hint = psprintf("ALTER SERVER %s OPTIONS (ADD domain 'yoursite.atlassian.net').",
						 quote_identifier(server->servername));
		return psprintf("server \"%s\" has neither a \"domain\" nor a \"base_url\" option",
						server->servername);
	}

	foreach(lc, um->options)
	{
		const char *name = ((DefElem *) lfirst(lc))->defname;

		has_user |= strcmp(name, "username") == 0;
		has_token |= strcmp(name, "api_token") == 0;
		has_bearer |= strcmp(name, "bearer_token") == 0;
		/* the validator lets client_id in only with client_secret */
		has_client |= strcmp(name, "client_id") == 0;
	}
	/* No token, no request: there is no ambient identity to fall back on. */
	if (!has_bearer && !(has_user && has_token) && !has_client)
	{
		*hint = "Set username and api_token, bearer_token, or client_id and client_secret (a service account's OAuth 2.0 credential) in the user mapping.";
		return psprintf("user mapping for server \"%s\" has no credentials",
						server->servername);
	}
	return NULL;
}

/* The site a server names: "https://domain" or base_url, or NULL. */
static char *
site_base(List *server_options)
{
	ListCell   *lc;
	const char *domain = NULL;
	const char *base_url = NULL;

	foreach(lc, server_options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "domain") == 0)
			domain = defGetString(def);
		else if (strcmp(def->defname, "base_url") == 0)
			base_url = defGetString(def);
	}
	if (base_url)
	{
		size_t		len = strlen(base_url);

		while (len > 0 && base_url[len - 1] == '/')
			len--;
		return pnstrdup(base_url, len);
	}
	if (domain)
		return psprintf("https://%s", domain);
	return NULL;
}

/*
 * OAuth client credentials fetch their access token from token_url, or
 * from Atlassian Cloud's by default; the client secret goes there, so its
 * host is held to the same egress rules as the server's own.  Without
 * client credentials there is no token_url to use.
 */
static void
resolve_token_url(CfdwTable *t)
{
	if (t->site.client_id == NULL)
	{
		t->site.token_url = NULL;
		return;
	}
	if (t->site.token_url == NULL)
		t->site.token_url = CFDW_DEFAULT_TOKEN_URL;
	if (t->site.restricted)
		check_egress_host(NULL, url_host(t->site.token_url), true, t->servername);
	cfdw_oauth_resolve(&t->site);
}

/*
 * Where a server's requests go, before the path: "https://domain", or
 * base_url in one canonical form, without trailing '/' (the path adds its
 * own); through the gateway, {gateway}/ex/confluence/{cloudId}, with
 * "{cloudId}" for one api_gateway has not looked up yet in this backend
 * (this is for EXPLAIN and planning, which send nothing).  NULL when the
 * server has no address.
 */
static char *
server_base(ForeignServer *server)
{
	char	   *gateway = cfdw_gateway_base(server, NULL);

	return gateway ? gateway : site_base(server->options);
}

/*
 * cfdw_resolve_server
 *		Fill the server and user-mapping part of a CfdwTable.
 */
void
cfdw_resolve_server(CfdwTable *t, ForeignServer *server, UserMapping *um)
{
	ListCell   *lc;
	const char *hint;
	char	   *problem = cfdw_server_problem(server, um, &hint);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("%s", problem),
				 errhint("%s", hint)));

	t->site.config_id = cfdw_next_config_id();
	t->site.serverid = server->serverid;
	t->servername = pstrdup(server->servername);
	t->site.umid = um->umid;
	t->site.timeout_ms = CFDW_DEFAULT_TIMEOUT_MS;
	t->site.connect_timeout_ms = CFDW_DEFAULT_CONNECT_TIMEOUT_MS;
	t->site.max_response_bytes = CFDW_DEFAULT_MAX_RESPONSE_BYTES;
	t->site.keep_connections = true;
	t->max_retries = CFDW_DEFAULT_MAX_RETRIES;
	t->max_retry_wait_ms = CFDW_DEFAULT_MAX_RETRY_WAIT_MS;
	t->max_concurrency = CFDW_DEFAULT_MAX_CONCURRENCY;

	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		char	   *v = defGetString(def);

		if (strcmp(def->defname, "timeout_ms") == 0)
			t->site.timeout_ms = option_ms(def->defname, v);
		else if (strcmp(def->defname, "connect_timeout_ms") == 0)
			t->site.connect_timeout_ms = option_ms(def->defname, v);
		else if (strcmp(def->defname, "max_response_bytes") == 0)
		{
			int64		n;

			if (!parse_count(v, MaxAllocSize, &n))
				invalid_value(def->defname, v, NULL);
			t->site.max_response_bytes = n;
		}
		else if (strcmp(def->defname, "keep_connections") == 0)
			t->site.keep_connections = cfdw_option_bool(def);
		else if (strcmp(def->defname, "max_retries") == 0)
			t->max_retries = option_ms(def->defname, v);
		else if (strcmp(def->defname, "max_retry_wait_ms") == 0)
			t->max_retry_wait_ms = option_ms(def->defname, v);
		else if (strcmp(def->defname, "max_concurrency") == 0)
			t->max_concurrency = option_ms(def->defname, v);
		else if (strcmp(def->defname, "ca_file") == 0)
			t->site.ca_file = v;
		else if (strcmp(def->defname, "proxy") == 0)
			t->site.proxy = v;
		else if (strcmp(def->defname, "delivery") == 0)
			t->queued = strcmp(v, "queue") == 0;	/* the tables' default */
		else if (strcmp(def->defname, "token_url") == 0)
			t->site.token_url = v;
		else if (strcmp(def->defname, "max_rate") == 0 &&
				 !parse_rate(v, &t->site.max_rate))
			invalid_value(def->defname, v, NULL);
	}

	/* checked again here: the setting may have changed since */
	t->site.restricted = !superuser_arg(server->owner);
	t->base = site_base(server->options);
	if (t->site.restricted && t->base)
		check_egress_host(NULL, url_host(t->base), true, t->servername);

	/* through the gateway: the site is asked for its cloudId, if need be */
	{
		char	   *gateway = cfdw_gateway_base(server, t);

		if (gateway)
		{
			t->base = gateway;
			if (t->site.restricted)
				check_egress_host(NULL, url_host(t->base), true, t->servername);
		}
	}

	/*
	 * The site whose rate limit the requests share: the cloudId when the
	 * server knows it (a gateway base, cloud_id, or the one api_gateway
	 * looked up), else the host.
	 */
	t->site.rate_key = cfdw_rate_site_key(t->base, cfdw_server_cloud_id(server));
	/* a row waits its turn no longer than it may wait for a retry */
	t->site.pace_max_wait_ms = t->max_retry_wait_ms;

	foreach(lc, um->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "username") == 0)
			t->site.username = defGetString(def);
		else if (strcmp(def->defname, "api_token") == 0)
			t->site.api_token = defGetString(def);
		else if (strcmp(def->defname, "bearer_token") == 0)
			t->site.bearer_token = defGetString(def);
		else if (strcmp(def->defname, "client_id") == 0)
			t->site.client_id = defGetString(def);
		else if (strcmp(def->defname, "client_secret") == 0)
			t->site.client_secret = defGetString(def);
		else if (strcmp(def->defname, "scope") == 0)
			t->site.scope = defGetString(def);
	}
	resolve_token_url(t);

}

/*
 * A column's own options.  A column is sent or filled from the answer,
 * never both, so field and response_field together are refused.
 */
static void
read_column_options(const CfdwTable *t, CfdwColumn *col,
					char **field, char **response_field, bool *send)
{
	ListCell   *lc;

	foreach(lc, GetForeignColumnOptions(t->relid, col->attnum))
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "field") == 0)
			*field = defGetString(def);
		else if (strcmp(def->defname, "response_field") == 0)
			*response_field = defGetString(def);
		else if (strcmp(def->defname, "send") == 0)
			*send = cfdw_option_bool(def);
		else if (strcmp(def->defname, "representation") == 0)
			col->representation = defGetString(def);
	}

	if (*field && *response_field)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("column \"%s\" of foreign table \"%s\" has both \"field\" and \"response_field\"",
						col->name, t->relname),
				 errhint("A column is either sent in the request or filled from the response.")));
}

/*
 * The mapping of a column without field or response_field, by its name:
 * a template column's own (body -> body.value, ...), else the conventional
 * names of the README's "Column" options for hand-made tables.  Both stay NULL for a column
 * sent under its camel-cased name.
 */
static void
default_column_mapping(const CfdwTable *t, const CfdwColumn *col, Oid basetype,
					   char **field, char **response_field)
{
	const CfdwTemplateColumn *tcol;

	tcol = t->template ? cfdw_template_column(t->template, col->name) : NULL;
	if (tcol)
	{
		*field = (char *) tcol->field;
		*response_field = (char *) tcol->response_field;
		if (*field || *response_field)
			return;
	}

	if (strcmp(col->name, "response") == 0 &&
		(basetype == JSONOID || basetype == JSONBOID))
		*response_field = ".";
	else if (strcmp(col->name, "http_status") == 0 &&
			 (basetype == INT4OID || basetype == INT2OID || basetype == INT8OID))
		*response_field = "$status";
}

/* A column filled from the answer: what it reads and its input function. */
static void
resolve_response_column(CfdwColumn *col, const char *response_field,
						Oid basetype)
{
	Oid			infunc;

	col->send = false;
	col->response_field = pstrdup(response_field);
	if (strcmp(response_field, "$status") == 0)
		col->resp = CFDW_RESP_STATUS;
	else if (strcmp(response_field, "$queue_id") == 0)
		col->resp = CFDW_RESP_QUEUE_ID;
	else if (strcmp(response_field, "$action") == 0)
		col->resp = CFDW_RESP_ACTION;
	else if (strcmp(response_field, ".") == 0)
		col->resp = CFDW_RESP_WHOLE;
	else
	{
		col->resp = CFDW_RESP_PATH;
		col->response_path = cfdw_split_path(response_field);
	}
	getTypeInputInfo(col->typid, &infunc, &col->typioparam);
	fmgr_info(infunc, &col->infunc);
	col->is_json = (basetype == JSONOID || basetype == JSONBOID);
}

/* How a value of this (base) type is written into a JSON body. */
static CfdwValueKind
value_kind(Oid basetype)
{
	switch (basetype)
	{
		case BOOLOID:
			return CFDW_VALUE_BOOL;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
			return CFDW_VALUE_NUMBER;
		case JSONOID:
		case JSONBOID:
			return CFDW_VALUE_JSON;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* to_json() writes ISO 8601 ("2026-01-02T03:04:05+00:00") */
			return CFDW_VALUE_TO_JSON;
	}
	if (type_is_array(basetype) || type_is_rowtype(basetype))
		return CFDW_VALUE_TO_JSON;
	return CFDW_VALUE_STRING;
}

/* The function that turns a sent column's value into text or JSON. */
static void
set_output_function(CfdwColumn *col)
{
	Oid			outfunc;
	bool		isvarlena;

	if (col->kind == CFDW_VALUE_TO_JSON)
	{
		/*
		 * to_json() is polymorphic: it finds its argument's type through the
		 * call expression, so give it one.
		 */
		FuncExpr   *expr;

		expr = makeFuncExpr(F_TO_JSON, JSONOID,
							list_make1(makeNullConst(col->typid, col->typmod, InvalidOid)),
							InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		fmgr_info(F_TO_JSON, &col->outfunc);
		fmgr_info_set_expr((Node *) expr, &col->outfunc);
	}
	else
	{
		getTypeOutputInfo(col->typid, &outfunc, &isvarlena);
		fmgr_info(outfunc, &col->outfunc);
	}
}

/*
 * A column sent in the request: its field (by default its name in
 * camelCase), how its value is written and the function that writes it.
 */
static void
resolve_request_column(const CfdwTable *t, CfdwColumn *col, const char *field,
					   bool send, Oid basetype)
{
	col->resp = CFDW_RESP_NONE;
	col->send = send;
	col->field = field ? pstrdup(field) : cfdw_camel_case(col->name);
	col->field_path = cfdw_split_path(col->field);

	/* field '.' merges the value into the body: only an object can be */
	if (col->field_path == NIL && basetype != JSONOID && basetype != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("column \"%s\" of foreign table \"%s\" has field '.' but is not of type json or jsonb",
						col->name, t->relname),
				 errhint("Only a json object can be merged into the request body.")));

	col->kind = value_kind(basetype);
	set_output_function(col);
}

/*
 * Where SELECT finds a column's value in a listed item: a response column
 * where the answer has it, a request column at its field (as the template
 * reads it back); field '.' is the whole item.  Every column is filled by
 * its type's input function then.
 */
static void
resolve_read_mapping(const CfdwTable *t, CfdwColumn *col, Oid basetype)
{
	if (col->resp == CFDW_RESP_NONE)
	{
		Oid			infunc;

		col->read = col->field_path == NIL ? CFDW_RESP_WHOLE : CFDW_RESP_PATH;
		col->read_field = pstrdup(cfdw_template_read_field(t->template, col->field));
		getTypeInputInfo(col->typid, &infunc, &col->typioparam);
		fmgr_info(infunc, &col->infunc);
		col->is_json = (basetype == JSONOID || basetype == JSONBOID);
	}
	else
	{
		/* $queue_id and $action are no part of an item: NULL on read */
		col->read = (col->resp == CFDW_RESP_QUEUE_ID || col->resp == CFDW_RESP_ACTION) ?
			CFDW_RESP_NONE : col->resp;
		col->read_field = col->response_field;
	}
	col->read_path = col->read == CFDW_RESP_PATH ? cfdw_split_path(col->read_field) : NIL;
}

/*
 * Resolve one column: its request field or response path, and the functions
 * that convert its values.
 */
static void
resolve_column(CfdwTable *t, CfdwColumn *col, Form_pg_attribute attr)
{
	char	   *field = NULL;
	char	   *response_field = NULL;
	bool		send = true;
	Oid			basetype;

	col->attnum = attr->attnum;
	col->name = pstrdup(NameStr(attr->attname));
	col->typid = attr->atttypid;
	col->typmod = attr->atttypmod;

	read_column_options(t, col, &field, &response_field, &send);
	basetype = getBaseType(col->typid);
	if (field == NULL && response_field == NULL)
		default_column_mapping(t, col, basetype, &field, &response_field);

	if (response_field)
		resolve_response_column(col, response_field, basetype);
	else
		resolve_request_column(t, col, field, send, basetype);
	resolve_read_mapping(t, col, basetype);
}

/*
 * Request fields of two columns must not collide: "body" and "body.value"
 * would ask for a string and an object at one place.
 */
static void
check_field_conflicts(const CfdwTable *t)
{
	int			i,
				j;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *a = &t->columns[i];

		if (!a->send || a->field_path == NIL)
			continue;
		for (j = i + 1; j < t->ncolumns; j++)
		{
			const CfdwColumn *b = &t->columns[j];
			const char *fa = a->field;
			const char *fb = b->field;
			size_t		la,
						lb;

			/* a response column has no field: measure only sent ones */
			if (!b->send || b->field_path == NIL)
				continue;
			la = strlen(fa);
			lb = strlen(fb);
			if (strcmp(fa, fb) == 0 ||
				(la < lb && strncmp(fa, fb, la) == 0 && fb[la] == '.') ||
				(lb < la && strncmp(fa, fb, lb) == 0 && fa[lb] == '.'))
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
						 errmsg("columns \"%s\" and \"%s\" of foreign table \"%s\" write to the same request field (\"%s\", \"%s\")",
								a->name, b->name, t->relname, fa, fb),
						 errhint("Give one of them another \"field\" option, or send 'false'.")));
		}
	}
}

/* cfdw_headers_parse callback: keep "Name: value" for libcurl. */
static void
collect_header(void *arg, const char *name, size_t namelen, const char *value,
			   size_t valuelen)
{
	CfdwTable  *t = (CfdwTable *) arg;

	/* libcurl removes a header given as "Name:"; "Name;" sends it empty */
	if (valuelen == 0)
		t->site.headers = lappend(t->site.headers,
							 makeString(psprintf("%.*s;", (int) namelen, name)));
	else
		t->site.headers = lappend(t->site.headers,
							 makeString(psprintf("%.*s: %.*s", (int) namelen, name,
												 (int) valuelen, value)));
}

/*
 * The endpoint and method options, all that says where a table's rows go.
 * *method is set only by a valid method option; the result says whether
 * there was one.
 */
static bool
read_table_target(List *options, char **endpoint, CfdwMethod *method)
{
	ListCell   *lc;
	bool		has_method = false;

	*endpoint = NULL;
	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "endpoint") == 0)
			*endpoint = defGetString(def);
		else if (strcmp(def->defname, "method") == 0)
			has_method = cfdw_parse_method(defGetString(def), method);
	}
	return has_method;
}

/*
 * Where a request for an endpoint goes: a template brings its path and
 * method; a manual path is its own and defaults to POST.  The method option
 * overrides either (for a template the validator allows only its own).
 */
static const CfdwTemplate *
request_target(const char *endpoint, bool has_method, CfdwMethod *method,
			   const char **path)
{
	const CfdwTemplate *tmpl = cfdw_find_template(endpoint);

	*path = tmpl ? tmpl->path : endpoint;
	if (!has_method)
		*method = tmpl ? tmpl->method : CFDW_POST;
	return tmpl;
}

/*
 * The table options other than endpoint and method, over the defaults.
 * headers is parsed later and max_concurrency applied after the server's,
 * so those two are handed back as written.
 */
static void
read_table_options(CfdwTable *t, List *options, const char **headers,
				   int *table_delivery, int *table_concurrency)
{
	ListCell   *lc;

	t->representation = pstrdup(cfdw_default_representation());
	t->format = CFDW_FORMAT_JSON;
	t->content_type = format_content_type(t->format);
	t->batch_size = CFDW_DEFAULT_BATCH_SIZE;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "representation") == 0)
			t->representation = defGetString(def);
		else if (strcmp(def->defname, "format") == 0)
		{
			if (parse_format(defGetString(def), &t->format))
				t->content_type = format_content_type(t->format);
		}
		else if (strcmp(def->defname, "headers") == 0)
			*headers = defGetString(def);
		else if (strcmp(def->defname, "batch_mode") == 0)
			t->batch_mode = cfdw_option_bool(def);
		else if (strcmp(def->defname, "batch_size") == 0)
			t->batch_size = option_ms(def->defname, defGetString(def));
		else if (strcmp(def->defname, "on_error") == 0)
			t->on_error_return = strcmp(defGetString(def), "return") == 0;
		else if (strcmp(def->defname, "max_concurrency") == 0)
			*table_concurrency = option_ms(def->defname, defGetString(def));
		else if (strcmp(def->defname, "delivery") == 0)
			*table_delivery = strcmp(defGetString(def), "queue") == 0;
		else if (strcmp(def->defname, "read_endpoint") == 0)
			t->read_path = defGetString(def);
		else if (strcmp(def->defname, "on_conflict") == 0)
			t->on_conflict = strcmp(defGetString(def), "update") == 0 ? CFDW_CONFLICT_UPDATE :
				strcmp(defGetString(def), "skip") == 0 ? CFDW_CONFLICT_SKIP : CFDW_CONFLICT_ERROR;
	}
}

/* The headers option as the "Name: value" lines libcurl sends. */
static void
resolve_headers(CfdwTable *t, const char *headers)
{
	char		err[CFDW_ERRLEN];

	if (!cfdw_headers_parse(headers, collect_header, t, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"headers\" of foreign table \"%s\": %s",
						t->relname, err)));
}

/* The endpoint, which every table needs, and the method and path it gives. */
static void
resolve_endpoint(CfdwTable *t, List *options)
{
	bool		has_method = read_table_target(options, &t->endpoint, &t->method);
	const char *path;

	if (t->endpoint == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no \"endpoint\" option", t->relname),
				 errhint("Use a template name (%s) or a path such as /wiki/api/v2/pages.",
						 cfdw_template_names())));
	t->template = request_target(t->endpoint, has_method, &t->method, &path);
	t->path = pstrdup(path);

	/*
	 * What SELECT reads: a template's list, a manual table's read_endpoint,
	 * or the path of a manual table whose method is GET.
	 */
	if (t->template)
		t->read_path = (t->template->commands & (1 << CMD_SELECT)) ?
			pstrdup(t->template->list_path) : NULL;
	else if (t->read_path == NULL && t->method == CFDW_GET)
		t->read_path = t->path;
}

/* Every column that is not dropped, in attribute order. */
static void
resolve_columns(CfdwTable *t, TupleDesc tupdesc)
{
	int			i;

	t->columns = palloc0(sizeof(CfdwColumn) * tupdesc->natts);
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(tupdesc, i);

		if (attr->attisdropped)
			continue;
		resolve_column(t, &t->columns[t->ncolumns++], attr);
	}
	check_field_conflicts(t);
}

/*
 * On a template, the body column's representation option is what the
 * table's says: the representation of rows that name none themselves.
 */
static void
apply_body_representation(CfdwTable *t)
{
	if (t->template == NULL)
		return;
	for (int i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (col->representation && col->send && col->field &&
			strcmp(col->field, "body.value") == 0)
			t->representation = pstrdup(col->representation);
	}
}

/* The table's own options and its columns: all that needs no server. */
static void
resolve_shape(CfdwTable *t, Relation rel, ForeignTable *table, const char **headers,
			  int *table_delivery, int *table_concurrency)
{
	t->relid = RelationGetRelid(rel);
	t->relname = pstrdup(RelationGetRelationName(rel));
	read_table_options(t, table->options, headers, table_delivery, table_concurrency);
	resolve_endpoint(t, table->options);
	resolve_columns(t, RelationGetDescr(rel));
	apply_body_representation(t);
}

/*
 * cfdw_resolve_shape
 *		What the planner needs of a foreign table: its endpoint, what it can
 *		read and its columns, with the server's base URL for EXPLAIN.  No
 *		user mapping is read: planning needs no credential.
 */
CfdwTable *
cfdw_resolve_shape(Relation rel)
{
	CfdwTable  *t = palloc0(sizeof(CfdwTable));
	ForeignTable *table = GetForeignTable(RelationGetRelid(rel));
	const char *headers = NULL;
	int			table_concurrency = 0;
	int			table_delivery = -1;

	resolve_shape(t, rel, table, &headers, &table_delivery, &table_concurrency);
	t->base = server_base(GetForeignServer(table->serverid));
	if (t->base == NULL)
		t->base = "";
	return t;
}

/* The user mapping that would be used (the role's, else PUBLIC), or InvalidOid. */
Oid
cfdw_find_user_mapping(Oid userid, Oid serverid)
{
	HeapTuple	tp;
	Oid			umid = InvalidOid;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(serverid));
	if (HeapTupleIsValid(tp))
	{
		umid = ((Form_pg_user_mapping) GETSTRUCT(tp))->oid;
		ReleaseSysCache(tp);
	}
	return umid;
}

/*
 * The user mapping a request of userid's uses.  GetUserMapping's own error
 * when there is none differs between majors (17 names the server); this one
 * names both and says what to do.
 */
UserMapping *
cfdw_user_mapping(Oid userid, ForeignServer *server)
{
	if (!OidIsValid(cfdw_find_user_mapping(userid, server->serverid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("user mapping not found for user \"%s\", server \"%s\"",
						GetUserNameFromId(userid, false), server->servername),
				 errhint("CREATE USER MAPPING FOR %s SERVER %s OPTIONS (username '...', api_token '...')",
						 quote_identifier(GetUserNameFromId(userid, false)),
						 quote_identifier(server->servername))));
	return GetUserMapping(userid, server->serverid);
}

/*
 * cfdw_resolve_table
 *		Resolve everything needed to send rows of a foreign table, for the
 *		given user.  Allocates in the current memory context.
 */
CfdwTable *
cfdw_resolve_table(Relation rel, Oid userid)
{
	CfdwTable  *t = palloc0(sizeof(CfdwTable));
	ForeignTable *table = GetForeignTable(RelationGetRelid(rel));
	ForeignServer *server = GetForeignServer(table->serverid);
	UserMapping *um;
	const char *headers = NULL;
	int			table_concurrency = 0;
	int			table_delivery = -1;

	resolve_shape(t, rel, table, &headers, &table_delivery, &table_concurrency);
	if (headers)
		resolve_headers(t, headers);

	um = cfdw_user_mapping(userid, server);
	cfdw_resolve_server(t, server, um);
	if (table_concurrency > 0)
		t->max_concurrency = table_concurrency;	/* the table's overrides */
	if (table_delivery >= 0)
		t->queued = table_delivery;
	if (t->queued && t->batch_mode)
		refuse_queued_batch();	/* delivery 'queue' from the server */
	cfdw_compile_url(t);

	return t;
}

/* A table's on_conflict when it upserts ('update' or 'skip'), else NULL. */
static const char *
upsert_option(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, "on_conflict") == 0 &&
			strcmp(defGetString(def), "error") != 0)
			return defGetString(def);
	}
	return NULL;
}

/*
 * cfdw_describe_request
 *		"METHOD URL-template" of a foreign table for EXPLAIN, from its options
 *		and its server's, as cfdw_resolve_table would send it.  It never reads
 *		the user mapping: EXPLAIN needs no credential.
 */
char *
cfdw_describe_request(Oid relid, CmdType operation)
{
	ForeignTable *table = GetForeignTable(relid);
	const char *base = server_base(GetForeignServer(table->serverid));
	char	   *endpoint;
	CfdwMethod	method = CFDW_POST;
	bool		has_method = read_table_target(table->options, &endpoint, &method);
	const char *path;
	const CfdwTemplate *tmpl;

	if (base == NULL)
		base = "";
	if (endpoint == NULL)
		return psprintf("%s %s (no endpoint)", cfdw_method_name(method), base);
	tmpl = request_target(endpoint, has_method, &method, &path);
	/* UPDATE and DELETE go to the object the row was read from */
	if (tmpl && operation == CMD_UPDATE)
		return psprintf("PUT %s%s", base, tmpl->item_path);
	if (tmpl && operation == CMD_DELETE)
		return psprintf("DELETE %s%s", base, tmpl->item_path);
	if (tmpl && upsert_option(table->options))
		return psprintf("GET %s%s?space-id=?&title=?, then POST %s%s or PUT %s%s (on_conflict '%s')",
						base, tmpl->list_path, base, path, base, tmpl->item_path,
						upsert_option(table->options));
	return psprintf("%s %s%s", cfdw_method_name(method), base, path);
}

/*
 * cfdw_table_batch_size
 *		Rows per request of a foreign table by its options alone (EXPLAIN
 *		without ANALYZE has no resolved table): batch_size in batch_mode,
 *		else 1.  Parsed as cfdw_resolve_table parses them.
 */
int
cfdw_table_batch_size(Oid relid)
{
	bool		batch_mode = false;
	int			batch_size = CFDW_DEFAULT_BATCH_SIZE;
	ListCell   *lc;

	foreach(lc, GetForeignTable(relid)->options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, "batch_mode") == 0)
			batch_mode = cfdw_option_bool(def);
		else if (strcmp(def->defname, "batch_size") == 0)
			batch_size = option_ms(def->defname, defGetString(def));
	}
	return batch_mode ? batch_size : 1;
}
