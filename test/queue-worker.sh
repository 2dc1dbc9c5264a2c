#!/usr/bin/env bash
# The queue worker between two rows: it reads SIGHUP there (not only when
# it has nothing to do), and a passing error while it resolves a table (a
# lock timeout) costs a retry, not the rows.
#
# In a throw-away cluster (the worker serving database postgres; the server
# log at warning, where both ERROR and LOG lines show) and a stand-in:
#   1. 5 pages are queued while the stand-in answers 429 with Retry-After:
#      3600, so they wait in retry_wait (the first one asked, the others
#      without a request); a session takes an ACCESS EXCLUSIVE lock on the
#      foreign table for 6 s, the rows are made due (and the server altered,
#      so that the worker forgets the wait), and the worker runs with
#      lock_timeout 200ms: its lookups of the table time out, and every row
#      must still end done, once.
#   2. 16 pages are queued on a server with max_concurrency 1, each first
#      answered 429 (Retry-After: 0), so the worker logs a retry for each;
#      after the third, log_min_messages is raised to fatal with ALTER
#      SYSTEM and pg_reload_conf(): the worker must stop logging within a
#      row or two, not at the end of its batch.
#   3. A held row is requeued in a session whose transaction stays open for
#      8 s while the user mapping changes: the worker skips the locked row,
#      and a page queued meanwhile is delivered within 5 s; once the session
#      rolls back, the held row is sent too.
# (~35 s)
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-worker.sh
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

work=$(mktemp -d /tmp/cfdw-qworker.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export QW_WORK=$work QW_ROOT=$PWD

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
# shellcheck source=lib.sh
source "$QW_ROOT/test/lib.sh"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
fault() { curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" -d "$1" >/dev/null; }
created() {
  curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"])'
}
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '1', max_retries '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
-- retries within an attempt, which the worker logs
CREATE SERVER r FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER r
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE FOREIGN TABLE q.retried (space_id text, title text)
  SERVER r OPTIONS (endpoint 'pages', delivery 'queue');
SQL
worker=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker'")
[ -n "$worker" ] || { echo "no worker"; exit 1; }

# 1. lock timeouts while the worker resolves the table: the rows wait in
# retry_wait (a 429 asked for an hour) while a session takes an ACCESS
# EXCLUSIVE lock on the table for 6 s; then they are made due
psql_q -c "ALTER SYSTEM SET lock_timeout = '200ms'" -c "SELECT pg_reload_conf()" >/dev/null
fault '{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "3600"}}'
psql_q -c "INSERT INTO q.pages (space_id, title) SELECT '98306', 'locked ' || g FROM generate_series(1, 5) g"
for _ in $(seq 100); do
  [ "$(psql_q -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'retry_wait'")" = 5 ] && break
  sleep 0.1
done
# (LOCK TABLE does not take foreign tables; ALTER does, and is rolled back)
psql_q -c "BEGIN" -c "ALTER FOREIGN TABLE q.pages ADD COLUMN held int" -c "SELECT pg_sleep(6)" \
       -c "ROLLBACK" >/dev/null &
locker=$!
for _ in $(seq 100); do
  [ "$(psql_q -c "SELECT count(*) FROM pg_locks WHERE relation = 'q.pages'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && break
  sleep 0.05
done
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" |
  python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l).get("method") == "POST"))' \
  >"$QW_WORK/lock_429s.txt"
psql_q -c "ALTER SERVER s OPTIONS (SET max_retries '0')" \
       -c "UPDATE confluence_fdw.queue SET next_attempt_at = now()"
wait "$locker"
psql_q -c "SELECT confluence_fdw.flush(60000)" >"$QW_WORK/lock_left.txt"
psql_q -c "SELECT state, count(*) FROM confluence_fdw.queue GROUP BY 1 ORDER BY 1" >"$QW_WORK/lock_states.txt"
psql_q -c "ALTER SYSTEM RESET lock_timeout" -c "SELECT pg_reload_conf()" >/dev/null
grep -c "canceling statement due to lock timeout" "$(cfdw_server_log)" >"$QW_WORK/lock_timeouts.txt" || true
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" |
  python3 -c 'import json,sys; print(sum(1 for l in sys.stdin if json.loads(l).get("status") in (200, 201)))' \
  >"$QW_WORK/lock_created.txt"
curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/reset?keep=objects" >/dev/null
psql_q -c "TRUNCATE confluence_fdw.queue"

# 2. SIGHUP in the middle of a delivery: every row's first POST is answered
# 429 (Retry-After: 0), which the worker logs at LOG as it retries; after the
# third page, log_min_messages goes to fatal (LOG lines are kept at any
# lower setting).  A worker that reads SIGHUP
# between rows stops logging its retries within a row or two; one that
# reads it only when idle logs all 16.
faults='['
for i in $(seq 16); do
  faults+='{"kind": "status", "status": 429, "method": "POST", "headers": {"Retry-After": "0"}},'
  faults+='{"kind": "delay", "delay_ms": 1, "method": "POST"}'
  [ "$i" = 16 ] || faults+=','
