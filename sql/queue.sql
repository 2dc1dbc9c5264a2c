--
-- delivery 'queue': an INSERT writes its request into confluence_fdw.queue
-- in the user's transaction; the worker sends it after COMMIT.  A rollback
-- sends nothing.  (The cluster runs with shared_preload_libraries =
-- confluence_fdw and confluence_fdw.database_name = contrib_regression.)
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

CREATE SERVER q_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', max_retry_wait_ms '2000');
CREATE USER MAPPING FOR CURRENT_USER SERVER q_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments) FROM SERVER q_srv INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
ALTER FOREIGN TABLE q.pages ADD COLUMN queue_id bigint OPTIONS (response_field '$queue_id');
ALTER FOREIGN TABLE q.pages ADD COLUMN source_id int OPTIONS (send 'false');

-- by title: the worker sends up to max_concurrency rows at once, so the
-- order they arrive in is not theirs
CREATE FUNCTION q_titles() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT r->'body_json'->>'title' FROM standin_requests() r
   WHERE r->>'method' = 'POST' ORDER BY 1 $$;
CREATE FUNCTION q_rows(OUT title text, OUT state text, OUT http_status int,
                       OUT has_remote_id boolean, OUT context jsonb, OUT error text)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT body::jsonb->>'title', state, http_status, remote_id IS NOT NULL, context,
         standin_masked(error)
    FROM confluence_fdw.queue ORDER BY id $$;

-- The worker runs (it connects once pg_regress has made the database).
DO $$
BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT count(*) AS workers FROM pg_stat_activity
 WHERE backend_type = 'confluence_fdw worker' AND datname = current_database();

--
-- 1. A rolled back transaction sends nothing; a committed one is sent.
--
SELECT standin_reset();
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q rolled back', '<p>x</p>');
SELECT count(*) AS queued_in_xact FROM confluence_fdw.queue;
ROLLBACK;
SELECT count(*) AS queued_after_rollback FROM confluence_fdw.queue;

-- RETURNING gives the queue id; response columns are NULL (nothing was
-- answered yet); send 'false' columns are kept as the row's context.
BEGIN;
INSERT INTO q.pages (space_id, title, body, source_id)
  VALUES ('98306', 'Q one', '<p>1</p>', 41), ('98306', 'Q two', '<p>2</p>', 42)
  RETURNING title, queue_id IS NOT NULL AS has_queue_id, id, http_status;
-- nothing is sent before COMMIT
SELECT pg_sleep(0.3);
SELECT count(*) AS requests_before_commit FROM standin_requests();
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_titles();
SELECT * FROM q_rows();

-- A savepoint rolled back takes its rows with it.
SELECT standin_reset();
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q kept', '<p>k</p>');
SAVEPOINT s;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q undone', '<p>u</p>');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_titles();

--
-- 2. A trigger on a local table publishes only what commits.
--
CREATE TABLE incidents (id int PRIMARY KEY, summary text);
CREATE FUNCTION incident_page() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO q.pages (space_id, title, body, source_id)
    VALUES ('98306', 'Incident ' || NEW.id, '<p>' || NEW.summary || '</p>', NEW.id);
  RETURN NULL;
END $$;
CREATE TRIGGER incident_page AFTER INSERT ON incidents
  FOR EACH ROW EXECUTE FUNCTION incident_page();
SELECT standin_reset();
BEGIN;
INSERT INTO incidents VALUES (1, 'rolled back');
ROLLBACK;
INSERT INTO incidents VALUES (2, 'committed');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_titles();

