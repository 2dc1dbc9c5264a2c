/*-------------------------------------------------------------------------
 *
 * gateway.c
 *		  Atlassian's API gateway: where a server's requests go when they go
 *		  through https://api.atlassian.com/ex/confluence/{cloudId}, and the
 *		  cloudId of a site, looked up once.
 *
 * Scoped API tokens and service accounts work only through the gateway, and
 * the gateway names a site by its cloudId.  A server gives it as cloud_id,
 * or says api_gateway 'true' with its domain (or base_url): then the cloudId
 * is read from the site's https://{domain}/_edge/tenant_info, which needs no
 * credentials and gets none, once per backend and server.  The cache entry
 * goes when the server's options change (a syscache callback, as the
 * connections of transport.c), so an ALTER SERVER takes effect at the next
 * statement.  A failed lookup is not kept: the next statement asks again.
 *
 * The cloudId goes into every URL, so only a well-formed one is taken
 * (cfdw_cloud_id_valid), from the option and from the answer alike.
 *
 * IDENTIFICATION
 *		  src/gateway.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <cjson/cJSON.h>

#include "catalog/pg_foreign_server.h"
#include "commands/defrem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "confluence_fdw.h"
#include "pure.h"

#define CFDW_CLOUD_ID_LEN 36

/* One server's cloudId as its site told it. */
typedef struct CloudIdEntry
{
	Oid			serverid;		/* hash key */
	uint32		server_hash;	/* of its pg_foreign_server row, for invalidation */
	char		cloud_id[CFDW_CLOUD_ID_LEN + 1];
} CloudIdEntry;

static HTAB *CloudIdHash = NULL;

/* A server's options changed (or the cache was reset): forget its cloudId. */
static void
cloud_id_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	CloudIdEntry *e;

	if (CloudIdHash == NULL)
		return;
	hash_seq_init(&scan, CloudIdHash);
	while ((e = hash_seq_search(&scan)) != NULL)
		if (hashvalue == 0 || e->server_hash == hashvalue)
			hash_search(CloudIdHash, &e->serverid, HASH_REMOVE, NULL);
}

static void
init_cache(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CloudIdEntry);
	CloudIdHash = hash_create("confluence_fdw cloudIds", 8, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, cloud_id_inval, (Datum) 0);
}

/* The server options this file reads. */
typedef struct GatewayOptions
{
	const char *domain;
	const char *base_url;
	const char *cloud_id;
	bool		api_gateway;
	const char *gateway_url;
} GatewayOptions;

static void
read_options(List *options, GatewayOptions *o)
{
	ListCell   *lc;

	memset(o, 0, sizeof(GatewayOptions));
	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "domain") == 0)
			o->domain = defGetString(def);
		else if (strcmp(def->defname, "base_url") == 0)
			o->base_url = defGetString(def);
		else if (strcmp(def->defname, "cloud_id") == 0)
			o->cloud_id = defGetString(def);
		else if (strcmp(def->defname, "api_gateway") == 0)
			o->api_gateway = cfdw_option_bool(def);
		else if (strcmp(def->defname, "api_gateway_url") == 0)
			o->gateway_url = defGetString(def);
	}
}

/* A URL option without its trailing '/'s. */
static char *
trimmed(const char *url)
{
	size_t		len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		len--;
	return pnstrdup(url, len);
}

/*
 * cfdw_gateway_url
 *		The gateway's origin: api_gateway_url, else https://api.atlassian.com.
 */
char *
cfdw_gateway_url(List *server_options)
{
	GatewayOptions o;

	read_options(server_options, &o);
	return o.gateway_url ? trimmed(o.gateway_url) : pstrdup(CFDW_DEFAULT_GATEWAY_URL);
}

/* The site a server names: https://{domain}, or its base_url. */
static char *
site_url(const GatewayOptions *o)
{
	if (o->base_url)
		return trimmed(o->base_url);
	if (o->domain)
		return psprintf("https://%s", o->domain);
	return NULL;
}

static CloudIdEntry *
cached(Oid serverid)
{
	if (CloudIdHash == NULL)
		return NULL;
	return hash_search(CloudIdHash, &serverid, HASH_FIND, NULL);
}

/*
 * cfdw_server_cloud_id
 *		The cloudId a server's requests reach, when it is known without
 *		asking anyone: its cloud_id option, the one api_gateway looked up in
 *		this backend, or the one in a base_url of the form
 *		.../ex/confluence/{cloudId}.  NULL otherwise (a site reached by its
 *		domain, or an api_gateway server not used yet in this backend).
 */
const char *
cfdw_server_cloud_id(ForeignServer *server)
{
	GatewayOptions o;
	CloudIdEntry *e;
	char		id[CFDW_CLOUD_ID_LEN + 1];

	read_options(server->options, &o);
	if (o.cloud_id)
		return o.cloud_id;
	if (o.api_gateway)
		return (e = cached(server->serverid)) != NULL ? pstrdup(e->cloud_id) : NULL;
	if (o.base_url && cfdw_cloud_id_of_url(o.base_url, id, sizeof(id)))
		return pstrdup(id);
	return NULL;
}

