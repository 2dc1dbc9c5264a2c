/*-------------------------------------------------------------------------
 *
 * worker.c
 *		  The background worker of delivery 'queue', and the shared memory
 *		  it shares with every backend (its latch, the rate limits).
 *
 * One worker serves confluence_fdw.database_name, on a primary only
 * (BgWorkerStart_RecoveryFinished: a promoted standby starts one).  It
 * claims rows in a committed transaction before sending any byte (state
 * 'sending'), sends with no transaction open, and records each outcome in
 * its own transaction.  So a crash can leave rows in 'sending', never a
 * sent row 'pending': at start such rows are reconciled (a page or blog
 * post is looked up by its title in its space) or marked 'in_doubt', never
 * blindly sent again.  Outcomes are recorded with synchronous_commit off:
 * one lost on a crash leaves its row in 'sending', which the reconciliation
 * settles the same way; claims keep the server's setting, so with a
 * synchronous standby no claim is lost by a failover.
 *
 * Signals as pg_cron's launcher: SIGHUP reloads the configuration, SIGTERM
 * ends the worker at the next CHECK_FOR_INTERRUPTS (a send in progress
 * included), postmaster death ends every wait.
 *
 * IDENTIFICATION
 *		  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "confluence_fdw.h"

/* Rows claimed at once; more than max_concurrency, so slots stay busy. */
#define CLAIM_BATCH 256

/* After this many attempts a row that keeps failing to get through is dead. */
#define MAX_ATTEMPTS 10

/* Between looks at the queue when nobody wakes the worker. */
#define POLL_MS 1000

CfdwShared *cfdw_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A claimed queue row, as the worker sends it. */
typedef struct QueuedRow
{
	int64		id;
	Oid			role;
	char	   *server_name;
	char	   *table_name;
	char	   *template;		/* NULL for manual tables */
	char	   *method;
	char	   *url;
	char	   *content_type;
	char	   *body;			/* in the database encoding */
	int			attempts;
} QueuedRow;

/* ---------------------------------------------------------------------
 * Shared memory and registration
 * ---------------------------------------------------------------------
 */

static void
cfdw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(CfdwShared)));
	cfdw_ratelimit_shmem_request();
}

static void
cfdw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cfdw_shared = ShmemInitStruct("confluence_fdw", sizeof(CfdwShared), &found);
	if (!found)
	{
		memset(cfdw_shared, 0, sizeof(CfdwShared));
		SpinLockInit(&cfdw_shared->mutex);
	}
	cfdw_ratelimit_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * cfdw_worker_register
 *		From _PG_init under shared_preload_libraries: the shared memory and
 *		the worker.
 */
void
cfdw_worker_register(void)
{
	BackgroundWorker worker;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cfdw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cfdw_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "confluence_fdw", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cfdw_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "confluence_fdw worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "confluence_fdw worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * cfdw_wake_worker
 *		Tell the worker the queue has work (at COMMIT, by flush).
 */
void
cfdw_wake_worker(void)
{
	Latch	   *latch;

	if (cfdw_shared == NULL)
		return;
	SpinLockAcquire(&cfdw_shared->mutex);
	cfdw_shared->wake_requested = true;
	latch = cfdw_shared->worker_latch;
	SpinLockRelease(&cfdw_shared->mutex);
	if (latch)
		SetLatch(latch);
}

static void
forget_latch(int code, Datum arg)
{
	SpinLockAcquire(&cfdw_shared->mutex);
	cfdw_shared->worker_latch = NULL;
	SpinLockRelease(&cfdw_shared->mutex);
}

/* ---------------------------------------------------------------------
 * Transactions of the worker
 * ---------------------------------------------------------------------
 */

static MemoryContext batch_cxt = NULL;

/* Start a transaction with SPI; allocations stay in batch_cxt. */
static void
begin_work(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "confluence_fdw worker: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(batch_cxt);
}

/* A text column of an SPI result, copied into batch_cxt, or NULL. */
static char *
spi_text(HeapTuple tup, int col)
{
	char	   *v = SPI_getvalue(tup, SPI_tuptable->tupdesc, col);
	char	   *copy = v ? MemoryContextStrdup(batch_cxt, v) : NULL;

	return copy;
}

/* Is the extension installed in the worker's database? */
static bool
queue_exists(void)
{
	bool		exists;

	begin_work();
	exists = OidIsValid(get_namespace_oid("confluence_fdw", true)) &&
		OidIsValid(get_relname_relid("queue", get_namespace_oid("confluence_fdw", true)));
	end_work();
	return exists;
}

/* Copy the rows of an SPI result into batch_cxt. */
static QueuedRow *
copy_rows(int *n)
{
	QueuedRow  *rows;
	uint64		i;

	*n = (int) SPI_processed;
	rows = MemoryContextAllocZero(batch_cxt, sizeof(QueuedRow) * Max(*n, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		rows[i].id = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		rows[i].role = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		rows[i].table_name = spi_text(tup, 3);
		rows[i].template = spi_text(tup, 4);
		rows[i].method = spi_text(tup, 5);
		rows[i].url = spi_text(tup, 6);
		rows[i].content_type = spi_text(tup, 7);
		rows[i].body = spi_text(tup, 8);
		rows[i].attempts = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 9, &isnull));
		rows[i].server_name = spi_text(tup, 10);
	}
	return rows;
}

