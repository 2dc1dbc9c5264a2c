--
-- OPTIONS: the validator of confluence_fdw, and the option problems that
-- can only be seen when a row is sent (they span objects).
--
\getenv standin_url STANDIN_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
SELECT standin_reset();

-- Runs a statement that should fail and shows its SQLSTATE and message,
-- for checks where the SQLSTATE is part of the contract.
CREATE FUNCTION opt_error(stmt text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  code := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

-- Runs a statement that should fail and says whether a secret appears in
-- its error's message, detail or hint.  (Not the context: that is the
-- statement itself, as the user wrote it.)
CREATE FUNCTION opt_leak(stmt text, secret text, OUT code text, OUT secret_in_error boolean)
LANGUAGE plpgsql AS $$
DECLARE
  m text; d text; h text;
BEGIN
  EXECUTE stmt;
  code := 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, m = MESSAGE_TEXT,
    d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
  secret_in_error := position(secret in concat_ws(' ', m, d, h)) > 0;
END $$;

-- Objects the checks below alter; a failed ALTER leaves them unchanged.
CREATE SERVER opt_srv FOREIGN DATA WRAPPER confluence_fdw;
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_srv
  OPTIONS (username 'someone@example.com', api_token 'opt-fake-token');
CREATE FOREIGN TABLE opt_t (a text, b text)
  SERVER standin OPTIONS (endpoint '/wiki/echo/opt');

--
-- Unknown options: the message lists the valid ones of that object kind.
--
ALTER FOREIGN DATA WRAPPER confluence_fdw OPTIONS (ADD domain 'acme.atlassian.net');
ALTER SERVER opt_srv OPTIONS (ADD hostname 'acme.atlassian.net');
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (ADD password 'x');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD url '/wiki/api/v2/pages');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD column_name 'x');
SELECT * FROM opt_error($$ALTER SERVER opt_srv OPTIONS (ADD hostname 'x')$$);

--
-- An option of ours in the wrong place says where it belongs.
--
ALTER SERVER opt_srv OPTIONS (ADD endpoint 'pages');
ALTER SERVER opt_srv OPTIONS (ADD field 'title');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD domain 'acme.atlassian.net');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD response_field 'id');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD endpoint 'pages');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD timeout_ms '1000');
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (ADD base_url 'https://example.com');

