/*-------------------------------------------------------------------------
 *
 * confluence_fdw.h
 *		  The one shared header of confluence_fdw: a foreign data wrapper that
 *		  turns INSERTs into Confluence Cloud REST API v2 requests.
 *
 * The files and what they own (docs/architecture.md has the layers):
 *	confluence_fdw.c	the handler, the SQL functions, _PG_init
 *	insert.c	the INSERT executor: one row at a time, pipelined, batched
 *	options.c	option catalog, validator, resolving server + user mapping +
 *				table + columns into one CfdwTable; the only option parser
 *	templates.c	the endpoint templates and IMPORT FOREIGN SCHEMA
 *	request.c	a row to a request body and URL
 *	response.c	a response to RETURNING values; every error message of an
 *				answer or a failed transfer
 *	transport.c	libcurl: a connection pool per user mapping, transfers
 *				that wait on the latch; knows no tables
 *	delivery.c	policy over the transport: retries, on_error, pipelines
 *	queue.c, worker.c	delivery 'queue': the outbox and its worker
 *	pushdown.c	which WHERE clauses a SELECT sends as query parameters,
 *				and what a scan costs
 *	scan.c		SELECT: the GET requests of a scan, page by page
 *	modify.c	UPDATE and DELETE: PUT and DELETE of one object per row
 *	content.c	Markdown and plain text to storage format, the check of
 *				every storage body, the SQL helpers (storage.c does the
 *				work, without PostgreSQL: storage.h)
 *	upsert.c	on_conflict: a page found by its title is updated or kept
 *	oauth.c		OAuth 2.0 client credentials: the access token of a
 *				client_id and client_secret, kept until it expires
 *	pure.c		rules that need no PostgreSQL (pure.h), for unit tests
 *	compat.h	what differs between the PostgreSQL majors (15 to 19)
 *	gateway.c	Atlassian's API gateway: cloud_id, api_gateway and the
 *				cloudId looked up from the site
 *
 * IDENTIFICATION
 *		  src/confluence_fdw.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONFLUENCE_FDW_H
#define CONFLUENCE_FDW_H

#include "postgres.h"

/* what differs between PostgreSQL 15 and later majors, and the #error below 15 */
#include "compat.h"

#include <time.h>

#include "access/attnum.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "nodes/pathnodes.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define CFDW_VERSION "1.1"
#define CFDW_USER_AGENT "confluence_fdw/" CFDW_VERSION

/* Defaults of the server options (README "Options"). */
#define CFDW_DEFAULT_TIMEOUT_MS			30000
#define CFDW_DEFAULT_CONNECT_TIMEOUT_MS	10000
#define CFDW_DEFAULT_MAX_RESPONSE_BYTES	(16 * 1024 * 1024)
#define CFDW_DEFAULT_MAX_RETRIES		4
#define CFDW_DEFAULT_MAX_RETRY_WAIT_MS	60000

/* Where api.atlassian.com is, unless api_gateway_url says otherwise. */
#define CFDW_DEFAULT_GATEWAY_URL		"https://api.atlassian.com"

/* Confluence refuses request bodies over 5 MB with 413; refuse them first. */
#define CFDW_MAX_REQUEST_BYTES			(5 * 1024 * 1024)

/* Requests in flight at once for rows that need no answer. */
#define CFDW_DEFAULT_MAX_CONCURRENCY	8
#define CFDW_MAX_CONCURRENCY			64

/* Default rows per request in batch_mode. */
#define CFDW_DEFAULT_BATCH_SIZE			100

/* How much of an error body goes into an error's DETAIL. */
#define CFDW_ERROR_BODY_EXCERPT			1000

typedef enum CfdwFormat
{
	CFDW_FORMAT_JSON,
	CFDW_FORMAT_XML,
	CFDW_FORMAT_FORM
} CfdwFormat;

typedef enum CfdwMethod
{
	CFDW_POST,
	CFDW_PUT,
	CFDW_PATCH,
	CFDW_DELETE,
	CFDW_GET					/* reads: SELECT, test_connection, lookups */
} CfdwMethod;

