--
-- Security: TLS verification (a self-signed certificate is refused unless
-- a superuser names it in ca_file, and verification cannot be turned off),
-- what a non-superuser can and cannot do (their own credentials, no plain
-- http, no ca_file, no peeking at another role's token), whose mapping a
-- view uses, and no token in EXPLAIN VERBOSE or in any error of this file.
-- (Redirects to another listener: http.sql; SECURITY DEFINER functions:
-- triggers.sql.)
--
\getenv standin_url STANDIN_URL
\getenv standin_url2 STANDIN_URL2
\getenv standin_tls_url STANDIN_TLS_URL
\getenv standin_ca_file STANDIN_CA_FILE
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\getenv cfdw_token2 CFDW_TOKEN2
\getenv cfdw_bearer CFDW_BEARER

-- Every error caught below, for the final check that none shows a token.
CREATE TABLE sec_seen (stmt text, code text, message text, detail text,
                       hint text, context text);
GRANT INSERT ON sec_seen TO PUBLIC;

-- Runs a statement and shows its SQLSTATE and message, and from DETAIL
-- only whether the request may have been processed (the rest is libcurl's
-- wording, with addresses).
CREATE FUNCTION sec_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  code text; msg text; det text; hnt text; ctx text;
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
    det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT, ctx = PG_EXCEPTION_CONTEXT;
  INSERT INTO sec_seen VALUES (stmt, code, msg, det, hnt, ctx);
  RETURN code || ': ' || msg ||
    coalesce(' / ' || substring(det from 'The request (?:may have been processed|did not reach)[^.]*\.'), '');
END $$;
GRANT EXECUTE ON FUNCTION sec_try(text) TO PUBLIC;
-- The same with DEBUG1 messages shown, among them the transport's when a
-- wait has no timer to end it ("no timer from libcurl").
CREATE FUNCTION sec_try_debug(stmt text) RETURNS text LANGUAGE sql
  SET client_min_messages = debug1 AS $$ SELECT sec_try(stmt) $$;
GRANT EXECUTE ON FUNCTION sec_try_debug(text) TO PUBLIC;

-- The stand-in's TLS listener: the requests it received, and whether it
-- saw handshakes fail.
CREATE FUNCTION sec_tls_stats(OUT tls_requests int, OUT failed_handshakes boolean)
LANGUAGE sql AS $$
  SELECT (s->>'tls_requests')::int, (s->>'tls_handshake_failures')::int > 0
    FROM standin_stats() s $$;

CREATE SCHEMA sec;
GRANT USAGE ON SCHEMA sec TO PUBLIC;

--
-- 1. TLS.  The stand-in's TLS listener has a self-signed certificate for
-- 127.0.0.1.  Peer and host verification are always on.
--
CREATE SERVER sec_tls FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_tls_url', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_tls
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE sec.tls_pages (space_id text, title text, id text, http_status integer)
  SERVER sec_tls OPTIONS (endpoint 'pages');
SELECT standin_reset();

-- Without ca_file (the system's CA bundle) the certificate is refused
-- during the handshake: HV00N, and no request was made.
SELECT sec_try($$INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'TLS default CAs')$$);
SELECT detail ~* 'certificate' AS detail_names_the_certificate FROM sec_seen
  ORDER BY ctid DESC LIMIT 1;

-- The same when ca_file names a bundle that does not hold it, or a file
-- that does not exist.
ALTER SERVER sec_tls OPTIONS (ADD ca_file '/etc/ssl/certs/ca-certificates.crt');
SELECT sec_try($$INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'TLS system bundle')$$);
ALTER SERVER sec_tls OPTIONS (SET ca_file '/nonexistent/cfdw-ca.pem');
SELECT sec_try($$INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'TLS missing CA file')$$);

-- With ca_file naming the certificate (a superuser's choice): it works,
-- over TLS, with the mapping's credentials.
ALTER SERVER sec_tls OPTIONS (SET ca_file :'standin_ca_file');
INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'TLS trusted')
  RETURNING id ~ '^[0-9]+$' AS has_id, http_status;
SELECT * FROM sec_tls_stats();
SELECT r->>'server' AS listener, r->>'path' AS path,
       r->>'auth' = 'basic:' || :'cfdw_user' || ':1' AS auth_of_the_mapping
  FROM standin_call('GET', 'requests?server=tls') r;

-- The host name is checked too: the certificate is for 127.0.0.1, not for
-- localhost.
SELECT replace(:'standin_tls_url', '127.0.0.1', 'localhost') AS tls_by_name \gset
CREATE SERVER sec_tls_name FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'tls_by_name', ca_file :'standin_ca_file', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_tls_name
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE sec.tls_name_pages (space_id text, title text)
  SERVER sec_tls_name OPTIONS (endpoint 'pages');
SELECT sec_try($$INSERT INTO sec.tls_name_pages VALUES ('98306', 'TLS wrong name')$$);
SELECT * FROM sec_tls_stats();

