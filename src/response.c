/*-------------------------------------------------------------------------
 *
 * response.c
 *		  A Confluence answer to RETURNING values, and Confluence's errors to
 *		  PostgreSQL errors.
 *
 * The answer is parsed with PostgreSQL's jsonb parser, and response columns
 * are filled with the column type's input function from the text at their
 * path, so any type that can read the value works (text,
 * integer, timestamptz, jsonb, a domain...).  A path that is missing gives
 * NULL: Confluence marks no response field as required.
 *
 * IDENTIFICATION
 *		  src/response.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "confluence_fdw.h"

/* Names the column and path being converted when an input function fails. */
typedef struct ConversionContext
{
	const CfdwTable *table;
	const CfdwColumn *column;
} ConversionContext;

static void
conversion_error_callback(void *arg)
{
	ConversionContext *cc = (ConversionContext *) arg;

	errcontext("response column \"%s\" of foreign table \"%s\", response field \"%s\"",
			   cc->column->name, cc->table->relname, cc->column->response_field);
}

/*
 * Text from Confluence (UTF-8) in the database encoding, or NULL when it is
 * not valid UTF-8 or has a character the database encoding lacks (an emoji
 * in a LATIN1 database).  Never an error: the request was answered and may
 * have been processed, and failing the statement would invite a rerun and
 * a duplicate.
 */
static char *
from_utf8(const char *s, size_t len)
{
	int			enc = GetDatabaseEncoding();
	Oid			proc;
	unsigned char *out;
	int			done;

	if (len > (size_t) (MaxAllocSize / MAX_CONVERSION_GROWTH - 1) ||
		!pg_verify_mbstr(PG_UTF8, s, (int) len, true))
		return NULL;
	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return pnstrdup(s, len);
	proc = FindDefaultConversionProc(PG_UTF8, enc);
	if (!OidIsValid(proc))
		return NULL;
	out = palloc(len * MAX_CONVERSION_GROWTH + 1);
	done = pg_do_encoding_conversion_buf(proc, PG_UTF8, enc,
										 (unsigned char *) unconstify(char *, s), (int) len,
										 out, (int) (len * MAX_CONVERSION_GROWTH + 1), true);
	if (done < (int) len)
	{
		pfree(out);
		return NULL;
	}
	return (char *) out;
}

/*
 * The answer as jsonb, or NULL when it is not JSON.  PostgreSQL's own
 * parser keeps numbers exact (a 64-bit id stays digit for digit) and gives
 * the whole-body jsonb column for free.  PostgreSQL 15 has no soft-error
 * input functions, so the text is validated first without raising.
 */
static Jsonb *
parse_answer(const char *text, size_t len)
{
	JsonLexContext *lex;

	lex = makeJsonLexContextCstringLen(unconstify(char *, text), (int) len,
									   GetDatabaseEncoding(), false);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return NULL;
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
}

/* The value at a dotted path, as text for the column's input function. */
static char *
text_at_path(Jsonb *jb, List *path)
{
	JsonbContainer *container = &jb->root;
	JsonbValue	v;
	JsonbValue *found = NULL;
	ListCell   *lc;

	if (JB_ROOT_IS_SCALAR(jb))
		return NULL;
	foreach(lc, path)
	{
		const char *key = strVal(lfirst(lc));

		if (found != NULL)
		{
			if (found->type != jbvBinary || !JsonContainerIsObject(found->val.binary.data))
				return NULL;
			container = found->val.binary.data;
		}
		else if (!JsonContainerIsObject(container))
			return NULL;
		found = getKeyJsonValueFromContainer(container, key, strlen(key), &v);
		if (found == NULL)
			return NULL;
	}
	if (found == NULL)
		return NULL;

	switch (found->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(found->val.string.val, found->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(found->val.numeric)));
		case jbvBool:
			return pstrdup(found->val.boolean ? "true" : "false");
		case jbvBinary:
			/* objects and arrays: their JSON text */
			return JsonbToCString(NULL, found->val.binary.data, found->val.binary.len);
		default:
			return NULL;
	}
}

/*
 * cfdw_fill_response
 *		Overwrite the response columns of a row (values/isnull in attribute
 *		order) from an answer.  Request columns are left as they were sent.
 */
