--
-- Set-up shared by every test: the extension, a server pointing at the
-- Confluence stand-in, a user mapping, and SQL helpers that read what the
-- stand-in received.  Values from the environment never appear in the
-- expected output: psql echoes the :'variable' references, not their values.
--
\getenv standin_url STANDIN_URL
\getenv standin_url2 STANDIN_URL2
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_token2 CFDW_TOKEN2
\getenv cfdw_bearer CFDW_BEARER
\getenv cfdw_bad_token CFDW_BAD_TOKEN

CREATE EXTENSION confluence_fdw;
-- Its objects live in its own fixed schema, which cannot be moved.
SELECT extnamespace::regnamespace AS schema, extrelocatable FROM pg_extension
 WHERE extname = 'confluence_fdw';
SELECT p.oid::regprocedure AS function FROM pg_proc p
 WHERE p.pronamespace = 'confluence_fdw'::regnamespace ORDER BY 1::text;
ALTER EXTENSION confluence_fdw SET SCHEMA public;

-- Where the stand-in listens, for the helpers below and later tests.
CREATE TABLE standin_cfg (url text NOT NULL, url2 text NOT NULL);
INSERT INTO standin_cfg VALUES (:'standin_url', :'standin_url2');

-- Run the stand-in's control API with curl and return its JSON lines.
-- csv with delimiter and quote characters that never occur takes each line
-- verbatim (text format would eat the backslashes of JSON escapes).
CREATE FUNCTION standin_call(method text, what text, payload text DEFAULT NULL,
                             second boolean DEFAULT false)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
  cmd text;
BEGIN
  -- --noproxy: some runs give the server proxy variables it must ignore
  cmd := format('curl -sS --noproxy ''*'' --fail-with-body -X %s ''%s/_standin/%s''', method,
                (SELECT CASE WHEN second THEN url2 ELSE url END FROM standin_cfg), what);
  IF payload IS NOT NULL THEN
    cmd := cmd || ' --data-binary ''' || replace(payload, '''', '''\''''') || '''';
  END IF;
  IF to_regclass('pg_temp.standin_lines') IS NULL THEN
    CREATE TEMP TABLE standin_lines (line text);
  END IF;
  TRUNCATE standin_lines;
  EXECUTE format('COPY standin_lines FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')', cmd);
  RETURN QUERY SELECT line::jsonb FROM standin_lines WHERE line <> '';
END $$;

-- Forget recorded requests, stored objects and queued faults.
CREATE FUNCTION standin_reset() RETURNS void LANGUAGE sql AS $$
  SELECT NULL FROM standin_call('POST', 'reset') $$;

-- Every request the stand-in received since the last reset, in order.
CREATE FUNCTION standin_requests() RETURNS SETOF jsonb LANGUAGE sql AS $$
  SELECT * FROM standin_call('GET', 'requests') $$;

-- Counters: requests, connections (TCP connections that carried requests).
CREATE FUNCTION standin_stats() RETURNS jsonb LANGUAGE sql AS $$
  SELECT * FROM standin_call('GET', 'stats') $$;

-- Queue a fault (or an array of faults) for the next matching requests.
CREATE FUNCTION standin_fault(fault jsonb) RETURNS void LANGUAGE sql AS $$
  SELECT NULL FROM standin_call('POST', 'fault', fault::text) $$;

SELECT standin_reset();

-- The server and mapping most tests use.
CREATE SERVER standin FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER standin
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
IMPORT FOREIGN SCHEMA v2 FROM SERVER standin INTO public;

-- The helpers work: nothing recorded yet.
SELECT count(*) AS requests FROM standin_requests();
SELECT standin_stats()->>'requests' AS requests;

-- The stand-in's URLs as <standin> and <standin2>, for output that is the
-- same in every run and whether the stand-in is reached directly or through
-- the front (test/front.sh).
CREATE FUNCTION standin_masked(t text) RETURNS text LANGUAGE sql AS $$
  SELECT replace(replace(t, c.url2, '<standin2>'), c.url, '<standin>') FROM standin_cfg c $$;

-- EXPLAIN output with the stand-in's URL masked, for stable expected output.
CREATE FUNCTION explain_masked(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
    RETURN NEXT regexp_replace(standin_masked(line), '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g');
  END LOOP;
END $$;

-- Every secret of this run, read back from user mappings, so that a test
-- can check an output for them without writing a token into a statement
-- (with log_statement = 'all' the server log would then hold it).  The
-- vault servers exist only to hold the tokens no test mapping keeps.
CREATE SERVER vault_token2 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE SERVER vault_bearer FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE SERVER vault_bad FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER vault_token2
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
CREATE USER MAPPING FOR CURRENT_USER SERVER vault_bearer
  OPTIONS (bearer_token :'cfdw_bearer');
CREATE USER MAPPING FOR CURRENT_USER SERVER vault_bad
  OPTIONS (username :'cfdw_user', api_token :'cfdw_bad_token');
CREATE FUNCTION test_secrets() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT DISTINCT o.option_value
    FROM pg_user_mappings m, pg_options_to_table(m.umoptions) o
   WHERE o.option_name IN ('api_token', 'bearer_token', 'client_secret') $$;
-- true when text shows none of them
CREATE FUNCTION shows_no_secret(t text) RETURNS boolean LANGUAGE sql AS $$
  SELECT NOT EXISTS (SELECT 1 FROM test_secrets() s WHERE position(s IN t) > 0) $$;
SELECT count(*) AS secrets_known FROM test_secrets();
