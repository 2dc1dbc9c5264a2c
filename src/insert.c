/*-------------------------------------------------------------------------
 *
 * insert.c
 *		  The INSERT executor of confluence_fdw: each row becomes one
 *		  Confluence REST API v2 request (or, in batch_mode, part of one),
 *		  and RETURNING shows what Confluence answered.
 *
 * Three ways to send, chosen at executor start: one row at a time when
 * something reads each row's answer (RETURNING, an AFTER ROW trigger, a
 * check option); pipelined, up to max_concurrency requests in flight, when
 * nothing does; batched when batch_mode says so.  The table is resolved
 * (options.c), each row becomes a request (request.c), goes out under the
 * delivery policy (delivery.c) and its answer fills the returned slot
 * (response.c).  Nothing here is transactional: a request that was sent
 * stays sent when the transaction rolls back.
 *
 * UPDATE and DELETE share PlanForeignModify, BeginForeignModify and
 * EndForeignModify with INSERT; those hand them to modify.c.
 *
 * IDENTIFICATION
 *		  src/insert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parsetree.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "confluence_fdw.h"

/*
 * Indexes of the items PlanForeignModify hands to the executor in
 * fdw_private.  Only copyable nodes go there: plans are cached (prepared
 * statements, PL/pgSQL triggers), and options and tokens are read again at
 * execution time so that ALTERs take effect without re-planning.
 */
enum FdwModifyPrivateIndex
{
	/* Integer: does the executor need the response in the slot? */
	FdwModifyPrivateNeedResponse
};

/*
 * State of one INSERT (or COPY) into one foreign table.
 */
typedef struct CfdwModifyState
{
	CfdwStateKind kind;			/* CFDW_STATE_INSERT */
	Relation	rel;
	CfdwTable  *table;			/* resolved options, columns, credentials */
	CfdwConnection *conn;		/* the user mapping's cached connection */
	bool		need_response;	/* RETURNING, AFTER ROW trigger or check option */
	MemoryContext temp_cxt;		/* per-row data, reset after each row */
	MemoryContext release_cxt;	/* its deletion releases the connection */
	Oid			userid;			/* whose user mapping sends the rows */
	int64		row_no;			/* last row sent, 1-based, for messages */
	int64		batch_first;	/* first row of the batch being sent, or 0 */

	/*
	 * batch_mode rows that arrive one at a time (COPY on PostgreSQL 15,
	 * which has no batch API for COPY), kept until batch_size are there.
	 */
	TupleTableSlot **pending;
	int			npending;

	/*
	 * Rows that need no answer go through a pipeline with up to
	 * max_concurrency requests in flight; each slot's request lives in its
	 * own context until the slot is reused.
	 */
	bool		pipelined;
	CfdwPipeline pipe;
	MemoryContext pipe_cxt;		/* parent of slot_cxt */
	MemoryContext slot_cxt[CFDW_SLOTS];
	MemoryContextCallback abandon_cb;	/* stops requests left in flight */
	bool		pipeline_failed;	/* raising the pipeline's failure */
	bool		stop_reported;	/* warn_stopped has spoken */
	int64		submitted;		/* rows handed to the pipeline */
} CfdwModifyState;

static void check_batch_mode(ResultRelInfo *rinfo, CfdwModifyState *state);
static void warn_stopped(CfdwModifyState *state);

/* ---------------------------------------------------------------------
 * INSERT
 * ---------------------------------------------------------------------
 */

/* Does anything need the answer in the returned slot? */
static bool
needs_response(Relation rel, bool has_returning, bool has_check_options)
{
	TriggerDesc *trigdesc = rel->trigdesc;

	/* AFTER ROW triggers see the returned row, response columns included */
	return has_returning || has_check_options ||
		(trigdesc && trigdesc->trig_insert_after_row);
}

