/*-------------------------------------------------------------------------
 *
 * queue.c
 *		  delivery 'queue': an INSERT writes its request into
 *		  confluence_fdw.queue in the user's transaction, and the worker
 *		  (worker.c), woken at COMMIT, sends it.  A rollback, or a rolled
 *		  back savepoint, takes the queue row with it, so nothing is sent.
 *
 * The queue is written as its owner (the role that created the extension),
 * as the core's foreign-key triggers act as a table's owner: users cannot
 * write queue rows themselves (a forged row would send anything with
 * anyone's credentials), and read only their own, by row-level security.
 *
 * IDENTIFICATION
 *		  src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "confluence_fdw.h"

/* Set by enqueueing, cleared at the end of every transaction. */
static bool wake_at_commit = false;
static bool release_callback_registered = false;

static SPIPlanPtr insert_plan = NULL;

/*
 * Wake the worker once the transaction that queued rows has committed and
 * let go of everything: after its locks are released, which is also after
 * its catalog invalidations went out.  Woken earlier (at XACT_EVENT_COMMIT,
 * when the rows are already visible), the worker could read a user mapping
 * that the same transaction changed from its stale cache, and send with
 * the old token.
 */
static void
queue_release_callback(ResourceReleasePhase phase, bool isCommit, bool isTopLevel,
					   void *arg)
{
	if (phase != RESOURCE_RELEASE_AFTER_LOCKS || !isTopLevel)
		return;
	if (isCommit && wake_at_commit)
		cfdw_wake_worker();
	wake_at_commit = false;
}

