/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		  Rate limits per Confluence site, shared by every session and the
 *		  worker: the pause a Retry-After asks for, what the rate-limit
 *		  headers of the answers say, and the pace that follows from it.
 *
 * Quotas belong to a site (an app's pool on one tenant), not to a foreign
 * server: two servers that reach the same site, or one server used by many
 * sessions and the queue worker, draw on one quota.  So the state is kept
 * per site key (cfdw_rate_site_key): the cloudId of a gateway URL, else the
 * host and port.
 *
 * With confluence_fdw in shared_preload_libraries, shared memory holds
 * CFDW_RATE_SLOTS slots, one per site, for every database of the cluster
 * (a quota does not care which database a request came from); a slot is
 * shown by the view only in the databases that used it.  Without the
 * preload each backend keeps a table of its own, with the same rules.
 *
 * What a slot holds (pure.c's CfdwPace does the arithmetic):
 *	- the pause: no request before the Retry-After of a 429 has passed;
 *	- the headers of the last answer (X-RateLimit-*, RateLimit-Reason,
 *	  Beta-RateLimit*), read from every answer, 2xx or not;
 *	- the pace: near the limit (X-RateLimit-NearLimit, or under a fifth of
 *	  the limit left) the requests left are spread evenly until the reset,
 *	  through one "next send" time that each request claims as it starts
 *	  (cfdw_rate_claim), so sessions and the worker take turns; a server's
 *	  max_rate caps the pace the same way, headers or not;
 *	- the requests in flight: each claim holds a ticket until its request
 *	  is answered, fails or is stopped (cfdw_rate_answered), because an
 *	  answer's Remaining may not count the others in flight yet; a backend
 *	  gives its tickets back when it exits, however it exits.
 *
 * Locking: the table's LWLock, shared, to find a slot, and the slot's
 * spinlock to read or change it; the LWLock exclusively only to give a
 * site a slot.  Sessions on different sites never wait for each other, and
 * nothing but a few assignments (no palloc, no logging, no system call)
 * happens under either lock.
 *
 * Slots are taken by the first request to a site, and kept while they may
 * matter: when a new site needs one and none is free, the slot used
 * longest ago whose pause, pace and window are all over is reused (its
 * counters go with it, and its generation changes, so that tickets of the
 * old site no longer count).  Only when every slot is still in use does a site
 * go without: it is then neither paused for others nor paced, and the log
 * says so, once per such episode.
 *
 * IDENTIFICATION
 *		  src/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "confluence_fdw.h"
#include "pure.h"

#define CFDW_RATE_SLOTS 64
#define RATE_DBS 8				/* databases remembered per slot, for the view */
#define TRANCHE_NAME "confluence_fdw rate limits"

/* One site's rate limit. */
typedef struct RateSlot
{
	char		key[CFDW_SITE_KEY_LEN]; /* "": free; changed only under the
										 * table's lock held exclusively */
	uint32		generation;		/* bumped when the slot is taken anew */
	slock_t		mutex;			/* protects everything below */
	Oid			dbids[RATE_DBS];	/* databases that used it (the view) */
	CfdwPace	pace;			/* pause, window, budget, next send */
	TimestampTz last_used;		/* last claim, answer or 429 */
	/* what the last answer with rate-limit headers said, for the view */
	TimestampTz seen_at;		/* 0: none yet */
	int64		limit;			/* -1: not said */
	int64		remaining;
	TimestampTz reset;			/* 0: not said */
	int			near_limit;		/* -1: not said */
	char		reason[CFDW_RATE_REASON_LEN];
	/* counters */
	int64		paced;			/* requests that waited for the pace */
	int64		n429;			/* 429s (and 503s with Retry-After) */
	TimestampTz last_429;
} RateSlot;

typedef struct RateTable
{
	LWLock	   *lock;			/* NULL: a backend's own table, no locks */
	bool		full_logged;	/* "every slot in use" was logged */
	RateSlot	slots[CFDW_RATE_SLOTS];
} RateTable;

static RateTable *shared_rate = NULL;	/* with shared_preload_libraries */
static RateTable *local_rate = NULL;	/* without: this backend's */

/* From the postmaster's shmem_request_hook (worker.c). */
void
cfdw_ratelimit_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(RateTable)));
	RequestNamedLWLockTranche(TRANCHE_NAME, 1);
}

