#!/usr/bin/env bash
# Throughput and memory benchmark of confluence_fdw against a local nginx.
#
#   bash bench/run.sh
#
# On a fresh Debian 12 machine: installs what is missing (PostgreSQL 15 and the
# build dependencies through test/install-deps.sh, nginx with its echo module
# from Debian), builds and installs the extension, starts nginx on free
# loopback ports with its own configuration in a temporary folder, and runs a
# throw-away PostgreSQL cluster.  nginx serves two "Confluence" sites that
# answer POST /wiki/api/v2/pages with a fixed ~1 KB PageSingle JSON:
#
#   FAST  answers at once
#   SLOW  answers after 20 ms (echo_sleep, which does not block the worker)
#
# For each site it times INSERT INTO pages ... SELECT ... FROM generate_series
# of N rows
#   - with RETURNING (one request at a time, one kept-alive connection),
#   - without RETURNING at max_concurrency 1, 4 and 16 (the pipeline),
# and the same N requests (same method, URL, headers and bodies, checked on a
# probe site) sent by the curl command line tool: sequentially over one
# kept-alive connection, and with --parallel --parallel-max 4 and 16.  Every
# figure is the median of BENCH_RUNS runs; the runs are interleaved, so load
# from other processes spreads over all modes alike.  nginx's stub_status
# counters check that each run sent exactly N requests and count the TCP
# connections it opened.
#
# Then the backend's memory (VmRSS, VmHWM) after 10,000 and 100,000 rows,
# without RETURNING at max_concurrency 16 and with RETURNING, on FAST, and
# for comparison the same SELECT without the FDW (PostgreSQL's own share).
#
# Then bench/front.sh: the first request of a session, pipelined rows over
# HTTP/2 and HTTP/1.1 and one-at-a-time rows, through TLS by a host name,
# against curl (bench/results/front.txt).  Then bench/queue.sh: delivery
# 'queue' from COMMIT to done against the immediate pipeline and curl, the
# cost of enqueueing, and the worker's memory (bench/results/queue.txt).
# Then bench/read.sh: a SELECT of 10,000 pages against curl following the
# same cursor links, and a pushed id lookup against a full scan
# (bench/results/read.txt).  Then bench/content.sh: converting and checking
# a 100 kB Markdown document against sending it to the loopback stand-in
# with curl (bench/results/content.txt).
#
# Prints the throughput table (with a diagnostics part: CPU and run-queue
# time per row of the backend, curl and nginx), the memory table and
# whether the targets hold, and writes them to bench/results/latest.txt.
# Knobs:
#
#   BENCH_RUNS=3              runs per figure (median)
#   BENCH_FAST_ROWS=2000      rows per run on FAST
#   BENCH_SLOW_ROWS=2000      rows per run on SLOW at 4 or more in flight
#   BENCH_SLOW_SEQ_ROWS=500   rows per run on SLOW one at a time (~50 rows/s)
#   BENCH_MEM_ROWS="10000 100000"   row counts of the memory runs
#   BENCH_SLOW_MS=20          delay of SLOW, in milliseconds
#   BENCH_SKIP_INSTALL=1      skip apt-get and make install (already done)
#
# The whole command takes about 4 minutes on 2 cores with the defaults (plus
# the installs on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
CFDW_ROOT=$PWD
source test/lib.sh

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_FAST_ROWS=${BENCH_FAST_ROWS:-2000}
BENCH_SLOW_ROWS=${BENCH_SLOW_ROWS:-2000}
BENCH_SLOW_SEQ_ROWS=${BENCH_SLOW_SEQ_ROWS:-500}
BENCH_MEM_ROWS=${BENCH_MEM_ROWS:-10000 100000}
BENCH_SLOW_MS=${BENCH_SLOW_MS:-20}
export BENCH_RUNS BENCH_FAST_ROWS BENCH_SLOW_ROWS BENCH_SLOW_SEQ_ROWS BENCH_MEM_ROWS BENCH_SLOW_MS

for v in BENCH_RUNS BENCH_FAST_ROWS BENCH_SLOW_ROWS BENCH_SLOW_SEQ_ROWS BENCH_SLOW_MS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || cfdw_die "$v must be a positive integer, not '${!v}'"
done
for v in $BENCH_MEM_ROWS; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || cfdw_die "BENCH_MEM_ROWS must be positive integers, not '$BENCH_MEM_ROWS'"
done

NGINX_ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
# the concurrencies measured without RETURNING; 1 is the one-at-a-time path
CONCURRENCIES="1 4 16"

# ---------------------------------------------------------------------------
# install and build
# ---------------------------------------------------------------------------

install_deps() {
  local p missing=() sudo_cmd=() policy_added=0
  bash test/install-deps.sh
  for p in nginx-light libnginx-mod-http-echo; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    cfdw_log "installing: ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    # Debian's nginx package starts the system nginx (port 80) on install;
    # the benchmark runs its own, so keep the package from starting one.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
      "${sudo_cmd[@]}" chmod 755 /usr/sbin/policy-rc.d
      policy_added=1
    fi
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || {
      [ $policy_added = 0 ] || "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
      return 1
    }
    [ $policy_added = 0 ] || "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
  fi
  [ -f "$NGINX_ECHO_MODULE" ] || cfdw_die "nginx's echo module is not at $NGINX_ECHO_MODULE"
}

