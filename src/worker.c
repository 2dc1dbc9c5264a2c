/*-------------------------------------------------------------------------
 *
 * worker.c
 *		  The background worker of delivery 'queue', and the shared memory
 *		  it shares with every backend (its latch, the rate limits).
 *
 * One worker serves confluence_fdw.database_name, on a primary only
 * (BgWorkerStart_RecoveryFinished: a promoted standby starts one).  It
 * reads due rows in batches, sends them grouped by table and role with
 * no transaction open, and moves each row through the transitions of
 * queue_state.c, each in a transaction of its own: a row is claimed
 * ('sending', committed durably) just before its request starts, and its
 * outcome recorded as soon as it has one.  So only requests in flight are
 * ever 'sending', and a crash, a fast shutdown, a cancel or an ERROR leaves
 * just those to reconcile: a page or blog post is looked up by its title
 * in its space, an upsert goes back to pending (its lookup settles it),
 * anything else is marked in_doubt.  Nothing in 'sending' is sent blindly
 * again.  The worker survives an ERROR (see cfdw_worker_main) and
 * reconciles before it sends again.
 *
 * What is resent and when follows delivery.c's one retry rule
 * (cfdw_verdict, cfdw_backoff_ms): within an attempt, the server's
 * max_retries and max_retry_wait_ms as for a statement; between attempts,
 * the row waits in retry_wait, at most MAX_ATTEMPTS attempts.  Two
 * answers are no attempt's fault: a rate limit that asks for longer than
 * max_retry_wait_ms (an hourly quota) postpones the row to when it lifts
 * and gives the attempt back (the server's other rows wait too, unsent;
 * for at most MAX_POSTPONED_AGE_S after a row was queued), and a 401 or
 * 403 holds the row ('held') until its server or user mapping changes
 * (one row of a group is then sent first) or requeue() is called.
 *
 * Signals: SIGHUP reloads the configuration, between two rows as well as
 * between waits; SIGTERM ends the worker at the next CHECK_FOR_INTERRUPTS
 * (a send in progress included); SIGINT (pg_cancel_backend) cancels the
 * round with an ERROR; postmaster death ends every wait.
 *
 * IDENTIFICATION
 *		  src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "utils/timeout.h"
#include "storage/lwlock.h"
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
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "confluence_fdw.h"
#include "pure.h"

/*
 * Due rows read at once, more than max_concurrency so slots stay busy, and
 * no more of their bodies than FETCH_BYTES (a body may be 5 MB): a batch
 * is held in memory until it is sent.  Reading claims nothing: a row is
 * claimed as its request starts.
 */
#define FETCH_BATCH 256
#define FETCH_BYTES (32 * 1024 * 1024)

/* After this many attempts a row that keeps failing to get through is dead. */
#define MAX_ATTEMPTS 10

/* The longest wait of a row in retry_wait between two attempts. */
#define QUEUE_BACKOFF_CAP_MS 300000

/* Between looks at the queue when nobody wakes the worker. */
#define POLL_MS 1000

/*
 * How long rate limits may postpone a row: once it was queued longer ago
 * than this, a rate limit that asks for more than max_retry_wait_ms ends
 * it (dead) instead.  Each Retry-After is capped at a day (pure.c), but a
 * proxy that always answers 503 with one would keep the row forever.
 */
#define MAX_POSTPONED_AGE_S (7 * 24 * 3600)

/* After an ERROR while held rows were compared, the next try is this late. */
#define RELEASE_RETRY_MS 60000

CfdwShared *cfdw_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A queue row, as the worker sends it. */
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
	int			attempts;		/* counted by each claim */
	TimestampTz enqueued_at;
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
	cfdw_oauth_shmem_request();
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
	cfdw_oauth_shmem_startup();
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

static MemoryContext batch_cxt = NULL;	/* the rows of a batch */
static MemoryContext row_cxt = NULL;	/* one row's outcome; reset after it */
static MemoryContext work_caller_cxt = NULL;

/*
 * Start a transaction; allocations stay in the caller's context.  A
 * SIGHUP is taken here too, between two rows, not only between waits: a
 * delivery of many rows can take minutes.
 */
static void
begin_work(void)
{
	work_caller_cxt = CurrentMemoryContext;
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "delivering queued rows");
	MemoryContextSwitchTo(work_caller_cxt);
}

/* Commit, and let the cumulative statistics see what it did. */
static void
end_work(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	MemoryContextSwitchTo(work_caller_cxt);
}

/* A text column of an SPI result, copied into batch_cxt, or NULL. */
static char *
spi_text(HeapTuple tup, int col)
{
	char	   *v = SPI_getvalue(tup, SPI_tuptable->tupdesc, col);
	char	   *copy = v ? MemoryContextStrdup(batch_cxt, v) : NULL;

	return copy;
}

/*
 * Whether the queue can hold rows (state 'held', column
 * credentials_version): not until ALTER EXTENSION ... UPDATE has brought a
 * 1.0 queue to 1.1.  Until then a 401 or 403 makes a row dead, as in 1.0.
 */
static bool queue_holds = false;

/* Is the extension installed in the worker's database? */
static bool
queue_exists(void)
{
	Oid			nsp;
	Oid			relid = InvalidOid;

	begin_work();
	nsp = get_namespace_oid("confluence_fdw", true);
	if (OidIsValid(nsp))
		relid = get_relname_relid("queue", nsp);
	queue_holds = OidIsValid(relid) &&
		get_attnum(relid, "credentials_version") != InvalidAttrNumber;
	end_work();
	return OidIsValid(relid);
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
		rows[i].enqueued_at = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 11, &isnull));
	}
	return rows;
}

#define ROW_COLUMNS "id, enqueued_by::pg_catalog.oid, table_name, template, method, url," \
	" content_type, body, attempts, server_name, enqueued_at"

/* Sort rows by table and role, then id: each run is sent together. */
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
 * Read queue rows (into batch_cxt, sorted into groups): the due ones, or
 * those left in 'sending'.  Reading claims nothing: a row is claimed only
 * when its request is about to start (claim_starting).
 */