done
fault "$faults]"
base=$(created)
psql_q -c "INSERT INTO q.retried (space_id, title) SELECT '98306', 'sighup ' || g FROM generate_series(1, 16) g"
for _ in $(seq 200); do [ "$(created)" -ge $((base + 3)) ] && break; sleep 0.05; done
psql_q -c "ALTER SYSTEM SET log_min_messages = fatal" -c "SELECT pg_reload_conf()" >/dev/null
psql_q -c "SELECT confluence_fdw.flush(60000)" >"$QW_WORK/sighup_left.txt"
grep -c "\[$worker\] LOG:  confluence_fdw: retrying POST" "$(cfdw_server_log)" >"$QW_WORK/retry_lines.txt" || true
psql_q -c "ALTER SYSTEM RESET log_min_messages" -c "SELECT pg_reload_conf()" >/dev/null

# 3. a requeue() of a held row left uncommitted does not stop the worker
psql_q -c "TRUNCATE confluence_fdw.queue"
fault '{"kind": "status", "status": 401, "method": "POST"}'
psql_q -c "INSERT INTO q.pages (space_id, title) VALUES ('98306', 'held by a session')"
for _ in $(seq 100); do
  [ "$(psql_q -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'held'")" = 1 ] && break
  sleep 0.1
done
psql_q -c "BEGIN" -c "SELECT confluence_fdw.requeue(id) FROM confluence_fdw.queue WHERE state = 'held'" \
       -c "SELECT pg_sleep(8)" -c "ROLLBACK" >/dev/null &
requeuer=$!
for _ in $(seq 100); do
  [ "$(psql_q -c "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(8)'")" = 1 ] && break
  sleep 0.05
done
psql_q -c "ALTER USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (SET api_token '$CFDW_TOKEN')"
sleep 1
psql_q -c "INSERT INTO q.pages (space_id, title) VALUES ('98306', 'queued meanwhile')"
psql_q -c "SELECT confluence_fdw.flush(5000)" >"$QW_WORK/locked_left.txt"
psql_q -c "SELECT state FROM confluence_fdw.queue WHERE body LIKE '%queued meanwhile%'" \
  >"$QW_WORK/locked_other.txt"
wait "$requeuer"
for _ in $(seq 150); do
  [ "$(psql_q -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done'")" = 2 ] && break
  sleep 0.1
done
psql_q -c "SELECT state, count(*) FROM confluence_fdw.queue GROUP BY 1 ORDER BY 1" >"$QW_WORK/locked_states.txt"

INSIDE

rc=0
CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh" || rc=1

retries=$(cat "$work/retry_lines.txt" 2>/dev/null || echo 0)
echo "queue-worker: SIGHUP: rows left $(cat "$work/sighup_left.txt"); the worker logged $retries of 16 retries"
[ "$retries" -ge 3 ] && [ "$retries" -le 8 ] ||
  { echo "  FAILED: the worker did not read the SIGHUP between rows (3 to 8 retries logged expected)"; rc=1; }
echo "queue-worker: lock timeouts: $(cat "$work/lock_timeouts.txt") in the log; rows: $(tr '\n' ' ' <"$work/lock_states.txt"); pages created: $(cat "$work/lock_created.txt")"
[ "$(cat "$work/lock_timeouts.txt")" -ge 1 ] ||
  { echo "  FAILED: the worker never met the lock (the test proves nothing)"; rc=1; }
[ "$(tr '\n' ' ' <"$work/lock_states.txt")" = "done|5 " ] ||
  { echo "  FAILED: a lock timeout while resolving the table settled rows"; rc=1; }
[ "$(cat "$work/lock_created.txt")" = 5 ] || { echo "  FAILED: pages created: $(cat "$work/lock_created.txt"), not 5"; rc=1; }
[ "$(cat "$work/lock_429s.txt")" = 1 ] ||
  { echo "  FAILED: $(cat "$work/lock_429s.txt") POSTs while the server was rate-limited for an hour, not 1"; rc=1; }
echo "queue-worker: a held row locked by a session: rows left after 5 s $(cat "$work/locked_left.txt"), the other row $(cat "$work/locked_other.txt"); in the end: $(tr '\n' ' ' <"$work/locked_states.txt")"
[ "$(cat "$work/locked_left.txt")" = 0 ] && [ "$(cat "$work/locked_other.txt")" = done ] ||
  { echo "  FAILED: a session's uncommitted requeue() of a held row stopped the delivery"; rc=1; }
[ "$(tr '\n' ' ' <"$work/locked_states.txt")" = "done|2 " ] ||
  { echo "  FAILED: the held row was not sent once the session rolled back"; rc=1; }
[ $rc = 0 ] && echo "queue-worker passed"
exit $rc
