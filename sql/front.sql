--
-- The shape of a real site (test/front.sh): the stand-in behind nginx,
-- which terminates TLS with a certificate from a test CA (trusted in this
-- run's mount namespace, as a public CA is on a real machine, so no
-- ca_file), offers HTTP/2 on one listener and only HTTP/1.1 on another,
-- closes idle connections after 2 s and any connection after 25 requests,
-- and gzips JSON.  Names come from a private hosts file:
-- confluence.test (127.0.0.1), v6.confluence.test (::1) and
-- dual.confluence.test (both).  tinyproxy is a real forward proxy.
-- statement_timeout is well under connect_timeout_ms, so a stall fails.
--
\getenv h2_port FRONT_H2_PORT
\getenv h1_port FRONT_H1_PORT
\getenv h2_port2 FRONT_H2_PORT2
\getenv proxy_url FRONT_PROXY_URL
\getenv results_dir CFDW_RESULTS_DIR
\getenv wrong_ca STANDIN_CA_FILE
\getenv standin_direct STANDIN_DIRECT_URL
\getenv cfdw_user CFDW_USER
\getenv cfdw_token CFDW_TOKEN
\set h2_dual 'https://dual.confluence.test:' :h2_port
\set h2_v4 'https://confluence.test:' :h2_port
\set h2_v6 'https://v6.confluence.test:' :h2_port
\set h1_v4 'https://confluence.test:' :h1_port
\set h1_dual 'https://dual.confluence.test:' :h1_port
\set refused_target 'https://confluence.test:' :h2_port2
\set nowhere 'https://nowhere.confluence.test:' :h2_port
SELECT replace(:'standin_direct', '127.0.0.1', 'confluence.test') AS plain_by_name \gset
SET statement_timeout = '5s';

CREATE SCHEMA fr;
CREATE SERVER fr_h2 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h2_dual');
CREATE SERVER fr_h2_v4 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h2_v4');
CREATE SERVER fr_v6 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h2_v6');
CREATE SERVER fr_h1 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h1_v4');
CREATE SERVER fr_h1_dual FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h1_dual');
-- the stand-in itself by name, over plain HTTP (a superuser's choice)
CREATE SERVER fr_plain FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'plain_by_name');
CREATE SERVER fr_small FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'h2_dual', max_response_bytes '20000');
CREATE SERVER fr_nowhere FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'nowhere', max_retries '1', max_retry_wait_ms '3000');
CREATE SERVER fr_proxy FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'h2_v4', proxy :'proxy_url');
CREATE SERVER fr_proxy_wrong_ca FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'h2_v4', proxy :'proxy_url', ca_file :'wrong_ca', max_retries '0');
CREATE SERVER fr_proxy_refuses FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'refused_target', proxy :'proxy_url', max_retries '0');
CREATE SERVER fr_proxy_dead FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url :'h2_v4', proxy 'http://127.0.0.1:9', max_retries '0');
DO $$
DECLARE
  s text;