--
-- Credentials are refused anywhere but on a user mapping, and the messages
-- never repeat the value (here the distinctive fake 'opt-s3cr3t-VALUE').
--
ALTER SERVER opt_srv OPTIONS (ADD api_token 'opt-s3cr3t-VALUE');
ALTER SERVER opt_srv OPTIONS (ADD bearer_token 'opt-s3cr3t-VALUE');
ALTER SERVER opt_srv OPTIONS (ADD username 'opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD api_token 'opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD bearer_token 'opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD api_token 'opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD bearer_token 'opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD username 'opt-s3cr3t-VALUE');
ALTER FOREIGN DATA WRAPPER confluence_fdw OPTIONS (ADD api_token 'opt-s3cr3t-VALUE');
-- bad secret values on a user mapping: still not repeated
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (SET api_token '');
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (SET api_token E'opt-s3cr3t-VALUE\r\nX-Evil: 1');
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (SET username 'opt:s3cr3t');
-- the whole error (message, detail, hint) is free of the value,
-- also where a URL pasted into domain or base_url carries a password
SELECT * FROM opt_leak($$ALTER SERVER opt_srv OPTIONS (ADD api_token 'opt-s3cr3t-VALUE')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER FOREIGN TABLE opt_t OPTIONS (ADD bearer_token 'opt-s3cr3t-VALUE')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER USER MAPPING FOR CURRENT_USER SERVER opt_srv OPTIONS (SET api_token E'opt-s3cr3t-VALUE\n')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER SERVER opt_srv OPTIONS (ADD domain 'https://me:opt-s3cr3t-VALUE@acme.atlassian.net')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER SERVER opt_srv OPTIONS (ADD domain 'me:opt-s3cr3t-VALUE@acme.atlassian.net')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER SERVER opt_srv OPTIONS (ADD base_url 'https://me:opt-s3cr3t-VALUE@acme.atlassian.net')$$, 'opt-s3cr3t-VALUE');
SELECT * FROM opt_leak($$ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Authorization: Basic opt-s3cr3t-VALUE')$$, 'opt-s3cr3t-VALUE');

--
-- Server: domain is a host name only.
--
ALTER SERVER opt_srv OPTIONS (ADD domain 'https://acme.atlassian.net');
ALTER SERVER opt_srv OPTIONS (ADD domain 'acme.atlassian.net:443');
ALTER SERVER opt_srv OPTIONS (ADD domain 'acme.atlassian.net/wiki');
ALTER SERVER opt_srv OPTIONS (ADD domain 'me@acme.atlassian.net');
ALTER SERVER opt_srv OPTIONS (ADD domain 'acme atlassian.net');
ALTER SERVER opt_srv OPTIONS (ADD domain '');
ALTER SERVER opt_srv OPTIONS (ADD domain 'acme..atlassian.net');
ALTER SERVER opt_srv OPTIONS (ADD domain '-acme.atlassian.net');
SELECT * FROM opt_error($$ALTER SERVER opt_srv OPTIONS (ADD domain 'acme atlassian.net')$$);
-- a valid one
ALTER SERVER opt_srv OPTIONS (ADD domain 'Acme-1.atlassian.net');
ALTER SERVER opt_srv OPTIONS (DROP domain);

--
-- Server: base_url is an http(s) origin with an optional path prefix.
--
ALTER SERVER opt_srv OPTIONS (ADD base_url 'https://me@api.atlassian.com');
ALTER SERVER opt_srv OPTIONS (ADD base_url 'https://api.atlassian.com/ex/confluence?cloud=1');
ALTER SERVER opt_srv OPTIONS (ADD base_url 'https://api.atlassian.com/ex/confluence#x');
ALTER SERVER opt_srv OPTIONS (ADD base_url 'ftp://api.atlassian.com');
ALTER SERVER opt_srv OPTIONS (ADD base_url 'file:///etc/passwd');
ALTER SERVER opt_srv OPTIONS (ADD base_url 'not a url');
ALTER SERVER opt_srv OPTIONS (ADD base_url '');
-- valid ones; domain and base_url exclude each other
ALTER SERVER opt_srv OPTIONS (ADD base_url 'https://api.atlassian.com/ex/confluence/11111111-2222-3333-4444-555555555555');
ALTER SERVER opt_srv OPTIONS (ADD domain 'acme.atlassian.net');
ALTER SERVER opt_srv OPTIONS (SET base_url 'http://127.0.0.1:1/');
ALTER SERVER opt_srv OPTIONS (DROP base_url);
CREATE SERVER opt_both FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', base_url 'https://acme.atlassian.net');

--
-- Only a superuser may choose a base_url that is not https.
--
CREATE ROLE cfdw_opt_user;
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO cfdw_opt_user;
SET ROLE cfdw_opt_user;
CREATE SERVER opt_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'http://127.0.0.1:8089');
CREATE SERVER opt_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'HTTP://127.0.0.1:8089');
SELECT * FROM opt_error($$CREATE SERVER opt_user_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url 'http://127.0.0.1:8089')$$);
CREATE SERVER opt_user_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url 'https://api.atlassian.com/ex/confluence/abc');
ALTER SERVER opt_user_srv OPTIONS (SET base_url 'http://api.atlassian.com/ex/confluence/abc');
ALTER SERVER opt_user_srv OPTIONS (DROP base_url, ADD domain 'acme.atlassian.net');
-- the CA bundle decides who gets the token: superuser only, too
ALTER SERVER opt_user_srv OPTIONS (ADD ca_file '/etc/ssl/certs/ca-certificates.crt');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname = 'opt_user_srv';
DROP SERVER opt_user_srv;
RESET ROLE;
-- a superuser may
ALTER SERVER opt_srv OPTIONS (ADD base_url 'http://127.0.0.1:8089');
ALTER SERVER opt_srv OPTIONS (DROP base_url);