void
cfdw_fill_response(const CfdwTable *t, const CfdwResponse *resp,
				   Datum *values, bool *isnull)
{
	char	   *body = NULL;
	Jsonb	   *jb = NULL;
	bool		parsed = false;
	bool		warned = false;
	bool		converted = false;
	ConversionContext cc;
	ErrorContextCallback errcb;
	int			i;

	cc.table = t;
	errcb.callback = conversion_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		char	   *text = NULL;
		int			att = col->attnum - 1;

		if (col->resp == CFDW_RESP_NONE)
			continue;
		cc.column = col;

		if (col->resp != CFDW_RESP_STATUS && !converted && resp->body_len > 0)
		{
			body = from_utf8(resp->body, resp->body_len);
			converted = true;
			if (body == NULL)
				ereport(WARNING,
						(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
						 errmsg("Confluence answered HTTP %ld with text that cannot be shown in the database encoding %s; the response columns are NULL",
								resp->status, GetDatabaseEncodingName()),
						 errdetail("The request was answered and may have been processed; it is not sent again."),
						 errhint("A UTF-8 database can hold every answer.")));
		}

		switch (col->resp)
		{
			case CFDW_RESP_STATUS:
				text = psprintf("%ld", resp->status);
				break;
			case CFDW_RESP_WHOLE:
				if (body != NULL && col->is_json)
				{
					/* parsed once for the paths and this column alike */
					if (!parsed)
						jb = parse_answer(body, strlen(body));
					parsed = true;
					if (jb != NULL && col->typid == JSONBOID)
					{
						values[att] = JsonbPGetDatum(jb);
						isnull[att] = false;
						continue;
					}
					if (jb == NULL)
					{
						/*
						 * The request was answered (and maybe processed):
						 * failing the statement now would invite a rerun and
						 * a duplicate.  Keep going, and say so.
						 */
						if (!warned)
							ereport(WARNING,
									(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
									 errmsg("Confluence answered HTTP %ld with a body that is not JSON; column \"%s\" is NULL",
											resp->status, col->name),
									 errdetail("Content-Type: %s.",
											   resp->content_type[0] ? resp->content_type : "none"),
									 errhint("A text column with response_field '.' keeps any answer.")));
						warned = true;
						break;
					}
				}
				text = body;
				break;
			case CFDW_RESP_PATH:
				if (!parsed && body != NULL)
					jb = parse_answer(body, strlen(body));
				parsed = true;
				/* a non-JSON answer leaves path columns NULL */
				if (jb != NULL)
					text = text_at_path(jb, col->response_path);
				break;
			case CFDW_RESP_NONE:
				break;
		}

		/* Input functions run for NULL too, so that domains are enforced. */
		values[att] = InputFunctionCall(unconstify(FmgrInfo *, &col->infunc), text,
										col->typioparam, col->typmod);
		isnull[att] = (text == NULL);
	}

	error_context_stack = errcb.previous;
}

/*
 * Up to max bytes of a response body, safe to put in a message: valid UTF-8
 * sequences when the database is UTF-8, printable ASCII otherwise, and '?'
 * for anything else.
 */
