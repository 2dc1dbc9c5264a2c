--
-- RETURNING: what Confluence answered comes back in the response columns;
-- request columns come back as they were inserted.  Ids, timestamps and
-- ports differ between runs, so they are checked, not printed.
--
SELECT standin_reset();

-- A page: the response columns of the template (id, version, webui,
-- created_at, response, http_status) and the request columns as inserted
-- (representation stays NULL: the row had none; the table's default went
-- only into the request body).
INSERT INTO pages (space_id, title, body)
  VALUES ('98306', 'Returning page', '<p>Returned.</p>')
  RETURNING id ~ '^[0-9]+$' AS id_is_number,
            version,
            webui = '/spaces/SP98306/pages/' || id || '/Returning-page' AS webui_ok,
            created_at IS NOT NULL AS has_created_at,
            created_at = (response->>'createdAt')::timestamptz AS created_at_ok,
            http_status,
            response->>'id' = id AS response_has_id,
            response->>'title' AS response_title,
            response->'body'->'storage'->>'value' AS response_body,
            space_id, title, body, representation;

-- A footer comment on that page: 201, and its own links.  (A v2 comment
-- has no top-level createdAt, only version.createdAt, so created_at, which
-- maps createdAt in every template, is NULL.)
INSERT INTO pages (space_id, title) VALUES ('98306', 'Commented page')
  RETURNING id AS page_id \gset
INSERT INTO footer_comments (page_id, body)
  VALUES (:'page_id', '<p>Nice page.</p>')
  RETURNING id ~ '^[0-9]+$' AS id_is_number,
            id <> page_id AS own_id,
            version,
            webui = '/pages/viewpage.action?pageId=' || page_id
                    || '&focusedCommentId=' || id || '#comment-' || id AS webui_ok,
            created_at IS NULL AS created_at_null,
            http_status,
            response->>'title' AS response_title,
            response->>'pageId' = page_id AS response_page_ok,
            page_id = :'page_id' AS page_id_as_inserted, body;

-- Values given for response columns are not sent, and RETURNING shows what
-- Confluence answered instead.
SELECT standin_reset();
INSERT INTO pages (space_id, title, id, version, http_status, response)
  VALUES ('98306', 'Given response values', 'not-an-id', 99, 0, '{"x": 1}')
  RETURNING id ~ '^[0-9]+$' AS id_is_number, version, http_status,
            response->>'title' AS response_title;
SELECT r->'body_json' AS body FROM standin_requests() r;

-- RETURNING * of a template table, through a CTE: every column is there.
WITH sent AS (
  INSERT INTO pages (space_id, title, body, status)
    VALUES ('98306', 'Star page', 'x', 'current')
    RETURNING *)
SELECT to_jsonb(sent) - '{id,created_at,webui,response}'::text[] AS stable_columns,
       id ~ '^[0-9]+$' AS id_is_number, created_at IS NOT NULL AS has_created_at,
       webui LIKE '/spaces/SP98306/pages/%/Star-page' AS webui_ok,
       response->>'id' = id AS response_has_id
  FROM sent;

--
-- Hand-made tables on the stand-in's echo endpoint, which answers
-- {"id", "method", "path", "query", "content_type", "received"}.
--
CREATE FOREIGN TABLE ret_echo (
  title text,
  status_code integer OPTIONS (response_field '$status'),
  method text OPTIONS (response_field 'method'),
  echoed_title text OPTIONS (response_field 'received.title'),
  missing text OPTIONS (response_field 'no.such.path'),
  through_string text OPTIONS (response_field 'method.length'),
  whole_text text OPTIONS (response_field '.'),
  whole_json json OPTIONS (response_field '.'),
  received jsonb OPTIONS (response_field 'received')
) SERVER standin OPTIONS (endpoint '/wiki/echo/returning');

-- $status as an integer, dotted paths, a missing path (or one through a
-- string) is NULL, the whole body as text and as json.
SELECT standin_reset();
INSERT INTO ret_echo (title) VALUES ('Echo me')
  RETURNING title, status_code, method, echoed_title, missing, through_string,
            whole_text::jsonb - 'id' AS whole_text, whole_json->>'path' AS whole_json_path,
            received;