/* How a column's value is written into a JSON body. */
typedef enum CfdwValueKind
{
	CFDW_VALUE_STRING,			/* type output function, sent as a JSON string */
	CFDW_VALUE_NUMBER,			/* integers, numeric, floats: a JSON number */
	CFDW_VALUE_BOOL,			/* a JSON boolean */
	CFDW_VALUE_JSON,			/* json, jsonb: embedded as JSON */
	CFDW_VALUE_TO_JSON			/* arrays and composites: to_json(), embedded */
} CfdwValueKind;

/* What a response column takes from the answer. */
typedef enum CfdwResponseKind
{
	CFDW_RESP_NONE,				/* a request column */
	CFDW_RESP_PATH,				/* a dotted path into the JSON body */
	CFDW_RESP_WHOLE,			/* '.': the whole body */
	CFDW_RESP_STATUS,			/* '$status': the HTTP status code */
	CFDW_RESP_QUEUE_ID,			/* '$queue_id': the queue row (delivery 'queue') */
	CFDW_RESP_ACTION			/* '$action': created, updated, unchanged, skipped */
} CfdwResponseKind;

/* What on_conflict does when a page's title is taken in its space. */
typedef enum CfdwConflict
{
	CFDW_CONFLICT_ERROR,		/* Confluence's 400 is the row's answer */
	CFDW_CONFLICT_UPDATE,		/* PUT the row over that page (if it differs) */
	CFDW_CONFLICT_SKIP			/* leave the page alone, return its id */
} CfdwConflict;

/*
 * One column of the foreign table, resolved from its options, its name and
 * the table's template.
 */
typedef struct CfdwColumn
{
	AttrNumber	attnum;			/* 1-based attribute number */
	char	   *name;			/* column name, for messages */
	Oid			typid;			/* declared type */
	int32		typmod;

	/* request side */
	bool		send;			/* written into the request body? */
	const char *representation; /* column option: "markdown", "plain",
								 * "storage" (checked), or NULL */
	char	   *field;			/* dotted path in the body; "." = merge */
	List	   *field_path;		/* field split on '.', as String nodes */
	CfdwValueKind kind;
	FmgrInfo	outfunc;		/* output function (or to_json) */

	/* response side */
	CfdwResponseKind resp;
	char	   *response_field; /* as written in the option, for messages */
	List	   *response_path;	/* split on '.', as String nodes */
	FmgrInfo	infunc;			/* the column type's input function */
	bool		is_json;		/* json or jsonb (or a domain over one) */
	Oid			typioparam;

	/*
	 * read side (SELECT): where an item of a list holds the value.  A
	 * request column reads its field (a template may translate it: body.value
	 * is read from body.storage.value), a response column its response path.
	 */
	CfdwResponseKind read;		/* CFDW_RESP_PATH, _WHOLE, _STATUS or _NONE */
	List	   *read_path;		/* dotted read path split, for CFDW_RESP_PATH */
	char	   *read_field;		/* the same, as text */
} CfdwColumn;

struct CfdwTemplate;

/*
 * What the transport needs of a server, a user mapping and a table to send
 * their requests: where and how to connect, and the credentials.  It knows
 * nothing else of the table.
 */
typedef struct CfdwSite
{
	Oid			umid;			/* the pool's key: the user mapping used */
	Oid			serverid;		/* for messages */
	uint64		config_id;		/* identifies this resolution to transport.c */
	int			timeout_ms;
	int			connect_timeout_ms;
	int64		max_response_bytes;
	bool		keep_connections;
	char	   *ca_file;		/* CA bundle for TLS verification */
	char	   *proxy;			/* proxy origin, or NULL for none */
	bool		restricted;		/* owner is no superuser: egress control */
	List	   *headers;		/* extra "Name: value" lines (table option) */

	/* rate limits (ratelimit.c) */
	char	   *rate_key;		/* the site's key, NULL: none */
	double		max_rate;		/* requests per second to the site, 0: no cap */
	int			pace_max_wait_ms;	/* the longest a request waits for its
									 * turn in the site's pace */

	/* user mapping; never printed */
	char	   *username;
	char	   *api_token;
	char	   *bearer_token;

	/*
	 * OAuth 2.0 client credentials (user mapping; client_secret never
	 * printed) and where their access token comes from (server option
	 * token_url, or its default): oauth.c
	 */
	char	   *client_id;
	char	   *client_secret;
	char	   *scope;
	char	   *token_url;


	/*
	 * Made from those when resolved (cfdw_oauth_resolve), as hashing and
	 * encoding conversions need a transaction and the worker sends without
	 * one: the SHA-256 naming the credential, and the token request's body
	 * (never printed) with its Content-Type.
	 */
	uint8		oauth_key[32];
	char	   *token_body;
	const char *token_body_type;
} CfdwSite;

