/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *		  Which WHERE clauses of a SELECT are sent to Confluence, and what a
 *		  scan is expected to cost.
 *
 * A clause "column = value" or "column IN (...)" on a column the endpoint
 * can filter by (the template's pushables: id, space_id, title, status on
 * pages; key and id on spaces; page_id on comments) becomes a query
 * parameter or picks another path; on a manual table, "column = value"
 * fills the {column} placeholder of the path read.  The value may be a
 * constant, a parameter or, in a parameterized path, a column of another
 * table of a join, so "pages JOIN staging ON pages.id = staging.page_id"
 * asks for each page by id.  Every clause sent is also checked locally:
 * Confluence's matching (of titles, say) is not documented, and a result
 * must not depend on it.
 *
 * The costs count requests, which are what a scan spends its time on: one
 * request costs as much as reading a thousand pages of a local table, so a
 * lookup by id or title is cheap and an unfiltered scan of a site (a request
 * per 250 items) is expensive.
 *
 * IDENTIFICATION
 *		  src/pushdown.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "confluence_fdw.h"

/* A round trip to Confluence, in the planner's units (seq_page_cost 1). */
#define CFDW_REQUEST_COST	1000.0

/* Converting one listed item to a row: parsing its JSON, input functions. */
#define CFDW_ITEM_COST		0.05

/* Rows expected of a manual endpoint's list, and of a filled placeholder. */
#define CFDW_MANUAL_ROWS	1000.0
#define CFDW_PLACEHOLDER_ROWS 100.0

/* Values an IN with a runtime array is expected to have. */
#define CFDW_ARRAY_VALUES	10

/* The column of this relation a clause operand is, or NULL. */
static const CfdwColumn *
operand_column(const CfdwTable *t, Index relid, Node *node)
{
	Var		   *var;
	int			i;

	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node == NULL || !IsA(node, Var))
		return NULL;
	var = (Var *) node;
	if (var->varno != relid || var->varlevelsup != 0 || var->varattno <= 0)
		return NULL;
	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i].attnum == var->varattno)
			return &t->columns[i];
	return NULL;
}

/*
 * May the other side of a clause be sent?  It must be known before the scan
 * starts (no column of this relation, nothing volatile, no subquery).
 */
static bool
sendable_value(PlannerInfo *root, Index relid, Expr *value)
{
	if (contain_volatile_functions((Node *) value) ||
		contain_subplans((Node *) value))
		return false;
	return !bms_is_member(relid, pull_varnos(root, (Node *) value));
}

/*
 * Is the operator the column type's own equality, under a collation that
 * compares as Confluence does (exactly)?  A case-insensitive collation would
 * match rows Confluence does not return.
 */
static bool
column_equality(const CfdwColumn *col, Oid opno, Oid inputcollid)
{
	TypeCacheEntry *tce = lookup_type_cache(col->typid, TYPECACHE_EQ_OPR);

	if (!OidIsValid(tce->eq_opr) || tce->eq_opr != opno)
		return false;
	return !OidIsValid(inputcollid) || get_collation_isdeterministic(inputcollid);
}

/* "{name}" occurs in a manual table's read path: the column fills it. */
static bool
is_placeholder(const CfdwTable *t, const CfdwColumn *col)
{
	char	   *needle = psprintf("{%s}", col->name);

	return t->read_path && strstr(t->read_path, needle) != NULL;
}

/* What a clause on this column can become: a template's pushable, or NULL. */
static bool
pushable_for(const CfdwTable *t, const CfdwColumn *col, CfdwPushed *p)
{
	if (t->template == NULL)
	{
		if (!is_placeholder(t, col))
			return false;
		p->kind = CFDW_PUSH_PATH;
		p->target = t->read_path;
		p->name = col->name;
		p->max_values = 1;
		p->rows = CFDW_PLACEHOLDER_ROWS;
		return true;
	}
	if (col->read != CFDW_RESP_PATH)
		return false;
	{
		const CfdwPushable *pushable = cfdw_find_pushable(t->template, col->read_field);

		if (pushable == NULL)
			return false;
		p->kind = pushable->kind;
		p->target = pushable->target;
		p->name = pushable->field;
		p->max_values = pushable->max_values;
		p->rows = pushable->rows;
		p->values = pushable->values;
	}
	return true;
}

/* Number of elements of a constant array, or -1 when it is not one. */
static int
const_array_length(Expr *value)
{
	Const	   *c;

	if (!IsA(value, Const))
		return -1;
	c = (Const *) value;
	if (c->constisnull)
		return 0;
	return ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(c->constvalue)),
						  ARR_DIMS(DatumGetArrayTypeP(c->constvalue)));
}

/*
 * Match one clause: "column = value", "value = column" or "column = ANY
 * (array)" on a column the endpoint filters by.  Fills *p on success.
 */