static char *
printable_excerpt(const char *body, size_t len, size_t max)
{
	StringInfoData buf;
	size_t		i = 0;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;

	initStringInfo(&buf);
	while (i < len && (size_t) buf.len < max)
	{
		unsigned char ch = (unsigned char) body[i];

		if (ch >= 0x20 && ch < 0x7f)
		{
			appendStringInfoChar(&buf, ch);
			i++;
		}
		else if (ch == '\n' || ch == '\r' || ch == '\t')
		{
			appendStringInfoChar(&buf, ' ');
			i++;
		}
		else if (ch >= 0x80 && utf8)
		{
			int			l = pg_utf_mblen((const unsigned char *) body + i);

			if (i + l <= len && pg_utf8_islegal((const unsigned char *) body + i, l))
			{
				appendBinaryStringInfo(&buf, body + i, l);
				i += l;
			}
			else
			{
				appendStringInfoChar(&buf, '?');
				i++;
			}
		}
		else
		{
			appendStringInfoChar(&buf, '?');
			i++;
		}
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

static const char *
json_string(cJSON *obj, const char *name)
{
	cJSON	   *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

/*
 * cfdw_error_summary
 *		Confluence's own words for an error answer: "title: detail" of the
 *		first v2 error, a v1 "message", or NULL when the body says nothing
 *		readable.
 */
char *
cfdw_error_summary(const CfdwResponse *resp)
{
	cJSON	   *root;
	const char *title = NULL;
	const char *detail = NULL;

	if (resp->body_len == 0)
		return NULL;
	root = cfdw_json_parse_owned(resp->body, resp->body_len);
	if (root == NULL || !cJSON_IsObject(root))
		return NULL;

	{
		cJSON	   *errors = cJSON_GetObjectItemCaseSensitive(root, "errors");

		if (cJSON_IsArray(errors) && cJSON_GetArraySize(errors) > 0)
		{
			cJSON	   *first = cJSON_GetArrayItem(errors, 0);

			title = json_string(first, "title");
			detail = json_string(first, "detail");
			if (title == NULL)
				title = json_string(first, "code");
		}
	}
	if (title == NULL)
		title = json_string(root, "message");
	if (title == NULL)
		title = json_string(root, "title");
	if (title == NULL)
		title = json_string(root, "error");
	if (title == NULL)
		return NULL;

	if (detail && strcmp(detail, title) != 0)
		return printable_excerpt(psprintf("%s: %s", title, detail),
								 strlen(title) + strlen(detail) + 2, 500);
	return printable_excerpt(title, strlen(title), 500);
}

static const char *
reason_phrase(long status)
{
	switch (status)
	{
		case 400:
			return "Bad Request";
		case 401:
			return "Unauthorized";
		case 403:
			return "Forbidden";
		case 404:
			return "Not Found";
		case 405:
			return "Method Not Allowed";
		case 409:
			return "Conflict";
		case 413:
			return "Payload Too Large";
		case 415:
			return "Unsupported Media Type";
		case 429:
			return "Too Many Requests";
		case 500:
			return "Internal Server Error";
		case 502:
			return "Bad Gateway";
		case 503:
			return "Service Unavailable";
		case 504:
			return "Gateway Timeout";
	}
	return "HTTP error";
}

static char *
error_detail(const CfdwResponse *resp)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (resp->body_len > 0)
		appendStringInfo(&buf, "Response body: %s",
						 printable_excerpt(resp->body, resp->body_len, CFDW_ERROR_BODY_EXCERPT));
	else
		appendStringInfoString(&buf, "The response had no body.");
	if (resp->request_id[0])
		appendStringInfo(&buf, " Request id: %s.",
						 printable_excerpt(resp->request_id, strlen(resp->request_id), 128));
	return buf.data;
}

/*
 * cfdw_report_http_error
 *		Raise the error for an answer with status 300 or more.
 */
void
cfdw_report_http_error(const CfdwTable *t, const CfdwRequest *req,
					   const CfdwResponse *resp)
{
	char	   *summary = cfdw_error_summary(resp);
	const char *what = summary ? summary : reason_phrase(resp->status);
	int			sqlstate = ERRCODE_FDW_ERROR;
	char	   *hint = NULL;

	if (resp->status >= 300 && resp->status < 400)
	{
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Confluence answered %s %s with a redirect (HTTP %ld), which is not followed",
						cfdw_method_name(req->method), req->path_for_messages, resp->status),
				 resp->location[0] ? errdetail("Location: %s",
											   printable_excerpt(resp->location, strlen(resp->location), 300)) : 0,
				 errhint("Check the server's domain or base_url: requests go exactly there, and credentials are never sent to another address."),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
	}

	switch (resp->status)
	{
		case 401:
			sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			hint = psprintf("Check the credentials in the user mapping for server \"%s\": username and api_token (an Atlassian API token), or bearer_token.",
							t->servername);
			break;
		case 403:
			sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			hint = psprintf("The account of the user mapping for server \"%s\" lacks permission for this operation, or its token lacks the needed scope.",
							t->servername);
			break;
		case 404:
			hint = pstrdup("Confluence answers 404 both for a missing object and for one the account may not see.");
			break;
		case 409:
			if (req->method == CFDW_PUT)
				hint = pstrdup("To update a page, send version.number as its current version plus one.");
			break;
		case 413:
			hint = pstrdup("Confluence refuses request bodies over 5 MB.");
			break;
		case 429:
			hint = resp->retry_after[0]
				? psprintf("Confluence rate-limited the request; it asked to wait %s seconds. Raise max_retries or max_retry_wait_ms on the server to wait longer.",
						   printable_excerpt(resp->retry_after, strlen(resp->retry_after), 60))
				: pstrdup("Confluence rate-limited the request. Raise max_retries or max_retry_wait_ms on the server to wait longer.");
			break;
	}

	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("Confluence returned HTTP %ld: %s", resp->status, what),
			 errdetail_internal("%s", error_detail(resp)),
			 hint ? errhint("%s", hint) : 0,
			 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
}

/*
 * cfdw_transport_summary
 *		One line for a request that got no usable answer, for the Test
 *		function (cfdw_report_transport_error raises the same cases).
 */
char *
cfdw_transport_summary(const CfdwTable *t, const CfdwResponse *resp)
{
	switch (resp->curl_code)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
			return psprintf("could not resolve the host of %s: check the server's domain or base_url (%s)",
							t->base, resp->curl_error);
		case CURLE_COULDNT_CONNECT:
			return psprintf("could not connect to %s: %s", t->base, resp->curl_error);
		case CURLE_OPERATION_TIMEDOUT:
			return psprintf("no answer from %s within the timeouts: %s", t->base, resp->curl_error);
		default:
			return psprintf("request to %s failed: %s", t->base, resp->curl_error);
	}
}

