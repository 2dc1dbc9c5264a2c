--
-- HTTP transport: connection reuse per user mapping, pipelining, timeouts,
-- cancel, response size limit, redirects, bearer auth.  The stand-in counts
-- the TCP connections that carried requests since its last reset, and
-- numbers them (conn) in its request log.
--
\getenv standin_url STANDIN_URL
\getenv standin_url2 STANDIN_URL2
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_bearer CFDW_BEARER

-- A server of this test's own, so that its ALTERs touch no other test.
-- max_concurrency '1': one request at a time, so the connection each row
-- used is predictable; section 2 sends several at a time.
CREATE SERVER http_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_concurrency '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER http_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA http_t;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER http_srv INTO http_t;

-- Runs a statement and shows the error it raised: SQLSTATE, message and
-- detail, with the stand-in's addresses and curl's elapsed milliseconds
-- masked (they change from run to run).
CREATE FUNCTION http_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  msg text;
  det text;
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  det := replace(det, (SELECT url2 FROM standin_cfg), '<standin_url2>');
  det := regexp_replace(det, '\m\d+ ms\M', 'N ms', 'g');
  -- libcurl's own words, as 7.x wrote them (8.x says "Could not")
  det := replace(det, 'Could not connect to server', 'Couldn''t connect to server');
  -- and "HOST:PORT" where 7.x said "HOST port PORT"
  det := regexp_replace(det, 'to (\d+\.\d+\.\d+\.\d+):(\d+) after', 'to \1 port \2 after', 'g');
  det := regexp_replace(det, '\m\d+ milliseconds\M', 'N milliseconds', 'g');
  RETURN SQLSTATE || ': ' || msg || coalesce(E'\nDETAIL: ' || det, '');
END $$;

-- Requests since the last reset: connection number and outcome.
CREATE FUNCTION http_log(OUT seq int, OUT conn int, OUT title text,
                         OUT fault text, OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, (r->>'conn')::int, r->'body_json'->>'title',
         r->>'fault', (r->>'status')::int
    FROM standin_requests() r ORDER BY 1 $$;

--
-- 1. One connection for many rows and many statements of a session.
--
SELECT standin_reset();
INSERT INTO http_t.pages (space_id, title)
  SELECT '98306', 'Conn row ' || g FROM generate_series(1, 20) g;
SELECT s->'requests' AS requests, s->'connections' AS connections, s->'pages' AS pages
  FROM standin_stats() s;
-- a second statement in the same session: no new connection
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn same session');
SELECT s->'requests' AS requests, s->'connections' AS connections
  FROM standin_stats() s;
SELECT conn, count(*) FROM http_log() GROUP BY conn ORDER BY conn;

-- A new session has its own connection.
\c
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn new session');
SELECT s->'requests' AS requests, s->'connections' AS connections
  FROM standin_stats() s;

-- Changing the server's or the user mapping's options drops the cached
-- connection: the next statement opens a new one (conn 3, then conn 4).
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn before alter');
ALTER SERVER http_srv OPTIONS (ADD timeout_ms '5000');
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn after alter server');
ALTER USER MAPPING FOR CURRENT_USER SERVER http_srv
  OPTIONS (SET api_token :'cfdw_token');
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn after alter mapping');
SELECT seq, conn, title FROM http_log() WHERE seq > 21;

-- confluence_fdw.disconnect_all() closes it too; false when none is open.
SELECT standin_reset();
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn before disconnect');
SELECT confluence_fdw.disconnect_all();
SELECT confluence_fdw.disconnect_all();
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Conn after disconnect');
SELECT seq, conn, title FROM http_log();

-- keep_connections 'false': the rows of one statement share a connection,
-- which is closed at the end of the statement.
ALTER SERVER http_srv OPTIONS (ADD keep_connections 'false');
SELECT standin_reset();
INSERT INTO http_t.pages (space_id, title)
  SELECT '98306', 'No keep ' || g FROM generate_series(1, 3) g;
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'No keep 4');
SELECT seq, conn, title FROM http_log();
ALTER SERVER http_srv OPTIONS (DROP keep_connections);

--
-- 2. Rows that need no answer (no RETURNING, no row trigger) are pipelined:
-- up to max_concurrency requests in flight, each on its own connection.
-- Every answer is delayed by 300 ms here, so the requests in flight really
-- overlap: 8 rows four at a time take about 0.6 s instead of 2.4 s.
--
ALTER FOREIGN TABLE http_t.pages OPTIONS (ADD max_concurrency '4');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 300, "times": -1}');
SELECT clock_timestamp() AS t0 \gset
INSERT INTO http_t.pages (space_id, title)
  SELECT '98306', 'Pipelined ' || g FROM generate_series(1, 8) g;
SELECT clock_timestamp() - :'t0' < interval '2 s' AS overlapped;
-- each row sent once, on four connections
SELECT s->'requests' AS requests, s->'pages' AS pages, s->'connections' AS connections
  FROM standin_stats() s;