static QueuedRow *
read_rows(bool sending, int *n)
{
	CfdwPrivileged priv;
	QueuedRow  *rows;
	Datum		args[2] = {Int32GetDatum(FETCH_BATCH), Int64GetDatum(FETCH_BYTES)};
	Oid			types[2] = {INT4OID, INT8OID};

	begin_work();
	cfdw_privileged_begin(InvalidOid, &priv);
	if (SPI_execute_with_args(sending
							  ? "SELECT " ROW_COLUMNS " FROM"
							  " (SELECT q.*, pg_catalog.sum(pg_catalog.octet_length(q.body))"
							  "    OVER (ORDER BY q.id) AS upto"
							  "  FROM (SELECT * FROM confluence_fdw.queue"
							  "   WHERE state = 'sending' ORDER BY id LIMIT $1) q) due"
							  " WHERE COALESCE(upto, 0) - COALESCE(pg_catalog.octet_length(body), 0) < $2 ORDER BY id"
							  : "SELECT " ROW_COLUMNS " FROM"
							  " (SELECT q.*, pg_catalog.sum(pg_catalog.octet_length(q.body))"
							  "    OVER (ORDER BY q.id) AS upto"
							  "  FROM (SELECT * FROM confluence_fdw.queue"
							  "   WHERE state = ANY ('{pending,retry_wait}'::pg_catalog.text[])"
							  "   AND next_attempt_at <= pg_catalog.now() ORDER BY id LIMIT $1) q) due"
							  " WHERE COALESCE(upto, 0) - COALESCE(pg_catalog.octet_length(body), 0) < $2 ORDER BY id",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the queue");
	rows = copy_rows(n);
	cfdw_privileged_end(&priv);
	end_work();
	if (*n > 1)
		qsort(rows, *n, sizeof(QueuedRow), row_cmp);
	return rows;
}

/* Apply a transition (queue_state.c) to rows, in a transaction of its own. */
static int
move_rows(CfdwQueueMove move, const int64 *ids, int n, const CfdwQueueOutcome *o,
		  bool *moved)
{
	int			count;

	begin_work();
	count = cfdw_queue_move(move, ids, n, InvalidOid, o, moved);
	end_work();
	return count;
}

static void
move_row(CfdwQueueMove move, int64 id, const CfdwQueueOutcome *o)
{
	(void) move_rows(move, &id, 1, o, NULL);
}

/* A row that cannot be sent as it is, with why. */
static CfdwQueueOutcome
failure(const char *error)
{
	CfdwQueueOutcome o = {0};

	o.error = error;
	return o;
}

/* ---------------------------------------------------------------------
 * Long rate limits: a server's other rows wait too
 * ---------------------------------------------------------------------
 */

/*
 * The servers a rate limit longer than max_retry_wait_ms postponed a row
 * of (see judge), and until when: their other due rows are not sent before
 * then (delay_rows), or each would be answered with the same 429, and all
 * would come due at the same instant.  Kept in the worker's memory only: a
 * restart forgets it, and one row is then sent and postponed again.  Any
 * change of the server (a syscache invalidation) forgets its entry, so
 * ALTER SERVER lets rows made due by hand go before the time.  A full
 * table drops the entry that ends first.
 */
#define SERVER_WAITS 64

typedef struct ServerWait
{
	Oid			serverid;
	uint32		hash;			/* of the server's syscache entry */
	TimestampTz until;
} ServerWait;

static ServerWait server_waits[SERVER_WAITS];
static int	n_server_waits = 0;

/* Until when the server's rows wait (0: they do not). */
static TimestampTz
server_wait_until(Oid serverid)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n_server_waits; i++)
	{
		if (server_waits[i].until <= now)
		{
			server_waits[i--] = server_waits[--n_server_waits];
			continue;
		}
		if (server_waits[i].serverid == serverid)
			return server_waits[i].until;
	}
	return 0;
}

static void
server_wait_set(Oid serverid, TimestampTz until)
{
	int			i;

	(void) server_wait_until(serverid);
	for (i = 0; i < n_server_waits; i++)
		if (server_waits[i].serverid == serverid)
			break;
	if (i == n_server_waits)
	{
		if (n_server_waits < SERVER_WAITS)
			n_server_waits++;
		else
		{
			i = 0;
			for (int j = 1; j < SERVER_WAITS; j++)
				if (server_waits[j].until < server_waits[i].until)
					i = j;
		}
		server_waits[i].serverid = serverid;
		server_waits[i].hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
													 ObjectIdGetDatum(serverid));
		server_waits[i].until = 0;
	}
	server_waits[i].until = Max(server_waits[i].until, until);
}

/* A server changed (hash 0: all may have): forget its wait. */
static void
server_wait_forget(uint32 hash)
{
	for (int i = 0; i < n_server_waits; i++)
		if (hash == 0 || server_waits[i].hash == hash)
			server_waits[i--] = server_waits[--n_server_waits];
}

/* Whether rate limits may still postpone the row (see MAX_POSTPONED_AGE_S). */
static bool
may_postpone(const QueuedRow *row)
{
	return !TimestampDifferenceExceeds(row->enqueued_at, GetCurrentTimestamp(),
									   MAX_POSTPONED_AGE_S * 1000);
}

static const char *
gave_up_postponing(const char *why)
{
	return psprintf("gave up: rate limits kept postponing this row, which was queued more than %d days ago: %s",
					MAX_POSTPONED_AGE_S / (24 * 3600), why);
}

/*
 * Rows of a server that another row's rate limit postponed until until:
 * each waits in retry_wait until then, plus up to a tenth of the wait (at
 * most a minute), so that they do not all come due at once; nothing is
 * sent and no attempt is counted.  A row queued too long ago is dead.
 */
static void
delay_rows(const QueuedRow *rows, int n, const char *servername, TimestampTz until)
{
	long		secs;
	int			usecs;
	double		spread;
	char	   *why;

	TimestampDifference(GetCurrentTimestamp(), until, &secs, &usecs);
	spread = Min((secs * 1000.0 + usecs / 1000) / 10, 60000.0);
	why = psprintf("not sent: Confluence rate-limited server \"%s\" until %s (another row's answer); no attempt was counted",
				   servername, timestamptz_to_str(until));
	for (int i = 0; i < n; i++)
	{
		CfdwQueueOutcome o = failure(why);

		if (!may_postpone(&rows[i]))
		{
			o.error = gave_up_postponing(why);
			move_row(CFDW_MOVE_UNSENDABLE, rows[i].id, &o);
			continue;
		}
		o.next_attempt_at = TimestampTzPlusMilliseconds(until,
														(int64) (spread * pg_prng_double(&pg_global_prng_state)));
		move_row(CFDW_MOVE_DELAY, rows[i].id, &o);
	}
}

/* ---------------------------------------------------------------------
 * Judging outcomes
 * ---------------------------------------------------------------------
 */

/* The rows of one table and role being sent together. */
typedef struct SendGroup
{
	CfdwTable  *table;
	CfdwConnection *conn;
	QueuedRow  *rows;
	CfdwRequest *reqs;			/* the rows' requests, bodies in UTF-8 */
	int			n;
	char	   *credentials_version;	/* of the server and mapping used */
} SendGroup;

/*
 * A page or blog post created with on_conflict 'error': its title, unique
 * among the current ones of its space, tells whether Confluence has it.
 */
