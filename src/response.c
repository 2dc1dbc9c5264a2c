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

#include <ctype.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "confluence_fdw.h"
#include "pure.h"

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

/* ---------------------------------------------------------------------
 * An answer as text and as jsonb, without raising
 *
 * PostgreSQL 15's jsonb_in refuses JSON that its own parser accepts without
 * de-escaping (the check used first): the escape \u0000, a lone UTF-16
 * surrogate, an escaped character the database encoding lacks (in
 * SQL_ASCII any escaped non-ASCII one), a number beyond numeric's range;
 * and the parser raises "stack depth limit exceeded" on deep nesting.  An
 * answer arrives after Confluence processed the request, so such an error
 * would invite a rerun and a duplicate (and stop the queue's worker on the
 * row).  So the text is rewritten first into JSON that jsonb_in takes, and
 * the values changed are counted for a WARNING:
 *
 *	 - a character jsonb cannot hold, escaped or not, becomes its JSON escape
 *	   written out as text: "a\u0000b" reads as the text a\u0000b, and in a
 *	   LATIN1 database "\u4e2d" (or the raw character) as \u4e2d;
 *	 - in SQL_ASCII an escaped non-ASCII character becomes its UTF-8 bytes,
 *	   as an unescaped one already is (not counted: nothing is lost);
 *	 - a number numeric cannot hold becomes a string of its digits;
 *	 - an answer nested deeper than CFDW_JSON_MAX_DEPTH, or over
 *	   CFDW_JSONB_MAX_BYTES, is not parsed (as a body that is not JSON).
 *
 * The text of a json or text column changes only where the database
 * encoding lacks a raw character: it becomes its JSON escape, which means
 * the same to any JSON reader.
 * ---------------------------------------------------------------------
 */

/*
 * Deepest nesting parsed.  The parser recurses per level (about 15,000
 * levels exhaust the default max_stack_depth); Confluence's answers nest a
 * few levels.
 */
#define CFDW_JSON_MAX_DEPTH 1000

/*
 * Largest answer turned into jsonb: jsonb can take four times the text (an
 * array of one-digit numbers) and refuses a document over 256 MB.
 */
#define CFDW_JSONB_MAX_BYTES ((size_t) 64 * 1024 * 1024)

/* An answer body, converted once for every column that reads it. */
typedef struct Answer
{
	const char *utf8;			/* the body as received */
	size_t		len;
	bool		checked;		/* is_json is set */
	bool		is_json;		/* valid UTF-8 and JSON, not too deep */
	bool		text_done;
	char	   *text;			/* in the database encoding, or NULL */
	bool		jsonb_done;
	char	   *jsonb_text;		/* rewritten for jsonb_in, database encoding */
	Jsonb	   *jsonb;			/* or NULL */
	int			rewritten;		/* values jsonb_text changed */
} Answer;

static void
answer_init(Answer *a, const char *body, size_t len)
{
	memset(a, 0, sizeof(Answer));
	a->utf8 = body;
	a->len = body ? len : 0;
}

/* Is the nesting of the JSON text s at most max deep? */
static bool
json_depth_within(const char *s, size_t len, int max)
{
	bool		in_string = false;
	int			depth = 0;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (in_string)
		{
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_string = false;
		}
		else if (s[i] == '"')
			in_string = true;
		else if (s[i] == '[' || s[i] == '{')
		{
			if (++depth > max)
				return false;
		}
		else if (s[i] == ']' || s[i] == '}')
			depth--;
	}
	return true;
}

/* Is the answer JSON that can be parsed without raising? */
static bool
answer_is_json(Answer *a)
{
	JsonLexContext *lex;

	if (a->checked)
		return a->is_json;
	a->checked = true;
	if (a->len == 0 || a->len > (size_t) (MaxAllocSize / MAX_CONVERSION_GROWTH - 1) ||
		!pg_verify_mbstr(PG_UTF8, a->utf8, (int) a->len, true) ||
		!json_depth_within(a->utf8, a->len, CFDW_JSON_MAX_DEPTH))
		return false;
	lex = cfdw_json_lex_context(unconstify(char *, a->utf8), (int) a->len, false);
	a->is_json = pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
	return a->is_json;
}

/*
 * Can numeric_in read this JSON number?  It holds at most 131072 digits
 * before the point and 16383 after (the leading "0" of "0.5" is counted,
 * which errs on the safe side).
 */
static bool
numeric_fits(const char *p, size_t n)
{
	size_t		i = 0;
	long		int_digits = 0;
	long		frac_digits = 0;
	long		exponent = 0;
	bool		negative = false;

	if (i < n && p[i] == '-')
		i++;
	for (; i < n && isdigit((unsigned char) p[i]); i++)
		int_digits++;
	if (i < n && p[i] == '.')
		for (i++; i < n && isdigit((unsigned char) p[i]); i++)
			frac_digits++;
	if (i < n && (p[i] == 'e' || p[i] == 'E'))
	{
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			negative = (p[i++] == '-');
		for (; i < n && isdigit((unsigned char) p[i]); i++)
		{
			exponent = exponent * 10 + (p[i] - '0');
			if (exponent > 1000000)
				return false;
		}
		if (negative)
			exponent = -exponent;
	}
	return int_digits + exponent <= 131072 && frac_digits - exponent <= 16383;
}