BEGIN
  FOREACH s IN ARRAY ARRAY['fr_h2', 'fr_h2_v4', 'fr_v6', 'fr_h1', 'fr_h1_dual', 'fr_plain', 'fr_small',
                           'fr_nowhere', 'fr_proxy', 'fr_proxy_wrong_ca', 'fr_proxy_refuses',
                           'fr_proxy_dead'] LOOP
    EXECUTE format('CREATE FOREIGN TABLE fr.%I (space_id text, title text, id text, http_status integer)
                      SERVER %I OPTIONS (endpoint ''pages'')', s || '_pages', s);
    EXECUTE format('CREATE FOREIGN TABLE fr.%I (space_id text, title text)
                      SERVER %I OPTIONS (endpoint ''pages'', max_concurrency ''8'')', s || '_pipe', s);
  END LOOP;
END $$;
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_h2 OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_h2_v4 OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_v6 OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_h1 OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_h1_dual OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_plain OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_small OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_nowhere OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_proxy OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_proxy_wrong_ca OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_proxy_refuses OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_proxy_dead OPTIONS (username :'cfdw_user', api_token :'cfdw_token');

-- Requests since the last reset: which listener, protocol and client
-- connection (as nginx numbers them) each came on.
CREATE FUNCTION fr.log(OUT seq int, OUT front text, OUT proto text, OUT conn int,
                       OUT title text, OUT status int)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT (r->>'seq')::int, r->>'front', r->>'front_proto', (r->>'conn')::int,
         r->'body_json'->>'title', (r->>'status')::int
    FROM standin_requests() r ORDER BY 1 $$;
-- The lines of a file of this run's (the proxy's and nginx's logs).
CREATE FUNCTION fr.lines(path text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('pg_temp.fr_file') IS NULL THEN
    CREATE TEMP TABLE fr_file (line text);
  END IF;
  TRUNCATE fr_file;
  EXECUTE format('COPY fr_file FROM PROGRAM %L WITH (FORMAT csv, DELIMITER E''\x01'', QUOTE E''\x02'')',
                 'cat ' || quote_literal(path));
  RETURN QUERY SELECT line FROM fr_file;
END $$;
-- Runs a statement and shows its SQLSTATE, message and detail, with ports,
-- paths and libcurl's own words masked.
CREATE FUNCTION fr.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  msg text;
  det text;
BEGIN
  EXECUTE stmt;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  -- keep our sentence about what was sent, not libcurl's wording before it
  det := substring(det from '(The request [^.]*\.)');
  RETURN SQLSTATE || ': ' || msg || coalesce(E'\nDETAIL: ' || det, '');
END $$;

--
-- 1. The Test button by name, over HTTP/2 and HTTP/1.1, IPv4, IPv6, both.
--
SELECT s AS server, t.ok, t.http_status
  FROM unnest(ARRAY['fr_h2', 'fr_h2_v4', 'fr_v6', 'fr_h1', 'fr_h1_dual', 'fr_plain']) s,
       confluence_fdw.test_connection(s) t;

--
-- 2. One at a time (RETURNING): the first request of a session and the
-- ones after it, on one kept-alive connection per server; HTTP/2 where
-- offered.
--
SELECT standin_reset();
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
INSERT INTO fr.fr_h2_pages (space_id, title) VALUES ('98306', 'fr h2 1'), ('98306', 'fr h2 2'), ('98306', 'fr h2 3')
  RETURNING title, http_status, id ~ '^[0-9]+$' AS has_id;
INSERT INTO fr.fr_h1_pages (space_id, title) VALUES ('98306', 'fr h1 1'), ('98306', 'fr h1 2')
  RETURNING title, http_status;
INSERT INTO fr.fr_v6_pages (space_id, title) VALUES ('98306', 'fr v6 1') RETURNING title, http_status;
INSERT INTO fr.fr_h1_dual_pages (space_id, title) VALUES ('98306', 'fr h1 dual 1') RETURNING title, http_status;
-- (two servers on each listener: one connection each)
SELECT front, proto, count(*) AS requests, count(DISTINCT conn) AS connections
  FROM fr.log() GROUP BY 1, 2 ORDER BY 1, 2;

-- By name over plain HTTP (the stand-in's own listener): the same, first
-- request, the next ones, and 200 rows pipelined after disconnect_all.
SELECT standin_reset();
INSERT INTO fr.fr_plain_pages (space_id, title) VALUES ('98306', 'fr plain 1'), ('98306', 'fr plain 2')
  RETURNING title, http_status;
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
INSERT INTO fr.fr_plain_pipe (space_id, title) SELECT '98306', 'fr plain pipe ' || g FROM generate_series(1, 200) g;
SELECT count(*) AS requests, count(DISTINCT title) AS titles, count(*) FILTER (WHERE status = 200) AS created,
       bool_and(front IS NULL) AS direct
  FROM fr.log();

--
-- 3. Pipelined, after disconnect_all, over HTTP/2 and HTTP/1.1: every row
-- created exactly once, nothing in between lost; nginx ends each connection
-- after 25 requests, so several connections are opened on the way.
--
SELECT standin_reset();
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
INSERT INTO fr.fr_h2_pipe (space_id, title) SELECT '98306', 'fr pipe h2 ' || g FROM generate_series(1, 200) g;
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
INSERT INTO fr.fr_h1_pipe (space_id, title) SELECT '98306', 'fr pipe h1 ' || g FROM generate_series(1, 200) g;
SELECT front, count(*) AS requests, count(DISTINCT title) AS titles,
       count(*) FILTER (WHERE status = 200) AS created,
       count(DISTINCT conn) >= 8 AS at_least_8_connections
  FROM fr.log() GROUP BY 1 ORDER BY 1;
SELECT (standin_stats()->>'pages')::int AS pages;

--
-- 4. The far side closes connections: after 25 requests (keepalive_requests)
-- and when idle for 2 s (keepalive_timeout).  The next request opens a new
-- connection at once, and nothing is sent twice.
--
SELECT standin_reset();
SELECT confluence_fdw.disconnect_all() IS NOT NULL AS disconnected;
WITH sent AS (INSERT INTO fr.fr_h1_pages (space_id, title)
              SELECT '98306', 'fr keepalive h1 ' || g FROM generate_series(1, 60) g RETURNING http_status)
SELECT http_status, count(*) FROM sent GROUP BY 1;
WITH sent AS (INSERT INTO fr.fr_h2_pages (space_id, title)
              SELECT '98306', 'fr keepalive h2 ' || g FROM generate_series(1, 60) g RETURNING http_status)
SELECT http_status, count(*) FROM sent GROUP BY 1;
SELECT front, count(*) AS requests, count(DISTINCT conn) AS connections
  FROM fr.log() GROUP BY 1 ORDER BY 1;
SELECT standin_reset();
INSERT INTO fr.fr_h1_pages (space_id, title) VALUES ('98306', 'fr idle h1 1') RETURNING http_status;
INSERT INTO fr.fr_h1_pipe (space_id, title) VALUES ('98306', 'fr idle h1 2'), ('98306', 'fr idle h1 3');
INSERT INTO fr.fr_h2_pages (space_id, title) VALUES ('98306', 'fr idle h2 1') RETURNING http_status;
SELECT pg_sleep(2.5);
INSERT INTO fr.fr_h1_pages (space_id, title) VALUES ('98306', 'fr idle h1 4') RETURNING http_status;
INSERT INTO fr.fr_h1_pipe (space_id, title) VALUES ('98306', 'fr idle h1 5'), ('98306', 'fr idle h1 6');
INSERT INTO fr.fr_h2_pages (space_id, title) VALUES ('98306', 'fr idle h2 2') RETURNING http_status;
SELECT front, count(*) AS requests, count(DISTINCT title) AS titles, count(DISTINCT conn) > 1 AS reconnected
  FROM fr.log() GROUP BY 1 ORDER BY 1;

--
-- 5. Batched rows (one request per batch) through the front.
--
CREATE FOREIGN TABLE fr.batch (n integer, title text, response jsonb)
  SERVER fr_h2 OPTIONS (endpoint '/wiki/echo/batch', batch_mode 'true', batch_size '10');
SELECT standin_reset();
INSERT INTO fr.batch (n, title) SELECT g, 'fr batch ' || g FROM generate_series(1, 30) g;
SELECT count(*) AS requests, sum(json_array_length((r->>'body_text')::json)) AS rows_sent,
       min(r->>'front_proto') AS proto
  FROM standin_requests() r;

--
-- 6. A name that does not resolve: HV00N, nothing sent, retried as "not
-- sent" (max_retries 1).
--
SELECT fr.try($$INSERT INTO fr.fr_nowhere_pages (space_id, title) VALUES ('98306', 'fr nowhere') RETURNING id$$);
SELECT fr.try($$INSERT INTO fr.fr_nowhere_pipe (space_id, title) VALUES ('98306', 'fr nowhere 2')$$);
SELECT t.ok, t.http_status FROM confluence_fdw.test_connection('fr_nowhere') t;

--
-- 7. Through a forward proxy: HTTPS by CONNECT, TLS still verified with
-- the site itself end to end (a ca_file that does not hold the test CA
-- fails through the tunnel too); a proxy that refuses the tunnel and one
-- that is not there are clear HV00N errors that say nothing was sent.
--
SELECT standin_reset();
INSERT INTO fr.fr_proxy_pages (space_id, title) VALUES ('98306', 'fr proxied 1'), ('98306', 'fr proxied 2')
  RETURNING title, http_status;
INSERT INTO fr.fr_proxy_pipe (space_id, title) SELECT '98306', 'fr proxied pipe ' || g FROM generate_series(1, 20) g;
SELECT count(*) AS requests, count(DISTINCT title) AS titles FROM fr.log();
SELECT fr.try($$INSERT INTO fr.fr_proxy_wrong_ca_pages (space_id, title) VALUES ('98306', 'fr wrong ca') RETURNING id$$);
SELECT fr.try($$INSERT INTO fr.fr_proxy_refuses_pages (space_id, title) VALUES ('98306', 'fr refused') RETURNING id$$);
SELECT fr.try($$INSERT INTO fr.fr_proxy_dead_pages (space_id, title) VALUES ('98306', 'fr dead proxy') RETURNING id$$);
SELECT count(*) AS requests_after_refusals FROM fr.log();
-- tinyproxy's own log: the tunnels it opened, to the site by name
SELECT count(*) > 0 AS tunnels_to_the_site
  FROM fr.lines(:'results_dir' || '/tinyproxy.log') line
 WHERE line ~ ('CONNECT confluence\.test:' || :'h2_port');
-- the proxy option: superuser only, an origin without credentials
CREATE ROLE fr_user;
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO fr_user;
SET ROLE fr_user;
CREATE SERVER fr_mine FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (domain 'acme.atlassian.net', proxy 'http://proxy.example.com:3128');
RESET ROLE;
ALTER SERVER fr_proxy OPTIONS (SET proxy 'socks5://127.0.0.1:1080');
ALTER SERVER fr_proxy OPTIONS (SET proxy 'http://someone:secret@127.0.0.1:3128');
ALTER SERVER fr_proxy OPTIONS (SET proxy 'http://127.0.0.1:3128/path');
ALTER SERVER fr_proxy OPTIONS (SET proxy 'not a url');
REVOKE USAGE ON FOREIGN DATA WRAPPER confluence_fdw FROM fr_user;
DROP ROLE fr_user;

--
-- 8. Compressed answers: nginx gzips them, libcurl decodes them, and
-- max_response_bytes bounds the decoded size.  The echo endpoint answers
-- with the request's body, so a large compressible row makes a large
-- answer; nginx's access log shows the bytes on the wire.
--
CREATE FOREIGN TABLE fr.echo (payload text, response jsonb) SERVER fr_h2
  OPTIONS (endpoint '/wiki/echo/gzip');
CREATE FOREIGN TABLE fr.echo_small (payload text, response jsonb) SERVER fr_small
  OPTIONS (endpoint '/wiki/echo/gzip-small');
SELECT standin_reset();
INSERT INTO fr.echo VALUES (repeat('compressible ', 4000))
  RETURNING length(response->'received'->>'payload') AS decoded_payload_chars;
SELECT r->'headers'->>'accept-encoding' ~ 'gzip' AS asks_for_gzip FROM standin_requests() r;
SELECT fr.try($$INSERT INTO fr.echo_small VALUES (repeat('compressible ', 4000)) RETURNING response$$);
SELECT split_part(line, ' ', 4) AS status,
       split_part(line, ' ', 5)::int < 2000 AS under_2000_bytes_on_the_wire,
       split_part(line, ' ', 6)::numeric > 10 AS gzip_ratio_over_10
  FROM fr.lines(:'results_dir' || '/nginx-access.log') line
 WHERE line ~ ' /wiki/echo/gzip' ORDER BY line;

--
-- 9. Egress control: a server of a role that is not a superuser may name
-- only hosts in confluence_fdw.allowed_hosts (checked when the option is
-- set and again when the server is used), and never connects to a
-- loopback, link-local or private address, whatever its name resolves to.
--
CREATE ROLE fr_owner;
GRANT USAGE ON FOREIGN DATA WRAPPER confluence_fdw TO fr_owner;
GRANT USAGE ON SCHEMA fr TO fr_owner;
CREATE SCHEMA fr_own AUTHORIZATION fr_owner;
SHOW confluence_fdw.allowed_hosts;
SET ROLE fr_owner;
CREATE SERVER fr_inward FOREIGN DATA WRAPPER confluence_fdw OPTIONS (domain 'wiki.internal.example');
CREATE SERVER fr_inward FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url 'https://10.0.0.5/confluence');
CREATE SERVER fr_inward FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h2_dual');
CREATE SERVER fr_cloud FOREIGN DATA WRAPPER confluence_fdw OPTIONS (domain 'acme.atlassian.net');
SET confluence_fdw.allowed_hosts = '*.confluence.test';
RESET ROLE;
-- a superuser allows the test names for this session
SET confluence_fdw.allowed_hosts = '*.atlassian.net,api.atlassian.com,*.confluence.test';
SET ROLE fr_owner;
CREATE SERVER fr_inward FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'h2_dual');
CREATE USER MAPPING FOR fr_owner SERVER fr_inward OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
CREATE FOREIGN TABLE fr_own.inward_pages (space_id text, title text, id text) SERVER fr_inward
  OPTIONS (endpoint 'pages');
CREATE FOREIGN TABLE fr_own.inward_pipe (space_id text, title text) SERVER fr_inward
  OPTIONS (endpoint 'pages');
RESET ROLE;
SELECT standin_reset();
SET ROLE fr_owner;
-- dual.confluence.test is ::1 and 127.0.0.1: both refused, nothing sent
SELECT fr.try($$INSERT INTO fr_own.inward_pages VALUES ('98306', 'fr inward') RETURNING id$$);
SELECT fr.try($$INSERT INTO fr_own.inward_pipe VALUES ('98306', 'fr inward 2')$$);
SELECT ok, http_status, regexp_replace(message, ':[0-9]+', ':PORT') AS message
  FROM confluence_fdw.test_connection('fr_inward');
RESET ROLE;
SELECT count(*) AS requests FROM standin_requests();
-- once the setting no longer allows the name, using the server fails too
RESET confluence_fdw.allowed_hosts;
SET ROLE fr_owner;
SELECT fr.try($$INSERT INTO fr_own.inward_pages VALUES ('98306', 'fr inward 3') RETURNING id$$);
RESET ROLE;
-- the same server owned by a superuser is not restricted
ALTER SERVER fr_inward OWNER TO CURRENT_USER;
CREATE USER MAPPING FOR CURRENT_USER SERVER fr_inward OPTIONS (username :'cfdw_user', api_token :'cfdw_token');
INSERT INTO fr_own.inward_pages VALUES ('98306', 'fr inward by a superuser') RETURNING title;
DROP FOREIGN TABLE fr_own.inward_pages, fr_own.inward_pipe;
DROP SCHEMA fr_own;
REVOKE USAGE ON SCHEMA fr FROM fr_owner;
DROP USER MAPPING FOR fr_owner SERVER fr_inward;
DROP USER MAPPING FOR CURRENT_USER SERVER fr_inward;
DROP SERVER fr_inward, fr_cloud;
REVOKE USAGE ON FOREIGN DATA WRAPPER confluence_fdw FROM fr_owner;
DROP ROLE fr_owner;

RESET statement_timeout;
