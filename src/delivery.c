/*-------------------------------------------------------------------------
 *
 * delivery.c
 *		  The delivery policy of confluence_fdw over the transport: which
 *		  failures are retried and after how long, what on_error 'return'
 *		  lets through, and the accounting of a pipeline (many requests in
 *		  flight for rows that need no answer).
 *
 * Slot 0 of a connection serves the one-at-a-time path (RETURNING); slots
 * 1.. serve pipelines, which keep up to max_concurrency requests in flight.
 * Retries are scheduled per slot, so one rate-limited request does not
 * stall the others.  A retry is decided by the transfer's outcome alone:
 * what certainly did not reach Confluence may be sent again; what may have
 * been processed is resent only when the method is idempotent and the
 * answer says the server did not act (502, 503, 504).  A GET changes
 * nothing, so any 5xx and a dropped connection are retried too.
 *
 * IDENTIFICATION
 *		  src/delivery.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "confluence_fdw.h"
#include "pure.h"

/*
 * An answer asked every client of the site to wait: tell the others
 * (ratelimit.c).  A wait longer than anyone here would retry after
 * (max_retry_wait_ms) is not shared: that row fails with its 429, and later
 * statements are not held back for it.  Every such answer is counted for
 * the view.
 */
static void
note_rate_limit(const CfdwTable *t, const CfdwResponse *resp)
{
	if (resp->outcome != CFDW_ANSWERED ||
		!(resp->status == 429 || (resp->status == 503 && resp->retry_after[0])))
		return;
	cfdw_rate_note(t->site.rate_key,
				   cfdw_retry_after_ms(resp->retry_after, time(NULL)),
				   t->max_retry_wait_ms);
}

/* ---------------------------------------------------------------------
 * Retries
 * ---------------------------------------------------------------------
 */

/*
 * cfdw_verdict
 *		What a finished request means for sending it again: the one retry
 *		classification, used by statements (schedule_retry below) and by
 *		the queue worker alike.
 *
 *	OK		answered 2xx.
 *	RETRY	certainly not processed, and may work later: a transfer that
 *			never reached Confluence, 429, 503 with Retry-After; for
 *			idempotent methods also 502, 503 and 504; for a GET, which
 *			changes nothing, any 5xx and any failed transfer.
 *	REFUSED	final: any other answer below 500 (a 4xx is a refusal, and a
 *			3xx is one for an API), an address refused by egress control (it
 *			would be refused again; nothing was sent), a read whose answer
 *			exceeded max_response_bytes (it would again).
 *	UNKNOWN	may have been processed, and sending it again could do it twice:
 *			a non-idempotent request that failed after it may have left,
 *			answered 5xx, or answered beyond max_response_bytes.
 */
CfdwVerdict
cfdw_verdict(const CfdwRequest *req, const CfdwResponse *resp)
{
	bool		read = req->method == CFDW_GET;
	bool		idempotent = read || req->method == CFDW_PUT || req->method == CFDW_DELETE;

	if (resp->outcome != CFDW_ANSWERED)
	{
		if (resp->failure == CFDW_FAIL_EGRESS)
			return CFDW_VERDICT_REFUSED;
		if (resp->failure == CFDW_FAIL_TOO_LARGE)
			return read ? CFDW_VERDICT_REFUSED : CFDW_VERDICT_UNKNOWN;
		return resp->outcome == CFDW_NOT_SENT || read ? CFDW_VERDICT_RETRY : CFDW_VERDICT_UNKNOWN;
	}
	if (resp->status < 300)
		return CFDW_VERDICT_OK;
	if (resp->status == 429 || (resp->status == 503 && resp->retry_after[0] != '\0'))
		return CFDW_VERDICT_RETRY;
	if (idempotent && (resp->status == 502 || resp->status == 503 || resp->status == 504))
		return CFDW_VERDICT_RETRY;
	if (resp->status < 500)
		return CFDW_VERDICT_REFUSED;
	return read ? CFDW_VERDICT_RETRY : CFDW_VERDICT_UNKNOWN;
}

/*
 * cfdw_backoff_ms
 *		How long to wait before retry number retries + 1: max(Retry-After,
 *		backoff), the backoff 500 ms doubling up to cap_ms, times 0.7 to 1.3.
 *		Statements cap it at 30 s (they wait within max_retry_wait_ms); the
 *		queue, whose rows wait in retry_wait with no session held, at
 *		5 minutes.
 */
long
cfdw_backoff_ms(const CfdwResponse *resp, int retries, long cap_ms)
{
	long		backoff = Min(500L << Min(retries, 16), cap_ms);
	long		asked = resp ? cfdw_retry_after_ms(resp->retry_after, time(NULL)) : 0;

	backoff = (long) (backoff * (0.7 + 0.6 * pg_prng_double(&pg_global_prng_state)));
	return Max(backoff, asked);
}

