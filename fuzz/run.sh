#!/bin/sh
# fuzz/run.sh SECONDS NAME...: run each fuzz/build/fuzz_NAME for SECONDS,
# one after the other (called by `make fuzz`).  The grown corpus goes to
# fuzz/build/corpus/NAME (the committed seeds in fuzz/corpus/NAME are only
# read), findings to fuzz/build/artifacts/NAME/, the log to
# fuzz/build/NAME.log.  Prints one summary line per harness; exits 1 if any
# harness crashed, leaked, timed out or broke an oracle.
set -u
seconds=$1
shift
build=${FUZZ_BUILD:-fuzz/build}
dir=${FUZZ_DIR:-fuzz}
status=0
summary=""

for name in "$@"; do
	bin=$build/fuzz_$name
	corpus=$build/corpus/$name
	artifacts=$build/artifacts/$name
	log=$build/$name.log
	mkdir -p "$corpus" "$artifacts"
	dict=""
	[ -f "$dir/$name.dict" ] && dict="-dict=$dir/$name.dict"
	echo "fuzz: $name for ${seconds}s (log: $log)"
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$artifacts/" $dict \
		"$corpus" "$dir/corpus/$name" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | sed 's/cov: //')
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | sed 's/ft: //')
	units=$(ls "$corpus" | wc -l)
	findings=$(ls "$artifacts" | wc -l)
	if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
		status=1
		echo "fuzz: $name FAILED (exit $rc); last lines of $log:"
		tail -n 40 "$log"
	fi
	line=$(printf '%-12s execs=%s exec/s=%s cov=%s ft=%s corpus=%s findings=%s exit=%s' \
		"$name" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$units" "$findings" "$rc")
	echo "fuzz: $line"
	summary="$summary$line
"
done

echo "fuzz summary (${seconds}s each):"
printf '%s' "$summary"
[ "$status" -eq 0 ] || echo "fuzz: findings are in $build/artifacts/; reproduce with $build/fuzz_NAME FILE"
exit $status
