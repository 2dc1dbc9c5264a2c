/*-------------------------------------------------------------------------
 *
 * queue_state.c
 *		  The states of a row of confluence_fdw.queue and every transition
 *		  between them, in one table.  Nothing else writes the queue: the
 *		  worker (worker.c) and requeue() (queue.c) name a transition, and
 *		  cfdw_queue_move() checks it against the table and runs its one
 *		  UPDATE (or DELETE).  INSERT into a delivery 'queue' table creates
 *		  rows in 'pending' (cfdw_enqueue).
 *
 *	 pending ──claim──▶ sending ──answered 2xx / found by title──▶ done ──purge──▶ (gone)
 *	 retry_wait ─claim─┘   │ ├──certainly not processed, attempts left──▶ retry_wait
 *	      ▲                │ ├──rate-limited beyond max_retry_wait_ms──▶ retry_wait
 *	      │                │ │     (postpone: the attempt is given back; dead
 *	      │                │ │      instead once the row was queued 7 days ago)
 *	      │                │ ├──refused, or attempts used up──▶ dead ──requeue──▶ pending
 *	      │                │ ├──refused with 401 or 403──▶ held ──requeue──▶ pending
 *	      │                │ │                               ├──its user mapping or server
 *	      │                │ │                               │  changed: one row of the
 *	      │                │ │                               │  group (probe)──▶ pending
 *	      │                │ │                               ├──the probe was answered, not
 *	      │                │ │                               │  401/403: the rest (release)──▶ pending
 *	      │                │ │                               └──the probe was refused again
 *	      │                │ │                                  (rehold)──▶ held, its versions
 *	      │                │ ├──may have been processed──▶ in_doubt ──requeue──▶ pending
 *	      │                │ └──interrupted, proven unsent or an upsert──▶ pending
 *	 pending/retry_wait ──cannot be sent as it is (table, mapping gone)──▶ dead
 *	 pending/retry_wait ──an ERROR while its group was prepared or sent──▶ retry_wait
 *	                      (counted as an attempt; dead once attempts are used up)
 *	 pending/retry_wait ──its server is rate-limited (another row's postpone)──▶ retry_wait
 *	                      (delay: not sent, no attempt counted; dead instead once
 *	                       the row was queued 7 days ago)
 *	 pending/retry_wait ──the OAuth token endpoint refused the user mapping's
 *	                      client credentials──▶ held (hold_unsent: nothing was sent,
 *	                      no attempt counted; it leaves held as above)
 *
 * held is no end: the row waits for a person (credentials rotated, a
 * permission granted), so flush() does not wait for it, the purge does not
 * take it, and it leaves by requeue() or when the worker sees that the
 * server or user mapping it was refused with has changed: each held row
 * keeps the versions (OIDs and xmin, never an option's value) of the
 * pg_foreign_server and pg_user_mapping rows it was sent with, and a
 * syscache invalidation of either catalog makes the worker compare them.
 * A change need not be a fix (a GRANT on the server, an unrelated option),
 * and every request with refused credentials counts towards an account's
 * lockout, so one row of each group held with the same versions goes first
 * (probe, which keeps the versions and so marks the row as the group's
 * probe); the others follow (release) once the probe has an end that is no
 * 401 or 403 (done, dead, in_doubt), and take the probe's new versions
 * (rehold) when it is held again.  requeue() and release clear the
 * versions; a finished probe keeps them, which is what marks it as one.
 *
 * What a crash (or a fast shutdown, a cancel, an ERROR) between two steps
 * leaves behind, for each transition:
 *
 *	claim	committed with synchronous_commit at least 'on' before the
 *			request is handed to libcurl, so a row whose bytes may have left
 *			is 'sending' on disk, and on a synchronous standby unless the
 *			wait for it was cancelled (PostgreSQL then commits locally with
 *			a WARNING, and a failover right after can lose that claim).
 *			Only rows about to start are claimed, so a crash leaves in
 *			'sending' the requests in flight, plus those claimed and stopped
 *			before they left or whose answers an ERROR cut off: the
 *			reconciliation treats all of them as possibly sent (a page is
 *			looked up, a comment is in_doubt).
 *	outcome	(done, retry_wait, postpone, dead, held, in_doubt) committed
 *			with synchronous_commit off: a lost outcome leaves the row
 *			'sending', and the reconciliation settles it as after a crash
 *			mid-send.  The claim's attempt stays counted then: postpone gives
 *			it back in the same UPDATE that leaves 'sending' (and only from
 *			'sending'), so it is given back once or not at all.  A lost hold
 *			is such a lost outcome too: a page is looked up, and held again
 *			when the lookup is refused with 401 or 403 (sent again once the
 *			credentials change, a page its lost attempt made is then refused
 *			for its title and found), an upsert goes back to pending (its
 *			lookup is refused and held), any other row is in_doubt.
 *	resend	(sending -> pending) by the reconciliation: lost, it is redone.
 *	delay	committed with synchronous_commit off; lost, the row is due
 *			again and sent once (the worker's wait for its server, kept in
 *			its memory, went with it), and that answer postpones it again.
 *	hold_unsent  committed with synchronous_commit off; lost, the row is
 *			due again, its group asks the token endpoint once more (nothing
 *			reaches Confluence without a token) and is held again.
 *	probe, release, rehold
 *			committed with synchronous_commit off; each is decided afresh
 *			from what the queue holds (no state of the worker's), so a lost
 *			one is made again when the worker starts: a lost probe leaves
 *			the group held with the old versions, which still differ from
 *			the catalogs' (one probe is sent, as before); a lost release or
 *			rehold leaves the finished or held probe that decides it.
 *	requeue	in the caller's transaction.
 *	purge	idempotent.
 *
 * The reconciliation runs when the worker starts and after any ERROR it
 * survived (worker.c): rows in 'sending' are then never sent blindly.
 *
 * IDENTIFICATION
 *		  src/queue_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "confluence_fdw.h"

#define S(x) (1 << (x))

static const char *const state_names[CFDW_Q_NSTATES] = {
	[CFDW_Q_PENDING] = "pending",
	[CFDW_Q_RETRY_WAIT] = "retry_wait",
	[CFDW_Q_SENDING] = "sending",
	[CFDW_Q_DONE] = "done",
	[CFDW_Q_DEAD] = "dead",
	[CFDW_Q_IN_DOUBT] = "in_doubt",
	[CFDW_Q_HELD] = "held",
};

/*
 * The columns an outcome writes: $2 .. $8 of every statement ($9, the
 * credentials' versions, only hold and rehold write).
 */