static bool
match_clause(PlannerInfo *root, Index relid, const CfdwTable *t, Expr *clause,
			 CfdwPushed *p)
{
	const CfdwColumn *col = NULL;
	Expr	   *value = NULL;
	bool		is_array = false;
	Oid			opno = InvalidOid;
	Oid			collid = InvalidOid;

	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) clause;
		Node	   *l = linitial(op->args);
		Node	   *r = lsecond(op->args);

		if ((col = operand_column(t, relid, l)) != NULL)
			value = (Expr *) r;
		else if ((col = operand_column(t, relid, r)) != NULL)
			value = (Expr *) l;
		opno = op->opno;
		collid = op->inputcollid;
	}
	else if (IsA(clause, ScalarArrayOpExpr) && ((ScalarArrayOpExpr *) clause)->useOr)
	{
		ScalarArrayOpExpr *op = (ScalarArrayOpExpr *) clause;

		col = operand_column(t, relid, linitial(op->args));
		value = (Expr *) lsecond(op->args);
		is_array = true;
		opno = op->opno;
		collid = op->inputcollid;
	}
	if (col == NULL || !column_equality(col, opno, collid) ||
		!sendable_value(root, relid, value))
		return false;

	memset(p, 0, sizeof(CfdwPushed));
	if (!pushable_for(t, col, p))
		return false;
	p->column = col;
	p->value = value;
	p->is_array = is_array;
	p->nvalues = is_array ? const_array_length(value) : 1;
	if (is_array && (p->max_values <= 1 || p->nvalues > p->max_values))
		return false;
	if (p->nvalues < 0)
		p->nvalues = CFDW_ARRAY_VALUES;
	return true;
}

/* A path pushable chooses the endpoint: at most one of them is used. */
static bool
conflicts(List *chosen, const CfdwPushed *p, const CfdwTable *t)
{
	ListCell   *lc;

	foreach(lc, chosen)
	{
		CfdwPushed *q = lfirst(lc);

		if (strcmp(q->name, p->name) == 0)
			return true;		/* the first clause on a field is enough */
		if (t->template && q->kind == CFDW_PUSH_PATH && p->kind == CFDW_PUSH_PATH)
			return true;
	}
	return false;
}

/*
 * cfdw_pushdown_choose
 *		The clauses (RestrictInfos) to send, as CfdwPushed, in the order of
 *		the template's pushables so that the same query always gives the
 *		same URL, and so that the one object (id) wins over its container.
 */
List *
cfdw_pushdown_choose(PlannerInfo *root, RelOptInfo *baserel, const CfdwTable *t,
					 List *clauses)
{
	List	   *matched = NIL;
	List	   *chosen = NIL;
	ListCell   *lc;
	const CfdwPushable *order;

	foreach(lc, clauses)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		CfdwPushed	p;
		CfdwPushed *copy;

		if (ri->pseudoconstant)
			continue;
		if (match_clause(root, baserel->relid, t, ri->clause, &p))
		{
			p.rinfo = ri;
			copy = palloc(sizeof(CfdwPushed));
			memcpy(copy, &p, sizeof(CfdwPushed));
			matched = lappend(matched, copy);
		}
	}
	if (t->template == NULL)
	{
		foreach(lc, matched)
			if (!conflicts(chosen, lfirst(lc), t))
				chosen = lappend(chosen, lfirst(lc));
		return chosen;
	}
	for (order = t->template->pushables; order->field; order++)
	{
		foreach(lc, matched)
		{
			CfdwPushed *p = lfirst(lc);

			if (strcmp(p->name, order->field) == 0 && !conflicts(chosen, p, t))
				chosen = lappend(chosen, p);
		}
	}
	return chosen;
}

/* Does the chosen set read one object (an item path such as .../{id})? */
bool
cfdw_pushdown_reads_item(const CfdwTable *t, List *pushed)
{
	ListCell   *lc;

	if (t->template == NULL)
		return false;
	foreach(lc, pushed)
	{
		CfdwPushed *p = lfirst(lc);
		size_t		len = strlen(p->target);

		if (p->kind == CFDW_PUSH_PATH && len > 0 && p->target[len - 1] == '}')
			return true;
	}
	return false;
}

/*
 * Are all placeholders of a manual table's read path filled?  A template's
 * list needs none.
 */
bool
cfdw_pushdown_complete(const CfdwTable *t, List *pushed)
{
	int			i;

	if (t->template)
		return true;
	for (i = 0; i < t->ncolumns; i++)
	{
		const CfdwColumn *col = &t->columns[i];
		bool		found = false;
		ListCell   *lc;

		if (!is_placeholder(t, col))
			continue;
		foreach(lc, pushed)
			found |= ((CfdwPushed *) lfirst(lc))->column == col;
		if (!found)
			return false;
	}
	return true;
}

/* Rows a scan with these clauses sent is expected to return. */
double
cfdw_pushdown_rows(const CfdwTable *t, List *pushed)
{
	double		rows = t->template ? t->template->rows : CFDW_MANUAL_ROWS;
	ListCell   *lc;

	foreach(lc, pushed)
	{
		CfdwPushed *p = lfirst(lc);

		rows = Min(rows, p->rows * Max(p->nvalues, 1));
	}
	return clamp_row_est(rows);
}