/*
 * Everything needed to send rows of one foreign table: the server, the user
 * mapping and the table and column options, resolved at execution time so
 * that changed options and tokens take effect without re-planning.
 */
typedef struct CfdwTable
{
	Oid			relid;
	char	   *relname;
	char	   *servername;
	CfdwSite	site;			/* connection settings and credentials */

	/* server */
	char	   *base;			/* "https://domain" or base_url, no trailing '/' */
	int			max_retries;
	int			max_retry_wait_ms;
	int			max_concurrency;	/* table option, else server's */

	/* table */
	const struct CfdwTemplate *template;	/* NULL in manual mode */
	char	   *endpoint;		/* the option as written */
	char	   *path;			/* path template, starts with '/' */
	CfdwMethod	method;
	char	   *representation; /* default body.representation */
	CfdwFormat	format;
	const char *content_type;	/* of the body, from format (or headers) */
	bool		batch_mode;		/* rows go as one array per request */
	int			batch_size;
	bool		on_error_return;	/* HTTP errors come back as rows */
	bool		queued;			/* delivery 'queue': sent by the worker */
	CfdwConflict on_conflict;	/* pages and blogposts only */
	List	   *url_parts;		/* base + path compiled: String literals and
								 * Integer column indexes (placeholders) */
	char	   *fixed_url;		/* the URL when there are no placeholders */
	char	   *read_path;		/* path a SELECT reads, or NULL: not readable */

	/* columns, in attribute order, dropped ones left out */
	int			ncolumns;
	CfdwColumn *columns;
} CfdwTable;

/*
 * How a transfer ended, as far as anyone can know: what a caller may do
 * next (retry, report "did not reach Confluence", or read the answer)
 * depends on nothing else.
 */
typedef enum CfdwOutcome
{
	CFDW_NOT_SENT,				/* certainly never reached the server */
	CFDW_MAYBE_SENT,			/* failed after the request may have gone out */
	CFDW_ANSWERED				/* an HTTP answer arrived: see status */
} CfdwOutcome;

/* Why a transfer got no usable answer; response.c words each one. */
typedef enum CfdwFailure
{
	CFDW_FAIL_NONE,
	CFDW_FAIL_TOO_LARGE,		/* the answer exceeded max_response_bytes */
	CFDW_FAIL_EGRESS,			/* every address was internal (restricted) */
	CFDW_FAIL_PROXY,			/* the proxy refused the tunnel */
	CFDW_FAIL_RESOLVE,
	CFDW_FAIL_CONNECT,
	CFDW_FAIL_TIMEOUT,
	CFDW_FAIL_CLOSED,			/* the connection ended before an answer */
	CFDW_FAIL_REWIND,			/* a kept-alive connection died mid-request */
	CFDW_FAIL_TLS,
	CFDW_FAIL_OTHER
} CfdwFailure;

/* A finished HTTP exchange, as transport.c hands it back. */
typedef struct CfdwResponse
{
	CfdwOutcome outcome;
	CfdwFailure failure;		/* CFDW_FAIL_NONE when answered */
	const char *failure_name;	/* libcurl's name of the failure */
	char		failure_detail[256];	/* libcurl's message */
	long		proxy_status;	/* a proxy's answer to CONNECT, 0 when none */
	char		refused_address[64];	/* CFDW_FAIL_EGRESS: the last one */
	long		status;			/* HTTP status, 0 when none */
	const char *body;			/* NUL-terminated; owned by transport.c until
								 * the next request in the same slot */
	size_t		body_len;
	char		content_type[128];
	char		location[512];
	char		retry_after[64];
	char		request_id[128];	/* atl-request-id / atl-traceid */
	char		failure_category[64];	/* X-Failure-Category (the gateway's) */
	char		link[2048];		/* Link: <...>; rel="next", for pagination */
	const char *action;			/* what an upsert did ($action), or NULL */

	/* OAuth client credentials: the access token the request went with */
	uint64		token_serial;	/* which one (oauth.c); 0: none */
	bool		token_fresh;	/* fetched for this very request */
} CfdwResponse;

