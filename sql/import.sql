--
-- IMPORT FOREIGN SCHEMA v2: one ready foreign table per endpoint template,
-- with every column's request field or response path spelled out.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
SELECT standin_reset();

-- All four templates.
CREATE SCHEMA imp;
IMPORT FOREIGN SCHEMA v2 FROM SERVER standin INTO imp;
SELECT c.relname, s.srvname, t.ftoptions
  FROM pg_foreign_table t
  JOIN pg_class c ON c.oid = t.ftrelid
  JOIN pg_foreign_server s ON s.oid = t.ftserver
 WHERE c.relnamespace = 'imp'::regnamespace
 ORDER BY c.relname;
\d+ imp.pages
\d+ imp.footer_comments
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,
       a.attfdwoptions
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'imp'::regnamespace
   AND c.relname IN ('blogposts', 'inline_comments')
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY c.relname, a.attnum;

-- LIMIT TO and EXCEPT.
CREATE SCHEMA imp_limit;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments)
  FROM SERVER standin INTO imp_limit;
CREATE SCHEMA imp_except;
IMPORT FOREIGN SCHEMA v2 EXCEPT (blogposts)
  FROM SERVER standin INTO imp_except;
-- a name that is not a template is simply not imported
CREATE SCHEMA imp_none;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (comments) FROM SERVER standin INTO imp_none;
SELECT n.nspname, string_agg(c.relname, ', ' ORDER BY c.relname) AS tables
  FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid
 WHERE n.nspname IN ('imp_limit', 'imp_except', 'imp_none')
 GROUP BY n.nspname ORDER BY n.nspname;

-- A schema that confluence_fdw does not offer.
IMPORT FOREIGN SCHEMA v1 FROM SERVER standin INTO imp_none;
IMPORT FOREIGN SCHEMA "V2" FROM SERVER standin INTO imp_none;
-- importing twice into one schema: the tables exist already
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER standin INTO imp;

-- Names that need quoting, for the server and the schema.
CREATE SERVER "Stand-in Server" FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER "Stand-in Server"
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA "My Import";
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER "Stand-in Server" INTO "My Import";
SELECT c.relname, s.srvname, t.ftoptions
  FROM pg_foreign_table t
  JOIN pg_class c ON c.oid = t.ftrelid
  JOIN pg_foreign_server s ON s.oid = t.ftserver
 WHERE c.relnamespace = '"My Import"'::regnamespace;

-- The imported tables work: each sends to its endpoint.
SELECT standin_reset();
INSERT INTO imp.pages (space_id, title, body)
  VALUES ('98306', 'Imported page', '<p>From imp.pages</p>')
  RETURNING id AS imported_page_id, http_status \gset
INSERT INTO imp.blogposts (space_id, title, body)
  VALUES ('98306', 'Imported blog post', '<p>From imp.blogposts</p>')
  RETURNING version, http_status, webui LIKE '/spaces/SP98306/blog/%' AS webui_ok;
INSERT INTO imp_limit.footer_comments (page_id, body)
  VALUES (:'imported_page_id', '<p>From imp_limit.footer_comments</p>')
  RETURNING version, http_status, response->>'title' AS response_title;
INSERT INTO imp_except.inline_comments (page_id, body, text_selection,
    text_selection_match_count, text_selection_match_index)
  VALUES (:'imported_page_id', '<p>From imp_except.inline_comments</p>', 'From', 1, 0)
  RETURNING version, http_status, response->>'resolutionStatus' AS resolution;
INSERT INTO "My Import".pages (space_id, title)
  VALUES ('98306', 'Imported through a quoted server')
  RETURNING version, http_status;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'status' AS status,
       (r->'body_json') - 'pageId' AS body,
       r->'body_json'->>'pageId' = :'imported_page_id' AS page_id_ok
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA imp, imp_limit, imp_except, imp_none, "My Import" CASCADE;
RESET client_min_messages;
DROP USER MAPPING FOR CURRENT_USER SERVER "Stand-in Server";
DROP SERVER "Stand-in Server";
