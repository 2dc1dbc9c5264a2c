--
-- Errors: Confluence's HTTP errors and transport failures become SQL
-- errors with SQLSTATEs (README "Errors"), retries happen only for answers that
-- mean "not processed" (§3), and no error ever carries a token.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_token2 CFDW_TOKEN2
\getenv cfdw_bearer CFDW_BEARER
\getenv cfdw_bad_token CFDW_BAD_TOKEN

-- A server of this test's own, so that its ALTERs touch no other test.
CREATE SERVER err_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER err_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA err_t;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments)
  FROM SERVER err_srv INTO err_t;

-- Every error caught below, for the final check that none shows a token.
CREATE TABLE err_seen (stmt text, code text, message text, detail text,
                       hint text, context text);

-- Runs a statement and returns the error it raised.  The context keeps the
-- extension's lines (not the statement and this function's line); curl's
-- elapsed milliseconds are masked.
CREATE FUNCTION err_try(stmt text, OUT code text, OUT message text,
                        OUT detail text, OUT hint text, OUT context text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  code := '00000';
  message := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
    detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
    context = PG_EXCEPTION_CONTEXT;
  INSERT INTO err_seen VALUES (stmt, code, message, detail, hint, context);
  context := regexp_replace(context, E'\nSQL statement ".*$', '');
  detail := regexp_replace(detail, '\m\d+ ms\M', 'N ms', 'g');
  -- when a rate limit lifts (checked against the clock where it matters)
  hint := regexp_replace(hint, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d(:\d\d)?', '<time>', 'g');
  -- libcurl's own words, as 7.x wrote them (8.x says "Could not")
  detail := replace(detail, 'Could not connect to server', 'Couldn''t connect to server');
  -- and "HOST:PORT" where 7.x said "HOST port PORT"
  detail := regexp_replace(detail, 'to (\d+\.\d+\.\d+\.\d+):(\d+) after', 'to \1 port \2 after', 'g');
END $$;

-- Requests since the last reset.
CREATE FUNCTION err_log(OUT seq int, OUT path text, OUT title text,
                        OUT fault text, OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, r->>'path', r->'body_json'->>'title',
         r->>'fault', (r->>'status')::int
    FROM standin_requests() r ORDER BY 1 $$;


--
-- 1. Confluence's own errors: HV000, its title in the message, the body in
-- DETAIL, method and path in CONTEXT.
--
-- 400: a page title that already exists in the space
SELECT standin_reset();
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Taken title');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Taken title')$$) \gx

-- 404: a comment on a page that does not exist
SELECT * FROM err_try($$INSERT INTO err_t.footer_comments (page_id, body) VALUES ('404404', 'Hello?')$$) \gx

-- 409, from a fault
SELECT standin_fault('{"kind": "status", "status": 409}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Conflict')$$) \gx

-- 413 from Confluence
SELECT standin_fault('{"kind": "status", "status": 413}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Too large')$$) \gx
-- a body over Confluence's 5 MB limit is refused before sending (54000)
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title, body) VALUES ('98306', 'Too big', repeat('x', 5 * 1024 * 1024))$$) \gx

-- A body that is not JSON: the reason phrase in the message, and the body,
-- cut at 1000 bytes, in DETAIL.
SELECT standin_fault(jsonb_build_object('kind', 'status', 'status', 502,
  'content_type', 'text/html', 'body', '<html><body>' || repeat('Bad gateway. ', 100) || '</body></html>'));
SELECT code, message, left(detail, 40) AS detail_start, right(detail, 40) AS detail_end,
       length(detail) AS detail_length, hint, context
  FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Gateway')$$) \gx

--
-- 2. Authentication and permission: 28000, with a hint about the user
-- mapping.
--
-- 401: a token Confluence does not accept
CREATE SERVER err_badauth FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER err_badauth
  OPTIONS (username :'cfdw_user', api_token :'cfdw_bad_token');
CREATE FOREIGN TABLE err_t.badauth_pages (space_id text, title text)
  SERVER err_badauth OPTIONS (endpoint 'pages');
SELECT * FROM err_try($$INSERT INTO err_t.badauth_pages VALUES ('98306', 'Wrong token')$$) \gx
-- 403, from a fault
SELECT standin_fault('{"kind": "status", "status": 403}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Forbidden')$$) \gx

-- Each of those errors was one request: nothing was retried.
SELECT seq, path, title, fault, status FROM err_log();

--
-- 3. Retries.  5xx and timeouts of a POST are not retried (it may have been
-- processed); 429, and 503 with Retry-After, are.
--
-- 500: not retried
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 500}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Server error')$$) \gx
-- 503 without Retry-After: not retried
SELECT standin_fault('{"kind": "status", "status": 503}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Unavailable')$$) \gx
SELECT seq, title, fault, status FROM err_log();

-- 429 with Retry-After: retried, and the row is created once
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "0"}}');
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Rate limited once')
  RETURNING id IS NOT NULL AS has_id, http_status;
-- 503 with Retry-After: retried too
SELECT standin_fault('{"kind": "status", "status": 503, "headers": {"Retry-After": "0"}}');
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Unavailable once')
  RETURNING id IS NOT NULL AS has_id, http_status;
