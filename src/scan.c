/*-------------------------------------------------------------------------
 *
 * scan.c
 *		  SELECT from a confluence_fdw table: the GET requests of a scan,
 *		  one page of results at a time.
 *
 * A scan reads the table's list endpoint (or, with an id pushed down, one
 * object; with a page_id, that page's comments), follows the next link of
 * each page (the Link header, else _links.next) until there is none, and
 * turns each item of `results` into a row.  Only one page is held at a
 * time, in a memory context reset for the next, so a scan of a whole site
 * runs in the memory of one page; a LIMIT stops it from asking for more.
 * The body is asked for (body-format=storage) only when a body column is
 * needed.  A read changes nothing, so every failure to get an answer is
 * retried by the delivery policy, and every other failure is an error.
 *
 * IDENTIFICATION
 *		  src/scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/sysattr.h"
#include "access/table.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "confluence_fdw.h"
#include "pure.h"

/* Items per page: the most every v2 list endpoint gives. */
#define CFDW_PAGE_SIZE 250

/* Indexes of what GetForeignPlan hands to the executor in fdw_private. */
enum FdwScanPrivateIndex
{
	FdwScanPrivatePushed,		/* List of the clauses sent (pushdown.c) */
	FdwScanPrivateNeedBody,		/* Integer: ask for body-format=storage */
	FdwScanPrivatePageSize,		/* Integer: limit=, 0 for none */
	FdwScanPrivateNeeded		/* List of Integer attnums filled; 0 = all */
};

/* What the planner works out once per relation (baserel->fdw_private). */
typedef struct CfdwScanPlan
{
	CfdwTable  *table;			/* the shape only: no credentials */
	List	   *pushed;			/* CfdwPushed of the restriction clauses */
	bool		need_body;
	int			page_size;
	List	   *needed;			/* attnums of the columns to fill */
	double		rows;			/* expected before the local checks */
} CfdwScanPlan;

/* The state of one scan. */
typedef struct CfdwScanState
{
	CfdwTable  *table;
	CfdwConnection *conn;
	List	   *pushed;			/* fdw_private's clauses */
	List	   *value_states;	/* ExprState of each clause's value */
	FmgrInfo   *value_out;		/* output function of each value (element) */
	bool		need_body;
	int			page_size;
	bool	   *needed;			/* by column index */
	bool		reads_path;		/* a pushed path: 404 means no rows */
	bool		reads_item;		/* one object, not a list */
	char	  **path_values;	/* by column index: the value a pushed path
								 * was filled with, for manual placeholders */
	MemoryContext values_cxt;	/* holds path_values: they are read for every
								 * row, so they cannot live in the per-tuple
								 * context the scan starts in; reset when a
								 * rescan takes new values */

	bool		started;
	StringInfoData url;			/* of the next page to fetch, or empty */
	StringInfoData link;		/* the last page's next link, checked only
								 * when that page is needed (a LIMIT may
								 * never need it) */
	MemoryContext page_cxt;		/* the current page, reset for the next */
	Jsonb	   *page;
	JsonbContainer *results;	/* the page's items, or NULL: the page itself
								 * is the one item */
	int			nitems;
	int			next_item;
	long		status;
	int64		pages;			/* fetched so far, for messages */
	MemoryContext release_cxt;	/* its deletion releases the connection */
	MemoryContextCallback release_cb;
} CfdwScanState;

/* ---------------------------------------------------------------------
 * What a table can do
 * ---------------------------------------------------------------------
 */

static const char *
command_name(CmdType command)
{
	switch (command)
	{
		case CMD_SELECT:
			return "SELECT";
		case CMD_INSERT:
			return "INSERT into";
		case CMD_UPDATE:
			return "UPDATE";
		case CMD_DELETE:
			return "DELETE from";
		default:
			return "this command";
	}
}