--
-- 3. Outcomes: a refusal is dead, a rate limit waits and goes through.
--
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
-- a refusal (400): dead, with Confluence's words
SELECT standin_fault('{"kind": "status", "status": 400, "method": "POST"}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q refused', '<p>first</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT title, state, http_status, error FROM q_rows();
-- requeue puts it back; sent again, it goes through
SELECT confluence_fdw.requeue(id) FROM confluence_fdw.queue WHERE state = 'dead';
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, attempts, http_status
  FROM confluence_fdw.queue ORDER BY id;
-- a done row is not requeued
SELECT confluence_fdw.requeue(id) AS requeue_done_row FROM confluence_fdw.queue WHERE state = 'done';
-- a duplicate title: Confluence refuses the create because the page
-- exists; the worker finds it by its title (in the same space, the exact
-- title), and the row is done with that page's id, on a first attempt too
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q dup', '<p>first</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q dup', '<p>again</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, attempts, http_status, error
  FROM confluence_fdw.queue WHERE body::jsonb->>'title' = 'Q dup' ORDER BY id;
SELECT count(DISTINCT remote_id) AS pages_of_q_dup FROM confluence_fdw.queue
 WHERE body::jsonb->>'title' = 'Q dup';

-- 429 with Retry-After: retried by the worker, then done
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT coalesce((SELECT recent_429s FROM confluence_fdw.rate_limits
                  WHERE site = split_part(:'standin_url', '/', 3)), 0) AS site_429s \gset
SELECT standin_fault('{"kind": "status", "status": 429, "headers": {"Retry-After": "1"}}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q after 429', '<p>r</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT title, state, http_status FROM q_rows();
SELECT count(*) AS posts FROM standin_requests() r WHERE r->>'method' = 'POST';

-- The shared rate limit of the site (host and port) remembers the 429.
SELECT recent_429s - :site_429s AS new_429s FROM confluence_fdw.rate_limits
 WHERE site = split_part(:'standin_url', '/', 3);

--
-- 4. Bad input: checks before queueing are the immediate path's errors,
-- and nothing is queued.
--
TRUNCATE confluence_fdw.queue;
INSERT INTO q.pages (space_id, body) VALUES ('98306', '<p>no title</p>');
SELECT count(*) AS queued FROM confluence_fdw.queue;
-- a queue table cannot batch
ALTER FOREIGN TABLE q.pages OPTIONS (ADD batch_mode 'true');
ALTER FOREIGN TABLE q.pages OPTIONS (SET delivery 'later');
-- a queued row whose user mapping was dropped before it was sent is dead,
-- with the reason
CREATE ROLE q_user LOGIN;
GRANT USAGE ON FOREIGN SERVER q_srv TO q_user;
GRANT USAGE ON SCHEMA q TO q_user;
GRANT INSERT, SELECT ON q.pages TO q_user;
CREATE USER MAPPING FOR q_user SERVER q_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
SET ROLE q_user;
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q orphan', '<p>o</p>');
-- the role sees its own queue rows only
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue;
RESET ROLE;
DROP USER MAPPING FOR q_user SERVER q_srv;
SET ROLE q_user;
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state, error FROM confluence_fdw.queue;
-- nobody may write the queue by hand
INSERT INTO confluence_fdw.queue (enqueued_by, server_name, table_name, method, url)
  VALUES ('q_user', 'q_srv', 'q.pages', 'POST', 'https://example.com/');
UPDATE confluence_fdw.queue SET state = 'pending';
-- nor requeue another role's row
RESET ROLE;
SELECT standin_fault('{"kind": "status", "status": 400, "method": "POST"}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q refused again', '<p>no</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT id AS dead_id FROM confluence_fdw.queue
 WHERE state = 'dead' AND enqueued_by = current_user::text::regrole \gset
SET ROLE q_user;
SELECT confluence_fdw.requeue(:dead_id) AS other_role;
SELECT count(*) AS visible_to_q_user FROM confluence_fdw.queue;
SELECT confluence_fdw.requeue(id) AS own_row FROM confluence_fdw.queue;
RESET ROLE;
SELECT count(*) AS rows_of_everyone FROM confluence_fdw.queue;

-- The worker resolves the user mapping when it sends: a token rotated after
-- the rows were queued applies to them, and a connection made with the old
-- token is not reused.
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q before rotation', '<p>1</p>');
SELECT confluence_fdw.flush(10000) AS still_waiting;
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q revoked token', '<p>2</p>');
ALTER USER MAPPING FOR CURRENT_USER SERVER q_srv OPTIONS (SET api_token 'revoked-token');
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q rotated token', '<p>3</p>');
ALTER USER MAPPING FOR CURRENT_USER SERVER q_srv OPTIONS (SET api_token :'cfdw_token');
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT title, state, http_status FROM q_rows();

-- No credential anywhere in the queue.
SELECT shows_no_secret(q::text) AS queue_has_no_secret FROM confluence_fdw.queue q;

--
-- 5. Credentials refused: a 401 or 403 holds the row (state held), which
-- ends nothing: flush() does not wait for it (a NOTICE counts it), and a
-- change of the row's user mapping or server sends it again, once.
--
CREATE FUNCTION q_wait_until(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
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
CREATE FUNCTION q_held(OUT title text, OUT state text, OUT attempts int, OUT http_status int,
                       OUT ended boolean, OUT error text)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT body::jsonb->>'title', state, attempts, http_status, done_at IS NOT NULL,
         standin_masked(error)
    FROM confluence_fdw.queue ORDER BY id $$;
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
-- a 401 (a revoked token, say): held, not dead
SELECT standin_fault('{"kind": "status", "status": 401, "method": "POST"}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q unauthorized', '<p>401</p>');
SELECT q_wait_until($$EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS held;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_held();
SELECT credentials_version ~ '^\d+:\d+/\d+:\d+$' AS has_versions FROM confluence_fdw.queue;
-- a change elsewhere (another server) leaves it held
CREATE SERVER q_other_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
ALTER SERVER q_other_srv OPTIONS (ADD max_retries '1');
SELECT pg_sleep(2.5);
SELECT state FROM confluence_fdw.queue;
DROP SERVER q_other_srv;
-- the user mapping changes (the token rotated: here set to the same one):
-- sent again, and done, with one more POST
ALTER USER MAPPING FOR CURRENT_USER SERVER q_srv OPTIONS (SET api_token :'cfdw_token');
SELECT q_wait_until($$NOT EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS released;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_held();
SELECT r->>'status' AS status FROM standin_requests() r WHERE r->>'method' = 'POST'
 ORDER BY (r->>'seq')::int;

-- a 403 (no permission): held too; requeue() sends it again
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 403, "method": "POST"}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q forbidden', '<p>403</p>');
SELECT q_wait_until($$EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS held;
SELECT * FROM q_held();
SELECT confluence_fdw.requeue(id) AS requeued FROM confluence_fdw.queue WHERE state = 'held';
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_held();

-- a change of the server's options sends held rows again too, and so does
-- a user mapping dropped and created again
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT standin_fault('[{"kind": "status", "status": 401, "method": "POST", "times": 2}]');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q server changed', '<p>s</p>');
SELECT q_wait_until($$EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS held;
ALTER SERVER q_srv OPTIONS (SET max_retry_wait_ms '2000');
SELECT q_wait_until($$(SELECT count(*) FROM standin_requests() r WHERE r->>'method' = 'POST') = 2$$)
  AS sent_again;
SELECT q_wait_until($$EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS held_again;
SELECT * FROM q_held();
BEGIN;
DROP USER MAPPING FOR CURRENT_USER SERVER q_srv;
CREATE USER MAPPING FOR CURRENT_USER SERVER q_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
COMMIT;
SELECT q_wait_until($$NOT EXISTS (SELECT FROM confluence_fdw.queue WHERE state = 'held')$$) AS released;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT * FROM q_held();
SELECT r->>'status' AS status FROM standin_requests() r WHERE r->>'method' = 'POST'
 ORDER BY (r->>'seq')::int;
-- the versions held rows keep are no credential either
SELECT shows_no_secret(q::text) AS queue_has_no_secret FROM confluence_fdw.queue q;

-- A change that fixes nothing (here a GRANT on the server) sends one held
-- row of the group (a probe), not all: refused again, the others stay held
-- with the new versions and send nothing.  A change that fixes it sends
-- the probe, then, once it is done, the others.
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 401, "method": "POST", "times": 4}');
INSERT INTO q.pages (space_id, title, body)
  SELECT '98306', 'Q probe ' || g, '<p>p</p>' FROM generate_series(1, 3) g;
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'held') = 3$$) AS held;
GRANT USAGE ON FOREIGN SERVER q_srv TO PUBLIC;
SELECT q_wait_until($$(SELECT count(*) FROM standin_requests() r WHERE r->>'method' = 'POST') = 4$$)
  AS probe_sent;
SELECT q_wait_until($$(SELECT count(DISTINCT credentials_version) FROM confluence_fdw.queue) = 1$$)
  AS held_with_the_probes_versions;
SELECT pg_sleep(2.5);
SELECT state, attempts, count(*) FROM confluence_fdw.queue GROUP BY 1, 2;
SELECT count(*) AS posts FROM standin_requests() r WHERE r->>'method' = 'POST';
ALTER USER MAPPING FOR CURRENT_USER SERVER q_srv OPTIONS (SET api_token :'cfdw_token');
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done') = 3$$) AS done;
REVOKE USAGE ON FOREIGN SERVER q_srv FROM PUBLIC;
SELECT title, state, attempts, http_status, ended FROM q_held();
SELECT r->>'status' AS status FROM standin_requests() r WHERE r->>'method' = 'POST'
 ORDER BY (r->>'seq')::int;
-- released and requeued rows keep no versions; the probe keeps the ones it
-- was sent for
SELECT count(*) FILTER (WHERE credentials_version IS NULL) AS without_versions
  FROM confluence_fdw.queue;

-- A held row that cannot be compared (its table's name cannot be read)
-- is a WARNING in the server log; it stops neither the other held rows nor
-- the delivery of new ones.
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 401, "method": "POST", "times": 2}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q unreadable', '<p>u</p>');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q readable', '<p>r</p>');
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'held') = 2$$) AS held;
UPDATE confluence_fdw.queue SET table_name = 'q."pages' WHERE body LIKE '%Q unreadable%';
ALTER USER MAPPING FOR CURRENT_USER SERVER q_srv OPTIONS (SET api_token :'cfdw_token');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q after', '<p>a</p>');
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done') = 2$$) AS delivered;
SELECT title, state FROM q_held();
DELETE FROM confluence_fdw.queue WHERE state = 'held';

--
-- Content in queue mode: Markdown is converted and a malformed storage body
-- refused at INSERT time (nothing is queued); an upsert is looked up by the
-- worker, and a second run of an unchanged report makes no new version.
--
SELECT standin_reset();
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q malformed', '<p>open');
SELECT count(*) AS queued_malformed FROM confluence_fdw.queue WHERE body LIKE '%Q malformed%';
CREATE FOREIGN TABLE q.reports (space_id text, title text, body text,
    action text OPTIONS (response_field '$action'))
  SERVER q_srv OPTIONS (endpoint 'pages', delivery 'queue', representation 'markdown',
                        on_conflict 'update');
INSERT INTO q.reports (space_id, title, body) VALUES ('98306', 'Q report', E'# Daily\n\n```sql\nSELECT 1;\n```');
SELECT confluence_fdw.flush(10000) AS still_waiting;
INSERT INTO q.reports (space_id, title, body) VALUES ('98306', 'Q report', E'# Daily\n\n```sql\nSELECT 1;\n```');
SELECT confluence_fdw.flush(10000) AS still_waiting;
INSERT INTO q.reports (space_id, title, body) VALUES ('98306', 'Q report', E'# Daily\n\nChanged.');
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->'body'->>'value' AS queued_body, state, http_status, action,
       remote_id IS NOT NULL AS has_remote_id
  FROM confluence_fdw.queue WHERE body::jsonb->>'title' = 'Q report' ORDER BY id;
SELECT r->>'method' AS method, r->>'status' AS status,
       r->'body_json'->'version'->>'number' AS put_version
  FROM standin_requests() r ORDER BY (r->>'seq')::int;
DROP FOREIGN TABLE q.reports;

--
-- 6. A rate limit longer than a statement waits (an hourly quota asks for
-- half an hour): the row waits in retry_wait until the limit lifts, and
-- that costs no attempt.
--
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "1800"}}');
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q quota', '<p>q</p>');
SELECT q_wait_until($$EXISTS (SELECT FROM confluence_fdw.queue WHERE http_status = 429)$$) AS answered;
SELECT state, attempts, http_status, done_at IS NULL AS not_ended,
       next_attempt_at - now() BETWEEN interval '1790 s' AND interval '1801 s' AS waits_30_minutes,
       regexp_replace(error, 'at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d', 'at <time>') AS error,
       substring(error from 'again at (.*) \(in')::timestamptz = next_attempt_at AS says_when
  FROM confluence_fdw.queue;