#define OUTCOME_SET \
	"http_status = $2, remote_id = COALESCE($3, remote_id), action = $4," \
	" response = $5::pg_catalog.jsonb, error = $6, next_attempt_at = $7," \
	" sent_at = CASE WHEN $8 THEN pg_catalog.now() ELSE sent_at END"

typedef struct QueueTransition
{
	CfdwQueueMove move;
	const char *name;			/* for messages */
	int			from;			/* S(state) of the states it leaves */
	CfdwQueueState to;			/* CFDW_Q_NSTATES: the row is deleted */
	const char *set;			/* what it writes besides the state */
	bool		durable;		/* committed with synchronous_commit >= on */
} QueueTransition;

/* The transitions, in the order of the diagram above. */
static const QueueTransition transitions[] = {
	{CFDW_MOVE_CLAIM, "claim", S(CFDW_Q_PENDING) | S(CFDW_Q_RETRY_WAIT), CFDW_Q_SENDING,
	"attempts = attempts + 1, claimed_at = pg_catalog.now()", true},
	{CFDW_MOVE_DONE, "done", S(CFDW_Q_SENDING), CFDW_Q_DONE,
	OUTCOME_SET ", done_at = pg_catalog.now()", false},
	{CFDW_MOVE_PURGE, "purge", S(CFDW_Q_DONE), CFDW_Q_NSTATES, NULL, false},
	{CFDW_MOVE_RETRY, "retry", S(CFDW_Q_SENDING), CFDW_Q_RETRY_WAIT, OUTCOME_SET, false},
	{CFDW_MOVE_DEAD, "dead", S(CFDW_Q_SENDING), CFDW_Q_DEAD,
	OUTCOME_SET ", done_at = pg_catalog.now()", false},
	{CFDW_MOVE_REQUEUE, "requeue", S(CFDW_Q_DEAD) | S(CFDW_Q_IN_DOUBT) | S(CFDW_Q_HELD), CFDW_Q_PENDING,
	"attempts = 0, error = NULL, done_at = NULL, next_attempt_at = pg_catalog.now(),"
	" credentials_version = NULL", false},
	{CFDW_MOVE_IN_DOUBT, "in_doubt", S(CFDW_Q_SENDING), CFDW_Q_IN_DOUBT, OUTCOME_SET, false},
	{CFDW_MOVE_RESEND, "resend", S(CFDW_Q_SENDING), CFDW_Q_PENDING, OUTCOME_SET, false},
	{CFDW_MOVE_UNSENDABLE, "unsendable", S(CFDW_Q_PENDING) | S(CFDW_Q_RETRY_WAIT), CFDW_Q_DEAD,
	OUTCOME_SET ", done_at = pg_catalog.now()", false},
	{CFDW_MOVE_DEFER, "defer", S(CFDW_Q_PENDING) | S(CFDW_Q_RETRY_WAIT), CFDW_Q_RETRY_WAIT,
	"attempts = attempts + 1, " OUTCOME_SET, false},
	{CFDW_MOVE_POSTPONE, "postpone", S(CFDW_Q_SENDING), CFDW_Q_RETRY_WAIT,
	"attempts = GREATEST(attempts - 1, 0), " OUTCOME_SET, false},
	{CFDW_MOVE_HOLD, "hold", S(CFDW_Q_SENDING), CFDW_Q_HELD,
	OUTCOME_SET ", credentials_version = $9", false},
	{CFDW_MOVE_PROBE, "probe", S(CFDW_Q_HELD), CFDW_Q_PENDING,
	"attempts = 0, next_attempt_at = pg_catalog.now()", false},
	{CFDW_MOVE_RELEASE, "release", S(CFDW_Q_HELD), CFDW_Q_PENDING,
	"attempts = 0, next_attempt_at = pg_catalog.now(), credentials_version = NULL", false},
	{CFDW_MOVE_REHOLD, "rehold", S(CFDW_Q_HELD), CFDW_Q_HELD, "credentials_version = $9", false},
	{CFDW_MOVE_DELAY, "delay", S(CFDW_Q_PENDING) | S(CFDW_Q_RETRY_WAIT), CFDW_Q_RETRY_WAIT,
	OUTCOME_SET, false},
	{CFDW_MOVE_HOLD_UNSENT, "hold_unsent", S(CFDW_Q_PENDING) | S(CFDW_Q_RETRY_WAIT), CFDW_Q_HELD,
	OUTCOME_SET ", credentials_version = $9", false},
};