static void
init_table(RateTable *t, LWLock *lock)
{
	int			i;

	memset(t, 0, sizeof(RateTable));
	t->lock = lock;
	for (i = 0; i < CFDW_RATE_SLOTS; i++)
		SpinLockInit(&t->slots[i].mutex);
}

/* From shmem_startup_hook (worker.c), which holds AddinShmemInitLock. */
void
cfdw_ratelimit_shmem_startup(void)
{
	bool		found;

	shared_rate = ShmemInitStruct("confluence_fdw rate limits", sizeof(RateTable), &found);
	if (!found)
		init_table(shared_rate, &(GetNamedLWLockTranche(TRANCHE_NAME))->lock);
}

/* The shared table, or this backend's own. */
static RateTable *
rate_table(void)
{
	if (shared_rate != NULL)
		return shared_rate;
	if (local_rate == NULL)
	{
		local_rate = MemoryContextAlloc(TopMemoryContext, sizeof(RateTable));
		init_table(local_rate, NULL);
	}
	return local_rate;
}

static void
table_lock(RateTable *t, LWLockMode mode)
{
	if (t->lock)
		LWLockAcquire(t->lock, mode);
}

static void
table_unlock(RateTable *t)
{
	if (t->lock)
		LWLockRelease(t->lock);
}

/*
 * cfdw_rate_site_key
 *		The key of the site a server's requests reach (pure.c's
 *		cfdw_site_key): the cloudId of a gateway base URL
 *		(https://api.atlassian.com/ex/confluence/{cloudId}), else the host
 *		in lower case with its port.  Two servers reaching the same host
 *		share one rate limit.  A server whose cloudId is known by other
 *		means (resolved from its domain through the API gateway) passes it
 *		as cloud_id, so that it shares the state of the gateway servers of
 *		the same site.  NULL when base has no host.
 */
char *
cfdw_rate_site_key(const char *base, const char *cloud_id)
{
	char		key[CFDW_SITE_KEY_LEN];

	if (!cfdw_site_key(base, cloud_id, key, sizeof(key)))
		return NULL;
	return pstrdup(key);
}

/* The slot of a site, or NULL; the caller holds the table's lock. */
static RateSlot *
find_slot(RateTable *t, const char *key)
{
	int			i;

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
		if (t->slots[i].key[0] != '\0' && strcmp(t->slots[i].key, key) == 0)
			return &t->slots[i];
	return NULL;
}

/* Nothing in the slot can hold a request back any more. */
static bool
slot_idle(const RateSlot *r, TimestampTz now)
{
	return r->pace.paused_until <= now && r->pace.next_at <= now &&
		(r->pace.reset == 0 || r->pace.reset <= now);
}

/*
 * A slot for a site that has none: a free one, or else the idle one used
 * longest ago; NULL when every slot is in use.  The caller holds the lock
 * exclusively, so no other backend is in any slot.
 */
static RateSlot *
take_slot(RateTable *t, const char *key, TimestampTz now)
{
	RateSlot   *victim = NULL;
	int			i;

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		RateSlot   *r = &t->slots[i];

		if (r->key[0] == '\0')
		{
			victim = r;
			break;
		}
		if (slot_idle(r, now) && (victim == NULL || r->last_used < victim->last_used))
			victim = r;
	}
	if (victim == NULL)
		return NULL;
	victim->generation++;
	memset(victim->dbids, 0, sizeof(victim->dbids));
	memset(&victim->pace, 0, sizeof(victim->pace));
	victim->pace.limit = victim->pace.budget = -1;
	victim->pace.near_limit = -1;
	victim->last_used = now;
	victim->seen_at = 0;
	victim->limit = victim->remaining = -1;
	victim->reset = 0;
	victim->near_limit = -1;
	victim->reason[0] = '\0';
	victim->paced = victim->n429 = 0;
	victim->last_429 = 0;
	strlcpy(victim->key, key, sizeof(victim->key));
	return victim;
}

