/*-------------------------------------------------------------------------
 *
 * http.c
 *		  libcurl for confluence_fdw: one cached connection per user mapping,
 *		  transfers that wait on the process latch, and the retry policy.
 *
 * Why the multi interface for one request at a time: curl_easy_perform
 * blocks in libcurl's own poll(), where PostgreSQL's latch cannot wake it,
 * so cancel and statement_timeout would wait for libcurl's progress
 * callback.  Driving the transfer with curl_multi_socket_action lets us wait
 * in WaitEventSetWait on the sockets libcurl names *and* the latch, as
 * libpq's backend helpers do, so an interrupt is seen at once and reported
 * by CHECK_FOR_INTERRUPTS() with PostgreSQL's own error.
 *
 * Ownership: libcurl allocates with malloc.  A CfdwConnection lives in a
 * backend-lifetime hash table and owns its easy and multi handles, header
 * list and response buffer; they are freed only by close_connection().  No
 * libcurl callback raises an error or allocates with palloc: they record
 * what happened and the caller reports it after the transfer.
 *
 * IDENTIFICATION
 *		  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <math.h>
#include <time.h>

#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "confluence_fdw.h"
#include "pure.h"

/* More sockets than one transfer ever opens (a connection and a resolver). */
#define CFDW_MAX_SOCKETS 8

typedef struct CfdwSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} CfdwSocket;

struct CfdwConnection
{
	Oid			umid;			/* hash key: the user mapping */
	CURL	   *easy;			/* NULL when closed */
	CURLM	   *multi;			/* owns the connection pool */
	bool		fd_reserved;	/* counted with AcquireExternalFD */
	uint32		server_hash;	/* to match invalidation messages */
	uint32		mapping_hash;
	bool		invalidated;	/* options changed: reconnect before use */
	uint64		config_id;		/* CfdwTable whose options are set */
	struct curl_slist *headers; /* request headers of that configuration */
	char		errbuf[CURL_ERROR_SIZE];

	/* filled by the callbacks during a transfer */
	char	   *buf;			/* response body, NUL-terminated */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* max_response_bytes */
	bool		too_large;
	bool		out_of_memory;
	CfdwResponse *resp;			/* where header values go */
	const char *body;			/* request body being sent */
	size_t		body_len;
	size_t		body_pos;		/* bytes handed to libcurl so far */
	bool		body_rewindable;	/* may libcurl send it again? */
	CfdwSocket	socks[CFDW_MAX_SOCKETS];
	int			nsocks;
	bool		socks_overflow;
	long		timer_ms;		/* -1: no timer */
	TimestampTz timer_set_at;
};

static HTAB *ConnectionHash = NULL;
static uint64 next_config_id = 1;

/* ---------------------------------------------------------------------
 * libcurl callbacks.  None of them may raise an error.
 * ---------------------------------------------------------------------
 */

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	CfdwConnection *c = (CfdwConnection *) userdata;
	size_t		n = size * nmemb;

	/* Check the limit before growing, so an oversized body never lands. */
	if (c->len + n > c->limit)
	{
		c->too_large = true;
		return 0;
	}
	if (c->len + n + 1 > c->cap)
	{
		size_t		newcap = Max(c->cap * 2, c->len + n + 1);
		char	   *p;

		newcap = Max(newcap, 8192);
		p = realloc(c->buf, newcap);
		if (p == NULL)
		{
			c->out_of_memory = true;
			return 0;
		}
		c->buf = p;
		c->cap = newcap;
	}
	memcpy(c->buf + c->len, ptr, n);
	c->len += n;
	c->buf[c->len] = '\0';
	return n;
}

/*
 * The request body goes through a read callback rather than
 * CURLOPT_POSTFIELDS so that we decide whether it may be sent twice: when a
 * reused keep-alive connection dies after the request went out, libcurl
 * rewinds the body and silently resends it on a new connection.  For a
 * POST that could create a second page; refusing the rewind turns it into
 * CURLE_SEND_FAIL_REWIND, reported as "may have been processed".
 */
static size_t
read_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	CfdwConnection *c = (CfdwConnection *) userdata;
	size_t		n = Min(size * nitems, c->body_len - c->body_pos);

	memcpy(buffer, c->body + c->body_pos, n);
	c->body_pos += n;
	return n;
}

