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
 * A connection (one per user mapping) is a multi handle, whose pool keeps
 * the TCP/TLS connections alive between statements, and up to
 * CFDW_MAX_CONCURRENCY transfers, each an easy handle with its own buffers.
 * Slot 0 serves the one-at-a-time path (RETURNING); slots 1.. serve
 * pipelines, which keep up to max_concurrency requests in flight for rows
 * that need no answer.  Retries are scheduled per transfer, so one
 * rate-limited request does not stall the others.
 *
 * Ownership: libcurl allocates with malloc.  A CfdwConnection lives in a
 * backend-lifetime hash table and owns its handles, header lists and
 * response buffers; they are freed only by close_connection() and
 * close_transfer().  No libcurl callback raises an error or allocates with
 * palloc: they record what happened and the caller reports it afterwards.
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* curl_easy_header (7.84), CURLOPT_PROTOCOLS_STR (7.85) */
#if !CURL_AT_LEAST_VERSION(7, 84, 0)
#error "confluence_fdw needs libcurl 7.84 or later"
#endif

/* Sockets: one connection per transfer, plus resolver threads' pipes. */
#define CFDW_MAX_SOCKETS (2 * CFDW_MAX_CONCURRENCY + 8)

/* Without a timer, wake at least this often anyway, as a safety net. */
#define MAX_WAIT_MS 1000

typedef enum CfdwXferState
{
	XFER_IDLE,					/* free for a new request */
	XFER_RUNNING,				/* added to the multi handle */
	XFER_WAITING,				/* waiting to be retried at retry_at */
	XFER_DONE,					/* finished; result not yet collected */
	XFER_FAILED					/* a pipeline's failure, kept for its owner */
} CfdwXferState;

typedef struct CfdwSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
	int			pos;			/* its position in the wait set */
	bool		changed;		/* what differs from the wait set's */
	bool		parked;			/* idle in libcurl's pool, not watched by it */
} CfdwSocket;

/*
 * One request slot: an easy handle (which libcurl gives a connection from
 * the multi handle's pool) with the request being sent and its answer.
 */
typedef struct CfdwTransfer
{
	struct CfdwConnection *conn;
	CURL	   *easy;			/* NULL until first used */
	bool		fd_reserved;	/* counted with AcquireExternalFD */
	uint64		config_id;		/* CfdwTable whose options are set */
	struct curl_slist *headers; /* request headers of that configuration */
	char		errbuf[CURL_ERROR_SIZE];
	CfdwXferState state;
	uint64		owner;			/* config_id of the statement using it */

	/* the request; its strings belong to the caller until it is collected */
	CfdwRequest req;
	size_t		body_pos;		/* bytes handed to libcurl so far */
	int64		row_no;			/* for messages */
	int			attempt;		/* retries so far */
	long		waited_ms;		/* time spent waiting to retry */
	TimestampTz retry_at;

	/* the answer, filled by the callbacks */
	CfdwResponse resp;
	char	   *buf;			/* response body, NUL-terminated */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* max_response_bytes */
	bool		too_large;
	bool		out_of_memory;
	bool		restrict_egress;	/* the table's server is restricted */
	bool		egress_refused; /* opensocket_cb refused an address */
	char		refused_address[64];
} CfdwTransfer;

struct CfdwConnection
{
	Oid			umid;			/* hash key: the user mapping */
	CURLM	   *multi;			/* NULL when closed; owns the pool */
	uint32		server_hash;	/* to match invalidation messages */
	uint32		mapping_hash;
	bool		invalidated;	/* options changed: reconnect before use */
	Oid			serverid;		/* for messages */
	int			nusers;			/* statements using it (get minus release) */
	bool		close_when_idle;	/* a close waits for the last user */
	int			pool_size;		/* CURLMOPT_MAX_HOST_CONNECTIONS set */
	CfdwTransfer xfers[CFDW_MAX_CONCURRENCY + 1];

	/* filled by the socket and timer callbacks */
	CfdwSocket	socks[CFDW_MAX_SOCKETS];
	int			nsocks;
	curl_socket_t owned[CFDW_MAX_SOCKETS];	/* opened by opensocket_cb */
	int			nowned;
	bool		socks_overflow;

	/*
	 * The latch and the sockets, kept between waits: building an epoll set
	 * for every wait costs several system calls a round.  It is rebuilt
	 * only when a socket is opened or closed.  libcurl stops watching a
	 * kept-alive connection between requests (CURL_POLL_REMOVE) and starts
	 * again with the next one; such a socket stays in the set, "parked",
	 * watched for the peer closing it, and is modified in place.
	 */
	WaitEventSet *wes;
	bool		wes_stale;
	long		timer_ms;		/* -1: no timer */
	TimestampTz timer_set_at;
};

static HTAB *ConnectionHash = NULL;

/* Every libcurl call's result is checked; these cannot fail but for a bug. */
#define MULTI_SETOPT(m, opt, val) \
	do { \
		CURLMcode mrc_ = curl_multi_setopt((m), (opt), (val)); \
		if (mrc_ != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_FDW_ERROR), \
					 errmsg("could not set libcurl option %s: %s", #opt, \
							curl_multi_strerror(mrc_)))); \
	} while (0)
static uint64 next_config_id = 1;

/* ---------------------------------------------------------------------
 * libcurl callbacks.  None of them may raise an error.
 * ---------------------------------------------------------------------
 */

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	CfdwTransfer *x = (CfdwTransfer *) userdata;
	size_t		n = size * nmemb;

	/* Check the limit before growing, so an oversized body never lands. */
	if (x->len + n > x->limit)
	{
		x->too_large = true;
		return 0;
	}
	if (x->len + n + 1 > x->cap)
	{
		size_t		newcap = Max(Max(x->cap * 2, x->len + n + 1), 8192);
		char	   *p = realloc(x->buf, newcap);

		if (p == NULL)
		{
			x->out_of_memory = true;
			return 0;
		}
		x->buf = p;
		x->cap = newcap;
	}
	memcpy(x->buf + x->len, ptr, n);
	x->len += n;
	x->buf[x->len] = '\0';
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
	CfdwTransfer *x = (CfdwTransfer *) userdata;
	size_t		n = Min(size * nitems, x->req.body_len - x->body_pos);

	memcpy(buffer, x->req.body + x->body_pos, n);
	x->body_pos += n;
	return n;
}

