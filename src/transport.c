/*-------------------------------------------------------------------------
 *
 * transport.c
 *		  libcurl for confluence_fdw: a pool of connections per user mapping,
 *		  and transfers that wait on the process latch.  It takes a request
 *		  plus the site's settings and credentials (CfdwSite), and hands back
 *		  how the transfer ended (CfdwOutcome) with the answer; it knows no
 *		  tables, rows or retry policy (delivery.c).
 *
 * Why the multi interface for one request at a time: curl_easy_perform
 * blocks in libcurl's own poll(), where PostgreSQL's latch cannot wake it,
 * so cancel and statement_timeout would wait for libcurl's progress
 * callback.  Driving the transfer with curl_multi_socket_action lets us wait
 * in WaitEventSetWait on the sockets libcurl names *and* the latch, as
 * libpq's backend helpers do, so an interrupt is seen at once and reported
 * by CHECK_FOR_INTERRUPTS() with PostgreSQL's own error.
 *
 * Slots.  A connection (one per user mapping) is a multi handle, whose
 * pool keeps the TCP/TLS connections alive between statements, and
 * CFDW_SLOTS request slots, each an easy handle with its own buffers.  A
 * slot is idle, scheduled (waiting for its start time, which is how a
 * retry is scheduled), running, or done until its owner (the statement
 * that started it, by config_id) collects the answer and releases it.
 * Invariants: a running slot's handle is attached to the multi handle and
 * no other slot's is; an answer's body stays valid until its slot starts
 * again or its owner releases the connection, after which a buffer grown
 * past KEEP_RESPONSE_BYTES is freed; a slot whose transfer got no answer
 * gets a fresh handle next time.
 *
 * Sockets.  libcurl names the sockets to wait on (socket_cb); we keep them
 * in socks[] and in a wait set that is rebuilt only when that list changes.
 * The sockets of connections are opened by opensocket_cb (recorded in
 * owned[]) and, once connected, closed by closesocket_cb; a connection idle
 * in the pool stays in the wait set ("parked").  But libcurl 7.88 closes a
 * socket that never finished connecting with a plain close(), calling
 * neither closesocket_cb nor socket_cb (lib/cf-socket.c, cf_socket_close()
 * of a socket not yet "active"; fixed in 8.2.0): after every connect
 * timeout, every cancel or statement_timeout during a connect, and every
 * address happy eyeballs gave up on.  Its resolver's sockets are closed
 * behind our back too.  The kernel then gives the number to the next
 * socket or file, of this pool, another pool, or the backend.
 * Invariants: an entry is trusted only while its number still names the
 * socket it was recorded with (the inode, CfdwSocketId), checked when
 * socket_cb sees the number again and before every wait and every sweep;
 * anything else is stale and dropped (prune_stale_sockets), never waited
 * on, polled or read; the lists never decide whether a connection may be
 * opened, so no amount of stale bookkeeping can refuse a request.
 * libcurl also names the eventfd (or pipe) through which its resolver says
 * that a lookup is done, and it must be waited on like a socket; an
 * eventfd has no inode of its own, but libcurl never closes it without
 * telling (identify_socket).
 *
 * Ownership: libcurl allocates with malloc.  A CfdwConnection lives in a
 * backend-lifetime hash table and owns its handles, header lists and
 * response buffers: close_connection() frees all of them, close_transfer()
 * one slot's, discard_if_failed() the handle of a slot whose transfer
 * failed, trim_response_buffer() a large response buffer.  No libcurl
 * callback raises an error or allocates with palloc: they record what
 * happened and the caller reports it afterwards.
 *
 * IDENTIFICATION
 *		  src/transport.c
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
#include <sys/stat.h>
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

/*
 * A slot keeps a response buffer up to this size between requests, so that
 * answers of the usual size cost no malloc; one grown for a larger answer
 * (up to max_response_bytes) is freed once that answer is no longer needed,
 * or every slot would keep the largest answer it ever got.
 */
#define KEEP_RESPONSE_BYTES (64 * 1024)

/*
 * A socket as the kernel knows it.  Its number is reused by the next socket
 * or file opened once it is closed; its inode is not, as long as it is open.
 * So an entry whose number no longer has that inode is stale, whoever closed
 * the socket and whether or not we heard of it.  The same goes for a pipe;
 * not for an eventfd, whose inode all eventfds share (identify_socket).
 */
typedef struct CfdwSocketId
{
	curl_socket_t fd;
	dev_t		dev;
	ino_t		ino;
} CfdwSocketId;

