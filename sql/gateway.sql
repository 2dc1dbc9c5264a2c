--
-- Atlassian's API gateway: servers with cloud_id, or api_gateway with the
-- cloudId looked up once from the site's /_edge/tenant_info; reads that
-- page through the gateway's /ex/confluence/{cloudId} prefix; scoped API
-- tokens refused an operation ("scope does not match"); test_connection
-- saying who the credentials belong to.  The stand-in is both the site
-- and the gateway (api_gateway_url); its cloudId is
-- 5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_token2 CFDW_TOKEN2
\getenv cfdw_bearer CFDW_BEARER
\getenv cfdw_bad_token CFDW_BAD_TOKEN
SELECT standin_reset();
\set cloud_id '5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a'

-- The stand-in's requests with our user and the objects' ids masked (ids
-- depend on the suites run before).
CREATE FUNCTION gw_requests(OUT seq int, OUT method text, OUT path text, OUT query text,
                            OUT auth text, OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, r->>'method', regexp_replace(r->>'path', '/[0-9]+(/|$)', '/<id>\1'), r->>'query',
         replace(r->>'auth', current_setting('gw.user'), '<user>'), (r->>'status')::int
    FROM standin_requests() r ORDER BY 1 $$;
SELECT set_config('gw.user', :'cfdw_user', false) IS NOT NULL AS user_set;
-- test_connection with the run-dependent parts masked
CREATE FUNCTION gw_tc(server text, OUT ok boolean, OUT http_status integer, OUT message text,
                      OUT account_id text, OUT display_name text, OUT email text)
LANGUAGE sql AS $$
  SELECT t.ok, t.http_status, replace(standin_masked(t.message), current_setting('gw.user'), '<user>'),
         t.account_id, t.display_name, replace(t.email, current_setting('gw.user'), '<user>')
    FROM confluence_fdw.test_connection(server) t $$;
-- EXPLAIN (VERBOSE) with the stand-in's address masked
CREATE FUNCTION gw_explain(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
    RETURN NEXT standin_masked(line);
  END LOOP;
END $$;
-- a statement's error (SQLSTATE, message, detail, hint, the context's
-- first line) with the stand-in's address and the objects' ids masked
CREATE FUNCTION gw_error(stmt text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text; det text; hint text; ctx text;
BEGIN
  EXECUTE stmt;
  RETURN NEXT 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL,
                          hint = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
  RETURN NEXT 'ERROR ' || st || ': ' || msg;
  RETURN NEXT 'DETAIL: ' || regexp_replace(standin_masked(det), 'Request id: [a-z0-9]+', 'Request id: R');
  RETURN NEXT 'HINT: ' || hint;
  RETURN NEXT 'CONTEXT: ' || regexp_replace(split_part(ctx, E'\n', 1), '/[0-9]+(/|\?|$)', '/<id>\1', 'g');
END $$;

-- ---------------------------------------------------------------------
-- Options: what each says, and the combinations refused
-- ---------------------------------------------------------------------

-- a cloudId is a UUID, and nothing else gets into the URL
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw OPTIONS (cloud_id 'acme');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id '../../5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id '5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a/wiki');
-- the gateway or the site, not both
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', domain 'acme.atlassian.net');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', base_url 'https://acme.atlassian.net');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway 'false');
-- api_gateway_url only with the gateway
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', api_gateway_url 'https://api.atlassian.com');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', api_gateway 'maybe');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url 'ftp://api.atlassian.com');
CREATE SERVER gw_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url 'https://me:pw@api.atlassian.com');
-- a later ALTER is checked against the options already there
CREATE SERVER gw_ok FOREIGN DATA WRAPPER confluence_fdw OPTIONS (domain 'acme.atlassian.net');
ALTER SERVER gw_ok OPTIONS (ADD cloud_id '5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a');
-- these are fine: api_gateway 'true' with the domain, cloud_id alone (also
-- with api_gateway 'true', which it implies)
ALTER SERVER gw_ok OPTIONS (ADD api_gateway 'true');
CREATE SERVER gw_ok2 FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id '5D1A0C3E-8B7F-4E2A-9C6D-0F1E2D3C4B5A', api_gateway 'true');
-- api_gateway 'true' without a site to ask: answered by test_connection
CREATE SERVER gw_nosite FOREIGN DATA WRAPPER confluence_fdw OPTIONS (api_gateway 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER gw_nosite OPTIONS (bearer_token 'x');
SELECT ok, http_status, message FROM confluence_fdw.test_connection('gw_nosite');

-- A role that is not a superuser: api.atlassian.com is in the default
-- allowed_hosts; a gateway elsewhere, or over plain http, is not its choice.
SHOW confluence_fdw.allowed_hosts;
CREATE ROLE regress_cfdw_gw_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO regress_cfdw_gw_owner;
SET ROLE regress_cfdw_gw_owner;
CREATE SERVER gw_user FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url 'http://127.0.0.1:1');
CREATE SERVER gw_user FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url 'https://gateway.example.com');
CREATE SERVER gw_user FOREIGN DATA WRAPPER confluence_fdw OPTIONS (cloud_id :'cloud_id');
CREATE SERVER gw_user2 FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', api_gateway 'true');
DROP SERVER gw_user, gw_user2;
RESET ROLE;