/* A request, as request.c builds it for the transport. */
typedef struct CfdwRequest
{
	CfdwMethod	method;
	const char *url;			/* full URL */
	const char *path_for_messages;	/* method-less path, for CONTEXT lines */
	const char *body;			/* NULL for no body */
	size_t		body_len;
	const char *content_type;	/* e.g. "application/json" */
} CfdwRequest;

/* in confluence_fdw.c */
extern void _PG_init(void);
extern char *cfdw_allowed_hosts;	/* confluence_fdw.allowed_hosts */
extern char *cfdw_database_name;	/* confluence_fdw.database_name */
extern int	cfdw_queue_retention_s; /* confluence_fdw.queue_retention */
extern bool cfdw_preloaded;		/* loaded by shared_preload_libraries */

/* in insert.c */
struct FdwRoutine;
extern void cfdw_insert_routine(struct FdwRoutine *routine);

/*
 * What an ri_FdwState starts with: INSERT (insert.c) and UPDATE or DELETE
 * (modify.c) share the Begin and End callbacks, which tell them apart.
 */
typedef enum CfdwStateKind
{
	CFDW_STATE_INSERT = 1,
	CFDW_STATE_CHANGE
} CfdwStateKind;

/* in options.c */
extern CfdwTable *cfdw_resolve_table(Relation rel, Oid userid);
extern Oid	cfdw_find_user_mapping(Oid userid, Oid serverid);
extern UserMapping *cfdw_user_mapping(Oid userid, ForeignServer *server);
extern CfdwTable *cfdw_resolve_shape(Relation rel);
extern int	cfdw_table_batch_size(Oid relid);
extern char *cfdw_describe_request(Oid relid, CmdType operation);
extern void cfdw_resolve_server(CfdwTable *t, ForeignServer *server,
								UserMapping *um);
extern char *cfdw_server_problem(ForeignServer *server, UserMapping *um,
								 const char **hint);
extern bool cfdw_parse_method(const char *s, CfdwMethod *method);
extern bool cfdw_option_bool(DefElem *def);
extern List *cfdw_split_path(const char *dotted);
extern char *cfdw_camel_case(const char *name);

/* in gateway.c */
extern char *cfdw_gateway_url(List *server_options);
extern char *cfdw_gateway_base(ForeignServer *server, const CfdwTable *t);
extern const char *cfdw_server_cloud_id(ForeignServer *server);

/* in templates.c */
typedef struct CfdwTemplateColumn
{
	const char *name;
	const char *type;			/* SQL type name for IMPORT */
	const char *field;			/* request field, or NULL */
	const char *response_field; /* response path, or NULL */
	const char *read_field;		/* where a read item has it, if not field */
} CfdwTemplateColumn;

/*
 * How a WHERE clause on a column reaches Confluence (pushdown.c): as a query
 * parameter of the list, or as the value in a path ("/pages/{pageId}/...").
 */
typedef enum CfdwPushKind
{
	CFDW_PUSH_QUERY,			/* ?target=value (repeated for IN) */
	CFDW_PUSH_PATH				/* the path target, its {field} filled */
} CfdwPushKind;

typedef struct CfdwPushable
{
	const char *field;			/* the column's read field, e.g. "spaceId" */
	CfdwPushKind kind;
	const char *target;			/* parameter name, or path with {field} */
	int			max_values;		/* 1: "=" only; more: IN with up to this */
	double		rows;			/* expected rows for one value */
	const char *const *values;	/* the values the endpoint takes, or NULL
								 * for any; others are checked locally only */
} CfdwPushable;

