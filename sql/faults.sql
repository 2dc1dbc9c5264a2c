--
-- Fault matrix: every failure the stand-in can produce, on the one-at-a-time
-- path (RETURNING), the pipelined path (no RETURNING, max_concurrency 4),
-- PUT (idempotent: 502/503/504 are retried) and with on_error 'return'.
-- For each case: the outcome, exactly how many requests the stand-in
-- received (so a duplicate can never pass) and how many pages it created.
-- Then cancellation: a retry wait interrupted by pg_cancel_backend and by
-- statement_timeout, and pg_terminate_backend of a backend waiting for a
-- slow answer.  (errors.sql shows the full error texts; http.sql covers
-- pg_cancel_backend during a slow answer.)
--
\getenv standin_url STANDIN_URL
\getenv standin_url2 STANDIN_URL2
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

-- A server of this test's own, with few and short retries so that the test
-- stays fast: every retry still waits at least the back-off (0.35 s to
-- 0.65 s, then 0.7 s to 1.3 s), or Retry-After when that is longer.
CREATE SERVER flt_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retries '2', max_retry_wait_ms '3000',
           max_response_bytes '100000');
CREATE USER MAPPING FOR CURRENT_USER SERVER flt_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
-- The same with a 300 ms limit per request, for slow answers.
CREATE SERVER flt_slow FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retries '2', timeout_ms '300');
CREATE USER MAPPING FOR CURRENT_USER SERVER flt_slow
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');

CREATE SCHEMA flt;
-- one row at a time (the statements below use RETURNING)
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER flt_srv INTO flt;
-- pipelined: rows without RETURNING, up to 4 requests in flight
CREATE FOREIGN TABLE flt.pipe_pages (space_id text, title text)
  SERVER flt_srv OPTIONS (endpoint 'pages', max_concurrency '4');
-- HTTP errors come back as rows
CREATE FOREIGN TABLE flt.ret_pages (space_id text, title text, id text,
                                    http_status integer)
  SERVER flt_srv OPTIONS (endpoint 'pages', on_error 'return');
-- PUT: update a page (version.number = current + 1)
CREATE FOREIGN TABLE flt.page_put (
  id text, status text, title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  version_number integer OPTIONS (field 'version.number'),
  new_version integer OPTIONS (response_field 'version.number'),
  http_status integer OPTIONS (response_field '$status')
) SERVER flt_srv OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT');
CREATE FOREIGN TABLE flt.pipe_put (
  id text, status text, title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  version_number integer OPTIONS (field 'version.number')
) SERVER flt_srv OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT',
                          max_concurrency '4');
-- the same tables on the server with timeout_ms 300
CREATE FOREIGN TABLE flt.slow_pages (space_id text, title text, id text,
                                     http_status integer)
  SERVER flt_slow OPTIONS (endpoint 'pages');
CREATE FOREIGN TABLE flt.slow_pipe (space_id text, title text)
  SERVER flt_slow OPTIONS (endpoint 'pages', max_concurrency '4');
CREATE FOREIGN TABLE flt.slow_put (
  id text, status text, title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  version_number integer OPTIONS (field 'version.number'),
  new_version integer OPTIONS (response_field 'version.number'),
  http_status integer OPTIONS (response_field '$status')
) SERVER flt_slow OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT');

-- Every page title is new, so a request processed twice would also show up
-- as Confluence's 400 "already exists" on the second one.
CREATE SEQUENCE flt_title_seq;

-- Statements for the cases.  One row with RETURNING; the returned id shows
-- as "id" when it is a Confluence id.
CREATE FUNCTION flt_one(tbl text) RETURNS text LANGUAGE sql AS $$
  SELECT format($q$WITH r AS (INSERT INTO %s (space_id, title)
      VALUES ('98306', 'Fault %s') RETURNING id, http_status)
    SELECT string_agg(concat_ws(', ', CASE WHEN id ~ '^[0-9]+$' THEN 'id' ELSE 'id NULL' END,
                                'http_status ' || http_status), '; ') FROM r$q$,
    tbl, nextval('flt_title_seq')) $$;
-- Three rows without RETURNING: pipelined.
CREATE FUNCTION flt_pipe(tbl text) RETURNS text LANGUAGE sql AS $$
  SELECT format($q$INSERT INTO %s (space_id, title)
    SELECT '98306', 'Fault %s row ' || g FROM generate_series(1, 3) g$q$,
    tbl, nextval('flt_title_seq')) $$;
