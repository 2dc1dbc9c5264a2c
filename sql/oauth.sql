--
-- OAuth 2.0 client credentials (Atlassian service accounts): client_id,
-- client_secret and scope in the user mapping, token_url on the server.
-- The access token is fetched on first use, kept (in shared memory: the
-- cluster preloads confluence_fdw) until shortly before it expires, fetched
-- again then, and once more when Confluence refuses a kept one.  The
-- stand-in's token endpoint (test/standin.py) counts what it issues; its
-- log names secrets and tokens by number only.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_bearer CFDW_BEARER
\getenv client_id CFDW_CLIENT_ID
\getenv client_secret CFDW_CLIENT_SECRET
\getenv client_secret2 CFDW_CLIENT_SECRET2
\set token_url :standin_url/oauth/token
\set dc_token_url :standin_url/rest/oauth2/latest/token

-- The stand-in's token endpoint: tokens live an hour, secret 1 is accepted.
CREATE FUNCTION standin_oauth(payload jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
  SELECT * FROM standin_call(CASE WHEN payload IS NULL THEN 'GET' ELSE 'POST' END,
                             'oauth', payload::text) $$;
SELECT standin_oauth('{"lifetime_s": 3600, "accept": [1]}') - 'issued' - 'valid' AS oauth;
SELECT standin_reset();

-- Every error caught below, for the final check that none shows a secret.
CREATE TABLE oa_seen (stmt text, code text, message text, detail text, hint text);

-- Text with the stand-in's address and the run's client id masked.
CREATE FUNCTION oa_masked(t text) RETURNS text LANGUAGE sql AS $$
  SELECT replace(standin_masked(t), current_setting('oa.client_id'), '<client_id>') $$;

-- Runs a statement and returns the error it raised, masked.
CREATE FUNCTION oa_try(stmt text, OUT code text, OUT message text, OUT detail text,
                       OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  code := '00000';
  message := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
    detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
  INSERT INTO oa_seen VALUES (stmt, code, message, detail, hint);
  message := oa_masked(message);
  detail := oa_masked(detail);
  hint := oa_masked(hint);
END $$;

-- The requests since the last reset: the token endpoint's with what they
-- asked for, Confluence's with the token they carried ("oauth" a good one,
-- "expired:oauth" one refused); tokens are numbered in order of use.
CREATE FUNCTION oa_log(OUT seq int, OUT method text, OUT path text, OUT auth text,
                       OUT token text, OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  WITH r AS (SELECT r, (r->>'seq')::int AS seq FROM standin_requests() r),
  tokens AS (SELECT substring(r->>'auth' FROM '[0-9]+$') AS n, min(seq) AS first
               FROM r WHERE r->>'auth' LIKE '%oauth:%' GROUP BY 1)
  SELECT r.seq, r->>'method', r->>'path', regexp_replace(r->>'auth', ':[0-9]+$', ''),
         CASE WHEN r->>'auth' LIKE '%oauth:%' THEN
           (SELECT 'token ' || count(*) FROM tokens t2
             WHERE t2.first <= (SELECT first FROM tokens t WHERE t.n = substring(r->>'auth' FROM '[0-9]+$')))
         END,
         (r->>'status')::int
    FROM r ORDER BY r.seq $$;

-- The token requests since the last reset, as the endpoint got them.
CREATE FUNCTION oa_token_requests(OUT path text, OUT content_type text, OUT params jsonb)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT r->>'path', r->>'content_type',
         p - 'client_id' || jsonb_build_object('client_id_ok', p->>'client_id' = current_setting('oa.client_id'))
    FROM standin_requests() r,
         LATERAL (SELECT CASE WHEN jsonb_typeof(r->'body_json') = 'object' THEN r->'body_json'
                              ELSE r->'body_form' END AS p) b
   WHERE r->>'path' IN ('/oauth/token', '/rest/oauth2/latest/token')
   ORDER BY (r->>'seq')::int $$;
SELECT set_config('oa.client_id', :'client_id', false) IS NOT NULL AS client_id_set;

-- test_connection's answer, masked
CREATE FUNCTION oa_tc(server text, OUT ok boolean, OUT http_status integer, OUT message text)
LANGUAGE sql AS $$
  SELECT t.ok, t.http_status, oa_masked(t.message) FROM confluence_fdw.test_connection(server) t $$;

-- No secret and no token in the stand-in's log (it names them by number).
CREATE FUNCTION oa_log_clean() RETURNS boolean LANGUAGE sql AS $$
  SELECT coalesce(bool_and(shows_no_secret(r::text) AND r::text !~ 'cfdwat-'), true)
    FROM standin_requests() r $$;

CREATE FUNCTION oa_fetches() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM standin_requests() r
   WHERE r->>'path' IN ('/oauth/token', '/rest/oauth2/latest/token') $$;

--
-- 1. The options, and the combinations that make no sense.
--
CREATE SERVER oa_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', token_url :'token_url');
-- client credentials are one kind of credential: never with another one
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (client_id :'client_id', client_secret :'client_secret', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (client_id :'client_id', client_secret :'client_secret', username :'cfdw_user');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (client_id :'client_id', client_secret :'client_secret', bearer_token :'cfdw_bearer');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (client_secret :'client_secret', username :'cfdw_user', api_token :'cfdw_token');
-- the two halves go together; scope only with them
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (client_secret :'client_secret');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (client_id :'client_id');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token', scope 'write:page:confluence');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (client_id :'client_id', client_secret '');
-- where they belong
CREATE SERVER oa_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', client_secret 'not-a-secret');
CREATE SERVER oa_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', client_id :'client_id');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (token_url :'token_url');
-- token_url is a URL like base_url
CREATE SERVER oa_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', token_url 'ftp://auth.example.com/token');
CREATE SERVER oa_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', token_url 'https://someone:pw@auth.example.com/token');
CREATE SERVER oa_bad FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', token_url 'not a url');
-- and holds to the same egress rules: a role that is not a superuser may
-- name allowed hosts only (auth.atlassian.com is one by default), over https
SHOW confluence_fdw.allowed_hosts;
CREATE ROLE regress_cfdw_oa_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO regress_cfdw_oa_owner;
SET ROLE regress_cfdw_oa_owner;
CREATE SERVER oa_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', token_url 'https://auth.example.com/oauth/token');
CREATE SERVER oa_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', token_url 'http://auth.atlassian.com/oauth/token');
CREATE SERVER oa_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', token_url 'https://auth.atlassian.com/oauth/token');
CREATE SERVER oa_user_dc FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', token_url 'https://acme.atlassian.net/rest/oauth2/latest/token');
DROP SERVER oa_user_srv;
DROP SERVER oa_user_dc;
RESET ROLE;
DROP OWNED BY regress_cfdw_oa_owner;
DROP ROLE regress_cfdw_oa_owner;

-- A mapping without any credential says which ones there are.
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv;
CREATE SCHEMA oa;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER oa_srv INTO oa;
SELECT * FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'no credentials')$$);
DROP USER MAPPING FOR CURRENT_USER SERVER oa_srv;

-- The good mapping.  The secret is never shown.
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_srv
  OPTIONS (client_id :'client_id', client_secret :'client_secret', scope 'write:page:confluence read:page:confluence');
SELECT option_name FROM pg_user_mappings m, pg_options_to_table(m.umoptions)
 WHERE m.srvname = 'oa_srv' ORDER BY 1;

--
-- 2. First use fetches a token; later requests of any kind reuse it.
--
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title, body) VALUES ('98306', 'OAuth first', '<p>1</p>');
-- Atlassian Cloud's path gets a JSON body; the secret is in it (the log
-- shows "secret:1": the first secret, never its value), the scope as set
SELECT * FROM oa_token_requests();
SELECT * FROM oa_log();
-- RETURNING, a pipelined INSERT, SELECT, UPDATE and test_connection: no new token
INSERT INTO oa.pages (space_id, title, body) VALUES ('98306', 'OAuth returning', '<p>2</p>')
  RETURNING title, id IS NOT NULL AS has_id;
