# shellcheck shell=bash
# Shared shell helpers for confluence_fdw's test runner, demo and benchmarks.
#
#   source "$(dirname "$0")/lib.sh"      # from a script in test/
#
# Works under `set -euo pipefail`.  Nothing here runs on being sourced except
# setting a few variables (cfdw_detect_pg asks pg_config).  Functions:
#
#   cfdw_pg_config                 print the pg_config to use (see "Which PostgreSQL")
#   cfdw_gen_token [PREFIX]        print a fresh random secret: cfdwtok-<32 hex>
#   cfdw_gen_credentials           export fresh CFDW_USER/TOKEN/TOKEN2/BEARER/BAD_TOKEN
#                                  and CFDW_CLIENT_ID/CLIENT_SECRET/CLIENT_SECRET2
#   cfdw_secret_names              print the names of the secret variables
#   cfdw_check_no_secrets FILE...  fail (1) if any secret value occurs in a FILE
#   cfdw_make_tls_cert DIR         make a self-signed certificate for 127.0.0.1
#                                  in DIR; sets and exports STANDIN_CA_FILE
#   cfdw_start_standin DIR         start test/standin.py; sets and exports
#                                  STANDIN_URL, STANDIN_URL2, STANDIN_PID, and
#                                  STANDIN_TLS_URL after cfdw_make_tls_cert
#   cfdw_stop_standin              stop the stand-in started above
#   cfdw_pgve_opts                 fill the array CFDW_PGVE_OPTS (pg_virtualenv -o ...)
#   cfdw_free_pgport               print a free port for a cluster
#   cfdw_pg_virtualenv CMD...      run CMD against a throw-away cluster set up
#                                  for pg_cron (see the comments there)
#   cfdw_server_log                inside cfdw_pg_virtualenv: print the path of
#                                  the cluster's server log
#   cfdw_cluster_ctl ACTION [ARG...]  inside: stop, start or restart that
#                                  cluster (pg_ctl's options, e.g. -m immediate);
#                                  also `bash test/lib.sh --cluster-ctl ...`
#   cfdw_cluster_env_file          inside: print the file of variables the
#                                  server starts with (NAME = 'value' lines)
#   cfdw_wait_cron_launcher [S]    inside: wait until pg_cron's launcher is connected
#   cfdw_contract_npm_ci           install Prism into test/contract/node_modules (npm ci)
#   cfdw_start_prism DIR           start Prism on the adjusted v2 spec and its recorder;
#                                  exports PRISM_URL, PRISM_DIRECT_URL, PRISM_PID, PRISM_RECORDER_PID
#   cfdw_stop_prism                stop them
#
# Which PostgreSQL: the one whose pg_config PG_CONFIG names (any
# installation: Debian's packages, a source build, another distribution's);
# without PG_CONFIG, Debian's 15 when it is installed, else the newest
# Debian major installed (the one major of a tree of test/pgtree.sh).
# Debian's packages get their throw-away clusters from pg_virtualenv; any
# other installation from its own initdb and pg_ctl (cfdw_pg_virtualenv).
#
# Knobs (environment):
#   PG_CONFIG               pg_config to use (see above)
#   CFDW_CRON_DB            cron.database_name (default contrib_regression)
#   CFDW_LOG_MIN_MESSAGES   server log_min_messages (default debug5)
#   CFDW_LOG_STATEMENT      server log_statement (default all)
#   CFDW_EXTRA_PG_OPTS      extra name=value server settings, whitespace separated
#   CFDW_STANDIN_TIMEOUT    seconds to wait for the stand-in's port files (default 20)
#   CFDW_STANDIN_MAX_LIFETIME  seconds after which the stand-in exits by itself
#                           (default 5400, i.e. well within one CI run)
#   CFDW_PRISM_TIMEOUT      seconds to wait for Prism to answer (default 60)
#   CFDW_PRISM_MAX_LIFETIME seconds after which Prism and its recorder exit by themselves (default 5400)