-- A new page (created here, before the case is measured), and the PUT that
-- makes it version 2.
CREATE FUNCTION flt_put(tbl text, with_returning boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  t text := 'Fault ' || nextval('flt_title_seq');
  page text;
BEGIN
  INSERT INTO flt.pages (space_id, title) VALUES ('98306', t) RETURNING id INTO page;
  RETURN format($q$%s INSERT INTO %s VALUES (%L, 'current', %L, '<p>v2</p>', 'storage', 2)
    %s$q$,
    CASE WHEN with_returning THEN 'WITH r AS (' ELSE '' END, tbl, page, t,
    CASE WHEN with_returning THEN $r$RETURNING new_version, http_status)
    SELECT string_agg(concat_ws(', ', 'new_version ' || coalesce(new_version::text, 'NULL'),
                                'http_status ' || http_status), '; ') FROM r$r$ END);
END $$;

-- The stand-in's requests after number n, then a line {"stats": {...}}
-- with its counters at that moment.  (standin_call cannot pass two query
-- parameters: its URL goes to the shell unquoted.)
CREATE FUNCTION flt_requests_since(n int) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('pg_temp.flt_lines') IS NULL THEN
    CREATE TEMP TABLE flt_lines (line text);
  END IF;
  TRUNCATE flt_lines;
  EXECUTE format('COPY flt_lines FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')',
                 format('curl -sS --noproxy ''*'' --fail-with-body ''%s/_standin/requests?since=%s&stats=1''',
                        (SELECT url FROM standin_cfg), n));
  RETURN QUERY SELECT line::jsonb FROM flt_lines WHERE line <> '';
END $$;

-- Runs one case: queues the fault(s), runs the statement, and reports
--   outcome    "ok: " and what RETURNING gave (or the row count), or
--              "SQLSTATE: message" and whether the request may have been
--              processed (the last sentence of DETAIL, if any);
--   on_conn    whether the case's first request went over a connection that
--              had carried a request before ("reused") or a new one;
--   requests   how many requests the stand-in received;
--   answers    the status of each: first those the fault made (marked *,
--              "-" for a dropped connection), then the others, each in the
--              order they arrived;
--   pages      how many pages the stand-in created;
--   elsewhere  requests that reached the second (redirect target) listener;
--   waited_1s  whether the statement took a second or more.
-- settle: seconds to wait before counting, for answers the stand-in
-- delays (and processes) after the client gave up.
CREATE FUNCTION flt_case(stmt text, fault jsonb, settle float8 DEFAULT 0,
  OUT outcome text, OUT on_conn text, OUT requests int, OUT answers text,
  OUT pages int, OUT elsewhere int, OUT waited_1s boolean)
LANGUAGE plpgsql AS $$
DECLARE
  s0 jsonb;
  s1 jsonb;
  log jsonb[];
  res text;
  n bigint;
  code text;
  msg text;
  det text;
  t0 timestamptz;
  first_conn int;
  via_front boolean;
BEGIN
  -- the stand-in's counters from just before the fault was queued
  IF fault IS NOT NULL THEN
    SELECT x->'stats' INTO s0 FROM standin_call('POST', 'fault', fault::text) x;
  ELSE
    s0 := standin_stats();
  END IF;
  t0 := clock_timestamp();
  BEGIN
    IF stmt ~* '^\s*WITH' THEN
      EXECUTE stmt INTO res;
      outcome := 'ok: ' || res;
    ELSE
      EXECUTE stmt;
      GET DIAGNOSTICS n = ROW_COUNT;
      outcome := 'ok: ' || n || ' rows';
    END IF;
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
      det = PG_EXCEPTION_DETAIL;
    outcome := code || ': ' || msg ||
      coalesce(' / ' || substring(det from 'The request (?:may have been processed|did not reach)[^.]*\.'), '');
  END;
  waited_1s := clock_timestamp() - t0 >= interval '1 s';
  IF settle > 0 THEN
    PERFORM pg_sleep(settle);
  END IF;
  -- the requests since, and the counters at the same moment (last line)
  log := ARRAY(SELECT flt_requests_since((s0->>'requests')::int));
  s1 := log[array_length(log, 1)]->'stats';
  requests := (s1->>'requests')::int - (s0->>'requests')::int;
  pages := (s1->>'pages')::int - (s0->>'pages')::int;
  elsewhere := (s1->>'second_requests')::int - (s0->>'second_requests')::int;
  SELECT string_agg(coalesce(r->>'status', '-') || CASE WHEN r->>'fault' IS NOT NULL THEN '*' ELSE '' END,
                    ' ' ORDER BY r->>'fault' IS NULL, (r->>'seq')::int),
         min((r->>'conn')::int), bool_or(r->>'front' IS NOT NULL)
    INTO answers, first_conn, via_front
    FROM unnest(log) r WHERE r ? 'seq';
  -- Through the front (test/front.sh) nginx decides when a client
  -- connection ends (keep-alive limits, idle time, an upstream failure), so
  -- reuse is not the FDW's to show there.
  on_conn := CASE WHEN first_conn IS NULL THEN NULL
                  WHEN via_front THEN 'front'
                  WHEN first_conn <= (s0->>'connections')::int THEN 'reused' ELSE 'new' END;
  IF (s1->>'faults_pending')::int <> 0 THEN
    outcome := outcome || ' [a fault was not used]';
  END IF;
