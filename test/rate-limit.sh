#!/usr/bin/env bash
# One rate limit per site, shared by every session (src/ratelimit.c).
#
# With shared_preload_libraries = confluence_fdw: session A's first request
# is answered 429 with Retry-After: 3.  Session B, which starts its INSERT
# half a second later, must not reach the stand-in until A's pause is over
# (the stand-in's log shows no request from anyone in that window), the view
# confluence_fdw.rate_limits shows the pause meanwhile, and a session with
# statement_timeout 500ms that waits in the pause is cancelled at once.
# Without the preload, B is not held back (each backend waits only for its
# own rate-limited request), and a delivery 'queue' table is refused with
# SQLSTATE 55000 naming shared_preload_libraries.
#
# Pacing, with the stand-in's quota of 20 requests per 4 s window: two
# sessions insert 25 rows each at once, pipelined, through two servers of
# the same host (one site).  With the rate-limit headers on, no request is
# refused (no 429), every page is created, and the view shows one site,
# paced, with the quota's limit; with the headers off (the same run without
# pacing) the stand-in refuses some (so the check above can fail).  Then
# max_rate '5' on a server: two sessions' 16 requests through it reach the
# stand-in at least 0.15 s apart.  Without the preload, one session alone is
# paced by its own backend: no 429 either.
#
# More sites than the 64 shared slots (src/ratelimit.c), with the preload
# (servers whose gateway-style base URLs name 70 sites, rl1 to rl70):
# 64 sites are paused for 1 s; once that is over, 6 more are paused for
# 8 s and must take the slots of finished pauses: the view shows their
# pauses, and another session's request to one of them is held (cancelled
# by its statement_timeout, never sent).  Then 58 more pauses fill every
# slot, and two sites beyond go without: the server log says so once.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/rate-limit.sh
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

work=$(mktemp -d /tmp/cfdw-ratelimit.XXXXXX)
chmod 777 "$work"
trap 'cfdw_stop_standin; rm -rf "$work"' EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work"
export RL_WORK=$work

cat >"$work/inside.sh" <<'INSIDE'
set -euo pipefail
source "$CFDW_ROOT/test/lib.sh"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/reset" >/dev/null
psql_q <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_retry_wait_ms '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO public;
SQL
curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" \
  -d '{"kind": "status", "status": 429, "headers": {"Retry-After": "3"}}' >/dev/null
psql_q -c "INSERT INTO pages (space_id, title) VALUES ('98306', 'session A') RETURNING title" >"$RL_WORK/a.out" 2>&1 &
a=$!
sleep 0.5
psql_q -c "INSERT INTO pages (space_id, title) VALUES ('98306', 'session B') RETURNING title" >"$RL_WORK/b.out" 2>&1 &
b=$!
sleep 0.5
psql_q -c "SELECT coalesce(bool_and(paused_until > now()), false) FROM confluence_fdw.rate_limits" >"$RL_WORK/view.out"
start=$(date +%s%N)
psql_q -c "SET statement_timeout = '500ms'" \
       -c "INSERT INTO pages (space_id, title) VALUES ('98306', 'session C')" >"$RL_WORK/c.out" 2>&1 || true
echo $(( ($(date +%s%N) - start) / 1000000 )) >"$RL_WORK/c.ms"
wait $a $b
# what sessions A, B and C sent, for check (the runs below reset the stand-in)
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" >"$RL_WORK/requests.jsonl"
# a queue table: accepted with the preload, refused (55000) without it
psql -X -q -d postgres >"$RL_WORK/queue.out" 2>&1 <<'SQL' || true
\set VERBOSITY verbose
ALTER FOREIGN TABLE pages OPTIONS (ADD delivery 'queue');
INSERT INTO pages (space_id, title) VALUES ('98306', 'queued');
SQL

