/* confluence_fdw--1.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION confluence_fdw" to load this file. \quit

-- Every object is in the schema confluence_fdw (the control file's schema,
-- created by CREATE EXTENSION), so they never mix with the user's own.
-- Every role may use the functions (test_connection uses the caller's own
-- user mapping).
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

CREATE FUNCTION confluence_fdw_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FUNCTION confluence_fdw_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER confluence_fdw
  HANDLER confluence_fdw_handler
  VALIDATOR confluence_fdw_validator;

COMMENT ON FOREIGN DATA WRAPPER confluence_fdw IS
  'sends INSERTed rows to Confluence Cloud REST API v2';

-- The SQL form of a connector's "Test" button, with the caller's user
-- mapping: who the credentials belong to (GET /wiki/rest/api/user/current)
-- and whether they may read (GET /wiki/api/v2/spaces?limit=1).
CREATE FUNCTION test_connection(server_name text,
    OUT ok boolean, OUT http_status integer, OUT message text,
    OUT account_id text, OUT display_name text, OUT email text)
RETURNS record
AS 'MODULE_PATHNAME', 'confluence_fdw_test_connection'
LANGUAGE C STRICT VOLATILE;

-- Close this backend's cached HTTP connections (as postgres_fdw_disconnect_all).
CREATE FUNCTION disconnect_all()
RETURNS boolean
AS 'MODULE_PATHNAME', 'confluence_fdw_disconnect_all'
LANGUAGE C STRICT VOLATILE;

-- Content helpers (README, "Markdown and plain text"): what a foreign
-- table with representation 'markdown' or 'plain' sends, for previews, and
-- the check every storage body passes before it is sent, for CHECK
-- constraints.  IMMUTABLE: the same text always gives the same result.
CREATE FUNCTION markdown_to_storage(markdown text)
RETURNS text
AS 'MODULE_PATHNAME', 'confluence_fdw_markdown_to_storage'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION text_to_storage(plain text)
RETURNS text
AS 'MODULE_PATHNAME', 'confluence_fdw_text_to_storage'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION storage_is_well_formed(body text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'confluence_fdw_storage_is_well_formed'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- The queue of delivery 'queue' tables (README, "Delivery that follows the
-- transaction").  A row is written by an INSERT into such a table, in the
-- user's transaction, and sent by the background worker after COMMIT.  It
-- never holds a credential: the worker uses the user mapping of enqueued_by
-- when it sends.  Only the extension writes it (the FDW as the queue's
-- owner, the worker as superuser); a role reads its own rows.
CREATE TABLE queue (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    enqueued_by     regrole NOT NULL,
    server_name     text NOT NULL,
    table_name      text NOT NULL,
    template        text,
    method          text NOT NULL,
    url             text NOT NULL,
    content_type    text,
    body            text,
    context         jsonb,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'retry_wait', 'done', 'in_doubt', 'dead', 'held')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    http_status     integer,
    remote_id       text,
    action          text CHECK (action IN ('created', 'updated', 'unchanged', 'skipped')),
    response        jsonb,
    error           text,
    sent_at         timestamptz,
    done_at         timestamptz,
    -- the versions (OIDs and xmin) of the server and user mapping that
    -- Confluence last refused the row with (state 'held'); no option's value
    credentials_version text
);

COMMENT ON TABLE queue IS
  'requests of delivery ''queue'' tables, sent by the confluence_fdw worker after COMMIT';

-- what the worker looks for, and what flush() waits on
CREATE INDEX queue_todo ON queue (next_attempt_at, id)
  WHERE state IN ('pending', 'retry_wait', 'sending');
CREATE INDEX queue_by_role ON queue (enqueued_by, state);
-- the held rows, which the worker compares when a server or user mapping
-- changes (not in queue_todo: nothing is due in them, and flush() does not
-- wait for them)
CREATE INDEX queue_held ON queue (id) WHERE state = 'held';

-- A role reads its own rows: enqueued_by holds the OID of the role that
-- queued the row, compared with the OID of the current role, looked up by
-- its name as a name (never parsed as role syntax, so "Alice", "16384" and
-- "ops.bot" are each only themselves).  The subquery runs once per
-- statement, and the comparison can use queue_by_role.  Every name is
-- pg_catalog's, so nothing planted in another schema takes part.
ALTER TABLE queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY queue_own_rows ON queue FOR SELECT
  USING (enqueued_by::pg_catalog.oid OPERATOR(pg_catalog.=)
         (SELECT r.oid FROM pg_catalog.pg_roles r
           WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER));
GRANT SELECT ON queue TO PUBLIC;
-- pg_dump keeps the queue's rows (and where its ids stand): restoring a
-- dump must not lose rows that were waiting to be sent.
SELECT pg_catalog.pg_extension_config_dump('queue', '');
SELECT pg_catalog.pg_extension_config_dump('queue_id_seq', '');

-- Wait until the caller's queued rows are sent (no longer pending, sending
-- or retry_wait), at most timeout_ms; returns how many are still waiting.
-- Held rows wait for a person, not for time: not waited for nor counted.
CREATE FUNCTION flush(timeout_ms integer DEFAULT 30000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'confluence_fdw_flush'
LANGUAGE C STRICT VOLATILE;

-- Put a dead, in_doubt or held row back to pending; a role may requeue only
-- its own rows.  True when the row was requeued.
CREATE FUNCTION requeue(id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'confluence_fdw_requeue'
LANGUAGE C STRICT VOLATILE;

-- Each site's rate limit, shared by every session and the worker (the key
-- of a site: the cloudId of a gateway URL, else host and port): requests to
-- it pause until paused_until after a 429 (or a 503 with Retry-After); what
-- the last answer's rate-limit headers said (limit, remaining, reset,
-- near_limit, reason); how many requests waited for the pace, and the 429s.
CREATE FUNCTION rate_limit_state(OUT site text, OUT paused_until timestamptz,
    OUT rate_limit bigint, OUT remaining bigint, OUT reset_at timestamptz,
    OUT near_limit boolean, OUT reason text, OUT paced bigint,
    OUT recent_429s bigint, OUT last_429_at timestamptz, OUT seen_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'confluence_fdw_rate_limits'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW rate_limits AS SELECT * FROM rate_limit_state();
GRANT SELECT ON rate_limits TO PUBLIC;
