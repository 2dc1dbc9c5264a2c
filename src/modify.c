/*-------------------------------------------------------------------------
 *
 * modify.c
 *		  UPDATE and DELETE of confluence_fdw tables: a PUT or a DELETE of the
 *		  one object each row was read from.
 *
 * The row to change is found by its id, which the scan reads and the
 * planner carries to the executor as a junk column (AddForeignUpdateTargets,
 * as postgres_fdw carries ctid).  An UPDATE sends the whole object, as
 * Confluence's PUT needs it: the columns set, the row's current values for
 * the others (PostgreSQL fetches the whole row for an UPDATE of a foreign
 * table), and version.number = the version read + 1.  Someone else's edit
 * in between makes that number stale, and Confluence's 409 becomes SQLSTATE
 * 40001, so the usual retry of a serialization failure reads the page
 * again.  A row whose object is gone (404) is not counted, as a row deleted
 * by a concurrent transaction is not.
 *
 * IDENTIFICATION
 *		  src/modify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/inherit.h"
#include "optimizer/pathnode.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "confluence_fdw.h"
#include "pure.h"

/* The junk column that carries each row's id from the scan. */
#define CFDW_ID_JUNK "confluence_fdw_id"

/* The state of one UPDATE or DELETE of one foreign table. */
typedef struct CfdwChangeState
{
	CfdwStateKind kind;			/* CFDW_STATE_CHANGE: see insert.c */
	CmdType		operation;
	CfdwTable  *table;
	CfdwConnection *conn;
	bool		need_response;	/* RETURNING or an AFTER ROW trigger */
	AttrNumber	id_attno;		/* the id junk column in the subplan's rows */
	AttrNumber	wholerow_attno; /* the old row, for DELETE ... RETURNING */
	const CfdwColumn *version;	/* the column that reads version.number */
	MemoryContext temp_cxt;		/* per row */
	MemoryContext release_cxt;	/* its deletion releases the connection */
	MemoryContextCallback release_cb;
	int64		row_no;
	const char *id;				/* of the row being sent, for messages */
} CfdwChangeState;

/* The column that reads a field of the listed item, or NULL. */
static const CfdwColumn *
column_reading(const CfdwTable *t, const char *read_field)
{
	int			i;

	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i].read == CFDW_RESP_PATH &&
			strcmp(t->columns[i].read_field, read_field) == 0)
			return &t->columns[i];
	return NULL;
}

/* The id column, which every template has; needed to find the object. */
static const CfdwColumn *
id_column(const CfdwTable *t, CmdType operation)
{
	const CfdwColumn *col = column_reading(t, "id");

	if (col == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s foreign table \"%s\": it has no id column",
						operation == CMD_UPDATE ? "UPDATE" : "DELETE", t->relname),
				 errhint("Add a column id text OPTIONS (response_field 'id'), as IMPORT FOREIGN SCHEMA makes it.")));
	return col;
}

/*
 * AddForeignUpdateTargets
 *		Carry the id of each row to the executor; for DELETE ... RETURNING,
 *		also the old row (an UPDATE gets it from the core anyway).
 */
static void
confluenceAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
								  RangeTblEntry *target_rte, Relation target_relation)
{
	CfdwTable  *t = cfdw_resolve_shape(target_relation);
	CmdType		operation = root->parse->commandType;
	const CfdwColumn *col;
	TriggerDesc *trig = target_relation->trigdesc;

	cfdw_check_command(t, operation);
	col = id_column(t, operation);
	add_row_identity_var(root, makeVar(rtindex, col->attnum, col->typid, col->typmod,
									   get_typcollation(col->typid), 0),
						 rtindex, CFDW_ID_JUNK);

	/* the core adds the old row itself when DELETE row triggers need it */
	if (operation == CMD_DELETE && root->parse->returningList != NIL &&
		!(trig && (trig->trig_delete_after_row || trig->trig_delete_before_row)))
		add_row_identity_var(root, makeWholeRowVar(target_rte, rtindex, 0, false),
							 rtindex, "wholerow");
}

/*
 * An UPDATE may set what a PUT sends.  What Confluence answers (id,
 * version, created_at, ...) cannot be set, nor can a page move to another
 * space or change its subtype.
 */
static void
check_updated_columns(PlannerInfo *root, Index resultRelation, const CfdwTable *t)
{
	Bitmapset  *cols = get_rel_all_updated_cols(root, find_base_rel(root, resultRelation));
	int			i;

	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (!bms_is_member(col->attnum - FirstLowInvalidHeapAttributeNumber, cols))
			continue;
		if (col->resp != CFDW_RESP_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of foreign table \"%s\" cannot be set: Confluence fills it",
							col->name, t->relname),
					 strcmp(col->read_field ? col->read_field : "", "version.number") == 0 ?
					 errhint("An UPDATE sends the version read + 1 by itself.") : 0));
		if (strcmp(col->field, "spaceId") == 0 ||
			(t->template->update_drops && strcmp(col->field, t->template->update_drops) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("column \"%s\" of foreign table \"%s\" cannot be changed by an UPDATE",
							col->name, t->relname),
					 errdetail("Confluence's PUT %s does not change it.", t->template->item_path)));
	}
}