/* The worker is to look at the queue when this transaction commits. */
static void
wake_worker_at_commit(void)
{
	if (!release_callback_registered)
	{
		RegisterResourceReleaseCallback(queue_release_callback, NULL);
		release_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * cfdw_queue_check
 *		Refuse a queue table whose rows nobody would send: without the
 *		preloaded library there is no worker, and the worker serves one
 *		database.
 */
void
cfdw_queue_check(const CfdwTable *t)
{
	const char *db;

	if (!cfdw_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("foreign table \"%s\" has delivery 'queue', which needs confluence_fdw in shared_preload_libraries",
						t->relname),
				 errhint("Add confluence_fdw to shared_preload_libraries and restart the server, or use delivery 'immediate'.")));
	db = get_database_name(MyDatabaseId);
	if (db == NULL || strcmp(db, cfdw_database_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("foreign table \"%s\" has delivery 'queue', but the queue worker serves database \"%s\", not \"%s\"",
						t->relname, cfdw_database_name, db ? db : "?"),
				 errhint("Set confluence_fdw.database_name to this database and restart the server, or use delivery 'immediate'.")));
}

static Oid
rel_owner(Oid relid)
{
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/* The queue table's owner, or an error when the extension is damaged. */
static Oid
queue_owner(void)
{
	Oid			nsp = get_namespace_oid("confluence_fdw", false);
	Oid			relid = get_relname_relid("queue", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table confluence_fdw.queue does not exist"),
				 errhint("Reinstall the extension: DROP EXTENSION confluence_fdw CASCADE; CREATE EXTENSION confluence_fdw;")));
	return rel_owner(relid);
}

static void
prepare_insert(void)
{
	Oid			types[9] = {REGROLEOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare("INSERT INTO confluence_fdw.queue (enqueued_by, server_name, table_name,"
					   " template, method, url, content_type, body, context)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::pg_catalog.jsonb) RETURNING id",
					   9, types);
	if (plan == NULL)
		elog(ERROR, "confluence_fdw: could not prepare the queue insert: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "confluence_fdw: could not keep the queue insert plan");
	insert_plan = plan;
}

/* A text Datum, or a NULL marker. */
static void
text_arg(Datum *values, char *nulls, int i, const char *s)
{
	values[i] = s ? CStringGetTextDatum(s) : (Datum) 0;
	nulls[i] = s ? ' ' : 'n';
}

/* The queue row's values for a request (the body in the database encoding). */
static void
queue_args(const CfdwTable *t, Oid userid, const CfdwRequest *req,
		   const char *context, Datum *values, char *nulls)
{
	char	   *body = NULL;

	if (req->body)
		body = pg_any_to_server(req->body, (int) req->body_len, PG_UTF8);
	values[0] = ObjectIdGetDatum(userid);
	nulls[0] = ' ';
	text_arg(values, nulls, 1, t->servername);
	text_arg(values, nulls, 2,
			 quote_qualified_identifier(get_namespace_name(get_rel_namespace(t->relid)),
										get_rel_name(t->relid)));
	text_arg(values, nulls, 3, t->template ? t->template->name : NULL);
	text_arg(values, nulls, 4, cfdw_method_name(req->method));
	text_arg(values, nulls, 5, req->url);
	text_arg(values, nulls, 6, req->content_type);
	text_arg(values, nulls, 7, body);
	text_arg(values, nulls, 8, context);
}

/*
 * cfdw_enqueue
 *		Write a built request into the queue, in the current transaction,
 *		for the worker to send with userid's user mapping after COMMIT.
 *		Returns the queue row's id.
 */
int64
cfdw_enqueue(const CfdwTable *t, Oid userid, const CfdwRequest *req,
			 const char *context)
{
	Datum		values[9];
	char		nulls[9];
	CfdwPrivileged priv;
	bool		isnull;
	int64		id;
	int			rc;

	queue_args(t, userid, req, context, values, nulls);

	/* as the queue's owner, with search_path pinned (privileged.c) */
	cfdw_privileged_begin(queue_owner(), &priv);
	if (insert_plan == NULL)
		prepare_insert();
	rc = SPI_execute_plan(insert_plan, values, nulls, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "confluence_fdw: could not write the queue row: %s",
			 SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	cfdw_privileged_end(&priv);

	wake_worker_at_commit();
	return id;
}

/*
 * How many of the role's rows still wait to be sent (pending, sending,
 * retry_wait), or are held.  The caller's own statement, with the caller's
 * rights: nothing to pin.  Nothing is allocated per call but the result,
 * which is freed at once: flush() looks every 50 ms, and SPI keeps every
 * tuple table until SPI_finish.
 */
static int64
count_in(Oid userid, bool held)
{
	Datum		arg = ObjectIdGetDatum(userid);
	Oid			type = OIDOID;
	bool		isnull;
	int64		n;

	if (SPI_execute_with_args(held
							  ? "SELECT pg_catalog.count(*) FROM confluence_fdw.queue"
							  " WHERE enqueued_by::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
							  " AND state OPERATOR(pg_catalog.=) 'held'"
							  : "SELECT pg_catalog.count(*) FROM confluence_fdw.queue"
							  " WHERE enqueued_by::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
							  " AND state OPERATOR(pg_catalog.=) ANY ('{pending,sending,retry_wait}'::pg_catalog.text[])",
							  1, &type, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw: could not count the queue");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return n;
}

PG_FUNCTION_INFO_V1(confluence_fdw_flush);

/*
 * confluence_fdw.flush(timeout_ms) -> bigint
 *		Wait until the caller's queued rows are sent (done, dead or
 *		in_doubt) or held, at most timeout_ms; return how many still wait
 *		(pending, sending or retry_wait).  A held row waits for a person
 *		(its credentials were refused), not for time: it is not waited for
 *		nor counted, and a NOTICE says how many there are.  Each
 *		look takes a new snapshot (READ COMMITTED), so the rows the worker
 *		records are seen as they come; rows of the caller's own open
 *		transaction are not visible to the worker and wait out the timeout.
 *		Refused in REPEATABLE READ and SERIALIZABLE, whose one snapshot would
 *		never see the worker's progress.
 */
Datum
confluence_fdw_flush(PG_FUNCTION_ARGS)
{
	int32		timeout_ms = PG_GETARG_INT32(0);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Max(timeout_ms, 0));
	int64		left;
	int64		held;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("confluence_fdw.flush() cannot wait in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("The transaction's snapshot would never show the rows the worker sends."),
				 errhint("Call it in a READ COMMITTED transaction, or outside a transaction block.")));
	cfdw_wake_worker();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "confluence_fdw: SPI_connect failed");
	for (;;)
	{
		long		secs;
		int			usecs;

		left = count_in(GetUserId(), false);
		TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
		if (left == 0 || (secs == 0 && usecs == 0))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(50L, secs * 1000 + usecs / 1000 + 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	held = count_in(GetUserId(), true);
	SPI_finish();
	if (held > 0)
		ereport(NOTICE,
				(errmsg_plural("%lld queued row is held",
							   "%lld queued rows are held",
							   (unsigned long) held, (long long) held),
				 errdetail("Confluence refused them with HTTP 401 or 403. flush() does not wait for held rows."),
				 errhint("Fix the user mapping (ALTER USER MAPPING sends them again), or call confluence_fdw.requeue(id) for each; SELECT id, error FROM confluence_fdw.queue WHERE state = 'held' lists them.")));
	PG_RETURN_INT64(left);
}

PG_FUNCTION_INFO_V1(confluence_fdw_requeue);

/*
 * confluence_fdw.requeue(id) -> boolean
 *		Put a dead, in_doubt or held row back to pending: the caller's own
 *		row, or any row for a superuser.  Sent after COMMIT.
 */
Datum
confluence_fdw_requeue(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Datum		arg = Int64GetDatum(id);
	Oid			type = INT8OID;
	Oid			owner = InvalidOid;
	Oid			queue_role = queue_owner();
	CfdwPrivileged priv;
	bool		done;

	/* whose row it is: read as the queue's owner, past row-level security */
	cfdw_privileged_begin(queue_role, &priv);
	if (SPI_execute_with_args("SELECT enqueued_by::pg_catalog.oid FROM confluence_fdw.queue"
							  " WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw: could not read the queue");
	if (SPI_processed == 1)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	cfdw_privileged_end(&priv);

	/* a role requeues its own rows, a superuser any */
	if (!OidIsValid(owner) || (owner != GetUserId() && !superuser()))
		PG_RETURN_BOOL(false);
	done = cfdw_queue_move(CFDW_MOVE_REQUEUE, &id, 1, queue_role, NULL, NULL) == 1;
	if (done)
		wake_worker_at_commit();
	PG_RETURN_BOOL(done);
}
