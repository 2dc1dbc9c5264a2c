#!/usr/bin/env bash
# Versions: released SQL scripts are frozen, and every upgrade path the
# extension ships ends with the same objects as a fresh install.
#
#   1. every script listed in test/released-scripts.sha256 is unchanged
#      (a released version is never edited: the change goes into a new
#      version and an upgrade script confluence_fdw--A--B.sql);
#   2. the Makefile ships every sql/confluence_fdw--*.sql, the control
#      file's default_version has its script, and every shipped script is
#      installed (what `make install` or the package put in the share
#      directory);
#   3. in a throw-away cluster, for every version that
#      pg_extension_update_paths() can bring to default_version:
#      CREATE EXTENSION ... VERSION 'old', ALTER EXTENSION ... UPDATE, and
#      the extension's objects (member objects, function definitions and
#      privileges, the queue's columns, constraints, indexes, policies and
#      privileges, the tables pg_dump keeps) must equal those of a fresh
#      CREATE EXTENSION;
#   4. a real upgrade from every released version (the ones listed in
#      test/released-scripts.sha256) with a path to default_version, in
#      the database the queue worker serves, with the worker running and a
#      Confluence stand-in: the old version installed from its frozen
#      script, UP_ROWS (10) pages queued by each of the roles alice and
#      "Alice" and held back (the stand-in answers every page POST with
#      429), ALTER EXTENSION ... UPDATE while they wait, then the objects of
#      a fresh install, each role reading exactly its own rows, and, once
#      the site takes pages again, every row sent and every page created
#      exactly once (counted at the stand-in);
#   5. a self-test of 3: a made-up version 0.0.1 (the script without one
#      function) with a complete upgrade script must compare equal, and
#      with one that forgets the function must not (the two files are in
#      the share directory only while the test runs).
#
#   CFDW_SKIP_DEPS=1 CFDW_SKIP_BUILD=1 bash test/versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=lib.sh
source test/lib.sh

[ "${CFDW_SKIP_DEPS:-0}" = 1 ] || bash test/install-deps.sh
PG_CONFIG=$(cfdw_pg_config)
export PG_CONFIG  # (inside.sh too: the PostgreSQL under test, not the one on the PATH)
if [ "${CFDW_SKIP_BUILD:-0}" != 1 ]; then
  make -s PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
rc=0

# 1. frozen scripts
if sha256sum --quiet -c test/released-scripts.sha256; then
  echo "versions: released scripts unchanged: $(awk '{print $2}' test/released-scripts.sha256 | tr '\n' ' ')"
else
  echo "  FAILED: a released script changed; put the change in a new version's upgrade script"
  rc=1
fi

# 2. what is shipped and installed
default=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" confluence_fdw.control)
share=$("$PG_CONFIG" --sharedir)/extension
[ -f "sql/confluence_fdw--$default.sql" ] || { echo "  FAILED: default_version $default has no script"; rc=1; }
shipped=$(make -s --no-print-directory PG_CONFIG="$PG_CONFIG" -f Makefile -f - print-data <<'MK'
print-data:
	@echo $(DATA)
MK
)
for f in sql/confluence_fdw--*.sql; do
  case " $shipped " in *" $f "*) ;; *) echo "  FAILED: $f is not in the Makefile's DATA"; rc=1 ;; esac
  cmp -s "$f" "$share/$(basename "$f")" || { echo "  FAILED: $share/$(basename "$f") is not $f"; rc=1; }
done
echo "versions: default_version $default; shipped: $shipped"

# 3. every upgrade path against a fresh install
VERSIONS_DIR=$(mktemp -d /tmp/cfdw-versions.XXXXXX)
export VERSIONS_DIR
chmod 755 "$VERSIONS_DIR"
trap 'cfdw_stop_standin; rm -rf "$VERSIONS_DIR"' EXIT
# (4. needs a stand-in, and the released versions)
unset STANDIN_CA_FILE CFDW_STANDIN_TLS_KEY STANDIN_TLS_URL
cfdw_gen_credentials
cfdw_start_standin "$VERSIONS_DIR/standin"
RELEASED=$(sed -n 's/.*sql\/confluence_fdw--\([^-]*\)\.sql$/\1/p' test/released-scripts.sha256 | tr '\n' ' ')
export RELEASED UP_ROWS=${UP_ROWS:-10}
cat >"$VERSIONS_DIR/inside.sh" <<'INSIDE'
set -euo pipefail
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
# The extension's objects, one line each, in an order of their own.
objects() {
  psql_q -d "$1" <<'SQL'
SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'confluence_fdw' AND d.deptype = 'e'
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '') || ' ' ||
       md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'confluence_fdw'::regnamespace AND p.prokind = 'f'
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
       CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || ' ' || a.attidentity::text || ' ' ||
       coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = 'confluence_fdw'::regnamespace AND c.relkind = 'r'
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'confluence_fdw'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid)
  FROM pg_index WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'confluence_fdw'::regnamespace)
