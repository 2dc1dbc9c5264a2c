--
-- Triggers: rows reach Confluence from PL/pgSQL triggers (whose plans are
-- cached), triggers on the foreign table itself see the response, and a
-- SECURITY DEFINER function sends with its owner's user mapping.
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_token2 CFDW_TOKEN2

-- A server of this test's own, so that its ALTERs touch no other test.
CREATE SERVER trg_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER trg_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE SCHEMA trg;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER trg_srv INTO trg;

-- Requests since the last reset.  The stand-in's auth label names the
-- token by its position, 'basic:<username>:1' for CFDW_TOKEN and ':2' for
-- CFDW_TOKEN2; the user name is masked here.
CREATE FUNCTION trg_log(username text, OUT seq int, OUT title text, OUT auth text,
                        OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, r->'body_json'->>'title',
         replace(r->>'auth', ':' || username || ':', ':<user>:'),
         (r->>'status')::int
    FROM standin_requests() r ORDER BY 1 $$;

--
-- 1. An AFTER INSERT trigger on a local table creates a page per row.
--
CREATE TABLE releases (version text PRIMARY KEY, notes text);
CREATE FUNCTION releases_to_confluence() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO trg.pages (space_id, title, body)
    VALUES ('98306', 'Release ' || NEW.version, '<p>' || NEW.notes || '</p>');
  RETURN NULL;
END $$;
CREATE TRIGGER releases_page AFTER INSERT ON releases
  FOR EACH ROW EXECUTE FUNCTION releases_to_confluence();

SELECT standin_reset();
INSERT INTO releases VALUES ('1.0', 'First.');
INSERT INTO releases VALUES ('1.1', 'Second.');
-- The trigger's INSERT now runs from a cached plan.  New credentials in the
-- user mapping are used all the same: options are read at execution time.
ALTER USER MAPPING FOR CURRENT_USER SERVER trg_srv
  OPTIONS (SET api_token :'cfdw_token2');
INSERT INTO releases VALUES ('1.2', 'Third.');
ALTER USER MAPPING FOR CURRENT_USER SERVER trg_srv
  OPTIONS (SET api_token :'cfdw_token');
INSERT INTO releases VALUES ('1.3', 'Fourth.');
SELECT * FROM trg_log(:'cfdw_user');
SELECT r->'body_json'->'body'->>'value' AS body FROM standin_requests() r
  ORDER BY (r->>'seq')::int LIMIT 1;

-- Several rows in one statement: one request each, in order.
SELECT standin_reset();
INSERT INTO releases VALUES ('2.0', 'A'), ('2.1', 'B'), ('2.2', 'C');
SELECT seq, title, status FROM trg_log(:'cfdw_user');

-- Sending is not transactional: a page created by a trigger stays when the
-- transaction rolls back.
SELECT standin_reset();
BEGIN;
INSERT INTO releases VALUES ('3.0', 'Rolled back.');
ROLLBACK;
SELECT count(*) AS local_rows FROM releases WHERE version = '3.0';
SELECT s->'pages' AS pages_on_confluence FROM standin_stats() s;

-- A failing request fails the triggering statement: nothing is stored
-- locally.
SELECT standin_reset();
SELECT standin_fault('{"kind": "status", "status": 500}');
INSERT INTO releases VALUES ('4.0', 'Refused.');
SELECT count(*) AS local_rows FROM releases WHERE version = '4.0';
DROP TRIGGER releases_page ON releases;

--
-- 2. A BEFORE trigger writes the new page's id back into the local row.
--
ALTER TABLE releases ADD COLUMN page_id text, ADD COLUMN page jsonb;
CREATE FUNCTION releases_page_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO trg.pages (space_id, title)
    VALUES ('98306', 'Release ' || NEW.version)
    RETURNING id, response INTO NEW.page_id, NEW.page;
  RETURN NEW;
END $$;
CREATE TRIGGER releases_page_id BEFORE INSERT ON releases
  FOR EACH ROW EXECUTE FUNCTION releases_page_id();
SELECT standin_reset();
INSERT INTO releases (version, notes) VALUES ('5.0', 'With id'), ('5.1', 'With id too');
SELECT version, page_id ~ '^[0-9]+$' AS numeric_id, page_id = page->>'id' AS id_from_response,
       page->>'title' AS confluence_title, page->'version'->'number' AS confluence_version
  FROM releases WHERE version LIKE '5.%' ORDER BY version;
SELECT count(DISTINCT page_id) AS distinct_ids FROM releases WHERE version LIKE '5.%';
DROP TRIGGER releases_page_id ON releases;

--
-- 3. Row triggers on the foreign table itself: BEFORE ROW may change what is
-- sent; AFTER ROW sees the response columns.
--
CREATE TABLE page_audit (title text, id text, version int, http_status int,
                         webui_ok boolean);
CREATE FUNCTION pages_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.title := '[auto] ' || NEW.title;
  RETURN NEW;
END $$;
CREATE FUNCTION pages_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO page_audit VALUES (NEW.title, NEW.id, NEW.version, NEW.http_status,
                                 NEW.webui LIKE '/spaces/%/pages/' || NEW.id || '/%');
  RETURN NULL;
END $$;
CREATE TRIGGER pages_before BEFORE INSERT ON trg.pages
  FOR EACH ROW EXECUTE FUNCTION pages_before();
CREATE TRIGGER pages_after AFTER INSERT ON trg.pages
  FOR EACH ROW EXECUTE FUNCTION pages_after();
SELECT standin_reset();
INSERT INTO trg.pages (space_id, title) VALUES ('98306', 'Audited one'), ('98306', 'Audited two');
SELECT title, id ~ '^[0-9]+$' AS numeric_id, version, http_status, webui_ok
  FROM page_audit ORDER BY title;
SELECT seq, title, status FROM trg_log(:'cfdw_user');
-- A BEFORE ROW trigger that returns NULL skips the row: nothing is sent.
CREATE OR REPLACE FUNCTION pages_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.title LIKE 'Skip%' THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
SELECT standin_reset();
INSERT INTO trg.pages (space_id, title) VALUES ('98306', 'Skip me'), ('98306', 'Keep me');
SELECT seq, title, status FROM trg_log(:'cfdw_user');
DROP TRIGGER pages_before ON trg.pages;
DROP TRIGGER pages_after ON trg.pages;

--
-- 4. A SECURITY DEFINER trigger function sends with the user mapping of its
-- owner, whoever fires the trigger.
--
CREATE ROLE regress_cfdw_trigger_owner NOLOGIN;
CREATE USER MAPPING FOR regress_cfdw_trigger_owner SERVER trg_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
GRANT USAGE ON SCHEMA trg TO regress_cfdw_trigger_owner;
GRANT INSERT ON trg.pages TO regress_cfdw_trigger_owner;
CREATE FUNCTION releases_as_owner() RETURNS trigger LANGUAGE plpgsql
  SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO trg.pages (space_id, title) VALUES ('98306', 'Owner ' || NEW.version);
  RETURN NULL;
END $$;
ALTER FUNCTION releases_as_owner() OWNER TO regress_cfdw_trigger_owner;
CREATE TRIGGER releases_as_owner AFTER INSERT ON releases
  FOR EACH ROW EXECUTE FUNCTION releases_as_owner();
SELECT standin_reset();
-- fired by the superuser: the owner's mapping (token 2) is used
INSERT INTO releases (version) VALUES ('6.0');
-- while the superuser's own statements still use token 1
INSERT INTO trg.pages (space_id, title) VALUES ('98306', 'Superuser 6.0');
SELECT * FROM trg_log(:'cfdw_user');
-- without a mapping for the owner, the trigger fails
DROP USER MAPPING FOR regress_cfdw_trigger_owner SERVER trg_srv;
INSERT INTO releases (version) VALUES ('6.1');
DROP TRIGGER releases_as_owner ON releases;

-- Clean up.
SET client_min_messages = warning;
DROP FUNCTION releases_as_owner();
REVOKE ALL ON SCHEMA trg FROM regress_cfdw_trigger_owner;
REVOKE ALL ON trg.pages FROM regress_cfdw_trigger_owner;
DROP ROLE regress_cfdw_trigger_owner;
DROP SCHEMA trg CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER trg_srv;
DROP SERVER trg_srv;
DROP TABLE releases, page_audit;
DROP FUNCTION releases_to_confluence(), releases_page_id(), pages_before(),
  pages_after(), trg_log(text);
RESET client_min_messages;