static List *
confluencePlanForeignModify(PlannerInfo *root, ModifyTable *plan,
							Index resultRelation, int subplan_index)
{
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	Relation	rel;
	bool		need;

	if (plan->operation == CMD_UPDATE || plan->operation == CMD_DELETE)
		return cfdw_plan_change(root, plan, resultRelation);
	if (plan->operation != CMD_INSERT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("confluence_fdw supports INSERT, UPDATE and DELETE only")));
	if (plan->onConflictAction != ONCONFLICT_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("INSERT with ON CONFLICT is not supported by confluence_fdw")));

	/* the core already holds a lock on the relation */
	rel = table_open(rte->relid, NoLock);
	cfdw_check_command(cfdw_resolve_shape(rel), CMD_INSERT);
	need = needs_response(rel,
						  plan->returningLists != NIL,
						  plan->withCheckOptionLists != NIL);
	table_close(rel, NoLock);

	return list_make1(makeInteger(need ? 1 : 0));
}

static bool
has_row_triggers(ResultRelInfo *rinfo)
{
	TriggerDesc *trigdesc = rinfo->ri_RelationDesc->trigdesc;

	return trigdesc && (trigdesc->trig_insert_before_row ||
						trigdesc->trig_insert_after_row);
}

/*
 * Memory context callback: the statement's memory is going away (normally
 * after EndForeignModify drained the pipeline, or on an error).  Requests
 * still in flight would read freed memory: stop them.
 */
static void
abandon_pipeline(void *arg)
{
	CfdwModifyState *state = (CfdwModifyState *) arg;

	/* an error the FDW did not see (a failing expression, say) */
	if (state->pipelined)
		warn_stopped(state);
	cfdw_release_connection(state->conn, &state->table->site);
	state->conn = NULL;
}

/*
 * Set up the state of one INSERT or COPY: resolve the table for the user the
 * statement runs as, and take the user mapping's connection.
 */
static CfdwModifyState *
create_modify_state(EState *estate, ResultRelInfo *rinfo, Oid userid,
					bool need_response)
{
	CfdwModifyState *state = palloc0(sizeof(CfdwModifyState));

	state->kind = CFDW_STATE_INSERT;
	state->rel = rinfo->ri_RelationDesc;
	state->table = cfdw_resolve_table(state->rel, userid);
	state->need_response = need_response;
	state->temp_cxt = AllocSetContextCreate(estate->es_query_cxt,
											"confluence_fdw row data",
											ALLOCSET_DEFAULT_SIZES);
	state->userid = userid;
	if (state->table->queued)
	{
		/* the worker sends them after COMMIT: no connection here */
		cfdw_queue_check(state->table);
		return state;
	}
	state->conn = cfdw_get_connection(&state->table->site);

	/*
	 * Pipeline when nothing needs a row's answer (postgres_fdw's rules for
	 * batching: no RETURNING, check option or row trigger), unless one
	 * request at a time is asked for or rows go in batches anyway.
	 */
	state->pipelined = !need_response && !state->table->batch_mode &&
		state->table->max_concurrency > 1 && !has_row_triggers(rinfo);
	if (state->pipelined)
	{
		state->pipe_cxt = AllocSetContextCreate(estate->es_query_cxt,
												"confluence_fdw requests in flight",
												ALLOCSET_SMALL_SIZES);
	}

	/*
	 * Give the connection back however the statement ends: EndForeignModify
	 * is not called after an error, but the statement's memory goes away.
	 * The newest child context is deleted first, so this one, made last,
	 * stops the requests in flight before their memory is freed.
	 */
	state->release_cxt = AllocSetContextCreate(estate->es_query_cxt,
											   "confluence_fdw connection",
											   ALLOCSET_SMALL_SIZES);
	state->abandon_cb.func = abandon_pipeline;
	state->abandon_cb.arg = state;
	MemoryContextRegisterResetCallback(state->release_cxt, &state->abandon_cb);
	return state;
}

