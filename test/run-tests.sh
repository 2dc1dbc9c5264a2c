#!/usr/bin/env bash
# confluence_fdw's test runner (also what .ci/run runs).
#
#   bash test/run-tests.sh
#
# 1. installs the Debian packages (test/install-deps.sh; nothing if present);
# 2. builds with warnings as errors and installs the extension;
# 3. makes fresh random credentials and a self-signed certificate for
#    127.0.0.1, starts the Confluence stand-in (test/standin.py) on free
#    loopback ports (plain HTTP, a second listener, TLS), and Prism with Atlassian's v2
#    spec for the contract test (test/contract/, sql/contract.sql);
# 4. runs `make installcheck` against a throw-away cluster (pg_virtualenv)
#    that has pg_cron preloaded, and keeps the server log;
# 4b. runs the suites that send requests again through the realistic front
#    (test/front.sh: nginx with TLS, HTTP/2 and HTTP/1.1, host names from a
#    private hosts file, a test CA), once over HTTP/2 by a name with an IPv4
#    and an IPv6 address and once over HTTP/1.1, each in a fresh cluster,
#    with statement_timeout 8 s so that a stall fails instead of passing
#    slowly.  Expected outputs are expected/ unless test/front/expected/ has
#    one of its own (where only the front can differ: nginx answers a
#    dropped connection with 502, say).  The whole run is in a private mount
#    namespace (unshare -m) where the hosts file and a CA bundle with the
#    test CA are bind-mounted; the machine's own files are never changed;
# 5. checks that no secret appears in the server log or the test outputs;
# 6. runs the extra scripts listed below.
# Exits 0 only if all of that passed.  Artifacts: results/, regression.diffs
# (pg_regress) and test/results/ (server log, stand-in log, installcheck log,
# prism.log, contract-report.txt).
#
# Knobs (environment):
#   CFDW_SKIP_DEPS=1         skip step 1
#   CFDW_SKIP_BUILD=1        skip step 2 (the extension must be installed)
#   CFDW_INSTALLED=1         installcheck of the extension as installed (a
#                            package, or a DBA's own `make install`): no
#                            build, no install, the installed files are
#                            checked to be there and named; the C unit
#                            tests (which test the source tree) are left out
#   CFDW_FRONT_RUNS="h2 h1"  front runs of step 4b ("" for none)
#   CFDW_REGRESS="a b"       run only these pg_regress tests (default: the Makefile's REGRESS)
#   CFDW_SKIP_EXTRAS=1       skip step 6 (for a quick run of a few tests)
#   CFDW_EXTRAS_ONLY="a b"   run only the extra scripts whose command line
#                            contains one of these words (test/pgtree.sh)
#   CFDW_COPT=...            extra compiler flags for the -Werror build
#   CFDW_INSTALLCHECK_TIMEOUT  seconds before `make installcheck` is killed (default 2700)
#   CFDW_LOG_MIN_MESSAGES, CFDW_EXTRA_PG_OPTS, CFDW_STANDIN_TIMEOUT: see test/lib.sh
#   CFDW_PRISM_TIMEOUT: see test/lib.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh
# shellcheck source-path=SCRIPTDIR source=front.sh
source test/front.sh

