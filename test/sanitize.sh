#!/usr/bin/env bash
# The extension under AddressSanitizer and UndefinedBehaviorSanitizer, as
# root, on Debian 12 (the packages test/install-deps.sh installs):
#
#   bash test/sanitize.sh
#
# 1. enters a private mount namespace where PostgreSQL's lib/ and
#    extension/ folders are private copies, so the instrumented build is
#    installed only there: the system's PostgreSQL keeps its own files,
#    during the run and after it;
# 2. builds the extension with gcc -fsanitize=address,undefined
#    -fno-sanitize-recover=all -fno-omit-frame-pointer (run-tests.sh's
#    build, with these in CFDW_COPT) and installs it;
# 3. starts every throw-away cluster with an environment file
#    (CFDW_POSTMASTER_ENV, test/lib.sh) that preloads libasan into the
#    postmaster (an uninstrumented program can load an instrumented module
#    only when the runtime comes first) and sets ASAN_OPTIONS (detect_leaks=0:
#    PostgreSQL leaves its memory to exit on purpose) and UBSAN_OPTIONS
#    (halt_on_error), each with a log_path: a report ends the backend and
#    is written there;
# 4. runs the regression suites (run-tests.sh's direct run, no front runs,
#    no extra scripts), test/queue-crash.sh, the C unit tests under the
#    sanitizers (make unit-asan) and each fuzz harness once over its seed
#    corpus (fuzz/corpus/NAME, libFuzzer -runs=0);
# 5. copies the reports to test/results/sanitizer/ and fails when there is
#    any, or when a step failed.  Removes the instrumented objects from the
#    tree at the end (make clean).
#
# Knobs: CFDW_SKIP_DEPS=1 (no install-deps.sh), CFDW_REGRESS (as run-tests.sh).
# Status (README.md, "Tests"): no cluster starts yet, because `postgres -V`
# with libasan preloaded waits forever in glibc's bindtextdomain().
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
# the servers': no leak check (PostgreSQL leaves memory to exit on purpose);
# malloc() returns NULL when it cannot allocate, as without ASan, and
# PostgreSQL reports "out of memory" itself
ASAN_SERVER_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1:quarantine_size_mb=32:malloc_context_size=20"

