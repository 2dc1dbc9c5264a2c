--
-- delivery 'queue' on a database that other roles use: the SQL the
-- extension runs with more rights (the queue insert and requeue() as the
-- queue's owner, the worker as superuser) resolves no name through the
-- caller's search_path; the worker survives errors and a cancel; rows move
-- only as the queue's transition table allows (src/queue_state.c).
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

CREATE SERVER qs_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retry_wait_ms '2000');
CREATE USER MAPPING FOR CURRENT_USER SERVER qs_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA qs;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments) FROM SERVER qs_srv INTO qs;
ALTER FOREIGN TABLE qs.pages OPTIONS (ADD delivery 'queue');

CREATE FUNCTION qs_worker() RETURNS int LANGUAGE sql AS $$
  SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker' $$;
DO $$
BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN qs_worker() IS NOT NULL;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT qs_worker() IS NOT NULL AS worker_runs;

-- An attacker: TEMP on the database (every role has it), INSERT on a
-- queue table and a user mapping, its own schema.
CREATE ROLE qs_attacker LOGIN;
GRANT USAGE ON FOREIGN SERVER qs_srv TO qs_attacker;
GRANT USAGE ON SCHEMA qs TO qs_attacker;
GRANT INSERT ON qs.pages TO qs_attacker;
CREATE USER MAPPING FOR qs_attacker SERVER qs_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA qs_evil AUTHORIZATION qs_attacker;

--
-- 1. A "jsonb" domain in the attacker's temporary schema, whose CHECK makes
-- the attacker superuser: the queue insert, run as the queue's owner, must
-- not use it.
--
SELECT standin_reset();
SET ROLE qs_attacker;
CREATE FUNCTION pg_temp.grab() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  ALTER ROLE qs_attacker SUPERUSER;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RETURN true;
END $$;
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.grab());
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS temp domain', '<p>1</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, http_status FROM confluence_fdw.queue;
-- (the temporary schema is the session's: the superuser's statements below
-- would meet the domain too)
DROP DOMAIN pg_temp.jsonb;
DROP FUNCTION pg_temp.grab();
RESET ROLE;
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'qs_attacker';

--
-- 2. An "=" operator of the attacker's, in a schema before pg_catalog in
-- search_path, reached through requeue().
--
SELECT standin_fault('{"kind": "status", "status": 400, "method": "POST"}');
SET ROLE qs_attacker;
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS refused', '<p>2</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
CREATE FUNCTION qs_evil.grab() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  ALTER ROLE qs_attacker SUPERUSER;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RETURN true;
END $$;
CREATE FUNCTION qs_evil.eq(regrole, regrole) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RETURN qs_evil.grab(); END';
CREATE FUNCTION qs_evil.eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RETURN qs_evil.grab(); END';
CREATE FUNCTION qs_evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RETURN qs_evil.grab(); END';
CREATE FUNCTION qs_evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS 'BEGIN RETURN qs_evil.grab(); END';
CREATE OPERATOR qs_evil.= (LEFTARG = regrole, RIGHTARG = regrole, FUNCTION = qs_evil.eq);
CREATE OPERATOR qs_evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = qs_evil.eq);
CREATE OPERATOR qs_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = qs_evil.eq);
CREATE OPERATOR qs_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = qs_evil.eq);
SELECT id AS refused_id FROM confluence_fdw.queue WHERE state = 'dead' \gset
SET search_path = qs_evil, pg_catalog;
SELECT confluence_fdw.requeue(:refused_id) AS requeued;
RESET search_path;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, http_status FROM confluence_fdw.queue ORDER BY id;
RESET ROLE;
SELECT rolsuper AS attacker_is_superuser FROM pg_roles WHERE rolname = 'qs_attacker';

--
-- 3. A make_interval(numeric) and a "/" planted in public by a role that
-- may create there (a database owner, say): the worker, a superuser,
-- must not call them.
--
CREATE ROLE qs_dbo;
GRANT CREATE ON SCHEMA public TO qs_dbo;
SET ROLE qs_dbo;
CREATE FUNCTION public.make_interval(secs numeric) RETURNS interval LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    ALTER ROLE qs_dbo SUPERUSER;
  EXCEPTION WHEN OTHERS THEN
    NULL;
  END;
  RETURN pg_catalog.make_interval(secs => secs::float8);
END $$;
CREATE FUNCTION public.qs_div(bigint, numeric) RETURNS numeric LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    ALTER ROLE qs_dbo SUPERUSER;
  EXCEPTION WHEN OTHERS THEN
    NULL;
  END;
  RETURN $1::numeric OPERATOR(pg_catalog./) $2;