build_install() {
  local pgc sudo_cmd=()
  pgc=$(cfdw_pg_config)
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  make -s PG_CONFIG="$pgc" >/dev/null
  "${sudo_cmd[@]}" make -s PG_CONFIG="$pgc" install >/dev/null
}

# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

# A realistic answer to POST /wiki/api/v2/pages (PageSingle), ~1 KB.
page_json() {
  printf '%s' '{"parentType":"page","parentId":"65541","spaceId":"98306","ownerId":"5b10ac8d82e05b22cc7d4ef5","lastOwnerId":null,"createdAt":"2024-05-14T09:12:31.845Z","authorId":"5b10ac8d82e05b22cc7d4ef5","position":4321,"version":{"createdAt":"2024-05-14T09:12:31.845Z","message":"","number":1,"minorEdit":false,"authorId":"5b10ac8d82e05b22cc7d4ef5","ncsStepVersion":"1"},"body":{"storage":{"representation":"storage","value":"<p>body 1</p><p>Published by the nightly warehouse job from table release_notes; see the linked ticket for the full change list.</p>"}},"status":"current","title":"title 1","id":"1234567","labels":{"results":[],"meta":{"hasMore":false,"cursor":""},"_links":{"self":"https://bench.atlassian.net/wiki/api/v2/pages/1234567/labels"}},"_links":{"editui":"/pages/resumedraft.action?draftId=1234567","webui":"/spaces/BENCH/pages/1234567/title+1","edituiv2":"/spaces/BENCH/pages/edit-v2/1234567","tinyui":"/x/hwAS","base":"https://bench.atlassian.net/wiki"}}'
}

# Four free loopback ports (the kernel's choice, released right away; nginx
# start is retried when one was taken in the meantime).
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

write_nginx_conf() {
  local dir=$1 json delay
  json=$(page_json)
  delay=$(awk -v ms="$BENCH_SLOW_MS" 'BEGIN { printf "%.3f", ms / 1000 }')
  mkdir -p "$dir/nginx-tmp"
  cat >"$dir/nginx.conf" <<EOF
# confluence_fdw benchmark: generated by bench/run.sh, used once
load_module $NGINX_ECHO_MODULE;
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_buffer_size 64k;
  client_body_temp_path $dir/nginx-tmp/body;
  proxy_temp_path $dir/nginx-tmp/proxy;
  fastcgi_temp_path $dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $dir/nginx-tmp/uwsgi;
  scgi_temp_path $dir/nginx-tmp/scgi;
  default_type application/json;
  # FAST: answers at once
  server {
    listen 127.0.0.1:$FAST_PORT;
    location = /wiki/api/v2/pages { return 200 '$json'; }
  }
  # SLOW: answers after $BENCH_SLOW_MS ms (echo_sleep arms a timer, the worker goes on)
  server {
    listen 127.0.0.1:$SLOW_PORT;
    location = /wiki/api/v2/pages { echo_sleep $delay; echo -n '$json'; }
  }
  # PROBE: logs what a request carried, to compare the FDW's with curl's
  log_format probe '\$request_method \$scheme://\$host:\$server_port\$request_uri|ct=\$http_content_type|accept=\$http_accept|ua=\$http_user_agent|auth=\$http_authorization|expect=\$http_expect|te=\$http_transfer_encoding|len=\$content_length|body=\$request_body';
  server {
    listen 127.0.0.1:$PROBE_PORT;
    location = /wiki/api/v2/pages {
      access_log $dir/probe.log probe;
      echo_read_request_body;
      echo -n '$json';
    }
  }
  # STATUS: request and connection counters of the worker
  server {
    listen 127.0.0.1:$STATUS_PORT;
    location = /status { stub_status; }
  }
}
EOF
}

