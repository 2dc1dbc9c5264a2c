#!/usr/bin/env bash
# Pacing against a points quota: the same rows with Confluence's rate-limit
# headers and without.
#
#   bash bench/ratelimit.sh [ROWS] [LIMIT] [WINDOW_S]     (default 2000 450 15)
#
# The local stand-in enforces a quota of LIMIT requests per WINDOW_S
# seconds (test/standin.py, POST /_standin/quota), answering at once; a
# request over the quota is answered 429 with Retry-After (the seconds to
# the window's end) and costs nothing.  With the headers on it sends
# X-RateLimit-Limit/-Remaining/-Reset, X-RateLimit-NearLimit (true from 20 %
# left), RateLimit-Reason and the Beta-RateLimit pair on every answer; with
# them off only the 429's Retry-After.  Each run, on one server
# (max_concurrency 8; max_retries 10 and max_retry_wait_ms 120000, so
# that the run without headers gets through rather than failing a row):
#   immediate  INSERT ... SELECT of ROWS pages, pipelined
#   queue      the same INSERT into a delivery 'queue' table, COMMIT, then
#              confluence_fdw.flush(): from COMMIT until every row is done
# Prints for each the time, the 429s the stand-in answered, the time the
# quota allows (the first request of the window the last row needs, from
# the start of the run: no client can finish earlier) and the ratio of the
# two.  Writes bench/results/ratelimit.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh

export RB_ROWS=${1:-2000} RB_LIMIT=${2:-450} RB_WINDOW=${3:-15}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-rbench.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export RB_WORK=$work
mkdir -p bench/results

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '8', max_retries '10',
           max_retry_wait_ms '120000');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA i;
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO i;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
SQL
quota() {  # quota HEADERS: a fresh stand-in with the quota, windows from now
  curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/reset" >/dev/null
  # the previous run's window must be over, or its state paces this one
  sleep "$RB_WINDOW"
  curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/quota" \
    -d "{\"limit\": $RB_LIMIT, \"window_s\": $RB_WINDOW, \"headers\": $1}" >/dev/null
}
result() {  # result RUN T0 T1
  local q
  q=$(curl -fsS --max-time 10 "$STANDIN_URL/_standin/quota")
  local pages
  pages=$(curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"])')
  python3 -c '
import json, sys
q = json.loads(sys.argv[1])
print(sys.argv[2], sys.argv[3], sys.argv[4], q["start"], q["refused"], sys.argv[5])' \
    "$q" "$1" "$2" "$3" "$pages" >>"$RB_WORK/runs"
}
for headers in true false; do
  quota $headers
  t0=$(now)
  psql_q -c "INSERT INTO i.pages (space_id, title, body)
             SELECT '98306', 'imm ' || g, '<p>' || g || '</p>' FROM generate_series(1, $RB_ROWS) g" \
    >/dev/null 2>"$RB_WORK/immediate-$headers.err" || true
  result "immediate-$headers" "$t0" "$(now)"

  quota $headers
  psql_q -c "TRUNCATE confluence_fdw.queue"
  psql_q -c "INSERT INTO q.pages (space_id, title, body)
             SELECT '98306', 'queue ' || g, '<p>' || g || '</p>' FROM generate_series(1, $RB_ROWS) g"
  t0=$(now)
  left=$(psql_q -c "SELECT confluence_fdw.flush(600000)")
  result "queue-$headers" "$t0" "$(now)"
  [ "$left" = 0 ] || echo "queue-$headers: $left rows still waiting" >>"$RB_WORK/notes"
done
psql_q -c "SELECT site, rate_limit, paced, recent_429s FROM confluence_fdw.rate_limits" >"$RB_WORK/view"
INSIDE

CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

python3 - "$work/runs" "$RB_ROWS" "$RB_LIMIT" "$RB_WINDOW" <<'PY' | tee bench/results/ratelimit.txt
import math, sys
rows, limit, window = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
runs = {}
for line in open(sys.argv[1]):
    name, t0, t1, start, refused, pages = line.split()
    t0, t1, start = float(t0), float(t1), float(start)
    # the last row needs window number (rows - 1) // limit, counted from the
    # window the run starts in; no client can send it before that opens
    first = int((t0 - start) // window)
    opens = start + (first + (rows - 1) // limit) * window
    runs[name] = (t1 - t0, max(opens - t0, 0.001), int(refused), int(pages))
print(f"rate-limit benchmark: {rows} pages, quota {limit} requests per {window} s window "
      f"(NearLimit from 20 % left), 8 in flight, stand-in answering at once")
for mode, label in (("immediate", "immediate pipeline (INSERT)"), ("queue", "queue (COMMIT to flush)")):
    for headers, how in (("true", "paced (headers on)"), ("false", "not paced (headers off)")):
        took, allowed, refused, pages = runs[f"{mode}-{headers}"]
        print(f"  {label:28s} {how:24s} {took:7.1f} s  429s {refused:5d}  pages {pages:5d}"
              f"  quota allows {allowed:6.1f} s  ratio {took / allowed:5.2f}")
    paced, unpaced = runs[f"{mode}-true"], runs[f"{mode}-false"]
    print(f"    {mode}: paced / not paced time = {paced[0] / unpaced[0]:.2f}")
PY
cat "$work/view"
[ ! -s "$work/notes" ] || cat "$work/notes"
for f in "$work"/*.err; do [ ! -s "$f" ] || { echo "$(basename "$f"):"; cat "$f"; }; done