# ------------------------------------------------------------------------
# EXTRA TESTS: add more test scripts here (command lines, run with bash -c
# from the project root; a non-zero exit fails the run; all are run).
#
# EXTRA_IN_CLUSTER: run inside the throw-away cluster, after `make
# installcheck`.  PGHOST/PGPORT/PGUSER/PGPASSWORD are set (PGDATABASE=postgres;
# the database contrib_regression exists, with pg_cron's launcher attached),
# as are STANDIN_URL, STANDIN_URL2, STANDIN_TLS_URL (https: the stand-in's
# TLS listener), STANDIN_CA_FILE (its certificate), CFDW_USER, CFDW_TOKEN, CFDW_TOKEN2,
# CFDW_BEARER, CFDW_BAD_TOKEN, CFDW_RESULTS_DIR (test/results, absolute) and
# CFDW_SERVER_LOG (the live server log).
EXTRA_IN_CLUSTER=(
)
# EXTRA_AFTER: run after the cluster is gone and the stand-in stopped (C
# unit tests, checks of the logs).  CFDW_SERVER_LOG is then the copy
# test/results/postgresql.log; the CFDW_* credentials are still set.
# The suites the sanitizer run takes: all but front.  Under the sanitizers
# its egress test once stalled until its statement_timeout (a pipelined
# INSERT into a server that egress control refuses; every address is
# refused at once, and 600 repetitions since, with and without ASan, never
# stalled): an open finding (README, "Under AddressSanitizer and UBSan")
# that must not fail every run while it is looked into.  front still runs
# in the direct and front runs above.
SANITIZE_REGRESS=$(sed -n 's/^REGRESS = //p' Makefile | sed 's/ front / /')
EXTRA_AFTER=(
  # the soak through the front, over HTTP/2 (~15 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 SOAK_FRONT=h2 bash bench/soak.sh 3000"
  "make -s PG_CONFIG=$(cfdw_pg_config 2>/dev/null || echo pg_config) unit unit-asan unit-valgrind"
  "bash test/check_secrets_selftest.sh"
  # the stand-in's own self-check (~10 s)
  "python3 test/test_standin.py"
  # 5,000 rows through the pipelined and RETURNING paths with random 429/503
  # answers: every row created exactly once, memory flat (~15 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash bench/soak.sh 5000"
  # 21,500 rows answered 400 with on_error 'return': memory stays flat (~10 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/memory-failures.sh"
  # a scan of 100,000 pages: streamed page by page, memory flat (~10 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/read-memory.sh"
  # Markdown conversions: memory flat, and out of memory an ERROR (~10 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/content-memory.sh"
  "python3 test/contract/prepare-spec.py --selftest"
  # delivery 'queue': kill -9 of the worker and an immediate shutdown in
  # the middle of 500-row deliveries, a fast shutdown and one with
  # synchronous_commit off during 300 comments (~60 s), and a failover to a
  # synchronous standby (~15 s): every row sent once
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-crash.sh"
  # the worker reads SIGHUP between rows; a lock timeout while it resolves
  # a table costs a retry, not the rows (~25 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-worker.sh"
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-failover.sh"
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/rate-limit.sh"
  # 150 connect timeouts against a site that drops SYNs, then it is back:
  # the session and the worker deliver again without disconnect_all() (~40 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/connect-timeouts.sh"
  # pg_dump / pg_restore into a fresh cluster: servers, mappings, tables and
  # queued rows kept, the same requests sent (~15 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/dump-restore.sh"
  # released scripts frozen, every upgrade path equal to a fresh install, and
  # a real upgrade from each release with rows waiting in the queue (~25 s)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/versions.sh"
  # the regression suites (all but front, see SANITIZE_REGRESS above),
  # queue-crash, queue-worker, connect-timeouts, rate-limit, the unit tests
  # and the fuzz corpora with the extension built with ASan and UBSan, the
  # runtimes preloaded into the servers: no sanitizer report (~4.5 min)
  "CFDW_SKIP_DEPS=1 CFDW_REGRESS='$SANITIZE_REGRESS' bash test/sanitize.sh"
  # the Debian package: dpkg-buildpackage, lintian, and autopkgtest, which
  # runs this whole suite again against the installed package (~10 min)
  "CFDW_SKIP_DEPS=1 bash test/package.sh --autopkgtest"
  # The other majors, each in a Debian root file system of the release that
  # packages it (test/pgtree.sh; made on first use, 1 to 3 min each, then
  # reused): built with -Wextra -Werror and unit-tested against that
  # release's libraries, then
  #  - 17 (trixie): its package built, lintian-checked and installed, and
  #    its autopkgtest: this whole suite against the installed package
  #  - 18 (forky): the direct run of the suites (all but contract) and
  #    queue-crash, queue-failover, dump-restore, versions; its package
  #  - 19 (sid and experimental): the same, without pg_cron (none yet)
  "bash test/pgtree.sh test 17 --autopkgtest"
  "bash test/pgtree.sh test 18 --package"
  "bash test/pgtree.sh test 19"
  # this machine's dump restored into 17 and into 18 (~20 s each)
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 DR_NEW_MAJOR=17 bash test/dump-restore.sh"
  "CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 DR_NEW_MAJOR=18 bash test/dump-restore.sh"
)
# ------------------------------------------------------------------------