/* A manual table: what it can do follows from its method and read path. */
static void
check_manual_command(const CfdwTable *t, CmdType command)
{
	if (command == CMD_SELECT && t->read_path == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("foreign table \"%s\" cannot be read", t->relname),
				 errdetail("Its endpoint %s is sent %s requests; nothing says what a SELECT reads.",
						   t->path, cfdw_method_name(t->method)),
				 errhint("Give a table that reads method 'GET', or add the option read_endpoint with the path a SELECT reads.")));
	if (command == CMD_INSERT && t->method == CFDW_GET)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot INSERT into foreign table \"%s\": its method is GET", t->relname),
				 errdetail("A table with method 'GET' is read by SELECT."),
				 errhint("Use another foreign table with method POST, PUT, PATCH or DELETE to send rows.")));
	if (command == CMD_UPDATE || command == CMD_DELETE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot %s foreign table \"%s\": it has a manual endpoint",
						command_name(command), t->relname),
				 errdetail("UPDATE and DELETE work on the pages and blogposts templates (DELETE also on comments)."),
				 errhint("A manual table sends one request per INSERTed row: give it method '%s' and INSERT the rows to change.",
						 command == CMD_UPDATE ? "PUT" : "DELETE")));
}

/*
 * cfdw_check_command
 *		Refuse, with 0A000 and the reason, a command the table cannot do: a
 *		read of a write-only endpoint must not look like an empty table.
 */
void
cfdw_check_command(const CfdwTable *t, CmdType command)
{
	const CfdwTemplate *tmpl = t->template;

	if (tmpl == NULL)
	{
		check_manual_command(t, command);
		return;
	}
	if (tmpl->commands & (1 << command))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot %s foreign table \"%s\": the %s template does not support it",
					command_name(command), t->relname, tmpl->name),
			 command == CMD_UPDATE ?
			 errdetail("UPDATE works on pages and blogposts.") :
			 errdetail("The %s template is read-only.", tmpl->name)));
}

/* ---------------------------------------------------------------------
 * Planning
 * ---------------------------------------------------------------------
 */

/* The command that scans this relation: its own, for a target of UPDATE. */
static CmdType
scan_command(PlannerInfo *root, RelOptInfo *baserel)
{
	Query	   *parse = root->parse;

	if (parse->resultRelation == baserel->relid &&
		(parse->commandType == CMD_UPDATE || parse->commandType == CMD_DELETE))
		return parse->commandType;
	return CMD_SELECT;
}

/* The attnums the query reads (a whole-row reference reads them all). */
static List *
needed_columns(RelOptInfo *baserel, const CfdwTable *t)
{
	Bitmapset  *attrs = NULL;
	List	   *result = NIL;
	ListCell   *lc;
	int			i;

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	foreach(lc, baserel->baserestrictinfo)
		pull_varattnos((Node *) lfirst_node(RestrictInfo, lc)->clause,
					   baserel->relid, &attrs);
	if (bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs))
		return list_make1_int(0);
	for (i = 0; i < t->ncolumns; i++)
		if (bms_is_member(t->columns[i].attnum - FirstLowInvalidHeapAttributeNumber, attrs))
			result = lappend_int(result, t->columns[i].attnum);
	return result;
}

/* Does a needed column read the body?  Then ask for it. */
static bool
needs_body(const CfdwTable *t, List *needed)
{
	int			i;

	if (t->template == NULL)
		return false;
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];

		if (((needed != NIL && linitial_int(needed) == 0) ||
			 list_member_int(needed, col->attnum)) &&
			col->read == CFDW_RESP_PATH && strncmp(col->read_field, "body.", 5) == 0)
			return true;
	}
	return false;
}

/*
 * Items per request.  A LIMIT that the scan alone answers (one relation, no
 * sort, no clause left to check locally) asks for no more than it needs;
 * the scan still follows next links when the local check drops rows.
 */