/* Four hex digits at p (the JSON parser checked them). */
static pg_wchar
hex4(const char *p)
{
	pg_wchar	v = 0;
	int			i;

	for (i = 0; i < 4; i++)
		v = v * 16 + (isdigit((unsigned char) p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
	return v;
}

/* Can the database encoding hold this character (given in UTF-8)? */
static bool
representable(Oid proc, int enc, const unsigned char *c, int l)
{
	unsigned char out[MAX_CONVERSION_GROWTH * MAX_MULTIBYTE_CHAR_LEN + 1];

	if (enc == PG_UTF8 || enc == PG_SQL_ASCII)
		return true;
	return OidIsValid(proc) &&
		pg_do_encoding_conversion_buf(proc, PG_UTF8, enc, unconstify(unsigned char *, c), l,
									  out, sizeof(out), true) == l;
}

/* A code point as its JSON escape; as_text doubles the backslash. */
static void
append_escape(StringInfo out, pg_wchar cp, bool as_text)
{
	const char *bs = as_text ? "\\\\" : "\\";

	if (cp > 0xFFFF)
		appendStringInfo(out, "%su%04x%su%04x", bs, 0xD800 + ((cp - 0x10000) >> 10),
						 bs, 0xDC00 + ((cp - 0x10000) & 0x3FF));
	else
		appendStringInfo(out, "%su%04x", bs, cp);
}

/*
 * The JSON text s (valid UTF-8 and JSON) rewritten as described above, for
 * jsonb_in (for_jsonb) or for a text or json column, still in UTF-8; s
 * itself when nothing changes.  check_raw also checks each unescaped
 * non-ASCII character against the database encoding (only needed when the
 * text as a whole does not convert).  *rewritten counts the values changed
 * for jsonb.
 */
static const char *
json_for_database(const char *s, size_t len, bool for_jsonb, bool check_raw,
				  size_t *outlen, int *rewritten)
{
	int			enc = GetDatabaseEncoding();
	Oid			proc = InvalidOid;
	StringInfoData out;
	bool		changed = false;
	bool		in_string = false;
	size_t		copied = 0;
	size_t		i = 0;

	*rewritten = 0;
	if (enc != PG_UTF8 && enc != PG_SQL_ASCII)
		proc = FindDefaultConversionProc(PG_UTF8, enc);
	initStringInfo(&out);

/* copy s[copied, i) unchanged before a replacement */
#define FLUSH() \
	do { \
		appendBinaryStringInfo(&out, s + copied, (int) (i - copied)); \
		changed = true; \
	} while (0)

	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];

		if (!in_string)
		{
			if (c == '"')
				in_string = true;
			else if (for_jsonb && (c == '-' || isdigit(c)))
			{
				size_t		j = i;

				while (j < len && strchr("+-.0123456789eE", s[j]) && s[j] != '\0')
					j++;
				if (!numeric_fits(s + i, j - i))
				{
					FLUSH();
					appendStringInfoChar(&out, '"');
					appendBinaryStringInfo(&out, s + i, (int) (j - i));
					appendStringInfoChar(&out, '"');
					copied = j;
					(*rewritten)++;
				}
				i = j;
				continue;
			}
			i++;
			continue;
		}
		if (c == '"')
		{
			in_string = false;
			i++;
		}
		else if (c == '\\' && for_jsonb && i + 6 <= len && s[i + 1] == 'u')
		{
			pg_wchar	cp = hex4(s + i + 2);
			size_t		n = 6;
			bool		as_text = false;

			if (is_utf16_surrogate_first(cp) && i + 12 <= len &&
				s[i + 6] == '\\' && s[i + 7] == 'u' &&
				is_utf16_surrogate_second(hex4(s + i + 8)))
			{
				cp = surrogate_pair_to_codepoint(cp, hex4(s + i + 8));
				n = 12;
			}
			else if (is_utf16_surrogate_first(cp) || is_utf16_surrogate_second(cp))
				as_text = true; /* a lone surrogate */
			if (cp == 0)
				as_text = true;
			if (!as_text && cp > 0x7F)
			{
				unsigned char utf8[MAX_MULTIBYTE_CHAR_LEN + 1];

				unicode_to_utf8(cp, utf8);
				if (enc == PG_SQL_ASCII)
				{
					/* jsonb_in cannot convert it: its bytes, as a raw one is */
					FLUSH();
					appendBinaryStringInfo(&out, (char *) utf8, pg_utf_mblen(utf8));
					copied = i + n;
				}
				else
					as_text = !representable(proc, enc, utf8, pg_utf_mblen(utf8));
			}
			if (as_text)
			{
				/* the escape (each of a pair) with its backslash escaped */
				FLUSH();
				appendStringInfoChar(&out, '\\');
				appendBinaryStringInfo(&out, s + i, 6);
				if (n == 12)
				{
					appendStringInfoChar(&out, '\\');
					appendBinaryStringInfo(&out, s + i + 6, 6);
				}
				copied = i + n;
				(*rewritten)++;
			}
			i += n;
		}
		else if (c == '\\')
			i += 2;
		else if (c >= 0x80 && check_raw)
		{
			int			l = pg_utf_mblen((const unsigned char *) s + i);

			if (!representable(proc, enc, (const unsigned char *) s + i, l))
			{
				FLUSH();
				append_escape(&out, utf8_to_unicode((const unsigned char *) s + i), for_jsonb);
				copied = i + l;
				if (for_jsonb)
					(*rewritten)++;
			}
			i += l;
		}
		else
			i++;
	}
#undef FLUSH
	if (!changed)
	{
		pfree(out.data);
		*outlen = len;
		return s;
	}
	i = len;
	appendBinaryStringInfo(&out, s + copied, (int) (i - copied));
	*outlen = out.len;
	return out.data;
}