-- A redirect from https to plain http is not followed either: the second
-- listener gets nothing.
SELECT standin_fault(jsonb_build_object('kind', 'redirect', 'server', 'tls',
  'location', :'standin_url2' || '/wiki/api/v2/pages'));
SELECT sec_try($$INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'TLS redirected')$$);
SELECT s->'second_requests' AS second_listener_requests FROM standin_stats() s;

-- Verification cannot be turned off: there is no option for it.
SELECT opt, sec_try(format('ALTER SERVER sec_tls OPTIONS (ADD %I %L)', opt, val)) AS outcome
  FROM (VALUES ('ssl_verify', 'false'), ('verify_peer', 'off'), ('insecure', 'true'),
               ('sslmode', 'disable'), ('verify_host', '0')) AS v(opt, val);
SELECT hint FROM sec_seen WHERE stmt LIKE '%ssl_verify%';

--
-- 2. A role that is not a superuser.
--
CREATE ROLE regress_cfdw_sec_user;
CREATE SERVER sec_srv FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE sec.pages (space_id text, title text, id text, http_status integer)
  SERVER sec_srv OPTIONS (endpoint 'pages');
GRANT INSERT, SELECT ON sec.pages TO regress_cfdw_sec_user;

-- Without USAGE on the server the role cannot even create its mapping.
SET ROLE regress_cfdw_sec_user;
SELECT sec_try($$CREATE USER MAPPING FOR CURRENT_USER SERVER sec_srv OPTIONS (bearer_token 'not-a-real-token')$$);
RESET ROLE;

-- With USAGE it creates its own mapping, and its rows carry its own
-- credentials (token 2), not the superuser's (token 1).
GRANT USAGE ON FOREIGN SERVER sec_srv TO regress_cfdw_sec_user;
SELECT standin_reset();
SET ROLE regress_cfdw_sec_user;
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_srv
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
INSERT INTO sec.pages (space_id, title) VALUES ('98306', 'By the role')
  RETURNING http_status;
RESET ROLE;
INSERT INTO sec.pages (space_id, title) VALUES ('98306', 'By the superuser')
  RETURNING http_status;
SELECT r->'body_json'->>'title' AS title,
       replace(r->>'auth', ':' || :'cfdw_user' || ':', ':<user>:') AS auth
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

-- It sees the options of its own mapping only: the superuser's are NULL in
-- pg_user_mappings, and pg_user_mapping itself is not readable.
SET ROLE regress_cfdw_sec_user;
SELECT usename = current_user AS own_mapping, umoptions IS NULL AS options_hidden,
       (SELECT array_agg(option_name ORDER BY option_name)
          FROM pg_options_to_table(umoptions)) AS visible_options
  FROM pg_user_mappings WHERE srvname = 'sec_srv' ORDER BY 1;
SELECT sec_try($$SELECT umoptions FROM pg_user_mapping$$);
RESET ROLE;

-- It cannot point a server at plain http, nor choose the CA bundle, even
-- for a server of its own (CREATE SERVER needs USAGE on the wrapper).
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO regress_cfdw_sec_user;
GRANT CREATE ON SCHEMA sec TO regress_cfdw_sec_user;
SELECT standin_reset();
-- (the stand-in's address is allowed as a host name for this session; its
-- servers' connections to it are still refused, see front.sql)
SET confluence_fdw.allowed_hosts = '*.atlassian.net,api.atlassian.com,127.0.0.1';
SET ROLE regress_cfdw_sec_user;
SELECT sec_try(format('CREATE SERVER sec_user_http FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url %L)', :'standin_url'));
SELECT sec_try(format('CREATE SERVER sec_user_ca FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url %L, ca_file %L)', :'standin_tls_url', :'standin_ca_file'));
-- an https server of its own is fine, but it never connects to a loopback
-- address (egress control: no TLS handshake even starts), and the
-- superuser's servers are not its own
CREATE SERVER sec_user_tls FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'standin_tls_url', max_retries '0');
SELECT sec_try($$ALTER SERVER sec_user_tls OPTIONS (ADD ca_file '/tmp/any.pem')$$);
SELECT sec_try($$ALTER SERVER sec_tls OPTIONS (SET ca_file '/tmp/any.pem')$$);
SELECT sec_try(format('ALTER SERVER sec_srv OPTIONS (SET base_url %L)', :'standin_url2'));
CREATE USER MAPPING FOR CURRENT_USER SERVER sec_user_tls
  OPTIONS (username :'cfdw_user', api_token :'cfdw_token2');
CREATE FOREIGN TABLE sec.user_tls_pages (space_id text, title text)
  SERVER sec_user_tls OPTIONS (endpoint 'pages');
