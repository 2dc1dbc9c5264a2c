#!/usr/bin/env bash
# Diagnostic: does pg_cron run jobs in the kind of throw-away cluster that
# test/run-tests.sh uses, with the database created by pg_regress?
#
#   bash test/pgcron-smoke.sh             # the set-up run-tests.sh uses
#   bash test/pgcron-smoke.sh --no-bgw    # same without cron.use_background_workers
#                                         # (shows why that setting is needed)
#   bash test/pgcron-smoke.sh --show-drop # also show that pg_regress cannot
#                                         # drop the cron database afterwards
#
# Needs the packages of test/install-deps.sh, not the extension.  Takes
# about 1-2 minutes: pg_cron 1.4 starts jobs only on the minute.
#
# What it does: starts a cluster with lib.sh's settings (cron.database_name=
# contrib_regression, which does not exist yet), then runs pg_regress just
# as `make installcheck` does (it drops and creates contrib_regression)
# with one generated test that does CREATE EXTENSION pg_cron, schedules a
# '* * * * *' job that inserts a row, and polls for up to 75 s.  The test's
# output is printed; it passes when the row arrived and
# cron.job_run_details says 'succeeded'.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

if [ "${1:-}" != --inner ]; then
  show_drop=0
  for a in "$@"; do
    case $a in
      --no-bgw) export CFDW_EXTRA_PG_OPTS="${CFDW_EXTRA_PG_OPTS:-} cron.use_background_workers=off" ;;
      --show-drop) show_drop=1 ;;
      *) echo "usage: $0 [--no-bgw] [--show-drop]" >&2; exit 2 ;;
    esac
  done
  export CFDW_CRON_DB=contrib_regression SMOKE_SHOW_DROP=$show_drop
  export LC_ALL=C.UTF-8
  cfdw_pgve_opts
  cfdw_log "pg_virtualenv -t -v $CFDW_PG_VERSION ${CFDW_PGVE_OPTS[*]}"
  start=$SECONDS
  rc=0
  cfdw_pg_virtualenv bash "$0" --inner || rc=$?
  cfdw_log "smoke test took $((SECONDS - start)) s; result: $([ $rc = 0 ] && echo PASS || echo "FAIL (rc=$rc)")"
  exit $rc
fi

# ---- inside the throw-away cluster ----
work=$(mktemp -d /tmp/cfdw-cron-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
pgxs=$("$(cfdw_pg_config)" --pgxs)
pg_regress=$(dirname "$pgxs")/../test/regress/pg_regress
bindir=$("$(cfdw_pg_config)" --bindir)
log=$(cfdw_server_log)
mkdir -p "$work/sql" "$work/expected"

cat >"$work/sql/cron_smoke.sql" <<'SQL'
SELECT current_database(), current_setting('cron.database_name') AS cron_db,
       current_setting('cron.use_background_workers') AS bgw;
CREATE EXTENSION pg_cron;
CREATE TABLE cron_hits (at timestamptz DEFAULT now(), db text DEFAULT current_database());
SELECT cron.schedule('smoke', '* * * * *', $$INSERT INTO cron_hits DEFAULT VALUES$$) > 0 AS scheduled;
-- pg_cron 1.4 starts jobs on the minute: wait up to 75 s for a row.
DO $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  WHILE clock_timestamp() - t0 < interval '75 s' LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM cron_hits)
          OR EXISTS (SELECT 1 FROM cron.job_run_details WHERE status IN ('succeeded', 'failed'));
    PERFORM pg_sleep(0.5);
  END LOOP;
  RAISE LOG 'cron smoke: waited % s', round(extract(epoch FROM clock_timestamp() - t0));
END $$;
SELECT count(*) > 0 AS row_arrived, min(db) AS job_db FROM cron_hits;
SELECT status, return_message FROM cron.job_run_details ORDER BY runid LIMIT 1;
SELECT cron.unschedule('smoke');
SQL
# The output we want.
cat >"$work/expected/cron_smoke.out" <<'OUT'
SELECT current_database(), current_setting('cron.database_name') AS cron_db,
       current_setting('cron.use_background_workers') AS bgw;
  current_database  |      cron_db       | bgw 
--------------------+--------------------+-----
 contrib_regression | contrib_regression | on
(1 row)

CREATE EXTENSION pg_cron;
CREATE TABLE cron_hits (at timestamptz DEFAULT now(), db text DEFAULT current_database());
SELECT cron.schedule('smoke', '* * * * *', $$INSERT INTO cron_hits DEFAULT VALUES$$) > 0 AS scheduled;
 scheduled 
-----------
 t
(1 row)

-- pg_cron 1.4 starts jobs on the minute: wait up to 75 s for a row.
DO $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  WHILE clock_timestamp() - t0 < interval '75 s' LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM cron_hits)
          OR EXISTS (SELECT 1 FROM cron.job_run_details WHERE status IN ('succeeded', 'failed'));
    PERFORM pg_sleep(0.5);
  END LOOP;
  RAISE LOG 'cron smoke: waited % s', round(extract(epoch FROM clock_timestamp() - t0));
END $$;
SELECT count(*) > 0 AS row_arrived, min(db) AS job_db FROM cron_hits;
 row_arrived |       job_db       
-------------+--------------------
 t           | contrib_regression
(1 row)

SELECT status, return_message FROM cron.job_run_details ORDER BY runid LIMIT 1;
  status   | return_message 
-----------+----------------
 succeeded | INSERT 0 1
(1 row)

SELECT cron.unschedule('smoke');
 unschedule 
------------
 t
(1 row)

OUT

cfdw_log "server log: $log"
cfdw_log "running pg_regress (drops and creates contrib_regression, like make installcheck)"
rc=0
(cd "$work" && "$pg_regress" --inputdir=. --bindir="$bindir" --dbname=contrib_regression cron_smoke) || rc=$?
res=$work/results/cron_smoke.out
if [ -f "$res" ]; then
  echo "----- test output (results/cron_smoke.out) -----"
  cat "$res"
  echo "------------------------------------------------"
  if diff -u "$work/expected/cron_smoke.out" "$res" >"$work/diff"; then rc=0; else
    rc=1; echo "----- differences from the expected output -----"; cat "$work/diff"
  fi
fi
echo "----- pg_cron lines in the server log -----"
grep -E 'cron|contrib_regression' "$log" | grep -v 'DEBUG' | tail -25 || true

if [ "${SMOKE_SHOW_DROP:-0}" = 1 ]; then
  echo "----- a second pg_regress run in the same cluster (DROP DATABASE) -----"
  psql -XAtc "SELECT pid, backend_type, datname FROM pg_stat_activity WHERE datname = 'contrib_regression'"
  if (cd "$work" && "$pg_regress" --inputdir=. --bindir="$bindir" --dbname=contrib_regression cron_smoke >"$work/second.txt" 2>&1); then
    echo "second run: could drop and recreate contrib_regression"
  else
    echo "second run failed (expected: pg_cron's launcher stays connected to cron.database_name):"
    grep -iE 'drop|accessed|other session' "$work/second.txt" || tail -5 "$work/second.txt"
  fi
fi
exit $rc
