#!/usr/bin/env bash
# The extension under AddressSanitizer and UndefinedBehaviorSanitizer, as
# root, on Debian 12 (the packages test/install-deps.sh installs):
#
#   bash test/sanitize.sh          (~4.5 min; one of run-tests.sh's extra scripts)
#
# 1. copies the source tree (git's tracked and untracked files, as they are
#    in the work tree) to a temporary folder and works there, so the tree's
#    own build and test/results are left alone; enters a private mount
#    namespace where PostgreSQL's lib/ and extension/ folders are private
#    copies, so the instrumented build is installed only there;
# 2. builds the extension with gcc -fsanitize=address,undefined
#    -fno-sanitize-recover=all -fno-omit-frame-pointer (run-tests.sh's
#    build, with these in CFDW_COPT) and installs it;
# 3. starts every throw-away cluster with an environment file
#    (CFDW_POSTMASTER_ENV, test/lib.sh) that preloads libasan, and
#    test/asan_initfirst.c built as a library, into the postmaster, so
#    that every backend and the queue worker run under the sanitizers (an
#    uninstrumented program can load an instrumented module only when the
#    runtime comes first), with ASAN_OPTIONS (detect_leaks=0: PostgreSQL
#    leaves its memory to exit on purpose; log_path: an ASan report is
#    written to a file of its own) and UBSAN_OPTIONS (stack traces; UBSan's
#    reports go to the server log); any report ends the process;
# 4. runs the regression suites (run-tests.sh's direct run, with the
#    Confluence stand-in, Prism and nginx it starts), the extra scripts
#    test/queue-crash.sh, test/queue-worker.sh, test/connect-timeouts.sh and
#    test/rate-limit.sh, the C unit tests under the sanitizers (make
#    unit-asan) and each fuzz harness once over its seed corpus
#    (fuzz/corpus/NAME, libFuzzer -runs=0);
# 5. searches the ASan report files and every cluster's server log (kept by
#    test/lib.sh's CFDW_KEEP_SERVER_LOGS) and fails when there is any
#    report, or when a step failed.  Artifacts: test/results/sanitize/
#    (reports/: the reports and the server logs that hold one; direct/,
#    fuzz/: the runs' logs).
#
# Knobs:
#   CFDW_SKIP_DEPS=1        no install-deps.sh
#   CFDW_REGRESS="a b"      only these suites (as run-tests.sh)
#   CFDW_FRONT_RUNS="h2 h1" the front runs as well (default none; ~6 min more)
#   CFDW_SANITIZE_SCRIPTS   the extra scripts of step 4, names in test/
#                           without .sh (default "queue-crash queue-worker
#                           connect-timeouts rate-limit"; "" for none)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
# the servers': no leak check (PostgreSQL leaves memory to exit on purpose);
# malloc() returns NULL when it cannot allocate, as without ASan, and
# PostgreSQL reports "out of memory" itself
ASAN_SERVER_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:allocator_may_return_null=1:quarantine_size_mb=32:malloc_context_size=20"