typedef struct CfdwSocket
{
	CfdwSocketId id;
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
	uint64		config_id;		/* CfdwSite whose options are set */
	CfdwMethod	config_method;	/* and the method and Content-Type set */
	char		config_ctype[128];	/* with them (an upsert mixes methods) */
	struct curl_slist *headers; /* request headers of that configuration */
	char		errbuf[CURL_ERROR_SIZE];
	CfdwSlotState state;
	uint64		owner;			/* config_id of the statement using it */

	/* the request; its strings belong to the caller until it is collected */
	CfdwRequest req;
	size_t		body_pos;		/* bytes handed to libcurl so far */
	TimestampTz start_at;		/* CFDW_SLOT_SCHEDULED: when to start */
	char		rate_key[CFDW_SITE_KEY_LEN];	/* the site's rate limit, "": none */
	double		max_rate;		/* the server's cap on the site's pace */
	int			pace_max_wait_ms;	/* the longest it waits for its turn */
	bool		reclaim;		/* held by a pause: claim its start again */
	int64		rate_ticket;	/* its claim in the site's pace (0: none),
								 * given back when it is over */
	const CfdwSite *oauth_site; /* its owner's site, when it has OAuth client
								 * credentials: the token is set as it starts */

	/* the answer, filled by the callbacks */
	CfdwResponse resp;
	char	   *buf;			/* response body, NUL-terminated */
	size_t		len;
	size_t		cap;
	size_t		limit;			/* max_response_bytes */
	bool		too_large;
	bool		out_of_memory;
	bool		restrict_egress;	/* the site is restricted */
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
	CfdwTransfer xfers[CFDW_SLOTS];

	/* filled by the socket and timer callbacks */
	CfdwSocket	socks[CFDW_MAX_SOCKETS];
	int			nsocks;
	CfdwSocketId owned[CFDW_MAX_SOCKETS];	/* opened by opensocket_cb */
	int			nowned;
	bool		socks_overflow;
	bool		named_unwatchable;	/* socket_cb got a number we cannot wait on */
	curl_socket_t unwatchable_fd;

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
 * the error stops the caller's transfers (cfdw_abort_transfers).
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

/*
 * What the kernel says number fd is now; false when it names nothing
 * libcurl waits on (closed, or a relation file since, which epoll refuses).
 *
 * Besides sockets, libcurl waits on the descriptor its resolver threads
 * wake it through when a lookup is done: a socket pair in 7.88, an eventfd
 * since 8.9 where there is one and a pipe elsewhere (lib/socketpair.h,
 * wakeup_create; lib/socketpair.c, Curl_wakeup_init since 8.19).  Since
 * 8.20 it is the multi handle's own (lib/multi.c, wakeup_pair, named to
 * socket_cb for the multi's internal handle in Curl_multi_pollset), and a
 * lookup is no longer polled on a short timer meanwhile (lib/asyn-thrdd.c,
 * Curl_async_pollset: the timer is the whole resolve timeout): a wait not
 * watching it does not see the answer, and the transfer fails with
 * "Resolving timed out" even for a name that resolved at once.
 *
 * A pipe has an inode of its own; an eventfd has not (it shares the one of
 * anonymous inodes, S_IFMT 0, with every eventfd, epoll set and signalfd),
 * so a number closed behind our back and given to another eventfd would
 * pass for the old one.  libcurl never does that: 7.88's resolver sockets
 * are the ones it may close without a word; the eventfd of a lookup is
 * removed with CURL_POLL_REMOVE before it is closed (lib/asyn-thrdd.c,
 * Curl_multi_closed / Curl_multi_will_close before wakeup_close, 8.9 to
 * 8.19), and the multi handle's lives as long as the handle, whose
 * entries close_connection() forgets with it.
 *
 * Not handled: libcurl 8.20.0 (that release only) does not read its
 * wake-up eventfd back when driven by curl_multi_socket_action (8.21 does,
 * curl issues 21547 and 21960), so with it a wait would end at once for as
 * long as transfers run, once a lookup has finished.
 */
static bool
identify_socket(curl_socket_t fd, CfdwSocketId *id)
{
	struct stat st;

	id->fd = fd;
	id->dev = 0;
	id->ino = 0;
	if (fstat(fd, &st) != 0)
		return false;
	if (!S_ISSOCK(st.st_mode) && !S_ISFIFO(st.st_mode) && (st.st_mode & S_IFMT) != 0)
		return false;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	return true;
}

/* Is id still the socket it was when recorded? */
static bool
same_socket(const CfdwSocketId *id, const CfdwSocketId *now)
{
	return now->ino != 0 && id->fd == now->fd && id->dev == now->dev && id->ino == now->ino;
}

static bool
still_open(const CfdwSocketId *id)
{
	CfdwSocketId now;

	return identify_socket(id->fd, &now) && same_socket(id, &now);
}

/* The entry for socket number s, or -1. */
static int
find_socket(CfdwConnection *c, curl_socket_t s)
{
	int			i;

	for (i = 0; i < c->nsocks; i++)
		if (c->socks[i].id.fd == s)
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

static void
forget_owned(CfdwConnection *c, curl_socket_t s)
{
	int			i;

	for (i = 0; i < c->nowned; i++)
	{
		if (c->owned[i].fd == s)
		{
			c->owned[i] = c->owned[--c->nowned];
			return;
		}
	}
}

/*
 * Drop every entry whose socket is gone: closed without our hearing of it
 * (see the top of the file), its number maybe given to another socket or to
 * a file the backend opened since.  Nothing can be waited for on such a
 * number (epoll forgot the old socket when it was closed, and refuses a
 * relation file: EPERM from AddWaitEventToSet), and polling or reading it
 * would touch someone else's connection.  Dropping one rebuilds the wait
 * set.  One fstat per entry; there are a handful.
 */
static void
prune_stale_sockets(CfdwConnection *c)
{
	int			i = 0;

	while (i < c->nsocks)
	{
		if (still_open(&c->socks[i].id))
			i++;
		else
		{
			c->socks[i] = c->socks[--c->nsocks];
			c->wes_stale = true;
		}
	}
	i = 0;
	while (i < c->nowned)
	{
		if (still_open(&c->owned[i]))
			i++;
		else
			c->owned[i] = c->owned[--c->nowned];
	}
}

/*
 * Did we open socket now (opensocket_cb), so that libcurl closes it through
 * closesocket_cb once it is connected?  An entry of the same number but
 * another socket is stale, and dropped.
 */
static bool
is_owned(CfdwConnection *c, const CfdwSocketId *now)
{
	int			i;

	for (i = 0; i < c->nowned; i++)
	{
		if (c->owned[i].fd != now->fd)
			continue;
		if (same_socket(&c->owned[i], now))
			return true;
		c->owned[i] = c->owned[--c->nowned];
		return false;
	}
	return false;
}

/*
 * libcurl tells us which sockets to wait on, and for what.
 *
 * A connection's socket stays in the wait set while it idles in libcurl's
 * pool ("parked", watched for the peer closing it), and changes are made
 * to the wait set in place.  That is safe only for a socket that is still
 * the one the wait set holds: so the entry found under s must have s's
 * inode, or it is stale (its socket closed behind our back, epoll has
 * forgotten it) and is replaced, which rebuilds the set.  Only sockets we
 * opened are parked: libcurl's own descriptors (its resolver's wake-up,
 * see identify_socket) are forgotten when it stops watching them.  One
 * that is not ours rebuilds the set on any change, which costs a few
 * system calls once per host name lookup (since 8.20, once per batch of
 * transfers: the multi handle's wake-up is watched while any is running).
 *
 * A number that names nothing we can wait on is not entered: the wait
 * could not end on it, only on libcurl's timer.  That must not happen; it
 * is noted and logged by the next wait (cfdw_transport_wait).
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	CfdwConnection *c = (CfdwConnection *) userp;
	CfdwSocketId now;
	bool		open = identify_socket(s, &now);
	int			i = find_socket(c, s);
	bool		owned;

	if (i >= 0 && !(open && same_socket(&c->socks[i].id, &now)))
	{
		forget_socket(c, s);	/* stale: another socket had the number */
		i = -1;
	}
	owned = open && is_owned(c, &now);

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
		if (!open)
		{
			c->named_unwatchable = true;
			c->unwatchable_fd = s;
			return 0;
		}
		if (c->nsocks == CFDW_MAX_SOCKETS)
			prune_stale_sockets(c);
		if (c->nsocks == CFDW_MAX_SOCKETS)
		{
			c->socks_overflow = true;
			return -1;			/* libcurl fails the transfer */
		}
		i = c->nsocks++;
		c->socks[i].id = now;
		c->socks[i].id.fd = s;
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

/*
 * libcurl opens a connection's socket.  The number the kernel gives it is
 * free, so whatever socket we still knew under that number is gone: its
 * entries and the wait set's registration are stale.
 *
 * The socket is recorded as ours for socket_cb.  The list is kept small by
 * closesocket_cb and, for the sockets libcurl closes without calling it, by
 * pruning; should it still be full, the socket is simply not recorded and
 * is handled as libcurl's own: a connection never fails for our
 * bookkeeping.
 */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	CfdwTransfer *x = (CfdwTransfer *) clientp;
	CfdwConnection *c = x->conn;
	curl_socket_t s;
	CfdwSocketId id;

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
	/* CLOEXEC: a program the backend starts (COPY ... PROGRAM) must not hold it */
	s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (s == CURL_SOCKET_BAD)
		return CURL_SOCKET_BAD;
	forget_socket(c, s);
	forget_owned(c, s);
	if (c->nowned == CFDW_MAX_SOCKETS)
		prune_stale_sockets(c);
	if (c->nowned < CFDW_MAX_SOCKETS && identify_socket(s, &id))
		c->owned[c->nowned++] = id;
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

	forget_socket(c, item);
	forget_owned(c, item);
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

	/* never poll, let alone read, a number that is another socket now */
	prune_stale_sockets(c);
	for (i = 0; i < c->nsocks; i++)
	{
		if (!c->socks[i].parked)
			continue;
		pfd[n].fd = c->socks[i].id.fd;
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

/*
 * Free a slot's response buffer that grew beyond KEEP_RESPONSE_BYTES.  Only
 * when nobody reads the answer in it any more: its slot starts again, or
 * the statement that owned it is done with the connection.
 */
static void
trim_response_buffer(CfdwTransfer *x)
{
	if (x->cap <= KEEP_RESPONSE_BYTES)
		return;
	free(x->buf);
	x->buf = NULL;
	x->cap = 0;
	x->len = 0;
}

static void give_back_claim(CfdwTransfer *x);

/* Free one slot's handle and buffers; its state is forgotten. */
static void
close_transfer(CfdwTransfer *x)
{
	give_back_claim(x);
	if (x->easy)
	{
		/* on a cleanup path: report, never raise */
		if (x->state == CFDW_SLOT_RUNNING && x->conn->multi &&
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
	x->state = CFDW_SLOT_IDLE;
	x->owner = 0;
}

static void
close_connection(CfdwConnection *c)
{
	int			i;

	for (i = 0; i < CFDW_SLOTS; i++)
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
cfdw_transport_init(void)
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
open_multi(CfdwConnection *c, const CfdwSite *site)
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
	c->serverid = site->serverid;
	c->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
										   ObjectIdGetDatum(site->serverid));
	c->mapping_hash = GetSysCacheHashValue1(USERMAPPINGOID,
											ObjectIdGetDatum(site->umid));
	elog(DEBUG3, "confluence_fdw: new connection for user mapping %u", site->umid);
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
 *		The cached connection of the site's user mapping, opened if needed.
 *		Each call counts a user until cfdw_release_connection.
 */
CfdwConnection *
cfdw_get_connection(const CfdwSite *site)
{
	CfdwConnection *c;
	bool		found;
	int			i;

	if (ConnectionHash == NULL)
		init_hash();

	c = hash_search(ConnectionHash, &site->umid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) c) + sizeof(Oid), 0, sizeof(CfdwConnection) - sizeof(Oid));
		for (i = 0; i < CFDW_SLOTS; i++)
			c->xfers[i].conn = c;
		c->timer_ms = -1;
	}
	/* options changed: reconnect, or as soon as the pool is idle */
	if (c->invalidated && c->multi)
		(void) close_unless_used(c);
	c->invalidated = false;
	if (c->multi == NULL)
		open_multi(c, site);
	c->nusers++;
	return c;
}

/*
 * cfdw_abort_transfers
 *		Stop the transfers a statement still has on the connection; the
 *		other statements' go on.  No network work: this runs on error paths.
 */
void
cfdw_abort_transfers(CfdwConnection *c, uint64 owner)
{
	int			i;

	for (i = 0; i < CFDW_SLOTS; i++)
		if (c->xfers[i].owner == owner && c->xfers[i].state != CFDW_SLOT_IDLE)
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
cfdw_release_connection(CfdwConnection *conn, const CfdwSite *site)
{
	int			i;

	if (conn == NULL)
		return;
	if (conn->multi)
		cfdw_abort_transfers(conn, site->config_id);
	/* the statement has read its answers: large buffers go now */
	for (i = 0; i < CFDW_SLOTS; i++)
		if (conn->xfers[i].owner == site->config_id)
			trim_response_buffer(&conn->xfers[i]);
	if (conn->nusers > 0)
		conn->nusers--;
	if (!site->keep_connections)
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
 * A slot's easy handle, made once (and counted as a file descriptor
 * PostgreSQL should know about) or reset for another configuration.
 */
static void
prepare_handle(CfdwTransfer *x)
{
	if (x->easy != NULL)
	{
		curl_easy_reset(x->easy);
		return;
	}
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

/* Add a line to a header list, or free the list and fail. */
static struct curl_slist *
append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *n = curl_slist_append(list, line);

	if (n == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	return n;
}

/*
 * The request headers of a configuration.  The list is ours (malloc) until
 * the next configure or close, so it is kept in the slot before anything
 * else can fail.
 */
static void
set_headers(CfdwTransfer *x, const CfdwSite *site, const CfdwRequest *req)
{
	struct curl_slist *h = NULL;
	char		line[256];
	ListCell   *lc;

	if (x->headers)
	{
		curl_slist_free_all(x->headers);
		x->headers = NULL;
	}
	if (req->method != CFDW_GET && !has_header(site->headers, "Content-Type"))
	{
		snprintf(line, sizeof(line), "Content-Type: %s",
				 req->content_type ? req->content_type : "application/json");
		h = append_header(h, line);
	}
	if (!has_header(site->headers, "Accept"))
		h = append_header(h, "Accept: application/json");
	/* a 100-continue round trip costs a wait for every large body */
	h = append_header(h, "Expect:");
	foreach(lc, site->headers)
		h = append_header(h, strVal(lfirst(lc)));
	x->headers = h;
	SETOPT(x, CURLOPT_HTTPHEADER, x->headers);
}

/* Where requests go and how they travel: the same for every site. */
static void
set_route(CfdwTransfer *x, const CfdwSite *site)
{
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
	if (site->ca_file)
		SETOPT(x, CURLOPT_CAINFO, site->ca_file);
	/*
	 * The server's proxy, or none: "" also keeps libcurl from reading
	 * https_proxy and friends from the postmaster's environment, so the
	 * route never depends on how the server was started.  CONNECT tunnels
	 * https, so TLS is still verified with the site itself.
	 */
	SETOPT(x, CURLOPT_PROXY, site->proxy ? site->proxy : "");
	if (site->proxy && site->ca_file)
		SETOPT(x, CURLOPT_PROXY_CAINFO, site->ca_file);
	/* gzip, deflate, br, zstd: whatever this libcurl decodes */
	SETOPT(x, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(x, CURLOPT_TIMEOUT_MS, (long) site->timeout_ms);
	SETOPT(x, CURLOPT_CONNECTTIMEOUT_MS, (long) site->connect_timeout_ms);
	SETOPT(x, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) site->max_response_bytes);
	SETOPT(x, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(x, CURLOPT_USERAGENT, CFDW_USER_AGENT);
}

/* Our callbacks, each given the slot (or the connection) it serves. */
static void
set_callbacks(CfdwTransfer *x)
{
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
}

/* The credentials and the verb. */
static void
set_auth_and_method(CfdwTransfer *x, const CfdwSite *site, CfdwMethod method)
{
	/* libcurl copies these strings; they never appear in a message. */
	if (site->bearer_token)
	{
		SETOPT(x, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
		SETOPT(x, CURLOPT_XOAUTH2_BEARER, site->bearer_token);
	}
	else if (site->client_id)
	{
		/* the access token of the moment is set as each request starts */
		SETOPT(x, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
	}
	else if (site->username)
	{
		SETOPT(x, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		SETOPT(x, CURLOPT_USERNAME, site->username);
		SETOPT(x, CURLOPT_PASSWORD, site->api_token);
	}
	/* else none: a token request (oauth.c) carries its credential in its body */

	switch (method)
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
			SETOPT(x, CURLOPT_CUSTOMREQUEST, cfdw_method_name(method));
			break;
	}
}

/*
 * Set everything that is the same for every request of one site
 * configuration: done once per statement and slot (and again only when
 * another configuration used the slot in between), so a request sets just
 * its URL and body.
 */
static void
configure(CfdwTransfer *x, const CfdwSite *site, const CfdwRequest *req)
{
	prepare_handle(x);
	x->config_id = 0;
	set_headers(x, site, req);
	set_route(x, site);
	set_callbacks(x);
	set_auth_and_method(x, site, req->method);
	x->limit = (size_t) site->max_response_bytes;
	x->restrict_egress = site->restricted;
	x->config_method = req->method;
	strlcpy(x->config_ctype, req->content_type ? req->content_type : "", sizeof(x->config_ctype));
	x->config_id = site->config_id;
}

/*
 * Whether the slot is set up for this site's request as it is: the method
 * and the Content-Type are part of the configuration too.
 */
static bool
configured_for(const CfdwTransfer *x, const CfdwSite *site, const CfdwRequest *req)
{
	return x->easy != NULL && x->config_id == site->config_id &&
		x->config_method == req->method &&
		strcmp(x->config_ctype, req->content_type ? req->content_type : "") == 0;
}

/* Hand a configured slot's request to the multi handle. */
static void
add_transfer(CfdwTransfer *x)
{
	CfdwConnection *c = x->conn;

	memset(&x->resp, 0, sizeof(CfdwResponse));
	trim_response_buffer(x);	/* the previous answer is dead now */
	x->len = 0;
	if (x->buf)
		x->buf[0] = '\0';
	x->too_large = x->out_of_memory = x->egress_refused = false;
	x->errbuf[0] = '\0';
	x->body_pos = 0;

	/*
	 * OAuth client credentials: the token good now (oauth.c fetches one
	 * when the kept one is about to expire), at every start, as a retry
	 * may start long after the first attempt.
	 */
	if (x->oauth_site)
		SETOPT(x, CURLOPT_XOAUTH2_BEARER,
			   cfdw_oauth_bearer(x->oauth_site, &x->resp.token_serial, &x->resp.token_fresh));

	SETOPT(x, CURLOPT_URL, x->req.url);
	if (x->req.method != CFDW_GET)
		SETOPT(x, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) x->req.body_len);
	if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not start a transfer to Confluence")));
	x->state = CFDW_SLOT_RUNNING;
}

/* ---------------------------------------------------------------------
 * Driving transfers
 * ---------------------------------------------------------------------
 */

static long
ms_until(TimestampTz when)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), when, &secs, &usecs);
	return secs * 1000 + usecs / 1000;
}

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
	copy_header(easy, "Link", resp->link, sizeof(resp->link));
	/* the gateway's reason for a 401 (a scope the token lacks) */
	copy_header(easy, "X-Failure-Category", resp->failure_category,
				sizeof(resp->failure_category));
	copy_header(easy, "atl-request-id", resp->request_id, sizeof(resp->request_id));
	if (resp->request_id[0] == '\0')
		copy_header(easy, "atl-traceid", resp->request_id, sizeof(resp->request_id));
}

/*
 * Every answer's rate-limit headers, 2xx or not, go to the site's rate
 * limit (ratelimit.c), which paces the next requests from them; and the
 * request is no longer in flight there.
 */
static void
observe_rate_headers(CfdwTransfer *x)
{
	char		limit[32],
				remaining[32],
				reset[64],
				near_limit[16],
				reason[CFDW_RATE_REASON_LEN],
				policy[256],
				beta[256];
	CfdwRateHeaders h;

	if (x->rate_ticket == 0)
		return;
	copy_header(x->easy, "X-RateLimit-Limit", limit, sizeof(limit));
	copy_header(x->easy, "X-RateLimit-Remaining", remaining, sizeof(remaining));
	copy_header(x->easy, "X-RateLimit-Reset", reset, sizeof(reset));
	copy_header(x->easy, "X-RateLimit-NearLimit", near_limit, sizeof(near_limit));
	if (near_limit[0] == '\0')
		copy_header(x->easy, "X-Beta-RateLimit-NearLimit", near_limit, sizeof(near_limit));
	copy_header(x->easy, "RateLimit-Reason", reason, sizeof(reason));
	if (reason[0] == '\0')
		copy_header(x->easy, "X-Beta-RateLimit-Reason", reason, sizeof(reason));
	copy_header(x->easy, "Beta-RateLimit-Policy", policy, sizeof(policy));
	copy_header(x->easy, "Beta-RateLimit", beta, sizeof(beta));
	h.limit = limit;
	h.remaining = remaining;
	h.reset = reset;
	h.near_limit = near_limit;
	h.reason = reason;
	h.policy = policy;
	h.beta = beta;
	cfdw_rate_answered(x->rate_ticket, &h);
	x->rate_ticket = 0;
}

/* A claimed request that got no answer: it is no longer in flight. */
static void
give_back_claim(CfdwTransfer *x)
{
	if (x->rate_ticket == 0)
		return;
	cfdw_rate_answered(x->rate_ticket, NULL);
	x->rate_ticket = 0;
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

/* The failure a libcurl code stands for, as response.c words them. */
static CfdwFailure
failure_of(CURLcode rc)
{
	switch (rc)
	{
		case CURLE_OK:
			return CFDW_FAIL_NONE;
		case CURLE_FILESIZE_EXCEEDED:
			return CFDW_FAIL_TOO_LARGE;
		case CURLE_COULDNT_RESOLVE_HOST:
			return CFDW_FAIL_RESOLVE;
		case CURLE_COULDNT_CONNECT:
			return CFDW_FAIL_CONNECT;
		case CURLE_OPERATION_TIMEDOUT:
			return CFDW_FAIL_TIMEOUT;
		case CURLE_GOT_NOTHING:
		case CURLE_RECV_ERROR:
		case CURLE_SEND_ERROR:
		case CURLE_PARTIAL_FILE:
			return CFDW_FAIL_CLOSED;
		case CURLE_SEND_FAIL_REWIND:
			/* a reused connection died after the request went out, and
			 * seek_cb refused to let libcurl send it again */
			return CFDW_FAIL_REWIND;
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CONNECT_ERROR:
			return CFDW_FAIL_TLS;
		default:
			return CFDW_FAIL_OTHER;
	}
}

/*
 * Whether a transfer that timed out never got as far as sending: libcurl
 * sets the pre-transfer time once the connection (with its TLS handshake
 * and proxy tunnel) is ready and the request is about to go out, so a
 * connect timeout leaves it 0.  Without this, every connect timeout would
 * count as a request that may have been processed.
 */
static bool
timed_out_connecting(CfdwTransfer *x, CURLcode rc)
{
	curl_off_t	pretransfer = -1;

	return rc == CURLE_OPERATION_TIMEDOUT &&
		curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK &&
		pretransfer == 0;
}

/* Fill resp of a transfer that got no answer: why, and was it sent? */
static void
record_failure(CfdwTransfer *x, CURLcode rc)
{
	CfdwResponse *resp = &x->resp;

	resp->outcome = certainly_not_sent(rc, resp->proxy_status) || timed_out_connecting(x, rc)
		? CFDW_NOT_SENT : CFDW_MAYBE_SENT;
	resp->failure = failure_of(rc);
	if (x->too_large)
		resp->failure = CFDW_FAIL_TOO_LARGE;
	else if (x->egress_refused)
	{
		resp->failure = CFDW_FAIL_EGRESS;
		resp->outcome = CFDW_NOT_SENT;
		strlcpy(resp->refused_address, x->refused_address, sizeof(resp->refused_address));
	}
	else if (resp->proxy_status >= 300)
		resp->failure = CFDW_FAIL_PROXY;
	resp->failure_name = curl_easy_strerror(rc);
	strlcpy(resp->failure_detail, x->errbuf[0] ? x->errbuf : resp->failure_name,
			sizeof(resp->failure_detail));
	resp->body = "";
	resp->body_len = 0;
}

/* Fill resp of a transfer libcurl has finished. */
static void
finish_transfer(CfdwTransfer *x, CURLcode rc)
{
	CfdwResponse *resp = &x->resp;
	CURLMcode	mrc = curl_multi_remove_handle(x->conn->multi, x->easy);

	x->state = CFDW_SLOT_DONE;
	if (mrc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("libcurl could not finish a transfer to Confluence: %s",
						curl_multi_strerror(mrc))));
	if (rc == CURLE_OK &&
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
		rc = CURLE_BAD_FUNCTION_ARGUMENT;	/* cannot happen; an answer we cannot read */
	if (x->out_of_memory)
		rc = CURLE_OUT_OF_MEMORY;
	if (curl_easy_getinfo(x->easy, CURLINFO_HTTP_CONNECTCODE, &resp->proxy_status) != CURLE_OK)
		resp->proxy_status = 0;
	if (rc != CURLE_OK)
	{
		give_back_claim(x);
		record_failure(x, rc);
		return;
	}
	read_headers(x->easy, resp);
	observe_rate_headers(x);
	resp->outcome = CFDW_ANSWERED;
	resp->failure = CFDW_FAIL_NONE;
	resp->body = x->buf ? x->buf : "";
	resp->body_len = x->len;
}

/* The earliest start time of a scheduled transfer, or 0 when none is. */
static TimestampTz
next_start(CfdwConnection *c)
{
	TimestampTz next = 0;
	int			i;

	for (i = 0; i < CFDW_SLOTS; i++)
	{
		CfdwTransfer *x = &c->xfers[i];

		if (x->state == CFDW_SLOT_SCHEDULED && (next == 0 || x->start_at < next))
			next = x->start_at;
	}
	return next;
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

	prune_stale_sockets(c);
	if (c->wes == NULL || c->wes_stale)
	{
		if (c->wes)
			FreeWaitEventSet(c->wes);
		c->wes = NULL;
		c->wes = cfdw_long_lived_wait_event_set(CFDW_MAX_SOCKETS + 2);
		AddWaitEventToSet(c->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(c->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < c->nsocks; i++)
		{
			c->socks[i].pos = AddWaitEventToSet(c->wes, socket_events(c->socks[i].what),
												c->socks[i].id.fd, NULL, NULL);
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
 * How long the next wait may last: libcurl's timer, a scheduled start.  -1
 * when there is neither: then only a socket or the latch can end the wait.
 */
static long
wait_timeout(CfdwConnection *c)
{
	long		timeout = c->timer_ms < 0 ? -1 :
		Max(0, c->timer_ms - (long) ((GetCurrentTimestamp() - c->timer_set_at) / 1000));
	TimestampTz next = next_start(c);

	if (next != 0)
	{
		long		r = Max(0, ms_until(next));

		timeout = timeout < 0 ? r : Min(timeout, r);
	}
	return timeout;
}

/* Hand the sockets that woke to libcurl. */
static void
act_on_sockets(CfdwConnection *c, const WaitEvent *occurred, int nready)
{
	int			i;

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
}

/* Record the transfers libcurl has finished in their slots; how many. */
static int
finish_done_transfers(CfdwConnection *c)
{
	CURLMsg    *msg;
	int			pending;
	int			finished = 0;
	int			i;

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
		finished++;
	}
	if (c->socks_overflow)
	{
		/* cannot happen with CFDW_MAX_SOCKETS sized as it is; fail loudly */
		c->socks_overflow = false;
		for (i = 0; i < CFDW_SLOTS; i++)
		{
			if (c->xfers[i].state == CFDW_SLOT_RUNNING)
			{
				finish_transfer(&c->xfers[i], CURLE_OUT_OF_MEMORY);
				finished++;
			}
		}
	}
	return finished;
}

/*
 * cfdw_transport_wait
 *		One round of the event loop: wait (at most MAX_WAIT_MS) for a
 *		socket, libcurl's timer, a scheduled start or the latch, then let
 *		libcurl work and start the transfers whose time has come.  Finished
 *		transfers are left in CFDW_SLOT_DONE for their owners.  Raises an
 *		error through CHECK_FOR_INTERRUPTS; the caller then stops its
 *		transfers (cfdw_abort_transfers).
 *
 * libcurl may finish a transfer inside any curl_multi_socket_action(),
 * also the one that starts it (cfdw_transfer_start, and a scheduled start
 * at the end of the previous round): it sends the request and reads an
 * answer that is already there, and then names no socket and sets no timer
 * for it.  So the round first collects what has finished since the last
 * one, and when there is something it is over: waiting would wait for
 * nothing, until MAX_WAIT_MS.  It happens all the time since libcurl 8.7.0:
 * a small body (read_cb) goes out with the headers in one send
 * (lib/request.c, Curl_req_send), and the same call reads at once
 * (lib/transfer.c, Curl_sendrecv), so a quick server's answer is often
 * there already.  7.88 sent the headers, looked for an answer before it
 * sent the body (lib/transfer.c, Curl_readwrite reads, then writes), and so
 * read the answer only in a later round, after a wait on the socket.
 */
void
cfdw_transport_wait(CfdwConnection *c)
{
	WaitEvent	occurred[CFDW_MAX_SOCKETS + 2];
	int			nready = 0;
	long		timeout;
	int			i;

	/*
	 * libcurl named a descriptor that is no socket, pipe or eventfd (or
	 * was closed already): what it waits for on it, such as its resolver's
	 * answer, is seen only when its timer runs out (socket_cb).
	 */
	if (c->named_unwatchable)
	{
		elog(DEBUG1, "confluence_fdw: libcurl named descriptor %d to wait on, which cannot be waited on",
			 (int) c->unwatchable_fd);
		c->named_unwatchable = false;
	}
	if (finish_done_transfers(c) > 0)
		return;
	timeout = wait_timeout(c);

	/*
	 * No timer: libcurl waits for a socket only, or for nothing at all, and
	 * then only the safety net ends the round, after MAX_WAIT_MS in which
	 * the statement made no progress.  The log says so: it should not
	 * happen, as a running transfer has a timer (its timeout_ms) unless
	 * timeout_ms is 0.
	 */
	if (timeout < 0)
	{
		elog(DEBUG1, "confluence_fdw: no timer from libcurl, waiting up to %d ms for a socket",
			 MAX_WAIT_MS);
		timeout = MAX_WAIT_MS;
	}
	timeout = Min(timeout, MAX_WAIT_MS);
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
	act_on_sockets(c, occurred, nready);
	finish_done_transfers(c);

	/* scheduled transfers (retries) whose time has come */
	for (i = 0; i < CFDW_SLOTS; i++)
	{
		CfdwTransfer *x = &c->xfers[i];
		TimestampTz paused;

		if (x->state != CFDW_SLOT_SCHEDULED || ms_until(x->start_at) > 0)
			continue;
		/* another session may have seen a Retry-After meanwhile */
		paused = cfdw_rate_paused_until(x->rate_key[0] ? x->rate_key : NULL);
		if (paused != 0 && ms_until(paused) > 0)
		{
			x->start_at = paused;
			x->reclaim = true;
			continue;
		}
		/* held by a pause: it takes its turn in the site's pace again */
		if (x->reclaim)
		{
			x->reclaim = false;
			give_back_claim(x);
			x->start_at = cfdw_rate_claim(x->rate_key, x->max_rate, 0, x->pace_max_wait_ms,
										  &x->rate_ticket);
			if (ms_until(x->start_at) > 0)
				continue;
		}
		add_transfer(x);
		socket_action(c, CURL_SOCKET_TIMEOUT, 0);
	}
}

/*
 * A transfer that failed at the transport level may have left its
 * connection in any state: start the slot afresh next time.
 */
static void
discard_if_failed(CfdwTransfer *x)
{
	if (x->resp.outcome != CFDW_ANSWERED && x->easy)
	{
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		if (x->fd_reserved)
			ReleaseExternalFD();
		x->fd_reserved = false;
		x->config_id = 0;
	}
}

/* ---------------------------------------------------------------------
 * The slots, as the delivery policy sees them
 * ---------------------------------------------------------------------
 */

/*
 * cfdw_transfer_start
 *		Start a request in a free slot (or, for a retry, in its own finished
 *		one), at once or at not_before.  req's strings must stay valid until
 *		the slot is released.
 */
void
cfdw_transfer_start(CfdwConnection *c, int slot, const CfdwSite *site,
					const CfdwRequest *req, TimestampTz not_before)
{
	CfdwTransfer *x = &c->xfers[slot];

	if (c->multi == NULL)
		open_multi(c, site);
	if (!configured_for(x, site, req))
		configure(x, site, req);
	if (req != &x->req)
		x->req = *req;
	if (x->req.body == NULL)
		x->req.body = "";
	x->owner = site->config_id;
	strlcpy(x->rate_key, site->rate_key ? site->rate_key : "", sizeof(x->rate_key));
	x->max_rate = site->max_rate;
	x->pace_max_wait_ms = site->pace_max_wait_ms;
	x->reclaim = false;
	x->oauth_site = site->client_id ? site : NULL;

	/*
	 * The site's pause (a site that asked every client to wait, delivery.c)
	 * and its pace (near its limit, or max_rate): the start time is claimed
	 * here, and a request that must wait is scheduled, so that the other
	 * slots' answers are read meanwhile.
	 */
	give_back_claim(x);
	if (site->rate_key)
		not_before = cfdw_rate_claim(site->rate_key, site->max_rate, not_before,
									 site->pace_max_wait_ms, &x->rate_ticket);
	if (not_before != 0 && ms_until(not_before) > 0)
	{
		x->start_at = not_before;
		x->state = CFDW_SLOT_SCHEDULED;
		return;
	}
	sweep_parked(c);
	add_transfer(x);
	/* let libcurl start connecting and sending right away */
	socket_action(c, CURL_SOCKET_TIMEOUT, 0);
}

CfdwSlotState
cfdw_transfer_state(const CfdwConnection *c, int slot)
{
	return c->xfers[slot].state;
}

/* The config_id of the site that last started the slot. */
uint64
cfdw_transfer_owner(const CfdwConnection *c, int slot)
{
	return c->xfers[slot].owner;
}

const CfdwRequest *
cfdw_transfer_request(const CfdwConnection *c, int slot)
{
	return &c->xfers[slot].req;
}

/* A finished slot's answer; its body is valid until the slot starts again. */
const CfdwResponse *
cfdw_transfer_response(const CfdwConnection *c, int slot)
{
	return &c->xfers[slot].resp;
}

/*
 * cfdw_transfer_release
 *		The owner is done with a finished slot.  A transfer that got no
 *		answer may have left its handle in any state: the slot starts
 *		afresh next time.  The response body stays readable until then.
 */
void
cfdw_transfer_release(CfdwConnection *c, int slot)
{
	CfdwTransfer *x = &c->xfers[slot];

	x->state = CFDW_SLOT_IDLE;
	discard_if_failed(x);
}

/* At most n connections to the site at once. */
void
cfdw_limit_connections(CfdwConnection *c, int n)
{
	if (c->multi == NULL || c->pool_size == n)
		return;
	MULTI_SETOPT(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) n);
	c->pool_size = n;
}

/* A fresh configuration id for a resolved site. */
uint64
cfdw_next_config_id(void)
{
	return next_config_id++;
}
