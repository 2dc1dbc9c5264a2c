#!/usr/bin/env bash
# Memory of a scan: a SELECT of every page streams the rows page by page, so
# the backend's peak resident memory must grow by less than
# READMEM_MAX_GROWTH_KB (4096) between a scan of READMEM_SMALL (10,000)
# pages and one of READMEM_LARGE (100,000) pages, each with a 200-byte body,
# in the same session.  The stand-in holds the pages (seeded through its
# control API) and answers 250 to a page with cursor links, in a throw-away
# cluster.  Also checks that every page was read exactly once.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/read-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export READMEM_SMALL=${READMEM_SMALL:-10000} READMEM_LARGE=${READMEM_LARGE:-100000}
READMEM_MAX_GROWTH_KB=${READMEM_MAX_GROWTH_KB:-4096}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-readmem.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export READMEM_WORK=$work

seed() {  # seed SPACE COUNT
  curl -fsS --max-time 120 -X POST "$STANDIN_URL/_standin/seed" \
    -d "{\"collection\": \"pages\", \"count\": $2, \"spaceId\": \"$1\", \"title_prefix\": \"p$1 \", \"body\": \"<p>$(printf 'x%.0s' $(seq 1 193))</p>\"}" >/dev/null
}
seed 1 "$READMEM_SMALL"
seed 2 "$READMEM_LARGE"

cat >"$work/readmem.sql" <<'SQL'
\set ON_ERROR_STOP on
\getenv standin_url STANDIN_URL
\getenv user CFDW_USER
\getenv token CFDW_TOKEN
\set QUIET on
CREATE EXTENSION confluence_fdw;
CREATE SERVER standin FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'standin_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER standin OPTIONS (username :'user', api_token :'token');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER standin INTO public;
CREATE FUNCTION mem(field text) RETURNS bigint LANGUAGE sql AS $$
  SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'),
                       field || ':\s+(\d+) kB'))[1]::bigint $$;
-- warm-up: the first scan loads libcurl, the catalogs and the plan caches
SELECT count(*) FROM pages WHERE space_id = '1' AND title = 'p1 1';
-- each id once: the ids are consecutive, so n rows with the sum of the n
-- consecutive numbers from min to max are exactly those (count(DISTINCT)
-- would itself hold every id in memory)
SELECT count(*) AS n_small,
       (sum(id::bigint) = (min(id::bigint) + max(id::bigint)) * count(*) / 2 AND
        max(id::bigint) - min(id::bigint) + 1 = count(*))::int * count(*) AS d_small,
       sum(length(body)) AS b_small
  FROM pages WHERE space_id = '1' \gset
SELECT mem('VmHWM') AS hwm_small, mem('VmRSS') AS rss_small \gset
SELECT count(*) AS n_large,
       (sum(id::bigint) = (min(id::bigint) + max(id::bigint)) * count(*) / 2 AND
        max(id::bigint) - min(id::bigint) + 1 = count(*))::int * count(*) AS d_large,
       sum(length(body)) AS b_large
  FROM pages WHERE space_id = '2' \gset
SELECT mem('VmHWM') AS hwm_large, mem('VmRSS') AS rss_large \gset
\pset tuples_only on
\pset format unaligned
\o :out
SELECT :hwm_small, :hwm_large, :rss_small, :rss_large, :n_small, :d_small, :n_large, :d_large, :b_small, :b_large;
\o
SQL
chmod 644 "$work/readmem.sql"

# shellcheck disable=SC2016
CFDW_LOG_MIN_MESSAGES=error CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash -c 'psql -X -q -v out="$READMEM_WORK/out.txt" -d postgres -f "$READMEM_WORK/readmem.sql"'
read -r hwm_small hwm_large rss_small rss_large n_small d_small n_large d_large b_small b_large \
  <<<"$(tr '|' ' ' <"$work/out.txt")"
gets=$(curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
growth=$((hwm_large - hwm_small))
echo "read-memory: peak $hwm_small kB after a scan of $n_small pages, $hwm_large kB after one of $n_large (growth $growth kB; RSS $rss_small -> $rss_large kB); $gets GETs"
rc=0
[ "$n_small" = "$READMEM_SMALL" ] && [ "$d_small" = "$READMEM_SMALL" ] ||
  { echo "  FAILED: the small scan read $n_small rows ($d_small distinct), expected $READMEM_SMALL"; rc=1; }
[ "$n_large" = "$READMEM_LARGE" ] && [ "$d_large" = "$READMEM_LARGE" ] ||
  { echo "  FAILED: the large scan read $n_large rows ($d_large distinct), expected $READMEM_LARGE"; rc=1; }
[ "$b_large" = $((READMEM_LARGE * 200)) ] || { echo "  FAILED: $b_large body bytes, expected $((READMEM_LARGE * 200))"; rc=1; }
if [ "$growth" -ge "$READMEM_MAX_GROWTH_KB" ]; then
  echo "  FAILED: peak memory grew by $growth kB (limit $READMEM_MAX_GROWTH_KB kB)"
  rc=1
fi
[ $rc = 0 ] && echo "read-memory passed"
exit $rc
