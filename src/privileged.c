/*-------------------------------------------------------------------------
 *
 * privileged.c
 *		  SQL that the extension runs with more rights than the user who
 *		  caused it: the queue insert and requeue() as the queue's owner
 *		  (queue.c), and every statement of the worker, which runs as the
 *		  bootstrap superuser (worker.c).
 *
 * Such a statement must not resolve a name through the caller's
 * search_path.  The session's temporary schema is searched first for
 * types and tables, and any schema the caller lists (or a database owner
 * puts into the database's default) is searched for functions and
 * operators, where an exact-match overload beats pg_catalog's one that
 * needs a cast.  A role with TEMP could otherwise have its own "jsonb"
 * domain, "=" operator or make_interval() run with the owner's rights.
 *
 * So every such block runs between cfdw_privileged_begin() and
 * cfdw_privileged_end(), which pin search_path to "pg_catalog, pg_temp"
 * (pg_temp last: never searched before pg_catalog, and never for functions
 * or operators) at a new GUC nest level, as the core does for its own
 * internal queries.  The statements name their tables, types and
 * functions with their schema besides; their operators resolve through
 * the pinned path, that is in pg_catalog, so every such statement must run
 * inside a block.  An error aborts the transaction, which
 * unwinds the nest level and the user id as well.
 *
 * IDENTIFICATION
 *		  src/privileged.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "confluence_fdw.h"

/* The search_path of every privileged statement. */
#define CFDW_SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * cfdw_privileged_begin
 *		Become role (unless InvalidOid: stay who we are), pin search_path,
 *		and connect to SPI.  Undo with cfdw_privileged_end.
 */
void
cfdw_privileged_begin(Oid role, CfdwPrivileged *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	if (OidIsValid(role))
		SetUserIdAndSecContext(role, save->sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	save->nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", CFDW_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "confluence_fdw: SPI_connect failed");
}

/*
 * cfdw_privileged_end
 *		Disconnect from SPI, give search_path and the user back.
 */
void
cfdw_privileged_end(const CfdwPrivileged *save)
{
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "confluence_fdw: SPI_finish failed");
	AtEOXact_GUC(false, save->nest_level);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}
