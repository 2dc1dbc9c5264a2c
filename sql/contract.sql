--
-- Contract: the requests confluence_fdw sends, checked against Atlassian's
-- published OpenAPI spec of the Confluence Cloud REST API v2
-- (test/contract/openapi-v2.v3.json), served by Stoplight Prism as a
-- validating mock.  Prism answers a request the spec allows with the spec's
-- success status (and a body made from the spec: ids are "string", version
-- numbers -2147483648), and one it does not allow with the spec's 4xx and its
-- reasons in the sl-violations header.  PRISM_URL is a recorder in front of
-- Prism (test/contract/recorder.py) that passes everything through unchanged
-- and keeps, per request, the spec operation, the body sent, the status and
-- Prism's violations; contract_fetch() below reads what it kept.
--
\getenv prism_url PRISM_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

CREATE TABLE contract_cfg (url text NOT NULL);
INSERT INTO contract_cfg VALUES (:'prism_url');

-- Every request the recorder saw, as it saw it.
CREATE TABLE contract_log (n integer PRIMARY KEY, rec jsonb NOT NULL);

-- Run the recorder's control API with curl (as standin_call does).
CREATE FUNCTION contract_call(method text, what text)
RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
DECLARE
  cmd text;
BEGIN
  cmd := format('curl -sS --fail-with-body -X %s %s/_contract/%s', method,
                (SELECT url FROM contract_cfg), what);
  IF to_regclass('pg_temp.contract_lines') IS NULL THEN
    CREATE TEMP TABLE contract_lines (line text);
  END IF;
  TRUNCATE contract_lines;
  EXECUTE format('COPY contract_lines FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')', cmd);
  RETURN QUERY SELECT line::jsonb FROM contract_lines WHERE line <> '';
END $$;

-- The requests sent since the last call (kept in contract_log too): one row
-- each, with the operation of the spec it matched, the status Prism gave,
-- Prism's violations (distinct messages, in Prism's order; empty when the
-- spec accepted the request) and the whole record.
CREATE FUNCTION contract_fetch()
RETURNS TABLE (n integer, method text, operation text, status integer, violations text,
               rec jsonb)
LANGUAGE sql AS $$
  WITH new AS (
    INSERT INTO contract_log
    SELECT (r->>'n')::integer, r FROM contract_call('GET', 'requests') r
    ON CONFLICT DO NOTHING
    RETURNING *)
  SELECT new.n, rec->>'method', rec->>'operation', (rec->>'status')::integer,
         coalesce((SELECT string_agg(msg, E'\n' ORDER BY first)
                     FROM (SELECT v->>'message' AS msg, min(i) AS first
                             FROM jsonb_array_elements(rec->'violations') WITH ORDINALITY AS x(v, i)
                            GROUP BY v->>'message') m), ''),
         rec
    FROM new ORDER BY new.n $$;

SELECT r AS recorder FROM contract_call('POST', 'reset') r;

-- A server and mapping for Prism (plain http: superuser only), and the
-- ready-made tables of IMPORT FOREIGN SCHEMA.
CREATE SERVER prism FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'prism_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER prism
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA contract;
IMPORT FOREIGN SCHEMA v2 FROM SERVER prism INTO contract;
SET search_path = contract, public;

--
-- 1. Every template, with typical rows: the spec accepts them.
--
-- pages (createPage, 200): published, draft without a title, under a
-- parent, a live doc, and each representation.
INSERT INTO pages (space_id, title, body) VALUES
  ('98306', 'Release 1.2', '<p>Shipped.</p>')
RETURNING id, version, webui, http_status;
INSERT INTO pages (space_id, title, body, representation, status, parent_id, subtype) VALUES
  ('98306', NULL, '<p>Work in progress</p>', 'storage', 'draft', NULL, NULL),
  ('98306', 'Child page', 'h1. Wiki markup', 'wiki', 'current', '65537', NULL),
  ('98306', 'Live doc', '{"type":"doc","version":1,"content":[]}', 'atlas_doc_format', NULL, NULL, 'live'),
  ('98306', 'No body', NULL, NULL, NULL, NULL, NULL)