#define ROW_COLUMNS "id, enqueued_by::oid, table_name, template, method, url, content_type, body, attempts, server_name"

/* Sort claimed rows by table and role, then id: each run is sent together. */
static int
row_cmp(const void *a, const void *b)
{
	const QueuedRow *x = a;
	const QueuedRow *y = b;
	int			c = strcmp(x->table_name, y->table_name);

	if (c != 0)
		return c;
	if (x->role != y->role)
		return x->role < y->role ? -1 : 1;
	return x->id < y->id ? -1 : (x->id > y->id);
}

/*
 * Claim up to CLAIM_BATCH rows that are due, in a transaction committed
 * before any of them is sent.
 */
static QueuedRow *
claim(int *n)
{
	QueuedRow  *rows;
	Datum		arg = Int32GetDatum(CLAIM_BATCH);
	Oid			type = INT4OID;

	begin_work();
	if (SPI_execute_with_args("UPDATE confluence_fdw.queue q"
							  " SET state = 'sending', attempts = attempts + 1, claimed_at = now()"
							  " WHERE id IN (SELECT id FROM confluence_fdw.queue"
							  "   WHERE state IN ('pending', 'retry_wait') AND next_attempt_at <= now()"
							  "   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
							  " RETURNING " ROW_COLUMNS,
							  1, &type, &arg, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "confluence_fdw worker: could not claim queue rows");
	rows = copy_rows(n);
	end_work();
	if (*n > 1)
		qsort(rows, *n, sizeof(QueuedRow), row_cmp);
	return rows;
}

/* ---------------------------------------------------------------------
 * Recording outcomes
 * ---------------------------------------------------------------------
 */

/* What becomes of a row after an attempt. */
typedef struct RowResult
{
	const char *state;
	int			http_status;	/* 0: none */
	char	   *remote_id;
	const char *action;			/* created, updated, unchanged, skipped */
	char	   *response;		/* jsonb text */
	char	   *error;
	long		retry_in_ms;	/* retry_wait: when to try again */
	bool		sent;			/* a request went out (sent_at) */
} RowResult;

/* Record a row's result in its own transaction; only a 'sending' row. */
static void
record(int64 id, const RowResult *r)
{
	Oid			types[9] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, BOOLOID,
	TEXTOID};
	Datum		v[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	v[0] = Int64GetDatum(id);
	v[1] = CStringGetTextDatum(r->state);
	v[2] = Int32GetDatum(r->http_status);
	nulls[2] = r->http_status ? ' ' : 'n';
	v[3] = r->remote_id ? CStringGetTextDatum(r->remote_id) : (Datum) 0;
	nulls[3] = r->remote_id ? ' ' : 'n';
	v[4] = r->response ? CStringGetTextDatum(r->response) : (Datum) 0;
	nulls[4] = r->response ? ' ' : 'n';
	v[5] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
	nulls[5] = r->error ? ' ' : 'n';
	v[6] = Int64GetDatum(r->retry_in_ms);
	v[7] = BoolGetDatum(r->sent);
	v[8] = r->action ? CStringGetTextDatum(r->action) : (Datum) 0;
	nulls[8] = r->action ? ' ' : 'n';

	begin_work();
	/* a lost outcome leaves the row 'sending', which start-up settles */
	if (SPI_execute("SET LOCAL synchronous_commit = off", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "confluence_fdw worker: could not set synchronous_commit");
	if (SPI_execute_with_args("UPDATE confluence_fdw.queue SET state = $2, http_status = $3,"
							  " remote_id = coalesce($4, remote_id), action = $9, response = $5::jsonb, error = $6,"
							  " next_attempt_at = now() + make_interval(secs => $7 / 1000.0),"
							  " sent_at = CASE WHEN $8 THEN now() ELSE sent_at END,"
							  " done_at = CASE WHEN $2 IN ('done', 'dead') THEN now() END"
							  " WHERE id = $1 AND state = 'sending'",
							  9, types, v, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "confluence_fdw worker: could not record queue row %lld", (long long) id);
	end_work();
}

/* A row that can never be sent as it is. */
static void
record_dead(int64 id, const char *error)
{
	RowResult	r = {"dead", 0, NULL, NULL, NULL, unconstify(char *, error), 0, false};

	record(id, &r);
}

/* Can the row be found again in Confluence by its title? */
static bool
reconcilable(const QueuedRow *row)
{
	return row->template && strcmp(row->method, "POST") == 0 &&
		(strcmp(row->template, "pages") == 0 || strcmp(row->template, "blogposts") == 0);
}

/* What an answered or failed attempt makes of a row. */
static void
judge(const CfdwTable *t, const CfdwRequest *req, const CfdwResponse *resp,
	  const QueuedRow *row, RowResult *r)
{
	memset(r, 0, sizeof(RowResult));
	r->sent = resp->outcome != CFDW_NOT_SENT;
	if (resp->outcome == CFDW_ANSWERED)
		r->http_status = (int) resp->status;
	if (resp->outcome == CFDW_ANSWERED && resp->status < 300)
	{
		void	   *jb = cfdw_answer_jsonb(resp);

		r->state = "done";
		r->remote_id = cfdw_jsonb_text_at(jb, "id");
		r->action = resp->action;
		if (r->action == NULL && t->template && req->method == CFDW_POST)
			r->action = "created";
		if (jb)
			r->response = JsonbToCString(NULL, &((Jsonb *) jb)->root, VARSIZE(jb));
		return;
	}
	r->error = cfdw_outcome_message(t, req, resp);
	/* an upsert's lookup that failed changed nothing either */
	if ((resp->outcome == CFDW_NOT_SENT && resp->failure != CFDW_FAIL_EGRESS) ||
		(resp->outcome == CFDW_ANSWERED &&
		 (resp->status == 429 || (resp->status == 503 && resp->retry_after[0]))) ||
		(req->method == CFDW_GET && resp->failure != CFDW_FAIL_EGRESS &&
		 (resp->outcome != CFDW_ANSWERED || resp->status >= 500)))
	{
		/* certainly not processed: later, unless it has been tried enough */
		r->state = row->attempts >= MAX_ATTEMPTS ? "dead" : "retry_wait";
		r->retry_in_ms = Min(1000L << Min(row->attempts, 8), 300000L);
		if (r->state[0] == 'd')
			r->error = psprintf("gave up after %d attempts: %s", row->attempts, r->error);
		return;
	}
	if (resp->outcome == CFDW_ANSWERED && resp->status < 500)
		r->state = "dead";		/* refused: sending it again changes nothing */
	else
		r->state = "in_doubt";	/* may have been processed */
}

/* ---------------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------------
 */

/* The rows of one table and role being sent together. */
typedef struct SendGroup
{
	CfdwTable  *table;
	CfdwConnection *conn;
	QueuedRow  *rows;
	CfdwRequest *reqs;
	int			n;
} SendGroup;

/*
 * The table of a group, resolved for its role as the INSERT would: the
 * server's and user mapping's options of now (a rotated token applies).
 * NULL with *error set when it cannot be (the table or the user mapping
 * was dropped).  No network work happens in the error path.
 */
static CfdwTable *
resolve_group(const QueuedRow *row, char **error)
{
	CfdwTable  *t = NULL;
	MemoryContext cxt = batch_cxt;

	PG_TRY();
	{
		List	   *names;
		Oid			relid;
		Relation	rel;

		begin_work();
		MemoryContextSwitchTo(cxt);
		names = stringToQualifiedNameList(row->table_name);
		relid = RangeVarGetRelid(makeRangeVarFromNameList(names), AccessShareLock, true);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("foreign table %s no longer exists", row->table_name)));
		rel = RelationIdGetRelation(relid);
		t = cfdw_resolve_table(rel, row->role);
		RelationClose(rel);
		end_work();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		*error = edata->message;
		t = NULL;
	}
	PG_END_TRY();
	if (t == NULL)
	{
		char	   *role;

		/* who could not send where, then why (the core's words) */
		begin_work();
		role = GetUserNameFromId(row->role, true);
		*error = MemoryContextStrdup(batch_cxt,
									 psprintf("cannot send as role \"%s\" to server \"%s\": %s",
											  role ? role : "(dropped)", row->server_name, *error));
		end_work();
	}
	return t;
}

/*
 * The connection of a group's user mapping.  Opening one reads the system
 * caches, which needs a transaction; it is used after that one ends.
 */
static CfdwConnection *
connect_group(const CfdwTable *t)
{
	CfdwConnection *c;

	begin_work();
	c = cfdw_get_connection(&t->site);
	end_work();
	return c;
}

/* A row's request; NULL with *error when the server moved since. */
static bool
build_request(const CfdwTable *t, const QueuedRow *row, CfdwRequest *req, char **error)
{
	size_t		blen = strlen(t->base);

	memset(req, 0, sizeof(CfdwRequest));
	if (strncmp(row->url, t->base, blen) != 0 || row->url[blen] != '/')
	{
		*error = psprintf("the address of server \"%s\" changed since the row was queued; it was not sent",
						  t->servername);
		return false;
	}
	if (!cfdw_parse_method(row->method, &req->method))
	{
		*error = psprintf("unknown method \"%s\"", row->method);
		return false;
	}
	req->url = row->url;
	req->path_for_messages = row->url + blen;
	req->content_type = row->content_type;
	if (row->body)
	{
		req->body = pg_server_to_any(row->body, strlen(row->body), PG_UTF8);
		req->body_len = strlen(req->body);
	}
	return true;
}

static bool lookup_by_title(SendGroup *g, const QueuedRow *row, RowResult *r);

/* cfdw_send_all's callback: record one row's outcome. */
static void
row_done(void *arg, int index, const CfdwResponse *resp)
{
	SendGroup	   *g = (SendGroup *) arg;
	const QueuedRow *row = &g->rows[index];
	RowResult	r;

	judge(g->table, &g->reqs[index], resp, row, &r);

	/*
	 * A page sent again after a crash that Confluence already has: the
	 * duplicate title says so, and the lookup finds which one.
	 */
	if (strcmp(r.state, "dead") == 0 && r.http_status == 400 && row->attempts > 1 &&
		reconcilable(row))
		(void) lookup_by_title(g, row, &r);
	record(row->id, &r);
}

/* cfdw_upsert_all's callback: the same, with the row's last request. */
static void
upsert_row_done(void *arg, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	SendGroup  *g = (SendGroup *) arg;
	RowResult	r;

	judge(g->table, req, resp, &g->rows[index], &r);
	record(g->rows[index].id, &r);
}

/* Send a group of rows: same table, same role. */
static void
send_group(QueuedRow *rows, int n)
{
	SendGroup		g;
	char	   *error = NULL;
	int			ok = 0;

	g.table = resolve_group(&rows[0], &error);
	if (g.table == NULL)
	{
		for (int i = 0; i < n; i++)
			record_dead(rows[i].id, error);
		return;
	}
	g.rows = palloc(sizeof(QueuedRow) * n);
	g.reqs = palloc(sizeof(CfdwRequest) * n);
	for (int i = 0; i < n; i++)
	{
		if (!build_request(g.table, &rows[i], &g.reqs[ok], &error))
		{
			record_dead(rows[i].id, error);
			continue;
		}
		g.rows[ok++] = rows[i];
	}
	g.n = ok;
	if (ok == 0)
		return;
	g.conn = connect_group(g.table);
	PG_TRY();
	{
		/* an upsert finds duplicates itself: no reconciling by title */
		if (g.table->on_conflict != CFDW_CONFLICT_ERROR)
			cfdw_upsert_all(g.conn, g.table, g.reqs, g.n, upsert_row_done, &g);
		else
			cfdw_send_all(g.conn, g.table, g.reqs, g.n, row_done, &g);
	}
	PG_FINALLY();
	{
		cfdw_release_connection(g.conn, &g.table->site);
	}
	PG_END_TRY();
}

/* Claim and send one batch; returns how many rows it had. */
static int
deliver_batch(void)
{
	int			n;
	QueuedRow  *rows = claim(&n);
	int			i = 0;

	while (i < n)
	{
		int			j = i + 1;

		while (j < n && rows[j].role == rows[i].role &&
			   strcmp(rows[j].table_name, rows[i].table_name) == 0)
			j++;
		send_group(rows + i, j - i);
		i = j;
	}
	return n;
}

/* ---------------------------------------------------------------------
 * Reconciliation after a crash
 * ---------------------------------------------------------------------
 */

/* Percent-encode a query parameter's value. */
static char *
query_escape(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;

		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~')
			appendStringInfoChar(&buf, ch);
		else
			appendStringInfo(&buf, "%%%02X", ch);
	}
	return buf.data;
}