/*
 * Decide whether the finished request in a slot is retried, and if so
 * schedule it: 429, 503 with Retry-After, a failure that certainly did not
 * reach Confluence, and for idempotent methods also 502/503/504, never
 * waiting more than max_retry_wait_ms in all for one request.
 */
static bool
schedule_retry(CfdwConnection *c, int slot, const CfdwTable *t, CfdwAttempts *a)
{
	const CfdwRequest *req = cfdw_transfer_request(c, slot);
	const CfdwResponse *resp = cfdw_transfer_response(c, slot);
	const char *what;
	long		wait;

	note_rate_limit(t, resp);

	/*
	 * Confluence refused an access token kept from before (revoked, or its
	 * life shorter than it said): send once more with a new one.  A 401 is
	 * a refusal before anything was done, so this resends nothing that was
	 * processed, and it is no retry of max_retries.
	 */
	if (!a->reauthorized && cfdw_oauth_refused(&t->site, resp))
	{
		a->reauthorized = true;
		cfdw_transfer_start(c, slot, &t->site, req, 0);
		return true;
	}

	if (a->retries >= t->max_retries || cfdw_verdict(req, resp) != CFDW_VERDICT_RETRY)
		return false;

	wait = cfdw_backoff_ms(resp, a->retries, CFDW_STATEMENT_BACKOFF_CAP_MS);
	what = resp->outcome != CFDW_ANSWERED ? "a connection failure" :
		psprintf("HTTP %ld", resp->status);

	/*
	 * statement_timeout needs no test here: the wait is on the latch, so
	 * the timeout interrupts it at its deadline with PostgreSQL's own error.
	 */
	if (a->waited_ms + wait > t->max_retry_wait_ms)
	{
		ereport(LOG,
				(errmsg("confluence_fdw: not retrying %s %s after %s: waiting %ld ms would exceed max_retry_wait_ms (%d)",
						cfdw_method_name(req->method), req->path_for_messages,
						what, wait, t->max_retry_wait_ms)));
		return false;
	}
	a->retries++;
	ereport(LOG,
			(errmsg("confluence_fdw: retrying %s %s after %s in %ld ms (retry %d of %d)",
					cfdw_method_name(req->method), req->path_for_messages,
					what, wait, a->retries, t->max_retries)));
	a->waited_ms += wait;
	cfdw_transfer_start(c, slot, &t->site, req,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait));
	return true;
}

/* ---------------------------------------------------------------------
 * One request at a time
 * ---------------------------------------------------------------------
 */

/*
 * cfdw_send
 *		Send one request and wait for its answer, with the retry policy.
 *		Transport failures are reported in resp, not raised; only an
 *		interrupt raises an error, after the statement's transfers were
 *		stopped (the other statements' on the same pool go on).  The body
 *		stays valid until the next request in this connection's slot 0.
 */
void
cfdw_send(CfdwConnection *c, const CfdwTable *t,
		  const CfdwRequest *req, CfdwResponse *resp)
{
	CfdwAttempts a = {0};

	PG_TRY();
	{
		cfdw_transfer_start(c, 0, &t->site, req, 0);
		for (;;)
		{
			if (cfdw_transfer_state(c, 0) == CFDW_SLOT_DONE)
			{
				if (!schedule_retry(c, 0, t, &a))
					break;
				continue;
			}
			cfdw_transport_wait(c);
		}
	}
	PG_CATCH();
	{
		cfdw_abort_transfers(c, t->site.config_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
	*resp = *cfdw_transfer_response(c, 0);
	cfdw_transfer_release(c, 0);
}

/* ---------------------------------------------------------------------
 * Pipelines: many requests in flight for rows that need no answer
 * ---------------------------------------------------------------------
 */

/*
 * The WARNING for a pipelined row whose HTTP error on_error 'return' lets
 * through.  The summary (a parsed body) is made in a context of its own and
 * dropped at once: in the statement's context, a long INSERT of refused
 * rows would grow by every answer it got.
 */
static void
warn_returned_error(const CfdwResponse *resp, int64 row_no)
{
	static MemoryContext msg_cxt = NULL;
	MemoryContext old;
	char	   *summary;

	if (msg_cxt == NULL)
		msg_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw messages",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(msg_cxt);
	summary = cfdw_error_summary(resp);
	ereport(WARNING,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Confluence returned HTTP %ld for row %lld%s%s; the statement goes on because on_error is 'return'",
					resp->status, (long long) row_no,
					summary ? ": " : "", summary ? summary : ""),
			 errhint("Add RETURNING http_status, response to see each row's answer.")));
	MemoryContextSwitchTo(old);
	MemoryContextReset(msg_cxt);
}

