/*-------------------------------------------------------------------------
 *
 * confluence_fdw.h
 *		  The one shared header of confluence_fdw: a foreign data wrapper that
 *		  turns INSERTs into Confluence Cloud REST API v2 requests.
 *
 * The modules and what they own:
 *	options.c	option catalog, validator, resolving server + user mapping +
 *				table + columns into one CfdwTable
 *	templates.c	the endpoint templates and IMPORT FOREIGN SCHEMA
 *	request.c	a row to a request body and URL
 *	response.c	a response to RETURNING values; Confluence error messages
 *	http.c		libcurl: handle cache per user mapping, interrupt-aware
 *				transfers, timeouts
 *
 * IDENTIFICATION
 *		  src/confluence_fdw.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONFLUENCE_FDW_H
#define CONFLUENCE_FDW_H

#include "postgres.h"

#include <time.h>

#include "access/attnum.h"
#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"

#define CFDW_VERSION "1.0"
#define CFDW_USER_AGENT "confluence_fdw/" CFDW_VERSION

/* Defaults of the server options (DESIGN §2). */
#define CFDW_DEFAULT_TIMEOUT_MS			30000
#define CFDW_DEFAULT_CONNECT_TIMEOUT_MS	10000
#define CFDW_DEFAULT_MAX_RESPONSE_BYTES	(16 * 1024 * 1024)
#define CFDW_DEFAULT_MAX_RETRIES		4
#define CFDW_DEFAULT_MAX_RETRY_WAIT_MS	60000

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
	CFDW_GET					/* only for confluence_fdw_test_connection */
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
	CFDW_RESP_STATUS			/* '$status': the HTTP status code */
} CfdwResponseKind;

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
} CfdwColumn;

struct CfdwTemplate;

/*
 * Everything needed to send rows of one foreign table: the server, the user
 * mapping and the table and column options, resolved at execution time so
 * that changed options and tokens take effect without re-planning.
 */
typedef struct CfdwTable
{
	Oid			relid;
	char	   *relname;
	Oid			serverid;
	char	   *servername;
	Oid			umid;			/* user mapping used (PUBLIC or the user's) */

	/* server */
	char	   *base;			/* "https://domain" or base_url, no trailing '/' */
	int			timeout_ms;
	int			connect_timeout_ms;
	int64		max_response_bytes;
	bool		keep_connections;
	int			max_retries;
	int			max_retry_wait_ms;
	int			max_concurrency;	/* table option, else server's */
	char	   *ca_file;		/* CA bundle for TLS verification */
	char	   *proxy;			/* proxy origin, or NULL for none */
	bool		restricted;		/* owner is no superuser: egress control */

	/* user mapping; never printed */
	char	   *username;
	char	   *api_token;
	char	   *bearer_token;

	/* table */
	const struct CfdwTemplate *template;	/* NULL in manual mode */
	char	   *endpoint;		/* the option as written */
	char	   *path;			/* path template, starts with '/' */
	CfdwMethod	method;
	char	   *representation; /* default body.representation */
	CfdwFormat	format;
	const char *content_type;	/* of the body, from format (or headers) */
	List	   *headers;		/* extra "Name: value" lines, from headers */
	bool		batch_mode;		/* rows go as one array per request */
	int			batch_size;
	bool		on_error_return;	/* HTTP errors come back as rows */
	List	   *url_parts;		/* base + path compiled: String literals and
								 * Integer column indexes (placeholders) */
	char	   *fixed_url;		/* the URL when there are no placeholders */

	uint64		config_id;		/* identifies this resolution to http.c */

	/* columns, in attribute order, dropped ones left out */
	int			ncolumns;
	CfdwColumn *columns;
} CfdwTable;

/* A finished HTTP exchange, as http.c hands it back. */
typedef struct CfdwResponse
{
	int			curl_code;		/* CURLE_OK when an answer arrived */
	char		curl_error[256];	/* libcurl's message when it did not */
	bool		too_large;		/* body exceeded max_response_bytes */
	bool		sent_any;		/* any request byte went out */
	long		proxy_status;	/* a proxy's answer to CONNECT, 0 when none */
	bool		egress_refused; /* every address was internal (restricted) */
	char		refused_address[64];	/* the last one refused */
	long		status;			/* HTTP status, 0 when none */
	const char *body;			/* NUL-terminated; owned by http.c until the
								 * next request on the same connection */
	size_t		body_len;
	char		content_type[128];
	char		location[512];
	char		retry_after[64];
	char		request_id[128];	/* atl-request-id / atl-traceid */
} CfdwResponse;

