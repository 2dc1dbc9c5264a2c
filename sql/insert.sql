--
-- INSERT: each row becomes one request with the body the README's "Templates" describes.
--
\getenv cfdw_user CFDW_USER
SELECT standin_reset();

-- A page and a footer comment from the templates.
INSERT INTO pages (space_id, title, body)
  VALUES ('98306', 'Release 1.2', '<p>Shipped.</p>');
INSERT INTO footer_comments (page_id, body) VALUES ('1000001', 'Looks good');

SELECT r->>'method' AS method, r->>'path' AS path,
       r->>'auth' = 'basic:' || :'cfdw_user' || ':1' AS basic_auth_of_the_mapping,
       r->>'content_type' AS content_type, r->'headers'->>'accept' AS accept,
       r->'headers'->>'user-agent' AS user_agent, r->'body_json' AS body
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- The representation comes from the row, else from the table option.
SELECT standin_reset();
INSERT INTO pages (space_id, title, body, representation)
  VALUES ('98306', 'Wiki page', 'h1. Hello', 'wiki');
ALTER FOREIGN TABLE pages OPTIONS (ADD representation 'atlas_doc_format');
INSERT INTO pages (space_id, title, body)
  VALUES ('98306', 'ADF page', '{"type":"doc","version":1,"content":[]}');
ALTER FOREIGN TABLE pages OPTIONS (DROP representation);
-- no body: no representation either
INSERT INTO pages (space_id, title, status) VALUES ('98306', 'Empty draft', 'draft');
SELECT r->'body_json' AS body FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- A hand-made table: default fields are camelCase column names, dotted
-- paths nest, NULLs are left out, json and jsonb are embedded, numbers and
-- booleans stay numbers and booleans.
CREATE FOREIGN TABLE typed (
  space_id text,
  page_title text OPTIONS (field 'title'),
  body_value text OPTIONS (field 'body.value'),
  body_repr text OPTIONS (field 'body.representation'),
  small_n smallint,
  big_n bigint,
  exact numeric,
  ratio double precision,
  flag boolean,
  meta jsonb,
  raw json,
  tags text[],
  when_at timestamptz,
  skipped text OPTIONS (send 'false'),
  nothing text
) SERVER standin OPTIONS (endpoint '/wiki/echo/typed');

SELECT standin_reset();
SET timezone = 'UTC';
INSERT INTO typed VALUES ('98306', 'Typed', '<p>x</p>', 'storage',
  7, 9007199254740993, 12345678901234567890.125, 0.5, true,
  '{"a": [1, 2, {"b": null}]}', '{"k" : "v"}', ARRAY['x', 'y"z'],
  '2026-01-02 03:04:05+00', 'not sent', NULL);
SELECT r->>'body_text' AS body_text FROM standin_requests() r;

-- Text escaping: quotes, backslashes, control characters, any Unicode.
SELECT standin_reset();
INSERT INTO typed (space_id, page_title, body_value)
  VALUES ('98306', E'Quote " backslash \\ tab \t newline \n bell \x07',
          'Ünïcödé ✓ 日本語 😀');
SELECT r->'body_json'->>'title' = E'Quote " backslash \\ tab \t newline \n bell \x07' AS title_roundtrips,
       r->'body_json'->'body'->>'value' AS unicode,
       r->>'body_text' LIKE '%\u0007%' AS bell_escaped
  FROM standin_requests() r;

-- A json object with field '.' is merged into the body; columns win.
CREATE FOREIGN TABLE merged (
  space_id text,
  title text,
  extra jsonb OPTIONS (field '.')
) SERVER standin OPTIONS (endpoint 'pages');
SELECT standin_reset();
INSERT INTO merged VALUES ('98306', 'Merged', '{"status": "current", "title": "loses", "parentId": "42"}');
SELECT r->'body_json' AS body FROM standin_requests() r;
INSERT INTO merged VALUES ('98306', 'Not an object', '[1, 2]');

-- Required fields are checked before sending: nothing reaches the stand-in.
SELECT standin_reset();
INSERT INTO pages (title, body) VALUES ('No space', 'x');
INSERT INTO pages (space_id, body) VALUES ('98306', 'No title');
INSERT INTO footer_comments (body) VALUES ('No container');
INSERT INTO footer_comments (page_id, blog_post_id, body) VALUES ('1', '2', 'Two containers');
INSERT INTO footer_comments (page_id) VALUES ('1000001');
-- a failing row in the middle of a statement ends it at once: the row
-- before it was in flight and is stopped (the WARNING says so; whether it
-- had gone out is up to timing), the rows from the failing one on are not sent
INSERT INTO pages (space_id, title) VALUES ('98306', 'First'), (NULL, 'Second'), ('98306', 'Third');
SELECT pg_sleep(0.2);
SELECT count(*) FILTER (WHERE r->'body_json'->>'title' <> 'First') AS later_rows_sent
  FROM standin_requests() r;

-- Several rows from INSERT ... SELECT.  Without RETURNING they go several
-- at a time (max_concurrency), so they may arrive in any order ...
SELECT standin_reset();
INSERT INTO pages (space_id, title, body)
  SELECT '98306', 'Bulk ' || g, '<p>' || g || '</p>' FROM generate_series(1, 5) g;
SELECT string_agg(r->'body_json'->>'title', ', ' ORDER BY r->'body_json'->>'title') AS titles
  FROM standin_requests() r;
-- ... and in order with max_concurrency 1, or with RETURNING.
SELECT standin_reset();
ALTER FOREIGN TABLE pages OPTIONS (ADD max_concurrency '1');
INSERT INTO pages (space_id, title)
  SELECT '98306', 'Ordered ' || g FROM generate_series(1, 5) g;
ALTER FOREIGN TABLE pages OPTIONS (DROP max_concurrency);
WITH sent AS (
  INSERT INTO pages (space_id, title)
  SELECT '98306', 'Returned ' || g FROM generate_series(1, 5) g RETURNING id)
SELECT count(*) FROM sent;
SELECT string_agg(r->'body_json'->>'title', ', ' ORDER BY (r->>'seq')::int) AS titles
  FROM standin_requests() r;

-- A request is not undone by a rollback.
SELECT standin_reset();
BEGIN;
INSERT INTO pages (space_id, title) VALUES ('98306', 'Stays after rollback');
ROLLBACK;
SELECT count(*) AS pages_created FROM standin_requests() r WHERE (r->>'status')::int = 200;

-- A SELECT reads what was created (sql/read.sql and sql/change.sql test
-- reading, UPDATE and DELETE).
SELECT count(*) AS readable FROM pages WHERE title = 'Stays after rollback';