static int
seek_cb(void *userdata, curl_off_t offset, int origin)
{
	CfdwTransfer *x = (CfdwTransfer *) userdata;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > x->req.body_len)
		return CURL_SEEKFUNC_FAIL;
	/*
	 * Never let libcurl send a body a second time on its own: even a PUT
	 * that may have been processed is reported, not resent behind the
	 * user's back (idempotent methods are retried only on a 502/503/504
	 * answer, by schedule_retry, where the policy is visible and logged).
	 */
	if (x->body_pos > 0)
		return CURL_SEEKFUNC_CANTSEEK;
	x->body_pos = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

/*
 * Let libcurl act on a socket (or on its timer, CURL_SOCKET_TIMEOUT).  A
 * failure means the multi handle is in a state we cannot reason about:
 * the caller's error path closes the connection.
 */
static void
socket_action(CfdwConnection *c, curl_socket_t s, int mask)
{
	int			running;
	CURLMcode	rc = curl_multi_socket_action(c->multi, s, mask, &running);

	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("libcurl failed while driving transfers to Confluence: %s",
						curl_multi_strerror(rc))));
}

/* The entry for socket s, or -1. */
static int
find_socket(CfdwConnection *c, curl_socket_t s)
{
	int			i;

	for (i = 0; i < c->nsocks; i++)
		if (c->socks[i].fd == s)
			return i;
	return -1;
}

/* Forget a socket: it is closed, or no longer of interest. */
static void
forget_socket(CfdwConnection *c, curl_socket_t s)
{
	int			i = find_socket(c, s);

	if (i >= 0)
	{
		c->socks[i] = c->socks[--c->nsocks];
		c->wes_stale = true;
	}
}

static bool
is_owned(CfdwConnection *c, curl_socket_t s)
{
	int			i;

	for (i = 0; i < c->nowned; i++)
		if (c->owned[i] == s)
			return true;
	return false;
}

/*
 * libcurl tells us which sockets to wait on, and for what.
 *
 * Only a socket we opened (opensocket_cb) is known to be closed through
 * closesocket_cb, so only such a socket may stay in the wait set while
 * libcurl is not watching it ("parked"), and only its changes are applied
 * to the wait set in place.  libcurl also hands us sockets of its own, the
 * threaded resolver's wake-up pair, and closes those behind our back: the
 * kernel then drops them from the epoll set, and the next socket given the
 * same number would be taken for the old one and never watched.  So any
 * change to such a socket rebuilds the set, which costs a few system calls
 * once per host name lookup.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	CfdwConnection *c = (CfdwConnection *) userp;
	int			i = find_socket(c, s);
	bool		owned = is_owned(c, s);

	if (what == CURL_POLL_REMOVE)
	{
		if (i < 0)
			return 0;
		if (!owned)
			forget_socket(c, s);
		else if (!c->socks[i].parked)
		{
			/* watched for the peer closing it, until libcurl closes it */
			c->socks[i].parked = true;
			if (c->socks[i].what != CURL_POLL_IN)
				c->socks[i].changed = true;
			c->socks[i].what = CURL_POLL_IN;
		}
		return 0;
	}
	if (i < 0)
	{
		if (c->nsocks == CFDW_MAX_SOCKETS)
		{
			c->socks_overflow = true;
			return -1;			/* libcurl fails the transfer */
		}
		i = c->nsocks++;
		c->socks[i].fd = s;
		c->socks[i].what = 0;
		c->wes_stale = true;
	}
	c->socks[i].parked = false;
	if (c->socks[i].what != what)
	{
		c->socks[i].changed = true;
		if (!owned)
			c->wes_stale = true;
	}
	c->socks[i].what = what;
	return 0;
}

/*
 * libcurl opens a connection's socket.  The number the kernel gives it is
 * free, so whatever socket we still knew under that number is gone: its
 * entry and the wait set's registration are stale.
 */
/* An address as text, for messages. */
static void
describe_address(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = sa->sa_family == AF_INET6
		? (const void *) &((const struct sockaddr_in6 *) sa)->sin6_addr
		: (const void *) &((const struct sockaddr_in *) sa)->sin_addr;

	if (inet_ntop(sa->sa_family, a, buf, len) == NULL)
		strlcpy(buf, "?", len);
}

static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	CfdwTransfer *x = (CfdwTransfer *) clientp;
	CfdwConnection *c = x->conn;
	curl_socket_t s;

	/*
	 * Egress control: a server of a role that is not a superuser never
	 * connects inwards, whatever its name resolves to.  libcurl tries the
	 * name's other addresses, then fails with "could not connect".
	 */
	if (x->restrict_egress && cfdw_address_internal(&addr->addr))
	{
		x->egress_refused = true;
		describe_address(&addr->addr, x->refused_address, sizeof(x->refused_address));
		return CURL_SOCKET_BAD;
	}
	if (c->nowned == CFDW_MAX_SOCKETS)
		return CURL_SOCKET_BAD;
	/* CLOEXEC: a program the backend starts (COPY ... PROGRAM) must not hold it */
	s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (s == CURL_SOCKET_BAD)
		return CURL_SOCKET_BAD;
	forget_socket(c, s);
	c->owned[c->nowned++] = s;
	return s;
}

/*
 * libcurl closes a socket it opened through opensocket_cb: it must leave
 * the wait set first, or a new socket given the same number would be
 * mistaken for it.
 */