NGINX_PID=''
start_nginx() {
  local dir=$1 attempt i ports
  for attempt in 1 2 3; do
    ports=$(free_ports)
    read -r FAST_PORT SLOW_PORT PROBE_PORT STATUS_PORT <<<"$ports"
    write_nginx_conf "$dir"
    nginx -q -t -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf" >/dev/null 2>&1 ||
      { nginx -t -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf" || true; cfdw_die "nginx refuses its configuration"; }
    nginx -e "$dir/nginx-error.log" -p "$dir" -c "$dir/nginx.conf" </dev/null >>"$dir/nginx-error.log" 2>&1 &
    NGINX_PID=$!
    for ((i = 0; i < 50; i++)); do
      curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$STATUS_PORT/status" 2>/dev/null && break
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$NGINX_PID" 2>/dev/null &&
       curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$STATUS_PORT/status" 2>/dev/null; then
      NGINX_WORKER=$(ps -o pid= --ppid "$NGINX_PID" | head -1 | tr -d ' ')
      [[ $NGINX_WORKER =~ ^[0-9]+$ ]] || cfdw_die "cannot find nginx's worker process"
      export FAST_PORT SLOW_PORT PROBE_PORT STATUS_PORT NGINX_WORKER
      cfdw_log "nginx (pid $NGINX_PID): FAST 127.0.0.1:$FAST_PORT, SLOW 127.0.0.1:$SLOW_PORT, probe :$PROBE_PORT, status :$STATUS_PORT"
      return 0
    fi
    cfdw_log "nginx did not start (attempt $attempt of 3):"
    tail -5 "$dir/nginx-error.log" >&2 || true
    stop_nginx
  done
  cfdw_die "could not start nginx"
}

stop_nginx() {
  cfdw_stop_pid "${NGINX_PID:-}" nginx
  NGINX_PID=''
}

# ---------------------------------------------------------------------------
# curl: the ceiling
# ---------------------------------------------------------------------------

# curl_config FILE PORT N: N transfers, each the FDW's request for row g of
# the benchmark's INSERT: same method, URL, headers (Content-Type, Accept,
# User-Agent, Authorization Basic, no Expect) and body.  Options before
# "next" belong to that one transfer; one curl process reuses its
# connections across all of them.
curl_config() {
  local file=$1 port=$2 n=$3 ua
  ua=$(printf 'confluence_fdw/%s' "$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" confluence_fdw.control)")
  (
    umask 077
    awk -v n="$n" -v port="$port" -v ua="$ua" -v cred="$CFDW_USER:$CFDW_TOKEN" 'BEGIN {
      for (g = 1; g <= n; g++) {
        if (g > 1) print "next"
        printf "url = \"http://127.0.0.1:%s/wiki/api/v2/pages\"\n", port
        printf "data-binary = \"{\\\"spaceId\\\":\\\"98306\\\",\\\"title\\\":\\\"title %d\\\",\\\"body\\\":{\\\"value\\\":\\\"<p>body %d</p>\\\",\\\"representation\\\":\\\"storage\\\"}}\"\n", g, g
        print "header = \"Content-Type: application/json\""
        print "header = \"Accept: application/json\""
        print "header = \"Expect:\""
        printf "user-agent = \"%s\"\n", ua
        printf "user = \"%s\"\n", cred
        print "silent"
        print "show-error"
        print "output = \"/dev/null\""
        print "write-out = \"%{num_connects} %{http_code}\\n\""
      }
    }' >"$file"
  )
}

# nginx's counters: "accepted_connections requests"
nginx_counters() {
  curl -fsS --max-time 5 "http://127.0.0.1:$STATUS_PORT/status" | awk 'NR == 3 { print $1, $3 }'
}

# ---------------------------------------------------------------------------
# inside the throw-away cluster
# ---------------------------------------------------------------------------

psql_q() { psql -X -A -t -q -v ON_ERROR_STOP=1 -d postgres "$@"; }

setup_cluster() {
  cat >"$WORK/setup.sql" <<'SQL'
\getenv user CFDW_USER
\getenv token CFDW_TOKEN
\getenv fast_port FAST_PORT
\getenv slow_port SLOW_PORT
\getenv probe_port PROBE_PORT
\getenv status_port STATUS_PORT
\set QUIET on
CREATE EXTENSION confluence_fdw;
SELECT 'http://127.0.0.1:' || :'fast_port' AS fast_url,
       'http://127.0.0.1:' || :'slow_port' AS slow_url,
       'http://127.0.0.1:' || :'probe_port' AS probe_url \gset
CREATE SERVER fast FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'fast_url');
CREATE SERVER slow FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'slow_url');
CREATE SERVER probe FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'probe_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER fast OPTIONS (username :'user', api_token :'token');
CREATE USER MAPPING FOR CURRENT_USER SERVER slow OPTIONS (username :'user', api_token :'token');
CREATE USER MAPPING FOR CURRENT_USER SERVER probe OPTIONS (username :'user', api_token :'token');
CREATE SCHEMA fast;
CREATE SCHEMA slow;
CREATE SCHEMA probe;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER fast INTO fast;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER slow INTO slow;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER probe INTO probe;
ALTER FOREIGN TABLE fast.pages OPTIONS (ADD max_concurrency '8');
ALTER FOREIGN TABLE slow.pages OPTIONS (ADD max_concurrency '8');

CREATE SCHEMA bench;
SELECT 'http://127.0.0.1:' || :'status_port' || '/status' AS status_url \gset
ALTER DATABASE postgres SET bench.status_url = :'status_url';
\getenv nginx_worker NGINX_WORKER
ALTER DATABASE postgres SET bench.nginx_worker = :'nginx_worker';

-- nginx's counters (connections accepted, requests), read by the backend
CREATE FUNCTION bench.nginx_counters(OUT accepts bigint, OUT requests bigint)
LANGUAGE plpgsql SET client_min_messages = warning AS $$
DECLARE
  line text;
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS nginx_status (line text);
  TRUNCATE nginx_status;
  EXECUTE format('COPY nginx_status FROM PROGRAM %L',
                 'curl -fsS --max-time 5 ' || current_setting('bench.status_url'));
  SELECT s.line INTO line FROM nginx_status s WHERE s.line ~ '^\s*\d+\s+\d+\s+\d+\s*$';
  accepts := split_part(btrim(line), ' ', 1)::bigint;
  requests := split_part(btrim(line), ' ', 3)::bigint;
END $$;