/* Is the slot this pipeline's, finished, and not yet looked at? */
static bool
is_new_result(CfdwConnection *c, const CfdwTable *t, const CfdwPipeline *p, int slot)
{
	return !p->failed[slot] &&
		cfdw_transfer_state(c, slot) == CFDW_SLOT_DONE &&
		cfdw_transfer_owner(c, slot) == t->site.config_id;
}

/*
 * Collect the finished requests of a pipeline: successes free their slot;
 * under on_error 'return' an HTTP error is a WARNING and frees its slot
 * too; otherwise a failure is kept for the owner to report, the first one
 * named by failed_slot.
 */
static void
collect(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p)
{
	int			i;

	for (i = 1; i < CFDW_SLOTS; i++)
	{
		const CfdwResponse *resp;

		if (!is_new_result(c, t, p, i) || schedule_retry(c, i, t, &p->attempts[i]))
			continue;
		resp = cfdw_transfer_response(c, i);
		if (resp->outcome == CFDW_ANSWERED &&
			(resp->status < 300 || (t->on_error_return && resp->status >= 400)))
		{
			if (resp->status >= 300)
				warn_returned_error(resp, p->attempts[i].row_no);
			cfdw_transfer_release(c, i);
			p->nsent++;
			continue;
		}
		p->failed[i] = true;
		if (p->failed_slot == 0)
			p->failed_slot = i;
	}
}

/* Slots of this pipeline still busy (running, scheduled, or uncollected). */
static int
busy_slots(CfdwConnection *c, const CfdwTable *t, const CfdwPipeline *p)
{
	int			n = 0;
	int			i;

	for (i = 1; i < CFDW_SLOTS; i++)
		if (!p->failed[i] && cfdw_transfer_state(c, i) != CFDW_SLOT_IDLE &&
			cfdw_transfer_owner(c, i) == t->site.config_id)
			n++;
	return n;
}

/*
 * cfdw_pipeline_busy
 *		How many of the statement's requests are still in flight (sent or
 *		being sent, or waiting to be retried), for messages.
 */
int
cfdw_pipeline_busy(CfdwConnection *c, const CfdwTable *t, const CfdwPipeline *p)
{
	return c ? busy_slots(c, t, p) : 0;
}

/*
 * Run the event loop for a pipeline until fewer than limit of its slots are
 * busy (or a failure stopped it), or with limit 0 until none is.  On an
 * interrupt (or any error) the statement's own transfers are stopped.
 */