/*
 * cfdw_plan_change
 *		PlanForeignModify of UPDATE and DELETE: what the table can do, what
 *		may be set, and whether the executor needs each answer.
 */
List *
cfdw_plan_change(PlannerInfo *root, ModifyTable *plan, Index resultRelation)
{
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	Relation	rel = table_open(rte->relid, NoLock);
	CfdwTable  *t = cfdw_resolve_shape(rel);
	TriggerDesc *trig = rel->trigdesc;
	bool		need;

	cfdw_check_command(t, plan->operation);
	if (plan->operation == CMD_UPDATE)
	{
		check_updated_columns(root, resultRelation, t);
		if (column_reading(t, "version.number") == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot UPDATE foreign table \"%s\": it has no version column", t->relname),
					 errhint("Add a column version integer OPTIONS (response_field 'version.number'): a PUT sends the version read + 1.")));
	}
	need = plan->returningLists != NIL ||
		(trig && (plan->operation == CMD_UPDATE ? trig->trig_update_after_row :
				  trig->trig_delete_after_row));
	table_close(rel, NoLock);
	return list_make1(makeInteger(need ? 1 : 0));
}

/* The statement's memory is going away: give the connection back. */
static void
release_change_connection(void *arg)
{
	CfdwChangeState *st = (CfdwChangeState *) arg;

	cfdw_release_connection(st->conn, &st->table->site);
	st->conn = NULL;
}

/*
 * cfdw_begin_change
 *		BeginForeignModify of UPDATE and DELETE.
 */
void
cfdw_begin_change(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
				  Oid userid)
{
	EState	   *estate = mtstate->ps.state;
	Plan	   *subplan = outerPlanState(mtstate)->plan;
	CfdwChangeState *st = palloc0(sizeof(CfdwChangeState));

	st->kind = CFDW_STATE_CHANGE;
	st->operation = mtstate->operation;
	st->table = cfdw_resolve_table(rinfo->ri_RelationDesc, userid);

	/*
	 * A queued INSERT is sent after COMMIT, or never; an UPDATE or DELETE
	 * sent now would not follow the transaction, and a rollback could not
	 * take it back.
	 */
	if (st->table->queued)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s foreign table \"%s\": it has delivery 'queue'",
						mtstate->operation == CMD_UPDATE ? "UPDATE" : "DELETE",
						st->table->relname),
				 errdetail("Only INSERT is queued; an UPDATE or DELETE would be sent at once, outside the transaction."),
				 errhint("Use a table with delivery 'immediate' on the same endpoint for changes.")));
	st->need_response = intVal(linitial(fdw_private)) != 0;
	st->version = column_reading(st->table, "version.number");
	st->id_attno = ExecFindJunkAttributeInTlist(subplan->targetlist, CFDW_ID_JUNK);
	if (!AttributeNumberIsValid(st->id_attno))
		elog(ERROR, "could not find junk column %s", CFDW_ID_JUNK);
	st->wholerow_attno = ExecFindJunkAttributeInTlist(subplan->targetlist, "wholerow");
	st->temp_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "confluence_fdw row data",
										 ALLOCSET_DEFAULT_SIZES);
	st->conn = cfdw_get_connection(&st->table->site);
	st->release_cxt = AllocSetContextCreate(estate->es_query_cxt,
											"confluence_fdw connection",
											ALLOCSET_SMALL_SIZES);
	st->release_cb.func = release_change_connection;
	st->release_cb.arg = st;
	MemoryContextRegisterResetCallback(st->release_cxt, &st->release_cb);
	rinfo->ri_FdwState = st;
}

/*
 * cfdw_end_change
 *		EndForeignModify of UPDATE and DELETE.
 */
void
cfdw_end_change(ResultRelInfo *rinfo)
{
	CfdwChangeState *st = (CfdwChangeState *) rinfo->ri_FdwState;

	cfdw_release_connection(st->conn, &st->table->site);
	st->conn = NULL;
}

/* Names the row in any error raised while it is sent. */
static void
change_error_callback(void *arg)
{
	CfdwChangeState *st = (CfdwChangeState *) arg;

	errcontext("row %lld of %s of foreign table \"%s\" (id %s)",
			   (long long) st->row_no,
			   st->operation == CMD_UPDATE ? "UPDATE" : "DELETE",
			   st->table->relname, st->id ? st->id : "?");
}