INSERT INTO oa.pages (space_id, title, body)
  SELECT '98306', 'OAuth pipelined ' || i, '<p>p</p>' FROM generate_series(1, 20) i;
SELECT count(*) AS oauth_pages FROM oa.pages WHERE space_id = '98306' AND title LIKE 'OAuth %';
SELECT ok, http_status FROM confluence_fdw.test_connection('oa_srv');
SELECT oa_fetches() AS token_fetches,
       count(*) FILTER (WHERE auth = 'oauth') AS with_token,
       count(DISTINCT token) AS tokens_used,
       count(*) FILTER (WHERE status = 401) AS refused
  FROM oa_log() WHERE path LIKE '/wiki/%';
SELECT oa_log_clean() AS log_clean;
-- another session (the token is shared) needs no new one either
\c
SELECT set_config('oa.client_id', :'client_id', false) IS NOT NULL AS client_id_set;
SELECT ok, http_status FROM confluence_fdw.test_connection('oa_srv');
SELECT oa_fetches() AS token_fetches;

--
-- 3. Expiry: a token is kept until shortly before it expires (a tenth of
-- its life when that is shorter than 60 s), then fetched again.
--
SELECT standin_oauth('{"lifetime_s": 2}') ->> 'lifetime_s' AS lifetime_s;
-- (a new scope is a new credential: a token of its own)
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET scope 'write:page:confluence');
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Expiry 1');
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Expiry 2');
SELECT pg_sleep(2.1);
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Expiry 3');
SELECT * FROM oa_log();

