--
-- Manual mode: any v2 endpoint, methods, formats, headers, batches, COPY,
-- on_error 'return', and the blogposts and inline_comments templates.
--
SELECT standin_reset();

-- Placeholders are filled from the row and percent-encoded; a query string
-- is kept; placeholder columns are still sent unless send 'false'.
CREATE FOREIGN TABLE echo_items (
  item text,
  kind text OPTIONS (send 'false'),
  note text,
  response jsonb,
  http_status integer
) SERVER standin OPTIONS (endpoint '/wiki/echo/{kind}/items/{item}?expand=true');

INSERT INTO echo_items (item, kind, note)
  VALUES ('a b/c?d#e%f', 'ünï', 'hello')
  RETURNING response->>'path' AS path, response->>'query' AS query,
            response->'received' AS received, http_status;
SELECT r->>'method' AS method, r->>'path' AS path, r->>'query' AS query
  FROM standin_requests() r;

-- A NULL, empty, "." or ".." placeholder value is refused before sending.
INSERT INTO echo_items (item, kind) VALUES (NULL, 'k');
INSERT INTO echo_items (item, kind) VALUES ('x', '');
INSERT INTO echo_items (item, kind) VALUES ('..', 'k');
INSERT INTO echo_items (item, kind) VALUES ('.', 'k');
-- encoded tricks in a value stay inside one segment
SELECT standin_reset();
INSERT INTO echo_items (item, kind) VALUES ('%2e%2e', '..%2f..');
SELECT r->>'path' AS path FROM standin_requests() r;

-- A placeholder naming no request column is an error when the table is used.
CREATE FOREIGN TABLE bad_placeholder (a text)
  SERVER standin OPTIONS (endpoint '/wiki/echo/{nope}');
INSERT INTO bad_placeholder VALUES ('x');

-- Methods: PUT updates a page (version.number = current + 1), a stale
-- version is Confluence's 409, DELETE answers 204 with NULL response fields.
SELECT standin_reset();
INSERT INTO pages (space_id, title, body) VALUES ('98306', 'To update', '<p>v1</p>')
  RETURNING id AS page_id \gset
CREATE FOREIGN TABLE page_updates (
  id text,
  status text,
  title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  version_number integer OPTIONS (field 'version.number'),
  version_message text OPTIONS (field 'version.message'),
  new_version integer OPTIONS (response_field 'version.number'),
  http_status integer OPTIONS (response_field '$status')
) SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'PUT');
INSERT INTO page_updates VALUES
  (:'page_id', 'current', 'To update', '<p>v2</p>', 'storage', 2, 'second')
  RETURNING new_version, http_status;
INSERT INTO page_updates VALUES
  (:'page_id', 'current', 'To update', '<p>v2 again</p>', 'storage', 2, 'stale');

CREATE FOREIGN TABLE page_deletes (
  id text OPTIONS (send 'false'),
  response jsonb,
  http_status integer
) SERVER standin OPTIONS (endpoint '/wiki/api/v2/pages/{id}', method 'DELETE');
INSERT INTO page_deletes (id) VALUES (:'page_id') RETURNING response, http_status;
SELECT r->>'method' AS method, r->>'path' = '/wiki/api/v2/pages/' || :'page_id' AS right_path,
       r->'body_json'->>'id' = :'page_id' AS id_in_body,
       CASE WHEN jsonb_typeof(r->'body_json') = 'object' THEN (r->'body_json') - 'id' END AS body,
       r->>'status' AS status
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- PATCH reaches an endpoint outside Confluence's spec as asked.
CREATE FOREIGN TABLE patch_echo (title text, response jsonb)
  SERVER standin OPTIONS (endpoint '/wiki/echo/patch', method 'PATCH');
INSERT INTO patch_echo (title) VALUES ('patched')
  RETURNING response->>'method' AS method, response->'received' AS received;