/* The error for a tenant_info answer that gives no cloudId. */
static void
lookup_failed(const char *servername, const char *url, const CfdwResponse *resp,
			  const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("could not look up the cloudId of server \"%s\"", servername),
			 errdetail("GET %s answered HTTP %ld with %s.", url, resp->status, what),
			 errhint("Check the server's domain (the site's atlassian.net name), or give its cloudId as option cloud_id instead of api_gateway.")));
}

/*
 * Ask the site for its cloudId: GET {site}/_edge/tenant_info without
 * credentials, on the user mapping's connection pool, with the server's
 * timeouts, proxy, CA and retry policy.
 */
static void
look_up(const CfdwTable *t, const char *site, char *out)
{
	CfdwTable	lt;
	CfdwConnection *conn;
	CfdwRequest req;
	CfdwResponse resp;
	char	   *volatile body = NULL;
	cJSON	   *root;
	cJSON	   *id;

	/*
	 * A site of its own that holds no credential: built field by field, so
	 * no credential kind, present or future, can be sent along.
	 */
	memcpy(&lt, t, sizeof(CfdwTable));
	memset(&lt.site, 0, sizeof(CfdwSite));
	lt.site.umid = t->site.umid;
	lt.site.serverid = t->site.serverid;
	lt.site.config_id = cfdw_next_config_id();
	lt.site.timeout_ms = t->site.timeout_ms;
	lt.site.connect_timeout_ms = t->site.connect_timeout_ms;
	lt.site.max_response_bytes = t->site.max_response_bytes;
	lt.site.keep_connections = t->site.keep_connections;
	lt.site.ca_file = t->site.ca_file;
	lt.site.proxy = t->site.proxy;
	lt.site.restricted = t->site.restricted;
	lt.base = (char *) site;

	memset(&req, 0, sizeof(req));
	req.method = CFDW_GET;
	req.url = psprintf("%s/_edge/tenant_info", site);
	req.path_for_messages = "/_edge/tenant_info";

	conn = cfdw_get_connection(&lt.site);
	PG_TRY();
	{
		cfdw_send(conn, &lt, &req, &resp);
		/* the body lives in the connection's slot: keep a copy */
		if (resp.outcome == CFDW_ANSWERED && resp.body_len > 0)
		{
			body = palloc(resp.body_len + 1);
			memcpy(body, resp.body, resp.body_len);
			body[resp.body_len] = '\0';
		}
	}
	PG_FINALLY();
	{
		cfdw_release_connection(conn, &lt.site);
	}
	PG_END_TRY();

	if (resp.outcome != CFDW_ANSWERED)
		cfdw_report_transport_error(&lt, &req, &resp);
	if (resp.status != 200)
		lookup_failed(t->servername, req.url, &resp, "no cloudId");
	root = body ? cfdw_json_parse_owned(body, resp.body_len) : NULL;
	id = root ? cJSON_GetObjectItemCaseSensitive(root, "cloudId") : NULL;
	if (!cJSON_IsString(id))
		lookup_failed(t->servername, req.url, &resp, "no \"cloudId\"");
	if (!cfdw_cloud_id_valid(id->valuestring))
		lookup_failed(t->servername, req.url, &resp, "a \"cloudId\" that is not a UUID");
	strlcpy(out, id->valuestring, CFDW_CLOUD_ID_LEN + 1);
}

/*
 * cfdw_gateway_base
 *		The base URL of a server that goes through the gateway,
 *		{gateway}/ex/confluence/{cloudId}, or NULL when it does not.  With
 *		api_gateway, t (the server and mapping resolved so far) lets it look
 *		the cloudId up when this backend does not know it yet; without t
 *		(EXPLAIN, which sends nothing) an unknown one is shown as
 *		"{cloudId}".
 */
char *
cfdw_gateway_base(ForeignServer *server, const CfdwTable *t)
{
	GatewayOptions o;
	char	   *gateway;
	char	   *site;
	CloudIdEntry *e;
	char		id[CFDW_CLOUD_ID_LEN + 1];

	read_options(server->options, &o);
	if (o.cloud_id == NULL && !o.api_gateway)
		return NULL;
	gateway = o.gateway_url ? trimmed(o.gateway_url) : pstrdup(CFDW_DEFAULT_GATEWAY_URL);
	if (o.cloud_id)
		return psprintf("%s/ex/confluence/%s", gateway, o.cloud_id);

	if ((e = cached(server->serverid)) != NULL)
		return psprintf("%s/ex/confluence/%s", gateway, e->cloud_id);
	site = site_url(&o);
	if (t == NULL || site == NULL)
		return psprintf("%s/ex/confluence/{cloudId}", gateway);

	look_up(t, site, id);
	if (CloudIdHash == NULL)
		init_cache();
	e = hash_search(CloudIdHash, &server->serverid, HASH_ENTER, NULL);
	e->server_hash = GetSysCacheHashValue1(FOREIGNSERVEROID,
										   ObjectIdGetDatum(server->serverid));
	strlcpy(e->cloud_id, id, sizeof(e->cloud_id));
	return psprintf("%s/ex/confluence/%s", gateway, id);
}
