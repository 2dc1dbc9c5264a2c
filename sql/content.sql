--
-- Content: Markdown and plain text to storage format, the well-formedness
-- check before a storage body is sent, the SQL helpers, and upsert of pages
-- by title (on_conflict) without new versions for unchanged pages.
--
SELECT standin_reset();

-- The helpers, on their own.
SELECT confluence_fdw.markdown_to_storage(E'# Release 1.2\n\nFixed *two* bugs & one <leak>.\n\n- [x] tests\n- [ ] docs\n');
SELECT confluence_fdw.markdown_to_storage(E'```sql\nSELECT 1 WHERE a[1]]>0;\n```\n\n> [!WARNING]\n> Restart needed.');
SELECT confluence_fdw.text_to_storage(E'Line one & <two>\nline two\n\n\r\nNew paragraph');
SELECT body, confluence_fdw.storage_is_well_formed(body) AS well_formed
  FROM (VALUES ('<p>a&nbsp;b &mdash; <ac:link><ri:page ri:content-title="Home" /></ac:link></p>'),
               ('<p>a & b</p>'), ('<p>unclosed'), ('<x:y/>'), ('plain words'), ('')) v(body);
SELECT confluence_fdw.markdown_to_storage(NULL) IS NULL AS strict;

-- A CHECK constraint keeps malformed bodies out of a staging table.
CREATE TABLE notes_staging (title text, body text
  CHECK (confluence_fdw.storage_is_well_formed(body)));
INSERT INTO notes_staging VALUES ('ok', '<p>fine</p>');
INSERT INTO notes_staging VALUES ('bad', '<p>a <br> b</p>');
DROP TABLE notes_staging;

-- representation 'markdown' in a row: converted, sent as storage.
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'From Markdown', E'## Summary\n\n| a | b |\n|---|--:|\n| 1 | 2 |', 'markdown');
-- ... as the table's option, and as the body column's option
ALTER FOREIGN TABLE pages OPTIONS (ADD representation 'plain');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'From text', E'a < b\nc');
ALTER FOREIGN TABLE pages OPTIONS (DROP representation);
ALTER FOREIGN TABLE pages ALTER COLUMN body OPTIONS (ADD representation 'markdown');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Column option', '**bold**');
-- a row's own representation still wins
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Row wins', 'h1. Wiki', 'wiki');
ALTER FOREIGN TABLE pages ALTER COLUMN body OPTIONS (DROP representation);
-- every template with a body: comments and blog posts too
INSERT INTO footer_comments (page_id, body, representation)
  VALUES ('1000001', 'Looks *good*', 'markdown');
INSERT INTO blogposts (space_id, title, body, representation)
  VALUES ('98306', 'Post', E'- one\n- two', 'markdown');
SELECT r->>'method' AS method, r->'body_json'->>'title' AS title,
       r->'body_json'->'body' AS body
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- A malformed storage body is refused before sending: 22P02, naming the
-- column, the line and column, and (in CONTEXT) the row.  Nothing is sent.
SELECT standin_reset();
\set VERBOSITY default
-- (RETURNING: one row at a time, so the good row is answered before the
-- bad one is built; pipelined, it could be stopped before it left)
INSERT INTO pages (space_id, title, body) VALUES
  ('98306', 'Good', '<p>fine</p>'),
  ('98306', 'Bad', E'<p>first line</p>\n<p>Tom & Jerry</p>')
  RETURNING title;
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Bad tag', E'<p>a</p>\n\n<p>x <br> y</p>');
-- the SQLSTATE
\set VERBOSITY sqlstate
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Bad tag', E'<p>a</p>\n\n<p>x <br> y</p>');
\set VERBOSITY default
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Unknown entity', '<p>&bogus;</p>');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Prefix', '<p><foo:bar/></p>');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Unclosed', '<ul><li>one</li>');
-- on_error 'return' does not make it an answer: it was never sent
ALTER FOREIGN TABLE pages OPTIONS (ADD on_error 'return');
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'Still bad', '<p>a & b</p>')
  RETURNING http_status;
ALTER FOREIGN TABLE pages OPTIONS (DROP on_error);
-- what reached the stand-in: the good row before the bad one (a row's
-- error stops the statement at that row, as any), none of the bad ones
SELECT r->'body_json'->>'title' AS sent FROM standin_requests() r ORDER BY (r->>'seq')::int;
-- Markdown that becomes more storage than Confluence takes (3 MB of short
-- paragraphs, 9 MB as storage): refused by size, before any check
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Huge', repeat(E'a\n\n', 1000000), 'markdown');
-- wiki and atlas_doc_format are Confluence's to check
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Wiki & co', 'a & b <unclosed', 'wiki');
SELECT count(*) AS requests FROM standin_requests();

