/*-------------------------------------------------------------------------
 *
 * request.c
 *		  A row to a request: the JSON body built from the column rules, and
 *		  the URL built from the endpoint's path template.
 *
 * cJSON allocates with malloc.  Every tree built or parsed here is handed to
 * the current memory context at birth (a reset callback deletes it), so an
 * error anywhere later frees it with the per-row context and nothing needs a
 * PG_TRY of its own.
 *
 * IDENTIFICATION
 *		  src/request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "confluence_fdw.h"
#include "pure.h"

/* A cJSON tree owned by a memory context. */
typedef struct OwnedJson
{
	MemoryContextCallback cb;
	cJSON	   *json;
} OwnedJson;

static void
owned_json_free(void *arg)
{
	OwnedJson  *o = (OwnedJson *) arg;

	if (o->json)
		cJSON_Delete(o->json);
	o->json = NULL;
}

/*
 * Register an (empty) owner in the current context before the tree exists,
 * so that nothing between creating the tree and owning it can raise an error.
 */
static OwnedJson *
owned_json_new(void)
{
	OwnedJson  *o = palloc0(sizeof(OwnedJson));

	o->cb.func = owned_json_free;
	o->cb.arg = o;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &o->cb);
	return o;
}

static void *
check_alloc(void *p)
{
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a Confluence request")));
	return p;
}

/*
 * cfdw_json_parse_owned
 *		Parse JSON text into a cJSON tree owned by the current memory context;
 *		NULL when the text is not JSON.
 */
void *
cfdw_json_parse_owned(const char *text, size_t len)
{
	OwnedJson  *o = owned_json_new();

	o->json = cJSON_ParseWithLength(text, len);
	return o->json;
}

/*
 * cfdw_json_array_owned
 *		An empty JSON array owned by the current memory context, for the rows
 *		of a batch.
 */
void *
cfdw_json_array_owned(void)
{
	OwnedJson  *o = owned_json_new();

	o->json = check_alloc(cJSON_CreateArray());
	return o->json;
}

/*
 * cfdw_compile_url
 *		Split base + path template into literal parts and placeholders once
 *		per statement, so a row only fills in values.
 */
void
cfdw_compile_url(CfdwTable *t)
{
	StringInfoData lit;
	const char *p;

	t->url_parts = NIL;
	initStringInfo(&lit);
	appendStringInfoString(&lit, t->base);

	for (p = t->path; *p; p++)
	{
		const char *close;
		char	   *name;
		int			i;

		if (*p != '{')
		{
			appendStringInfoChar(&lit, *p);
			continue;
		}
		close = strchr(p, '}');
		if (close == NULL || close == p + 1)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("endpoint of foreign table \"%s\" has an unterminated or empty placeholder",
							t->relname),
					 errhint("Write placeholders as {column_name}.")));
		name = pnstrdup(p + 1, close - p - 1);
		for (i = 0; i < t->ncolumns; i++)
			if (strcmp(t->columns[i].name, name) == 0)
				break;
		if (i == t->ncolumns || t->columns[i].resp != CFDW_RESP_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
					 errmsg("endpoint placeholder {%s} of foreign table \"%s\" names no request column",
							name, t->relname)));
		t->url_parts = lappend(t->url_parts, makeString(pstrdup(lit.data)));
		t->url_parts = lappend(t->url_parts, makeInteger(i));
		resetStringInfo(&lit);
		p = close;
	}
	t->url_parts = lappend(t->url_parts, makeString(lit.data));
	t->fixed_url = list_length(t->url_parts) == 1 ? lit.data : NULL;
}

/* A column value as text in the server encoding, as its output function says. */
static char *
value_text(const CfdwColumn *col, Datum value)
{
	if (col->kind == CFDW_VALUE_TO_JSON)
		return TextDatumGetCString(FunctionCall1(unconstify(FmgrInfo *, &col->outfunc), value));
	return OutputFunctionCall(unconstify(FmgrInfo *, &col->outfunc), value);
}

/*
 * cfdw_url_encode
 *		A value (in the database encoding) percent-encoded as UTF-8 for a
 *		path segment or a query parameter, palloc'd.
 */
char *
cfdw_url_encode(const char *text)
{
	char	   *utf8 = GetDatabaseEncoding() == PG_UTF8 ? unconstify(char *, text) :
		pg_server_to_any(text, strlen(text), PG_UTF8);

	return cfdw_url_encode_utf8(utf8);
}

/* The same for text that is UTF-8 already (a request body's values). */
char *
cfdw_url_encode_utf8(const char *utf8)
{
	char	   *escaped = check_alloc(cfdw_percent_encode(utf8, strlen(utf8)));
	char	   *result = NULL;

	/* only the copy can raise an error; libcurl's string is freed anyway */
	PG_TRY();
	{
		result = pstrdup(escaped);
	}
	PG_FINALLY();
	{
		curl_free(escaped);
	}
	PG_END_TRY();
	return result;
}

