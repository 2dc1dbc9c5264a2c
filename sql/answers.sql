--
-- Answers as Confluence may send them, at random: JSON with \u0000, lone
-- and paired UTF-16 surrogates, escaped and raw non-ASCII characters,
-- numbers at and past the edges of numeric, nested arrays and objects.
-- Whatever the database encoding (UTF8, LATIN1, SQL_ASCII), no answer
-- fails the INSERT that got it and none leaves its jsonb column NULL; in
-- a UTF-8 database an answer that jsonb_in takes as it is comes back
-- exactly as jsonb_in reads it.  The answers are the same in every run
-- (setseed).
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
SELECT current_database() AS regress_db \gset
SELECT standin_reset();
SELECT setseed(0.21);

CREATE FUNCTION ans_piece() RETURNS text LANGUAGE sql AS $$
  SELECT (ARRAY['\u0000', '\ud800', '\udc00', '\ud83d\ude00', '\u4e2d', '\u00e9', '\u0041', 'é', '中', '😀',
                '\\u0000', '\\', '\"', 'x', ' ', '\n', '\u2713', '\uffff', '\ud83d', '\ude00\ud83d'])
         [1 + floor(random() * 20)::int] $$;
CREATE FUNCTION ans_value(depth int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  r float8 := random();
  s text := '';
BEGIN
  IF depth > 3 OR r < 0.4 THEN
    FOR i IN 1..floor(random() * 6)::int LOOP
      s := s || ans_piece();
    END LOOP;
    RETURN '"' || s || '"';
  ELSIF r < 0.55 THEN
    RETURN (ARRAY['1e999999', '-0.5e-20000', '1e1000', '12345678901234567890', '0', '-1.5E+3',
                  '1e131071', '1e131072', '1e-16383', '1e-16384', '0.' || repeat('1', 16383),
                  '0.' || repeat('1', 16384), '-0e-5'])[1 + floor(random() * 13)::int];
  ELSIF r < 0.6 THEN
    RETURN (ARRAY['true', 'false', 'null'])[1 + floor(random() * 3)::int];
  ELSIF r < 0.8 THEN
    RETURN '[' || coalesce((SELECT string_agg(ans_value(depth + 1), ',')
                              FROM generate_series(1, floor(random() * 4)::int)), '') || ']';
  END IF;
  RETURN '{' || coalesce((SELECT string_agg(ans_value(9) || ':' || ans_value(depth + 1), ',')
                            FROM generate_series(1, floor(random() * 4)::int)), '') || '}';
END $$;
-- 400 answers, each served three times (once per database) at its own path
CREATE TABLE ans_bodies AS
  SELECT i, '{"id": "1", "v": ' || ans_value(0) || '}' AS body FROM generate_series(1, 400) i;
SELECT count(*) AS answers,
       count(*) FILTER (WHERE body LIKE '%\u0000%') AS with_u0000,
       count(*) FILTER (WHERE body ~ '\\u[dD][89abAB]') AS with_surrogates,
       count(*) FILTER (WHERE body LIKE '%e999999%') AS with_huge_numbers
  FROM ans_bodies;
SELECT count(*) AS faults FROM ans_bodies, LATERAL standin_call('POST', 'fault',
  json_build_object('kind', 'status', 'status', 200, 'times', 3,
                    'match', '/wiki/echo/ans' || lpad(i::text, 5, '0'), 'body', body)::text);

-- Inserts one row per answer; what went wrong, counted.
CREATE FUNCTION ans_run(bodies text[], OUT answers int, OUT errors int, OUT null_jsonb int,
                        OUT not_as_jsonb_in_reads int, OUT first_error text)
LANGUAGE plpgsql AS $$
DECLARE
  resp jsonb;
  orig jsonb;
  msg text;
BEGIN
  answers := 0; errors := 0; null_jsonb := 0; not_as_jsonb_in_reads := 0;
  SET LOCAL client_min_messages = error;  -- one WARNING per odd answer
  FOR i IN 1..400 LOOP
    answers := answers + 1;
    BEGIN
      INSERT INTO ans_t (seg) VALUES ('ans' || lpad(i::text, 5, '0')) RETURNING response INTO resp;
      IF resp IS NULL THEN
        null_jsonb := null_jsonb + 1;
      END IF;
      IF bodies IS NOT NULL THEN
        BEGIN
          orig := bodies[i]::jsonb;
          IF resp IS DISTINCT FROM orig THEN
            not_as_jsonb_in_reads := not_as_jsonb_in_reads + 1;
          END IF;
        EXCEPTION WHEN OTHERS THEN
          NULL;   -- jsonb_in refuses it: rewritten, as the README says
        END;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
      errors := errors + 1;
      first_error := coalesce(first_error, msg || ' (answer ' || i || ')');
    END;
  END LOOP;
END $$;
CREATE SERVER ans_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER ans_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE ans_t (seg text OPTIONS (send 'false'), response jsonb)
  SERVER ans_srv OPTIONS (endpoint '/wiki/echo/{seg}');
SELECT * FROM ans_run((SELECT array_agg(body ORDER BY i) FROM ans_bodies));

-- The same answers in a LATIN1 and a SQL_ASCII database.
DROP DATABASE IF EXISTS cfdw_regress_ans_latin1;
DROP DATABASE IF EXISTS cfdw_regress_ans_ascii;
CREATE DATABASE cfdw_regress_ans_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'
  TEMPLATE template0;
CREATE DATABASE cfdw_regress_ans_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'
  TEMPLATE template0;
SELECT pg_get_functiondef('ans_run(text[])'::regprocedure) AS ans_run_def \gset
\c cfdw_regress_ans_latin1
SET client_encoding = 'UTF8';
CREATE EXTENSION confluence_fdw;
CREATE SERVER ans_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER ans_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE ans_t (seg text OPTIONS (send 'false'), response jsonb)
  SERVER ans_srv OPTIONS (endpoint '/wiki/echo/{seg}');
SELECT set_config('cfdw.def', :'ans_run_def', false) IS NOT NULL AS ok \gset
DO $$ BEGIN EXECUTE current_setting('cfdw.def'); END $$;
SELECT answers, errors, null_jsonb, first_error FROM ans_run(NULL);
\c cfdw_regress_ans_ascii
CREATE EXTENSION confluence_fdw;
CREATE SERVER ans_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER ans_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE ans_t (seg text OPTIONS (send 'false'), response jsonb)
  SERVER ans_srv OPTIONS (endpoint '/wiki/echo/{seg}');
SELECT set_config('cfdw.def', :'ans_run_def', false) IS NOT NULL AS ok \gset
DO $$ BEGIN EXECUTE current_setting('cfdw.def'); END $$;
SELECT answers, errors, null_jsonb, first_error FROM ans_run(NULL);

-- Clean up.
\c :regress_db
DROP DATABASE cfdw_regress_ans_latin1;
DROP DATABASE cfdw_regress_ans_ascii;
SET client_min_messages = warning;
DROP FOREIGN TABLE ans_t;
DROP USER MAPPING FOR CURRENT_USER SERVER ans_srv;
DROP SERVER ans_srv;
DROP FUNCTION ans_run(text[]), ans_value(int), ans_piece();
DROP TABLE ans_bodies;
RESET client_min_messages;