RETURNING title, id, http_status;
-- footer_comments (createFooterComment, 201): on a page, a blog post, an
-- attachment, custom content, and a reply.
INSERT INTO footer_comments (page_id, blog_post_id, attachment_id, custom_content_id, parent_comment_id, body) VALUES
  ('1234567', NULL, NULL, NULL, NULL, '<p>Deployed to production.</p>'),
  (NULL, '2345678', NULL, NULL, NULL, '<p>On a blog post.</p>'),
  (NULL, NULL, 'att3456789', NULL, NULL, '<p>On an attachment.</p>'),
  (NULL, NULL, NULL, '4567890', NULL, '<p>On custom content.</p>'),
  (NULL, NULL, NULL, NULL, '5678901', '<p>A reply.</p>')
RETURNING id, version, http_status;
-- blogposts (createBlogPost, 200): published and draft.
INSERT INTO blogposts (space_id, title, body, status) VALUES
  ('98306', 'Week 48', '<p>News.</p>', NULL),
  ('98306', NULL, '<p>Draft news.</p>', 'draft')
RETURNING id, http_status;
-- inline_comments (createInlineComment, 201): a top-level comment on a page
-- and on a blog post (with the text selection), and a reply.
INSERT INTO inline_comments (page_id, blog_post_id, parent_comment_id, body,
                             text_selection, text_selection_match_count, text_selection_match_index) VALUES
  ('1234567', NULL, NULL, '<p>Typo here.</p>', 'Shiped', 1, 0),
  (NULL, '2345678', NULL, '<p>Which one?</p>', 'release', 3, 2),
  (NULL, NULL, '5678901', '<p>Fixed.</p>', NULL, NULL, NULL)
RETURNING id, http_status;
-- The response columns are filled from Prism's answers.
WITH p AS (
  INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Returning', '<p>x</p>')
  RETURNING *)
SELECT id, version, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at, webui,
       response->>'status' AS status, http_status
  FROM p;
-- What went out, and Prism's verdict on each request.
SELECT n, method, operation, status, violations = '' AS accepted FROM contract_fetch();
-- The bodies the spec accepted (as confluence_fdw built them).
SELECT n, rec->>'path' AS path, rec->'body' AS body
  FROM contract_log ORDER BY n;

--
-- 2. The README's manual-mode examples: update a page (PUT) and delete one
-- (DELETE), tables copied from README.md.
--
CREATE FOREIGN TABLE page_updates (
  id text,                                   -- fills {id}, and is sent as "id"
  status text,
  title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  version_number integer OPTIONS (field 'version.number'),
  version_message text OPTIONS (field 'version.message'),
  new_version integer OPTIONS (response_field 'version.number'),
  http_status integer OPTIONS (response_field '$status')
) SERVER prism
  OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT');

INSERT INTO page_updates VALUES
  ('1234567', 'current', 'Release 1.2', '<p>Shipped, and patched.</p>', 'storage', 2, 'patch notes')
RETURNING new_version, http_status;

CREATE FOREIGN TABLE page_deletes (id text OPTIONS (send 'false'), http_status integer)
  SERVER prism OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'DELETE');
INSERT INTO page_deletes VALUES ('1234567') RETURNING http_status;

SELECT n, method, rec->>'path' AS path, operation, status, violations = '' AS accepted,
       rec->'body' AS body
  FROM contract_fetch();