/* The id of the row to change, from the junk column. */
static const char *
row_id(CfdwChangeState *st, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d = ExecGetJunkAttribute(planSlot, st->id_attno, &isnull);
	const CfdwColumn *col = id_column(st->table, st->operation);
	Oid			out;
	bool		varlena;
	char	   *id;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("row %lld of foreign table \"%s\" has no id", (long long) st->row_no,
						st->table->relname),
				 errdetail("Confluence's objects always have one; nothing was sent.")));
	getTypeOutputInfo(col->typid, &out, &varlena);
	id = OidOutputFunctionCall(out, d);
	if (!cfdw_placeholder_value_ok(id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("id \"%s\" of foreign table \"%s\" names no object", id, st->table->relname)));
	return id;
}

/* base + item path with {id} filled, percent-encoded. */
static char *
item_url(const CfdwTable *t, const char *id)
{
	const char *path = t->template->item_path;
	const char *at = strstr(path, "{id}");

	return psprintf("%s%.*s%s%s", t->base, (int) (at - path), path,
					cfdw_url_encode(id), at + 4);
}

/* Is a refused PUT a stale version?  409, or a 400 that says so. */
static bool
version_conflict(const CfdwResponse *resp)
{
	char	   *summary;

	if (resp->status == 409)
		return true;
	if (resp->status != 400)
		return false;
	summary = cfdw_error_summary(resp);
	return summary && (strstr(summary, "version") || strstr(summary, "Version"));
}

/* Send one request; false when the object was not there (404). */
static bool
send_change(CfdwChangeState *st, const CfdwRequest *req, CfdwResponse *resp)
{
	const CfdwTable *t = st->table;

	cfdw_send(st->conn, t, req, resp);
	if (resp->outcome != CFDW_ANSWERED)
		cfdw_report_transport_error(t, req, resp);
	if (resp->status == 404)
		return false;
	if (st->operation == CMD_UPDATE && version_conflict(resp))
	{
		char	   *summary = cfdw_error_summary(resp);

		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not update id %s of foreign table \"%s\": it was changed since it was read",
						st->id, t->relname),
				 errdetail("Confluence answered HTTP %ld%s%s.", resp->status,
						   summary ? ": " : "", summary ? summary : ""),
				 errhint("Run the statement again: it reads the current version and sends it + 1.")));
	}
	if (resp->status >= 300)
		cfdw_report_http_error(t, req, resp);
	return true;
}

/*
 * The PUT body: the row's request fields (the core gives the new row with
 * the unchanged columns filled from the old one), the id, version + 1, and
 * an empty body for a page that has none (a PUT needs one).
 */
static void
update_body(CfdwChangeState *st, TupleTableSlot *slot, const char *id, StringInfo out)
{
	const CfdwTable *t = st->table;
	cJSON	   *root = cfdw_build_row_tree(t, slot->tts_values, slot->tts_isnull, NULL);
	int			att = st->version->attnum - 1;
	cJSON	   *version;
	int32		number;

	if (slot->tts_isnull[att])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("%s %s of foreign table \"%s\" was read without a version",
						t->template->name, id, t->relname),
				 errdetail("A PUT needs the version read + 1; nothing was sent.")));
	{
		Oid			out;
		bool		varlena;

		/* any integer type (or a domain) the column has */
		getTypeOutputInfo(st->version->typid, &out, &varlena);
		number = pg_strtoint32(OidOutputFunctionCall(out, slot->tts_values[att]));
	}
	if (t->template->update_drops)
		cJSON_DeleteItemFromObjectCaseSensitive(root, t->template->update_drops);
	cJSON_DeleteItemFromObjectCaseSensitive(root, "id");
	if (!cJSON_AddStringToObject(root, "id", id) ||
		(version = cJSON_AddObjectToObject(root, "version")) == NULL ||
		!cJSON_AddNumberToObject(version, "number", (double) number + 1))
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (!cJSON_GetObjectItemCaseSensitive(root, "status") &&
		!cJSON_AddStringToObject(root, "status", "current"))
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (!cJSON_GetObjectItemCaseSensitive(root, "body"))
	{
		cJSON	   *body = cJSON_AddObjectToObject(root, "body");

		if (body == NULL || !cJSON_AddStringToObject(body, "representation", t->representation) ||
			!cJSON_AddStringToObject(body, "value", ""))
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	cfdw_serialize_body(t, root, false, out);
}