-- CPU time and run-queue wait of a process, in ns (/proc/<pid>/schedstat)
CREATE FUNCTION bench.schedstat(pid int, OUT cpu_ns bigint, OUT wait_ns bigint)
LANGUAGE sql AS $$
  SELECT split_part(s, ' ', 1)::bigint, split_part(s, ' ', 2)::bigint
    FROM pg_read_file('/proc/' || pid || '/schedstat') s $$;

-- INSERT n rows into tbl, with or without RETURNING; returns the seconds
-- the statement took, the TCP connections nginx accepted and the requests
-- it served meanwhile (the counter reads themselves excluded), and the CPU
-- time and run-queue wait of this backend and of nginx's worker.
CREATE FUNCTION bench.insert_rows(tbl regclass, n int, with_returning boolean,
                                  OUT seconds double precision, OUT conns bigint,
                                  OUT requests bigint, OUT cpu_ns bigint, OUT wait_ns bigint,
                                  OUT nginx_cpu_ns bigint, OUT nginx_wait_ns bigint)
LANGUAGE plpgsql AS $$
DECLARE
  worker int := current_setting('bench.nginx_worker')::int;
  c0 record;
  c1 record;
  b0 record;
  b1 record;
  w0 record;
  w1 record;
  t0 timestamptz;
  t1 timestamptz;
  got bigint;
BEGIN
  c0 := bench.nginx_counters();
  w0 := bench.schedstat(worker);
  b0 := bench.schedstat(pg_backend_pid());
  IF with_returning THEN
    t0 := clock_timestamp();
    EXECUTE format($q$WITH s AS (
        INSERT INTO %s (space_id, title, body)
        SELECT '98306', 'title ' || g, '<p>body ' || g || '</p>' FROM generate_series(1, %s) g
        RETURNING id)
      SELECT count(*) FROM s WHERE id IS NOT NULL$q$, tbl, n) INTO got;
    t1 := clock_timestamp();
  ELSE
    t0 := clock_timestamp();
    EXECUTE format($q$INSERT INTO %s (space_id, title, body)
        SELECT '98306', 'title ' || g, '<p>body ' || g || '</p>' FROM generate_series(1, %s) g$q$,
      tbl, n);
    t1 := clock_timestamp();
    GET DIAGNOSTICS got = ROW_COUNT;
  END IF;
  b1 := bench.schedstat(pg_backend_pid());
  w1 := bench.schedstat(worker);
  c1 := bench.nginx_counters();
  IF got <> n THEN
    RAISE EXCEPTION 'expected % rows, got %', n, got;
  END IF;
  seconds := extract(epoch FROM t1 - t0);
  conns := c1.accepts - c0.accepts - 1;
  requests := c1.requests - c0.requests - 1;
  cpu_ns := b1.cpu_ns - b0.cpu_ns;
  wait_ns := b1.wait_ns - b0.wait_ns;
  nginx_cpu_ns := w1.cpu_ns - w0.cpu_ns;
  nginx_wait_ns := w1.wait_ns - w0.wait_ns;
END $$;

-- The same rows without the FDW: what PostgreSQL itself needs for them
-- (generate_series in FROM fills a tuplestore of up to work_mem).
CREATE FUNCTION bench.select_rows(n int, OUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
  got bigint;
BEGIN
  EXECUTE format($q$SELECT count(*) FROM (
      SELECT '98306', 'title ' || g, '<p>body ' || g || '</p>' FROM generate_series(1, %s) g) s$q$, n)
    INTO got;
  seconds := extract(epoch FROM clock_timestamp() - t0);
END $$;

-- this backend's resident and peak memory, in kB, from /proc
CREATE FUNCTION bench.mem(OUT rss_kb bigint, OUT hwm_kb bigint) LANGUAGE sql AS $$
  SELECT (regexp_match(s, 'VmRSS:\s+(\d+) kB'))[1]::bigint,
         (regexp_match(s, 'VmHWM:\s+(\d+) kB'))[1]::bigint
    FROM pg_read_file('/proc/' || pg_backend_pid() || '/status') s $$;
SQL
  chmod 644 "$WORK/setup.sql"
  psql_q -f "$WORK/setup.sql"
}

# Does the FDW's request equal curl's?  One row each to the probe site;
# nginx logs method, URL, headers and body.  Never prints the credentials.
check_parity() {
  local fdw curl_line f
  : >"$WORK/probe.log"
  psql_q -c "INSERT INTO probe.pages (space_id, title, body) SELECT '98306', 'title ' || g, '<p>body ' || g || '</p>' FROM generate_series(1, 1) g"
  curl_config "$WORK/probe.curl" "$PROBE_PORT" 1
  curl -K "$WORK/probe.curl" >/dev/null
  sleep 0.2
  [ "$(wc -l <"$WORK/probe.log")" -eq 2 ] || cfdw_die "the probe site logged $(wc -l <"$WORK/probe.log") requests, expected 2"
  fdw=$(sed -n 1p "$WORK/probe.log")
  curl_line=$(sed -n 2p "$WORK/probe.log")
  if [ "$fdw" = "$curl_line" ]; then
    PARITY="identical (method, URL, Content-Type, Accept, User-Agent, Authorization, Expect, Content-Length, body)"
  else
    PARITY="DIFFERENT:"
    for f in ct accept ua auth expect te len body; do
      [ "$(tr '|' '\n' <<<"$fdw" | grep "^$f=")" = "$(tr '|' '\n' <<<"$curl_line" | grep "^$f=")" ] ||
        PARITY+=" $f"
    done
  fi
  rm -f "$WORK/probe.log" "$WORK/probe.curl"
  cfdw_log "request parity FDW vs curl: $PARITY"
}