static void
confluenceBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
							 List *fdw_private, int subplan_index, int eflags)
{
	EState	   *estate = mtstate->ps.state;
	bool		need;

	/* A plain EXPLAIN must not resolve credentials or open connections. */
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	if (mtstate->operation != CMD_INSERT)
	{
		cfdw_begin_change(mtstate, rinfo, fdw_private, cfdw_result_rel_userid(estate, rinfo));
		return;
	}
	need = intVal(list_nth(fdw_private, FdwModifyPrivateNeedResponse)) != 0;
	rinfo->ri_FdwState = create_modify_state(estate, rinfo,
											 cfdw_result_rel_userid(estate, rinfo), need);
}

/*
 * COPY FROM and tuple routing into a foreign partition.
 */
static void
confluenceBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	EState	   *estate = mtstate->ps.state;
	bool		need;

	cfdw_check_command(cfdw_resolve_shape(rinfo->ri_RelationDesc), CMD_INSERT);
	need = needs_response(rinfo->ri_RelationDesc,
						  rinfo->ri_returningList != NIL,
						  rinfo->ri_WithCheckOptions != NIL);
	rinfo->ri_FdwState = create_modify_state(estate, rinfo,
											 cfdw_result_rel_userid(estate, rinfo), need);
	if (((CfdwModifyState *) rinfo->ri_FdwState)->table->batch_mode)
		check_batch_mode(rinfo, rinfo->ri_FdwState);
}

/* Names the row in any error raised while it is sent. */
static void
row_error_callback(void *arg)
{
	CfdwModifyState *state = (CfdwModifyState *) arg;

	if (state->batch_first > 0 && state->batch_first < state->row_no)
		errcontext("batch of rows %lld to %lld of INSERT into foreign table \"%s\"",
				   (long long) state->batch_first, (long long) state->row_no,
				   state->table->relname);
	else if (state->pipeline_failed && state->submitted > 1)
		errcontext("row %lld of INSERT into foreign table \"%s\"; %lld rows were sent in all, up to %d at a time, and %lld of them succeeded; the requests in flight were let finish and nothing was resent",
				   (long long) state->row_no, state->table->relname,
				   (long long) state->submitted, state->table->max_concurrency,
				   (long long) state->pipe.nsent);
	else
		errcontext("row %lld of INSERT into foreign table \"%s\"",
				   (long long) state->row_no, state->table->relname);
}

/*
 * Check the answer to a row's request: an HTTP error that on_error
 * 'return' lets through stays in resp (with a WARNING when nobody reads
 * the row); any other failure raises an error.
 */
static void
check_answer(CfdwModifyState *state, const CfdwRequest *req, const CfdwResponse *resp)
{
	const CfdwTable *t = state->table;

	if (resp->outcome != CFDW_ANSWERED)
		cfdw_report_transport_error(t, req, resp);
	if (resp->status < 300)
		return;
	if (!t->on_error_return || (resp->status >= 300 && resp->status < 400))
		cfdw_report_http_error(t, req, resp);

	/* Nobody reads the row back: say what happened instead of staying silent. */
	if (!state->need_response)
	{
		char	   *summary = cfdw_error_summary(resp);

		ereport(WARNING,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Confluence returned HTTP %ld%s%s; the statement goes on because on_error is 'return'",
						resp->status, summary ? ": " : "", summary ? summary : ""),
				 errhint("Add RETURNING http_status, response to see each row's answer.")));
	}
}

/* Send a prepared request and check the answer. */
static void
send_request(CfdwModifyState *state, CfdwRequest *req, CfdwResponse *resp)
{
	cfdw_send(state->conn, state->table, req, resp);
	check_answer(state, req, resp);
}

/* A row's last request and final answer, as an upsert hands them back. */
typedef struct CfdwAnswer
{
	CfdwRequest req;
	CfdwResponse resp;
} CfdwAnswer;

static char *
copy_or_null(const char *s, size_t len)
{
	return s ? pnstrdup(s, len) : NULL;
}