/* The returned row: the slot's values with the answer's response columns. */
static void
store_answer(CfdwChangeState *st, TupleTableSlot *slot, const CfdwResponse *resp,
			 MemoryContext tuple_cxt)
{
	TupleDesc	tupdesc = slot->tts_tupleDescriptor;
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	bool	   *isnull = palloc(sizeof(bool) * tupdesc->natts);
	MemoryContext old;
	HeapTuple	tuple;
	int			i;

	slot_getallattrs(slot);
	memcpy(values, slot->tts_values, sizeof(Datum) * tupdesc->natts);
	memcpy(isnull, slot->tts_isnull, sizeof(bool) * tupdesc->natts);
	if (st->operation == CMD_UPDATE)
		cfdw_fill_response(st->table, resp, values, isnull);
	else
	{
		/* a DELETE answers 204 with no body: keep the old row, and the status */
		for (i = 0; i < st->table->ncolumns; i++)
			if (st->table->columns[i].resp == CFDW_RESP_STATUS)
			{
				values[st->table->columns[i].attnum - 1] = Int32GetDatum((int32) resp->status);
				isnull[st->table->columns[i].attnum - 1] = false;
			}
	}
	old = MemoryContextSwitchTo(tuple_cxt);
	tuple = heap_form_tuple(tupdesc, values, isnull);
	MemoryContextSwitchTo(old);
	ExecForceStoreHeapTuple(tuple, slot, true);
}

/* Count a row and name it in errors; switch to its memory. */
static MemoryContext
begin_row(CfdwChangeState *st, ErrorContextCallback *errcb)
{
	st->row_no++;
	st->id = NULL;
	errcb->callback = change_error_callback;
	errcb->arg = st;
	errcb->previous = error_context_stack;
	error_context_stack = errcb;
	return MemoryContextSwitchTo(st->temp_cxt);
}

static void
end_row(CfdwChangeState *st, ErrorContextCallback *errcb, MemoryContext old)
{
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->temp_cxt);
	st->id = NULL;
	error_context_stack = errcb->previous;
}

static TupleTableSlot *
confluenceExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
							TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	CfdwChangeState *st = (CfdwChangeState *) rinfo->ri_FdwState;
	ErrorContextCallback errcb;
	MemoryContext old = begin_row(st, &errcb);
	StringInfoData body;
	CfdwRequest req;
	CfdwResponse resp;
	bool		found;

	st->id = row_id(st, planSlot);
	slot_getallattrs(slot);
	initStringInfo(&body);
	update_body(st, slot, st->id, &body);
	memset(&req, 0, sizeof(req));
	req.method = CFDW_PUT;
	req.url = item_url(st->table, st->id);
	req.path_for_messages = req.url + strlen(st->table->base);
	req.body = body.data;
	req.body_len = body.len;
	req.content_type = "application/json";
	found = send_change(st, &req, &resp);
	if (found && st->need_response)
		store_answer(st, slot, &resp, old);
	end_row(st, &errcb, old);
	return found ? slot : NULL;
}

/* The old row of a DELETE ... RETURNING, from the wholerow junk column. */
static void
store_old_row(CfdwChangeState *st, TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d;
	HeapTupleData tuple;

	if (!AttributeNumberIsValid(st->wholerow_attno))
		return;
	d = ExecGetJunkAttribute(planSlot, st->wholerow_attno, &isnull);
	if (isnull)
		return;
	tuple.t_data = DatumGetHeapTupleHeader(d);
	tuple.t_len = HeapTupleHeaderGetDatumLength(tuple.t_data);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	ExecForceStoreHeapTuple(&tuple, slot, false);
	slot_getallattrs(slot);
}

static TupleTableSlot *
confluenceExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
							TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	CfdwChangeState *st = (CfdwChangeState *) rinfo->ri_FdwState;
	ErrorContextCallback errcb;
	MemoryContext old = begin_row(st, &errcb);
	CfdwRequest req;
	CfdwResponse resp;
	bool		found;

	st->id = row_id(st, planSlot);
	memset(&req, 0, sizeof(req));
	req.method = CFDW_DELETE;
	req.url = item_url(st->table, st->id);
	req.path_for_messages = req.url + strlen(st->table->base);
	found = send_change(st, &req, &resp);
	if (found && st->need_response)
	{
		MemoryContextSwitchTo(old);
		store_old_row(st, slot, planSlot);
		MemoryContextSwitchTo(st->temp_cxt);
		if (!TTS_EMPTY(slot))
			store_answer(st, slot, &resp, old);
	}
	end_row(st, &errcb, old);
	return found ? slot : NULL;
}

/*
 * cfdw_modify_routine
 *		The UPDATE and DELETE callbacks of the handler (Begin, End and Plan
 *		are shared with INSERT and dispatched by insert.c).
 */
void
cfdw_modify_routine(FdwRoutine *routine)
{
	routine->AddForeignUpdateTargets = confluenceAddForeignUpdateTargets;
	routine->ExecForeignUpdate = confluenceExecForeignUpdate;
	routine->ExecForeignDelete = confluenceExecForeignDelete;
}