END $$;
CREATE OPERATOR public./ (LEFTARG = bigint, RIGHTARG = numeric, FUNCTION = public.qs_div);
RESET ROLE;
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS planted', '<p>3</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, http_status FROM confluence_fdw.queue;
SELECT rolsuper AS dbo_is_superuser FROM pg_roles WHERE rolname = 'qs_dbo';
DROP OPERATOR public./ (bigint, numeric);
DROP FUNCTION public.qs_div(bigint, numeric);
DROP FUNCTION public.make_interval(numeric);
REVOKE CREATE ON SCHEMA public FROM qs_dbo;
DROP ROLE qs_dbo;

--
-- The worker reports its activity and its table statistics, so autovacuum
-- sees the queue's dead rows: each row it sends is two updates (its claim
-- and its outcome).
--
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT state FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker') = 'idle';
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT state AS worker_state FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker';
SELECT pg_stat_force_next_flush();
SELECT pg_stat_clear_snapshot();
SELECT n_tup_upd AS upd_before FROM pg_stat_user_tables
 WHERE relid = 'confluence_fdw.queue'::regclass \gset
SELECT set_config('qs.upd_before', :'upd_before', false) IS NOT NULL AS noted;
INSERT INTO qs.pages (space_id, title, body)
  SELECT '98306', 'QS counted ' || i, '<p>c</p>' FROM generate_series(1, 3) i;
SELECT confluence_fdw.flush(10000) AS still_waiting;
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM pg_stat_clear_snapshot();
    EXIT WHEN (SELECT n_tup_upd >= current_setting('qs.upd_before')::bigint + 6
                 FROM pg_stat_user_tables WHERE relid = 'confluence_fdw.queue'::regclass);
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT n_tup_upd - :upd_before AS worker_updates_counted, n_dead_tup > 0 AS dead_rows_seen
  FROM pg_stat_user_tables WHERE relid = 'confluence_fdw.queue'::regclass;

--
-- 4. UPDATE and DELETE of a queue table would be sent at once, outside the
-- transaction: refused.  flush() cannot see progress in REPEATABLE READ.
--
UPDATE qs.pages SET title = 'QS changed' WHERE id = '1';
DELETE FROM qs.pages WHERE id = '1';
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT confluence_fdw.flush(100);
ROLLBACK;

--
-- 5. A page refused with 400 on its second attempt (the first got a 429
-- and no retry within it) is dead: one POST per attempt, no lookup loop.
--
CREATE SERVER qs_once FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER qs_once
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE qs.once (space_id text, title text, body text)
  SERVER qs_once OPTIONS (endpoint 'pages', delivery 'queue');
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
SELECT standin_fault('[{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "1"}},
                       {"kind": "status", "status": 400, "method": "POST", "times": -1}]');
INSERT INTO qs.once (space_id, title, body) VALUES ('98306', 'QS 429 then 400', '<p>5</p>');
SELECT confluence_fdw.flush(15000) AS still_waiting;
SELECT state, attempts, http_status, standin_masked(error) AS error FROM confluence_fdw.queue;
SELECT r->>'method' AS method, r->>'status' AS status FROM standin_requests() r
 ORDER BY (r->>'seq')::int;

--
-- 6. The worker survives a cancel (pg_cancel_backend): an ERROR ends its
-- round, not the process, and it goes on sending.
--
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
SELECT qs_worker() AS worker_pid \gset
SELECT pg_cancel_backend(:worker_pid) AS cancelled;
SELECT pg_sleep(1.5);
SELECT qs_worker() = :worker_pid AS same_worker;
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS after cancel', '<p>6</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue;

--
-- 7. A row left in 'sending' (a crash after its claim) is reconciled by
-- its title among the *current* pages: a draft with the same title is not
-- it, so the row is sent, once.
--
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
SELECT (r->>'first_id') AS draft_id FROM standin_call('POST', 'seed',
  '{"collection": "pages", "count": 1, "spaceId": "98306", "title_prefix": "QS twin ", "status": "draft"}') r \gset
BEGIN;
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS twin 1', '<p>7</p>');
UPDATE confluence_fdw.queue SET state = 'sending', attempts = 1;
COMMIT;
-- an ERROR in the worker makes it reconcile, as a restart does
SELECT pg_cancel_backend(qs_worker()) AS cancelled;
SELECT confluence_fdw.flush(15000) AS still_waiting;
SELECT state, remote_id <> :'draft_id' AS not_the_draft, standin_masked(error) AS error
  FROM confluence_fdw.queue;
