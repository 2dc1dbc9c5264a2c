/*-------------------------------------------------------------------------
 *
 * templates.c
 *		  The endpoint templates of confluence_fdw (pages, footer_comments,
 *		  blogposts, inline_comments), the checks each makes on a row before
 *		  it is sent, and IMPORT FOREIGN SCHEMA v2, which creates them.
 *
 * A template is a row of templates[]: its paths, the body it takes, its
 * columns with their request fields or response paths, and the checks its
 * rows get.  Tables created by IMPORT carry the columns' mapping as explicit
 * column options, so what is sent is visible in \d+; a table created by hand
 * with endpoint 'pages' gets the same mapping by column name.
 *
 * SELECT reads the same columns from the list endpoint's items: a request
 * column from its field (a body from body.storage, where Confluence puts
 * it), a response column from its response path.  A template also says
 * which WHERE clauses its list endpoint can filter by (pushables) and what
 * it can do: spaces are read-only, comments cannot be updated here.
 *
 * IDENTIFICATION
 *		  src/templates.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "foreign/fdwapi.h"
#include "nodes/nodes.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "confluence_fdw.h"

/*
 * Response columns every template has (README "Templates").  Comments have no
 * createdAt of their own in v2, only their first version's: created_at
 * reads that, so it is never NULL.
 */
#define RESPONSE_COLUMNS_WITH(created_at_path) \
	{"id", "text", NULL, "id"}, \
	{"version", "integer", NULL, "version.number"}, \
	{"created_at", "timestamptz", NULL, created_at_path}, \
	{"webui", "text", NULL, "_links.webui"}, \
	{"response", "jsonb", NULL, "."}, \
	{"http_status", "integer", NULL, "$status"}
#define RESPONSE_COLUMNS RESPONSE_COLUMNS_WITH("createdAt")

/* A body is sent flat and read from the representation it was asked for. */
#define BODY_COLUMNS \
	{"body", "text", "body.value", NULL, "body.storage.value"}, \
	{"representation", "text", "body.representation", NULL, "body.storage.representation"}
#define COMMENT_RESPONSE_COLUMNS RESPONSE_COLUMNS_WITH("version.createdAt")

static const CfdwTemplateColumn pages_columns[] = {
	{"space_id", "text", "spaceId", NULL},
	{"title", "text", "title", NULL},
	BODY_COLUMNS,
	{"status", "text", "status", NULL},
	{"parent_id", "text", "parentId", NULL},
	{"subtype", "text", "subtype", NULL},
	RESPONSE_COLUMNS,
	{NULL}
};

static const CfdwTemplateColumn footer_comments_columns[] = {
	{"page_id", "text", "pageId", NULL},
	{"blog_post_id", "text", "blogPostId", NULL},
	{"parent_comment_id", "text", "parentCommentId", NULL},
	{"attachment_id", "text", "attachmentId", NULL},
	{"custom_content_id", "text", "customContentId", NULL},
	BODY_COLUMNS,
	COMMENT_RESPONSE_COLUMNS,
	{NULL}
};

static const CfdwTemplateColumn blogposts_columns[] = {
	{"space_id", "text", "spaceId", NULL},
	{"title", "text", "title", NULL},
	BODY_COLUMNS,
	{"status", "text", "status", NULL},
	RESPONSE_COLUMNS,
	{NULL}
};

/* Spaces are read-only: every column comes from the listed item. */
static const CfdwTemplateColumn spaces_columns[] = {
	{"id", "text", NULL, "id"},
	{"key", "text", NULL, "key"},
	{"name", "text", NULL, "name"},
	{"type", "text", NULL, "type"},
	{"status", "text", NULL, "status"},
	{"homepage_id", "text", NULL, "homepageId"},
	{"created_at", "timestamptz", NULL, "createdAt"},
	{"webui", "text", NULL, "_links.webui"},
	{"response", "jsonb", NULL, "."},
	{NULL}
};

