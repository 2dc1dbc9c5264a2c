/* confluence_fdw--1.0--1.1.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION confluence_fdw UPDATE TO '1.1'" to load this file. \quit

-- Each change from 1.0 to 1.1, in the order of confluence_fdw--1.1.sql; the
-- objects after this script equal those of a fresh 1.1 (test/versions.sh).

-- test_connection also says who the credentials belong to: three more
-- output columns after the three of 1.0, which keep their names and order.
DROP FUNCTION @extschema@.test_connection(text);
CREATE FUNCTION @extschema@.test_connection(server_name text,
    OUT ok boolean, OUT http_status integer, OUT message text,
    OUT account_id text, OUT display_name text, OUT email text)
RETURNS record
AS 'MODULE_PATHNAME', 'confluence_fdw_test_connection'
LANGUAGE C STRICT VOLATILE;

-- Queue rows refused with 401 or 403 wait in the new state 'held' until
-- their server or user mapping changes (the worker compares the versions
-- kept in credentials_version) or requeue() is called.
ALTER TABLE @extschema@.queue
  DROP CONSTRAINT queue_state_check,
  ADD CONSTRAINT queue_state_check
    CHECK (state IN ('pending', 'sending', 'retry_wait', 'done', 'in_doubt', 'dead', 'held')),
  ADD COLUMN credentials_version text;
CREATE INDEX queue_held ON @extschema@.queue (id) WHERE state = 'held';

-- The queue's policy compares role OIDs.  1.0's
--   enqueued_by = current_user::text::regrole
-- parsed the role's name as role syntax: role "Alice" read the rows of
-- role alice, a role named "16384" those of the role with OID 16384, and
-- every read by "ops.bot" (and its flush()) failed.  The rows are kept;
-- only who may read them changes.
ALTER POLICY queue_own_rows ON @extschema@.queue
  USING (enqueued_by::pg_catalog.oid OPERATOR(pg_catalog.=)
         (SELECT r.oid FROM pg_catalog.pg_roles r
           WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER));

-- Rate limits are kept per site rather than per server, and show what the
-- rate-limit headers said and the pace: the view and its function get new
-- columns (site in place of server_name), so both are made anew.
DROP VIEW @extschema@.rate_limits;
DROP FUNCTION @extschema@.rate_limit_state();
CREATE FUNCTION rate_limit_state(OUT site text, OUT paused_until timestamptz,
    OUT rate_limit bigint, OUT remaining bigint, OUT reset_at timestamptz,
    OUT near_limit boolean, OUT reason text, OUT paced bigint,
    OUT recent_429s bigint, OUT last_429_at timestamptz, OUT seen_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'confluence_fdw_rate_limits'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW rate_limits AS SELECT * FROM rate_limit_state();
GRANT SELECT ON rate_limits TO PUBLIC;