static bool
findable_by_title(const SendGroup *g, const QueuedRow *row)
{
	return row->template && strcmp(row->method, "POST") == 0 &&
		g->table->on_conflict == CFDW_CONFLICT_ERROR &&
		(strcmp(row->template, "pages") == 0 || strcmp(row->template, "blogposts") == 0);
}

typedef enum TitleLookup
{
	TITLE_FOUND,				/* Confluence has a current one: its id */
	TITLE_ABSENT,				/* it has none */
	TITLE_UNSURE				/* not asked, or no answer */
} TitleLookup;

/*
 * Look the row's page up by its space and title (upsert.c's lookup).
 * A draft is never looked up: drafts may share a title, so one found
 * proves nothing.  *http_status, when asked for, is the lookup's answer
 * (0: none).
 */
static TitleLookup
lookup_by_title(SendGroup *g, const CfdwRequest *post, char **id, long *http_status)
{
	cJSON	   *body = post->body ? cfdw_json_parse_owned(post->body, post->body_len) : NULL;
	cJSON	   *space = cJSON_GetObjectItemCaseSensitive(body, "spaceId");
	cJSON	   *title = cJSON_GetObjectItemCaseSensitive(body, "title");
	cJSON	   *status = cJSON_GetObjectItemCaseSensitive(body, "status");
	cJSON	   *item;
	cJSON	   *item_id;
	CfdwRequest req;
	CfdwResponse resp;

	if (!cJSON_IsString(space) || !cJSON_IsString(title) ||
		(cJSON_IsString(status) && strcmp(status->valuestring, "current") != 0))
		return TITLE_UNSURE;
	cfdw_title_lookup(g->table, space->valuestring, title->valuestring, "current", false, &req);
	cfdw_send(g->conn, g->table, &req, &resp);
	if (http_status)
		*http_status = resp.outcome == CFDW_ANSWERED ? resp.status : 0;
	if (resp.outcome != CFDW_ANSWERED || resp.status != 200)
		return TITLE_UNSURE;
	item = cfdw_title_lookup_find(&resp, space->valuestring, title->valuestring);
	if (item == NULL)
		return TITLE_ABSENT;
	item_id = cJSON_GetObjectItemCaseSensitive(item, "id");
	if (!cJSON_IsString(item_id))
		return TITLE_UNSURE;
	*id = pstrdup(item_id->valuestring);
	return TITLE_FOUND;
}

/* When a row that certainly was not processed is tried again. */
static TimestampTz
next_attempt(const CfdwResponse *resp, int attempts)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
									   cfdw_backoff_ms(resp, Max(attempts - 1, 0),
													   QUEUE_BACKOFF_CAP_MS));
}

/*
 * The wait (ms) of a rate limit that asks for longer than a statement
 * would retry after (an hourly quota's Retry-After is in minutes), or 0:
 * no attempt of the row's could have got through, so none is spent on it.
 * Read once: an HTTP-date read again later names a shorter wait.
 */
static long
rate_limited_beyond_retries(const CfdwTable *t, const CfdwResponse *resp)
{
	long		ms;

	if (resp->outcome != CFDW_ANSWERED || resp->retry_after[0] == '\0' ||
		!(resp->status == 429 || resp->status == 503))
		return 0;
	ms = cfdw_retry_after_ms(resp->retry_after, time(NULL));
	return ms > t->max_retry_wait_ms ? ms : 0;
}

/* Refused for its credentials: a person must change them (or the rights). */
static bool
credentials_refused(long status)
{
	return status == 401 || status == 403;
}

/*
 * What an answered or failed attempt makes of a row, by delivery.c's
 * verdict (the statements' retry rule): done, retry_wait (until
 * MAX_ATTEMPTS attempts; postponed without spending one when a rate limit
 * asks for longer than max_retry_wait_ms, dead once the row was queued
 * MAX_POSTPONED_AGE_S ago), dead, held (401, 403) or in_doubt.
 */
static CfdwQueueMove
judge(const SendGroup *g, const QueuedRow *row, const CfdwRequest *req,
	  const CfdwResponse *resp, CfdwQueueOutcome *o)
{
	long		wait_ms;

	memset(o, 0, sizeof(CfdwQueueOutcome));
	o->sent = resp->outcome != CFDW_NOT_SENT;
	if (resp->outcome == CFDW_ANSWERED)
		o->http_status = (int) resp->status;
	switch (cfdw_verdict(req, resp))
	{
		case CFDW_VERDICT_OK:
			{
				Jsonb	   *jb = cfdw_answer_jsonb(resp);

				o->remote_id = cfdw_jsonb_text_at(jb, "id");
				o->action = resp->action;
				if (o->action == NULL && g->table->template && req->method == CFDW_POST)
					o->action = "created";
				if (jb)
					o->response = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
				return CFDW_MOVE_DONE;
			}
		case CFDW_VERDICT_RETRY:
			o->error = cfdw_outcome_message(g->table, req, resp);
			if ((wait_ms = rate_limited_beyond_retries(g->table, resp)) > 0)
			{
				/* the time said is the time the row is due again */
				o->error = psprintf("%s; %s", o->error,
									cfdw_rate_limit_lifts_in(wait_ms, &o->next_attempt_at));
				if (may_postpone(row))
					return CFDW_MOVE_POSTPONE;
				o->error = gave_up_postponing(o->error);
				o->next_attempt_at = 0;
				return CFDW_MOVE_DEAD;
			}
			if (row->attempts >= MAX_ATTEMPTS)
			{
				o->error = psprintf("gave up after %d attempts: %s", row->attempts, o->error);
				return CFDW_MOVE_DEAD;
			}
			o->next_attempt_at = next_attempt(resp, row->attempts);
			return CFDW_MOVE_RETRY;
		case CFDW_VERDICT_REFUSED:
			o->error = cfdw_outcome_message(g->table, req, resp);
			if (resp->outcome == CFDW_ANSWERED && credentials_refused(resp->status) &&
				queue_holds)
			{
				o->credentials_version = g->credentials_version;
				return CFDW_MOVE_HOLD;
			}
			return CFDW_MOVE_DEAD;
		case CFDW_VERDICT_UNKNOWN:
			break;
	}
	o->error = cfdw_outcome_message(g->table, req, resp);
	return CFDW_MOVE_IN_DOUBT;
}

/*
 * A create refused because its title is taken in the space.  The page
 * exists, whoever made it: an earlier attempt of this row whose outcome was
 * lost, or someone else.  The row is done with that page's id; when no
 * current page has the title after all (a draft has it, say), it is dead
 * with Confluence's refusal; when Confluence cannot be asked, it is tried
 * again later (and counted).
 */