END $$;

SELECT standin_reset();
-- a first request, so that the first case goes over a kept-alive connection
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Fault warm-up') RETURNING http_status;

--
-- 1. One row at a time (INSERT ... RETURNING), POST.
--   Retried: 429 (whatever Retry-After says, within max_retry_wait_ms), 503
--   with Retry-After or Beta-Retry-After.  Not retried: 429 asking for more
--   than max_retry_wait_ms, 5xx without Retry-After, transport failures after
--   the request went out.  A non-JSON 200 answer is an error only for the
--   jsonb "response" column, which cannot hold it.
--
-- Each matrix below is one statement of many cases, each with its own
-- retry waits; the runs through the front set a statement_timeout meant
-- for single requests, so a matrix gets a longer one (a stalled connect would
-- show there only as a slow run; the other suites would fail on it).
SET statement_timeout = '60s';
SELECT c.label, r.*
  FROM (VALUES
    (1, '429 Retry-After 0', '{"kind": "status", "status": 429, "headers": {"Retry-After": "0"}}'),
    (2, '429 Retry-After 1', '{"kind": "status", "status": 429, "headers": {"Retry-After": "1"}}'),
    (3, '429 Retry-After -1', '{"kind": "status", "status": 429, "headers": {"Retry-After": "-1"}}'),
    (4, '429 Retry-After date in the past', '{"kind": "status", "status": 429, "headers": {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}}'),
    (5, '429 Retry-After 99999', '{"kind": "status", "status": 429, "headers": {"Retry-After": "99999"}}'),
    (6, '429 three times (max_retries 2)', '{"kind": "status", "status": 429, "times": 3, "headers": {"Retry-After": "0"}}'),
    (7, '429 Retry-After 0 + Beta-Retry-After 5', '{"kind": "status", "status": 429, "headers": {"Beta-Retry-After": "5", "Retry-After": "0"}}'),
    (8, '503 Retry-After 0', '{"kind": "status", "status": 503, "headers": {"Retry-After": "0"}}'),
    (9, '503 without Retry-After', '{"kind": "status", "status": 503}'),
    (10, '503 Beta-Retry-After 1', '{"kind": "status", "status": 503, "headers": {"Beta-Retry-After": "1"}}'),
    (11, '500', '{"kind": "status", "status": 500}'),
    (12, '502', '{"kind": "status", "status": 502}'),
    (13, '504', '{"kind": "status", "status": 504}'),
    (14, 'drop_before_body', '{"kind": "drop_before_body"}'),
    (15, 'drop_after_body', '{"kind": "drop_after_body"}'),
    (16, '(a success first)', NULL),
    (17, 'drop_after_process', '{"kind": "drop_after_process"}'),
    (18, 'malformed_json (processed)', '{"kind": "malformed_json", "process": true}'),
    (19, 'empty_body (processed)', '{"kind": "empty_body", "process": true}'),
    (20, 'non_json (processed)', '{"kind": "non_json", "process": true}'),
    (21, 'oversize 200000 > max_response_bytes', '{"kind": "oversize", "bytes": 200000}'),
    (22, 'oversize, processed', '{"kind": "oversize", "bytes": 200000, "process": true}'),
    (23, 'redirect to the second listener', jsonb_build_object('kind', 'redirect', 'status', 307, 'location', :'standin_url2' || '/wiki/api/v2/pages'))
  ) AS c(n, label, fault),
  LATERAL flt_case(flt_one('flt.pages'), c.fault::jsonb) r
  ORDER BY c.n;

