--
-- UPDATE and DELETE: a PUT with the version read + 1, a stale version as
-- SQLSTATE 40001, joins, RETURNING, the rows counted, and what is refused.
--
SELECT standin_reset();

CREATE OR REPLACE FUNCTION standin_clear_log() RETURNS void LANGUAGE sql AS $$
  SELECT NULL FROM standin_call('POST', 'reset?keep=objects') $$;
CREATE FUNCTION change_requests() RETURNS TABLE (request text, status int, body jsonb) LANGUAGE sql AS $$
  SELECT (r->>'method') || ' ' || regexp_replace(r->>'path', '[0-9]{7,}', 'ID', 'g') ||
           coalesce('?' || nullif(regexp_replace(r->>'query', '[0-9]{7,}', 'ID', 'g'), ''), ''),
         (r->>'status')::int,
         CASE WHEN r->'body_json' IS NOT NULL AND jsonb_typeof(r->'body_json') = 'object'
              THEN (r->'body_json') - 'id' - 'spaceId' - 'parentId' END
    FROM standin_requests() r ORDER BY (r->>'seq')::int $$;
-- EXPLAIN (VERBOSE, COSTS OFF) with the stand-in's origin and ids masked.
CREATE OR REPLACE FUNCTION plan_of(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
    RETURN NEXT regexp_replace(standin_masked(line), '[0-9]{7,}', 'ID', 'g');
  END LOOP;
END $$;
-- The error a statement raises, ids masked.
CREATE FUNCTION change_error(stmt text) RETURNS TABLE (state text, message text, detail text, hint text)
LANGUAGE plpgsql AS $$
DECLARE m text; d text; h text;
BEGIN
  EXECUTE stmt;
  RETURN QUERY SELECT 'no error'::text, NULL::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                          h = PG_EXCEPTION_HINT;
  RETURN QUERY SELECT state, regexp_replace(m, '[0-9]{7,}', 'ID', 'g'), d, h;
END $$;
-- Rows a statement reports changed (its command tag), run in PL/pgSQL.
CREATE FUNCTION row_count(stmt text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE stmt;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

CREATE TEMP TABLE made AS
WITH ins AS (
  INSERT INTO pages (space_id, title, body)
  VALUES ('98306', 'Change one', '<p>One.</p>'), ('98306', 'Change two', '<p>Two.</p>'),
         ('98306', 'Change three', '<p>Three.</p>')
  RETURNING id, title)
SELECT * FROM ins;
SELECT standin_clear_log();

-- The README's example: the body patched, the version read + 1 sent and
-- returned, the other fields as they were.
UPDATE pages SET body = body || '<p>Patched.</p>'
 WHERE id = (SELECT id FROM made WHERE title = 'Change one')
RETURNING title, body, version, http_status;
SELECT * FROM change_requests();
SELECT title, version, body FROM pages WHERE title = 'Change one';

-- EXPLAIN shows the PUT; a plain EXPLAIN sends nothing.
SELECT standin_clear_log();
SELECT regexp_replace(l, '^\s+', '') FROM plan_of(
  $$UPDATE pages SET title = 'x' WHERE id = '1'$$) l WHERE l ~ 'Confluence Request|Update|Scan';
SELECT regexp_replace(l, '^\s+', '') FROM plan_of(
  $$DELETE FROM pages WHERE id = '1'$$) l WHERE l ~ 'Confluence Request|Delete|Scan';
SELECT count(*) AS requests_sent_by_explain FROM standin_requests();

-- UPDATE ... FROM a local table: a nested loop asks for each page by id.
CREATE TEMP TABLE staging (page_id text, new_title text);
INSERT INTO staging SELECT id, title || ' (renamed)' FROM made WHERE title <> 'Change one';
ANALYZE staging;
SELECT regexp_replace(l, '^\s+', '') FROM plan_of(
  $$UPDATE pages SET title = staging.new_title FROM staging WHERE pages.id = staging.page_id$$) l
 WHERE l ~ 'Confluence Request|Nested Loop|Hash Join|Foreign Scan';
SELECT row_count($$UPDATE pages SET title = staging.new_title FROM staging
                   WHERE pages.id = staging.page_id$$) AS updated;
SELECT request, status FROM change_requests();
SELECT title, version FROM pages WHERE id IN (SELECT id FROM made) ORDER BY title;

-- A stale version: someone else edits the page between the read and the
-- PUT (here a function in the WHERE clause does, through a manual table).
-- Confluence's 409 is SQLSTATE 40001, and running the statement again works.
CREATE FOREIGN TABLE page_put (id text, title text, status text,
                               body jsonb, version jsonb, new_version integer OPTIONS (response_field 'version.number'))
  SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT');
CREATE FUNCTION edit_behind(pid text, seen integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO page_put VALUES (pid, 'Change one', 'current',
    '{"representation": "storage", "value": "<p>Edited elsewhere.</p>"}',
    jsonb_build_object('number', seen + 1));
  RETURN true;
END $$;
SELECT * FROM change_error($$UPDATE pages SET body = '<p>Mine.</p>'
  WHERE id = (SELECT id FROM made WHERE title = 'Change one') AND edit_behind(id, version)$$);
UPDATE pages SET body = '<p>Mine.</p>'
 WHERE id = (SELECT id FROM made WHERE title = 'Change one')
RETURNING version, body;

-- The rows counted are the ones changed: a page that is gone is not.
SELECT row_count($$UPDATE pages SET title = title WHERE id = '404404'$$) AS missing_page;

-- What cannot be set is refused before anything is sent.
\set VERBOSITY default
UPDATE pages SET version = 7 WHERE id = '1';
UPDATE pages SET id = '2' WHERE id = '1';
UPDATE pages SET space_id = '98400' WHERE id = '1';
UPDATE pages SET subtype = 'live' WHERE id = '1';
\set VERBOSITY terse

-- Blog posts are updated the same way.
SELECT standin_clear_log();
INSERT INTO blogposts (space_id, title, body) VALUES ('98306', 'Change blog', '<p>b1</p>');
UPDATE blogposts SET body = '<p>b2</p>', title = 'Change blog v2' WHERE title = 'Change blog'
RETURNING title, version;
SELECT request, status, body FROM change_requests();

-- DELETE: pages and blog posts go to the trash (a list no longer shows
-- them, status 'trashed' does); comments are removed.  RETURNING shows the
-- row deleted.
SELECT standin_clear_log();
INSERT INTO footer_comments (page_id, body) SELECT id, '<p>c</p>' FROM made WHERE title = 'Change one';
DELETE FROM pages WHERE id = (SELECT id FROM made WHERE title = 'Change one')
RETURNING title, status, http_status;
SELECT count(*) AS listed FROM pages WHERE id = (SELECT id FROM made WHERE title = 'Change one');
SELECT status FROM pages WHERE id = (SELECT id FROM made WHERE title = 'Change one') AND status = 'trashed';
SELECT row_count($$DELETE FROM footer_comments
                   WHERE page_id = (SELECT id FROM made WHERE title = 'Change one')$$) AS comments_deleted;
SELECT row_count($$DELETE FROM pages WHERE title LIKE 'Change t%'$$) AS pages_deleted;
SELECT row_count($$DELETE FROM blogposts WHERE title = 'Change blog v2'$$) AS blogposts_deleted;
SELECT row_count($$DELETE FROM pages WHERE id = '404404'$$) AS missing_deleted;
SELECT request, status FROM change_requests();

-- Nothing here showed a secret.
SELECT shows_no_secret(string_agg(r::text, ' ')) AS no_secret FROM standin_requests() r;