-- flush() counts it: it still waits to be sent
SELECT confluence_fdw.flush(200) AS still_waiting;
-- once due, it is sent: one attempt in all (the worker waits for the
-- server until then; a change of the server makes it forget that)
ALTER SERVER q_srv OPTIONS (SET max_retry_wait_ms '2000');
UPDATE confluence_fdw.queue SET next_attempt_at = now();
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT state, attempts, http_status FROM confluence_fdw.queue;
SELECT r->>'status' AS status FROM standin_requests() r WHERE r->>'method' = 'POST'
 ORDER BY (r->>'seq')::int;

-- The server's other rows wait too, without a request and without an
-- attempt, each until the limit lifts plus a little (up to a tenth of the
-- wait), so that they do not all come due at once.
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
ALTER SERVER q_srv OPTIONS (ADD max_concurrency '1');
SELECT standin_fault('{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "1800"}}');
INSERT INTO q.pages (space_id, title, body)
  SELECT '98306', 'Q quota ' || g, '<p>q</p>' FROM generate_series(1, 5) g;
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'retry_wait') = 5$$)
  AS all_wait;
-- a row queued later waits as well
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q quota later', '<p>q</p>');
SELECT q_wait_until($$(SELECT count(*) FROM confluence_fdw.queue WHERE state = 'retry_wait') = 6$$)
  AS later_waits;