--
-- Server: timeouts, retries, sizes, booleans.
--
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms '-1');
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms '0');
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms 'abc');
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms '1.5');
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms ' 100');
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms '2147483648');
ALTER SERVER opt_srv OPTIONS (ADD connect_timeout_ms '0');
ALTER SERVER opt_srv OPTIONS (ADD connect_timeout_ms '');
ALTER SERVER opt_srv OPTIONS (ADD max_retries '-1');
ALTER SERVER opt_srv OPTIONS (ADD max_retry_wait_ms 'soon');
ALTER SERVER opt_srv OPTIONS (ADD max_response_bytes '0');
ALTER SERVER opt_srv OPTIONS (ADD max_response_bytes '1073741824');
ALTER SERVER opt_srv OPTIONS (ADD max_response_bytes '16MB');
ALTER SERVER opt_srv OPTIONS (ADD keep_connections 'maybe');
ALTER SERVER opt_srv OPTIONS (ADD max_concurrency '0');
ALTER SERVER opt_srv OPTIONS (ADD max_concurrency '65');
ALTER SERVER opt_srv OPTIONS (ADD ca_file 'certs/ca.pem');
-- the boundaries that are accepted
ALTER SERVER opt_srv OPTIONS (ADD timeout_ms '1', ADD connect_timeout_ms '2147483647',
  ADD max_retries '0', ADD max_retry_wait_ms '0',
  ADD max_response_bytes '1073741823', ADD keep_connections 'off',
  ADD max_concurrency '64', ADD ca_file '/etc/ssl/certs/ca-certificates.crt');
ALTER SERVER opt_srv OPTIONS (SET max_response_bytes '1');
SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'opt_srv';
ALTER SERVER opt_srv OPTIONS (DROP timeout_ms, DROP connect_timeout_ms,
  DROP max_retries, DROP max_retry_wait_ms, DROP max_response_bytes,
  DROP keep_connections, DROP max_concurrency, DROP ca_file);

--
-- User mapping: Basic (username + api_token) or bearer_token alone.
--
CREATE SERVER opt_um FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um
  OPTIONS (username 'someone@example.com', bearer_token 'opt-s3cr3t-VALUE');
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um
  OPTIONS (api_token 'opt-s3cr3t-VALUE', bearer_token 'opt-s3cr3t-VALUE2');
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um
  OPTIONS (username 'someone@example.com');
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um
  OPTIONS (api_token 'opt-s3cr3t-VALUE');
SELECT * FROM opt_error($$CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um OPTIONS (username 'someone@example.com')$$);
-- valid: bearer alone, and no options at all (refused when a row is sent)
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_um OPTIONS (bearer_token 'opt-s3cr3t-VALUE');
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_um OPTIONS (DROP bearer_token);

--
-- Foreign table: endpoint is a template name or a path on the server.
--
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint 'page');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint 'https://evil.example.com/x');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '//evil.example.com/wiki/api/v2/pages');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/../../admin');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/./pages');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2//pages');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/%2e%2e/admin');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/%2E./admin');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages%2f..');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages#x');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/my pages');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint E'/wiki/api/v2/pages\t');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki\api');
SELECT * FROM opt_error($$ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/../x')$$);
-- placeholders: {column_name}
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/{}');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/{a');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/a}');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/{a-b}');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/{{a}}');
-- valid: templates, and paths with placeholders and a query
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint 'footer_comments');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/api/v2/pages/{a}?status=draft');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/echo/opt');

-- method and representation
ALTER FOREIGN TABLE opt_t OPTIONS (ADD method 'HEAD');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD method 'POST;');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD representation 'html');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD representation 'Storage');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD method 'put', ADD representation 'wiki');
ALTER FOREIGN TABLE opt_t OPTIONS (DROP method, DROP representation);

-- format, on_error
ALTER FOREIGN TABLE opt_t OPTIONS (ADD format 'yaml');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD format 'JSON');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD on_error 'ignore');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD format 'xml', ADD on_error 'return');
ALTER FOREIGN TABLE opt_t OPTIONS (SET format 'form', SET on_error 'error');
ALTER FOREIGN TABLE opt_t OPTIONS (DROP format, DROP on_error);