/*
 * cfdw_upsert_all's callback: keep a copy, in the caller's context, of what
 * is valid only until this returns.
 */
static void
keep_answer(void *arg, int index, const CfdwRequest *req, const CfdwResponse *resp)
{
	CfdwAnswer *a = &((CfdwAnswer *) arg)[index];

	a->req = *req;
	a->req.url = copy_or_null(req->url, req->url ? strlen(req->url) : 0);
	a->req.path_for_messages = copy_or_null(req->path_for_messages,
											req->path_for_messages ? strlen(req->path_for_messages) : 0);
	a->req.body = copy_or_null(req->body, req->body_len);
	a->resp = *resp;
	a->resp.body = copy_or_null(resp->body, resp->body_len);
}

/*
 * Send a row of an on_conflict table: looked up, then created, updated or
 * left alone (upsert.c).  The answer is the last request's, or the page
 * found's.
 */
static void
send_upsert(CfdwModifyState *state, CfdwRequest *req, CfdwResponse *resp)
{
	CfdwAnswer	answer;

	cfdw_upsert_all(state->conn, state->table, req, 1, keep_answer, &answer);
	check_answer(state, &answer.req, &answer.resp);
	*resp = answer.resp;
}

static void
init_request(const CfdwTable *t, CfdwRequest *req)
{
	memset(req, 0, sizeof(CfdwRequest));
	req->method = t->method;
	req->path_for_messages = t->path;
	req->content_type = t->content_type;
}

/*
 * Count a row and name it in any error raised until pop_row_context.
 */
static void
push_row_context(CfdwModifyState *state, ErrorContextCallback *errcb)
{
	state->row_no++;
	state->batch_first = 0;
	errcb->callback = row_error_callback;
	errcb->arg = state;
	errcb->previous = error_context_stack;
	error_context_stack = errcb;
}

/* The request of one row, built in the current memory context. */
static void
build_request(const CfdwTable *t, TupleTableSlot *slot, CfdwRequest *req)
{
	StringInfoData body;

	init_request(t, req);
	req->url = cfdw_build_url(t, slot->tts_values, slot->tts_isnull);
	initStringInfo(&body);
	if (cfdw_build_body(t, slot->tts_values, slot->tts_isnull, &body))
	{
		req->body = body.data;
		req->body_len = body.len;
	}
}

/*
 * Give the executor the row it returns: request columns as they were
 * built, response columns from the answer, or, for a queued row (resp
 * NULL), the queue id.  Built in temp_cxt; the tuple in tuple_cxt.
 */
static void
store_returned(const CfdwTable *t, TupleTableSlot *slot, const CfdwResponse *resp,
			   int64 queue_id, MemoryContext tuple_cxt)
{
	TupleDesc	tupdesc = slot->tts_tupleDescriptor;
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	bool	   *isnull = palloc(sizeof(bool) * tupdesc->natts);
	MemoryContext old;
	HeapTuple	tuple;

	memcpy(values, slot->tts_values, sizeof(Datum) * tupdesc->natts);
	memcpy(isnull, slot->tts_isnull, sizeof(bool) * tupdesc->natts);
	if (resp)
		cfdw_fill_response(t, resp, values, isnull);
	else
		cfdw_fill_queued(t, queue_id, values, isnull);
	old = MemoryContextSwitchTo(tuple_cxt);
	tuple = heap_form_tuple(tupdesc, values, isnull);
	MemoryContextSwitchTo(old);
	ExecForceStoreHeapTuple(tuple, slot, true);
}

/*
 * Send one row and, when the executor needs it, put the answer into the
 * slot.  Everything per row lives in temp_cxt, reset before returning.
 */