static const CfdwTemplateColumn inline_comments_columns[] = {
	{"page_id", "text", "pageId", NULL},
	{"blog_post_id", "text", "blogPostId", NULL},
	{"parent_comment_id", "text", "parentCommentId", NULL},
	BODY_COLUMNS,
	{"text_selection", "text", "inlineCommentProperties.textSelection", NULL},
	{"text_selection_match_count", "integer", "inlineCommentProperties.textSelectionMatchCount", NULL},
	{"text_selection_match_index", "integer", "inlineCommentProperties.textSelectionMatchIndex", NULL},
	COMMENT_RESPONSE_COLUMNS,
	{NULL}
};

/*
 * The body representations Confluence's v2 endpoints accept (PageBodyWrite,
 * BlogPostBodyWrite and CommentBodyWrite list the same three).  The first
 * is the default of the table option representation.
 */
static const char *const representations[] = {
	"storage", "atlas_doc_format", "wiki", NULL
};

/* What a table or row may say: Confluence's, and what content.c converts. */
static const char *const written_representations[] = {
	"storage", "atlas_doc_format", "wiki", "markdown", "plain", NULL
};

/*
 * The WHERE clauses each list endpoint can filter by (Atlassian's spec:
 * GET /pages takes up to 250 ids and 100 space ids), and how many rows one
 * value is expected to match, for the planner.  A PATH pushable replaces
 * the list with another endpoint: one object, or a container's comments.
 */
/*
 * The statuses a list can filter by: a draft, for one, is never listed, and
 * asking for it is a 400.  A clause on another status is checked locally.
 */
static const char *const page_statuses[] = {"current", "archived", "deleted", "trashed", NULL};
static const char *const blogpost_statuses[] = {"current", "deleted", "trashed", NULL};
static const char *const space_statuses[] = {"current", "archived", NULL};

#define CONTENT_PUSHABLES(statuses_) \
	{"id", CFDW_PUSH_QUERY, "id", 250, 1}, \
	{"title", CFDW_PUSH_QUERY, "title", 1, 1}, \
	{"spaceId", CFDW_PUSH_QUERY, "space-id", 100, 500}, \
	{"status", CFDW_PUSH_QUERY, "status", 8, 5000, statuses_}, \
	{NULL}

static const CfdwPushable page_pushables[] = {
	CONTENT_PUSHABLES(page_statuses)
};

static const CfdwPushable blogpost_pushables[] = {
	CONTENT_PUSHABLES(blogpost_statuses)
};

static const CfdwPushable spaces_pushables[] = {
	{"id", CFDW_PUSH_QUERY, "ids", 250, 1},
	{"key", CFDW_PUSH_QUERY, "keys", 250, 1},
	{"type", CFDW_PUSH_QUERY, "type", 1, 50},
	{"status", CFDW_PUSH_QUERY, "status", 1, 50, space_statuses},
	{NULL}
};

#define COMMENT_PUSHABLES(segment_) \
	{"id", CFDW_PUSH_PATH, "/wiki/api/v2/" segment_ "/{id}", 1, 1}, \
	{"pageId", CFDW_PUSH_PATH, "/wiki/api/v2/pages/{pageId}/" segment_, 1, 10}, \
	{"blogPostId", CFDW_PUSH_PATH, "/wiki/api/v2/blogposts/{blogPostId}/" segment_, 1, 10}, \
	{NULL}

static const CfdwPushable footer_comment_pushables[] = {
	COMMENT_PUSHABLES("footer-comments")
};

static const CfdwPushable inline_comment_pushables[] = {
	COMMENT_PUSHABLES("inline-comments")
};

/* What a row of each template must have; see cfdw_check_required. */
static void check_page_row(const CfdwTable *t, void *json_root);
static void check_footer_comment_row(const CfdwTable *t, void *json_root);
static void check_inline_comment_row(const CfdwTable *t, void *json_root);

/*
 * The templates: everything that differs between them is here, so that
 * nothing else needs to know a template by its name.  An object is created
 * with POST on the list path, /wiki/api/v2/<segment>, and read, updated and
 * deleted at its item path, /wiki/api/v2/<segment>/{id}, where {id} is the
 * id column.  IMPORT names each table after its template.
 */