static CfdwQueueMove
settle_duplicate(SendGroup *g, const QueuedRow *row, const CfdwRequest *req,
				 CfdwQueueOutcome *o)
{
	char	   *id = NULL;

	switch (lookup_by_title(g, req, &id, NULL))
	{
		case TITLE_FOUND:
			o->remote_id = id;
			o->error = "Confluence already had a page with this title; it was found by its title";
			return CFDW_MOVE_DONE;
		case TITLE_ABSENT:
			return CFDW_MOVE_DEAD;
		case TITLE_UNSURE:
			break;
	}
	if (row->attempts >= MAX_ATTEMPTS)
		return CFDW_MOVE_DEAD;
	o->next_attempt_at = next_attempt(NULL, row->attempts);
	return CFDW_MOVE_RETRY;
}

/* ---------------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------------
 */

/*
 * Whether an error while resolving a row's table means the row can never
 * be sent as it is (a dropped table, server or user mapping, options that
 * no longer validate) rather than a passing trouble (out of memory, a
 * cancel, a lock timeout), which must not kill a whole group: those are
 * raised, and the rows stay pending for the next round.
 */
static bool
permanent_error(int sqlerrcode)
{
	/* in the same class as "object not in prerequisite state", but passing */
	if (sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE || sqlerrcode == ERRCODE_OBJECT_IN_USE)
		return false;
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:
		case ERRCODE_FEATURE_NOT_SUPPORTED:
		case ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION:
		case ERRCODE_INVALID_SCHEMA_NAME:
		case ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION:
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:
		case ERRCODE_FDW_ERROR:
			return true;
		default:
			return false;
	}
}

/*
 * The versions of the server and user mapping that rows of foreign table
 * relid are sent with as role, from the system caches:
 * "serverOID:xmin/mappingOID:xmin" (mapping 0:0 when there is none), or
 * NULL when relid is no foreign table.  Any ALTER of either row, or a DROP
 * and CREATE, gives another one; no option's value goes into it, so it can
 * be kept in the queue.  A held row keeps the one it was refused with.
 */
static char *
credentials_version(Oid relid, Oid role)
{
	HeapTuple	tp;
	Oid			serverid;
	Oid			umid;
	TransactionId server_xmin;
	TransactionId um_xmin = InvalidTransactionId;

	tp = SearchSysCache1(FOREIGNTABLEREL, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		return NULL;
	serverid = ((Form_pg_foreign_table) GETSTRUCT(tp))->ftserver;
	ReleaseSysCache(tp);
	tp = SearchSysCache1(FOREIGNSERVEROID, ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		return NULL;
	server_xmin = HeapTupleHeaderGetRawXmin(tp->t_data);
	ReleaseSysCache(tp);
	umid = cfdw_find_user_mapping(role, serverid);
	if (OidIsValid(umid))
	{
		tp = SearchSysCache1(USERMAPPINGOID, ObjectIdGetDatum(umid));
		if (HeapTupleIsValid(tp))
		{
			um_xmin = HeapTupleHeaderGetRawXmin(tp->t_data);
			ReleaseSysCache(tp);
		}
	}
	return psprintf("%u:%u/%u:%u", serverid, server_xmin, umid, um_xmin);
}

/*
 * The table of a group, resolved for its role as the INSERT would: the
 * server's and user mapping's options of now (a rotated token applies).
 * NULL with *error set when it cannot be (the table or the user mapping
 * was dropped).  No network work happens in the error path.  *version is
 * credentials_version(), read before the options: if they change between
 * the two, the version is the older one, and a row held with it is sent
 * again, never held with credentials it was not refused with.
 */
static CfdwTable *
resolve_group(const QueuedRow *row, char **error, char **version)
{
	CfdwTable  *t = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	*version = NULL;
	PG_TRY();
	{
		List	   *names;
		Oid			relid;
		Relation	rel;

		begin_work();
		names = cfdw_qualified_name_list(row->table_name);
		relid = RangeVarGetRelid(makeRangeVarFromNameList(names), AccessShareLock, true);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("foreign table %s no longer exists", row->table_name)));
		rel = RelationIdGetRelation(relid);
		if (rel->rd_rel->relkind != RELKIND_FOREIGN_TABLE)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("%s is no longer a foreign table", row->table_name)));
		*version = credentials_version(relid, row->role);
		t = cfdw_resolve_table(rel, row->role);
		RelationClose(rel);
		end_work();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (!permanent_error(edata->sqlerrcode))
			PG_RE_THROW();
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
		*error = psprintf("cannot send as role \"%s\" to server \"%s\": %s",
						  role ? role : "(dropped)", row->server_name, *error);
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
	PG_TRY();
	{
		end_work();
	}
	PG_CATCH();
	{
		/* counted as in use: give it back, or it could never be closed */
		cfdw_release_connection(c, &t->site);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return c;
}

/* A row's request (body in UTF-8); false with *error when it cannot be. */
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

/*
 * Resolve a group's table and build its requests; rows that cannot be
 * sent move with move_unsendable and leave the group.  False when none is
 * left.
 */
static bool
prepare_group(SendGroup *g, QueuedRow *rows, int n, CfdwQueueMove move_unsendable)
{
	char	   *error = NULL;
	int			ok = 0;
	CfdwQueueOutcome o;

	g->table = resolve_group(&rows[0], &error, &g->credentials_version);
	if (g->table == NULL)
	{
		o = failure(error);
		for (int i = 0; i < n; i++)
			move_row(move_unsendable, rows[i].id, &o);
		return false;
	}
	g->rows = palloc(sizeof(QueuedRow) * n);
	g->reqs = palloc(sizeof(CfdwRequest) * n);
	for (int i = 0; i < n; i++)
	{
		if (!build_request(g->table, &rows[i], &g->reqs[ok], &error))
		{
			o = failure(error);
			move_row(move_unsendable, rows[i].id, &o);
			continue;
		}
		g->rows[ok++] = rows[i];
	}
	g->n = ok;
	return ok > 0;
}

/*
 * Whether the group's server is rate-limited for long (server_waits): then
 * rows[0 .. n-1] are delayed, not sent.
 */
static bool
delayed_by_server(const SendGroup *g, const QueuedRow *rows, int n)
{
	TimestampTz until = server_wait_until(g->table->site.serverid);

	if (until == 0)
		return false;
	delay_rows(rows, n, g->table->servername, until);
	return true;
}

/*
 * cfdw_send_all's starting callback: claim the rows whose requests are
 * about to start, durably, before a byte of them can leave.  A row that
 * is no longer due (deleted meanwhile) is held back, and so are all when
 * an answer has just rate-limited the server for long (delayed instead).
 */