--
-- 4. Confluence refuses a kept token (revoked early): a new one is fetched
-- and the request sent once more, on every path.
--
SELECT standin_oauth('{"lifetime_s": 3600}') ->> 'lifetime_s' AS lifetime_s;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET scope 'write:page:confluence write:comment:confluence');
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Before revoke');
SELECT standin_oauth('{"revoke": true}') ->> 'valid' AS valid_tokens;
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'After revoke')
  RETURNING title, id IS NOT NULL AS has_id;
SELECT * FROM oa_log();
-- pipelined: the rows in flight with the revoked token are sent again with
-- one new token
SELECT standin_oauth('{"revoke": true}') ->> 'valid' AS valid_tokens;
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title)
  SELECT '98306', 'Revoked pipelined ' || i FROM generate_series(1, 8) i;
SELECT oa_fetches() AS token_fetches,
       count(DISTINCT title) FILTER (WHERE status = 200) AS created
  FROM (SELECT r->'body_json'->>'title' AS title, (r->>'status')::int AS status
          FROM standin_requests() r WHERE r->>'method' = 'POST' AND r->>'path' = '/wiki/api/v2/pages') p;
-- a SELECT too
SELECT standin_oauth('{"revoke": true}') ->> 'valid' AS valid_tokens;
SELECT standin_reset();
SELECT count(*) AS pages_read FROM oa.pages WHERE space_id = '98306';
SELECT method, path, auth, token, status FROM oa_log();

-- A token fetched again and refused again is the error: 28000, saying that
-- the token just fetched was refused.  Only one new token is asked for.
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 401, "match": "/wiki/api/v2/pages", "times": 2,
                       "body": "{\"code\": 401, \"message\": \"Unauthorized\"}"}');
SELECT * FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Refused twice')$$);
SELECT method, path, auth, token, status FROM oa_log();
-- A token fetched for the request itself is not fetched again: the 401 is
-- the answer at once.
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET scope 'write:page:confluence delete:page:confluence');
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 401, "match": "/wiki/api/v2/pages", "times": 1}');
SELECT code, message FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Refused fresh')$$);
SELECT method, path, auth, token, status FROM oa_log();
-- test_connection says so too
SELECT standin_fault('{"kind": "status", "status": 401, "match": "/wiki/api/v2/spaces", "times": 2}');
SELECT * FROM oa_tc('oa_srv');

