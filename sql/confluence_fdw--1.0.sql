/* confluence_fdw--1.0.sql */

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

-- The SQL form of a connector's "Test" button: one cheap authenticated GET
-- (GET /wiki/api/v2/spaces?limit=1) with the caller's user mapping.
CREATE FUNCTION test_connection(server_name text,
    OUT ok boolean, OUT http_status integer, OUT message text)
RETURNS record
AS 'MODULE_PATHNAME', 'confluence_fdw_test_connection'
LANGUAGE C STRICT VOLATILE;

-- Close this backend's cached HTTP connections (as postgres_fdw_disconnect_all).
CREATE FUNCTION disconnect_all()
RETURNS boolean
AS 'MODULE_PATHNAME', 'confluence_fdw_disconnect_all'
LANGUAGE C STRICT VOLATILE;