-- Manual mode: a column option converts that column.
SELECT standin_reset();
CREATE FOREIGN TABLE md_comments (
  page_id text OPTIONS (field 'pageId'),
  text_md text OPTIONS (field 'body.value', representation 'markdown'),
  repr text OPTIONS (field 'body.representation'),
  http_status integer
) SERVER standin OPTIONS (endpoint '/wiki/api/v2/footer-comments');
INSERT INTO md_comments VALUES ('1000001', 'Looks *good* to me', 'storage') RETURNING http_status;
CREATE FOREIGN TABLE checked_echo (
  note text OPTIONS (representation 'storage')
) SERVER standin OPTIONS (endpoint '/wiki/echo/checked');
INSERT INTO checked_echo VALUES ('<p>ok</p>');
INSERT INTO checked_echo VALUES ('<p>not ok');
SELECT r->'body_json' AS body FROM standin_requests() r ORDER BY (r->>'seq')::int;
DROP FOREIGN TABLE md_comments, checked_echo;

-- Option checks.
ALTER FOREIGN TABLE pages ALTER COLUMN body OPTIONS (ADD representation 'html');
ALTER FOREIGN TABLE footer_comments OPTIONS (ADD on_conflict 'update');
ALTER FOREIGN TABLE pages OPTIONS (ADD on_conflict 'merge');
CREATE FOREIGN TABLE batched_pages (space_id text, title text)
  SERVER standin OPTIONS (endpoint 'pages', batch_mode 'true', on_conflict 'update');
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Bad representation', 'x', 'html');

--
-- Upsert by title.
--
SELECT standin_reset();
CREATE OR REPLACE FUNCTION standin_clear_log() RETURNS void LANGUAGE sql AS $$
  SELECT NULL FROM standin_call('POST', 'reset?keep=objects') $$;
CREATE FOREIGN TABLE report_pages (
  space_id text, title text, body text, status text, parent_id text,
  id text, version integer, http_status integer,
  action text OPTIONS (response_field '$action')
) SERVER standin OPTIONS (endpoint 'pages', representation 'markdown',
                          on_conflict 'update');

