/*-------------------------------------------------------------------------
 *
 * oauth.c
 *		  OAuth 2.0 client credentials, as Atlassian's service accounts use
 *		  them: the access token of a user mapping's client_id and
 *		  client_secret, fetched from the server's token_url on first use,
 *		  kept until shortly before it expires, and fetched again then, or
 *		  once when Confluence refuses a token that was kept.
 *
 * Where tokens are kept.  With confluence_fdw in shared_preload_libraries,
 * shared memory holds CFDW_OAUTH_SLOTS tokens, so every session and the
 * worker use one token per credential and fetch it once; without the
 * preload each backend keeps its own (the same slots in its own memory).
 * A slot is found by a SHA-256 of token_url, client_id, a SHA-256 of
 * client_secret, and scope: a new secret (ALTER USER MAPPING) finds no
 * slot and fetches a token at once, without a restart; the old slot is
 * reused when a slot is needed and it is the least recently used.
 *
 * One fetch at a time per slot: a backend that needs a token while another
 * fetches it waits for that fetch (until its timeouts would have run out)
 * rather than asking the endpoint again.  The lock is held only to look
 * at and change slots, never during a fetch.
 *
 * The fetch is one POST through the transport (transport.c), on a
 * connection of its own, with the server's ca_file, proxy, timeouts and
 * egress rules, and waits on the latch like every request, so cancel and
 * statement_timeout stop it.  Its body: JSON for a token_url whose path is
 * /oauth/token (Atlassian Cloud's auth.atlassian.com documents a JSON
 * body), otherwise the form-encoded body of RFC 6749 section 4.4 (a Data
 * Center site's /rest/oauth2/latest/token documents that one).
 *
 * Nothing here ever puts the secret or a token into a message or a log
 * line: messages name the token_url and client_id, never what was sent or
 * received.
 *
 * IDENTIFICATION
 *		  src/oauth.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>
#include <limits.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "confluence_fdw.h"

#define CFDW_OAUTH_SLOTS 32
#define TRANCHE_NAME "confluence_fdw access tokens"

/* Fetched again this long before it expires: 60 s, or a tenth of a short life. */
#define MARGIN_MAX_MS 60000

/* A token answer without expires_in: Atlassian's documented lifetime. */
#define DEFAULT_LIFETIME_S 3600

/* A token endpoint's answer is small; anything bigger is not one. */
#define TOKEN_ANSWER_MAX (1024 * 1024)

/* How often a backend waiting for another one's fetch looks again. */
#define WAIT_POLL_MS 10

typedef struct TokenSlot
{
	uint8		key[PG_SHA256_DIGEST_LENGTH];
	bool		used;			/* key is set */
	bool		valid;			/* token may be used until use_until */
	int			fetcher;		/* pid of the backend fetching one, or 0 */
	TimestampTz fetch_deadline; /* a fetch still running after this is
								 * taken for abandoned */
	TimestampTz use_until;
	TimestampTz last_used;		/* the least recently used slot is reused */
	uint64		serial;			/* which token this is (cfdw_oauth_refused) */
	char		token[CFDW_OAUTH_TOKEN_MAX];
} TokenSlot;

typedef struct TokenCache
{
	LWLock	   *lock;			/* NULL in a backend's own cache */
	uint64		next_serial;
	TokenSlot	slots[CFDW_OAUTH_SLOTS];
} TokenCache;

static TokenCache *shared_cache = NULL;	/* with shared_preload_libraries */
static TokenCache *local_cache = NULL;	/* without: this backend's own */

/* Why no token could be had, worded for an error and for test_connection. */
typedef struct TokenProblem
{
	int			sqlstate;
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *line;			/* test_connection's message */
} TokenProblem;

/* A token as the endpoint gave it. */
typedef struct TokenAnswer
{
	char	   *token;
	long		lifetime_s;
} TokenAnswer;

/* The token handed to the transport, until the next call. */
static char current_token[CFDW_OAUTH_TOKEN_MAX];

/* ---------------------------------------------------------------------
 * Shared memory (requested from worker.c's hooks, as ratelimit.c's)
 * ---------------------------------------------------------------------
 */

void
cfdw_oauth_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(TokenCache)));
	RequestNamedLWLockTranche(TRANCHE_NAME, 1);
}