/*
 * cfdw_report_transport_error
 *		Raise the error for a request that got no usable answer.
 */
void
cfdw_report_transport_error(const CfdwTable *t, const CfdwRequest *req,
							const CfdwResponse *resp)
{
	const char *sent = resp->sent_any
		? "The request may have been processed by Confluence; it was not resent."
		: "The request did not reach Confluence.";

	if (resp->too_large)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("response from Confluence exceeds max_response_bytes (%lld bytes)",
						(long long) t->max_response_bytes),
				 errdetail("%s", sent),
				 errhint("Raise max_response_bytes on server \"%s\".", t->servername),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));

	if (resp->egress_refused)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("server \"%s\" may not connect to the internal address %s",
						t->servername, resp->refused_address),
				 errdetail("The server belongs to a role that is not a superuser, and its host resolves to a loopback, link-local or private address. %s", sent),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
	if (resp->proxy_status >= 300)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("the proxy of server \"%s\" refused the connection with HTTP %ld",
						t->servername, resp->proxy_status),
				 errdetail("%s", sent),
				 errhint("Check the server's proxy option and what the proxy allows."),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));

	switch (resp->curl_code)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not resolve the host of server \"%s\"", t->servername),
					 errdetail("%s. %s", resp->curl_error, sent),
					 errhint("Check the server's domain or base_url."),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
		case CURLE_COULDNT_CONNECT:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("could not connect to server \"%s\"", t->servername),
					 errdetail("%s. %s", resp->curl_error, sent),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
		case CURLE_OPERATION_TIMEDOUT:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("request to server \"%s\" timed out", t->servername),
					 errdetail("%s. %s", resp->curl_error, sent),
					 errhint("The server's timeout_ms is %d and connect_timeout_ms is %d.",
							 t->timeout_ms, t->connect_timeout_ms),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_FAIL_REWIND:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_PARTIAL_FILE:
			/* SEND_FAIL_REWIND: a reused connection died after the request
			 * went out, and we refused to let libcurl send it again */
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("the connection to server \"%s\" was closed before Confluence answered", t->servername),
					 errdetail("%s. %s",
							   resp->curl_code == CURLE_SEND_FAIL_REWIND
							   ? "The kept-alive connection was closed after the request had gone out"
							   : resp->curl_error, sent),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CONNECT_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("TLS connection to server \"%s\" failed", t->servername),
					 errdetail("%s. %s", resp->curl_error, sent),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
					 errmsg("request to server \"%s\" failed: %s", t->servername,
							curl_easy_strerror((CURLcode) resp->curl_code)),
					 errdetail("%s. %s", resp->curl_error, sent),
					 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
			break;
	}
}