static void
claim_starting(void *arg, const int *index, int k, bool *go)
{
	SendGroup  *g = (SendGroup *) arg;
	int64		ids[CFDW_SLOTS];
	QueuedRow	rows[CFDW_SLOTS];

	for (int j = 0; j < k; j++)
		rows[j] = g->rows[index[j]];
	if (delayed_by_server(g, rows, k))
	{
		memset(go, 0, sizeof(bool) * k);
		return;
	}
	for (int j = 0; j < k; j++)
		ids[j] = g->rows[index[j]].id;
	(void) move_rows(CFDW_MOVE_CLAIM, ids, k, NULL, go);
	for (int j = 0; j < k; j++)
		if (go[j])
			g->rows[index[j]].attempts++;
}

/* Record one row's outcome; its memory goes with it. */
static void
record_outcome(SendGroup *g, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	const QueuedRow *row = &g->rows[index];
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	CfdwQueueOutcome o;
	CfdwQueueMove move = judge(g, row, req, resp, &o);

	if (move == CFDW_MOVE_DEAD && cfdw_is_duplicate_title(resp) && findable_by_title(g, row))
		move = settle_duplicate(g, row, req, &o);
	move_row(move, row->id, &o);
	/* the server's other rows wait for it too */
	if (move == CFDW_MOVE_POSTPONE)
		server_wait_set(g->table->site.serverid, o.next_attempt_at);
	MemoryContextSwitchTo(old);
	MemoryContextReset(row_cxt);
}

/* cfdw_send_all's outcome callback. */
static void
row_done(void *arg, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	record_outcome((SendGroup *) arg, index, req, resp);
}

/* cfdw_upsert_all's callback: the same, with the row's last request. */
static void
upsert_row_done(void *arg, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	record_outcome((SendGroup *) arg, index, req, resp);
}

/*
 * The rows of an upsert group are sent max_concurrency at a time, each
 * chunk claimed whole before its lookups start: an upsert row advances in
 * steps (lookup, then create or update), and all of a chunk's rows keep
 * their state until each is done, so a chunk of the requests in flight
 * bounds both what is claimed and what is held.  An upsert row interrupted
 * at any step goes back to pending (its lookup settles what the
 * interrupted attempt did).
 */
static void
send_upserts(SendGroup *g)
{
	int			chunk = Max(Min(g->table->max_concurrency, CFDW_MAX_CONCURRENCY), 1);
	bool	   *go = palloc(sizeof(bool) * chunk);
	int64	   *ids = palloc(sizeof(int64) * chunk);
	SendGroup	part = *g;

	for (int first = 0; first < g->n; first += chunk)
	{
		int			n = Min(chunk, g->n - first);
		int			ok = 0;

		if (delayed_by_server(g, g->rows + first, g->n - first))
			break;
		for (int i = 0; i < n; i++)
			ids[i] = g->rows[first + i].id;
		(void) move_rows(CFDW_MOVE_CLAIM, ids, n, NULL, go);
		part.rows = g->rows + first;
		part.reqs = g->reqs + first;
		for (int i = 0; i < n; i++)
		{
			if (!go[i])
				continue;
			part.rows[ok] = part.rows[i];
			part.rows[ok].attempts++;
			part.reqs[ok++] = part.reqs[i];
		}
		part.n = ok;
		if (ok > 0)
			cfdw_upsert_all(g->conn, g->table, part.reqs, part.n, upsert_row_done, &part);
	}
}

/*
 * The versions of the server and user mapping the group being sent was
 * resolved with (in batch_cxt; NULL between groups): what its rows are held
 * with when the token endpoint refuses their credentials (see guarded).
 */
static const char *sending_version = NULL;

/* Send a group of due rows: same table, same role. */
static void
send_group(QueuedRow *rows, int n)
{
	SendGroup	g;

	sending_version = NULL;
	if (!prepare_group(&g, rows, n, CFDW_MOVE_UNSENDABLE))
		return;
	sending_version = g.credentials_version;
	if (delayed_by_server(&g, g.rows, g.n))
		return;
	g.conn = connect_group(g.table);
	PG_TRY();
	{
		/* an access token first: no row is claimed while none can be had */
		cfdw_oauth_ready(&g.table->site);
		if (g.table->on_conflict != CFDW_CONFLICT_ERROR)
			send_upserts(&g);
		else
			cfdw_send_all(g.conn, g.table, g.reqs, g.n, claim_starting, row_done, &g);
	}
	PG_FINALLY();
	{
		cfdw_release_connection(g.conn, &g.table->site);
	}
	PG_END_TRY();
}

/* Rows left in 'sending' wait for the reconciliation (at start: all). */
static bool reconcile_needed = true;

/*
 * What an ERROR while a group was prepared or sent (a lock timeout, a
 * cancel, out of memory, an answer upsert.c cannot read) does to its rows:
 * the ones not claimed yet wait in retry_wait, counted as an attempt and
 * dead once attempts are used up, so that no row can stop the queue; the
 * claimed ones are still 'sending' and are reconciled.  Only database work
 * here: the group's transfers were stopped on the way out.
 */
static void
defer_group(QueuedRow *rows, int n, const char *error)
{
	for (int i = 0; i < n; i++)
	{
		CfdwQueueOutcome o = failure(error);
		CfdwQueueMove move = CFDW_MOVE_DEFER;

		if (rows[i].attempts + 1 >= MAX_ATTEMPTS)
		{
			o.error = psprintf("gave up after %d attempts: %s", rows[i].attempts + 1, error);
			move = CFDW_MOVE_UNSENDABLE;
		}
		else
			o.next_attempt_at = next_attempt(NULL, rows[i].attempts + 1);
		move_row(move, rows[i].id, &o);
	}
	reconcile_needed = true;
}

/*
 * Call fn with a group of rows.  An ERROR in it is the group's, reported
 * as a WARNING: the other groups are sent all the same.  Rows being sent
 * are deferred (defer_group); rows being reconciled become in_doubt,
 * settled the safe way rather than met again at every round.
 */