void
cfdw_oauth_shmem_startup(void)
{
	bool		found;

	shared_cache = ShmemInitStruct("confluence_fdw access tokens", sizeof(TokenCache), &found);
	if (!found)
	{
		memset(shared_cache, 0, sizeof(TokenCache));
		shared_cache->lock = &(GetNamedLWLockTranche(TRANCHE_NAME))->lock;
		shared_cache->next_serial = 1;
	}
}

static TokenCache *
token_cache(void)
{
	if (shared_cache)
		return shared_cache;
	if (local_cache == NULL)
	{
		local_cache = MemoryContextAllocZero(TopMemoryContext, sizeof(TokenCache));
		local_cache->next_serial = 1;
	}
	return local_cache;
}

static void
lock_cache(TokenCache *c)
{
	if (c->lock)
		LWLockAcquire(c->lock, LW_EXCLUSIVE);
}

static void
unlock_cache(TokenCache *c)
{
	if (c->lock)
		LWLockRelease(c->lock);
}

/* ---------------------------------------------------------------------
 * Slots
 * ---------------------------------------------------------------------
 */

static void
hash_update(pg_cryptohash_ctx *ctx, const char *s)
{
	/* the terminating NUL too: "ab"+"c" and "a"+"bc" differ */
	if (pg_cryptohash_update(ctx, (const uint8 *) (s ? s : ""), s ? strlen(s) + 1 : 1) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx))));
}

static void
hash_final(pg_cryptohash_ctx *ctx, uint8 *out)
{
	if (pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx))));
	pg_cryptohash_free(ctx);
}

static pg_cryptohash_ctx *
hash_start(void)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not compute a SHA-256 hash")));
	return ctx;
}

StaticAssertDecl(sizeof(((CfdwSite *) 0)->oauth_key) == PG_SHA256_DIGEST_LENGTH,
				 "the key of a credential is a SHA-256");

/* The slot key of a site's credential. */
static void
credential_key(CfdwSite *site)
{
	uint8	   *key = site->oauth_key;
	uint8		secret_hash[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx = hash_start();

	hash_update(ctx, site->client_secret);
	hash_final(ctx, secret_hash);

	ctx = hash_start();
	hash_update(ctx, site->token_url);
	hash_update(ctx, site->client_id);
	if (pg_cryptohash_update(ctx, secret_hash, sizeof(secret_hash)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx))));
	hash_update(ctx, site->scope);
	hash_final(ctx, key);
}

static TokenSlot *
find_slot(TokenCache *c, const uint8 *key)
{
	for (int i = 0; i < CFDW_OAUTH_SLOTS; i++)
		if (c->slots[i].used && memcmp(c->slots[i].key, key, PG_SHA256_DIGEST_LENGTH) == 0)
			return &c->slots[i];
	return NULL;
}

/*
 * The slot of a key, or a new one: a free slot, else the least recently
 * used one that nobody is fetching for.  NULL only when every slot has a
 * fetch running: then the token is fetched without being kept.
 */
static TokenSlot *
take_slot(TokenCache *c, const uint8 *key, TimestampTz now)
{
	TokenSlot  *victim = find_slot(c, key);

	if (victim)
		return victim;
	for (int i = 0; i < CFDW_OAUTH_SLOTS; i++)
	{
		TokenSlot  *s = &c->slots[i];

		if (!s->used)
		{
			victim = s;
			break;
		}
		if (s->fetcher != 0 && s->fetch_deadline > now)
			continue;
		if (victim == NULL || s->last_used < victim->last_used)
			victim = s;
	}
	if (victim == NULL)
		return NULL;
	explicit_bzero(victim, sizeof(TokenSlot));
	memcpy(victim->key, key, PG_SHA256_DIGEST_LENGTH);
	victim->used = true;
	return victim;
}

/* ---------------------------------------------------------------------
 * The token request
 * ---------------------------------------------------------------------
 */

/* Does the token URL's path end in /oauth/token (Atlassian Cloud's)? */
static bool
wants_json(const char *token_url)
{
	size_t		len = strlen(token_url);
	const char *suffix = "/oauth/token";
	size_t		slen = strlen(suffix);

	while (len > 0 && token_url[len - 1] == '/')
		len--;
	return len >= slen && strncmp(token_url + len - slen, suffix, slen) == 0;
}

static char *
to_utf8(const char *s)
{
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

static void
append_json_field(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 1)
		appendStringInfoChar(buf, ',');
	escape_json(buf, name);
	appendStringInfoChar(buf, ':');
	escape_json(buf, to_utf8(value));
}

