--
-- confluence_fdw.test_connection(server): the SQL form of the Test button.
-- GET /wiki/rest/api/user/current (who the credentials belong to) and GET
-- /wiki/api/v2/spaces?limit=1 (may they read) with the caller's user
-- mapping; problems are answered (ok false, a message), not raised.  Also
-- confluence_fdw.disconnect_all().  Scoped tokens and the gateway: gateway.sql.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_bearer CFDW_BEARER
\getenv cfdw_bad_token CFDW_BAD_TOKEN
SELECT standin_reset();

-- The answer with the run-dependent parts masked: the stand-in's port, the
-- user name, libcurl's timing.
CREATE FUNCTION tc(server text, OUT ok boolean, OUT http_status integer, OUT message text)
LANGUAGE sql AS $$
  SELECT t.ok, t.http_status,
         regexp_replace(regexp_replace(replace(standin_masked(t.message), current_setting('tc.user'), '<user>'),
                                       '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g'),
                        'after [0-9]+ ms', 'after N ms', 'g')
    FROM confluence_fdw.test_connection(server) t $$;
SELECT set_config('tc.user', :'cfdw_user', false) IS NOT NULL AS user_set;

-- Nothing is open in a new session.
SELECT confluence_fdw.disconnect_all();

-- The good mapping: ok, 200, authenticated as the mapping's user.
SELECT * FROM tc('standin');
-- who: the account of the mapping's credentials (the stand-in shows the
-- Basic user name as its e-mail)
SELECT account_id, display_name, email = :'cfdw_user' AS email_is_user
  FROM confluence_fdw.test_connection('standin');
SELECT standin_reset();
SELECT * FROM tc('standin');
-- the requests: GET /wiki/rest/api/user/current and GET
-- /wiki/api/v2/spaces?limit=1, with Basic auth, no body
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query,
       r->>'auth' = 'basic:' || :'cfdw_user' || ':1' AS basic_auth_ok,
       r->>'body_size' AS body_size, r->>'status' AS status
  FROM standin_requests() r;

-- The connection is kept for the next request, and closed on demand.
SELECT * FROM tc('standin');
SELECT confluence_fdw.disconnect_all();
SELECT confluence_fdw.disconnect_all();
SELECT * FROM tc('standin');
SELECT string_agg(r->>'conn', ',' ORDER BY (r->>'seq')::int) AS connections_used
  FROM standin_requests() r;
-- an INSERT opens one too
SELECT confluence_fdw.disconnect_all();
INSERT INTO pages (space_id, title) VALUES ('98306', 'Before disconnect');
SELECT confluence_fdw.disconnect_all();
SELECT confluence_fdw.disconnect_all();
-- with keep_connections off nothing stays open
ALTER SERVER standin OPTIONS (ADD keep_connections 'off');
SELECT ok, http_status FROM tc('standin');
INSERT INTO pages (space_id, title) VALUES ('98306', 'Not kept');
SELECT confluence_fdw.disconnect_all();
ALTER SERVER standin OPTIONS (DROP keep_connections);

-- A server of its own, so that the main mapping stays good.
CREATE SERVER tc_alt FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_alt
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SELECT * FROM tc('tc_alt');
-- a bad token: 401, and the message points at the user mapping; the
-- changed mapping takes effect at once
ALTER USER MAPPING FOR CURRENT_USER SERVER tc_alt
  OPTIONS (SET api_token :'cfdw_bad_token');
SELECT * FROM tc('tc_alt');
SELECT shows_no_secret(message) AS token_not_in_message
  FROM confluence_fdw.test_connection('tc_alt');
-- a bearer token
ALTER USER MAPPING FOR CURRENT_USER SERVER tc_alt
  OPTIONS (DROP username, DROP api_token, ADD bearer_token :'cfdw_bearer');
SELECT * FROM tc('tc_alt');
SELECT standin_reset();
SELECT * FROM tc('tc_alt');
SELECT r->>'path' AS path, r->>'auth' AS auth FROM standin_requests() r;
-- the main mapping is still good
SELECT * FROM tc('standin');