SELECT count(*) AS posts FROM standin_requests() r WHERE r->>'method' = 'POST';

--
-- 8. A row left in 'sending' whose credentials are refused when the
-- reconciliation asks for its page (as after a crash that lost the outcome
-- of a 401): held, not in_doubt.  Once the user mapping changes it is sent
-- again, and the page its lost attempt did create is found by its title,
-- not made twice.
--
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
SELECT (r->>'first_id') AS lost_id FROM standin_call('POST', 'seed',
  '{"collection": "pages", "count": 1, "spaceId": "98306", "title_prefix": "QS lost hold "}') r \gset
BEGIN;
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS lost hold 1', '<p>8</p>');
UPDATE confluence_fdw.queue SET state = 'sending', attempts = 1;
COMMIT;
SELECT standin_fault('{"kind": "status", "status": 401, "method": "GET"}');
SELECT pg_cancel_backend(qs_worker()) AS cancelled;
DO $$
BEGIN
  FOR i IN 1..150 LOOP
    EXIT WHEN EXISTS (SELECT FROM confluence_fdw.queue WHERE state <> 'sending');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT state, attempts, http_status, standin_masked(error) AS error FROM confluence_fdw.queue;
ALTER USER MAPPING FOR CURRENT_USER SERVER qs_srv OPTIONS (SET api_token :'cfdw_token');
DO $$
BEGIN
  FOR i IN 1..150 LOOP
    EXIT WHEN EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'done');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT state, attempts, remote_id = :'lost_id' AS the_page_of_the_lost_attempt,
       standin_masked(error) AS error
  FROM confluence_fdw.queue;
SELECT r->>'method' AS method, r->>'status' AS status FROM standin_requests() r
 ORDER BY (r->>'seq')::int;

--
-- 9. One group's persistent error stops no other group: an upsert whose
-- lookup lists the page without a version (an ERROR in the worker each
-- time), and a row whose table was replaced by a plain table, both sorted
-- before a row of another table, which is sent.
--
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;
CREATE FOREIGN TABLE qs.a_poison (space_id text, title text, body text)
  SERVER qs_srv OPTIONS (endpoint 'pages', delivery 'queue', on_conflict 'update');
CREATE FOREIGN TABLE qs.a_gone (space_id text, title text)
  SERVER qs_srv OPTIONS (endpoint 'pages', delivery 'queue');
SELECT standin_fault('{"kind": "merge", "method": "GET", "match": "/wiki/api/v2/pages", "times": -1,
                       "fields": {"results": [{"id": "1", "title": "QS poison", "spaceId": "98306", "status": "current"}]}}');
BEGIN;
INSERT INTO qs.a_poison VALUES ('98306', 'QS poison', '<p>p</p>');
INSERT INTO qs.a_gone VALUES ('98306', 'QS gone');
DROP FOREIGN TABLE qs.a_gone;
CREATE TABLE qs.a_gone (x int);
INSERT INTO qs.pages (space_id, title, body) VALUES ('98306', 'QS unrelated', '<p>u</p>');
COMMIT;
DO $$
BEGIN
  FOR i IN 1..150 LOOP
    EXIT WHEN EXISTS (SELECT FROM confluence_fdw.queue
                       WHERE body::jsonb->>'title' = 'QS unrelated' AND state = 'done');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT body::jsonb->>'title' AS title,
       CASE WHEN body::jsonb->>'title' = 'QS poison' THEN state <> 'done' AND attempts >= 1 END AS poison_not_done_but_tried,
       CASE WHEN body::jsonb->>'title' <> 'QS poison' THEN state END AS state,
       CASE WHEN body::jsonb->>'title' = 'QS gone' THEN regexp_replace(error, 'role "[^"]*"', 'role <me>') END AS error
  FROM confluence_fdw.queue ORDER BY id;
SELECT standin_reset();
TRUNCATE confluence_fdw.queue;

DROP SCHEMA qs CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER qs_once;
DROP SERVER qs_once;
DROP USER MAPPING FOR qs_attacker SERVER qs_srv;
DROP USER MAPPING FOR CURRENT_USER SERVER qs_srv;
DROP SERVER qs_srv;
DROP SCHEMA qs_evil CASCADE;
DROP ROLE qs_attacker;
DROP FUNCTION qs_worker();
TRUNCATE confluence_fdw.queue;