--
-- 2. Pipelined: three rows without RETURNING, all in flight together; the
-- fault hits the first request to arrive.  A failure is reported after the
-- other requests finished: they were sent once, and nothing was resent.
--
SELECT c.label, r.*
  FROM (VALUES
    (1, '(a success first)', NULL),
    (2, '429 Retry-After 0', '{"kind": "status", "status": 429, "headers": {"Retry-After": "0"}}'),
    (3, '429 Retry-After 99999', '{"kind": "status", "status": 429, "headers": {"Retry-After": "99999"}}'),
    (4, '503 Retry-After 0', '{"kind": "status", "status": 503, "headers": {"Retry-After": "0"}}'),
    (5, '503 without Retry-After', '{"kind": "status", "status": 503}'),
    (6, '500', '{"kind": "status", "status": 500}'),
    (7, '502', '{"kind": "status", "status": 502}'),
    (8, '504', '{"kind": "status", "status": 504}'),
    (9, 'drop_before_body', '{"kind": "drop_before_body"}'),
    (10, 'drop_after_body', '{"kind": "drop_after_body"}'),
    (11, '(a success first)', NULL),
    (12, 'drop_after_process', '{"kind": "drop_after_process"}'),
    (13, 'malformed_json (processed)', '{"kind": "malformed_json", "process": true}'),
    (14, 'empty_body (processed)', '{"kind": "empty_body", "process": true}'),
    (15, 'non_json (processed)', '{"kind": "non_json", "process": true}'),
    (16, 'oversize, processed', '{"kind": "oversize", "bytes": 200000, "process": true}'),
    (17, 'redirect to the second listener', jsonb_build_object('kind', 'redirect', 'location', :'standin_url2' || '/wiki/api/v2/pages'))
  ) AS c(n, label, fault),
  LATERAL flt_case(flt_pipe('flt.pipe_pages'), c.fault::jsonb) r
  ORDER BY c.n;

--
-- 3. PUT is idempotent: 502, 503 and 504 are retried too (a POST's are
-- not).  A PUT whose connection dropped after it was sent may have been
-- processed: it is not resent either (Confluence would refuse the same
-- version number a second time with 409), also on a kept-alive connection.
--
SELECT c.label, r.*
  FROM (VALUES
    (1, '502', '{"kind": "status", "status": 502}'),
    (2, '503 without Retry-After', '{"kind": "status", "status": 503}'),
    (3, '504', '{"kind": "status", "status": 504}'),
    (4, '504 three times (max_retries 2)', '{"kind": "status", "status": 504, "times": 3}'),
    (5, '500', '{"kind": "status", "status": 500}'),
    (6, 'drop_after_process', '{"kind": "drop_after_process"}'),
    (7, 'drop_after_body', '{"kind": "drop_after_body"}')
  ) AS c(n, label, fault),
  LATERAL flt_case(flt_put('flt.page_put'), c.fault::jsonb) r
  ORDER BY c.n;
-- and pipelined
SELECT c.label, r.*
  FROM (VALUES
    (1, '502', '{"kind": "status", "status": 502}'),
    (2, '500', '{"kind": "status", "status": 500}')
  ) AS c(n, label, fault),
  LATERAL flt_case(flt_put('flt.pipe_put', false), c.fault::jsonb) r
  ORDER BY c.n;

--
-- 4. on_error 'return': HTTP errors come back as rows (after the retries
-- they are due); a transport failure still aborts the statement.
--
SELECT c.label, r.*
  FROM (VALUES
    (1, '500', '{"kind": "status", "status": 500}'),
    (2, '503 without Retry-After', '{"kind": "status", "status": 503}'),
    (3, '429 three times (max_retries 2)', '{"kind": "status", "status": 429, "times": 3, "headers": {"Retry-After": "0"}}'),
    (4, 'redirect to the second listener', jsonb_build_object('kind', 'redirect', 'location', :'standin_url2' || '/wiki/api/v2/pages')),
    (5, 'drop_after_body', '{"kind": "drop_after_body"}')
  ) AS c(n, label, fault),
  LATERAL flt_case(flt_one('flt.ret_pages'), c.fault::jsonb) r
  ORDER BY c.n;