/*
 * The slot of a site with its spinlock held (and the table's lock, in some
 * mode): found, or with create given a new one.  NULL (and no lock held)
 * when there is none; *full says a new one was needed and none was free.
 * Release with close_slot.
 */
static RateSlot *
open_slot(RateTable *t, const char *key, bool create, TimestampTz now, bool *full)
{
	RateSlot   *r;

	*full = false;
	table_lock(t, LW_SHARED);
	r = find_slot(t, key);
	if (r == NULL && create)
	{
		/* another backend may take it between the two locks: look again */
		table_unlock(t);
		table_lock(t, LW_EXCLUSIVE);
		r = find_slot(t, key);
		if (r == NULL)
		{
			r = take_slot(t, key, now);
			/* logged for the first site that goes without, until one gets a slot */
			*full = r == NULL && !t->full_logged;
			t->full_logged = r == NULL;
		}
	}
	if (r == NULL)
	{
		table_unlock(t);
		return NULL;
	}
	SpinLockAcquire(&r->mutex);
	return r;
}

/* Remember that this database uses the slot (the view shows it here). */
static void
note_database(RateSlot *r)
{
	int			i;

	for (i = 0; i < RATE_DBS; i++)
	{
		if (r->dbids[i] == MyDatabaseId)
			return;
		if (r->dbids[i] == InvalidOid)
		{
			r->dbids[i] = MyDatabaseId;
			return;
		}
	}
}

static void
close_slot(RateTable *t, RateSlot *r)
{
	SpinLockRelease(&r->mutex);
	table_unlock(t);
}

static void
log_full(const char *key)
{
	ereport(LOG,
			(errmsg("confluence_fdw: every rate limit slot is in use; site \"%s\" is not paced or paused for other sessions",
					key),
			 errdetail("%d sites are paused or paced at once; a slot is freed when its pause and its rate-limit window are over.",
					   CFDW_RATE_SLOTS)));
}

/*
 * cfdw_rate_paused_until
 *		Until when no request may go to the site, or 0.
 */
TimestampTz
cfdw_rate_paused_until(const char *key)
{
	RateTable  *t;
	RateSlot   *r;
	TimestampTz until;
	bool		full;

	if (key == NULL || key[0] == '\0')
		return 0;
	t = rate_table();
	r = open_slot(t, key, false, 0, &full);
	if (r == NULL)
		return 0;
	until = r->pace.paused_until;
	close_slot(t, r);
	return until;
}

/*
 * The requests this backend has in flight per slot (by generation), given
 * back when it exits however it exits: a terminated backend's scheduled
 * requests must not count against the site's budget for ever.
 */
static int	my_inflight[CFDW_RATE_SLOTS];
static uint32 my_generation[CFDW_RATE_SLOTS];
static bool exit_hook_set = false;

/* A ticket names a slot and its generation: 0 is none. */
#define TICKET(i, gen)		((((int64) (gen)) << 8) | ((i) + 1))
#define TICKET_SLOT(k)		((int) ((k) & 0xff) - 1)
#define TICKET_GEN(k)		((uint32) ((k) >> 8))

/* The slot of a ticket with its locks held, or NULL when it was reused. */
static RateSlot *
open_ticket(RateTable *t, int64 ticket)
{
	int			i = TICKET_SLOT(ticket);
	RateSlot   *r;

	if (ticket <= 0 || i < 0 || i >= CFDW_RATE_SLOTS)
		return NULL;
	r = &t->slots[i];
	table_lock(t, LW_SHARED);
	SpinLockAcquire(&r->mutex);
	if (r->key[0] != '\0' && r->generation == TICKET_GEN(ticket))
		return r;
	SpinLockRelease(&r->mutex);
	table_unlock(t);
	return NULL;
}