-- Answers that are not a success, from the stand-in's faults.
SELECT standin_fault('{"kind": "status", "status": 403, "match": "/wiki/api/v2/spaces"}');
SELECT * FROM tc('standin');
SELECT standin_fault('{"kind": "status", "status": 500, "match": "/wiki/api/v2/spaces"}');
SELECT * FROM tc('standin');
SELECT standin_fault('{"kind": "status", "status": 429, "match": "/wiki/api/v2/spaces", "headers": {"Retry-After": "1"}}');
SELECT * FROM tc('standin');
SELECT standin_reset();
-- a redirect to the stand-in itself, which would be recorded if followed
SELECT standin_fault(jsonb_build_object('kind', 'redirect', 'status', 302,
         'location', :'standin_url' || '/wiki/echo/redirected', 'match', '/wiki/api/v2/spaces'));
SELECT * FROM tc('standin');
-- not followed: one request for spaces only
SELECT count(*) AS requests, min(r->>'status') AS status FROM standin_requests() r
 WHERE r->>'path' = '/wiki/api/v2/spaces';

-- A base_url that is not a Confluence site: 404.
SELECT format('%s/not-confluence', :'standin_url') AS wrong_url \gset
CREATE SERVER tc_404 FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'wrong_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_404
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SELECT * FROM tc('tc_404');

-- A host that does not resolve: no HTTP status.  The lookup's answer
-- reaches the transport through a descriptor libcurl names to wait on (a
-- socket pair in libcurl 7.88, an eventfd since 8.9): with DEBUG1 shown,
-- the transport would say if it could not wait on it (only the resolve
-- timeout would then end the lookup, "Resolving timed out").
CREATE SERVER tc_nohost FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'nonexistent.invalid');
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_nohost
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FUNCTION tc_debug(server text, OUT ok boolean, OUT http_status integer, OUT message text)
LANGUAGE sql SET client_min_messages = debug1 AS $$ SELECT * FROM tc(server) $$;
SELECT ok, http_status,
       regexp_replace(message, ' \(.*\)$', ' (...)') AS message
  FROM tc_debug('tc_nohost');

-- A refused connection: no HTTP status.
CREATE SERVER tc_refused FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'http://127.0.0.1:1');
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_refused
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SELECT ok, http_status, regexp_replace(message, ': .*$', ': ...') AS message
  FROM tc('tc_refused');

-- A role without a user mapping gets an answer, not an error.
CREATE ROLE cfdw_tc_nomap;
SET ROLE cfdw_tc_nomap;
SELECT * FROM confluence_fdw.test_connection('standin');
RESET ROLE;
-- a PUBLIC mapping serves every role
CREATE USER MAPPING FOR PUBLIC SERVER tc_alt
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SET ROLE cfdw_tc_nomap;
SELECT ok, http_status FROM confluence_fdw.test_connection('tc_alt');
RESET ROLE;

-- A mapping without credentials, and a server without domain or base_url:
-- answered too.
CREATE SERVER tc_nocreds FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_nocreds;
SELECT ok, http_status, message ~ 'no credentials' AS says_no_credentials
  FROM confluence_fdw.test_connection('tc_nocreds');
CREATE SERVER tc_nobase FOREIGN DATA WRAPPER confluence_fdw;
CREATE USER MAPPING FOR CURRENT_USER SERVER tc_nobase
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SELECT ok, http_status, message ~ 'domain' AS says_domain
  FROM confluence_fdw.test_connection('tc_nobase');

-- A server that does not exist is an error, as for any server name.
SELECT * FROM confluence_fdw.test_connection('no_such_server');
-- STRICT: NULL in, NULL out
SELECT * FROM confluence_fdw.test_connection(NULL);

-- Clean up.
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_alt;
DROP USER MAPPING FOR PUBLIC SERVER tc_alt;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_404;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_nohost;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_refused;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_nocreds;
DROP USER MAPPING FOR CURRENT_USER SERVER tc_nobase;
DROP SERVER tc_alt, tc_404, tc_nohost, tc_refused, tc_nocreds, tc_nobase;
DROP ROLE cfdw_tc_nomap;
DROP FUNCTION tc_debug(text), tc(text);