#define CAN(cmd) (1 << (cmd))
#define V2_TEMPLATE(name_, segment_, columns_, check_row_, commands_, \
					pushables_, rows_, update_drops_) \
	{ \
		.name = name_, \
		.table_name = name_, \
		.method = CFDW_POST, \
		.path = "/wiki/api/v2/" segment_, \
		.item_path = "/wiki/api/v2/" segment_ "/{id}", \
		.list_path = "/wiki/api/v2/" segment_, \
		.format = CFDW_FORMAT_JSON, \
		.representations = representations, \
		.columns = columns_, \
		.check_row = check_row_, \
		.commands = commands_, \
		.pushables = pushables_, \
		.rows = rows_, \
		.update_drops = update_drops_ \
	}

/*
 * Comments are versioned too, but an UPDATE of one would need the body only;
 * they are created and deleted here.  A PUT of a page takes no subtype.
 */
static const CfdwTemplate templates[] = {
	V2_TEMPLATE("pages", "pages", pages_columns, check_page_row,
				CAN(CMD_INSERT) | CAN(CMD_SELECT) | CAN(CMD_UPDATE) | CAN(CMD_DELETE),
				page_pushables, 10000, "subtype"),
	V2_TEMPLATE("footer_comments", "footer-comments", footer_comments_columns,
				check_footer_comment_row,
				CAN(CMD_INSERT) | CAN(CMD_SELECT) | CAN(CMD_DELETE),
				footer_comment_pushables, 10000, NULL),
	V2_TEMPLATE("blogposts", "blogposts", blogposts_columns, check_page_row,
				CAN(CMD_INSERT) | CAN(CMD_SELECT) | CAN(CMD_UPDATE) | CAN(CMD_DELETE),
				blogpost_pushables, 10000, NULL),
	V2_TEMPLATE("inline_comments", "inline-comments", inline_comments_columns,
				check_inline_comment_row,
				CAN(CMD_INSERT) | CAN(CMD_SELECT) | CAN(CMD_DELETE),
				inline_comment_pushables, 10000, NULL),
	V2_TEMPLATE("spaces", "spaces", spaces_columns, NULL,
				CAN(CMD_SELECT), spaces_pushables, 100, NULL),
	{NULL}
};

const CfdwTemplate *
cfdw_find_template(const char *name)
{
	const CfdwTemplate *t;

	for (t = templates; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* "pages, footer_comments, ...": the template names for messages, palloc'd. */
const char *
cfdw_template_names(void)
{
	StringInfoData buf;
	const CfdwTemplate *t;

	initStringInfo(&buf);
	for (t = templates; t->name; t++)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", t->name);
	return buf.data;
}

static bool
word_in(const char *const *words, const char *word)
{
	const char *const *w;

	for (w = words; *w; w++)
		if (strcmp(*w, word) == 0)
			return true;
	return false;
}

/* "a, b or c" for messages: the words, the last two joined by conjunction. */
static char *
join_words(const char *const *words, const char *conjunction)
{
	StringInfoData buf;
	const char *const *w;

	initStringInfo(&buf);
	for (w = words; *w; w++)
	{
		if (w != words && w[1] != NULL)
			appendStringInfoString(&buf, ", ");
		else if (w != words)
			appendStringInfo(&buf, " %s ", conjunction);
		appendStringInfoString(&buf, *w);
	}
	return buf.data;
}

/* Whether a table may say this representation (option representation). */
bool
cfdw_valid_representation(const char *value)
{
	return word_in(written_representations, value);
}

/* The hint for an invalid representation: "Use storage, ... or plain." */
char *
cfdw_representation_hint(void)
{
	return psprintf("Use %s.", join_words(written_representations, "or"));
}

/* What a table sends when it has no representation option. */
const char *
cfdw_default_representation(void)
{
	return representations[0];
}

/*
 * Where a read item holds the value of a request field: the template
 * column's read_field when it has one (body.value is read from
 * body.storage.value), else the field itself.
 */
const char *
cfdw_template_read_field(const CfdwTemplate *tmpl, const char *field)
{
	const CfdwTemplateColumn *c;

	if (tmpl == NULL)
		return field;
	for (c = tmpl->columns; c->name; c++)
		if (c->field && c->read_field && strcmp(c->field, field) == 0)
			return c->read_field;
	return field;
}

/* The pushable of a read field, or NULL: that column is filtered locally. */
const CfdwPushable *
cfdw_find_pushable(const CfdwTemplate *tmpl, const char *field)
{
	const CfdwPushable *p;

	if (tmpl == NULL || field == NULL)
		return NULL;
	for (p = tmpl->pushables; p->field; p++)
		if (strcmp(p->field, field) == 0)
			return p;
	return NULL;
}

const CfdwTemplateColumn *
cfdw_template_column(const CfdwTemplate *tmpl, const char *colname)
{
	const CfdwTemplateColumn *c;

	for (c = tmpl->columns; c->name; c++)
		if (strcmp(c->name, colname) == 0)
			return c;
	return NULL;
}

/*
 * The column that writes a top-level (or dotted) request field, for naming
 * it in a message; the field itself when no column does.
 */
const char *
cfdw_column_for_field(const CfdwTable *t, const char *field)
{
	int			i;

	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i].send && t->columns[i].field &&
			strcmp(t->columns[i].field, field) == 0)
			return t->columns[i].name;
	return field;
}