/*
 * cfdw_build_url
 *		The URL of one row: placeholders filled with the row's values,
 *		percent-encoded by libcurl so that a value can never add a path
 *		segment, a query or a host.
 */
char *
cfdw_build_url(const CfdwTable *t, Datum *values, bool *isnull)
{
	StringInfoData url;
	ListCell   *lc;

	if (t->fixed_url)
		return t->fixed_url;

	initStringInfo(&url);
	foreach(lc, t->url_parts)
	{
		Node	   *part = lfirst(lc);
		const CfdwColumn *col;
		char	   *text;

		if (IsA(part, String))
		{
			appendStringInfoString(&url, strVal(part));
			continue;
		}
		col = &t->columns[intVal(part)];
		if (isnull[col->attnum - 1])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of foreign table \"%s\"",
							col->name, t->relname),
					 errdetail("The column fills the placeholder {%s} of the endpoint.", col->name),
					 errhint("Nothing was sent for this row.")));
		text = value_text(col, values[col->attnum - 1]);
		if (!cfdw_placeholder_value_ok(text))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value \"%s\" of column \"%s\" of foreign table \"%s\" cannot fill a path placeholder",
							text, col->name, t->relname),
					 errdetail("An empty value, \".\" or \"..\" (also with \";parameters\") would change which path the request goes to."),
					 errhint("Nothing was sent for this row.")));
		appendStringInfoString(&url, cfdw_url_encode(text));
	}
	return url.data;
}

/*
 * The cJSON item for one non-NULL column value.  Numbers and JSON go in as
 * raw text so that no digit is lost to a double.
 */
static cJSON *
value_item(const CfdwTable *t, const CfdwColumn *col, Datum value)
{
	char	   *text;

	switch (col->kind)
	{
		case CFDW_VALUE_BOOL:
			return check_alloc(cJSON_CreateBool(DatumGetBool(value)));
		case CFDW_VALUE_NUMBER:
			text = value_text(col, value);
			/* NaN and infinities have no JSON spelling */
			if (!(text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) ||
				strcmp(text, "-Infinity") == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("value \"%s\" of column \"%s\" of foreign table \"%s\" cannot be sent as a JSON number",
								text, col->name, t->relname),
						 errhint("Nothing was sent for this row.")));
			return check_alloc(cJSON_CreateRaw(text));
		case CFDW_VALUE_JSON:
		case CFDW_VALUE_TO_JSON:
			return check_alloc(cJSON_CreateRaw(value_text(col, value)));
		case CFDW_VALUE_STRING:
			break;
	}
	return check_alloc(cJSON_CreateString(value_text(col, value)));
}

/*
 * Merge a json object (a column with field '.') into the body: its keys are
 * added where no column has put a value.
 */
static void
merge_object(const CfdwTable *t, const CfdwColumn *col, cJSON *root, Datum value)
{
	char	   *text = value_text(col, value);
	cJSON	   *obj = cfdw_json_parse_owned(text, strlen(text));
	cJSON	   *child;

	if (obj == NULL || !cJSON_IsObject(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column \"%s\" of foreign table \"%s\" must hold a JSON object",
						col->name, t->relname),
				 errdetail("Its field is '.', so its keys become top-level fields of the request body."),
				 errhint("Nothing was sent for this row.")));

	while ((child = obj->child) != NULL)
	{
		cJSON_DetachItemViaPointer(obj, child);
		if (cJSON_GetObjectItemCaseSensitive(root, child->string))
			cJSON_Delete(child);
		else
			cJSON_AddItemToObject(root, child->string, child);
	}
}

/*
 * The request body in UTF-8, whatever the database encoding.  cJSON passes
 * bytes through and escapes only quotes, backslashes and control characters,
 * so one conversion of the finished text is enough.
 */
static void
append_utf8(StringInfo out, const char *text)
{
	int			enc = GetDatabaseEncoding();
	size_t		len = strlen(text);

	if (enc == PG_SQL_ASCII)
	{
		/* no conversion is defined; refuse what is not UTF-8 already */
		if (!pg_verify_mbstr(PG_UTF8, text, len, true))
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("request body is not valid UTF-8"),
					 errhint("Nothing was sent for this row.")));
		appendBinaryStringInfo(out, text, len);
	}
	else if (enc == PG_UTF8)
		appendBinaryStringInfo(out, text, len);
	else
		appendStringInfoString(out, pg_server_to_any(text, len, PG_UTF8));
}

/*
 * cfdw_build_row_tree
 *		The request body of one row as a cJSON object, with the template's
 *		defaults and checks applied.  It is owned by the current memory
 *		context, or, when batch is given, appended to that array (built by
 *		cfdw_json_array_owned) before it is filled, so it always has an owner.
 */
