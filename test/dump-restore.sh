#!/usr/bin/env bash
# pg_dump and pg_restore keep everything confluence_fdw needs: servers,
# user mappings (with their secrets), imported and hand-written foreign
# tables with their column options, and the rows waiting in the queue.
#
# Two clusters of their own (initdb, shared_preload_libraries =
# confluence_fdw) and one stand-in:
#   1. in the old cluster: two servers, user mappings for postgres and for a
#      role app, IMPORT FOREIGN SCHEMA v2, hand-written tables (manual mode
#      with placeholders, field, response_field, send 'false',
#      representation 'markdown', on_conflict), and DR_ROWS blog posts
#      queued while the stand-in refuses blog posts (503), so they wait;
#      before that, a script of INSERTs and SELECTs (as postgres and as
#      app) is run on an empty stand-in and the stand-in's log kept;
#   2. pg_dumpall --roles-only, pg_dump -Fc, the old cluster stopped;
#   3. a fresh cluster: the roles, pg_restore, the stand-in accepts blog
#      posts again;
#   4. the same script again: its requests must equal the old cluster's
#      (method, path, query, body, credentials, content type), and every
#      queued row must be sent exactly once by the new cluster's worker,
#      with the body the old one tried to send.
#
# With DR_NEW_MAJOR=17 (or 18, 19) the new cluster is of that PostgreSQL
# major, from its Debian tree (test/pgtree.sh; made when missing, and the
# extension built and installed there): the dump of this machine's
# PostgreSQL (15) restored into a newer major with that major's pg_restore,
# as users upgrade.  The script then runs in a private mount namespace
# where the tree sees /proc, /dev and this machine's /tmp (the folder of
# the run), and the new cluster's programs run chrooted in the tree.
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/dump-restore.sh
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 DR_NEW_MAJOR=17 bash test/dump-restore.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

export DR_ROWS=${DR_ROWS:-20}
if [ "${DR_IN_NS:-0}" != 1 ]; then
  [ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
  PG_CONFIG=$(cfdw_pg_config)
  if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
    make -s PG_CONFIG="$PG_CONFIG" >/dev/null
    make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
  fi
  if [ -n "${DR_NEW_MAJOR:-}" ]; then
    cfdw_log "dump-restore: PostgreSQL $CFDW_PG_VERSION into $DR_NEW_MAJOR: building the extension in its tree"
    bash test/pgtree.sh run "$DR_NEW_MAJOR" bash -c \
      "make -s PG_CONFIG=/usr/lib/postgresql/$DR_NEW_MAJOR/bin/pg_config install >/dev/null" >&2
    DR_TREE=$(bash test/pgtree.sh path "$DR_NEW_MAJOR")
    export DR_TREE DR_IN_NS=1
    exec unshare -m --propagation private -- bash "$0" "$@"
  fi
fi
PG_CONFIG=$(cfdw_pg_config)
bin=$("$PG_CONFIG" --bindir)

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# old PROG ARGS / new PROG ARGS: a program of the old or the new cluster's
# PostgreSQL, as its postgres user
old() { as_pg "$bin/$1" "${@:2}"; }
if [ -n "${DR_NEW_MAJOR:-}" ]; then
  mount -t proc proc "$DR_TREE/proc"
  mount --rbind /dev "$DR_TREE/dev"
  mount --rbind /sys "$DR_TREE/sys"
  mount --bind /tmp "$DR_TREE/tmp"
  new() {
    chroot --userspec=postgres:postgres "$DR_TREE" /usr/bin/env -i PATH=/usr/bin:/bin \
      LANG=C.UTF-8 HOME=/var/lib/postgresql "/usr/lib/postgresql/$DR_NEW_MAJOR/bin/$1" "${@:2}"
  }
  new_version=$(new postgres --version)
else
  new() { old "$@"; }
  new_version=$("$bin/postgres" --version)
fi

work=$(mktemp -d /tmp/cfdw-dump.XXXXXX)
# both clusters' postgres users write here (the tree's may have another uid)
chmod 1777 "$work"
stop_all() {
  [ -f "$work/old/postmaster.pid" ] && old pg_ctl -D "$work/old" -m immediate stop >/dev/null 2>&1 || true
  [ -f "$work/new/postmaster.pid" ] && new pg_ctl -D "$work/new" -m immediate stop >/dev/null 2>&1 || true
  cfdw_stop_standin
  [ "${DR_KEEP:-0}" = 1 ] && { echo "kept $work"; return; }
  rm -rf "$work"
}
trap stop_all EXIT
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$work/standin"
old_port=$(cfdw_free_pgport)
new_port=$(cfdw_free_pgport)
while [ "$new_port" = "$old_port" ]; do new_port=$(cfdw_free_pgport); done

psql_at() {  # psql_at PORT [psql args...]: psql of the cluster on PORT
  local port=$1 run=old
  shift
  [ "$port" = "$new_port" ] && run=new
  $run psql -X -q -v ON_ERROR_STOP=1 -At -h "$work" -p "$port" -d postgres "$@"
}
make_cluster() {  # make_cluster old|new DIR PORT
  local run=$1
  shift
  $run initdb -D "$1" -U postgres --auth=trust >/dev/null
  cat >>"$1/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$work'
shared_preload_libraries = 'confluence_fdw'
confluence_fdw.database_name = 'postgres'
CONF
  $run pg_ctl -D "$1" -l "$1/server.log" -w start >/dev/null
}
standin() {  # standin METHOD WHAT [JSON]
  curl -fsS --max-time 10 -X "$1" "$STANDIN_URL/_standin/$2" ${3:+-d "$3"} >/dev/null
}
# The stand-in's log as lines that must match between the clusters.
requests() {
  curl -fsS --max-time 10 "$STANDIN_URL/_standin/requests" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps([r.get("method"), r.get("path"), r.get("query"), r.get("body_json") or r.get("body"),
                      r.get("auth"), r.get("content_type")], sort_keys=True))'
}

