--
-- pg_cron: a scheduled job sends rows to Confluence.  The job runs in a
-- background worker as the role that scheduled it, with that role's user
-- mapping.  pg_cron 1.4 starts jobs on the minute, so this test waits up to
-- 75 s for one run, and unschedules the jobs right after it.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- A server of this test's own.
CREATE SERVER cron_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER cron_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA cron_t;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments)
  FROM SERVER cron_srv INTO cron_t;

-- What the job sends.
CREATE TABLE cron_t.source (space_id text, title text, body text);
INSERT INTO cron_t.source VALUES
  ('98306', 'Cron page 1', '<p>one</p>'),
  ('98306', 'Cron page 2', '<p>two</p>'),
  ('98306', 'Cron page 3', '<p>three</p>');

SELECT standin_reset();

-- Two jobs for the same minute: one that works, and one whose request
-- Confluence refuses (a comment on a page that does not exist), to see
-- how the error is recorded.  Their ids go to psql variables, unprinted.
SELECT cron.schedule('cfdw-test', '* * * * *',
  $$INSERT INTO cron_t.pages (space_id, title, body) SELECT space_id, title, body FROM cron_t.source ORDER BY title$$) AS job_ok \gset
SELECT cron.schedule('cfdw-test-error', '* * * * *',
  $$INSERT INTO cron_t.footer_comments (page_id, body) VALUES ('404404', 'From cron')$$) AS job_error \gset
SELECT jobname, schedule, username = current_user AS as_current_user,
       database = current_database() AS in_this_database, active
  FROM cron.job WHERE jobid IN (:job_ok, :job_error) ORDER BY jobname;

-- Wait for the first run of both to finish, then unschedule them at once,
-- so that each runs exactly once.
CREATE TEMP TABLE cron_jobs AS SELECT :job_ok::bigint AS jobid UNION ALL SELECT :job_error;
-- (the wait sends nothing itself; some runs set a short statement_timeout)
SET statement_timeout = 0;
DO $$
DECLARE
  finished int;
BEGIN
  FOR i IN 1..75 LOOP
    SELECT count(DISTINCT jobid) INTO finished FROM cron.job_run_details
     WHERE jobid IN (SELECT jobid FROM cron_jobs) AND status IN ('succeeded', 'failed');
    EXIT WHEN finished = 2;
    PERFORM pg_sleep(1);
  END LOOP;
  PERFORM cron.unschedule(jobid) FROM cron_jobs;
  IF finished < 2 THEN
    RAISE WARNING 'the cron jobs did not finish within 75 s';
  END IF;
END $$;
RESET statement_timeout;
SELECT count(*) AS jobs_left FROM cron.job WHERE jobid IN (SELECT jobid FROM cron_jobs);

-- How each run ended, as pg_cron recorded it: one run each.  (The jobs ran
-- side by side, so the stand-in's request id in the error is masked.)
SELECT CASE jobid WHEN :job_ok THEN 'cfdw-test' ELSE 'cfdw-test-error' END AS job,
       status, regexp_replace(return_message, 'standin[0-9a-f]{8}', 'standinXXXXXXXX') AS return_message,
       username = current_user AS ran_as_scheduler
  FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron_jobs)
 ORDER BY job;

-- What Confluence received: the refused comment and the three pages (sent
-- several at a time, so in any order), each with this role's token (1).
SELECT r->>'path' AS path, r->'body_json'->>'title' AS title,
       r->>'auth' = 'basic:' || :'cfdw_user' || ':1' AS with_token_1,
       (r->>'status')::int AS status
  FROM standin_requests() r ORDER BY path, title;
SELECT s->'pages' AS pages_created FROM standin_stats() s;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA cron_t CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER cron_srv;
DROP SERVER cron_srv;
RESET client_min_messages;