/* One endpoint template: everything confluence_fdw knows of it. */
typedef struct CfdwTemplate
{
	const char *name;			/* endpoint option value, e.g. "pages" */
	const char *table_name;		/* name IMPORT FOREIGN SCHEMA gives it */
	CfdwMethod	method;			/* INSERT: the method that creates an object */
	const char *path;			/* and the path it is sent to */
	const char *item_path;		/* one object, e.g. "/wiki/api/v2/pages/{id}" */
	const char *list_path;		/* all objects, e.g. "/wiki/api/v2/pages" */
	CfdwFormat	format;			/* the one body format its endpoints take */
	const char *const *representations; /* body.representation values it
										 * takes, NULL-terminated */
	const CfdwTemplateColumn *columns;	/* terminated by a NULL name */
	/* refuse a row the endpoint would refuse; json_root is a cJSON object */
	void		(*check_row) (const CfdwTable *t, void *json_root);
	int			commands;		/* (1 << CMD_INSERT) | ...: what it can do */
	const CfdwPushable *pushables;	/* WHERE clauses a SELECT can send */
	double		rows;			/* expected rows of an unfiltered list */
	const char *update_drops;	/* a request field PUT does not take, or NULL */
} CfdwTemplate;

extern const CfdwTemplate *cfdw_find_template(const char *name);
extern const char *cfdw_template_names(void);
extern const CfdwTemplateColumn *cfdw_template_column(const CfdwTemplate *tmpl,
													  const char *colname);
extern void cfdw_check_required(const CfdwTable *t, void *json_root);
extern const char *cfdw_column_for_field(const CfdwTable *t, const char *field);
extern bool cfdw_valid_representation(const char *value);
extern char *cfdw_representation_hint(void);
extern const char *cfdw_default_representation(void);
extern List *cfdw_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid);
extern const char *cfdw_template_read_field(const CfdwTemplate *tmpl,
											const char *field);
extern const CfdwPushable *cfdw_find_pushable(const CfdwTemplate *tmpl,
											  const char *field);

/* in content.c */
extern void cfdw_prepare_content(const CfdwTable *t, void *json_root);
extern bool cfdw_same_storage(const char *current, const char *wanted);

/* in request.c */
extern const char *cfdw_method_name(CfdwMethod method);
extern void cfdw_compile_url(CfdwTable *t);
extern char *cfdw_build_url(const CfdwTable *t, Datum *values, bool *isnull);
extern char *cfdw_url_encode(const char *text);
extern char *cfdw_url_encode_utf8(const char *utf8);
extern void *cfdw_build_row_tree(const CfdwTable *t, Datum *values, bool *isnull,
								 void *batch);
extern void cfdw_serialize_body(const CfdwTable *t, void *tree, bool batch,
								StringInfo out);
extern bool cfdw_build_body(const CfdwTable *t, Datum *values, bool *isnull,
							StringInfo out);
extern char *cfdw_build_context(const CfdwTable *t, Datum *values, bool *isnull);
extern void *cfdw_json_parse_owned(const char *text, size_t len);
extern void *cfdw_json_array_owned(void);

/* in response.c */
extern void cfdw_fill_response(const CfdwTable *t, const CfdwResponse *resp,
							   Datum *values, bool *isnull);
extern void cfdw_fill_queued(const CfdwTable *t, int64 queue_id,
							 Datum *values, bool *isnull);
extern void cfdw_report_http_error(const CfdwTable *t, const CfdwRequest *req,
								   const CfdwResponse *resp);
extern void cfdw_report_transport_error(const CfdwTable *t,
										const CfdwRequest *req,
										const CfdwResponse *resp);
extern char *cfdw_error_summary(const CfdwResponse *resp);
extern char *cfdw_test_summary(const CfdwTable *t, const CfdwRequest *req,
							   const CfdwResponse *resp);
extern char *cfdw_outcome_message(const CfdwTable *t, const CfdwRequest *req,
								  const CfdwResponse *resp);
extern char *cfdw_rate_limit_lifts(const CfdwResponse *resp);
extern char *cfdw_rate_limit_lifts_in(long ms, TimestampTz *when);
extern void *cfdw_answer_jsonb(const CfdwResponse *resp);
extern char *cfdw_jsonb_text_at(void *jsonb, const char *dotted);
extern void *cfdw_parse_page(const CfdwTable *t, const CfdwRequest *req,
							 const CfdwResponse *resp);
extern void cfdw_fill_item(const CfdwTable *t, void *item, long status,
						   const bool *needed, Datum *values, bool *isnull);

/* in transport.c */
typedef struct CfdwConnection CfdwConnection;

/* Request slots of a connection: 0 for one at a time, 1.. for pipelines. */
#define CFDW_SLOTS (CFDW_MAX_CONCURRENCY + 1)