--
-- 5. The token endpoint refuses the credentials: 28000, and nothing is
-- sent to Confluence.
--
SELECT standin_oauth('{"accept": [2]}') -> 'accept' AS accepted_secrets;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET scope 'read:page:confluence');
SELECT standin_reset();
SELECT * FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Refused credentials')$$);
SELECT * FROM oa_try($$SELECT count(*) FROM oa.pages$$);
SELECT * FROM oa_tc('oa_srv');
SELECT method, path, auth, status FROM oa_log();

--
-- 6. A rotated secret takes effect at once: the next request fetches a
-- token with it, although the old one's token is still good.
--
SELECT standin_oauth('{"accept": [1, 2]}') -> 'accept' AS accepted_secrets;
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Before rotation');
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET client_secret :'client_secret2');
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'After rotation');
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'After rotation 2');
SELECT params->>'client_secret' AS secret FROM oa_token_requests();
SELECT method, path, auth, token, status FROM oa_log();
SELECT oa_log_clean() AS log_clean;

--
-- 7. The token endpoint fails: HV00N, nothing sent to Confluence.
--
SELECT standin_oauth('{"accept": [1]}') -> 'accept' AS accepted_secrets;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_srv OPTIONS (SET client_secret :'client_secret',
                                                           SET scope 'read:page:confluence write:page:confluence');
-- it answers 500
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 500, "match": "/oauth/token"}');
SELECT * FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Endpoint 500')$$);
SELECT method, path, status FROM oa_log();
-- it is not there at all
ALTER SERVER oa_srv OPTIONS (SET token_url 'http://127.0.0.1:1/oauth/token');
SELECT standin_reset();
SELECT code, message,
       detail LIKE '%. Nothing was sent to Confluence.' AS nothing_sent, hint
  FROM oa_try($$INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Endpoint away')$$);
SELECT ok, http_status, message LIKE 'could not obtain an access token from http://127.0.0.1:1/oauth/token: %' AS says_why
  FROM confluence_fdw.test_connection('oa_srv');
SELECT count(*) AS requests FROM standin_requests();

-- A Data Center token URL gets the form-encoded body of RFC 6749.
ALTER SERVER oa_srv OPTIONS (SET token_url :'dc_token_url');
SELECT standin_reset();
INSERT INTO oa.pages (space_id, title) VALUES ('98306', 'Data Center token');
SELECT * FROM oa_token_requests();
SELECT method, path, auth, token, status FROM oa_log();
SELECT oa_log_clean() AS log_clean;
ALTER SERVER oa_srv OPTIONS (SET token_url :'token_url');

--
-- 8. The queue: the worker uses the same shared token, and fetches new
-- ones as they expire while it sends.  Tokens live 2 s; 40 rows, one at a
-- time, each answered after 150 ms: about 6 s, three expiries or more.
-- Every row is delivered once.
--
CREATE SERVER oa_q FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', token_url :'token_url', max_concurrency '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER oa_q
  OPTIONS (client_id :'client_id', client_secret :'client_secret', scope 'write:page:confluence write:space:confluence');
CREATE SCHEMA oaq;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER oa_q INTO oaq;
ALTER FOREIGN TABLE oaq.pages OPTIONS (ADD delivery 'queue');
SELECT standin_reset();
-- a token fetched by this session is the worker's too
SELECT ok FROM confluence_fdw.test_connection('oa_q');
INSERT INTO oaq.pages (space_id, title) VALUES ('98306', 'Queued shared');
SELECT confluence_fdw.flush(7000) AS still_waiting;
SELECT oa_fetches() AS token_fetches, count(DISTINCT token) AS tokens_used
  FROM oa_log() WHERE path LIKE '/wiki/%';
-- One fetch at a time: the worker and this session need a new token at
-- the same moment, while the endpoint takes a second to answer; one of
-- them fetches it, the other waits for that fetch.
CREATE SCHEMA oaqi;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER oa_q INTO oaqi;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_q OPTIONS (SET scope 'write:page:confluence read:space:confluence');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 1000, "match": "/oauth/token"}');
INSERT INTO oaq.pages (space_id, title) VALUES ('98306', 'Queued at once');
INSERT INTO oaqi.pages (space_id, title) VALUES ('98306', 'Sent at once');
SELECT confluence_fdw.flush(7000) AS still_waiting;
SELECT oa_fetches() AS token_fetches, count(*) AS pages_sent, count(DISTINCT token) AS tokens_used
  FROM oa_log() WHERE path LIKE '/wiki/%';