# -Wextra on top of PGXS's -Wall, as errors, minus unused-parameter: PostgreSQL
# 15's own headers trip it (inline functions in lib/ilist.h, storage/bufpage.h,
# fmgr.h), and so do FDW and libcurl callbacks.  Nothing else was needed for
# those headers (checked with the FDW, executor, utils, curl, cJSON and
# libxml2 headers) nor for src/*.c as of this writing.  Note: the Makefile's
# PG_CFLAGS come after COPT on the command line, so -Wno-* flags there win.
CFDW_COPT=${CFDW_COPT:--Wextra -Werror -Wno-unused-parameter}
RESULTS_DIR=$PWD/test/results
export CFDW_RESULTS_DIR=$RESULTS_DIR
# the Markdown corpus (test/corpus) is read from here by the contract test
export CFDW_SOURCE_DIR=$PWD
# Deterministic locale: the cluster is initdb'ed with the caller's locale,
# and this gives UTF8 databases whatever the caller has.
export LC_ALL=C.UTF-8 LANG=C.UTF-8
unset LANGUAGE

run_extras() {  # run_extras LABEL CMD...
  local label=$1 cmd rc=0 t
  shift
  for cmd in "$@"; do
    t=$SECONDS
    cfdw_log "$label: $cmd"
    if bash -c "$cmd"; then
      cfdw_log "$label: ok ($((SECONDS - t)) s): $cmd"
    else
      cfdw_log "$label: FAILED ($((SECONDS - t)) s): $cmd"
      rc=1
    fi
  done
  return $rc
}

# The suites that send requests, run again through the front (4b).
FRONT_REGRESS="setup options insert returning manual http errors explain import read change content test_connection gateway triggers faults badinput queue queue_roles queue_safety cron oauth"

