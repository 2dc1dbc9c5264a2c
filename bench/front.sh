#!/usr/bin/env bash
# Benchmark of confluence_fdw against a site shaped like a real one: a host
# name over TLS, HTTP/2 and HTTP/1.1 (test/front.sh's namespace, names and
# test CA), served by nginx with its echo module, side by side with the curl
# command line tool sending the same requests in the same run.
#
#   bash bench/front.sh          (bench/run.sh runs it too)
#
# Rows (medians of BENCH_RUNS runs, interleaved):
#   first     the first INSERT ... RETURNING of a new session (resolve,
#             connect, TLS, request, answer), timed inside the backend,
#             against one curl process doing one request (its figure
#             includes its own start); target: FDW <= 1.5 x curl
#   h2-16     BENCH_FRONT_ROWS rows without RETURNING at max_concurrency 16
#             over HTTP/2 to a site answering after BENCH_SLOW_MS ms, against
#             curl --parallel --parallel-max 16; target: FDW >= 0.9 x curl
#   h1-16     the same over HTTP/1.1 (TLS)
#   seq       BENCH_FRONT_SEQ_ROWS rows with RETURNING, one at a time over
#             HTTP/2, against curl sending them one after the other over one
#             connection
# Needs root (unshare -m).  Knobs: BENCH_RUNS (3), BENCH_FRONT_ROWS (2000),
# BENCH_FRONT_SEQ_ROWS (200), BENCH_SLOW_MS (20), BENCH_SKIP_INSTALL=1.
# Writes the table to bench/results/front.txt too.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../test/lib.sh
source test/lib.sh
# shellcheck source-path=SCRIPTDIR source=../test/front.sh
source test/front.sh

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_FRONT_ROWS=${BENCH_FRONT_ROWS:-2000}
BENCH_FRONT_SEQ_ROWS=${BENCH_FRONT_SEQ_ROWS:-200}
BENCH_SLOW_MS=${BENCH_SLOW_MS:-20}
for v in BENCH_RUNS BENCH_FRONT_ROWS BENCH_FRONT_SEQ_ROWS BENCH_SLOW_MS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || cfdw_die "$v must be a positive integer, not '${!v}'"
done
export BENCH_RUNS BENCH_FRONT_ROWS BENCH_FRONT_SEQ_ROWS BENCH_SLOW_MS
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so