# ---- outside: the copy of the tree, the private namespace ----
if [ "${CFDW_SANITIZE_NS:-0}" != 1 ]; then
  [ "$(id -u)" = 0 ] || cfdw_die "sanitize: run as root (a private mount namespace, as run-tests.sh)"
  [ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
  t0=$SECONDS
  pgc=$(cfdw_pg_config)
  libdir=$("$pgc" --pkglibdir)
  extdir=$("$pgc" --sharedir)/extension
  priv=$(mktemp -d /tmp/cfdw-sanitize.XXXXXX)
  chmod 755 "$priv"
  trap 'rm -rf "$priv"' EXIT
  cp -a "$libdir" "$priv/lib"
  cp -a "$extdir" "$priv/ext"
  mkdir "$priv/tree"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
      tar --null -T - -cf - | tar -xf - -C "$priv/tree"
  else
    tar --exclude=./test/results --exclude=./results -cf - . | tar -xf - -C "$priv/tree"
  fi
  # Prism for the contract test, installed once in the tree (npm ci) and
  # shared with the copy
  if [ -z "${CFDW_REGRESS:-}" ] || [[ " $CFDW_REGRESS " == *" contract "* ]]; then
    cfdw_contract_npm_ci || cfdw_log "sanitize: Prism could not be installed: the contract test will fail"
    [ -d test/contract/node_modules ] &&
      ln -s "$PWD/test/contract/node_modules" "$priv/tree/test/contract/node_modules"
  fi
  rc=0
  # (run-tests.sh, when this is one of its extra scripts, is in its front's
  # namespace: the copy's run-tests.sh makes a front of its own)
  # shellcheck disable=SC2016
  env -u CFDW_FRONT_NS -u CFDW_FRONT_DIR -u CFDW_FRONT_CA \
    CFDW_SANITIZE_NS=1 CFDW_SANITIZE_DIR="$priv" unshare -m --propagation private bash -c '
    mount --bind "$1/lib" "$2" && mount --bind "$1/ext" "$3" && exec bash "$1/tree/test/sanitize.sh"' \
    sanitize "$priv" "$libdir" "$extdir" || rc=$?
  rm -rf test/results/sanitize
  mkdir -p test/results/sanitize
  cp -a "$priv/tree/test/results/." test/results/sanitize/ 2>/dev/null || true
  cfdw_log "sanitize: $([ $rc = 0 ] && echo passed || echo FAILED) in $((SECONDS - t0)) s; artifacts in test/results/sanitize/"
  exit $rc
fi

# ---- inside the private namespace, in the copy of the tree ----
priv=$CFDW_SANITIZE_DIR
asan_dir=$priv/asan
mkdir -p "$asan_dir"
# the servers run as postgres and write their ASan reports here
chmod 1777 "$asan_dir"
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
ASAN_OPTIONS = '$ASAN_SERVER_OPTIONS:log_path=$asan_dir/asan'
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
# (CFDW_SKIP_BUILD=0: run as one of run-tests.sh's extra scripts, this
# inherits its CFDW_SKIP_BUILD=1, and the suites would run the plain build)
step_run "regression suites" env CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=0 CFDW_INSTALLED=0 \
  CFDW_FRONT_RUNS="${CFDW_FRONT_RUNS:-}" CFDW_SKIP_EXTRAS=1 \
  CFDW_COPT="-Wextra -Werror -Wno-unused-parameter $SAN_FLAGS" bash test/run-tests.sh
# run-tests.sh began by emptying test/results; pg_regress's diffs go there too
out=test/results
mkdir -p "$out/reports" "$out/fuzz" "$out/direct"
[ -f regression.diffs ] && cp regression.diffs "$out/direct/"
# The module installed must be the instrumented one.  Loaded by a server
# without the runtime preloaded it would refuse to load ("ASan runtime does
# not come first"), so suites that passed ran under the sanitizers.
# (ldd's output is read whole: under pipefail, grep -q stopping at the
# first match could end ldd with SIGPIPE and fail the test by chance)
so=$("$(cfdw_pg_config)" --pkglibdir)/confluence_fdw.so
so_libs=$(ldd "$so" 2>/dev/null || true)
grep -q libasan <<<"$so_libs" ||
  cfdw_die "sanitize: $so is missing or does not use libasan: the run would prove nothing"

for script in ${CFDW_SANITIZE_SCRIPTS-queue-crash queue-worker connect-timeouts rate-limit}; do
  step_run "$script" env CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash "test/$script.sh"
done
step_run "unit tests (make unit-asan)" make -s unit-asan

# each fuzz harness once over its committed seeds
fuzz_once() {
  local name
  make -s fuzz-build test/unit/build/locale/en_US.ISO-8859-1/LC_CTYPE || return 1
  for name in headers path retry_after body markdown storage_check; do
    CFDW_FUZZ_LOCPATH=$PWD/test/unit/build/locale \
      ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:log_path=$asan_dir/fuzz-$name \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "fuzz/build/fuzz_$name" -runs=0 "fuzz/corpus/$name" >"$out/fuzz/fuzz-$name.log" 2>&1 ||
      { cfdw_log "sanitize: fuzz_$name failed on its corpus ($out/fuzz/fuzz-$name.log)"; return 1; }
  done
}
step_run "fuzz corpora" fuzz_once

# ASan's reports, each in a file of its own
cp -a "$asan_dir/." "$out/reports/"
found=$(find "$asan_dir" -type f | wc -l)
find "$asan_dir" -type f | sort | while read -r f; do
  echo "==== $(basename "$f")"
  head -n 60 "$f"
done
# UBSan's reports (and ASan's, when its file cannot be written) are in the
# server logs, the fuzzers' in their logs: each log that has one is copied
# to reports/, and its report lines shown.
pattern='runtime error:|(Address|UndefinedBehavior|Leak)Sanitizer|==[0-9]+==ERROR'
shopt -s nullglob
logs=("$CFDW_KEEP_SERVER_LOGS"/*.log)
fuzz_logs=("$out"/fuzz/*.log)
shopt -u nullglob
[ ${#logs[@]} -gt 0 ] || { cfdw_log "sanitize: no server log was kept"; rc=1; }
for log in ${logs[@]+"${logs[@]}"} ${fuzz_logs[@]+"${fuzz_logs[@]}"}; do
  if grep -q -E "$pattern" "$log"; then
    cp "$log" "$out/reports/"
    cfdw_log "sanitize: a sanitizer report in $(basename "$log"):"
    grep -n -A12 -E "$pattern" "$log" | head -60 || true
    found=$((found + 1))
  fi
done
cfdw_log "sanitize: ${#logs[@]} server log(s) searched"
if [ "$found" -gt 0 ]; then
  cfdw_log "sanitize: $found file(s) with sanitizer reports, in test/results/sanitize/reports/"
  rc=1
else
  cfdw_log "sanitize: no sanitizer report"
fi
exit $rc
