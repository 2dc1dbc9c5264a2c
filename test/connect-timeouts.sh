#!/usr/bin/env bash
# A site that stops accepting connections for a while does not break its
# user mapping for good.
#
# libcurl closes a socket whose connect never finished without telling the
# application (see the header of src/transport.c); each such socket once
# left a stale entry in the pool's socket list, and after about 136 of them
# every request of the user mapping failed with "could not connect" until
# disconnect_all().  Here, in a throw-away cluster with the worker serving
# database postgres:
#   1. test/blackhole.py listens with a full accept backlog, so SYNs go
#      unanswered; the server points at it with connect_timeout_ms 150 and
#      max_retries 0;
#   2. 150 rows are queued (the worker's connects time out), and one session
#      makes 150 INSERTs that each fail with a connect timeout;
#   3. the site accepts again (the same address, forwarded to the stand-in):
#      the same session's next INSERT succeeds, and so does the worker's
#      delivery of a row queued now; nobody calls disconnect_all().  No
#      row whose connect timed out is in_doubt: nothing of it was sent.
# (~40 s)
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/connect-timeouts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-blackhole.XXXXXX)
chmod 777 "$work"
bh_pid=''
trap 'cfdw_stop_pid "$bh_pid" blackhole; cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
python3 test/blackhole.py "$work/bh.port" "${STANDIN_URL##*:}" "$work/bh.go" 240 \
  >"$work/blackhole.log" 2>&1 &
bh_pid=$!
for _ in $(seq 50); do [ -s "$work/bh.port" ] && break; sleep 0.1; done
[ -s "$work/bh.port" ] || { cat "$work/blackhole.log"; cfdw_die "the blackhole did not start"; }
export BH_URL="http://127.0.0.1:$(tr -d '[:space:]' <"$work/bh.port")" BH_WORK=$work

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$BH_URL', connect_timeout_ms '150', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO public;
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
-- the worker's connects time out meanwhile
INSERT INTO q.pages (space_id, title)
  SELECT '98306', 'queued while blackholed ' || i FROM generate_series(1, 150) i;
SQL

# One session: 150 connect timeouts, then the site is back.
psql -X -q -At -d postgres >"$BH_WORK/session.out" 2>&1 <<SQL || true
DO \$\$
DECLARE
  failed int := 0;
  timeouts int := 0;
BEGIN
  FOR i IN 1..150 LOOP
    BEGIN
      INSERT INTO pages (space_id, title) VALUES ('98306', 'blackholed ' || i);
    EXCEPTION WHEN others THEN
      failed := failed + 1;
      IF SQLERRM LIKE '%timed out%' THEN
        timeouts := timeouts + 1;
      END IF;
    END;
  END LOOP;
  RAISE NOTICE 'failed: %, timed out: %', failed, timeouts;
END \$\$;
-- the worker has tried every queued row by now (it began 20 s ago)
DO \$\$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (SELECT count(*) FROM confluence_fdw.queue
                WHERE attempts > 0 OR state <> 'pending') >= 150;
    PERFORM pg_sleep(0.1);
  END LOOP;
END \$\$;
SELECT 'worker tried ' || count(*) FROM confluence_fdw.queue
 WHERE attempts > 0 OR state <> 'pending';
-- a connect that timed out sent nothing: such rows wait to be retried
SELECT 'in doubt ' || count(*) FROM confluence_fdw.queue WHERE state = 'in_doubt';
\! touch $BH_WORK/bh.go
\! sleep 0.3
INSERT INTO pages (space_id, title) VALUES ('98306', 'after the blackhole') RETURNING title;
SQL

# The worker's next delivery.
psql_q -c "INSERT INTO q.pages (space_id, title) VALUES ('98306', 'queued after the blackhole')"
for _ in $(seq 300); do
  st=$(psql_q -c "SELECT state FROM confluence_fdw.queue WHERE body::jsonb->>'title' = 'queued after the blackhole'")
  [ "$st" = done ] && break
  sleep 0.1
done
psql_q -c "SELECT state || ' ' || coalesce(error, '') FROM confluence_fdw.queue WHERE body::jsonb->>'title' = 'queued after the blackhole'" >"$BH_WORK/worker.out"
INSIDE

rc=0
CFDW_LOG_MIN_MESSAGES=log CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh" || rc=1
cat "$work/blackhole.log"
echo "connect-timeouts: session: $(tr '\n' ' ' <"$work/session.out")"
echo "connect-timeouts: the row queued after: $(cat "$work/worker.out")"
grep -q 'NOTICE:  failed: 150, timed out: 1[0-9][0-9]' "$work/session.out" ||
  { echo "  FAILED: the 150 INSERTs did not all fail, most of them by a connect timeout"; rc=1; }
grep -qx 'after the blackhole' "$work/session.out" ||
  { echo "  FAILED: the session's INSERT after the blackhole"; rc=1; }
grep -qx 'worker tried 150' "$work/session.out" ||
  { echo "  FAILED: the worker did not try every row while the site was blackholed"; rc=1; }
grep -qx 'in doubt 0' "$work/session.out" ||
  { echo "  FAILED: rows whose connect timed out were taken as maybe sent (in_doubt)"; rc=1; }
[ "$(cat "$work/worker.out")" = "done " ] ||
  { echo "  FAILED: the worker's delivery after the blackhole"; rc=1; }
[ $rc = 0 ] && echo "connect-timeouts passed"
exit $rc