typedef enum CfdwSlotState
{
	CFDW_SLOT_IDLE,				/* free for a new request */
	CFDW_SLOT_RUNNING,			/* being sent or answered */
	CFDW_SLOT_SCHEDULED,		/* to be started at a later time */
	CFDW_SLOT_DONE				/* finished; the response waits for its owner */
} CfdwSlotState;

extern void cfdw_transport_init(void);
extern uint64 cfdw_next_config_id(void);
extern CfdwConnection *cfdw_get_connection(const CfdwSite *site);
extern void cfdw_release_connection(CfdwConnection *c, const CfdwSite *site);
extern int	cfdw_disconnect_all(void);
extern void cfdw_limit_connections(CfdwConnection *c, int n);
extern void cfdw_transfer_start(CfdwConnection *c, int slot, const CfdwSite *site,
								const CfdwRequest *req, TimestampTz not_before);
extern CfdwSlotState cfdw_transfer_state(const CfdwConnection *c, int slot);
extern uint64 cfdw_transfer_owner(const CfdwConnection *c, int slot);
extern const CfdwRequest *cfdw_transfer_request(const CfdwConnection *c, int slot);
extern const CfdwResponse *cfdw_transfer_response(const CfdwConnection *c, int slot);
extern void cfdw_transfer_release(CfdwConnection *c, int slot);
extern void cfdw_transport_wait(CfdwConnection *c);
extern void cfdw_abort_transfers(CfdwConnection *c, uint64 owner);

/* in delivery.c */

/* Retries of one request: how often and how long it waited so far. */
typedef struct CfdwAttempts
{
	int			retries;
	long		waited_ms;
	int64		row_no;			/* for messages */
	bool		reauthorized;	/* sent again with a new access token */
} CfdwAttempts;

/* A pipeline: one statement's requests in flight on a connection. */
typedef struct CfdwPipeline
{
	int64		nsent;			/* rows answered (successfully, or returned) */
	int			failed_slot;	/* slot of the first failure, or 0 */
	int			stopped_in_flight;	/* stopped by an interrupt while waiting */
	bool		failed[CFDW_SLOTS]; /* finished, failed, kept for the report */
	CfdwAttempts attempts[CFDW_SLOTS];
} CfdwPipeline;

extern void cfdw_send(CfdwConnection *c, const CfdwTable *t,
					  const CfdwRequest *req, CfdwResponse *resp);
extern int	cfdw_pipeline_slot(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p);
extern void cfdw_pipeline_start(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
								int slot, const CfdwRequest *req, int64 row_no);
extern bool cfdw_pipeline_drain(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
								CfdwRequest *req, CfdwResponse *resp, int64 *row_no);
extern int	cfdw_pipeline_busy(CfdwConnection *c, const CfdwTable *t, const CfdwPipeline *p);

/* What a finished request means for sending it again (cfdw_verdict). */
typedef enum CfdwVerdict
{
	CFDW_VERDICT_OK,			/* answered 2xx */
	CFDW_VERDICT_RETRY,			/* certainly not processed: may be resent */
	CFDW_VERDICT_REFUSED,		/* final, and nothing was done */
	CFDW_VERDICT_UNKNOWN		/* may have been processed: never resent */
} CfdwVerdict;

/* The longest backoff between two retries of a statement's request. */
#define CFDW_STATEMENT_BACKOFF_CAP_MS	30000

extern CfdwVerdict cfdw_verdict(const CfdwRequest *req, const CfdwResponse *resp);
extern long cfdw_backoff_ms(const CfdwResponse *resp, int retries, long cap_ms);

/* Called with each finished request of cfdw_send_all, by its index. */
typedef void (*CfdwOutcomeCallback) (void *arg, int index, const CfdwRequest *req,
									 const CfdwResponse *resp);

/*
 * Called by cfdw_send_all with the k requests (by index) about to start;
 * clearing go[j] holds index[j] back: it is neither sent nor reported.
 */
typedef void (*CfdwStartCallback) (void *arg, const int *index, int k, bool *go);

extern void cfdw_send_all(CfdwConnection *c, const CfdwTable *t,
						  const CfdwRequest *reqs, int n,
						  CfdwStartCallback starting,
						  CfdwOutcomeCallback done, void *arg);