# ---- inside the throw-away cluster (run-tests.sh re-runs itself here) ----
# in_cluster RUN: RUN is "direct" (step 4) or "front-h2" / "front-h1" (4b).
in_cluster() {
  local run=$1 pgc rc=0 ic_rc=0 out
  pgc=$(cfdw_pg_config)
  CFDW_SERVER_LOG=$(cfdw_server_log)
  export CFDW_SERVER_LOG
  out=$RESULTS_DIR/$run
  IC_OUT=$out  # global: the EXIT trap runs after this function has returned
  mkdir -p "$out"
  cfdw_log "$run: cluster on port $PGPORT; server log $CFDW_SERVER_LOG"
  # The cluster (and its log) is deleted when this script exits, so the log
  # is copied on the way out whatever happens.
  trap 'cp "$CFDW_SERVER_LOG" "$IC_OUT/postgresql.log" || cfdw_log "could not copy the server log"' EXIT

  # Why plain `make installcheck` works with pg_cron (see test/pgcron-smoke.sh):
  # cron.database_name=contrib_regression, which does not exist when the
  # cluster starts; pg_cron's launcher then exits with FATAL "database does
  # not exist" and the postmaster restarts it every second (those FATAL
  # lines in the log are expected).  pg_regress does DROP DATABASE IF EXISTS
  # (nothing to drop) and CREATE DATABASE; within a second the launcher
  # connects to it, and a test's CREATE EXTENSION pg_cron + cron.schedule()
  # work, the jobs running as background workers in contrib_regression.
  # What does NOT work is a second pg_regress run in the same cluster: the
  # launcher stays connected to contrib_regression, so pg_regress's DROP
  # DATABASE fails ("being accessed by other users").  Hence one fresh
  # cluster per run, and no --use-existing (with it pg_regress would also
  # skip its ALTER DATABASE settings and --load-extension).
  # pg_ctlcluster starts the server with a clean environment, taken from the
  # cluster's environment file: proxy variables go there, and the server is
  # restarted with them; a backend must see them, or the run proves nothing.
  if [ -n "${CFDW_POSTMASTER_PROXY:-}" ]; then
    local v
    for v in https_proxy http_proxy all_proxy HTTPS_PROXY ALL_PROXY; do
      printf "%s = '%s'\n" "$v" "$CFDW_POSTMASTER_PROXY" >>"$(cfdw_cluster_env_file)"
    done
    cfdw_cluster_ctl restart
    psql -X -At -d postgres -c "CREATE TEMP TABLE cfdw_env (l text)" -c "COPY cfdw_env FROM PROGRAM 'env'" \
         -c "SELECT count(*) FROM cfdw_env WHERE l = 'https_proxy=$CFDW_POSTMASTER_PROXY'" | grep -qx 1 ||
      { cfdw_log "$run: the server did not get the proxy variables"; return 1; }
    cfdw_log "$run: the server runs with https_proxy, all_proxy ... = $CFDW_POSTMASTER_PROXY"
  fi
  local -a make_args=(PG_CONFIG="$pgc")
  local regress
  if [ "$run" = direct ]; then
    regress=${CFDW_REGRESS:-$(sed -n 's/^REGRESS = //p' Makefile)}
  else
    regress=${CFDW_REGRESS:-$FRONT_REGRESS}
    # pg_regress reads sql/ and expected/ from --inputdir and writes
    # results/ and regression.diffs to --outputdir (the last one given
    # wins); from PostgreSQL 16 on it reads expected/ from --expecteddir
    # instead, which is the current folder unless given
    local opts="--dbname=contrib_regression --inputdir=$FRONT_INPUT --outputdir=$out"
    [ "$CFDW_PG_VERSION" -lt 16 ] || opts+=" --expecteddir=$FRONT_INPUT"
    make_args+=(REGRESS_OPTS="$opts")
  fi
  cfdw_have_pg_cron || regress=$(printf '%s\n' $regress | { grep -vx cron || true; } | paste -sd' ' -)
  make_args+=(REGRESS="$regress")
  cfdw_log "$run: make installcheck ${make_args[*]}"
  set +e
  timeout -k 30 "${CFDW_INSTALLCHECK_TIMEOUT:-2700}" make installcheck "${make_args[@]}" 2>&1 |
    tee "$out/installcheck.log"
  ic_rc=${PIPESTATUS[0]}
  set -e
  [ "$ic_rc" = 124 ] && cfdw_log "$run: make installcheck timed out"
  if [ "$ic_rc" = 0 ] && ! grep -qE 'All [0-9]+ tests passed' "$out/installcheck.log"; then
    cfdw_log "$run: make installcheck ran no pg_regress tests (is REGRESS set in the Makefile?)"
    ic_rc=1
  fi
  [ "$ic_rc" = 0 ] || rc=1
  echo "installcheck_rc=$ic_rc" >"$out/installcheck.rc"

  if [ "$run" = direct ]; then
    run_extras "in-cluster" ${EXTRA_IN_CLUSTER[@]+"${EXTRA_IN_CLUSTER[@]}"} || rc=1
  fi
  return $rc
}

if [ "${1:-}" = --in-cluster ]; then
  in_cluster "${2:-direct}"
  exit $?
fi

# ---- outside ----
t_start=$SECONDS
step() { cfdw_log "== $* (at $((SECONDS - t_start)) s)"; }