static TupleTableSlot *
send_row(CfdwModifyState *state, TupleTableSlot *slot)
{
	const CfdwTable *t = state->table;
	MemoryContext oldcxt;
	ErrorContextCallback errcb;
	CfdwRequest req;
	CfdwResponse resp;

	push_row_context(state, &errcb);
	slot_getallattrs(slot);
	oldcxt = MemoryContextSwitchTo(state->temp_cxt);
	build_request(t, slot, &req);
	if (t->on_conflict != CFDW_CONFLICT_ERROR)
		send_upsert(state, &req, &resp);
	else
		send_request(state, &req, &resp);
	if (state->need_response)
		store_returned(t, slot, &resp, 0, oldcxt);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->temp_cxt);

	error_context_stack = errcb.previous;
	return slot;
}

/*
 * Send a batch of rows as one request: a JSON array of the row bodies, or
 * an XML <requests> document with one <request> per row (batch_mode).
 */
static void
send_batch(CfdwModifyState *state, TupleTableSlot **slots, int nslots)
{
	const CfdwTable *t = state->table;
	MemoryContext oldcxt;
	ErrorContextCallback errcb;
	CfdwRequest req;
	CfdwResponse resp;
	StringInfoData body;
	void	   *array;
	int			i;

	state->batch_first = state->row_no + 1;
	errcb.callback = row_error_callback;
	errcb.arg = state;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	oldcxt = MemoryContextSwitchTo(state->temp_cxt);
	array = cfdw_json_array_owned();
	for (i = 0; i < nslots; i++)
	{
		/* rows are checked one by one: name the row that is wrong */
		state->row_no = state->batch_first + i;
		slot_getallattrs(slots[i]);
		(void) cfdw_build_row_tree(t, slots[i]->tts_values, slots[i]->tts_isnull,
								   array);
	}
	state->row_no = state->batch_first + nslots - 1;

	init_request(t, &req);
	req.url = t->fixed_url;
	initStringInfo(&body);
	cfdw_serialize_body(t, array, true, &body);
	req.body = body.data;
	req.body_len = body.len;

	send_request(state, &req, &resp);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->temp_cxt);
	state->batch_first = 0;
	error_context_stack = errcb.previous;
}

/*
 * Wait for the pipeline's requests; if one failed, raise its error, naming
 * the row and saying how many rows were sent.
 */
static void
finish_pipeline(CfdwModifyState *state)
{
	const CfdwTable *t = state->table;
	CfdwRequest req;
	CfdwResponse resp;
	int64		failed_row;
	bool		failed;
	ErrorContextCallback errcb;

	PG_TRY();
	{
		failed = cfdw_pipeline_drain(state->conn, t, &state->pipe, &req, &resp, &failed_row);
	}
	PG_CATCH();
	{
		warn_stopped(state);	/* a cancel while the last rows are in flight */
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!failed)
		return;

	state->row_no = failed_row;
	state->batch_first = 0;
	state->pipeline_failed = true;
	errcb.callback = row_error_callback;
	errcb.arg = state;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (resp.outcome != CFDW_ANSWERED)
		cfdw_report_transport_error(t, &req, &resp);
	cfdw_report_http_error(t, &req, &resp);
}

/*
 * Send a row that needs no answer through the pipeline: build its request
 * in a free slot and start it, without waiting for the answer.
 */