static bool
has_value(cJSON *obj, const char *name)
{
	cJSON	   *item = cJSON_GetObjectItemCaseSensitive(obj, name);

	return item != NULL && !cJSON_IsNull(item);
}

static void
missing(const CfdwTable *t, const char *field, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("null value in column \"%s\" of foreign table \"%s\"",
					cfdw_column_for_field(t, field), t->relname),
			 errdetail("%s", why),
			 errhint("Nothing was sent for this row.")));
}

/*
 * One container id, as footer and inline comments need: exactly one of the
 * given fields.  Returns the one found.
 */
static const char *
one_container(const CfdwTable *t, cJSON *root, const char *const *fields)
{
	const char *found = NULL;
	const char *const *f;
	StringInfoData names;

	initStringInfo(&names);
	for (f = fields; *f; f++)
	{
		appendStringInfo(&names, "%s%s", names.len ? ", " : "", cfdw_column_for_field(t, *f));
		if (!has_value(root, *f))
			continue;
		if (found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("columns \"%s\" and \"%s\" of foreign table \"%s\" are both set",
							cfdw_column_for_field(t, found), cfdw_column_for_field(t, *f), t->relname),
					 errdetail("A %s request takes exactly one container id.", t->template->name),
					 errhint("Nothing was sent for this row.")));
		found = *f;
	}
	if (found == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("a container id is required for foreign table \"%s\"", t->relname),
				 errdetail("Set exactly one of: %s.", names.data),
				 errhint("Nothing was sent for this row.")));
	return found;
}

/* A page or blog post: a space, and a title unless it is a draft. */
static void
check_page_row(const CfdwTable *t, void *json_root)
{
	cJSON	   *root = (cJSON *) json_root;
	cJSON	   *status = cJSON_GetObjectItemCaseSensitive(root, "status");
	bool		draft = cJSON_IsString(status) &&
		strcmp(cJSON_GetStringValue(status), "draft") == 0;
	cJSON	   *title = cJSON_GetObjectItemCaseSensitive(root, "title");

	if (!has_value(root, "spaceId"))
		missing(t, "spaceId", "Confluence needs the id of the space to create the page or blog post in.");
	if (!draft && (!has_value(root, "title") ||
				   (cJSON_IsString(title) && title->valuestring[0] == '\0')))
		missing(t, "title", "A page or blog post needs a non-empty title unless its status is 'draft'.");
}

/* Comments of both kinds need a body. */
static void
require_comment_body(const CfdwTable *t, cJSON *root)
{
	cJSON	   *body = cJSON_GetObjectItemCaseSensitive(root, "body");

	if (body == NULL || !has_value(body, "value"))
		missing(t, "body.value", "A comment needs a body.");
}

/* A footer comment: a body, on exactly one thing that can hold comments. */
static void
check_footer_comment_row(const CfdwTable *t, void *json_root)
{
	static const char *const containers[] = {
		"pageId", "blogPostId", "parentCommentId", "attachmentId",
		"customContentId", NULL
	};
	cJSON	   *root = (cJSON *) json_root;

	one_container(t, root, containers);
	require_comment_body(t, root);
}