-- Formats: XML built by libxml2 under <request>, form data escaped by
-- libcurl with dotted keys; a non-JSON answer still fills a text response.
CREATE FOREIGN TABLE xml_echo (
  title text,
  body text OPTIONS (field 'body.value'),
  count integer,
  ok boolean,
  tags text[],
  meta jsonb,
  response text OPTIONS (response_field '.'),
  http_status integer OPTIONS (response_field '$status')
) SERVER standin OPTIONS (endpoint '/wiki/echo/xml', format 'xml');
SELECT standin_reset();
INSERT INTO xml_echo (title, body, count, ok, tags, meta)
  VALUES ('A & B <c>', '<p>"quoted"</p>', 3, true, ARRAY['x', 'y'], '{"k": {"v": null}}')
  RETURNING http_status;
SELECT r->>'content_type' AS content_type, r->>'body_text' AS xml FROM standin_requests() r;
-- a control character cannot be carried by XML: refused before sending
INSERT INTO xml_echo (title) VALUES (E'bell \x07');

CREATE FOREIGN TABLE form_echo (
  title text,
  body text OPTIONS (field 'body.value'),
  representation text OPTIONS (field 'body.representation'),
  labels text[],
  response text OPTIONS (response_field '.'),
  http_status integer OPTIONS (response_field '$status')
) SERVER standin OPTIONS (endpoint '/wiki/echo/form', format 'form');
SELECT standin_reset();
INSERT INTO form_echo (title, body, representation, labels)
  VALUES ('a&b=c d', 'ü+%', 'storage', ARRAY['l1', 'l2'])
  RETURNING http_status;
SELECT r->>'content_type' AS content_type, r->>'body_text' AS form, r->'body_form' AS parsed
  FROM standin_requests() r;

SELECT standin_fault('{"kind": "non_json", "match": "/wiki/echo/form"}');
INSERT INTO form_echo (title) VALUES ('html answer') RETURNING response, http_status;

-- Headers: sent on every request, may replace Accept and Content-Type.
CREATE FOREIGN TABLE headered (title text, response jsonb)
  SERVER standin OPTIONS (endpoint '/wiki/echo/h',
    headers 'X-Atlassian-Token:nocheck, X-Empty: ,Accept:application/vnd.test+json,Content-Type:application/json; charset=utf-8');
SELECT standin_reset();
INSERT INTO headered (title) VALUES ('h1'), ('h2');
SELECT r->'headers'->>'x-atlassian-token' AS token_header,
       r->'headers'->>'x-empty' AS empty_header,
       r->'headers'->>'accept' AS accept, r->>'content_type' AS content_type
  FROM standin_requests() r ORDER BY (r->>'seq')::int;
-- refused header definitions
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'Authorization:Basic abc');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'Host:evil.example');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'Content-Length:5');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'Cookie:a=b');
ALTER FOREIGN TABLE headered OPTIONS (SET headers E'X-A:b\r\nX-Injected:1');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'Bad Name:v');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'X-A:ünï');
ALTER FOREIGN TABLE headered OPTIONS (SET headers 'NoColon');

-- Batch mode: batch_size rows as one JSON array (XML: <requests>), through
-- PostgreSQL's batch insert API.
CREATE FOREIGN TABLE batched (title text, n integer)
  SERVER standin OPTIONS (endpoint '/wiki/echo/batch', batch_mode 'true', batch_size '3');
SELECT standin_reset();
INSERT INTO batched SELECT 'row ' || g, g FROM generate_series(1, 7) g;
SELECT (r->>'seq')::int AS request, jsonb_array_length(r->'body_json') AS rows_in_request,
       r->'body_json'->0->>'title' AS first_title
  FROM standin_requests() r ORDER BY 1;
SELECT explain_masked($$INSERT INTO batched VALUES ('x', 1)$$);
-- combining batch_mode with RETURNING is an error, not a silent fallback
INSERT INTO batched VALUES ('x', 1) RETURNING *;
-- nor with form bodies or placeholders
ALTER FOREIGN TABLE batched OPTIONS (ADD format 'form');
CREATE FOREIGN TABLE batched_bad (id text) SERVER standin
  OPTIONS (endpoint '/wiki/echo/{id}', batch_mode 'true');