# fdw_run SCHEMA MODE N RUN: MODE is "returning" or "mc<K>".  One psql
# session: set max_concurrency, warm up (connections, caches) with the same
# mode, then the timed INSERT.
fdw_run() {
  local schema=$1 mode=$2 n=$3 run=$4 conc=8 ret=false warm out
  case $mode in
    returning) ret=true ;;
    mc*) conc=${mode#mc} ;;
  esac
  warm=$((conc * 4 > 20 ? conc * 4 : 20))
  out=$(psql_q -F ' ' \
    -c "ALTER FOREIGN TABLE $schema.pages OPTIONS (SET max_concurrency '$conc')" \
    -c "SELECT 1 FROM bench.insert_rows('$schema.pages', $warm, $ret)" \
    -c "SELECT seconds, conns, requests, cpu_ns, wait_ns, nginx_cpu_ns, nginx_wait_ns FROM bench.insert_rows('$schema.pages', $n, $ret)" | tail -1)
  record "$schema" "fdw-$mode" "$n" "$run" $out
}

# nginx worker's CPU and run-queue wait, ns
nginx_schedstat() { awk '{ print $1, $2 }' "/proc/$NGINX_WORKER/schedstat"; }

# curl_run SCHEMA PORT PAR N RUN: PAR 1 = sequential
curl_run() {
  local schema=$1 port=$2 par=$3 n=$4 run=$5 cfg="$WORK/$1-$4.curl" c0 c1 w0 w1 t0 t1 args=() bad conns cpu
  local TIMEFORMAT='%3U %3S'
  [ -f "$cfg" ] || curl_config "$cfg" "$port" "$n"
  [ "$par" -gt 1 ] && args=(--parallel --parallel-max "$par")
  c0=$(nginx_counters)
  w0=$(nginx_schedstat)
  t0=$(date +%s.%N)
  { time curl --no-progress-meter "${args[@]}" -K "$cfg" >"$WORK/curl.out" 2>"$WORK/curl.err"; } 2>"$WORK/curl.time" ||
    { cat "$WORK/curl.err" >&2; cfdw_die "curl failed"; }
  t1=$(date +%s.%N)
  w1=$(nginx_schedstat)
  c1=$(nginx_counters)
  bad=$(awk '$2 != 200' "$WORK/curl.out" | wc -l)
  [ "$bad" -eq 0 ] && [ "$(wc -l <"$WORK/curl.out")" -eq "$n" ] ||
    cfdw_die "curl: $bad of $n answers were not HTTP 200"
  conns=$(awk '{ s += $1 } END { print s + 0 }' "$WORK/curl.out")
  cpu=$(awk '{ printf "%.0f", ($1 + $2) * 1e9 }' "$WORK/curl.time")
  record "$schema" "curl-$par" "$n" "$run" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')" \
    "$conns" $(( ${c1#* } - ${c0#* } - 1 )) "$cpu" -1 \
    $(( ${w1% *} - ${w0% *} )) $(( ${w1#* } - ${w0#* } ))
}

# The fixed cost of a curl process (start, config, connect, one request to
# FAST), subtracted from the curl runs' times: the FDW's timing starts with
# the INSERT, in a backend that is already running.
curl_startup() {
  local run=$1 cfg="$WORK/startup.curl" t0 t1 i TIMEFORMAT='%3U %3S'
  [ -f "$cfg" ] || curl_config "$cfg" "$FAST_PORT" 1
  for i in 1 2 3; do
    t0=$(date +%s.%N)
    { time curl --no-progress-meter -K "$cfg" >/dev/null; } 2>"$WORK/curl.time"
    t1=$(date +%s.%N)
    printf 'fast curl-startup 1 %s %s 1 1 %s -1 0 0\n' "$run" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')" \
      "$(awk '{ printf "%.0f", ($1 + $2) * 1e9 }' "$WORK/curl.time")" >>"$WORK/results.txt"
  done
}