UNION ALL
SELECT 'policy ' || tablename || ' ' || policyname || ' ' || cmd::text || ' ' || coalesce(qual, '') || ' ' || roles::text
  FROM pg_policies WHERE schemaname = 'confluence_fdw'
UNION ALL
SELECT 'table ' || relname || ' ' || coalesce(relacl::text, '') || ' rls ' || relrowsecurity::text
  FROM pg_class WHERE relnamespace = 'confluence_fdw'::regnamespace AND relkind IN ('r', 'S', 'v')
UNION ALL
SELECT 'dumped ' || (SELECT string_agg(x::regclass::text, ', ' ORDER BY x::regclass::text)
                       FROM unnest(extconfig) x)
  FROM pg_extension WHERE extname = 'confluence_fdw'
UNION ALL
SELECT 'fdw ' || fdwname || ' ' || fdwhandler::regproc || ' ' || fdwvalidator::regproc
  FROM pg_foreign_data_wrapper WHERE fdwname = 'confluence_fdw'
ORDER BY 1;
SQL
}
psql_q -d postgres -c "CREATE DATABASE fresh"
psql_q -d fresh -c "CREATE EXTENSION confluence_fdw"
objects fresh >"$VERSIONS_DIR/fresh.txt"
default=$(psql_q -d fresh -c "SELECT extversion FROM pg_extension WHERE extname = 'confluence_fdw'")
paths=$(psql_q -d fresh -c "SELECT source || ' ' || path FROM pg_extension_update_paths('confluence_fdw')
                           WHERE target = '$default' AND source <> '$default' AND path IS NOT NULL ORDER BY 1")
n=0
while read -r old path; do
  [ -n "$old" ] || continue
  n=$((n + 1))
  db="from_$(echo "$old" | tr -c 'a-zA-Z0-9\n' '_')"
  psql_q -d postgres -c "CREATE DATABASE $db"
  psql_q -d "$db" -c "CREATE EXTENSION confluence_fdw VERSION '$old'" -c "ALTER EXTENSION confluence_fdw UPDATE"
  objects "$db" >"$VERSIONS_DIR/$db.txt"
  if diff -u "$VERSIONS_DIR/fresh.txt" "$VERSIONS_DIR/$db.txt"; then
    echo "versions: $old -> $default ($path) gives the objects of a fresh install"
  else
    echo "  FAILED: $old -> $default ($path) differs from a fresh install"
    echo fail >>"$VERSIONS_DIR/failed"
  fi
done <<<"$paths"
[ "$n" -gt 0 ] || echo "versions: no upgrade path to $default is shipped ($default is the first release); a fresh install has $(wc -l <"$VERSIONS_DIR/fresh.txt") objects"

# 4. A real upgrade from each released version, in the database the worker
# serves (postgres), with rows waiting in the queue.
standin() {  # standin METHOD WHAT [JSON]
  curl -fsS --max-time 10 -X "$1" "$STANDIN_URL/_standin/$2" ${3:+-d "$3"}
}
# What role $1 reads of the queue: "N rows: " and the words of the titles
# (lower: alice's rows, upper: "Alice"'s).
reads() {
  psql_q -d postgres -c "SET ROLE \"$1\"" -c "SELECT count(*) || ' rows: ' ||
      coalesce(string_agg(DISTINCT split_part(body::jsonb->>'title', ' ', 2), ' '), '')
    FROM confluence_fdw.queue"
}
queue_states() {
  psql_q -d postgres -c "SELECT string_agg(state || ' ' || n, ', ' ORDER BY state)
                           FROM (SELECT state, count(*) n FROM confluence_fdw.queue GROUP BY 1) s"
}
# rows tried at least once that still wait to be sent
tried() {
  psql_q -d postgres -c "SELECT count(*) FROM confluence_fdw.queue
                          WHERE attempts > 0 AND state IN ('pending', 'retry_wait', 'sending')"
}
real_upgrade() {  # real_upgrade OLD
  local old=$1 i states
  psql_q -d postgres -c "CREATE EXTENSION confluence_fdw VERSION '$old'"
  psql_q -d postgres -v url="$STANDIN_URL" -v user="$CFDW_USER" -v token="$CFDW_TOKEN" <<'SQL'
CREATE ROLE alice;
CREATE ROLE "Alice";
-- no retries within an attempt: each attempt is one POST, and a row waits
-- for the next in retry_wait (the worker claims a row only as it starts it)
CREATE SERVER up_srv FOREIGN DATA WRAPPER confluence_fdw OPTIONS (base_url :'url', max_retries '0');
CREATE SCHEMA up;
IMPORT FOREIGN SCHEMA v2 LIMIT TO (pages) FROM SERVER up_srv INTO up;
ALTER FOREIGN TABLE up.pages OPTIONS (ADD delivery 'queue');
GRANT USAGE ON SCHEMA up TO alice, "Alice";
GRANT INSERT ON up.pages TO alice, "Alice";
GRANT USAGE ON FOREIGN SERVER up_srv TO alice, "Alice";
CREATE USER MAPPING FOR alice SERVER up_srv OPTIONS (username :'user', api_token :'token');
CREATE USER MAPPING FOR "Alice" SERVER up_srv OPTIONS (username :'user', api_token :'token');
SQL
  # the site refuses every page with 429 until the upgrade is done
  standin POST reset >/dev/null
  standin POST fault '{"kind": "status", "status": 429, "headers": {"Retry-After": "1"},
                       "method": "POST", "match": "/wiki/api/v2/pages", "times": -1}' >/dev/null
  psql_q -d postgres -c "SET ROLE alice" -c "INSERT INTO up.pages (space_id, title, body)
    SELECT '98306', 'Upgrade lower ' || g, '<p>' || g || '</p>' FROM generate_series(1, $UP_ROWS) g"
  psql_q -d postgres -c 'SET ROLE "Alice"' -c "INSERT INTO up.pages (space_id, title, body)
    SELECT '98306', 'Upgrade upper ' || g, '<p>' || g || '</p>' FROM generate_series(1, $UP_ROWS) g"
  # every row tried at least once, and none through: the worker is at work
  # (rows wait for their retry, or are being tried again)
  for i in $(seq 300); do
    [ "$(tried)" = $((2 * UP_ROWS)) ] && break
    sleep 0.1
  done
  echo "versions: $old with rows held back: $(queue_states); \"Alice\" reads $(reads Alice)"
  [ "$(tried)" = $((2 * UP_ROWS)) ] || { echo "  FAILED: the rows were not held back"; return 1; }

  psql_q -d postgres -c "ALTER EXTENSION confluence_fdw UPDATE"
  objects postgres >"$VERSIONS_DIR/real_$old.txt"
  if diff -u "$VERSIONS_DIR/fresh.txt" "$VERSIONS_DIR/real_$old.txt"; then
    echo "versions: $old -> $default with rows queued and the worker running gives the objects of a fresh install"
  else
    echo "  FAILED: $old -> $default with rows queued differs from a fresh install"; return 1
  fi
  states=$(psql_q -d postgres -c "SELECT count(*) FROM confluence_fdw.queue
                                   WHERE state NOT IN ('pending', 'retry_wait', 'sending')")
  [ "$states" = 0 ] || { echo "  FAILED: $states rows ended before the site took pages"; return 1; }
  for i in lower:alice upper:Alice; do
    [ "$(reads "${i#*:}")" = "$UP_ROWS rows: ${i%%:*}" ] ||
      { echo "  FAILED: after the upgrade, \"${i#*:}\" reads $(reads "${i#*:}")"; return 1; }
  done
  echo "versions: after the upgrade alice reads $(reads alice), \"Alice\" reads $(reads Alice)"

  # the site takes pages again: each role's flush() sees its rows sent
  standin GET requests >"$VERSIONS_DIR/held_$old.jsonl"
  standin POST 'reset?keep=objects' >/dev/null
  for i in alice Alice; do
    [ "$(psql_q -d postgres -c "SET ROLE \"$i\"" -c 'SELECT confluence_fdw.flush(60000)')" = 0 ] ||
      { echo "  FAILED: rows of \"$i\" still wait after 60 s"; return 1; }
  done
  standin GET requests >"$VERSIONS_DIR/sent_$old.jsonl"
  states=$(queue_states)
  [ "$states" = "done $((2 * UP_ROWS))" ] || { echo "  FAILED: the queue after delivery: $states"; return 1; }
  python3 - "$VERSIONS_DIR/held_$old.jsonl" "$VERSIONS_DIR/sent_$old.jsonl" "$UP_ROWS" "$old" <<'PY' || return 1
import collections, json, sys
def posts(path):
    for line in open(path):
        r = json.loads(line)
        if r.get("method") == "POST" and r.get("path", "").endswith("/pages"):
            yield (r.get("body_json") or {}).get("title"), r.get("status") or 0
held = list(posts(sys.argv[1]))
created = collections.Counter(t for t, s in posts(sys.argv[2]) if 200 <= s < 300)
want = {f"Upgrade {w} {i}" for w in ("lower", "upper") for i in range(1, int(sys.argv[3]) + 1)}
bad = {t: n for t, n in created.items() if n != 1 or t not in want} | {t: 0 for t in want - set(created)}
early = [t for t, s in held if s != 429]
print(f"versions: {sys.argv[4]}'s queued rows: {len(held)} POSTs refused (429) before the upgrade, "
      f"{sum(created.values())} pages created after it for {len(want)} rows")
if early:
    print(f"  FAILED: answered other than 429 while held back: {early[:5]}")
if bad:
    print(f"  FAILED: not created exactly once: {sorted(bad.items())[:5]}")
sys.exit(1 if early or bad else 0)
PY
  psql_q -d postgres <<'SQL'
SET client_min_messages = warning;
DROP SCHEMA up CASCADE;
DROP SERVER up_srv CASCADE;
DROP EXTENSION confluence_fdw;
DROP ROLE alice, "Alice";
SQL
}
m=0
for old in $RELEASED; do
  grep -q "^$old " <<<"$paths" || continue
  m=$((m + 1))
  # in a subshell that stops at the first failing command (as a condition
  # of ||, set -e would not apply inside the function)
  set +e
  (set -e; real_upgrade "$old")
  [ $? = 0 ] || echo fail >>"$VERSIONS_DIR/failed"
  set -e
done
[ "$m" -gt 0 ] || echo "versions: no released version has an upgrade path to $default"

# The check itself must see a difference: a made-up version 0.0.1 without
# storage_is_well_formed(), and an upgrade script to $default that adds it
# (the same objects) and then one that forgets it (a difference).  The two
# files live in the share directory only while this runs.
share=$("$PG_CONFIG" --sharedir)/extension
trap 'rm -f "$share/confluence_fdw--0.0.1.sql" "$share/confluence_fdw--0.0.1--$default.sql"' EXIT
python3 - "$share/confluence_fdw--$default.sql" "$share/confluence_fdw--0.0.1.sql" \
  "$share/confluence_fdw--0.0.1--$default.sql" <<'PY'
import re, sys
script = open(sys.argv[1]).read()
fn = re.search(r"CREATE FUNCTION storage_is_well_formed\(.*?;\n", script, re.S).group(0)
open(sys.argv[2], "w").write(script.replace(fn, ""))
open(sys.argv[3], "w").write(fn)
PY
selftest() {  # selftest DB: an upgrade from 0.0.1 against the fresh install
  psql_q -d postgres -c "CREATE DATABASE $1"
  psql_q -d "$1" -c "CREATE EXTENSION confluence_fdw VERSION '0.0.1'" -c "ALTER EXTENSION confluence_fdw UPDATE"
  objects "$1" | diff -q "$VERSIONS_DIR/fresh.txt" - >/dev/null
}
if selftest self_good; then echo "versions: self-test: a complete upgrade script gives the same objects"
else echo "  FAILED: self-test: a complete upgrade script was found different"; echo fail >>"$VERSIONS_DIR/failed"; fi
: >"$share/confluence_fdw--0.0.1--$default.sql"
if selftest self_bad; then echo "  FAILED: self-test: an upgrade script that forgets a function was not noticed"; echo fail >>"$VERSIONS_DIR/failed"
else echo "versions: self-test: an upgrade script that forgets a function is caught"; fi
INSIDE
CFDW_LOG_MIN_MESSAGES=warning CFDW_LOG_STATEMENT=none CFDW_CRON_DB=postgres \
  cfdw_pg_virtualenv bash "$VERSIONS_DIR/inside.sh" || rc=1
[ -e "$VERSIONS_DIR/failed" ] && rc=1
[ $rc = 0 ] && echo "versions passed"
exit $rc