static void
run_pipeline(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p, int limit)
{
	PG_TRY();
	{
		for (;;)
		{
			int			busy;

			collect(c, t, p);
			busy = busy_slots(c, t, p);
			if (limit > 0 ? (p->failed_slot != 0 || busy < limit) : busy == 0)
				break;
			cfdw_transport_wait(c);
		}
	}
	PG_CATCH();
	{
		/* counted first: the statement's WARNING says how many were stopped */
		p->stopped_in_flight = busy_slots(c, t, p);
		cfdw_abort_transfers(c, t->site.config_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * cfdw_pipeline_slot
 *		Wait until the pipeline may start one more request, and return the
 *		slot to build it in (1 .. CFDW_SLOTS - 1), or 0 when a failure has
 *		stopped the pipeline: then call cfdw_pipeline_drain.
 */
int
cfdw_pipeline_slot(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p)
{
	int			limit = Min(t->max_concurrency, CFDW_MAX_CONCURRENCY);
	int			i;

	/* at most max_concurrency connections to the site */
	cfdw_limit_connections(c, limit);
	run_pipeline(c, t, p, limit);

	if (p->failed_slot != 0)
		return 0;
	for (i = 1; i < CFDW_SLOTS; i++)
		if (cfdw_transfer_state(c, i) == CFDW_SLOT_IDLE)
			return i;
	return 0;					/* cannot happen: limit < number of slots */
}

/*
 * cfdw_pipeline_start
 *		Start a request in the slot cfdw_pipeline_slot returned.  req's
 *		strings must stay valid until that slot is handed out again.
 */
void
cfdw_pipeline_start(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
					int slot, const CfdwRequest *req, int64 row_no)
{
	p->failed[slot] = false;
	p->attempts[slot].retries = 0;
	p->attempts[slot].waited_ms = 0;
	p->attempts[slot].row_no = row_no;
	p->attempts[slot].reauthorized = false;
	cfdw_transfer_start(c, slot, &t->site, req, 0);
}

/*
 * cfdw_pipeline_drain
 *		Wait for every request of the pipeline to finish.  Returns true when
 *		one failed; then req, resp and row_no describe the first failure (its
 *		body valid until the slot is used again); the others only count as
 *		not sent.
 */
bool
cfdw_pipeline_drain(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
					CfdwRequest *req, CfdwResponse *resp, int64 *row_no)
{
	int			i;

	run_pipeline(c, t, p, 0);
	if (p->failed_slot == 0)
		return false;

	*req = *cfdw_transfer_request(c, p->failed_slot);
	*resp = *cfdw_transfer_response(c, p->failed_slot);
	*row_no = p->attempts[p->failed_slot].row_no;
	for (i = 1; i < CFDW_SLOTS; i++)
	{
		if (!p->failed[i])
			continue;
		p->failed[i] = false;
		cfdw_transfer_release(c, i);
	}
	return true;
}

/* ---------------------------------------------------------------------
 * Many independent requests (the queue worker)
 * ---------------------------------------------------------------------
 */

/*
 * Start requests in free slots while fewer than limit are busy.  The
 * caller's starting callback sees them first, all at once, and may hold
 * some back: those finish without being sent or reported.  Returns how many
 * were taken (started or held back).
 */
static int
fill_slots(CfdwConnection *c, const CfdwTable *t, const CfdwRequest *reqs, int n,
		   int limit, int *next, int *busy, int *index_of, CfdwAttempts *attempts,
		   CfdwStartCallback starting, void *arg)
{
	int			slot_of[CFDW_SLOTS];
	int			index[CFDW_SLOTS];
	bool		go[CFDW_SLOTS];
	int			k = 0;

	for (int i = 1; i < CFDW_SLOTS && *next + k < n && *busy + k < limit; i++)
	{
		if (cfdw_transfer_state(c, i) != CFDW_SLOT_IDLE)
			continue;
		slot_of[k] = i;
		index[k] = *next + k;
		go[k] = true;
		k++;
	}
	if (k == 0)
		return 0;
	if (starting)
		starting(arg, index, k, go);
	*next += k;
	for (int j = 0; j < k; j++)
	{
		int			i = slot_of[j];

		if (!go[j])
			continue;
		index_of[i] = index[j];
		attempts[i].retries = 0;
		attempts[i].waited_ms = 0;
		attempts[i].row_no = index[j];
		attempts[i].reauthorized = false;
		cfdw_transfer_start(c, i, &t->site, &reqs[index[j]], 0);
		(*busy)++;
	}
	return k;
}

/* cfdw_send_all's event loop, until every request has its outcome. */
static void
send_all_loop(CfdwConnection *c, const CfdwTable *t, const CfdwRequest *reqs, int n,
			  CfdwStartCallback starting, CfdwOutcomeCallback done, void *arg)
{
	int			limit = Min(t->max_concurrency, CFDW_MAX_CONCURRENCY);
	int			index_of[CFDW_SLOTS];
	CfdwAttempts attempts[CFDW_SLOTS];
	int			next = 0;
	int			busy = 0;

	for (int i = 0; i < CFDW_SLOTS; i++)
		index_of[i] = -1;
	cfdw_limit_connections(c, limit);
	while (next < n || busy > 0)
	{
		int			taken = fill_slots(c, t, reqs, n, limit, &next, &busy, index_of,
									   attempts, starting, arg);

		/*
		 * All held back: take the next ones.  Nothing taken (every slot is
		 * another statement's on this connection): wait for one to free.
		 */
		if (busy == 0 && taken > 0)
			continue;
		cfdw_transport_wait(c);
		for (int i = 1; i < CFDW_SLOTS; i++)
		{
			if (index_of[i] < 0 || cfdw_transfer_state(c, i) != CFDW_SLOT_DONE ||
				schedule_retry(c, i, t, &attempts[i]))
				continue;
			done(arg, index_of[i], cfdw_transfer_request(c, i), cfdw_transfer_response(c, i));
			cfdw_transfer_release(c, i);
			index_of[i] = -1;
			busy--;
		}
	}
}

/*
 * cfdw_send_all
 *		Send n independent requests, up to max_concurrency at once, with the
 *		retry policy, and call done with each one's final answer (or
 *		failure) as it comes, in any order.  Unlike a pipeline, a failure
 *		stops nothing: each request has its own outcome.  starting, when
 *		given, is called with the requests about to be started, before any
 *		of their bytes can leave (the worker claims their rows there).  On an
 *		error (an interrupt, or one raised by a callback) the requests in
 *		flight are stopped.
 */
void
cfdw_send_all(CfdwConnection *c, const CfdwTable *t, const CfdwRequest *reqs, int n,
			  CfdwStartCallback starting, CfdwOutcomeCallback done, void *arg)
{
	PG_TRY();
	{
		send_all_loop(c, t, reqs, n, starting, done, arg);
	}
	PG_CATCH();
	{
		cfdw_abort_transfers(c, t->site.config_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