static int
page_size(PlannerInfo *root, RelOptInfo *baserel, const CfdwTable *t, List *pushed)
{
	ListCell   *lc;

	if (t->template == NULL || cfdw_pushdown_reads_item(t, pushed))
		return 0;				/* the path's own, or no list at all */
	if (root->limit_tuples <= 0 || root->limit_tuples >= CFDW_PAGE_SIZE ||
		root->parse->commandType != CMD_SELECT || root->parse->sortClause != NIL ||
		bms_membership(root->all_baserels) != BMS_SINGLETON)
		return CFDW_PAGE_SIZE;
	foreach(lc, baserel->baserestrictinfo)
		if (!cfdw_pushdown_has(pushed, lfirst_node(RestrictInfo, lc)))
			return CFDW_PAGE_SIZE;
	return Max(1, (int) ceil(root->limit_tuples));
}

static void
confluenceGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
							Oid foreigntableid)
{
	CfdwScanPlan *plan = palloc0(sizeof(CfdwScanPlan));
	Relation	rel = table_open(foreigntableid, NoLock);
	CmdType		command = scan_command(root, baserel);
	List	   *local = NIL;
	ListCell   *lc;

	plan->table = cfdw_resolve_shape(rel);
	table_close(rel, NoLock);
	cfdw_check_command(plan->table, command);
	if (command != CMD_SELECT)
		cfdw_check_command(plan->table, CMD_SELECT);

	plan->pushed = cfdw_pushdown_choose(root, baserel, plan->table,
										baserel->baserestrictinfo);
	plan->needed = needed_columns(baserel, plan->table);
	plan->need_body = needs_body(plan->table, plan->needed);
	plan->page_size = page_size(root, baserel, plan->table, plan->pushed);
	plan->rows = cfdw_pushdown_rows(plan->table, plan->pushed);

	/* what Confluence filters is counted once, in plan->rows */
	foreach(lc, baserel->baserestrictinfo)
		if (!cfdw_pushdown_has(plan->pushed, lfirst(lc)))
			local = lappend(local, lfirst(lc));
	baserel->tuples = plan->rows;
	baserel->rows = clamp_row_est(plan->rows *
								  clauselist_selectivity(root, local, baserel->relid,
														 JOIN_INNER, NULL));
	baserel->fdw_private = plan;
}

static void
confluenceGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
						  Oid foreigntableid)
{
	CfdwScanPlan *plan = baserel->fdw_private;
	Cost		startup,
				total;

	cfdw_pushdown_costs(plan->rows, plan->page_size ? plan->page_size : CFDW_PAGE_SIZE,
						&startup, &total);

	/*
	 * A manual path with an unfilled placeholder can only run inside a join
	 * that fills it; alone it is an error at GetForeignPlan.
	 */
	if (!cfdw_pushdown_complete(plan->table, plan->pushed))
	{
		startup += disable_cost;
		total += disable_cost;
	}
	add_path(baserel, (Path *)
			 cfdw_foreignscan_path(root, baserel, baserel->rows, startup, total,
								   baserel->lateral_relids));
	cfdw_pushdown_param_paths(root, baserel, plan->table, CFDW_PAGE_SIZE);
}

/* The placeholders of a manual read path no clause fills, for the error. */
static char *
unfilled_placeholders(const CfdwTable *t, List *pushed)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		bool		filled = false;
		ListCell   *lc;

		if (!strstr(t->read_path, psprintf("{%s}", col->name)))
			continue;
		foreach(lc, pushed)
			filled |= ((CfdwPushed *) lfirst(lc))->column == col;
		if (!filled)
			appendStringInfo(&buf, "%s%s = ...", buf.len ? " AND " : "", col->name);
	}
	return buf.data;
}