if [ "${CFDW_FRONT_NS:-0}" != 1 ]; then
  if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
    cfdw_build_and_install
    if [ ! -f "$ECHO_MODULE" ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libnginx-mod-http-echo
    fi
  fi
  front_dir=$(mktemp -d /tmp/cfdw-bench-front.XXXXXX)
  cfdw_front_make_ca "$front_dir"
  cfdw_front_enter bash bench/front.sh "$@"
fi

WORK=$CFDW_FRONT_DIR
trap 'cfdw_stop_pid "${NGINX_PID:-}" nginx; rm -rf "$WORK"' EXIT
cfdw_gen_credentials

# The answer of POST /wiki/api/v2/pages: a ~1 KB PageSingle, as bench/run.sh's.
json='{"spaceId":"98306","status":"current","title":"title 1","id":"1234567","version":{"number":1,"createdAt":"2024-05-14T09:12:31.845Z"},"body":{"storage":{"representation":"storage","value":"<p>body 1</p><p>Published by the nightly warehouse job from table release_notes; see the linked ticket for the full change list.</p>"}},"_links":{"webui":"/spaces/BENCH/pages/1234567/title+1","base":"https://bench.atlassian.net/wiki"}}'
delay=$(awk -v ms="$BENCH_SLOW_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
H2_PORT=$(cfdw_free_port) H1_PORT=$(cfdw_free_port)
server_block() {  # PORT HTTP2(on|off)
  local h2=''
  [ "$2" = on ] && h2=' http2'
  cat <<EOF
  server {
    listen 127.0.0.1:$1 ssl$h2;
    listen [::1]:$1 ssl$h2;
    ssl_certificate $WORK/site.pem;
    ssl_certificate_key $WORK/site-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /wiki/api/v2/pages { echo_read_request_body; echo_sleep $delay; echo -n '$json'; }
    location = /fast/wiki/api/v2/pages { echo_read_request_body; echo -n '$json'; }
  }
EOF
}
mkdir -p "$WORK/nginx-tmp"
{
  cat <<EOF
load_module $ECHO_MODULE;
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  default_type application/json;
  client_body_temp_path $WORK/nginx-tmp/body;
  proxy_temp_path $WORK/nginx-tmp/proxy;
  fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
  scgi_temp_path $WORK/nginx-tmp/scgi;
EOF
  server_block "$H2_PORT" on
  server_block "$H1_PORT" off
  echo "}"
} >"$WORK/nginx.conf"
nginx -p "$WORK" -c "$WORK/nginx.conf" </dev/null >>"$WORK/nginx-error.log" 2>&1 &
NGINX_PID=$!
H2_URL="https://dual.confluence.test:$H2_PORT" H1_URL="https://confluence.test:$H1_PORT"
for ((i = 0; i < 50; i++)); do
  curl -fsS -o /dev/null --max-time 1 -d '{}' "$H2_URL/fast/wiki/api/v2/pages" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null --max-time 2 -d '{}' "$H2_URL/fast/wiki/api/v2/pages" || cfdw_die "nginx did not start"
export H2_URL H1_URL WORK

# curl_config FILE URL FIRST N: N transfers of the FDW's request for rows
# FIRST.. (same URL, headers and body); "next" separates transfers.
curl_config() {
  local ua
  ua=$(printf 'confluence_fdw/%s' "$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" confluence_fdw.control)")
  ( umask 077
    awk -v url="$2" -v first="$3" -v n="$4" -v ua="$ua" -v cred="$CFDW_USER:$CFDW_TOKEN" 'BEGIN {
      for (g = first; g < first + n; g++) {
        if (g > first) print "next"
        printf "url = \"%s/wiki/api/v2/pages\"\n", url
        printf "data-binary = \"{\\\"spaceId\\\":\\\"98306\\\",\\\"title\\\":\\\"title %d\\\",\\\"body\\\":{\\\"value\\\":\\\"<p>body %d</p>\\\",\\\"representation\\\":\\\"storage\\\"}}\"\n", g, g
        print "header = \"Content-Type: application/json\""
        print "header = \"Accept: application/json\""
        print "header = \"Expect:\""
        printf "user-agent = \"%s\"\n", ua
        printf "user = \"%s\"\n", cred
        print "silent"
        print "output = \"/dev/null\""
        print "write-out = \"%{http_code}\\n\""
      }
    }' >"$1" )
}

# curl_time CFG [ARGS...]: wall seconds of one curl process; every answer 200
curl_time() {
  local cfg=$1 t0 t1 n
  shift
  t0=$(date +%s.%N)
  curl --no-progress-meter "$@" -K "$cfg" >"$WORK/curl.out" || cfdw_die "curl failed"
  t1=$(date +%s.%N)
  n=$(grep -c . "$WORK/curl.out")
  [ "$(grep -c '^200$' "$WORK/curl.out")" = "$n" ] || cfdw_die "curl: not every answer was 200"
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}

cat >"$WORK/bench.sh" <<'INNER'
set -euo pipefail
source "$CFDW_ROOT/test/lib.sh"
psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER h2 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url '$H2_URL');
CREATE SERVER h1 FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url '$H1_URL');
CREATE SERVER h2fast FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url '$H2_URL/fast');
CREATE USER MAPPING FOR CURRENT_USER SERVER h2 OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE USER MAPPING FOR CURRENT_USER SERVER h1 OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE USER MAPPING FOR CURRENT_USER SERVER h2fast OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA h2; CREATE SCHEMA h1; CREATE SCHEMA h2fast;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER h2 INTO h2;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER h1 INTO h1;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER h2fast INTO h2fast;
ALTER FOREIGN TABLE h2.pages OPTIONS (ADD max_concurrency '16');
ALTER FOREIGN TABLE h1.pages OPTIONS (ADD max_concurrency '16');
-- seconds an INSERT of rows first.. takes, with or without RETURNING
CREATE FUNCTION ins(tbl regclass, first int, n int, ret boolean) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE
  t0 timestamptz := clock_timestamp();
  got bigint;