# Pacing: the quota, two sessions through two servers of one host.
psql_q <<SQL
CREATE SERVER s2 FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_retry_wait_ms '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER s2
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA one;
CREATE SCHEMA two;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO one;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s2 INTO two;
SQL
standin() { curl -fsS --max-time 10 "$@"; }
quota_field() {  # quota_field NAME: a counter of the stand-in's quota
  standin "$STANDIN_URL/_standin/quota" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"
}
pages() { standin "$STANDIN_URL/_standin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"])'; }
insert() {  # insert SCHEMA LABEL ROWS
  psql_q -c "INSERT INTO $1.pages (space_id, title)
             SELECT '98306', '$2 ' || g FROM generate_series(1, $3) g" >/dev/null 2>"$RL_WORK/$2.err"
}
pace_run() {  # pace_run LABEL HEADERS SESSIONS
  local a b ra=0 rb=0 t0
  standin -X POST "$STANDIN_URL/_standin/reset" >/dev/null
  standin -X POST "$STANDIN_URL/_standin/quota" -d "{\"limit\": 20, \"window_s\": 4, \"headers\": $2}" >/dev/null
  t0=$(date +%s%N)
  insert one "$1-A" 25 & a=$!
  if [ "$3" = 2 ]; then insert two "$1-B" 25 & b=$!; fi
  wait $a || ra=$?
  [ "$3" = 2 ] && { wait $b || rb=$?; }
  echo "$1: rc $ra $rb, 429s $(quota_field refused), pages $(pages), $(( ($(date +%s%N) - t0) / 1000000 )) ms" >>"$RL_WORK/pace.out"
}
site=${STANDIN_URL#http://}
if [ "${RL_MANY:-0}" = 1 ]; then
  pace_run paced true 2
  psql_q -c "SELECT 'view: ' || count(*) || ' site, limit ' || min(rate_limit) || ', paced ' || (min(paced) > 0)
               FROM confluence_fdw.rate_limits WHERE site = '$site'" >>"$RL_WORK/pace.out"
  pace_run unpaced false 2
  # max_rate: the stand-in's log has the times
  standin -X POST "$STANDIN_URL/_standin/reset" >/dev/null
  psql_q -c "ALTER SERVER s2 OPTIONS (ADD max_rate '5')"
  insert two rate-A 8 & a=$!
  insert two rate-B 8 & b=$!
  wait $a $b
  standin "$STANDIN_URL/_standin/requests" | python3 -c '
import json, sys
t = sorted(json.loads(l)["t"] for l in sys.stdin)
print("max_rate: %d requests, closest %.3f s apart, over %.2f s" % (len(t), min(b - a for a, b in zip(t, t[1:])), t[-1] - t[0]))' >>"$RL_WORK/pace.out"
else
  pace_run alone true 1
fi
[ "${RL_MANY:-0}" = 1 ] || exit 0

# More servers than slots.
{
  for i in $(seq 70); do
    echo "CREATE SERVER rl$i FOREIGN DATA WRAPPER confluence_fdw"
    echo "  OPTIONS (base_url '$STANDIN_URL/ex/confluence/rl$i', max_retry_wait_ms '10000', max_retries '0');"
    echo "CREATE USER MAPPING FOR CURRENT_USER SERVER rl$i"
    echo "  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');"
    echo "CREATE SCHEMA rl$i;"
    echo "IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER rl$i INTO rl$i;"
  done
  cat <<'SQL'
CREATE FUNCTION rl_hit(first int, last int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  limited int := 0;
BEGIN
  FOR i IN first..last LOOP
    BEGIN
      EXECUTE format('INSERT INTO rl%s.pages (space_id, title) VALUES (''98306'', ''limited'')', i);
    EXCEPTION WHEN others THEN
      limited := limited + 1;
    END;
  END LOOP;
  RETURN limited;
END $$;
SQL
} | psql_q
fault() {  # fault RETRY_AFTER TIMES
  curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" \
    -d "{\"kind\": \"status\", \"status\": 429, \"headers\": {\"Retry-After\": \"$1\"}, \"times\": $2, \"match\": \"/ex/\"}" >/dev/null
}
log=$(cfdw_server_log)
fault 1 64
psql_q -c "SELECT 'first: ' || rl_hit(1, 64)" >"$RL_WORK/many.out"
sleep 1.3
fault 8 6
psql_q -c "SELECT 'then: ' || rl_hit(65, 70)" >>"$RL_WORK/many.out"
psql_q -c "SELECT 'shared: ' || count(*) FROM confluence_fdw.rate_limits
            WHERE paused_until > now() AND site IN ('rl65', 'rl66', 'rl67', 'rl68', 'rl69', 'rl70')" >>"$RL_WORK/many.out"
psql -X -q -At -d postgres -c "SET statement_timeout = '1s'" \
  -c "INSERT INTO rl70.pages (space_id, title) VALUES ('98306', 'held') RETURNING title" >>"$RL_WORK/many.out" 2>&1 || true
fault 8 60
psql_q -c "SELECT 'full: ' || rl_hit(1, 60)" >>"$RL_WORK/many.out"
psql_q -c "SELECT 'paused: ' || count(*) FROM confluence_fdw.rate_limits WHERE paused_until > now()" >>"$RL_WORK/many.out"
echo "logged: $(grep -c 'every rate limit slot is in use' "$log")" >>"$RL_WORK/many.out"
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" |
  python3 -c 'import json,sys; print("held sent:", sum(1 for l in sys.stdin if json.loads(l).get("body_json", {}).get("title") == "held"))' >>"$RL_WORK/many.out"
INSIDE

check() {  # check LABEL HELD: HELD=1 when B must wait for A's pause
  local label=$1 held=$2
  python3 - "$work/requests.jsonl" "$held" "$label" <<'PY'
import json, sys
held, label = sys.argv[2] == "1", sys.argv[3]
reqs = [json.loads(l) for l in open(sys.argv[1])]
posts = [r for r in reqs if r["method"] == "POST"]
t429 = next(r["t"] for r in posts if r["status"] == 429)
after = [(round(r["t"] - t429, 2), r["body_json"]["title"], r["status"]) for r in posts if r["t"] > t429]
print(f"rate-limit ({label}): requests after the 429, seconds later: {after}")
early = [a for a in after if a[0] < 2.9]
b = [a for a in after if a[1] == "session B"]
if held and early:
    sys.exit(f"  FAILED: requests within the pause: {early}")
if not held and not (b and b[0][0] < 2.9):
    sys.exit("  FAILED: without the preload, session B waited for session A's pause")
if held and any(a[1] == "session C" for a in after):
    sys.exit("  FAILED: the cancelled session's request was sent")
PY
}

rc=0
# shellcheck disable=SC2016
export CFDW_ROOT
RL_MANY=1 CFDW_LOG_MIN_MESSAGES=log CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"
check shared 1 || rc=1
echo "rate-limit (70 servers): $(tr '\n' ' ' <"$work/many.out")"
for want in 'first: 64' 'then: 6' 'shared: 6' 'paused: 64' 'logged: 1' 'held sent: 0'; do
  grep -qx "$want" "$work/many.out" || { echo "  FAILED: 70 servers: expected \"$want\""; rc=1; }
done
grep -q 'statement timeout' "$work/many.out" ||
  { echo "  FAILED: 70 servers: the request to a server paused in a reused slot was not held"; rc=1; }
[ "$(cat "$work/view.out")" = t ] || { echo "  FAILED: rate_limits did not show the pause: $(cat "$work/view.out")"; rc=1; }
grep -q 'statement timeout' "$work/c.out" || { echo "  FAILED: session C: $(cat "$work/c.out")"; rc=1; }
ms=$(cat "$work/c.ms")
echo "rate-limit: session C (statement_timeout 500ms) ended after $ms ms of a 3 s pause"
[ "$ms" -lt 1500 ] || { echo "  FAILED: the cancel did not act at once"; rc=1; }
[ "$(cat "$work/a.out")" = "session A" ] && [ "$(cat "$work/b.out")" = "session B" ] ||
  { echo "  FAILED: sessions A and B: $(cat "$work/a.out" "$work/b.out")"; rc=1; }

[ ! -s "$work/queue.out" ] || { echo "  FAILED: a queue table with the preload: $(cat "$work/queue.out")"; rc=1; }
sed 's/^/rate-limit (shared): /' "$work/pace.out"
grep -qE '^paced: rc 0 0, 429s 0, pages 50, ' "$work/pace.out" ||
  { echo "  FAILED: two paced sessions on one site: $(grep '^paced' "$work/pace.out")"; rc=1; }
grep -qx 'view: 1 site, limit 20, paced true' "$work/pace.out" ||
  { echo "  FAILED: the view after pacing: $(grep '^view' "$work/pace.out")"; rc=1; }
grep -qE '^unpaced: rc 0 0, 429s [1-9]' "$work/pace.out" ||
  { echo "  FAILED: without headers the same run should meet 429s: $(grep '^unpaced' "$work/pace.out")"; rc=1; }
python3 - "$work/pace.out" <<'PY' || rc=1
import re, sys
m = re.search(r"^max_rate: (\d+) requests, closest ([\d.]+) s apart", open(sys.argv[1]).read(), re.M)
if not m or int(m.group(1)) != 16 or float(m.group(2)) < 0.15:
    sys.exit("  FAILED: max_rate 5 across two sessions: %s" % (m.group(0) if m else "no figures"))
PY
rm -f "$work/pace.out"

# The same without the preload: per-backend, as before.
CFDW_PRELOAD=pg_cron CFDW_LOG_MIN_MESSAGES=log CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$work/inside.sh"
check per-backend 0 || rc=1
sed 's/^/rate-limit (per backend): /' "$work/pace.out"
grep -qE '^alone: rc 0 0, 429s 0, pages 25, ' "$work/pace.out" ||
  { echo "  FAILED: a session paced by its own backend: $(cat "$work/pace.out")"; rc=1; }
grep -q "ERROR:  55000: .*needs confluence_fdw in shared_preload_libraries" "$work/queue.out" ||
  { echo "  FAILED: a queue table without the preload: $(cat "$work/queue.out")"; rc=1; }
[ $rc = 0 ] && echo "rate-limit passed"
exit $rc