-- RETURNING * of a table whose answer has no run-dependent value in it
CREATE FOREIGN TABLE ret_star (
  title text,
  status_code integer OPTIONS (response_field '$status'),
  method text OPTIONS (response_field 'method'),
  path text OPTIONS (response_field 'path'),
  received jsonb OPTIONS (response_field 'received'),
  missing text OPTIONS (response_field 'nope')
) SERVER standin OPTIONS (endpoint '/wiki/echo/star');
INSERT INTO ret_star (title) VALUES ('Star') RETURNING *;
-- the response columns were not sent
SELECT r->'body_json' AS body FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- JSON values into column types: booleans, numbers (every digit of an
-- integer above 2^53, as the answer wrote it), objects as their JSON text,
-- JSON null as NULL.
CREATE FOREIGN TABLE ret_types (
  flag boolean,
  n bigint,
  ratio numeric,
  obj jsonb,
  flag_back boolean OPTIONS (response_field 'received.flag'),
  n_back bigint OPTIONS (response_field 'received.n'),
  n_text text OPTIONS (response_field 'received.n'),
  ratio_back numeric OPTIONS (response_field 'received.ratio'),
  obj_text text OPTIONS (response_field 'received.obj'),
  list_back jsonb OPTIONS (response_field 'received.obj.list'),
  null_back text OPTIONS (response_field 'received.obj.inner')
) SERVER standin OPTIONS (endpoint '/wiki/echo/types');
INSERT INTO ret_types (flag, n, ratio, obj)
  VALUES (true, 9007199254740993, 0.125, '{"inner": null, "list": [1, "two", false]}')
  RETURNING flag_back, n_back, n_text, ratio_back, obj_text, list_back,
            null_back IS NULL AS null_is_null;

-- A digits-only segment indexes an array when it can (a number too large
-- for an index names no element: no wrap-around to element 0 or 1) and is
-- a key of an object.
CREATE FOREIGN TABLE ret_index (
  obj jsonb,
  first text OPTIONS (response_field 'received.obj.list.0'),
  third text OPTIONS (response_field 'received.obj.list.2'),
  past_end text OPTIONS (response_field 'received.obj.list.3'),
  wraps_to_0 text OPTIONS (response_field 'received.obj.list.4294967296'),
  wraps_to_1 text OPTIONS (response_field 'received.obj.list.4294967297'),
  huge text OPTIONS (response_field 'received.obj.list.99999999999999999999999'),
  digit_key text OPTIONS (response_field 'received.obj.4294967296')
) SERVER standin OPTIONS (endpoint '/wiki/echo/index');
INSERT INTO ret_index (obj)
  VALUES ('{"list": ["a", "b", "c"], "4294967296": "a key of digits"}')
  RETURNING first, third, past_end, wraps_to_0, wraps_to_1, huge, digit_key;

-- $status is the real HTTP status: the echo endpoint answers ?status=N.
ALTER FOREIGN TABLE ret_echo OPTIONS (SET endpoint '/wiki/echo/returning?status=202');
INSERT INTO ret_echo (title) VALUES ('Accepted') RETURNING status_code, echoed_title;
-- 204 has no body: every path and the whole body are NULL
ALTER FOREIGN TABLE ret_echo OPTIONS (SET endpoint '/wiki/echo/returning?status=204');
INSERT INTO ret_echo (title) VALUES ('No content')
  RETURNING title, status_code, method IS NULL AS method_null,
            whole_text IS NULL AS whole_text_null, whole_json IS NULL AS whole_json_null;
ALTER FOREIGN TABLE ret_echo OPTIONS (SET endpoint '/wiki/echo/returning');

-- A value that does not convert: the error names the column and the path.
-- (The request was sent: the conversion happens on the answer.)
ALTER FOREIGN TABLE ret_echo ALTER COLUMN status_code OPTIONS (SET response_field 'method');
INSERT INTO ret_echo (title) VALUES ('Bad conversion') RETURNING status_code;
ALTER FOREIGN TABLE ret_echo ALTER COLUMN status_code OPTIONS (SET response_field '$status');

-- The same on a template table: the title into an integer column.
CREATE FOREIGN TABLE ret_badtype (
  space_id text,
  title text,
  title_number integer OPTIONS (response_field 'title')
) SERVER standin OPTIONS (endpoint 'pages');
INSERT INTO ret_badtype (space_id, title) VALUES ('98306', 'Not a number')
  RETURNING title_number;
-- without RETURNING nothing is converted, so nothing fails
INSERT INTO ret_badtype (space_id, title) VALUES ('98306', 'Not a number either');

