/*-------------------------------------------------------------------------
 *
 * compat.h
 *		  Every difference between the PostgreSQL majors confluence_fdw
 *		  builds on (15 to 19), in one place.
 *
 * The rest of the code calls the cfdw_* names below and never tests
 * PG_VERSION_NUM itself.  Each guard says what changed and in which major;
 * CI compiles every branch: 15 on the host, 17, 18 and 19 in Debian trees
 * (test/pgtree.sh), 16 from a source build (README, "PostgreSQL versions").
 *
 * IDENTIFICATION
 *		  src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CFDW_COMPAT_H
#define CFDW_COMPAT_H

#include "postgres.h"

/* 15 brought pg_prng and the executor and planner APIs used here. */
#if PG_VERSION_NUM < 150000
#error "confluence_fdw needs PostgreSQL 15 or later"
#endif

#include "catalog/namespace.h"
#include "common/jsonapi.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/plannodes.h"
#include "optimizer/pathnode.h"
#include "parser/parsetree.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

/*
 * 19: pg_fallthrough marks a case that falls through, and PGXS builds with
 * -Wimplicit-fallthrough=5, where a comment no longer counts.
 */
#ifndef pg_fallthrough
#if defined(__has_attribute) && __has_attribute(fallthrough)
#define pg_fallthrough __attribute__((fallthrough))
#else
#define pg_fallthrough ((void) 0)
#endif
#endif

/* 16: the varlena macros (VARDATA_ANY, VARSIZE_ANY_EXHDR) left postgres.h. */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * 18: ExplainState moved to commands/explain_state.h and ExplainProperty*()
 * to commands/explain_format.h; commands/explain.h had both before.
 */
#if PG_VERSION_NUM >= 180000
#include "commands/explain_format.h"
#include "commands/explain_state.h"
#else
#include "commands/explain.h"
#endif

/*
 * Whose user mapping an INSERT, UPDATE, DELETE or scan uses: the table's
 * checkAsUser (a view's owner, a SECURITY DEFINER function's) or else the
 * current user.
 *
 * 16: permissions moved from RangeTblEntry.checkAsUser to RTEPermissionInfo;
 * the executor gives the checking role of a result relation, and a
 * ForeignScan carries its own.  Before, both come from the RTE (a partition
 * routed to from its parent has none of its own: its root's counts).
 */
static inline Oid
cfdw_result_rel_userid(EState *estate, ResultRelInfo *rinfo)
{
#if PG_VERSION_NUM >= 160000
	return ExecGetResultRelCheckAsUser(rinfo, estate);
#else
	Index		rti = rinfo->ri_RangeTableIndex;
	RangeTblEntry *rte;

	if (rti == 0 && rinfo->ri_RootResultRelInfo)
		rti = rinfo->ri_RootResultRelInfo->ri_RangeTableIndex;
	if (rti == 0)
		return GetUserId();
	rte = exec_rt_fetch(rti, estate);
	return OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
#endif
}

static inline Oid
cfdw_scan_userid(ForeignScan *fsplan, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	return OidIsValid(fsplan->checkAsUser) ? fsplan->checkAsUser : GetUserId();
#else
	RangeTblEntry *rte = exec_rt_fetch(fsplan->scan.scanrelid, estate);

	return OidIsValid(rte->checkAsUser) ? rte->checkAsUser : GetUserId();
#endif
}

/*
 * 16: stringToQualifiedNameList takes an escontext; NULL keeps throwing the
 * syntax error, as before.
 */
#if PG_VERSION_NUM >= 160000
#define cfdw_qualified_name_list(s)	stringToQualifiedNameList((s), NULL)
#else
#define cfdw_qualified_name_list(s)	stringToQualifiedNameList(s)
#endif

/*
 * 17: makeJsonLexContextCstringLen fills a caller's JsonLexContext (NULL:
 * one is allocated, as before in the current memory context).
 */
#if PG_VERSION_NUM >= 170000
#define cfdw_json_lex_context(json, len, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), PG_UTF8, (need_escapes))
#else
#define cfdw_json_lex_context(json, len, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), PG_UTF8, (need_escapes))
#endif

/*
 * 17: create_foreignscan_path takes the fdw_restrictinfo of a join or upper
 * path (none here: NIL); 18: and the count of disabled nodes below the path
 * (none: 0).
 */
#if PG_VERSION_NUM >= 180000
#define cfdw_foreignscan_path(root, rel, rows, startup, total, required_outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), 0, (startup), (total), \
							NIL, (required_outer), NULL, NIL, NIL)
#elif PG_VERSION_NUM >= 170000
#define cfdw_foreignscan_path(root, rel, rows, startup, total, required_outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), (startup), (total), \
							NIL, (required_outer), NULL, NIL, NIL)
#else
#define cfdw_foreignscan_path(root, rel, rows, startup, total, required_outer) \
	create_foreignscan_path((root), (rel), NULL, (rows), (startup), (total), \
							NIL, (required_outer), NULL, NIL)
#endif

/*
 * 17: a WaitEventSet belongs to a ResourceOwner instead of a memory context.
 * Ours outlives every transaction (it is kept with the connection pool), so
 * it has no owner (NULL) or lives in TopMemoryContext, and is freed by hand.
 */
#if PG_VERSION_NUM >= 170000
#define cfdw_long_lived_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define cfdw_long_lived_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

#endif							/* CFDW_COMPAT_H */