static void
send_in_pipeline(CfdwModifyState *state, TupleTableSlot *slot)
{
	const CfdwTable *t = state->table;
	MemoryContext oldcxt;
	ErrorContextCallback errcb;
	CfdwRequest req;
	int			slotno;

	slotno = cfdw_pipeline_slot(state->conn, t, &state->pipe);
	if (slotno == 0)
		finish_pipeline(state);	/* raises the failure */

	if (state->slot_cxt[slotno] == NULL)
		state->slot_cxt[slotno] = AllocSetContextCreate(state->pipe_cxt,
														"confluence_fdw request",
														ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(state->slot_cxt[slotno]);

	push_row_context(state, &errcb);
	slot_getallattrs(slot);
	oldcxt = MemoryContextSwitchTo(state->slot_cxt[slotno]);

	build_request(t, slot, &req);
	MemoryContextSwitchTo(oldcxt);

	cfdw_pipeline_start(state->conn, t, &state->pipe, slotno, &req, state->row_no);
	state->submitted = state->row_no;
	error_context_stack = errcb.previous;
}

/*
 * Rows of an on_conflict table that need no answer: their lookups, then
 * their writes, go out together, up to max_concurrency at a time
 * (upsert.c).  The first row that failed is raised after all of them
 * finished, as a pipeline's is.
 */
static void
upsert_rows(CfdwModifyState *state, TupleTableSlot **slots, int n)
{
	const CfdwTable *t = state->table;
	MemoryContext oldcxt = MemoryContextSwitchTo(state->temp_cxt);
	CfdwRequest *reqs = palloc(sizeof(CfdwRequest) * n);
	CfdwAnswer *answers = palloc0(sizeof(CfdwAnswer) * n);
	int64		first = state->row_no + 1;
	ErrorContextCallback errcb;
	int			i;

	for (i = 0; i < n; i++)
	{
		push_row_context(state, &errcb);
		slot_getallattrs(slots[i]);
		build_request(t, slots[i], &reqs[i]);
		error_context_stack = errcb.previous;
	}
	cfdw_upsert_all(state->conn, t, reqs, n, keep_answer, answers);
	state->submitted = first + n - 1;
	for (i = 0; i < n; i++)
		if (answers[i].resp.outcome == CFDW_ANSWERED && answers[i].resp.status < 300)
			state->pipe.nsent++;

	for (i = 0; i < n; i++)
	{
		state->row_no = first + i - 1;
		push_row_context(state, &errcb);
		state->pipeline_failed = state->submitted > 1 &&
			(answers[i].resp.outcome != CFDW_ANSWERED || answers[i].resp.status >= 300);
		check_answer(state, &answers[i].req, &answers[i].resp);
		state->pipeline_failed = false;
		error_context_stack = errcb.previous;
	}
	state->row_no = first + n - 1;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->temp_cxt);
}

/*
 * The WARNING of a pipelined statement ended by an error or a cancel
 * before EndForeignModify: the rows sent so far stay sent, and nothing else
 * tells the user how many.  Once per statement; not when the error itself
 * is a row's failure, whose context says it (row_error_callback).
 */
static void
warn_stopped(CfdwModifyState *state)
{
	int			in_flight;

	if (state->stop_reported || state->pipeline_failed || state->submitted == 0 ||
		state->conn == NULL)
		return;
	state->stop_reported = true;
	in_flight = cfdw_pipeline_busy(state->conn, state->table, &state->pipe) +
		state->pipe.stopped_in_flight;
	ereport(WARNING,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("INSERT into foreign table \"%s\" stopped: rows sent %lld, answered %lld, still in flight %d (those may or may not have reached Confluence)",
					state->table->relname, (long long) state->submitted,
					(long long) state->pipe.nsent, in_flight),
			 errhint("Rows that were answered exist in Confluence; check the ones in flight before running the statement again.")));
}

/*
 * Send a row through the pipeline.  A row refused before sending, a cancel
 * or statement_timeout while waiting for a free slot: the statement ends at
 * once, as an error path does no network work.  Its requests in flight are
 * stopped (cfdw_release_connection, when the statement's memory goes), and
 * the WARNING goes out before the error, so the user reads both in order.
 */
