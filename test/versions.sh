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
#   4. a self-test of 3: a made-up version 0.0.1 (the script without one
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
trap 'rm -rf "$VERSIONS_DIR"' EXIT
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

# The check itself must see a difference: a made-up version 0.0.1 without
# storage_is_well_formed(), and an upgrade script to $default that adds it
# (the same objects) and then one that forgets it (a difference).  The two
# files live in the share directory only while this runs.
share=$(pg_config --sharedir)/extension
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