static void
guarded(void (*fn) (QueuedRow *rows, int n), QueuedRow *rows, int n, bool reconciling)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		fn(rows, n);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		if (reconciling)
		{
			CfdwQueueOutcome o = failure(psprintf("the worker was interrupted while sending this row, and could not check it: %s",
												  edata->message));

			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("confluence_fdw worker: %d queue rows of %s could not be reconciled: %s",
							n, rows[0].table_name, edata->message),
					 errdetail("They are marked in_doubt.")));
			for (int i = 0; i < n; i++)
				move_row(CFDW_MOVE_IN_DOUBT, rows[i].id, &o);
		}
		else if (edata->sqlerrcode == ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION &&
				 queue_holds && sending_version != NULL)
		{
			/*
			 * The OAuth token endpoint refused the mapping's client
			 * credentials (oauth.c): as with a 401 from Confluence, the rows
			 * wait for new credentials rather than spend their attempts.
			 * Only rows not claimed move; claimed ones are reconciled.
			 */
			CfdwQueueOutcome o = failure(edata->message);
			int64	   *ids = palloc(sizeof(int64) * n);

			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("confluence_fdw worker: %d queued rows of %s were not sent: %s",
							n, rows[0].table_name, edata->message),
					 errdetail("They are held until the user mapping or the server changes, or requeue().")));
			for (int i = 0; i < n; i++)
				ids[i] = rows[i].id;
			o.credentials_version = sending_version;
			(void) move_rows(CFDW_MOVE_HOLD_UNSENT, ids, n, &o, NULL);
			reconcile_needed = true;
		}
		else
		{
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("confluence_fdw worker: %d queued rows of %s were not sent: %s",
							n, rows[0].table_name, edata->message),
					 errdetail("They are tried again later, and rows that were being sent are reconciled first.")));
			defer_group(rows, n, edata->message);
		}
		sending_version = NULL;
	}
	PG_END_TRY();
}

/* Call fn with each run of rows of one table and role, guarded. */
static void
for_each_group(QueuedRow *rows, int n, void (*fn) (QueuedRow *rows, int n), bool reconciling)
{
	int			i = 0;

	while (i < n)
	{
		int			j = i + 1;

		while (j < n && rows[j].role == rows[i].role &&
			   strcmp(rows[j].table_name, rows[i].table_name) == 0)
			j++;
		guarded(fn, rows + i, j - i, reconciling);
		i = j;
	}
}

/* Send one batch of due rows; returns how many it had. */
static int
deliver_batch(void)
{
	int			n;
	QueuedRow  *rows = read_rows(false, &n);

	for_each_group(rows, n, send_group, false);
	return n;
}

/* ---------------------------------------------------------------------
 * Reconciliation after an interruption
 * ---------------------------------------------------------------------
 */

/* Settle one row found in 'sending', its request built. */
static void
reconcile_row(SendGroup *g, int index)
{
	const QueuedRow *row = &g->rows[index];
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	CfdwQueueOutcome o = {0};
	CfdwQueueMove move = CFDW_MOVE_IN_DOUBT;
	char	   *id = NULL;
	long		status = 0;

	bool		may_resend = row->attempts < MAX_ATTEMPTS;

	if (g->table->on_conflict != CFDW_CONFLICT_ERROR)
	{
		/* its lookup sees whatever the interrupted attempt did */
		if (may_resend)
		{
			o.error = "the worker was interrupted while sending this row; an upsert is sent again, and looks the page up first";
			o.next_attempt_at = next_attempt(NULL, row->attempts);
			move = CFDW_MOVE_RESEND;
		}
		else
			o.error = psprintf("the worker was interrupted while sending this row, after %d attempts; it may or may not have reached Confluence",
							   row->attempts);
	}
	else if (!findable_by_title(g, row))
		o.error = "the worker was interrupted while sending this row; it may or may not have reached Confluence";
	else
	{
		switch (lookup_by_title(g, &g->reqs[index], &id, &status))
		{
			case TITLE_FOUND:
				o.remote_id = id;
				o.http_status = 200;
				o.error = "found in Confluence by its title after the worker was interrupted";
				move = CFDW_MOVE_DONE;
				break;
			case TITLE_ABSENT:
				if (may_resend)
				{
					o.error = "the worker was interrupted before Confluence created this row's page; it is sent again";
					o.next_attempt_at = next_attempt(NULL, row->attempts);
					move = CFDW_MOVE_RESEND;
				}
				else
				{
					o.error = psprintf("gave up after %d attempts, each interrupted before Confluence created this row's page",
									   row->attempts);
					move = CFDW_MOVE_DEAD;
				}
				break;
			case TITLE_UNSURE:

				/*
				 * Refused for the credentials: held like a refused send.
				 * Sent again once they change, a page its interrupted
				 * attempt did create is refused for its title, and found.
				 */
				if (credentials_refused(status) && queue_holds)
				{
					o.http_status = (int) status;
					o.error = psprintf("the worker was interrupted while sending this row, and Confluence refused the credentials when asked whether it has it (HTTP %ld)",
									   status);
					o.credentials_version = g->credentials_version;
					move = CFDW_MOVE_HOLD;
					break;
				}
				o.error = "the worker was interrupted while sending this row, and Confluence could not be asked whether it has it";
				break;
		}
	}
	move_row(move, row->id, &o);
	MemoryContextSwitchTo(old);
	MemoryContextReset(row_cxt);
}

/* Reconcile a group of rows found in 'sending': same table, same role. */
static void
reconcile_group(QueuedRow *rows, int n)
{
	SendGroup	g;

	/* a row whose table is gone may still have been sent */
	if (!prepare_group(&g, rows, n, CFDW_MOVE_IN_DOUBT))
		return;
	g.conn = connect_group(g.table);
	PG_TRY();
	{
		for (int i = 0; i < g.n; i++)
			reconcile_row(&g, i);
	}
	PG_FINALLY();
	{
		cfdw_release_connection(g.conn, &g.table->site);
	}
	PG_END_TRY();
}

/*
 * Rows left in 'sending' by a worker that died (a crash, kill -9, an
 * immediate or fast shutdown, a failover) or that an ERROR interrupted:
 * never sent blindly again.  Read in batches like due rows (after an
 * upgrade from 1.0, whose worker claimed 256 rows at a time, there can be
 * many); every pass moves each row it reads out of 'sending'.
 */
static void
reconcile_all(void)
{
	int			passes = 0;
	int			n;

	reconcile_needed = false;
	do
	{
		QueuedRow  *rows = read_rows(true, &n);

		if (n > 0)
			ereport(LOG,
					(errmsg("confluence_fdw worker: reconciling %d queue rows left in state sending", n)));
		for_each_group(rows, n, reconcile_group, true);
		MemoryContextReset(batch_cxt);
	} while (n > 0 && ++passes < 64);
}

/* ---------------------------------------------------------------------
 * Held rows: sent again when their credentials change
 * ---------------------------------------------------------------------
 */

/*
 * A server or user mapping may have changed (a syscache invalidation of
 * either, which a reset of the caches also calls): held rows are compared
 * at the next round, not before release_after.  True at start, when
 * nothing is known; set again while a probe is out (its answer decides the
 * rest of its group) or a held row was locked by someone else.
 */
static bool credentials_changed = true;
static TimestampTz release_after = 0;

static void
catalog_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	credentials_changed = true;
	release_after = 0;
	if (cacheid == FOREIGNSERVEROID)
		server_wait_forget(hashvalue);
}