-- Response columns of domain types: the domain's constraints hold.
CREATE DOMAIN ret_success AS integer CHECK (VALUE BETWEEN 200 AND 299);
CREATE DOMAIN ret_post AS text CHECK (VALUE = 'POST');
CREATE DOMAIN ret_required AS text NOT NULL;
CREATE FOREIGN TABLE ret_domains (
  title text,
  status_code ret_success OPTIONS (response_field '$status'),
  method ret_post OPTIONS (response_field 'method')
) SERVER standin OPTIONS (endpoint '/wiki/echo/domains');
INSERT INTO ret_domains (title) VALUES ('Domains ok') RETURNING *;
ALTER FOREIGN TABLE ret_domains OPTIONS (ADD method 'PUT');
INSERT INTO ret_domains (title) VALUES ('Domain check fails') RETURNING *;
ALTER FOREIGN TABLE ret_domains OPTIONS (DROP method);
ALTER FOREIGN TABLE ret_domains OPTIONS (SET endpoint '/wiki/echo/domains?status=299');
INSERT INTO ret_domains (title) VALUES ('Status 299') RETURNING status_code;
-- a NOT NULL domain on a missing path (a value is given for the column, or
-- the INSERT itself would fail on the domain before anything is sent)
ALTER FOREIGN TABLE ret_domains ADD COLUMN must ret_required OPTIONS (response_field 'absent');
INSERT INTO ret_domains (title, must) VALUES ('Missing required', 'given') RETURNING must;
INSERT INTO ret_domains (title) VALUES ('Not sent');
SELECT count(*) AS requests FROM standin_requests() r
 WHERE r->'body_json'->>'title' = 'Not sent';

-- The conventional names: without options, a json/jsonb column "response"
-- gets the whole answer and an integer column "http_status" the status;
-- neither is sent.
CREATE FOREIGN TABLE ret_conventional (
  title text,
  response jsonb,
  http_status integer
) SERVER standin OPTIONS (endpoint '/wiki/echo/conventional');
CREATE FOREIGN TABLE ret_conventional2 (
  title text,
  response json,
  http_status bigint
) SERVER standin OPTIONS (endpoint '/wiki/echo/conventional?status=201');
-- a "response" of another type is an ordinary request column
CREATE FOREIGN TABLE ret_not_conventional (
  title text,
  response text,
  http_status text
) SERVER standin OPTIONS (endpoint '/wiki/echo/conventional');
SELECT standin_reset();
INSERT INTO ret_conventional (title) VALUES ('Conventional')
  RETURNING title, response->'received' AS received, response->>'method' AS method,
            http_status;
INSERT INTO ret_conventional2 (title) VALUES ('Conventional json')
  RETURNING title, response->'received' AS received, http_status;
INSERT INTO ret_not_conventional VALUES ('Plain', 'a value', 'another')
  RETURNING *;
SELECT r->'body_json' AS body FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- Several rows from INSERT ... SELECT: one returned row per request, in order.
SELECT standin_reset();
INSERT INTO pages (space_id, title, body)
  SELECT '98306', 'Multi ' || g, '<p>' || g || '</p>' FROM generate_series(1, 3) g
  RETURNING title, body, version, http_status, response->>'title' AS response_title,
            id ~ '^[0-9]+$' AS id_is_number;
SELECT count(*) AS requests FROM standin_requests();

-- A data-modifying CTE: the returned rows feed the rest of the query.
CREATE TEMP TABLE ret_log (title text, page_id text, version integer, status integer);
WITH sent AS (
  INSERT INTO pages (space_id, title)
    SELECT '98306', 'CTE ' || g FROM generate_series(1, 2) g
    RETURNING title, id, version, http_status)
INSERT INTO ret_log SELECT * FROM sent;
SELECT title, page_id ~ '^[0-9]+$' AS id_is_number, version, status FROM ret_log ORDER BY title;
SELECT count(DISTINCT page_id) AS distinct_ids FROM ret_log;
-- in the order sent (the stand-in hands out increasing ids)
SELECT (SELECT page_id::bigint FROM ret_log WHERE title = 'CTE 1')
     < (SELECT page_id::bigint FROM ret_log WHERE title = 'CTE 2') AS in_order;
-- chaining: comments on the pages a CTE just created
WITH p AS (
  INSERT INTO pages (space_id, title) VALUES ('98306', 'Chained page')
    RETURNING id)
INSERT INTO footer_comments (page_id, body)
  SELECT id, 'First comment' FROM p
  RETURNING http_status, response->>'title' AS response_title;

-- Clean up.
DROP FOREIGN TABLE ret_echo, ret_star, ret_types, ret_index, ret_badtype, ret_domains, ret_conventional,
  ret_conventional2, ret_not_conventional;
DROP DOMAIN ret_success, ret_post, ret_required;