# What both clusters run: the same statements through the restored tables.
cat >"$work/script.sql" <<'SQL'
INSERT INTO v2.pages (space_id, title, body) VALUES ('98306', 'Dumped 1', '<p>one</p>')
  RETURNING title, http_status;
INSERT INTO v2.footer_comments (page_id, body) VALUES ('1000001', '<p>a comment</p>');
INSERT INTO notes (page_id, note, secret_ref) VALUES ('1000001', '**bold** note', 'kept');
INSERT INTO reports (space_id, title, body) VALUES ('98306', 'Nightly', '# Nightly')
  RETURNING action;
SELECT count(*) FROM v2.pages WHERE space_id = '98306' AND title = 'Dumped 1';
SET ROLE app;
INSERT INTO v2.pages (space_id, title, body) VALUES ('98306', 'As app', '<p>app</p>');
RESET ROLE;
SQL
chmod 644 "$work/script.sql"

# 1. the old cluster
make_cluster old "$work/old" "$old_port"
psql_at "$old_port" <<SQL
CREATE ROLE app LOGIN;
CREATE EXTENSION confluence_fdw;
CREATE SERVER confluence FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', timeout_ms '20000', max_retries '2');
CREATE SERVER queued FOREIGN DATA WRAPPER confluence_fdw
  OPTIONS (base_url '$STANDIN_URL', delivery 'queue', max_retry_wait_ms '1000');
CREATE USER MAPPING FOR postgres SERVER confluence
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE USER MAPPING FOR app SERVER confluence OPTIONS (bearer_token '$CFDW_BEARER');
CREATE USER MAPPING FOR postgres SERVER queued
  OPTIONS (username '$CFDW_USER', api_token '$CFDW_TOKEN');
CREATE SCHEMA v2;
IMPORT FOREIGN SCHEMA v2 FROM SERVER confluence INTO v2;
GRANT USAGE ON SCHEMA v2 TO app;
GRANT INSERT, SELECT ON v2.pages TO app;
GRANT USAGE ON FOREIGN SERVER confluence TO app;
CREATE FOREIGN TABLE notes (
  page_id text OPTIONS (send 'false'),
  note text OPTIONS (field 'body.value', representation 'markdown'),
  secret_ref text OPTIONS (send 'false'),
  status integer OPTIONS (response_field '\$status')
) SERVER confluence OPTIONS (endpoint '/wiki/echo/pages/{page_id}/notes',
                             headers 'X-Source:dump-test');
CREATE FOREIGN TABLE reports (
  space_id text, title text, body text,
  action text OPTIONS (response_field '\$action')
) SERVER confluence OPTIONS (endpoint 'pages', representation 'markdown', on_conflict 'update');
CREATE FOREIGN TABLE news (space_id text, title text, body text, source_id int OPTIONS (send 'false'))
  SERVER queued OPTIONS (endpoint 'blogposts');
SQL
# the script first, on an empty stand-in (the new cluster's run starts the same)
standin POST reset
psql_at "$old_port" -f "$work/script.sql" >"$work/old.out"
requests >"$work/old.requests"
standin POST fault '{"kind": "status", "status": 503, "headers": {"Retry-After": "2"}, "method": "POST", "match": "/wiki/api/v2/blogposts", "times": -1}'
psql_at "$old_port" -c "INSERT INTO news (space_id, title, body, source_id)
  SELECT '98306', 'Queued ' || g, '<p>' || g || '</p>', g FROM generate_series(1, $DR_ROWS) g"