/*
 * The answer in the database encoding, for a text or json column; NULL when
 * it is not valid UTF-8, or not JSON and has a character the database
 * encoding lacks.
 */
static char *
answer_text(Answer *a)
{
	if (a->text_done)
		return a->text;
	a->text_done = true;
	if (a->len == 0)
		return NULL;
	a->text = from_utf8(a->utf8, a->len);
	if (a->text == NULL && answer_is_json(a))
	{
		size_t		n;
		int			rewritten;
		const char *t = json_for_database(a->utf8, a->len, false, true, &n, &rewritten);

		a->text = from_utf8(t, n);
	}
	return a->text;
}

/*
 * The answer as jsonb, or NULL when it is not JSON (or too deep or too
 * large to parse); never an error, and a WARNING when values had to be
 * written out as text.
 */
static Jsonb *
answer_jsonb(Answer *a)
{
	size_t		n;
	const char *t;

	if (a->jsonb_done)
		return a->jsonb;
	a->jsonb_done = true;
	if (!answer_is_json(a))
		return NULL;
	if (a->len > CFDW_JSONB_MAX_BYTES)
	{
		ereport(WARNING,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Confluence's answer of %zu bytes is too large to read as jsonb; its jsonb values are NULL",
						a->len),
				 errdetail("Answers over 64 MB are not parsed: jsonb may need four times the size of the text, and holds at most 256 MB."),
				 errhint("A text column with response_field '.' keeps any answer.")));
		return NULL;
	}
	t = json_for_database(a->utf8, a->len, true, false, &n, &a->rewritten);
	a->jsonb_text = from_utf8(t, n);
	if (a->jsonb_text == NULL)
	{
		/* a raw character the database encoding lacks: check each */
		t = json_for_database(a->utf8, a->len, true, true, &n, &a->rewritten);
		a->jsonb_text = from_utf8(t, n);
	}
	if (a->jsonb_text == NULL)
		return NULL;			/* not expected: everything left converts */
	a->jsonb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(a->jsonb_text)));
	if (a->rewritten > 0)
		ereport(WARNING,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg_plural("Confluence's answer has %d value that jsonb cannot hold in this database; it is kept as text",
							   "Confluence's answer has %d values that jsonb cannot hold in this database; they are kept as text",
							   a->rewritten, a->rewritten),
				 GetDatabaseEncoding() == PG_UTF8 ?
				 errdetail("A character jsonb cannot hold (U+0000 or a lone UTF-16 surrogate) is written out as its JSON escape, so \"a\\u0000b\" reads as the text a\\u0000b; a number beyond the range of numeric becomes a string.") :
				 errdetail("A character jsonb cannot hold (U+0000, a lone UTF-16 surrogate, or one the database encoding %s lacks) is written out as its JSON escape, so \"a\\u0000b\" reads as the text a\\u0000b; a number beyond the range of numeric becomes a string.",
						   GetDatabaseEncodingName()),
				 GetDatabaseEncoding() != PG_UTF8 ?
				 errhint("A UTF-8 database holds every character but U+0000.") : 0));
	return a->jsonb;
}

/*
 * A path segment as an array index: digits only, and no more than a jsonb
 * array can hold (JB_CMASK elements).  Anything else names no element, and
 * a number too large must not wrap around to a small one.
 */
static bool
array_index(const char *key, uint32 *index)
{
	uint32		v = 0;
	const char *p;

	if (*key == '\0')
		return false;
	for (p = key; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint32) (*p - '0');
		if (v > JB_CMASK)
			return false;
	}
	*index = v;
	return true;
}