--
-- 5. A slow answer (0.7 s, beyond timeout_ms 300): the statement fails at
-- 300 ms saying the request may have been processed, and it is not resent,
-- not even a PUT.  The stand-in processes it anyway, after the client gave
-- up (counted after waiting for that).
--
SELECT c.label, r.outcome, r.requests, r.answers, r.pages, r.waited_1s
  FROM (VALUES
    (1, 'one row, POST', flt_one('flt.slow_pages')),
    (2, 'pipelined, POST', flt_pipe('flt.slow_pipe')),
    (3, 'one row, PUT', (SELECT flt_put('flt.slow_put')))
  ) AS c(n, label, stmt),
  LATERAL flt_case(c.stmt, '{"kind": "delay", "delay_ms": 700}', 0.7) r
  ORDER BY c.n;

RESET statement_timeout;

-- Nothing is pending, and the same session goes on normally.
SELECT s->'faults_pending' AS faults_pending FROM standin_stats() s;
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Fault after the matrix')
  RETURNING id IS NOT NULL AS has_id, http_status;

--
-- 6. Cancellation during a retry wait.
--
-- flt_waiting(app, received, answered) waits (up to 10 s) until the
-- stand-in has received that many requests and answered that many, and the
-- backend with that application_name waits in confluence_fdw (wait event
-- type Extension); it returns the backend's pid.
CREATE FUNCTION flt_waiting(app text, received int, answered int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  p int;
BEGIN
  FOR i IN 1 .. 200 LOOP
    PERFORM pg_stat_clear_snapshot();   -- else the first look is kept
    SELECT pid INTO p FROM pg_stat_activity
     WHERE application_name = app AND state = 'active' AND wait_event_type = 'Extension';
    IF p IS NOT NULL AND
       (SELECT count(*) >= received AND count(r->>'status') >= answered
          FROM standin_requests() r) THEN
      RETURN p;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN NULL;
END $$;
-- run from another session, in the background
CREATE FUNCTION flt_cancel_when_waiting(app text, received int, answered int)
RETURNS boolean LANGUAGE sql AS $$
  SELECT pg_cancel_backend(flt_waiting(app, received, answered)) $$;
\setenv CFDW_FLT_DB :DBNAME

-- pg_cancel_backend while the row waits 5 s to retry a 429: the statement
-- ends at once with 57014, after one request, and the retry never happens.
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "5"}}');
ALTER SERVER flt_srv OPTIONS (SET max_retry_wait_ms '10000');
SET application_name = 'cfdw_flt_wait';
\! psql -X -q -d "$CFDW_FLT_DB" -c "SELECT flt_cancel_when_waiting('cfdw_flt_wait', 1, 1)" >/dev/null 2>&1 &
SELECT clock_timestamp() AS t0 \gset
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Cancelled in the wait') RETURNING id;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS interrupted_promptly;
RESET application_name;
SELECT pg_sleep(0.2);
SELECT s->'requests' AS requests, s->'pages' AS pages FROM standin_stats() s;
-- the session goes on
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'After the cancelled wait')
  RETURNING http_status;

-- statement_timeout during a retry wait: the wait is cut short at the
-- timeout with PostgreSQL's own 57014, after one request ...
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "5"}}');
SET statement_timeout = '1s';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Wait past the timeout') RETURNING id;
RESET statement_timeout;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' BETWEEN interval '0.9 s' AND interval '2.5 s' AS at_the_timeout;
SELECT s->'requests' AS requests, s->'pages' AS pages FROM standin_stats() s;
-- That Retry-After paused every session's requests to the site (the
-- shared rate limit, by host and port): let the pause pass before the next
-- case.
SELECT pg_sleep(greatest(0, extract(epoch FROM paused_until - now())::float8))::text = '' AS pause_over
  FROM confluence_fdw.rate_limits WHERE site = split_part(:'standin_url', '/', 3);
-- ... and when the retried request itself is slow, statement_timeout ends
-- it at 1 s with 57014 too (2 requests, nothing more).
SELECT standin_reset();
SELECT standin_fault('[{"kind": "status", "status": 429, "headers": {"Retry-After": "0"}},
                       {"kind": "delay", "delay_ms": 3000, "status": 200, "body": "{}"}]');