SELECT seq, title, fault, status FROM err_log();
SELECT s->'pages' AS pages_created FROM standin_stats() s;

-- More 429s than max_retries allows: the last answer is the error.
ALTER SERVER err_srv OPTIONS (ADD max_retries '1');
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "times": 2, "headers": {"Retry-After": "0"}}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Rate limited twice')$$) \gx
SELECT seq, title, fault, status FROM err_log();
ALTER SERVER err_srv OPTIONS (DROP max_retries);

-- A Retry-After beyond max_retry_wait_ms is not waited for.
ALTER SERVER err_srv OPTIONS (ADD max_retry_wait_ms '2000');
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "120"}}');
SELECT clock_timestamp() AS t0 \gset
SELECT code, message, hint FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Rate limited long')$$);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS gave_up_at_once;
SELECT seq, title, fault, status FROM err_log();
-- An hourly quota asks for half an hour: the statement still fails at once,
-- and its hint says when the site takes requests again (that time, to the
-- second, 1800 s after the answer).
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "1800"}}');
SELECT clock_timestamp() AS t0 \gset
SELECT code, message, hint FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Quota used up')$$);
SELECT clock_timestamp() - :'t0' < interval '2 s' AS gave_up_at_once,
       (substring(hint from 'again at (.*) \(in')::timestamptz - :'t0'::timestamptz)
         BETWEEN interval '1799 s' AND interval '1802 s' AS says_when
  FROM err_seen WHERE stmt LIKE '%Quota used up%';
-- a 503 with Retry-After says when too
SELECT standin_fault('{"kind": "status", "status": 503, "headers": {"Retry-After": "900"}}');
SELECT code, message, hint FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Site busy')$$);
ALTER SERVER err_srv OPTIONS (DROP max_retry_wait_ms);

--
-- 4. A statement failing on row 2 of 3 (a title that exists already).
--
-- One request at a time: row 1 was sent (and stays sent: HTTP is not
-- transactional), row 3 never was.
ALTER FOREIGN TABLE err_t.pages OPTIONS (ADD max_concurrency '1');
SELECT standin_reset();
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Row two');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Row one'), ('98306', 'Row two'), ('98306', 'Row three')$$) \gx
SELECT seq, title, status FROM err_log();
SELECT s->'pages' AS pages_created FROM standin_stats() s;
ALTER FOREIGN TABLE err_t.pages OPTIONS (DROP max_concurrency);

-- Pipelined (the default for rows that need no answer): the three requests
-- are in flight together (each answer is delayed by 200 ms), so row 3 was
-- sent too; the error says so, and nothing was sent twice.
SELECT standin_reset();
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Row two');
SELECT standin_fault('{"kind": "delay", "delay_ms": 200, "times": -1}');
-- (the request id depends on the order the requests arrived in)
SELECT code, message, regexp_replace(detail, 'standin[0-9a-f]{8}', 'standinXXXXXXXX') AS detail,
       hint, context
  FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Row one'), ('98306', 'Row two'), ('98306', 'Row three')$$) \gx
SELECT title, status FROM err_log() ORDER BY seq > 1, title;
SELECT s->'pages' AS pages_created FROM standin_stats() s;

--
-- 5. Transport failures: HV00N.
--
-- nothing listening
CREATE SERVER err_refused FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'http://127.0.0.1:1', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER err_refused
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE err_t.refused_pages (space_id text, title text)
  SERVER err_refused OPTIONS (endpoint 'pages');
SELECT * FROM err_try($$INSERT INTO err_t.refused_pages VALUES ('98306', 'Unreachable')$$) \gx

-- The connection drops after Confluence processed the request: an error
-- that says so, and no second request (it would create a duplicate).
-- On a new connection:
SELECT standin_reset();
SELECT confluence_fdw.disconnect_all();
SELECT standin_fault('{"kind": "drop_after_process"}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Dropped on a new connection')$$) \gx
-- On a kept-alive connection that already carried a request:
INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Warm-up');
SELECT standin_fault('{"kind": "drop_after_process"}');
SELECT * FROM err_try($$INSERT INTO err_t.pages (space_id, title) VALUES ('98306', 'Dropped on a reused connection')$$) \gx
SELECT seq, title, fault, status FROM err_log();
SELECT s->'pages' AS pages_created FROM standin_stats() s;

--
-- 6. No error message, detail, hint or context above shows a credential.
--
SELECT count(*) AS errors_caught,
       count(*) FILTER (WHERE NOT shows_no_secret(e::text)
                           OR e::text ILIKE '%authorization:%'
                           OR e::text ILIKE '%basic %') AS showing_a_credential
  FROM err_seen e;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA err_t CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER err_srv;
DROP USER MAPPING FOR CURRENT_USER SERVER err_badauth;
DROP USER MAPPING FOR CURRENT_USER SERVER err_refused;
DROP SERVER err_srv, err_badauth, err_refused;
DROP TABLE err_seen;
DROP FUNCTION err_try(text), err_log();
RESET client_min_messages;