static void
append_form_field(StringInfo buf, const char *name, const char *value)
{
	if (buf->len > 0)
		appendStringInfoChar(buf, '&');
	appendStringInfo(buf, "%s=%s", name, cfdw_url_encode(value));
}

/* The body of the client-credentials grant, and its Content-Type. */
static const char *
token_request_body(const CfdwSite *site, StringInfo buf)
{
	if (wants_json(site->token_url))
	{
		appendStringInfoChar(buf, '{');
		append_json_field(buf, "grant_type", "client_credentials");
		append_json_field(buf, "client_id", site->client_id);
		append_json_field(buf, "client_secret", site->client_secret);
		if (site->scope)
			append_json_field(buf, "scope", site->scope);
		appendStringInfoChar(buf, '}');
		return "application/json";
	}
	append_form_field(buf, "grant_type", "client_credentials");
	append_form_field(buf, "client_id", site->client_id);
	append_form_field(buf, "client_secret", site->client_secret);
	if (site->scope)
		append_form_field(buf, "scope", site->scope);
	return "application/x-www-form-urlencoded";
}

/*
 * cfdw_oauth_resolve
 *		What a site with client credentials needs before it sends: the key
 *		of its slot and the token request's body.  Called when its options
 *		are resolved, in a transaction: OpenSSL's hashes are tracked by the
 *		resource owner, and encoding conversions look up catalogs; the
 *		worker sends with neither.
 */
void
cfdw_oauth_resolve(CfdwSite *site)
{
	StringInfoData body;

	credential_key(site);
	initStringInfo(&body);
	site->token_body_type = token_request_body(site, &body);
	site->token_body = body.data;
}

/*
 * Printable ASCII only, at most max bytes: what an endpoint said may be
 * shown, but not its control characters or an encoding the database lacks.
 */
static char *
clean_text(const char *s, size_t max)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s && (size_t) buf.len < max; s++)
		appendStringInfoChar(&buf, (*s >= 0x20 && *s < 0x7f) ? *s : '?');
	if (*s)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