/* in ratelimit.c: rate limits per site (a site key: cfdw_rate_site_key) */
struct CfdwRateHeaders;
extern void cfdw_ratelimit_shmem_request(void);
extern void cfdw_ratelimit_shmem_startup(void);
extern char *cfdw_rate_site_key(const char *base, const char *cloud_id);
extern TimestampTz cfdw_rate_paused_until(const char *key);
extern TimestampTz cfdw_rate_claim(const char *key, double max_rate, TimestampTz not_before,
								   int max_wait_ms, int64 *ticket);
extern void cfdw_rate_answered(int64 ticket, const struct CfdwRateHeaders *h);
extern void cfdw_rate_note(const char *key, long ms, long max_wait_ms);

/* in oauth.c */

/* The longest access token kept, with its NUL. */
#define CFDW_OAUTH_TOKEN_MAX	8192
#define CFDW_DEFAULT_TOKEN_URL	"https://auth.atlassian.com/oauth/token"

extern void cfdw_oauth_shmem_request(void);
extern void cfdw_oauth_shmem_startup(void);
extern void cfdw_oauth_resolve(CfdwSite *site);
extern const char *cfdw_oauth_bearer(const CfdwSite *site, uint64 *serial, bool *fresh);
extern void cfdw_oauth_ready(const CfdwSite *site);
extern char *cfdw_oauth_check(const CfdwSite *site);
extern bool cfdw_oauth_refused(const CfdwSite *site, const CfdwResponse *resp);

/* in upsert.c */

/* Called with each row's last request and final answer, by its index. */
typedef void (*CfdwUpsertDone) (void *arg, int index, const CfdwRequest *req,
								const CfdwResponse *resp);

extern void cfdw_upsert_all(CfdwConnection *c, const CfdwTable *t,
							const CfdwRequest *posts, int n,
							CfdwUpsertDone done, void *arg);
extern void cfdw_title_lookup(const CfdwTable *t, const char *space, const char *title,
							  const char *status, bool with_body, CfdwRequest *req);
extern void *cfdw_title_lookup_find(const CfdwResponse *resp, const char *space,
									const char *title);
extern bool cfdw_is_duplicate_title(const CfdwResponse *resp);

/* in pushdown.c */

/* A WHERE clause a scan sends to Confluence. */
typedef struct CfdwPushed
{
	const CfdwColumn *column;
	CfdwPushKind kind;
	const char *target;			/* query parameter, or path with {name} */
	const char *name;			/* what the path's {name} is (field, column) */
	int			max_values;
	double		rows;			/* expected rows per value */
	const char *const *values;	/* the values the endpoint takes, or NULL */
	Expr	   *value;			/* the value compared with: sent */
	bool		is_array;		/* column = ANY (value) */
	int			nvalues;		/* of a constant array; estimated otherwise */
	RestrictInfo *rinfo;		/* the clause, still checked locally */
} CfdwPushed;

extern List *cfdw_pushdown_choose(PlannerInfo *root, RelOptInfo *baserel,
								  const CfdwTable *t, List *clauses);
extern bool cfdw_pushdown_reads_item(const CfdwTable *t, List *pushed);
extern bool cfdw_pushdown_complete(const CfdwTable *t, List *pushed);
extern double cfdw_pushdown_rows(const CfdwTable *t, List *pushed);
extern void cfdw_pushdown_costs(double rows, int page_size, Cost *startup,
								Cost *total);
extern List *cfdw_pushdown_private(List *pushed, List **fdw_exprs);
extern bool cfdw_pushdown_has(List *pushed, RestrictInfo *ri);
extern void cfdw_pushdown_param_paths(PlannerInfo *root, RelOptInfo *baserel,
									  const CfdwTable *t, int page_size);

/* in scan.c */
extern void cfdw_scan_routine(struct FdwRoutine *routine);
extern void cfdw_check_command(const CfdwTable *t, CmdType command);

/* in modify.c */
struct ModifyTable;
struct ModifyTableState;
struct ResultRelInfo;
extern void cfdw_modify_routine(struct FdwRoutine *routine);
extern List *cfdw_plan_change(PlannerInfo *root, struct ModifyTable *plan,
							  Index resultRelation);