BEGIN
  IF ret THEN
    EXECUTE format('WITH s AS (INSERT INTO %s (space_id, title, body) SELECT ''98306'', ''title '' || g, ''<p>body '' || g || ''</p>''
                    FROM generate_series(%s, %s) g RETURNING id) SELECT count(*) FROM s WHERE id = ''1234567''',
                   tbl, first, first + n - 1) INTO got;
  ELSE
    EXECUTE format('INSERT INTO %s (space_id, title, body) SELECT ''98306'', ''title '' || g, ''<p>body '' || g || ''</p>''
                    FROM generate_series(%s, %s) g', tbl, first, first + n - 1);
    GET DIAGNOSTICS got = ROW_COUNT;
  END IF;
  IF got <> n THEN RAISE EXCEPTION 'expected % rows, got %', n, got; END IF;
  RETURN extract(epoch FROM clock_timestamp() - t0);
END \$\$;
SQL
fdw() { psql_q -c "SELECT ins($1)"; }
for ((run = 1; run <= BENCH_RUNS; run++)); do
  # first request of a new session: a fresh backend, nothing pooled
  echo "first fdw $(fdw "'h2fast.pages', 1, 1, true")"
  echo "first curl $(curl_time "$WORK/first.curl")"
  for p in h2 h1; do
    url=$H2_URL; [ $p = h1 ] && url=$H1_URL
    # warm-up in the same session, as a job that sends many statements would be
    echo "$p-16 fdw $(psql_q -c "SELECT ins('$p.pages', 1, 64, false)" -c "SELECT ins('$p.pages', 1, $BENCH_FRONT_ROWS, false)" | tail -1)"
    echo "$p-16 curl $(curl_time "$WORK/$p-par.curl" --parallel --parallel-max 16)"
  done
  echo "seq fdw $(psql_q -c "SELECT ins('h2.pages', 1, 5, true)" -c "SELECT ins('h2.pages', 1, $BENCH_FRONT_SEQ_ROWS, true)" | tail -1)"
  echo "seq curl $(curl_time "$WORK/seq.curl")"
done
INNER
export -f curl_time cfdw_die cfdw_log
export CFDW_ROOT CFDW_USER CFDW_TOKEN
curl_config "$WORK/first.curl" "$H2_URL/fast" 1 1
curl_config "$WORK/h2-par.curl" "$H2_URL" 1 "$BENCH_FRONT_ROWS"
curl_config "$WORK/h1-par.curl" "$H1_URL" 1 "$BENCH_FRONT_ROWS"
curl_config "$WORK/seq.curl" "$H2_URL" 1 "$BENCH_FRONT_SEQ_ROWS"
chmod 755 "$WORK"
chmod 644 "$WORK/bench.sh"
cfdw_log "front benchmark: nginx TLS at $H2_URL (HTTP/2) and $H1_URL (HTTP/1.1), ${BENCH_SLOW_MS} ms answers"
CFDW_PGVE_PLAIN=1 cfdw_pg_virtualenv bash "$WORK/bench.sh" >"$WORK/raw.txt"

mkdir -p bench/results
python3 - "$WORK/raw.txt" <<'PY' | tee bench/results/front.txt
import os, statistics, sys
env = os.environ
f = {}
for line in open(sys.argv[1]):
    parts = line.split()
    # pg_virtualenv prints lines of its own
    if len(parts) != 3 or parts[1] not in ("fdw", "curl"):
        continue
    row, who, secs = parts
    f.setdefault((row, who), []).append(float(secs))
med = {k: statistics.median(v) for k, v in f.items()}
n, nseq, ms = int(env["BENCH_FRONT_ROWS"]), int(env["BENCH_FRONT_SEQ_ROWS"]), env["BENCH_SLOW_MS"]
print(f"confluence_fdw through a TLS front (nginx, host name, test CA), {env['BENCH_RUNS']} runs, medians")
print(f"{'what':58} {'FDW':>10} {'curl':>10} {'FDW/curl':>9}  target")
ok = True
def row(label, key, rows, unit, target, better):
    global ok
    a, b = med[(key, "fdw")], med[(key, "curl")]
    if unit == "ms":
        fa, fb, ratio = f"{a*1000:.1f} ms", f"{b*1000:.1f} ms", a / b
    else:
        fa, fb, ratio = f"{rows/a:.0f} r/s", f"{rows/b:.0f} r/s", b / a
    met = "" if target is None else (("met" if (ratio <= target if better == "low" else ratio >= target) else "MISSED")
                                     + f" ({'<=' if better == 'low' else '>='} {target})")
    if met.startswith("MISSED"):
        ok = False
    print(f"{label:58} {fa:>10} {fb:>10} {ratio:9.2f}  {met}")
row("first request of a session (time; curl incl. process start)", "first", 1, "ms", 1.5, "low")
row(f"{n} rows, max_concurrency 16, HTTP/2, {ms} ms site (rows/s)", "h2-16", n, "r/s", 0.9, "high")
row(f"{n} rows, max_concurrency 16, HTTP/1.1 TLS, {ms} ms site", "h1-16", n, "r/s", None, "high")
row(f"{nseq} rows one at a time, RETURNING, HTTP/2, {ms} ms site", "seq", nseq, "r/s", None, "high")
print("targets: " + ("all met" if ok else "NOT all met"))
PY