-- headers: Name:value pairs; never credentials, framing or line breaks,
-- and a refused value is not repeated
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'X-Team');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'X-A:1,,X-B:2');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers ':value');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Bad Name:value');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers E'X-A:1\r\nX-B:2');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers U&'X-A:caf\00E9');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Authorization:Basic opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'X-Trace:1, proxy-authorization: Bearer opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Host:evil.example.com');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Content-Length:0');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Transfer-Encoding:chunked');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'Cookie:session=opt-s3cr3t-VALUE');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD headers 'X-Atlassian-Token:no-check, X-Trace: a b');
ALTER FOREIGN TABLE opt_t OPTIONS (DROP headers);

-- batch_mode and batch_size, and what a batch cannot do
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_mode 'maybe');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_size '0');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_size '10001');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_size 'all');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_mode 'true', ADD format 'form');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_mode 'true', SET endpoint '/wiki/echo/{a}');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD batch_mode 'true', ADD batch_size '10000', ADD format 'xml');
ALTER FOREIGN TABLE opt_t OPTIONS (DROP batch_mode, DROP batch_size, DROP format);

-- max_concurrency on a table
ALTER FOREIGN TABLE opt_t OPTIONS (ADD max_concurrency '0');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD max_concurrency 'many');
ALTER FOREIGN TABLE opt_t OPTIONS (ADD max_concurrency '8');
ALTER FOREIGN TABLE opt_t OPTIONS (DROP max_concurrency);

--
-- Columns: field and response_field are dotted paths.
--
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD field 'a..b');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD field '.x');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD field 'x.');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD field '');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD response_field 'a..b');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD response_field '.x');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD response_field '');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD send 'sometimes');
-- valid ones
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD field 'body.value');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (SET field '.');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (DROP field);
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (ADD response_field '$status');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (SET response_field '.');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (SET response_field 'version.number');
ALTER FOREIGN TABLE opt_t ALTER COLUMN a OPTIONS (DROP response_field);

--
-- Problems seen only when a row is sent.  Nothing reaches the stand-in.
--
-- both field and response_field on one column
ALTER FOREIGN TABLE opt_t ALTER COLUMN b OPTIONS (ADD field 'b', ADD response_field 'id');
INSERT INTO opt_t VALUES ('x', 'y');
ALTER FOREIGN TABLE opt_t ALTER COLUMN b OPTIONS (DROP field, DROP response_field);
-- field '.' on a column that is not json
ALTER FOREIGN TABLE opt_t ALTER COLUMN b OPTIONS (ADD field '.');
INSERT INTO opt_t VALUES ('x', 'y');
ALTER FOREIGN TABLE opt_t ALTER COLUMN b OPTIONS (DROP field);
-- a placeholder that names no request column
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/echo/{nope}');
INSERT INTO opt_t VALUES ('x', 'y');
ALTER FOREIGN TABLE opt_t OPTIONS (SET endpoint '/wiki/echo/opt');
-- a table without endpoint
CREATE FOREIGN TABLE opt_noendpoint (title text) SERVER standin;
INSERT INTO opt_noendpoint VALUES ('x');
-- a server with neither domain nor base_url
CREATE FOREIGN TABLE opt_nobase (title text)
  SERVER opt_srv OPTIONS (endpoint '/wiki/echo/opt');
INSERT INTO opt_nobase VALUES ('x');
-- a user mapping without credentials
CREATE FOREIGN TABLE opt_nocreds (title text)
  SERVER opt_um OPTIONS (endpoint '/wiki/echo/opt');
INSERT INTO opt_nocreds VALUES ('x');
SELECT * FROM opt_error($$INSERT INTO opt_nocreds VALUES ('x')$$);
-- no user mapping at all for the role that inserts
CREATE ROLE cfdw_opt_nomap;
GRANT INSERT ON opt_t TO cfdw_opt_nomap;
SET ROLE cfdw_opt_nomap;
INSERT INTO opt_t VALUES ('x', 'y');
RESET ROLE;
SELECT count(*) AS requests FROM standin_requests();

-- The same table works once the options are right.
INSERT INTO opt_t VALUES ('x', 'y') RETURNING *;
ALTER USER MAPPING FOR CURRENT_USER SERVER opt_um
  OPTIONS (ADD username :'cfdw_user', ADD api_token :'cfdw_token');
