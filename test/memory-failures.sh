#!/usr/bin/env bash
# Memory of a pipelined INSERT whose rows are all answered with an HTTP
# error that on_error 'return' lets through: the backend's peak resident
# memory must grow by less than MEMFAIL_MAX_GROWTH_KB (4096) between a run of
# MEMFAIL_SMALL (3000) rows and one of MEMFAIL_LARGE (18000) rows in the same
# session.  (Each failure's parsed answer used to stay in the statement's
# memory: 34 MB for 18,000 rows.)  Against the local stand-in's echo
# endpoint with ?status=400, in a throw-away cluster.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/memory-failures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export MEMFAIL_SMALL=${MEMFAIL_SMALL:-3000} MEMFAIL_LARGE=${MEMFAIL_LARGE:-18000}
MEMFAIL_MAX_GROWTH_KB=${MEMFAIL_MAX_GROWTH_KB:-4096}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-memfail.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export MEMFAIL_WORK=$work

cat >"$work/memfail.sql" <<'SQL'
\set ON_ERROR_STOP on
\getenv standin_url STANDIN_URL
\getenv user CFDW_USER
\getenv token CFDW_TOKEN
\getenv small MEMFAIL_SMALL
\getenv large MEMFAIL_LARGE
\set QUIET on
CREATE EXTENSION confluence_fdw;
CREATE SERVER standin FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER standin OPTIONS (username :'user', api_token :'token');
CREATE FOREIGN TABLE refused (title text, body text)
  SERVER standin OPTIONS (endpoint '/wiki/echo/refused?status=400', on_error 'return',
                          max_concurrency '8');
CREATE FUNCTION mem(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
-- one WARNING per row is made and dropped; none need reach the client
SET client_min_messages = error;
INSERT INTO refused SELECT 'warm-up ' || g, repeat('x', 200) FROM generate_series(1, 500) g;
INSERT INTO refused SELECT 'small ' || g, repeat('x', 200) FROM generate_series(1, :small) g;
SELECT mem('VmHWM') AS hwm_small, mem('VmRSS') AS rss_small \gset
INSERT INTO refused SELECT 'large ' || g, repeat('x', 200) FROM generate_series(1, :large) g;
SELECT mem('VmHWM') AS hwm_large, mem('VmRSS') AS rss_large \gset
\pset tuples_only on
\pset format unaligned
\o :out
SELECT :hwm_small, :hwm_large, :rss_small, :rss_large;
\o
SQL
chmod 644 "$work/memfail.sql"

# shellcheck disable=SC2016
CFDW_LOG_MIN_MESSAGES=error CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash -c 'psql -X -q -v out="$MEMFAIL_WORK/out.txt" -d postgres -f "$MEMFAIL_WORK/memfail.sql"'
read -r hwm_small hwm_large rss_small rss_large <<<"$(tr '|' ' ' <"$work/out.txt")"
requests=$(curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
expected=$((500 + MEMFAIL_SMALL + MEMFAIL_LARGE))
growth=$((hwm_large - hwm_small))
echo "memory-failures: peak $hwm_small kB after $MEMFAIL_SMALL refused rows, $hwm_large kB after $MEMFAIL_LARGE more (growth $growth kB; RSS $rss_small -> $rss_large kB); $requests requests"
rc=0
[ "$requests" = "$expected" ] || { echo "  FAILED: the stand-in got $requests requests, expected $expected"; rc=1; }
if [ "$growth" -ge "$MEMFAIL_MAX_GROWTH_KB" ]; then
  echo "  FAILED: peak memory grew by $growth kB (limit $MEMFAIL_MAX_GROWTH_KB kB)"
  rc=1
fi
[ $rc = 0 ] && echo "memory-failures passed"
exit $rc
