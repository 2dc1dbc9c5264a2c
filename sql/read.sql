--
-- SELECT: the list endpoints page by page, WHERE clauses sent as query
-- parameters (and still checked locally), the body only when a body column
-- is read, LIMIT, joins, manual reads, and the faults a read can meet.
--
SELECT standin_reset();

-- The requests of this test as "METHOD path?query", cursors and ids masked
-- (both depend on what ran before).
CREATE FUNCTION read_requests() RETURNS TABLE (n int, request text, status int) LANGUAGE sql AS $$
  SELECT (r->>'seq')::int,
         regexp_replace((r->>'method') || ' ' || (r->>'path') ||
           coalesce('?' || nullif(regexp_replace(r->>'query', 'cursor=[^&]*', 'cursor=C'), ''), ''),
           '[0-9]{7,}', 'ID', 'g'),
         (r->>'status')::int
    FROM standin_requests() r ORDER BY (r->>'seq')::int $$;
-- Forget the requests recorded so far, keep the objects.
CREATE OR REPLACE FUNCTION standin_clear_log() RETURNS void LANGUAGE sql AS $$
  SELECT NULL FROM standin_call('POST', 'reset?keep=objects') $$;
-- The error a statement raises, with the stand-in's origin and cursors masked.
CREATE FUNCTION read_error(query text) RETURNS TABLE (state text, message text, detail text)
LANGUAGE plpgsql AS $$
DECLARE
  m text; d text;
BEGIN
  EXECUTE query;
  RETURN QUERY SELECT 'no error'::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN QUERY SELECT state, regexp_replace(standin_masked(m), 'cursor=[^&" ]*', 'cursor=C', 'g'),
                      regexp_replace(regexp_replace(standin_masked(d), 'cursor=[^&" ]*', 'cursor=C', 'g'),
                                     'Request id: \S+', 'Request id: R');