/*
 * Find a queued page or blog post in Confluence by its space and title
 * (titles are unique in a space).  True when the lookup was answered: then
 * r says done (found) or pending (not there, to be sent again).
 */
static bool
lookup_by_title(SendGroup *g, const QueuedRow *row, RowResult *r)
{
	cJSON	   *body = cfdw_json_parse_owned(row->body, strlen(row->body));
	cJSON	   *space = body ? cJSON_GetObjectItemCaseSensitive(body, "spaceId") : NULL;
	cJSON	   *title = body ? cJSON_GetObjectItemCaseSensitive(body, "title") : NULL;
	CfdwRequest req;
	CfdwResponse resp;
	void	   *jb;

	if (!cJSON_IsString(space) || !cJSON_IsString(title))
		return false;
	memset(&req, 0, sizeof(req));
	req.method = CFDW_GET;
	req.path_for_messages = psprintf("%s?space-id=%s&title=%s&status=current,draft",
									 g->table->template->list_path,
									 query_escape(pg_server_to_any(space->valuestring, strlen(space->valuestring), PG_UTF8)),
									 query_escape(pg_server_to_any(title->valuestring, strlen(title->valuestring), PG_UTF8)));
	req.url = psprintf("%s%s", g->table->base, req.path_for_messages);
	cfdw_send(g->conn, g->table, &req, &resp);
	if (resp.outcome != CFDW_ANSWERED || resp.status != 200)
		return false;
	jb = cfdw_answer_jsonb(&resp);
	memset(r, 0, sizeof(RowResult));
	r->http_status = 200;
	r->remote_id = cfdw_jsonb_text_at(jb, "results.0.id");
	if (r->remote_id == NULL)
	{
		r->state = "pending";
		return true;
	}
	r->state = "done";
	r->error = "found in Confluence by its title after the worker was interrupted";
	return true;
}

