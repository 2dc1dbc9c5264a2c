/*-------------------------------------------------------------------------
 *
 * content.c
 *		  What people write, turned into what Confluence takes: Markdown and
 *		  plain text converted to storage format, and every storage body
 *		  checked for well-formedness before it is sent (README "Markdown and
 *		  plain text").
 *
 * The conversion and the check themselves are storage.c's, which knows
 * no PostgreSQL; this file gives cmark-gfm an allocator in a memory
 * context (so an error mid-conversion leaks nothing), converts between the
 * database encoding and UTF-8, applies both to a row's request body, and
 * defines the SQL helpers.  A malformed body is a 22P02 naming the
 * column and the line and column of the fault; the row's CONTEXT line
 * names the row.  Nothing is sent for it, whatever on_error says.
 *
 * IDENTIFICATION
 *		  src/content.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>
#include <cmark-gfm-core-extensions.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "confluence_fdw.h"
#include "storage.h"

/* ---------------------------------------------------------------------
 * cmark-gfm's allocations, in a memory context
 * ---------------------------------------------------------------------
 */

/*
 * Every allocation of cmark-gfm's and of storage.c's comes from here: cmark's
 * default allocator calls abort() when calloc or realloc fails, which would
 * take the whole cluster through crash recovery, where palloc raises an
 * ERROR.  storage.c's header comment lists what cmark-gfm allocates where:
 * a parser made with cmark_parser_new_with_mem allocates everything of a
 * parse (extensions included) through the mem it is given, and storage.c
 * calls nothing that uses cmark's default allocator.  The one exception is
 * the registry of cmark-gfm's core extensions, made once per process with
 * the default allocator: register_extensions() makes it with that
 * allocator pointed at functions that raise instead.
 *
 * The context cmark allocates in lives as long as the backend: cmark
 * gives back (cmark_pg_free) everything it allocates, and the freed chunks
 * and blocks serve the next conversion.  A context made and deleted per
 * conversion handed its blocks back to libc, which gave them back to the
 * kernel, and every conversion paid for faulting them in again (six times
 * the page faults, a third more time).  It is reset after an error (an
 * ERROR raised in the allocator, out of memory, leaves cmark's structures
 * half built, and nothing frees them) and when a large document left it
 * big; in_cmark_context() does both.
 */
static MemoryContext cmark_cxt = NULL;

/* Memory the context may keep between conversions. */
#define CMARK_KEEP_BYTES (16 * 1024 * 1024)