static ForeignScan *
confluenceGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
						 Oid foreigntableid, ForeignPath *best_path,
						 List *tlist, List *scan_clauses, Plan *outer_plan)
{
	CfdwScanPlan *plan = baserel->fdw_private;
	List	   *pushed = plan->pushed;
	List	   *fdw_exprs = NIL;
	List	   *fdw_private;
	int			size = plan->page_size;

	/* a parameterized path also sends the join clauses it was made for */
	if (best_path->path.param_info)
	{
		pushed = cfdw_pushdown_choose(root, baserel, plan->table, scan_clauses);
		size = page_size(root, baserel, plan->table, pushed);
	}
	if (!cfdw_pushdown_complete(plan->table, pushed))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a SELECT from foreign table \"%s\" needs WHERE %s",
						plan->table->relname, unfilled_placeholders(plan->table, pushed)),
				 errdetail("Its read path %s has placeholders that only a WHERE clause or a join can fill.",
						   plan->table->read_path)));

	fdw_private = list_make4(cfdw_pushdown_private(pushed, &fdw_exprs),
							 makeInteger(plan->need_body ? 1 : 0),
							 makeInteger(size),
							 plan->needed);

	/* Every clause is checked locally too, the ones sent included. */
	scan_clauses = extract_actual_clauses(scan_clauses, false);
	return make_foreignscan(tlist, scan_clauses, baserel->relid, fdw_exprs,
							fdw_private, NIL, NIL, outer_plan);
}

/* ---------------------------------------------------------------------
 * The URL of a scan
 * ---------------------------------------------------------------------
 */

/* Replace "{name}" in path by value (already encoded). */
static char *
fill_path(const char *path, const char *name, const char *value)
{
	char	   *needle = psprintf("{%s}", name);
	const char *at = strstr(path, needle);

	if (at == NULL)
		return pstrdup(path);
	return psprintf("%.*s%s%s", (int) (at - path), path, value, at + strlen(needle));
}

/*
 * The URL of the first page.  values has, per pushed clause, a List of the
 * encoded texts to send, or NIL when they are not known (EXPLAIN of a
 * parameter), shown as "?".
 */
static char *
scan_url(const CfdwTable *t, List *pushed, List *values, bool need_body, int size)
{
	char	   *path = t->read_path;
	StringInfoData query;
	ListCell   *lp,
			   *lv;

	/* the path first: a pushed one replaces the list */
	forboth(lp, pushed, lv, values)
	{
		List	   *p = lfirst(lp);

		if (intVal(linitial(p)) == CFDW_PUSH_PATH)
		{
			if (t->template)
				path = strVal(lsecond(p));
			path = fill_path(path, strVal(lthird(p)),
							 lfirst(lv) ? linitial(lfirst(lv)) : "?");
		}
	}
	initStringInfo(&query);
	forboth(lp, pushed, lv, values)
	{
		List	   *p = lfirst(lp);
		ListCell   *lc;

		if (intVal(linitial(p)) != CFDW_PUSH_QUERY)
			continue;
		if (lfirst(lv) == NIL)
			appendStringInfo(&query, "&%s=?", strVal(lsecond(p)));
		foreach(lc, (List *) lfirst(lv))
			appendStringInfo(&query, "&%s=%s", strVal(lsecond(p)), (char *) lfirst(lc));
	}
	if (need_body)
		appendStringInfoString(&query, "&body-format=storage");
	if (size > 0)
		appendStringInfo(&query, "&limit=%d", size);
	if (query.len == 0)
		return psprintf("%s%s", t->base, path);
	return psprintf("%s%s%c%s", t->base, path, strchr(path, '?') ? '&' : '?', query.data + 1);
}

/* ---------------------------------------------------------------------
 * Execution
 * ---------------------------------------------------------------------
 */

/* The statement's memory is going away: give the connection back. */
static void
release_scan_connection(void *arg)
{
	CfdwScanState *st = (CfdwScanState *) arg;

	cfdw_release_connection(st->conn, &st->table->site);
	st->conn = NULL;
}