static int
closesocket_cb(void *clientp, curl_socket_t item)
{
	CfdwConnection *c = (CfdwConnection *) clientp;
	int			i;

	forget_socket(c, item);
	for (i = 0; i < c->nowned; i++)
	{
		if (c->owned[i] == item)
		{
			c->owned[i] = c->owned[--c->nowned];
			break;
		}
	}
	return close(item);
}

/*
 * An idle connection whose peer has closed it: make that plain to libcurl.
 *
 * libcurl checks a pooled connection before reusing it, but 7.88 takes a
 * TLS connection with unread input for alive, and a server closing an idle
 * connection sends close_notify before its FIN: the next request would go
 * out on a dead connection ("Broken pipe"), and once every pooled
 * connection is dead, libcurl's own retries run out.  When the peer has shut
 * its side (POLLRDHUP), nothing on the connection can be used any more, so
 * read what is left; libcurl's check then sees the end of the stream and
 * closes the connection.  A socket with input but no shutdown (HTTP/2
 * frames such as PING) is left to libcurl.
 */
static void
retire_if_closed(curl_socket_t s)
{
	struct pollfd pfd;
	char		buf[4096];
	int			i;

	pfd.fd = s;
	pfd.events = POLLIN | POLLRDHUP;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return;
	/* bounded: a peer that has shut its side sends at most its last records */
	for (i = 0; i < 64; i++)
		if (recv(s, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
}

/*
 * Before a transfer picks a pooled connection: retire the idle ones whose
 * peer has closed them since (the keep-alive timeout of the far side
 * passed while no statement was waiting on the sockets).
 */
static void
sweep_parked(CfdwConnection *c)
{
	struct pollfd pfd[CFDW_MAX_SOCKETS];
	int			n = 0;
	int			i;

	for (i = 0; i < c->nsocks; i++)
	{
		if (!c->socks[i].parked)
			continue;
		pfd[n].fd = c->socks[i].fd;
		pfd[n].events = POLLIN | POLLRDHUP;
		pfd[n].revents = 0;
		n++;
	}
	/* one system call for all of them, and none when nothing is idle */
	if (n == 0 || poll(pfd, n, 0) <= 0)
		return;
	for (i = 0; i < n; i++)
	{
		if (!(pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		retire_if_closed(pfd[i].fd);
		forget_socket(c, pfd[i].fd);
	}
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

/* Free one slot's handle and buffers; its state is forgotten. */
static void
close_transfer(CfdwTransfer *x)
{
	if (x->easy)
	{
		/* on a cleanup path: report, never raise */
		if (x->state == XFER_RUNNING && x->conn->multi &&
			curl_multi_remove_handle(x->conn->multi, x->easy) != CURLM_OK)
			elog(LOG, "confluence_fdw: libcurl could not detach a transfer being closed");
		curl_easy_cleanup(x->easy);
	}
	if (x->headers)
		curl_slist_free_all(x->headers);
	if (x->fd_reserved)
		ReleaseExternalFD();
	free(x->buf);
	x->easy = NULL;
	x->headers = NULL;
	x->fd_reserved = false;
	x->buf = NULL;
	x->len = x->cap = 0;
	x->config_id = 0;
	x->state = XFER_IDLE;
	x->owner = 0;
}

static void
close_connection(CfdwConnection *c)
{
	int			i;

	for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
		close_transfer(&c->xfers[i]);
	if (c->multi && curl_multi_cleanup(c->multi) != CURLM_OK)
		elog(LOG, "confluence_fdw: libcurl could not close the connections of user mapping %u",
			 c->umid);
	if (c->wes)
		FreeWaitEventSet(c->wes);
	c->wes = NULL;
	c->multi = NULL;
	c->nsocks = 0;
	c->nowned = 0;
	c->pool_size = 0;
	c->timer_ms = -1;
	elog(DEBUG3, "confluence_fdw: closed connection for user mapping %u", c->umid);
}

/*
 * Server or user mapping options changed: connections built from the old
 * ones must not be used again.  Only mark them here; they are closed by the
 * next cfdw_get_connection, outside any transfer.
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
 * The options of a new multi handle; returns the first failure.
 */
static CURLMcode
setup_multi(CURLM *m, CfdwConnection *c)
{
	CURLMcode	rc;

	if ((rc = curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, socket_cb)) != CURLM_OK ||
		(rc = curl_multi_setopt(m, CURLMOPT_SOCKETDATA, c)) != CURLM_OK ||
		(rc = curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb)) != CURLM_OK ||
		(rc = curl_multi_setopt(m, CURLMOPT_TIMERDATA, c)) != CURLM_OK)
		return rc;

	/*
	 * One request at a time per connection, over HTTP/2 as over HTTP/1.1;
	 * concurrency comes from max_concurrency connections.  Multiplexed
	 * streams cannot be made safe with libcurl 7.88: when a server ends a
	 * connection with GOAWAY (nginx does after keepalive_requests, load
	 * balancers at their connection age), the streams above its last id
	 * were refused unprocessed, and libcurl resends their bodies on a new
	 * connection exactly as it does for a stream lost with a dead
	 * connection, which may have been processed.  It does not tell the two
	 * apart, so we would have to refuse both and fail rows that never
	 * reached the server.  With one stream per connection, a GOAWAY comes
	 * only with an answer or on an idle connection.
	 */
	if ((rc = curl_multi_setopt(m, CURLMOPT_PIPELINING, (long) CURLPIPE_NOTHING)) != CURLM_OK)
		return rc;

	/*
	 * libcurl sizes its pool of idle connections by the transfers attached
	 * at the moment (four each); ours are detached as soon as they finish,
	 * so it would close connections the next rows need.
	 */
	return curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long) (CFDW_MAX_CONCURRENCY + 1));
}

/* Create the multi handle of a closed connection. */
static void
open_multi(CfdwConnection *c, const CfdwTable *t)
{
	CURLM	   *m = curl_multi_init();
	CURLMcode	mrc;

	if (m == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("out of memory while opening a connection to Confluence")));
	mrc = setup_multi(m, c);
	if (mrc != CURLM_OK)
	{
		curl_multi_cleanup(m);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not set up libcurl: %s", curl_multi_strerror(mrc))));
	}
	c->multi = m;
	c->serverid = t->serverid;
	c->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
										   ObjectIdGetDatum(t->serverid));
	c->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
											ObjectIdGetDatum(t->umid));
	elog(DEBUG3, "confluence_fdw: new connection for user mapping %u", t->umid);
}

