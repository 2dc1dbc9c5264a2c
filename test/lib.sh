# shellcheck shell=bash
# Shared shell helpers for confluence_fdw's test runner, demo and benchmarks.
#
#   source "$(dirname "$0")/lib.sh"      # from a script in test/
#
# Works under `set -euo pipefail`.  Nothing here runs on being sourced except
# setting a few variables.  Functions:
#
#   cfdw_pg_config                 print the pg_config to use (PG 15)
#   cfdw_gen_token [PREFIX]        print a fresh random secret: cfdwtok-<32 hex>
#   cfdw_gen_credentials           export fresh CFDW_USER/TOKEN/TOKEN2/BEARER/BAD_TOKEN
#   cfdw_secret_names              print the names of the secret variables
#   cfdw_check_no_secrets FILE...  fail (1) if any secret value occurs in a FILE
#   cfdw_start_standin DIR         start test/standin.py; sets and exports
#                                  STANDIN_URL, STANDIN_URL2, STANDIN_PID
#   cfdw_stop_standin              stop the stand-in started above
#   cfdw_pgve_opts                 fill the array CFDW_PGVE_OPTS (pg_virtualenv -o ...)
#   cfdw_free_pgport               print a free port for a cluster
#   cfdw_pg_virtualenv CMD...      run CMD against a throw-away cluster set up
#                                  for pg_cron (see the comments there)
#   cfdw_server_log                inside cfdw_pg_virtualenv: print the path of
#                                  the cluster's server log
#   cfdw_wait_cron_launcher [S]    inside: wait until pg_cron's launcher is connected
#
# Knobs (environment):
#   PG_CONFIG               pg_config to use (default /usr/lib/postgresql/15/bin/pg_config)
#   CFDW_CRON_DB            cron.database_name (default contrib_regression)
#   CFDW_LOG_MIN_MESSAGES   server log_min_messages (default debug5)
#   CFDW_LOG_STATEMENT      server log_statement (default all)
#   CFDW_EXTRA_PG_OPTS      extra name=value server settings, whitespace separated
#   CFDW_STANDIN_TIMEOUT    seconds to wait for the stand-in's port files (default 20)
#   CFDW_STANDIN_MAX_LIFETIME  seconds after which the stand-in exits by itself
#                           (default 5400, i.e. well within one CI run)