static void
pipeline_row(CfdwModifyState *state, TupleTableSlot *slot)
{
	PG_TRY();
	{
		send_in_pipeline(state, slot);
	}
	PG_CATCH();
	{
		warn_stopped(state);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * delivery 'queue': build the row's request exactly as it would be sent
 * (the same checks and errors) and write it into the queue in the user's
 * transaction.  RETURNING sees the request columns as built and the queue
 * id in response_field '$queue_id' columns; the rest is NULL, as nothing
 * was answered yet.
 */
static TupleTableSlot *
queue_row(CfdwModifyState *state, TupleTableSlot *slot)
{
	const CfdwTable *t = state->table;
	MemoryContext oldcxt;
	ErrorContextCallback errcb;
	CfdwRequest req;
	int64		id;

	push_row_context(state, &errcb);
	slot_getallattrs(slot);
	oldcxt = MemoryContextSwitchTo(state->temp_cxt);
	build_request(t, slot, &req);
	id = cfdw_enqueue(t, state->userid, &req,
					  cfdw_build_context(t, slot->tts_values, slot->tts_isnull));
	if (state->need_response)
		store_returned(t, slot, NULL, id, oldcxt);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(state->temp_cxt);
	error_context_stack = errcb.previous;
	return slot;
}

/*
 * Keep a batch_mode row that the executor handed over alone, and send the
 * batch when it is full.  The executor only does that where it has no batch
 * API (COPY before PostgreSQL 16); sending such rows one by one would
 * silently ignore batch_mode.
 */
static TupleTableSlot *
buffer_row(CfdwModifyState *state, EState *estate, TupleTableSlot *slot)
{
	const CfdwTable *t = state->table;

	if (state->pending == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

		state->pending = palloc0(sizeof(TupleTableSlot *) * t->batch_size);
		MemoryContextSwitchTo(old);
	}
	if (state->pending[state->npending] == NULL)
		state->pending[state->npending] =
			MakeSingleTupleTableSlot(slot->tts_tupleDescriptor, &TTSOpsHeapTuple);
	ExecCopySlot(state->pending[state->npending++], slot);

	if (state->npending == t->batch_size)
	{
		send_batch(state, state->pending, state->npending);
		state->npending = 0;
	}
	return slot;
}

static TupleTableSlot *
confluenceExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
							TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	CfdwModifyState *state = (CfdwModifyState *) rinfo->ri_FdwState;

	if (state->table->batch_mode)
		return buffer_row(state, estate, slot);
	if (state->pipelined)
	{
		/* rows arriving one at a time (COPY before PostgreSQL 16) */
		if (state->table->on_conflict != CFDW_CONFLICT_ERROR)
			upsert_rows(state, &slot, 1);
		else
			pipeline_row(state, slot);
		return slot;
	}
	if (state->table->queued)
		return queue_row(state, slot);
	return send_row(state, slot);
}

/*
 * Rows per ExecForeignBatchInsert call.  batch_mode sends them as one
 * request, so everything that needs one answer per row rules it out, and
 * saying so beats a silent fallback to one request per row.
 */
static int
confluenceGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	CfdwModifyState *state = (CfdwModifyState *) rinfo->ri_FdwState;

	/* EXPLAIN without ANALYZE: no state, read the options */
	if (state == NULL)
		return cfdw_table_batch_size(RelationGetRelid(rinfo->ri_RelationDesc));

	if (state->table->queued)
		return 1;
	if (!state->table->batch_mode)
	{
		/*
		 * Let the executor hand over several rows at once when they can be
		 * pipelined; the pipeline keeps requests in flight across calls, so
		 * this only saves calls.
		 */
		return state->pipelined ? Min(1000, state->table->max_concurrency * 4) : 1;
	}
	check_batch_mode(rinfo, state);
	return state->table->batch_size;
}

/*
 * batch_mode gets one answer for many rows: refuse whatever needs one
 * answer per row.
 */
static void
check_batch_mode(ResultRelInfo *rinfo, CfdwModifyState *state)
{
	TriggerDesc *trigdesc = rinfo->ri_RelationDesc->trigdesc;

	if (rinfo->ri_projectReturning != NULL || state->need_response)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("foreign table \"%s\" has batch_mode 'true', which cannot be combined with RETURNING",
						RelationGetRelationName(rinfo->ri_RelationDesc)),
				 errdetail("A batch gets one answer for all its rows."),
				 errhint("Drop RETURNING, or ALTER FOREIGN TABLE ... OPTIONS (SET batch_mode 'false').")));
	if (trigdesc && (trigdesc->trig_insert_before_row || trigdesc->trig_insert_after_row))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("foreign table \"%s\" has batch_mode 'true' and row-level INSERT triggers",
						RelationGetRelationName(rinfo->ri_RelationDesc)),
				 errdetail("Row triggers need one answer per row.")));
}