/*
 * Close a connection unless a running statement uses it; then it is closed
 * when the last of them releases it (postgres_fdw does the same with
 * invalidated connections).  A pool is never closed under its user: an
 * inner statement (a function called for each row of a pipelined INSERT)
 * would otherwise take the outer statement's requests in flight with it.
 */
static bool
close_unless_used(CfdwConnection *c)
{
	if (c->nusers > 0)
	{
		c->close_when_idle = true;
		return false;
	}
	close_connection(c);
	c->close_when_idle = false;
	return true;
}

/*
 * cfdw_get_connection
 *		The cached connection of the table's user mapping, opened if needed.
 *		Each call counts a user until cfdw_release_connection.
 */
CfdwConnection *
cfdw_get_connection(const CfdwTable *t)
{
	CfdwConnection *c;
	bool		found;
	int			i;

	if (ConnectionHash == NULL)
		init_hash();

	c = hash_search(ConnectionHash, &t->umid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) c) + sizeof(Oid), 0, sizeof(CfdwConnection) - sizeof(Oid));
		for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
			c->xfers[i].conn = c;
		c->timer_ms = -1;
	}
	/* options changed: reconnect, or as soon as the pool is idle */
	if (c->invalidated && c->multi)
		(void) close_unless_used(c);
	c->invalidated = false;
	if (c->multi == NULL)
		open_multi(c, t);
	c->nusers++;
	return c;
}

/* Stop the transfers a statement still has on the connection. */
static void
abort_transfers(CfdwConnection *c, uint64 owner)
{
	int			i;

	for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
		if (c->xfers[i].owner == owner && c->xfers[i].state != XFER_IDLE)
			close_transfer(&c->xfers[i]);
}

/*
 * cfdw_release_connection
 *		The statement is done with the connection (or ended by an error):
 *		stop what it left running, and close the connection when its last
 *		user is gone and the server says not to keep it, or a close waited
 *		for that.  No network work: this runs on error paths too.
 */
void
cfdw_release_connection(CfdwConnection *conn, const CfdwTable *t)
{
	if (conn == NULL)
		return;
	if (conn->multi)
		abort_transfers(conn, t->config_id);
	if (conn->nusers > 0)
		conn->nusers--;
	if (!t->keep_connections)
		conn->close_when_idle = true;
	if (conn->nusers == 0 && conn->close_when_idle && conn->multi)
		(void) close_unless_used(conn);
}

/*
 * cfdw_disconnect_all
 *		Close every cached connection that no running statement uses, and
 *		the others as soon as they are released; returns how many were
 *		closed now.
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
		if (c->multi == NULL)
			continue;
		if (close_unless_used(c))
			n++;
		else
		{
			ForeignServer *server = GetForeignServerExtended(c->serverid, FSV_MISSING_OK);

			ereport(WARNING,
					(errmsg("cannot close the connection to server \"%s\" now: a running statement uses it",
							server ? server->servername : "?"),
					 errdetail("It is closed when that statement is done with it.")));
		}
	}
	return n;
}

/* ---------------------------------------------------------------------
 * Setting up a transfer
 * ---------------------------------------------------------------------
 */

#define SETOPT(x, opt, val) \
	do { \
		if (curl_easy_setopt((x)->easy, (opt), (val)) != CURLE_OK) \
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

		if (pg_strncasecmp(h, name, len) == 0 && (h[len] == ':' || h[len] == ';'))
			return true;
	}
	return false;
}

/*
 * Set everything that is the same for every request of one table: done once
 * per statement and slot (and again only when another table used the slot
 * in between), so a row sets just its URL and body.
 */
static void
configure(CfdwTransfer *x, const CfdwTable *t, const CfdwRequest *req)
{
	struct curl_slist *h = NULL;
	char		line[256];
	ListCell   *lc;

	if (x->easy == NULL)
	{
		/* A connection is a file descriptor PostgreSQL should know about. */
		if (!AcquireExternalFD())
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("could not open a connection to Confluence: too many open files")));
		x->fd_reserved = true;
		x->easy = curl_easy_init();
		if (x->easy == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
					 errmsg("out of memory while opening a connection to Confluence")));
	}
	else
		curl_easy_reset(x->easy);
	if (x->headers)
	{
		curl_slist_free_all(x->headers);
		x->headers = NULL;
	}
	x->config_id = 0;

	/*
	 * Headers first: the list is ours (malloc) until the next configure or
	 * close, so keep it in the slot before anything can fail.
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
	x->headers = h;

	/* PostgreSQL owns SIGALRM and SIGPIPE; libcurl must not touch signals. */
	SETOPT(x, CURLOPT_NOSIGNAL, 1L);