CFDW_ROOT=${CFDW_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CFDW_TOKEN_PREFIX=cfdwtok-
CFDW_PG_VERSION=15

cfdw_log() { printf '[cfdw %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
cfdw_die() { cfdw_log "ERROR: $*"; exit 1; }

cfdw_pg_config() {
  local pgc=${PG_CONFIG:-/usr/lib/postgresql/$CFDW_PG_VERSION/bin/pg_config}
  [ -x "$pgc" ] || { cfdw_log "pg_config not found at $pgc"; return 1; }
  printf '%s\n' "$pgc"
}

# 16 random bytes as 32 lowercase hex digits, after a recognisable prefix, so
# that a leak can be found by grepping for the value (or for the prefix).
cfdw_gen_token() {
  local hex
  hex=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  [ ${#hex} -eq 32 ] || { cfdw_log "could not read /dev/urandom"; return 1; }
  printf '%s%s\n' "${1:-$CFDW_TOKEN_PREFIX}" "$hex"
}

cfdw_secret_names() { printf '%s\n' CFDW_TOKEN CFDW_TOKEN2 CFDW_BEARER CFDW_BAD_TOKEN; }

# Fresh credentials for every run.  CFDW_USER is not secret (an e-mail
# address, like a Confluence Cloud user name); the four tokens are.
# CFDW_BAD_TOKEN is one the stand-in does not accept (for 401 tests); it is
# still treated as a secret: a mistyped token is usually someone's real one.
cfdw_gen_credentials() {
  CFDW_USER="cfdw-user-$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')@example.com"
  CFDW_TOKEN=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  CFDW_TOKEN2=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  CFDW_BEARER=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  CFDW_BAD_TOKEN=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  export CFDW_USER CFDW_TOKEN CFDW_TOKEN2 CFDW_BEARER CFDW_BAD_TOKEN
}

# cfdw_check_no_secrets FILE...  Missing files are skipped.  Reports which
# secret was found where (file and line number, never the value) and
# returns 1; returns 0 when the files are clean.
cfdw_check_no_secrets() {
  local name value f found=0 lines
  for name in $(cfdw_secret_names); do
    value=${!name:-}
    [ -n "$value" ] || { cfdw_log "secret $name is not set, cannot check for it"; found=1; continue; }
    for f in "$@"; do
      [ -f "$f" ] || continue
      if lines=$(grep -n -F -e "$value" -- "$f" | cut -d: -f1 | head -20 | paste -sd, -); [ -n "$lines" ]; then
        cfdw_log "SECRET LEAK: value of \$$name found in $f (line(s) $lines)"
        found=1
      fi
    done
  done
  return $found
}

# cfdw_start_standin DIR: starts the Confluence stand-in in the background,
# its output in DIR/standin.log, and waits (CFDW_STANDIN_TIMEOUT s) until it
# has written both port files and answers /_standin/health.  The stand-in
# takes the accepted credentials from the CFDW_* variables, so call
# cfdw_gen_credentials first.  Extra arguments for standin.py can be put in
# the array CFDW_STANDIN_ARGS.
cfdw_start_standin() {
  local dir=${1:?usage: cfdw_start_standin DIR}
  local timeout=${CFDW_STANDIN_TIMEOUT:-20} p1='' p2='' i
  : "${CFDW_TOKEN:?call cfdw_gen_credentials first}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -f "$dir/standin.port" "$dir/standin2.port"
  python3 "$CFDW_ROOT/test/standin.py" --port 0 \
    --port-file "$dir/standin.port" --extra-port-file "$dir/standin2.port" \
    --max-lifetime-s "${CFDW_STANDIN_MAX_LIFETIME:-5400}" \
    ${CFDW_STANDIN_ARGS[@]+"${CFDW_STANDIN_ARGS[@]}"} \
    >"$dir/standin.log" 2>&1 </dev/null &
  STANDIN_PID=$!
  export STANDIN_PID
  for ((i = 0; i < timeout * 10; i++)); do
    [ -s "$dir/standin.port" ] && p1=$(<"$dir/standin.port")
    [ -s "$dir/standin2.port" ] && p2=$(<"$dir/standin2.port")
    p1=${p1//[[:space:]]/} p2=${p2//[[:space:]]/}
    [[ $p1 =~ ^[0-9]+$ && $p2 =~ ^[0-9]+$ ]] && break
    if ! kill -0 "$STANDIN_PID" 2>/dev/null; then
      cfdw_log "the stand-in exited during start-up; its log:"
      tail -50 "$dir/standin.log" >&2
      STANDIN_PID=''
      return 1
    fi
    sleep 0.1
  done
  if ! [[ $p1 =~ ^[0-9]+$ && $p2 =~ ^[0-9]+$ ]]; then
    cfdw_log "the stand-in wrote no port files within ${timeout}s; its log:"
    tail -50 "$dir/standin.log" >&2
    cfdw_stop_standin
    return 1
  fi
  STANDIN_URL="http://127.0.0.1:$p1"
  STANDIN_URL2="http://127.0.0.1:$p2"
  export STANDIN_URL STANDIN_URL2
  if ! curl -fsS --max-time 5 -o /dev/null "$STANDIN_URL/_standin/health"; then
    cfdw_log "the stand-in does not answer $STANDIN_URL/_standin/health; its log:"
    tail -50 "$dir/standin.log" >&2
    cfdw_stop_standin
    return 1
  fi
  cfdw_log "stand-in (pid $STANDIN_PID) at $STANDIN_URL and $STANDIN_URL2"
}

# Stops only the process cfdw_start_standin started (by its pid): SIGTERM,
# then SIGKILL after 5 s.  Safe to call twice.
cfdw_stop_standin() {
  local pid=${STANDIN_PID:-} i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      cfdw_log "stand-in (pid $pid) ignored SIGTERM, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  STANDIN_PID=''
}

# Server settings for a throw-away cluster that can run pg_cron jobs.  Found
# by trying them on this machine (see test/pgcron-smoke.sh):
#  - shared_preload_libraries=pg_cron: pg_cron refuses to load otherwise.
#  - cron.database_name: the one database where CREATE EXTENSION pg_cron is
#    allowed and where the launcher lives (the launcher is a background worker
#    that connects to it at start; while the database does not exist it exits
#    with FATAL and the postmaster restarts it every second, so it is fine to
#    create the database later, e.g. by pg_regress).
#  - cron.use_background_workers=on: otherwise each job opens a libpq
#    connection to localhost, which pg_virtualenv's clusters answer with a
#    password prompt (scram), so every job fails with "connection failed".
#  - max_worker_processes: the launcher and each running job take one.
#  - log_statement=all, log_min_messages=debug5: the whole suite runs with
#    everything logged, and test/check_secrets.py then searches the log for
#    the tokens.  PostgreSQL itself logs the text of the CREATE/ALTER USER
#    MAPPING statements that carry them; that is the one place allowed.
cfdw_pgve_opts() {
  local o
  CFDW_PGVE_OPTS=(
    -o "shared_preload_libraries=pg_cron"
    -o "cron.database_name=${CFDW_CRON_DB:-contrib_regression}"
    -o "cron.use_background_workers=on"
    -o "max_worker_processes=16"
    -o "log_min_messages=${CFDW_LOG_MIN_MESSAGES:-debug5}"
    -o "log_statement=${CFDW_LOG_STATEMENT:-all}"
    -o "log_line_prefix=%m [%p] "
  )
  for o in ${CFDW_EXTRA_PG_OPTS:-}; do
    CFDW_PGVE_OPTS+=(-o "$o")
  done
}

# A port for a throw-away cluster: random in 20000-29999 (below Linux's
# ephemeral range), free on TCP and without a socket in /var/run/postgresql.
# pg_createcluster's own choice (5432 and up) only checks TCP, and on this
# shared machine other people's clusters sit on 5432+ with unix sockets only.
cfdw_free_pgport() {
  local p i
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 10000))
    if [ -e "/var/run/postgresql/.s.PGSQL.$p" ] || [ -e "/var/run/postgresql/.s.PGSQL.$p.lock" ]; then
      continue
    fi
    if python3 - "$p" 2>/dev/null <<'PY'
import socket, sys
p = int(sys.argv[1])
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
    except OSError:
        continue
    s.bind((addr, p))
    s.close()
PY
    then
      printf '%s\n' "$p"
      return 0
    fi
  done
  cfdw_log "found no free port for a cluster"
  return 1
}

# cfdw_pg_virtualenv CMD...: runs CMD with PGHOST/PGPORT/PGUSER/PGPASSWORD/
# PGDATABASE (=postgres) set for a fresh cluster, which is dropped afterwards.
# -t keeps everything under a mktemp folder in /tmp, also as root, so an
# interrupted run leaves nothing in /etc/postgresql.  The server log is in
# that folder and is deleted with it: copy it (cfdw_server_log) from inside
# CMD if you need it.  pg_virtualenv prints the log's last 100 lines when
# CMD fails.  The port is chosen here (cfdw_free_pgport), and when the
# cluster fails to start (a port taken in the meantime: "Port conflict")
# it is tried again on another port, up to 3 times.  Returns CMD's status.
cfdw_pg_virtualenv() {
  local attempt rc=0 marker port
  cfdw_pgve_opts
  marker=$(mktemp /tmp/cfdw-pgve.XXXXXX)
  for attempt in 1 2 3; do
    rm -f "$marker"
    rc=0
    port=$(cfdw_free_pgport) || { rc=1; break; }
    # The marker shows that CMD started, i.e. that the cluster came up.
    # shellcheck disable=SC2016
    # external_pid_file: pg_createcluster names it /var/run/postgresql/
    # 15-regress.pid for every throw-away cluster, and pg_dropcluster and
    # pg_lsclusters judge "running" by it; with two runs at once (tests, demo,
    # benchmarks) they then see each other's ("This cluster is still running").
    PGPORT=$port pg_virtualenv -t -v "$CFDW_PG_VERSION" "${CFDW_PGVE_OPTS[@]}" \
      -o "external_pid_file=/var/run/postgresql/$CFDW_PG_VERSION-regress-$port.pid" \
      bash -c ': >"$0"; exec "$@"' "$marker" "$@" || rc=$?
    [ -e "$marker" ] && break
    cfdw_log "the throw-away cluster did not start on port $port (attempt $attempt of 3)"
  done
  rm -f "$marker"
  return $rc
}

cfdw_server_log() {
  local f
  # pg_lsclusters honours PG_CLUSTER_CONF_ROOT, which pg_virtualenv -t exports.
  f=$(pg_lsclusters --no-header 2>/dev/null |
      awk -v v="${PGVERSION:-$CFDW_PG_VERSION}" -v p="${PGPORT:-}" \
          '$1 == v && $2 == "regress" && (p == "" || $3 == p) { print $7; exit }')
  if [ -z "$f" ] || [ ! -f "$f" ]; then cfdw_log "cannot find the cluster's server log (not inside pg_virtualenv?)"; return 1; fi
  printf '%s\n' "$f"
}

# Inside cfdw_pg_virtualenv, after creating $CFDW_CRON_DB: wait until
# pg_cron's launcher is connected to it (it retries once a second).
cfdw_wait_cron_launcher() {
  local t=${1:-30} i n
  for ((i = 0; i < t * 5; i++)); do
    n=$(psql -XAtq -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'" 2>/dev/null || echo 0)
    [ "$n" = 1 ] && return 0
    sleep 0.2
  done
  cfdw_log "pg_cron launcher did not connect within ${t}s"
  return 1
}