/* Settle one row found in 'sending' at start. */
static void
reconcile_row(SendGroup *g, const QueuedRow *row)
{
	RowResult	r;

	/*
	 * An upsert can always be sent again: its lookup sees whatever the
	 * interrupted attempt did (a page made, a version written) and acts
	 * on that, so a page found by its title proves nothing here.
	 */
	if (g->table->on_conflict != CFDW_CONFLICT_ERROR)
	{
		memset(&r, 0, sizeof(r));
		r.state = "pending";
		r.error = "the worker was interrupted while sending this row; an upsert is sent again, and looks the page up first";
		record(row->id, &r);
		return;
	}
	if (reconcilable(row) && lookup_by_title(g, row, &r))
	{
		record(row->id, &r);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.state = "in_doubt";
	r.error = reconcilable(row)
		? "the worker was interrupted while sending this row, and Confluence could not be asked whether it has it"
		: "the worker was interrupted while sending this row; it may or may not have reached Confluence";
	record(row->id, &r);
}

/* Reconcile one row with its table resolved for its role. */
static void
reconcile_one(const QueuedRow *row)
{
	SendGroup	g;
	char	   *error = NULL;

	g.table = resolve_group(row, &error);
	if (g.table == NULL)
	{
		record_dead(row->id, error);
		return;
	}
	g.conn = connect_group(g.table);
	PG_TRY();
	{
		reconcile_row(&g, row);
	}
	PG_FINALLY();
	{
		cfdw_release_connection(g.conn, &g.table->site);
	}
	PG_END_TRY();
}

/*
 * Rows left in 'sending' by a worker that died (a crash, kill -9, an
 * immediate shutdown, a failover): never sent blindly again.
 */
static void
reconcile_all(void)
{
	QueuedRow  *rows;
	int			n;

	begin_work();
	if (SPI_execute("SELECT " ROW_COLUMNS " FROM confluence_fdw.queue"
					" WHERE state = 'sending' ORDER BY table_name, enqueued_by, id",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the queue");
	rows = copy_rows(&n);
	end_work();
	if (n > 0)
		ereport(LOG,
				(errmsg("confluence_fdw worker: reconciling %d queue rows left in state sending", n)));
	for (int i = 0; i < n; i++)
		reconcile_one(&rows[i]);
}

/* ---------------------------------------------------------------------
 * The main loop
 * ---------------------------------------------------------------------
 */

/* Forget done rows older than confluence_fdw.queue_retention. */
static void
purge_done(void)
{
	Datum		arg = Int32GetDatum(cfdw_queue_retention_s);
	Oid			type = INT4OID;

	begin_work();
	if (SPI_execute_with_args("DELETE FROM confluence_fdw.queue WHERE state = 'done'"
							  " AND done_at < now() - make_interval(secs => $1)",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "confluence_fdw worker: could not purge the queue");
	end_work();
}

/* Wait for a wake-up, a due retry or the poll interval. */
static void
wait_for_work(void)
{
	bool		woken;

	SpinLockAcquire(&cfdw_shared->mutex);
	woken = cfdw_shared->wake_requested;
	cfdw_shared->wake_requested = false;
	SpinLockRelease(&cfdw_shared->mutex);
	if (!woken)
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 POLL_MS, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

void
cfdw_worker_main(Datum arg)
{
	bool		reconciled = false;
	TimestampTz last_purge = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(cfdw_database_name, NULL, 0);
	pgstat_report_appname("confluence_fdw worker");

	SpinLockAcquire(&cfdw_shared->mutex);
	cfdw_shared->worker_latch = MyLatch;
	SpinLockRelease(&cfdw_shared->mutex);
	on_shmem_exit(forget_latch, (Datum) 0);

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw worker",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContextSwitchTo(batch_cxt);
		if (queue_exists())
		{
			if (!reconciled)
				reconcile_all();
			reconciled = true;
			while (deliver_batch() > 0)
			{
				CHECK_FOR_INTERRUPTS();
				MemoryContextReset(batch_cxt);
			}
			if (TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(), 60000))
			{
				purge_done();
				last_purge = GetCurrentTimestamp();
			}
		}
		MemoryContextReset(batch_cxt);
		wait_for_work();
	}
}