/* The output function of each pushed value (of its elements, for IN). */
static FmgrInfo *
value_output_functions(List *fdw_exprs)
{
	FmgrInfo   *out = palloc0(sizeof(FmgrInfo) * Max(list_length(fdw_exprs), 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, fdw_exprs)
	{
		Oid			type = exprType(lfirst(lc));
		Oid			elem = get_element_type(type);
		Oid			func;
		bool		varlena;

		getTypeOutputInfo(OidIsValid(elem) ? elem : type, &func, &varlena);
		fmgr_info(func, &out[i++]);
	}
	return out;
}

static void
confluenceBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	EState	   *estate = node->ss.ps.state;
	CfdwScanState *st;
	List	   *needed;
	Oid			userid;
	int			i;

	/* A plain EXPLAIN reads no credential and sends nothing. */
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	st = palloc0(sizeof(CfdwScanState));
	userid = cfdw_scan_userid(fsplan, estate);
	st->table = cfdw_resolve_table(node->ss.ss_currentRelation, userid);
	st->pushed = list_nth(fsplan->fdw_private, FdwScanPrivatePushed);
	st->need_body = intVal(list_nth(fsplan->fdw_private, FdwScanPrivateNeedBody)) != 0;
	st->page_size = intVal(list_nth(fsplan->fdw_private, FdwScanPrivatePageSize));
	needed = list_nth(fsplan->fdw_private, FdwScanPrivateNeeded);
	st->needed = palloc0(sizeof(bool) * Max(st->table->ncolumns, 1));
	st->path_values = palloc0(sizeof(char *) * Max(st->table->ncolumns, 1));
	for (i = 0; i < st->table->ncolumns; i++)
		st->needed[i] = (needed != NIL && linitial_int(needed) == 0) ||
			list_member_int(needed, st->table->columns[i].attnum);
	st->value_states = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	st->value_out = value_output_functions(fsplan->fdw_exprs);
	initStringInfo(&st->url);
	initStringInfo(&st->link);
	st->page_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "confluence_fdw page of results",
										 ALLOCSET_DEFAULT_SIZES);
	st->values_cxt = AllocSetContextCreate(estate->es_query_cxt,
										   "confluence_fdw placeholder values",
										   ALLOCSET_SMALL_SIZES);

	st->conn = cfdw_get_connection(&st->table->site);
	st->release_cxt = AllocSetContextCreate(estate->es_query_cxt,
											"confluence_fdw scan connection",
											ALLOCSET_SMALL_SIZES);
	st->release_cb.func = release_scan_connection;
	st->release_cb.arg = st;
	MemoryContextRegisterResetCallback(st->release_cxt, &st->release_cb);
	node->fdw_state = st;
}

/*
 * The texts of one pushed value, as the column type prints them: one, or
 * the non-NULL elements of an array.  NIL means no row can match (NULL, an
 * empty array, or a path value that could not name an object).
 */
static List *
value_texts(List *p, ExprState *es, FmgrInfo *out, ExprContext *econtext)
{
	bool		isnull;
	Datum		d = ExecEvalExpr(es, econtext, &isnull);
	List	   *texts = NIL;

	if (isnull)
		return NIL;
	if (intVal(lfourth(p)))
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n,
					i;

		get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
		deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
						  &elems, &nulls, &n);
		for (i = 0; i < n; i++)
			if (!nulls[i])
				texts = lappend(texts, OutputFunctionCall(out, elems[i]));
		return texts;
	}
	texts = list_make1(OutputFunctionCall(out, d));
	/* "", "." and ".." would change the path: no object has that id */
	if (intVal(linitial(p)) == CFDW_PUSH_PATH && !cfdw_placeholder_value_ok(linitial(texts)))
		return NIL;
	return texts;
}

/*
 * Add a pushed clause with its texts to what is sent: percent-encoded, and
 * only the values the endpoint takes (a list never shows drafts, and asking
 * for status=draft is a 400).  With none of those left the clause is not
 * sent at all; the local check still applies it.
 */
static void
add_sent(List *p, List *texts, List **sent, List **values)
{
	List	   *allowed = list_nth(p, 5);
	List	   *encoded = NIL;
	ListCell   *lc;

	foreach(lc, texts)
	{
		ListCell   *la;
		bool		ok = (allowed == NIL);

		foreach(la, allowed)
			ok |= strcmp(strVal(lfirst(la)), lfirst(lc)) == 0;
		if (ok)
			encoded = lappend(encoded, cfdw_url_encode(lfirst(lc)));
	}
	if (encoded == NIL && texts != NIL)
		return;
	*sent = lappend(*sent, p);
	*values = lappend(*values, encoded);
}