record() {
  # server mode rows run seconds conns requests cpu_ns wait_ns nginx_cpu_ns nginx_wait_ns
  [ $# -eq 11 ] || cfdw_die "record: $# values: $*"
  [ "$7" -eq "$3" ] || cfdw_die "$1 $2 run $4: nginx served $7 requests, expected $3"
  printf '%s %s %s %s %s %s %s %s %s %s %s\n' "$@" >>"$WORK/results.txt"
  cfdw_log "$(printf '%-5s %-13s run %s: %6s rows in %8.3f s = %7.0f rows/s, %s new connection(s), CPU %s us/row' \
    "$1" "$2" "$4" "$3" "$5" "$(awk -v n="$3" -v s="$5" 'BEGIN { print n / s }')" "$6" \
    "$(awk -v n="$3" -v c="$8" 'BEGIN { printf "%.0f", c / n / 1000 }')")"
}

throughput() {
  local run schema port n nseq mode par
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    curl_startup "$run"
    for schema in fast slow; do
      if [ $schema = fast ]; then
        port=$FAST_PORT n=$BENCH_FAST_ROWS nseq=$BENCH_FAST_ROWS
      else
        port=$SLOW_PORT n=$BENCH_SLOW_ROWS nseq=$BENCH_SLOW_SEQ_ROWS
      fi
      fdw_run $schema returning "$nseq" "$run"
      for par in $CONCURRENCIES; do
        if [ "$par" -eq 1 ]; then
          fdw_run $schema "mc$par" "$nseq" "$run"
          curl_run $schema "$port" "$par" "$nseq" "$run"
        else
          fdw_run $schema "mc$par" "$n" "$run"
          curl_run $schema "$port" "$par" "$n" "$run"
        fi
      done
    done
  done
}

# memory MODE: one fresh session; warm-up, then each BENCH_MEM_ROWS count,
# reading VmRSS and VmHWM before the first and after each.  MODE baseline
# runs the same SELECT without the FDW.
memory() {
  local mode=$1 ret=false n sql run
  [ "$mode" = returning ] && ret=true
  run="bench.insert_rows('fast.pages', %s, $ret)"
  [ "$mode" = baseline ] && run="bench.select_rows(%s)"
  sql="ALTER FOREIGN TABLE fast.pages OPTIONS (SET max_concurrency '16');
SELECT 1 FROM $(printf "$run" 200);
SELECT '$mode', 0, rss_kb, hwm_kb, 0 FROM bench.mem();"
  for n in $BENCH_MEM_ROWS; do
    sql+="
SELECT seconds FROM $(printf "$run" "$n") \\gset
SELECT '$mode', $n, rss_kb, hwm_kb, :seconds FROM bench.mem();"
  done
  printf '%s\n' "$sql" >"$WORK/memory-$mode.sql"
  chmod 644 "$WORK/memory-$mode.sql"
  psql_q -F ' ' -f "$WORK/memory-$mode.sql" | grep "^$mode " >>"$WORK/memory.txt"
  cfdw_log "memory, $mode: $(grep "^$mode " "$WORK/memory.txt" | awk '{ printf "%s rows: RSS %s kB HWM %s kB; ", $2, $3, $4 }')"
}

report() {
  python3 - "$WORK/results.txt" "$WORK/memory.txt" <<'PY'
import os, statistics, sys
env = os.environ
slow_ms = float(env["BENCH_SLOW_MS"])
concs = [int(k) for k in env["CONCURRENCIES"].split()]
runs = {}
for line in open(sys.argv[1]):
    server, mode, rows, run, secs, conns, reqs, cpu, wait, ncpu, nwait = line.split()
    runs.setdefault((server, mode), []).append(dict(
        rows=int(rows), secs=float(secs), conns=int(conns), cpu=int(cpu), wait=int(wait),
        ncpu=int(ncpu), nwait=int(nwait)))
su = runs.pop(("fast", "curl-startup"), [dict(secs=0.0, cpu=0)])
startup = statistics.median(r["secs"] for r in su)
startup_cpu = statistics.median(r["cpu"] for r in su)

def figure(server, mode):
    rs = runs.get((server, mode))
    if not rs:
        return None
    fixed = startup if mode.startswith("curl-") else 0.0
    rates = [r["rows"] / max(r["secs"] - fixed, 1e-6) for r in rs]
    n = rs[0]["rows"]
    fixed_cpu = startup_cpu if mode.startswith("curl-") else 0
    med = lambda k: statistics.median(r[k] for r in rs) / n / 1000.0   # us per row
    cpu = max(statistics.median(r["cpu"] for r in rs) - fixed_cpu, 0) / n / 1000.0
    return dict(rows=n, median=statistics.median(rates), lo=min(rates), hi=max(rates),
                conns=max(r["conns"] for r in rs), cpu=cpu,
                wait=med("wait") if rs[0]["wait"] >= 0 else None,
                ncpu=med("ncpu"), nwait=med("nwait"))

def table(hdr, rows, left):
    w = [max(len(r[i]) for r in rows + [hdr]) for i in range(len(hdr))]
    f = lambda r: "  ".join(r[i].ljust(w[i]) if i in left else r[i].rjust(w[i]) for i in range(len(r))).rstrip()
    return [f(hdr), "  ".join("-" * x for x in w)] + [f(r) for r in rows]

out = []
p = out.append
p("confluence_fdw benchmark: INSERT INTO pages (space_id, title, body)")
p("  SELECT '98306', 'title ' || g, '<p>body ' || g || '</p>' FROM generate_series(1, N) g")
p("nginx on loopback answers POST /wiki/api/v2/pages with a ~1 KB PageSingle JSON:")
p("  FAST at once; SLOW after %g ms (measured: %s)" % (slow_ms, env.get("SLOW_LATENCY", "")))
p("rows/s: median of %s runs (min-max).  conns: new TCP connections during a timed run (most of any run)." % env["BENCH_RUNS"])
p("CPU: CPU time per row of the backend (FDW) or of the curl process.")
p("curl: the same requests (method, URL, headers, bodies), one curl %s process per run; its fixed" % env.get("CURL_VERSION", ""))
p("  cost (start, config, connect, 1 request: %.1f ms wall, %.1f ms CPU, medians) is subtracted." % (startup * 1000, startup_cpu / 1e6))
p("FDW/curl: FDW rows/s over the curl counterpart's.  /theory: rows/s over K in flight / %g ms." % slow_ms)
p("")
hdr = ("server", "FDW mode", "rows", "rows/s", "(min-max)", "conns", "CPU us/row",
       "curl counterpart", "rows/s", "conns", "CPU us/row", "FDW/curl", "/theory")
modes = [("returning", "RETURNING, one at a time", 1)] + \
        [("mc%d" % k, "no RETURNING, max_conc %d" % k, k) for k in concs]
rows = []
diag = []
for server in ("fast", "slow"):
    for mode, label, k in modes:
        f = figure(server, "fdw-" + mode)
        c = figure(server, "curl-%d" % k)
        if not f:
            continue
        clabel = "sequential, 1 conn" if k == 1 else "--parallel-max %d" % k
        theory = k * 1000.0 / slow_ms
        rows.append((server.upper(), label, str(f["rows"]), "%.0f" % f["median"],
                     "(%.0f-%.0f)" % (f["lo"], f["hi"]), str(f["conns"]), "%.0f" % f["cpu"],
                     clabel, "%.0f" % c["median"] if c else "-", str(c["conns"]) if c else "-",
                     "%.0f" % c["cpu"] if c else "-",
                     "%.2f" % (f["median"] / c["median"]) if c else "-",
                     "%.2f" % (f["median"] / theory) if server == "slow" else ""))
        diag.append((server.upper(), label, "%.0f" % (1e6 / f["median"]), "%.0f" % f["cpu"],
                     "%.0f" % f["wait"], "%.0f" % f["ncpu"], "%.0f" % f["nwait"],
                     "%.0f" % (1e6 / c["median"]) if c else "-", "%.0f" % c["cpu"] if c else "-",
                     "%.0f" % c["ncpu"] if c else "-", "%.0f" % c["nwait"] if c else "-"))
    if server == "slow":
        for k in concs:
            c = figure(server, "curl-%d" % k)
            if c:
                rows.append(("SLOW", "(curl alone, %s)" % ("sequential" if k == 1 else "%d in flight" % k),
                             str(c["rows"]), "", "", "", "", "", "%.0f" % c["median"], str(c["conns"]),
                             "%.0f" % c["cpu"], "", "%.2f" % (c["median"] / (k * 1000.0 / slow_ms))))
out += table(hdr, rows, {0, 1, 7})
p("")
p("diagnostics: where a row's time goes (medians, microseconds per row).  wall = 1e6 / rows/s;")
p("CPU = time on a core; run-queue = runnable but waiting for a core (/proc/<pid>/schedstat);")
p("nginx = its one worker, during the same run")
dh = ("server", "FDW mode", "wall", "backend CPU", "backend run-queue", "nginx CPU", "nginx run-queue",
      "curl: wall", "curl CPU", "nginx CPU", "nginx run-queue")
out += table(dh, diag, {0, 1})

# memory
mem = {}
for line in open(sys.argv[2]):
    mode, n, rss, hwm, secs = line.split()
    mem.setdefault(mode, []).append((int(n), int(rss), int(hwm), float(secs)))
labels = {"noreturning": "no RETURNING, max_conc 16", "returning": "WITH ... RETURNING id",
          "baseline": "same SELECT, no FDW (count(*))"}
p("")
p("backend memory on FAST (kB, VmRSS and VmHWM from /proc/<backend pid>/status; a fresh session per mode,")
p("200 rows of warm-up; work_mem %s bounds PostgreSQL's own tuplestores: generate_series in FROM, the CTE)" % env.get("WORK_MEM", "?"))
mrows = []
growth = {}
for mode in ("noreturning", "returning", "baseline"):
    pts = mem.get(mode, [])
    for n, rss, hwm, secs in pts:
        mrows.append((labels[mode], "after warm-up" if n == 0 else "after %d rows" % n, str(rss), str(hwm),
                      "%.0f" % (n / secs) if n and secs > 0 and mode != "baseline" else ""))
    if len(pts) >= 3:
        a, b = pts[-2], pts[-1]
        growth[mode] = (a[0], b[0], b[1] - a[1], b[2] - a[2])
out += table(("mode", "", "VmRSS", "VmHWM", "rows/s"), mrows, {0, 1})
if growth:
    p("")
    g = []
    base = growth.get("baseline")
    for mode, (a, b, drss, dhwm) in growth.items():
        g.append((labels[mode], "%d -> %d rows" % (a, b), "%+d" % drss, "%+d" % dhwm,
                  "%+d" % (dhwm - base[3]) if base and mode != "baseline" else ""))
    out += table(("growth", "", "VmRSS", "VmHWM", "VmHWM minus no-FDW"), g, {0, 1})

# targets
p("")
p("targets")
def target(name, ok, detail):
    p("  %-4s %s: %s" % ("ok" if ok else "MISS", name, detail))
def med(server, mode):
    f = figure(server, mode)
    return f["median"] if f else None
cs = med("fast", "curl-1")
for mode, label in (("returning", "RETURNING"), ("mc1", "max_concurrency 1")):
    v = med("fast", "fdw-" + mode)
    if v and cs:
        target("FAST %s >= 0.7 x curl sequential" % label, v >= 0.7 * cs,
               "%.0f vs %.0f rows/s = %.2f" % (v, cs, v / cs))
v = med("slow", "fdw-mc16")
c16 = med("slow", "curl-16")
if v:
    th = 16 * 1000.0 / slow_ms
    target("SLOW max_concurrency 16 >= 0.9 x %.0f rows/s" % th, v >= 0.9 * th,
           "%.0f rows/s = %.2f" % (v, v / th))
    if c16:
        target("SLOW max_concurrency 16 >= 0.9 x curl --parallel-max 16", v >= 0.9 * c16,
               "%.0f vs %.0f rows/s = %.2f" % (v, c16, v / c16))
for mode in ("noreturning", "returning"):
    if mode in growth:
        a, b, drss, dhwm = growth[mode]
        base = growth.get("baseline")
        target("memory growth %d -> %d rows < 5 MB, %s" % (a, b, labels[mode]),
               max(drss, dhwm) < 5 * 1024,
               "VmHWM %+d kB, VmRSS %+d kB%s" % (dhwm, drss,
               "; without the FDW the same SELECT alone: VmHWM %+d kB" % base[3] if base else ""))
print("\n".join(out))
PY
}

inside() {
  local load0 load1
  load0=$(uptime)
  setup_cluster
  check_parity
  : >"$WORK/results.txt"
  : >"$WORK/memory.txt"
  throughput
  memory noreturning
  memory returning
  memory baseline
  WORK_MEM=$(psql_q -c 'SHOW work_mem')
  export WORK_MEM
  load1=$(uptime)
  {
    report
    echo
    echo "request parity FDW vs curl (probe site): $PARITY"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo); PostgreSQL $(psql_q -c 'SHOW server_version' | sed 's/ .*//'); $(curl --version | head -1 | cut -d' ' -f1-2); nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "load before: ${load0#*load average: }"
    echo "load after:  ${load1#*load average: }"
    echo "run at $(date -u '+%Y-%m-%d %H:%M:%S UTC'); BENCH_RUNS=$BENCH_RUNS BENCH_FAST_ROWS=$BENCH_FAST_ROWS BENCH_SLOW_ROWS=$BENCH_SLOW_ROWS BENCH_SLOW_SEQ_ROWS=$BENCH_SLOW_SEQ_ROWS BENCH_MEM_ROWS='$BENCH_MEM_ROWS'"
  } >"$WORK/table.txt"
}


