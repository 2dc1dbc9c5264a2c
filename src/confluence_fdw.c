/*-------------------------------------------------------------------------
 *
 * confluence_fdw.c
 *		  The handler of confluence_fdw: the FdwRoutine, the SQL functions
 *		  and _PG_init.  The callbacks live with their concerns (scan.c for
 *		  SELECT, insert.c for INSERT, modify.c for UPDATE and DELETE,
 *		  templates.c for IMPORT FOREIGN SCHEMA).
 *
 * IDENTIFICATION
 *		  src/confluence_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "catalog/pg_user_mapping.h"
#include "foreign/fdwapi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "confluence_fdw.h"
#include "pure.h"

PG_MODULE_MAGIC;

char	   *cfdw_allowed_hosts = NULL;
char	   *cfdw_database_name = NULL;
int			cfdw_queue_retention_s = 7 * 24 * 3600;
bool		cfdw_preloaded = false;

void
_PG_init(void)
{
	DefineCustomStringVariable("confluence_fdw.allowed_hosts",
							   "Hosts that servers of roles other than superusers may connect to.",
							   "Comma-separated host names; *.domain matches any name under domain. "
							   "Such servers are also refused loopback, link-local and private addresses.",
							   &cfdw_allowed_hosts,
							   "*.atlassian.net,api.atlassian.com,auth.atlassian.com",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	/*
	 * The worker's database is fixed at server start.  PostgreSQL refuses to
	 * define a PGC_POSTMASTER setting in a library loaded later (a backend
	 * that loads us for an immediate INSERT).  Without the preload there is
	 * no worker, so the setting is kept only to be shown (rather than
	 * reported as an invalid name when postgresql.conf has it).
	 */
	cfdw_preloaded = process_shared_preload_libraries_in_progress;
	DefineCustomStringVariable("confluence_fdw.database_name",
							   "Database whose queue the confluence_fdw worker sends.",
							   "Tables with delivery 'queue' work only in this database.",
							   &cfdw_database_name, "postgres",
							   cfdw_preloaded ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);
	DefineCustomIntVariable("confluence_fdw.queue_retention",
							"How long rows that were delivered stay in confluence_fdw.queue.",
							"Rows in state dead or in_doubt stay until requeued or deleted.",
							&cfdw_queue_retention_s, 7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	MarkGUCPrefixReserved("confluence_fdw");
	cfdw_transport_init();

	/* the worker and the shared rate limits need the postmaster's help */
	if (cfdw_preloaded)
		cfdw_worker_register();
}

PG_FUNCTION_INFO_V1(confluence_fdw_handler);

static List *
confluenceImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	return cfdw_import_schema(stmt, serverOid);
}

Datum
confluence_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	/* SELECT (scan.c), INSERT and COPY FROM (insert.c), UPDATE and DELETE */
	cfdw_scan_routine(routine);
	cfdw_insert_routine(routine);
	cfdw_modify_routine(routine);

	routine->ImportForeignSchema = confluenceImportForeignSchema;

	PG_RETURN_POINTER(routine);
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(confluence_fdw_test_connection);

/* The columns of test_connection's answer. */
enum
{
	TC_OK,
	TC_STATUS,
	TC_MESSAGE,
	TC_ACCOUNT_ID,
	TC_DISPLAY_NAME,
	TC_EMAIL,
	TC_NCOLUMNS
};

/* Who the credentials belong to (v1: v2 has no such endpoint). */
#define TC_USER_PATH "/wiki/rest/api/user/current"

/* One GET of the test, by path; no retries: the answer is what is wanted. */
static void
test_get(CfdwConnection *conn, CfdwTable *t, const char *path, CfdwRequest *req,
		 CfdwResponse *resp)
{
	memset(req, 0, sizeof(CfdwRequest));
	req->method = CFDW_GET;
	req->url = psprintf("%s%s", t->base, path);
	req->path_for_messages = path;
	cfdw_send(conn, t, req, resp);
}

/* A non-empty string at a key of the answer, or NULL. */
static char *
answer_string(void *jsonb, const char *key)
{
	char	   *v = cfdw_jsonb_text_at(jsonb, key);

	return v && v[0] ? v : NULL;
}

/*
 * Who the credentials belong to, from GET /wiki/rest/api/user/current:
 * fills the identity columns; false with *line when the answer is a
 * failure that ends the test (a scope failure does not: the read is tested
 * anyway, and *line says why nobody is named).
 */
static bool
test_identity(CfdwConnection *conn, CfdwTable *t, Datum *values, bool *nulls,
			  char **line)
{
	CfdwRequest req;
	CfdwResponse resp;
	void	   *jb;
	char	   *v;

	*line = NULL;
	test_get(conn, t, TC_USER_PATH, &req, &resp);
	if (resp.outcome == CFDW_ANSWERED && resp.status == 401 &&
		pg_strcasecmp(resp.failure_category, "FAILURE_CLIENT_SCOPE_CHECK") == 0)
	{
		const CfdwScope *scope = cfdw_scope_find("GET", TC_USER_PATH);

		*line = psprintf("the token lacks scope %s (GET %s) to say whose it is",
						 scope ? scope->scope : "read:confluence-user", TC_USER_PATH);
		return true;
	}
	if (resp.outcome != CFDW_ANSWERED || resp.status < 200 || resp.status >= 300)
	{
		values[TC_OK] = BoolGetDatum(false);
		nulls[TC_STATUS] = resp.outcome != CFDW_ANSWERED;
		values[TC_STATUS] = Int32GetDatum((int32) resp.status);
		*line = cfdw_test_summary(t, &req, &resp);
		return false;
	}
	jb = cfdw_answer_jsonb(&resp);
	if ((v = answer_string(jb, "accountId")) != NULL)
		values[TC_ACCOUNT_ID] = CStringGetTextDatum(v), nulls[TC_ACCOUNT_ID] = false;
	if ((v = answer_string(jb, "displayName")) != NULL ||
		(v = answer_string(jb, "publicName")) != NULL)
		values[TC_DISPLAY_NAME] = CStringGetTextDatum(v), nulls[TC_DISPLAY_NAME] = false;
	/* only where the account's privacy settings show it */
	if ((v = answer_string(jb, "email")) != NULL)
		values[TC_EMAIL] = CStringGetTextDatum(v), nulls[TC_EMAIL] = false;
	return true;
}