SELECT count(DISTINCT title) AS distinct_titles, max(conn) AS connections FROM http_log();
-- a second statement reuses them
INSERT INTO http_t.pages (space_id, title)
  SELECT '98306', 'Pipelined again ' || g FROM generate_series(1, 8) g;
SELECT s->'requests' AS requests, s->'pages' AS pages, s->'connections' AS connections
  FROM standin_stats() s;
ALTER FOREIGN TABLE http_t.pages OPTIONS (DROP max_concurrency);

--
-- 3. statement_timeout and cancel interrupt a slow answer at once.  The
-- delayed answers are canned (status 200, '{}'), so the stand-in creates
-- nothing after the client has gone.
--
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 5000, "status": 200, "body": "{}"}');
SET statement_timeout = '500ms';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Slow timeout');
RESET statement_timeout;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS interrupted_promptly;
-- the same session goes on, on a new connection (the interrupted one is
-- discarded: its state is unknown)
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'After timeout')
  RETURNING http_status;
SELECT seq, conn, title, fault, status FROM http_log();

-- The same with requests pipelined.
ALTER FOREIGN TABLE http_t.pages OPTIONS (ADD max_concurrency '4');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 5000, "status": 200, "body": "{}", "times": 2}');
SET statement_timeout = '500ms';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Slow pipelined 1'), ('98306', 'Slow pipelined 2');
RESET statement_timeout;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS interrupted_promptly;
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'After pipelined timeout');
SELECT title, fault, status FROM http_log() ORDER BY title;

-- pg_cancel_backend from another session, as soon as this backend waits in
-- a transfer (wait event type Extension): one request at a time ...
ALTER FOREIGN TABLE http_t.pages OPTIONS (SET max_concurrency '1');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 5000, "status": 200, "body": "{}"}');
SET application_name = 'cfdw_cancel_me';
\! (for i in $(seq 1 100); do r=$(psql -X -At -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'cfdw_cancel_me' AND state = 'active' AND wait_event_type = 'Extension'"); [ "$r" = t ] && break; sleep 0.1; done) >/dev/null 2>&1 &
SELECT clock_timestamp() AS t0 \gset
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Slow cancel');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS interrupted_promptly;
RESET application_name;
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'After cancel')
  RETURNING http_status;
SELECT seq, conn, title, fault, status FROM http_log();

-- ... and pipelined.
ALTER FOREIGN TABLE http_t.pages OPTIONS (SET max_concurrency '4');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 5000, "status": 200, "body": "{}", "times": 2}');
SET application_name = 'cfdw_cancel_me';
\! (for i in $(seq 1 100); do r=$(psql -X -At -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'cfdw_cancel_me' AND state = 'active' AND wait_event_type = 'Extension'"); [ "$r" = t ] && break; sleep 0.1; done) >/dev/null 2>&1 &
SELECT clock_timestamp() AS t0 \gset
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Slow cancel 1'), ('98306', 'Slow cancel 2');
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS interrupted_promptly;
RESET application_name;
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'After pipelined cancel');
SELECT title, fault, status FROM http_log() ORDER BY title;
ALTER FOREIGN TABLE http_t.pages OPTIONS (DROP max_concurrency);

--
-- 4. timeout_ms: a request that outlasts it fails with HV00N, and a POST
-- that may have been processed is not resent.
--
ALTER SERVER http_srv OPTIONS (SET timeout_ms '300');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 2000, "status": 200, "body": "{}"}');
SELECT http_try($$INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Too slow')$$);
SELECT seq, conn, title, fault FROM http_log();
ALTER SERVER http_srv OPTIONS (DROP timeout_ms);

--
-- 5. A refused connection is HV00N.  It certainly did not reach the
-- server, so it is retried: max_retries '2' waits two back-offs (at least
-- 0.35 s + 0.7 s) before giving up; max_retries '0' gives up at once.
--
CREATE SERVER http_refused FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'http://127.0.0.1:1', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER http_refused
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE http_t.refused (space_id text, title text)
  SERVER http_refused OPTIONS (endpoint 'pages');
SELECT http_try($$INSERT INTO http_t.refused VALUES ('98306', 'Nobody there')$$);
ALTER SERVER http_refused OPTIONS (SET max_retries '2');
SELECT clock_timestamp() AS t0 \gset
SELECT http_try($$INSERT INTO http_t.refused VALUES ('98306', 'Nobody there')$$);
SELECT clock_timestamp() - :'t0' >= interval '1 s' AS retried_with_backoff;

--
-- 6. max_response_bytes: a larger answer is an error (54000), never
-- buffered whole; the backend goes on.
--
ALTER SERVER http_srv OPTIONS (ADD max_response_bytes '100000');
SELECT standin_reset();
SELECT standin_fault('{"kind": "oversize", "bytes": 200000}');
SELECT http_try($$INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Huge answer')$$);
-- an answer under the limit is fine
SELECT standin_fault('{"kind": "oversize", "bytes": 90000}');
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Big answer')
  RETURNING id, http_status;
INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'After huge answer')
  RETURNING http_status;
SELECT seq, conn, title, fault, status FROM http_log();
ALTER SERVER http_srv OPTIONS (DROP max_response_bytes);

--
-- 7. Redirects are not followed: credentials never go to another address.
--
SELECT standin_reset();
SELECT standin_fault(jsonb_build_object('kind', 'redirect', 'status', 307,
  'location', :'standin_url2' || '/wiki/api/v2/pages'));
SELECT http_try($$INSERT INTO http_t.pages (space_id, title) VALUES ('98306', 'Redirected')$$);
SELECT s->'requests' AS requests, s->'second_requests' AS second_server_requests
  FROM standin_stats() s;
SELECT count(*) AS second_server_log FROM standin_call('GET', 'requests?server=second');

--
-- 8. bearer_token: OAuth 2.0 / personal access token, sent as Bearer.
--
CREATE SERVER http_bearer FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER http_bearer
  OPTIONS (bearer_token :'cfdw_bearer');
CREATE FOREIGN TABLE http_t.bearer_pages (space_id text, title text, http_status int)
  SERVER http_bearer OPTIONS (endpoint 'pages');
SELECT standin_reset();
INSERT INTO http_t.bearer_pages (space_id, title) VALUES ('98306', 'Bearer page')
  RETURNING http_status;
SELECT r->>'auth' AS auth, r->'headers'->>'authorization' AS authorization_header
  FROM standin_requests() r;

--
-- 9. A pool in use is never closed under its user.  A pipelined INSERT
-- whose SELECT calls a function that inserts into another table of the same
-- user mapping: the inner statement ends with keep_connections 'false', one
-- row calls disconnect_all(), one changes the server's options (a cache
-- invalidation) and one fails inside an exception block.  The outer
-- statement's requests in flight go on, and every page is created once.
--
CREATE SERVER http_nest FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', keep_connections 'false');
CREATE USER MAPPING FOR CURRENT_USER SERVER http_nest
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE http_t.nest_outer (space_id text, title text)
  SERVER http_nest OPTIONS (endpoint 'pages', max_concurrency '4');