# SLOW alone, 20 requests on one connection: the real delay
slow_latency() {
  local cfg="$WORK/latency.curl"
  curl_config "$cfg" "$SLOW_PORT" 20
  sed -i 's/^write-out = .*/write-out = "%{num_connects} %{http_code} %{time_total}\\n"/' "$cfg"
  curl --no-progress-meter -K "$cfg" >"$WORK/latency.out"
  SLOW_LATENCY=$(awk '{ s += $3; if ($3 > mx) mx = $3; if (mn == "" || $3 < mn) mn = $3; c += $1 }
    END { printf "%.1f ms mean, min %.1f, max %.1f, over %d sequential curl requests on %d connection", 1000 * s / NR, 1000 * mn, 1000 * mx, NR, c }' "$WORK/latency.out")
  rm -f "$cfg" "$WORK/latency.out"
  cfdw_log "SLOW: $SLOW_LATENCY"
}

main() {
  if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
    install_deps
    build_install
  fi
  command -v nginx >/dev/null && [ -f "$NGINX_ECHO_MODULE" ] ||
    cfdw_die "nginx or its echo module is missing (run without BENCH_SKIP_INSTALL=1)"
  WORK=$(mktemp -d /tmp/cfdw-bench.XXXXXX)
  chmod 755 "$WORK"
  export WORK
  trap 'stop_nginx; rm -rf "$WORK"' EXIT
  trap 'exit 130' INT TERM
  cfdw_gen_credentials
  start_nginx "$WORK"
  slow_latency
  CURL_VERSION=$(curl --version | head -1 | cut -d' ' -f2)
  export SLOW_LATENCY CONCURRENCIES CURL_VERSION
  cfdw_log "load: $(uptime)"
  CFDW_PGVE_PLAIN=1 cfdw_pg_virtualenv bash "$CFDW_ROOT/bench/run.sh" --inside
  mkdir -p bench/results
  cp "$WORK/table.txt" bench/results/latest.txt
  echo
  cat bench/results/latest.txt
  echo
  cfdw_log "written to bench/results/latest.txt"
  # the same kinds of rows through a TLS front by host name (HTTP/2, HTTP/1.1)
  echo
  BENCH_SKIP_INSTALL=1 bash bench/front.sh
  # delivery 'queue' against the immediate pipeline, enqueueing, the worker's memory
  echo
  CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash bench/queue.sh
  # reading: a scan of 10,000 pages against curl following the same links
  echo
  CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash bench/read.sh
  # content: converting and checking 100 kB of Markdown against sending it
  echo
  CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash bench/content.sh
}

if [ "${1:-}" = --inside ]; then
  inside
else
  main "$@"
fi