CFDW_ROOT=${CFDW_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export CFDW_ROOT
CFDW_TOKEN_PREFIX=cfdwtok-

cfdw_log() { printf '[cfdw %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
cfdw_die() { cfdw_log "ERROR: $*"; exit 1; }

# CFDW_PG_CONFIG, CFDW_PG_VERSION (the major) and CFDW_PG_DEBIAN (1 when
# pg_virtualenv can make the clusters): see "Which PostgreSQL" above.
# Before anything is installed, Debian's 15 (what test/install-deps.sh
# installs).
cfdw_detect_pg() {
  local v
  CFDW_PG_CONFIG=${PG_CONFIG:-}
  if [ -z "$CFDW_PG_CONFIG" ]; then
    CFDW_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    if [ ! -x "$CFDW_PG_CONFIG" ]; then
      for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
        if [ -x "/usr/lib/postgresql/$v/bin/pg_config" ]; then
          CFDW_PG_CONFIG=/usr/lib/postgresql/$v/bin/pg_config
          break
        fi
      done
    fi
  fi
  CFDW_PG_VERSION=15 CFDW_PG_DEBIAN=1
  if [ -x "$CFDW_PG_CONFIG" ]; then
    CFDW_PG_VERSION=$("$CFDW_PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
    if [ "$("$CFDW_PG_CONFIG" --bindir)" != "/usr/lib/postgresql/$CFDW_PG_VERSION/bin" ] ||
       ! command -v pg_virtualenv >/dev/null; then
      CFDW_PG_DEBIAN=0
    fi
  fi
  export CFDW_PG_CONFIG CFDW_PG_VERSION CFDW_PG_DEBIAN
}
cfdw_detect_pg

cfdw_pg_config() {
  [ -x "$CFDW_PG_CONFIG" ] || { cfdw_log "pg_config not found at $CFDW_PG_CONFIG"; return 1; }
  printf '%s\n' "$CFDW_PG_CONFIG"
}

# 16 random bytes as 32 lowercase hex digits, after a recognisable prefix, so
# that a leak can be found by grepping for the value (or for the prefix).
cfdw_gen_token() {
  local hex
  hex=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  [ ${#hex} -eq 32 ] || { cfdw_log "could not read /dev/urandom"; return 1; }
  printf '%s%s\n' "${1:-$CFDW_TOKEN_PREFIX}" "$hex"
}

cfdw_secret_names() { printf '%s\n' CFDW_TOKEN CFDW_TOKEN2 CFDW_BEARER CFDW_BAD_TOKEN CFDW_CLIENT_SECRET CFDW_CLIENT_SECRET2; }

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
  # OAuth client credentials (a service account's): the client id is no
  # secret; the stand-in accepts secret 1 at start, secret 2 once told to
  CFDW_CLIENT_ID="cfdw-client-$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
  CFDW_CLIENT_SECRET=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  CFDW_CLIENT_SECRET2=$(cfdw_gen_token "$CFDW_TOKEN_PREFIX")
  export CFDW_CLIENT_ID CFDW_CLIENT_SECRET CFDW_CLIENT_SECRET2
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
  # the access tokens the stand-in issues (test/standin.py, OAuth)
  for f in "$@"; do
    [ -f "$f" ] || continue
    if lines=$(grep -n -E -e 'cfdwat-[0-9a-f]{32}' -- "$f" | cut -d: -f1 | head -20 | paste -sd, -); [ -n "$lines" ]; then
      cfdw_log "SECRET LEAK: an access token found in $f (line(s) $lines)"
      found=1
    fi
  done
  return $found
}

# cfdw_make_tls_cert DIR: a self-signed certificate (EC P-256, valid for 2
# days) for the IP address 127.0.0.1 (subjectAltName IP:127.0.0.1, so that
# libcurl's host check passes for https://127.0.0.1:PORT and fails for
# https://localhost:PORT), made with openssl, for the stand-in's TLS listener.
# DIR is created if needed and made world-readable, as is the certificate:
# the PostgreSQL server reads it as a server's ca_file (a self-signed
# certificate is its own CA).  The key stays private to the caller.  Sets
# and exports STANDIN_CA_FILE (the certificate) and CFDW_STANDIN_TLS_KEY.
cfdw_make_tls_cert() {
  local dir=${1:?usage: cfdw_make_tls_cert DIR} out
  command -v openssl >/dev/null || { cfdw_log "openssl is not installed (test/install-deps.sh)"; return 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  if ! out=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes       -keyout "$dir/standin-key.pem" -out "$dir/standin-cert.pem" -days 2       -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>&1); then
    cfdw_log "openssl could not make a certificate: $out"
    return 1
  fi
  chmod 644 "$dir/standin-cert.pem"
  chmod 600 "$dir/standin-key.pem"
  STANDIN_CA_FILE=$dir/standin-cert.pem
  CFDW_STANDIN_TLS_KEY=$dir/standin-key.pem
  export STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY
}

# cfdw_start_standin DIR: starts the Confluence stand-in in the background,
# its output in DIR/standin.log, and waits (CFDW_STANDIN_TIMEOUT s) until it
# has written both port files and answers /_standin/health.  The stand-in
# takes the accepted credentials from the CFDW_* variables, so call
# cfdw_gen_credentials first.  Extra arguments for standin.py can be put in
# the array CFDW_STANDIN_ARGS.  After cfdw_make_tls_cert (STANDIN_CA_FILE and
# CFDW_STANDIN_TLS_KEY set) it also listens with TLS on a third port, sharing
# the state of the others: STANDIN_TLS_URL (https://127.0.0.1:PORT).
cfdw_start_standin() {
  local dir=${1:?usage: cfdw_start_standin DIR}
  local timeout=${CFDW_STANDIN_TIMEOUT:-20} p1='' p2='' p3=0 i tls=0
  local -a tls_args=()
  : "${CFDW_TOKEN:?call cfdw_gen_credentials first}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -f "$dir/standin.port" "$dir/standin2.port" "$dir/standin_tls.port"
  if [ -n "${STANDIN_CA_FILE:-}" ] && [ -n "${CFDW_STANDIN_TLS_KEY:-}" ]; then
    tls=1 p3=''
    tls_args=(--tls-cert "$STANDIN_CA_FILE" --tls-key "$CFDW_STANDIN_TLS_KEY"
              --tls-port-file "$dir/standin_tls.port")
  fi
  python3 "$CFDW_ROOT/test/standin.py" --port 0 \
    --port-file "$dir/standin.port" --extra-port-file "$dir/standin2.port" \
    --max-lifetime-s "${CFDW_STANDIN_MAX_LIFETIME:-5400}" \
    ${tls_args[@]+"${tls_args[@]}"} \
    ${CFDW_STANDIN_ARGS[@]+"${CFDW_STANDIN_ARGS[@]}"} \
    >"$dir/standin.log" 2>&1 </dev/null &
  STANDIN_PID=$!
  export STANDIN_PID
  for ((i = 0; i < timeout * 10; i++)); do
    [ -s "$dir/standin.port" ] && p1=$(<"$dir/standin.port")
    [ -s "$dir/standin2.port" ] && p2=$(<"$dir/standin2.port")
    [ "$tls" = 1 ] && [ -s "$dir/standin_tls.port" ] && p3=$(<"$dir/standin_tls.port")
    p1=${p1//[[:space:]]/} p2=${p2//[[:space:]]/} p3=${p3//[[:space:]]/}
    [[ $p1 =~ ^[0-9]+$ && $p2 =~ ^[0-9]+$ && $p3 =~ ^[0-9]+$ ]] && break
    if ! kill -0 "$STANDIN_PID" 2>/dev/null; then
      cfdw_log "the stand-in exited during start-up; its log:"
      tail -50 "$dir/standin.log" >&2
      STANDIN_PID=''
      return 1
    fi
    sleep 0.1
  done
  if ! [[ $p1 =~ ^[0-9]+$ && $p2 =~ ^[0-9]+$ && $p3 =~ ^[0-9]+$ ]]; then
    cfdw_log "the stand-in wrote no port files within ${timeout}s; its log:"
    tail -50 "$dir/standin.log" >&2
    cfdw_stop_standin
    return 1
  fi
  STANDIN_URL="http://127.0.0.1:$p1"
  STANDIN_URL2="http://127.0.0.1:$p2"
  export STANDIN_URL STANDIN_URL2
  if [ "$tls" = 1 ]; then
    STANDIN_TLS_URL="https://127.0.0.1:$p3"
    export STANDIN_TLS_URL
  fi
  if ! curl -fsS --max-time 5 -o /dev/null "$STANDIN_URL/_standin/health"; then
    cfdw_log "the stand-in does not answer $STANDIN_URL/_standin/health; its log:"
    tail -50 "$dir/standin.log" >&2
    cfdw_stop_standin
    return 1
  fi
  if [ "$tls" = 1 ] && ! curl -fsS --max-time 5 --cacert "$STANDIN_CA_FILE" -o /dev/null "$STANDIN_TLS_URL/_standin/health"; then
    cfdw_log "the stand-in's TLS listener does not answer $STANDIN_TLS_URL/_standin/health; its log:"
    tail -50 "$dir/standin.log" >&2
    cfdw_stop_standin
    return 1
  fi
  cfdw_log "stand-in (pid $STANDIN_PID) at $STANDIN_URL and $STANDIN_URL2${STANDIN_TLS_URL:+ and $STANDIN_TLS_URL}"
}

# cfdw_stop_pid PID [NAME]: SIGTERM, then SIGKILL after 5 s, then reap.
# Does nothing for an empty or gone PID, so it is safe to call twice.
cfdw_stop_pid() {
  local pid=${1:-} name=${2:-process} i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      cfdw_log "$name (pid $pid) ignored SIGTERM, killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

# cfdw_build_and_install: the Debian packages the main job needs (not the
# test toolchain), then make and make install with the pg_config of "Which
# PostgreSQL"; sets PG_CONFIG.
cfdw_build_and_install() {
  bash "$CFDW_ROOT/test/install-deps.sh" --main
  cfdw_detect_pg
  PG_CONFIG=$(cfdw_pg_config)
  make -s -C "$CFDW_ROOT" PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -C "$CFDW_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# Stops only the process cfdw_start_standin started (by its pid).
cfdw_stop_standin() {
  cfdw_stop_pid "${STANDIN_PID:-}" stand-in
  STANDIN_PID=''
}

# Server settings for a throw-away cluster that can run pg_cron jobs.  Found
# by trying them on this machine (see test/pgcron-smoke.sh):
#  - shared_preload_libraries=pg_cron,confluence_fdw: pg_cron refuses to
#    load otherwise, and confluence_fdw's queue worker and shared rate limits
#    need it (CFDW_PRELOAD overrides the list, e.g. to test without them).
#  - confluence_fdw.database_name: the database whose queue the worker sends;
#    like pg_cron's launcher it waits (FATAL, restarted every second) until
#    pg_regress has created it.
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
  local o preload=${CFDW_PRELOAD-pg_cron,confluence_fdw}
  CFDW_PGVE_OPTS=()
  if cfdw_have_pg_cron; then
    CFDW_PGVE_OPTS+=(-o "cron.database_name=${CFDW_CRON_DB:-contrib_regression}"
                     -o "cron.use_background_workers=on")
  else
    # where the PostgreSQL has no pg_cron (19 in Debian, so far), the rest
    # runs without it
    preload=$(printf '%s' "$preload" | tr ',' '\n' | { grep -vx pg_cron || true; } | paste -sd, -)
  fi
  CFDW_PGVE_OPTS+=(
    -o "shared_preload_libraries=$preload"
    -o "confluence_fdw.database_name=${CFDW_QUEUE_DB:-${CFDW_CRON_DB:-contrib_regression}}"
    -o "max_worker_processes=16"
    -o "log_min_messages=${CFDW_LOG_MIN_MESSAGES:-debug5}"
    -o "log_statement=${CFDW_LOG_STATEMENT:-all}"
    -o "log_line_prefix=%m [%p] "
  )
  for o in ${CFDW_EXTRA_PG_OPTS:-}; do
    CFDW_PGVE_OPTS+=(-o "$o")
  done
}

# cfdw_have_pg_cron: whether pg_cron is installed for this PostgreSQL.
cfdw_have_pg_cron() {
  [ -f "$("$CFDW_PG_CONFIG" --pkglibdir 2>/dev/null)/pg_cron.so" ]
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

# CFDW_KEEP_SERVER_LOGS=DIR: every throw-away cluster's server log is copied
# to DIR (postgresql-PORT-PID.log) when its CMD ends, e.g. for test/sanitize.sh,
# whose UBSan reports go to the servers' stderr.  (lib.sh run as a program:
# `bash test/lib.sh --keep-server-log DIR CMD...` runs CMD, then copies:
# see the end of this file.)
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
  # CFDW_PGVE_PLAIN=1: a plain cluster (no pg_cron, default logging), e.g.
  # for benchmarks, where logging every statement would cost time.
  [ "${CFDW_PGVE_PLAIN:-0}" = 1 ] && CFDW_PGVE_OPTS=()
  # CFDW_POSTMASTER_ENV=FILE: the cluster's environment file (pg_ctlcluster
  # starts the server with only the variables it lists), e.g. the
  # sanitizers' LD_PRELOAD and options of test/sanitize.sh.  No blanks in FILE.
  [ -n "${CFDW_POSTMASTER_ENV:-}" ] && CFDW_PGVE_OPTS+=(-c "--environment=$CFDW_POSTMASTER_ENV")
  if [ "$CFDW_PG_DEBIAN" != 1 ]; then
    cfdw_own_cluster "$@"
    return
  fi
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
      bash -c ': >"$0"; exec "$@"' "$marker" \
      ${CFDW_KEEP_SERVER_LOGS:+bash "$CFDW_ROOT/test/lib.sh" --keep-server-log "$CFDW_KEEP_SERVER_LOGS"} \
      "$@" || rc=$?
    [ -e "$marker" ] && break
    cfdw_log "the throw-away cluster did not start on port $port (attempt $attempt of 3)"
  done
  rm -f "$marker"
  return $rc
}

# as_postgres CMD...: CMD as the postgres user when run as root (a cluster
# cannot be owned by root), else as the caller.
cfdw_as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# cfdw_own_cluster CMD...: what cfdw_pg_virtualenv does, for an installation
# pg_virtualenv cannot serve (a source build, another distribution): a
# cluster made by that installation's initdb in a mktemp folder (its unix
# socket there too), the CFDW_PGVE_OPTS settings in its postgresql.conf,
# started with pg_ctl, CMD run with PGHOST/PGPORT/PGUSER/PGDATABASE set,
# then stopped and deleted.  Connections through the socket are trusted,
# and only the cluster's user (and root) may enter the folder it is in
# (mode 700); TCP connections are refused, since anyone on the machine
# could make them.  Returns CMD's status.
cfdw_own_cluster() {
  local bindir dir rc=0 i kv
  bindir=$("$CFDW_PG_CONFIG" --bindir)
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    cfdw_log "run as root, the clusters belong to a user postgres, and there is none"
    return 1
  fi
  dir=$(mktemp -d /tmp/cfdw-cluster.XXXXXX)
  chmod 700 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  if ! cfdw_as_postgres "$bindir/initdb" -D "$dir/data" -U postgres \
         --auth-local=trust --auth-host=reject -E UTF8 \
         >"$dir/initdb.log" 2>&1; then
    cfdw_log "initdb ($bindir) failed:"
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    return 1
  fi
  {
    echo "port = $(cfdw_free_pgport)"
    echo "listen_addresses = 'localhost'"
    echo "unix_socket_directories = '$dir'"
    for ((i = 0; i < ${#CFDW_PGVE_OPTS[@]}; i++)); do
      case ${CFDW_PGVE_OPTS[i]} in
        -o)
          kv=${CFDW_PGVE_OPTS[i + 1]}
          printf "%s = '%s'\n" "${kv%%=*}" "$(printf '%s' "${kv#*=}" | sed "s/'/''/g")"
          i=$((i + 1)) ;;
        -c)
          kv=${CFDW_PGVE_OPTS[i + 1]}
          [[ $kv == --environment=* ]] && cp "${kv#--environment=}" "$dir/environment"
          i=$((i + 1)) ;;
      esac
    done
  } >>"$dir/data/postgresql.conf"
  touch "$dir/environment" "$dir/server.log"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/environment" "$dir/server.log"
  export CFDW_CLUSTER_DIR=$dir PGHOST=$dir PGUSER=postgres PGDATABASE=postgres
  PGPORT=$(sed -n 's/^port = //p' "$dir/data/postgresql.conf" | tail -1)
  export PGPORT
  unset PGPASSWORD
  if cfdw_cluster_ctl start; then
    (
      if [ -n "${CFDW_KEEP_SERVER_LOGS:-}" ]; then
        bash "$CFDW_ROOT/test/lib.sh" --keep-server-log "$CFDW_KEEP_SERVER_LOGS" "$@"
      else
        "$@"
      fi
    ) || rc=$?
  else
    cfdw_log "the cluster did not start; its log:"
    tail -50 "$dir/server.log" >&2
    rc=1
  fi
  [ "$rc" = 0 ] || { cfdw_log "the server log's last lines:"; tail -100 "$dir/server.log" >&2; }
  cfdw_cluster_ctl stop -m immediate >/dev/null 2>&1 || true
  unset CFDW_CLUSTER_DIR
  rm -rf "$dir"
  return $rc
}

# cfdw_cluster_env_file: inside a throw-away cluster, the file of variables
# its server starts with (NAME = 'value' lines, as pg_ctlcluster reads them).
cfdw_cluster_env_file() {
  if [ -n "${CFDW_CLUSTER_DIR:-}" ]; then
    printf '%s\n' "$CFDW_CLUSTER_DIR/environment"
  else
    printf '%s\n' "$PG_CLUSTER_CONF_ROOT/$CFDW_PG_VERSION/regress/environment"
  fi
}

# cfdw_cluster_ctl ACTION [ARG...]: stop, start or restart the throw-away
# cluster this runs in, waiting until done (ARG: pg_ctl's, e.g. -m fast).
cfdw_cluster_ctl() {
  local action=$1 line
  local -a envs=()
  shift
  if [ -z "${CFDW_CLUSTER_DIR:-}" ]; then
    pg_ctlcluster "$CFDW_PG_VERSION" regress "$action" "$@"
    return
  fi
  # The server starts with a clean environment and the variables of the
  # environment file, as with pg_ctlcluster: never with the caller's
  # (credentials, proxies).
  envs=(PATH=/usr/local/bin:/usr/bin:/bin LANG="${LC_ALL:-${LANG:-C.UTF-8}}")
  while IFS= read -r line; do
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)\ *=\ *\'(.*)\'$ ]] && envs+=("${BASH_REMATCH[1]}=${BASH_REMATCH[2]}")
  done <"$CFDW_CLUSTER_DIR/environment"
  cfdw_as_postgres env -i "${envs[@]}" "$("$CFDW_PG_CONFIG" --bindir)/pg_ctl" \
    -D "$CFDW_CLUSTER_DIR/data" -l "$CFDW_CLUSTER_DIR/server.log" -w "$action" "$@" >/dev/null
}

cfdw_server_log() {
  local f
  if [ -n "${CFDW_CLUSTER_DIR:-}" ]; then
    printf '%s\n' "$CFDW_CLUSTER_DIR/server.log"
    return
  fi
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

# ---- contract test: Stoplight Prism (test/contract/, sql/contract.sql) ----
# Prism serves Atlassian's Confluence REST API v2 spec as a validating mock:
# a request the spec does not allow gets a 4xx (the spec's own, with an empty
# body) and Prism's reasons in the sl-violations header.  A small recorder
# (test/contract/recorder.py) sits in front of it, passes every request and
# answer through unchanged and keeps method, path, operation, status and
# violations for the test to read (confluence_fdw shows SQL the status and
# body, never the headers).  Prism's version is pinned in
# test/contract/package.json + package-lock.json; node_modules is installed
# by `npm ci`, never committed.

# cfdw_contract_npm_ci: install test/contract/node_modules with `npm ci`
# unless it is already installed from the current package.json and
# package-lock.json (a stamp file holds their sha256).  Needs node and npm
# (test/install-deps.sh installs Debian's when node is missing).
cfdw_contract_npm_ci() {
  local dir=$CFDW_ROOT/test/contract sum
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    cfdw_log "node/npm not found (run test/install-deps.sh)"
    return 1
  fi
  sum=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/node_modules/.bin/prism" ] && [ "$(cat "$dir/node_modules/.cfdw-lock-sha256" 2>/dev/null)" = "$sum" ]; then
    return 0
  fi
  cfdw_log "npm ci in test/contract (node $(node --version), npm $(npm --version))"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2 || { cfdw_log "npm ci failed"; return 1; }
  printf '%s\n' "$sum" >"$dir/node_modules/.cfdw-lock-sha256"
}

# cfdw_start_prism DIR: installs Prism if needed, writes the adjusted spec
# (test/contract/prepare-spec.py -> test/contract/build/openapi.prism.json),
# starts `prism mock --errors` on a free loopback port (log: DIR/prism.log)
# and the recorder in front of it (log: DIR/prism-recorder.log), waits
# (CFDW_PRISM_TIMEOUT s, default 60) until both answer, and exports
#   PRISM_URL         the recorder: what the tests use as base_url
#   PRISM_DIRECT_URL  Prism itself
#   PRISM_PID, PRISM_RECORDER_PID
# Static responses (no --dynamic): the spec's examples, or values Prism
# derives from the schemas, the same on every run.
cfdw_start_prism() {
  local dir=${1:?usage: cfdw_start_prism DIR}
  local cdir=$CFDW_ROOT/test/contract timeout=${CFDW_PRISM_TIMEOUT:-60}
  local spec=$CFDW_ROOT/test/contract/build/openapi.prism.json port='' rport='' attempt i code
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cfdw_contract_npm_ci || return 1
  python3 "$cdir/prepare-spec.py" --out "$spec" >&2 || { cfdw_log "prepare-spec.py failed"; return 1; }
  PRISM_PID=''
  for attempt in 1 2 3; do
    code=''
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # timeout: a Prism left behind by a killed run still goes away.
    timeout -k 10 "${CFDW_PRISM_MAX_LIFETIME:-5400}" "$cdir/node_modules/.bin/prism" mock \
      -h 127.0.0.1 -p "$port" --errors "$spec" >"$dir/prism.log" 2>&1 </dev/null &
    PRISM_PID=$!
    for ((i = 0; i < timeout * 10; i++)); do
      kill -0 "$PRISM_PID" 2>/dev/null || break
      # Any HTTP answer (404 for this path) means it is listening.
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/_cfdw_ready" || true)
      [ "$code" != 000 ] && [ -n "$code" ] && break
      sleep 0.1
    done
    [ "$code" != 000 ] && [ -n "$code" ] && kill -0 "$PRISM_PID" 2>/dev/null && break
    cfdw_log "Prism did not start on port $port (attempt $attempt of 3); its log:"
    tail -20 "$dir/prism.log" >&2
    cfdw_stop_prism
    [ "$attempt" = 3 ] && return 1
  done
  export PRISM_PID PRISM_DIRECT_URL="http://127.0.0.1:$port"
  rm -f "$dir/prism-recorder.port"
  python3 "$cdir/recorder.py" --upstream "$PRISM_DIRECT_URL" --spec "$spec" --port 0 \
    --port-file "$dir/prism-recorder.port" --max-lifetime-s "${CFDW_PRISM_MAX_LIFETIME:-5400}" \
    >"$dir/prism-recorder.log" 2>&1 </dev/null &
  PRISM_RECORDER_PID=$!
  export PRISM_RECORDER_PID
  for ((i = 0; i < 200; i++)); do
    [ -s "$dir/prism-recorder.port" ] && rport=$(<"$dir/prism-recorder.port")
    rport=${rport//[[:space:]]/}
    [[ $rport =~ ^[0-9]+$ ]] && break
    kill -0 "$PRISM_RECORDER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! [[ $rport =~ ^[0-9]+$ ]] ||
     ! curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$rport/_contract/health"; then
    cfdw_log "the Prism recorder did not start; its log:"
    tail -20 "$dir/prism-recorder.log" >&2
    cfdw_stop_prism
    return 1
  fi
  export PRISM_URL="http://127.0.0.1:$rport" PRISM_RESULTS_DIR=$dir
  cfdw_log "Prism $(node -p 'require(process.argv[1]).version' "$cdir/node_modules/@stoplight/prism-cli/package.json" 2>/dev/null) (pid $PRISM_PID) at $PRISM_DIRECT_URL, recorder (pid $PRISM_RECORDER_PID) at $PRISM_URL"
}

# Stops only the processes cfdw_start_prism started (by their pids):
# SIGTERM, then SIGKILL after 5 s.  Safe to call twice.  Before that, saves
# the recorder's plain-text report (requests per spec operation, statuses,
# violations) as DIR/contract-report.txt.
cfdw_stop_prism() {
  local pid
  # The recorder's summary of the requests it saw, per spec operation.
  if [ -n "${PRISM_RECORDER_PID:-}" ] && [ -n "${PRISM_RESULTS_DIR:-}" ] && kill -0 "$PRISM_RECORDER_PID" 2>/dev/null; then
    curl -fsS --max-time 5 -o "$PRISM_RESULTS_DIR/contract-report.txt" "$PRISM_URL/_contract/report" ||
      cfdw_log "could not fetch the contract report"
  fi
  for pid in ${PRISM_RECORDER_PID:-} ${PRISM_PID:-}; do
    cfdw_stop_pid "$pid" Prism
  done
  PRISM_PID='' PRISM_RECORDER_PID=''
}

# cfdw_installed_report PG_CONFIG: say which confluence_fdw is installed
# for that PostgreSQL (files, versions, the Debian package that owns them),
# or fail when it is not.
cfdw_installed_report() {
  local pgc=$1 share lib f
  share=$("$pgc" --sharedir)/extension
  lib=$("$pgc" --pkglibdir)
  for f in "$share/confluence_fdw.control" "$lib/confluence_fdw.so"; do
    if [ ! -f "$f" ]; then
      echo "confluence_fdw is not installed for $("$pgc" --version): $f is missing" >&2
      return 1
    fi
  done
  echo "installed: $lib/confluence_fdw.so; scripts: $(cd "$share" && ls confluence_fdw--*.sql | tr '\n' ' ')"
  echo "default_version: $(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$share/confluence_fdw.control")"
  if command -v dpkg-query >/dev/null && dpkg-query -S "$lib/confluence_fdw.so" >/dev/null 2>&1; then
    echo "package: $(dpkg-query -S "$lib/confluence_fdw.so" | cut -d: -f1) $(dpkg-query -W -f='${Version}' "$(dpkg-query -S "$lib/confluence_fdw.so" | cut -d: -f1)")"
  else
    echo "package: none (installed by make install)"
  fi
}

# Run as a program inside a throw-away cluster: cfdw_cluster_ctl.
if [ "${1:-}" = --cluster-ctl ] && [ "${BASH_SOURCE[0]}" = "$0" ]; then
  shift
  cfdw_cluster_ctl "$@"
  exit $?
fi

# Run as a program by cfdw_pg_virtualenv, inside the cluster, when
# CFDW_KEEP_SERVER_LOGS is set: run CMD, then copy the server log.
if [ "${1:-}" = --keep-server-log ] && [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  keep_dir=$2
  shift 2
  "$@"
  keep_rc=$?
  if keep_log=$(cfdw_server_log); then
    cp "$keep_log" "$keep_dir/postgresql-$PGPORT-$$.log" || keep_rc=1
  else
    keep_rc=1
  fi
  exit $keep_rc
fi