/*
 * cfdw_pushdown_costs
 *		Startup and total cost of a scan that returns rows in pages of
 *		page_size: a request per page, a little per item.
 */
void
cfdw_pushdown_costs(double rows, int page_size, Cost *startup, Cost *total)
{
	double		pages = Max(1.0, ceil(rows / Max(page_size, 1)));

	*startup = CFDW_REQUEST_COST;
	*total = CFDW_REQUEST_COST * pages + rows * (cpu_tuple_cost + CFDW_ITEM_COST);
}

/*
 * cfdw_pushdown_private
 *		The chosen clauses as copyable nodes for fdw_private (one List per
 *		clause: kind, target, name, is_array, attnum, the List of values the
 *		endpoint takes or NIL for any), their values appended
 *		to *fdw_exprs in the same order.
 */
List *
cfdw_pushdown_private(List *pushed, List **fdw_exprs)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, pushed)
	{
		CfdwPushed *p = lfirst(lc);
		List	   *allowed = NIL;
		const char *const *v;

		for (v = p->values; v && *v; v++)
			allowed = lappend(allowed, makeString(pstrdup(*v)));
		result = lappend(result,
						 lappend(list_make5(makeInteger(p->kind),
											makeString(pstrdup(p->target)),
											makeString(pstrdup(p->name)),
											makeInteger(p->is_array ? 1 : 0),
											makeInteger(p->column->attnum)),
								 allowed));
		*fdw_exprs = lappend(*fdw_exprs, p->value);
	}
	return result;
}

/* Clauses that were sent are the pushed ones' RestrictInfos. */
bool
cfdw_pushdown_has(List *pushed, RestrictInfo *ri)
{
	ListCell   *lc;

	foreach(lc, pushed)
		if (((CfdwPushed *) lfirst(lc))->rinfo == ri)
			return true;
	return false;
}

/* ec_matches_callback: is the member the column we look for? */
static bool
member_is_column(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				 EquivalenceMember *em, void *arg)
{
	Expr	   *e = em->em_expr;
	AttrNumber	attnum = *(AttrNumber *) arg;

	while (IsA(e, RelabelType))
		e = ((RelabelType *) e)->arg;
	return IsA(e, Var) && ((Var *) e)->varno == rel->relid &&
		((Var *) e)->varattno == attnum && ((Var *) e)->varlevelsup == 0;
}

/*
 * The join clauses that could fill a pushable column from another relation:
 * equivalences (a = b, with b of another table) and other join clauses.
 */
static List *
join_candidates(PlannerInfo *root, RelOptInfo *baserel, const CfdwTable *t)
{
	List	   *result = NIL;
	ListCell   *lc;
	int			i;

	for (i = 0; i < t->ncolumns; i++)
	{
		AttrNumber	attnum = t->columns[i].attnum;
		CfdwPushed	p;

		if (!pushable_for(t, &t->columns[i], &p))
			continue;
		result = list_concat(result,
							 generate_implied_equalities_for_column(root, baserel,
																	member_is_column,
																	&attnum,
																	baserel->lateral_referencers));
	}
	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);

		if (join_clause_is_movable_to(ri, baserel))
			result = lappend(result, ri);
	}
	return result;
}

/*
 * cfdw_pushdown_param_paths
 *		Parameterized paths: one per set of other relations whose columns can
 *		fill a pushed clause, so that a nested loop asks Confluence for the
 *		matching objects of each outer row instead of reading everything.
 */
void
cfdw_pushdown_param_paths(PlannerInfo *root, RelOptInfo *baserel, const CfdwTable *t,
						  int page_size)
{
	List	   *seen = NIL;
	ListCell   *lc;

	foreach(lc, join_candidates(root, baserel, t))
	{
		RestrictInfo *ri = lfirst_node(RestrictInfo, lc);
		CfdwPushed	p;
		Relids		outer;
		ParamPathInfo *ppi;
		List	   *pushed;
		double		rows;
		Cost		startup,
					total;
		ListCell   *s;
		bool		dup = false;

		if (!match_clause(root, baserel->relid, t, ri->clause, &p) || p.is_array)
			continue;
		outer = bms_del_member(bms_union(ri->clause_relids, baserel->lateral_relids),
							   baserel->relid);
		if (bms_is_empty(outer))
			continue;
		foreach(s, seen)
			dup |= bms_equal(lfirst(s), outer);
		if (dup)
			continue;
		seen = lappend(seen, outer);

		ppi = get_baserel_parampathinfo(root, baserel, outer);
		pushed = cfdw_pushdown_choose(root, baserel, t,
									  list_concat_copy(baserel->baserestrictinfo,
													   ppi->ppi_clauses));
		if (!cfdw_pushdown_complete(t, pushed))
			continue;
		rows = cfdw_pushdown_rows(t, pushed);
		cfdw_pushdown_costs(rows, page_size, &startup, &total);
		add_path(baserel, (Path *)
				 cfdw_foreignscan_path(root, baserel, Min(rows, ppi->ppi_rows),
									   startup, total, outer));
	}
}