CREATE FOREIGN TABLE http_t.nest_inner (space_id text, title text, id text)
  SERVER http_nest OPTIONS (endpoint 'pages');
CREATE FUNCTION http_t.inner_page(n int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  got text;
BEGIN
  INSERT INTO http_t.nest_inner (space_id, title) VALUES ('98306', 'inner ' || n) RETURNING id INTO got;
  IF n = 5 THEN
    PERFORM confluence_fdw.disconnect_all();
  ELSIF n = 10 THEN
    ALTER SERVER http_nest OPTIONS (ADD timeout_ms '20000');
  ELSIF n = 15 THEN
    BEGIN
      INSERT INTO http_t.nest_inner (space_id, title) VALUES ('98306', 'inner ' || n || ' again')
        RETURNING id INTO got;
      INSERT INTO http_t.nest_inner (space_id) VALUES (NULL);
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END IF;
  RETURN 'outer ' || n;
END $$;
SELECT standin_reset();
INSERT INTO http_t.nest_outer SELECT '98306', http_t.inner_page(g) FROM generate_series(1, 20) g;
SELECT split_part(r->'body_json'->>'title', ' ', 1) AS kind, count(*) AS requests,
       count(DISTINCT r->'body_json'->>'title') AS titles,
       count(*) FILTER (WHERE (r->>'status')::int = 200) AS created
  FROM standin_requests() r GROUP BY 1 ORDER BY 1;
SELECT (standin_stats()->>'pages')::int AS pages;
-- nothing is left open once the statement is done (keep_connections false)
SELECT confluence_fdw.disconnect_all() AS was_open;
-- The first outer row is refused, slowly (400 after 200 ms), so it is still
-- in flight when the executor computes the next 16 rows (it hands them over
-- max_concurrency * 4 at a time) and their inner statements close the pool:
-- the outer INSERT must see the refusal and fail, not lose the request and
-- report every row as sent.
CREATE FOREIGN TABLE http_t.nest_refused (space_id text, title text)
  SERVER http_nest OPTIONS (endpoint '/wiki/echo/nest', max_concurrency '4');
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 200, "status": 400, "match": "/wiki/echo/nest"}');
SELECT split_part(http_try($$INSERT INTO http_t.nest_refused SELECT '98306', http_t.inner_page(g) FROM generate_series(1, 20) g$$), E'\n', 1) AS outcome;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA http_t CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER http_srv;
DROP USER MAPPING FOR CURRENT_USER SERVER http_refused;
DROP USER MAPPING FOR CURRENT_USER SERVER http_bearer;
DROP USER MAPPING FOR CURRENT_USER SERVER http_nest;
DROP SERVER http_srv, http_refused, http_bearer, http_nest;
DROP FUNCTION http_try(text), http_log();
RESET client_min_messages;