# The server (user postgres) reads files of this folder: the Markdown corpus
# (sql/contract.sql) and the front's logs (sql/front.sql).  A clone in a
# folder it cannot enter (root's home, mode 700) would fail those suites
# half-way: say so now, before anything is installed.  Without a postgres
# user yet (a new machine), the folders on the way must let others in.
path_open_to_others() {
  local d=$PWD
  [ -r "$PWD/test/corpus/01-release-notes.md" ] || return 1
  while [ "$d" != / ]; do
    [ $(( 0$(stat -c %a "$d") % 2 )) = 1 ] || return 1
    d=$(dirname "$d")
  done
}
if [ "$(id -u)" = 0 ] && [ "${CFDW_FRONT_NS:-0}" != 1 ] &&
   { if id postgres >/dev/null 2>&1; then
       ! runuser -u postgres -- test -r "$PWD/test/corpus/01-release-notes.md" 2>/dev/null
     else
       ! path_open_to_others
     fi; }; then
  cfdw_die "the PostgreSQL server (user postgres) cannot read $PWD/test/corpus: the suites read files of the work tree from the server; clone it into a folder every user can enter (e.g. /srv or /tmp), or make the path readable (chmod o+x on each parent folder)"
fi

if [ "${CFDW_SKIP_DEPS:-0}" != 1 ]; then
  step "dependencies"
  bash test/install-deps.sh
fi

PGC=$(cfdw_pg_config)
export PG_CONFIG=$PGC
cfdw_log "PostgreSQL: $("$PGC" --version) ($PGC); clusters from $([ "$CFDW_PG_DEBIAN" = 1 ] && echo pg_virtualenv || echo "its own initdb and pg_ctl")"


# Debian has no pg_cron for some majors yet (19): everything else runs
# (in_cluster leaves the suite out)
cfdw_have_pg_cron || cfdw_log "pg_cron is not installed for PostgreSQL $CFDW_PG_VERSION: the cron suite is left out"
if [ "${CFDW_IN_TREE:-0}" = 1 ] || [ "${CFDW_INSTALLED:-0}" = 1 ] || [ "$CFDW_PG_DEBIAN" != 1 ]; then
  # the other majors are tested from the machine's own run (Debian's
  # PostgreSQL), not from a run inside a Debian tree, against an installed
  # package or against another installation (PG_CONFIG)
  kept=()
  for cmd in "${EXTRA_AFTER[@]}"; do
    [[ $cmd == *test/pgtree.sh* || $cmd == *DR_NEW_MAJOR* ]] || kept+=("$cmd")
  done
  EXTRA_AFTER=(${kept[@]+"${kept[@]}"})
fi
if [ -n "${CFDW_EXTRAS_ONLY:-}" ]; then
  kept=()
  for cmd in "${EXTRA_AFTER[@]}"; do
    for w in $CFDW_EXTRAS_ONLY; do
      [[ $cmd == *"$w"* ]] && { kept+=("$cmd"); break; }
    done
  done
  EXTRA_AFTER=(${kept[@]+"${kept[@]}"})
fi
if [ "${CFDW_INSTALLED:-0}" = 1 ]; then
  # (again in the private namespace, which runs this script afresh)
  if [ "${CFDW_FRONT_NS:-0}" != 1 ]; then
    step "the installed extension"
    cfdw_installed_report "$PGC" || exit 1
  fi
  export CFDW_SKIP_BUILD=1
  # the unit tests compile src/ themselves: they test the tree, not the package
  kept=()
  for cmd in "${EXTRA_AFTER[@]}"; do
    # ...and the package test would run this suite again inside itself;
    # the sanitizer run builds the tree too
    [[ $cmd == make\ * || $cmd == *test/package.sh* || $cmd == *test/sanitize.sh* ]] || kept+=("$cmd")
  done
  EXTRA_AFTER=("${kept[@]}")
fi
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  step "build (COPT=$CFDW_COPT)"
  make clean PG_CONFIG="$PGC" >/dev/null
  make -j"$(nproc)" PG_CONFIG="$PGC" COPT="$CFDW_COPT"
  make install PG_CONFIG="$PGC"
fi