/* The column a pushed clause is on (by attnum), as an index, or -1. */
static int
column_index(const CfdwTable *t, int attnum)
{
	int			i;

	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i].attnum == attnum)
			return i;
	return -1;
}

/*
 * Evaluate the pushed values and set the URL of the first page; no URL when
 * a value rules every row out.  This runs in the per-tuple context, which
 * the executor resets before every row: what later rows read (the
 * placeholder values) is copied to values_cxt.
 */
static void
start_scan(CfdwScanState *st, ExprContext *econtext)
{
	List	   *sent = NIL;
	List	   *values = NIL;
	ListCell   *lp,
			   *ls;
	int			i = 0;
	bool		none = false;

	st->started = true;
	st->reads_path = false;
	memset(st->path_values, 0, sizeof(char *) * Max(st->table->ncolumns, 1));
	MemoryContextReset(st->values_cxt);
	st->pages = 0;
	resetStringInfo(&st->url);
	resetStringInfo(&st->link);
	forboth(lp, st->pushed, ls, st->value_states)
	{
		List	   *p = lfirst(lp);
		List	   *texts = value_texts(p, lfirst(ls), &st->value_out[i++], econtext);
		int			col = column_index(st->table, intVal(list_nth(p, 4)));

		if (texts == NIL)
		{
			none = true;
			break;
		}
		add_sent(p, texts, &sent, &values);
		if (intVal(linitial(p)) == CFDW_PUSH_PATH)
		{
			st->reads_path = true;
			if (col >= 0)
				st->path_values[col] = MemoryContextStrdup(st->values_cxt,
														   linitial(texts));
		}
	}
	st->reads_item = st->table->template && st->reads_path && st->page_size == 0;
	if (!none)
		appendStringInfoString(&st->url, scan_url(st->table, sent, values,
												  st->need_body, st->page_size));
}

/* Is a next link a path (or URL) on the table's own server? */
static bool
safe_link(const char *link)
{
	const char *p;

	for (p = link; *p; p++)
		if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f || *p == '\\' || *p == '#')
			return false;
	return strstr(link, "/../") == NULL && strstr(link, "/./") == NULL;
}

/*
 * Where the next page is: a link relative to the site (Confluence's form,
 * "/wiki/api/v2/pages?cursor=...", also behind the API gateway, where it
 * lacks the gateway's /ex/confluence/{cloudId}), or an absolute URL on the
 * server's own base URL; cfdw_next_link_rest joins either onto the base so
 * that a prefix is kept and never doubled.  A link anywhere else would send
 * the credentials there: never followed.
 */
static void
set_next_url(CfdwScanState *st, const char *link)
{
	const CfdwTable *t = st->table;
	const char *rest;

	resetStringInfo(&st->url);
	if (link == NULL || link[0] == '\0')
		return;
	if (safe_link(link) && (rest = cfdw_next_link_rest(t->base, link)) != NULL)
	{
		appendStringInfo(&st->url, "%s%s", t->base, rest);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Confluence's link to the next page of foreign table \"%s\" leaves its server",
					t->relname),
			 errdetail("The link was \"%s\"; the server's base URL is %s.", link, t->base),
			 errhint("confluence_fdw follows next links only on the server's own base URL, so the credentials go nowhere else.")));
}

/* The next link of a page: the Link header's, else _links.next. */
static void
find_next_link(CfdwScanState *st, const CfdwResponse *resp)
{
	char		link[sizeof(resp->link)];
	JsonbValue	key;
	JsonbValue *links;

	resetStringInfo(&st->link);
	if (cfdw_link_next(resp->link, link, sizeof(link)))
	{
		appendStringInfoString(&st->link, link);
		return;
	}
	if (!JB_ROOT_IS_OBJECT(st->page))
		return;
	links = getKeyJsonValueFromContainer(&st->page->root, "_links", 6, &key);
	if (links && links->type == jbvBinary)
	{
		JsonbValue	v;
		JsonbValue *next = getKeyJsonValueFromContainer(links->val.binary.data, "next", 4, &v);

		if (next && next->type == jbvString)
			appendBinaryStringInfo(&st->link, next->val.string.val, next->val.string.len);
	}
}

