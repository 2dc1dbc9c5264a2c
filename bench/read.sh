#!/usr/bin/env bash
# Reading: a SELECT of every page against curl following the same cursor
# links, and a pushed id lookup against a full scan.
#
#   bash bench/read.sh [PAGES]        (default 10000)
#
# The local stand-in holds PAGES pages with a 200-byte body each (seeded
# through its control API) and answers GET /wiki/api/v2/pages 250 at a
# time with a Link header to the next page.  In one run on this machine,
# each timed BENCH_RUNS (3) times, interleaved, median taken:
#   fdw       SELECT count(*), count(title), sum(length(body)) FROM pages:
#             every page read, with its body (body-format=storage)
#   curl      the same GETs by the curl command line tool, one after the
#             other, each next URL taken from the Link header of the answer
#             before (a shell loop, as a script would do it)
#   curl1     the URLs curl followed, known in advance, by one curl process
#             over one kept-alive connection: a lower bound for any client
#   id        SELECT ... WHERE id = '<one id>' (pushed: one GET ?id=)
#   scan      SELECT ... WHERE id || '' = '<the same id>' (not pushed: every
#             page read and filtered locally)
# Prints rows/s of fdw and curl and their ratio (target at least 0.9), and
# the lookup against the scan.  Writes bench/results/read.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh

export RB_PAGES=${1:-10000} RB_RUNS=${BENCH_RUNS:-3}
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

curl -fsS --max-time 120 -X POST "$STANDIN_URL/_standin/seed" \
  -d "{\"collection\": \"pages\", \"count\": $RB_PAGES, \"spaceId\": \"98306\", \"title_prefix\": \"Bench \", \"body\": \"<p>$(printf 'x%.0s' $(seq 1 193))</p>\"}" \
  >"$work/seed.json"
RB_ID=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(d["first_id"]) + int(sys.argv[2]) // 2)' "$work/seed.json" "$RB_PAGES")
export RB_ID

# curl: follow the Link header's next URL until there is none.
curl_scan() {
  local url="$STANDIN_URL/wiki/api/v2/pages?body-format=storage&limit=250" next n=0
  local auth
  auth=$(printf '%s:%s' "$CFDW_USER" "$CFDW_TOKEN" | base64 -w0)
  : >"$RB_WORK/urls"
  while [ -n "$url" ]; do
    echo "$url" >>"$RB_WORK/urls"
    next=$(curl -sS --fail -H "Authorization: Basic $auth" -H 'Accept: application/json' \
             -D - -o "$RB_WORK/page.json" "$url" |
           sed -n 's/^[Ll]ink: *<\([^>]*\)>; *rel="next".*/\1/p' | tr -d '\r')
    n=$((n + $(grep -o '"spaceId":"98306"' "$RB_WORK/page.json" | wc -l)))
    url=${next:+$STANDIN_URL$next}
  done
  echo "$n"
}
export -f curl_scan

# curl at its best: the URLs curl_scan followed, known in advance, fetched by
# one curl process over one kept-alive connection (a lower bound for any
# client that must read each page before it knows the next).
curl_known() {
  local auth
  auth=$(printf '%s:%s' "$CFDW_USER" "$CFDW_TOKEN" | base64 -w0)
  {
    echo "header = \"Authorization: Basic $auth\""
    echo 'header = "Accept: application/json"'
    while read -r u; do echo "url = \"$u\""; echo "output = /dev/null"; done <"$RB_WORK/urls"
  } >"$RB_WORK/known.cfg"
  curl -sS --fail -K "$RB_WORK/known.cfg"
}
export -f curl_known

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url '$STANDIN_URL');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO public;
SQL
psql_q -c "SELECT count(*) FROM pages WHERE id = '$RB_ID'" >/dev/null   # warm-up
for run in $(seq 1 "$RB_RUNS"); do
  t0=$(ms)
  got=$(psql_q -c "SELECT count(*) || ' ' || count(title) || ' ' || sum(length(body)) FROM pages")
  t1=$(ms)
  [ "$got" = "$RB_PAGES $RB_PAGES $((RB_PAGES * 200))" ] || { echo "fdw read: $got"; exit 1; }
  echo "fdw $((t1 - t0))" >>"$RB_WORK/times"
  t0=$(ms)
  got=$(curl_scan)
  t1=$(ms)
  [ "$got" = "$RB_PAGES" ] || { echo "curl read $got pages"; exit 1; }
  echo "curl $((t1 - t0))" >>"$RB_WORK/times"
  t0=$(ms)
  curl_known
  t1=$(ms)
  echo "curl1 $((t1 - t0))" >>"$RB_WORK/times"
  t0=$(ms)
  got=$(psql_q -c "SELECT title FROM pages WHERE id = '$RB_ID'")
  t1=$(ms)
  [ -n "$got" ] || { echo "id lookup found nothing"; exit 1; }
  echo "id $((t1 - t0))" >>"$RB_WORK/times"
  t0=$(ms)
  got2=$(psql_q -c "SELECT title FROM pages WHERE id || '' = '$RB_ID'")
  t1=$(ms)
  [ "$got2" = "$got" ] || { echo "scan found $got2, lookup $got"; exit 1; }
  echo "scan $((t1 - t0))" >>"$RB_WORK/times"
done
INSIDE

CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

python3 - "$work/times" "$RB_PAGES" <<'PY' | tee bench/results/read.txt
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    t.setdefault(k, []).append(int(v))
n = int(sys.argv[2])
med = {k: statistics.median(v) for k, v in t.items()}
print(f"read benchmark: {n} pages with 200-byte bodies, 250 per GET, median of {len(t['fdw'])} runs")
for k, label in (("fdw", "SELECT of every page (FDW)"), ("curl", "curl following Link headers"),
                 ("curl1", "curl, same URLs, one connection")):
    print(f"  {label:32s} {med[k]:8.0f} ms  {n / (med[k] / 1000.0):8.0f} rows/s")
ratio = med["curl"] / med["fdw"]
print(f"  fdw / curl (rows/s) = {ratio:.2f}   target at least 0.9: {'holds' if ratio >= 0.9 else 'MISSED'}")
print(f"  fdw / curl with the URLs known in advance over one connection = {med['curl1'] / med['fdw']:.2f}")
print(f"  pushed id = lookup {med['id']:.0f} ms, full scan with the same filter applied locally {med['scan']:.0f} ms"
      f" ({med['scan'] / max(med['id'], 1):.0f} x)")
PY