extern void cfdw_begin_change(struct ModifyTableState *mtstate,
							  struct ResultRelInfo *rinfo, List *fdw_private,
							  Oid userid);
extern void cfdw_end_change(struct ResultRelInfo *rinfo);

/* in privileged.c */
typedef struct CfdwPrivileged
{
	Oid			userid;			/* who we were */
	int			sec_context;
	int			nest_level;		/* GUC nest level of the pinned search_path */
} CfdwPrivileged;

extern void cfdw_privileged_begin(Oid role, CfdwPrivileged *save);
extern void cfdw_privileged_end(const CfdwPrivileged *save);

/* in queue_state.c: the states of a queue row and the moves between them */
typedef enum CfdwQueueState
{
	CFDW_Q_PENDING,
	CFDW_Q_RETRY_WAIT,
	CFDW_Q_SENDING,
	CFDW_Q_DONE,
	CFDW_Q_DEAD,
	CFDW_Q_IN_DOUBT,
	CFDW_Q_HELD,
	CFDW_Q_NSTATES
} CfdwQueueState;

typedef enum CfdwQueueMove
{
	CFDW_MOVE_CLAIM,			/* pending, retry_wait -> sending */
	CFDW_MOVE_DONE,				/* sending -> done */
	CFDW_MOVE_PURGE,			/* done -> deleted */
	CFDW_MOVE_RETRY,			/* sending -> retry_wait */
	CFDW_MOVE_DEAD,				/* sending -> dead */
	CFDW_MOVE_REQUEUE,			/* dead, in_doubt, held -> pending */
	CFDW_MOVE_IN_DOUBT,			/* sending -> in_doubt */
	CFDW_MOVE_RESEND,			/* sending -> pending */
	CFDW_MOVE_UNSENDABLE,		/* pending, retry_wait -> dead */
	CFDW_MOVE_DEFER,			/* pending, retry_wait -> retry_wait */
	CFDW_MOVE_HOLD,				/* sending -> held */
	CFDW_MOVE_RELEASE,			/* held -> pending */
	CFDW_MOVE_POSTPONE,			/* sending -> retry_wait, attempt given back */
	CFDW_MOVE_DELAY,			/* pending, retry_wait -> retry_wait, unsent,
								 * no attempt counted */
	CFDW_MOVE_PROBE,			/* held -> pending, its versions kept */
	CFDW_MOVE_REHOLD,			/* held -> held, with other versions */
	CFDW_MOVE_HOLD_UNSENT,		/* pending, retry_wait -> held, unsent: the
								 * OAuth token endpoint refused the
								 * credentials */
	CFDW_MOVE_COUNT
} CfdwQueueMove;

/* What an outcome writes into its row. */
typedef struct CfdwQueueOutcome
{
	int			http_status;	/* 0: none */
	const char *remote_id;
	const char *action;			/* created, updated, unchanged, skipped */
	const char *response;		/* jsonb text */
	const char *error;
	TimestampTz next_attempt_at;	/* 0: now (the purge: its cut-off) */
	bool		sent;			/* a request went out (sent_at) */
	const char *credentials_version;	/* hold, rehold: the server's and
										 * user mapping's versions it was
										 * refused with */
} CfdwQueueOutcome;

extern const char *cfdw_queue_state_name(CfdwQueueState state);
extern int	cfdw_queue_move(CfdwQueueMove move, const int64 *ids, int n, Oid role,
							const CfdwQueueOutcome *o, bool *moved);

/* in queue.c */
extern void cfdw_queue_check(const CfdwTable *t);
extern int64 cfdw_enqueue(const CfdwTable *t, Oid userid, const CfdwRequest *req,
						  const char *context);

/* in worker.c */

typedef struct CfdwShared
{
	slock_t		mutex;			/* protects everything below */
	struct Latch *worker_latch; /* NULL while no worker runs */
	bool		wake_requested; /* set with the latch: the queue has work */
} CfdwShared;

extern CfdwShared *cfdw_shared; /* NULL without shared_preload_libraries */

extern void cfdw_worker_register(void);
extern void cfdw_wake_worker(void);
extern PGDLLEXPORT void cfdw_worker_main(Datum arg);

#endif							/* CONFLUENCE_FDW_H */