/* The items of a page: its results array, or the page as one object. */
static void
find_items(CfdwScanState *st, const CfdwRequest *req)
{
	JsonbValue	v;
	JsonbValue *results = NULL;

	st->results = NULL;
	st->next_item = 0;
	if (JB_ROOT_IS_OBJECT(st->page))
		results = getKeyJsonValueFromContainer(&st->page->root, "results", 7, &v);
	if (results && results->type == jbvBinary &&
		JsonContainerIsArray(results->val.binary.data))
	{
		st->results = results->val.binary.data;
		st->nitems = JsonContainerSize(st->results);
		return;
	}
	if (results == NULL && JB_ROOT_IS_OBJECT(st->page) &&
		(st->reads_item || st->table->template == NULL))
	{
		st->nitems = 1;			/* one object, as GET .../{id} answers */
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("Confluence answered GET %s with JSON that has no \"results\" array",
					req->url),
			 errdetail("A list endpoint answers {\"results\": [...], \"_links\": {...}}."),
			 errcontext("scan of foreign table \"%s\"", st->table->relname)));
}

/* Fetch the page at st->url; its items replace the previous page's. */
static void
fetch_page(CfdwScanState *st)
{
	const CfdwTable *t = st->table;
	MemoryContext old;
	CfdwRequest req;
	CfdwResponse resp;

	MemoryContextReset(st->page_cxt);
	old = MemoryContextSwitchTo(st->page_cxt);
	memset(&req, 0, sizeof(req));
	req.method = CFDW_GET;
	req.url = pstrdup(st->url.data);
	req.path_for_messages = req.url + strlen(t->base);
	st->nitems = 0;
	resetStringInfo(&st->url);

	cfdw_send(st->conn, t, &req, &resp);
	if (resp.outcome != CFDW_ANSWERED)
		cfdw_report_transport_error(t, &req, &resp);
	st->status = resp.status;
	st->pages++;
	if (resp.status == 404 && st->reads_path && st->pages == 1)
	{
		/* no such object, or no such container: no rows */
		MemoryContextSwitchTo(old);
		return;
	}
	if (resp.status >= 300)
		cfdw_report_http_error(t, &req, &resp);
	st->page = cfdw_parse_page(t, &req, &resp);
	find_items(st, &req);
	find_next_link(st, &resp);
	MemoryContextSwitchTo(old);
}

/*
 * The next item, as a JsonbValue pointing into the page (no copy), in the
 * current (per-tuple) context.
 */
static JsonbValue *
next_item(CfdwScanState *st)
{
	JsonbValue *v;

	if (st->results == NULL)
	{
		/* the page is the one object */
		st->next_item++;
		v = palloc(sizeof(JsonbValue));
		v->type = jbvBinary;
		v->val.binary.data = &st->page->root;
		v->val.binary.len = VARSIZE(st->page) - VARHDRSZ;
		return v;
	}
	v = getIthJsonbValueFromContainer(st->results, st->next_item++);
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("item %d of a page of results for foreign table \"%s\" is not a JSON object",
						st->next_item, st->table->relname)));
	return v;
}

/* Fill a row; a manual placeholder column takes the value it was asked by. */
static void
fill_row(CfdwScanState *st, JsonbValue *item, TupleTableSlot *slot)
{
	const CfdwTable *t = st->table;
	int			i;

	cfdw_fill_item(t, item, st->status, st->needed, slot->tts_values, slot->tts_isnull);
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		int			att = col->attnum - 1;

		if (st->path_values[i] && st->needed[i] && slot->tts_isnull[att])
		{
			slot->tts_values[att] = InputFunctionCall(unconstify(FmgrInfo *, &col->infunc),
													  st->path_values[i],
													  col->typioparam, col->typmod);
			slot->tts_isnull[att] = false;
		}
	}
}

