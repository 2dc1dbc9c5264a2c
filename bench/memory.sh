#!/usr/bin/env bash
# Memory and connection reuse of the one-at-a-time path:
# INSERT ... SELECT ... RETURNING of N rows (default 10,000) into the pages
# template, against the local stand-in, in a throw-away cluster.  Prints the
# backend's resident memory before and after, its peak, the rows per second
# and how many TCP connections the stand-in saw.
#
#   bash bench/memory.sh [ROWS...]        e.g. bash bench/memory.sh 10000 100000
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

cfdw_build_and_install

work=$(mktemp -d /tmp/cfdw-bench.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
cfdw_gen_credentials
cfdw_start_standin "$work"
export BENCH_ROWS="${*:-10000}"

cat > "$work/memory.sql" <<'SQL'
\getenv standin_url STANDIN_URL
\getenv user CFDW_USER
\getenv token CFDW_TOKEN
\getenv rows_list BENCH_ROWS
\set QUIET on
CREATE EXTENSION confluence_fdw;
CREATE SERVER standin FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER standin OPTIONS (username :'user', api_token :'token');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER standin INTO public;

-- resident and peak memory of this backend, in kB, from /proc
CREATE FUNCTION mem(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
CREATE FUNCTION stats() RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('pg_temp.s') IS NULL THEN
    CREATE TEMP TABLE s (line text);
  END IF;
  TRUNCATE s;
  EXECUTE format('COPY s FROM PROGRAM %L', 'curl -sS ' || current_setting('bench.url') || '/_standin/stats');
  RETURN (SELECT line::jsonb FROM s);
END $$;
SELECT set_config('bench.url', :'standin_url', false) \gset
CREATE TEMP TABLE result (rows int, rss_before_kb bigint, rss_after_kb bigint,
                          peak_kb bigint, seconds numeric, connections int);

-- warm-up: caches, the connection, the first allocations
WITH w AS (INSERT INTO pages (space_id, title) SELECT '98306', 'warm-up ' || g FROM generate_series(1, 200) g RETURNING id)
SELECT count(*) FROM w \gset

SELECT set_config('bench.rows', :'rows_list', false) \gset
DO $$
DECLARE
  n int;
  before bigint;
  t0 timestamptz;
  got int;
BEGIN
  FOREACH n IN ARRAY string_to_array(current_setting('bench.rows'), ' ')::int[] LOOP
    before := mem('VmRSS');
    t0 := clock_timestamp();
    WITH sent AS (
      INSERT INTO pages (space_id, title, body)
        SELECT '98306', 'memory ' || n || ' ' || g, '<p>row ' || g || '</p>'
          FROM generate_series(1, n) g
        RETURNING id, version, webui, response)
    SELECT count(*) INTO got FROM sent WHERE id IS NOT NULL;
    IF got <> n THEN RAISE EXCEPTION 'expected % rows back, got %', n, got; END IF;
    INSERT INTO result VALUES (n, before, mem('VmRSS'), mem('VmHWM'),
      round(extract(epoch FROM clock_timestamp() - t0)::numeric, 2),
      (stats()->>'connections')::int);
  END LOOP;
END $$;
SQL
cat >> "$work/memory.sql" <<'SQL'
\set QUIET off
\echo
\echo 'INSERT ... SELECT ... RETURNING into pages, one request per row, stand-in on loopback'
SELECT rows, rss_before_kb, rss_after_kb, rss_after_kb - rss_before_kb AS growth_kb,
       peak_kb, seconds, round(rows / seconds) AS rows_per_s,
       connections AS tcp_connections_so_far
  FROM result ORDER BY rows;
SQL
chmod 644 "$work/memory.sql"
pg_virtualenv -t -v "$CFDW_PG_VERSION" psql -X -v ON_ERROR_STOP=1 -d postgres -f "$work/memory.sql"