-- libcurl 8 ends that transfer inside the very call that starts it; the
-- end is collected then, not after a wait with no timer to end it (no "no
-- timer from libcurl")
SELECT sec_try_debug($$INSERT INTO sec.user_tls_pages VALUES ('98306', 'Role over TLS')$$);
DROP FOREIGN TABLE sec.user_tls_pages;
DROP USER MAPPING FOR CURRENT_USER SERVER sec_user_tls;
DROP SERVER sec_user_tls;
RESET ROLE;
RESET confluence_fdw.allowed_hosts;
SELECT * FROM sec_tls_stats();

-- A role without a mapping of its own uses the PUBLIC mapping.
CREATE ROLE regress_cfdw_sec_public;
GRANT INSERT, SELECT ON sec.pages TO regress_cfdw_sec_public;
CREATE USER MAPPING FOR PUBLIC SERVER sec_srv OPTIONS (bearer_token :'cfdw_bearer');
SELECT standin_reset();
SET ROLE regress_cfdw_sec_public;
INSERT INTO sec.pages (space_id, title) VALUES ('98306', 'By the public mapping')
  RETURNING http_status;
RESET ROLE;
SELECT r->>'auth' AS auth FROM standin_requests() r;

--
-- 3. A view uses its owner's mapping (the owner's privileges reach the
-- foreign table), unless it is a security_invoker view.
--
CREATE VIEW sec.role_view AS SELECT space_id, title FROM sec.pages;
ALTER VIEW sec.role_view OWNER TO regress_cfdw_sec_user;
CREATE VIEW sec.invoker_view WITH (security_invoker = true) AS
  SELECT space_id, title FROM sec.pages;
ALTER VIEW sec.invoker_view OWNER TO regress_cfdw_sec_user;
SELECT standin_reset();
-- the superuser inserts through the role's view: the role's token 2
INSERT INTO sec.role_view VALUES ('98306', 'Through the view');
-- through the security_invoker view: the superuser's own token 1
INSERT INTO sec.invoker_view VALUES ('98306', 'Through the invoker view');
SELECT r->'body_json'->>'title' AS title,
       replace(r->>'auth', ':' || :'cfdw_user' || ':', ':<user>:') AS auth
  FROM standin_requests() r ORDER BY (r->>'seq')::int;

--
-- 4. No token anywhere: EXPLAIN VERBOSE of every table here, as the
-- superuser and as the role, and every error caught above (message,
-- detail, hint, context).  shows_no_secret() (setup.sql) reads the tokens
-- from the user mappings, so none is written into a statement.
--
CREATE FUNCTION sec_explain(stmt text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || stmt LOOP
    RETURN NEXT line;
  END LOOP;
END $$;
CREATE TEMP TABLE sec_explained (who text, line text);
INSERT INTO sec_explained
  SELECT 'superuser', sec_explain(s) FROM (VALUES
    ($$INSERT INTO sec.pages (space_id, title) VALUES ('98306', 'x') RETURNING id$$),
    ($$INSERT INTO sec.tls_pages (space_id, title) VALUES ('98306', 'x')$$),
    ($$INSERT INTO sec.role_view VALUES ('98306', 'x')$$)) AS v(s);
GRANT INSERT ON sec_explained TO regress_cfdw_sec_user;
GRANT EXECUTE ON FUNCTION sec_explain(text) TO regress_cfdw_sec_user;
SET ROLE regress_cfdw_sec_user;
INSERT INTO sec_explained
  SELECT 'role', sec_explain($$INSERT INTO sec.pages (space_id, title) VALUES ('98306', 'x')$$);
RESET ROLE;
SELECT who, count(*) > 0 AS has_lines, bool_and(shows_no_secret(line)) AS no_token,
       bool_and(line !~* 'authorization|basic |bearer |api_token') AS no_credential_words,
       bool_or(line ~ 'POST https?://127\.0\.0\.1:[0-9]+/wiki/api/v2/pages') AS shows_the_url
  FROM sec_explained GROUP BY who ORDER BY who;
SELECT count(*) AS errors_caught,
       count(*) FILTER (WHERE NOT shows_no_secret(concat_ws(' ', message, detail, hint, context))) AS showing_a_token
  FROM sec_seen;

-- Clean up.
SET client_min_messages = warning;
DROP SCHEMA sec CASCADE;
DROP USER MAPPING FOR CURRENT_USER SERVER sec_tls;
DROP USER MAPPING FOR CURRENT_USER SERVER sec_tls_name;
DROP USER MAPPING FOR CURRENT_USER SERVER sec_srv;
DROP USER MAPPING FOR regress_cfdw_sec_user SERVER sec_srv;
DROP USER MAPPING FOR PUBLIC SERVER sec_srv;
DROP SERVER sec_tls, sec_tls_name, sec_srv;
REVOKE USAGE ON FOREIGN DATA WRAPPER confluence_fdw FROM regress_cfdw_sec_user;
DROP OWNED BY regress_cfdw_sec_user, regress_cfdw_sec_public;
DROP ROLE regress_cfdw_sec_user, regress_cfdw_sec_public;
DROP TABLE sec_seen;
DROP FUNCTION sec_try(text), sec_tls_stats(), sec_explain(text);
RESET client_min_messages;