static TupleTableSlot *
confluenceIterateForeignScan(ForeignScanState *node)
{
	CfdwScanState *st = (CfdwScanState *) node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	ExecClearTuple(slot);
	if (!st->started)
		start_scan(st, node->ss.ps.ps_ExprContext);
	while (st->next_item >= st->nitems)
	{
		if (st->url.len == 0 && st->link.len > 0)
		{
			set_next_url(st, st->link.data);
			resetStringInfo(&st->link);
		}
		if (st->url.len == 0)
			return slot;
		CHECK_FOR_INTERRUPTS();
		fetch_page(st);
	}
	CHECK_FOR_INTERRUPTS();
	fill_row(st, next_item(st), slot);
	ExecStoreVirtualTuple(slot);
	return slot;
}

static void
confluenceReScanForeignScan(ForeignScanState *node)
{
	CfdwScanState *st = (CfdwScanState *) node->fdw_state;

	/* parameters may have changed: start again from the first page */
	st->started = false;
	resetStringInfo(&st->url);
	resetStringInfo(&st->link);
	st->nitems = 0;
	st->next_item = 0;
	st->results = NULL;
	st->page = NULL;
	MemoryContextReset(st->page_cxt);
	memset(st->path_values, 0, sizeof(char *) * Max(st->table->ncolumns, 1));
	MemoryContextReset(st->values_cxt);
}

static void
confluenceEndForeignScan(ForeignScanState *node)
{
	CfdwScanState *st = (CfdwScanState *) node->fdw_state;

	if (st == NULL)
		return;
	cfdw_release_connection(st->conn, &st->table->site);
	st->conn = NULL;
}

/*
 * EXPLAIN (VERBOSE): the URL of the first page, with constants as they are
 * sent and "?" for values known only when the scan runs.
 */
static void
confluenceExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	List	   *pushed = list_nth(fsplan->fdw_private, FdwScanPrivatePushed);
	CfdwTable  *t;
	List	   *sent = NIL;
	List	   *values = NIL;
	FmgrInfo   *out;
	ListCell   *lp,
			   *le;
	int			i = 0;

	if (!es->verbose)
		return;
	t = cfdw_resolve_shape(node->ss.ss_currentRelation);
	out = value_output_functions(fsplan->fdw_exprs);
	forboth(lp, pushed, le, fsplan->fdw_exprs)
	{
		Expr	   *e = lfirst(le);

		if (IsA(e, Const))
		{
			ExprState  *es_value = ExecInitExpr(e, NULL);
			ExprContext *econtext = CreateStandaloneExprContext();
			List	   *texts = value_texts(lfirst(lp), es_value, &out[i], econtext);

			FreeExprContext(econtext, true);
			if (texts != NIL)
				add_sent(lfirst(lp), texts, &sent, &values);
		}
		else
		{
			/* known when the scan runs: shown as "?" */
			sent = lappend(sent, lfirst(lp));
			values = lappend(values, NIL);
		}
		i++;
	}
	ExplainPropertyText("Confluence Request",
						psprintf("GET %s",
								 scan_url(t, sent, values,
										  intVal(list_nth(fsplan->fdw_private, FdwScanPrivateNeedBody)),
										  intVal(list_nth(fsplan->fdw_private, FdwScanPrivatePageSize)))),
						es);
}

/*
 * cfdw_scan_routine
 *		The SELECT callbacks of the handler.
 */
void
cfdw_scan_routine(FdwRoutine *routine)
{
	routine->GetForeignRelSize = confluenceGetForeignRelSize;
	routine->GetForeignPaths = confluenceGetForeignPaths;
	routine->GetForeignPlan = confluenceGetForeignPlan;
	routine->BeginForeignScan = confluenceBeginForeignScan;
	routine->IterateForeignScan = confluenceIterateForeignScan;
	routine->ReScanForeignScan = confluenceReScanForeignScan;
	routine->EndForeignScan = confluenceEndForeignScan;
	routine->ExplainForeignScan = confluenceExplainForeignScan;
}