END $$;
-- EXPLAIN (VERBOSE, COSTS OFF) with the stand-in's origin masked.
CREATE OR REPLACE FUNCTION plan_of(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
    RETURN NEXT standin_masked(line);
  END LOOP;
END $$;
-- Only the URLs of EXPLAIN (VERBOSE), with the stand-in's origin masked.
-- (A join filter "a = b" is shown with its sides in name order: which side
-- the planner prints first differs between PostgreSQL majors.)
CREATE FUNCTION read_explain(query text) RETURNS SETOF text LANGUAGE sql AS $$
  SELECT CASE WHEN m IS NULL THEN t
              ELSE 'Filter: (' || least(m[1], m[2]) || ' = ' || greatest(m[1], m[2]) || ')' END
    FROM plan_of(query) l,
         LATERAL (SELECT regexp_replace(l, '^\s+', '') AS t) s,
         LATERAL (SELECT regexp_match(t, '^Filter: \(([a-z_]+\.[a-z_]+) = ([a-z_]+\.[a-z_]+)\)$') AS m) f
   WHERE l ~ 'Confluence Request|Foreign Scan|Nested Loop|Hash|Filter|Seq Scan' $$;

-- 600 pages in the stand-in's space, 3 in a second space, and that space.
SELECT x->>'created' AS spaces FROM standin_call('POST', 'seed',
  '{"collection": "spaces", "spaces": [{"id": "98400", "key": "ENG", "name": "Engineering", "type": "global", "status": "current"}]}') x;
SELECT x->>'created' AS pages FROM standin_call('POST', 'seed',
  '{"collection": "pages", "count": 600, "spaceId": "98306", "title_prefix": "Seed ", "body": "<p>seed</p>"}') x;
SELECT x->>'created' AS pages FROM standin_call('POST', 'seed',
  '{"collection": "pages", "count": 3, "spaceId": "98400", "title_prefix": "Eng ", "body": "<p>eng</p>"}') x;
SELECT standin_clear_log();

-- A whole scan follows the next links to the end: three pages of 250, each
-- id once, and no body asked for (no body column is read).
SELECT count(*) AS pages, count(DISTINCT id) AS ids, min(version) AS version,
       bool_and(http_status = 200) AS all_200
  FROM pages;
SELECT request, status FROM read_requests();

-- Columns map as on INSERT; the body only with body-format=storage.
SELECT standin_clear_log();
SELECT space_id, title, status, body, representation, parent_id IS NOT NULL AS has_parent,
       version, created_at IS NOT NULL AS has_created_at, webui LIKE '/spaces/%' AS webui,
       response->>'title' AS response_title, response ? 'body' AS response_has_body
  FROM pages WHERE title = 'Seed 7';
SELECT title FROM pages WHERE title = 'Seed 8';
SELECT request, status FROM read_requests();

-- What is sent, in EXPLAIN (VERBOSE): a plain EXPLAIN sends nothing.
SELECT standin_clear_log();
EXPLAIN (COSTS OFF) SELECT * FROM pages WHERE title = 'Seed 7';
SELECT * FROM read_explain($$SELECT id FROM pages WHERE id = '1' $$);
SELECT * FROM read_explain($$SELECT id FROM pages WHERE id IN ('1', '2') AND space_id = '98306' $$);
SELECT * FROM read_explain($$SELECT id FROM pages WHERE status IN ('current', 'draft') AND title = 'a b&c' $$);
-- a list never shows drafts (asking is a 400): that status is checked locally only
SELECT * FROM read_explain($$SELECT id FROM pages WHERE status = 'draft' $$);
SELECT * FROM read_explain($$SELECT id FROM pages WHERE lower(title) = 'x' $$);
SELECT * FROM read_explain($$SELECT id FROM pages WHERE title = 'x' LIMIT 5 $$);
SELECT * FROM read_explain($$SELECT key FROM spaces WHERE key IN ('ENG', 'SP') $$);
SELECT * FROM read_explain($$SELECT id FROM footer_comments WHERE page_id = '42' $$);
SELECT * FROM read_explain($$SELECT id FROM footer_comments WHERE id = '7' AND page_id = '42' $$);
SELECT count(*) AS requests_sent_by_explain FROM standin_requests();

-- Pushed filters arrive as query parameters and are checked locally too.
SELECT count(*) AS eng_pages, min(title) AS first FROM pages WHERE space_id = '98400';
SELECT title FROM pages WHERE space_id IN ('98400', '98401') AND title IN ('Eng 2', 'Eng 3') ORDER BY 1;
SELECT count(*) AS none FROM pages WHERE title = 'No such page';
SELECT count(*) AS none FROM pages WHERE id = NULL;
SELECT count(*) AS none FROM pages WHERE id = ANY ('{}'::text[]);
SELECT request, status FROM read_requests();

-- Ids found by title: = and IN by id, one request each.
SELECT standin_clear_log();
CREATE TEMP TABLE seed_ids AS SELECT id, title FROM pages WHERE space_id = '98400';
SELECT p.title FROM pages p, seed_ids s WHERE p.id = s.id AND s.title = 'Eng 1';
SELECT count(*) AS by_ids FROM pages WHERE id = ANY (ARRAY(SELECT id FROM seed_ids));
SELECT request, status FROM read_requests();

-- Confluence's matching may differ (case, say): every pushed clause is
-- checked again, so only the exact title comes back.
SELECT standin_fault('{"kind": "status", "status": 200, "method": "GET", "match": "/wiki/api/v2/pages",
  "body": "{\"results\": [{\"id\": \"1\", \"title\": \"seed 7\"}, {\"id\": \"2\", \"title\": \"Seed 7\"}], \"_links\": {}}",
  "content_type": "application/json"}');
SELECT id, title FROM pages WHERE title = 'Seed 7';

-- LIMIT: a LIMIT the scan answers alone asks for no more; a larger one
-- stops paging once it has its rows.
SELECT standin_clear_log();
SELECT count(*) AS five FROM (SELECT id FROM pages LIMIT 5) s;
SELECT count(*) AS three_hundred FROM (SELECT id FROM pages LIMIT 300) s;
SELECT count(*) AS with_local_filter FROM (SELECT id FROM pages WHERE title LIKE 'Seed 1%' LIMIT 3) s;
SELECT request, status FROM read_requests();

-- Spaces: read-only, key and id pushed.
SELECT id, key, name, type, status FROM spaces ORDER BY id;
SELECT id FROM spaces WHERE key = 'ENG';
SELECT count(*) AS none FROM spaces WHERE key = 'eng';

-- The recipe: a space key and a parent title to ids, in one INSERT.
SELECT standin_clear_log();
INSERT INTO pages (space_id, parent_id, title, body)
SELECT s.id, p.id, 'Release 1.3', '<p>Shipped.</p>'
  FROM spaces s JOIN pages p ON p.space_id = s.id
 WHERE s.key = 'ENG' AND p.title = 'Eng 2'
RETURNING space_id, parent_id = (SELECT id FROM seed_ids WHERE title = 'Eng 2') AS parent_ok, version;
SELECT request, status FROM read_requests();

-- Costs count requests: a pushed id or title is one, an unfiltered scan of
-- the site many; so a join scans the filtered side and looks the other up.
CREATE FUNCTION plan_cost(query text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
  plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || query INTO plan;
  RETURN (plan->0->'Plan'->>'Total Cost')::float8;
END $$;
SELECT plan_cost($$SELECT * FROM pages WHERE id = '1'$$) < 2000 AS id_is_one_request,
       plan_cost($$SELECT * FROM pages WHERE title = 'x'$$) < 2000 AS title_is_one_request,
       plan_cost($$SELECT * FROM pages$$) > 20 * plan_cost($$SELECT * FROM pages WHERE id = '1'$$)
         AS full_scan_costs_more;
-- A join on an id column can be a nested loop that asks for each row.
SELECT * FROM read_explain($$SELECT p.title FROM seed_ids s JOIN pages p ON p.id = s.id WHERE s.title = 'Eng 3' $$);

-- Footer comments: of one page, or one comment; a page that is not there
-- has none (404 is no rows, not an error).
SELECT standin_clear_log();
INSERT INTO footer_comments (page_id, body)
SELECT id, '<p>on ' || title || '</p>' FROM seed_ids;
SELECT count(*) AS comments FROM footer_comments WHERE page_id = (SELECT id FROM seed_ids WHERE title = 'Eng 1');
SELECT c.body FROM footer_comments c JOIN seed_ids s ON c.page_id = s.id WHERE s.title = 'Eng 2';
SELECT count(*) AS none FROM footer_comments WHERE page_id = '404404';
SELECT count(*) AS all_comments FROM footer_comments;
SELECT request, status FROM read_requests() WHERE request LIKE 'GET%';

-- Manual reads: any v2 list endpoint, items mapped by field paths; a
-- placeholder is filled from WHERE, and a read without it is refused.
CREATE FOREIGN TABLE page_comments (
  page_id text OPTIONS (send 'false'),
  id text,
  body text OPTIONS (field 'body.storage.value'),
  version integer OPTIONS (field 'version.number'),
  item jsonb OPTIONS (field '.')
) SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages/{page_id}/footer-comments?body-format=storage', method 'GET');
SELECT c.page_id = s.id AS page_id_kept, c.body, c.version, c.item->>'id' = c.id AS item
  FROM page_comments c JOIN seed_ids s ON c.page_id = s.id WHERE s.title = 'Eng 3';
SELECT count(*) FROM page_comments;
-- Every item keeps the placeholder's value, so the local recheck of
-- page_id = ... keeps every row: the README's page_labels, five labels on
-- a page, two pages of results, and a join whose nested loop asks again
-- with each page's id.
CREATE FOREIGN TABLE page_labels (
  page_id text OPTIONS (send 'false'),
  id text, name text, prefix text
) SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages/{page_id}/labels?limit=250', method 'GET');
SELECT id AS eng1 FROM seed_ids WHERE title = 'Eng 1' \gset
SELECT id AS eng2 FROM seed_ids WHERE title = 'Eng 2' \gset
SELECT x->>'created' AS labels FROM standin_call('POST', 'seed', format(
  '{"collection": "labels", "pageId": "%s", "names": ["alpha", "beta", "gamma", "delta", "epsilon"]}', :'eng1')) x;
SELECT x->>'created' AS labels FROM standin_call('POST', 'seed', format(
  '{"collection": "labels", "pageId": "%s", "names": ["one", "two", "three"], "prefix": "team"}', :'eng2')) x;
SELECT standin_clear_log();
SELECT name FROM page_labels WHERE page_id = :'eng1';
SELECT page_id = :'eng2' AS page_id_kept, name, prefix FROM page_labels WHERE page_id = :'eng2' ORDER BY name;
ALTER FOREIGN TABLE page_labels OPTIONS (SET endpoint '/wiki/api/v2/pages/{page_id}/labels?limit=2');
SELECT count(*) AS labels, count(DISTINCT id) AS ids FROM page_labels WHERE page_id = :'eng1';
SELECT * FROM read_explain($$SELECT s.title, l.name FROM seed_ids s JOIN page_labels l ON l.page_id = s.id$$);
SELECT s.title, l.name, l.page_id = s.id AS page_id_kept
  FROM seed_ids s JOIN page_labels l ON l.page_id = s.id ORDER BY 1, 2;
SELECT request, status FROM read_requests();
CREATE FOREIGN TABLE space_list (id text, key text, homepage text OPTIONS (field 'homepageId'))
  SERVER standin OPTIONS (endpoint '/wiki/api/v2/spaces?limit=1', method 'GET');
SELECT id, key FROM space_list ORDER BY id;
-- a write table that also reads, with read_endpoint
CREATE FOREIGN TABLE page_writer (title text, space_id text, id text OPTIONS (response_field 'id'))
  SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages', read_endpoint '/wiki/api/v2/pages?space-id=98400');
SELECT title FROM page_writer ORDER BY title;

-- No silent zero rows: what a table cannot do is refused with 0A000.
CREATE FOREIGN TABLE write_only (title text) SERVER standin OPTIONS (endpoint '/wiki/echo/w');
\set VERBOSITY default
SELECT * FROM write_only;
INSERT INTO spaces (key) VALUES ('X');
INSERT INTO space_list (key) VALUES ('X');
UPDATE footer_comments SET body = 'x' WHERE id = '1';
DELETE FROM spaces WHERE key = 'ENG';
UPDATE write_only SET title = 'x';
DELETE FROM write_only;
CREATE FOREIGN TABLE bad_read (title text) SERVER standin
  OPTIONS (endpoint '/wiki/echo/w', read_endpoint 'wiki/api/v2/pages');
ALTER FOREIGN TABLE pages OPTIONS (ADD read_endpoint '/wiki/api/v2/pages');
CREATE FOREIGN TABLE queued_read (title text) SERVER standin
  OPTIONS (endpoint '/wiki/api/v2/spaces', method 'GET', delivery 'queue');
\set VERBOSITY terse

-- Faults.  A 429 in the middle of a scan is waited out and the scan goes
-- on; so are a 500 and a dropped connection (a GET changes nothing).
SELECT standin_clear_log();
SELECT standin_fault('{"kind": "status", "status": 429, "method": "GET", "match": "/wiki/api/v2/pages",
  "skip": 1, "headers": {"Retry-After": "1"}}');
SELECT count(*) AS after_429 FROM pages;
SELECT standin_fault('{"kind": "status", "status": 500, "method": "GET", "match": "/wiki/api/v2/pages", "skip": 2}');
SELECT count(*) AS after_500 FROM pages;
SELECT standin_fault('{"kind": "drop_before_body", "method": "GET", "match": "/wiki/api/v2/pages", "skip": 1}');
SELECT count(*) AS after_drop FROM pages;
SELECT request, status FROM read_requests();
-- a 429 on the fifth of ten pages (a manual read, 61 to a page)
SELECT standin_clear_log();
CREATE FOREIGN TABLE paged (id text, title text)
  SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages?space-id=98306&limit=61', method 'GET');
SELECT standin_fault('{"kind": "status", "status": 429, "method": "GET", "match": "/wiki/api/v2/pages",
  "skip": 4, "headers": {"Retry-After": "1"}}');
SELECT count(*) AS rows, count(DISTINCT id) AS ids FROM paged;
SELECT count(*) AS requests, count(*) FILTER (WHERE status = 429) AS answered_429,
       count(*) FILTER (WHERE status = 200) AS pages FROM read_requests();

-- A page that is not JSON is an error naming the URL; so is one without
-- results; a next link to another host is never followed.
SELECT standin_fault('{"kind": "malformed_json", "method": "GET", "match": "/wiki/api/v2/pages", "skip": 1}');
SELECT * FROM read_error('SELECT count(*) FROM pages');
SELECT standin_fault('{"kind": "status", "status": 200, "method": "GET", "match": "/wiki/api/v2/pages",
  "body": "{\"items\": []}", "content_type": "application/json"}');
SELECT * FROM read_error('SELECT count(*) FROM pages');
SELECT standin_fault('{"kind": "status", "status": 200, "method": "GET", "match": "/wiki/api/v2/pages",
  "body": "{\"results\": [{\"id\": \"1\"}], \"_links\": {\"next\": \"https://elsewhere.example/wiki/api/v2/pages?cursor=x\"}}",
  "content_type": "application/json"}');
SELECT * FROM read_error('SELECT count(*) FROM pages');
SELECT standin_fault('{"kind": "status", "status": 401, "method": "GET", "match": "/wiki/api/v2/spaces",
  "body": "{\"errors\": [{\"status\": 401, \"code\": \"UNAUTHORIZED\", \"title\": \"Unauthorized\"}]}",
  "content_type": "application/json"}');
SELECT * FROM read_error('SELECT count(*) FROM spaces');

-- A cancel (here statement_timeout) during a slow page acts at once.
SELECT standin_fault('{"kind": "delay", "delay_ms": 20000, "method": "GET", "match": "/wiki/api/v2/pages"}');
SET statement_timeout = '500ms';
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SELECT count(*) FROM pages;
RESET statement_timeout;
SELECT clock_timestamp() - t < interval '10 s' AS stopped_early FROM t0;
-- the connection is fine afterwards
SELECT count(*) AS eng FROM pages WHERE space_id = '98400';

-- Reads are allowed to a role with its own mapping only; nothing here
-- showed a secret.
SELECT shows_no_secret(string_agg(r::text, ' ')) AS no_secret_in_requests FROM standin_requests() r;