static const char *
json_text(cJSON *root, const char *name)
{
	cJSON	   *v = cJSON_GetObjectItemCaseSensitive(root, name);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* "invalid_client: Client authentication failed", or NULL. */
static char *
oauth_error_of(cJSON *root)
{
	const char *error = root ? json_text(root, "error") : NULL;
	const char *description = root ? json_text(root, "error_description") : NULL;

	if (error == NULL)
		return NULL;
	if (description)
		return psprintf("%s: %s", clean_text(error, 100), clean_text(description, 300));
	return clean_text(error, 100);
}

/* The errors of RFC 6749 section 5.2 that say the credential was refused. */
static bool
is_refusal(long status, const char *error)
{
	static const char *const refusals[] = {
		"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope",
		"access_denied", NULL
	};

	if (status == 401 || status == 403)
		return true;
	if (status != 400 || error == NULL)
		return false;
	for (int i = 0; refusals[i]; i++)
		if (strcmp(error, refusals[i]) == 0)
			return true;
	return false;
}

/* A token may go into a header: visible ASCII only (RFC 6750's b64token). */
static bool
usable_token(const char *token)
{
	size_t		len = strlen(token);

	if (len == 0 || len >= CFDW_OAUTH_TOKEN_MAX)
		return false;
	for (const char *p = token; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

static void
unusable_answer(const CfdwSite *site, const char *what, TokenProblem *p)
{
	p->sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
	p->message = psprintf("the token endpoint %s gave no usable access token", site->token_url);
	p->detail = psprintf("%s. Nothing was sent to Confluence.", what);
	p->hint = pstrdup("Check the server's token_url: it must be an OAuth 2.0 token endpoint, such as https://auth.atlassian.com/oauth/token.");
	p->line = psprintf("the token endpoint %s gave no usable access token: %s", site->token_url, what);
}

/* Read a 2xx answer of the token endpoint. */
static bool
read_token_answer(const CfdwSite *site, const char *body, size_t len,
				  TokenAnswer *a, TokenProblem *p)
{
	cJSON	   *root = cfdw_json_parse_owned(body, len);
	const char *token;
	const char *type;
	cJSON	   *expires;

	if (!cJSON_IsObject(root))
	{
		unusable_answer(site, "Its answer is not a JSON object", p);
		return false;
	}
	token = json_text(root, "access_token");
	type = json_text(root, "token_type");
	expires = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
	if (token == NULL)
	{
		unusable_answer(site, "Its answer has no access_token", p);
		return false;
	}
	if (!usable_token(token))
	{
		unusable_answer(site, "Its access_token is empty, too long, or has characters a header cannot carry", p);
		return false;
	}
	if (type && pg_strcasecmp(type, "bearer") != 0)
	{
		unusable_answer(site, psprintf("Its token_type is \"%s\", not Bearer", clean_text(type, 40)), p);
		return false;
	}
	a->lifetime_s = DEFAULT_LIFETIME_S;
	if (cJSON_IsNumber(expires) && expires->valuedouble >= 1 && expires->valuedouble < INT_MAX)
		a->lifetime_s = (long) expires->valuedouble;
	else if (cJSON_IsString(expires) && expires->valuestring && atol(expires->valuestring) >= 1)
		a->lifetime_s = atol(expires->valuestring);
	else if (expires != NULL)
	{
		unusable_answer(site, "Its expires_in is not a positive number of seconds", p);
		return false;
	}
	a->token = pstrdup(token);
	return true;
}

/* What an answer other than 2xx means. */
static void
token_refused(const CfdwSite *site, long status, const char *body, size_t len,
			  TokenProblem *p)
{
	cJSON	   *root = cfdw_json_parse_owned(body, len);
	const char *error = cJSON_IsObject(root) ? json_text(root, "error") : NULL;
	char	   *said = oauth_error_of(cJSON_IsObject(root) ? root : NULL);

	if (is_refusal(status, error))
	{
		p->sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		p->message = psprintf("the token endpoint refused the OAuth client credentials of client_id \"%s\"",
							  site->client_id);
		p->detail = psprintf("%s answered HTTP %ld%s%s. Nothing was sent to Confluence.",
							 site->token_url, status, said ? ": " : "", said ? said : "");
		p->hint = (error && strcmp(error, "invalid_scope") == 0)
			? pstrdup("Check the scope option of the user mapping: the service account's credential must have been given every scope it asks for.")
			: pstrdup("Check client_id and client_secret in the user mapping: a service account's OAuth 2.0 credential, made in Atlassian Administration.");
		p->line = psprintf("the token endpoint refused client_id \"%s\" (HTTP %ld%s%s): check client_id and client_secret in the user mapping",
						   site->client_id, status, said ? ": " : "", said ? said : "");
		return;
	}
	p->sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
	p->message = psprintf("could not obtain an access token from %s", site->token_url);
	p->detail = psprintf("The token endpoint answered HTTP %ld%s%s. Nothing was sent to Confluence.",
						 status, said ? ": " : "", said ? said : "");
	p->hint = status >= 500 ? NULL
		: pstrdup("Check the server's token_url: it must be an OAuth 2.0 token endpoint, such as https://auth.atlassian.com/oauth/token.");
	p->line = psprintf("could not obtain an access token from %s: HTTP %ld%s%s",
					   site->token_url, status, said ? ": " : "", said ? said : "");
}

/* A token request that got no answer. */
static void
token_unreachable(const CfdwSite *site, const CfdwResponse *resp, TokenProblem *p)
{
	p->sqlstate = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;
	p->message = psprintf("could not obtain an access token from %s", site->token_url);
	p->detail = psprintf("%s. Nothing was sent to Confluence.", resp->failure_detail);
	p->hint = pstrdup("Check the server's token_url, and its proxy and ca_file options if it has them.");
	p->line = psprintf("could not obtain an access token from %s: %s", site->token_url,
					   resp->failure_detail);
	if (resp->failure == CFDW_FAIL_EGRESS)
	{
		p->sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		p->detail = psprintf("The host of token_url resolves to the internal address %s, which servers of roles other than superusers may not connect to. Nothing was sent to Confluence.",
							 resp->refused_address);
		p->hint = NULL;
	}
}

/*
 * POST the client-credentials grant to site's token_url and read the
 * answer.  False with *p filled when there is no token; errors are raised
 * only for an interrupt or out of memory.
 */
static bool
fetch_token(const CfdwSite *site, TokenAnswer *a, TokenProblem *p)
{
	CfdwSite	ts;
	CfdwRequest req;
	CfdwResponse resp;
	CfdwConnection *c;
	char	   *volatile answer = NULL;

	bool		ok;

	/*
	 * The endpoint's own connection (umid 0 is no user mapping): the
	 * server's route and limits, none of the table's headers, no other
	 * credential, and no shared rate limit of a Confluence site.
	 */
	memset(&ts, 0, sizeof(ts));
	ts.umid = InvalidOid;
	ts.serverid = InvalidOid;
	ts.config_id = cfdw_next_config_id();
	ts.timeout_ms = site->timeout_ms;
	ts.connect_timeout_ms = site->connect_timeout_ms;
	ts.max_response_bytes = TOKEN_ANSWER_MAX;
	ts.keep_connections = site->keep_connections;
	ts.ca_file = site->ca_file;
	ts.proxy = site->proxy;
	ts.restricted = site->restricted;

	memset(&req, 0, sizeof(req));
	req.method = CFDW_POST;
	req.url = site->token_url;
	req.path_for_messages = site->token_url;
	req.content_type = site->token_body_type;
	req.body = site->token_body;
	req.body_len = strlen(site->token_body);

	elog(DEBUG1, "confluence_fdw: fetching an access token for client_id \"%s\" from %s",
		 site->client_id, site->token_url);
	c = cfdw_get_connection(&ts);
	PG_TRY();
	{
		cfdw_transfer_start(c, 0, &ts, &req, 0);
		while (cfdw_transfer_state(c, 0) != CFDW_SLOT_DONE)
			cfdw_transport_wait(c);
		resp = *cfdw_transfer_response(c, 0);
		if (resp.outcome == CFDW_ANSWERED)
			answer = pnstrdup(resp.body, resp.body_len);
		cfdw_transfer_release(c, 0);
	}
	PG_FINALLY();
	{
		cfdw_release_connection(c, &ts);
	}
	PG_END_TRY();

	if (resp.outcome != CFDW_ANSWERED)
	{
		token_unreachable(site, &resp, p);
		return false;
	}
	if (resp.status >= 200 && resp.status < 300)
		ok = read_token_answer(site, answer, resp.body_len, a, p);
	else
	{
		token_refused(site, resp.status, answer, resp.body_len, p);
		ok = false;
	}
	explicit_bzero(answer, resp.body_len);
	return ok;
}

/* ---------------------------------------------------------------------
 * Getting a token
 * ---------------------------------------------------------------------
 */

/* Until when a token fetched at start for lifetime_s may be used. */
static TimestampTz
use_until(TimestampTz start, long lifetime_s)
{
	int64		life_ms = (int64) lifetime_s * 1000;
	int64		margin_ms = Min((int64) MARGIN_MAX_MS, life_ms / 10);

	return TimestampTzPlusMilliseconds(start, life_ms - margin_ms);
}

/*
 * fetch_token for the slot this backend marked as fetching: an error gives
 * the fetch up for the others, who would wait for it until its deadline.
 */
static bool
fetch_for_slot(const CfdwSite *site, TokenCache *c, TokenSlot *slot, const uint8 *key,
			   TokenAnswer *a, TokenProblem *p)
{
	bool		ok = false;

	PG_TRY();
	{
		ok = fetch_token(site, a, p);
	}
	PG_CATCH();
	{
		/* no network work here */
		lock_cache(c);
		if (slot && slot->fetcher == MyProcPid &&
			memcmp(slot->key, key, PG_SHA256_DIGEST_LENGTH) == 0)
			slot->fetcher = 0;
		unlock_cache(c);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ok;
}

/*
 * The site's access token into current_token: the kept one while it is
 * good, else a new one (*fresh).  False with *p filled when none could be
 * had.
 */
static bool
obtain_token(const CfdwSite *site, uint64 *serial, bool *fresh, TokenProblem *p)
{
	TokenCache *c = token_cache();
	const uint8 *key = site->oauth_key;
	TokenSlot  *slot;
	TokenAnswer a;
	TimestampTz start;
	bool		ok = false;

	*fresh = false;
	*serial = 0;
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();

		lock_cache(c);
		slot = take_slot(c, key, now);
		if (slot && slot->valid && now < slot->use_until)
		{
			strlcpy(current_token, slot->token, sizeof(current_token));
			*serial = slot->serial;
			slot->last_used = now;
			unlock_cache(c);
			return true;
		}
		if (slot && slot->fetcher != 0 && slot->fetcher != MyProcPid &&
			now < slot->fetch_deadline)
		{
			/* another backend is fetching this very token: wait for it */
			unlock_cache(c);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 WAIT_POLL_MS, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		if (slot)
		{
			slot->valid = false;
			slot->fetcher = MyProcPid;
			slot->fetch_deadline = TimestampTzPlusMilliseconds(now,
															   (int64) site->timeout_ms + site->connect_timeout_ms + 1000);
		}
		unlock_cache(c);
		start = now;
		break;
	}

	ok = fetch_for_slot(site, c, slot, key, &a, p);
	if (ok)
	{
		strlcpy(current_token, a.token, sizeof(current_token));
		explicit_bzero(a.token, strlen(a.token));
	}
	lock_cache(c);
	/* the slot may have been given to another credential if we took too long */
	if (slot && memcmp(slot->key, key, PG_SHA256_DIGEST_LENGTH) != 0)
		slot = NULL;
	if (slot && slot->fetcher == MyProcPid)
		slot->fetcher = 0;
	if (ok)
	{
		*serial = c->next_serial++;
		*fresh = true;
		if (slot)
		{
			strlcpy(slot->token, current_token, sizeof(slot->token));
			slot->use_until = use_until(start, a.lifetime_s);
			slot->serial = *serial;
			slot->last_used = start;
			slot->valid = true;
		}
	}
	unlock_cache(c);
	if (ok)
		elog(DEBUG1, "confluence_fdw: got an access token for client_id \"%s\", valid for %ld s",
			 site->client_id, a.lifetime_s);
	return ok;
}

static void
raise_problem(const TokenProblem *p)
{
	ereport(ERROR,
			(errcode(p->sqlstate),
			 errmsg_internal("%s", p->message),
			 errdetail_internal("%s", p->detail),
			 p->hint ? errhint("%s", p->hint) : 0));
}

/*
 * cfdw_oauth_bearer
 *		The access token to send with a request of site (which has a
 *		client_id): kept, or fetched now.  *serial names it for
 *		cfdw_oauth_refused; *fresh says it was fetched for this request.
 *		The string is valid until the next call.  Raises the error of a
 *		token endpoint that gave none.
 */
const char *
cfdw_oauth_bearer(const CfdwSite *site, uint64 *serial, bool *fresh)
{
	TokenProblem p;

	if (!obtain_token(site, serial, fresh, &p))
		raise_problem(&p);
	return current_token;
}

/*
 * cfdw_oauth_ready
 *		Make sure a token is at hand before requests are committed to (the
 *		worker claims rows only then): raises the token endpoint's error
 *		while nothing has been sent.  Nothing to do without a client_id.
 */
void
cfdw_oauth_ready(const CfdwSite *site)
{
	uint64		serial;
	bool		fresh;

	if (site->client_id)
		(void) cfdw_oauth_bearer(site, &serial, &fresh);
}

/*
 * cfdw_oauth_check
 *		test_connection's way: NULL when a token is at hand, else the
 *		one-line reason why not.
 */
char *
cfdw_oauth_check(const CfdwSite *site)
{
	TokenProblem p;
	uint64		serial;
	bool		fresh;

	if (site->client_id == NULL || obtain_token(site, &serial, &fresh, &p))
		return NULL;
	return p.line;
}

/*
 * cfdw_oauth_refused
 *		Whether Confluence refused (401) a token of site that was kept from
 *		before this request, which is then worth sending again once with a
 *		new token: that one is dropped (unless someone has replaced it
 *		already), so the next request fetches another.  A token fetched for
 *		this very request is not fetched again: the 401 is the answer.
 *		Nor is one the gateway refused for a missing scope: a new token of
 *		the same credential has the same scopes.
 */
bool
cfdw_oauth_refused(const CfdwSite *site, const CfdwResponse *resp)
{
	TokenCache *c;
	TokenSlot  *slot;

	if (site->client_id == NULL || resp->outcome != CFDW_ANSWERED ||
		resp->status != 401 || resp->token_fresh || resp->token_serial == 0 ||
		pg_strcasecmp(resp->failure_category, "FAILURE_CLIENT_SCOPE_CHECK") == 0)
		return false;
	c = token_cache();
	lock_cache(c);
	slot = find_slot(c, site->oauth_key);
	if (slot && slot->valid && slot->serial == resp->token_serial)
		slot->valid = false;
	unlock_cache(c);
	elog(DEBUG1, "confluence_fdw: Confluence refused the kept access token of client_id \"%s\"; fetching a new one",
		 site->client_id);
	return true;
}
