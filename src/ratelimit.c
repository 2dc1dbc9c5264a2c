/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		  The shared rate limit: a Retry-After seen by one session pauses
 *		  every session's requests to that server, and the worker's.
 *
 * With confluence_fdw in shared_preload_libraries, shared memory holds
 * CFDW_RATE_SLOTS slots, each the pause and 429 counters of one server of
 * one database.  Without the preload there is no shared memory, and only
 * the rate-limited request itself waits (delivery.c's retry).
 *
 * Every request asks cfdw_rate_paused_until before it starts, so the common
 * case, no server paused at all, takes no lock: latest_end, the latest end
 * of any pause ever set, is read atomically, and once it has passed nothing
 * can be paused.  Otherwise the slots are read under an LWLock in shared
 * mode, so sessions never wait for each other just to look; an answer with
 * Retry-After takes it exclusively for a few assignments.  Nothing else
 * (no palloc, no logging, no system call) happens under the lock.
 *
 * Slots are taken by the first 429 of a server and kept while they may
 * matter: a slot whose pause is over (or that never paused) is reclaimed
 * when a new server needs one and none is free, the one whose last 429 is
 * oldest first.  The reclaimed server's counters go with it (the view
 * confluence_fdw.rate_limits then shows the new server, counting from its
 * own first 429; the old one's history is gone, and it starts afresh when
 * it is limited again).  Only when every slot holds a pause that is still
 * running does a server go without: it is then limited per session, and
 * the log says so, once per such episode.
 *
 * IDENTIFICATION
 *		  src/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "confluence_fdw.h"

#define CFDW_RATE_SLOTS 64
#define TRANCHE_NAME "confluence_fdw rate limits"

/* One server's shared rate limit. */
typedef struct RateSlot
{
	Oid			dbid;			/* InvalidOid: a free slot */
	Oid			serverid;
	char		servername[NAMEDATALEN];
	TimestampTz paused_until;	/* no request to it before this; 0: none */
	int64		n429;			/* 429s (and 503s with Retry-After) seen */
	TimestampTz last_429;
} RateSlot;

typedef struct RateShared
{
	LWLock	   *lock;			/* protects slots and full_logged */
	pg_atomic_uint64 latest_end;	/* max of every paused_until ever set */
	bool		full_logged;	/* "all slots paused" was logged */
	RateSlot	slots[CFDW_RATE_SLOTS];
} RateShared;

static RateShared *rate = NULL; /* NULL without shared_preload_libraries */

/* From the postmaster's shmem_request_hook (worker.c). */
void
cfdw_ratelimit_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(RateShared)));
	RequestNamedLWLockTranche(TRANCHE_NAME, 1);
}

/* From shmem_startup_hook (worker.c), which holds AddinShmemInitLock. */
void
cfdw_ratelimit_shmem_startup(void)
{
	bool		found;

	rate = ShmemInitStruct("confluence_fdw rate limits", sizeof(RateShared), &found);
	if (!found)
	{
		memset(rate, 0, sizeof(RateShared));
		rate->lock = &(GetNamedLWLockTranche(TRANCHE_NAME))->lock;
		pg_atomic_init_u64(&rate->latest_end, 0);
	}
}

/* The slot of a server of this database, or NULL; the caller holds the lock. */
static RateSlot *
find_slot(Oid serverid)
{
	int			i;

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		RateSlot   *r = &rate->slots[i];

		if (r->serverid == serverid && r->dbid == MyDatabaseId)
			return r;
	}
	return NULL;
}

/*
 * A slot for a server that has none: a free one, or else the one whose
 * pause is over and whose last 429 is oldest; NULL when every slot holds a
 * running pause.  The caller holds the lock exclusively.
 */
static RateSlot *
take_slot(Oid serverid, TimestampTz now)
{
	RateSlot   *victim = NULL;
	int			i;

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		RateSlot   *r = &rate->slots[i];

		if (r->dbid == InvalidOid)
		{
			victim = r;
			break;
		}
		if (r->paused_until <= now &&
			(victim == NULL || r->last_429 < victim->last_429))
			victim = r;
	}
	if (victim == NULL)
		return NULL;
	memset(victim, 0, sizeof(RateSlot));
	victim->dbid = MyDatabaseId;
	victim->serverid = serverid;
	return victim;
}

/*
 * cfdw_rate_paused_until
 *		Until when no request may go to the server, or 0.
 */
TimestampTz
cfdw_rate_paused_until(Oid serverid)
{
	RateSlot   *r;
	TimestampTz until = 0;

	if (rate == NULL ||
		(TimestampTz) pg_atomic_read_u64(&rate->latest_end) <= GetCurrentTimestamp())
		return 0;
	LWLockAcquire(rate->lock, LW_SHARED);
	r = find_slot(serverid);
	if (r != NULL)
		until = r->paused_until;
	LWLockRelease(rate->lock);
	return until;
}

/*
 * cfdw_rate_note
 *		An answer of the server asked every client to wait ms milliseconds
 *		(0: it said nothing usable): count it, and pause the server for
 *		everyone unless the wait is longer than max_wait_ms (then only that
 *		request fails, and later statements are not held back for it).
 */
void
cfdw_rate_note(Oid serverid, const char *servername, long ms, long max_wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = ms > 0 && ms <= max_wait_ms ? TimestampTzPlusMilliseconds(now, ms) : 0;
	RateSlot   *r;
	bool		log_full = false;

	if (rate == NULL)
		return;
	LWLockAcquire(rate->lock, LW_EXCLUSIVE);
	r = find_slot(serverid);
	if (r == NULL)
	{
		r = take_slot(serverid, now);
		/* log the first server that goes without, until one gets a slot */
		log_full = r == NULL && !rate->full_logged;
		rate->full_logged = r == NULL;
	}
	if (r != NULL)
	{
		strlcpy(r->servername, servername, NAMEDATALEN);
		r->n429++;
		r->last_429 = now;
		if (until > r->paused_until)
		{
			r->paused_until = until;
			if ((uint64) until > pg_atomic_read_u64(&rate->latest_end))
				pg_atomic_write_u64(&rate->latest_end, (uint64) until);
		}
	}
	LWLockRelease(rate->lock);

	if (log_full)
		ereport(LOG,
				(errmsg("confluence_fdw: every shared rate limit slot holds a running pause; server \"%s\" is rate-limited in each session alone",
						servername),
				 errdetail("%d servers are paused at once; a slot is freed when its pause is over.",
						   CFDW_RATE_SLOTS)));
}

PG_FUNCTION_INFO_V1(confluence_fdw_rate_limits);

/*
 * confluence_fdw.rate_limit_state() -> setof (server_name, paused_until,
 * recent_429s, last_429_at), behind the view confluence_fdw.rate_limits:
 * the shared rate limit of each server of this database that holds a slot
 * (see the top of this file for when a slot is reused).
 */
Datum
confluence_fdw_rate_limits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RateSlot	slots[CFDW_RATE_SLOTS];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (rate == NULL)
		return (Datum) 0;
	/* copied first: nothing slow under the lock */
	LWLockAcquire(rate->lock, LW_SHARED);
	memcpy(slots, rate->slots, sizeof(slots));
	LWLockRelease(rate->lock);
	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (slots[i].dbid != MyDatabaseId)
			continue;
		values[0] = CStringGetTextDatum(slots[i].servername);
		values[1] = TimestampTzGetDatum(slots[i].paused_until);
		nulls[1] = slots[i].paused_until == 0;
		values[2] = Int64GetDatum(slots[i].n429);
		values[3] = TimestampTzGetDatum(slots[i].last_429);
		nulls[3] = slots[i].last_429 == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