/* Each transition's statement, prepared once per process. */
static SPIPlanPtr plans[CFDW_MOVE_COUNT];

static const QueueTransition *
find_transition(CfdwQueueMove move)
{
	for (int i = 0; i < lengthof(transitions); i++)
		if (transitions[i].move == move)
			return &transitions[i];
	elog(ERROR, "confluence_fdw: unknown queue transition %d", (int) move);
	return NULL;				/* keep the compiler quiet */
}

const char *
cfdw_queue_state_name(CfdwQueueState state)
{
	return state_names[state];
}

/* The transition's statement: the table's words, nothing else. */
static SPIPlanPtr
transition_plan(const QueueTransition *tr)
{
	Oid			types[9] = {INT8ARRAYOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TIMESTAMPTZOID, BOOLOID, TEXTOID};
	StringInfoData from;
	StringInfoData sql;
	SPIPlanPtr	plan;

	if (plans[tr->move] != NULL)
		return plans[tr->move];

	initStringInfo(&from);
	for (int s = 0; s < CFDW_Q_NSTATES; s++)
		if (tr->from & S(s))
			appendStringInfo(&from, "%s%s", from.len ? "," : "", state_names[s]);
	initStringInfo(&sql);
	if (tr->to == CFDW_Q_NSTATES)
		appendStringInfoString(&sql, "DELETE FROM confluence_fdw.queue");
	else
		appendStringInfo(&sql, "UPDATE confluence_fdw.queue SET state = '%s', %s",
						 state_names[tr->to], tr->set);
	/* purge: $7 is the cut-off, and the ids are not known */
	if (tr->move == CFDW_MOVE_PURGE)
		appendStringInfoString(&sql, " WHERE done_at < $7");
	else
		appendStringInfoString(&sql, " WHERE id = ANY ($1)");
	appendStringInfo(&sql, " AND state = ANY ('{%s}'::pg_catalog.text[]) RETURNING id", from.data);

	plan = SPI_prepare(sql.data, lengthof(types), types);
	if (plan == NULL)
		elog(ERROR, "confluence_fdw: could not prepare the queue transition %s: %s",
			 tr->name, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "confluence_fdw: could not keep the queue transition %s", tr->name);
	plans[tr->move] = plan;
	return plan;
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * cfdw_queue_move
 *		Apply a transition to the rows ids[0 .. n-1] that are in one of its
 *		from-states, in the current transaction, as role (InvalidOid: as
 *		we are).  o gives what an outcome writes (NULL: nothing; the purge
 *		reads o->next_attempt_at as its cut-off).  moved[i], when given, says
 *		whether ids[i] moved.  Returns how many rows moved.
 */
int
cfdw_queue_move(CfdwQueueMove move, const int64 *ids, int n, Oid role,
				const CfdwQueueOutcome *o, bool *moved)
{
	const QueueTransition *tr = find_transition(move);
	CfdwQueueOutcome none = {0};
	Datum		v[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	CfdwPrivileged priv;
	int			rc;
	int			count;

	if (o == NULL)
		o = &none;
	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	v[0] = PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), true, TYPALIGN_DOUBLE));
	v[1] = Int32GetDatum(o->http_status);
	nulls[1] = o->http_status ? ' ' : 'n';
	v[2] = text_or_null(o->remote_id, &nulls[2]);
	v[3] = text_or_null(o->action, &nulls[3]);
	v[4] = text_or_null(o->response, &nulls[4]);
	v[5] = text_or_null(o->error, &nulls[5]);
	v[6] = TimestampTzGetDatum(o->next_attempt_at ? o->next_attempt_at : GetCurrentTimestamp());
	v[7] = BoolGetDatum(o->sent);
	v[8] = text_or_null(o->credentials_version, &nulls[8]);

	/*
	 * A claim must be on disk (and on a synchronous standby) before its
	 * request can leave, whatever the server's synchronous_commit says;
	 * an outcome may be lost (see the top of this file).
	 */
	if (tr->durable)
	{
		const char *cur = GetConfigOption("synchronous_commit", false, false);

		if (strcmp(cur, "on") != 0 && strcmp(cur, "remote_apply") != 0)
			(void) set_config_option("synchronous_commit", "on", PGC_USERSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	}
	else if (move != CFDW_MOVE_REQUEUE)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	cfdw_privileged_begin(role, &priv);
	rc = SPI_execute_plan(transition_plan(tr), v, nulls, false, 0);
	if (rc != (tr->to == CFDW_Q_NSTATES ? SPI_OK_DELETE_RETURNING : SPI_OK_UPDATE_RETURNING))
		elog(ERROR, "confluence_fdw: queue transition %s failed: %s",
			 tr->name, SPI_result_code_string(rc));
	count = (int) SPI_processed;
	if (moved)
	{
		memset(moved, 0, sizeof(bool) * n);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			bool		isnull;
			int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
														 SPI_tuptable->tupdesc, 1, &isnull));

			for (int i = 0; i < n; i++)
				if (ids[i] == id)
					moved[i] = true;
		}
	}
	cfdw_privileged_end(&priv);
	return count;
}