-- EXPLAIN says what a row may send.
CREATE FUNCTION content_explain(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
    RETURN NEXT standin_masked(line);
  END LOOP;
END $$;
SELECT * FROM content_explain($$INSERT INTO report_pages (space_id, title, body) VALUES ('98306', 'x', 'y')$$);
DROP FUNCTION content_explain(text);
-- The first run creates the page; $action says so.
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\n```sql\nSELECT 42;\n```\n\n- [ ] check')
  RETURNING id AS report_id, version, action, http_status \gset
SELECT :version AS version, :'action' AS action, :http_status AS http_status;
-- The same report again: one GET, no PUT, no new version, the same id.
-- (The stand-in, as Confluence, gave the code macro an ac:macro-id on save.)
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\n```sql\nSELECT 42;\n```\n\n- [ ] check')
  RETURNING id = :'report_id' AS same_id, version, action, http_status;
SELECT r->>'method' AS method, regexp_replace(r->>'path', '\?.*', '') AS path, r->>'query' AS query
  FROM standin_requests() r ORDER BY (r->>'seq')::int;
SELECT position('ac:macro-id' IN body) > 0 AS stored_with_macro_id
  FROM pages WHERE title = 'Nightly report' AND space_id = '98306';
-- A changed report: PUT at version + 1, same id.
SELECT standin_clear_log();
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\nAll green.')
  RETURNING id = :'report_id' AS same_id, version, action, http_status;
SELECT r->>'method' AS method, regexp_replace(r->>'path', '\d+$', '<id>') AS path,
       r->'body_json'->'version' AS version, r->'body_json'->>'title' AS title,
       r->'body_json'->'body' AS body, r->'body_json'->>'status' AS status
  FROM standin_requests() r WHERE r->>'method' = 'PUT';
-- A changed status alone is a change too; a parent the row names as well.
INSERT INTO report_pages (space_id, title, body, status)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\nAll green.', 'current')
  RETURNING version, action;
INSERT INTO report_pages (space_id, title, body, parent_id)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\nAll green.', '1000001')
  RETURNING version, action;
INSERT INTO report_pages (space_id, title, body, parent_id)
  VALUES ('98306', 'Nightly report', E'# Nightly\n\nAll green.', '1000001')
  RETURNING version, action;

-- A NULL body keeps the page's body, as a NULL parent_id keeps its parent:
-- a new parent alone is a PUT of the body as it is, and the same row again
-- is unchanged.
SELECT standin_clear_log();
SELECT body AS body_before FROM pages WHERE title = 'Nightly report' AND space_id = '98306';
INSERT INTO report_pages (space_id, title, parent_id)
  VALUES ('98306', 'Nightly report', '65537')
  RETURNING id = :'report_id' AS same_id, version, action;
INSERT INTO report_pages (space_id, title, parent_id)
  VALUES ('98306', 'Nightly report', '65537')
  RETURNING version, action;
SELECT r->>'method' AS method, r->'body_json'->'body' AS body, r->'body_json'->>'parentId' AS parent
  FROM standin_requests() r WHERE r->>'method' = 'PUT';
SELECT body AS body_after, version FROM pages WHERE title = 'Nightly report' AND space_id = '98306';

-- on_conflict 'skip': the existing page's id, nothing sent but the lookup.
SELECT standin_clear_log();
ALTER FOREIGN TABLE report_pages OPTIONS (SET on_conflict 'skip');
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Nightly report', 'anything'), ('98306', 'Brand new', 'new')
  RETURNING title, version, action, http_status;
SELECT r->>'method' AS method, count(*) FROM standin_requests() r GROUP BY 1 ORDER BY 1;

-- on_conflict 'error' (the default) is Confluence's 400, as before.
ALTER FOREIGN TABLE report_pages OPTIONS (SET on_conflict 'error');
INSERT INTO report_pages (space_id, title, body) VALUES ('98306', 'Brand new', 'again');
ALTER FOREIGN TABLE report_pages OPTIONS (SET on_conflict 'update');

-- A race: the lookup finds nothing (someone creates the page in between),
-- the POST gets the duplicate-title 400, and the row looks again and updates.
SELECT standin_clear_log();
SELECT standin_fault('{"kind": "status", "status": 200, "method": "GET", "match": "/wiki/api/v2/pages",
                       "body": "{\"results\": [], \"_links\": {}}", "times": 1}');
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Brand new', 'raced') RETURNING version, action;
SELECT r->>'method' AS method, r->>'status' AS status
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- A stale version (someone edited between the lookup and the PUT): 409,
-- looked up again, and the PUT at the new version succeeds.
SELECT standin_clear_log();
SELECT standin_fault('{"kind": "status", "status": 409, "method": "PUT", "match": "/wiki/api/v2/pages/", "times": 1}');
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Brand new', 'after a conflict') RETURNING version, action;
SELECT r->>'method' AS method, r->>'status' AS status
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- Pipelined (no RETURNING): 30 pages created, then the same 30 again sends
-- 30 GETs and nothing else; two rows with one title in one statement: the
-- second finds the page the first made.
SELECT standin_clear_log();
INSERT INTO report_pages (space_id, title, body)
  SELECT '98306', 'Team ' || i, 'Report of team ' || i FROM generate_series(1, 30) i;
SELECT r->>'method' AS method, count(*) FROM standin_requests() r GROUP BY 1 ORDER BY 1;
SELECT standin_clear_log();
INSERT INTO report_pages (space_id, title, body)
  SELECT '98306', 'Team ' || i, 'Report of team ' || i FROM generate_series(1, 30) i;
SELECT r->>'method' AS method, count(*) FROM standin_requests() r GROUP BY 1 ORDER BY 1;
SELECT count(*) AS pages, max(version) AS max_version FROM pages
  WHERE space_id = '98306' AND title LIKE 'Team %';
SELECT standin_clear_log();
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Twice', 'first'), ('98306', 'Twice', 'second');
SELECT r->>'method' AS method, r->'body_json'->'body'->>'value' AS body
  FROM standin_requests() r ORDER BY (r->>'seq')::int;
SELECT version, body FROM pages WHERE title = 'Twice' AND space_id = '98306';
-- a failing row of a pipelined upsert names itself, and what was sent
-- (the lookups go out together; the one write is the failing POST)
SELECT standin_clear_log();
SELECT standin_fault('{"kind": "status", "status": 500, "method": "POST", "match": "/wiki/api/v2/pages", "times": 1}');
INSERT INTO report_pages (space_id, title, body)
  VALUES ('98306', 'Team 1', 'Report of team 1'), ('98306', 'Nowhere', 'x'), ('98306', 'Team 3', 'Report of team 3');
SELECT r->>'method' AS method, r->>'status' AS status
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- Blog posts upsert the same way.
SELECT standin_clear_log();
CREATE FOREIGN TABLE report_posts (
  space_id text, title text, body text, version integer,
  action text OPTIONS (response_field '$action')
) SERVER standin OPTIONS (endpoint 'blogposts', representation 'plain', on_conflict 'update');
INSERT INTO report_posts (space_id, title, body) VALUES ('98306', 'Week 48', 'Quiet week.') RETURNING version, action;
INSERT INTO report_posts (space_id, title, body) VALUES ('98306', 'Week 48', 'Quiet week.') RETURNING version, action;
INSERT INTO report_posts (space_id, title, body) VALUES ('98306', 'Week 48', 'Busy week.') RETURNING version, action;

DROP FOREIGN TABLE report_pages, report_posts;