# Everything from here on runs in a private mount namespace where the
# front's host names resolve and its test CA is trusted (test/front.sh).
if [ "${CFDW_FRONT_NS:-0}" != 1 ]; then
  step "front: test CA and hosts file, entering a private mount namespace"
  front_dir=$(mktemp -d /tmp/cfdw-front.XXXXXX)
  # removed by this process once the run inside has ended (cfdw_front_enter
  # execs, so the shell that made it is gone: the run inside owns it)
  CFDW_FRONT_OWNER=$$
  export CFDW_FRONT_OWNER
  cfdw_front_make_ca "$front_dir"
  CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 cfdw_front_enter bash test/run-tests.sh "$@"
fi

rm -rf "$RESULTS_DIR"
mkdir -p "$RESULTS_DIR"

stop_all() {
  cfdw_proxy_stop
  cfdw_front_stop
  cfdw_stop_standin
  cfdw_stop_prism  # also saves test/results/contract-report.txt
}
step "stand-in"
cfdw_gen_credentials
# The certificate of the stand-in's TLS listener lives outside the work
# tree, in a folder the PostgreSQL server's user can read (sql/security.sql
# names it as a server's ca_file).
tls_dir=$(mktemp -d /tmp/cfdw-tls.XXXXXX)
# Only the run that made the front's folder removes it: a run nested in
# this one (the package's autopkgtest, say) inherits CFDW_FRONT_DIR, and the
# CA bundle bind-mounted from it must outlive that run.
front_dir_owned=
[ "${CFDW_FRONT_OWNER:-}" = "$$" ] && front_dir_owned=$CFDW_FRONT_DIR
trap 'stop_all; rm -rf "$tls_dir" ${front_dir_owned:+"$front_dir_owned"}' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cfdw_make_tls_cert "$tls_dir"
cfdw_start_standin "$RESULTS_DIR"

# Contract test (sql/contract.sql): Prism serving Atlassian's v2 spec, see
# test/contract/ and cfdw_start_prism in test/lib.sh.  Not started when
# CFDW_REGRESS leaves out `contract`; when it cannot start, only that test fails.
if [ -z "${CFDW_REGRESS:-}" ] || [[ " $CFDW_REGRESS " == *" contract "* ]]; then
  step "Prism (contract test)"
  cfdw_start_prism "$RESULTS_DIR" || cfdw_log "Prism did not start: the contract test will fail (log: test/results/prism.log)"
fi

# The front (nginx) and a forward proxy (tinyproxy) in front of it; their
# addresses reach every run (sql/front.sql uses them directly as well).
step "front: nginx and tinyproxy"
status=0
cfdw_front_start "$RESULTS_DIR" || status=1
cfdw_proxy_start "$RESULTS_DIR" || status=1
export STANDIN_DIRECT_URL=$STANDIN_URL STANDIN_DIRECT_URL2=$STANDIN_URL2 CFDW_FRONT_CA