#if CURL_AT_LEAST_VERSION(7, 85, 0)
	SETOPT(x, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SETOPT(x, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* Redirects are never followed: they would carry the credentials away. */
	SETOPT(x, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(x, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(x, CURLOPT_SSL_VERIFYHOST, 2L);
	if (t->ca_file)
		SETOPT(x, CURLOPT_CAINFO, t->ca_file);
	/*
	 * The server's proxy, or none: "" also keeps libcurl from reading
	 * https_proxy and friends from the postmaster's environment, so the
	 * route never depends on how the server was started.  CONNECT tunnels
	 * https, so TLS is still verified with the site itself.
	 */
	SETOPT(x, CURLOPT_PROXY, t->proxy ? t->proxy : "");
	if (t->proxy && t->ca_file)
		SETOPT(x, CURLOPT_PROXY_CAINFO, t->ca_file);
	/* gzip, deflate, br, zstd: whatever this libcurl decodes */
	SETOPT(x, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(x, CURLOPT_TIMEOUT_MS, (long) t->timeout_ms);
	SETOPT(x, CURLOPT_CONNECTTIMEOUT_MS, (long) t->connect_timeout_ms);
	SETOPT(x, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->max_response_bytes);
	SETOPT(x, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(x, CURLOPT_USERAGENT, CFDW_USER_AGENT);
	SETOPT(x, CURLOPT_HTTPHEADER, x->headers);
	SETOPT(x, CURLOPT_ERRORBUFFER, x->errbuf);
	SETOPT(x, CURLOPT_PRIVATE, x);
	SETOPT(x, CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(x, CURLOPT_WRITEDATA, x);
	SETOPT(x, CURLOPT_READFUNCTION, read_cb);
	SETOPT(x, CURLOPT_READDATA, x);
	SETOPT(x, CURLOPT_SEEKFUNCTION, seek_cb);
	SETOPT(x, CURLOPT_SEEKDATA, x);
	SETOPT(x, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	SETOPT(x, CURLOPT_OPENSOCKETDATA, x);
	SETOPT(x, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
	SETOPT(x, CURLOPT_CLOSESOCKETDATA, x->conn);

	/* libcurl copies these strings; they never appear in a message. */
	if (t->bearer_token)
	{
		SETOPT(x, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
		SETOPT(x, CURLOPT_XOAUTH2_BEARER, t->bearer_token);
	}
	else
	{
		SETOPT(x, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SETOPT(x, CURLOPT_USERNAME, t->username);
		SETOPT(x, CURLOPT_PASSWORD, t->api_token);
	}

	switch (req->method)
	{
		case CFDW_POST:
			SETOPT(x, CURLOPT_POST, 1L);
			break;
		case CFDW_GET:
			SETOPT(x, CURLOPT_HTTPGET, 1L);
			break;
		case CFDW_PUT:
		case CFDW_PATCH:
		case CFDW_DELETE:
			/* a body from the read callback, sent with another verb */
			SETOPT(x, CURLOPT_POST, 1L);
			SETOPT(x, CURLOPT_CUSTOMREQUEST, cfdw_method_name(req->method));
			break;
	}
	x->limit = (size_t) t->max_response_bytes;
	x->restrict_egress = t->restricted;
	x->config_id = t->config_id;
}

/* Hand a configured slot's request to the multi handle. */
static void
add_transfer(CfdwTransfer *x)
{
	CfdwConnection *c = x->conn;

	memset(&x->resp, 0, sizeof(CfdwResponse));
	x->len = 0;
	if (x->buf)
		x->buf[0] = '\0';
	x->too_large = x->out_of_memory = x->egress_refused = false;
	x->errbuf[0] = '\0';
	x->body_pos = 0;

	SETOPT(x, CURLOPT_URL, x->req.url);
	if (x->req.method != CFDW_GET)
		SETOPT(x, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) x->req.body_len);
	if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not start a transfer to Confluence")));
	x->state = XFER_RUNNING;
}

/*
 * Start a request in a slot.  req's strings must stay valid until the
 * transfer's result has been collected.
 */
static void
start_transfer(CfdwTransfer *x, const CfdwTable *t, const CfdwRequest *req,
			   int64 row_no)
{
	if (x->config_id != t->config_id || x->easy == NULL)
		configure(x, t, req);
	sweep_parked(x->conn);
	x->req = *req;
	if (x->req.body == NULL)
		x->req.body = "";
	x->owner = t->config_id;
	x->row_no = row_no;
	x->attempt = 0;
	x->waited_ms = 0;
	add_transfer(x);
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

	if (resp->egress_refused)
		return false;			/* the same addresses would be refused again */
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

static long
ms_until(TimestampTz when)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), when, &secs, &usecs);
	return secs * 1000 + usecs / 1000;
}

/*
 * Decide whether a finished transfer is retried: 429, 503 with Retry-After,
 * a failure to connect or resolve, and for PUT and DELETE also 502/503/504,
 * waiting max(Retry-After, backoff) with jitter, never more than
 * max_retry_wait_ms in all for one row.
 */
static bool
schedule_retry(CfdwTransfer *x, const CfdwTable *t)
{
	const CfdwResponse *resp = &x->resp;
	const char *what;
	long		backoff;
	long		asked;
	long		wait;

	if (x->attempt >= t->max_retries || !is_retryable(&x->req, resp))
		return false;

	/* 500 ms, doubling, up to 30 s; times 0.7 to 1.3 */
	backoff = Min(500L << Min(x->attempt, 6), 30000L);
	backoff = (long) (backoff * (0.7 + 0.6 * pg_prng_double(&pg_global_prng_state)));
	asked = cfdw_retry_after_ms(resp->retry_after, time(NULL));
	wait = Max(backoff, asked);
	what = resp->curl_code != CURLE_OK ? "a connection failure" :
		psprintf("HTTP %ld", resp->status);

	/*
	 * statement_timeout needs no test here: the wait is on the latch, so
	 * the timeout interrupts it at its deadline with PostgreSQL's own error.
	 */
	if (x->waited_ms + wait > t->max_retry_wait_ms)
	{
		ereport(LOG,
				(errmsg("confluence_fdw: not retrying %s %s after %s: waiting %ld ms would exceed max_retry_wait_ms (%d)",
						cfdw_method_name(x->req.method), x->req.path_for_messages,
						what, wait, t->max_retry_wait_ms)));
		return false;
	}
	x->attempt++;
	ereport(LOG,
			(errmsg("confluence_fdw: retrying %s %s after %s in %ld ms (retry %d of %d)",
					cfdw_method_name(x->req.method), x->req.path_for_messages,
					what, wait, x->attempt, t->max_retries)));
	x->waited_ms += wait;
	x->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait);
	x->state = XFER_WAITING;
	return true;
}

/* ---------------------------------------------------------------------
 * Driving transfers
 * ---------------------------------------------------------------------
 */

/* Fill resp of a transfer libcurl has finished. */
/*
 * Copy a response header's value (libcurl trims it) of the last request of
 * the transfer, i.e. after any 100 Continue; "" when it is absent.
 */
static void
copy_header(CURL *easy, const char *name, char *dst, size_t dstsize)
{
	struct curl_header *h;

	dst[0] = '\0';
	if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
		strlcpy(dst, h->value, dstsize);
}

static void
read_headers(CURL *easy, CfdwResponse *resp)
{
	copy_header(easy, "Retry-After", resp->retry_after, sizeof(resp->retry_after));
	if (resp->retry_after[0] == '\0')
		copy_header(easy, "Beta-Retry-After", resp->retry_after, sizeof(resp->retry_after));
	copy_header(easy, "Content-Type", resp->content_type, sizeof(resp->content_type));
	copy_header(easy, "Location", resp->location, sizeof(resp->location));
	copy_header(easy, "atl-request-id", resp->request_id, sizeof(resp->request_id));
	if (resp->request_id[0] == '\0')
		copy_header(easy, "atl-traceid", resp->request_id, sizeof(resp->request_id));
}

/*
 * Did the request certainly not reach Confluence?  Only a failure to
 * resolve, to connect, to set up TLS, or a proxy that refused the tunnel
 * says so; after anything else it may have been processed.
 */
static bool
certainly_not_sent(CURLcode rc, long proxy_status)
{
	switch (rc)
	{
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SSL_CERTPROBLEM:
			return true;
		default:
			/* a proxy answered CONNECT with an error: no tunnel, no request */
			return rc != CURLE_OK && proxy_status >= 300;
	}
}

/* Fill resp of a transfer libcurl has finished. */
static void
finish_transfer(CfdwTransfer *x, CURLcode rc)
{
	CfdwResponse *resp = &x->resp;
	CURLMcode	mrc = curl_multi_remove_handle(x->conn->multi, x->easy);

	x->state = XFER_DONE;
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("libcurl could not finish a transfer to Confluence: %s",
						curl_multi_strerror(mrc))));
	if (rc == CURLE_OK &&
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
		rc = CURLE_BAD_FUNCTION_ARGUMENT;	/* cannot happen; an answer we cannot read */
	if (rc == CURLE_OK)
		read_headers(x->easy, resp);
	resp->curl_code = (int) rc;
	resp->too_large = x->too_large || rc == CURLE_FILESIZE_EXCEEDED;
	if (curl_easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &resp->proxy_status) != CURLE_OK)
		resp->proxy_status = 0;
	resp->sent_any = !certainly_not_sent(rc, resp->proxy_status);
	if (x->egress_refused && rc != CURLE_OK)
	{
		resp->egress_refused = true;
		resp->sent_any = false;
		strlcpy(resp->refused_address, x->refused_address, sizeof(resp->refused_address));
	}
	if (x->too_large && resp->curl_code == CURLE_OK)
		resp->curl_code = CURLE_FILESIZE_EXCEEDED;
	if (x->out_of_memory)
		resp->curl_code = CURLE_OUT_OF_MEMORY;

	if (resp->curl_code != CURLE_OK)
	{
		strlcpy(resp->curl_error,
				x->errbuf[0] ? x->errbuf : curl_easy_strerror(resp->curl_code),
				sizeof(resp->curl_error));
		resp->body = "";
		resp->body_len = 0;
	}
	else
	{
		resp->body = x->buf ? x->buf : "";
		resp->body_len = x->len;
	}
}

/* Is any transfer of this connection running or waiting to be retried? */
static bool
any_active(CfdwConnection *c, TimestampTz *next_retry)
{
	bool		active = false;
	int			i;

	*next_retry = 0;
	for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->state == XFER_RUNNING)
			active = true;
		else if (x->state == XFER_WAITING)
		{
			active = true;
			if (*next_retry == 0 || x->retry_at < *next_retry)
				*next_retry = x->retry_at;
		}
	}
	return active;
}

static uint32
socket_events(int what)
{
	uint32		events = 0;

	if (what & CURL_POLL_IN)
		events |= WL_SOCKET_READABLE;
	if (what & CURL_POLL_OUT)
		events |= WL_SOCKET_WRITEABLE;
	return events;
}

/*
 * Bring the connection's wait set up to date with libcurl's sockets.  It
 * lives as long as the connection (TopMemoryContext), and close_connection
 * frees it.
 */
static void
prepare_wait_set(CfdwConnection *c)
{
	int			i;

	if (c->wes == NULL || c->wes_stale)
	{
		if (c->wes)
			FreeWaitEventSet(c->wes);
		c->wes = NULL;
#if PG_VERSION_NUM >= 170000
		c->wes = CreateWaitEventSet(NULL, CFDW_MAX_SOCKETS + 2);
#else
		c->wes = CreateWaitEventSet(TopMemoryContext, CFDW_MAX_SOCKETS + 2);
#endif
		AddWaitEventToSet(c->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(c->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < c->nsocks; i++)
		{
			c->socks[i].pos = AddWaitEventToSet(c->wes, socket_events(c->socks[i].what),
												c->socks[i].fd, NULL, NULL);
			c->socks[i].changed = false;
		}
		c->wes_stale = false;
		return;
	}
	for (i = 0; i < c->nsocks; i++)
	{
		if (!c->socks[i].changed)
			continue;
		ModifyWaitEvent(c->wes, c->socks[i].pos, socket_events(c->socks[i].what), NULL);
		c->socks[i].changed = false;
	}
}

/*
 * One round of the event loop: wait (at most MAX_WAIT_MS) for a socket,
 * libcurl's timer, a retry's time or the latch, then let libcurl work and
 * restart transfers whose retry time has come.  Finished transfers are left
 * in XFER_DONE for the caller.  Raises an error only through
 * CHECK_FOR_INTERRUPTS; the caller closes the connection then.
 */
static void
poll_once(CfdwConnection *c)
{
	WaitEvent	occurred[CFDW_MAX_SOCKETS + 2];
	int			nready = 0;
	long		timeout = c->timer_ms < 0 ? -1 :
		Max(0, c->timer_ms - (long) ((GetCurrentTimestamp() - c->timer_set_at) / 1000));
	TimestampTz next_retry;
	CURLMsg    *msg;
	int			pending;
	int			i;

	(void) any_active(c, &next_retry);
	if (next_retry != 0)
	{
		long		r = Max(0, ms_until(next_retry));

		timeout = timeout < 0 ? r : Min(timeout, r);
	}
	if (timeout < 0 || timeout > MAX_WAIT_MS)
		timeout = MAX_WAIT_MS;

	if (timeout > 0)
	{
		prepare_wait_set(c);
		nready = WaitEventSetWait(c->wes, timeout, occurred, lengthof(occurred),
								  PG_WAIT_EXTENSION);
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
		int			j;

		if (!(occurred[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
			continue;

		/*
		 * A parked socket woke: the peer closed the idle connection (or
		 * sent something unasked).  Stop watching it, or the wait would
		 * spin; libcurl finds out when it next tries to reuse it.
		 */
		j = find_socket(c, occurred[i].fd);
		if (j >= 0 && c->socks[j].parked)
		{
			retire_if_closed(occurred[i].fd);
			forget_socket(c, occurred[i].fd);
			continue;
		}
		if (occurred[i].events & WL_SOCKET_READABLE)
			mask |= CURL_CSELECT_IN;
		if (occurred[i].events & WL_SOCKET_WRITEABLE)
			mask |= CURL_CSELECT_OUT;
		socket_action(c, occurred[i].fd, mask);
	}
	if (c->timer_ms >= 0 &&
		(GetCurrentTimestamp() - c->timer_set_at) / 1000 >= c->timer_ms)
	{
		c->timer_ms = -1;
		socket_action(c, CURL_SOCKET_TIMEOUT, 0);
	}

	while ((msg = curl_multi_info_read(c->multi, &pending)) != NULL)
	{
		CfdwTransfer *x = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x) != CURLE_OK ||
			x == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("libcurl finished a transfer confluence_fdw does not know")));
		finish_transfer(x, msg->data.result);
	}
	if (c->socks_overflow)
	{
		/* cannot happen with CFDW_MAX_SOCKETS sized as it is; fail loudly */
		c->socks_overflow = false;
		for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
			if (c->xfers[i].state == XFER_RUNNING)
				finish_transfer(&c->xfers[i], CURLE_OUT_OF_MEMORY);
	}

	/* retries whose time has come */
	for (i = 0; i <= CFDW_MAX_CONCURRENCY; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->state == XFER_WAITING && ms_until(x->retry_at) <= 0)
		{
			add_transfer(x);
			socket_action(c, CURL_SOCKET_TIMEOUT, 0);
		}
	}
}

/*
 * Run the event loop until slot x is finished (and not to be retried),
 * processing every other transfer of the connection on the way.  On an
 * interrupt (or any error) the statement's own transfers are stopped; the
 * other statements' on the same pool go on.
 */
static void
wait_for(CfdwConnection *c, const CfdwTable *t, CfdwTransfer *x)
{
	socket_action(c, CURL_SOCKET_TIMEOUT, 0);
	PG_TRY();
	{
		for (;;)
		{
			if (x->state == XFER_DONE)
			{
				if (!schedule_retry(x, t))
					break;
				continue;
			}
			poll_once(c);
		}
	}
	PG_CATCH();
	{
		/* the other statements' transfers on the pool are fine */
		abort_transfers(c, t->config_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * A transfer that failed at the transport level may have left its
 * connection in any state: start the slot afresh next time.
 */
static void
discard_if_failed(CfdwTransfer *x)
{
	if (x->resp.curl_code != CURLE_OK && x->easy)
	{
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		if (x->fd_reserved)
			ReleaseExternalFD();
		x->fd_reserved = false;
		x->config_id = 0;
	}
}

/*
 * cfdw_http_send
 *		Send one request and wait for its answer, with the retry policy.
 *		Transport failures are reported in resp, not raised; only an
 *		interrupt raises an error.  The response body stays valid until the
 *		next request on this connection's slot 0.
 */
void
cfdw_http_send(CfdwConnection *c, const CfdwTable *t,
			   const CfdwRequest *req, CfdwResponse *resp)
{
	CfdwTransfer *x = &c->xfers[0];

	if (c->multi == NULL)
		open_multi(c, t);
	start_transfer(x, t, req, 0);
	wait_for(c, t, x);
	*resp = x->resp;
	x->state = XFER_IDLE;
	discard_if_failed(x);
}

/* ---------------------------------------------------------------------
 * Pipelines: many requests in flight for rows that need no answer
 * ---------------------------------------------------------------------
 */

/*
 * Collect the finished transfers of a pipeline: successes free their slot;
 * under on_error 'return' a failure is a WARNING and frees its slot too;
 * otherwise the first failure is kept (XFER_FAILED) for the owner to
 * report.  Returns the number of rows that succeeded.
 */
static void warn_returned_error(CfdwTransfer *x);

static int
collect(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p)
{
	int			n = 0;
	int			i;

	for (i = 1; i <= CFDW_MAX_CONCURRENCY; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->state != XFER_DONE || x->owner != t->config_id)
			continue;
		if (schedule_retry(x, t))
			continue;
		if (x->resp.curl_code == CURLE_OK && x->resp.status < 300)
		{
			x->state = XFER_IDLE;
			p->nsent++;
			n++;
			continue;
		}
		if (t->on_error_return && x->resp.curl_code == CURLE_OK &&
			x->resp.status >= 400)
		{
			warn_returned_error(x);
			x->state = XFER_IDLE;
			p->nsent++;
			continue;
		}
		x->state = XFER_FAILED;
		if (p->failed_slot == 0)
			p->failed_slot = i;
	}
	return n;
}

/*
 * The WARNING for a pipelined row whose HTTP error on_error 'return' lets
 * through.  The summary (a parsed body) is made in a context of its own and
 * dropped at once: in the statement's context, a long INSERT of refused
 * rows would grow by every answer it got.
 */
static void
warn_returned_error(CfdwTransfer *x)
{
	static MemoryContext msg_cxt = NULL;
	MemoryContext old;
	char	   *summary;

	if (msg_cxt == NULL)
		msg_cxt = AllocSetContextCreate(TopMemoryContext, "confluence_fdw messages",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(msg_cxt);
	summary = cfdw_error_summary(&x->resp);
	ereport(WARNING,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Confluence returned HTTP %ld for row %lld%s%s; the statement goes on because on_error is 'return'",
					x->resp.status, (long long) x->row_no,
					summary ? ": " : "", summary ? summary : ""),
			 errhint("Add RETURNING http_status, response to see each row's answer.")));
	MemoryContextSwitchTo(old);
	MemoryContextReset(msg_cxt);
}

/* Slots of this pipeline still busy (running or waiting to retry). */
static int
busy_slots(CfdwConnection *c, const CfdwTable *t);

/*
 * cfdw_pipeline_busy
 *		How many of the statement's requests are still in flight (sent or
 *		being sent, or waiting to be retried), for messages.
 */
int
cfdw_pipeline_busy(CfdwConnection *c, const CfdwTable *t)
{
	return c->multi ? busy_slots(c, t) : 0;
}

static int
busy_slots(CfdwConnection *c, const CfdwTable *t)
{
	int			n = 0;
	int			i;

	for (i = 1; i <= CFDW_MAX_CONCURRENCY; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->owner == t->config_id &&
			(x->state == XFER_RUNNING || x->state == XFER_WAITING ||
			 x->state == XFER_DONE))
			n++;
	}
	return n;
}

/*
 * Run the event loop for a pipeline until fewer than limit of its slots are
 * busy (or a failure stopped it), or with limit 0 until none is.  On an
 * interrupt (or any error) the statement's own transfers are stopped.
 */
static void
run_pipeline(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p, int limit)
{
	PG_TRY();
	{
		for (;;)
		{
			int			busy;

			collect(c, t, p);
			busy = busy_slots(c, t);
			if (limit > 0 ? (p->failed_slot != 0 || busy < limit) : busy == 0)
				break;
			poll_once(c);
		}
	}
	PG_CATCH();
	{
		/* counted first: the statement's WARNING says how many were stopped */
		p->stopped_in_flight = busy_slots(c, t);
		abort_transfers(c, t->config_id);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * cfdw_pipeline_slot
 *		Wait until the pipeline may start one more request, and return the
 *		slot to build it in (1 .. CFDW_MAX_CONCURRENCY), or 0 when a failure
 *		has stopped the pipeline: then call cfdw_pipeline_drain.
 */
int
cfdw_pipeline_slot(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p)
{
	int			limit = Min(t->max_concurrency, CFDW_MAX_CONCURRENCY);
	int			i;

	if (c->multi == NULL)
		open_multi(c, t);
	if (c->pool_size != limit)
	{
		/* at most max_concurrency connections to the site */
		MULTI_SETOPT(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) limit);
		c->pool_size = limit;
	}

	run_pipeline(c, t, p, limit);

	if (p->failed_slot != 0)
		return 0;
	for (i = 1; i <= CFDW_MAX_CONCURRENCY; i++)
		if (c->xfers[i].state == XFER_IDLE)
			return i;
	return 0;					/* cannot happen: limit < number of slots */
}

/*
 * cfdw_pipeline_start
 *		Start a request in the slot cfdw_pipeline_slot returned.  req's
 *		strings must stay valid until that slot is handed out again.
 */
void
cfdw_pipeline_start(CfdwConnection *c, const CfdwTable *t, int slot,
					const CfdwRequest *req, int64 row_no)
{
	CfdwTransfer *x = &c->xfers[slot];

	start_transfer(x, t, req, row_no);
	/* let libcurl start connecting and sending right away */
	socket_action(c, CURL_SOCKET_TIMEOUT, 0);
}

/*
 * cfdw_pipeline_drain
 *		Wait for every request of the pipeline to finish.  Returns true when
 *		one failed; then req, resp and row_no describe the first failure (its
 *		body valid until the connection is used again).
 */
bool
cfdw_pipeline_drain(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
					CfdwRequest *req, CfdwResponse *resp, int64 *row_no)
{
	int			i;

	if (c->multi == NULL)
		return false;
	run_pipeline(c, t, p, 0);

	if (p->failed_slot == 0)
		return false;

	/* report the first failure; the others only count as not sent */
	*req = c->xfers[p->failed_slot].req;
	*resp = c->xfers[p->failed_slot].resp;
	*row_no = c->xfers[p->failed_slot].row_no;
	for (i = 1; i <= CFDW_MAX_CONCURRENCY; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->owner == t->config_id && x->state == XFER_FAILED)
		{
			x->state = XFER_IDLE;
			/* the reported one keeps its buffer until the error is raised */
			if (i != p->failed_slot)
				discard_if_failed(x);
		}
	}
	return true;
}

/* A fresh configuration id for a resolved table. */
uint64
cfdw_next_config_id(void)
{
	return next_config_id++;
}