static int
seek_cb(void *userdata, curl_off_t offset, int origin)
{
	CfdwConnection *c = (CfdwConnection *) userdata;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > c->body_len)
		return CURL_SEEKFUNC_FAIL;
	if (c->body_pos > 0 && !c->body_rewindable)
		return CURL_SEEKFUNC_CANTSEEK;
	c->body_pos = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

/* Copy a header value, trimmed, into a fixed buffer. */
static void
copy_header_value(char *dst, size_t dstsize, const char *value, size_t len)
{
	while (len > 0 && (*value == ' ' || *value == '\t'))
		value++, len--;
	while (len > 0 && (value[len - 1] == '\r' || value[len - 1] == '\n' ||
					   value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;
	if (len >= dstsize)
		len = dstsize - 1;
	memcpy(dst, value, len);
	dst[len] = '\0';
}

static bool
header_is(const char *line, size_t len, const char *name, const char **value,
		  size_t *vlen)
{
	size_t		nlen = strlen(name);

	if (len <= nlen || line[nlen] != ':' || pg_strncasecmp(line, name, nlen) != 0)
		return false;
	*value = line + nlen + 1;
	*vlen = len - nlen - 1;
	return true;
}

static size_t
header_cb(char *line, size_t size, size_t nmemb, void *userdata)
{
	CfdwConnection *c = (CfdwConnection *) userdata;
	CfdwResponse *r = c->resp;
	size_t		len = size * nmemb;
	const char *v;
	size_t		vlen;

	/* A new status line (after a 100 Continue, say) starts a new header set. */
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		r->content_type[0] = r->location[0] = r->retry_after[0] = '\0';
		r->request_id[0] = '\0';
		return len;
	}
	if (header_is(line, len, "Retry-After", &v, &vlen))
		copy_header_value(r->retry_after, sizeof(r->retry_after), v, vlen);
	else if (header_is(line, len, "Beta-Retry-After", &v, &vlen) && r->retry_after[0] == '\0')
		copy_header_value(r->retry_after, sizeof(r->retry_after), v, vlen);
	else if (header_is(line, len, "Content-Type", &v, &vlen))
		copy_header_value(r->content_type, sizeof(r->content_type), v, vlen);
	else if (header_is(line, len, "Location", &v, &vlen))
		copy_header_value(r->location, sizeof(r->location), v, vlen);
	else if (header_is(line, len, "atl-request-id", &v, &vlen) ||
			 (header_is(line, len, "atl-traceid", &v, &vlen) && r->request_id[0] == '\0'))
		copy_header_value(r->request_id, sizeof(r->request_id), v, vlen);
	return len;
}

/* libcurl tells us which sockets to wait on, and for what. */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	CfdwConnection *c = (CfdwConnection *) userp;
	int			i;

	for (i = 0; i < c->nsocks; i++)
		if (c->socks[i].fd == s)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < c->nsocks)
			c->socks[i] = c->socks[--c->nsocks];
		return 0;
	}
	if (i == c->nsocks)
	{
		if (c->nsocks == CFDW_MAX_SOCKETS)
		{
			c->socks_overflow = true;
			return -1;			/* libcurl fails the transfer */
		}
		c->nsocks++;
	}
	c->socks[i].fd = s;
	c->socks[i].what = what;
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	CfdwConnection *c = (CfdwConnection *) userp;

	c->timer_ms = timeout_ms;
	c->timer_set_at = GetCurrentTimestamp();
	return 0;
}

/* ---------------------------------------------------------------------
 * The connection cache
 * ---------------------------------------------------------------------
 */

static void
close_connection(CfdwConnection *c)
{
	if (c->multi && c->easy)
		curl_multi_remove_handle(c->multi, c->easy);
	if (c->easy)
		curl_easy_cleanup(c->easy);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	if (c->headers)
		curl_slist_free_all(c->headers);
	if (c->fd_reserved)
		ReleaseExternalFD();
	free(c->buf);
	c->easy = NULL;
	c->multi = NULL;
	c->headers = NULL;
	c->fd_reserved = false;
	c->buf = NULL;
	c->len = c->cap = 0;
	c->nsocks = 0;
	c->config_id = 0;
	elog(DEBUG3, "confluence_fdw: closed connection for user mapping %u", c->umid);
}

/*
 * Server or user mapping options changed: connections built from the old
 * ones must not be used again.  Nothing is ever mid-transfer here (we do not
 * touch the catalogs during a transfer), so they can be closed at once.
 */