--
-- 3. Requests the spec refuses: Prism answers 400 (with no body: the spec's
-- 400 has none), and the recorder shows why.  This is what makes the
-- checks above able to fail.
--
-- spaceId as a JSON number (the spec wants a string), with on_error 'return'
CREATE FOREIGN TABLE wrong_pages (
  space_id integer,
  title text,
  http_status integer,
  response text
) SERVER prism OPTIONS (endpoint '/wiki/api/v2/pages', on_error 'return');
INSERT INTO wrong_pages (space_id, title) VALUES (98306, 'Numbers')
RETURNING http_status, response IS NULL AS no_body;
-- the same with on_error 'error' (the default): the statement fails
ALTER FOREIGN TABLE wrong_pages OPTIONS (DROP on_error);
INSERT INTO wrong_pages (space_id, title) VALUES (98306, 'Numbers') RETURNING http_status;
-- an unknown key in "body" (bodyz for value): neither form of the body fits
CREATE FOREIGN TABLE wrong_bodies (
  space_id text,
  title text,
  body text OPTIONS (field 'body.bodyz'),
  representation text OPTIONS (field 'body.representation'),
  http_status integer
) SERVER prism OPTIONS (endpoint '/wiki/api/v2/pages', on_error 'return');
INSERT INTO wrong_bodies VALUES ('98306', 'Typo', '<p>x</p>', 'storage') RETURNING http_status;
-- a representation the spec does not list: the pages template refuses it
-- before sending, a manual table sends it and the spec refuses it
INSERT INTO pages (space_id, title, body, representation) VALUES ('98306', 'View', '<p>x</p>', 'view')
RETURNING http_status;
CREATE FOREIGN TABLE wrong_repr (
  space_id text,
  title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  http_status integer
) SERVER prism OPTIONS (endpoint '/wiki/api/v2/pages', on_error 'return');
INSERT INTO wrong_repr VALUES ('98306', 'View', '<p>x</p>', 'view') RETURNING http_status;
-- a page update without the required version
INSERT INTO page_updates (id, status, title, body, representation) VALUES
  ('1234567', 'current', 'Release 1.2', '<p>x</p>', 'storage')