# pg_regress's input folder of a front run: sql/ as it is, and for each
# suite the first of test/front/expected-VARIANT/NAME.out (where only that
# variant differs), test/front/expected/NAME.out (where the front differs)
# and expected/NAME.out.
front_input() {  # front_input VARIANT: prints the folder
  local dir=$RESULTS_DIR/front-input-$1 f
  mkdir -p "$dir/expected"
  ln -sfn "$PWD/sql" "$dir/sql"
  for f in expected/*.out test/front/expected/*.out "test/front/expected-$1"/*.out; do
    [ -e "$f" ] && ln -sf "$PWD/$f" "$dir/expected/"
  done
  printf '%s\n' "$dir"
}

declare -A run_rc=()
run_suites() {  # run_suites RUN
  local run=$1 rc=0
  step "$run: make installcheck in a throw-away cluster"
  cfdw_pg_virtualenv bash test/run-tests.sh --in-cluster "$run" || rc=$?
  run_rc[$run]=$(sed -n 's/^installcheck_rc=//p' "$RESULTS_DIR/$run/installcheck.rc" 2>/dev/null || true)
  [ -n "${run_rc[$run]}" ] || { run_rc[$run]=missing; rc=1; }
  [ -s "$RESULTS_DIR/$run/postgresql.log" ] || { cfdw_log "$run: no server log was saved"; rc=1; }
  if [ "${run_rc[$run]}" != 0 ]; then
    local diffs=regression.diffs
    [ "$run" = direct ] || diffs=$RESULTS_DIR/$run/regression.diffs
    if [ -f "$diffs" ]; then
      echo "==================== $run: regression.diffs (first 300 lines) ===================="
      head -300 "$diffs"
      echo "============================================================================="
    fi
  fi
  return $rc
}

cfdw_pgve_opts
cfdw_log "cluster settings: ${CFDW_PGVE_OPTS[*]}"
run_suites direct || status=1
# Prism is only needed by the direct run.
cfdw_stop_prism
for front in ${CFDW_FRONT_RUNS-h2 h1}; do
  (
    cfdw_front_urls "$front"
    FRONT_INPUT=$(front_input "$front")
    export FRONT_INPUT
    # A stall must fail, not pass slowly: well under connect_timeout_ms.
    export PGOPTIONS="-c statement_timeout=8s"
    # Proxy variables in the postmaster's environment are ignored: the
    # HTTP/1.1 run gives its server ones that lead nowhere (in_cluster).
    if [ "$front" = h1 ]; then
      export CFDW_POSTMASTER_PROXY=http://127.0.0.1:9
    fi
    run_suites "front-$front"
  ) || status=1
  run_rc[front-$front]=$(sed -n 's/^installcheck_rc=//p' "$RESULTS_DIR/front-$front/installcheck.rc" 2>/dev/null || echo missing)
done
# the direct run's server log, where the secrets check and later scripts expect it
cp "$RESULTS_DIR/direct/postgresql.log" "$RESULTS_DIR/postgresql.log" 2>/dev/null || true

step "secrets check"
shopt -s nullglob
secret_files=(regression.diffs regression.out results/*.out expected/*.out test/front/expected/*.out
              "$RESULTS_DIR"/standin.log "$RESULTS_DIR"/nginx-*.log "$RESULTS_DIR"/tinyproxy*.log
              "$RESULTS_DIR"/*/installcheck.log "$RESULTS_DIR"/*/regression.diffs "$RESULTS_DIR"/*/results/*.out)
server_logs=("$RESULTS_DIR"/*/postgresql.log)
shopt -u nullglob
# Prism and its recorder saw the contract test's credentials (Basic auth).
secret_files+=("$RESULTS_DIR/prism.log" "$RESULTS_DIR/prism-recorder.log" "$RESULTS_DIR/contract-report.txt")
# The server logs ran with log_statement = 'all' and log_min_messages =
# debug5: a token may appear there only in the CREATE/ALTER USER MAPPING
# statements PostgreSQL itself logs (test/check_secrets.py tells them apart).
if [ ${#server_logs[@]} -ne ${#run_rc[@]} ]; then
  cfdw_log "expected a server log from each of the ${#run_rc[@]} runs, found ${#server_logs[@]}"
  status=1
fi
for log in "${server_logs[@]}"; do
  if python3 test/check_secrets.py --server-log "$log" "${secret_files[@]}"; then
    cfdw_log "no secret found (server log $log, test outputs, expected outputs)"
  else
    cfdw_log "SECRETS LEAKED: see the lines above"
    status=1
  fi
done
stop_all

export CFDW_SERVER_LOG=$RESULTS_DIR/postgresql.log
if [ ${#EXTRA_AFTER[@]} -gt 0 ] && [ "${CFDW_SKIP_EXTRAS:-0}" != 1 ]; then
  step "extra tests"
  run_extras "after" "${EXTRA_AFTER[@]}" || status=1
fi

step "done"
if [ "$status" = 0 ]; then
  cfdw_log "ALL TESTS PASSED in $((SECONDS - t_start)) s"
else
  cfdw_log "TESTS FAILED (installcheck: $(for r in "${!run_rc[@]}"; do printf '%s=%s ' "$r" "${run_rc[$r]}"; done)) after $((SECONDS - t_start)) s; artifacts in results/, regression.diffs, test/results/"
fi
exit "$status"