INSERT INTO opt_nocreds VALUES ('from opt_nocreds');
SELECT r->>'path' AS path, r->'body_json' AS body,
       r->>'auth' = 'basic:' || :'cfdw_user' || ':1' AS auth_ok
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- Every spelling the validator accepts for a boolean works when a row is
-- sent: keep_connections on the server, send on a column.
SELECT standin_reset();
CREATE SERVER opt_bool FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url', keep_connections 'yes');
CREATE USER MAPPING FOR CURRENT_USER SERVER opt_bool
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE opt_bool_t (a text, b text)
  SERVER opt_bool OPTIONS (endpoint '/wiki/echo/bool');
INSERT INTO opt_bool_t VALUES ('keep yes', 'sent');
ALTER SERVER opt_bool OPTIONS (SET keep_connections '0');
INSERT INTO opt_bool_t VALUES ('keep 0', 'sent');
ALTER FOREIGN TABLE opt_bool_t ALTER COLUMN b OPTIONS (ADD send 'no');
INSERT INTO opt_bool_t VALUES ('send no', 'not sent');
ALTER FOREIGN TABLE opt_bool_t ALTER COLUMN b OPTIONS (SET send 'f');
INSERT INTO opt_bool_t VALUES ('send f', 'not sent');
SELECT r->'body_json' AS body FROM standin_requests() r ORDER BY (r->>'seq')::int;
ALTER FOREIGN TABLE opt_bool_t OPTIONS (ADD batch_mode 'yes', ADD batch_size '10');
ALTER FOREIGN TABLE opt_bool_t OPTIONS (SET batch_mode 'off');
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'opt_bool_t'::regclass;

-- Combinations a template cannot send are refused when they are set, at
-- CREATE or ALTER, naming both options; the template's own method is fine.
CREATE FOREIGN TABLE opt_combo (space_id text, title text) SERVER standin
  OPTIONS (endpoint 'pages', method 'DELETE');
CREATE FOREIGN TABLE opt_combo (space_id text, title text) SERVER standin
  OPTIONS (endpoint 'pages', format 'form');
CREATE FOREIGN TABLE opt_combo (space_id text, title text) SERVER standin
  OPTIONS (endpoint 'pages', method 'post', format 'json');
ALTER FOREIGN TABLE opt_combo OPTIONS (SET method 'PUT');
ALTER FOREIGN TABLE opt_combo OPTIONS (SET format 'xml');
ALTER FOREIGN TABLE opt_combo OPTIONS (SET endpoint 'footer_comments');
DROP FOREIGN TABLE opt_combo;

-- "..;" (a dot segment with servlet path parameters, which Tomcat and some
-- proxies in front of Confluence resolve as "..") is refused like "..", in
-- a manual endpoint and in a placeholder's value; nothing is sent.
CREATE FOREIGN TABLE opt_dots (title text) SERVER standin
  OPTIONS (endpoint '/wiki/api/v2/pages/..;/spaces');
CREATE FOREIGN TABLE opt_dots (title text) SERVER standin
  OPTIONS (endpoint '/wiki/echo/..;jsessionid=1/x');
CREATE FOREIGN TABLE opt_dots (id text OPTIONS (send 'false'), title text) SERVER standin
  OPTIONS (endpoint '/wiki/echo/{id}/x');
SELECT standin_reset();
INSERT INTO opt_dots VALUES ('..;', 'x');
INSERT INTO opt_dots VALUES ('.;a=b', 'x');
INSERT INTO opt_dots VALUES ('a..;', 'sent');
SELECT r->>'path' AS path FROM standin_requests() r;
DROP FOREIGN TABLE opt_dots;

-- Clean up.
DROP FOREIGN TABLE opt_t, opt_noendpoint, opt_nobase, opt_nocreds, opt_bool_t;
DROP USER MAPPING FOR CURRENT_USER SERVER opt_srv;
DROP USER MAPPING FOR CURRENT_USER SERVER opt_um;
DROP USER MAPPING FOR CURRENT_USER SERVER opt_bool;
DROP SERVER opt_srv, opt_um, opt_bool;
REVOKE USAGE ON FOREIGN DATA WRAPPER confluence_fdw FROM cfdw_opt_user;
DROP ROLE cfdw_opt_user, cfdw_opt_nomap;
DROP FUNCTION opt_error(text), opt_leak(text, text);
