#!/usr/bin/env bash
# Memory that stays bounded, measured as growth between a small and a large
# run in one throw-away cluster, against the local stand-in:
#
#   flush      peak memory of a backend whose flush() waits 2 s, then 20 s
#              (it looks every 50 ms: 40 looks, then 400)
#   worker     the worker's peak memory after delivering 16, then 256
#              upsert rows with 100 kB bodies (one batch each)
#   buffers    malloc'd bytes in use (mallinfo2, read with gdb) in a backend
#              after a pipelined INSERT of 64 rows whose answers are 1 MB
#              each, 64 at once, then after one of small answers
#
#   bash bench/bounded-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source test/lib.sh

cfdw_build_and_install
command -v gdb >/dev/null || apt-get install -y -qq gdb >/dev/null

work=$(mktemp -d /tmp/cfdw-bench.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export BENCH_WORK=$work

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
kb() {  # kb PID FIELD: a /proc status field of a process, in kB
  sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"
}
q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '64');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO public;
CREATE FOREIGN TABLE q.pages (space_id text, title text, body text)
  SERVER s OPTIONS (endpoint 'pages', delivery 'queue');
CREATE FOREIGN TABLE q.reports (space_id text, title text, body text)
  SERVER s OPTIONS (endpoint 'pages', delivery 'queue', on_conflict 'update');
SQL

# flush(): its own uncommitted row keeps it waiting for the whole timeout
for ms in 2000 20000; do
  q -c "BEGIN" -c "INSERT INTO q.pages (space_id, title) VALUES ('98306', 'never')" \
    -c "SELECT pg_backend_pid()" -c "SELECT confluence_fdw.flush($ms)" \
    -c "SELECT (regexp_match(pg_read_file('/proc/' || pg_backend_pid() || '/status'), 'VmHWM:\s+(\d+) kB'))[1]" \
    -c "ROLLBACK" | tail -1 >"$BENCH_WORK/flush_$ms.kb"
done

# the worker: upserts with 100 kB bodies, in one batch each
worker=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker'")
for n in 16 256; do
  q -c "INSERT INTO q.reports (space_id, title, body)
        SELECT '98306', 'report $n ' || g, '<p>' || repeat('x', 100000) || '</p>' FROM generate_series(1, $n) g"
  q -c "SELECT confluence_fdw.flush(120000)" >/dev/null
  kb "$worker" VmHWM >"$BENCH_WORK/worker_$n.kb"
done

# response buffers: 64 answers of 1 MB in flight at once, then small ones;
# the session waits while gdb reads its malloc statistics
mallinfo() { gdb -p "$1" -batch -ex 'p mallinfo2().uordblks' 2>/dev/null | sed -n 's/^\$1 = //p'; }
until_file() { for _ in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }
W=$BENCH_WORK
(
  echo "SELECT pg_backend_pid();"
  echo "INSERT INTO pages (space_id, title, body)
          SELECT '98306', 'big ' || g, '<p>' || repeat('y', 1000000) || '</p>' FROM generate_series(1, 64) g;"
  echo "\\! touch $W/big.done"
  until_file "$W/big.measured"
  echo "INSERT INTO pages (space_id, title) SELECT '98306', 'small ' || g FROM generate_series(1, 64) g;"
  echo "\\! touch $W/small.done"
  until_file "$W/small.measured"
) | q >"$W/buffers.out" &
until_file "$W/big.done"
mallinfo "$(head -1 "$W/buffers.out")" >"$W/buffers_big.bytes"
touch "$W/big.measured"
until_file "$W/small.done"
mallinfo "$(head -1 "$W/buffers.out")" >"$W/buffers_small.bytes"
touch "$W/small.measured"
wait
INSIDE

CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

f2=$(cat "$work/flush_2000.kb") f20=$(cat "$work/flush_20000.kb")
w16=$(cat "$work/worker_16.kb") w256=$(cat "$work/worker_256.kb")
bb=$(cat "$work/buffers_big.bytes") bs=$(cat "$work/buffers_small.bytes")
echo "flush():  peak ${f2} kB after waiting 2 s, ${f20} kB after 20 s: growth $((f20 - f2)) kB"
echo "worker:   peak ${w16} kB after 16 upserts of 100 kB, ${w256} kB after 256: growth $((w256 - w16)) kB"
echo "buffers:  malloc in use $((bb / 1024)) kB after 64 answers of 1 MB at once, $((bs / 1024)) kB after small answers"