# wait until the worker has tried each once: then they wait for a retry
for _ in $(seq 100); do
  [ "$(psql_at "$old_port" -c "SELECT count(*) FROM confluence_fdw.queue WHERE state = 'retry_wait'")" = "$DR_ROWS" ] && break
  sleep 0.2
done

# 2. dump, and stop the old cluster (its worker would go on retrying)
psql_at "$old_port" -c "SELECT state, count(*) FROM confluence_fdw.queue GROUP BY 1" >"$work/old.queue"
old pg_dumpall -h "$work" -p "$old_port" --roles-only -f "$work/roles.sql"
old pg_dump -h "$work" -p "$old_port" -d postgres -Fc -f "$work/db.dump"
old pg_ctl -D "$work/old" -m fast stop >/dev/null
queued_in_dump=$(old pg_restore -f - --data-only -t queue "$work/db.dump" | grep -c 'Queued ' || true)
grep -q "api_token '$CFDW_TOKEN'" <(old pg_restore -f - "$work/db.dump") &&
  secret_in_dump=yes || secret_in_dump=no

# 3. the new cluster, and a stand-in that takes blog posts again
standin POST reset
make_cluster new "$work/new" "$new_port"
# (CREATE ROLE postgres fails there, as it exists: the rest applies)
new psql -X -q -h "$work" -p "$new_port" -d postgres -f "$work/roles.sql" >/dev/null 2>&1
[ "$(psql_at "$new_port" -c "SELECT count(*) FROM pg_roles WHERE rolname = 'app'")" = 1 ]
# the new major's pg_restore, as for any upgrade by dump and restore
new pg_restore -h "$work" -p "$new_port" -d postgres --exit-on-error "$work/db.dump"
# the worker of the new cluster sends what the old one could not
left=$(psql_at "$new_port" -c 'SELECT confluence_fdw.flush(60000)')
psql_at "$new_port" -c "SELECT state || ' ' || count(*) FROM confluence_fdw.queue GROUP BY state ORDER BY 1" >"$work/new.queue"
requests >"$work/queued.requests"

# 4. the same script through the restored tables
standin POST reset
psql_at "$new_port" -f "$work/script.sql" >"$work/new.out"
requests >"$work/new.requests"

rc=0
echo "dump-restore: from $("$bin/postgres" --version) to $new_version"
echo "dump-restore: old cluster's queue: $(tr '\n' ' ' <"$work/old.queue"); rows in the dump: $queued_in_dump; user mapping secrets in the dump: $secret_in_dump"
echo "dump-restore: new cluster's queue after flush: $(tr '\n' ' ' <"$work/new.queue")($left still waiting)"
[ "$queued_in_dump" = "$DR_ROWS" ] || { echo "  FAILED: the dump holds $queued_in_dump queued rows, not $DR_ROWS"; rc=1; }
[ "$(cat "$work/new.queue")" = "done $DR_ROWS" ] || { echo "  FAILED: the restored queue rows were not all sent"; rc=1; }
python3 - "$work/queued.requests" "$DR_ROWS" <<'PY' || rc=1
import collections, json, sys
posts = collections.Counter()
for line in open(sys.argv[1]):
    method, path, query, body, auth, ctype = json.loads(line)
    if method == "POST" and path.endswith("/blogposts"):
        posts[(body or {}).get("title")] += 1
want = {f"Queued {i}" for i in range(1, int(sys.argv[2]) + 1)}
bad = {t: n for t, n in posts.items() if n != 1} | {t: 0 for t in want - set(posts)}
print(f"dump-restore: the new worker posted {sum(posts.values())} blog posts for {len(want)} queued rows")
if bad:
    print(f"  FAILED: not posted exactly once: {sorted(bad.items())[:5]}")
sys.exit(1 if bad else 0)
PY
if diff -u "$work/old.requests" "$work/new.requests" >"$work/requests.diff"; then
  echo "dump-restore: the restored tables sent the same $(wc -l <"$work/new.requests") requests as the originals"
else
  echo "  FAILED: the restored tables sent other requests:"; head -20 "$work/requests.diff"; rc=1
fi
if ! diff -u "$work/old.out" "$work/new.out"; then
  echo "  FAILED: the script's output differs"; rc=1
fi
[ $rc = 0 ] && echo "dump-restore passed"
exit $rc