/*
 * An inline comment: a body on exactly one page, blog post or comment; a
 * top-level one (not a reply) also says which text it highlights.
 */
static void
check_inline_comment_row(const CfdwTable *t, void *json_root)
{
	static const char *const containers[] = {
		"pageId", "blogPostId", "parentCommentId", NULL
	};
	cJSON	   *root = (cJSON *) json_root;
	const char *container = one_container(t, root, containers);
	cJSON	   *props;

	require_comment_body(t, root);
	if (strcmp(container, "parentCommentId") == 0)
		return;
	props = cJSON_GetObjectItemCaseSensitive(root, "inlineCommentProperties");
	if (props == NULL || !has_value(props, "textSelection"))
		missing(t, "inlineCommentProperties.textSelection",
				"A top-level inline comment needs the text it highlights.");
	if (!has_value(props, "textSelectionMatchCount"))
		missing(t, "inlineCommentProperties.textSelectionMatchCount",
				"A top-level inline comment needs the number of matches of its text.");
	if (!has_value(props, "textSelectionMatchIndex"))
		missing(t, "inlineCommentProperties.textSelectionMatchIndex",
				"A top-level inline comment needs the index of the match it highlights.");
}

/*
 * cfdw_check_required
 *		Check a built JSON body against what the template's endpoint requires,
 *		so that a row Confluence would refuse is refused before it is sent:
 *		a representation the template takes, then the template's own rules.
 */
void
cfdw_check_required(const CfdwTable *t, void *json_root)
{
	const CfdwTemplate *tmpl = t->template;
	cJSON	   *root = (cJSON *) json_root;
	cJSON	   *body;

	if (tmpl == NULL || tmpl->check_row == NULL || !cJSON_IsObject(root))
		return;
	body = cJSON_GetObjectItemCaseSensitive(root, "body");
	if (cJSON_IsObject(body))
	{
		cJSON	   *repr = cJSON_GetObjectItemCaseSensitive(body, "representation");

		if (cJSON_IsString(repr) &&
			!word_in(tmpl->representations, repr->valuestring))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value \"%s\" in column \"%s\" of foreign table \"%s\"",
							repr->valuestring, cfdw_column_for_field(t, "body.representation"),
							t->relname),
					 errdetail("Confluence accepts the representations %s; markdown and plain are converted to storage.",
							   join_words(tmpl->representations, "and")),
					 errhint("Nothing was sent for this row.")));
	}
	tmpl->check_row(t, root);
}

/*
 * cfdw_import_schema
 *		IMPORT FOREIGN SCHEMA v2: one CREATE FOREIGN TABLE per template, with
 *		every column's mapping spelled out as column options.
 */
List *
cfdw_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	List	   *commands = NIL;
	const CfdwTemplate *tmpl;

	if (strcmp(stmt->remote_schema, "v2") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("schema \"%s\" is not offered by confluence_fdw", stmt->remote_schema),
				 errhint("Use IMPORT FOREIGN SCHEMA v2, which offers the tables %s.",
						 cfdw_template_names())));

	for (tmpl = templates; tmpl->name; tmpl++)
	{
		StringInfoData buf;
		const CfdwTemplateColumn *c;

		/* The core filters by LIMIT TO / EXCEPT too; skip work early. */
		if (!IsImportableForeignTable(tmpl->table_name, stmt))
			continue;

		initStringInfo(&buf);
		appendStringInfo(&buf, "CREATE FOREIGN TABLE %s.%s (\n",
						 quote_identifier(stmt->local_schema),
						 quote_identifier(tmpl->table_name));
		for (c = tmpl->columns; c->name; c++)
		{
			appendStringInfo(&buf, "  %s %s OPTIONS (%s %s)%s\n",
							 quote_identifier(c->name), c->type,
							 c->field ? "field" : "response_field",
							 quote_literal_cstr(c->field ? c->field : c->response_field),
							 c[1].name ? "," : "");
		}
		appendStringInfo(&buf, ") SERVER %s OPTIONS (endpoint %s)",
						 quote_identifier(server->servername),
						 quote_literal_cstr(tmpl->name));
		commands = lappend(commands, buf.data);
	}
	return commands;
}