RETURNING new_version, http_status;
-- a page id that is not a number (the spec's {id} is an int64)
INSERT INTO page_deletes VALUES ('release-1.2') RETURNING http_status;
-- Prism's verdicts: the status and every violation it reported.
SELECT n, method, operation, status, violations FROM contract_fetch();

--
-- 3b. Reads, UPDATE and DELETE: every GET a scan sends (pushed filters as
-- query parameters, body-format, limit), and the PUT and DELETE of a row.
-- Prism's example answers are made consistent with the query by the
-- recorder (test/contract/README.md): items take the filtered values, and
-- Prism's made-up next link ("string") is left out.
--
SELECT id IS NOT NULL AS has_id FROM pages LIMIT 1;
SELECT title IS NOT NULL AS has_title FROM pages
 WHERE space_id IN ('98306', '98307') AND title = 'Release notes' AND status IN ('current', 'archived') LIMIT 1;
SELECT body IS NOT NULL AS has_body FROM pages WHERE id IN ('1234567', '1234568') LIMIT 1;
SELECT count(*) >= 0 AS read FROM (SELECT key FROM spaces WHERE key IN ('SP', 'ENG') LIMIT 1) s;
SELECT count(*) >= 0 AS read FROM (SELECT id FROM spaces WHERE id = '98306' LIMIT 1) s;
SELECT count(*) >= 0 AS read FROM (SELECT body FROM footer_comments WHERE page_id = '1234567' LIMIT 1) s;
SELECT count(*) >= 0 AS read FROM (SELECT body FROM footer_comments WHERE id = '7654321') s;
SELECT count(*) >= 0 AS read FROM (SELECT title FROM blogposts WHERE space_id = '98306' LIMIT 1) s;
SELECT id, version, title FROM pages WHERE id = '1234567';
UPDATE pages SET body = '<p>Updated.</p>' WHERE id = '1234567' RETURNING version, http_status;
DELETE FROM pages WHERE id = '1234567' RETURNING http_status;
SELECT n, method, rec->>'path' AS path, operation, status, violations = '' AS accepted
  FROM contract_fetch();
-- the PUT: the row as read, the body set, version.number the one read + 1
SELECT rec->'body' AS put_body FROM contract_log WHERE rec->>'method' = 'PUT' ORDER BY n DESC LIMIT 1;

--
-- 3c. Content: every Markdown document of the corpus (test/corpus),
-- converted and checked, inside a page body; and an upsert, whose lookup
-- (getPages by space and title, Prism's example fitted to the query) finds
-- the page and whose PUT (updatePage) carries version + 1.
--
\getenv source_dir CFDW_SOURCE_DIR
CREATE TEMP TABLE corpus AS
  SELECT f AS name, pg_read_binary_file(:'source_dir' || '/test/corpus/' || f) AS raw
    FROM pg_ls_dir(:'source_dir' || '/test/corpus') f WHERE f LIKE '%.md';
-- a text value cannot hold NUL (the converter's own tests feed that one)
DELETE FROM corpus WHERE position('\x00'::bytea IN raw) > 0;
ALTER TABLE corpus ADD COLUMN md text;
UPDATE corpus SET md = convert_from(raw, 'UTF8');
-- and the corpus's 1 MB document, which test/corpus/make-large.py writes
\getenv results_dir CFDW_RESULTS_DIR
\! python3 "$CFDW_SOURCE_DIR/test/corpus/make-large.py" "$CFDW_RESULTS_DIR/corpus-large"
INSERT INTO corpus (name, md)
  VALUES ('90-large.md', pg_read_file(:'results_dir' || '/corpus-large/90-large.md'));
SELECT count(*) >= 30 AS corpus_of_30, max(length(md)) > 1000000 AS has_1mb_document FROM corpus;
INSERT INTO pages (space_id, title, body, representation)
  SELECT '98306', name, md, 'markdown' FROM corpus ORDER BY name;
-- Prism judged every body; the recorder keeps only the first 64 kB of one
-- (BODY_CAP), so the 1 MB page is not among those checked here again (its
-- conversion is checked by test/unit/test_storage.c)
SELECT count(*) AS pages, count(*) FILTER (WHERE violations = '') AS accepted,
       count(*) FILTER (WHERE rec->'body'->'body'->>'representation' = 'storage') AS as_storage,
       count(*) FILTER (WHERE confluence_fdw.storage_is_well_formed(rec->'body'->'body'->>'value')) AS well_formed
  FROM contract_fetch();
ALTER FOREIGN TABLE pages ADD COLUMN action text OPTIONS (response_field '$action');
ALTER FOREIGN TABLE pages OPTIONS (ADD on_conflict 'update');
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Release notes', E'# 1.2\n\n- fixed', 'markdown')
  RETURNING action, http_status;
ALTER FOREIGN TABLE pages OPTIONS (DROP on_conflict);
ALTER FOREIGN TABLE pages DROP COLUMN action;
SELECT n, method, operation, status, violations = '' AS accepted FROM contract_fetch();
SELECT rec->'body'->'version' AS put_version FROM contract_log
 WHERE rec->>'method' = 'PUT' ORDER BY n DESC LIMIT 1;

--
-- 4. Report: the spec operations exercised, and how Prism answered.
--
SELECT rec->>'operation' AS operation, rec->>'method' AS method,
       rec->>'template' AS path_template, count(*) AS requests,
       count(*) FILTER (WHERE rec->'violations' = '[]') AS accepted,
       count(*) FILTER (WHERE rec->'violations' <> '[]') AS refused,
       string_agg(DISTINCT rec->>'status', ', ') AS statuses
  FROM contract_log
 GROUP BY 1, 2, 3 ORDER BY 1;
-- Every accepted request got a 2xx and every refused one a 4xx; every
-- request carried Basic credentials and matched an operation of the spec.
SELECT count(*) AS requests,
       count(*) FILTER (WHERE (rec->'violations' = '[]') = ((rec->>'status')::int BETWEEN 200 AND 299)) AS consistent,
       count(*) FILTER (WHERE rec->>'auth_scheme' = 'Basic') AS basic_auth,
       count(*) FILTER (WHERE rec->>'operation' IS NOT NULL) AS matched
  FROM contract_log;

RESET search_path;