/* Whether held rows are to be compared now. */
static bool
release_due(void)
{
	return credentials_changed && queue_holds &&
		(release_after == 0 || GetCurrentTimestamp() >= release_after);
}

/* One (table, role, version) of held rows. */
typedef struct HeldGroup
{
	char	   *table_name;
	Oid			role;
	char	   *version;
} HeldGroup;

/* The held rows of a group. */
#define HELD_OF_GROUP \
	" FROM confluence_fdw.queue WHERE state = 'held' AND table_name = $1" \
	" AND enqueued_by::pg_catalog.oid = $2 AND credentials_version IS NOT DISTINCT FROM $3"

/*
 * Lock the held rows of group g (only its first, by id, when one): a row
 * that another transaction has locked (a requeue() not yet committed, an
 * UPDATE by hand) is skipped, not waited for, since one open transaction
 * must not stop the worker; *skipped says whether any was.  The ids, in
 * batch_cxt.
 */
static int64 *
lock_held(const HeldGroup *g, bool one, int *n, bool *skipped)
{
	CfdwPrivileged priv;
	Datum		args[3];
	Oid			types[3] = {TEXTOID, OIDOID, TEXTOID};
	char		nulls[3] = {' ', ' ', ' '};
	int64	   *ids;
	bool		isnull;
	int64		all;

	args[0] = CStringGetTextDatum(g->table_name);
	args[1] = ObjectIdGetDatum(g->role);
	args[2] = g->version ? CStringGetTextDatum(g->version) : (Datum) 0;
	nulls[2] = g->version ? ' ' : 'n';
	cfdw_privileged_begin(InvalidOid, &priv);
	if (SPI_execute_with_args("SELECT pg_catalog.count(*)" HELD_OF_GROUP,
							  3, types, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the held rows");
	all = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (SPI_execute_with_args(one
							  ? "SELECT id" HELD_OF_GROUP " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
							  : "SELECT id" HELD_OF_GROUP " FOR UPDATE SKIP LOCKED",
							  3, types, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not lock the held rows");
	*n = (int) SPI_processed;
	ids = MemoryContextAlloc(batch_cxt, sizeof(int64) * Max(*n, 1));
	for (int j = 0; j < *n; j++)
		ids[j] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[j], SPI_tuptable->tupdesc, 1, &isnull));
	cfdw_privileged_end(&priv);
	*skipped = one ? (*n == 0 && all > 0) : (*n < all);
	return ids;
}

/*
 * What has become of the probe of the role's rows held with version: 'p'
 * still to be sent (pending, sending, retry_wait), 'e' ended otherwise
 * than held (done, dead, in_doubt), 0 none.  A probe keeps its versions
 * until it is held again (then with the new ones) or requeued.
 */
static char
probe_state(Oid role, const char *version)
{
	CfdwPrivileged priv;
	Datum		args[2] = {ObjectIdGetDatum(role), CStringGetTextDatum(version)};
	Oid			types[2] = {OIDOID, TEXTOID};
	char		state = 0;
	bool		isnull;
	Datum		waiting;

	cfdw_privileged_begin(InvalidOid, &priv);
	if (SPI_execute_with_args("SELECT pg_catalog.bool_or(state <> ALL ('{done,dead,in_doubt}'::pg_catalog.text[]))"
							  " FROM confluence_fdw.queue WHERE state <> 'held'"
							  " AND enqueued_by::pg_catalog.oid = $1 AND credentials_version = $2",
							  2, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the held rows' probe");
	waiting = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		state = DatumGetBool(waiting) ? 'p' : 'e';
	cfdw_privileged_end(&priv);
	return state;
}

/* Whether some of the role's rows are held with version. */
static bool
held_with(Oid role, const char *version)
{
	CfdwPrivileged priv;
	Datum		args[2] = {ObjectIdGetDatum(role), CStringGetTextDatum(version)};
	Oid			types[2] = {OIDOID, TEXTOID};
	bool		found;

	cfdw_privileged_begin(InvalidOid, &priv);
	if (SPI_execute_with_args("SELECT FROM confluence_fdw.queue WHERE state = 'held'"
							  " AND enqueued_by::pg_catalog.oid = $1 AND credentials_version = $2 LIMIT 1",
							  2, types, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the held rows");
	found = SPI_processed > 0;
	cfdw_privileged_end(&priv);
	return found;
}

/*
 * Compare one group of held rows with its table's server and user mapping
 * of now, and move it on as queue_state.c says: nothing when they are the
 * same; when the table is gone, every row back to pending (each is then
 * dead with why, and nothing is sent); otherwise one probe first, the rest
 * once it has ended otherwise than held, or the new versions when the new
 * credentials were refused too.  Returns how many rows went back to
 * pending (*probed: as the group's probe); *again says whether to look
 * again (a probe out, a row locked).
 */
static int
release_group(const HeldGroup *g, bool *again, bool *probed)
{
	List	   *names = cfdw_qualified_name_list(g->table_name);
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(names), NoLock, true);
	char	   *now = OidIsValid(relid) ? credentials_version(relid, g->role) : NULL;
	CfdwQueueOutcome o = {0};
	int64	   *ids;
	int			k;
	bool		skipped = false;
	int			moved = 0;
	char		probe;

	if (now && g->version && strcmp(now, g->version) == 0)
		return 0;
	/* a table gone (or a row without versions): nothing to probe */
	probe = now && g->version ? probe_state(g->role, g->version) : 'e';
	if (now && held_with(g->role, now))
	{
		/* the credentials of now were refused as well */
		ids = lock_held(g, false, &k, &skipped);
		o.credentials_version = now;
		(void) cfdw_queue_move(CFDW_MOVE_REHOLD, ids, k, InvalidOid, &o, NULL);
	}
	else if (probe == 'e')
	{
		ids = lock_held(g, false, &k, &skipped);
		moved = cfdw_queue_move(CFDW_MOVE_RELEASE, ids, k, InvalidOid, NULL, NULL);
	}
	else if (probe == 'p')
		*again = true;			/* its answer decides */
	else
	{
		ids = lock_held(g, true, &k, &skipped);
		moved = cfdw_queue_move(CFDW_MOVE_PROBE, ids, k, InvalidOid, NULL, NULL);
		*probed = true;
		*again = true;
	}
	if (skipped)
		*again = true;
	return moved;
}

/* Read the groups of held rows (into batch_cxt). */
static HeldGroup *
read_held_groups(int *n)
{
	CfdwPrivileged priv;
	HeldGroup  *groups;

	cfdw_privileged_begin(InvalidOid, &priv);
	if (SPI_execute("SELECT table_name, enqueued_by::pg_catalog.oid, credentials_version"
					" FROM confluence_fdw.queue WHERE state = 'held' GROUP BY 1, 2, 3",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "confluence_fdw worker: could not read the held rows");
	*n = (int) SPI_processed;
	groups = MemoryContextAllocZero(batch_cxt, sizeof(HeldGroup) * Max(*n, 1));
	for (int j = 0; j < *n; j++)
	{
		HeapTuple	tup = SPI_tuptable->vals[j];
		bool		isnull;

		groups[j].table_name = spi_text(tup, 1);
		groups[j].role = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		groups[j].version = spi_text(tup, 3);
	}
	cfdw_privileged_end(&priv);
	return groups;
}

/*
 * One step of release_changed, in a transaction of its own: read the
 * groups (i < 0), or compare group i.  An ERROR is a WARNING; false then.
 */
static bool
release_step(HeldGroup **groups, int *n, int i, bool *again)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		begin_work();
		if (i < 0)
			*groups = read_held_groups(n);
		else
		{
			bool		probed = false;
			int			moved = release_group(&(*groups)[i], again, &probed);

			if (moved > 0 && probed)
				ereport(LOG,
						(errmsg("confluence_fdw worker: a held queue row of %s is pending again: its server or user mapping changed; the rows held with it wait for its answer",
								(*groups)[i].table_name)));
			else if (moved > 0)
				ereport(LOG,
						(errmsg_plural("confluence_fdw worker: %d held queue row of %s is pending again: its server or user mapping changed",
									   "confluence_fdw worker: %d held queue rows of %s are pending again: their server or user mapping changed",
									   moved, moved, (*groups)[i].table_name)));
		}
		end_work();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("confluence_fdw worker: could not compare held queue rows%s%s with their server and user mapping: %s",
						i < 0 ? "" : " of ", i < 0 ? "" : (*groups)[i].table_name,
						edata->message),
				 errdetail("They stay held and are compared again in a minute; other rows are sent all the same.")));
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Compare the held rows with the servers and user mappings of now, group
 * by group (release_group), each in a transaction of its own.  An ERROR is
 * a WARNING, and the rows are compared again a minute later: it stops
 * neither the other groups nor the delivery of due rows, which must not
 * depend on this.  Only database work here: nothing is sent.
 */
static void
release_changed(void)
{
	HeldGroup  *groups = NULL;
	int			n = 0;
	bool		again = false;
	bool		failed = false;

	credentials_changed = false;
	for (int i = -1; i < n; i++)
		if (!release_step(&groups, &n, i, &again))
			failed = true;
	if (failed || again)
	{
		credentials_changed = true;
		release_after = failed
			? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RELEASE_RETRY_MS)
			: 0;
	}
}

/* ---------------------------------------------------------------------
 * The main loop
 * ---------------------------------------------------------------------
 */

/* Forget done rows older than confluence_fdw.queue_retention. */
static void
purge_done(void)
{
	CfdwQueueOutcome o = {0};

	o.next_attempt_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													-(int64) cfdw_queue_retention_s * 1000);
	(void) move_rows(CFDW_MOVE_PURGE, NULL, 0, &o, NULL);
}

/* Before a wait: tell the statistics what was done, and that we idle. */
static void
report_idle(void)
{
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(true);
}

static void
reload_if_asked(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Wait for a wake-up, a due retry or the poll interval (ms). */
static void
wait_for_work(long timeout_ms)
{
	bool		woken;

	report_idle();
	SpinLockAcquire(&cfdw_shared->mutex);
	woken = cfdw_shared->wake_requested;
	cfdw_shared->wake_requested = false;
	SpinLockRelease(&cfdw_shared->mutex);
	if (!woken)
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	reload_if_asked();
}

/*
 * The pause after an ERROR: the whole of it, whoever wakes the worker
 * (every COMMIT that queues a row does), so that an error that comes back
 * at once cannot turn into a busy loop.
 */
static void
pause_after_error(long ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	report_idle();
	for (;;)
	{
		long		secs;
		int			usecs;

		TimestampDifference(GetCurrentTimestamp(), until, &secs, &usecs);
		if (secs == 0 && usecs == 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		reload_if_asked();
	}
}

void
cfdw_worker_main(Datum arg)
{
	sigjmp_buf	local_sigjmp_buf;
	volatile int errors = 0;
	volatile TimestampTz last_purge = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(cfdw_database_name, NULL, 0);
	pgstat_report_appname("confluence_fdw worker");

	SpinLockAcquire(&cfdw_shared->mutex);
	cfdw_shared->worker_latch = MyLatch;
	SpinLockRelease(&cfdw_shared->mutex);
	on_shmem_exit(forget_latch, (Datum) 0);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, catalog_inval_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, catalog_inval_callback, (Datum) 0);

	batch_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw worker",
									  ALLOCSET_DEFAULT_SIZES);
	row_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw worker row",
									ALLOCSET_DEFAULT_SIZES);

	/*
	 * An ERROR that one group's guard (for_each_group) did not take (one
	 * while reading the queue, say) ends the round, not the worker, as in
	 * PostgreSQL's own long-lived background processes (the autovacuum
	 * launcher, the background writer): report it, release what the
	 * aborted work held, abort the transaction, and go on.  Requests in
	 * flight were stopped on the way out (cfdw_send_all) and their rows are
	 * still 'sending', so they are reconciled before anything else is sent.
	 * The pause after an error grows, so a persistent one is not a busy
	 * loop.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		disable_all_timeouts(false);
		QueryCancelPending = false;
		EmitErrorReport();
		LWLockReleaseAll();
		ConditionVariableCancelSleep();
		pgstat_report_wait_end();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		MemoryContextReset(batch_cxt);
		MemoryContextReset(row_cxt);
		RESUME_INTERRUPTS();
		reconcile_needed = true;
		credentials_changed = true;
		errors = Min(errors + 1, 6);
		pause_after_error(POLL_MS << (errors - 1));
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		MemoryContextSwitchTo(batch_cxt);
		if (queue_exists())
		{
			if (reconcile_needed)
				reconcile_all();
			MemoryContextReset(batch_cxt);
			if (release_due())
				release_changed();
			MemoryContextReset(batch_cxt);
			while (deliver_batch() > 0)
			{
				CHECK_FOR_INTERRUPTS();
				MemoryContextReset(batch_cxt);
				if (reconcile_needed)
					reconcile_all();
				if (release_due())
					release_changed();
				MemoryContextReset(batch_cxt);
			}
			if (TimestampDifferenceExceeds(last_purge, GetCurrentTimestamp(), 60000))
			{
				purge_done();
				last_purge = GetCurrentTimestamp();
			}
		}
		errors = 0;
		MemoryContextReset(batch_cxt);
		wait_for_work(POLL_MS);
	}
}
