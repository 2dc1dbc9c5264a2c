-- The main job: one page and one footer comment on it, each an INSERT with
-- RETURNING.  Settings come from demo/run.sh through the environment.
\getenv server_option DEMO_SERVER_OPTION
\getenv server_value DEMO_SERVER_VALUE
\getenv user DEMO_USER
\getenv token DEMO_TOKEN
\getenv space_id DEMO_SPACE_ID
\getenv title DEMO_TITLE
\pset expanded on

CREATE EXTENSION confluence_fdw;
SELECT format('CREATE SERVER confluence FOREIGN DATA WRAPPER confluence_fdw OPTIONS (%I %L)',
              :'server_option', :'server_value') \gexec
CREATE USER MAPPING FOR CURRENT_USER SERVER confluence
  OPTIONS (username :'user', api_token :'token');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments)
  FROM SERVER confluence INTO public;

\echo
\echo '== Test connection'
SELECT * FROM confluence_fdw.test_connection('confluence');

\echo '== INSERT INTO pages ... RETURNING'
INSERT INTO pages (space_id, title, body)
  VALUES (:'space_id', :'title',
          '<p>Created by <code>confluence_fdw</code> from PostgreSQL.</p>')
  RETURNING id AS page_id, http_status, version, created_at, webui,
            response->'_links'->>'base' AS site \gset
SELECT :'page_id' AS page_id, :'http_status' AS http_status, :'version' AS version,
       :'created_at' AS created_at, :'site' || :'webui' AS url;

\echo '== INSERT INTO footer_comments ... RETURNING'
INSERT INTO footer_comments (page_id, body)
  VALUES (:'page_id', '<p>A footer comment, also from SQL.</p>')
  RETURNING id AS comment_id, http_status, version, webui,
            jsonb_pretty(response) AS response;