/* The value at a dotted path of a container, as text for an input function. */
static char *
text_at_container(JsonbContainer *container, List *path)
{
	JsonbValue	v;
	JsonbValue *found = NULL;
	ListCell   *lc;

	if (JsonContainerIsScalar(container))
		return NULL;
	foreach(lc, path)
	{
		const char *key = strVal(lfirst(lc));

		if (found != NULL)
		{
			if (found->type != jbvBinary)
				return NULL;
			container = found->val.binary.data;
		}
		/* an array takes an index: results.0.id; an object, any key */
		if (JsonContainerIsArray(container))
		{
			uint32		index;

			if (!array_index(key, &index))
				return NULL;
			found = getIthJsonbValueFromContainer(container, index);
		}
		else if (!JsonContainerIsObject(container))
			return NULL;
		else
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

/* The value at a dotted path of a jsonb document. */
static char *
text_at_path(Jsonb *jb, List *path)
{
	return text_at_container(&jb->root, path);
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
	Answer		a;
	bool		warned = false;
	bool		warned_encoding = false;
	ConversionContext cc;
	ErrorContextCallback errcb;
	int			i;

	answer_init(&a, resp->body, resp->body_len);
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

		/*
		 * JSON can always be shown (see json_for_database); other text only
		 * when it is UTF-8 that the database encoding can hold.
		 */
		if (col->resp != CFDW_RESP_STATUS && col->resp != CFDW_RESP_ACTION &&
			!warned_encoding && a.len > 0 && !answer_is_json(&a) && answer_text(&a) == NULL)
		{
			warned_encoding = true;
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
				if (col->is_json && answer_is_json(&a))
				{
					if (col->typid == JSONBOID || getBaseType(col->typid) == JSONBOID)
					{
						/* parsed once for the paths and this column alike */
						Jsonb	   *jb = answer_jsonb(&a);

						if (jb != NULL && col->typid == JSONBOID)
						{
							values[att] = JsonbPGetDatum(jb);
							isnull[att] = false;
							continue;
						}
						/* a domain over jsonb: the text jsonb_in takes */
						text = a.jsonb_text;
					}
					else
						text = answer_text(&a);
					break;
				}
				if (col->is_json && answer_text(&a) != NULL)
				{
					/*
					 * The request was answered (and maybe processed): failing
					 * the statement now would invite a rerun and a
					 * duplicate.  Keep going, and say so.
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
				text = answer_text(&a);
				break;
			case CFDW_RESP_PATH:
				{
					/* a non-JSON answer leaves path columns NULL */
					Jsonb	   *jb = answer_jsonb(&a);

					if (jb != NULL)
						text = text_at_path(jb, col->response_path);
				}
				break;
			case CFDW_RESP_ACTION:
				text = (char *) resp->action;
				/* a page or comment a template's POST made */
				if (text == NULL && t->template && t->method == CFDW_POST &&
					resp->status >= 200 && resp->status < 300)
					text = "created";
				break;
			case CFDW_RESP_NONE:
			case CFDW_RESP_QUEUE_ID:
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
 * cfdw_fill_queued
 *		The response columns of a queued row: its queue id where asked for,
 *		NULL elsewhere (nothing was answered yet), through the input
 *		functions so that domains are enforced.
 */
void
cfdw_fill_queued(const CfdwTable *t, int64 queue_id, Datum *values, bool *isnull)
{
	int			i;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		char	   *text = NULL;
		int			att = col->attnum - 1;

		if (col->resp == CFDW_RESP_NONE)
			continue;
		if (col->resp == CFDW_RESP_QUEUE_ID)
			text = psprintf(INT64_FORMAT, queue_id);
		values[att] = InputFunctionCall(unconstify(FmgrInfo *, &col->infunc), text,
										col->typioparam, col->typmod);
		isnull[att] = (text == NULL);
	}
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
 * One problem with a request, worded once for every place that reports it:
 * the error raised for a row, and the one line of the Test function.
 */
typedef struct Problem
{
	int			sqlstate;
	char	   *message;		/* errmsg */
	const char *cause;			/* first sentence of errdetail, or NULL */
	char	   *hint;			/* errhint, or NULL */
	char	   *line;			/* confluence_fdw.test_connection's message */
} Problem;

/* The words for a request that got no usable answer (resp->failure). */
static void
transport_problem(const CfdwTable *t, const CfdwResponse *resp, Problem *p)
{
	const char *server = t->servername;

	p->sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
	p->cause = resp->failure_detail;
	p->hint = NULL;
	p->line = psprintf("request to %s failed: %s", t->base, resp->failure_detail);
	switch (resp->failure)
	{
		case CFDW_FAIL_TOO_LARGE:
			p->sqlstate = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			p->message = psprintf("response from Confluence exceeds max_response_bytes (%lld bytes)",
								  (long long) t->site.max_response_bytes);
			p->cause = NULL;
			p->hint = psprintf("Raise max_response_bytes on server \"%s\".", server);
			break;
		case CFDW_FAIL_EGRESS:
			p->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
			p->message = psprintf("server \"%s\" may not connect to the internal address %s",
								  server, resp->refused_address);
			p->cause = "The server belongs to a role that is not a superuser, and its host resolves to a loopback, link-local or private address";
			p->line = psprintf("%s resolves to the internal address %s, which servers of roles other than superusers may not connect to",
							   t->base, resp->refused_address);
			break;
		case CFDW_FAIL_PROXY:
			p->message = psprintf("the proxy of server \"%s\" refused the connection with HTTP %ld",
								  server, resp->proxy_status);
			p->cause = NULL;
			p->hint = pstrdup("Check the server's proxy option and what the proxy allows.");
			p->line = psprintf("the proxy refused the connection to %s with HTTP %ld: check the server's proxy option",
							   t->base, resp->proxy_status);
			break;
		case CFDW_FAIL_RESOLVE:
			p->message = psprintf("could not resolve the host of server \"%s\"", server);
			p->hint = pstrdup("Check the server's domain or base_url.");
			p->line = psprintf("could not resolve the host of %s: check the server's domain or base_url (%s)",
							   t->base, resp->failure_detail);
			break;
		case CFDW_FAIL_CONNECT:
			p->message = psprintf("could not connect to server \"%s\"", server);
			p->line = psprintf("could not connect to %s: %s", t->base, resp->failure_detail);
			break;
		case CFDW_FAIL_TIMEOUT:
			p->message = psprintf("request to server \"%s\" timed out", server);
			p->hint = psprintf("The server's timeout_ms is %d and connect_timeout_ms is %d.",
							   t->site.timeout_ms, t->site.connect_timeout_ms);
			p->line = psprintf("no answer from %s within the timeouts: %s",
							   t->base, resp->failure_detail);
			break;
		case CFDW_FAIL_REWIND:
			p->cause = "The kept-alive connection was closed after the request had gone out";
			pg_fallthrough;
		case CFDW_FAIL_CLOSED:
			p->message = psprintf("the connection to server \"%s\" was closed before Confluence answered",
								  server);
			break;
		case CFDW_FAIL_TLS:
			p->message = psprintf("TLS connection to server \"%s\" failed", server);
			break;
		case CFDW_FAIL_NONE:
		case CFDW_FAIL_OTHER:
			p->message = psprintf("request to server \"%s\" failed: %s", server,
								  resp->failure_name ? resp->failure_name : "unknown failure");
			break;
	}
}

/*
 * cfdw_rate_limit_lifts_in
 *		"the site accepts requests again at 2026-12-08 03:15:00+00 (in
 *		1800 s)" for a wait of ms from now, in the session's TimeZone; *when,
 *		when asked for, is that time.  It is rounded up to the second (the
 *		header's own precision; never before the limit lifts), so a caller
 *		that schedules for *when says the time it schedules for.
 */
char *
cfdw_rate_limit_lifts_in(long ms, TimestampTz *when)
{
	TimestampTz at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	if (at % USECS_PER_SEC != 0)
		at += USECS_PER_SEC - at % USECS_PER_SEC;
	if (when)
		*when = at;
	return psprintf("the site accepts requests again at %s (in %ld s)",
					timestamptz_to_str(at), (ms + 999) / 1000);
}

/* How long a rate-limited answer (429, or 503 with Retry-After) asks to wait (ms; -1: none). */
static long
rate_limit_ms(const CfdwResponse *resp)
{
	if (resp->outcome != CFDW_ANSWERED || resp->retry_after[0] == '\0' ||
		!(resp->status == 429 || resp->status == 503))
		return -1;
	return cfdw_retry_after_ms(resp->retry_after, time(NULL));
}

/*
 * cfdw_rate_limit_lifts
 *		When a rate-limited answer says the site takes requests again, in
 *		words (cfdw_rate_limit_lifts_in).  NULL when the answer names no
 *		time that can be read, or one that has come.  Retry-After is capped
 *		(pure.c), so the time is at most a day away.
 */
char *
cfdw_rate_limit_lifts(const CfdwResponse *resp)
{
	long		ms = rate_limit_ms(resp);

	return ms > 0 ? cfdw_rate_limit_lifts_in(ms, NULL) : NULL;
}

/*
 * The hint of a rate-limited answer: when the limit lifts, and whether
 * waiting longer would have helped.  A wait beyond max_retry_wait_ms is
 * not waited for by a statement (an hourly quota may ask for half an
 * hour); a queued row waits for it without spending an attempt.  The wait
 * is read once: an HTTP-date read twice can have come in between.
 */
static char *
rate_limit_hint(const CfdwTable *t, const CfdwResponse *resp)
{
	long		ms = cfdw_retry_after_ms(resp->retry_after, time(NULL));
	char	   *when = ms > 0 ? cfdw_rate_limit_lifts_in(ms, NULL) : NULL;

	if (when == NULL)
		return pstrdup(ms == 0
					   ? "Confluence rate-limited the request; it asked to retry at once. Raise max_retries or max_retry_wait_ms on the server to wait longer."
					   : "Confluence rate-limited the request. Raise max_retries or max_retry_wait_ms on the server to wait longer.");
	if (ms > t->max_retry_wait_ms)
		return psprintf("Confluence rate-limited the request: %s, later than a statement waits (max_retry_wait_ms is %d). Send it then, or through a delivery 'queue' table, whose rows wait for it.",
						when, t->max_retry_wait_ms);
	return psprintf("Confluence rate-limited the request: %s. Raise max_retries or max_retry_wait_ms on the server to wait longer.",
					when);
}

/* Something after a colon, or nothing. */
#define COLON(s) ((s) ? ": " : ""), ((s) ? (s) : "")

/* ---------------------------------------------------------------------
 * 401s: a scope the token lacks, or credentials that do not work
 * ---------------------------------------------------------------------
 */

/*
 * The API gateway's 401 for a token without the scope an operation needs
 * ("Unauthorized; scope does not match"): the credentials are good, the
 * token is not allowed to do this.
 */
static bool
is_scope_failure(const CfdwResponse *resp)
{
	return resp->status == 401 &&
		pg_strcasecmp(resp->failure_category, "FAILURE_CLIENT_SCOPE_CHECK") == 0;
}

/* A request's path without its query, or the spec's pattern of it. */
static const char *
operation_path(const CfdwRequest *req, const CfdwScope *scope)
{
	const char *p = req->path_for_messages ? req->path_for_messages : "";

	return scope ? scope->path : pnstrdup(p, strcspn(p, "?"));
}

/*
 * What was refused, in SQL and HTTP: "INSERT into pages (POST
 * /wiki/api/v2/pages)"; a request of no table (test_connection) by its
 * HTTP alone.  The statement is told by the method: a read is a SELECT
 * (also the one an UPDATE or DELETE makes first), a POST an INSERT, a PUT
 * an UPDATE (also an upsert's).
 */
static char *
operation_words(const CfdwTable *t, const CfdwRequest *req, const CfdwScope *scope)
{
	const char *method = cfdw_method_name(req->method);
	const char *path = operation_path(req, scope);
	const char *verb = "INSERT into";

	if (!OidIsValid(t->relid))
		return psprintf("%s %s", method, path);
	if (req->method == CFDW_GET)
		verb = "SELECT from";
	else if (req->method == CFDW_PUT || req->method == CFDW_PATCH)
		verb = "UPDATE";
	else if (req->method == CFDW_DELETE)
		verb = "DELETE from";
	return psprintf("%s %s (%s %s)", verb, t->relname, method, path);
}

/* The scope a refused request needs, or NULL when it is not one we know. */
static const CfdwScope *
request_scope(const CfdwRequest *req)
{
	return cfdw_scope_find(cfdw_method_name(req->method), req->path_for_messages);
}

/*
 * The words for a scope failure.  Scopes are fixed when a token is made:
 * the only way on is a new token.
 */
static void
scope_problem(const CfdwTable *t, const CfdwRequest *req, const char *summary,
			  Problem *p)
{
	const CfdwScope *scope = request_scope(req);
	char	   *op = operation_words(t, req, scope);
	const char *setting = t->site.bearer_token ? "bearer_token" : "api_token";

	p->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
	p->cause = NULL;
	if (scope)
	{
		p->message = psprintf("Confluence refused %s: the token lacks scope %s", op, scope->scope);
		p->hint = psprintf("Scopes cannot be added to an existing token: make a new token with scope %s (and the scopes it has now), and set it as %s in the user mapping for server \"%s\".",
						   scope->scope, setting, t->servername);
		p->line = psprintf("authenticated, but the token lacks scope %s for %s (HTTP 401%s%s): scopes cannot be added to a token; make a new one with that scope",
						   scope->scope, op, COLON(summary));
	}
	else
	{
		p->message = psprintf("Confluence refused %s: the token lacks a scope it needs", op);
		p->hint = psprintf("Atlassian's documentation of the endpoint names the scope it needs. Scopes cannot be added to an existing token: make a new token with that scope, and set it as %s in the user mapping for server \"%s\".",
						   setting, t->servername);
		p->line = psprintf("authenticated, but the token lacks a scope %s needs (HTTP 401%s%s): scopes cannot be added to a token; make a new one with that scope",
						   op, COLON(summary));
	}
}

/*
 * What to check after a 401 that is no scope failure, in the words of the
 * credential the user mapping has.  A scoped API token sent to the site
 * (not the gateway) gets 401 too, so that is said for Basic credentials.
 */
static void
credentials_problem(const CfdwTable *t, const char *summary, Problem *p)
{
	bool		gateway = t->base && strstr(t->base, "/ex/confluence/") != NULL;

	p->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	if (t->site.bearer_token)
	{
		p->hint = psprintf("Check bearer_token in the user mapping for server \"%s\": an OAuth 2.0 access token expires (Atlassian's after an hour), a Data Center personal access token when its owner chose.",
						   t->servername);
		p->line = psprintf("authentication failed (HTTP 401%s%s): check bearer_token in the user mapping; it may have expired",
						   COLON(summary));
	}
	else if (t->site.username)
	{
		p->hint = psprintf("Check username and api_token in the user mapping for server \"%s\": username is the account's e-mail address, api_token an Atlassian API token, which expires after at most a year.%s",
						   t->servername,
						   gateway ? "" : " A scoped API token works only through the API gateway: set the server's cloud_id, or api_gateway 'true'.");
		p->line = psprintf("authentication failed (HTTP 401%s%s): check username and api_token in the user mapping%s",
						   COLON(summary),
						   gateway ? "" : " (a scoped API token needs the server's cloud_id or api_gateway 'true')");
	}
	else
	{
		p->hint = psprintf("Check the credentials in the user mapping for server \"%s\".",
						   t->servername);
		p->line = psprintf("authentication failed (HTTP 401%s%s): check the credentials in the user mapping",
						   COLON(summary));
	}
}

/*
 * The words for an HTTP answer: its SQLSTATE and hint when it is an error,
 * and the Test function's line for any status.
 */
static void
status_problem(const CfdwTable *t, const CfdwRequest *req,
			   const CfdwResponse *resp, const char *summary, Problem *p)
{
	long		status = resp->status;

	p->sqlstate = ERRCODE_FDW_ERROR;
	p->hint = NULL;
	p->line = psprintf("Confluence returned HTTP %ld%s%s", status, COLON(summary));
	if (status >= 200 && status < 300)
		p->line = psprintf("connected to %s and authenticated%s%s", t->base,
						   t->site.username ? " as " : "",
						   t->site.username ? t->site.username : "");
	else if (status >= 300 && status < 400)
	{
		p->hint = pstrdup("Check the server's domain or base_url: requests go exactly there, and credentials are never sent to another address.");
		p->line = psprintf("%s answered with a redirect (HTTP %ld), which is not followed: check the server's domain or base_url",
						   t->base, status);
	}
	else if (is_scope_failure(resp))
		scope_problem(t, req, summary, p);
	else if (status == 401 && t->site.client_id)
	{
		/* a kept token was replaced once already (delivery.c): this one is new */
		p->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		p->hint = psprintf("Confluence refused the access token just fetched from %s for client_id \"%s\": check that the service account may use this site (requests go through https://api.atlassian.com/ex/confluence/<cloudId>) and that its credential has the scopes this operation needs.",
						   t->site.token_url, t->site.client_id);
		p->line = psprintf("Confluence refused the access token just fetched for client_id \"%s\" (HTTP 401%s%s): check the service account's access to the site and its scopes",
						   t->site.client_id, COLON(summary));
	}
	else if (status == 401)
		credentials_problem(t, summary, p);
	else if (status == 403)
	{
		p->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		p->hint = psprintf("The account of the user mapping for server \"%s\" lacks permission for this operation, or its token lacks the needed scope.",
						   t->servername);
		p->line = psprintf("authenticated, but not allowed to list spaces (HTTP 403%s%s): check the account's permissions and the token's scopes",
						   COLON(summary));
	}
	else if (status == 404)
	{
		p->hint = pstrdup("Confluence answers 404 both for a missing object and for one the account may not see.");
		p->line = psprintf("%s has no Confluence REST API v2 (HTTP 404): check the server's domain or base_url",
						   t->base);
	}
	else if (status == 409 && req->method == CFDW_PUT)
		p->hint = pstrdup("To update a page, send version.number as its current version plus one.");
	else if (status == 413)
		p->hint = pstrdup("Confluence refuses request bodies over 5 MB.");
	else if (status == 429 || (status == 503 && resp->retry_after[0]))
		p->hint = rate_limit_hint(t, resp);
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
	Problem		p;

	status_problem(t, req, resp, summary, &p);
	if (resp->status >= 300 && resp->status < 400)
		ereport(ERROR,
				(errcode(p.sqlstate),
				 errmsg("Confluence answered %s %s with a redirect (HTTP %ld), which is not followed",
						cfdw_method_name(req->method), req->path_for_messages, resp->status),
				 resp->location[0] ? errdetail("Location: %s",
											   printable_excerpt(resp->location, strlen(resp->location), 300)) : 0,
				 errhint("%s", p.hint),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
	if (is_scope_failure(resp))
		ereport(ERROR,
				(errcode(p.sqlstate),
				 errmsg_internal("%s", p.message),
				 errdetail_internal("%s X-Failure-Category: %s.", error_detail(resp),
									printable_excerpt(resp->failure_category,
													  strlen(resp->failure_category), 64)),
				 errhint("%s", p.hint),
				 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
	ereport(ERROR,
			(errcode(p.sqlstate),
			 errmsg("Confluence returned HTTP %ld: %s", resp->status, what),
			 errdetail_internal("%s", error_detail(resp)),
			 p.hint ? errhint("%s", p.hint) : 0,
			 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
}

/*
 * cfdw_report_transport_error
 *		Raise the error for a request that got no usable answer, saying
 *		whether Confluence may have processed it.
 */
void
cfdw_report_transport_error(const CfdwTable *t, const CfdwRequest *req,
							const CfdwResponse *resp)
{
	const char *sent = resp->outcome == CFDW_MAYBE_SENT
		? "The request may have been processed by Confluence; it was not resent."
		: "The request did not reach Confluence.";
	Problem		p;

	transport_problem(t, resp, &p);
	ereport(ERROR,
			(errcode(p.sqlstate),
			 errmsg_internal("%s", p.message),
			 p.cause ? errdetail("%s. %s", p.cause, sent) : errdetail("%s", sent),
			 p.hint ? errhint("%s", p.hint) : 0,
			 errcontext("%s %s", cfdw_method_name(req->method), req->path_for_messages)));
}

/*
 * cfdw_test_summary
 *		What confluence_fdw.test_connection says about its request: the
 *		same cases as the errors above, in one line each.
 */
char *
cfdw_test_summary(const CfdwTable *t, const CfdwRequest *req, const CfdwResponse *resp)
{
	Problem		p;

	if (resp->outcome != CFDW_ANSWERED)
		transport_problem(t, resp, &p);
	else
		status_problem(t, req, resp, cfdw_error_summary(resp), &p);
	return p.line;
}

/*
 * cfdw_answer_jsonb
 *		An answer's body as jsonb in the database encoding, or NULL when it
 *		is not JSON or cannot be shown in that encoding; never an error.
 */
void *
cfdw_answer_jsonb(const CfdwResponse *resp)
{
	Answer		a;

	if (resp->outcome != CFDW_ANSWERED || resp->body_len == 0)
		return NULL;
	answer_init(&a, resp->body, resp->body_len);
	return answer_jsonb(&a);
}

/*
 * cfdw_jsonb_text_at
 *		The text at a dotted path of a jsonb (from cfdw_answer_jsonb), or
 *		NULL when it is absent.
 */
char *
cfdw_jsonb_text_at(void *jsonb, const char *dotted)
{
	return jsonb ? text_at_path((Jsonb *) jsonb, cfdw_split_path(dotted)) : NULL;
}

/*
 * cfdw_outcome_message
 *		What went wrong with a request, in one line for a queue row's error
 *		column: the words of the error a statement would raise.
 */
char *
cfdw_outcome_message(const CfdwTable *t, const CfdwRequest *req,
					 const CfdwResponse *resp)
{
	Problem		p;
	char	   *summary;

	if (resp->outcome != CFDW_ANSWERED)
	{
		transport_problem(t, resp, &p);
		return p.cause ? psprintf("%s: %s", p.message, p.cause) : p.message;
	}
	summary = cfdw_error_summary(resp);
	if (is_scope_failure(resp))
	{
		scope_problem(t, req, summary, &p);
		return p.message;
	}
	return psprintf("Confluence returned HTTP %ld: %s", resp->status,
					summary ? summary : reason_phrase(resp->status));
}

/* ---------------------------------------------------------------------
 * Reads: a page of results, and each listed item to a row
 * ---------------------------------------------------------------------
 */

/*
 * cfdw_parse_page
 *		The answer to a GET of a scan as jsonb.  An answer that is empty, not
 *		UTF-8 or not JSON is an error naming the URL: a read changed nothing,
 *		so failing is safe, and a silent short result would not be.  What
 *		jsonb cannot hold is written out as text, with a WARNING, as for any
 *		answer (json_for_database).
 */
void *
cfdw_parse_page(const CfdwTable *t, const CfdwRequest *req, const CfdwResponse *resp)
{
	Answer		a;
	Jsonb	   *jb = NULL;
	const char *what = NULL;

	answer_init(&a, resp->body, resp->body_len);
	if (a.len == 0)
		what = "an empty body";
	else if (a.len > (size_t) (MaxAllocSize / MAX_CONVERSION_GROWTH - 1) ||
			 !pg_verify_mbstr(PG_UTF8, a.utf8, (int) a.len, true))
		what = "text that is not valid UTF-8";
	else if (!answer_is_json(&a))
		what = "a page of results that is not JSON";
	else if (a.len > CFDW_JSONB_MAX_BYTES)
		what = "a page of results over 64 MB";
	else if ((jb = answer_jsonb(&a)) == NULL)
		what = "a page of results that cannot be read";	/* not expected */
	if (what)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Confluence answered GET %s with %s", req->url, what),
				 errdetail("HTTP %ld, Content-Type %s, %zu bytes: %s", resp->status,
						   resp->content_type[0] ? resp->content_type : "none",
						   resp->body_len,
						   printable_excerpt(resp->body, resp->body_len, 200)),
				 errcontext("scan of foreign table \"%s\"", t->relname)));
	return jb;
}

/* Names the column being read when its input function fails. */
static void
read_error_callback(void *arg)
{
	ConversionContext *cc = (ConversionContext *) arg;

	errcontext("column \"%s\" of foreign table \"%s\", read from field \"%s\"",
			   cc->column->name, cc->table->relname,
			   cc->column->read_field ? cc->column->read_field : ".");
}

/* The value of one column from an item, as text for its input function. */
static char *
item_text(const CfdwColumn *col, JsonbValue *item, long status, Datum *json_value)
{
	switch (col->read)
	{
		case CFDW_RESP_PATH:
			return text_at_container(item->val.binary.data, col->read_path);
		case CFDW_RESP_STATUS:
			return psprintf("%ld", status);
		case CFDW_RESP_WHOLE:
			if (col->typid == JSONBOID)
			{
				/* the item's own document, made only when it is read */
				*json_value = JsonbPGetDatum(JsonbValueToJsonb(item));
				return NULL;
			}
			return JsonbToCString(NULL, item->val.binary.data, item->val.binary.len);
		default:
			return NULL;
	}
}

/*
 * cfdw_fill_item
 *		One row from a listed item (a JsonbValue of type jbvBinary holding
 *		an object): the columns needed[i]
 *		asks for, the others NULL.  Input functions run for NULL too, so that
 *		domains are enforced.
 */
void
cfdw_fill_item(const CfdwTable *t, void *item, long status, const bool *needed,
			   Datum *values, bool *isnull)
{
	ConversionContext cc;
	ErrorContextCallback errcb;
	int			i;

	cc.table = t;
	errcb.callback = read_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		int			att = col->attnum - 1;
		Datum		json_value = (Datum) 0;
		char	   *text;

		values[att] = (Datum) 0;
		isnull[att] = true;
		if (!needed[i])
			continue;
		cc.column = col;
		text = item_text(col, (JsonbValue *) item, status, &json_value);
		if (json_value != (Datum) 0)
		{
			values[att] = json_value;
			isnull[att] = false;
			continue;
		}
		values[att] = InputFunctionCall(unconstify(FmgrInfo *, &col->infunc), text,
										col->typioparam, col->typmod);
		isnull[att] = (text == NULL);
	}
	error_context_stack = errcb.previous;
}
