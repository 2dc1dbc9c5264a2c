--
-- EXPLAIN: a plain EXPLAIN sends nothing and needs no credentials;
-- EXPLAIN (VERBOSE) shows the method and URL template, never a credential;
-- EXPLAIN ANALYZE runs the INSERT, so it sends.
--
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
SELECT standin_reset();

-- EXPLAIN (VERBOSE, COSTS OFF) of a statement, with the stand-in's port
-- (different in every run) masked.
CREATE FUNCTION explain_masked(stmt text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || stmt LOOP
    RETURN NEXT regexp_replace(standin_masked(line), '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g');
  END LOOP;
END $$;

-- The same, unmasked, for checking that no secret is in it.
CREATE FUNCTION explain_raw(stmt text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || stmt LOOP
    RETURN NEXT line;
  END LOOP;
END $$;

-- A plain EXPLAIN shows the plan and sends nothing.
EXPLAIN (COSTS OFF)
  INSERT INTO pages (space_id, title) VALUES ('98306', 'Explained, not sent');
EXPLAIN (COSTS OFF)
  INSERT INTO pages (space_id, title)
  SELECT '98306', 'Explained ' || g FROM generate_series(1, 3) g;
SELECT count(*) AS requests FROM standin_requests();

-- EXPLAIN (VERBOSE): the request's method and URL.
SELECT * FROM explain_masked($$
  INSERT INTO pages (space_id, title) VALUES ('98306', 'Explained, not sent')$$);
SELECT * FROM explain_masked($$
  INSERT INTO footer_comments (page_id, body) VALUES ('1', 'x')
  RETURNING id, http_status$$);
SELECT count(*) AS requests FROM standin_requests();

-- No credential in it: not the token, not the user name, no Authorization.
SELECT bool_and(shows_no_secret(line)) AS no_token,
       bool_and(position(:'cfdw_user' in line) = 0) AS no_user,
       bool_and(line !~* 'authorization|basic |bearer ') AS no_auth_header,
       count(*) > 0 AS has_lines
  FROM explain_raw($$INSERT INTO pages (space_id, title) VALUES ('98306', 'x')$$) AS line;

-- A server with a domain: https://{domain}.  No user mapping is needed for
-- EXPLAIN, plain or verbose.
CREATE SERVER explain_acme FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net');
CREATE FOREIGN TABLE explain_pages (space_id text, title text)
  SERVER explain_acme OPTIONS (endpoint 'pages');
CREATE FOREIGN TABLE explain_update (id text OPTIONS (send 'false'), title text)
  SERVER explain_acme OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'put');
EXPLAIN (VERBOSE, COSTS OFF)
  INSERT INTO explain_pages VALUES ('98306', 'On acme');
EXPLAIN (VERBOSE, COSTS OFF)
  INSERT INTO explain_update VALUES ('123', 'New title');

-- A base_url with a path prefix and a trailing slash.
CREATE SERVER explain_gateway FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'https://api.atlassian.com/ex/confluence/11111111-2222-3333-4444-555555555555/');
CREATE FOREIGN TABLE explain_gateway_comments (page_id text, body text)
  SERVER explain_gateway OPTIONS (endpoint 'footer_comments', method 'POST');
EXPLAIN (VERBOSE, COSTS OFF)
  INSERT INTO explain_gateway_comments VALUES ('1', 'x');
-- A table without an endpoint is refused when the statement is planned
-- (the planner needs to know what the table can do), before anything is sent.
CREATE FOREIGN TABLE explain_noendpoint (title text) SERVER explain_acme;
SELECT * FROM explain_raw($$INSERT INTO explain_noendpoint VALUES ('x')$$) AS line;
SELECT count(*) AS requests FROM standin_requests();

-- EXPLAIN ANALYZE executes the INSERT: the request is sent.  (Row counts
-- shown without the two decimals PostgreSQL 18 added.)
CREATE FUNCTION explain_analyzed(stmt text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || stmt LOOP
    RETURN NEXT regexp_replace(line, 'rows=(\d+)\.00 ', 'rows=\1 ', 'g');
  END LOOP;
END $$;
SELECT * FROM explain_analyzed($$INSERT INTO pages (space_id, title)
                                 VALUES ('98306', 'Explain analyze sends')$$) AS "QUERY PLAN";
SELECT count(*) AS requests, min(r->>'path') AS path,
       min(r->'body_json'->>'title') AS title
  FROM standin_requests() r;

-- Clean up.
DROP FOREIGN TABLE explain_pages, explain_update, explain_gateway_comments,
  explain_noendpoint;
DROP SERVER explain_acme, explain_gateway;
DROP FUNCTION explain_masked(text), explain_raw(text), explain_analyzed(text);