-- EXPLAIN sends nothing: a cloudId not looked up yet shows as {cloudId}.
CREATE FOREIGN TABLE gw_explain (id text, title text)
  SERVER gw_ok OPTIONS (endpoint 'pages');
CREATE FOREIGN TABLE gw_explain2 (id text, title text)
  SERVER gw_ok2 OPTIONS (endpoint 'pages');
SELECT * FROM gw_explain('SELECT id FROM gw_explain WHERE title = ''x''');
SELECT * FROM gw_explain('INSERT INTO gw_explain2 (title) VALUES (''x'')');
SELECT count(*) AS requests FROM standin_requests();
DROP FOREIGN TABLE gw_explain, gw_explain2;
DROP USER MAPPING FOR CURRENT_USER SERVER gw_nosite;
DROP SERVER gw_ok, gw_ok2, gw_nosite;

-- ---------------------------------------------------------------------
-- cloud_id: every request goes to {api_gateway_url}/ex/confluence/{cloud_id}
-- ---------------------------------------------------------------------
CREATE SERVER gw_id FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER gw_id
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA gw;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments) FROM SERVER gw_id INTO gw;
SELECT * FROM gw_explain('SELECT id FROM gw.pages WHERE title = ''x''');
INSERT INTO gw.pages (space_id, title, body) VALUES ('98306', 'Through the gateway', '<p>x</p>')
RETURNING title, http_status, webui IS NOT NULL AS has_webui;
SELECT title FROM gw.pages WHERE title = 'Through the gateway';
UPDATE gw.pages SET body = '<p>y</p>' WHERE title = 'Through the gateway' RETURNING version;
DELETE FROM gw.pages WHERE title = 'Through the gateway';
SELECT method, path, query, auth, status FROM gw_requests();

-- Paging through the prefix: Confluence writes next links relative to the
-- site ("/wiki/api/v2/pages?cursor=..."), without /ex/confluence/{cloudId};
-- each is joined onto the gateway's base, neither losing the prefix nor
-- doubling /wiki.
SELECT standin_reset();
SELECT standin_call('POST', 'seed', '{"collection": "pages", "count": 5, "title_prefix": "Gw "}')->>'created' AS seeded;
CREATE FOREIGN TABLE gw.pages_by_two (id text, title text)
  SERVER gw_id OPTIONS (endpoint '/wiki/api/v2/pages?limit=2', method 'GET');
SELECT title FROM gw.pages_by_two ORDER BY id;
SELECT method, path, regexp_replace(query, 'cursor=[A-Za-z0-9_-]+', 'cursor=C') AS query, status
  FROM gw_requests();
-- A next link that already carries the prefix is joined onto the origin:
-- the prefix is not doubled (which would be a 404).
SELECT standin_call('POST', 'reset?keep=objects') IS NOT NULL AS requests_forgotten;
SELECT standin_fault(jsonb_build_object('kind', 'status', 'status', 200, 'method', 'GET',
         'match', '/ex/confluence/', 'body',
         '{"results": [{"id": "1", "title": "First"}], "_links": {"next": "/ex/confluence/'
         || :'cloud_id' || '/wiki/api/v2/pages?limit=2&title=Gw%203"}}'));
SELECT title FROM gw.pages_by_two;
SELECT method, path, query, status FROM gw_requests();
-- a template reads 250 at a time and follows the links the same way
SELECT standin_call('POST', 'seed', '{"collection": "pages", "count": 300, "title_prefix": "Many "}')->>'created' AS seeded;
SELECT standin_call('POST', 'reset?keep=objects') IS NOT NULL AS requests_forgotten;
SELECT count(*) AS pages FROM gw.pages;
SELECT count(*) AS requests,
       count(*) FILTER (WHERE path = '/ex/confluence/' || :'cloud_id' || '/wiki/api/v2/pages') AS through_the_prefix,
       count(*) FILTER (WHERE query ~ 'cursor=') AS next_pages
  FROM gw_requests();
