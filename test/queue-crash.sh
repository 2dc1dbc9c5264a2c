#!/usr/bin/env bash
# delivery 'queue' across crashes: no row lost, none sent twice.
#
# In a throw-away cluster (shared_preload_libraries = confluence_fdw, the
# worker serving database postgres) and a stand-in that answers each create
# after QCRASH_DELAY_MS (100) ms:
#   1. QCRASH_ROWS (500) pages are queued and committed; once about a fifth
#      are created, the worker is killed with SIGKILL (the postmaster then
#      restarts every process, as after any crash);
#   2. as many again; once about a fifth are created, the whole server is
#      stopped with pg_ctl stop -m immediate and started again.
#   3. QCRASH_ROWS rows of an upsert table (on_conflict 'update'); the
#      worker is killed once about a fifth of them are created.
#   4. QCRASH_COMMENTS (300) footer comments, which nothing can find again;
#      once about a fifth are created, the server is stopped with
#      pg_ctl stop -m fast (SIGTERM ends the worker mid-delivery) and
#      started again.  Only the requests that were in flight may end
#      in_doubt (at most max_concurrency), every other comment is sent once:
#      rows are claimed as their requests start, not a batch at a time.
#   5. The same with synchronous_commit = off (and a slow WAL writer) and
#      an immediate shutdown: a claim is made durable before its request
#      starts whatever synchronous_commit says, so no comment whose claim
#      was lost is sent a second time.
# Then every queue row must be done (or in_doubt, where the stand-in got it
# but the worker could not know; never for an upsert, which is sent again
# and looks its page up first), and the stand-in must have created every
# title exactly once: a page the worker had sent but not recorded is found
# again by its title, never posted blindly.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-crash.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export QCRASH_ROWS=${QCRASH_ROWS:-500} QCRASH_DELAY_MS=${QCRASH_DELAY_MS:-100}
export QCRASH_COMMENTS=${QCRASH_COMMENTS:-300}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  PG_CONFIG=$(cfdw_pg_config)
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi

work=$(mktemp -d /tmp/cfdw-qcrash.XXXXXX)
chmod 755 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export QCRASH_WORK=$work CFDW_PG_VERSION

# Inside the cluster: queue, crash, restart, check.
cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
created() {  # pages (or another counter of its stats) the stand-in has
  curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "${1:-pages}"
}
wait_created() {  # wait_created N [COUNTER]: until the stand-in has N pages (60 s)
  local i
  for i in $(seq 600); do
    [ "$(created "${2:-pages}")" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "the stand-in did not reach $1 ${2:-pages}"; return 1
}
wait_up() {
  local i
  for i in $(seq 300); do
    psql_q -c 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "the server did not come back"; return 1
}
queue() {  # queue PREFIX: QCRASH_ROWS pages, committed
  psql_q -c "INSERT INTO q.pages (space_id, title, body)
             SELECT '98306', '$1 ' || g, '<p>' || g || '</p>' FROM generate_series(1, $QCRASH_ROWS) g"
}
curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" -d \
  "{\"kind\": \"delay\", \"delay_ms\": $QCRASH_DELAY_MS, \"method\": \"POST\", \"times\": -1}" >/dev/null
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '4');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages, footer_comments) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
ALTER FOREIGN TABLE q.footer_comments OPTIONS (ADD delivery 'queue');
CREATE FOREIGN TABLE q.reports (space_id text, title text, body text)
  SERVER s OPTIONS (endpoint 'pages', delivery 'queue', representation 'markdown',
                    on_conflict 'update');
SQL