static void *
cmark_pg_calloc(size_t count, size_t size)
{
	if (size != 0 && count > MaxAllocHugeSize / size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Markdown document too large to convert")));
	if (count * size <= MaxAllocSize)
		return MemoryContextAllocZero(cmark_cxt, count * size);
	return MemoryContextAllocExtended(cmark_cxt, count * size,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
}

static void *
cmark_pg_realloc(void *ptr, size_t size)
{
	if (ptr == NULL)
		return MemoryContextAllocExtended(cmark_cxt, size, MCXT_ALLOC_HUGE);
	return repalloc_huge(ptr, size);
}

/* Giving each buffer back keeps the context's memory reused. */
static void
cmark_pg_free(void *ptr)
{
	if (ptr)
		pfree(ptr);
}

static cmark_mem pg_cmark_mem = {cmark_pg_calloc, cmark_pg_realloc, cmark_pg_free};

/*
 * cmark's default allocator while the extension registry is made: malloc
 * still (the registry lives as long as the process, and cmark frees with
 * free()), but an ERROR instead of abort() when it fails.
 */
static void *
cmark_registry_calloc(size_t count, size_t size)
{
	void	   *ptr = calloc(count, size);

	if (ptr == NULL && count != 0 && size != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while registering cmark-gfm's extensions.")));
	return ptr;
}

static void *
cmark_registry_realloc(void *ptr, size_t size)
{
	void	   *new_ptr = realloc(ptr, size);

	if (new_ptr == NULL && size != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while registering cmark-gfm's extensions.")));
	return new_ptr;
}

/*
 * Register cmark-gfm's core extensions (table, strikethrough, autolink,
 * tasklist) once per process, before storage.c's own call
 * (cmark_gfm_core_extensions_ensure_registered, which then does nothing).
 * cmark_get_default_mem_allocator() hands out the library's own, writable
 * allocator, which the registry code reads on every call: it is pointed at
 * the functions above for the duration and restored whatever happens.  An
 * ERROR midway leaves the library's "registered" flag unset, so the next
 * conversion registers again; the extensions already listed stay complete
 * (each is built before it is listed) and are found first.
 */
static void
register_extensions(void)
{
	static bool registered = false;
	cmark_mem  *dflt;
	cmark_mem	saved;

	if (registered)
		return;
	dflt = cmark_get_default_mem_allocator();
	saved = *dflt;
	dflt->calloc = cmark_registry_calloc;
	dflt->realloc = cmark_registry_realloc;
	PG_TRY();
	{
		cmark_gfm_core_extensions_ensure_registered();
	}
	PG_FINALLY();
	{
		*dflt = saved;
	}
	PG_END_TRY();
	registered = true;
}

/*
 * Run work(arg) with cmark_cxt ready; on an ERROR reset the context (what
 * cmark and storage.c had allocated is garbage) and rethrow, and after
 * success reset it when it kept more than CMARK_KEEP_BYTES.
 */
static void
in_cmark_context(void (*work) (void *), void *arg)
{
	if (cmark_cxt == NULL)
		cmark_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw content",
										  ALLOCSET_DEFAULT_SIZES);
	register_extensions();
	PG_TRY();
	{
		work(arg);
	}
	PG_CATCH();
	{
		MemoryContextReset(cmark_cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (MemoryContextMemAllocated(cmark_cxt, false) > CMARK_KEEP_BYTES)
		MemoryContextReset(cmark_cxt);
}

/* ---------------------------------------------------------------------
 * Conversion
 * ---------------------------------------------------------------------
 */

typedef enum ContentKind
{
	CONTENT_STORAGE,			/* checked only */
	CONTENT_MARKDOWN,
	CONTENT_PLAIN,
	CONTENT_OTHER				/* atlas_doc_format, wiki: sent as written */
} ContentKind;

static ContentKind
content_kind(const char *representation)
{
	if (representation == NULL || strcmp(representation, "storage") == 0)
		return CONTENT_STORAGE;
	if (strcmp(representation, "markdown") == 0)
		return CONTENT_MARKDOWN;
	if (strcmp(representation, "plain") == 0)
		return CONTENT_PLAIN;
	return CONTENT_OTHER;
}

/* text in the database encoding to UTF-8 (no copy when it is UTF-8) */
static char *
to_utf8(const char *text, size_t len)
{
	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return (char *) text;
	return pg_server_to_any(text, len, PG_UTF8);
}

static char *
from_utf8(char *text, size_t len)
{
	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		return text;
	return pg_any_to_server(text, len, PG_UTF8);
}

/* A conversion: its input and kind, and the result in caller's context. */
typedef struct Conversion
{
	const char *utf8;
	ContentKind kind;
	MemoryContext caller;
	char	   *result;
} Conversion;

/* The conversion itself, in cmark_cxt (under in_cmark_context). */
static void
convert_utf8(void *arg)
{
	Conversion *c = arg;
	CfdwBuf		out;

	cfdw_buf_init(&out, &pg_cmark_mem);
	if (c->kind == CONTENT_MARKDOWN)
		cfdw_markdown_to_storage(c->utf8, strlen(c->utf8), &out);
	else
		cfdw_text_to_storage(c->utf8, strlen(c->utf8), &out);
	c->result = MemoryContextStrdup(c->caller, from_utf8(out.data, out.len));
	cfdw_buf_free(&out);
}

/*
 * Markdown or plain text (in the database encoding) as storage format, in
 * the current memory context.
 */
static char *
convert_to_storage(const char *text, ContentKind kind)
{
	Conversion	c;

	c.utf8 = to_utf8(text, strlen(text));
	c.kind = kind;
	c.caller = CurrentMemoryContext;
	c.result = NULL;
	in_cmark_context(convert_utf8, &c);
	return c.result;
}

/* cfdw_storage_check's and cfdw_storage_equal's arguments and answer */
typedef struct StorageCall
{
	const char *a;
	size_t		alen;
	const char *b;				/* the comparison's second body */
	size_t		blen;
	CfdwXmlFault *fault;		/* the check's, or NULL */
	int			answer;
} StorageCall;

static void
storage_check_call(void *arg)
{
	StorageCall *sc = arg;

	sc->answer = cfdw_storage_check(sc->a, sc->alen, sc->fault, &pg_cmark_mem);
}

static void
storage_equal_call(void *arg)
{
	StorageCall *sc = arg;

	sc->answer = cfdw_storage_equal(sc->a, sc->alen, sc->b, sc->blen, &pg_cmark_mem);
}

/* cfdw_storage_check of a UTF-8 body, its buffers in cmark_cxt */
static bool
storage_check(const char *utf8, size_t len, CfdwXmlFault *fault)
{
	StorageCall sc = {utf8, len, NULL, 0, fault, 0};

	in_cmark_context(storage_check_call, &sc);
	return sc.answer != 0;
}

/* The text of one line of a body, shortened around a column, for DETAIL. */
static char *
line_excerpt(const char *body, int line, int column)
{
	const char *start = body;
	const char *end;
	int			from;

	for (int i = 1; i < line && start; i++)
	{
		start = strchr(start, '\n');
		if (start)
			start++;
	}
	if (start == NULL)
		return pstrdup("");
	end = strchrnul(start, '\n');
	from = column > 60 ? column - 60 : 0;
	if (from > end - start)
		from = end - start;
	/* never cut a multibyte character */
	while (from > 0 && (start[from] & 0xC0) == 0x80)
		from--;
	return psprintf("%s%.*s%s", from > 0 ? "..." : "",
					pg_mbcliplen(start + from, end - start - from, 120),
					start + from, (end - start - from) > 120 ? "..." : "");
}

/*
 * Raise 22P02 unless body (in the database encoding) is well-formed storage.
 * column names where it came from.
 */
static void
check_storage(const CfdwTable *t, const char *column, const char *body)
{
	CfdwXmlFault fault;
	char	   *utf8 = to_utf8(body, strlen(body));

	/*
	 * Confluence refuses it anyway, and libxml2 2.9 cannot check a text or
	 * CDATA node over 10 MB: say what the trouble really is.
	 */
	if (strlen(utf8) > CFDW_MAX_REQUEST_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("column \"%s\" of foreign table \"%s\" is %zu bytes of storage format, over Confluence's limit of %d bytes for a request",
						column, t->relname, strlen(utf8), CFDW_MAX_REQUEST_BYTES),
				 errhint("Nothing was sent for this row.")));
	if (storage_check(utf8, strlen(utf8), &fault))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("column \"%s\" of foreign table \"%s\" is not well-formed storage format: line %d, column %d: %s",
					column, t->relname, fault.line, fault.column, fault.message),
			 errdetail("Line %d: %s", fault.line, line_excerpt(body, fault.line, fault.column)),
			 errhint("Nothing was sent for this row.  Write & as &amp; and close every element, or send the text with representation 'markdown' or 'plain'.")));
}

/*
 * The storage body a written value becomes: converted when it is Markdown
 * or plain text, checked when it is (or became) storage.  NULL for a
 * representation Confluence converts itself (wiki, atlas_doc_format).
 */
static char *
storage_body(const CfdwTable *t, const char *column, const char *value, ContentKind kind)
{
	char	   *storage;

	if (kind == CONTENT_OTHER)
		return NULL;
	storage = kind == CONTENT_STORAGE ? (char *) value : convert_to_storage(value, kind);
	check_storage(t, column, storage);
	return storage;
}

static void
replace_string(cJSON *parent, const char *key, const char *text)
{
	cJSON	   *item = cJSON_CreateString(text);

	if (item == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(parent, key, item))
	{
		cJSON_Delete(item);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a Confluence request")));
	}
}

/* A template's body: body.value in body.representation. */
static void
prepare_template_body(const CfdwTable *t, cJSON *root)
{
	cJSON	   *body = cJSON_GetObjectItemCaseSensitive(root, "body");
	cJSON	   *value = cJSON_GetObjectItemCaseSensitive(body, "value");
	cJSON	   *repr = cJSON_GetObjectItemCaseSensitive(body, "representation");
	ContentKind kind;
	char	   *storage;

	if (!cJSON_IsObject(body) || !cJSON_IsString(value) || !cJSON_IsString(repr))
		return;
	kind = content_kind(repr->valuestring);
	storage = storage_body(t, cfdw_column_for_field(t, "body.value"), value->valuestring, kind);
	if (storage == NULL || kind == CONTENT_STORAGE)
		return;
	replace_string(body, "value", storage);
	replace_string(body, "representation", "storage");
}

/* A manual table's column with a representation option, at its field. */
static void
prepare_column(const CfdwTable *t, const CfdwColumn *col, cJSON *root)
{
	cJSON	   *parent = root;
	ListCell   *lc;
	const char *key = NULL;
	cJSON	   *value;
	char	   *storage;

	foreach(lc, col->field_path)
	{
		key = strVal(lfirst(lc));
		if (lnext(col->field_path, lc) == NULL)
			break;
		parent = cJSON_GetObjectItemCaseSensitive(parent, key);
	}
	value = key ? cJSON_GetObjectItemCaseSensitive(parent, key) : NULL;
	if (!cJSON_IsString(value))
		return;
	storage = storage_body(t, col->name, value->valuestring,
						   content_kind(col->representation));
	if (storage != value->valuestring)
		replace_string(parent, key, storage);
}

/*
 * cfdw_prepare_content
 *		Convert and check the storage bodies of one row's request body (a
 *		cJSON object), before anything checks what Confluence requires of it.
 */
void
cfdw_prepare_content(const CfdwTable *t, void *json_root)
{
	cJSON	   *root = (cJSON *) json_root;

	if (!cJSON_IsObject(root))
		return;
	if (t->template)
	{
		prepare_template_body(t, root);
		return;
	}
	for (int i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (col->send && col->representation && col->field_path != NIL)
			prepare_column(t, col, root);
	}
}

/*
 * cfdw_same_storage
 *		Whether a page's current storage body says what a row would send
 *		(both in UTF-8, as they travel): equal once what Confluence adds on
 *		save is left out (storage.c).
 */
bool
cfdw_same_storage(const char *current, const char *wanted)
{
	StorageCall sc = {current, strlen(current), wanted, strlen(wanted), NULL, -1};
	int			same;

	in_cmark_context(storage_equal_call, &sc);
	same = sc.answer;

	/* a body that is not XML is the same only byte for byte */
	return same == 1 || (same < 0 && strcmp(current, wanted) == 0);
}

/* ---------------------------------------------------------------------
 * SQL helpers
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(confluence_fdw_markdown_to_storage);
PG_FUNCTION_INFO_V1(confluence_fdw_text_to_storage);
PG_FUNCTION_INFO_V1(confluence_fdw_storage_is_well_formed);

/* markdown_to_storage(text) RETURNS text */
Datum
confluence_fdw_markdown_to_storage(PG_FUNCTION_ARGS)
{
	char	   *md = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(convert_to_storage(md, CONTENT_MARKDOWN)));
}

/* text_to_storage(text) RETURNS text */
Datum
confluence_fdw_text_to_storage(PG_FUNCTION_ARGS)
{
	char	   *plain = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(convert_to_storage(plain, CONTENT_PLAIN)));
}

/* storage_is_well_formed(text) RETURNS boolean */
Datum
confluence_fdw_storage_is_well_formed(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	char	   *utf8 = to_utf8(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
	size_t		len = utf8 == VARDATA_ANY(body) ? VARSIZE_ANY_EXHDR(body) : strlen(utf8);

	PG_RETURN_BOOL(storage_check(utf8, len, NULL));
}