/* A request, as request.c builds it for http.c. */
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
extern const char *cfdw_method_name(CfdwMethod method);

/* in confluence_fdw.c */
extern char *cfdw_allowed_hosts;	/* confluence_fdw.allowed_hosts */

/* in options.c */
extern CfdwTable *cfdw_resolve_table(Relation rel, Oid userid);
extern int	cfdw_table_batch_size(Oid relid);
extern char *cfdw_describe_request(Oid relid);
extern void cfdw_resolve_server(CfdwTable *t, ForeignServer *server,
								UserMapping *um);
extern char *cfdw_server_problem(ForeignServer *server, UserMapping *um,
								 const char **hint);
extern bool cfdw_parse_method(const char *s, CfdwMethod *method);
extern bool cfdw_option_bool(DefElem *def);
extern List *cfdw_split_path(const char *dotted);
extern char *cfdw_camel_case(const char *name);

/* in templates.c */
typedef struct CfdwTemplateColumn
{
	const char *name;
	const char *type;			/* SQL type name for IMPORT */
	const char *field;			/* request field, or NULL */
	const char *response_field; /* response path, or NULL */
} CfdwTemplateColumn;

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
} CfdwTemplate;

extern const CfdwTemplate *cfdw_find_template(const char *name);
extern const char *cfdw_template_names(void);
extern const CfdwTemplateColumn *cfdw_template_column(const CfdwTemplate *tmpl,
													  const char *colname);
extern void cfdw_check_required(const CfdwTable *t, void *json_root);
extern bool cfdw_valid_representation(const char *value);
extern char *cfdw_representation_hint(void);
extern const char *cfdw_default_representation(void);
extern List *cfdw_import_schema(ImportForeignSchemaStmt *stmt, Oid serverOid);

/* in request.c */
extern void cfdw_compile_url(CfdwTable *t);
extern char *cfdw_build_url(const CfdwTable *t, Datum *values, bool *isnull);
extern void *cfdw_build_row_tree(const CfdwTable *t, Datum *values, bool *isnull,
								 void *batch);
extern void cfdw_serialize_body(const CfdwTable *t, void *tree, bool batch,
								StringInfo out);
extern bool cfdw_build_body(const CfdwTable *t, Datum *values, bool *isnull,
							StringInfo out);
extern void *cfdw_json_parse_owned(const char *text, size_t len);
extern void *cfdw_json_array_owned(void);

/* in response.c */
extern void cfdw_fill_response(const CfdwTable *t, const CfdwResponse *resp,
							   Datum *values, bool *isnull);
extern void cfdw_report_http_error(const CfdwTable *t, const CfdwRequest *req,
								   const CfdwResponse *resp);
extern void cfdw_report_transport_error(const CfdwTable *t,
										const CfdwRequest *req,
										const CfdwResponse *resp);
extern char *cfdw_error_summary(const CfdwResponse *resp);
extern char *cfdw_transport_summary(const CfdwTable *t, const CfdwResponse *resp);

/* in http.c */
typedef struct CfdwConnection CfdwConnection;

extern void cfdw_http_init(void);
extern CfdwConnection *cfdw_get_connection(const CfdwTable *t);
extern void cfdw_release_connection(CfdwConnection *conn, const CfdwTable *t);
extern void cfdw_http_send(CfdwConnection *conn, const CfdwTable *t,
						   const CfdwRequest *req, CfdwResponse *resp);
extern int	cfdw_disconnect_all(void);

/* A pipeline: one statement's requests in flight on a connection. */
typedef struct CfdwPipeline
{
	int64		nsent;			/* rows answered (successfully, or returned) */
	int			failed_slot;	/* slot of the first failure, or 0 */
	int			stopped_in_flight;	/* stopped by an interrupt while waiting */
} CfdwPipeline;

extern int	cfdw_pipeline_slot(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p);
extern void cfdw_pipeline_start(CfdwConnection *c, const CfdwTable *t, int slot,
								const CfdwRequest *req, int64 row_no);
extern bool cfdw_pipeline_drain(CfdwConnection *c, const CfdwTable *t, CfdwPipeline *p,
								CfdwRequest *req, CfdwResponse *resp, int64 *row_no);
extern int	cfdw_pipeline_busy(CfdwConnection *c, const CfdwTable *t);
extern uint64 cfdw_next_config_id(void);


#endif							/* CONFLUENCE_FDW_H */