static void
inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	CfdwConnection *c;

	hash_seq_init(&scan, ConnectionHash);
	while ((c = hash_seq_search(&scan)) != NULL)
	{
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && c->server_hash == hashvalue) ||
			(cacheid == USERMAPPINGOID && c->mapping_hash == hashvalue))
			c->invalidated = true;
	}
}

void
cfdw_http_init(void)
{
	curl_version_info_data *info;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not initialize libcurl")));

	/*
	 * With the blocking resolver a DNS lookup could be neither timed out nor
	 * cancelled (and would need signals, which belong to PostgreSQL).
	 */
	info = curl_version_info(CURLVERSION_NOW);
	if (!(info->features & CURL_VERSION_ASYNCHDNS))
		ereport(WARNING,
				(errmsg("confluence_fdw: libcurl %s has no asynchronous resolver; host name lookups cannot be cancelled",
						info->version)));
}

static void
init_hash(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CfdwConnection);
	ConnectionHash = hash_create("confluence_fdw connections", 8, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, inval_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, inval_callback, (Datum) 0);
}

/*
 * cfdw_get_connection
 *		The cached connection of the table's user mapping, opened if needed.
 */
CfdwConnection *
cfdw_get_connection(const CfdwTable *t)
{
	CfdwConnection *c;
	bool		found;

	if (ConnectionHash == NULL)
		init_hash();

	c = hash_search(ConnectionHash, &t->umid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) c) + sizeof(Oid), 0, sizeof(CfdwConnection) - sizeof(Oid));
		c->timer_ms = -1;
	}
	if (c->invalidated && c->easy)
		close_connection(c);
	c->invalidated = false;

	if (c->easy == NULL)
	{
		/* A connection is a file descriptor PostgreSQL should know about. */
		if (!AcquireExternalFD())
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not open a connection to Confluence: too many open files")));
		c->fd_reserved = true;
		c->easy = curl_easy_init();
		c->multi = curl_multi_init();
		if (c->easy == NULL || c->multi == NULL)
		{
			close_connection(c);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("out of memory while opening a connection to Confluence")));
		}
		curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
		curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
		c->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
											   ObjectIdGetDatum(t->serverid));
		c->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
												ObjectIdGetDatum(t->umid));
		elog(DEBUG3, "confluence_fdw: new connection for user mapping %u", t->umid);
	}
	return c;
}

/*
 * cfdw_release_connection
 *		The statement is done with the connection; close it unless the server
 *		says to keep it.
 */
void
cfdw_release_connection(CfdwConnection *conn, const CfdwTable *t)
{
	if (conn && conn->easy && !t->keep_connections)
		close_connection(conn);
}

/*
 * cfdw_disconnect_all
 *		Close every cached connection; returns how many were open.
 */
int
cfdw_disconnect_all(void)
{
	HASH_SEQ_STATUS scan;
	CfdwConnection *c;
	int			n = 0;

	if (ConnectionHash == NULL)
		return 0;
	hash_seq_init(&scan, ConnectionHash);
	while ((c = hash_seq_search(&scan)) != NULL)
	{
		if (c->easy)
		{
			close_connection(c);
			n++;
		}
	}
	return n;
}

/* ---------------------------------------------------------------------
 * One transfer
 * ---------------------------------------------------------------------
 */