SELECT standin_reset();

-- ---------------------------------------------------------------------
-- api_gateway 'true': the cloudId is looked up once from the site
-- ---------------------------------------------------------------------
-- The site here is base_url (the stand-in); with domain it is
-- https://{domain}.  No credentials go to tenant_info.
CREATE SERVER gw_lookup FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', api_gateway 'true', api_gateway_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER gw_lookup
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE gw.lookup_pages (id text, space_id text, title text, http_status integer)
  SERVER gw_lookup OPTIONS (endpoint 'pages');
SELECT * FROM gw_explain('SELECT id FROM gw.lookup_pages');
INSERT INTO gw.lookup_pages (space_id, title) VALUES ('98306', 'Looked up') RETURNING http_status;
SELECT count(*) AS pages FROM gw.lookup_pages;
SELECT ok, http_status, message FROM gw_tc('gw_lookup');
-- one tenant_info, without credentials, then everything through the gateway
SELECT method, path, auth, status FROM gw_requests();
-- known now: EXPLAIN shows it
SELECT * FROM gw_explain('SELECT id FROM gw.lookup_pages');
-- A change to the server's options forgets it: looked up again once.
ALTER SERVER gw_lookup OPTIONS (ADD timeout_ms '20000');
SELECT standin_reset();
SELECT count(*) AS pages FROM gw.lookup_pages;
SELECT count(*) AS pages FROM gw.lookup_pages;
SELECT method, path, auth, status FROM gw_requests();
-- A site that does not answer with a cloudId is an error, and nothing is
-- kept: the next statement asks again.
ALTER SERVER gw_lookup OPTIONS (SET timeout_ms '20001');
SELECT standin_fault('{"kind": "status", "status": 404, "match": "/_edge/tenant_info"}');
SELECT * FROM gw_error('SELECT count(*) FROM gw.lookup_pages');
SELECT standin_fault('{"kind": "status", "status": 200, "match": "/_edge/tenant_info", "body": "{\"cloudId\": \"../../admin\"}"}');
SELECT * FROM gw_error('SELECT count(*) FROM gw.lookup_pages');
SELECT standin_fault('{"kind": "non_json", "status": 200, "match": "/_edge/tenant_info"}');
SELECT * FROM gw_error('SELECT count(*) FROM gw.lookup_pages');
SELECT count(*) AS pages FROM gw.lookup_pages;
SELECT count(*) FILTER (WHERE path = '/_edge/tenant_info') AS tenant_info_requests,
       count(*) FILTER (WHERE path = '/_edge/tenant_info' AND auth <> 'none') AS with_credentials
  FROM gw_requests();
-- a cloudId the gateway does not know: 404
ALTER SERVER gw_id OPTIONS (SET cloud_id '00000000-0000-0000-0000-000000000000');
SELECT count(*) FROM gw.pages;
ALTER SERVER gw_id OPTIONS (SET cloud_id '5d1a0c3e-8b7f-4e2a-9c6d-0f1e2d3c4b5a');

-- ---------------------------------------------------------------------
-- Scoped API tokens: 401 "scope does not match" names the operation and
-- the scope it needs
-- ---------------------------------------------------------------------
SELECT standin_reset();
-- the second token becomes a scoped token that may only read pages
SELECT standin_call('POST', 'scopes',
         jsonb_build_object('basic:' || :'cfdw_user' || ':2', jsonb_build_array('read:page:confluence'))::text)->>'ok' AS scoped;
CREATE SERVER gw_scoped FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (cloud_id :'cloud_id', api_gateway_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER gw_scoped
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
CREATE SCHEMA gws;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments) FROM SERVER gw_scoped INTO gws;
SELECT standin_call('POST', 'seed', '{"collection": "pages", "count": 1, "title_prefix": "Scoped "}')->>'first_id' AS page_id \gset
-- reading pages is allowed
SELECT title FROM gws.pages WHERE id = :'page_id';
-- writing is not: SQLSTATE 42501, the operation, the scope, a new token
INSERT INTO gws.pages (space_id, title) VALUES ('98306', 'Not allowed');
DO $$
BEGIN
  INSERT INTO gws.pages (space_id, title) VALUES ('98306', 'Not allowed');
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'insufficient_privilege (%)', SQLSTATE;
END $$;
SELECT * FROM gw_error('UPDATE gws.pages SET title = ''Renamed'' WHERE id = ' || quote_literal(:'page_id'));
SELECT * FROM gw_error('DELETE FROM gws.pages WHERE id = ' || quote_literal(:'page_id'));
SELECT * FROM gw_error('SELECT id FROM gws.footer_comments WHERE page_id = ' || quote_literal(:'page_id'));
-- a manual table's read needs its endpoint's scope (labels: read:page)
CREATE FOREIGN TABLE gws.page_labels (page_id text OPTIONS (send 'false'), name text)
  SERVER gw_scoped OPTIONS (endpoint '/wiki/api/v2/pages/{page_id}/labels', method 'GET');