SELECT standin_oauth('{"lifetime_s": 2}') ->> 'lifetime_s' AS lifetime_s;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_q OPTIONS (SET scope 'write:page:confluence');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 150, "match": "/wiki/api/v2/pages", "method": "POST", "times": -1}');
DELETE FROM confluence_fdw.queue;
INSERT INTO oaq.pages (space_id, title)
  SELECT '98306', 'Queued expiring ' || i FROM generate_series(1, 40) i;
SELECT confluence_fdw.flush(7000) IS NOT NULL AS flushed;
SELECT confluence_fdw.flush(7000) AS still_waiting;
SELECT state, count(*) FROM confluence_fdw.queue GROUP BY 1;
SELECT count(*) AS posts, count(DISTINCT r->'body_json'->>'title') AS titles,
       count(*) FILTER (WHERE (r->>'status')::int = 200) AS created
  FROM standin_requests() r WHERE r->>'method' = 'POST' AND r->>'path' = '/wiki/api/v2/pages';
SELECT oa_fetches() >= 4 AS three_expiries_or_more,
       count(DISTINCT token) >= 4 AS tokens_used_four_or_more
  FROM oa_log() WHERE path LIKE '/wiki/%' AND status = 200;
SELECT oa_log_clean() AS log_clean;
-- The token endpoint refuses the mapping's client credentials (a secret
-- revoked in Atlassian Administration): the rows are held, not sent and
-- not counted as attempts, until the mapping changes; then they go.
CREATE FUNCTION oa_wait_until(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  ok boolean;
BEGIN
  FOR i IN 1..150 LOOP
    EXECUTE 'SELECT ' || cond INTO ok;
    EXIT WHEN ok;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN ok;
END $$;
SELECT standin_reset();
DELETE FROM confluence_fdw.queue;
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_q OPTIONS (SET client_secret :'client_secret2');
INSERT INTO oaq.pages (space_id, title)
  SELECT '98306', 'Queued refused ' || i FROM generate_series(1, 3) i;
SELECT oa_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'held') = 3$$) AS held;
SELECT state, attempts, http_status, oa_masked(error) AS error
  FROM confluence_fdw.queue ORDER BY id LIMIT 1;
SELECT count(*) AS pages_sent FROM standin_requests() r WHERE r->>'path' LIKE '/wiki/%';
ALTER USER MAPPING FOR CURRENT_USER SERVER oa_q OPTIONS (SET client_secret :'client_secret');
SELECT oa_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done') = 3$$) AS delivered;
SELECT count(*) AS posts, count(DISTINCT r->'body_json'->>'title') AS titles
  FROM standin_requests() r WHERE r->>'method' = 'POST' AND r->>'path' = '/wiki/api/v2/pages';
SELECT standin_reset();
DELETE FROM confluence_fdw.queue;
SELECT standin_oauth('{"lifetime_s": 3600, "accept": [1]}') - 'issued' - 'valid' AS oauth;

--
-- 9. No secret and no token in any error, message or log line of this
-- suite.  (test/check_secrets.py searches the outputs and the server log
-- for the secrets and for the form of the stand-in's tokens.)
--
SELECT count(*) AS errors_seen,
       bool_and(shows_no_secret(concat_ws(' ', stmt, message, detail, hint))) AS no_secret,
       bool_and(concat_ws(' ', message, detail, hint) !~ 'cfdwat-') AS no_token
  FROM oa_seen;

DROP SCHEMA oa CASCADE;
DROP SCHEMA oaq CASCADE;
DROP SCHEMA oaqi CASCADE;
DROP SERVER oa_srv CASCADE;
DROP SERVER oa_q CASCADE;