void *
cfdw_build_row_tree(const CfdwTable *t, Datum *values, bool *isnull, void *batch)
{
	cJSON	   *root;
	int			i;

	if (batch)
	{
		root = check_alloc(cJSON_CreateObject());
		if (!cJSON_AddItemToArray((cJSON *) batch, root))
		{
			cJSON_Delete(root);
			check_alloc(NULL);
		}
	}
	else
	{
		OwnedJson  *owner = owned_json_new();

		root = owner->json = check_alloc(cJSON_CreateObject());
	}

	/* columns first, so that a merged object never overrides one */
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (!col->send || col->field_path == NIL || isnull[col->attnum - 1])
			continue;
		if (!cfdw_json_put(root, col->field, value_item(t, col, values[col->attnum - 1])))
			check_alloc(NULL);
	}
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (col->send && col->field_path == NIL && !isnull[col->attnum - 1])
			merge_object(t, col, root, values[col->attnum - 1]);
	}

	/* A template body without a representation gets the table's. */
	if (t->template)
	{
		cJSON	   *body = cJSON_GetObjectItemCaseSensitive(root, "body");

		if (cJSON_IsObject(body) &&
			cJSON_GetObjectItemCaseSensitive(body, "value") &&
			!cJSON_GetObjectItemCaseSensitive(body, "representation"))
			check_alloc(cJSON_AddStringToObject(body, "representation", t->representation));
	}
	/* Markdown and plain text become storage, and storage is checked */
	cfdw_prepare_content(t, root);
	if (t->template)
		cfdw_check_required(t, root);
	return root;
}

/*
 * Take a malloc'd serialisation into out (in UTF-8) and free it, even if
 * the copy fails.
 */
static void
take_text(StringInfo out, char *text)
{
	PG_TRY();
	{
		append_utf8(out, text);
	}
	PG_FINALLY();
	{
		free(text);
	}
	PG_END_TRY();
}

/*
 * cfdw_serialize_body
 *		A body tree (an object, or with batch an array of objects) in the
 *		table's format, appended to out.
 */
void
cfdw_serialize_body(const CfdwTable *t, void *tree, bool batch, StringInfo out)
{
	cJSON	   *root = (cJSON *) tree;
	char		err[CFDW_ERRLEN];
	char	   *text = NULL;

	switch (t->format)
	{
		case CFDW_FORMAT_JSON:
			/* cJSON_PrintUnformatted allocates with cJSON's malloc hook */
			text = check_alloc(cJSON_PrintUnformatted(root));
			break;
		case CFDW_FORMAT_XML:
			text = cfdw_json_to_xml(root, batch, err, sizeof(err));
			break;
		case CFDW_FORMAT_FORM:
			text = cfdw_json_to_form(root, err, sizeof(err));
			break;
	}
	if (text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not build the %s request body for foreign table \"%s\": %s",
						t->format == CFDW_FORMAT_XML ? "XML" : "form",
						t->relname, err),
				 errhint("Nothing was sent for this row.")));
	take_text(out, text);

	if (out->len > CFDW_MAX_REQUEST_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("request body of %d bytes exceeds Confluence's limit of %d bytes",
						out->len, CFDW_MAX_REQUEST_BYTES),
				 errhint("Nothing was sent.")));
}

/*
 * cfdw_build_body
 *		The body of one row, appended to out; false when the row has nothing
 *		to send and the method needs no body (a DELETE by path alone).
 */
bool
cfdw_build_body(const CfdwTable *t, Datum *values, bool *isnull, StringInfo out)
{
	cJSON	   *root = cfdw_build_row_tree(t, values, isnull, NULL);

	if (t->method == CFDW_DELETE && root->child == NULL)
		return false;
	cfdw_serialize_body(t, root, false, out);
	return true;
}

/* The HTTP verb of a method. */
const char *
cfdw_method_name(CfdwMethod method)
{
	switch (method)
	{
		case CFDW_POST:
			return "POST";
		case CFDW_PUT:
			return "PUT";
		case CFDW_PATCH:
			return "PATCH";
		case CFDW_DELETE:
			return "DELETE";
		case CFDW_GET:
			return "GET";
	}
	return "POST";
}

/*
 * cfdw_build_context
 *		The columns of a row that are not sent (send 'false'), as a JSON
 *		object in the database encoding, or NULL when there are none: a
 *		queued row keeps them, so its result can be joined back to the row
 *		that made it.
 */
char *
cfdw_build_context(const CfdwTable *t, Datum *values, bool *isnull)
{
	cJSON	   *root = cfdw_json_parse_owned("{}", 2);
	char	   *text;
	char	   *copy;
	int			i;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (col->send || col->resp != CFDW_RESP_NONE)
			continue;
		if (isnull[col->attnum - 1])
			cJSON_AddItemToObject(root, col->name, check_alloc(cJSON_CreateNull()));
		else
			cJSON_AddItemToObject(root, col->name,
								  value_item(t, col, values[col->attnum - 1]));
	}
	if (root->child == NULL)
		return NULL;
	text = check_alloc(cJSON_PrintUnformatted(root));
	PG_TRY();
	{
		copy = pstrdup(text);
	}
	PG_FINALLY();
	{
		free(text);
	}
	PG_END_TRY();
	return copy;
}