static void
release_mine(int code, Datum arg)
{
	RateTable  *t = shared_rate;
	int			i;

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		RateSlot   *r;

		if (my_inflight[i] <= 0)
			continue;
		r = open_ticket(t, TICKET(i, my_generation[i]));
		if (r == NULL)
			continue;
		r->pace.inflight = Max(r->pace.inflight - my_inflight[i], 0);
		my_inflight[i] = 0;
		close_slot(t, r);
	}
}

/*
 * cfdw_rate_claim
 *		When a request to the site may start: not before not_before, the
 *		site's pause, and its pace (near its limit, or max_rate, requests
 *		per second, 0: none).  The time returned is claimed: the next
 *		request, of any session, is paced after it, and this one counts as
 *		in flight until cfdw_rate_answered(*ticket).  The first request to
 *		a site gives it a slot, so that the requests in flight before the
 *		first answer are counted too.
 *
 *		A turn further away than max_wait_ms (a budget spent until a reset
 *		an hour away) is not waited for: the request starts at not_before,
 *		and the site's own answer (a 429 with its Retry-After) decides, so
 *		that a statement fails at once saying when the limit lifts, and a
 *		queued row is postponed to then, rather than either hanging.
 */
TimestampTz
cfdw_rate_claim(const char *key, double max_rate, TimestampTz not_before, int max_wait_ms,
				int64 *ticket)
{
	RateTable  *t;
	RateSlot   *r;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz start;
	bool		paced;
	bool		full;
	int			i;

	*ticket = 0;
	if (key == NULL || key[0] == '\0')
		return not_before;
	t = rate_table();
	if (t->lock != NULL && !exit_hook_set)
	{
		before_shmem_exit(release_mine, (Datum) 0);
		exit_hook_set = true;
	}
	r = open_slot(t, key, true, now, &full);
	if (r == NULL)
	{
		if (full)
			log_full(key);
		return not_before;
	}
	start = (TimestampTz) cfdw_pace_claim(&r->pace, now, not_before, max_rate,
										  max_wait_ms < 0 ? -1 : (int64_t) max_wait_ms * 1000,
										  &paced);
	if (paced)
		r->paced++;
	r->last_used = now;
	note_database(r);
	i = r - t->slots;
	*ticket = TICKET(i, r->generation);
	if (my_generation[i] != r->generation)
	{
		my_generation[i] = r->generation;
		my_inflight[i] = 0;
	}
	my_inflight[i]++;
	close_slot(t, r);
	return start;
}

/*
 * cfdw_rate_answered
 *		The request of a ticket is over: answered, with the rate-limit
 *		headers h, or (h NULL) failed, stopped or claimed anew.  What the
 *		headers say is read; an answer that says nothing about rate limits
 *		changes nothing but the count of requests in flight.
 */
void
cfdw_rate_answered(int64 ticket, const CfdwRateHeaders *h)
{
	RateTable  *t;
	RateSlot   *r;
	CfdwRateInfo info;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz reset = 0;
	bool		any;
	int			i = TICKET_SLOT(ticket);

	if (ticket <= 0)
		return;
	any = h != NULL && cfdw_rate_parse(h, timestamptz_to_time_t(now), &info);
	if (any && info.reset != 0)
		reset = time_t_to_timestamptz(info.reset);
	t = rate_table();
	r = open_ticket(t, ticket);
	if (r == NULL)
		return;
	if (my_generation[i] == r->generation && my_inflight[i] > 0)
		my_inflight[i]--;
	cfdw_pace_answered(&r->pace, any ? &info : NULL, (int64) reset, (int64) now);
	if (any)
	{
		r->seen_at = now;
		r->last_used = now;
		if (info.remaining >= 0)
		{
			r->limit = info.limit;
			r->remaining = info.remaining;
			r->reset = reset;
		}
		if (info.near_limit >= 0)
			r->near_limit = info.near_limit;
		if (info.reason[0] != '\0')
			strlcpy(r->reason, info.reason, sizeof(r->reason));
		note_database(r);
	}
	close_slot(t, r);
}