SELECT count(*) AS posts FROM standin_requests() r WHERE r->>'method' = 'POST';
SELECT state, attempts, count(*),
       bool_and(next_attempt_at - now() BETWEEN interval '1790 s' AND interval '1861 s') AS until_it_lifts,
       count(DISTINCT next_attempt_at) > 1 AS spread
  FROM confluence_fdw.queue GROUP BY 1, 2;
SELECT regexp_replace(error, 'until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d', 'until <time>') AS error,
       count(*)
  FROM confluence_fdw.queue WHERE http_status IS NULL GROUP BY 1;

-- Rate limits postpone a row for at most 7 days after it was queued: then
-- it is dead, and says why.
TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
ALTER SERVER q_srv OPTIONS (DROP max_concurrency);
SELECT standin_fault('{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "1800"}}');
BEGIN;
INSERT INTO q.pages (space_id, title, body) VALUES ('98306', 'Q quota old', '<p>q</p>');
UPDATE confluence_fdw.queue SET enqueued_at = now() - interval '8 days';
COMMIT;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT state, attempts, http_status, done_at IS NOT NULL AS ended,
       regexp_replace(error, 'at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d', 'at <time>') AS error
  FROM confluence_fdw.queue;
DROP FUNCTION q_wait_until(text);
DROP FUNCTION q_held();

REVOKE ALL ON SCHEMA q FROM q_user;
REVOKE ALL ON FOREIGN SERVER q_srv FROM q_user;
DROP TABLE incidents;
DROP FUNCTION incident_page();
DROP SCHEMA q CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER q_srv;
DROP SERVER q_srv;
TRUNCATE confluence_fdw.queue;
DROP ROLE q_user;

-- A queue table in a database the worker does not serve is refused before
-- anything is queued, naming the setting.
CREATE DATABASE q_other;
\c q_other
CREATE EXTENSION confluence_fdw;
CREATE SERVER q_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER q_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER q_srv INTO public;
ALTER FOREIGN TABLE pages OPTIONS (ADD delivery 'queue');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Q elsewhere', '<p>e</p>');
SELECT count(*) AS queued_elsewhere FROM confluence_fdw.queue;
\c contrib_regression
DROP DATABASE q_other;