SELECT name FROM gws.page_labels WHERE page_id = :'page_id';
CREATE FOREIGN TABLE gws.echo (a text) SERVER gw_scoped OPTIONS (endpoint '/wiki/echo/x');
INSERT INTO gws.echo VALUES ('x');
-- with on_error 'return' the answer comes back as a row
ALTER FOREIGN TABLE gws.pages OPTIONS (ADD on_error 'return');
INSERT INTO gws.pages (space_id, title) VALUES ('98306', 'Returned') RETURNING http_status, response;
ALTER FOREIGN TABLE gws.pages OPTIONS (DROP on_error);
SELECT shows_no_secret(r::text) AS no_secret_recorded FROM standin_requests() r LIMIT 1;

-- test_connection: the token may read pages, but neither say who it is
-- nor list spaces
SELECT * FROM gw_tc('gw_scoped');
-- with read:space:confluence the test passes, but nobody is named
SELECT standin_call('POST', 'scopes',
         jsonb_build_object('basic:' || :'cfdw_user' || ':2',
                            jsonb_build_array('read:page:confluence', 'read:space:confluence'))::text)->>'ok' AS scoped;
SELECT * FROM gw_tc('gw_scoped');
-- with read:confluence-user too, its owner is named
SELECT standin_call('POST', 'scopes',
         jsonb_build_object('basic:' || :'cfdw_user' || ':2',
                            jsonb_build_array('read:page:confluence', 'read:space:confluence',
                                              'read:confluence-user'))::text)->>'ok' AS scoped;
SELECT * FROM gw_tc('gw_scoped');

-- The scoped token sent to the site, not the gateway: a plain 401, whose
-- hint says a scoped token needs the gateway.
CREATE SERVER gw_site FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER gw_site
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
CREATE FOREIGN TABLE gw.site_pages (id text, title text) SERVER gw_site OPTIONS (endpoint 'pages');
SELECT count(*) FROM gw.site_pages;
SELECT ok, http_status, message FROM gw_tc('gw_site');
-- a bearer token that does not work: the words of a bearer token
ALTER USER MAPPING FOR CURRENT_USER SERVER gw_id
  OPTIONS (DROP username, DROP api_token, ADD bearer_token :'cfdw_bad_token');
SELECT count(*) FROM gw.pages;
SELECT ok, http_status, message FROM gw_tc('gw_id');

-- ---------------------------------------------------------------------
-- test_connection says who the credentials belong to
-- ---------------------------------------------------------------------
SELECT standin_reset();
SELECT * FROM gw_tc('standin');
SELECT method, path, query, auth, status FROM gw_requests();
ALTER USER MAPPING FOR CURRENT_USER SERVER gw_id
  OPTIONS (SET bearer_token :'cfdw_bearer');
SELECT * FROM gw_tc('gw_id');
-- a failure of the first request ends the test
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 500, "match": "/wiki/rest/api/user/current"}');
SELECT * FROM gw_tc('standin');
SELECT method, path, status FROM gw_requests();

-- Clean up.
SELECT standin_reset();
DROP SCHEMA gw, gws CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER gw_id;
DROP USER MAPPING FOR CURRENT_USER SERVER gw_lookup;
DROP USER MAPPING FOR CURRENT_USER SERVER gw_scoped;
DROP USER MAPPING FOR CURRENT_USER SERVER gw_site;
DROP SERVER gw_id, gw_lookup, gw_scoped, gw_site;
REVOKE USAGE ON FOREIGN DATA WRAPPER confluence_fdw FROM regress_cfdw_gw_owner;
DROP ROLE regress_cfdw_gw_owner;
DROP FUNCTION gw_requests(), gw_tc(text), gw_explain(text), gw_error(text);