SET statement_timeout = '1s';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Slow retry') RETURNING id;
RESET statement_timeout;
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT clock_timestamp() - :'t0' BETWEEN interval '0.9 s' AND interval '2.5 s' AS at_the_timeout;
SELECT s->'requests' AS requests, s->'pages' AS pages FROM standin_stats() s;
ALTER SERVER flt_srv OPTIONS (SET max_retry_wait_ms '3000');

--
-- 7. pg_terminate_backend of a backend waiting for a slow answer (another
-- session, started in the background): it goes away at once, the stand-in
-- saw its one request and nothing after, and this session is unaffected.
--
SELECT standin_reset();
SELECT standin_fault('{"kind": "delay", "delay_ms": 5000, "status": 200, "body": "{}"}');
\! PGAPPNAME=cfdw_flt_victim psql -X -q -d "$CFDW_FLT_DB" -c "INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Victim')" >/dev/null 2>&1 &
SELECT flt_waiting('cfdw_flt_victim', 1, 0) AS victim \gset
SELECT :'victim' <> '' AS victim_found;
SELECT clock_timestamp() AS t0 \gset
SELECT pg_terminate_backend(:'victim', 5000) AS terminated;
SELECT clock_timestamp() - :'t0' < interval '2 s' AS terminated_promptly;
SELECT count(*) AS victims_left FROM pg_stat_activity WHERE application_name = 'cfdw_flt_victim';
SELECT s->'requests' AS requests, s->'faults_pending' AS faults_pending FROM standin_stats() s;
SELECT r->'body_json'->>'title' AS title, r->>'fault' AS fault FROM standin_requests() r;
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'After the victim')
  RETURNING http_status;
SELECT s->'requests' AS requests FROM standin_stats() s;

--
-- 8. Rate limits per site (src/ratelimit.c).  max_rate is checked and named
-- in errors.  The rate-limit headers of every answer are read leniently:
-- values that make no sense change nothing and never fail a statement.
-- Another server of the same host shares the site's state: an exhausted
-- budget seen through one holds the other's request until the reset.  The
-- view shows what the last answer said, and no secret.
--
ALTER SERVER flt_srv OPTIONS (ADD max_rate '0');
ALTER SERVER flt_srv OPTIONS (ADD max_rate '-2');
ALTER SERVER flt_srv OPTIONS (ADD max_rate '1e3');
ALTER SERVER flt_srv OPTIONS (ADD max_rate 'fast');
ALTER SERVER flt_srv OPTIONS (ADD max_rate '2000000');
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = 'confluence_fdw' AND table_name = 'rate_limits'
 ORDER BY ordinal_position;
SELECT standin_reset();
SELECT standin_fault('[
  {"kind": "merge", "fields": {}, "headers": {"X-RateLimit-Limit": "lots",
   "X-RateLimit-Remaining": "-5", "X-RateLimit-Reset": "tomorrow",
   "X-RateLimit-NearLimit": "maybe", "Beta-RateLimit": "\"q\";r=;t=x",
   "Beta-RateLimit-Policy": ";;;"}},
  {"kind": "merge", "fields": {}, "headers": {"X-RateLimit-Limit": "10",
   "X-RateLimit-Remaining": "99", "X-RateLimit-Reset": "2026-13-45T99:99Z",
   "RateLimit-Reason": "caf\u00e9"}},
  {"kind": "merge", "fields": {}, "headers": {"X-RateLimit-Remaining": "",
   "X-RateLimit-Reset": "1999-01-01T00:00Z",
   "Beta-RateLimit": "\"q\";r=99999999999999999999999;t=1"}}]');
INSERT INTO flt.pages (space_id, title)
  VALUES ('98306', 'Weird 1'), ('98306', 'Weird 2'), ('98306', 'Weird 3')
  RETURNING title, http_status;
SELECT rate_limit, remaining, reset_at, near_limit, reason
  FROM confluence_fdw.rate_limits WHERE site = split_part(:'standin_url', '/', 3);
-- Good headers, through a second server of the same host.
CREATE SERVER flt_same FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER flt_same
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA flt_same;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER flt_same INTO flt_same;
SELECT to_char(now() AT TIME ZONE 'UTC' + interval '4 s', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS reset \gset
SELECT standin_fault(format('{"kind": "merge", "fields": {}, "headers": {
  "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "900", "X-RateLimit-Reset": "%s",
  "X-RateLimit-NearLimit": "false", "RateLimit-Reason": "confluence-quota-tenant-based"}}',
  :'reset')::jsonb);