/* " as Jane Doe (jane@acme.com, account 5b10...)", from what is known. */
static char *
identity_words(const Datum *values, const bool *nulls)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (!nulls[TC_EMAIL])
		appendStringInfoString(&buf, TextDatumGetCString(values[TC_EMAIL]));
	if (!nulls[TC_ACCOUNT_ID])
		appendStringInfo(&buf, "%saccount %s", buf.len > 0 ? ", " : "",
						 TextDatumGetCString(values[TC_ACCOUNT_ID]));
	if (!nulls[TC_DISPLAY_NAME])
		return psprintf(" as %s%s%s%s", TextDatumGetCString(values[TC_DISPLAY_NAME]),
						buf.len > 0 ? " (" : "", buf.data, buf.len > 0 ? ")" : "");
	return buf.len > 0 ? psprintf(" as %s", buf.data) : "";
}

/*
 * confluence_fdw_test_connection(server_name) -> (ok, http_status, message,
 *		account_id, display_name, email)
 *		The SQL form of a connector's Test button, with the caller's user
 *		mapping: who the credentials belong to (GET
 *		/wiki/rest/api/user/current), and whether they may read (GET
 *		/wiki/api/v2/spaces?limit=1).  Problems are answered, not raised.
 */
Datum
confluence_fdw_test_connection(PG_FUNCTION_ARGS)
{
	char	   *servername = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ForeignServer *server = GetForeignServerByName(servername, false);
	TupleDesc	tupdesc;
	Datum		values[TC_NCOLUMNS] = {0};
	bool		nulls[TC_NCOLUMNS] = {false, true, false, true, true, true};
	Oid			umid;
	UserMapping *um;
	char	   *problem;
	const char *hint;
	CfdwTable  *t;
	CfdwConnection *conn;
	CfdwRequest req;
	CfdwResponse resp;

	/*
	 * 1.0's function has the first three columns only: heap_form_tuple
	 * takes as many values as the row type has, so a library newer than the
	 * SQL (before ALTER EXTENSION UPDATE) still answers.
	 */
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE ||
		tupdesc->natts > TC_NCOLUMNS || tupdesc->natts < TC_MESSAGE + 1)
		elog(ERROR, "return type must be a row type of test_connection's columns");
	tupdesc = BlessTupleDesc(tupdesc);
	values[TC_OK] = BoolGetDatum(false);

	umid = cfdw_find_user_mapping(GetUserId(), server->serverid);
	if (!OidIsValid(umid))
	{
		values[TC_MESSAGE] = CStringGetTextDatum(psprintf("no user mapping for role \"%s\" on server \"%s\": CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (username '...', api_token '...')",
														  GetUserNameFromId(GetUserId(), false),
														  server->servername,
														  quote_identifier(server->servername)));
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	um = GetUserMapping(GetUserId(), server->serverid);
	problem = cfdw_server_problem(server, um, &hint);
	if (problem)
	{
		values[TC_MESSAGE] = CStringGetTextDatum(psprintf("%s: %s", problem, hint));
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	t = palloc0(sizeof(CfdwTable));
	t->relname = "(test connection)";
	cfdw_resolve_server(t, server, um);

	/* OAuth client credentials: no token, no request (and the reason why) */
	problem = cfdw_oauth_check(&t->site);
	if (problem)
	{
		values[TC_MESSAGE] = CStringGetTextDatum(problem);
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	/* one request at a time, no retries: each answer is what the user sees */
	t->max_retries = 0;
	conn = cfdw_get_connection(&t->site);
	PG_TRY();
	{
		char	   *identity_line;

		if (!test_identity(conn, t, values, nulls, &identity_line))
			values[TC_MESSAGE] = CStringGetTextDatum(identity_line);
		else
		{
			test_get(conn, t, "/wiki/api/v2/spaces?limit=1", &req, &resp);
			values[TC_OK] = BoolGetDatum(resp.outcome == CFDW_ANSWERED &&
										 resp.status >= 200 && resp.status < 300);
			nulls[TC_STATUS] = resp.outcome != CFDW_ANSWERED;
			values[TC_STATUS] = Int32GetDatum((int32) resp.status);
			if (!DatumGetBool(values[TC_OK]))
				values[TC_MESSAGE] = CStringGetTextDatum(cfdw_test_summary(t, &req, &resp));
			else if (identity_line)
				values[TC_MESSAGE] = CStringGetTextDatum(psprintf("connected to %s and authenticated, but %s",
																  t->base, identity_line));
			else
				values[TC_MESSAGE] = CStringGetTextDatum(psprintf("connected to %s and authenticated%s",
																  t->base, identity_words(values, nulls)));
		}
	}
	PG_FINALLY();
	{
		cfdw_release_connection(conn, &t->site);
	}
	PG_END_TRY();

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(confluence_fdw_disconnect_all);

/*
 * confluence_fdw_disconnect_all() -> boolean
 *		Close every cached connection of this backend; true if any was open.
 */
Datum
confluence_fdw_disconnect_all(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(cfdw_disconnect_all() > 0);
}