# 1. kill -9 of the worker mid-delivery
queue kill
wait_created $((QCRASH_ROWS / 5))
pid=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker'")
[ -n "$pid" ] || { echo "no worker"; exit 1; }
echo "queue-crash: killing the worker (pid $pid) with $(created) of $QCRASH_ROWS pages created"
kill -9 "$pid"
sleep 1
wait_up
left=$(psql_q -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-crash: after the restart, $left rows still wait; $(created) pages"

# 2. immediate shutdown of the whole server mid-delivery
queue stop
wait_created $((QCRASH_ROWS + QCRASH_ROWS / 5))
echo "queue-crash: stopping the server (immediate) with $(created) pages"
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl stop -m immediate
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl start
wait_up
left=$(psql_q -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-crash: after the restart, $left rows still wait; $(created) pages"

# 3. kill -9 of the worker in the middle of upserts
psql_q -c "INSERT INTO q.reports (space_id, title, body)
           SELECT '98306', 'upsert ' || g, '**' || g || '**' FROM generate_series(1, $QCRASH_ROWS) g"
wait_created $((2 * QCRASH_ROWS + QCRASH_ROWS / 5))
pid=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'confluence_fdw worker'")
echo "queue-crash: killing the worker (pid $pid) in the middle of upserts, with $(created) pages"
kill -9 "$pid"
sleep 1
wait_up
left=$(psql_q -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-crash: after the restart, $left rows still wait; $(created) pages"
psql_q -c "SELECT state || ' ' || coalesce(action, '-'), count(*) FROM confluence_fdw.queue
           WHERE table_name = 'q.reports' GROUP BY 1 ORDER BY 1" >"$QCRASH_WORK/upsert_states.txt"

# 4. fast shutdown in the middle of footer comments
page=$(curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/seed" -d \
  '{"collection": "pages", "count": 1, "spaceId": "98306", "title_prefix": "comments on "}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["first_id"])')
comments() {  # comments PREFIX: QCRASH_COMMENTS footer comments, committed
  psql_q -c "INSERT INTO q.footer_comments (page_id, body)
             SELECT '$page', '<p>$1 ' || g || '</p>' FROM generate_series(1, $QCRASH_COMMENTS) g"
}
base=$(created comments)
comments fast
wait_created $((base + QCRASH_COMMENTS / 5)) comments
echo "queue-crash: stopping the server (fast) with $(created comments) comments"
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl stop -m fast
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl start
wait_up
left=$(psql_q -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-crash: after the restart, $left rows still wait; $(created comments) comments"

# 5. synchronous_commit off, a WAL writer that waits 10 s, immediate shutdown
psql_q -c "ALTER SYSTEM SET synchronous_commit = off" -c "ALTER SYSTEM SET wal_writer_delay = '10s'" \
       -c "SELECT pg_reload_conf()" >/dev/null
base=$(created comments)
comments async
wait_created $((base + QCRASH_COMMENTS / 5)) comments
echo "queue-crash: stopping the server (immediate, synchronous_commit off) with $(created comments) comments"
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl stop -m immediate
bash "$CFDW_ROOT/test/lib.sh" --cluster-ctl start
wait_up
psql_q -c "ALTER SYSTEM RESET synchronous_commit" -c "ALTER SYSTEM RESET wal_writer_delay" \
       -c "SELECT pg_reload_conf()" >/dev/null
left=$(psql_q -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-crash: after the restart, $left rows still wait; $(created comments) comments"
psql_q -c "SELECT substring(body::jsonb->'body'->>'value' from '<p>(\w+) ') AS run, state, count(*)
           FROM confluence_fdw.queue WHERE table_name = 'q.footer_comments' GROUP BY 1, 2 ORDER BY 1, 2" \
  >"$QCRASH_WORK/comment_states.txt"
psql_q -c "SELECT body::jsonb->'body'->>'value', state FROM confluence_fdw.queue
           WHERE table_name = 'q.footer_comments'" >"$QCRASH_WORK/comment_rows.txt"
psql_q -c "SELECT state, count(*) FROM confluence_fdw.queue GROUP BY 1 ORDER BY 1" >"$QCRASH_WORK/states.txt"
psql_q -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'done' AND remote_id IS NULL" >"$QCRASH_WORK/done_without_id.txt"
INSIDE

# shellcheck disable=SC2016
CFDW_LOG_MIN_MESSAGES=log CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"

rc=0
echo "queue-crash: queue states: $(tr '\n' ' ' <"$work/states.txt")"
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" >"$work/requests.jsonl"
python3 - "$work/requests.jsonl" "$QCRASH_ROWS" <<'PY' || rc=1
import collections, json, sys
rows = int(sys.argv[2])
created = collections.Counter()
posts = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("method") != "POST" or not r.get("path", "").endswith("/pages"):
        continue
    title = (r.get("body_json") or {}).get("title")
    posts[title] += 1
    if 200 <= (r.get("status") or 0) < 300:
        created[title] += 1
want = {f"{p} {i}" for p in ("kill", "stop", "upsert") for i in range(1, rows + 1)}
twice = sorted(t for t, n in created.items() if n > 1)
missing = sorted(want - set(created))
resent = sum(1 for t, n in posts.items() if n > 1)
print(f"queue-crash: {len(created)} titles created, {sum(posts.values())} POSTs, {resent} titles posted more than once (refused as duplicates or never processed)")
if twice:
    print(f"  FAILED: created twice: {twice[:5]}")
if missing:
    print(f"  FAILED: never created: {len(missing)}, e.g. {missing[:5]}")
sys.exit(1 if twice or missing else 0)
PY
python3 - "$work/requests.jsonl" "$work/comment_rows.txt" "$QCRASH_COMMENTS" <<'PY' || rc=1
import collections, json, sys
posted = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("method") == "POST" and r.get("path", "").endswith("/footer-comments"):
        posted[((r.get("body_json") or {}).get("body") or {}).get("value")] += 1
rows = dict(l.rstrip("\n").split("|", 1) for l in open(sys.argv[2]) if l.strip())
n = int(sys.argv[3])
bad = 0
for run in ("fast", "async"):
    bodies = [f"<p>{run} {i}</p>" for i in range(1, n + 1)]
    twice = [b for b in bodies if posted[b] > 1]
    in_doubt = [b for b in bodies if rows.get(b) == "in_doubt"]
    lost = [b for b in bodies if rows.get(b) == "done" and posted[b] != 1]
    print(f"queue-crash: {run}: {sum(posted[b] for b in bodies)} comments posted for {n} rows, "
          f"{len(twice)} posted twice, {len(in_doubt)} in_doubt")
    if twice:
        print(f"  FAILED: {run}: comments posted twice: {twice[:5]}")
    if lost:
        print(f"  FAILED: {run}: done rows whose comment was not posted once: {lost[:5]}")
    # only requests in flight (max_concurrency 4) may be in doubt
    if len(in_doubt) > 4:
        print(f"  FAILED: {run}: {len(in_doubt)} rows in_doubt, more than were in flight")
    bad += bool(twice or lost or len(in_doubt) > 4)
sys.exit(1 if bad else 0)
PY
echo "queue-crash: comment rows: $(tr '\n' ' ' <"$work/comment_states.txt")"
echo "queue-crash: upsert rows: $(tr '\n' ' ' <"$work/upsert_states.txt")"
bad=$(grep -Ev '^done (created|unchanged)\|' "$work/upsert_states.txt" || true)
[ -z "$bad" ] || { echo "  FAILED: upsert rows not done: $bad"; rc=1; }
bad=$(grep -Ev '^(done|in_doubt)\|' "$work/states.txt" || true)
[ -z "$bad" ] || { echo "  FAILED: rows not settled: $bad"; rc=1; }
[ "$(cat "$work/done_without_id.txt")" = 0 ] || { echo "  FAILED: done rows without a remote id"; rc=1; }
[ $rc = 0 ] && echo "queue-crash passed"
exit $rc
