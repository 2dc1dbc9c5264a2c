--
-- Who reads which queue rows: each role exactly its own, whatever its name
-- looks like (the policy compares role OIDs).  Roles alice and "Alice", a
-- role whose name is alice's OID, and "ops.bot" (which is no valid role
-- reference) each queue pages; each sees only its own rows, and SELECT and
-- flush() work for every one of them.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN

TRUNCATE confluence_fdw.queue;
SELECT standin_reset();
CREATE SERVER qr_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE SCHEMA qr;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER qr_srv INTO qr;
ALTER FOREIGN TABLE qr.pages OPTIONS (ADD delivery 'queue');
GRANT USAGE ON SCHEMA qr TO PUBLIC;
GRANT INSERT ON qr.pages TO PUBLIC;
GRANT USAGE ON FOREIGN SERVER qr_srv TO PUBLIC;

CREATE ROLE alice;
CREATE ROLE "Alice";
CREATE ROLE "ops.bot";
CREATE ROLE qr_nobody;
-- a role named after alice's OID (found now: OIDs differ between runs)
SELECT oid AS numbered FROM pg_roles WHERE rolname = 'alice' \gset
CREATE ROLE :"numbered";
SELECT r.rolname = a.oid::text AS named_after_alices_oid
  FROM pg_roles r, pg_roles a WHERE r.rolname = :'numbered' AND a.rolname = 'alice';
CREATE USER MAPPING FOR CURRENT_USER SERVER qr_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR alice SERVER qr_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR "Alice" SERVER qr_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR "ops.bot" SERVER qr_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR :"numbered" SERVER qr_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');

-- each role queues its pages (the superuser one too)
INSERT INTO qr.pages (space_id, title, body) VALUES ('98306', 'QR superuser', '<p>s</p>');
SET ROLE alice;
INSERT INTO qr.pages (space_id, title, body)
  VALUES ('98306', 'QR alice 1', '<p>a</p>'), ('98306', 'QR alice 2', '<p>a</p>');
SET ROLE "Alice";
INSERT INTO qr.pages (space_id, title, body) VALUES ('98306', 'QR Alice', '<p>A</p>');
SET ROLE :"numbered";
INSERT INTO qr.pages (space_id, title, body) VALUES ('98306', 'QR numbered', '<p>n</p>');
SET ROLE "ops.bot";
INSERT INTO qr.pages (space_id, title, body) VALUES ('98306', 'QR ops.bot', '<p>o</p>');
RESET ROLE;

-- each sees its own rows only, before and after they are sent, and flush()
-- waits for them
SET ROLE alice;
SELECT body::jsonb->>'title' AS title FROM confluence_fdw.queue ORDER BY id;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue ORDER BY id;
SET ROLE "Alice";
SELECT body::jsonb->>'title' AS title FROM confluence_fdw.queue ORDER BY id;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue ORDER BY id;
SET ROLE :"numbered";
SELECT body::jsonb->>'title' AS title FROM confluence_fdw.queue ORDER BY id;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue ORDER BY id;
SET ROLE "ops.bot";
SELECT body::jsonb->>'title' AS title FROM confluence_fdw.queue ORDER BY id;
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue ORDER BY id;
-- a role that queued nothing sees nothing
SET ROLE qr_nobody;
SELECT count(*) AS rows_of_nobody FROM confluence_fdw.queue;
SELECT confluence_fdw.flush(10000) AS still_waiting;
RESET ROLE;

-- the superuser sees every row; every page was created once
SELECT confluence_fdw.flush(10000) AS still_waiting;
SELECT body::jsonb->>'title' AS title, state FROM confluence_fdw.queue ORDER BY id;
SELECT r->'body_json'->>'title' AS title, r->>'status' AS status, count(*) AS posts
  FROM standin_requests() r WHERE r->>'method' = 'POST'
 GROUP BY 1, 2 ORDER BY 1;

DROP SCHEMA qr CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER qr_srv;
DROP USER MAPPING FOR alice SERVER qr_srv;
DROP USER MAPPING FOR "Alice" SERVER qr_srv;
DROP USER MAPPING FOR "ops.bot" SERVER qr_srv;
DROP USER MAPPING FOR :"numbered" SERVER qr_srv;
REVOKE USAGE ON FOREIGN SERVER qr_srv FROM PUBLIC;
DROP SERVER qr_srv;
TRUNCATE confluence_fdw.queue;
DROP ROLE alice, "Alice", "ops.bot", :"numbered", qr_nobody;