static TupleTableSlot **
confluenceExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
								 TupleTableSlot **slots, TupleTableSlot **planSlots,
								 int *numSlots)
{
	CfdwModifyState *state = (CfdwModifyState *) rinfo->ri_FdwState;

	int			i;

	if (state->table->batch_mode)
	{
		if (*numSlots > 0)
			send_batch(state, slots, *numSlots);
		return slots;
	}
	if (state->table->on_conflict != CFDW_CONFLICT_ERROR)
	{
		upsert_rows(state, slots, *numSlots);
		return slots;
	}
	/* the rows were built into requests; their answers come later */
	for (i = 0; i < *numSlots; i++)
		pipeline_row(state, slots[i]);
	return slots;
}

static void
confluenceEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	CfdwModifyState *state = (CfdwModifyState *) rinfo->ri_FdwState;

	/* NULL after a plain EXPLAIN */
	if (state == NULL)
		return;
	if (state->kind == CFDW_STATE_CHANGE)
	{
		cfdw_end_change(rinfo);
		return;
	}
	if (state->pipelined)
		finish_pipeline(state);
	if (state->npending > 0)
	{
		int			n = state->npending;

		state->npending = 0;
		send_batch(state, state->pending, n);
	}
	if (state->pending)
	{
		int			i;

		for (i = 0; i < state->table->batch_size; i++)
			if (state->pending[i])
				ExecDropSingleTupleTableSlot(state->pending[i]);
	}
	cfdw_release_connection(state->conn, &state->table->site);
	state->conn = NULL;
}

static void
confluenceEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	confluenceEndForeignModify(estate, rinfo);
}

/* What the table can do, as information_schema and the core see it. */
static int
confluenceIsForeignRelUpdatable(Relation rel)
{
	CfdwTable  *t = cfdw_resolve_shape(rel);

	if (t->template)
		return t->template->commands & ((1 << CMD_INSERT) | (1 << CMD_UPDATE) |
										(1 << CMD_DELETE));
	return t->method == CFDW_GET ? 0 : (1 << CMD_INSERT);
}

/* ---------------------------------------------------------------------
 * EXPLAIN
 * ---------------------------------------------------------------------
 */

static void
confluenceExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
							   List *fdw_private, int subplan_index,
							   ExplainState *es)
{
	if (!es->verbose)
		return;
	ExplainPropertyText("Confluence Request",
						cfdw_describe_request(RelationGetRelid(rinfo->ri_RelationDesc),
													  mtstate->operation), es);
	if (rinfo->ri_BatchSize > 1)
		ExplainPropertyInteger("Batch Size", NULL, rinfo->ri_BatchSize, es);
}

/*
 * cfdw_insert_routine
 *		The INSERT, COPY FROM and EXPLAIN callbacks of the handler.
 */
void
cfdw_insert_routine(FdwRoutine *routine)
{
	routine->PlanForeignModify = confluencePlanForeignModify;
	routine->BeginForeignModify = confluenceBeginForeignModify;
	routine->ExecForeignInsert = confluenceExecForeignInsert;
	routine->EndForeignModify = confluenceEndForeignModify;
	routine->GetForeignModifyBatchSize = confluenceGetForeignModifyBatchSize;
	routine->ExecForeignBatchInsert = confluenceExecForeignBatchInsert;
	routine->BeginForeignInsert = confluenceBeginForeignInsert;
	routine->EndForeignInsert = confluenceEndForeignInsert;
	routine->IsForeignRelUpdatable = confluenceIsForeignRelUpdatable;
	routine->ExplainForeignModify = confluenceExplainForeignModify;
}
