#!/usr/bin/env bash
# Throughput of delivery 'queue' against the immediate pipeline and curl.
#
#   bash bench/queue.sh [ROWS]        (default 2000)
#
# Against the local stand-in answering each POST /wiki/api/v2/pages after
# 20 ms, with 16 requests in flight, in one run on this machine:
#   immediate  INSERT ... SELECT of ROWS pages, pipelined (max_concurrency 16)
#   queue      the same INSERT into a delivery 'queue' table, COMMIT, then
#              confluence_fdw.flush(): from COMMIT until every row is done
#   curl       the same ROWS requests by curl --parallel --parallel-max 16
# Prints rows/s of each, the ratios, and whether the queue holds its target
# (at least 0.9 x the immediate pipeline).  Then the cost of enqueueing
# 10,000 rows against a local INSERT of the same rows, and the worker's
# memory after 10,000, 100,000 and 190,000 delivered rows (stand-in
# answering at once): caches settle in the first 100,000, then it is flat.  Writes bench/results/queue.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh

export QB_ROWS=${1:-2000}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-qbench.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export QB_WORK=$work
mkdir -p bench/results

slow() {
  curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/reset" >/dev/null
  curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" \
    -d '{"kind": "delay", "delay_ms": 20, "method": "POST", "times": -1}' >/dev/null
}
export -f slow

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '16');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA i;
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO i;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
SQL
slow
t0=$(ms)
psql_q -c "INSERT INTO i.pages (space_id, title, body)
           SELECT '98306', 'imm ' || g, '<p>' || g || '</p>' FROM generate_series(1, $QB_ROWS) g"
t1=$(ms)
echo "immediate $((t1 - t0))" >>"$QB_WORK/times"
slow
psql_q -c "INSERT INTO q.pages (space_id, title, body)
           SELECT '98306', 'queue ' || g, '<p>' || g || '</p>' FROM generate_series(1, $QB_ROWS) g"
t0=$(ms)
left=$(psql_q -c "SELECT confluence_fdw.flush(300000)")
t1=$(ms)
echo "queue $((t1 - t0))" >>"$QB_WORK/times"
[ "$left" = 0 ] || { echo "queue: $left rows not sent"; exit 1; }
done=$(psql_q -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done'")
[ "$done" = "$QB_ROWS" ] || { echo "queue: $done of $QB_ROWS rows done"; exit 1; }

# Enqueueing: 10,000 rows into the queue table against the same rows into
# a local table with the same columns (no network in either; the worker's
# sending after COMMIT is not timed).
curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/reset" >/dev/null
psql_q -c "CREATE TABLE local_pages (space_id text, title text, body text)"
for what in local q.pages; do
  [ $what = local ] && target=local_pages || target=$what
  t0=$(ms)
  psql_q -c "INSERT INTO $target (space_id, title, body)
             SELECT '98306', 'enq ' || g, '<p>' || g || '</p>' FROM generate_series(1, 10000) g"
  t1=$(ms)
  echo "enqueue-$what $((t1 - t0))" >>"$QB_WORK/times"
done
psql_q -c "SELECT confluence_fdw.flush(300000)" >/dev/null

# The worker's memory: its private anonymous memory (palloc and malloc; not
# shared buffers) after 10,000, 100,000 and 190,000 rows, against a
# stand-in answering at once.  Growth per row should be about nothing.
worker=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker'")
anon() { awk '/^Anonymous:/ { print $2 }' "/proc/$worker/smaps_rollup"; }
deliver() {
  psql_q -c "INSERT INTO q.pages (space_id, title, body)
             SELECT '98306', 'mem $1 ' || g, '<p>' || g || '</p>' FROM generate_series(1, $2) g"
  [ "$(psql_q -c "SELECT confluence_fdw.flush(600000)")" = 0 ] || { echo "queue: rows left"; exit 1; }
}
deliver a 10000
echo "anon-small $(anon)" >>"$QB_WORK/times"
deliver b 90000
echo "anon-large $(anon)" >>"$QB_WORK/times"
deliver c 90000
echo "anon-larger $(anon)" >>"$QB_WORK/times"
INSIDE

CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

# curl: the same requests, 16 at a time
slow
auth=$(printf '%s:%s' "$CFDW_USER" "$CFDW_TOKEN" | base64 -w0)
python3 - "$work/curl.cfg" "$STANDIN_URL" "$auth" "$QB_ROWS" <<'PY'
import json, sys
path, url, auth, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with open(path, "w") as f:
    for g in range(1, n + 1):
        if g > 1:
            f.write("next\n")
        body = json.dumps({"spaceId": "98306", "title": f"curl {g}", "status": "current",
                           "body": {"representation": "storage", "value": f"<p>{g}</p>"}})
        f.write(f'url = "{url}/wiki/api/v2/pages"\nrequest = "POST"\n'
                f'header = "Authorization: Basic {auth}"\nheader = "Content-Type: application/json"\n'
                f"data = {json.dumps(body)}\nheader = \"Expect:\"\noutput = /dev/null\n")
PY
t0=$(date +%s%N)
curl -sS --no-progress-meter --parallel --parallel-max 16 -K "$work/curl.cfg"
t1=$(date +%s%N)
echo "curl $(( (t1 - t0) / 1000000 ))" >>"$work/times"
created=$(curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"])')
[ "$created" = "$QB_ROWS" ] || { echo "curl created $created of $QB_ROWS pages"; exit 1; }

python3 - "$work/times" "$QB_ROWS" <<'PY' | tee bench/results/queue.txt
import sys
t = dict(l.split() for l in open(sys.argv[1]))
n = int(sys.argv[2])
rate = {k: n / (int(v) / 1000.0) for k, v in t.items()}
print(f"delivery 'queue' benchmark: {n} pages, stand-in answering after 20 ms, 16 in flight")
for k, label in (("immediate", "immediate pipeline (INSERT)"), ("queue", "queue (COMMIT to flush)"),
                 ("curl", "curl --parallel-max 16")):
    print(f"  {label:32s} {int(t[k]):6d} ms  {rate[k]:7.0f} rows/s")
q_i, q_c = rate["queue"] / rate["immediate"], rate["queue"] / rate["curl"]
print(f"  queue / immediate = {q_i:.2f}   queue / curl = {q_c:.2f}   immediate / curl = {rate['immediate'] / rate['curl']:.2f}")
print(f"  target queue >= 0.9 x immediate: {'holds' if q_i >= 0.9 else 'MISSED'}")
el, eq = int(t["enqueue-local"]), int(t["enqueue-q.pages"])
print(f"enqueue 10,000 rows: local table {el} ms, delivery 'queue' table {eq} ms"
      f" ({10000 / (eq / 1000.0):.0f} rows/s, {eq / max(el, 1):.1f} x a local INSERT)")
small, large, larger = int(t["anon-small"]), int(t["anon-large"]), int(t["anon-larger"])
print(f"worker private memory: {small} kB after 10,000 rows, {large} kB after 100,000, {larger} kB after 190,000")
print(f"  growth 10,000 to 100,000: {large - small} kB ({(large - small) * 1024 / 90000:.1f} bytes per row);"
      f" 100,000 to 190,000: {larger - large} kB ({(larger - large) * 1024 / 90000:.1f} bytes per row)")
PY
