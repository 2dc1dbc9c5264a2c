#!/usr/bin/env bash
# delivery 'queue' across a failover: no row lost, none sent twice.
#
# Two throw-away clusters on loopback, made here: a primary with the worker
# (shared_preload_libraries = confluence_fdw) and a streaming standby that
# is synchronous (synchronous_standby_names, synchronous_commit on).
# QFAIL_ROWS (300) pages are queued on the primary for a stand-in that
# answers each create after QFAIL_DELAY_MS (100) ms; once about a fifth are
# created the primary's postmaster is killed with SIGKILL and the standby is
# promoted.  Its worker (it starts only once recovery is over) must finish
# the queue: every title created exactly once, every row done.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/queue-failover.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export QFAIL_ROWS=${QFAIL_ROWS:-300} QFAIL_DELAY_MS=${QFAIL_DELAY_MS:-100}
[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
PG_CONFIG=$(cfdw_pg_config)
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
bin=$("$PG_CONFIG" --bindir)

work=$(mktemp -d /tmp/cfdw-qfail.XXXXXX)
chmod 755 "$work"
# PostgreSQL does not run as root: the clusters belong to postgres.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_all() {
  local d
  for d in "$work/primary" "$work/standby"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  cfdw_stop_standin
  [ "${QFAIL_KEEP:-0}" = 1 ] && { echo "kept $work"; return; }
  rm -rf "$work"
}
trap stop_all EXIT
[ "$(id -u)" = 0 ] && chown postgres "$work"
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work/standin"
p_port=$(cfdw_free_pgport)
s_port=$(cfdw_free_pgport)
while [ "$s_port" = "$p_port" ]; do s_port=$(cfdw_free_pgport); done

psql_at() {  # psql_at PORT SQL...
  local port=$1
  shift
  as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$work" -p "$port" -U postgres -d postgres "$@"
}
created() {
  curl -fsS --max-time 10 "$STANDIN_URL/_standin/stats" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["pages"])'
}

# The primary.
as_pg "$bin/initdb" -D "$work/primary" -U postgres --auth=trust >/dev/null
cat >>"$work/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $p_port
unix_socket_directories = '$work'
shared_preload_libraries = 'confluence_fdw'
confluence_fdw.database_name = 'postgres'
wal_level = replica
max_wal_senders = 4
synchronous_standby_names = 'standby1'
synchronous_commit = on
log_min_messages = log
CONF
as_pg "$bin/pg_ctl" -D "$work/primary" -l "$work/primary.log" -w start >/dev/null

# The standby: a base backup that streams from the primary, synchronously.
as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$p_port" -U postgres -D "$work/standby" -R -X stream
# Once promoted it has no standby of its own: its commits must not wait for
# one (the base backup copied the primary's synchronous_standby_names).
cat >>"$work/standby/postgresql.conf" <<CONF
port = $s_port
synchronous_standby_names = ''
CONF
cat >>"$work/standby/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=127.0.0.1 port=$p_port user=postgres application_name=standby1'
CONF
as_pg "$bin/pg_ctl" -D "$work/standby" -l "$work/standby.log" -w start >/dev/null
for _ in $(seq 100); do
  [ "$(psql_at "$p_port" -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
  sleep 0.2
done
echo "queue-failover: primary on $p_port, synchronous standby on $s_port"

curl -fsS --max-time 10 -X POST "$STANDIN_URL/_standin/fault" -d \
  "{\"kind\": \"delay\", \"delay_ms\": $QFAIL_DELAY_MS, \"method\": \"POST\", \"times\": -1}" >/dev/null
psql_at "$p_port" <<SQL
CREATE EXTENSION confluence_fdw;
CREATE SERVER s FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', max_concurrency '4');
CREATE USER MAPPING FOR CURRENT_USER SERVER s
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA q;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER s INTO q;
ALTER FOREIGN TABLE q.pages OPTIONS (ADD delivery 'queue');
INSERT INTO q.pages (space_id, title, body)
  SELECT '98306', 'failover ' || g, '<p>' || g || '</p>' FROM generate_series(1, $QFAIL_ROWS) g;
SQL

for _ in $(seq 600); do
  [ "$(created)" -ge $((QFAIL_ROWS / 5)) ] && break
  sleep 0.1
done
pm=$(head -1 "$work/primary/postmaster.pid")
echo "queue-failover: killing the primary's postmaster (pid $pm) with $(created) of $QFAIL_ROWS pages created"
kill -9 "$pm"
# its children notice the postmaster's death and exit
for _ in $(seq 100); do
  pgrep -f "postgres: .*confluence_fdw worker" >/dev/null 2>&1 || break
  [ "$(pgrep -P "$pm" 2>/dev/null | wc -l)" = 0 ] && break
  sleep 0.1
done
as_pg "$bin/pg_ctl" -D "$work/standby" -w promote >/dev/null
left=$(psql_at "$s_port" -c 'SELECT confluence_fdw.flush(120000)')
echo "queue-failover: on the promoted standby, $left rows still wait; $(created) pages"
states=$(psql_at "$s_port" -c "SELECT state || ':' || count(*) FROM confluence_fdw.queue GROUP BY state ORDER BY 1" | tr '\n' ' ')
echo "queue-failover: queue states on the new primary: $states"

rc=0
curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" >"$work/requests.jsonl"
python3 - "$work/requests.jsonl" "$QFAIL_ROWS" <<'PY' || rc=1
import collections, json, sys
rows = int(sys.argv[2])
created = collections.Counter()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("method") == "POST" and 200 <= (r.get("status") or 0) < 300:
        created[(r.get("body_json") or {}).get("title")] += 1
want = {f"failover {i}" for i in range(1, rows + 1)}
twice = sorted(t for t, n in created.items() if n > 1)
missing = sorted(want - set(created))
print(f"queue-failover: {len(created)} titles created of {rows}")
if twice:
    print(f"  FAILED: created twice: {twice[:5]}")
if missing:
    print(f"  FAILED: never created: {len(missing)}, e.g. {missing[:5]}")
sys.exit(1 if twice or missing else 0)
PY
[ "$states" = "done:$QFAIL_ROWS " ] || { echo "  FAILED: not every row is done: $states"; rc=1; }
[ $rc = 0 ] && echo "queue-failover passed"
exit $rc