-- an error in a batch names its first and last rows
SELECT standin_fault('{"kind": "status", "status": 500, "match": "/wiki/echo/batch", "times": 1}');
INSERT INTO batched SELECT 'row ' || g, g FROM generate_series(1, 5) g;
-- XML batches: <requests> with one <request> per row
ALTER FOREIGN TABLE batched OPTIONS (ADD format 'xml');
SELECT standin_reset();
INSERT INTO batched VALUES ('x1', 1), ('x2', 2);
SELECT r->>'body_text' AS xml FROM standin_requests() r;
ALTER FOREIGN TABLE batched OPTIONS (DROP format);

-- COPY sends every row, template and manual tables alike (COPY uses the
-- batch API too).
SELECT standin_reset();
COPY pages (space_id, title, body) FROM STDIN WITH (FORMAT csv);
98306,Copied one,<p>1</p>
98306,Copied two,<p>2</p>
\.
COPY batched (title, n) FROM STDIN;
c1	1
c2	2
c3	3
c4	4
\.
-- (rows without RETURNING go several at a time, so in any order)
SELECT r->>'path' AS path, coalesce(r->'body_json'->>'title', jsonb_array_length(r->'body_json')::text) AS what
  FROM standin_requests() r ORDER BY 1, 2;

-- on_error 'return': an HTTP error comes back as a row and the statement
-- goes on; forward every answer into a log table with a CTE.
ALTER FOREIGN TABLE pages OPTIONS (ADD on_error 'return');
CREATE TABLE confluence_log (title text, ok boolean, http_status integer, error text);
SELECT standin_reset();
INSERT INTO pages (space_id, title) VALUES ('98306', 'Dup title');
WITH sent AS (
  INSERT INTO pages (space_id, title)
  VALUES ('98306', 'Fresh 1'), ('98306', 'Dup title'), ('98306', 'Fresh 2')
  RETURNING title, id, http_status, response)
INSERT INTO confluence_log
SELECT title, id IS NOT NULL, http_status, response->'errors'->0->>'title' FROM sent;
SELECT * FROM confluence_log ORDER BY title;
-- only the failures
WITH sent AS (
  INSERT INTO pages (space_id, title) VALUES ('98306', 'Fresh 1'), ('98306', 'Fresh 3')
  RETURNING title, http_status)
SELECT title, http_status FROM sent WHERE http_status >= 400;
-- without RETURNING a failure is a WARNING, never silent
INSERT INTO pages (space_id, title) VALUES ('98306', 'Fresh 3');
-- rows refused before sending are still errors
INSERT INTO pages (title) VALUES ('no space');
ALTER FOREIGN TABLE pages OPTIONS (DROP on_error);

-- The blogposts and inline_comments templates, with their checks.
SELECT standin_reset();
INSERT INTO blogposts (space_id, title, body) VALUES ('98306', 'Blog one', '<p>b</p>')
  RETURNING id ~ '^[0-9]+$' AS has_id, http_status;
INSERT INTO blogposts (space_id, body) VALUES ('98306', 'no title');
INSERT INTO pages (space_id, title) VALUES ('98306', 'Inline target') RETURNING id AS target \gset
INSERT INTO inline_comments (page_id, body, text_selection, text_selection_match_count, text_selection_match_index)
  VALUES (:'target', 'Inline!', 'Inline', 1, 0)
  RETURNING id ~ '^[0-9]+$' AS has_id, http_status;
SELECT r->'body_json'->'inlineCommentProperties' AS props FROM standin_requests() r
  WHERE r->>'path' LIKE '%inline-comments';
INSERT INTO inline_comments (page_id, body) VALUES (:'target', 'no selection');
INSERT INTO inline_comments (page_id, body, text_selection) VALUES (:'target', 'no count', 'x');