/*
 * cfdw_rate_note
 *		An answer of the site asked every client to wait ms milliseconds
 *		(0 or less: it said nothing usable): count it, and pause the site
 *		for everyone unless the wait is longer than max_wait_ms (then only
 *		that request fails, and later statements are not held back for it).
 */
void
cfdw_rate_note(const char *key, long ms, long max_wait_ms)
{
	RateTable  *t;
	RateSlot   *r;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = ms > 0 && ms <= max_wait_ms ? TimestampTzPlusMilliseconds(now, ms) : 0;
	bool		full;

	if (key == NULL || key[0] == '\0')
		return;
	t = rate_table();
	r = open_slot(t, key, true, now, &full);
	if (r == NULL)
	{
		if (full)
			log_full(key);
		return;
	}
	r->n429++;
	r->last_429 = now;
	r->last_used = now;
	if (until > r->pace.paused_until)
		r->pace.paused_until = until;
	note_database(r);
	close_slot(t, r);
}

PG_FUNCTION_INFO_V1(confluence_fdw_rate_limits);

/*
 * confluence_fdw.rate_limit_state() -> setof (site, paused_until,
 * rate_limit, remaining, reset_at, near_limit, reason, paced, recent_429s,
 * last_429_at, seen_at), behind the view confluence_fdw.rate_limits: the
 * sites this database's sessions have used that hold a slot (see the top
 * of this file for when a slot is reused).  Nothing in it is secret: a
 * site key is a host or a cloudId, never a URL's user information, and the
 * reason is printable ASCII from the site's answers.
 */
Datum
confluence_fdw_rate_limits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RateTable  *t = rate_table();
	RateSlot   *slots = palloc(sizeof(RateSlot) * CFDW_RATE_SLOTS);
	int			i;

	InitMaterializedSRF(fcinfo, 0);

	/* copied first: nothing slow under the locks */
	table_lock(t, LW_SHARED);
	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		SpinLockAcquire(&t->slots[i].mutex);
		memcpy(&slots[i], &t->slots[i], sizeof(RateSlot));
		SpinLockRelease(&t->slots[i].mutex);
	}
	table_unlock(t);

	for (i = 0; i < CFDW_RATE_SLOTS; i++)
	{
		RateSlot   *r = &slots[i];
		Datum		values[11];
		bool		nulls[11];
		bool		ours = t->lock == NULL;
		int			j;

		if (r->key[0] == '\0')
			continue;
		for (j = 0; j < RATE_DBS && !ours; j++)
			ours = r->dbids[j] == MyDatabaseId;
		if (!ours)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(r->key);
		values[1] = TimestampTzGetDatum(r->pace.paused_until);
		nulls[1] = r->pace.paused_until == 0;
		values[2] = Int64GetDatum(r->limit);
		nulls[2] = r->limit < 0;
		values[3] = Int64GetDatum(r->remaining);
		nulls[3] = r->remaining < 0;
		values[4] = TimestampTzGetDatum(r->reset);
		nulls[4] = r->reset == 0;
		values[5] = BoolGetDatum(r->near_limit == 1);
		nulls[5] = r->near_limit < 0;
		values[6] = CStringGetTextDatum(r->reason);
		nulls[6] = r->reason[0] == '\0';
		values[7] = Int64GetDatum(r->paced);
		values[8] = Int64GetDatum(r->n429);
		values[9] = TimestampTzGetDatum(r->last_429);
		nulls[9] = r->last_429 == 0;
		values[10] = TimestampTzGetDatum(r->seen_at);
		nulls[10] = r->seen_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