if [ "${CFDW_SANITIZE_NS:-0}" != 1 ]; then
  [ "$(id -u)" = 0 ] || cfdw_die "sanitize: run as root (a private mount namespace, as run-tests.sh)"
  [ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
  pgc=$(cfdw_pg_config)
  libdir=$("$pgc" --pkglibdir)
  extdir=$("$pgc" --sharedir)/extension
  priv=$(mktemp -d /tmp/cfdw-sanitize.XXXXXX)
  chmod 755 "$priv"
  trap 'rm -rf "$priv"' EXIT
  cp -a "$libdir" "$priv/lib"
  cp -a "$extdir" "$priv/ext"
  rc=0
  t0=$SECONDS
  # shellcheck disable=SC2016
  CFDW_SANITIZE_NS=1 CFDW_SANITIZE_DIR=$priv unshare -m --propagation private bash -c '
    mount --bind "$1/lib" "$2" && mount --bind "$1/ext" "$3" && exec bash test/sanitize.sh' \
    sanitize "$priv" "$libdir" "$extdir" || rc=$?
  # the instrumented objects must not be taken for a normal build's
  make -s clean PG_CONFIG="$pgc" >/dev/null 2>&1 || true
  cfdw_log "sanitize: $([ $rc = 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
  exit $rc
fi

# ---- inside the private namespace ----
priv=$CFDW_SANITIZE_DIR
reports=$priv/reports
mkdir -p "$reports"
# the servers run as postgres and write their reports here
chmod 1777 "$reports"
libasan=$(realpath "$(gcc -print-file-name=libasan.so)")
[ -e "$libasan" ] || cfdw_die "sanitize: gcc has no libasan.so ($libasan)"
# ASan's runtime initialised before any other library's constructor: without
# it `postgres -V` hangs in bindtextdomain(); and UBSAN_OPTIONS handed to
# UBSan's runtime, which cannot read it itself (test/asan_initfirst.c)
initfirst=$priv/asan_initfirst.so
gcc -shared -fPIC -O1 -Wall -Wextra -Werror -Wno-unused-parameter -Wl,-z,initfirst -o "$initfirst" \
  test/asan_initfirst.c "$libasan" || cfdw_die "sanitize: could not build $initfirst"
chmod 755 "$initfirst"
cat >"$priv/environment" <<EOF
# environment of the postgres processes (test/sanitize.sh)
LD_PRELOAD = '$libasan $initfirst'
ASAN_OPTIONS = '$ASAN_SERVER_OPTIONS:log_path=$reports/asan'
UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1'
EOF
chmod 644 "$priv/environment"
# a server must start under that preload
if ! out=$(env -i LD_PRELOAD="$libasan $initfirst" ASAN_OPTIONS="$ASAN_SERVER_OPTIONS" \
             timeout 30 "$("$(cfdw_pg_config)" --bindir)/postgres" -V 2>&1); then
  cfdw_die "sanitize: postgres -V under the preload failed: $out"
fi
cfdw_log "sanitize: under the preload: $out"
export CFDW_POSTMASTER_ENV=$priv/environment
# UBSan's reports go to the servers' stderr, i.e. the server log, even with
# a log_path (gcc's two runtimes side by side); every cluster's log is kept
# (test/lib.sh) and searched at the end.
export CFDW_KEEP_SERVER_LOGS=$priv/serverlogs
mkdir -p "$CFDW_KEEP_SERVER_LOGS"

rc=0
step_run() {  # step_run LABEL CMD...: runs CMD, notes the time and the result
  local label=$1 t=$SECONDS
  shift
  cfdw_log "sanitize: $label"
  if "$@"; then
    cfdw_log "sanitize: $label: ok ($((SECONDS - t)) s)"
  else
    cfdw_log "sanitize: $label: FAILED ($((SECONDS - t)) s)"
    rc=1
  fi
}

# the regression suites (run-tests.sh builds with CFDW_COPT and installs)
step_run "regression suites" env CFDW_SKIP_DEPS=1 CFDW_FRONT_RUNS="" CFDW_SKIP_EXTRAS=1 \
  CFDW_COPT="-Wextra -Werror -Wno-unused-parameter $SAN_FLAGS" bash test/run-tests.sh
# the module installed is the instrumented one
so=$("$(cfdw_pg_config)" --pkglibdir)/confluence_fdw.so
if ! ldd "$so" | grep -q libasan; then
  cfdw_die "sanitize: $so is missing or does not use libasan: the run would prove nothing"
fi
# run-tests.sh begins by emptying test/results; the server logs are kept
# there, and pg_regress's output is copied there (the make clean at the end
# removes it from the tree)
mkdir -p test/results/sanitizer
[ -f regression.diffs ] && cp regression.diffs test/results/sanitizer/
[ -d results ] && cp -a results test/results/sanitizer/regress-results
step_run "queue-crash" env CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-crash.sh
step_run "unit tests (make unit-asan)" make -s unit-asan

# each fuzz harness once over its committed seeds
fuzz_once() {
  local name bin
  make -s fuzz-build test/unit/build/locale/en_US.ISO-8859-1/LC_CTYPE || return 1
  for name in headers path retry_after body markdown storage_check; do
    bin=fuzz/build/fuzz_$name
    CFDW_FUZZ_LOCPATH=$PWD/test/unit/build/locale \
      ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$reports/fuzz-$name \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/fuzz-$name-ubsan \
      "$bin" -runs=0 "fuzz/corpus/$name" >"test/results/sanitizer/fuzz-$name.log" 2>&1 ||
      { cfdw_log "sanitize: fuzz_$name failed on its corpus (test/results/sanitizer/fuzz-$name.log)"; return 1; }
  done
}
step_run "fuzz corpora" fuzz_once

cp -a "$reports"/. test/results/sanitizer/ 2>/dev/null || true
found=$(find "$reports" -type f | wc -l)
# UBSan's reports, and ASan's when its log file cannot be written, are in
# the server logs: each one with such lines is copied, and the lines shown.
shopt -s nullglob
logs=("$CFDW_KEEP_SERVER_LOGS"/*.log)
shopt -u nullglob
[ ${#logs[@]} -gt 0 ] || { cfdw_log "sanitize: no server log was kept"; rc=1; }
for log in ${logs[@]+"${logs[@]}"}; do
  if grep -q -E 'runtime error:|(Address|UndefinedBehavior|Leak)Sanitizer|==[0-9]+==ERROR' "$log"; then
    cp "$log" test/results/sanitizer/
    cfdw_log "sanitize: sanitizer output in test/results/sanitizer/$(basename "$log"):"
    grep -n -A12 -E 'runtime error:|(Address|UndefinedBehavior|Leak)Sanitizer|==[0-9]+==ERROR' "$log" | head -60 || true
    found=$((found + 1))
  fi
done
cfdw_log "sanitize: ${#logs[@]} server log(s) searched"
if [ "$found" -gt 0 ]; then
  cfdw_log "sanitize: $found sanitizer report(s), in test/results/sanitizer/:"
  find "$reports" -type f | sort | while read -r f; do
    echo "==== $(basename "$f")"
    head -n 60 "$f"
  done
  rc=1
else
  cfdw_log "sanitize: no sanitizer report"
fi
exit $rc