INSERT INTO flt_same.pages (space_id, title) VALUES ('98306', 'Good headers') RETURNING http_status;
SELECT rate_limit, remaining, reset_at - now() BETWEEN interval '2 s' AND interval '4 s' AS reset_soon,
       near_limit, reason
  FROM confluence_fdw.rate_limits WHERE site = split_part(:'standin_url', '/', 3);
-- Nothing left until a reset 2 s ahead, seen through flt_same: flt_srv's
-- next request waits for the reset, and is counted as paced.
SELECT paced AS paced_before FROM confluence_fdw.rate_limits
 WHERE site = split_part(:'standin_url', '/', 3) \gset
SELECT to_char(now() AT TIME ZONE 'UTC' + interval '2 s', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS reset \gset
SELECT standin_fault(format('{"kind": "merge", "fields": {}, "headers": {
  "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "%s"}}',
  :'reset')::jsonb);
INSERT INTO flt_same.pages (space_id, title) VALUES ('98306', 'Last one') RETURNING http_status;
SELECT clock_timestamp() AS t0 \gset
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'After the reset') RETURNING http_status;
SELECT clock_timestamp() >= :'reset'::timestamptz AS after_the_reset,
       clock_timestamp() - :'t0' < interval '3 s' AS not_much_later;
SELECT paced - :paced_before AS paced, remaining FROM confluence_fdw.rate_limits
 WHERE site = split_part(:'standin_url', '/', 3);
-- Nothing left until a reset 30 minutes ahead: longer than a row may wait
-- (max_retry_wait_ms), so the request is not held for it but sent, and the
-- site's own answer decides (here it takes it; a 429 would fail the
-- statement at once, saying when).  Then a fresh window, for what follows.
SELECT to_char(now() AT TIME ZONE 'UTC' + interval '30 min', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS reset \gset
SELECT standin_fault(format('{"kind": "merge", "fields": {}, "headers": {
  "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "%s"}}',
  :'reset')::jsonb);
INSERT INTO flt_same.pages (space_id, title) VALUES ('98306', 'Spent for long') RETURNING http_status;
SELECT remaining, reset_at > now() + interval '29 min' AS reset_far FROM confluence_fdw.rate_limits
 WHERE site = split_part(:'standin_url', '/', 3);
SET statement_timeout = '10s';
SELECT clock_timestamp() AS t0 \gset
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'Not held for the reset') RETURNING http_status;
SELECT clock_timestamp() - :'t0' < interval '3 s' AS not_held;
RESET statement_timeout;
SELECT to_char(now() AT TIME ZONE 'UTC' + interval '1 s', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS reset \gset
SELECT standin_fault(format('{"kind": "merge", "fields": {}, "headers": {
  "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "900", "X-RateLimit-Reset": "%s"}}',
  :'reset')::jsonb);
INSERT INTO flt.pages (space_id, title) VALUES ('98306', 'A fresh window') RETURNING http_status;
SELECT pg_sleep(1.2);
-- max_rate 4: five pipelined rows reach the stand-in at least 0.2 s apart.
ALTER SERVER flt_srv OPTIONS (ADD max_rate '4');
SELECT standin_reset();
INSERT INTO flt.pipe_pages (space_id, title) SELECT '98306', 'Capped ' || g FROM generate_series(1, 5) g;
SELECT count(*) AS requests,
       min(gap) >= 0.2 AS spaced
  FROM (SELECT (r->>'t')::float8 - lag((r->>'t')::float8) OVER (ORDER BY (r->>'t')::float8) AS gap
          FROM standin_requests() r) g;
ALTER SERVER flt_srv OPTIONS (DROP max_rate);
SELECT shows_no_secret(string_agg(r::text, ' ')) AS no_secret_in_view
  FROM confluence_fdw.rate_limits r;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA flt CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER flt_srv;
DROP USER MAPPING FOR CURRENT_USER SERVER flt_slow;
DROP SCHEMA flt_same CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER flt_same;
DROP SERVER flt_srv, flt_slow, flt_same;
DROP SEQUENCE flt_title_seq;
DROP FUNCTION flt_one(text), flt_pipe(text), flt_put(text, boolean), flt_requests_since(int),
  flt_case(text, jsonb, float8), flt_waiting(text, int, int),
  flt_cancel_when_waiting(text, int, int);
RESET client_min_messages;