#define SETOPT(c, opt, val) \
	do { \
		if (curl_easy_setopt((c)->easy, (opt), (val)) != CURLE_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_FDW_ERROR), \
					 errmsg("could not set libcurl option %s", #opt))); \
	} while (0)

/* Does the headers option set this header (case-insensitively)? */
static bool
has_header(List *headers, const char *name)
{
	ListCell   *lc;
	size_t		len = strlen(name);

	foreach(lc, headers)
	{
		const char *h = strVal(lfirst(lc));

		if (pg_strncasecmp(h, name, len) == 0 && h[len] == ':')
			return true;
	}
	return false;
}

/*
 * Set everything that is the same for every request of one table: done once
 * per statement (and again only when another table used the handle in
 * between), so a row sets just its URL and body.
 */
static void
configure(CfdwConnection *c, const CfdwTable *t, const CfdwRequest *req)
{
	struct curl_slist *h = NULL;
	char		line[256];
	ListCell   *lc;

	curl_easy_reset(c->easy);
	if (c->headers)
	{
		curl_slist_free_all(c->headers);
		c->headers = NULL;
	}
	c->config_id = 0;

	/*
	 * Headers first: the list is ours (malloc) until the next configure or
	 * close, so keep it in the connection before anything can fail.
	 */
#define APPEND_HEADER(str) \
	do { \
		struct curl_slist *n_ = curl_slist_append(h, (str)); \
		if (n_ == NULL) \
		{ \
			curl_slist_free_all(h); \
			ereport(ERROR, (errcode(ERRCODE_FDW_OUT_OF_MEMORY), errmsg("out of memory"))); \
		} \
		h = n_; \
	} while (0)
	if (req->method != CFDW_GET && !has_header(t->headers, "Content-Type"))
	{
		snprintf(line, sizeof(line), "Content-Type: %s",
				 req->content_type ? req->content_type : "application/json");
		APPEND_HEADER(line);
	}
	if (!has_header(t->headers, "Accept"))
		APPEND_HEADER("Accept: application/json");
	/* a 100-continue round trip costs a wait for every large body */
	APPEND_HEADER("Expect:");
	foreach(lc, t->headers)
		APPEND_HEADER(strVal(lfirst(lc)));
#undef APPEND_HEADER
	c->headers = h;

	/* PostgreSQL owns SIGALRM and SIGPIPE; libcurl must not touch signals. */
	SETOPT(c, CURLOPT_NOSIGNAL, 1L);
#if CURL_AT_LEAST_VERSION(7, 85, 0)
	SETOPT(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(c, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* Redirects are never followed: they would carry the credentials away. */
	SETOPT(c, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(c, CURLOPT_TIMEOUT_MS, (long) t->timeout_ms);
	SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS, (long) t->connect_timeout_ms);
	SETOPT(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->max_response_bytes);
	SETOPT(c, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(c, CURLOPT_USERAGENT, CFDW_USER_AGENT);
	SETOPT(c, CURLOPT_HTTPHEADER, c->headers);
	SETOPT(c, CURLOPT_ERRORBUFFER, c->errbuf);
	SETOPT(c, CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(c, CURLOPT_WRITEDATA, c);
	SETOPT(c, CURLOPT_HEADERFUNCTION, header_cb);
	SETOPT(c, CURLOPT_HEADERDATA, c);
	SETOPT(c, CURLOPT_READFUNCTION, read_cb);
	SETOPT(c, CURLOPT_READDATA, c);
	SETOPT(c, CURLOPT_SEEKFUNCTION, seek_cb);
	SETOPT(c, CURLOPT_SEEKDATA, c);

	/* libcurl copies these strings; they never appear in a message. */
	if (t->bearer_token)
	{
		SETOPT(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
		SETOPT(c, CURLOPT_XOAUTH2_BEARER, t->bearer_token);
	}
	else
	{
		SETOPT(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SETOPT(c, CURLOPT_USERNAME, t->username);
		SETOPT(c, CURLOPT_PASSWORD, t->api_token);
	}

	switch (req->method)
	{
		case CFDW_POST:
			SETOPT(c, CURLOPT_POST, 1L);
			break;
		case CFDW_GET:
			SETOPT(c, CURLOPT_HTTPGET, 1L);
			break;
		case CFDW_PUT:
		case CFDW_PATCH:
		case CFDW_DELETE:
			/* a body from the read callback, sent with another verb */
			SETOPT(c, CURLOPT_POST, 1L);
			SETOPT(c, CURLOPT_CUSTOMREQUEST, cfdw_method_name(req->method));
			break;
	}
	c->limit = (size_t) t->max_response_bytes;
	c->config_id = t->config_id;
}

/* Milliseconds until libcurl's timer fires; -1 when it has none. */
static long
timer_remaining(CfdwConnection *c)
{
	long		secs;
	int			usecs;
	long		elapsed;

	if (c->timer_ms < 0)
		return -1;
	TimestampDifference(c->timer_set_at, GetCurrentTimestamp(), &secs, &usecs);
	elapsed = secs * 1000 + usecs / 1000;
	return Max(0, c->timer_ms - elapsed);
}

/*
 * Run the transfer added to the multi handle until libcurl says it is done,
 * waiting on its sockets and the latch.  Returns libcurl's result.  May raise
 * an error only through CHECK_FOR_INTERRUPTS (or out of memory); the caller
 * cleans up in PG_CATCH.
 */
static CURLcode
drive_transfer(CfdwConnection *c)
{
	int			running = 0;
	CURLMsg    *msg;
	int			pending;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);

	while (running > 0)
	{
		WaitEvent	occurred[CFDW_MAX_SOCKETS + 2];
		int			nready = 0;
		long		timeout = timer_remaining(c);
		int			i;

		if (c->socks_overflow)
			break;

		/* Without a timer, wake once a second anyway as a safety net. */
		if (timeout < 0 || timeout > 1000)
			timeout = 1000;

		if (timeout > 0)
		{
			WaitEventSet *set = CreateWaitEventSet(CurrentMemoryContext,
												   c->nsocks + 2);

			AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
			AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
			for (i = 0; i < c->nsocks; i++)
			{
				uint32		events = 0;

				if (c->socks[i].what & CURL_POLL_IN)
					events |= WL_SOCKET_READABLE;
				if (c->socks[i].what & CURL_POLL_OUT)
					events |= WL_SOCKET_WRITEABLE;
				AddWaitEventToSet(set, events, c->socks[i].fd, NULL, NULL);
			}
			nready = WaitEventSetWait(set, timeout, occurred, lengthof(occurred),
									  PG_WAIT_EXTENSION);
			FreeWaitEventSet(set);
		}

		for (i = 0; i < nready; i++)
		{
			if (occurred[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
		}
		for (i = 0; i < nready; i++)
		{
			int			mask = 0;

			if (!(occurred[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
				continue;
			if (occurred[i].events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (occurred[i].events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			curl_multi_socket_action(c->multi, occurred[i].fd, mask, &running);
		}
		if (running > 0 && timer_remaining(c) == 0)
		{
			c->timer_ms = -1;
			curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
	}

	while ((msg = curl_multi_info_read(c->multi, &pending)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == c->easy)
			return msg->data.result;
	}
	return c->socks_overflow ? CURLE_OUT_OF_MEMORY : CURLE_RECV_ERROR;
}

/*
 * cfdw_http_perform
 *		Send one request and wait for the answer.  Transport failures are
 *		reported in resp, not raised; only an interrupt raises an error.  The
 *		response body stays valid until the next request on this connection.
 */
void
cfdw_http_perform(CfdwConnection *c, const CfdwTable *t,
				  const CfdwRequest *req, CfdwResponse *resp)
{
	CURLcode	rc;
	curl_off_t	uploaded = 0;
	curl_off_t	total_time = 0;

	/* closed after an earlier failure: reopen (the entry stays put) */
	if (c->easy == NULL)
		(void) cfdw_get_connection(t);
	if (c->config_id != t->config_id)
		configure(c, t, req);

	memset(resp, 0, sizeof(CfdwResponse));
	c->resp = resp;
	c->len = 0;
	if (c->buf)
		c->buf[0] = '\0';
	c->too_large = c->out_of_memory = c->socks_overflow = false;
	c->errbuf[0] = '\0';
	c->timer_ms = -1;

	SETOPT(c, CURLOPT_URL, req->url);
	if (req->method != CFDW_GET)
	{
		c->body = req->body ? req->body : "";
		c->body_len = req->body ? req->body_len : 0;
		c->body_pos = 0;
		/* PUT and DELETE are idempotent: sending them twice is harmless */
		c->body_rewindable = (req->method == CFDW_PUT || req->method == CFDW_DELETE);
		SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->body_len);
	}

	if (curl_multi_add_handle(c->multi, c->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not start a transfer to Confluence")));

	PG_TRY();
	{
		rc = drive_transfer(c);
	}
	PG_CATCH();
	{
		/* Interrupted mid-transfer: the connection's state is unknown. */
		close_connection(c);
		PG_RE_THROW();
	}
	PG_END_TRY();

	curl_multi_remove_handle(c->multi, c->easy);

	resp->curl_code = (int) rc;
	resp->too_large = c->too_large;
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_easy_getinfo(c->easy, CURLINFO_SIZE_UPLOAD_T, &uploaded);
	curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &total_time);
	resp->elapsed_ms = total_time / 1000.0;

	/*
	 * Whether the request may have reached Confluence decides whether it can
	 * be retried: only failures to connect or resolve say for sure it did not.
	 */
	resp->sent_any = !(rc == CURLE_COULDNT_CONNECT ||
					   rc == CURLE_COULDNT_RESOLVE_HOST ||
					   rc == CURLE_COULDNT_RESOLVE_PROXY);
	c->body = NULL;
	if (rc == CURLE_OK && c->too_large)
		resp->curl_code = CURLE_FILESIZE_EXCEEDED;
	if (c->out_of_memory)
		resp->curl_code = CURLE_OUT_OF_MEMORY;
	if (rc == CURLE_FILESIZE_EXCEEDED || rc == CURLE_WRITE_ERROR)
		resp->too_large = resp->too_large || rc == CURLE_FILESIZE_EXCEEDED;

	if (resp->curl_code != CURLE_OK)
	{
		strlcpy(resp->curl_error,
				c->errbuf[0] ? c->errbuf : curl_easy_strerror(resp->curl_code),
				sizeof(resp->curl_error));
		close_connection(c);
		resp->body = "";
		resp->body_len = 0;
	}
	else
	{
		resp->body = c->buf ? c->buf : "";
		resp->body_len = c->len;
	}
	c->resp = NULL;
}

/* ---------------------------------------------------------------------
 * Retries
 * ---------------------------------------------------------------------
 */

static bool
is_retryable(const CfdwRequest *req, const CfdwResponse *resp)
{
	bool		idempotent = req->method == CFDW_PUT || req->method == CFDW_DELETE ||
		req->method == CFDW_GET;

	if (resp->curl_code != CURLE_OK)
		return !resp->sent_any;
	if (resp->status == 429)
		return true;
	if (resp->status == 503 && resp->retry_after[0] != '\0')
		return true;
	if (idempotent && (resp->status == 502 || resp->status == 503 || resp->status == 504))
		return true;
	return false;
}

/* Sleep on the latch, so that cancel and statement_timeout interrupt it. */
static void
interruptible_sleep(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		secs;
		int			usecs;
		long		left;

		TimestampDifference(GetCurrentTimestamp(), end, &secs, &usecs);
		left = secs * 1000 + usecs / 1000;
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Milliseconds left before statement_timeout fires; -1 when it is off. */
static long
statement_ms_left(void)
{
	TimestampTz deadline;
	long		secs;
	int			usecs;

	if (StatementTimeout <= 0)
		return -1;
	deadline = TimestampTzPlusMilliseconds(GetCurrentStatementStartTimestamp(),
										   StatementTimeout);
	TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
	return secs * 1000 + usecs / 1000;
}

/*
 * cfdw_http_send
 *		Send a request, retrying only what was certainly not processed: 429,
 *		503 with Retry-After, a failure to connect or resolve, and for PUT and
 *		DELETE also 502/503/504.  Waits max(Retry-After, backoff) with jitter,
 *		never more than max_retry_wait_ms in all, nor past statement_timeout.
 */
void
cfdw_http_send(CfdwConnection *conn, const CfdwTable *t,
			   const CfdwRequest *req, CfdwResponse *resp)
{
	int			attempt;
	long		waited = 0;

	for (attempt = 0;; attempt++)
	{
		long		backoff;
		long		wait;
		long		asked;
		long		left;

		cfdw_http_perform(conn, t, req, resp);
		if (attempt >= t->max_retries || !is_retryable(req, resp))
			return;

		/* 500 ms, doubling, up to 30 s; times 0.7 to 1.3 */
		backoff = Min(500L << Min(attempt, 6), 30000L);
		backoff = (long) (backoff * (0.7 + 0.6 * pg_prng_double(&pg_global_prng_state)));
		asked = cfdw_retry_after_ms(resp->retry_after, time(NULL));
		wait = Max(backoff, asked);

		left = statement_ms_left();
		if (waited + wait > t->max_retry_wait_ms || (left >= 0 && wait >= left))
		{
			ereport(LOG,
					(errmsg("confluence_fdw: not retrying %s %s after %s: waiting %ld ms would exceed %s",
							cfdw_method_name(req->method), req->path_for_messages,
							resp->curl_code != CURLE_OK ? "a connection failure" :
							psprintf("HTTP %ld", resp->status), wait,
							(left >= 0 && wait >= left) ? "statement_timeout" : "max_retry_wait_ms")));
			return;
		}
		ereport(LOG,
				(errmsg("confluence_fdw: retrying %s %s after %s in %ld ms (retry %d of %d)",
						cfdw_method_name(req->method), req->path_for_messages,
						resp->curl_code != CURLE_OK ? "a connection failure" :
						psprintf("HTTP %ld", resp->status), wait,
						attempt + 1, t->max_retries)));
		interruptible_sleep(wait);
		waited += wait;
	}
}

/* A fresh configuration id for a resolved table. */
uint64
cfdw_next_config_id(void)
{
	return next_config_id++;
}
