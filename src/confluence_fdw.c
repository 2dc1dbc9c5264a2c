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

/*
 * confluence_fdw_test_connection(server_name) -> (ok, http_status, message)
 *		One cheap authenticated GET with the caller's user mapping: the SQL
 *		form of a connector's Test button.  Problems are answered, not raised.
 */
Datum
confluence_fdw_test_connection(PG_FUNCTION_ARGS)
{
	char	   *servername = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ForeignServer *server = GetForeignServerByName(servername, false);
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	Oid			umid;
	UserMapping *um;
	char	   *problem;
	const char *hint;
	CfdwTable  *t;
	CfdwConnection *conn;
	CfdwRequest req;
	CfdwResponse resp;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	umid = cfdw_find_user_mapping(GetUserId(), server->serverid);
	if (!OidIsValid(umid))
	{
		values[0] = BoolGetDatum(false);
		nulls[1] = true;
		values[2] = CStringGetTextDatum(psprintf("no user mapping for role \"%s\" on server \"%s\": CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (username '...', api_token '...')",
												 GetUserNameFromId(GetUserId(), false),
												 server->servername,
												 quote_identifier(server->servername)));
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	um = GetUserMapping(GetUserId(), server->serverid);
	problem = cfdw_server_problem(server, um, &hint);
	if (problem)
	{
		values[0] = BoolGetDatum(false);
		nulls[1] = true;
		values[2] = CStringGetTextDatum(psprintf("%s: %s", problem, hint));
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	t = palloc0(sizeof(CfdwTable));
	t->relname = "(test connection)";
	cfdw_resolve_server(t, server, um);

	memset(&req, 0, sizeof(req));
	req.method = CFDW_GET;
	req.url = psprintf("%s/wiki/api/v2/spaces?limit=1", t->base);
	req.path_for_messages = "/wiki/api/v2/spaces?limit=1";

	/* OAuth client credentials: no token, no request (and the reason why) */
	problem = cfdw_oauth_check(&t->site);
	if (problem)
	{
		values[0] = BoolGetDatum(false);
		nulls[1] = true;
		values[2] = CStringGetTextDatum(problem);
		PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
	}

	/* one request, no retries: the answer is what the user wants to see */
	t->max_retries = 0;
	conn = cfdw_get_connection(&t->site);
	PG_TRY();
	{
		cfdw_send(conn, t, &req, &resp);
		values[0] = BoolGetDatum(resp.outcome == CFDW_ANSWERED &&
								 resp.status >= 200 && resp.status < 300);
		if (resp.outcome == CFDW_ANSWERED)
			values[1] = Int32GetDatum((int32) resp.status);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(cfdw_test_summary(t, &resp));
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
